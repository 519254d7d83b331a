//! End-to-end tests: the service served by tonic on 127.0.0.1:0, driven by the
//! `etcd_client` crate. The same scenario can be run against a real etcd
//! (`RUSTCD_REAL_ETCD=host:port cargo test -- --ignored --test-threads=1 real_etcd`,
//! etcd started with `--max-request-bytes 2048
//! --experimental-watch-progress-notify-interval 1s`) to check
//! that both behave alike.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchResponse, WatchStream};
use tokio_stream::wrappers::TcpListenerStream;

use super::fake::{FakeHeader, FakeHistory, Op};
use super::{WatchHub, WatchService};
use crate::grpc::watch::WatchGrpc;
use crate::proto::etcdserverpb::watch_server::WatchServer;

/// Where writes go: the fake history behind our hub, or a real etcd.
enum Backend {
    Fake(Arc<FakeHistory>, WatchHub),
    Real(Box<Client>),
}

impl Backend {
    async fn put(&mut self, k: &str, v: &str) -> i64 {
        match self {
            Self::Fake(h, hub) => h.put(hub, k, v),
            Self::Real(c) => c.put(k, v, None).await.unwrap().header().unwrap().revision(),
        }
    }
    async fn del(&mut self, k: &str) -> i64 {
        match self {
            Self::Fake(h, hub) => h.write(hub, &[Op::Del(k.as_bytes())]),
            Self::Real(c) => c.delete(k, None).await.unwrap().header().unwrap().revision(),
        }
    }
    async fn compact(&mut self, rev: i64) {
        match self {
            Self::Fake(h, _) => h.compact(rev),
            Self::Real(c) => {
                c.compact(rev, None).await.unwrap();
            }
        }
    }
    fn is_fake(&self) -> bool {
        matches!(self, Self::Fake(..))
    }
}

async fn next(ws: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), ws.message())
        .await
        .expect("timed out waiting for a watch response")
        .expect("watch stream error")
        .expect("watch stream ended")
}

fn summary(r: &WatchResponse) -> Vec<(EventType, String, i64, Option<String>)> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().unwrap();
            (
                e.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.mod_revision(),
                e.prev_kv().map(|p| String::from_utf8_lossy(p.value()).into_owned()),
            )
        })
        .collect()
}

/// The shared scenario; `client` talks to the server under test.
async fn scenario(client: &mut Client, mut b: Backend, p: &str) {
    let k = |s: &str| format!("{p}{s}");
    let r1 = b.put(&k("a"), "1").await;
    let r2 = b.put(&k("b"), "2").await;
    let r3 = b.del(&k("a")).await;

    // Replay from a past revision with prev_kv.
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(r1)
        .with_prev_key();
    let mut ws = client.watch(p, Some(opts)).await.unwrap();
    let m = next(&mut ws).await;
    assert!(m.created() && !m.canceled(), "{m:?}");
    assert_eq!(m.header().unwrap().revision(), r3);
    let id0 = m.watch_id();
    let mut evs = Vec::new();
    while evs.len() < 3 {
        let m = next(&mut ws).await;
        assert_eq!(m.watch_id(), id0);
        evs.extend(summary(&m));
    }
    assert_eq!(
        evs,
        vec![
            (EventType::Put, k("a"), r1, None),
            (EventType::Put, k("b"), r2, None),
            (EventType::Delete, k("a"), r3, Some("1".into())),
        ]
    );

    // Live.
    let r4 = b.put(&k("b"), "3").await;
    let m = next(&mut ws).await;
    assert_eq!(m.header().unwrap().revision(), r4);
    assert_eq!(summary(&m), vec![(EventType::Put, k("b"), r4, Some("2".into()))]);

    // Progress request: watch id -1, current revision.
    ws.request_progress().await.unwrap();
    let m = next(&mut ws).await;
    assert_eq!(m.watch_id(), -1);
    assert_eq!(m.header().unwrap().revision(), r4);
    assert!(m.events().is_empty() && !m.created() && !m.canceled());

    // A second watch on the same stream, at a future revision.
    let opts = WatchOptions::new().with_start_revision(r4 + 2);
    ws.watch(k("z"), Some(opts)).await.unwrap();
    let m = next(&mut ws).await;
    assert!(m.created());
    let id1 = m.watch_id();
    assert_ne!(id0, id1);
    let r5 = b.put(&k("z"), "x").await;
    let r6 = b.put(&k("z"), "y").await;
    let (mut got0, mut got1) = (Vec::new(), Vec::new());
    while got0.len() < 2 || got1.is_empty() {
        let m = next(&mut ws).await;
        let revs = summary(&m).into_iter().map(|e| e.2);
        if m.watch_id() == id0 {
            got0.extend(revs);
        } else {
            assert_eq!(m.watch_id(), id1);
            got1.extend(revs);
        }
    }
    assert_eq!((got0, got1), (vec![r5, r6], vec![r6]));

    // Cancel.
    ws.cancel(id0).await.unwrap();
    let m = next(&mut ws).await;
    assert!(m.canceled() && !m.created());
    assert_eq!(m.watch_id(), id0);

    // Watch at a compacted revision: created, then canceled with compact_revision.
    b.compact(r3).await;
    let opts = WatchOptions::new().with_prefix().with_start_revision(r1);
    ws.watch(p, Some(opts)).await.unwrap();
    let m = next(&mut ws).await;
    assert!(m.created() && !m.canceled());
    let id2 = m.watch_id();
    let m = next(&mut ws).await;
    assert!(m.canceled(), "{m:?}");
    assert_eq!((m.watch_id(), m.compact_revision()), (id2, r3));
    assert_eq!(m.header().unwrap().revision(), 0);
    // etcd leaves cancel_reason empty here (clients derive the error from compact_revision).
    assert_eq!(m.cancel_reason(), "");

    if b.is_fake() {
        // progress_notify (interval shortened for the test server).
        let opts = WatchOptions::new().with_progress_notify();
        ws.watch(k("q"), Some(opts)).await.unwrap();
        let id3 = next(&mut ws).await.watch_id();
        let m = next(&mut ws).await;
        assert_eq!(m.watch_id(), id3);
        assert!(m.events().is_empty() && !m.canceled());
        assert_eq!(m.header().unwrap().revision(), r6);
    }

    // Closing the sending side does not end the watches (etcd keeps serving).
    let (sender, mut responses) = ws.split();
    drop(sender);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r7 = b.put(&k("z"), "after-close").await;
    let m = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("no event after half-close")
        .unwrap()
        .unwrap();
    assert_eq!(m.watch_id(), id1);
    assert_eq!(summary(&m).into_iter().map(|e| e.2).collect::<Vec<_>>(), vec![r7]);
}

#[tokio::test]
async fn etcd_client_against_rustcd_watch_service() {
    let history = FakeHistory::new();
    let hub = WatchHub::new(history.clone(), Arc::new(FakeHeader), Duration::from_millis(200));
    let svc = WatchService::new(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(served(svc))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = Client::connect([addr.to_string()], None).await.unwrap();
    scenario(&mut client, Backend::Fake(history.clone(), hub.clone()), "p/").await;
    assert_eq!(hub.watcher_count(), 2);
    drop(client);
    for _ in 0..500 {
        if hub.watcher_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.watcher_count(), 0, "watchers must go with the stream");
    server.abort();
}

/// The same scenario against a real etcd (`RUSTCD_REAL_ETCD=host:port`).
#[tokio::test]
#[ignore]
async fn real_etcd_behaves_like_the_scenario() {
    let Ok(ep) = std::env::var("RUSTCD_REAL_ETCD") else {
        return;
    };
    let mut client = Client::connect([ep.as_str()], None).await.unwrap();
    let writer = Client::connect([ep.as_str()], None).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    scenario(&mut client, Backend::Real(Box::new(writer)), &format!("w{nanos}/")).await;
}

/// Raw-protocol scenario (fragment flags are invisible through `etcd_client`):
/// a catch-up response larger than `max_request_bytes` (2048 here) plus 512 KiB
/// of gRPC overhead allowance is split for
/// a watcher that asked for fragments and sent whole otherwise; an idle
/// `progress_notify` watcher gets an empty response with its own id.
async fn raw_scenario(endpoint: String, mut b: Backend, p: &str) {
    use crate::proto::etcdserverpb::{
        watch_client::WatchClient, watch_request::RequestUnion, WatchCreateRequest, WatchRequest,
    };
    use futures::StreamExt;
    const N: usize = 300;
    const THRESHOLD: usize = 2048 + super::GRPC_OVERHEAD_BYTES;

    let big = "v".repeat(1900);
    let mut revs = Vec::new();
    for i in 0..N {
        revs.push(b.put(&format!("{p}{i}"), &big).await);
    }
    let mut end = p.as_bytes().to_vec();
    if let Some(l) = end.last_mut() {
        *l += 1;
    }
    let create = |key: Vec<u8>, range_end: Vec<u8>, fragment: bool, progress: bool| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            range_end,
            start_revision: if progress { 0 } else { revs[0] },
            fragment,
            progress_notify: progress,
            ..Default::default()
        })),
    };
    let reqs = vec![
        create(p.as_bytes().to_vec(), end.clone(), true, false),
        create(p.as_bytes().to_vec(), end.clone(), false, false),
        create(format!("{p}q").into_bytes(), Vec::new(), false, true),
    ];
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for r in reqs {
        tx.send(r).unwrap();
    }
    let mut client = WatchClient::connect(format!("http://{endpoint}")).await.unwrap();
    let mut stream = client
        .watch(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut created = Vec::new();
    let mut frag = Vec::new();
    let mut whole = Vec::new();
    let mut progress = None;
    while progress.is_none() || frag.last().is_none_or(|f: &(bool, usize, usize)| f.0) || whole.is_empty() {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("timed out")
            .unwrap()
            .unwrap();
        let size = prost::Message::encoded_len(&r);
        if r.created {
            assert!(!r.canceled, "{r:?}");
        }
        if r.created {
            created.push(r.watch_id);
        } else if created.first() == Some(&r.watch_id) {
            frag.push((r.fragment, r.events.len(), size));
        } else if created.get(1) == Some(&r.watch_id) {
            assert!(!r.fragment);
            whole.push(r.events.len());
        } else {
            assert_eq!(created.get(2), Some(&r.watch_id), "{r:?}");
            assert!(r.events.is_empty());
            progress = r.header.map(|h| h.revision);
        }
    }
    drop(tx);
    assert_eq!(whole, vec![N]);
    assert!(frag.len() > 1, "{frag:?}");
    assert_eq!(frag.iter().map(|f| f.1).sum::<usize>(), N);
    for (i, (fragment, n, size)) in frag.iter().enumerate() {
        assert_eq!(*fragment, i + 1 < frag.len(), "{frag:?}");
        assert!(*n == 1 || *size < THRESHOLD, "{frag:?}");
    }
    assert_eq!(progress, Some(revs[N - 1]));
}

#[tokio::test]
async fn raw_fragments_and_progress_notify_against_rustcd() {
    let history = FakeHistory::new();
    let hub = WatchHub::new(history.clone(), Arc::new(FakeHeader), Duration::from_millis(200));
    let svc = WatchService::new(hub.clone()).with_max_request_bytes(2048);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(served(svc))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    raw_scenario(addr.to_string(), Backend::Fake(history, hub), "f/").await;
    server.abort();
}

/// Against a real etcd started with `--max-request-bytes 2048
/// --experimental-watch-progress-notify-interval 1s` (`RUSTCD_REAL_ETCD`).
#[tokio::test]
#[ignore]
async fn real_etcd_raw_fragments_and_progress_notify() {
    let Ok(ep) = std::env::var("RUSTCD_REAL_ETCD") else {
        return;
    };
    let writer = Client::connect([ep.as_str()], None).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    raw_scenario(ep, Backend::Real(Box::new(writer)), &format!("f{nanos}/")).await;
}

/// What a real etcd with auth enabled answers a watch the user may not read
/// (`RUSTCD_REAL_ETCD` plus `RUSTCD_REAL_ETCD_USER=name:password` of a user
/// without permissions); `authorizer_rejection_is_created_and_canceled` checks
/// rustcd produces the same response.
#[tokio::test]
#[ignore]
async fn real_etcd_permission_denied_watch() {
    let (Ok(ep), Ok(user)) = (
        std::env::var("RUSTCD_REAL_ETCD"),
        std::env::var("RUSTCD_REAL_ETCD_USER"),
    ) else {
        return;
    };
    let (name, password) = user.split_once(':').unwrap();
    let opts = etcd_client::ConnectOptions::new().with_user(name, password);
    let mut c = Client::connect([ep.as_str()], Some(opts)).await.unwrap();
    let mut ws = c.watch("secret", None).await.unwrap();
    let m = next(&mut ws).await;
    assert!(m.created() && m.canceled(), "{m:?}");
    assert_eq!(m.watch_id(), -1);
    assert_eq!(
        m.cancel_reason(),
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
}

/// Serves a fixed history (puts k1..k6 at revisions 1..6, compacted at 3, then
/// a put of k7 every 100 ms) on `RUSTCD_WATCH_SERVE_ADDR` for 6 s, for manual
/// checks with `etcdctl watch` (`--prev-kv`, `--rev`, `-i` + `progress`).
#[tokio::test]
#[ignore]
async fn serve_fake_history_for_etcdctl() {
    let Ok(addr) = std::env::var("RUSTCD_WATCH_SERVE_ADDR") else {
        return;
    };
    let history = FakeHistory::new();
    let hub = WatchHub::new(history.clone(), Arc::new(FakeHeader), Duration::from_secs(1));
    for i in 1..=6 {
        history.put(&hub, &format!("k{i}"), &format!("v{i}"));
    }
    history.compact(3);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(served(WatchService::new(hub.clone())))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    for i in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if i % 10 == 9 {
            history.put(&hub, "k7", &i.to_string());
        }
    }
    server.abort();
}

/// `svc` as the server's tonic Watch service (without an auth store).
fn served(svc: WatchService) -> WatchServer<WatchGrpc> {
    WatchServer::new(WatchGrpc::without_auth(svc))
}
