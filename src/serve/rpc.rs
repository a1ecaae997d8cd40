//! JSON-RPC 2.0 as medcard speaks it: one object per line, requests in, responses and
//! notifications out. Error objects carry stable numeric codes (the standard ones and
//! medcard's 1001…) and `data` with the national reader-interface code and the operator's
//! Chinese text.

use super::types::SessionError;
use crate::codes::ReaderCode;
use serde::Serialize;
use serde_json::{Value, json};

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

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>, message_zh: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: ErrorData {
                reader_code: None,
                message_zh: message_zh.into(),
            },
        }
    }

    fn with_reader_code(mut self, reader_code: ReaderCode) -> RpcError {
        self.data.reader_code = Some(reader_code);
        self
    }

    pub fn parse(detail: impl std::fmt::Display) -> RpcError {
        RpcError::new(
            code::PARSE_ERROR,
            format!("parse error: {detail}"),
            "请求不是有效的JSON",
        )
    }

    pub fn invalid_request(detail: impl Into<String>) -> RpcError {
        RpcError::new(code::INVALID_REQUEST, detail, "请求格式错误")
    }

    pub fn too_large(limit: usize) -> RpcError {
        RpcError::new(
            code::INVALID_REQUEST,
            format!("request too large: a line may hold at most {limit} bytes"),
            "请求过长",
        )
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
            "不支持的方法",
        )
    }

    pub fn invalid_params(detail: impl std::fmt::Display) -> RpcError {
        RpcError::new(
            code::INVALID_PARAMS,
            format!("invalid params: {detail}"),
            "参数错误",
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> RpcError {
        RpcError::new(
            code::INTERNAL,
            format!("internal error: {detail}"),
            "内部错误",
        )
    }

    pub fn permission_denied(method: &str) -> RpcError {
        RpcError::new(
            code::PERMISSION_DENIED,
            format!("permission denied: {method} needs membership of an allowed group"),
            "无权限：调用者不在允许的用户组中",
        )
    }

    pub fn too_many_connections(max: usize) -> RpcError {
        RpcError::new(
            code::TOO_MANY_CONNECTIONS,
            format!("too many connections: at most {max} at a time; try again later"),
            "连接数已满，请稍后重试",
        )
    }

    pub fn pin_locked() -> RpcError {
        RpcError::new(
            code::PIN_REFUSED,
            "the PIN is locked: the holder must have it reset at the insurer's counter",
            "PIN锁定",
        )
        .with_reader_code(ReaderCode::PIN_LOCKED)
    }
}

impl From<SessionError> for RpcError {
    fn from(e: SessionError) -> RpcError {
        let reader_code = e.reader_code();
        let (code, message_zh) = match &e {
            SessionError::NoCard(_) => (code::NO_CARD, "无卡".to_owned()),
            SessionError::UnknownReader(_) => (code::UNKNOWN_READER, "读卡器不存在".to_owned()),
            SessionError::AmbiguousReader(_) => (
                code::AMBIGUOUS_READER,
                "多个读卡器有卡，请指定读卡器".to_owned(),
            ),
            SessionError::Unreadable { reader_code, .. } => {
                (code::UNREADABLE, reader_code.message_zh().to_owned())
            }
            SessionError::Timeout => (code::WAIT_TIMED_OUT, "等待插卡超时".to_owned()),
            SessionError::MonitorStopped => (code::MONITOR_STOPPED, "读卡服务已停止".to_owned()),
        };
        RpcError::new(code, e.to_string(), message_zh).with_reader_code(reader_code)
    }
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `None` for a notification (no reply is sent).
    pub id: Option<Value>,
    pub method: String,
    pub params: Value,
}

/// Why a line is not a request, with the id to answer (when one could be read).
#[derive(Debug, Clone, PartialEq)]
pub struct BadCall {
    pub id: Value,
    pub error: RpcError,
}

/// Parses one line (without its newline).
pub fn parse_call(line: &[u8]) -> Result<Call, BadCall> {
    let value: Value = serde_json::from_slice(line).map_err(|e| BadCall {
        id: Value::Null,
        error: RpcError::parse(e),
    })?;
    let Value::Object(mut object) = value else {
        return Err(BadCall {
            id: Value::Null,
            error: RpcError::invalid_request("a request is a JSON object"),
        });
    };
    let id = object.remove("id");
    let bad = |detail: &str| BadCall {
        id: id.clone().unwrap_or(Value::Null),
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
    Ok(Call { id, method, params })
}

/// A success response line (no newline).
pub fn success(id: &Value, result: &Value) -> String {
    #[derive(Serialize)]
    struct Success<'a> {
        jsonrpc: &'static str,
        id: &'a Value,
        result: &'a Value,
    }
    let response = Success {
        jsonrpc: "2.0",
        id,
        result,
    };
    serde_json::to_string(&response).unwrap_or_else(|e| failure(id, &RpcError::internal(e)))
}

/// A success response line around `result`, JSON text serialised earlier (no newline; room
/// is left for one).
pub fn success_raw(id: &Value, result: &str) -> String {
    let id = id.to_string();
    let mut line = String::with_capacity(result.len() + id.len() + 36);
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    line.push_str(&id);
    line.push_str(r#","result":"#);
    line.push_str(result);
    line.push('}');
    line
}

/// An error response line (no newline).
pub fn failure(id: &Value, error: &RpcError) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
}

/// A notification line (no newline).
pub fn notification(method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_get_their_codes() {
        let call = parse_call(br#"{"jsonrpc":"2.0","id":7,"method":"readers.list"}"#).unwrap();
        assert_eq!(call.id, Some(json!(7)));
        assert_eq!(call.params, json!({}));
        assert_eq!(
            parse_call(b"{nope").unwrap_err().error.code,
            code::PARSE_ERROR
        );
        let bad = parse_call(br#"{"jsonrpc":"1.0","id":"a","method":"x"}"#).unwrap_err();
        assert_eq!(bad.error.code, code::INVALID_REQUEST);
        assert_eq!(bad.id, json!("a"));
        let bad = parse_call(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#);
        assert_eq!(bad.unwrap_err().error.code, code::INVALID_REQUEST);
    }

    #[test]
    fn session_errors_carry_reader_codes() {
        let error = RpcError::from(SessionError::NoCard("r".into()));
        assert_eq!(error.code, code::NO_CARD);
        assert_eq!(error.data.reader_code, Some(ReaderCode::NO_CARD));
        let raw = success_raw(&json!("a\"b"), r#"{"x":[1,2]}"#);
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
