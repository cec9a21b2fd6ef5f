//! Latent pools through the coordinator: planning, stops, terminations, identity
//! evidence in sweeps, lost builds, warm pools and recycling.

use super::*;

#[test]
fn a_one_builder_pool_with_several_builds_per_instance_starts_one_instance_per_request() {
    // A worker runs one build per builder: max_builds = 2 does not let one instance
    // take two requests of the same builder.
    let mut f = Fixture::with(&[("max_instances = 2", "max_instances = 5\nmax_builds = 2")]);
    f.start(vec![]);
    let mut started = Vec::new();
    for _ in 0..3 {
        let (effects, _) = f.force("cloudy");
        started.extend(launches(&effects));
    }
    assert_eq!(started.len(), 3, "{started:?}");
}

#[test]
fn the_sweep_ends_only_instances_it_has_evidence_are_its_own_and_unused() {
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    let pool = "pool".to_owned();
    latent(
        &mut f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id: "i-1".into(),
            placement: None,
            market: None,
        },
    );
    latent(
        &mut f,
        LatentMsg::Running {
            pool: pool.clone(),
            id,
        },
    );
    let (_, effects) = f.attach(&name, &["cloudy"]);
    assert_eq!(builds_started(&effects).len(), 1);
    let owned = |ids: &[(&str, &str)]| {
        ids.iter()
            .map(|(c, n)| OwnedInstance {
                cloud_id: (*c).into(),
                name: Some((*n).into()),
            })
            .collect::<Vec<_>>()
    };
    // A twin of the busy instance (its worker may be the twin's), and one this
    // database never launched (another master with the same id): both left.
    let cloud = [
        ("i-1", name.as_str()),
        ("i-twin", name.as_str()),
        ("i-other", "pool-99"),
    ];
    let effects = latent(
        &mut f,
        LatentMsg::Swept {
            pool: pool.clone(),
            owned: owned(&cloud),
        },
    );
    assert!(terminated(&effects).is_empty(), "{effects:?}");
    // Once the instance has ended, its twin goes; the stranger stays.
    f.handle(Msg::Drain {
        grace: Duration::ZERO,
    });
    let (reply, _stopped) = oneshot::channel();
    f.handle(Msg::StopInstances { reply });
    latent(
        &mut f,
        LatentMsg::Terminated {
            pool: pool.clone(),
            id,
        },
    );
    let effects = latent(
        &mut f,
        LatentMsg::Swept {
            pool,
            owned: owned(&cloud[1..]),
        },
    );
    assert_eq!(terminated(&effects), ["i-twin"]);
}

#[test]
fn an_instance_whose_termination_fails_stays_counted_and_is_tried_again() {
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    let pool = "pool".to_owned();
    latent(
        &mut f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id: "i-1".into(),
            placement: None,
            market: None,
        },
    );
    // Its boot times out: failed, and its termination fails.
    let since = f.now;
    let effects = latent(
        &mut f,
        LatentMsg::Deadline {
            pool: pool.clone(),
            id,
            phase: Phase::Booting,
            since,
            limit: 30,
        },
    );
    assert_eq!(terminated(&effects), ["i-1"]);
    assert_eq!(launches(&effects).len(), 1, "a replacement for the request");
    let effects = latent(
        &mut f,
        LatentMsg::TerminateFailed {
            pool: pool.clone(),
            id,
            why: "RequestLimitExceeded".into(),
        },
    );
    let retry = timers(&effects);
    assert!(
        matches!(retry[..], [(d, LatentMsg::RetryTerminate { .. })] if d == Duration::from_secs(5)),
        "{effects:?}"
    );
    // Still there: with the replacement the pool is at its cap of 2.
    let (effects, _) = f.force("cloudy");
    assert!(launches(&effects).is_empty(), "{effects:?}");
    let effects = latent(
        &mut f,
        LatentMsg::RetryTerminate {
            pool: pool.clone(),
            id,
        },
    );
    assert_eq!(terminated(&effects), ["i-1"]);
    let effects = latent(
        &mut f,
        LatentMsg::Terminated {
            pool: pool.clone(),
            id,
        },
    );
    assert_eq!(launches(&effects).len(), 1, "room again once it is gone");
    assert_eq!(f.instance_phase(&name), Some(Phase::Failed));

    // A stop whose termination fails is not recorded stopped until it succeeds.
    f.handle(Msg::Drain {
        grace: Duration::ZERO,
    });
    let (reply, mut stopped) = oneshot::channel();
    replies(f.handle(Msg::StopInstances { reply }));
    let ending: Vec<i64> = f.master.pools["pool"].instances.keys().copied().collect();
    assert_eq!(ending.len(), 2);
    for (n, id) in ending.iter().enumerate() {
        let effects = latent(
            &mut f,
            LatentMsg::Launched {
                pool: pool.clone(),
                id: *id,
                cloud_id: format!("i-{}", n + 2),
                placement: None,
                market: None,
            },
        );
        assert_eq!(terminated(&effects).len(), 1, "{effects:?}");
    }
    let first = ending[0];
    let first_name = format!("pool-{first}");
    replies(latent(
        &mut f,
        LatentMsg::TerminateFailed {
            pool: pool.clone(),
            id: first,
            why: "InternalError".into(),
        },
    ));
    assert_eq!(f.instance_phase(&first_name), Some(Phase::Stopping));
    replies(latent(
        &mut f,
        LatentMsg::Terminated {
            pool: pool.clone(),
            id: ending[1],
        },
    ));
    assert!(stopped.try_recv().is_err(), "one is still there");
    replies(latent(
        &mut f,
        LatentMsg::RetryTerminate {
            pool: pool.clone(),
            id: first,
        },
    ));
    replies(latent(&mut f, LatentMsg::Terminated { pool, id: first }));
    assert_eq!(f.instance_phase(&first_name), Some(Phase::Stopped));
    assert!(stopped.try_recv().is_ok());
}

#[test]
fn an_instance_stopped_while_launching_is_ended_once_its_launch_answers() {
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    let pool = "pool".to_owned();
    f.handle(Msg::Drain {
        grace: Duration::ZERO,
    });
    let (reply, mut stopped) = oneshot::channel();
    let effects = f.handle(Msg::StopInstances { reply });
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Terminate { .. } | Effect::Reply(_))),
        "nothing to end yet, and not forgotten: {effects:?}"
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopping));
    let effects = latent(
        &mut f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id: "i-late".into(),
            placement: None,
            market: None,
        },
    );
    assert_eq!(terminated(&effects), ["i-late"]);
    replies(effects);
    assert!(stopped.try_recv().is_err());
    replies(latent(&mut f, LatentMsg::Terminated { pool, id }));
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopped));
    assert!(stopped.try_recv().is_ok());
    let row = f.store.instances(1).unwrap().remove(0);
    assert_eq!(row.cloud_id.as_deref(), Some("i-late"), "recorded");

    // A launch that fails after the stop: stopped, not a failure of the pool.
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    f.handle(Msg::Drain {
        grace: Duration::ZERO,
    });
    let (reply, mut stopped) = oneshot::channel();
    f.handle(Msg::StopInstances { reply });
    replies(latent(
        &mut f,
        LatentMsg::LaunchFailed {
            pool: "pool".into(),
            id,
            why: "launch failed: InternalError".into(),
            permanent: false,
            code: Some("InternalError".into()),
        },
    ));
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopped));
    assert!(stopped.try_recv().is_ok());
}

/// Takes the launched instance `id` through booting to attached (`cloudy`).
pub(super) fn bring_up(f: &mut Fixture, id: i64, name: &str, cloud_id: &str) -> Vec<Effect> {
    let pool = "pool".to_owned();
    latent(
        f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id: cloud_id.into(),
            placement: None,
            market: None,
        },
    );
    latent(f, LatentMsg::Running { pool, id });
    f.attach(name, &["cloudy"]).1
}

#[test]
fn a_build_the_store_cannot_record_leaves_its_instance_free() {
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    f.store.execute_for_test(
        "CREATE TRIGGER no_builds BEFORE INSERT ON builds BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END;",
    );
    let effects = bring_up(&mut f, id, &name, "i-1");
    assert!(builds_started(&effects).is_empty());
    assert_eq!(f.instance_phase(&name), Some(Phase::Ready), "not building");
    assert_eq!(f.master.pools["pool"].instances[&id].builds, 0);
    // The store works again: the next dispatch starts the build on it.
    f.store.execute_for_test("DROP TRIGGER no_builds;");
    let (effects, _) = f.force("cloudy");
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
    assert_eq!(f.instance_phase(&name), Some(Phase::Building));
}

#[test]
fn a_build_that_keeps_losing_its_instance_ends_after_lost_build_retries() {
    let mut f = Fixture::with(&[(
        "attach_timeout = 50",
        "attach_timeout = 50\nlost_build_retries = 1",
    )]);
    let (mut id, mut name) = launch_one(&mut f);
    let mut request = 0;
    for round in 0..2 {
        let effects = bring_up(&mut f, id, &name, &format!("i-{round}"));
        let started = builds_started(&effects);
        assert_eq!(started.len(), 1, "{effects:?}");
        request = started[0].0;
        let build = f
            .store
            .builds_of_request(request)
            .unwrap()
            .last()
            .unwrap()
            .id;
        // The instance dies under the build.
        let conn_id = f.master.workers[&name].attached.as_ref().unwrap().conn.id;
        f.handle(Msg::Conn(ConnEvent::Closed {
            conn_id,
            reason: "connection lost".into(),
        }));
        let effects = f.handle(Msg::BuildDone {
            build_id: build,
            worker: name.clone(),
            builder: "cloudy".into(),
            outcome: BuildOutcome {
                result: BuildResult::Retry,
                reason: Some("worker lost".into()),
                writes: Vec::new(),
            },
        });
        let replacement = launches(&effects);
        if round == 0 {
            assert_eq!(replacement.len(), 1, "retried on a new instance");
            (id, name) = replacement[0].clone();
        } else {
            assert!(replacement.is_empty(), "not again: {effects:?}");
        }
    }
    let row = f.store.request(request).unwrap().unwrap();
    assert!(row.complete);
    assert_eq!(row.result, Some(BuildResult::Exception));
    let last = f.store.builds_of_request(request).unwrap().pop().unwrap();
    let reason = last.reason.unwrap_or_default();
    assert!(
        reason.contains("lost its latent instance 2 times") && reason.contains("worker lost"),
        "{reason}"
    );
}

pub(super) fn build_done(f: &mut Fixture, request: i64, worker: &str) -> Vec<Effect> {
    let build = f
        .store
        .builds_of_request(request)
        .unwrap()
        .last()
        .unwrap()
        .id;
    f.handle(Msg::BuildDone {
        build_id: build,
        worker: worker.into(),
        builder: "cloudy".into(),
        outcome: outcome(BuildResult::Success),
    })
}

/// The idle checks among `effects`, to deliver.
fn idle_checks(effects: &[Effect]) -> Vec<LatentMsg> {
    timers(effects)
        .into_iter()
        .filter_map(|(_, m)| match m {
            LatentMsg::IdleCheck { pool, id, since } => Some(LatentMsg::IdleCheck {
                pool: pool.clone(),
                id: *id,
                since: *since,
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn a_warm_pool_starts_its_minimum_unasked_and_the_idle_timer_keeps_it() {
    let mut f = Fixture::with(&[(
        "max_instances = 2",
        "max_instances = 2\nmin_instances = 1\nbuild_wait_timeout = 0",
    )]);
    let started = launches(&f.start(vec![]));
    assert_eq!(started.len(), 1, "no request needed");
    let (id, name) = started[0].clone();
    let effects = bring_up(&mut f, id, &name, "i-1");
    let checks = idle_checks(&effects);
    assert_eq!(checks.len(), 1, "{effects:?}");
    for check in checks {
        let effects = latent(&mut f, check);
        assert!(terminated(&effects).is_empty(), "{effects:?}");
    }
    assert_eq!(f.instance_phase(&name), Some(Phase::Ready));
    let (effects, _) = f.force("cloudy");
    let started = builds_started(&effects);
    assert_eq!(
        started,
        [(started[0].0, name.clone())],
        "the warm one builds"
    );
    let effects = build_done(&mut f, started[0].0, &name);
    assert!(terminated(&effects).is_empty(), "{effects:?}");
    assert_eq!(f.instance_phase(&name), Some(Phase::Idle));

    // Above the minimum, idle instances stop as usual.
    let (effects, _) = f.force("cloudy");
    let (a, _) = f.force("cloudy");
    let first = builds_started(&effects)[0].0;
    let (id2, name2) = launches(&a)[0].clone();
    let effects = bring_up(&mut f, id2, &name2, "i-2");
    let second = builds_started(&effects)[0].0;
    let effects = build_done(&mut f, first, &name);
    assert_eq!(terminated(&effects), ["i-1"], "the first idle one stops");
    let effects = build_done(&mut f, second, &name2);
    assert!(terminated(&effects).is_empty(), "the last one is kept");
    assert_eq!(f.instance_phase(&name2), Some(Phase::Idle));
}

#[test]
fn an_instance_is_recycled_after_max_uses_and_replaced_for_the_minimum() {
    let mut f = Fixture::with(&[(
        "max_instances = 2",
        "max_instances = 2\nmin_instances = 1\nmax_uses = 2",
    )]);
    let (id, name) = launches(&f.start(vec![]))[0].clone();
    bring_up(&mut f, id, &name, "i-1");
    let (effects, _) = f.force("cloudy");
    let request = builds_started(&effects)[0].0;
    build_done(&mut f, request, &name);
    let (effects, _) = f.force("cloudy");
    let request = builds_started(&effects)[0].0;
    // Its second build is its last: it drains, and a replacement starts meanwhile.
    assert_eq!(f.instance_phase(&name), Some(Phase::Draining));
    let replacement = launches(&effects);
    assert_eq!(replacement.len(), 1, "{effects:?}");
    let (effects, _) = f.force("cloudy");
    assert!(
        builds_started(&effects).is_empty(),
        "a draining one takes none"
    );
    let effects = build_done(&mut f, request, &name);
    assert_eq!(terminated(&effects), ["i-1"]);
    let row = f
        .store
        .instances(10)
        .unwrap()
        .into_iter()
        .find(|i| i.name == name)
        .unwrap();
    let details: Vec<String> = row.transitions.iter().filter_map(|t| t.2.clone()).collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("recycled after 2 builds (max_uses = 2)")),
        "{details:?}"
    );
    // The replacement takes what waits.
    let (id2, name2) = replacement[0].clone();
    let effects = bring_up(&mut f, id2, &name2, "i-2");
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
}

#[test]
fn an_instance_past_max_age_finishes_its_build_then_is_replaced() {
    let mut f = Fixture::with(&[(
        "max_instances = 2",
        "max_instances = 2\nmin_instances = 1\nmax_age = 100",
    )]);
    let effects = f.start(vec![]);
    let (id, name) = launches(&effects)[0].clone();
    let retire = timers(&effects)
        .into_iter()
        .find_map(|(after, m)| matches!(m, LatentMsg::Retire { .. }).then_some(after));
    assert_eq!(retire, Some(Duration::from_secs(100)));
    bring_up(&mut f, id, &name, "i-1");
    let (effects, _) = f.force("cloudy");
    let request = builds_started(&effects)[0].0;
    f.now += 100.0;
    let effects = latent(
        &mut f,
        LatentMsg::Retire {
            pool: "pool".into(),
            id,
        },
    );
    assert_eq!(
        f.instance_phase(&name),
        Some(Phase::Draining),
        "not while building"
    );
    assert!(terminated(&effects).is_empty());
    assert_eq!(launches(&effects).len(), 1, "a replacement for the minimum");
    let effects = build_done(&mut f, request, &name);
    assert_eq!(terminated(&effects), ["i-1"]);
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopping));
}
