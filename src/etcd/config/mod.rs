//! Server configuration: etcd's flags (see [`flags`]) validated into a [`ServerConfig`].
//!
//! Every check that etcd performs at start-up on flag combinations is done here, so
//! that a bad command line fails before anything touches the data directory.

pub mod duration;
pub mod file;
pub mod flags;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use url::Url;

pub use flags::{
    normalize_args, BackupCommand, BackupFetchArgs, BackupListArgs, BackupRestoreArgs, BackupSaveArgs, BackupTlsArgs,
    Cli, Command, Flags, RestoreArgs, RestoredMember, SnapshotCommand,
};

use crate::tls::{self, TlsConfig, TlsInfo};

/// etcd's default backend quota (2 GiB) and its hard maximum (8 GiB).
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
pub const MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;

/// A configuration problem found at start-up.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("--{0} is not supported yet by rustcd")]
    Unsupported(&'static str),
    #[error("{0}")]
    Conflict(String),
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Whether a new cluster is bootstrapped or an existing one joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialClusterState {
    New,
    Existing,
}

/// How old revisions are compacted automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep roughly this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// A member of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub max_snapshots: usize,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<String>,
    pub listen_metrics_urls: Vec<Url>,
    pub initial_cluster: Vec<InitialMember>,
    pub initial_cluster_token: String,
    pub initial_cluster_state: InitialClusterState,
    pub quota_backend_bytes: i64,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub auto_compaction: AutoCompaction,
    pub bcrypt_cost: u32,
    pub auth_token_ttl: Duration,
    pub unsafe_no_fsync: bool,
    pub pre_vote: bool,
    /// Refuse membership changes that could cost quorum (etcd's --strict-reconfig-check).
    pub strict_reconfig_check: bool,
    pub watch_progress_notify_interval: Duration,
    pub log_level: String,
    pub log_json: bool,
    pub log_outputs: Vec<String>,
    /// Client and peer TLS (https listeners, mTLS, dialing other members).
    pub tls: TlsConfig,
}

fn parse_urls(flag: &'static str, value: &str) -> Result<Vec<Url>, ConfigError> {
    let mut urls = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = Url::parse(part).map_err(|e| invalid(flag, part, e.to_string()))?;
        match url.scheme() {
            "http" | "https" | "unix" | "unixs" => {}
            other => {
                return Err(invalid(
                    flag,
                    part,
                    format!("URL scheme must be http or https, got {other:?}"),
                ))
            }
        }
        if url.host_str().is_none() || url.port().is_none() {
            return Err(invalid(flag, part, "URL must have a host and a port"));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(invalid(flag, part, "URL must not have a path"));
        }
        urls.push(url);
    }
    Ok(urls)
}

/// Formats a URL the way etcd prints it (no trailing slash).
pub fn url_string(u: &Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

fn parse_initial_cluster(value: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut members: Vec<InitialMember> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| invalid("initial-cluster", part, "expected name=peer-url"))?;
        let parsed = parse_urls("initial-cluster", url)?;
        let url = parsed.first().map(url_string).unwrap_or_default();
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url),
            None => members.push(InitialMember {
                name: name.to_string(),
                peer_urls: vec![url],
            }),
        }
    }
    for m in &mut members {
        m.peer_urls.sort();
    }
    Ok(members)
}

fn parse_auto_compaction(mode: &str, retention: &str) -> Result<AutoCompaction, ConfigError> {
    match mode {
        "periodic" => {
            if let Ok(hours) = retention.parse::<i64>() {
                if hours < 0 {
                    return Err(invalid("auto-compaction-retention", retention, "must not be negative"));
                }
                return Ok(if hours == 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Periodic(Duration::from_secs(hours as u64 * 3600))
                });
            }
            let d = duration::parse_go_duration(retention)
                .map_err(|e| invalid("auto-compaction-retention", retention, e))?;
            Ok(if d.is_zero() {
                AutoCompaction::Off
            } else {
                AutoCompaction::Periodic(d)
            })
        }
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| {
                invalid(
                    "auto-compaction-retention",
                    retention,
                    "revision mode needs a number of revisions",
                )
            })?;
            if n < 0 {
                return Err(invalid("auto-compaction-retention", retention, "must not be negative"));
            }
            Ok(if n == 0 {
                AutoCompaction::Off
            } else {
                AutoCompaction::Revision(n)
            })
        }
        other => Err(invalid(
            "auto-compaction-mode",
            other,
            "must be \"periodic\" or \"revision\"",
        )),
    }
}

/// The TLS flags, checked against the https URLs they must serve.
fn tls_config(f: &Flags, client: &[Url], peer: &[Url], metrics: &[Url]) -> Result<TlsConfig, ConfigError> {
    let options = tls::config::parse_options(&f.tls_min_version, &f.tls_max_version, &f.cipher_suites)
        .map_err(ConfigError::Conflict)?;
    let cfg = TlsConfig {
        client: TlsInfo::client(
            &f.cert_file,
            &f.key_file,
            &f.trusted_ca_file,
            f.client_cert_auth,
            &f.client_crl_file,
            f.auto_tls,
        )
        .with_allowed_hostname(&f.client_cert_allowed_hostname)
        .map_err(ConfigError::Conflict)?,
        peer: TlsInfo::peer(
            &f.peer_cert_file,
            &f.peer_key_file,
            &f.peer_trusted_ca_file,
            f.peer_client_cert_auth,
            &f.peer_crl_file,
            f.peer_auto_tls,
            &f.peer_cert_allowed_cn,
        )
        .with_allowed_hostname(&f.peer_cert_allowed_hostname)
        .map_err(ConfigError::Conflict)?,
        options,
        self_signed_cert_validity: f.self_signed_cert_validity,
    };
    // https metrics URLs are served with the client side's certificate, as etcd does.
    for u in client.iter().chain(metrics) {
        tls::config::check_https_url(&cfg.client, u).map_err(ConfigError::Conflict)?;
    }
    for u in peer {
        tls::config::check_https_url(&cfg.peer, u).map_err(ConfigError::Conflict)?;
    }
    if f.self_signed_cert_validity == 0 && (f.auto_tls || f.peer_auto_tls) {
        // etcd 3.5: "selfSignedCertValidity is invalid,it should be greater than 0".
        return Err(invalid("self-signed-cert-validity", "0", "it should be greater than 0"));
    }
    Ok(cfg)
}

impl ServerConfig {
    /// Validates flags into a configuration, with etcd's start-up checks.
    pub fn from_flags(f: &Flags) -> Result<Self, ConfigError> {
        for (flag, set) in [
            ("discovery", !f.discovery.is_empty()),
            ("discovery-srv", !f.discovery_srv.is_empty()),
            ("enable-v2", f.enable_v2),
        ] {
            if set {
                return Err(ConfigError::Unsupported(flag));
            }
        }
        if f.auth_token != "simple" && !f.auth_token.starts_with("simple,") {
            return Err(ConfigError::Unsupported("auth-token (only \"simple\" tokens)"));
        }
        if f.logger != "zap" {
            return Err(invalid(
                "logger",
                &f.logger,
                "only \"zap\" is supported (as in etcd 3.5)",
            ));
        }
        let log_json = match f.log_format.as_str() {
            "json" => true,
            "text" | "console" => false,
            other => return Err(invalid("log-format", other, "must be \"json\" or \"text\"")),
        };
        match f.log_level.as_str() {
            "debug" | "info" | "warn" | "error" | "panic" | "fatal" => {}
            other => {
                return Err(invalid(
                    "log-level",
                    other,
                    "must be one of debug, info, warn, error, panic, fatal",
                ))
            }
        }
        if f.heartbeat_interval == 0 {
            return Err(invalid("heartbeat-interval", "0", "must be positive"));
        }
        if f.election_timeout < 5 * f.heartbeat_interval {
            return Err(ConfigError::Conflict(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                f.election_timeout, f.heartbeat_interval
            )));
        }
        if f.election_timeout > 50_000 {
            return Err(ConfigError::Conflict(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50 seconds",
                f.election_timeout
            )));
        }
        if f.snapshot_count == 0 {
            return Err(invalid("snapshot-count", "0", "must be positive"));
        }
        let quota = match f.quota_backend_bytes {
            q if q < 0 => return Err(invalid("quota-backend-bytes", &q.to_string(), "must not be negative")),
            0 => DEFAULT_QUOTA_BYTES,
            q if q > MAX_QUOTA_BYTES => {
                return Err(invalid(
                    "quota-backend-bytes",
                    &q.to_string(),
                    format!("exceeds the maximum quota of {MAX_QUOTA_BYTES} bytes"),
                ))
            }
            q => q,
        };
        if f.max_txn_ops == 0 {
            return Err(invalid("max-txn-ops", "0", "must be positive"));
        }
        if f.max_request_bytes == 0 {
            return Err(invalid("max-request-bytes", "0", "must be positive"));
        }
        if f.listen_client_urls.is_some() && f.advertise_client_urls.is_none() {
            return Err(ConfigError::Conflict(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly".into(),
            ));
        }
        let listen_value = f.listen_client_urls.as_deref().unwrap_or("http://localhost:2379");
        let listen_client_urls = parse_urls("listen-client-urls", listen_value)?;
        if listen_client_urls.is_empty() {
            return Err(invalid(
                "listen-client-urls",
                listen_value,
                "at least one URL is required",
            ));
        }
        let listen_peer_urls = parse_urls("listen-peer-urls", &f.listen_peer_urls)?;
        let listen_metrics_urls = parse_urls("listen-metrics-urls", &f.listen_metrics_urls)?;
        let advertise_value = f.advertise_client_urls.as_deref().unwrap_or("http://localhost:2379");
        let advertise_client_urls: Vec<String> = parse_urls("advertise-client-urls", advertise_value)?
            .iter()
            .map(url_string)
            .collect();
        let mut initial_advertise_peer_urls: Vec<String> =
            parse_urls("initial-advertise-peer-urls", &f.initial_advertise_peer_urls)?
                .iter()
                .map(url_string)
                .collect();
        initial_advertise_peer_urls.sort();
        let initial_cluster_state = match f.initial_cluster_state.as_str() {
            "new" => InitialClusterState::New,
            "existing" => InitialClusterState::Existing,
            other => {
                return Err(invalid(
                    "initial-cluster-state",
                    other,
                    "must be \"new\" or \"existing\"",
                ))
            }
        };
        let initial_cluster = match &f.initial_cluster {
            Some(v) => parse_initial_cluster(v)?,
            None => vec![InitialMember {
                name: f.name.clone(),
                peer_urls: initial_advertise_peer_urls.clone(),
            }],
        };
        match initial_cluster.iter().find(|m| m.name == f.name) {
            None => {
                return Err(ConfigError::Conflict(format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    f.name
                )))
            }
            Some(me) if me.peer_urls != initial_advertise_peer_urls => {
                return Err(ConfigError::Conflict(format!(
                    "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\")",
                    f.name,
                    me.peer_urls.join(","),
                    initial_advertise_peer_urls.join(","),
                    initial_advertise_peer_urls.join(","),
                    initial_advertise_peer_urls.join(","),
                    me.peer_urls.join(",")
                )))
            }
            Some(_) => {}
        }
        let tls = tls_config(f, &listen_client_urls, &listen_peer_urls, &listen_metrics_urls)?;
        let auto_compaction = parse_auto_compaction(&f.auto_compaction_mode, &f.auto_compaction_retention)?;
        let watch_progress_notify_interval =
            duration::parse_go_duration(&f.experimental_watch_progress_notify_interval).map_err(|e| {
                invalid(
                    "experimental-watch-progress-notify-interval",
                    &f.experimental_watch_progress_notify_interval,
                    e,
                )
            })?;
        if !(4..=31).contains(&f.bcrypt_cost) {
            return Err(invalid(
                "bcrypt-cost",
                &f.bcrypt_cost.to_string(),
                "must be between 4 and 31",
            ));
        }
        let data_dir = PathBuf::from(f.data_dir.clone().unwrap_or_else(|| format!("{}.rustcd", f.name)));
        Ok(ServerConfig {
            name: f.name.clone(),
            data_dir,
            wal_dir: f.wal_dir.as_ref().filter(|w| !w.is_empty()).map(PathBuf::from),
            snapshot_count: f.snapshot_count,
            snapshot_catchup_entries: f.experimental_snapshot_catchup_entries,
            max_snapshots: f.max_snapshots.max(1),
            heartbeat: Duration::from_millis(f.heartbeat_interval),
            election_timeout: Duration::from_millis(f.election_timeout),
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            listen_metrics_urls,
            strict_reconfig_check: f.strict_reconfig_check,
            initial_cluster,
            initial_cluster_token: f.initial_cluster_token.clone(),
            initial_cluster_state,
            quota_backend_bytes: quota,
            max_txn_ops: f.max_txn_ops as usize,
            max_request_bytes: f.max_request_bytes as usize,
            auto_compaction,
            bcrypt_cost: f.bcrypt_cost,
            auth_token_ttl: Duration::from_secs(f.auth_token_ttl.max(1)),
            unsafe_no_fsync: f.unsafe_no_fsync,
            pre_vote: f.pre_vote,
            watch_progress_notify_interval,
            log_level: f.log_level.clone(),
            log_json,
            log_outputs: f.log_outputs.split(',').map(|s| s.trim().to_string()).collect(),
            tls,
        })
    }

    /// Election timeout measured in heartbeat ticks, as Raft counts it.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout.as_millis() / self.heartbeat.as_millis().max(1)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<ServerConfig, ConfigError> {
        let mut all = vec!["rustcd"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| ConfigError::Conflict(e.to_string()))?;
        ServerConfig::from_flags(&cli.flags)
    }

    #[test]
    fn defaults_are_plain_etcd() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.rustcd"));
        assert_eq!(c.listen_client_urls[0].as_str(), "http://localhost:2379/");
        assert_eq!(c.initial_cluster[0].peer_urls, vec!["http://localhost:2380"]);
        assert_eq!(c.quota_backend_bytes, DEFAULT_QUOTA_BYTES);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.auto_compaction, AutoCompaction::Off);
    }

    #[test]
    fn contradictions_fail_with_clear_messages() {
        let e = cfg(&["--heartbeat-interval=500", "--election-timeout=1000"]).unwrap_err();
        assert!(e.to_string().contains("at least as 5 times"), "{e}");
        let e = cfg(&["--name=a", "--initial-cluster=b=http://127.0.0.1:2380"]).unwrap_err();
        assert!(e.to_string().contains("couldn't find local name"), "{e}");
        let e = cfg(&["--initial-cluster-state=maybe"]).unwrap_err();
        assert!(e.to_string().contains("initial-cluster-state"), "{e}");
        let e = cfg(&["--auto-compaction-mode=revision", "--auto-compaction-retention=1h"]).unwrap_err();
        assert!(e.to_string().contains("revision mode"), "{e}");
        let e = cfg(&["--discovery=https://discovery.example/x"]).unwrap_err();
        assert!(e.to_string().contains("not supported yet"), "{e}");
        let e = cfg(&["--listen-client-urls=http://127.0.0.1:1"]).unwrap_err();
        assert!(e.to_string().contains("advertise-client-urls"), "{e}");
    }

    #[test]
    fn tls_flags_are_checked_against_https_urls() {
        let https_client = [
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
        ];
        let e = cfg(&https_client).unwrap_err();
        assert_eq!(
            e.to_string(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
        );
        let mut with_files = https_client.to_vec();
        with_files.extend(["--cert-file=/s.pem", "--key-file=/s-key.pem", "--client-cert-auth"]);
        let c = cfg(&with_files).unwrap();
        assert!(c.tls.client.client_cert_auth);
        assert_eq!(c.listen_client_urls[0].scheme(), "https");
        let peer = [
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
            "--initial-cluster=default=https://127.0.0.1:2380",
        ];
        let e = cfg(&peer).unwrap_err();
        assert!(e.to_string().contains("KeyFile and CertFile are not presented"), "{e}");
        let mut auto = peer.to_vec();
        auto.push("--peer-auto-tls");
        assert!(cfg(&auto).unwrap().tls.peer.auto_tls);
        auto.push("--self-signed-cert-validity=0");
        assert!(cfg(&auto).unwrap_err().to_string().contains("greater than 0"));
        let e = cfg(&["--cipher-suites=FOO"]).unwrap_err();
        assert_eq!(e.to_string(), "unexpected TLS cipher suite \"FOO\"");
        let e = cfg(&["--tls-min-version=TLS1.1"]).unwrap_err();
        assert!(e.to_string().contains("not supported by rustcd"), "{e}");
    }

    #[test]
    fn a_flag_given_twice_takes_its_last_value_like_etcd() {
        let c = cfg(&["--name=a", "--name=b", "--initial-cluster=b=http://localhost:2380"]).unwrap();
        assert_eq!(c.name, "b");
        assert!(c.strict_reconfig_check);
        assert!(!cfg(&["--strict-reconfig-check=false"]).unwrap().strict_reconfig_check);
    }

    #[test]
    fn auto_compaction_modes() {
        let c = cfg(&["--auto-compaction-retention=1"]).unwrap();
        assert_eq!(c.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(3600)));
        let c = cfg(&["--auto-compaction-retention=30m"]).unwrap();
        assert_eq!(c.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(1800)));
        let c = cfg(&["--auto-compaction-mode=revision", "--auto-compaction-retention=1000"]).unwrap();
        assert_eq!(c.auto_compaction, AutoCompaction::Revision(1000));
    }
}
