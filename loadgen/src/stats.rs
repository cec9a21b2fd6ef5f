//! Counters shared by every simulated worker, and the JSON report made from them.

use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::Notify;

/// Error messages kept verbatim in the report (the rest are only counted).
const SAMPLES: usize = 20;

#[derive(Debug)]
pub struct Stats {
    start: Instant,
    target: usize,
    attached: AtomicUsize,
    /// Seconds from the start to each worker's first attach.
    attach_times: Mutex<Vec<f64>>,
    /// Set when every worker has attached once.
    pub all_attached: Notify,
    pub reconnects: AtomicU64,
    pub commands_started: AtomicU64,
    pub commands_completed: AtomicU64,
    pub interrupts: AtomicU64,
    pub stdout_bytes: AtomicU64,
    pub builds_forced: AtomicU64,
    pub builds_completed: AtomicU64,
    /// Drivers that have finished forcing builds.
    pub drivers_done: AtomicUsize,
    /// Milliseconds from a force request to its build's first command.
    latencies: Mutex<Vec<f64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    pub fn new(target: usize) -> Stats {
        Stats {
            start: Instant::now(),
            target,
            attached: AtomicUsize::new(0),
            attach_times: Mutex::new(Vec::with_capacity(target)),
            all_attached: Notify::new(),
            reconnects: AtomicU64::new(0),
            commands_started: AtomicU64::new(0),
            commands_completed: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
            stdout_bytes: AtomicU64::new(0),
            builds_forced: AtomicU64::new(0),
            builds_completed: AtomicU64::new(0),
            drivers_done: AtomicUsize::new(0),
            latencies: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(Vec::new()),
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A worker attached for the first time.
    pub fn first_attach(&self) {
        let t = self.elapsed();
        guard(&self.attach_times).push(t);
        if self.attached.fetch_add(1, Ordering::SeqCst) + 1 == self.target {
            self.all_attached.notify_waiters();
            self.all_attached.notify_one();
        }
    }

    pub fn attached(&self) -> usize {
        self.attached.load(Ordering::SeqCst)
    }

    pub fn latency(&self, ms: f64) {
        guard(&self.latencies).push(ms);
    }

    /// Counts an error under `kind`; keeps the first few messages in full.
    pub fn error(&self, kind: &str, detail: impl std::fmt::Display) {
        *guard(&self.errors).entry(kind.to_owned()).or_default() += 1;
        let mut s = guard(&self.samples);
        if s.len() < SAMPLES {
            s.push(format!("{kind}: {detail}"));
        }
    }

    pub fn report(&self) -> Json {
        let mut attach = guard(&self.attach_times).clone();
        attach.sort_by(f64::total_cmp);
        let mut lat = guard(&self.latencies).clone();
        lat.sort_by(f64::total_cmp);
        let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
        json!({
            "connections": self.target,
            "attached": self.attached(),
            "all_attached_s": (attach.len() == self.target).then(|| attach.last().copied()).flatten(),
            "attach_s": {"p50": quantile(&attach, 0.5), "p99": quantile(&attach, 0.99), "max": attach.last()},
            "reconnects": n(&self.reconnects),
            "commands_started": n(&self.commands_started),
            "commands_completed": n(&self.commands_completed),
            "interrupts": n(&self.interrupts),
            "stdout_bytes": n(&self.stdout_bytes),
            "builds_forced": n(&self.builds_forced),
            "builds_completed": n(&self.builds_completed),
            "latency_ms": {"count": lat.len(), "p50": quantile(&lat, 0.5), "p99": quantile(&lat, 0.99), "max": lat.last()},
            "errors": *guard(&self.errors),
            "error_samples": *guard(&self.samples),
            "elapsed_s": self.elapsed(),
        })
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
