//! `rustcd backup save|fetch|list`: the backup agent the operator runs as a Job (and anyone can
//! run by hand).
//!
//! `save` asks every endpoint for its Status, takes the snapshot from a healthy member that is
//! not the leader (the leader only when it is the one healthy member), verifies it before keeping
//! it and writes it to a [`location`]:
//! 1. the stream's SHA-256 trailer and CRC ([`crate::backup::decode`]);
//! 2. a restore into a temporary data directory ([`crate::backup::restore_decoded`]), read back the way a
//!    member reads its data directory on start, and the restored key space's HashKV at the
//!    snapshot's revision compared with the member's own `HashKV` at that revision.
//!
//! Only then is it written (a file is fsynced), and with `--keep N` older backups beyond the
//! newest N under the same prefix are deleted. The outcome is one JSON line ([`BackupResult`]) on
//! stdout and, with `--result-file`, in that file (the operator's Job points it at
//! `/dev/termination-log`, where the pod's status carries it back to the operator).
//!
//! `fetch` reads a backup (a named one, or the newest under a prefix), verifies its checksums and
//! writes it to a local file for `rustcd snapshot restore`.

pub mod location;

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message as _;
use rustcd_dial::{error_chain, Dialer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backup::{self, BackupError};
use crate::config::RestoredMember;
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{AuthenticateRequest, HashKvRequest, SnapshotRequest, StatusRequest, StatusResponse};
use crate::proto::rustcdpb::StateSnapshot;
use crate::storage::{DataDir, SnapshotFiles};
use location::{backup_name, retention_victims, Location, LocationError, Store};

/// Time to connect to an endpoint and for a Status or HashKV call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong in a backup; the agent prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No endpoint answered Status as a healthy member.
    #[error("no healthy member to take a snapshot from: {0}")]
    NoHealthyMember(String),
    /// A call to the chosen member failed.
    #[error("{endpoint}: {what}: {message}")]
    Member {
        endpoint: String,
        what: &'static str,
        message: String,
    },
    /// The snapshot or backup file failed a check.
    #[error(transparent)]
    Snapshot(#[from] BackupError),
    /// The restored snapshot does not hold what the member holds.
    #[error("verification failed: {0}")]
    Verify(String),
    /// The backup location refused an operation.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// TLS files that cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Writing the fetched file failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// TLS files for the client connection (as etcdctl's `--cacert`, `--cert`, `--key`).
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CA bundle that verifies the members' certificates.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// User name and password for a cluster with auth enabled (etcdctl's `--user`).
    pub user: Option<(String, String)>,
}

/// What `save` did, as printed in JSON.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupResult {
    /// Where the backup is (`s3://bucket/prefix/name.db` or `/dir/name.db`).
    pub location: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// The key space's revision in the snapshot.
    pub revision: i64,
    /// HashKV of the key space at `revision` (as `etcdctl endpoint hashkv` prints it).
    pub hash: u32,
    /// Endpoint the snapshot was taken from.
    pub member: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// Backups deleted by `--keep`.
    pub deleted: Vec<String>,
}

/// One endpoint's answer to Status, reduced to what choosing a member needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberHealth {
    /// The member's ID.
    pub id: u64,
    /// The leader it knows (0: none).
    pub leader: u64,
    /// Whether Status listed errors (an alarm, for example).
    pub has_errors: bool,
    /// Whether it is a learner.
    pub is_learner: bool,
}

impl MemberHealth {
    fn from_status(s: &StatusResponse) -> MemberHealth {
        MemberHealth {
            id: s.header.as_ref().map_or(0, |h| h.member_id),
            leader: s.leader,
            has_errors: !s.errors.is_empty(),
            is_learner: s.is_learner,
        }
    }

    fn healthy(&self) -> bool {
        self.leader != 0 && !self.has_errors
    }
}

/// Picks the member to snapshot: the first healthy follower (voter or learner), else a healthy
/// leader; `None` when no answer is healthy. Pure, for tests.
pub fn choose_member(answers: &[Option<MemberHealth>]) -> Option<usize> {
    let healthy = |i: &usize| answers[*i].is_some_and(|h| h.healthy());
    let follower = (0..answers.len())
        .filter(healthy)
        .find(|i| answers[*i].is_some_and(|h| h.id != h.leader && !h.is_learner));
    follower.or_else(|| (0..answers.len()).find(healthy))
}

/// A dialer for `tls` (plain when no file is given).
pub fn dialer(tls: &ClientTls) -> Result<Dialer, AgentError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| AgentError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    let tls_error = |e: rustcd_dial::DialError| AgentError::Tls(e.to_string());
    match (&tls.cacert, &tls.cert, &tls.key) {
        (None, None, None) => Ok(Dialer::plain()),
        (Some(ca), Some(cert), Some(key)) => Dialer::from_pem(&read(ca)?, &read(cert)?, &read(key)?).map_err(tls_error),
        (Some(ca), None, None) => Dialer::from_pem_parts(&read(ca)?, None).map_err(tls_error),
        _ => Err(AgentError::Tls(
            "--cert and --key go together, and need --cacert".into(),
        )),
    }
}

async fn channel(dialer: &Dialer, endpoint: &str) -> Result<tonic::transport::Channel, AgentError> {
    dialer
        .connect(endpoint, |e| e.connect_timeout(CALL_TIMEOUT))
        .await
        .map_err(|e| AgentError::Member {
            endpoint: endpoint.to_string(),
            what: "connect",
            message: error_chain(&e),
        })
}

async fn client(dialer: &Dialer, endpoint: &str) -> Result<MaintenanceClient<tonic::transport::Channel>, AgentError> {
    Ok(MaintenanceClient::new(channel(dialer, endpoint).await?).max_decoding_message_size(usize::MAX))
}

/// `call` given `within`: its answer (the gRPC status left to the caller), or the member's
/// "timed out" error for `what`.
async fn timed<T>(
    endpoint: &str,
    what: &'static str,
    within: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<Result<T, tonic::Status>, AgentError> {
    match tokio::time::timeout(within, call).await {
        Ok(answer) => Ok(answer.map(tonic::Response::into_inner)),
        Err(_) => Err(AgentError::Member {
            endpoint: endpoint.to_string(),
            what,
            message: "timed out".into(),
        }),
    }
}

/// A request carrying `token` (from Authenticate) the way etcd's clients send it.
fn with_token<T>(message: T, token: Option<&str>) -> Result<tonic::Request<T>, AgentError> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        let value = t
            .parse()
            .map_err(|_| AgentError::Verify("the auth token is not a valid header value".into()))?;
        req.metadata_mut().insert("token", value);
    }
    Ok(req)
}

/// Authenticates as `user` at `endpoint`; the token.
async fn authenticate(dialer: &Dialer, endpoint: &str, user: &(String, String)) -> Result<String, AgentError> {
    let mut auth = AuthClient::new(channel(dialer, endpoint).await?);
    let call = auth.authenticate(AuthenticateRequest {
        name: user.0.clone(),
        password: user.1.clone(),
    });
    timed(endpoint, "authenticate", CALL_TIMEOUT, call)
        .await?
        .map(|r| r.token)
        .map_err(|s| member_error(endpoint, "authenticate", &s))
}

async fn status(dialer: &Dialer, endpoint: &str) -> Result<StatusResponse, AgentError> {
    let mut c = client(dialer, endpoint).await?;
    timed(endpoint, "status", CALL_TIMEOUT, c.status(StatusRequest {}))
        .await?
        .map_err(|s| member_error(endpoint, "status", &s))
}

fn member_error(endpoint: &str, what: &'static str, s: &tonic::Status) -> AgentError {
    AgentError::Member {
        endpoint: endpoint.to_string(),
        what,
        message: s.message().to_string(),
    }
}

/// `rustcd backup save`: snapshot, verify, store, prune (see the module doc).
pub async fn save(endpoints: &[String], tls: &ClientTls, to: &str, keep: usize) -> Result<BackupResult, AgentError> {
    let location = Location::parse(to)?;
    if location.object().is_some() {
        return Err(LocationError::Invalid(format!(
            "{to}: backup save writes under a prefix; end the location with '/'"
        ))
        .into());
    }
    // Open the destination first: a missing directory or bad S3 settings fail before any member
    // is asked for anything.
    let store = Store::open(&location)?;
    store.list().await?;
    let dialer = dialer(tls)?;
    let mut answers = Vec::new();
    let mut problems = Vec::new();
    for ep in endpoints {
        match status(&dialer, ep).await {
            Ok(s) => answers.push(Some(MemberHealth::from_status(&s))),
            Err(e) => {
                problems.push(e.to_string());
                answers.push(None);
            }
        }
    }
    let Some(chosen) = choose_member(&answers) else {
        if problems.is_empty() {
            problems.push("every member reports no leader or an error".into());
        }
        return Err(AgentError::NoHealthyMember(problems.join("; ")));
    };
    let endpoint = &endpoints[chosen];
    tracing::info!(%endpoint, "taking a snapshot");
    let token = match &tls.user {
        Some(user) => Some(authenticate(&dialer, endpoint, user).await?),
        None => None,
    };
    let taken = time::OffsetDateTime::now_utc();
    let bytes = snapshot(&dialer, endpoint, token.as_deref()).await?;
    let scratch = tempdir()?;
    let verified = verify(&bytes, scratch.path())?;
    let member_hash = {
        let mut c = client(&dialer, endpoint).await?;
        let call = c.hash_kv(with_token(
            HashKvRequest {
                revision: verified.revision,
            },
            token.as_deref(),
        )?);
        match timed(endpoint, "hashkv", CALL_TIMEOUT * 6, call).await? {
            Ok(r) => Some(r.hash),
            // Compacted past the snapshot's revision since: the restore check stands alone.
            Err(s) if s.message().contains("compacted") => None,
            Err(s) => return Err(member_error(endpoint, "hashkv", &s)),
        }
    };
    if let Some(h) = member_hash {
        if h != verified.hash {
            return Err(AgentError::Verify(format!(
                "restored HashKV at revision {} is {}, the member's is {h}",
                verified.revision, verified.hash
            )));
        }
    }
    let millis = i64::try_from(taken.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let name = backup_name(millis, verified.revision);
    let sha256 = hex(&Sha256::digest(&bytes));
    let len = bytes.len() as u64;
    let written = store.put(&name, bytes).await?;
    let size = store.size(&name).await?;
    if size != len {
        return Err(AgentError::Verify(format!("{written}: stored {size} bytes of {len}")));
    }
    let mut deleted = Vec::new();
    for victim in retention_victims(store.list().await?, keep) {
        store.delete(&victim).await?;
        deleted.push(location.with_object(&victim).to_string());
    }
    Ok(BackupResult {
        location: written.to_string(),
        size,
        sha256,
        revision: verified.revision,
        hash: verified.hash,
        member: endpoint.clone(),
        taken_at: rfc3339(taken),
        deleted,
    })
}

async fn snapshot(dialer: &Dialer, endpoint: &str, token: Option<&str>) -> Result<Vec<u8>, AgentError> {
    let mut c = client(dialer, endpoint).await?;
    let mut stream = c
        .snapshot(with_token(SnapshotRequest {}, token)?)
        .await
        .map_err(|s| member_error(endpoint, "snapshot", &s))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(part) = stream
        .message()
        .await
        .map_err(|s| member_error(endpoint, "snapshot", &s))?
    {
        bytes.extend_from_slice(&part.blob);
    }
    Ok(bytes)
}

/// What a verified snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The key space's current revision.
    pub revision: i64,
    /// HashKV at that revision, computed from the restored data directory.
    pub hash: u32,
}

/// Checks a snapshot stream's checksums, restores it into `scratch` and reads the restored data
/// directory back (its newest state snapshot, rebuilt into a key space), returning its revision
/// and HashKV.
pub fn verify(bytes: &[u8], scratch: &Path) -> Result<Verified, AgentError> {
    let snap = backup::decode(bytes, "snapshot stream")?;
    let data_dir = scratch.join("restored");
    let member = RestoredMember {
        name: "verify".into(),
        initial_cluster: "verify=http://127.0.0.1:2380".into(),
        initial_cluster_token: "verify".into(),
        initial_advertise_peer_urls: "http://127.0.0.1:2380".into(),
    };
    backup::restore_decoded(snap, &data_dir, &member)?;
    let dirs = DataDir::new(&data_dir, None);
    let restored = SnapshotFiles::open(dirs.snap_dir())
        .and_then(|s| s.load_newest())
        .map_err(|e| AgentError::Verify(format!("restored data directory: {e}")))?
        .ok_or_else(|| AgentError::Verify("restored data directory has no snapshot".into()))?;
    let state = StateSnapshot::decode(restored.data.as_slice())
        .map_err(|e| AgentError::Verify(format!("restored snapshot: {e}")))?;
    let mvcc = state
        .mvcc
        .as_ref()
        .ok_or_else(|| AgentError::Verify("restored snapshot has no key space".into()))?;
    let store = crate::mvcc::Store::from_snapshot(mvcc).map_err(|e| AgentError::Verify(format!("key space: {e}")))?;
    let (hash, _, revision) = store
        .hash_kv(0)
        .map_err(|e| AgentError::Verify(format!("key space: {e}")))?;
    Ok(Verified { revision, hash })
}

/// `rustcd backup fetch`: the named backup, or the newest under a prefix, verified and written
/// to `to`. Returns the location read and the key space's revision.
pub async fn fetch(from: &str, to: &Path) -> Result<(String, i64), AgentError> {
    let (read, bytes, snap) = read_backup(from).await?;
    crate::storage::write_atomic(to, &bytes)?;
    Ok((read, revision_of(&snap)))
}

/// The backup `from` names (or the newest under it), checked: the location read, its bytes and
/// the decoded snapshot.
async fn read_backup(from: &str) -> Result<(String, Vec<u8>, StateSnapshot), AgentError> {
    let location = Location::parse(from)?;
    let store = Store::open(&location)?;
    let name = match location.object() {
        Some(n) => n.to_string(),
        None => store.newest().await?,
    };
    let read = location.with_object(&name).to_string();
    let bytes = store.get(&name).await?;
    let snap = backup::decode(&bytes, &read)?;
    Ok((read, bytes, snap))
}

fn revision_of(snap: &StateSnapshot) -> i64 {
    snap.mvcc.as_ref().map_or(0, |m| m.current_revision)
}

/// What `restore_member` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// Restored `from` (revision) into the data directory.
    Restored { from: String, revision: i64 },
    /// Nothing to do: this member is not the one `--only-for` names.
    NotThisMember,
    /// Nothing to do: the data directory already has data.
    HasData,
}

/// `rustcd backup restore`: unless skipped (another member, or a data directory with data), read
/// the backup, check it and restore it into `data_dir` for `member`.
pub async fn restore_member(
    from: &str,
    only_for: Option<&str>,
    data_dir: &Path,
    member: &RestoredMember,
) -> Result<Restored, AgentError> {
    if only_for.is_some_and(|n| n != member.name) {
        return Ok(Restored::NotThisMember);
    }
    let has_data = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
    if has_data {
        return Ok(Restored::HasData);
    }
    let (read, _, snap) = read_backup(from).await?;
    let revision = revision_of(&snap);
    backup::restore_decoded(snap, data_dir, member)?;
    Ok(Restored::Restored { from: read, revision })
}

/// `rustcd backup list`: the backups under a prefix, oldest first, as full locations.
pub async fn list(at: &str) -> Result<Vec<String>, AgentError> {
    let location = Location::parse(at)?;
    let store = Store::open(&location)?;
    Ok(store
        .list()
        .await?
        .iter()
        .map(|n| location.with_object(n).to_string())
        .collect())
}

fn tempdir() -> Result<TempDir, AgentError> {
    let base = std::env::temp_dir();
    let path = base.join(format!(
        "rustcd-backup-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&path).map_err(|source| AgentError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(TempDir(path))
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(id: u64, leader: u64) -> Option<MemberHealth> {
        Some(MemberHealth {
            id,
            leader,
            has_errors: false,
            is_learner: false,
        })
    }

    #[test]
    fn prefers_a_healthy_follower_then_the_leader() {
        assert_eq!(choose_member(&[h(1, 1), h(2, 1), h(3, 1)]), Some(1));
        assert_eq!(choose_member(&[None, h(1, 1), None]), Some(1));
        assert_eq!(choose_member(&[h(1, 1), None, h(3, 0)]), Some(0));
        let sick = Some(MemberHealth {
            has_errors: true,
            ..h(2, 1).unwrap()
        });
        assert_eq!(choose_member(&[h(1, 1), sick]), Some(0));
        let learner = Some(MemberHealth {
            is_learner: true,
            ..h(4, 1).unwrap()
        });
        assert_eq!(choose_member(&[learner, h(1, 1), h(2, 1)]), Some(2));
        assert_eq!(choose_member(&[learner, h(1, 1)]), Some(0));
        assert_eq!(choose_member(&[None, h(3, 0)]), None);
        assert_eq!(choose_member(&[]), None);
    }

    #[test]
    fn verify_restores_and_hashes_and_refuses_corruption() {
        let mut store = crate::mvcc::Store::new();
        let put = crate::proto::etcdserverpb::PutRequest {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        };
        store.put(&put, &|_| false).unwrap();
        let snap = StateSnapshot {
            format_version: 1,
            applied_index: 5,
            applied_term: 2,
            mvcc: Some(store.to_snapshot()),
            ..Default::default()
        };
        let bytes = backup::encode(&snap);
        let dir = tempdir().unwrap();
        let v = verify(&bytes, dir.path()).unwrap();
        assert_eq!(v.revision, 2);
        assert_eq!(v.hash, store.hash_kv(0).unwrap().0);
        let mut bad = bytes.clone();
        let n = bad.len() - 40;
        bad[n] ^= 1;
        let dir = tempdir().unwrap();
        assert!(matches!(verify(&bad, dir.path()), Err(AgentError::Snapshot(_))));
        let dir = tempdir().unwrap();
        assert!(verify(&bytes[..bytes.len() - 1], dir.path()).is_err());
    }
}
