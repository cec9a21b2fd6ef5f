//! The web pages over real HTTP with a real buildbot-worker 4.3.0: every page
//! renders; values that are markup (a property, a reason, a log line) come out
//! escaped, invalid UTF-8 as U+FFFD and ANSI colours as spans; a browser without a
//! credential is sent to log in; buttons follow the roles of who looks.

mod support;

use serde_json::json;
use std::time::Duration;
use support::http::{request, Answer};
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
