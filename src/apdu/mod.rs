//! The APDU layer: ISO 7816-4 command and response types, status words, and the one place
//! where T=0 quirks (`61xx` → GET RESPONSE, `6Cxx` → resend with the right Le) are handled.
//!
//! Nothing here knows about social security cards; it speaks bytes to a [`CardChannel`]
//! ([`transport`], implemented by the readers) and hands typed [`Response`]s up to the card
//! layer.

mod command;
mod exchange;
mod status;
pub mod transport;

pub use command::{Command, Redaction};
pub use exchange::{ApduError, Exchanger, status_error};
pub use status::StatusWord;
pub use transport::{CardChannel, ReaderError};

/// A response APDU: the data field and the status word that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl Response {
    /// Splits raw response bytes into data and status word. Fewer than two bytes means the
    /// card went away mid-command (vpcd returns an empty reply when the card is pulled).
    pub fn from_bytes(mut raw: Vec<u8>) -> Option<Response> {
        let len = raw.len();
        if len < 2 {
            return None;
        }
        let sw = StatusWord::new(raw[len - 2], raw[len - 1]);
        raw.truncate(len - 2);
        Some(Response { data: raw, sw })
    }

    pub fn is_ok(&self) -> bool {
        self.sw.is_success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_splits_data_and_status_word() {
        let r = Response::from_bytes(vec![0x01, 0x02, 0x90, 0x00]).unwrap();
        assert_eq!(r.data, vec![1, 2]);
        assert!(r.is_ok());
        let r = Response::from_bytes(vec![0x6A, 0x82]).unwrap();
        assert!(r.data.is_empty());
        assert_eq!(r.sw, StatusWord::new(0x6A, 0x82));
    }

    #[test]
    fn short_response_means_card_gone() {
        assert!(Response::from_bytes(vec![]).is_none());
        assert!(Response::from_bytes(vec![0x90]).is_none());
    }
}
