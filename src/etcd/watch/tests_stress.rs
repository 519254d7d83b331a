//! Concurrency tests: replay and slow consumers under continuous writes.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use super::fake::Op;
use super::tests::{connect, hour, prefix, rev, setup, watch};
use super::watcher::KeyRange;
use super::History;
use crate::proto::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest};
use crate::proto::mvccpb::{event::EventType, Event};

#[tokio::test]
async fn concurrent_writes_during_replay_no_gap_no_duplicate() {
    let (h, hub, svc) = setup(hour());
    hub.set_queue_capacity(3);
    for i in 0..40 {
        h.write(
            &hub,
            &[
                Op::Put(format!("k{}", i % 7).as_bytes(), b"v"),
                Op::Put(format!("k{}", (i + 3) % 7).as_bytes(), b"w"),
            ],
        );
    }
    let mut c = connect(&svc);
    c.create(WatchCreateRequest {
        start_revision: 1,
        prev_kv: true,
        ..prefix("k")
    });
    c.created().await;
    h.set_read_delay(Duration::from_micros(300));
    let (h2, hub2) = (h.clone(), hub.clone());
    let writer = std::thread::spawn(move || {
        let mut last = 0;
        for i in 0..400 {
            let k = format!("k{}", i % 11);
            last = if i % 5 == 4 {
                h2.write(&hub2, &[Op::Del(k.as_bytes()), Op::Put(b"k-x", b"y")])
            } else {
                h2.put(&hub2, &k, &i.to_string())
            };
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        last
    });
    let mut got: Vec<Event> = Vec::new();
    let mut per_response_revs: Vec<Vec<i64>> = Vec::new();
    let mut n = 0;
    loop {
        let r = c.next().await;
        n += 1;
        if n % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        per_response_revs.push(r.events.iter().map(rev).collect());
        got.extend(r.events);
        if writer.is_finished() {
            let last = h.current_revision();
            if got.last().map(rev) == Some(last) {
                break;
            }
        }
    }
    let last = writer.join().unwrap();
    let want = h.events_since(1, b"k", b"l", usize::MAX).unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want, "events differ from history (gap, duplicate or order)");
    assert_eq!(got.last().map(rev), Some(last));
    // A revision never spans two responses.
    let mut owner = std::collections::HashMap::new();
    for (i, revs) in per_response_revs.iter().enumerate() {
        for r in revs {
            assert_eq!(*owner.entry(*r).or_insert(i), i, "revision {r} split");
        }
    }
}

/// Several watchers on one stream with a tiny queue, a slow reader, slow
/// history reads and a writer that never pauses long: watchers keep falling
/// to unsynced / tail and back. Each must see exactly its slice of history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_under_continuous_writes_sees_exact_history() {
    let (h, hub, svc) = setup(hour());
    hub.set_queue_capacity(1);
    h.set_read_delay(Duration::from_millis(1));
    let mut c = connect(&svc);
    let reqs = [
        WatchCreateRequest {
            prev_kv: true,
            ..prefix("k")
        },
        watch("k3"),
        WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..prefix("k")
        },
    ];
    let mut ids = Vec::new();
    for r in &reqs {
        c.create(r.clone());
        ids.push(c.created().await);
    }
    let (h2, hub2) = (h.clone(), hub.clone());
    let writer = std::thread::spawn(move || {
        for i in 0..1500u32 {
            let k = format!("k{}", i % 13);
            match i % 6 {
                5 => h2.write(&hub2, &[Op::Del(k.as_bytes()), Op::Put(b"k3", b"t")]),
                4 => h2.write(&hub2, &[Op::Del(k.as_bytes())]),
                _ => h2.put(&hub2, &k, &i.to_string()),
            };
            // ~0.5 s of steady writes.
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let mut got: HashMap<i64, Vec<Event>> = HashMap::new();
    let mut owner: HashMap<(i64, i64), usize> = HashMap::new();
    let mut n = 0usize;
    loop {
        let r = tokio::time::timeout(Duration::from_millis(1500), c.rx.next()).await;
        let Ok(Some(Ok(r))) = r else {
            assert!(writer.is_finished(), "stalled while writes were running");
            break; // quiet for 1.5 s after the writer finished: all delivered
        };
        n += 1;
        if n % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for e in &r.events {
            let o = *owner.entry((r.watch_id, rev(e))).or_insert(n);
            assert_eq!(o, n, "revision {} split across responses", rev(e));
        }
        got.entry(r.watch_id).or_default().extend(r.events);
    }
    writer.join().unwrap();
    let all = h.events_since(1, b"\0", b"\0", usize::MAX).unwrap();
    for (req, id) in reqs.iter().zip(&ids) {
        let range = KeyRange::from_request(&req.key, &req.range_end).unwrap();
        let no_put = !req.filters.is_empty();
        let want: Vec<Event> = all
            .iter()
            .filter(|e| range.contains(&e.kv.as_ref().unwrap().key))
            .filter(|e| !(no_put && e.r#type == EventType::Put as i32))
            .map(|e| Event {
                prev_kv: if req.prev_kv { e.prev_kv.clone() } else { None },
                ..e.clone()
            })
            .collect();
        let got = got.remove(id).unwrap_or_default();
        assert_eq!(got.len(), want.len(), "watcher {id}");
        assert!(got == want, "watcher {id}: events differ from history");
    }
    let stats = hub.stats();
    eprintln!("{stats:?}");
    assert!(stats.fell_behind > 0 && stats.tail_entries > 0, "{stats:?}");
}
