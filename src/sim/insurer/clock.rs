//! The simulator's business clock: the date settlements are made on (setl_time, the business
//! year that year-to-date sums and the deductible run over). Today unless the admin action
//! `clock {"date": "yyyy-MM-dd"}` set another day; kept in the database (`sim_meta`), so it
//! survives a restart with the same `--db`. The time of day is always the wall clock's.

use super::db::TxError;
use crate::insurer::clock::LocalTime;
use rusqlite::{Connection, OptionalExtension, params};

const KEY: &str = "business_date";

/// A calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BusinessDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

/// A date the clock refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a date (yyyy-MM-dd): {0:?}")]
pub struct BadDate(pub String);

fn leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in(year: i32, month: u32) -> u32 {
    match month {
        2 if leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl BusinessDate {
    /// A valid calendar day.
    pub fn new(year: i32, month: u32, day: u32) -> Option<BusinessDate> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in(year, month)).contains(&day);
        valid.then_some(BusinessDate { year, month, day })
    }

    /// `yyyy-MM-dd`.
    pub fn parse(text: &str) -> Result<BusinessDate, BadDate> {
        let bad = || BadDate(text.to_string());
        let mut parts = text.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(bad);
        let (y, m, d) = (next()?, next()?, next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        let day = d.parse().map_err(|_| bad())?;
        BusinessDate::new(year, month, day).ok_or_else(bad)
    }

    /// The wall clock's day.
    pub fn today() -> BusinessDate {
        let now = LocalTime::now();
        BusinessDate {
            year: now.year,
            month: now.month,
            day: now.day,
        }
    }

    /// `yyyy-MM-dd`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `yyyyMMdd`, for ids.
    pub fn compact(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// This day at the wall clock's time: `yyyy-MM-dd HH:mm:ss`.
    pub fn datetime_now(&self) -> String {
        let now = LocalTime::now();
        format!(
            "{} {:02}:{:02}:{:02}",
            self.date(),
            now.hour,
            now.minute,
            now.second
        )
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

/// The business date: the one set, else today.
pub fn business_date(conn: &Connection) -> Result<BusinessDate, TxError> {
    let set: Option<String> = conn
        .query_row("SELECT value FROM sim_meta WHERE key = ?1", [KEY], |r| {
            r.get(0)
        })
        .optional()?;
    match set {
        Some(text) => BusinessDate::parse(&text).map_err(|e| TxError::Internal(e.to_string())),
        None => Ok(BusinessDate::today()),
    }
}

/// Set the business date (`None`: follow the wall clock again).
pub fn set_business_date(conn: &Connection, date: Option<BusinessDate>) -> Result<(), TxError> {
    match date {
        Some(date) => conn.execute(
            "INSERT INTO sim_meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![KEY, date.date()],
        )?,
        None => conn.execute("DELETE FROM sim_meta WHERE key = ?1", [KEY])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_strictly() {
        let d = BusinessDate::parse("2027-01-05").unwrap();
        assert_eq!((d.year, d.month, d.day), (2027, 1, 5));
        assert_eq!(d.date(), "2027-01-05");
        assert_eq!(d.compact(), "20270105");
        assert!(BusinessDate::parse("2027-02-29").is_err());
        assert!(BusinessDate::parse("2028-02-29").is_ok());
        assert!(BusinessDate::parse("2027-1-5").is_err());
        assert!(BusinessDate::parse("garbage").is_err());
        assert_eq!(BusinessDate::year_end(2026), "2026-12-31");
    }
}
