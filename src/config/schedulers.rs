//! `[[scheduler]]`: what starts builds besides the API. Each is checked against its
//! kind and parsed once: cron expressions, branch patterns and file globs.

use super::error::Problems;
use super::file::SchedulerTable;
use super::properties;
use crate::model::cron::{zone, Cron};
use crate::model::filter::{whole_regex, BranchFilter, ChangeFilter, Glob};
use serde_json::{Map, Value as Json};
use std::collections::HashSet;
use std::ops::Range;

/// The scheduler kinds, as written.
const KINDS: [&str; 4] = ["force", "periodic", "nightly", "changes"];

/// A scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub name: String,
    /// Defined builder names.
    pub builders: Vec<String>,
    /// Properties of the requests it makes.
    pub properties: Map<String, Json>,
    pub kind: SchedulerKind,
}

/// When a scheduler makes requests.
#[derive(Debug, Clone)]
pub enum SchedulerKind {
    /// On request through the API and CLI only.
    Force,
    /// Every `interval` seconds (at least 1).
    Periodic { interval: u64 },
    /// At the times of a cron expression, in its time zone (UTC by default).
    Nightly { cron: Cron },
    /// For changes that pass `filter`; with a `tree_stable_timer` (seconds, 0 for
    /// none), the changes of that window make one request.
    Changes {
        filter: ChangeFilter,
        tree_stable_timer: u64,
    },
}

/// One `[[scheduler]]`; `builders` are the defined builder names. `None` when it is
/// wrong (the problems say why).
pub(super) fn scheduler(
    s: &SchedulerTable,
    builders: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<SchedulerConfig> {
    let name = s.name.get_ref();
    let kind = s.kind.get_ref().as_str();
    if !KINDS.contains(&kind) {
        problems.at(
            s.kind.span(),
            format!(
                "scheduler kind {kind:?} is not known (known: {})",
                KINDS.join(", ")
            ),
        );
        return None;
    }
    for b in &s.builders {
        if !builders.contains(b.get_ref().as_str()) {
            problems.at(
                b.span(),
                format!("scheduler {name:?}: no builder {:?}", b.get_ref()),
            );
        }
    }
    if kind != "force" && s.builders.is_empty() {
        problems.at(
            s.name.span(),
            format!("scheduler {name:?} lists no builders"),
        );
    }
    check_options_belong(s, kind, problems);
    let kind = match kind {
        "periodic" => periodic(s, problems)?,
        "nightly" => nightly(s, problems)?,
        "changes" => changes(s, problems)?,
        _ => SchedulerKind::Force,
    };
    Some(SchedulerConfig {
        name: name.clone(),
        builders: s.builders.iter().map(|b| b.get_ref().clone()).collect(),
        properties: properties::json_object(&s.properties),
        kind,
    })
}

/// Each option belongs to one kind; elsewhere it would be silently ignored.
fn check_options_belong(s: &SchedulerTable, kind: &str, problems: &mut Problems) {
    let options: [(&str, Option<Range<usize>>, &str); 7] = [
        (
            "interval",
            s.interval.as_ref().map(|v| v.span()),
            "periodic",
        ),
        ("cron", s.cron.as_ref().map(|v| v.span()), "nightly"),
        ("timezone", s.timezone.as_ref().map(|v| v.span()), "nightly"),
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
                problems.at(
                    span,
                    format!(
                        "scheduler {:?}: {option} is for kind = \"{owner}\" schedulers",
                        s.name.get_ref()
                    ),
                );
            }
        }
    }
}

fn periodic(s: &SchedulerTable, problems: &mut Problems) -> Option<SchedulerKind> {
    let name = s.name.get_ref();
    match &s.interval {
        None => {
            problems.at(
                s.name.span(),
                format!("scheduler {name:?}: periodic needs interval (seconds)"),
            );
            None
        }
        Some(i) if *i.get_ref() == 0 => {
            problems.at(
                i.span(),
                format!("scheduler {name:?}: interval must be at least 1"),
            );
            None
        }
        Some(i) => Some(SchedulerKind::Periodic {
            interval: *i.get_ref(),
        }),
    }
}

fn nightly(s: &SchedulerTable, problems: &mut Problems) -> Option<SchedulerKind> {
    let name = s.name.get_ref();
    let Some(c) = &s.cron else {
        problems.at(
            s.name.span(),
            format!("scheduler {name:?}: nightly needs cron = \"M H DoM Mon DoW\""),
        );
        return None;
    };
    let tz = match &s.timezone {
        None => crate::model::cron::utc(),
        Some(t) => match zone(t.get_ref()) {
            Ok(tz) => tz,
            Err(e) => {
                problems.at(t.span(), format!("scheduler {name:?}: timezone: {e}"));
                return None;
            }
        },
    };
    match Cron::parse_in(c.get_ref(), tz) {
        Ok(cron) => Some(SchedulerKind::Nightly { cron }),
        Err(e) => {
            problems.at(c.span(), format!("scheduler {name:?}: cron: {e}"));
            None
        }
    }
}

fn changes(s: &SchedulerTable, problems: &mut Problems) -> Option<SchedulerKind> {
    let name = s.name.get_ref();
    let exclusive = s.branch.is_none() || s.branch_regex.is_none();
    if let (false, Some(r)) = (exclusive, &s.branch_regex) {
        problems.at(
            r.span(),
            format!("scheduler {name:?}: branch and branch_regex exclude each other"),
        );
    }
    // `None` inside: the pattern is wrong (and reported).
    let pattern = s.branch_regex.as_ref().map(|r| {
        whole_regex(r.get_ref())
            .map_err(|e| problems.at(r.span(), format!("scheduler {name:?}: branch_regex: {e}")))
            .ok()
    });
    let branch = match (&s.branch, pattern) {
        _ if !exclusive => None,
        (Some(b), _) => Some(BranchFilter::Exact(b.get_ref().clone())),
        (None, Some(re)) => re.map(BranchFilter::Pattern),
        (None, None) => Some(BranchFilter::Any),
    };
    let files: Vec<Option<Glob>> = s
        .files
        .iter()
        .map(|f| match Glob::new(f.get_ref()) {
            Ok(g) => Some(g),
            Err(e) => {
                problems.at(f.span(), format!("scheduler {name:?}: files: {e}"));
                None
            }
        })
        .collect();
    Some(SchedulerKind::Changes {
        filter: ChangeFilter {
            branch: branch?,
            files: files.into_iter().collect::<Option<_>>()?,
        },
        tree_stable_timer: s.tree_stable_timer.as_ref().map_or(0, |t| *t.get_ref()),
    })
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
name = "n2"
kind = "nightly"
cron = "0 22 * JAN-MAR MON-FRI"
timezone = "Europe/Berlin"
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
        assert_eq!(c.schedulers.len(), 4);
    }

    #[test]
    fn each_kind_is_parsed_once_into_its_variant() {
        use crate::config::SchedulerKind;
        let extra = r#"
[[scheduler]]
name = "f"
kind = "force"
builders = []

[[scheduler]]
name = "p"
kind = "periodic"
interval = 60
builders = ["b1"]
properties = { n = 1, when = 2024-01-02T03:04:05Z }

[[scheduler]]
name = "n"
kind = "nightly"
cron = "0 3 * * *"
builders = ["b1"]

[[scheduler]]
name = "c"
kind = "changes"
branch_regex = "release/.*"
files = ["src/**"]
builders = ["b1"]
"#;
        let c = parse(&format!("{BASE}{extra}")).unwrap();
        let kinds: Vec<&SchedulerKind> = c.schedulers.iter().map(|s| &s.kind).collect();
        assert!(matches!(kinds[0], SchedulerKind::Force));
        assert!(matches!(kinds[1], SchedulerKind::Periodic { interval: 60 }));
        assert!(
            matches!(kinds[2], SchedulerKind::Nightly { cron } if cron.to_string() == "0 3 * * *")
        );
        let SchedulerKind::Changes {
            filter,
            tree_stable_timer: 0,
        } = kinds[3]
        else {
            panic!("{kinds:?}")
        };
        let files = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(filter.matches(Some("release/2"), &files(&["src/a.rs"])));
        assert!(!filter.matches(Some("main"), &files(&["src/a.rs"])));
        // Property values become JSON once; dates become their text.
        let props = &c.schedulers[1].properties;
        assert_eq!(props["n"], serde_json::json!(1));
        assert_eq!(props["when"], serde_json::json!("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn a_bad_branch_pattern_is_one_error_at_its_line() {
        let extra = "\n[[scheduler]]\nname = \"c\"\nkind = \"changes\"\nbranch_regex = \"(\"\nbuilders = [\"b1\"]\n";
        let e = errors(extra);
        let base_lines = BASE.lines().count();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!("line {}", base_lines + 5)),
            "{e:?}"
        );
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
    fn rejects_unknown_time_zones_and_misplaced_ones() {
        let extra = r#"
[[scheduler]]
name = "n"
kind = "nightly"
cron = "0 3 * * *"
timezone = "Europe/Atlantis"
builders = ["b1"]

[[scheduler]]
name = "p"
kind = "periodic"
interval = 60
timezone = "UTC"
builders = ["b1"]
"#;
        let e = errors(extra);
        let base_lines = BASE.lines().count();
        assert!(
            e.iter()
                .any(|e| e.starts_with(&format!("line {}", base_lines + 6))
                    && e.contains("not an IANA time zone")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains("timezone is for kind")),
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
