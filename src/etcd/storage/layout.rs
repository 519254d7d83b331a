//! Data directory layout (`<data-dir>/member/{wal,snap}`), the data-dir
//! format version file and small filesystem helpers (directory fsync,
//! 0700 directory creation).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Result, StorageError};
use super::wal;

/// Name of the data-dir format version file inside `<data-dir>/member/`.
pub const VERSION_FILE: &str = "rustcd-format";
/// Data-dir format version written by (and readable by) this build.
pub const DATA_DIR_VERSION: u32 = 1;
/// Prefix of the version file's single line; the version number follows.
const VERSION_PREFIX: &str = "rustcd-data-dir-format ";

/// Resolved paths of a rustcd data directory, laid out like etcd's:
///
/// ```text
/// <data-dir>/member/rustcd-format   data-dir format version ("rustcd-data-dir-format 1")
/// <data-dir>/member/wal/            WAL segments (or the --wal-dir override)
/// <data-dir>/member/snap/           snapshot files
/// ```
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
}

impl DataDir {
    /// Resolves the layout under `data_dir`; `wal_dir` overrides the WAL
    /// directory (etcd's `--wal-dir`). Nothing is touched on disk.
    pub fn new(data_dir: &Path, wal_dir: Option<&Path>) -> Self {
        let member = data_dir.join("member");
        DataDir {
            root: data_dir.to_path_buf(),
            wal_dir: wal_dir.map_or_else(|| member.join("wal"), Path::to_path_buf),
            snap_dir: member.join("snap"),
        }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<data-dir>/member`.
    pub fn member_dir(&self) -> PathBuf {
        self.root.join("member")
    }

    /// The WAL directory (`member/wal` unless overridden).
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// The snapshot directory, `member/snap`.
    pub fn snap_dir(&self) -> &Path {
        &self.snap_dir
    }

    /// Path of the data-dir format version file.
    pub fn version_file(&self) -> PathBuf {
        self.member_dir().join(VERSION_FILE)
    }

    /// Creates the member, WAL and snapshot directories (mode 0700, like
    /// etcd) and writes the format version file if it is absent. If it is
    /// present, checks that this build understands it.
    pub fn create(&self) -> Result<()> {
        let member = self.member_dir();
        create_dir_all_private(&member)?;
        create_dir_all_private(&self.wal_dir)?;
        create_dir_all_private(&self.snap_dir)?;
        let vf = self.version_file();
        if vf.exists() {
            self.check_version()?;
        } else {
            write_atomic(&vf, format!("{VERSION_PREFIX}{DATA_DIR_VERSION}\n").as_bytes())?;
        }
        Ok(())
    }

    /// Checks the format version file, if there is one. A missing file is
    /// accepted (fresh or pre-versioning directory); an unreadable or
    /// unknown version is an error naming the file.
    pub fn check_version(&self) -> Result<()> {
        let vf = self.version_file();
        let text = match fs::read_to_string(&vf) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io(&vf, e)),
        };
        let Some(num) = text.trim_end().strip_prefix(VERSION_PREFIX) else {
            return Err(StorageError::corrupt(
                &vf,
                0,
                format!("expected \"{VERSION_PREFIX}<n>\""),
            ));
        };
        let found: u32 = num
            .parse()
            .map_err(|_| StorageError::corrupt(&vf, 0, format!("bad version number {num:?}")))?;
        if found != DATA_DIR_VERSION {
            return Err(StorageError::UnsupportedVersion {
                path: vf,
                found,
                supported: DATA_DIR_VERSION,
            });
        }
        Ok(())
    }

    /// True when the WAL has data (entries, hard state, metadata or a
    /// snapshot marker beyond the empty segment a first [`wal::Wal::open`]
    /// creates): this is a restart, not a fresh start. Callers should still
    /// check that the replayed metadata is present.
    pub fn is_initialized(&self) -> Result<bool> {
        wal::wal_has_data(&self.wal_dir)
    }
}

/// `mkdir -p` with mode 0700 for every directory created.
pub fn create_dir_all_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Ok(md) = fs::metadata(dir) {
        use std::os::unix::fs::PermissionsExt;
        let mode = md.permissions().mode() & 0o777;
        if md.is_dir() && mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "directory is accessible by other users; etcd expects 0700"
            );
        }
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| StorageError::io(dir, e))
}

/// Creates (or truncates) `path` for writing with mode 0600, like etcd's
/// WAL and snapshot files.
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// fsyncs a directory so that creations, renames and deletions in it are
/// durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| StorageError::io(dir, e))?;
    f.sync_all().map_err(|e| StorageError::io(dir, e))
}

/// Writes `data` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = create_private_file(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(data).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    fsync_dir(parent_dir(path))
}

/// `path` with `.tmp` appended to its file name.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The directory containing `path` (`.` for bare names).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths_and_version() {
        let d = tempfile::tempdir().unwrap();
        let dd = DataDir::new(d.path(), None);
        assert_eq!(dd.wal_dir(), d.path().join("member/wal"));
        assert_eq!(dd.snap_dir(), d.path().join("member/snap"));
        assert!(!dd.is_initialized().unwrap());
        dd.create().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dd.wal_dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(!dd.is_initialized().unwrap());
        dd.create().unwrap(); // idempotent
        let (mut w, _c) = wal::Wal::open(dd.wal_dir(), wal::DEFAULT_SEGMENT_BYTES).unwrap();
        assert!(!dd.is_initialized().unwrap(), "an empty WAL is not data");
        w.set_metadata(b"member").unwrap();
        w.sync().unwrap();
        assert!(dd.is_initialized().unwrap());

        fs::write(dd.version_file(), "rustcd-data-dir-format 99\n").unwrap();
        let err = dd.create().unwrap_err();
        assert!(matches!(err, StorageError::UnsupportedVersion { found: 99, .. }));
        assert!(err.to_string().contains(VERSION_FILE), "{err}");
        fs::write(dd.version_file(), "garbage").unwrap();
        assert!(dd.check_version().unwrap_err().is_corrupt());
    }

    #[test]
    fn wal_dir_override() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("elsewhere");
        let dd = DataDir::new(&d.path().join("data"), Some(&w));
        assert_eq!(dd.wal_dir(), w);
        dd.create().unwrap();
        assert!(w.is_dir());
    }
}
