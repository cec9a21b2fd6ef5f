//! One-time worker credentials for latent instances. A name/password pair exists only
//! from the moment an instance may connect until it stops; a login with a stale or
//! guessed password finds nothing.

use std::collections::HashMap;
use std::sync::RwLock;

/// Instance name → password, shared by the coordinator (which mints and revokes) and
/// every connection (which checks logins).
#[derive(Debug, Default)]
pub struct Credentials {
    live: RwLock<HashMap<String, Vec<u8>>>,
}

impl Credentials {
    /// A fresh random password: 24 letters and digits. It opens nothing until
    /// [`activate`](Self::activate)d.
    pub fn generate() -> Result<String, String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
        Ok(raw
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect())
    }

    /// From now on `name` may log in with `password`.
    pub fn activate(&self, name: &str, password: &str) {
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), password.as_bytes().to_vec());
    }

    pub fn revoke(&self, name: &str) {
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    pub fn password(&self, name: &str) -> Option<Vec<u8>> {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_open_only_while_active() {
        let c = Credentials::default();
        let a = Credentials::generate().unwrap();
        assert_ne!(a, Credentials::generate().unwrap());
        assert_eq!(a.len(), 24);
        assert_eq!(c.password("p-1"), None, "generated is not yet valid");
        c.activate("p-1", &a);
        assert_eq!(c.password("p-1"), Some(a.into_bytes()));
        c.revoke("p-1");
        assert_eq!(c.password("p-1"), None);
    }
}
