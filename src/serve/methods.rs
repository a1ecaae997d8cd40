//! One handler per method, from a parsed request to its result. The handlers read the
//! monitor's state and send it requests through the [`MonitorHandle`]; they never touch a
//! reader. `events.subscribe` needs the connection, so [`crate::serve::connection`] runs it;
//! its topics and notifications are built here.

use super::doctor::Doctor;
use super::handle::{PinInput, pick_session_ref};
use super::peer::{Grant, Peer};
use super::rpc::{Call, RequestError, RpcError};
use super::shared::Shared;
use super::types::{CardEvent, CardSession, ReaderState, SessionError};
use crate::card::{Pin, PinState};
use crate::mask;
use crate::reader::ReaderBackend;
use crate::settle::service::Terminal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// Every notification topic a subscriber may ask for.
pub const TOPICS: [&str; 7] = [
    "card.inserted",
    "card.ready",
    "card.removed",
    "card.error",
    "reader.added",
    "reader.removed",
    "credential.scanned",
];

/// The longest `wait_ms` accepted (one hour).
pub const MAX_WAIT_MS: u64 = 3_600_000;

/// Whether `method` changes a card's state (and so needs an allowed group).
pub fn is_mutating(method: &str) -> bool {
    matches!(
        method,
        "card.refresh" | "card.verify_pin" | "credential.present" | "system.doctor"
    ) || super::settlement::METHODS.contains(&(method, true))
        || super::bills::METHODS.contains(&(method, true))
}

/// A method's result: a JSON value, or JSON text made earlier (a session's, serialised
/// once per snapshot).
#[derive(Debug, Clone)]
pub enum Answer {
    Value(Value),
    Raw(Arc<str>),
}

impl Answer {
    /// The result as a JSON value.
    pub fn into_value(self) -> Result<Value, RpcError> {
        match self {
            Answer::Value(value) => Ok(value),
            Answer::Raw(text) => serde_json::from_str(&text).map_err(RpcError::internal),
        }
    }
}

/// Whether `call` is answered at once from the monitor's state, never waiting (the
/// connection runs it in its own task): `system.info`, `readers.list`, and `card.read`
/// without a `wait_ms`.
pub fn is_immediate(call: &Call) -> bool {
    match call.method.as_str() {
        "system.info" | "readers.list" | "sync.status" | "kiosk.config" => true,
        "card.read" => call
            .params
            .get("wait_ms")
            .is_none_or(|ms| ms.is_null() || ms.as_u64() == Some(0)),
        _ => false,
    }
}

/// Runs `call` (any method but `events.*`) for `peer`.
pub async fn dispatch(shared: &Shared, peer: &Peer, call: &Call) -> Result<Value, RpcError> {
    answer(shared, peer, call).await?.into_value()
}

/// Like [`dispatch`], with a session's result as the JSON text it was serialised to.
pub async fn answer(shared: &Shared, peer: &Peer, call: &Call) -> Result<Answer, RpcError> {
    if let Peer::Web { grant, .. } = peer {
        admit_web(peer, *grant, &call.method)?;
        if *grant == Grant::Kiosk {
            kiosk_limits(shared, call)?;
        }
    } else if is_mutating(&call.method) {
        admit(shared, peer, &call.method)?;
    }
    match call.method.as_str() {
        "system.info" => no_params(&call.params).map(|()| Answer::Value(system_info(shared))),
        "system.doctor" => {
            no_params(&call.params)?;
            system_doctor(shared).await
        }
        "readers.list" => no_params(&call.params).map(|()| Answer::Value(readers_list(shared))),
        "sync.status" => {
            no_params(&call.params).map(|()| Answer::Value(shared.services.sync_status()))
        }
        "card.read" => card_read(shared, &call.params).await,
        "card.refresh" => card_refresh(shared, &call.params).await.map(Answer::Value),
        "card.verify_pin" => card_verify_pin(shared, &call.params)
            .await
            .map(Answer::Value),
        "kiosk.config" => no_params(&call.params).map(|()| Answer::Value(kiosk_config(shared))),
        "card.statement" => super::statement::card_statement(shared, &call.params).await,
        "credential.present" => {
            super::credentials::present(shared, &call.params, terminal(peer)).await
        }
        "visit.register" if is_kiosk(peer) => {
            super::settlement::register_visit(shared, &call.params, terminal(peer)).await
        }
        other if super::settlement::METHODS.iter().any(|(m, _)| *m == other) => {
            super::settlement::dispatch(shared, other, &call.params).await
        }
        other if super::bills::METHODS.iter().any(|(m, _)| *m == other) => {
            super::bills::dispatch(shared, other, &call.params, terminal(peer)).await
        }
        other => Err(RpcError::method_not_found(other)),
    }
}

/// A method that takes no params refuses any (−32602), as the others refuse unknown names
/// (absent params arrive as `{}`; params that are not an object are refused earlier).
fn no_params(params: &Value) -> Result<(), RpcError> {
    match params {
        Value::Object(named) if named.is_empty() => Ok(()),
        other => Err(RpcError::invalid_params(format!(
            "this method takes no params (got {other})"
        ))),
    }
}

/// Whether `peer` may call mutating methods at all (and so sees scanned codes): on the web
/// endpoint a kiosk or client token, elsewhere `access.allowed_groups`.
pub fn may_mutate(shared: &Shared, peer: &Peer) -> bool {
    match peer {
        Peer::Web { grant, .. } => *grant != Grant::ReadOnly,
        _ => shared.settings().allow.admits(peer),
    }
}

/// Refuses a mutating method to a caller outside `access.allowed_groups`; logs who asked.
fn admit(shared: &Shared, peer: &Peer, method: &str) -> Result<(), RpcError> {
    if shared.settings().allow.admits(peer) {
        tracing::info!(%peer, method, "mutating request");
        Ok(())
    } else {
        tracing::warn!(%peer, method, "refused: caller not in access.allowed_groups");
        Err(RpcError::permission_denied(method))
    }
}

/// Refuses a web caller a mutating method its token does not open (1021); logs who asked.
fn admit_web(peer: &Peer, grant: Grant, method: &str) -> Result<(), RpcError> {
    if !is_mutating(method) {
        return Ok(());
    }
    if grant.opens(method) {
        tracing::info!(%peer, method, "mutating request");
        return Ok(());
    }
    tracing::warn!(%peer, method, "refused: the web caller's token does not open this method");
    let why = match grant {
        Grant::ReadOnly => format!(
            "{method} changes something and needs the client token (the medcard.token.<token> \
             WebSocket subprotocol, or Authorization: Bearer <token>); this caller sent none"
        ),
        _ => format!(
            "{method} is not open to the {}: it opens {} only",
            grant.as_str(),
            Grant::KIOSK_METHODS.join(", ")
        ),
    };
    Err(RequestError::WebNotAllowed(why).into())
}

/// What the kiosk token may do beyond its methods: register by card only (the patient at
/// the screen holds it), and commit only the bills the HIS offered.
fn kiosk_limits(shared: &Shared, call: &Call) -> Result<(), RpcError> {
    match call.method.as_str() {
        "settle.commit" => super::bills::check_kiosk_commit(shared, &call.params),
        "visit.register" if call.params.get("certno").is_some() => {
            Err(RequestError::WebNotAllowed(
                "the kiosk registers the holder of the card in the reader only, not by ID \
                 number"
                    .to_owned(),
            )
            .into())
        }
        _ => Ok(()),
    }
}

/// Whether `peer` is the kiosk page (its registrations are a self-service terminal's).
fn is_kiosk(peer: &Peer) -> bool {
    matches!(
        peer,
        Peer::Web {
            grant: Grant::Kiosk,
            ..
        }
    )
}

/// The terminal `peer` calls from: the kiosk page is a self-service terminal, everyone else
/// a counter.
fn terminal(peer: &Peer) -> Terminal {
    if is_kiosk(peer) {
        Terminal::SelfService
    } else {
        Terminal::Counter
    }
}

/// `kiosk.config`: what the kiosk page shows and offers (`[kiosk]`).
fn kiosk_config(shared: &Shared) -> Value {
    let settings = shared.settings();
    let kiosk = &settings.config.kiosk;
    json!({
        "hospital_name": kiosk.hospital_name,
        "departments": kiosk.departments,
        "idle_seconds": kiosk.idle_seconds,
    })
}

fn system_info(shared: &Shared) -> Value {
    let snapshot = shared.handle.snapshot();
    json!({
        "name": "medcard",
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_s": shared.started.elapsed().as_secs(),
        "connections": shared.connection_count(),
        "readers": snapshot.readers.len(),
        "sessions": snapshot.sessions.len(),
        "cache": shared.services.cache_info(),
        "journal": shared.services.journal_info(),
        "insurer": shared.services.insurer_info(),
        "hospital": shared.services.hospital_info(),
        "web": match shared.web_addr.get() {
            Some(addr) => json!({"listen": addr.to_string(), "kiosk": format!("http://{addr}/kiosk")}),
            None => json!(null),
        },
        "metrics": metrics_urls(shared),
    })
}

/// The self-check (`medcard doctor`'s) run by the daemon, off the runtime: it talks to the
/// readers, the insurer and the databases.
async fn system_doctor(shared: &Shared) -> Result<Answer, RpcError> {
    let services = shared.services.clone();
    let settings = shared.settings();
    let report = tokio::task::spawn_blocking(move || {
        let mut readers = services
            .doctor_readers
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(PoisonError::into_inner));
        Doctor {
            config: &settings.config,
            config_source: "the running daemon's configuration".to_owned(),
            readers: readers
                .as_deref_mut()
                .map(|r| &mut **r as &mut dyn ReaderBackend),
            cache: services.cache.clone(),
            in_daemon: true,
            daemon_sign_in: services
                .sign_in
                .as_ref()
                .map(|s| s.report(services.sign_ttl)),
        }
        .run()
    })
    .await
    .map_err(RpcError::internal)?;
    serde_json::to_value(report)
        .map(Answer::Value)
        .map_err(RpcError::internal)
}

/// Where Prometheus scrapes this daemon: the web endpoint's `/metrics` and the listener of
/// its own, those that listen.
fn metrics_urls(shared: &Shared) -> Value {
    let urls: Vec<String> = [shared.web_addr.get(), shared.metrics_addr.get()]
        .into_iter()
        .flatten()
        .map(|addr| format!("http://{addr}/metrics"))
        .collect();
    json!(urls)
}

fn readers_list(shared: &Shared) -> Value {
    let readers: Vec<Value> = shared
        .handle
        .readers()
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "state": r.state,
                "atr": r.atr,
                "error": r.error,
                "reader_code": r.reader_code,
            })
        })
        .collect();
    Value::Array(readers)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    reader: Option<String>,
    wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshParams {
    reader: Option<String>,
}

async fn card_read(shared: &Shared, params: &Value) -> Result<Answer, RpcError> {
    let params: ReadParams = params_of(params)?;
    let reader = params.reader.as_deref();
    let session = match params.wait_ms {
        None | Some(0) => {
            // The common case, answered from the snapshot without copying the session.
            let snapshot = shared.handle.snapshot();
            let (key, session) = pick_session_ref(&snapshot, reader)?;
            log_session("card.read", session);
            return match snapshot.rendered_session(key) {
                Some(text) => Ok(Answer::Raw(text)),
                None => session_json(session).map(Answer::Value),
            };
        }
        Some(ms) if ms > MAX_WAIT_MS => {
            return Err(RpcError::invalid_params(format!(
                "wait_ms may be at most {MAX_WAIT_MS}"
            )));
        }
        Some(ms) => {
            let wait = Duration::from_millis(ms);
            shared.handle.wait_session(reader, wait).await?
        }
    };
    log_session("card.read", &session);
    session_json(&session).map(Answer::Value)
}

async fn card_refresh(shared: &Shared, params: &Value) -> Result<Value, RpcError> {
    let params: RefreshParams = params_of(params)?;
    let reader = match params.reader {
        Some(reader) => reader,
        None => refresh_target(shared)?,
    };
    let session = shared.handle.refresh(&reader).await?;
    log_session("card.refresh", &session);
    session_json(&session)
}

/// The reader to re-read when none is named: the only one holding a card.
fn refresh_target(shared: &Shared) -> Result<String, SessionError> {
    let readers = shared.handle.readers();
    let mut with_card = readers.iter().filter(|r| r.state != ReaderState::Empty);
    match (with_card.next(), with_card.next()) {
        (Some(one), None) => Ok(one.name.clone()),
        (None, _) => Err(SessionError::NoCard("any reader".to_owned())),
        (Some(_), Some(_)) => Err(SessionError::AmbiguousReader(
            readers
                .iter()
                .filter(|r| r.state != ReaderState::Empty)
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

async fn card_verify_pin(shared: &Shared, params: &Value) -> Result<Value, RpcError> {
    // Parsed by hand: a serde error message could quote the PIN.
    let reader = params.get("reader").and_then(Value::as_str);
    let pin = params.get("pin").and_then(Value::as_str);
    let on_pad = params.get("pin_pad") == Some(&Value::Bool(true));
    let usage = "card.verify_pin needs {\"reader\": string, \"pin\": string} or {\"reader\": \
                 string, \"pin_pad\": true}";
    let Some(reader) = reader else {
        return Err(RpcError::invalid_params(usage));
    };
    if params.as_object().is_some_and(|o| o.len() > 2) {
        return Err(RpcError::invalid_params(usage));
    }
    let pin = match (pin, on_pad) {
        (Some(pin), false) => PinInput::Typed(Pin::new(pin).map_err(RpcError::invalid_params)?),
        (None, true) => PinInput::PinPad,
        _ => return Err(RpcError::invalid_params(usage)),
    };
    match shared.handle.verify_pin(reader, pin).await? {
        PinState::Ok => Ok(json!({"ok": true})),
        PinState::Required { tries_left } => {
            tracing::info!(reader, tries_left, "card.verify_pin: wrong PIN");
            Ok(json!({"ok": false, "tries_left": tries_left}))
        }
        PinState::Locked => Err(RpcError::pin_locked()),
    }
}

fn params_of<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, RpcError> {
    T::deserialize(params).map_err(RpcError::invalid_params)
}

fn session_json(session: &CardSession) -> Result<Value, RpcError> {
    serde_json::to_value(session).map_err(RpcError::internal)
}

/// Logs a session answered, personal data masked.
fn log_session(method: &str, session: &CardSession) {
    let holder = &session.card.holder;
    tracing::debug!(
        method,
        reader = %session.reader,
        session_id = session.session_id,
        certno = %holder.certno.as_deref().map(mask::certno).unwrap_or_default(),
        psn_name = %holder.psn_name.as_deref().map(mask::name).unwrap_or_default(),
        "answered from the session"
    );
}

/// The topics of `events.subscribe` params (`{"topics": [...]}`; none: all).
pub fn topics_of(params: &Value) -> Result<Vec<&'static str>, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SubscribeParams {
        topics: Option<Vec<String>>,
    }
    let params: SubscribeParams = params_of(params)?;
    let Some(asked) = params.topics else {
        return Ok(TOPICS.to_vec());
    };
    asked
        .iter()
        .map(|topic| {
            TOPICS
                .iter()
                .find(|known| *known == topic)
                .copied()
                .ok_or_else(|| {
                    RpcError::invalid_params(format!(
                        "unknown topic {topic:?}; topics are {}",
                        TOPICS.join(", ")
                    ))
                })
        })
        .collect()
}

/// A card event's notification params: its fields without the `event` tag.
pub fn event_params(event: &CardEvent) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("event");
            Value::Object(fields)
        }
        _ => json!({}),
    }
}

/// An event's notification params for `peer`: a scanned code only to a caller who
/// [`may_mutate`], null to the others.
pub fn notification_params(shared: &Shared, peer: &Peer, event: &CardEvent) -> Value {
    let mut params = event_params(event);
    if matches!(event, CardEvent::CredentialScanned { .. }) && !may_mutate(shared, peer) {
        params["code"] = Value::Null;
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_default_to_all_and_unknown_ones_are_refused() {
        assert_eq!(topics_of(&json!({})).unwrap().len(), TOPICS.len());
        assert_eq!(
            topics_of(&json!({"topics": ["card.ready"]})).unwrap(),
            vec!["card.ready"]
        );
        assert!(topics_of(&json!({"topics": ["card.eaten"]})).is_err());
    }

    #[test]
    fn event_params_drop_the_tag() {
        let event = CardEvent::CardRemoved { reader: "r".into() };
        assert_eq!(event_params(&event), json!({"reader": "r"}));
    }
}
