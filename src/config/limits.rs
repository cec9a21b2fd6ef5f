//! `[limits]`: bounds that keep one build from filling the master's disk or running
//! forever, with defaults a shared master can live with. Step defaults are filled in
//! here, once, so a step's own setting always wins.

use super::error::Problems;
use super::file::LimitsTable;
use super::{BuilderConfig, Step};

/// `[limits]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes kept of one log of a step before its middle is dropped.
    pub log_max_size: u64,
    /// Of a log past `log_max_size`, the last bytes kept (after a marker).
    pub log_tail_size: u64,
    /// `max_size` of transfer steps that do not set one.
    pub upload_max_size: u64,
    /// `max_time` (seconds) of shell steps that do not set one.
    pub max_time: u64,
    /// Free bytes on the data folder's file system below which no build starts and
    /// running ones are stopped.
    pub min_free_disk: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            log_max_size: 1 << 30,
            log_tail_size: 1 << 20,
            upload_max_size: 1 << 30,
            max_time: 24 * 3600,
            min_free_disk: 256 << 20,
        }
    }
}

pub(super) fn limits(table: Option<&LimitsTable>, problems: &mut Problems) -> Limits {
    let defaults = Limits::default();
    let Some(t) = table else {
        return defaults;
    };
    let positive =
        |value: &Option<toml::Spanned<u64>>, name: &str, problems: &mut Problems| match value {
            Some(v) if *v.get_ref() == 0 => {
                problems.at(v.span(), format!("{name} must be more than 0"));
                None
            }
            Some(v) => Some(*v.get_ref()),
            None => None,
        };
    let limits = Limits {
        log_max_size: positive(&t.log_max_size, "log_max_size", problems)
            .unwrap_or(defaults.log_max_size),
        log_tail_size: t
            .log_tail_size
            .as_ref()
            .map_or(defaults.log_tail_size, |v| *v.get_ref()),
        upload_max_size: positive(&t.upload_max_size, "upload_max_size", problems)
            .unwrap_or(defaults.upload_max_size),
        max_time: positive(&t.max_time, "max_time", problems).unwrap_or(defaults.max_time),
        min_free_disk: t
            .min_free_disk
            .as_ref()
            .map_or(defaults.min_free_disk, |v| *v.get_ref()),
    };
    if let Some(tail) = &t.log_tail_size {
        if limits.log_tail_size > limits.log_max_size {
            problems.at(tail.span(), "log_tail_size is larger than log_max_size");
        }
    }
    limits
}

impl Limits {
    /// Gives every step that sets no `max_time` or `max_size` the default.
    pub(super) fn fill_step_defaults(&self, builders: &mut [BuilderConfig]) {
        for step in builders.iter_mut().flat_map(|b| b.steps.iter_mut()) {
            match &mut step.action {
                Step::Shell(s) => {
                    s.max_time.get_or_insert(self.max_time);
                }
                Step::Upload(u) => {
                    u.limits.max_size.get_or_insert(self.upload_max_size);
                }
                Step::Download(d) => {
                    d.limits.max_size.get_or_insert(self.upload_max_size);
                }
                Step::DirectoryUpload(d) => {
                    d.limits.max_size.get_or_insert(self.upload_max_size);
                }
                _ => {}
            }
        }
    }
}
