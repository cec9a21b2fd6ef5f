//! One remote command: `startCommand` on the worker's builder object, then its
//! `update` and `complete` calls until it ends, with logs stored as they arrive and
//! all recorded before it returns.

use super::build::BuildJob;
use super::logsink::LogSink;
use crate::conn::{CallError, ConnHandle};
use crate::events::Event;
use crate::store::{Channel, LogWriter};
use pbwire::jelly::{Failure, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

/// How long a worker gets to end a command after it was told to interrupt it; its
/// own kill escalation takes 5 s.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

/// Stdout kept in memory for a step that sets a property from it; the log keeps all.
pub const MAX_CAPTURE: usize = 1 << 20;

/// How a remote command ended.
#[derive(Debug, Default)]
pub struct CommandEnd {
    /// The exit code (`rc` update), if one came.
    pub rc: Option<i64>,
    /// The worker reported an exception (`complete(failure)` or an error answer).
    pub failure: Option<Failure>,
    /// The connection went away: the build should be retried.
    pub lost: Option<String>,
    /// Interrupted because the build was stopped.
    pub interrupted: bool,
    /// `failure_reason` (timeouts, too much output).
    pub failure_reason: Option<String>,
    /// stdout, when asked for (bounded by [`MAX_CAPTURE`]).
    pub stdout: Vec<u8>,
    /// The `stat` update: `os.stat()` numbers.
    pub stat: Option<Vec<i64>>,
    /// The `files` update (glob, listdir).
    pub files: Option<Vec<String>>,
    /// Logs cut at `log_max_size`.
    pub truncated: Vec<String>,
    /// The logs could not all be stored.
    pub store_failure: Option<String>,
}

/// Runs `name` with `args` on the builder's worker object; logs go to step `step`.
pub async fn run_command(
    job: &mut BuildJob,
    step: i64,
    name: &str,
    args: Vec<(Value, Value)>,
    capture: bool,
) -> CommandEnd {
    let mut end = CommandEnd::default();
    let conn = job.worker.conn.clone();
    let (tx, mut rx) = mpsc::channel(64);
    let cmd_ref = match conn.export(tx).await {
        Ok(id) => id,
        Err(e) => {
            end.lost = Some(format!("worker lost: {e}"));
            return end;
        }
    };
    let command_id = job.command_ids.fetch_add(1, Ordering::Relaxed).to_string();
    let call_args = vec![
        Value::Remote(cmd_ref),
        Value::text(command_id.as_str()),
        Value::text(name),
        Value::Dict(args),
    ];
    let start = match conn
        .send_call(job.wfb, "startCommand", call_args, vec![])
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            end.lost = Some(format!("worker lost: {e}"));
            conn.unexport(cmd_ref).await;
            return end;
        }
    };
    // The step's start commits while the worker starts the command; its output is
    // read only once the step is recorded.
    if let Some(recording) = job.recording.as_mut() {
        if !recording.wait(&job.events).await {
            interrupt(
                &conn,
                job.wfb,
                &command_id,
                "the master cannot record the build",
            );
            end.store_failure = Some("the master cannot record the build".into());
            conn.unexport(cmd_ref).await;
            return end;
        }
    }
    // Updates (even `complete`) may arrive before the answer to startCommand, so both
    // are awaited together.
    tokio::pin!(start);
    let mut logs = LogWriter::new(&job.store, job.build.id, step);
    let mut sink = LogSink::new(job.secrets.clone(), job.limits);
    let mut started = false;
    let mut interrupted_at: Option<Instant> = None;
    let mut stop_open = true;
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    loop {
        let grace_end = interrupted_at.map_or(far, |t| t + INTERRUPT_GRACE);
        let flush_at = logs.flush_due().map(Instant::from_std);
        tokio::select! {
            answer = &mut start, if !started => {
                started = true;
                match answer {
                    Ok(_) => {}
                    Err(CallError::Remote(f)) => {
                        end.failure = Some(f);
                        break;
                    }
                    Err(e) => {
                        end.lost = Some(format!("worker lost: {e}"));
                        break;
                    }
                }
            }
            call = rx.recv() => {
                let Some(call) = call else {
                    end.lost = Some("worker lost: connection closed".into());
                    break;
                };
                match call.method.as_str() {
                    "update" => {
                        record_updates(&mut logs, &mut sink, &call.args, &mut end, capture);
                        if flush_at.is_some_and(|t| t <= Instant::now()) {
                            flush(&mut logs, job, step).await;
                        }
                    }
                    "complete" => {
                        end.failure = call.args.first().and_then(Failure::from_value);
                        break;
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
                end.interrupted = true;
                interrupt(&conn, job.wfb, &command_id, &why);
            }
            _ = tokio::time::sleep_until(grace_end), if interrupted_at.is_some() => {
                end.failure_reason = Some("the worker did not end the interrupted command".into());
                break;
            }
            // Output that stops coming is recorded anyway (for `log --follow`).
            _ = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                flush(&mut logs, job, step).await;
            }
        }
    }
    // Before the step is recorded as finished: a finished step's logs are complete.
    end.truncated = sink.finish(&mut logs);
    let flushed = logs.flush(true).await;
    if flushed.is_ok() {
        job.events.send(Event::Log {
            build: job.build.id,
            step,
        });
    }
    end.store_failure = match (sink.failure(), flushed) {
        (Some(why), _) => Some(why.to_owned()),
        (None, Err(e)) => Some(format!("the master cannot record the log: {e}")),
        (None, Ok(())) => None,
    };
    conn.unexport(cmd_ref).await;
    end
}

/// Asks the worker to interrupt command `id`, without waiting for its answer.
fn interrupt(conn: &ConnHandle, wfb: i64, id: &str, why: &str) {
    let (conn, args) = (conn.clone(), vec![Value::text(id), Value::text(why)]);
    tokio::spawn(async move {
        if let Err(e) = conn.call(wfb, "interruptCommand", args, vec![]).await {
            warn!("interruptCommand failed: {e}");
        }
    });
}

/// Records what was written, then tells open pages.
async fn flush(logs: &mut LogWriter, job: &BuildJob, step: i64) {
    match logs.flush(false).await {
        Ok(()) => job.events.send(Event::Log {
            build: job.build.id,
            step,
        }),
        Err(e) => warn!(build = job.build.id, "cannot record logs: {e}"),
    }
}

/// Stores the contents of one `update([[{key: value}, n], ...])` call.
fn record_updates(
    logs: &mut LogWriter,
    sink: &mut LogSink,
    args: &[Value],
    end: &mut CommandEnd,
    capture: bool,
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
            let mut append =
                |log: &str, channel: Channel, data: &[u8]| sink.append(logs, log, channel, data);
            match (key.as_ref(), bytes) {
                ("stdout", Some(b)) => {
                    append("stdio", Channel::Stdout, b);
                    if capture {
                        let room = MAX_CAPTURE.saturating_sub(end.stdout.len());
                        end.stdout.extend_from_slice(&b[..b.len().min(room)]);
                    }
                }
                ("stderr", Some(b)) => append("stdio", Channel::Stderr, b),
                ("header", Some(b)) => append("stdio", Channel::Header, b),
                ("rc", _) => end.rc = value.as_i64(),
                ("failure_reason", Some(b)) => {
                    end.failure_reason = Some(String::from_utf8_lossy(b).into_owned())
                }
                ("stat", _) => {
                    end.stat = value
                        .as_seq()
                        .map(|s| s.iter().filter_map(Value::as_i64).collect())
                }
                ("files", _) => {
                    end.files = value.as_seq().map(|s| {
                        s.iter()
                            .filter_map(|f| f.as_str_lossy().map(|s| s.into_owned()))
                            .collect()
                    })
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
