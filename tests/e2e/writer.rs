//! A client writing while the cluster changes: `etcdctl put <PREFIX><n> <n>` through the client
//! Service, one after another, recording which puts were acknowledged. A failed put (a port-forward to
//! a pod going away, a leader change) is counted and the next one goes on; only acknowledged puts must
//! survive.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::etcd::etcdctl;

/// Where the writer's keys live.
pub const PREFIX: &str = "e2e/w/";

/// What the writer did.
#[derive(Debug, Default)]
pub struct Written {
    /// Keys whose put returned OK.
    pub acknowledged: Vec<String>,
    /// Puts that returned an error.
    pub failed: usize,
    /// The longest stretch from one failed put's start to the next acknowledged one.
    pub longest_outage: Duration,
}

impl Written {
    /// The acknowledged keys missing from `keys_only` (the output of `etcdctl get --prefix --keys-only`).
    pub fn lost(&self, keys_only: &str) -> Vec<String> {
        let stored: BTreeSet<&str> = keys_only.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        self.acknowledged
            .iter()
            .filter(|k| !stored.contains(k.as_str()))
            .cloned()
            .collect()
    }
}

/// The writing thread; [`Writer::stop`] ends it and returns what it did.
pub struct Writer {
    stop: Arc<AtomicBool>,
    failures: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<JoinHandle<Written>>,
}

impl Writer {
    pub fn start(etcdctl_bin: &str, namespace: &str, service: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (bin, ns, svc, flag, failed) = (
            etcdctl_bin.to_string(),
            namespace.to_string(),
            service.to_string(),
            stop.clone(),
            failures.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut written = Written::default();
            let mut outage_since: Option<Instant> = None;
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let key = format!("{PREFIX}{n:06}");
                let started = Instant::now();
                match etcdctl(&bin, &ns, &svc, &["put", &key, &n.to_string()]) {
                    Ok(_) => {
                        if let Some(since) = outage_since.take() {
                            written.longest_outage = written.longest_outage.max(since.elapsed());
                        }
                        written.acknowledged.push(key);
                    }
                    Err(_) => {
                        written.failed += 1;
                        failed.fetch_add(1, Ordering::Relaxed);
                        outage_since.get_or_insert(started);
                    }
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            written
        });
        Writer {
            stop,
            failures,
            thread: Some(thread),
        }
    }

    /// Puts that failed so far.
    pub fn failed_so_far(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }

    /// Stops the writer after its current put.
    pub fn stop(mut self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the writer thread panicked"))
            .unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_keys_are_the_acknowledged_ones_not_stored() {
        let written = Written {
            acknowledged: vec!["e2e/w/000000".into(), "e2e/w/000002".into()],
            failed: 1,
            longest_outage: Duration::ZERO,
        };
        assert!(written
            .lost("e2e/w/000000\n\ne2e/w/000001\ne2e/w/000002\n\n")
            .is_empty());
        assert_eq!(written.lost("e2e/w/000000\n\n"), ["e2e/w/000002"]);
    }
}
