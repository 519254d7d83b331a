//! `rustcd`: the etcd-compatible server. Accepts etcd's flags; see `rustcd --help`.

fn main() {
    if let Err(e) = rustcd::run::main() {
        eprintln!("rustcd: {e:#}");
        std::process::exit(1);
    }
}
