//! `[[scheduler]]` and `[changes]`: what starts builds besides the API, and who may
//! send changes over PB. [`check`] validates both, with the line of each problem.

use crate::model::{cron::Cron, filter::Glob};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The scheduler kinds.
pub const KINDS: [&str; 4] = ["force", "periodic", "nightly", "changes"];

/// `[[scheduler]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub name: Spanned<String>,
    /// `force` (builds on request through the API and CLI), `periodic`, `nightly` or
    /// `changes`.
    pub kind: Spanned<String>,
    pub builders: Vec<Spanned<String>>,
    /// Properties of the requests this scheduler makes.
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    /// `periodic`: seconds between builds.
    pub interval: Option<Spanned<u64>>,
    /// `nightly`: "minute hour day-of-month month day-of-week", UTC.
    pub cron: Option<Spanned<String>>,
    /// `changes`: only changes on exactly this branch.
    pub branch: Option<Spanned<String>>,
    /// `changes`: only changes whose branch matches this regular expression (whole).
    pub branch_regex: Option<Spanned<String>>,
    /// `changes`: only changes touching a file that matches one of these globs.
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
    /// `changes`: seconds without a new change before the build starts; the changes
    /// of that window make one request. 0 (default): one request per change at once.
    pub tree_stable_timer: Option<Spanned<u64>>,
}

/// `[changes]`: the PB login `buildbot sendchange --auth USER:PASS` uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesConfig {
    pub pb_user: Option<Spanned<String>>,
    pub pb_password: Option<String>,
    /// Name of an environment variable holding the password.
    pub pb_password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub pb_password_file: Option<PathBuf>,
}

impl ChangesConfig {
    /// The change source's login, if one is configured; errors name what is missing.
    pub fn pb_login(&self) -> Result<Option<(String, String)>, String> {
        let Some(user) = &self.pb_user else {
            return Ok(None);
        };
        let user = user.get_ref().clone();
        let password = if let Some(p) = &self.pb_password {
            p.clone()
        } else if let Some(var) = &self.pb_password_env {
            std::env::var(var)
                .map_err(|_| format!("[changes]: environment variable {var} is not set"))?
        } else if let Some(file) = &self.pb_password_file {
            std::fs::read_to_string(file)
                .map_err(|e| format!("[changes]: cannot read {}: {e}", file.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned()
        } else {
            return Err("[changes] has pb_user but no password".into());
        };
        Ok(Some((user, password)))
    }

    /// Makes a relative password file relative to the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(f) = &mut self.pb_password_file {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
    }
}

/// Checks the schedulers and `[changes]`. `builders` are the defined builder names;
/// `workers` the worker names (the change user must not shadow one); `at` records an
/// error at a span.
pub fn check(
    schedulers: &[SchedulerConfig],
    changes: Option<&ChangesConfig>,
    builders: &HashSet<&str>,
    workers: &HashSet<&str>,
    at: &mut impl FnMut(Range<usize>, String),
) {
    let mut names = HashSet::new();
    for s in schedulers {
        let name = s.name.get_ref();
        if !names.insert(name.as_str()) {
            at(
                s.name.span(),
                format!("scheduler {name:?} is defined twice"),
            );
        }
        check_one(s, builders, at);
    }
    if let Some(c) = changes {
        check_changes(c, workers, at);
    }
}

fn check_one(
    s: &SchedulerConfig,
    builders: &HashSet<&str>,
    at: &mut impl FnMut(Range<usize>, String),
) {
    let name = s.name.get_ref();
    let kind = s.kind.get_ref().as_str();
    if !KINDS.contains(&kind) {
        at(
            s.kind.span(),
            format!(
                "scheduler kind {kind:?} is not known (known: {})",
                KINDS.join(", ")
            ),
        );
        return;
    }
    for b in &s.builders {
        if !builders.contains(b.get_ref().as_str()) {
            at(
                b.span(),
                format!("scheduler {name:?}: no builder {:?}", b.get_ref()),
            );
        }
    }
    if kind != "force" && s.builders.is_empty() {
        at(
            s.name.span(),
            format!("scheduler {name:?} lists no builders"),
        );
    }
    // Each option belongs to one kind; elsewhere it would be silently ignored.
    let options: [(&str, Option<Range<usize>>, &str); 6] = [
        (
            "interval",
            s.interval.as_ref().map(|v| v.span()),
            "periodic",
        ),
        ("cron", s.cron.as_ref().map(|v| v.span()), "nightly"),
        ("branch", s.branch.as_ref().map(|v| v.span()), "changes"),
        (
            "branch_regex",
            s.branch_regex.as_ref().map(|v| v.span()),
            "changes",
        ),
        ("files", s.files.first().map(|v| v.span()), "changes"),
        (
            "tree_stable_timer",
            s.tree_stable_timer.as_ref().map(|v| v.span()),
            "changes",
        ),
    ];
    for (option, span, owner) in options {
        if let Some(span) = span {
            if kind != owner {
                at(
                    span,
                    format!("scheduler {name:?}: {option} is for kind = \"{owner}\" schedulers"),
                );
            }
        }
    }
    match kind {
        "periodic" => match &s.interval {
            None => at(
                s.name.span(),
                format!("scheduler {name:?}: periodic needs interval (seconds)"),
            ),
            Some(i) if *i.get_ref() == 0 => at(
                i.span(),
                format!("scheduler {name:?}: interval must be at least 1"),
            ),
            _ => {}
        },
        "nightly" => match &s.cron {
            None => at(
                s.name.span(),
                format!("scheduler {name:?}: nightly needs cron = \"M H DoM Mon DoW\""),
            ),
            Some(c) => {
                if let Err(e) = Cron::parse(c.get_ref()) {
                    at(c.span(), format!("scheduler {name:?}: cron: {e}"));
                }
            }
        },
        "changes" => {
            if let (Some(_), Some(r)) = (&s.branch, &s.branch_regex) {
                at(
                    r.span(),
                    format!("scheduler {name:?}: branch and branch_regex exclude each other"),
                );
            }
            if let Some(r) = &s.branch_regex {
                if let Err(e) = crate::model::filter::whole_regex(r.get_ref()) {
                    at(r.span(), format!("scheduler {name:?}: branch_regex: {e}"));
                }
            }
            for f in &s.files {
                if let Err(e) = Glob::new(f.get_ref()) {
                    at(f.span(), format!("scheduler {name:?}: files: {e}"));
                }
            }
        }
        _ => {}
    }
}

fn check_changes(
    c: &ChangesConfig,
    workers: &HashSet<&str>,
    at: &mut impl FnMut(Range<usize>, String),
) {
    let Some(user) = &c.pb_user else {
        return;
    };
    let sources = [
        c.pb_password.is_some(),
        c.pb_password_env.is_some(),
        c.pb_password_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        at(
            user.span(),
            "[changes] needs exactly one of pb_password, pb_password_env, pb_password_file".into(),
        );
    }
    if workers.contains(user.get_ref().as_str()) {
        at(
            user.span(),
            format!(
                "[changes]: pb_user {:?} is also a worker's name",
                user.get_ref()
            ),
        );
    }
    if user.get_ref().is_empty() {
        at(user.span(), "[changes]: pb_user is empty".into());
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = r#"
[master]
data_dir = "data"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "b1"
workers = ["w1"]

[[builder.step]]
command = "echo hi"
"#;

    fn errors(extra: &str) -> Vec<String> {
        match parse(&format!("{BASE}{extra}")) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_every_kind() {
        let extra = r#"
[changes]
pb_user = "change"
pb_password = "changepw"

[[scheduler]]
name = "p"
kind = "periodic"
interval = 3600
builders = ["b1"]
properties = { flavour = "hourly" }

[[scheduler]]
name = "n"
kind = "nightly"
cron = "30 2 * * 1-5"
builders = ["b1"]

[[scheduler]]
name = "c"
kind = "changes"
branch_regex = "release/.*"
files = ["src/**", "*.toml"]
tree_stable_timer = 60
builders = ["b1"]
"#;
        assert_eq!(errors(extra), Vec::<String>::new());
        let c = parse(&format!("{BASE}{extra}")).unwrap();
        assert_eq!(c.schedulers.len(), 3);
    }

    #[test]
    fn reports_scheduler_errors_with_lines() {
        let extra = r#"
[[scheduler]]
name = "n"
kind = "nightly"
cron = "61 * * * *"
builders = ["b1"]

[[scheduler]]
name = "c"
kind = "changes"
branch = "main"
branch_regex = "ma(in"
interval = 5
builders = ["b1"]

[[scheduler]]
name = "c"
kind = "hourly"
builders = ["b1"]
"#;
        let e = errors(extra);
        let base_lines = BASE.lines().count();
        assert!(
            e.iter()
                .any(|e| e.starts_with(&format!("line {}", base_lines + 5)) && e.contains("cron")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("exclude each other")), "{e:?}");
        assert!(e.iter().any(|e| e.contains("branch_regex:")), "{e:?}");
        assert!(
            e.iter().any(|e| e.contains("interval is for kind")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("defined twice")), "{e:?}");
        assert!(
            e.iter().any(|e| e.contains("\"hourly\" is not known")),
            "{e:?}"
        );
    }

    #[test]
    fn checks_the_change_login() {
        let e = errors("[changes]\npb_user = \"w1\"\n");
        assert!(e.iter().any(|e| e.contains("exactly one")), "{e:?}");
        assert!(e.iter().any(|e| e.contains("also a worker")), "{e:?}");
    }
}
