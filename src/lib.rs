//! medcard: smart-card terminal middleware for the Chinese social security card (社会保障卡).
//!
//! Data flows one way through the layers below; each module's doc comment says what it owns.
//!
//! ```text
//! reader (PC/SC, virtual) → apdu (T=0, status words) → profile (layouts as data)
//!        → card (read + decode a card) → cli / later: cache, insurer, settlement, socket
//! ```
//!
//! Under all of them are two leaves that import nothing of the crate: [`money`] (amounts, the one
//! rounding to the fen, the settlement amounts) and [`clock`] (business date and time, Beijing
//! time).
//!
//! `sim` is the other side of the wire: a virtual card that answers APDUs, served in-process
//! (through [`reader::virtual_reader`]) or to the real pcscd through vpcd.

pub mod apdu;
pub mod cache;
pub mod card;
pub mod clock;
pub mod codes;
pub mod insurer;
pub mod mask;
pub mod money;
pub mod pcscd;
pub mod profile;
pub mod psam;
pub mod reader;
pub mod serve;
pub mod settle;
pub mod sim;
pub mod verdict;
