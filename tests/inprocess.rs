//! The coordinator in process (`pbmaster::testing`): scripted workers, the real queue,
//! dispatch, build runner and store, and tokio's paused clock. No sockets, no worker
//! processes; each test takes milliseconds.

use pbmaster::testing::{Behaviour, Harness};
use std::time::Duration;

const CONFIG: &str = r#"
[master]
pb_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[worker]]
name = "w1"
password = "p1"

[[worker]]
name = "w2"
password = "p2"

[[builder]]
name = "hello"
workers = ["w1", "w2"]

[[builder.step]]
name = "greet"
command = "echo hello"
"#;

fn results(h: &Harness, request: i64) -> Vec<String> {
    h.results(request)
        .into_iter()
        .map(|r| r.map_or("running".into(), |r| r.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_forced_build_runs_on_an_attached_worker() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let mut w = h.connect("w1", Behaviour::default()).await;
    assert!(
        w.login_answer().await,
        "the login is accepted once attached"
    );
    let request = h.force("hello").await.unwrap();
    let builds = h.finished(request).await;
    assert_eq!(results(&h, request), ["success"]);
    assert_eq!(builds[0].worker, "w1");
    assert_eq!(h.log(builds[0].id, 1), b"ok\n");
    let calls = w.calls();
    let attach = ["print", "getWorkerInfo", "setBuilderList"];
    assert_eq!(
        &calls[..3],
        attach,
        "the attach handshake comes first: {calls:?}"
    );
    assert!(calls.contains(&"startCommand".to_owned()), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_command_fails_the_build() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let failing = Behaviour {
        rc: 1,
        ..Behaviour::default()
    };
    let mut w = h.connect("w1", failing).await;
    assert!(w.login_answer().await);
    let request = h.force("hello").await.unwrap();
    h.finished(request).await;
    assert_eq!(results(&h, request), ["failure"]);
}

#[tokio::test(start_paused = true)]
async fn requests_wait_for_a_worker_and_unknown_names_are_not_attached() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let request = h.force("hello").await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(h.builds(request).is_empty(), "no worker, no build");
    let mut stranger = h.connect("nobody", Behaviour::default()).await;
    assert!(!stranger.login_answer().await, "an unknown name is refused");
    assert!(
        stranger.calls().is_empty(),
        "an unknown name gets no handshake"
    );
    let mut w = h.connect("w2", Behaviour::default()).await;
    assert!(w.login_answer().await);
    h.finished(request).await;
    assert_eq!(results(&h, request), ["success"]);
    assert_eq!(h.builds(request)[0].worker, "w2");
}

#[tokio::test(start_paused = true)]
async fn a_worker_lost_mid_build_retries_the_request_elsewhere() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let holding = Behaviour {
        hold: true,
        ..Behaviour::default()
    };
    let mut w1 = h.connect("w1", holding).await;
    assert!(w1.login_answer().await);
    let request = h.force("hello").await.unwrap();
    w1.running(1).await;
    w1.kill().await;
    let mut w2 = h.connect("w2", Behaviour::default()).await;
    assert!(w2.login_answer().await);
    let builds = h.finished(request).await;
    assert_eq!(results(&h, request), ["retry", "success"]);
    assert_eq!(
        (builds[0].worker.as_str(), builds[1].worker.as_str()),
        ("w1", "w2")
    );
}

#[tokio::test(start_paused = true)]
async fn draining_interrupts_builds_past_the_grace_and_starts_no_new_ones() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let holding = Behaviour {
        hold: true,
        ..Behaviour::default()
    };
    let mut w = h.connect("w1", holding).await;
    assert!(w.login_answer().await);
    let running = h.force("hello").await.unwrap();
    w.running(1).await;
    h.drain(Duration::from_secs(30)).await;
    let queued = h.force("hello");
    // Past the grace period the build is interrupted; its request stays to run again.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let queued = queued.await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(results(&h, running), ["retry"]);
    assert!(w.calls().contains(&"interruptCommand".to_owned()));
    if let Ok(id) = queued {
        assert!(h.builds(id).is_empty(), "no new build while draining");
    }
}

#[tokio::test(start_paused = true)]
async fn queued_requests_survive_a_crash() {
    let h = Harness::start(CONFIG).await.unwrap();
    let first = h.force("hello").await.unwrap();
    let second = h.force("hello").await.unwrap();
    let mut h = h.restart().await.unwrap();
    let mut w = h.connect("w1", Behaviour::default()).await;
    assert!(w.login_answer().await);
    h.finished(first).await;
    h.finished(second).await;
    assert_eq!(results(&h, first), ["success"]);
    assert_eq!(results(&h, second), ["success"]);
}

#[tokio::test(start_paused = true)]
async fn a_second_login_is_refused_while_the_first_connection_answers() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let mut first = h.connect("w1", Behaviour::default()).await;
    assert!(first.login_answer().await);
    let mut second = h.connect("w1", Behaviour::default()).await;
    assert!(
        !second.login_answer().await,
        "refused while the first answers"
    );
    assert!(
        !second.calls().contains(&"getWorkerInfo".to_owned()),
        "no handshake with a refused login"
    );
    let request = h.force("hello").await.unwrap();
    h.finished(request).await;
    assert_eq!(results(&h, request), ["success"]);
    assert!(first.calls().contains(&"startCommand".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_login_replaces_a_connection_that_stopped_answering() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let mut first = h.connect("w1", Behaviour::default()).await;
    assert!(first.login_answer().await);
    first.hang();
    let mut second = h.connect("w1", Behaviour::default()).await;
    assert!(
        second.login_answer().await,
        "the silent connection is replaced"
    );
    let request = h.force("hello").await.unwrap();
    h.finished(request).await;
    assert_eq!(results(&h, request), ["success"]);
    assert!(second.calls().contains(&"startCommand".to_owned()));
    assert!(!first.calls().contains(&"startCommand".to_owned()));
}
