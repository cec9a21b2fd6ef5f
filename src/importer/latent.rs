//! `EC2LatentWorker` to an `ec2` latent pool of one instance, named like the worker so
//! builders keep their worker names.

use super::py::show;
use super::translate::{todo_line, Translation};
use serde_json::{Map, Value as Json};
use toml::Value as Toml;

/// Arguments that hold AWS credentials: never copied, never shown.
const CREDENTIALS: &[&str] = &[
    "identifier",
    "secret_identifier",
    "aws_id_file_path",
    "session",
];

pub fn ec2(
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
        ("driver".into(), Toml::String("ec2".into())),
    ];
    let address = match host {
        Some(h) => format!("{h}:{pb_port}"),
        None => {
            todos.push(todo_line(t, &location, "set master_address: where instances reach this master (c['buildbotURL'] gave no host)".into()));
            format!("buildbot.example.invalid:{pb_port}")
        }
    };
    pool.push(("master_address".into(), Toml::String(address)));
    pool.push(("max_instances".into(), Toml::Integer(1)));
    if let Some(n) = kw.remove("max_builds").and_then(|v| v.as_i64()) {
        pool.push(("max_builds".into(), Toml::Integer(n.max(1))));
    }
    if let Some(n) = kw.remove("build_wait_timeout").and_then(|v| v.as_i64()) {
        pool.push(("build_wait_timeout".into(), Toml::Integer(n)));
    }
    if let Some(n) = kw.remove("missing_timeout").and_then(|v| v.as_i64()) {
        if n >= 0 {
            pool.push(("missing_timeout".into(), Toml::Integer(n)));
        }
    }
    kw.remove("password"); // each instance gets a one-time password
    let mut ec2 = toml::Table::new();
    let str_key = |kw: &mut Map<String, Json>, from: &str, to: &str, ec2: &mut toml::Table| {
        if let Some(Json::String(s)) = kw.remove(from) {
            ec2.insert(to.into(), Toml::String(s));
            true
        } else {
            false
        }
    };
    if !str_key(&mut kw, "region", "region", &mut ec2) {
        todos.push(todo_line(t, &location, "no region: set ec2.region".into()));
        ec2.insert("region".into(), Toml::String("us-east-1".into()));
    }
    str_key(&mut kw, "instance_type", "instance_type", &mut ec2);
    let has_ami = str_key(&mut kw, "ami", "ami", &mut ec2);
    let owners: Vec<Toml> = match kw.remove("valid_ami_owners") {
        Some(Json::Array(o)) => o
            .iter()
            .map(|v| Toml::String(v.to_string().trim_matches('"').into()))
            .collect(),
        Some(Json::Number(n)) => vec![Toml::String(n.to_string())],
        _ => Vec::new(),
    };
    if let Some(re) = kw
        .remove("valid_ami_location_regex")
        .filter(|v| !v.is_null())
    {
        todos.push(todo_line(
            t,
            &location,
            format!("valid_ami_location_regex {}: pbmaster picks an image by a name with * wildcards (ec2.ami_name)", show(&re)),
        ));
    }
    if !has_ami {
        if owners.is_empty() {
            todos.push(todo_line(t, &location, "no image: set ec2.ami".into()));
        }
        ec2.insert("ami_name".into(), Toml::String("*".into()));
        todos.push(todo_line(
            t,
            &location,
            "ec2.ami_name = \"*\" picks the newest image of the owners: narrow it".into(),
        ));
    }
    if !owners.is_empty() {
        ec2.insert("ami_owners".into(), Toml::Array(owners));
    } else if !has_ami {
        ec2.insert(
            "ami_owners".into(),
            Toml::Array(vec![Toml::String("self".into())]),
        );
    }
    str_key(&mut kw, "keypair_name", "key_name", &mut ec2);
    str_key(&mut kw, "subnet_id", "subnet_id", &mut ec2);
    str_key(
        &mut kw,
        "instance_profile_name",
        "instance_profile",
        &mut ec2,
    );
    if let Some(Json::Array(g)) = kw.remove("security_group_ids") {
        ec2.insert(
            "security_group_ids".into(),
            Toml::Array(
                g.iter()
                    .filter_map(|s| s.as_str().map(|s| Toml::String(s.into())))
                    .collect(),
            ),
        );
    }
    if let Some(tags) = kw.remove("tags").as_ref().and_then(super::py::dict) {
        let mut tt = toml::Table::new();
        for (k, v) in tags {
            if let Json::String(v) = v {
                tt.insert(k, Toml::String(v));
            }
        }
        if !tt.is_empty() {
            ec2.insert("tags".into(), Toml::Table(tt));
        }
    }
    if kw.remove("spot_instance").as_ref().and_then(Json::as_bool) == Some(true) {
        ec2.insert("spot".into(), Toml::Boolean(true));
        if let Some(p) = kw.remove("max_spot_price").and_then(|p| p.as_f64()) {
            ec2.insert("spot_max_price".into(), Toml::String(p.to_string()));
        }
        kw.remove("price_multiplier");
    } else {
        for k in ["max_spot_price", "price_multiplier", "product_description"] {
            kw.remove(k);
        }
    }
    for k in CREDENTIALS {
        if kw.remove(*k).is_some_and(|v| !v.is_null()) {
            todos.push(todo_line(t, &location, format!("{k}: pbmaster takes AWS credentials from the standard chain (environment, profile, instance role)")));
        }
    }
    for (k, v) in kw.iter() {
        if !super::translate::empty(v) {
            todos.push(todo_line(
                t,
                &location,
                format!("{k} = {} is not translated", show(v)),
            ));
        }
    }
    t.doc.table("[[latent_pool]]", todos, pool);
    t.doc
        .table("[latent_pool.ec2]", Vec::new(), ec2.into_iter().collect());
    t.translated += 1;
}
