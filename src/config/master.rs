//! `[master]`: where the master listens, where it keeps its data, connection timings.

use super::error::Problems;
use super::file::MasterTable;
use std::path::PathBuf;
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
