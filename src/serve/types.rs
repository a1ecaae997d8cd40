//! What the reader monitor shares with the socket side: reader states, card sessions, events
//! (the scanners' `credential.scanned` among them) and the errors a session request can meet. Serialised as they go on the wire.

use crate::card::CardRead;
use crate::codes::ReaderCode;
use crate::verdict::{Insured, Verdict};
use serde::Serialize;

/// What a reader shows, as `readers.list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderState {
    /// No card.
    Empty,
    /// A card is in, not read yet.
    Present,
    /// The card is being read.
    Reading,
    /// The card was read: a session holds it.
    Ready,
    /// The card could not be read (the error says why); it stays so until removed.
    Error,
}

impl ReaderState {
    /// Every state, in the order a card goes through them.
    pub const ALL: [ReaderState; 5] = [
        ReaderState::Empty,
        ReaderState::Present,
        ReaderState::Reading,
        ReaderState::Ready,
        ReaderState::Error,
    ];

    /// The name on every wire (`empty`, `ready` …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderState::Empty => "empty",
            ReaderState::Present => "present",
            ReaderState::Reading => "reading",
            ReaderState::Ready => "ready",
            ReaderState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderInfo {
    pub name: String,
    pub state: ReaderState,
    /// The card's ATR, upper-case hex, when a card is in.
    pub atr: Option<String>,
    /// Why the last read failed (state `error`).
    pub error: Option<String>,
    /// The national reader-interface code of that failure.
    pub reader_code: Option<ReaderCode>,
}

/// A card read once at insertion and held until it is removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardSession {
    /// Unique for the daemon's lifetime; a swapped card is a new session.
    pub session_id: u64,
    pub reader: String,
    /// RFC 3339, the workstation's clock.
    pub read_at: String,
    #[serde(flatten)]
    pub card: CardRead,
    /// May this card settle now, and why not (docs/verdicts.md); `null` when the daemon has
    /// neither an insurer link nor cached facts to judge by.
    pub verdict: Option<Verdict>,
    /// The insurance the verdict rests on (`null` when the holder is unknown).
    pub insured: Option<Insured>,
}

/// Notifications to `events.subscribe` subscribers, in order per reader.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CardEvent {
    #[serde(rename = "reader.added")]
    ReaderAdded { reader: String },
    #[serde(rename = "reader.removed")]
    ReaderRemoved { reader: String },
    #[serde(rename = "card.inserted")]
    CardInserted { reader: String, atr: String },
    #[serde(rename = "card.ready")]
    CardReady {
        reader: String,
        card: Box<CardSession>,
    },
    #[serde(rename = "card.removed")]
    CardRemoved { reader: String },
    #[serde(rename = "card.error")]
    CardError {
        reader: String,
        reader_code: ReaderCode,
        message: String,
    },
    /// A serial scanner read a line (`serve::scanners`). `code` is null in what goes to a
    /// subscriber who may not call mutating methods (`methods::notification_params`).
    #[serde(rename = "credential.scanned")]
    CredentialScanned {
        scanner: String,
        kind: ScanKind,
        code: Option<String>,
        /// RFC 3339, the workstation's clock.
        scanned_at: String,
    },
}

/// What a scanned line looks like (`credential.scanned`'s `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanKind {
    /// An 18-character resident ID number with a valid check character.
    Certno,
    /// Anything else printable of a QR code's plausible length (the 医保电子凭证 code).
    Qr,
    /// Printable, but too short or too long for either.
    Unknown,
}

impl CardEvent {
    /// The reader (or, for `credential.scanned`, the scanner) the event is about.
    pub fn reader(&self) -> &str {
        match self {
            CardEvent::ReaderAdded { reader }
            | CardEvent::ReaderRemoved { reader }
            | CardEvent::CardInserted { reader, .. }
            | CardEvent::CardReady { reader, .. }
            | CardEvent::CardRemoved { reader }
            | CardEvent::CardError { reader, .. } => reader,
            CardEvent::CredentialScanned { scanner, .. } => scanner,
        }
    }

    /// The notification's method name (`card.inserted` …), also its subscription topic.
    pub fn topic(&self) -> &'static str {
        match self {
            CardEvent::ReaderAdded { .. } => "reader.added",
            CardEvent::ReaderRemoved { .. } => "reader.removed",
            CardEvent::CardInserted { .. } => "card.inserted",
            CardEvent::CardReady { .. } => "card.ready",
            CardEvent::CardRemoved { .. } => "card.removed",
            CardEvent::CardError { .. } => "card.error",
            CardEvent::CredentialScanned { .. } => "credential.scanned",
        }
    }
}

/// Why a session request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("no card in {0}")]
    NoCard(String),
    #[error("reader {0:?} not found")]
    UnknownReader(String),
    #[error("several readers hold cards ({0}); name one")]
    AmbiguousReader(String),
    #[error("the card in {reader} could not be read: {message}")]
    Unreadable {
        reader: String,
        reader_code: ReaderCode,
        message: String,
    },
    #[error("no card was inserted within the wait")]
    Timeout,
    #[error("the reader monitor has stopped")]
    MonitorStopped,
}

impl SessionError {
    /// The national reader-interface code that goes in `data.reader_code`.
    pub fn reader_code(&self) -> ReaderCode {
        match self {
            SessionError::NoCard(_) | SessionError::Timeout => ReaderCode::NO_CARD,
            SessionError::Unreadable { reader_code, .. } => *reader_code,
            _ => ReaderCode::READER_CONNECT,
        }
    }
}
