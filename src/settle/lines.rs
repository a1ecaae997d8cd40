//! The 2204 per-line catalogue split (insurer-api.md §2.5, §6.1): each fee line's amount is
//! divided into 全自费 (`fulamt_ownpay_amt`), 超限价 (`overlmt_amt`), 先行自付
//! (`preselfpay_amt`) and 符合政策范围 (`inscp_scp_amt`), from its catalogue item's class
//! (甲/乙/丙), price cap and 先行自付比例. [`CatalogueTotals::from_lines`] adds the lines up
//! for 2206.
//!
//! Per line: `det_item_fee_sumamt = round_fen(cnt × pric)`, and
//! `det_item_fee_sumamt = fulamt_ownpay_amt + overlmt_amt + preselfpay_amt + inscp_scp_amt`.

use crate::insurer::{CatalogueItem, ChrgitmLv};
use crate::money::{self, CatalogueTotals, MAX_AMOUNT, round_fen, zero_fen};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A fee line as 2204 uploads it (the fields the split needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeeLine {
    /// 费用明细流水号, unique within the visit.
    pub feedetl_sn: String,
    /// 医保目录编码.
    pub med_list_codg: String,
    /// 院内目录编码.
    pub medins_list_codg: String,
    pub fee_name: String,
    /// 数量.
    pub cnt: Decimal,
    /// 单价, yuan.
    pub pric: Decimal,
}

impl FeeLine {
    /// det_item_fee_sumamt: quantity × price to the fen, checked as [`split_line`] checks it.
    pub fn amount(&self) -> Result<Decimal, LineError> {
        line_amount(self)
    }
}

/// One line's split, named as 2204 returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSplit {
    pub feedetl_sn: String,
    pub med_list_codg: String,
    #[serde(with = "money")]
    pub det_item_fee_sumamt: Decimal,
    pub cnt: Decimal,
    pub pric: Decimal,
    /// 定价上限 from the catalogue.
    #[serde(with = "money::option", default)]
    pub pric_uplmt_amt: Option<Decimal>,
    /// 自付比例: 乙类 the item's 先行自付比例; 甲类 0; self-paid lines 1.
    pub selfpay_prop: Decimal,
    #[serde(with = "money")]
    pub fulamt_ownpay_amt: Decimal,
    #[serde(with = "money")]
    pub overlmt_amt: Decimal,
    #[serde(with = "money")]
    pub preselfpay_amt: Decimal,
    #[serde(with = "money")]
    pub inscp_scp_amt: Decimal,
    /// 收费项目等级; `None` when the code is not in the catalogue.
    pub chrgitm_lv: Option<ChrgitmLv>,
    /// Why part of the line is self-paid (empty when nothing is).
    pub memo: String,
}

/// A fee line the split refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("fee line {feedetl_sn}: quantity {cnt} is not above 0")]
    NonPositiveCount { feedetl_sn: String, cnt: Decimal },
    #[error("fee line {feedetl_sn}: price {pric} is negative")]
    NegativePrice { feedetl_sn: String, pric: Decimal },
    #[error("fee line {feedetl_sn}: quantity × price is above 99,999,999,999,999.99")]
    TooLarge { feedetl_sn: String },
}

/// Split one line against its catalogue item (`None`: the code is not in the catalogue).
pub fn split_line(line: &FeeLine, item: Option<&CatalogueItem>) -> Result<LineSplit, LineError> {
    let amount = line_amount(line)?;
    let zero = zero_fen();
    let mut split = LineSplit {
        feedetl_sn: line.feedetl_sn.clone(),
        med_list_codg: line.med_list_codg.clone(),
        det_item_fee_sumamt: amount,
        cnt: line.cnt,
        pric: line.pric,
        pric_uplmt_amt: item.and_then(|i| i.pric_uplmt_amt),
        selfpay_prop: Decimal::ZERO,
        fulamt_ownpay_amt: zero,
        overlmt_amt: zero,
        preselfpay_amt: zero,
        inscp_scp_amt: zero,
        chrgitm_lv: item.map(|i| i.chrgitm_lv),
        memo: String::new(),
    };
    match self_paid_reason(item) {
        Some(reason) => {
            split.selfpay_prop = Decimal::ONE;
            split.fulamt_ownpay_amt = amount;
            split.memo = reason.to_string();
        }
        None => {
            if let Some(item) = item {
                split_in_catalogue(&mut split, item);
            }
        }
    }
    Ok(split)
}

/// Split every line, each against the catalogue's item for its code (the highest version when
/// the catalogue holds several).
pub fn split_lines(
    lines: &[FeeLine],
    catalogue: &[CatalogueItem],
) -> Result<Vec<LineSplit>, LineError> {
    lines
        .iter()
        .map(|line| split_line(line, find_item(catalogue, &line.med_list_codg)))
        .collect()
}

/// The catalogue's item for a code: the highest version.
pub fn find_item<'a>(catalogue: &'a [CatalogueItem], code: &str) -> Option<&'a CatalogueItem> {
    catalogue
        .iter()
        .filter(|item| item.hilist_code == code)
        .max_by_key(|item| item.version)
}

/// `round_fen(cnt × pric)`, after checking both.
fn line_amount(line: &FeeLine) -> Result<Decimal, LineError> {
    if line.cnt <= Decimal::ZERO {
        return Err(LineError::NonPositiveCount {
            feedetl_sn: line.feedetl_sn.clone(),
            cnt: line.cnt,
        });
    }
    if line.pric < Decimal::ZERO {
        return Err(LineError::NegativePrice {
            feedetl_sn: line.feedetl_sn.clone(),
            pric: line.pric,
        });
    }
    line.cnt
        .checked_mul(line.pric)
        .map(round_fen)
        // Above N(16,2)'s maximum the line is refused, so no sum of a bill's lines overflows.
        .filter(|amount| *amount <= MAX_AMOUNT)
        .ok_or_else(|| LineError::TooLarge {
            feedetl_sn: line.feedetl_sn.clone(),
        })
}

/// Why a whole line is self-paid, if it is.
fn self_paid_reason(item: Option<&CatalogueItem>) -> Option<&'static str> {
    match item {
        None => Some("不在医保目录 (not in the catalogue): 全自费"),
        Some(item) if !item.vali_flag => {
            Some("目录项目已失效 (withdrawn from the catalogue): 全自费")
        }
        Some(item) if item.chrgitm_lv == ChrgitmLv::C => Some("丙类 (class C): 全自费"),
        Some(_) => None,
    }
}

/// 甲类 and 乙类: the part above the price cap, then 乙类's 先行自付, the rest in scope.
fn split_in_catalogue(split: &mut LineSplit, item: &CatalogueItem) {
    let mut memo = Vec::new();
    if let Some(cap) = item.pric_uplmt_amt
        && split.pric > cap
    {
        let over = (split.pric - cap).checked_mul(split.cnt).map(round_fen);
        // (pric − cap) × cnt ≤ pric × cnt, which did not overflow; min keeps the invariant.
        split.overlmt_amt = over
            .unwrap_or(split.det_item_fee_sumamt)
            .min(split.det_item_fee_sumamt);
        memo.push(format!("超限价 (above the price cap {cap})"));
    }
    let rest = split.det_item_fee_sumamt - split.overlmt_amt;
    if item.chrgitm_lv == ChrgitmLv::B {
        let prop = item.selfpay_prop.clamp(Decimal::ZERO, Decimal::ONE);
        split.selfpay_prop = prop;
        split.preselfpay_amt = round_fen(rest * prop);
        if !split.preselfpay_amt.is_zero() {
            memo.push(format!("乙类先行自付 {prop}"));
        }
    }
    split.inscp_scp_amt = rest - split.preselfpay_amt;
    split.memo = memo.join("; ");
}

/// A batch's lines added up, as 2206/2207 carry them.
impl CatalogueTotals {
    /// The sums of the lines' parts.
    pub fn from_lines(lines: &[LineSplit]) -> CatalogueTotals {
        lines
            .iter()
            .fold(CatalogueTotals::zero(), |sum, line| CatalogueTotals {
                fulamt_ownpay_amt: sum.fulamt_ownpay_amt + line.fulamt_ownpay_amt,
                overlmt_selfpay: sum.overlmt_selfpay + line.overlmt_amt,
                preselfpay_amt: sum.preselfpay_amt + line.preselfpay_amt,
                inscp_scp_amt: sum.inscp_scp_amt + line.inscp_scp_amt,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn line(code: &str, cnt: &str, pric: &str) -> FeeLine {
        FeeLine {
            feedetl_sn: "1".into(),
            med_list_codg: code.into(),
            medins_list_codg: code.into(),
            fee_name: code.into(),
            cnt: d(cnt),
            pric: d(pric),
        }
    }

    fn item(lv: ChrgitmLv, prop: &str, cap: Option<&str>) -> CatalogueItem {
        CatalogueItem {
            version: 1,
            hilist_code: "X".into(),
            hilist_name: "x".into(),
            chrgitm_lv: lv,
            selfpay_prop: d(prop),
            pric_uplmt_amt: cap.map(d),
            vali_flag: true,
        }
    }

    /// (fulamt, overlmt, preselfpay, inscp) as strings.
    fn parts(s: &LineSplit) -> [String; 4] {
        [
            s.fulamt_ownpay_amt,
            s.overlmt_amt,
            s.preselfpay_amt,
            s.inscp_scp_amt,
        ]
        .map(|d| d.to_string())
    }

    #[test]
    fn class_b_pays_its_share_first_rounded_half_up_per_line() {
        // 3 × 15.55 = 46.65; 10 % = 4.665 → 4.67 (half-up; half-even would give 4.66);
        // in scope 46.65 − 4.67 = 41.98.
        let s = split_line(
            &line("X", "3", "15.55"),
            Some(&item(ChrgitmLv::B, "0.10", None)),
        )
        .unwrap();
        assert_eq!(s.det_item_fee_sumamt.to_string(), "46.65");
        assert_eq!(parts(&s), ["0.00", "0.00", "4.67", "41.98"]);
        assert_eq!(s.selfpay_prop, d("0.10"));
    }

    #[test]
    fn above_the_price_cap_is_self_paid_then_class_b_share_on_the_rest() {
        // 2 × 75.00 = 150.00; over the cap (75 − 68) × 2 = 14.00; rest 136.00; 20 % = 27.20;
        // in scope 108.80.
        let b = item(ChrgitmLv::B, "0.20", Some("68.00"));
        let s = split_line(&line("X", "2", "75.00"), Some(&b)).unwrap();
        assert_eq!(parts(&s), ["0.00", "14.00", "27.20", "108.80"]);
        assert!(s.memo.contains("超限价"), "{}", s.memo);
        // 甲类 with a cap of 10.00 at 12.00: 2.00 over, 10.00 in scope.
        let a = item(ChrgitmLv::A, "0", Some("10.00"));
        let s = split_line(&line("X", "1", "12.00"), Some(&a)).unwrap();
        assert_eq!(parts(&s), ["0.00", "2.00", "0.00", "10.00"]);
        // At the cap exactly: nothing over.
        let s = split_line(&line("X", "1", "10.00"), Some(&a)).unwrap();
        assert_eq!(parts(&s), ["0.00", "0.00", "0.00", "10.00"]);
    }

    #[test]
    fn class_c_withdrawn_and_unknown_items_are_wholly_self_paid() {
        let c = item(ChrgitmLv::C, "0", None);
        let s = split_line(&line("X", "1", "30"), Some(&c)).unwrap();
        assert_eq!(parts(&s), ["30.00", "0.00", "0.00", "0.00"]);
        assert!(s.memo.contains("丙类"));
        let withdrawn = CatalogueItem {
            vali_flag: false,
            ..item(ChrgitmLv::A, "0", None)
        };
        let s = split_line(&line("X", "2", "5"), Some(&withdrawn)).unwrap();
        assert_eq!(parts(&s), ["10.00", "0.00", "0.00", "0.00"]);
        assert!(s.memo.contains("失效"));
        let s = split_line(&line("NOPE", "1", "7.5"), None).unwrap();
        assert_eq!(parts(&s), ["7.50", "0.00", "0.00", "0.00"]);
        assert!(s.memo.contains("不在医保目录"));
        assert_eq!(s.chrgitm_lv, None);
        assert_eq!(s.selfpay_prop, Decimal::ONE);
    }

    #[test]
    fn the_amount_is_quantity_times_price_rounded_half_up() {
        // 0.5 × 3.33 = 1.665 → 1.67.
        let a = item(ChrgitmLv::A, "0", None);
        let s = split_line(&line("X", "0.5", "3.33"), Some(&a)).unwrap();
        assert_eq!(s.det_item_fee_sumamt.to_string(), "1.67");
        assert_eq!(s.inscp_scp_amt.to_string(), "1.67");
    }

    #[test]
    fn bad_quantities_and_prices_are_refused() {
        let e = split_line(&line("X", "0", "1"), None).unwrap_err();
        assert!(matches!(e, LineError::NonPositiveCount { .. }));
        let e = split_line(&line("X", "-1", "1"), None).unwrap_err();
        assert!(matches!(e, LineError::NonPositiveCount { .. }));
        let e = split_line(&line("X", "1", "-0.01"), None).unwrap_err();
        assert_eq!(e.to_string(), "fee line 1: price -0.01 is negative");
        let big = Decimal::MAX.to_string();
        let e = split_line(&line("X", &big, &big), None).unwrap_err();
        assert!(matches!(e, LineError::TooLarge { .. }));
    }

    #[test]
    fn totals_add_the_lines_and_the_highest_catalogue_version_wins() {
        let mut old = item(ChrgitmLv::A, "0", None);
        old.hilist_code = "K".into();
        let new = CatalogueItem {
            version: 2,
            chrgitm_lv: ChrgitmLv::C,
            ..old.clone()
        };
        let catalogue = [new, old];
        let lines = [line("K", "1", "10"), line("NOPE", "1", "2.5")];
        let split = split_lines(&lines, &catalogue).unwrap();
        // Version 2 is 丙类: 10.00 全自费, plus 2.50 not in the catalogue = 12.50.
        let totals = CatalogueTotals::from_lines(&split);
        assert_eq!(totals.fulamt_ownpay_amt.to_string(), "12.50");
        assert_eq!(totals.medfee_sumamt().to_string(), "12.50");
        assert_eq!(
            CatalogueTotals::in_scope_only(d("120"))
                .medfee_sumamt()
                .to_string(),
            "120.00"
        );
    }
}
