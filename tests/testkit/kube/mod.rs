//! Fake Kubernetes for the operator's tests: an API server ([`fake_api`]), a kubelet that runs each
//! pod's rustcd container in Docker ([`kubelet`], [`sandbox`], [`secret_volumes`]) and a cert-manager
//! that issues Certificates into Secrets ([`cert_manager`]).

pub mod cert_manager;
pub mod fake_api;
pub mod kubelet;
pub mod sandbox;
pub mod secret_volumes;
