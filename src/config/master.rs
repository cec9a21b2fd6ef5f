//! `[master]`: where the master listens, where it keeps its data, connection timings.

use super::error::Problems;
use super::file::{MasterTable, PbTlsTable};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `[master]`.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where workers connect (PB), checked to be a socket address.
    pub pb_listen: String,
    /// The HTTP JSON API, used by the CLI; checked to be a socket address.
    pub http_listen: String,
    /// Database and build data; absolute once loaded from a file.
    pub data_dir: PathBuf,
    /// Connections admitted at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Seconds between the master's keepalive calls to each worker.
    pub keepalive_interval: u64,
    /// Seconds a worker may stay silent after a keepalive call before its connection
    /// is declared dead.
    pub keepalive_timeout: u64,
    /// Seconds running builds get to finish after SIGTERM before they are interrupted.
    pub shutdown_grace: u64,
    /// Seconds a connection may stay without a login attempt.
    pub login_timeout: u64,
    /// TLS on the PB port; `None` is plain TCP.
    pub pb_tls: Option<PbTls>,
    /// How the master writes its log (`--log-format` wins over it).
    pub log_format: LogFormat,
}

/// `text` for people, `json` (one object a line) for log shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[master] pb_tls`: the files are read at start (see `crate::tls`), so a check on
/// another machine does not need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The line of the setting, for errors found when the files are read.
    pub line: usize,
}

impl PbTls {
    /// Makes relative files relative to `base` (the config file's folder).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.cert_file, &mut self.key_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// `[master]` with its defaults.
pub(super) fn master(t: &MasterTable, problems: &mut Problems) -> MasterConfig {
    MasterConfig {
        pb_listen: address(
            t.pb_listen.as_ref(),
            "0.0.0.0:9989",
            "pb_listen is not an address like 0.0.0.0:9989",
            problems,
        ),
        http_listen: address(
            t.http_listen.as_ref(),
            "127.0.0.1:8010",
            "http_listen is not an address like 127.0.0.1:8010",
            problems,
        ),
        data_dir: t.data_dir.clone(),
        max_connections: t.max_connections,
        keepalive_interval: t.keepalive_interval,
        keepalive_timeout: t.keepalive_timeout,
        shutdown_grace: t.shutdown_grace,
        login_timeout: t.login_timeout,
        pb_tls: t.pb_tls.as_ref().map(|t| pb_tls(t, problems)),
        log_format: log_format(t.log_format.as_ref(), problems),
    }
}

fn log_format(value: Option<&Spanned<String>>, problems: &mut Problems) -> LogFormat {
    match value.map(|v| v.get_ref().as_str()) {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            if let Some(v) = value {
                problems.at(v.span(), "log_format is \"text\" or \"json\"");
            }
            LogFormat::Text
        }
    }
}

fn pb_tls(table: &Spanned<PbTlsTable>, problems: &mut Problems) -> PbTls {
    let t = table.get_ref();
    for (key, path) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
        if path.get_ref().as_os_str().is_empty() {
            problems.at(path.span(), format!("pb_tls.{key} is empty"));
        }
    }
    PbTls {
        cert_file: t.cert_file.get_ref().clone(),
        key_file: t.key_file.get_ref().clone(),
        line: problems.position(table.span().start).0,
    }
}

fn address(
    value: Option<&Spanned<String>>,
    default: &str,
    wrong: &str,
    problems: &mut Problems,
) -> String {
    let Some(value) = value else {
        return default.to_owned();
    };
    if value.get_ref().parse::<std::net::SocketAddr>().is_err() {
        problems.at(value.span(), wrong);
    }
    value.get_ref().clone()
}
