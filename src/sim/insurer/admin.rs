//! The admin endpoint (`POST /admin`, JSON `{"action": …}`): live changes while the simulator
//! runs (report a card lost, replace, cancel, unlock; suspend or resume a person; set a
//! balance), the business clock and the account year (`clock`, `credit_month`, `year_end`,
//! `bind`), 医保电子凭证 codes (`ec_issue`), the fault plan, bulk generation for benchmarks,
//! and read-outs (request counts, msg_log). docs/insurer-extension.md lists the actions.

use super::SimState;
use super::accounts::{self, AccountKey};
use super::clock;
use super::db::{TxError, parse_kind};
use super::ec_voucher;
use super::faults::Faults;
use crate::clock::Date;
use crate::clock::DateTime;
use crate::insurer::types::CardEventKind;
use crate::money::from_value;
use serde_json::{Value, json};

/// Why an admin action was not carried out (the text of the 400 answer).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("bad JSON: {0}")]
    BadJson(#[source] serde_json::Error),
    #[error("admin task failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("missing string field {0:?}")]
    MissingText(&'static str),
    #[error("missing or bad field {0:?}")]
    MissingNumber(&'static str),
    #[error("bad field {0:?}")]
    BadNumber(&'static str),
    #[error("unknown kind")]
    UnknownKind,
    #[error("{0}")]
    Balc(#[from] crate::money::AmountError),
    #[error("bad faults: {0}")]
    Faults(#[source] serde_json::Error),
    #[error("{0}")]
    Date(#[from] crate::clock::BadDate),
    #[error("bad year")]
    Year,
    /// The database refused or failed.
    #[error("{}", .0.message())]
    Tx(#[from] TxError),
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> AdminError {
        AdminError::Tx(e.into())
    }
}

fn text<'v>(req: &'v Value, key: &'static str) -> Result<&'v str, AdminError> {
    req.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(AdminError::MissingText(key))
}

/// `req[key]` as a `u32`.
fn number(req: &Value, key: &'static str) -> Result<u32, AdminError> {
    req.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(AdminError::MissingNumber(key))
}

/// Run one admin action.
pub fn run(state: &SimState, req: &Value) -> Result<Value, AdminError> {
    let action = text(req, "action")?;
    match action {
        "report_lost" => card_event(state, req, CardEventKind::Lost),
        "unlock" => card_event(state, req, CardEventKind::Unlocked),
        "cancel" => card_event(state, req, CardEventKind::Cancelled),
        "replace" => card_event(state, req, CardEventKind::Replaced),
        "card_event" => {
            let kind = parse_kind(text(req, "kind")?).ok_or(AdminError::UnknownKind)?;
            card_event(state, req, kind)
        }
        "suspend_person" => person_status(state, req, "2"),
        "resume_person" => person_status(state, req, "1"),
        "set_balc" => {
            let balc = from_value(req.get("balc").unwrap_or(&Value::Null))?;
            let db = state.db();
            db.set_balc(text(req, "certno")?, text(req, "insutype")?, balc)?;
            Ok(json!({"ok": true}))
        }
        "faults" => {
            let faults: Faults = serde_json::from_value(req.clone()).map_err(AdminError::Faults)?;
            state.set_faults(faults.clone());
            Ok(json!({"ok": true, "faults": faults}))
        }
        "expire_signins" => {
            let n = state.db().expire_sign_ins()?;
            Ok(json!({"ok": true, "expired": n}))
        }
        "generate_card_events" => {
            let latest = state.db().generate_card_events(number(req, "count")?)?;
            Ok(json!({"ok": true, "latest_version": latest}))
        }
        "generate_catalogue" => {
            let latest = state.db().generate_catalogue(number(req, "count")?)?;
            Ok(json!({"ok": true, "latest_version": latest}))
        }
        "clock" => set_clock(state, req),
        "clock_skew" => {
            let seconds = req
                .get("seconds")
                .and_then(Value::as_i64)
                .ok_or(AdminError::BadNumber("seconds"))?;
            state.set_clock_skew(seconds);
            Ok(json!({"ok": true, "seconds": seconds}))
        }
        "credit_month" => credit_month(state, req),
        "year_end" => year_end(state, req),
        "bind" => {
            let payer_insutype = req
                .get("payer_insutype")
                .and_then(Value::as_str)
                .unwrap_or("310");
            let payer = AccountKey::new(text(req, "payer_psn_no")?, payer_insutype);
            let db = state.db();
            accounts::bind(db.conn(), &payer, text(req, "beneficiary_psn_no")?)?;
            Ok(json!({"ok": true}))
        }
        "ec_issue" => ec_issue(state, req),
        "stats" => Ok(state.stats_json()),
        "msg_log" => {
            let msgid = req.get("msgid").and_then(Value::as_str);
            let rows = state.db().msg_log(msgid)?;
            Ok(json!({"ok": true, "rows": rows}))
        }
        other => Err(AdminError::UnknownAction(other.to_owned())),
    }
}

fn card_event(state: &SimState, req: &Value, kind: CardEventKind) -> Result<Value, AdminError> {
    let card_no = text(req, "card_no")?;
    let new_card_no = match kind {
        CardEventKind::Replaced => Some(text(req, "new_card_no")?),
        _ => None,
    };
    let now = DateTime::now().datetime();
    let version = state.db().card_event(card_no, kind, new_card_no, &now)?;
    Ok(json!({"ok": true, "version": version}))
}

fn person_status(state: &SimState, req: &Value, stas: &str) -> Result<Value, AdminError> {
    let rows = state.db().set_insu_stas(text(req, "certno")?, stas)?;
    Ok(json!({"ok": true, "rows": rows}))
}

/// `ec_issue {"certno": …, "ttl_s"?: n}`: a new e-voucher code for a known person, valid
/// for `ttl_s` seconds (default: the simulator's code lifetime).
fn ec_issue(state: &SimState, req: &Value) -> Result<Value, AdminError> {
    let certno = text(req, "certno")?;
    let ttl = match req.get("ttl_s") {
        None => state.ec_code_ttl(),
        Some(_) => std::time::Duration::from_secs(u64::from(number(req, "ttl_s")?)),
    };
    let code = ec_voucher::new_code(state.region(), &mut || state.random());
    let now = std::time::SystemTime::now();
    let issued = ec_voucher::issue(&state.db(), certno, &code, now, ttl)?;
    Ok(json!({"ok": true, "code": issued.code, "expires_at": issued.expires_at}))
}

/// `clock {"date": "yyyy-MM-dd"}`; without a date the clock follows today again.
fn set_clock(state: &SimState, req: &Value) -> Result<Value, AdminError> {
    let date = match req.get("date").and_then(Value::as_str) {
        Some(text) => Some(Date::parse(text)?),
        None => None,
    };
    let db = state.db();
    clock::set_business_date(db.conn(), date)?;
    let now = clock::business_date(db.conn())?;
    Ok(json!({"ok": true, "date": now.to_string()}))
}

/// `credit_month {"month": n}`: month n of the business year.
fn credit_month(state: &SimState, req: &Value) -> Result<Value, AdminError> {
    let month = number(req, "month")?;
    let mut db = state.db();
    let year = clock::business_date(db.conn())?.year();
    let t = db.conn_mut().transaction()?;
    let posted = accounts::credit_month(&t, state.policies(), year, month)?;
    t.commit()?;
    Ok(json!({"ok": true, "credited": posted}))
}

/// `year_end {"year": n}` (default: the business year): interest for year n, then the clock
/// moves to 1 January of n + 1 if it was still in year n or before.
fn year_end(state: &SimState, req: &Value) -> Result<Value, AdminError> {
    let mut db = state.db();
    let today = clock::business_date(db.conn())?;
    let year = match req.get("year").and_then(Value::as_i64) {
        Some(y) => i32::try_from(y).map_err(|_| AdminError::BadNumber("year"))?,
        None => today.year(),
    };
    let t = db.conn_mut().transaction()?;
    let posted = accounts::year_end(&t, state.policies(), year)?;
    if today.year() <= year {
        let next = Date::new(year + 1, 1, 1).ok_or(AdminError::Year)?;
        clock::set_business_date(&t, Some(next))?;
    }
    t.commit()?;
    let now = clock::business_date(db.conn())?;
    Ok(json!({"ok": true, "year": year, "interest": posted, "date": now.to_string()}))
}
