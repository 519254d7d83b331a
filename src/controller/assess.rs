//! Pure assessment of an [`Observation`]: member health, the leader, data loss and the planner's input.

use std::collections::BTreeMap;

use super::cluster_status::VolumeRecord;
use super::names::Identity;
use super::observe::Observation;
use super::planner::{member_ordinal, Observed, ObservedMember, ObservedPod};
use super::volumes::{self, ListedMember};
use rustcd_proto::etcdserverpb::{Member, StatusResponse};

/// A learner counts as caught up once it applied this share (in percent) of the leader's log, the
/// threshold etcd's MemberPromote applies itself.
pub const LEARNER_CAUGHT_UP_PERCENT: u64 = 90;

/// The assessed cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assessment {
    /// The planner's input.
    pub observed: Observed,
    /// `status.memberVolumes` after this observation.
    pub records: Vec<VolumeRecord>,
    /// ID of the member that reports itself leader (highest term wins if several do).
    pub leader: Option<u64>,
    /// Cluster ID the members report.
    pub cluster_id: Option<u64>,
    /// Lowest version the members report.
    pub version: Option<String>,
    /// Ordinal of each listed member that maps to one.
    pub ordinals: BTreeMap<u64, u32>,
    /// Why restoring `spec.bootstrap.fromBackup` into the first member failed, if it did.
    pub restore_failure: Option<String>,
    /// Recorded members (`status.memberVolumes`) whose pod now runs on another volume: their data is
    /// gone. Read from the records alone, so it is known also when no member answers MemberList.
    pub lost_volumes: usize,
}

/// The Status a member reported about itself, if any.
fn own_status<'a>(obs: &'a Observation, member: &Member, ordinal: Option<u32>) -> Option<&'a StatusResponse> {
    let status = obs.statuses.get(&ordinal?)?;
    (status.header.as_ref()?.member_id == member.id).then_some(status)
}

/// The member that reports itself leader; only listed members count (a pod answering with a foreign
/// member ID is not part of this cluster), and the highest term wins if several claim it.
fn leader_of(obs: &Observation) -> Option<(u64, &StatusResponse)> {
    let listed = |id: u64| obs.members.as_ref().is_none_or(|ms| ms.iter().any(|m| m.id == id));
    obs.statuses
        .values()
        .filter_map(|s| {
            let me = s.header.as_ref()?.member_id;
            (s.leader == me && me != 0 && listed(me)).then_some((me, s))
        })
        .max_by_key(|(_, s)| s.raft_term)
}

/// Whether a member is healthy: it answered Status about itself without errors and knows a leader; a
/// learner must also have applied [`LEARNER_CAUGHT_UP_PERCENT`] of the leader's log.
pub fn member_healthy(member: &Member, status: Option<&StatusResponse>, leader: Option<&StatusResponse>) -> bool {
    let Some(status) = status else {
        return false;
    };
    if !status.errors.is_empty() || status.leader == 0 {
        return false;
    }
    if !member.is_learner {
        return true;
    }
    leader.is_some_and(|l| {
        u128::from(status.raft_applied_index) * 100 >= u128::from(l.raft_index) * u128::from(LEARNER_CAUGHT_UP_PERCENT)
    })
}

/// Orders `3.5.0` < `3.10.0`; unparsable parts count as 0.
fn version_key(version: &str) -> Vec<u64> {
    let core = version.trim_start_matches('v').split('-').next().unwrap_or("");
    core.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Assesses `obs` for cluster `id`; `previous` is `status.memberVolumes`, `bootstrapped` whether the
/// status recorded a cluster ID.
pub fn assess(id: &Identity, obs: &Observation, previous: &[VolumeRecord], bootstrapped: bool) -> Assessment {
    let leader = leader_of(obs);
    let leader_status = leader.map(|(_, s)| s);
    let mut ordinals = BTreeMap::new();
    let members = obs.members.as_ref().map(|list| {
        list.iter()
            .map(|m| {
                let mut observed = ObservedMember {
                    id: m.id,
                    name: m.name.clone(),
                    peer_url: m.peer_ur_ls.first().cloned().unwrap_or_default(),
                    is_learner: m.is_learner,
                    healthy: false,
                    is_leader: leader.is_some_and(|(l, _)| l == m.id),
                };
                let ordinal = member_ordinal(&id.name, &observed);
                if let Some(k) = ordinal {
                    ordinals.insert(m.id, k);
                }
                observed.healthy = member_healthy(m, own_status(obs, m, ordinal), leader_status);
                observed
            })
            .collect::<Vec<_>>()
    });
    let volumes: BTreeMap<u32, String> = obs
        .pods
        .iter()
        .filter_map(|(k, p)| Some((*k, p.volume_uid.clone()?)))
        .collect();
    let listed: Vec<ListedMember> = members
        .iter()
        .flatten()
        .filter_map(|m| {
            Some(ListedMember {
                ordinal: *ordinals.get(&m.id)?,
                id: m.id,
                started: !m.name.is_empty(),
            })
        })
        .collect();
    let records = match &members {
        Some(_) => volumes::updated_records(previous, &listed, &volumes),
        None => previous.to_vec(),
    };
    let lost_volumes = records
        .iter()
        .filter(|r| volumes.get(&r.ordinal).is_some_and(|v| *v != r.volume_uid))
        .count();
    let sts = obs.statefulset_replicas();
    let current = obs.template_hash();
    let pods = obs
        .pods
        .iter()
        .filter(|(k, _)| sts.is_some_and(|r| **k < r))
        .map(|(k, p)| ObservedPod {
            ordinal: *k,
            ready: p.ready,
            data_lost: listed
                .iter()
                .any(|m| m.ordinal == *k && volumes::data_lost(&records, *k, m.id, p.volume_uid.as_deref())),
            outdated: current.is_some_and(|c| p.template_hash.as_deref() != Some(c)),
        })
        .collect();
    Assessment {
        observed: Observed {
            members,
            statefulset_replicas: sts,
            pods,
            bootstrapped,
            in_flight: None,
        },
        records,
        leader: leader.map(|(l, _)| l),
        cluster_id: obs
            .statuses
            .values()
            .find_map(|s| s.header.as_ref().map(|h| h.cluster_id)),
        version: obs
            .statuses
            .values()
            .map(|s| s.version.clone())
            .filter(|v| !v.is_empty())
            .min_by_key(|v| version_key(v)),
        ordinals,
        restore_failure: obs.pods.values().find_map(|p| p.restore_failure.clone()),
        lost_volumes,
    }
}

#[cfg(test)]
#[path = "assess_tests.rs"]
mod tests;
