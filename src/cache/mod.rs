//! The local cache: what the insurer told medcard, kept in SQLite so that a swipe gets a
//! verdict in milliseconds and still gets one when the insurer is down.
//!
//! - [`Cache::open`] creates the file with mode 0600 (tightening an existing file), sets WAL,
//!   `synchronous=FULL` (every commit is on disk before it returns: the settlement journal
//!   must never lose a record of a money-moving call, and the file has one writer for both),
//!   foreign keys and a busy timeout, and runs the [`migrations`].
//! - **One writer**: [`CacheWriter`] owns the only read-write connection behind a `Mutex`
//!   (chosen over a writer thread: writes are short, callers are already off the swipe path,
//!   and a Mutex keeps errors synchronous). Each write is one transaction.
//! - Readers: [`CacheReader`]s are separate read-only connections; WAL lets them read while
//!   the writer writes. [`Cache`] keeps one of each and forwards to them.
//! - [`sync`]: paging the insurer's feeds into the cache, resumable.
//! - [`CacheMsgIds`]: msgids numbered by the cache's persistent sequence.
//! - Never lost without a word ([`guard`]): an empty file, a file replaced by a new or an
//!   older one, a missing file this machine kept a journal in, are [`CacheError::Unusable`]
//!   — never initialised afresh; [`Cache::quick_check`] is the daemon's start check; the
//!   writer's [`StorageHealth`] says whether writes reach the disk; [`Cache::backup`] copies
//!   the file while it is in use (SQLite's online backup).
//!
//! Money is kept as TEXT decimal strings (`rust_decimal`), never REAL.

#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod guard;
mod health;
pub mod migrations;
mod msgids;
mod read;
pub mod sync;
mod write;

pub use health::{StorageFault, StorageHealth};
pub use msgids::CacheMsgIds;
pub use read::{CacheReader, CacheStats, CachedPerson, CardRecord, FeedState};
pub use sync::{Feed, SyncError, SyncReport, sync_feed};
pub use write::CacheWriter;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer connection's page cache, KiB.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// The cache file's permissions: the daemon's user only (it holds personal data).
pub const FILE_MODE: u32 = 0o600;

/// Permissions of a cache directory medcard creates.
const DIR_MODE: u32 = 0o700;

/// Why the cache could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the cache schema is version {found}, newer than this medcard knows ({known})")]
    NewerSchema { found: u32, known: u32 },
    /// A stored value outside what medcard writes (`what`: the column or the kind of value).
    #[error("the cache holds a value it cannot read: {what} {value:?}")]
    Corrupt { what: &'static str, value: String },
    /// A stored JSON document that does not parse as what was stored.
    #[error("the cache holds a value it cannot read: {what}: {source}")]
    CorruptJson {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the cache's writer lock is poisoned (a writer panicked)")]
    Poisoned,
    /// The file is there (or should be) but cannot be used as the cache and journal: why,
    /// and what to do.
    #[error("cache file {path} cannot be used: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

/// A card's status as the issuer's feed left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Lost,
    Replaced,
    Cancelled,
}

impl CardStatus {
    /// The value stored in `cards.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Lost => "lost",
            CardStatus::Replaced => "replaced",
            CardStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored `cards.status`.
    pub fn parse(text: &str) -> Option<CardStatus> {
        match text {
            "active" => Some(CardStatus::Active),
            "lost" => Some(CardStatus::Lost),
            "replaced" => Some(CardStatus::Replaced),
            "cancelled" => Some(CardStatus::Cancelled),
            _ => None,
        }
    }
}

/// The cache: one writer, one reader, the file's path.
pub struct Cache {
    path: PathBuf,
    /// The journal's identity ([`guard`]), as checked when the file was opened.
    journal_id: i64,
    writer: CacheWriter,
    reader: CacheReader,
}

impl Cache {
    /// Opens (creating when absent) the cache at `path`, migrated to the current schema.
    ///
    /// A file SQLite cannot use, an empty one, or one that is not the journal this machine
    /// kept (see [`guard`]) is [`CacheError::Unusable`]: nothing is initialised over it.
    pub fn open(path: impl AsRef<Path>) -> Result<Cache, CacheError> {
        let path = path.as_ref().to_path_buf();
        guard::before_open(&path)?;
        ensure_private_file(&path)?;
        let conn = open_writer(&path).map_err(|e| unusable_when_damaged(&path, e))?;
        let identity =
            guard::check_identity(&conn, &path).map_err(|e| unusable_when_damaged(&path, e))?;
        let reader = CacheReader::open(&path)?;
        Ok(Cache {
            journal_id: identity.journal_id,
            writer: CacheWriter::new(conn),
            reader,
            path,
        })
    }

    /// The cache file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's identity: a random number stored in the file when it was first used
    /// (`<cache>.identity` beside it); the hospital database knows each workstation's.
    pub fn journal_id(&self) -> i64 {
        self.journal_id
    }

    /// The one writer (clone it to hand to another thread).
    pub fn writer(&self) -> &CacheWriter {
        &self.writer
    }

    /// The cache's own reader connection.
    pub fn reader(&self) -> &CacheReader {
        &self.reader
    }

    /// A new read-only connection, for another thread.
    pub fn new_reader(&self) -> Result<CacheReader, CacheError> {
        CacheReader::open(&self.path)
    }

    /// SQLite's `PRAGMA quick_check` on the file (the daemon's start check): an error names
    /// what is damaged.
    pub fn quick_check(&self) -> Result<(), CacheError> {
        self.writer
            .in_transaction(|tx| guard::quick_check(tx, &self.path))
    }
}

/// Pages copied per step of an online backup (the writer may write between steps).
const BACKUP_PAGES_PER_STEP: std::os::raw::c_int = 256;

/// Copies the cache file `from` (the journal with it) to `to` with SQLite's online backup:
/// consistent while the daemon keeps writing. `to` must not exist yet (it is created 0600);
/// the copy is checked with `PRAGMA quick_check`. An empty or missing `from` is refused.
pub fn backup(from: &Path, to: &Path) -> Result<(), CacheError> {
    guard::before_open(from)?;
    let file_error = |source| CacheError::File {
        path: to.to_path_buf(),
        source,
    };
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(to)
        .map_err(file_error)?;
    let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| unusable_when_damaged(from, e.into()))?;
    configure(&source)?;
    let mut target = Connection::open(to)?;
    rusqlite::backup::Backup::new(&source, &mut target)?
        .run_to_completion(BACKUP_PAGES_PER_STEP, Duration::from_millis(10), None)
        .map_err(|e| unusable_when_damaged(from, e.into()))?;
    guard::quick_check(&target, to)
}

/// The writer's connection: opened, configured, in WAL, migrated.
fn open_writer(path: &Path) -> Result<Connection, CacheError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The writer's page cache (a maximum, in KiB when negative): a full feed load touches
    // the cards' indexes all over, and SQLite's 2 MiB default makes it re-read pages.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    migrations::migrate(&mut conn)?;
    Ok(conn)
}

/// A file SQLite refuses (not a database, damaged, unreadable) as [`CacheError::Unusable`]
/// with what to do; other errors as they are.
fn unusable_when_damaged(path: &Path, e: CacheError) -> CacheError {
    if matches!(e, CacheError::Unusable { .. }) || !e.is_storage_failure() {
        return e;
    }
    CacheError::Unusable {
        path: path.to_path_buf(),
        reason: format!(
            "{e}; if the disk is full, free space; if the file is damaged, restore it from a              backup (docs/operations.md)"
        ),
    }
}

/// Creates the file with mode 0600 (and a missing directory with 0700) before SQLite sees
/// it, or tightens an existing file.
fn ensure_private_file(path: &Path) -> Result<(), CacheError> {
    let file_error = |source| CacheError::File {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .map_err(file_error)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(file_error)?;
    let mode = file.metadata().map_err(file_error)?.permissions().mode() & 0o777;
    if mode != FILE_MODE {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "cache file was not 0600: tightened");
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(file_error)?;
    }
    Ok(())
}

/// Per-connection settings (WAL itself is a property of the file).
fn configure(conn: &Connection) -> Result<(), CacheError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// A version number as SQLite stores it (INTEGER is signed 64-bit).
fn version_to_sql(version: u64) -> Result<i64, CacheError> {
    i64::try_from(version).map_err(|_| CacheError::Corrupt {
        what: "version out of range",
        value: version.to_string(),
    })
}

/// A version read back from SQLite.
fn version_from_sql(version: i64) -> Result<u64, CacheError> {
    u64::try_from(version).map_err(|_| CacheError::Corrupt {
        what: "negative version",
        value: version.to_string(),
    })
}
