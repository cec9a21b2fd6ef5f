//! Shared helpers for the integration tests.
//!
//! Each test crate (`tests/*.rs` with `mod support;`) compiles this module on its own and
//! uses only part of it, so unused items are expected.
#![allow(dead_code)]

pub mod cargo_build;
pub mod changes;
pub mod chroot;
pub mod docker;
pub mod ec2;
pub mod ec2_cloud;
pub mod http;
pub mod latent;
pub mod master;
pub mod pb;
pub mod postgres;
pub mod recorder;
pub mod wait;
pub mod workers;
