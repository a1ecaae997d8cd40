//! Whether the cache file still takes writes: the one writer notes every write transaction
//! that failed for a storage reason (disk full, an I/O error, a read-only or damaged file)
//! and clears the note when a later write reaches the disk. `system.info`'s `journal`
//! entry reports it, so the operator sees a full disk before a cashier does.

use super::CacheError;
use rusqlite::ErrorCode;
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The last storage failure of the cache's writes, while it lasts (shared by the writer's
/// clones).
#[derive(Clone, Default)]
pub struct StorageHealth(Arc<Mutex<Option<StorageFault>>>);

/// A write that did not reach the disk, and since when writes have been failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageFault {
    pub reason: String,
    /// Unix seconds of the first failure in a row.
    pub since: i64,
}

impl StorageHealth {
    /// The failure writes are in, if they are.
    pub fn fault(&self) -> Option<StorageFault> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes `error` when it is a storage failure.
    pub(super) fn failed(&self, error: &CacheError) {
        if !error.is_storage_failure() {
            return;
        }
        let mut fault = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if fault.is_none() {
            tracing::error!(error = %error, "the cache file takes no writes: settlement cannot journal; free disk space or repair the file (docs/operations.md)");
        }
        let since = fault
            .as_ref()
            .map(|f| f.since)
            .unwrap_or_else(|| crate::clock::unix_seconds(SystemTime::now()));
        *fault = Some(StorageFault {
            reason: error.to_string(),
            since,
        });
    }

    /// A write reached the disk: writes work again.
    pub(super) fn wrote(&self) {
        let mut fault = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if fault.take().is_some() {
            tracing::info!("the cache file takes writes again");
        }
    }
}

impl CacheError {
    /// Whether the file or the disk under it failed (full, I/O error, read-only, damaged),
    /// as opposed to a value or a statement medcard got wrong.
    pub fn is_storage_failure(&self) -> bool {
        match self {
            CacheError::File { .. } | CacheError::Unusable { .. } => true,
            CacheError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::ReadOnly
                    | ErrorCode::DatabaseCorrupt
                    | ErrorCode::NotADatabase
                    | ErrorCode::CannotOpen
                    | ErrorCode::FileLockingProtocolFailed
            ),
            _ => false,
        }
    }
}

/// The error SQLite gives when the disk is full (`SQLITE_FULL`).
#[cfg(feature = "fault-injection")]
pub(super) fn disk_full() -> CacheError {
    CacheError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("database or disk is full".into()),
    ))
}

#[cfg(test)]
mod tests {
    use crate::cache::{Cache, CacheError};
    use rusqlite::ErrorCode;

    fn set_max_pages(cache: &Cache, pages: i64) {
        cache
            .writer()
            .in_transaction(|tx| {
                tx.pragma_update(None, "max_page_count", pages)?;
                Ok(())
            })
            .expect("max_page_count");
    }

    /// A real SQLITE_FULL (the file may not grow past its pages): the writer's health says
    /// so until a write reaches the disk again.
    #[test]
    fn a_full_file_is_a_storage_failure_until_a_write_succeeds() {
        let dir = std::env::temp_dir().join(format!("medcard-health-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = Cache::open(dir.join("cache.sqlite")).expect("open");
        let pages: i64 = cache
            .writer()
            .in_transaction(|tx| Ok(tx.query_row("PRAGMA page_count", [], |r| r.get(0))?))
            .expect("page_count");
        set_max_pages(&cache, pages);
        assert!(cache.writer().health().fault().is_none());
        let full = (0..100_000)
            .find_map(|n| {
                let key = format!("filler-{n:06}-{}", "x".repeat(200));
                cache.writer().reserve_msgid_seq(&key, 1).err()
            })
            .expect("the file fills up");
        let CacheError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) = &full else {
            panic!("not an SQLite failure: {full:?}");
        };
        assert_eq!(e.code, ErrorCode::DiskFull, "{full}");
        assert!(full.is_storage_failure());
        let fault = cache.writer().health().fault().expect("a fault noted");
        assert!(fault.reason.contains("full"), "{fault:?}");
        // A read does not clear it; a write that reaches the disk does.
        cache.stats().expect("reads go on");
        assert!(cache.writer().health().fault().is_some());
        set_max_pages(&cache, 1_000_000);
        cache
            .writer()
            .reserve_msgid_seq("after", 1)
            .expect("a write");
        assert!(cache.writer().health().fault().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
