//! Browser logins: `POST /api/login` with a user's name and password opens a session
//! (its id in an HttpOnly, SameSite=Strict cookie; its CSRF token in the answer),
//! `GET /api/session` says who is logged in, `POST /api/logout` ends it. Wrong
//! passwords count against the client's address like wrong tokens.

use super::auth::sessions::{cookie_id, set_cookie};
use super::{ApiError, ApiState, ClientAddr};
use crate::config::{verify_password, Role, Roles};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::OnceLock;
use std::time::Instant;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

fn role_names(roles: Roles) -> Vec<&'static str> {
    Role::ALL
        .into_iter()
        .filter(|r| roles.allows(*r))
        .map(Role::name)
        .collect()
}

/// A hash no password matches in practice, checked for unknown users so that a
/// wrong name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        crate::config::hash_password("no user has this password").unwrap_or_default()
    })
}

async fn login(
    State(s): State<ApiState>,
    peer: Option<Extension<ConnectInfo<ClientAddr>>>,
    Json(body): Json<Login>,
) -> Response {
    let ip = peer.map(|Extension(ConnectInfo(c))| c.0.ip());
    let guard = &s.guard;
    if ip.is_some_and(|ip| guard.throttle.wait(ip, Instant::now()).is_some()) {
        let why = "too many failed logins from this address; retry later";
        return ApiError(StatusCode::TOO_MANY_REQUESTS, why.into()).into_response();
    }
    let user = guard
        .settings()
        .api
        .users
        .iter()
        .find(|u| u.name == body.user)
        .cloned();
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        if let Some(ip) = ip {
            guard.throttle.failed(ip, Instant::now());
        }
        tracing::warn!(
            "api: failed login as {:?} from {}",
            crate::conn::printable(&body.user),
            ip.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
        );
        let why = "wrong user name or password";
        return ApiError(StatusCode::UNAUTHORIZED, why.into()).into_response();
    };
    let (id, session) = match guard.sessions.open(&user.name, user.roles, Instant::now()) {
        Ok(opened) => opened,
        Err(e) => return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    tracing::info!("api: {:?} logged in", user.name);
    let cookie = set_cookie(&id, guard.settings().api.secure_cookie);
    let body = json!({
        "user": session.user,
        "roles": role_names(session.roles),
        "csrf_token": session.csrf,
    });
    ([(header::SET_COOKIE, cookie)], Json(body)).into_response()
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookie_id)
}

async fn logout(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        s.guard.sessions.close(id);
    }
    let cookie = set_cookie("", s.guard.settings().api.secure_cookie);
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "logged_out": true })),
    )
        .into_response()
}

/// Who this is: a session's user, roles and CSRF token (a token's roles otherwise).
async fn session(
    State(s): State<ApiState>,
    headers: HeaderMap,
    caller: Option<Extension<super::Caller>>,
) -> Response {
    let found = session_id(&headers).and_then(|id| s.guard.sessions.find(id, Instant::now()));
    let body = match (found, caller) {
        (Some(session), _) => json!({
            "user": session.user,
            "roles": role_names(session.roles),
            "csrf_token": session.csrf,
        }),
        (None, Some(Extension(super::Caller(Some(roles))))) => json!({
            "user": null,
            "roles": role_names(roles),
        }),
        _ => return ApiError(StatusCode::UNAUTHORIZED, "no session".into()).into_response(),
    };
    Json(body).into_response()
}
