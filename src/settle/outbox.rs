//! The hospital outbox: the journal's rows waiting to be shipped to the hospital's PostgreSQL
//! (`crate::hospital`, docs/hospital.md).
//!
//! The outbox is filled by SQLite itself (cache migration 6): when shipping is enabled, an
//! `AFTER INSERT` / `AFTER UPDATE` trigger on each journal table (`settle_visits`,
//! `settle_previews`, `settle_batches`, `settlements`, `settle_journal`) adds the whole row, as
//! JSON, to `hospital_outbox` in the same transaction as the journal write, so no write path
//! can forget it. `seq` (AUTOINCREMENT: never reused, even after rows are deleted) is the order
//! the rows are shipped in and the watermark the hospital keeps per workstation. A standalone
//! workstation never enables it: its triggers add nothing and the file does not grow.
//!
//! This module owns reading and deleting the outbox (the settle layer owns the journal
//! tables): [`Outbox::enable`] (once, backfilling every journal row already there, in one
//! transaction), [`Outbox::after`] (the next rows to ship), [`Outbox::delete_through`] (what
//! the hospital has), [`Outbox::backlog`] (what is still waiting).

use crate::cache::{CacheError, CacheWriter};
use rusqlite::params;
use std::time::SystemTime;

/// The journal tables whose rows are shipped, in the order the enabling backfill copies them
/// (a visit before its previews and batches, a request before its calls).
pub const JOURNAL_TABLES: [&str; 5] = [
    "settle_visits",
    "settle_previews",
    "settle_batches",
    "settlements",
    "settle_journal",
];

/// One journal row as it was written: `tbl` and `key` (the row's primary key) name it, `row`
/// is the whole row as JSON, `journalled_at_ms` when it was written (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub tbl: String,
    pub key: String,
    pub row: String,
    pub journalled_at_ms: i64,
}

/// What waits in the outbox after a watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Rows after the watermark.
    pub rows: u64,
    /// When the oldest of them was written (Unix milliseconds).
    pub oldest_ms: Option<i64>,
    /// The last `seq` handed out (0 before the first row).
    pub last_seq: i64,
}

/// The outbox in the cache file, through its one writer.
#[derive(Clone)]
pub struct Outbox {
    writer: CacheWriter,
}

impl Outbox {
    pub fn new(writer: CacheWriter) -> Outbox {
        Outbox { writer }
    }

    /// Whether journal writes fill the outbox.
    pub fn is_enabled(&self) -> Result<bool, CacheError> {
        self.writer.in_transaction(|tx| {
            Ok(tx.query_row(
                "SELECT enabled FROM hospital_shipping WHERE id = 1",
                [],
                |row| row.get(0),
            )?)
        })
    }

    /// Turns shipping on (the first start with `[hospital] database`): in one transaction,
    /// every journal row already there goes into the outbox once, then the triggers add each
    /// later write. `Some(rows backfilled)` when it was off, `None` when it was on already.
    pub fn enable(&self, now: SystemTime) -> Result<Option<u64>, CacheError> {
        self.writer.in_transaction(|tx| {
            let enabled: bool = tx.query_row(
                "SELECT enabled FROM hospital_shipping WHERE id = 1",
                [],
                |row| row.get(0),
            )?;
            if enabled {
                return Ok(None);
            }
            let mut backfilled = 0;
            for table in JOURNAL_TABLES {
                let copied = tx.execute(
                    &format!(
                        "INSERT INTO hospital_outbox (tbl, key, row, journalled_at) \
                         SELECT '{table}', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER) \
                         FROM {table}_json ORDER BY rid"
                    ),
                    [],
                )?;
                backfilled += copied as u64;
            }
            tx.execute(
                "UPDATE hospital_shipping SET enabled = 1, enabled_at = ?1 WHERE id = 1",
                [crate::clock::unix_seconds(now)],
            )?;
            Ok(Some(backfilled))
        })
    }

    /// Up to `limit` rows after `seq`, oldest first.
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxRow>, CacheError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer.in_transaction(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, tbl, key, row, journalled_at FROM hospital_outbox \
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![seq, limit], |row| {
                    Ok(OutboxRow {
                        seq: row.get(0)?,
                        tbl: row.get(1)?,
                        key: row.get(2)?,
                        row: row.get(3)?,
                        journalled_at_ms: row.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Deletes the rows up to `seq` (the hospital has them); returns how many.
    pub fn delete_through(&self, seq: i64) -> Result<usize, CacheError> {
        self.writer.in_transaction(|tx| {
            Ok(tx.execute("DELETE FROM hospital_outbox WHERE seq <= ?1", [seq])?)
        })
    }

    /// What waits after `seq`: how many rows, the oldest's time, the last seq handed out.
    pub fn backlog(&self, seq: i64) -> Result<Backlog, CacheError> {
        self.writer.in_transaction(|tx| {
            let (rows, oldest_ms): (i64, Option<i64>) = tx.query_row(
                "SELECT COUNT(*), MIN(journalled_at) FROM hospital_outbox WHERE seq > ?1",
                [seq],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let last_seq: i64 = tx.query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'hospital_outbox'), 0)",
                [],
                |row| row.get(0),
            )?;
            Ok(Backlog {
                rows: u64::try_from(rows).unwrap_or(0),
                oldest_ms,
                last_seq,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::settle::journal::{CallOutcome, CallState, Journal, RequestState, test_rows};

    fn cache() -> (tempdir::Dir, Cache) {
        let dir = tempdir::Dir::new();
        let cache = Cache::open(dir.path().join("cache.sqlite")).unwrap();
        (dir, cache)
    }

    /// A private temporary directory for one test, removed on drop.
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("medcard-outbox-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// The outbox's (tbl, key) rows in seq order.
    fn shipped(outbox: &Outbox) -> Vec<(String, String)> {
        outbox
            .after(0, 10_000)
            .unwrap()
            .into_iter()
            .map(|r| (r.tbl, r.key))
            .collect()
    }

    fn pair(tbl: &str, key: &str) -> (String, String) {
        (tbl.to_owned(), key.to_owned())
    }

    /// Every kind of journal write: a visit, its state, a preview and its insurer's answer, a
    /// batch held and deleted, a request with its call, the call's outcome (which updates the
    /// call and the request).
    fn write_everything(journal: &Journal) {
        let visit = test_rows::visit(crate::verdict::MaySettle::Yes, None);
        journal.insert_visit(&visit).unwrap();
        journal
            .set_visit_state("M1", crate::settle::journal::VisitState::Cancelled)
            .unwrap();
        journal.insert_preview(&test_rows::preview()).unwrap();
        journal.update_preview_insurer("P1", r#"{"a":1}"#).unwrap();
        journal.batch_held("M1", "B1").unwrap();
        journal.batch_deleted("M1", "B1").unwrap();
        let request = test_rows::request("R1");
        let call = test_rows::call("M1", "2207", "R1");
        journal.begin_request(&request, &call).unwrap();
        let mut outcome = CallOutcome::new("M1", CallState::Success);
        outcome.request = Some(crate::settle::journal::RequestUpdate::state(
            "R1",
            RequestState::Settled,
        ));
        journal.settle_call(&outcome).unwrap();
    }

    #[test]
    fn a_standalone_journal_fills_no_outbox() {
        let (_dir, cache) = cache();
        let outbox = Outbox::new(cache.writer().clone());
        write_everything(&Journal::new(cache.writer().clone()));
        assert!(!outbox.is_enabled().unwrap());
        assert!(shipped(&outbox).is_empty());
        assert_eq!(outbox.backlog(0).unwrap(), Backlog::default());
    }

    #[test]
    fn every_journal_write_lands_one_outbox_row_once_enabled() {
        let (_dir, cache) = cache();
        let outbox = Outbox::new(cache.writer().clone());
        assert_eq!(outbox.enable(SystemTime::now()).unwrap(), Some(0));
        assert_eq!(outbox.enable(SystemTime::now()).unwrap(), None);
        write_everything(&Journal::new(cache.writer().clone()));
        assert_eq!(
            shipped(&outbox),
            vec![
                pair("settle_visits", "M1"),
                pair("settle_visits", "M1"),
                pair("settle_previews", "P1"),
                pair("settle_previews", "P1"),
                pair("settle_batches", "B1"),
                pair("settle_batches", "B1"),
                pair("settlements", "R1"),
                pair("settle_journal", "M1"),
                pair("settle_journal", "M1"),
                pair("settlements", "R1"),
            ]
        );
        let rows = outbox.after(0, 100).unwrap();
        let last: serde_json::Value = serde_json::from_str(&rows[9].row).unwrap();
        assert_eq!(last["request_id"], "R1");
        assert_eq!(last["state"], "settled");
        let preview: serde_json::Value = serde_json::from_str(&rows[3].row).unwrap();
        assert_eq!(preview["insurer"]["a"], 1, "a JSON column ships as JSON");
        let backlog = outbox.backlog(rows[4].seq).unwrap();
        assert_eq!((backlog.rows, backlog.last_seq), (5, rows[9].seq));
        assert_eq!(outbox.delete_through(rows[4].seq).unwrap(), 5);
        assert_eq!(outbox.after(0, 100).unwrap(), rows[5..].to_vec());
    }

    #[test]
    fn enabling_backfills_the_journal_once_in_order() {
        let (_dir, cache) = cache();
        let outbox = Outbox::new(cache.writer().clone());
        write_everything(&Journal::new(cache.writer().clone()));
        assert_eq!(outbox.enable(SystemTime::now()).unwrap(), Some(5));
        assert_eq!(
            shipped(&outbox),
            vec![
                pair("settle_visits", "M1"),
                pair("settle_previews", "P1"),
                pair("settle_batches", "B1"),
                pair("settlements", "R1"),
                pair("settle_journal", "M1"),
            ]
        );
        assert_eq!(outbox.enable(SystemTime::now()).unwrap(), None);
        assert_eq!(shipped(&outbox).len(), 5);
    }
}
