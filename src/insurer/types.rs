//! What the insurer returns, as medcard keeps it. Field names are the national platform's
//! data-element names. Money is `rust_decimal::Decimal` (yuan, two places), never floating
//! point.

use super::wire::WireError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// 1101 `baseinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonBase {
    /// 人员编号: the key of every later call.
    pub psn_no: String,
    pub psn_cert_type: String,
    pub certno: String,
    pub psn_name: String,
    pub gend: String,
    pub naty: String,
    /// YYYY-MM-DD.
    pub brdy: String,
}

/// What a 医保电子凭证 code decodes into (1162, the simulator's stand-in for the platform
/// SDK's decode; the SDK names them ecToken, idNo, userName, idType): the token 1101 takes
/// with mdtrt_cert_type 01, and the holder's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcIdentity {
    /// ecToken: mdtrt_cert_no of 1101 (and of the visit's settlement) with mdtrt_cert_type 01.
    pub ec_token: String,
    /// idNo: the holder's certificate number.
    pub certno: String,
    /// userName.
    pub psn_name: String,
    /// idType: 人员证件类型 (01 居民身份证 …).
    pub psn_cert_type: String,
}

/// One 1101 `insuinfo` row (a person may have several: one per insutype).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsuInfo {
    /// 个人账户余额, yuan.
    pub balc: Decimal,
    /// 险种类型: 310 职工基本医疗保险, 390 城乡居民基本医疗保险 …
    pub insutype: String,
    /// 人员类别: 11 在职, 12 退休 …
    pub psn_type: String,
    /// 人员参保状态: only "1" (正常参保) gets benefits; 2 暂停, 4 终止, 0 未参保.
    pub psn_insu_stas: String,
    /// 参保地医保区划.
    pub insuplc_admdvs: String,
    /// 参保日期 / 暂停参保日期, YYYY-MM-DD, when known.
    pub psn_insu_date: Option<String>,
    pub paus_insu_date: Option<String>,
}

/// A 1101 answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonInfo {
    pub baseinfo: PersonBase,
    pub insuinfo: Vec<InsuInfo>,
}

/// What happened to a card (the issuer's side; medcard's extension feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardEventKind {
    /// 挂失: reported lost.
    Lost,
    /// 解挂: the loss report withdrawn.
    Unlocked,
    /// 补换卡: replaced by a newer card (`new_card_no`).
    Replaced,
    /// 注销: cancelled.
    Cancelled,
}

/// One card-status event. `version` is strictly increasing across the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardStatusEvent {
    pub version: u64,
    /// 卡号 of the card concerned.
    pub card_no: String,
    /// 卡识别码, when the issuer knows it.
    pub card_sn: Option<String>,
    /// 社会保障号码 of the holder.
    pub certno: String,
    pub kind: CardEventKind,
    /// For `Replaced`: the newer card's 卡号.
    pub new_card_no: Option<String>,
    /// When the issuer recorded it, `yyyy-MM-dd HH:mm:ss`.
    pub event_time: String,
}

/// A page of the card-status feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardEventPage {
    pub events: Vec<CardStatusEvent>,
    /// The feed's newest version at the insurer (for lag reporting).
    pub latest_version: u64,
}

/// 收费项目等级.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChrgitmLv {
    /// 01 甲类: fully in scope.
    #[serde(rename = "01")]
    A,
    /// 02 乙类: in scope after the 先行自付 share (`selfpay_prop`).
    #[serde(rename = "02")]
    B,
    /// 03 丙类: self-paid.
    #[serde(rename = "03")]
    C,
}

/// A catalogue item (医保目录), as 1312 describes it, with its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueItem {
    pub version: u64,
    /// 医保目录编码.
    pub hilist_code: String,
    pub hilist_name: String,
    pub chrgitm_lv: ChrgitmLv,
    /// 先行自付比例 for 乙类 items (0.10 = 10 %); 0 otherwise.
    pub selfpay_prop: Decimal,
    /// Price cap (限价), yuan; `None` = none.
    pub pric_uplmt_amt: Option<Decimal>,
    /// 有效标志: false = withdrawn from the catalogue.
    pub vali_flag: bool,
}

/// A page of catalogue changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CataloguePage {
    pub items: Vec<CatalogueItem>,
    pub latest_version: u64,
}

/// What kind of "no usable answer" an uncertain call had: every one leaves the outcome
/// unknown (the details are text, so that [`LinkError`] stays comparable and cloneable).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Uncertainty {
    /// No answer in time.
    #[error("transport: {0}")]
    Timeout(String),
    /// The request did not get through, or the connection broke.
    #[error("transport: {0}")]
    Transport(String),
    /// An HTTP status other than 200.
    #[error("HTTP {0}")]
    Http(u16),
    /// The body of the reply could not be read.
    #[error("reading the reply: {0}")]
    Body(String),
    /// The body is not JSON.
    #[error("unparsable response body: {0}")]
    NotJson(String),
    /// The body is JSON without an `infcode`.
    #[error("response without a readable infcode")]
    NoInfcode,
    /// An answer (infcode 0) whose output cannot be read: it may have been applied.
    #[error("{infno} output unreadable: {source}")]
    Output { infno: String, source: WireError },
    /// The thread that owned the link is gone (`medcard sync`'s prefetching link).
    #[error("the insurer link's thread has stopped")]
    LinkStopped,
    /// An answer of the wrong kind came back (one job, one answer: cannot happen).
    #[error("the insurer link's answers got mixed up")]
    MixedUp,
}

impl Uncertainty {
    /// A failure of the link itself (no connection, no answer in time, a connection broken
    /// mid-reply, the platform's gateway failing: HTTP 500, 502, 503, 504), as opposed to
    /// one request's answer being unreadable. Only these trip the circuit breaker.
    pub fn is_link_failure(&self) -> bool {
        match self {
            Uncertainty::Timeout(_) | Uncertainty::Transport(_) | Uncertainty::Body(_) => true,
            Uncertainty::Http(status) => matches!(status, 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// `infno`'s output could not be read.
    pub fn output(infno: &str, source: WireError) -> LinkError {
        LinkError::Uncertain(Uncertainty::Output {
            infno: infno.to_owned(),
            source,
        })
    }
}

/// Why a call to the insurer did not give an answer to use (insurer-api.md §1.4).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    /// The insurer processed the request and refused it (infcode ≠ 0): definite, nothing
    /// to undo.
    #[error("the insurer refused ({infcode}): {err_msg}")]
    Business { infcode: i64, err_msg: String },
    /// No usable answer (timeout, connection reset, HTTP error, garbage body): the outcome
    /// is unknown.
    #[error("no answer from the insurer: {0}")]
    Uncertain(Uncertainty),
    /// The platform answered that it cannot process the request now (系统繁忙, 请稍后再试 …,
    /// [`super::refusals::Refusal::Transient`]): not processed, nothing to undo, and never a
    /// final refusal — retry later.
    #[error("the insurer is busy ({infcode}): {err_msg}")]
    Busy { infcode: i64, err_msg: String },
    /// HTTP 413: the platform refused the request's size unread (not processed). The same
    /// request will always be refused: it must be made smaller (a bill split in parts).
    #[error("the insurer refused {infno} as too large (HTTP 413, {bytes} bytes)")]
    TooLarge { infno: String, bytes: usize },
    /// The circuit breaker is open after repeated failures: not even tried.
    #[error("the insurer link is down (circuit open); retrying in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u64 },
}
