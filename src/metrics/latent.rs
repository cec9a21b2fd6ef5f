//! The latent pools' metrics: how long instances take to become ready, why launches
//! fail, what instance time each pool uses, and how the cloud's API answers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolReason {
    pool: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolPhase {
    pool: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolAction {
    pool: String,
    action: String,
}

/// Seconds, from 0.25 s to about 2.3 hours.
fn boot_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

#[derive(Debug)]
pub struct LatentMetrics {
    time_to_ready: Family<Pool, Histogram, fn() -> Histogram>,
    phase_seconds: Family<PoolPhase, Histogram, fn() -> Histogram>,
    failures: Family<PoolReason, Counter>,
    instance_seconds: Family<Pool, Counter<f64, AtomicU64>>,
    calls: Family<PoolAction, Counter>,
    throttles: Family<PoolAction, Counter>,
}

impl LatentMetrics {
    pub(super) fn new(r: &mut Registry) -> LatentMetrics {
        let m = LatentMetrics {
            time_to_ready: Family::new_with_constructor(boot_seconds),
            phase_seconds: Family::new_with_constructor(boot_seconds),
            failures: Family::default(),
            instance_seconds: Family::default(),
            calls: Family::default(),
            throttles: Family::default(),
        };
        r.register(
            "latent_time_to_ready_seconds",
            "Time from asking for a latent instance to its worker attached, by pool",
            m.time_to_ready.clone(),
        );
        r.register(
            "latent_phase_seconds",
            "Time latent instances spent in each phase on their way to ready (requested, launching, booting, connecting, attaching), by pool and phase",
            m.phase_seconds.clone(),
        );
        r.register(
            "latent_failures",
            "Latent instances that failed, by pool and reason: the cloud's error code for a refused launch, else the phase it failed in",
            m.failures.clone(),
        );
        r.register(
            "latent_instance_seconds",
            "Seconds latent instances existed (launch to end), by pool, counted when each ends",
            m.instance_seconds.clone(),
        );
        r.register(
            "cloud_calls",
            "Cloud API calls, retries included, by pool and action",
            m.calls.clone(),
        );
        r.register(
            "cloud_throttles",
            "Cloud API calls the cloud throttled, by pool and action",
            m.throttles.clone(),
        );
        m
    }

    pub fn ready(&self, pool: &str, seconds: f64) {
        self.time_to_ready
            .get_or_create(&Pool {
                pool: pool.to_owned(),
            })
            .observe(seconds.max(0.0));
    }

    /// An instance left `phase`, one of those before ready, after `seconds`.
    pub fn phase_left(&self, pool: &str, phase: &str, seconds: f64) {
        self.phase_seconds
            .get_or_create(&PoolPhase {
                pool: pool.to_owned(),
                phase: phase.to_owned(),
            })
            .observe(seconds.max(0.0));
    }

    pub fn failed(&self, pool: &str, reason: &str) {
        self.failures
            .get_or_create(&PoolReason {
                pool: pool.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn ended(&self, pool: &str, seconds: f64) {
        self.instance_seconds
            .get_or_create(&Pool {
                pool: pool.to_owned(),
            })
            .inc_by(seconds.max(0.0));
    }

    #[cfg_attr(not(feature = "ec2"), allow(dead_code))]
    pub fn call(&self, pool: &str, action: &str, throttled: bool) {
        let labels = PoolAction {
            pool: pool.to_owned(),
            action: action.to_owned(),
        };
        self.calls.get_or_create(&labels).inc();
        if throttled {
            self.throttles.get_or_create(&labels).inc();
        }
    }
}
