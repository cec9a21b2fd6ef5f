//! The options of change-driven and nightly schedulers.

use super::py::{class, kwargs, show};
use super::translate::{todo_line, Translation};
use crate::model::cron::zone;
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
/// expression with month and day names. buildbot reads the times in the master's
/// local time zone, so the zone the importer runs in is written out (UTC needs none).
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
        match cron_field(&v, key) {
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
    let given = kw
        .remove("timezone")
        .or_else(|| kw.remove("tz"))
        .filter(|v| !v.is_null());
    match given {
        Some(Json::String(z)) if zone(&z).is_ok() => {
            entries.push(("timezone".into(), Toml::String(z)));
        }
        Some(v) => todos.push(todo_line(
            t,
            location,
            format!("timezone {} is not an IANA zone name", show(&v)),
        )),
        None => {
            if let Some(z) = local_zone().filter(|z| !is_utc(z)) {
                entries.push(("timezone".into(), Toml::String(z)));
            }
        }
    }
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// One cron field of buildbot's `key` argument; days and months by name, runs of
/// three or more as ranges (`MON-FRI`).
fn cron_field(v: &Json, key: &str) -> Option<String> {
    let one = |n: i64| -> Option<i64> {
        match key {
            // buildbot's Monday is 0, cron's Sunday.
            "dayOfWeek" => (0..=6).contains(&n).then_some((n + 1) % 7),
            "month" => (1..=12).contains(&n).then_some(n),
            _ => (n >= 0).then_some(n),
        }
    };
    let values: Vec<i64> = match v {
        Json::String(s) if s == "*" => return Some("*".into()),
        Json::Number(n) => vec![one(n.as_i64()?)?],
        Json::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| one(i.as_i64()?))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let name = |n: i64| -> String {
        match key {
            "dayOfWeek" => WEEKDAYS[n as usize].to_owned(),
            "month" => MONTHS[(n - 1) as usize].to_owned(),
            _ => n.to_string(),
        }
    };
    if key != "dayOfWeek" && key != "month" {
        return Some(
            values
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let mut sorted = values;
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}-{}", name(sorted[i]), name(sorted[j])));
        } else {
            parts.extend((i..=j).map(|k| name(sorted[k])));
        }
        i = j + 1;
    }
    Some(parts.join(","))
}

fn is_utc(zone: &str) -> bool {
    matches!(
        zone,
        "UTC"
            | "Etc/UTC"
            | "Etc/UCT"
            | "UCT"
            | "Universal"
            | "Zulu"
            | "Etc/Zulu"
            | "GMT"
            | "Etc/GMT"
    )
}

/// The IANA name of the zone this process runs in: `TZ` if it names one, else
/// `/etc/localtime`'s link into a zoneinfo folder, else `/etc/timezone`.
fn local_zone() -> Option<String> {
    let valid = |z: &str| zone(z).is_ok().then(|| z.to_owned());
    if let Ok(tz) = std::env::var("TZ") {
        return valid(tz.trim_start_matches(':'));
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let target = target.to_string_lossy().into_owned();
        if let Some((_, name)) = target.split_once("zoneinfo/") {
            return valid(name);
        }
    }
    std::fs::read_to_string("/etc/timezone")
        .ok()
        .and_then(|s| valid(s.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buildbot_weekdays_become_cron_day_names() {
        let w = |v| cron_field(&v, "dayOfWeek");
        assert_eq!(w(json!(0)).as_deref(), Some("MON"));
        assert_eq!(w(json!(6)).as_deref(), Some("SUN"));
        assert_eq!(w(json!([0, 1, 2, 3, 4])).as_deref(), Some("MON-FRI"));
        assert_eq!(w(json!([4, 5, 6])).as_deref(), Some("SUN,FRI,SAT"));
        assert_eq!(w(json!(7)), None);
        assert_eq!(
            cron_field(&json!([1, 2, 3, 12]), "month").as_deref(),
            Some("JAN-MAR,DEC")
        );
        assert_eq!(cron_field(&json!(13), "month"), None);
        assert_eq!(cron_field(&json!([1, 13]), "hour").as_deref(), Some("1,13"));
        assert_eq!(cron_field(&json!("*"), "minute").as_deref(), Some("*"));
        assert_eq!(cron_field(&json!("*/5"), "minute"), None);
    }

    #[test]
    fn translated_expressions_parse() {
        for e in ["15 3 * * MON-FRI", "0 1,13 * * SUN", "0 2 1 JAN-MAR,DEC *"] {
            assert!(
                crate::model::cron::Cron::parse_in(e, zone("UTC").unwrap()).is_ok(),
                "{e}"
            );
        }
    }
}
