//! Latent workers: build machines that exist only while there is work.
//!
//! # Layout
//!
//! - [`plan`]: how many instances a pool starts for a demand, under its hard cap.
//! - [`driver`]: the small trait a cloud implements; [`local`] runs instances as local
//!   process groups; [`ec2`] (feature `ec2`) launches from the EC2 API, with calls
//!   paced by a [`budget`]; [`docker`] (feature `docker`) runs containers.
//! - [`credentials`]: the one-time passwords, valid only while an instance may log in.
//!
//! An instance's phases and state machine live in `model::instance`, and boot scripts
//! in `model::boot_script`, shared with the store and the configuration.
//!
//! The coordinator (`master::latent`) drives instances through these, records every
//! transition durably, and serializes the drain decision with build dispatch.

#[cfg(feature = "ec2")]
pub mod budget;
pub mod credentials;
#[cfg(feature = "docker")]
pub mod docker;
pub mod driver;
#[cfg(feature = "ec2")]
pub mod ec2;
pub mod local;
pub mod plan;
