//! Command-protocol versions a worker reports (`"3.3"`, `"2.16"`), compared leniently.

use std::cmp::Ordering;

/// A worker command's protocol version. Unparsable parts count as 0: versions come
/// from the peer and are never trusted to be well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandVersion(pub u32, pub u32);

impl CommandVersion {
    pub fn parse(s: &str) -> CommandVersion {
        let mut parts = s.trim().split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u32>()
                .unwrap_or(0)
        });
        CommandVersion(parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Whether this is older than `major.minor`.
    pub fn below(self, major: u32, minor: u32) -> bool {
        self.cmp(&CommandVersion(major, minor)) == Ordering::Less
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_leniently() {
        assert_eq!(CommandVersion::parse("3.3"), CommandVersion(3, 3));
        assert_eq!(CommandVersion::parse("2.16"), CommandVersion(2, 16));
        assert!(CommandVersion::parse("2.16").below(3, 0));
        assert!(!CommandVersion::parse("2.16").below(2, 15));
        assert_eq!(CommandVersion::parse("garbage"), CommandVersion(0, 0));
        assert_eq!(
            CommandVersion::parse("2026.11.28"),
            CommandVersion(2026, 11)
        );
    }
}
