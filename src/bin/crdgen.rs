//! Prints the `EtcdCluster` CustomResourceDefinition as YAML.
//!
//! Usage: `cargo run --bin crdgen > crds/etcdcluster.yaml`

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match rustcd::controller::crd::crd_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("crdgen: cannot serialize the CRD: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(yaml.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crdgen: cannot write the CRD: {err}");
            ExitCode::FAILURE
        }
    }
}
