//! The etcd-client differential driver: runs one async scenario against Debian's etcd and
//! against rustcd, records the Debug print of every response or error (`Rec`), and compares
//! the normalised records; plus helpers for watch streams.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, Error, WatchResponse, WatchStream};

use super::{Kind, Norm, Server};

pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Records of one scenario run: (label, Debug print) plus server-chosen lease IDs.
#[derive(Default)]
pub struct Rec {
    pub lines: Vec<(String, String)>,
    pub leases: Vec<i64>,
}

impl Rec {
    pub fn add(&mut self, label: &str, v: impl Debug) {
        self.lines.push((label.to_string(), format!("{v:?}")));
    }

    pub fn res<T: Debug>(&mut self, label: &str, r: Result<T, Error>) -> Option<T> {
        match r {
            Ok(v) => {
                self.add(label, &v);
                Some(v)
            }
            Err(e) => {
                self.lines.push((label.to_string(), format!("ERROR {}", err_str(&e))));
                None
            }
        }
    }
}

/// A stable rendering of an error (gRPC code + message, no metadata).
pub fn err_str(e: &Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("grpc {:?}: {}", s.code(), s.message()),
        other => format!("{other}"),
    }
}

pub async fn connect(ep: &str, user: Option<(&str, &str)>) -> Result<Client, Error> {
    let mut opts = ConnectOptions::new()
        .with_timeout(OP_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(5));
    if let Some((u, p)) = user {
        opts = opts.with_user(u, p);
    }
    Client::connect([ep], Some(opts)).await
}

/// Runs `scenario` against etcd and rustcd and compares the normalised records.
pub async fn differential<F, Fut>(name: &str, scenario: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Rec>,
{
    if let Some(reason) = super::skip_reason() {
        super::print_skip(&reason);
        return;
    }
    let mut results = Vec::new();
    for kind in [Kind::Etcd, Kind::Rustcd] {
        let server = Server::start(kind, &[]);
        let mut norm = Norm::for_server(&server);
        let mut c = connect(&server.endpoint(), None).await.expect("connect");
        // learn member/cluster IDs from any response header (Status, else Range)
        let header = match c.status().await {
            Ok(s) => s.header().cloned(),
            Err(_) => c.get("", None).await.ok().and_then(|r| r.header().cloned()),
        };
        match header {
            Some(h) => norm.learn_header(h.cluster_id(), h.member_id()),
            None => eprintln!("WARNING: {}: no response header to learn IDs from", kind.name()),
        }
        drop(c);
        let rec = scenario(server.endpoint()).await;
        for l in &rec.leases {
            norm.add_lease(*l);
        }
        let lines: Vec<(String, String)> = rec
            .lines
            .iter()
            .map(|(l, t)| (l.clone(), norm.normalize(t).trim_end().to_string()))
            .collect();
        results.push((kind, lines, server));
    }
    let (a, b) = (&results[0].1, &results[1].1);
    let mut failures = Vec::new();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => failures.push(format!(
                "#{i} {}\n    etcd:   {}\n    rustcd: {}\n",
                x.or(y).map(|p| p.0.as_str()).unwrap_or(""),
                x.map(|p| p.1.as_str()).unwrap_or("<missing>"),
                y.map(|p| p.1.as_str()).unwrap_or("<missing>")
            )),
        }
    }
    if std::env::var_os("DIFFTEST_TRANSCRIPT").is_some() {
        for (l, t) in a {
            eprintln!("{l}\n    {t}");
        }
    }
    if !failures.is_empty() {
        panic!(
            "{name}: {} of {} records differ between etcd and rustcd:\n{}",
            failures.len(),
            a.len(),
            failures.concat()
        );
    }
}

pub async fn next_msg(ws: &mut WatchStream) -> Result<WatchResponse, String> {
    match tokio::time::timeout(OP_TIMEOUT, ws.message()).await {
        Err(_) => Err("timeout waiting for watch response".into()),
        Ok(Err(e)) => Err(err_str(&e)),
        Ok(Ok(None)) => Err("watch stream closed".into()),
        Ok(Ok(Some(r))) => Ok(r),
    }
}

pub fn watch_meta(r: &WatchResponse) -> String {
    format!(
        "watch_id={} created={} canceled={} compact_revision={} cancel_reason={:?} header_revision={} events={}",
        r.watch_id(),
        r.created(),
        r.canceled(),
        r.compact_revision(),
        r.cancel_reason(),
        r.header().map(|h| h.revision()).unwrap_or(-1),
        r.events().len()
    )
}

/// Reads watch responses until `n` events were seen; records each event
/// separately (batching into responses may legitimately differ).
pub async fn collect_events(rec: &mut Rec, label: &str, ws: &mut WatchStream, n: usize) {
    let mut seen = 0;
    while seen < n {
        match next_msg(ws).await {
            Ok(r) => {
                if r.events().is_empty() {
                    rec.add(&format!("{label}: non-event response"), watch_meta(&r));
                }
                for ev in r.events() {
                    seen += 1;
                    rec.add(&format!("{label}: event {seen} (watch {})", r.watch_id()), ev);
                }
                if r.canceled() {
                    rec.add(&format!("{label}: canceled"), watch_meta(&r));
                    return;
                }
            }
            Err(e) => {
                rec.add(&format!("{label}: error after {seen} events"), e);
                return;
            }
        }
    }
}
