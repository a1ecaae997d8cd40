//! Operator messages, in one place: for every error the operator can see — a settlement's
//! ([`SettleError`]), a card session's ([`SessionError`]), the protocol's ([`RequestError`]),
//! a card read's (through its national [`ReaderCode`]) — its JSON-RPC error code
//! (docs/protocol.md), its English text and the Chinese text shown at the counter. The
//! socket's error objects ([`RpcError`]) and the command line's failure lines take their
//! text from here; the errors themselves stay typed in their layers and say nothing in
//! Chinese beyond the national terms they quote.
//!
//! Imports every layer below `serve` and `serve::rpc` (the codes and the error object);
//! nothing below imports it. The verdict's reasons (`verdict`) are domain output, not error
//! messages, and stay there.

use super::rpc::{ErrorData, RequestError, RpcError, code};
use super::types::SessionError;
use crate::codes::ReaderCode;
use crate::hospital::HospitalError;
use crate::settle::service::{EcProblem, InvalidRequest, SettleError};
use std::borrow::Cow;
use std::fmt::Display;

/// An error as the operator sees it: its code, English text, Chinese text and, where one
/// applies, the national reader-interface code.
pub trait OperatorMessage: Display {
    /// The JSON-RPC error code (docs/protocol.md).
    fn code(&self) -> i32;
    /// The text for the operator, in Chinese.
    fn message_zh(&self) -> Cow<'static, str>;
    /// The text in English: the error's own.
    fn message_en(&self) -> String {
        self.to_string()
    }
    /// The national reader-interface code that goes in `data.reader_code`.
    fn reader_code(&self) -> Option<ReaderCode> {
        None
    }
}

impl<E: OperatorMessage> From<E> for RpcError {
    fn from(e: E) -> RpcError {
        RpcError {
            code: e.code(),
            message: e.message_en(),
            data: ErrorData {
                reader_code: e.reader_code(),
                message_zh: e.message_zh().into_owned(),
            },
        }
    }
}

/// `events.dropped`'s text: a subscriber too slow to keep up was dropped.
pub const SUBSCRIBER_DROPPED_ZH: &str = "事件订阅已取消：客户端处理过慢";

/// The national reader-interface table's text for `code` (card-spec.md §5.1, SC-RW
/// Appendix A).
pub fn reader_code_zh(code: ReaderCode) -> &'static str {
    match code.0 {
        -1 => "卡类型不对",
        -2 => "无卡",
        -3 => "有卡未上电",
        -4 => "卡无应答",
        -5 => "加载动态库错",
        -11 => "读卡器连接错",
        -12 => "未建立连接",
        -13 => "不支持该命令",
        -14 => "命令参数错",
        -15 => "信息校验和出错",
        -20 => "卡识别码格式错",
        -21 => "内部认证失败(用户卡不合法)",
        -22 => "传入数据与卡内不符",
        -31 => "用户取消",
        -32 => "超时",
        -24 => "PSAM卡密钥级别不够",
        -33 => "密码长度错",
        -51 => "PIN校验失败",
        -52 => "PIN锁定",
        -2201 => "无PSAM卡",
        -2202 => "PSAM不支持SSF33或SM4",
        -2203 => "PSAM内无RKSSSE(3.0卡读基本信息需要)",
        -25551..=-25536 => "外部认证失败",
        code if code < -25000 => "卡片返回错误状态码",
        _ => "未知错误",
    }
}

/// The command line's failure line for a reader-interface failure: `EN (ZH，错误码 N)`.
pub fn reader_failure_line(message_en: &str, code: ReaderCode) -> String {
    format!("{message_en} ({}，错误码 {})", reader_code_zh(code), code.0)
}

impl OperatorMessage for SettleError {
    fn code(&self) -> i32 {
        match self {
            SettleError::UnknownVisit(_) | SettleError::VisitCancelled(_) => code::UNKNOWN_VISIT,
            SettleError::UnknownPreview(_) => code::UNKNOWN_PREVIEW,
            SettleError::UnknownSettlement(_) => code::UNKNOWN_SETTLEMENT,
            SettleError::NotAllowed(_)
            | SettleError::CardMayNotSettle { .. }
            | SettleError::HolderUnknown => code::SETTLE_NOT_ALLOWED,
            SettleError::BatchSettled { .. } => code::BATCH_SETTLED,
            SettleError::EcVoucherRefused { .. } => code::EC_VOUCHER_REFUSED,
            SettleError::Refused { .. } | SettleError::UnreadableAnswer { .. } => {
                code::INSURER_REFUSED
            }
            SettleError::InsurerDown(_)
            | SettleError::InsurerBusy { .. }
            | SettleError::AttemptsUndone { .. }
            | SettleError::NoInsurer => code::INSURER_DOWN,
            SettleError::TooLarge { .. } => code::REQUEST_TOO_LARGE,
            SettleError::Unknown { .. }
            | SettleError::OutcomeUnrecorded { .. }
            | SettleError::CancellationUnrecorded { .. } => code::OUTCOME_UNKNOWN,
            SettleError::RegistrationUnrecorded {
                cancelled: false, ..
            } => code::OUTCOME_UNKNOWN,
            SettleError::JournalUnwritable { .. }
            | SettleError::PreviewUnrecorded { .. }
            | SettleError::RegistrationUnrecorded {
                cancelled: true, ..
            } => code::JOURNAL_UNAVAILABLE,
            SettleError::Invalid(_) => code::INVALID_PARAMS,
            SettleError::Policy(_) | SettleError::NoPolicy(_) | SettleError::Cache(_) => {
                code::INTERNAL
            }
        }
    }

    fn message_zh(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            SettleError::CardMayNotSettle { message_zh, .. } => {
                return Cow::Owned(message_zh.clone());
            }
            SettleError::HolderUnknown => "医保中心无此参保人，请按自费收费",
            SettleError::EcVoucherRefused { problem, .. } => ec_problem_zh(*problem),
            SettleError::UnknownVisit(_) => "就诊ID不存在",
            SettleError::VisitCancelled(_) => "该就诊已撤销",
            SettleError::UnknownPreview(_) => "预结算不存在，请先预结算",
            SettleError::UnknownSettlement(_) => "结算记录不存在",
            SettleError::NotAllowed(_) => "该卡不能医保结算，请按自费收费",
            SettleError::BatchSettled { .. } => "该批次已结算",
            SettleError::Refused { .. } | SettleError::UnreadableAnswer { .. } => "医保中心拒绝",
            SettleError::InsurerDown(_)
            | SettleError::AttemptsUndone { .. }
            | SettleError::NoInsurer => "医保中心无法连接，未扣费",
            SettleError::InsurerBusy { .. } => "医保中心系统繁忙，未扣费，请稍后用同一请求号重试",
            SettleError::TooLarge { .. } => "费用明细过多，医保中心拒收，未扣费：请分单结算",
            SettleError::Unknown { .. } => "结算结果未知，正在冲正，请稍后查询",
            SettleError::OutcomeUnrecorded { .. } => {
                "结算结果未知：交易已发送但本地日志无法写入（磁盘已满？），请勿另行收费，稍后查询"
            }
            SettleError::JournalUnwritable { .. } => {
                "本地日志无法写入（磁盘已满？），未发送交易，未扣费；请清理磁盘后重试"
            }
            SettleError::PreviewUnrecorded { .. } => {
                "本地日志无法写入（磁盘已满？），预结算未记录，未扣费；请清理磁盘后重新预结算"
            }
            SettleError::CancellationUnrecorded { .. } => {
                "医保中心已撤销挂号，但本地日志无法写入（磁盘已满？）；请清理磁盘后再次撤销以记录"
            }
            SettleError::RegistrationUnrecorded {
                cancelled: true, ..
            } => "本地日志无法写入（磁盘已满？），挂号已撤销，请清理磁盘后重新挂号",
            SettleError::RegistrationUnrecorded {
                cancelled: false, ..
            } => "本地日志无法写入，医保中心已挂号且撤销失败，请清理磁盘后到医保中心撤销",
            SettleError::Invalid(InvalidRequest::TooManyLines { .. }) => {
                "费用明细条数超过上限，请拆分为多张费用单"
            }
            SettleError::Invalid(_) => "参数错误",
            SettleError::Policy(_) | SettleError::NoPolicy(_) | SettleError::Cache(_) => "内部错误",
        })
    }
}

/// What the cashier tells a patient whose 医保电子凭证 was refused.
fn ec_problem_zh(problem: EcProblem) -> &'static str {
    match problem {
        EcProblem::CodeExpired => "电子凭证二维码已过期，请患者在手机上刷新后重新出示",
        EcProblem::CodeUsed => "电子凭证二维码已使用，请患者在手机上刷新后重新出示",
        EcProblem::CodeUnknown => "无法识别该医保电子凭证，请重新扫码，或改用社保卡、身份证",
        EcProblem::TokenInvalid => "医保电子凭证已失效，请患者重新出示电子凭证",
    }
}

impl OperatorMessage for SessionError {
    fn code(&self) -> i32 {
        match self {
            SessionError::NoCard(_) => code::NO_CARD,
            SessionError::UnknownReader(_) => code::UNKNOWN_READER,
            SessionError::AmbiguousReader(_) => code::AMBIGUOUS_READER,
            SessionError::Unreadable { .. } => code::UNREADABLE,
            SessionError::Timeout => code::WAIT_TIMED_OUT,
            SessionError::MonitorStopped => code::MONITOR_STOPPED,
        }
    }

    fn message_zh(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            SessionError::NoCard(_) => "无卡",
            SessionError::UnknownReader(_) => "读卡器不存在",
            SessionError::AmbiguousReader(_) => "多个读卡器有卡，请指定读卡器",
            SessionError::Unreadable { reader_code, .. } => reader_code_zh(*reader_code),
            SessionError::Timeout => "等待插卡超时",
            SessionError::MonitorStopped => "读卡服务已停止",
        })
    }

    fn reader_code(&self) -> Option<ReaderCode> {
        Some(SessionError::reader_code(self))
    }
}

impl OperatorMessage for RequestError {
    fn code(&self) -> i32 {
        match self {
            RequestError::Parse(_) => code::PARSE_ERROR,
            RequestError::InvalidRequest(_) | RequestError::TooLarge(_) => code::INVALID_REQUEST,
            RequestError::MethodNotFound(_) => code::METHOD_NOT_FOUND,
            RequestError::InvalidParams(_) => code::INVALID_PARAMS,
            RequestError::Internal(_) => code::INTERNAL,
            RequestError::PermissionDenied(_) => code::PERMISSION_DENIED,
            RequestError::TooManyConnections(_) | RequestError::TooManyForUser { .. } => {
                code::TOO_MANY_CONNECTIONS
            }
            RequestError::PinLocked => code::PIN_REFUSED,
            RequestError::SettlementNotConfigured => code::INSURER_DOWN,
            RequestError::JournalUnavailable(_) => code::JOURNAL_UNAVAILABLE,
            RequestError::SessionGone { .. } => code::NO_CARD,
            RequestError::Busy { .. } => code::BUSY,
            RequestError::WebNotAllowed(_) => code::WEB_NOT_ALLOWED,
        }
    }

    fn message_zh(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            RequestError::Parse(_) => "请求不是有效的JSON",
            RequestError::InvalidRequest(_) => "请求格式错误",
            RequestError::TooLarge(_) => "请求过长",
            RequestError::MethodNotFound(_) => "不支持的方法",
            RequestError::InvalidParams(_) => "参数错误",
            RequestError::Internal(_) => "内部错误",
            RequestError::PermissionDenied(_) => "无权限：调用者不在允许的用户组中",
            RequestError::TooManyConnections(_) => "连接数已满，请稍后重试",
            RequestError::TooManyForUser { .. } => "该用户连接数已满，请关闭不再使用的连接",
            RequestError::PinLocked => reader_code_zh(ReaderCode::PIN_LOCKED),
            RequestError::SettlementNotConfigured => "未配置医保结算",
            RequestError::JournalUnavailable(_) => "本地结算日志不可用，医保结算已停用，未发送交易",
            RequestError::SessionGone { .. } => "卡已更换，请重新读卡",
            RequestError::Busy { .. } => "服务繁忙：大额请求过多，未处理，请稍后重试",
            RequestError::WebNotAllowed(_) => {
                "网页调用被拒绝：来源、主机名或令牌不符，或该令牌无权调用此方法"
            }
        })
    }

    fn reader_code(&self) -> Option<ReaderCode> {
        match self {
            RequestError::PinLocked => Some(ReaderCode::PIN_LOCKED),
            _ => None,
        }
    }
}

/// `medcard hospital` and `reconcile --hospital` without a hospital database configured.
pub const HOSPITAL_NOT_CONFIGURED_ZH: &str = "未配置医院数据库（[hospital] database）";

/// The Chinese text of a failure to use the hospital database, for the command line.
pub fn hospital_error_zh(e: &HospitalError) -> &'static str {
    match e {
        HospitalError::Unreachable(_) => "医院数据库无法连接",
        HospitalError::Database(_) => "医院数据库报错",
        HospitalError::NewerSchema { .. } => "医院数据库版本高于本程序，请升级 medcard",
        HospitalError::Refused(_) | HospitalError::NotRegistered => "医院数据库拒绝本工作站",
        HospitalError::Journal(_) => "本地结算日志不可用",
        _ => "医院数据库配置有误",
    }
}

/// The command line's failure line for the hospital database: `EN (ZH)`.
pub fn hospital_failure_line(e: &HospitalError) -> String {
    format!("{e} ({})", hospital_error_zh(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::StatusWord;

    #[test]
    fn reader_codes_have_the_national_texts() {
        let code = ReaderCode::from_status(StatusWord(0x6A83));
        assert_eq!(reader_code_zh(code), "卡片返回错误状态码");
        assert_eq!(
            reader_code_zh(ReaderCode::NOT_SOCIAL_SECURITY_CARD),
            "卡类型不对"
        );
        assert_eq!(reader_code_zh(ReaderCode(-20)), "卡识别码格式错");
        assert_eq!(
            reader_failure_line("no card", ReaderCode::NO_CARD),
            "no card (无卡，错误码 -2)"
        );
    }

    #[test]
    fn settlement_errors_keep_their_codes() {
        let refused = RpcError::from(SettleError::Refused {
            infcode: -1,
            err_msg: "x".into(),
        });
        assert_eq!(refused.code, code::INSURER_REFUSED);
        assert_eq!(refused.data.message_zh, "医保中心拒绝");
        assert_eq!(refused.message, "the insurer refused: x");
        let down = RpcError::from(SettleError::AttemptsUndone { attempts: 3 });
        assert_eq!(down.code, code::INSURER_DOWN);
        let busy = RpcError::from(SettleError::InsurerBusy {
            err_msg: "医保中心系统繁忙，请稍后再试".into(),
        });
        assert_eq!(busy.code, code::INSURER_DOWN);
        assert!(busy.message.contains("same request_id"), "{}", busy.message);
        let large = RpcError::from(SettleError::TooLarge {
            infno: "2204".into(),
            bytes: 70_000,
        });
        assert_eq!(large.code, code::REQUEST_TOO_LARGE);
        assert!(
            large.message.contains("split the bill"),
            "{}",
            large.message
        );
        assert!(!large.message.contains("retry"), "{}", large.message);
        assert!(large.data.message_zh.contains("分单结算"));
        let zh = SettleError::CardMayNotSettle {
            message_en: "lost".into(),
            message_zh: "已挂失".into(),
        };
        assert_eq!(RpcError::from(zh).data.message_zh, "已挂失");
    }
}
