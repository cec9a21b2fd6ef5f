//! The web UI: server-rendered pages over the same store and coordinator as the JSON
//! API, with a small script for what changes while a page is open (relative times,
//! live logs, sections read again when the master's event stream says they changed)
//! and for the writes, which go to the API's own routes with the session's CSRF
//! token. Pages and their streams are reads: the API's guard admits them.

mod ansi;
mod assets;
mod builds;
mod home;
mod layout;
mod lists;
mod log;
mod login;
mod push;

use crate::api::{ApiState, Caller};
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use layout::Viewer;

/// The pages, to be put behind the API's guard.
pub fn pages() -> Router<ApiState> {
    Router::new()
        .route("/", get(home::home))
        .route("/builders/{name}", get(builds::builder))
        .route("/builds", get(builds::builds))
        .route("/builds/{id}", get(builds::build))
        .route("/builds/{id}/steps/{step}/logs/{log}", get(log::log_page))
        .route("/buildrequests", get(lists::requests))
        .route("/workers", get(lists::workers))
        .route("/latent", get(lists::latent))
        .route("/changes", get(lists::changes))
        .route("/api/events", get(push::events))
        .route(
            "/api/builds/{id}/steps/{step}/logs/{log}/live",
            get(push::live_log),
        )
}

/// What needs no credential: the login page and the style and script.
pub fn open() -> Router<ApiState> {
    Router::new()
        .route("/login", get(login::login))
        .route("/static/{file}", get(assets::file))
}

/// A browser refused a page for want of a credential is sent to log in; the API's
/// answers stay as they are.
pub async fn login_redirect(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let page = req.method() == Method::GET
        && !path.starts_with("/api/")
        && path != "/metrics"
        && !path.starts_with("/static/");
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let response = next.run(req).await;
    if page && response.status() == StatusCode::UNAUTHORIZED {
        let next = urlencode(&format!("{path}{query}"));
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    response
}

/// Percent-encodes all but unreserved characters, for a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn viewer(caller: Option<Extension<Caller>>) -> Viewer {
    Viewer(caller.and_then(|Extension(c)| c.0))
}

/// A page that could not be made: the detail goes to the log.
#[derive(Debug)]
pub struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = layout::page(
            &self.0.to_string(),
            Viewer(None),
            false,
            maud::html! { p { (self.1) } },
        );
        (self.0, Html(body.into_string())).into_response()
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!("web: store: {e}");
        PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (the master's log says why)".into(),
        )
    }
}

fn not_found(what: &str) -> PageError {
    PageError(StatusCode::NOT_FOUND, format!("no {what}"))
}

type PageResult = Result<Response, PageError>;

/// A rendered page, never cached (it shows live state).
fn html(markup: maud::Markup) -> PageResult {
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Html(markup.into_string()),
    )
        .into_response())
}
