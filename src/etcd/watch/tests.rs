//! Unit tests of the hub and the stream handler against a fake history.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

use super::fake::{FakeHeader, FakeHistory, Op, CLUSTER_ID, MEMBER_ID};
use super::*;
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use crate::proto::mvccpb::{event::EventType, Event};

pub(super) struct TestClient {
    pub(super) tx: Option<mpsc::UnboundedSender<Result<WatchRequest, Status>>>,
    pub(super) rx: WatchResponseStream,
}

impl TestClient {
    pub(super) fn send(&self, u: RequestUnion) {
        let tx = self.tx.as_ref().unwrap();
        tx.send(Ok(WatchRequest { request_union: Some(u) })).unwrap();
    }
    pub(super) fn create(&self, req: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(req));
    }
    pub(super) fn cancel(&self, watch_id: i64) {
        self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }));
    }
    pub(super) fn progress(&self) {
        self.send(RequestUnion::ProgressRequest(WatchProgressRequest {}));
    }
    pub(super) async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.next())
            .await
            .expect("timed out waiting for a watch response")
            .expect("stream ended")
            .expect("stream error")
    }
    /// The next response, which must be `created` for a live watcher.
    pub(super) async fn created(&mut self) -> i64 {
        let r = self.next().await;
        assert!(r.created && !r.canceled, "expected created, got {r:?}");
        r.watch_id
    }
    /// Asserts nothing but a stream progress response comes next.
    pub(super) async fn expect_quiet(&mut self) {
        self.progress();
        let r = self.next().await;
        assert_eq!(r.watch_id, -1, "expected only a progress response, got {r:?}");
        assert!(r.events.is_empty() && !r.created && !r.canceled);
    }
}

pub(super) fn setup(progress: Duration) -> (Arc<FakeHistory>, WatchHub, WatchService) {
    let history = FakeHistory::new();
    let hub = WatchHub::new(history.clone(), Arc::new(FakeHeader), progress);
    let svc = WatchService::new(hub.clone());
    (history, hub, svc)
}

pub(super) fn connect(svc: &WatchService) -> TestClient {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = svc.serve_stream(UnboundedReceiverStream::new(rx));
    TestClient { tx: Some(tx), rx }
}

pub(super) fn watch(key: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(super) fn prefix(p: &str) -> WatchCreateRequest {
    let mut end = p.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    WatchCreateRequest {
        key: p.as_bytes().to_vec(),
        range_end: end,
        ..Default::default()
    }
}

pub(super) fn rev(e: &Event) -> i64 {
    e.kv.as_ref().unwrap().mod_revision
}

pub(super) fn hour() -> Duration {
    Duration::from_secs(3600)
}

pub(super) async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn created_then_live_events_with_prev_kv_stripped() {
    let (h, hub, svc) = setup(hour());
    h.put(&hub, "a", "1");
    let mut c = connect(&svc);
    c.create(watch("a"));
    let r = c.next().await;
    assert!(r.created && !r.canceled);
    assert_eq!(r.watch_id, 0);
    let hd = r.header.unwrap();
    assert_eq!((hd.revision, hd.cluster_id, hd.member_id), (1, CLUSTER_ID, MEMBER_ID));

    h.put(&hub, "a", "2");
    h.put(&hub, "b", "x");
    let r = c.next().await;
    assert_eq!(r.watch_id, 0);
    assert_eq!(r.header.unwrap().revision, 2);
    assert_eq!(r.events.len(), 1);
    assert_eq!(rev(&r.events[0]), 2);
    assert!(r.events[0].prev_kv.is_none(), "prev_kv must be stripped");

    c.create(WatchCreateRequest {
        prev_kv: true,
        ..watch("a")
    });
    assert_eq!(c.created().await, 1);
    h.put(&hub, "a", "3");
    let mut rs = [c.next().await, c.next().await];
    rs.sort_by_key(|r| r.watch_id);
    assert!(rs[0].events[0].prev_kv.is_none());
    assert_eq!(rs[1].events[0].prev_kv.as_ref().unwrap().value, b"2");
    assert_eq!(rs[1].events[0].kv.as_ref().unwrap().value, b"3");
    c.expect_quiet().await;
}

#[tokio::test]
async fn filters_drop_puts_or_deletes() {
    let (h, hub, svc) = setup(hour());
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        ..prefix("k")
    });
    let noput = c.created().await;
    c.create(WatchCreateRequest {
        filters: vec![FilterType::Nodelete as i32],
        ..prefix("k")
    });
    let nodel = c.created().await;
    h.put(&hub, "k1", "v");
    let r = c.next().await;
    assert_eq!((r.watch_id, r.events[0].r#type), (nodel, EventType::Put as i32));
    h.write(&hub, &[Op::Del(b"k1")]);
    let r = c.next().await;
    assert_eq!((r.watch_id, r.events[0].r#type), (noput, EventType::Delete as i32));
    c.expect_quiet().await;
}

#[tokio::test]
async fn cancel_sends_canceled_and_stops_events() {
    let (h, hub, svc) = setup(hour());
    let mut c = connect(&svc);
    c.create(watch("a"));
    let id = c.created().await;
    c.cancel(id);
    let r = c.next().await;
    assert!(r.canceled && !r.created);
    assert_eq!(r.watch_id, id);
    assert!(r.cancel_reason.is_empty());
    assert_eq!(hub.watcher_count(), 0);
    h.put(&hub, "a", "1");
    c.cancel(42); // unknown: etcd sends nothing
    c.expect_quiet().await;
}

#[tokio::test]
async fn replay_from_past_revision_then_live() {
    let (h, hub, svc) = setup(hour());
    for i in 0..5 {
        h.put(&hub, &format!("k{i}"), "v");
    }
    h.write(&hub, &[Op::Put(b"k1", b"w"), Op::Del(b"k2")]);
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        start_revision: 2,
        prev_kv: true,
        ..prefix("k")
    });
    let r = c.next().await;
    assert!(r.created);
    assert_eq!(r.header.unwrap().revision, 6);
    let r = c.next().await;
    let revs: Vec<i64> = r.events.iter().map(rev).collect();
    assert_eq!(revs, vec![2, 3, 4, 5, 6, 6]);
    assert_eq!(r.events[4].prev_kv.as_ref().unwrap().value, b"v");
    h.put(&hub, "k9", "v");
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![7]);
}

#[tokio::test]
async fn future_start_revision_waits() {
    let (h, hub, svc) = setup(hour());
    h.put(&hub, "a", "0");
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        start_revision: 4,
        ..watch("a")
    });
    let r = c.next().await;
    assert!(r.created);
    assert_eq!(r.header.unwrap().revision, 1);
    for i in 0..4 {
        h.put(&hub, "a", &i.to_string());
    }
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![4]);
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![5]);
}

#[tokio::test]
async fn compacted_start_revision_is_canceled() {
    let (h, hub, svc) = setup(hour());
    for i in 0..6 {
        h.put(&hub, &format!("k{i}"), "v");
    }
    h.compact(5);
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        start_revision: 3,
        ..prefix("k")
    });
    let id = c.created().await;
    let r = c.next().await;
    assert!(r.canceled && !r.created);
    assert_eq!((r.watch_id, r.compact_revision), (id, 5));
    assert_eq!(r.cancel_reason, "");
    assert_eq!(hub.watcher_count(), 0);
    // The compaction revision itself is still watchable (as in etcd).
    c.create(WatchCreateRequest {
        start_revision: 5,
        ..prefix("k")
    });
    c.created().await;
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![5, 6]);
}

#[tokio::test]
async fn slow_consumer_is_caught_up_without_gaps() {
    let (h, hub, svc) = setup(hour());
    hub.set_queue_capacity(2);
    let mut c = connect(&svc);
    c.create(watch("a"));
    c.created().await;
    let reads = h.reads();
    for i in 1..=20 {
        h.put(&hub, "a", &i.to_string());
    }
    let mut seen = Vec::new();
    while seen.last() != Some(&20) {
        let r = c.next().await;
        seen.extend(r.events.iter().map(rev));
    }
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    assert!(h.reads() > reads, "catch-up must have read history");
    // Back to live delivery.
    h.put(&hub, "a", "x");
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![21]);
    c.expect_quiet().await;
}

#[tokio::test]
async fn unsynced_watcher_overtaken_by_compaction_is_canceled() {
    let (h, hub, svc) = setup(hour());
    hub.set_queue_capacity(1);
    let mut c = connect(&svc);
    c.create(watch("a"));
    let id = c.created().await;
    for i in 1..=5 {
        h.put(&hub, "a", &i.to_string());
    }
    h.compact(4);
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![1]);
    let r = c.next().await;
    assert!(r.canceled);
    assert_eq!((r.watch_id, r.compact_revision), (id, 4));
    assert_eq!(r.cancel_reason, "");
    eventually(|| hub.watcher_count() == 0).await;
}

#[tokio::test]
async fn huge_revision_is_replayed_whole() {
    let (h, hub, svc) = setup(hour());
    h.put(&hub, "k", "first");
    let keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    let ops: Vec<Op<'_>> = keys.iter().map(|k| Op::Put(k.as_bytes(), b"v")).collect();
    h.write(&hub, &ops);
    h.put(&hub, "k", "last");
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        start_revision: 1,
        ..prefix("k")
    });
    c.created().await;
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < 2502 {
        let r = c.next().await;
        let revs: Vec<i64> = r.events.iter().map(rev).collect();
        assert!(revs.windows(2).all(|w| w[0] <= w[1]));
        if revs.contains(&2) {
            assert_eq!(revs.iter().filter(|r| **r == 2).count(), 2500);
        }
        total += revs.len();
        sizes.push(revs.len());
    }
    assert_eq!(total, 2502, "{sizes:?}");
}

#[tokio::test]
async fn progress_request_reports_revision_with_watch_id_minus_one() {
    let (h, hub, svc) = setup(hour());
    h.put(&hub, "a", "1");
    h.put(&hub, "b", "1");
    let mut c = connect(&svc);
    c.progress();
    let r = c.next().await;
    assert_eq!(r.watch_id, -1);
    assert_eq!(r.header.unwrap().revision, 2);
    assert!(!r.created && !r.canceled && r.events.is_empty());
}

#[tokio::test]
async fn progress_request_waits_for_unsynced_watchers() {
    let (h, hub, svc) = setup(hour());
    hub.set_queue_capacity(1);
    let mut c = connect(&svc);
    c.create(watch("a"));
    c.created().await;
    for i in 1..=10 {
        h.put(&hub, "a", &i.to_string());
    }
    c.progress();
    let mut seen = Vec::new();
    loop {
        let r = c.next().await;
        if r.watch_id == -1 {
            let pr = r.header.unwrap().revision;
            assert!(pr >= 10);
            assert_eq!(seen, (1..=10).collect::<Vec<_>>(), "progress ran ahead of events");
            break;
        }
        seen.extend(r.events.iter().map(rev));
    }
}

#[tokio::test]
async fn progress_notify_only_for_idle_synced_watchers() {
    let (h, hub, svc) = setup(Duration::from_millis(100));
    h.put(&hub, "a", "1");
    let mut c = connect(&svc);
    c.create(watch("b"));
    c.created().await;
    c.create(WatchCreateRequest {
        progress_notify: true,
        ..watch("a")
    });
    let id = c.created().await;
    let r = c.next().await;
    assert_eq!(r.watch_id, id);
    assert!(r.events.is_empty() && !r.created && !r.canceled);
    assert_eq!(r.header.unwrap().revision, 1);
    h.put(&hub, "z", "1");
    let r = c.next().await;
    assert_eq!((r.watch_id, r.header.unwrap().revision), (id, 2));
}

#[tokio::test]
async fn duplicate_id_empty_range_and_negative_revision_are_rejected() {
    let (_h, _hub, svc) = setup(hour());
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        watch_id: 7,
        ..watch("a")
    });
    assert_eq!(c.created().await, 7);
    for (req, reason) in [
        (
            WatchCreateRequest {
                watch_id: 7,
                ..watch("b")
            },
            ERR_DUPLICATE_ID,
        ),
        (
            WatchCreateRequest {
                range_end: b"a".to_vec(),
                ..watch("b")
            },
            ERR_EMPTY_RANGE,
        ),
        (
            WatchCreateRequest {
                start_revision: -2,
                ..watch("b")
            },
            ERR_COMPACTED,
        ),
    ] {
        c.create(req);
        let r = c.next().await;
        assert!(r.created && r.canceled);
        assert_eq!((r.watch_id, r.cancel_reason.as_str()), (-1, reason));
    }
    c.create(watch("c"));
    assert_eq!(c.created().await, 0);
}

#[tokio::test]
async fn authorizer_rejection_is_created_and_canceled() {
    let (_h, hub, svc) = setup(hour());
    let svc = svc.with_authorizer(Arc::new(|req: &WatchCreateRequest| {
        if req.key.starts_with(b"secret") {
            Err(Status::permission_denied("etcdserver: permission denied"))
        } else {
            Ok(())
        }
    }));
    let mut c = connect(&svc);
    c.create(watch("secret/x"));
    let r = c.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(r.watch_id, -1);
    assert_eq!(
        r.cancel_reason,
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    c.create(watch("public"));
    c.created().await;
    assert_eq!(hub.watcher_count(), 1);
}

#[tokio::test]
async fn large_responses_are_fragmented_on_request() {
    let (h, hub, svc) = setup(hour());
    // Threshold: max_request_bytes (0 here) + etcd's 512 KiB gRPC overhead.
    let svc = svc.with_max_request_bytes(0);
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        fragment: true,
        ..prefix("k")
    });
    let frag = c.created().await;
    c.create(prefix("k"));
    let whole = c.created().await;
    let big = vec![b'x'; 100 * 1024];
    let keys: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
    let ops: Vec<Op<'_>> = keys.iter().map(|k| Op::Put(k.as_bytes(), &big)).collect();
    h.write(&hub, &ops);
    let mut frags = Vec::new();
    let mut wholes = Vec::new();
    while wholes.is_empty() || frags.last().is_none_or(|r: &WatchResponse| r.fragment) {
        let r = c.next().await;
        if r.watch_id == frag {
            frags.push(r);
        } else {
            assert_eq!(r.watch_id, whole);
            wholes.push(r);
        }
    }
    assert_eq!(wholes.len(), 1);
    assert_eq!(wholes[0].events.len(), 7);
    assert!(!wholes[0].fragment);
    assert!(frags.len() > 1);
    let n = frags.len();
    for (i, r) in frags.iter().enumerate() {
        assert_eq!(r.fragment, i + 1 < n);
        assert!(!r.events.is_empty());
        assert!(r.events.len() == 1 || prost::Message::encoded_len(r) < GRPC_OVERHEAD_BYTES);
    }
    let all: Vec<Event> = frags.into_iter().flat_map(|r| r.events).collect();
    assert_eq!(all, wholes[0].events);
}

#[tokio::test]
async fn half_close_keeps_watching_and_dropping_the_response_side_cleans_up() {
    let (h, hub, svc) = setup(hour());
    let mut c = connect(&svc);
    c.create(watch("a"));
    c.create(prefix("b"));
    c.created().await;
    c.created().await;
    assert_eq!(hub.watcher_count(), 2);
    c.tx = None; // client closes its sending side: etcd keeps the watchers
    h.put(&hub, "a", "1");
    let r = c.next().await;
    assert_eq!(r.events.iter().map(rev).collect::<Vec<_>>(), vec![1]);
    assert_eq!(hub.watcher_count(), 2);
    drop(c.rx); // response side gone (client cancelled / disconnected)
    eventually(|| hub.watcher_count() == 0).await;
    assert_eq!(hub.stats().streams, 0);

    // A failing request stream ends everything too.
    let c2 = connect(&svc);
    c2.create(watch("a"));
    eventually(|| hub.watcher_count() == 1).await;
    c2.tx.as_ref().unwrap().send(Err(Status::internal("broken"))).unwrap();
    eventually(|| hub.watcher_count() == 0).await;
    let mut rx = c2.rx;
    let first = rx.next().await.unwrap().unwrap();
    assert!(first.created);
    assert!(tokio::time::timeout(Duration::from_secs(5), rx.next())
        .await
        .unwrap()
        .is_none());
}

#[test]
fn notify_without_watchers_touches_no_lock() {
    let h = FakeHistory::new();
    let hub = WatchHub::new(h.clone(), Arc::new(FakeHeader), hour());
    let guard = hub.lock_state();
    // Would deadlock if notify took the hub lock.
    let (r, evs) = h.apply(&[Op::Put(b"a", b"1")]);
    hub.notify(r, &evs);
    drop(guard);
    assert_eq!(hub.notified_revision(), 1);
}

#[tokio::test]
async fn restore_catches_synced_watchers_up_from_history() {
    let (h, hub, svc) = setup(hour());
    let mut c = connect(&svc);
    c.create(watch("a"));
    c.created().await;
    h.put(&hub, "a", "1");
    assert_eq!(c.next().await.events.iter().map(rev).collect::<Vec<_>>(), vec![1]);
    // Revisions 2..=4 land in the store without notify (snapshot install).
    for v in ["2", "3", "4"] {
        h.apply(&[Op::Put(b"a", v.as_bytes())]);
    }
    hub.restore();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.extend(c.next().await.events.iter().map(rev));
    }
    assert_eq!(seen, vec![2, 3, 4]);
    h.put(&hub, "a", "5");
    assert_eq!(c.next().await.events.iter().map(rev).collect::<Vec<_>>(), vec![5]);
}
