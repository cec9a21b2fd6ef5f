//! `[[builder.step]]`: what a step does and how its result counts.

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

/// `[[builder.step]]`: a shell step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub name: Option<String>,
    pub command: CommandLine,
    /// Relative to the builder's directory on the worker.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds without output before the worker kills the command.
    #[serde(default = "default_timeout")]
    pub timeout: Option<u64>,
    /// Seconds in all before the worker kills the command.
    pub max_time: Option<u64>,
    /// Extra files the worker watches and sends as logs: name → path (from workdir).
    #[serde(default)]
    pub logfiles: BTreeMap<String, String>,
    /// Signal the worker kills with (`KILL`, `TERM`, `INT`, ...).
    pub interrupt_signal: Option<String>,
    /// Stop the build after this step fails.
    #[serde(default)]
    pub halt_on_failure: bool,
    /// A failure of this step makes the build fail.
    #[serde(default = "yes")]
    pub flunk_on_failure: bool,
    /// A failure of this step makes the build end in warnings (if not failed).
    #[serde(default)]
    pub warn_on_failure: bool,
    /// Exit codes → results; absent codes: 0 is success, others failure.
    #[serde(default)]
    pub decode_rc: BTreeMap<String, Spanned<String>>,
}

fn default_workdir() -> String {
    "build".into()
}
fn default_timeout() -> Option<u64> {
    Some(1200)
}
fn yes() -> bool {
    true
}
