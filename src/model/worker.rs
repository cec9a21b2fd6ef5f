//! What the master records about a configured worker's connection.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Where a worker's connection is, as recorded (`GET /api/workers`, `pbmaster workers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Its password checked out; the handshake calls are under way.
    Attaching,
    /// Every handshake call answered: it may be given builds.
    Attached,
    /// Not connected (or the master restarted since it was).
    Disconnected,
}

impl WorkerState {
    pub const ALL: [WorkerState; 3] = [
        WorkerState::Attaching,
        WorkerState::Attached,
        WorkerState::Disconnected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Attaching => "attaching",
            WorkerState::Attached => "attached",
            WorkerState::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkerState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkerState::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown worker state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_back_from_their_names_only() {
        for w in WorkerState::ALL {
            assert_eq!(w.name().parse::<WorkerState>(), Ok(w));
            assert_eq!(serde_json::json!(w), w.name());
        }
        assert!("connected".parse::<WorkerState>().is_err());
        assert!("Attached".parse::<WorkerState>().is_err());
    }
}
