//! The ec2 driver's choices and economies against moto (see `tests/ec2.rs` for the
//! set-up): several subnets and instance types tried in turn when capacity lacks,
//! the cost of builds with a price set, idle instances stopped and started again,
//! spot interruptions, and a copied data folder that leaves the first master's
//! instances alone. Build with `--features ec2`.
#![cfg(feature = "ec2")]

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use support::ec2::{BootPolicy, Fault, FaultKind, IMAGE};
use support::ec2_cloud::{
    config, password_of, start_master, start_master_with, wait_all_ended, Cloud, LONG,
};
use support::latent::instances;
use support::master::{test_dir, MasterProcess, API_TOKEN};

fn instance_named(master: &MasterProcess, name: &str) -> Value {
    instances(master)
        .into_iter()
        .find(|i| i["name"] == name)
        .unwrap_or(Value::Null)
}

fn metrics_of(master: &MasterProcess) -> String {
    String::from_utf8(master.get_bytes("/metrics")).expect("text")
}

/// How many cloud calls of `action` the master made, by its metrics.
fn cloud_calls(master: &MasterProcess, action: &str) -> u64 {
    let prefix = format!("pbmaster_cloud_calls_total{{pool=\"cloud\",action=\"{action}\"}} ");
    metrics_of(master)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// Copies a folder's files and subfolders.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// Seconds from a request's submission to its first build's start.
fn time_to_build(master: &MasterProcess, request: i64) -> f64 {
    let r = master.get(&format!("/api/buildrequests/{request}"));
    let submitted = r["submitted_at"].as_f64().expect("submitted");
    let started = r["builds"][0]["started_at"].as_f64().expect("started");
    started - submitted
}

#[test]
fn a_launch_without_capacity_tries_the_next_type_and_subnet_and_builds_cost_their_time() {
    let dir = test_dir("ec2-choices");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    let subnets = cloud.moto.subnets();
    assert!(subnets.len() >= 2, "moto's default subnets: {subnets:?}");
    let (a, b) = (&subnets[0], &subnets[1]);
    // The preferred type has no capacity in either zone, and the first zone has no
    // free address: the second type in the second zone launches.
    cloud.proxy.inject(Fault {
        action: "RunInstances".into(),
        body_contains: Some("InstanceType=t3.micro".into()),
        kind: FaultKind::NoCapacity,
        times: 2,
    });
    cloud.proxy.inject(Fault {
        action: "RunInstances".into(),
        body_contains: Some(format!("SubnetId={a}")),
        kind: FaultKind::NoAddresses,
        times: 1,
    });
    let master = start_master(
        &dir,
        &cloud,
        "build_wait_timeout = 0\nprice_per_hour = 0.36",
        &format!(
            "ami = \"{IMAGE}\"\ninstance_types = [\"t3.micro\", \"t3.small\"]\nsubnet_ids = [\"{a}\", \"{b}\"]\nprices = {{ \"t3.small\" = 0.72 }}"
        ),
    );
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(cloud.proxy.injected("RunInstances"), 3);
    assert_eq!(cloud.proxy.calls("RunInstances"), 4, "one call per choice");
    let name = r["builds"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_owned();
    let ended = wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
    let i = ended
        .iter()
        .find(|i| i["name"] == name.as_str())
        .expect("the instance");
    let cloud_id = i["cloud_id"].as_str().expect("cloud id");
    assert_eq!(i["placement"], format!("{b}/t3.small"), "{i}");
    assert_eq!(
        cloud.moto.field(cloud_id, "instanceType").as_deref(),
        Some("t3.small")
    );
    assert_eq!(
        cloud.moto.field(cloud_id, "subnetId").as_deref(),
        Some(b.as_str())
    );
    // The books: the type's price, the build's share, the idle rest.
    let acc = &i["accounting"];
    assert_eq!(acc["price_per_hour"], 0.72, "{acc}");
    assert_eq!(acc["builds_run"], 1, "{acc}");
    let f = |k: &str| acc[k].as_f64().unwrap_or_else(|| panic!("{k}: {acc}"));
    assert!(
        f("instance_seconds") > 0.0 && f("busy_seconds") >= 1.0,
        "{acc}"
    );
    assert!(f("busy_seconds") <= f("instance_seconds"), "{acc}");
    let build_cost = acc["builds"][0]["cost"].as_f64().expect("build cost");
    assert!(
        (f("cost") - (build_cost + f("idle_cost"))).abs() < 1e-9,
        "{acc}"
    );
    assert!((f("cost") - f("instance_seconds") * 0.72 / 3600.0).abs() < 1e-9);
    eprintln!(
        "cost figures: instance {:.1} s, time to ready {:.1} s, build {:.1} s, cost {:.6}, build {:.6}, idle {:.6}",
        f("instance_seconds"),
        f("time_to_ready"),
        f("busy_seconds"),
        f("cost"),
        build_cost,
        f("idle_cost")
    );
    let metrics = metrics_of(&master);
    for line in [
        "pbmaster_cloud_calls_total{pool=\"cloud\",action=\"RunInstances\"} 4",
        "pbmaster_latent_time_to_ready_seconds_count{pool=\"cloud\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
}

#[test]
fn an_idle_instance_is_stopped_kept_and_started_again_with_new_credentials() {
    let dir = test_dir("ec2-stop");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    let mut master = start_master(
        &dir,
        &cloud,
        "build_wait_timeout = 1\nidle_action = \"stop\"\nmax_stopped = 1",
        &format!("ami = \"{IMAGE}\""),
    );
    let first = master.force("job");
    let r = master.wait_request(first, LONG);
    assert_eq!(r["result"], "success", "{r}");
    let name = r["builds"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_owned();
    let parked = |master: &MasterProcess| {
        master.wait_for("/api/latent", LONG, "the idle instance kept stopped", |v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["name"] == name.as_str() && i["phase"] == "parked")
            })
        });
    };
    parked(&master);
    let cloud_id = instance_named(&master, &name)["cloud_id"]
        .as_str()
        .expect("cloud id")
        .to_owned();
    assert_eq!(cloud.moto.alive()[0].state, "stopped");
    let old_password = password_of(&dir, &cloud_id);

    // The next build starts it again rather than launching another.
    let second = master.force("job");
    let r = master.wait_request(second, LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(r["builds"][0]["worker"], name.as_str(), "{r}");
    assert_eq!(cloud.moto.instances().len(), 1, "no new instance");
    assert!(cloud.proxy.calls("StartInstances") >= 1);
    assert!(cloud.proxy.calls("ModifyInstanceAttribute") >= 1);
    let new_password = password_of(&dir, &cloud_id);
    assert_ne!(new_password, old_password, "fresh one-time credentials");
    eprintln!(
        "force to build start: new instance {:.2} s, stopped one started again {:.2} s",
        time_to_build(&master, first),
        time_to_build(&master, second)
    );

    // A crash while it is kept: the restarted master knows it and keeps it.
    parked(&master);
    master.kill();
    master.restart();
    parked(&master);
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["builds"][0]["worker"], name.as_str(), "{r}");
    assert_eq!(cloud.moto.instances().len(), 1, "still no new instance");

    // Stopping the master ends it for good.
    parked(&master);
    assert!(master.terminate(LONG).success());
    cloud.wait_none_alive("cloud");
}

/// A master with a spot pool (`pool_extra` added) and a builder `long` whose first
/// build holds its instance (a marker tells the retry to end at once); forces it and
/// waits until it runs. Returns the master, the request, and the instance's name and
/// cloud id.
fn long_build_on_spot(
    dir: &Path,
    cloud: &Cloud,
    pool_extra: &str,
) -> (MasterProcess, i64, String, String) {
    let marker = dir.join("held-once");
    let more = format!(
        "\n[[builder]]\nname = \"long\"\nworkers = [\"cloud\"]\n\n[[builder.step]]\ncommand = \"test -e {m} || {{ touch {m}; sleep 120; }}\"\n",
        m = marker.display()
    );
    let master = start_master_with(
        dir,
        cloud,
        pool_extra,
        &format!("ami = \"{IMAGE}\"\nmarket = \"spot\""),
        &more,
    );
    let request = master.force("long");
    let running = master.wait_for(
        &format!("/api/buildrequests/{request}"),
        LONG,
        "the build running",
        |r| r["builds"][0]["started_at"].is_number() && marker.exists(),
    );
    let name = running["builds"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_owned();
    let cloud_id = instance_named(&master, &name)["cloud_id"]
        .as_str()
        .expect("cloud id")
        .to_owned();
    (master, request, name, cloud_id)
}

/// Waits for `request` to succeed on its second build after a first that ended
/// `retry` because the cloud took its instance back (`why` in the reason); returns
/// the request and the second build's instance.
fn retried_after_interruption(master: &MasterProcess, request: i64, why: &str) -> (Value, String) {
    let r = master.wait_request(request, LONG);
    assert_eq!(r["result"], "success", "{r}");
    let builds = r["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 2, "{r}");
    assert_eq!(builds[0]["result"], "retry", "{r}");
    let reason = builds[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("interrupted by the cloud") && reason.contains(why),
        "{r}"
    );
    let second = builds[1]["worker"].as_str().expect("worker").to_owned();
    (r, second)
}

#[test]
fn a_spot_interruption_retries_the_build_elsewhere_without_counting_as_a_loss() {
    let dir = test_dir("ec2-interrupt");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    // A loss would end the request at once: the interruption must not count as one.
    let (master, request, name, cloud_id) = long_build_on_spot(
        &dir,
        &cloud,
        "build_wait_timeout = 0\nlost_build_retries = 0",
    );
    cloud.proxy.interrupt(&cloud_id);
    let (_, second) =
        retried_after_interruption(&master, request, "Server.SpotInstanceTermination");
    assert_ne!(second, name, "ran on another instance");
    wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
    let metrics = metrics_of(&master);
    assert!(
        metrics
            .lines()
            .any(|l| l == "pbmaster_latent_failures_total{pool=\"cloud\",reason=\"interrupted\"} 1"),
        "{metrics}"
    );
}

/// `pbmaster instances` against the master's API.
fn instances_command(master: &MasterProcess) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(["instances", "--api", &master.api])
        .env("PBMASTER_TOKEN", API_TOKEN)
        .output()
        .expect("pbmaster runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn a_spot_interruption_notice_ends_the_build_which_runs_again_on_demand_and_builds_carry_their_cost(
) {
    let dir = test_dir("ec2-notice");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    // The replacement runs the retried build, then one more: its second use ends it.
    let (master, request, spot, cloud_id) = long_build_on_spot(
        &dir,
        &cloud,
        "build_wait_timeout = 600\nmax_uses = 2\nlost_build_retries = 0\nprice_per_hour = 0.36",
    );
    // The two-minute notice: the instance still runs, its build too.
    cloud.proxy.mark_for_termination(&cloud_id);
    let (r, on_demand) = retried_after_interruption(
        &master,
        request,
        "interruption notice: marked-for-termination",
    );
    let builds = r["builds"].as_array().expect("builds");
    assert_ne!(on_demand, spot, "ran on another instance");
    // Stopped at the notice, and why.
    let first = instance_named(&master, &spot);
    assert_eq!(first["market"], "spot", "{first}");
    assert!(
        first["stop_reason"]
            .as_str()
            .is_some_and(|r| r.contains("marked-for-termination")),
        "{first}"
    );
    assert!(cloud.proxy.calls("DescribeSpotInstanceRequests") >= 1);
    // The replacement is on demand: its launch asked for no spot market.
    assert_eq!(instance_named(&master, &on_demand)["market"], "on-demand");
    let launches = cloud.proxy.bodies("RunInstances");
    assert_eq!(launches.len(), 2, "{launches:?}");
    assert!(launches[0].contains("InstanceMarketOptions.MarketType=spot"));
    assert!(
        !launches[1].contains("InstanceMarketOptions"),
        "{}",
        launches[1]
    );

    // One more build on the replacement, its last use.
    let second = master.wait_request(master.force("job"), LONG);
    assert_eq!(second["result"], "success", "{second}");
    assert_eq!(
        second["builds"][0]["worker"],
        on_demand.as_str(),
        "{second}"
    );
    let ended = wait_all_ended(&master);
    cloud.wait_none_alive("cloud");

    // Each build's record carries its share of its instance's cost, idle time
    // included: the shares add up to the instance's cost.
    let build_ids = [
        builds[0]["id"].as_i64().expect("id"),
        builds[1]["id"].as_i64().expect("id"),
        second["builds"][0]["id"].as_i64().expect("id"),
    ];
    let records: Vec<Value> = build_ids
        .iter()
        .map(|id| master.get(&format!("/api/builds/{id}")))
        .collect();
    let mut figures = Vec::new();
    for name in [&spot, &on_demand] {
        let i = ended
            .iter()
            .find(|i| i["name"] == name.as_str())
            .expect("the instance");
        let acc = &i["accounting"];
        let cost = acc["cost"].as_f64().expect("instance cost");
        assert!(cost > 0.0, "{acc}");
        let mine: Vec<f64> = records
            .iter()
            .filter(|b| b["worker"] == name.as_str())
            .map(|b| b["cost"].as_f64().unwrap_or_else(|| panic!("no cost: {b}")))
            .collect();
        assert_eq!(mine.len() as u64, acc["builds_run"].as_u64().unwrap_or(0));
        let sum: f64 = mine.iter().sum();
        assert!((sum - cost).abs() < 1e-9, "{mine:?} vs {acc}");
        figures.push(format!(
            "{name} ({}) {:.1} s, cost {cost:.6}, builds {mine:.6?}",
            i["market"].as_str().unwrap_or("-"),
            acc["instance_seconds"].as_f64().unwrap_or(0.0)
        ));
    }
    eprintln!("cost per build: {}", figures.join("; "));

    // `pbmaster instances` lists both, with market, type, builds and cost.
    let listing = instances_command(&master);
    eprintln!("{listing}");
    for (name, market, builds) in [(&spot, "spot", "1"), (&on_demand, "on-demand", "2")] {
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} in:\n{listing}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &cols[1..5],
            ["cloud", "stopped", "t3.micro", market],
            "{line}"
        );
        assert_eq!(cols[6], builds, "{line}");
        let cost = ended
            .iter()
            .find(|i| i["name"] == name.as_str())
            .and_then(|i| i["accounting"]["cost"].as_f64())
            .expect("cost");
        assert_eq!(cols[7], format!("{cost:.6}"), "{line}");
    }
    assert!(listing.contains("marked-for-termination"), "{listing}");
}

#[test]
fn a_copied_data_folder_takes_a_new_id_and_leaves_the_first_masters_instances_alone() {
    let dir = test_dir("ec2-copied");
    // The instance never boots: it stays, waiting for its worker.
    let cloud = Cloud::start(
        &dir,
        BootPolicy {
            never: HashSet::from([1]),
            ..BootPolicy::default()
        },
    );
    let (pool, ec2) = (
        "missing_timeout = 600\nsweep_interval = 1",
        format!("ami = \"{IMAGE}\""),
    );
    let mut first = start_master(&dir, &cloud, pool, &ec2);
    let request = first.force("job");
    let connecting = first.wait_for("/api/latent", LONG, "an instance", |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|i| i["phase"] == "connecting"))
    });
    let cloud_id = connecting[0]["cloud_id"]
        .as_str()
        .expect("cloud id")
        .to_owned();
    let first_id = cloud.moto.alive()[0].tags["pbmaster:master"].clone();
    // The first master stops (crashes); its data folder is copied and started
    // elsewhere, as a backup restored on another machine would be.
    first.kill();
    let copy = dir.join("copy");
    copy_tree(&dir.join("master").join("data"), &copy.join("data"));
    let second = MasterProcess::start(&copy, "", &config(&cloud, "127.0.0.1:9", pool, &ec2));
    // Its reconciliation and a sweep have looked at the cloud, under its new id.
    support::wait::until("the copy to reconcile and sweep", LONG, || {
        cloud_calls(&second, "DescribeInstances") >= 2
    });
    let left = instance_named(&second, connecting[0]["name"].as_str().expect("name"));
    assert_eq!(left["phase"], "failed", "{left}");
    assert!(
        left["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains(&first_id)),
        "{left}"
    );
    // The copy may launch for the copied queue, under its own id only.
    let alive = cloud.moto.alive();
    let kept = alive.iter().find(|i| i.id == cloud_id);
    assert!(kept.is_some(), "{alive:?}");
    for i in alive.iter().filter(|i| i.id != cloud_id) {
        assert_ne!(i.tags["pbmaster:master"], first_id, "{alive:?}");
    }
    drop(second);
    cloud.wait_alive_exactly(&[&cloud_id]);

    // The first master, back, still knows its instance, and ends it once its worker
    // comes.
    first.restart();
    cloud.sim.release(1);
    let r = first.wait_request(request, LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert!(first.terminate(LONG).success());
    cloud.wait_none_alive("cloud");
}
