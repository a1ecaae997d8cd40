//! The printable receipt (`settle.receipt`): the visit, the bill's lines, the split between
//! the pooled fund, the personal account(s) and cash, with the platform's field names beside
//! the Chinese labels; and for a cash-only settlement, what the patient must keep to claim it
//! back by manual reimbursement (手工报销, seed 001).
//!
//! Every text that came from elsewhere (the registration, the bill, the insurer's answer)
//! is printed through [`crate::fields::printable`]: a control character (ESC for an ESC/POS
//! printer, CR/LF that would split a line), a bidi override or a zero-width character is
//! shown escaped as `\u{…}`, never passed on — defence in depth behind the socket's checks.

use super::journal::{RequestKind, RequestState, VisitRow};
use super::lines::FeeLine;
use super::service::Settlement;
use crate::fields::printable;
use crate::mask;
use serde_json::Value;
use std::fmt::Write;

/// What to keep for 手工报销 (seed 001), printed on a cash-only receipt.
pub const MANUAL_REIMBURSEMENT_ZH: &str = "本次按全自费结算。办理手工报销请保留：医保卡原件及复印件；\
     医院开具的发票原件（需盖章）；费用明细清单；诊断证明或病历记录；部分地区需提供银行卡信息。\
     请在费用发生后6个月至1年内到参保地医保经办机构申请。";

/// The amounts a receipt shows, in order: Chinese label (indented when part of the row
/// above), the platform's field name.
pub const AMOUNT_ROWS: [(&str, &str); 15] = [
    ("医疗费总额", "medfee_sumamt"),
    ("  全自费", "fulamt_ownpay_amt"),
    ("  超限价自费", "overlmt_selfpay"),
    ("  先行自付", "preselfpay_amt"),
    ("  符合范围", "inscp_scp_amt"),
    ("起付线", "act_pay_dedc"),
    ("统筹基金", "hifp_pay"),
    ("  统筹比例", "pool_prop_selfpay"),
    ("基金合计", "fund_pay_sumamt"),
    ("个人负担", "psn_part_amt"),
    ("个人账户", "acct_pay"),
    ("  共济", "acct_mulaid_pay"),
    ("现金", "psn_cash_pay"),
    ("医院负担", "hosp_part_amt"),
    ("余额", "balc"),
];

/// Terminal columns a text takes (CJK characters are two wide).
pub fn width(text: &str) -> usize {
    text.chars()
        .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
        .sum()
}

/// `text` padded with spaces to `columns`.
pub fn pad(text: &str, columns: usize) -> String {
    format!("{text}{}", " ".repeat(columns.saturating_sub(width(text))))
}

/// The amount rows of a split or `setlinfo` (any JSON object with the platform's names);
/// fields it lacks are left out.
pub fn amount_table(amounts: &Value) -> String {
    let mut out = String::new();
    for (label, field) in AMOUNT_ROWS {
        let value = text(amounts, field);
        if !value.is_empty() {
            out.push_str(&format!("{}{field:<18}{value:>16}\n", pad(label, 14)));
        }
    }
    out
}

fn title(s: &Settlement) -> &'static str {
    match (s.kind, s.state) {
        (RequestKind::Refund, _) => "门诊结算撤销凭证",
        (_, RequestState::SelfPay) => "门诊收费凭证（全自费）",
        (_, RequestState::Settled | RequestState::Refunded) => "门诊医保结算凭证",
        _ => "门诊结算状态（未完成）",
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => printable(s).into_owned(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The credential the visit was registered with, by its 就诊凭证类型 (the number itself is
/// not printed: a card number, an ID number or an e-voucher token).
fn credential(mdtrt_cert_type: &str) -> String {
    let name = match mdtrt_cert_type {
        "01" => "医保电子凭证",
        "02" => "居民身份证",
        "03" => "社会保障卡",
        _ => "其他",
    };
    format!("{name} {}", printable(mdtrt_cert_type))
}

/// The receipt for `settlement` of `visit` with the bill's `lines`.
pub fn render(settlement: &Settlement, visit: &VisitRow, lines: &[FeeLine]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", title(settlement));
    let _ = writeln!(out, "{}", "=".repeat(40));
    let _ = writeln!(
        out,
        "姓名 psn_name        {}",
        printable(&mask::name(&visit.patient.psn_name))
    );
    let _ = writeln!(
        out,
        "凭证 mdtrt_cert_type {}",
        credential(&visit.patient.mdtrt_cert_type)
    );
    let _ = writeln!(out, "就诊ID mdtrt_id      {}", printable(&visit.mdtrt_id));
    let _ = writeln!(out, "门诊号 ipt_otp_no    {}", printable(&visit.ipt_otp_no));
    let _ = writeln!(
        out,
        "科室 dept_name       {} {}",
        printable(&visit.dept_name),
        printable(&visit.dr_name)
    );
    if let Some(id) = settlement.setl_id.as_deref() {
        let _ = writeln!(out, "结算ID setl_id       {}", printable(id));
    }
    if let Some(orig) = settlement.orig_setl_id.as_deref() {
        let _ = writeln!(out, "原结算ID orig_setl_id {}", printable(orig));
    }
    let _ = writeln!(out, "状态 state           {}", settlement.state.as_str());
    if !lines.is_empty() {
        let _ = writeln!(out, "{}", "-".repeat(40));
        for line in lines {
            let amount = line
                .amount()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            let _ = writeln!(
                out,
                "{:<20} {:>6} × {:>8} = {:>10}",
                printable(&line.fee_name),
                line.cnt.normalize(),
                line.pric.normalize(),
                amount
            );
        }
    }
    let _ = writeln!(out, "{}", "-".repeat(40));
    if let Some(info) = &settlement.setlinfo {
        out.push_str(&amount_table(info));
    }
    if settlement.state == RequestState::SelfPay {
        let _ = writeln!(out, "{}", "-".repeat(40));
        let _ = writeln!(out, "{MANUAL_REIMBURSEMENT_ZH}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::is_non_printing;
    use serde_json::json;

    #[test]
    fn names_from_anywhere_print_escaped_on_their_own_lines() {
        let visit: VisitRow = serde_json::from_value(json!({
            "mdtrt_id": "M1", "ipt_otp_no": "O1\u{0000}", "psn_no": "P",
            "psn_name": "\u{202e}王小", "insutype": "310", "psn_type": "11",
            "insuplc_admdvs": "500000", "mdtrt_cert_type": "03", "mdtrt_cert_no": "C1",
            "may_settle": "yes", "verdict_code": null, "med_type": "11", "dept_code": "A03",
            "dept_name": "内科\u{001b}[2J\u{001b}@", "dr_name": "张\r\n合计 0.00",
            "begntime": "2026-11-23 09:00:00", "state": "registered"
        }))
        .unwrap();
        let line: FeeLine = serde_json::from_value(json!({
            "feedetl_sn": "B1-001", "med_list_codg": "X", "medins_list_codg": "X",
            "fee_name": "阿莫西林\u{200b}\u{2066}胶囊\u{2069}\u{feff}", "cnt": "1", "pric": "2.00"
        }))
        .unwrap();
        let settlement = Settlement {
            request_id: "r-1".into(),
            kind: RequestKind::Settle,
            state: RequestState::Settled,
            mdtrt_id: "M1".into(),
            chrg_bchno: "B1".into(),
            setl_id: Some("S1\u{85}".into()),
            orig_setl_id: None,
            setl_date: None,
            setlinfo: Some(json!({"medfee_sumamt": "2.00", "psn_cash_pay": "2.00\u{001b}"})),
            err_msg: None,
            calls: Vec::new(),
        };
        let text = render(&settlement, &visit, &[line]);
        assert!(
            !text.chars().any(|c| c != '\n' && is_non_printing(c)),
            "{text:?}"
        );
        for shown in [
            "内科\\u{1B}[2J\\u{1B}@ 张\\u{D}\\u{A}合计 0.00",
            "\\u{202E}*",
            "O1\\u{0}",
            "S1\\u{85}",
            "阿莫西林\\u{200B}\\u{2066}胶囊\\u{2069}\\u{FEFF}",
            "2.00\\u{1B}",
        ] {
            assert!(text.contains(shown), "{shown} in {text}");
        }
        assert!(
            text.contains("凭证 mdtrt_cert_type 社会保障卡 03"),
            "{text}"
        );
        // One line per row: the title, two rules, seven visit rows, one item, two amounts.
        assert_eq!(text.lines().count(), 14, "{text}");
    }
}
