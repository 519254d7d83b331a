//! The operator's Prometheus metrics (served on `/metrics` by the binary).

use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Reconcile counters and timings.
#[derive(Clone)]
pub struct OperatorMetrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    duration: Histogram,
    errors: IntCounterVec,
    steps: IntCounterVec,
    /// 1 while this replica holds the leader lease (or runs without leader election).
    pub leader: IntGauge,
}

impl OperatorMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<OperatorMetrics, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "rustcd_operator_reconciliations_total",
                "Reconciles of EtcdClusters by result (ok, error).",
            ),
            &["result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "rustcd_operator_reconcile_duration_seconds",
                "Time one reconcile took (observation, one step, status write).",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "rustcd_operator_reconcile_errors_total",
                "Failed reconciles by where they failed (kube, etcd, no_endpoint, timeout, invalid_object, serialize).",
            ),
            &["error"],
        )?;
        let steps = IntCounterVec::new(
            Opts::new(
                "rustcd_operator_membership_steps_total",
                "InitialCluster steps executed, by the step's reason (AddingLearner, PromotingLearner, ...).",
            ),
            &["step"],
        )?;
        let leader = IntGauge::with_opts(Opts::new(
            "rustcd_operator_is_leader",
            "1 while this replica is the active operator.",
        ))?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(steps.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(OperatorMetrics {
            registry,
            reconciliations,
            duration,
            errors,
            steps,
            leader,
        })
    }

    /// Counts one reconcile that took `took`; `error` is the failure's label.
    pub fn reconciled(&self, took: Duration, error: Option<&str>) {
        self.duration.observe(took.as_secs_f64());
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciliations.with_label_values(&[result]).inc();
        if let Some(label) = error {
            self.errors.with_label_values(&[label]).inc();
        }
    }

    /// Counts one executed membership step.
    pub fn step(&self, reason: &str) {
        self.steps.with_label_values(&[reason]).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_in_the_exposition() {
        let m = OperatorMetrics::new().unwrap();
        m.reconciled(Duration::from_millis(20), None);
        m.reconciled(Duration::from_millis(20), Some("etcd"));
        m.step("AddingLearner");
        m.leader.set(1);
        let text = m.encode();
        for line in [
            "rustcd_operator_reconciliations_total{result=\"ok\"} 1",
            "rustcd_operator_reconciliations_total{result=\"error\"} 1",
            "rustcd_operator_reconcile_errors_total{error=\"etcd\"} 1",
            "rustcd_operator_membership_steps_total{step=\"AddingLearner\"} 1",
            "rustcd_operator_reconcile_duration_seconds_count 2",
            "rustcd_operator_is_leader 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
