//! What the coordinator asks the world to do. [`super::Master::handle`] decides and
//! records; it returns these, and the runtime ([`super::runtime`]) carries them out once
//! the wake-up's writes are committed: nothing reaches a worker, a cloud or a caller
//! that the database does not have yet.

use super::latent::LatentMsg;
use super::Msg;
use crate::config::BuilderConfig;
use crate::conn::ConnHandle;
use crate::latent::driver::{Driver, LaunchSpec};
use crate::model::Phase;
use crate::runner::Properties;
use crate::store::BuildRow;
use crate::worker::Attached;
use pbwire::jelly::{Failure, FailureStyle, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One thing to do.
#[derive(Debug)]
pub enum Effect {
    /// Something for one worker connection.
    Conn { conn: ConnHandle, op: ConnOp },
    /// Probe the connection a login would replace, then run the attach handshake;
    /// reported back as [`Msg::Admitted`].
    Admit(Box<Admission>),
    /// Run a build on its worker; reported back as [`Msg::BuildDone`].
    RunBuild(Box<BuildStart>),
    /// Ask a running build to stop.
    StopBuild {
        signal: watch::Sender<Option<String>>,
        why: String,
    },
    /// Deliver `msg` to the coordinator after `after`.
    Timer { after: Duration, msg: Box<Msg> },
    /// Launch an instance (or take an adopted one) and watch it while it starts.
    Watch(Box<InstanceWatch>),
    /// End a cloud instance; `report` names the instance to report as
    /// [`LatentMsg::Terminated`] once done.
    Terminate {
        driver: Arc<dyn Driver>,
        cloud_id: Option<String>,
        report: Option<(String, i64)>,
    },
    /// End what a launch recorded with `client_token` may have started although its
    /// id was never recorded (the master stopped mid-launch); reported like
    /// [`Effect::Terminate`].
    EndLaunch {
        driver: Arc<dyn Driver>,
        client_token: String,
        report: (String, i64),
    },
    /// Stop a cloud instance to keep it; reported as [`LatentMsg::Parked`] or
    /// [`LatentMsg::ParkFailed`].
    Park {
        driver: Arc<dyn Driver>,
        cloud_id: String,
        report: (String, i64),
    },
    /// Poll a pool's cloud every `every` for instances no live one accounts for.
    Sweep {
        driver: Arc<dyn Driver>,
        pool: String,
        every: Duration,
        /// Cancelled when the pool is removed or its driver replaced.
        stop: tokio_util::sync::CancellationToken,
    },
    /// Send an attached worker its builder list again (builders were added, removed
    /// or moved); reported back as [`Msg::BuildersListed`].
    SetBuilders {
        worker: String,
        attached: Attached,
        builders: Vec<(String, String)>,
        generation: u64,
    },
    /// A latent instance's one-time credentials may now log in.
    ActivateCredentials { name: String, password: String },
    /// ... or may not any more.
    RevokeCredentials { name: String },
    /// The schedulers' next wake-up (wall-clock seconds), for their timer.
    WakeAt(Option<f64>),
    /// Reports were queued in the outbox: wake the delivery task.
    Deliver,
    /// Answer whoever asked (the API, a stopping master).
    Reply(Reply),
}

/// What to do with a worker connection.
#[derive(Debug)]
pub enum ConnOp {
    /// Call `method` on the worker's bot object; the answer is not awaited by anyone.
    Call {
        mind: i64,
        method: &'static str,
    },
    /// Answer a call the connection made.
    Answer {
        request_id: i64,
        answer: Result<Value, Failure>,
    },
    /// Complete the login, failures then sent in the worker's Python's style.
    AcceptLogin {
        style: FailureStyle,
    },
    RefuseLogin(Failure),
    Close(String),
}

/// A login to admit (see `admission.rs`).
#[derive(Debug)]
pub struct Admission {
    pub name: String,
    pub conn: ConnHandle,
    pub mind: Option<i64>,
    /// The live attachment the login would replace, probed first.
    pub old: Option<Attached>,
    /// (builder, directory) pairs to set up on the worker.
    pub builders: Vec<(String, String)>,
}

/// A build to run.
#[derive(Debug)]
pub struct BuildStart {
    pub build: BuildRow,
    pub builder: Arc<BuilderConfig>,
    /// The worker's name, and its attachment.
    pub worker_name: String,
    pub worker: Attached,
    /// The worker's object for this builder.
    pub wfb: i64,
    pub properties: Properties,
    pub stop: watch::Receiver<Option<String>>,
}

/// A latent instance to launch or adopt, and watch while it starts.
#[derive(Debug)]
pub struct InstanceWatch {
    pub driver: Arc<dyn Driver>,
    pub pool: String,
    pub id: i64,
    pub start: WatchStart,
    pub launch_timeout: Duration,
    pub poll: Duration,
    /// The instance's phase as the coordinator moves it.
    pub phase: watch::Receiver<Phase>,
}

/// How a watch begins.
#[derive(Debug)]
pub enum WatchStart {
    Launch(LaunchSpec),
    /// An instance from before a restart, by its cloud id.
    Adopt(String),
    /// A stopped instance started again with new user data.
    Resume {
        cloud_id: String,
        user_data: String,
    },
}

/// An answer to send: the closure owns its channel.
pub struct Reply(Box<dyn FnOnce() + Send>);

impl Reply {
    pub fn new(send: impl FnOnce() + Send + 'static) -> Reply {
        Reply(Box::new(send))
    }

    pub fn send(self) {
        (self.0)()
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

impl Effect {
    /// A timer for a latent event.
    pub fn latent_timer(after: Duration, msg: LatentMsg) -> Effect {
        Effect::Timer {
            after,
            msg: Box::new(Msg::Latent(msg)),
        }
    }
}
