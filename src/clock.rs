//! Business date and time, under one time-zone policy: **Beijing time** (China Standard Time,
//! UTC+8 all year, no daylight saving).
//!
//! The national platform, the cards and the hospitals all live on Beijing time, so every
//! msgid, `inf_time`, `setl_time`, business date and card-expiry comparison is made at a
//! fixed UTC+8 offset ([`BEIJING`]), never in the machine's time zone: a server whose `TZ` is
//! UTC still writes Beijing time. The calendar is the `jiff` crate's; nothing here counts days
//! by hand. Formats are the platform's: `yyyyMMddHHmmss` (msgid), the 17-digit
//! `yyyyMMddHHmmssSSS` (`refmsg_time`, `respond_time`), `yyyy-MM-dd HH:mm:ss` (`inf_time`, DT)
//! and `yyyy-MM-dd`. Timestamps for machines (the socket's `read_at`) are RFC 3339 in UTC
//! ([`rfc3339`]), which says its zone itself.
//!
//! A leaf: it needs nothing of the crate above it.

use jiff::tz::Offset;
use jiff::{Timestamp, civil};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Beijing time: UTC+8, all year.
pub const BEIJING: Offset = Offset::constant(8);

/// `time` as jiff's timestamp; the epoch for a time jiff cannot hold.
fn timestamp(time: SystemTime) -> Timestamp {
    Timestamp::try_from(time).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A moment in Beijing time, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(civil::DateTime);

impl DateTime {
    /// Now.
    pub fn now() -> DateTime {
        DateTime::at(SystemTime::now())
    }

    /// `time` in Beijing time.
    pub fn at(time: SystemTime) -> DateTime {
        DateTime(BEIJING.to_datetime(timestamp(time)))
    }

    /// The calendar day.
    pub fn day(&self) -> Date {
        Date(self.0.date())
    }

    pub fn year(&self) -> i32 {
        i32::from(self.0.year())
    }

    /// `HH:mm:ss`.
    pub fn time_of_day(&self) -> String {
        let t = self.0.time();
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }

    /// `yyyyMMddHHmmss` (14 digits).
    pub fn compact(&self) -> String {
        let t = self.0.time();
        format!(
            "{}{:02}{:02}{:02}",
            self.day().compact(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// `yyyyMMddHHmmssSSS` (17 digits).
    pub fn compact_millis(&self) -> String {
        format!("{}{:03}", self.compact(), self.0.time().millisecond())
    }

    /// `yyyy-MM-dd HH:mm:ss`.
    pub fn datetime(&self) -> String {
        format!("{} {}", self.day(), self.time_of_day())
    }

    /// `yyyy-MM-dd`.
    pub fn date(&self) -> String {
        self.day().to_string()
    }
}

/// A calendar day (a business date, a card's 卡有效期), shown as `yyyy-MM-dd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(civil::Date);

/// A date that is not one (or not in the form asked for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a date (yyyy-MM-dd): {0:?}")]
pub struct BadDate(pub String);

impl Date {
    /// A valid calendar day of the years 1–9999.
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=9999).contains(&year) {
            return None;
        }
        let year = i16::try_from(year).ok()?;
        let month = i8::try_from(month).ok()?;
        let day = i8::try_from(day).ok()?;
        civil::Date::new(year, month, day).ok().map(Date)
    }

    /// Strictly `yyyy-MM-dd`.
    pub fn parse(text: &str) -> Result<Date, BadDate> {
        let bad = || BadDate(text.to_string());
        let mut parts = text.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(bad);
        let (y, m, d) = (next()?, next()?, next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        Date::from_digits(y, m, d).ok_or_else(bad)
    }

    /// `yyyy-MM-dd` or `yyyyMMdd`, as cards store dates; `None` for anything else.
    pub fn from_card(text: &str) -> Option<Date> {
        let digits: String = text.trim().chars().filter(|c| *c != '-').collect();
        if digits.len() != 8 {
            return None;
        }
        Date::from_digits(digits.get(0..4)?, digits.get(4..6)?, digits.get(6..8)?)
    }

    /// Year, month and day from their digits (ASCII digits only).
    fn from_digits(year: &str, month: &str, day: &str) -> Option<Date> {
        let all_digits = [year, month, day]
            .iter()
            .all(|part| part.bytes().all(|b| b.is_ascii_digit()));
        if !all_digits {
            return None;
        }
        Date::new(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
    }

    /// Today in Beijing.
    pub fn today() -> Date {
        DateTime::now().day()
    }

    /// The day `time` falls on in Beijing.
    pub fn at(time: SystemTime) -> Date {
        DateTime::at(time).day()
    }

    pub fn year(&self) -> i32 {
        i32::from(self.0.year())
    }

    pub fn month(&self) -> u32 {
        u32::from(self.0.month().unsigned_abs())
    }

    pub fn day(&self) -> u32 {
        u32::from(self.0.day().unsigned_abs())
    }

    /// The day after, if there is one (9999-12-31 has none).
    pub fn next_day(&self) -> Option<Date> {
        self.0.tomorrow().ok().map(Date)
    }

    /// `yyyyMMdd`, for ids.
    pub fn compact(&self) -> String {
        format!("{:04}{:02}{:02}", self.year(), self.month(), self.day())
    }

    /// This day at the wall clock's time of day: `yyyy-MM-dd HH:mm:ss`.
    pub fn datetime_now(&self) -> String {
        format!("{self} {}", DateTime::now().time_of_day())
    }

    /// Whole years from `earlier` to this day (an age on this day: one more on each
    /// anniversary, 29 February's on 1 March); `None` when `earlier` is after it.
    pub fn years_since(&self, earlier: Date) -> Option<u32> {
        if earlier > *self {
            return None;
        }
        let before_anniversary = (self.month(), self.day()) < (earlier.month(), earlier.day());
        let years = self.year() - earlier.year() - i32::from(before_anniversary);
        u32::try_from(years).ok()
    }

    /// 1 January of `year`, `yyyy-MM-dd`.
    pub fn year_start(year: i32) -> String {
        format!("{year:04}-01-01")
    }

    /// 31 December of `year`, `yyyy-MM-dd`.
    pub fn year_end(year: i32) -> String {
        format!("{year:04}-12-31")
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.year(),
            self.month(),
            self.day()
        )
    }
}

/// The moment a 17-digit `yyyyMMddHHmmssSSS` Beijing time names (`refmsg_time`); `None`
/// when the text is not one.
pub fn from_compact_millis(text: &str) -> Option<SystemTime> {
    if text.len() != 17 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |from: usize, to: usize| text.get(from..to)?.parse::<i16>().ok();
    let small = |from: usize, to: usize| part(from, to).and_then(|n| i8::try_from(n).ok());
    let millis = i32::from(part(14, 17)?);
    let datetime = civil::DateTime::new(
        part(0, 4)?,
        small(4, 6)?,
        small(6, 8)?,
        small(8, 10)?,
        small(10, 12)?,
        small(12, 14)?,
        millis * 1_000_000,
    )
    .ok()?;
    let millis = BEIJING.to_timestamp(datetime).ok()?.as_millisecond();
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).ok()?))
}

/// Seconds since the Unix epoch (0 for times before it), as SQLite stores times.
pub fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `seconds` after the Unix epoch (the epoch for negative values).
pub fn from_unix_seconds(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// `time` as RFC 3339 in UTC with milliseconds: `2026-11-23T13:11:50.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let utc = Offset::UTC.to_datetime(timestamp(time));
    format!(
        "{}T{}.{:03}Z",
        Date(utc.date()),
        hms(utc.time()),
        utc.millisecond()
    )
}

/// `time` in UTC, to the second: `2026-11-23 13:11:50 UTC` (for operators comparing with logs
/// kept in UTC).
pub fn utc(time: SystemTime) -> String {
    let utc = Offset::UTC.to_datetime(timestamp(time));
    format!("{} {} UTC", Date(utc.date()), hms(utc.time()))
}

/// `HH:mm:ss`.
fn hms(t: civil::Time) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refmsg_time_reads_back_as_the_moment_it_was_made_from() {
        let now = SystemTime::now();
        let text = DateTime::at(now).compact_millis();
        let back = from_compact_millis(&text).expect("a moment");
        let apart = now.duration_since(back).unwrap_or_default();
        assert!(apart < Duration::from_millis(1), "{apart:?}");
        for bad in [
            "2026120312000",
            "20261303120000000",
            "2026120312000000x",
            "",
        ] {
            assert_eq!(from_compact_millis(bad), None, "{bad}");
        }
    }

    fn at_millis(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    #[test]
    fn formats_have_the_platform_lengths() {
        let now = DateTime::now();
        assert_eq!(now.compact().len(), 14);
        assert_eq!(now.compact_millis().len(), 17);
        assert_eq!(now.datetime().len(), 19);
        assert_eq!(now.date().len(), 10);
        assert!(now.year() >= 2024);
    }

    #[test]
    fn business_time_is_beijing_time_whatever_the_machine_zone() {
        // 2026-11-23 16:00:00.042 UTC is 2026-11-24 00:00:00.042 in Beijing.
        let t = DateTime::at(at_millis(1_795_449_600, 42));
        assert_eq!(t.compact(), "20261124000000");
        assert_eq!(t.compact_millis(), "20261124000000042");
        assert_eq!(t.datetime(), "2026-11-24 00:00:00");
        assert_eq!(t.date(), "2026-11-24");
        assert_eq!(t.year(), 2026);
        // New year's eve 16:00 UTC is already the new business year.
        let t = DateTime::at(at_millis(1_798_732_800, 0));
        assert_eq!(t.datetime(), "2027-01-01 00:00:00");
        assert_eq!(utc(at_millis(1_795_449_600, 42)), "2026-11-23 16:00:00 UTC");
    }

    #[test]
    fn formats_rfc3339_in_utc() {
        for (secs, millis, text) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_700_000_000, 999, "2023-11-14T22:13:20.999Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59.000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339(at_millis(secs, millis)), text);
        }
    }

    #[test]
    fn dates_parse_strictly() {
        let d = Date::parse("2027-01-05").unwrap_or_else(|_| Date::today());
        assert_eq!((d.year(), d.month(), d.day()), (2027, 1, 5));
        assert_eq!(d.to_string(), "2027-01-05");
        assert_eq!(d.compact(), "20270105");
        assert!(Date::parse("2027-02-29").is_err());
        assert!(Date::parse("2028-02-29").is_ok());
        assert!(Date::parse("2027-1-5").is_err());
        assert!(Date::parse("20270105").is_err());
        assert!(Date::parse("+027-01-05").is_err());
        assert!(Date::parse("garbage").is_err());
        assert_eq!(Date::year_end(2026), "2026-12-31");
        assert_eq!(Date::new(2026, 13, 1), None);
        assert_eq!(Date::new(0, 1, 1), None);
    }

    #[test]
    fn card_dates_come_with_or_without_dashes() {
        let d = Date::from_card("20301231").map(|d| d.to_string());
        assert_eq!(d.as_deref(), Some("2030-12-31"));
        assert_eq!(Date::from_card("2030-12-31"), Date::new(2030, 12, 31));
        assert_eq!(Date::from_card("2030-13-01"), None);
        assert_eq!(Date::from_card(""), None);
    }

    #[test]
    fn ages_count_whole_years() {
        let on = |y, m, d| Date::new(y, m, d).unwrap_or_else(Date::today);
        assert_eq!(on(2026, 6, 1).years_since(on(1996, 6, 1)), Some(30));
        assert_eq!(on(2026, 5, 31).years_since(on(1996, 6, 1)), Some(29));
        assert_eq!(on(2028, 2, 28).years_since(on(2000, 2, 29)), Some(27));
        assert_eq!(on(2027, 3, 1).years_since(on(2000, 2, 29)), Some(27));
        assert_eq!(on(2000, 1, 1).years_since(on(2001, 1, 1)), None);
    }
}
