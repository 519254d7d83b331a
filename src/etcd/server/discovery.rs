//! What a member with an empty data directory learns from its peers before it starts.
//!
//! - `--initial-cluster-state=existing`: the member joins a running cluster. It asks the
//!   peers named in `--initial-cluster` for the member list, checks that `--initial-cluster`
//!   describes exactly that list (etcd's `ValidateClusterAndAssignIDs`), and takes its member
//!   ID and the cluster ID from it.
//! - `--initial-cluster-state=new`: the member bootstraps. Peers that already answer must
//!   belong to the cluster the flags describe (same cluster ID) and must not list this member
//!   as started; otherwise the flags point at the wrong cluster and the member refuses to start.
//!
//! A member whose data directory is initialized ignores all of this (and its bootstrap flags).

use std::time::{Duration, Instant};

use crate::config::{InitialClusterState, InitialMember, ServerConfig};
use crate::membership::{self, Membership};
use crate::peer::fetch_members;
use crate::proto::etcdserverpb::Member;
use crate::proto::rustcdpb::MembersResponse;
use crate::storage::DataDir;
use crate::tls::Dialer;

use super::BootstrapError;

/// How long a joining member keeps asking its peers for the member list.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a bootstrapping member waits for each peer's answer (peers may not be up yet).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The running cluster a new member joins.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The members the running cluster reported (the peers this member can reach first).
    pub members: Vec<Member>,
}

/// Checks the flags against the peers when the data directory is empty; returns what a
/// joining member needs.
pub async fn prepare(cfg: &ServerConfig) -> Result<Option<JoinInfo>, BootstrapError> {
    let dirs = DataDir::new(&cfg.data_dir, cfg.wal_dir.as_deref());
    if dirs.is_initialized()? {
        return Ok(None);
    }
    let peers = remote_peer_urls(cfg);
    let dialer = crate::tls::peer_dialer(&cfg.tls)?;
    match cfg.initial_cluster_state {
        InitialClusterState::Existing => {
            if peers.is_empty() {
                return Err(BootstrapError::Join(
                    "--initial-cluster-state=existing needs --initial-cluster to list the running members".into(),
                ));
            }
            let remote = fetch_any(&peers, &dialer).await?;
            let me = validate_join(
                &cfg.initial_cluster,
                &cfg.initial_advertise_peer_urls,
                &cfg.name,
                &remote,
            )?;
            Ok(Some(JoinInfo {
                member_id: me,
                cluster_id: remote.cluster_id,
                members: remote.members,
            }))
        }
        InitialClusterState::New => {
            let expected = Membership::bootstrap(&cfg.initial_cluster, &cfg.initial_cluster_token);
            let me = membership::member_id(&cfg.initial_advertise_peer_urls, &cfg.initial_cluster_token, None);
            let answers =
                futures::future::join_all(peers.iter().map(|u| fetch_members(u, PROBE_TIMEOUT, &dialer))).await;
            for (url, answer) in peers.iter().zip(answers) {
                let Ok(remote) = answer else { continue };
                check_new(&cfg.name, me, expected.cluster_id, url, &remote)?;
            }
            Ok(None)
        }
    }
}

/// Peer URLs of the other members of `--initial-cluster`.
fn remote_peer_urls(cfg: &ServerConfig) -> Vec<String> {
    cfg.initial_cluster
        .iter()
        .filter(|m| m.name != cfg.name)
        .flat_map(|m| m.peer_urls.iter().cloned())
        .collect()
}

/// The first member list any peer returns, retrying until [`JOIN_DEADLINE`].
async fn fetch_any(peers: &[String], dialer: &Dialer) -> Result<MembersResponse, BootstrapError> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut errors = Vec::new();
    loop {
        for url in peers {
            match fetch_members(url, Duration::from_secs(2), dialer).await {
                Ok(r) if r.cluster_id != 0 => return Ok(r),
                Ok(_) => errors.push(format!("{url}: member has no cluster yet")),
                Err(e) => errors.push(e),
            }
        }
        if Instant::now() >= deadline {
            errors.dedup();
            return Err(BootstrapError::Join(format!(
                "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs ({})",
                errors.join("; ")
            )));
        }
        errors.clear();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn sorted(urls: &[String]) -> Vec<String> {
    let mut u = urls.to_vec();
    u.sort();
    u
}

/// etcd's `ValidateClusterAndAssignIDs`: `--initial-cluster` must list exactly the running
/// members (by peer URLs). Returns this member's ID.
pub fn validate_join(
    local: &[InitialMember],
    my_peer_urls: &[String],
    my_name: &str,
    remote: &MembersResponse,
) -> Result<u64, BootstrapError> {
    let describe = || {
        remote
            .members
            .iter()
            .map(|m| format!("{:x}={}", m.id, m.peer_ur_ls.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if local.len() != remote.members.len() {
        return Err(BootstrapError::Join(format!(
            "error validating peerURLs (cluster {:x}: {}): member count is unequal ({} in --initial-cluster, {} in the running cluster)",
            remote.cluster_id,
            describe(),
            local.len(),
            remote.members.len()
        )));
    }
    for m in &remote.members {
        if !local.iter().any(|l| sorted(&l.peer_urls) == sorted(&m.peer_ur_ls)) {
            return Err(BootstrapError::Join(format!(
                "error validating peerURLs (cluster {:x}: {}): PeerURLs: no match found for existing member ({:x}, {:?}) in --initial-cluster",
                remote.cluster_id,
                describe(),
                m.id,
                m.peer_ur_ls
            )));
        }
    }
    let mine = sorted(my_peer_urls);
    let me = remote
        .members
        .iter()
        .find(|m| sorted(&m.peer_ur_ls) == mine)
        .ok_or_else(|| {
            BootstrapError::Join(format!(
                "the running cluster has no member with peer URLs {mine:?}; add this member first (etcdctl member add {my_name} --peer-urls={})",
                mine.join(",")
            ))
        })?;
    if !me.name.is_empty() {
        return Err(BootstrapError::Join(format!(
            "member {} ({:x}) has already started in this cluster but its data directory is empty: its data was lost. \
             Remove it (etcdctl member remove {:x}) and add it again before starting it with an empty data directory",
            me.name, me.id, me.id
        )));
    }
    Ok(me.id)
}

/// A bootstrapping member's check of one peer's answer.
fn check_new(
    name: &str,
    me: u64,
    expected_cluster: u64,
    url: &str,
    remote: &MembersResponse,
) -> Result<(), BootstrapError> {
    if remote.cluster_id != 0 && remote.cluster_id != expected_cluster {
        return Err(BootstrapError::Join(format!(
            "peer {url} belongs to cluster {:x}, but --initial-cluster and --initial-cluster-token describe cluster {expected_cluster:x}; \
             check both flags on every member (or use --initial-cluster-state=existing to join a running cluster)",
            remote.cluster_id
        )));
    }
    if remote.members.iter().any(|m| m.id == me && !m.name.is_empty()) {
        return Err(BootstrapError::Join(format!(
            "member {name} has already been bootstrapped (peer {url} lists it as started); \
             restart it with its data directory, or remove and re-add it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn im(name: &str, url: &str) -> InitialMember {
        InitialMember {
            name: name.into(),
            peer_urls: vec![url.into()],
        }
    }

    fn rm(id: u64, name: &str, url: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![url.into()],
            ..Default::default()
        }
    }

    fn remote() -> MembersResponse {
        MembersResponse {
            cluster_id: 0xc1,
            members: vec![
                rm(1, "a", "http://a:2380"),
                rm(2, "b", "http://b:2380"),
                rm(3, "", "http://c:2380"),
            ],
            removed: vec![],
        }
    }

    #[test]
    fn joining_member_takes_its_id_from_the_running_cluster() {
        let local = [
            im("a", "http://a:2380"),
            im("b", "http://b:2380"),
            im("c", "http://c:2380"),
        ];
        let id = validate_join(&local, &["http://c:2380".into()], "c", &remote()).unwrap();
        assert_eq!(id, 3);
    }

    #[test]
    fn joining_member_refuses_a_different_member_set() {
        let short = [im("a", "http://a:2380"), im("c", "http://c:2380")];
        let e = validate_join(&short, &["http://c:2380".into()], "c", &remote()).unwrap_err();
        assert!(e.to_string().contains("member count is unequal"), "{e}");
        let other = [
            im("a", "http://a:2380"),
            im("x", "http://x:2380"),
            im("c", "http://c:2380"),
        ];
        let e = validate_join(&other, &["http://c:2380".into()], "c", &remote()).unwrap_err();
        assert!(e.to_string().contains("no match found for existing member (2"), "{e}");
        // A started member that lost its data must be replaced, not silently rejoin.
        let all = [
            im("a", "http://a:2380"),
            im("b", "http://b:2380"),
            im("c", "http://c:2380"),
        ];
        let e = validate_join(&all, &["http://b:2380".into()], "b", &remote()).unwrap_err();
        assert!(e.to_string().contains("data was lost"), "{e}");
    }

    #[test]
    fn bootstrapping_member_refuses_another_cluster() {
        assert!(check_new("c", 3, 0xc1, "u", &remote()).is_ok());
        let e = check_new("c", 3, 0xc2, "u", &remote()).unwrap_err();
        assert!(e.to_string().contains("belongs to cluster c1"), "{e}");
        let e = check_new("a", 1, 0xc1, "u", &remote()).unwrap_err();
        assert!(e.to_string().contains("already been bootstrapped"), "{e}");
    }
}
