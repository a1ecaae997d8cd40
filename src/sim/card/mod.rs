//! The card side of the wire: a virtual social security card and a virtual PSAM, and the
//! readers that hold them.
//!
//! - [`image`]: card images, loaded from `fixtures/cards/*.toml` (what is on the card).
//! - [`virtual_card`]: [`VirtualCard`], an ISO 7816-4 card answering SELECT, READ RECORD,
//!   GET RESPONSE, VERIFY, GET CHALLENGE, EXTERNAL/INTERNAL AUTHENTICATE and GET BALANCE
//!   (DF04), with behaviour switches for T=0 quirks, slowness and vanishing.
//! - [`psam`]: [`VirtualPsam`] and its images (`fixtures/psam/*.toml`, TEST keys): the secure
//!   module that computes the cryptograms medcard needs for 3.0 cards.
//! - [`crypto`]: key diversification and cryptograms (3DES, SM4), shared by card and PSAM.
//! - [`chip`]: [`Chip`], a card or a PSAM, whichever sits in a slot.
//! - [`vpcd`]: the card side of vsmartcard's vpcd protocol, so that the real pcscd sees a
//!   reader holding the chip.
//! - [`virtual_reader`]: in-process readers holding chips, a [`ReaderBackend`] with no pcscd
//!   involved (fast tests, `medcard read --card-file`, the demo and benchmarks).
//!
//! [`ReaderBackend`]: crate::reader::ReaderBackend

pub mod chip;
mod command;
pub mod crypto;
pub mod image;
pub mod psam;
pub mod virtual_card;
pub mod virtual_reader;
pub mod vpcd;

pub use chip::Chip;
pub use image::{
    AnnualAmount, Behaviour, CardImage, Df04, Ef06Access, Pin, Problem, Record, Ssse, Transaction,
};
pub use psam::{PsamImage, VirtualPsam};
pub use virtual_card::VirtualCard;
pub use virtual_reader::{SharedVirtualReaders, VirtualReaders};

use std::path::Path;

/// `(name, text)` of fixture files `fixtures/DIR/NAME.toml`, compiled in (`include_str!`
/// needs each path spelled out, hence a macro).
macro_rules! built_in_fixtures {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../../../fixtures/", $dir, "/", $name, ".toml")))),+]
    };
}

/// The fixture cards, compiled in so the demo and benchmarks run without the source tree.
pub const BUILT_IN_CARDS: &[(&str, &str)] = built_in_fixtures!("cards":
    "corrupt", "expired", "gen1", "gen3", "gen3-des", "gen3-locked", "long-name", "no-4e",
    "no-ssse", "pin-2-left", "pin-locked", "quirky", "rare-char", "resident", "vanishing",
    "xiaowang",
);

/// The fixture PSAMs (TEST keys only), compiled in like [`BUILT_IN_CARDS`].
pub const BUILT_IN_PSAMS: &[(&str, &str)] = built_in_fixtures!("psam":
    "no-rkssse", "test-des-only", "test-sm4", "wrong-internal", "wrong-key",
);

/// A built-in card image by its fixture name (`xiaowang`, `gen3`, …).
pub fn built_in_card(name: &str) -> Result<CardImage, SimError> {
    let text = built_in("card", BUILT_IN_CARDS, name)?;
    CardImage::from_toml_str(text, &format!("built-in {name}"))
}

/// A built-in PSAM image by its fixture name (`test-sm4`, `wrong-key`, …).
pub fn built_in_psam(name: &str) -> Result<PsamImage, SimError> {
    let text = built_in("PSAM", BUILT_IN_PSAMS, name)?;
    PsamImage::from_toml_str(text, &format!("built-in PSAM {name}"))
}

fn built_in(
    kind: &'static str,
    list: &'static [(&'static str, &'static str)],
    name: &str,
) -> Result<&'static str, SimError> {
    list.iter()
        .find(|(known, _)| *known == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| SimError::NoBuiltIn {
            kind,
            name: name.to_owned(),
            known: list.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        })
}

/// Reads a card or PSAM file and parses its text with `parse`, the path naming it in errors.
fn load_file<T>(
    path: &Path,
    parse: impl FnOnce(&str, &str) -> Result<T, SimError>,
) -> Result<T, SimError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
        path: origin.clone(),
        source,
    })?;
    parse(&text, &origin)
}

/// Errors of the simulator: card and PSAM files that cannot be used, and the vpcd connection.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read card file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("card file {origin} is not a valid card or PSAM description: {source}")]
    Syntax {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error(
        "card file {origin} is not a valid card or PSAM description: this is a PSAM file (it \
         has terminal_no or [[keys]]), not a card"
    )]
    PsamNotCard { origin: String },
    #[error(
        "card file {name} is not a valid card or PSAM description: no built-in {kind} of that \
         name (built-in: {known})"
    )]
    NoBuiltIn {
        kind: &'static str,
        name: String,
        known: String,
    },
    #[error("card file {origin}, {place}: {problem}")]
    Invalid {
        origin: String,
        place: String,
        #[source]
        problem: Problem,
    },
    #[error("vpcd address {addr:?}: {problem} (expected PORT or HOST:PORT)")]
    Address {
        addr: String,
        #[source]
        problem: vpcd::AddressProblem,
    },
    #[error("cannot connect to vpcd at {addr}: {source}")]
    Vpcd {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_loads_and_every_fixture_is_built_in() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (dir, list) in [("cards", BUILT_IN_CARDS), ("psam", BUILT_IN_PSAMS)] {
            let mut files: Vec<String> = std::fs::read_dir(root.join("fixtures").join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let names: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
            assert_eq!(files, names, "fixtures/{dir} vs the built-in list");
        }
        for (name, _) in BUILT_IN_CARDS {
            built_in_card(name).unwrap();
        }
        for (name, _) in BUILT_IN_PSAMS {
            built_in_psam(name).unwrap();
        }
        let e = built_in_psam("nope").unwrap_err().to_string();
        assert!(e.contains("test-sm4"), "{e}");
        assert!(built_in_card("test-sm4").is_err());
    }

    /// The reader's protocol, done by hand: factor from the card id, PSAM `80 1A` + `80 FA`,
    /// then the card's EXTERNAL / INTERNAL AUTHENTICATE. Returns the SWs (or data) seen.
    fn authenticate(card: &str, psam: &str) -> (String, String, String) {
        let mut card = VirtualCard::new(built_in_card(card).unwrap());
        let mut psam = VirtualPsam::new(built_in_psam(psam).unwrap());
        let send = |chip: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>, apdu: String| {
            hex::encode_upper(chip(&hex::decode(apdu).unwrap()).unwrap())
        };
        let fci = send(
            &mut |a| card.process(a),
            "00A404000F7378312E73682EC9E7BBE1B1A3D5CF".into(),
        );
        let algorithm = &fci[fci.len() - 6..fci.len() - 4];
        let card_id = card.image().ssse.as_ref().unwrap().card_id().unwrap();
        let factor = hex::encode_upper(crypto::diversification_factor(&card_id).unwrap());
        // Internal authentication: the card's answer must equal the PSAM's.
        let r = "0011223344556677";
        let by_card = send(
            &mut |a| card.process(a),
            format!("0088000010{}{r}", "00".repeat(8)),
        );
        let init = send(
            &mut |a| psam.process(a),
            format!("801A02{algorithm}08{factor}"),
        );
        let internal = if init == "9000" {
            let by_psam = send(&mut |a| psam.process(a), format!("80FA000008{r}08"));
            if by_psam == by_card {
                "match"
            } else {
                "mismatch"
            }
            .to_owned()
        } else {
            init
        };
        // External authentication with RKSSSE.
        let challenge = send(&mut |a| card.process(a), "0084000008".into());
        let challenge = &challenge[..16];
        let init = send(
            &mut |a| psam.process(a),
            format!("801A01{algorithm}08{factor}"),
        );
        if init != "9000" {
            return (internal, init, String::new());
        }
        let cryptogram = send(&mut |a| psam.process(a), format!("80FA000008{challenge}08"));
        let external = send(
            &mut |a| card.process(a),
            format!("0082000A10{}{challenge}", &cryptogram[..16]),
        );
        let ef06 = send(&mut |a| card.process(a), "00B2013400".into());
        (internal, external, ef06[ef06.len() - 4..].to_owned())
    }

    #[test]
    fn fixture_psams_open_fixture_cards() {
        // (card, PSAM): internal authentication, external authentication, EF06 read.
        let expected = [
            ("gen3", "test-sm4", ["match", "9000", "9000"]),
            ("gen3-des", "test-sm4", ["match", "9000", "9000"]),
            ("gen3-des", "test-des-only", ["match", "9000", "9000"]),
            ("gen3", "test-des-only", ["6A81", "6A81", ""]),
            ("gen3", "no-rkssse", ["match", "6A88", ""]),
            ("gen3", "wrong-key", ["match", "63C2", "6982"]),
            ("gen3-des", "wrong-key", ["match", "63C2", "6982"]),
            ("gen3", "wrong-internal", ["mismatch", "9000", "9000"]),
            ("gen3-des", "wrong-internal", ["mismatch", "9000", "9000"]),
            ("gen3-locked", "test-sm4", ["match", "6983", "6982"]),
        ];
        for (card, psam, [internal, external, ef06]) in expected {
            assert_eq!(
                authenticate(card, psam),
                (internal.to_owned(), external.to_owned(), ef06.to_owned()),
                "{card} with {psam}"
            );
        }
    }
}
