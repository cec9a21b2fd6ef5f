//! Changes through HTTP: submitting them (JSON, GitHub and GitLab pushes) and listing
//! them with the requests and builds they caused.
//!
//! A hook endpoint answers 404 unless its `[hooks.*]` table is configured; a delivery
//! without the right signature (GitHub) or token (GitLab) is refused with 401 and its
//! peer logged, before its JSON is parsed; a delivery already taken is refused with
//! 409 (see [`crate::changes::verify`]).

use super::{ask, not_found, ApiError, ApiResult, ApiState, LimitQuery};
use crate::changes::hooks::{self, Hook};
use crate::changes::verify::{self, DeliveryKey, Gate};
use crate::changes::{json::from_json, NewChange, Source};
use crate::config::HookAuth;
use crate::master::Msg;
use crate::store::{Store, StoreResult};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::{error, warn};

/// Largest change body.
const MAX_CHANGE_BODY: usize = 1 << 20;
/// Largest hook body: pushes list their commits, so these run larger.
const MAX_HOOK_BODY: usize = 8 << 20;

pub fn routes() -> Router<ApiState> {
    let hooks = Router::new()
        .route(
            "/api/hooks/github",
            post(github).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        )
        .route(
            "/api/hooks/gitlab",
            post(gitlab).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        )
        .layer(Extension(Arc::new(Gates::default())));
    Router::new()
        .route(
            "/api/changes",
            get(list)
                .post(submit)
                .layer(DefaultBodyLimit::max(MAX_CHANGE_BODY)),
        )
        .route("/api/changes/{id}", get(one))
        .merge(hooks)
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

/// The hooks' state in this master.
#[derive(Debug, Default)]
struct Gates {
    github: Gate,
    gitlab: Gate,
}

#[derive(Debug, Clone, Copy)]
enum Which {
    GitHub,
    GitLab,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::GitHub => "GitHub",
            Which::GitLab => "GitLab",
        }
    }

    /// The hook's settings in force, with the config's generation.
    fn auth(self, s: &ApiState) -> (u64, Option<HookAuth>) {
        let (generation, config) = s.config.snapshot();
        let auth = match self {
            Which::GitHub => config.hooks.github.clone(),
            Which::GitLab => config.hooks.gitlab.clone(),
        };
        (generation, auth)
    }

    fn gate(self, gates: &Gates) -> &Gate {
        match self {
            Which::GitHub => &gates.github,
            Which::GitLab => &gates.gitlab,
        }
    }
}

/// A header's one value; a header given twice is an error.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("{name} is given more than once"));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// The delivery-id headers of a hook: the keys it is remembered by.
fn delivery_ids(which: Which, headers: &HeaderMap) -> Result<Vec<DeliveryKey>, String> {
    let names: &[&'static str] = match which {
        Which::GitHub => &["X-GitHub-Delivery"],
        // Idempotency-Key stays the same when GitLab retries a delivery.
        Which::GitLab => &["X-Gitlab-Event-UUID", "Idempotency-Key"],
    };
    let mut keys = Vec::new();
    for name in names {
        if let Some(raw) = single(headers, name)? {
            let id = verify::delivery_id(raw).map_err(|e| format!("{name}: {e}"))?;
            keys.push(DeliveryKey::Id(name, id));
        }
    }
    Ok(keys)
}

/// Checks a hook delivery and records it as taken: its headers, its body and the keys
/// it is recorded under, or the answer refusing it. Only the peer and the reason are
/// logged, never the secret or what was sent in its place.
async fn admit(
    s: &ApiState,
    gates: &Gates,
    which: Which,
    request: Request,
) -> Result<(HeaderMap, Bytes, Vec<DeliveryKey>), ApiError> {
    let name = which.name();
    let (generation, auth) = which.auth(s);
    let Some(auth) = auth else {
        return Err(not_found(&format!(
            "{name} hook: it is off unless [hooks.{}] is configured",
            name.to_lowercase()
        )));
    };
    let gate = which.gate(gates);
    let peer = request
        .extensions()
        .get::<ConnectInfo<super::ClientAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0 .0.to_string());
    let secret = gate.secret(&auth, generation).map_err(|e| {
        error!("{name} hook: its secret cannot be read: {e}");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the {name} hook's secret cannot be read"),
        )
    })?;
    let refuse = |why: &str| {
        warn!(peer = %peer, "{name} hook refused: {why}");
        ApiError(StatusCode::UNAUTHORIZED, why.to_owned())
    };
    let (parts, body) = request.into_parts();
    let header = |h: &str| single(&parts.headers, h).map_err(|e| refuse(&e));
    let mut keys = Vec::new();
    match (which, &secret) {
        // Refused before the body is read.
        (Which::GitLab, Some(secret)) => {
            verify::gitlab_token(secret.bytes(), header("x-gitlab-token")?).map_err(refuse)?
        }
        (Which::GitHub, Some(_)) if header("x-hub-signature-256")?.is_none() => {
            return Err(refuse("no X-Hub-Signature-256 header"));
        }
        _ => {}
    }
    let headers = parts.headers.clone();
    let body = Bytes::from_request(Request::from_parts(parts, body), &())
        .await
        .map_err(|e| ApiError(e.status(), e.body_text()))?;
    if let (Which::GitHub, Some(secret)) = (which, &secret) {
        let signature = single(&headers, "x-hub-signature-256").map_err(|e| refuse(&e))?;
        let mac = verify::github_signature(secret.bytes(), &body, signature).map_err(refuse)?;
        keys.push(DeliveryKey::Body(mac));
    }
    keys.extend(delivery_ids(which, &headers).map_err(bad_request)?);
    if let Err(seen) = gate.record(&keys) {
        warn!(peer = %peer, "{name} hook refused: {seen} was already taken");
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("{seen} was already taken"),
        ));
    }
    Ok((headers, body, keys))
}

async fn hook(s: &ApiState, hook: Result<Hook, String>, source: Source) -> ApiResult {
    match hook.map_err(bad_request)? {
        Hook::Change(change) => deliver(s, *change, source).await,
        Hook::Ignored(why) => Ok(Json(json!({ "ignored": why }))),
    }
}

/// Takes an admitted delivery; one that fails is forgotten, so that it may be sent
/// again.
async fn take(
    s: &ApiState,
    gate: &Gate,
    keys: &[DeliveryKey],
    parsed: impl FnOnce(Value) -> Result<Hook, String>,
    body: &Bytes,
    source: Source,
) -> ApiResult {
    let result = match parse(body) {
        Ok(value) => hook(s, parsed(value), source).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        gate.forget(keys);
    }
    result
}

async fn github(
    State(s): State<ApiState>,
    Extension(gates): Extension<Arc<Gates>>,
    request: Request,
) -> ApiResult {
    let (headers, body, keys) = admit(&s, &gates, Which::GitHub, request).await?;
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed = |v| hooks::github(event.as_deref(), v);
    take(&s, &gates.github, &keys, parsed, &body, Source::GitHub).await
}

async fn gitlab(
    State(s): State<ApiState>,
    Extension(gates): Extension<Arc<Gates>>,
    request: Request,
) -> ApiResult {
    let (_, body, keys) = admit(&s, &gates, Which::GitLab, request).await?;
    take(
        &s,
        &gates.gitlab,
        &keys,
        hooks::gitlab,
        &body,
        Source::GitLab,
    )
    .await
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
