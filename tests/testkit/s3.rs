//! A real S3 protocol server for backup tests: moto's server mode (PyPI `moto[server]`, installed by
//! `scripts/setup.sh --with-etcd` into `.cache/moto-venv`), on a free loopback port (or another
//! address, for pods), stopped by PID on drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, repo_root, which};

/// The `moto_server` executable: `$MOTO_SERVER`, the setup script's venv, or `PATH`.
pub fn moto_server_bin() -> Option<PathBuf> {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| Some(repo_root().join(".cache/moto-venv/bin/moto_server")).filter(|p| p.is_file()))
        .or_else(|| which("moto_server"))
}

/// A running moto server.
pub struct S3Server {
    child: Child,
    /// `http://host:port`.
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts moto on 127.0.0.1; `Err` says why it could not (not installed, did not listen).
    pub fn start() -> Result<S3Server, String> {
        S3Server::start_on("127.0.0.1", free_port())
    }

    /// Starts moto listening on `host:port`.
    pub fn start_on(host: &str, port: u16) -> Result<S3Server, String> {
        let bin = moto_server_bin().ok_or("moto_server not found (scripts/setup.sh --with-etcd installs it)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(["-H", host, "-p", &port.to_string()])
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut s = S3Server {
            child,
            endpoint: format!("http://{host}:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((host, port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!("moto_server exited ({status}): {}", s.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!("moto_server did not listen on {host}:{port}: {}", s.logs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(s)
    }

    /// Creates a bucket (moto takes an unsigned request).
    pub fn create_bucket(&self, name: &str) {
        let o = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", &format!("{}/{name}", self.endpoint)])
            .output()
            .expect("curl");
        assert!(
            o.status.success(),
            "create bucket {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The object keys in `bucket` (moto's ListObjects XML, keys only).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let o = Command::new("curl")
            .args(["-sS", "-f", &format!("{}/{bucket}", self.endpoint)])
            .output()
            .expect("curl");
        let body = String::from_utf8_lossy(&o.stdout);
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The environment `rustcd backup` needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
