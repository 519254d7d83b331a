//! The status the operator reports: built purely from the assessment and the chosen step, then written
//! with server-side apply on the status subresource (so an unchanged status is no write at all).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::assess::Assessment;
use super::cluster_status::{
    condition, set_condition, EtcdClusterStatus, MemberStatus, Phase, CONDITION_AVAILABLE, CONDITION_DEGRADED,
    CONDITION_PROGRESSING, CONDITION_RECONCILING, CONDITION_STALLED,
};
use super::names::Identity;
use super::planner::{quorum, Step};
use super::spec::SpecError;

/// How the cluster is doing, in the terms of the conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Health {
    voters: usize,
    healthy_voters: usize,
    has_leader: bool,
    data_lost: bool,
}

impl Health {
    fn of(a: &Assessment) -> Health {
        let members = a.observed.members.as_deref().unwrap_or_default();
        let voters = members.iter().filter(|m| !m.is_learner);
        Health {
            voters: voters.clone().count(),
            healthy_voters: voters.filter(|m| m.healthy).count(),
            has_leader: a.leader.is_some(),
            data_lost: a.observed.pods.iter().any(|p| p.data_lost),
        }
    }

    fn quorate(&self) -> bool {
        self.voters > 0 && self.healthy_voters >= quorum(self.voters)
    }
}

/// The coarse phase for `step` given what was assessed.
fn phase(a: &Assessment, health: Health, step: &Step) -> Phase {
    if a.observed.members.as_ref().is_none_or(Vec::is_empty) {
        return if a.observed.bootstrapped {
            Phase::Failed
        } else {
            Phase::Creating
        };
    }
    if !health.quorate() {
        return Phase::Failed;
    }
    match step {
        Step::None => Phase::Running,
        _ if health.data_lost || health.healthy_voters < health.voters => Phase::Degraded,
        _ => Phase::Scaling,
    }
}

/// The new status: `previous` updated with this reconcile's findings (conditions keep their transition
/// times while their status stays the same; the cluster ID is kept when no member answered).
pub fn build_status(
    id: &Identity,
    generation: Option<i64>,
    previous: &EtcdClusterStatus,
    a: &Assessment,
    step: &Step,
    now: Time,
) -> EtcdClusterStatus {
    let health = Health::of(a);
    let phase = phase(a, health, step);
    let members: Vec<MemberStatus> = a
        .observed
        .members
        .iter()
        .flatten()
        .map(|m| MemberStatus {
            id: MemberStatus::format_id(m.id),
            name: m.name.clone(),
            peer_url: m.peer_url.clone(),
            client_urls: Vec::new(),
            is_learner: m.is_learner,
            healthy: m.healthy,
        })
        .collect();
    let leader = a.leader.and_then(|l| {
        let ordinal = a.ordinals.get(&l)?;
        Some(id.pod_name(*ordinal))
    });
    let mut conditions = previous.conditions.clone();
    let progressing = !matches!(step, Step::None);
    let available = health.has_leader && health.quorate();
    let degraded = matches!(phase, Phase::Degraded | Phase::Failed);
    let health_message = format!("{} of {} voters healthy", health.healthy_voters, health.voters);
    // Quorum lost for good: no quorum now, and a majority of the recorded members' volumes are gone.
    let recorded = a.records.len();
    let quorum_lost =
        a.observed.bootstrapped && !health.quorate() && recorded > 0 && a.lost_volumes >= quorum(recorded);
    let degraded_reason = match (phase, health.data_lost) {
        _ if a.restore_failure.is_some() => "RestoreFailed",
        _ if quorum_lost => "QuorumLost",
        (Phase::Failed, _) => "NoQuorum",
        (_, true) => "DataLost",
        (Phase::Degraded, false) => "UnhealthyMembers",
        _ => "Healthy",
    };
    let mut set = |type_: &str, status: bool, reason: &str, message: &str| {
        set_condition(
            &mut conditions,
            condition(type_, status, reason, message, generation, now.clone()),
        );
    };
    set(
        CONDITION_AVAILABLE,
        available,
        if available { "Quorum" } else { "NoQuorum" },
        &health_message,
    );
    set(CONDITION_PROGRESSING, progressing, step.reason(), &step.to_string());
    set(CONDITION_RECONCILING, progressing, step.reason(), &step.to_string());
    // A failed restore stops the bootstrap until the source is fixed: Degraded and Stalled say why.
    let (degraded, degraded_message, stalled, stalled_message) = match &a.restore_failure {
        Some(failure) => {
            let m = format!("restoring spec.bootstrap.fromBackup failed: {failure}");
            (true, m.clone(), true, m)
        }
        None if quorum_lost => {
            let m = format!(
                "{} of {recorded} members lost their data: quorum is lost for good; the operator changes \
                 nothing; recover into a new cluster from a backup (spec.bootstrap.fromBackup, see the README's \
                 \"Lost quorum\")",
                a.lost_volumes
            );
            (true, m.clone(), true, m)
        }
        None => (
            degraded,
            health_message.clone(),
            phase == Phase::Failed,
            format!("{health_message}: {step}"),
        ),
    };
    set(CONDITION_DEGRADED, degraded, degraded_reason, &degraded_message);
    set(CONDITION_STALLED, stalled, degraded_reason, &stalled_message);
    EtcdClusterStatus {
        phase,
        replicas: i32::try_from(a.observed.pods.len()).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(health.healthy_voters).unwrap_or(i32::MAX),
        updated_replicas: i32::try_from(a.observed.pods.iter().filter(|p| !p.outdated).count()).unwrap_or(i32::MAX),
        members,
        leader,
        cluster_id: a
            .cluster_id
            .map(|c| format!("{c:x}"))
            .or_else(|| previous.cluster_id.clone()),
        current_version: a.version.clone().or_else(|| previous.current_version.clone()),
        observed_generation: generation,
        conditions,
        selector: Some(id.selector_string()),
        member_volumes: a.records.clone(),
        created_with: previous.created_with.clone(),
        accepted_version: previous.accepted_version.clone(),
        backup: previous.backup.clone(),
    }
}

/// The status for a spec the operator refuses (`problems`, from
/// [`EtcdClusterSpec::validate`](super::spec::EtcdClusterSpec::validate) or
/// [`validate_update`](super::spec::EtcdClusterSpec::validate_update)): `previous` with `Degraded` and `Stalled` true, reason
/// `InvalidSpec`, naming the problems; nothing else changes, as nothing is acted on.
pub fn invalid_spec_status(
    previous: &EtcdClusterStatus,
    generation: Option<i64>,
    problems: &SpecError,
    now: Time,
) -> EtcdClusterStatus {
    let mut status = previous.clone();
    for type_ in [CONDITION_DEGRADED, CONDITION_STALLED] {
        set_condition(
            &mut status.conditions,
            condition(
                type_,
                true,
                "InvalidSpec",
                problems.to_string(),
                generation,
                now.clone(),
            ),
        );
    }
    status
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
