//! The coordinator as a state machine: messages in, effects and store rows out. No
//! runtime, no sockets, no tasks: each test feeds [`Master::handle`] and looks at
//! what it asks for.

use super::admission::Outcome;
use super::effect::{ConnOp, Effect, WatchStart};
use super::latent::LatentMsg;
use super::{Master, Msg, Refusal};
use crate::config;
use crate::conn::{ConnEvent, ConnHandle};
use crate::latent::driver::OwnedInstance;
use crate::model::{BuildResult, Phase};
use crate::runner::BuildOutcome;
use crate::store::Store;
use crate::worker::Attached;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const CONFIG: &str = r#"
[master]
pb_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[worker]]
name = "w1"
password = "p1"

[[latent_pool]]
name = "pool"
driver = "local"
venv = "/nonexistent"
max_instances = 2
boot_timeout = 30
missing_timeout = 40
attach_timeout = 50

[[builder]]
name = "hello"
workers = ["w1"]

[[builder.step]]
command = "echo hello"

[[builder]]
name = "cloudy"
workers = ["pool"]

[[builder.step]]
command = "echo from the cloud"
"#;

/// A coordinator on a fresh store, at time `T0`.
struct Fixture {
    master: Master,
    store: Store,
    dir: PathBuf,
    now: f64,
    next_conn: u64,
}

const T0: f64 = 1_000_000.0;

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(&[])
    }

    /// [`Fixture::new`] with each `(from, to)` replaced in the config.
    fn with(edits: &[(&str, &str)]) -> Fixture {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-coordinator-{}-{}-{}",
            std::process::id(),
            crate::store::now(),
            SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        Fixture::on_with(dir, edits)
    }

    /// A coordinator on the store in `dir`, as after a restart.
    fn on(dir: PathBuf) -> Fixture {
        Fixture::on_with(dir, &[])
    }

    fn on_with(dir: PathBuf, edits: &[(&str, &str)]) -> Fixture {
        let mut body = CONFIG.to_owned();
        for (from, to) in edits {
            assert!(body.contains(from), "{from:?} is in the config");
            body = body.replacen(from, to, 1);
        }
        let with_dir = body.replacen(
            "[master]",
            &format!("[master]\ndata_dir = {:?}", dir.display().to_string()),
            1,
        );
        let config = config::parse(&with_dir).expect("config");
        let store = Store::open(&dir).expect("store");
        store.recover().expect("recover");
        let master = Master::new(&config, &store, "m-test").expect("master");
        Fixture {
            master,
            store,
            dir,
            now: T0,
            next_conn: 1,
        }
    }

    fn start(&mut self, clouds: Vec<(String, Option<Vec<OwnedInstance>>)>) -> Vec<Effect> {
        self.master.start(clouds, self.now)
    }

    fn handle(&mut self, msg: Msg) -> Vec<Effect> {
        self.master.handle(msg, self.now)
    }

    fn force(&mut self, builder: &str) -> (Vec<Effect>, oneshot::Receiver<Result<i64, Refusal>>) {
        let (reply, answer) = oneshot::channel();
        let effects = self.handle(Msg::Force {
            builder: builder.into(),
            reason: "test".into(),
            properties: serde_json::json!({}),
            reply,
        });
        (effects, answer)
    }

    /// A connection whose login as `name` checked out.
    fn conn(&mut self) -> (ConnHandle, mpsc::Receiver<crate::conn::Request>) {
        let id = self.next_conn;
        self.next_conn += 1;
        let (tx, rx) = mpsc::channel(8);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + id as u16));
        (ConnHandle { id, peer, tx }, rx)
    }

    /// Logs `name` in and completes its attach; the effects of the attach.
    fn attach(&mut self, name: &str, builders: &[&str]) -> (ConnHandle, Vec<Effect>) {
        let (conn, rx) = self.conn();
        std::mem::forget(rx);
        let login = self.handle(Msg::Conn(ConnEvent::LoggedIn {
            conn: conn.clone(),
            name: name.into(),
            mind: Some(1),
        }));
        assert!(
            login.iter().any(|e| matches!(e, Effect::Admit(_))),
            "a login is admitted: {login:?}"
        );
        let attached = Attached {
            conn: conn.clone(),
            mind: 1,
            builders: builders
                .iter()
                .enumerate()
                .map(|(i, b)| (b.to_string(), 10 + i as i64))
                .collect(),
            commands: BTreeMap::new(),
            version: Some("4.3.0".into()),
            info: serde_json::json!({}),
            python2: false,
        };
        let effects = self.handle(Msg::Admitted {
            name: name.into(),
            conn: conn.clone(),
            outcome: Outcome::Attached(Box::new(attached)),
        });
        (conn, effects)
    }

    fn instance_phase(&self, name: &str) -> Option<Phase> {
        self.store
            .instances(100)
            .expect("instances")
            .into_iter()
            .find(|i| i.name == name)
            .map(|i| i.phase)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn builds_started(effects: &[Effect]) -> Vec<(i64, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::RunBuild(b) => Some((b.build.request_id, b.worker_name.clone())),
            _ => None,
        })
        .collect()
}

fn replies(effects: Vec<Effect>) {
    for e in effects {
        if let Effect::Reply(r) = e {
            r.send();
        }
    }
}

fn outcome(result: BuildResult) -> BuildOutcome {
    BuildOutcome {
        result,
        reason: None,
        writes: Vec::new(),
    }
}

#[test]
fn a_request_waits_for_a_worker_and_starts_once_it_attaches() {
    let mut f = Fixture::new();
    assert!(builds_started(&f.start(vec![])).is_empty());
    let (effects, mut answer) = f.force("hello");
    assert!(builds_started(&effects).is_empty(), "nobody is attached");
    assert!(answer.try_recv().is_err(), "answered only by the effect");
    replies(effects);
    let request = answer.try_recv().expect("answered").expect("queued");
    assert!(f.store.request(request).unwrap().is_some(), "stored first");

    let (conn, effects) = f.attach("w1", &["hello"]);
    assert!(
        effects.iter().any(|e| matches!(e,
            Effect::Conn { conn: c, op: ConnOp::AcceptLogin { .. } } if c.id == conn.id)),
        "{effects:?}"
    );
    assert_eq!(builds_started(&effects), [(request, "w1".to_owned())]);
    let builds = f.store.builds_of_request(request).unwrap();
    assert_eq!(builds.len(), 1, "the build is recorded before it runs");
}

#[test]
fn an_unknown_worker_is_refused_and_a_second_login_probes_the_first() {
    let mut f = Fixture::new();
    f.start(vec![]);
    let (conn, _rx) = f.conn();
    let effects = f.handle(Msg::Conn(ConnEvent::LoggedIn {
        conn,
        name: "stranger".into(),
        mind: Some(1),
    }));
    assert!(
        matches!(
            &effects[..],
            [Effect::Conn {
                op: ConnOp::RefuseLogin(_),
                ..
            }]
        ),
        "{effects:?}"
    );
    let (first, _) = f.attach("w1", &["hello"]);
    let (second, _rx2) = f.conn();
    let effects = f.handle(Msg::Conn(ConnEvent::LoggedIn {
        conn: second,
        name: "w1".into(),
        mind: Some(1),
    }));
    match &effects[..] {
        [Effect::Admit(a)] => {
            let old = a.old.as_ref().expect("the live attachment is probed");
            assert_eq!(old.conn.id, first.id);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retried_build_runs_again_and_a_failed_one_does_not() {
    let mut f = Fixture::new();
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    let started = builds_started(&effects);
    assert_eq!(started.len(), 1);
    let build = f.store.builds_of_request(started[0].0).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id: build,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Retry),
    });
    assert_eq!(
        builds_started(&effects),
        started,
        "queued again and started"
    );
    let again = f.store.builds_of_request(started[0].0).unwrap();
    assert_eq!(again.len(), 2);
    let second = again.iter().map(|b| b.id).max().unwrap();
    let effects = f.handle(Msg::BuildDone {
        build_id: second,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Failure),
    });
    assert!(builds_started(&effects).is_empty());
    assert!(f.store.request(started[0].0).unwrap().unwrap().complete);
}

#[test]
fn a_drain_refuses_new_work_stops_what_runs_after_the_grace_and_ends_idle() {
    let mut f = Fixture::new();
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    let request = builds_started(&effects)[0].0;
    let build = f.store.builds_of_request(request).unwrap()[0].id;
    let effects = f.handle(Msg::Drain {
        grace: Duration::from_secs(30),
    });
    let stop_all = match &effects[..] {
        [Effect::Timer { after, msg }] if *after == Duration::from_secs(30) => msg,
        other => panic!("{other:?}"),
    };
    assert!(matches!(**stop_all, Msg::StopAll { .. }));
    assert!(!f.master.drained(), "a build still runs");
    let (effects, mut answer) = f.force("hello");
    replies(effects);
    assert!(matches!(answer.try_recv(), Ok(Err(Refusal::Invalid(_)))));
    let effects = f.handle(Msg::StopAll { why: "bye".into() });
    assert!(
        matches!(&effects[..], [Effect::StopBuild { why, .. }] if why == "bye"),
        "{effects:?}"
    );
    // The build answers the stop as cancelled: a shutdown's cancel is a retry.
    f.handle(Msg::BuildDone {
        build_id: build,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Cancelled),
    });
    assert!(f.master.drained());
    let row = f.store.request(request).unwrap().unwrap();
    assert!(!row.complete, "its request runs again after the restart");
}

#[test]
fn demand_launches_instances_up_to_the_cap_each_recorded_first() {
    let mut f = Fixture::new();
    f.start(vec![]);
    let mut launches = Vec::new();
    for _ in 0..3 {
        let (effects, _) = f.force("cloudy");
        launches.extend(effects.into_iter().filter_map(|e| match e {
            Effect::Watch(w) => Some(w),
            _ => None,
        }));
    }
    assert_eq!(launches.len(), 2, "max_instances = 2");
    for w in &launches {
        let WatchStart::Launch(spec) = &w.start else {
            panic!("a new instance is launched");
        };
        assert_eq!(f.instance_phase(&spec.name), Some(Phase::Launching));
        assert!(spec.user_data.contains(&spec.name));
    }
}

/// Launches one instance for a `cloudy` request; its pool id and name.
fn launch_one(f: &mut Fixture) -> (i64, String) {
    f.start(vec![]);
    let (effects, _) = f.force("cloudy");
    let watch = effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Watch(w) => Some(w),
            _ => None,
        })
        .expect("a launch");
    let WatchStart::Launch(spec) = &watch.start else {
        panic!("a launch");
    };
    (watch.id, spec.name.clone())
}

fn latent(f: &mut Fixture, msg: LatentMsg) -> Vec<Effect> {
    f.handle(Msg::Latent(msg))
}

fn timers(effects: &[Effect]) -> Vec<(Duration, &LatentMsg)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Timer { after, msg } => match &**msg {
                Msg::Latent(m) => Some((*after, m)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn each_phase_is_timed_and_a_late_one_fails_the_instance_and_ends_it() {
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    let pool = "pool".to_owned();
    let effects = latent(
        &mut f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id: "i-1".into(),
        },
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Booting));
    let boot = timers(&effects);
    assert!(
        matches!(boot[..], [(d, LatentMsg::Deadline { phase: Phase::Booting, .. })] if d == Duration::from_secs(30))
    );
    let boot_deadline = match boot[0].1 {
        LatentMsg::Deadline {
            pool,
            id,
            phase,
            since,
            limit,
        } => LatentMsg::Deadline {
            pool: pool.clone(),
            id: *id,
            phase: *phase,
            since: *since,
            limit: *limit,
        },
        _ => unreachable!(),
    };

    f.now += 5.0;
    let effects = latent(
        &mut f,
        LatentMsg::Running {
            pool: pool.clone(),
            id,
        },
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Connecting));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::ActivateCredentials { name: n, .. } if *n == name)));
    assert!(
        matches!(timers(&effects)[..], [(d, LatentMsg::Deadline { phase: Phase::Connecting, .. })] if d == Duration::from_secs(40))
    );

    // The boot deadline comes after the instance moved on: nothing happens.
    f.now += 25.0;
    let effects = latent(&mut f, boot_deadline);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Terminate { .. })),
        "{effects:?}"
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Connecting));

    // The connect deadline finds it still connecting: failed and ended.
    let since = f.now - 25.0;
    f.now += 15.0;
    let effects = latent(
        &mut f,
        LatentMsg::Deadline {
            pool: pool.clone(),
            id,
            phase: Phase::Connecting,
            since,
            limit: 40,
        },
    );
    assert_eq!(f.instance_phase(&name), Some(Phase::Failed));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::RevokeCredentials { name: n } if *n == name)));
    assert!(effects.iter().any(|e| matches!(e,
        Effect::Terminate { cloud_id: Some(c), report: Some((p, i)), .. } if c == "i-1" && *p == pool && *i == id)));
}

#[test]
fn an_instance_that_attaches_takes_the_build_and_stops_after_its_idle_time() {
    let mut f = Fixture::new();
    let (id, name) = launch_one(&mut f);
    let pool = "pool".to_owned();
    let cloud_id = "i-9".to_owned();
    latent(
        &mut f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id,
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
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
    assert_eq!(f.instance_phase(&name), Some(Phase::Building));
    let request = builds_started(&effects)[0].0;
    let build = f.store.builds_of_request(request).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id: build,
        worker: name.clone(),
        builder: "cloudy".into(),
        outcome: outcome(BuildResult::Success),
    });
    assert_eq!(f.instance_phase(&name), Some(Phase::Idle));
    let idle = timers(&effects);
    let (after, check) = match idle[..] {
        [(after, LatentMsg::IdleCheck { pool, id, since })] => (
            after,
            LatentMsg::IdleCheck {
                pool: pool.clone(),
                id: *id,
                since: *since,
            },
        ),
        _ => panic!("{effects:?}"),
    };
    f.now += after.as_secs_f64();
    let effects = latent(&mut f, check);
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopping));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Terminate { .. })));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Conn {
            op: ConnOp::Close(_),
            ..
        }
    )));
    latent(&mut f, LatentMsg::Terminated { pool, id });
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopped));
}

#[test]
fn a_restart_adopts_what_both_know_and_ends_what_only_the_cloud_has() {
    let dir = {
        let mut f = Fixture::new();
        let (id, name) = launch_one(&mut f);
        latent(
            &mut f,
            LatentMsg::Launched {
                pool: "pool".into(),
                id,
                cloud_id: "i-known".into(),
            },
        );
        assert_eq!(f.instance_phase(&name), Some(Phase::Booting));
        let dir = f.dir.clone();
        std::mem::forget(f);
        dir
    };
    let mut f = Fixture::on(dir);
    let cloud = vec![
        OwnedInstance {
            cloud_id: "i-known".into(),
            name: Some("pool-1".into()),
        },
        OwnedInstance {
            cloud_id: "i-stray".into(),
            name: Some("pool-77".into()),
        },
    ];
    let effects = f.start(vec![("pool".into(), Some(cloud))]);
    let adopted = effects.iter().any(|e| {
        matches!(e, Effect::Watch(w) if matches!(&w.start, WatchStart::Adopt(c) if c == "i-known"))
    });
    assert!(adopted, "{effects:?}");
    let stray = effects.iter().any(|e| {
        matches!(e, Effect::Terminate { cloud_id: Some(c), report: None, .. } if c == "i-stray")
    });
    assert!(stray, "{effects:?}");
    assert_eq!(f.instance_phase("pool-1"), Some(Phase::Booting));
}

#[test]
fn a_restart_whose_cloud_cannot_list_stops_the_recorded_instances_before_forgetting_them() {
    let dir = {
        let mut f = Fixture::new();
        let (id, _) = launch_one(&mut f);
        latent(
            &mut f,
            LatentMsg::Launched {
                pool: "pool".into(),
                id,
                cloud_id: "i-1".into(),
            },
        );
        let dir = f.dir.clone();
        std::mem::forget(f);
        dir
    };
    let mut f = Fixture::on(dir);
    let effects = f.start(vec![("pool".into(), None)]);
    let (_, id) = match effects.iter().find_map(|e| match e {
        Effect::Terminate {
            cloud_id: Some(c),
            report: Some(r),
            ..
        } if c == "i-1" => Some(r.clone()),
        _ => None,
    }) {
        Some(r) => r,
        None => panic!("{effects:?}"),
    };
    // Stopping until the cloud confirms: a crash meanwhile leaves it to the next start.
    assert_eq!(f.instance_phase("pool-1"), Some(Phase::Stopping));
    // The request that launched it is still queued, so another instance starts; the
    // master stopping (draining first, so nothing new launches) stops that one too,
    // once its launch has answered.
    let second = launches(&effects);
    assert_eq!(second.len(), 1, "{effects:?}");
    f.handle(Msg::Drain {
        grace: Duration::ZERO,
    });
    let (reply, mut stopped) = oneshot::channel();
    replies(f.handle(Msg::StopInstances { reply }));
    let effects = latent(
        &mut f,
        LatentMsg::Launched {
            pool: "pool".into(),
            id: second[0].0,
            cloud_id: "i-2".into(),
        },
    );
    assert_eq!(terminated(&effects), ["i-2"]);
    let ending = vec![id, second[0].0];
    for id in ending {
        assert!(stopped.try_recv().is_err(), "an instance is still stopping");
        replies(latent(
            &mut f,
            LatentMsg::Terminated {
                pool: "pool".into(),
                id,
            },
        ));
    }
    assert_eq!(f.instance_phase("pool-1"), Some(Phase::Stopped));
    assert!(stopped.try_recv().is_ok(), "answered once none is left");
}

#[test]
fn a_full_disk_stops_running_builds_and_starts_none_until_it_has_room() {
    let mut f = Fixture::new();
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    let first = builds_started(&effects)[0].0;
    let why = "the data folder's disk has 10 MiB free".to_owned();
    let effects = f.handle(Msg::DiskLow(Some(why.clone())));
    assert!(
        matches!(&effects[..], [Effect::StopBuild { why: w, .. }] if *w == why),
        "{effects:?}"
    );
    let build = f.store.builds_of_request(first).unwrap()[0].id;
    let effects = f.handle(Msg::BuildDone {
        build_id: build,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Cancelled),
    });
    assert!(builds_started(&effects).is_empty());
    let (effects, _) = f.force("hello");
    assert!(
        builds_started(&effects).is_empty(),
        "nothing starts while low"
    );
    let effects = f.handle(Msg::DiskLow(None));
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
}

/// The instance launches among `effects`: (pool id, name).
fn launches(effects: &[Effect]) -> Vec<(i64, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Watch(w) => match &w.start {
                WatchStart::Launch(spec) => Some((w.id, spec.name.clone())),
                WatchStart::Adopt(_) => None,
            },
            _ => None,
        })
        .collect()
}

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

fn terminated(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Terminate {
                cloud_id: Some(c), ..
            } => Some(c.clone()),
            _ => None,
        })
        .collect()
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
        },
    ));
    assert_eq!(f.instance_phase(&name), Some(Phase::Stopped));
    assert!(stopped.try_recv().is_ok());
}

/// Takes the launched instance `id` through booting to attached (`cloudy`).
fn bring_up(f: &mut Fixture, id: i64, name: &str, cloud_id: &str) -> Vec<Effect> {
    let pool = "pool".to_owned();
    latent(
        f,
        LatentMsg::Launched {
            pool: pool.clone(),
            id,
            cloud_id: cloud_id.into(),
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

fn build_done(f: &mut Fixture, request: i64, worker: &str) -> Vec<Effect> {
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
