//! What changed in the master, told to open pages as it happens (server-sent
//! events, see `web::push`). The coordinator's changes arrive as its notices, sent
//! once its wake-up is committed (a page that reads on an event finds what it was
//! told); builds send their steps and log bytes once the store has them.
//!
//! A bounded broadcast: each reader has a cursor into one ring of [`CAPACITY`]
//! events; a reader that falls behind is told how many it missed and catches up from
//! the store, so no reader makes the master hold more.

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for readers that have not taken them yet.
pub const CAPACITY: usize = 1024;

/// One change. Names are data: a page shows them as text only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    BuildStarted {
        build: i64,
        builder: String,
    },
    BuildFinished {
        build: i64,
        builder: String,
        result: String,
    },
    StepStarted {
        build: i64,
        step: i64,
        name: String,
    },
    StepFinished {
        build: i64,
        step: i64,
        result: String,
    },
    /// Bytes of a step's logs were recorded.
    Log {
        build: i64,
        step: i64,
    },
    RequestQueued {
        request: i64,
        builder: String,
    },
    WorkerAttached {
        worker: String,
    },
    WorkerDetached {
        worker: String,
    },
    /// A latent instance moved to `phase`.
    Instance {
        pool: String,
        instance: i64,
        phase: String,
    },
}

impl Event {
    /// The kind, as the `event:` field of the stream.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::BuildStarted { .. } => "build_started",
            Event::BuildFinished { .. } => "build_finished",
            Event::StepStarted { .. } => "step_started",
            Event::StepFinished { .. } => "step_finished",
            Event::Log { .. } => "log",
            Event::RequestQueued { .. } => "request_queued",
            Event::WorkerAttached { .. } => "worker_attached",
            Event::WorkerDetached { .. } => "worker_detached",
            Event::Instance { .. } => "instance",
        }
    }

    /// The build it is about, if any.
    pub fn build(&self) -> Option<i64> {
        match self {
            Event::BuildStarted { build, .. }
            | Event::BuildFinished { build, .. }
            | Event::StepStarted { build, .. }
            | Event::StepFinished { build, .. }
            | Event::Log { build, .. } => Some(*build),
            _ => None,
        }
    }
}

/// The sending side, shared by whoever changes something; readers subscribe.
#[derive(Debug, Clone)]
pub struct Events(broadcast::Sender<Event>);

impl Default for Events {
    fn default() -> Events {
        Events(broadcast::channel(CAPACITY).0)
    }
}

impl Events {
    /// Tells every reader; nobody listening is not an error.
    pub fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn a_slow_reader_skips_and_memory_stays_bounded() {
        let events = Events::default();
        let mut slow = events.subscribe();
        for i in 0..(CAPACITY as i64 + 10) {
            events.send(Event::Log { build: i, step: 1 });
        }
        assert_eq!(slow.try_recv(), Err(TryRecvError::Lagged(10)));
        assert_eq!(slow.try_recv(), Ok(Event::Log { build: 10, step: 1 }));
        assert_eq!(slow.len(), CAPACITY - 1);
    }

    #[test]
    fn events_are_tagged_json() {
        let e = Event::StepStarted {
            build: 3,
            step: 1,
            name: "</script>".into(),
        };
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["kind"], e.kind());
        assert_eq!(json["name"], "</script>");
        assert_eq!(e.build(), Some(3));
    }
}
