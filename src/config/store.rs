//! `[store]`: where the master keeps its state. Without the section, SQLite in
//! `data_dir` as always; with `url`, a PostgreSQL database, its password read at
//! start from a file or the environment (never in the URL, which is logged).

use super::error::Problems;
use super::file::StoreTable;
use super::password::PasswordSource;
use std::path::Path;

/// `[store]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `postgres://user@host:port/dbname`, without a password.
    pub url: String,
    /// `password_file` or `password_env`; none for a server that trusts the user.
    pub password: Option<PasswordSource>,
}

impl StoreConfig {
    /// Makes a relative password file relative to `base` (the config file's folder).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.password {
            p.resolve_paths(base);
        }
    }
}

pub(super) fn store(table: Option<&StoreTable>, problems: &mut Problems) -> Option<StoreConfig> {
    let t = table?;
    let url = t.url.get_ref();
    if let Err(e) = crate::store::check_url(url) {
        problems.at(t.url.span(), format!("[store] url: {e}"));
    }
    let password = match (&t.password_file, &t.password_env) {
        (Some(_), Some(env)) => {
            problems.at(
                env.span(),
                "[store] takes one of password_file and password_env, not both",
            );
            None
        }
        (Some(file), None) => Some(PasswordSource::File(file.get_ref().clone())),
        (None, Some(env)) if env.get_ref().is_empty() => {
            problems.at(env.span(), "[store] password_env is empty");
            None
        }
        (None, Some(env)) => Some(PasswordSource::Env(env.get_ref().clone())),
        (None, None) => None,
    };
    Some(StoreConfig {
        url: url.clone(),
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::super::password::PasswordSource;
    use crate::config::parse;

    fn errors(section: &str) -> String {
        let text = format!("[master]\ndata_dir = \"d\"\n\n[store]\n{section}\n");
        parse(&text)
            .expect_err("refused")
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn no_section_is_sqlite_and_a_url_is_postgres_with_its_password_source() {
        let c = parse("[master]\ndata_dir = \"d\"\n").expect("config");
        assert_eq!(c.store, None);
        let c = parse(
            "[master]\ndata_dir = \"d\"\n[store]\nurl = \"postgres://pb@db.example:5432/pbmaster\"\npassword_env = \"PB_DB\"\n",
        )
        .expect("config");
        let store = c.store.expect("store");
        assert_eq!(store.url, "postgres://pb@db.example:5432/pbmaster");
        assert_eq!(store.password, Some(PasswordSource::Env("PB_DB".into())));
    }

    #[test]
    fn wrong_settings_are_refused_with_their_line() {
        let e = errors("url = \"mysql://u@h/db\"");
        assert!(e.contains("line 5") && e.contains("postgres://"), "{e}");
        let e = errors("url = \"postgres://u:secret@h/db\"");
        assert!(e.contains("password_file"), "{e}");
        assert!(!e.contains("secret@"), "the password is not repeated: {e}");
        let e = errors("url = \"postgres://u@h/db\"\npassword_file = \"f\"\npassword_env = \"V\"");
        assert!(e.contains("line 7") && e.contains("not both"), "{e}");
        let e = errors("url = \"postgres://u@h/db\"\npassword = \"x\"");
        assert!(e.contains("password"), "{e}");
    }
}
