//! Records as they come off the card: SIMPLE-TLV (tag ‖ length ‖ value), one record per
//! READ RECORD, or several concatenated for a whole-file read.

use iso7816_tlv::simple::Tlv;
use std::collections::{BTreeMap, BTreeSet};

/// What is known of one file's records, by tag.
#[derive(Debug, Default, Clone)]
pub struct Records {
    values: BTreeMap<u8, Vec<u8>>,
    missing: BTreeSet<u8>,
    /// The whole file was read: a tag not in `values` is not on the card.
    complete: bool,
}

impl Records {
    pub fn insert(&mut self, tag: u8, value: Vec<u8>) {
        self.missing.remove(&tag);
        self.values.entry(tag).or_insert(value);
    }

    pub fn mark_missing(&mut self, tag: u8) {
        if !self.values.contains_key(&tag) {
            self.missing.insert(tag);
        }
    }

    pub fn mark_complete(&mut self) {
        self.complete = true;
    }

    pub fn get(&self, tag: u8) -> Option<&[u8]> {
        self.values.get(&tag).map(Vec::as_slice)
    }

    /// Whether the card has been asked about `tag` (present or known absent).
    pub fn knows(&self, tag: u8) -> bool {
        self.complete || self.values.contains_key(&tag) || self.missing.contains(&tag)
    }
}

/// Splits concatenated records. Trailing 00 or FF bytes after the last record are padding.
pub fn parse_records(mut data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !data.is_empty() && !data.iter().all(|b| *b == 0x00 || *b == 0xFF) {
        let offset = out.len();
        let (tlv, rest) = Tlv::parse(data);
        let tlv = tlv.map_err(|e| {
            format!(
                "record {} is not tag-length-value ({e:?}): {}",
                offset + 1,
                hex::encode_upper(&data[..data.len().min(8)])
            )
        })?;
        out.push((tlv.tag().into(), tlv.value().to_vec()));
        data = rest;
    }
    Ok(out)
}

/// Parses the reply to a single-record read and checks it is the record asked for.
pub fn parse_one(data: &[u8], expected_tag: u8) -> Result<Vec<u8>, String> {
    let records = parse_records(data)?;
    match records.into_iter().next() {
        Some((tag, value)) if tag == expected_tag => Ok(value),
        Some((tag, _)) => Err(format!(
            "the card returned record {tag:02X} where {expected_tag:02X} was asked for"
        )),
        None => Err("the card returned an empty record".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_whole_ef05_from_a_real_trace() {
        // card-spec.md: EF05 of a 2.0 card, TRACE-C.
        let data = hex::decode(concat!(
            "0110511300D156000005A21472423DB8F248",
            "020133",
            "0304322E3000",
            "040C9156000002511300511300DB",
            "050420180403",
            "060420280403",
            "0709413231343732343234"
        ))
        .unwrap();
        let records = parse_records(&data).unwrap();
        assert_eq!(records.len(), 7);
        assert_eq!(records[0].0, 0x01);
        assert_eq!(records[6].1, b"A21472424");
    }

    #[test]
    fn trailing_padding_is_ignored_but_truncation_is_an_error() {
        let records = parse_records(&hex::decode("0201330000FF").unwrap()).unwrap();
        assert_eq!(records, vec![(0x02, vec![0x33])]);
        let err = parse_records(&hex::decode("020133 0705414243".replace(' ', "")).unwrap());
        assert!(err.unwrap_err().contains("record 2"));
    }

    #[test]
    fn single_record_must_carry_the_expected_tag() {
        assert_eq!(
            parse_one(&hex::decode("020133").unwrap(), 0x02).unwrap(),
            vec![0x33]
        );
        assert!(parse_one(&hex::decode("020133").unwrap(), 0x03).is_err());
        assert!(parse_one(&[], 0x03).is_err());
    }

    #[test]
    fn whole_file_knows_what_is_absent() {
        let mut r = Records::default();
        r.insert(0x09, vec![1]);
        assert!(r.knows(0x09) && !r.knows(0x4E));
        r.mark_missing(0x4E);
        assert!(r.knows(0x4E));
        let mut whole = Records::default();
        whole.mark_complete();
        assert!(whole.knows(0x4E) && whole.get(0x4E).is_none());
    }
}
