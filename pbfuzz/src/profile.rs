//! Targets: where the server is, how to log in, which call the cases mutate and probe
//! with, and which valid calls to make first so that the cases reach deeper code.
//! A TOML file, or a built-in preset (see the README for the format).

use crate::persona::Persona;
use pbwire::jelly::{self, Value};
use pbwire::notation;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// An object of the target's, as a profile names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// The root object (`b'root'` on the wire): the only one before a login.
    Root,
    /// What the login returned.
    Avatar,
    /// A fixed object id.
    Id(i64),
}

/// A call: on which object, which method, with which arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub object: Object,
    pub method: String,
    pub args: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// Pass a mind (an object of this side's) with the login, as buildbot workers do.
    pub mind: bool,
}

/// A resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub address: SocketAddr,
    /// Without one, the cases go to the root object of an unauthenticated session.
    pub login: Option<Login>,
    /// How this side answers the target's calls.
    pub persona: Persona,
    /// The call the cases mutate; sent valid after each case as the probe.
    pub call: Call,
    /// Valid calls made after the login, before each case; their answers are awaited.
    pub script: Vec<Call>,
}

/// The names of the built-in profiles.
pub const PRESETS: &[&str] = &["buildbot-worker", "twisted-echo", "anonymous"];

/// The TOML form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    address: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default = "yes")]
    mind: bool,
    #[serde(default)]
    persona: Option<String>,
    call: Option<CallFile>,
    #[serde(default)]
    script: Vec<CallFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallFile {
    object: Option<String>,
    method: String,
    #[serde(default)]
    args: String,
}

fn yes() -> bool {
    true
}

const DEFAULT_ADDRESS: &str = "127.0.0.1:8789";

impl Profile {
    /// A preset by name, or a TOML file by path.
    pub fn find(name_or_path: &str) -> Result<Profile, String> {
        if let Some(p) = Profile::preset(name_or_path) {
            return Ok(p);
        }
        let text = std::fs::read_to_string(Path::new(name_or_path)).map_err(|e| {
            format!(
                "{name_or_path}: not a preset ({}) nor a readable file: {e}",
                PRESETS.join(", ")
            )
        })?;
        Profile::parse(&text).map_err(|e| format!("{name_or_path}: {e}"))
    }

    /// A built-in profile:
    /// - `buildbot-worker`: logs in as a buildbot worker (`fuzz`/`pass` unless told
    ///   otherwise) with a mind, answers the master's attach calls as buildbot-worker
    ///   4.3.0 does, mutates `keepalive()` on the avatar; address 127.0.0.1:9989;
    /// - `twisted-echo`: a Twisted PB service behind a cred portal (`alice`/`secret`),
    ///   mutating `echo()` on the avatar;
    /// - `anonymous`: no login, mutating `echo()` on the root object.
    pub fn preset(name: &str) -> Option<Profile> {
        let text = match name {
            "buildbot-worker" => {
                "address = '127.0.0.1:9989'\nusername = 'fuzz'\npassword = 'pass'\n\
                 persona = 'buildbot-worker'\ncall = { method = 'keepalive' }\n"
            }
            "twisted-echo" => {
                "username = 'alice'\npassword = 'secret'\ncall = { method = 'echo' }\n"
            }
            "anonymous" => "call = { object = 'root', method = 'echo' }\n",
            _ => return None,
        };
        Profile::parse(text).ok()
    }

    /// A profile from its TOML text.
    pub fn parse(text: &str) -> Result<Profile, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let address = f.address.as_deref().unwrap_or(DEFAULT_ADDRESS);
        let address = address
            .parse()
            .map_err(|e| format!("address {address:?}: {e}"))?;
        let login = match (f.username, f.password) {
            (Some(username), password) => Some(Login {
                username,
                password: password.unwrap_or_default(),
                mind: f.mind,
            }),
            (None, None) => None,
            (None, Some(_)) => return Err("a password without a username".into()),
        };
        let persona = match f.persona.as_deref() {
            None | Some("plain") => Persona::Plain,
            Some("buildbot-worker") => Persona::BuildbotWorker,
            Some(other) => {
                return Err(format!(
                    "unknown persona {other:?} (plain, buildbot-worker)"
                ))
            }
        };
        let default_object = if login.is_some() { "avatar" } else { "root" };
        let resolve = |c: CallFile| -> Result<Call, String> {
            let object = match c.object.as_deref().unwrap_or(default_object) {
                "root" => Object::Root,
                "avatar" if login.is_some() => Object::Avatar,
                "avatar" => return Err(format!("{}: the avatar needs a login", c.method)),
                id => Object::Id(id.parse().map_err(|_| {
                    format!("{}: object {id:?} is not root, avatar or an id", c.method)
                })?),
            };
            Ok(Call {
                object,
                args: args(&c.args).map_err(|e| format!("{}: args: {e}", c.method))?,
                method: c.method,
            })
        };
        let call = resolve(f.call.unwrap_or(CallFile {
            object: None,
            method: "echo".into(),
            args: String::new(),
        }))?;
        let script = f
            .script
            .into_iter()
            .map(resolve)
            .collect::<Result<_, _>>()?;
        Ok(Profile {
            address,
            login,
            persona,
            call,
            script,
        })
    }
}

/// Arguments in notation: each top-level expression is one jelly-encoded argument,
/// e.g. `1 b'bytes' (b'unicode' "text") (list 1 2) (None)`.
pub fn args(text: &str) -> Result<Vec<Value>, String> {
    let elements = notation::parse(text).map_err(|e| e.to_string())?;
    elements
        .iter()
        .map(|e| jelly::decode(e).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse() {
        for name in PRESETS {
            assert!(Profile::preset(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_file_with_a_script() {
        let p = Profile::parse(
            r#"
            address = "127.0.0.1:1234"
            username = "alice"
            password = "secret"
            mind = false
            [call]
            method = "echo"
            args = "1 (b'unicode' \"x\")"
            [[script]]
            object = "root"
            method = "hello"
            args = "(list 1 2)"
            "#,
        );
        let p = match p {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.address.port(), 1234);
        assert_eq!(p.login.as_ref().map(|l| l.mind), Some(false));
        assert_eq!(p.call.object, Object::Avatar);
        assert_eq!(p.call.args, vec![Value::int(1), Value::text("x")]);
        assert_eq!(p.script[0].object, Object::Root);
        assert_eq!(
            p.script[0].args,
            vec![Value::List(vec![Value::int(1), Value::int(2)])]
        );
        assert!(Profile::parse("call = { method = 'x' }\nusername = 'u'\nbogus = 1").is_err());
        assert!(Profile::parse("call = { object = 'avatar', method = 'x' }").is_err());
    }
}
