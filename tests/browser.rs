//! The web UI in headless Chromium (Debian's package, installed by scripts/test.sh),
//! driven over the DevTools protocol against a master with a real buildbot-worker
//! 4.3.0: log in, force a build through the form, watch its log grow while the step
//! runs, stop it from the page, visit every page, log out; no console error or
//! uncaught exception on the way. A screenshot of each page goes to
//! `target/screenshots/`.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};
use tungstenite::{Message, WebSocket};

const LONG: Duration = Duration::from_secs(60);

/// Headless Chromium; dropping it kills it.
struct Browser {
    child: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> PathBuf {
    let name = std::env::var("PBMASTER_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(&name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: scripts/test.sh installs Debian's chromium package")
    })
}

/// Starts Chromium and returns it with the port its DevTools endpoint listens on.
fn launch(profile: &std::path::Path) -> (Browser, u16) {
    let mut child = Command::new(chromium())
        .args([
            "--headless=new",
            // As root, Chromium refuses to start with its sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().expect("stderr");
    let browser = Browser { child };
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("chromium printed no DevTools address")
            .expect("stderr");
        if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
            break rest
                .split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port");
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (browser, port)
}

/// One page's DevTools connection: commands and the events seen meanwhile.
struct Page {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Page {
    /// Opens a new tab and connects to it.
    fn open(port: u16) -> Page {
        let target: Value = ureq::put(&format!("http://127.0.0.1:{port}/json/new?about:blank"))
            .send_empty()
            .expect("new tab")
            .body_mut()
            .read_json()
            .expect("target");
        let url = target["webSocketDebuggerUrl"].as_str().expect("ws url");
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (ws, _) = tungstenite::client(url, stream).expect("websocket");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut page = Page {
            ws,
            next_id: 1,
            events: Vec::new(),
        };
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            page.call(domain, json!({}));
        }
        page
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let answer = self.send(method, params);
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// A command's whole answer, `result` or `error`.
    fn send(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(msg.to_string())).expect("send");
        loop {
            let msg = self.ws.read().expect("DevTools answer");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["id"] == id {
                return v;
            }
            if v["method"].is_string() {
                self.events.push(v);
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Whether `expression` holds; false while the page is between documents.
    fn holds(&mut self, expression: &str) -> bool {
        let guarded = format!(
            "(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
        );
        let answer = self.send(
            "Runtime.evaluate",
            json!({"expression": guarded, "returnByValue": true}),
        );
        answer["result"]["result"]["value"] == json!(true)
    }

    fn wait(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + LONG;
        while !self.holds(expression) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page:\n{}",
                self.eval("document.body ? document.body.innerText : ''")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Loads `url` and waits for the page's load event.
    fn goto(&mut self, url: &str) {
        self.events.clear();
        // The old document is marked, so its "complete" is not taken for the new one's.
        self.holds("window.pbmasterOld = true");
        self.call("Page.navigate", json!({"url": url}));
        self.wait(
            "the page to load",
            "!window.pbmasterOld && document.readyState === 'complete'",
        );
    }

    /// The URLs of the requests the page made since event `from`, with their type.
    fn requests_since(&mut self, from: usize) -> Vec<(String, String)> {
        self.eval("1");
        self.events[from.min(self.events.len())..]
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .map(|e| {
                let p = &e["params"];
                let url = p["request"]["url"].as_str().unwrap_or_default().to_owned();
                (url, p["type"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    fn screenshot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("png"))
            .expect("base64");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target")
            .join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshots dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot");
    }

    /// Console errors and uncaught exceptions seen since the last navigation (and the
    /// ones a call in between collected).
    fn errors(&mut self) -> Vec<Value> {
        // Collect what arrived without a command.
        self.eval("1");
        self.events
            .iter()
            .filter(|e| {
                let m = e["method"].as_str().unwrap_or_default();
                m == "Runtime.exceptionThrown"
                    || (m == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                    || (m == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
            })
            .cloned()
            .collect()
    }

    fn no_errors(&mut self, page: &str) {
        let errors = self.errors();
        assert!(errors.is_empty(), "{page}: {errors:#?}");
    }
}

fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("hash-password");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("password");
    drop(stdin);
    let out = child.wait_with_output().expect("hash-password");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_browser_logs_in_forces_follows_stops_and_logs_out() {
    let body = format!(
        r#"
[api]
public_read = "none"

[[api_user]]
name = "op"
roles = ["read", "force", "stop"]
password_hash = "{}"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "live"
workers = ["w1"]
[[builder.step]]
name = "count"
command = "for i in $(seq 1 600); do printf '\\033[32mline\\033[0m %s\\n' $i; sleep 0.1; done"

[[builder]]
name = "short"
workers = ["w1"]
[[builder.step]]
command = "echo short"
"#,
        hash_password("operator password")
    );
    let dir = test_dir("browser");
    let master = MasterProcess::start(&dir.join("master"), "", &body);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let (_browser, port) = launch(&dir.join("profile"));
    let mut page = Page::open(port);
    let api = master.api.clone();

    // Not logged in: sent to the login page.
    page.goto(&format!("{api}/"));
    page.wait("the login page", "location.pathname === '/login'");
    page.no_errors("login");
    page.screenshot("login");
    page.eval(
        "(() => { const f = document.getElementById('login-form');
                  f.user.value = 'op'; f.password.value = 'operator password';
                  f.querySelector('button').click(); return true; })()",
    );
    page.wait(
        "the home page, logged in",
        "location.pathname === '/' && document.getElementById('who').textContent.startsWith('op')",
    );
    page.no_errors("home");
    page.screenshot("home");

    // Force through the form; the page goes to the build once it starts.
    page.goto(&format!("{api}/builders/live"));
    page.no_errors("builder");
    page.screenshot("builder");
    page.eval(
        "(() => { const f = document.getElementById('force');
                  f.reason.value = 'from the browser'; f.properties.value = 'who=chromium';
                  f.querySelector('button').click(); return true; })()",
    );
    page.wait(
        "the build page",
        "location.pathname.startsWith('/builds/') && document.readyState === 'complete'",
    );
    let build: i64 = page
        .eval("location.pathname.split('/')[2]")
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("build id");

    // The live log grows while the step still runs.
    page.wait(
        "the live log",
        "!!document.querySelector('pre[data-follow]') && document.querySelector('pre[data-follow]').textContent.includes('line 3')",
    );
    // From here the log grows by push alone: no request polls the page or the log
    // (a poll every 2 s would show while 40 more lines, 4 s of output, arrive).
    let mark = page.events.len();
    let pushes = page.eval("window.pbmasterPushes || 0");
    page.wait(
        "more log lines",
        "document.querySelector('pre[data-follow]').textContent.includes('line 45')",
    );
    let polls: Vec<_> = page
        .requests_since(mark)
        .into_iter()
        .filter(|(url, kind)| {
            (kind == "Fetch" && url.contains("/builds/")) || url.contains("follow=true")
        })
        .collect();
    assert!(
        polls.is_empty(),
        "requests while the stream works: {polls:?}"
    );
    assert_eq!(
        page.eval("window.pbmasterPushes || 0"),
        pushes,
        "no page event meanwhile"
    );
    assert!(page.holds("!document.querySelector('pre[data-follow]').dataset.polled"));
    // Colours are rendered in the live log too.
    assert!(page.holds(
        "document.querySelector('pre[data-follow] span.fg2') && document.querySelector('pre[data-follow] span.fg2').textContent === 'line'"
    ));
    assert_eq!(
        page.eval("document.getElementById('build-result').textContent"),
        json!("running")
    );
    let running = master.get(&format!("/api/builds/{build}"));
    assert!(running["finished_at"].is_null(), "{running}");
    assert_eq!(running["properties"]["who"][0], "chromium");
    page.no_errors("build while running");
    page.screenshot("build-running");

    // Stop from the page: the build ends cancelled, and the page shows it.
    // The page follows the build's end without reloading (the marker survives).
    page.eval("window.pbmasterSame = true");
    page.eval("document.getElementById('stop').click(), true");
    page.wait(
        "the build to show cancelled",
        "!!document.getElementById('build-result') && document.getElementById('build-result').textContent === 'cancelled'",
    );
    assert!(page.holds("window.pbmasterSame === true"), "not reloaded");
    let stopped = master.get(&format!("/api/builds/{build}"));
    assert_eq!(stopped["result"], "cancelled", "{stopped}");
    page.no_errors("build after stop");
    page.screenshot("build-stopped");

    // A builder's page shows a build start and finish as they happen, read again on
    // the events only.
    page.goto(&format!("{api}/builders/short"));
    page.eval("window.pbmasterSame = true");
    let mark = page.events.len();
    let short = master.force("short");
    master.wait_request(short, LONG);
    page.wait(
        "the finished build on the builder page",
        "!!document.querySelector('table.builds .result.success')",
    );
    assert!(page.holds("window.pbmasterSame === true"), "not reloaded");
    let fetches = page
        .requests_since(mark)
        .into_iter()
        .filter(|(url, kind)| kind == "Fetch" && url.ends_with("/builders/short"))
        .count() as u64;
    let pushes = page
        .eval("window.pbmasterPushes || 0")
        .as_u64()
        .unwrap_or(0);
    assert!(
        (1..=pushes).contains(&fetches),
        "{fetches} refreshes for {pushes} events"
    );
    page.no_errors("builder after a build");
    page.screenshot("builder-live");

    for (path, name) in [
        ("/builds", "builds"),
        ("/workers", "workers"),
        ("/latent", "latent"),
        ("/buildrequests", "buildrequests"),
        ("/changes", "changes"),
    ] {
        page.goto(&format!("{api}{path}"));
        page.wait(
            &format!("{path} to render"),
            "!!document.querySelector('main h1')",
        );
        page.no_errors(path);
        page.screenshot(name);
    }

    // Log out: the session is gone, so pages send the browser to log in again.
    page.eval("document.getElementById('logout').click(), true");
    page.wait("the login page", "location.pathname === '/login'");
    page.goto(&format!("{api}/workers"));
    page.wait("the login page again", "location.pathname === '/login'");
    page.no_errors("after logout");
}
