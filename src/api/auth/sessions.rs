//! Browser sessions: a user who logged in with a password gets a random session id in
//! an HttpOnly, SameSite=Strict cookie, and a CSRF token the page sends back with each
//! write. Sessions live in memory (a restart logs everyone out), expire, and are
//! bounded in number; ids are kept only as SHA-256 digests.

use crate::config::{token_digest, Roles};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "pbmaster_session";
/// How long a session lasts from its login.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions at once; past it the oldest goes.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub roles: Roles,
    /// Sent back in `X-CSRF-Token` with every write made with this session.
    pub csrf: String,
    expires: Instant,
}

/// Live sessions by the digest of their id.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `user`: its id (for the cookie) and the session.
    pub fn open(
        &self,
        user: &str,
        roles: Roles,
        now: Instant,
    ) -> Result<(String, Session), String> {
        let (id, csrf) = (random_token()?, random_token()?);
        let session = Session {
            user: user.to_owned(),
            roles,
            csrf,
            expires: now + LIFETIME,
        };
        let mut live = self.lock();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                live.remove(&oldest);
            }
        }
        live.insert(token_digest(id.as_bytes()), session.clone());
        Ok((id, session))
    }

    /// The session a cookie names, if it is live.
    pub fn find(&self, id: &str, now: Instant) -> Option<Session> {
        let key = token_digest(id.as_bytes());
        let mut live = self.lock();
        match live.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Keeps only the sessions `keep` accepts (a reconfiguration removed or changed
    /// the others' users).
    pub fn retain(&self, keep: impl Fn(&Session) -> bool) {
        self.lock().retain(|_, s| keep(s));
    }

    /// Ends a session (logout).
    pub fn close(&self, id: &str) {
        self.lock().remove(&token_digest(id.as_bytes()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 32 random bytes as hex.
fn random_token() -> Result<String, String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session id in a `Cookie` header, if there is one.
pub fn cookie_id(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value for a session id (an empty id with no age clears it).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let age = if id.is_empty() { 0 } else { LIFETIME.as_secs() };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn a_session_is_found_by_its_id_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let roles = Roles::default().with(Role::Force);
        let (id, s) = sessions.open("ann", roles, t0).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, s.csrf);
        assert_eq!(sessions.find(&id, t0), Some(s.clone()));
        assert_eq!(sessions.find("not-it", t0), None);
        assert_eq!(sessions.find(&id, t0 + LIFETIME), None, "expired");
        let (id2, _) = sessions.open("ann", roles, t0).unwrap();
        sessions.close(&id2);
        assert_eq!(sessions.find(&id2, t0), None, "logged out");
    }

    #[test]
    fn the_cookie_is_read_among_others_and_written_strict() {
        assert_eq!(cookie_id("a=1; pbmaster_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_id("pbmaster_session="), None);
        assert_eq!(cookie_id("other=abc"), None);
        let c = set_cookie("abc", false);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(!c.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(set_cookie("", false).contains("Max-Age=0"));
    }
}
