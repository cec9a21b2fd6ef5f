//! Running cases against a target: for each, log in as the profile says, send the
//! case's bytes, then the profile's call as a probe, and classify what the target did:
//!
//! - `answered`: the probe came back (an answer or an error): still serving;
//! - `dropped`: the target closed or reset this connection;
//! - `stalled`: neither within the timeout (e.g. waiting for bytes a header promised);
//! - `died`: the target's process is gone, or it refuses new connections;
//! - `login_failed`: the login or script before the case did not complete;
//! - `garbled`: the target answered with bytes that are not PB.
//!
//! Each case is one JSON line with the exact bytes; a case that died or stalled is then
//! minimized; a summary line ends the run.

use crate::cases::{After, Case, Ctx, Payload};
use crate::conn::{Conn, ConnError, Turn};
use crate::minimize::{self, Budget};
use crate::profile::Profile;
use pbwire::banana::Element;
use pbwire::broker::{CloseReason, Event};
use pbwire::jelly::Failure;
use pbwire::pb::Message;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Hex characters printed per piece before the rest is elided (its length stays).
const HEX_LIMIT: usize = 8192;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: Profile,
    /// How long to wait for the probe's answer (times a case's patience).
    pub reply_timeout: Duration,
    /// Stop starting cases after this long.
    pub budget: Duration,
    /// The target's process, to tell `died` from `dropped` (without it, a target that
    /// refuses connections counts as died).
    pub pid: Option<u32>,
    /// A shell command that starts the target again after it died.
    pub restart_cmd: Option<String>,
    /// Minimize cases that died or stalled.
    pub minimize: bool,
    /// Per minimized case: time and tests.
    pub minimize_time: Duration,
    pub minimize_tests: usize,
}

impl Options {
    pub fn new(profile: Profile) -> Options {
        Options {
            profile,
            reply_timeout: Duration::from_secs(3),
            budget: Duration::from_secs(300),
            pid: None,
            restart_cmd: None,
            minimize: true,
            minimize_time: Duration::from_secs(120),
            minimize_tests: 500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Answered,
    Dropped,
    Stalled,
    Died,
    LoginFailed,
    Garbled,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Dropped => "dropped",
            Outcome::Stalled => "stalled",
            Outcome::Died => "died",
            Outcome::LoginFailed => "login_failed",
            Outcome::Garbled => "garbled",
        }
    }
}

/// What one case did.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub outcome: Outcome,
    /// The bytes sent (none if the login failed first).
    pub payload: Option<Payload>,
    /// The answer or error to the mutated call itself, if one came.
    pub reply: Option<Json>,
    pub detail: Option<String>,
    pub target_calls: u64,
    pub seconds: f64,
}

/// Runs one case: `build` makes its bytes from the session.
pub async fn execute(opts: &Options, build: &(dyn Fn(&Ctx) -> Payload + Sync)) -> CaseResult {
    let started = Instant::now();
    let mut result = CaseResult {
        outcome: Outcome::LoginFailed,
        payload: None,
        reply: None,
        detail: None,
        target_calls: 0,
        seconds: 0.0,
    };
    let mut conn = match Conn::open(&opts.profile, opts.reply_timeout * 5).await {
        Ok(c) => c,
        Err(e) => {
            if target_gone(opts).await {
                result.outcome = Outcome::Died;
            }
            result.detail = Some(e.to_string());
            result.seconds = started.elapsed().as_secs_f64();
            return result;
        }
    };
    // The probe's id first: floods number their calls up from the case's.
    let ids = conn
        .broker
        .reserve_request()
        .and_then(|p| Ok((p, conn.broker.reserve_request()?)));
    let Ok((probe_id, id)) = ids else {
        result.detail = Some("no request id".into());
        return result;
    };
    let ctx = context(&opts.profile, &conn, id);
    let payload = build(&ctx);
    for p in &payload.pieces {
        conn.queue(&p.bytes, p.repeat);
    }
    match payload.after {
        After::Probe => {
            let probe = conn.encode_call(&opts.profile.call, probe_id);
            conn.queue(&probe, 1);
        }
        After::HalfClose => conn.half_close(),
    }
    let deadline = Instant::now() + opts.reply_timeout * payload.patience.max(1);
    let outcome = 'case: loop {
        let turn = conn.turn(deadline).await;
        while let Some((request_id, e)) = conn.replies.pop_front() {
            if request_id == probe_id {
                break 'case Outcome::Answered;
            }
            if request_id == id {
                result.reply = Some(describe(&e));
            }
        }
        while let Some(e) = conn.events.pop_front() {
            if let Event::Closed(reason) = e {
                if reason != CloseReason::PeerClosed {
                    // This side's broker refused the target's bytes; the tap reads on.
                    result.detail = Some(format!("client broker: {reason}"));
                }
            }
        }
        if let Some(why) = &conn.tap_error {
            result.detail = Some(format!("unreadable reply: {why}"));
            break Outcome::Garbled;
        }
        match turn {
            Turn::Progress => {}
            Turn::Timeout => break Outcome::Stalled,
            Turn::Closed(why) => {
                if why != "closed by the target" {
                    result.detail = Some(why);
                }
                break Outcome::Dropped;
            }
        }
    };
    result.target_calls = conn.target_calls;
    drop(conn);
    result.outcome = if outcome != Outcome::Answered && target_gone(opts).await {
        Outcome::Died
    } else {
        outcome
    };
    result.payload = Some(payload);
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// The session as the cases see it.
fn context(profile: &Profile, conn: &Conn, id: i64) -> Ctx {
    let target = match conn.object(profile.call.object) {
        pbwire::pb::ObjectId::Id(n) => n.to_string(),
        _ => "b'root'".into(),
    };
    Ctx {
        id,
        target,
        method: profile.call.method.as_bytes().to_vec(),
        mind: conn.mind.unwrap_or(0),
        user: profile
            .login
            .as_ref()
            .map_or(b"fuzz".to_vec(), |l| l.username.as_bytes().to_vec()),
    }
}

/// The answer or failure to the mutated call, short.
fn describe(e: &Element) -> Json {
    let cut = |s: String| s.chars().take(200).collect::<String>();
    match pbwire::pb::decode(e, &pbwire::jelly::Security::default()) {
        Ok(Message::Answer { value, .. }) => json!({"answer": cut(format!("{value:?}"))}),
        Ok(Message::Error { failure, .. }) => match Failure::from_value(&failure) {
            Some(f) => json!({"error": f.type_name, "value": cut(f.value)}),
            None => json!({"error": cut(format!("{failure:?}"))}),
        },
        _ => json!({"unreadable": cut(pbwire::notation::to_string(e))}),
    }
}

/// Whether the target's process exited (with a pid) or it refuses new connections.
pub async fn target_gone(opts: &Options) -> bool {
    if let Some(pid) = opts.pid {
        // A zombie has exited too (its parent has not reaped it yet).
        return match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        };
    }
    let connect = tokio::net::TcpStream::connect(opts.profile.address);
    let mut stream = match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return true,
        Err(_) => return false,
    };
    // A dying process may still accept on its way out; a PB server that is alive
    // sends its dialect offer at once.
    let mut byte = [0u8; 1];
    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut byte);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), read).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The bytes of a payload as `[{"hex", "repeat"}]` runs (`len` and `elided` when a
/// piece is too long to print whole).
pub fn bytes_json(p: &Payload) -> Json {
    Json::Array(
        p.pieces
            .iter()
            .map(|piece| {
                let shown = &piece.bytes[..piece.bytes.len().min(HEX_LIMIT / 2)];
                let mut o = json!({"hex": hex(shown), "repeat": piece.repeat});
                if shown.len() < piece.bytes.len() {
                    o["len"] = json!(piece.bytes.len());
                    o["elided"] = json!(true);
                }
                o
            })
            .collect(),
    )
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn after_name(a: After) -> &'static str {
    match a {
        After::Probe => "probe",
        After::HalfClose => "half-close",
    }
}

/// The JSON line of a case.
pub fn case_json(name: &str, r: &CaseResult) -> Json {
    let mut o = json!({"event": "case", "case": name, "outcome": r.outcome.name()});
    if let Some(p) = &r.payload {
        o["bytes"] = bytes_json(p);
        o["len"] = json!(p.len());
        o["after"] = json!(after_name(p.after));
    }
    if let Some(reply) = &r.reply {
        o["reply"] = reply.clone();
    }
    if let Some(d) = &r.detail {
        o["detail"] = json!(d);
    }
    if r.target_calls > 0 {
        o["server_calls"] = json!(r.target_calls);
    }
    o["seconds"] = json!(r.seconds);
    o
}

/// Starts the target again with `cmd` (not waited for: it may stay in the
/// foreground) and waits until it accepts connections.
async fn restart(opts: &Options, cmd: &str) -> bool {
    let spawned = tokio::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn();
    if spawned.is_err() {
        return false;
    }
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if tokio::net::TcpStream::connect(opts.profile.address)
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Totals of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub outcomes: BTreeMap<&'static str, u64>,
    pub cases_run: usize,
    /// Seconds spent running cases (minimizing excluded).
    pub case_seconds: f64,
    pub healthy_after: bool,
    pub minimized: usize,
}

impl Summary {
    pub fn failed(&self) -> bool {
        self.outcomes.contains_key("died") || !self.healthy_after
    }
}

/// Runs `cases` in order, calling `emit` with each JSON line.
pub async fn run(opts: &Options, cases: &[Case], emit: &mut dyn FnMut(Json)) -> Summary {
    let mut opts = opts.clone();
    let started = Instant::now();
    let mut s = Summary::default();
    for case in cases {
        if started.elapsed() >= opts.budget {
            break;
        }
        s.cases_run += 1;
        let r = execute(&opts, &|c| case.build(c)).await;
        s.case_seconds += r.seconds;
        *s.outcomes.entry(r.outcome.name()).or_default() += 1;
        emit(case_json(&case.name, &r));
        let died = r.outcome == Outcome::Died;
        if died {
            let Some(cmd) = opts.restart_cmd.clone() else {
                emit(
                    json!({"event": "stopped", "why": "the target died and there is no --restart-cmd"}),
                );
                break;
            };
            // The old pid means nothing now.
            opts.pid = None;
            if !restart(&opts, &cmd).await {
                emit(
                    json!({"event": "stopped", "why": "the restart command did not bring the target back"}),
                );
                break;
            }
        }
        if opts.minimize && matches!(r.outcome, Outcome::Died | Outcome::Stalled) {
            if let Some(p) = r.payload.clone() {
                let line = minimize_case(&opts, &case.name, r.outcome, p).await;
                s.minimized += 1;
                emit(line);
            }
        }
    }
    s.healthy_after = Conn::open(&opts.profile, opts.reply_timeout * 5)
        .await
        .is_ok();
    let total = started.elapsed().as_secs_f64();
    emit(json!({
        "event": "summary",
        "cases_total": cases.len(),
        "cases_run": s.cases_run,
        "summary": s.outcomes,
        "healthy_after": s.healthy_after,
        "minimized": s.minimized,
        "seconds": total,
        "case_seconds": s.case_seconds,
        "cases_per_second": if s.case_seconds > 0.0 { s.cases_run as f64 / s.case_seconds } else { 0.0 },
    }));
    s
}

/// Shrinks `payload` while it still ends `outcome` against the target, restarting
/// the target after each death when there is a restart command.
pub async fn shrink(opts: &Options, outcome: Outcome, payload: Payload) -> minimize::Minimized {
    let budget = Budget {
        tests: opts.minimize_tests,
        until: Instant::now() + opts.minimize_time,
    };
    let (full, patience) = (payload.len().max(1), payload.patience.max(1));
    minimize::minimize(payload, budget, |mut candidate| async move {
        // Floods get patience for their volume; a shrunk one needs less.
        let share = (candidate.len() as u64 * u64::from(patience)).div_ceil(full as u64);
        candidate.patience = u32::try_from(share).unwrap_or(patience).clamp(1, patience);
        let r = execute(opts, &move |_| candidate.clone()).await;
        if r.outcome == Outcome::Died {
            if let Some(cmd) = &opts.restart_cmd {
                restart(opts, cmd).await;
            }
        }
        r.outcome == outcome
    })
    .await
}

/// The minimized bytes of a case that ended `outcome`, as a JSON line.
async fn minimize_case(opts: &Options, name: &str, outcome: Outcome, payload: Payload) -> Json {
    let original = payload.len();
    let m = shrink(opts, outcome, payload).await;
    let mut o = json!({
        "event": "minimized",
        "case": name,
        "outcome": outcome.name(),
        "bytes": bytes_json(&m.payload),
        "len": m.payload.len(),
        "original_len": original,
        "after": after_name(m.payload.after),
        "tests": m.tests,
        "complete": m.complete,
    });
    if let Some(text) = readable(&m.payload) {
        o["notation"] = json!(text);
    }
    o
}

/// The bytes in notation, when they are a short run of whole elements.
pub fn readable(p: &Payload) -> Option<String> {
    if p.len() > 4096 || p.is_empty() {
        return None;
    }
    let mut decoder = pbwire::banana::Decoder::new(pbwire::Limits::default());
    decoder.set_dialect(pbwire::banana::Dialect::Pb);
    let mut buf = bytes::BytesMut::from(&p.flat()[..]);
    let mut parts = Vec::new();
    while let Ok(Some(e)) = decoder.decode(&mut buf) {
        parts.push(pbwire::notation::to_string(&e));
    }
    (buf.is_empty() && !decoder.in_expression() && !parts.is_empty()).then(|| parts.join(" "))
}

/// Whether a connection can be opened as the profile says (login and script).
pub async fn healthy(profile: &Profile, limit: Duration) -> Result<(), ConnError> {
    Conn::open(profile, limit).await.map(|_| ())
}
