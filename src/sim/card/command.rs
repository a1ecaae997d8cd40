//! Command APDUs as the simulated chips receive them (ISO 7816-4 cases 1–4, short form), and
//! the status words they answer with.

use crate::apdu::StatusWord;

/// A parsed short command APDU.
pub(crate) struct Apdu<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: &'a [u8],
    /// Expected length; a short `00` is 256.
    pub le: Option<usize>,
}

/// The longest answer a short Le asks for.
pub(crate) const MAX_SHORT_LE: usize = 256;

impl<'a> Apdu<'a> {
    /// `None` for anything else (malformed, or extended length, which the simulated chips
    /// do not support): they answer `6700`.
    pub fn parse(bytes: &'a [u8]) -> Option<Apdu<'a>> {
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

/// A response: `data ‖ SW1 SW2`.
pub(crate) fn with_status(mut data: Vec<u8>, sw: StatusWord) -> Vec<u8> {
    data.extend_from_slice(&[sw.sw1(), sw.sw2()]);
    data
}

/// A response of the status word alone.
pub(crate) fn status_only(sw: StatusWord) -> Vec<u8> {
    with_status(Vec::new(), sw)
}

/// A length as SW2 of `61xx` / `6Cxx`: 256 (or more) is `00`.
fn length_byte(len: usize) -> u8 {
    if len >= MAX_SHORT_LE { 0 } else { len as u8 }
}

/// `61xx`: `len` more bytes wait for GET RESPONSE.
pub(crate) fn more_data(len: usize) -> StatusWord {
    StatusWord::new(0x61, length_byte(len))
}

/// `6Cxx`: wrong Le; the answer has `len` bytes.
pub(crate) fn wrong_le(len: usize) -> StatusWord {
    StatusWord::new(0x6C, length_byte(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_cases_and_refuses_the_rest() {
        let case1 = Apdu::parse(&[0, 0xA4, 4, 0]).unwrap();
        assert!(case1.data.is_empty() && case1.le.is_none());
        assert_eq!(Apdu::parse(&[0, 0xB2, 1, 0x2D, 0]).unwrap().le, Some(256));
        let case3 = Apdu::parse(&[0, 0xA4, 2, 0, 2, 0xEF, 0x05]).unwrap();
        assert_eq!((case3.data, case3.le), (&[0xEF, 0x05][..], None));
        let case4 = Apdu::parse(&[0, 0xA4, 4, 0, 1, 0xAA, 0x10]).unwrap();
        assert_eq!((case4.data, case4.le), (&[0xAA][..], Some(16)));
        assert!(Apdu::parse(&[0, 0xA4, 4]).is_none());
        assert!(
            Apdu::parse(&[0, 0xA4, 4, 0, 3, 1]).is_none(),
            "Lc longer than the data"
        );
        assert!(
            Apdu::parse(&[0, 0xB0, 0, 0, 0, 1, 0]).is_none(),
            "extended length"
        );
    }
}
