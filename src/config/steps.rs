//! `[[builder.step]]`: what a step does and how its result counts.
//!
//! One flat table for every kind, so TOML stays simple; [`StepKind::fields`] says which
//! keys each kind requires and allows, and validation reports the rest with their line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A command as a shell string or an argv list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

/// What a step does.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A command on the worker.
    #[default]
    Shell,
    /// A file from the worker to the master.
    Upload,
    /// A file from the master to the worker.
    Download,
    /// A string from the config (interpolated) to a file on the worker.
    StringDownload,
    /// A directory from the worker, as a tar stream, unpacked on the master.
    DirectoryUpload,
    Mkdir,
    Rmdir,
    /// Remove one file.
    Rm,
    Cpdir,
    /// `property` receives the 10 numbers of `os.stat()`.
    Stat,
    /// `property` receives the matching paths.
    Glob,
    /// `property` receives the names in the directory.
    Listdir,
    /// Sets `property` to `value`.
    SetProperty,
    /// Checks out a git repository with shell commands on the worker; sets
    /// `got_revision`.
    Git,
}

impl StepKind {
    /// (required keys, other allowed keys) for this kind.
    pub fn fields(self) -> (&'static [&'static str], &'static [&'static str]) {
        const SHELL_OPTS: &[&str] = &[
            "env",
            "timeout",
            "max_time",
            "logfiles",
            "interrupt_signal",
            "decode_rc",
            "property",
            "property_from",
        ];
        match self {
            StepKind::Shell => (&["command"], SHELL_OPTS),
            StepKind::Upload => (
                &["worker_src", "master_dest"],
                &["max_size", "block_size", "mode", "keep_stamp"],
            ),
            StepKind::Download => (
                &["master_src", "worker_dest"],
                &["max_size", "block_size", "mode"],
            ),
            StepKind::StringDownload => (&["content", "worker_dest"], &["mode"]),
            StepKind::DirectoryUpload => (
                &["worker_src", "master_dest"],
                &["max_size", "block_size", "compress"],
            ),
            StepKind::Mkdir | StepKind::Rmdir | StepKind::Listdir => (&["dir"], &["property"]),
            StepKind::Rm => (&["path"], &[]),
            StepKind::Cpdir => (&["from_dir", "to_dir"], &[]),
            StepKind::Stat => (&["file"], &["property"]),
            StepKind::Glob => (&["path"], &["property"]),
            StepKind::SetProperty => (&["property", "value"], &[]),
            StepKind::Git => (&["repo_url"], &["branch", "git_mode", "timeout"]),
        }
    }
}

/// `[[builder.step]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub kind: StepKind,

    // Shell.
    pub command: Option<CommandLine>,
    /// Relative to the builder's directory on the worker; also where transfers and
    /// git work.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    pub env: Option<BTreeMap<String, String>>,
    /// Seconds without output before the worker kills the command (default 1200).
    pub timeout: Option<u64>,
    /// Seconds in all before the worker kills the command.
    pub max_time: Option<u64>,
    /// Extra files the worker watches and sends as logs: name → path (from workdir).
    pub logfiles: Option<BTreeMap<String, String>>,
    /// Signal the worker kills with (`KILL`, `TERM`, `INT`, ...).
    pub interrupt_signal: Option<String>,
    /// Exit codes → results; absent codes: 0 is success, others failure.
    pub decode_rc: Option<BTreeMap<String, Spanned<String>>>,

    // Properties.
    /// The property this step sets (from output, a result, or `value`).
    pub property: Option<String>,
    /// How a shell step's stdout becomes the property: `stripped` (default), `stdout`
    /// (as is), or `regex:PATTERN` (the first group, or the whole match).
    pub property_from: Option<Spanned<String>>,
    /// For `set_property`: the value (strings are interpolated).
    pub value: Option<toml::Value>,

    // Transfers.
    pub worker_src: Option<String>,
    pub worker_dest: Option<String>,
    pub master_src: Option<String>,
    pub master_dest: Option<String>,
    pub content: Option<String>,
    /// Bytes a transfer may carry; past it the step fails.
    pub max_size: Option<u64>,
    /// Bytes per transfer call (at most 640 KiB, the wire's limit).
    pub block_size: Option<u64>,
    /// File mode as octal text, e.g. "0644".
    pub mode: Option<Spanned<String>>,
    /// Keep the worker file's timestamps on upload.
    pub keep_stamp: Option<bool>,
    /// Directory upload compression: "gz" or "bz2".
    pub compress: Option<Spanned<String>>,

    // File system commands.
    pub dir: Option<String>,
    pub path: Option<String>,
    pub from_dir: Option<String>,
    pub to_dir: Option<String>,
    pub file: Option<String>,

    // Git.
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    /// "incremental" (default: fetch into an existing clone) or "full" (fresh clone).
    pub git_mode: Option<Spanned<String>>,

    // Flow.
    /// Stop the build after this step fails.
    #[serde(default)]
    pub halt_on_failure: bool,
    /// A failure of this step makes the build fail.
    #[serde(default = "yes")]
    pub flunk_on_failure: bool,
    /// A failure of this step makes the build end in warnings (if not failed).
    #[serde(default)]
    pub warn_on_failure: bool,
    /// Run even after an earlier step halted the build (clean-up steps).
    #[serde(default)]
    pub always_run: bool,
    /// Run only if this holds: `A == B`, `A != B`, or a bare value that is true
    /// unless empty, "0" or "false"; both sides are interpolated first.
    pub do_step_if: Option<String>,
}

impl StepConfig {
    /// Which optional keys are set, by name.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("command", self.command.is_some()),
            ("env", self.env.is_some()),
            ("timeout", self.timeout.is_some()),
            ("max_time", self.max_time.is_some()),
            ("logfiles", self.logfiles.is_some()),
            ("interrupt_signal", self.interrupt_signal.is_some()),
            ("decode_rc", self.decode_rc.is_some()),
            ("property", self.property.is_some()),
            ("property_from", self.property_from.is_some()),
            ("value", self.value.is_some()),
            ("worker_src", self.worker_src.is_some()),
            ("worker_dest", self.worker_dest.is_some()),
            ("master_src", self.master_src.is_some()),
            ("master_dest", self.master_dest.is_some()),
            ("content", self.content.is_some()),
            ("max_size", self.max_size.is_some()),
            ("block_size", self.block_size.is_some()),
            ("mode", self.mode.is_some()),
            ("keep_stamp", self.keep_stamp.is_some()),
            ("compress", self.compress.is_some()),
            ("dir", self.dir.is_some()),
            ("path", self.path.is_some()),
            ("from_dir", self.from_dir.is_some()),
            ("to_dir", self.to_dir.is_some()),
            ("file", self.file.is_some()),
            ("repo_url", self.repo_url.is_some()),
            ("branch", self.branch.is_some()),
            ("git_mode", self.git_mode.is_some()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect()
    }

    /// The name shown for step `number` (1-based).
    pub fn display_name(&self, number: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("step {number}"))
    }

    /// Seconds without output before the worker kills a command.
    pub fn timeout_or_default(&self) -> u64 {
        self.timeout.unwrap_or(1200)
    }
}

fn default_workdir() -> String {
    "build".into()
}
fn yes() -> bool {
    true
}
