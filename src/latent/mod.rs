//! Latent workers: build machines that exist only while there is work.
//!
//! # Layout
//!
//! - [`state`]: one instance's explicit state machine (requested → launching →
//!   booting → connecting → attaching → ready → building ⇄ idle → draining → stopping
//!   → stopped, or failed in any phase).
//! - [`plan`]: how many instances a pool starts for a demand, under its hard cap.
//! - [`driver`]: the small trait a cloud implements; [`local`] runs instances as local
//!   process groups; [`ec2`] (feature `ec2`) launches from the EC2 API, with calls
//!   paced by a [`budget`].
//! - [`template`]: boot scripts with the instance's one-time credentials.
//! - [`credentials`]: the one-time passwords, valid only while an instance may log in.
//!
//! The coordinator (`master::latent`) drives instances through these, records every
//! transition durably, and serializes the drain decision with build dispatch.

#[cfg(feature = "ec2")]
pub mod budget;
pub mod credentials;
pub mod driver;
#[cfg(feature = "ec2")]
pub mod ec2;
pub mod local;
pub mod plan;
pub mod state;
pub mod template;

pub use state::{Instance, Phase};
