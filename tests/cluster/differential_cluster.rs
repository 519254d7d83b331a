//! Differential test of etcdctl's member and endpoint commands: the same commands against
//! a 3-member Debian etcd cluster and a 3-member rustcd cluster give the same output after
//! member IDs, URLs and server-specific numbers (versions, sizes, terms, indexes, timings)
//! are normalised. Members are named m0..m2 in both; IDs become `<m0>`.., URLs `<m0-client>`..

use std::time::Duration;

use testkit::cluster::Cluster;
use testkit::{etcdctl, etcdctl_until_ok as eventually, Kind, Output};
use testkit::{line_diff, mask_columns, Norm};

/// A cluster and what its outputs are normalised with.
struct Side {
    c: Cluster,
    norm: Norm,
    transcript: Vec<String>,
}

impl Side {
    fn start(kind: Kind) -> Side {
        let c = Cluster::start_kind(kind, 3, &[]);
        c.leader(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{} elected no leader", kind.name()));
        let mut norm = Norm::default();
        for m in &c.members {
            norm.add_literal(&m.client, &format!("<{}-client>", m.name));
            norm.add_literal(&m.peer, &format!("<{}-peer>", m.name));
        }
        let list = eventually(
            &c.members[0].client,
            &["member", "list", "-w", "json"],
            Duration::from_secs(20),
        );
        let v: serde_json::Value = serde_json::from_str(&list.stdout).expect("member list json");
        for m in v["members"].as_array().expect("members") {
            let name = m["name"].as_str().unwrap_or_default();
            norm.add_id(m["ID"].as_u64().expect("ID"), &format!("<{name}>"));
        }
        norm.add_id(v["header"]["cluster_id"].as_u64().expect("cluster_id"), "<cluster>");
        Side {
            c,
            norm,
            transcript: Vec::new(),
        }
    }

    fn id(&self, name: &str) -> String {
        let ph = format!("<{name}>");
        format!(
            "{:x}",
            self.norm.id_of(&ph).unwrap_or_else(|| panic!("no ID for {name}"))
        )
    }

    fn leader_name(&self) -> String {
        let i = self.c.leader(Duration::from_secs(20)).expect("a leader");
        self.c.members[i].name.clone()
    }

    /// Runs etcdctl against m0 and records the normalised result under `label`.
    fn run(&mut self, label: &str, args: &[&str], shape: Shape) -> Output {
        let o = etcdctl(&self.c.members[0].client, args);
        self.record(label, &o, shape);
        o
    }

    fn record(&mut self, label: &str, o: &Output, shape: Shape) {
        let stdout = match shape {
            Shape::Plain => self.norm.normalize(&o.stdout),
            Shape::SortedLines(cols) => {
                let text = mask_columns(&self.norm.normalize(&o.stdout), cols);
                let mut lines: Vec<&str> = text.lines().collect();
                lines.sort();
                lines.join("\n")
            }
            Shape::MembersJson => {
                let text = self.norm.normalize(&o.stdout);
                let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(ms) = v["members"].as_array_mut() {
                    ms.sort_by_key(|m| m["ID"].to_string());
                }
                v.to_string()
            }
            Shape::MemberAdd => {
                // ETCD_INITIAL_CLUSTER lists members in Go map order.
                let text = self.norm.normalize(&o.stdout);
                text.lines()
                    .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
                        Some(v) => {
                            let mut parts: Vec<&str> = v.trim_end_matches('"').split(',').collect();
                            parts.sort();
                            format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(","))
                        }
                        None => l.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        let errors: Vec<String> = o
            .stderr
            .lines()
            .filter(|l| l.starts_with("Error:"))
            .map(|l| self.norm.normalize(l).trim_end().to_string())
            .collect();
        self.transcript.push(format!(
            "{label}\n  exit={}\n{}\n{}",
            o.status,
            stdout.trim_end(),
            errors.join("\n")
        ));
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Plain,
    /// Masks these columns, then sorts lines (order follows member IDs or leadership).
    SortedLines(&'static [usize]),
    MembersJson,
    MemberAdd,
}

fn compare(etcd: &Side, rustcd: &Side) {
    let e = etcd.transcript.join("\n");
    let r = rustcd.transcript.join("\n");
    assert!(
        e == r,
        "etcd and rustcd differ:\n{}\n===== etcd =====\n{e}\n===== rustcd =====\n{r}",
        line_diff("etcd", &e, "rustcd", &r)
    );
}

#[test]
fn member_and_endpoint_commands_match_a_three_member_etcd() {
    if let Some(reason) = testkit::skip_reason() {
        testkit::print_skip(&reason);
        return;
    }
    let mut sides = [Side::start(Kind::Etcd), Side::start(Kind::Rustcd)];
    // etcd refuses membership changes until every voter has been connected for 5 seconds.
    std::thread::sleep(Duration::from_secs(6));
    for s in sides.iter_mut() {
        s.run("member list", &["member", "list"], Shape::SortedLines(&[]));
        s.run(
            "member list -w table",
            &["member", "list", "-w", "table"],
            Shape::SortedLines(&[]),
        );
        s.run(
            "member list -w json",
            &["member", "list", "-w", "json"],
            Shape::MembersJson,
        );
        // version, db size, leader flag, term, index and applied index differ by server.
        let status_cols: &[usize] = &[2, 3, 4, 6, 7, 8];
        s.run(
            "endpoint status --cluster",
            &["endpoint", "status", "--cluster"],
            Shape::SortedLines(status_cols),
        );
        s.run(
            "endpoint status --cluster -w table",
            &["endpoint", "status", "--cluster", "-w", "table"],
            Shape::SortedLines(status_cols),
        );
        let o = etcdctl(&s.c.members[0].client, &["endpoint", "health", "--cluster"]);
        let masked = Output {
            stdout: o
                .stdout
                .lines()
                .map(|l| l.split(": took = ").next().unwrap_or(l).to_string() + "\n")
                .collect(),
            ..o
        };
        s.record("endpoint health --cluster", &masked, Shape::SortedLines(&[]));
        s.run(
            "endpoint hashkv --cluster",
            &["endpoint", "hashkv", "--cluster"],
            Shape::SortedLines(&[1]),
        );

        // A learner that never starts: listed as unstarted, cannot be promoted.
        let add = ["member", "add", "l1", "--peer-urls=http://127.0.0.1:1", "--learner"];
        let o = etcdctl(&s.c.members[0].client, &add);
        s.norm.learn_members(&o.stdout);
        s.record("member add --learner", &o, Shape::MemberAdd);
        s.run("member list (learner)", &["member", "list"], Shape::SortedLines(&[]));
        let learner = s
            .norm
            .id_of("<NEWMEMBER>")
            .map(|id| format!("{id:x}"))
            .unwrap_or_default();
        s.run("member promote learner", &["member", "promote", &learner], Shape::Plain);
        let m1 = s.id("m1");
        s.run("member promote voter", &["member", "promote", &m1], Shape::Plain);
        let taken = format!("--peer-urls={}", s.c.members[1].peer);
        s.run("member add taken URL", &["member", "add", "x", &taken], Shape::Plain);
        s.run(
            "member add second learner",
            &["member", "add", "l2", "--peer-urls=http://127.0.0.1:2", "--learner"],
            Shape::Plain,
        );
        s.run("member remove learner", &["member", "remove", &learner], Shape::Plain);
        s.run(
            "member remove learner again",
            &["member", "remove", &learner],
            Shape::Plain,
        );
        s.run("member remove unknown", &["member", "remove", "1234"], Shape::Plain);
        s.run(
            "member update unknown",
            &["member", "update", "1234", "--peer-urls=http://127.0.0.1:3"],
            Shape::Plain,
        );
        s.run("member list (after)", &["member", "list"], Shape::SortedLines(&[]));

        // MoveLeader to m1 (first away from m1 if it leads), then remove follower m2.
        if s.leader_name() == "m1" {
            let m2 = s.id("m2");
            let o = etcdctl(&s.c.endpoints(), &["move-leader", &m2]);
            assert_eq!(o.status, 0, "{o:?}");
        }
        let mut o = etcdctl(&s.c.endpoints(), &["move-leader", &m1]);
        // Which member led before depends on the election.
        let from = o.stdout.split_whitespace().nth(3).unwrap_or_default().to_string();
        if !from.is_empty() {
            o.stdout = o.stdout.replacen(&from, "<previous leader>", 1);
        }
        s.record("move-leader", &o, Shape::Plain);
        assert_eq!(s.leader_name(), "m1", "{} did not move the leader", s.c.kind.name());
        let m2 = s.id("m2");
        let o = eventually(
            &s.c.members[0].client,
            &["member", "remove", &m2],
            Duration::from_secs(20),
        );
        s.record("member remove follower", &o, Shape::Plain);
        s.run("member list (two left)", &["member", "list"], Shape::SortedLines(&[]));
    }
    let [etcd, rustcd] = &sides;
    compare(etcd, rustcd);
}
