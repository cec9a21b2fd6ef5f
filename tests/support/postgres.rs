//! PostgreSQL for the end-to-end tests: a throwaway cluster
//! (scripts/postgres-cluster.sh), and a fresh database for each test master when
//! `PBMASTER_TEST_POSTGRES` names a running cluster's admin URL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The admin URL (`postgres://user:password@host:port/postgres`) of the cluster the
/// test masters keep their state in, if the run asks for PostgreSQL.
pub fn from_env() -> Option<String> {
    std::env::var("PBMASTER_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A throwaway cluster: started by [`Cluster::start`], stopped by its PID and
/// removed when dropped.
pub struct Cluster {
    dir: PathBuf,
    /// `postgres://pbtest:PASSWORD@127.0.0.1:PORT/postgres`.
    pub admin_url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-cluster.sh")
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
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
            "cannot start PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            dir,
            admin_url: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

/// A new, empty database in the cluster of `admin_url`: its URL without the
/// password, and the password (for a `password_file`).
pub fn fresh_database(admin_url: &str) -> (String, String) {
    let name = unique("pbt");
    // On a thread of its own: the client blocks on a runtime of its own, which an
    // async test's thread may not do.
    let (url, create) = (admin_url.to_owned(), format!("CREATE DATABASE {name}"));
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("admin connection");
        admin.batch_execute(&create).expect("create database");
    })
    .join()
    .expect("database created");
    let rest = admin_url
        .strip_prefix("postgres://")
        .expect("a postgres URL");
    let (login, host) = rest.split_once('@').expect("user:password@host");
    let (user, password) = login.split_once(':').expect("user:password");
    let host = host.split('/').next().unwrap_or(host);
    (
        format!("postgres://{user}@{host}/{name}"),
        password.to_owned(),
    )
}

/// The `[store]` section of a test master in `dir` on a fresh database of the
/// cluster named by `PBMASTER_TEST_POSTGRES`; empty without it (SQLite).
pub fn store_section(dir: &Path) -> String {
    let Some(admin) = from_env() else {
        return String::new();
    };
    let (url, password) = fresh_database(&admin);
    store_section_for(&url, &password, dir)
}

/// The `[store]` section of a master in `dir` on database `url`, its password
/// written to a file there.
pub fn store_section_for(url: &str, password: &str, dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("master folder");
    super::master::write_secret(&dir.join("db.password"), password);
    format!("[store]\nurl = \"{url}\"\npassword_file = \"db.password\"\n")
}
