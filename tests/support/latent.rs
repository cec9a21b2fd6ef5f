//! What the latent tests read from the master's API: instances, their phases, the
//! peak of live instances.

use super::master::MasterProcess;
use serde_json::Value;
use std::time::Duration;

/// The phases of an instance that ran two builds, then stopped after its idle time.
pub const TWO_BUILDS_THEN_IDLE_OUT: [&str; 13] = [
    "requested",
    "launching",
    "booting",
    "connecting",
    "attaching",
    "ready",
    "building",
    "idle",
    "building",
    "idle",
    "draining",
    "stopping",
    "stopped",
];

pub fn instances(master: &MasterProcess) -> Vec<Value> {
    master
        .get("/api/latent")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The phases an instance went through, in order.
pub fn phases(instance: &Value) -> Vec<String> {
    instance["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t[0].as_str().map(str::to_owned))
        .collect()
}

/// Waits until every instance has stopped or failed; returns them.
pub fn wait_all_ended(master: &MasterProcess, timeout: Duration) -> Vec<Value> {
    master
        .wait_for("/api/latent", timeout, "every instance to end", |v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|i| i["phase"] == "stopped" || i["phase"] == "failed")
            })
        })
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The most instances live at one moment, from their recorded transitions.
pub fn peak(instances: &[Value]) -> usize {
    let mut events: Vec<(f64, i32)> = Vec::new();
    for i in instances {
        let t = i["transitions"].as_array().cloned().unwrap_or_default();
        let start = t.first().and_then(|e| e[1].as_f64()).unwrap_or(0.0);
        let end = t.last().and_then(|e| e[1].as_f64()).unwrap_or(f64::MAX);
        events.push((start, 1));
        events.push((end, -1));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut live, mut most) = (0i32, 0i32);
    for (_, d) in events {
        live += d;
        most = most.max(live);
    }
    most as usize
}

/// Waits until every instance of `pool` has stopped or failed.
pub fn wait_pool_ended(master: &MasterProcess, pool: &str, timeout: Duration) {
    master.wait_for("/api/latent", timeout, "the pool's instances to end", |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .filter(|i| i["pool"] == pool)
                .all(|i| i["phase"] == "stopped" || i["phase"] == "failed")
        })
    });
}
