//! The admin endpoint (`POST /admin`, JSON `{"action": …}`): live changes while the simulator
//! runs (report a card lost, replace, cancel, unlock; suspend or resume a person; set a
//! balance), the business clock and the account year (`clock`, `credit_month`, `year_end`,
//! `bind`), the fault plan, bulk generation for benchmarks, and read-outs (request counts,
//! msg_log). docs/insurer-extension.md lists the actions.

use super::SimState;
use super::accounts::{self, AccountKey};
use super::clock;
use super::db::{TxError, parse_kind};
use super::faults::Faults;
use crate::clock::Date;
use crate::clock::DateTime;
use crate::insurer::types::CardEventKind;
use crate::money::from_value;
use serde_json::{Value, json};

fn text<'v>(req: &'v Value, key: &str) -> Result<&'v str, String> {
    req.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("missing string field {key:?}"))
}

fn count(req: &Value) -> Result<u32, String> {
    req.get("count")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| "missing or bad field \"count\"".to_string())
}

fn tx(e: TxError) -> String {
    match e {
        TxError::Refused(msg) | TxError::Internal(msg) => msg,
    }
}

/// Run one admin action; `Err` is a message for a 400 answer.
pub fn run(state: &SimState, req: &Value) -> Result<Value, String> {
    let action = text(req, "action")?;
    match action {
        "report_lost" => card_event(state, req, CardEventKind::Lost),
        "unlock" => card_event(state, req, CardEventKind::Unlocked),
        "cancel" => card_event(state, req, CardEventKind::Cancelled),
        "replace" => card_event(state, req, CardEventKind::Replaced),
        "card_event" => {
            let kind = parse_kind(text(req, "kind")?).ok_or("unknown kind")?;
            card_event(state, req, kind)
        }
        "suspend_person" => person_status(state, req, "2"),
        "resume_person" => person_status(state, req, "1"),
        "set_balc" => {
            let balc =
                from_value(req.get("balc").unwrap_or(&Value::Null)).map_err(|e| e.to_string())?;
            let db = state.db();
            db.set_balc(text(req, "certno")?, text(req, "insutype")?, balc)
                .map_err(tx)?;
            Ok(json!({"ok": true}))
        }
        "faults" => {
            let faults: Faults =
                serde_json::from_value(req.clone()).map_err(|e| format!("bad faults: {e}"))?;
            state.set_faults(faults.clone());
            Ok(json!({"ok": true, "faults": faults}))
        }
        "expire_signins" => {
            let n = state.db().expire_sign_ins().map_err(tx)?;
            Ok(json!({"ok": true, "expired": n}))
        }
        "generate_card_events" => {
            let latest = state.db().generate_card_events(count(req)?).map_err(tx)?;
            Ok(json!({"ok": true, "latest_version": latest}))
        }
        "generate_catalogue" => {
            let latest = state.db().generate_catalogue(count(req)?).map_err(tx)?;
            Ok(json!({"ok": true, "latest_version": latest}))
        }
        "clock" => set_clock(state, req),
        "credit_month" => credit_month(state, req),
        "year_end" => year_end(state, req),
        "bind" => {
            let payer_insutype = req
                .get("payer_insutype")
                .and_then(Value::as_str)
                .unwrap_or("310");
            let payer = AccountKey::new(text(req, "payer_psn_no")?, payer_insutype);
            let db = state.db();
            accounts::bind(db.conn(), &payer, text(req, "beneficiary_psn_no")?).map_err(tx)?;
            Ok(json!({"ok": true}))
        }
        "stats" => Ok(state.stats_json()),
        "msg_log" => {
            let msgid = req.get("msgid").and_then(Value::as_str);
            let rows = state.db().msg_log(msgid).map_err(tx)?;
            Ok(json!({"ok": true, "rows": rows}))
        }
        other => Err(format!("unknown action {other:?}")),
    }
}

fn card_event(state: &SimState, req: &Value, kind: CardEventKind) -> Result<Value, String> {
    let card_no = text(req, "card_no")?;
    let new_card_no = match kind {
        CardEventKind::Replaced => Some(text(req, "new_card_no")?),
        _ => None,
    };
    let now = DateTime::now().datetime();
    let version = state
        .db()
        .card_event(card_no, kind, new_card_no, &now)
        .map_err(tx)?;
    Ok(json!({"ok": true, "version": version}))
}

fn person_status(state: &SimState, req: &Value, stas: &str) -> Result<Value, String> {
    let rows = state
        .db()
        .set_insu_stas(text(req, "certno")?, stas)
        .map_err(tx)?;
    Ok(json!({"ok": true, "rows": rows}))
}

/// `clock {"date": "yyyy-MM-dd"}`; without a date the clock follows today again.
fn set_clock(state: &SimState, req: &Value) -> Result<Value, String> {
    let date = match req.get("date").and_then(Value::as_str) {
        Some(text) => Some(Date::parse(text).map_err(|e| e.to_string())?),
        None => None,
    };
    let db = state.db();
    clock::set_business_date(db.conn(), date).map_err(tx)?;
    let now = clock::business_date(db.conn()).map_err(tx)?;
    Ok(json!({"ok": true, "date": now.to_string()}))
}

/// `credit_month {"month": n}`: month n of the business year.
fn credit_month(state: &SimState, req: &Value) -> Result<Value, String> {
    let month = req
        .get("month")
        .and_then(Value::as_u64)
        .and_then(|m| u32::try_from(m).ok())
        .ok_or("missing or bad field \"month\"")?;
    let mut db = state.db();
    let year = clock::business_date(db.conn()).map_err(tx)?.year();
    let t = db.conn_mut().transaction().map_err(|e| e.to_string())?;
    let posted = accounts::credit_month(&t, state.policies(), year, month).map_err(tx)?;
    t.commit().map_err(|e| e.to_string())?;
    Ok(json!({"ok": true, "credited": posted}))
}

/// `year_end {"year": n}` (default: the business year): interest for year n, then the clock
/// moves to 1 January of n + 1 if it was still in year n or before.
fn year_end(state: &SimState, req: &Value) -> Result<Value, String> {
    let mut db = state.db();
    let today = clock::business_date(db.conn()).map_err(tx)?;
    let year = match req.get("year").and_then(Value::as_i64) {
        Some(y) => i32::try_from(y).map_err(|_| "bad field \"year\"")?,
        None => today.year(),
    };
    let t = db.conn_mut().transaction().map_err(|e| e.to_string())?;
    let posted = accounts::year_end(&t, state.policies(), year).map_err(tx)?;
    if today.year() <= year {
        let next = Date::new(year + 1, 1, 1).ok_or("bad year")?;
        clock::set_business_date(&t, Some(next)).map_err(tx)?;
    }
    t.commit().map_err(|e| e.to_string())?;
    let now = clock::business_date(db.conn()).map_err(tx)?;
    Ok(json!({"ok": true, "year": year, "interest": posted, "date": now.to_string()}))
}
