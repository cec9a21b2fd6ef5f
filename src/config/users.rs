//! `[[api_user]]`: people who log in to the API from a browser with a password, each
//! with roles like a token's. Only a password's Argon2id hash is in the config
//! (`pbmaster hash-password` makes one); checked here to be one.

use super::api::roles;
use super::error::Problems;
use super::file::ApiUserTable;
use super::Roles;
use std::collections::HashSet;

/// One user.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiUser {
    pub name: String,
    pub roles: Roles,
    /// The PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
}

impl std::fmt::Debug for ApiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiUser")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Every `[[api_user]]`, checked.
pub(super) fn users(tables: &[ApiUserTable], problems: &mut Problems) -> Vec<ApiUser> {
    let mut names = HashSet::new();
    let mut users = Vec::new();
    for t in tables {
        let name = t.name.get_ref();
        if !names.insert(name.as_str()) {
            problems.at(t.name.span(), format!("api user {name:?} is defined twice"));
        }
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            problems.at(
                t.name.span(),
                "api user: a name of 1 to 128 characters, without control characters",
            );
        }
        let roles = roles(&t.roles, &format!("api user {name:?}"), problems);
        let hash = t.password_hash.get_ref();
        if let Err(why) = check_hash(hash) {
            problems.at(t.password_hash.span(), format!("api user {name:?}: {why}"));
        }
        users.push(ApiUser {
            name: name.clone(),
            roles,
            password_hash: hash.clone(),
        });
    }
    users
}

/// Whether `hash` is an Argon2id PHC string (what `pbmaster hash-password` prints).
fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = argon2::PasswordHash::new(hash).map_err(|e| {
        format!("password_hash is not a PHC string ({e}); make one with `pbmaster hash-password`")
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err("password_hash must be an argon2id hash (`pbmaster hash-password`)".into());
    }
    Ok(())
}

/// An Argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `hash` (slow on purpose: run it off the async threads).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(check_hash(&hash).is_ok());
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
        assert!(!verify_password("not a hash", "correct horse"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuv").is_err());
    }
}
