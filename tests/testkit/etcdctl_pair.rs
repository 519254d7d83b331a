//! The etcdctl differential driver: a [`Pair`] of servers (Debian's etcd, the oracle, and
//! rustcd) started with the same flags; each step runs the same etcdctl command against
//! both and compares normalised stdout, stderr and exit codes; `finish` fails the test with
//! a step-by-step diff and both transcripts.

use std::time::Duration;

use super::{etcdctl_stdin, mask_columns, Background, Kind, Norm, Output, Server};

/// Picks the response header out of an etcdctl JSON output.
pub type HeaderOf = fn(&serde_json::Value) -> &serde_json::Value;

/// How outputs of one step are compared.
#[derive(Clone, Copy)]
pub struct Cmp {
    pub stdout: bool,
    pub stderr: bool,
    pub status: bool,
    /// `, `-fields / table columns to mask in stdout
    pub mask: &'static [usize],
    /// `watch -w json` of live events: compare events one per line, since
    /// how events of several revisions are batched into responses depends
    /// on timing
    pub flatten_watch: bool,
    /// member order is by (random) member ID: sort member lines/arrays
    pub unordered_members: bool,
}

pub const FULL: Cmp = Cmp {
    stdout: true,
    stderr: true,
    status: true,
    mask: &[],
    flatten_watch: false,
    unordered_members: false,
};

/// What the oracle (etcd) must do in a step; checks the scenario itself.
#[derive(Clone, Copy, PartialEq)]
pub enum Expect {
    Ok,
    Fail,
    Any,
}

pub struct Side {
    pub name: &'static str,
    pub server: Server,
    pub norm: Norm,
}

pub struct Pair {
    pub sides: Vec<Side>,
    pub step: usize,
    pub transcript: Vec<String>,
    pub failures: Vec<String>,
}

impl Pair {
    /// Starts etcd and rustcd with the same extra flags. `None` = skip.
    pub fn start(extra: &[&str]) -> Option<Pair> {
        if let Some(reason) = super::skip_reason() {
            super::print_skip(&reason);
            return None;
        }
        let mut sides = Vec::new();
        for (name, kind) in [("etcd", Kind::Etcd), ("rustcd", Kind::Rustcd)] {
            let server = Server::start(kind, extra);
            let mut norm = Norm::for_server(&server);
            norm.add_literal(&server.dir().display().to_string(), "<DIR>");
            // Learn the member/cluster IDs (from the header of a plain Range,
            // else from endpoint status) to mask them. If both fail the IDs
            // stay unmasked and the diffs will show them.
            let probes: [(&[&str], HeaderOf); 2] = [
                (&["get", "difftest-probe", "-w", "json"], |v| &v["header"]),
                (&["endpoint", "status", "-w", "json"], |v| &v[0]["Status"]["header"]),
            ];
            let mut learned = false;
            for (args, header_of) in probes {
                let out = super::etcdctl(&server.endpoint(), args);
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(out.stdout.trim()) {
                    let header = header_of(&v);
                    if let (Some(c), Some(m)) = (header["cluster_id"].as_u64(), header["member_id"].as_u64()) {
                        norm.learn_header(c, m);
                        learned = true;
                        break;
                    }
                }
            }
            if !learned {
                eprintln!("WARNING: {name}: could not learn member/cluster IDs; they stay unmasked");
            }
            sides.push(Side { name, server, norm });
        }
        Some(Pair {
            sides,
            step: 0,
            transcript: Vec::new(),
            failures: Vec::new(),
        })
    }

    /// Substitutes `{L1}`.. (lease hex IDs), `{DIR}` (server temp dir),
    /// `{PEER}` (peer URL), `{MEMBER}`/`{NEWMEMBER}` (member IDs in hex).
    pub fn expand(side: &Side, arg: &str) -> String {
        let mut a = arg.replace("{DIR}", &side.server.dir().display().to_string());
        a = a.replace("{PEER}", &side.server.peer_url());
        for ph in ["MEMBER", "NEWMEMBER"] {
            if let Some(id) = side.norm.id_of(&format!("<{ph}>")) {
                a = a.replace(&format!("{{{ph}}}"), &format!("{id:x}"));
            }
        }
        for n in 1..=side.norm.leases.len() {
            a = a.replace(&format!("{{L{n}}}"), &side.norm.lease_hex(n));
        }
        a
    }

    pub fn normalize(side: &Side, out: &Output, cmp: Cmp) -> Output {
        let mut stdout = side.norm.normalize(&out.stdout);
        if !cmp.mask.is_empty() {
            stdout = mask_columns(&stdout, cmp.mask);
        }
        if cmp.flatten_watch {
            stdout = flatten_watch_json(&stdout);
        }
        if cmp.unordered_members {
            stdout = sort_members(&stdout);
        }
        Output {
            status: out.status,
            stdout,
            stderr: side.norm.normalize(&out.stderr),
        }
    }

    /// Runs one etcdctl step on both sides and compares.
    pub fn exec(&mut self, args: &[&str], stdin: Option<&[u8]>, cmp: Cmp, expect: Expect) -> Vec<Output> {
        self.step += 1;
        let label = format!("step {}: etcdctl {}", self.step, args.join(" "));
        let mut outs = Vec::new();
        for side in self.sides.iter_mut() {
            let args: Vec<String> = args.iter().map(|a| Pair::expand(side, a)).collect();
            let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let raw = etcdctl_stdin(&side.server.endpoint(), &args, stdin);
            side.norm.learn_leases(&raw.stdout);
            side.norm.learn_members(&raw.stdout);
            outs.push(raw);
        }
        self.compare(&label, &outs, cmp, expect);
        outs
    }

    pub fn compare(&mut self, label: &str, outs: &[Output], cmp: Cmp, expect: Expect) {
        let a = Pair::normalize(&self.sides[0], &outs[0], cmp);
        let b = Pair::normalize(&self.sides[1], &outs[1], cmp);
        self.transcript.push(format!(
            "{label}\n  exit={}\n{}{}",
            a.status,
            indent(&a.stdout),
            indent(&a.stderr)
        ));
        match expect {
            Expect::Ok if outs[0].status != 0 => panic!(
                "scenario bug: etcd failed on {label}: {:?}\n===== transcript so far =====\n{}",
                outs[0],
                self.transcript.concat()
            ),
            Expect::Fail if outs[0].status == 0 => panic!(
                "scenario bug: etcd unexpectedly succeeded on {label}: {:?}\n===== transcript so far =====\n{}",
                outs[0],
                self.transcript.concat()
            ),
            _ => {}
        }
        let (na, nb) = (self.sides[0].name, self.sides[1].name);
        let mut msg = String::new();
        if cmp.status && a.status != b.status {
            msg.push_str(&format!("  exit code: {na}={} {nb}={}\n", a.status, b.status));
        }
        if cmp.stdout && a.stdout != b.stdout {
            msg.push_str("  stdout differs:\n");
            msg.push_str(&super::line_diff(na, &a.stdout, nb, &b.stdout));
        }
        if cmp.stderr && a.stderr != b.stderr {
            msg.push_str("  stderr differs:\n");
            msg.push_str(&super::line_diff(na, &a.stderr, nb, &b.stderr));
        }
        if !msg.is_empty() {
            self.failures.push(format!("{label}\n{msg}"));
        }
    }

    pub fn ok(&mut self, args: &[&str]) -> Vec<Output> {
        self.exec(args, None, FULL, Expect::Ok)
    }

    pub fn fail(&mut self, args: &[&str]) -> Vec<Output> {
        self.exec(args, None, FULL, Expect::Fail)
    }

    pub fn ok_masked(&mut self, args: &[&str], mask: &'static [usize]) -> Vec<Output> {
        self.exec(args, None, Cmp { mask, ..FULL }, Expect::Ok)
    }

    pub fn stdin(&mut self, args: &[&str], stdin: &str, expect: Expect) -> Vec<Output> {
        self.exec(args, Some(stdin.as_bytes()), FULL, expect)
    }

    /// Starts a background `etcdctl watch ...` on both sides.
    pub fn start_watch(&mut self, args: &[&str]) -> Vec<Background> {
        self.sides
            .iter()
            .map(|side| {
                let args: Vec<String> = args.iter().map(|a| Pair::expand(side, a)).collect();
                let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                Background::spawn(&side.server.endpoint(), &args, None)
            })
            .collect()
    }

    /// Waits until each watcher printed `events` events (10 s deadline), lets
    /// them settle briefly to catch extra events, kills them and compares.
    pub fn finish_watch(&mut self, args: &[&str], mut bgs: Vec<Background>, events: usize, live: bool) {
        self.step += 1;
        let label = format!(
            "step {}: etcdctl {} (background, {events} events)",
            self.step,
            args.join(" ")
        );
        for bg in bgs.iter_mut() {
            bg.wait_for(Duration::from_secs(10), |out| count_events(out) >= events);
        }
        // quiescence window: extra (wrong) events would show up in the diff
        std::thread::sleep(Duration::from_millis(300));
        let outs: Vec<Output> = bgs.iter_mut().map(|b| b.kill()).collect();
        if count_events(&outs[0].stdout) != events {
            panic!(
                "scenario bug: etcd watch printed {} events, expected {events}: {:?}",
                count_events(&outs[0].stdout),
                outs[0]
            );
        }
        // exit status is meaningless for a killed watcher
        let cmp = Cmp {
            status: false,
            flatten_watch: live,
            ..FULL
        };
        self.compare(&label, &outs, cmp, Expect::Any);
    }

    pub fn watch(&mut self, args: &[&str], events: usize) {
        let bgs = self.start_watch(args);
        self.finish_watch(args, bgs, events, false);
    }

    /// Panics with all mismatches (and the etcd transcript) if any.
    pub fn finish(self) {
        if std::env::var_os("DIFFTEST_TRANSCRIPT").is_some() {
            eprintln!("{}", self.transcript.concat());
        }
        if self.failures.is_empty() {
            return;
        }
        let mut msg = format!(
            "{} of {} steps differ between etcd and rustcd ({}):\n\n",
            self.failures.len(),
            self.step,
            self.sides[1].server.kind.binary().display()
        );
        for f in &self.failures {
            msg.push_str(f);
            msg.push('\n');
        }
        msg.push_str("\n===== normalised etcd transcript =====\n");
        for t in &self.transcript {
            msg.push_str(t);
        }
        panic!("{msg}");
    }
}

pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Makes member listings order-independent: JSON `members` arrays and
/// `ETCD_INITIAL_CLUSTER` lists are sorted, other lines are sorted as a whole.
pub fn sort_members(out: &str) -> String {
    let mut lines: Vec<String> = out
        .lines()
        .map(|line| {
            if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(members) = v.get_mut("members").and_then(|m| m.as_array_mut()) {
                    members.sort_by_key(|m| m.to_string());
                }
                return v.to_string();
            }
            if let Some(list) = line.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
                let mut parts: Vec<&str> = list.trim_end_matches('"').split(',').collect();
                parts.sort_unstable();
                return format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(","));
            }
            line.to_string()
        })
        .collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// One line per event of `etcdctl watch -w json` output (response headers
/// and batching dropped); other lines kept.
pub fn flatten_watch_json(out: &str) -> String {
    let mut res = String::new();
    for line in out.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.get("Events").is_some() => {
                for ev in v["Events"].as_array().into_iter().flatten() {
                    res.push_str(&format!("event {ev}\n"));
                }
            }
            _ => {
                res.push_str(line);
                res.push('\n');
            }
        }
    }
    res
}

/// Events printed by `etcdctl watch` (simple: PUT/DELETE lines; json: kvs).
pub fn count_events(out: &str) -> usize {
    out.lines()
        .map(|l| {
            if l.starts_with('{') {
                l.matches("\"kv\":").count()
            } else {
                usize::from(l == "PUT" || l == "DELETE")
            }
        })
        .sum()
}
