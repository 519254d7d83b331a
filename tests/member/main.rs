//! Tests that start one member at a time (rustcd, and Debian's etcd as the oracle): the differential
//! tests (the same etcdctl and etcd-client sequences against both, outputs compared after
//! normalising IDs and terms), crash/restart with a linearizability check, and recovery from torn or
//! corrupted files.

mod config_file;
mod differential_client;
mod differential_etcdctl;
mod fail_stop;
mod linearizability;
mod recovery;
