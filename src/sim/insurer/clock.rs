//! The simulator's business clock: the date settlements are made on (setl_time, the business
//! year that year-to-date sums and the deductible run over). Today unless the admin action
//! `clock {"date": "yyyy-MM-dd"}` set another day; kept in the database (`sim_meta`), so it
//! survives a restart with the same `--db`. The time of day is always the wall clock's. Days
//! and times are [`crate::clock`]'s (Beijing time).

use super::db::TxError;
use crate::clock::Date;
use rusqlite::{Connection, OptionalExtension, params};

const KEY: &str = "business_date";

/// The business date: the one set, else today.
pub fn business_date(conn: &Connection) -> Result<Date, TxError> {
    let set: Option<String> = conn
        .query_row("SELECT value FROM sim_meta WHERE key = ?1", [KEY], |r| {
            r.get(0)
        })
        .optional()?;
    match set {
        Some(text) => Ok(Date::parse(&text)?),
        None => Ok(Date::today()),
    }
}

/// Set the business date (`None`: follow the wall clock again).
pub fn set_business_date(conn: &Connection, date: Option<Date>) -> Result<(), TxError> {
    match date {
        Some(date) => conn.execute(
            "INSERT INTO sim_meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![KEY, date.to_string()],
        )?,
        None => conn.execute("DELETE FROM sim_meta WHERE key = ?1", [KEY])?,
    };
    Ok(())
}
