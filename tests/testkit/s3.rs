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
    /// Access key ID and secret that [`S3Server::env`] hands out.
    pub credentials: (String, String),
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts moto on 127.0.0.1; `Err` says why it could not (not installed, did not listen).
    pub fn start() -> Result<S3Server, String> {
        S3Server::start_on("127.0.0.1", free_port())
    }

    /// Starts moto on 127.0.0.1 with IAM authentication on: only the access key of an IAM user it
    /// creates (allowed `s3:*`) is accepted, and the bucket `backups` exists. Uses boto3 from moto's
    /// own environment.
    pub fn start_with_iam() -> Result<S3Server, String> {
        // moto lets this many requests through before it checks credentials: the setup's own.
        let mut s = S3Server::spawn("127.0.0.1", free_port(), Some(3))?;
        let bin = moto_server_bin().ok_or("moto_server not found")?;
        let python = bin.with_file_name("python");
        let script = format!(
            r#"
import boto3, json
kw = dict(endpoint_url="{ep}", region_name="us-east-1")
iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
iam.create_user(UserName="backup")
iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps(
    {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}]}}))
k = iam.create_access_key(UserName="backup")["AccessKey"]
s3 = boto3.client("s3", aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"], **kw)
s3.create_bucket(Bucket="backups")
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
            ep = s.endpoint
        );
        let out = Command::new(&python)
            .args(["-c", &script])
            .output()
            .map_err(|e| format!("{}: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!("IAM setup failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(id), Some(secret)) => s.credentials = (id.to_string(), secret.to_string()),
            _ => return Err(format!("IAM setup printed no key: {text}")),
        }
        Ok(s)
    }

    /// Starts moto listening on `host:port`.
    pub fn start_on(host: &str, port: u16) -> Result<S3Server, String> {
        S3Server::spawn(host, port, None)
    }

    fn spawn(host: &str, port: u16, unauthenticated: Option<u32>) -> Result<S3Server, String> {
        let bin = moto_server_bin().ok_or("moto_server not found (scripts/setup.sh --with-etcd installs it)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        if let Some(n) = unauthenticated {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd
            .args(["-H", host, "-p", &port.to_string()])
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut s = S3Server {
            child,
            endpoint: format!("http://{host}:{port}"),
            credentials: ("testing".into(), "testing".into()),
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
            ("AWS_ACCESS_KEY_ID", self.credentials.0.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.credentials.1.clone()),
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
