//! Card images: what a virtual card holds, loaded from the TOML card files in
//! `fixtures/cards/` (format in `fixtures/cards/README.md`).
//!
//! Loading checks everything a card file can get wrong (hex, digits, ASCII, GB18030,
//! lengths, tags, unknown keys) and names the file, the record and the problem, so a broken
//! fixture fails loudly instead of becoming a card that answers nonsense.

use super::SimError;
use super::crypto::{Algorithm, KeyError, SecretKey, diversification_factor};
use super::psam::{KeyUsage, TERMINAL_DIGITS};
use serde::Deserialize;
use std::path::Path;

/// One record as stored on the card: tag ‖ length ‖ value (raw records: any bytes).
pub type Record = Vec<u8>;

/// The longest value a one-byte length can announce.
const MAX_VALUE_LEN: usize = 255;
/// ATRs are at most 33 bytes (ISO 7816-3).
pub(super) const MAX_ATR_LEN: usize = 33;
/// PINs entered on a PIN pad: 4–16 digits (card-spec.md §5.1).
const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=16;
/// The tries counter travels in one nibble of `63Cx`.
const MAX_TRIES: u8 = 15;
/// EXTERNAL AUTHENTICATE tries of the RKSSSE key; a success resets the counter to this.
pub const MAX_AUTH_TRIES: u8 = 3;
/// 医疗保险用卡方式 (DF04/EF05 tag 8F): '1' online (联网), '2' offline (脱网).
const DF04_MODES: [&str; 2] = ["1", "2"];

/// A whole card: ATR, the SSSE application (if any), the medical-insurance application DF04
/// (if any), the PIN and behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardImage {
    pub description: String,
    pub atr: Vec<u8>,
    /// `None`: no social security application (a bank-only card); SELECT SSSE → `6A82`.
    pub ssse: Option<Ssse>,
    /// `None`: no DF04 (社会保险信息区2, 医疗保险); SELECT DF04 → `6A82`.
    pub df04: Option<Df04>,
    pub pin: Option<Pin>,
    pub behaviour: Behaviour,
}

/// The SSSE application: its algorithm id, the two record files under it and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssse {
    /// Algorithm id in the FCI (`9F0C 03 86 01 xx`): 01 DES, 02 SSF33, 03 SM4.
    pub algorithm: u8,
    pub ef06_access: Ef06Access,
    /// EF05 records in order: record number = position + 1.
    pub ef05: Vec<Record>,
    /// EF06 records in order: record number = position + 1.
    pub ef06: Vec<Record>,
    /// TEST issuer master key of RKSSSE (EXTERNAL AUTHENTICATE, key id `0A`); the card holds
    /// the key diversified with its own 卡识别码. `None`: EXTERNAL AUTHENTICATE → `6A88`.
    pub rkssse_master: Option<SecretKey>,
    /// TEST master key of INTERNAL AUTHENTICATE; `None`: INTERNAL AUTHENTICATE → `6A88`.
    pub internal_master: Option<SecretKey>,
    /// EXTERNAL AUTHENTICATE tries left (at most [`MAX_AUTH_TRIES`]); 0 = locked (`6983`).
    pub auth_tries: u8,
}

impl Ssse {
    /// The 卡识别码 (EF05 tag 01) as a hex string, when the card has one.
    pub fn card_id(&self) -> Option<String> {
        self.ef05
            .iter()
            .find(|record| record.first() == Some(&0x01))
            .and_then(|record| record.get(2..))
            .map(hex::encode_upper)
    }

    /// The card's algorithm for authentication; `None` for SSF33 and unknown ids.
    pub fn crypto_algorithm(&self) -> Option<Algorithm> {
        Algorithm::from_id(self.algorithm)
    }
}

/// DF04, 社会保险信息区2 (医疗保险), AID `D1 56 00 00 05 03` (card-spec.md §1.2, §4.1).
/// Everything under it needs the PIN (when the card has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Df04 {
    /// EF05 tag 8F, 医疗保险用卡方式: `"1"` online (联网), `"2"` offline (脱网).
    pub mode: String,
    /// 个人账户余额 in fen (GET BALANCE P2 01); `None` → `6A88`.
    pub balance_fen: Option<u32>,
    /// 年度个人自付累计 (GET BALANCE P2 02).
    pub annual_self_pay: Option<AnnualAmount>,
    /// 年度统筹基金支付累计 (GET BALANCE P2 03).
    pub annual_fund_pay: Option<AnnualAmount>,
    /// EF08 医疗交易明细, oldest first (READ RECORD 1 answers the last one, the newest).
    pub transactions: Vec<Transaction>,
}

impl Df04 {
    /// The EF05 record: `8F 01 <mode>`.
    pub fn ef05_record(&self) -> Record {
        [&[0x8F, self.mode.len() as u8][..], self.mode.as_bytes()].concat()
    }
}

/// A yearly cumulative amount: fen and the year it counts (GET BALANCE P2 02 / 03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnualAmount {
    pub fen: u32,
    pub year: u16,
}

impl AnnualAmount {
    /// GET BALANCE's answer: 4 bytes big-endian fen ‖ the year as 2 bytes BCD.
    pub fn bytes(&self) -> [u8; 6] {
        let fen = self.fen.to_be_bytes();
        let year = pack_bcd(format!("{:04}", self.year).as_bytes());
        [fen[0], fen[1], fen[2], fen[3], year[0], year[1]]
    }
}

/// One DF04/EF08 医疗交易明细 record (card-spec.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// 交易序号 (b2).
    pub seq: u16,
    /// 交易类型 (an1): `'1'` 账户划入, `'2'` 医疗结算.
    pub kind: u8,
    /// 终端机编号: 12 digits (cn6).
    pub terminal: String,
    /// 交易时间 YYYYMMDDhhmmss: 14 digits (cn7).
    pub time: String,
    /// 个人账户交易金额, fen (b4).
    pub account_fen: u32,
    /// 个人自付, fen (b4).
    pub self_pay_fen: u32,
    /// 统筹基金支付, fen (b4).
    pub fund_fen: u32,
}

/// Length of an EF08 record.
pub const TRANSACTION_RECORD_LEN: usize = 0x1C;

impl Transaction {
    /// The 28-byte record: seq b2 ‖ kind an1 ‖ terminal cn6 ‖ time cn7 ‖ account b4 ‖
    /// self-pay b4 ‖ fund b4 (numbers big-endian).
    pub fn record(&self) -> Record {
        let record = [
            &self.seq.to_be_bytes()[..],
            &[self.kind],
            &pack_bcd(self.terminal.as_bytes()),
            &pack_bcd(self.time.as_bytes()),
            &self.account_fen.to_be_bytes(),
            &self.self_pay_fen.to_be_bytes(),
            &self.fund_fen.to_be_bytes(),
        ]
        .concat();
        debug_assert_eq!(record.len(), TRANSACTION_RECORD_LEN);
        record
    }
}

/// Who may read EF06 (the holder file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ef06Access {
    /// Anyone (1.0 and 2.0 cards).
    #[default]
    Free,
    /// Only after external authentication with RKSSSE (3.0 cards): reads answer `6982`.
    ExternalAuth,
}

/// The card holder's PIN and its tries counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The PIN digits.
    pub digits: String,
    pub tries_left: u8,
    pub max_tries: u8,
}

impl Pin {
    /// The PIN as VERIFY carries it: BCD, two digits a byte, an odd count padded with `F`.
    pub fn bcd(&self) -> Vec<u8> {
        pack_bcd(self.digits.as_bytes())
    }
}

/// Switches for card operating-system quirks; all off (or permissive) by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// SELECT by name answers `61xx` (T=0 style); the FCI then comes by GET RESPONSE.
    pub select_61xx: bool,
    /// Any Le other than the exact length of the answer gets `6Cxx`.
    pub exact_le: bool,
    /// Milliseconds to sleep before each response.
    pub delay_ms: u64,
    /// After this many APDUs the card is gone (0 = never).
    pub vanish_after: usize,
    /// READ RECORD "P1 to last" (mode 101) is supported; else `6A86`.
    pub whole_file_read: bool,
    /// READ RECORD by record identifier (mode 000) is supported; else `6A86`.
    pub tag_read: bool,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            select_61xx: false,
            exact_le: false,
            delay_ms: 0,
            vanish_after: 0,
            whole_file_read: true,
            tag_read: true,
        }
    }
}

impl CardImage {
    /// Loads a card file.
    pub fn load(path: &Path) -> Result<CardImage, SimError> {
        super::load_file(path, CardImage::from_toml_str)
    }

    /// Parses a card file's text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<CardImage, SimError> {
        let file: CardFile = toml::from_str(text).map_err(|source| {
            if super::chip::is_psam_text(text) {
                SimError::PsamNotCard {
                    origin: origin.to_owned(),
                }
            } else {
                SimError::Syntax {
                    origin: origin.to_owned(),
                    source,
                }
            }
        })?;
        let invalid = |located: Located| located.in_file(origin);
        let atr = parse_atr(&file.atr).map_err(|p| invalid(Located::at("atr", p)))?;
        Ok(CardImage {
            description: file.description,
            atr,
            ssse: file
                .ssse
                .map(SsseFile::build)
                .transpose()
                .map_err(invalid)?,
            df04: file
                .df04
                .map(Df04File::build)
                .transpose()
                .map_err(invalid)?,
            pin: file.pin.map(PinFile::build).transpose().map_err(invalid)?,
            behaviour: file.behaviour,
        })
    }
}

/// What is wrong with a value in a card or PSAM file (its place is said beside it).
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("bad hex {text:?}: {source}")]
    BadHex {
        text: String,
        #[source]
        source: hex::FromHexError,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("is {0} bytes; an ATR has 2 to {MAX_ATR_LEN}")]
    AtrLength(usize),
    #[error("{0} is more than the maximum, {MAX_AUTH_TRIES}")]
    TooManyAuthTries(u8),
    #[error("algorithm 0x{0:02X} cannot authenticate here (0x01 DES or 0x03 SM4)")]
    CannotAuthenticate(u8),
    #[error(
        "keys are diversified with the 卡识别码: EF05 needs a tag 0x01 record of at least 3 bytes"
    )]
    NoCardId,
    #[error("{0:?}: must be \"1\" (online) or \"2\" (offline)")]
    Df04Mode(String),
    #[error("year {0} is not 4 digits")]
    Year(u16),
    #[error("kind {0:?} must be one ASCII character")]
    TransactionKind(String),
    #[error("terminal {0:?} must be 12 digits")]
    Terminal(String),
    #[error("time {0:?} must be 14 digits (YYYYMMDDhhmmss)")]
    Time(String),
    #[error("{0:?} must be {TERMINAL_DIGITS} digits")]
    TerminalNo(String),
    #[error("needs exactly one of b, an, cn, gbk, raw (found {0})")]
    ValueCount(usize),
    #[error("missing tag")]
    MissingTag,
    #[error("tag 0x{0:02X} is not a record identifier (0x01 to 0xFE)")]
    BadTag(u8),
    #[error("value is {0} bytes; at most {MAX_VALUE_LEN}")]
    ValueTooLong(usize),
    #[error("value is {value} bytes, longer than len = {len}")]
    LongerThanLen { value: usize, len: usize },
    #[error("len cannot be used with raw")]
    LenWithRaw,
    #[error("raw record is empty")]
    EmptyRaw,
    #[error("tag 0x{tag:02X} does not match the raw record's first byte 0x{first:02X}")]
    RawTag { tag: u8, first: u8 },
    #[error("raw record is {0} bytes; at most {max}", max = MAX_VALUE_LEN + 2)]
    RawTooLong(usize),
    #[error("an value {0:?} is not ASCII")]
    NotAscii(String),
    #[error("cn value {0:?} must be decimal digits")]
    NotDecimal(String),
    #[error("gbk value {0:?} has characters GB18030 cannot encode")]
    NotGb18030(String),
    #[error("must be 4 to 16 digits")]
    PinDigits,
    #[error("must be 1 to {MAX_TRIES}")]
    PinMaxTries,
    #[error("{tries_left} is more than max_tries {max_tries}")]
    PinTriesLeft { tries_left: u8, max_tries: u8 },
    #[error("algorithm {0:?}: \"des\" or \"sm4\" (SSF33 is not simulated)")]
    PsamAlgorithm(String),
    #[error("a second {usage:?} key for {algorithm}")]
    SecondKey {
        usage: KeyUsage,
        algorithm: &'static str,
    },
}

/// A problem and where it is (`[[ssse.ef05]] record 3 (tag 0x03)`, `pin.value`, …).
#[derive(Debug)]
pub(super) struct Located {
    place: String,
    problem: Problem,
}

impl Located {
    pub(super) fn at(place: &str, problem: Problem) -> Located {
        Located {
            place: place.to_owned(),
            problem,
        }
    }

    /// The error naming the file too.
    pub(super) fn in_file(self, origin: &str) -> SimError {
        SimError::Invalid {
            origin: origin.to_owned(),
            place: self.place,
            problem: self.problem,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    description: String,
    atr: String,
    ssse: Option<SsseFile>,
    df04: Option<Df04File>,
    pin: Option<PinFile>,
    #[serde(default)]
    behaviour: Behaviour,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SsseFile {
    #[serde(default = "default_algorithm")]
    algorithm: u8,
    #[serde(default)]
    ef06_access: Ef06Access,
    #[serde(default)]
    ef05: Vec<RecordFile>,
    #[serde(default)]
    ef06: Vec<RecordFile>,
    rkssse_master: Option<String>,
    internal_master: Option<String>,
    auth_tries: Option<u8>,
}

fn default_algorithm() -> u8 {
    0x01
}

impl SsseFile {
    fn build(self) -> Result<Ssse, Located> {
        let auth_tries = self.auth_tries.unwrap_or(MAX_AUTH_TRIES);
        if auth_tries > MAX_AUTH_TRIES {
            return Err(Located::at(
                "ssse.auth_tries",
                Problem::TooManyAuthTries(auth_tries),
            ));
        }
        let key = |place: &str, text: Option<&str>| {
            text.map(SecretKey::from_hex)
                .transpose()
                .map_err(|e| Located::at(place, e.into()))
        };
        let ssse = Ssse {
            algorithm: self.algorithm,
            ef06_access: self.ef06_access,
            ef05: build_records("ssse.ef05", &self.ef05)?,
            ef06: build_records("ssse.ef06", &self.ef06)?,
            rkssse_master: key("ssse.rkssse_master", self.rkssse_master.as_deref())?,
            internal_master: key("ssse.internal_master", self.internal_master.as_deref())?,
            auth_tries,
        };
        for (place, master) in [
            ("ssse.rkssse_master", &ssse.rkssse_master),
            ("ssse.internal_master", &ssse.internal_master),
        ] {
            if master.is_none() {
                continue;
            }
            if ssse.crypto_algorithm().is_none() {
                return Err(Located::at(
                    place,
                    Problem::CannotAuthenticate(ssse.algorithm),
                ));
            }
            if ssse
                .card_id()
                .and_then(|id| diversification_factor(&id))
                .is_none()
            {
                return Err(Located::at(place, Problem::NoCardId));
            }
        }
        Ok(ssse)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Df04File {
    mode: String,
    balance_fen: Option<u32>,
    annual_self_pay: Option<AnnualAmount>,
    annual_fund_pay: Option<AnnualAmount>,
    #[serde(default)]
    transactions: Vec<TransactionFile>,
}

impl Df04File {
    fn build(self) -> Result<Df04, Located> {
        if !DF04_MODES.contains(&self.mode.as_str()) {
            return Err(Located::at("df04.mode", Problem::Df04Mode(self.mode)));
        }
        for (place, amount) in [
            ("df04.annual_self_pay", &self.annual_self_pay),
            ("df04.annual_fund_pay", &self.annual_fund_pay),
        ] {
            if let Some(amount) = amount
                && !(1000..=9999).contains(&amount.year)
            {
                return Err(Located::at(place, Problem::Year(amount.year)));
            }
        }
        let transactions = self
            .transactions
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                t.build()
                    .map_err(|p| Located::at(&format!("[[df04.transactions]] {}", i + 1), p))
            })
            .collect::<Result<_, _>>()?;
        Ok(Df04 {
            mode: self.mode,
            balance_fen: self.balance_fen,
            annual_self_pay: self.annual_self_pay,
            annual_fund_pay: self.annual_fund_pay,
            transactions,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransactionFile {
    seq: u16,
    kind: String,
    terminal: String,
    time: String,
    account_fen: u32,
    #[serde(default)]
    self_pay_fen: u32,
    #[serde(default)]
    fund_fen: u32,
}

impl TransactionFile {
    fn build(self) -> Result<Transaction, Problem> {
        let kind = match self.kind.as_bytes() {
            [kind] if kind.is_ascii_graphic() => *kind,
            _ => return Err(Problem::TransactionKind(self.kind)),
        };
        if !is_number(&self.terminal, 12) {
            return Err(Problem::Terminal(self.terminal));
        }
        if !is_number(&self.time, 14) {
            return Err(Problem::Time(self.time));
        }
        Ok(Transaction {
            seq: self.seq,
            kind,
            terminal: self.terminal,
            time: self.time,
            account_fen: self.account_fen,
            self_pay_fen: self.self_pay_fen,
            fund_fen: self.fund_fen,
        })
    }
}

fn build_records(file: &str, records: &[RecordFile]) -> Result<Vec<Record>, Located> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            record
                .build()
                .map_err(|p| Located::at(&record.place(file, i + 1), p))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    tag: Option<u8>,
    b: Option<String>,
    an: Option<String>,
    cn: Option<String>,
    gbk: Option<String>,
    raw: Option<String>,
    len: Option<usize>,
}

/// A record's value as written in the file, before encoding.
enum Value<'a> {
    B(&'a str),
    An(&'a str),
    Cn(&'a str),
    Gbk(&'a str),
    Raw(&'a str),
}

impl RecordFile {
    fn place(&self, file: &str, number: usize) -> String {
        match self.tag {
            Some(tag) => format!("[[{file}]] record {number} (tag 0x{tag:02X})"),
            None => format!("[[{file}]] record {number}"),
        }
    }

    fn value(&self) -> Result<Value<'_>, Problem> {
        let given: Vec<Value<'_>> = [
            self.b.as_deref().map(Value::B),
            self.an.as_deref().map(Value::An),
            self.cn.as_deref().map(Value::Cn),
            self.gbk.as_deref().map(Value::Gbk),
            self.raw.as_deref().map(Value::Raw),
        ]
        .into_iter()
        .flatten()
        .collect();
        let count = given.len();
        given
            .into_iter()
            .next()
            .filter(|_| count == 1)
            .ok_or(Problem::ValueCount(count))
    }

    fn build(&self) -> Result<Record, Problem> {
        let (value, fill) = match self.value()? {
            Value::Raw(hex) => return self.build_raw(hex),
            Value::B(hex) => (parse_hex(hex)?, 0x00),
            Value::An(text) => (encode_an(text)?, 0x00),
            Value::Cn(digits) => (encode_cn(digits)?, 0xFF),
            Value::Gbk(text) => (encode_gbk(text)?, 0x00),
        };
        let tag = self.tag.ok_or(Problem::MissingTag)?;
        check_tag(tag)?;
        let value = pad(value, self.len, fill)?;
        let len = u8::try_from(value.len()).map_err(|_| Problem::ValueTooLong(value.len()))?;
        Ok([vec![tag, len], value].concat())
    }

    /// A raw record is used as-is; a `tag`, if given, must be its first byte.
    fn build_raw(&self, hex: &str) -> Result<Record, Problem> {
        if self.len.is_some() {
            return Err(Problem::LenWithRaw);
        }
        let bytes = parse_hex(hex)?;
        match (bytes.first(), self.tag) {
            (None, _) => Err(Problem::EmptyRaw),
            (Some(&first), Some(tag)) if first != tag => Err(Problem::RawTag { tag, first }),
            _ if bytes.len() > MAX_VALUE_LEN + 2 => Err(Problem::RawTooLong(bytes.len())),
            _ => Ok(bytes),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinFile {
    value: String,
    tries_left: Option<u8>,
    max_tries: Option<u8>,
}

impl PinFile {
    fn build(self) -> Result<Pin, Located> {
        if !PIN_DIGITS.contains(&self.value.len()) || !is_digits(&self.value) {
            return Err(Located::at("pin.value", Problem::PinDigits));
        }
        let max_tries = self.max_tries.unwrap_or(3);
        if !(1..=MAX_TRIES).contains(&max_tries) {
            return Err(Located::at("pin.max_tries", Problem::PinMaxTries));
        }
        let tries_left = self.tries_left.unwrap_or(max_tries);
        if tries_left > max_tries {
            return Err(Located::at(
                "pin.tries_left",
                Problem::PinTriesLeft {
                    tries_left,
                    max_tries,
                },
            ));
        }
        Ok(Pin {
            digits: self.value,
            tries_left,
            max_tries,
        })
    }
}

/// An ATR in hex: 2 to 33 bytes.
pub(super) fn parse_atr(text: &str) -> Result<Vec<u8>, Problem> {
    let atr = parse_hex(text)?;
    if (2..=MAX_ATR_LEN).contains(&atr.len()) {
        Ok(atr)
    } else {
        Err(Problem::AtrLength(atr.len()))
    }
}

fn check_tag(tag: u8) -> Result<(), Problem> {
    if (0x01..=0xFE).contains(&tag) {
        Ok(())
    } else {
        Err(Problem::BadTag(tag))
    }
}

/// Hex digits, spaces allowed between them.
fn parse_hex(text: &str) -> Result<Vec<u8>, Problem> {
    let compact: String = text.split_whitespace().collect();
    hex::decode(&compact).map_err(|source| Problem::BadHex {
        text: text.to_owned(),
        source,
    })
}

fn encode_an(text: &str) -> Result<Vec<u8>, Problem> {
    if text.is_ascii() {
        Ok(text.as_bytes().to_vec())
    } else {
        Err(Problem::NotAscii(text.to_owned()))
    }
}

fn encode_cn(digits: &str) -> Result<Vec<u8>, Problem> {
    if is_digits(digits) {
        Ok(pack_bcd(digits.as_bytes()))
    } else {
        Err(Problem::NotDecimal(digits.to_owned()))
    }
}

fn encode_gbk(text: &str) -> Result<Vec<u8>, Problem> {
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(text);
    if unmappable {
        Err(Problem::NotGb18030(text.to_owned()))
    } else {
        Ok(bytes.into_owned())
    }
}

fn is_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// Exactly `digits` decimal digits.
pub(super) fn is_number(text: &str, digits: usize) -> bool {
    text.len() == digits && is_digits(text)
}

/// ASCII digits → BCD, two a byte; an odd count ends in an `F` nibble.
pub(super) fn pack_bcd(digits: &[u8]) -> Vec<u8> {
    digits
        .chunks(2)
        .map(|pair| {
            let high = pair[0] & 0x0F;
            let low = pair.get(1).map_or(0x0F, |d| d & 0x0F);
            high << 4 | low
        })
        .collect()
}

/// Pads `value` with `fill` bytes up to `len`; a longer value is an error.
fn pad(mut value: Vec<u8>, len: Option<usize>, fill: u8) -> Result<Vec<u8>, Problem> {
    let Some(len) = len else {
        return Ok(value);
    };
    if value.len() > len {
        return Err(Problem::LongerThanLen {
            value: value.len(),
            len,
        });
    }
    value.resize(len, fill);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const HEAD: &str = "description = \"test\"\natr = \"3B 6D 00 00\"\n";

    fn image(body: &str) -> Result<CardImage, SimError> {
        CardImage::from_toml_str(&format!("{HEAD}{body}"), "test.toml")
    }

    fn records(body: &str) -> Vec<Record> {
        let ssse = image(&format!("[ssse]\n{body}")).unwrap().ssse.unwrap();
        ssse.ef05
    }

    fn error(body: &str) -> String {
        image(body).unwrap_err().to_string()
    }

    #[test]
    fn encodes_each_value_format() {
        let r = records(
            r#"
[[ssse.ef05]]
tag = 0x01
b = "50 00 00 D1"
[[ssse.ef05]]
tag = 0x03
an = "2.00"
[[ssse.ef05]]
tag = 0x0B
cn = "01"
[[ssse.ef05]]
tag = 0x0C
cn = "12345"
[[ssse.ef05]]
tag = 0x09
gbk = "王小"
"#,
        );
        assert_eq!(r[0], [0x01, 0x04, 0x50, 0x00, 0x00, 0xD1]);
        assert_eq!(r[1], b"\x03\x042.00");
        assert_eq!(r[2], [0x0B, 0x01, 0x01]);
        assert_eq!(r[3], [0x0C, 0x03, 0x12, 0x34, 0x5F]);
        assert_eq!(r[4], [0x09, 0x04, 0xCD, 0xF5, 0xD0, 0xA1]);
    }

    #[test]
    fn pads_to_len_with_the_format_fill() {
        let r = records(
            r#"
[[ssse.ef05]]
tag = 0x0C
cn = "1234"
len = 3
[[ssse.ef05]]
tag = 0x09
gbk = "王"
len = 4
[[ssse.ef05]]
tag = 0x4E
gbk = ""
len = 3
"#,
        );
        assert_eq!(r[0], [0x0C, 0x03, 0x12, 0x34, 0xFF]);
        assert_eq!(r[1], [0x09, 0x04, 0xCD, 0xF5, 0x00, 0x00]);
        assert_eq!(r[2], [0x4E, 0x03, 0, 0, 0]);
    }

    #[test]
    fn gb18030_encodes_characters_outside_gbk() {
        // 𠮷 (U+20BB7) is a four-byte GB18030 sequence; 堃 is GBK but not GB2312.
        let r = records("[[ssse.ef05]]\ntag = 0x09\ngbk = \"李𠮷堃\"\n");
        assert_eq!(r[0], hex::decode("0908C0EE9534B23588D2").unwrap());
    }

    #[test]
    fn raw_records_are_used_as_is() {
        let r = records(
            "[[ssse.ef05]]\nraw = \"0D0420191399\"\n[[ssse.ef05]]\ntag = 0x03\nraw = \"0304322E3000\"\n",
        );
        assert_eq!(r[0], [0x0D, 0x04, 0x20, 0x19, 0x13, 0x99]);
        assert_eq!(r[1], [0x03, 0x04, 0x32, 0x2E, 0x30, 0x00]);
    }

    #[test]
    fn errors_name_the_file_the_record_and_the_problem() {
        let e = error(
            "[ssse]\n[[ssse.ef06]]\ntag = 0x08\nan = \"x\"\n[[ssse.ef06]]\ntag = 0x09\ngbk = \"王小王小\"\nlen = 6\n",
        );
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("[[ssse.ef06]] record 2 (tag 0x09)"), "{e}");
        assert!(e.contains("longer than len = 6"), "{e}");
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            ("an = \"王\"", "not ASCII"),
            ("cn = \"12a4\"", "decimal digits"),
            ("b = \"0G\"", "bad hex"),
            ("an = \"1\"\ncn = \"1\"", "exactly one"),
            ("len = 2", "exactly one"),
        ];
        for (value, problem) in bad {
            let e = error(&format!("[ssse]\n[[ssse.ef05]]\ntag = 0x02\n{value}\n"));
            assert!(e.contains(problem), "{value}: {e}");
        }
        assert!(
            error("[ssse]\n[[ssse.ef05]]\ntag = 0xFF\nan = \"1\"\n").contains("record identifier")
        );
        assert!(
            error("[ssse]\n[[ssse.ef05]]\ntag = 0x00\nan = \"1\"\n").contains("record identifier")
        );
        assert!(error("[ssse]\n[[ssse.ef05]]\nan = \"1\"\n").contains("missing tag"));
        assert!(
            error("[ssse]\n[[ssse.ef05]]\ntag = 0x02\nraw = \"0301\"\n").contains("does not match")
        );
        let long = "a".repeat(256);
        assert!(
            error(&format!(
                "[ssse]\n[[ssse.ef05]]\ntag = 0x02\nan = \"{long}\"\n"
            ))
            .contains("at most 255")
        );
    }

    #[test]
    fn rejects_unknown_keys_everywhere() {
        assert!(matches!(
            image("colour = 1\n"),
            Err(SimError::Syntax { .. })
        ));
        assert!(matches!(
            image("[ssse]\nalgo = 1\n"),
            Err(SimError::Syntax { .. })
        ));
        assert!(matches!(
            image("[behaviour]\nslow = true\n"),
            Err(SimError::Syntax { .. })
        ));
        assert!(matches!(
            image("[ssse]\n[[ssse.ef05]]\ntag = 1\nan = \"1\"\nlength = 1\n"),
            Err(SimError::Syntax { .. })
        ));
    }

    #[test]
    fn checks_atr_and_pin() {
        let e =
            CardImage::from_toml_str("description = \"\"\natr = \"3B\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("atr"), "{e}");
        assert!(error("[pin]\nvalue = \"12\"\n").contains("pin.value"));
        assert!(error("[pin]\nvalue = \"12a456\"\n").contains("pin.value"));
        assert!(error("[pin]\nvalue = \"123456\"\ntries_left = 4\n").contains("pin.tries_left"));
        let pin = image("[pin]\nvalue = \"12345\"\n").unwrap().pin.unwrap();
        assert_eq!((pin.tries_left, pin.max_tries), (3, 3));
        assert_eq!(pin.bcd(), [0x12, 0x34, 0x5F]);
    }

    #[test]
    fn defaults_when_tables_are_omitted() {
        let card = image("").unwrap();
        assert_eq!(card.ssse, None);
        assert_eq!(card.pin, None);
        assert_eq!(card.behaviour, Behaviour::default());
        assert!(card.behaviour.whole_file_read && card.behaviour.tag_read);
        let ssse = image("[ssse]\n").unwrap().ssse.unwrap();
        assert_eq!((ssse.algorithm, ssse.ef06_access), (0x01, Ef06Access::Free));
        let ssse = image("[ssse]\nef06_access = \"external_auth\"\n")
            .unwrap()
            .ssse
            .unwrap();
        assert_eq!(ssse.ef06_access, Ef06Access::ExternalAuth);
    }

    // ---- the fixture cards ----

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cards")
    }

    fn fixtures() -> Vec<(String, CardImage)> {
        let mut all: Vec<_> = std::fs::read_dir(fixture_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .map(|path| {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                let card = CardImage::load(&path).unwrap_or_else(|e| panic!("{e}"));
                (name, card)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn fixture(name: &str) -> CardImage {
        CardImage::load(&fixture_dir().join(format!("{name}.toml"))).unwrap()
    }

    /// The value of the first record with `tag` (length byte stripped).
    fn value(records: &[Record], tag: u8) -> Option<&[u8]> {
        records.iter().find(|r| r[0] == tag).map(|r| &r[2..])
    }

    fn ascii(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes)
            .trim_end_matches('\0')
            .to_owned()
    }

    fn bcd(bytes: &[u8]) -> String {
        hex::encode_upper(bytes).trim_end_matches('F').to_owned()
    }

    /// GB 11643 check character of an 18-character citizen number.
    fn certno_valid(certno: &str) -> bool {
        const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = certno
            .chars()
            .zip(W)
            .map(|(c, w)| c.to_digit(10).unwrap() * w)
            .sum();
        certno.len() == 18 && certno.as_bytes()[17] == b"10X98765432"[(sum % 11) as usize]
    }

    /// 卡号 check character, card-spec.md §2.2.
    fn card_no_valid(card_no: &str) -> bool {
        const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = card_no
            .chars()
            .zip(W)
            .map(|(c, w)| c.to_digit(36).unwrap() * w)
            .sum();
        let check = match 11 - sum % 11 {
            10 => 'X',
            11 => '0',
            n => char::from_digit(n, 10).unwrap(),
        };
        card_no.len() == 9 && card_no.ends_with(check)
    }

    #[test]
    fn every_fixture_card_loads() {
        let names: Vec<String> = fixtures().into_iter().map(|(name, _)| name).collect();
        for expected in [
            "corrupt",
            "expired",
            "gen1",
            "gen3",
            "gen3-des",
            "gen3-locked",
            "long-name",
            "no-4e",
            "no-ssse",
            "pin-2-left",
            "pin-locked",
            "quirky",
            "rare-char",
            "resident",
            "vanishing",
            "xiaowang",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "fixtures/cards/{expected}.toml missing"
            );
        }
    }

    #[test]
    fn xiaowang_card_id_is_ef05_record_1() {
        let ssse = fixture("xiaowang").ssse.unwrap();
        assert_eq!(
            ssse.ef05[0],
            hex::decode("0110500000D15600000512345678ABCDEF01").unwrap()
        );
        assert_eq!(ssse.ef06.len(), 7);
        assert_eq!(ssse.ef06[2], [vec![0x4E, 20], vec![0; 20]].concat());
        assert_eq!(fixture("xiaowang").pin.unwrap().digits, "123456");
    }

    #[test]
    fn fixture_people_are_consistent() {
        for (name, card) in fixtures() {
            let Some(ssse) = card.ssse else { continue };
            let card_id = hex::encode_upper(value(&ssse.ef05, 0x01).unwrap());
            let region = &card_id[..6];
            assert_eq!(&card_id[6..16], "D156000005", "{name}: 卡识别码");
            assert_eq!(
                hex::encode_upper(&card.atr[11..13]),
                region[..4],
                "{name}: ATR T8–T9"
            );
            let card_no = ascii(value(&ssse.ef05, 0x07).unwrap());
            assert_eq!(
                card_no_valid(&card_no),
                name != "quirky",
                "{name}: 卡号 {card_no}"
            );
            let certno = ascii(value(&ssse.ef06, 0x08).unwrap());
            assert!(certno_valid(&certno), "{name}: certno {certno}");
            assert_eq!(
                bcd(value(&ssse.ef06, 0x0C).unwrap()),
                certno[..6],
                "{name}: 出生地"
            );
            if name != "corrupt" {
                assert_eq!(
                    bcd(value(&ssse.ef06, 0x0D).unwrap()),
                    certno[6..14],
                    "{name}: 出生日期"
                );
            }
            let gender = if certno.as_bytes()[16] % 2 == 1 {
                "1"
            } else {
                "2"
            };
            assert_eq!(
                ascii(value(&ssse.ef06, 0x0A).unwrap()),
                gender,
                "{name}: 性别"
            );
        }
    }

    #[test]
    fn long_name_continues_in_4e_without_splitting_a_character() {
        let ssse = fixture("long-name").ssse.unwrap();
        let first = value(&ssse.ef06, 0x09).unwrap();
        let rest = value(&ssse.ef06, 0x4E).unwrap();
        let strip = |b: &[u8]| {
            b.iter()
                .copied()
                .take_while(|&c| c != 0)
                .collect::<Vec<u8>>()
        };
        let (a, b) = (strip(first), strip(rest));
        assert!(a.len() + b.len() > 30 && a.len() + b.len() <= 50);
        let joined = [a.clone(), b].concat();
        let (whole, _, bad) = encoding_rs::GB18030.decode(&joined);
        assert!(!bad);
        assert_eq!(whole, "阿不都热合曼·买买提艾力·吐尔逊托合提");
        assert!(
            !encoding_rs::GB18030.decode(&a).2,
            "tag 09 ends inside a character"
        );
    }

    #[test]
    fn generation_specific_fixtures() {
        let gen1 = fixture("gen1");
        let ssse = gen1.ssse.as_ref().unwrap();
        assert_eq!(
            ssse.ef06.iter().map(|r| r[0]).collect::<Vec<_>>(),
            [8, 9, 0x0A, 0x0B, 0x0C, 0x0D]
        );
        assert!(!gen1.behaviour.whole_file_read && !gen1.behaviour.tag_read);
        let gen3 = fixture("gen3").ssse.unwrap();
        assert_eq!(
            (gen3.algorithm, gen3.ef06_access),
            (0x03, Ef06Access::ExternalAuth)
        );
        assert!(fixture("no-ssse").ssse.is_none());
        assert!(value(&fixture("no-4e").ssse.unwrap().ef06, 0x4E).is_none());
    }

    #[test]
    fn third_generation_fixtures_have_their_test_keys() {
        let sm4_rkssse = SecretKey::from_hex("11223344556677888877665544332211").unwrap();
        let des_rkssse = SecretKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        for (name, algorithm, rkssse, tries) in [
            ("gen3", 0x03, &sm4_rkssse, 3),
            ("gen3-locked", 0x03, &sm4_rkssse, 0),
            ("gen3-des", 0x01, &des_rkssse, 3),
        ] {
            let ssse = fixture(name).ssse.unwrap();
            assert_eq!(ssse.algorithm, algorithm, "{name}");
            assert_eq!(ssse.ef06_access, Ef06Access::ExternalAuth, "{name}");
            assert_eq!(ssse.rkssse_master.as_ref(), Some(rkssse), "{name}");
            assert!(ssse.internal_master.is_some(), "{name}");
            assert_eq!(ssse.auth_tries, tries, "{name}");
            assert_eq!(ascii(value(&ssse.ef05, 0x03).unwrap()), "3.00", "{name}");
        }
        // gen3-des is from a "33" region where the factor differs from region ‖ "sx".
        let id = fixture("gen3-des").ssse.unwrap().card_id().unwrap();
        assert!(id.starts_with("33") && &id[4..6] != "00", "{id}");
        assert_eq!(
            &diversification_factor(&id).unwrap(),
            format!("{}00sx", &id[..4]).as_bytes()
        );
        // Older cards carry no keys.
        assert!(fixture("xiaowang").ssse.unwrap().rkssse_master.is_none());
    }

    #[test]
    fn df04_fixtures() {
        let xiaowang = fixture("xiaowang");
        let df04 = xiaowang.df04.as_ref().unwrap();
        assert_eq!(df04.mode, "2");
        assert_eq!(df04.balance_fen, Some(10280));
        assert_eq!(
            df04.annual_self_pay,
            Some(AnnualAmount {
                fen: 23000,
                year: 2026
            })
        );
        assert_eq!(
            df04.annual_fund_pay,
            Some(AnnualAmount { fen: 0, year: 2026 })
        );
        let paid: u32 = df04.transactions.iter().map(|t| t.account_fen).sum();
        assert_eq!((df04.transactions.len(), paid), (3, 23000));
        assert!(
            df04.transactions
                .iter()
                .all(|t| t.kind == b'2' && t.time.starts_with("2026"))
        );
        let pin = xiaowang.pin.unwrap();
        assert_eq!((pin.digits.as_str(), pin.tries_left), ("123456", 3));
        let resident = fixture("resident").df04.unwrap();
        assert_eq!((resident.mode.as_str(), resident.balance_fen), ("1", None));
        let locked = fixture("pin-locked");
        assert_eq!(locked.pin.unwrap().tries_left, 0);
        assert_eq!(locked.df04.unwrap().mode, "2");
        let two = fixture("pin-2-left");
        let pin = two.pin.unwrap();
        assert_eq!(
            (pin.digits.as_str(), pin.tries_left, pin.max_tries),
            ("654321", 2, 3)
        );
        assert!(two.df04.unwrap().balance_fen.is_some());
    }

    #[test]
    fn encodes_df04_values() {
        let card = image(
            r#"
[df04]
mode = "2"
annual_fund_pay = { fen = 152000, year = 2026 }
[[df04.transactions]]
seq = 258
kind = "1"
terminal = "500000000001"
time = "20260305093000"
account_fen = 8000
"#,
        )
        .unwrap();
        let df04 = card.df04.unwrap();
        assert_eq!(df04.ef05_record(), [0x8F, 0x01, b'2']);
        assert_eq!(
            hex::encode_upper(df04.annual_fund_pay.unwrap().bytes()),
            "000251C02026"
        );
        let record = df04.transactions[0].record();
        assert_eq!(record.len(), TRANSACTION_RECORD_LEN);
        assert_eq!(
            hex::encode_upper(record),
            "0102315000000000012026030509300000001F400000000000000000"
        );
    }

    #[test]
    fn rejects_bad_df04_and_keys() {
        let bad = [
            ("[df04]\nmode = \"3\"\n", "df04.mode"),
            (
                "[df04]\nmode = \"2\"\nannual_self_pay = { fen = 1, year = 26 }\n",
                "4 digits",
            ),
            ("[df04]\nmode = \"2\"\nbalance_fen = -1\n", "balance_fen"),
            (
                "[df04]\nmode = \"2\"\n[[df04.transactions]]\nseq = 1\nkind = \"22\"\nterminal = \"500000000001\"\ntime = \"20260305093000\"\naccount_fen = 1\n",
                "[[df04.transactions]] 1",
            ),
            (
                "[df04]\nmode = \"2\"\n[[df04.transactions]]\nseq = 1\nkind = \"2\"\nterminal = \"5000\"\ntime = \"20260305093000\"\naccount_fen = 1\n",
                "12 digits",
            ),
            (
                "[df04]\nmode = \"2\"\n[[df04.transactions]]\nseq = 1\nkind = \"2\"\nterminal = \"500000000001\"\ntime = \"2026030509300\"\naccount_fen = 1\n",
                "14 digits",
            ),
            ("[df04]\nmode = \"2\"\nbalance = 1\n", "unknown field"),
            ("[ssse]\nauth_tries = 4\n", "ssse.auth_tries"),
            ("[ssse]\nrkssse_master = \"0011\"\n", "ssse.rkssse_master"),
            (
                "[ssse]\ninternal_master = \"00112233445566778899AABBCCDDEEFF\"\n",
                "卡识别码",
            ),
            (
                "[ssse]\nalgorithm = 0x02\nrkssse_master = \"00112233445566778899AABBCCDDEEFF\"\n[[ssse.ef05]]\ntag = 1\nb = \"500000D156000005\"\n",
                "cannot authenticate",
            ),
        ];
        for (body, problem) in bad {
            let e = error(body);
            assert!(
                e.contains(problem) && e.contains("test.toml"),
                "{body}: {e}"
            );
        }
    }
}
