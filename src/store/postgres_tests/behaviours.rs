//! Requests, builds, steps, logs, changes, latent instances, the outbox, retention,
//! recovery, the coordinator's transactions, corrupt values and migrations, on
//! PostgreSQL.

use super::Cluster;
use crate::changes::{Change, NewChange};
use crate::model::{BuildResult, ChangePlan, Fire, Instance, Phase, WorkerState};
use crate::store::{BuildWrite, Channel, LogWriter, Settled, Store, StoreError};
use serde_json::json;

use crate::store::logs::read_whole_log as read_log;

fn queued_ids(store: &Store) -> Vec<i64> {
    let queued = store.queued_requests().expect("queued");
    queued.iter().map(|r| r.id).collect()
}

fn started(number: i64) -> BuildWrite {
    BuildWrite::StepStarted {
        number,
        name: format!("step {number}"),
        at: 1.5,
    }
}

#[test]
fn requests_builds_steps_and_logs_are_kept_in_the_database_and_recovered() {
    let cluster = Cluster::start();
    let (store, dir, target) = cluster.store();
    let r1 = store
        .add_request("b1", "force", &json!({"p": 1}))
        .expect("request");
    let r2 = store
        .add_request("b1", "force", &json!({}))
        .expect("request");
    let build = store.start_build(r1, "b1", "w1").expect("build").started();
    assert_eq!(build.number, 1);
    store
        .record_build(
            build.id,
            &[
                BuildWrite::Properties(json!({"x": [1, "test"]})),
                started(1),
            ],
        )
        .expect("step");
    let mut w = LogWriter::new(&store, build.id, 1);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    w.append("stdio", Channel::Header, b"$ make\n")
        .expect("append");
    w.append("stdio", Channel::Stdout, b"\xffraw ")
        .expect("append");
    w.append("stdio", Channel::Stdout, b"bytes\n")
        .expect("append");
    w.append("big.log", Channel::Stdout, &big).expect("append");
    drop(w);
    assert_eq!(
        read_log(&store, build.id, 1, "stdio"),
        [
            (Channel::Header, b"$ make\n".to_vec()),
            (Channel::Stdout, b"\xffraw bytes\n".to_vec())
        ]
    );
    let back: Vec<u8> = read_log(&store, build.id, 1, "big.log")
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect();
    assert!(back == big, "every byte of a large log, in order");
    assert_eq!(
        store.log_names(build.id, 1).expect("names"),
        ["big.log", "stdio"]
    );
    assert!(
        !store.log_file(build.id).exists(),
        "no log file: the bytes are in the database"
    );
    assert_eq!(queued_ids(&store), [r2]);
    let row = store.request(r1).expect("read").expect("r1");
    assert_eq!(row.properties, json!({"p": 1}));
    assert!(!row.complete);
    assert_eq!(store.builds(Some("b1"), 10).expect("builds").len(), 1);
    assert_eq!(store.builds(Some("other"), 10).expect("builds").len(), 0);
    assert_eq!(
        store.build(build.id).expect("build").expect("b").properties["x"],
        json!([1, "test"])
    );
    store
        .worker_connected("w1", "127.0.0.1:1", Some("4.3.0"), &json!({"os": "linux"}))
        .expect("worker");

    // A restart: the running build is closed as retry, its request queued again.
    drop(store);
    let store = Store::open_with(&dir, Some(&target)).expect("reopened");
    assert_eq!(store.recover().expect("recover"), 1);
    assert_eq!(queued_ids(&store), [r1, r2]);
    let steps = store.steps(build.id).expect("steps");
    assert_eq!(steps[0].result, Some(BuildResult::Retry));
    assert_eq!(
        store.workers().expect("workers")[0].state,
        WorkerState::Disconnected
    );
    let again = store.start_build(r1, "b1", "w1").expect("build").started();
    assert_eq!(again.number, 2);
    store
        .finish_build(again.id, &[], BuildResult::Success, None)
        .expect("finish");
    let row = store.request(r1).expect("read").expect("r1");
    assert!(row.complete);
    assert_eq!(row.result, Some(BuildResult::Success));
    assert_eq!(store.builds_of_request(r1).expect("builds").len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn changes_instances_and_reports_round_trip() {
    let cluster = Cluster::start();
    let (store, dir, _) = cluster.store();
    let change = NewChange {
        author: "a".into(),
        files: vec!["x/y".into()],
        branch: Some("main".into()),
        ..NewChange::default()
    };
    let hold = |_: &Change| ChangePlan {
        hold: vec!["s".into()],
        fires: vec![],
    };
    let (c1, _, _) = store
        .add_change(&change, "http", 100.0, hold)
        .expect("change");
    // Held twice by the same scheduler: kept once.
    let (c2, _, _) = store
        .add_change(&change, "pb", 101.0, hold)
        .expect("change");
    assert_eq!(store.held_changes().expect("held").len(), 2);
    let fire = Fire {
        scheduler: "s".into(),
        builders: vec!["b1".into(), "b2".into()],
        reason: "why".into(),
        properties: serde_json::Map::new(),
        changes: vec![c1.id, c2.id, c1.id],
        since: Some(102.0),
        fired_from: None,
        held: true,
    };
    let ids = store.record_fires(&[fire], 102.0).expect("fire").ids;
    assert_eq!(ids.len(), 2);
    assert!(store.held_changes().expect("held").is_empty());
    assert_eq!(
        store.changes_of_request(ids[0]).expect("changes"),
        [c1.id, c2.id]
    );
    assert_eq!(store.scheduler_since().expect("since")["s"], 102.0);
    assert_eq!(store.change(c2.id).expect("change"), Some(c2.clone()));
    assert_eq!(store.changes(1).expect("changes")[0].id, c2.id);

    let id = store
        .add_instance("p", "p-1", "tok", "pw")
        .expect("instance");
    let mut i = Instance::new(id, "p", "p-1", 10.0);
    i.advance(Phase::Launching, 11.0).expect("advance");
    store.record_phase(&i, None).expect("phase");
    assert_eq!(
        store.live_instances().expect("live")[0].password.as_deref(),
        Some("pw")
    );
    i.advance(Phase::Stopping, 12.0).expect("advance");
    i.advance(Phase::Stopped, 13.0).expect("advance");
    store.record_phase(&i, Some("idle")).expect("phase");
    let row = &store.instances(10).expect("instances")[0];
    assert_eq!((row.phase, row.password.clone()), (Phase::Stopped, None));
    assert_eq!(row.transitions.len(), 3, "requested, launching, stopped");
    assert_eq!(
        store.instance_pool("p-1").expect("pool").as_deref(),
        Some("p")
    );
    assert_eq!(store.instance_count().expect("count"), id);
    let master = store.master_id().expect("id");
    assert_eq!(store.master_id().expect("id"), master);

    let a = store
        .add_report("gh", 7, "started", &json!({"a": 1}), 100.0)
        .expect("report");
    let b = store
        .add_report("gh", 7, "finished", &json!({}), 101.0)
        .expect("report");
    let due: Vec<i64> = store
        .due_reports(200.0, 10)
        .expect("due")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, [a], "a build's reports go in order");
    assert!(store.report_waiting(a).expect("waiting"));
    store.retry_report(a, 300.0, "HTTP 500").expect("retry");
    assert_eq!(store.next_report_at().expect("next"), Some(101.0));
    store
        .settle_report(a, Settled::Delivered, None)
        .expect("settle");
    store
        .settle_report(b, Settled::GivenUp, Some("old"))
        .expect("settle");
    assert_eq!(store.report_counts().expect("counts"), (1, 1, 0));
    assert_eq!(store.next_report_at().expect("next"), None);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn expired_logs_leave_the_database_and_old_builds_go() {
    let cluster = Cluster::start();
    let (store, dir, target) = cluster.store();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = store
            .add_request("b1", "force", &json!({}))
            .expect("request");
        let b = store.start_build(r, "b1", "w1").expect("build").started();
        store.record_build(b.id, &[started(1)]).expect("step");
        let mut w = LogWriter::new(&store, b.id, 1);
        w.append("stdio", Channel::Stdout, &[b'x'; 5000])
            .expect("append");
        drop(w);
        store
            .finish_build(b.id, &[], BuildResult::Success, None)
            .expect("finish");
        ids.push(b.id);
    }
    // Nothing to compress on PostgreSQL: every build is marked at its end.
    assert!(store.builds_to_pack(0, 10).expect("to pack").is_empty());
    let later = crate::store::now() + 10.0;
    let swept = store.expire_logs(later, 2).expect("expire");
    assert_eq!((swept.logs, swept.bytes), (2, 10_000));
    let note = read_log(&store, ids[0], 1, "stdio");
    assert_eq!(note[0].1, crate::store::retention::EXPIRED_NOTE.as_bytes());
    assert!(store.steps(ids[0]).expect("steps")[0]
        .logs_expired_at
        .is_some());
    assert_eq!(read_log(&store, ids[2], 1, "stdio")[0].1, vec![b'x'; 5000]);
    let swept = store.delete_builds(later, 10).expect("delete");
    assert_eq!(swept.builds, 2, "all but the builder's newest");
    assert_eq!(
        cluster.count(&target, "SELECT COUNT(*) FROM log_chunks"),
        1,
        "only the newest build's log is left"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_wake_up_commits_together_and_a_failed_savepoint_leaves_the_rest() {
    let cluster = Cluster::start();
    let (store, dir, _) = cluster.store();
    let own = store.own_connection().expect("own connection");
    own.begin().expect("begin");
    let r = own.add_request("b1", "force", &json!({})).expect("request");
    let b = own.start_build(r, "b1", "w1").expect("build").started();
    own.record_build(b.id, &[started(1)]).expect("step");
    let e = own
        .record_build(b.id, &[started(2), started(1)])
        .expect_err("a step twice");
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert!(
        store.request(r).expect("read").is_none(),
        "not visible before the commit"
    );
    own.commit().expect("commit");
    let steps = store.steps(b.id).expect("steps");
    assert_eq!(steps.len(), 1, "the failed savepoint's step 2 is gone");
    assert!(store.request(r).expect("read").is_some());

    // The reader cannot write.
    let written = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(store.read(|st| st.add_request("b1", "x", &json!({}))));
    assert!(written.is_err(), "the read connection is read-only");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_values_are_corrupt_and_migrations_run_once() {
    let cluster = Cluster::start();
    let (store, dir, target) = cluster.store();
    store.worker_attaching("w1", "127.0.0.1:1").expect("worker");
    cluster.run(&target, "UPDATE workers SET state = 'connected'");
    let e = store.workers().expect_err("unknown state");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("\"connected\""), "{e}");
    drop(store);

    let again = Store::open_with(&dir, Some(&target)).expect("reopened");
    drop(again);
    assert_eq!(
        cluster.count(&target, "SELECT COUNT(*) FROM schema_migrations"),
        crate::store::schema::MIGRATIONS.len() as i64,
        "each migration recorded once"
    );
    cluster.run(
        &target,
        "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
    );
    let e = Store::open_with(&dir, Some(&target)).expect_err("newer schema");
    assert!(e.to_string().contains("version 999"), "{e}");

    // A server that is not there is unavailable, not a bug.
    let mut gone = target.clone();
    gone.url = "postgres://pbtest@127.0.0.1:1/none".into();
    let e = Store::open_with(&dir, Some(&gone)).expect_err("no server");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_connection_the_server_ended_is_replaced_outside_a_transaction() {
    let cluster = Cluster::start();
    let (store, dir, target) = cluster.store();
    store
        .add_request("b1", "force", &json!({}))
        .expect("request");
    cluster.run(
        &target,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let e = store.requests(10).expect_err("the session is gone");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(store.requests(10).expect("connected again").len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}
