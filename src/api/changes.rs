//! Changes through HTTP: submitting them (JSON, GitHub and GitLab pushes) and listing
//! them with the requests and builds they caused.

use super::{ask, not_found, ApiError, ApiResult, ApiState, LimitQuery};
use crate::changes::hooks::{self, Hook};
use crate::changes::{json::from_json, NewChange, Source};
use crate::master::Msg;
use crate::store::{Store, StoreResult};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Largest change body.
const MAX_CHANGE_BODY: usize = 1 << 20;
/// Largest hook body: pushes list their commits, so these run larger.
const MAX_HOOK_BODY: usize = 8 << 20;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/changes",
            get(list)
                .post(submit)
                .layer(DefaultBodyLimit::max(MAX_CHANGE_BODY)),
        )
        .route("/api/changes/{id}", get(one))
        .route(
            "/api/hooks/github",
            post(github).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        )
        .route(
            "/api/hooks/gitlab",
            post(gitlab).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        )
}

fn bad_request(e: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e)
}

fn parse(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("not JSON: {e}")))
}

/// Hands a change to the coordinator; answers once it is stored.
async fn deliver(s: &ApiState, change: NewChange, source: Source) -> ApiResult {
    let id = ask(s, |reply| Msg::NewChange {
        change: Box::new(change),
        source,
        reply,
    })
    .await??;
    Ok(Json(json!({ "change_id": id })))
}

async fn submit(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let change = from_json(parse(&body)?).map_err(bad_request)?;
    deliver(&s, change, Source::Http).await
}

async fn hook(s: &ApiState, hook: Result<Hook, String>, source: Source) -> ApiResult {
    match hook.map_err(bad_request)? {
        Hook::Change(change) => deliver(s, *change, source).await,
        Hook::Ignored(why) => Ok(Json(json!({ "ignored": why }))),
    }
}

async fn github(State(s): State<ApiState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed = hooks::github(event.as_deref(), parse(&body)?);
    hook(&s, parsed, Source::GitHub).await
}

async fn gitlab(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let parsed = hooks::gitlab(parse(&body)?);
    hook(&s, parsed, Source::GitLab).await
}

/// A change with the requests it caused (by id), the builds of those requests, and
/// the schedulers still holding it.
fn summary(st: &Store, change: &crate::changes::Change) -> StoreResult<Value> {
    let requests = st.requests_of_change(change.id)?;
    let mut builds = Vec::new();
    for r in &requests {
        builds.extend(st.builds_of_request(*r)?);
    }
    let mut v = json!(change);
    v["requests"] = json!(requests);
    v["builds"] = json!(builds);
    v["held_by"] = json!(st.change_held_by(change.id)?);
    Ok(v)
}

async fn list(State(s): State<ApiState>, Query(q): Query<LimitQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    let list = s
        .store
        .read(move |st| {
            st.changes(limit)?
                .iter()
                .map(|c| summary(st, c))
                .collect::<StoreResult<Vec<_>>>()
        })
        .await?;
    Ok(Json(json!(list)))
}

async fn one(State(s): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let found = s
        .store
        .read(move |st| {
            let Some(change) = st.change(id)? else {
                return Ok(None);
            };
            let mut v = summary(st, &change)?;
            let mut requests = Vec::new();
            for r in st.requests_of_change(id)? {
                if let Some(row) = st.request(r)? {
                    let mut rv = json!(row);
                    rv["builds"] = json!(st.builds_of_request(r)?);
                    requests.push(rv);
                }
            }
            v["requests"] = json!(requests);
            Ok(Some(v))
        })
        .await?;
    Ok(Json(found.ok_or_else(|| not_found("such change"))?))
}
