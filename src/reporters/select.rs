//! Which reporters want a build event, and what is queued for each. Pure: the
//! coordinator calls it while it records the event, in the same transaction.

use super::repo;
use crate::config::{ReportEvent, ReporterConfig, ReporterKind};
use crate::model::BuildResult;
use serde_json::{json, Value};
use tracing::debug;

/// What is known of a build when it starts or ends.
#[derive(Debug, Clone)]
pub struct BuildFacts<'a> {
    pub event: ReportEvent,
    pub build_id: i64,
    pub builder: &'a str,
    pub number: i64,
    pub worker: &'a str,
    /// `None` while starting.
    pub result: Option<BuildResult>,
    pub reason: Option<&'a str>,
    /// The request's properties: `revision`, `repository`, `branch`, `project` come
    /// from the changes that made it (or from whoever forced it).
    pub properties: &'a Value,
}

/// (reporter, payload) for each reporter that wants the event. Commit-status
/// reporters skip a build without a usable revision and repository.
pub fn reports_for(reporters: &[ReporterConfig], facts: &BuildFacts) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for r in reporters {
        if !r.wants(facts.event, facts.builder, facts.result) {
            continue;
        }
        if r.needs_revision() {
            if let Err(why) = commit_of(r, facts.properties) {
                debug!(
                    reporter = %r.name,
                    build = facts.build_id,
                    "no commit status for this build: {why}"
                );
                continue;
            }
        }
        out.push((r.name.clone(), payload(facts)));
    }
    out
}

/// What every reporter is sent (the JSON push sends it as is).
fn payload(f: &BuildFacts) -> Value {
    let prop = |name: &str| f.properties.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "event": f.event.name(),
        "build": {
            "id": f.build_id,
            "builder": f.builder,
            "number": f.number,
            "worker": f.worker,
            "result": f.result.map(BuildResult::name),
            "reason": f.reason,
        },
        "revision": prop("revision"),
        "repository": prop("repository"),
        "branch": prop("branch"),
        "project": prop("project"),
        "properties": f.properties,
    })
}

/// The commit a status is for: (repository URL, revision), both checked.
pub fn commit_of<'a>(
    r: &ReporterConfig,
    properties: &'a Value,
) -> Result<(&'a str, &'a str), String> {
    let rev = properties
        .get("revision")
        .and_then(Value::as_str)
        .ok_or("it has no revision")?;
    if !repo::is_sha(rev) {
        return Err(format!("revision {rev:?} is not a commit id"));
    }
    let repository = properties
        .get("repository")
        .and_then(Value::as_str)
        .ok_or("it has no repository")?;
    match &r.kind {
        ReporterKind::GitHub => repo::github(repository).map(|_| ()),
        ReporterKind::GitLab => repo::gitlab(repository).map(|_| ()),
        _ => Ok(()),
    }
    .map_err(|e| format!("repository {repository:?}: {e}"))?;
    Ok((repository, rev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn reporters() -> Vec<ReporterConfig> {
        parse(
            "[master]\ndata_dir = \"d\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n\
             [[builder]]\nname = \"b\"\nworkers = [\"w\"]\n[[builder.step]]\ncommand = \"true\"\n[[builder]]\nname = \"c\"\nworkers = [\"w\"]\n[[builder.step]]\ncommand = \"true\"\n\
             [[reporter]]\nname = \"gh\"\nkind = \"github\"\ntoken = \"%(secret:t)s\"\nbuilders = [\"b\"]\n\
             [[reporter]]\nname = \"push\"\nkind = \"http\"\nurl = \"http://x\"\nresults = [\"failure\"]\n",
        )
        .unwrap()
        .reporters
    }

    fn facts<'a>(
        builder: &'a str,
        result: Option<BuildResult>,
        props: &'a Value,
    ) -> BuildFacts<'a> {
        BuildFacts {
            event: if result.is_some() {
                ReportEvent::Finished
            } else {
                ReportEvent::Started
            },
            build_id: 3,
            builder,
            number: 1,
            worker: "w",
            result,
            reason: None,
            properties: props,
        }
    }

    #[test]
    fn filters_by_builder_result_and_revision() {
        let rs = reporters();
        let good = json!({"revision": "0123456789abcdef", "repository": "https://github.com/o/r"});
        let names = |f: &BuildFacts| -> Vec<String> {
            reports_for(&rs, f).into_iter().map(|(n, _)| n).collect()
        };
        // A results filter is for finished builds; starts follow `events`.
        assert_eq!(names(&facts("b", None, &good)), ["gh", "push"]);
        assert_eq!(
            names(&facts("b", Some(BuildResult::Failure), &good)),
            ["gh", "push"]
        );
        assert_eq!(
            names(&facts("c", Some(BuildResult::Success), &good)),
            Vec::<String>::new()
        );
        let none = json!({});
        assert_eq!(
            names(&facts("b", Some(BuildResult::Failure), &none)),
            ["push"]
        );
        let hostile =
            json!({"revision": "0123456789abcdef", "repository": "https://github.com/o/../x"});
        assert_eq!(
            names(&facts("b", None, &hostile)),
            ["push"],
            "no status for it"
        );
        let (_, p) = &reports_for(&rs, &facts("b", Some(BuildResult::Failure), &good))[1];
        assert_eq!(p["build"]["result"], "failure");
        assert_eq!(p["revision"], "0123456789abcdef");
    }
}
