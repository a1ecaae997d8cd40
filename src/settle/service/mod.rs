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
//!
//! This file holds the types and the [`Settler`]'s links, locks and policies; the work is in
//! `visit` (2201–2203), `preview` (2204–2206 and the local split), `commit` (2207, 2208),
//! `resolve` (2601 and the resolver's passes), `report` (status, lists, receipts) and
//! `patient` (who is registered: from a card read or by ID number).

use super::calc::{AccountFunds, Split, YearToDate, settle};
use super::crash::{self, Point};
use super::journal::{
    CallOutcome, CallRow, CallState, Journal, PreviewRow, RequestKind, RequestRow, RequestState,
    RequestUpdate, VisitRow,
};
use super::lines::{FeeLine, LineError, LineSplit, split_line};
use super::policy::{Policy, PolicyError, RuleKey, is_retired};
use crate::cache::{Cache, CacheError};
use crate::clock::DateTime;
use crate::fields::{self, FieldError};
use crate::insurer::settlement::{
    self as wire, CancelRegisterIn, FeeCancelIn, FeeDetailIn, RefundIn, RegisterIn, RegisterOut,
    ReversalIn, Setlinfo, SettleIn, SettleOut, VisitInfoIn, data_input, output_part,
};
use crate::insurer::wire::WireError;
use crate::insurer::{InsurerClient, LinkError, Partition, Refusal, Reply, Retry, Uncertainty};
use crate::mask;
use crate::metrics::{Metrics, SettlementKind, SettlementOutcome};
use crate::money::{CatalogueTotals, Difference, zero_fen};
use crate::verdict::MaySettle;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

mod commit;
mod patient;
mod preview;
mod report;
mod resolve;
mod visit;

pub use super::journal::{Patient, VisitState};
pub use crate::insurer::Terminal;
pub use patient::CardFacts;
use preview::settle_input;
use resolve::Reversal;

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
    /// The verdict's code (`lost`, `not_insured` …) forbids insurance settlement.
    #[error("this card may not settle with insurance ({0}); take payment in cash")]
    NotAllowed(String),
    /// The card's verdict says `no`; its messages say why.
    #[error("this card may not settle with insurance: {message_en}")]
    CardMayNotSettle {
        message_en: String,
        message_zh: String,
    },
    #[error("the insurer does not know this card's holder: take payment in cash")]
    HolderUnknown,
    /// The 医保电子凭证 could not be used: the code expired, was used, is unknown, or its
    /// token is no longer honoured. The patient refreshes the code and shows it again.
    #[error("the insurer refused the e-voucher ({problem}): {err_msg}")]
    EcVoucherRefused { problem: EcProblem, err_msg: String },
    #[error("batch {chrg_bchno} is settled, or being settled, by request {request_id}")]
    BatchSettled {
        chrg_bchno: String,
        request_id: String,
    },
    /// The platform refused (infcode ≠ 0) with its message.
    #[error("the insurer refused: {err_msg}")]
    Refused { infcode: i64, err_msg: String },
    /// The platform answered, but not in the transaction's shape.
    #[error("the insurer's {infno} answer cannot be read: {source}")]
    UnreadableAnswer {
        infno: String,
        #[source]
        source: WireError,
    },
    #[error("the insurer cannot be reached now ({0}); nothing was charged")]
    InsurerDown(#[source] LinkError),
    /// The platform said it is busy (系统繁忙, 请稍后再试): not processed, not final.
    #[error(
        "the insurer is busy ({err_msg}); nothing was charged — retry later with the same \
         request_id"
    )]
    InsurerBusy { err_msg: String },
    /// HTTP 413: the request (a bill's lines) is larger than the platform takes; retrying
    /// it as it is can never work.
    #[error(
        "the insurer refused the {infno} request as too large (HTTP 413, {bytes} bytes); \
         nothing was charged — split the bill into smaller parts (fewer lines per \
         settlement) and preview each"
    )]
    TooLarge { infno: String, bytes: usize },
    /// Every attempt of a commit was undone (reversed, or never applied).
    #[error(
        "the insurer cannot be reached now ({attempts} attempts were undone; nothing was \
         charged — retry with the same request_id)"
    )]
    AttemptsUndone { attempts: u32 },
    #[error(
        "the outcome of request {request_id} is not known yet: medcard is reversing the \
         unanswered call; ask settle.status or retry settle.commit with the same request_id"
    )]
    Unknown { request_id: String },
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error("no insurer link is configured (insurer.url)")]
    NoInsurer,
    #[error("policy: {0}")]
    Policy(#[source] PolicyError),
    /// Neither a policy for the person's region and insutype nor the default one is loaded.
    #[error("policy: no policy {0}")]
    NoPolicy(String),
    /// The journal could not be written before the call: nothing was sent.
    #[error(
        "the journal cannot be written ({source}): nothing was sent to the insurer and nothing \
         was charged; free disk space (system.info shows the journal's state) and retry"
    )]
    JournalUnwritable {
        #[source]
        source: CacheError,
    },
    /// A money-moving call went out but its outcome could not be journalled.
    #[error(
        "the outcome of request {request_id} is not known: the call reached the insurer but \
         the journal cannot be written ({source}); take no payment another way — medcard \
         reverses the call once the journal can be written again; ask settle.status or retry \
         settle.commit with the same request_id later"
    )]
    OutcomeUnrecorded {
        request_id: String,
        #[source]
        source: CacheError,
    },
    /// 2201 answered but the visit could not be journalled; `cancelled`: undone with 2202.
    #[error(
        "the insurer registered visit {mdtrt_id} but the journal cannot be written \
         ({source}); {}",
        if *cancelled {
            "the registration was cancelled (2202): nothing is registered; free disk space and \
             register again"
        } else {
            "cancelling it (2202) failed too: the visit stays registered at the insurer; free \
             disk space, then cancel it there"
        }
    )]
    RegistrationUnrecorded {
        mdtrt_id: String,
        cancelled: bool,
        #[source]
        source: CacheError,
    },
    /// 2202 answered but the visit's cancellation could not be journalled.
    #[error(
        "the insurer cancelled visit {mdtrt_id} (2202) but the journal cannot be written \
         ({source}): the journal still has it registered; free disk space (system.info shows \
         the journal's state) and call visit.cancel again to record it"
    )]
    CancellationUnrecorded {
        mdtrt_id: String,
        #[source]
        source: CacheError,
    },
    /// A preview the journal cannot record (its uploads move no money).
    #[error(
        "the journal cannot be written ({source}): the preview is not recorded and nothing \
         was charged; free disk space (system.info shows the journal's state) and preview \
         again"
    )]
    PreviewUnrecorded {
        #[source]
        source: CacheError,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Why a 医保电子凭证 was refused, in the order a patient's phone would fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum EcProblem {
    /// The code's minutes have passed: the patient refreshes it.
    #[error(
        "the QR code has expired; ask the patient to refresh it on the phone and show it again"
    )]
    CodeExpired,
    /// The code was scanned before (each code is single-use): the patient refreshes it.
    #[error(
        "the QR code was already used; ask the patient to refresh it on the phone and show it again"
    )]
    CodeUsed,
    /// No such code: not a 医保电子凭证, or mistyped.
    #[error(
        "the QR code is not a medical-insurance e-voucher the insurer knows; scan it again, or use the card or the ID number"
    )]
    CodeUnknown,
    /// The token the code gave is no longer honoured: the patient shows a fresh code.
    #[error("the e-voucher has lapsed; ask the patient to show a fresh QR code")]
    TokenInvalid,
}

impl From<LinkError> for SettleError {
    /// A refusal is the insurer's (busy: not final; 413: the request's size); anything
    /// else is the insurer out of reach.
    fn from(e: LinkError) -> SettleError {
        match e {
            LinkError::Business { infcode, err_msg } => SettleError::Refused { infcode, err_msg },
            LinkError::Busy { err_msg, .. } => SettleError::InsurerBusy { err_msg },
            LinkError::TooLarge { infno, bytes } => SettleError::TooLarge { infno, bytes },
            other => SettleError::InsurerDown(other),
        }
    }
}

impl SettleError {
    /// A journal error before anything was sent: [`SettleError::JournalUnwritable`] when the
    /// file or the disk failed, else as it was.
    pub fn unsent(self) -> SettleError {
        match self {
            SettleError::Cache(source) if source.is_storage_failure() => {
                SettleError::JournalUnwritable { source }
            }
            other => other,
        }
    }

    /// A journal error during a preview: [`SettleError::PreviewUnrecorded`] when the file or
    /// the disk failed (whether or not its 2204 went out: a held batch is deleted by the
    /// next preview), else as it was.
    pub fn preview_unrecorded(self) -> SettleError {
        match self {
            SettleError::Cache(source) if source.is_storage_failure() => {
                SettleError::PreviewUnrecorded { source }
            }
            other => other,
        }
    }

    /// A journal error once a money-moving call of `request_id` went out: its outcome is
    /// unknown ([`SettleError::OutcomeUnrecorded`]), whatever the error.
    pub fn after_send(request_id: &str) -> impl FnOnce(SettleError) -> SettleError + '_ {
        move |e| match e {
            SettleError::Cache(source) => SettleError::OutcomeUnrecorded {
                request_id: request_id.to_owned(),
                source,
            },
            other => other,
        }
    }

    /// `infno`'s answer did not have its shape.
    pub fn unreadable(infno: &str) -> impl FnOnce(WireError) -> SettleError + '_ {
        move |source| SettleError::UnreadableAnswer {
            infno: infno.to_owned(),
            source,
        }
    }
}

/// A request the settlement service refuses as asked (the caller's to correct).
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    #[error("items is empty: a bill needs at least one line")]
    EmptyBill,
    /// More lines than `settle.max_bill_lines`.
    #[error(
        "the bill has {lines} lines, more than the {max} one bill may have \
         (settle.max_bill_lines): split it into several bills"
    )]
    TooManyLines { lines: usize, max: usize },
    /// A fee line the split refuses (quantity, price, amount out of range).
    #[error(transparent)]
    BadLine(#[from] LineError),
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field the platform's rules refuse (length, non-printing characters, ID number).
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("limit must be 1–{max}, not {limit}", max = MAX_LIST_LIMIT)]
    ListLimit { limit: usize },
    #[error(
        "after {after} is no request listed on {date}: give the request_id of the last \
         settlement of the previous page (its `next`)"
    )]
    UnknownAfter { after: String, date: String },
    #[error("give request_id or setl_id")]
    NoRequestOrSettlement,
    #[error("request_id must be 1–64 printable ASCII characters")]
    BadRequestId,
    #[error(
        "request_id {request_id} was already used for {used_for}: use a new request_id for a \
         new settlement"
    )]
    RequestIdReused {
        request_id: String,
        /// `preview P…` or `the refund of S…`.
        used_for: String,
    },
    #[error("settlement {setl_id} is {state}, not settled: nothing to refund")]
    NotSettled {
        setl_id: String,
        state: &'static str,
    },
    #[error(
        "ipt_otp_no {ipt_otp_no} belongs to visit {mdtrt_id}, {what}: registering the same \
         visit again returns it; a new visit needs a new ipt_otp_no"
    )]
    IptOtpNoUsed {
        ipt_otp_no: String,
        mdtrt_id: String,
        /// `which was cancelled`, `registered with another dept_name` …
        what: String,
    },
    #[error(
        "visit {mdtrt_id} has settlement request {request_id} ({state}): refund it before \
         cancelling"
    )]
    VisitHasSettlement {
        mdtrt_id: String,
        request_id: String,
        state: &'static str,
    },
}

/// `settle.max_bill_lines`'s default: well above an outpatient bill, and what one request
/// line (`socket.max_line_bytes`) carries with room to spare.
pub const DEFAULT_MAX_BILL_LINES: usize = 5000;
/// `settle.max_upload_lines`'s default: lines per 2204 call (the national spec bounds its
/// batch uploads, e.g. 3301, at 100 rows per call; HIS programs chunk 2204 alike).
pub const DEFAULT_MAX_UPLOAD_LINES: usize = 100;

/// `settle.list`'s page size when the caller names none.
pub const DEFAULT_LIST_LIMIT: usize = 200;
/// The most rows one `settle.list` answers (a whole busy day is paged, never one answer).
pub const MAX_LIST_LIMIT: usize = 1000;

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
    /// The most lines one bill (one batch) may have; a longer one is refused.
    pub max_bill_lines: usize,
    /// The most lines one 2204 call carries; a longer batch is uploaded in several calls.
    pub max_upload_lines: usize,
    /// This workstation's share of the hospital's numbers: with a node, the serials of
    /// ipt_otp_no and chrg_bchno carry it.
    pub partition: Partition,
    /// Where each journalled call's outcome is counted (the daemon's; off by default).
    pub metrics: Metrics,
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
            max_bill_lines: DEFAULT_MAX_BILL_LINES,
            max_upload_lines: DEFAULT_MAX_UPLOAD_LINES,
            partition: Partition::STANDALONE,
            metrics: Metrics::off(),
        }
    }
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
    /// Where the registration is made (the 2201 / 2203 envelope's operator): never from
    /// the caller's params — the transport that admitted the caller sets it.
    #[serde(skip)]
    pub terminal: Terminal,
}

/// A bill line as the cashier's software sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillItem {
    /// 医保目录编码.
    #[serde(alias = "med_list_codg")]
    pub code: String,
    #[serde(default, alias = "fee_name")]
    pub name: String,
    #[serde(alias = "cnt", with = "crate::money::ratio")]
    pub qty: Decimal,
    #[serde(alias = "pric", with = "crate::money::ratio")]
    pub price: Decimal,
    /// 院内目录编码 (defaults to the code).
    #[serde(default)]
    pub medins_code: String,
}

impl BillItem {
    /// The line's texts by the platform's field rules (2204: med_list_codg C(50),
    /// medins_list_codg C(150), the item's name C(200)).
    pub fn check(&self) -> Result<(), FieldError> {
        fields::MED_LIST_CODG.check(&self.code)?;
        fields::MEDINS_LIST_NAME.check(&self.name)?;
        fields::MEDINS_LIST_CODG.check(&self.medins_code)
    }
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
    pub may_settle: MaySettle,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurer_error: Option<String>,
}

/// A page of a day's settlements (`settle.list`): `next` is the `after` of the next page,
/// null when the day has no more (so far).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettlementPage {
    pub settlements: Vec<Settlement>,
    pub next: Option<String>,
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

    /// What a refusal's `err_msg` is about, by the links' rules.
    fn refusal(&self, err_msg: &str) -> Option<Refusal> {
        self.with_link(|link| Ok(link.refusal(err_msg))).ok()
    }

    /// Whether a refusal is about the message, not the request (a lapsed sign-in, a msgid
    /// seen before): it was not processed, and a new attempt may be made.
    fn about_the_message(&self, err_msg: &str) -> bool {
        matches!(
            self.refusal(err_msg),
            Some(Refusal::SignInLapsed | Refusal::DuplicateMsgid)
        )
    }

    /// An idempotent call (registration, uploads, pre-settlement): retried by the link.
    fn call(&self, infno: &str, admdvs: &str, input: Value) -> Result<Reply, SettleError> {
        self.call_from(Terminal::Counter, infno, admdvs, input)
    }

    /// [`Self::call`] made from `terminal` (the envelope's operator fields).
    fn call_from(
        &self,
        terminal: Terminal,
        infno: &str,
        admdvs: &str,
        input: Value,
    ) -> Result<Reply, SettleError> {
        self.with_link(|link| {
            link.call_from(terminal, infno, region(admdvs), input, Retry::Idempotent)
                .map_err(SettleError::from)
        })
    }

    /// The next serial of `kind` on `date` (`yyyyMMdd`), 6 digits, after the workstation's
    /// node (3 digits) when it has one: unique in the hospital, not only in this journal.
    fn serial(&self, kind: &str, date: &str) -> Result<String, SettleError> {
        let serial = self.journal.next_serial(kind, date)?;
        Ok(match self.options.partition.node() {
            Some(node) => format!("{node:03}{serial:06}"),
            None => format!("{serial:06}"),
        })
    }

    /// Counts how a journalled call of `kind` ended.
    fn count(&self, kind: SettlementKind, outcome: SettlementOutcome) {
        self.options.metrics.settlement(kind, outcome);
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
            .ok_or_else(|| SettleError::NoPolicy(self.options.default_policy.clone()))
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

/// The lines a preview stored.
fn stored_lines(preview: &PreviewRow) -> Result<Vec<FeeLine>, SettleError> {
    Ok(
        serde_json::from_str(&preview.lines).map_err(|source| CacheError::CorruptJson {
            what: "preview lines",
            source,
        })?,
    )
}

/// 医疗费总额 of `lines`.
fn medfee(lines: &[FeeLine]) -> Result<Decimal, SettleError> {
    lines.iter().try_fold(Decimal::ZERO, |sum, line| {
        let amount = line.amount().map_err(InvalidRequest::from)?;
        Ok(sum + amount)
    })
}

/// A settle request for `preview`'s batch of `visit`, before its first call.
fn settle_request(visit: &VisitRow, preview: &PreviewRow, request_id: &str) -> RequestRow {
    RequestRow::settle(
        request_id,
        &preview.preview_id,
        (&visit.mdtrt_id, &preview.chrg_bchno),
        (&visit.patient.psn_no, &visit.patient.insuplc_admdvs),
    )
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
    SettleError::Invalid(InvalidRequest::RequestIdReused {
        request_id: existing.request_id.clone(),
        used_for: what,
    })
}

/// A request_id: 1–64 printable ASCII characters.
pub fn check_request_id(request_id: &str) -> Result<(), SettleError> {
    let ok =
        (1..=64).contains(&request_id.len()) && request_id.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(InvalidRequest::BadRequestId.into())
    }
}

/// The person's region for the envelope's `insuplc_admdvs` (none when unknown).
fn region(admdvs: &str) -> Option<&str> {
    (!admdvs.is_empty()).then_some(admdvs)
}

#[cfg(test)]
mod tests {
    use super::preview::self_pay_split;
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
        assert_eq!(split.amounts.psn_cash_pay, Decimal::new(12000, 2));
        assert_eq!(split.amounts.psn_part_amt, Decimal::new(12000, 2));
        assert_eq!(split.amounts.acct_pay, Decimal::ZERO);
        assert_eq!(split.amounts.hifp_pay, Decimal::ZERO);
        assert_eq!(
            split.amounts.balc,
            Decimal::new(10280, 2),
            "the account is untouched"
        );
        assert_eq!(
            split.amounts.medfee_sumamt,
            split.amounts.fund_pay_sumamt + split.amounts.psn_part_amt
        );
        assert_eq!(
            split.amounts.psn_part_amt,
            split.amounts.acct_pay + split.amounts.psn_cash_pay
        );
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
        assert_eq!(local.amounts.differences(&insurer.amounts), []);
        insurer.amounts.acct_pay = Decimal::new(10000, 2);
        insurer.amounts.psn_cash_pay = Decimal::new(2000, 2);
        let fields: Vec<&str> = local
            .amounts
            .differences(&insurer.amounts)
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
