//! One latent instance's explicit state machine. Every phase a substantiation goes
//! through is a state with its own entry time, so each can be timed out and reported;
//! a failure keeps the phase it happened in.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Wanted by the demand; nothing asked of the cloud yet (the intent is recorded).
    Requested,
    /// The driver's launch call is under way.
    Launching,
    /// The instance exists; waiting for it to run.
    Booting,
    /// Running; waiting for its worker to log in with its one-time credentials.
    Connecting,
    /// Logged in; the handshake calls are under way.
    Attaching,
    /// Attached and free.
    Ready,
    /// Running builds.
    Building,
    /// Free after a build; stops when the idle time runs out.
    Idle,
    /// Chosen to stop: takes no new build, stops once its builds are done.
    Draining,
    /// The driver's terminate call is under way.
    Stopping,
    Stopped,
    Failed,
    /// Idle, being stopped to be kept (`idle_action = "stop"`): its disk stays.
    Parking,
    /// Stopped in the cloud and kept, to be started again for the next demand; not
    /// under `max_instances` but `max_stopped`.
    Parked,
}

impl Phase {
    pub const ALL: [Phase; 14] = [
        Phase::Requested,
        Phase::Launching,
        Phase::Booting,
        Phase::Connecting,
        Phase::Attaching,
        Phase::Ready,
        Phase::Building,
        Phase::Idle,
        Phase::Draining,
        Phase::Stopping,
        Phase::Stopped,
        Phase::Failed,
        Phase::Parking,
        Phase::Parked,
    ];

    /// A phase of the way to ready: requested, launching, booting, connecting,
    /// attaching.
    pub fn before_ready(self) -> bool {
        matches!(
            self,
            Phase::Requested
                | Phase::Launching
                | Phase::Booting
                | Phase::Connecting
                | Phase::Attaching
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Requested => "requested",
            Phase::Launching => "launching",
            Phase::Booting => "booting",
            Phase::Connecting => "connecting",
            Phase::Attaching => "attaching",
            Phase::Ready => "ready",
            Phase::Building => "building",
            Phase::Idle => "idle",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::Parking => "parking",
            Phase::Parked => "parked",
        }
    }

    /// Not ended: the cloud may have it (everything but the end states). All but
    /// `parked` count against the pool's cap.
    pub fn is_live(self) -> bool {
        !matches!(self, Phase::Stopped | Phase::Failed)
    }

    /// Counts against `max_instances`: live and not parked.
    pub fn is_counted(self) -> bool {
        self.is_live() && self != Phase::Parked
    }

    /// On its way to being usable.
    pub fn is_starting(self) -> bool {
        matches!(
            self,
            Phase::Requested
                | Phase::Launching
                | Phase::Booting
                | Phase::Connecting
                | Phase::Attaching
        )
    }

    /// May be given a build.
    pub fn takes_builds(self) -> bool {
        matches!(self, Phase::Ready | Phase::Building | Phase::Idle)
    }

    /// The phases an instance may move to from this one.
    fn next(self) -> &'static [Phase] {
        use Phase::*;
        match self {
            Requested => &[Launching, Stopped, Failed],
            Parking => &[Parked, Stopping, Failed],
            Parked => &[Launching, Stopping, Failed],
            Launching => &[Booting, Stopping, Failed],
            Booting => &[Connecting, Stopping, Failed],
            Connecting => &[Attaching, Stopping, Failed],
            Attaching => &[Ready, Stopping, Failed],
            Ready => &[Building, Draining, Stopping, Parking, Failed],
            Building => &[Idle, Building, Draining, Stopping, Failed],
            Idle => &[Building, Draining, Stopping, Parking, Failed],
            Draining => &[Stopping, Failed],
            Stopping => &[Stopped, Failed],
            Stopped | Failed => &[],
        }
    }

    pub fn can_move_to(self, to: Phase) -> bool {
        self.next().contains(&to)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown latent phase {s:?}"))
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("latent instance cannot go from {from} to {to}")]
pub struct BadTransition {
    pub from: Phase,
    pub to: Phase,
}

/// An instance: its phase, when it entered it, and why it failed if it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub id: i64,
    pub pool: String,
    /// Its worker name, unique to this instance.
    pub name: String,
    pub phase: Phase,
    /// When `phase` was entered (seconds since the epoch).
    pub since: f64,
    /// The cloud's id for it, once launched.
    pub cloud_id: Option<String>,
    /// Builds running on it now.
    pub builds: usize,
    /// Builds it has started in all (for `max_uses`).
    pub uses: u32,
    /// When it was asked for (for `max_age`).
    pub born: f64,
    /// The phase a failure happened in, and why.
    pub failure: Option<(Phase, String)>,
    /// Where the cloud put it, when the pool offers choices (`subnet/type`).
    pub placement: Option<String>,
    /// What it costs per hour, if the pool says.
    pub price_per_hour: Option<f64>,
    /// The market it runs on (`spot`, `on-demand`), for clouds that have markets.
    pub market: Option<String>,
}

impl Instance {
    pub fn new(id: i64, pool: &str, name: &str, now: f64) -> Instance {
        Instance {
            id,
            pool: pool.to_owned(),
            name: name.to_owned(),
            phase: Phase::Requested,
            since: now,
            cloud_id: None,
            builds: 0,
            uses: 0,
            born: now,
            failure: None,
            placement: None,
            price_per_hour: None,
            market: None,
        }
    }

    /// Moves to `to` at `now`, if the machine allows it.
    pub fn advance(&mut self, to: Phase, now: f64) -> Result<(), BadTransition> {
        if !self.phase.can_move_to(to) {
            return Err(BadTransition {
                from: self.phase,
                to,
            });
        }
        self.phase = to;
        self.since = now;
        Ok(())
    }

    /// Fails in the current phase with `why`.
    pub fn fail(&mut self, why: &str, now: f64) -> Result<(), BadTransition> {
        let during = self.phase;
        self.advance(Phase::Failed, now)?;
        self.failure = Some((during, why.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_parse_back_from_their_names_only() {
        for p in Phase::ALL {
            assert_eq!(p.name().parse::<Phase>(), Ok(p));
        }
        assert!("Ready".parse::<Phase>().is_err());
        assert!("".parse::<Phase>().is_err());
    }

    #[test]
    fn a_normal_life() {
        let mut i = Instance::new(1, "p", "p-1", 0.0);
        for (t, p) in [
            Phase::Launching,
            Phase::Booting,
            Phase::Connecting,
            Phase::Attaching,
            Phase::Ready,
            Phase::Building,
            Phase::Idle,
            Phase::Building,
            Phase::Idle,
            Phase::Draining,
            Phase::Stopping,
            Phase::Stopped,
        ]
        .into_iter()
        .enumerate()
        {
            i.advance(p, t as f64).unwrap();
        }
        assert!(!i.phase.is_live());
    }

    #[test]
    fn forbidden_moves_are_refused() {
        let mut i = Instance::new(1, "p", "p-1", 0.0);
        assert_eq!(
            i.advance(Phase::Ready, 1.0),
            Err(BadTransition {
                from: Phase::Requested,
                to: Phase::Ready
            })
        );
        i.advance(Phase::Launching, 1.0).unwrap();
        i.advance(Phase::Booting, 2.0).unwrap();
        i.advance(Phase::Connecting, 3.0).unwrap();
        i.advance(Phase::Attaching, 4.0).unwrap();
        i.advance(Phase::Ready, 5.0).unwrap();
        i.advance(Phase::Draining, 6.0).unwrap();
        // A draining instance never gets a build: the dispatch and the drain decision
        // cannot both win.
        assert!(i.advance(Phase::Building, 7.0).is_err());
    }

    #[test]
    fn failures_keep_their_phase() {
        let mut i = Instance::new(1, "p", "p-1", 0.0);
        i.advance(Phase::Launching, 1.0).unwrap();
        i.advance(Phase::Booting, 2.0).unwrap();
        i.fail("terminated by the cloud", 3.0).unwrap();
        assert_eq!(
            i.failure,
            Some((Phase::Booting, "terminated by the cloud".into()))
        );
        assert!(i.fail("again", 4.0).is_err());
    }
}
