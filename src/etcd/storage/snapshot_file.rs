//! Snapshot files in `<data-dir>/member/snap/`: atomic save, newest-first
//! load, purge.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Result, StorageError};
use super::layout::{create_dir_all_private, create_private_file, fsync_dir, tmp_path};
use super::wal::remove_tmp_files;

/// Magic at the start of every snapshot file.
pub const SNAP_MAGIC: [u8; 8] = *b"RUSTCDSN";
/// Snapshot file format version written by (and readable by) this build.
pub const SNAP_VERSION: u32 = 1;
/// Header: magic (8) + version (4) + term (8) + index (8) + data length (8)
/// + data crc (4) + header crc (4).
pub const SNAP_HEADER_LEN: usize = 44;
const SNAP_SUFFIX: &str = ".snap";

/// A snapshot read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    /// Raft index covered by the snapshot.
    pub index: u64,
    /// Term of that index.
    pub term: u64,
    /// The opaque payload given to [`SnapshotFiles::save`].
    pub data: Vec<u8>,
}

/// A snapshot file present in the directory (not yet validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotName {
    /// Term, from the file name.
    pub term: u64,
    /// Index, from the file name.
    pub index: u64,
    /// Full path.
    pub path: PathBuf,
}

/// File name of the snapshot at `(term, index)`.
pub fn snapshot_file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SNAP_SUFFIX}")
}

fn parse_snapshot_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAP_SUFFIX)?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// The snapshot directory.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
}

impl SnapshotFiles {
    /// Opens `dir`, creating it (0700) if needed and removing temp files
    /// left by an interrupted [`SnapshotFiles::save`].
    pub fn open(dir: &Path) -> Result<Self> {
        create_dir_all_private(dir)?;
        remove_tmp_files(dir, SNAP_SUFFIX)?;
        Ok(SnapshotFiles { dir: dir.to_path_buf() })
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably and atomically writes the snapshot `(index, term)`: temp
    /// file, fsync, rename, directory fsync. An existing file for the same
    /// `(term, index)` is replaced.
    pub fn save(&self, index: u64, term: u64, data: &[u8]) -> Result<()> {
        let path = self.dir.join(snapshot_file_name(term, index));
        let tmp = tmp_path(&path);
        let mut header = [0u8; SNAP_HEADER_LEN];
        header[..8].copy_from_slice(&SNAP_MAGIC);
        header[8..12].copy_from_slice(&SNAP_VERSION.to_le_bytes());
        header[12..20].copy_from_slice(&term.to_le_bytes());
        header[20..28].copy_from_slice(&index.to_le_bytes());
        header[28..36].copy_from_slice(&(data.len() as u64).to_le_bytes());
        header[36..40].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        let hcrc = crc32fast::hash(&header[..40]);
        header[40..44].copy_from_slice(&hcrc.to_le_bytes());
        let mut f = create_private_file(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
        let write = f
            .write_all(&header)
            .and_then(|()| f.write_all(data))
            .and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = write {
            // Best effort: the temp file is removed on the next open anyway.
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::io(&tmp, e));
        }
        fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
        fsync_dir(&self.dir)
    }

    /// Snapshot files in the directory, oldest first (by index, then term).
    /// Temp files and unrelated names are skipped.
    pub fn list(&self) -> Result<Vec<SnapshotName>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| StorageError::io(&self.dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((term, index)) = parse_snapshot_name(name) {
                out.push(SnapshotName {
                    term,
                    index,
                    path: ent.path(),
                });
            }
        }
        out.sort_by_key(|s| (s.index, s.term));
        Ok(out)
    }

    /// Loads the newest snapshot (highest index). If that file is damaged
    /// this is an error naming it; an older snapshot is never silently used.
    pub fn load_newest(&self) -> Result<Option<SnapshotData>> {
        match self.list()?.pop() {
            None => Ok(None),
            Some(n) => read_snapshot(&n.path, n.term, n.index).map(Some),
        }
    }

    /// Loads the snapshot `(index, term)`, `None` when there is no such file.
    pub fn load(&self, index: u64, term: u64) -> Result<Option<SnapshotData>> {
        let path = self.dir.join(snapshot_file_name(term, index));
        if !path.exists() {
            return Ok(None);
        }
        read_snapshot(&path, term, index).map(Some)
    }

    /// Deletes all but the newest `keep` snapshots (etcd's
    /// `--max-snapshots`, default 5). Returns how many were deleted.
    pub fn purge(&self, keep: usize) -> Result<usize> {
        let list = self.list()?;
        let n = list.len().saturating_sub(keep);
        for s in &list[..n] {
            fs::remove_file(&s.path).map_err(|e| StorageError::io(&s.path, e))?;
        }
        if n > 0 {
            fsync_dir(&self.dir)?;
        }
        Ok(n)
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Reads and validates a snapshot file whose name says `(term, index)`.
fn read_snapshot(path: &Path, term: u64, index: u64) -> Result<SnapshotData> {
    let bytes = fs::read(path).map_err(|e| StorageError::io(path, e))?;
    let corrupt = |offset: u64, reason: String| StorageError::corrupt(path, offset, reason);
    if bytes.len() < 12 {
        return Err(corrupt(0, "shorter than the snapshot header".into()));
    }
    if bytes[..8] != SNAP_MAGIC {
        return Err(corrupt(0, "bad magic: not a rustcd snapshot file".into()));
    }
    let version = u32_at(&bytes, 8);
    if version != SNAP_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SNAP_VERSION,
        });
    }
    if bytes.len() < SNAP_HEADER_LEN {
        return Err(corrupt(0, "shorter than the snapshot header".into()));
    }
    if crc32fast::hash(&bytes[..40]) != u32_at(&bytes, 40) {
        return Err(corrupt(40, "snapshot header CRC mismatch".into()));
    }
    let (h_term, h_index) = (u64_at(&bytes, 12), u64_at(&bytes, 20));
    if (h_term, h_index) != (term, index) {
        return Err(corrupt(
            12,
            format!("header says term {h_term} index {h_index}, file name says term {term} index {index}"),
        ));
    }
    let len = u64_at(&bytes, 28);
    let data = &bytes[SNAP_HEADER_LEN..];
    if data.len() as u64 != len {
        return Err(corrupt(
            28,
            format!("header says {len} data bytes, file has {}", data.len()),
        ));
    }
    if crc32fast::hash(data) != u32_at(&bytes, 36) {
        return Err(corrupt(SNAP_HEADER_LEN as u64, "snapshot data CRC mismatch".into()));
    }
    Ok(SnapshotData {
        index,
        term,
        data: data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_purge() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapshotFiles::open(d.path()).unwrap();
        assert_eq!(s.load_newest().unwrap(), None);
        for i in 1..=7u64 {
            s.save(i * 10, 2, format!("snap{i}").as_bytes()).unwrap();
        }
        let n = s.load_newest().unwrap().unwrap();
        assert_eq!((n.index, n.term, n.data.as_slice()), (70, 2, &b"snap7"[..]));
        assert_eq!(s.load(30, 2).unwrap().unwrap().data, b"snap3");
        assert_eq!(s.load(30, 3).unwrap(), None);
        assert_eq!(s.purge(5).unwrap(), 2);
        let idx: Vec<u64> = s.list().unwrap().iter().map(|n| n.index).collect();
        assert_eq!(idx, vec![30, 40, 50, 60, 70]);
        assert_eq!(s.purge(5).unwrap(), 0);
        // Empty payload round-trips too.
        s.save(80, 3, b"").unwrap();
        assert_eq!(s.load_newest().unwrap().unwrap().data, b"");
    }

    #[test]
    fn corrupt_newest_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapshotFiles::open(d.path()).unwrap();
        s.save(5, 1, b"older").unwrap();
        s.save(9, 1, b"newest payload").unwrap();
        let path = d.path().join(snapshot_file_name(1, 9));
        let mut b = fs::read(&path).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x55;
        fs::write(&path, &b).unwrap();
        let err = s.load_newest().unwrap_err();
        assert!(err.is_corrupt());
        let msg = err.to_string();
        assert!(msg.contains(&snapshot_file_name(1, 9)), "{msg}");
        assert!(msg.contains("CRC"), "{msg}");

        // Truncated file.
        fs::write(&path, &b[..20]).unwrap();
        assert!(s.load_newest().unwrap_err().is_corrupt());
        // Bad magic.
        fs::write(&path, b"definitely not a snapshot file at all, no sir").unwrap();
        let msg = s.load_newest().unwrap_err().to_string();
        assert!(
            msg.contains("magic") && msg.contains(&snapshot_file_name(1, 9)),
            "{msg}"
        );
        // Unknown version.
        let mut v = fs::read(d.path().join(snapshot_file_name(1, 5))).unwrap();
        v[8] = 2;
        fs::write(&path, &v).unwrap();
        let err = s.load_newest().unwrap_err();
        assert!(matches!(err, StorageError::UnsupportedVersion { found: 2, .. }));
        // Renamed file: header disagrees with the name.
        fs::copy(d.path().join(snapshot_file_name(1, 5)), &path).unwrap();
        assert!(s.load_newest().unwrap_err().is_corrupt());
    }

    #[test]
    fn temp_files_are_ignored_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(format!("{}.tmp", snapshot_file_name(1, 99)));
        fs::write(&tmp, b"half written").unwrap();
        let s = SnapshotFiles::open(d.path()).unwrap();
        assert!(!tmp.exists());
        fs::write(&tmp, b"half written again").unwrap();
        assert_eq!(s.load_newest().unwrap(), None);
        s.save(1, 1, b"x").unwrap();
        assert_eq!(s.load_newest().unwrap().unwrap().index, 1);
    }
}
