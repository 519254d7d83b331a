//! The lessor: replicated lease state plus leader-only expiry tracking.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::proto::etcdserverpb::{LeaseGrantResponse, LeaseTimeToLiveResponse};

use super::error::LeaseError;
use super::expiry_queue::ExpiryQueue;
use super::time::{add_secs, trunc_secs_until};

/// The largest TTL a lease may be granted with, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's default interval after which an expired, not yet revoked lease is
/// reported again by [`Lessor::expired`].
pub const DEFAULT_EXPIRED_RETRY_INTERVAL: Duration = Duration::from_secs(3);

/// etcd's default lease checkpoint interval (`--experimental-lease-checkpoint-interval`).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// What etcd reports as the remaining TTL of a lease without deadline:
/// `int64(time.Duration(math.MaxInt64).Seconds())`.
const FOREVER_SECS: i64 = 9_223_372_036;

/// etcd's `leaseRevokeRate`: promotion spreads expiries of piled-up leases so
/// no more than three quarters of this many expire in the same second.
pub(crate) const LEASE_REVOKE_RATE: usize = 1000;

/// The minimum lease TTL in seconds etcd derives from its Raft timing:
/// `ceil(((3 * election_ticks) / 2) * heartbeat)` where
/// `election_ticks = election_timeout / heartbeat` (both integer divisions).
///
/// With etcd's defaults (100 ms heartbeat, 1000 ms election timeout) this is 2.
pub fn min_lease_ttl(heartbeat: Duration, election_timeout: Duration) -> i64 {
    let tick_ns = heartbeat.as_nanos();
    if tick_ns == 0 {
        return 0;
    }
    let election_ticks = election_timeout.as_nanos() / tick_ns;
    let min_ns = (3 * election_ticks / 2) * tick_ns;
    let secs = min_ns.div_ceil(1_000_000_000);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Tunables of a [`Lessor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LessorConfig {
    /// Grants (and restored leases) with a smaller TTL get this TTL instead.
    pub min_ttl_secs: i64,
    /// When set, the leader periodically checkpoints remaining TTLs of leases
    /// whose TTL exceeds this interval (etcd's opt-in
    /// `--experimental-enable-lease-checkpoint`; off by default in etcd 3.5).
    pub checkpoint_interval: Option<Duration>,
    /// How long [`Lessor::expired`] waits before reporting the same expired,
    /// not yet revoked lease again.
    pub expired_retry_interval: Duration,
}

impl LessorConfig {
    /// etcd 3.5 defaults with the given minimum TTL: checkpointing off, 3 s retry.
    pub fn new(min_ttl_secs: i64) -> Self {
        Self {
            min_ttl_secs,
            checkpoint_interval: None,
            expired_retry_interval: DEFAULT_EXPIRED_RETRY_INTERVAL,
        }
    }
}

/// One lease.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// Granted TTL in seconds (after raising to the minimum).
    pub(crate) ttl: i64,
    /// Last checkpointed remaining TTL in seconds; 0 means "unset, use `ttl`".
    pub(crate) remaining_ttl: i64,
    /// Leader-only deadline; `None` while not primary (etcd's "forever").
    pub(crate) expiry: Option<Instant>,
    /// Attached keys, sorted.
    pub(crate) keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// The TTL a refresh starts from: the checkpointed remaining TTL if set.
    pub(crate) fn refresh_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    /// Whether the lease's deadline has passed (never true while not primary).
    fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }
}

/// Lease manager matching etcd 3.5's lessor semantics.
///
/// State changing calls that come from the Raft log ([`grant`](Self::grant),
/// [`revoke`](Self::revoke), [`checkpoint`](Self::checkpoint),
/// [`attach`](Self::attach), [`detach`](Self::detach), snapshots) must be made
/// in log order on every member; they are deterministic apart from the
/// leader-only deadlines. Expiry tracking ([`expired`](Self::expired),
/// [`renew`](Self::renew), [`time_to_live`](Self::time_to_live),
/// [`due_checkpoints`](Self::due_checkpoints)) only works between
/// [`promote`](Self::promote) and [`demote`](Self::demote). All time is passed
/// in as `now`.
#[derive(Debug, Clone)]
pub struct Lessor {
    pub(crate) config: LessorConfig,
    pub(crate) leases: HashMap<i64, Lease>,
    /// Which lease each attached key belongs to.
    pub(crate) key_lease: HashMap<Vec<u8>, i64>,
    /// True while this member is the leader (etcd's "primary lessor").
    pub(crate) primary: bool,
    /// Leader-only: when to next look at each lease for expiry.
    pub(crate) expiry_queue: ExpiryQueue,
    /// Leader-only: when each lease's next checkpoint is due.
    pub(crate) checkpoint_queue: ExpiryQueue,
    /// Leader-only: leases renewed while a checkpointed remaining TTL was set;
    /// a `remaining_TTL: 0` checkpoint must be proposed to clear it.
    pub(crate) pending_clears: BTreeSet<i64>,
}

impl Lessor {
    /// A follower lessor with etcd 3.5 defaults and the given minimum TTL.
    pub fn new(min_ttl_secs: i64) -> Self {
        Self::with_config(LessorConfig::new(min_ttl_secs))
    }

    /// A follower lessor with explicit configuration.
    pub fn with_config(config: LessorConfig) -> Self {
        Self {
            config,
            leases: HashMap::new(),
            key_lease: HashMap::new(),
            primary: false,
            expiry_queue: ExpiryQueue::new(),
            checkpoint_queue: ExpiryQueue::new(),
            pending_clears: BTreeSet::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &LessorConfig {
        &self.config
    }

    /// The minimum TTL in seconds.
    pub fn min_ttl(&self) -> i64 {
        self.config.min_ttl_secs
    }

    /// Whether this lessor is primary (tracks expiry, accepts renewals).
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Applies a `LeaseGrant` from the log.
    ///
    /// Errors, checked in etcd's order: ID 0 is [`LeaseError::NotFound`] (the
    /// server must pick an ID before proposing), a TTL above
    /// [`MAX_LEASE_TTL`] is [`LeaseError::TtlTooLarge`], an existing ID is
    /// [`LeaseError::AlreadyExists`]. A TTL below the minimum (including 0 and
    /// negative values) is raised to it; the response carries the actual TTL.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) -> Result<LeaseGrantResponse, LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::AlreadyExists);
        }
        let ttl = ttl.max(self.config.min_ttl_secs);
        let expiry = if self.primary {
            add_secs(now, Duration::ZERO, ttl)
        } else {
            None
        };
        self.leases.insert(
            id,
            Lease {
                ttl,
                remaining_ttl: 0,
                expiry,
                keys: BTreeSet::new(),
            },
        );
        if let Some(deadline) = expiry {
            self.expiry_queue.register_or_update(id, deadline);
            self.schedule_checkpoint(id, now);
        }
        tracing::debug!(lease_id = id, ttl, "lease granted");
        Ok(LeaseGrantResponse {
            header: None,
            id,
            ttl,
            error: String::new(),
        })
    }

    /// Applies a `LeaseRevoke` from the log: removes the lease and returns its
    /// attached keys, sorted, so the caller deletes them in one MVCC revision
    /// (in this order, like etcd, so every member's backend hashes agree).
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        for key in &lease.keys {
            self.key_lease.remove(key);
        }
        self.expiry_queue.remove(id);
        self.checkpoint_queue.remove(id);
        self.pending_clears.remove(&id);
        tracing::debug!(lease_id = id, keys = lease.keys.len(), "lease revoked");
        Ok(lease.keys.into_iter().collect())
    }

    /// Attaches `key` to lease `id`, moving it off any lease it was on.
    pub fn attach(&mut self, id: i64, key: &[u8]) -> Result<(), LeaseError> {
        if !self.leases.contains_key(&id) {
            return Err(LeaseError::NotFound);
        }
        if let Some(old) = self.key_lease.insert(key.to_vec(), id) {
            if old != id {
                if let Some(old_lease) = self.leases.get_mut(&old) {
                    old_lease.keys.remove(key);
                }
            }
        }
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
        }
        Ok(())
    }

    /// Detaches `key` from lease `id` (the key was deleted or re-put without
    /// this lease). Detaching a key that is not attached is a no-op; an unknown
    /// lease is [`LeaseError::NotFound`], as in etcd.
    pub fn detach(&mut self, id: i64, key: &[u8]) -> Result<(), LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.keys.remove(key) {
            self.key_lease.remove(key);
        }
        Ok(())
    }

    /// The lease `key` is attached to, or 0 (etcd's `NoLease`).
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.key_lease.get(key).copied().unwrap_or(0)
    }

    /// Whether lease `id` exists.
    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The granted TTL of lease `id`.
    pub fn granted_ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|l| l.ttl)
    }

    /// The keys attached to lease `id`, sorted.
    pub fn keys(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.leases.get(&id).map(|l| l.keys.iter().cloned().collect())
    }

    /// Renews (keeps alive) lease `id` on the leader: its deadline becomes
    /// `now + TTL` and the granted TTL is returned.
    ///
    /// Errors: [`LeaseError::NotPrimary`] when not promoted,
    /// [`LeaseError::NotFound`] for an unknown lease, [`LeaseError::Expired`]
    /// for a lease whose deadline has passed but whose revoke has not been
    /// applied (etcd waits for that revoke and then answers the keep-alive
    /// with TTL 0). If a checkpointed remaining TTL is set and checkpointing is
    /// enabled, a clearing checkpoint is queued for
    /// [`due_checkpoints`](Self::due_checkpoints), as etcd does.
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.is_expired(now) {
            return Err(LeaseError::Expired);
        }
        if self.config.checkpoint_interval.is_some() && lease.remaining_ttl > 0 {
            self.pending_clears.insert(id);
        }
        lease.expiry = add_secs(now, Duration::ZERO, lease.ttl);
        match lease.expiry {
            Some(deadline) => self.expiry_queue.register_or_update(id, deadline),
            None => self.expiry_queue.remove(id),
        }
        Ok(lease.ttl)
    }

    /// Answers `LeaseTimeToLive` on the leader: `TTL` is the remaining time in
    /// seconds truncated toward zero (etcd's `int64(Remaining().Seconds())`, so
    /// an expired, not yet revoked lease reports 0), `grantedTTL` the granted
    /// TTL, and `keys` the sorted attached keys when `with_keys`. The header
    /// is left for the caller to fill.
    ///
    /// Errors: [`LeaseError::NotPrimary`] when not promoted (etcd forwards to
    /// the leader), [`LeaseError::NotFound`], which the RPC layer turns into a
    /// successful response with `TTL: -1` ([`super::not_found_time_to_live`]).
    pub fn time_to_live(&self, id: i64, now: Instant, with_keys: bool) -> Result<LeaseTimeToLiveResponse, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let ttl = match lease.expiry {
            Some(expiry) => trunc_secs_until(now, expiry),
            None => FOREVER_SECS,
        };
        Ok(LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl,
            granted_ttl: lease.ttl,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// All lease IDs, for `LeaseLeases`: soonest deadline first on the leader
    /// (like etcd), by ID otherwise.
    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<(Option<Instant>, i64)> = self.leases.iter().map(|(id, l)| (l.expiry, *id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Leader-only: up to `limit` leases whose deadline is at or before `now`,
    /// for the caller to propose revokes for. They stay in place until the
    /// revoke is applied; a reported lease is not reported again until
    /// `expired_retry_interval` has passed (in case the revoke was lost).
    /// Returns nothing when not primary.
    pub fn expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        if !self.primary {
            return out;
        }
        // Entries popped in this call are re-queued afterwards so each lease is
        // looked at once per call whatever the retry interval.
        let mut requeue = Vec::new();
        while out.len() < limit {
            let Some((deadline, id)) = self.expiry_queue.peek() else {
                break;
            };
            if now < deadline {
                break;
            }
            self.expiry_queue.remove(id);
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            if lease.is_expired(now) {
                out.push(id);
                // Look again after the retry interval in case the revoke
                // proposal was lost.
                let retry = now.checked_add(self.config.expired_retry_interval).unwrap_or(now);
                requeue.push((id, retry));
            } else if let Some(expiry) = lease.expiry {
                requeue.push((id, expiry));
            }
        }
        for (id, at) in requeue {
            self.expiry_queue.register_or_update(id, at);
        }
        out
    }

    /// Makes this lessor primary (this member became leader): every lease's
    /// deadline becomes `now + extend + remaining`, where remaining is the
    /// checkpointed remaining TTL if set, else the full TTL. With 1000 or more
    /// leases, expiries that pile up in the same second are spread out as etcd
    /// does. Checkpoints are scheduled when enabled.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        self.expiry_queue.clear();
        self.checkpoint_queue.clear();
        self.pending_clears.clear();
        let ids: Vec<i64> = self.leases.keys().copied().collect();
        for id in ids {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.expiry = add_secs(now, extend, lease.refresh_ttl());
                if let Some(deadline) = lease.expiry {
                    self.expiry_queue.register_or_update(id, deadline);
                }
            }
            self.schedule_checkpoint(id, now);
        }
        if self.leases.len() >= LEASE_REVOKE_RATE {
            super::pileup::spread_expiries(self, now, extend);
        }
        tracing::info!(leases = self.leases.len(), "lessor promoted");
    }

    /// Stops expiry tracking (this member is no longer leader): deadlines are
    /// dropped and scheduled checkpoints cleared. Followers never expire leases.
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.expiry = None;
        }
        self.expiry_queue.clear();
        self.checkpoint_queue.clear();
        self.pending_clears.clear();
    }
}
