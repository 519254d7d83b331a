//! `rustcd-operator`: runs the EtcdCluster reconcile loop (see `rustcd_operator`).
//!
//! Serves `/metrics`, `/healthz` and `/readyz` on `--metrics-bind-address`, optionally takes part in
//! leader election through a Lease, and shuts down gracefully on SIGTERM or Ctrl-C (reconciles in
//! flight finish, the Lease is released).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::routing::get;
use axum::Router;
use clap::{Parser, ValueEnum};
use rustcd_operator::backup::run_backups;
use rustcd_operator::leader_election::{ElectionConfig, LeaderElector};
use rustcd_operator::metrics::OperatorMetrics;
use rustcd_operator::{run, Context, Settings};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// Kubernetes operator for rustcd clusters (EtcdCluster, rustcd.io/v1alpha1).
#[derive(Parser, Debug)]
#[command(name = "rustcd-operator", version)]
struct Cli {
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "RUSTCD_OPERATOR_METRICS_BIND_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_bind_address: SocketAddr,
    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// Take part in leader election (only the Lease holder reconciles).
    #[arg(
        long,
        env = "RUSTCD_OPERATOR_LEADER_ELECT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    leader_elect: bool,
    /// Namespace of the leader election Lease (required with --leader-elect).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "rustcd-operator")]
    leader_election_id: String,
    /// Member image when spec.image is unset (spec.version, if set, replaces its tag).
    #[arg(long, env = "RUSTCD_IMAGE", default_value = "rustcd:latest")]
    image: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// This replica's name for the Lease and for Events: `POD_NAME`, else the hostname.
fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("rustcd-operator-{}", std::process::id()))
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
    }
    Ok(())
}

async fn serve_metrics(
    address: SocketAddr,
    metrics: OperatorMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(metrics.encode())))
        .route("/healthz", get(|| std::future::ready("ok")))
        .route("/readyz", get(|| std::future::ready("ok")));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics address {address}"))?;
    tracing::info!(%address, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("metrics server")
}

fn signalled(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    let mut rx = rx.clone();
    async move {
        // An error means the sender is gone, which also means: stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let me = identity();
    let election = match (cli.leader_elect, cli.leader_election_namespace.as_deref()) {
        (false, _) => None,
        (true, Some(namespace)) if !namespace.is_empty() => {
            Some(ElectionConfig::new(namespace, &cli.leader_election_id, &me))
        }
        (true, _) => bail!("--leader-elect needs --leader-election-namespace (or POD_NAMESPACE)"),
    };
    let client = kube::Client::try_default()
        .await
        .context("building the Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = OperatorMetrics::new().context("registering metrics")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_server = tokio::spawn(serve_metrics(
        cli.metrics_bind_address,
        metrics.clone(),
        signalled(&stop_rx),
    ));

    let elector = election.map(|config| Arc::new(LeaderElector::new(client.clone(), config)));
    let mut settings = Settings::new(&cli.image);
    settings.namespace = Some(cli.watch_namespace.clone()).filter(|n| !n.is_empty());
    settings.instance = Some(me.clone());
    let ctx = Arc::new(Context::new(client, settings, metrics.clone()));

    let terminated = termination();
    tokio::pin!(terminated);
    if let Some(elector) = &elector {
        tracing::info!(identity = %me, "waiting for the leader lease");
        tokio::select! {
            () = elector.acquire() => {}
            r = &mut terminated => {
                r?;
                let _ = stop_tx.send(true);
                return metrics_server.await.context("metrics task")?;
            }
        }
    }
    metrics.leader.set(1);
    let controller = tokio::spawn(run(ctx.clone(), signalled(&stop_rx)));
    let backups = tokio::spawn(run_backups(ctx, signalled(&stop_rx)));
    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    let lost_lease = tokio::select! {
        r = &mut terminated => r.map(|()| false),
        () = lost => Ok(true),
    };
    tracing::info!(lost_lease = ?lost_lease, "shutting down");
    let _ = stop_tx.send(true);
    controller.await.context("controller task")?;
    backups.await.context("backup controller task")?;
    metrics.leader.set(0);
    if let Some(elector) = &elector {
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "releasing the leader lease failed");
        }
    }
    metrics_server.await.context("metrics task")??;
    if lost_lease? {
        // Like client-go: a deposed leader exits, and the restarted pod campaigns again.
        bail!("lost the leader lease");
    }
    Ok(())
}
