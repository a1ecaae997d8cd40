//! [`Chip`]: whatever sits in a reader slot — a social security card or a PSAM — so that
//! vpcd ([`super::vpcd`]), its controls and the in-process readers
//! ([`super::virtual_reader`]) serve either.
//!
//! A file is a PSAM file when it has a top-level `terminal_no` or `[[keys]]`
//! (`fixtures/psam/*.toml`); anything else is a card file (`fixtures/cards/*.toml`).

use super::{CardImage, PsamImage, SimError, VirtualCard, VirtualPsam};
use std::path::Path;

/// A chip in a reader slot. (The card is boxed: it is much larger than a PSAM.)
#[derive(Debug)]
pub enum Chip {
    Card(Box<VirtualCard>),
    Psam(VirtualPsam),
}

impl Chip {
    /// Loads a card or PSAM file, telling them apart by content.
    pub fn load(path: &Path) -> Result<Chip, SimError> {
        super::load_file(path, Chip::from_toml_str)
    }

    /// Parses a card or PSAM file's text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Chip, SimError> {
        if is_psam_text(text) {
            PsamImage::from_toml_str(text, origin).map(Chip::from)
        } else {
            CardImage::from_toml_str(text, origin).map(Chip::from)
        }
    }

    pub fn atr(&self) -> &[u8] {
        match self {
            Chip::Card(card) => card.atr(),
            Chip::Psam(psam) => psam.atr(),
        }
    }

    /// Power-on or reset.
    pub fn power_on(&mut self) {
        match self {
            Chip::Card(card) => card.power_on(),
            Chip::Psam(psam) => psam.power_on(),
        }
    }

    /// Put (back) into a reader: powered on, APDU count from zero.
    pub fn insert(&mut self) {
        match self {
            Chip::Card(card) => card.insert(),
            Chip::Psam(psam) => psam.insert(),
        }
    }

    /// Answers one command APDU; `None` when the chip is gone (a vanishing card).
    pub fn process(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        match self {
            Chip::Card(card) => card.process(apdu),
            Chip::Psam(psam) => psam.process(apdu),
        }
    }

    /// Command APDUs received since insertion.
    pub fn apdus_seen(&self) -> usize {
        match self {
            Chip::Card(card) => card.apdus_seen(),
            Chip::Psam(psam) => psam.apdus_seen(),
        }
    }

    pub fn as_card(&self) -> Option<&VirtualCard> {
        match self {
            Chip::Card(card) => Some(card),
            Chip::Psam(_) => None,
        }
    }

    pub fn as_psam(&self) -> Option<&VirtualPsam> {
        match self {
            Chip::Psam(psam) => Some(psam),
            Chip::Card(_) => None,
        }
    }

    pub fn as_card_mut(&mut self) -> Option<&mut VirtualCard> {
        match self {
            Chip::Card(card) => Some(card),
            Chip::Psam(_) => None,
        }
    }

    pub fn as_psam_mut(&mut self) -> Option<&mut VirtualPsam> {
        match self {
            Chip::Psam(psam) => Some(psam),
            Chip::Card(_) => None,
        }
    }

    /// `"card"` or `"PSAM"`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Chip::Card(_) => "card",
            Chip::Psam(_) => "PSAM",
        }
    }
}

impl From<VirtualCard> for Chip {
    fn from(card: VirtualCard) -> Chip {
        Chip::Card(Box::new(card))
    }
}

impl From<VirtualPsam> for Chip {
    fn from(psam: VirtualPsam) -> Chip {
        Chip::Psam(psam)
    }
}

impl From<CardImage> for Chip {
    fn from(image: CardImage) -> Chip {
        Chip::from(VirtualCard::new(image))
    }
}

impl From<PsamImage> for Chip {
    fn from(image: PsamImage) -> Chip {
        Chip::Psam(VirtualPsam::new(image))
    }
}

/// Whether a file's text describes a PSAM: a top-level `terminal_no` or `keys`.
pub fn is_psam_text(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .is_ok_and(|table| table.contains_key("terminal_no") || table.contains_key("keys"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "description = \"c\"\natr = \"3B 6D 00 00\"\n";
    const PSAM: &str =
        "description = \"p\"\natr = \"3B 6C 00 00 50 53 41 4D\"\nterminal_no = \"410100813475\"\n";

    #[test]
    fn tells_cards_and_psams_apart() {
        let mut card = Chip::from_toml_str(CARD, "c").unwrap();
        let mut psam = Chip::from_toml_str(PSAM, "p").unwrap();
        assert_eq!((card.kind(), psam.kind()), ("card", "PSAM"));
        assert!(card.as_card().is_some() && card.as_psam().is_none());
        assert!(psam.as_psam().is_some() && psam.as_card_mut().is_none());
        assert_eq!(psam.atr()[4..], *b"PSAM");
        assert_eq!(
            psam.process(&hex::decode("00B0960006").unwrap()),
            Some(hex::decode("4101008134759000").unwrap())
        );
        assert_eq!(
            card.process(&hex::decode("00B0960006").unwrap()),
            Some(vec![0x6D, 0x00])
        );
        assert_eq!((card.apdus_seen(), psam.apdus_seen()), (1, 1));
        psam.insert();
        assert_eq!(psam.apdus_seen(), 0);
        assert!(is_psam_text("keys = []\n"));
        assert!(!is_psam_text("not toml ["));
    }

    #[test]
    fn a_psam_file_loaded_as_a_card_says_so() {
        let e = CardImage::from_toml_str(PSAM, "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PSAM"), "{e}");
    }

    #[test]
    fn loads_fixture_files_of_both_kinds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let card = Chip::load(&root.join("fixtures/cards/gen3.toml")).unwrap();
        let psam = Chip::load(&root.join("fixtures/psam/test-sm4.toml")).unwrap();
        assert!(matches!((card, psam), (Chip::Card(_), Chip::Psam(_))));
        assert!(matches!(
            Chip::load(&root.join("fixtures/psam/nonexistent.toml")),
            Err(SimError::Read { .. })
        ));
    }
}
