//! medcard: smart-card terminal middleware for the Chinese social security card (社会保障卡).
//!
//! The layers, bottom to top, as ARCHITECTURE.md states them (and `tests/suite/architecture.rs`
//! enforces): a module imports only its own layer and those below it, and each module's doc
//! comment says what it owns.
//!
//! ```text
//! money, clock, mask      leaves: amounts and the one rounding, Beijing business time, masking
//! fields                  leaf: the platform's field rules (lengths, printing text, ID numbers)
//! metrics                 leaf: the daemon's Prometheus metrics (a registry per daemon)
//! apdu (+ transport), codes   ISO 7816-4, T=0, status words, the CardChannel; reader-interface codes
//! reader                  reader backends (PC/SC through pcscd, PIN pads)
//! profile                 card layouts as data
//! card, psam              reading and decoding a card; the PSAM's cryptograms
//! insurer                 the national platform's HTTP interface
//! cache                   the local SQLite file and its sync
//! verdict                 what a card read and the insurer's knowledge say at the counter
//! settle                  settlement, journal first, exactly once
//! hospital                the journal shipped to the hospital's PostgreSQL
//! serve                   the daemon (serve::Daemon), its socket and its client (serve::client)
//! ```
//!
//! The binary's `cli` sits on top. [`sim`] is the other side of the wire — virtual cards and
//! PSAMs, the insurer simulator, pcscd for the end-to-end stack: it may use the layers, none
//! of them uses it. [`fuzzing`] stands beside it: the fuzz targets' entry points (`fuzz/`).

pub mod apdu;
pub mod cache;
pub mod card;
pub mod clock;
pub mod codes;
pub mod fields;
#[doc(hidden)]
pub mod fuzzing;
pub mod hospital;
pub mod insurer;
pub mod mask;
pub mod metrics;
pub mod money;
pub mod profile;
pub mod psam;
pub mod reader;
pub mod serve;
pub mod settle;
pub mod sim;
pub mod verdict;
