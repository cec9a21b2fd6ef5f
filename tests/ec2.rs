//! Latent pools with the `ec2` driver against moto's EC2-compatible API on loopback,
//! through a fault-injecting proxy, with each launched instance "booted" by running
//! its user data locally: a real buildbot-worker 4.3.0 logs in with the instance's
//! one-time credentials. Build with `--features ec2`.
#![cfg(feature = "ec2")]

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::ec2::{BootPolicy, Fault, FaultKind, IMAGE};
use support::ec2_cloud::{config, password_of, start_master, wait_all_ended, Cloud, LONG};
use support::latent::{instances, peak, phases, TWO_BUILDS_THEN_IDLE_OUT};
use support::master::test_dir;
use support::pb::try_login;
use support::wait;

#[test]
fn on_demand_instances_are_tagged_reused_capped_and_terminated() {
    let dir = test_dir("ec2-demand");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    // New instances look pending for a while, as on EC2: the booting phase is real.
    cloud.proxy.show_pending_for(Duration::from_secs(2));
    let master = start_master(
        &dir,
        &cloud,
        "max_instances = 3\nbuild_wait_timeout = 5",
        "ami_name = \"ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*\"\nami_owners = [\"099720109477\"]\ntags = { team = \"ci\" }",
    );

    let first = master.wait_request(master.force("job"), LONG);
    assert_eq!(first["result"], "success", "{first}");
    let second = master.wait_request(master.force("job"), LONG);
    assert_eq!(second["result"], "success", "{second}");
    assert_eq!(
        first["builds"][0]["worker"], second["builds"][0]["worker"],
        "reused within build_wait_timeout"
    );

    // Launched as asked: the newest matching image, tags, client token, shutdown
    // behaviour, user data.
    let cloud_instances = cloud.moto.instances();
    assert_eq!(cloud_instances.len(), 1, "{cloud_instances:?}");
    let launched = &cloud_instances[0];
    let name = first["builds"][0]["worker"].as_str().expect("worker");
    assert_eq!(launched.tags["pbmaster:instance"], name);
    assert_eq!(launched.tags["pbmaster:pool"], "cloud");
    assert_eq!(launched.tags["Name"], name);
    assert_eq!(launched.tags["team"], "ci");
    assert_eq!(launched.tags["pbmaster:master"].len(), 16);
    let described = cloud.moto.call(&[("Action", "DescribeInstances")]);
    assert!(
        described.contains(&format!("<imageId>{IMAGE}</imageId>")),
        "{described}"
    );
    assert!(
        described.contains(&format!("<clientToken>{name}-")),
        "{described}"
    );
    // IMDSv2 only, one hop.
    for field in [
        "<httpTokens>required</httpTokens>",
        "<httpPutResponseHopLimit>1</httpPutResponseHopLimit>",
    ] {
        assert!(described.contains(field), "{field} in {described}");
    }
    let behaviour = cloud.moto.call(&[
        ("Action", "DescribeInstanceAttribute"),
        ("InstanceId", &launched.id),
        ("Attribute", "instanceInitiatedShutdownBehavior"),
    ]);
    assert!(
        behaviour.contains("<value>terminate</value>"),
        "{behaviour}"
    );

    // A wrong password is refused while it lives; its own once it stopped.
    let password = password_of(&dir, &launched.id);
    let refused = try_login(master.pb, name, "guessed").expect_err("a wrong password");
    assert_eq!(refused.type_name, "twisted.cred.error.UnauthorizedLogin");

    let ended = wait_all_ended(&master);
    assert_eq!(phases(&ended[0]), TWO_BUILDS_THEN_IDLE_OUT, "{}", ended[0]);
    cloud.wait_none_alive("cloud");
    let refused = try_login(master.pb, name, &password).expect_err("a stale password");
    assert_eq!(refused.type_name, "twisted.cred.error.UnauthorizedLogin");

    // Five at once with a cap of three: three instances at the peak, all five built.
    let requests: Vec<i64> = (0..5).map(|_| master.force("job")).collect();
    for r in requests {
        let r = master.wait_request(r, LONG);
        assert_eq!(r["result"], "success", "{r}");
    }
    let ended = wait_all_ended(&master);
    let flood: Vec<Value> = ended
        .iter()
        .filter(|i| i["id"].as_i64() > Some(1))
        .cloned()
        .collect();
    assert_eq!(flood.len(), 3, "{flood:?}");
    assert_eq!(peak(&flood), 3, "never more than max_instances");
    assert!(
        cloud.sim.most_alive() <= 3,
        "the cloud never saw more than three"
    );
    cloud.wait_none_alive("cloud");
    assert_eq!(cloud.moto.instances().len(), 4, "one launch per instance");
}

#[test]
fn instances_that_never_connect_or_vanish_while_booting_are_replaced() {
    let dir = test_dir("ec2-missing");
    // The first instance hangs at boot; the second is terminated from outside while
    // its worker has not come up; the third works.
    let cloud = Cloud::start(
        &dir,
        BootPolicy {
            never: HashSet::from([1, 2]),
            ..BootPolicy::default()
        },
    );
    let master = start_master(
        &dir,
        &cloud,
        "missing_timeout = 15\nbuild_wait_timeout = 0\nsubstantiation_attempts = 5",
        &format!("ami = \"{IMAGE}\""),
    );
    let request = master.force("job");
    // Wait for the second instance to be waiting for its worker, and end it.
    let waiting = master.wait_for("/api/latent", LONG, "a second instance connecting", |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["id"].as_i64() == Some(2) && i["phase"] == "connecting")
        })
    });
    let second = waiting
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"].as_i64() == Some(2)).cloned())
        .expect("second instance");
    let killed_at = Instant::now();
    cloud
        .moto
        .terminate(second["cloud_id"].as_str().expect("cloud id"));

    let r = master.wait_request(request, LONG);
    assert_eq!(r["result"], "success", "built on the third: {r}");
    let ended = wait_all_ended(&master);
    let by_id = |id: i64| {
        ended
            .iter()
            .find(|i| i["id"].as_i64() == Some(id))
            .expect("instance")
    };
    assert_eq!(by_id(1)["failure_phase"], "connecting", "{}", by_id(1));
    assert!(
        by_id(1)["failure_reason"]
            .as_str()
            .is_some_and(|w| w.contains("longer than 15 s")),
        "{}",
        by_id(1)
    );
    assert_eq!(by_id(2)["failure_phase"], "connecting", "{}", by_id(2));
    assert!(
        by_id(2)["failure_reason"]
            .as_str()
            .is_some_and(|w| w.contains("went away: terminated")),
        "noticed from the cloud's state, not at missing_timeout: {}",
        by_id(2)
    );
    assert!(killed_at.elapsed() < LONG);
    cloud.wait_none_alive("cloud");
}

#[test]
fn a_worker_killed_mid_build_is_retried_on_a_replacement() {
    let dir = test_dir("ec2-killed");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    let marker = dir.join("marker");
    let mut master = start_master(
        &dir,
        &cloud,
        "build_wait_timeout = 0",
        &format!("ami = \"{IMAGE}\""),
    );
    let body = config(
        &cloud,
        &master.pb.to_string(),
        "build_wait_timeout = 0",
        &format!("ami = \"{IMAGE}\""),
    )
    .replace(
        "sleep 1; echo built on %(prop:workername)s",
        &format!(
            "if [ -e {m} ]; then echo second; else touch {m}; sleep 600; fi",
            m = marker.display()
        ),
    );
    master.set_body(&body);
    master.restart();
    let request = master.force("job");
    let build = master.wait_running_build(request, LONG);
    let name = build["worker"].as_str().expect("worker").to_owned();
    let instance = instances(&master)
        .into_iter()
        .find(|i| i["name"] == name.as_str())
        .expect("instance");
    let cloud_id = instance["cloud_id"].as_str().expect("cloud id").to_owned();
    wait::until("the first run to touch its marker", LONG, || {
        marker.exists()
    });
    cloud.sim.crash(&cloud_id);
    let r = master.wait_request(request, LONG);
    assert_eq!(r["result"], "success", "{r}");
    let builds = r["builds"].as_array().expect("builds");
    assert_eq!(builds[0]["result"], "retry", "{r}");
    assert_ne!(
        builds[0]["worker"], builds[1]["worker"],
        "a new instance took the retry"
    );
    wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
}

#[test]
fn api_faults_are_retried_without_duplicates_and_spot_falls_back() {
    let dir = test_dir("ec2-faults");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    for (action, kind, times) in [
        ("RunInstances", FaultKind::Throttle, 2),
        // This one launches the instance, then fails: the retry must find it.
        ("RunInstances", FaultKind::ServerErrorAfter, 1),
        ("DescribeInstances", FaultKind::ServerError, 2),
        ("TerminateInstances", FaultKind::Throttle, 1),
    ] {
        cloud.proxy.inject(Fault {
            action: action.into(),
            body_contains: None,
            kind,
            times,
        });
    }
    let master = start_master(
        &dir,
        &cloud,
        "build_wait_timeout = 0",
        &format!("ami = \"{IMAGE}\"\nspot = true\nspot_max_price = \"0.05\""),
    );
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
    assert_eq!(cloud.proxy.injected("RunInstances"), 3);
    assert_eq!(cloud.proxy.injected("TerminateInstances"), 1);
    assert_eq!(cloud.moto.instances().len(), 1, "no duplicate instance");

    // No spot capacity: the same instance is launched on demand instead.
    cloud.proxy.inject(Fault {
        action: "RunInstances".into(),
        body_contains: Some("MarketType=spot".into()),
        kind: FaultKind::NoCapacity,
        times: 1,
    });
    let before = cloud.proxy.calls("RunInstances");
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(
        cloud.proxy.calls("RunInstances") - before,
        2,
        "spot, then on demand"
    );
    wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
    assert_eq!(cloud.moto.instances().len(), 2);
    assert!(
        master.log().contains("launching on demand"),
        "{}",
        master.log()
    );
}

#[test]
fn no_capacity_on_demand_is_waited_out_not_fatal() {
    let dir = test_dir("ec2-capacity");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    // Without spot there is nothing to fall back to: the launch is tried again.
    cloud.proxy.inject(Fault {
        action: "RunInstances".into(),
        body_contains: None,
        kind: FaultKind::NoCapacity,
        times: 2,
    });
    let master = start_master(
        &dir,
        &cloud,
        "build_wait_timeout = 0",
        &format!("ami = \"{IMAGE}\""),
    );
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(cloud.proxy.injected("RunInstances"), 2);
    assert_eq!(cloud.proxy.calls("RunInstances"), 3);
    wait_all_ended(&master);
    cloud.wait_none_alive("cloud");
    assert_eq!(cloud.moto.instances().len(), 1);
}

#[test]
fn after_a_crash_known_instances_are_adopted_and_unknown_ones_terminated() {
    let dir = test_dir("ec2-crash");
    // The first instance's boot is held until after the master's restart, so its
    // worker logs in to the new master.
    let cloud = Cloud::start(
        &dir,
        BootPolicy {
            never: HashSet::from([1]),
            ..BootPolicy::default()
        },
    );
    let mut master = start_master(
        &dir,
        &cloud,
        "missing_timeout = 120\nbuild_wait_timeout = 0\nsweep_interval = 2",
        &format!("ami = \"{IMAGE}\""),
    );
    let request = master.force("job");
    let connecting = master.wait_for(
        "/api/latent",
        LONG,
        "an instance waiting for its worker",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|i| i["phase"] == "connecting"))
        },
    );
    let name = connecting[0]["name"].as_str().expect("name").to_owned();
    let cloud_id = connecting[0]["cloud_id"]
        .as_str()
        .expect("cloud id")
        .to_owned();
    let master_id = cloud
        .moto
        .instances()
        .iter()
        .find(|i| i.id == cloud_id)
        .map(|i| i.tags["pbmaster:master"].clone())
        .expect("tagged instance");
    master.kill();

    // While it is down: an instance of this master the database does not know (as if
    // the crash came between RunInstances and recording its answer), and one of
    // another master.
    let stray = cloud.moto.launch_tagged(&[
        ("pbmaster:master", &master_id),
        ("pbmaster:pool", "cloud"),
        ("pbmaster:instance", "cloud-99"),
    ]);
    let foreign = cloud.moto.launch_tagged(&[
        ("pbmaster:master", "another-master"),
        ("pbmaster:pool", "cloud"),
        ("pbmaster:instance", "cloud-1"),
    ]);
    master.restart();
    let adopted = master.wait_for("/api/latent", LONG, "the instance to be adopted", |v| {
        v.as_array().is_some_and(|a| {
            a.iter().any(|i| {
                i["name"] == name.as_str()
                    && i["phase"] == "connecting"
                    && phases(i).iter().filter(|p| *p == "booting").count() == 2
            })
        })
    });
    assert!(master.log().contains("adopted an instance"), "{adopted}");

    // Its worker comes up now, from its user data, with its one-time credentials.
    cloud.sim.release(1);
    let r = master.wait_request(request, LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(
        r["builds"][0]["worker"],
        name.as_str(),
        "built on the adopted instance"
    );
    wait_all_ended(&master);
    // Only the other master's instance is left; the stray one was terminated.
    cloud.wait_alive_exactly(&[&foreign]);
    let stray_state = cloud
        .moto
        .instances()
        .into_iter()
        .find(|i| i.id == stray)
        .map(|i| i.state);
    assert_eq!(stray_state.as_deref(), Some("terminated"));
    assert!(master.log().contains("the database does not know"));

    // While it runs, the periodic sweep ends what no live instance accounts for (here a
    // duplicate name, as an ambiguous launch could leave), and nothing else.
    let duplicate = cloud.moto.launch_tagged(&[
        ("pbmaster:master", &master_id),
        ("pbmaster:pool", "cloud"),
        ("pbmaster:instance", &name),
    ]);
    cloud.wait_alive_exactly(&[&foreign]);
    assert!(master.log().contains(&duplicate), "the sweep named it");
}

#[test]
fn an_invalid_image_fails_the_build_with_the_clouds_words_and_no_tight_loop() {
    let dir = test_dir("ec2-bad-ami");
    let cloud = Cloud::start(&dir, BootPolicy::default());
    let master = start_master(
        &dir,
        &cloud,
        "build_wait_timeout = 0",
        "ami = \"ami-00000000\"",
    );
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "exception", "{r}");
    let reason = r["builds"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("InvalidAMIID") && reason.contains("failed while launching"),
        "the build says why: {r}"
    );
    // Three more: each fails, and the pool does not hammer the API meanwhile.
    let more: Vec<i64> = (0..3).map(|_| master.force("job")).collect();
    for id in more {
        let r = master.wait_request(id, LONG);
        assert_eq!(r["result"], "exception", "{r}");
    }
    // Not a wait for an event: a quiet spell in which a tight loop would show.
    std::thread::sleep(Duration::from_secs(3));
    let pools = master.get("/api/latent/pools");
    assert!(
        pools[0]["last_failure"]
            .as_str()
            .is_some_and(|f| f.contains("InvalidAMIID")),
        "{pools}"
    );
    let launches = cloud.proxy.calls("RunInstances");
    assert!(launches <= 4, "one launch per request at most: {launches}");
    assert!(cloud.moto.instances().is_empty());
}
