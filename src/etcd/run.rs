//! The `rustcd` binary's body: flags -> logging -> start the member -> serve listeners
//! until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::backup_agent::{self, ClientTls, Restored};
use crate::config::{normalize_args, BackupCommand, Cli, Command, ServerConfig, SnapshotCommand};
use crate::metrics::ServerMetrics;
use crate::server::{self, ETCD_API_VERSION};
use crate::tls::ServerTls;

/// Entry point of `rustcd`.
pub fn main() -> Result<()> {
    let mut cli = Cli::parse_from(normalize_args(std::env::args()));
    let from_file = match (cli.flags.config_file.clone(), &cli.command) {
        (Some(path), None) => {
            let (file_cli, ignored) = cli_from_config_file(&path)?;
            cli = file_cli;
            Some((path, ignored))
        }
        _ => None,
    };
    if cli.flags.version {
        println!("rustcd Version: {}", env!("CARGO_PKG_VERSION"));
        println!("etcd API Version: {ETCD_API_VERSION}");
        println!("Rust target: {}", std::env::consts::ARCH);
        return Ok(());
    }
    if let Some(Command::Snapshot {
        action: SnapshotCommand::Restore(args),
    }) = &cli.command
    {
        let dir = crate::backup::restore(args).context("snapshot restore failed")?;
        println!("restored snapshot {} into {}", args.file.display(), dir.display());
        return Ok(());
    }
    if let Some(Command::Backup { action }) = &cli.command {
        return backup_command(action);
    }
    let cfg = ServerConfig::from_flags(&cli.flags).context("invalid configuration")?;
    init_logging(&cfg)?;
    if let Some((path, ignored)) = from_file {
        tracing::info!(
            path = %path,
            "loaded server configuration; other configuration command line flags and environment variables are ignored"
        );
        for key in ignored {
            tracing::warn!(path = %path, key = %key, "ignoring an unknown configuration key");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rustcd")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(cfg))
}

/// The command line `--config-file` stands for, parsed like flags; as in etcd, the other flags and
/// the `ETCD_*` environment are then ignored. Returns it with the keys that were ignored.
fn cli_from_config_file(path: &str) -> Result<(Cli, Vec<String>)> {
    use clap::CommandFactory;
    let known: std::collections::BTreeSet<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let (args, ignored) = crate::config::file::load(path, &known).context("error verifying flags")?;
    // Single-threaded still: nothing else reads the environment concurrently.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            std::env::remove_var(&key);
        }
    }
    let argv = std::iter::once("rustcd".to_string()).chain(args);
    let cli = Cli::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("error verifying flags, {path}: {}", e.to_string().trim()))?;
    Ok((cli, ignored))
}

/// `rustcd backup ...` (see [`crate::backup_agent`]): logs to stderr, results on stdout.
fn backup_command(action: &BackupCommand) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .try_init()
        .ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        match action {
            BackupCommand::Save(args) => {
                let user = match (&args.tls.user, &args.tls.password) {
                    (None, _) => None,
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    (Some(u), None) => match u.split_once(':') {
                        Some((name, password)) => Some((name.to_string(), password.to_string())),
                        None => bail!("--user {u:?} needs a password: name:password, or --password"),
                    },
                };
                let tls = ClientTls {
                    cacert: args.tls.cacert.clone(),
                    cert: args.tls.cert.clone(),
                    key: args.tls.key.clone(),
                    user,
                };
                let saved = backup_agent::save(&args.endpoints, &tls, &args.to, args.keep).await;
                let line = match &saved {
                    Ok(r) => serde_json::to_string(r)?,
                    Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                };
                if let Some(path) = &args.result_file {
                    // Best effort: the result is on stdout too.
                    if let Err(e) = std::fs::write(path, &line) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the result file");
                    }
                }
                let r = saved.context("backup save failed")?;
                println!("{line}");
                eprintln!("saved {} ({} bytes, revision {})", r.location, r.size, r.revision);
            }
            BackupCommand::Fetch(args) => {
                let (from, revision) = backup_agent::fetch(&args.from, &args.to)
                    .await
                    .context("backup fetch failed")?;
                println!("fetched {from} (revision {revision}) into {}", args.to.display());
            }
            BackupCommand::Restore(args) => {
                let data_dir = std::path::Path::new(&args.data_dir);
                let done = backup_agent::restore_member(&args.from, args.only_for.as_deref(), data_dir, &args.member)
                    .await
                    .context("backup restore failed")?;
                match done {
                    Restored::Restored { from, revision } => {
                        println!("restored {from} (revision {revision}) into {}", args.data_dir)
                    }
                    Restored::NotThisMember => {
                        println!("{} is not the member to restore; nothing to do", args.member.name)
                    }
                    Restored::HasData => println!("{} already has data; nothing to do", args.data_dir),
                }
            }
            BackupCommand::List(args) => {
                for l in backup_agent::list(&args.at).await.context("backup list failed")? {
                    println!("{l}");
                }
            }
        }
        Ok(())
    })
}

fn init_logging(cfg: &ServerConfig) -> Result<()> {
    let level = match cfg.log_level.as_str() {
        "panic" | "fatal" => "error",
        l => l,
    };
    let filter = EnvFilter::try_from_env("RUSTCD_LOG").unwrap_or_else(|_| EnvFilter::new(format!("{level},raft=warn")));
    let output = cfg.log_outputs.first().map(String::as_str).unwrap_or("default");
    let writer: tracing_subscriber::fmt::writer::BoxMakeWriter = match output {
        "default" | "stderr" => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
        "stdout" => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --log-outputs file {path}"))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(Arc::new(file))
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let res = if cfg.log_json {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
    res.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

async fn bind(url: &url::Url) -> Result<TcpListener> {
    if url.scheme() != "http" && url.scheme() != "https" {
        bail!("listening on {url} is not supported yet (only http:// and https:// URLs)");
    }
    let host = url.host_str().context("URL without host")?;
    let port = url.port().context("URL without port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {url}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("{url} resolves to no address"))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen tcp {addr}: cannot bind {url}"))
}

/// A listener's TLS settings when its URL is https.
fn tls_for(url: &url::Url, side: &Option<Arc<ServerTls>>) -> Option<Arc<ServerTls>> {
    (url.scheme() == "https").then(|| side.clone()).flatten()
}

/// Serves `router` on `listener`, over TLS when `tls` is given.
async fn serve_on(listener: TcpListener, router: axum::Router, tls: Option<Arc<ServerTls>>) -> std::io::Result<()> {
    match tls {
        Some(tls) => crate::tls::serve(listener, router, tls).await,
        None => crate::listen::serve(listener, router).await,
    }
}

/// Generates `--auto-tls` certificates and loads every side's certificate that an https
/// URL needs (errors name the file), before anything else starts.
fn load_tls(cfg: &mut ServerConfig) -> Result<ListenerTls> {
    let https = |urls: &[url::Url]| urls.iter().any(|u| u.scheme() == "https");
    let years = cfg.tls.self_signed_cert_validity;
    let client_urls: Vec<url::Url> = cfg
        .listen_client_urls
        .iter()
        .chain(&cfg.listen_metrics_urls)
        .cloned()
        .collect();
    crate::tls::auto::ensure(&mut cfg.tls.client, &cfg.data_dir, &client_urls, years)?;
    crate::tls::auto::ensure(&mut cfg.tls.peer, &cfg.data_dir, &cfg.listen_peer_urls, years)?;
    let client = match https(&client_urls) {
        true => Some(ServerTls::new(&cfg.tls.client, &cfg.tls.options).context("client TLS")?),
        false => None,
    };
    let peer = match https(&cfg.listen_peer_urls) {
        true => Some(ServerTls::new(&cfg.tls.peer, &cfg.tls.options).context("peer TLS")?),
        false => None,
    };
    Ok(ListenerTls { client, peer })
}

/// TLS of the https listeners: the client side's (also for https metrics URLs) and the peer side's.
struct ListenerTls {
    client: Option<Arc<ServerTls>>,
    peer: Option<Arc<ServerTls>>,
}

async fn serve(mut cfg: ServerConfig) -> Result<()> {
    let ListenerTls {
        client: client_tls,
        peer: peer_tls,
    } = load_tls(&mut cfg)?;
    // Bind everything first: a port conflict fails before the data dir is touched.
    let mut client = Vec::new();
    for u in &cfg.listen_client_urls {
        client.push((u.clone(), bind(u).await?));
    }
    let mut peer = Vec::new();
    for u in &cfg.listen_peer_urls {
        peer.push((u.clone(), bind(u).await?));
    }
    let mut metrics_l = Vec::new();
    for u in &cfg.listen_metrics_urls {
        metrics_l.push((u.clone(), bind(u).await?));
    }
    let metrics = Arc::new(ServerMetrics::new().context("cannot register metrics")?);
    tracing::info!(name = %cfg.name, data_dir = %cfg.data_dir.display(), "starting rustcd {}", env!("CARGO_PKG_VERSION"));
    let join = server::discovery::prepare(&cfg)
        .await
        .with_context(|| format!("member {} cannot start", cfg.name))?;
    let cfg_for_start = cfg.clone();
    let started = tokio::task::spawn_blocking(move || server::start(cfg_for_start, metrics, join))
        .await
        .context("start-up task failed")?
        .with_context(|| format!("cannot start member from data dir {}", cfg.data_dir.display()))?;
    let srv = started.server.clone();
    let mut tasks = tokio::task::JoinSet::new();
    // Peers and metrics are served at once (electing a leader needs the peers); clients
    // only after this member has published itself to the cluster, as etcd does.
    for (url, l) in peer {
        let app = crate::grpc::peer_router(srv.clone());
        tracing::info!(address = %url, "listening for peers");
        tasks.spawn(serve_on(l, app, tls_for(&url, &peer_tls)));
    }
    for (url, l) in metrics_l {
        let app = crate::grpc::http_router(srv.clone());
        tracing::info!(address = %url, "serving metrics");
        tasks.spawn(serve_on(l, app, tls_for(&url, &client_tls)));
    }
    tokio::select! {
        _ = server::background::publish(srv.clone()) => {}
        _ = srv.removed.notified() => {
            srv.raft.stop();
            tasks.abort_all();
            bail!("the member has been permanently removed from the cluster");
        }
        _ = srv.storage_failed.notified() => {
            tasks.abort_all();
            bail!("{}", storage_failure_message(&srv));
        }
    }
    server::background::spawn_all(&srv);
    for (url, l) in client {
        let app = crate::grpc::client_router(srv.clone());
        tracing::info!(address = %url, "serving client traffic");
        tasks.spawn(serve_on(l, app, tls_for(&url, &client_tls)));
    }
    tracing::info!(
        member_id = format!("{:x}", srv.member_id),
        cluster_id = format!("{:x}", srv.cluster_id),
        "ready to serve client requests"
    );
    let shutdown = shutdown_signal();
    let mut removed = false;
    let mut storage_failed = false;
    tokio::select! {
        _ = shutdown => tracing::info!("received shutdown signal; stopping"),
        _ = srv.storage_failed.notified() => storage_failed = true,
        _ = srv.removed.notified() => {
            // Give the commit of the removal time to reach the other members (etcd waits too).
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            removed = true;
        }
        Some(r) = tasks.join_next() => {
            if let Ok(Err(e)) = r {
                tracing::error!(error = %e, "listener failed");
            }
        }
    }
    if storage_failed {
        // Fail-stop, as etcd does: exit at once; every acknowledged write is already durable,
        // and restart recovery replays the WAL.
        tasks.abort_all();
        bail!("{}", storage_failure_message(&srv));
    }
    srv.raft.stop();
    tasks.abort_all();
    let driver = started.driver;
    let _ = tokio::task::spawn_blocking(move || driver.join()).await;
    tracing::info!("stopped");
    if removed {
        bail!("the member has been permanently removed from the cluster");
    }
    Ok(())
}

fn storage_failure_message(srv: &server::EtcdServer) -> String {
    format!(
        "stopping on a storage failure: {}",
        srv.raft.status.storage_failure().unwrap_or("unknown")
    )
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
