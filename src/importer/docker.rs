//! `DockerLatentWorker` to a `docker` latent pool of one container, named like the
//! worker so builders keep their worker names. The image, the daemon's unix socket,
//! bind mounts, the network and the memory and CPU limits carry over; building
//! images, TLS to a TCP daemon and custom commands are TODOs.

use super::py::{dict, show};
use super::translate::{empty, todo_line, Translation};
use serde_json::{Map, Value as Json};
use toml::Value as Toml;

/// Arguments about building or pulling the image: pbmaster runs an image already
/// present on the daemon.
const IMAGE_BUILD: &[&str] = &[
    "dockerfile",
    "custom_context",
    "buildargs",
    "encoding",
    "autopull",
    "alwaysPull",
    "target",
];

pub fn docker(
    t: &mut Translation,
    name: &str,
    mut kw: Map<String, Json>,
    pb_port: u16,
    host: Option<&str>,
) {
    let location = format!("worker {name:?}");
    let mut todos = Vec::new();
    let mut pool = vec![
        ("name".to_string(), Toml::String(name.to_string())),
        ("driver".into(), Toml::String("docker".into())),
        ("max_instances".into(), Toml::Integer(1)),
    ];
    let fqdn = kw
        .remove("masterFQDN")
        .and_then(|v| v.as_str().map(str::to_owned));
    let address = match fqdn.as_deref().or(host) {
        Some(h) => format!("{h}:{pb_port}"),
        None => {
            todos.push(todo_line(t, &location, "set master_address: where containers reach this master (neither masterFQDN nor c['buildbotURL'] gave a host)".into()));
            format!("buildbot.example.invalid:{pb_port}")
        }
    };
    pool.push(("master_address".into(), Toml::String(address)));
    if let Some(n) = kw.remove("max_builds").and_then(|v| v.as_i64()) {
        pool.push(("max_builds".into(), Toml::Integer(n.max(1))));
    }
    // buildbot stops a docker worker's container after each build unless told.
    let wait = kw
        .remove("build_wait_timeout")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    pool.push(("build_wait_timeout".into(), Toml::Integer(wait)));
    if let Some(n) = kw.remove("missing_timeout").and_then(|v| v.as_i64()) {
        if n >= 0 {
            pool.push(("missing_timeout".into(), Toml::Integer(n)));
        }
    }
    kw.remove("password"); // each instance gets a one-time password
    kw.remove("master_protocol");
    let mut d = toml::Table::new();
    match kw.remove("image") {
        Some(Json::String(image)) if !image.trim().is_empty() => {
            d.insert("image".into(), Toml::String(image));
        }
        other => {
            todos.push(todo_line(
                t,
                &location,
                format!(
                    "image {}: set docker.image to an image present on the daemon",
                    other.as_ref().map_or("None".into(), show)
                ),
            ));
            d.insert("image".into(), Toml::String("debian:bookworm".into()));
        }
    }
    match kw.remove("docker_host") {
        Some(Json::String(h)) if h.starts_with("unix:///") => {
            d.insert("host".into(), Toml::String(h));
        }
        None | Some(Json::Null) => {}
        Some(other) => todos.push(todo_line(t, &location, format!("docker_host {}: pbmaster reaches the daemon over a unix socket only (docker.host = \"unix:///...\")", show(&other)))),
    }
    todos.push(todo_line(t, &location, "the container starts through the pool's boot script with /bin/sh (cloud_init = false), which installs buildbot-worker with python3; the image's own start command is not used".into()));
    d.insert("cloud_init".into(), Toml::Boolean(false));
    volumes(t, &location, kw.remove("volumes"), &mut d, &mut todos);
    if let Some(hc) = kw.remove("hostconfig").filter(|v| !v.is_null()) {
        hostconfig(t, &location, &hc, &mut d, &mut todos);
    }
    for k in IMAGE_BUILD {
        if let Some(v) = kw
            .remove(*k)
            .filter(|v| !empty(v) && *v != Json::Bool(false))
        {
            todos.push(todo_line(t, &location, format!("{k} = {}: pbmaster neither builds nor pulls images; the image must be on the daemon", show(&v))));
        }
    }
    for (k, v) in kw.iter() {
        if !empty(v) && *v != Json::Bool(false) {
            todos.push(todo_line(
                t,
                &location,
                format!("{k} = {} is not translated", show(v)),
            ));
        }
    }
    t.doc.table("[[latent_pool]]", todos, pool);
    t.doc
        .table("[latent_pool.docker]", Vec::new(), d.into_iter().collect());
    t.translated += 1;
}

/// `volumes`: absolute `HOST:CONTAINER[:ro|rw]` bind mounts carry over.
fn volumes(
    t: &mut Translation,
    location: &str,
    v: Option<Json>,
    d: &mut toml::Table,
    todos: &mut Vec<String>,
) {
    let Some(Json::Array(items)) = v else {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            todos.push(todo_line(
                t,
                location,
                format!("volumes = {} is not translated", show(&v)),
            ));
        }
        return;
    };
    let mut kept = Vec::new();
    for item in items {
        match item.as_str() {
            Some(s) if bind_mount(s) => kept.push(Toml::String(s.to_owned())),
            _ => todos.push(todo_line(
                t,
                location,
                format!(
                    "volume {} is not an absolute HOST:CONTAINER[:ro|rw] bind mount",
                    show(&item)
                ),
            )),
        }
    }
    if !kept.is_empty() {
        d.insert("volumes".into(), Toml::Array(kept));
    }
}

fn bind_mount(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [h, c] | [h, c, "ro" | "rw"] => h.starts_with('/') && c.starts_with('/'),
        _ => false,
    }
}

/// `hostconfig`: the network mode and the memory and CPU limits carry over.
fn hostconfig(
    t: &mut Translation,
    location: &str,
    hc: &Json,
    d: &mut toml::Table,
    todos: &mut Vec<String>,
) {
    let Some(mut hc) = dict(hc) else {
        todos.push(todo_line(
            t,
            location,
            format!("hostconfig {} is not translated", show(hc)),
        ));
        return;
    };
    if let Some(Json::String(n)) = hc.remove("network_mode") {
        d.insert("network".into(), Toml::String(n));
    }
    if let Some(m) = hc.remove("mem_limit") {
        match memory_mb(&m) {
            Some(mb) => {
                d.insert("memory_mb".into(), Toml::Integer(mb));
            }
            None => todos.push(todo_line(
                t,
                location,
                format!("hostconfig mem_limit {} is not translated", show(&m)),
            )),
        }
    }
    if let Some(n) = hc.remove("nano_cpus").and_then(|v| v.as_f64()) {
        if n > 0.0 {
            d.insert("cpus".into(), Toml::Float(n / 1e9));
        }
    }
    for (k, v) in hc.iter() {
        if !empty(v) {
            todos.push(todo_line(
                t,
                location,
                format!("hostconfig {k} = {} is not translated", show(v)),
            ));
        }
    }
}

/// docker-py's `mem_limit`: bytes, or a number with `b`, `k`, `m` or `g`.
fn memory_mb(v: &Json) -> Option<i64> {
    let bytes: f64 = match v {
        Json::Number(n) => n.as_f64()?,
        Json::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let (num, unit) =
                s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
            let n: f64 = num.parse().ok()?;
            n * match unit {
                "" | "b" => 1.0,
                "k" | "kb" => 1024.0,
                "m" | "mb" => 1024.0 * 1024.0,
                "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            }
        }
        _ => return None,
    };
    let mb = (bytes / (1024.0 * 1024.0)).ceil() as i64;
    (mb >= 1).then_some(mb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn memory_limits_become_mebibytes() {
        assert_eq!(memory_mb(&json!("512m")), Some(512));
        assert_eq!(memory_mb(&json!("2g")), Some(2048));
        assert_eq!(memory_mb(&json!(1_073_741_824)), Some(1024));
        assert_eq!(memory_mb(&json!("lots")), None);
        assert_eq!(memory_mb(&json!("0")), None);
    }

    #[test]
    fn only_absolute_bind_mounts_carry_over() {
        assert!(bind_mount("/srv/cache:/cache:ro"));
        assert!(bind_mount("/a:/b"));
        assert!(!bind_mount("named-volume:/data"));
        assert!(!bind_mount("/a:/b:z"));
    }
}
