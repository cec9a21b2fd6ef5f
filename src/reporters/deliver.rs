//! The delivery task: takes due rows from the store's outbox, sends each (HTTP
//! through ureq, mail through SMTP, both on blocking threads so no async thread ever
//! waits on a service), and marks it delivered, retries it later with exponential
//! back-off and jitter, or gives it up (refused for good, or older than the
//! reporter's `max_age`). Builds never wait on it: the coordinator only adds rows.
//!
//! At least once: a row is marked delivered after the service said so, so a master
//! killed between the two sends it again after its restart. A clean stop lets
//! sends in flight finish first.

use super::request::{self, HttpRequest};
use crate::config::{ReporterConfig, ReporterKind};
use crate::secrets::Secrets;
use crate::store::{now, OutboxRow, Settled, Store};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Sends at once, across reporters: a slow service holds up at most this many.
const CONCURRENCY: usize = 8;
/// Rows taken per look at the outbox.
const BATCH: usize = 64;
/// The first retry's delay; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: f64 = 1.0;
const MAX_BACKOFF: f64 = 600.0;
/// The outbox is looked at at least this often (rows due later, a missed wake-up).
const IDLE_POLL: Duration = Duration::from_secs(30);
/// One HTTP request must end within this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of an error answer kept for the log.
const ERROR_EXCERPT: usize = 200;

/// Why a send failed, and whether to try again.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub permanent: bool,
    /// The service asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn permanent(message: String) -> Failure {
        Failure {
            message,
            permanent: true,
            retry_after: None,
        }
    }

    pub fn transient(message: String, retry_after: Option<Duration>) -> Failure {
        Failure {
            message,
            permanent: false,
            retry_after,
        }
    }
}

type Reporters = BTreeMap<String, ReporterConfig>;

fn by_name(reporters: &[ReporterConfig]) -> Arc<Reporters> {
    Arc::new(
        reporters
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect(),
    )
}

/// The outbox's sender.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
    /// By name; a reconfiguration replaces them ([`Outbox::set_reporters`]).
    reporters: Arc<RwLock<Arc<Reporters>>>,
    secrets: Arc<Secrets>,
    wake: Arc<Notify>,
    limit: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    agent: ureq::Agent,
}

impl Outbox {
    /// `wake` is notified by the coordinator when it has queued reports.
    pub fn new(
        store: Store,
        reporters: &[ReporterConfig],
        secrets: Arc<Secrets>,
        wake: Arc<Notify>,
    ) -> Outbox {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(request::USER_AGENT)
            .build()
            .into();
        Outbox {
            store,
            reporters: Arc::new(RwLock::new(by_name(reporters))),
            secrets,
            wake,
            limit: Arc::new(Semaphore::new(CONCURRENCY)),
            in_flight: Arc::default(),
            agent,
        }
    }

    /// Puts a new config's reporters in force: rows queued for a reporter removed
    /// meanwhile are given up when their turn comes.
    pub fn set_reporters(&self, reporters: &[ReporterConfig]) {
        *self.reporters.write().unwrap_or_else(|p| p.into_inner()) = by_name(reporters);
    }

    fn reporter(&self, name: &str) -> Option<ReporterConfig> {
        let all = self.reporters.read().unwrap_or_else(|p| p.into_inner());
        all.get(name).cloned()
    }

    /// Every secret a reporter names must exist: checked at start.
    pub fn check_secrets(reporters: &[ReporterConfig], secrets: &Secrets) -> Result<(), String> {
        for r in reporters {
            for name in r.secrets() {
                if secrets.get(name).is_none() {
                    return Err(format!(
                        "reporter {:?}: secret {name:?} is not defined",
                        r.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sends until `stop`, then waits for the sends in flight.
    pub async fn run(self, stop: CancellationToken) {
        let sends = TaskTracker::new();
        loop {
            let delay = match self.pass(&sends, &stop).await {
                Ok(delay) => delay,
                Err(e) => {
                    warn!("reporters: cannot read the outbox: {e}");
                    IDLE_POLL
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        sends.close();
        sends.wait().await;
    }

    /// Starts a send for each due row not in flight; how long until the next is due.
    async fn pass(
        &self,
        sends: &TaskTracker,
        stop: &CancellationToken,
    ) -> Result<Duration, crate::store::StoreError> {
        let t = now();
        let due = self.store.read(move |s| s.due_reports(t, BATCH)).await?;
        for row in due {
            if !self.lock().insert(row.id) {
                continue;
            }
            let permit = tokio::select! {
                p = self.limit.clone().acquire_owned() => p,
                _ = stop.cancelled() => {
                    self.lock().remove(&row.id);
                    break;
                }
            };
            let Ok(permit) = permit else { break };
            let me = self.clone();
            sends.spawn(async move {
                let id = row.id;
                me.deliver(row).await;
                drop(permit);
                me.lock().remove(&id);
                me.wake.notify_one();
            });
        }
        let next = self.store.read(|s| s.next_report_at()).await?;
        Ok(match next {
            Some(at) if at > now() => Duration::from_secs_f64(at - now()).min(IDLE_POLL),
            // Due already: in flight (their end wakes us) or held behind an earlier row.
            _ => IDLE_POLL,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One row: sent and settled, or scheduled again.
    async fn deliver(&self, row: OutboxRow) {
        let metrics = crate::metrics::metrics();
        // The row was read before it was marked in flight: a send that ended in
        // between may have settled it already. This read starts after that mark, so
        // it sees any such settlement.
        let id = row.id;
        match self.store.read(move |s| s.report_waiting(id)).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(report = id, "reporters: cannot read the outbox: {e}");
                return;
            }
        }
        let Some(r) = self.reporter(&row.reporter) else {
            warn!(reporter = %row.reporter, report = row.id, "reporters: no reporter of this name any more; report given up");
            metrics.report(&row.reporter, "given_up");
            self.settle(row.id, Settled::GivenUp, Some("no such reporter"))
                .await;
            return;
        };
        let age = now() - row.created_at;
        if age > r.max_age as f64 {
            warn!(reporter = %r.name, report = row.id, build = row.build_id, attempts = row.attempts,
                  "reporters: report given up after {age:.0} s (max_age {} s)", r.max_age);
            metrics.report(&r.name, "given_up");
            self.settle(row.id, Settled::GivenUp, Some("too old")).await;
            return;
        }
        let (agent, secrets, payload) = (
            self.agent.clone(),
            self.secrets.clone(),
            row.payload.clone(),
        );
        let reporter = r.clone();
        let sent = tokio::task::spawn_blocking(move || send(&agent, &reporter, &payload, &secrets))
            .await
            .unwrap_or_else(|e| {
                Err(Failure::transient(
                    format!("the send task failed: {e}"),
                    None,
                ))
            });
        match sent {
            Ok(()) => {
                debug!(reporter = %r.name, report = row.id, build = row.build_id, event = %row.event, "reporters: delivered");
                metrics.report(&r.name, "delivered");
                self.settle(row.id, Settled::Delivered, None).await;
            }
            Err(f) => {
                let message = self.secrets.redact_str(&f.message).into_owned();
                if f.permanent {
                    warn!(reporter = %r.name, report = row.id, build = row.build_id,
                          "reporters: refused, given up: {message}");
                    metrics.report(&r.name, "given_up");
                    self.settle(row.id, Settled::GivenUp, Some(&message)).await;
                    return;
                }
                let wait = backoff(row.attempts, jitter()).max(
                    f.retry_after
                        .map_or(0.0, |d| d.as_secs_f64().min(MAX_BACKOFF)),
                );
                info!(reporter = %r.name, report = row.id, build = row.build_id, attempts = row.attempts + 1,
                      "reporters: not delivered ({message}); again in {wait:.1} s");
                metrics.report(&r.name, "retried");
                let (id, at) = (row.id, now() + wait);
                let stored = self
                    .store
                    .off_thread(move |s| s.retry_report(id, at, &message))
                    .await;
                if let Err(e) = stored {
                    warn!(report = id, "reporters: cannot record a retry: {e}");
                }
            }
        }
    }

    async fn settle(&self, id: i64, how: Settled, error: Option<&str>) {
        let error = error.map(str::to_owned);
        let stored = self
            .store
            .off_thread(move |s| s.settle_report(id, how, error.as_deref()))
            .await;
        if let Err(e) = stored {
            warn!(
                report = id,
                "reporters: cannot record a report's end (it may be sent again): {e}"
            );
        }
    }
}

/// Seconds before the retry after `attempts` failures: doubling from
/// [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], scaled by `jitter` (0.5 to 1) so that
/// reports failing together do not come back together.
pub fn backoff(attempts: i64, jitter: f64) -> f64 {
    let exp = attempts.clamp(0, 30) as i32;
    (FIRST_BACKOFF * 2f64.powi(exp)).min(MAX_BACKOFF) * jitter.clamp(0.5, 1.0)
}

fn jitter() -> f64 {
    let r = getrandom::u32().unwrap_or(u32::MAX / 2);
    0.5 + f64::from(r) / f64::from(u32::MAX) / 2.0
}

/// Sends one report (blocking).
fn send(
    agent: &ureq::Agent,
    r: &ReporterConfig,
    payload: &serde_json::Value,
    secrets: &Secrets,
) -> Result<(), Failure> {
    let secret = |name: &Option<String>| -> Result<Option<String>, Failure> {
        match name {
            None => Ok(None),
            Some(n) => secrets
                .get(n)
                .map(|v| Some(v.to_owned()))
                .ok_or_else(|| Failure::permanent(format!("secret {n:?} is not defined"))),
        }
    };
    if let ReporterKind::Email(e) = &r.kind {
        let password = secret(&e.password)?;
        return super::email::send(r, e, payload, password.as_deref());
    }
    let token = secret(&r.token)?;
    let req = request::build(r, payload, token.as_deref()).map_err(Failure::permanent)?;
    post(agent, &req)
}

/// POSTs the request; 2xx is delivered, 408/429/5xx and transport errors are tried
/// again, any other answer is a refusal.
fn post(agent: &ureq::Agent, req: &HttpRequest) -> Result<(), Failure> {
    let mut call = agent.post(&req.url);
    for (k, v) in &req.headers {
        call = call.header(*k, v);
    }
    let body = req.body.to_string();
    let mut resp = match call.send(body.as_bytes()) {
        Ok(resp) => resp,
        Err(e) => return Err(Failure::transient(format!("POST {}: {e}", req.url), None)),
    };
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let excerpt = resp
        .body_mut()
        .with_config()
        .limit(ERROR_EXCERPT as u64)
        .read_to_string()
        .unwrap_or_default();
    let excerpt: String = excerpt.chars().filter(|c| !c.is_control()).collect();
    let message = format!("POST {}: HTTP {status} {excerpt}", req.url);
    if matches!(status, 408 | 429) || status >= 500 {
        Err(Failure::transient(message, retry_after))
    } else {
        Err(Failure::permanent(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_with_jitter() {
        assert_eq!(backoff(0, 1.0), 1.0);
        assert_eq!(backoff(3, 1.0), 8.0);
        assert_eq!(backoff(3, 0.5), 4.0);
        assert_eq!(backoff(40, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(-1, 2.0), 1.0);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j), "{j}");
        }
    }
}
