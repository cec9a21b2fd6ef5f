//! A cloud pool in the coordinator (its driver is never called here): idle
//! instances stopped, kept and started again with new credentials, and instances the
//! cloud ends under a build.

use super::latent_pools::{bring_up, build_done};
use super::*;

/// The fixture's pool as an ec2 pool that keeps one stopped instance.
fn cloud_pool(extra: &str) -> Fixture {
    Fixture::with(&[
        (
            "driver = \"local\"\nvenv = \"/nonexistent\"",
            &format!("driver = \"ec2\"\nmaster_address = \"127.0.0.1:1\"\n{extra}"),
        ),
        (
            "attach_timeout = 50\n",
            "attach_timeout = 50\n[latent_pool.ec2]\nregion = \"us-east-1\"\nami = \"ami-1\"\ninstance_type = \"t3.micro\"\n",
        ),
    ])
}

fn resumed(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Watch(w) => match &w.start {
                WatchStart::Resume {
                    cloud_id,
                    user_data,
                } => Some((cloud_id.clone(), user_data.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn an_idle_instance_is_parked_and_started_again_with_a_new_password() {
    let mut f = cloud_pool("idle_action = \"stop\"\nbuild_wait_timeout = 0");
    let (id, name) = launch_one(&mut f);
    let first_password = f.store.live_instances().unwrap()[0].password.clone();
    let effects = bring_up(&mut f, id, &name, "i-1");
    let request = builds_started(&effects)[0].0;
    let effects = build_done(&mut f, request, &name);
    assert_eq!(f.instance_phase(&name), Some(Phase::Parking));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Park { cloud_id, .. } if cloud_id == "i-1")),
        "{effects:?}"
    );
    assert!(terminated(&effects).is_empty(), "kept, not terminated");
    let pool = "pool".to_owned();
    latent(
        &mut f,
        LatentMsg::Parked {
            pool: pool.clone(),
            id,
        },
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Parked));

    // The next request starts it again instead of a new one.
    let (effects, _) = f.force("cloudy");
    assert!(launches(&effects).is_empty(), "{effects:?}");
    let again = resumed(&effects);
    assert_eq!(again.len(), 1, "{effects:?}");
    assert_eq!(again[0].0, "i-1");
    let second_password = f.store.live_instances().unwrap()[0].password.clone();
    assert_ne!(first_password, second_password, "a fresh one-time password");
    let second = second_password.expect("recorded");
    assert!(again[0].1.contains(&second), "in its user data");
    assert_eq!(f.instance_phase(&name), Some(Phase::Launching));
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
    latent(&mut f, LatentMsg::Running { pool, id });
    let (_, effects) = f.attach(&name, &["cloudy"]);
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
}

#[test]
fn parked_instances_do_not_count_under_the_cap_but_are_bounded_by_max_stopped() {
    let mut f = cloud_pool("idle_action = \"stop\"\nmax_stopped = 1\nbuild_wait_timeout = 0");
    let pool = "pool".to_owned();
    // Two instances build at once, then both idle: one is kept, one terminated.
    let (id1, name1) = launch_one(&mut f);
    let (effects, _) = f.force("cloudy");
    let (id2, name2) = launches(&effects)[0].clone();
    let r1 = builds_started(&bring_up(&mut f, id1, &name1, "i-1"))[0].0;
    let r2 = builds_started(&bring_up(&mut f, id2, &name2, "i-2"))[0].0;
    build_done(&mut f, r1, &name1);
    latent(
        &mut f,
        LatentMsg::Parked {
            pool: pool.clone(),
            id: id1,
        },
    );
    let effects = build_done(&mut f, r2, &name2);
    assert_eq!(terminated(&effects), ["i-2"], "max_stopped = 1");
    assert_eq!(f.instance_phase(&name1), Some(Phase::Parked));
    // With one parked, two requests: one resumes it, and one new launch fits the cap
    // of two (the parked one was not counted).
    let (a, _) = f.force("cloudy");
    let (b, _) = f.force("cloudy");
    let all: Vec<Effect> = a.into_iter().chain(b).collect();
    assert_eq!(resumed(&all).len(), 1, "{all:?}");
    assert_eq!(
        launches(&all).len(),
        0,
        "i-2 still stopping holds the cap: {all:?}"
    );
    latent(&mut f, LatentMsg::Terminated { pool, id: id2 });
}

#[test]
fn an_instance_the_cloud_ends_under_a_build_retries_it_without_counting_a_loss() {
    let mut f = cloud_pool("lost_build_retries = 0");
    let (id, name) = launch_one(&mut f);
    let effects = bring_up(&mut f, id, &name, "i-1");
    let request = builds_started(&effects)[0].0;
    let why = "terminated Server.SpotInstanceTermination: Spot instance termination";
    let effects = latent(
        &mut f,
        LatentMsg::Gone {
            pool: "pool".into(),
            id,
            why: why.into(),
        },
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopping));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Conn {
            op: ConnOp::Close(_),
            ..
        }
    )));
    let (effects, reason) = lose_first_build(&mut f, request, &name);
    assert!(
        reason.starts_with("interrupted by the cloud: instance pool-1 (i-1)")
            && reason.contains("Server.SpotInstanceTermination"),
        "{reason}"
    );
    // lost_build_retries = 0 would end a lost build's request: this one runs again.
    assert_eq!(launches(&effects).len(), 1, "{effects:?}");
    assert!(!f.store.request(request).unwrap().unwrap().complete);
}

/// The first build of `request`, on instance `name`, ends as a lost worker's does;
/// returns the effects and the reason recorded (a `retry`, asserted).
fn lose_first_build(f: &mut Fixture, request: i64, name: &str) -> (Vec<Effect>, String) {
    let build = f.store.builds_of_request(request).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id: build,
        worker: name.to_owned(),
        builder: "cloudy".into(),
        outcome: BuildOutcome {
            result: BuildResult::Retry,
            reason: Some("worker lost".into()),
            writes: Vec::new(),
        },
    });
    let row = f.store.builds_of_request(request).unwrap()[0].clone();
    assert_eq!(row.result, Some(BuildResult::Retry));
    (effects, row.reason.unwrap_or_default())
}

/// The market the launches among `effects` ask for: whether each is forced on demand.
fn on_demand(effects: &[Effect]) -> Vec<bool> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Watch(w) => match &w.start {
                WatchStart::Launch(spec) => Some(spec.on_demand),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn an_interruption_notice_stops_the_instance_and_its_build_runs_again_on_demand() {
    for (setting, want) in [("", true), ("on_interruption = \"spot\"", false)] {
        let mut f = Fixture::with(&[
            (
                "driver = \"local\"\nvenv = \"/nonexistent\"",
                &format!("driver = \"ec2\"\nmaster_address = \"127.0.0.1:1\"\n{setting}"),
            ),
            (
                "attach_timeout = 50\n",
                "attach_timeout = 50\n[latent_pool.ec2]\nregion = \"us-east-1\"\nami = \"ami-1\"\ninstance_type = \"t3.micro\"\nmarket = \"spot\"\n",
            ),
        ]);
        let (id, name) = launch_one(&mut f);
        let effects = bring_up(&mut f, id, &name, "i-1");
        let request = builds_started(&effects)[0].0;
        // The notice: the instance still runs, but takes nothing more and is stopped.
        let effects = latent(
            &mut f,
            LatentMsg::Ending {
                pool: "pool".into(),
                id,
                why: "marked-for-termination: Your Spot Instance is marked".into(),
            },
        );
        assert_eq!(f.instance_phase(&name), Some(Phase::Stopping));
        assert_eq!(terminated(&effects), vec!["i-1".to_owned()], "{effects:?}");
        let (effects, reason) = lose_first_build(&mut f, request, &name);
        assert!(
            reason.contains("has an interruption notice: marked-for-termination"),
            "{reason}"
        );
        let all = f.store.instances(10).unwrap();
        let stopping = all.iter().find(|i| i.name == name).expect("the instance");
        assert!(
            stopping
                .stop_reason
                .as_deref()
                .is_some_and(|r| r.contains("marked-for-termination")),
            "{stopping:?}"
        );
        // The replacement for the retried request: on demand unless told otherwise.
        assert_eq!(on_demand(&effects), vec![want], "{setting}: {effects:?}");
    }
}
