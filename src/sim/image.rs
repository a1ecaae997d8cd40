//! Card images: what a virtual card holds, loaded from the TOML card files in
//! `fixtures/cards/` (format in `fixtures/cards/README.md`).
//!
//! Loading checks everything a card file can get wrong (hex, digits, ASCII, GB18030,
//! lengths, tags, unknown keys) and names the file, the record and the problem, so a broken
//! fixture fails loudly instead of becoming a card that answers nonsense.

use super::SimError;
use serde::Deserialize;
use std::path::Path;

/// One record as stored on the card: tag ‖ length ‖ value (raw records: any bytes).
pub type Record = Vec<u8>;

/// The longest value a one-byte length can announce.
const MAX_VALUE_LEN: usize = 255;
/// ATRs are at most 33 bytes (ISO 7816-3).
const MAX_ATR_LEN: usize = 33;
/// PINs entered on a PIN pad: 4–16 digits (card-spec.md §5.1).
const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=16;
/// The tries counter travels in one nibble of `63Cx`.
const MAX_TRIES: u8 = 15;

/// A whole card: ATR, the SSSE application (if any), the PIN and behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardImage {
    pub description: String,
    pub atr: Vec<u8>,
    /// `None`: no social security application (a bank-only card); SELECT SSSE → `6A82`.
    pub ssse: Option<Ssse>,
    pub pin: Option<Pin>,
    pub behaviour: Behaviour,
}

/// The SSSE application: its algorithm id and the two record files under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssse {
    /// Algorithm id in the FCI (`9F0C 03 86 01 xx`): 01 DES, 02 SSF33, 03 SM4.
    pub algorithm: u8,
    pub ef06_access: Ef06Access,
    /// EF05 records in order: record number = position + 1.
    pub ef05: Vec<Record>,
    /// EF06 records in order: record number = position + 1.
    pub ef06: Vec<Record>,
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
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: origin.clone(),
            source,
        })?;
        CardImage::from_toml_str(&text, &origin)
    }

    /// Parses a card file's text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<CardImage, SimError> {
        let file: CardFile = toml::from_str(text).map_err(|e| SimError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |place: String, problem: String| SimError::Invalid {
            origin: origin.to_owned(),
            place,
            problem,
        };
        let atr = parse_atr(&file.atr).map_err(|p| invalid("atr".into(), p))?;
        let ssse = file
            .ssse
            .map(|s| s.build())
            .transpose()
            .map_err(|(place, p)| invalid(place, p))?;
        let pin = file
            .pin
            .map(|p| p.build())
            .transpose()
            .map_err(|(place, p)| invalid(place, p))?;
        Ok(CardImage {
            description: file.description,
            atr,
            ssse,
            pin,
            behaviour: file.behaviour,
        })
    }
}

/// A problem and where it is (`[[ssse.ef05]] record 3 (tag 0x03)`, `pin.value`, …).
type Located = (String, String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    description: String,
    atr: String,
    ssse: Option<SsseFile>,
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
}

fn default_algorithm() -> u8 {
    0x01
}

impl SsseFile {
    fn build(self) -> Result<Ssse, Located> {
        Ok(Ssse {
            algorithm: self.algorithm,
            ef06_access: self.ef06_access,
            ef05: build_records("ssse.ef05", &self.ef05)?,
            ef06: build_records("ssse.ef06", &self.ef06)?,
        })
    }
}

fn build_records(file: &str, records: &[RecordFile]) -> Result<Vec<Record>, Located> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| record.build().map_err(|p| (record.place(file, i + 1), p)))
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

    fn value(&self) -> Result<Value<'_>, String> {
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
            .ok_or_else(|| format!("needs exactly one of b, an, cn, gbk, raw (found {count})"))
    }

    fn build(&self) -> Result<Record, String> {
        let (value, fill) = match self.value()? {
            Value::Raw(hex) => return self.build_raw(hex),
            Value::B(hex) => (parse_hex(hex)?, 0x00),
            Value::An(text) => (encode_an(text)?, 0x00),
            Value::Cn(digits) => (encode_cn(digits)?, 0xFF),
            Value::Gbk(text) => (encode_gbk(text)?, 0x00),
        };
        let tag = self.tag.ok_or("missing tag")?;
        check_tag(tag)?;
        let value = pad(value, self.len, fill)?;
        let len = u8::try_from(value.len())
            .map_err(|_| format!("value is {} bytes; at most {MAX_VALUE_LEN}", value.len()))?;
        Ok([vec![tag, len], value].concat())
    }

    /// A raw record is used as-is; a `tag`, if given, must be its first byte.
    fn build_raw(&self, hex: &str) -> Result<Record, String> {
        if self.len.is_some() {
            return Err("len cannot be used with raw".into());
        }
        let bytes = parse_hex(hex)?;
        match (bytes.first(), self.tag) {
            (None, _) => Err("raw record is empty".into()),
            (Some(&first), Some(tag)) if first != tag => Err(format!(
                "tag 0x{tag:02X} does not match the raw record's first byte 0x{first:02X}"
            )),
            _ if bytes.len() > MAX_VALUE_LEN + 2 => Err(format!(
                "raw record is {} bytes; at most {}",
                bytes.len(),
                MAX_VALUE_LEN + 2
            )),
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
        let at = |place: &str, problem: String| (place.to_owned(), problem);
        if !PIN_DIGITS.contains(&self.value.len()) || !is_digits(&self.value) {
            return Err(at("pin.value", "must be 4 to 16 digits".into()));
        }
        let max_tries = self.max_tries.unwrap_or(3);
        if !(1..=MAX_TRIES).contains(&max_tries) {
            return Err(at("pin.max_tries", format!("must be 1 to {MAX_TRIES}")));
        }
        let tries_left = self.tries_left.unwrap_or(max_tries);
        if tries_left > max_tries {
            return Err(at(
                "pin.tries_left",
                format!("{tries_left} is more than max_tries {max_tries}"),
            ));
        }
        Ok(Pin {
            digits: self.value,
            tries_left,
            max_tries,
        })
    }
}

fn parse_atr(text: &str) -> Result<Vec<u8>, String> {
    let atr = parse_hex(text)?;
    if (2..=MAX_ATR_LEN).contains(&atr.len()) {
        Ok(atr)
    } else {
        Err(format!(
            "is {} bytes; an ATR has 2 to {MAX_ATR_LEN}",
            atr.len()
        ))
    }
}

fn check_tag(tag: u8) -> Result<(), String> {
    if (0x01..=0xFE).contains(&tag) {
        Ok(())
    } else {
        Err(format!(
            "tag 0x{tag:02X} is not a record identifier (0x01 to 0xFE)"
        ))
    }
}

/// Hex digits, spaces allowed between them.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.split_whitespace().collect();
    hex::decode(&compact).map_err(|e| format!("bad hex {text:?}: {e}"))
}

fn encode_an(text: &str) -> Result<Vec<u8>, String> {
    if text.is_ascii() {
        Ok(text.as_bytes().to_vec())
    } else {
        Err(format!("an value {text:?} is not ASCII"))
    }
}

fn encode_cn(digits: &str) -> Result<Vec<u8>, String> {
    if is_digits(digits) {
        Ok(pack_bcd(digits.as_bytes()))
    } else {
        Err(format!("cn value {digits:?} must be decimal digits"))
    }
}

fn encode_gbk(text: &str) -> Result<Vec<u8>, String> {
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(text);
    if unmappable {
        Err(format!(
            "gbk value {text:?} has characters GB18030 cannot encode"
        ))
    } else {
        Ok(bytes.into_owned())
    }
}

fn is_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// ASCII digits → BCD, two a byte; an odd count ends in an `F` nibble.
fn pack_bcd(digits: &[u8]) -> Vec<u8> {
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
fn pad(mut value: Vec<u8>, len: Option<usize>, fill: u8) -> Result<Vec<u8>, String> {
    let Some(len) = len else {
        return Ok(value);
    };
    if value.len() > len {
        return Err(format!(
            "value is {} bytes, longer than len = {len}",
            value.len()
        ));
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
            "long-name",
            "no-4e",
            "no-ssse",
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
}
