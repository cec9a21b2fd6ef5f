//! Admitting a worker whose password checked out, in one pass: one task probes the
//! connection the login would replace (buildbot's rule: while the old one answers, the
//! new login is refused, retryably) and runs the attach handshake; the coordinator
//! decides once, when that task reports.

use super::effect::{Admission, ConnOp, Effect};
use super::Master;
use crate::conn::{unauthorized, ConnHandle};
use crate::worker::{attach, Attached};
use pbwire::jelly::FailureStyle;
use std::time::Duration;
use tracing::{info, warn};

/// How long the connection a login would replace has to answer.
const DUPLICATE_PROBE: Duration = Duration::from_secs(10);

/// How an admission ended.
#[derive(Debug)]
pub enum Outcome {
    /// The handshake completed.
    Attached(Box<Attached>),
    /// The worker's name is attached on a connection that still answers.
    Duplicate,
    /// The handshake failed (or the login passed no bot object).
    Failed(String),
}

impl Master {
    /// A login whose password checked out: admit it, or refuse an unknown name.
    pub(super) fn logged_in(&mut self, conn: ConnHandle, name: String, mind: Option<i64>) {
        let Some(slot) = self.workers.get(&name).filter(|s| !s.removed) else {
            return self.conn_op(&conn, ConnOp::RefuseLogin(unauthorized("unknown worker")));
        };
        if let Some(master) = self.attached_elsewhere(&name) {
            info!(worker = %name, peer = %conn.peer, %master, "refusing a login: the worker is attached to another master");
            let failure = unauthorized("worker already attached to another master");
            return self.conn_op(&conn, ConnOp::RefuseLogin(failure));
        }
        self.conns.insert(conn.id, name.clone());
        let old = slot.attached.clone().filter(|old| !old.conn.is_closed());
        if old.is_none() {
            self.instance_logged_in(&name);
            let _ = self.store.worker_attaching(&name, &conn.peer.to_string());
        }
        let builders = self.builders_of(&name);
        if let Some(slot) = self.workers.get_mut(&name) {
            slot.listed = builders.clone();
        }
        self.effect(Effect::Admit(Box::new(Admission {
            name,
            conn,
            mind,
            old,
            builders,
        })));
    }

    /// Acts on an admission's outcome.
    pub(super) fn admitted(&mut self, name: String, conn: ConnHandle, outcome: Outcome) {
        match outcome {
            Outcome::Attached(worker) => {
                let old = self
                    .workers
                    .get_mut(&name)
                    .and_then(|s| s.attached.take_if(|old| old.conn.id != conn.id));
                if let Some(old) = old {
                    info!(worker = %name, "replacing a dead connection");
                    self.conn_op(&old.conn, ConnOp::Close("replaced by a new login".into()));
                }
                self.attached(name, *worker);
            }
            Outcome::Duplicate => {
                info!(worker = %name, peer = %conn.peer, "refusing a second login while the first connection lives");
                let failure = unauthorized("worker already attached");
                self.conn_op(&conn, ConnOp::RefuseLogin(failure));
            }
            Outcome::Failed(why) => {
                warn!(worker = %name, peer = %conn.peer, "attach failed: {why}");
                self.conn_op(&conn, ConnOp::Close("attach failed".into()));
                self.instance_lost(&name, &format!("attach failed: {why}"));
            }
        }
    }

    /// (builder, directory) of every builder the worker may run: those that name it,
    /// or, for a latent instance, its pool.
    pub(super) fn builders_of(&self, name: &str) -> Vec<(String, String)> {
        let pool = self.instance_named(name).map(|(pool, _)| pool);
        self.builders
            .values()
            .filter(|b| {
                b.workers
                    .iter()
                    .any(|w| w == name || Some(w) == pool.as_ref())
            })
            .map(|b| (b.name.clone(), b.builddir.clone()))
            .collect()
    }

    /// The worker is attached: recorded, its login answered, and builds dispatched.
    fn attached(&mut self, name: String, mut worker: Attached) {
        let Some(slot) = self.workers.get_mut(&name) else {
            return;
        };
        if worker.conn.is_closed() {
            return;
        }
        info!(worker = %name, peer = %worker.conn.peer, version = worker.version.as_deref().unwrap_or("?"),
              builders = worker.builders.len(), "worker attached");
        let peer = worker.conn.peer.to_string();
        // A worker's environment may hold a master secret (one it was started with).
        let info = self.secrets.redact_json(std::mem::take(&mut worker.info));
        worker.commands = self.command_tables.share(worker.commands);
        if let Err(e) = self
            .store
            .worker_connected(&name, &peer, worker.version.as_deref(), &info)
        {
            warn!("cannot record the worker: {e}");
        }
        let conn = worker.conn.clone();
        let style = if worker.python2 {
            FailureStyle::Python2
        } else {
            FailureStyle::Python3
        };
        slot.attached = Some(worker);
        slot.graceful = false;
        self.conn_op(&conn, ConnOp::AcceptLogin { style });
        self.instance_attached(&name);
        // A reconfiguration during the handshake changed what it should have.
        self.relist(&name);
        self.notify(crate::events::Event::WorkerAttached { worker: name });
        self.dispatch();
    }
}

/// Probes the connection the login would replace, then runs the handshake.
pub(super) async fn admit(
    old: Option<Attached>,
    conn: &ConnHandle,
    mind: Option<i64>,
    builders: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    if let Some(old) = old {
        let probe = "master got a duplicate connection";
        if old
            .conn
            .print(old.mind, probe, DUPLICATE_PROBE)
            .await
            .is_ok()
        {
            return Outcome::Duplicate;
        }
    }
    let Some(mind) = mind else {
        return Outcome::Failed("login without a bot object".into());
    };
    match attach(conn, mind, builders, timeout).await {
        Ok(worker) => Outcome::Attached(Box::new(worker)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
