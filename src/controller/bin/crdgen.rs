//! Generates the `EtcdCluster` and `EtcdBackup` CustomResourceDefinitions as YAML.
//!
//! Usage:
//! - `cargo run --bin crdgen -- --write`: writes them to `crds/etcdcluster.yaml`, `crds/etcdbackup.yaml`
//!   and the Helm chart's copies under `charts/rustcd-operator/crds/` (paths relative to the repository
//!   root).
//! - `cargo run --bin crdgen`: prints the `EtcdCluster` CRD on standard output.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use rustcd_operator::crd::{crd_files, crd_yaml};

fn main() -> ExitCode {
    let write = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--write") => true,
        Some(other) => {
            eprintln!("crdgen: unknown argument {other:?}\nusage: crdgen [--write]");
            return ExitCode::from(2);
        }
    };
    let yaml = match crd_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("crdgen: cannot serialize the CRD: {err}");
            return ExitCode::FAILURE;
        }
    };
    if !write {
        let mut stdout = std::io::stdout().lock();
        return match stdout.write_all(yaml.as_bytes()).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("crdgen: cannot write the CRD: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let files = match crd_files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("crdgen: cannot serialize the CRDs: {err}");
            return ExitCode::FAILURE;
        }
    };
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    for (relative, yaml) in files {
        let path = root.join(relative);
        if let Err(err) = std::fs::write(&path, &yaml) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("crdgen: wrote {relative}");
    }
    ExitCode::SUCCESS
}
