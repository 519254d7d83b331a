//! A tiny model of an etcd cluster run by a StatefulSet, for testing the planner.
//!
//! It executes planner steps with etcd's own preconditions (MemberAdd refuses a second learner or a
//! taken peer URL, MemberPromote refuses a learner that is not caught up, membership changes need
//! quorum, MoveLeader needs the current leader) and lets time pass in [`Sim::tick`]: pods start, members
//! publish their names, learners catch up, a leader is elected. Faults model an operator that crashes
//! before executing a step, in the middle of a replacement, or before recording the step in its status.

use std::collections::{BTreeMap, BTreeSet};

use super::{quorum, Desired, MemberId, Observed, ObservedMember, ObservedPod, Step};

/// What goes wrong around one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The step runs and its status record is written.
    None,
    /// The operator crashes before the step takes effect.
    Drop,
    /// The step takes effect (a replacement only its removal half) but the status write is lost.
    Crash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMember {
    pub id: MemberId,
    pub ordinal: u32,
    pub learner: bool,
    /// Has started and published its name.
    pub started: bool,
    /// Has the leader's log (voters always; learners one tick after starting).
    pub caught_up: bool,
}

#[derive(Clone, Debug)]
pub struct Sim {
    pub name: String,
    pub members: Vec<SimMember>,
    pub sts: Option<u32>,
    /// Ordinals whose volume is fresh while the member recorded for them has started before.
    pub data_lost: BTreeSet<u32>,
    /// Ordinals whose pod runs an outdated template (a spec change not rolled out yet).
    pub outdated: BTreeSet<u32>,
    /// Ordinals whose pod is crash-looping for reasons outside the cluster, with the ticks until it
    /// recovers.
    pub down: BTreeMap<u32, u32>,
    pub leader: Option<MemberId>,
    pub next_id: MemberId,
    pub bootstrapped: bool,
    pub in_flight: Option<Step>,
}

impl Sim {
    /// A cluster that was never created.
    pub fn new(name: &str) -> Self {
        Sim {
            name: name.to_string(),
            members: Vec::new(),
            sts: None,
            data_lost: BTreeSet::new(),
            outdated: BTreeSet::new(),
            down: BTreeMap::new(),
            leader: None,
            next_id: 0x1000,
            bootstrapped: false,
            in_flight: None,
        }
    }

    /// A settled cluster of `voters` healthy voters on ordinals `0..voters`.
    pub fn healthy(name: &str, voters: u32) -> Self {
        let mut sim = Sim::new(name);
        for ordinal in 0..voters {
            let id = sim.fresh_id();
            sim.members.push(SimMember {
                id,
                ordinal,
                learner: false,
                started: true,
                caught_up: true,
            });
        }
        sim.sts = Some(voters);
        sim.bootstrapped = voters > 0;
        sim.leader = sim.members.first().map(|m| m.id);
        sim
    }

    pub fn desired(&self, replicas: u32) -> Desired {
        Desired {
            name: self.name.clone(),
            replicas,
        }
    }

    pub fn fresh_id(&mut self) -> MemberId {
        self.next_id += 0x101;
        self.next_id
    }

    fn pod_running(&self, ordinal: u32) -> bool {
        self.sts.is_some_and(|s| ordinal < s) && !self.down.contains_key(&ordinal)
    }

    pub fn member_healthy(&self, m: &SimMember) -> bool {
        self.pod_running(m.ordinal) && m.started && m.caught_up && !self.data_lost.contains(&m.ordinal)
    }

    pub fn voters(&self) -> usize {
        self.members.iter().filter(|m| !m.learner).count()
    }

    pub fn healthy_voters(&self) -> usize {
        self.members
            .iter()
            .filter(|m| !m.learner && self.member_healthy(m))
            .count()
    }

    pub fn learners(&self) -> usize {
        self.members.iter().filter(|m| m.learner).count()
    }

    pub fn has_quorum(&self) -> bool {
        self.voters() > 0 && self.healthy_voters() >= quorum(self.voters())
    }

    fn peer_url(&self, ordinal: u32) -> String {
        format!("http://{}-{ordinal}.{}-peer.default.svc:2380", self.name, self.name)
    }

    /// What the operator would observe now (MemberList is linearizable: it needs quorum).
    pub fn observe(&self) -> Observed {
        let members = self.has_quorum().then(|| {
            self.members
                .iter()
                .map(|m| ObservedMember {
                    id: m.id,
                    name: if m.started {
                        format!("{}-{}", self.name, m.ordinal)
                    } else {
                        String::new()
                    },
                    peer_url: self.peer_url(m.ordinal),
                    is_learner: m.learner,
                    healthy: self.member_healthy(m),
                    is_leader: self.leader == Some(m.id) && self.member_healthy(m),
                })
                .collect()
        });
        let pods = (0..self.sts.unwrap_or(0))
            .map(|ordinal| {
                let member = self.members.iter().find(|m| m.ordinal == ordinal);
                ObservedPod {
                    ordinal,
                    ready: member.is_some_and(|m| self.member_healthy(m)),
                    data_lost: self.data_lost.contains(&ordinal),
                    outdated: self.outdated.contains(&ordinal),
                }
            })
            .collect();
        Observed {
            members,
            statefulset_replicas: self.sts,
            pods,
            bootstrapped: self.bootstrapped,
            in_flight: self.in_flight.clone(),
        }
    }

    fn index(&self, id: MemberId) -> Result<usize, String> {
        self.members
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| format!("member {id:x} not found"))
    }

    fn need_quorum(&self, what: &str) -> Result<(), String> {
        if self.has_quorum() && self.leader.is_some() {
            Ok(())
        } else {
            Err(format!("{what}: no quorum or no leader"))
        }
    }

    fn add_learner(&mut self, ordinal: u32) -> Result<(), String> {
        self.need_quorum("MemberAdd")?;
        if self.learners() > 0 {
            return Err("MemberAdd: too many learner members in cluster".into());
        }
        if self.members.iter().any(|m| m.ordinal == ordinal) {
            return Err(format!("MemberAdd: peer URL of ordinal {ordinal} exists"));
        }
        let id = self.fresh_id();
        self.members.push(SimMember {
            id,
            ordinal,
            learner: true,
            started: false,
            caught_up: false,
        });
        Ok(())
    }

    fn remove(&mut self, id: MemberId) -> Result<SimMember, String> {
        self.need_quorum("MemberRemove")?;
        let index = self.index(id)?;
        let removed = self.members.remove(index);
        if !removed.learner && !self.has_quorum() {
            return Err(format!("MemberRemove {id:x} lost quorum"));
        }
        if self.leader == Some(id) {
            self.leader = None;
        }
        // The removed member's volume no longer matches anything; a later member on this ordinal
        // starts from a wiped data directory.
        self.data_lost.remove(&removed.ordinal);
        Ok(removed)
    }

    /// Executes `step` with `fault`; `Err` when etcd or Kubernetes would refuse it.
    pub fn apply(&mut self, step: &Step, fault: Fault) -> Result<(), String> {
        if fault == Fault::Drop {
            return Ok(());
        }
        match step {
            Step::None | Step::Wait { .. } => {}
            Step::Bootstrap { replicas } => {
                if self.sts.is_some() || !self.members.is_empty() {
                    return Err("Bootstrap of an existing cluster".into());
                }
                for ordinal in 0..*replicas {
                    let id = self.fresh_id();
                    self.members.push(SimMember {
                        id,
                        ordinal,
                        learner: false,
                        started: false,
                        caught_up: true,
                    });
                }
                self.sts = Some(*replicas);
            }
            Step::AddLearner { ordinal } => {
                self.add_learner(*ordinal)?;
                // A pod already on the ordinal is recreated by the executor before the MemberAdd.
                self.outdated.remove(ordinal);
            }
            Step::GrowStatefulSet { replicas } => {
                if self.sts.is_some_and(|s| s >= *replicas) {
                    return Err(format!("GrowStatefulSet to {replicas} from {:?}", self.sts));
                }
                // New pods come from the current template.
                let from = self.sts.unwrap_or(0);
                self.outdated.retain(|k| *k < from || *k >= *replicas);
                self.sts = Some(*replicas);
            }
            Step::ShrinkStatefulSet { replicas } => {
                if self.sts.is_none_or(|s| s <= *replicas) {
                    return Err(format!("ShrinkStatefulSet to {replicas} from {:?}", self.sts));
                }
                if self.members.iter().any(|m| m.ordinal >= *replicas) {
                    return Err(format!("ShrinkStatefulSet to {replicas} deletes a member's pod"));
                }
                self.outdated.retain(|k| *k < *replicas);
                self.sts = Some(*replicas);
            }
            Step::PromoteLearner { id } => {
                self.need_quorum("MemberPromote")?;
                let index = self.index(*id)?;
                let m = &self.members[index];
                if !m.learner || !self.member_healthy(m) {
                    return Err(format!("MemberPromote {id:x}: not a caught-up learner"));
                }
                self.members[index].learner = false;
            }
            Step::MoveLeader { from, to } => {
                self.need_quorum("MoveLeader")?;
                let target = &self.members[self.index(*to)?];
                if self.leader != Some(*from) || target.learner || !self.member_healthy(target) {
                    return Err(format!("MoveLeader {from:x} -> {to:x} refused"));
                }
                self.leader = Some(*to);
            }
            Step::RemoveMember { id } => {
                self.remove(*id)?;
            }
            Step::RestartMember { ordinal } => {
                if !self.pod_running(*ordinal) {
                    return Err(format!("RestartMember: no running pod for ordinal {ordinal}"));
                }
                // The pod is deleted and recreated from the current template on the same volume: down
                // for a tick, then back with its data.
                self.outdated.remove(ordinal);
                self.down.insert(*ordinal, 2);
            }
            Step::ReplaceMember { id, ordinal } => {
                let removed = self.remove(*id)?;
                if removed.ordinal != *ordinal {
                    return Err(format!(
                        "ReplaceMember {id:x}: ordinal {} is not {ordinal}",
                        removed.ordinal
                    ));
                }
                if fault != Fault::Crash {
                    self.add_learner(*ordinal)?;
                    // The executor recreates the pod of a re-added ordinal: from the current template.
                    self.outdated.remove(ordinal);
                }
            }
        }
        if fault == Fault::None {
            self.in_flight = Some(step.clone());
        }
        Ok(())
    }

    /// Time passes: running pods start their members, started learners catch up, a leader is elected.
    pub fn tick(&mut self) {
        self.down.retain(|_, ticks| {
            *ticks = ticks.saturating_sub(1);
            *ticks > 0
        });
        for i in 0..self.members.len() {
            let ordinal = self.members[i].ordinal;
            if !self.pod_running(ordinal) || self.data_lost.contains(&ordinal) {
                continue;
            }
            let m = &mut self.members[i];
            if m.started {
                m.caught_up = true;
            } else {
                m.started = true;
            }
        }
        let leader_ok = self.leader.is_some_and(|id| {
            self.members
                .iter()
                .any(|m| m.id == id && !m.learner && self.member_healthy(m))
        });
        if !leader_ok {
            self.leader = None;
            if self.has_quorum() {
                self.leader = self
                    .members
                    .iter()
                    .find(|m| !m.learner && self.member_healthy(m))
                    .map(|m| m.id);
            }
            if self.leader.is_some() {
                self.bootstrapped = true;
            }
        }
    }

    /// Whether the cluster is exactly `replicas` healthy voters on ordinals `0..replicas`.
    pub fn converged(&self, replicas: u32) -> bool {
        let mut ordinals: Vec<u32> = self.members.iter().map(|m| m.ordinal).collect();
        ordinals.sort_unstable();
        ordinals == (0..replicas).collect::<Vec<_>>()
            && self.members.iter().all(|m| !m.learner && self.member_healthy(m))
            && self.sts == Some(replicas)
            && self.outdated.iter().all(|k| *k >= replicas)
    }
}
