//! Who is being registered: the [`Patient`] of a card read (the verdict the daemon attached,
//! the insurance row it rests on, 人员类别 from the cache, this year's totals from DF04), of
//! an ID number or of a 医保电子凭证 QR code (a fresh 1101, the insurance row chosen by
//! `cache.insutype_preference`).
//! The caller hands the card's facts in as plain data; nothing here knows of sockets.

use super::{EcProblem, InvalidRequest, Patient, SettleError};
use crate::cache::Cache;
use crate::card::CardRead;
use crate::clock::DateTime;
use crate::fields;
use crate::insurer::{EcIdentity, InsurerClient, LinkError, PersonInfo, Refusal};
use crate::mask;
use crate::verdict::{Insured, MaySettle, Verdict, VerdictCode, VerdictPolicy, choose_insuinfo};
use rust_decimal::Decimal;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// A card as the daemon holds it after reading and judging it.
#[derive(Debug, Clone, Copy)]
pub struct CardFacts<'a> {
    pub card: &'a CardRead,
    /// The verdict; none when there was nothing to judge by (then the card may settle).
    pub verdict: Option<&'a Verdict>,
    /// The insurance row the verdict rests on; none when the insurer knows no such holder.
    pub insured: Option<&'a Insured>,
}

impl Patient {
    /// The patient of a card read (mdtrt_cert_type 03). A card whose verdict says `no`, or
    /// whose holder the insurer does not know, is refused. `cache` supplies 人员类别.
    pub fn of_card(facts: CardFacts<'_>, cache: Option<&Cache>) -> Result<Patient, SettleError> {
        if let Some(verdict) = facts.verdict.filter(|v| v.may_settle == MaySettle::No) {
            return Err(SettleError::CardMayNotSettle {
                message_en: verdict.message_en.clone(),
                message_zh: verdict.message_zh.clone(),
            });
        }
        let insured = facts.insured.ok_or(SettleError::HolderUnknown)?;
        Ok(Patient {
            psn_no: insured.psn_no.clone(),
            psn_name: facts.card.holder.psn_name.clone().unwrap_or_default(),
            insutype: insured.insutype.clone(),
            psn_type: psn_type_of(cache, insured),
            insuplc_admdvs: insured.insuplc_admdvs.clone(),
            mdtrt_cert_type: "03".into(),
            mdtrt_cert_no: facts.card.card_no.clone().unwrap_or_default(),
            may_settle: facts.verdict.map_or(MaySettle::Yes, |v| v.may_settle),
            verdict_code: facts.verdict.map(|v| v.code),
            ytd_hint: card_ytd(facts.card),
        })
    }

    /// The patient by ID number (no card, mdtrt_cert_type 02) of document type
    /// `psn_cert_type` (checked by its rule first, `crate::fields::certno`): a 1101 on
    /// `link` now, the answer stored in `cache`, the insurance row by `insutype_preference`.
    pub fn by_certno(
        psn_cert_type: &str,
        certno: &str,
        insutype_preference: &[String],
        cache: Option<&Cache>,
        link: &Mutex<InsurerClient>,
    ) -> Result<Patient, SettleError> {
        fields::certno(psn_cert_type, certno).map_err(InvalidRequest::from)?;
        let person = lock(link).person_by_document(psn_cert_type, certno)?;
        tracing::info!(certno = %mask::certno(certno), "patient by ID number");
        let credential = Credential {
            mdtrt_cert_type: "02",
            mdtrt_cert_no: certno,
        };
        Patient::of_person(&person, credential, insutype_preference, cache)
    }

    /// The patient who shows a 医保电子凭证 QR code (mdtrt_cert_type 01): the code decoded
    /// once (1162; a code is single-use, so never sent twice), then 1101 by its ecToken; the
    /// token is the visit's mdtrt_cert_no. An expired, used or unknown code, or a token the
    /// insurer no longer honours, is [`SettleError::EcVoucherRefused`] with what to do.
    pub fn by_ec_code(
        ec_qrcode: &str,
        insutype_preference: &[String],
        cache: Option<&Cache>,
        link: &Mutex<InsurerClient>,
    ) -> Result<(Patient, EcIdentity), SettleError> {
        let (identity, person) = {
            let mut link = lock(link);
            let identity = link
                .decode_ec(ec_qrcode)
                .map_err(|e| ec_refusal(&link, e))?;
            let person = link
                .person_by_ec_token(&identity.ec_token)
                .map_err(|e| ec_refusal(&link, e))?;
            (identity, person)
        };
        tracing::info!(certno = %mask::certno(&identity.certno), "patient by e-voucher");
        let credential = Credential {
            mdtrt_cert_type: "01",
            mdtrt_cert_no: &identity.ec_token,
        };
        let patient = Patient::of_person(&person, credential, insutype_preference, cache)?;
        Ok((patient, identity))
    }

    /// The patient of a fresh 1101 answer `person`, presented by `credential`: the answer
    /// stored in `cache`, the insurance row by `insutype_preference`; the verdict is `ok` or
    /// `suspended` (a card's own reasons do not apply).
    fn of_person(
        person: &PersonInfo,
        credential: Credential<'_>,
        insutype_preference: &[String],
        cache: Option<&Cache>,
    ) -> Result<Patient, SettleError> {
        if let Some(cache) = cache
            && let Err(e) = cache.store_person(person, SystemTime::now())
        {
            tracing::warn!(error = %e, "could not cache the 1101 answer");
        }
        let policy = VerdictPolicy {
            insutype_preference: insutype_preference.to_vec(),
            ..VerdictPolicy::default()
        };
        let row = choose_insuinfo(person, &policy)
            .ok_or_else(|| SettleError::NotAllowed("not_insured".into()))?;
        let code = if row.psn_insu_stas == "1" {
            VerdictCode::Ok
        } else {
            VerdictCode::Suspended
        };
        Ok(Patient {
            psn_no: person.baseinfo.psn_no.clone(),
            psn_name: person.baseinfo.psn_name.clone(),
            insutype: row.insutype.clone(),
            psn_type: row.psn_type.clone(),
            insuplc_admdvs: row.insuplc_admdvs.clone(),
            mdtrt_cert_type: credential.mdtrt_cert_type.to_owned(),
            mdtrt_cert_no: credential.mdtrt_cert_no.to_owned(),
            may_settle: code.may_settle(),
            verdict_code: Some(code),
            ytd_hint: None,
        })
    }
}

/// What a patient without a card presented: 就诊凭证类型 and its number.
#[derive(Debug, Clone, Copy)]
struct Credential<'a> {
    mdtrt_cert_type: &'a str,
    mdtrt_cert_no: &'a str,
}

fn lock(link: &Mutex<InsurerClient>) -> MutexGuard<'_, InsurerClient> {
    link.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An e-voucher call's failure: a refusal the link's rules class as the code's or the
/// token's is [`SettleError::EcVoucherRefused`]; anything else as any insurer failure.
fn ec_refusal(link: &InsurerClient, e: LinkError) -> SettleError {
    let problem = match &e {
        LinkError::Business { err_msg, .. } => match link.refusal(err_msg) {
            Refusal::EcCodeExpired => Some(EcProblem::CodeExpired),
            Refusal::EcCodeUsed => Some(EcProblem::CodeUsed),
            Refusal::EcCodeUnknown => Some(EcProblem::CodeUnknown),
            Refusal::EcTokenInvalid => Some(EcProblem::TokenInvalid),
            _ => None,
        },
        _ => None,
    };
    match (problem, e) {
        (Some(problem), LinkError::Business { err_msg, .. }) => {
            SettleError::EcVoucherRefused { problem, err_msg }
        }
        (_, e) => SettleError::from(e),
    }
}

impl Patient {
    /// The verdict's code as the journal keeps it (empty when the card was not judged).
    pub fn verdict_code_text(&self) -> String {
        self.verdict_code
            .map(|code| code.as_str().to_owned())
            .unwrap_or_default()
    }
}

/// 人员类别 of the insured's row, as the cache holds the person (empty when it does not).
fn psn_type_of(cache: Option<&Cache>, insured: &Insured) -> String {
    cache
        .and_then(|c| c.reader().person_by_psn_no(&insured.psn_no).ok().flatten())
        .and_then(|p| {
            p.info
                .insuinfo
                .into_iter()
                .find(|i| i.insutype == insured.insutype)
        })
        .map(|i| i.psn_type)
        .unwrap_or_default()
}

/// The year's cumulative amount on the card (DF04: 个人自付累计 + 统筹累计), when the PIN
/// let it be read and it is this year's.
fn card_ytd(card: &CardRead) -> Option<Decimal> {
    let balance = card.balance.as_ref()?;
    let this_year = DateTime::now().year().to_string();
    if balance.year.trim() != this_year {
        return None;
    }
    let amount = |text: &str| text.trim().parse::<Decimal>().ok();
    Some(amount(&balance.annual_self_pay)? + amount(&balance.annual_fund_pay)?)
}
