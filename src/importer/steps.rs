//! A factory's steps to `[[builder.step]]` tables. Each buildbot step class that has a
//! pbmaster kind is read argument by argument; an argument with no equivalent is a
//! TODO on the step, a class with none comments the whole step out.

use super::py::{class, dict, is_buildbot, kwargs, show, tag, truthy};
use super::render::{self, string, string_map};
use serde_json::{Map, Value as Json};
use toml::Value as Toml;

/// One translated step: its keys and what could not be carried over.
#[derive(Debug, Default)]
pub struct StepOut {
    pub entries: Vec<(String, Toml)>,
    pub todos: Vec<String>,
}

/// Arguments that only change how buildbot's web UI shows a step.
const COSMETIC: &[&str] = &[
    "description",
    "descriptionDone",
    "descriptionSuffix",
    "hideStepIf",
    "logEnviron",
    "lazylogfiles",
    "progressMetrics",
    "useProgress",
    "updateBuildSummaryPolicy",
    "url",
    "urlText",
    "logname",
];

/// buildbot flag → pbmaster key and pbmaster's default.
const FLAGS: &[(&str, &str, bool)] = &[
    ("haltOnFailure", "halt_on_failure", false),
    ("flunkOnFailure", "flunk_on_failure", true),
    ("warnOnFailure", "warn_on_failure", false),
    ("alwaysRun", "always_run", false),
];

/// Reads one step's arguments, remembering which were used.
struct Args {
    kw: Map<String, Json>,
    used: Vec<String>,
    out: StepOut,
}

impl Args {
    fn take(&mut self, key: &str) -> Option<Json> {
        self.used.push(key.to_string());
        self.kw.get(key).filter(|v| !v.is_null()).cloned()
    }

    fn put(&mut self, key: &str, v: Toml) {
        self.out.entries.push((key.to_string(), v));
    }

    fn todo(&mut self, what: String) {
        self.out.todos.push(what);
    }

    /// A string argument into `to`; a renderable without equivalent is a TODO.
    fn text(&mut self, key: &str, to: &str) -> Option<String> {
        let v = self.take(key)?;
        match string(&v) {
            Ok(s) => {
                self.put(to, Toml::String(s.clone()));
                Some(s)
            }
            Err(why) => {
                self.todo(format!("{key}: {why}"));
                None
            }
        }
    }

    fn int(&mut self, key: &str, to: &str) {
        if let Some(v) = self.take(key) {
            match v.as_i64() {
                Some(n) if n >= 0 => self.put(to, Toml::Integer(n)),
                _ => self.todo(format!("{key} = {}", show(&v))),
            }
        }
    }

    /// Every argument not read: a TODO each, except cosmetic ones.
    fn finish(mut self) -> StepOut {
        let rest: Vec<String> = self
            .kw
            .iter()
            .filter(|(k, _)| !self.used.contains(k) && !COSMETIC.contains(&k.as_str()))
            .map(|(k, v)| format!("{k} = {} is not translated", show(v)))
            .collect();
        self.out.todos.extend(rest);
        self.out
    }
}

/// A factory step. `Err` when the class has no pbmaster kind (the reason); the caller
/// comments it out. `workdir` is the factory's default, `env` the builder's.
pub fn step(s: &Json, workdir: &str, env: &toml::Table) -> Result<Vec<StepOut>, String> {
    let cls = class(s);
    if tag(s) != Some("step") {
        return Err(format!("{} is not a build step", show(s)));
    }
    if !is_buildbot(s) {
        return Err(format!(
            "{cls}: a step class defined in the config (custom Python code)"
        ));
    }
    let mut a = Args {
        kw: kwargs(s),
        used: Vec::new(),
        out: StepOut::default(),
    };
    let name = step_name(&mut a, s);
    a.put("name", Toml::String(name.clone()));
    match cls {
        "ShellCommand" | "Configure" | "Compile" | "Test" | "SetPropertyFromCommand" => {
            a.put("kind", Toml::String("shell".into()));
            shell(&mut a, s, workdir, env)?;
            if cls == "Compile" || cls == "Test" {
                a.todo(format!(
                    "{cls} counts warnings in its output (lines matching warningPattern make it WARNINGS); pbmaster runs it as a plain shell step"
                ));
                for k in [
                    "warningPattern",
                    "warningExtractor",
                    "suppressionFile",
                    "suppressionList",
                    "maxWarnCount",
                    "directoryEnterPattern",
                    "directoryLeavePattern",
                ] {
                    if let Some(v) = a.take(k) {
                        a.todo(format!("{k} = {} is not translated", show(&v)));
                    }
                }
            }
            if cls == "SetPropertyFromCommand" {
                set_property_from_command(&mut a)?;
            }
        }
        "ShellSequence" => return shell_sequence(a, s, &name, workdir, env),
        "Git" | "GitHub" | "GitLab" => {
            a.put("kind", Toml::String("git".into()));
            git(&mut a)?;
            workdir_key(&mut a, workdir);
        }
        "FileUpload" => {
            a.put("kind", Toml::String("upload".into()));
            need(&mut a, "workersrc", "worker_src")?;
            master_path(&mut a, "masterdest", "master_dest")?;
            a.int("maxsize", "max_size");
            a.int("blocksize", "block_size");
            mode(&mut a);
            if let Some(v) = a.take("keepstamp") {
                a.put("keep_stamp", Toml::Boolean(truthy(&v).unwrap_or(false)));
            }
            workdir_key(&mut a, workdir);
        }
        "DirectoryUpload" => {
            a.put("kind", Toml::String("directory_upload".into()));
            need(&mut a, "workersrc", "worker_src")?;
            master_path(&mut a, "masterdest", "master_dest")?;
            a.int("maxsize", "max_size");
            a.int("blocksize", "block_size");
            if let Some(v) = a.take("compress") {
                match v.as_str() {
                    Some(c @ ("gz" | "bz2")) => a.put("compress", Toml::String(c.into())),
                    _ => a.todo(format!("compress = {}", show(&v))),
                }
            }
            workdir_key(&mut a, workdir);
        }
        "FileDownload" => {
            a.put("kind", Toml::String("download".into()));
            master_path(&mut a, "mastersrc", "master_src")?;
            need(&mut a, "workerdest", "worker_dest")?;
            a.int("maxsize", "max_size");
            a.int("blocksize", "block_size");
            mode(&mut a);
            workdir_key(&mut a, workdir);
        }
        "StringDownload" => {
            a.put("kind", Toml::String("string_download".into()));
            need(&mut a, "s", "content")?;
            need(&mut a, "workerdest", "worker_dest")?;
            mode(&mut a);
            workdir_key(&mut a, workdir);
        }
        "SetProperty" => {
            a.put("kind", Toml::String("set_property".into()));
            need(&mut a, "property", "property")?;
            let v = a.take("value").ok_or("SetProperty without a value")?;
            a.put("value", value(&v)?);
        }
        "SetProperties" => return set_properties(a, s, &name),
        "MakeDirectory" | "RemoveDirectory" => {
            let kind = if cls == "MakeDirectory" {
                "mkdir"
            } else {
                "rmdir"
            };
            a.put("kind", Toml::String(kind.into()));
            need(&mut a, "dir", "dir")?;
        }
        other => return Err(format!("{other}: no pbmaster step kind")),
    }
    common(&mut a, s);
    Ok(vec![a.finish()])
}

/// buildbot's name for a step: its `name`, else its class's.
fn step_name(a: &mut Args, s: &Json) -> String {
    let default = s
        .get("default_name")
        .and_then(Json::as_str)
        .unwrap_or("step")
        .to_string();
    match a.take("name") {
        Some(Json::String(n)) => n,
        Some(other) => {
            a.todo(format!("name = {} (a computed name)", show(&other)));
            default
        }
        None => default,
    }
}

fn need(a: &mut Args, key: &str, to: &str) -> Result<(), String> {
    if a.kw.get(key).is_none_or(Json::is_null) {
        return Err(format!("no {key}"));
    }
    a.text(key, to);
    Ok(())
}

/// A path on the master: pbmaster takes it relative to `data_dir/files`; an absolute
/// or `..` path is refused there, so such a step is not translated.
fn master_path(a: &mut Args, key: &str, to: &str) -> Result<(), String> {
    let v = a.kw.get(key).cloned().unwrap_or(Json::Null);
    let s = string(&v).map_err(|why| format!("{key}: {why}"))?;
    if s.starts_with('/') || s.split('/').any(|c| c == "..") || s.is_empty() {
        return Err(format!(
            "{key} = {s:?}: pbmaster's master paths are relative to data_dir/files, without '..'"
        ));
    }
    a.used.push(key.to_string());
    a.put(to, Toml::String(s));
    Ok(())
}

fn mode(a: &mut Args) {
    if let Some(v) = a.take("mode") {
        match v.as_i64() {
            Some(m) if (0..=0o7777).contains(&m) => a.put("mode", Toml::String(format!("{m:04o}"))),
            _ => a.todo(format!("mode = {}", show(&v))),
        }
    }
}

fn workdir_key(a: &mut Args, default: &str) {
    if a.kw.get("workdir").is_some_and(|v| !v.is_null()) {
        a.text("workdir", "workdir");
    } else if default != "build" {
        a.put("workdir", Toml::String(render::literal(default)));
    }
}

fn shell(a: &mut Args, s: &Json, workdir: &str, builder_env: &toml::Table) -> Result<(), String> {
    let command = a
        .take("command")
        .or_else(|| s.get("default_command").filter(|c| !c.is_null()).cloned())
        .ok_or("no command")?;
    a.put(
        "command",
        command_line(&command).map_err(|why| format!("command: {why}"))?,
    );
    if let Json::String(_) | Json::Object(_) = command {
        if render::text(&command).is_ok_and(|t| t.quoted_interpolation) {
            a.todo("command: an interpolation inside shell quotes; pbmaster quotes values itself (remove the quotes around it)".into());
        }
    }
    workdir_key(a, workdir);
    let mut env = builder_env.clone();
    if let Some(v) = a.take("env") {
        match string_map(&v) {
            Ok(m) => env.extend(m),
            Err(why) => a.todo(format!("env: {why}")),
        }
    }
    if !env.is_empty() {
        a.put("env", Toml::Table(env));
    }
    a.int("timeout", "timeout");
    a.int("maxTime", "max_time");
    if let Some(v) = a.take("logfiles") {
        match dict(&v) {
            Some(files) => {
                let mut t = toml::Table::new();
                for (name, file) in files {
                    let file = dict(&file)
                        .and_then(|d| d.get("filename").cloned())
                        .unwrap_or(file);
                    match string(&file) {
                        Ok(f) => {
                            t.insert(name, Toml::String(f));
                        }
                        Err(why) => a.todo(format!("logfiles {name:?}: {why}")),
                    }
                }
                a.put("logfiles", Toml::Table(t));
            }
            None => a.todo(format!("logfiles = {}", show(&v))),
        }
    }
    if let Some(v) = a.take("interruptSignal") {
        match v.as_str() {
            Some(sig) => a.put("interrupt_signal", Toml::String(sig.into())),
            None => a.todo(format!("interruptSignal = {}", show(&v))),
        }
    }
    if let Some(v) = a.take("decodeRC") {
        decode_rc(a, &v);
    }
    Ok(())
}

/// buildbot's result numbers.
const RESULTS: [&str; 7] = [
    "success",
    "warnings",
    "failure",
    "skipped",
    "exception",
    "retry",
    "cancelled",
];

fn decode_rc(a: &mut Args, v: &Json) {
    let Some(items) = super::py::dict_items(v) else {
        a.todo(format!("decodeRC = {}", show(v)));
        return;
    };
    let mut t = toml::Table::new();
    for (code, result) in items {
        let name = result
            .as_u64()
            .and_then(|r| RESULTS.get(r as usize))
            .filter(|r| !matches!(**r, "retry" | "cancelled"));
        match (code.as_i64(), name) {
            (Some(code), Some(name)) => {
                t.insert(code.to_string(), Toml::String((*name).into()));
            }
            _ => a.todo(format!("decodeRC {} → {}", show(&code), show(&result))),
        }
    }
    a.put("decode_rc", Toml::Table(t));
}

/// A command: a string runs through `sh -c`, a list is an argv (nested lists and
/// `FlattenList` flattened, as buildbot does).
fn command_line(v: &Json) -> Result<Toml, String> {
    match v {
        Json::Array(_) => {
            let mut argv = Vec::new();
            flatten(v, &mut argv)?;
            Ok(Toml::Array(argv.into_iter().map(Toml::String).collect()))
        }
        _ if tag(v) == Some("flatten") => command_line(v.get("items").unwrap_or(&Json::Null)),
        other => string(other).map(Toml::String),
    }
}

fn flatten(v: &Json, out: &mut Vec<String>) -> Result<(), String> {
    match v {
        Json::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        _ if tag(v) == Some("flatten") => flatten(v.get("items").unwrap_or(&Json::Null), out),
        other => {
            out.push(string(other)?);
            Ok(())
        }
    }
}

fn set_property_from_command(a: &mut Args) -> Result<(), String> {
    let property = a.take("property");
    if let Some(f) = a.take("extract_fn") {
        return Err(format!("extract_fn = {} (Python code)", show(&f)));
    }
    let Some(Json::String(property)) = property else {
        return Err("SetPropertyFromCommand without a literal property name".into());
    };
    a.put("property", Toml::String(property));
    let strip = a.take("strip").and_then(|v| truthy(&v)).unwrap_or(true);
    a.put(
        "property_from",
        Toml::String(if strip { "stripped" } else { "stdout" }.into()),
    );
    if a.take("includeStderr").and_then(|v| truthy(&v)) == Some(true) {
        a.todo("includeStderr: pbmaster sets the property from stdout only".into());
    }
    if a.take("includeStdout").and_then(|v| truthy(&v)) == Some(false) {
        a.todo("includeStdout = False is not translated".into());
    }
    Ok(())
}

fn git(a: &mut Args) -> Result<(), String> {
    need(a, "repourl", "repo_url")?;
    a.text("branch", "branch");
    let mode = a.take("mode").unwrap_or(Json::String("incremental".into()));
    let method = a.take("method");
    match (mode.as_str(), method.as_ref().and_then(Json::as_str)) {
        (Some("incremental"), None) => {}
        (Some("full"), None | Some("fresh" | "clobber" | "clean")) => {
            a.put("git_mode", Toml::String("full".into()));
        }
        _ => a.todo(format!(
            "mode = {}, method = {}: pbmaster's git modes are incremental and full (a fresh clone)",
            show(&mode),
            method.as_ref().map_or("None".into(), show)
        )),
    }
    Ok(())
}

/// `ShellSequence`: one shell step per `ShellArg`, named `NAME N`.
fn shell_sequence(
    mut a: Args,
    s: &Json,
    name: &str,
    workdir: &str,
    env: &toml::Table,
) -> Result<Vec<StepOut>, String> {
    let commands = a.take("commands").ok_or("ShellSequence without commands")?;
    let Json::Array(commands) = commands else {
        return Err(format!("commands = {} (computed)", show(&commands)));
    };
    let shared_keys = [
        "workdir",
        "env",
        "timeout",
        "maxTime",
        "logfiles",
        "interruptSignal",
        "decodeRC",
    ];
    let mut out = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        let mut kw = a.kw.clone();
        kw.retain(|k, _| shared_keys.contains(&k.as_str()));
        let arg = kwargs(c);
        let cmd = arg.get("command").cloned().unwrap_or(Json::Null);
        kw.insert("command".into(), cmd);
        for (k, v) in &arg {
            if k != "command" {
                kw.insert(k.clone(), v.clone());
            }
        }
        let mut one = Args {
            kw,
            used: Vec::new(),
            out: StepOut::default(),
        };
        one.put("name", Toml::String(format!("{name} {}", i + 1)));
        one.put("kind", Toml::String("shell".into()));
        shell(&mut one, &Json::Null, workdir, env)?;
        common(&mut one, s);
        out.push(one.finish());
    }
    for k in shared_keys {
        a.used.push(k.into());
    }
    let rest = a.finish();
    if let Some(first) = out.first_mut() {
        first.todos.extend(rest.todos);
    }
    Ok(out)
}

/// `SetProperties` with a literal dict: one `set_property` step per property.
fn set_properties(mut a: Args, s: &Json, name: &str) -> Result<Vec<StepOut>, String> {
    let props = a
        .take("properties")
        .ok_or("SetProperties without properties")?;
    let props = dict(&props).ok_or_else(|| format!("properties = {} (computed)", show(&props)))?;
    let mut out = Vec::new();
    for (prop, v) in props {
        let mut one = Args {
            kw: a.kw.clone(),
            used: vec!["properties".into(), "name".into()],
            out: StepOut::default(),
        };
        one.put("name", Toml::String(format!("{name} {prop}")));
        one.put("kind", Toml::String("set_property".into()));
        one.put("property", Toml::String(prop));
        one.put("value", value(&v)?);
        common(&mut one, s);
        out.push(one.finish());
    }
    Ok(out)
}

/// A property value: a string (interpolated), number, bool or list of them.
fn value(v: &Json) -> Result<Toml, String> {
    match v {
        Json::Bool(b) => Ok(Toml::Boolean(*b)),
        Json::Number(n) => Ok(n
            .as_i64()
            .map(Toml::Integer)
            .or_else(|| n.as_f64().map(Toml::Float))
            .unwrap_or(Toml::String(n.to_string()))),
        Json::Array(items) => items
            .iter()
            .map(value)
            .collect::<Result<_, _>>()
            .map(Toml::Array),
        other => string(other).map(Toml::String),
    }
}

/// The keys every step takes: result flags, `alwaysRun`, `doStepIf`.
fn common(a: &mut Args, s: &Json) {
    let defaults = s.get("defaults");
    let default_of = |flag: &str| {
        defaults
            .and_then(|d| d.get(flag))
            .and_then(Json::as_bool)
            .unwrap_or(flag == "flunkOnFailure")
    };
    for (flag, key, ours) in FLAGS {
        let value = match a.take(flag) {
            None => default_of(flag),
            Some(v) => match truthy(&v) {
                Some(b) => b,
                None => {
                    a.todo(format!("{flag} = {} (computed)", show(&v)));
                    default_of(flag)
                }
            },
        };
        if value != *ours {
            a.put(key, Toml::Boolean(value));
        }
    }
    for flag in ["flunkOnWarnings", "warnOnWarnings"] {
        let on = a
            .take(flag)
            .map_or(default_of(flag), |v| truthy(&v).unwrap_or(true));
        if on {
            a.todo(format!("{flag} = True is not translated"));
        }
    }
    if let Some(v) = a.take("doStepIf") {
        match truthy(&v) {
            Some(true) => {}
            Some(false) => a.put("do_step_if", Toml::String("false".into())),
            None => match string(&v) {
                Ok(cond) => a.put("do_step_if", Toml::String(cond)),
                Err(_) => a.todo(format!(
                    "doStepIf = {} (Python code): the step runs unconditionally",
                    show(&v)
                )),
            },
        }
    }
}
