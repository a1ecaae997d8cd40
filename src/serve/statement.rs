//! `card.statement` (read-only, docs/protocol.md): the statement (明细) of the card in a
//! reader — the card's own DF04 transaction records, which the daemon reads with the PIN
//! (`null` until `card.verify_pin` succeeded), and this workstation's journalled settlements
//! of the holder (the session's `insured.psn_no`; without one, the person the cache knows by
//! the card's `certno`), newest first, at most [`MAX_SETTLEMENTS`]. Reads the journal on
//! tokio's blocking pool.

use super::handle::pick_session_ref;
use super::methods::Answer;
use super::rpc::RpcError;
use super::shared::Shared;
use super::types::CardSession;
use crate::cache::{Cache, CacheError};
use crate::money;
use crate::settle::journal::{Journal, RequestRow, RequestState};
use crate::settle::service::SettleError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most settlements one statement lists.
pub const MAX_SETTLEMENTS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementParams {
    /// The reader whose card (default: the only card present).
    #[serde(default)]
    reader: Option<String>,
}

/// The answer.
#[derive(Serialize)]
struct Statement {
    reader: String,
    session_id: u64,
    card_no: Option<String>,
    /// DF04's records, newest first; `null` until the PIN was verified (or for a card that
    /// keeps none: an online card).
    transactions: Option<Vec<BTreeMap<String, String>>>,
    settlements: Vec<StatementLine>,
}

/// One settlement as the statement shows it: amounts from its `setlinfo`, two places
/// (`null` when the settlement carries none).
#[derive(Debug, PartialEq, Serialize)]
struct StatementLine {
    request_id: String,
    setl_id: Option<String>,
    setl_date: Option<String>,
    state: RequestState,
    medfee_sumamt: Option<String>,
    fund_pay_sumamt: Option<String>,
    acct_pay: Option<String>,
    psn_cash_pay: Option<String>,
}

/// Whom the card's settlements are journalled under.
enum Holder {
    PsnNo(String),
    /// No insurance on the session: the person the cache knows by this ID number, if any.
    Certno(String),
    Unknown,
}

impl Holder {
    fn of(session: &CardSession) -> Holder {
        if let Some(insured) = session.insured.as_ref().filter(|i| !i.psn_no.is_empty()) {
            return Holder::PsnNo(insured.psn_no.clone());
        }
        match session.card.holder.certno.as_deref() {
            Some(certno) if !certno.is_empty() => Holder::Certno(certno.to_owned()),
            _ => Holder::Unknown,
        }
    }

    /// The psn_no, the cache asked when only the ID number is known.
    fn psn_no(self, cache: &Cache) -> Result<Option<String>, CacheError> {
        Ok(match self {
            Holder::PsnNo(psn_no) => Some(psn_no),
            Holder::Certno(certno) => cache
                .reader()
                .person_by_certno(&certno)?
                .map(|person| person.info.baseinfo.psn_no),
            Holder::Unknown => None,
        })
    }
}

/// `card.statement`: errors as `card.read`'s (1001 no card, 1002, 1003, 1004, 1009).
pub async fn card_statement(shared: &Shared, params: &Value) -> Result<Answer, RpcError> {
    let params = StatementParams::deserialize(params).map_err(RpcError::invalid_params)?;
    let (mut statement, holder) = {
        let snapshot = shared.handle.snapshot();
        let (_, session) = pick_session_ref(&snapshot, params.reader.as_deref())?;
        let statement = Statement {
            reader: session.reader.clone(),
            session_id: session.session_id,
            card_no: session.card.card_no.clone(),
            transactions: session.card.transactions.clone(),
            settlements: Vec::new(),
        };
        (statement, Holder::of(session))
    };
    if let Some(cache) = shared.services.cache.clone() {
        let found = tokio::task::spawn_blocking(move || settlements_of(&cache, holder))
            .await
            .map_err(RpcError::internal)?;
        statement.settlements = found.map_err(SettleError::from)?;
    }
    serde_json::to_value(&statement)
        .map(Answer::Value)
        .map_err(RpcError::internal)
}

/// The holder's settlements in the journal, newest first.
fn settlements_of(cache: &Arc<Cache>, holder: Holder) -> Result<Vec<StatementLine>, CacheError> {
    let Some(psn_no) = holder.psn_no(cache)? else {
        return Ok(Vec::new());
    };
    let journal = Journal::new(cache.writer().clone());
    let rows = journal.settlements_of_person(&psn_no, MAX_SETTLEMENTS)?;
    Ok(rows.into_iter().map(StatementLine::from).collect())
}

impl From<RequestRow> for StatementLine {
    fn from(row: RequestRow) -> StatementLine {
        let setlinfo: Value = row
            .setlinfo
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let amount = |name: &str| {
            setlinfo
                .get(name)
                .and_then(|value| money::from_value(value).ok())
                .map(money::two_places)
        };
        StatementLine {
            medfee_sumamt: amount("medfee_sumamt"),
            fund_pay_sumamt: amount("fund_pay_sumamt"),
            acct_pay: amount("acct_pay"),
            psn_cash_pay: amount("psn_cash_pay"),
            request_id: row.request_id,
            setl_id: row.setl_id,
            setl_date: row.setl_date,
            state: row.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settle::journal::RequestKind;

    fn row(setlinfo: Option<&str>) -> RequestRow {
        RequestRow {
            request_id: "r1".into(),
            kind: RequestKind::Settle,
            preview_id: Some("P1".into()),
            mdtrt_id: "M1".into(),
            chrg_bchno: "B1".into(),
            psn_no: "P".into(),
            insuplc_admdvs: "500000".into(),
            orig_setl_id: None,
            state: RequestState::Settled,
            setl_id: Some("S1".into()),
            setlinfo: setlinfo.map(str::to_owned),
            err_msg: None,
            setl_date: Some("2026-11-23".into()),
        }
    }

    #[test]
    fn a_line_has_the_settlements_amounts_in_two_places_as_numbers_or_strings() {
        let line = StatementLine::from(row(Some(
            r#"{"medfee_sumamt": 120, "fund_pay_sumamt": "0", "acct_pay": "102.8",
                "psn_cash_pay": 17.2, "balc": "0"}"#,
        )));
        assert_eq!(line.medfee_sumamt.as_deref(), Some("120.00"));
        assert_eq!(line.fund_pay_sumamt.as_deref(), Some("0.00"));
        assert_eq!(line.acct_pay.as_deref(), Some("102.80"));
        assert_eq!(line.psn_cash_pay.as_deref(), Some("17.20"));
        assert_eq!(line.setl_id.as_deref(), Some("S1"));
        let bare = StatementLine::from(row(None));
        assert_eq!(bare.medfee_sumamt, None);
        assert_eq!(bare.request_id, "r1");
    }
}
