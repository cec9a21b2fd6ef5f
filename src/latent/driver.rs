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
}

/// The cloud's view of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudState {
    /// Exists, not running yet.
    #[cfg_attr(not(feature = "ec2"), allow(dead_code))]
    Starting,
    Running,
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
