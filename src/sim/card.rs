//! [`VirtualCard`]: how a social security card answers command APDUs (card-spec.md §1–§3).
//!
//! It parses ISO 7816-4 short APDUs (cases 1–4) and answers SELECT, READ RECORD, GET RESPONSE,
//! VERIFY and GET CHALLENGE from a [`CardImage`], with the image's behaviour switches for COS
//! quirks (`61xx` on SELECT, strict Le, no tag or whole-file reads), slowness and vanishing.
//! Every answer is `data ‖ SW1 SW2`; a vanished card answers nothing at all.

use super::image::{CardImage, Ef06Access, Record, Ssse};
use crate::apdu::StatusWord;
use std::time::Duration;

/// DF name of the SSSE application, "sx1.sh.社会保障" (GBK).
pub const SSSE_DF_NAME: &[u8; 15] = b"sx1.sh.\xC9\xE7\xBB\xE1\xB1\xA3\xD5\xCF";

const INS_SELECT: u8 = 0xA4;
const INS_READ_RECORD: u8 = 0xB2;
const INS_GET_RESPONSE: u8 = 0xC0;
const INS_VERIFY: u8 = 0x20;
const INS_GET_CHALLENGE: u8 = 0x84;

const FID_MF: u16 = 0x3F00;
const FID_EF05: u16 = 0xEF05;
const FID_EF06: u16 = 0xEF06;
/// SELECT P2: return the FCI / return nothing.
const P2_FCI: u8 = 0x00;
const P2_NO_RESPONSE: u8 = 0x0C;
/// READ RECORD reference modes (P2 low bits).
const MODE_BY_IDENTIFIER: u8 = 0b000;
const MODE_BY_NUMBER: u8 = 0b100;
const MODE_TO_LAST: u8 = 0b101;
/// Directory SFI announced in the FCI (`88 01 1E`), as on the traced cards.
const DIRECTORY_SFI: u8 = 0x1E;
/// The most a short Le (`00`) asks for.
const MAX_SHORT_LE: usize = 256;

const WRONG_LENGTH: StatusWord = StatusWord(0x6700);
const NO_CURRENT_EF: StatusWord = StatusWord(0x6986);
const WRONG_P1P2: StatusWord = StatusWord(0x6A86);
const KEY_NOT_FOUND: StatusWord = StatusWord(0x6A88);
const INS_NOT_SUPPORTED: StatusWord = StatusWord(0x6D00);
const CLA_NOT_SUPPORTED: StatusWord = StatusWord(0x6E00);
const NOTHING_PENDING: StatusWord = StatusWord(0x6F00);

/// A handler's outcome: `Ok` with the full response (`data ‖ SW`), or `Err` with the status
/// word that refused the command (or reports PIN tries) and makes up the whole response.
type Reply = Result<Vec<u8>, StatusWord>;

/// A parsed short command APDU.
struct Apdu<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    /// Expected length; a short `00` is 256.
    le: Option<usize>,
}

impl<'a> Apdu<'a> {
    /// ISO 7816-4 cases 1–4, short form. `None` for anything else (malformed, or extended
    /// length, which this card does not support): the card answers `6700`.
    fn parse(bytes: &'a [u8]) -> Option<Apdu<'a>> {
        let (header, body) = bytes.split_first_chunk::<4>()?;
        let [cla, ins, p1, p2] = *header;
        let short_le = |b: u8| if b == 0 { MAX_SHORT_LE } else { usize::from(b) };
        let (data, le) = match body {
            [] => (&body[..0], None),
            [le] => (&body[..0], Some(short_le(*le))),
            [0, _, ..] => return None, // extended length
            [lc, rest @ ..] if rest.len() == usize::from(*lc) => (rest, None),
            [lc, rest @ ..] if rest.len() == usize::from(*lc) + 1 => {
                let (data, le) = rest.split_at(usize::from(*lc));
                (data, le.first().map(|&b| short_le(b)))
            }
            _ => return None,
        };
        Some(Apdu {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }
}

/// The two record files under SSSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ef {
    Ef05,
    Ef06,
}

impl Ef {
    fn from_sfi(sfi: u8) -> Option<Ef> {
        match sfi {
            5 => Some(Ef::Ef05),
            6 => Some(Ef::Ef06),
            _ => None,
        }
    }

    fn records(self, ssse: &Ssse) -> &[Record] {
        match self {
            Ef::Ef05 => &ssse.ef05,
            Ef::Ef06 => &ssse.ef06,
        }
    }
}

/// What power-on resets.
#[derive(Debug, Default)]
struct Session {
    ssse_selected: bool,
    current_ef: Option<Ef>,
    /// Response data waiting for GET RESPONSE (only right after the command that left it).
    pending: Vec<u8>,
    /// External authentication with RKSSSE done (EXTERNAL AUTHENTICATE is not implemented
    /// yet, so a card with `ef06_access = "external_auth"` keeps answering `6982`).
    externally_authenticated: bool,
}

/// The PIN as the card keeps it: BCD reference and tries counter (survives power-off).
#[derive(Debug)]
struct PinState {
    reference: Vec<u8>,
    tries_left: u8,
    max_tries: u8,
}

/// A virtual social security card.
#[derive(Debug)]
pub struct VirtualCard {
    image: CardImage,
    session: Session,
    pin: Option<PinState>,
    apdus_seen: usize,
    last_challenge: Option<Vec<u8>>,
}

impl VirtualCard {
    pub fn new(image: CardImage) -> VirtualCard {
        let pin = image.pin.as_ref().map(|pin| PinState {
            reference: pin.bcd(),
            tries_left: pin.tries_left,
            max_tries: pin.max_tries,
        });
        VirtualCard {
            image,
            session: Session::default(),
            pin,
            apdus_seen: 0,
            last_challenge: None,
        }
    }

    pub fn image(&self) -> &CardImage {
        &self.image
    }

    pub fn atr(&self) -> &[u8] {
        &self.image.atr
    }

    /// Power-on or reset: no application or file selected, no authentication, nothing
    /// pending. PIN tries counters are kept (they live in the card's memory).
    pub fn power_on(&mut self) {
        self.session = Session::default();
    }

    /// The card goes (back) into a reader: powered on, and the `vanish_after` count starts
    /// again, so a card that vanished answers again once reinserted.
    pub fn insert(&mut self) {
        self.power_on();
        self.apdus_seen = 0;
    }

    /// Command APDUs received since the card was inserted (answered or not).
    pub fn apdus_seen(&self) -> usize {
        self.apdus_seen
    }

    /// The bytes of the last GET CHALLENGE answer.
    pub fn last_challenge(&self) -> Option<&[u8]> {
        self.last_challenge.as_deref()
    }

    /// Tries left on the PIN, when the card has one.
    pub fn pin_tries_left(&self) -> Option<u8> {
        self.pin.as_ref().map(|pin| pin.tries_left)
    }

    /// Answers one command APDU with `data ‖ SW1 SW2`. With `vanish_after = N`, the first N
    /// APDUs since insertion are answered; the card is gone from then on: `None` for that
    /// APDU and every later one, until [`insert`](Self::insert).
    pub fn process(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        self.apdus_seen += 1;
        let vanish_after = self.image.behaviour.vanish_after;
        if vanish_after > 0 && self.apdus_seen > vanish_after {
            return None;
        }
        let response = self.respond(apdu).unwrap_or_else(status_only);
        let delay = self.image.behaviour.delay_ms;
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        Some(response)
    }

    fn respond(&mut self, bytes: &[u8]) -> Reply {
        // GET RESPONSE must come right after the command that left data pending.
        let pending = std::mem::take(&mut self.session.pending);
        let apdu = Apdu::parse(bytes).ok_or(WRONG_LENGTH)?;
        if apdu.cla != 0x00 {
            return Err(CLA_NOT_SUPPORTED);
        }
        match apdu.ins {
            INS_SELECT => self.select(&apdu),
            INS_READ_RECORD => self.read_record(&apdu),
            INS_GET_RESPONSE => self.get_response(pending, apdu.le),
            INS_VERIFY => self.verify(&apdu),
            INS_GET_CHALLENGE => self.get_challenge(&apdu),
            _ => Err(INS_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, apdu: &Apdu<'_>) -> Reply {
        if !matches!(apdu.p2, P2_FCI | P2_NO_RESPONSE) {
            return Err(WRONG_P1P2);
        }
        match apdu.p1 {
            0x04 => self.select_by_name(apdu),
            0x00 | 0x02 => self.select_by_fid(apdu.data),
            _ => Err(WRONG_P1P2),
        }
    }

    fn select_by_name(&mut self, apdu: &Apdu<'_>) -> Reply {
        let ssse = match &self.image.ssse {
            Some(ssse) if apdu.data == SSSE_DF_NAME => ssse,
            _ => return Err(StatusWord::FILE_NOT_FOUND),
        };
        let fci = fci(ssse.algorithm);
        self.session.ssse_selected = true;
        self.session.current_ef = None;
        if apdu.p2 == P2_NO_RESPONSE {
            Ok(status_only(StatusWord::OK))
        } else if self.image.behaviour.select_61xx {
            let waiting = more_data(fci.len());
            self.session.pending = fci;
            Ok(status_only(waiting))
        } else {
            self.answer(fci, apdu.le)
        }
    }

    fn select_by_fid(&mut self, data: &[u8]) -> Reply {
        let fid: [u8; 2] = data.try_into().map_err(|_| WRONG_LENGTH)?;
        let ef = match (u16::from_be_bytes(fid), self.session.ssse_selected) {
            (FID_MF, _) => {
                self.session.ssse_selected = false;
                None
            }
            (FID_EF05, true) => Some(Ef::Ef05),
            (FID_EF06, true) => Some(Ef::Ef06),
            _ => return Err(StatusWord::FILE_NOT_FOUND),
        };
        self.session.current_ef = ef;
        Ok(status_only(StatusWord::OK))
    }

    fn read_record(&mut self, apdu: &Apdu<'_>) -> Reply {
        if !apdu.data.is_empty() {
            return Err(WRONG_LENGTH);
        }
        let ef = self.addressed_ef(apdu.p2 >> 3)?;
        self.session.current_ef = Some(ef);
        let data = {
            let records = self.readable_records(ef)?;
            self.read_mode(records, apdu.p1, apdu.p2 & 0b111)?
        };
        self.answer(data, apdu.le)
    }

    /// The EF a READ RECORD addresses: SFI 0 = the current EF, 5/6 = EF05/EF06 under SSSE.
    fn addressed_ef(&self, sfi: u8) -> Result<Ef, StatusWord> {
        if sfi == 0 {
            return self.session.current_ef.ok_or(NO_CURRENT_EF);
        }
        Ef::from_sfi(sfi)
            .filter(|_| self.session.ssse_selected)
            .ok_or(StatusWord::FILE_NOT_FOUND)
    }

    fn readable_records(&self, ef: Ef) -> Result<&[Record], StatusWord> {
        let ssse = self
            .image
            .ssse
            .as_ref()
            .filter(|_| self.session.ssse_selected)
            .ok_or(StatusWord::FILE_NOT_FOUND)?;
        let locked = ef == Ef::Ef06
            && ssse.ef06_access == Ef06Access::ExternalAuth
            && !self.session.externally_authenticated;
        if locked {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        Ok(ef.records(ssse))
    }

    fn read_mode(&self, records: &[Record], p1: u8, mode: u8) -> Result<Vec<u8>, StatusWord> {
        let behaviour = &self.image.behaviour;
        match mode {
            MODE_BY_IDENTIFIER if behaviour.tag_read => record_by_identifier(records, p1),
            MODE_BY_NUMBER => records_from(records, p1, 1),
            MODE_TO_LAST if behaviour.whole_file_read => records_from(records, p1, records.len()),
            _ => Err(WRONG_P1P2),
        }
    }

    /// Applies the Le rules to response data: everything when Le allows it, else `6Cxx`.
    /// More than 256 bytes go out 256 at a time through GET RESPONSE (`61xx`).
    fn answer(&mut self, data: Vec<u8>, le: Option<usize>) -> Reply {
        if data.len() > MAX_SHORT_LE {
            self.session.pending = data;
            return Ok(self.take_pending(MAX_SHORT_LE));
        }
        let exact = self.image.behaviour.exact_le;
        let accepted = match le {
            None => !exact,
            Some(le) => le == data.len() || (!exact && le > data.len()),
        };
        if accepted {
            Ok(with_status(data, StatusWord::OK))
        } else {
            Err(wrong_le(data.len()))
        }
    }

    fn get_response(&mut self, pending: Vec<u8>, le: Option<usize>) -> Reply {
        if pending.is_empty() {
            return Err(NOTHING_PENDING);
        }
        let wanted = le.unwrap_or(MAX_SHORT_LE);
        let available = pending.len().min(MAX_SHORT_LE);
        self.session.pending = pending;
        if self.image.behaviour.exact_le && wanted > available {
            return Err(wrong_le(available));
        }
        Ok(self.take_pending(wanted))
    }

    /// Up to `n` pending bytes, then `9000` or `61xx` (xx = what is still pending).
    fn take_pending(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.session.pending.len());
        let rest = self.session.pending.split_off(n);
        let sw = if rest.is_empty() {
            StatusWord::OK
        } else {
            more_data(rest.len())
        };
        let data = std::mem::replace(&mut self.session.pending, rest);
        with_status(data, sw)
    }

    fn verify(&mut self, apdu: &Apdu<'_>) -> Reply {
        if apdu.p1 != 0x00 || apdu.p2 != 0x00 {
            return Err(WRONG_P1P2);
        }
        let Some(pin) = self.pin.as_mut() else {
            // No PIN: none needed, and nothing to verify against.
            return match apdu.data {
                [] => Ok(status_only(StatusWord::OK)),
                _ => Err(KEY_NOT_FOUND),
            };
        };
        if pin.tries_left == 0 {
            return Err(StatusWord::AUTH_BLOCKED);
        }
        if apdu.data.is_empty() {
            return Err(tries_left(pin.tries_left));
        }
        if apdu.data == pin.reference.as_slice() {
            pin.tries_left = pin.max_tries;
            Ok(status_only(StatusWord::OK))
        } else {
            pin.tries_left -= 1;
            Err(tries_left(pin.tries_left))
        }
    }

    fn get_challenge(&mut self, apdu: &Apdu<'_>) -> Reply {
        if apdu.p1 != 0x00 || apdu.p2 != 0x00 {
            return Err(WRONG_P1P2);
        }
        let len = match (apdu.data.is_empty(), apdu.le) {
            (true, Some(len @ (4 | 8))) => len,
            _ => return Err(WRONG_LENGTH),
        };
        let challenge = pseudo_random(self.apdus_seen as u64, len);
        self.last_challenge = Some(challenge.clone());
        Ok(with_status(challenge, StatusWord::OK))
    }
}

/// `READ RECORD` mode 000: the first record whose identifier (first byte) is `tag`.
fn record_by_identifier(records: &[Record], tag: u8) -> Result<Vec<u8>, StatusWord> {
    records
        .iter()
        .find(|record| record.first() == Some(&tag))
        .cloned()
        .ok_or(StatusWord::RECORD_NOT_FOUND)
}

/// Up to `count` records from record number `first` on, concatenated.
fn records_from(records: &[Record], first: u8, count: usize) -> Result<Vec<u8>, StatusWord> {
    let start = usize::from(first).checked_sub(1).ok_or(WRONG_P1P2)?;
    if start >= records.len() {
        return Err(StatusWord::RECORD_NOT_FOUND);
    }
    Ok(records[start..]
        .iter()
        .take(count)
        .flatten()
        .copied()
        .collect())
}

/// The SSSE FCI: `6F { 84 <DF name>, A5 { 88 01 1E, 9F0C 03 86 01 <algorithm> } }`.
fn fci(algorithm: u8) -> Vec<u8> {
    let issuer_data = [0x9F, 0x0C, 0x03, 0x86, 0x01, algorithm];
    let proprietary = tlv(
        0xA5,
        &[&[0x88, 0x01, DIRECTORY_SFI][..], &issuer_data].concat(),
    );
    tlv(0x6F, &[tlv(0x84, SSSE_DF_NAME), proprietary].concat())
}

/// A one-byte-tag, short-length TLV (values here are far below 128 bytes).
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    [&[tag, value.len() as u8][..], value].concat()
}

fn with_status(mut data: Vec<u8>, sw: StatusWord) -> Vec<u8> {
    data.extend_from_slice(&[sw.sw1(), sw.sw2()]);
    data
}

fn status_only(sw: StatusWord) -> Vec<u8> {
    with_status(Vec::new(), sw)
}

/// A length as SW2 of `61xx` / `6Cxx`: 256 (or more) is `00`.
fn length_byte(len: usize) -> u8 {
    if len >= MAX_SHORT_LE { 0 } else { len as u8 }
}

fn more_data(len: usize) -> StatusWord {
    StatusWord::new(0x61, length_byte(len))
}

fn wrong_le(len: usize) -> StatusWord {
    StatusWord::new(0x6C, length_byte(len))
}

fn tries_left(n: u8) -> StatusWord {
    StatusWord::new(0x63, 0xC0 | (n & 0x0F))
}

/// Challenge bytes: xorshift64 from a seed (no cryptographic value; a simulator).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELECT_SSSE: &str = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF";

    fn image(extra: &str) -> CardImage {
        let text = format!(
            r#"
description = "test card"
atr = "3B 6D 00 00 00 81 4A 44 46 86 60 50 00 00 00 01 AC"
{extra}
[ssse]
algorithm = 0x03
[[ssse.ef05]]
tag = 0x01
b = "500000D15600000512345678ABCDEF01"
[[ssse.ef05]]
tag = 0x03
an = "2.00"
[[ssse.ef06]]
tag = 0x08
an = "500103199103080319"
[[ssse.ef06]]
tag = 0x09
gbk = "王小"
len = 30
"#
        );
        CardImage::from_toml_str(&text, "test").unwrap()
    }

    fn card(extra: &str) -> VirtualCard {
        VirtualCard::new(image(extra))
    }

    /// Sends hex, returns hex.
    fn send(card: &mut VirtualCard, apdu: &str) -> String {
        hex::encode_upper(card.process(&hex::decode(apdu).unwrap()).unwrap())
    }

    fn selected(extra: &str) -> VirtualCard {
        let mut card = card(extra);
        let answer = send(&mut card, SELECT_SSSE);
        assert!(
            answer.ends_with("9000") || answer.starts_with("61"),
            "{answer}"
        );
        card
    }

    #[test]
    fn select_ssse_returns_the_fci() {
        let mut c = card("");
        let answer = send(&mut c, &format!("{SELECT_SSSE}00"));
        assert_eq!(
            answer,
            "6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103\
             9000"
        );
        // Case 3 (no Le) answers the same; P2=0C answers nothing.
        assert!(send(&mut c, SELECT_SSSE).starts_with("6F1C"));
        assert_eq!(
            send(&mut c, "00A4040C0F7378312E73682EC9E7BBE1B1A3D5CF"),
            "9000"
        );
    }

    #[test]
    fn select_unknown_names_and_files() {
        let mut c = card("");
        assert_eq!(send(&mut c, "00A4040007A0000003330101"), "6A82");
        assert_eq!(send(&mut c, "00A4020002EF05"), "6A82"); // SSSE not selected yet
        assert_eq!(send(&mut c, "00A4040107A000000333010100"), "6A86");
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, "00A4020002EF05"), "9000");
        assert_eq!(send(&mut c, "00A4000002EF06"), "9000");
        assert_eq!(send(&mut c, "00A4020002EF07"), "6A82");
        assert_eq!(send(&mut c, "00A4020003EF0500"), "6700");
        assert_eq!(send(&mut c, "00A4000002EF0500"), "9000"); // with Le
        assert_eq!(send(&mut c, "00A40000023F00"), "9000");
        assert_eq!(send(&mut c, "00A4020002EF05"), "6A82"); // left SSSE
    }

    #[test]
    fn card_without_ssse_refuses_the_select() {
        let mut c = VirtualCard::new(
            CardImage::from_toml_str("description = \"bank\"\natr = \"3B6C0000\"\n", "t").unwrap(),
        );
        assert_eq!(send(&mut c, SELECT_SSSE), "6A82");
        assert_eq!(send(&mut c, "00B2012C00"), "6A82");
    }

    #[test]
    fn read_record_modes() {
        let mut c = selected("");
        send(&mut c, "00A4020002EF05");
        // Mode 000, by identifier (current EF).
        assert_eq!(send(&mut c, "00B2030006"), "0304322E30309000");
        // Mode 100, by number, via SFI 5 (P2 = 2C).
        assert_eq!(send(&mut c, "00B2022C00"), "0304322E30309000");
        // Mode 101, P1 to last, via SFI 5 (P2 = 2D).
        assert_eq!(
            send(&mut c, "00B2012D00"),
            "0110500000D15600000512345678ABCDEF010304322E30309000"
        );
        assert_eq!(send(&mut c, "00B2022D00"), "0304322E30309000");
        // SFI 6 = EF06, which then becomes the current EF.
        assert!(send(&mut c, "00B2013400").starts_with("0812353030313033"));
        assert!(send(&mut c, "00B2020400").starts_with("091ECDF5D0A1"));
    }

    #[test]
    fn read_record_errors() {
        let mut c = selected("");
        assert_eq!(send(&mut c, "00B2010400"), "6986"); // no current EF
        assert_eq!(send(&mut c, "00B2013C00"), "6A82"); // SFI 7
        assert_eq!(send(&mut c, "00B2032C00"), "6A83"); // record 3 of 2
        assert_eq!(send(&mut c, "00B2022D00").len(), 16); // "P1 to last" from 2 works
        assert_eq!(send(&mut c, "00B2032D00"), "6A83");
        assert_eq!(send(&mut c, "00B2002C00"), "6A86"); // record 0
        assert_eq!(send(&mut c, "00B2090000"), "6A83"); // no tag 09 in EF05 (current)
        assert_eq!(send(&mut c, "00B2012900"), "6A86"); // mode 001
        let mut fresh = card("");
        assert_eq!(send(&mut fresh, "00B2012C00"), "6A82"); // SSSE not selected
    }

    #[test]
    fn le_rules() {
        let mut c = selected("");
        // Le absent, 00, exact or larger: everything.
        assert_eq!(send(&mut c, "00B2032C"), "6A83");
        assert_eq!(send(&mut c, "00B2022C"), "0304322E30309000");
        assert_eq!(send(&mut c, "00B2022C06"), "0304322E30309000");
        assert_eq!(send(&mut c, "00B2022C10"), "0304322E30309000");
        // Le shorter than the record: 6Cxx with the real length.
        assert_eq!(send(&mut c, "00B2022C04"), "6C06");
        let mut strict = card("[behaviour]\nexact_le = true");
        assert_eq!(send(&mut strict, SELECT_SSSE), "6C1E");
        assert_eq!(send(&mut strict, &format!("{SELECT_SSSE}00")), "6C1E");
        assert!(send(&mut strict, &format!("{SELECT_SSSE}1E")).ends_with("9000"));
        assert_eq!(send(&mut strict, "00B2022C00"), "6C06");
        assert_eq!(send(&mut strict, "00B2022C10"), "6C06");
        assert_eq!(send(&mut strict, "00B2022C"), "6C06");
        assert_eq!(send(&mut strict, "00B2022C06"), "0304322E30309000");
    }

    #[test]
    fn select_61xx_then_get_response() {
        let mut c = card("[behaviour]\nselect_61xx = true");
        assert_eq!(send(&mut c, SELECT_SSSE), "611E");
        assert_eq!(
            send(&mut c, "00C0000010"),
            format!("{}610E", &fci_hex()[..32])
        );
        assert_eq!(
            send(&mut c, "00C000000E"),
            format!("{}9000", &fci_hex()[32..])
        );
        assert_eq!(send(&mut c, "00C000001E"), "6F00"); // nothing pending
        // Pending data lasts only until the next command.
        send(&mut c, SELECT_SSSE);
        send(&mut c, "00A4020002EF05");
        assert_eq!(send(&mut c, "00C000001E"), "6F00");
        // Any Le ≥ pending returns all, unless the COS is strict about Le.
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, "00C0000000"), format!("{}9000", fci_hex()));
        let mut strict = card("[behaviour]\nselect_61xx = true\nexact_le = true");
        assert_eq!(send(&mut strict, SELECT_SSSE), "611E");
        assert_eq!(send(&mut strict, "00C0000000"), "6C1E");
        assert_eq!(
            send(&mut strict, "00C000001E"),
            format!("{}9000", fci_hex())
        );
    }

    fn fci_hex() -> String {
        hex::encode_upper(fci(0x03))
    }

    #[test]
    fn long_answers_chain_through_get_response() {
        let mut c = VirtualCard::new(image(""));
        let mut records = Vec::new();
        for tag in 0x10..0x13u8 {
            records.push([vec![tag, 100], vec![tag; 100]].concat());
        }
        c.image.ssse.as_mut().unwrap().ef05 = records;
        send(&mut c, SELECT_SSSE);
        let first = send(&mut c, "00B2012D00");
        assert_eq!(first.len(), (256 + 2) * 2);
        assert!(first.ends_with("6132"), "{}", &first[first.len() - 4..]); // 306 − 256 = 0x32
        assert_eq!(
            send(&mut c, "00C0000032"),
            format!("{}9000", "12".repeat(0x32))
        );
    }

    #[test]
    fn external_auth_ef06_answers_6982() {
        let mut c = selected("");
        c.image.ssse.as_mut().unwrap().ef06_access = Ef06Access::ExternalAuth;
        assert_eq!(send(&mut c, "00B2013400"), "6982");
        assert_eq!(send(&mut c, "00B2633400"), "6982"); // before the missing-record check
        assert_eq!(send(&mut c, "00A4020002EF06"), "9000");
        assert_eq!(send(&mut c, "00B2080000"), "6982");
        assert_eq!(send(&mut c, "00B2012C00").len(), 40); // EF05 stays free
    }

    #[test]
    fn tag_and_whole_file_switches() {
        let mut c = selected("[behaviour]\ntag_read = false\nwhole_file_read = false");
        assert_eq!(send(&mut c, "00B2012D00"), "6A86");
        send(&mut c, "00A4020002EF05");
        assert_eq!(send(&mut c, "00B2030000"), "6A86");
        assert_eq!(send(&mut c, "00B2020400"), "0304322E30309000");
    }

    #[test]
    fn verify_pin_paths() {
        let mut c = card("[pin]\nvalue = \"123456\"\ntries_left = 3\nmax_tries = 3");
        assert_eq!(send(&mut c, "0020000000"), "63C3"); // query
        assert_eq!(send(&mut c, "0020000003123457"), "63C2");
        assert_eq!(send(&mut c, "0020000003123456"), "9000");
        assert_eq!(c.pin_tries_left(), Some(3)); // reset on success
        assert_eq!(send(&mut c, "00200000"), "63C3");
        assert_eq!(send(&mut c, "0020000003111111"), "63C2");
        assert_eq!(send(&mut c, "0020000003111111"), "63C1");
        assert_eq!(send(&mut c, "0020000003111111"), "63C0");
        assert_eq!(send(&mut c, "0020000003123456"), "6983"); // locked, even the right PIN
        assert_eq!(send(&mut c, "00200000"), "6983");
        c.power_on();
        assert_eq!(c.pin_tries_left(), Some(0)); // counters survive power-off
        assert_eq!(send(&mut c, "0020000103123456"), "6A86");
        let mut odd = card("[pin]\nvalue = \"12345\"");
        assert_eq!(send(&mut odd, "002000000312345F"), "9000");
        let mut none = card("");
        assert_eq!(send(&mut none, "00200000"), "9000");
        assert_eq!(send(&mut none, "0020000003123456"), "6A88");
    }

    #[test]
    fn get_challenge() {
        let mut c = card("");
        let a = send(&mut c, "0084000008");
        assert_eq!(a.len(), 20);
        assert!(a.ends_with("9000"));
        assert_eq!(
            c.last_challenge().map(hex::encode_upper),
            Some(a[..16].to_owned())
        );
        let b = send(&mut c, "0084000004");
        assert_eq!(b.len(), 12);
        assert_ne!(a[..8], b[..8]);
        assert_eq!(send(&mut c, "0084000010"), "6700");
        assert_eq!(send(&mut c, "0084000000"), "6700");
        assert_eq!(send(&mut c, "0084010008"), "6A86");
    }

    #[test]
    fn malformed_and_unsupported_commands() {
        let mut c = card("");
        assert_eq!(send(&mut c, "00A404"), "6700");
        assert_eq!(send(&mut c, "00A404000F7378"), "6700"); // Lc says 15, 2 bytes follow
        assert_eq!(send(&mut c, "00B2012C000004"), "6700"); // extended length
        assert_eq!(send(&mut c, "80A4040000"), "6E00");
        assert_eq!(send(&mut c, "0088000010"), "6D00");
        assert_eq!(send(&mut c, "00CA000000"), "6D00");
    }

    #[test]
    fn vanishes_after_n_apdus_until_reinserted() {
        let mut c = card("[behaviour]\nvanish_after = 2");
        assert!(c.process(&hex::decode(SELECT_SSSE).unwrap()).is_some());
        assert!(c.process(&hex::decode("00B2012C00").unwrap()).is_some());
        assert_eq!(c.process(&hex::decode("00B2022C00").unwrap()), None);
        assert_eq!(c.process(&hex::decode(SELECT_SSSE).unwrap()), None);
        c.power_on();
        assert_eq!(c.process(&hex::decode(SELECT_SSSE).unwrap()), None);
        assert_eq!(c.apdus_seen(), 5);
        c.insert();
        assert!(c.process(&hex::decode(SELECT_SSSE).unwrap()).is_some());
    }

    #[test]
    fn power_on_resets_the_selection() {
        let mut c = selected("");
        assert!(send(&mut c, "00B2012C00").ends_with("9000"));
        c.power_on();
        assert_eq!(send(&mut c, "00B2012C00"), "6A82");
    }

    #[test]
    fn delays_each_response() {
        let mut c = card("[behaviour]\ndelay_ms = 30");
        let started = std::time::Instant::now();
        send(&mut c, SELECT_SSSE);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
