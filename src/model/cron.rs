//! Five-field cron expressions ("minute hour day-of-month month day-of-week") in an IANA
//! time zone (UTC unless one is named), and the first matching minute after a given
//! time. Parsing and matching are the `croner` crate's; this module fixes the dialect
//! and turns times into seconds since the epoch.
//!
//! Each field is `*`, a number, a range `a-b`, any of these with a step (`*/15`,
//! `1-30/2`, `5/10` meaning `5-max/10`), or a comma-separated list of them. Months may
//! be written `JAN`-`DEC` and days of the week `SUN`-`SAT` (any case); day of week 0
//! and 7 are both Sunday. As in Vixie cron, when both day fields are restricted
//! (neither is `*`) a day matches if either does. `@daily`, `@weekly` and the other
//! nicknames are accepted, and croner's `L`, `W` and `#` day modifiers too.
//!
//! Daylight saving time, as croner defines it:
//! - a wall-clock time skipped when clocks go forward (02:30 on the night Berlin moves
//!   from 02:00 to 03:00) fires at the first instant after the gap (03:00), once;
//! - a wall-clock time that happens twice when clocks go back fires once, at its first
//!   occurrence, for an expression with fixed minute and hour; an expression with
//!   wildcard or stepped minutes or hours (`*/15 * * * *`) fires on both passes.

use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::fmt;

/// A parsed expression with the zone its wall-clock times are read in.
#[derive(Debug, Clone)]
pub struct Cron {
    /// Boxed: croner's pattern is a few hundred bytes, and schedulers are enums.
    cron: Box<croner::Cron>,
    zone: TimeZone,
    text: String,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.text == other.text && self.zone.iana_name() == other.zone.iana_name()
    }
}

impl Eq for Cron {}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An IANA zone name such as `Europe/Berlin`, looked up in the system's zone database
/// (kept current by the system's updates), else in the one built in.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name)
        .map_err(|_| format!("{name:?} is not an IANA time zone name (e.g. \"Europe/Berlin\")"))
}

/// The zone of an expression that names none.
pub fn utc() -> TimeZone {
    TimeZone::UTC
}

impl Cron {
    /// An expression read in UTC.
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Cron, String> {
        Cron::parse_in(text, utc())
    }

    /// An expression whose times are wall-clock times in `zone`.
    pub fn parse_in(text: &str, zone: TimeZone) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let nickname = fields.len() == 1 && fields[0].starts_with('@');
        if !nickname && fields.len() != 5 {
            return Err(format!(
                "{text:?} has {} fields; expected 5: minute hour day-of-month month day-of-week",
                fields.len()
            ));
        }
        // croner takes an empty list item as nothing; here it is a typo.
        if fields
            .iter()
            .any(|f| f.split(',').any(|item| item.is_empty()))
        {
            return Err(format!("{text:?} has an empty list item"));
        }
        let text = fields.join(" ");
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            // `5/10` has always meant `5-59/10` here.
            .sloppy_ranges(true)
            .build()
            .parse(&text)
            .map_err(|e| format!("{text:?}: {e}"))?;
        let cron = Cron {
            cron: Box::new(cron),
            zone,
            text,
        };
        // 2000 is a leap year, so anything that ever matches does so soon after.
        if cron.next_after(946_684_800).is_none() {
            return Err(format!("{:?} matches no date", cron.text));
        }
        Ok(cron)
    }

    /// The name of the zone its times are read in.
    pub fn zone(&self) -> &str {
        self.zone.iana_name().unwrap_or("UTC")
    }

    /// The first whole minute strictly after `t` (seconds since the epoch) that
    /// matches; `None` if none does within croner's search horizon.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let from = Timestamp::from_second(t).ok()?.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&from, false)
            .ok()
            .map(|next| next.timestamp().as_second())
    }
}

/// Seconds since the epoch of a UTC wall-clock time (for tests).
#[cfg(test)]
pub fn utc_seconds(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    let civil = jiff::civil::date(y as i16, mo as i8, d as i8).at(h as i8, mi as i8, 0, 0);
    civil
        .to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since the epoch of a UTC time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        crate::model::cron::utc_seconds(y, mo, d, h, mi)
    }

    fn next(expr: &str, from: i64) -> i64 {
        Cron::parse(expr).unwrap().next_after(from).unwrap()
    }

    fn next_in(expr: &str, zone: &str, from: i64) -> i64 {
        Cron::parse_in(expr, super::zone(zone).unwrap())
            .unwrap()
            .next_after(from)
            .unwrap()
    }

    #[test]
    fn daily_at_a_fixed_time() {
        let from = at(2024, 5, 10, 1, 59);
        assert_eq!(next("0 2 * * *", from), at(2024, 5, 10, 2, 0));
        // Strictly after: at 02:00 itself the next one is tomorrow.
        assert_eq!(
            next("0 2 * * *", at(2024, 5, 10, 2, 0)),
            at(2024, 5, 11, 2, 0)
        );
        // Seconds within the minute count as that minute.
        assert_eq!(
            next("0 2 * * *", at(2024, 5, 10, 2, 0) + 30),
            at(2024, 5, 11, 2, 0)
        );
    }

    #[test]
    fn month_and_year_edges() {
        assert_eq!(
            next("0 0 1 * *", at(2024, 12, 31, 23, 59)),
            at(2025, 1, 1, 0, 0)
        );
        assert_eq!(
            next("30 23 31 * *", at(2024, 4, 1, 0, 0)),
            at(2024, 5, 31, 23, 30),
            "April has no 31st"
        );
        assert_eq!(
            next("0 12 29 2 *", at(2025, 3, 1, 0, 0)),
            at(2028, 2, 29, 12, 0),
            "the next leap day"
        );
        assert_eq!(
            next("0 0 29 2 *", at(2096, 3, 1, 0, 0)),
            at(2104, 2, 29, 0, 0),
            "2100 is not a leap year"
        );
        assert_eq!(
            next("59 23 31 12 *", at(2023, 6, 1, 0, 0)),
            at(2023, 12, 31, 23, 59)
        );
    }

    #[test]
    fn day_of_week_zero_and_seven_are_sunday() {
        // 2024-06-02 was a Sunday.
        let from = at(2024, 5, 30, 0, 0);
        assert_eq!(next("0 9 * * 0", from), at(2024, 6, 2, 9, 0));
        assert_eq!(next("0 9 * * 7", from), at(2024, 6, 2, 9, 0));
        assert_eq!(
            next("0 9 * * 1-5", at(2024, 6, 1, 0, 0)),
            at(2024, 6, 3, 9, 0)
        );
        assert_eq!(
            next("0 9 * * 5-7", at(2024, 6, 1, 10, 0)),
            at(2024, 6, 2, 9, 0)
        );
    }

    #[test]
    fn accepts_day_and_month_names() {
        // Saturday 2024-06-01: the next weekday is Monday the 3rd.
        let from = at(2024, 6, 1, 0, 0);
        assert_eq!(next("0 9 * * MON-FRI", from), at(2024, 6, 3, 9, 0));
        assert_eq!(next("0 9 * * sat,sun", from), at(2024, 6, 1, 9, 0));
        assert_eq!(next("0 0 1 JAN,Jul *", from), at(2024, 7, 1, 0, 0));
        assert_eq!(next("0 0 1 OCT-DEC *", from), at(2024, 10, 1, 0, 0));
        assert_eq!(next("@daily", from), at(2024, 6, 2, 0, 0));
    }

    #[test]
    fn restricted_day_fields_are_alternatives() {
        // The 15th, or any Monday: from Friday 2024-06-07 that is Monday the 10th.
        assert_eq!(
            next("0 0 15 * 1", at(2024, 6, 7, 0, 0)),
            at(2024, 6, 10, 0, 0)
        );
        // With day-of-week unrestricted, only the 15th.
        assert_eq!(
            next("0 0 15 * *", at(2024, 6, 7, 0, 0)),
            at(2024, 6, 15, 0, 0)
        );
    }

    #[test]
    fn lists_ranges_and_steps() {
        let from = at(2024, 1, 1, 10, 7);
        assert_eq!(next("*/15 * * * *", from), at(2024, 1, 1, 10, 15));
        assert_eq!(next("5,50 * * * *", from), at(2024, 1, 1, 10, 50));
        assert_eq!(next("10-20/5 * * * *", from), at(2024, 1, 1, 10, 10));
        assert_eq!(next("5/20 * * * *", from), at(2024, 1, 1, 10, 25));
        assert_eq!(next("0 */6 * * *", from), at(2024, 1, 1, 12, 0));
        assert_eq!(next("0 0 * 3,9 *", from), at(2024, 3, 1, 0, 0));
        assert_eq!(next("* * * * *", from), from + 60);
    }

    #[test]
    fn wall_clock_times_are_read_in_the_zone() {
        // 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer.
        let winter = at(2024, 1, 10, 12, 0);
        assert_eq!(
            next_in("0 2 * * *", "Europe/Berlin", winter),
            at(2024, 1, 11, 1, 0)
        );
        let summer = at(2024, 7, 10, 12, 0);
        assert_eq!(
            next_in("0 2 * * *", "Europe/Berlin", summer),
            at(2024, 7, 11, 0, 0)
        );
        // A weekday is the zone's: Monday 00:30 in Tokyo is Sunday 15:30 UTC.
        assert_eq!(
            next_in("30 0 * * MON", "Asia/Tokyo", at(2024, 6, 1, 0, 0)),
            at(2024, 6, 2, 15, 30)
        );
    }

    #[test]
    fn a_skipped_hour_fires_once_right_after_the_gap() {
        // Berlin, 2024-03-31: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let before = at(2024, 3, 30, 12, 0);
        let fired = next_in("30 2 * * *", "Europe/Berlin", before);
        assert_eq!(fired, at(2024, 3, 31, 1, 0), "02:30 does not exist: 03:00");
        // The following night is 02:30 CEST again, with nothing in between.
        assert_eq!(
            next_in("30 2 * * *", "Europe/Berlin", fired),
            at(2024, 4, 1, 0, 30)
        );
    }

    #[test]
    fn a_repeated_hour_fires_a_fixed_time_once() {
        // Berlin, 2024-10-27: 03:00 CEST becomes 02:00 CET, so 02:30 happens at
        // 00:30 UTC and again at 01:30 UTC.
        let before = at(2024, 10, 26, 12, 0);
        let fired = next_in("30 2 * * *", "Europe/Berlin", before);
        assert_eq!(fired, at(2024, 10, 27, 0, 30), "the first 02:30");
        assert_eq!(
            next_in("30 2 * * *", "Europe/Berlin", fired),
            at(2024, 10, 28, 1, 30),
            "not again at the second 02:30"
        );
        // A stepped expression runs on both passes through the hour.
        let first = next_in("30 */1 * * *", "Europe/Berlin", at(2024, 10, 27, 0, 0));
        assert_eq!(first, at(2024, 10, 27, 0, 30));
        assert_eq!(
            next_in("30 */1 * * *", "Europe/Berlin", first),
            at(2024, 10, 27, 1, 30)
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "1,,2 * * * *",
            "0 0 30 2 *",
            "-1 * * * *",
            "0 0 * FOO *",
            "@sometimes",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["Europe/Berlinn", "", "../etc/passwd", "CET5"] {
            assert!(zone(bad).is_err(), "{bad:?} accepted");
        }
        assert!(zone("America/New_York").is_ok());
        assert!(zone("UTC").is_ok());
    }
}
