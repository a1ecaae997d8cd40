//! The daemon's settlement service: registering visits (2201, 2203), previews (2205, 2204,
//! 2206 beside medcard's own split), and settling and refunding **exactly once** (2207,
//! 2208, with 2601 reversals) — insurer-api.md §5.2.
//!
//! Every money-moving call is journalled before it is sent ([`super::journal`]). A call
//! with no answer is never sent again: it is reversed with 2601 (a new msgid, `omsgid` = the
//! lost one) until the insurer answers the reversal; only then is a fresh attempt made. The
//! caller's `request_id` is the idempotency key: the same request_id always ends in the same
//! one settlement, however often it is retried and whatever crashed in between. Calls for
//! one visit are serialised; different visits settle in parallel over a pool of links.
//!
//! Blocking: the socket runs these on tokio's blocking pool.

use super::calc::{AccountFunds, Split, YearToDate, settle};
use super::crash::{self, Point};
use super::journal::{
    CallOutcome, CallRow, CallState, Journal, PreviewRow, RequestKind, RequestRow, RequestState,
    RequestUpdate, VisitRow,
};
use super::lines::{CatalogueTotals, FeeLine, LineSplit, split_line};
use super::policy::{Policy, RuleKey, is_retired};
use crate::cache::{Cache, CacheError};
use crate::insurer::clock::LocalTime;
use crate::insurer::settlement::{
    self as wire, CancelRegisterIn, FeeCancelIn, FeeDetailIn, RefundIn, RegisterIn, RegisterOut,
    ReversalIn, Setlinfo, SettleIn, SettleOut, VisitInfoIn, data_input, output_part,
};
use crate::insurer::{InsurerClient, LinkError, Reply, Retry};
use crate::mask;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Why a settlement operation did not do what was asked, in the cashier's terms.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("no visit {0} was registered here")]
    UnknownVisit(String),
    #[error("visit {0} was cancelled")]
    VisitCancelled(String),
    #[error("no preview {0}: preview the bill first")]
    UnknownPreview(String),
    #[error("no settlement {0}")]
    UnknownSettlement(String),
    #[error("this card may not settle with insurance ({0}); take payment in cash")]
    NotAllowed(String),
    #[error("batch {chrg_bchno} is settled, or being settled, by request {request_id}")]
    BatchSettled {
        chrg_bchno: String,
        request_id: String,
    },
    #[error("the insurer refused: {0}")]
    Refused(String),
    #[error("the insurer cannot be reached now ({0}); nothing was charged")]
    InsurerDown(String),
    #[error(
        "the outcome of request {request_id} is not known yet: medcard is reversing the \
         unanswered call; ask settle.status or retry settle.commit with the same request_id"
    )]
    Unknown { request_id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no insurer link is configured (insurer.url)")]
    NoInsurer,
    #[error("policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// How the service settles.
#[derive(Debug, Clone)]
pub struct SettleOptions {
    /// 医院等级 for the rule choice: "1", "2" or "3".
    pub hosp_lv: String,
    /// 医疗类别 when a registration names none: 11 普通门诊.
    pub med_type: String,
    /// The policy for local previews when none matches the person's region and insutype.
    pub default_policy: String,
    /// Attempts of a 2207 / 2208 for one commit (each after the previous one was undone).
    pub max_attempts: u32,
    /// 2601 tries inside one commit before it reports `unknown` (the resolver goes on).
    pub reversal_tries: u32,
    /// Pause before the first 2601 retry; doubles each time.
    pub reversal_backoff: Duration,
}

impl Default for SettleOptions {
    fn default() -> SettleOptions {
        SettleOptions {
            hosp_lv: "3".into(),
            med_type: "11".into(),
            default_policy: "cq-seed".into(),
            max_attempts: 3,
            reversal_tries: 3,
            reversal_backoff: Duration::from_millis(100),
        }
    }
}

/// Who is being registered, from the card session (or an ID number) and the cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub psn_no: String,
    pub psn_name: String,
    pub insutype: String,
    pub psn_type: String,
    pub insuplc_admdvs: String,
    /// 03 社会保障卡, 02 居民身份证.
    pub mdtrt_cert_type: String,
    pub mdtrt_cert_no: String,
    /// The verdict's `may_settle`: yes | self_pay_only | no.
    pub may_settle: String,
    pub verdict_code: String,
    /// This year's in-scope amount as the card carries it (DF04 annual totals), when read.
    #[serde(default)]
    pub ytd_hint: Option<Decimal>,
}

/// What `visit.register` asks for besides the patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterParams {
    pub dept_code: String,
    pub dept_name: String,
    pub dr_name: String,
    /// 医师编码 (defaults to the doctor's name).
    pub atddr_no: String,
    /// 科别 (defaults to dept_code).
    pub caty: String,
    pub med_type: String,
    /// The hospital's own visit number; generated when absent.
    pub ipt_otp_no: String,
    pub main_cond_dscr: String,
}

/// A bill line as the cashier's software sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillItem {
    /// 医保目录编码.
    #[serde(alias = "med_list_codg")]
    pub code: String,
    #[serde(default, alias = "fee_name")]
    pub name: String,
    #[serde(alias = "cnt", with = "crate::settle::money::ratio")]
    pub qty: Decimal,
    #[serde(alias = "pric", with = "crate::settle::money::ratio")]
    pub price: Decimal,
    /// 院内目录编码 (defaults to the code).
    #[serde(default)]
    pub medins_code: String,
}

/// A difference between medcard's preview and the insurer's 2206.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub field: String,
    pub local: String,
    pub insurer: String,
}

/// `settle.preview`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub preview_id: String,
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    /// "insurer" (2206 answered) or "local" (the insurer could not be asked).
    pub source: String,
    pub lines: Vec<LineSplit>,
    /// medcard's own split; `null` when no policy covers the person (`local_error` says why).
    pub local: Option<Split>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_error: Option<String>,
    pub insurer: Option<Setlinfo>,
    pub differences: Vec<Difference>,
    pub may_settle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurer_error: Option<String>,
}

/// A settlement request as the socket reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settlement {
    pub request_id: String,
    pub kind: RequestKind,
    pub state: RequestState,
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    pub setl_id: Option<String>,
    pub orig_setl_id: Option<String>,
    pub setl_date: Option<String>,
    pub setlinfo: Option<Value>,
    pub err_msg: Option<String>,
    /// The journalled calls: msgid, infno, state.
    pub calls: Vec<Value>,
}

/// How a reversal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reversal {
    /// The insurer undid the call (or had undone it already).
    Reversed,
    /// The insurer never applied the call.
    NotApplied,
    /// No definite answer yet.
    StillUnknown,
}

/// The settlement service.
pub struct Settler {
    journal: Journal,
    cache: Arc<Cache>,
    links: Vec<Mutex<InsurerClient>>,
    next_link: AtomicUsize,
    policies: Vec<Policy>,
    options: SettleOptions,
    visit_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn link_error(e: LinkError) -> SettleError {
    match e {
        LinkError::Business { err_msg, .. } => SettleError::Refused(err_msg),
        other => SettleError::InsurerDown(other.to_string()),
    }
}

impl Settler {
    /// A service over `cache` with `links` (at least one; the pool's size is the number of
    /// visits that can settle at the same moment).
    pub fn new(
        cache: Arc<Cache>,
        links: Vec<InsurerClient>,
        policies: Vec<Policy>,
        options: SettleOptions,
    ) -> Settler {
        Settler {
            journal: Journal::new(cache.writer().clone()),
            cache,
            links: links.into_iter().map(Mutex::new).collect(),
            next_link: AtomicUsize::new(0),
            policies,
            options,
            visit_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The journal (for status, lists and reconciliation).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs `work` with a free link (or waits for one).
    fn with_link<T>(
        &self,
        work: impl FnOnce(&mut InsurerClient) -> Result<T, SettleError>,
    ) -> Result<T, SettleError> {
        if self.links.is_empty() {
            return Err(SettleError::NoInsurer);
        }
        let start = self.next_link.fetch_add(1, Ordering::Relaxed);
        let n = self.links.len();
        for i in 0..n {
            if let Ok(mut link) = self.links[(start + i) % n].try_lock() {
                return work(&mut link);
            }
        }
        let mut link = lock(&self.links[start % n]);
        work(&mut link)
    }

    /// An idempotent call (registration, uploads, pre-settlement): retried by the link.
    fn call(&self, infno: &str, admdvs: &str, input: Value) -> Result<Reply, SettleError> {
        self.with_link(|link| {
            let region = (!admdvs.is_empty()).then_some(admdvs);
            link.call_in(infno, region, input, Retry::Idempotent)
                .map_err(link_error)
        })
    }

    fn visit_lock(&self, mdtrt_id: &str) -> Arc<Mutex<()>> {
        let mut locks = lock(&self.visit_locks);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(mdtrt_id.to_owned()).or_default().clone()
    }

    fn policy_for(&self, insuplc_admdvs: &str, insutype: &str) -> Result<&Policy, SettleError> {
        self.policies
            .iter()
            .find(|p| {
                p.applies_to_region(insuplc_admdvs) && p.insutype.iter().any(|t| t == insutype)
            })
            .or_else(|| {
                self.policies
                    .iter()
                    .find(|p| p.id == self.options.default_policy)
            })
            .ok_or_else(|| {
                SettleError::Policy(format!("no policy {}", self.options.default_policy))
            })
    }

    // ---- visits -------------------------------------------------------------------------

    /// 2201 (+ 2203 with the medical type): registers a visit and journals it.
    pub fn register(
        &self,
        patient: &Patient,
        params: &RegisterParams,
    ) -> Result<VisitRow, SettleError> {
        if patient.may_settle == "no" {
            return Err(SettleError::NotAllowed(patient.verdict_code.clone()));
        }
        for (name, value) in [
            ("dept_code", &params.dept_code),
            ("dept_name", &params.dept_name),
            ("dr_name", &params.dr_name),
        ] {
            if value.trim().is_empty() {
                return Err(SettleError::Invalid(format!("{name} is required")));
            }
        }
        let now = LocalTime::now();
        let ipt_otp_no = if params.ipt_otp_no.is_empty() {
            let date = now.compact();
            let date = date.get(..8).unwrap_or(&date);
            let serial = self.journal.next_serial("visit", date)?;
            format!("MZ{date}{serial:06}")
        } else {
            params.ipt_otp_no.clone()
        };
        let med_type = Some(params.med_type.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.options.med_type.clone());
        let begntime = now.datetime();
        if patient.may_settle == "self_pay_only" {
            return self.register_self_pay(patient, params, ipt_otp_no, med_type, begntime);
        }
        let input = RegisterIn {
            psn_no: patient.psn_no.clone(),
            insutype: patient.insutype.clone(),
            begntime: begntime.clone(),
            mdtrt_cert_type: patient.mdtrt_cert_type.clone(),
            mdtrt_cert_no: patient.mdtrt_cert_no.clone(),
            ipt_otp_no: ipt_otp_no.clone(),
            atddr_no: Some(params.atddr_no.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| params.dr_name.clone()),
            dr_name: params.dr_name.clone(),
            dept_code: params.dept_code.clone(),
            dept_name: params.dept_name.clone(),
            caty: Some(params.caty.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| params.dept_code.clone()),
        };
        let reply = self.call(wire::REGISTER, &patient.insuplc_admdvs, data_input(&input))?;
        let out: RegisterOut = output_part(&reply.output, "data").map_err(SettleError::Refused)?;
        let visit_info = VisitInfoIn {
            mdtrt_id: out.mdtrt_id.clone(),
            psn_no: patient.psn_no.clone(),
            med_type: med_type.clone(),
            begntime: begntime.clone(),
            main_cond_dscr: params.main_cond_dscr.clone(),
            dise_codg: String::new(),
            dise_name: String::new(),
        };
        self.call(
            wire::VISIT_INFO,
            &patient.insuplc_admdvs,
            json!({"mdtrtinfo": visit_info, "diseinfo": []}),
        )?;
        let visit = visit_row(
            out.mdtrt_id,
            ipt_otp_no,
            patient,
            params,
            med_type,
            begntime,
        );
        if self.journal.visit(&visit.mdtrt_id)?.is_none() {
            self.journal.insert_visit(&visit)?;
        }
        tracing::info!(mdtrt_id = %visit.mdtrt_id, psn = %mask::name(&visit.psn_name), dept = %visit.dept_code, "visit registered");
        Ok(visit)
    }

    /// A visit of a card whose verdict allows cash only: recorded here, not at the insurer
    /// (no insurance money moves; the patient claims later by 手工报销).
    fn register_self_pay(
        &self,
        patient: &Patient,
        params: &RegisterParams,
        ipt_otp_no: String,
        med_type: String,
        begntime: String,
    ) -> Result<VisitRow, SettleError> {
        let mdtrt_id = format!("L{ipt_otp_no}");
        let visit = visit_row(mdtrt_id, ipt_otp_no, patient, params, med_type, begntime);
        self.journal.insert_visit(&visit)?;
        tracing::info!(mdtrt_id = %visit.mdtrt_id, verdict = %visit.verdict_code, "self-pay visit registered locally");
        Ok(visit)
    }

    fn registered_visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        let visit = self
            .journal
            .visit(mdtrt_id)?
            .ok_or_else(|| SettleError::UnknownVisit(mdtrt_id.to_owned()))?;
        if visit.state != "registered" {
            return Err(SettleError::VisitCancelled(mdtrt_id.to_owned()));
        }
        Ok(visit)
    }

    /// 2202: cancels a visit with nothing settled.
    pub fn cancel_visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        let guard = self.visit_lock(mdtrt_id);
        let _held = lock(&guard);
        let mut visit = self.registered_visit(mdtrt_id)?;
        let live = self.journal.requests_for_visit(mdtrt_id)?;
        if let Some(held) = live.iter().find(|r| {
            r.kind == RequestKind::Settle
                && !matches!(
                    r.state,
                    RequestState::Refused | RequestState::Retry | RequestState::Refunded
                )
        }) {
            return Err(SettleError::Invalid(format!(
                "visit {mdtrt_id} has settlement request {} ({}): refund it before cancelling",
                held.request_id,
                held.state.as_str()
            )));
        }
        if visit.may_settle != "self_pay_only" {
            let input = CancelRegisterIn {
                psn_no: visit.psn_no.clone(),
                mdtrt_id: visit.mdtrt_id.clone(),
                ipt_otp_no: visit.ipt_otp_no.clone(),
            };
            let admdvs = &visit.insuplc_admdvs;
            self.call(wire::CANCEL_REGISTER, admdvs, data_input(&input))?;
        }
        self.journal.set_visit_state(mdtrt_id, "cancelled")?;
        visit.state = "cancelled".into();
        Ok(visit)
    }

    // ---- previews -----------------------------------------------------------------------

    /// Splits the bill locally, uploads it as a new batch (2204, after deleting the visit's
    /// unsettled batches with 2205) and asks 2206; with the insurer down, the local split only.
    pub fn preview(
        &self,
        mdtrt_id: &str,
        items: &[BillItem],
        acct_used: Option<bool>,
    ) -> Result<Preview, SettleError> {
        if items.is_empty() {
            return Err(SettleError::Invalid(
                "items is empty: a bill needs at least one line".into(),
            ));
        }
        let guard = self.visit_lock(mdtrt_id);
        let _held = lock(&guard);
        let visit = self.registered_visit(mdtrt_id)?;
        let date = LocalTime::now().compact();
        let serial = self
            .journal
            .next_serial("batch", date.get(..8).unwrap_or(&date))?;
        let chrg_bchno = format!("B{}{serial:06}", date.get(2..8).unwrap_or(&date));
        let fee_lines = fee_lines(&chrg_bchno, items);
        let lines = self.split_locally(&fee_lines)?;
        let acct_used = acct_used.unwrap_or(true);
        let self_pay = visit.may_settle == "self_pay_only";
        // medcard's own split is advice: a person no policy file covers still settles.
        let (local, local_error) = match self.local_split(&visit, &lines, acct_used) {
            Ok(split) if self_pay => (Some(self_pay_split(split)), None),
            Ok(split) => (Some(split), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut row = PreviewRow {
            preview_id: format!("P{chrg_bchno}"),
            mdtrt_id: mdtrt_id.to_owned(),
            chrg_bchno,
            acct_used,
            lines: to_json(&fee_lines),
            local_split: to_json(&local),
            insurer: None,
            uploaded: false,
            fee_time: LocalTime::now().datetime(),
        };
        self.journal.insert_preview(&row)?;
        let asked = if self_pay {
            Err(SettleError::NotAllowed(format!(
                "{}: cash only, not sent to the insurer",
                visit.verdict_code
            )))
        } else {
            self.ask_insurer(&visit, &row, &fee_lines)
        };
        let (insurer, insurer_error) = match asked {
            Ok(setlinfo) => {
                row.insurer = Some(to_json(&setlinfo));
                self.journal
                    .update_preview_insurer(&row.preview_id, &to_json(&setlinfo))?;
                (Some(setlinfo), None)
            }
            Err(e) if local.is_none() && !self_pay => return Err(e),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Preview {
            differences: match (&local, &insurer) {
                (Some(local), Some(insurer)) => differences(local, insurer),
                _ => Vec::new(),
            },
            source: if insurer.is_some() {
                "insurer"
            } else {
                "local"
            }
            .into(),
            preview_id: row.preview_id,
            mdtrt_id: mdtrt_id.to_owned(),
            chrg_bchno: row.chrg_bchno,
            lines,
            local,
            local_error,
            insurer,
            may_settle: visit.may_settle,
            insurer_error,
        })
    }

    fn split_locally(&self, lines: &[FeeLine]) -> Result<Vec<LineSplit>, SettleError> {
        lines
            .iter()
            .map(|line| {
                let item = self.cache.reader().catalogue_item(&line.med_list_codg)?;
                split_line(line, item.as_ref()).map_err(|e| SettleError::Invalid(e.to_string()))
            })
            .collect()
    }

    /// medcard's own split: the cached balance and this hospital's settlements this year.
    fn local_split(
        &self,
        visit: &VisitRow,
        lines: &[LineSplit],
        acct_used: bool,
    ) -> Result<Split, SettleError> {
        let policy = self.policy_for(&visit.insuplc_admdvs, &visit.insutype)?;
        let key = RuleKey {
            insutype: &visit.insutype,
            med_type: &visit.med_type,
            hosp_lv: &self.options.hosp_lv,
            retired: is_retired(&visit.psn_type),
        };
        let rule = policy
            .rule_for(&key)
            .map_err(|e| SettleError::Policy(e.to_string()))?;
        let balc = self
            .cache
            .reader()
            .person_by_psn_no(&visit.psn_no)?
            .and_then(|p| {
                p.info
                    .insuinfo
                    .into_iter()
                    .find(|i| i.insutype == visit.insutype)
            })
            .map(|i| i.balc)
            .unwrap_or_default();
        let mut ytd = self.year_to_date(&visit.psn_no)?;
        let hint = visit
            .ytd_hint
            .as_deref()
            .and_then(|h| h.parse::<Decimal>().ok());
        ytd.inscp_scp_amt += hint.unwrap_or_default();
        let funds = AccountFunds {
            balc,
            mulaid: Vec::new(),
            acct_used,
        };
        Ok(settle(
            policy,
            rule,
            &CatalogueTotals::from_lines(lines),
            &ytd,
            &funds,
        ))
    }

    /// This calendar year's in-scope amount and fund pay of the person's settlements here.
    fn year_to_date(&self, psn_no: &str) -> Result<YearToDate, SettleError> {
        let year = LocalTime::now().year;
        let mut ytd = YearToDate {
            inscp_scp_amt: Decimal::ZERO,
            fund_pay: Decimal::ZERO,
        };
        for row in self
            .journal
            .settled_for_person(psn_no, &format!("{year}-"))?
        {
            if let Some(s) = row
                .setlinfo
                .as_deref()
                .and_then(|s| serde_json::from_str::<Setlinfo>(s).ok())
            {
                ytd.inscp_scp_amt += s.inscp_scp_amt;
                ytd.fund_pay += s.fund_pay_sumamt;
            }
        }
        Ok(ytd)
    }

    /// 2205 for the visit's earlier unsettled batches, 2204 for this one, then 2206.
    fn ask_insurer(
        &self,
        visit: &VisitRow,
        preview: &PreviewRow,
        lines: &[FeeLine],
    ) -> Result<Setlinfo, SettleError> {
        for old in self.journal.open_batches(&visit.mdtrt_id)? {
            if old != preview.chrg_bchno {
                let cancel = FeeCancelIn {
                    mdtrt_id: visit.mdtrt_id.clone(),
                    chrg_bchno: old,
                    psn_no: visit.psn_no.clone(),
                };
                self.call(wire::FEE_CANCEL, &visit.insuplc_admdvs, data_input(&cancel))?;
            }
        }
        let feedetail: Vec<FeeDetailIn> = lines
            .iter()
            .map(|l| fee_detail(visit, preview, l))
            .collect();
        self.call(
            wire::FEE_UPLOAD,
            &visit.insuplc_admdvs,
            json!({"feedetail": feedetail}),
        )?;
        let medfee: Decimal = feedetail.iter().map(|l| l.det_item_fee_sumamt).sum();
        let input = settle_input(visit, preview, medfee);
        let reply = self.call(wire::PRE_SETTLE, &visit.insuplc_admdvs, data_input(&input))?;
        let out: SettleOut = serde_json::from_value(reply.output)
            .map_err(|e| SettleError::Refused(format!("2206 answer: {e}")))?;
        Ok(out.setlinfo)
    }

    // ---- commit -------------------------------------------------------------------------

    /// 2207 for a preview, exactly once per `request_id` (see the module doc).
    pub fn commit(&self, preview_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        check_request_id(request_id)?;
        let preview = self
            .journal
            .preview(preview_id)?
            .ok_or_else(|| SettleError::UnknownPreview(preview_id.to_owned()))?;
        let guard = self.visit_lock(&preview.mdtrt_id);
        let _held = lock(&guard);
        self.resolve_visit(&preview.mdtrt_id);
        if let Some(existing) = self.earlier_request(request_id, RequestKind::Settle, preview_id)? {
            return self.continue_request(existing);
        }
        if let Some(other) = self.journal.request_for_batch(&preview.chrg_bchno)? {
            return Err(SettleError::BatchSettled {
                chrg_bchno: preview.chrg_bchno,
                request_id: other.request_id,
            });
        }
        let visit = self.registered_visit(&preview.mdtrt_id)?;
        match visit.may_settle.as_str() {
            "no" => return Err(SettleError::NotAllowed(visit.verdict_code)),
            "self_pay_only" => return self.settle_self_pay(&visit, &preview, request_id),
            _ => {}
        }
        let request = RequestRow {
            request_id: request_id.to_owned(),
            kind: RequestKind::Settle,
            preview_id: Some(preview.preview_id.clone()),
            mdtrt_id: visit.mdtrt_id.clone(),
            chrg_bchno: preview.chrg_bchno.clone(),
            psn_no: visit.psn_no.clone(),
            insuplc_admdvs: visit.insuplc_admdvs.clone(),
            orig_setl_id: None,
            state: RequestState::Pending,
            setl_id: None,
            setlinfo: None,
            err_msg: None,
            setl_date: None,
        };
        self.attempts(request, true)
    }

    /// The request journalled under `request_id`, if any; an error when it was for another
    /// preview (settle) or settlement (refund) than `key`.
    fn earlier_request(
        &self,
        request_id: &str,
        kind: RequestKind,
        key: &str,
    ) -> Result<Option<RequestRow>, SettleError> {
        let Some(existing) = self.journal.request(request_id)? else {
            return Ok(None);
        };
        let for_key = match kind {
            RequestKind::Settle => existing.preview_id.as_deref(),
            RequestKind::Refund => existing.orig_setl_id.as_deref(),
        };
        if existing.kind != kind || for_key != Some(key) {
            return Err(reused(&existing));
        }
        Ok(Some(existing))
    }

    /// A request met again: report it when final, else go on with it (unless another
    /// request has meanwhile settled its batch, or refunded its settlement).
    fn continue_request(&self, request: RequestRow) -> Result<Settlement, SettleError> {
        match request.state {
            s if s.is_final() => self.report(&request),
            RequestState::Pending | RequestState::Unknown => Err(SettleError::Unknown {
                request_id: request.request_id,
            }),
            _ => {
                self.check_no_other(&request)?;
                self.attempts(request, false)
            }
        }
    }

    /// Refuses a new attempt for `request` when another live request holds its batch (a
    /// settlement) or its settlement (a refund).
    fn check_no_other(&self, request: &RequestRow) -> Result<(), SettleError> {
        let other = match request.kind {
            RequestKind::Settle => self.journal.request_for_batch(&request.chrg_bchno)?,
            RequestKind::Refund => {
                let setl_id = request.orig_setl_id.as_deref().unwrap_or_default();
                self.journal.live_refunds(setl_id)?.into_iter().next()
            }
        };
        match other {
            Some(other) if other.request_id != request.request_id => {
                Err(SettleError::BatchSettled {
                    chrg_bchno: request.chrg_bchno.clone(),
                    request_id: other.request_id,
                })
            }
            _ => Ok(()),
        }
    }

    /// Up to `max_attempts` calls for `request`; each after the previous one was undone.
    fn attempts(&self, request: RequestRow, first: bool) -> Result<Settlement, SettleError> {
        let mut first = first;
        for _ in 0..self.options.max_attempts.max(1) {
            match self.attempt(&request, first)? {
                Some(done) => return Ok(done),
                None => first = false,
            }
        }
        Err(SettleError::InsurerDown(format!(
            "{} attempts were undone; nothing was charged — retry with the same request_id",
            self.options.max_attempts
        )))
    }

    /// One journalled call. `Ok(None)`: it was undone, try again.
    fn attempt(
        &self,
        request: &RequestRow,
        first: bool,
    ) -> Result<Option<Settlement>, SettleError> {
        // The preview as the journal has it now (an earlier attempt may have uploaded it).
        let preview = match request.kind {
            RequestKind::Settle => {
                let id = request.preview_id.as_deref().unwrap_or_default();
                Some(
                    self.journal
                        .preview(id)?
                        .ok_or_else(|| SettleError::UnknownPreview(id.to_owned()))?,
                )
            }
            RequestKind::Refund => None,
        };
        let (infno, input) = self.call_input(request, preview.as_ref())?;
        let (call, result) = self.with_link(|link| {
            // Signed in before anything is journalled: a sign-in that fails sends nothing.
            link.ensure_signed_in().map_err(link_error)?;
            let call = CallRow {
                msgid: link.next_msgid(),
                infno: infno.to_owned(),
                request_id: request.request_id.clone(),
                omsgid: None,
                state: CallState::Pending,
                psn_no: request.psn_no.clone(),
                insuplc_admdvs: request.insuplc_admdvs.clone(),
                mdtrt_id: request.mdtrt_id.clone(),
                err_msg: None,
            };
            if first {
                self.journal.begin_request(request, &call)?;
            } else {
                self.journal.add_call(&call, RequestState::Pending)?;
            }
            crash::at(Point::BeforeSend, infno);
            crash::at(Point::AfterSend, infno);
            let result = link.send(infno, &call.msgid, region(&request.insuplc_admdvs), input);
            Ok((call, result))
        })?;
        crash::at(Point::AfterReply, infno);
        self.record(request, &call, result)
    }

    /// The 2207 / 2208 input for a request.
    fn call_input(
        &self,
        request: &RequestRow,
        preview: Option<&PreviewRow>,
    ) -> Result<(&'static str, Value), SettleError> {
        match request.kind {
            RequestKind::Refund => {
                let input = RefundIn {
                    setl_id: request.orig_setl_id.clone().unwrap_or_default(),
                    mdtrt_id: request.mdtrt_id.clone(),
                    psn_no: request.psn_no.clone(),
                };
                Ok((wire::REFUND, data_input(&input)))
            }
            RequestKind::Settle => {
                let preview = preview.ok_or_else(|| {
                    SettleError::UnknownPreview(request.preview_id.clone().unwrap_or_default())
                })?;
                let visit = self.registered_visit(&request.mdtrt_id)?;
                if !preview.uploaded {
                    let lines: Vec<FeeLine> = serde_json::from_str(&preview.lines)
                        .map_err(|e| CacheError::Corrupt(e.to_string()))?;
                    let setlinfo = self.ask_insurer(&visit, preview, &lines)?;
                    self.journal
                        .update_preview_insurer(&preview.preview_id, &to_json(&setlinfo))?;
                }
                let lines: Vec<FeeLine> = serde_json::from_str(&preview.lines)
                    .map_err(|e| CacheError::Corrupt(e.to_string()))?;
                let medfee = lines
                    .iter()
                    .map(|l| super::calc::round_fen(l.cnt * l.pric))
                    .sum();
                Ok((
                    wire::SETTLE,
                    data_input(&settle_input(&visit, preview, medfee)),
                ))
            }
        }
    }

    /// Journals a call's outcome; an unanswered call is reversed before anything else.
    fn record(
        &self,
        request: &RequestRow,
        call: &CallRow,
        result: Result<Reply, LinkError>,
    ) -> Result<Option<Settlement>, SettleError> {
        let rid = request.request_id.as_str();
        // An answer that cannot be read is no answer: the call may have been applied.
        let result = result.and_then(|reply| {
            serde_json::from_value::<SettleOut>(reply.output)
                .map_err(|e| LinkError::Uncertain(format!("{} answer unreadable: {e}", call.infno)))
        });
        match result {
            Ok(out) => {
                let setlinfo = to_json(&out.setlinfo);
                let date = out
                    .setlinfo
                    .setl_time
                    .get(..10)
                    .map(str::to_owned)
                    .unwrap_or_else(|| LocalTime::now().date());
                let refunds = (request.kind == RequestKind::Refund)
                    .then_some(request.orig_setl_id.as_deref())
                    .flatten();
                let recorded = self.journal.settle_call(&CallOutcome {
                    detail: Some(&setlinfo),
                    request: Some(RequestUpdate {
                        setl_id: Some(&out.setlinfo.setl_id),
                        setlinfo: Some(&setlinfo),
                        setl_date: Some(&date),
                        ..RequestUpdate::state(rid, RequestState::Settled)
                    }),
                    refunds,
                    balance: Some((&request.psn_no, &out.setlinfo.insutype, out.setlinfo.balc)),
                    ..CallOutcome::new(&call.msgid, CallState::Success)
                })?;
                if !recorded {
                    // Cannot happen under the visit lock; if it did, the journal's record
                    // (already resolved) stands and is what the caller is shown.
                    tracing::error!(request_id = rid, msgid = %call.msgid, "an answered call was already resolved");
                }
                crash::at(Point::AfterCommit, &call.infno);
                tracing::info!(request_id = rid, setl_id = %out.setlinfo.setl_id, infno = %call.infno, cash = %out.setlinfo.psn_cash_pay, "settled");
                let done = self
                    .journal
                    .request(rid)?
                    .ok_or_else(|| SettleError::UnknownSettlement(rid.to_owned()))?;
                Ok(Some(self.report(&done)?))
            }
            Err(LinkError::Business { err_msg, .. })
                if crate::insurer::client::sign_in_lapsed(&err_msg) =>
            {
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&err_msg),
                    request: Some(RequestUpdate::state(rid, RequestState::Retry)),
                    ..CallOutcome::new(&call.msgid, CallState::Fail)
                })?;
                self.with_link(|link| link.sign_in().map(|_| ()).map_err(link_error))?;
                Ok(None)
            }
            Err(LinkError::Business { err_msg, .. }) => {
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&err_msg),
                    request: Some(RequestUpdate {
                        err_msg: Some(&err_msg),
                        ..RequestUpdate::state(rid, RequestState::Refused)
                    }),
                    ..CallOutcome::new(&call.msgid, CallState::Fail)
                })?;
                crash::at(Point::AfterCommit, &call.infno);
                Err(SettleError::Refused(err_msg))
            }
            Err(LinkError::CircuitOpen { retry_in_ms }) => {
                let why =
                    format!("not sent: the insurer link is down (retrying in {retry_in_ms} ms)");
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&why),
                    request: Some(RequestUpdate::state(rid, RequestState::Retry)),
                    ..CallOutcome::new(&call.msgid, CallState::Fail)
                })?;
                Err(SettleError::InsurerDown(why))
            }
            Err(LinkError::Uncertain(why)) => {
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&why),
                    request: Some(RequestUpdate::state(rid, RequestState::Unknown)),
                    ..CallOutcome::new(&call.msgid, CallState::Unknown)
                })?;
                tracing::warn!(request_id = rid, msgid = %call.msgid, infno = %call.infno, reason = %why, "no answer: reversing with 2601");
                match self.reverse_with_retries(call) {
                    Reversal::Reversed | Reversal::NotApplied => Ok(None),
                    Reversal::StillUnknown => Err(SettleError::Unknown {
                        request_id: rid.to_owned(),
                    }),
                }
            }
        }
    }

    /// A cash-only settlement (verdict `self_pay_only`): nothing is sent to the insurer.
    fn settle_self_pay(
        &self,
        visit: &VisitRow,
        preview: &PreviewRow,
        request_id: &str,
    ) -> Result<Settlement, SettleError> {
        let lines: Vec<FeeLine> =
            serde_json::from_str(&preview.lines).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let medfee: Decimal = lines
            .iter()
            .map(|l| super::calc::round_fen(l.cnt * l.pric))
            .sum();
        let date = LocalTime::now().date();
        let setlinfo = json!({
            "mdtrt_id": visit.mdtrt_id, "psn_no": visit.psn_no, "medfee_sumamt": medfee.to_string(),
            "psn_cash_pay": medfee.to_string(), "fund_pay_sumamt": "0.00", "acct_pay": "0.00",
            "voucher": super::receipt::MANUAL_REIMBURSEMENT_ZH,
        });
        self.journal.insert_final_request(&RequestRow {
            request_id: request_id.to_owned(),
            kind: RequestKind::Settle,
            preview_id: Some(preview.preview_id.clone()),
            mdtrt_id: visit.mdtrt_id.clone(),
            chrg_bchno: preview.chrg_bchno.clone(),
            psn_no: visit.psn_no.clone(),
            insuplc_admdvs: visit.insuplc_admdvs.clone(),
            orig_setl_id: None,
            state: RequestState::SelfPay,
            setl_id: None,
            setlinfo: Some(setlinfo.to_string()),
            err_msg: None,
            setl_date: Some(date),
        })?;
        let done = self
            .journal
            .request(request_id)?
            .ok_or_else(|| SettleError::UnknownSettlement(request_id.to_owned()))?;
        self.report(&done)
    }

    // ---- refund -------------------------------------------------------------------------

    /// 2208 for a settlement, exactly once per `request_id`.
    pub fn refund(&self, setl_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        check_request_id(request_id)?;
        let original = self
            .journal
            .request_by_setl_id(setl_id)?
            .ok_or_else(|| SettleError::UnknownSettlement(setl_id.to_owned()))?;
        let guard = self.visit_lock(&original.mdtrt_id);
        let _held = lock(&guard);
        self.resolve_visit(&original.mdtrt_id);
        if let Some(existing) = self.earlier_request(request_id, RequestKind::Refund, setl_id)? {
            return self.continue_request(existing);
        }
        let original = self
            .journal
            .request_by_setl_id(setl_id)?
            .ok_or_else(|| SettleError::UnknownSettlement(setl_id.to_owned()))?;
        if original.state != RequestState::Settled {
            return Err(SettleError::Invalid(format!(
                "settlement {setl_id} is {}, not settled: nothing to refund",
                original.state.as_str()
            )));
        }
        let request = RequestRow {
            request_id: request_id.to_owned(),
            kind: RequestKind::Refund,
            preview_id: None,
            orig_setl_id: Some(setl_id.to_owned()),
            state: RequestState::Pending,
            setl_id: None,
            setlinfo: None,
            err_msg: None,
            setl_date: None,
            ..original
        };
        self.check_no_other(&request)?;
        self.attempts(request, true)
    }

    // ---- resolving ----------------------------------------------------------------------

    /// 2601 for an unanswered call, retried with backoff up to `reversal_tries` times.
    fn reverse_with_retries(&self, call: &CallRow) -> Reversal {
        let mut pause = self.options.reversal_backoff;
        for attempt in 0..self.options.reversal_tries.max(1) {
            if attempt > 0 {
                std::thread::sleep(pause);
                pause = pause.saturating_mul(2);
            }
            match self.reverse(call) {
                Ok(Reversal::StillUnknown) => continue,
                Ok(done) => return done,
                Err(e) => {
                    tracing::error!(msgid = %call.msgid, error = %e, "journal error while reversing")
                }
            }
        }
        Reversal::StillUnknown
    }

    /// One 2601 for `call`, journalled like any money-moving call.
    fn reverse(&self, call: &CallRow) -> Result<Reversal, SettleError> {
        let input = data_input(&ReversalIn {
            psn_no: call.psn_no.clone(),
            omsgid: call.msgid.clone(),
            oinfno: call.infno.clone(),
        });
        let sent = self.with_link(|link| {
            // With the circuit open, or no sign-in, nothing would be sent: journal nothing.
            if link.circuit_open() || link.ensure_signed_in().is_err() {
                return Ok(None);
            }
            let reversal = CallRow {
                msgid: link.next_msgid(),
                infno: wire::REVERSAL.into(),
                omsgid: Some(call.msgid.clone()),
                state: CallState::Pending,
                err_msg: None,
                ..call.clone()
            };
            self.journal.add_call(&reversal, RequestState::Unknown)?;
            let result = link.send(
                wire::REVERSAL,
                &reversal.msgid,
                region(&call.insuplc_admdvs),
                input,
            );
            Ok(Some((reversal.msgid, result)))
        })?;
        let Some((msgid, result)) = sent else {
            return Ok(Reversal::StillUnknown);
        };
        let outcome = match &result {
            Ok(_) => Reversal::Reversed,
            Err(LinkError::Business { err_msg, .. }) if err_msg.contains("已冲正") => {
                Reversal::Reversed
            }
            Err(LinkError::Business { err_msg, .. }) if err_msg.contains("原交易不存在") => {
                Reversal::NotApplied
            }
            Err(LinkError::Business { err_msg, .. }) => {
                tracing::error!(omsgid = %call.msgid, err_msg = %err_msg, "2601 refused: the call stays unknown; see medcard reconcile");
                Reversal::StillUnknown
            }
            Err(_) => Reversal::StillUnknown,
        };
        self.record_reversal(call, &msgid, &result, outcome)?;
        Ok(outcome)
    }

    fn record_reversal(
        &self,
        call: &CallRow,
        msgid: &str,
        result: &Result<Reply, LinkError>,
        outcome: Reversal,
    ) -> Result<(), CacheError> {
        let err = result.as_ref().err().map(ToString::to_string);
        let own_state = match result {
            Ok(_) => CallState::Success,
            Err(LinkError::Business { .. }) | Err(LinkError::CircuitOpen { .. }) => CallState::Fail,
            Err(LinkError::Uncertain(_)) => CallState::Unknown,
        };
        self.journal.settle_call(&CallOutcome {
            err_msg: err.as_deref(),
            ..CallOutcome::new(msgid, own_state)
        })?;
        let (original, request) = match outcome {
            Reversal::Reversed => (CallState::Reversed, RequestState::Retry),
            Reversal::NotApplied => (CallState::Fail, RequestState::Retry),
            Reversal::StillUnknown => return Ok(()),
        };
        let note = match outcome {
            Reversal::NotApplied => "never applied (2601: 原交易不存在)",
            _ => "reversed by 2601",
        };
        self.journal.settle_call(&CallOutcome {
            err_msg: Some(note),
            request: Some(RequestUpdate::state(&call.request_id, request)),
            ..CallOutcome::new(&call.msgid, original)
        })?;
        tracing::info!(omsgid = %call.msgid, request_id = %call.request_id, note, "unanswered call resolved");
        Ok(())
    }

    /// Reverses the visit's unanswered calls (best effort; what stays unknown blocks it).
    fn resolve_visit(&self, mdtrt_id: &str) {
        match self.journal.unresolved_calls_for_visit(mdtrt_id) {
            Ok(calls) => {
                for call in calls {
                    self.resolve_call(&call);
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the journal"),
        }
    }

    fn resolve_call(&self, call: &CallRow) {
        if call.state == CallState::Pending {
            let _ = self.journal.settle_call(&CallOutcome {
                err_msg: Some("found PENDING after a restart"),
                request: Some(RequestUpdate::state(
                    &call.request_id,
                    RequestState::Unknown,
                )),
                ..CallOutcome::new(&call.msgid, CallState::Unknown)
            });
        }
        self.reverse_with_retries(call);
    }

    /// After a restart, before anything else: 2601s left PENDING by the dead process are
    /// UNKNOWN (their originals get a fresh 2601), then [`Self::resolve_all`].
    pub fn recover(&self) -> Result<usize, SettleError> {
        self.journal.settle_stale_reversals()?;
        self.resolve_all()
    }

    /// Resolves every unanswered call (start-up, and the background resolver); returns how
    /// many stay unknown.
    pub fn resolve_all(&self) -> Result<usize, SettleError> {
        let calls = self.journal.unresolved_calls()?;
        let mut left = 0;
        for listed in &calls {
            let guard = self.visit_lock(&listed.mdtrt_id);
            let _held = lock(&guard);
            // Read again under the visit's lock: a commit may have finished it meanwhile.
            let Some(call) = self
                .journal
                .call(&listed.msgid)?
                .filter(|c| c.state.unresolved())
            else {
                continue;
            };
            self.resolve_call(&call);
            if self
                .journal
                .call(&call.msgid)?
                .is_some_and(|c| c.state.unresolved())
            {
                left += 1;
            }
        }
        if !calls.is_empty() {
            tracing::info!(found = calls.len(), unresolved = left, "journal resolved");
        }
        Ok(left)
    }

    // ---- reports ------------------------------------------------------------------------

    /// `settle.status` by request_id or setl_id.
    pub fn status(
        &self,
        request_id: Option<&str>,
        setl_id: Option<&str>,
    ) -> Result<Settlement, SettleError> {
        let found = match (request_id, setl_id) {
            (Some(id), _) => self.journal.request(id)?,
            (None, Some(id)) => self.journal.request_by_setl_id(id)?,
            (None, None) => return Err(SettleError::Invalid("give request_id or setl_id".into())),
        };
        let row = found.ok_or_else(|| {
            SettleError::UnknownSettlement(request_id.or(setl_id).unwrap_or_default().to_owned())
        })?;
        self.report(&row)
    }

    /// `settle.list`: every request settled on `date`.
    pub fn list(&self, date: &str) -> Result<Vec<Settlement>, SettleError> {
        self.journal
            .requests_on(date)?
            .iter()
            .map(|r| self.report(r))
            .collect()
    }

    /// A request as the socket shows it.
    pub fn report(&self, row: &RequestRow) -> Result<Settlement, SettleError> {
        let calls = self
            .journal
            .calls(&row.request_id)?
            .into_iter()
            .map(|c| json!({"msgid": c.msgid, "infno": c.infno, "state": c.state, "omsgid": c.omsgid, "err_msg": c.err_msg}))
            .collect();
        Ok(Settlement {
            request_id: row.request_id.clone(),
            kind: row.kind,
            state: row.state,
            mdtrt_id: row.mdtrt_id.clone(),
            chrg_bchno: row.chrg_bchno.clone(),
            setl_id: row.setl_id.clone().filter(|s| !s.is_empty()),
            orig_setl_id: row.orig_setl_id.clone(),
            setl_date: row.setl_date.clone(),
            setlinfo: row
                .setlinfo
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            err_msg: row.err_msg.clone(),
            calls,
        })
    }

    /// The visit a settlement belongs to.
    pub fn visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        self.journal
            .visit(mdtrt_id)?
            .ok_or_else(|| SettleError::UnknownVisit(mdtrt_id.to_owned()))
    }

    /// The lines of a settlement's preview.
    pub fn preview_lines(&self, preview_id: &str) -> Result<Vec<FeeLine>, SettleError> {
        let row = self
            .journal
            .preview(preview_id)?
            .ok_or_else(|| SettleError::UnknownPreview(preview_id.to_owned()))?;
        Ok(serde_json::from_str(&row.lines).map_err(|e| CacheError::Corrupt(e.to_string()))?)
    }
}

/// The built-in policies plus every `*.toml` in `policy_dir` (a file replaces a built-in of
/// the same id); `default_policy` must be among them.
pub fn load_policies(policy_dir: &str, default_policy: &str) -> Result<Vec<Policy>, String> {
    let mut policies = Policy::built_ins().map_err(|e| e.to_string())?;
    if !policy_dir.trim().is_empty() {
        let dir = std::path::Path::new(policy_dir.trim());
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("policy_dir {}: {e}", dir.display()))?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let policy = Policy::load(&path).map_err(|e| e.to_string())?;
            policies.retain(|p| p.id != policy.id);
            policies.push(policy);
        }
    }
    if !policies.iter().any(|p| p.id == default_policy) {
        let ids: Vec<&str> = policies.iter().map(|p| p.id.as_str()).collect();
        return Err(format!(
            "no policy {default_policy:?} (known: {})",
            ids.join(", ")
        ));
    }
    Ok(policies)
}

/// A request_id met again with another preview or settlement than it was first used for.
fn reused(existing: &RequestRow) -> SettleError {
    let what = match existing.kind {
        RequestKind::Settle => format!("preview {}", existing.preview_id.as_deref().unwrap_or("?")),
        RequestKind::Refund => format!(
            "the refund of {}",
            existing.orig_setl_id.as_deref().unwrap_or("?")
        ),
    };
    SettleError::Invalid(format!(
        "request_id {} was already used for {what}: use a new request_id for a new settlement",
        existing.request_id
    ))
}

/// A request_id: 1–64 printable ASCII characters.
fn check_request_id(request_id: &str) -> Result<(), SettleError> {
    let ok =
        (1..=64).contains(&request_id.len()) && request_id.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(SettleError::Invalid(
            "request_id must be 1–64 printable ASCII characters".into(),
        ))
    }
}

fn visit_row(
    mdtrt_id: String,
    ipt_otp_no: String,
    patient: &Patient,
    params: &RegisterParams,
    med_type: String,
    begntime: String,
) -> VisitRow {
    VisitRow {
        mdtrt_id,
        ipt_otp_no,
        psn_no: patient.psn_no.clone(),
        psn_name: patient.psn_name.clone(),
        insutype: patient.insutype.clone(),
        psn_type: patient.psn_type.clone(),
        insuplc_admdvs: patient.insuplc_admdvs.clone(),
        mdtrt_cert_type: patient.mdtrt_cert_type.clone(),
        mdtrt_cert_no: patient.mdtrt_cert_no.clone(),
        med_type,
        dept_code: params.dept_code.clone(),
        dept_name: params.dept_name.clone(),
        dr_name: params.dr_name.clone(),
        may_settle: patient.may_settle.clone(),
        verdict_code: patient.verdict_code.clone(),
        ytd_hint: patient.ytd_hint.map(|d| d.to_string()),
        begntime,
        state: "registered".into(),
    }
}

/// The split of a cash-only settlement: the catalogue split kept, everything the patient's.
fn self_pay_split(mut split: Split) -> Split {
    let zero = Decimal::new(0, 2);
    split.balc += split.acct_pay - split.acct_mulaid_pay;
    for (paid, balc) in split
        .mulaid_pay
        .iter_mut()
        .zip(split.mulaid_balc.iter_mut())
    {
        *balc += *paid;
        *paid = zero;
    }
    // No insurance rule applied: no band, nothing toward the year's amounts.
    split.bands.clear();
    split.ytd_inscp_after -= split.inscp_scp_amt;
    split.ytd_fund_pay_after -= split.hifp_pay;
    split.act_pay_dedc = zero;
    split.hifp_pay = zero;
    split.pool_prop_selfpay = Decimal::ZERO;
    split.fund_pay_sumamt = zero;
    split.acct_pay = zero;
    split.acct_mulaid_pay = zero;
    split.psn_part_amt = split.medfee_sumamt;
    split.psn_cash_pay = split.medfee_sumamt;
    split
}

fn fee_lines(chrg_bchno: &str, items: &[BillItem]) -> Vec<FeeLine> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| FeeLine {
            feedetl_sn: format!("{chrg_bchno}-{:03}", i + 1),
            med_list_codg: item.code.clone(),
            medins_list_codg: Some(item.medins_code.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| item.code.clone()),
            fee_name: item.name.clone(),
            cnt: item.qty,
            pric: item.price,
        })
        .collect()
}

fn fee_detail(visit: &VisitRow, preview: &PreviewRow, line: &FeeLine) -> FeeDetailIn {
    FeeDetailIn {
        feedetl_sn: line.feedetl_sn.clone(),
        mdtrt_id: visit.mdtrt_id.clone(),
        psn_no: visit.psn_no.clone(),
        chrg_bchno: preview.chrg_bchno.clone(),
        rx_circ_flag: "0".into(),
        fee_ocur_time: preview.fee_time.clone(),
        med_list_codg: line.med_list_codg.clone(),
        medins_list_codg: line.medins_list_codg.clone(),
        fee_name: line.fee_name.clone(),
        det_item_fee_sumamt: super::calc::round_fen(line.cnt * line.pric),
        cnt: line.cnt,
        pric: line.pric,
        bilg_dept_codg: visit.dept_code.clone(),
        bilg_dept_name: visit.dept_name.clone(),
        bilg_dr_codg: visit.dr_name.clone(),
        bilg_dr_name: visit.dr_name.clone(),
        hosp_appr_flag: "1".into(),
    }
}

fn settle_input(visit: &VisitRow, preview: &PreviewRow, medfee_sumamt: Decimal) -> SettleIn {
    SettleIn {
        psn_no: visit.psn_no.clone(),
        mdtrt_cert_type: visit.mdtrt_cert_type.clone(),
        mdtrt_cert_no: visit.mdtrt_cert_no.clone(),
        med_type: visit.med_type.clone(),
        medfee_sumamt,
        psn_setlway: "01".into(),
        mdtrt_id: visit.mdtrt_id.clone(),
        chrg_bchno: preview.chrg_bchno.clone(),
        insutype: visit.insutype.clone(),
        acct_used_flag: if preview.acct_used { "1" } else { "0" }.into(),
        invono: String::new(),
    }
}

/// The person's region for the envelope's `insuplc_admdvs` (none when unknown).
fn region(admdvs: &str) -> Option<&str> {
    (!admdvs.is_empty()).then_some(admdvs)
}

/// The amounts where medcard's split and the insurer's 2206 disagree.
pub fn differences(local: &Split, insurer: &Setlinfo) -> Vec<Difference> {
    let pairs = [
        ("medfee_sumamt", local.medfee_sumamt, insurer.medfee_sumamt),
        (
            "fulamt_ownpay_amt",
            local.fulamt_ownpay_amt,
            insurer.fulamt_ownpay_amt,
        ),
        (
            "overlmt_selfpay",
            local.overlmt_selfpay,
            insurer.overlmt_selfpay,
        ),
        (
            "preselfpay_amt",
            local.preselfpay_amt,
            insurer.preselfpay_amt,
        ),
        ("inscp_scp_amt", local.inscp_scp_amt, insurer.inscp_scp_amt),
        ("act_pay_dedc", local.act_pay_dedc, insurer.act_pay_dedc),
        ("hifp_pay", local.hifp_pay, insurer.hifp_pay),
        (
            "fund_pay_sumamt",
            local.fund_pay_sumamt,
            insurer.fund_pay_sumamt,
        ),
        ("psn_part_amt", local.psn_part_amt, insurer.psn_part_amt),
        ("acct_pay", local.acct_pay, insurer.acct_pay),
        ("psn_cash_pay", local.psn_cash_pay, insurer.psn_cash_pay),
        ("balc", local.balc, insurer.balc),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(field, a, b)| Difference {
            field: field.into(),
            local: fen(a),
            insurer: fen(b),
        })
        .collect()
}

fn fen(mut d: Decimal) -> String {
    d.rescale(2);
    d.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settle::calc::AccountFunds;

    fn seed_split() -> Split {
        // Seed 000: ytd 230.00, balc 102.80, this visit 120.00 in scope.
        let policy = Policy::built_in("cq-seed").expect("cq-seed");
        let key = RuleKey {
            insutype: "310",
            med_type: "11",
            hosp_lv: "3",
            retired: false,
        };
        let rule = policy.rule_for(&key).expect("rule");
        let ytd = YearToDate {
            inscp_scp_amt: Decimal::new(23000, 2),
            fund_pay: Decimal::ZERO,
        };
        let funds = AccountFunds {
            balc: Decimal::new(10280, 2),
            mulaid: Vec::new(),
            acct_used: true,
        };
        settle(
            &policy,
            rule,
            &CatalogueTotals::in_scope_only(Decimal::new(12000, 2)),
            &ytd,
            &funds,
        )
    }

    #[test]
    fn a_cash_only_split_keeps_the_bill_and_the_balance() {
        let split = self_pay_split(seed_split());
        assert_eq!(split.psn_cash_pay, Decimal::new(12000, 2));
        assert_eq!(split.psn_part_amt, Decimal::new(12000, 2));
        assert_eq!(split.acct_pay, Decimal::ZERO);
        assert_eq!(split.hifp_pay, Decimal::ZERO);
        assert_eq!(
            split.balc,
            Decimal::new(10280, 2),
            "the account is untouched"
        );
        assert_eq!(
            split.medfee_sumamt,
            split.fund_pay_sumamt + split.psn_part_amt
        );
        assert_eq!(split.psn_part_amt, split.acct_pay + split.psn_cash_pay);
        assert_eq!(split.ytd_inscp_after, Decimal::new(23000, 2));
        assert!(split.bands.is_empty());
    }

    #[test]
    fn differences_name_the_fields_that_disagree() {
        let local = seed_split();
        let mut insurer: Setlinfo = serde_json::from_value(json!({
            "mdtrt_id": "M", "psn_no": "P", "insutype": "310", "med_type": "11",
            "medfee_sumamt": "120.00", "fulamt_ownpay_amt": "0", "overlmt_selfpay": "0",
            "preselfpay_amt": "0", "inscp_scp_amt": "120.00", "act_pay_dedc": "120.00",
            "hifp_pay": "0", "pool_prop_selfpay": "0", "fund_pay_sumamt": "0",
            "psn_part_amt": "120.00", "acct_pay": "102.80", "acct_mulaid_pay": "0",
            "psn_cash_pay": "17.20", "hosp_part_amt": "0", "balc": "0"
        }))
        .expect("setlinfo");
        assert_eq!(differences(&local, &insurer), []);
        insurer.acct_pay = Decimal::new(10000, 2);
        insurer.psn_cash_pay = Decimal::new(2000, 2);
        let fields: Vec<String> = differences(&local, &insurer)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, ["acct_pay", "psn_cash_pay"]);
    }

    #[test]
    fn request_ids_are_short_printable_ascii() {
        assert!(check_request_id("cashier-1-0001").is_ok());
        assert!(check_request_id("").is_err());
        assert!(check_request_id("收费").is_err());
        assert!(check_request_id("a b").is_err());
        assert!(check_request_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn policies_load_built_in_and_name_a_missing_default() {
        let ids: Vec<String> = load_policies("", "cq-seed")
            .expect("built-in")
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert!(
            ids.contains(&"cq-employee-outpatient".to_owned()),
            "{ids:?}"
        );
        let err = load_policies("", "nowhere").err().unwrap_or_default();
        assert!(err.contains("nowhere") && err.contains("cq-seed"), "{err}");
        assert!(load_policies("/nonexistent-policies", "cq-seed").is_err());
    }
}
