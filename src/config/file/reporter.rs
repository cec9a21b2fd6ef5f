//! `[[reporter]]` as written.

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// `[[reporter]]`: one outside service told about builds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReporterTable {
    pub name: Spanned<String>,
    /// `github`, `gitlab`, `email` or `http`.
    pub kind: Spanned<String>,
    /// Builders reported on; all when absent.
    pub builders: Option<Vec<Spanned<String>>>,
    /// Results reported on (finished builds); all when absent.
    pub results: Option<Vec<Spanned<String>>>,
    /// `started`, `finished`.
    pub events: Option<Vec<Spanned<String>>>,
    /// The API base (GitHub Enterprise, a self-hosted GitLab) or the push URL (`http`).
    pub url: Option<Spanned<String>>,
    /// `%(secret:NAME)s`: the API token (`github`, `gitlab`, optional for `http`).
    pub token: Option<Spanned<String>>,
    /// The status's context (GitHub) or name (GitLab); `%(prop:NAME)s` allowed.
    pub context: Option<Spanned<String>>,
    /// Where the master's web pages are, for links to builds.
    pub web_url: Option<Spanned<String>>,
    /// Seconds a report keeps being retried before it is given up.
    pub max_age: Option<Spanned<u64>>,
    /// `email`: the SMTP server, `host:port`.
    pub smtp: Option<Spanned<String>>,
    /// `email`: `starttls` (the default), `tls` or `none`.
    pub smtp_security: Option<Spanned<String>>,
    pub smtp_user: Option<Spanned<String>>,
    /// `%(secret:NAME)s`.
    pub smtp_password: Option<Spanned<String>>,
    /// `email`: a PEM file of extra roots to trust (a private CA).
    pub smtp_ca_file: Option<PathBuf>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Vec<Spanned<String>>>,
}
