//! A step's start is committed while its command starts on the worker: what the
//! build does when that commit fails.

use crate::model::BuildResult;
use crate::testing::{Behaviour, Harness};
use std::time::Duration;

const CONFIG: &str = r#"
[master]
pb_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[worker]]
name = "w1"
password = "p1"

[[builder]]
name = "hello"
workers = ["w1"]

[[builder.step]]
name = "greet"
command = "echo hello"
"#;

#[tokio::test(start_paused = true)]
async fn a_step_start_the_store_refuses_interrupts_the_command_and_ends_the_build() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let held = Behaviour {
        hold: true,
        ..Behaviour::default()
    };
    let mut w = h.connect("w1", held).await;
    assert!(w.login_answer().await);
    h.store().execute_for_test(
        "CREATE TRIGGER no_steps BEFORE INSERT ON steps \
         BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END;",
    );
    let request = h.force("hello").await.unwrap();
    let builds = h.finished(request).await;
    assert_eq!(h.results(request), [Some(BuildResult::Exception)]);
    assert_eq!(
        builds[0].reason.as_deref(),
        Some("the master cannot record the build")
    );
    // The command went out before the commit failed: the worker is told to stop it.
    for _ in 0..100 {
        if w.calls().iter().any(|c| c == "interruptCommand") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = w.calls();
    let start = calls.iter().position(|c| c == "startCommand");
    let interrupt = calls.iter().position(|c| c == "interruptCommand");
    assert!(
        start.is_some() && interrupt > start,
        "startCommand, then interruptCommand: {calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_started_in_parallel_still_keeps_its_log() {
    let mut h = Harness::start(CONFIG).await.unwrap();
    let mut w = h.connect("w1", Behaviour::default()).await;
    assert!(w.login_answer().await);
    for _ in 0..5 {
        let request = h.force("hello").await.unwrap();
        let builds = h.finished(request).await;
        assert_eq!(h.results(request), [Some(BuildResult::Success)]);
        assert_eq!(h.log(builds[0].id, 1), b"ok\n");
    }
}
