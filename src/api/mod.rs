//! The HTTP JSON API the CLI uses: builders, builds with steps, logs (raw and
//! followed), workers, build requests; force and stop as POSTs. [`auth`] decides who
//! may do what.

mod auth;
mod changes;
pub mod health;
mod logs;
mod session;
#[cfg(test)]
mod tests;

pub use auth::{Caller, ClientAddr, Guard, GuardSettings};

use crate::config::Current;
use crate::master::{Msg, Refusal};
use crate::store::{Store, StoreError};
use axum::body::Bytes;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    pub master: mpsc::Sender<Msg>,
    /// The config in force (a reconfiguration replaces it).
    pub config: Arc<Current>,
    /// The tokens and the rules for using them.
    pub guard: Arc<Guard>,
    /// What `/readyz` answers from beside the store.
    pub health: Arc<health::Health>,
    /// What changed, for the pages' event streams.
    pub events: crate::events::Events,
    /// Reads the config file again (`POST /api/reconfig`); `None` where the master
    /// was not started from a file.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
}

/// The API as `axum::serve` takes it: each request knows its peer's address.
pub fn service(state: ApiState) -> IntoMakeServiceWithConnectInfo<Router, ClientAddr> {
    router(state).into_make_service_with_connect_info::<ClientAddr>()
}

/// Every route behind [`auth::guard`], but the health probes, the login page and
/// the pages' style and script.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/api/builders", get(builders))
        .route("/api/builders/{name}/force", post(force))
        .route("/api/builds", get(builds))
        .route("/api/builds/{id}", get(build))
        .route("/api/builds/{id}/stop", post(stop))
        .route("/api/builds/{id}/steps/{step}/logs/{log}", get(logs::raw))
        .route("/api/workers", get(workers))
        .route("/api/masters", get(masters))
        .route("/api/latent", get(latent))
        .route("/api/latent/pools", get(pools))
        .route("/api/buildrequests", get(requests))
        .route("/api/buildrequests/{id}", get(request))
        .route("/api/reconfig", post(reconfig))
        .merge(changes::routes())
        .merge(session::routes())
        .merge(crate::web::pages())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .merge(crate::web::open())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::middleware::from_fn(crate::web::login_redirect))
        .with_state(state)
}

/// Errors as `{"error": ...}` with a status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A store failure: the detail goes to the log, the client gets its kind only (no SQL
/// text, no stored values).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, what) = match &e {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not found"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict with stored data"),
            StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
            StoreError::Corrupt { .. } | StoreError::Io(_) | StoreError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (the master's log says why)",
            ),
        };
        warn!("API: store: {e}");
        ApiError(status, what.into())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(why) => ApiError(StatusCode::BAD_REQUEST, why),
            Refusal::Store(e) => e.into(),
        }
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no {what}"))
}

type ApiResult = Result<Json<serde_json::Value>, ApiError>;

async fn builders(State(s): State<ApiState>) -> ApiResult {
    let list: Vec<_> = s
        .config
        .get()
        .builders
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "workers": b.workers,
                "properties": b.properties,
                "steps": b.steps.iter().map(|st| &st.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!(list)))
}

#[derive(Debug, Deserialize, Default)]
pub struct ForceBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
}

/// The body may be empty (a build with no reason or properties); anything else must
/// be a JSON object of the shape above.
async fn force(State(s): State<ApiState>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let body: ForceBody = match body.is_empty() {
        true => ForceBody::default(),
        false => serde_json::from_slice(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("not a force body: {e}")))?,
    };
    crate::model::property::check_all(&body.properties)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let answer = ask(&s, |reply| Msg::Force {
        builder: name,
        reason: body.reason.unwrap_or_else(|| "forced".into()),
        properties: serde_json::Value::Object(body.properties),
        reply,
    })
    .await??;
    Ok(Json(json!({ "request_id": answer })))
}

/// [`ask`], for the pages.
pub(crate) async fn ask_master<T>(
    s: &ApiState,
    msg: impl FnOnce(oneshot::Sender<T>) -> Msg,
) -> Result<T, ApiError> {
    ask(s, msg).await
}

/// Sends the coordinator a message carrying a reply channel and waits for the reply.
async fn ask<T>(s: &ApiState, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, ApiError> {
    let stopped = || ApiError(StatusCode::SERVICE_UNAVAILABLE, "master stopped".into());
    let (reply, answer) = oneshot::channel();
    s.master.send(msg(reply)).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())
}

#[derive(Debug, Deserialize)]
pub struct BuildsQuery {
    builder: Option<String>,
    limit: Option<i64>,
    /// Only builds older than this one (the next page: the last id of this one).
    before: Option<i64>,
}

async fn builds(State(s): State<ApiState>, Query(q): Query<BuildsQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    let builds = s
        .store
        .read(move |st| match q.before {
            Some(id) => st.builds_page(
                q.builder.as_deref(),
                crate::store::Keyset::Before(id),
                limit,
            ),
            None => st.builds(q.builder.as_deref(), limit),
        })
        .await?;
    Ok(Json(json!(builds)))
}

async fn build(State(s): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let found = s
        .store
        .read(move |st| {
            let Some(build) = st.build(id)? else {
                return Ok(None);
            };
            let mut steps = Vec::new();
            for step in st.steps(id)? {
                let logs = st.log_names(id, step.number)?;
                let mut v = json!(step);
                v["logs"] = json!(logs);
                steps.push(v);
            }
            let mut v = json!(build);
            v["steps"] = json!(steps);
            Ok(Some(v))
        })
        .await?;
    Ok(Json(found.ok_or_else(|| not_found("such build"))?))
}

async fn stop(State(s): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let found = ask(&s, |reply| Msg::Stop {
        build_id: id,
        why: "stopped through the API".into(),
        reply,
    })
    .await?;
    match found {
        true => Ok(Json(json!({ "stopping": id }))),
        false => Err(ApiError(
            StatusCode::CONFLICT,
            format!("build {id} is not running"),
        )),
    }
}

/// Workers and what they said about themselves; the environment each reported
/// (which may hold credentials) only to an admin.
async fn workers(State(s): State<ApiState>, caller: Option<Extension<Caller>>) -> ApiResult {
    let admin = caller.is_some_and(|Extension(c)| c.is_admin());
    let mut known = s.store.read(|st| st.workers()).await?;
    if !admin {
        for row in &mut known {
            if let Some(info) = row.info.as_object_mut() {
                info.remove("environ");
            }
        }
    }
    let list: Vec<_> = s
        .config
        .get()
        .workers
        .iter()
        .map(|w| {
            let name = &w.name;
            match known.iter().find(|k| &k.name == name) {
                Some(row) => json!(row),
                None => json!({ "name": name, "state": "never connected" }),
            }
        })
        .collect();
    Ok(Json(json!(list)))
}

/// The masters sharing this master's database, with their leases (empty for a
/// master alone on SQLite).
async fn masters(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(json!(s.store.read(|st| st.masters()).await?)))
}

#[derive(Debug, Deserialize)]
pub struct LimitQuery {
    limit: Option<i64>,
}

async fn requests(State(s): State<ApiState>, Query(q): Query<LimitQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    Ok(Json(json!(
        s.store.read(move |st| st.requests(limit)).await?
    )))
}

async fn request(State(s): State<ApiState>, Path(id): Path<i64>) -> ApiResult {
    let found = s
        .store
        .read(move |st| {
            let Some(request) = st.request(id)? else {
                return Ok(None);
            };
            let mut v = json!(request);
            v["builds"] = json!(st.builds_of_request(id)?);
            v["changes"] = json!(st.changes_of_request(id)?);
            Ok(Some(v))
        })
        .await?;
    Ok(Json(found.ok_or_else(|| not_found("such build request"))?))
}

/// Reads the config file again and applies it (an admin's write): what changed
/// and what needs a restart; or, with 422, every error, the running config staying.
async fn reconfig(State(s): State<ApiState>) -> Response {
    let Some(reloader) = &s.reloader else {
        let why = "this master cannot read its config again".into();
        return ApiError(StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    match reloader.reconfigure().await {
        Ok(applied) => {
            for line in applied.diff.summary() {
                tracing::info!("reconfig (API): {line}");
            }
            Json(json!({
                "applied": true,
                "changes": applied.diff.summary(),
                "diff": applied.diff,
                "needs_restart": applied.diff.needs_restart,
                "warnings": applied.warnings,
            }))
            .into_response()
        }
        Err(errors) => {
            for e in &errors {
                warn!("reconfig (API) refused: {e}");
            }
            let body = json!({
                "applied": false,
                "error": "the configuration was refused; the running one stays",
                "errors": errors,
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}

/// Latent pools: live instances by phase, why requests wait, the newest failure.
async fn pools(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(ask(&s, |reply| Msg::Pools { reply }).await?))
}

/// Latent instances, newest first, with every transition they made.
async fn latent(State(s): State<ApiState>, Query(q): Query<LimitQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    Ok(Json(json!(
        s.store.read(move |st| st.instances(limit)).await?
    )))
}
