//! The cred challenge/response PB logins use (`IUsernameHashedPassword`).
//!
//! The server sends 16 unpredictable bytes; the client answers
//! `MD5(MD5(password) ‖ challenge)`. The server needs the password (or its MD5) to check.

use md5::{Digest, Md5};

/// Length of a challenge and of a response.
pub const DIGEST_LEN: usize = 16;

/// What the client answers for `password` and `challenge`.
pub fn response(password: &[u8], challenge: &[u8]) -> [u8; DIGEST_LEN] {
    response_from_hash(&password_md5(password), challenge)
}

/// The password's MD5: all a client needs to keep to answer challenges.
pub fn password_md5(password: &[u8]) -> [u8; DIGEST_LEN] {
    Md5::digest(password).into()
}

/// The same, from the password's MD5 when the server stores only that.
pub fn response_from_hash(password_md5: &[u8; DIGEST_LEN], challenge: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Md5::new();
    h.update(password_md5);
    h.update(challenge);
    h.finalize().into()
}

/// Whether `answer` proves knowledge of `password`. Compares in constant time.
pub fn verify(password: &[u8], challenge: &[u8], answer: &[u8]) -> bool {
    let expected = response(password, challenge);
    answer.len() == DIGEST_LEN
        && expected
            .iter()
            .zip(answer)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A challenge from caller-supplied randomness. Twisted hashes random letters; any 16
/// unpredictable bytes serve, so the bytes are used as they are.
pub fn challenge(random: [u8; DIGEST_LEN]) -> [u8; DIGEST_LEN] {
    random
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn matches_reference_vector() {
        let challenge: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            hex(&Md5::digest(b"pass")),
            "1a1dc91c907325c69271ddf0c944bc72"
        );
        assert_eq!(
            hex(&response(b"pass", &challenge)),
            "198644c1ee893aeeaf893a34e0eb8f44"
        );
    }

    #[test]
    fn verifies_only_the_right_password() {
        let c = [7u8; 16];
        let r = response(b"secret", &c);
        assert!(verify(b"secret", &c, &r));
        assert!(!verify(b"Secret", &c, &r));
        assert!(!verify(b"secret", &c, &r[..15]));
    }
}
