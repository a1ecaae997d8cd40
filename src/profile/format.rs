//! Data-item formats and their decoders (card-spec.md §2.1): BCD `cn` with F padding,
//! ASCII `an` padded with 00, GBK names, binary `b`, `date` (YYYYMMDD in BCD) and
//! `amount_fen` (unsigned big-endian fen).
//!
//! Decoders return `Ok(None)` for an item that is present but empty (all padding): absent
//! is not an error. Bytes that cannot be what the format says are a [`DecodeError`].

use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Compressed numeric: BCD, two digits a byte, right-padded with F nibbles.
    Cn,
    /// Alphanumeric ASCII, right-padded with 00 (or 20).
    An,
    /// Chinese text in GBK (GB18030 decoder), padded with 00.
    Gbk,
    /// Binary, shown as upper-case hex.
    B,
    /// A date YYYYMMDD in BCD, shown as YYYY-MM-DD.
    Date,
    /// An amount in fen (分), unsigned big-endian binary, shown in yuan with two decimals.
    AmountFen,
    /// An unsigned big-endian integer (a sequence number), shown in decimal.
    Uint,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0:?} is not BCD digits")]
    NotBcd(String),
    #[error("byte {0:#04X} is not printable ASCII")]
    NotAscii(u8),
    #[error("bytes {0} are not valid GBK text")]
    NotGbk(String),
    #[error("{0:?} is not a valid date YYYYMMDD")]
    BadDate(String),
    #[error("{0} bytes is too long for a number")]
    AmountTooLong(usize),
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Cn => "cn",
            Format::An => "an",
            Format::Gbk => "gbk",
            Format::B => "b",
            Format::Date => "date",
            Format::AmountFen => "amount_fen",
            Format::Uint => "uint",
        }
    }

    /// Formats whose length the format itself fixes.
    pub fn fixed_length(self) -> Option<usize> {
        match self {
            Format::Date => Some(4),
            _ => None,
        }
    }

    /// Strips the padding a card puts after a shorter value. Text formats are trimmed of
    /// 00/20 at the end (names are concatenated after this, 09 ‖ 4E).
    pub fn strip_padding(self, value: &[u8]) -> Vec<u8> {
        match self {
            Format::An | Format::Gbk => {
                let end = value
                    .iter()
                    .rposition(|b| *b != 0x00 && *b != 0x20)
                    .map_or(0, |i| i + 1);
                let start = value[..end].iter().position(|b| *b != 0x20).unwrap_or(end);
                value[start..end].to_vec()
            }
            _ => value.to_vec(),
        }
    }
}

/// Decodes a value (padding included) in `format`. `lenient` renders bytes a strict
/// decoder refuses as hex instead of failing (see `ItemSpec::lenient`).
pub fn decode(format: Format, value: &[u8], lenient: bool) -> Result<Option<String>, DecodeError> {
    if value.is_empty() {
        return Ok(None);
    }
    let stripped = format.strip_padding(value);
    match format {
        Format::Cn => decode_cn(value, lenient),
        Format::An => decode_an(&stripped, lenient),
        Format::Gbk => decode_gbk(&stripped),
        Format::B => Ok(Some(hex::encode_upper(value))),
        Format::Date => decode_date(value),
        Format::AmountFen => decode_amount_fen(value).map(Some),
        Format::Uint => big_endian(value).map(|n| Some(n.to_string())),
    }
}

fn decode_cn(value: &[u8], lenient: bool) -> Result<Option<String>, DecodeError> {
    let hex = hex::encode_upper(value);
    let digits = hex.trim_end_matches('F');
    if digits.is_empty() {
        return Ok(None);
    }
    if lenient || digits.bytes().all(|c| c.is_ascii_digit()) {
        Ok(Some(digits.to_owned()))
    } else {
        Err(DecodeError::NotBcd(hex))
    }
}

fn decode_an(value: &[u8], lenient: bool) -> Result<Option<String>, DecodeError> {
    if value.is_empty() || value.iter().all(|b| *b == 0xFF) {
        return Ok(None);
    }
    if let Some(bad) = value.iter().find(|b| !(0x20..0x7F).contains(*b)) {
        if !lenient {
            return Err(DecodeError::NotAscii(*bad));
        }
        return Ok(Some(hex::encode_upper(value)));
    }
    Ok(Some(String::from_utf8_lossy(value).into_owned()))
}

fn decode_gbk(value: &[u8]) -> Result<Option<String>, DecodeError> {
    if value.is_empty() {
        return Ok(None);
    }
    encoding_rs::GBK
        .decode_without_bom_handling_and_without_replacement(value)
        .filter(|text| !text.chars().any(char::is_control))
        .map(|text| Some(text.into_owned()))
        .ok_or_else(|| DecodeError::NotGbk(hex::encode_upper(value)))
}

fn decode_date(value: &[u8]) -> Result<Option<String>, DecodeError> {
    let Some(digits) =
        decode_cn(value, false).map_err(|_| DecodeError::BadDate(hex::encode_upper(value)))?
    else {
        return Ok(None);
    };
    match crate::clock::Date::from_card(&digits) {
        Some(date) if date.year() >= 1900 => Ok(Some(date.to_string())),
        _ => Err(DecodeError::BadDate(digits)),
    }
}

fn big_endian(value: &[u8]) -> Result<u64, DecodeError> {
    if value.len() > 8 {
        return Err(DecodeError::AmountTooLong(value.len()));
    }
    Ok(value.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn decode_amount_fen(value: &[u8]) -> Result<String, DecodeError> {
    let fen = big_endian(value)?;
    let yuan = Decimal::from_i128_with_scale(i128::from(fen), 2);
    Ok(yuan.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn cn_strips_f_padding_and_all_f_is_absent() {
        assert_eq!(
            decode(Format::Cn, &h("500103"), false).unwrap().unwrap(),
            "500103"
        );
        assert_eq!(decode(Format::Cn, &h("01"), false).unwrap().unwrap(), "01");
        assert_eq!(
            decode(Format::Cn, &h("12345F"), false).unwrap().unwrap(),
            "12345"
        );
        assert_eq!(decode(Format::Cn, &h("FFFFFF"), false).unwrap(), None);
        assert!(decode(Format::Cn, &h("12A4"), false).is_err());
        assert!(
            decode(Format::Cn, &h("1F34"), false).is_err(),
            "F inside the digits"
        );
    }

    #[test]
    fn cn_lenient_keeps_the_real_card_quirk() {
        // 初始化机构编号 seen on a real card: last byte DB is not BCD (card-spec.md §2.2).
        let v = h("9156000002511300511300DB");
        assert!(decode(Format::Cn, &v, false).is_err());
        assert_eq!(
            decode(Format::Cn, &v, true).unwrap().unwrap(),
            "9156000002511300511300DB"
        );
    }

    #[test]
    fn an_trims_00_and_20() {
        assert_eq!(
            decode(Format::An, &h("322E3000"), false).unwrap().unwrap(),
            "2.0"
        );
        assert_eq!(
            decode(Format::An, &h("332E3030"), false).unwrap().unwrap(),
            "3.00"
        );
        assert_eq!(
            decode(Format::An, b"A21472424", false).unwrap().unwrap(),
            "A21472424"
        );
        assert_eq!(decode(Format::An, &h("00000000"), false).unwrap(), None);
        assert_eq!(decode(Format::An, &h("FFFF"), false).unwrap(), None);
        assert_eq!(
            decode(Format::An, &h("41 01 42"), false).unwrap_err(),
            DecodeError::NotAscii(0x01)
        );
    }

    #[test]
    fn gbk_names_from_real_traces() {
        // card-spec.md §2.1: CDF5D1A9C3B7 = 王雪梅, C0EEC0DA = 李磊.
        let mut name = h("CDF5D1A9C3B7");
        name.resize(30, 0);
        assert_eq!(
            decode(Format::Gbk, &name, false).unwrap().unwrap(),
            "王雪梅"
        );
        assert_eq!(
            decode(Format::Gbk, &h("C0EEC0DA0000"), false)
                .unwrap()
                .unwrap(),
            "李磊"
        );
        assert_eq!(decode(Format::Gbk, &[0; 20], false).unwrap(), None);
    }

    #[test]
    fn gbk_decodes_four_byte_gb18030_characters() {
        let (bytes, _, unmappable) = encoding_rs::GB18030.encode("李𠮷");
        assert!(!unmappable);
        assert_eq!(decode(Format::Gbk, &bytes, false).unwrap().unwrap(), "李𠮷");
    }

    #[test]
    fn gbk_refuses_broken_sequences() {
        assert!(matches!(
            decode(Format::Gbk, &h("C0EEC0"), false),
            Err(DecodeError::NotGbk(_))
        ));
        assert!(
            decode(Format::Gbk, &h("C0EE01C0DA"), false).is_err(),
            "control byte"
        );
    }

    #[test]
    fn dates_are_validated() {
        assert_eq!(
            decode(Format::Date, &h("20180403"), false)
                .unwrap()
                .unwrap(),
            "2018-04-03"
        );
        assert_eq!(
            decode(Format::Date, &h("20240229"), false)
                .unwrap()
                .unwrap(),
            "2024-02-29"
        );
        assert_eq!(decode(Format::Date, &h("FFFFFFFF"), false).unwrap(), None);
        for bad in ["20191399", "20230229", "20180400", "2018040F", "1A180403"] {
            assert!(decode(Format::Date, &h(bad), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_and_amounts() {
        assert_eq!(
            decode(Format::B, &h("510100D156000005C0666779C8C975CC"), false)
                .unwrap()
                .unwrap(),
            "510100D156000005C0666779C8C975CC"
        );
        // 332.80 yuan = 33280 fen = 0x8200.
        assert_eq!(
            decode(Format::AmountFen, &h("00008200"), false)
                .unwrap()
                .unwrap(),
            "332.80"
        );
        assert_eq!(
            decode(Format::AmountFen, &h("00000000"), false)
                .unwrap()
                .unwrap(),
            "0.00"
        );
        assert!(decode(Format::AmountFen, &[1; 9], false).is_err());
        assert_eq!(
            decode(Format::Uint, &h("0102"), false).unwrap().unwrap(),
            "258"
        );
    }
}
