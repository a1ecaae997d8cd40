//! The admin endpoint (`POST /admin`, JSON `{"action": …}`): live changes while the simulator
//! runs (report a card lost, replace, cancel, unlock; suspend or resume a person; set a
//! balance), the fault plan, bulk generation for benchmarks, and read-outs (request counts,
//! msg_log). docs/insurer-extension.md lists the actions.

use super::SimState;
use super::db::{TxError, parse_kind};
use super::faults::Faults;
use crate::insurer::clock::LocalTime;
use crate::insurer::types::CardEventKind;
use crate::insurer::wire::money;
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
            let balc = money(req.get("balc").unwrap_or(&Value::Null))?;
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
    let now = LocalTime::now().datetime();
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
