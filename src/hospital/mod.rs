//! The hospital database: every workstation of one hospital ships its settlement journal to
//! one PostgreSQL (docs/hospital.md, "The journal in PostgreSQL"). The workstation keeps
//! journalling locally first, exactly as a standalone one does, and keeps settling while the
//! hospital database is down; the journal's rows reach PostgreSQL later, in order, once each.
//!
//! - [`connect`]: the connection from `[hospital]` — a libpq-style `database` string that
//!   must not hold a password, the password read from `password_file` at each connect (a
//!   file other users can read is refused), TLS with `ssl_root_cert` as the only trusted CA
//!   (rustls), plain only to this machine (loopback or a Unix socket).
//! - [`schema`]: PostgreSQL's schema as versioned migrations (`medcard_schema`); a database
//!   newer than this medcard is refused.
//! - [`register`]: the workstation's row (`workstations`): its name, node, journal identity
//!   and shipped watermark; a node another workstation holds, or a journal that is not the
//!   one the hospital knows under this name, is a [`Refusal`].
//! - [`ship`]: the [`Shipper`], one turn at a time (the daemon runs it on a worker thread):
//!   outbox rows after the watermark → one PostgreSQL transaction (`journal_log`,
//!   `journal_rows`, the watermark) → the local rows deleted; its [`ShipMonitor`] is what
//!   `system.info` reports.
//!
//! The outbox itself (SQLite triggers on the journal tables) is `settle::outbox`.

pub mod connect;
pub mod register;
pub mod schema;
pub mod ship;

pub use register::{Refusal, Workstation};
pub use ship::{ShipMonitor, ShipReport, ShipState, Shipper};

use std::path::PathBuf;
use std::time::Duration;

/// `[hospital]` as the shipper needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HospitalSettings {
    /// libpq-style `key=value` connection string, without a password.
    pub database: String,
    /// The role's password, one line, readable by the daemon's user only; empty: none.
    pub password_file: PathBuf,
    /// The CA that signs the server's certificate; set: TLS is required.
    pub ssl_root_cert: PathBuf,
    /// Pause between two turns of the shipper when it is caught up.
    pub ship_interval: Duration,
}

/// Why the hospital database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HospitalError {
    #[error(
        "hospital.database holds a password: put the password in hospital.password_file (readable by the daemon's user only) and take password= out of the connection string"
    )]
    PasswordInConnectionString,
    #[error("hospital.database is not a PostgreSQL connection string (key=value …): {0}")]
    ConnectionString(#[source] postgres::Error),
    #[error(
        "hospital.database names host {host:?}, which is not this machine, without TLS: set hospital.ssl_root_cert to the CA of the database server's certificate"
    )]
    PlainToAnotherHost { host: String },
    #[error("hospital.password_file {path}: {source}", path = path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "hospital.password_file {path} can be read by other users (mode {mode:o}): make it the daemon's user's only (chmod 600 {path})",
        path = path.display()
    )]
    PasswordFileOpen { path: PathBuf, mode: u32 },
    #[error("hospital.ssl_root_cert {path}: {reason}", path = path.display())]
    RootCert { path: PathBuf, reason: String },
    /// No connection (down, refused, timed out, authentication failed) or it broke.
    #[error("the hospital database is unreachable: {}", first_line(.0))]
    Unreachable(#[source] postgres::Error),
    /// The database answered with an error.
    #[error("the hospital database: {}", first_line(.0))]
    Database(#[source] postgres::Error),
    #[error(
        "the hospital database's schema is version {found}, newer than this medcard knows ({known}): upgrade medcard on this workstation"
    )]
    NewerSchema { found: i32, known: i32 },
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The workstation's row changed under the shipper (the next connect registers again).
    #[error("the hospital database no longer holds this workstation's registration")]
    NotRegistered,
    #[error("the local journal: {0}")]
    Journal(#[from] crate::cache::CacheError),
}

impl HospitalError {
    /// Whether this is a problem of the settings or the hospital's refusal (the daemon does
    /// not start with one), rather than a database that is down for now.
    pub fn is_operator_error(&self) -> bool {
        !matches!(
            self,
            HospitalError::Unreachable(_)
                | HospitalError::Database(_)
                | HospitalError::NotRegistered
                | HospitalError::Journal(_)
        )
    }
}

impl From<postgres::Error> for HospitalError {
    fn from(e: postgres::Error) -> HospitalError {
        if e.as_db_error().is_some() {
            HospitalError::Database(e)
        } else {
            HospitalError::Unreachable(e)
        }
    }
}

/// The first line of an error (PostgreSQL's DETAIL lines may quote row values: they stay out
/// of logs and `system.info`).
fn first_line(e: &postgres::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
