//! `[[builder.step]]` as written: one flat table for every kind, so the TOML stays
//! simple. `config::steps` reads from it the keys its kind takes and reports the rest.

use crate::config::CommandLine;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The `kind` key.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    #[default]
    Shell,
    Upload,
    Download,
    StringDownload,
    DirectoryUpload,
    Mkdir,
    Rmdir,
    Rm,
    Cpdir,
    Stat,
    Glob,
    Listdir,
    SetProperty,
    Git,
}

/// Every key a step may have; which apply depends on `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTable {
    pub name: Option<String>,
    #[serde(default)]
    pub kind: StepKind,

    pub command: Option<CommandLine>,
    pub workdir: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub timeout: Option<u64>,
    pub max_time: Option<u64>,
    pub logfiles: Option<BTreeMap<String, String>>,
    pub interrupt_signal: Option<String>,
    pub decode_rc: Option<BTreeMap<String, Spanned<String>>>,

    pub property: Option<String>,
    pub property_from: Option<Spanned<String>>,
    pub value: Option<toml::Value>,

    pub worker_src: Option<String>,
    pub worker_dest: Option<String>,
    pub master_src: Option<String>,
    pub master_dest: Option<String>,
    pub content: Option<String>,
    pub max_size: Option<u64>,
    pub block_size: Option<Spanned<u64>>,
    pub mode: Option<Spanned<String>>,
    pub keep_stamp: Option<bool>,
    pub compress: Option<Spanned<String>>,

    pub dir: Option<String>,
    pub path: Option<String>,
    pub from_dir: Option<String>,
    pub to_dir: Option<String>,
    pub file: Option<String>,

    pub repo_url: Option<String>,
    pub branch: Option<String>,
    pub git_mode: Option<Spanned<String>>,

    #[serde(default)]
    pub halt_on_failure: bool,
    #[serde(default = "yes")]
    pub flunk_on_failure: bool,
    #[serde(default)]
    pub warn_on_failure: bool,
    #[serde(default)]
    pub always_run: bool,
    pub do_step_if: Option<String>,
}

impl StepTable {
    /// The kind-specific keys that are set, by name (the keys every kind takes are not
    /// among them).
    pub fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("command", self.command.is_some()),
            ("workdir", self.workdir.is_some()),
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
}

fn yes() -> bool {
    true
}
