//! Settlement on the socket: building the [`Settler`] from `[settle]`, the background
//! resolver that reverses unanswered calls, and the methods `visit.register`,
//! `visit.cancel`, `settle.preview`, `settle.commit`, `settle.refund`, `settle.status`,
//! `settle.list` and `settle.receipt` (docs/protocol.md). The settlement work is blocking;
//! it runs on tokio's blocking pool.

use super::config::Config;
use super::handle::pick_session_ref;
use super::rpc::{RpcError, code};
use super::server::Shared;
use super::types::CardSession;
use crate::cache::Cache;
use crate::insurer::{InsurerClient, InsurerLink, LinkError};
use crate::mask;
use crate::settle::service::{
    BillItem, Patient, RegisterParams, SettleError, SettleOptions, Settler, load_policies,
};
use crate::verdict::{MaySettle, VerdictPolicy, choose_insuinfo};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Every settlement method, and whether it moves money or registers (needs an allowed group).
pub const METHODS: [(&str, bool); 8] = [
    ("visit.register", true),
    ("visit.cancel", true),
    ("settle.preview", true),
    ("settle.commit", true),
    ("settle.refund", true),
    ("settle.status", false),
    ("settle.list", false),
    ("settle.receipt", false),
];

/// The settlement service for `config`, when both the insurer link and the cache are there.
pub fn open_settler(config: &Config, cache: Option<&Arc<Cache>>) -> Option<Arc<Settler>> {
    let cache = cache?.clone();
    if !config.insurer.enabled() {
        return None;
    }
    let settle = &config.settle;
    let policies = match load_policies(&settle.policy_dir, &settle.default_policy) {
        Ok(policies) => policies,
        Err(e) => {
            tracing::error!(error = %e, "settlement disabled: the policies cannot be loaded");
            return None;
        }
    };
    let links = (0..settle.links.max(1))
        .map(|_| {
            let mut link = config
                .insurer
                .link_config(Duration::from_millis(settle.timeout_ms));
            link.retries = 2;
            super::verdicts::client_with_msgids(link, Some(&cache))
        })
        .collect();
    let options = SettleOptions {
        hosp_lv: settle.hosp_lv.clone(),
        med_type: settle.med_type.clone(),
        default_policy: settle.default_policy.clone(),
        reversal_tries: settle.reversal_tries.max(1),
        ..SettleOptions::default()
    };
    Some(Arc::new(Settler::new(cache, links, policies, options)))
}

/// Reverses unanswered calls at start-up and every interval, until dropped.
pub struct ResolverThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ResolverThread {
    pub fn spawn(settler: Arc<Settler>, interval: Duration) -> ResolverThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("medcard-resolver".into())
            .spawn(move || {
                let mut first = true;
                while !flag.load(Ordering::Relaxed) {
                    let pass = if first {
                        settler.recover()
                    } else {
                        settler.resolve_all()
                    };
                    first = false;
                    match pass {
                        Ok(0) => {}
                        Ok(left) => tracing::warn!(left, "calls still unanswered; retrying later"),
                        Err(e) => tracing::error!(error = %e, "resolving the journal failed"),
                    }
                    super::verdicts::sleep_unless_stopped(&flag, interval);
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the resolver thread"))
            .ok();
        ResolverThread { stop, thread }
    }
}

impl Drop for ResolverThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl From<SettleError> for RpcError {
    fn from(e: SettleError) -> RpcError {
        let (code, zh) = match &e {
            SettleError::UnknownVisit(_) => (code::UNKNOWN_VISIT, "就诊ID不存在"),
            SettleError::VisitCancelled(_) => (code::UNKNOWN_VISIT, "该就诊已撤销"),
            SettleError::UnknownPreview(_) => (code::UNKNOWN_PREVIEW, "预结算不存在，请先预结算"),
            SettleError::UnknownSettlement(_) => (code::UNKNOWN_SETTLEMENT, "结算记录不存在"),
            SettleError::NotAllowed(_) => {
                (code::SETTLE_NOT_ALLOWED, "该卡不能医保结算，请按自费收费")
            }
            SettleError::BatchSettled { .. } => (code::BATCH_SETTLED, "该批次已结算"),
            SettleError::Refused(_) => (code::INSURER_REFUSED, "医保中心拒绝"),
            SettleError::InsurerDown(_) | SettleError::NoInsurer => {
                (code::INSURER_DOWN, "医保中心无法连接，未扣费")
            }
            SettleError::Unknown { .. } => {
                (code::OUTCOME_UNKNOWN, "结算结果未知，正在冲正，请稍后查询")
            }
            SettleError::Invalid(_) => (code::INVALID_PARAMS, "参数错误"),
            SettleError::Policy(_) | SettleError::Cache(_) => (code::INTERNAL, "内部错误"),
        };
        RpcError::new(code, e.to_string(), zh)
    }
}

fn settler(shared: &Shared) -> Result<Arc<Settler>, RpcError> {
    shared.services.settler.clone().ok_or_else(|| {
        RpcError::new(
            code::INSURER_DOWN,
            "settlement is not configured: it needs [insurer] url and [cache] path",
            "未配置医保结算",
        )
    })
}

fn params_of<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, RpcError> {
    T::deserialize(params).map_err(RpcError::invalid_params)
}

/// Runs blocking settlement work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SettleError> + Send + 'static,
) -> Result<T, RpcError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(RpcError::from),
        Err(e) => Err(RpcError::internal(e)),
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(RpcError::internal)
}

/// Runs a settlement method (one of [`METHODS`]).
pub async fn dispatch(shared: &Shared, method: &str, params: &Value) -> Result<Value, RpcError> {
    let settler = settler(shared)?;
    match method {
        "visit.register" => visit_register(shared, settler, params).await,
        "visit.cancel" => {
            let p: VisitParams = params_of(params)?;
            let visit = blocking(move || settler.cancel_visit(&p.mdtrt_id)).await?;
            to_value(&visit)
        }
        "settle.preview" => {
            let p: PreviewParams = params_of(params)?;
            let preview =
                blocking(move || settler.preview(&p.mdtrt_id, &p.items, p.acct_used)).await?;
            to_value(&preview)
        }
        "settle.commit" => {
            let p: CommitParams = params_of(params)?;
            let done = blocking(move || settler.commit(&p.preview_id, &p.request_id)).await?;
            to_value(&done)
        }
        "settle.refund" => {
            let p: RefundParams = params_of(params)?;
            let done = blocking(move || settler.refund(&p.setl_id, &p.request_id)).await?;
            to_value(&done)
        }
        "settle.status" => {
            let p: StatusParams = params_of(params)?;
            let found =
                blocking(move || settler.status(p.request_id.as_deref(), p.setl_id.as_deref()))
                    .await?;
            to_value(&found)
        }
        "settle.list" => {
            let p: ListParams = params_of(params)?;
            let date = p
                .date
                .unwrap_or_else(|| crate::clock::DateTime::now().date());
            let list = blocking(move || settler.list(&date)).await?;
            Ok(json!({ "settlements": list }))
        }
        "settle.receipt" => {
            let p: StatusParams = params_of(params)?;
            let text = blocking(move || receipt(&settler, &p)).await?;
            Ok(json!({ "text": text }))
        }
        other => Err(RpcError::method_not_found(other)),
    }
}

fn receipt(settler: &Settler, p: &StatusParams) -> Result<String, SettleError> {
    let settlement = settler.status(p.request_id.as_deref(), p.setl_id.as_deref())?;
    let visit = settler.visit(&settlement.mdtrt_id)?;
    let original = match settlement.orig_setl_id.as_deref() {
        Some(orig) => Some(settler.status(None, Some(orig))?),
        None => None,
    };
    let preview_id = settler
        .journal()
        .request(&original.as_ref().unwrap_or(&settlement).request_id)?
        .and_then(|r| r.preview_id);
    let lines = match preview_id {
        Some(id) => settler.preview_lines(&id)?,
        None => Vec::new(),
    };
    Ok(crate::settle::receipt::render(&settlement, &visit, &lines))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VisitParams {
    mdtrt_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewParams {
    mdtrt_id: String,
    items: Vec<BillItem>,
    #[serde(default)]
    acct_used: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitParams {
    preview_id: String,
    request_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundParams {
    setl_id: String,
    request_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusParams {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    setl_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    date: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    /// The reader whose card is registered (default: the only card present).
    #[serde(default)]
    reader: Option<String>,
    /// Or the card session seen earlier (must still be the card in its reader).
    #[serde(default)]
    card_session: Option<u64>,
    /// Or, with no card, the patient's ID number (mdtrt_cert_type 02).
    #[serde(default)]
    certno: Option<String>,
    #[serde(flatten)]
    params: RegisterParams,
}

async fn visit_register(
    shared: &Shared,
    settler: Arc<Settler>,
    params: &Value,
) -> Result<Value, RpcError> {
    let request: RegisterRequest = params_of(params)?;
    let patient = match &request.certno {
        Some(certno) => {
            let certno = certno.clone();
            let preference = shared.services.insutype_preference.clone();
            let cache = shared.services.cache.clone();
            let link = shared.services.link.clone();
            blocking(move || patient_by_certno(&certno, &preference, cache, link)).await?
        }
        None => patient_from_card(shared, &request)?,
    };
    let params = request.params;
    let visit = blocking(move || settler.register(&patient, &params)).await?;
    to_value(&visit)
}

fn patient_from_card(shared: &Shared, request: &RegisterRequest) -> Result<Patient, RpcError> {
    let snapshot = shared.handle.snapshot();
    let (_, session) = pick_session_ref(&snapshot, request.reader.as_deref())?;
    if let Some(id) = request.card_session
        && id != session.session_id
    {
        return Err(RpcError::new(
            code::NO_CARD,
            format!(
                "card session {id} is gone: the card in the reader is session {}",
                session.session_id
            ),
            "卡已更换，请重新读卡",
        ));
    }
    patient_of_session(shared, session)
}

fn patient_of_session(shared: &Shared, session: &CardSession) -> Result<Patient, RpcError> {
    if let Some(verdict) = session
        .verdict
        .as_ref()
        .filter(|v| v.may_settle == MaySettle::No)
    {
        return Err(RpcError::new(
            code::SETTLE_NOT_ALLOWED,
            format!(
                "this card may not settle with insurance: {}",
                verdict.message_en
            ),
            verdict.message_zh.clone(),
        ));
    }
    let insured = session.insured.as_ref().ok_or_else(|| {
        RpcError::new(
            code::SETTLE_NOT_ALLOWED,
            "the insurer does not know this card's holder: take payment in cash",
            "医保中心无此参保人，请按自费收费",
        )
    })?;
    let verdict = session.verdict.as_ref();
    let may_settle = verdict
        .and_then(|v| serde_json::to_value(v.may_settle).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "yes".into());
    let verdict_code = verdict
        .and_then(|v| serde_json::to_value(v.code).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let psn_type = shared
        .services
        .cache
        .as_ref()
        .and_then(|c| c.reader().person_by_psn_no(&insured.psn_no).ok().flatten())
        .and_then(|p| {
            p.info
                .insuinfo
                .into_iter()
                .find(|i| i.insutype == insured.insutype)
        })
        .map(|i| i.psn_type)
        .unwrap_or_default();
    Ok(Patient {
        psn_no: insured.psn_no.clone(),
        psn_name: session.card.holder.psn_name.clone().unwrap_or_default(),
        insutype: insured.insutype.clone(),
        psn_type,
        insuplc_admdvs: insured.insuplc_admdvs.clone(),
        mdtrt_cert_type: "03".into(),
        mdtrt_cert_no: session.card.card_no.clone().unwrap_or_default(),
        may_settle,
        verdict_code,
        ytd_hint: card_ytd(session),
    })
}

/// The year's cumulative amount on the card (DF04: 个人自付累计 + 统筹累计), when the PIN
/// let it be read and it is this year's.
fn card_ytd(session: &CardSession) -> Option<rust_decimal::Decimal> {
    let balance = session.card.balance.as_ref()?;
    let this_year = crate::clock::DateTime::now().year().to_string();
    if balance.year.trim() != this_year {
        return None;
    }
    let amount = |text: &str| text.trim().parse::<rust_decimal::Decimal>().ok();
    Some(amount(&balance.annual_self_pay)? + amount(&balance.annual_fund_pay)?)
}

/// 1101 by ID number (no card): the patient as the insurer knows them now.
fn patient_by_certno(
    certno: &str,
    preference: &[String],
    cache: Option<Arc<Cache>>,
    link: Option<Arc<std::sync::Mutex<InsurerClient>>>,
) -> Result<Patient, SettleError> {
    let link = link.ok_or(SettleError::NoInsurer)?;
    let mut link = link
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let person = link.person_by_certno(certno).map_err(|e| match e {
        LinkError::Business { err_msg, .. } => SettleError::Refused(err_msg),
        other => SettleError::InsurerDown(other.to_string()),
    })?;
    if let Some(cache) = &cache
        && let Err(e) = cache.store_person(&person, std::time::SystemTime::now())
    {
        tracing::warn!(error = %e, "could not cache the 1101 answer");
    }
    let policy = VerdictPolicy {
        insutype_preference: preference.to_vec(),
        ..VerdictPolicy::default()
    };
    let row = choose_insuinfo(&person, &policy)
        .ok_or_else(|| SettleError::NotAllowed("not_insured".into()))?;
    let active = row.psn_insu_stas == "1";
    tracing::info!(certno = %mask::certno(certno), active, "patient by ID number");
    Ok(Patient {
        psn_no: person.baseinfo.psn_no.clone(),
        psn_name: person.baseinfo.psn_name.clone(),
        insutype: row.insutype.clone(),
        psn_type: row.psn_type.clone(),
        insuplc_admdvs: row.insuplc_admdvs.clone(),
        mdtrt_cert_type: "02".into(),
        mdtrt_cert_no: certno.to_owned(),
        may_settle: if active { "yes" } else { "no" }.into(),
        verdict_code: if active { "ok" } else { "suspended" }.into(),
        ytd_hint: None,
    })
}
