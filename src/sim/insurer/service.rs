//! The transaction endpoint: reading the request envelope, checking it as the platform would
//! (msgid shape and uniqueness, sign-in), answering 9001, 1101, X101 and X102 from the
//! database, 1162 (the e-voucher decode) and 1101 by ecToken from [`super::ec_voucher`], dispatching the settlement transactions (2201–2208, 2601, 3201, 3202, X302) and
//! the file transactions (9101, 9102: a file as the HTTP body) to [`super::visit`],
//! [`super::settle`], [`super::recon`] and [`super::files`], and writing every request to
//! msg_log.

use super::SimState;
use super::context::{Ctx, to_value};
use super::db::{MsgLogEntry, SimDb, TxError};
use super::{clock, ec_voucher, files, recon, settle, visit};
use crate::clock::{Date, DateTime};
use crate::insurer::envelope::parse_infcode;
use crate::insurer::files as file_tx;
use crate::insurer::settlement as tx;
use crate::insurer::wire;
use serde_json::{Value, json};

/// What the HTTP layer sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A response envelope (HTTP 200).
    Envelope(Value),
    /// A file (9102), as the HTTP body.
    File {
        filename: String,
        bytes: Vec<u8>,
    },
    Http500,
    Garbage,
    /// Processed; the reply must be lost.
    Drop,
}

/// The request envelope fields the simulator looks at.
#[derive(Debug, Clone)]
pub struct Request {
    pub infno: String,
    pub msgid: String,
    pub sign_no: String,
    /// 经办人类别: 1 经办人, 2 自助终端, 3 移动终端 (the platform refuses anything else).
    pub opter_type: String,
    pub opter: String,
    /// When the sender made the message (`yyyy-MM-dd HH:mm:ss`, Beijing time).
    pub inf_time: String,
    /// The institution asking.
    pub fixmedins_code: String,
    pub input: Value,
}

fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Why a body is not a request; the text is the err_msg the platform answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("请求报文格式错误，无法解析JSON")]
    NotJson,
    #[error("交易编号[infno]不能为空")]
    NoInfno,
    #[error("定点医药机构编号[fixmedins_code]不能为空")]
    NoInstitution,
}

/// Parse a body into a request.
pub fn parse_request(body: &[u8]) -> Result<Request, RequestError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| RequestError::NotJson)?;
    let req = Request {
        infno: field(&v, "infno"),
        msgid: field(&v, "msgid"),
        sign_no: field(&v, "sign_no"),
        opter_type: field(&v, "opter_type"),
        opter: field(&v, "opter"),
        inf_time: field(&v, "inf_time"),
        fixmedins_code: field(&v, "fixmedins_code"),
        input: v.get("input").cloned().unwrap_or(Value::Null),
    };
    if req.infno.is_empty() {
        return Err(RequestError::NoInfno);
    }
    if req.fixmedins_code.is_empty() {
        return Err(RequestError::NoInstitution);
    }
    Ok(req)
}

/// A response envelope.
pub fn envelope(
    state: &SimState,
    infcode: i64,
    err_msg: &str,
    output: Value,
    received: &str,
) -> Value {
    json!({
        "infcode": infcode,
        "inf_refmsgid": state.next_refmsgid(),
        "refmsg_time": received,
        "respond_time": state.platform_now().compact_millis(),
        "err_msg": if infcode == 0 { Value::Null } else { Value::from(err_msg) },
        "warn_msg": Value::Null,
        "cainfo": "",
        "signtype": "",
        "output": output,
    })
}

/// What a transaction answers: an output for the envelope, or a file.
enum Output {
    Json(Value),
    File(files::StoredFile),
}

/// Process a request and log it (`dropped`: its reply will be lost).
pub fn process(state: &SimState, req: &Request, received: &str, dropped: bool) -> Answer {
    let result = answer(state, req);
    let (infcode, err_msg, output) = match result {
        Ok(Output::File(file)) => {
            log_outcome(state, req, dropped, 0, None, None);
            return Answer::File {
                filename: file.filename,
                bytes: file.bytes,
            };
        }
        Ok(Output::Json(output)) => (0, String::new(), output),
        Err(TxError::Refused(msg)) => (-1, msg, Value::Null),
        Err(TxError::Internal(why)) => {
            tracing::error!(error = %why, "insurer-sim database error");
            (-1, "系统内部错误".to_string(), Value::Null)
        }
    };
    let reply = envelope(state, infcode, &err_msg, output, received);
    log_outcome(
        state,
        req,
        dropped,
        reply.get("infcode").and_then(parse_infcode).unwrap_or(-1),
        (infcode != 0).then_some(err_msg.as_str()),
        reply.get("inf_refmsgid").and_then(Value::as_str),
    );
    Answer::Envelope(reply)
}

/// A processed request in msg_log.
fn log_outcome(
    state: &SimState,
    req: &Request,
    dropped: bool,
    infcode: i64,
    err_msg: Option<&str>,
    inf_refmsgid: Option<&str>,
) {
    let outcome = match (dropped, infcode) {
        (true, _) => "processed_reply_dropped",
        (false, 0) => "processed",
        (false, _) => "refused",
    };
    tracing::debug!(infno = %req.infno, msgid = %req.msgid, outcome, infcode, "insurer-sim request");
    state.log(&MsgLogEntry {
        msgid: &req.msgid,
        infno: &req.infno,
        opter_type: &req.opter_type,
        outcome,
        infcode: Some(infcode),
        err_msg,
        inf_refmsgid,
    });
}

/// The platform's 经办人类别 values.
const OPTER_TYPES: [&str; 3] = ["1", "2", "3"];

/// How far a message's `inf_time` may be from the platform's clock (regions allow a few
/// minutes).
const INF_TIME_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether `inf_time` is further than [`INF_TIME_TOLERANCE`] from `platform`; an
/// `inf_time` that cannot be read is not judged here.
fn too_far_apart(inf_time: &str, platform: std::time::SystemTime) -> bool {
    let digits: String = inf_time.chars().filter(char::is_ascii_digit).collect();
    let Some(sent) = crate::clock::from_compact_millis(&format!("{digits}000")) else {
        return false;
    };
    let apart = platform
        .duration_since(sent)
        .unwrap_or_else(|e| e.duration());
    apart > INF_TIME_TOLERANCE
}

fn answer(state: &SimState, req: &Request) -> Result<Output, TxError> {
    if req.msgid.chars().count() != 30 {
        return Err(TxError::Refused(format!(
            "发送方报文ID[{}]格式错误，应为30位",
            req.msgid
        )));
    }
    if too_far_apart(&req.inf_time, state.platform_time()) {
        return Err(TxError::Refused(format!(
            "报文时间[inf_time={}]与中心系统时间相差过大，请校准本机时间",
            req.inf_time
        )));
    }
    if !OPTER_TYPES.contains(&req.opter_type.as_str()) {
        return Err(TxError::Refused(format!(
            "经办人类别[opter_type={}]不在值域范围内(1经办人,2自助终端,3移动终端)",
            req.opter_type
        )));
    }
    let mut db = state.db();
    if db.msgid_seen(&req.msgid)? {
        return Err(TxError::Refused(format!("发送方报文ID[{}]重复", req.msgid)));
    }
    if req.infno != wire::SIGN_IN && !db.sign_no_valid(&req.sign_no)? {
        return Err(TxError::Refused(
            "签到信息不存在或已失效，请重新签到".into(),
        ));
    }
    let ctx = Ctx {
        policies: state.policies(),
        msgid: &req.msgid,
        fixmedins_code: &req.fixmedins_code,
        today: clock::business_date(db.conn())?,
    };
    if req.infno == file_tx::FILE_DOWNLOAD {
        return files::download(&db, &ctx, &req.input).map(Output::File);
    }
    let data = req.input.get("data").cloned().unwrap_or(Value::Null);
    let output = match req.infno.as_str() {
        wire::SIGN_IN => {
            let sign_no = state.next_sign_no();
            let now = DateTime::now().datetime();
            let opter = req
                .input
                .get("signIn")
                .map(|s| field(s, "opter_no"))
                .unwrap_or_else(|| req.opter.clone());
            db.sign_in(&opter, &sign_no, &now)?;
            Ok(json!({"signinoutb": {"sign_time": now, "sign_no": sign_no}}))
        }
        wire::SIGN_OUT => {
            let sign_no = req
                .input
                .get("signOut")
                .map(|s| field(s, "sign_no"))
                .unwrap_or_else(|| req.sign_no.clone());
            db.sign_out(&sign_no)?;
            let now = DateTime::now().datetime();
            Ok(json!({"signoutoutb": {"sign_time": now}}))
        }
        wire::PERSON_INFO => person_info(&db, &data, state.card_texts()),
        extension if !state.extensions() && is_extension(extension) => Err(not_offered(extension)),
        wire::EC_DECODE => {
            let token = ec_voucher::new_token(state.region(), &mut || state.random());
            let now = std::time::SystemTime::now();
            ec_voucher::decode(&db, &data, &token, now, state.ec_token_ttl())
        }
        wire::CARD_FEED => {
            let (ver, size) = versioned(&data)?;
            let page = db.card_events(ver, size)?;
            to_value(&page)
        }
        wire::CATALOGUE => {
            let (ver, size) = versioned(&data)?;
            let page = db.catalogue(ver, size)?;
            to_value(&page)
        }
        other => {
            let handler = settlement_handler(other).ok_or_else(|| not_offered(other))?;
            handler(&mut db, &ctx, &req.input)
        }
    };
    output.map(Output::Json)
}

/// medcard's extension transactions (docs/insurer-extension.md): no real platform has them
/// (1162 stands in for the e-voucher SDK's decode, which is not a platform transaction).
fn is_extension(infno: &str) -> bool {
    [
        wire::CARD_FEED,
        wire::CATALOGUE,
        tx::DAY_DETAIL,
        wire::EC_DECODE,
    ]
    .contains(&infno)
}

/// The platform's refusal of a transaction it does not offer.
fn not_offered(infno: &str) -> TxError {
    TxError::Refused(format!("交易编号[{infno}]不存在或未开通"))
}

/// A settlement transaction's function.
type Handler = fn(&mut SimDb, &Ctx<'_>, &Value) -> Result<Value, TxError>;

fn settlement_handler(infno: &str) -> Option<Handler> {
    let handler: Handler = match infno {
        tx::REGISTER => visit::register,
        tx::CANCEL_REGISTER => visit::cancel_register,
        tx::VISIT_INFO => visit::visit_info,
        tx::FEE_UPLOAD => visit::fee_upload,
        tx::FEE_CANCEL => visit::fee_cancel,
        tx::PRE_SETTLE => settle::pre_settle,
        tx::SETTLE => settle::settle,
        tx::REFUND => settle::refund,
        tx::REVERSAL => settle::reverse,
        tx::DAY_TOTALS => recon::day_totals,
        tx::DETAIL_RECONCILE => recon::detail_reconcile,
        file_tx::FILE_UPLOAD => files::upload,
        tx::DAY_DETAIL => recon::day_detail,
        _ => return None,
    };
    Some(handler)
}

fn person_info(
    db: &super::db::SimDb,
    data: &Value,
    texts: &super::db::CardTexts,
) -> Result<Value, TxError> {
    let cert_type = field(data, "mdtrt_cert_type");
    let cert_no = field(data, "mdtrt_cert_no");
    let person = match cert_type.as_str() {
        "03" => {
            // Some regions send `卡号|pBusiCardInfo`; the 卡号 comes first.
            let card_no = cert_no.split('|').next().unwrap_or_default();
            db.person_by_card(card_no, &field(data, "card_sn"), texts)?
        }
        "02" => {
            let certno = Some(field(data, "certno"))
                .filter(|c| !c.is_empty())
                .unwrap_or(cert_no);
            db.person_by_certno(&certno)?
        }
        "01" => ec_voucher::person_by_token(db, &cert_no, std::time::SystemTime::now())?,
        other => {
            return Err(TxError::Refused(format!("就诊凭证类型[{other}]不正确")));
        }
    };
    Ok(wire::person_output(&person, age(&person.baseinfo.brdy)))
}

/// Age in whole years on today's date, from `yyyy-MM-dd`.
fn age(brdy: &str) -> Option<u32> {
    Date::today().years_since(Date::parse(brdy).ok()?)
}

/// X101 / X102 input: `ver` (string or number, "0" = from the start) and `page_size` 1–5000.
fn versioned(data: &Value) -> Result<(u64, u32), TxError> {
    let ver_text = field(data, "ver");
    let ver = if ver_text.is_empty() {
        0
    } else {
        ver_text
            .parse::<u64>()
            .map_err(|_| TxError::Refused(format!("版本号[ver={ver_text}]格式错误")))?
    };
    let size = field(data, "page_size").parse::<u32>().unwrap_or(100);
    if !(1..=5000).contains(&size) {
        return Err(TxError::Refused(format!(
            "每页数据量[page_size={size}]超出范围(1-5000)"
        )));
    }
    Ok((ver, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_infno_and_institution() {
        assert!(parse_request(b"garbage").is_err());
        assert!(parse_request(br#"{"infno":"1101"}"#).is_err());
        let ok = parse_request(br#"{"infno":"1101","fixmedins_code":"H1","msgid":"m"}"#);
        assert_eq!(ok.map(|r| r.infno), Ok("1101".to_string()));
    }

    #[test]
    fn versioned_input_checks_its_range() {
        assert_eq!(
            versioned(&json!({"ver": "7", "page_size": 3})).ok(),
            Some((7, 3))
        );
        assert_eq!(
            versioned(&json!({"ver": 7, "page_size": "3"})).ok(),
            Some((7, 3))
        );
        assert!(versioned(&json!({"ver": "x"})).is_err());
        assert!(versioned(&json!({"ver": "1", "page_size": 0})).is_err());
    }

    #[test]
    fn age_counts_birthdays() {
        let now = DateTime::now();
        let born = format!("{}-01-01", now.year() - 30);
        assert_eq!(age(&born), Some(30));
        assert_eq!(age("garbage"), None);
    }
}
