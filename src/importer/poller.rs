//! `GitPoller` to a `[[change_source]]` of kind `git`: the repository, its branches,
//! the interval and the project. Options pbmaster's poller does not have are TODOs.

use super::py::show;
use super::translate::{empty, todo_line, Translation};
use crate::changes::gitpoll::parse::check_branch;
use crate::config::{check_change_source_name, check_repo};
use serde_json::{Map, Value as Json};
use std::collections::HashSet;
use toml::Value as Toml;

/// Arguments that change nothing in pbmaster (its mirror lives in the data folder,
/// git is the one on PATH, it polls at start).
const NO_EFFECT: &[&str] = &["workdir", "pollAtLaunch", "usetimestamps", "encoding"];

/// Translates one `GitPoller`; `names` are the change source names taken so far.
/// `false` when it could not be translated (a TODO says why).
pub fn git(
    t: &mut Translation,
    location: &str,
    mut kw: Map<String, Json>,
    names: &mut HashSet<String>,
) -> bool {
    let Some(Json::String(repo)) = kw.remove("repourl") else {
        let line = todo_line(t, location, "GitPoller without a literal repourl".into());
        t.doc.comment(vec![format!("TODO(import): {line}")]);
        return false;
    };
    if let Err(e) = check_repo(&repo) {
        let line = todo_line(t, location, format!("repourl {repo:?} {e}"));
        t.doc.comment(vec![format!("TODO(import): {line}")]);
        return false;
    }
    let mut todos = Vec::new();
    let name = poller_name(kw.remove("name"), &repo, names);
    let mut entries = vec![
        ("name".to_string(), Toml::String(name)),
        ("kind".into(), Toml::String("git".into())),
        ("repo".into(), Toml::String(repo)),
    ];
    let branches = kw.remove("branches").filter(|b| !b.is_null());
    let branch = kw.remove("branch").filter(|b| !b.is_null());
    let list: Option<Vec<String>> = match (branches, branch) {
        // buildbot follows `master` when told nothing.
        (None, None) => Some(vec!["master".into()]),
        (None, Some(Json::String(b))) => Some(vec![b]),
        (Some(Json::Bool(true)), None) => None,
        (Some(Json::Array(bs)), None) if bs.iter().all(Json::is_string) => Some(
            bs.iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        (b, one) => {
            todos.push(todo_line(
                t,
                location,
                format!(
                    "branches {} / branch {} are not translated; every branch is followed",
                    b.as_ref().map_or("None".into(), show),
                    one.as_ref().map_or("None".into(), show)
                ),
            ));
            None
        }
    };
    if let Some(list) = list {
        let (good, bad): (Vec<String>, Vec<String>) =
            list.into_iter().partition(|b| check_branch(b).is_ok());
        for b in &bad {
            todos.push(todo_line(
                t,
                location,
                format!("branch {b:?} is refused: it is not a plain branch name"),
            ));
        }
        if good.is_empty() {
            // Nothing left to follow: the TODOs say why, nothing is polled.
            t.doc
                .comment(todos.iter().map(|l| format!("TODO(import): {l}")).collect());
            return false;
        }
        entries.push((
            "branches".into(),
            Toml::Array(good.into_iter().map(Toml::String).collect()),
        ));
    }
    let interval = kw
        .remove("pollInterval")
        .or_else(|| kw.remove("pollinterval"));
    match interval.as_ref().and_then(Json::as_i64) {
        Some(n) if (1..=604_800).contains(&n) => {
            entries.push(("interval".into(), Toml::Integer(n)))
        }
        // buildbot's default, written out: pbmaster's is the same.
        None if interval.is_none() => entries.push(("interval".into(), Toml::Integer(600))),
        _ => todos.push(todo_line(
            t,
            location,
            format!(
                "pollInterval = {} is not translated",
                interval.as_ref().map_or("None".into(), show)
            ),
        )),
    }
    if let Some(Json::String(p)) = kw.get("project") {
        entries.push(("project".into(), Toml::String(p.clone())));
        kw.remove("project");
    }
    if kw.get("gitbin").and_then(Json::as_str) == Some("git") {
        kw.remove("gitbin");
    }
    for k in NO_EFFECT {
        kw.remove(*k);
    }
    for (k, v) in kw.iter() {
        if !empty(v) && *v != Json::Bool(false) {
            todos.push(todo_line(
                t,
                location,
                format!("{k} = {} is not translated", show(v)),
            ));
        }
    }
    t.doc.table("[[change_source]]", todos, entries);
    t.translated += 1;
    true
}

/// The poller's name: buildbot's `name` if it is usable, else one made from the
/// repository's last path part; unique among `names`.
fn poller_name(given: Option<Json>, repo: &str, names: &mut HashSet<String>) -> String {
    let from_repo = || {
        let last = repo
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .trim_end_matches(".git");
        let safe: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let safe = safe.trim_start_matches(['.', '-']).to_owned();
        if safe.is_empty() {
            "repo".to_owned()
        } else {
            safe.chars().take(90).collect()
        }
    };
    let base = match given {
        Some(Json::String(n)) if check_change_source_name(&n).is_ok() => n,
        _ => from_repo(),
    };
    let mut name = base.clone();
    let mut n = 2;
    while !names.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_repository_and_stay_unique() {
        let mut names = HashSet::new();
        assert_eq!(poller_name(None, "https://h/x/app.git", &mut names), "app");
        assert_eq!(poller_name(None, "git@h:y/app.git/", &mut names), "app-2");
        assert_eq!(
            poller_name(
                Some(Json::String("https://h/a b".into())),
                "/srv/.hidden",
                &mut names
            ),
            "hidden"
        );
        assert_eq!(
            poller_name(Some(Json::String("mine".into())), "/r", &mut names),
            "mine"
        );
    }
}
