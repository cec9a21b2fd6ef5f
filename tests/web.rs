//! The web pages over real HTTP with a real buildbot-worker 4.3.0: every page
//! renders; values that are markup (a property, a reason, a log line) come out
//! escaped, invalid UTF-8 as U+FFFD and ANSI colours as spans; a browser without a
//! credential is sent to log in; buttons follow the roles of who looks. The pushed
//! events and live logs (server-sent events) say what happens, to readers only, and
//! escape what they carry; lists of builds page by id.

mod support;

use serde_json::json;
use std::time::Duration;
use support::http::{request, Answer, EventStream, SseMessage};
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);
const ATTACK: &str = "<script>alert(1)</script>";

fn body(users: &str) -> String {
    format!(
        r#"
[api]
public_read = "none"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "web"
workers = ["w1"]
[[builder.step]]
name = "markup"
command = '''echo '<script>alert(2)</script>'; printf 'bad \377\376 bytes\n'; echo err >&2; printf '\033[31mred\033[0m\n''''

[[worker]]
name = "absent"
password = "pass"

[[builder]]
name = "orphan"
workers = ["absent"]
[[builder.step]]
command = "true"

[[builder]]
name = "big"
workers = ["w1"]
[[builder.step]]
name = "prints"
command = "head -c 700000 /dev/zero | tr '\\0' x; echo; echo END-OF-$((1+1))"

{users}
"#
    )
}

fn get(master: &MasterProcess, path: &str, cookie: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    request(&master.api, "GET", path, &headers, b"")
}

/// `pbmaster hash-password`'s output for `password`.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hash-password");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("password");
    drop(stdin);
    let out = child.wait_with_output().expect("hash-password");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Logs in; returns the cookie (`name=value`).
fn login(master: &MasterProcess, user: &str, password: &str) -> String {
    let body = json!({"user": user, "password": password}).to_string();
    let ok = request(
        &master.api,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let cookie = ok.header("set-cookie").expect("cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

#[test]
fn pages_render_escaped_and_follow_roles() {
    let users = format!(
        "[[api_user]]\nname = \"viewer\"\nroles = [\"read\"]\npassword_hash = \"{}\"\n\n\
         [[api_user]]\nname = \"op\"\nroles = [\"read\", \"force\", \"stop\"]\npassword_hash = \"{}\"\n",
        hash_password("viewer password"),
        hash_password("operator password")
    );
    let dir = test_dir("web-pages");
    let master = MasterProcess::start(&dir.join("master"), "", &body(&users));
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let forced = master.post(
        "/api/builders/web/force",
        json!({"reason": ATTACK, "properties": {"evil": ATTACK}}),
    )["request_id"]
        .as_i64()
        .expect("request");
    let done = master.wait_request(forced, LONG);
    let build = done["builds"][0]["id"].as_i64().expect("build");

    // No credential: pages send the browser to log in; the login page and the
    // assets are open; the API still answers 401.
    let home = get(&master, "/", None);
    assert_eq!(home.status, 303, "{home:?}");
    assert_eq!(home.header("location"), Some("/login?next=/"));
    let deep = get(&master, &format!("/builds/{build}"), None);
    assert_eq!(
        deep.header("location"),
        Some(format!("/login?next=/builds/{build}").as_str())
    );
    assert_eq!(get(&master, "/api/builds", None).status, 401);
    for open in ["/login", "/static/app.js", "/static/style.css"] {
        assert_eq!(get(&master, open, None).status, 200, "{open}");
    }
    assert_eq!(get(&master, "/static/nothing.js", None).status, 404);

    let viewer = login(&master, "viewer", "viewer password");
    let op = login(&master, "op", "operator password");
    let pages = [
        "/".to_owned(),
        "/builders/web".into(),
        format!("/builds/{build}"),
        "/workers".into(),
        "/latent".into(),
        "/buildrequests".into(),
        "/changes".into(),
    ];
    for path in &pages {
        let page = get(&master, path, Some(&viewer));
        assert_eq!(page.status, 200, "{path}: {page:?}");
        assert!(
            page.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}"
        );
        // Only the page's own script tags; every value escaped.
        assert!(
            !page.text.contains("<script>alert"),
            "{path}:\n{}",
            page.text
        );
    }
    let page = get(&master, &format!("/builds/{build}"), Some(&viewer)).text;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("bad \u{fffd}\u{fffd} bytes"), "{page}");
    assert!(page.contains("<span class=\"stderr\">err"), "{page}");
    assert!(page.contains("<span class=\"fg1\">red</span>"), "{page}");
    assert!(page.contains("result success"), "{page}");
    assert!(
        page.contains("<td>evil</td>") && page.contains("<td>request</td>"),
        "the property and its source: {page}"
    );
    let home = get(&master, "/", Some(&viewer)).text;
    assert!(
        home.contains("/builders/web") && home.contains("1 worker(s) attached (2 configured)"),
        "{home}"
    );

    // Buttons by role: the reader sees no force form, the operator does.
    let builder = |cookie: &str| get(&master, "/builders/web", Some(cookie)).text;
    assert!(!builder(&viewer).contains("id=\"force\""));
    assert!(builder(&op).contains("id=\"force\""));
    assert_eq!(get(&master, "/builders/nothing", Some(&op)).status, 404);

    // A request that cannot run says why.
    master.force("orphan");
    let queue = get(&master, "/buildrequests", Some(&viewer)).text;
    assert!(queue.contains("none of its workers is attached"), "{queue}");

    // A long log is shown a page at a time, each page linking the next.
    let big = master.wait_request(master.force("big"), LONG)["builds"][0]["id"]
        .as_i64()
        .expect("build");
    let mut page = get(&master, &format!("/builds/{big}"), Some(&viewer)).text;
    let mut pages = 1;
    // The command (in the log's header) says END-OF-$((1+1)); its output, the end.
    while !page.contains("END-OF-2") {
        let next = page
            .split("class=\"next\" href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no next page after page {pages}:\n{page}"))
            .replace("&amp;", "&");
        page = get(&master, &next, Some(&viewer)).text;
        pages += 1;
        assert!(pages < 10, "too many pages");
    }
    assert!(
        pages >= 2,
        "over 256 KiB kept, in pages of 256 KiB: {pages}"
    );
    assert!(
        !page.contains("class=\"next\""),
        "the last page links no next"
    );
    assert_eq!(get(&master, "/builds/999", Some(&op)).status, 404);
}

/// A step name an attacker would choose: markup, a script end, and line breaks that
/// would start a forged event.
const STEP: &str = "</script><img src=x onerror=alert(4)>\n\nevent: forged\ndata: x";
const BUILDER: &str = "b<i>\"1\"</i>";
/// The builder's name in a path.
const BUILDER_PATH: &str = "b%3Ci%3E%221%22%3C%2Fi%3E";

fn push_body(users: &str, go: &std::path::Path) -> String {
    let command = format!(
        "printf 'first </script><b>\\033[31mred\\033[0m \\377\\n'; \
         while [ ! -e {} ]; do sleep 0.05; done; echo second",
        go.display()
    );
    format!(
        "[api]\npublic_read = \"none\"\n\n\
         [[worker]]\nname = \"w1\"\npassword = \"pass\"\n\n\
         [[builder]]\nname = {}\nbuilddir = \"hostile\"\nworkers = [\"w1\"]\n\
         [[builder.step]]\nname = {}\ncommand = {}\n\n{users}",
        toml_string(BUILDER),
        toml_string(STEP),
        toml_string(&command)
    )
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

fn open(master: &MasterProcess, path: &str, cookie: Option<&str>) -> EventStream {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    EventStream::open(&master.api, path, &headers)
}

fn json_of(m: &SseMessage) -> serde_json::Value {
    serde_json::from_str(&m.data).unwrap_or_else(|e| panic!("{e}: {m:?}"))
}

#[test]
fn pushed_events_and_live_logs_are_for_readers_and_escaped() {
    let dir = test_dir("web-push");
    let go = dir.join("go");
    let users = format!(
        "[[api_user]]\nname = \"viewer\"\nroles = [\"read\"]\npassword_hash = \"{}\"\n\n\
         [[api_user]]\nname = \"forcer\"\nroles = [\"force\"]\npassword_hash = \"{}\"\n",
        hash_password("viewer password"),
        hash_password("forcer password")
    );
    let master = MasterProcess::start(&dir.join("master"), "", &push_body(&users, &go));
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let viewer = login(&master, "viewer", "viewer password");
    let forcer = login(&master, "forcer", "forcer password");

    // Streams are reads: no credential, or one without the read role, gets none.
    assert_eq!(open(&master, "/api/events", None).status, 401);
    assert_eq!(open(&master, "/api/events", Some(&forcer)).status, 403);
    let live_path = |b: i64| format!("/api/builds/{b}/steps/1/logs/stdio/live");
    assert_eq!(open(&master, &live_path(1), None).status, 401);
    assert_eq!(open(&master, &live_path(1), Some(&forcer)).status, 403);

    let mut events = open(&master, "/api/events", Some(&viewer));
    assert_eq!(events.status, 200);
    assert!(events
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
    let forced = master.post(&format!("/api/builders/{BUILDER_PATH}/force"), json!({}))
        ["request_id"]
        .as_i64()
        .expect("request");
    let mut seen = Vec::new();
    let mut take = |events: &mut EventStream, kind: &str| {
        let m = events.until(kind, |m| m.event == kind);
        seen.push(m.clone());
        json_of(&m)
    };
    let queued = take(&mut events, "request_queued");
    assert_eq!(queued["request"].as_i64(), Some(forced));
    assert_eq!(queued["builder"], BUILDER);
    let started = take(&mut events, "build_started");
    let build = started["build"].as_i64().expect("build id");
    assert_eq!(started["builder"], BUILDER);
    let step = take(&mut events, "step_started");
    assert_eq!(
        (step["build"].as_i64(), step["step"].as_i64()),
        (Some(build), Some(1))
    );
    assert_eq!(step["name"], STEP, "the name arrives whole, as data");

    // The running step's log is pushed as it is recorded, rendered and escaped.
    let mut live = open(&master, &live_path(build), Some(&viewer));
    assert_eq!(live.status, 200);
    // The first output line (the log's header, which quotes the command, may come
    // in an event before it).
    let first = live.until("the first line", |m| {
        m.event == "log"
            && json_of(m)["html"]
                .as_str()
                .is_some_and(|h| h.contains("fg1"))
    });
    let html = json_of(&first)["html"].as_str().expect("html").to_owned();
    assert!(
        html.contains("first &lt;/script&gt;&lt;b&gt;<span class=\"fg1\">red</span> \u{fffd}"),
        "{html}"
    );
    let resume_from = first.id.clone().expect("an id to resume from");
    std::fs::write(&go, b"").expect("let the step go on");
    let mut rest = String::new();
    let end = live.until("the end", |m| {
        if m.event == "log" {
            rest += json_of(m)["html"].as_str().unwrap_or_default();
        }
        m.event == "end"
    });
    rest += json_of(&end)["html"].as_str().unwrap_or_default();
    assert!(rest.contains("second"), "{rest}");
    assert!(live.next_event().is_none(), "the stream ends with the step");

    // A reconnecting browser goes on after the last piece it got.
    let mut again = EventStream::open(
        &master.api,
        &live_path(build),
        &[("Cookie", &viewer), ("Last-Event-ID", &resume_from)],
    );
    let mut resumed = String::new();
    again.until("the end again", |m| {
        resumed += &m.data;
        m.event == "end"
    });
    assert!(
        resumed.contains("second") && !resumed.contains("first"),
        "{resumed}"
    );

    let done = take(&mut events, "build_finished");
    assert_eq!(done["build"].as_i64(), Some(build));
    assert_eq!(done["result"], "success");
    for m in &seen {
        assert!(!m.data.contains('\n'), "one data line per event: {m:?}");
    }
    // Every event the stream sent is of a known kind (no forged one).
    let known = [
        "request_queued",
        "build_started",
        "step_started",
        "step_finished",
        "build_finished",
        "worker_attached",
        "worker_detached",
        "instance",
        "lagged",
    ];
    for m in &seen {
        assert!(known.contains(&m.event.as_str()), "{m:?}");
    }

    // A session that ends ends its streams: the next event is not sent.
    let mut before_logout = open(&master, "/api/events", Some(&viewer));
    assert_eq!(before_logout.status, 200);
    let session = get(&master, "/api/session", Some(&viewer));
    let csrf = session.body["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    let out = request(
        &master.api,
        "POST",
        "/api/logout",
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &viewer),
            ("X-CSRF-Token", &csrf),
        ],
        b"{}",
    );
    assert_eq!(out.status, 200, "{out:?}");
    let last = master.force(BUILDER_PATH);
    master.wait_request(last, LONG);
    assert!(
        before_logout.next_event().is_none(),
        "a logged-out stream gets nothing more"
    );
}

/// The build ids a page of builds links to, in order.
fn build_ids(page: &str) -> Vec<i64> {
    page.split("<a href=\"/builds/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// The link of class `class` on a page, unescaped.
fn link(page: &str, class: &str) -> Option<String> {
    let at = page.split(&format!("class=\"{class}\" href=\"")).nth(1)?;
    Some(at.split('"').next()?.replace("&amp;", "&"))
}

#[test]
fn builds_are_paged_by_id_both_ways() {
    let dir = test_dir("web-pages-of-builds");
    let master = MasterProcess::start(
        &dir.join("master"),
        "",
        "[[worker]]\nname = \"w1\"\npassword = \"pass\"\n\n\
         [[builder]]\nname = \"quick\"\nworkers = [\"w1\"]\n[[builder.step]]\ncommand = \"true\"\n\n\
         [[builder]]\nname = \"other\"\nworkers = [\"w1\"]\n[[builder.step]]\ncommand = \"true\"\n",
    );
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let mut requests = Vec::new();
    for i in 0..230 {
        requests.push(master.force(if i % 10 == 9 { "other" } else { "quick" }));
    }
    for r in requests {
        master.wait_request(r, LONG);
    }
    let all: Vec<i64> = master
        .get("/api/builds?builder=quick&limit=1000")
        .as_array()
        .expect("builds")
        .iter()
        .map(|b| b["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(all.len(), 207, "every quick build ran once");

    // Older pages to the end, then newer pages back: the same builds, in order.
    let mut path = "/builders/quick?limit=50".to_owned();
    let mut pages = Vec::new();
    loop {
        let page = get(&master, &path, None);
        assert_eq!(page.status, 200, "{path}");
        let ids = build_ids(&page.text);
        assert!(!ids.is_empty() && ids.len() <= 50, "{path}: {ids:?}");
        pages.push(ids);
        match link(&page.text, "older") {
            Some(next) => path = next,
            None => break,
        }
        assert!(pages.len() < 10, "too many pages");
    }
    assert_eq!(pages.concat(), all, "newest first, each build once");
    assert_eq!(pages.len(), 5);
    let mut back = vec![pages.last().expect("a page").clone()];
    let mut page = get(&master, &path, None).text;
    assert!(link(&page, "newer").is_some(), "the last page links back");
    while let Some(newer) = link(&page, "newer") {
        page = get(&master, &newer, None).text;
        back.push(build_ids(&page));
        assert!(back.len() < 10, "too many pages");
    }
    back.reverse();
    assert_eq!(back, pages, "newer pages are the same pages");

    // The page size is bounded; every builder's builds page the same way.
    let huge = get(&master, "/builders/quick?limit=100000", None).text;
    assert_eq!(build_ids(&huge).len(), 200);
    let everything = get(&master, "/builds?limit=100", None).text;
    let ids = build_ids(&everything);
    assert_eq!(ids.len(), 100);
    assert!(
        everything.contains("/builders/other"),
        "with their builders"
    );
    let older = get(&master, &link(&everything, "older").expect("older"), None).text;
    assert_eq!(build_ids(&older)[0], ids[99] - 1);
    let api = master.get(&format!("/api/builds?limit=3&before={}", all[0]));
    let api: Vec<i64> = api
        .as_array()
        .expect("builds")
        .iter()
        .map(|b| b["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(api.len(), 3);
    assert!(api.iter().all(|id| *id < all[0]), "{api:?}");
}
