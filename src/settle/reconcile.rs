//! Reconciliation (对账, insurer-api.md §2.10, §5.1) the way the platform does it: 3201 对总账
//! per (insutype, clr_type) with the hospital's own totals; only when a total does not
//! balance, 3202 对明细账 through the file round trip (the detail file uploaded with 9101,
//! 3202 naming it, the result file downloaded with 9102 — [`crate::insurer::files`]). Every
//! difference comes with what to do about it:
//!
//! - 中心多 (`insurer_only`): the insurer holds a settlement the books compared do not.
//!   When the books are one workstation's ([`Scope::Workstation`]), it may be another
//!   workstation's of the same institution (3201 and 3202 cover the whole institution): the
//!   advice is to find who made it, never to reverse it from here.
//! - 医药机构多 (`hospital_only`): the hospital recorded a settlement the insurer does not
//!   hold (or reversed, or refunded) — the patient's insured part was not paid.
//! - 数据不一致 (`amounts_differ`): both hold it with different amounts.
//! - `unresolved`: a money-moving call whose outcome is still unknown (the daemon's resolver
//!   is reversing it).
//!
//! The comparison takes its local side as plain rows ([`LocalBooks`]: settlements and calls,
//! each with its workstation and request when known), so a hospital-wide caller can pass the
//! rows of every workstation; [`books_from_journal`] builds them from one workstation's
//! journal. The medcard extension `X302` can stand in for the file round trip against the
//! simulator ([`DetailSource::X302`]); no real platform offers it.

use super::journal::{CallRow, CallState, Journal, RequestKind, RequestRow, RequestState};
use super::service::SettleError;
use crate::clock::DateTime;
use crate::insurer::files::{
    self, BookEntry, DetailRow, ResultRow, Standing, compare_details, stmt_rslt,
};
use crate::insurer::settlement::{
    self as wire, DayDetailIn, DayDetailRow, DayTotalsIn, DayTotalsOut, DetailFileInfo,
    DetailReconcileIn, Setlinfo, StatementTotals, data_input, output_part,
};
use crate::insurer::wire::WireError;
use crate::insurer::{InsurerClient, Retry};
use crate::money::two_places;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The clearing type of outpatient settlements (清算类别 11 门诊), when a setlinfo has none.
pub const CLR_TYPE_OUTPATIENT: &str = "11";

/// A settlement as the hospital holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalSettlement {
    pub setl_id: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    pub insutype: String,
    /// 清算类别 (11 门诊 …).
    pub clr_type: String,
    pub medfee_sumamt: Decimal,
    pub fund_pay_sumamt: Decimal,
    pub acct_pay: Decimal,
    pub psn_cash_pay: Decimal,
    /// Refunded (2208) since: listed with refd_setl_flag 1, out of the totals.
    pub refunded: bool,
    /// The msgid of the 2207 that made it, when known.
    pub msgid: String,
    /// The workstation that made it (a hospital-wide caller's rows), if known.
    pub workstation: Option<String>,
    /// The caller's request_id that made it, if known.
    pub request_id: Option<String>,
}

/// A journalled money-moving call (2207, 2208, 2601).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCall {
    pub msgid: String,
    pub infno: String,
    pub state: CallState,
    pub mdtrt_id: String,
    pub psn_no: String,
    pub request_id: String,
    pub workstation: Option<String>,
}

impl LocalCall {
    fn from_row(row: &CallRow, workstation: Option<&str>) -> LocalCall {
        LocalCall {
            msgid: row.msgid.clone(),
            infno: row.infno.clone(),
            state: row.state,
            mdtrt_id: row.mdtrt_id.clone(),
            psn_no: row.psn_no.clone(),
            request_id: row.request_id.clone(),
            workstation: workstation.map(str::to_owned),
        }
    }

    /// Whether its outcome at the insurer is still in doubt (a 2207 or 2208).
    fn unresolved(&self) -> bool {
        self.state.unresolved() && (self.infno == wire::SETTLE || self.infno == wire::REFUND)
    }
}

/// Whose books are compared with the institution's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One workstation's journal: the insurer's totals and details are the whole
    /// institution's, so settlements of other workstations show as 中心多.
    Workstation,
    /// Every workstation of the institution.
    Institution,
}

/// The local side of a day: its settlements, and the calls that explain them.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalBooks {
    pub settlements: Vec<LocalSettlement>,
    pub calls: Vec<LocalCall>,
    pub scope: Scope,
}

/// How the details are compared when a total does not balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailSource {
    /// The platform's way: 9101 upload, 3202, 9102 download.
    Platform,
    /// The medcard extension X302 (the simulator's settlements of the day, compared here).
    X302,
}

/// One difference and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// insurer_only | hospital_only | amounts_differ | unresolved.
    pub kind: &'static str,
    pub setl_id: String,
    pub msgid: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    /// The workstation the local row is from, when known.
    pub workstation: Option<String>,
    /// The request the local row belongs to, when known.
    pub request_id: Option<String>,
    pub detail: String,
    pub action: String,
}

/// One (insutype, clr_type)'s totals as the hospital sent them to 3201, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalsCheck {
    pub insutype: String,
    pub clr_type: String,
    pub fixmedins_setl_cnt: u64,
    pub medfee_sumamt: String,
    pub fund_pay_sumamt: String,
    pub acct_pay: String,
    /// "0" 对平, anything else 不平.
    pub stmt_rslt: String,
    pub stmt_rslt_dscr: String,
}

impl TotalsCheck {
    fn balanced(&self) -> bool {
        self.stmt_rslt == "0" || self.stmt_rslt == "000000"
    }
}

/// How the details were compared (only when a total did not balance).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailCheck {
    /// "3202" or "X302".
    pub via: &'static str,
    /// The detail file's file_qury_no (9101).
    pub uploaded: Option<String>,
    /// The result file's (3202 → 9102).
    pub result: Option<DetailFileInfo>,
}

/// What `medcard reconcile` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub date: String,
    pub scope: Scope,
    pub totals: Vec<TotalsCheck>,
    /// None when every total balanced (no 3202 is made then).
    pub detail: Option<DetailCheck>,
    pub differences: Vec<Mismatch>,
}

impl Report {
    /// No difference and every total balanced.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.totals.iter().all(TotalsCheck::balanced)
    }
}

fn setlinfo(row: &RequestRow) -> Option<Setlinfo> {
    serde_json::from_str(row.setlinfo.as_deref()?).ok()
}

/// The call that settled `request` here (its 2207, or 2208 for a refund), as journalled.
fn settling_call<'c>(calls: &'c [CallRow], request: &RequestRow) -> Option<&'c CallRow> {
    let infno = match request.kind {
        RequestKind::Settle => wire::SETTLE,
        RequestKind::Refund => wire::REFUND,
    };
    calls.iter().find(|c| {
        c.request_id == request.request_id && c.infno == infno && c.state == CallState::Success
    })
}

/// A settlement request of the journal as a local settlement: settled or refunded since,
/// with the insurer's setlinfo.
fn local_settlement(row: &RequestRow, calls: &[CallRow]) -> Option<LocalSettlement> {
    let refunded = match (row.kind, row.state) {
        (RequestKind::Settle, RequestState::Settled) => false,
        (RequestKind::Settle, RequestState::Refunded) => true,
        _ => return None,
    };
    let info = setlinfo(row)?;
    Some(LocalSettlement {
        setl_id: row.setl_id.clone().unwrap_or(info.setl_id),
        mdtrt_id: row.mdtrt_id.clone(),
        psn_no: row.psn_no.clone(),
        insutype: info.insutype,
        clr_type: Some(info.clr_type)
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| CLR_TYPE_OUTPATIENT.to_owned()),
        medfee_sumamt: info.amounts.medfee_sumamt,
        fund_pay_sumamt: info.amounts.fund_pay_sumamt,
        acct_pay: info.amounts.acct_pay,
        psn_cash_pay: info.amounts.psn_cash_pay,
        refunded,
        msgid: settling_call(calls, row)
            .map(|c| c.msgid.clone())
            .unwrap_or_default(),
        workstation: None,
        request_id: Some(row.request_id.clone()),
    })
}

/// One workstation's books of `date` from its journal: the day's settlements (settled, or
/// refunded since) and every journalled call.
pub fn books_from_journal(journal: &Journal, date: &str) -> Result<LocalBooks, SettleError> {
    let calls = journal.all_calls()?;
    let settlements = journal
        .requests_on(date)?
        .iter()
        .filter_map(|row| local_settlement(row, &calls))
        .collect();
    Ok(LocalBooks {
        settlements,
        calls: calls.iter().map(|c| LocalCall::from_row(c, None)).collect(),
        scope: Scope::Workstation,
    })
}

/// Reconciles `date` (`yyyy-MM-dd`) for settlement agency `setl_optins`: 3201, then (only
/// when a total does not balance) the details through `detail`.
pub fn reconcile(
    books: &LocalBooks,
    link: &mut InsurerClient,
    date: &str,
    setl_optins: &str,
    detail: DetailSource,
) -> Result<Report, SettleError> {
    let totals = check_totals(link, &books.settlements, date, setl_optins)?;
    let (check, results) = if totals.iter().all(TotalsCheck::balanced) {
        (None, Vec::new())
    } else {
        let (check, results) = match detail {
            DetailSource::Platform => detail_by_file(link, &books.settlements, date, setl_optins)?,
            DetailSource::X302 => detail_by_x302(link, &books.settlements, date)?,
        };
        (Some(check), results)
    };
    let mut differences = explain(&results, books);
    differences.extend(unresolved(books));
    Ok(Report {
        date: date.to_owned(),
        scope: books.scope,
        totals,
        detail: check,
        differences,
    })
}

/// Totals of settlements that stand.
#[derive(Default)]
struct Sums {
    count: u64,
    medfee: Decimal,
    fund: Decimal,
    acct: Decimal,
    cash: Decimal,
}

impl Sums {
    fn add(&mut self, s: &LocalSettlement) {
        self.count += 1;
        self.medfee += s.medfee_sumamt;
        self.fund += s.fund_pay_sumamt;
        self.acct += s.acct_pay;
        self.cash += s.psn_cash_pay;
    }

    fn of<'s>(settlements: impl Iterator<Item = &'s LocalSettlement>) -> Sums {
        let mut sums = Sums::default();
        settlements.for_each(|s| sums.add(s));
        sums
    }

    /// The totals 3201 and 3202 send for one day.
    fn of_day(&self, date: &str) -> StatementTotals {
        StatementTotals {
            stmt_begndate: date.to_owned(),
            stmt_enddate: date.to_owned(),
            medfee_sumamt: self.medfee,
            fund_pay_sumamt: self.fund,
            fixmedins_setl_cnt: self.count,
        }
    }
}

/// 3201 for each (insutype, clr_type) of the standing settlements (310 / 11 when none).
fn check_totals(
    link: &mut InsurerClient,
    settlements: &[LocalSettlement],
    date: &str,
    setl_optins: &str,
) -> Result<Vec<TotalsCheck>, SettleError> {
    let mut groups: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for s in settlements.iter().filter(|s| !s.refunded) {
        groups
            .entry((s.insutype.clone(), s.clr_type.clone()))
            .or_default()
            .add(s);
    }
    if groups.is_empty() {
        groups.insert(("310".into(), CLR_TYPE_OUTPATIENT.into()), Sums::default());
    }
    groups
        .into_iter()
        .map(|((insutype, clr_type), sums)| {
            let input = DayTotalsIn {
                insutype: insutype.clone(),
                clr_type: clr_type.clone(),
                setl_optins: setl_optins.to_owned(),
                totals: sums.of_day(date),
                acct_pay: sums.acct,
            };
            let reply = link
                .call(wire::DAY_TOTALS, data_input(&input), Retry::Idempotent)
                .map_err(SettleError::from)?;
            let out: DayTotalsOut = output_part(&reply.output, "stmtinfo")
                .map_err(SettleError::unreadable(wire::DAY_TOTALS))?;
            Ok(TotalsCheck {
                insutype,
                clr_type,
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

fn detail_rows(settlements: &[LocalSettlement]) -> Vec<DetailRow> {
    settlements
        .iter()
        .map(|s| DetailRow {
            setl_id: s.setl_id.clone(),
            mdtrt_id: s.mdtrt_id.clone(),
            psn_no: s.psn_no.clone(),
            medfee_sumamt: s.medfee_sumamt,
            fund_pay_sumamt: s.fund_pay_sumamt,
            acct_pay: s.acct_pay,
            refd_setl_flag: if s.refunded { "1" } else { "0" }.into(),
        })
        .collect()
}

/// A file that does not read as what it should be: the answer of `infno` is unreadable.
fn unreadable_file(infno: &'static str, e: files::FileError) -> SettleError {
    SettleError::UnreadableAnswer {
        infno: infno.to_owned(),
        source: WireError::Shape {
            part: "file".into(),
            detail: e.to_string(),
        },
    }
}

/// 9101 the detail file, 3202 naming it, 9102 its result file.
fn detail_by_file(
    link: &mut InsurerClient,
    settlements: &[LocalSettlement],
    date: &str,
    setl_optins: &str,
) -> Result<(DetailCheck, Vec<ResultRow>), SettleError> {
    let entry = format!(
        "{}{}.txt",
        link.config().fixmedins_code,
        DateTime::now().compact()
    );
    let text = DetailRow::file_text(&detail_rows(settlements));
    let zipped =
        files::zip_text(&entry, &text).map_err(|e| unreadable_file(files::FILE_UPLOAD, e))?;
    let uploaded = link
        .upload_file(&format!("{entry}.zip"), &zipped)
        .map_err(SettleError::from)?;
    let sums = Sums::of(settlements.iter().filter(|s| !s.refunded));
    let input = DetailReconcileIn {
        setl_optins: setl_optins.to_owned(),
        file_qury_no: uploaded.file_qury_no.clone(),
        totals: sums.of_day(date),
        cash_payamt: sums.cash,
    };
    let reply = link
        .call(
            wire::DETAIL_RECONCILE,
            data_input(&input),
            Retry::Idempotent,
        )
        .map_err(SettleError::from)?;
    let fileinfo: DetailFileInfo = output_part(&reply.output, "fileinfo")
        .map_err(SettleError::unreadable(wire::DETAIL_RECONCILE))?;
    let bytes = link
        .download_file(&fileinfo.file_qury_no, &fileinfo.filename)
        .map_err(SettleError::from)?;
    let results = files::unzip_text(&bytes)
        .and_then(|text| ResultRow::parse_file(&text))
        .map_err(|e| unreadable_file(files::FILE_DOWNLOAD, e))?;
    let check = DetailCheck {
        via: wire::DETAIL_RECONCILE,
        uploaded: Some(uploaded.file_qury_no),
        result: Some(fileinfo),
    };
    Ok((check, results))
}

/// The X302 extension's list of the day, compared here as 3202 would.
fn detail_by_x302(
    link: &mut InsurerClient,
    settlements: &[LocalSettlement],
    date: &str,
) -> Result<(DetailCheck, Vec<ResultRow>), SettleError> {
    let input = data_input(&DayDetailIn {
        stmt_date: date.to_owned(),
    });
    let reply = link
        .call(wire::DAY_DETAIL, input, Retry::Idempotent)
        .map_err(SettleError::from)?;
    let listed: Vec<DayDetailRow> =
        output_part(&reply.output, "detail").map_err(SettleError::unreadable(wire::DAY_DETAIL))?;
    let books: Vec<BookEntry> = listed
        .into_iter()
        .map(|r| BookEntry {
            standing: match (r.revs_flag.as_str(), r.refd_setl_flag.as_str()) {
                ("1", _) => Standing::Reversed,
                (_, "1") => Standing::Refunded,
                _ => Standing::Settled,
            },
            setl_id: r.setl_id,
            mdtrt_id: r.mdtrt_id,
            psn_no: r.psn_no,
            msgid: r.msgid,
            medfee_sumamt: r.medfee_sumamt,
            fund_pay_sumamt: r.fund_pay_sumamt,
            acct_pay: r.acct_pay,
        })
        .collect();
    let check = DetailCheck {
        via: wire::DAY_DETAIL,
        uploaded: None,
        result: None,
    };
    Ok((check, compare_details(&detail_rows(settlements), &books)))
}

/// The result rows that do not balance, each with what to do.
fn explain(results: &[ResultRow], books: &LocalBooks) -> Vec<Mismatch> {
    let ours: HashMap<&str, &LocalSettlement> = books
        .settlements
        .iter()
        .map(|s| (s.setl_id.as_str(), s))
        .collect();
    let mut out: Vec<Mismatch> = results
        .iter()
        .filter(|r| r.stmt_rslt != stmt_rslt::BALANCED && r.stmt_rslt != "000000")
        .map(|r| {
            let local = ours.get(r.setl_id.as_str()).copied();
            let mut m = match (r.stmt_rslt.as_str(), local) {
                (stmt_rslt::INSURER_ONLY, _) | (_, None) => insurer_only(r, books),
                (stmt_rslt::HOSPITAL_ONLY, Some(s)) => {
                    hospital_only(r, s, "unknown to the insurer")
                }
                (_, Some(s)) if r.refd_setl_flag == "1" && !s.refunded => {
                    hospital_only(r, s, "refunded at the insurer")
                }
                (_, Some(s)) if s.refunded && r.refd_setl_flag != "1" => refund_not_applied(r, s),
                (_, Some(s)) => amounts_differ(r, s),
            };
            if m.kind != "insurer_only" && in_doubt(books, &m.mdtrt_id) {
                // e.g. a 2208 the insurer applied whose answer was lost: being reversed.
                m.action = WAIT.into();
            }
            m
        })
        .collect();
    out.sort_by(|a, b| (a.kind, &a.setl_id).cmp(&(b.kind, &b.setl_id)));
    out
}

const WAIT: &str = "wait: an unanswered call of this visit is being reversed (2601) by the \
                    daemon's resolver; reconcile again after it is resolved";

fn in_doubt(books: &LocalBooks, mdtrt_id: &str) -> bool {
    books
        .calls
        .iter()
        .any(|c| c.mdtrt_id == mdtrt_id && c.unresolved())
}

fn mismatch(kind: &'static str, r: &ResultRow, detail: String, action: String) -> Mismatch {
    Mismatch {
        kind,
        setl_id: r.setl_id.clone(),
        msgid: r.msgid.clone(),
        mdtrt_id: r.mdtrt_id.clone(),
        psn_no: r.psn_no.clone(),
        workstation: None,
        request_id: None,
        detail,
        action,
    }
}

/// Attributed to the local row it concerns.
fn attributed(mut m: Mismatch, workstation: &Option<String>, request_id: Option<&str>) -> Mismatch {
    m.workstation = workstation.clone();
    m.request_id = request_id.map(str::to_owned);
    m
}

/// 中心多: who made it decides what to do.
fn insurer_only(r: &ResultRow, books: &LocalBooks) -> Mismatch {
    let call = books
        .calls
        .iter()
        .find(|c| c.msgid == r.msgid && c.infno == wire::SETTLE);
    let memo = if r.memo.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.memo)
    };
    let Some(call) = call else {
        let (detail, action) = nobody_journalled(r, books.scope);
        return mismatch("insurer_only", r, format!("中心多{memo}: {detail}"), action);
    };
    let action = if call.unresolved() {
        "wait: the daemon's resolver is reversing it (2601); run reconcile again".to_owned()
    } else {
        format!(
            "this workstation made it (request {}) but holds no settlement for it: if the patient \
             did not pay for visit {}, reverse it once with 2601 omsgid={} oinfno=2207; if they \
             did, record it (医保单边)",
            call.request_id, r.mdtrt_id, r.msgid
        )
    };
    let detail = format!(
        "中心多{memo}: the journal has its 2207 as {}",
        call.state.as_str()
    );
    attributed(
        mismatch("insurer_only", r, detail, action),
        &call.workstation,
        Some(&call.request_id),
    )
}

/// 中心多 with no 2207 of that msgid in the books compared.
fn nobody_journalled(r: &ResultRow, scope: Scope) -> (String, String) {
    match scope {
        Scope::Workstation => (
            format!(
                "no 2207 with msgid {} in this workstation's journal: 3201/3202 cover every \
                 workstation of the institution, so another workstation (or another program of \
                 the same fixmedins_code) most likely made it",
                r.msgid
            ),
            format!(
                "do NOT reverse it from this workstation: a patient may have paid for it at \
                 another counter. Look for msgid {} in the other workstations' journals \
                 (`medcard journal` there, or the hospital-wide reconciliation); if one made it, \
                 it is theirs and nothing is wrong. Only if no workstation made it is it 医保单边: \
                 the finance office decides (record it if the patient paid; otherwise reverse it \
                 once with 2601 omsgid={} oinfno=2207)",
                r.msgid, r.msgid
            ),
        ),
        Scope::Institution => (
            format!(
                "no workstation of the institution journalled a 2207 with msgid {}",
                r.msgid
            ),
            format!(
                "医保单边: find out who made it (a program outside medcard using this \
                 fixmedins_code?) before acting; record it if a patient paid for visit {}; \
                 otherwise the finance office reverses it once with 2601 omsgid={} oinfno=2207",
                r.mdtrt_id, r.msgid
            ),
        ),
    }
}

/// 医药机构多: recorded here, not standing at the insurer.
fn hospital_only(r: &ResultRow, s: &LocalSettlement, state: &str) -> Mismatch {
    let detail = format!(
        "医药机构多: settled here{}, {state}{}",
        s.request_id
            .as_deref()
            .map(|id| format!(" (request {id})"))
            .unwrap_or_default(),
        if r.memo.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.memo)
        }
    );
    let m = Mismatch {
        msgid: s.msgid.clone(),
        mdtrt_id: s.mdtrt_id.clone(),
        psn_no: s.psn_no.clone(),
        ..mismatch(
            "hospital_only",
            r,
            detail,
            "the insured part was not paid: settle the visit again, or collect it in cash \
             (HIS单边)"
                .into(),
        )
    };
    attributed(m, &s.workstation, s.request_id.as_deref())
}

/// Refunded here, still standing at the insurer.
fn refund_not_applied(r: &ResultRow, s: &LocalSettlement) -> Mismatch {
    let detail = format!(
        "数据不一致: refunded here, standing at the insurer ({})",
        r.memo
    );
    let action = format!(
        "the insurer did not apply the refund: if the patient was given the insured part back, \
         reverse the settlement once with 2601 omsgid={} oinfno=2207 (it was made by the \
         workstation that refunded it)",
        r.msgid
    );
    attributed(
        mismatch("insurer_only", r, detail, action),
        &s.workstation,
        s.request_id.as_deref(),
    )
}

/// 数据不一致: amounts.
fn amounts_differ(r: &ResultRow, s: &LocalSettlement) -> Mismatch {
    let m = mismatch(
        "amounts_differ",
        r,
        format!("数据不一致: {}", r.memo),
        "the insurer's amounts stand: correct the hospital's record and the patient's bill".into(),
    );
    attributed(m, &s.workstation, s.request_id.as_deref())
}

fn unresolved(books: &LocalBooks) -> Vec<Mismatch> {
    books
        .calls
        .iter()
        .filter(|c| c.unresolved())
        .map(|c| Mismatch {
            kind: "unresolved",
            setl_id: String::new(),
            msgid: c.msgid.clone(),
            mdtrt_id: c.mdtrt_id.clone(),
            psn_no: c.psn_no.clone(),
            workstation: c.workstation.clone(),
            request_id: Some(c.request_id.clone()),
            detail: format!("{} {} is {}", c.infno, c.msgid, c.state.as_str()),
            action: "start the daemon (its resolver reverses it with 2601), then reconcile again"
                .into(),
        })
        .collect()
}

/// The report as text, for `medcard reconcile`.
pub fn render(report: &Report) -> String {
    let mut out = format!("对账 {} — reconciliation\n", report.date);
    for t in &report.totals {
        let verdict = if t.balanced() {
            "对平 balanced"
        } else {
            "不平 NOT balanced"
        };
        out.push_str(&format!(
            "3201 insutype {} clr_type {}: {} settlements, medfee_sumamt {}, fund_pay_sumamt {}, acct_pay {} → {verdict} {}\n",
            t.insutype, t.clr_type, t.fixmedins_setl_cnt, t.medfee_sumamt, t.fund_pay_sumamt, t.acct_pay, t.stmt_rslt_dscr
        ));
    }
    if report.scope == Scope::Workstation && !report.totals.iter().all(TotalsCheck::balanced) {
        out.push_str(
            "note: the insurer's totals and details are the whole institution's (every \
             workstation of this fixmedins_code); this report compares this workstation's \
             journal only\n",
        );
    }
    match &report.detail {
        None => out.push_str("3202: not needed (every total balanced)\n"),
        Some(d) => out.push_str(&detail_line(d)),
    }
    if report.differences.is_empty() {
        out.push_str("no differences\n");
    }
    for d in &report.differences {
        out.push_str(&format!(
            "{:<15} setl_id {} msgid {} mdtrt_id {}{}\n    {}\n    what to do: {}\n",
            d.kind,
            d.setl_id,
            d.msgid,
            d.mdtrt_id,
            origin(d),
            d.detail,
            d.action
        ));
    }
    out
}

fn detail_line(d: &DetailCheck) -> String {
    match (&d.uploaded, &d.result) {
        (Some(up), Some(result)) => format!(
            "3202: detail file {up} (9101), result file {} {} (9102)\n",
            result.file_qury_no, result.filename
        ),
        _ => format!(
            "{}: the insurer's settlements of the day (simulator extension)\n",
            d.via
        ),
    }
}

/// " (workstation W, request R)" for what is known.
fn origin(m: &Mismatch) -> String {
    let parts: Vec<String> = [
        m.workstation.as_deref().map(|w| format!("workstation {w}")),
        m.request_id.as_deref().map(|r| format!("request {r}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
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
            setlinfo: serde_json::to_string(&serde_json::json!({
                "mdtrt_id": "M1", "setl_id": setl_id, "psn_no": "P1", "insutype": "310",
                "med_type": "11", "medfee_sumamt": "5.00", "fulamt_ownpay_amt": "0",
                "overlmt_selfpay": "0", "preselfpay_amt": "0", "inscp_scp_amt": "5.00",
                "act_pay_dedc": "5.00", "hifp_pay": "0", "pool_prop_selfpay": "0",
                "fund_pay_sumamt": "0", "psn_part_amt": "5.00", "acct_pay": "5.00",
                "acct_mulaid_pay": "0", "psn_cash_pay": "0", "hosp_part_amt": "0",
                "balc": "0", "clr_type": "11"
            }))
            .ok(),
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
        let local = local_settlement(&settled("r1", "S1"), &calls);
        assert_eq!(local.as_ref().map(|l| l.msgid.as_str()), Some("H0003"));
        let books = LocalBooks {
            settlements: local.into_iter().collect(),
            calls: calls.iter().map(|c| LocalCall::from_row(c, None)).collect(),
            scope: Scope::Workstation,
        };
        let results = compare_details(&detail_rows(&books.settlements), &[]);
        let found = explain(&results, &books);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "hospital_only");
        assert_eq!(found[0].msgid, "H0003");
        assert_eq!(found[0].setl_id, "S1");
        assert_eq!(found[0].request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn another_workstations_settlement_is_not_to_be_reversed_from_here() {
        let theirs = ResultRow {
            psn_no: "P9".into(),
            mdtrt_id: "M9".into(),
            setl_id: "S9".into(),
            msgid: "H0009".into(),
            stmt_rslt: stmt_rslt::INSURER_ONLY.into(),
            refd_setl_flag: "0".into(),
            memo: String::new(),
        };
        let mut books = LocalBooks {
            settlements: Vec::new(),
            calls: Vec::new(),
            scope: Scope::Workstation,
        };
        let here = explain(std::slice::from_ref(&theirs), &books);
        assert_eq!(here[0].kind, "insurer_only");
        assert!(here[0].action.starts_with("do NOT reverse"), "{here:?}");
        books.scope = Scope::Institution;
        let hospital = explain(&[theirs], &books);
        assert!(hospital[0].action.starts_with("医保单边"), "{hospital:?}");
    }
}
