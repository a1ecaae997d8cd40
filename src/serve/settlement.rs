//! Settlement on the socket, the wire only: the methods `visit.register`, `visit.cancel`,
//! `settle.preview`, `settle.commit`, `settle.refund`, `settle.status`, `settle.list` and
//! `settle.receipt` (docs/protocol.md) — their params, the call into the [`Settler`]
//! (`settle::service`, which also finds the patient); [`SettleError`]'s error codes
//! 1010–1017 and texts are in `serve::messages`. The settlement work is blocking; it runs
//! on tokio's blocking pool.

use super::handle::pick_session_ref;
use super::methods::Answer;
use super::rpc::{RequestError, RpcError};
use super::services::Services;
use super::shared::Shared;
use crate::fields::{self, Field, FieldError};
use crate::insurer::{EcIdentity, InsurerClient};
use crate::settle::service::{
    BillItem, CardFacts, InvalidRequest, Patient, RegisterParams, SettleError, Settler, Terminal,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

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

pub(super) fn settler(shared: &Shared) -> Result<Arc<Settler>, RpcError> {
    shared
        .services
        .settler
        .clone()
        .ok_or_else(|| shared.services.settlement_refusal().into())
}

/// A method's params, read and then checked by the platform's field rules (`crate::fields`):
/// a value that breaks them is refused with −32602 naming the field, before anything is
/// looked up or sent.
fn params_of<T: serde::de::DeserializeOwned + Checked>(params: &Value) -> Result<T, RpcError> {
    let params = T::deserialize(params).map_err(RpcError::invalid_params)?;
    params.check().map_err(RpcError::invalid_params)?;
    Ok(params)
}

/// Params whose texts the platform's field rules check.
trait Checked {
    fn check(&self) -> Result<(), InvalidRequest>;
}

/// `value` by `field`'s rule when present.
fn check_optional(field: Field, value: Option<&str>) -> Result<(), FieldError> {
    value.map_or(Ok(()), |value| field.check(value))
}

impl Checked for VisitParams {
    fn check(&self) -> Result<(), InvalidRequest> {
        Ok(fields::MDTRT_ID.check(&self.mdtrt_id)?)
    }
}

impl Checked for PreviewParams {
    fn check(&self) -> Result<(), InvalidRequest> {
        fields::MDTRT_ID.check(&self.mdtrt_id)?;
        for (i, item) in self.items.iter().enumerate() {
            item.check().map_err(|e| e.within(&format!("items[{i}]")))?;
        }
        Ok(())
    }
}

impl Checked for CommitParams {
    fn check(&self) -> Result<(), InvalidRequest> {
        Ok(fields::PREVIEW_ID.check(&self.preview_id)?)
    }
}

impl Checked for RefundParams {
    fn check(&self) -> Result<(), InvalidRequest> {
        Ok(fields::SETL_ID.check(&self.setl_id)?)
    }
}

impl Checked for StatusParams {
    fn check(&self) -> Result<(), InvalidRequest> {
        Ok(check_optional(fields::SETL_ID, self.setl_id.as_deref())?)
    }
}

impl Checked for ListParams {
    /// The date is checked as it is read (`yyyy-MM-dd`).
    fn check(&self) -> Result<(), InvalidRequest> {
        Ok(())
    }
}

impl Checked for RegisterRequest {
    fn check(&self) -> Result<(), InvalidRequest> {
        check_optional(fields::PSN_CERT_TYPE, self.psn_cert_type.as_deref())?;
        if let Some(certno) = &self.certno {
            fields::certno(self.document_type(), certno)?;
        }
        self.params.check()
    }
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

/// The answer as JSON text, written straight from the type (a large bill's answer is never
/// built as a tree of values first).
fn to_value<T: serde::Serialize>(value: &T) -> Result<Answer, RpcError> {
    serde_json::to_string(value)
        .map(|text| Answer::Raw(text.into()))
        .map_err(RpcError::internal)
}

/// Runs a settlement method (one of [`METHODS`]).
pub async fn dispatch(shared: &Shared, method: &str, params: &Value) -> Result<Answer, RpcError> {
    let settler = settler(shared)?;
    match method {
        "visit.register" => register_visit(shared, params, Terminal::Counter).await,
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
            let date = match p.date {
                Some(text) => crate::clock::Date::parse(&text)
                    .map_err(RpcError::invalid_params)?
                    .to_string(),
                None => crate::clock::DateTime::now().date(),
            };
            let page = blocking(move || settler.list(&date, p.after.as_deref(), p.limit)).await?;
            to_value(&page)
        }
        "settle.receipt" => {
            let p: StatusParams = params_of(params)?;
            let text = blocking(move || receipt(&settler, &p)).await?;
            Ok(Answer::Value(json!({ "text": text })))
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
    /// Rows per page (default and maximum in `settle::service`).
    #[serde(default)]
    limit: Option<usize>,
    /// The request_id the page starts after (the previous page's `next`).
    #[serde(default)]
    after: Option<String>,
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
    /// Or a credential `credential.present` took (its `credential_session`).
    #[serde(default)]
    credential_session: Option<u64>,
    /// The type of the document `certno` numbers (人员证件类型; default 01 居民身份证).
    #[serde(default)]
    psn_cert_type: Option<String>,
    #[serde(flatten)]
    params: RegisterParams,
}

impl RegisterRequest {
    fn document_type(&self) -> &str {
        self.psn_cert_type
            .as_deref()
            .unwrap_or(fields::RESIDENT_ID_CARD)
    }
}

/// `visit.register` made from `terminal`: the counter's (the Unix socket, the HIS) or a
/// self-service terminal's (the kiosk), whose 2201 and 2203 go with `opter_type` 2 and the
/// kiosk's operator. The answer is the visit with `"terminal"` (`counter` or `self_service`):
/// where this call registered from.
pub async fn register_visit(
    shared: &Shared,
    params: &Value,
    terminal: Terminal,
) -> Result<Answer, RpcError> {
    let settler = settler(shared)?;
    let request: RegisterRequest = params_of(params)?;
    let patient = match (request.credential_session, &request.certno) {
        (Some(_), Some(_)) => {
            return Err(RpcError::invalid_params(
                "visit.register takes certno or credential_session, not both",
            ));
        }
        (Some(id), None) => shared.credentials.patient(id, terminal)?,
        (None, Some(certno)) => patient_by_certno(shared, request.document_type(), certno).await?,
        (None, None) => patient_from_card(shared, &request)?,
    };
    let params = RegisterParams {
        terminal,
        ..request.params
    };
    let visit = blocking(move || settler.register(&patient, &params)).await?;
    to_value(&RegisteredVisit {
        visit: &visit,
        terminal,
    })
}

/// The patient with ID number `certno` of document type `psn_cert_type`: a fresh 1101.
pub(super) async fn patient_by_certno(
    shared: &Shared,
    psn_cert_type: &str,
    certno: &str,
) -> Result<Patient, RpcError> {
    let (psn_cert_type, certno) = (psn_cert_type.to_owned(), certno.to_owned());
    with_link(shared, move |services, link| {
        Patient::by_certno(
            &psn_cert_type,
            &certno,
            &services.insutype_preference,
            services.cache.as_deref(),
            link,
        )
    })
    .await
}

/// The patient who shows the 医保电子凭证 QR code `ec_qrcode`: decoded once, then 1101 by
/// its token; with the identity the code carried.
pub(super) async fn patient_by_ec_code(
    shared: &Shared,
    ec_qrcode: &str,
) -> Result<(Patient, EcIdentity), RpcError> {
    let ec_qrcode = ec_qrcode.to_owned();
    with_link(shared, move |services, link| {
        Patient::by_ec_code(
            &ec_qrcode,
            &services.insutype_preference,
            services.cache.as_deref(),
            link,
        )
    })
    .await
}

/// `work` on the blocking pool with the services and the swipe's insurer link (1016 when
/// none is configured).
async fn with_link<T: Send + 'static>(
    shared: &Shared,
    work: impl FnOnce(&Services, &Mutex<InsurerClient>) -> Result<T, SettleError> + Send + 'static,
) -> Result<T, RpcError> {
    let services = shared.services.clone();
    blocking(move || {
        let link = services.link.as_deref().ok_or(SettleError::NoInsurer)?;
        work(&services, link)
    })
    .await
}

/// `visit.register`'s answer: the visit and where it was registered from.
#[derive(serde::Serialize)]
struct RegisteredVisit<'a> {
    #[serde(flatten)]
    visit: &'a crate::settle::journal::VisitRow,
    terminal: Terminal,
}

/// The patient of the card in the reader the request names (still the session it names).
fn patient_from_card(shared: &Shared, request: &RegisterRequest) -> Result<Patient, RpcError> {
    let snapshot = shared.handle.snapshot();
    let (_, session) = pick_session_ref(&snapshot, request.reader.as_deref())?;
    if let Some(id) = request.card_session
        && id != session.session_id
    {
        return Err(RequestError::SessionGone {
            asked: id,
            current: session.session_id,
        }
        .into());
    }
    let facts = CardFacts {
        card: &session.card,
        verdict: session.verdict.as_ref(),
        insured: session.insured.as_ref(),
    };
    Ok(Patient::of_card(facts, shared.services.cache.as_deref())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_cannot_name_its_own_terminal() {
        let asked = json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生",
                           "terminal": "self_service"});
        let read = params_of::<RegisterRequest>(&asked);
        assert!(
            read.is_err(),
            "the terminal is the transport's to set, never a param"
        );
        let plain = json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"});
        let read = params_of::<RegisterRequest>(&plain).map(|r| r.params.terminal);
        assert_eq!(read.ok(), Some(Terminal::Counter));
    }
}
