//! The rustcd Kubernetes operator (work in progress).
//!
//! What exists now:
//! - [`spec`]: the `EtcdCluster` custom resource (`rustcd.io/v1alpha1`, namespaced, short name `etcd`):
//!   its spec, defaults and a Rust mirror of the CRD's CEL validations.
//! - [`status`]: the status subresource (members, leader, scale subresource fields, kstatus conditions).
//! - [`crd`]: generation of the CustomResourceDefinition; `src/bin/crdgen.rs` prints it and
//!   `crds/etcdcluster.yaml` is its committed output (a test keeps the two identical).
//! - [`planner`]: the pure membership planner: given the desired replica count and what the operator
//!   observed (MemberList, member health, StatefulSet and pods), it picks the one next safe step
//!   (add a learner, grow the StatefulSet, promote, move the leader, remove, shrink, replace a member
//!   that lost its data, wait, or nothing). It never does I/O.
//!
//! What comes next (not here yet): the reconcile loop that observes the cluster, calls the planner and
//! executes its step with the kube client and the etcd client; a fake API server for its tests; the
//! `rustcd-operator` binary; a Helm chart; and the TLS milestone that consumes `spec.tls`.

pub mod crd;
pub mod planner;
pub mod spec;
pub mod status;

pub use planner::{next_step, Desired, Observed, ObservedMember, ObservedPod, Step};
pub use spec::{EtcdCluster, EtcdClusterSpec};
pub use status::EtcdClusterStatus;
