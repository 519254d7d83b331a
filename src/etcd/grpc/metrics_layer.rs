//! gRPC server metrics with etcd's (go-grpc-prometheus) names and labels.
//!
//! [`GrpcMetricsLayer`] wraps the gRPC part of the client router. For every call to a known
//! etcd method it counts:
//!
//! - `grpc_server_started_total{grpc_type,grpc_service,grpc_method}` when the call starts;
//! - `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}` when it ends, with
//!   the code taken from the `grpc-status` response header (trailers-only responses, which tonic
//!   uses for errors) or from the trailers frame at the end of the response body. A body that ends
//!   without a status counts `Unknown`; a call dropped before it ends (the client went away) counts
//!   `Canceled` for streaming calls and for calls dropped before the handler answered, `Unknown`
//!   for unary calls whose response was already under way;
//! - `grpc_server_msg_received_total` / `grpc_server_msg_sent_total`: gRPC messages, counted by
//!   parsing the 5-byte length-prefixed message framing of the request and response bodies (so a
//!   unary call that fails sends 0 messages, as in go-grpc-prometheus);
//! - `etcd_network_client_grpc_received_bytes_total` / `etcd_network_client_grpc_sent_bytes_total`:
//!   the sum of the lengths of the request / response body data frames (gRPC framing included;
//!   etcd's own counters measure somewhat differently, so only the order of magnitude compares).
//!
//! As go-grpc-prometheus's `InitializeMetrics` does for etcd, every method of the six etcd services
//! gets its started, message and per-code handled series at zero up front. Requests to other paths
//! or without a gRPC content type pass through uncounted (this bounds label cardinality).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tower::{Layer, Service};

/// Canonical gRPC code names as Go's `codes.Code.String()` prints them, indexed by code number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CODE_CANCELED: usize = 1;
const CODE_UNKNOWN: usize = 2;

/// The etcd v3 services served on the client port and their methods.
const SERVICES: &[(&str, &[&str])] = &[
    ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact"]),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
            "Downgrade",
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
];

/// go-grpc-prometheus's `grpc_type` label of a method.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") => "server_stream",
        _ => "unary",
    }
}

/// The counters of one method, resolved once so that calls do no label lookups.
struct MethodMetrics {
    streaming: bool,
    started: IntCounter,
    /// Indexed by gRPC code number.
    handled: Vec<IntCounter>,
    msg_received: IntCounter,
    msg_sent: IntCounter,
}

/// The gRPC server metrics, registered in a [`Registry`].
pub struct GrpcMetrics {
    /// Keyed by request path, e.g. `/etcdserverpb.KV/Range`.
    methods: HashMap<String, Arc<MethodMetrics>>,
    received_bytes: IntCounter,
    sent_bytes: IntCounter,
}

impl GrpcMetrics {
    /// Registers the metrics in `reg` and initialises every series of every etcd method to zero.
    pub fn new(reg: &Registry) -> Result<Self, prometheus::Error> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let msg_received = IntCounterVec::new(
            Opts::new(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
            ),
            &labels,
        )?;
        let msg_sent = IntCounterVec::new(
            Opts::new(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
            ),
            &labels,
        )?;
        let received_bytes = IntCounter::with_opts(Opts::new(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        ))?;
        let sent_bytes = IntCounter::with_opts(Opts::new(
            "etcd_network_client_grpc_sent_bytes_total",
            "The total number of bytes sent to grpc clients.",
        ))?;
        reg.register(Box::new(started.clone()))?;
        reg.register(Box::new(handled.clone()))?;
        reg.register(Box::new(msg_received.clone()))?;
        reg.register(Box::new(msg_sent.clone()))?;
        reg.register(Box::new(received_bytes.clone()))?;
        reg.register(Box::new(sent_bytes.clone()))?;

        let mut methods = HashMap::new();
        for (service, names) in SERVICES {
            for method in *names {
                let typ = grpc_type(service, method);
                let l = [typ, service, method];
                let handled = CODE_NAMES
                    .iter()
                    .map(|code| handled.get_metric_with_label_values(&[typ, service, method, code]))
                    .collect::<Result<Vec<_>, _>>()?;
                let m = MethodMetrics {
                    streaming: typ != "unary",
                    started: started.get_metric_with_label_values(&l)?,
                    handled,
                    msg_received: msg_received.get_metric_with_label_values(&l)?,
                    msg_sent: msg_sent.get_metric_with_label_values(&l)?,
                };
                methods.insert(format!("/{service}/{method}"), Arc::new(m));
            }
        }
        Ok(GrpcMetrics {
            methods,
            received_bytes,
            sent_bytes,
        })
    }
}

/// A tower [`Layer`] counting the gRPC calls that pass through it in [`GrpcMetrics`].
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<GrpcMetrics>,
}

impl GrpcMetricsLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<GrpcMetrics>) -> Self {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The code index of a `grpc-status` header, if present (unparseable or unknown codes are `Unknown`).
fn grpc_status(headers: &HeaderMap) -> Option<usize> {
    let v = headers.get("grpc-status")?;
    let code = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|c| *c < CODE_NAMES.len())
        .unwrap_or(CODE_UNKNOWN);
    Some(code)
}

impl<S, B> Service<Request<axum::body::Body>> for GrpcMetricsService<S>
where
    S: Service<Request<axum::body::Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin,
{
    type Response = Response<CountingResponseBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        // The clone is ready only if `self.inner` was polled ready: call the polled one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = match is_grpc(req.headers()) {
            true => self.metrics.methods.get(req.uri().path()).cloned(),
            false => None,
        };
        let Some(method) = method else {
            return Box::pin(async move {
                let resp = inner.call(req).await?;
                Ok(resp.map(|body| CountingResponseBody {
                    inner: body,
                    call: None,
                }))
            });
        };
        method.started.inc();
        let req = req.map(|body| {
            axum::body::Body::new(CountingRequestBody {
                inner: body,
                framing: MessageFraming::default(),
                messages: method.msg_received.clone(),
                bytes: self.metrics.received_bytes.clone(),
            })
        });
        let mut call = Call {
            method,
            sent_bytes: self.metrics.sent_bytes.clone(),
            framing: MessageFraming::default(),
            recorded: false,
            responded: false,
        };
        Box::pin(async move {
            // If this future is dropped at the await (the client went away), `call` records Canceled.
            let resp = inner.call(req).await;
            call.responded = true;
            let resp = match resp {
                Ok(resp) => resp,
                Err(e) => {
                    call.finish(CODE_UNKNOWN);
                    return Err(e);
                }
            };
            if let Some(code) = grpc_status(resp.headers()) {
                call.finish(code);
            }
            Ok(resp.map(|body| CountingResponseBody {
                inner: body,
                call: Some(call),
            }))
        })
    }
}

/// Counts complete gRPC messages in a byte stream of length-prefixed messages
/// (1 byte compression flag, 4 bytes big-endian length, then the message).
#[derive(Default)]
struct MessageFraming {
    /// Bytes of the current 5-byte prefix seen so far.
    prefix_pos: u8,
    /// The length read from the prefix so far.
    len: u32,
    /// Message bytes still to come once the prefix is complete.
    remaining: usize,
}

impl MessageFraming {
    /// Consumes `data`; returns the number of messages it completed.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while let Some((&first, rest)) = data.split_first() {
            if self.prefix_pos < 5 {
                if self.prefix_pos > 0 {
                    self.len = (self.len << 8) | u32::from(first);
                }
                self.prefix_pos += 1;
                data = rest;
                if self.prefix_pos == 5 {
                    self.remaining = self.len as usize;
                    if self.remaining == 0 {
                        done += 1;
                        self.reset();
                    }
                }
            } else {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                if self.remaining == 0 {
                    done += 1;
                    self.reset();
                }
            }
        }
        done
    }

    fn reset(&mut self) {
        self.prefix_pos = 0;
        self.len = 0;
        self.remaining = 0;
    }
}

/// One instrumented call: records `grpc_server_handled_total` exactly once.
struct Call {
    method: Arc<MethodMetrics>,
    sent_bytes: IntCounter,
    framing: MessageFraming,
    recorded: bool,
    /// The handler produced response headers.
    responded: bool,
}

impl Call {
    fn finish(&mut self, code: usize) {
        if !self.recorded {
            self.recorded = true;
            if let Some(c) = self.method.handled.get(code).or(self.method.handled.get(CODE_UNKNOWN)) {
                c.inc();
            }
        }
    }

    fn on_data(&mut self, data: &Bytes) {
        self.sent_bytes.inc_by(data.len() as u64);
        let n = self.framing.feed(data);
        if n > 0 {
            self.method.msg_sent.inc_by(n);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.recorded {
            // Dropped before a status was sent: the client cancelled (or the connection broke).
            let code = if self.method.streaming || !self.responded {
                CODE_CANCELED
            } else {
                CODE_UNKNOWN
            };
            self.finish(code);
        }
    }
}

/// A request body counting received bytes and messages.
struct CountingRequestBody {
    inner: axum::body::Body,
    framing: MessageFraming,
    messages: IntCounter,
    bytes: IntCounter,
}

impl Body for CountingRequestBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.bytes.inc_by(data.len() as u64);
                let n = this.framing.feed(data);
                if n > 0 {
                    this.messages.inc_by(n);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body counting sent bytes and messages and recording the call's status from its
/// trailers (or its end without one).
pub struct CountingResponseBody<B> {
    inner: B,
    /// None for requests that are not counted.
    call: Option<Call>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountingResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(call) = &mut this.call {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        call.on_data(data);
                    } else if let Some(trailers) = frame.trailers_ref() {
                        // Record before the trailers reach the client.
                        call.finish(grpc_status(trailers).unwrap_or(CODE_UNKNOWN));
                    }
                }
                Poll::Ready(None) => call.finish(CODE_UNKNOWN),
                // An error resets the stream: `Call`'s drop records it.
                Poll::Ready(Some(Err(_))) | Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{
        self as pb, maintenance_server::Maintenance, maintenance_server::MaintenanceServer,
    };
    use futures::Stream;
    use prometheus::{Encoder, TextEncoder};
    use tonic::Status;

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    /// Status succeeds, Defragment is refused, Snapshot streams two chunks.
    struct Fake;

    #[tonic::async_trait]
    impl Maintenance for Fake {
        async fn alarm(
            &self,
            _: tonic::Request<pb::AlarmRequest>,
        ) -> Result<tonic::Response<pb::AlarmResponse>, Status> {
            Err(Status::unimplemented("alarm"))
        }
        async fn status(
            &self,
            _: tonic::Request<pb::StatusRequest>,
        ) -> Result<tonic::Response<pb::StatusResponse>, Status> {
            Ok(tonic::Response::new(pb::StatusResponse {
                version: "3.5.0".into(),
                ..Default::default()
            }))
        }
        async fn defragment(
            &self,
            _: tonic::Request<pb::DefragmentRequest>,
        ) -> Result<tonic::Response<pb::DefragmentResponse>, Status> {
            Err(Status::permission_denied("etcdserver: permission denied"))
        }
        async fn hash(&self, _: tonic::Request<pb::HashRequest>) -> Result<tonic::Response<pb::HashResponse>, Status> {
            Err(Status::unimplemented("hash"))
        }
        async fn hash_kv(
            &self,
            _: tonic::Request<pb::HashKvRequest>,
        ) -> Result<tonic::Response<pb::HashKvResponse>, Status> {
            Err(Status::unimplemented("hash_kv"))
        }
        type SnapshotStream = SnapshotStream;
        async fn snapshot(
            &self,
            _: tonic::Request<pb::SnapshotRequest>,
        ) -> Result<tonic::Response<Self::SnapshotStream>, Status> {
            let chunks = (0..2).map(|i| {
                Ok(pb::SnapshotResponse {
                    remaining_bytes: 1 - i,
                    blob: vec![7; 100],
                    ..Default::default()
                })
            });
            Ok(tonic::Response::new(Box::pin(futures::stream::iter(chunks))))
        }
        async fn move_leader(
            &self,
            _: tonic::Request<pb::MoveLeaderRequest>,
        ) -> Result<tonic::Response<pb::MoveLeaderResponse>, Status> {
            Err(Status::unimplemented("move_leader"))
        }
        async fn downgrade(
            &self,
            _: tonic::Request<pb::DowngradeRequest>,
        ) -> Result<tonic::Response<pb::DowngradeResponse>, Status> {
            Err(Status::unimplemented("downgrade"))
        }
    }

    fn render(reg: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn counts_calls_codes_messages_and_bytes() {
        let reg = Registry::new();
        let metrics = Arc::new(GrpcMetrics::new(&reg).unwrap());
        // Pre-initialised at zero, as go-grpc-prometheus does.
        let before = render(&reg);
        assert!(before.contains(
            "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 0"
        ));
        assert!(before.contains(
            "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 0"
        ));
        assert_eq!(value(&before, "etcd_network_client_grpc_received_bytes_total"), Some(0));

        let app = tonic::service::Routes::new(MaintenanceServer::new(Fake))
            .into_axum_router()
            .layer(GrpcMetricsLayer::new(metrics))
            .route("/plain", axum::routing::get(|| async { "plain" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let mut client = etcd_client::Client::connect([format!("127.0.0.1:{port}")], None)
            .await
            .unwrap();
        assert_eq!(client.status().await.unwrap().version(), "3.5.0");
        assert_eq!(client.status().await.unwrap().version(), "3.5.0");
        let err = client.defragment().await.unwrap_err();
        assert!(
            matches!(&err, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::PermissionDenied),
            "{err:?}"
        );
        let mut snap = client.snapshot().await.unwrap();
        let mut chunks = 0;
        while snap.message().await.unwrap().is_some() {
            chunks += 1;
        }
        assert_eq!(chunks, 2);
        let text = render(&reg);
        server.abort();

        let m = |name: &str, labels: &str| value(&text, &format!("{name}{{{labels}}}"));
        let status = "grpc_method=\"Status\",grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"unary\"";
        let defrag = "grpc_method=\"Defragment\",grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"unary\"";
        let snapshot = "grpc_method=\"Snapshot\",grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"server_stream\"";
        assert!(
            text.contains(&format!("grpc_server_handled_total{{grpc_code=\"OK\",{status}}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "grpc_server_handled_total{{grpc_code=\"PermissionDenied\",{defrag}}} 1\n"
        )));
        assert_eq!(
            m("grpc_server_handled_total", &format!("grpc_code=\"OK\",{defrag}")),
            Some(0)
        );
        assert_eq!(
            m("grpc_server_handled_total", &format!("grpc_code=\"OK\",{snapshot}")),
            Some(1)
        );
        assert_eq!(m("grpc_server_started_total", status), Some(2));
        assert_eq!(m("grpc_server_started_total", defrag), Some(1));
        assert_eq!(m("grpc_server_started_total", snapshot), Some(1));
        assert_eq!(m("grpc_server_msg_received_total", status), Some(2));
        assert_eq!(m("grpc_server_msg_sent_total", status), Some(2));
        assert_eq!(m("grpc_server_msg_received_total", defrag), Some(1));
        assert_eq!(m("grpc_server_msg_sent_total", defrag), Some(0));
        assert_eq!(m("grpc_server_msg_sent_total", snapshot), Some(2));
        let received = value(&text, "etcd_network_client_grpc_received_bytes_total").unwrap();
        let sent = value(&text, "etcd_network_client_grpc_sent_bytes_total").unwrap();
        // 4 requests with at least their 5-byte prefix; 2 snapshot chunks of over 200 bytes each.
        assert!(received >= 4 * 5, "received {received}");
        assert!(sent > 200, "sent {sent}");
    }

    #[test]
    fn framing_counts_messages_across_chunk_boundaries() {
        let mut f = MessageFraming::default();
        // An empty message, then one of 3 bytes split mid-prefix and mid-body, then half a prefix.
        assert_eq!(f.feed(&[0, 0, 0, 0, 0, 0, 0]), 1);
        assert_eq!(f.feed(&[0, 0, 3, 1]), 0);
        assert_eq!(f.feed(&[2, 3, 0, 0]), 1);
        assert_eq!(f.feed(&[0, 0, 1]), 0);
        assert_eq!(f.feed(&[9]), 1);
        let mut big = vec![0u8, 0, 1, 0, 0];
        big.extend(std::iter::repeat_n(1, 65536));
        assert_eq!(f.feed(&big[..1000]), 0);
        assert_eq!(f.feed(&big[1000..]), 1);
    }
}
