//! Tests that start clusters of member processes on loopback: static bootstrap, membership changes,
//! leader loss and faults under a linearizability-checked workload, etcdctl's member and endpoint
//! commands against Debian's etcd and rustcd, and TLS deployments.

mod backup;
mod cluster;
mod differential_cluster;
mod faults;
mod membership;
mod tls;
