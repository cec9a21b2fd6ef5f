//! The scheduler set driven by a simulated clock: no sleeps, every time explicit.

use super::*;
use crate::changes::NewChange;
use crate::config::parse;

const BASE: &str = r#"
[master]
data_dir = "data"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "b1"
workers = ["w1"]

[[builder.step]]
command = "true"

[[builder]]
name = "b2"
workers = ["w1"]

[[builder.step]]
command = "true"
"#;

fn set(schedulers: &str) -> SchedulerSet {
    let config = parse(&format!("{BASE}{schedulers}")).expect("valid config");
    SchedulerSet::from_config(&config.schedulers)
}

fn change(id: i64, branch: &str, files: &[&str], at: f64) -> Change {
    Change {
        id,
        received_at: at,
        source: "http".into(),
        change: NewChange {
            author: "a".into(),
            branch: Some(branch.into()),
            revision: Some(format!("rev{id}")),
            repository: "https://example.org/r".into(),
            project: "p".into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            properties: [("from_change".to_owned(), Value::from(id))]
                .into_iter()
                .collect(),
            ..NewChange::default()
        },
    }
}

/// Feeds a change the way the coordinator does: plan, then hold.
fn feed(s: &mut SchedulerSet, c: &Change) -> ChangePlan {
    let plan = s.plan_change(c);
    s.hold(&plan.hold, c);
    plan
}

const CHANGES: &str = r#"
[[scheduler]]
name = "main-now"
kind = "changes"
branch = "main"
files = ["src/**"]
builders = ["b1"]
properties = { flavour = "quick" }

[[scheduler]]
name = "stable"
kind = "changes"
branch_regex = "main|dev"
tree_stable_timer = 60
builders = ["b1", "b2"]
"#;

#[test]
fn immediate_scheduler_fires_once_per_matching_change() {
    let mut s = set(CHANGES);
    let plan = feed(&mut s, &change(1, "main", &["src/a.rs"], 100.0));
    assert_eq!(plan.hold, ["stable"]);
    assert_eq!(plan.fires.len(), 1);
    let f = &plan.fires[0];
    assert_eq!(f.scheduler, "main-now");
    assert_eq!(f.builders, ["b1"]);
    assert_eq!(f.changes, [1]);
    assert_eq!(f.properties["branch"], "main");
    assert_eq!(f.properties["revision"], "rev1");
    assert_eq!(f.properties["repository"], "https://example.org/r");
    assert_eq!(f.properties["project"], "p");
    assert_eq!(f.properties["flavour"], "quick");
    assert_eq!(f.properties["scheduler"], "main-now");
    assert_eq!(f.properties["from_change"], 1);
    assert!(
        f.reason.contains("main-now") && f.reason.contains("change 1"),
        "{}",
        f.reason
    );

    // Filtered out: wrong files, wrong branch.
    assert!(feed(&mut s, &change(2, "main", &["README"], 101.0))
        .fires
        .is_empty());
    let other = feed(&mut s, &change(3, "feature", &["src/a.rs"], 102.0));
    assert!(other.fires.is_empty() && other.hold.is_empty());
}

#[test]
fn tree_stable_timer_merges_close_changes_into_one_request_per_builder() {
    let mut s = set(CHANGES);
    feed(&mut s, &change(1, "dev", &["x"], 1000.0));
    assert_eq!(s.wake_at(), Some(1060.0));
    feed(&mut s, &change(2, "dev", &["y"], 1030.0));
    assert_eq!(s.wake_at(), Some(1090.0), "each change restarts the timer");
    assert!(s.due(1089.0).is_empty());
    let fires = s.due(1090.0);
    assert_eq!(fires.len(), 1);
    let f = &fires[0];
    assert_eq!(f.builders, ["b1", "b2"]);
    assert_eq!(f.changes, [1, 2]);
    assert_eq!(
        f.properties["revision"], "rev2",
        "the newest change's revision"
    );
    assert!(f.reason.contains("2 change(s)"), "{}", f.reason);
    assert_eq!(s.wake_at(), None);
    assert!(s.due(5000.0).is_empty(), "released once");
}

#[test]
fn held_changes_reload_and_rearm_from_the_newest() {
    let mut before = set(CHANGES);
    feed(&mut before, &change(1, "dev", &["x"], 1000.0));
    feed(&mut before, &change(2, "dev", &["x"], 1020.0));
    // The master dies at 1050; what the store kept comes back at restart.
    let held = vec![
        ("stable".to_owned(), change(1, "dev", &["x"], 1000.0)),
        ("stable".to_owned(), change(2, "dev", &["x"], 1020.0)),
    ];
    let mut after = set(CHANGES);
    after.restore(&HashMap::new(), held.clone(), 1055.0);
    assert_eq!(after.wake_at(), Some(1080.0));
    assert!(after.due(1079.0).is_empty());
    assert_eq!(after.due(1080.0)[0].changes, [1, 2]);

    // Restarted long after the timer would have expired: released at once.
    let mut late = set(CHANGES);
    late.restore(&HashMap::new(), held.clone(), 9000.0);
    assert_eq!(late.due(9000.0)[0].changes, [1, 2]);

    // The scheduler lost its timer in the new config: one request per change.
    let mut untimed = set(&CHANGES.replace("tree_stable_timer = 60", ""));
    untimed.restore(&HashMap::new(), held, 9000.0);
    let fires = untimed.due(9000.0);
    let per_change: Vec<Vec<i64>> = fires
        .iter()
        .filter(|f| f.scheduler == "stable")
        .map(|f| f.changes.clone())
        .collect();
    assert_eq!(per_change, [vec![1], vec![2]]);
}

#[test]
fn timed_schedulers_fire_on_the_simulated_clock() {
    let mut s = set(r#"
[[scheduler]]
name = "hourly"
kind = "periodic"
interval = 3600
builders = ["b1"]

[[scheduler]]
name = "nightly"
kind = "nightly"
cron = "0 3 * * *"
builders = ["b2"]
properties = { kind = "full" }
"#);
    // 2024-01-01 00:30 UTC.
    let t0 = 1_704_069_000.0;
    let armed = s.restore(&HashMap::new(), Vec::new(), t0);
    assert_eq!(armed.len(), 2, "both get a durable starting point");
    let first = s.due(t0);
    assert_eq!(first.len(), 1, "periodic runs at first start");
    assert_eq!(first[0].scheduler, "hourly");
    assert_eq!(first[0].since, Some(t0));
    assert_eq!(first[0].properties["scheduler"], "hourly");
    assert_eq!(s.wake_at(), Some(t0 + 3600.0));

    let three = 1_704_078_000.0; // 03:00
    let mut fired = Vec::new();
    let mut now = t0;
    while let Some(next) = s.wake_at().filter(|t| *t <= three) {
        now = next;
        fired.extend(s.due(now).into_iter().map(|f| (f.scheduler, now)));
    }
    assert_eq!(
        fired,
        [
            ("hourly".to_owned(), t0 + 3600.0),
            ("hourly".to_owned(), t0 + 7200.0),
            ("nightly".to_owned(), three),
        ]
    );
    assert_eq!(now, three);

    // A restart keeps the stored times: nothing fires twice.
    let stored: HashMap<String, f64> = [
        ("hourly".to_owned(), t0 + 7200.0),
        ("nightly".to_owned(), three),
    ]
    .into();
    let mut again = set(r#"
[[scheduler]]
name = "hourly"
kind = "periodic"
interval = 3600
builders = ["b1"]

[[scheduler]]
name = "nightly"
kind = "nightly"
cron = "0 3 * * *"
builders = ["b2"]
"#);
    assert!(again.restore(&stored, Vec::new(), three + 1.0).is_empty());
    assert!(again.due(three + 1.0).is_empty());
    assert_eq!(again.wake_at(), Some(t0 + 10_800.0));
}

#[test]
fn force_schedulers_never_wake() {
    let mut s = set("[[scheduler]]\nname = \"f\"\nkind = \"force\"\nbuilders = [\"b1\"]\n");
    s.restore(&HashMap::new(), Vec::new(), 0.0);
    assert_eq!(s.wake_at(), None);
    assert!(s.due(1e10).is_empty());
}
