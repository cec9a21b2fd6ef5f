//! The coordinator as a state machine: messages in, effects and store rows out. No
//! runtime, no sockets, no tasks: each test feeds [`Master::handle`] and looks at
//! what it asks for.

mod cluster;
mod latent_accounting;
#[cfg(feature = "ec2")]
mod latent_cloud;
mod latent_pools;
mod reconfig;

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
        Fixture::on_as(dir, edits, None)
    }

    /// [`Fixture::on_with`] as master `member` of an installation (joined, with a
    /// lease of five minutes).
    fn on_as(dir: PathBuf, edits: &[(&str, &str)], member: Option<&str>) -> Fixture {
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
        let mut store = Store::open(&dir).expect("store");
        if let Some(name) = member {
            store.set_member(name);
            store
                .join_cluster(name, "1", 300.0, "pb", "http")
                .expect("joined");
        }
        store.recover().expect("recover");
        let membership = member.map(|name| super::Membership { name: name.into() });
        let master = Master::new(&config, &store, "m-test")
            .expect("master")
            .with_membership(membership);
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
            commands: Default::default(),
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

/// Whether a login's only effect is its refusal.
fn only_a_refusal(effects: &[Effect]) -> bool {
    matches!(
        effects,
        [Effect::Conn {
            op: ConnOp::RefuseLogin(_),
            ..
        }]
    )
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
    assert!(only_a_refusal(&effects), "{effects:?}");
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
            placement: None,
            market: None,
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
                placement: None,
                market: None,
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
                placement: None,
                market: None,
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
            placement: None,
            market: None,
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
                _ => None,
            },
            _ => None,
        })
        .collect()
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
fn a_build_s_start_and_end_queue_reports_with_its_record() {
    let push = "[[reporter]]\nname = \"push\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9\"\n\
                builders = [\"hello\"]\n\n[[worker]]\nname = \"w1\"";
    let mut f = Fixture::with(&[("[[worker]]\nname = \"w1\"", push)]);
    f.start(vec![]);
    f.attach("w1", &["hello"]);
    let (effects, _) = f.force("hello");
    assert!(effects.iter().any(|e| matches!(e, Effect::Deliver)));
    let started = builds_started(&effects);
    let build = f.store.builds_of_request(started[0].0).unwrap()[0].id;
    let rows = f.store.due_reports(f64::MAX, 10).unwrap();
    let events: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.build_id))
        .collect();
    assert_eq!(events, [("started", build)]);
    assert_eq!(rows[0].payload["build"]["builder"], "hello");
    let effects = f.handle(Msg::BuildDone {
        build_id: build,
        worker: "w1".into(),
        builder: "hello".into(),
        outcome: outcome(BuildResult::Failure),
    });
    assert!(effects.iter().any(|e| matches!(e, Effect::Deliver)));
    f.store
        .settle_report(rows[0].id, crate::store::Settled::Delivered, None)
        .unwrap();
    let rows = f.store.due_reports(f64::MAX, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].event.as_str(), &rows[0].payload["build"]["result"]),
        ("finished", &serde_json::json!("failure"))
    );
}
