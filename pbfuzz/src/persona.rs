//! How this side answers the target's calls on its objects (the mind, builders), so
//! that a target that checks its peer (a buildbot master attaching a worker) lets the
//! session go on. Also used by `pbmaster-loadgen`'s simulated workers.

use pbwire::jelly::Value;
use pbwire::pb::{Call, ObjectId};

/// A peer's behaviour towards the target's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    /// `None` to every call.
    Plain,
    /// A buildbot-worker 4.3.0: worker info, commands, version and builder objects
    /// when the master attaches it; `None` to everything else.
    BuildbotWorker,
}

/// The version a real worker reports.
pub const WORKER_VERSION: &str = "4.3.0";

/// Commands buildbot-worker 4.3.0 registers, all at command-protocol version 3.3.
const COMMANDS: [&str; 14] = [
    "shell",
    "uploadFile",
    "upload_file",
    "uploadDirectory",
    "upload_directory",
    "downloadFile",
    "download_file",
    "mkdir",
    "rmdir",
    "cpdir",
    "stat",
    "glob",
    "listdir",
    "rmfile",
];

/// `getCommands()`: command name → version.
pub fn worker_commands() -> Value {
    Value::Dict(
        COMMANDS
            .iter()
            .map(|c| (Value::text(*c), Value::text("3.3")))
            .collect(),
    )
}

/// `getWorkerInfo()`: the dict a 4.3.0 worker returns (info files, OS, basedir,
/// command versions), with a tiny environment; `tool` names who simulates it.
pub fn worker_info(name: &str, tool: &str) -> Value {
    let text = |s: &str| Value::text(s);
    Value::Dict(vec![
        (text("admin"), text(&format!("{tool} <{tool}@localhost>"))),
        (text("host"), text(&format!("simulated worker {name}"))),
        (text("access_uri"), text("")),
        (text("os_id"), text("linux")),
        (text("os_name"), text("Linux")),
        (
            text("environ"),
            Value::Dict(vec![(text("PATH"), text("/usr/bin:/bin"))]),
        ),
        (text("system"), text("posix")),
        (
            text("basedir"),
            text(&format!("/nonexistent/{tool}/{name}")),
        ),
        (text("numcpus"), Value::int(1)),
        (text("version"), text(WORKER_VERSION)),
        (text("worker_commands"), worker_commands()),
        (text("delete_leftover_dirs"), Value::Bool(false)),
    ])
}

impl Persona {
    /// The answer to `call`; `mind` is this side's mind, `name` the login name, and
    /// `export` registers a new object of this side's (a builder).
    pub fn answer(
        self,
        call: &Call,
        mind: Option<i64>,
        name: &str,
        export: &mut dyn FnMut() -> Option<i64>,
    ) -> Value {
        if self == Persona::Plain
            || mind.is_none()
            || call.object != ObjectId::Id(mind.unwrap_or(0))
        {
            return Value::None;
        }
        match call.method.as_ref() {
            b"getWorkerInfo" => worker_info(name, "pbfuzz"),
            b"getCommands" => worker_commands(),
            b"getVersion" => Value::text(WORKER_VERSION),
            b"setBuilderList" => {
                let listed = call.args.first().and_then(Value::as_seq).unwrap_or(&[]);
                let mut pairs = Vec::new();
                for pair in listed {
                    if let (Some(n), Some(id)) = (pair.as_seq().and_then(|p| p.first()), export()) {
                        pairs.push((n.clone(), Value::Remote(id)));
                    }
                }
                Value::Dict(pairs)
            }
            _ => Value::None,
        }
    }
}
