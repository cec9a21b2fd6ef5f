//! Build and step results, as buildbot names them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Buildbot's result set. The order is buildbot's: a build's result is the worst of
/// what its steps contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildResult {
    Success,
    Warnings,
    Failure,
    Skipped,
    Exception,
    Retry,
    Cancelled,
}

impl BuildResult {
    pub const ALL: [BuildResult; 7] = [
        BuildResult::Success,
        BuildResult::Warnings,
        BuildResult::Failure,
        BuildResult::Skipped,
        BuildResult::Exception,
        BuildResult::Retry,
        BuildResult::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuildResult::Success => "success",
            BuildResult::Warnings => "warnings",
            BuildResult::Failure => "failure",
            BuildResult::Skipped => "skipped",
            BuildResult::Exception => "exception",
            BuildResult::Retry => "retry",
            BuildResult::Cancelled => "cancelled",
        }
    }

    /// The worse of two results; `skipped` never makes a build worse.
    pub fn worst(self, other: BuildResult) -> BuildResult {
        match (self, other) {
            (BuildResult::Skipped, o) | (o, BuildResult::Skipped) => o,
            (a, b) => a.max(b),
        }
    }
}

impl fmt::Display for BuildResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BuildResult {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BuildResult::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown result {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_follows_buildbot_order() {
        use BuildResult::*;
        assert_eq!(Success.worst(Warnings), Warnings);
        assert_eq!(Failure.worst(Warnings), Failure);
        assert_eq!(Skipped.worst(Success), Success);
        assert_eq!(Exception.worst(Failure), Exception);
        for r in BuildResult::ALL {
            assert_eq!(r.name().parse::<BuildResult>(), Ok(r));
        }
    }
}
