//! A throwaway PostgreSQL 15 server for a test (scripts/postgres-cluster.sh): started
//! in a temporary folder as an unprivileged user, stopped by its PID when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Postgres {
    dir: PathBuf,
    /// `postgres://user@host:port`, without a database or password.
    base: String,
    password: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-cluster.sh")
}

impl Postgres {
    pub fn start() -> Postgres {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
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
        let rest = admin.strip_prefix("postgres://").expect("a postgres URL");
        let (login, host) = rest.split_once('@').expect("user:password@host");
        let (user, password) = login.split_once(':').expect("user:password");
        let host = host.trim_end_matches("/postgres");
        Postgres {
            dir,
            base: format!("postgres://{user}@{host}"),
            password: password.to_owned(),
        }
    }

    /// Creates database `name`; the `[store]` section of a master using it, its
    /// password in a file of `dir` (the master's folder).
    pub fn database(&self, name: &str, dir: &Path) -> String {
        let out = Command::new("/usr/lib/postgresql/15/bin/psql")
            .arg(format!("{}/postgres", self.base))
            .args(["-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("psql runs");
        let exists = String::from_utf8_lossy(&out.stderr).contains("already exists");
        assert!(
            out.status.success() || exists,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.store_section(name, dir)
    }

    /// The `[store]` section of a master in `dir` using database `name`.
    pub fn store_section(&self, name: &str, dir: &Path) -> String {
        std::fs::create_dir_all(dir).expect("master dir");
        super::master::write_secret(&dir.join("pg.password"), &self.password);
        format!(
            "[store]\nurl = \"{}/{name}\"\npassword_file = \"pg.password\"\n",
            self.base
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
