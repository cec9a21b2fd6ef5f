//! Latent pools with the `docker` driver, against a real dockerd started for these
//! tests: every instance is a container of the stock Debian image (python3 and
//! cloud-init, nothing of buildbot) that boots through real cloud-init with a NoCloud
//! seed; the driver's default user data installs buildbot-worker 4.3.0 with pip and
//! starts it with the instance's one-time credentials. The wheels come from a folder
//! mounted read-only into the containers (pip with no index), so the tests need no
//! network; everything else is what a cloud machine would do.
//!
//! One daemon serves every test (run one at a time); it is stopped by its PID, with
//! its mounts undone, when they end. Nothing a test started may be left: each one
//! ends by checking that no container carries the master's label.

mod support;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::docker::{cannot_run, stock_image_dir, Dockerd};
use support::latent::{instances, phases, wait_all_ended};
use support::master::{test_dir, MasterProcess};
use support::wait;

const IMAGE: &str = "pbmaster-stock:test";

/// One test, given the shared daemon.
type DockerTest = fn(&Dockerd);
/// Boots install a venv and a worker: generous, since the machine may be loaded.
const LONG: Duration = Duration::from_secs(300);

fn main() {
    let mut args = Arguments::from_args();
    // One daemon, containers on the host's network: one test at a time.
    args.test_threads = Some(1);
    if let Some(why) = cannot_run() {
        println!("docker tests skipped: {why}");
        libtest_mimic::run(&args, vec![]).exit();
    }
    let stock = stock_image_dir();
    assert!(
        stock.join(".done").exists(),
        "no stock image at {}: run scripts/install-stock-image.sh",
        stock.display()
    );
    let started = Instant::now();
    let dockerd = Arc::new(Dockerd::start());
    dockerd.import(&stock.join("rootfs.tar"), IMAGE);
    println!(
        "private dockerd up and stock image imported in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let tests: [(&str, DockerTest); 2] = [
        (
            "cloud_init_boots_a_worker_that_builds_idles_out_and_leaves_nothing",
            builds_then_idles_out,
        ),
        (
            "a_container_killed_mid_build_is_retried_and_strays_are_swept",
            killed_mid_build_and_swept,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let d = dockerd.clone();
            Trial::test(name, move || {
                test(&d);
                Ok::<(), Failed>(())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(dockerd);
    conclusion.exit();
}

/// A master with one docker pool on the stock image; `extra` goes into the pool.
fn start_master(
    dir: &Path,
    d: &Dockerd,
    extra: &str,
    volumes: &[String],
    command: &str,
) -> MasterProcess {
    let wheels = stock_image_dir().join("wheels");
    let mut all = vec![format!("{}:/wheels:ro", wheels.display())];
    all.extend_from_slice(volumes);
    let body = format!(
        r#"
[[latent_pool]]
name = "pool"
driver = "docker"
poll_interval = 1
max_instances = 2
{extra}

[latent_pool.docker]
image = "{IMAGE}"
host = "{host}"
network = "host"
memory_mb = 1024
volumes = {volumes}
env = {{ PIP_NO_INDEX = "1", PIP_FIND_LINKS = "/wheels", PIP_DISABLE_PIP_VERSION_CHECK = "1" }}
labels = {{ suite = "docker-tests" }}

[[builder]]
name = "job"
workers = ["pool"]

[[builder.step]]
command = '''{command}'''
"#,
        host = d.host(),
        volumes = serde_json::to_string(&all).expect("json"),
    );
    MasterProcess::start(&dir.join("master"), "", &body)
}

/// The master's id, from the labels of one of its containers.
fn master_id(d: &Dockerd, container: &str) -> String {
    let id = d.label_of(container, "pbmaster.master");
    assert!(!id.is_empty(), "container {container} has the master label");
    id
}

/// No container of the master is left, running or not.
fn assert_no_leak(d: &Dockerd, master: &str) {
    let left = d.labelled(&format!("pbmaster.master={master}"));
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

/// Seconds from the first transition to `ready`.
fn boot_seconds(instance: &Value) -> Option<f64> {
    let t = instance["transitions"].as_array()?;
    let start = t.first()?[1].as_f64()?;
    let ready = t.iter().find(|e| e[0] == "ready")?[1].as_f64()?;
    Some(ready - start)
}

fn builds_then_idles_out(d: &Dockerd) {
    let dir = test_dir("docker-build");
    // Proof of where the step ran: the user cloud-init ran the worker as, the file
    // cloud-init keeps of the instance's user data, the image's release.
    let command = "echo built on %(prop:workername)s as $(id -un); \
                   test -s /var/lib/cloud/instance/user-data.txt && echo user data from cloud-init; \
                   . /etc/os-release && echo on $ID $VERSION_CODENAME";
    let mut master = start_master(&dir, d, "build_wait_timeout = 5", &[], command);
    let r = master.wait_request(master.force("job"), LONG);
    assert_eq!(r["result"], "success", "{r}\n{}", master.log());
    let build = &r["builds"][0];
    let worker = build["worker"].as_str().expect("worker").to_owned();
    let out = master.output(build["id"].as_i64().expect("build id"), 1, "stdout");
    assert!(
        out.contains(&format!("built on {worker} as buildbot")),
        "{out}"
    );
    assert!(out.contains("user data from cloud-init"), "{out}");
    assert!(out.contains("on debian"), "{out}");

    // Running now: its container carries the master's labels.
    let instance = instances(&master)
        .into_iter()
        .find(|i| i["name"] == worker.as_str())
        .expect("instance");
    let container = instance["cloud_id"].as_str().expect("cloud id").to_owned();
    let id = master_id(d, &container);
    assert_eq!(d.label_of(&container, "pbmaster.instance"), worker);
    assert_eq!(d.label_of(&container, "suite"), "docker-tests");
    if let Some(s) = boot_seconds(&instance) {
        println!("cold boot, launch to worker attached: {s:.1} s");
    }

    // Its idle time out, the instance stops and its container is removed.
    let ended = wait_all_ended(&master, LONG);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["phase"], "stopped", "{}", ended[0]);
    let p = phases(&ended[0]);
    assert!(
        p.ends_with(&["idle", "draining", "stopping", "stopped"].map(String::from)),
        "{p:?}"
    );
    assert_no_leak(d, &id);
    master.terminate(Duration::from_secs(30));
    assert_no_leak(d, &id);
}

fn killed_mid_build_and_swept(d: &Dockerd) {
    let dir = test_dir("docker-killed");
    // A folder every container shares: the first build leaves a marker there and
    // hangs; the retry sees it and ends.
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).expect("shared");
    std::process::Command::new("chmod")
        .args(["0777"])
        .arg(&shared)
        .status()
        .expect("chmod");
    let volume = format!("{}:/shared", shared.display());
    let command =
        "if [ -e /shared/marker ]; then echo second run; else touch /shared/marker; sleep 600; fi";
    let mut master = start_master(
        &dir,
        d,
        "build_wait_timeout = 0\nsweep_interval = 2",
        &[volume],
        command,
    );
    let req = master.force("job");
    let build = master.wait_running_build(req, LONG);
    wait::until("the first run to leave its marker", LONG, || {
        shared.join("marker").exists()
    });
    let name = build["worker"].as_str().expect("worker").to_owned();
    let instance = instances(&master)
        .into_iter()
        .find(|i| i["name"] == name.as_str())
        .expect("instance");
    let container = instance["cloud_id"].as_str().expect("cloud id").to_owned();
    let id = master_id(d, &container);

    // The container dies under its build, as a crash would.
    d.cli(&["kill", &container]).expect("docker kill");
    let r = master.wait_request(req, LONG);
    assert_eq!(r["result"], "success", "{r}");
    let builds = r["builds"].as_array().expect("builds");
    assert_eq!(builds[0]["result"], "retry", "{r}");
    assert_ne!(
        builds[0]["worker"], builds[1]["worker"],
        "a new instance took the retry"
    );
    let out = master.output(builds[1]["id"].as_i64().expect("id"), 1, "stdout");
    assert!(out.contains("second run"), "{out}");

    wait_all_ended(&master, LONG);

    // Strays: a container under this master's labels named as its stopped first
    // instance (as a duplicate from an ambiguous launch would be) is swept; one under
    // a name this master never launched, or under another master's id, is left alone.
    let run = |labels: &[String]| {
        let mut args = vec!["run", "-d", "--network", "host"];
        for l in labels {
            args.extend(["--label", l.as_str()]);
        }
        args.extend([IMAGE, "sleep", "600"]);
        d.cli(&args).expect("docker run").trim().to_owned()
    };
    let ours = |name: &str| {
        vec![
            format!("pbmaster.master={id}"),
            "pbmaster.pool=pool".to_owned(),
            format!("pbmaster.instance={name}"),
        ]
    };
    let unknown = run(&ours("pool-999"));
    let other = run(&[
        "pbmaster.master=someone-else".to_owned(),
        "pbmaster.pool=pool".to_owned(),
        format!("pbmaster.instance={name}"),
    ]);
    let stray = run(&ours(&name));
    wait::until("the sweep to end the stray", LONG, || {
        !d.labelled(&format!("pbmaster.master={id}"))
            .contains(&stray)
    });
    assert!(master
        .log()
        .contains("leaving an instance tagged with this master's id that it never launched"));
    d.cli(&["rm", "-f", &unknown]).expect("rm");
    master.terminate(Duration::from_secs(30));
    assert_no_leak(d, &id);
    let others = d.labelled("pbmaster.master=someone-else");
    assert_eq!(
        others,
        [other.as_str()],
        "another master's container is left alone"
    );
    d.cli(&["rm", "-f", &other]).expect("rm");
}
