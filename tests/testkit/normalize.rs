//! Normalisation of etcdctl / client output so that two servers' transcripts compare
//! with `assert_eq!`: IDs, terms, raft indexes, sizes, versions and timings are masked;
//! revisions are kept.

use super::Server;

/// JSON keys whose values are server/timing dependent and are masked.
const MASKED_JSON_KEYS: &[&str] = &[
    "raft_term",
    "raftTerm",
    "raftIndex",
    "raft_index",
    "raftAppliedIndex",
    "raft_applied_index",
    "dbSize",
    "dbSizeInUse",
    "db_size",
    "db_size_in_use",
    "version",
    "took",
    "hash",
    "ts",
    "target",
];

/// JSON keys holding member/cluster/lease IDs (mapped through the ID table).
const ID_JSON_KEYS: &[&str] = &["cluster_id", "member_id", "ID", "id", "leader", "lease", "memberID"];

/// Per-server normaliser: knows the server's URLs and the IDs it chose.
#[derive(Clone, Debug, Default)]
pub struct Norm {
    /// numeric ID -> placeholder
    ids: Vec<(u64, String)>,
    /// lease IDs in grant order
    pub leases: Vec<i64>,
    /// extra literal substrings to mask (e.g. temp paths)
    literals: Vec<(String, String)>,
}

impl Norm {
    pub fn new(client_url: &str, peer_url: &str) -> Norm {
        let mut n = Norm::default();
        n.add_literal(client_url, "<CLIENT_URL>");
        n.add_literal(peer_url, "<PEER_URL>");
        n.add_literal(client_url.trim_start_matches("http://"), "<CLIENT_ADDR>");
        n.add_literal(peer_url.trim_start_matches("http://"), "<PEER_ADDR>");
        n
    }

    pub fn for_server(s: &Server) -> Norm {
        Norm::new(&s.endpoint(), &s.peer_url())
    }

    pub fn add_literal(&mut self, text: &str, placeholder: &str) {
        self.literals.push((text.to_string(), placeholder.to_string()));
        // longest first so that URLs win over bare addresses
        self.literals.sort_by_key(|l| std::cmp::Reverse(l.0.len()));
    }

    pub fn add_id(&mut self, id: u64, placeholder: &str) {
        if id != 0 && !self.ids.iter().any(|(i, _)| *i == id) {
            self.ids.push((id, placeholder.to_string()));
            // etcdctl's member add/remove/update messages print IDs with %16x (space
            // padded: "Member  abc... added to cluster  def..."). Only those contexts are
            // matched: a bare padded literal would also eat the space after a ", "
            // separator wherever the same ID is printed with %x.
            let hex = format!("{id:x}");
            if (6..16).contains(&hex.len()) {
                for context in ["Member ", "cluster "] {
                    self.add_literal(&format!("{context}{id:>16x}"), &format!("{context}{placeholder}"));
                }
            }
        }
    }

    /// Registers a lease ID chosen by the server; returns its index (1-based).
    pub fn add_lease(&mut self, id: i64) -> usize {
        if let Some(pos) = self.leases.iter().position(|l| *l == id) {
            return pos + 1;
        }
        self.leases.push(id);
        let n = self.leases.len();
        self.add_id(id as u64, &format!("<LEASE{n}>"));
        n
    }

    /// Hex form of the n-th (1-based) lease as etcdctl prints/accepts it.
    pub fn lease_hex(&self, n: usize) -> String {
        format!("{:x}", self.leases[n - 1])
    }

    /// Learns lease IDs from etcdctl output (`lease <hex> granted` or JSON grant).
    pub fn learn_leases(&mut self, stdout: &str) {
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("lease ") {
                if let Some((hex, tail)) = rest.split_once(' ') {
                    if tail.starts_with("granted") {
                        if let Ok(id) = i64::from_str_radix(hex, 16) {
                            self.add_lease(id);
                        }
                    }
                }
            }
            if line.starts_with('{') && line.contains("\"TTL\"") && !line.contains("grantedTTL") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let Some(id) = v.get("ID").and_then(|i| i.as_i64()) {
                        if v.get("Error").is_some() {
                            self.add_lease(id);
                        }
                    }
                }
            }
        }
    }

    /// Learns IDs of members added with `etcdctl member add` (simple or JSON).
    pub fn learn_members(&mut self, stdout: &str) {
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("Member ") {
                // etcdctl prints member IDs with %16x: space padded
                if let Some((hex, tail)) = rest.trim_start().split_once(' ') {
                    if tail.starts_with("added to cluster") {
                        if let Ok(id) = u64::from_str_radix(hex, 16) {
                            self.add_id(id, "<NEWMEMBER>");
                        }
                    }
                }
            }
            if line.starts_with('{') && line.contains("\"member\":") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let Some(id) = v["member"]["ID"].as_u64() {
                        self.add_id(id, "<NEWMEMBER>");
                    }
                }
            }
        }
    }

    /// The ID registered under `placeholder` (e.g. `<MEMBER>`).
    pub fn id_of(&self, placeholder: &str) -> Option<u64> {
        self.ids.iter().find(|(_, p)| p == placeholder).map(|(i, _)| *i)
    }

    /// Learns member and cluster ID from a response header or status JSON.
    pub fn learn_header(&mut self, cluster_id: u64, member_id: u64) {
        self.add_id(member_id, "<MEMBER>");
        self.add_id(cluster_id, "<CLUSTER>");
    }

    fn id_placeholder(&self, v: u64) -> Option<&str> {
        self.ids.iter().find(|(i, _)| *i == v).map(|(_, p)| p.as_str())
    }

    /// Normalises etcdctl stdout/stderr or a Debug print of a client response.
    pub fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            let mut line = line.to_string();
            for (lit, ph) in &self.literals {
                if line.contains(lit.as_str()) {
                    line = line.replace(lit.as_str(), ph);
                }
            }
            let trimmed = line.trim_start();
            let normalized = if trimmed.starts_with('{') || trimmed.starts_with('[') {
                match serde_json::from_str::<serde_json::Value>(trimmed) {
                    Ok(v) => self.normalize_json_line(v),
                    Err(_) => self.normalize_text_line(&line),
                }
            } else {
                self.normalize_text_line(&line)
            };
            out.push_str(&normalized);
            out.push('\n');
        }
        out
    }

    fn normalize_json_line(&self, mut v: serde_json::Value) -> String {
        // etcdctl client log lines: keep only level, msg and error.
        if let Some(obj) = v.as_object() {
            if obj.contains_key("level") && obj.contains_key("msg") {
                let get = |k: &str| obj.get(k).and_then(|x| x.as_str()).unwrap_or("");
                return format!(
                    "LOG {} {}: {}",
                    get("level"),
                    get("msg"),
                    self.normalize_text_line(get("error"))
                );
            }
        }
        self.mask_json(&mut v);
        v.to_string()
    }

    fn mask_json(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Object(map) => {
                // lease timetolive: "grantedTTL" (-w json of keep-alive/list)
                // or "granted-ttl" (-w json of timetolive)
                let has_granted = map.contains_key("grantedTTL") || map.contains_key("granted-ttl");
                for (k, val) in map.iter_mut() {
                    if k == "version" && !val.is_string() {
                        // a key's version (a number) is data; only the
                        // server version string is masked
                    } else if MASKED_JSON_KEYS.contains(&k.as_str()) {
                        *val = Value::String(format!("<{k}>"));
                    } else if (k == "TTL" || k == "ttl") && has_granted && val.as_i64().is_some_and(|t| t > 0) {
                        // remaining TTL of timetolive is timing dependent
                        *val = Value::String("<TTL>".into());
                    } else if ID_JSON_KEYS.contains(&k.as_str()) {
                        let n = val.as_u64().or_else(|| val.as_i64().map(|i| i as u64));
                        if let Some(ph) = n.and_then(|n| self.id_placeholder(n)) {
                            *val = Value::String(ph.to_string());
                        }
                    } else if k == "keys" && has_granted {
                        // attached keys of a lease come in map order in etcd
                        if let Value::Array(items) = val {
                            items.sort_by_key(|x| x.to_string());
                        }
                    } else if k == "Endpoint" || k == "endpoint" || k == "Error" {
                        if let Value::String(s) = val {
                            *s = self.normalize_text_line(s);
                        }
                    } else {
                        self.mask_json(val);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.mask_json(item);
                }
            }
            _ => {}
        }
    }

    /// Maps the number after `prefix` (e.g. `id: 7`) through the ID table,
    /// so small server-chosen IDs are normalised too.
    fn map_ids_after(&self, text: &str, prefix: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find(prefix) {
            let boundary = pos == 0 || !rest[..pos].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            out.push_str(&rest[..pos + prefix.len()]);
            rest = &rest[pos + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len());
            let num = rest[..end]
                .parse::<u64>()
                .ok()
                .or_else(|| rest[..end].parse::<i64>().ok().map(|n| n as u64));
            match num.and_then(|n| self.id_placeholder(n)).filter(|_| boundary) {
                Some(ph) => out.push_str(ph),
                None => out.push_str(&rest[..end]),
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    fn normalize_text_line(&self, line: &str) -> String {
        let mut line = line.to_string();
        // timing: "remaining(99s)", "took = 1.2ms", "took: 3ms"
        line = mask_after(&line, "remaining(", "<TTL>", |c| c != ')');
        line = mask_after(&line, "took = ", "<TOOK>", |c| !c.is_whitespace());
        line = mask_after(&line, "\"ts\":\"", "<TS>", |c| c != '"');
        line = sort_attached_keys(&line);
        // Debug prints of client responses
        line = mask_after(&line, "raft_term: ", "<T>", |c| c.is_ascii_digit());
        line = mask_after(&line, "raft_index: ", "<I>", |c| c.is_ascii_digit());
        line = mask_after(&line, "raft_applied_index: ", "<I>", |c| c.is_ascii_digit());
        line = mask_after(&line, "db_size: ", "<SIZE>", |c| c.is_ascii_digit());
        line = mask_after(&line, "db_size_in_use: ", "<SIZE>", |c| c.is_ascii_digit());
        line = mask_after(&line, "version: \"", "<VERSION>", |c| c != '"');
        line = mask_after(&line, "hash: ", "<HASH>", |c| c.is_ascii_digit());
        // Documented difference: rustcd fills HashKV.hash_revision (etcd 3.5.8+); 3.4 has no such field.
        line = mask_after(&line, "hash_revision: ", "<HREV>", |c| c.is_ascii_digit());
        // etcdctl -w fields
        for key in [
            "RaftTerm",
            "RaftIndex",
            "RaftAppliedIndex",
            "DBSize",
            "DBSizeInUse",
            "Hash",
        ] {
            line = mask_after(&line, &format!("\"{key}\" : "), "<*>", |c| c.is_ascii_digit());
        }
        line = mask_after(&line, "\"Version\" : \"", "<VERSION>", |c| c != '"');
        for prefix in [
            "id: ",
            "ID: ",
            "lease: ",
            "leader: ",
            "member_id: ",
            "cluster_id: ",
            "\"Lease\" : ",
            "\"ID\" : ",
            "\"Leader\" : ",
        ] {
            line = self.map_ids_after(&line, prefix);
        }
        line = replace_id_tokens(&line, &self.ids);
        // etcdctl tables: trim cells so column widths do not matter
        let t = line.trim();
        if t.starts_with('+') && t.ends_with('+') && t.chars().all(|c| c == '+' || c == '-') {
            return "+--+".into();
        }
        if t.starts_with('|') && t.ends_with('|') {
            let cells: Vec<&str> = t[1..t.len() - 1].split('|').map(|c| c.trim()).collect();
            return format!("| {} |", cells.join(" | "));
        }
        line
    }
}

/// `attached keys([k2 k1])` -> `attached keys([k1 k2])` (etcd uses map order).
fn sort_attached_keys(line: &str) -> String {
    const P: &str = "attached keys([";
    let Some(start) = line.find(P) else {
        return line.to_string();
    };
    let from = start + P.len();
    let Some(len) = line[from..].find("])") else {
        return line.to_string();
    };
    let mut keys: Vec<&str> = line[from..from + len].split(' ').collect();
    keys.sort_unstable();
    format!("{}{}{}", &line[..from], keys.join(" "), &line[from + len..])
}

/// Replaces the text after each occurrence of `prefix` (the run of chars
/// satisfying `keep`) with `placeholder`.
pub fn mask_after(text: &str, prefix: &str, placeholder: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(prefix) {
        out.push_str(&rest[..pos + prefix.len()]);
        rest = &rest[pos + prefix.len()..];
        let end = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        if end > 0 {
            out.push_str(placeholder);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces whole alphanumeric tokens equal to an ID in hex (`%x`, `%016x`)
/// or decimal. Short forms (< 6 chars) are only matched zero-padded.
fn replace_id_tokens(line: &str, ids: &[(u64, String)]) -> String {
    if ids.is_empty() {
        return line.to_string();
    }
    let forms: Vec<(String, &str)> = ids
        .iter()
        .flat_map(|(id, ph)| {
            let mut v = vec![(format!("{id:016x}"), ph.as_str())];
            let hex = format!("{id:x}");
            if hex.len() >= 6 {
                v.push((hex, ph.as_str()));
            }
            let dec = id.to_string();
            if dec.len() >= 6 {
                v.push((dec, ph.as_str()));
            }
            let signed = (*id as i64).to_string();
            if signed.len() >= 6 {
                v.push((signed, ph.as_str()));
            }
            v
        })
        .collect();
    let mut out = String::with_capacity(line.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() {
            match forms.iter().find(|(f, _)| f == token) {
                Some((_, ph)) => out.push_str(ph),
                None => out.push_str(token),
            }
            token.clear();
        }
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Masks the given `, `-separated fields (simple output) or table columns
/// (0-based, counting data cells) of every line.
pub fn mask_columns(text: &str, cols: &[usize]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('|') && t.ends_with('|') && t.len() > 1 {
            let mut cells: Vec<String> = t[1..t.len() - 1].split('|').map(|c| c.trim().to_string()).collect();
            for &c in cols {
                if c < cells.len() {
                    cells[c] = "<*>".into();
                }
            }
            out.push_str(&format!("| {} |", cells.join(" | ")));
        } else if line.contains(", ") {
            let mut fields: Vec<String> = line.split(", ").map(|s| s.to_string()).collect();
            for &c in cols {
                if c < fields.len() {
                    fields[c] = "<*>".into();
                }
            }
            out.push_str(&fields.join(", "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// A line-by-line diff of two texts, marking differing lines.
pub fn line_diff(left_name: &str, left: &str, right_name: &str, right: &str) -> String {
    let a: Vec<&str> = left.lines().collect();
    let b: Vec<&str> = right.lines().collect();
    let mut out = format!("    (- {left_name}, + {right_name})\n");
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("      {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("    - {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("    + {y}\n"));
                }
            }
        }
    }
    out
}
