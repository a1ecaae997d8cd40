//! Patients who present something other than a card (docs/protocol.md, "Credentials"): an
//! ID number, typed or scanned (the 医保电子凭证 QR code joins it next). `credential.present`
//! asks the insurer now (1101 by the credential's `mdtrt_cert_type`) and keeps the answer as
//! a *credential session*, as a card read is kept as a card session: `visit.register
//! {credential_session}` registers that patient, and the settlement goes on as for a card.
//! Sessions live in the daemon's memory for [`KEPT`]; presenting again makes a new one.

use super::methods::Answer;
use super::rpc::RpcError;
use super::settlement::patient_by_certno;
use super::shared::Shared;
use crate::fields;
use crate::mask;
use crate::settle::journal::Patient;
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
    at: Instant,
}

impl CredentialSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Presented>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `patient` as a new session; its number.
    fn keep(&self, patient: Patient) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut sessions = self.lock();
        sessions.retain(|_, presented| presented.at.elapsed() < KEPT);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, p)| p.at).map(|(id, _)| *id)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id,
            Presented {
                patient,
                at: Instant::now(),
            },
        );
        id
    }

    /// The patient of session `id`, while it is kept.
    pub fn patient(&self, id: u64) -> Result<Patient, RpcError> {
        self.lock()
            .get(&id)
            .filter(|presented| presented.at.elapsed() < KEPT)
            .map(|presented| presented.patient.clone())
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "credential session {id} is unknown or older than {} minutes: present the \
                     credential again (credential.present)",
                    KEPT.as_secs() / 60
                ))
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresentParams {
    certno: String,
    /// 人员证件类型 of `certno` (default 01 居民身份证).
    #[serde(default)]
    psn_cert_type: Option<String>,
}

/// `credential.present {certno, psn_cert_type?}`: the ID number checked by its document's
/// rule (−32602 otherwise), a fresh 1101, the answer kept as a credential session.
pub async fn present(shared: &Shared, params: &Value) -> Result<Answer, RpcError> {
    let p = PresentParams::deserialize(params).map_err(RpcError::invalid_params)?;
    let psn_cert_type = p
        .psn_cert_type
        .as_deref()
        .unwrap_or(fields::RESIDENT_ID_CARD);
    let patient = patient_by_certno(shared, psn_cert_type, &p.certno).await?;
    let answer = json!({
        "kind": "certno",
        "mdtrt_cert_type": patient.mdtrt_cert_type,
        "holder": {"psn_name": patient.psn_name, "certno": p.certno, "psn_cert_type": psn_cert_type},
        "insured": {"psn_no": patient.psn_no, "insutype": patient.insutype,
            "psn_type": patient.psn_type, "insuplc_admdvs": patient.insuplc_admdvs},
        "verdict": {"code": patient.verdict_code_text(), "may_settle": patient.may_settle},
    });
    let id = shared.credentials.keep(patient);
    tracing::info!(
        credential_session = id,
        certno = %mask::certno(&p.certno),
        "credential presented: ID number"
    );
    let mut answer = answer;
    answer["credential_session"] = json!(id);
    Ok(Answer::Value(answer))
}
