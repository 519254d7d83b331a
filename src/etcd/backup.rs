//! The snapshot stream served by `Maintenance.Snapshot` (what `etcdctl snapshot save`
//! writes to a file) and `rustcd snapshot restore`, which turns such a file into a new
//! data directory.
//!
//! File format (version 1): the 8-byte magic `RUSTCDBK`, a little-endian u32 format
//! version, a little-endian u64 body length, the protobuf-encoded `rustcdpb.StateSnapshot`
//! (the body), a little-endian u32 CRC-32 of everything before it, zero padding up to a
//! multiple of 512 bytes, and finally the SHA-256 of everything before it. The padding and
//! trailing SHA-256 are what `etcdctl snapshot save` expects of etcd's stream (it checks
//! `size % 512 == 32`). etcd's bbolt snapshots are not readable by rustcd
//! and rustcd's are not readable by etcd (see the README's compatibility table).

use std::path::Path;

use prost::Message as _;
use raft::eraftpb::HardState;
use sha2::{Digest, Sha256};

use crate::config::{InitialMember, RestoreArgs, RestoredMember};
use crate::membership::{self, Membership};
use crate::proto::rustcdpb::{StateSnapshot, WalMetadata};
use crate::storage::{DataDir, SnapshotFiles, StorageError, Wal};

const MAGIC: &[u8; 8] = b"RUSTCDBK";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: not a rustcd snapshot (bad magic; etcd's bbolt snapshots cannot be restored by rustcd)")]
    Magic { path: String },
    #[error("{path}: snapshot format version {version} is not supported (this rustcd reads version {VERSION})")]
    Version { path: String, version: u32 },
    #[error("{path}: snapshot checksum mismatch (file is corrupted or truncated)")]
    Checksum { path: String },
    #[error("{path}: snapshot body cannot be decoded: {reason}")]
    Decode { path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("data dir {0} already exists and is not empty")]
    DataDirExists(String),
    #[error("invalid restore flags: {0}")]
    Flags(String),
}

/// Serialises a state snapshot into the backup format.
pub fn encode(snap: &StateSnapshot) -> Vec<u8> {
    let body = snap.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 600);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Parses and verifies a backup file's bytes; `path` is only used in error messages.
pub fn decode(bytes: &[u8], path: &str) -> Result<StateSnapshot, BackupError> {
    const HEADER: usize = 8 + 4 + 8;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(BackupError::Magic { path: path.into() });
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(BackupError::Version {
            path: path.into(),
            version,
        });
    }
    let checksum = || BackupError::Checksum { path: path.into() };
    if bytes.len() < HEADER + 4 + 32 || bytes.len() % 512 != 32 {
        return Err(checksum());
    }
    let (padded, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(padded).as_slice() != digest {
        return Err(checksum());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let body_len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| checksum())?;
    let body_end = HEADER
        .checked_add(body_len)
        .filter(|e| e + 4 <= padded.len())
        .ok_or_else(checksum)?;
    let crc_bytes = &bytes[body_end..body_end + 4];
    let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32fast::hash(&bytes[..body_end]) != crc {
        return Err(checksum());
    }
    StateSnapshot::decode(&bytes[HEADER..body_end]).map_err(|e| BackupError::Decode {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// `rustcd snapshot restore`: a new data dir whose single member and cluster ID come from
/// the restore flags (as `etcdutl snapshot restore` does), holding the snapshot's data.
pub fn restore(args: &RestoreArgs) -> Result<std::path::PathBuf, BackupError> {
    let path = args.file.display().to_string();
    let bytes = std::fs::read(&args.file)?;
    let snap = decode(&bytes, &path)?;
    let data_dir = std::path::PathBuf::from(
        args.data_dir
            .clone()
            .unwrap_or_else(|| format!("{}.rustcd", args.member.name)),
    );
    restore_decoded(snap, &data_dir, &args.member)?;
    Ok(data_dir)
}

/// [`restore`] of a snapshot already read and checked ([`decode`]) into `data_dir`.
pub fn restore_decoded(mut snap: StateSnapshot, data_dir: &Path, member: &RestoredMember) -> Result<(), BackupError> {
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(BackupError::DataDirExists(data_dir.display().to_string()));
    }
    let mut initial = Vec::new();
    for part in member.initial_cluster.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| BackupError::Flags(format!("--initial-cluster entry {part:?} is not name=url")))?;
        initial.push(InitialMember {
            name: name.to_string(),
            peer_urls: vec![url.trim_end_matches('/').to_string()],
        });
    }
    let mine: Vec<String> = member
        .initial_advertise_peer_urls
        .split(',')
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    if !initial.iter().any(|m| m.name == member.name) {
        return Err(BackupError::Flags(format!(
            "--initial-cluster does not contain {:?}",
            member.name
        )));
    }
    let m = Membership::bootstrap(&initial, &member.initial_cluster_token);
    let member_id = membership::member_id(&mine, &member.initial_cluster_token, None);
    let old_alarms = Vec::new();
    let mut cluster = m.to_snapshot();
    cluster.cluster_version = snap
        .cluster
        .as_ref()
        .map(|c| c.cluster_version.clone())
        .unwrap_or_default();
    cluster.alarms = old_alarms;
    snap.cluster = Some(cluster.clone());
    // The restored member starts a fresh Raft log whose first index is the snapshot's.
    let index = snap.applied_index.max(1);
    let term = snap.applied_term.max(1);
    snap.applied_index = index;
    snap.applied_term = term;
    let dirs = DataDir::new(data_dir, None);
    dirs.create()?;
    SnapshotFiles::open(dirs.snap_dir())?.save(index, term, &snap.encode_to_vec())?;
    let (mut wal, _) = Wal::open(dirs.wal_dir(), 64 * 1024 * 1024)?;
    let meta = WalMetadata {
        member_id,
        cluster_id: m.cluster_id,
        bootstrap: Some(cluster),
    };
    wal.set_metadata(&meta.encode_to_vec())?;
    let hs = HardState {
        term,
        commit: index,
        ..Default::default()
    };
    wal.append(&[], Some(&hs))?;
    wal.mark_snapshot(index, term)?;
    wal.sync()?;
    Ok(())
}

/// Whether a path holds a rustcd backup (checks the magic only).
pub fn looks_like_backup(path: &Path) -> bool {
    std::fs::read(path).map(|b| b.starts_with(MAGIC)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_detection() {
        let snap = StateSnapshot {
            format_version: 1,
            applied_index: 7,
            applied_term: 2,
            ..Default::default()
        };
        let bytes = encode(&snap);
        assert_eq!(decode(&bytes, "f").unwrap(), snap);
        assert_eq!(bytes.len() % 512, 32);
        let mut bad = bytes.clone();
        bad[21] ^= 0xff;
        assert!(matches!(decode(&bad, "f"), Err(BackupError::Checksum { .. })));
        assert!(matches!(
            decode(b"SQLite format 3\0....", "f"),
            Err(BackupError::Magic { .. })
        ));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(matches!(decode(&v2, "f"), Err(BackupError::Version { .. })));
    }
}
