//! A linearizability checker for a key-value store: Wing & Gong's search
//! with Lowe's just-in-time linearization and memoisation, as in the Go
//! library porcupine.
//!
//! # Model
//!
//! Every key is an independent register holding `Option<value>` (absent
//! until the first write). Operations:
//!
//! * `Put { key, value }` -> [`Output::Put`] (the revision is not modelled);
//!   always legal, sets the value.
//! * `Get { key }` -> [`Output::Get`]`(Option<value>)`; legal iff it returns
//!   the current value.
//! * `Cas { key, expected, new }` (an etcd Txn `value(key) == expected` then
//!   `put(key, new)`) -> [`Output::Cas`]`(succeeded)`; `true` is legal iff
//!   the current value is `Some(expected)` (and sets it to `new`), `false`
//!   iff it is not (no effect). A missing key never compares equal, as in etcd.
//!
//! Since every operation touches exactly one key, the history is partitioned
//! by key and each sub-history is checked on its own (P-compositionality:
//! a history is linearizable iff each per-object sub-history is).
//!
//! # Unknown outcomes
//!
//! An operation whose client got an error or a timeout ([`Output::Unknown`],
//! e.g. because the server was SIGKILLed) may or may not have taken effect,
//! at any time after its call, even after the server restarted. Following
//! porcupine it gets an infinite return time and an output that matches
//! anything: the search may linearize it at any point after its call, and
//! since nothing after "infinity" can observe it, linearizing it last is the
//! same as it never having happened. A `Put`/`Cas` of unknown outcome thus
//! either takes effect (a `Cas` then succeeds iff its comparison holds at
//! that point) or not; a `Get` of unknown outcome constrains nothing and is
//! dropped. Whatever `ret` such an operation carries is ignored.
//!
//! # Algorithm
//!
//! Per key, the call and return events of the operations of known outcome
//! are sorted by time (a call sorts before a return at the same instant, so
//! touching intervals count as concurrent) into a doubly-linked list. The
//! search walks the list:
//!
//! * at a call event, it tries to linearize that operation now: if the model
//!   accepts it in the current state, and the pair (set of linearized
//!   operations as a bitset, new state) was never seen before (the cache),
//!   the operation's call and return events are unlinked from the list
//!   ("lifted"), the choice is pushed on a stack with the previous state, and
//!   the walk restarts at the head; otherwise it moves on to the next event;
//! * at the first return event, every pending operation of known outcome
//!   has been tried at this point. Those of unknown outcome (kept in a
//!   separate list, by call time) called no later than that return are tried
//!   next, the same way. When they are exhausted too, the last choice is
//!   undone (popped, its events relinked) and the search resumes with the
//!   alternative after it. If the stack is empty, there is no linearization.
//!
//! The list becoming empty means every operation of known outcome got
//! linearized (the remaining unknown ones go last, i.e. never happened).
//! Trying unknown-outcome operations only after the known ones is a mere
//! search order (porcupine keeps them in the one list, at infinity), but it
//! avoids exploring the subsets of pending crashed writes at every step of a
//! legal history. The cache makes the search memoise equivalent prefixes; a
//! step budget bounds it, and [`CheckResult::Unknown`] is returned when that
//! is exhausted.
//!
//! For an illegal history the explanation describes the deepest point the
//! search reached: the last operations of the longest partial linearization,
//! the value they leave, the operation that returned without any legal place
//! to go, and the operations still pending concurrently with it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

/// Default step budget of [`check`].
pub const DEFAULT_MAX_STEPS: u64 = 50_000_000;

/// The return time of an operation of unknown outcome.
pub const INFINITY: u64 = u64::MAX;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Put { key: String, value: String },
    Get { key: String },
    Cas { key: String, expected: String, new: String },
}

impl Input {
    pub fn key(&self) -> &str {
        match self {
            Input::Put { key, .. } | Input::Get { key } | Input::Cas { key, .. } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Put,
    Get(Option<String>),
    Cas(bool),
    /// The client does not know whether (and when) the operation took effect.
    Unknown,
}

/// One operation of a history. Times are nanoseconds from any common origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub input: Input,
    pub output: Output,
    pub call: u64,
    /// Ignored (taken as [`INFINITY`]) when `output` is [`Output::Unknown`].
    pub ret: u64,
}

impl Operation {
    pub fn completed(client: usize, input: Input, output: Output, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            input,
            output,
            call,
            ret,
        }
    }

    pub fn unknown(client: usize, input: Input, call: u64) -> Operation {
        Operation {
            client,
            input,
            output: Output::Unknown,
            call,
            ret: INFINITY,
        }
    }

    fn ret_time(&self) -> u64 {
        if self.output == Output::Unknown {
            INFINITY
        } else {
            self.ret
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        match &self.input {
            Input::Put { value, .. } => write!(f, "put {value:?}")?,
            Input::Get { .. } => write!(f, "get")?,
            Input::Cas { expected, new, .. } => write!(f, "cas {expected:?} -> {new:?}")?,
        }
        match &self.output {
            Output::Put => {}
            Output::Get(v) => write!(f, " = {v:?}")?,
            Output::Cas(ok) => write!(f, " = {}", if *ok { "succeeded" } else { "failed" })?,
            Output::Unknown => write!(f, " = <unknown outcome>")?,
        }
        let ms = |t: u64| t as f64 / 1e6;
        if self.ret_time() == INFINITY {
            write!(f, " [{:.6} ms, inf)", ms(self.call))
        } else {
            write!(f, " [{:.6} ms, {:.6} ms]", ms(self.call), ms(self.ret))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Ok,
    Illegal {
        key: String,
        explanation: String,
    },
    /// The step budget ran out before a verdict.
    Unknown,
}

/// A thread-safe history recorder with a monotonic clock.
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn record(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }

    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap().clone()
    }
}

/// Checks `history` with [`DEFAULT_MAX_STEPS`].
pub fn check(history: &[Operation]) -> CheckResult {
    check_with_budget(history, DEFAULT_MAX_STEPS)
}

/// Checks `history`, giving up with [`CheckResult::Unknown`] after
/// `max_steps` search steps in total. Panics on malformed operations
/// (return before call, output not matching the input kind).
pub fn check_with_budget(history: &[Operation], max_steps: u64) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        let ok_kind = matches!(
            (&op.input, &op.output),
            (_, Output::Unknown)
                | (Input::Put { .. }, Output::Put)
                | (Input::Get { .. }, Output::Get(_))
                | (Input::Cas { .. }, Output::Cas(_))
        );
        assert!(ok_kind, "malformed operation (output does not match input): {op:?}");
        assert!(
            op.ret_time() >= op.call,
            "malformed operation (returns before its call): {op:?}"
        );
        if matches!((&op.input, &op.output), (Input::Get { .. }, Output::Unknown)) {
            continue; // constrains nothing
        }
        by_key.entry(op.input.key()).or_default().push(op);
    }
    let mut budget = max_steps;
    let mut unknown = false;
    for (key, ops) in by_key {
        match check_key(&ops, &mut budget) {
            KeyResult::Ok => {}
            KeyResult::Unknown => unknown = true,
            KeyResult::Illegal(explanation) => {
                return CheckResult::Illegal {
                    key: key.to_string(),
                    explanation: format!("key {key:?} ({} operations): {explanation}", ops.len()),
                }
            }
        }
        if budget == 0 {
            return CheckResult::Unknown;
        }
    }
    if unknown {
        CheckResult::Unknown
    } else {
        CheckResult::Ok
    }
}

enum KeyResult {
    Ok,
    Illegal(String),
    Unknown,
}

/// An operation on interned values (0 = absent).
#[derive(Clone, Copy)]
enum Step {
    Put(u32),
    Get(u32),
    Cas {
        expected: u32,
        new: u32,
        result: Option<bool>,
    },
}

impl Step {
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Put(v) => Some(v),
            Step::Get(v) => (state == v).then_some(state),
            Step::Cas { expected, new, result } => {
                let holds = state == expected;
                match result {
                    Some(true) => holds.then_some(new),
                    Some(false) => (!holds).then_some(state),
                    None => Some(if holds { new } else { state }),
                }
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(n: usize) -> Bitset {
        Bitset(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// The deepest failure seen: for the explanation of an illegal history.
struct Deepest {
    depth: usize,
    last: Vec<usize>,
    state: u32,
    blocked: usize,
    linearized: Bitset,
}

/// A choice on the search stack: the call event of an operation of known
/// outcome, or an operation of unknown outcome (its index in the unknown
/// list) with the time of the return event that bounded its level.
#[derive(Clone, Copy)]
enum Choice {
    Known(usize),
    Unknown(usize, u64),
}

impl Choice {
    fn op(self, events: &[(u64, u8, usize)], unknown: &[usize]) -> usize {
        match self {
            Choice::Known(c) => events[c].2,
            Choice::Unknown(c, _) => unknown[c],
        }
    }
}

/// Where the search is within one level (one set of linearized operations).
#[derive(Clone, Copy)]
enum Pos {
    /// Walking the event list of operations of known outcome.
    Known(usize),
    /// Trying the pending operations of unknown outcome called up to `frontier`.
    Unknown { cursor: usize, frontier: u64 },
}

/// Links nodes `0..len` in order after the head node `len`.
fn link(next: &mut [usize], prev: &mut [usize], len: usize) {
    next[len] = if len > 0 { 0 } else { NONE };
    for (node, (nx, pv)) in next.iter_mut().zip(prev.iter_mut()).take(len).enumerate() {
        *nx = if node + 1 < len { node + 1 } else { NONE };
        *pv = if node == 0 { len } else { node - 1 };
    }
}

/// Unlinks `nodes` (in this order) from a doubly-linked list.
fn lift(next: &mut [usize], prev: &mut [usize], nodes: &[usize]) {
    for &e in nodes {
        next[prev[e]] = next[e];
        if next[e] != NONE {
            prev[next[e]] = prev[e];
        }
    }
}

/// Relinks `nodes`, which must be given in the reverse order of [`lift`].
fn unlift(next: &mut [usize], prev: &mut [usize], nodes: &[usize]) {
    for &e in nodes {
        next[prev[e]] = e;
        if next[e] != NONE {
            prev[next[e]] = e;
        }
    }
}

const NONE: usize = usize::MAX;

fn check_key<'a>(ops: &[&'a Operation], budget: &mut u64) -> KeyResult {
    let n = ops.len();
    // intern values: 0 = absent
    let mut ids: HashMap<&'a str, u32> = HashMap::new();
    let mut names: Vec<&'a str> = vec![""];
    let mut id = |s: &'a str| -> u32 {
        let fresh = names.len() as u32;
        let i = *ids.entry(s).or_insert(fresh);
        if i == fresh {
            names.push(s);
        }
        i
    };
    let steps: Vec<Step> = ops
        .iter()
        .map(|op| match (&op.input, &op.output) {
            (Input::Put { value, .. }, _) => Step::Put(id(value)),
            (Input::Get { .. }, Output::Get(r)) => Step::Get(r.as_deref().map_or(0, &mut id)),
            (Input::Cas { expected, new, .. }, out) => Step::Cas {
                expected: id(expected),
                new: id(new),
                result: match out {
                    Output::Cas(b) => Some(*b),
                    _ => None,
                },
            },
            (Input::Get { .. }, _) => unreachable!("unknown gets are dropped"),
        })
        .collect();
    let name = |v: u32| -> String {
        if v == 0 {
            "None (absent)".to_string()
        } else {
            format!("Some({:?})", names[v as usize])
        }
    };

    // Operations of known outcome go into the event list: (time, kind 0 =
    // call / 1 = return, op); list node i = event i, head = 2m. Those of
    // unknown outcome (return at infinity) are kept apart, by call time.
    let (known, unknown): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| ops[i].ret_time() != INFINITY);
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * known.len());
    for &i in &known {
        events.push((ops[i].call, 0, i));
        events.push((ops[i].ret_time(), 1, i));
    }
    events.sort_unstable();
    let m = events.len();
    let head = m;
    let mut next = vec![NONE; m + 1];
    let mut prev = vec![NONE; m + 1];
    let mut partner = vec![NONE; m];
    let mut call_node = vec![NONE; n];
    for (node, &(_, kind, op)) in events.iter().enumerate() {
        if kind == 0 {
            call_node[op] = node;
        } else {
            partner[call_node[op]] = node;
            partner[node] = call_node[op];
        }
    }
    link(&mut next, &mut prev, m);
    let is_call = |node: usize| events[node].1 == 0;
    let op_of = |node: usize| events[node].2;
    let mut unknown = unknown;
    unknown.sort_by_key(|&i| (ops[i].call, i));
    let u = unknown.len();
    let uhead = u;
    let mut unext = vec![NONE; u + 1];
    let mut uprev = vec![NONE; u + 1];
    link(&mut unext, &mut uprev, u);

    let mut state: u32 = 0;
    let mut linearized = Bitset::new(n);
    let mut cache: HashSet<(Bitset, u32)> = HashSet::new();
    let mut stack: Vec<(Choice, u32)> = Vec::new(); // with the state before
    let mut deepest: Option<Deepest> = None;
    let mut pos = Pos::Known(next[head]);
    while next[head] != NONE {
        if *budget == 0 {
            return KeyResult::Unknown;
        }
        *budget -= 1;
        let (op, choice) = match pos {
            Pos::Known(entry) if is_call(entry) => {
                pos = Pos::Known(next[entry]);
                (op_of(entry), Choice::Known(entry))
            }
            Pos::Known(entry) => {
                // the first return event: every pending operation of known
                // outcome was tried at this level; now those of unknown outcome
                if deepest.as_ref().is_none_or(|d| stack.len() > d.depth) {
                    deepest = Some(Deepest {
                        depth: stack.len(),
                        last: stack
                            .iter()
                            .rev()
                            .take(6)
                            .rev()
                            .map(|(c, _)| c.op(&events, &unknown))
                            .collect(),
                        state,
                        blocked: op_of(entry),
                        linearized: linearized.clone(),
                    });
                }
                pos = Pos::Unknown {
                    cursor: unext[uhead],
                    frontier: events[entry].0,
                };
                continue;
            }
            Pos::Unknown { cursor, frontier } if cursor != NONE && ops[unknown[cursor]].call <= frontier => {
                pos = Pos::Unknown {
                    cursor: unext[cursor],
                    frontier,
                };
                (unknown[cursor], Choice::Unknown(cursor, frontier))
            }
            Pos::Unknown { .. } => {
                // nothing left to try at this level: undo the last choice
                let Some((choice, s)) = stack.pop() else {
                    break;
                };
                linearized.clear(choice.op(&events, &unknown));
                state = s;
                pos = match choice {
                    Choice::Known(c) => {
                        unlift(&mut next, &mut prev, &[partner[c], c]);
                        Pos::Known(next[c])
                    }
                    Choice::Unknown(c, frontier) => {
                        unlift(&mut unext, &mut uprev, &[c]);
                        Pos::Unknown {
                            cursor: unext[c],
                            frontier,
                        }
                    }
                };
                continue;
            }
        };
        if let Some(new_state) = steps[op].apply(state) {
            linearized.set(op);
            if cache.insert((linearized.clone(), new_state)) {
                stack.push((choice, state));
                state = new_state;
                match choice {
                    Choice::Known(c) => lift(&mut next, &mut prev, &[c, partner[c]]),
                    Choice::Unknown(c, _) => lift(&mut unext, &mut uprev, &[c]),
                }
                pos = Pos::Known(next[head]);
                continue;
            }
            linearized.clear(op);
        }
    }
    if next[head] == NONE {
        // every operation of known outcome is linearized; the remaining
        // ones of unknown outcome go last (or never happened)
        return KeyResult::Ok;
    }
    let d = deepest.expect("a failure was recorded");
    let blocked = ops[d.blocked];
    let mut text = format!(
        "no linearization exists. The longest partial linearization orders {} operation(s)",
        d.depth
    );
    if d.last.is_empty() {
        text.push_str(".\n");
    } else {
        text.push_str(", ending with:\n");
        for &i in &d.last {
            text.push_str(&format!("    #{i} {}\n", ops[i]));
        }
    }
    text.push_str(&format!(
        "  which leaves the value {}. Then this operation returned, but is illegal in that state \
         and after any order of the pending concurrent operations:\n    #{} {blocked}\n",
        name(d.state),
        d.blocked
    ));
    let pending: Vec<usize> = (0..n)
        .filter(|&i| i != d.blocked && !d.linearized.get(i) && ops[i].call <= blocked.ret_time())
        .collect();
    if !pending.is_empty() {
        text.push_str(&format!("  pending concurrent operations ({}):\n", pending.len()));
        for &i in pending.iter().take(10) {
            text.push_str(&format!("    #{i} {}\n", ops[i]));
        }
        if pending.len() > 10 {
            text.push_str("    ...\n");
        }
    }
    KeyResult::Illegal(text)
}
