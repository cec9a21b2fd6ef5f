//! Log bytes exactly as stored; with `follow`, streamed until the step ends.

use super::{not_found, ApiError, ApiState};
use crate::store::Channel;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    follow: bool,
    /// Only this channel: stdout, stderr or header.
    channel: Option<Channel>,
}

/// How often a followed log looks for new bytes.
const POLL: Duration = Duration::from_millis(200);

pub async fn raw(
    State(s): State<ApiState>,
    Path((build, step, log)): Path<(i64, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    s.store
        .build(build)?
        .ok_or_else(|| not_found("such build"))?;
    let channel = q.channel;
    let keep = move |c: Channel| channel.is_none_or(|want| want == c);
    if !q.follow {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let chunks = s.store.log_chunks(build, step, &log, after)?;
            let Some(last) = chunks.last() else { break };
            after = last.seq;
            for c in chunks.into_iter().filter(|c| keep(c.channel)) {
                out.extend_from_slice(&c.data);
            }
        }
        return Ok(raw_response(Body::from(out)));
    }
    let store = s.store.clone();
    let stream = futures_util::stream::unfold(0i64, move |after| {
        let store = store.clone();
        let log = log.clone();
        async move {
            loop {
                // Seen before reading chunks, so every chunk stored before the step
                // ended is in the read that follows.
                let finished = store
                    .steps(build)
                    .ok()
                    .and_then(|steps| steps.into_iter().find(|st| st.number == step))
                    .is_some_and(|st| st.finished_at.is_some())
                    || store
                        .build(build)
                        .ok()
                        .flatten()
                        .is_some_and(|b| b.finished_at.is_some());
                let chunks = store
                    .log_chunks(build, step, &log, after)
                    .unwrap_or_default();
                if let Some(last) = chunks.last() {
                    let next = last.seq;
                    let data: Vec<u8> = chunks
                        .into_iter()
                        .filter(|c| keep(c.channel))
                        .flat_map(|c| c.data)
                        .collect();
                    return Some((Ok::<_, std::io::Error>(data), next));
                }
                if finished {
                    return None;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Ok(raw_response(Body::from_stream(stream)))
}

fn raw_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    r
}
