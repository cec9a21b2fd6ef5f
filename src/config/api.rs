//! `[api]` and `[[api_token]]`: who may read the HTTP API without a credential, the
//! tokens writes need with their roles, and the names browsers may reach the API by.
//! A token written in the file is hashed as it is read; tokens from variables and
//! files are read (and hashed) when the master starts.

use super::error::{ConfigError, Problems};
use super::file::{ApiTable, ApiTokenTable, ApiUserTable};
use super::master::MasterConfig;
use super::users::{users, ApiUser};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Who may read (`GET`) the API without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicRead {
    /// Clients connecting from a loopback address (the default).
    Loopback,
    /// Every client that reaches `http_listen`.
    All,
    /// Nobody: reads need a token with the `read` role.
    None,
}

/// What a token may do. `Admin` may do everything, including what later versions add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Force,
    Stop,
    Changes,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Read,
        Role::Force,
        Role::Stop,
        Role::Changes,
        Role::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Force => "force",
            Role::Stop => "stop",
            Role::Changes => "changes",
            Role::Admin => "admin",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    /// Whether a token with these roles may act as `role`; `admin` implies every role.
    pub fn allows(self, role: Role) -> bool {
        self.0 & (Role::Admin.bit() | role.bit()) != 0
    }
}

/// The SHA-256 digest a token is kept and compared as.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Shortest token accepted: shorter ones could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token cannot be used, if it cannot: too short, or holding characters an
/// `Authorization` header cannot carry as a bearer token.
fn token_problem(token: &str) -> Option<String> {
    if token.len() < MIN_TOKEN_LEN {
        return Some(format!(
            "the token is shorter than {MIN_TOKEN_LEN} characters"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("the token holds spaces, control or non-ASCII characters".into());
    }
    None
}

/// Where a token comes from. A literal is held only as its digest.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    Digest([u8; 32]),
    /// The name of an environment variable.
    Env(String),
    /// A file holding the token (surrounding whitespace ignored).
    File(PathBuf),
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSecret::Digest(_) => f.write_str("Digest(..)"),
            TokenSecret::Env(var) => write!(f, "Env({var:?})"),
            TokenSecret::File(path) => write!(f, "File({path:?})"),
        }
    }
}

impl TokenSecret {
    /// The token's digest, reading the variable or file; an unset variable, an
    /// unreadable file or an unusable token is an error.
    pub fn digest(&self) -> Result<[u8; 32], String> {
        let token = match self {
            TokenSecret::Digest(d) => return Ok(*d),
            TokenSecret::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            TokenSecret::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        };
        let token = token.trim();
        match token_problem(token) {
            Some(why) => Err(why),
            None => Ok(token_digest(token.as_bytes())),
        }
    }

    /// Makes a relative file relative to `base` (the config file's folder).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let TokenSecret::File(path) = self {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// One `[[api_token]]`.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub roles: Roles,
    pub secret: TokenSecret,
}

/// `[api]` with the tokens.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub public_read: PublicRead,
    /// Host names (lowercase) the API answers to besides IP addresses and `localhost`:
    /// a request naming any other host may come through DNS rebinding.
    pub hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`, lowercase) allowed to write besides
    /// the API's own.
    pub origins: Vec<String>,
    pub tokens: Vec<ApiToken>,
    /// `[[api_user]]`: browser logins.
    pub users: Vec<ApiUser>,
    /// Session cookies carry `Secure` (the API is reached over HTTPS).
    pub secure_cookie: bool,
    /// What `pbmaster check` and the log at start warn about: settings that work but
    /// expose the API or its tokens.
    pub warnings: Vec<ConfigError>,
}

/// `[api]` and every `[[api_token]]`.
pub(super) fn api(
    table: Option<&ApiTable>,
    tokens: &[ApiTokenTable],
    user_tables: &[ApiUserTable],
    master: &MasterConfig,
    problems: &mut Problems,
) -> ApiConfig {
    let mut warnings = Vec::new();
    let mut names = HashSet::new();
    let mut list = Vec::new();
    for t in tokens {
        if !names.insert(t.name.get_ref().as_str()) {
            problems.at(
                t.name.span(),
                format!("api token {:?} is defined twice", t.name.get_ref()),
            );
        }
        if let Some(literal) = &t.token {
            warnings.push(problems.located(
                literal.span(),
                format!(
                    "api token {:?} is written in the config; token_file or token_env keep it out of it",
                    t.name.get_ref()
                ),
            ));
        }
        list.extend(token(t, problems));
    }
    let public_read =
        table
            .and_then(|t| t.public_read.as_ref())
            .map_or(PublicRead::Loopback, |v| match v.get_ref().as_str() {
                "loopback" => PublicRead::Loopback,
                "all" => PublicRead::All,
                "none" => PublicRead::None,
                other => {
                    problems.at(
                        v.span(),
                        format!(
                            "public_read {other:?} is not one of \"loopback\", \"all\", \"none\""
                        ),
                    );
                    PublicRead::Loopback
                }
            });
    let hosts = table.map_or_else(Vec::new, |t| {
        t.hosts
            .iter()
            .filter_map(|h| host(h.get_ref()).map_err(|e| problems.at(h.span(), e)).ok())
            .collect()
    });
    let origins = table.map_or_else(Vec::new, |t| {
        t.origins
            .iter()
            .filter_map(|o| {
                origin(o.get_ref())
                    .map_err(|e| problems.at(o.span(), e))
                    .ok()
            })
            .collect()
    });
    warnings.extend(exposure(master, public_read, tokens.is_empty()));
    ApiConfig {
        public_read,
        hosts,
        origins,
        tokens: list,
        users: users(user_tables, problems),
        secure_cookie: table.and_then(|t| t.secure_cookie).unwrap_or(false),
        warnings,
    }
}

/// The roles a token or user lists; `who` names it in the problems (an unknown role,
/// an empty list).
pub(super) fn roles(
    list: &Spanned<Vec<Spanned<String>>>,
    who: &str,
    problems: &mut Problems,
) -> Roles {
    let mut roles = Roles::default();
    for r in list.get_ref() {
        match Role::parse(r.get_ref()) {
            Some(role) => roles = roles.with(role),
            None => problems.at(
                r.span(),
                format!(
                    "{who}: unknown role {:?} (read, force, stop, changes, admin)",
                    r.get_ref()
                ),
            ),
        }
    }
    if list.get_ref().is_empty() {
        problems.at(list.span(), format!("{who} has no roles"));
    }
    roles
}

/// One token; `None` when it is wrong (the problems say why).
fn token(t: &ApiTokenTable, problems: &mut Problems) -> Option<ApiToken> {
    let name = t.name.get_ref();
    if name.is_empty() {
        problems.at(t.name.span(), "api token: the name is empty");
    }
    let roles = roles(&t.roles, &format!("api token {name:?}"), problems);
    let secret = match (&t.token, &t.token_env, &t.token_file) {
        (Some(literal), None, None) => match token_problem(&literal.get_ref().0) {
            Some(why) => {
                problems.at(literal.span(), format!("api token {name:?}: {why}"));
                None
            }
            None => Some(TokenSecret::Digest(token_digest(
                literal.get_ref().0.as_bytes(),
            ))),
        },
        (None, Some(var), None) => Some(TokenSecret::Env(var.clone())),
        (None, None, Some(path)) => Some(TokenSecret::File(path.clone())),
        _ => {
            problems.at(
                t.name.span(),
                format!("api token {name:?} needs exactly one of token_file, token_env, token"),
            );
            None
        }
    };
    Some(ApiToken {
        name: name.clone(),
        roles,
        secret: secret?,
    })
}

/// A host name as `[api] hosts` takes it: no scheme, port or path.
fn host(h: &str) -> Result<String, String> {
    let ok = !h.is_empty()
        && !h.starts_with(['.', '-'])
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    match ok {
        true => Ok(h.to_ascii_lowercase()),
        false => Err(format!(
            "hosts: {h:?} is not a host name like ci.example.org (no scheme or port)"
        )),
    }
}

/// An origin as browsers send it: `http` or `https`, a host, an optional port.
fn origin(o: &str) -> Result<String, String> {
    let o = o.trim_end_matches('/').to_ascii_lowercase();
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    match ok {
        true => Ok(o),
        false => Err(format!(
            "origins: {o:?} is not an origin like https://ci.example.org[:PORT]"
        )),
    }
}

/// Warnings about who can reach the API.
fn exposure(master: &MasterConfig, public_read: PublicRead, no_tokens: bool) -> Vec<ConfigError> {
    let listen = &master.http_listen;
    let loopback = listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    let mut out = Vec::new();
    let mut warn = |message: String| {
        out.push(ConfigError {
            location: None,
            message,
        })
    };
    if no_tokens && !loopback {
        warn(format!(
            "http_listen {listen} is reachable from other machines and no [[api_token]] is \
             configured: the API refuses every write (force, stop, changes)"
        ));
    } else if no_tokens {
        warn(
            "no [[api_token]] is configured: the API refuses every write (force, stop, changes)"
                .into(),
        );
    }
    if !loopback && public_read == PublicRead::All {
        warn(format!(
            "public_read = \"all\": builds, logs and properties are open to every client \
             that reaches http_listen {listen}"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const BASE: &str = "[master]\ndata_dir = \"d\"\n";

    fn messages(errors: &[ConfigError]) -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn accepts_tokens_with_roles_and_defaults_to_loopback_reads() {
        let c = parse(&format!(
            "{BASE}[[api_token]]\nname = \"ci\"\nroles = [\"force\", \"read\"]\ntoken_file = \"ci.token\"\n\
             [[api_token]]\nname = \"ops\"\nroles = [\"admin\"]\ntoken_env = \"OPS_TOKEN\"\n"
        ))
        .unwrap();
        assert_eq!(c.api.public_read, PublicRead::Loopback);
        let ci = &c.api.tokens[0];
        assert!(ci.roles.allows(Role::Force) && ci.roles.allows(Role::Read));
        assert!(!ci.roles.allows(Role::Stop) && !ci.roles.allows(Role::Admin));
        let ops = c.api.tokens[1].roles;
        assert!(Role::ALL.into_iter().all(|r| ops.allows(r)));
        assert!(c.api.warnings.is_empty(), "{:?}", c.api.warnings);
    }

    #[test]
    fn rejects_unknown_roles_two_sources_short_literals_and_bad_settings() {
        let errors = parse(&format!(
            "{BASE}[api]\npublic_read = \"some\"\nhosts = [\"http://x\"]\norigins = [\"ftp://x\"]\n\
             [[api_token]]\nname = \"a\"\nroles = [\"root\"]\ntoken = \"short\"\n\
             [[api_token]]\nname = \"a\"\nroles = []\ntoken_env = \"A\"\ntoken_file = \"a\"\n"
        ))
        .unwrap_err();
        let text = messages(&errors);
        for want in [
            "line 4, column 15: public_read \"some\"",
            "line 5, column 10: hosts",
            "line 6, column 12: origins",
            "line 9, column 10: api token \"a\": unknown role \"root\"",
            "line 10, column 9: api token \"a\": the token is shorter than 16",
            "line 12, column 8: api token \"a\" is defined twice",
            "api token \"a\" has no roles",
            "needs exactly one of token_file, token_env, token",
        ] {
            assert!(text.iter().any(|m| m.contains(want)), "{want}: {text:#?}");
        }
    }

    #[test]
    fn warns_of_literal_tokens_and_exposed_listeners() {
        let c = parse(&format!(
            "{BASE}[[api_token]]\nname = \"ci\"\nroles = [\"force\"]\ntoken = \"0123456789abcdef0\"\n"
        ))
        .unwrap();
        let text = messages(&c.api.warnings);
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(text[0].starts_with("line 6, column 9: api token \"ci\" is written in the config"));
        assert!(matches!(c.api.tokens[0].secret, TokenSecret::Digest(_)));
        assert!(!format!("{c:?}").contains("0123456789abcdef0"));

        let open = parse(&BASE.replace("[master]\n", "[master]\nhttp_listen = \"0.0.0.0:8010\"\n"))
            .unwrap();
        let text = messages(&open.api.warnings);
        assert!(
            text[0].contains("reachable from other machines and no [[api_token]]"),
            "{text:?}"
        );
        let all = parse(&format!(
            "{}[api]\npublic_read = \"all\"\n",
            BASE.replace("[master]\n", "[master]\nhttp_listen = \"[::]:8010\"\n")
        ))
        .unwrap();
        assert!(messages(&all.api.warnings)
            .iter()
            .any(|m| m.contains("open to every client")));
    }

    #[test]
    fn reads_tokens_from_files_and_refuses_unusable_ones() {
        let dir = std::env::temp_dir().join(format!("pbmaster-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t");
        std::fs::write(&file, "  0123456789abcdef\n").unwrap();
        let secret = TokenSecret::File(file.clone());
        assert_eq!(secret.digest().unwrap(), token_digest(b"0123456789abcdef"));
        std::fs::write(&file, "0123456789 abcdef\n").unwrap();
        assert!(secret.digest().unwrap_err().contains("spaces"));
        std::fs::write(&file, "\n").unwrap();
        assert!(secret.digest().unwrap_err().contains("shorter"));
        assert!(TokenSecret::File(dir.join("none")).digest().is_err());
        assert!(TokenSecret::Env("PBMASTER_TEST_UNSET_TOKEN".into())
            .digest()
            .unwrap_err()
            .contains("not set"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
