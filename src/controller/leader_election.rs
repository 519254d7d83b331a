//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it.
//!
//! The holder renews `spec.renewTime` every `retry_period`; another replica takes the Lease over only
//! once `renewTime + leaseDurationSeconds` has passed. Every write is a create or an update carrying
//! the `resourceVersion` that was read, so two candidates racing for the same Lease cannot both win
//! (the API server answers the loser 409 Conflict). A holder that has not renewed successfully for
//! `renew_deadline` (shorter than the lease duration) considers itself deposed and must stop
//! reconciling before anyone else may take over. On a clean shutdown the holder releases the Lease
//! (empty holder, 1 s duration) so a successor need not wait for the expiry.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::PostParams;
use kube::{Api, Client};

/// What a candidate does with the Lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides what `me` does with `lease` at `now`.
pub fn decide(lease: Option<&Lease>, me: &str, now: DateTime<Utc>) -> Decision {
    let Some(spec) = lease.map(|l| l.spec.clone().unwrap_or_default()) else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = k8s_openapi::chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match spec.renew_time.or(spec.acquire_time) {
        Some(MicroTime(renewed)) if renewed + duration > now => Decision::Follow { holder },
        _ => Decision::TakeOver,
    }
}

/// Timings and names of one election.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (`--leader-election-id`).
    pub name: String,
    /// This candidate (`POD_NAME`, else the hostname).
    pub identity: String,
    /// `leaseDurationSeconds`: how long others wait after the last renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Pause between attempts (and between renewals).
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, name: &str, identity: &str) -> ElectionConfig {
        ElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A candidate in one election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: ElectionConfig,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: Client, config: ElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: DateTime<Utc>, taking_over: bool) -> LeaseSpec {
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: match (taking_over, previous) {
                (false, Some(p)) => p.acquire_time.clone(),
                _ => Some(MicroTime(now)),
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if taking_over && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: returns whether this candidate holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Utc::now();
        let current = self.api.get_opt(&self.config.name).await?;
        let result = match decide(current.as_ref(), &self.config.identity, now) {
            Decision::Follow { .. } => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now, true)),
                };
                self.api.create(&PostParams::default(), &lease).await.map(drop)
            }
            decision @ (Decision::Renew | Decision::TakeOver) => {
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                let spec = self.spec(lease.spec.as_ref(), now, decision == Decision::TakeOver);
                lease.spec = Some(spec);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "acquired the leader lease");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the held Lease until it is lost (another holder, or no successful renewal within the renew
    /// deadline); returns then. The caller must stop acting as leader at once.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.config.name, "another replica holds the leader lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease failed"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                tracing::error!(lease = %self.config.name, "could not renew the leader lease in time");
                return;
            }
        }
    }

    /// Gives the Lease up if this candidate holds it (clean shutdown).
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Utc::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(Utc.timestamp_opt(renewed, 0).unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let at = |s| Utc.timestamp_opt(s, 0).unwrap();
        assert_eq!(decide(None, "a", at(0)), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("a"), 0, 15)), "a", at(100)), Decision::Renew);
        assert_eq!(
            decide(Some(&lease(Some("b"), 100, 15)), "a", at(114)),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 100, 15)), "a", at(115)),
            Decision::TakeOver
        );
        assert_eq!(decide(Some(&lease(None, 100, 15)), "a", at(101)), Decision::TakeOver);
        let never_renewed = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some("b".into()),
                ..LeaseSpec::default()
            }),
        };
        assert_eq!(decide(Some(&never_renewed), "a", at(0)), Decision::TakeOver);
    }
}
