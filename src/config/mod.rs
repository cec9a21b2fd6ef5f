//! The master's TOML configuration: addresses, data folder, workers, builders and
//! their steps, and force schedulers. [`load`] reports every error with its line.

mod latent;
mod model;
mod schedulers;
mod steps;
mod validate;

pub use model::*;
pub use validate::load;
#[cfg(test)]
pub use validate::parse;
