//! A concurrent Put/Get/Cas workload for linearizability tests: `CLIENTS` clients on
//! `KEYS` keys with unique written values, each recording its operations (an error or a
//! timeout is an operation of unknown outcome, and the client reconnects). Client `i`
//! talks to endpoint `i % n`, so a cluster run spreads clients over its members.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::linearizability::{check, CheckResult, Input, Operation, Output, Recorder};

pub const CLIENTS: usize = 6;
const KEYS: usize = 4;
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on operations per client, whatever the server's speed.
const MAX_OPS_PER_CLIENT: u64 = 20_000;

async fn connect(ep: &str) -> Option<Client> {
    let opts = ConnectOptions::new()
        .with_timeout(OP_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(1));
    let mut c = tokio::time::timeout(OP_TIMEOUT, Client::connect([ep], Some(opts)))
        .await
        .ok()?
        .ok()?;
    // an unrecorded read on a key outside the workload proves the server answers
    tokio::time::timeout(OP_TIMEOUT, c.get("lin/probe", None))
        .await
        .ok()?
        .ok()?;
    Some(c)
}

fn value_of(kvs: &[etcd_client::KeyValue]) -> Option<String> {
    kvs.first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// One client: random Get/Put/Cas on `KEYS` keys with unique written values,
/// recorded in `rec`. Any error or timeout records the op as unknown and
/// makes the client reconnect (with a probe) before its next op.
async fn client_loop(id: usize, ep: String, rec: Arc<Recorder>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client: Option<Client> = None;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && seq < MAX_OPS_PER_CLIENT {
        let Some(c) = client.as_mut() else {
            client = connect(&ep).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        seq += 1;
        let key = format!("lin/k{}", rng.random_range(0..KEYS));
        let value = format!("c{id}-{seq}");
        let roll = rng.random_range(0..100);
        let input = if roll < 40 {
            Input::Get { key: key.clone() }
        } else if roll < 70 {
            Input::Put {
                key: key.clone(),
                value: value.clone(),
            }
        } else {
            let expected = seen.get(&key).cloned().unwrap_or_else(|| "c0-1".to_string());
            Input::Cas {
                key: key.clone(),
                expected,
                new: value.clone(),
            }
        };
        let call = rec.now();
        let result: Option<Output> = match &input {
            Input::Get { .. } => match tokio::time::timeout(OP_TIMEOUT, c.get(key.clone(), None)).await {
                Ok(Ok(r)) => Some(Output::Get(value_of(r.kvs()))),
                _ => None,
            },
            Input::Put { .. } => {
                match tokio::time::timeout(OP_TIMEOUT, c.put(key.clone(), value.clone(), None)).await {
                    Ok(Ok(_)) => Some(Output::Put),
                    _ => None,
                }
            }
            Input::Cas { expected, .. } => {
                let txn = Txn::new()
                    .when([Compare::value(key.clone(), CompareOp::Equal, expected.clone())])
                    .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
                match tokio::time::timeout(OP_TIMEOUT, c.txn(txn)).await {
                    Ok(Ok(r)) => Some(Output::Cas(r.succeeded())),
                    _ => None,
                }
            }
        };
        let ret = rec.now();
        match result {
            Some(output) => {
                match &output {
                    Output::Get(Some(v)) => {
                        seen.insert(key, v.clone());
                    }
                    Output::Put | Output::Cas(true) => {
                        seen.insert(key, value);
                    }
                    _ => {}
                }
                rec.record(Operation::completed(id, input, output, call, ret));
            }
            None => {
                rec.record(Operation::unknown(id, input, call));
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A running workload.
pub struct Workload {
    rt: tokio::runtime::Runtime,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts `CLIENTS` clients spread over `endpoints`.
    pub fn start(endpoints: &[String], seed: u64) -> Workload {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let rec = Arc::new(Recorder::new());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CLIENTS)
            .map(|id| {
                let ep = endpoints[id % endpoints.len()].clone();
                rt.spawn(client_loop(id, ep, rec.clone(), stop.clone(), seed * 100 + id as u64))
            })
            .collect();
        Workload { rt, rec, stop, tasks }
    }

    /// The recorder's clock (for marking fault times).
    pub fn now(&self) -> u64 {
        self.rec.now()
    }

    /// Operations completed (not unknown) so far.
    pub fn completed(&self) -> usize {
        self.rec
            .history()
            .iter()
            .filter(|o| o.output != Output::Unknown)
            .count()
    }

    /// Stops the clients and returns the history.
    pub fn finish(self) -> Vec<Operation> {
        self.stop.store(true, Ordering::Relaxed);
        let tasks = self.tasks;
        self.rt.block_on(async {
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(10), t)
                    .await
                    .expect("client did not stop within 10 s")
                    .expect("client task panicked");
            }
        });
        self.rec.history()
    }
}

/// Prints what a history holds (and how much completed after each restart); returns
/// (completed, unknown-outcome) counts. Asserts both CAS outcomes occurred.
pub fn summarize_history(name: &str, h: &[Operation], restarts: &[u64]) -> (usize, usize) {
    let unknown = h.iter().filter(|o| o.output == Output::Unknown).count();
    let completed = h.len() - unknown;
    let mut line = format!(
        "{name}: {} ops ({completed} completed, {unknown} unknown outcome)",
        h.len()
    );
    for (i, &t) in restarts.iter().enumerate() {
        let after = h.iter().filter(|o| o.output != Output::Unknown && o.call > t).count();
        line.push_str(&format!("; {after} completed after restart {}", i + 1));
    }
    let count = |want: &Output| h.iter().filter(|o| &o.output == want).count();
    let (cas_ok, cas_failed) = (count(&Output::Cas(true)), count(&Output::Cas(false)));
    // unknown-outcome writes whose value a completed read later returned
    let observed: std::collections::HashSet<&str> = h
        .iter()
        .filter_map(|o| match &o.output {
            Output::Get(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let seen_unknown = h
        .iter()
        .filter(|o| o.output == Output::Unknown)
        .filter(|o| match &o.input {
            Input::Put { value: v, .. } | Input::Cas { new: v, .. } => observed.contains(v.as_str()),
            Input::Get { .. } => false,
        })
        .count();
    line.push_str(&format!(
        "; CAS {cas_ok} succeeded / {cas_failed} failed; {seen_unknown} unknown-outcome writes observed later"
    ));
    eprintln!("{line}");
    assert!(
        cas_ok > 0 && cas_failed > 0,
        "the workload should exercise both CAS outcomes"
    );
    (completed, unknown)
}

pub fn check_timed(name: &str, h: &[Operation]) -> CheckResult {
    let start = Instant::now();
    let r = check(h);
    eprintln!("{name}: checked in {:?}: {}", start.elapsed(), verdict(&r));
    r
}

pub fn verdict(r: &CheckResult) -> &'static str {
    match r {
        CheckResult::Ok => "Ok",
        CheckResult::Illegal { .. } => "Illegal",
        CheckResult::Unknown => "Unknown (step budget exhausted)",
    }
}

/// Panics unless the history is linearizable.
pub fn assert_linearizable(name: &str, h: &[Operation]) {
    match check_timed(name, h) {
        CheckResult::Ok => {}
        CheckResult::Illegal { explanation, .. } => panic!("{name} history is not linearizable:\n{explanation}"),
        CheckResult::Unknown => panic!("the checker ran out of budget on the {name} history"),
    }
}

/// Checks a fault run's history: at least `min_completed` operations completed, some completed
/// after every fault (recorder times in `faults`), and the history is linearizable.
pub fn assert_fault_run(name: &str, history: &[Operation], faults: &[u64], min_completed: usize) {
    let (completed, _) = summarize_history(name, history, faults);
    assert!(completed >= min_completed, "too few completed operations: {completed}");
    for (i, &t) in faults.iter().enumerate() {
        let after = history
            .iter()
            .filter(|o| o.output != Output::Unknown && o.call > t)
            .count();
        assert!(after > 0, "nothing completed after fault {}", i + 1);
    }
    assert_linearizable(name, history);
}
