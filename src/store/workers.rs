//! Configured workers' connections as last recorded: state, version, info, peer.

use super::sql::args;
use super::{now, Store, StoreResult};
use crate::model::WorkerState;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub state: WorkerState,
    pub version: Option<String>,
    pub info: serde_json::Value,
    pub connected_at: Option<f64>,
    pub disconnected_at: Option<f64>,
    pub peer: Option<String>,
}

impl Store {
    /// A worker whose handshake answered: attached, with what it said about itself.
    pub fn worker_connected(
        &self,
        name: &str,
        peer: &str,
        version: Option<&str>,
        info: &serde_json::Value,
    ) -> StoreResult<()> {
        self.db().execute(
            "INSERT INTO workers (name, state, version, info, connected_at, peer, master) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET state = ?2, version = ?3, info = ?4, connected_at = ?5, peer = ?6, master = ?7",
            args![
                name,
                WorkerState::Attached,
                version,
                info.to_string(),
                now(),
                peer,
                self.member()
            ],
        )?;
        Ok(())
    }

    /// A worker whose password checked out and whose handshake is under way.
    pub fn worker_attaching(&self, name: &str, peer: &str) -> StoreResult<()> {
        self.db().execute(
            "INSERT INTO workers (name, state, peer, master) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET state = ?2, peer = ?3, master = ?4",
            args![name, WorkerState::Attaching, peer, self.member()],
        )?;
        Ok(())
    }

    /// The worker's connection to this master ended (a connection it has since made
    /// to another master stays recorded).
    pub fn worker_disconnected(&self, name: &str) -> StoreResult<()> {
        self.db().execute(
            "UPDATE workers SET state = ?2, disconnected_at = ?3
             WHERE name = ?1 AND (CAST(?4 AS TEXT) IS NULL OR master IS NULL OR master = ?4)",
            args![name, WorkerState::Disconnected, now(), self.member()],
        )?;
        Ok(())
    }

    /// Every worker that ever logged in, by name.
    pub fn workers(&self) -> StoreResult<Vec<WorkerRow>> {
        self.db().query_map(
            "SELECT name, state, version, info, connected_at, disconnected_at, peer FROM workers ORDER BY name",
            args![],
            |r| {
                Ok(WorkerRow {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    version: r.get(2)?,
                    info: r.json(3)?,
                    connected_at: r.get(4)?,
                    disconnected_at: r.get(5)?,
                    peer: r.get(6)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn temp() -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-workers-{}-{}", std::process::id(), now()));
        (Store::open(&dir).expect("store"), dir)
    }

    #[test]
    fn states_are_recorded_as_their_names() {
        let (store, dir) = temp();
        store
            .worker_attaching("w1", "127.0.0.1:1")
            .expect("attaching");
        assert_eq!(
            store.workers().expect("read")[0].state,
            WorkerState::Attaching
        );
        store
            .worker_connected("w1", "127.0.0.1:1", Some("4.3.0"), &serde_json::json!({}))
            .expect("attached");
        assert_eq!(
            store.workers().expect("read")[0].state,
            WorkerState::Attached
        );
        store.worker_disconnected("w1").expect("disconnected");
        let row = &store.workers().expect("read")[0];
        assert_eq!(row.state, WorkerState::Disconnected);
        assert_eq!(serde_json::json!(row)["state"], "disconnected");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_unknown_state_in_the_database_is_an_error() {
        let (store, dir) = temp();
        store
            .worker_attaching("w1", "127.0.0.1:1")
            .expect("attaching");
        store.execute_for_test("UPDATE workers SET state = 'connected'");
        let e = store.workers().expect_err("unknown state");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("\"connected\""), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
