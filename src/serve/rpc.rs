//! JSON-RPC 2.0 as medcard speaks it: one object per line, requests in, responses and
//! notifications out. Error objects carry stable numeric codes (the standard ones and
//! medcard's 1001…) and `data` with the national reader-interface code and the operator's
//! Chinese text, both from `serve::messages` (the one place for operator messages).

use crate::codes::ReaderCode;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;

/// Stable error codes. The negative ones are JSON-RPC's; 1001 and up are medcard's.
pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL: i32 = -32603;
    pub const NO_CARD: i32 = 1001;
    pub const UNKNOWN_READER: i32 = 1002;
    pub const AMBIGUOUS_READER: i32 = 1003;
    pub const UNREADABLE: i32 = 1004;
    pub const WAIT_TIMED_OUT: i32 = 1005;
    pub const PIN_REFUSED: i32 = 1006;
    pub const PERMISSION_DENIED: i32 = 1007;
    pub const TOO_MANY_CONNECTIONS: i32 = 1008;
    pub const MONITOR_STOPPED: i32 = 1009;
    /// Settlement (docs/protocol.md): no such visit, or it was cancelled.
    pub const UNKNOWN_VISIT: i32 = 1010;
    pub const UNKNOWN_PREVIEW: i32 = 1011;
    pub const UNKNOWN_SETTLEMENT: i32 = 1012;
    /// The card's verdict forbids insurance settlement.
    pub const SETTLE_NOT_ALLOWED: i32 = 1013;
    /// The batch was settled by another request_id.
    pub const BATCH_SETTLED: i32 = 1014;
    /// The insurer refused (its err_msg is in the message).
    pub const INSURER_REFUSED: i32 = 1015;
    /// The insurer cannot be reached, or settlement is not configured; nothing was charged.
    pub const INSURER_DOWN: i32 = 1016;
    /// A money-moving call is unanswered and being reversed; ask settle.status.
    pub const OUTCOME_UNKNOWN: i32 = 1017;
    /// The insurer refused the request as too large (HTTP 413): split the bill; nothing
    /// was charged, and retrying the same request cannot work.
    pub const REQUEST_TOO_LARGE: i32 = 1018;
    /// The journal (the cache file) cannot be written or used: nothing was sent, nothing
    /// charged; `system.info`'s `journal` says why.
    pub const JOURNAL_UNAVAILABLE: i32 = 1019;
    /// Too many large requests in progress daemon-wide: nothing was done; retry.
    pub const BUSY: i32 = 1020;
    /// The web endpoint refused the caller: its origin, its `Host`, its token, or a method
    /// its token does not open (docs/web.md).
    pub const WEB_NOT_ALLOWED: i32 = 1021;
    /// The 医保电子凭证 was refused: the code expired, was used, is unknown, or its token
    /// lapsed; nothing was registered — the patient shows a fresh code.
    pub const EC_VOUCHER_REFUSED: i32 = 1022;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    pub data: ErrorData,
}

/// What medcard adds to every error: the reader-interface code (when one applies) and the
/// operator's message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorData {
    pub reader_code: Option<ReaderCode>,
    pub message_zh: String,
}

/// Why a request got no result from a method: the protocol's own errors and the socket's.
/// The strings are details (serde's account, a method's name); the variant is the kind.
/// Their codes and operator texts are in `serve::messages`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request too large: a line may hold at most {0} bytes")]
    TooLarge(usize),
    #[error("method not found: {0}")]
    MethodNotFound(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("permission denied: {0} needs membership of an allowed group")]
    PermissionDenied(String),
    #[error("too many connections: at most {0} at a time; try again later")]
    TooManyConnections(usize),
    #[error(
        "too many connections from uid {uid}: at most {max} per user; close the connections \
         that program no longer uses"
    )]
    TooManyForUser { uid: u32, max: usize },
    #[error("the PIN is locked: the holder must have it reset at the insurer's counter")]
    PinLocked,
    #[error("settlement is not configured: it needs [insurer] url and [cache] path")]
    SettlementNotConfigured,
    /// Settlement is off because the cache file (the journal) cannot be used: why.
    #[error(
        "settlement is off: the journal cannot be used ({0}); nothing was sent or charged — \
         see system.info and the daemon's log for what to do"
    )]
    JournalUnavailable(String),
    /// The request names a card session that is no longer the card in the reader.
    #[error("card session {asked} is gone: the card in the reader is session {current}")]
    SessionGone { asked: u64, current: u64 },
    /// A large request found no turn among `socket.max_heavy_requests` in
    /// `socket.heavy_wait_ms`: nothing was done.
    #[error(
        "busy: {max} large requests are in progress and none finished within {waited_ms} ms; \
         nothing was done — retry the request"
    )]
    Busy { max: usize, waited_ms: u64 },
    /// The web endpoint refused: why, in full (origin, Host, token, or the method).
    #[error("web caller refused: {0}")]
    WebNotAllowed(String),
}

impl RpcError {
    pub fn parse(detail: impl std::fmt::Display) -> RpcError {
        RequestError::Parse(detail.to_string()).into()
    }

    pub fn invalid_request(detail: impl Into<String>) -> RpcError {
        RequestError::InvalidRequest(detail.into()).into()
    }

    pub fn too_large(limit: usize) -> RpcError {
        RequestError::TooLarge(limit).into()
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RequestError::MethodNotFound(method.to_owned()).into()
    }

    pub fn invalid_params(detail: impl std::fmt::Display) -> RpcError {
        RequestError::InvalidParams(detail.to_string()).into()
    }

    pub fn internal(detail: impl std::fmt::Display) -> RpcError {
        RequestError::Internal(detail.to_string()).into()
    }

    pub fn permission_denied(method: &str) -> RpcError {
        RequestError::PermissionDenied(method.to_owned()).into()
    }

    pub fn pin_locked() -> RpcError {
        RequestError::PinLocked.into()
    }
}

/// A request's id as the client wrote it, kept as JSON text: a string, null, or a number
/// with its exact digits — a 30-digit id comes back as those 30 digits, not as the nearest
/// `f64` (`serde_json::Value` keeps only integers up to 64 bits exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    /// The id `null` (a request whose id could not be read).
    pub fn null() -> Id {
        Id("null".to_owned())
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// `value` (a string, a number or null) as an id; a number that is not a 64-bit integer
    /// takes its text from the `line` it was read from.
    fn of(value: &Value, line: &[u8]) -> Id {
        if let Value::Number(n) = value
            && n.as_i64().is_none()
            && n.as_u64().is_none()
        {
            #[derive(serde::Deserialize)]
            struct RawId<'a> {
                #[serde(borrow)]
                id: &'a RawValue,
            }
            if let Ok(raw) = serde_json::from_slice::<RawId<'_>>(line) {
                return Id(raw.id.get().trim().to_owned());
            }
        }
        Id(value.to_string())
    }
}

/// What a response's id is written from: a request's [`Id`], or a JSON value (`null` when
/// no id could be read).
pub trait ResponseId {
    fn json(&self) -> Cow<'_, str>;
}

impl ResponseId for Id {
    fn json(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}

impl ResponseId for Value {
    fn json(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `None` for a notification (no reply is sent).
    pub id: Option<Id>,
    pub method: String,
    pub params: Value,
}

/// Why a line is not a request, with the id to answer (when one could be read).
#[derive(Debug, Clone, PartialEq)]
pub struct BadCall {
    pub id: Id,
    pub error: RpcError,
}

/// Parses one line (without its newline).
pub fn parse_call(line: &[u8]) -> Result<Call, BadCall> {
    let value: Value = serde_json::from_slice(line).map_err(|e| BadCall {
        id: Id::null(),
        error: RpcError::parse(e),
    })?;
    let Value::Object(mut object) = value else {
        return Err(BadCall {
            id: Id::null(),
            error: RpcError::invalid_request("a request is a JSON object"),
        });
    };
    let id = object.remove("id");
    let bad = |detail: &str| BadCall {
        id: match &id {
            Some(id @ (Value::String(_) | Value::Number(_))) => Id::of(id, line),
            _ => Id::null(),
        },
        error: RpcError::invalid_request(detail),
    };
    if !matches!(
        &id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        return Err(bad("id must be a string, a number or null"));
    }
    if object.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(bad("jsonrpc must be \"2.0\""));
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return Err(bad("method must be a string"));
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(params @ Value::Object(_)) => params,
        Some(_) => return Err(bad("params must be an object")),
    };
    Ok(Call {
        id: id.map(|id| Id::of(&id, line)),
        method,
        params,
    })
}

/// A response line: `{"jsonrpc":"2.0","id":…,"<key>":<body>}` around `body`, JSON text
/// (no newline).
fn response_line(id: &impl ResponseId, key: &str, body: &str) -> String {
    let id = id.json();
    let mut line = String::with_capacity(body.len() + id.len() + key.len() + 32);
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    line.push_str(&id);
    line.push_str(",\"");
    line.push_str(key);
    line.push_str("\":");
    line.push_str(body);
    line.push('}');
    line
}

/// A success response line (no newline).
pub fn success(id: &impl ResponseId, result: &Value) -> String {
    match serde_json::to_string(result) {
        Ok(result) => success_raw(id, &result),
        Err(e) => failure(id, &RpcError::internal(e)),
    }
}

/// A success response line around `result`, JSON text serialised earlier (no newline).
pub fn success_raw(id: &impl ResponseId, result: &str) -> String {
    response_line(id, "result", result)
}

/// An error response line (no newline).
pub fn failure(id: &impl ResponseId, error: &RpcError) -> String {
    let error = serde_json::to_string(error).unwrap_or_else(|_| "null".to_owned());
    response_line(id, "error", &error)
}

/// A notification line (no newline).
pub fn notification(method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::types::SessionError;

    #[test]
    fn requests_parse_and_bad_ones_get_their_codes() {
        let call = parse_call(br#"{"jsonrpc":"2.0","id":7,"method":"readers.list"}"#).unwrap();
        assert_eq!(call.id.as_ref().map(Id::as_json), Some("7"));
        assert_eq!(call.params, json!({}));
        assert_eq!(
            parse_call(b"{nope").unwrap_err().error.code,
            code::PARSE_ERROR
        );
        let bad = parse_call(br#"{"jsonrpc":"1.0","id":"a","method":"x"}"#).unwrap_err();
        assert_eq!(bad.error.code, code::INVALID_REQUEST);
        assert_eq!(bad.id.as_json(), r#""a""#);
        let bad = parse_call(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#);
        assert_eq!(bad.unwrap_err().error.code, code::INVALID_REQUEST);
    }

    #[test]
    fn ids_come_back_exactly_as_written() {
        for id in [
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "18446744073709551616",
            "1.5",
            "1e3",
            "0.1000000000000000055511151231257827",
            "7",
            r#""x\u00e9""#,
            "null",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id": {id} ,"method":"system.info"}}"#);
            let call = parse_call(line.as_bytes()).unwrap();
            let id_text = call.id.as_ref().map(Id::as_json);
            let expected = if id.starts_with('"') { r#""xé""# } else { id };
            assert_eq!(id_text, Some(expected));
            let reply = success(call.id.as_ref().unwrap(), &json!(true));
            assert!(reply.contains(&format!(r#""id":{expected},"#)), "{reply}");
            let bad = format!(r#"{{"jsonrpc":"1.0","id":{id},"method":"x"}}"#);
            let bad = parse_call(bad.as_bytes()).unwrap_err();
            assert!(failure(&bad.id, &bad.error).contains(&format!(r#""id":{expected},"#)));
        }
    }

    #[test]
    fn session_errors_carry_reader_codes() {
        let error = RpcError::from(SessionError::NoCard("r".into()));
        assert_eq!(error.code, code::NO_CARD);
        assert_eq!(error.data.reader_code, Some(ReaderCode::NO_CARD));
        let raw = success_raw(&json!("a\"b"), r#"{"x":[1,2]}"#);
        assert_eq!(raw, r#"{"jsonrpc":"2.0","id":"a\"b","result":{"x":[1,2]}}"#);
        let value: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            value,
            json!({"jsonrpc": "2.0", "id": "a\"b", "result": {"x": [1, 2]}})
        );
        assert_eq!(raw, success(&json!("a\"b"), &json!({"x": [1, 2]})));
        let line = failure(&json!(1), &RpcError::pin_locked());
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["error"]["code"], 1006);
        assert_eq!(value["error"]["data"]["reader_code"], -52);
    }
}
