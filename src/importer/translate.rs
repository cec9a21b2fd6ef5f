//! BuildmasterConfig (as the helper describes it) to pbmaster's tables. Every key,
//! object and argument is either translated or reported as a TODO at its place.

use super::doc::Doc;
use super::py::{class, dict, is_buildbot, kwargs, show, tag};
use super::steps;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashSet};
use toml::Value as Toml;

/// What could not be translated, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub location: String,
    pub what: String,
}

/// The result of a translation.
#[derive(Debug, Default)]
pub struct Translation {
    pub doc: Doc,
    pub todos: Vec<Todo>,
    pub translated: usize,
    /// Secrets to write next to the output: relative path → value.
    pub secret_files: BTreeMap<String, String>,
}

impl Translation {
    pub(super) fn todo(&mut self, location: &str, what: impl Into<String>) -> String {
        let what = what.into();
        self.todos.push(Todo {
            location: location.to_string(),
            what: what.clone(),
        });
        format!("{location}: {what}")
    }
}

/// Keys of BuildmasterConfig that need no pbmaster setting.
const IGNORED_KEYS: &[&str] = &[
    "buildbotNetUsageData",
    "logCompressionMethod",
    "logCompressionLimit",
    "caches",
    "db",
    "db_url",
    "mq",
];

/// Translates the helper's `config` object.
pub fn translate(c: &Map<String, Json>) -> Translation {
    let mut t = Translation::default();
    let mut handled: HashSet<&str> = IGNORED_KEYS.iter().copied().collect();
    let master = master(&mut t, c, &mut handled);
    let global_props = c.get("properties").and_then(dict).unwrap_or_default();
    handled.insert("properties");
    let secrets_dir = secrets(&mut t, c.get("secretsProviders"));
    handled.insert("secretsProviders");
    changes(&mut t, c.get("change_source"));
    handled.insert("change_source");
    let workers =
        super::workers::workers(&mut t, c.get("workers"), &master, secrets_dir.as_deref());
    handled.insert("workers");
    let builders = builders(&mut t, c.get("builders"), &workers, &global_props);
    handled.insert("builders");
    super::schedulers::schedulers(&mut t, c.get("schedulers"), &builders);
    handled.insert("schedulers");
    for (k, v) in c {
        if !handled.contains(k.as_str()) && !empty(v) {
            let line = t.todo(
                &format!("c[{k:?}]"),
                format!("{} has no pbmaster setting", show(v)),
            );
            t.doc.comment(vec![format!("TODO(import): {line}")]);
        }
    }
    t
}

/// What other parts need of `[master]`.
pub(super) struct Master {
    pub pb_port: u16,
    pub url_host: Option<String>,
}

fn master(t: &mut Translation, c: &Map<String, Json>, handled: &mut HashSet<&str>) -> Master {
    handled.extend([
        "protocols",
        "www",
        "title",
        "titleURL",
        "buildbotURL",
        "logMaxSize",
        "logMaxTailSize",
    ]);
    let mut entries = Vec::new();
    let mut todos = Vec::new();
    let mut pb_port = 9989;
    if let Some(p) = c.get("protocols").and_then(dict) {
        for (proto, settings) in p {
            let port = dict(&settings).and_then(|s| s.get("port").cloned());
            match (proto.as_str(), port.as_ref().and_then(listen)) {
                ("pb", Some((addr, port))) => {
                    pb_port = port;
                    entries.push(("pb_listen".to_string(), Toml::String(addr)));
                    t.translated += 1;
                }
                _ => todos.push(t.todo(
                    "c['protocols']",
                    format!("{proto} {} is not translated", show(&settings)),
                )),
            }
        }
    }
    if let Some(www) = c.get("www").and_then(dict) {
        for (k, v) in www {
            match (k.as_str(), listen(&v)) {
                // The API stays on loopback, as pbmaster's default; a proxy or
                // http_listen opens it wider.
                ("port", Some((_, port))) => {
                    entries.push((
                        "http_listen".to_string(),
                        Toml::String(format!("127.0.0.1:{port}")),
                    ));
                    t.translated += 1;
                }
                // buildbot's web UI plugins: pbmaster serves its own pages.
                ("plugins", _) => {}
                _ => {
                    todos.push(t.todo("c['www']", format!("{k} = {} is not translated", show(&v))))
                }
            }
        }
    }
    entries.push(("data_dir".to_string(), Toml::String("pbmaster-data".into())));
    for k in ["title", "titleURL", "buildbotURL"] {
        if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
            todos.push(t.todo(
                &format!("c[{k:?}]"),
                format!("{} has no pbmaster setting", show(v)),
            ));
        }
    }
    let url_host = c
        .get("buildbotURL")
        .and_then(Json::as_str)
        .and_then(|u| u.split("://").nth(1))
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    t.doc.table("[master]", todos, entries);
    let mut limits = Vec::new();
    for (k, key) in [
        ("logMaxSize", "log_max_size"),
        ("logMaxTailSize", "log_tail_size"),
    ] {
        if let Some(n) = c.get(k).and_then(Json::as_i64).filter(|n| *n > 0) {
            limits.push((key.to_string(), Toml::Integer(n)));
            t.translated += 1;
        }
    }
    if !limits.is_empty() {
        t.doc.table("[limits]", Vec::new(), limits);
    }
    Master { pb_port, url_host }
}

/// A Twisted endpoint or port number to `host:port`.
fn listen(v: &Json) -> Option<(String, u16)> {
    let text = match v {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        _ => return None,
    };
    let mut parts = text.split(':');
    let first = parts.next()?;
    let (port, rest): (&str, Vec<&str>) = if first == "tcp" {
        (parts.next()?, parts.collect())
    } else {
        (first, parts.collect())
    };
    let port: u16 = port.parse().ok()?;
    let mut host = "0.0.0.0".to_string();
    for opt in rest {
        match opt.split_once('=') {
            Some(("interface", h)) => host = h.to_string(),
            Some(("backlog", _)) => {}
            _ => return None,
        }
    }
    Some((format!("{host}:{port}"), port))
}

/// `SecretInAFile(dirname)` → `[secrets] dir`; returns the folder.
fn secrets(t: &mut Translation, providers: Option<&Json>) -> Option<String> {
    let mut dir = None;
    for p in list(providers) {
        let kw = kwargs(&p);
        match (class(&p), kw.get("dirname").and_then(Json::as_str)) {
            ("SecretInAFile", Some(d)) if dir.is_none() => {
                t.doc.table(
                    "[secrets]",
                    Vec::new(),
                    vec![("dir".into(), Toml::String(d.into()))],
                );
                t.translated += 1;
                dir = Some(d.to_string());
            }
            _ => {
                let line = t.todo(
                    "c['secretsProviders']",
                    format!("{} is not translated", show(&p)),
                );
                t.doc.comment(vec![format!("TODO(import): {line}")]);
            }
        }
    }
    dir
}

/// `None`, an empty list or an empty dict: nothing to translate.
pub(super) fn empty(v: &Json) -> bool {
    v.is_null()
        || v.as_array().is_some_and(Vec::is_empty)
        || super::py::dict_items(v).is_some_and(|i| i.is_empty())
}

/// A value that may be one object or a list of them.
pub(super) fn list(v: Option<&Json>) -> Vec<Json> {
    match v {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.clone(),
        Some(one) => vec![one.clone()],
    }
}

fn changes(t: &mut Translation, sources: Option<&Json>) {
    let mut pb_done = false;
    let mut poller_names = HashSet::new();
    for (i, s) in list(sources).iter().enumerate() {
        let location = format!("change source {} ({})", i + 1, class(s));
        if class(s) == "PBChangeSource" && is_buildbot(s) && !pb_done {
            pb_done = true;
            let mut kw = kwargs(s);
            let user = kw
                .remove("user")
                .and_then(|u| u.as_str().map(str::to_string));
            let pass = kw
                .remove("passwd")
                .and_then(|u| u.as_str().map(str::to_string));
            let user = user.unwrap_or_else(|| "change".into());
            let pass = pass.unwrap_or_else(|| "changepw".into());
            t.secret_files.insert("secrets/changes".into(), pass);
            let todos = kw
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let what = if k == "port" {
                        format!("port = {}: pbmaster takes changes on pb_listen", show(v))
                    } else {
                        format!("{k} = {} is not translated", show(v))
                    };
                    t.todo(&location, what)
                })
                .collect();
            t.doc.table(
                "[changes]",
                todos,
                vec![
                    ("pb_user".into(), Toml::String(user)),
                    (
                        "pb_password_file".into(),
                        Toml::String("secrets/changes".into()),
                    ),
                ],
            );
            t.translated += 1;
            continue;
        }
        if class(s) == "GitPoller" && is_buildbot(s) {
            super::poller::git(t, &location, kwargs(s), &mut poller_names);
            continue;
        }
        let line = t.todo(&location, format!("{} is not translated", show(s)));
        t.doc.comment(vec![format!("TODO(import): {line}")]);
    }
}

fn builders(
    t: &mut Translation,
    builders: Option<&Json>,
    workers: &HashSet<String>,
    global_props: &Map<String, Json>,
) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, b) in list(builders).iter().enumerate() {
        let mut kw = kwargs(b);
        let name = match kw.remove("name") {
            Some(Json::String(n)) => n,
            _ => {
                let line = t.todo(
                    &format!("builder {}", i + 1),
                    "a builder without a literal name",
                );
                t.doc.comment(vec![format!("TODO(import): {line}")]);
                continue;
            }
        };
        let location = format!("builder {name:?}");
        let mut todos = Vec::new();
        let mut wanted: Vec<String> = Vec::new();
        for k in ["workername", "workernames", "slavename", "slavenames"] {
            match kw.remove(k) {
                Some(Json::String(w)) => wanted.push(w),
                Some(Json::Array(ws)) => {
                    wanted.extend(ws.iter().filter_map(|w| w.as_str().map(str::to_string)))
                }
                _ => {}
            }
        }
        let mut kept = Vec::new();
        for w in wanted {
            if workers.contains(&w) {
                kept.push(Toml::String(w));
            } else {
                todos.push(t.todo(&location, format!("worker {w:?} was not translated")));
            }
        }
        let mut entries = vec![("name".to_string(), Toml::String(name.clone()))];
        entries.push(("workers".into(), Toml::Array(kept.clone())));
        if let Some(Json::String(d)) = kw.remove("builddir") {
            entries.push(("builddir".into(), Toml::String(d)));
        }
        let mut all_props = global_props.clone();
        if let Some(p) = kw.remove("properties").as_ref().and_then(dict) {
            all_props.extend(p);
        }
        if let Some(props) = literal_properties(t, &location, all_props, &mut todos) {
            entries.push(("properties".into(), props));
        }
        let env = match kw.remove("env") {
            Some(v) => super::render::string_map(&v).unwrap_or_else(|why| {
                todos.push(t.todo(&location, format!("env: {why}")));
                toml::Table::new()
            }),
            None => toml::Table::new(),
        };
        let factory = kw.remove("factory").unwrap_or(Json::Null);
        for k in ["description", "tags", "category"] {
            kw.remove(k);
        }
        for (k, v) in kw.iter().filter(|(_, v)| !empty(v)) {
            todos.push(t.todo(&location, format!("{k} = {} is not translated", show(v))));
        }
        let steps = factory_steps(t, &name, &factory, &env);
        if kept.is_empty() || steps.is_empty() {
            let why = if kept.is_empty() {
                "none of its workers was translated"
            } else {
                "none of its steps was translated"
            };
            let line = t.todo(&location, format!("the builder is left out: {why}"));
            let mut lines = vec![format!("TODO(import): {line}")];
            lines.extend(todos.iter().map(|l| format!("TODO(import): {l}")));
            t.doc.comment(lines);
            continue;
        }
        t.doc.table("[[builder]]", todos, entries);
        t.translated += 1;
        for (step_todos, step_entries) in steps {
            match step_entries {
                Some(e) => t.doc.table("[[builder.step]]", step_todos, e),
                None => t.doc.comment(
                    step_todos
                        .iter()
                        .map(|l| format!("TODO(import): {l}"))
                        .collect(),
                ),
            }
        }
        names.insert(name);
    }
    names
}

type StepItem = (Vec<String>, Option<Vec<(String, Toml)>>);

/// A factory's steps, named uniquely as buildbot names them (`NAME_1`, ...).
fn factory_steps(
    t: &mut Translation,
    builder: &str,
    factory: &Json,
    env: &toml::Table,
) -> Vec<StepItem> {
    let workdir = factory
        .get("workdir")
        .and_then(Json::as_str)
        .unwrap_or("build");
    let steps = factory
        .get("steps")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if tag(factory) != Some("factory") {
        t.todo(
            &format!("builder {builder:?}"),
            format!("factory {} is not translated", show(factory)),
        );
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut translated = 0;
    for (i, s) in steps.iter().enumerate() {
        let location = format!("builder {builder:?} step {}", i + 1);
        match steps::step(s, workdir, env) {
            Ok(outs) => {
                for mut o in outs {
                    if let Some((_, Toml::String(n))) =
                        o.entries.iter_mut().find(|(k, _)| k == "name")
                    {
                        let count = seen.entry(n.clone()).or_insert(0);
                        if *count > 0 {
                            *n = format!("{n}_{count}");
                        }
                        *count += 1;
                    }
                    let step_name = o
                        .entries
                        .iter()
                        .find(|(k, _)| k == "name")
                        .and_then(|(_, v)| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let here = format!("{location} ({step_name})");
                    let todos = o.todos.iter().map(|w| t.todo(&here, w.clone())).collect();
                    out.push((todos, Some(o.entries)));
                    translated += 1;
                    t.translated += 1;
                }
            }
            Err(why) => {
                let line = t.todo(&location, format!("{why}; the step is left out"));
                out.push((vec![line], None));
            }
        }
    }
    if translated == 0 {
        return Vec::new();
    }
    out
}

/// Properties with literal values as a TOML table (`None` if none is left); any other
/// value is a TODO at `location`.
pub(super) fn literal_properties(
    t: &mut Translation,
    location: &str,
    properties: Map<String, Json>,
    todos: &mut Vec<String>,
) -> Option<Toml> {
    let mut table = toml::Table::new();
    for (k, v) in properties {
        match literal_value(&v) {
            Some(v) => {
                table.insert(k, v);
            }
            None => todos.push(t.todo(
                location,
                format!("property {k} = {} is not translated", show(&v)),
            )),
        }
    }
    (!table.is_empty()).then_some(Toml::Table(table))
}

/// A literal property value as TOML.
pub(super) fn literal_value(v: &Json) -> Option<Toml> {
    match v {
        Json::String(s) => Some(Toml::String(s.clone())),
        Json::Bool(b) => Some(Toml::Boolean(*b)),
        Json::Number(n) => n
            .as_i64()
            .map(Toml::Integer)
            .or_else(|| n.as_f64().map(Toml::Float)),
        Json::Array(a) => a
            .iter()
            .map(literal_value)
            .collect::<Option<_>>()
            .map(Toml::Array),
        _ => None,
    }
}

pub(super) fn todo_line(t: &mut Translation, location: &str, what: String) -> String {
    t.todo(location, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pb_ports_and_endpoints_become_addresses() {
        assert_eq!(listen(&json!(9989)), Some(("0.0.0.0:9989".into(), 9989)));
        assert_eq!(
            listen(&json!("tcp:9990:interface=127.0.0.1:backlog=50")),
            Some(("127.0.0.1:9990".into(), 9990))
        );
        assert_eq!(listen(&json!("ssl:9989:privateKey=k")), None);
        assert_eq!(listen(&json!("tcp:99999")), None);
    }
}
