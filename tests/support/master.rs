//! Runs the `pbmaster` binary under test as a process, with its own config, ports and
//! data folder, and talks to its HTTP API.

use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The token every test master accepts, with every role (`admin`); written to
/// `api.token` in the master's folder and named by the config's `[[api_token]]`.
pub const API_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The `Authorization` header value that carries [`API_TOKEN`].
pub fn bearer() -> String {
    format!("Bearer {API_TOKEN}")
}

/// Writes a token file only its owner can read, as the master expects.
pub fn write_secret(path: &Path, token: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("token file");
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()).expect("write token");
}

/// A port free at the moment of asking, on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A master process. Dropping it kills it.
pub struct MasterProcess {
    child: Option<Child>,
    pub dir: PathBuf,
    pub pb: SocketAddr,
    pub api: String,
    /// Everything after the `[master]` table: workers, builders, schedulers.
    body: String,
    extra_master: String,
    /// `[store]` on PostgreSQL when the run asks for it (see [`super::postgres`]).
    store: String,
}

impl MasterProcess {
    /// Writes `dir/master.toml` (fresh ports, `data_dir = "data"`, then `body`, then
    /// an admin token in `api.token`) and starts the master, waiting until its API
    /// answers.
    pub fn start(dir: &Path, extra_master: &str, body: &str) -> MasterProcess {
        std::fs::create_dir_all(dir).expect("test dir");
        let store = super::postgres::store_section(dir);
        let pb: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let api = format!("http://127.0.0.1:{}", free_port());
        let mut m = MasterProcess {
            child: None,
            dir: dir.to_owned(),
            pb,
            api,
            body: body.to_owned(),
            extra_master: extra_master.to_owned(),
            store,
        };
        m.launch();
        m
    }

    fn write_config(&self) {
        let http = self.api.trim_start_matches("http://");
        let text = format!(
            "[master]\npb_listen = \"{}\"\nhttp_listen = \"{http}\"\ndata_dir = \"data\"\n{}\n\n{}\n\n\
             [[api_token]]\nname = \"test\"\nroles = [\"admin\"]\ntoken_file = \"api.token\"\n\n{}",
            self.pb, self.extra_master, self.body, self.store
        );
        std::fs::write(self.dir.join("master.toml"), text).expect("write config");
        write_secret(&self.dir.join("api.token"), API_TOKEN);
    }

    fn launch(&mut self) {
        self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("master.log"))
            .expect("master log");
        let child = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
            .args(["start", "--config"])
            .arg(self.dir.join("master.toml"))
            .env(
                "RUST_LOG",
                "debug,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_sdk_ec2=info,aws_config=info,hyper_util=info,rustls=info,bollard=info",
            )
            // The ec2 driver's tests talk to an emulator; nothing may reach a real cloud.
            .envs(super::ec2::aws_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pbmaster starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ureq::get(&format!("{}/api/builders", self.api))
                .header("Authorization", bearer())
                .call()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("master did not start:\n{}", self.log());
    }

    /// Replaces the body of the config (workers, builders) for the next start.
    pub fn set_body(&mut self, body: &str) {
        self.body = body.to_owned();
    }

    /// Rewrites the config file with `extra_master` and `body`, leaving the running
    /// master alone (for a reconfiguration).
    pub fn rewrite_config(&mut self, extra_master: &str, body: &str) {
        self.extra_master = extra_master.to_owned();
        self.body = body.to_owned();
        self.write_config();
    }

    /// Sends SIGHUP (read the config again) without waiting.
    pub fn signal_hup(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-HUP", &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns once the process exits (or panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit(timeout)
    }

    /// Waits for the process to exit by itself (or panics after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("master running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("master did not stop after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        self.signal("TERM");
    }

    /// Sends `signal` (a name: `STOP`, `CONT`...) without waiting.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &c.id().to_string()])
                .status();
        }
    }

    /// Starts again after `kill` or `terminate`, with the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("master.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Value {
        let mut resp = ureq::get(&format!("{}{path}", self.api))
            .header("Authorization", bearer())
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.body_mut().read_json().expect("JSON")
    }

    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        let mut resp = ureq::get(&format!("{}{path}", self.api))
            .header("Authorization", bearer())
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let mut resp = ureq::post(&format!("{}{path}", self.api))
            .header("Authorization", bearer())
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        resp.body_mut().read_json().expect("JSON")
    }

    /// Queues a build and returns the request id.
    pub fn force(&self, builder: &str) -> i64 {
        self.post(
            &format!("/api/builders/{builder}/force"),
            serde_json::json!({}),
        )["request_id"]
            .as_i64()
            .expect("request id")
    }

    /// Waits until `cond` holds for the value at `path`, returning it.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut r) = ureq::get(&format!("{}{path}", self.api))
                .header("Authorization", bearer())
                .call()
            {
                if let Ok(v) = r.body_mut().read_json::<Value>() {
                    if cond(&v) {
                        return v;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({path})\n--- master log ---\n{}",
                    tail(&self.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the named worker is attached.
    pub fn wait_attached(&self, worker: &str, timeout: Duration) -> Value {
        self.wait_for(
            "/api/workers",
            timeout,
            &format!("worker {worker} to attach"),
            |v| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .any(|w| w["name"] == worker && w["state"] == "attached")
            },
        )
    }

    /// Waits until a request completes; returns the request with its builds.
    pub fn wait_request(&self, id: i64, timeout: Duration) -> Value {
        self.wait_for(
            &format!("/api/buildrequests/{id}"),
            timeout,
            &format!("request {id}"),
            |v| v["complete"] == true,
        )
    }

    /// Waits until a build of the request is running; returns the build.
    pub fn wait_running_build(&self, request: i64, timeout: Duration) -> Value {
        let r = self.wait_for(
            &format!("/api/buildrequests/{request}"),
            timeout,
            "a running build",
            |v| {
                v["builds"]
                    .as_array()
                    .is_some_and(|b| b.iter().any(|b| b["finished_at"].is_null()))
            },
        );
        r["builds"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["finished_at"].is_null()).cloned())
            .expect("running build")
    }

    /// The stdio log of a step, stdout and stderr only (no header), lossily decoded.
    pub fn output(&self, build: i64, step: i64, channel: &str) -> String {
        let bytes = self.get_bytes(&format!(
            "/api/builds/{build}/steps/{step}/logs/stdio?channel={channel}"
        ));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for MasterProcess {
    /// SIGTERM first, so the master stops what it started (latent instances); SIGKILL
    /// if it does not go within a few seconds.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A fresh folder under the target dir for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}
