//! The rustcd Kubernetes operator: the `EtcdCluster` API, the membership planner and the reconcile loop
//! that drives a StatefulSet of rustcd members toward the spec, one safe step at a time.
//!
//! The map, in the order a reconcile runs through it (see `docs/ARCHITECTURE.md`, "How a reconcile
//! flows"):
//! - [`spec`], [`cluster_status`], [`crd`]: the `EtcdCluster` custom resource (`rustcd.io/v1alpha1`), its
//!   status subresource (members, leader, scale fields, kstatus conditions, `memberVolumes`) and the
//!   generated CRD (`crds/etcdcluster.yaml`, kept identical by a test).
//! - [`reconcile`]: kube-runtime's `Controller` over `EtcdCluster`s, owning the StatefulSet, Services
//!   and PodDisruptionBudget it creates and watching the member pods; [`reconcile::reconcile`] is one
//!   pass, [`reconcile::run`] runs the loop until shutdown.
//! - [`observe`]: reads the StatefulSet, pods and PVCs, and asks the members (dialed by `status.podIP`
//!   on port 2379 through [`etcd_client`], the project's own generated tonic clients) for MemberList and
//!   Status. The only place that reads state.
//! - [`assess`]: pure; member health (a learner must have applied 90% of the leader's log), the leader,
//!   data loss ([`volumes`]) and the planner's input.
//! - [`planner`]: pure; the one next safe step (its module doc lists the rules and what the executor
//!   must guarantee).
//! - [`execute`]: runs that step with the kube client and the etcd client (its module doc says how the
//!   planner's guarantees are met), behind [`execute::gate`], which holds back steps whose Kubernetes
//!   side is not ready yet.
//! - [`objects`]: pure builders spec -> StatefulSet, Services, PodDisruptionBudget, all
//!   server-side applied with field manager `rustcd-operator`; [`names`] derives every name, label
//!   and URL from one [`names::Identity`].
//! - [`report`]: pure; the new status (phase, conditions, members, ...), written with server-side apply
//!   on the status subresource only when it changed.
//! - [`tls`]: pure; `spec.tls` turned into Secret names, secret volumes and mounts, member flags and
//!   the cert-manager Certificates to request ([`objects::certificate`]); [`member_tls`] reads the CA
//!   and the operator's client certificate from Secrets at every reconcile and dials the members over
//!   TLS with them (a Secret not there yet makes the reconcile wait, saying which).
//! - [`cleanup`]: deleting a cluster with `pvcDeletionPolicy: Delete`: a finalizer that deletes the
//!   StatefulSet and the claims before the cluster goes.
//! - [`backup_spec`], [`backup`]: the `EtcdBackup` resource and its controller (one Job per backup running
//!   `rustcd backup save`, the outcome read from the pod's termination message); [`cluster_backups`]: the
//!   cluster's `spec.backup` schedule, retention and `status.backup`. Restore (`spec.bootstrap.fromBackup`)
//!   is an init container of the first member while it bootstraps ([`objects`]).
//! - [`leader_election`]: a `coordination.k8s.io/v1` Lease, renewed and expired as client-go does.
//! - [`metrics`]: reconcile counts, durations, errors and executed steps for `/metrics`.
//!
//! Data loss is decided from API-server evidence only: [`volumes`] records, per ordinal, the UID of the
//! volume a member started on (PVC UID with `spec.storage`, pod UID for an emptyDir) in
//! `status.memberVolumes`; the same member on a different volume UID has lost its data. A PVC retained
//! from a removed member (`pvcRetentionPolicy: Retain`) is deleted when its ordinal is reused, before
//! the new member is added; with `Delete` it goes right after the StatefulSet shrinks.
//!
//! Changes of what the pods run are rolled by the planner (its rule 10): pods carry the hash of the
//! template they were created from ([`objects::template_hash`]), and outdated ones are restarted one at a
//! time (the StatefulSet uses `OnDelete`, so the operator decides when).
//!
//! Not here yet: switching TLS on or off for a running cluster (`spec.tls` is immutable), quorum-loss
//! recovery.

pub mod assess;
pub mod backup;
pub mod backup_spec;
pub mod cleanup;
pub mod cluster_backups;
pub mod cluster_status;
pub mod crd;
pub mod disruption_budget;
pub mod error;
pub mod etcd_client;
pub mod execute;
pub mod leader_election;
pub mod member_tls;
pub mod metrics;
pub mod names;
pub mod objects;
pub mod observe;
pub mod planner;
pub mod reconcile;
pub mod report;
pub mod spec;
pub mod tls;
pub mod volumes;

pub use cluster_status::EtcdClusterStatus;
pub use error::Error;
pub use planner::{next_step, Desired, Observed, ObservedMember, ObservedPod, Step};
pub use reconcile::{run, Context, Settings};
pub use spec::{EtcdCluster, EtcdClusterSpec};
