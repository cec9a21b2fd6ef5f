//! `[hooks.github]`, `[hooks.gitlab]`: each push webhook is off unless its table is
//! present, and a table needs a secret (a GitHub signing secret, a GitLab token) or an
//! explicit `insecure = true`.

use super::error::Problems;
use super::file::HooksTable;
use super::password::PasswordSource;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// How one hook's deliveries are authenticated.
#[derive(Debug, Clone)]
pub enum HookAuth {
    /// GitHub: the key of the `X-Hub-Signature-256` HMAC; GitLab: the `X-Gitlab-Token`.
    Secret(PasswordSource),
    /// `insecure = true`: deliveries are taken without any check.
    Insecure,
}

impl HookAuth {
    /// The secret, read now (`None` when insecure); an unset variable, an unreadable
    /// file or an empty secret is an error.
    pub fn secret(&self) -> Result<Option<String>, String> {
        let HookAuth::Secret(source) = self else {
            return Ok(None);
        };
        let secret = source.read()?;
        if secret.is_empty() {
            return Err(match source {
                PasswordSource::Env(var) => format!("environment variable {var} is empty"),
                PasswordSource::File(path) => format!("{} is empty", path.display()),
                PasswordSource::Value(_) => "the secret is empty".to_owned(),
            });
        }
        Ok(Some(secret))
    }
}

/// `[hooks]`; a hook that is `None` is off.
#[derive(Debug, Clone, Default)]
pub struct HooksConfig {
    pub github: Option<HookAuth>,
    pub gitlab: Option<HookAuth>,
}

impl HooksConfig {
    /// The hooks that take deliveries unauthenticated, as warnings.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if matches!(self.github, Some(HookAuth::Insecure)) {
            out.push(
                "[hooks.github] insecure = true: unsigned GitHub pushes are accepted from \
                 anyone who reaches the API"
                    .to_owned(),
            );
        }
        if matches!(self.gitlab, Some(HookAuth::Insecure)) {
            out.push(
                "[hooks.gitlab] insecure = true: GitLab pushes without a token are accepted \
                 from anyone who reaches the API"
                    .to_owned(),
            );
        }
        out
    }

    /// Reads every configured secret once, so that a missing one stops the start.
    pub fn read_secrets(&self) -> Result<(), String> {
        for (name, auth) in [("github", &self.github), ("gitlab", &self.gitlab)] {
            if let Some(auth) = auth {
                auth.secret().map_err(|e| format!("[hooks.{name}]: {e}"))?;
            }
        }
        Ok(())
    }

    /// Makes relative secret files relative to `base` (the config file's folder).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for auth in [&mut self.github, &mut self.gitlab].into_iter().flatten() {
            if let HookAuth::Secret(source) = auth {
                source.resolve_paths(base);
            }
        }
    }
}

/// One hook table, whichever its key names.
struct Written<'a> {
    table: &'static str,
    keys: [&'static str; 3],
    value: &'a Option<String>,
    env: &'a Option<String>,
    file: &'a Option<PathBuf>,
    insecure: Option<&'a Spanned<bool>>,
    span: Range<usize>,
}

pub(super) fn hooks(t: &HooksTable, problems: &mut Problems) -> HooksConfig {
    HooksConfig {
        github: t.github.as_ref().and_then(|g| {
            let w = g.get_ref();
            auth(
                Written {
                    table: "[hooks.github]",
                    keys: ["secret", "secret_env", "secret_file"],
                    value: &w.secret,
                    env: &w.secret_env,
                    file: &w.secret_file,
                    insecure: w.insecure.as_ref(),
                    span: g.span(),
                },
                problems,
            )
        }),
        gitlab: t.gitlab.as_ref().and_then(|g| {
            let w = g.get_ref();
            auth(
                Written {
                    table: "[hooks.gitlab]",
                    keys: ["token", "token_env", "token_file"],
                    value: &w.token,
                    env: &w.token_env,
                    file: &w.token_file,
                    insecure: w.insecure.as_ref(),
                    span: g.span(),
                },
                problems,
            )
        }),
    }
}

/// A table's authentication: exactly one secret key, or `insecure = true`.
fn auth(w: Written<'_>, problems: &mut Problems) -> Option<HookAuth> {
    let table = w.table;
    let [value, env, file] = w.keys;
    let given = [w.value.is_some(), w.env.is_some(), w.file.is_some()]
        .iter()
        .filter(|s| **s)
        .count();
    let insecure = w.insecure.is_some_and(|i| *i.get_ref());
    if given > 1 {
        problems.at(
            w.span,
            format!("{table} takes only one of {value}, {env}, {file}"),
        );
        return None;
    }
    if given == 1 && insecure {
        let span = w.insecure.map_or(w.span, Spanned::span);
        problems.at(
            span,
            format!("{table}: insecure = true contradicts the {value}; remove one"),
        );
        return None;
    }
    if w.value.as_deref() == Some("") {
        problems.at(w.span, format!("{table}: {value} is empty"));
        return None;
    }
    if w.env.as_deref() == Some("") {
        problems.at(w.span, format!("{table}: {env} is empty"));
        return None;
    }
    if insecure {
        return Some(HookAuth::Insecure);
    }
    match PasswordSource::one_of(w.value, w.env, w.file) {
        Some(source) => Some(HookAuth::Secret(source)),
        None => {
            problems.at(
                w.span,
                format!(
                    "{table} needs one of {value}, {env}, {file} (or insecure = true to \
                     accept unauthenticated deliveries on purpose)"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::error::ConfigError;
    use crate::config::{parse, Config, HookAuth};

    fn with(hooks: &str) -> Result<Config, Vec<ConfigError>> {
        parse(&format!("[master]\ndata_dir = \"d\"\n{hooks}"))
    }

    fn messages(hooks: &str) -> Vec<String> {
        with(hooks)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn hooks_are_off_unless_configured() {
        let c = with("").unwrap();
        assert!(c.hooks.github.is_none() && c.hooks.gitlab.is_none());
        assert!(c.hooks.warnings().is_empty());
    }

    #[test]
    fn a_hook_takes_one_secret() {
        let c = with(
            "[hooks.github]\nsecret_file = \"gh.secret\"\n[hooks.gitlab]\ntoken_env = \"GL_TOKEN\"\n",
        )
        .unwrap();
        assert!(matches!(c.hooks.github, Some(HookAuth::Secret(_))));
        assert!(matches!(c.hooks.gitlab, Some(HookAuth::Secret(_))));
        assert!(c.hooks.warnings().is_empty());
        let c = with("[hooks.gitlab]\ntoken = \"t\"\n").unwrap();
        assert_eq!(
            c.hooks.gitlab.and_then(|a| a.secret().unwrap()).as_deref(),
            Some("t")
        );
    }

    #[test]
    fn a_hook_without_a_secret_is_refused() {
        for table in ["[hooks.github]\n", "[hooks.github]\ninsecure = false\n"] {
            let m = messages(table);
            assert_eq!(m.len(), 1, "{m:?}");
            assert!(
                m[0].starts_with("line 3") && m[0].contains("needs one of secret, secret_env"),
                "{m:?}"
            );
        }
        let m = messages("[hooks.gitlab]\n");
        assert!(
            m[0].contains("needs one of token, token_env, token_file"),
            "{m:?}"
        );
        let m = messages("[hooks.github]\nsecret = \"a\"\nsecret_env = \"B\"\n");
        assert!(m[0].contains("only one of"), "{m:?}");
        let m = messages("[hooks.github]\nsecret = \"a\"\ninsecure = true\n");
        assert!(
            m[0].starts_with("line 5") && m[0].contains("contradicts"),
            "{m:?}"
        );
        let m = messages("[hooks.gitlab]\ntoken = \"\"\n");
        assert!(m[0].contains("token is empty"), "{m:?}");
        let m = messages("[hooks.gitlab]\nsecret = \"x\"\n");
        assert!(m[0].contains("unknown field `secret`"), "{m:?}");
    }

    #[test]
    fn insecure_is_allowed_with_a_warning() {
        let c = with("[hooks.github]\ninsecure = true\n[hooks.gitlab]\ninsecure = true\n").unwrap();
        assert!(matches!(c.hooks.github, Some(HookAuth::Insecure)));
        let w = c.hooks.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("[hooks.github] insecure = true"), "{w:?}");
        assert!(c.hooks.read_secrets().is_ok());
    }

    #[test]
    fn unreadable_or_empty_secrets_are_errors_when_read() {
        let c = with("[hooks.github]\nsecret_env = \"PBMASTER_TEST_UNSET_HOOK_SECRET\"\n").unwrap();
        let e = c.hooks.read_secrets().unwrap_err();
        assert!(
            e.contains("[hooks.github]") && e.contains("is not set"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("pbmaster-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.secret");
        std::fs::write(&path, "\n").unwrap();
        let c = with(&format!("[hooks.gitlab]\ntoken_file = {:?}\n", path)).unwrap();
        let e = c.hooks.read_secrets().unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
