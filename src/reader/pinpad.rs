//! PIN-pad readers (PC/SC v2 part 10): the patient types the PIN on the reader's own keypad
//! and it never passes through the workstation. A reader announces the capability through
//! `CM_IOCTL_GET_FEATURE_REQUEST`; `FEATURE_VERIFY_PIN_DIRECT` then takes a
//! `PIN_VERIFY_STRUCTURE` holding the VERIFY APDU, and the reader fills the PIN in.
//!
//! The social security card's PIN is sent as BCD in `00 20 00 00 Lc <PIN>`; a keypad fills
//! a fixed block, so pad verification uses the card's customary six-digit PIN
//! (`00 20 00 00 03 <3 BCD bytes>`).

/// `SCARD_CTL_CODE(3400)` on pcsc-lite: asks a reader which part 10 features it has.
pub const GET_FEATURE_REQUEST: u32 = 0x4200_0000 + 3400;
/// Feature tag of PIN verification on the reader's keypad.
pub const FEATURE_VERIFY_PIN_DIRECT: u8 = 0x06;
/// Digits a pad verification takes (min = max).
pub const PAD_PIN_DIGITS: u8 = 6;

/// The control code of `FEATURE_VERIFY_PIN_DIRECT` in a GET_FEATURE_REQUEST answer:
/// TLVs of tag (1 byte), length 4, control code (big-endian).
pub fn verify_pin_direct_code(features: &[u8]) -> Option<u32> {
    features.chunks(6).find_map(|tlv| match tlv {
        [FEATURE_VERIFY_PIN_DIRECT, 4, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    })
}

/// A `PIN_VERIFY_STRUCTURE` for the card's VERIFY: BCD, left-justified, at the first data
/// byte, a 3-byte block, 6 digits, confirmed with the OK key, the reader's default message,
/// Chinese (zh-CN) prompts, `timeout_s` seconds to type.
pub fn verify_structure(timeout_s: u8) -> Vec<u8> {
    let apdu = [0x00, 0x20, 0x00, 0x00, 0x03, 0xFF, 0xFF, 0xFF];
    let mut s = vec![
        timeout_s,      // bTimerOut
        timeout_s,      // bTimerOut2
        0x81,           // bmFormatString: bytes, position 0, left, BCD
        0x03,           // bmPINBlockString: no length field, 3-byte block
        0x00,           // bmPINLengthFormat: no length in the APDU data
        PAD_PIN_DIGITS, // wPINMaxExtraDigit (LE): max digits
        PAD_PIN_DIGITS, //   … and min digits
        0x02,           // bEntryValidationCondition: OK key
        0x01,           // bNumberMessage
        0x04,           // wLangId (LE) 0x0804 zh-CN
        0x08,
        0x00, // bMsgIndex
        0x00, // bTeoPrologue
        0x00,
        0x00,
    ];
    s.extend_from_slice(&(apdu.len() as u32).to_le_bytes()); // ulDataLength
    s.extend_from_slice(&apdu);
    s
}

/// What a keypad does with a `PIN_VERIFY_STRUCTURE` and the digits typed on it: the APDU it
/// sends to the card. Used by the simulated pad; `None` for a structure it cannot follow.
pub fn fill_verify(structure: &[u8], typed: &str) -> Option<Vec<u8>> {
    let (header, rest) = structure.split_at_checked(19)?;
    let length = u32::from_le_bytes(header[15..19].try_into().ok()?) as usize;
    let mut apdu = rest.get(..length)?.to_vec();
    let (format, block) = (header[2], usize::from(header[3] & 0x0F));
    let (min, max) = (header[6], header[5]);
    let digits = typed.len();
    if format & 0x03 != 0x01 || digits < usize::from(min) || digits > usize::from(max) {
        return None;
    }
    if !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let position = 5 + usize::from((format >> 3) & 0x0F);
    let mut bcd = hex::decode(format!("{typed:F<width$}", width = block * 2)).ok()?;
    bcd.truncate(block);
    apdu.get_mut(position..position + block)?
        .copy_from_slice(&bcd);
    Some(apdu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_verify_feature_among_others() {
        // FEATURE_VERIFY_PIN_START (01) and VERIFY_PIN_DIRECT (06), as a CCID reader answers.
        let features = hex::decode("0104423300010604423300060A0442330012").unwrap();
        assert_eq!(verify_pin_direct_code(&features), Some(0x4233_0006));
        assert_eq!(
            verify_pin_direct_code(&hex::decode("010442330001").unwrap()),
            None
        );
        assert_eq!(verify_pin_direct_code(&[]), None);
    }

    #[test]
    fn the_structure_carries_the_verify_apdu_little_endian() {
        let s = verify_structure(30);
        assert_eq!(s.len(), 19 + 8);
        assert_eq!(&s[..5], &[30, 30, 0x81, 0x03, 0x00]);
        assert_eq!(&s[9..11], &[0x04, 0x08], "zh-CN");
        assert_eq!(&s[15..19], &[8, 0, 0, 0]);
        assert_eq!(hex::encode_upper(&s[19..]), "0020000003FFFFFF");
    }

    #[test]
    fn a_pad_fills_the_bcd_pin_into_the_apdu() {
        let apdu = fill_verify(&verify_structure(30), "123456").unwrap();
        assert_eq!(hex::encode_upper(apdu), "0020000003123456");
        assert_eq!(
            fill_verify(&verify_structure(30), "1234"),
            None,
            "too few digits"
        );
        assert_eq!(fill_verify(&verify_structure(30), "12a456"), None);
        assert_eq!(fill_verify(&[0; 10], "123456"), None, "truncated structure");
    }
}
