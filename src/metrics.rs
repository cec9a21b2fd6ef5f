//! The master's metrics, served at `/metrics` in the Prometheus text format. Events
//! are counted where they happen through [`metrics`]; what is a state rather than an
//! event (attached workers, latent instances) is set at scrape time from the store
//! and the coordinator, so no other module keeps a gauge in step.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

mod latent;
mod retention;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Builder {
    builder: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuilderResult {
    builder: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolPhase {
    pool: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReporterOutcome {
    reporter: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

type Histograms = Family<Builder, Histogram, fn() -> Histogram>;

/// Seconds, from 0.1 s to about 3.6 hours.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 18))
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    builds_started: Family<Builder, Counter>,
    builds_finished: Family<BuilderResult, Counter>,
    build_duration: Histograms,
    queue_wait: Histograms,
    steps: Family<ResultLabel, Counter>,
    log_bytes: Counter,
    connections: Counter,
    connections_open: Gauge,
    closes: Family<Reason, Counter>,
    login_failures: Counter,
    violations: Counter,
    workers_attached: Family<Version, Gauge>,
    latent_instances: Family<PoolPhase, Gauge>,
    latent_waiting: Family<Pool, Gauge>,
    reports: Family<ReporterOutcome, Counter>,
    /// Latent instances and cloud calls.
    pub latent: latent::LatentMetrics,
    /// Log compression and expiry.
    pub retention: retention::RetentionMetrics,
    /// When each running build started, for its duration.
    running: Mutex<HashMap<i64, Instant>>,
    /// One scrape at a time sets the scrape-time gauges and encodes.
    scrape: Mutex<()>,
}

/// Who closed a PB connection, as the `reason` label has it, and whether the peer
/// broke the protocol.
pub fn close_kind(reason: &pbwire::broker::CloseReason) -> (&'static str, bool) {
    use pbwire::broker::{CloseReason, Limit};
    match reason {
        CloseReason::Violation(_) => ("violation", true),
        CloseReason::Limit(Limit::Violations(_)) => ("limit", true),
        CloseReason::Limit(_) => ("limit", false),
        CloseReason::Deadline(_) => ("deadline", false),
        CloseReason::PeerClosed => ("peer_closed", false),
        _ => ("local", false),
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("pbmaster");
        let latent = latent::LatentMetrics::new(&mut r);
        let retention = retention::RetentionMetrics::new(&mut r);
        let m = Metrics {
            registry: Registry::default(),
            builds_started: Family::default(),
            builds_finished: Family::default(),
            build_duration: Family::new_with_constructor(seconds),
            queue_wait: Family::new_with_constructor(seconds),
            steps: Family::default(),
            log_bytes: Counter::default(),
            connections: Counter::default(),
            connections_open: Gauge::default(),
            closes: Family::default(),
            login_failures: Counter::default(),
            violations: Counter::default(),
            workers_attached: Family::default(),
            latent_instances: Family::default(),
            latent_waiting: Family::default(),
            reports: Family::default(),
            latent,
            retention,
            running: Mutex::new(HashMap::new()),
            scrape: Mutex::new(()),
        };
        r.register(
            "builds_started",
            "Builds started, by builder",
            m.builds_started.clone(),
        );
        r.register(
            "builds_finished",
            "Builds finished, by builder and result",
            m.builds_finished.clone(),
        );
        r.register(
            "build_duration_seconds",
            "Time from a build's start to its end, by builder",
            m.build_duration.clone(),
        );
        r.register(
            "build_queue_wait_seconds",
            "Time from a build request's submission to its build's start, by builder",
            m.queue_wait.clone(),
        );
        r.register(
            "steps_finished",
            "Steps finished, by result",
            m.steps.clone(),
        );
        r.register(
            "log_bytes",
            "Log bytes received from workers (before any log limit)",
            m.log_bytes.clone(),
        );
        r.register(
            "pb_connections",
            "PB connections accepted",
            m.connections.clone(),
        );
        r.register(
            "pb_connections_open",
            "PB connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "pb_connections_closed",
            "PB connections closed, by who caused it: peer_closed, violation, limit, deadline, local, io",
            m.closes.clone(),
        );
        r.register(
            "pb_login_failures",
            "PB logins refused: an unknown worker or a wrong password",
            m.login_failures.clone(),
        );
        r.register(
            "pb_protocol_violations",
            "PB connections closed because the peer broke the protocol or its violation limit",
            m.violations.clone(),
        );
        r.register(
            "workers_attached",
            "Workers attached now, by the version they report",
            m.workers_attached.clone(),
        );
        r.register(
            "latent_instances",
            "Live latent instances, by pool and phase",
            m.latent_instances.clone(),
        );
        r.register(
            "latent_requests_waiting",
            "Build requests waiting for a latent pool",
            m.latent_waiting.clone(),
        );
        r.register(
            "reports",
            "Reporter deliveries, by reporter and outcome: delivered, retried, given_up",
            m.reports.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// A report was delivered, will be tried again, or was given up.
    pub fn report(&self, reporter: &str, outcome: &str) {
        self.reports
            .get_or_create(&ReporterOutcome {
                reporter: reporter.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A build started, `waited` seconds after its request was submitted.
    pub fn build_started(&self, id: i64, builder: &str, waited: f64) {
        let b = Builder {
            builder: builder.to_owned(),
        };
        self.builds_started.get_or_create(&b).inc();
        self.queue_wait.get_or_create(&b).observe(waited.max(0.0));
        self.lock_running().insert(id, Instant::now());
    }

    pub fn build_finished(&self, id: i64, builder: &str, result: &str) {
        self.builds_finished
            .get_or_create(&BuilderResult {
                builder: builder.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        if let Some(at) = self.lock_running().remove(&id) {
            self.build_duration
                .get_or_create(&Builder {
                    builder: builder.to_owned(),
                })
                .observe(at.elapsed().as_secs_f64());
        }
    }

    pub fn step_finished(&self, result: &str) {
        self.steps
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn log_bytes(&self, n: usize) {
        self.log_bytes.inc_by(n as u64);
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
        self.connections_open.inc();
    }

    /// A connection's task ended (after a failed TLS handshake too).
    pub fn connection_ended(&self) {
        self.connections_open.dec();
    }

    /// A connection closed; `reason` is who caused it (see the metric's help).
    pub fn connection_closed(&self, reason: &str, violation: bool) {
        self.closes
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
        if violation {
            self.violations.inc();
        }
    }

    pub fn login_failed(&self) {
        self.login_failures.inc();
    }

    /// A cloud API call of `pool` answered (`throttled`: with a throttling error).
    #[cfg_attr(not(feature = "ec2"), allow(dead_code))]
    pub fn cloud_call(&self, pool: &str, action: &str, throttled: bool) {
        self.latent.call(pool, action, throttled);
    }

    /// The text exposition, with the scrape-time gauges set from `attached` (the
    /// version of each attached worker) and `pools` (what `Msg::Pools` answers).
    pub fn encode(&self, attached: &[Option<String>], pools: &serde_json::Value) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.workers_attached.clear();
        for version in attached {
            let version = version.clone().unwrap_or_else(|| "unknown".into());
            self.workers_attached
                .get_or_create(&Version { version })
                .inc();
        }
        self.latent_instances.clear();
        self.latent_waiting.clear();
        for pool in pools.as_array().into_iter().flatten() {
            let name = pool["name"].as_str().unwrap_or_default().to_owned();
            for (phase, n) in pool["phases"].as_object().into_iter().flatten() {
                let labels = PoolPhase {
                    pool: name.clone(),
                    phase: phase.clone(),
                };
                self.latent_instances
                    .get_or_create(&labels)
                    .set(n.as_i64().unwrap_or(0));
            }
            self.latent_waiting
                .get_or_create(&Pool { pool: name })
                .set(pool["waiting"].as_i64().unwrap_or(0));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_scrape_time_gauges_are_encoded() {
        let m = Metrics::new();
        m.build_started(1, "b<1>", 2.0);
        m.build_finished(1, "b<1>", "success");
        m.step_finished("failure");
        m.log_bytes(10);
        m.connection_opened();
        m.connection_closed("violation", true);
        m.connection_ended();
        m.login_failed();
        m.latent.ready("c", 3.0);
        m.latent.phase_left("c", "booting", 2.0);
        m.latent.phase_left("c", "booting", 4.0);
        m.latent.failed("c", "InsufficientInstanceCapacity");
        m.latent.ended("c", 1.5);
        m.latent.ended("c", 1.0);
        m.cloud_call("c", "RunInstances", true);
        m.cloud_call("c", "RunInstances", false);
        let pools = serde_json::json!([{"name": "p", "phases": {"running": 2}, "waiting": 1}]);
        let text = m.encode(&[Some("4.3.0".into()), None], &pools);
        for line in [
            "pbmaster_builds_started_total{builder=\"b<1>\"} 1",
            "pbmaster_builds_finished_total{builder=\"b<1>\",result=\"success\"} 1",
            "pbmaster_build_queue_wait_seconds_count{builder=\"b<1>\"} 1",
            "pbmaster_build_duration_seconds_count{builder=\"b<1>\"} 1",
            "pbmaster_steps_finished_total{result=\"failure\"} 1",
            "pbmaster_log_bytes_total 10",
            "pbmaster_latent_phase_seconds_count{pool=\"c\",phase=\"booting\"} 2",
            "pbmaster_latent_phase_seconds_sum{pool=\"c\",phase=\"booting\"} 6.0",
            "pbmaster_pb_connections_total 1",
            "pbmaster_pb_connections_open 0",
            "pbmaster_pb_protocol_violations_total 1",
            "pbmaster_pb_login_failures_total 1",
            "pbmaster_workers_attached{version=\"4.3.0\"} 1",
            "pbmaster_workers_attached{version=\"unknown\"} 1",
            "pbmaster_latent_instances{pool=\"p\",phase=\"running\"} 2",
            "pbmaster_latent_requests_waiting{pool=\"p\"} 1",
            "pbmaster_latent_time_to_ready_seconds_count{pool=\"c\"} 1",
            "pbmaster_latent_failures_total{pool=\"c\",reason=\"InsufficientInstanceCapacity\"} 1",
            "pbmaster_latent_instance_seconds_total{pool=\"c\"} 2.5",
            "pbmaster_cloud_calls_total{pool=\"c\",action=\"RunInstances\"} 2",
            "pbmaster_cloud_throttles_total{pool=\"c\",action=\"RunInstances\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // A pool that is gone leaves no stale gauge.
        let text = m.encode(&[], &serde_json::json!([]));
        assert!(!text.contains("pool=\"p\""), "{text}");
    }
}
