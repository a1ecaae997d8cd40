//! [`VirtualCard`]: how a social security card answers command APDUs (card-spec.md §1–§5).
//!
//! It parses ISO 7816-4 short APDUs (cases 1–4) and answers from a [`CardImage`]:
//!
//! - SELECT (SSSE by name, DF04 by AID `D1 56 00 00 05 03`, EF05/EF06 under SSSE, EF05/EF08
//!   under DF04, MF), READ RECORD (by identifier, by number, P1 to last), GET RESPONSE;
//! - VERIFY (PIN; a success holds until power-on, across application switches);
//! - GET CHALLENGE (8 or 4 bytes; the 8-byte one is remembered for EXTERNAL AUTHENTICATE);
//! - EXTERNAL AUTHENTICATE `00 82 00 0A 10 <C ‖ R>` with the RKSSSE key (opens EF06 on 3.0
//!   cards) and INTERNAL AUTHENTICATE `00 88 00 00 10 <P ‖ R>` (card genuineness), with the
//!   card's keys diversified from the image's TEST masters ([`super::crypto`]);
//! - DF04 (医疗保险): EF05 (`8F` 医疗保险用卡方式), EF08 (医疗交易明细, record 1 = newest) and
//!   GET BALANCE `B0 26 00 P2 Le` (CLA B0), all behind the PIN.
//!
//! Behaviour switches of the image add COS quirks (`61xx` on SELECT, strict Le, no tag or
//! whole-file reads), slowness and vanishing. Every answer is `data ‖ SW1 SW2`; a vanished card
//! answers nothing at all. The exact status words and their order of checks are in
//! `fixtures/cards/README.md`.

use super::command::{Apdu, MAX_SHORT_LE, more_data, status_only, with_status, wrong_le};
use super::crypto::{self, Algorithm, SecretKey};
use super::image::{CardImage, Df04, Ef06Access, MAX_AUTH_TRIES, Record, Ssse};
use crate::apdu::StatusWord;
use std::time::Duration;

/// DF name of the SSSE application, "sx1.sh.社会保障" (GBK).
pub const SSSE_DF_NAME: &[u8; 15] = b"sx1.sh.\xC9\xE7\xBB\xE1\xB1\xA3\xD5\xCF";
/// AID of DF04, 社会保险信息区2 (医疗保险).
pub const DF04_AID: &[u8; 6] = b"\xD1\x56\x00\x00\x05\x03";
/// Key identifier of RKSSSE in EXTERNAL AUTHENTICATE's P2.
pub const RKSSSE_KEY_ID: u8 = 0x0A;

const INS_SELECT: u8 = 0xA4;
const INS_READ_RECORD: u8 = 0xB2;
const INS_GET_RESPONSE: u8 = 0xC0;
const INS_VERIFY: u8 = 0x20;
const INS_GET_CHALLENGE: u8 = 0x84;
const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
const INS_INTERNAL_AUTHENTICATE: u8 = 0x88;
/// GET BALANCE is `B0 26`: CLA B0 (card-spec.md §4.1).
const CLA_BALANCE: u8 = 0xB0;
const INS_GET_BALANCE: u8 = 0x26;

const FID_MF: u16 = 0x3F00;
const FID_EF05: u16 = 0xEF05;
const FID_EF06: u16 = 0xEF06;
const FID_EF08: u16 = 0xEF08;
/// SELECT P2: return the FCI / return nothing.
const P2_FCI: u8 = 0x00;
const P2_NO_RESPONSE: u8 = 0x0C;
/// READ RECORD reference modes (P2 low bits).
const MODE_BY_IDENTIFIER: u8 = 0b000;
const MODE_BY_NUMBER: u8 = 0b100;
const MODE_TO_LAST: u8 = 0b101;
/// Directory SFI announced in the FCI (`88 01 1E`), as on the traced cards.
const DIRECTORY_SFI: u8 = 0x1E;
/// Challenge, cryptogram and authentication-data halves are 8 bytes.
const BLOCK: usize = 8;

/// A handler's outcome: `Ok` with the full response (`data ‖ SW`), or `Err` with the status
/// word that refused the command (or reports PIN tries) and makes up the whole response.
type Reply = Result<Vec<u8>, StatusWord>;

/// The applications a card can have selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Ssse,
    Df04,
}

/// The record files: EF05/EF06 under SSSE, EF05/EF08 under DF04.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ef {
    Ef05,
    Ef06,
    Df04Ef05,
    Df04Ef08,
}

impl Ef {
    fn from_fid(app: App, fid: u16) -> Option<Ef> {
        match (app, fid) {
            (App::Ssse, FID_EF05) => Some(Ef::Ef05),
            (App::Ssse, FID_EF06) => Some(Ef::Ef06),
            (App::Df04, FID_EF05) => Some(Ef::Df04Ef05),
            (App::Df04, FID_EF08) => Some(Ef::Df04Ef08),
            _ => None,
        }
    }

    fn from_sfi(app: App, sfi: u8) -> Option<Ef> {
        Ef::from_fid(app, 0xEF00 | u16::from(sfi))
    }
}

/// What power-on resets.
#[derive(Debug, Default)]
struct Session {
    app: Option<App>,
    current_ef: Option<Ef>,
    /// Response data waiting for GET RESPONSE (only right after the command that left it).
    pending: Vec<u8>,
    /// EXTERNAL AUTHENTICATE with RKSSSE succeeded since SSSE was selected.
    externally_authenticated: bool,
    /// VERIFY succeeded since power-on.
    pin_verified: bool,
    /// The last 8-byte GET CHALLENGE answer, until an EXTERNAL AUTHENTICATE uses it up.
    challenge: Option<[u8; BLOCK]>,
}

/// The PIN as the card keeps it: BCD reference and tries counter (survives power-off).
#[derive(Debug)]
struct PinState {
    reference: Vec<u8>,
    tries_left: u8,
    max_tries: u8,
}

/// A diversified card key and its algorithm.
#[derive(Debug)]
struct CardKey {
    algorithm: Algorithm,
    key: SecretKey,
}

impl CardKey {
    /// The card's own key from an image master: diversified with its 卡识别码's factor.
    fn from_master(ssse: &Ssse, master: Option<&SecretKey>) -> Option<CardKey> {
        let algorithm = ssse.crypto_algorithm()?;
        let factor = crypto::diversification_factor(&ssse.card_id()?)?;
        Some(CardKey {
            algorithm,
            key: crypto::diversify(algorithm, master?, &factor),
        })
    }

    fn cryptogram(&self, data: &[u8; BLOCK]) -> [u8; BLOCK] {
        crypto::cryptogram(self.algorithm, &self.key, data)
    }
}

/// A virtual social security card.
#[derive(Debug)]
pub struct VirtualCard {
    image: CardImage,
    session: Session,
    pin: Option<PinState>,
    /// RKSSSE diversified for this card (`None`: no `rkssse_master` in the image).
    rkssse: Option<CardKey>,
    /// The internal-authentication key diversified for this card.
    internal: Option<CardKey>,
    /// EXTERNAL AUTHENTICATE tries left (survives power-off, like the PIN's).
    auth_tries: u8,
    apdus_seen: usize,
    /// GET CHALLENGE answers given in the card's life (the challenge generator's seed).
    challenges_issued: u64,
    last_challenge: Option<Vec<u8>>,
}

impl VirtualCard {
    pub fn new(image: CardImage) -> VirtualCard {
        let pin = image.pin.as_ref().map(|pin| PinState {
            reference: pin.bcd(),
            tries_left: pin.tries_left,
            max_tries: pin.max_tries,
        });
        let ssse = image.ssse.as_ref();
        let rkssse = ssse.and_then(|s| CardKey::from_master(s, s.rkssse_master.as_ref()));
        let internal = ssse.and_then(|s| CardKey::from_master(s, s.internal_master.as_ref()));
        let auth_tries = ssse.map_or(MAX_AUTH_TRIES, |s| s.auth_tries);
        VirtualCard {
            image,
            session: Session::default(),
            pin,
            rkssse,
            internal,
            auth_tries,
            apdus_seen: 0,
            challenges_issued: 0,
            last_challenge: None,
        }
    }

    pub fn image(&self) -> &CardImage {
        &self.image
    }

    pub fn atr(&self) -> &[u8] {
        &self.image.atr
    }

    /// Power-on or reset: no application or file selected, no authentication, no verified
    /// PIN, no challenge, nothing pending. Tries counters are kept (they live in the card's
    /// memory).
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

    /// Whether a VERIFY succeeded since power-on.
    pub fn pin_verified(&self) -> bool {
        self.session.pin_verified
    }

    /// EXTERNAL AUTHENTICATE tries left, when the card has an RKSSSE key.
    pub fn auth_tries_left(&self) -> Option<u8> {
        self.rkssse.as_ref().map(|_| self.auth_tries)
    }

    /// Whether EF06 is open: EXTERNAL AUTHENTICATE succeeded and SSSE is still selected.
    pub fn externally_authenticated(&self) -> bool {
        self.session.externally_authenticated
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
        let apdu = Apdu::parse(bytes).ok_or(StatusWord::WRONG_LENGTH)?;
        match (apdu.cla, apdu.ins) {
            (CLA_BALANCE, INS_GET_BALANCE) => return self.get_balance(&apdu),
            (0x00, _) => {}
            _ => return Err(StatusWord::CLA_NOT_SUPPORTED),
        }
        match apdu.ins {
            INS_SELECT => self.select(&apdu),
            INS_READ_RECORD => self.read_record(&apdu),
            INS_GET_RESPONSE => self.get_response(pending, apdu.le),
            INS_VERIFY => self.verify(&apdu),
            INS_GET_CHALLENGE => self.get_challenge(&apdu),
            INS_EXTERNAL_AUTHENTICATE => self.external_authenticate(&apdu),
            INS_INTERNAL_AUTHENTICATE => self.internal_authenticate(&apdu),
            _ => Err(StatusWord::INS_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, apdu: &Apdu<'_>) -> Reply {
        if !matches!(apdu.p2, P2_FCI | P2_NO_RESPONSE) {
            return Err(StatusWord::WRONG_P1P2);
        }
        match apdu.p1 {
            0x04 => self.select_by_name(apdu),
            0x00 | 0x02 => self.select_by_fid(apdu.data),
            _ => Err(StatusWord::WRONG_P1P2),
        }
    }

    fn select_by_name(&mut self, apdu: &Apdu<'_>) -> Reply {
        let (app, fci) = match (&self.image.ssse, &self.image.df04) {
            (Some(ssse), _) if apdu.data == SSSE_DF_NAME => (App::Ssse, ssse_fci(ssse.algorithm)),
            (_, Some(_)) if apdu.data == DF04_AID => (App::Df04, tlv(0x6F, &tlv(0x84, DF04_AID))),
            _ => return Err(StatusWord::FILE_NOT_FOUND),
        };
        self.enter(Some(app));
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

    /// Makes `app` the current application (no EF selected). Leaving SSSE closes EF06 again.
    fn enter(&mut self, app: Option<App>) {
        if app != self.session.app {
            self.session.externally_authenticated = false;
        }
        self.session.app = app;
        self.session.current_ef = None;
    }

    fn select_by_fid(&mut self, data: &[u8]) -> Reply {
        let fid = u16::from_be_bytes(data.try_into().map_err(|_| StatusWord::WRONG_LENGTH)?);
        if fid == FID_MF {
            self.enter(None);
            return Ok(status_only(StatusWord::OK));
        }
        let ef = self
            .session
            .app
            .and_then(|app| Ef::from_fid(app, fid))
            .ok_or(StatusWord::FILE_NOT_FOUND)?;
        self.session.current_ef = Some(ef);
        Ok(status_only(StatusWord::OK))
    }

    fn read_record(&mut self, apdu: &Apdu<'_>) -> Reply {
        if !apdu.data.is_empty() {
            return Err(StatusWord::WRONG_LENGTH);
        }
        let ef = self.addressed_ef(apdu.p2 >> 3)?;
        self.session.current_ef = Some(ef);
        let records = self.readable_records(ef)?;
        let data = self.read_mode(&records, apdu.p1, apdu.p2 & 0b111, ef != Ef::Df04Ef08)?;
        self.answer(data, apdu.le)
    }

    /// The EF a READ RECORD addresses: SFI 0 = the current EF, else the SFI in the current
    /// application (5/6 under SSSE, 5/8 under DF04).
    fn addressed_ef(&self, sfi: u8) -> Result<Ef, StatusWord> {
        if sfi == 0 {
            return self.session.current_ef.ok_or(StatusWord::NO_CURRENT_EF);
        }
        self.session
            .app
            .and_then(|app| Ef::from_sfi(app, sfi))
            .ok_or(StatusWord::FILE_NOT_FOUND)
    }

    /// The records of `ef`, or the status word refusing them (security before existence).
    fn readable_records(&self, ef: Ef) -> Result<Vec<Record>, StatusWord> {
        match ef {
            Ef::Ef05 | Ef::Ef06 => {
                let ssse = self.ssse()?;
                if ef == Ef::Ef05 {
                    return Ok(ssse.ef05.clone());
                }
                let locked = ssse.ef06_access == Ef06Access::ExternalAuth
                    && !self.session.externally_authenticated;
                if locked {
                    return Err(StatusWord::SECURITY_NOT_SATISFIED);
                }
                Ok(ssse.ef06.clone())
            }
            Ef::Df04Ef05 => Ok(vec![self.df04_with_pin()?.ef05_record()]),
            Ef::Df04Ef08 => Ok(self
                .df04_with_pin()?
                .transactions
                .iter()
                .rev()
                .map(|t| t.record())
                .collect()),
        }
    }

    fn ssse(&self) -> Result<&Ssse, StatusWord> {
        self.image
            .ssse
            .as_ref()
            .filter(|_| self.session.app == Some(App::Ssse))
            .ok_or(StatusWord::FILE_NOT_FOUND)
    }

    /// DF04, when it is selected (else `6985`) and the PIN allows (else `6982`).
    fn df04_with_pin(&self) -> Result<&Df04, StatusWord> {
        let df04 = self
            .image
            .df04
            .as_ref()
            .filter(|_| self.session.app == Some(App::Df04))
            .ok_or(StatusWord::CONDITIONS_NOT_SATISFIED)?;
        if self.pin.is_some() && !self.session.pin_verified {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        Ok(df04)
    }

    fn read_mode(
        &self,
        records: &[Record],
        p1: u8,
        mode: u8,
        tagged: bool,
    ) -> Result<Vec<u8>, StatusWord> {
        let behaviour = &self.image.behaviour;
        match mode {
            MODE_BY_IDENTIFIER if !tagged => Err(StatusWord::INCOMPATIBLE_FILE),
            MODE_BY_IDENTIFIER if behaviour.tag_read => record_by_identifier(records, p1),
            MODE_BY_NUMBER => records_from(records, p1, 1),
            MODE_TO_LAST if behaviour.whole_file_read => records_from(records, p1, records.len()),
            _ => Err(StatusWord::WRONG_P1P2),
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
            return Err(StatusWord::NOTHING_PENDING);
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
            return Err(StatusWord::WRONG_P1P2);
        }
        let Some(pin) = self.pin.as_mut() else {
            // No PIN: none needed, and nothing to verify against.
            return match apdu.data {
                [] => Ok(status_only(StatusWord::OK)),
                _ => Err(StatusWord::KEY_NOT_FOUND),
            };
        };
        if pin.tries_left == 0 {
            return Err(StatusWord::AUTH_BLOCKED);
        }
        if apdu.data.is_empty() {
            return Err(tries_left(pin.tries_left));
        }
        let correct = apdu.data == pin.reference.as_slice();
        attempt(
            &mut pin.tries_left,
            pin.max_tries,
            correct,
            &mut self.session.pin_verified,
        )
    }

    fn get_challenge(&mut self, apdu: &Apdu<'_>) -> Reply {
        if apdu.p1 != 0x00 || apdu.p2 != 0x00 {
            return Err(StatusWord::WRONG_P1P2);
        }
        let len = match (apdu.data.is_empty(), apdu.le) {
            (true, Some(len @ (4 | BLOCK))) => len,
            _ => return Err(StatusWord::WRONG_LENGTH),
        };
        self.challenges_issued += 1;
        let challenge = pseudo_random(self.challenge_seed(), len);
        self.session.challenge = challenge.as_slice().try_into().ok();
        self.last_challenge = Some(challenge.clone());
        Ok(with_status(challenge, StatusWord::OK))
    }

    /// Differs for every challenge in the card's life, and between cards (by ATR).
    fn challenge_seed(&self) -> u64 {
        let atr = self
            .image
            .atr
            .iter()
            .fold(0u64, |h, &b| h.rotate_left(8) ^ u64::from(b));
        atr ^ self.challenges_issued.wrapping_mul(0x0100_0000_01B3)
    }

    /// `00 82 00 0A 10 <C ‖ R>`. Checks, in order: P1 `00` (`6A86`), P2 = RKSSSE's key id
    /// (`6A88`), Lc 16 (`6700`), an RKSSSE key and SSSE selected (`6A88`), not locked
    /// (`6983`), R = the pending challenge (`6985`), then C. The pending challenge is used up
    /// whatever the outcome.
    fn external_authenticate(&mut self, apdu: &Apdu<'_>) -> Reply {
        let challenge = self.session.challenge.take();
        if apdu.p1 != 0x00 {
            return Err(StatusWord::WRONG_P1P2);
        }
        if apdu.p2 != RKSSSE_KEY_ID {
            return Err(StatusWord::KEY_NOT_FOUND);
        }
        let (cryptogram, random) = split_blocks(apdu.data).ok_or(StatusWord::WRONG_LENGTH)?;
        let key = ssse_key(self.rkssse.as_ref(), self.session.app)?;
        if self.auth_tries == 0 {
            return Err(StatusWord::AUTH_BLOCKED);
        }
        if challenge != Some(random) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let correct = key.cryptogram(&random) == cryptogram;
        attempt(
            &mut self.auth_tries,
            MAX_AUTH_TRIES,
            correct,
            &mut self.session.externally_authenticated,
        )
    }

    /// `00 88 00 00 10 <P ‖ R> [Le]` → the 8-byte cryptogram of R under the card's internal
    /// key (P, the process factor, is not used). P1/P2 `00` (`6A86`), Lc 16 (`6700`), an
    /// internal key and SSSE selected (`6A88`).
    fn internal_authenticate(&mut self, apdu: &Apdu<'_>) -> Reply {
        if apdu.p1 != 0x00 || apdu.p2 != 0x00 {
            return Err(StatusWord::WRONG_P1P2);
        }
        let (_factor, random) = split_blocks(apdu.data).ok_or(StatusWord::WRONG_LENGTH)?;
        let key = ssse_key(self.internal.as_ref(), self.session.app)?;
        let cryptogram = key.cryptogram(&random).to_vec();
        self.answer(cryptogram, apdu.le)
    }

    /// `B0 26 00 P2 Le`: P2 01 balance (4 bytes), 02 annual self-pay, 03 annual fund pay
    /// (4 bytes fen ‖ 2 bytes BCD year). Checks, in order: no data (`6700`), P1 `00` and P2
    /// 01–03 (`6A86`), DF04 selected (`6985`), PIN verified (`6982`), the value exists
    /// (`6A88`), Le = its length or `00` (else `6Cxx`, also when Le is absent).
    fn get_balance(&self, apdu: &Apdu<'_>) -> Reply {
        if !apdu.data.is_empty() {
            return Err(StatusWord::WRONG_LENGTH);
        }
        if apdu.p1 != 0x00 || !(0x01..=0x03).contains(&apdu.p2) {
            return Err(StatusWord::WRONG_P1P2);
        }
        let df04 = self.df04_with_pin()?;
        let value = match apdu.p2 {
            0x01 => df04.balance_fen.map(|fen| fen.to_be_bytes().to_vec()),
            0x02 => df04.annual_self_pay.map(|a| a.bytes().to_vec()),
            _ => df04.annual_fund_pay.map(|a| a.bytes().to_vec()),
        }
        .ok_or(StatusWord::KEY_NOT_FOUND)?;
        match apdu.le {
            Some(le) if le == value.len() || le == MAX_SHORT_LE => {
                Ok(with_status(value, StatusWord::OK))
            }
            _ => Err(wrong_le(value.len())),
        }
    }
}

/// A card key, usable only while SSSE is selected: else, as when there is none, `6A88`.
fn ssse_key(key: Option<&CardKey>, app: Option<App>) -> Result<&CardKey, StatusWord> {
    key.filter(|_| app == Some(App::Ssse))
        .ok_or(StatusWord::KEY_NOT_FOUND)
}

/// One try against a counter (PIN, RKSSSE): a success resets it to `max` (`9000`), a failure
/// costs a try (`63Cx`, x = tries left); `granted` is whether it succeeded.
fn attempt(tries: &mut u8, max: u8, correct: bool, granted: &mut bool) -> Reply {
    *granted = correct;
    if correct {
        *tries = max;
        Ok(status_only(StatusWord::OK))
    } else {
        *tries = tries.saturating_sub(1);
        Err(tries_left(*tries))
    }
}

/// 16 bytes of command data as two 8-byte blocks.
fn split_blocks(data: &[u8]) -> Option<([u8; BLOCK], [u8; BLOCK])> {
    let (first, second) = data.split_first_chunk::<BLOCK>()?;
    Some((*first, (*second).try_into().ok()?))
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
    let start = usize::from(first)
        .checked_sub(1)
        .ok_or(StatusWord::WRONG_P1P2)?;
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
fn ssse_fci(algorithm: u8) -> Vec<u8> {
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
    use crate::sim::card::image::TRANSACTION_RECORD_LEN;

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

    /// Sends each APDU of the table in turn; each must get the answer beside it.
    fn answers(card: &mut VirtualCard, table: &[(&str, &str)]) {
        for (apdu, answer) in table {
            assert_eq!(send(card, apdu), *answer, "APDU {apdu}");
        }
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
        answers(
            &mut c,
            &[
                ("00B2032C", "6A83"),
                // Le absent, 00, exact or larger: everything.
                ("00B2022C", "0304322E30309000"),
                ("00B2022C06", "0304322E30309000"),
                ("00B2022C10", "0304322E30309000"),
                // Le shorter than the record: 6Cxx with the real length.
                ("00B2022C04", "6C06"),
            ],
        );
        let mut strict = card("[behaviour]\nexact_le = true");
        assert_eq!(send(&mut strict, SELECT_SSSE), "6C1E");
        assert_eq!(send(&mut strict, &format!("{SELECT_SSSE}00")), "6C1E");
        assert!(send(&mut strict, &format!("{SELECT_SSSE}1E")).ends_with("9000"));
        answers(
            &mut strict,
            &[
                ("00B2022C00", "6C06"),
                ("00B2022C10", "6C06"),
                ("00B2022C", "6C06"),
                ("00B2022C06", "0304322E30309000"),
            ],
        );
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
        hex::encode_upper(ssse_fci(0x03))
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
        assert_eq!(send(&mut c, "0088000010"), "6700"); // INTERNAL AUTHENTICATE without data
        assert_eq!(send(&mut c, "B0B2012C00"), "6E00"); // CLA B0 only for GET BALANCE
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

    // ---- authentication ----

    const RKSSSE_MASTER: &str = "11223344556677888877665544332211";
    const INTERNAL_MASTER: &str = "A1A2A3A4A5A6A7A8A9AAABACADAEAFB0";

    /// The test card (algorithm 03, card id 500000…) with keys, EF06 behind RKSSSE.
    fn keyed(ssse_extra: &str) -> VirtualCard {
        let extra = format!(
            "rkssse_master = \"{RKSSSE_MASTER}\"\ninternal_master = \"{INTERNAL_MASTER}\"\n\
             ef06_access = \"external_auth\"\n{ssse_extra}"
        );
        let source = format!(
            r#"
description = "keyed"
atr = "3B 6D 00 00 00 81 4A 44 46 86 60 50 00 00 00 01 AC"
[ssse]
algorithm = 0x03
{extra}
[[ssse.ef05]]
tag = 0x01
b = "500000D15600000512345678ABCDEF01"
[[ssse.ef06]]
tag = 0x08
an = "500103199103080319"
"#
        );
        VirtualCard::new(CardImage::from_toml_str(&source, "keyed").unwrap())
    }

    /// The cryptogram a PSAM with `master` computes for this card (factor "500000sx").
    fn psam_cryptogram(master: &str, algorithm: Algorithm, data: &[u8]) -> String {
        let kd = crypto::diversify(
            algorithm,
            &SecretKey::from_hex(master).unwrap(),
            b"500000sx",
        );
        hex::encode_upper(crypto::cryptogram(algorithm, &kd, data.try_into().unwrap()))
    }

    /// GET CHALLENGE, then EXTERNAL AUTHENTICATE with the cryptogram under `master`.
    fn external_auth(c: &mut VirtualCard, master: &str) -> String {
        let answer = send(c, "0084000008");
        let challenge = hex::decode(&answer[..16]).unwrap();
        let cryptogram = psam_cryptogram(master, Algorithm::Sm4, &challenge);
        send(c, &format!("0082000A10{cryptogram}{}", &answer[..16]))
    }

    #[test]
    fn external_authentication_opens_ef06_until_power_on_or_leaving_ssse() {
        let mut c = keyed("");
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, "00B2013400"), "6982");
        assert_eq!(external_auth(&mut c, RKSSSE_MASTER), "9000");
        assert!(c.externally_authenticated());
        assert!(send(&mut c, "00B2013400").ends_with("9000"));
        send(&mut c, SELECT_SSSE); // SSSE again: still open
        assert!(send(&mut c, "00B2013400").ends_with("9000"));
        c.power_on();
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, "00B2013400"), "6982");
        assert_eq!(external_auth(&mut c, RKSSSE_MASTER), "9000");
        assert_eq!(send(&mut c, "00A40000023F00"), "9000"); // MF: SSSE left
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, "00B2013400"), "6982");
    }

    #[test]
    fn wrong_cryptograms_count_down_and_lock() {
        let mut c = keyed("");
        send(&mut c, SELECT_SSSE);
        let wrong = "99887766554433221122334455667788";
        assert_eq!(external_auth(&mut c, wrong), "63C2");
        assert_eq!(external_auth(&mut c, RKSSSE_MASTER), "9000");
        assert_eq!(c.auth_tries_left(), Some(3)); // reset by the success
        assert_eq!(external_auth(&mut c, wrong), "63C2");
        assert!(!c.externally_authenticated()); // a failure closes EF06 again
        assert_eq!(external_auth(&mut c, wrong), "63C1");
        assert_eq!(external_auth(&mut c, wrong), "63C0");
        assert_eq!(external_auth(&mut c, RKSSSE_MASTER), "6983");
        c.power_on(); // the counter lives in the card
        send(&mut c, SELECT_SSSE);
        assert_eq!(external_auth(&mut c, RKSSSE_MASTER), "6983");
        assert_eq!(c.auth_tries_left(), Some(0));
        let mut locked = keyed("auth_tries = 0");
        send(&mut locked, SELECT_SSSE);
        assert_eq!(external_auth(&mut locked, RKSSSE_MASTER), "6983");
        assert_eq!(send(&mut locked, "00B2013400"), "6982");
    }

    #[test]
    fn the_challenge_is_used_once() {
        let mut c = keyed("");
        send(&mut c, SELECT_SSSE);
        let answer = send(&mut c, "0084000008");
        let r = &answer[..16];
        let cryptogram = psam_cryptogram(RKSSSE_MASTER, Algorithm::Sm4, &hex::decode(r).unwrap());
        let command = format!("0082000A10{cryptogram}{r}");
        // Other commands keep the challenge …
        send(&mut c, "00B2012C00");
        assert_eq!(
            send(&mut c, &format!("0088000010{}{r}", "00".repeat(8))).len(),
            20
        );
        assert_eq!(send(&mut c, &command), "9000");
        // … EXTERNAL AUTHENTICATE uses it up, whatever its outcome.
        assert_eq!(send(&mut c, &command), "6985");
        send(&mut c, "0084000008");
        assert_eq!(send(&mut c, &command), "6985"); // R ≠ the new challenge
        assert_eq!(c.auth_tries_left(), Some(3)); // 6985 costs no try
        send(&mut c, "0084000008");
        assert_eq!(send(&mut c, "0082000B10"), "6A88"); // wrong key id …
        assert_eq!(send(&mut c, &command), "6985"); // … still used the challenge up
        // A 4-byte challenge cannot be answered with 8 bytes of R.
        let short = send(&mut c, "0084000004");
        assert_eq!(short.len(), 12);
        assert_eq!(send(&mut c, &command), "6985");
        // Power-on forgets the challenge.
        send(&mut c, "0084000008");
        c.power_on();
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, &command), "6985");
    }

    #[test]
    fn external_authenticate_errors() {
        let mut c = keyed("");
        send(&mut c, SELECT_SSSE);
        send(&mut c, "0084000008");
        assert_eq!(
            send(&mut c, &format!("0082000B10{}", "00".repeat(16))),
            "6A88"
        );
        assert_eq!(
            send(&mut c, &format!("0082010A10{}", "00".repeat(16))),
            "6A86"
        );
        assert_eq!(
            send(&mut c, &format!("0082000A08{}", "00".repeat(8))),
            "6700"
        );
        assert_eq!(send(&mut c, "0082000A"), "6700");
        // Not in SSSE: the key is not there.
        let mut fresh = keyed("");
        send(&mut fresh, "0084000008");
        assert_eq!(
            send(&mut fresh, &format!("0082000A10{}", "00".repeat(16))),
            "6A88"
        );
        // No RKSSSE master in the image.
        let mut none = selected("");
        assert_eq!(none.auth_tries_left(), None);
        let answer = send(&mut none, "0084000008");
        assert_eq!(
            send(
                &mut none,
                &format!("0082000A10{}{}", "00".repeat(8), &answer[..16])
            ),
            "6A88"
        );
    }

    #[test]
    fn internal_authentication_answers_the_cryptogram_of_r() {
        let mut c = keyed("");
        let r = "0102030405060708";
        let command = format!("0088000010{}{r}", "1122334455667788");
        assert_eq!(send(&mut c, &command), "6A88"); // SSSE not selected
        send(&mut c, SELECT_SSSE);
        let expected = psam_cryptogram(INTERNAL_MASTER, Algorithm::Sm4, &hex::decode(r).unwrap());
        assert_eq!(send(&mut c, &command), format!("{expected}9000"));
        assert_eq!(
            send(&mut c, &format!("{command}08")),
            format!("{expected}9000")
        );
        assert_eq!(
            send(&mut c, &format!("{command}00")),
            format!("{expected}9000")
        );
        // The process factor is ignored.
        let other = format!("0088000010{}{r}", "00".repeat(8));
        assert_eq!(send(&mut c, &other), format!("{expected}9000"));
        assert_eq!(send(&mut c, "00880000080102030405060708"), "6700");
        assert_eq!(
            send(&mut c, &format!("0088000110{}{r}", "00".repeat(8))),
            "6A86"
        );
        let mut none = selected("");
        assert_eq!(send(&mut none, &command), "6A88");
    }

    #[test]
    fn des_cards_use_3des() {
        let source = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/cards/gen3-des.toml"
        ))
        .unwrap();
        let mut c = VirtualCard::new(CardImage::from_toml_str(&source, "gen3-des").unwrap());
        send(&mut c, SELECT_SSSE);
        let answer = send(&mut c, "0084000008");
        // gen3-des is from a "33" region: factor = first four digits ‖ "00" ‖ "sx".
        let card_id = c.image().ssse.as_ref().unwrap().card_id().unwrap();
        let factor = crypto::diversification_factor(&card_id).unwrap();
        assert_eq!(&factor[4..], b"00sx");
        assert_ne!(&factor[..6], &card_id.as_bytes()[..6]);
        let kd = crypto::diversify(
            Algorithm::Des,
            &SecretKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap(),
            &factor,
        );
        let r: [u8; 8] = hex::decode(&answer[..16]).unwrap().try_into().unwrap();
        let cryptogram = hex::encode_upper(crypto::cryptogram(Algorithm::Des, &kd, &r));
        assert_eq!(
            send(&mut c, &format!("0082000A10{cryptogram}{}", &answer[..16])),
            "9000"
        );
        assert!(send(&mut c, "00B2013400").ends_with("9000"));
    }

    // ---- DF04 ----

    const SELECT_DF04: &str = "00A4040006D15600000503";

    fn df04_card(pin: &str) -> VirtualCard {
        card(&format!(
            r#"{pin}
[df04]
mode = "2"
balance_fen = 33280
annual_self_pay = {{ fen = 23000, year = 2026 }}
[[df04.transactions]]
seq = 1
kind = "2"
terminal = "500000000001"
time = "20260112101500"
account_fen = 8000
[[df04.transactions]]
seq = 2
kind = "2"
terminal = "500000000002"
time = "20260305093000"
account_fen = 10000
self_pay_fen = 1720
fund_fen = 300
"#
        ))
    }

    fn verified(pin: &str) -> VirtualCard {
        let mut c = df04_card(pin);
        assert_eq!(send(&mut c, "0020000003123456"), "9000");
        c
    }

    const PIN: &str = "[pin]\nvalue = \"123456\"";

    #[test]
    fn select_df04() {
        let mut c = df04_card(PIN);
        assert_eq!(send(&mut c, SELECT_DF04), "6F088406D156000005039000");
        assert_eq!(
            send(&mut c, &format!("{SELECT_DF04}00")),
            "6F088406D156000005039000"
        );
        assert_eq!(send(&mut c, "00A4040C06D15600000503"), "9000");
        assert_eq!(send(&mut c, "00A4020002EF06"), "6A82"); // no EF06 under DF04 here
        assert_eq!(send(&mut c, "00A4020002EF05"), "9000");
        assert_eq!(send(&mut c, "00A4020002EF08"), "9000");
        let mut without = card("");
        assert_eq!(send(&mut without, SELECT_DF04), "6A82");
        let mut t0 = df04_card("[behaviour]\nselect_61xx = true");
        assert_eq!(send(&mut t0, SELECT_DF04), "610A");
        assert_eq!(send(&mut t0, "00C000000A"), "6F088406D156000005039000");
    }

    #[test]
    fn df04_ef05_needs_the_pin() {
        let mut c = df04_card(PIN);
        send(&mut c, SELECT_DF04);
        assert_eq!(send(&mut c, "00B28F2800"), "6982");
        assert_eq!(send(&mut c, "0020000003123456"), "9000");
        assert!(c.pin_verified());
        assert_eq!(send(&mut c, "00B28F2800"), "8F01329000"); // by identifier, SFI 5
        assert_eq!(send(&mut c, "00B2012C00"), "8F01329000"); // by number
        assert_eq!(send(&mut c, "00B2012D00"), "8F01329000"); // whole file
        assert_eq!(send(&mut c, "00B2022C00"), "6A83");
        send(&mut c, "00A4020002EF05");
        assert_eq!(send(&mut c, "00B28F0000"), "8F01329000"); // current EF
        assert_eq!(send(&mut c, "00B2013400"), "6A82"); // SFI 6 is not under DF04
        // A wrong PIN withdraws the verification.
        assert_eq!(send(&mut c, "0020000003111111"), "63C2");
        assert_eq!(send(&mut c, "00B28F2800"), "6982");
        // Without a PIN on the card, nothing to verify.
        let mut free = df04_card("");
        send(&mut free, SELECT_DF04);
        assert_eq!(send(&mut free, "00B2012C00"), "8F01329000");
    }

    #[test]
    fn switching_applications() {
        let mut c = verified(PIN);
        send(&mut c, SELECT_SSSE);
        send(&mut c, SELECT_DF04);
        // SSSE's files are gone while DF04 is selected; the PIN stays verified.
        assert_eq!(send(&mut c, "00B2013400"), "6A82");
        assert_eq!(send(&mut c, "00B2012C00"), "8F01329000");
        assert_eq!(send(&mut c, "00B2010400"), "8F01329000"); // EF05 became current
        send(&mut c, SELECT_SSSE);
        assert_eq!(send(&mut c, "00B2010400"), "6986");
        assert!(send(&mut c, "00B2012C00").starts_with("0110")); // SSSE EF05 again
        assert_eq!(send(&mut c, "B026000104"), "6985"); // DF04 left
        c.power_on();
        assert!(!c.pin_verified());
        send(&mut c, SELECT_DF04);
        assert_eq!(send(&mut c, "00B2012C00"), "6982");
    }

    #[test]
    fn get_balance() {
        let mut c = df04_card(PIN);
        assert_eq!(send(&mut c, "B026000104"), "6985"); // DF04 not selected
        send(&mut c, SELECT_DF04);
        answers(
            &mut c,
            &[
                ("B026000104", "6982"),
                ("0020000003123456", "9000"),
                ("B026000104", "000082009000"), // 33280 fen
                ("B026000100", "000082009000"),
                ("B026000106", "6C04"),
                ("B0260001", "6C04"),
                ("B026000206", "000059D820269000"), // 23000 fen, 2026
                ("B026000204", "6C06"),
                ("B026000306", "6A88"), // no annual_fund_pay
                ("B026000406", "6A86"),
                ("B026010104", "6A86"),
                ("B02600010100", "6700"),
                ("B0A4000104", "6E00"),
            ],
        );
    }

    #[test]
    fn ef08_newest_first() {
        let mut c = verified(PIN);
        send(&mut c, SELECT_DF04);
        let newest = send(&mut c, "00B201441C");
        assert_eq!(
            newest,
            "0002325000000000022026030509300000002710000006B80000012C9000"
        );
        assert_eq!(newest.len(), (TRANSACTION_RECORD_LEN + 2) * 2);
        assert!(send(&mut c, "00B202441C").starts_with("000132500000000001"));
        assert_eq!(send(&mut c, "00B203441C"), "6A83");
        assert_eq!(send(&mut c, "00B2014500").len(), (2 * 28 + 2) * 2); // both, newest first
        assert_eq!(send(&mut c, "00B2014000"), "6981"); // no identifiers in EF08
        send(&mut c, "00A4020002EF08");
        assert!(send(&mut c, "00B2020400").starts_with("0001"));
        let mut locked = df04_card(PIN);
        send(&mut locked, SELECT_DF04);
        assert_eq!(send(&mut locked, "00B201441C"), "6982");
    }
}
