//! Forces builds back to back for one simulated worker and measures, for each, the
//! time from the force request to the build's first command arriving on the worker.

use crate::command::Event;
use crate::http;
use crate::stats::Stats;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long one build may take to start or finish before the driver gives up on it.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Until `until`: POST `url`, wait for the command to start (recording the latency)
/// and to complete, wait `pause`, repeat.
pub async fn drive(
    url: String,
    until: Instant,
    pause: Duration,
    mut events: mpsc::UnboundedReceiver<Event>,
    stats: &Stats,
) {
    while Instant::now() < until {
        // Drop anything left over from a previous build (e.g. a late completion).
        while events.try_recv().is_ok() {}
        let asked = Instant::now();
        match http::post(&url, "{}", BUILD_TIMEOUT).await {
            Ok((status, _)) if (200..300).contains(&status) => {}
            Ok((status, body)) => {
                stats.error("force refused", format!("{status} {body:.200}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                stats.error("force failed", e);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        stats.builds_forced.fetch_add(1, Ordering::Relaxed);
        let started = loop {
            match timeout(BUILD_TIMEOUT, events.recv()).await {
                Ok(Some(Event::Started(at))) => break Some(at),
                Ok(Some(Event::Completed)) => continue,
                Ok(None) | Err(_) => break None,
            }
        };
        let Some(at) = started else {
            stats.error("build did not start", &url);
            return;
        };
        stats.latency(at.saturating_duration_since(asked).as_secs_f64() * 1000.0);
        match timeout(BUILD_TIMEOUT, events.recv()).await {
            Ok(Some(Event::Completed)) => {
                stats.builds_completed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
            }
            _ => {
                stats.error("build did not complete", &url);
                return;
            }
        }
    }
}
