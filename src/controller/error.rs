//! Errors of the reconcile loop. Every one of them is retried (`error_policy` requeues with a delay);
//! the variants say where the failure came from, for logs and the `errors` metric's label.

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A call to a member's etcd API failed.
    #[error("etcd API of {endpoint}: {status}")]
    Etcd {
        /// `ip:port` that was dialed.
        endpoint: String,
        /// The gRPC status (or a transport failure turned into one).
        status: Box<tonic::Status>,
    },
    /// No member could be reached to execute a membership step.
    #[error("no reachable member to {0}")]
    NoEndpoint(String),
    /// A precondition on the Kubernetes side did not come true in time (retried on the next reconcile).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The object is not one the API server would hand out (missing namespace or uid), or its spec
    /// breaks the CRD's validation rules.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// The certificates the operator needs to reach the members are not (yet) in their Secrets.
    #[error("TLS not ready: {0}")]
    TlsNotReady(String),
    /// Serialising an object for a patch failed.
    #[error("serialising a patch: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Etcd { .. } => "etcd",
            Error::NoEndpoint(_) => "no_endpoint",
            Error::Timeout(_) => "timeout",
            Error::InvalidObject(_) => "invalid_object",
            Error::TlsNotReady(_) => "tls_not_ready",
            Error::Serialize(_) => "serialize",
        }
    }
}
