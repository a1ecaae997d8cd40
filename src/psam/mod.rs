//! The PSAM (安全存取模块) in a second reader slot: it holds the keys a 3.0 card's holder file
//! is locked with (RKSSSE) and the key that proves a card genuine (internal authentication).
//! medcard never holds or computes keys itself: the PSAM diversifies its master key with
//! the card's factor and computes each cryptogram.
//!
//! Commands (PBOC-style PSAM, as the virtual PSAM in `sim::card::psam` answers them):
//! `00 B0 96 00 06` reads the terminal number (file 0016) — also how a PSAM is recognised;
//! `80 1A <usage> <algorithm> 08 <factor>` loads the diversified key;
//! `80 FA 00 00 08 <data> 08` returns the 8-byte cryptogram.

use crate::apdu::{ApduError, Command, Exchanger, Redaction, StatusWord};
use crate::codes::ReaderCode;

/// Which of the PSAM's keys a computation uses (P1 of `80 1A`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    /// RKSSSE: external authentication, opens the SSSE holder file on 3.0 cards.
    Rkssse = 0x01,
    /// Internal authentication: checks that the card is genuine.
    Internal = 0x02,
}

/// Algorithm ids of the card's FCI (`9F0C`/`86`): 01 DES/3DES, 02 SSF33, 03 SM4.
pub const ALGORITHM_DES: u8 = 0x01;
pub const ALGORITHM_SSF33: u8 = 0x02;
pub const ALGORITHM_SM4: u8 = 0x03;

#[derive(Debug, thiserror::Error)]
pub enum PsamError {
    #[error("no PSAM: reader {0:?} holds no card that answers as a PSAM")]
    NotAPsam(String),
    #[error("the PSAM holds no {0:?} key")]
    MissingKey(KeyUsage),
    #[error("the PSAM does not support algorithm {0:02X} (SM4/SSF33) for this card")]
    UnsupportedAlgorithm(u8),
    #[error("the PSAM refused the computation: {}", .0.describe())]
    Refused(StatusWord),
    /// The PSAM answered a cryptogram that is not 8 bytes.
    #[error("the PSAM refused the computation: {0} bytes instead of 8")]
    BadCryptogram(usize),
    #[error("PSAM reader: {0}")]
    Apdu(#[from] ApduError),
}

impl PsamError {
    pub fn reader_code(&self) -> ReaderCode {
        match self {
            PsamError::NotAPsam(_) => ReaderCode::NO_PSAM,
            PsamError::MissingKey(KeyUsage::Rkssse) => ReaderCode::PSAM_NO_RKSSSE,
            PsamError::MissingKey(KeyUsage::Internal) => ReaderCode::PSAM_KEY_LEVEL,
            PsamError::UnsupportedAlgorithm(_) => ReaderCode::PSAM_NO_ALGORITHM,
            PsamError::Refused(_) | PsamError::BadCryptogram(_) | PsamError::Apdu(_) => {
                ReaderCode::NO_PSAM
            }
        }
    }
}

/// What computes cryptograms for the card reader: a PSAM here, an HSM later.
pub trait Authenticator {
    /// 终端机编号 (12 digits) for the iReadCardBas string.
    fn terminal_no(&self) -> Option<&str>;
    /// The 8-byte cryptogram of `data` under the key of `usage`, diversified by `factor`.
    fn cryptogram(
        &mut self,
        usage: KeyUsage,
        algorithm: u8,
        factor: &[u8; 8],
        data: &[u8; 8],
    ) -> Result<[u8; 8], PsamError>;
}

/// A PSAM reached through its reader channel.
pub struct Psam<'e, 'c> {
    ex: &'e mut Exchanger<'c>,
    terminal_no: String,
}

impl<'e, 'c> Psam<'e, 'c> {
    /// Reads the terminal number; a card that cannot answer it is not a PSAM.
    pub fn open(ex: &'e mut Exchanger<'c>, reader: &str) -> Result<Psam<'e, 'c>, PsamError> {
        let command = Command::new(0x00, 0xB0, 0x96, 0x00).with_le(6);
        let response = ex.exchange(&command)?;
        if !response.is_ok() || response.data.len() != 6 {
            return Err(PsamError::NotAPsam(reader.to_owned()));
        }
        let terminal_no = hex::encode_upper(&response.data);
        if !terminal_no.bytes().all(|c| c.is_ascii_digit()) {
            return Err(PsamError::NotAPsam(reader.to_owned()));
        }
        Ok(Psam { ex, terminal_no })
    }
}

impl Authenticator for Psam<'_, '_> {
    fn terminal_no(&self) -> Option<&str> {
        Some(&self.terminal_no)
    }

    fn cryptogram(
        &mut self,
        usage: KeyUsage,
        algorithm: u8,
        factor: &[u8; 8],
        data: &[u8; 8],
    ) -> Result<[u8; 8], PsamError> {
        let init = Command::new(0x80, 0x1A, usage as u8, algorithm)
            .with_data(factor.to_vec())
            .redacted(Redaction::CommandData);
        match self.ex.exchange(&init)?.sw {
            StatusWord::OK => {}
            StatusWord::KEY_NOT_FOUND => return Err(PsamError::MissingKey(usage)),
            StatusWord::FUNCTION_NOT_SUPPORTED | StatusWord::WRONG_P1P2 => {
                return Err(PsamError::UnsupportedAlgorithm(algorithm));
            }
            sw => return Err(PsamError::Refused(sw)),
        }
        let compute = Command::new(0x80, 0xFA, 0x00, 0x00)
            .with_data(data.to_vec())
            .with_le(8)
            .redacted(Redaction::CommandData);
        let response = self.ex.exchange(&compute)?;
        if !response.is_ok() {
            return Err(PsamError::Refused(response.sw));
        }
        response
            .data
            .as_slice()
            .try_into()
            .map_err(|_| PsamError::BadCryptogram(response.data.len()))
    }
}

/// The first of `candidates` (reader names) holding a card that answers as a PSAM.
pub fn find_psam(
    backend: &mut dyn crate::reader::ReaderBackend,
    candidates: &[String],
) -> Option<String> {
    candidates.iter().find_map(|reader| {
        crate::reader::with_card(backend, reader, |channel| {
            Psam::open(&mut Exchanger::new(channel), reader).is_ok()
        })
        .ok()
        .filter(|is_psam| *is_psam)
        .map(|_| reader.clone())
    })
}

/// The key-diversification factor from 卡识别码 (card-spec.md §1.4): the region's ASCII ‖ "sx";
/// for regions starting "33", the first four digits ‖ "00" ‖ "sx".
pub fn diversification_factor(card_id: &str) -> Option<[u8; 8]> {
    let region = card_id.get(..6).filter(|r| r.is_ascii())?;
    let mut factor = [0u8; 8];
    if region.starts_with("33") {
        factor[..4].copy_from_slice(&region.as_bytes()[..4]);
        factor[4..6].copy_from_slice(b"00");
    } else {
        factor[..6].copy_from_slice(region.as_bytes());
    }
    factor[6..].copy_from_slice(b"sx");
    Some(factor)
}

/// The algorithm when the card's FCI names none: SSF33 for regions starting "11", else DES
/// (SC-RW §10.1).
pub fn default_algorithm(card_id: &str) -> u8 {
    if card_id.starts_with("11") {
        ALGORITHM_SSF33
    } else {
        ALGORITHM_DES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_is_the_region_in_ascii_and_sx() {
        assert_eq!(
            &diversification_factor("440100D156000005C5F96E75C454FA23").unwrap(),
            b"440100sx"
        );
        assert_eq!(diversification_factor("4401"), None);
    }

    #[test]
    fn region_33_keeps_four_digits_then_00() {
        // card-spec.md §1.4: "33" → ASCII of the first two bytes ‖ 30 30 73 78.
        assert_eq!(
            &diversification_factor("330106D156000005AAAAAAAAAAAAAAAA").unwrap(),
            b"330100sx"
        );
        assert_eq!(
            &diversification_factor("340106D156000005AAAAAAAAAAAAAAAA").unwrap(),
            b"340106sx"
        );
    }

    #[test]
    fn default_algorithm_by_region() {
        assert_eq!(default_algorithm("110100D156"), ALGORITHM_SSF33);
        assert_eq!(default_algorithm("500000D156"), ALGORITHM_DES);
    }
}
