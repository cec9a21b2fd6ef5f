//! Reporters: outside services told about builds — GitHub and GitLab commit statuses,
//! mail over SMTP, a JSON push (`[[reporter]]`, see [`crate::config::ReporterConfig`]).
//!
//! # Layout
//! - [`select`]: which reporters want a build event, and the payload queued for each
//!   (pure; the coordinator calls it while recording the event).
//! - [`repo`]: a repository URL to the owner and project path a service knows,
//!   refusing anything that could leave the API path.
//! - [`request`]: the exact HTTP request each service expects (pure).
//! - [`email`]: the mail and its sending over SMTP.
//! - [`deliver`]: the task that sends what the store's outbox holds, with retries.

pub mod deliver;
pub mod email;
pub mod repo;
pub mod request;
pub mod select;

pub use deliver::Outbox;
pub use select::{reports_for, BuildFacts};
