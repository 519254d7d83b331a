//! The `etcdserverpb.Watch/Watch` bidirectional stream handler.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, Semaphore};
use tonic::Status;

use super::hub::WatchHub;
use super::state::{Outbound, QueueState, StreamId};
use super::ERR_COMPACTED;
use crate::proto::etcdserverpb::{watch_request::RequestUnion, WatchCreateRequest, WatchRequest, WatchResponse};

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd fragments watch responses at `max_request_bytes` plus this gRPC
/// overhead allowance (`MaxRequestBytesWithOverhead`), i.e. 2 MiB by default.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Control responses (created / canceled / progress) a stream may have queued
/// before the server stops reading its requests (etcd's `ctrlStreamBufLen`).
const CONTROL_SLOTS: usize = 16;

/// Permission check applied to each create request; an error rejects the
/// watch with a `created` + `canceled` response carrying the error.
pub type Authorizer = Arc<dyn Fn(&WatchCreateRequest) -> Result<(), Status> + Send + Sync>;

/// The watch stream engine over a [`WatchHub`]: turns one stream of requests into one stream of
/// responses. Transport-agnostic; `grpc::watch` serves it as the tonic `Watch` service.
#[derive(Clone)]
pub struct WatchService {
    hub: WatchHub,
    authorizer: Option<Authorizer>,
    max_request_bytes: usize,
}

impl std::fmt::Debug for WatchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchService")
            .field("hub", &self.hub)
            .field("authorizer", &self.authorizer.is_some())
            .field("max_request_bytes", &self.max_request_bytes)
            .finish()
    }
}

impl WatchService {
    /// A service over `hub`, without permission checks.
    pub fn new(hub: WatchHub) -> Self {
        Self {
            hub,
            authorizer: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    /// Applies `authorizer` to every create request.
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Sets the server's `--max-request-bytes`; as in etcd, responses of
    /// `fragment` watchers are split once they reach this plus
    /// [`GRPC_OVERHEAD_BYTES`].
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Serves one watch stream from any request stream (used by the tonic
    /// handler; callable directly for in-process use). Must run inside a tokio
    /// runtime: it spawns the task reading `inbound`. The watchers live until
    /// the returned stream is dropped or `inbound` fails (a plain end of
    /// `inbound` only stops request processing, as in etcd).
    pub fn serve_stream<S>(&self, inbound: S) -> WatchResponseStream
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let authorizer = self.authorizer.clone();
        let (sid, rx, tx, queue) = self.hub.open_stream();
        let hub = self.hub.clone();
        tokio::spawn(run_requests(hub, authorizer, sid, inbound, tx));
        WatchResponseStream {
            rx,
            queue,
            hub: self.hub.clone(),
            max_request_bytes: self.max_request_bytes,
            pending: VecDeque::new(),
        }
    }
}

/// Reads one stream's requests and drives its progress timer. As in etcd, a
/// client closing its sending side (EOF) stops only the reading: the watchers
/// keep delivering until the response side is dropped (client cancelled or
/// disconnected) or the request stream fails; then all watchers are removed.
async fn run_requests<S>(
    hub: WatchHub,
    authorizer: Option<Authorizer>,
    sid: StreamId,
    mut inbound: S,
    tx: mpsc::UnboundedSender<Outbound>,
) where
    S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
{
    let slots = Arc::new(Semaphore::new(CONTROL_SLOTS));
    let interval = hub.inner.progress_interval.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reading = true;
    loop {
        let req = tokio::select! {
            _ = tx.closed() => break,
            _ = ticker.tick() => {
                hub.progress_tick(sid);
                continue;
            }
            req = inbound.next(), if reading => req,
        };
        let req = match req {
            Some(Ok(req)) => req,
            Some(Err(status)) => {
                tracing::debug!(%status, "watch stream receive failed");
                break;
            }
            None => {
                reading = false;
                continue;
            }
        };
        let Some(union) = req.request_union else {
            continue;
        };
        let permit = tokio::select! {
            _ = tx.closed() => break,
            p = slots.clone().acquire_owned() => p.ok(),
        };
        match union {
            RequestUnion::CreateRequest(create) => {
                if create.start_revision < 0 {
                    hub.reject_create(sid, -1, ERR_COMPACTED.to_string(), permit);
                    continue;
                }
                if let Some(Err(status)) = authorizer.as_ref().map(|a| a(&create)) {
                    hub.reject_create(sid, -1, go_status_string(&status), permit);
                    continue;
                }
                hub.create(sid, &create, permit);
            }
            RequestUnion::CancelRequest(cancel) => hub.cancel(sid, cancel.watch_id, permit),
            RequestUnion::ProgressRequest(_) => hub.request_progress(sid, permit),
        }
    }
    hub.close_stream(sid);
}

/// Formats a status the way grpc-go's `status.Error(..).Error()` does, which
/// is what etcd puts in `cancel_reason` (e.g. `rpc error: code =
/// PermissionDenied desc = etcdserver: permission denied`).
pub(crate) fn go_status_string(status: &Status) -> String {
    use tonic::Code::*;
    let code = match status.code() {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}

/// Splits a response whose encoding reaches `max_bytes` into fragments, each
/// with `fragment: true` except the last, as etcd's `sendFragments` does. A
/// fragment always holds at least one event; small responses and responses
/// with fewer than two events are returned unchanged.
pub(crate) fn fragment_response(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < max_bytes || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut template = resp.clone();
    template.events = Vec::new();
    template.fragment = true;
    let base = template.encoded_len();
    let mut out = Vec::new();
    let mut cur = template.clone();
    let mut size = base;
    for ev in resp.events {
        let len = ev.encoded_len();
        let field = 1 + prost::length_delimiter_len(len) + len;
        if !cur.events.is_empty() && size + field >= max_bytes {
            out.push(std::mem::replace(&mut cur, template.clone()));
            size = base;
        }
        size += field;
        cur.events.push(ev);
    }
    cur.fragment = false;
    out.push(cur);
    out
}

/// The server side of one watch stream: yields the responses the hub queued.
/// Dropping it ends the stream and removes its watchers.
pub struct WatchResponseStream {
    rx: mpsc::UnboundedReceiver<Outbound>,
    queue: Arc<QueueState>,
    hub: WatchHub,
    max_request_bytes: usize,
    pending: VecDeque<WatchResponse>,
}

impl std::fmt::Debug for WatchResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchResponseStream")
            .field("queued", &self.queue.queued.load(SeqCst))
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Stream for WatchResponseStream {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(r) = this.pending.pop_front() {
            return Poll::Ready(Some(Ok(r)));
        }
        let out = match this.rx.poll_recv(cx) {
            Poll::Ready(Some(out)) => out,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if out.counted {
            let left = this.queue.queued.fetch_sub(1, SeqCst).saturating_sub(1);
            if left <= this.hub.queue_capacity() / 2 && this.queue.starved.swap(false, SeqCst) {
                this.hub.wake_sync();
            }
        }
        let Outbound {
            mut response,
            header_rev,
            fragment,
            permit,
            ..
        } = out;
        drop(permit);
        response.header = Some(this.hub.inner.header.header(header_rev));
        if fragment {
            this.pending.extend(fragment_response(
                response,
                this.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES),
            ));
            match this.pending.pop_front() {
                Some(r) => Poll::Ready(Some(Ok(r))),
                None => Poll::Ready(None),
            }
        } else {
            Poll::Ready(Some(Ok(response)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::{Event, KeyValue};
    use proptest::prelude::*;

    fn ev(i: usize, len: usize) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: format!("k{i}").into_bytes(),
                value: vec![b'v'; len],
                mod_revision: 5,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    proptest! {
        /// Fragments re-assemble to the original, only the last one has
        /// `fragment == false`, and each multi-event fragment stays under the limit.
        #[test]
        fn fragments_reassemble(sizes in proptest::collection::vec(0usize..400, 0..40), max in 50usize..2000) {
            let resp = WatchResponse {
                watch_id: 3,
                events: sizes.iter().enumerate().map(|(i, l)| ev(i, *l)).collect(),
                ..Default::default()
            };
            let parts = fragment_response(resp.clone(), max);
            let n = parts.len();
            prop_assert!(n >= 1);
            if resp.encoded_len() < max || resp.events.len() < 2 {
                prop_assert_eq!(&parts, &vec![resp.clone()]);
            }
            let mut all = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                prop_assert_eq!(p.fragment, i + 1 < n);
                prop_assert_eq!(p.watch_id, 3);
                prop_assert!(!p.events.is_empty() || resp.events.is_empty());
                if p.events.len() > 1 {
                    prop_assert!(p.encoded_len() < max);
                }
                all.extend(p.events.iter().cloned());
            }
            prop_assert_eq!(all, resp.events);
        }
    }

    #[test]
    fn go_status_strings() {
        assert_eq!(
            go_status_string(&Status::unauthenticated("etcdserver: invalid auth token")),
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
        );
    }
}
