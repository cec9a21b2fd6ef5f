//! Mutation mode: for each case, log in as a real worker would, send the case's
//! bytes, then a valid probe call, and classify what the server did:
//!
//! - `answered`: the probe (or, after a half-close, anything) came back: still serving;
//! - `dropped`: the server closed or reset this connection;
//! - `stalled`: neither within the timeout (e.g. waiting for bytes a header promised);
//! - `died`: the server process is gone, or refuses new connections.
//!
//! Each case is reported as one JSON line with the exact bytes as hex runs, so any
//! outcome can be replayed; a summary line ends the run.

mod cases;
mod session;
mod wire;

use crate::cli::MutateArgs;
use crate::link::{Incoming, LinkError};
use bytes::Bytes;
use cases::{After, Ctx, Payload};
use pbwire::jelly::{Failure, Value};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::{timeout, Instant};

/// Bytes of one write when a run of repeated pieces is sent.
const WRITE_CHUNK: usize = 256 * 1024;
/// Hex characters printed per piece before the rest is elided (its length stays).
const HEX_LIMIT: usize = 8192;

pub async fn run(args: MutateArgs) -> ExitCode {
    let cases = cases::all(args.seed, args.random_cases);
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| args.only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    if args.list {
        for c in &cases {
            println!("{}", c.name);
        }
        return ExitCode::SUCCESS;
    }
    let name = format!("{}-{}", args.target.prefix, args.index);
    let wait = Duration::from_secs_f64(args.reply_timeout.max(0.1));
    let budget_end = Instant::now() + Duration::from_secs_f64(args.budget.max(0.0));
    let mut summary: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut run = 0usize;
    for case in &cases {
        if Instant::now() >= budget_end {
            break;
        }
        run += 1;
        let report = one_case(&args, &name, case, wait).await;
        let outcome = report["outcome"]
            .as_str()
            .map(outcome_key)
            .unwrap_or("dropped");
        *summary.entry(outcome).or_default() += 1;
        crate::emit(&report);
        if outcome == "died" {
            break;
        }
    }
    // The server should still attach a worker after all of it.
    let healthy = session::attach(args.target.master, &name, &args.target.password, wait * 5)
        .await
        .is_ok();
    crate::emit(&json!({
        "event": "summary",
        "cases_total": cases.len(),
        "cases_run": run,
        "summary": summary,
        "healthy_after": healthy,
    }));
    if summary.contains_key("died") || !healthy {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn outcome_key(s: &str) -> &'static str {
    match s {
        "answered" => "answered",
        "stalled" => "stalled",
        "died" => "died",
        "login_failed" => "login_failed",
        _ => "dropped",
    }
}

/// The bytes of a payload as `[{"hex", "len", "repeat"}]` runs.
fn bytes_json(p: &Payload) -> Json {
    Json::Array(
        p.pieces
            .iter()
            .map(|piece| {
                let shown = &piece.bytes[..piece.bytes.len().min(HEX_LIMIT / 2)];
                let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
                let mut o = json!({"hex": hex, "repeat": piece.repeat});
                if shown.len() < piece.bytes.len() {
                    o["len"] = json!(piece.bytes.len());
                    o["elided"] = json!(true);
                }
                o
            })
            .collect(),
    )
}

async fn one_case(args: &MutateArgs, name: &str, case: &cases::Case, wait: Duration) -> Json {
    let started = Instant::now();
    let mut report = json!({"event": "case", "case": case.name});
    let att = match session::attach(args.target.master, name, &args.target.password, wait * 5).await
    {
        Ok(a) => a,
        Err(e) => {
            report["outcome"] = json!(if server_gone(args).await {
                "died"
            } else {
                "login_failed"
            });
            report["detail"] = json!(e.to_string());
            return report;
        }
    };
    let session::Attached {
        link,
        mut inbox,
        avatar,
        mind,
        mut builders,
    } = att;
    let id = match link.next_request_id() {
        Ok(id) => id,
        Err(e) => {
            report["outcome"] = json!("login_failed");
            report["detail"] = json!(e.to_string());
            return report;
        }
    };
    let ctx = Ctx { id, avatar, mind };
    let payload = (case.build)(&ctx);
    report["bytes"] = bytes_json(&payload);
    report["after"] = json!(match payload.after {
        After::Probe => "probe",
        After::HalfClose => "half-close",
    });
    // Replies to the mutated call, and to the probe (sent under the next free id, as
    // floods use ids id .. id+N).
    let mut mutated = link.expect(id);
    let probe_id = id + 100_000;
    let mut probe = link.expect(probe_id);
    let probe_bytes = wire::enc(&wire::call(
        probe_id,
        wire::int(avatar),
        wire::raw(b"keepalive"),
        wire::tuple(vec![]),
        wire::dict(),
    ));
    let pieces = payload.pieces.clone();
    let after = payload.after;
    let sender = link.clone();
    let mut send = tokio::spawn(async move {
        for piece in pieces {
            let per_write = (WRITE_CHUNK / piece.bytes.len().max(1)).clamp(1, piece.repeat.max(1));
            let block = Bytes::from(piece.bytes.repeat(per_write));
            let mut left = piece.repeat;
            while left > 0 {
                let n = left.min(per_write);
                let chunk = if n == per_write {
                    block.clone()
                } else {
                    Bytes::from(piece.bytes.repeat(n))
                };
                sender.send_raw(chunk).await?;
                left -= n;
            }
        }
        if after == After::Probe {
            sender.send_raw(Bytes::from(probe_bytes)).await?;
        }
        Ok::<_, LinkError>(())
    });
    // After a half-close no sender may remain: once the send task is done, the writer
    // shuts the socket's sending side down. Otherwise keep one to answer the server.
    let keep = match after {
        After::Probe => Some(link),
        After::HalfClose => {
            drop(link);
            None
        }
    };
    let deadline = Instant::now() + wait * payload.patience.max(1);
    let mut sent = false;
    let mut reply: Option<Json> = None;
    let mut other = 0u64;
    let outcome = loop {
        tokio::select! {
            r = &mut send, if !sent => {
                sent = true;
                if let Ok(Err(e)) = r { report["send_error"] = json!(e.to_string()); }
            }
            r = &mut mutated, if reply.is_none() => {
                reply = Some(match r { Ok(r) => describe_reply(&r), Err(_) => json!("none") });
            }
            r = &mut probe => match r {
                Ok(_) => break "answered",
                Err(_) => break "dropped",
            },
            n = timeout(deadline.saturating_duration_since(Instant::now()), inbox.next()) => match n {
                Err(_) => break "stalled",
                Ok(Ok(None)) => break "dropped",
                Ok(Err(e)) => {
                    report["detail"] = json!(e.to_string());
                    break "dropped";
                }
                Ok(Ok(Some(Incoming::Call(call)))) => {
                    other += 1;
                    // Keep being a worker: the server may ping while we wait.
                    if let Some(l) = &keep {
                        let _ = session::answer(l, mind, &mut builders, call).await;
                    }
                }
                Ok(Ok(Some(Incoming::Decref))) => {}
            },
        }
    };
    send.abort();
    drop(keep);
    let outcome = if outcome != "answered" && server_gone(args).await {
        "died"
    } else {
        outcome
    };
    report["outcome"] = json!(outcome);
    if let Some(r) = reply {
        report["reply"] = r;
    }
    if other > 0 {
        report["server_calls"] = json!(other);
    }
    report["seconds"] = json!(started.elapsed().as_secs_f64());
    report
}

/// What came back for the mutated call: an answer, or a failure's type.
fn describe_reply(r: &Result<Value, Value>) -> Json {
    match r {
        Ok(v) => json!({"answer": format!("{v:?}").chars().take(200).collect::<String>()}),
        Err(f) => match Failure::from_value(f) {
            Some(f) => {
                json!({"error": f.type_name, "value": f.value.chars().take(200).collect::<String>()})
            }
            None => json!({"error": format!("{f:?}").chars().take(200).collect::<String>()}),
        },
    }
}

/// Whether the server process exited (with --pid) or refuses new connections.
async fn server_gone(args: &MutateArgs) -> bool {
    if let Some(pid) = args.pid {
        return !std::path::Path::new(&format!("/proc/{pid}")).exists();
    }
    matches!(
        timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(args.target.master)
        )
        .await,
        Ok(Err(_))
    )
}
