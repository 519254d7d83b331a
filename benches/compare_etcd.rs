//! Load generator comparing Debian's etcd with rustcd (`cargo bench --bench
//! compare_etcd`, or `scripts/bench.sh`).
//!
//! Each server is started fresh (temp data dir, free loopback ports, same
//! flags) and gets the same workloads through the `etcd-client` crate:
//! put with N concurrent clients, linearizable and serializable range with N
//! clients, and single-client put. Reports ops/s, p50/p99 latency and the
//! server's max RSS, side by side with the rustcd/etcd ratio.
//!
//! With BENCH_MEMBERS=3 each side is a 3-member cluster (static bootstrap on loopback) and the
//! client connections are spread over its members, as etcd's own benchmark tool does with
//! several endpoints (the single-client workload talks to the leader); RSS is then the largest
//! member's.
//!
//! Knobs (env): BENCH_MEMBERS (1), BENCH_OPS (50000), BENCH_CLIENTS (100), BENCH_CONNS (10),
//! BENCH_SINGLE_OPS (5000), BENCH_KEYS (10000), BENCH_VALUE_SIZE (256),
//! BENCH_TIME_LIMIT_SECS per workload (60), BENCH_SERVERS (etcd,rustcd), BENCH_EXTRA_FLAGS,
//! ETCD_BIN, RUSTCD_BIN (default: the workspace's rustcd binary beside the bench executable).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use rand::{Rng, SeedableRng};
use testkit::cluster::Cluster;
use testkit::{Kind, Server};

/// What is benchmarked: one member, or a cluster.
enum Target {
    Single(Server),
    Cluster(Cluster),
}

impl Target {
    fn start(kind: Kind, members: usize, extra: &[&str]) -> Result<Target, String> {
        if members == 1 {
            return Server::try_start(kind, extra).map(Target::Single);
        }
        let c = Cluster::start_kind(kind, members, extra);
        c.leader(Duration::from_secs(30))
            .ok_or_else(|| format!("{} elected no leader", kind.name()))?;
        Ok(Target::Cluster(c))
    }

    /// Client endpoints, the leader's first (single-client workloads use only the first, so
    /// both servers are measured through their leader).
    fn endpoints(&self) -> Vec<String> {
        match self {
            Target::Single(s) => vec![s.endpoint()],
            Target::Cluster(c) => {
                let mut eps: Vec<String> = c.members.iter().map(|m| m.client.clone()).collect();
                if let Some(leader) = c.leader(Duration::from_secs(10)) {
                    eps.swap(0, leader);
                }
                eps
            }
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        match self {
            Target::Single(s) => s.rss_kib(),
            Target::Cluster(c) => c.rss_kib(),
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    members: usize,
    ops: u64,
    clients: usize,
    conns: usize,
    single_ops: u64,
    keys: u64,
    value_size: usize,
    time_limit: Duration,
    servers: Vec<Kind>,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Config {
    fn from_env() -> Config {
        let servers = std::env::var("BENCH_SERVERS").unwrap_or_else(|_| "etcd,rustcd".into());
        Config {
            members: env_num("BENCH_MEMBERS", 1).max(1),
            ops: env_num("BENCH_OPS", 50_000),
            clients: env_num("BENCH_CLIENTS", 100).max(1),
            conns: env_num("BENCH_CONNS", 10).max(1),
            single_ops: env_num("BENCH_SINGLE_OPS", 5_000),
            keys: env_num("BENCH_KEYS", 10_000).max(1),
            value_size: env_num("BENCH_VALUE_SIZE", 256),
            time_limit: Duration::from_secs(env_num("BENCH_TIME_LIMIT_SECS", 60)),
            servers: servers
                .split(',')
                .filter_map(|s| match s.trim() {
                    "etcd" => Some(Kind::Etcd),
                    "rustcd" => Some(Kind::Rustcd),
                    _ => None,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    Put,
    RangeLinearizable,
    RangeSerializable,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    first_error: Option<String>,
}

impl Stats {
    fn ops_per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.ops as f64 / self.elapsed.as_secs_f64()
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn key(i: u64) -> String {
    format!("bench/key-{i:06}")
}

async fn connect(ep: &str) -> anyhow::Result<Client> {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(5));
    Ok(Client::connect([ep], Some(opts)).await?)
}

/// Runs `total` ops of `w` spread over `clients` tasks sharing `conns`
/// connections, bounded by `time_limit`.
async fn run_workload(
    eps: &[String],
    w: Workload,
    total: u64,
    clients: usize,
    conns: usize,
    cfg: &Config,
) -> anyhow::Result<Stats> {
    let mut connections = Vec::new();
    for i in 0..conns.min(clients) {
        connections.push(connect(&eps[i % eps.len()]).await?);
    }
    let remaining = Arc::new(AtomicU64::new(total));
    let deadline = Instant::now() + cfg.time_limit;
    let value = Arc::new(vec![b'v'; cfg.value_size]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = connections[c % connections.len()].clone();
        let remaining = remaining.clone();
        let value = value.clone();
        let keys = cfg.keys;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut rng = rand::rngs::SmallRng::from_os_rng();
            loop {
                if Instant::now() > deadline {
                    break;
                }
                // claim one op
                if remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let k = key(rng.random_range(0..keys));
                let t = Instant::now();
                let res = match w {
                    Workload::Put => client.put(k, value.as_slice(), None).await.map(|_| ()),
                    Workload::RangeLinearizable => client.get(k, None).await.map(|_| ()),
                    Workload::RangeSerializable => client
                        .get(k, Some(GetOptions::new().with_serializable()))
                        .await
                        .map(|_| ()),
                };
                match res {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(e.to_string());
                        }
                        if errors > 100 {
                            break;
                        }
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut all = Vec::with_capacity(total as usize);
    let mut stats = Stats::default();
    for t in tasks {
        let (lat, errors, first_error) = t.await?;
        all.extend(lat);
        stats.errors += errors;
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
    }
    stats.elapsed = start.elapsed();
    all.sort_unstable();
    stats.ops = all.len() as u64;
    stats.p50 = percentile(&all, 0.50);
    stats.p99 = percentile(&all, 0.99);
    Ok(stats)
}

struct ServerResult {
    rows: Vec<(String, Result<Stats, String>)>,
    max_rss_kib: Option<u64>,
    error: Option<String>,
}

fn workloads(cfg: &Config) -> Vec<(String, Workload, u64, usize, usize)> {
    vec![
        (
            format!("put {}c", cfg.clients),
            Workload::Put,
            cfg.ops,
            cfg.clients,
            cfg.conns,
        ),
        (
            format!("range lin {}c", cfg.clients),
            Workload::RangeLinearizable,
            cfg.ops,
            cfg.clients,
            cfg.conns,
        ),
        (
            format!("range ser {}c", cfg.clients),
            Workload::RangeSerializable,
            cfg.ops,
            cfg.clients,
            cfg.conns,
        ),
        ("put 1c".to_string(), Workload::Put, cfg.single_ops, 1, 1),
    ]
}

fn bench_server(rt: &tokio::runtime::Runtime, kind: Kind, cfg: &Config) -> ServerResult {
    let names: Vec<String> = workloads(cfg).into_iter().map(|w| w.0).collect();
    eprintln!("== {} ({})", kind.name(), kind.binary().display());
    // BENCH_EXTRA_FLAGS: extra server flags for both servers (e.g. --unsafe-no-fsync for experiments).
    let extra = std::env::var("BENCH_EXTRA_FLAGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let server = match Target::start(kind, cfg.members, &extra) {
        Ok(s) => s,
        Err(e) => {
            let first = e
                .lines()
                .next()
                .unwrap_or("")
                .replace(&kind.binary().display().to_string(), kind.name());
            eprintln!("   {} failed to start: {e}", kind.name());
            return ServerResult {
                rows: names.into_iter().map(|n| (n, Err(first.clone()))).collect(),
                max_rss_kib: None,
                error: Some(first),
            };
        }
    };
    let eps = server.endpoints();
    let mut max_rss = server.rss_kib();
    let mut rows = Vec::new();
    // prefill every key once (not measured) so ranges hit existing keys
    let prefill = rt.block_on(async {
        let mut c = connect(&eps[0]).await?;
        let value = vec![b'p'; cfg.value_size];
        let mut handles = Vec::new();
        let per = cfg.keys.div_ceil(cfg.clients as u64);
        for t in 0..cfg.clients as u64 {
            let mut c = c.clone();
            let value = value.clone();
            let keys = cfg.keys;
            handles.push(tokio::spawn(async move {
                for i in (t * per)..((t + 1) * per).min(keys) {
                    c.put(key(i), value.clone(), None).await?;
                }
                Ok::<(), etcd_client::Error>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        c.status().await?;
        anyhow::Ok(())
    });
    if let Err(e) = prefill {
        eprintln!("   prefill failed: {e:#}");
    }
    for (name, w, total, clients, conns) in workloads(cfg) {
        let r = rt
            .block_on(run_workload(&eps, w, total, clients, conns, cfg))
            .map_err(|e| format!("{e:#}"));
        max_rss = max_rss.max(server.rss_kib());
        match &r {
            Ok(s) => eprintln!(
                "   {name:<16} {:>9.0} ops/s  p50 {:>8.2?}  p99 {:>8.2?}  ops {} errors {}{}",
                s.ops_per_sec(),
                s.p50,
                s.p99,
                s.ops,
                s.errors,
                s.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ),
            Err(e) => eprintln!("   {name:<16} failed: {e}"),
        }
        rows.push((name, r));
    }
    ServerResult {
        rows,
        max_rss_kib: max_rss,
        error: None,
    }
}

fn cell(r: Option<&Result<Stats, String>>) -> String {
    match r {
        None => "-".into(),
        Some(Ok(s)) => {
            let err = if s.errors > 0 {
                format!(" ({} err)", s.errors)
            } else {
                String::new()
            };
            format!(
                "{:>8.0}/s p50 {:>6.2}ms p99 {:>6.2}ms{err}",
                s.ops_per_sec(),
                s.p50.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3
            )
        }
        Some(Err(e)) => {
            let mut e = e.replace('\n', " ");
            e.truncate(40);
            format!("ERROR: {e}")
        }
    }
}

fn main() {
    let cfg = Config::from_env();
    if !Kind::Etcd.binary().is_file() && cfg.servers.contains(&Kind::Etcd) {
        eprintln!(
            "SKIP: etcd binary not found ({}); set ETCD_BIN",
            Kind::Etcd.binary().display()
        );
    }
    eprintln!("config: {cfg:?}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = Vec::new();
    for &kind in &cfg.servers {
        results.push((kind, bench_server(&rt, kind, &cfg)));
    }
    let names: Vec<String> = workloads(&cfg).into_iter().map(|w| w.0).collect();
    let width = 46;
    let mut header = format!("{:<16}", "workload");
    for (kind, _) in &results {
        header.push_str(&format!(" | {:<width$}", kind.name()));
    }
    if results.len() == 2 {
        header.push_str(" | rustcd/etcd ops/s");
    }
    println!();
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for name in &names {
        let mut line = format!("{name:<16}");
        let mut rates = Vec::new();
        for (_, r) in &results {
            let row = r.rows.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            line.push_str(&format!(" | {:<width$}", cell(row)));
            rates.push(match row {
                Some(Ok(s)) if s.ops > 0 => Some(s.ops_per_sec()),
                _ => None,
            });
        }
        if rates.len() == 2 {
            match (rates[0], rates[1]) {
                (Some(a), Some(b)) => line.push_str(&format!(" | {:.2}x", b / a)),
                _ => line.push_str(" | n/a"),
            }
        }
        println!("{line}");
    }
    let mut line = format!("{:<16}", "max RSS");
    let mut rss = Vec::new();
    for (_, r) in &results {
        let text = match (&r.error, r.max_rss_kib) {
            (Some(e), _) => {
                let mut e = e.clone();
                e.truncate(40);
                format!("ERROR: {e}")
            }
            (None, Some(kib)) => format!("{:.1} MiB", kib as f64 / 1024.0),
            (None, None) => "n/a".into(),
        };
        rss.push(r.max_rss_kib.filter(|_| r.error.is_none()));
        line.push_str(&format!(" | {text:<width$}"));
    }
    if rss.len() == 2 {
        match (rss[0], rss[1]) {
            (Some(a), Some(b)) if a > 0 => line.push_str(&format!(" | {:.2}x (RSS)", b as f64 / a as f64)),
            _ => line.push_str(" | n/a"),
        }
    }
    println!("{line}");
}
