//! Reconfiguring the coordinator: builders, workers, pools and schedulers added,
//! changed and removed while workers stay attached and builds run.

use super::*;
use crate::config::Config;
use crate::master::reconfig::Diff;
use std::sync::Arc;

/// The fixture's config with `edits`, on its data folder.
fn config_of(f: &Fixture, edits: &[(&str, &str)]) -> Config {
    let mut body = CONFIG.to_owned();
    for (from, to) in edits {
        assert!(body.contains(from), "{from:?} is in the config");
        body = body.replacen(from, to, 1);
    }
    let with_dir = body.replacen(
        "[master]",
        &format!("[master]\ndata_dir = {:?}", f.dir.display().to_string()),
        1,
    );
    config::parse(&with_dir).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Applies the config with `edits` over the fixture's own; the answer and the effects.
fn reconfigure(f: &mut Fixture, edits: &[(&str, &str)]) -> (Result<(), Vec<String>>, Vec<Effect>) {
    reconfigure_from(f, &[], edits)
}

/// Applies the config with `edits` over the one with `was` (what runs).
fn reconfigure_from(
    f: &mut Fixture,
    was: &[(&str, &str)],
    edits: &[(&str, &str)],
) -> (Result<(), Vec<String>>, Vec<Effect>) {
    let old = config_of(f, was);
    let new = config_of(f, edits);
    let diff = Diff::between(&old, &new);
    let (reply, mut answer) = oneshot::channel();
    let effects = f.handle(Msg::Reconfig {
        config: Arc::new(new),
        diff: Arc::new(diff),
        reply,
    });
    let mut rest = Vec::new();
    for e in effects {
        match e {
            Effect::Reply(r) => r.send(),
            other => rest.push(other),
        }
    }
    (answer.try_recv().expect("answered"), rest)
}

/// A builder list sent to a worker again: worker, (builder, directory)s, generation.
type Listed = (String, Vec<(String, String)>, u64);

/// The builder lists sent to workers again.
fn lists(effects: &[Effect]) -> Vec<Listed> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetBuilders {
                worker,
                builders,
                generation,
                ..
            } => Some((worker.clone(), builders.clone(), *generation)),
            _ => None,
        })
        .collect()
}

fn pair(name: &str) -> (String, String) {
    (name.to_owned(), name.to_owned())
}

/// `hello` removed and `other` added on w1.
const SWAP: (&str, &str) = ("name = \"hello\"", "name = \"other\"");

#[test]
fn a_removed_builder_keeps_its_running_build_and_cancels_its_queue() {
    let mut f = Fixture::new();
    f.start(vec![]);
    let (conn, _) = f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    let running = builds_started(&effects)[0].0;
    let (effects, mut queued) = f.force("hello");
    replies(effects);
    let queued = queued.try_recv().unwrap().unwrap();

    let (answer, effects) = reconfigure(&mut f, &[SWAP]);
    answer.expect("applied");
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Conn {
                op: ConnOp::Close(_),
                ..
            } | Effect::StopBuild { .. }
        )),
        "nothing is closed or stopped: {effects:?}"
    );
    // The worker keeps `hello` while its build runs, and gets `other`.
    assert_eq!(
        lists(&effects),
        [("w1".into(), vec![pair("hello"), pair("other")], 1)]
    );
    let cancelled = f.store.request(queued).unwrap().unwrap();
    assert!(cancelled.complete);
    let build = &f.store.builds_of_request(queued).unwrap()[0];
    assert_eq!(build.result, Some(BuildResult::Cancelled));
    assert!(
        build
            .reason
            .as_deref()
            .unwrap()
            .contains("\"hello\" was removed"),
        "{build:?}"
    );

    // The running build ends as it would have; then `hello` leaves the list.
    let build_id = f.store.builds_of_request(running).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Success),
    });
    assert_eq!(lists(&effects), [("w1".into(), vec![pair("other")], 2)]);
    let done = f.store.build(build_id).unwrap().unwrap();
    assert_eq!(done.result, Some(BuildResult::Success));

    // An answer to the first list is stale; the second's objects take builds.
    let stale = [("hello".to_owned(), 10), ("other".to_owned(), 11)].into();
    f.handle(Msg::BuildersListed {
        worker: "w1".into(),
        conn_id: conn.id,
        generation: 1,
        listed: Ok(stale),
    });
    let (effects, _) = f.force("other");
    assert!(
        builds_started(&effects).is_empty(),
        "no object for `other` yet"
    );
    let effects = f.handle(Msg::BuildersListed {
        worker: "w1".into(),
        conn_id: conn.id,
        generation: 2,
        listed: Ok([("other".to_owned(), 11)].into()),
    });
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
    let (effects, mut refused) = f.force("hello");
    replies(effects);
    assert!(matches!(refused.try_recv(), Ok(Err(Refusal::Invalid(_)))));
}

#[test]
fn a_retry_of_a_removed_builders_build_is_cancelled_not_queued() {
    let mut f = Fixture::new();
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    let request = builds_started(&effects)[0].0;
    reconfigure(&mut f, &[SWAP]).0.expect("applied");
    let build_id = f.store.builds_of_request(request).unwrap()[0].id;
    f.handle(Msg::BuildDone {
        build_id,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Retry),
    });
    let row = f.store.request(request).unwrap().unwrap();
    assert!(row.complete, "not left queued for a builder that is gone");
    assert_eq!(row.result, Some(BuildResult::Cancelled));
}

#[test]
fn a_removed_worker_is_disconnected_once_its_build_ends_and_may_not_log_in() {
    let mut f = Fixture::with(&[(
        "[[latent_pool]]",
        "[[worker]]\nname = \"w2\"\npassword = \"p2\"\n\n[[latent_pool]]",
    )]);
    f.start(vec![]);
    let (w1, _) = f.attach("w1", &["hello"]);
    let (w2, _) = f.attach("w2", &[]);
    let (effects, _) = f.force("hello");
    let request = builds_started(&effects)[0].0;
    // w1 and w2 swap places: w1 is removed while building, w2 (idle) stays.
    let edits = [
        ("[[worker]]\nname = \"w1\"\npassword = \"p1\"\n", ""),
        ("workers = [\"w1\"]", "workers = [\"w2\"]"),
        (
            "name = \"w2\"\npassword = \"p2\"",
            "name = \"w2\"\npassword = \"p2\"\nmax_builds = 2",
        ),
    ];
    // The fixture's own config has w2 too.
    let old_edits = [(
        "[[latent_pool]]",
        "[[worker]]\nname = \"w2\"\npassword = \"p2\"\n\n[[latent_pool]]",
    )];
    let old = config_of(&f, &old_edits);
    let mut text_edits = old_edits.to_vec();
    text_edits.extend(edits);
    let new = config_of(&f, &text_edits);
    let diff = Diff::between(&old, &new);
    assert_eq!(diff.workers.removed, ["w1"]);
    assert_eq!(diff.workers.changed, ["w2"]);
    let (reply, _answer) = oneshot::channel();
    let effects = f.handle(Msg::Reconfig {
        config: Arc::new(new),
        diff: Arc::new(diff),
        reply,
    });
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Conn {
                op: ConnOp::Close(_),
                ..
            }
        )),
        "w1 builds: it stays for now"
    );
    assert_eq!(lists(&effects), [("w2".into(), vec![pair("hello")], 1)]);
    // A second request waits for w2's objects, not for w1.
    let (effects, _) = f.force("hello");
    assert!(builds_started(&effects).is_empty());
    let effects = f.handle(Msg::BuildersListed {
        worker: "w2".into(),
        conn_id: w2.id,
        generation: 1,
        listed: Ok([("hello".to_owned(), 30)].into()),
    });
    assert_eq!(builds_started(&effects).len(), 1);
    assert_eq!(builds_started(&effects)[0].1, "w2");

    let build_id = f.store.builds_of_request(request).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Success),
    });
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Conn { conn, op: ConnOp::Close(_) } if conn.id == w1.id)),
        "{effects:?}"
    );
    let (again, _rx) = f.conn();
    let effects = f.handle(Msg::Conn(ConnEvent::LoggedIn {
        conn: again,
        name: "w1".into(),
        mind: Some(1),
    }));
    assert!(only_a_refusal(&effects), "{effects:?}");
}

#[test]
fn an_idle_removed_worker_is_disconnected_at_once() {
    let mut f = Fixture::new();
    f.start(vec![]);
    let (w1, _) = f.attach("w1", &["hello"]);
    let (answer, effects) = reconfigure(
        &mut f,
        &[
            ("name = \"w1\"", "name = \"w9\""),
            ("workers = [\"w1\"]", "workers = [\"w9\"]"),
        ],
    );
    answer.expect("applied");
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Conn { conn, op: ConnOp::Close(_) } if conn.id == w1.id)),
        "{effects:?}"
    );
}

#[test]
fn a_pool_with_instances_may_not_be_removed_and_nothing_changes() {
    let mut f = Fixture::new();
    let (_, name) = launch_one(&mut f);
    let without_pool = [
        ("[[latent_pool]]\nname = \"pool\"", "[[worker]]\nname = \"pool\""),
        ("driver = \"local\"\nvenv = \"/nonexistent\"\nmax_instances = 2\nboot_timeout = 30\nmissing_timeout = 40\nattach_timeout = 50\n", "password = \"x\"\n"),
        ("echo hello", "echo changed"),
    ];
    let (answer, effects) = reconfigure(&mut f, &without_pool);
    let errors = answer.expect_err("refused");
    assert!(
        errors[0].contains("latent pool \"pool\" has 1 instance(s)"),
        "{errors:?}"
    );
    assert!(effects.is_empty(), "{effects:?}");
    assert!(f.master.pools.contains_key("pool"));
    assert!(f.master.instance_named(&name).is_some());
    let hello = &f.master.builders["hello"];
    assert!(
        format!("{:?}", hello.steps).contains("echo hello"),
        "the old builders stay"
    );

    // A bigger pool is fine: the same driver, a new cap.
    let (answer, _) = reconfigure(&mut f, &[("max_instances = 2", "max_instances = 4")]);
    answer.expect("applied");
}

#[test]
fn a_new_pool_gets_its_sweep_and_a_removed_idle_one_loses_it() {
    let mut f = Fixture::new();
    f.start(vec![]);
    let extra = "[[latent_pool]]\nname = \"more\"\ndriver = \"local\"\nvenv = \"/nonexistent\"\nmax_instances = 1\n\n[[builder]]\nname = \"hello\"";
    let (answer, effects) = reconfigure(&mut f, &[("[[builder]]\nname = \"hello\"", extra)]);
    answer.expect("applied");
    let stop = effects
        .iter()
        .find_map(|e| match e {
            Effect::Sweep { pool, stop, .. } if pool == "more" => Some(stop.clone()),
            _ => None,
        })
        .expect("a sweep for the new pool");
    assert!(f.master.pools.contains_key("more"));
    // Back to the fixture's config: `more` goes, and its sweep ends.
    let old = config_of(&f, &[("[[builder]]\nname = \"hello\"", extra)]);
    let new = config_of(&f, &[]);
    let (reply, _answer) = oneshot::channel();
    f.handle(Msg::Reconfig {
        diff: Arc::new(Diff::between(&old, &new)),
        config: Arc::new(new),
        reply,
    });
    assert!(!f.master.pools.contains_key("more"));
    assert!(stop.is_cancelled());
}

#[test]
fn a_new_periodic_scheduler_is_armed_and_fires() {
    let mut f = Fixture::new();
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let scheduler = "[[scheduler]]\nname = \"often\"\nkind = \"periodic\"\ninterval = 60\nbuilders = [\"hello\"]\n\n[[worker]]";
    let (answer, effects) = reconfigure(&mut f, &[("[[worker]]", scheduler)]);
    answer.expect("applied");
    // As at start: a periodic scheduler's first run is at once.
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
    let at = effects
        .iter()
        .find_map(|e| match e {
            Effect::WakeAt(at) => *at,
            _ => None,
        })
        .expect("the scheduler's timer is armed");
    assert_eq!(at, T0 + 60.0);
    // The same config again changes nothing, and does not fire it again.
    let (answer, effects) = reconfigure_from(
        &mut f,
        &[("[[worker]]", scheduler)],
        &[("[[worker]]", scheduler)],
    );
    answer.expect("applied");
    assert!(effects.is_empty(), "{effects:?}");
}

#[test]
fn a_builder_moved_under_a_running_build_moves_on_the_worker_once_it_ends() {
    let mut f = Fixture::new();
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    let request = builds_started(&effects)[0].0;
    let moved = [(
        "workers = [\"w1\"]",
        "workers = [\"w1\"]\nbuilddir = \"moved\"",
    )];
    let (answer, effects) = reconfigure(&mut f, &moved);
    answer.expect("applied");
    assert!(
        lists(&effects).is_empty(),
        "not while it builds: {effects:?}"
    );
    let build_id = f.store.builds_of_request(request).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Success),
    });
    let moved = vec![("hello".to_owned(), "moved".to_owned())];
    assert_eq!(lists(&effects), [("w1".into(), moved, 1)]);
    // Until the worker answers, `hello` takes no build in either folder.
    let (effects, _) = f.force("hello");
    assert!(builds_started(&effects).is_empty(), "{effects:?}");
}
