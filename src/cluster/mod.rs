//! Several masters over one PostgreSQL database.
//!
//! Each master joins under its name and renews a lease every third of it
//! ([`run`]). A master that cannot renew in time, or finds at a renewal that it was
//! taken over, stops at once (fail-stop: its workers lose their connection and
//! its builds run again elsewhere), so two masters never believe they run the same
//! build. Every live master looks for leases that ran out and takes the first it can
//! lock over (see [`Store::take_over`]). Masters wake each other through the
//! database's notifications ([`listen`]): new requests, stops for builds that run
//! elsewhere; a reload of the queue at every renewal covers a notice lost with a
//! connection.

use crate::master::cluster::{parse_notice, ClusterMsg};
use crate::master::Msg;
use crate::store::{Join, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// This master in the installation, once joined.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Tags this master's cloud instances.
    pub master_id: String,
    /// This process: a renewal by an older or newer one of the same name fails.
    incarnation: String,
    lease: Duration,
}

/// Joins as `name` with a lease of `lease`. A process of the same name whose lease
/// still runs (this master, killed a moment ago) is waited out, up to twice the
/// lease; a live one is an error.
pub async fn join(
    store: &Store,
    name: &str,
    lease: Duration,
    pb_listen: &str,
    http_listen: &str,
) -> Result<Member, String> {
    let incarnation = random_id().map_err(|e| format!("database: {e}"))?;
    let give_up = Instant::now() + lease * 2;
    loop {
        let (n, inc, pb, http) = (
            name.to_owned(),
            incarnation.clone(),
            pb_listen.to_owned(),
            http_listen.to_owned(),
        );
        let secs = lease.as_secs_f64();
        let joined = store
            .off_thread(move |s| s.join_cluster(&n, &inc, secs, &pb, &http))
            .await
            .map_err(|e| format!("database: {e}"))?;
        match joined {
            Join::Joined { master_id } => {
                info!(master = name, "joined the installation");
                return Ok(Member {
                    name: name.to_owned(),
                    master_id,
                    incarnation,
                    lease,
                });
            }
            Join::Held { left } if Instant::now() < give_up => {
                info!(
                    "a master named {name:?} held its lease {left:.1} s more: waiting for it to run out"
                );
                tokio::time::sleep(Duration::from_secs_f64(left.clamp(0.05, 1.0))).await;
            }
            Join::Held { .. } => {
                return Err(format!(
                    "a master named {name:?} is running: give each master its own name"
                ))
            }
        }
    }
}

fn random_id() -> Result<String, StoreError> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Renews the lease, takes over masters whose lease ran out, and has the queue
/// read again, every third of the lease, until `stop`; then leaves the
/// installation.
pub async fn run(
    store: Store,
    member: Arc<Member>,
    master: mpsc::Sender<Msg>,
    stop: CancellationToken,
) {
    let every = member.lease / 3;
    let mut renewed = Instant::now();
    // A connection of its own: a renewal waits for nobody else's statements.
    let store = match store.off_thread(|s| s.own_connection()).await {
        Ok(own) => own,
        Err(e) => fail_stop(&format!("no connection for the lease: {e}")),
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let (name, inc, secs) = (
            member.name.clone(),
            member.incarnation.clone(),
            member.lease.as_secs_f64(),
        );
        // A renewal stuck on a lost network is a failed one once the lease is over.
        let renewal = store.off_thread(move |s| s.renew_lease(&name, &inc, secs));
        let renewed_now = match tokio::time::timeout(member.lease, renewal).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("no answer within the lease".to_owned()),
        };
        match renewed_now {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => fail_stop("another master took this one over (its lease had run out)"),
            Err(e) if renewed.elapsed() >= member.lease => {
                fail_stop(&format!("the lease could not be renewed in time: {e}"))
            }
            Err(e) => warn!("cannot renew the lease: {e}"),
        }
        take_over_expired(&store, &member, &master).await;
        let _ = master.send(ClusterMsg::Requests.into()).await;
    }
    let (name, inc) = (member.name.clone(), member.incarnation.clone());
    if let Err(e) = store
        .off_thread(move |s| s.leave_cluster(&name, &inc))
        .await
    {
        warn!("cannot record leaving the installation: {e}");
    }
}

/// Stops the process at once: another master runs (or is about to run) this one's
/// builds, so nothing more may be done in its name.
fn fail_stop(why: &str) -> ! {
    error!("{why}: stopping now; the other masters run its builds again");
    std::process::exit(3)
}

/// Takes over every master whose lease ran out that no other master took first.
async fn take_over_expired(store: &Store, member: &Member, master: &mpsc::Sender<Msg>) {
    let expired = match store.off_thread(|s| s.expired_masters()).await {
        Ok(e) => e,
        Err(e) => return warn!("cannot look for masters that stopped: {e}"),
    };
    for dead in expired.into_iter().filter(|d| *d != member.name) {
        let (d, me) = (dead.clone(), member.name.clone());
        match store.off_thread(move |s| s.take_over(&d, &me)).await {
            Ok(Some(taken)) => {
                warn!(
                    from = %dead,
                    builds = taken.builds,
                    workers = taken.workers,
                    instances = taken.instances.len(),
                    "took over a master whose lease ran out: its builds run again"
                );
                let msg = ClusterMsg::TookOver {
                    from: dead,
                    instances: taken.instances,
                };
                let _ = master.send(msg.into()).await;
            }
            Ok(None) => {}
            Err(e) => warn!(from = %dead, "cannot take over: {e}"),
        }
    }
}

/// Passes the other masters' notices to the coordinator, on a thread of its own
/// (the listening connection blocks), until `stop`. A lost connection is opened
/// again; the periodic queue reload covers what was said meanwhile.
pub fn listen(
    store: Store,
    me: String,
    master: mpsc::Sender<Msg>,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cluster-listen".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                let mut listener = match store.listener() {
                    Ok(l) => l,
                    Err(e) => {
                        warn!("cannot listen for the other masters: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                while !stop.is_cancelled() {
                    let notices = match listener.wait(Duration::from_millis(500)) {
                        Ok(n) => n,
                        Err(e) => {
                            warn!("lost the notices of the other masters: {e}");
                            break;
                        }
                    };
                    if !forward(&notices, &me, &master) {
                        return;
                    }
                }
            }
        })
}

/// Sends the coordinator what `notices` ask, the requests other masters queued in
/// one message; false once the coordinator is gone.
fn forward(notices: &[String], me: &str, master: &mpsc::Sender<Msg>) -> bool {
    let mut queued = Vec::new();
    for notice in notices {
        match parse_notice(notice) {
            Some(ClusterMsg::Queued(ids)) if !crate::master::cluster::from_self(notice, me) => {
                queued.extend(ids)
            }
            Some(ClusterMsg::Queued(_)) | None => {}
            Some(other) => {
                if master.blocking_send(other.into()).is_err() {
                    return false;
                }
            }
        }
    }
    queued.is_empty()
        || master
            .blocking_send(ClusterMsg::Queued(queued).into())
            .is_ok()
}
