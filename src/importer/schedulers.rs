//! `c['schedulers']` to `[[scheduler]]`: change-driven, periodic, nightly and force.

use super::py::{class, dict, kwargs, show, truthy};
use super::translate::{empty, list, literal_properties, Translation};
use serde_json::Value as Json;
use std::collections::HashSet;
use toml::Value as Toml;

pub(super) fn schedulers(
    t: &mut Translation,
    schedulers: Option<&Json>,
    builders: &HashSet<String>,
) {
    for (i, s) in list(schedulers).iter().enumerate() {
        let mut kw = kwargs(s);
        let name = match kw.remove("name") {
            Some(Json::String(n)) => n,
            _ => format!("scheduler-{}", i + 1),
        };
        let location = format!("scheduler {name:?}");
        let mut todos = Vec::new();
        let mut entries = vec![("name".to_string(), Toml::String(name.clone()))];
        let kind = match class(s) {
            "SingleBranchScheduler" | "AnyBranchScheduler" | "Scheduler" => "changes",
            "Periodic" => "periodic",
            "Nightly" => "nightly",
            "ForceScheduler" => "force",
            other => {
                let what = if other == "Triggerable" {
                    "Triggerable: pbmaster has no Trigger step; builds start from other schedulers or the API".to_string()
                } else {
                    format!("{other}(...) is not translated")
                };
                let line = t.todo(&location, what);
                t.doc.comment(vec![format!("TODO(import): {line}")]);
                continue;
            }
        };
        entries.push(("kind".into(), Toml::String(kind.into())));
        let mut kept = Vec::new();
        let names: Vec<String> = match kw.remove("builderNames") {
            Some(Json::Array(b)) => b
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            Some(other) => {
                todos.push(t.todo(
                    &location,
                    format!("builderNames = {} (computed)", show(&other)),
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        for b in names {
            if builders.contains(&b) {
                kept.push(Toml::String(b));
            } else {
                todos.push(t.todo(&location, format!("builder {b:?} was not translated")));
            }
        }
        if kept.is_empty() && kind != "force" {
            let line = t.todo(
                &location,
                "the scheduler is left out: none of its builders was translated",
            );
            let mut lines = vec![format!("TODO(import): {line}")];
            lines.extend(todos.iter().map(|l| format!("TODO(import): {l}")));
            t.doc.comment(lines);
            continue;
        }
        entries.push(("builders".into(), Toml::Array(kept)));
        if let Some(p) = kw.remove("properties").as_ref().and_then(dict) {
            if let Some(props) = literal_properties(t, &location, p, &mut todos) {
                entries.push(("properties".into(), props));
            }
        }
        match kind {
            "changes" => super::schedule::changes(t, &location, &mut kw, &mut entries, &mut todos),
            "periodic" => match kw.remove("periodicBuildTimer").and_then(|v| v.as_i64()) {
                Some(n) if n > 0 => entries.push(("interval".into(), Toml::Integer(n))),
                _ => todos.push(t.todo(&location, "periodicBuildTimer is not a number of seconds")),
            },
            "nightly" => super::schedule::nightly(t, &location, &mut kw, &mut entries, &mut todos),
            _ => {
                // The force form's fields: pbmaster's force takes properties as given.
                for k in [
                    "reason",
                    "username",
                    "buttonName",
                    "label",
                    "priority",
                    "codebases",
                    "properties",
                ] {
                    kw.remove(k);
                }
            }
        }
        // The reason a request gets: pbmaster names the scheduler itself.
        kw.remove("reason");
        for (k, v) in kw.iter() {
            if empty(v) || (k == "onlyIfChanged" && truthy(v) == Some(false)) {
                continue;
            }
            todos.push(t.todo(&location, format!("{k} = {} is not translated", show(v))));
        }
        t.doc.table("[[scheduler]]", todos, entries);
        t.translated += 1;
    }
}
