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
//!   journal with the insurer's (3201 and the day's list).
//!
//! Money is [`rust_decimal::Decimal`], never a float; every amount is rounded to the fen
//! half-up with [`round_fen`] and serialized as a string with two places ([`money`]).

pub mod calc;
pub mod crash;
pub mod journal;
pub mod ledger;
pub mod lines;
pub mod policy;
pub mod receipt;
pub mod reconcile;
pub mod service;

pub use calc::{AccountFunds, Band, BandKind, Split, YearToDate, round_fen, settle};
pub use ledger::{LedgerEntry, MonthEnd, month_ends, monthly_credit, year_end_interest};
pub use lines::{CatalogueTotals, FeeLine, LineError, LineSplit, split_line, split_lines};
pub use policy::{
    AccountRule, BandRule, InterestRule, Policy, PolicyError, Retired, Rule, RuleKey, is_retired,
};

/// Money and ratios on the wire and in files: amounts as strings with exactly two places
/// ("17.20", "0.00"), ratios as plain decimal strings ("0.25"). Reading accepts a string or a
/// JSON number, parsed exactly (never through a float). The one place for both, used by the
/// engine, the platform's wire types and the simulator.
pub mod money {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;
    use std::str::FromStr;

    /// `d` with exactly two decimal places (rounded half-up when it had more).
    pub fn two_places(d: Decimal) -> String {
        super::round_fen(d).to_string()
    }

    /// A decimal from a JSON string or number, exactly as written.
    pub fn exact(value: &Value) -> Result<Decimal, String> {
        let raw = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_string(),
            _ => return Err("amount is neither number nor string".into()),
        };
        Decimal::from_str(&raw)
            .or_else(|_| Decimal::from_scientific(&raw))
            .map_err(|e| format!("bad amount {raw:?}: {e}"))
    }

    /// Money from a JSON string or number, to two places.
    pub fn from_value(value: &Value) -> Result<Decimal, String> {
        let mut d = exact(value)?;
        d.rescale(2);
        Ok(d)
    }

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&two_places(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        from_value(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// A list of amounts.
    pub mod vec {
        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};
        use serde_json::Value;

        pub fn serialize<S: Serializer>(v: &[Decimal], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for d in v {
                seq.serialize_element(&super::two_places(*d))?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Decimal>, D::Error> {
            Vec::<Value>::deserialize(d)?
                .iter()
                .map(|v| super::from_value(v).map_err(serde::de::Error::custom))
                .collect()
        }
    }

    /// An optional amount (`null` when absent).
    pub mod option {
        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer};
        use serde_json::Value;

        pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => s.serialize_str(&super::two_places(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            match Value::deserialize(d)? {
                Value::Null => Ok(None),
                v => super::from_value(&v)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
            }
        }
    }

    /// A ratio or quantity (`selfpay_prop`, `cnt`, `pric`): a plain decimal string out; a
    /// string or number in, exactly; `null` reads as 0.
    pub mod ratio {
        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer};
        use serde_json::Value;

        pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&value.normalize().to_string())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
            match Value::deserialize(d)? {
                Value::Null => Ok(Decimal::ZERO),
                v => super::exact(&v).map_err(serde::de::Error::custom),
            }
        }
    }
}
