//! `pbmaster import-buildbot` on buildbot's own sample config and on configs written
//! for it (tests/import/*/master.cfg), loaded by the real buildbot 4.3.0 package: the
//! output passes `pbmaster check`, the TODO list is exactly what cannot be translated,
//! and the imported master runs a build on a real buildbot-worker 4.3.0 with the same
//! step results and output as the buildbot master running the original config.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::master::{free_port, tail, test_dir, write_secret};
use support::workers::{require_peer, Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(120);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(name)
}

/// Runs the importer on `path`, writing `out`.
fn import(path: &Path, out: &Path, env: &[(&str, String)]) -> Output {
    let venv = require_peer("buildbot-master");
    Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("import-buildbot")
        .arg(path)
        .arg("-o")
        .arg(out)
        .arg("--venv")
        .arg(venv)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("pbmaster runs")
}

/// Imports `path` and checks the output; returns the TODO lines and the TOML.
fn import_checked(path: &Path, dir: &Path, env: &[(&str, String)]) -> (Vec<String>, String) {
    let out = dir.join("master.toml");
    let o = import(path, &out, env);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "import failed:\n{stderr}");
    assert!(o.stdout.is_empty(), "with -o nothing goes to stdout");
    let todos: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("TODO: "))
        .map(str::to_string)
        .collect();
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with(&format!(", {} TODO", todos.len())),
        "summary {summary:?}\n{stderr}"
    );
    let text = std::fs::read_to_string(&out).expect("output written");
    // Every TODO is also in the output, as a comment.
    for t in &todos {
        let first_line = t.lines().next().unwrap_or_default();
        assert!(
            text.contains(&format!("# TODO(import): {first_line}")),
            "{t:?} not in the output:\n{text}"
        );
    }
    let check = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(["check", "--config"])
        .arg(&out)
        .output()
        .expect("check runs");
    let errors = String::from_utf8_lossy(&check.stderr).into_owned();
    let needs = |driver: &str| text.contains(&format!("driver = \"{driver}\""));
    if (cfg!(feature = "ec2") || !needs("ec2")) && (cfg!(feature = "docker") || !needs("docker")) {
        assert!(
            check.status.success(),
            "pbmaster check refuses the import:\n{errors}\n{text}"
        );
    } else {
        // Without the ec2 or docker feature, their pools are all `check` may refuse.
        for line in errors.lines().filter(|l| !l.contains(": warning: ")) {
            assert!(
                line.contains("built without the `ec2` feature")
                    || line.contains("built without the `docker` feature"),
                "pbmaster check refuses the import:\n{errors}\n{text}"
            );
        }
    }
    (todos, text)
}

fn assert_todos(got: &[String], want: &[&str]) {
    let got: Vec<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(got, want, "TODO list differs:\n{}", got.join("\n"));
}

#[test]
fn buildbot_sample_config() {
    let dir = test_dir("import-sample");
    let sample = require_peer("buildbot-master")
        .join("lib/python3.11/site-packages/buildbot/scripts/sample.cfg");
    std::fs::copy(&sample, dir.join("master.cfg")).expect("buildbot's sample config");
    let (todos, text) = import_checked(&dir.join("master.cfg"), &dir, &[]);
    assert_todos(
        &todos,
        &[
            r#"c["title"]: "Hello World CI" has no pbmaster setting"#,
            r#"c["titleURL"]: "https://buildbot.github.io/hello-world/" has no pbmaster setting"#,
            r#"c["buildbotURL"]: "http://localhost:8010/" has no pbmaster setting"#,
        ],
    );
    // The sample's GitPoller follows its one branch.
    for line in [
        "[[change_source]]",
        r#"repo = "https://github.com/buildbot/hello-world.git""#,
        r#"branches = ["master"]"#,
        "interval = 300",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(text.contains("pb_listen = \"0.0.0.0:9989\""), "{text}");
    assert!(text.contains("http_listen = \"127.0.0.1:8010\""), "{text}");
    assert!(text.contains("repo_url = \"https://github.com/buildbot/hello-world.git\""));
    assert!(text.contains("password_file = \"secrets/worker-example-worker\""));
    assert!(
        !text.contains("\"pass\""),
        "a password in the TOML:\n{text}"
    );
    let pass = std::fs::read_to_string(dir.join("secrets/worker-example-worker")).unwrap();
    assert_eq!(pass, "pass");
}

/// `--setup` makes the importer's own venv from PyPI (buildbot pinned), and that
/// venv imports exactly as the peer's does.
#[test]
fn setup_makes_a_venv_that_imports_the_same() {
    let dir = test_dir("import-setup");
    let peer = require_peer("buildbot-master");
    let venv = dir.join("venv");
    let setup = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(["import-buildbot", "--setup", "--venv"])
        .arg(&venv)
        .arg("--python")
        .arg(peer.join("bin/python"))
        .stdin(Stdio::null())
        .output()
        .expect("pbmaster runs");
    assert!(
        setup.status.success(),
        "setup failed:\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    assert!(venv.join("bin/python").exists());
    let sample = peer.join("lib/python3.11/site-packages/buildbot/scripts/sample.cfg");
    std::fs::copy(&sample, dir.join("master.cfg")).expect("buildbot's sample config");
    let ours = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("import-buildbot")
        .arg(dir.join("master.cfg"))
        .arg("--venv")
        .arg(&venv)
        .stdin(Stdio::null())
        .output()
        .expect("pbmaster runs");
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let theirs = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("import-buildbot")
        .arg(dir.join("master.cfg"))
        .arg("--venv")
        .arg(&peer)
        .stdin(Stdio::null())
        .output()
        .expect("pbmaster runs");
    assert!(!ours.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout)
    );
    std::fs::remove_dir_all(&venv).ok();
}

#[test]
fn many_builders() {
    let dir = test_dir("import-many");
    let (todos, text) = import_checked(&fixture("many"), &dir, &[]);
    let mut want = vec![
        r#"c["title"]: "Example fleet" has no pbmaster setting"#.to_string(),
        r#"c["buildbotURL"]: "https://ci.example.org/" has no pbmaster setting"#.to_string(),
    ];
    for project in ["core", "cli", "docs", "web"] {
        for platform in ["linux", "freebsd", "macos"] {
            for (n, class) in [(3, "Compile"), (4, "Test")] {
                want.push(format!(
                    "builder \"{project}-{platform}\" step {n} ({}): {class} counts warnings in its output (lines matching warningPattern make it WARNINGS); pbmaster runs it as a plain shell step",
                    class.to_lowercase()
                ));
            }
        }
    }
    assert_todos(&todos, &want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(text.matches("[[builder]]").count(), 12, "{text}");
    assert_eq!(text.matches("[[builder.step]]").count(), 60);
    assert!(text.contains("pb_password_file = \"secrets/changes\""));
    assert_eq!(
        std::fs::read_to_string(dir.join("secrets/changes")).unwrap(),
        "s3cret-changes"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("secrets/worker-linux-1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "a password file others can read");

    // To stdout: the TOML, and no password anywhere in what is printed.
    let venv = require_peer("buildbot-master");
    let o = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("import-buildbot")
        .arg(fixture("many"))
        .arg("--venv")
        .arg(venv)
        .output()
        .expect("pbmaster runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("[[builder]]"));
    for secret in ["s3cret-changes", "pw-linux-1", "pw-macos-2"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
    assert!(stderr.contains("passwords were not written"), "{stderr}");
}

#[test]
fn latent_workers_and_nightly_schedules() {
    let dir = test_dir("import-latent");
    // buildbot reads nightly times in the master's zone: the importer writes it out.
    let (todos, text) = import_checked(
        &fixture("latent"),
        &dir,
        &[("TZ", "Europe/Berlin".to_string())],
    );
    assert_todos(
        &todos,
        &[
            r#"c["buildbotURL"]: "http://ci.example.org:8010/" has no pbmaster setting"#,
            r#"worker "ec2-small": valid_ami_location_regex "ci-images/worker-.*": pbmaster picks an image by a name with * wildcards (ec2.ami_name)"#,
            r#"worker "ec2-small": ec2.ami_name = "*" picks the newest image of the owners: narrow it"#,
            r#"worker "ec2-small": security_name = "ci" is not translated"#,
            r##"worker "ec2-small": user_data = "#!/bin/sh\necho custom\n" is not translated"##,
            r#"worker "docker-1": the container starts through the pool's boot script with /bin/sh (cloud_init = false), which installs buildbot-worker with python3; the image's own start command is not used"#,
            r#"worker "docker-1": volume "scratch:/scratch" is not an absolute HOST:CONTAINER[:ro|rw] bind mount"#,
            r#"worker "docker-1": hostconfig shm_size = "1g" is not translated"#,
            r#"worker "docker-1": followStartupLogs = true is not translated"#,
            r#"worker "docker-build": image None: set docker.image to an image present on the daemon"#,
            r#"worker "docker-build": docker_host "tcp://docker.example.org:2376": pbmaster reaches the daemon over a unix socket only (docker.host = "unix:///...")"#,
            r#"worker "docker-build": the container starts through the pool's boot script with /bin/sh (cloud_init = false), which installs buildbot-worker with python3; the image's own start command is not used"#,
            r#"worker "docker-build": dockerfile = "FROM debian\n": pbmaster neither builds nor pulls images; the image must be on the daemon"#,
            r#"scheduler "sunday": onlyIfChanged = true is not translated"#,
        ],
    );
    // Day and month names; buildbot's Sunday is 6, cron's 0; the zone is written out.
    for line in [
        r#"cron = "15 3 * * MON-FRI""#,
        r#"cron = "0 1,13 * * SUN""#,
        r#"cron = "0 2 * JAN-MAR,DEC *""#,
        r#"timezone = "Europe/Berlin""#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // The docker pool: image, socket, mounts, network and limits carry over.
    for line in [
        r#"driver = "docker""#,
        r#"image = "debian:bookworm""#,
        r#"host = "unix:///var/run/docker.sock""#,
        r#"volumes = ["/srv/cache:/cache:ro"]"#,
        r#"network = "ci-net""#,
        "memory_mb = 2048",
        "cpus = 1.5",
        "cloud_init = false",
        r#"master_address = "10.0.0.5:9989""#,
        "build_wait_timeout = 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains("name = \"container\""),
        "the docker builder is kept"
    );
    assert!(text.contains("ami = \"ami-0123456789abcdef0\""));
    assert!(text.contains("master_address = \"ci.example.org:9989\""));
    assert!(text.contains("ami_owners = [\"123456789012\"]"));
    assert!(text.contains("password_file = ") && text.contains("secrets/static-1-password\""));
}

#[test]
fn renderables_and_conditions() {
    let dir = test_dir("import-renderables");
    let (todos, text) = import_checked(&fixture("renderables"), &dir, &[]);
    assert_todos(
        &todos,
        &[
            r#"builder "app" step 5 (quoted): command: an interpolation inside shell quotes; pbmaster quotes values itself (remove the quotes around it)"#,
            r#"builder "app" step 9 (on-release): doStepIf = is_release (Python code): the step runs unconditionally"#,
            r#"builder "app" step 10: command: jobs has no pbmaster equivalent; the step is left out"#,
            r#"builder "app" step 11: command: Interpolate("echo %(src::branch)s"): %(src::branch)s has no pbmaster equivalent; the step is left out"#,
            r#"builder "app" step 13: Trigger: no pbmaster step kind; the step is left out"#,
            r#"builder "app" step 14: Announce: a step class defined in the config (custom Python code); the step is left out"#,
            r#"builder "app" step 15 (shell): flunkOnWarnings = True is not translated"#,
            r#"scheduler "deploy": Triggerable: pbmaster has no Trigger step; builds start from other schedulers or the API"#,
            r#"c["services"]: [HttpStatusPush(...)] has no pbmaster setting"#,
        ],
    );
    for line in [
        r#"command = ["make", "FLAVOUR=%(prop:flavour)s", "V=%(prop:version:-0.0)s"]"#,
        r#"command = "tar czf out-%(prop:buildnumber)s.tgz . # %%""#,
        r#"env = { LANG = "C", TOKEN = "%(secret:deploy-token)s" }"#,
        r#"do_step_if = "%(prop:flavour)s""#,
        r#"do_step_if = "false""#,
        r#"workdir = "src""#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

#[test]
fn git_poller_and_checkouts() {
    let dir = test_dir("import-gitpoller");
    let (todos, text) = import_checked(&fixture("gitpoller"), &dir, &[]);
    assert_todos(
        &todos,
        &[
            r#"change source 2 (GitPoller): only_tags = true is not translated"#,
            r#"change source 3 (GitPoller): branch "-oops" is refused: it is not a plain branch name"#,
            r#"builder "app" step 3 (copy): mode = "full", method = "copy": pbmaster's git modes are incremental and full (a fresh clone)"#,
        ],
    );
    assert!(text.contains("branch_regex = \"main|next\""), "{text}");
    for block in [
        "[[change_source]]\nname = \"app\"\nkind = \"git\"\nrepo = \"https://git.example.org/app.git\"\nbranches = [\"main\", \"next\"]\ninterval = 120\nproject = \"app\"\n",
        // Every branch: no list. The name is kept unique.
        "[[change_source]]\nname = \"app-2\"\nkind = \"git\"\nrepo = \"git@git.example.org:tools/app.git\"\ninterval = 600\n",
    ] {
        assert!(text.contains(block), "{block} missing:\n{text}");
    }
    assert!(
        !text.contains("lib.git\"\n"),
        "a poller of nothing is left out:\n{text}"
    );
    assert!(text.contains("git_mode = \"full\""), "{text}");
}

/// A buildbot 4.3.0 master (`buildbot start`, daemonized) running `fixture` with a
/// Triggerable scheduler and a service added that queues one build of every builder
/// once it runs; logs are stored uncompressed so the test can read them from its
/// SQLite database. Stopped by its PID when dropped.
struct PythonMaster {
    dir: PathBuf,
    pid: Option<i32>,
}

const WRAPPER: &str = r#"
import os
from twisted.internet import defer, task, reactor
from buildbot.plugins import schedulers
from buildbot.util import service

_fixture = os.environ["IMPORT_FIXTURE"]
with open(_fixture) as _f:
    exec(compile(_f.read(), _fixture, "exec"))
c["logCompressionMethod"] = "raw"
c["buildbotNetUsageData"] = None
c["db"] = {"db_url": "sqlite:///state.sqlite"}
c.setdefault("schedulers", []).append(
    schedulers.Triggerable(name="import-test", builderNames=[b.name for b in c["builders"]]))


class Kick(service.BuildbotService):
    name = "import-test-kick"

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()
        reactor.callLater(0, self.kick)

    @defer.inlineCallbacks
    def kick(self):
        while "import-test" not in self.master.scheduler_manager.namedServices:
            yield task.deferLater(reactor, 0.2, lambda: None)
        sched = self.master.scheduler_manager.namedServices["import-test"]
        yield sched.addBuildsetForSourceStampsWithDefaults(
            reason="import test", sourcestamps=[], builderNames=sched.builderNames)


c.setdefault("services", []).append(Kick())
"#;

impl PythonMaster {
    fn start(dir: &Path, fixture: &Path, pb_port: u16) -> PythonMaster {
        let venv = require_peer("buildbot-master");
        let buildbot = venv.join("bin/buildbot");
        let created = Command::new(&buildbot)
            .args(["create-master", "-q"])
            .arg(dir)
            .env_remove("PYTHONPATH")
            .output()
            .expect("buildbot create-master");
        assert!(created.status.success(), "{created:?}");
        std::fs::write(dir.join("master.cfg"), WRAPPER).expect("master.cfg");
        let mut m = PythonMaster {
            dir: dir.to_owned(),
            pid: None,
        };
        let started = Command::new(&buildbot)
            .arg("start")
            .arg(dir)
            .env_remove("PYTHONPATH")
            .env("IMPORT_FIXTURE", fixture)
            .env("IMPORT_PB_PORT", pb_port.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("buildbot start");
        m.pid = std::fs::read_to_string(dir.join("twistd.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        assert!(
            started.status.success() && m.pid.is_some(),
            "buildbot did not start: {started:?}\n{}",
            m.log()
        );
        m
    }

    fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.join("twistd.log")).unwrap_or_default(),
            60,
        )
    }

    /// Waits for the first build to finish; returns (step name, result name, output
    /// lines of stdout and stderr) for each step it ran.
    fn finished_steps(&self) -> Vec<(String, String, String)> {
        let db = rusqlite::Connection::open(self.dir.join("state.sqlite")).expect("db");
        let deadline = Instant::now() + LONG;
        let build: i64 = loop {
            let done: Option<i64> = db
                .query_row(
                    "SELECT id FROM builds WHERE complete_at IS NOT NULL ORDER BY id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .ok();
            if let Some(b) = done {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "no build finished\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut q = db
            .prepare("SELECT id, name, results FROM steps WHERE buildid = ? ORDER BY number")
            .expect("steps");
        let steps: Vec<(i64, String, i64)> = q
            .query_map([build], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("steps")
            .map(|r| r.expect("row"))
            // buildbot's record of getting the worker ready, not a step of the factory.
            .filter(|(_, name, _)| name != "worker_preparation")
            .collect();
        const NAMES: [&str; 7] = [
            "success",
            "warnings",
            "failure",
            "skipped",
            "exception",
            "retry",
            "cancelled",
        ];
        steps
            .into_iter()
            .map(|(id, name, result)| {
                let mut text = String::new();
                let mut chunks = db
                    .prepare(
                        "SELECT c.content FROM logchunks c JOIN logs l ON c.logid = l.id \
                         WHERE l.stepid = ? AND l.slug = 'stdio' ORDER BY c.first_line",
                    )
                    .expect("logchunks");
                for chunk in chunks
                    .query_map([id], |r| r.get::<_, Vec<u8>>(0))
                    .expect("chunks")
                {
                    text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
                    text.push('\n');
                }
                // Lines of a stream log start with their channel: o, e or h (header).
                let output: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with('o') || l.starts_with('e'))
                    .map(|l| &l[1..])
                    .collect();
                let result = NAMES.get(result as usize).unwrap_or(&"?").to_string();
                (name, result, output.join("\n"))
            })
            .collect()
    }
}

impl Drop for PythonMaster {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// The imported config started as a pbmaster process, with an API port and token
/// added. Stopped when dropped.
struct Imported {
    child: std::process::Child,
    api: String,
}

const TOKEN: &str = "import-test-token-0123456789";

impl Imported {
    fn start(dir: &Path, toml: &str) -> Imported {
        let api = format!("127.0.0.1:{}", free_port());
        let toml = toml.replacen(
            "[master]\n",
            &format!("[master]\nhttp_listen = \"{api}\"\n"),
            1,
        )
            + "\n[[api_token]]\nname = \"test\"\nroles = [\"admin\"]\ntoken_file = \"api.token\"\n";
        std::fs::write(dir.join("master.toml"), toml).expect("config");
        write_secret(&dir.join("api.token"), TOKEN);
        let log = std::fs::File::create(dir.join("master.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
            .args(["start", "--config"])
            .arg(dir.join("master.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pbmaster starts");
        let m = Imported {
            child,
            api: format!("http://{api}"),
        };
        support::wait::until("the imported master's API", LONG, || {
            m.try_get("/api/builders").is_some()
        });
        m
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        ureq::get(&format!("{}{path}", self.api))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .ok()?
            .body_mut()
            .read_json()
            .ok()
    }

    fn force(&self, builder: &str) -> i64 {
        ureq::post(&format!("{}/api/builders/{builder}/force", self.api))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send_json(serde_json::json!({}))
            .expect("force")
            .body_mut()
            .read_json::<Value>()
            .expect("json")["request_id"]
            .as_i64()
            .expect("request id")
    }

    fn output(&self, build: i64, step: i64) -> String {
        let mut text = String::new();
        for channel in ["stdout", "stderr"] {
            let bytes = ureq::get(&format!(
                "{}/api/builds/{build}/steps/{step}/logs/stdio?channel={channel}",
                self.api
            ))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_vec().ok())
            .unwrap_or_default();
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn imported_builds_match_the_buildbot_master() {
    let dir = test_dir("import-run");
    let fixture = fixture("run").join("master.cfg");

    // The buildbot master on the original config, with a real worker.
    let bb_port = free_port();
    std::fs::create_dir_all(dir.join("buildbot")).unwrap();
    let python = PythonMaster::start(&dir.join("buildbot"), &fixture, bb_port);
    let addr = format!("127.0.0.1:{bb_port}").parse().unwrap();
    let opts = WorkerOptions::new("runner", "runner-pass", addr);
    let mut worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker-bb"), &opts).expect("worker");
    let want = python.finished_steps();
    worker.terminate();
    drop(python);

    // The same config imported, on pbmaster, with a fresh worker of the same name.
    let pb_port = free_port();
    std::fs::create_dir_all(dir.join("pbmaster")).unwrap();
    let (todos, toml) = import_checked(
        &fixture,
        &dir.join("pbmaster"),
        &[("IMPORT_PB_PORT", pb_port.to_string())],
    );
    assert_todos(&todos, &[]);
    let master = Imported::start(&dir.join("pbmaster"), &toml);
    let addr = format!("127.0.0.1:{pb_port}").parse().unwrap();
    let opts = WorkerOptions::new("runner", "runner-pass", addr);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker-pb"), &opts).expect("worker");
    let request = master.force("steps");
    let mut build = Value::Null;
    support::wait::until("the imported build", LONG, || {
        let r = master.try_get(&format!("/api/buildrequests/{request}"));
        match r {
            Some(r) if r["complete"] == true => {
                build = r["builds"][0].clone();
                true
            }
            _ => false,
        }
    });
    let id = build["id"].as_i64().expect("build id");
    let build = master.try_get(&format!("/api/builds/{id}")).expect("build");
    let steps = build["steps"].as_array().cloned().unwrap_or_default();

    let got: Vec<(String, String, String)> = steps
        .iter()
        .map(|s| {
            let number = s["number"].as_i64().unwrap_or_default();
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["result"].as_str().unwrap_or_default().to_string(),
                master.output(id, number),
            )
        })
        .collect();
    // buildbot records only the steps it ran; pbmaster also lists those a halt skipped.
    let ran: Vec<&(String, String, String)> = got
        .iter()
        .filter(|(name, result, _)| result != "skipped" || want.iter().any(|w| &w.0 == name))
        .collect();
    assert_eq!(
        ran.iter().map(|s| (&s.0, &s.1)).collect::<Vec<_>>(),
        want.iter().map(|s| (&s.0, &s.1)).collect::<Vec<_>>(),
        "step results differ\npbmaster: {got:#?}\nbuildbot: {want:#?}"
    );
    for (w, g) in want.iter().zip(&ran) {
        for line in w.2.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                g.2.lines().any(|l| l == line),
                "step {}: buildbot printed {line:?}, pbmaster's output is {:?}",
                w.0,
                g.2
            );
        }
    }
    assert!(
        want.iter().any(|w| w.2.contains("color=blue size=small")),
        "{want:#?}"
    );
}

#[test]
fn a_config_buildbot_cannot_load_is_refused_with_its_error() {
    let dir = test_dir("import-broken");
    for (body, expect) in [
        (
            "raise ValueError('no such platform: plan9')\n",
            "no such platform: plan9",
        ),
        ("c = {}\n", "does not define 'BuildmasterConfig'"),
        ("c = BuildmasterConfig = {\n", "SyntaxError"),
    ] {
        std::fs::write(dir.join("master.cfg"), body).unwrap();
        let o = import(&dir, &dir.join("out.toml"), &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{body:?} imported");
        assert!(stderr.contains(expect), "{body:?}: {stderr}");
        assert!(
            !dir.join("out.toml").exists(),
            "output written for {body:?}"
        );
    }
}
