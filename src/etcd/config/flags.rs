//! Command-line flags, named and defaulted exactly like etcd 3.5's, each also
//! readable from its `ETCD_*` environment variable.

use clap::{ArgAction, Args, Parser, Subcommand};

/// Builds a bool flag that accepts `--flag`, `--flag=true` and `--flag=false` like Go's flag package.
macro_rules! bool_flag_doc {
    () => {
        "true|false"
    };
}

#[derive(Debug, Parser, Clone)]
#[command(
    name = "rustcd",
    about = "rustcd: an etcd-compatible, Raft-replicated key-value store",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    // Like etcd (Go's flag package), a flag given twice takes its last value.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand, Clone)]
pub enum Command {
    /// Snapshot tools (like `etcdutl snapshot`).
    Snapshot {
        #[command(subcommand)]
        action: SnapshotCommand,
    },
    /// Backups to a directory or an S3-compatible bucket (what the operator's backup Jobs run).
    Backup {
        #[command(subcommand)]
        action: BackupCommand,
    },
}

#[derive(Debug, Subcommand, Clone)]
pub enum BackupCommand {
    /// Take a snapshot from a healthy member (a follower when one is healthy), verify it (checksums,
    /// a restore into a temporary directory, HashKV) and write it under a location.
    Save(BackupSaveArgs),
    /// Read a backup (named, or the newest under a prefix ending in '/'), verify its checksums and
    /// write it to a local file for `rustcd snapshot restore`.
    Fetch(BackupFetchArgs),
    /// List the backups under a location, oldest first.
    List(BackupListArgs),
    /// Create a member's data directory from a backup (named, or the newest under a prefix), unless
    /// it already has data: what the operator's init container runs for `spec.bootstrap.fromBackup`.
    Restore(BackupRestoreArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BackupRestoreArgs {
    /// A backup (s3://bucket/prefix/name.db, /dir/name.db) or a prefix ending in '/' for the newest.
    #[arg(long)]
    pub from: String,
    /// Only restore when --name is this member (the first member of a new cluster); others skip.
    #[arg(long)]
    pub only_for: Option<String>,
    /// Data directory to create; a directory that already has data is left alone.
    #[arg(long)]
    pub data_dir: String,
    #[command(flatten)]
    pub member: RestoredMember,
}

/// Client TLS files, as etcdctl names them.
#[derive(Debug, Args, Clone)]
pub struct BackupTlsArgs {
    /// CA bundle that verifies the members' certificates.
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// Client certificate.
    #[arg(long)]
    pub cert: Option<std::path::PathBuf>,
    /// Client key.
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    /// `name:password` (or `name` with --password) for a cluster with auth enabled (the snapshot
    /// needs the root role), as etcdctl's --user.
    #[arg(long)]
    pub user: Option<String>,
    /// Password for --user, when it is not `name:password`.
    #[arg(long)]
    pub password: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct BackupSaveArgs {
    /// The members' client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    #[command(flatten)]
    pub tls: BackupTlsArgs,
    /// Where to write: a directory (/backups/, file:///backups/) or s3://bucket/prefix/ (S3
    /// settings from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT,
    /// AWS_ALLOW_HTTP). Backups are named snapshot-{UTC time}-rev{revision}.db.
    #[arg(long)]
    pub to: String,
    /// Keep only the newest N backups under the location (0: keep all).
    #[arg(long, default_value_t = 0)]
    pub keep: usize,
    /// Also write the JSON result to this file (the operator uses /dev/termination-log).
    #[arg(long)]
    pub result_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct BackupFetchArgs {
    /// A backup (s3://bucket/prefix/name.db, /dir/name.db) or a prefix ending in '/' for the newest.
    #[arg(long)]
    pub from: String,
    /// Local file to write.
    #[arg(long)]
    pub to: std::path::PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct BackupListArgs {
    /// A prefix: /dir/ or s3://bucket/prefix/.
    pub at: String,
}

#[derive(Debug, Subcommand, Clone)]
pub enum SnapshotCommand {
    /// Create a new data directory from a snapshot taken with `etcdctl snapshot save`.
    Restore(RestoreArgs),
}

#[derive(Debug, Args, Clone)]
pub struct RestoreArgs {
    /// Snapshot file written by `etcdctl snapshot save`.
    pub file: std::path::PathBuf,
    /// Data directory to create (must not exist or be empty). Default: NAME.rustcd
    #[arg(long)]
    pub data_dir: Option<String>,
    #[command(flatten)]
    pub member: RestoredMember,
}

/// The member a restored data directory is for, as `etcdutl snapshot restore` takes it (shared by
/// `rustcd snapshot restore` and `rustcd backup restore`).
#[derive(Debug, Args, Clone)]
pub struct RestoredMember {
    #[arg(long, default_value = "default")]
    pub name: String,
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
}

/// etcd 3.5 server flags. Unknown flags are rejected by clap.
#[derive(Debug, Args, Clone)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(long, action = ArgAction::SetTrue)]
    pub version: bool,
    /// Path to etcd's YAML configuration file; other flags and ETCD_* variables are then ignored.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<String>,

    // ---- member ----
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory. Default: NAME.rustcd
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<String>,
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<String>,
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    #[arg(long, env = "ETCD_INITIAL_ELECTION_TICK_ADVANCE", default_value = "true", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub initial_election_tick_advance: bool,
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: Option<String>,
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    #[arg(long, env = "ETCD_MAX_SNAPSHOTS", default_value_t = 5)]
    pub max_snapshots: usize,
    #[arg(long, env = "ETCD_MAX_WALS", default_value_t = 5)]
    pub max_wals: usize,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    #[arg(long, env = "ETCD_BACKEND_BATCH_INTERVAL", default_value = "0s")]
    pub backend_batch_interval: String,
    #[arg(long, env = "ETCD_BACKEND_BATCH_LIMIT", default_value_t = 0)]
    pub backend_batch_limit: i64,
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_MIN_TIME", default_value = "5s")]
    pub grpc_keepalive_min_time: String,
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_INTERVAL", default_value = "2h")]
    pub grpc_keepalive_interval: String,
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s")]
    pub grpc_keepalive_timeout: String,
    #[arg(long, env = "ETCD_SOCKET_REUSE_PORT", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub socket_reuse_port: bool,
    #[arg(long, env = "ETCD_SOCKET_REUSE_ADDRESS", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub socket_reuse_address: bool,
    /// Disables fsync, unsafe, will cause data loss.
    #[arg(long, env = "ETCD_UNSAFE_NO_FSYNC", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub unsafe_no_fsync: bool,

    // ---- clustering ----
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    #[arg(long, env = "ETCD_DISCOVERY", default_value = "")]
    pub discovery: String,
    #[arg(long, env = "ETCD_DISCOVERY_SRV", default_value = "")]
    pub discovery_srv: String,
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value = "true", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub strict_reconfig_check: bool,
    #[arg(long, env = "ETCD_PRE_VOTE", default_value = "true", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub pre_vote: bool,
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    #[arg(long, env = "ETCD_ENABLE_V2", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub enable_v2: bool,

    // ---- security ----
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "")]
    pub cert_file: String,
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "")]
    pub key_file: String,
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub client_cert_auth: bool,
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE", default_value = "")]
    pub client_crl_file: String,
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub client_cert_allowed_hostname: String,
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "")]
    pub trusted_ca_file: String,
    #[arg(long, env = "ETCD_AUTO_TLS", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub auto_tls: bool,
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "")]
    pub peer_cert_file: String,
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "")]
    pub peer_key_file: String,
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub peer_client_cert_auth: bool,
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "")]
    pub peer_trusted_ca_file: String,
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "")]
    pub peer_cert_allowed_cn: String,
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub peer_cert_allowed_hostname: String,
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub peer_auto_tls: bool,
    #[arg(long, env = "ETCD_PEER_CRL_FILE", default_value = "")]
    pub peer_crl_file: String,
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,
    #[arg(long, env = "ETCD_CORS", default_value = "*")]
    pub cors: String,
    #[arg(long, env = "ETCD_HOST_WHITELIST", default_value = "*")]
    pub host_whitelist: String,

    // ---- auth ----
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,

    // ---- logging ----
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// rustcd extension: `json` (etcd/zap-like structured lines, the default) or `text`.
    #[arg(long, env = "RUSTCD_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    #[arg(long, env = "ETCD_ENABLE_LOG_ROTATION", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub enable_log_rotation: bool,

    // ---- profiling / monitoring ----
    #[arg(long, env = "ETCD_ENABLE_PPROF", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub enable_pprof: bool,
    #[arg(long, env = "ETCD_METRICS", default_value = "basic")]
    pub metrics: String,

    // ---- experimental (the ones deployments commonly set) ----
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub experimental_initial_corrupt_check: bool,
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s")]
    pub experimental_corrupt_check_time: String,
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_name = bool_flag_doc!())]
    pub experimental_enable_lease_checkpoint: bool,
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT", default_value_t = 1000)]
    pub experimental_compaction_batch_limit: i64,
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m"
    )]
    pub experimental_watch_progress_notify_interval: String,
    #[arg(long, env = "ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION", default_value = "100ms")]
    pub experimental_warning_apply_duration: String,
}

/// Go's flag package accepts `-name` as well as `--name`; clap only the latter.
/// Rewrite single-dash long flags so that etcd command lines work unchanged.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" {
            passthrough = true;
            out.push(a);
        } else if a.len() > 2 && a.starts_with('-') && !a.starts_with("--") {
            out.push(format!("-{a}"));
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_long_flags_are_accepted() {
        let args = normalize_args(["rustcd", "-name", "x", "--data-dir=/d", "-h"].map(String::from));
        assert_eq!(args, vec!["rustcd", "--name", "x", "--data-dir=/d", "-h"]);
    }

    #[test]
    fn bool_flags_take_optional_values() {
        let cli = Cli::try_parse_from(["rustcd", "--client-cert-auth", "--pre-vote=false"]).unwrap();
        assert!(cli.flags.client_cert_auth);
        assert!(!cli.flags.pre_vote);
    }

    #[test]
    fn unknown_flags_fail() {
        assert!(Cli::try_parse_from(["rustcd", "--no-such-flag"]).is_err());
    }
}
