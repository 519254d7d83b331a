//! Certificate rotation without restart: [`ReloadingKey`] hands out the current
//! certificate and key, re-reading both files when either's modification time changes.
//!
//! It is checked on every handshake (one `stat` per file). A half-written or mismatching
//! pair (the files are usually replaced one after the other) keeps the previous
//! certificate in use and is retried on the next handshake.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use super::{files, TlsError, TlsInfo};

/// The modification times a loaded pair was read at.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

/// A certificate/key pair that follows its files.
#[derive(Debug)]
pub struct ReloadingKey {
    cert_flag: String,
    key_flag: String,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether files stamped `now` must be re-read, given the stamp of the loaded pair.
pub fn changed(loaded: Stamp, now: Stamp) -> bool {
    now.0.is_some() && now.1.is_some() && now != loaded
}

impl ReloadingKey {
    /// Loads the side's `--cert-file`/`--key-file` (both must be set).
    pub fn load(info: &TlsInfo, provider: Arc<CryptoProvider>) -> Result<ReloadingKey, TlsError> {
        let (Some(cert), Some(key)) = (info.cert_file.clone(), info.key_file.clone()) else {
            return Err(TlsError::Config(format!(
                "--{} and --{} must both be set",
                info.flag("cert-file"),
                info.flag("key-file")
            )));
        };
        let (cert_flag, key_flag) = (info.flag("cert-file"), info.flag("key-file"));
        let stamp = (modified(&cert), modified(&key));
        let pair = files::certified_key(&cert_flag, &cert, &key_flag, &key, &provider)?;
        Ok(ReloadingKey {
            cert_flag,
            key_flag,
            cert,
            key,
            provider,
            current: Mutex::new((stamp, pair)),
        })
    }

    /// The pair to present now, re-read first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = (modified(&self.cert), modified(&self.key));
        let mut cur = self.current.lock();
        if changed(cur.0, now) {
            match files::certified_key(&self.cert_flag, &self.cert, &self.key_flag, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                    *cur = (now, pair);
                }
                Err(e) => tracing::warn!(error = %e, "cannot reload the TLS certificate; keeping the previous one"),
            }
        }
        cur.1.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingKey {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reload_needs_both_files_and_a_new_stamp() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let t1 = t0 + Duration::from_secs(1);
        assert!(!changed((Some(t0), Some(t0)), (Some(t0), Some(t0))));
        assert!(changed((Some(t0), Some(t0)), (Some(t1), Some(t0))));
        assert!(changed((Some(t0), Some(t0)), (Some(t0), Some(t1))));
        // A file missing for a moment (replaced by rename) is not a reason to reload.
        assert!(!changed((Some(t0), Some(t0)), (None, Some(t1))));
    }

    #[test]
    fn a_replaced_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let write = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            std::fs::write(&cert, c.cert.pem()).unwrap();
            std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
            c.cert.der().clone()
        };
        let first = write("one");
        let info = TlsInfo {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..TlsInfo::default()
        };
        let r = ReloadingKey::load(&info, Arc::new(rustls::crypto::ring::default_provider())).unwrap();
        assert_eq!(r.current().cert[0], first);
        // Force a different stamp even on file systems with coarse timestamps.
        r.current.lock().0 = (None, None);
        let second = write("two");
        assert_eq!(r.current().cert[0], second);
        r.current.lock().0 = (None, None);
        std::fs::write(&key, "garbage").unwrap();
        assert_eq!(r.current().cert[0], second);
    }
}
