//! The open-file limit the master needs, and raising the soft limit to it at start:
//! a soft limit of 1024, common by default, would otherwise make `accept` fail with
//! EMFILE long before `max_connections` is reached.

use crate::config::Config;
use rlimit::Resource;
use std::fmt;

/// Builds whose log file counts in full; see [`needed`].
const LOG_FILES: u64 = 1024;
/// Descriptors per latent instance: a boot process's handle and its log (`local`), or
/// connections to the cloud's API (`ec2`).
const PER_INSTANCE: u64 = 2;
/// API clients allowed for at once, two descriptors each: the socket, and the log file
/// a `follow` request streams.
const HTTP_CLIENTS: u64 = 64;
/// SQLite: the database, its write-ahead log, the shared memory, temporary files.
const DATABASE: u64 = 16;
/// Standard streams, the two listeners, the runtime's epoll and wakers, the signal
/// pipe, and room for what the libraries open.
const BASE: u64 = 64;

/// Descriptors the master may hold open at once with `config`:
///
/// ```text
///   max_connections                  one socket per PB connection admitted
/// + min(build slots, 1024)           one log file per running build
/// + 2 × Σ max_instances              each latent instance (PER_INSTANCE)
/// + 2 × 64                           HTTP clients (HTTP_CLIENTS)
/// + 16                               the database (DATABASE)
/// + 64                               everything else (BASE)
/// ```
///
/// Build slots are the builds the config lets run at once: each worker's
/// `max_builds`, and each pool's `max_instances × max_builds`. They count in full
/// only up to 1024, so that thousands of configured workers (each able to build, few
/// at once in practice) do not demand twice their connections; a master that really
/// runs more builds than that at once needs a hard limit with room to spare.
pub fn needed(config: &Config) -> u64 {
    let workers: u64 = config.workers.iter().map(|w| w.max_builds as u64).sum();
    let pools: u64 = config
        .latent_pools
        .iter()
        .map(|p| (p.max_instances as u64).saturating_mul(p.max_builds as u64))
        .sum();
    let instances: u64 = config
        .latent_pools
        .iter()
        .map(|p| p.max_instances as u64)
        .sum();
    (config.master.max_connections as u64)
        .saturating_add(workers.saturating_add(pools).min(LOG_FILES))
        .saturating_add(instances.saturating_mul(PER_INSTANCE))
        .saturating_add(2 * HTTP_CLIENTS + DATABASE + BASE)
}

/// The hard limit is below what the master needs; only the administrator can raise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardLimitTooLow {
    pub needed: u64,
    pub hard: u64,
}

impl fmt::Display for HardLimitTooLow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { needed, hard } = self;
        write!(
            f,
            "the master needs up to {needed} open files (max_connections plus a margin) \
             but the hard limit is {hard}; raise it to at least {needed} (as root, \
             `ulimit -Hn {needed}` in the shell that starts the master, or \
             LimitNOFILE={needed} in its systemd unit) or lower [master] max_connections"
        )
    }
}

/// The soft limit to set, given the current limits: `None` when the soft limit is
/// already enough.
fn new_soft_limit(needed: u64, soft: u64, hard: u64) -> Result<Option<u64>, HardLimitTooLow> {
    if soft >= needed {
        Ok(None)
    } else if hard < needed {
        Err(HardLimitTooLow { needed, hard })
    } else {
        Ok(Some(needed))
    }
}

/// Raises the soft open-file limit to `needed` if it is lower. Returns the old and
/// new soft limits when it changed them.
pub fn raise(needed: u64) -> Result<Option<(u64, u64)>, String> {
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    let Some(new) = new_soft_limit(needed, soft, hard).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    Resource::NOFILE
        .set(new, hard)
        .map_err(|e| format!("cannot raise the open-file limit from {soft} to {new}: {e}"))?;
    Ok(Some((soft, new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        crate::config::parse(&format!(
            "[master]\ndata_dir = \"d\"\nmax_connections = 500\n{extra}"
        ))
        .expect("config")
    }

    #[test]
    fn needs_the_connections_and_a_margin() {
        // 500 + 0 builds + 0 instances + 128 + 16 + 64.
        assert_eq!(needed(&config("")), 708);
    }

    #[test]
    fn counts_build_slots_and_latent_instances() {
        let c = config(
            "[[worker]]\nname = \"a\"\npassword = \"p\"\nmax_builds = 3\n\
             [[worker]]\nname = \"b\"\npassword = \"p\"\n\
             [[latent_pool]]\nname = \"pool\"\ndriver = \"local\"\nvenv = \"v\"\n\
             max_instances = 4\nmax_builds = 2\n",
        );
        // 500 + (3 + 1 + 4 × 2) builds + 2 × 4 instances + 128 + 16 + 64.
        assert_eq!(needed(&c), 500 + 12 + 8 + 208);
    }

    #[test]
    fn build_slots_count_up_to_1024() {
        let workers: String = (0..2000)
            .map(|i| format!("[[worker]]\nname = \"w{i}\"\npassword = \"p\"\n"))
            .collect();
        assert_eq!(needed(&config(&workers)), 500 + 1024 + 208);
    }

    #[test]
    fn the_soft_limit_is_raised_to_what_is_needed_within_the_hard_limit() {
        assert_eq!(new_soft_limit(2000, 1024, 4096), Ok(Some(2000)));
        assert_eq!(new_soft_limit(2000, 1024, 2000), Ok(Some(2000)));
        assert_eq!(new_soft_limit(2000, 1024, u64::MAX), Ok(Some(2000)));
    }

    #[test]
    fn a_soft_limit_already_high_enough_is_left_alone() {
        assert_eq!(new_soft_limit(2000, 2000, 4096), Ok(None));
        assert_eq!(new_soft_limit(2000, 8192, 8192), Ok(None));
    }

    #[test]
    fn a_hard_limit_below_the_need_names_both_numbers_and_the_fix() {
        let e = new_soft_limit(5000, 1024, 4096).expect_err("too low");
        assert_eq!(
            e,
            HardLimitTooLow {
                needed: 5000,
                hard: 4096
            }
        );
        let text = e.to_string();
        for part in ["5000", "4096", "ulimit -Hn 5000", "LimitNOFILE=5000"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
