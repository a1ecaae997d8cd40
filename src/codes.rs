//! The national reader-interface error codes (card-spec.md §5.1, SC-RW Appendix A), so that
//! HIS software that already understands `iReadCardBas` return values understands medcard.
//! Their operator texts (the national table's Chinese) are in `serve::messages`.

use crate::apdu::StatusWord;
use serde::Serialize;

/// A reader-interface return code: 0 success, negative failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ReaderCode(pub i32);

impl ReaderCode {
    pub const NOT_SOCIAL_SECURITY_CARD: ReaderCode = ReaderCode(-1);
    pub const NO_CARD: ReaderCode = ReaderCode(-2);
    pub const CARD_NOT_RESPONDING: ReaderCode = ReaderCode(-4);
    pub const LOAD_ERROR: ReaderCode = ReaderCode(-5);
    pub const READER_CONNECT: ReaderCode = ReaderCode(-11);
    pub const NOT_CONNECTED: ReaderCode = ReaderCode(-12);
    pub const CHECKSUM: ReaderCode = ReaderCode(-15);
    pub const CARD_DATA_MISMATCH: ReaderCode = ReaderCode(-22);
    pub const INTERNAL_AUTH_FAILED: ReaderCode = ReaderCode(-21);
    pub const PSAM_KEY_LEVEL: ReaderCode = ReaderCode(-24);
    pub const PIN_WRONG: ReaderCode = ReaderCode(-51);
    pub const PIN_LOCKED: ReaderCode = ReaderCode(-52);
    pub const NO_PSAM: ReaderCode = ReaderCode(-2201);
    pub const PSAM_NO_ALGORITHM: ReaderCode = ReaderCode(-2202);
    pub const PSAM_NO_RKSSSE: ReaderCode = ReaderCode(-2203);

    /// A card status word, reported as −(SW1SW2).
    pub fn from_status(sw: StatusWord) -> ReaderCode {
        ReaderCode(sw.reader_code())
    }

    /// A process exit status for the CLI: the code's magnitude where it fits (1 to 99),
    /// 100 for card status words (−(SW), which do not fit an exit status).
    pub fn exit_status(self) -> u8 {
        match self.0.unsigned_abs() {
            0 => 0,
            n @ 1..=99 => n as u8,
            _ => 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_become_negative_codes_and_exit_100() {
        let code = ReaderCode::from_status(StatusWord(0x6A83));
        assert_eq!(code, ReaderCode(-27267));
        assert_eq!(code.exit_status(), 100);
    }

    #[test]
    fn small_codes_are_their_own_exit_status() {
        assert_eq!(ReaderCode::NO_CARD.exit_status(), 2);
        assert_eq!(ReaderCode::READER_CONNECT.exit_status(), 11);
    }
}
