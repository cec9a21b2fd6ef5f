//! Who may use the API. Every request but the webhooks (verified by their own
//! secrets) passes [`guard`]: its `Host` must be the API's own; a write must come from
//! no other browser origin, carry a credential with the role the route needs, and be
//! JSON; a read needs the `read` role unless `[api] public_read` opens it to this
//! client. A credential is `Authorization: Bearer TOKEN`, or a browser session's
//! cookie (see [`sessions`]), whose writes must also send the session's
//! `X-CSRF-Token`. Wrong tokens and passwords are throttled per client address.
//!
//! | refused because | status |
//! |---|---|
//! | `Host` not the API's, or a write from another origin | 403 |
//! | no credential, or a wrong one | 401 |
//! | the token or user lacks the role, or a session's write lacks its CSRF token | 403 |
//! | too many wrong tokens from this address | 429 |
//! | a write whose body is not declared JSON | 415 |

mod browser;
pub mod sessions;
mod throttle;
mod tokens;

use super::{ApiError, ApiState};
use crate::config::{ApiConfig, PublicRead, Role, Roles};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sessions::Sessions;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use throttle::Throttle;
use tokens::Tokens;

/// The peer address of an API connection, for [`guard`]'s loopback and throttle.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::accept::HttpListener>,
    > for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::accept::HttpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// The tokens, the settings and the failures seen: what [`guard`] decides with.
#[derive(Debug)]
pub struct Guard {
    /// Replaced whole by a reconfiguration.
    settings: RwLock<Arc<GuardSettings>>,
    pub(super) throttle: Throttle,
    pub(super) sessions: Sessions,
}

/// `[api]` with its tokens read: what one config gives the guard.
#[derive(Debug)]
pub struct GuardSettings {
    tokens: Tokens,
    pub(super) api: ApiConfig,
}

impl GuardSettings {
    /// Reads every token; an unreadable one is an error.
    pub fn from_config(api: &ApiConfig) -> Result<GuardSettings, String> {
        Ok(GuardSettings {
            tokens: Tokens::from_config(api)?,
            api: api.clone(),
        })
    }
}

impl Guard {
    /// Reads every token (an unreadable one is an error); the config's warnings are
    /// logged with the others at start.
    pub fn from_config(api: &ApiConfig) -> Result<Guard, String> {
        Ok(Guard {
            settings: RwLock::new(Arc::new(GuardSettings::from_config(api)?)),
            throttle: Throttle::default(),
            sessions: Sessions::default(),
        })
    }

    /// The settings in force.
    pub(super) fn settings(&self) -> Arc<GuardSettings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a new config's tokens and settings in force. Browser sessions stay only
    /// for users whose entry (roles, password) is unchanged.
    pub fn install(&self, new: GuardSettings) {
        let users = new.api.users.clone();
        let old = self.settings().api.users.clone();
        self.sessions.retain(|s| {
            let was = old.iter().find(|u| u.name == s.user);
            was.is_some() && users.iter().find(|u| u.name == s.user) == was
        });
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    }
}

impl Guard {
    /// Whether a read with these headers from `ip` is admitted now: a stream asks
    /// again as it goes, so a session that ended (logged out, expired) ends it.
    pub fn may_read(&self, headers: &HeaderMap, ip: Option<IpAddr>) -> bool {
        admit(self, headers, Need::Read, &Method::GET, ip, Instant::now()).is_ok()
    }
}

/// Who made a request, for handlers whose answer depends on it: the roles of the
/// token it carried, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller(pub Option<Roles>);

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.0.is_some_and(|r| r.allows(Role::Admin))
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write(Role),
    /// Logging in: a JSON post from the API's own origin, with no credential yet.
    Login,
    /// Any valid credential (the session's own routes); a cookie's post needs its
    /// CSRF token.
    Credential,
}

/// The need of a route (its pattern, as matched); `None` for webhooks. A write no
/// rule names needs `admin`, so a route added later is closed until given a role.
fn need(method: &Method, route: &str) -> Option<Need> {
    if route.starts_with("/api/hooks/") {
        return None;
    }
    match (method, route) {
        (&Method::POST, "/api/login") => return Some(Need::Login),
        (_, "/api/logout" | "/api/session") => return Some(Need::Credential),
        _ => {}
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Need::Read);
    }
    let role = match (method, route) {
        (&Method::POST, "/api/builders/{name}/force") => Role::Force,
        (&Method::POST, "/api/builds/{id}/stop") => Role::Stop,
        (&Method::POST, "/api/changes") => Role::Changes,
        _ => Role::Admin,
    };
    Some(Need::Write(role))
}

/// A refusal as `{"error": ...}`, with the headers its status calls for.
fn refuse(status: StatusCode, why: &str) -> Response {
    let mut r = ApiError(status, why.to_owned()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pbmaster\""),
        );
    }
    r
}

/// What the `Authorization` header holds.
enum Credential<'a> {
    None,
    Bearer(&'a str),
    /// Another scheme, or not text.
    Unusable,
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credential::None;
    };
    let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return Credential::Unusable;
    };
    match scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
        true => Credential::Bearer(token.trim()),
        false => Credential::Unusable,
    }
}

/// Whether reads are open to `ip` without a token.
fn public_to(api: &ApiConfig, ip: Option<IpAddr>) -> bool {
    match api.public_read {
        PublicRead::All => true,
        PublicRead::None => false,
        PublicRead::Loopback => ip.is_some_and(|ip| ip.to_canonical().is_loopback()),
    }
}

/// The middleware on every route.
pub async fn guard(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(need) = need(req.method(), &route) else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0 .0.ip());
    match admit(
        &s.guard,
        req.headers(),
        need,
        req.method(),
        ip,
        Instant::now(),
    ) {
        Ok((who, roles)) => {
            req.extensions_mut().insert(Caller(roles));
            if let (Need::Write(_), Some(name)) = (need, who) {
                tracing::info!(
                    "api: {} {:?} with token {name:?} from {}",
                    req.method(),
                    req.uri().path(),
                    show(ip)
                );
            }
            next.run(req).await
        }
        Err((status, why)) => {
            let (method, from, code) = (req.method(), show(ip), status.as_u16());
            // A held client may keep knocking: its refusals stay out of the default log.
            match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    tracing::debug!("api: {method} {route} from {from} refused ({code}): {why}")
                }
                _ => tracing::warn!("api: {method} {route} from {from} refused ({code}): {why}"),
            }
            let mut r = refuse(status, why);
            if let (StatusCode::TOO_MANY_REQUESTS, Some(ip)) = (status, ip) {
                let wait = s
                    .guard
                    .throttle
                    .wait(ip, Instant::now())
                    .unwrap_or_default();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs() + 1));
            }
            r
        }
    }
}

fn show(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
}

type Refusal = (StatusCode, &'static str);

/// Admits a request (with the name and roles of the token it carried, if any) or
/// says why not.
fn admit(
    guard: &Guard,
    headers: &HeaderMap,
    need: Need,
    method: &Method,
    ip: Option<IpAddr>,
    now: Instant,
) -> Result<(Option<String>, Option<Roles>), Refusal> {
    let forbidden = StatusCode::FORBIDDEN;
    let writes = method != Method::GET && method != Method::HEAD;
    let settings = guard.settings();
    if !browser::host_ok(headers, &settings.api) {
        return Err((forbidden, "the Host header does not name this API"));
    }
    if writes && !browser::origin_ok(headers, &settings.api) {
        return Err((forbidden, "writes from another origin are refused"));
    }
    if need == Need::Login {
        return match browser::is_json(headers) {
            true => Ok((None, None)),
            false => Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "writes need Content-Type: application/json",
            )),
        };
    }
    let token = match credential(headers) {
        Credential::None => session(guard, headers, writes, now)?,
        Credential::Unusable => {
            return Err((
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be: Bearer TOKEN",
            ))
        }
        Credential::Bearer(t) => Some(verify(guard, t, ip, now)?),
    };
    let roles = token.as_ref().map(|(_, roles)| *roles);
    match need {
        Need::Login => {}
        Need::Credential if token.is_none() => {
            return Err((StatusCode::UNAUTHORIZED, "no session: log in first"))
        }
        Need::Credential => {}
        Need::Read if public_to(&settings.api, ip) => {}
        Need::Read => require(roles, Role::Read)?,
        Need::Write(role) => {
            require(roles, role)?;
            if !browser::is_json(headers) {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "writes need Content-Type: application/json",
                ));
            }
        }
    }
    Ok((token.map(|(name, _)| name), roles))
}

/// The user and roles of the session a cookie names, if any. A write with a session
/// must carry its CSRF token: another site's form can send the cookie, not that.
fn session(
    guard: &Guard,
    headers: &HeaderMap,
    writes: bool,
    now: Instant,
) -> Result<Option<(String, Roles)>, Refusal> {
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sessions::cookie_id);
    let Some(session) = id.and_then(|id| guard.sessions.find(id, now)) else {
        return Ok(None);
    };
    if writes {
        let sent = headers
            .get("x-csrf-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !tokens::same_bytes(sent, session.csrf.as_bytes()) {
            return Err((
                StatusCode::FORBIDDEN,
                "a write with a session needs its X-CSRF-Token",
            ));
        }
    }
    Ok(Some((format!("user {}", session.user), session.roles)))
}

/// The presented token's name and roles; a wrong one counts against the client.
fn verify(
    guard: &Guard,
    token: &str,
    ip: Option<IpAddr>,
    now: Instant,
) -> Result<(String, Roles), Refusal> {
    if ip.is_some_and(|ip| guard.throttle.wait(ip, now).is_some()) {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address; retry later",
        ));
    }
    match guard.settings().tokens.check(token) {
        Some((name, roles)) => Ok((name.to_owned(), roles)),
        None => {
            if let Some(ip) = ip {
                guard.throttle.failed(ip, now);
            }
            Err((StatusCode::UNAUTHORIZED, "invalid token"))
        }
    }
}

fn require(roles: Option<Roles>, role: Role) -> Result<(), Refusal> {
    match roles {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer TOKEN",
        )),
        Some(r) if r.allows(role) => Ok(()),
        Some(_) => Err((StatusCode::FORBIDDEN, forbidden_message(role))),
    }
}

fn forbidden_message(role: Role) -> &'static str {
    match role {
        Role::Read => "the token lacks the read role",
        Role::Force => "the token lacks the force role",
        Role::Stop => "the token lacks the stop role",
        Role::Changes => "the token lacks the changes role",
        Role::Admin => "the token lacks the admin role",
    }
}

#[cfg(test)]
mod tests;
