//! Settlement: what a visit costs the pooled fund, the personal account and the patient.
//!
//! medcard previews the insurer's 2204 per-line split and its 2206 settlement locally
//! (insurer-api.md §6.4), from the same inputs: the catalogue class of each fee line, the
//! person's calendar-year cumulative in-scope amount, the account balance(s), and the region's
//! cost-sharing rules. The insurer's answer stays authoritative; the preview tells the cashier
//! what to expect and lets medcard report differences. The insurer simulator uses the same code
//! to answer 2206/2207.
//!
//! - [`policy`]: cost-sharing rules as data (`fixtures/policy/*.toml`): deductible, marginal
//!   bands, cap, yearly fund cap, the account credit and interest rates.
//! - [`lines`]: the 2204 per-line catalogue split (全自费 / 超限价 / 先行自付 / 符合范围).
//! - [`calc`]: the 2206 settlement split (起付线, bands, cap, fund cap, account, 共济, cash).
//! - [`ledger`]: the personal account's monthly credit and year-end interest.
//! - [`journal`]: the daemon's record of visits, previews, settlement requests and every
//!   money-moving call, in the cache file, written before each call is sent.
//! - [`service`]: [`service::Settler`], registration, preview, commit and refund exactly once
//!   (2201–2208 with 2601 reversals); [`receipt`] prints the result; [`crash`] holds the
//!   crash points of the exactly-once tests (only with `--features fault-injection`); [`reconcile`] compares a day's
//!   journal with the insurer's (3201 and the day's list); [`outbox`] reads and deletes the
//!   journal rows waiting to be shipped to the hospital's PostgreSQL (`crate::hospital`).
//!
//! Money is [`rust_decimal::Decimal`], never a float; every amount is rounded to the fen
//! half-up with [`crate::money::round_fen`] and serialized as a string with two places
//! ([`crate::money`]); the bill's totals and the settlement's amounts are
//! [`crate::money::CatalogueTotals`] and [`crate::money::SettlementAmounts`].

pub mod calc;
pub mod crash;
pub mod journal;
pub mod ledger;
pub mod lines;
pub mod outbox;
pub mod policy;
pub mod receipt;
pub mod reconcile;
pub mod service;

pub use calc::{AccountFunds, Band, BandKind, Split, YearToDate, settle};
pub use ledger::{LedgerEntry, MonthEnd, month_ends, monthly_credit, year_end_interest};
pub use lines::{FeeLine, LineError, LineSplit, split_line, split_lines};
pub use policy::{
    AccountRule, BandRule, InterestRule, Policy, PolicyError, Retired, Rule, RuleKey, is_retired,
};
