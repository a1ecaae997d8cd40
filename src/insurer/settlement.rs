//! The settlement transactions on the wire (insurer-api.md §2.3–2.8, §2.10), shared by the
//! client (the daemon's settlement service) and the simulator, so both read and write the
//! same shapes: 2201/2202 registration, 2203 visit information, 2204/2205 fee lines, 2206
//! pre-settlement, 2207 settlement, 2208 refund, 2601 reversal, 3201 对总账, 3202 对明细账
//! (its files and 9101/9102 are in [`super::files`]), and the medcard extension `X302` (the
//! insurer's settlements of a day inline: a simulator convenience, docs/insurer-extension.md).
//!
//! Money is `rust_decimal`, written as strings with two places and read from strings or
//! numbers ([`crate::money`]). The platform's own field names are kept.

use super::wire::WireError;
use crate::money::{self, SettlementAmounts};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// 2201 门诊挂号.
pub const REGISTER: &str = "2201";
/// 2202 门诊挂号撤销.
pub const CANCEL_REGISTER: &str = "2202";
/// 2203 门诊就诊信息上传.
pub const VISIT_INFO: &str = "2203";
/// 2204 门诊费用明细上传.
pub const FEE_UPLOAD: &str = "2204";
/// 2205 门诊费用明细信息撤销.
pub const FEE_CANCEL: &str = "2205";
/// 2206 门诊预结算.
pub const PRE_SETTLE: &str = "2206";
/// 2207 门诊结算.
pub const SETTLE: &str = "2207";
/// 2208 门诊结算撤销.
pub const REFUND: &str = "2208";
/// 2601 冲正交易.
pub const REVERSAL: &str = "2601";
/// 3201 医药机构费用结算对总账.
pub const DAY_TOTALS: &str = "3201";
/// 3202 医药机构费用结算对明细账.
pub const DETAIL_RECONCILE: &str = "3202";
/// medcard extension: the insurer's settlements of a day inline (a simulator convenience;
/// the platform's way is [`DETAIL_RECONCILE`]).
pub const DAY_DETAIL: &str = "X302";

/// The transactions 2601 may reverse (insurer-api.md §2.8).
pub const REVERSIBLE: [&str; 2] = [SETTLE, REFUND];

/// 2201 input `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterIn {
    pub psn_no: String,
    pub insutype: String,
    /// 挂号时间 `yyyy-MM-dd HH:mm:ss`.
    pub begntime: String,
    pub mdtrt_cert_type: String,
    pub mdtrt_cert_no: String,
    /// 院内唯一流水: the hospital's own unique visit number.
    pub ipt_otp_no: String,
    pub atddr_no: String,
    pub dr_name: String,
    pub dept_code: String,
    pub dept_name: String,
    /// 科别.
    pub caty: String,
}

/// 2201 output `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterOut {
    /// 就诊ID, the insurer's visit id.
    pub mdtrt_id: String,
    pub psn_no: String,
    pub ipt_otp_no: String,
}

/// 2202 input `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRegisterIn {
    pub psn_no: String,
    pub mdtrt_id: String,
    pub ipt_otp_no: String,
}

/// 2203 input `mdtrtinfo` (the `diseinfo` list is sent empty unless a diagnosis is given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitInfoIn {
    pub mdtrt_id: String,
    pub psn_no: String,
    /// 医疗类别: 11 普通门诊, 14 门诊慢特病 …
    pub med_type: String,
    pub begntime: String,
    #[serde(default)]
    pub main_cond_dscr: String,
    #[serde(default)]
    pub dise_codg: String,
    #[serde(default)]
    pub dise_name: String,
}

/// One 2204 input `feedetail` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeeDetailIn {
    /// Unique within the visit.
    pub feedetl_sn: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    /// 收费批次号: one batch is one settlement.
    pub chrg_bchno: String,
    #[serde(default)]
    pub rx_circ_flag: String,
    pub fee_ocur_time: String,
    /// 医保目录编码.
    pub med_list_codg: String,
    /// 院内目录编码.
    pub medins_list_codg: String,
    /// The line's name as the hospital calls it (not a platform field; kept for receipts).
    #[serde(default)]
    pub fee_name: String,
    #[serde(with = "money")]
    pub det_item_fee_sumamt: Decimal,
    #[serde(with = "money::ratio")]
    pub cnt: Decimal,
    #[serde(with = "money::ratio")]
    pub pric: Decimal,
    #[serde(default)]
    pub bilg_dept_codg: String,
    #[serde(default)]
    pub bilg_dept_name: String,
    #[serde(default)]
    pub bilg_dr_codg: String,
    #[serde(default)]
    pub bilg_dr_name: String,
    #[serde(default)]
    pub hosp_appr_flag: String,
}

/// 2205 input `data`; `chrg_bchno` "0000" deletes every unsettled line of the visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeeCancelIn {
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    pub psn_no: String,
}

/// 2206 / 2207 input `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleIn {
    pub psn_no: String,
    pub mdtrt_cert_type: String,
    pub mdtrt_cert_no: String,
    pub med_type: String,
    /// Must equal the sum of the batch's uploaded lines.
    #[serde(with = "money")]
    pub medfee_sumamt: Decimal,
    /// 01 按项目结算.
    pub psn_setlway: String,
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    pub insutype: String,
    /// "1": the personal account pays the personal share while it has money.
    pub acct_used_flag: String,
    /// 发票号 (2207 only).
    #[serde(default)]
    pub invono: String,
}

/// `setlinfo` of 2206 / 2207 / 2208 output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setlinfo {
    pub mdtrt_id: String,
    /// 结算ID: empty in a 2206 answer.
    #[serde(default)]
    pub setl_id: String,
    pub psn_no: String,
    #[serde(default)]
    pub psn_name: String,
    #[serde(default)]
    pub psn_cert_type: String,
    #[serde(default)]
    pub certno: String,
    pub insutype: String,
    #[serde(default)]
    pub psn_type: String,
    pub med_type: String,
    #[serde(default)]
    pub setl_time: String,
    /// medfee_sumamt … balc (the amounts and their identities, insurer-api.md §2.6).
    #[serde(flatten)]
    pub amounts: SettlementAmounts,
    /// Echo of the request's msgid.
    #[serde(default)]
    pub medins_setl_id: String,
    #[serde(default)]
    pub clr_optins: String,
    #[serde(default)]
    pub clr_way: String,
    #[serde(default)]
    pub clr_type: String,
}

/// One `setldetail` row: a fund's payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetlDetail {
    /// 310100 统筹, 310200 个人账户 …
    pub fund_pay_type: String,
    #[serde(default)]
    pub fund_pay_type_name: String,
    #[serde(with = "money")]
    pub fund_payamt: Decimal,
}

/// 2206 / 2207 / 2208 output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleOut {
    pub setlinfo: Setlinfo,
    #[serde(default)]
    pub setldetail: Vec<SetlDetail>,
}

/// 2208 input `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundIn {
    pub setl_id: String,
    pub mdtrt_id: String,
    pub psn_no: String,
}

/// 2601 input `data`: the reversed call is named by its msgid and infno only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReversalIn {
    pub psn_no: String,
    /// 原发送方报文ID.
    pub omsgid: String,
    /// 原交易编号.
    pub oinfno: String,
}

/// What 3201 and 3202 both send: the statement's period and the hospital's totals over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementTotals {
    /// `yyyy-MM-dd`.
    pub stmt_begndate: String,
    pub stmt_enddate: String,
    #[serde(with = "money")]
    pub medfee_sumamt: Decimal,
    #[serde(with = "money")]
    pub fund_pay_sumamt: Decimal,
    /// 定点医药机构结算笔数.
    pub fixmedins_setl_cnt: u64,
}

/// 3201 input `data`: the hospital's own totals for a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayTotalsIn {
    pub insutype: String,
    pub clr_type: String,
    pub setl_optins: String,
    #[serde(flatten)]
    pub totals: StatementTotals,
    #[serde(with = "money")]
    pub acct_pay: Decimal,
}

/// 3201 output `stmtinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayTotalsOut {
    pub setl_optins: String,
    /// "0" 对平; "1" 不平.
    pub stmt_rslt: String,
    #[serde(default)]
    pub stmt_rslt_dscr: String,
}

/// 3202 input `data`: the detail file uploaded with 9101, and the totals it adds up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetailReconcileIn {
    /// 结算经办机构.
    pub setl_optins: String,
    /// 文件查询号 of the detail file (9101).
    pub file_qury_no: String,
    #[serde(flatten)]
    pub totals: StatementTotals,
    /// 现金支付金额.
    #[serde(with = "money")]
    pub cash_payamt: Decimal,
}

/// 3202 output `fileinfo`: the result file, to fetch with 9102 before `dld_endtime`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetailFileInfo {
    pub file_qury_no: String,
    pub filename: String,
    /// 下载截止时间 `yyyy-MM-dd HH:mm:ss`.
    #[serde(default)]
    pub dld_endtime: String,
}

/// X302 input `data`: a day, `yyyy-MM-dd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayDetailIn {
    pub stmt_date: String,
}

/// One X302 row: a settlement the insurer holds, as 3202's detail file would list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayDetailRow {
    pub setl_id: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    /// The msgid of the 2207 that made it (use it as `omsgid` to reverse).
    pub msgid: String,
    #[serde(with = "money")]
    pub medfee_sumamt: Decimal,
    #[serde(with = "money")]
    pub fund_pay_sumamt: Decimal,
    #[serde(with = "money")]
    pub acct_pay: Decimal,
    #[serde(with = "money")]
    pub psn_cash_pay: Decimal,
    /// "1" when refunded by 2208.
    pub refd_setl_flag: String,
    /// "1" when reversed by 2601.
    pub revs_flag: String,
    pub setl_time: String,
}

/// Wraps `data` as a transaction's `input` (`{"data": …}`).
pub fn data_input<T: Serialize>(data: &T) -> Value {
    json!({ "data": data })
}

/// The 2204 inputs for a batch's lines, at most `max_lines` lines each (at least one): a
/// large bill is uploaded as several 2204 calls of the same batch, as HIS programs do; each
/// line keeps its own feedetl_sn, unique within the visit.
pub fn fee_upload_inputs(lines: &[FeeDetailIn], max_lines: usize) -> impl Iterator<Item = Value> {
    lines
        .chunks(max_lines.max(1))
        .map(|chunk| json!({ "feedetail": chunk }))
}

/// Reads `output[key]` as `T`; the error names the key.
pub fn output_part<T: serde::de::DeserializeOwned>(
    output: &Value,
    key: &str,
) -> Result<T, WireError> {
    let part = output
        .get(key)
        .ok_or_else(|| WireError::MissingField(key.to_owned()))?;
    serde_json::from_value(part.clone()).map_err(|e| WireError::shape(key, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::CatalogueTotals;

    fn sample() -> Setlinfo {
        let d = |s: &str| s.parse::<Decimal>().unwrap_or_default();
        Setlinfo {
            mdtrt_id: "M1".into(),
            setl_id: "S1".into(),
            psn_no: "P1".into(),
            psn_name: String::new(),
            psn_cert_type: String::new(),
            certno: String::new(),
            insutype: "310".into(),
            psn_type: "11".into(),
            med_type: "11".into(),
            setl_time: String::new(),
            amounts: SettlementAmounts {
                medfee_sumamt: d("4.52"),
                catalogue: CatalogueTotals {
                    fulamt_ownpay_amt: d("0"),
                    overlmt_selfpay: d("0"),
                    preselfpay_amt: d("0.23"),
                    inscp_scp_amt: d("4.29"),
                },
                act_pay_dedc: d("4.29"),
                hifp_pay: d("0"),
                pool_prop_selfpay: d("0"),
                fund_pay_sumamt: d("0"),
                psn_part_amt: d("4.52"),
                acct_pay: d("4.52"),
                acct_mulaid_pay: d("0"),
                psn_cash_pay: d("0"),
                hosp_part_amt: d("0"),
                balc: d("1373.63"),
            },
            medins_setl_id: String::new(),
            clr_optins: String::new(),
            clr_way: String::new(),
            clr_type: String::new(),
        }
    }

    #[test]
    fn the_hebei_sample_keeps_the_identities_and_round_trips() {
        // insurer-api.md §2.6: the 2207 sample kept as a test stub in a Hebei client.
        let s = sample();
        assert_eq!(s.amounts.check_identities(), Ok(()));
        let v = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(v["fulamt_ownpay_amt"], "0.00");
        assert_eq!(v["balc"], "1373.63");
        let mut wire = v.clone();
        wire["balc"] = json!(1373.63);
        let back: Setlinfo = serde_json::from_value(wire).unwrap_or_else(|_| sample());
        assert_eq!(back.amounts.balc.to_string(), "1373.63");
    }

    #[test]
    fn a_broken_identity_is_named() {
        let mut s = sample();
        s.amounts.psn_cash_pay = Decimal::ONE;
        let err = s.amounts.check_identities().err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("psn_part_amt"), "{err}");
    }
}
