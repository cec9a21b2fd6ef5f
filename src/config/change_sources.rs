//! `[[change_source]]`: repositories the master polls for new commits. The URL and
//! branch names are handed to git, so anything that could read as an option or a
//! revision expression is refused here.

use super::error::Problems;
use super::file::ChangeSourceTable;
use crate::changes::gitpoll::parse::check_branch;
use std::collections::HashSet;
use std::time::Duration;

/// Polls when `interval` is not given: buildbot's GitPoller default.
const DEFAULT_INTERVAL: u64 = 600;
/// Time one git command may take when `timeout` is not given.
const DEFAULT_TIMEOUT: u64 = 300;
/// Longest repository URL or path.
const MAX_REPO: usize = 4096;

/// A git repository the master follows.
#[derive(Debug, Clone, PartialEq)]
pub struct GitPollerConfig {
    /// Unique; names its remembered heads in the store and its mirror folder.
    pub name: String,
    pub repo: String,
    /// `None`: every branch.
    pub branches: Option<Vec<String>>,
    pub interval: Duration,
    pub timeout: Duration,
    pub project: String,
}

impl GitPollerConfig {
    /// A repository given as a relative path is relative to the config's folder (a
    /// URL, `host:path` included, is left alone).
    pub(super) fn resolve_paths(&mut self, base: &std::path::Path) {
        let url = self.repo.contains("://")
            || self
                .repo
                .split_once(':')
                .is_some_and(|(host, _)| !host.contains('/'));
        let path = std::path::Path::new(&self.repo);
        if !url && path.is_relative() {
            self.repo = base.join(path).to_string_lossy().into_owned();
        }
    }
}

/// Every `[[change_source]]`; `None` when one is wrong (the problems say why).
pub(super) fn change_sources(
    tables: &[ChangeSourceTable],
    problems: &mut Problems,
) -> Option<Vec<GitPollerConfig>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for t in tables {
        if !names.insert(t.name.get_ref().as_str()) {
            problems.at(
                t.name.span(),
                format!("change source {:?} is defined twice", t.name.get_ref()),
            );
        }
        out.push(git(t, problems));
    }
    out.into_iter().collect()
}

fn git(t: &ChangeSourceTable, problems: &mut Problems) -> Option<GitPollerConfig> {
    let name = t.name.get_ref();
    let before = problems.len();
    if t.kind.get_ref() != "git" {
        problems.at(
            t.kind.span(),
            format!(
                "change source {name:?}: kind {:?} is not known (known: git)",
                t.kind.get_ref()
            ),
        );
    }
    if let Err(e) = check_name(name) {
        problems.at(t.name.span(), format!("change source {name:?}: {e}"));
    }
    if let Err(e) = check_repo(t.repo.get_ref()) {
        problems.at(t.repo.span(), format!("change source {name:?}: repo {e}"));
    }
    let branches = t.branches.as_ref().map(|list| {
        if list.get_ref().is_empty() {
            problems.at(
                list.span(),
                format!(
                    "change source {name:?}: branches is empty (leave it out for every branch)"
                ),
            );
        }
        for b in list.get_ref() {
            if let Err(e) = check_branch(b.get_ref()) {
                problems.at(b.span(), format!("change source {name:?}: {e}"));
            }
        }
        list.get_ref().iter().map(|b| b.get_ref().clone()).collect()
    });
    let seconds =
        |v: &Option<toml::Spanned<u64>>, what: &str, default: u64, problems: &mut Problems| match v
        {
            Some(s) if *s.get_ref() == 0 || *s.get_ref() > 86_400 * 7 => {
                problems.at(
                    s.span(),
                    format!("change source {name:?}: {what} must be 1 to 604800 seconds"),
                );
                default
            }
            Some(s) => *s.get_ref(),
            None => default,
        };
    let interval = seconds(&t.interval, "interval", DEFAULT_INTERVAL, problems);
    let timeout = seconds(&t.timeout, "timeout", DEFAULT_TIMEOUT, problems);
    (problems.len() == before).then(|| GitPollerConfig {
        name: name.clone(),
        repo: t.repo.get_ref().clone(),
        branches,
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        project: t.project.clone().unwrap_or_default(),
    })
}

/// The name is a folder name under the data folder.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("the name must be 1 to 100 letters, digits, '.', '_' or '-', not starting with '.' or '-'".into())
    }
}

/// A URL or path: not an option, no control characters, no transport that runs a
/// program.
pub fn check_repo(repo: &str) -> Result<(), String> {
    if repo.is_empty() || repo.len() > MAX_REPO {
        return Err(format!("must have 1 to {MAX_REPO} bytes"));
    }
    if repo.starts_with('-') {
        return Err(format!("{repo:?} starts with '-'"));
    }
    if repo.chars().any(char::is_control) {
        return Err("has a control character".into());
    }
    // `<transport>::<address>` makes git run `git-remote-<transport>`.
    let helper = repo.split_once("::").is_some_and(|(t, _)| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-_".contains(&b))
    });
    if helper {
        return Err("uses a remote helper transport (\"...::\"), which git poller refuses".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = "[master]\ndata_dir = \"data\"\n";

    fn errors(extra: &str) -> Vec<String> {
        match parse(&format!("{BASE}{extra}")) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_a_git_poller() {
        let c = parse(&format!(
            "{BASE}[[change_source]]\nname = \"app\"\nkind = \"git\"\nrepo = \"https://example.org/app.git\"\nbranches = [\"main\", \"release/1\"]\ninterval = 60\nproject = \"app\"\n\n[[change_source]]\nname = \"all\"\nkind = \"git\"\nrepo = \"/srv/git/x.git\"\n"
        ))
        .unwrap();
        assert_eq!(c.change_sources.len(), 2);
        let app = &c.change_sources[0];
        assert_eq!(
            app.branches.as_deref(),
            Some(&["main".to_string(), "release/1".to_string()][..])
        );
        assert_eq!(app.interval.as_secs(), 60);
        assert_eq!(c.change_sources[1].branches, None);
        assert_eq!(c.change_sources[1].interval.as_secs(), 600);
    }

    #[test]
    fn rejects_hostile_urls_branches_and_names() {
        let e = errors(
            "[[change_source]]\nname = \"../x\"\nkind = \"git\"\nrepo = \"--upload-pack=touch /tmp/p\"\nbranches = [\"-f\", \"a..b\"]\n\n[[change_source]]\nname = \"y\"\nkind = \"svn\"\nrepo = \"ext::sh -c touch% /tmp/p\"\ninterval = 0\n",
        );
        for expected in [
            "the name must be",
            "starts with '-'",
            "branch \"-f\"",
            "branch \"a..b\"",
            "kind \"svn\" is not known",
            "remote helper",
            "interval must be",
        ] {
            assert!(e.iter().any(|e| e.contains(expected)), "{expected}: {e:?}");
        }
    }
}
