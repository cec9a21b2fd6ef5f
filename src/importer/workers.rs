//! `c['workers']`: plain workers to `[[worker]]`, EC2 and Docker latent workers to
//! pools.

use super::py::{class, is_buildbot, kwargs, show, tag};
use super::translate::{list, Master, Translation};
use serde_json::Value as Json;
use std::collections::HashSet;
use toml::Value as Toml;

/// Worker names a builder may use (workers and pools that were translated).
pub(super) fn workers(
    t: &mut Translation,
    workers: Option<&Json>,
    master: &Master,
    secrets_dir: Option<&str>,
) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, w) in list(workers).iter().enumerate() {
        let mut kw = kwargs(w);
        let name = kw
            .remove("name")
            .and_then(|n| n.as_str().map(str::to_string));
        let Some(name) = name else {
            let line = t.todo(
                &format!("worker {}", i + 1),
                format!("{} without a literal name", show(w)),
            );
            t.doc.comment(vec![format!("TODO(import): {line}")]);
            continue;
        };
        let location = format!("worker {name:?}");
        let password = kw.remove("password");
        match class(w) {
            "Worker" | "BuildSlave" if is_buildbot(w) => {
                let mut entries = vec![("name".to_string(), Toml::String(name.clone()))];
                let mut todos = Vec::new();
                password_entry(
                    t,
                    &name,
                    password.as_ref(),
                    secrets_dir,
                    &location,
                    &mut entries,
                    &mut todos,
                );
                if let Some(n) = kw.remove("max_builds").and_then(|v| v.as_i64()) {
                    entries.push(("max_builds".into(), Toml::Integer(n.max(1))));
                }
                for (k, v) in kw.iter().filter(|(_, v)| !v.is_null()) {
                    todos.push(t.todo(&location, format!("{k} = {} is not translated", show(v))));
                }
                t.doc.table("[[worker]]", todos, entries);
                t.translated += 1;
                names.insert(name);
            }
            "EC2LatentWorker" if is_buildbot(w) => {
                super::latent::ec2(t, &name, kw, master.pb_port, master.url_host.as_deref());
                names.insert(name);
            }
            "DockerLatentWorker" if is_buildbot(w) => {
                super::docker::docker(t, &name, kw, master.pb_port, master.url_host.as_deref());
                names.insert(name);
            }
            other => {
                let what = format!("{other}(...) is not translated");
                let line = t.todo(&location, what);
                t.doc.comment(vec![format!("TODO(import): {line}")]);
            }
        }
    }
    names
}

/// A worker's password: a literal goes to a file written next to the output, a
/// `Secret` to the secrets folder's file; never into the TOML itself.
fn password_entry(
    t: &mut Translation,
    name: &str,
    password: Option<&Json>,
    secrets_dir: Option<&str>,
    location: &str,
    entries: &mut Vec<(String, Toml)>,
    todos: &mut Vec<String>,
) {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match password {
        Some(Json::String(p)) => {
            let file = format!("secrets/worker-{safe}");
            t.secret_files.insert(file.clone(), p.clone());
            entries.push(("password_file".into(), Toml::String(file)));
        }
        Some(s) if tag(s) == Some("secret") && secrets_dir.is_some() => {
            let secret = s.get("name").and_then(Json::as_str).unwrap_or("?");
            let dir = secrets_dir.unwrap_or_default().trim_end_matches('/');
            entries.push((
                "password_file".into(),
                Toml::String(format!("{dir}/{secret}")),
            ));
        }
        other => {
            let var = format!("WORKER_PASSWORD_{}", safe.to_uppercase().replace('-', "_"));
            todos.push(t.todo(
                location,
                format!(
                    "password {}: set the environment variable {var}",
                    other.map_or("None".into(), show)
                ),
            ));
            entries.push(("password_env".into(), Toml::String(var)));
        }
    }
}
