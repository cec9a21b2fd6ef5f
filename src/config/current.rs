//! The running config, shared with whoever reads it while the master runs (the API,
//! the pages). A reconfiguration replaces it whole; a reader takes a snapshot, so one
//! answer never mixes two configs.

use super::Config;
use std::sync::{Arc, RwLock};

/// The config in force, with how many times it was replaced (what was read from
/// it and kept, like a webhook's secret, is read again once that moves on).
#[derive(Debug)]
pub struct Current(RwLock<(u64, Arc<Config>)>);

impl Current {
    pub fn new(config: Arc<Config>) -> Current {
        Current(RwLock::new((0, config)))
    }

    /// A snapshot of the config in force.
    pub fn get(&self) -> Arc<Config> {
        self.snapshot().1
    }

    /// The config in force and its generation.
    pub fn snapshot(&self) -> (u64, Arc<Config>) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `config` in force.
    pub fn set(&self, config: Arc<Config>) {
        let mut current = self.0.write().unwrap_or_else(|p| p.into_inner());
        *current = (current.0 + 1, config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_config_moves_the_generation_on() {
        let config = crate::config::parse("[master]\ndata_dir = 'd'\n").expect("config");
        let current = Current::new(Arc::new(config.clone()));
        assert_eq!(current.snapshot().0, 0);
        let mut other = config;
        other.master.shutdown_grace = 1;
        current.set(Arc::new(other));
        let (generation, now) = current.snapshot();
        assert_eq!((generation, now.master.shutdown_grace), (1, 1));
    }
}
