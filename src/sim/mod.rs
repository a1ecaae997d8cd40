//! The other side of the wire: a virtual social security card.
//!
//! - [`image`]: card images, loaded from `fixtures/cards/*.toml` (what is on the card).
//! - [`card`]: [`VirtualCard`], an ISO 7816-4 card answering SELECT, READ RECORD, GET RESPONSE,
//!   VERIFY and GET CHALLENGE, with behaviour switches for T=0 quirks, slowness and vanishing.
//! - [`vpcd`]: the card side of vsmartcard's vpcd protocol, so that the real pcscd sees a
//!   reader holding the card.
//!
//! In-process use goes through [`crate::reader::virtual_reader`] instead of vpcd.

pub mod card;
pub mod image;
pub mod vpcd;

pub use card::VirtualCard;
pub use image::{Behaviour, CardImage, Ef06Access, Pin, Record, Ssse};

/// The fixture cards, compiled in so the demo and benchmarks run without the source tree.
pub const BUILT_IN_CARDS: &[(&str, &str)] = &[
    ("corrupt", include_str!("../../fixtures/cards/corrupt.toml")),
    ("expired", include_str!("../../fixtures/cards/expired.toml")),
    ("gen1", include_str!("../../fixtures/cards/gen1.toml")),
    ("gen3", include_str!("../../fixtures/cards/gen3.toml")),
    (
        "long-name",
        include_str!("../../fixtures/cards/long-name.toml"),
    ),
    ("no-4e", include_str!("../../fixtures/cards/no-4e.toml")),
    ("no-ssse", include_str!("../../fixtures/cards/no-ssse.toml")),
    ("quirky", include_str!("../../fixtures/cards/quirky.toml")),
    (
        "rare-char",
        include_str!("../../fixtures/cards/rare-char.toml"),
    ),
    (
        "resident",
        include_str!("../../fixtures/cards/resident.toml"),
    ),
    (
        "vanishing",
        include_str!("../../fixtures/cards/vanishing.toml"),
    ),
    (
        "xiaowang",
        include_str!("../../fixtures/cards/xiaowang.toml"),
    ),
];

/// A built-in card image by its fixture name (`xiaowang`, `gen3`, …).
pub fn built_in_card(name: &str) -> Result<CardImage, SimError> {
    let (_, text) = BUILT_IN_CARDS
        .iter()
        .find(|(card, _)| *card == name)
        .ok_or_else(|| SimError::Syntax {
            origin: name.to_owned(),
            message: format!(
                "no built-in card of that name (built-in: {})",
                BUILT_IN_CARDS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    CardImage::from_toml_str(text, &format!("built-in {name}"))
}

/// Errors of the simulator: card files that cannot be used, and the vpcd connection.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read card file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("card file {origin} is not a valid card description: {message}")]
    Syntax { origin: String, message: String },
    #[error("card file {origin}, {place}: {problem}")]
    Invalid {
        origin: String,
        place: String,
        problem: String,
    },
    #[error("vpcd address {addr:?}: {problem} (expected PORT or HOST:PORT)")]
    Address { addr: String, problem: String },
    #[error("cannot connect to vpcd at {addr}: {source}")]
    Vpcd {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
