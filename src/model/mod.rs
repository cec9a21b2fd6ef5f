//! Types that several parts of the master share: the configuration produces them,
//! the store records them, the scheduler, the runner and the latent pools act on them.
//! They live here, depending on none of those parts, so that no two of them depend on
//! each other both ways.
//!
//! - [`result`]: build and step results.
//! - [`instance`]: a latent instance's phases and state machine; [`accounting`]: its
//!   times and cost.
//! - [`worker`]: a worker's recorded connection state.
//! - [`schedule`]: what schedulers decide (requests to make, changes to hold).
//! - [`cron`], [`filter`]: when timed schedulers fire, which changes others take.
//! - [`boot_script`]: a latent instance's boot script template.
//! - [`property`]: bounds on properties that come from outside.

pub mod accounting;
pub mod boot_script;
pub mod cron;
pub mod filter;
pub mod instance;
pub mod property;
pub mod result;
pub mod schedule;
pub mod worker;

pub use instance::{Instance, Phase};
pub use result::BuildResult;
pub use schedule::{ChangePlan, Fire};
pub use worker::WorkerState;
