//! Runs one build on one attached worker: the ping, `startBuild`, then each step as a
//! remote command whose updates are stored as they arrive.

use super::{shell_args, BuildResult};
use crate::config::{BuilderConfig, StepConfig};
use crate::conn::CallError;
use crate::store::{BuildRow, Channel, Store};
use crate::worker::Attached;
use pbwire::jelly::{Failure, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// Everything a build needs.
#[derive(Debug)]
pub struct BuildJob {
    pub store: Store,
    pub build: BuildRow,
    pub builder: Arc<BuilderConfig>,
    pub worker: Attached,
    /// The worker's object for this builder.
    pub wfb: i64,
    /// `Some(reason)` once someone asked to stop the build.
    pub stop: watch::Receiver<Option<String>>,
    /// Command ids are unique across the master, as buildbot's are.
    pub command_ids: Arc<AtomicU64>,
    /// Deadline of the short calls (ping, startBuild).
    pub rpc_timeout: Duration,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub result: BuildResult,
    pub reason: Option<String>,
}

/// How one step ended.
#[derive(Debug)]
struct StepOutcome {
    result: BuildResult,
    rc: Option<i64>,
    reason: Option<String>,
}

/// How long a worker gets to end a command after it was told to interrupt it; its
/// own kill escalation takes 5 s.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

/// Runs the build and records it; the caller finishes it in the store.
pub async fn run_build(mut job: BuildJob) -> BuildOutcome {
    let conn = job.worker.conn.clone();
    if let Err(e) = conn.print(job.worker.mind, "ping", job.rpc_timeout).await {
        return BuildOutcome {
            result: BuildResult::Retry,
            reason: Some(format!("worker did not answer the ping: {e}")),
        };
    }
    if let Err(e) = conn
        .call_timeout(job.rpc_timeout, job.wfb, "startBuild", vec![], vec![])
        .await
    {
        return BuildOutcome {
            result: BuildResult::Retry,
            reason: Some(format!("startBuild failed: {e}")),
        };
    }
    let mut result = BuildResult::Success;
    let mut reason = None;
    let builder = job.builder.clone();
    for (i, step) in builder.steps.iter().enumerate() {
        let number = i as i64 + 1;
        let name = step
            .name
            .clone()
            .unwrap_or_else(|| format!("step {number}"));
        let _ = job.store.start_step(job.build.id, number, &name);
        if let Some(why) = job.stop.borrow().clone() {
            let _ = job.store.finish_step(
                job.build.id,
                number,
                BuildResult::Cancelled,
                None,
                Some(&why),
            );
            return BuildOutcome {
                result: BuildResult::Cancelled,
                reason: Some(why),
            };
        }
        let outcome = run_shell(&mut job, step, number).await;
        let _ = job.store.finish_step(
            job.build.id,
            number,
            outcome.result,
            outcome.rc,
            outcome.reason.as_deref(),
        );
        info!(build = job.build.id, step = number, result = %outcome.result, "step finished");
        let contribution = match outcome.result {
            BuildResult::Failure if step.flunk_on_failure => BuildResult::Failure,
            BuildResult::Failure if step.warn_on_failure => BuildResult::Warnings,
            BuildResult::Failure => BuildResult::Success,
            other => other,
        };
        if contribution != BuildResult::Success && reason.is_none() {
            reason = Some(format!(
                "step {name:?}: {}",
                outcome.reason.as_deref().unwrap_or(outcome.result.name())
            ));
        }
        result = result.worst(contribution);
        if matches!(
            outcome.result,
            BuildResult::Exception | BuildResult::Retry | BuildResult::Cancelled
        ) {
            return BuildOutcome { result, reason };
        }
        if outcome.result == BuildResult::Failure && step.halt_on_failure {
            break;
        }
    }
    BuildOutcome { result, reason }
}

/// Runs one shell step as a remote command.
async fn run_shell(job: &mut BuildJob, step: &StepConfig, number: i64) -> StepOutcome {
    let lost = |why: String| StepOutcome {
        result: BuildResult::Retry,
        rc: None,
        reason: Some(why),
    };
    let conn = job.worker.conn.clone();
    let (tx, mut rx) = mpsc::channel(64);
    let cmd_ref = match conn.export(tx).await {
        Ok(id) => id,
        Err(e) => return lost(format!("worker lost: {e}")),
    };
    let command_id = job.command_ids.fetch_add(1, Ordering::Relaxed).to_string();
    let args = vec![
        Value::Remote(cmd_ref),
        Value::text(command_id.as_str()),
        Value::text("shell"),
        Value::Dict(shell_args(step, &job.worker.commands)),
    ];
    // Updates (even `complete`) may arrive before the answer to startCommand, so both
    // are awaited together.
    let start = conn.call(job.wfb, "startCommand", args, vec![]);
    tokio::pin!(start);
    let mut started = false;
    let mut rc = None;
    let mut failure_reason: Option<String> = None;
    let mut interrupted_at: Option<Instant> = None;
    let mut stop_open = true;
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    let outcome = loop {
        let grace_end = interrupted_at.map_or(far, |t| t + INTERRUPT_GRACE);
        tokio::select! {
            answer = &mut start, if !started => {
                started = true;
                match answer {
                    Ok(_) => {}
                    Err(CallError::Remote(f)) => break exception(&f),
                    Err(e) => break lost(format!("worker lost: {e}")),
                }
            }
            call = rx.recv() => {
                let Some(call) = call else { break lost("worker lost: connection closed".into()) };
                match call.method.as_str() {
                    "update" => record_updates(job, number, &call.args, &mut rc, &mut failure_reason),
                    "complete" => {
                        let failure = call.args.first().and_then(Failure::from_value);
                        break match (failure, interrupted_at) {
                            (_, Some(_)) => StepOutcome {
                                result: BuildResult::Cancelled,
                                rc,
                                reason: job.stop.borrow().clone(),
                            },
                            (Some(f), None) => exception(&f),
                            (None, None) => decode_rc(step, rc, failure_reason.take()),
                        };
                    }
                    other => warn!(build = job.build.id, "worker called {other:?} on a command; ignored"),
                }
            }
            changed = job.stop.changed(), if stop_open && interrupted_at.is_none() => {
                if changed.is_err() {
                    stop_open = false;
                    continue;
                }
                let Some(why) = job.stop.borrow().clone() else { continue };
                interrupted_at = Some(Instant::now());
                let (conn, wfb, id) = (conn.clone(), job.wfb, command_id.clone());
                tokio::spawn(async move {
                    let args = vec![Value::text(id.as_str()), Value::text(why.as_str())];
                    if let Err(e) = conn.call(wfb, "interruptCommand", args, vec![]).await {
                        warn!("interruptCommand failed: {e}");
                    }
                });
            }
            _ = tokio::time::sleep_until(grace_end), if interrupted_at.is_some() => {
                break StepOutcome {
                    result: BuildResult::Cancelled,
                    rc,
                    reason: Some("the worker did not end the interrupted command".into()),
                };
            }
        }
    };
    conn.unexport(cmd_ref).await;
    outcome
}

fn exception(f: &Failure) -> StepOutcome {
    StepOutcome {
        result: BuildResult::Exception,
        rc: None,
        reason: Some(format!("{}: {}", f.type_name, f.value)),
    }
}

/// The step's result from its exit code: `decode_rc` first, then 0 = success.
fn decode_rc(step: &StepConfig, rc: Option<i64>, failure_reason: Option<String>) -> StepOutcome {
    let Some(code) = rc else {
        return StepOutcome {
            result: BuildResult::Exception,
            rc,
            reason: Some("command ended without an exit code".into()),
        };
    };
    let result = step
        .decode_rc
        .get(&code.to_string())
        .and_then(|r| r.get_ref().parse().ok())
        .unwrap_or(if code == 0 {
            BuildResult::Success
        } else {
            BuildResult::Failure
        });
    let reason = failure_reason.or_else(|| (code != 0).then(|| format!("exit code {code}")));
    StepOutcome { result, rc, reason }
}

/// Stores the contents of one `update([[{key: value}, n], ...])` call.
fn record_updates(
    job: &BuildJob,
    step: i64,
    args: &[Value],
    rc: &mut Option<i64>,
    reason: &mut Option<String>,
) {
    let Some(updates) = args.first().and_then(Value::as_seq) else {
        return;
    };
    for update in updates {
        let Some(Value::Dict(pairs)) = update.as_seq().and_then(|u| u.first()) else {
            continue;
        };
        for (key, value) in pairs {
            let Some(key) = key.as_str_lossy() else {
                continue;
            };
            let bytes = value.as_bytes();
            let append = |log: &str, channel: Channel, data: &[u8]| {
                if let Err(e) = job.store.append_log(job.build.id, step, log, channel, data) {
                    warn!(build = job.build.id, "cannot store log: {e}");
                }
            };
            match (key.as_ref(), bytes) {
                ("stdout", Some(b)) => append("stdio", Channel::Stdout, b),
                ("stderr", Some(b)) => append("stdio", Channel::Stderr, b),
                ("header", Some(b)) => append("stdio", Channel::Header, b),
                ("rc", _) => *rc = value.as_i64(),
                ("failure_reason", Some(b)) => {
                    *reason = Some(String::from_utf8_lossy(b).into_owned())
                }
                ("log", _) => {
                    if let Some([name, text]) = value.as_seq() {
                        if let (Some(name), Some(text)) = (name.as_str_lossy(), text.as_bytes()) {
                            append(&name, Channel::Stdout, text);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
