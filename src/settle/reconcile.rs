//! Reconciliation (对账, insurer-api.md §2.10, §5.1): the journal's settlements of a day
//! against the insurer's. 3201 compares the day's totals per insutype; the insurer's own list
//! of the day's settlements (the `X302` extension, standing in for 3202's file round trip)
//! is compared row by row, and every difference comes with what to do about it:
//!
//! - 中心多 (`insurer_only`): the insurer holds a settlement the hospital did not record —
//!   reverse it with 2601 (its msgid is given), or record it locally if the patient paid.
//! - 医药机构多 (`hospital_only`): the hospital recorded a settlement the insurer does not
//!   hold (or reversed) — the patient's insured part was not paid: settle again or collect it.
//! - 数据不一致 (`amounts_differ`): both hold it with different amounts.
//! - `unresolved`: a money-moving call whose outcome is still unknown (the daemon's resolver
//!   is reversing it).

use super::journal::{CallRow, CallState, Journal, RequestKind, RequestRow, RequestState};
use super::service::SettleError;
use crate::insurer::settlement::{
    self as wire, DayDetailIn, DayDetailRow, DayTotalsIn, DayTotalsOut, Setlinfo, data_input,
    output_part,
};
use crate::insurer::{InsurerClient, Retry};
use crate::money::{SettlementAmounts, two_places};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One difference and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// insurer_only | hospital_only | amounts_differ | unresolved.
    pub kind: &'static str,
    pub setl_id: String,
    pub msgid: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    pub detail: String,
    pub action: String,
}

/// One insutype's totals as the hospital sent them to 3201, and the insurer's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalsCheck {
    pub insutype: String,
    pub fixmedins_setl_cnt: u64,
    pub medfee_sumamt: String,
    pub fund_pay_sumamt: String,
    pub acct_pay: String,
    /// "0" 对平, "1" 不平.
    pub stmt_rslt: String,
    pub stmt_rslt_dscr: String,
}

/// What `medcard reconcile` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub date: String,
    pub totals: Vec<TotalsCheck>,
    pub differences: Vec<Mismatch>,
}

impl Report {
    /// No difference and every total balanced.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.totals.iter().all(|t| t.stmt_rslt == "0")
    }
}

#[derive(Default)]
struct Sums {
    count: u64,
    medfee: Decimal,
    fund: Decimal,
    acct: Decimal,
}

fn setlinfo(row: &RequestRow) -> Option<Setlinfo> {
    serde_json::from_str(row.setlinfo.as_deref()?).ok()
}

/// The insurer's amounts as far as its day list gives them (medfee_sumamt, fund_pay_sumamt,
/// acct_pay, psn_cash_pay), `ours` for the rest: compared with `ours`, only what the list
/// carries can differ.
fn as_listed(row: &DayDetailRow, ours: &SettlementAmounts) -> SettlementAmounts {
    SettlementAmounts {
        medfee_sumamt: row.medfee_sumamt,
        fund_pay_sumamt: row.fund_pay_sumamt,
        acct_pay: row.acct_pay,
        psn_cash_pay: row.psn_cash_pay,
        ..ours.clone()
    }
}

/// Reconciles `date` (`yyyy-MM-dd`) for institution region `setl_optins`.
pub fn reconcile(
    journal: &Journal,
    link: &mut InsurerClient,
    date: &str,
    setl_optins: &str,
) -> Result<Report, SettleError> {
    let local: Vec<RequestRow> = journal
        .requests_on(date)?
        .into_iter()
        .filter(|r| r.kind == RequestKind::Settle && r.state == RequestState::Settled)
        .collect();
    let input = data_input(&DayDetailIn {
        stmt_date: date.to_owned(),
    });
    let reply = link
        .call(wire::DAY_DETAIL, input, Retry::Idempotent)
        .map_err(SettleError::from)?;
    let insurer: Vec<DayDetailRow> =
        output_part(&reply.output, "detail").map_err(SettleError::unreadable(wire::DAY_DETAIL))?;
    let mut differences = compare_rows(&local, &insurer, &journal.all_calls()?);
    differences.extend(unresolved(journal)?);
    let totals = check_totals(link, &local, date, setl_optins)?;
    Ok(Report {
        date: date.to_owned(),
        totals,
        differences,
    })
}

fn compare_rows(
    local: &[RequestRow],
    insurer: &[DayDetailRow],
    calls: &[CallRow],
) -> Vec<Mismatch> {
    let active: HashMap<&str, &DayDetailRow> = insurer
        .iter()
        .filter(|r| r.refd_setl_flag != "1" && r.revs_flag != "1")
        .map(|r| (r.setl_id.as_str(), r))
        .collect();
    let recorded: HashMap<&str, &RequestRow> = local
        .iter()
        .filter_map(|r| Some((r.setl_id.as_deref()?, r)))
        .collect();
    let call_state: HashMap<&str, &CallRow> = calls.iter().map(|c| (c.msgid.as_str(), c)).collect();
    let mut out = Vec::new();
    for row in active.values() {
        match recorded.get(row.setl_id.as_str()) {
            None => out.push(insurer_only(
                row,
                call_state.get(row.msgid.as_str()).copied(),
            )),
            Some(mine) => out.extend(amounts_differ(mine, row)),
        }
    }
    for mine in local {
        let setl_id = mine.setl_id.as_deref().unwrap_or_default();
        if !active.contains_key(setl_id) {
            let mut row = hospital_only(
                mine,
                insurer.iter().find(|r| r.setl_id == setl_id),
                settling_call(calls, mine),
            );
            let in_doubt = calls
                .iter()
                .any(|c| c.mdtrt_id == mine.mdtrt_id && c.state.unresolved());
            if in_doubt {
                // e.g. a 2208 the insurer applied whose answer was lost: being reversed.
                row.action = "wait: an unanswered call of this visit is being reversed (2601); \
                              reconcile again after it is resolved"
                    .into();
            }
            out.push(row);
        }
    }
    out.sort_by(|a, b| (a.kind, &a.setl_id).cmp(&(b.kind, &b.setl_id)));
    out
}

fn insurer_only(row: &DayDetailRow, call: Option<&CallRow>) -> Mismatch {
    let (detail, action) = match call {
        Some(c) if c.state.unresolved() => (
            format!("the journal has its 2207 as {}", c.state.as_str()),
            "wait: the daemon's resolver is reversing it (2601); run reconcile again".to_owned(),
        ),
        Some(c) => (
            format!("the journal has its 2207 as {}", c.state.as_str()),
            format!(
                "reverse it: 2601 omsgid={} oinfno=2207 (医保单边)",
                row.msgid
            ),
        ),
        None => (
            "no 2207 with this msgid in the journal".to_owned(),
            format!(
                "reverse it with 2601 omsgid={} oinfno=2207, or record it if the patient paid (医保单边)",
                row.msgid
            ),
        ),
    };
    Mismatch {
        kind: "insurer_only",
        setl_id: row.setl_id.clone(),
        msgid: row.msgid.clone(),
        mdtrt_id: row.mdtrt_id.clone(),
        psn_no: row.psn_no.clone(),
        detail: format!(
            "中心多: {detail}; medfee_sumamt {}",
            two_places(row.medfee_sumamt)
        ),
        action,
    }
}

/// The call that settled `request` here (its 2207, or 2208 for a refund), as journalled.
fn settling_call<'c>(calls: &'c [CallRow], request: &RequestRow) -> Option<&'c CallRow> {
    let infno = match request.kind {
        RequestKind::Settle => "2207",
        RequestKind::Refund => "2208",
    };
    calls.iter().find(|c| {
        c.request_id == request.request_id && c.infno == infno && c.state == CallState::Success
    })
}

fn hospital_only(
    mine: &RequestRow,
    theirs: Option<&DayDetailRow>,
    call: Option<&CallRow>,
) -> Mismatch {
    let state = match theirs {
        Some(r) if r.revs_flag == "1" => "reversed at the insurer",
        Some(_) => "refunded at the insurer",
        None => "unknown to the insurer",
    };
    Mismatch {
        kind: "hospital_only",
        setl_id: mine.setl_id.clone().unwrap_or_default(),
        msgid: call.map(|c| c.msgid.clone()).unwrap_or_default(),
        mdtrt_id: mine.mdtrt_id.clone(),
        psn_no: mine.psn_no.clone(),
        detail: format!(
            "医药机构多: settled here (request {}), {state}",
            mine.request_id
        ),
        action:
            "the insured part was not paid: settle the visit again, or collect it in cash (HIS单边)"
                .into(),
    }
}

fn amounts_differ(mine: &RequestRow, theirs: &DayDetailRow) -> Option<Mismatch> {
    let ours = setlinfo(mine)?.amounts;
    let differ: Vec<String> = ours
        .differences(&as_listed(theirs, &ours))
        .iter()
        .map(|d| {
            format!(
                "{} here {} / insurer {}",
                d.field,
                two_places(d.local),
                two_places(d.insurer)
            )
        })
        .collect();
    (!differ.is_empty()).then(|| Mismatch {
        kind: "amounts_differ",
        setl_id: theirs.setl_id.clone(),
        msgid: theirs.msgid.clone(),
        mdtrt_id: theirs.mdtrt_id.clone(),
        psn_no: theirs.psn_no.clone(),
        detail: format!("数据不一致: {}", differ.join("; ")),
        action: "the insurer's amounts stand: correct the hospital's record and the patient's bill"
            .into(),
    })
}

fn unresolved(journal: &Journal) -> Result<Vec<Mismatch>, SettleError> {
    Ok(journal
        .unresolved_calls()?
        .into_iter()
        .map(|c| Mismatch {
            kind: "unresolved",
            setl_id: String::new(),
            msgid: c.msgid.clone(),
            mdtrt_id: c.mdtrt_id.clone(),
            psn_no: c.psn_no.clone(),
            detail: format!("{} {} is {}", c.infno, c.msgid, c.state.as_str()),
            action: "start the daemon (its resolver reverses it with 2601), then reconcile again"
                .into(),
        })
        .collect())
}

fn check_totals(
    link: &mut InsurerClient,
    local: &[RequestRow],
    date: &str,
    setl_optins: &str,
) -> Result<Vec<TotalsCheck>, SettleError> {
    let mut by_insutype: BTreeMap<String, Sums> = BTreeMap::new();
    for info in local.iter().filter_map(setlinfo) {
        let sums = by_insutype.entry(info.insutype.clone()).or_default();
        sums.count += 1;
        sums.medfee += info.amounts.medfee_sumamt;
        sums.fund += info.amounts.fund_pay_sumamt;
        sums.acct += info.amounts.acct_pay;
    }
    if by_insutype.is_empty() {
        by_insutype.insert("310".into(), Sums::default());
    }
    by_insutype
        .into_iter()
        .map(|(insutype, sums)| {
            let input = DayTotalsIn {
                insutype: insutype.clone(),
                clr_type: "11".into(),
                setl_optins: setl_optins.to_owned(),
                stmt_begndate: date.to_owned(),
                stmt_enddate: date.to_owned(),
                medfee_sumamt: sums.medfee,
                fund_pay_sumamt: sums.fund,
                acct_pay: sums.acct,
                fixmedins_setl_cnt: sums.count,
            };
            let reply = link
                .call(wire::DAY_TOTALS, data_input(&input), Retry::Idempotent)
                .map_err(SettleError::from)?;
            let out: DayTotalsOut = output_part(&reply.output, "stmtinfo")
                .map_err(SettleError::unreadable(wire::DAY_TOTALS))?;
            Ok(TotalsCheck {
                insutype,
                fixmedins_setl_cnt: sums.count,
                medfee_sumamt: two_places(sums.medfee),
                fund_pay_sumamt: two_places(sums.fund),
                acct_pay: two_places(sums.acct),
                stmt_rslt: out.stmt_rslt,
                stmt_rslt_dscr: out.stmt_rslt_dscr,
            })
        })
        .collect()
}

/// The report as text, for `medcard reconcile`.
pub fn render(report: &Report) -> String {
    let mut out = format!("对账 {} — reconciliation\n", report.date);
    for t in &report.totals {
        let verdict = if t.stmt_rslt == "0" {
            "对平 balanced"
        } else {
            "不平 NOT balanced"
        };
        out.push_str(&format!(
            "3201 insutype {}: {} settlements, medfee_sumamt {}, fund_pay_sumamt {}, acct_pay {} → {verdict} {}\n",
            t.insutype, t.fixmedins_setl_cnt, t.medfee_sumamt, t.fund_pay_sumamt, t.acct_pay, t.stmt_rslt_dscr
        ));
    }
    if report.differences.is_empty() {
        out.push_str("no differences\n");
    }
    for d in &report.differences {
        out.push_str(&format!(
            "{:<15} setl_id {} msgid {} mdtrt_id {}\n    {}\n    what to do: {}\n",
            d.kind, d.setl_id, d.msgid, d.mdtrt_id, d.detail, d.action
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settle::journal::test_rows::{call, request};

    fn settled(request_id: &str, setl_id: &str) -> RequestRow {
        RequestRow {
            state: RequestState::Settled,
            setl_id: Some(setl_id.into()),
            setl_date: Some("2026-12-03".into()),
            ..request(request_id)
        }
    }

    fn call_in(state: CallState, msgid: &str, infno: &str) -> CallRow {
        CallRow {
            state,
            ..call(msgid, infno, "r1")
        }
    }

    #[test]
    fn a_settlement_only_the_hospital_holds_names_the_2207_that_made_it() {
        let calls = [
            call_in(CallState::Reversed, "H0001", "2207"),
            call_in(CallState::Success, "H0002", "2601"),
            call_in(CallState::Success, "H0003", "2207"),
        ];
        let found = compare_rows(&[settled("r1", "S1")], &[], &calls);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "hospital_only");
        assert_eq!(found[0].msgid, "H0003");
        assert_eq!(found[0].setl_id, "S1");
    }
}
