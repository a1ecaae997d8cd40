//! The insurer link: the national medical-insurance platform's HTTP JSON interface (one
//! POST endpoint, the transaction chosen by `infno`, insurer-api.md §1), and what medcard
//! needs of it for the swipe: sign-in (9001), person and insurance by card, ID number or
//! 医保电子凭证 token (1101), the e-voucher code's decode (1162, the simulator's stand-in for
//! the platform SDK), the catalogue by version, and a card-status feed — a medcard extension
//! transaction, since the platform has none (docs/insurer-extension.md).
//!
//! - [`types`]: the data the platform returns, named as it names them (`psn_no`, `balc`,
//!   `insutype`, `psn_insu_stas`, `insuplc_admdvs` …), shared with the cache.
//! - [`InsurerLink`]: what the cache's sync and the verdicts ask of the insurer; the HTTP
//!   client implements it, tests may fake it.
//! - [`client`]: [`InsurerClient`], the HTTP client (envelope, msgids, sign-in, retries,
//!   circuit breaker); [`sign_in`]: the link's one sign-in (9001 / 9002), shared by its
//!   clients; [`envelope`], [`wire`], [`msgid`], [`breaker`], [`signer`] are its
//!   parts; [`files`]: 9101 upload and 9102 download, and the 3202 detail and result files;
//!   [`refusals`] reads what a refusal is about (rules as data,
//!   `insurer-refusals/`); times and dates come from [`crate::clock`] (Beijing time).
//!
//! The insurer simulator behind `medcard insurer-sim` is on the other side of the wire, in
//! `sim::insurer`.

pub mod breaker;
pub mod client;
pub mod envelope;
pub mod files;
pub mod msgid;
pub mod refusals;
pub mod settlement;
pub mod sign_in;
pub mod signer;
pub mod types;
pub mod wire;

pub use types::{
    CardEventKind, CardEventPage, CardStatusEvent, CatalogueItem, CataloguePage, ChrgitmLv,
    EcIdentity, InsuInfo, LinkError, PersonBase, PersonInfo, Uncertainty,
};

pub use breaker::{CircuitBreaker, CircuitState, SharedBreaker};
pub use client::{ClockReading, InsurerClient, Retry};
pub use envelope::{InsurerConfig, Reply, Terminal};
pub use msgid::{MsgIdSource, Partition, PartitionError, SequenceMsgIds};
pub use refusals::{Refusal, RefusalRules, RefusalRulesError};
pub use sign_in::{SharedSignIn, SignInReport};
pub use signer::{NoSigner, Signer};

/// What the rest of medcard asks of the insurer. Blocking calls with the link's own
/// timeouts; the daemon runs them off the swipe path.
pub trait InsurerLink: Send {
    /// 1101 by social security card: mdtrt_cert_type 03, mdtrt_cert_no = 卡号, card_sn = 卡识别码.
    fn person_by_card(&mut self, card_no: &str, card_sn: &str) -> Result<PersonInfo, LinkError>;
    /// 1101 by ID number: mdtrt_cert_type 02.
    fn person_by_certno(&mut self, certno: &str) -> Result<PersonInfo, LinkError>;
    /// The card-status feed after `since_version`, at most `page_size` events, oldest first.
    fn card_events(
        &mut self,
        since_version: u64,
        page_size: u32,
    ) -> Result<CardEventPage, LinkError>;
    /// Catalogue items changed after `since_version`, at most `page_size`, oldest first.
    fn catalogue(&mut self, since_version: u64, page_size: u32)
    -> Result<CataloguePage, LinkError>;
}
