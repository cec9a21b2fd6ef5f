//! A builder's steps as the runner takes them: one struct per kind, holding only the
//! keys that kind takes, each already parsed (modes, compressions, result maps,
//! regular expressions). [`read`] makes them from the file's flat step tables.

mod read;

pub(super) use read::step;

use crate::model::BuildResult;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// One `[[builder.step]]`: what it does and how its result counts.
#[derive(Debug, Clone)]
pub struct StepConfig {
    /// As configured, or `step N`.
    pub name: String,
    /// Stop the build after this step fails.
    pub halt_on_failure: bool,
    /// A failure of this step makes the build fail.
    pub flunk_on_failure: bool,
    /// A failure of this step makes the build end in warnings (if not failed).
    pub warn_on_failure: bool,
    /// Run even after an earlier step halted the build (clean-up steps).
    pub always_run: bool,
    /// Run only if this holds: `A == B`, `A != B`, or a bare value that is true
    /// unless empty, "0" or "false"; both sides are interpolated first.
    pub do_step_if: Option<String>,
    pub action: Step,
}

/// What a step does. Strings are interpolated from the build's properties when the
/// step runs; worker paths are relative to the builder's directory, master paths to
/// the data folder.
#[derive(Debug, Clone)]
pub enum Step {
    /// A command on the worker.
    Shell(ShellStep),
    /// A file from the worker to the master.
    Upload(UploadStep),
    /// A file from the master to the worker.
    Download(DownloadStep),
    /// A string from the config to a file on the worker.
    StringDownload(StringDownloadStep),
    /// A directory from the worker, as a tar stream, unpacked on the master.
    DirectoryUpload(DirectoryUploadStep),
    Mkdir(DirStep),
    Rmdir(DirStep),
    /// `property` receives the names in the directory.
    Listdir(ListdirStep),
    /// Removes one file.
    Rm(RmStep),
    Cpdir(CpdirStep),
    /// `property` receives the 10 numbers of `os.stat()`.
    Stat(StatStep),
    /// `property` receives the matching paths.
    Glob(GlobStep),
    SetProperty(SetPropertyStep),
    /// A checkout made of commands on the worker; sets `got_revision`.
    Git(GitStep),
}

/// A command as a shell string or an argv list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

/// Seconds without output before the worker kills a command, unless configured.
pub const DEFAULT_TIMEOUT: u64 = 1200;

/// `kind = "shell"`.
#[derive(Debug, Clone)]
pub struct ShellStep {
    pub command: CommandLine,
    pub workdir: String,
    /// Added to the worker's environment.
    pub env: BTreeMap<String, String>,
    /// Seconds without output before the worker kills the command.
    pub timeout: u64,
    /// Seconds in all before the worker kills the command.
    pub max_time: Option<u64>,
    /// Extra files the worker watches and sends as logs: name → path (from workdir).
    pub logfiles: BTreeMap<String, String>,
    /// Signal the worker kills with (`KILL`, `TERM`, `INT`, ...).
    pub interrupt_signal: Option<String>,
    pub decode_rc: DecodeRc,
    /// The property set from stdout, and how.
    pub property: Option<OutputProperty>,
}

/// Exit codes → results; codes not listed: 0 is success, others failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeRc(pub BTreeMap<i64, BuildResult>);

impl DecodeRc {
    pub fn result(&self, code: i64) -> BuildResult {
        match self.0.get(&code) {
            Some(r) => *r,
            None if code == 0 => BuildResult::Success,
            None => BuildResult::Failure,
        }
    }
}

/// A property a shell step sets from its stdout.
#[derive(Debug, Clone)]
pub struct OutputProperty {
    pub name: String,
    pub from: PropertySource,
}

/// How stdout becomes the property (`property_from`).
#[derive(Debug, Clone)]
pub enum PropertySource {
    /// Without surrounding white space (the default).
    Stripped,
    /// As is.
    Stdout,
    /// `regex:PATTERN`: the first group, or the whole match.
    Regex(Regex),
}

/// A file's permission bits, written in octal (`"0644"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

/// How a directory upload is compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Bzip2,
}

impl Compression {
    /// The worker's name for it.
    pub fn wire_name(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gz"),
            Compression::Bzip2 => Some("bz2"),
        }
    }
}

/// How big a transfer may be, and in what pieces.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransferLimits {
    /// Bytes the transfer may carry; past it the step fails.
    pub max_size: Option<u64>,
    /// Bytes per transfer call, 1..=640 KiB (the wire's limit); default per kind.
    pub block_size: Option<u64>,
}

/// `kind = "upload"`.
#[derive(Debug, Clone)]
pub struct UploadStep {
    /// From `workdir`.
    pub worker_src: String,
    pub master_dest: String,
    pub workdir: String,
    pub limits: TransferLimits,
    pub mode: Option<FileMode>,
    /// Keep the worker file's timestamps.
    pub keep_stamp: bool,
}

/// `kind = "download"`.
#[derive(Debug, Clone)]
pub struct DownloadStep {
    pub master_src: String,
    /// From `workdir`.
    pub worker_dest: String,
    pub workdir: String,
    pub limits: TransferLimits,
    pub mode: Option<FileMode>,
}

/// `kind = "string_download"`.
#[derive(Debug, Clone)]
pub struct StringDownloadStep {
    pub content: String,
    /// From `workdir`.
    pub worker_dest: String,
    pub workdir: String,
    pub mode: Option<FileMode>,
}

/// `kind = "directory_upload"`.
#[derive(Debug, Clone)]
pub struct DirectoryUploadStep {
    /// From `workdir`.
    pub worker_src: String,
    pub master_dest: String,
    pub workdir: String,
    pub compress: Compression,
    pub limits: TransferLimits,
}

/// `kind = "mkdir"` and `kind = "rmdir"`.
#[derive(Debug, Clone)]
pub struct DirStep {
    pub dir: String,
}

/// `kind = "listdir"`.
#[derive(Debug, Clone)]
pub struct ListdirStep {
    pub dir: String,
    pub property: Option<String>,
}

/// `kind = "rm"`.
#[derive(Debug, Clone)]
pub struct RmStep {
    pub path: String,
}

/// `kind = "cpdir"`.
#[derive(Debug, Clone)]
pub struct CpdirStep {
    pub from_dir: String,
    pub to_dir: String,
}

/// `kind = "stat"`.
#[derive(Debug, Clone)]
pub struct StatStep {
    pub file: String,
    pub property: Option<String>,
}

/// `kind = "glob"`.
#[derive(Debug, Clone)]
pub struct GlobStep {
    /// The pattern.
    pub path: String,
    pub property: Option<String>,
}

/// `kind = "set_property"`.
#[derive(Debug, Clone)]
pub struct SetPropertyStep {
    pub property: String,
    /// A string is interpolated; other values are set as they are.
    pub value: Json,
}

/// `kind = "git"`.
#[derive(Debug, Clone)]
pub struct GitStep {
    pub repo_url: String,
    /// Default: the remote's HEAD.
    pub branch: Option<String>,
    pub mode: GitMode,
    pub workdir: String,
    /// Seconds without output before the worker kills one of its commands.
    pub timeout: u64,
}

/// How the git step gets its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GitMode {
    /// Fetch into the existing clone, if there is one.
    #[default]
    Incremental,
    /// Remove the directory and clone afresh.
    Full,
}
