//! `[cluster]`: this master's name and lease among the masters that share one
//! PostgreSQL database (see `crate::cluster`).

use super::error::Problems;
use super::file::ClusterTable;
use super::retention::parse_duration;
use std::time::Duration;

/// `[cluster]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Unique among the masters of the installation: builds, workers and instances
    /// are recorded as this master's.
    pub name: String,
    /// How long the master's lease lasts: a master that has not renewed it for this
    /// long is taken over (its builds run again elsewhere). Renewed every third.
    pub lease: Duration,
}

impl ClusterConfig {
    /// The default lease: a master is taken over about seven to fourteen seconds
    /// after it stops answering.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
}

/// Shorter leases would be lost to a slow commit or a pause.
const MIN_LEASE: Duration = Duration::from_secs(3);

pub(super) fn cluster(
    table: Option<&ClusterTable>,
    postgres: bool,
    problems: &mut Problems,
) -> Option<ClusterConfig> {
    let t = table?;
    if !postgres {
        problems.at(
            t.name.span(),
            "[cluster] needs a PostgreSQL store ([store] url): masters share one database",
        );
    }
    let name = t.name.get_ref().trim();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        problems.at(
            t.name.span(),
            "cluster name: 1 to 64 letters, digits, '-', '_' or '.'",
        );
    }
    let lease = match &t.lease {
        None => ClusterConfig::DEFAULT_LEASE,
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d >= MIN_LEASE => d,
            Ok(_) => {
                problems.at(v.span(), "cluster lease: at least 3s");
                ClusterConfig::DEFAULT_LEASE
            }
            Err(e) => {
                problems.at(v.span(), format!("cluster lease: {e}"));
                ClusterConfig::DEFAULT_LEASE
            }
        },
    };
    Some(ClusterConfig {
        name: name.to_owned(),
        lease,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str =
        "[master]\ndata_dir = \"d\"\n[store]\nurl = \"postgres://pb@127.0.0.1:5432/pb\"\n";

    #[test]
    fn a_name_and_a_lease() {
        let c = parse(&format!(
            "{BASE}[cluster]\nname = \"m-1\"\nlease = \"5s\"\n"
        ))
        .expect("config");
        let cluster = c.cluster.expect("cluster");
        assert_eq!(cluster.name, "m-1");
        assert_eq!(cluster.lease.as_secs(), 5);
        let c = parse(&format!("{BASE}[cluster]\nname = \"m2\"\n")).expect("config");
        assert_eq!(c.cluster.expect("cluster").lease.as_secs(), 10);
        assert!(parse(BASE).expect("config").cluster.is_none());
        let alone = parse("[master]\ndata_dir = \"d\"\n[cluster]\nname = \"m1\"\n")
            .expect_err("SQLite is one master's");
        assert!(
            format!("{alone:?}").contains("needs a PostgreSQL store"),
            "{alone:?}"
        );
    }

    #[test]
    fn bad_names_and_leases_are_refused_where_written() {
        for (body, says) in [
            ("name = \"a b\"", "cluster name"),
            ("name = \"\"", "cluster name"),
            ("name = \"m\"\nlease = \"1s\"", "at least 3s"),
            ("name = \"m\"\nlease = \"soon\"", "cluster lease"),
        ] {
            let e = parse(&format!("{BASE}[cluster]\n{body}\n")).expect_err(body);
            let text = format!("{e:?}");
            assert!(text.contains(says), "{body}: {text}");
        }
    }
}
