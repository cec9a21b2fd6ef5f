//! Two coordinators sharing one database, as two masters of an installation do:
//! requests queued at one run on the other, a request is started once, a worker is
//! attached to one master at a time, and a stop reaches the master running the build.

use super::*;
use crate::master::cluster::ClusterMsg;

/// A second worker for the builder, so each master can have one attached.
const TWO_WORKERS: (&str, &str) = (
    "[[builder]]\nname = \"hello\"\nworkers = [\"w1\"]",
    "[[worker]]\nname = \"w2\"\npassword = \"p2\"\n\n[[builder]]\nname = \"hello\"\nworkers = [\"w1\", \"w2\"]",
);

/// Masters `m1` and `m2` on one database, both joined with a live lease.
fn two_masters() -> (Fixture, Fixture) {
    let dir = std::env::temp_dir().join(format!(
        "pbmaster-two-masters-{}-{}",
        std::process::id(),
        crate::store::now()
    ));
    let mut m1 = Fixture::on_as(dir.clone(), &[TWO_WORKERS], Some("m1"));
    let mut m2 = Fixture::on_as(dir, &[TWO_WORKERS], Some("m2"));
    m1.start(vec![]);
    m2.start(vec![]);
    (m1, m2)
}

fn reload() -> Msg {
    Msg::Cluster(ClusterMsg::Requests)
}

#[test]
fn a_request_queued_at_one_master_runs_where_a_worker_is_free() {
    let (mut m1, mut m2) = two_masters();
    m2.attach("w2", &["hello"]);
    let (effects, answer) = m1.force("hello");
    assert!(builds_started(&effects).is_empty(), "no worker at m1");
    replies(effects);
    let request = answer.blocking_recv().unwrap().expect("queued");
    // m1's notice names the request; m2 reads that one.
    let notice = Msg::Cluster(ClusterMsg::Queued(vec![request]));
    assert_eq!(
        builds_started(&m2.handle(notice)),
        [(request, "w2".to_owned())]
    );
    let build = &m1.store.builds_of_request(request).unwrap()[0];
    assert_eq!(
        m1.store.build_master(build.id).unwrap().as_deref(),
        Some("m2")
    );
    // Once w1 attaches at m1, nothing starts there: the request is m2's build.
    let (_, effects) = m1.attach("w1", &["hello"]);
    assert!(builds_started(&effects).is_empty(), "{effects:?}");
}

#[test]
fn a_request_both_masters_have_queued_is_started_once() {
    let (mut m1, mut m2) = two_masters();
    let (effects, answer) = m1.force("hello");
    replies(effects);
    let request = answer.blocking_recv().unwrap().expect("queued");
    m2.handle(reload());
    // Both queues hold it; m1's worker takes it first.
    let (_, effects) = m1.attach("w1", &["hello"]);
    assert_eq!(builds_started(&effects), [(request, "w1".to_owned())]);
    let (_, effects) = m2.attach("w2", &["hello"]);
    assert!(
        builds_started(&effects).is_empty(),
        "claimed by m1: {effects:?}"
    );
    assert_eq!(m2.store.builds_of_request(request).unwrap().len(), 1);
}

#[test]
fn a_worker_attached_to_a_live_master_cannot_log_in_to_another() {
    let (mut m1, mut m2) = two_masters();
    m1.attach("w1", &["hello"]);
    let (conn, _rx) = m2.conn();
    let effects = m2.handle(Msg::Conn(ConnEvent::LoggedIn {
        conn,
        name: "w1".into(),
        mind: Some(1),
    }));
    assert!(only_a_refusal(&effects), "{effects:?}");
    // Once m1's lease has run out, the worker may attach to m2.
    assert!(m1.store.renew_lease("m1", "1", -1.0).unwrap());
    let (_, effects) = m2.attach("w1", &["hello"]);
    assert!(!only_a_refusal(&effects));
}

#[test]
fn a_stop_for_a_build_on_another_master_is_passed_on() {
    let (mut m1, mut m2) = two_masters();
    m1.attach("w1", &["hello"]);
    let (effects, _) = m1.force("hello");
    let request = builds_started(&effects)[0].0;
    let build = m1.store.builds_of_request(request).unwrap()[0].id;
    let (reply, answer) = oneshot::channel();
    let effects = m2.handle(Msg::Stop {
        build_id: build,
        why: "stopped by a user".into(),
        reply,
    });
    replies(effects);
    assert_eq!(answer.blocking_recv(), Ok(true), "it runs, elsewhere");
    // The notice reaches m1, which stops it.
    let effects = m1.handle(Msg::Cluster(ClusterMsg::Stop {
        build_id: build,
        why: "stopped by a user".into(),
    }));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::StopBuild { why, .. } if why == "stopped by a user")),
        "{effects:?}"
    );
}

#[test]
fn only_the_master_that_queued_a_request_starts_an_instance_for_it() {
    let (mut m1, mut m2) = two_masters();
    let (effects, _) = m1.force("cloudy");
    assert_eq!(launches(&effects).len(), 1, "m1 starts one: {effects:?}");
    let effects = m2.handle(reload());
    assert!(
        launches(&effects).is_empty(),
        "m2 leaves it to m1: {effects:?}"
    );
}

#[test]
fn the_instances_of_a_master_taken_over_are_ended_by_their_launch_token() {
    let (mut m1, mut m2) = two_masters();
    let (effects, _) = m1.force("cloudy");
    assert_eq!(launches(&effects).len(), 1);
    assert!(m1.store.renew_lease("m1", "1", -1.0).unwrap());
    let taken = m2.store.take_over("m1", "m2").unwrap().expect("taken over");
    let token = taken.instances[0].client_token.clone();
    let effects = m2.handle(Msg::Cluster(ClusterMsg::TookOver {
        from: "m1".into(),
        instances: taken.instances,
    }));
    let ended = effects.iter().find_map(|e| match e {
        Effect::EndLaunch { client_token, .. } => Some(client_token.clone()),
        _ => None,
    });
    assert_eq!(ended, Some(token), "{effects:?}");
    assert_eq!(m2.instance_phase("pool-1"), Some(Phase::Stopping));
    // The request m1 queued is m2's now: m2 starts an instance for it.
    let effects = m2.handle(reload());
    assert_eq!(launches(&effects).len(), 1, "{effects:?}");
}

/// A tree-stable scheduler for `hello`, on both masters.
const STABLE: (&str, &str) = (
    "[[builder]]\nname = \"cloudy\"",
    "[[scheduler]]\nname = \"stable\"\nkind = \"changes\"\nbuilders = [\"hello\"]\ntree_stable_timer = 60\n\n[[builder]]\nname = \"cloudy\"",
);

#[test]
fn the_changes_a_master_taken_over_held_fire_at_the_taker() {
    let dir = std::env::temp_dir().join(format!(
        "pbmaster-held-{}-{}",
        std::process::id(),
        crate::store::now()
    ));
    let mut m1 = Fixture::on_as(dir.clone(), &[TWO_WORKERS, STABLE], Some("m1"));
    let mut m2 = Fixture::on_as(dir, &[TWO_WORKERS, STABLE], Some("m2"));
    m1.start(vec![]);
    m2.start(vec![]);
    let (reply, answer) = oneshot::channel();
    let effects = m1.handle(Msg::NewChange {
        change: Box::new(crate::changes::NewChange::default()),
        source: crate::changes::Source::Http,
        reply,
    });
    replies(effects);
    answer.blocking_recv().unwrap().expect("stored");
    assert_eq!(m1.store.held_changes().unwrap().len(), 1, "held by m1");
    // m1 dies holding it; m2 takes over and holds it too.
    assert!(m1.store.renew_lease("m1", "1", -1.0).unwrap());
    let taken = m2.store.take_over("m1", "m2").unwrap().expect("taken over");
    m2.handle(Msg::Cluster(ClusterMsg::TookOver {
        from: "m1".into(),
        instances: taken.instances,
    }));
    m2.attach("w2", &["hello"]);
    m2.now += 61.0;
    let effects = m2.handle(Msg::SchedulerWake);
    assert_eq!(
        builds_started(&effects).len(),
        1,
        "fired at m2: {effects:?}"
    );
    assert!(m2.store.held_changes().unwrap().is_empty());
}
