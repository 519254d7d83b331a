//! The rustcd Kubernetes operator.
//!
//! (Module doc rewritten below.)

pub mod assess;
pub mod crd;
pub mod error;
pub mod etcd_client;
pub mod execute;
pub mod leader_election;
pub mod metrics;
pub mod names;
pub mod objects;
pub mod observe;
pub mod planner;
pub mod reconcile;
pub mod report;
pub mod spec;
pub mod status;
pub mod volumes;

pub use error::Error;
pub use planner::{next_step, Desired, Observed, ObservedMember, ObservedPod, Step};
pub use reconcile::{run, Context, Settings};
pub use spec::{EtcdCluster, EtcdClusterSpec};
pub use status::EtcdClusterStatus;
