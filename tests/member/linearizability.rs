//! Linearizability: unit tests of the checker in `support/linearizability.rs`
//! on hand-written and generated histories, then concurrent random
//! Put/Get/Cas workloads against rustcd (SIGKILLed and restarted twice in
//! the middle) and against Debian's etcd, whose recorded histories must be
//! linearizable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use testkit::linearizability::{check, check_with_budget, CheckResult, Input, Operation, Output};
use testkit::workload::{check_timed, summarize_history, Workload};
use testkit::{Kind, Server};

// ---------------------------------------------------------------------------
// hand-written histories
// ---------------------------------------------------------------------------

fn put(client: usize, key: &str, value: &str, call: u64, ret: u64) -> Operation {
    let input = Input::Put {
        key: key.into(),
        value: value.into(),
    };
    Operation::completed(client, input, Output::Put, call, ret)
}

fn put_unknown(client: usize, key: &str, value: &str, call: u64) -> Operation {
    let input = Input::Put {
        key: key.into(),
        value: value.into(),
    };
    Operation::unknown(client, input, call)
}

fn get(client: usize, key: &str, out: Option<&str>, call: u64, ret: u64) -> Operation {
    let input = Input::Get { key: key.into() };
    Operation::completed(client, input, Output::Get(out.map(String::from)), call, ret)
}

fn cas(client: usize, key: &str, expected: &str, new: &str, ok: bool, call: u64, ret: u64) -> Operation {
    let input = Input::Cas {
        key: key.into(),
        expected: expected.into(),
        new: new.into(),
    };
    Operation::completed(client, input, Output::Cas(ok), call, ret)
}

fn cas_unknown(client: usize, key: &str, expected: &str, new: &str, call: u64) -> Operation {
    let input = Input::Cas {
        key: key.into(),
        expected: expected.into(),
        new: new.into(),
    };
    Operation::unknown(client, input, call)
}

#[track_caller]
fn assert_ok(h: &[Operation]) {
    let r = check(h);
    assert_eq!(r, CheckResult::Ok, "expected linearizable: {h:#?}");
}

#[track_caller]
fn assert_illegal(h: &[Operation]) -> String {
    match check(h) {
        CheckResult::Illegal { explanation, .. } => explanation,
        other => panic!("expected Illegal, got {other:?} for {h:#?}"),
    }
}

#[test]
fn sequential_history_is_linearizable() {
    let h = vec![
        get(0, "k", None, 0, 1),
        put(0, "k", "a", 2, 3),
        get(0, "k", Some("a"), 4, 5),
        cas(0, "k", "a", "b", true, 6, 7),
        cas(0, "k", "a", "c", false, 8, 9),
        get(0, "k", Some("b"), 10, 11),
        put(1, "other", "x", 12, 13),
        get(1, "other", Some("x"), 14, 15),
        get(1, "k", Some("b"), 16, 17),
    ];
    assert_ok(&h);
    assert_ok(&[]);
}

#[test]
fn concurrent_overlapping_ops_are_ok_in_either_order() {
    for last in ["a", "b"] {
        // two overlapping puts, then a read of either value
        let h = vec![
            put(0, "k", "a", 0, 10),
            put(1, "k", "b", 5, 15),
            get(2, "k", Some(last), 20, 21),
        ];
        assert_ok(&h);
    }
    // a read overlapping a put may see the old or the new value
    for seen in [None, Some("a")] {
        let h = vec![put(0, "k", "a", 0, 10), get(1, "k", seen, 2, 8)];
        assert_ok(&h);
    }
    // two CASes from the same value, concurrent: exactly one may succeed
    let h = vec![
        put(0, "k", "a", 0, 1),
        cas(1, "k", "a", "b", false, 2, 10),
        cas(2, "k", "a", "c", true, 3, 9),
        get(0, "k", Some("c"), 11, 12),
    ];
    assert_ok(&h);
    let both = vec![
        put(0, "k", "a", 0, 1),
        cas(1, "k", "a", "b", true, 2, 10),
        cas(2, "k", "a", "c", true, 3, 9),
    ];
    assert_illegal(&both);
}

#[test]
fn stale_read_after_completed_write_is_illegal() {
    let h = vec![
        put(0, "k", "a", 0, 1),
        put(0, "k", "b", 2, 3),
        get(1, "k", Some("a"), 4, 5),
    ];
    let why = assert_illegal(&h);
    eprintln!("{why}");
    assert!(why.contains("get = Some(\"a\")"), "{why}");
    // reading the initial absence after a completed write is stale too
    assert_illegal(&[put(0, "k", "a", 0, 1), get(1, "k", None, 2, 3)]);
    // a completed CAS whose precondition no longer held
    assert_illegal(&[
        put(0, "k", "a", 0, 1),
        put(0, "k", "b", 2, 3),
        cas(1, "k", "a", "c", true, 4, 5),
    ]);
    // a failed CAS although the value was the expected one all along
    assert_illegal(&[put(0, "k", "a", 0, 1), cas(1, "k", "a", "c", false, 4, 5)]);
}

#[test]
fn read_of_a_value_never_written_is_illegal() {
    let h = vec![put(0, "k", "a", 0, 1), get(1, "k", Some("zzz"), 0, 5)];
    let why = assert_illegal(&h);
    assert!(why.contains("zzz"), "{why}");
    // a value written to another key does not count
    assert_illegal(&[put(0, "j", "a", 0, 1), get(1, "k", Some("a"), 2, 3)]);
}

#[test]
fn unknown_outcome_write_that_later_appears_in_a_read_is_ok() {
    let h = vec![
        put(0, "k", "a", 0, 1),
        put_unknown(1, "k", "b", 2),
        get(2, "k", Some("a"), 50, 51),
        get(2, "k", Some("b"), 100, 101),
        get(3, "k", Some("b"), 200, 201),
    ];
    assert_ok(&h);
    // but once observed it has happened: the old value cannot come back
    let mut back = h.clone();
    back.push(get(3, "k", Some("a"), 300, 301));
    assert_illegal(&back);
    // it cannot take effect before it was called
    assert_illegal(&[get(2, "k", Some("b"), 0, 1), put_unknown(1, "k", "b", 2)]);
    // an unknown CAS takes effect only if its comparison holds
    assert_ok(&[
        put(0, "k", "a", 0, 1),
        cas_unknown(1, "k", "a", "b", 2),
        get(2, "k", Some("b"), 10, 11),
    ]);
    assert_illegal(&[
        put(0, "k", "x", 0, 1),
        cas_unknown(1, "k", "a", "b", 2),
        get(2, "k", Some("b"), 10, 11),
    ]);
}

#[test]
fn unknown_outcome_write_that_never_appears_is_ok() {
    let h = vec![
        put(0, "k", "a", 0, 1),
        put_unknown(1, "k", "b", 2),
        get(2, "k", Some("a"), 50, 51),
        get(2, "k", Some("a"), 100, 101),
        cas(3, "k", "a", "c", true, 150, 151),
        get(3, "k", Some("c"), 200, 201),
    ];
    assert_ok(&h);
    // an unknown read constrains nothing (its output is ignored)
    let mut h2 = h.clone();
    h2.push(Operation::unknown(4, Input::Get { key: "k".into() }, 0));
    assert_ok(&h2);
}

#[test]
fn reads_observing_concurrent_writes_in_contradicting_orders_are_illegal() {
    let h = vec![
        put(0, "k", "a", 0, 10),
        put(1, "k", "b", 0, 10),
        get(2, "k", Some("a"), 20, 21),
        get(2, "k", Some("b"), 22, 23),
        get(3, "k", Some("b"), 20, 21),
        get(3, "k", Some("a"), 22, 23),
    ];
    assert_illegal(&h);
    // the classic variant with the reads overlapping the writes
    let h = vec![
        put(0, "k", "a", 0, 100),
        put(1, "k", "b", 0, 100),
        get(2, "k", Some("a"), 10, 20),
        get(2, "k", Some("b"), 30, 40),
        get(3, "k", Some("b"), 10, 20),
        get(3, "k", Some("a"), 30, 40),
    ];
    assert_illegal(&h);
    // only one client changing its mind is fine
    let h = vec![
        put(0, "k", "a", 0, 100),
        put(1, "k", "b", 0, 100),
        get(2, "k", Some("a"), 10, 20),
        get(2, "k", Some("b"), 30, 40),
        get(3, "k", Some("a"), 10, 20),
        get(3, "k", Some("b"), 30, 40),
    ];
    assert_ok(&h);
}

#[test]
fn exhausted_budget_gives_unknown() {
    let h: Vec<Operation> = (0..20).map(|i| put(i, "k", &format!("v{i}"), 0, 100)).collect();
    assert_eq!(check_with_budget(&h, 5), CheckResult::Unknown);
    assert_eq!(check(&h), CheckResult::Ok);
}

#[test]
fn many_concurrent_unknown_writes_check_quickly() {
    // 8 clients, each with one unknown put early on, then a long sequential tail
    let mut h: Vec<Operation> = (0..8)
        .map(|i| put_unknown(i, "k", &format!("u{i}"), i as u64))
        .collect();
    let mut t = 100;
    for i in 0..3000 {
        let v = format!("v{i}");
        h.push(put(9, "k", &v, t, t + 5));
        h.push(get(10, "k", Some(&v), t + 6, t + 8));
        t += 10;
    }
    h.push(get(10, "k", Some("u3"), t, t + 1));
    let start = Instant::now();
    assert_eq!(check(&h), CheckResult::Ok);
    eprintln!("{} ops with 8 unknown writes checked in {:?}", h.len(), start.elapsed());
}

// ---------------------------------------------------------------------------
// generated histories
// ---------------------------------------------------------------------------

/// One generated operation: (client, kind, key, start delay, latency to the
/// linearization point, latency after it, crash roll, CAS expected pick).
type GenOp = (usize, u8, usize, u64, u64, u64, u8, usize);

fn gen_ops(clients: usize) -> impl Strategy<Value = Vec<GenOp>> {
    prop::collection::vec(
        (
            0..clients,
            0u8..3,
            0usize..3,
            0u64..4,
            1u64..10,
            1u64..10,
            0u8..12,
            0usize..1000,
        ),
        1..60,
    )
}

/// Simulates the model: each op takes effect at a point inside its interval
/// (sequential when `clients == 1` and `overlap` is false). With `crashes`,
/// about one op in 12 has an unknown outcome, taking effect or not.
fn simulate(ops: &[GenOp], overlap: bool, crashes: bool) -> Vec<Operation> {
    let mut clock = [0u64; 8];
    let mut global = 0u64;
    // (linearization point, index) -> ops applied in that order
    let mut planned = Vec::new();
    for (i, &(c, kind, key, delay, a, b, crash, pick)) in ops.iter().enumerate() {
        let start = if overlap { clock[c] + delay } else { global + delay };
        let call = start * 16;
        let lin = (start + a) * 16 + c as u64; // unique per client
        let ret = (start + a + b) * 16 + 8;
        let next = start + a + b + 1;
        clock[c] = next;
        global = global.max(next);
        planned.push((lin, i, c, kind, key, call, ret, crashes && crash == 0, pick));
    }
    planned.sort();
    let mut values: HashMap<usize, Option<String>> = HashMap::new();
    let mut written: HashMap<usize, Vec<String>> = HashMap::new();
    let mut out = Vec::new();
    for (_lin, i, c, kind, key, call, ret, crashed, pick) in planned {
        let k = format!("k{key}");
        let cur = values.entry(key).or_default().clone();
        let w = written.entry(key).or_default();
        let fresh = format!("v{i}");
        // a crashed write takes effect or not, decided by `pick`
        let applies = !crashed || pick % 2 == 0;
        let (input, output) = match kind {
            0 => (Input::Get { key: k.clone() }, Output::Get(cur)),
            1 => {
                if applies {
                    values.insert(key, Some(fresh.clone()));
                    w.push(fresh.clone());
                }
                (
                    Input::Put {
                        key: k.clone(),
                        value: fresh,
                    },
                    Output::Put,
                )
            }
            _ => {
                let expected = if w.is_empty() {
                    "none".to_string()
                } else {
                    w[pick % w.len()].clone()
                };
                let holds = cur.as_deref() == Some(expected.as_str());
                if holds && applies {
                    values.insert(key, Some(fresh.clone()));
                    w.push(fresh.clone());
                }
                let input = Input::Cas {
                    key: k.clone(),
                    expected,
                    new: fresh,
                };
                (input, Output::Cas(holds))
            }
        };
        out.push(if crashed {
            Operation::unknown(c, input, call)
        } else {
            Operation::completed(c, input, output, call, ret)
        });
    }
    out
}

/// Replaces the output of one completed read with a value never written.
fn corrupt_one_read(h: &mut [Operation], pick: usize) -> bool {
    let reads: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h[i].output, Output::Get(_)))
        .collect();
    if reads.is_empty() {
        return false;
    }
    h[reads[pick % reads.len()]].output = Output::Get(Some("never-written".into()));
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_sequential_histories_are_linearizable(ops in gen_ops(1), pick in 0usize..1000) {
        let mut h = simulate(&ops, false, false);
        prop_assert_eq!(check(&h), CheckResult::Ok);
        if corrupt_one_read(&mut h, pick) {
            let illegal = matches!(check(&h), CheckResult::Illegal { .. });
            prop_assert!(illegal);
        }
    }

    #[test]
    fn generated_concurrent_histories_with_crashes_are_linearizable(
        ops in gen_ops(5),
        crashes in any::<bool>(),
        pick in 0usize..1000,
    ) {
        let mut h = simulate(&ops, true, crashes);
        prop_assert_eq!(check(&h), CheckResult::Ok, "{:#?}", h);
        if corrupt_one_read(&mut h, pick) {
            let illegal = matches!(check(&h), CheckResult::Illegal { .. });
            prop_assert!(illegal);
        }
    }
}

// ---------------------------------------------------------------------------
// recorded histories of real servers
// ---------------------------------------------------------------------------

struct Run {
    history: Vec<Operation>,
    /// Recorder times of the restarts (after the server was healthy again).
    restarts: Vec<u64>,
}

/// Runs the workload for `duration` against `server`, SIGKILLing and
/// restarting it at each of `crash_at` (offsets from the start).
fn run_workload(server: &mut Server, duration: Duration, crash_at: &[Duration], seed: u64) -> Run {
    let w = Workload::start(&[server.endpoint()], seed);
    let start = Instant::now();
    let mut restarts = Vec::new();
    for &at in crash_at {
        std::thread::sleep(at.saturating_sub(start.elapsed()));
        server.kill9();
        std::thread::sleep(Duration::from_millis(150));
        server.restart();
        restarts.push(w.now());
    }
    std::thread::sleep(duration.saturating_sub(start.elapsed()));
    Run {
        history: w.finish(),
        restarts,
    }
}

fn summarize(name: &str, run: &Run) -> (usize, usize) {
    summarize_history(name, &run.history, &run.restarts)
}

/// Makes one completed read of `h` return a value that was overwritten
/// before the read started (by a write that began after the first one
/// returned): a certainly stale read. Returns false if there is no such read.
fn inject_stale_read(h: &mut [Operation]) -> bool {
    let writes: Vec<(String, String, u64, u64)> = h
        .iter()
        .filter_map(|o| match (&o.input, &o.output) {
            (Input::Put { key, value }, Output::Put) => Some((key.clone(), value.clone(), o.call, o.ret)),
            (Input::Cas { key, new, .. }, Output::Cas(true)) => Some((key.clone(), new.clone(), o.call, o.ret)),
            _ => None,
        })
        .collect();
    for i in (0..h.len()).rev() {
        let (Input::Get { key }, Output::Get(Some(_))) = (&h[i].input, &h[i].output) else {
            continue;
        };
        let call = h[i].call;
        let stale = writes.iter().find(|(k, _, _, r1)| {
            k == key
                && *r1 < call
                && writes
                    .iter()
                    .any(|(k2, _, c2, r2)| k2 == key && *c2 > *r1 && *r2 < call)
        });
        if let Some((_, v, _, _)) = stale {
            h[i].output = Output::Get(Some(v.clone()));
            return true;
        }
    }
    false
}

#[test]
fn single_member_history_is_linearizable_under_crashes() {
    let mut server = Server::start(Kind::Rustcd, &[]);
    let crash_at = [Duration::from_millis(2500), Duration::from_millis(5000)];
    let run = run_workload(&mut server, Duration::from_secs(8), &crash_at, 1);
    drop(server);
    let (completed, _unknown) = summarize("rustcd", &run);
    assert!(completed >= 100, "too few completed operations: {completed}");
    for (i, &t) in run.restarts.iter().enumerate() {
        let after = run
            .history
            .iter()
            .filter(|o| o.output != Output::Unknown && o.call > t)
            .count();
        assert!(after > 0, "no operation completed after restart {}", i + 1);
    }
    match check_timed("rustcd", &run.history) {
        CheckResult::Ok => {}
        CheckResult::Illegal { explanation, .. } => panic!("rustcd history is not linearizable:\n{explanation}"),
        CheckResult::Unknown => panic!("the checker ran out of budget on the rustcd history"),
    }
}

#[test]
fn etcd_history_is_linearizable() {
    let etcd = Kind::Etcd.binary();
    if !etcd.is_file() {
        testkit::print_skip(&format!("etcd binary not found ({}); set ETCD_BIN", etcd.display()));
        return;
    }
    let mut server = Server::start(Kind::Etcd, &[]);
    let mut run = run_workload(&mut server, Duration::from_secs(5), &[], 2);
    drop(server);
    let (completed, _) = summarize("etcd", &run);
    assert!(completed >= 100, "too few completed operations: {completed}");
    assert_eq!(check_timed("etcd", &run.history), CheckResult::Ok);
    // the same real history with one read made stale must be rejected
    assert!(inject_stale_read(&mut run.history), "no read to corrupt");
    let r = check_timed("etcd with a stale read injected", &run.history);
    match r {
        CheckResult::Illegal { explanation, .. } => eprintln!("{explanation}"),
        other => panic!("a stale read was not detected: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// differential against a brute-force checker on small random histories
// ---------------------------------------------------------------------------

/// Applies `op` to `state` in the model; None if its output is impossible.
fn brute_step(state: &Option<String>, op: &Operation) -> Option<Option<String>> {
    match (&op.input, &op.output) {
        (Input::Put { value, .. }, _) => Some(Some(value.clone())),
        (Input::Get { .. }, Output::Get(v)) => (v == state).then(|| state.clone()),
        (Input::Get { .. }, _) => Some(state.clone()),
        (Input::Cas { expected, new, .. }, out) => {
            let holds = state.as_deref() == Some(expected.as_str());
            match out {
                Output::Cas(true) if holds => Some(Some(new.clone())),
                Output::Cas(false) if !holds => Some(state.clone()),
                Output::Unknown => Some(if holds { Some(new.clone()) } else { state.clone() }),
                _ => None,
            }
        }
    }
}

/// Tries every order respecting real time; ops of unknown outcome may be left out.
fn brute_linearizable(ops: &[Operation], done: &mut Vec<bool>, state: &Option<String>) -> bool {
    let known_left = (0..ops.len()).any(|i| !done[i] && ops[i].output != Output::Unknown);
    if !known_left {
        return true;
    }
    for i in 0..ops.len() {
        if done[i] {
            continue;
        }
        // `i` may go next unless a pending op of known outcome returned before it was called
        let blocked =
            (0..ops.len()).any(|j| !done[j] && j != i && ops[j].output != Output::Unknown && ops[j].ret < ops[i].call);
        if blocked {
            continue;
        }
        if let Some(next) = brute_step(state, &ops[i]) {
            done[i] = true;
            let ok = brute_linearizable(ops, done, &next);
            done[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

fn small_history() -> impl Strategy<Value = Vec<Operation>> {
    let op = (0u8..3, 0u64..12, 0u64..6, 0u8..3, 0u8..3, any::<bool>(), 0u8..6);
    prop::collection::vec(op, 1..8).prop_map(|raw| {
        let val = |v: u8| format!("v{v}");
        raw.into_iter()
            .enumerate()
            .map(|(i, (kind, call, len, a, b, flag, unknown))| {
                let key = "k".to_string();
                let (input, output) = match kind {
                    0 => {
                        let out = (a > 0).then(|| val(a));
                        (Input::Get { key }, Output::Get(out))
                    }
                    1 => (Input::Put { key, value: val(a) }, Output::Put),
                    _ => {
                        let input = Input::Cas {
                            key,
                            expected: val(a),
                            new: val(b),
                        };
                        (input, Output::Cas(flag))
                    }
                };
                if unknown == 0 {
                    Operation::unknown(i, input, call)
                } else {
                    Operation::completed(i, input, output, call, call + len)
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn checker_agrees_with_brute_force(h in small_history()) {
        let expected = brute_linearizable(&h, &mut vec![false; h.len()], &None);
        let got = check(&h);
        prop_assert!(got != CheckResult::Unknown);
        prop_assert_eq!(got == CheckResult::Ok, expected, "{:#?}", h);
    }
}
