//! The virtual PSAM (安全存取模块): the secure module in a reader's second slot that holds the
//! master keys and computes cryptograms for medcard, which never holds a key itself.
//!
//! [`PsamImage`]s are loaded from `fixtures/psam/*.toml` (format in `fixtures/psam/README.md`;
//! every key there is a TEST key). [`VirtualPsam`] answers, CLA `00`/`80` (others `6E00`,
//! unknown INS `6D00`, malformed APDUs `6700`):
//!
//! - `00 B0 96 00 06` READ BINARY of file 0016 by SFI: the 6-byte BCD terminal number
//!   (终端机编号) + `9000`. Le `00`, `06` or none; any other Le → `6C06`. This is how medcard
//!   recognises a PSAM.
//! - `80 1A P1 P2 08 <F>` 通用DES计算初始化: P1 = key usage (`01` RKSSSE, `02` internal
//!   authentication), P2 = algorithm id (`01` DES, `03` SM4), F = the card's diversification
//!   factor. Loads Kd = diversify(master, F) as the session key → `9000`. No key of that usage →
//!   `6A88`; a key of that usage but not for that algorithm → `6A81`; Lc ≠ 8 → `6700`. Any
//!   `80 1A` first clears the session key, so a refused one leaves none.
//! - `80 FA 00 00 08 <D> [Le]`: the cryptogram of D under the session key (8 bytes) + `9000`.
//!   Lc ≠ 8 → `6700`; P1/P2 ≠ 00 → `6A86`; no session key → `6985`; Le other than `00`/`08`/none
//!   → `6C08`.
//!
//! Power-on and reset clear the session key. The crypto is [`super::crypto`]'s, the same the
//! virtual card uses.

use super::SimError;
use super::command::{Apdu, status_only, with_status, wrong_le};
use super::crypto::{self, Algorithm, SecretKey};
use super::image::{Located, Problem, is_number, pack_bcd, parse_atr};
use crate::apdu::StatusWord;
use serde::Deserialize;
use std::path::Path;

/// SFI of the terminal-number file 0016, as READ BINARY's P1 (`0x80 | 0x16`).
const P1_SFI_0016: u8 = 0x96;
/// Terminal numbers are 12 digits, stored as 6 BCD bytes.
pub(super) const TERMINAL_DIGITS: usize = 12;
const CRYPTOGRAM_LEN: usize = 8;

/// What a PSAM key is for (P1 of `80 1A`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUsage {
    /// `01`: RKSSSE, the external-authentication key of SSSE EF06 on 3.0 cards.
    Rkssse,
    /// `02`: internal authentication (card genuineness).
    Internal,
}

impl KeyUsage {
    /// P1 of `80 1A`.
    pub const fn p1(self) -> u8 {
        match self {
            KeyUsage::Rkssse => 0x01,
            KeyUsage::Internal => 0x02,
        }
    }

    pub const fn from_p1(p1: u8) -> Option<KeyUsage> {
        match p1 {
            0x01 => Some(KeyUsage::Rkssse),
            0x02 => Some(KeyUsage::Internal),
            _ => None,
        }
    }
}

/// One master key in the PSAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsamKey {
    pub usage: KeyUsage,
    pub algorithm: Algorithm,
    /// TEST master key; cards hold it diversified with their own factor.
    pub master: SecretKey,
}

/// What a virtual PSAM holds: ATR, terminal number and master keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsamImage {
    pub description: String,
    pub atr: Vec<u8>,
    /// 终端机编号: 12 digits (file 0016 holds them as 6 BCD bytes).
    pub terminal_no: String,
    /// At most one key per (usage, algorithm).
    pub keys: Vec<PsamKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PsamFile {
    description: String,
    atr: String,
    terminal_no: String,
    #[serde(default)]
    keys: Vec<KeyFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    usage: KeyUsage,
    algorithm: String,
    master: String,
}

impl PsamImage {
    /// Loads a PSAM file.
    pub fn load(path: &Path) -> Result<PsamImage, SimError> {
        super::load_file(path, PsamImage::from_toml_str)
    }

    /// Parses a PSAM file's text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<PsamImage, SimError> {
        let file: PsamFile = toml::from_str(text).map_err(|source| SimError::Syntax {
            origin: origin.to_owned(),
            source,
        })?;
        let invalid = |located: Located| located.in_file(origin);
        let atr = parse_atr(&file.atr).map_err(|p| invalid(Located::at("atr", p)))?;
        if !is_number(&file.terminal_no, TERMINAL_DIGITS) {
            let problem = Problem::TerminalNo(file.terminal_no);
            return Err(invalid(Located::at("terminal_no", problem)));
        }
        let mut keys: Vec<PsamKey> = Vec::with_capacity(file.keys.len());
        for (i, key) in file.keys.into_iter().enumerate() {
            let key = key
                .build(&keys)
                .map_err(|p| invalid(Located::at(&format!("[[keys]] {}", i + 1), p)))?;
            keys.push(key);
        }
        Ok(PsamImage {
            description: file.description,
            atr,
            terminal_no: file.terminal_no,
            keys,
        })
    }

    /// The terminal number as file 0016 holds it: 6 BCD bytes.
    pub fn terminal_bcd(&self) -> Vec<u8> {
        pack_bcd(self.terminal_no.as_bytes())
    }
}

impl KeyFile {
    /// The key, unless the file has one of that usage and algorithm already (`earlier`).
    fn build(self, earlier: &[PsamKey]) -> Result<PsamKey, Problem> {
        let algorithm = Algorithm::from_name(&self.algorithm)
            .ok_or_else(|| Problem::PsamAlgorithm(self.algorithm.clone()))?;
        let master = SecretKey::from_hex(&self.master)?;
        if earlier
            .iter()
            .any(|k| k.usage == self.usage && k.algorithm == algorithm)
        {
            return Err(Problem::SecondKey {
                usage: self.usage,
                algorithm: algorithm.name(),
            });
        }
        Ok(PsamKey {
            usage: self.usage,
            algorithm,
            master,
        })
    }
}

/// A virtual PSAM in a reader slot.
#[derive(Debug)]
pub struct VirtualPsam {
    image: PsamImage,
    /// The key `80 1A` loaded: (algorithm, Kd). Power-on clears it.
    session: Option<(Algorithm, SecretKey)>,
    apdus_seen: usize,
}

type Reply = Result<Vec<u8>, StatusWord>;

impl VirtualPsam {
    pub fn new(image: PsamImage) -> VirtualPsam {
        VirtualPsam {
            image,
            session: None,
            apdus_seen: 0,
        }
    }

    pub fn image(&self) -> &PsamImage {
        &self.image
    }

    pub fn atr(&self) -> &[u8] {
        &self.image.atr
    }

    /// Power-on or reset: the session key is gone.
    pub fn power_on(&mut self) {
        self.session = None;
    }

    /// The PSAM goes (back) into a reader: powered on, APDU count from zero.
    pub fn insert(&mut self) {
        self.power_on();
        self.apdus_seen = 0;
    }

    /// Command APDUs received since insertion.
    pub fn apdus_seen(&self) -> usize {
        self.apdus_seen
    }

    /// Whether an `80 1A` has loaded a session key since power-on.
    pub fn has_session_key(&self) -> bool {
        self.session.is_some()
    }

    /// Answers one command APDU with `data ‖ SW1 SW2`. Always `Some`: a PSAM does not vanish
    /// (the `Option` matches [`super::VirtualCard::process`]).
    pub fn process(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        self.apdus_seen += 1;
        Some(self.respond(apdu).unwrap_or_else(status_only))
    }

    fn respond(&mut self, bytes: &[u8]) -> Reply {
        let apdu = Apdu::parse(bytes).ok_or(StatusWord::WRONG_LENGTH)?;
        match (apdu.cla, apdu.ins) {
            (0x00, 0xB0) => self.read_binary(&apdu),
            (0x80, 0x1A) => self.init_computation(&apdu),
            (0x80, 0xFA) => self.compute(&apdu),
            (0x00 | 0x80, _) => Err(StatusWord::INS_NOT_SUPPORTED),
            _ => Err(StatusWord::CLA_NOT_SUPPORTED),
        }
    }

    fn read_binary(&self, apdu: &Apdu<'_>) -> Reply {
        if !apdu.data.is_empty() {
            return Err(StatusWord::WRONG_LENGTH);
        }
        match apdu.p1 {
            P1_SFI_0016 => {}
            p1 if p1 & 0x80 != 0 => return Err(StatusWord::FILE_NOT_FOUND),
            _ => return Err(StatusWord::NO_CURRENT_EF),
        }
        let file = self.image.terminal_bcd();
        let data = file
            .get(usize::from(apdu.p2)..)
            .ok_or(StatusWord::WRONG_OFFSET)?;
        match apdu.le {
            None | Some(256) => {}
            Some(le) if le == data.len() => {}
            Some(_) => return Err(wrong_le(data.len())),
        }
        Ok(with_status(data.to_vec(), StatusWord::OK))
    }

    fn init_computation(&mut self, apdu: &Apdu<'_>) -> Reply {
        self.session = None;
        let factor: &[u8; 8] = apdu.data.try_into().map_err(|_| StatusWord::WRONG_LENGTH)?;
        let usage = KeyUsage::from_p1(apdu.p1).ok_or(StatusWord::KEY_NOT_FOUND)?;
        let mut of_usage = self
            .image
            .keys
            .iter()
            .filter(|k| k.usage == usage)
            .peekable();
        if of_usage.peek().is_none() {
            return Err(StatusWord::KEY_NOT_FOUND);
        }
        let algorithm = Algorithm::from_id(apdu.p2).ok_or(StatusWord::FUNCTION_NOT_SUPPORTED)?;
        let key = of_usage
            .find(|k| k.algorithm == algorithm)
            .ok_or(StatusWord::FUNCTION_NOT_SUPPORTED)?;
        self.session = Some((algorithm, crypto::diversify(algorithm, &key.master, factor)));
        Ok(status_only(StatusWord::OK))
    }

    fn compute(&self, apdu: &Apdu<'_>) -> Reply {
        let data: &[u8; 8] = apdu.data.try_into().map_err(|_| StatusWord::WRONG_LENGTH)?;
        if apdu.p1 != 0x00 || apdu.p2 != 0x00 {
            return Err(StatusWord::WRONG_P1P2);
        }
        let (algorithm, key) = self
            .session
            .as_ref()
            .ok_or(StatusWord::CONDITIONS_NOT_SATISFIED)?;
        match apdu.le {
            None | Some(256) | Some(CRYPTOGRAM_LEN) => {}
            Some(_) => return Err(wrong_le(CRYPTOGRAM_LEN)),
        }
        let cryptogram = crypto::cryptogram(*algorithm, key, data);
        Ok(with_status(cryptogram.to_vec(), StatusWord::OK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SM4_RKSSSE: &str = "11223344556677888877665544332211";
    const DES_INTERNAL: &str = "C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0";

    fn image(keys: &str) -> PsamImage {
        let text = format!(
            "description = \"t\"\natr = \"3B 6C 00 00 50 53 41 4D\"\nterminal_no = \"410100813475\"\n{keys}"
        );
        PsamImage::from_toml_str(&text, "t.toml").unwrap()
    }

    fn psam(keys: &str) -> VirtualPsam {
        VirtualPsam::new(image(keys))
    }

    fn both() -> VirtualPsam {
        psam(&format!(
            "[[keys]]\nusage = \"rkssse\"\nalgorithm = \"sm4\"\nmaster = \"{SM4_RKSSSE}\"\n\
             [[keys]]\nusage = \"internal\"\nalgorithm = \"des\"\nmaster = \"{DES_INTERNAL}\"\n"
        ))
    }

    fn send(p: &mut VirtualPsam, apdu: &str) -> String {
        hex::encode_upper(p.process(&hex::decode(apdu).unwrap()).unwrap())
    }

    /// Sends each command in turn; each must get the answer beside it.
    fn exchange(p: &mut VirtualPsam, script: &[(&str, &str)]) {
        for (command, answer) in script {
            assert_eq!(send(p, command), *answer, "{command}");
        }
    }

    #[test]
    fn reads_the_terminal_number() {
        let mut p = both();
        exchange(
            &mut p,
            &[
                ("00B0960006", "4101008134759000"),
                ("00B0960000", "4101008134759000"),
                ("00B09600", "4101008134759000"),
                ("00B0960004", "6C06"),
                ("00B0960402", "34759000"), // offset 4
                ("00B0960700", "6B00"),
                ("00B0950006", "6A82"),
                ("00B0000006", "6986"),
                ("80B0960006", "6D00"),
            ],
        );
    }

    #[test]
    fn computes_the_cryptogram_of_the_diversified_key() {
        let mut p = both();
        // "440100sx": gen3's factor; the vector of crypto.rs's SM4 test.
        assert_eq!(send(&mut p, "801A0103083434303130307378"), "9000");
        assert!(p.has_session_key());
        assert_eq!(
            send(&mut p, "80FA0000080102030405060708"),
            "91D11EA3853F193C9000"
        );
        assert_eq!(
            send(&mut p, "80FA000008010203040506070808"),
            "91D11EA3853F193C9000"
        );
        assert_eq!(
            send(&mut p, "80FA000008010203040506070800"),
            "91D11EA3853F193C9000"
        );
        assert_eq!(send(&mut p, "80FA000008010203040506070804"), "6C08");
        // The same through the shared crypto module, for the DES internal key.
        assert_eq!(send(&mut p, "801A0201083434303130307378"), "9000");
        let f = *b"440100sx";
        let kd = crypto::diversify(
            Algorithm::Des,
            &SecretKey::from_hex(DES_INTERNAL).unwrap(),
            &f,
        );
        let expected = crypto::cryptogram(Algorithm::Des, &kd, &[9; 8]);
        assert_eq!(
            send(&mut p, "80FA0000080909090909090909"),
            format!("{}9000", hex::encode_upper(expected))
        );
    }

    #[test]
    fn refuses_missing_keys_and_algorithms() {
        let mut p = both();
        exchange(
            &mut p,
            &[
                ("801A0101083434303130307378", "6A81"), // rkssse: SM4 only
                ("801A0102083434303130307378", "6A81"), // SSF33
                ("801A0203083434303130307378", "6A81"), // internal: DES only
                ("801A0501083434303130307378", "6A88"), // unknown usage
                ("801A01030734343031303073", "6700"),
            ],
        );
        let mut internal_only = psam(
            "[[keys]]\nusage = \"internal\"\nalgorithm = \"sm4\"\nmaster = \"00112233445566778899AABBCCDDEEFF\"\n",
        );
        assert_eq!(
            send(&mut internal_only, "801A0103083434303130307378"),
            "6A88"
        );
    }

    #[test]
    fn session_key_rules() {
        let mut p = both();
        exchange(
            &mut p,
            &[
                ("80FA0000080102030405060708", "6985"),
                ("801A0103083434303130307378", "9000"),
                ("80FA00000701020304050607", "6700"),
                ("80FA0100080102030405060708", "6A86"),
            ],
        );
        // A refused 801A leaves no key behind.
        exchange(
            &mut p,
            &[
                ("801A0101083434303130307378", "6A81"),
                ("80FA0000080102030405060708", "6985"),
                ("801A0103083434303130307378", "9000"),
            ],
        );
        p.power_on();
        assert_eq!(send(&mut p, "80FA0000080102030405060708"), "6985");
        assert_eq!(p.apdus_seen(), 8);
    }

    #[test]
    fn other_commands() {
        let mut p = both();
        exchange(
            &mut p,
            &[
                ("00A4040000", "6D00"),
                ("8084000008", "6D00"),
                ("B026000104", "6E00"),
                ("00B0", "6700"),
                ("801A010309343430", "6700"),
            ],
        );
    }

    #[test]
    fn rejects_bad_psam_files() {
        let head = "description = \"t\"\natr = \"3B6C0000\"\n";
        let bad = [
            ("terminal_no = \"41010081347\"\n", "terminal_no"),
            ("terminal_no = \"41010081347a\"\n", "terminal_no"),
            (
                "terminal_no = \"410100813475\"\n[[keys]]\nusage = \"internal\"\nalgorithm = \"ssf33\"\nmaster = \"00112233445566778899AABBCCDDEEFF\"\n",
                "SSF33",
            ),
            (
                "terminal_no = \"410100813475\"\n[[keys]]\nusage = \"internal\"\nalgorithm = \"sm4\"\nmaster = \"0011\"\n",
                "16 bytes",
            ),
            (
                "terminal_no = \"410100813475\"\n[[keys]]\nusage = \"internal\"\nalgorithm = \"sm4\"\nmaster = \"00112233445566778899AABBCCDDEEFF\"\n[[keys]]\nusage = \"internal\"\nalgorithm = \"SM4\"\nmaster = \"00112233445566778899AABBCCDDEEFF\"\n",
                "second",
            ),
            (
                "terminal_no = \"410100813475\"\ncolour = 1\n",
                "unknown field",
            ),
            (
                "terminal_no = \"410100813475\"\n[[keys]]\nusage = \"pin\"\nalgorithm = \"sm4\"\nmaster = \"00112233445566778899AABBCCDDEEFF\"\n",
                "unknown variant",
            ),
        ];
        for (body, problem) in bad {
            let e = PsamImage::from_toml_str(&format!("{head}{body}"), "p.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(problem) && e.contains("p.toml"), "{body}: {e}");
        }
    }

    #[test]
    fn keys_do_not_show_in_debug_output() {
        let text = format!("{:?}", both());
        assert!(
            !text.contains(SM4_RKSSSE) && !text.contains("112233"),
            "{text}"
        );
    }

    // ---- the fixture PSAMs ----

    fn fixture(name: &str) -> VirtualPsam {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/psam/{name}.toml"));
        VirtualPsam::new(PsamImage::load(&path).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn every_fixture_psam_loads_and_says_test_keys() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/psam");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.lines().next().unwrap_or("").contains("TEST KEYS ONLY"),
                "{}: the first line must say TEST KEYS ONLY",
                path.display()
            );
            let image = PsamImage::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                image.atr.windows(4).any(|w| w == b"PSAM"),
                "{}",
                path.display()
            );
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(
            names,
            [
                "no-rkssse",
                "test-des-only",
                "test-sm4",
                "wrong-internal",
                "wrong-key"
            ]
        );
    }

    #[test]
    fn fixture_psams_have_the_keys_their_names_say() {
        let sm4 = "4434303130307378"; // any factor will do for the presence checks
        let expect = [
            ("test-sm4", "410100813475", ["9000", "9000", "9000", "9000"]),
            (
                "test-des-only",
                "330700200101",
                ["9000", "6A81", "9000", "6A81"],
            ),
            (
                "wrong-key",
                "440100300202",
                ["9000", "9000", "9000", "9000"],
            ),
            (
                "wrong-internal",
                "310100500404",
                ["9000", "9000", "9000", "9000"],
            ),
            (
                "no-rkssse",
                "500000400303",
                ["6A88", "6A88", "9000", "9000"],
            ),
        ];
        for (name, terminal, sws) in expect {
            let mut p = fixture(name);
            let got = ["0101", "0103", "0201", "0203"]
                .map(|p1p2| send(&mut p, &format!("801A{p1p2}08{sm4}")));
            assert_eq!(got, sws, "{name}");
            assert_eq!(
                send(&mut p, "00B0960006"),
                format!("{terminal}9000"),
                "{name}"
            );
        }
    }
}
