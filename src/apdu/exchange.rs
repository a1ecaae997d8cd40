//! The exchange loop: sends a [`Command`] over a [`CardChannel`] and returns the complete
//! [`Response`], following `61xx` (GET RESPONSE, append) and `6Cxx` (resend with Le=xx).
//! It counts every APDU on the wire and traces them at `trace` level, redacted: what READ
//! BINARY / READ RECORD answer is traced as a byte count and the status word, a PIN's
//! command data as a byte count, whatever the caller marked.

use super::transport::{CardChannel, ReaderError};
use super::{Command, Redaction, Response, StatusWord};

/// A card that keeps answering `61xx` is broken; stop after this many GET RESPONSEs.
const MAX_GET_RESPONSE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ApduError {
    #[error(transparent)]
    Reader(#[from] ReaderError),
    #[error("the card was removed or stopped answering (response of {0} bytes to {1})")]
    CardGone(usize, String),
    #[error("the card answered {sw} to {command}: {meaning}")]
    Status {
        sw: StatusWord,
        command: String,
        meaning: String,
    },
    #[error("the card keeps answering 61xx; gave up after {0} GET RESPONSE commands")]
    EndlessResponse(usize),
}

impl ApduError {
    /// The status word, when the card itself refused the command.
    pub fn status_word(&self) -> Option<StatusWord> {
        match self {
            ApduError::Status { sw, .. } => Some(*sw),
            _ => None,
        }
    }
}

/// Sends commands to one card and keeps count.
pub struct Exchanger<'c> {
    channel: &'c mut dyn CardChannel,
    apdus: usize,
    log: Option<Vec<Vec<u8>>>,
}

impl<'c> Exchanger<'c> {
    pub fn new(channel: &'c mut dyn CardChannel) -> Exchanger<'c> {
        Exchanger {
            channel,
            apdus: 0,
            log: None,
        }
    }

    /// Also keep every command sent, to replay the exact sequence later (benchmarks).
    pub fn recording(mut self) -> Exchanger<'c> {
        self.log = Some(Vec::new());
        self
    }

    pub fn atr(&self) -> &[u8] {
        self.channel.atr()
    }

    /// APDUs sent so far, GET RESPONSEs and resends included.
    pub fn apdu_count(&self) -> usize {
        self.apdus
    }

    pub fn take_log(&mut self) -> Vec<Vec<u8>> {
        self.log.take().unwrap_or_default()
    }

    /// A reader control command (PIN pad); its data is never traced.
    pub fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, ApduError> {
        tracing::trace!(
            code = format_args!("{code:#010X}"),
            bytes = data.len(),
            "reader control"
        );
        Ok(self.channel.control(code, data)?)
    }

    /// Sends `command`; returns the response whatever its status word.
    pub fn exchange(&mut self, command: &Command) -> Result<Response, ApduError> {
        let mut response = self.send_once(command)?;
        if let Some(le) = response.sw.exact_length() {
            let resend = Command {
                le: Some(if le == 0 { 256 } else { u16::from(le) }),
                ..command.clone()
            };
            response = self.send_once(&resend)?;
        }
        let mut rounds = 0;
        while let Some(available) = response.sw.bytes_available() {
            rounds += 1;
            if rounds > MAX_GET_RESPONSE {
                return Err(ApduError::EndlessResponse(MAX_GET_RESPONSE));
            }
            let next = self.send_once(
                &Command::get_response(available).redacted(redaction_of_reply(command)),
            )?;
            let mut data = std::mem::take(&mut response.data);
            data.extend_from_slice(&next.data);
            response = Response { data, sw: next.sw };
        }
        Ok(response)
    }

    /// Sends `command` and fails unless the card answers `9000`.
    pub fn expect_ok(&mut self, command: &Command) -> Result<Vec<u8>, ApduError> {
        let response = self.exchange(command)?;
        if response.is_ok() {
            Ok(response.data)
        } else {
            Err(status_error(response.sw, command))
        }
    }

    fn send_once(&mut self, command: &Command) -> Result<Response, ApduError> {
        let bytes = command.to_bytes();
        self.apdus += 1;
        if let Some(log) = self.log.as_mut() {
            log.push(bytes.clone());
        }
        let raw = self.channel.transmit(&bytes)?;
        let raw_len = raw.len();
        let response = Response::from_bytes(raw)
            .ok_or_else(|| ApduError::CardGone(raw_len, traced(command).trace_hex()))?;
        if tracing::enabled!(tracing::Level::TRACE) {
            let traced = traced(command);
            tracing::trace!(
                command = %traced.trace_hex(),
                response = %trace_reply(&traced, &response),
                "apdu"
            );
        }
        Ok(response)
    }
}

/// The error for a command the card refused.
pub fn status_error(sw: StatusWord, command: &Command) -> ApduError {
    ApduError::Status {
        sw,
        command: traced(command).trace_hex(),
        meaning: sw.describe(),
    }
}

/// READ BINARY and READ RECORD: what they answer is a file's contents (the card number, the
/// holder's ID number and name, the card's records).
const READS_FILE: [u8; 4] = [0xB0, 0xB1, 0xB2, 0xB3];
/// VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, and the PBOC-style PIN change /
/// unblock: their data is a PIN.
const CARRIES_PIN: [u8; 5] = [0x20, 0x21, 0x24, 0x2C, 0x5E];

/// `command` as it may be traced: a file's contents are personal and a PIN is secret
/// whatever the caller marked (a profile that forgets `personal_data` still hides them).
fn traced(command: &Command) -> Command {
    let redaction = if READS_FILE.contains(&command.ins) {
        Redaction::ResponseData
    } else if CARRIES_PIN.contains(&command.ins) {
        Redaction::CommandData
    } else {
        command.redaction
    };
    command.clone().redacted(redaction)
}

fn redaction_of_reply(command: &Command) -> Redaction {
    match traced(command).redaction {
        Redaction::ResponseData => Redaction::ResponseData,
        _ => Redaction::None,
    }
}

fn trace_reply(command: &Command, response: &Response) -> String {
    if command.redaction == Redaction::ResponseData && !response.data.is_empty() {
        format!("<{} personal bytes> {}", response.data.len(), response.sw)
    } else {
        format!("{}{}", hex::encode_upper(&response.data), response.sw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A channel that replays canned responses and records what it was sent.
    struct Script {
        replies: VecDeque<Vec<u8>>,
        sent: Vec<String>,
    }

    impl Script {
        fn new(replies: &[&str]) -> Script {
            Script {
                replies: replies.iter().map(|r| hex::decode(r).unwrap()).collect(),
                sent: Vec::new(),
            }
        }
    }

    impl CardChannel for Script {
        fn atr(&self) -> &[u8] {
            &[0x3B, 0x00]
        }
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
            self.sent.push(hex::encode_upper(command));
            Ok(self.replies.pop_front().unwrap_or_default())
        }
    }

    #[test]
    fn follows_61xx_with_get_response_and_appends() {
        let mut card = Script::new(&["6103", "AABB6102", "CCDD9000"]);
        let mut ex = Exchanger::new(&mut card);
        let r = ex.exchange(&Command::select_ef(0xEF05)).unwrap();
        assert_eq!(r.data, vec![0xAA, 0xBB, 0xCC, 0xDD]);
        assert!(r.is_ok());
        assert_eq!(ex.apdu_count(), 3);
        assert_eq!(card.sent, ["00A4020002EF05", "00C0000003", "00C0000002"]);
    }

    #[test]
    fn resends_with_exact_le_on_6cxx() {
        let mut card = Script::new(&["6C12", "0110AABB9000"]);
        let mut ex = Exchanger::new(&mut card);
        let r = ex.exchange(&Command::read_record(1, 0, 0, 0)).unwrap();
        assert_eq!(r.data, vec![0x01, 0x10, 0xAA, 0xBB]);
        assert_eq!(card.sent, ["00B2010000", "00B2010012"]);
    }

    #[test]
    fn short_response_is_card_gone_not_a_panic() {
        let mut card = Script::new(&["", "90"]);
        let mut ex = Exchanger::new(&mut card);
        let err = ex.exchange(&Command::select_ef(0xEF05)).unwrap_err();
        assert!(matches!(err, ApduError::CardGone(0, _)), "{err}");
        let err = ex.exchange(&Command::select_ef(0xEF05)).unwrap_err();
        assert!(matches!(err, ApduError::CardGone(1, _)), "{err}");
    }

    #[test]
    fn endless_61xx_is_an_error() {
        let replies: Vec<&str> = std::iter::repeat_n("6101", 40).collect();
        let mut card = Script::new(&replies);
        let mut ex = Exchanger::new(&mut card);
        let err = ex.exchange(&Command::select_ef(0xEF05)).unwrap_err();
        assert!(matches!(err, ApduError::EndlessResponse(_)));
    }

    #[test]
    fn expect_ok_names_the_status_word() {
        let mut card = Script::new(&["6A82"]);
        let mut ex = Exchanger::new(&mut card);
        let err = ex.expect_ok(&Command::select_ef(0xEF07)).unwrap_err();
        assert_eq!(err.status_word(), Some(StatusWord::FILE_NOT_FOUND));
        assert!(err.to_string().contains("file or application not found"));
    }

    #[test]
    fn recording_keeps_the_wire_sequence() {
        let mut card = Script::new(&["6C02", "01009000"]);
        let mut ex = Exchanger::new(&mut card).recording();
        ex.exchange(&Command::read_record(1, 0, 0, 0)).unwrap();
        let log = ex.take_log();
        assert_eq!(log.len(), 2);
        assert_eq!(hex::encode_upper(&log[1]), "00B2010002");
    }
}
