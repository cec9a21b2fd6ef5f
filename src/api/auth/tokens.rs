//! The API tokens, read once at start and kept only as SHA-256 digests; a presented
//! token is hashed and compared with every digest in constant time.

use crate::config::{token_digest, ApiConfig, Roles, TokenSecret};
use std::fmt;

struct Token {
    name: String,
    roles: Roles,
    digest: [u8; 32],
}

/// Every configured token.
pub struct Tokens {
    list: Vec<Token>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.list.iter().map(|t| t.name.as_str()).collect();
        write!(f, "Tokens({names:?})")
    }
}

impl Tokens {
    /// Reads every token's variable or file; one that is missing or unusable, or two
    /// tokens with the same secret, stop the master from starting.
    pub fn from_config(api: &ApiConfig) -> Result<Tokens, String> {
        let mut list: Vec<Token> = Vec::new();
        for t in &api.tokens {
            let digest = t
                .secret
                .digest()
                .map_err(|e| format!("api token {:?}: {e}", t.name))?;
            if let Some(same) = list.iter().find(|other| other.digest == digest) {
                return Err(format!(
                    "api tokens {:?} and {:?} have the same secret",
                    same.name, t.name
                ));
            }
            if let TokenSecret::File(path) = &t.secret {
                warn_if_shared(&t.name, path);
            }
            list.push(Token {
                name: t.name.clone(),
                roles: t.roles,
                digest,
            });
        }
        Ok(Tokens { list })
    }

    /// The name and roles of the token presented, if it is one. Every digest is
    /// compared, whole, whichever matches.
    pub fn check(&self, presented: &str) -> Option<(&str, Roles)> {
        let digest = token_digest(presented.as_bytes());
        let mut found = None;
        for t in &self.list {
            if same(&t.digest, &digest) {
                found = Some((t.name.as_str(), t.roles));
            }
        }
        found
    }
}

/// Equality that takes as long whatever the first differing byte.
/// Two byte strings compared in time that depends on their lengths only (both are
/// hashed first, so neither length nor content leaks through timing).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    same(&token_digest(a), &token_digest(b))
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// A token file others may read is worth a warning at start.
fn warn_if_shared(name: &str, path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "api token {name:?}: {} can be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Role};

    fn tokens(extra: &str) -> Result<Tokens, String> {
        let c = parse(&format!("[master]\ndata_dir = \"d\"\n{extra}")).unwrap();
        Tokens::from_config(&c.api)
    }

    #[test]
    fn accepts_each_token_with_its_roles_and_nothing_else() {
        let t = tokens(
            "[[api_token]]\nname = \"ci\"\nroles = [\"force\"]\ntoken = \"ci-0123456789abcdef\"\n\
             [[api_token]]\nname = \"ops\"\nroles = [\"admin\"]\ntoken = \"ops-0123456789abcdef\"\n",
        )
        .unwrap();
        let (name, roles) = t.check("ci-0123456789abcdef").unwrap();
        assert_eq!(name, "ci");
        assert!(roles.allows(Role::Force) && !roles.allows(Role::Stop));
        assert_eq!(t.check("ops-0123456789abcdef").unwrap().0, "ops");
        for wrong in [
            "",
            "ci-0123456789abcde",
            "ci-0123456789abcdef ",
            "CI-0123456789ABCDEF",
        ] {
            assert!(t.check(wrong).is_none(), "{wrong:?}");
        }
        assert!(!format!("{t:?}").contains("0123"));
    }

    #[test]
    fn rejects_two_tokens_with_one_secret() {
        let e = tokens(
            "[[api_token]]\nname = \"a\"\nroles = [\"read\"]\ntoken = \"0123456789abcdef\"\n\
             [[api_token]]\nname = \"b\"\nroles = [\"admin\"]\ntoken = \"0123456789abcdef\"\n",
        )
        .unwrap_err();
        assert!(e.contains("same secret"), "{e}");
    }

    #[test]
    fn compares_whole_digests() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(same(&a, &b));
        b[31] ^= 1;
        assert!(!same(&a, &b));
    }
}
