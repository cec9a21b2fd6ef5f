//! `[hooks.github]` and `[hooks.gitlab]` as written.

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// `[hooks]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksTable {
    pub github: Option<Spanned<GitHubHookTable>>,
    pub gitlab: Option<Spanned<GitLabHookTable>>,
}

/// `[hooks.github]`: the key of the `X-Hub-Signature-256` HMAC.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubHookTable {
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub insecure: Option<Spanned<bool>>,
}

/// `[hooks.gitlab]`: the `X-Gitlab-Token` value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitLabHookTable {
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    pub insecure: Option<Spanned<bool>>,
}
