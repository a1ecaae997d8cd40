//! Money: amounts in yuan as [`rust_decimal::Decimal`], never a float.
//!
//! - [`round_fen`] is the one rounding to the fen in the code base (half-up, two places).
//! - Amounts on the wire and in files are strings with exactly two places ("17.20", "0.00");
//!   ratios are plain decimal strings ("0.25"). Reading accepts a string or a JSON number,
//!   parsed exactly (never through a float). Use this module as `#[serde(with =
//!   "crate::money")]`, or [`mod@vec`], [`option`], [`ratio`].
//! - [`SettlementAmounts`]: the national amount fields of a settlement (2206/2207/2208
//!   `setlinfo`), with their identities and the [`Difference`]s between two of them;
//!   [`CatalogueTotals`] its four-way catalogue split. The local split
//!   (`settle::calc::Split`) and the insurer's answer (`insurer::settlement::Setlinfo`) both
//!   embed it, so they are compared field by field in one place.
//!
//! A leaf: it needs nothing of the crate above it.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::str::FromStr;

/// The largest amount the national interface carries: N(16,2), 99,999,999,999,999.99.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_874_919_423, 2_328_306, 0, false, 2);

/// Round to the fen, half-up (away from zero), with exactly two places ("0" → "0.00").
pub fn round_fen(d: Decimal) -> Decimal {
    let mut fen = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    fen.rescale(2);
    fen
}

/// 0.00.
pub fn zero_fen() -> Decimal {
    round_fen(Decimal::ZERO)
}

/// Whether `d` is a whole number of fen (no digit beyond the second place).
pub fn is_whole_fen(d: Decimal) -> bool {
    d == round_fen(d)
}

/// An amount that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is neither number nor string")]
    NotAmount,
    #[error("bad amount {text:?}: {reason}")]
    Unparsable { text: String, reason: String },
    /// Beyond N(16,2), the widest amount of the national interface: sums of such values
    /// could overflow the decimal type.
    #[error("amount {text} is beyond the national range (at most {MAX_AMOUNT})")]
    OutOfRange { text: String },
}

/// `d` with exactly two decimal places (rounded half-up when it had more).
pub fn two_places(d: Decimal) -> String {
    round_fen(d).to_string()
}

/// A decimal from a JSON string or number, exactly as written, within ±[`MAX_AMOUNT`].
pub fn exact(value: &Value) -> Result<Decimal, AmountError> {
    let raw = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err(AmountError::NotAmount),
    };
    let d = Decimal::from_str(&raw)
        .or_else(|_| Decimal::from_scientific(&raw))
        .map_err(|e| AmountError::Unparsable {
            reason: e.to_string(),
            text: raw.clone(),
        })?;
    if d.abs() > MAX_AMOUNT {
        return Err(AmountError::OutOfRange { text: raw });
    }
    Ok(d)
}

/// Money from a JSON string or number, rounded to the fen.
pub fn from_value(value: &Value) -> Result<Decimal, AmountError> {
    exact(value).map(round_fen)
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

/// A bill's four-way catalogue split (2204's parts added up, as 2206/2207 carry them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogueTotals {
    /// 全自费.
    #[serde(with = "crate::money")]
    pub fulamt_ownpay_amt: Decimal,
    /// 超限价自费.
    #[serde(with = "crate::money")]
    pub overlmt_selfpay: Decimal,
    /// 先行自付.
    #[serde(with = "crate::money")]
    pub preselfpay_amt: Decimal,
    /// 符合政策范围.
    #[serde(with = "crate::money")]
    pub inscp_scp_amt: Decimal,
}

impl CatalogueTotals {
    /// 医疗费总额: the four parts added up.
    pub fn medfee_sumamt(&self) -> Decimal {
        self.fulamt_ownpay_amt + self.overlmt_selfpay + self.preselfpay_amt + self.inscp_scp_amt
    }

    /// A bill that is all in scope (the seed's examples).
    pub fn in_scope_only(inscp: Decimal) -> CatalogueTotals {
        CatalogueTotals {
            inscp_scp_amt: round_fen(inscp),
            ..CatalogueTotals::zero()
        }
    }

    /// All four parts 0.00.
    pub fn zero() -> CatalogueTotals {
        let zero = zero_fen();
        CatalogueTotals {
            fulamt_ownpay_amt: zero,
            overlmt_selfpay: zero,
            preselfpay_amt: zero,
            inscp_scp_amt: zero,
        }
    }
}

/// The national amount fields of a settlement (2206/2207/2208 `setlinfo`, insurer-api.md
/// §2.6), in the wire's order. Embedded with `#[serde(flatten)]`, so the fields stay where
/// they were on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlementAmounts {
    /// 医疗费总额.
    #[serde(with = "crate::money")]
    pub medfee_sumamt: Decimal,
    /// 全自费 / 超限价 / 先行自付 / 符合范围.
    #[serde(flatten)]
    pub catalogue: CatalogueTotals,
    /// The part of the deductible this settlement consumed (起付线).
    #[serde(with = "crate::money")]
    pub act_pay_dedc: Decimal,
    /// Basic pooled fund (统筹基金).
    #[serde(with = "crate::money")]
    pub hifp_pay: Decimal,
    /// The fund's effective ratio on the in-scope amount above the deductible (a ratio, not
    /// money; 0 when there is none).
    #[serde(with = "ratio")]
    pub pool_prop_selfpay: Decimal,
    /// All funds.
    #[serde(with = "crate::money")]
    pub fund_pay_sumamt: Decimal,
    /// The person's part: fulamt + overlmt + preselfpay + the in-scope part not paid by a fund.
    #[serde(with = "crate::money")]
    pub psn_part_amt: Decimal,
    /// From accounts: own + relatives'.
    #[serde(with = "crate::money")]
    pub acct_pay: Decimal,
    /// The relatives' part of `acct_pay` (家庭共济).
    #[serde(with = "crate::money")]
    pub acct_mulaid_pay: Decimal,
    #[serde(with = "crate::money")]
    pub psn_cash_pay: Decimal,
    #[serde(with = "crate::money")]
    pub hosp_part_amt: Decimal,
    /// The patient's own account balance after.
    #[serde(with = "crate::money")]
    pub balc: Decimal,
}

/// An amount identity of insurer-api.md §2.6 that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokenIdentity {
    #[error(
        "fulamt + overlmt + preselfpay + inscp ≠ medfee_sumamt ({catalogue} ≠ {medfee_sumamt})"
    )]
    CatalogueSplit {
        medfee_sumamt: Decimal,
        catalogue: Decimal,
    },
    #[error(
        "fund_pay_sumamt + psn_part_amt + hosp_part_amt ≠ medfee_sumamt ({payers} ≠ {medfee_sumamt})"
    )]
    Payers {
        medfee_sumamt: Decimal,
        payers: Decimal,
    },
    #[error(
        "acct_pay + psn_cash_pay ≠ psn_part_amt ({acct_pay} + {psn_cash_pay} ≠ {psn_part_amt})"
    )]
    PersonPart {
        psn_part_amt: Decimal,
        acct_pay: Decimal,
        psn_cash_pay: Decimal,
    },
    #[error("acct_mulaid_pay > acct_pay")]
    MulaidAboveAccount,
}

/// One amount on which two settlements disagree: medcard's (`local`) and the insurer's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The national field name.
    pub field: &'static str,
    #[serde(with = "crate::money")]
    pub local: Decimal,
    #[serde(with = "crate::money")]
    pub insurer: Decimal,
}

/// Fields [`SettlementAmounts::differences`] leaves out: a ratio derived from `hifp_pay`, a
/// part of `acct_pay`, and the hospital's part (medcard models none).
const NOT_COMPARED: [&str; 3] = ["pool_prop_selfpay", "acct_mulaid_pay", "hosp_part_amt"];

impl SettlementAmounts {
    /// Every field by its national name, in the wire's order.
    pub fn fields(&self) -> [(&'static str, Decimal); 15] {
        let c = &self.catalogue;
        [
            ("medfee_sumamt", self.medfee_sumamt),
            ("fulamt_ownpay_amt", c.fulamt_ownpay_amt),
            ("overlmt_selfpay", c.overlmt_selfpay),
            ("preselfpay_amt", c.preselfpay_amt),
            ("inscp_scp_amt", c.inscp_scp_amt),
            ("act_pay_dedc", self.act_pay_dedc),
            ("hifp_pay", self.hifp_pay),
            ("pool_prop_selfpay", self.pool_prop_selfpay),
            ("fund_pay_sumamt", self.fund_pay_sumamt),
            ("psn_part_amt", self.psn_part_amt),
            ("acct_pay", self.acct_pay),
            ("acct_mulaid_pay", self.acct_mulaid_pay),
            ("psn_cash_pay", self.psn_cash_pay),
            ("hosp_part_amt", self.hosp_part_amt),
            ("balc", self.balc),
        ]
    }

    /// The money fields (every field but the ratio `pool_prop_selfpay`).
    pub fn money(&self) -> impl Iterator<Item = Decimal> {
        self.fields()
            .into_iter()
            .filter(|(name, _)| *name != "pool_prop_selfpay")
            .map(|(_, d)| d)
    }

    /// The amounts where `self` (medcard's) and `insurer` disagree, in the wire's order.
    /// `pool_prop_selfpay` (a ratio derived from `hifp_pay`), `acct_mulaid_pay` (a part of
    /// `acct_pay`) and `hosp_part_amt` (medcard models none) are left out.
    pub fn differences(&self, insurer: &SettlementAmounts) -> Vec<Difference> {
        self.fields()
            .into_iter()
            .zip(insurer.fields())
            .filter(|((field, local), (_, theirs))| {
                local != theirs && !NOT_COMPARED.contains(field)
            })
            .map(|((field, local), (_, insurer))| Difference {
                field,
                local,
                insurer,
            })
            .collect()
    }

    /// fulamt + overlmt + preselfpay + inscp = medfee_sumamt.
    pub fn catalogue_adds_up(&self) -> Result<(), BrokenIdentity> {
        let catalogue = self.catalogue.medfee_sumamt();
        if catalogue == self.medfee_sumamt {
            return Ok(());
        }
        Err(BrokenIdentity::CatalogueSplit {
            medfee_sumamt: self.medfee_sumamt,
            catalogue,
        })
    }

    /// fund_pay_sumamt + psn_part_amt + hosp_part_amt = medfee_sumamt.
    pub fn payers_add_up(&self) -> Result<(), BrokenIdentity> {
        let payers = self.fund_pay_sumamt + self.psn_part_amt + self.hosp_part_amt;
        if payers == self.medfee_sumamt {
            return Ok(());
        }
        Err(BrokenIdentity::Payers {
            medfee_sumamt: self.medfee_sumamt,
            payers,
        })
    }

    /// acct_pay + psn_cash_pay = psn_part_amt.
    pub fn person_part_adds_up(&self) -> Result<(), BrokenIdentity> {
        if self.acct_pay + self.psn_cash_pay == self.psn_part_amt {
            return Ok(());
        }
        Err(BrokenIdentity::PersonPart {
            psn_part_amt: self.psn_part_amt,
            acct_pay: self.acct_pay,
            psn_cash_pay: self.psn_cash_pay,
        })
    }

    /// acct_mulaid_pay ≤ acct_pay.
    pub fn mulaid_within_account(&self) -> Result<(), BrokenIdentity> {
        if self.acct_mulaid_pay <= self.acct_pay {
            return Ok(());
        }
        Err(BrokenIdentity::MulaidAboveAccount)
    }

    /// Every identity that does not hold, in the order above.
    pub fn broken_identities(&self) -> Vec<BrokenIdentity> {
        [
            self.catalogue_adds_up(),
            self.payers_add_up(),
            self.person_part_adds_up(),
            self.mulaid_within_account(),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    /// The identities of insurer-api.md §2.6; the first one broken.
    pub fn check_identities(&self) -> Result<(), BrokenIdentity> {
        match self.broken_identities().into_iter().next() {
            Some(broken) => Err(broken),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    fn seed() -> SettlementAmounts {
        // The seed visit: 120.00 in scope, 102.80 from the account, 17.20 in cash.
        SettlementAmounts {
            medfee_sumamt: d("120.00"),
            catalogue: CatalogueTotals::in_scope_only(d("120.00")),
            act_pay_dedc: d("120.00"),
            hifp_pay: d("0.00"),
            pool_prop_selfpay: Decimal::ZERO,
            fund_pay_sumamt: d("0.00"),
            psn_part_amt: d("120.00"),
            acct_pay: d("102.80"),
            acct_mulaid_pay: d("0.00"),
            psn_cash_pay: d("17.20"),
            hosp_part_amt: d("0.00"),
            balc: d("0.00"),
        }
    }

    #[test]
    fn round_fen_is_half_up_with_two_places() {
        for (x, fen) in [
            ("0", "0.00"),
            ("0.005", "0.01"),
            ("0.015", "0.02"),
            ("0.025", "0.03"),
            ("0.0049", "0.00"),
            ("4.665", "4.67"),
            ("-0.005", "-0.01"),
            ("17.2", "17.20"),
        ] {
            assert_eq!(round_fen(d(x)).to_string(), fen, "{x}");
        }
        assert_eq!(MAX_AMOUNT.to_string(), "99999999999999.99");
        assert!(is_whole_fen(d("1.10")) && is_whole_fen(d("1.1000")));
        assert!(!is_whole_fen(d("1.105")));
    }

    #[test]
    fn amounts_read_exactly_from_strings_and_numbers() {
        assert_eq!(from_value(&json!(332.8)), Ok(d("332.80")));
        assert_eq!(
            from_value(&json!(" 0.005 ")).map(|v| v.to_string()),
            Ok("0.01".into())
        );
        assert_eq!(exact(&json!("1e2")), Ok(d("100")));
        assert_eq!(from_value(&json!(null)), Err(AmountError::NotAmount));
        assert!(matches!(
            from_value(&json!("abc")),
            Err(AmountError::Unparsable { .. })
        ));
        // Found by fuzzing (fuzz/regressions/insurer_reply/): such amounts overflowed a sum.
        assert_eq!(exact(&json!("-99999999999999.99")), Ok(-MAX_AMOUNT));
        assert!(matches!(
            from_value(&json!("70000000000000000000000000000")),
            Err(AmountError::OutOfRange { .. })
        ));
    }

    #[test]
    fn the_amounts_keep_their_wire_names_and_order() {
        let v = serde_json::to_value(seed()).unwrap_or_default();
        assert_eq!(v["inscp_scp_amt"], "120.00");
        assert_eq!(v["pool_prop_selfpay"], "0");
        let text = serde_json::to_string(&seed()).unwrap_or_default();
        let names: Vec<&str> = seed().fields().iter().map(|(n, _)| *n).collect();
        let positions: Vec<usize> = names.iter().filter_map(|n| text.find(n)).collect();
        assert_eq!(positions.len(), 15, "{text}");
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        let back: SettlementAmounts = serde_json::from_value(v).unwrap_or_else(|_| {
            let mut other = seed();
            other.balc = Decimal::ONE;
            other
        });
        assert_eq!(back, seed());
    }

    #[test]
    fn identities_hold_and_a_broken_one_is_named() {
        let s = seed();
        assert_eq!(s.check_identities(), Ok(()));
        let mut broken = seed();
        broken.psn_cash_pay = Decimal::ONE;
        let err = broken.check_identities().err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("psn_part_amt"));
        broken.medfee_sumamt = Decimal::ONE;
        assert_eq!(broken.broken_identities().len(), 3);
    }

    #[test]
    fn differences_name_the_field_and_both_amounts() {
        let mut insurer = seed();
        insurer.acct_pay = d("100.00");
        insurer.psn_cash_pay = d("20.00");
        insurer.acct_mulaid_pay = d("1.00");
        let diffs = seed().differences(&insurer);
        let fields: Vec<&str> = diffs.iter().map(|x| x.field).collect();
        assert_eq!(fields, ["acct_pay", "psn_cash_pay"]);
        assert_eq!(
            serde_json::to_value(&diffs[0]).unwrap_or_default(),
            json!({"field": "acct_pay", "local": "102.80", "insurer": "100.00"})
        );
        assert!(seed().differences(&seed()).is_empty());
    }
}
