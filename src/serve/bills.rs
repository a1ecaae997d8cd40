//! Bills the HIS puts up for a patient to pay at a self-service kiosk (docs/web.md):
//! `bill.offer` (the HIS: the bill's visit, lines and holder), `bill.list` (the bills of
//! the holder of the card in a reader, or of a scanned 医保电子凭证's credential session),
//! `bill.preview` (the split of one of them, for that patient only). The kiosk then commits with `settle.commit` and `request_id` = `bill_id`, so a
//! bill is paid exactly once however often the patient presses "pay"; with the kiosk's token
//! that is the only commit allowed ([`check_kiosk_commit`]).
//!
//! A bill is offered to one daemon (the kiosk the patient is sent to) and paid in its
//! journal: `bill.withdraw` takes an unpaid offer back (paid at the counter instead, or
//! moved to another kiosk). Offers are kept in the cache file for a week (cache migration
//! 9), so a restart loses none; whether a bill is paid is always the journal's answer.

use super::handle::pick_session_ref;
use super::methods::Answer;
use super::rpc::{RequestError, RpcError};
use super::shared::Shared;

use crate::cache::Cache;
use crate::fields;
use crate::settle::journal::RequestState;
use crate::settle::service::{BillItem, SettleError, Settler, Terminal, check_request_id};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The bill methods and whether each changes something (needs a token or an allowed group).
pub const METHODS: [(&str, bool); 4] = [
    ("bill.offer", true),
    ("bill.withdraw", true),
    ("bill.list", false),
    ("bill.preview", true),
];

/// The most bills one daemon holds (a HIS that never withdraws cannot fill the memory).
const MAX_BILLS: usize = 10_000;

/// A bill on offer: what the HIS offered (kept in the cache file as this JSON) and the
/// previews the kiosk made of it (in memory: after a restart the kiosk previews again).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OfferedBill {
    bill_id: String,
    certno: Option<String>,
    psn_no: Option<String>,
    mdtrt_id: String,
    dept_name: String,
    items: Vec<BillItem>,
    #[serde(with = "crate::money")]
    total: Decimal,
    /// When it was offered (Unix seconds): it is kept a week.
    #[serde(default)]
    offered_at: i64,
    /// The previews `bill.preview` made of it: the only ones a kiosk may commit.
    #[serde(skip)]
    previews: Vec<String>,
}

impl OfferedBill {
    /// The bill as `bill.list` shows it (no holder: the card in the reader is the holder).
    fn listed(&self, state: &str, setl_id: Option<String>) -> Value {
        json!({
            "bill_id": self.bill_id, "mdtrt_id": self.mdtrt_id, "dept_name": self.dept_name,
            "items": self.items, "total": crate::money::two_places(self.total),
            "state": state, "setl_id": setl_id,
        })
    }
}

/// How long an offer is kept (paid or not): a week.
const KEPT_SECONDS: i64 = 7 * 24 * 3600;

/// The bills on offer, by `bill_id`; written through to the cache file when there is one.
#[derive(Debug, Default)]
pub struct BillBoard {
    bills: Mutex<HashMap<String, OfferedBill>>,
}

impl BillBoard {
    /// The board, with the offers of the last week `cache` holds.
    pub fn open(cache: Option<&Cache>) -> BillBoard {
        let mut bills = HashMap::new();
        let kept = cache.map(|c| c.writer().kiosk_bills(week_ago()));
        match kept {
            Some(Ok(rows)) => {
                for row in rows {
                    match serde_json::from_str::<OfferedBill>(&row) {
                        Ok(bill) => {
                            bills.insert(bill.bill_id.clone(), bill);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "an offered bill in the cache cannot be read; skipped")
                        }
                    }
                }
                if !bills.is_empty() {
                    tracing::info!(bills = bills.len(), "offered bills taken up from the cache");
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the offered bills cannot be read from the cache")
            }
            None => {}
        }
        BillBoard {
            bills: Mutex::new(bills),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OfferedBill>> {
        self.bills.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `bill_id` may be offered: the offers older than a week are dropped, then
    /// fewer than [`MAX_BILLS`] are left, or `bill_id` is one of them (offered again).
    fn room_for(&self, bill_id: &str) -> bool {
        let mut bills = self.lock();
        let oldest = week_ago();
        bills.retain(|_, kept| kept.offered_at >= oldest);
        bills.len() < MAX_BILLS || bills.contains_key(bill_id)
    }

    /// Writes `bill` to `cache` (when there is one), then offers it.
    fn offer(&self, cache: Option<&Cache>, bill: OfferedBill) -> Result<(), RpcError> {
        if let Some(cache) = cache {
            let text = serde_json::to_string(&bill).map_err(RpcError::internal)?;
            cache
                .writer()
                .put_kiosk_bill(&bill.bill_id, &text, week_ago())
                .map_err(|e| not_recorded(&bill.bill_id, &e))?;
        }
        self.lock().insert(bill.bill_id.clone(), bill);
        Ok(())
    }

    /// Takes `bill_id` back: whether it was on offer.
    fn withdraw(&self, cache: Option<&Cache>, bill_id: &str) -> Result<bool, RpcError> {
        if let Some(cache) = cache {
            cache
                .writer()
                .delete_kiosk_bill(bill_id)
                .map_err(|e| not_recorded(bill_id, &e))?;
        }
        Ok(self.lock().remove(bill_id).is_some())
    }
}

fn week_ago() -> i64 {
    crate::clock::unix_seconds(std::time::SystemTime::now()) - KEPT_SECONDS
}

/// A bill the cache file could not record: nothing changed.
fn not_recorded(bill_id: &str, error: &crate::cache::CacheError) -> RpcError {
    RequestError::JournalUnavailable(format!("bill {bill_id} could not be recorded: {error}"))
        .into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferParams {
    bill_id: String,
    #[serde(default)]
    certno: Option<String>,
    #[serde(default)]
    psn_no: Option<String>,
    mdtrt_id: String,
    #[serde(default)]
    dept_name: String,
    items: Vec<BillItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawParams {
    bill_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    reader: Option<String>,
    /// Or the patient of a credential session (a scanned 医保电子凭证).
    #[serde(default)]
    credential_session: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewParams {
    bill_id: String,
    #[serde(default)]
    reader: Option<String>,
    #[serde(default)]
    credential_session: Option<u64>,
}

/// Runs a bill method (one of [`METHODS`]) called from `terminal`.
pub async fn dispatch(
    shared: &Shared,
    method: &str,
    params: &Value,
    terminal: Terminal,
) -> Result<Answer, RpcError> {
    let settler = super::settlement::settler(shared)?;
    match method {
        "bill.offer" => offer(shared, settler, params_of(params)?).await,
        "bill.withdraw" => withdraw(shared, settler, params_of(params)?).await,
        "bill.list" => list(shared, settler, params_of(params)?, terminal).await,
        "bill.preview" => preview(shared, settler, params_of(params)?, terminal).await,
        other => Err(RpcError::method_not_found(other)),
    }
}

fn params_of<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, RpcError> {
    T::deserialize(params).map_err(RpcError::invalid_params)
}

async fn offer(shared: &Shared, settler: Arc<Settler>, p: OfferParams) -> Result<Answer, RpcError> {
    check_offer(&p)?;
    let bill_id = p.bill_id.clone();
    // Only a request every attempt of which was undone (`retry`) may be paid again.
    match request_state(settler, &bill_id).await? {
        None | Some(RequestState::Retry) => {}
        Some(state) => {
            return Err(RpcError::invalid_params(format!(
                "bill {bill_id} is {} already (its request_id is in the journal): a new bill \
                 needs a new bill_id",
                state.as_str()
            )));
        }
    }
    let total = p
        .items
        .iter()
        .map(|item| crate::money::round_fen(item.qty * item.price))
        .sum();
    let bill = OfferedBill {
        bill_id: p.bill_id,
        certno: p.certno,
        psn_no: p.psn_no,
        mdtrt_id: p.mdtrt_id,
        dept_name: p.dept_name,
        items: p.items,
        total,
        offered_at: crate::clock::unix_seconds(std::time::SystemTime::now()),
        previews: Vec::new(),
    };
    if !shared.bills.room_for(&bill.bill_id) {
        return Err(RpcError::invalid_params(format!(
            "{MAX_BILLS} bills are on offer already: withdraw the ones no longer to be paid \
             here (bill.withdraw)"
        )));
    }
    let answer = json!({"bill_id": bill.bill_id, "state": "offered",
        "total": crate::money::two_places(bill.total)});
    shared.bills.offer(shared.services.cache.as_deref(), bill)?;
    tracing::info!(bill_id = %bill_id, "bill offered");
    Ok(Answer::Value(answer))
}

/// `bill.withdraw`: the HIS takes an unpaid offer back (paid at the counter, changed, or
/// sent to another kiosk). A paid bill stays listed: its settlement is the journal's.
async fn withdraw(
    shared: &Shared,
    settler: Arc<Settler>,
    p: WithdrawParams,
) -> Result<Answer, RpcError> {
    match request_state(settler, &p.bill_id).await? {
        Some(state @ (RequestState::Settled | RequestState::SelfPay)) => {
            return Err(RpcError::invalid_params(format!(
                "bill {} is {} already: refund the settlement (settle.refund) instead",
                p.bill_id,
                state.as_str()
            )));
        }
        Some(state @ (RequestState::Pending | RequestState::Unknown)) => {
            return Err(RpcError::invalid_params(format!(
                "bill {} is being paid ({}): ask settle.status until it ends, then withdraw",
                p.bill_id,
                state.as_str()
            )));
        }
        _ => {}
    }
    let withdrawn = shared
        .bills
        .withdraw(shared.services.cache.as_deref(), &p.bill_id)?;
    if withdrawn {
        tracing::info!(bill_id = %p.bill_id, "bill withdrawn");
    }
    Ok(Answer::Value(
        json!({"bill_id": p.bill_id, "withdrawn": withdrawn}),
    ))
}

/// The platform's field rules for an offer, and its holder named.
fn check_offer(p: &OfferParams) -> Result<(), RpcError> {
    check_request_id(&p.bill_id)
        .map_err(|_| RpcError::invalid_params("bill_id: 1–64 printable ASCII characters, no spaces (it becomes the settlement's request_id)"))?;
    if p.certno.is_none() && p.psn_no.is_none() {
        return Err(RpcError::invalid_params(
            "bill.offer needs the holder: certno or psn_no",
        ));
    }
    if p.items.is_empty() {
        return Err(RpcError::invalid_params(
            "bill.offer needs at least one item",
        ));
    }
    let checked = fields::MDTRT_ID
        .check(&p.mdtrt_id)
        .and_then(|()| fields::DEPT_NAME.check(&p.dept_name));
    checked.map_err(RpcError::invalid_params)?;
    for (i, item) in p.items.iter().enumerate() {
        item.check()
            .map_err(|e| RpcError::invalid_params(format!("items[{i}]: {e}")))?;
    }
    Ok(())
}

/// The state of the settlement request `bill_id` names, if there is one.
async fn request_state(
    settler: Arc<Settler>,
    bill_id: &str,
) -> Result<Option<RequestState>, RpcError> {
    let request_id = bill_id.to_owned();
    let found = tokio::task::spawn_blocking(move || settler.status(Some(&request_id), None))
        .await
        .map_err(RpcError::internal)?;
    match found {
        Ok(settlement) => Ok(Some(settlement.state)),
        Err(SettleError::UnknownSettlement(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whom the bills are for: the holder of the card in a reader, or of a credential session.
struct Holder {
    certno: Option<String>,
    psn_no: Option<String>,
}

impl Holder {
    /// The holder of `credential_session` if given, else of the card in `reader`.
    fn of(
        shared: &Shared,
        reader: Option<&str>,
        credential_session: Option<u64>,
        terminal: Terminal,
    ) -> Result<Holder, RpcError> {
        if let Some(id) = credential_session {
            let (certno, psn_no) = shared.credentials.holder(id, terminal)?;
            return Ok(Holder {
                certno: Some(certno),
                psn_no: Some(psn_no),
            });
        }
        let snapshot = shared.handle.snapshot();
        let (_, session) = pick_session_ref(&snapshot, reader)?;
        Ok(Holder {
            certno: session.card.holder.certno.clone(),
            psn_no: session.insured.as_ref().map(|i| i.psn_no.clone()),
        })
    }

    /// Whether `bill` is offered to this holder.
    fn owns(&self, bill: &OfferedBill) -> bool {
        let same = |offered: &Option<String>, known: &Option<String>| {
            offered.is_some() && offered == known
        };
        same(&bill.certno, &self.certno) || same(&bill.psn_no, &self.psn_no)
    }
}

async fn list(
    shared: &Shared,
    settler: Arc<Settler>,
    p: ListParams,
    terminal: Terminal,
) -> Result<Answer, RpcError> {
    let holder = Holder::of(shared, p.reader.as_deref(), p.credential_session, terminal)?;
    let holders: Vec<OfferedBill> = {
        let bills = shared.bills.lock();
        bills.values().filter(|b| holder.owns(b)).cloned().collect()
    };
    let mut listed = Vec::with_capacity(holders.len());
    for bill in holders {
        let found = {
            let (settler, id) = (settler.clone(), bill.bill_id.clone());
            tokio::task::spawn_blocking(move || settler.status(Some(&id), None))
                .await
                .map_err(RpcError::internal)?
        };
        let (state, setl_id) = match found {
            Ok(s) => (s.state.as_str(), s.setl_id),
            Err(SettleError::UnknownSettlement(_)) => ("offered", None),
            Err(e) => return Err(e.into()),
        };
        listed.push(bill.listed(state, setl_id));
    }
    listed.sort_by(|a, b| a["bill_id"].as_str().cmp(&b["bill_id"].as_str()));
    Ok(Answer::Value(json!({ "bills": listed })))
}

async fn preview(
    shared: &Shared,
    settler: Arc<Settler>,
    p: PreviewParams,
    terminal: Terminal,
) -> Result<Answer, RpcError> {
    let holder = Holder::of(shared, p.reader.as_deref(), p.credential_session, terminal)?;
    let bill = {
        let bills = shared.bills.lock();
        match bills.get(&p.bill_id) {
            Some(bill) if holder.owns(bill) => bill.clone(),
            _ => return Err(no_such_bill(&p.bill_id)),
        }
    };
    let (mdtrt_id, items) = (bill.mdtrt_id.clone(), bill.items.clone());
    let preview = tokio::task::spawn_blocking(move || settler.preview(&mdtrt_id, &items, None))
        .await
        .map_err(RpcError::internal)??;
    if let Some(offered) = shared.bills.lock().get_mut(&p.bill_id) {
        offered.previews.push(preview.preview_id.clone());
    }
    serde_json::to_string(&preview)
        .map(|text| Answer::Raw(text.into()))
        .map_err(RpcError::internal)
}

fn no_such_bill(bill_id: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "no bill {bill_id} is offered to this patient (the card's holder, or the credential \
         session's)"
    ))
}

/// A kiosk's `settle.commit`: only of a preview `bill.preview` made, with `request_id` its
/// `bill_id` (so the kiosk pays what the HIS billed, once).
pub fn check_kiosk_commit(shared: &Shared, params: &Value) -> Result<(), RpcError> {
    let preview_id = params.get("preview_id").and_then(Value::as_str);
    let request_id = params.get("request_id").and_then(Value::as_str);
    let bills = shared.bills.lock();
    let offered = request_id
        .and_then(|id| bills.get(id))
        .is_some_and(|bill| preview_id.is_some_and(|p| bill.previews.iter().any(|x| x == p)));
    if offered {
        return Ok(());
    }
    Err(RequestError::WebNotAllowed(
        "the kiosk token commits only a bill the HIS offered: settle.commit with the \
         preview_id bill.preview gave and request_id = its bill_id"
            .to_owned(),
    )
    .into())
}
