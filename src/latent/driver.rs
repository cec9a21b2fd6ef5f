//! What a cloud must offer for latent instances: launch, look, terminate. A new cloud
//! is one file implementing [`Driver`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A driver call's future.
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The instance's worker name (unique, also its ownership tag).
    pub name: String,
    pub pool: String,
    /// The rendered boot script (user data).
    pub user_data: String,
    /// Idempotency token: a retried launch with the same token makes no second instance.
    pub client_token: String,
    /// Launch on the on-demand market even if the pool asks for spot (the build
    /// it is for was ended by a spot interruption).
    #[cfg_attr(not(feature = "ec2"), allow(dead_code))]
    pub on_demand: bool,
}

/// A launched instance: the cloud's id, and where the driver put it when it had
/// choices (`subnet/type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub cloud_id: String,
    pub placement: Option<String>,
    /// The market it runs on (`spot`, `on-demand`), for clouds that have markets.
    pub market: Option<String>,
}

/// The cloud's view of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudState {
    /// Exists, not running yet.
    #[cfg_attr(not(feature = "ec2"), allow(dead_code))]
    Starting,
    Running,
    /// Running, but the cloud has announced it will end it (a spot interruption
    /// notice), with the cloud's words.
    #[cfg_attr(not(feature = "ec2"), allow(dead_code))]
    Ending(String),
    /// Stopped, terminated or vanished, with the cloud's words.
    Gone(String),
}

/// A failed driver call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError {
    pub message: String,
    /// Worth retrying (throttling, server errors) rather than failing the instance.
    pub transient: bool,
    /// The cloud's error code, if it gave one.
    pub code: Option<String>,
}

impl DriverError {
    pub fn permanent(message: impl Into<String>) -> DriverError {
        DriverError {
            message: message.into(),
            transient: false,
            code: None,
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An instance the cloud says belongs to this master and pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedInstance {
    pub cloud_id: String,
    /// Its worker name, from its tag.
    pub name: Option<String>,
}

/// A place instances come from.
pub trait Driver: Send + Sync + fmt::Debug {
    /// Starts an instance running `spec.user_data`; returns the cloud's id for it.
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, String>;
    /// [`Driver::launch`], saying where the instance was put; drivers that choose
    /// among subnets or instance types override it.
    fn launch_placed<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, Launched> {
        Box::pin(async move {
            let cloud_id = self.launch(spec).await?;
            Ok(Launched {
                cloud_id,
                placement: None,
                market: None,
            })
        })
    }
    /// Ends an instance whose launch may have started but whose id was never
    /// recorded (the master stopped in between), found by its launch token; drivers
    /// that list their instances by tag find such ones with [`Driver::owned`] instead.
    fn end_launch<'a>(&'a self, client_token: &'a str) -> DriverFuture<'a, ()> {
        let _ = client_token;
        Box::pin(async { Ok(()) })
    }
    /// Whether [`Driver::end_launch`] finds an instance another master launched
    /// (then a master taking over ends them that way, not by cloud id).
    fn ends_by_token(&self) -> bool {
        false
    }
    /// Whether the cloud may end an instance on its own (spot interruptions,
    /// maintenance): then a ready instance is still watched, and its end is told
    /// apart from a crash of its worker.
    fn watches_live(&self) -> bool {
        false
    }
    /// Whether [`Driver::stop`] and [`Driver::restart`] work (`idle_action = "stop"`).
    fn can_stop(&self) -> bool {
        false
    }
    /// Stops the instance, keeping it (and its disk) to be started again; resolves
    /// once it is stopped.
    fn stop<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, ()> {
        let _ = cloud_id;
        Box::pin(async { Err(DriverError::permanent("this driver cannot stop instances")) })
    }
    /// Starts a stopped instance again with new user data (fresh credentials).
    fn restart<'a>(&'a self, cloud_id: &'a str, user_data: &'a str) -> DriverFuture<'a, ()> {
        let _ = (cloud_id, user_data);
        Box::pin(async {
            Err(DriverError::permanent(
                "this driver cannot restart instances",
            ))
        })
    }
    /// How the cloud sees the instance now.
    fn state<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, CloudState>;
    /// Ends the instance; succeeds if it is already gone.
    fn terminate<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, ()>;
    /// Every instance of this master's pool the cloud still has, found by the tags it
    /// was launched with; `None` if the driver cannot list them (then only what the
    /// database recorded is reconciled).
    fn owned(&self) -> DriverFuture<'_, Option<Vec<OwnedInstance>>> {
        Box::pin(async { Ok(None) })
    }
}
