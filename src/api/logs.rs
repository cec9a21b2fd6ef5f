//! Log bytes exactly as stored; with `follow`, streamed until the step ends.

use super::{not_found, ApiError, ApiState};
use crate::store::{Channel, LogChunk};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;
use tracing::warn;

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    follow: bool,
    /// Only this channel: stdout, stderr or header.
    channel: Option<Channel>,
}

/// Bytes a followed log reads (and holds) at a time, whatever the client's speed.
const FOLLOW_BUDGET: u64 = 1 << 20;

/// How often a followed log looks for new bytes.
const POLL: Duration = Duration::from_millis(200);

pub async fn raw(
    State(s): State<ApiState>,
    Path((build, step, log)): Path<(i64, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let channel = q.channel;
    let keep = move |c: &LogChunk| channel.is_none_or(|want| want == c.channel);
    if !q.follow {
        let out = s
            .store
            .read(move |st| {
                if st.build(build)?.is_none() {
                    return Ok(None);
                }
                let mut out = Vec::new();
                let mut after = 0;
                loop {
                    let chunks = st.log_chunks(build, step, &log, after)?;
                    let Some(last) = chunks.last() else { break };
                    after = last.seq;
                    for c in chunks.into_iter().filter(keep) {
                        out.extend_from_slice(&c.data);
                    }
                }
                Ok(Some(out))
            })
            .await?
            .ok_or_else(|| not_found("such build"))?;
        return Ok(raw_response(Body::from(out)));
    }
    if s.store.read(move |st| st.build(build)).await?.is_none() {
        return Err(not_found("such build"));
    }
    let store = s.store.clone();
    let stream = futures_util::stream::unfold(0i64, move |after| {
        let (store, log) = (store.clone(), log.clone());
        async move {
            loop {
                let log = log.clone();
                let read = store
                    .read(move |st| {
                        // Seen before reading chunks, so every chunk stored before the
                        // step ended is in the read that follows.
                        let finished = st
                            .steps(build)?
                            .into_iter()
                            .find(|s| s.number == step)
                            .is_some_and(|s| s.finished_at.is_some())
                            || st.build(build)?.is_some_and(|b| b.finished_at.is_some());
                        let chunks =
                            st.log_chunks_within(build, step, &log, after, FOLLOW_BUDGET)?;
                        Ok((finished, chunks))
                    })
                    .await;
                let (finished, chunks) = match read {
                    Ok(found) => found,
                    Err(e) => {
                        warn!(build, step, "following a log: {e}");
                        return Some((Err(std::io::Error::other("the log cannot be read")), after));
                    }
                };
                if let Some(last) = chunks.last() {
                    let next = last.seq;
                    let data: Vec<u8> = chunks
                        .into_iter()
                        .filter(keep)
                        .flat_map(|c| c.data)
                        .collect();
                    return Some((Ok(data), next));
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
