//! The cardholder's PIN: VERIFY (`00 20 00 00 Lc <BCD PIN>`), tries left (`63Cx`), locked
//! (`6983`). The PIN comes from the caller, is wiped from memory when dropped, and never
//! reaches a log or a trace (the command data is redacted).

use super::ReadError;
use crate::apdu::{ApduError, Command, Exchanger, Redaction, Response, StatusWord};
use crate::reader::pinpad;
use zeroize::Zeroizing;

/// A PIN of 4 to 16 digits, zeroed when dropped.
pub struct Pin(Zeroizing<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a PIN is 4 to 16 digits")]
pub struct BadPin;

impl Pin {
    pub fn new(digits: &str) -> Result<Pin, BadPin> {
        let digits = digits.trim();
        if (4..=16).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Pin(Zeroizing::new(digits.to_owned())))
        } else {
            Err(BadPin)
        }
    }

    /// Two digits a byte, an odd count padded with F.
    fn bcd(&self) -> Zeroizing<Vec<u8>> {
        let mut text = Zeroizing::new(self.0.to_string());
        if text.len() % 2 == 1 {
            text.push('F');
        }
        Zeroizing::new(hex::decode(text.as_str()).unwrap_or_default())
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<secret>)")
    }
}

/// What the card says of its PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PinState {
    /// Verified (or no PIN is set).
    Ok,
    /// A PIN is set; so many tries are left.
    Required { tries_left: u8 },
    /// No tries left.
    Locked,
}

/// VERIFY with no data: whether a PIN is set and how many tries are left. Costs no try.
pub fn pin_state(ex: &mut Exchanger<'_>) -> Result<PinState, ReadError> {
    let response = ex.exchange(&Command::new(0x00, 0x20, 0x00, 0x00))?;
    state_of(response.sw, &Command::new(0x00, 0x20, 0x00, 0x00))
}

/// How the holder gives the PIN.
#[derive(Debug, Clone, Copy)]
pub enum PinEntry<'a> {
    /// Typed at the workstation (from the caller).
    Typed(&'a Pin),
    /// On the reader's own keypad (PC/SC part 10): it never reaches the workstation.
    PinPad,
}

/// Seconds the patient has to type on the pad.
const PAD_TIMEOUT_S: u8 = 30;

/// VERIFY by `entry`.
pub fn verify_pin_entry(ex: &mut Exchanger<'_>, entry: PinEntry<'_>) -> Result<(), ReadError> {
    match entry {
        PinEntry::Typed(pin) => verify_pin(ex, pin),
        PinEntry::PinPad => verify_pin_on_pad(ex),
    }
}

/// VERIFY on the reader's PIN pad (FEATURE_VERIFY_PIN_DIRECT).
pub fn verify_pin_on_pad(ex: &mut Exchanger<'_>) -> Result<(), ReadError> {
    let features = ex
        .control(pinpad::GET_FEATURE_REQUEST, &[])
        .unwrap_or_default();
    let code = pinpad::verify_pin_direct_code(&features).ok_or(ReadError::NoPinPad)?;
    let reply = ex.control(code, &pinpad::verify_structure(PAD_TIMEOUT_S))?;
    let length = reply.len();
    let response = Response::from_bytes(reply)
        .ok_or_else(|| ReadError::Apdu(ApduError::CardGone(length, "VERIFY (PIN pad)".into())))?;
    let command = Command::new(0x00, 0x20, 0x00, 0x00);
    match response.sw {
        StatusWord(0x6400) => Err(ReadError::PinPadTimeout),
        StatusWord(0x6401) => Err(ReadError::PinPadCancelled),
        sw => match state_of(sw, &command)? {
            PinState::Ok => Ok(()),
            PinState::Required { tries_left } => Err(ReadError::PinWrong { tries_left }),
            PinState::Locked => Err(ReadError::PinLocked),
        },
    }
}

/// VERIFY the PIN; a wrong or locked PIN is an error naming the tries left.
pub fn verify_pin(ex: &mut Exchanger<'_>, pin: &Pin) -> Result<(), ReadError> {
    let command = Command::new(0x00, 0x20, 0x00, 0x00)
        .with_data(pin.bcd().to_vec())
        .redacted(Redaction::CommandData);
    let response = ex.exchange(&command)?;
    match state_of(response.sw, &command)? {
        PinState::Ok => Ok(()),
        PinState::Required { tries_left } => Err(ReadError::PinWrong { tries_left }),
        PinState::Locked => Err(ReadError::PinLocked),
    }
}

fn state_of(sw: StatusWord, command: &Command) -> Result<PinState, ReadError> {
    match sw {
        StatusWord::OK => Ok(PinState::Ok),
        StatusWord::AUTH_BLOCKED => Ok(PinState::Locked),
        sw => match sw.tries_left() {
            Some(0) => Ok(PinState::Locked),
            Some(tries_left) => Ok(PinState::Required { tries_left }),
            None => Err(ReadError::Apdu(crate::apdu::status_error(sw, command))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_4_to_16_digits() {
        assert!(Pin::new("123456").is_ok());
        assert!(
            Pin::new(" 1234\n").is_ok(),
            "surrounding white space is not part of the PIN"
        );
        assert_eq!(Pin::new("123").unwrap_err(), BadPin);
        assert!(Pin::new("12a456").is_err());
        assert!(Pin::new(&"1".repeat(17)).is_err());
    }

    #[test]
    fn bcd_packs_two_digits_a_byte_and_pads_with_f() {
        assert_eq!(
            Pin::new("123456").unwrap().bcd().as_slice(),
            &[0x12, 0x34, 0x56]
        );
        assert_eq!(
            Pin::new("12345").unwrap().bcd().as_slice(),
            &[0x12, 0x34, 0x5F]
        );
    }

    #[test]
    fn debug_never_shows_the_digits() {
        assert_eq!(
            format!("{:?}", Pin::new("123456").unwrap()),
            "Pin(<secret>)"
        );
    }

    #[test]
    fn status_words_map_to_pin_states() {
        let c = Command::new(0, 0x20, 0, 0);
        assert_eq!(state_of(StatusWord(0x9000), &c).unwrap(), PinState::Ok);
        assert_eq!(
            state_of(StatusWord(0x63C2), &c).unwrap(),
            PinState::Required { tries_left: 2 }
        );
        assert_eq!(state_of(StatusWord(0x63C0), &c).unwrap(), PinState::Locked);
        assert_eq!(state_of(StatusWord(0x6983), &c).unwrap(), PinState::Locked);
        assert!(state_of(StatusWord(0x6A88), &c).is_err());
    }
}
