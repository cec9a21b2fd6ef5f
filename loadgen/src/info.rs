//! What a buildbot-worker 4.3.0 tells the master about itself, so masters treat the
//! simulated worker exactly like a real one (command versions decide argument shapes).

use crate::link::text;
use pbwire::jelly::Value;

/// The version a real worker reports.
pub const VERSION: &str = "4.3.0";

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
pub fn commands() -> Value {
    Value::Dict(COMMANDS.iter().map(|c| (text(c), text("3.3"))).collect())
}

/// `getWorkerInfo()`: the dict a 4.3.0 worker returns (info files, OS, basedir,
/// command versions), with a tiny environment.
pub fn worker_info(name: &str) -> Value {
    Value::Dict(vec![
        (text("admin"), text("pbmaster-loadgen <loadgen@localhost>")),
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
            text(&format!("/nonexistent/loadgen/{name}")),
        ),
        (text("numcpus"), Value::int(1)),
        (text("version"), text(VERSION)),
        (text("worker_commands"), commands()),
        (text("delete_leftover_dirs"), Value::Bool(false)),
    ])
}
