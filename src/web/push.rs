//! Server-sent events for the pages. `/api/events` tells what changed (the kinds of
//! [`Event`], as JSON); `/api/builds/{id}/steps/{step}/logs/{log}/live` sends a
//! step's log as rendered, escaped HTML as its bytes are recorded, and `end` once the
//! step is over. Both are reads behind the API's guard and ask it again as they go,
//! so a session that ends ends its streams. Neither holds more than a bounded amount
//! per reader: events come from a bounded broadcast (a reader that lags is told so,
//! and the page reads itself again), log bytes from the store, a bounded read at a
//! time, taken only when the connection has sent the previous one.

use crate::api::{ApiState, ClientAddr, Guard};
use crate::events::Event;
use crate::store::LogChunk;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

/// How often a quiet stream asks the guard again (and a live log looks again).
const RECHECK: Duration = Duration::from_secs(15);
/// Log bytes read and sent at a time by a live log (a row may hold up to 1 MiB).
const LIVE_BUDGET: u64 = 256 * 1024;

/// Who reads a stream, to ask the guard again as it goes.
struct Reader {
    guard: Arc<Guard>,
    headers: HeaderMap,
    ip: Option<IpAddr>,
}

impl Reader {
    fn of(s: &ApiState, req: &Request) -> Reader {
        let ip = req
            .extensions()
            .get::<ConnectInfo<ClientAddr>>()
            .map(|c| c.0 .0.ip());
        Reader {
            guard: s.guard.clone(),
            headers: req.headers().clone(),
            ip,
        }
    }

    fn admitted(&self) -> bool {
        self.guard.may_read(&self.headers, self.ip)
    }
}

/// Which events a reader wants: one build's only, and log events only if asked.
#[derive(Debug, Deserialize, Clone, Copy)]
pub struct Filter {
    build: Option<i64>,
    #[serde(default)]
    logs: bool,
}

impl Filter {
    fn wants(&self, e: &Event) -> bool {
        (self.logs || !matches!(e, Event::Log { .. }))
            && self.build.is_none_or(|b| e.build() == Some(b))
    }
}

fn sse_stream<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<Sse, Infallible>> + Send + 'static,
{
    let mut r = axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies that buffer would hold the events back.
    r.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    r
}

/// `GET /api/events`: every change, as `event: KIND` with the event as JSON data;
/// `lagged` (data: how many) when the reader fell behind and missed some.
pub async fn events(State(s): State<ApiState>, Query(f): Query<Filter>, req: Request) -> Response {
    let reader = Reader::of(&s, &req);
    let rx = s.events.subscribe();
    let stream = futures_util::stream::unfold((rx, reader), move |(mut rx, reader)| async move {
        loop {
            let got = tokio::select! {
                got = rx.recv() => Some(got),
                _ = tokio::time::sleep(RECHECK) => None,
            };
            if !reader.admitted() {
                return None;
            }
            let event = match got {
                None => continue,
                Some(Ok(e)) if f.wants(&e) => json_event(e.kind(), &e),
                Some(Ok(_)) => continue,
                Some(Err(RecvError::Lagged(n))) => {
                    Sse::default().event("lagged").data(n.to_string())
                }
                Some(Err(RecvError::Closed)) => return None,
            };
            return Some((Ok(event), (rx, reader)));
        }
    });
    sse_stream(stream)
}

fn json_event(kind: &str, value: &impl serde::Serialize) -> Sse {
    // JSON escapes line breaks, so no value can add a field or an event.
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    Sse::default().event(kind).data(text)
}

/// A live log's reading position and rendering state.
struct LiveLog {
    s: ApiState,
    reader: Reader,
    rx: Receiver<Event>,
    build: i64,
    step: i64,
    log: String,
    /// The last chunk sent.
    after: i64,
    render: super::log::LiveRender,
    done: bool,
}

/// `GET /api/builds/{id}/steps/{step}/logs/{log}/live`: `log` events (id: the last
/// chunk's sequence, so a reconnecting browser goes on from there; data: `{"html",
/// "bytes"}`), then `end`.
pub async fn live_log(
    State(s): State<ApiState>,
    Path((build, step, log)): Path<(i64, i64, String)>,
    req: Request,
) -> Response {
    // Subscribed before the first read: no change between the read and the wait is
    // missed.
    let rx = s.events.subscribe();
    match s.store.read(move |st| st.build(build)).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "no such build"})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!("web: store: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let live = LiveLog {
        reader: Reader::of(&s, &req),
        s,
        rx,
        build,
        step,
        log,
        after,
        render: Default::default(),
        done: false,
    };
    sse_stream(futures_util::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok(event), live))
    }))
}

impl LiveLog {
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if self.done || !self.reader.admitted() {
                return None;
            }
            let (build, step, after, log) = (self.build, self.step, self.after, self.log.clone());
            let read = self
                .s
                .store
                .read(move |st| {
                    // Seen before reading chunks: every chunk stored before the step
                    // ended is in the read that follows.
                    let finished = st
                        .steps(build)?
                        .into_iter()
                        .find(|s| s.number == step)
                        .is_some_and(|s| s.finished_at.is_some())
                        || st.build(build)?.is_some_and(|b| b.finished_at.is_some());
                    let chunks = st.log_chunks_within(build, step, &log, after, LIVE_BUDGET)?;
                    Ok((finished, chunks))
                })
                .await;
            let (finished, chunks) = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(build, step, "following a log: {e}");
                    self.done = true;
                    return Some(Sse::default().event("error").data("the log cannot be read"));
                }
            };
            if let Some(last) = chunks.last() {
                self.after = last.seq;
                return Some(self.log_event("log", &chunks, false));
            }
            if finished {
                self.done = true;
                // A character cut at the very end shows as U+FFFD.
                return Some(self.log_event("end", &[], true));
            }
            self.changed().await;
        }
    }

    /// `kind` (`log`, or `end` with what a cut character left) with the chunks as
    /// HTML; its id is the last chunk's sequence.
    fn log_event(&mut self, kind: &str, chunks: &[LogChunk], last: bool) -> Sse {
        let bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
        let html = self.render.chunks(chunks, last).into_string();
        let data = serde_json::json!({"html": html, "bytes": bytes});
        json_event(kind, &data).id(self.after.to_string())
    }

    /// Waits until this log may have grown or its step ended (or for a while).
    async fn changed(&mut self) {
        let (build, step) = (self.build, self.step);
        let deadline = tokio::time::sleep(RECHECK);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                got = self.rx.recv() => match got {
                    Ok(Event::Log { build: b, step: s } | Event::StepFinished { build: b, step: s, .. })
                        if b == build && s == step => return,
                    Ok(Event::BuildFinished { build: b, .. }) if b == build => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => {
                        // The master is stopping: the stream ends.
                        self.done = true;
                        return;
                    }
                },
                _ = &mut deadline => return,
            }
        }
    }
}
