//! Command APDUs and their ISO 7816-4 encoding (cases 1 to 4, short and extended).

use std::fmt;

/// Which part of an exchange may carry personal data and must not appear in traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redaction {
    /// Nothing personal: trace command and response in full.
    #[default]
    None,
    /// The command's data field is secret (a PIN, a cryptogram).
    CommandData,
    /// The response data is personal (holder file contents).
    ResponseData,
}

/// A command APDU. `le` is the number of response bytes expected: `None` for cases 1 and 3,
/// `Some(0)` to ask for "up to 256" (short) in cases 2 and 4.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    pub le: Option<u16>,
    pub redaction: Redaction,
}

pub const INS_SELECT: u8 = 0xA4;
pub const INS_READ_RECORD: u8 = 0xB2;
pub const INS_GET_RESPONSE: u8 = 0xC0;
#[cfg(test)]
const INS_VERIFY: u8 = 0x20;

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Command {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
            redaction: Redaction::None,
        }
    }

    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Command {
        self.data = data.into();
        self
    }

    pub fn with_le(mut self, le: u16) -> Command {
        self.le = Some(le);
        self
    }

    pub fn redacted(mut self, redaction: Redaction) -> Command {
        self.redaction = redaction;
        self
    }

    /// SELECT a DF by its name (P1=04), asking for the FCI.
    pub fn select_by_name(df_name: &[u8]) -> Command {
        Command::new(0x00, INS_SELECT, 0x04, 0x00)
            .with_data(df_name)
            .with_le(0)
    }

    /// SELECT an EF under the current DF by its file identifier (P1=02).
    pub fn select_ef(fid: u16) -> Command {
        Command::new(0x00, INS_SELECT, 0x02, 0x00).with_data(fid.to_be_bytes())
    }

    /// READ RECORD with P2 built from an SFI (0 = current EF) and the 3-bit reference mode.
    pub fn read_record(p1: u8, sfi: u8, mode: u8, le: u16) -> Command {
        Command::new(0x00, INS_READ_RECORD, p1, (sfi << 3) | (mode & 0x07)).with_le(le)
    }

    pub fn get_response(le: u8) -> Command {
        Command::new(0x00, INS_GET_RESPONSE, 0x00, 0x00).with_le(u16::from(le))
    }

    /// Extended length is used when the data or Le does not fit a short APDU.
    fn is_extended(&self) -> bool {
        self.data.len() > 255 || self.le.is_some_and(|le| le > 256)
    }

    /// Encodes the command per ISO 7816-4 §5.1 (cases 1, 2S/2E, 3S/3E, 4S/4E).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        let extended = self.is_extended();
        if !self.data.is_empty() {
            if extended {
                out.push(0x00);
                out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
            } else {
                out.push(self.data.len() as u8);
            }
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            if extended {
                if self.data.is_empty() {
                    out.push(0x00);
                }
                // 65536 is encoded as 0000.
                out.extend_from_slice(&le.to_be_bytes());
            } else {
                // 256 is encoded as 00 in a short Le.
                out.push(le as u8);
            }
        }
        out
    }

    /// The bytes as they may appear in a trace: hex, with secret data replaced.
    pub fn trace_hex(&self) -> String {
        if self.redaction == Redaction::CommandData && !self.data.is_empty() {
            let mut head = Command {
                data: Vec::new(),
                ..self.clone()
            }
            .to_bytes();
            head.truncate(4);
            format!(
                "{} <{} secret bytes>",
                hex::encode_upper(head),
                self.data.len()
            )
        } else {
            hex::encode_upper(self.to_bytes())
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.trace_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(c: &Command) -> String {
        hex::encode_upper(c.to_bytes())
    }

    #[test]
    fn case_1_is_header_only() {
        assert_eq!(hex_of(&Command::new(0x00, 0x0E, 0x00, 0x00)), "000E0000");
    }

    #[test]
    fn case_2_short_and_le_256() {
        assert_eq!(
            hex_of(&Command::read_record(0x09, 0, 0, 0x20)),
            "00B2090020"
        );
        assert_eq!(hex_of(&Command::get_response(0x1E)), "00C000001E");
        assert_eq!(
            hex_of(&Command::new(0, 0xB0, 0, 0).with_le(256)),
            "00B0000000"
        );
    }

    #[test]
    fn case_3_select_ef() {
        assert_eq!(hex_of(&Command::select_ef(0xEF05)), "00A4020002EF05");
    }

    #[test]
    fn case_4_select_by_name() {
        let name = hex::decode("7378312E73682EC9E7BBE1B1A3D5CF").unwrap();
        assert_eq!(
            hex_of(&Command::select_by_name(&name)),
            "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00"
        );
    }

    #[test]
    fn read_record_builds_p2_from_sfi_and_mode() {
        // EF05 by SFI, P1 to last: P2 = 0x2D; EF06 record 1 by SFI: 0x34.
        assert_eq!(Command::read_record(1, 5, 5, 0x40).p2, 0x2D);
        assert_eq!(Command::read_record(1, 6, 4, 0x14).p2, 0x34);
    }

    #[test]
    fn extended_encodings() {
        let c = Command::new(0, 0xB0, 0, 0).with_le(1000);
        assert_eq!(hex_of(&c), "00B00000".to_owned() + "0003E8");
        let c = Command::new(0, 0xD6, 0, 0).with_data(vec![0xAA; 300]);
        let bytes = c.to_bytes();
        assert_eq!(&bytes[4..7], &[0x00, 0x01, 0x2C]);
        assert_eq!(bytes.len(), 7 + 300);
        let c = Command::new(0, 0xD6, 0, 0)
            .with_data(vec![0xAA; 300])
            .with_le(2);
        let bytes = c.to_bytes();
        assert_eq!(&bytes[bytes.len() - 2..], &[0x00, 0x02]);
    }

    #[test]
    fn pin_data_is_never_traced() {
        let c = Command::new(0, INS_VERIFY, 0, 0)
            .with_data(vec![0x12, 0x34, 0x56])
            .redacted(Redaction::CommandData);
        let trace = c.trace_hex();
        assert!(!trace.contains("123456"), "{trace}");
        assert!(trace.contains("3 secret bytes"));
    }
}
