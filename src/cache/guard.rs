//! Guards against losing the journal without a word: before SQLite sees the file, an empty
//! (zero-length) file or a directory in its place is refused rather than initialised afresh;
//! after it opened, the file's identity (a random number stored in it when it was first
//! used) and the journal's last sequence (its highest row) are compared with what this
//! machine recorded beside the file (`<cache>.identity`), so a file that was replaced, lost
//! or swapped for an older copy is an error, not a new empty journal. [`quick_check`] runs
//! SQLite's `PRAGMA quick_check` for the daemon's start.

use super::CacheError;
use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};

/// The `msgid_seq` key under which the file keeps its identity (a named number, beside the
/// msgids' per-second sequences and the visit and batch serials).
const IDENTITY_KEY: &str = "journal-identity";

/// What the identity file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub journal_id: i64,
    /// The journal's highest row when last opened.
    pub last_seq: i64,
}

/// `<cache>.identity`, beside the cache file.
pub fn identity_path(cache: &Path) -> PathBuf {
    let mut name = cache.file_name().unwrap_or_default().to_os_string();
    name.push(".identity");
    cache.with_file_name(name)
}

fn unusable(path: &Path, reason: impl Into<String>) -> CacheError {
    CacheError::Unusable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Refuses a file SQLite would silently start afresh on: a zero-length file, a missing file
/// this machine had a journal in, anything but a regular file.
pub fn before_open(path: &Path) -> Result<(), CacheError> {
    let recorded = identity_path(path);
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(unusable(path, "it is not a regular file")),
        Ok(meta) if meta.len() == 0 => Err(unusable(
            path,
            format!(
                "it is empty (zero bytes): it was truncated, and the journal in it is gone; \
                 restore it from a backup (medcard journal backup), or, on a new install, \
                 delete it and {}",
                recorded.display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && recorded.exists() => Err(unusable(
            path,
            format!(
                "it is missing, but {} says this machine kept a journal in it; restore it \
                     from a backup, or delete {} to start an empty journal",
                recorded.display(),
                recorded.display()
            ),
        )),
        Err(_) => Ok(()),
    }
}

/// Compares the opened file with the identity recorded beside it (adopting a file that has
/// none yet) and records the journal's last sequence.
pub fn check_identity(conn: &Connection, path: &Path) -> Result<Identity, CacheError> {
    let stored: Option<i64> = conn
        .query_row(
            "SELECT seq FROM msgid_seq WHERE date = ?1",
            [IDENTITY_KEY],
            |row| row.get(0),
        )
        .optional()?;
    let last_seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(rowid), 0) FROM settle_journal",
        [],
        |row| row.get(0),
    )?;
    let recorded_path = identity_path(path);
    let recorded = read_identity(&recorded_path)?;
    let journal_id = match (stored, recorded) {
        (Some(id), Some(seen)) if id != seen.journal_id => {
            return Err(unusable(
                path,
                format!(
                    "it is another journal (identity {id}) than the one this machine kept \
                     ({}, in {}): it was replaced; put the right file back, or delete {} to \
                     adopt this one",
                    seen.journal_id,
                    recorded_path.display(),
                    recorded_path.display()
                ),
            ));
        }
        (Some(_), Some(seen)) if last_seq < seen.last_seq => {
            return Err(unusable(
                path,
                format!(
                    "its journal ends at row {last_seq}, but this machine saw row {}: it is an \
                     older copy and settlements are missing from it; put the newest file \
                     back, or delete {} to accept it and run medcard reconcile for the days \
                     since",
                    seen.last_seq,
                    recorded_path.display()
                ),
            ));
        }
        (None, Some(seen)) => {
            return Err(unusable(
                path,
                format!(
                    "it is a new, empty journal, but this machine kept journal {} in it: the \
                     file was re-created and its settlements are gone; restore it from a \
                     backup, or delete {} to start afresh",
                    seen.journal_id,
                    recorded_path.display()
                ),
            ));
        }
        (Some(id), _) => id,
        (None, None) => conn.query_row(
            "INSERT INTO msgid_seq (date, seq) VALUES (?1, random()) RETURNING seq",
            [IDENTITY_KEY],
            |row| row.get(0),
        )?,
    };
    let identity = Identity {
        journal_id,
        last_seq,
    };
    write_identity(&recorded_path, identity)?;
    Ok(identity)
}

/// The identity recorded at `path`, if there is one.
fn read_identity(path: &Path) -> Result<Option<Identity>, CacheError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheError::File {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let field = |name: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .and_then(|(_, value)| value.trim().parse::<i64>().ok())
    };
    match (field("journal_id"), field("last_seq")) {
        (Some(journal_id), Some(last_seq)) => Ok(Some(Identity {
            journal_id,
            last_seq,
        })),
        _ => Err(unusable(
            path,
            "the identity file cannot be read (journal_id, last_seq); delete it to adopt the \
             cache file as it is",
        )),
    }
}

/// Writes the identity file atomically (a temporary file renamed over it), mode 0600.
fn write_identity(path: &Path, identity: Identity) -> Result<(), CacheError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |source| CacheError::File {
        path: path.to_path_buf(),
        source,
    };
    let text = format!(
        "# medcard: the identity of the journal in the cache file beside it; do not edit\n\
         journal_id = {}\nlast_seq = {}\n",
        identity.journal_id, identity.last_seq
    );
    let mut temporary = path.as_os_str().to_os_string();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(super::FILE_MODE)
        .open(&temporary)
        .map_err(file_error)?;
    file.write_all(text.as_bytes()).map_err(file_error)?;
    file.sync_all().map_err(file_error)?;
    std::fs::rename(&temporary, path).map_err(file_error)
}

/// `PRAGMA quick_check`: `Ok` when SQLite finds the file sound, else the first problems it
/// names.
pub fn quick_check(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let problems = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<String>, _>>()?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(unusable(
            path,
            format!(
                "SQLite's quick_check finds it damaged ({}); restore it from a backup \
                 (docs/operations.md)",
                problems.join("; ")
            ),
        )),
    }
}
