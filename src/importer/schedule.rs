//! The options of change-driven and nightly schedulers.

use super::py::{class, kwargs, show};
use super::translate::{todo_line, Translation};
use serde_json::{Map, Value as Json};
use toml::Value as Toml;

/// `SingleBranchScheduler` / `AnyBranchScheduler`: the branch (from `branch` or a
/// `ChangeFilter`) and the tree-stable timer.
pub fn changes(
    t: &mut Translation,
    location: &str,
    kw: &mut Map<String, Json>,
    entries: &mut Vec<(String, Toml)>,
    todos: &mut Vec<String>,
) {
    let mut branch = kw.remove("branch").filter(|b| !b.is_null());
    let mut branch_re = None;
    if let Some(f) = kw.remove("change_filter").filter(|f| !f.is_null()) {
        if class(&f) != "ChangeFilter" {
            todos.push(todo_line(
                t,
                location,
                format!("change_filter {} is not translated", show(&f)),
            ));
        } else {
            let mut fk = kwargs(&f);
            if let Some(b) = fk.remove("branch").filter(|b| !b.is_null()) {
                branch = Some(b);
            }
            branch_re = fk.remove("branch_re").filter(|b| !b.is_null());
            for (k, v) in fk.iter().filter(|(_, v)| !v.is_null()) {
                todos.push(todo_line(
                    t,
                    location,
                    format!("ChangeFilter {k} = {} is not translated", show(v)),
                ));
            }
        }
    }
    match (branch, branch_re) {
        (Some(Json::String(b)), None) => entries.push(("branch".into(), Toml::String(b))),
        (Some(Json::Array(bs)), None) if bs.iter().all(Json::is_string) => {
            let alternatives: Vec<String> = bs
                .iter()
                .filter_map(Json::as_str)
                .map(regex::escape)
                .collect();
            entries.push(("branch_regex".into(), Toml::String(alternatives.join("|"))));
        }
        (None, Some(Json::String(re))) => {
            // buildbot matches with re.match (a prefix); pbmaster matches the whole name.
            let whole = if re.ends_with('$') {
                re.trim_end_matches('$').to_string()
            } else {
                format!("(?:{re}).*")
            };
            entries.push(("branch_regex".into(), Toml::String(whole)));
        }
        (None, None) => {}
        (b, re) => todos.push(todo_line(
            t,
            location,
            format!(
                "branch {} / branch_re {} are not translated",
                b.as_ref().map_or("None".into(), show),
                re.as_ref().map_or("None".into(), show)
            ),
        )),
    }
    match kw.remove("treeStableTimer") {
        None | Some(Json::Null) => {}
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => entries.push(("tree_stable_timer".into(), Toml::Integer(n))),
            _ => todos.push(todo_line(
                t,
                location,
                format!("treeStableTimer = {}", show(&v)),
            )),
        },
    }
}

/// `Nightly`: buildbot's minute/hour/dayOfMonth/month/dayOfWeek (Monday is 0) as a cron
/// expression (Sunday is 0).
pub fn nightly(
    t: &mut Translation,
    location: &str,
    kw: &mut Map<String, Json>,
    entries: &mut Vec<(String, Toml)>,
    todos: &mut Vec<String>,
) {
    let mut fields = Vec::new();
    for (key, default) in [
        ("minute", Json::from(0)),
        ("hour", "*".into()),
        ("dayOfMonth", "*".into()),
        ("month", "*".into()),
        ("dayOfWeek", "*".into()),
    ] {
        let v = kw.remove(key).unwrap_or(default);
        let weekday = key == "dayOfWeek";
        match cron_field(&v, weekday) {
            Some(f) => fields.push(f),
            None => {
                todos.push(todo_line(
                    t,
                    location,
                    format!(
                        "{key} = {} is not translated; the schedule is approximate",
                        show(&v)
                    ),
                ));
                fields.push("*".into());
            }
        }
    }
    entries.push(("cron".into(), Toml::String(fields.join(" "))));
    if let Some(v) = kw
        .remove("timezone")
        .or_else(|| kw.remove("tz"))
        .filter(|v| !v.is_null())
    {
        todos.push(todo_line(
            t,
            location,
            format!(
                "timezone {}: pbmaster's nightly schedules run in UTC",
                show(&v)
            ),
        ));
    }
}

fn cron_field(v: &Json, weekday: bool) -> Option<String> {
    let one = |n: i64| -> Option<String> {
        if weekday {
            (0..=6).contains(&n).then(|| ((n + 1) % 7).to_string())
        } else {
            (n >= 0).then(|| n.to_string())
        }
    };
    match v {
        Json::String(s) if s == "*" => Some("*".into()),
        Json::Number(n) => one(n.as_i64()?),
        Json::Array(items) if !items.is_empty() => {
            let parts: Option<Vec<String>> = items.iter().map(|i| one(i.as_i64()?)).collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buildbot_weekdays_become_cron_weekdays() {
        assert_eq!(cron_field(&json!(0), true).as_deref(), Some("1"));
        assert_eq!(cron_field(&json!(6), true).as_deref(), Some("0"));
        assert_eq!(
            cron_field(&json!([4, 5, 6]), true).as_deref(),
            Some("5,6,0")
        );
        assert_eq!(cron_field(&json!(7), true), None);
        assert_eq!(cron_field(&json!([1, 13]), false).as_deref(), Some("1,13"));
        assert_eq!(cron_field(&json!("*"), false).as_deref(), Some("*"));
        assert_eq!(cron_field(&json!("*/5"), false), None);
    }
}
