//! Execution of one planner [`Step`] with the kube client and the members' etcd API.
//!
//! Each step is a short sequence of idempotent calls; a crash anywhere in it leaves a state the planner
//! recognises on the next reconcile (see the planner's module doc). What this module guarantees in
//! addition:
//! - The StatefulSet's pod template always carries the membership pods created from now on must start
//!   with: `new` with only ordinal 0 for [`Step::Bootstrap`], afterwards `existing` with every listed
//!   member (and a learner right after it was added).
//! - A pod must never start a member on data that belongs to no current member. So when a learner is
//!   added for an ordinal whose pod already exists (the second half of a replacement, or a re-add after
//!   a crash), the pod is deleted first (with its PVC when `spec.storage` is set) and the MemberAdd
//!   only follows once that pod is gone: the StatefulSet recreates it from the updated template on a
//!   fresh volume, and no incarnation holding old data can join as the new learner (a member that joins
//!   and then loses its log makes the leader panic-prone: etcd's `tocommit out of range`). Until the
//!   MemberAdd the new pod fails to join and is restarted by its restart policy.
//! - A PVC retained from a removed member (`pvcRetentionPolicy: Retain`) is deleted before a learner is
//!   added for its ordinal, so the new member starts empty (Retain keeps the data of removed members
//!   for inspection until the ordinal is reused). With `Delete`, claims of ordinals the StatefulSet
//!   shrank past are deleted right after the shrink.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::assess::Assessment;
use super::error::Error;
use super::etcd_client::MemberClient;
use super::names::{member_image, Identity, FIELD_MANAGER};
use super::objects::{statefulset, InitialCluster, InitialClusterState, StatefulSetPlan};
use super::observe::Observation;
use super::planner::Step;
use super::spec::{EtcdClusterSpec, PvcRetentionPolicy};

/// How long replacing a pod may wait for the old pod to terminate.
pub const POD_REPLACEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Holds back a step whose precondition on the Kubernetes side is not met yet: a learner is only added
/// for an ordinal above the StatefulSet once the pod of that ordinal's previous member is gone (after a
/// scale-down the StatefulSet deletes surplus pods asynchronously; growing it back over a pod that is
/// still there would leave the old member's container, not a fresh one, on the ordinal).
pub fn gate(step: Step, obs: &Observation) -> Step {
    match step {
        Step::AddLearner { ordinal }
            if ordinal >= obs.statefulset_replicas().unwrap_or(0) && obs.pods.contains_key(&ordinal) =>
        {
            Step::Wait {
                reason: format!("the pod of ordinal {ordinal} from a removed member is still terminating"),
            }
        }
        step => step,
    }
}

/// The membership pods created from now on start with: every listed member, or, when no member
/// answered, what the StatefulSet's template already says (a bootstrap when there is none).
pub fn current_membership(id: &Identity, obs: &Observation, assessment: &Assessment) -> InitialCluster {
    match &obs.members {
        Some(members) if !members.is_empty() => {
            let mut ordinals: Vec<u32> = assessment.ordinals.values().copied().collect();
            ordinals.sort_unstable();
            InitialCluster {
                state: InitialClusterState::Existing,
                ordinals,
            }
        }
        _ => obs
            .statefulset
            .as_ref()
            .and_then(|sts| InitialCluster::from_statefulset(id, sts))
            .unwrap_or_else(InitialCluster::bootstrap),
    }
}

/// Server-side applies `object` as the operator's field manager (forcing ownership of its fields).
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or_else(|| Error::InvalidObject("object to apply has no name".into()))?;
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await?;
    Ok(())
}

/// Deletes `name`; an object that is already gone is fine.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Everything one step needs.
pub struct Executor<'a> {
    /// Kube client.
    pub client: &'a Client,
    /// The cluster.
    pub id: &'a Identity,
    /// Its spec.
    pub spec: &'a EtcdClusterSpec,
    /// The operator's `--image`.
    pub default_image: &'a str,
    /// This reconcile's observation.
    pub obs: &'a Observation,
    /// Its assessment.
    pub assessment: &'a Assessment,
}

impl Executor<'_> {
    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.id.namespace)
    }

    fn current_membership(&self) -> InitialCluster {
        current_membership(self.id, self.obs, self.assessment)
    }

    async fn apply_statefulset(&self, replicas: u32, membership: InitialCluster) -> Result<(), Error> {
        let plan = StatefulSetPlan {
            replicas,
            membership,
            image: member_image(
                self.default_image,
                self.spec.image.as_deref(),
                self.spec.version.as_deref(),
            ),
        };
        apply(&self.api::<StatefulSet>(), &statefulset(self.id, self.spec, &plan)).await
    }

    /// The client to send membership changes to: the leader's, else any healthy voter's.
    fn membership_client(&self, what: &str) -> Result<&MemberClient, Error> {
        let members = self.assessment.observed.members.as_deref().unwrap_or_default();
        let by_id = |id: u64| {
            let ordinal = self.assessment.ordinals.get(&id)?;
            self.obs.clients.get(ordinal)
        };
        self.assessment
            .leader
            .and_then(by_id)
            .or_else(|| {
                members
                    .iter()
                    .filter(|m| m.healthy && !m.is_learner)
                    .find_map(|m| by_id(m.id))
            })
            .ok_or_else(|| Error::NoEndpoint(what.to_string()))
    }

    fn member_client(&self, id: u64, what: &str) -> Result<&MemberClient, Error> {
        self.assessment
            .ordinals
            .get(&id)
            .and_then(|ordinal| self.obs.clients.get(ordinal))
            .ok_or_else(|| Error::NoEndpoint(what.to_string()))
    }

    /// Executes `step`. `None` and `Wait` only keep the StatefulSet in sync with the spec.
    pub async fn execute(&self, step: &Step) -> Result<(), Error> {
        let sts_replicas = self.obs.statefulset_replicas();
        match step {
            Step::None | Step::Wait { .. } => match sts_replicas {
                Some(replicas) => self.apply_statefulset(replicas, self.current_membership()).await,
                None => Ok(()),
            },
            Step::Bootstrap { replicas } => self.apply_statefulset(*replicas, InitialCluster::bootstrap()).await,
            Step::GrowStatefulSet { replicas } => self.apply_statefulset(*replicas, self.current_membership()).await,
            Step::ShrinkStatefulSet { replicas } => {
                self.apply_statefulset(*replicas, self.current_membership()).await?;
                if self.spec.pvc_retention_policy == PvcRetentionPolicy::Delete {
                    for ordinal in self.obs.claims.iter().filter(|k| **k >= *replicas) {
                        delete_if_present(&self.api::<PersistentVolumeClaim>(), &self.id.pvc_name(*ordinal)).await?;
                    }
                }
                Ok(())
            }
            Step::AddLearner { ordinal } => self.add_learner(*ordinal).await,
            Step::PromoteLearner { id } => self.membership_client("promote a learner")?.promote(*id).await,
            Step::MoveLeader { from, to } => self.member_client(*from, "move leadership")?.move_leader(*to).await,
            Step::RemoveMember { id } => self.membership_client("remove a member")?.remove(*id).await,
            Step::ReplaceMember { id, ordinal } => {
                self.membership_client("remove a member")?.remove(*id).await?;
                self.add_learner(*ordinal).await
            }
            Step::RestartMember { ordinal } => {
                // The template the pod comes back with first, then the pod: the StatefulSet recreates
                // it on the same claim, and the member restarts on its own data.
                if let Some(replicas) = sts_replicas {
                    self.apply_statefulset(replicas, self.current_membership()).await?;
                }
                delete_if_present(&self.api::<Pod>(), &self.id.pod_name(*ordinal)).await
            }
        }
    }

    async fn add_learner(&self, ordinal: u32) -> Result<(), Error> {
        let sts_replicas = self.obs.statefulset_replicas().unwrap_or(0);
        let mut membership = self.current_membership();
        membership.state = InitialClusterState::Existing;
        if !membership.ordinals.contains(&ordinal) {
            membership.ordinals.push(ordinal);
            membership.ordinals.sort_unstable();
        }
        // The template first: the pod that joins as this learner must start with it.
        self.apply_statefulset(sts_replicas, membership).await?;
        let claims = self.api::<PersistentVolumeClaim>();
        if ordinal < sts_replicas {
            // The pod exists and holds data of no current member: replace it (and its claim) before the
            // learner exists, so no incarnation with stale or foreign data can ever join as it.
            self.replace_pod(ordinal).await?;
        } else if self.obs.claims.contains(&ordinal) {
            delete_if_present(&claims, &self.id.pvc_name(ordinal)).await?;
        }
        self.membership_client("add a learner")?
            .add_learner(&self.id.peer_url(ordinal))
            .await?;
        Ok(())
    }

    /// Deletes pod `ordinal` (and its PVC) and waits until the pod is gone or recreated, for at most
    /// [`POD_REPLACEMENT_TIMEOUT`].
    async fn replace_pod(&self, ordinal: u32) -> Result<(), Error> {
        let pods = self.api::<Pod>();
        let name = self.id.pod_name(ordinal);
        if self.obs.claims.contains(&ordinal) {
            delete_if_present(&self.api::<PersistentVolumeClaim>(), &self.id.pvc_name(ordinal)).await?;
        }
        let Some(old) = pods.get_opt(&name).await?.and_then(|p| p.metadata.uid) else {
            return Ok(());
        };
        delete_if_present(&pods, &name).await?;
        let deadline = tokio::time::Instant::now() + POD_REPLACEMENT_TIMEOUT;
        loop {
            let current = pods.get_opt(&name).await?;
            if current.is_none_or(|p| p.metadata.uid.as_deref() != Some(old.as_str())) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!("pod {name} still terminating")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetSpec;

    use super::*;
    use crate::observe::PodFacts;

    #[test]
    fn a_learner_waits_for_the_old_pod_of_its_ordinal() {
        let mut obs = Observation {
            statefulset: Some(StatefulSet {
                spec: Some(StatefulSetSpec {
                    replicas: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        obs.pods.insert(0, PodFacts::default());
        let add = Step::AddLearner { ordinal: 1 };
        assert_eq!(gate(add.clone(), &obs), add);
        obs.pods.insert(1, PodFacts::default());
        assert!(matches!(gate(add, &obs), Step::Wait { .. }));
        // Inside the StatefulSet the pod is expected (the second half of a replacement).
        let inside = Step::AddLearner { ordinal: 0 };
        assert_eq!(gate(inside.clone(), &obs), inside);
        assert_eq!(gate(Step::None, &obs), Step::None);
    }

    #[test]
    fn membership_comes_from_the_member_list_else_from_the_template() {
        use crate::names::test_identity;
        use crate::objects::StatefulSetPlan;
        use crate::spec::EtcdClusterSpec;
        use rustcd_proto::etcdserverpb::Member;

        let id = test_identity();
        let nothing = Observation::default();
        let assessment = Assessment::default();
        assert_eq!(
            current_membership(&id, &nothing, &assessment),
            InitialCluster::bootstrap()
        );
        let joined = InitialCluster {
            state: InitialClusterState::Existing,
            ordinals: vec![0, 2],
        };
        let plan = StatefulSetPlan {
            replicas: 3,
            membership: joined.clone(),
            image: "i".into(),
        };
        let silent = Observation {
            statefulset: Some(statefulset(&id, &EtcdClusterSpec::default(), &plan)),
            ..Default::default()
        };
        assert_eq!(
            current_membership(&id, &silent, &assessment),
            joined,
            "kept from the template"
        );
        let listed = Observation {
            members: Some(vec![Member::default(), Member::default()]),
            ..silent
        };
        let assessment = Assessment {
            ordinals: [(7, 1), (5, 0)].into_iter().collect(),
            ..Default::default()
        };
        let expected = InitialCluster {
            state: InitialClusterState::Existing,
            ordinals: vec![0, 1],
        };
        assert_eq!(current_membership(&id, &listed, &assessment), expected);
    }
}
