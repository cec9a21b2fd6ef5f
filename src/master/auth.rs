//! Worker and change-source passwords from the configuration, resolved at start and
//! again at each reconfiguration (a changed password counts from the next login).

use crate::config::Config;
use crate::conn::{Auth, Role};
use crate::latent::credentials::Credentials;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

type Passwords = HashMap<String, (Vec<u8>, Role)>;

/// Name → password, read from the config's values, environment variables or files.
pub struct ConfigAuth {
    passwords: RwLock<Arc<Passwords>>,
    /// One-time credentials of latent instances, checked after the configured names.
    latent: Option<Arc<Credentials>>,
}

impl std::fmt::Debug for ConfigAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigAuth({} logins)", self.current().len())
    }
}

impl ConfigAuth {
    /// Resolves every worker's password; an unset variable or unreadable file is an error.
    pub fn from_config(config: &Config) -> Result<ConfigAuth, String> {
        let mut passwords = HashMap::new();
        for w in &config.workers {
            let password = w
                .password
                .read()
                .map_err(|e| format!("worker {:?}: {e}", w.name))?;
            passwords.insert(w.name.clone(), (password.into_bytes(), Role::Worker));
        }
        if let Some(login) = &config.changes {
            let password = login
                .password
                .read()
                .map_err(|e| format!("[changes]: {e}"))?;
            passwords.insert(
                login.user.clone(),
                (password.into_bytes(), Role::ChangeSource),
            );
        }
        Ok(ConfigAuth {
            passwords: RwLock::new(Arc::new(passwords)),
            latent: None,
        })
    }

    /// Takes the passwords of `other` (resolved from a new config): logins from now
    /// on are checked against them; attached workers stay.
    pub fn replace(&self, other: ConfigAuth) {
        let new = other.current();
        *self.passwords.write().unwrap_or_else(|p| p.into_inner()) = new;
    }

    fn current(&self) -> Arc<Passwords> {
        self.passwords
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Also accepts the latent instances' one-time credentials.
    pub fn with_latent(mut self, credentials: Arc<Credentials>) -> ConfigAuth {
        self.latent = Some(credentials);
        self
    }
}

impl Auth for ConfigAuth {
    fn lookup(&self, name: &str) -> Option<(Vec<u8>, Role)> {
        self.current().get(name).cloned().or_else(|| {
            let pw = self.latent.as_ref()?.password(name)?;
            Some((pw, Role::Worker))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_from_values_variables_and_files() {
        let dir = std::env::temp_dir().join(format!("pbmaster-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        std::env::set_var("PBMASTER_TEST_PW", "from-env");
        let text = format!(
            "[master]\ndata_dir='d'\n[[worker]]\nname='a'\npassword='plain'\n[[worker]]\nname='b'\npassword_env='PBMASTER_TEST_PW'\n\
             [[worker]]\nname='c'\npassword_file='{}'\n",
            dir.join("pw").display()
        );
        let auth = ConfigAuth::from_config(&crate::config::parse(&text).unwrap()).unwrap();
        assert_eq!(auth.lookup("a"), Some((b"plain".to_vec(), Role::Worker)));
        assert_eq!(auth.lookup("b"), Some((b"from-env".to_vec(), Role::Worker)));
        assert_eq!(
            auth.lookup("c"),
            Some((b"from-file".to_vec(), Role::Worker))
        );
        assert_eq!(auth.lookup("nobody"), None);
        let missing = text.replace("PBMASTER_TEST_PW", "PBMASTER_TEST_UNSET");
        assert!(ConfigAuth::from_config(&crate::config::parse(&missing).unwrap()).is_err());
        let changed = text.replace("password='plain'", "password='changed'");
        auth.replace(ConfigAuth::from_config(&crate::config::parse(&changed).unwrap()).unwrap());
        assert_eq!(auth.lookup("a"), Some((b"changed".to_vec(), Role::Worker)));
    }
}
