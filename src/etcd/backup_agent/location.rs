//! Where backups are kept: a directory (`/backups/`, `file:///backups/`) or an S3-compatible
//! bucket prefix (`s3://bucket/prefix/`), both behind `object_store`'s one interface.
//!
//! S3 settings come from the environment, under the AWS SDK's names: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (default `us-east-1`),
//! `AWS_ENDPOINT` (an S3-compatible server such as MinIO, Ceph or moto) and `AWS_ALLOW_HTTP`.
//! Requests are path-style (`<endpoint>/<bucket>/<key>`), which every S3-compatible server takes.
//!
//! Backup objects are named `snapshot-<UTC time>-rev<revision>.db`; the time sorts them, so
//! "the newest backup" under a prefix is the greatest such name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// A backup location that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The location string is not a directory or `s3://` URL.
    #[error("{0}")]
    Invalid(String),
    /// The directory does not exist.
    #[error("backup directory {0} does not exist")]
    NoDirectory(String),
    /// The store refused or failed an operation (wrong credentials, missing bucket, network).
    /// `object_store`'s message already carries its causes, so it is not also a `source` (which
    /// would print each of them again).
    #[error("{location}: {op}: {reason}")]
    Store {
        location: String,
        op: &'static str,
        reason: String,
    },
    /// No backup under the prefix.
    #[error("no backup (snapshot-*.db) under {0}")]
    Empty(String),
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// File name prefix and suffix of the backups this module writes and lists.
const NAME_PREFIX: &str = "snapshot-";
const NAME_SUFFIX: &str = ".db";

/// The object name of a backup taken at `unix_millis` of `revision`.
pub fn backup_name(unix_millis: i64, revision: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{NAME_PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z-rev{revision}{NAME_SUFFIX}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Whether `name` (the last path segment) is a backup this module wrote.
pub fn is_backup_name(name: &str) -> bool {
    name.starts_with(NAME_PREFIX) && name.ends_with(NAME_SUFFIX)
}

/// The names to delete so that only the newest `keep` backups remain (`keep == 0` keeps all).
pub fn retention_victims(mut names: Vec<String>, keep: usize) -> Vec<String> {
    names.retain(|n| is_backup_name(n));
    names.sort();
    if keep == 0 || names.len() <= keep {
        return Vec::new();
    }
    let n = names.len() - keep;
    names.truncate(n);
    names
}

/// A parsed location: a prefix (directory or bucket prefix) and, for a single object, its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory (a mounted PVC).
    Dir { dir: PathBuf, object: Option<String> },
    /// An S3 bucket and key prefix (without leading or trailing `/`).
    S3 {
        bucket: String,
        prefix: String,
        object: Option<String>,
    },
}

impl Location {
    /// Parses `s3://bucket/prefix/`, `s3://bucket/prefix/name.db`, `file:///dir/` or an absolute
    /// path. A location ending in `/` is a prefix; otherwise the last segment names one object.
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        let split = |rest: &str| -> (String, Option<String>) {
            if rest.ends_with('/') || rest.is_empty() {
                (rest.trim_matches('/').to_string(), None)
            } else {
                match rest.rsplit_once('/') {
                    Some((p, o)) => (p.trim_matches('/').to_string(), Some(o.to_string())),
                    None => (String::new(), Some(rest.to_string())),
                }
            }
        };
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, rest) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LocationError::Invalid(format!("{s}: no bucket name after s3://")));
            }
            let (prefix, object) = split(rest);
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
                object,
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if !path.starts_with('/') {
            return Err(LocationError::Invalid(format!(
                "{s}: a backup location is an absolute directory (/backups/), file:///dir/ or s3://bucket/prefix/"
            )));
        }
        let (dir, object) = split(path);
        Ok(Location::Dir {
            dir: PathBuf::from(format!("/{dir}")),
            object,
        })
    }

    /// This location's prefix with `name` as its object.
    pub fn with_object(&self, name: &str) -> Location {
        let mut l = self.clone();
        match &mut l {
            Location::Dir { object, .. } | Location::S3 { object, .. } => *object = Some(name.to_string()),
        }
        l
    }

    /// The object's name, if this location names one.
    pub fn object(&self) -> Option<&str> {
        match self {
            Location::Dir { object, .. } | Location::S3 { object, .. } => object.as_deref(),
        }
    }

    /// The prefix alone.
    pub fn prefix(&self) -> Location {
        let mut l = self.clone();
        match &mut l {
            Location::Dir { object, .. } | Location::S3 { object, .. } => *object = None,
        }
        l
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (head, object) = match self {
            Location::Dir { dir, object } => {
                let d = dir.display().to_string();
                (format!("{}/", d.trim_end_matches('/')), object)
            }
            Location::S3 { bucket, prefix, object } if prefix.is_empty() => (format!("s3://{bucket}/"), object),
            Location::S3 { bucket, prefix, object } => (format!("s3://{bucket}/{prefix}/"), object),
        };
        write!(f, "{head}{}", object.as_deref().unwrap_or(""))
    }
}

/// An open location: the store and the key prefix inside it.
pub struct Store {
    location: Location,
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    dir: Option<PathBuf>,
}

impl Store {
    /// Opens the prefix of `location` (a directory must exist; S3 is reached lazily).
    pub fn open(location: &Location) -> Result<Store, LocationError> {
        let location = location.prefix();
        match &location {
            Location::Dir { dir, .. } => {
                if !dir.is_dir() {
                    return Err(LocationError::NoDirectory(dir.display().to_string()));
                }
                let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| store_error(&location, "open", e))?;
                Ok(Store {
                    store: Arc::new(fs),
                    prefix: None,
                    dir: Some(dir.clone()),
                    location,
                })
            }
            Location::S3 { bucket, prefix, .. } => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                    b = b.with_region("us-east-1");
                }
                let s3 = b.build().map_err(|e| store_error(&location, "configure S3", e))?;
                Ok(Store {
                    store: Arc::new(s3),
                    prefix: (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str())),
                    dir: None,
                    location,
                })
            }
        }
    }

    fn key(&self, name: &str) -> ObjectPath {
        match &self.prefix {
            Some(p) => p.child(name),
            None => ObjectPath::from(name),
        }
    }

    /// Writes `bytes` as `name` (durably: a file is fsynced with its directory).
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<Location, LocationError> {
        let loc = self.location.with_object(name);
        self.store
            .put(&self.key(name), PutPayload::from(bytes))
            .await
            .map_err(|e| store_error(&loc, "write", e))?;
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&path).map_err(|source| LocationError::Io {
                path: path.display().to_string(),
                source,
            })?;
            sync(dir).map_err(|source| LocationError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(loc)
    }

    /// Size of the stored object `name`.
    pub async fn size(&self, name: &str) -> Result<u64, LocationError> {
        let loc = self.location.with_object(name);
        let meta = self
            .store
            .head(&self.key(name))
            .await
            .map_err(|e| store_error(&loc, "stat", e))?;
        Ok(meta.size)
    }

    /// Reads the object `name`.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, LocationError> {
        let loc = self.location.with_object(name);
        let r = self
            .store
            .get(&self.key(name))
            .await
            .map_err(|e| store_error(&loc, "read", e))?;
        let bytes = r.bytes().await.map_err(|e| store_error(&loc, "read", e))?;
        Ok(bytes.to_vec())
    }

    /// The backups directly under the prefix, oldest first.
    pub async fn list(&self) -> Result<Vec<String>, LocationError> {
        let metas: Vec<_> = self
            .store
            .list(self.prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| store_error(&self.location, "list", e))?;
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .filter(|n| is_backup_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The newest backup's name.
    pub async fn newest(&self) -> Result<String, LocationError> {
        self.list()
            .await?
            .pop()
            .ok_or_else(|| LocationError::Empty(self.location.to_string()))
    }

    /// Deletes the object `name`.
    pub async fn delete(&self, name: &str) -> Result<(), LocationError> {
        let loc = self.location.with_object(name);
        self.store
            .delete(&self.key(name))
            .await
            .map_err(|e| store_error(&loc, "delete", e))
    }
}

/// An S3 error response shortened to its `Code` and `Message` (the XML body and request IDs say
/// nothing more to a reader).
fn compact(message: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = message.find(&open)? + open.len();
        let end = message[start..].find(&format!("</{name}>"))? + start;
        Some(&message[start..end])
    };
    match (message.find(": <?xml"), tag("Code"), tag("Message")) {
        (Some(cut), Some(code), Some(text)) => format!("{}: {code}: {text}", &message[..cut]),
        _ => message.to_string(),
    }
}

fn store_error(location: &Location, op: &'static str, source: object_store::Error) -> LocationError {
    LocationError::Store {
        location: location.to_string(),
        op,
        reason: compact(&source.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_locations() {
        for (s, printed, object) in [
            ("s3://b/p/q/", "s3://b/p/q/", None),
            ("s3://b/", "s3://b/", None),
            ("s3://b", "s3://b/", None),
            ("s3://b/p/x.db", "s3://b/p/x.db", Some("x.db")),
            ("s3://b/x.db", "s3://b/x.db", Some("x.db")),
            ("/backups/", "/backups/", None),
            ("file:///backups/a/", "/backups/a/", None),
            ("/backups/a/x.db", "/backups/a/x.db", Some("x.db")),
        ] {
            let l = Location::parse(s).unwrap();
            assert_eq!(l.to_string(), printed, "{s}");
            assert_eq!(l.object(), object, "{s}");
        }
        for bad in ["backups/", "s3:///x", "http://x/"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_error_bodies_shrink_to_code_and_message() {
        let raw = "Generic S3 error: Error performing GET http://h/b in 2ms - Server returned non-2xx status code: \
                   403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code>\
                   <Message>The key is not valid.</Message><RequestId>x</RequestId></Error>";
        assert_eq!(
            compact(raw),
            "Generic S3 error: Error performing GET http://h/b in 2ms - Server returned non-2xx status code: \
             403 Forbidden: InvalidAccessKeyId: The key is not valid."
        );
        assert_eq!(compact("connection refused"), "connection refused");
    }

    #[test]
    fn names_sort_by_time_and_retention_keeps_the_newest() {
        let a = backup_name(1_700_000_000_000, 5);
        let b = backup_name(1_700_000_000_001, 3);
        let c = backup_name(1_800_000_000_000, 9);
        assert_eq!(a, "snapshot-20231114T221320.000Z-rev5.db");
        assert!(a < b && b < c);
        assert!(is_backup_name(&a) && !is_backup_name("other.db"));
        let all = vec![c.clone(), "notes.txt".into(), a.clone(), b.clone()];
        assert_eq!(retention_victims(all.clone(), 2), vec![a.clone()]);
        assert_eq!(retention_victims(all.clone(), 1), vec![a, b]);
        assert!(retention_victims(all.clone(), 3).is_empty());
        assert!(retention_victims(all, 0).is_empty());
    }
}
