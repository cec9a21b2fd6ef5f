//! `[retention]`: how long finished builds and their logs are kept, and whether
//! finished logs are compressed. Without the section everything is kept forever, as
//! before it existed; finished logs are compressed either way unless told not to.

use super::error::Problems;
use super::file::RetentionTable;
use std::time::Duration;
use toml::Spanned;

/// `[retention]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished builds older than this are deleted with their steps, logs and
    /// finished requests; `None`: kept forever.
    pub builds: Option<Duration>,
    /// Logs of builds finished longer ago than this are deleted (the steps stay,
    /// marked); `None`: kept forever.
    pub logs: Option<Duration>,
    /// Finished builds' logs are compressed with zstd.
    pub compress_logs: bool,
    /// How often the janitor looks for what expired (it also looks at start).
    pub interval: Duration,
}

/// The janitor's period when none is set: often enough for a horizon of days, rare
/// enough to cost nothing.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            builds: None,
            logs: None,
            compress_logs: true,
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// A duration as written in the config: a whole number and a unit, `s`, `m`, `h`,
/// `d` or `w` ("90s", "12h", "30d").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (s, m, h, d or w)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    if n == 0 {
        return Err(format!("{text:?} must be more than 0"));
    }
    // A horizon beyond a thousand years is a typo, and would overflow time sums.
    match n.checked_mul(seconds) {
        Some(s) if s <= 1000 * 365 * 86_400 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{text:?} is too long")),
    }
}

pub(super) fn retention(table: Option<&RetentionTable>, problems: &mut Problems) -> Retention {
    let defaults = Retention::default();
    let Some(t) = table else {
        return defaults;
    };
    let mut duration = |value: &Option<Spanned<String>>, name: &str| {
        let v = value.as_ref()?;
        match parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.at(v.span(), format!("retention {name}: {e}"));
                None
            }
        }
    };
    let builds = duration(&t.builds, "builds");
    let logs = duration(&t.logs, "logs");
    let interval = duration(&t.interval, "interval");
    if let (Some(b), Some(l), Some(span)) = (builds, logs, t.logs.as_ref()) {
        if l > b {
            problems.at(
                span.span(),
                "retention logs is longer than builds: logs go with their builds",
            );
        }
    }
    Retention {
        builds,
        logs,
        compress_logs: t.compress_logs.unwrap_or(defaults.compress_logs),
        interval: interval.unwrap_or_else(|| {
            // A short horizon (in tests, say) is looked at often enough to hold.
            [builds, logs]
                .into_iter()
                .flatten()
                .map(|h| (h / 4).max(Duration::from_secs(1)))
                .fold(DEFAULT_INTERVAL, Duration::min)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn config(section: &str) -> String {
        format!("[master]\ndata_dir = \"data\"\n\n[retention]\n{section}\n")
    }

    #[test]
    fn accepts_durations_in_every_unit() {
        let cases = [
            ("2s", 2),
            ("90m", 5400),
            ("12h", 43_200),
            ("30d", 2_592_000),
            ("2w", 1_209_600),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_durations_without_a_number_or_unit_or_that_overflow() {
        for bad in [
            "",
            "30",
            "d",
            "-3d",
            "3 days",
            "3D",
            "1.5h",
            "0d",
            "99999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn without_the_section_everything_is_kept_and_logs_are_compressed() {
        let c = parse("[master]\ndata_dir = \"data\"\n").expect("config");
        assert_eq!(c.retention, Retention::default());
        assert_eq!(c.retention.builds, None);
        assert_eq!(c.retention.logs, None);
        assert!(c.retention.compress_logs);
    }

    #[test]
    fn horizons_are_read_and_set_the_janitor_s_period() {
        let c = parse(&config("builds = \"180d\"\nlogs = \"30d\"")).expect("config");
        assert_eq!(c.retention.builds, Some(Duration::from_secs(180 * 86_400)));
        assert_eq!(c.retention.logs, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.retention.interval, DEFAULT_INTERVAL);
        let c = parse(&config("logs = \"2s\"")).expect("config");
        assert_eq!(c.retention.interval, Duration::from_secs(1));
        let c = parse(&config(
            "logs = \"2s\"\ninterval = \"10m\"\ncompress_logs = false",
        ))
        .expect("config");
        assert_eq!(c.retention.interval, Duration::from_secs(600));
        assert!(!c.retention.compress_logs);
    }

    #[test]
    fn rejects_bad_horizons_with_their_place() {
        let errors = parse(&config("builds = \"7d\"\nlogs = \"thirty days\"")).expect_err("bad");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location, Some((6, 8)));
        assert!(errors[0].message.contains("retention logs"), "{errors:?}");
        let errors = parse(&config("builds = \"7d\"\nlogs = \"30d\"")).expect_err("longer");
        assert!(
            errors[0].message.contains("longer than builds"),
            "{errors:?}"
        );
        let errors = parse(&config("keep = \"7d\"")).expect_err("unknown key");
        assert!(errors[0].message.contains("keep"), "{errors:?}");
    }
}
