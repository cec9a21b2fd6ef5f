//! Latent pools with the `local` driver: every instance is a real buildbot-worker 4.3.0
//! started on demand with one-time credentials, each phase recorded and timed.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::latent::{instances, peak, phases, TWO_BUILDS_THEN_IDLE_OUT};
use support::master::{test_dir, MasterProcess};
use support::pb::try_login;
use support::wait;
use support::workers::Generation;

const LONG: Duration = Duration::from_secs(90);

fn venv() -> PathBuf {
    Generation::Worker4.venv()
}

/// The default local boot script, run only once a marker says so: the first instance
/// does `first` instead.
fn boot_script_after(marker: &Path, first: &str) -> String {
    format!(
        "if [ ! -e {m} ]; then touch {m}; {first}; fi\n\"{{{{venv}}}}/bin/buildbot-worker\" create-worker worker \"{{{{master}}}}\" \"{{{{name}}}}\" \"{{{{password}}}}\"\ncd worker\nexec \"{{{{venv}}}}/bin/twistd\" --nodaemon --no_save --pidfile= -y buildbot.tac\n",
        m = marker.display()
    )
}

fn config(pool_extra: &str) -> String {
    format!(
        r#"
[[latent_pool]]
name = "pool"
driver = "local"
venv = "{venv}"
poll_interval = 1
{pool_extra}

[[builder]]
name = "job"
workers = ["pool"]

[[builder.step]]
command = "sleep 1; echo built on %(prop:workername)s"
"#,
        venv = venv().display()
    )
}

fn wait_all_ended(master: &MasterProcess) -> Vec<Value> {
    support::latent::wait_all_ended(master, LONG)
}

#[test]
fn on_demand_instances_build_idle_out_are_reused_and_capped() {
    let dir = test_dir("latent-demand");
    let master = MasterProcess::start(
        &dir.join("master"),
        "",
        &config("max_instances = 3\nbuild_wait_timeout = 4\nprice_per_hour = 3.6"),
    );

    // One request: one instance, through every phase, stopped after its idle time.
    let first = master.wait_request(master.force("job"), LONG);
    assert_eq!(first["result"], "success", "{first}");
    // A second request inside the idle time reuses it.
    let second = master.wait_request(master.force("job"), LONG);
    assert_eq!(second["result"], "success");
    assert_eq!(
        first["builds"][0]["worker"], second["builds"][0]["worker"],
        "reused within build_wait_timeout"
    );
    let ended = wait_all_ended(&master);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(phases(&ended[0]), TWO_BUILDS_THEN_IDLE_OUT, "{}", ended[0]);
    // Its accounting, in the API and on the latent page: two builds, a cost at
    // 3.6 per hour (a thousandth per second), the cost per build with idle time shared.
    let accounting = &ended[0]["accounting"];
    assert_eq!(accounting["builds_run"], 2, "{accounting}");
    let cost = accounting["cost"].as_f64().expect("a cost");
    let seconds = accounting["instance_seconds"].as_f64().expect("seconds");
    assert!((cost - seconds / 1000.0).abs() < 1e-9, "{accounting}");
    let page = String::from_utf8(master.get_bytes("/latent")).expect("UTF-8 page");
    assert!(page.contains("Time to ready"), "{page}");
    let per_build = accounting["cost_per_build"].as_f64().expect("per build");
    let row = format!("{cost:.4} ({per_build:.4} per build)");
    assert!(page.contains(&row), "{row} in {page}");
    assert!(page.contains("2 (busy "), "{page}");
    // The two build records carry their shares of it, idle time included.
    let shares: Vec<f64> = [&first, &second]
        .iter()
        .map(|r| {
            let id = r["builds"][0]["id"].as_i64().expect("build id");
            let b = master.get(&format!("/api/builds/{id}"));
            b["cost"].as_f64().unwrap_or_else(|| panic!("no cost: {b}"))
        })
        .collect();
    assert!(shares.iter().all(|s| *s > 0.0), "{shares:?}");
    assert!(
        (shares.iter().sum::<f64>() - cost).abs() < 1e-9,
        "{shares:?} vs {accounting}"
    );
    // Each phase on its way to ready was timed once, for this one instance.
    let metrics = String::from_utf8(master.get_bytes("/metrics")).expect("UTF-8");
    for phase in [
        "requested",
        "launching",
        "booting",
        "connecting",
        "attaching",
    ] {
        let line =
            format!("pbmaster_latent_phase_seconds_count{{pool=\"pool\",phase=\"{phase}\"}} 1\n");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // A flood of five with a cap of three: exactly three at the peak, all succeed.
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
        !master.log().contains("cannot go from"),
        "no forbidden transition"
    );
}

#[test]
fn an_instance_that_never_connects_or_dies_is_replaced() {
    let dir = test_dir("latent-missing");
    let marker = dir.join("first-instance-done");
    std::fs::create_dir_all(&dir).expect("dir");
    let script = boot_script_after(&marker, "sleep 600");
    let extra =
        format!("missing_timeout = 10\nbuild_wait_timeout = 0\nboot_script = '''\n{script}'''");
    let master = MasterProcess::start(&dir.join("master"), "", &config(&extra));
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(
        r["result"], "success",
        "the build ran on the next instance: {r}"
    );
    let ended = wait_all_ended(&master);
    let failed = ended
        .iter()
        .find(|i| i["phase"] == "failed")
        .expect("a failed instance");
    assert_eq!(failed["failure_phase"], "connecting", "{failed}");
    assert!(
        failed["failure_reason"]
            .as_str()
            .is_some_and(|w| w.contains("longer than 10 s")),
        "{failed}"
    );

    // An instance whose boot script dies is noticed from the driver, not at the timeout.
    let dir = test_dir("latent-dies");
    let marker = dir.join("first-instance-done");
    std::fs::create_dir_all(&dir).expect("dir");
    let script = boot_script_after(&marker, "exit 3");
    let extra =
        format!("missing_timeout = 600\nbuild_wait_timeout = 0\nboot_script = '''\n{script}'''");
    let master = MasterProcess::start(&dir.join("master"), "", &config(&extra));
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    let ended = wait_all_ended(&master);
    let failed = ended
        .iter()
        .find(|i| i["phase"] == "failed")
        .expect("a failed instance");
    assert!(
        failed["failure_reason"]
            .as_str()
            .is_some_and(|w| w.contains("went away")),
        "{failed}"
    );
}

#[test]
fn a_worker_killed_mid_build_is_retried_on_a_new_instance() {
    let dir = test_dir("latent-killed");
    let body = config("build_wait_timeout = 0").replace(
        "sleep 1; echo built on %(prop:workername)s",
        "if [ -e ../../../../../marker ]; then echo second; else touch ../../../../../marker; sleep 600; fi",
    );
    let master = MasterProcess::start(&dir.join("master"), "", &body);
    let req = master.force("job");
    let build = master.wait_running_build(req, LONG);
    // The build's workdir is data/latent/POOL/NAME/worker/job/build.
    let marker = dir.join("master/data/latent/marker");
    wait::until("the first run to touch its marker", LONG, || {
        marker.exists()
    });
    // Kill the instance's process group (its worker), as a crash would.
    let name = build["worker"].as_str().expect("worker").to_owned();
    let instance = instances(&master)
        .into_iter()
        .find(|i| i["name"] == name.as_str())
        .expect("instance");
    let pgid = instance["cloud_id"].as_str().expect("cloud id").to_owned();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    let r = master.wait_request(req, LONG);
    assert_eq!(r["result"], "success", "{r}");
    let builds = r["builds"].as_array().expect("builds");
    assert_eq!(builds[0]["result"], "retry", "{r}");
    assert_ne!(
        builds[0]["worker"], builds[1]["worker"],
        "a new instance took the retry"
    );
    wait_all_ended(&master);
}

/// Whether any process of the group is still running (zombies, waiting for a parent
/// that is gone, do not count).
fn group_alive(pgid: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: split after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        fields.len() > 2 && fields[2] == pgid && fields[0] != "Z"
    })
}

#[test]
fn stale_and_impostor_logins_are_refused() {
    let dir = test_dir("latent-impostor");
    let master = MasterProcess::start(&dir.join("master"), "", &config("build_wait_timeout = 6"));
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success");
    let name = r["builds"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_owned();
    let boot = std::fs::read_to_string(dir.join(format!("master/data/latent/pool/{name}/boot.sh")))
        .expect("boot script");
    // The script writes `passwd = 'PASSWORD'` into buildbot.tac.
    let password = boot
        .split("passwd = '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("password in the boot script")
        .to_owned();
    assert!(
        !boot.contains(&format!("\"{password}\"")),
        "the password is no command's argument: {boot}"
    );
    assert_eq!(password.len(), 24, "{boot}");
    // While the instance lives (idle), a wrong password is refused.
    let refused = try_login(master.pb, &name, "guessed").expect_err("a wrong password");
    assert_eq!(refused.type_name, "twisted.cred.error.UnauthorizedLogin");
    // Once it stopped, its own password opens nothing.
    wait_all_ended(&master);
    let refused = try_login(master.pb, &name, &password).expect_err("a stale password");
    assert_eq!(refused.type_name, "twisted.cred.error.UnauthorizedLogin");
}

#[test]
fn a_master_killed_between_launch_and_attach_leaves_no_instance() {
    let dir = test_dir("latent-crash");
    let marker = dir.join("first-instance-done");
    std::fs::create_dir_all(&dir).expect("dir");
    let script = boot_script_after(&marker, "sleep 600");
    let extra = format!("missing_timeout = 600\nboot_script = '''\n{script}'''");
    let mut master = MasterProcess::start(&dir.join("master"), "", &config(&extra));
    master.force("job");
    let connecting = master.wait_for(
        "/api/latent",
        LONG,
        "an instance waiting for its worker",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|i| i["phase"] == "connecting"))
        },
    );
    let pgid = connecting[0]["cloud_id"]
        .as_str()
        .expect("cloud id")
        .to_owned();
    assert!(group_alive(&pgid));
    master.kill();
    assert!(group_alive(&pgid), "the instance outlived the master");
    master.restart();
    let after = master.wait_for(
        "/api/latent",
        LONG,
        "the old instance to be reconciled",
        |v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["cloud_id"] == pgid.as_str() && i["phase"] == "stopped")
            })
        },
    );
    assert!(!group_alive(&pgid), "terminated after the restart: {after}");
    // The queued request still runs, on a new instance.
    let r = master.wait_request(1, LONG);
    assert_eq!(r["result"], "success", "{r}");
}

#[test]
fn stopping_the_master_stops_its_instances() {
    let dir = test_dir("latent-shutdown");
    let mut master =
        MasterProcess::start(&dir.join("master"), "", &config("build_wait_timeout = -1"));
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success");
    let kept = instances(&master);
    assert_eq!(
        kept[0]["phase"], "idle",
        "build_wait_timeout < 0 keeps it: {kept:?}"
    );
    let pgid = kept[0]["cloud_id"].as_str().expect("cloud id").to_owned();
    assert!(group_alive(&pgid));
    let status = master.terminate(LONG);
    assert!(status.success());
    assert!(!group_alive(&pgid), "no instance outlives the master");
    master.restart();
    assert_eq!(instances(&master)[0]["phase"], "stopped");
}

#[test]
fn a_pool_that_cannot_start_fails_the_build_with_the_phase_and_reason() {
    let dir = test_dir("latent-broken");
    let extra = "substantiation_attempts = 2\nboot_script = '''\necho no worker here; exit 7\n'''";
    let master = MasterProcess::start(&dir.join("master"), "", &config(extra));
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "exception", "{r}");
    let builds = r["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 1, "{r}");
    let reason = builds[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("failed while") && reason.contains("exit status: 7"),
        "the build says which phase failed and why: {r}"
    );
    let ended = wait_all_ended(&master);
    assert_eq!(
        ended.len(),
        2,
        "two attempts, then the build failed: {ended:?}"
    );
}

#[test]
fn an_instance_that_no_build_takes_stops_after_its_idle_time() {
    let dir = test_dir("latent-unneeded");
    let marker = dir.join("first-instance-done");
    std::fs::create_dir_all(&dir).expect("dir");
    // The first instance boots slowly, so a static worker started meanwhile takes the
    // request it was started for.
    let script = boot_script_after(&marker, "sleep 4");
    let body = format!(
        r#"
[[worker]]
name = "w1"
password = "pw"

[[latent_pool]]
name = "pool"
driver = "local"
venv = "{venv}"
poll_interval = 1
build_wait_timeout = 2
boot_script = '''
{script}'''

[[builder]]
name = "job"
workers = ["w1", "pool"]

[[builder.step]]
command = "echo built on %(prop:workername)s"
"#,
        venv = venv().display()
    );
    let master = MasterProcess::start(&dir.join("master"), "", &body);
    let request = master.force("job");
    master.wait_for("/api/latent", LONG, "an instance to start", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    let opts = support::workers::WorkerOptions::new("w1", "pw", master.pb);
    let _w1 = support::workers::RunningWorker::start(Generation::Worker4, &dir.join("w1"), &opts)
        .expect("worker");
    let r = master.wait_request(request, LONG);
    assert_eq!(r["builds"][0]["worker"], "w1", "{r}");
    // The instance attaches after that, gets no build, and stops once idle long enough.
    let ended = wait_all_ended(&master);
    assert_eq!(ended.len(), 1, "{ended:?}");
    let phases = phases(&ended[0]);
    assert!(
        phases.ends_with(&["ready", "draining", "stopping", "stopped"].map(String::from)),
        "{phases:?}"
    );
    let reasons: Vec<&str> = ended[0]["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t[2].as_str())
        .collect();
    assert!(reasons.contains(&"idle time over"), "{}", ended[0]);
}

/// Seconds from a forced request to its first step's start (its first command sent).
fn force_to_first_command(master: &MasterProcess, builder: &str) -> f64 {
    let r = master.wait_request(master.force(builder), LONG);
    assert_eq!(r["result"], "success", "{r}");
    let build = master.get(&format!("/api/builds/{}", r["builds"][0]["id"]));
    let first = build["steps"][0]["started_at"].as_f64().expect("a step");
    first - r["submitted_at"].as_f64().expect("submitted_at")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_warm_pool_keeps_its_minimum_ready_through_idle_time_and_builds_at_once() {
    let dir = test_dir("latent-warm");
    let venv = venv();
    let body = format!(
        r#"
[[latent_pool]]
name = "warm"
driver = "local"
venv = "{venv}"
poll_interval = 1
min_instances = 1
build_wait_timeout = 2

[[latent_pool]]
name = "cold"
driver = "local"
venv = "{venv}"
poll_interval = 1
build_wait_timeout = 0

[[builder]]
name = "job"
workers = ["warm"]

[[builder.step]]
command = "echo built on %(prop:workername)s"

[[builder]]
name = "cold-job"
workers = ["cold"]

[[builder.step]]
command = "echo built on %(prop:workername)s"
"#,
        venv = venv.display()
    );
    let mut master = MasterProcess::start(&dir.join("master"), "", &body);
    // Started with no request at all.
    master.wait_for("/api/latent", LONG, "the warm instance to be ready", |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["pool"] == "warm" && i["phase"] == "ready")
        })
    });
    // Well past build_wait_timeout: still there, the only one.
    std::thread::sleep(Duration::from_secs(4));
    let warm: Vec<Value> = instances(&master)
        .into_iter()
        .filter(|i| i["pool"] == "warm")
        .collect();
    assert_eq!(warm.len(), 1, "{warm:?}");
    assert_eq!(
        warm[0]["phase"], "ready",
        "the idle timer keeps it: {}",
        warm[0]
    );

    let (mut hot, mut cold) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        hot.push(force_to_first_command(&master, "job"));
        cold.push(force_to_first_command(&master, "cold-job"));
        support::latent::wait_pool_ended(&master, "cold", LONG);
    }
    eprintln!(
        "force -> first command (median of 3): warm pool {:.2} s, cold pool {:.2} s; warm {hot:.2?}, cold {cold:.2?}",
        median(hot.clone()),
        median(cold.clone())
    );
    // Every warm build ran on the one warm instance, which is idle and still kept.
    std::thread::sleep(Duration::from_secs(3));
    let warm: Vec<Value> = instances(&master)
        .into_iter()
        .filter(|i| i["pool"] == "warm")
        .collect();
    assert_eq!(warm.len(), 1, "{warm:?}");
    assert_eq!(warm[0]["phase"], "idle", "{}", warm[0]);
    let pgid = warm[0]["cloud_id"].as_str().expect("cloud id").to_owned();
    // A stopping master stops warm instances too.
    assert!(master.terminate(LONG).success());
    assert!(!group_alive(&pgid));
}

#[test]
fn instances_are_recycled_after_max_uses_and_max_age() {
    let dir = test_dir("latent-recycle");
    let venv = venv();
    let body = format!(
        r#"
[[latent_pool]]
name = "used"
driver = "local"
venv = "{venv}"
poll_interval = 1
min_instances = 1
max_uses = 2
build_wait_timeout = -1

[[latent_pool]]
name = "aged"
driver = "local"
venv = "{venv}"
poll_interval = 1
min_instances = 1
max_age = 8
build_wait_timeout = -1

[[builder]]
name = "job"
workers = ["used"]

[[builder.step]]
command = "echo built on %(prop:workername)s"
"#,
        venv = venv.display()
    );
    let master = MasterProcess::start(&dir.join("master"), "", &body);
    let workers: Vec<String> = (0..3)
        .map(|_| {
            let r = master.wait_request(master.force("job"), LONG);
            assert_eq!(r["result"], "success", "{r}");
            r["builds"][0]["worker"]
                .as_str()
                .expect("worker")
                .to_owned()
        })
        .collect();
    assert_eq!(workers[0], workers[1], "{workers:?}");
    assert_ne!(
        workers[1], workers[2],
        "replaced after max_uses: {workers:?}"
    );
    let first = master.wait_for("/api/latent", LONG, "the used one to stop", |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["name"] == workers[0].as_str() && i["phase"] == "stopped")
        })
    });
    let first = first
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == workers[0].as_str()).cloned())
        .expect("instance");
    assert!(
        phases(&first)
            .ends_with(&["building", "draining", "stopping", "stopped"].map(String::from)),
        "{first}"
    );
    assert!(first.to_string().contains("max_uses = 2"), "{first}");

    // The aged pool's first instance is replaced once max_age has passed.
    let aged = master.wait_for("/api/latent", LONG, "an aged instance replaced", |v| {
        let aged: Vec<&Value> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["pool"] == "aged")
            .collect();
        aged.iter().any(|i| i["phase"] == "stopped") && aged.iter().any(|i| i["phase"] == "ready")
    });
    let stopped = aged
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|i| i["pool"] == "aged" && i["phase"] == "stopped")
                .cloned()
        })
        .expect("stopped");
    assert!(stopped.to_string().contains("max_age"), "{stopped}");
}
