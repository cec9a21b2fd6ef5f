//! `[[scheduler]]`: what starts builds besides the API.

use serde::Deserialize;
use toml::Spanned;

/// `[[scheduler]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub name: Spanned<String>,
    /// Only `force` for now: builds on request through the API and CLI.
    pub kind: Spanned<String>,
    pub builders: Vec<Spanned<String>>,
}
