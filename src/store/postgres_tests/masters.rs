//! Several masters on one PostgreSQL database: a request held by one master's
//! transaction is not started by another, a takeover happens once however many
//! masters try, and notices reach every listening master at commit.

use super::Cluster;
use crate::store::{Claim, Join, Store};
use serde_json::json;
use std::time::Duration;

/// Handles of masters `names` on one fresh database.
fn masters(cluster: &Cluster, names: &[&str]) -> (Vec<Store>, std::path::PathBuf) {
    let (first, dir, target) = cluster.store();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut s = if i == 0 {
            first.clone()
        } else {
            Store::open_with(&dir.join(name), Some(&target)).expect("store")
        };
        s.set_member(name);
        assert!(matches!(
            s.join_cluster(name, "1", 30.0, "pb", "http").expect("join"),
            Join::Joined { .. }
        ));
        out.push(s);
    }
    (out, dir)
}

#[test]
fn a_live_name_is_not_taken_from_another_folder() {
    let cluster = Cluster::start();
    let (m, dir) = masters(&cluster, &["m1", "m2"]);
    // m2's folder asks for m1's name while m1's lease runs.
    match m[1]
        .join_cluster("m1", "2", 30.0, "pb", "http")
        .expect("join")
    {
        Join::Held { left } => assert!(left > 0.0 && left <= 30.0, "{left}"),
        other => panic!("{other:?}"),
    }
    assert!(
        m[0].renew_lease("m1", "1", 30.0).expect("renew"),
        "m1 keeps it"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_request_one_master_is_starting_is_not_started_by_another() {
    let cluster = Cluster::start();
    let (m, dir) = masters(&cluster, &["m1", "m2"]);
    let r = m[0]
        .add_request("b1", "force", &json!({}))
        .expect("request");
    let other = m[0]
        .add_request("b1", "force", &json!({}))
        .expect("request");
    // m1's wake-up has started the build and not committed yet.
    let m1 = m[0].own_connection().expect("connection");
    m1.begin().expect("begin");
    assert!(matches!(
        m1.start_build(r, "b1", "w1").expect("claim"),
        Claim::Started(_)
    ));
    let m2 = m[1].own_connection().expect("connection");
    assert!(
        matches!(m2.start_build(r, "b1", "w2").expect("claim"), Claim::Busy),
        "the row is locked"
    );
    // Another request of the same builder waits for m1's numbering.
    assert!(matches!(
        m2.start_build(other, "b1", "w2").expect("claim"),
        Claim::Busy
    ));
    m1.commit().expect("commit");
    assert!(matches!(
        m2.start_build(r, "b1", "w2").expect("claim"),
        Claim::Gone
    ));
    let second = m2.start_build(other, "b1", "w2").expect("claim").started();
    assert_eq!((second.number, second.master.as_deref()), (2, Some("m2")));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_expired_master_is_taken_over_once_and_its_requests_run_again() {
    let cluster = Cluster::start();
    let (m, dir) = masters(&cluster, &["m1", "m2", "m3"]);
    let r = m[0]
        .add_request("b1", "force", &json!({}))
        .expect("request");
    m[0].start_build(r, "b1", "w1").expect("claim").started();
    m[0].add_instance("pool", "pool-1", "token-1", "pw")
        .expect("instance");
    assert!(m[0].renew_lease("m1", "1", -1.0).expect("expire"));
    assert_eq!(
        m[1].expired_masters().expect("expired"),
        vec!["m1".to_owned()]
    );
    // m2 and m3 try at once: the row lock lets one through.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| m[1].take_over("m1", "m2").expect("take over"));
        let b = s.spawn(|| m[2].take_over("m1", "m3").expect("take over"));
        (a.join().expect("m2"), b.join().expect("m3"))
    });
    let taken = match (a, b) {
        (Some(t), None) | (None, Some(t)) => t,
        other => panic!("taken over once, not {other:?}"),
    };
    assert_eq!(taken.builds, 1);
    assert_eq!(taken.instances.len(), 1);
    let queued = m[1].queued_requests().expect("queue");
    assert_eq!(queued.len(), 1);
    assert_ne!(queued[0].master.as_deref(), Some("m1"), "the taker's now");
    assert!(!m[0].renew_lease("m1", "1", 30.0).expect("renew"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn notices_reach_listening_masters_when_the_transaction_commits() {
    let cluster = Cluster::start();
    let (m, dir) = masters(&cluster, &["m1", "m2"]);
    let mut listener = m[1].listener().expect("listen");
    let sender = m[0].own_connection().expect("connection");
    sender.begin().expect("begin");
    sender.notify("requests m1").expect("notify");
    assert!(
        listener
            .wait(Duration::from_millis(200))
            .expect("wait")
            .is_empty(),
        "nothing before the commit"
    );
    sender.commit().expect("commit");
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(listener.wait(Duration::from_millis(200)).expect("wait"));
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got, vec!["requests m1".to_owned()]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_master_frozen_inside_a_transaction_does_not_block_its_takeover() {
    let cluster = Cluster::start();
    let (m, dir) = masters(&cluster, &["m1", "m2"]);
    let r = m[0]
        .add_request("b1", "force", &json!({}))
        .expect("request");
    let build = m[0].start_build(r, "b1", "w1").expect("claim").started();
    assert!(m[0].renew_lease("m1", "1", -1.0).expect("expire"));
    // m1 froze in the middle of a wake-up: its transaction holds the build's row.
    let frozen = m[0].own_connection().expect("connection");
    frozen.begin().expect("begin");
    frozen
        .record_build(build.id, &[crate::store::BuildWrite::Properties(json!({}))])
        .expect("write");
    // The server ends the idle transaction, so the takeover gets through.
    let taken = m[1]
        .take_over("m1", "m2")
        .expect("take over")
        .expect("taken");
    assert_eq!(taken.builds, 1);
    assert!(frozen.commit().is_err(), "m1's session was ended");
    std::fs::remove_dir_all(dir).ok();
}
