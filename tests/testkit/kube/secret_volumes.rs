//! Secret volumes for the fake kubelet, as the real kubelet mounts them: before a pod's container
//! starts, each `secret` volume of the pod is read from the API server (`data` only) and written as
//! files into a host directory `<root>/<pod-uid>/<volume>` that is bind-mounted read-only into the
//! container. The directory has the kubelet AtomicWriter layout: a timestamped data dir
//! `..<timestamp>`, a `..data` symlink to it and one symlink `<key> -> ..data/<key>` per key (or per
//! `items` path). A pod whose Secret (or a requested key) is missing stays pending unless the volume is
//! `optional: true`. On every sync the mounted Secrets are re-read and, where their content changed,
//! rewritten atomically (new data dir, `..data` replaced by rename, old dir removed): a rotated Secret
//! reaches the running container without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec, Secret, SecretVolumeSource};
use kube::Api;

/// The kubelet's default file mode for secret volumes (0644).
const DEFAULT_MODE: u32 = 0o644;

/// File path inside the volume -> (content, mode).
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// The secret volumes of the pods on one fake node.
pub struct SecretVolumes {
    /// Removed when the kubelet and its task are both gone.
    root: Arc<tempfile::TempDir>,
    /// Pod UID -> its mounted secret volumes.
    pods: BTreeMap<String, Vec<Mounted>>,
}

/// One secret volume written for a pod.
struct Mounted {
    source: SecretVolumeSource,
    dir: PathBuf,
    /// What the files hold now.
    payload: Payload,
}

/// What [`SecretVolumes::mount`] decided.
pub enum Mount {
    /// The `-v host:path:ro` arguments for `docker run`.
    Ready(Vec<String>),
    /// A Secret or a key is missing: no container yet (the reason, as the kubelet's FailedMount).
    Pending(String),
}

fn secret_name(source: &SecretVolumeSource) -> String {
    source.secret_name.clone().unwrap_or_default()
}

/// The files a volume shows for `secret` (`None`: it does not exist).
fn payload(source: &SecretVolumeSource, secret: Option<&Secret>) -> Result<Payload, String> {
    let optional = source.optional.unwrap_or(false);
    let name = secret_name(source);
    let Some(secret) = secret else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("secret {name:?} not found"))
        };
    };
    let mode = source
        .default_mode
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(DEFAULT_MODE);
    let data = secret.data.clone().unwrap_or_default();
    let Some(items) = &source.items else {
        return Ok(data.into_iter().map(|(k, v)| (k, (v.0, mode))).collect());
    };
    let mut files = Payload::new();
    for KeyToPath {
        key,
        path,
        mode: item_mode,
    } in items
    {
        match data.get(key) {
            Some(v) => {
                let m = item_mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(mode);
                files.insert(path.clone(), (v.0.clone(), m));
            }
            None if optional => {}
            None => return Err(format!("couldn't find key {key} in Secret {name}")),
        }
    }
    Ok(files)
}

/// The first component of a payload path: what gets a user-visible symlink.
fn top_level(path: &str) -> &str {
    path.split('/').find(|c| !c.is_empty()).unwrap_or(path)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Writes `payload` into `dir` as the kubelet's AtomicWriter does: a new `..<timestamp>` dir, the
/// user-visible symlinks, then `..data` swapped by rename, then the old data dir and stale links removed.
fn write_atomically(dir: &Path, payload: &Payload) -> io::Result<()> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o755)?;
    let stamp = format!(
        "..{}.{}",
        k8s_openapi::chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%f"),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    );
    let data_dir = dir.join(&stamp);
    std::fs::create_dir(&data_dir)?;
    set_mode(&data_dir, 0o755)?;
    for (path, (bytes, mode)) in payload {
        let file = data_dir.join(path.trim_start_matches('/'));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
        set_mode(&file, *mode)?;
    }
    let visible: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in &visible {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{name}"), &link)?;
        }
    }
    let data_link = dir.join("..data");
    let old = std::fs::read_link(&data_link).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, &data_link)?;
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !visible.contains(name.as_str()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn io_error(e: io::Error) -> kube::Error {
    kube::Error::Service(Box::new(e))
}

impl SecretVolumes {
    /// Volumes under a new temp dir, removed when the last holder of `root` is gone.
    pub fn new(root: Arc<tempfile::TempDir>) -> SecretVolumes {
        SecretVolumes {
            root,
            pods: BTreeMap::new(),
        }
    }

    /// Writes the secret volumes of pod `uid` (every secret volume of `spec`, as the kubelet mounts
    /// them all before any container starts) and returns the bind mounts for `container`, or why the
    /// pod must stay pending (then nothing is written).
    pub async fn mount(
        &mut self,
        secrets: &Api<Secret>,
        uid: &str,
        spec: &PodSpec,
        container: &Container,
    ) -> Result<Mount, kube::Error> {
        let mut volumes = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            let Some(source) = &volume.secret else { continue };
            let secret = secrets.get_opt(&secret_name(source)).await?;
            match payload(source, secret.as_ref()) {
                Ok(files) => volumes.push((volume.name.clone(), source.clone(), files)),
                Err(why) => {
                    return Ok(Mount::Pending(format!(
                        "MountVolume.SetUp failed for volume {:?}: {why}",
                        volume.name
                    )))
                }
            }
        }
        self.unmount(uid);
        let pod_dir = self.root.path().join(uid);
        let mut mounted = Vec::new();
        for (name, source, files) in volumes {
            let dir = pod_dir.join(&name);
            write_atomically(&dir, &files).map_err(io_error)?;
            mounted.push((
                name,
                Mounted {
                    source,
                    dir,
                    payload: files,
                },
            ));
        }
        let mut args = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            if let Some((_, m)) = mounted.iter().find(|(name, _)| name == &mount.name) {
                // Secret volumes are always read-only, whatever `readOnly` says.
                args.extend(["-v".to_string(), format!("{}:{}:ro", m.dir.display(), mount.mount_path)]);
            }
        }
        self.pods
            .insert(uid.to_string(), mounted.into_iter().map(|(_, m)| m).collect());
        Ok(Mount::Ready(args))
    }

    /// Re-reads every mounted Secret and rewrites the volumes whose content changed. A Secret deleted
    /// after the mount leaves the files as they are (as on a real node).
    pub async fn refresh(&mut self, secrets: &Api<Secret>) -> Result<(), kube::Error> {
        let mut cache: BTreeMap<String, Option<Secret>> = BTreeMap::new();
        for mounted in self.pods.values_mut().flatten() {
            let name = secret_name(&mounted.source);
            if !cache.contains_key(&name) {
                cache.insert(name.clone(), secrets.get_opt(&name).await?);
            }
            let Some(Some(secret)) = cache.get(&name) else { continue };
            let Ok(files) = payload(&mounted.source, Some(secret)) else {
                continue;
            };
            if files != mounted.payload {
                write_atomically(&mounted.dir, &files).map_err(io_error)?;
                mounted.payload = files;
            }
        }
        Ok(())
    }

    /// Removes the volumes of pod `uid`.
    pub fn unmount(&mut self, uid: &str) {
        self.pods.remove(uid);
        let dir = self.root.path().join(uid);
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("fake kubelet: remove {}: {e}", dir.display());
            }
        }
    }

    /// Removes the volumes of every pod for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.pods.keys().filter(|uid| !keep(uid)).cloned().collect();
        for uid in gone {
            self.unmount(&uid);
        }
    }
}
