//! The verdict on a card read: may this patient settle with this card now, and why not.
//!
//! [`verdict`] is a pure function of the card read, the facts known about the card and its
//! holder ([`VerdictFacts`]: fresh from the insurer, or from the cache with their age), the
//! hospital's [`VerdictPolicy`], today (a [`Date`], Beijing time) and the time. Every code that holds
//! is listed in `reasons`, strictest first; the strictest decides `code` and `may_settle`.
//! docs/verdicts.md has the table.
//!
//! A 1101 refused about the card or its holder (挂失, 补换, 注销, 未参保, 暂停参保, 查无此人 —
//! [`crate::insurer::Refusal`]) is that verdict with the platform's own text in the reason's
//! `err_msg`, with or without a card-status feed; any other refusal means the insurer could
//! not answer, and the cached facts are judged with its text in `insurer_err_msg`.

use crate::cache::{CardRecord, CardStatus};
use crate::card::{BalanceSource, CardRead};
use crate::clock::Date;
use crate::insurer::{InsuInfo, PersonInfo, Refusal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// Whether the counter may settle through the insurer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaySettle {
    /// Settle as usual.
    Yes,
    /// Treat as a self-paying patient now (cash); the patient may claim later.
    SelfPayOnly,
    /// Do not use this card / identity for insurance.
    No,
}

/// What a verdict says. Declared strictest first: the order decides which code leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictCode {
    Lost,
    Replaced,
    Cancelled,
    IdentityMismatch,
    Expired,
    UnknownPerson,
    NotInsured,
    Suspended,
    StaleCache,
    BalanceMismatch,
    OtherRegion,
    Ok,
}

impl MaySettle {
    /// The name on every wire: `yes`, `self_pay_only`, `no`.
    pub fn as_str(self) -> &'static str {
        match self {
            MaySettle::Yes => "yes",
            MaySettle::SelfPayOnly => "self_pay_only",
            MaySettle::No => "no",
        }
    }
}

impl VerdictCode {
    /// The name on every wire (`lost`, `stale_cache`, `ok`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictCode::Lost => "lost",
            VerdictCode::Replaced => "replaced",
            VerdictCode::Cancelled => "cancelled",
            VerdictCode::IdentityMismatch => "identity_mismatch",
            VerdictCode::Expired => "expired",
            VerdictCode::UnknownPerson => "unknown_person",
            VerdictCode::NotInsured => "not_insured",
            VerdictCode::Suspended => "suspended",
            VerdictCode::StaleCache => "stale_cache",
            VerdictCode::BalanceMismatch => "balance_mismatch",
            VerdictCode::OtherRegion => "other_region",
            VerdictCode::Ok => "ok",
        }
    }

    /// What the code allows.
    pub fn may_settle(self) -> MaySettle {
        match self {
            VerdictCode::Lost
            | VerdictCode::Replaced
            | VerdictCode::Cancelled
            | VerdictCode::IdentityMismatch
            | VerdictCode::Expired
            | VerdictCode::UnknownPerson
            | VerdictCode::NotInsured
            | VerdictCode::Suspended => MaySettle::No,
            VerdictCode::StaleCache | VerdictCode::BalanceMismatch => MaySettle::SelfPayOnly,
            VerdictCode::OtherRegion | VerdictCode::Ok => MaySettle::Yes,
        }
    }
}

/// Where the facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactSource {
    /// A fresh answer from the insurer.
    Insurer,
    /// The local cache (the insurer unreachable or not asked).
    Cache,
}

impl FactSource {
    /// The name on every wire: `insurer`, `cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            FactSource::Insurer => "insurer",
            FactSource::Cache => "cache",
        }
    }
}

/// One code that holds, with its details and messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: VerdictCode,
    pub message_zh: String,
    pub message_en: String,
    /// `replaced`: the newer card's 卡号.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_card_no: Option<String>,
    /// `identity_mismatch`: the fields that differ (`certno`, `psn_name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// `balance_mismatch`: the on-card and the insurer's 个人账户余额, yuan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_balc: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurer_balc: Option<Decimal>,
    /// `expired`: the card's 卡有效期.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<String>,
    /// `not_insured` / `suspended`: the 人员参保状态 found (absent: no insurance row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psn_insu_stas: Option<String>,
    /// `other_region`: the 参保地医保区划.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insuplc_admdvs: Option<String>,
    /// `stale_cache`: the cached facts' age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_seconds: Option<u64>,
    /// The platform's own text, when its 1101 refusal is what this reason rests on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_msg: Option<String>,
}

impl Reason {
    fn new(code: VerdictCode, message_zh: String, message_en: String) -> Reason {
        Reason {
            code,
            message_zh,
            message_en,
            new_card_no: None,
            fields: Vec::new(),
            card_balc: None,
            insurer_balc: None,
            expiry_date: None,
            psn_insu_stas: None,
            insuplc_admdvs: None,
            stale_seconds: None,
            err_msg: None,
        }
    }
}

/// The verdict, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The strictest code that holds (`ok` when none does).
    pub code: VerdictCode,
    pub may_settle: MaySettle,
    /// Every code that holds, strictest first (empty when `ok`).
    pub reasons: Vec<Reason>,
    pub message_zh: String,
    pub message_en: String,
    pub source: FactSource,
    /// How old the facts are: 0 for a fresh insurer answer, `null` when the cache had
    /// nothing for this card.
    pub stale_seconds: Option<u64>,
    /// From the cache because the insurer refused to answer (busy, a refusal no rule
    /// knows): the platform's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurer_err_msg: Option<String>,
}

/// The insurance the verdict was judged on (the chosen `insuinfo` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Insured {
    pub psn_no: String,
    pub insutype: String,
    pub psn_insu_stas: String,
    /// 个人账户余额, yuan, as a decimal string.
    pub balc: Decimal,
    pub insuplc_admdvs: String,
}

/// A verdict and the insurance it rests on: what a card read carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub verdict: Verdict,
    pub insured: Option<Insured>,
}

/// What is known about the card and its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictFacts {
    /// The card's row in the cache (its status from the issuer's feed), when known.
    pub card: Option<CardRecord>,
    /// The holder's 1101 answer, when known.
    pub person: Option<PersonInfo>,
    /// When `person` was fetched (cached facts); `None` for a fresh insurer answer.
    pub fetched_at: Option<SystemTime>,
    pub source: FactSource,
    /// What the insurer refused a 1101 with, when it did.
    pub refusal: Option<InsurerRefusal>,
}

/// A refused 1101: what the refusal is about, and the platform's own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsurerRefusal {
    pub refusal: Refusal,
    pub err_msg: String,
}

impl InsurerRefusal {
    /// The verdict a refusal about the card or its holder is (`None`: any other refusal).
    pub fn code(&self) -> Option<VerdictCode> {
        Some(match self.refusal {
            Refusal::Lost => VerdictCode::Lost,
            Refusal::Replaced => VerdictCode::Replaced,
            Refusal::Cancelled => VerdictCode::Cancelled,
            Refusal::Suspended => VerdictCode::Suspended,
            Refusal::NotInsured => VerdictCode::NotInsured,
            Refusal::UnknownPerson => VerdictCode::UnknownPerson,
            Refusal::DuplicateMsgid
            | Refusal::SignInLapsed
            | Refusal::Format
            | Refusal::ClockSkew
            | Refusal::Transient
            | Refusal::EcCodeExpired
            | Refusal::EcCodeUsed
            | Refusal::EcCodeUnknown
            | Refusal::EcTokenInvalid
            | Refusal::Business => return None,
        })
    }
}

/// The hospital's settings for verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictPolicy {
    /// The hospital's 医保区划 (6 digits); another 参保地 means cross-region rules.
    pub hospital_admdvs: String,
    /// Cached facts older than this give `stale_cache`.
    pub stale_limit: Duration,
    /// The insutypes the counter settles under, preferred first (e.g. 310, 390).
    pub insutype_preference: Vec<String>,
}

impl Default for VerdictPolicy {
    fn default() -> VerdictPolicy {
        VerdictPolicy {
            hospital_admdvs: String::new(),
            stale_limit: Duration::from_secs(24 * 3600),
            insutype_preference: vec!["310".into(), "390".into()],
        }
    }
}

/// The verdict and the insurance row it used.
pub fn assess(
    card: &CardRead,
    facts: &VerdictFacts,
    policy: &VerdictPolicy,
    today: Date,
    now: SystemTime,
) -> Assessment {
    Assessment {
        verdict: verdict(card, facts, policy, today, now),
        insured: insured(facts, policy),
    }
}

/// Judges a card read against the facts. Pure: no I/O.
pub fn verdict(
    card: &CardRead,
    facts: &VerdictFacts,
    policy: &VerdictPolicy,
    today: Date,
    now: SystemTime,
) -> Verdict {
    let stale_seconds = stale_seconds(facts, now);
    let row = facts
        .person
        .as_ref()
        .and_then(|p| choose_insuinfo(p, policy));
    let mut reasons = Vec::new();
    reasons.extend(card_status_reason(facts.card.as_ref()));
    reasons.extend(expiry_reason(card, today));
    let refused = facts.refusal.as_ref().and_then(refusal_reason);
    match &facts.person {
        None if refused.is_some() => {}
        None => reasons.push(unknown_person(facts.source)),
        Some(person) => {
            reasons.extend(identity_reason(card, person));
            reasons.extend(insurance_reason(row));
            reasons.extend(row.and_then(|r| balance_reason(card, r)));
            reasons.extend(row.and_then(|r| region_reason(r, policy)));
        }
    }
    reasons.extend(stale_reason(facts.source, stale_seconds, policy));
    if let Some(refused) = refused {
        // The feed may say the same (a replaced card's new number): keep both in one.
        match reasons.iter_mut().find(|r| r.code == refused.code) {
            Some(same) => same.err_msg = refused.err_msg,
            None => reasons.push(refused),
        }
    }
    reasons.sort_by_key(|r| r.code);
    let mut verdict = finish(reasons, facts.source, stale_seconds);
    if let Some(unanswered) = facts.refusal.as_ref().filter(|r| r.code().is_none()) {
        not_answered(&mut verdict, &unanswered.err_msg);
    }
    verdict
}

/// The reason a 1101 refusal about the card or its holder gives, with the platform's text.
fn refusal_reason(refusal: &InsurerRefusal) -> Option<Reason> {
    let mut reason = match refusal.code()? {
        VerdictCode::Lost => lost(),
        VerdictCode::Replaced => replaced(None),
        VerdictCode::Cancelled => cancelled(),
        VerdictCode::Suspended => suspended(),
        VerdictCode::UnknownPerson => unknown_person(FactSource::Insurer),
        _ => Reason::new(
            VerdictCode::NotInsured,
            "医保中心答复未参保或参保已终止，不能享受医保待遇".into(),
            "The insurer says the holder is not (or no longer) insured: no benefits".into(),
        ),
    };
    reason.err_msg = Some(refusal.err_msg.clone());
    Some(reason)
}

/// The insurer refused to answer (busy, a text no rule knows): say so, with its text.
fn not_answered(verdict: &mut Verdict, err_msg: &str) {
    verdict
        .message_zh
        .push_str(&format!("（医保中心未能答复：{err_msg}）"));
    verdict
        .message_en
        .push_str(&format!(" (the insurer did not answer: {err_msg})"));
    verdict.insurer_err_msg = Some(err_msg.to_owned());
}

/// The chosen insurance row as `insured` (`None` when the holder is unknown or has none).
pub fn insured(facts: &VerdictFacts, policy: &VerdictPolicy) -> Option<Insured> {
    let person = facts.person.as_ref()?;
    let row = choose_insuinfo(person, policy)?;
    Some(Insured {
        psn_no: person.baseinfo.psn_no.clone(),
        insutype: row.insutype.clone(),
        psn_insu_stas: row.psn_insu_stas.clone(),
        balc: row.balc,
        insuplc_admdvs: row.insuplc_admdvs.clone(),
    })
}

/// The row to settle under: the first preferred insutype in 正常参保; failing that, the first
/// preferred insutype present (so its state can be reported).
pub fn choose_insuinfo<'a>(person: &'a PersonInfo, policy: &VerdictPolicy) -> Option<&'a InsuInfo> {
    let preferred = || {
        policy
            .insutype_preference
            .iter()
            .filter_map(|insutype| person.insuinfo.iter().find(|row| &row.insutype == insutype))
    };
    preferred()
        .find(|row| row.psn_insu_stas == ACTIVE)
        .or_else(|| preferred().next())
}

/// 人员参保状态 正常参保: the only state with benefits.
const ACTIVE: &str = "1";
/// 暂停参保.
const SUSPENDED: &str = "2";

fn stale_seconds(facts: &VerdictFacts, now: SystemTime) -> Option<u64> {
    match facts.source {
        FactSource::Insurer => Some(0),
        FactSource::Cache => facts
            .fetched_at
            .map(|at| now.duration_since(at).map(|age| age.as_secs()).unwrap_or(0)),
    }
}

fn finish(reasons: Vec<Reason>, source: FactSource, stale_seconds: Option<u64>) -> Verdict {
    let (code, mut message_zh, mut message_en) = match reasons.first() {
        Some(first) => (
            first.code,
            first.message_zh.clone(),
            first.message_en.clone(),
        ),
        None => (
            VerdictCode::Ok,
            "参保状态正常，可以医保结算".to_owned(),
            "Insured: may settle".to_owned(),
        ),
    };
    if source == FactSource::Cache {
        message_zh.push_str("（医保中心暂不可用，依据本地缓存）");
        message_en.push_str(" (insurer unreachable: from the local cache)");
    }
    Verdict {
        code,
        may_settle: code.may_settle(),
        reasons,
        message_zh,
        message_en,
        source,
        stale_seconds,
        insurer_err_msg: None,
    }
}

fn card_status_reason(card: Option<&CardRecord>) -> Option<Reason> {
    let card = card?;
    match card.status {
        CardStatus::Active => None,
        CardStatus::Lost => Some(lost()),
        CardStatus::Replaced => Some(replaced(card.replaced_by.clone())),
        CardStatus::Cancelled => Some(cancelled()),
    }
}

fn lost() -> Reason {
    Reason::new(
        VerdictCode::Lost,
        "此卡已挂失，请持新卡或身份证办理".into(),
        "This card was reported lost: ask for the new card or the ID card".into(),
    )
}

fn cancelled() -> Reason {
    Reason::new(
        VerdictCode::Cancelled,
        "此卡已注销，不能用于医保结算".into(),
        "This card was cancelled: it cannot be used for insurance".into(),
    )
}

fn suspended() -> Reason {
    Reason::new(
        VerdictCode::Suspended,
        "参保状态为暂停参保，不能享受医保待遇".into(),
        "Insurance suspended: no benefits".into(),
    )
}

fn replaced(new_card_no: Option<String>) -> Reason {
    let (zh, en) = match &new_card_no {
        Some(no) => (
            format!("此卡已补换，新卡卡号 {no}，请持新卡办理"),
            format!("This card was replaced by card {no}: ask for the new card"),
        ),
        None => (
            "此卡已补换，请持新卡办理".to_owned(),
            "This card was replaced: ask for the new card".to_owned(),
        ),
    };
    let mut reason = Reason::new(VerdictCode::Replaced, zh, en);
    reason.new_card_no = new_card_no;
    reason
}

fn expiry_reason(card: &CardRead, today: Date) -> Option<Reason> {
    let text = card.expiry_date.as_deref()?;
    let expiry = Date::from_card(text)?;
    if expiry >= today {
        return None;
    }
    let mut reason = Reason::new(
        VerdictCode::Expired,
        format!("此卡已过有效期（{expiry}），请到社保经办机构换卡"),
        format!("This card expired on {expiry}: the holder must renew it"),
    );
    reason.expiry_date = Some(expiry.to_string());
    Some(reason)
}

fn unknown_person(source: FactSource) -> Reason {
    let (zh, en) = match source {
        FactSource::Insurer => (
            "医保中心查无此人参保信息",
            "The insurer does not know this card holder",
        ),
        FactSource::Cache => (
            "本地缓存中无此持卡人信息",
            "The card holder is not in the local cache",
        ),
    };
    Reason::new(VerdictCode::UnknownPerson, zh.into(), en.into())
}

fn identity_reason(card: &CardRead, person: &PersonInfo) -> Option<Reason> {
    let mut fields = Vec::new();
    let base = &person.baseinfo;
    if differs(card.holder.certno.as_deref(), &base.certno, |s| {
        s.trim().to_ascii_uppercase()
    }) {
        fields.push("certno".to_owned());
    }
    if differs(card.holder.psn_name.as_deref(), &base.psn_name, |s| {
        s.trim().to_owned()
    }) {
        fields.push("psn_name".to_owned());
    }
    if fields.is_empty() {
        return None;
    }
    let named = fields
        .iter()
        .map(|f| {
            if f == "certno" {
                "社会保障号码"
            } else {
                "姓名"
            }
        })
        .collect::<Vec<_>>()
        .join("、");
    let mut reason = Reason::new(
        VerdictCode::IdentityMismatch,
        format!("卡内{named}与医保登记不一致，请核验身份"),
        format!(
            "The card's {} differ(s) from the insurer's record: check the holder's identity",
            fields.join(", ")
        ),
    );
    reason.fields = fields;
    Some(reason)
}

/// True when both sides are known and differ after normalising.
fn differs(card: Option<&str>, insurer: &str, normal: impl Fn(&str) -> String) -> bool {
    match card {
        Some(card) if !card.trim().is_empty() && !insurer.trim().is_empty() => {
            normal(card) != normal(insurer)
        }
        _ => false,
    }
}

fn insurance_reason(row: Option<&InsuInfo>) -> Option<Reason> {
    let Some(row) = row else {
        return Some(Reason::new(
            VerdictCode::NotInsured,
            "未查到可结算的参保险种".into(),
            "No insurance this counter settles under".into(),
        ));
    };
    let stas = row.psn_insu_stas.as_str();
    let mut reason = match stas {
        ACTIVE => return None,
        SUSPENDED => suspended(),
        _ => Reason::new(
            VerdictCode::NotInsured,
            format!(
                "参保状态非正常参保（{}），不能享受医保待遇",
                stas_name(stas)
            ),
            format!(
                "Not in active insurance ({}): no benefits",
                stas_name_en(stas)
            ),
        ),
    };
    reason.psn_insu_stas = Some(row.psn_insu_stas.clone());
    Some(reason)
}

fn stas_name(stas: &str) -> &'static str {
    match stas {
        "0" => "未参保",
        "3" => "无效参保",
        "4" => "终止参保",
        _ => "未知状态",
    }
}

fn stas_name_en(stas: &str) -> &'static str {
    match stas {
        "0" => "not insured",
        "3" => "invalid",
        "4" => "terminated",
        _ => "unknown state",
    }
}

fn balance_reason(card: &CardRead, row: &InsuInfo) -> Option<Reason> {
    let balance = card.balance.as_ref()?;
    if balance.source != BalanceSource::Card || card.balance_source == Some(BalanceSource::Insurer)
    {
        return None;
    }
    let card_balc = Decimal::from_str(balance.balc.trim()).ok()?;
    if card_balc == row.balc {
        return None;
    }
    let mut reason = Reason::new(
        VerdictCode::BalanceMismatch,
        format!(
            "卡内余额 {card_balc} 元与医保中心余额 {} 元不一致，个人账户暂不能使用",
            row.balc
        ),
        format!(
            "On-card balance {card_balc} differs from the insurer's {}: the personal account cannot be used",
            row.balc
        ),
    );
    reason.card_balc = Some(card_balc);
    reason.insurer_balc = Some(row.balc);
    Some(reason)
}

fn region_reason(row: &InsuInfo, policy: &VerdictPolicy) -> Option<Reason> {
    if policy.hospital_admdvs.is_empty() || row.insuplc_admdvs == policy.hospital_admdvs {
        return None;
    }
    let mut reason = Reason::new(
        VerdictCode::OtherRegion,
        format!(
            "异地参保（参保地 {}），按异地就医规则结算",
            row.insuplc_admdvs
        ),
        format!(
            "Insured in another region ({}): cross-region rules apply",
            row.insuplc_admdvs
        ),
    );
    reason.insuplc_admdvs = Some(row.insuplc_admdvs.clone());
    Some(reason)
}

fn stale_reason(
    source: FactSource,
    stale_seconds: Option<u64>,
    policy: &VerdictPolicy,
) -> Option<Reason> {
    let age = stale_seconds?;
    if source != FactSource::Cache || age <= policy.stale_limit.as_secs() {
        return None;
    }
    let mut reason = Reason::new(
        VerdictCode::StaleCache,
        format!(
            "参保信息为 {} 前的缓存，已超过时限，请按自费处理",
            human_age_zh(age)
        ),
        format!(
            "The insurance facts are {} old, beyond the limit: treat as self-pay",
            human_age_en(age)
        ),
    );
    reason.stale_seconds = Some(age);
    Some(reason)
}

fn human_age_zh(seconds: u64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{} 天", s / 86_400),
        s if s >= 3600 => format!("{} 小时", s / 3600),
        s => format!("{} 分钟", s / 60),
    }
}

fn human_age_en(seconds: u64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{} days", s / 86_400),
        s if s >= 3600 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}
