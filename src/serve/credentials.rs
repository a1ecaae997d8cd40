//! Patients who present something other than a card (docs/protocol.md, "Credentials"): an
//! ID number, typed or scanned, or a 医保电子凭证 QR code from the patient's phone.
//! `credential.present` asks the insurer now (1101 by the credential's `mdtrt_cert_type`;
//! a QR code is first decoded, once, into its token) and keeps the answer as a *credential
//! session*, as a card read is kept as a card session: `visit.register
//! {credential_session}` registers that patient, and the settlement goes on as for a card.
//! Sessions live in the daemon's memory for [`KEPT`]; presenting again makes a new one.
//!
//! A self-service terminal (the kiosk) presents QR codes only, sees the holder's ID number
//! masked, and registers only the sessions a self-service terminal presented.

use super::methods::Answer;
use super::rpc::{RequestError, RpcError};
use super::settlement::{patient_by_certno, patient_by_ec_code};
use super::shared::Shared;
use crate::fields;
use crate::mask;
use crate::settle::journal::Patient;
use crate::settle::service::Terminal;
use crate::verdict::FactSource;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a presented credential can be registered.
pub const KEPT: Duration = Duration::from_secs(30 * 60);
/// The most credential sessions held at once (the oldest go first).
const MAX_SESSIONS: usize = 1000;
/// The longest QR code taken (a 医保电子凭证 code is some 50–100 characters).
const MAX_QR_CODE_CHARS: usize = 1024;

/// The credentials presented, by their session number.
#[derive(Debug, Default)]
pub struct CredentialSessions {
    next: AtomicU64,
    sessions: Mutex<HashMap<u64, Presented>>,
}

/// One credential the insurer answered for.
#[derive(Debug, Clone)]
struct Presented {
    patient: Patient,
    /// The holder's ID number (a QR code's from its decode).
    certno: String,
    /// Where it was presented: a self-service terminal registers only its own.
    terminal: Terminal,
    at: Instant,
}

impl CredentialSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Presented>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `patient`, presented at `terminal`, as a new session; its number.
    fn keep(&self, patient: Patient, certno: String, terminal: Terminal) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut sessions = self.lock();
        sessions.retain(|_, presented| presented.at.elapsed() < KEPT);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, p)| p.at).map(|(id, _)| *id)
        {
            sessions.remove(&oldest);
        }
        let at = Instant::now();
        sessions.insert(
            id,
            Presented {
                patient,
                certno,
                terminal,
                at,
            },
        );
        id
    }

    /// The patient of session `id`, while it is kept, for a registration from `terminal`
    /// (a self-service terminal's only when a self-service terminal presented it).
    pub fn patient(&self, id: u64, terminal: Terminal) -> Result<Patient, RpcError> {
        self.presented(id, terminal).map(|p| p.patient)
    }

    /// The ID number and psn_no of session `id`'s holder, as [`Self::patient`] allows.
    pub fn holder(&self, id: u64, terminal: Terminal) -> Result<(String, String), RpcError> {
        self.presented(id, terminal)
            .map(|p| (p.certno, p.patient.psn_no))
    }

    fn presented(&self, id: u64, terminal: Terminal) -> Result<Presented, RpcError> {
        let presented = self
            .lock()
            .get(&id)
            .filter(|presented| presented.at.elapsed() < KEPT)
            .cloned()
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "credential session {id} is unknown or older than {} minutes: present the \
                     credential again (credential.present)",
                    KEPT.as_secs() / 60
                ))
            })?;
        if terminal == Terminal::SelfService && presented.terminal != Terminal::SelfService {
            return Err(RequestError::WebNotAllowed(format!(
                "credential session {id} was presented at a counter: the kiosk registers only \
                 the credentials shown to it"
            ))
            .into());
        }
        Ok(presented)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresentParams {
    /// An ID number, typed or scanned.
    #[serde(default)]
    certno: Option<String>,
    /// 人员证件类型 of `certno` (default 01 居民身份证).
    #[serde(default)]
    psn_cert_type: Option<String>,
    /// Or a 医保电子凭证 QR code as scanned.
    #[serde(default)]
    qr_code: Option<String>,
}

/// `credential.present {certno, psn_cert_type?} | {qr_code}` from `terminal`: the ID number
/// checked by its document's rule, or the QR code decoded once (−32602 for a malformed one),
/// a fresh 1101, the answer kept as a credential session. A refused QR code is 1022 with
/// what the patient should do; nothing is kept.
pub async fn present(
    shared: &Shared,
    params: &Value,
    terminal: Terminal,
) -> Result<Answer, RpcError> {
    let p = PresentParams::deserialize(params).map_err(RpcError::invalid_params)?;
    let mut answer = match (&p.certno, &p.qr_code) {
        (Some(certno), None) if terminal == Terminal::Counter => {
            present_certno(shared, certno, p.psn_cert_type.as_deref()).await?
        }
        (Some(_), None) => {
            return Err(RequestError::WebNotAllowed(
                "the kiosk takes the 医保电子凭证 QR code or the card, not a typed ID number"
                    .to_owned(),
            )
            .into());
        }
        (None, Some(code)) if p.psn_cert_type.is_none() => {
            present_qr_code(shared, code, terminal).await?
        }
        _ => {
            return Err(RpcError::invalid_params(
                "credential.present takes certno (with psn_cert_type, optionally) or qr_code",
            ));
        }
    };
    let patient: Patient = answer.patient;
    let code = patient.verdict_code.map_or("none", |code| code.as_str());
    shared
        .services
        .metrics
        .verdict(answer.kind, code, FactSource::Insurer.as_str());
    answer.value["mdtrt_cert_type"] = json!(patient.mdtrt_cert_type);
    answer.value["insured"] = json!({"psn_no": patient.psn_no, "insutype": patient.insutype,
        "psn_type": patient.psn_type, "insuplc_admdvs": patient.insuplc_admdvs});
    answer.value["verdict"] =
        json!({"code": patient.verdict_code_text(), "may_settle": patient.may_settle});
    let id = shared.credentials.keep(patient, answer.certno, terminal);
    tracing::info!(
        credential_session = id,
        kind = answer.kind,
        certno = %answer.masked_certno,
        "credential presented"
    );
    answer.value["credential_session"] = json!(id);
    Ok(Answer::Value(answer.value))
}

/// A credential the insurer answered for, before it is kept.
struct Answered {
    patient: Patient,
    certno: String,
    kind: &'static str,
    masked_certno: String,
    /// `kind` and `holder` so far.
    value: Value,
}

async fn present_certno(
    shared: &Shared,
    certno: &str,
    psn_cert_type: Option<&str>,
) -> Result<Answered, RpcError> {
    let psn_cert_type = psn_cert_type.unwrap_or(fields::RESIDENT_ID_CARD);
    let patient = patient_by_certno(shared, psn_cert_type, certno).await?;
    let value = json!({
        "kind": "certno",
        "holder": {"psn_name": patient.psn_name, "certno": certno, "psn_cert_type": psn_cert_type},
    });
    Ok(Answered {
        patient,
        certno: certno.to_owned(),
        kind: "certno",
        masked_certno: mask::certno(certno),
        value,
    })
}

async fn present_qr_code(
    shared: &Shared,
    code: &str,
    terminal: Terminal,
) -> Result<Answered, RpcError> {
    let code = code.trim();
    if code.is_empty()
        || code.chars().count() > MAX_QR_CODE_CHARS
        || code.chars().any(|c| c.is_control())
    {
        return Err(RpcError::invalid_params(format!(
            "qr_code must be the scanned code: 1 to {MAX_QR_CODE_CHARS} printable characters"
        )));
    }
    let (patient, identity) = patient_by_ec_code(shared, code).await?;
    let masked_certno = mask::certno(&identity.certno);
    let certno = match terminal {
        Terminal::Counter => identity.certno.clone(),
        Terminal::SelfService => masked_certno.clone(),
    };
    let value = json!({
        "kind": "qr",
        "holder": {"psn_name": identity.psn_name, "certno": certno,
            "psn_cert_type": identity.psn_cert_type},
    });
    Ok(Answered {
        patient,
        certno: identity.certno,
        kind: "qr",
        masked_certno,
        value,
    })
}
