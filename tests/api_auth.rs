//! The API's guard, attacked over real HTTP: writes without a token, with a wrong one,
//! with one lacking the role; form bodies, foreign origins and rebound host names;
//! reads open to loopback by default and closed by `public_read = "none"`; guessing
//! throttled; the CLI's `--token`, `--token-file` and `PBMASTER_TOKEN`; `pbmaster
//! check`'s warnings; a master whose token file is missing does not start.

mod support;

use serde_json::json;
use std::process::{Command, Output};
use support::http::{request, Answer};
use support::master::{bearer, test_dir, write_secret, MasterProcess, API_TOKEN};

const FORCER: &str = "forcer-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";

/// A builder that is never built (its worker never comes), and two tokens besides the
/// test masters' admin one: `forcer` (force) from a file, `reader` (read) inline.
fn body(api: &str) -> String {
    format!(
        r#"
{api}

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "b"
workers = ["w1"]
[[builder.step]]
command = "true"

[[api_token]]
name = "forcer"
roles = ["force"]
token_file = "forcer.token"

[[api_token]]
name = "reader"
roles = ["read"]
token = "{READER}"
"#
    )
}

fn start(name: &str, api: &str) -> MasterProcess {
    let dir = test_dir(name);
    std::fs::create_dir_all(dir.join("master")).expect("dir");
    write_secret(&dir.join("master/forcer.token"), FORCER);
    MasterProcess::start(&dir.join("master"), "", &body(api))
}

fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn force(master: &MasterProcess, headers: &[(&str, &str)], body: &str) -> Answer {
    request(
        &master.api,
        "POST",
        "/api/builders/b/force",
        headers,
        body.as_bytes(),
    )
}

fn requests(master: &MasterProcess) -> usize {
    master
        .get("/api/buildrequests")
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn writes_need_a_token_with_the_role() {
    let master = start("auth-writes", "");
    let error = |a: &Answer| a.body["error"].as_str().unwrap_or("").to_owned();

    let none = force(&master, &[JSON], "{}");
    assert_eq!(none.status, 401, "{none:?}");
    assert!(none
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    assert!(error(&none).contains("authentication required"), "{none:?}");
    let forcer = auth(FORCER);
    let wrong = force(
        &master,
        &[JSON, ("Authorization", &auth("not-a-token-0123456789"))],
        "{}",
    );
    assert_eq!(
        (wrong.status, error(&wrong).as_str()),
        (401, "invalid token")
    );
    let basic = force(
        &master,
        &[JSON, ("Authorization", "Basic Zm9yY2VyOng=")],
        "{}",
    );
    assert_eq!(basic.status, 401, "{basic:?}");
    let reader = force(&master, &[JSON, ("Authorization", &auth(READER))], "{}");
    assert_eq!(reader.status, 403, "{reader:?}");
    assert_eq!(error(&reader), "the token lacks the force role");
    for refused in [&none, &wrong, &reader] {
        let text = refused.body.to_string();
        assert!(
            !text.contains("forcer") && !text.contains("reader"),
            "{text}"
        );
    }
    assert_eq!(requests(&master), 0, "nothing refused was queued");

    let ok = force(
        &master,
        &[JSON, ("Authorization", &forcer)],
        r#"{"reason": "ci"}"#,
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body["request_id"].is_i64());
    let empty = force(&master, &[JSON, ("Authorization", &forcer)], "");
    assert_eq!(
        empty.status, 200,
        "an empty body is a plain force: {empty:?}"
    );
    let not_json = force(&master, &[JSON, ("Authorization", &forcer)], "reason=x");
    assert_eq!(not_json.status, 400, "{not_json:?}");

    // Each write has its role: stop and changes are not force.
    let stop = |token: &str| {
        request(
            &master.api,
            "POST",
            "/api/builds/1/stop",
            &[JSON, ("Authorization", &auth(token))],
            b"{}",
        )
        .status
    };
    assert_eq!(stop(FORCER), 403);
    assert_eq!(stop(API_TOKEN), 409, "admin passes; no build is running");
    let change = |token: &str| {
        request(
            &master.api,
            "POST",
            "/api/changes",
            &[JSON, ("Authorization", &auth(token))],
            json!({"author": "a", "files": ["x"]})
                .to_string()
                .as_bytes(),
        )
        .status
    };
    assert_eq!(change(FORCER), 403);
    assert_eq!(change(API_TOKEN), 200);
    assert_eq!(requests(&master), 2);
    assert!(
        master
            .log()
            .contains("with token \"forcer\" from 127.0.0.1"),
        "writes are logged with their token's name"
    );
    assert!(!master.log().contains(FORCER) && !master.log().contains(READER));
}

#[test]
fn writes_from_browsers_are_refused() {
    let master = start("auth-browser", "");
    let forcer = auth(FORCER);
    let with = |extra: &[(&str, &str)]| {
        let mut h = vec![("Authorization", forcer.as_str())];
        h.extend_from_slice(extra);
        force(&master, &h, "{}").status
    };
    // What a page can send without a preflight: a form, or text.
    assert_eq!(
        with(&[("Content-Type", "application/x-www-form-urlencoded")]),
        415
    );
    assert_eq!(with(&[("Content-Type", "text/plain")]), 415);
    assert_eq!(with(&[]), 415, "no content type");
    // A page on another origin, and the browser saying so.
    assert_eq!(with(&[JSON, ("Origin", "http://attacker.example")]), 403);
    assert_eq!(with(&[JSON, ("Origin", "null")]), 403);
    assert_eq!(with(&[JSON, ("Sec-Fetch-Site", "cross-site")]), 403);
    // DNS rebinding: the attacker's name, resolving to 127.0.0.1. Reads are refused too.
    let rebound = ("Host", "rebind.attacker.example:8010");
    assert_eq!(with(&[JSON, rebound]), 403);
    let read = request(&master.api, "GET", "/api/builds", &[rebound], b"");
    assert_eq!(read.status, 403, "{read:?}");
    assert_eq!(requests(&master), 0);
    // The API's own origin, as a future web UI would send it, and localhost.
    let own = master.api.clone();
    assert_eq!(with(&[JSON, ("Origin", &own)]), 200);
    let port = master.api.rsplit(':').next().expect("port");
    assert_eq!(with(&[JSON, ("Host", &format!("localhost:{port}"))]), 200);
}

#[test]
fn reads_are_open_to_loopback_unless_closed() {
    let open = start("auth-reads-open", "");
    let read = |m: &MasterProcess, headers: &[(&str, &str)]| {
        request(&m.api, "GET", "/api/builders", headers, b"").status
    };
    assert_eq!(
        read(&open, &[]),
        200,
        "loopback reads need no token by default"
    );
    let wrong = auth("wrong-token-0123456789");
    assert_eq!(
        read(&open, &[("Authorization", &wrong)]),
        401,
        "a wrong token is refused anyway"
    );
    drop(open);

    let closed = start("auth-reads-closed", "[api]\npublic_read = \"none\"");
    assert_eq!(read(&closed, &[]), 401);
    assert_eq!(read(&closed, &[("Authorization", &auth(READER))]), 200);
    assert_eq!(read(&closed, &[("Authorization", &auth(FORCER))]), 403);
    assert_eq!(
        read(&closed, &[("Authorization", &bearer())]),
        200,
        "admin reads"
    );
    let log = request(
        &closed.api,
        "GET",
        "/api/builds/1/steps/1/logs/stdio",
        &[],
        b"",
    );
    assert_eq!(log.status, 401, "logs are reads too");
}

#[test]
fn guessing_tokens_is_throttled() {
    let master = start("auth-throttle", "");
    let guess = |token: &str| force(&master, &[JSON, ("Authorization", &auth(token))], "{}");
    for i in 0..5 {
        let a = guess(&format!("guess-{i}-0123456789abcdef"));
        assert_eq!(a.status, 401, "{i}: {a:?}");
    }
    let held = guess("guess-5-0123456789abcdef");
    assert_eq!(held.status, 429, "{held:?}");
    assert!(held
        .header("retry-after")
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|s| (1..=300).contains(&s)));
    // While held, even the right token is not checked: guessing gains nothing.
    assert_eq!(guess(FORCER).status, 429);
    // Reads open to loopback do not need a token, so they go on.
    assert_eq!(
        request(&master.api, "GET", "/api/builders", &[], b"").status,
        200
    );
    assert!(master.log().contains("refused (429)"));
}

fn pbmaster(api: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pbmaster"));
    c.args(args)
        .env("PBMASTER_API", api)
        .env_remove("PBMASTER_TOKEN")
        .env_remove("PBMASTER_TOKEN_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("pbmaster runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_cli_sends_its_token() {
    let master = start("auth-cli", "");
    let api = master.api.as_str();
    let file = master.dir.join("forcer.token");
    let file = file.to_str().expect("path");

    let without = pbmaster(api, &[], &["force", "b"]);
    assert_eq!(without.status.code(), Some(1), "{}", text(&without));
    let said = text(&without);
    assert!(
        said.contains("the API needs a token")
            && said.contains("PBMASTER_TOKEN")
            && said.contains("--token-file"),
        "{said}"
    );
    for (env, args) in [
        (vec![("PBMASTER_TOKEN", FORCER)], vec!["force", "b"]),
        (vec![], vec!["force", "b", "--token", FORCER]),
        (vec![], vec!["force", "--token-file", file, "b"]),
        (vec![("PBMASTER_TOKEN_FILE", file)], vec!["force", "b"]),
        // The command line before the environment.
        (
            vec![("PBMASTER_TOKEN", READER)],
            vec!["force", "b", "--token-file", file],
        ),
    ] {
        let out = pbmaster(api, &env, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{env:?} {args:?}: {}",
            text(&out)
        );
        assert!(text(&out).contains("queued for b"), "{}", text(&out));
    }
    let wrong = pbmaster(
        api,
        &[("PBMASTER_TOKEN", "wrong-token-0123456789")],
        &["force", "b"],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong).contains("the API refused the token: invalid token"),
        "{}",
        text(&wrong)
    );
    let reader = pbmaster(api, &[("PBMASTER_TOKEN", READER)], &["stop", "1"]);
    assert_eq!(reader.status.code(), Some(1));
    assert!(
        text(&reader).contains("refused (403): the token lacks the stop role"),
        "{}",
        text(&reader)
    );
    let missing = pbmaster(api, &[], &["force", "b", "--token-file", "/nonexistent/t"]);
    assert!(
        text(&missing).contains("cannot read the token file /nonexistent/t"),
        "{}",
        text(&missing)
    );
    // Reads from loopback need none; the token never shows in --help.
    let builds = pbmaster(api, &[], &["builds"]);
    assert_eq!(builds.status.code(), Some(0), "{}", text(&builds));
    let help = pbmaster(api, &[("PBMASTER_TOKEN", FORCER)], &["force", "--help"]);
    assert!(!text(&help).contains(FORCER), "{}", text(&help));
    assert_eq!(
        master.get("/api/buildrequests").as_array().map(Vec::len),
        Some(5)
    );
}

#[test]
fn check_warns_and_start_needs_every_token() {
    let dir = test_dir("auth-check");
    let path = dir.join("master.toml");
    let port = support::master::free_port();
    std::fs::write(
        &path,
        format!(
            "[master]\nhttp_listen = \"0.0.0.0:{port}\"\npb_listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n\n\
             [[api_token]]\nname = \"ci\"\nroles = [\"force\"]\ntoken = \"{FORCER}\"\n\n\
             [[api_token]]\nname = \"ops\"\nroles = [\"admin\"]\ntoken_file = \"ops.token\"\n"
        ),
    )
    .expect("write");
    let check = pbmaster(
        "",
        &[],
        &["check", "--config", path.to_str().expect("path")],
    );
    let said = text(&check);
    assert_eq!(
        check.status.code(),
        Some(0),
        "warnings are not errors: {said}"
    );
    assert!(
        said.contains("warning: line 9, column 9: api token \"ci\" is written in the config"),
        "{said}"
    );
    assert!(
        said.contains("warning: api token \"ops\": cannot read"),
        "{said}"
    );
    assert!(!said.contains(FORCER));

    let start = pbmaster(
        "",
        &[],
        &["start", "--config", path.to_str().expect("path")],
    );
    assert_eq!(start.status.code(), Some(1), "{}", text(&start));
    assert!(
        text(&start).contains("api token \"ops\": cannot read"),
        "{}",
        text(&start)
    );

    std::fs::write(
        &path,
        format!("[master]\nhttp_listen = \"0.0.0.0:{port}\"\ndata_dir = \"d\"\n"),
    )
    .expect("write");
    let check = pbmaster(
        "",
        &[],
        &["check", "--config", path.to_str().expect("path")],
    );
    assert!(
        text(&check).contains("reachable from other machines and no [[api_token]] is configured"),
        "{}",
        text(&check)
    );
}

/// `pbmaster hash-password`'s output for `password`.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pbmaster");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("hash-password");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn browser_sessions_need_the_password_the_cookie_and_the_csrf_token() {
    let hash = hash_password("ann's long password");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let users = format!(
        "\n[[api_user]]\nname = \"ann\"\nroles = [\"force\"]\npassword_hash = \"{hash}\"\n"
    );
    let master = start("auth-sessions", &users);
    let login = |user: &str, password: &str| {
        let body = json!({"user": user, "password": password}).to_string();
        request(&master.api, "POST", "/api/login", &[JSON], body.as_bytes())
    };
    for (user, password) in [("ann", "wrong"), ("nobody", "ann's long password")] {
        let refused = login(user, password);
        assert_eq!(refused.status, 401, "{refused:?}");
        assert!(refused.header("set-cookie").is_none());
    }
    let form = request(
        &master.api,
        "POST",
        "/api/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"user=ann&password=x",
    );
    assert_eq!(form.status, 415, "a cross-site form cannot log in");

    let ok = login("ann", "ann's long password");
    assert_eq!(ok.status, 200, "{ok:?}");
    let cookie = ok.header("set-cookie").expect("a cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().expect("name=value").to_owned();
    let csrf = ok.body["csrf_token"].as_str().expect("csrf").to_owned();
    assert_eq!(ok.body["roles"], json!(["force"]));

    let with = |headers: &[(&str, &str)]| force(&master, headers, "{}").status;
    assert_eq!(with(&[JSON, ("Cookie", &session)]), 403, "no CSRF token");
    assert_eq!(
        with(&[JSON, ("Cookie", &session), ("X-CSRF-Token", "guess")]),
        403
    );
    assert_eq!(
        with(&[JSON, ("Cookie", &session), ("X-CSRF-Token", &csrf)]),
        200,
        "the session's own page"
    );
    assert_eq!(
        with(&[JSON, ("X-CSRF-Token", &csrf)]),
        401,
        "the token alone is no credential"
    );
    let stop = request(
        &master.api,
        "POST",
        "/api/builds/1/stop",
        &[JSON, ("Cookie", &session), ("X-CSRF-Token", &csrf)],
        b"{}",
    );
    assert_eq!(stop.status, 403, "ann has no stop role: {stop:?}");
    let who = request(
        &master.api,
        "GET",
        "/api/session",
        &[("Cookie", &session)],
        b"",
    );
    assert_eq!(who.body["user"], "ann", "{who:?}");
    assert_eq!(who.body["csrf_token"], csrf.as_str());

    let out = request(
        &master.api,
        "POST",
        "/api/logout",
        &[JSON, ("Cookie", &session), ("X-CSRF-Token", &csrf)],
        b"{}",
    );
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        with(&[JSON, ("Cookie", &session), ("X-CSRF-Token", &csrf)]),
        401,
        "logged out"
    );
    assert_eq!(requests(&master), 1);
    assert!(!master.log().contains("ann's long password"));
}
