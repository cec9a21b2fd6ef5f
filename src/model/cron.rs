//! Five-field cron expressions ("minute hour day-of-month month day-of-week"), in UTC,
//! and the first matching minute after a given time.
//!
//! Each field is `*`, a number, a range `a-b`, any of these with a step (`*/15`,
//! `1-30/2`, `5/10` meaning `5-max/10`), or a comma-separated list of them. Day of week
//! 0 and 7 are both Sunday. As in Vixie cron, when both day fields are restricted
//! (neither starts with `*`) a day matches if either does.

use std::fmt;

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// How far ahead a match is looked for: Feb 29 can be 8 years away (2096 → 2104).
const HORIZON: i64 = 9 * 366 * DAY;

/// A parsed expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
    text: String,
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "{text:?} has {} fields; expected 5: minute hour day-of-month month day-of-week",
                fields.len()
            ));
        };
        let mut weekdays = field(weekday, "day of week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Cron {
            minutes: field(minute, "minute", 0, 59)?,
            hours: field(hour, "hour", 0, 23)?,
            days: field(day, "day of month", 1, 31)?,
            months: field(month, "month", 1, 12)?,
            weekdays,
            days_any: day.starts_with('*'),
            weekdays_any: weekday.starts_with('*'),
            text: fields.join(" "),
        };
        // 2000 is a leap year, so anything that ever matches does so within the horizon.
        if cron.next_after(946_684_800).is_none() {
            return Err(format!("{text:?} matches no date"));
        }
        Ok(cron)
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.days & (1 << day) != 0;
        let w = self.weekdays & (1 << weekday) != 0;
        match (self.days_any, self.weekdays_any) {
            (false, false) => d || w,
            _ => d && w,
        }
    }

    /// The first whole minute strictly after `t` (seconds since the epoch) that matches;
    /// `None` if none does within nine years.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let mut t = t
            .checked_div_euclid(MINUTE)?
            .checked_add(1)?
            .checked_mul(MINUTE)?;
        let limit = t.checked_add(HORIZON)?;
        while t <= limit {
            let days = t.div_euclid(DAY);
            let secs = t.rem_euclid(DAY);
            let (y, m, d) = civil_from_days(days);
            if self.months & (1 << m) == 0 {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                t = days_from_civil(ny, nm, 1) * DAY;
                continue;
            }
            if !self.day_matches(d, weekday(days)) {
                t = (days + 1) * DAY;
                continue;
            }
            let h = secs / HOUR;
            if self.hours & (1 << h) == 0 {
                t = days * DAY + (h + 1) * HOUR;
                continue;
            }
            if self.minutes & (1 << ((secs % HOUR) / MINUTE)) == 0 {
                t += MINUTE;
                continue;
            }
            return Some(t);
        }
        None
    }
}

/// One field's allowed values as bits.
fn field(text: &str, what: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(number(s, what)?)),
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, what)?, number(b, what)?)
        } else {
            let n = number(range, what)?;
            (n, if step.is_some() { max } else { n })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{what} {item:?} is outside {min}-{max}"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("{what} {item:?}: a step must be at least 1"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn number(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 4 {
        return Err(format!("{what} {s:?} is not a number"));
    }
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not a number"))
}

/// 0 = Sunday. Day 0 (1970-01-01) was a Thursday.
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
/// Counts in 400-year eras starting on March 1st, so the leap day ends a year.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since the epoch of a UTC time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * HOUR + mi * MINUTE
    }

    fn next(expr: &str, from: i64) -> i64 {
        Cron::parse(expr).unwrap().next_after(from).unwrap()
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(weekday(0), 4, "1970-01-01 was a Thursday");
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
    fn bad_expressions_are_refused() {
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
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
