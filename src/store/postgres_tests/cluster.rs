//! A throwaway PostgreSQL cluster for a test, stopped by its PID and removed when
//! dropped (see scripts/postgres-cluster.sh).

use crate::store::sql::{args, Db};
use crate::store::{now, PgTarget, Store};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Cluster {
    dir: PathBuf,
    /// The superuser's URL, without its password.
    url: String,
    password: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-cluster.sh")
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        (now() * 1000.0) as u64
    )
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = std::env::temp_dir().join(unique("pbmaster-pg"));
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("scripts/postgres-cluster.sh runs");
        assert!(
            out.status.success(),
            "cannot start PostgreSQL (scripts/test.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // postgres://pbtest:PASSWORD@127.0.0.1:PORT/postgres
        let rest = admin.strip_prefix("postgres://").expect("a postgres URL");
        let (login, host) = rest.split_once('@').expect("user:password@host");
        let (user, password) = login.split_once(':').expect("user:password");
        let url = format!("postgres://{user}@{host}");
        Cluster {
            dir,
            url,
            password: password.to_owned(),
        }
    }

    /// The target of database `name` (created by [`Cluster::database`]).
    pub fn target(&self, name: &str) -> PgTarget {
        PgTarget {
            url: self.url.replace("/postgres", &format!("/{name}")),
            password: Some(self.password.clone()),
        }
    }

    /// A fresh, empty database; its name.
    pub fn database(&self) -> String {
        let name = unique("t").replace('-', "_");
        let admin = Db::postgres(&self.target("postgres")).expect("admin connection");
        admin
            .execute_batch(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        name
    }

    /// A store on a fresh database, with its data folder.
    pub fn store(&self) -> (Store, PathBuf, PgTarget) {
        let target = self.target(&self.database());
        let dir = std::env::temp_dir().join(unique("pbmaster-pgstore"));
        let store = Store::open_with(&dir, Some(&target)).expect("store on PostgreSQL");
        (store, dir, target)
    }

    /// Runs statements on a database as the superuser (to put it in a state the
    /// master would not).
    pub fn run(&self, target: &PgTarget, sql: &str) {
        Db::postgres(target)
            .expect("connection")
            .execute_batch(sql)
            .expect("statements");
    }

    /// Counts rows of `sql` (a `SELECT COUNT(*)`).
    pub fn count(&self, target: &PgTarget, sql: &str) -> i64 {
        Db::postgres(target)
            .expect("connection")
            .query_row(sql, args![], |r| r.get(0))
            .expect("count")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
