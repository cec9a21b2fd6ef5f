//! Reporters end to end: a real buildbot-worker 4.3.0 runs the builds; local servers
//! stand in for GitHub, GitLab and a push endpoint and check each request as the real
//! services expect it (URL, method, authorization, content type, body); a real SMTP
//! server (aiosmtpd, STARTTLS and AUTH) takes the mail. Failing services are retried
//! and reports survive a master restart, each delivered once; the tokens appear in no
//! log, API answer or stored file.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::master::{free_port, test_dir, write_secret, MasterProcess};
use support::recorder::{Recorded, Recorder};
use support::wait::until;
use support::workers::{require_peer, Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);
const GH_TOKEN: &str = "ghp-test-token-5c1d9e";
const GL_TOKEN: &str = "glpat-test-token-77ab30";
const SMTP_PASSWORD: &str = "smtp-pass-e4f21b";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "git@example.org:octo/hello.git";

const BUILDERS: &str = r#"
[[worker]]
name = "w1"
password = "pass"
max_builds = 2

[[builder]]
name = "ok"
workers = ["w1"]
[[builder.step]]
command = "true"

[[builder]]
name = "breaks"
workers = ["w1"]
[[builder.step]]
command = "false"
"#;

/// `[secrets]` from a folder in the master's directory holding `secrets`.
fn secrets_dir(master_dir: &Path, secrets: &[(&str, &str)]) -> String {
    let dir = master_dir.join("secrets");
    std::fs::create_dir_all(&dir).expect("secrets dir");
    for (name, value) in secrets {
        write_secret(&dir.join(name), value);
    }
    "[secrets]\ndir = \"secrets\"\n".to_owned()
}

fn force(master: &MasterProcess, builder: &str, props: Value) -> i64 {
    master.post(
        &format!("/api/builders/{builder}/force"),
        json!({ "properties": props }),
    )["request_id"]
        .as_i64()
        .expect("request id")
}

fn commit() -> Value {
    json!({"revision": SHA, "repository": REPO, "branch": "main"})
}

/// The `pbmaster_reports_total` count for a reporter and outcome from `/metrics`.
fn reports(master: &MasterProcess, reporter: &str, outcome: &str) -> u64 {
    let text = String::from_utf8_lossy(&master.get_bytes("/metrics")).into_owned();
    let key = format!("pbmaster_reports_total{{reporter=\"{reporter}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn start_worker(dir: &Path, master: &MasterProcess) -> RunningWorker {
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    worker
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

fn check_common(r: &Recorded, path: &str) {
    assert_eq!(r.method, "POST", "{r:?}");
    assert_eq!(r.path, path, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert!(
        r.header("user-agent")
            .is_some_and(|u| u.starts_with("pbmaster/")),
        "{r:?}"
    );
}

#[test]
fn commit_statuses_and_pushes_reach_the_services_as_they_expect() {
    let dir = test_dir("reporters-statuses");
    let master_dir = dir.join("master");
    let (gh, gl, push) = (
        Recorder::start(&[201]),
        Recorder::start(&[201]),
        Recorder::start(&[200]),
    );
    let extra = secrets_dir(&master_dir, &[("gh", GH_TOKEN), ("gl", GL_TOKEN)]);
    let body = format!(
        "{BUILDERS}\n\
         [[reporter]]\nname = \"github\"\nkind = \"github\"\nurl = \"{}\"\ntoken = \"%(secret:gh)s\"\n\
         web_url = \"https://ci.example.org\"\n\
         [[reporter]]\nname = \"gitlab\"\nkind = \"gitlab\"\nurl = \"{}\"\ntoken = \"%(secret:gl)s\"\n\
         builders = [\"ok\"]\ncontext = \"pbmaster/%(prop:buildername)s/%(prop:branch)s\"\n\
         [[reporter]]\nname = \"push\"\nkind = \"http\"\nurl = \"{}/hook\"\n\
         events = [\"finished\"]\nresults = [\"failure\"]\n",
        gh.url, gl.url, push.url
    );
    let master = MasterProcess::start(&master_dir, &extra, &body);
    let _worker = start_worker(&dir, &master);

    // A good build with a commit: pending then success on GitHub, running then
    // success on GitLab; the push wants failures only.
    let ok = master.wait_request(force(&master, "ok", commit()), LONG);
    let ok_id = ok["builds"][0]["id"].as_i64().expect("build id");
    until("GitHub and GitLab statuses", LONG, || {
        gh.seen().len() == 2 && gl.seen().len() == 2
    });
    let gh_path = format!("/repos/octo/hello/statuses/{SHA}");
    let seen = gh.seen();
    for (r, state, description) in [
        (&seen[0], "pending", "Build #1 started"),
        (&seen[1], "success", "Build #1: success"),
    ] {
        check_common(r, &gh_path);
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {GH_TOKEN}").as_str())
        );
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(
            r.body,
            json!({"state": state, "description": description, "context": "buildbot/ok",
                   "target_url": format!("https://ci.example.org/builds/{ok_id}")})
        );
    }
    let gl_path = format!("/api/v4/projects/octo%2Fhello/statuses/{SHA}");
    let seen = gl.seen();
    for (r, state, description) in [
        (&seen[0], "running", "Build #1 started"),
        (&seen[1], "success", "Build #1: success"),
    ] {
        check_common(r, &gl_path);
        assert_eq!(r.header("private-token"), Some(GL_TOKEN));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(
            r.body,
            json!({"state": state, "name": "pbmaster/ok/main", "description": description, "ref": "main"})
        );
    }

    // A failing build: GitHub says failure, GitLab is not told (builder filter), the
    // push gets the finished event with the build and its commit.
    let breaks = master.wait_request(force(&master, "breaks", commit()), LONG);
    let breaks_id = breaks["builds"][0]["id"].as_i64().expect("build id");
    until("the failure reported", LONG, || {
        gh.seen().len() == 4 && push.seen().len() == 1
    });
    let seen = gh.seen();
    assert_eq!(seen[3].body["state"], "failure", "{:?}", seen[3]);
    let p = &push.seen()[0];
    check_common(p, "/hook");
    assert_eq!(p.header("authorization"), None);
    assert_eq!(p.body["event"], "finished");
    assert_eq!(
        p.body["build"],
        json!({"id": breaks_id, "builder": "breaks", "number": 1, "worker": "w1",
               "result": "failure", "reason": p.body["build"]["reason"].clone()})
    );
    assert_eq!(
        (p.body["revision"].as_str(), p.body["repository"].as_str()),
        (Some(SHA), Some(REPO))
    );

    // A build without a revision gets no commit status; the push still hears of its
    // failure.
    master.wait_request(force(&master, "breaks", json!({})), LONG);
    until("the second push", LONG, || push.seen().len() == 2);
    assert_eq!(push.seen()[1].body["revision"], Value::Null);
    until("four statuses delivered", LONG, || {
        reports(&master, "github", "delivered") == 4
    });
    assert_eq!(
        gh.seen().len(),
        4,
        "no status for a build without a revision"
    );
    assert_eq!(gl.seen().len(), 2);
    assert!(master
        .log()
        .contains("no commit status for this build: it has no revision"));

    // The tokens are in no answer of the API, the master's log or its data folder.
    let answers = [
        master.get("/api/builds").to_string(),
        master.get(&format!("/api/builds/{ok_id}")).to_string(),
        String::from_utf8_lossy(&master.get_bytes("/metrics")).into_owned(),
    ];
    drop(master);
    let log = std::fs::read_to_string(master_dir.join("master.log")).unwrap_or_default();
    for token in [GH_TOKEN, GL_TOKEN] {
        assert!(!log.contains(token), "the master's log holds a token");
        assert!(
            answers.iter().all(|a| !a.contains(token)),
            "the API shows a token"
        );
        let holding = files_holding(&master_dir.join("data"), token.as_bytes());
        assert!(holding.is_empty(), "{holding:?} hold a token");
    }
}

#[test]
fn a_failing_service_is_retried_and_gets_the_report_once() {
    let dir = test_dir("reporters-retry");
    let master_dir = dir.join("master");
    let gh = Recorder::start(&[500, 429, 201]);
    let extra = secrets_dir(&master_dir, &[("gh", GH_TOKEN)]);
    let body = format!(
        "{BUILDERS}\n[[reporter]]\nname = \"github\"\nkind = \"github\"\nurl = \"{}\"\n\
         token = \"%(secret:gh)s\"\nevents = [\"finished\"]\n",
        gh.url
    );
    let master = MasterProcess::start(&master_dir, &extra, &body);
    let _worker = start_worker(&dir, &master);
    master.wait_request(force(&master, "ok", commit()), LONG);
    until("the report delivered", LONG, || {
        reports(&master, "github", "delivered") == 1
    });
    let statuses: Vec<u16> = gh.seen().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 201], "three tries, the last one taken");
    assert!(gh.seen().windows(2).all(|w| w[0].body == w[1].body));
    assert_eq!(reports(&master, "github", "retried"), 2);
    // A later report goes out once too: nothing was left behind to send again.
    master.wait_request(force(&master, "ok", commit()), LONG);
    until("the next report", LONG, || {
        reports(&master, "github", "delivered") == 2
    });
    assert_eq!(gh.seen().len(), 4);
}

#[test]
fn undelivered_reports_are_sent_after_a_restart_once() {
    let dir = test_dir("reporters-restart");
    let master_dir = dir.join("master");
    let gh = Recorder::start(&[503]);
    let extra = secrets_dir(&master_dir, &[("gh", GH_TOKEN)]);
    let body = format!(
        "{BUILDERS}\n[[reporter]]\nname = \"github\"\nkind = \"github\"\nurl = \"{}\"\n\
         token = \"%(secret:gh)s\"\n",
        gh.url
    );
    let mut master = MasterProcess::start(&master_dir, &extra, &body);
    let mut worker = start_worker(&dir, &master);
    master.wait_request(force(&master, "ok", commit()), LONG);
    until("a failed try", LONG, || !gh.seen().is_empty());
    worker.terminate();
    // Killed, as in a crash: the two reports (started, finished) wait in the outbox.
    master.kill();
    let before = gh.seen().len();
    assert!(gh.seen().iter().all(|r| r.status == 503));
    gh.answer(201);
    master.restart();
    until("both reports delivered", LONG, || {
        reports(&master, "github", "delivered") == 2
    });
    let after: Vec<Recorded> = gh.seen().into_iter().skip(before).collect();
    let taken: Vec<&str> = after
        .iter()
        .filter(|r| r.status == 201)
        .filter_map(|r| r.body["state"].as_str())
        .collect();
    assert_eq!(taken, ["pending", "success"], "in order, each once");
}

/// Writes a CA and a certificate it signs for 127.0.0.1 into `dir`: `ca.pem`,
/// `server.pem`, `server.key`.
fn make_pki(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pbmaster test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("extensions");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// The aiosmtpd server; killed by its PID when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl SmtpServer {
    fn start(dir: &Path, user: &str, password: &str) -> SmtpServer {
        let venv = require_peer("aiosmtpd");
        make_pki(dir);
        let port = free_port();
        let out = dir.join("mail.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new(venv.join("bin/python"))
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .args([user, password])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("smtp.log")).expect("smtp log"))
            .spawn()
            .expect("aiosmtpd starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("ready");
        assert_eq!(
            line.trim(),
            "ready",
            "{}",
            std::fs::read_to_string(dir.join("smtp.log")).unwrap_or_default()
        );
        SmtpServer { child, port, out }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mail_goes_through_a_real_smtp_server_with_starttls_and_auth() {
    let dir = test_dir("reporters-email");
    let master_dir = dir.join("master");
    let smtp_dir = dir.join("smtp");
    std::fs::create_dir_all(&smtp_dir).expect("smtp dir");
    let smtp = SmtpServer::start(&smtp_dir, "ci", SMTP_PASSWORD);
    let extra = secrets_dir(&master_dir, &[("smtp", SMTP_PASSWORD)]);
    let body = format!(
        "{BUILDERS}\n[[reporter]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"127.0.0.1:{}\"\n\
         smtp_user = \"ci\"\nsmtp_password = \"%(secret:smtp)s\"\nsmtp_ca_file = \"{}\"\n\
         from = \"pbmaster <ci@example.org>\"\nto = [\"dev@example.org\", \"lead@example.org\"]\n\
         results = [\"failure\"]\nweb_url = \"https://ci.example.org\"\n",
        smtp.port,
        smtp_dir.join("ca.pem").display()
    );
    let master = MasterProcess::start(&master_dir, &extra, &body);
    let _worker = start_worker(&dir, &master);
    master.wait_request(force(&master, "ok", commit()), LONG);
    let breaks = master.wait_request(force(&master, "breaks", commit()), LONG);
    let id = breaks["builds"][0]["id"].as_i64().expect("build id");
    until("the mail", LONG, || {
        reports(&master, "mail", "delivered") == 1
    });
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "the success is filtered out: {mails:?}");
    let m = &mails[0];
    assert_eq!(m["mail_from"], "ci@example.org");
    assert_eq!(
        m["rcpt_tos"],
        json!(["dev@example.org", "lead@example.org"])
    );
    assert_eq!(
        (m["login"].as_str(), m["tls"].as_bool()),
        (Some("ci"), Some(true))
    );
    let data = m["data"].as_str().expect("data").replace("\r\n", "\n");
    assert!(
        data.contains("Subject: [pbmaster] breaks #1: failure\n"),
        "{data}"
    );
    assert!(
        data.contains("To: dev@example.org, lead@example.org\n"),
        "{data}"
    );
    for line in [
        "Builder: breaks",
        "Result: failure",
        &format!("Revision: {SHA}"),
        &format!("https://ci.example.org/builds/{id}"),
    ] {
        assert!(data.contains(line), "{line:?} in {data}");
    }
    drop(master);
    let log = std::fs::read_to_string(master_dir.join("master.log")).unwrap_or_default();
    assert!(
        !log.contains(SMTP_PASSWORD),
        "the master's log holds the password"
    );
}

#[test]
fn reports_are_given_up_when_refused_or_too_old() {
    let dir = test_dir("reporters-give-up");
    let master_dir = dir.join("master");
    let (down, refusing) = (Recorder::start(&[503]), Recorder::start(&[422]));
    let extra = secrets_dir(&master_dir, &[("gh", GH_TOKEN)]);
    let body = format!(
        "{BUILDERS}\n[[reporter]]\nname = \"down\"\nkind = \"github\"\nurl = \"{}\"\n\
         token = \"%(secret:gh)s\"\nevents = [\"finished\"]\nmax_age = 1\n\
         [[reporter]]\nname = \"refusing\"\nkind = \"github\"\nurl = \"{}\"\n\
         token = \"%(secret:gh)s\"\nevents = [\"finished\"]\n",
        down.url, refusing.url
    );
    let master = MasterProcess::start(&master_dir, &extra, &body);
    let _worker = start_worker(&dir, &master);
    master.wait_request(force(&master, "ok", commit()), LONG);
    until("both given up", LONG, || {
        reports(&master, "down", "given_up") == 1 && reports(&master, "refusing", "given_up") == 1
    });
    assert_eq!(refusing.seen().len(), 1, "a 422 is not tried again");
    assert!(!down.seen().is_empty());
    assert_eq!(reports(&master, "down", "delivered"), 0);
    let log = master.log();
    assert!(
        log.contains("report given up after"),
        "too old, with a warning"
    );
    assert!(
        log.contains("refused, given up: POST"),
        "refused, with a warning"
    );
}
