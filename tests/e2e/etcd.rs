//! etcdctl against the cluster's client Service, through `kubectl port-forward`.

use std::process::Command;

use super::kubectl::PortForward;

/// One line of `etcdctl member list` (simple format):
/// `<hex id>, started|unstarted, <name>, <peer urls>, <client urls>, <is learner>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub started: bool,
    pub name: String,
    pub learner: bool,
}

/// Parses `etcdctl member list` output.
pub fn parse_member_list(output: &str) -> Result<Vec<Member>, String> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(", ").collect();
            match fields.as_slice() {
                [id, state @ ("started" | "unstarted"), name, _peers, _clients, learner @ ("true" | "false")] => {
                    Ok(Member {
                        id: id.to_string(),
                        started: *state == "started",
                        name: name.to_string(),
                        learner: *learner == "true",
                    })
                }
                _ => Err(format!("not an etcdctl member line: {line:?}")),
            }
        })
        .collect()
}

/// Runs `etcdctl ARGS` against `service` in `namespace` (a fresh port-forward each time: the pod behind an
/// old one may have been replaced).
pub fn etcdctl(etcdctl_bin: &str, namespace: &str, service: &str, args: &[&str]) -> Result<String, String> {
    etcdctl_over(etcdctl_bin, namespace, service, None, args)
}

/// [`etcdctl`] over https with `--cacert`, `--cert` and `--key` (`tls`): the forwarded endpoint is
/// `127.0.0.1`, which the operator's client certificates name.
pub fn etcdctl_over(
    etcdctl_bin: &str,
    namespace: &str,
    service: &str,
    tls: Option<&[String]>,
    args: &[&str],
) -> Result<String, String> {
    let forward = PortForward::start(namespace, service, 2379)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://127.0.0.1:{}", forward.port);
    let out = Command::new(etcdctl_bin)
        .args(["--endpoints", &endpoint, "--command-timeout=10s", "--dial-timeout=5s"])
        .args(tls.unwrap_or_default())
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .map_err(|e| format!("cannot run {etcdctl_bin}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The members when exactly `voters` are listed, all started voters; an error saying what is listed otherwise.
pub fn settled_members(
    etcdctl_bin: &str,
    namespace: &str,
    service: &str,
    voters: usize,
) -> Result<Vec<Member>, String> {
    let members = parse_member_list(&etcdctl(etcdctl_bin, namespace, service, &["member", "list"])?)?;
    let settled = members.len() == voters && members.iter().all(|m| m.started && !m.learner);
    if settled {
        Ok(members)
    } else {
        Err(format!("want {voters} started voters, member list has {members:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcdctl_member_lines() {
        let out = "8e9e05c52164694d, started, example-0, http://example-0.example-peer:2380, http://example-0.example-peer:2379, false\n\
                   91bc3c398fb3c146, unstarted, , http://example-3.example-peer:2380, , true\n";
        let members = parse_member_list(out).unwrap();
        assert_eq!(
            members,
            [
                Member {
                    id: "8e9e05c52164694d".into(),
                    started: true,
                    name: "example-0".into(),
                    learner: false
                },
                Member {
                    id: "91bc3c398fb3c146".into(),
                    started: false,
                    name: String::new(),
                    learner: true
                },
            ]
        );
        assert!(parse_member_list("Error: context deadline exceeded").is_err());
        assert_eq!(parse_member_list("\n").unwrap(), []);
    }
}
