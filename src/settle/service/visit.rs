//! Visits: 2201 registration (+ 2203 with the medical type), a cash-only visit recorded here
//! alone, 2202 cancellation. The registration's texts are checked by the platform's field
//! rules (`crate::fields`) before anything is sent; the hospital's visit number
//! (`ipt_otp_no`) names one visit: registering it again with the same registration returns
//! that visit as journalled, with a different one is refused.

use super::*;

impl Settler {
    /// 2201 (+ 2203 with the medical type): registers a visit and journals it. The
    /// registration is journalled before the 2201 goes (a journal that cannot be written
    /// sends nothing); a visit the insurer registered but the journal cannot record is
    /// cancelled with 2202.
    pub fn register(
        &self,
        patient: &Patient,
        params: &RegisterParams,
    ) -> Result<VisitRow, SettleError> {
        self.register_once(patient, params)
            .map_err(SettleError::unsent)
    }

    fn register_once(
        &self,
        patient: &Patient,
        params: &RegisterParams,
    ) -> Result<VisitRow, SettleError> {
        if patient.may_settle == MaySettle::No {
            return Err(SettleError::NotAllowed(patient.verdict_code_text()));
        }
        params.check()?;
        let med_type = Some(params.med_type.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.options.med_type.clone());
        if !params.ipt_otp_no.is_empty()
            && let Some(existing) = self.journal.visit_by_ipt_otp_no(&params.ipt_otp_no)?
        {
            return registered_again(existing, patient, params, &med_type);
        }
        let now = DateTime::now();
        let ipt_otp_no = if params.ipt_otp_no.is_empty() {
            let date = now.compact();
            let date = date.get(..8).unwrap_or(&date);
            format!("MZ{date}{}", self.serial("visit", date)?)
        } else {
            params.ipt_otp_no.clone()
        };
        let begntime = now.datetime();
        if patient.may_settle == MaySettle::SelfPayOnly {
            return self.register_self_pay(patient, params, ipt_otp_no, med_type, begntime);
        }
        let input = RegisterIn {
            psn_no: patient.psn_no.clone(),
            insutype: patient.insutype.clone(),
            begntime: begntime.clone(),
            mdtrt_cert_type: patient.mdtrt_cert_type.clone(),
            mdtrt_cert_no: patient.mdtrt_cert_no.clone(),
            ipt_otp_no: ipt_otp_no.clone(),
            atddr_no: Some(params.atddr_no.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| params.dr_name.clone()),
            dr_name: params.dr_name.clone(),
            dept_code: params.dept_code.clone(),
            dept_name: params.dept_name.clone(),
            caty: Some(params.caty.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| params.dept_code.clone()),
        };
        let entry = self.begin_registration(patient, &ipt_otp_no)?;
        let registered = self.register_at_insurer(patient, params, input, &med_type, &begntime);
        let out = match registered {
            Ok(out) => out,
            Err(e) => return Err(self.ec_token_refused(self.entry_failed(&entry, e))),
        };
        crash::at(Point::AfterReply, wire::REGISTER);
        let visit = visit_row(out, ipt_otp_no, patient, params, med_type, begntime);
        if let Err(source) = self.journal.registered(&entry.msgid, &visit) {
            return Err(self.cancel_orphan(&visit, source));
        }
        tracing::info!(mdtrt_id = %visit.mdtrt_id, psn = %mask::name(&visit.patient.psn_name), dept = %visit.dept_code, terminal = ?params.terminal, "visit registered");
        Ok(visit)
    }

    /// A 2201 refused because the 医保电子凭证's token lapsed, told as the e-voucher's
    /// refusal (the patient shows a fresh code); any other error as it is.
    fn ec_token_refused(&self, e: SettleError) -> SettleError {
        match e {
            SettleError::Refused { err_msg, .. }
                if self.refusal(&err_msg) == Some(Refusal::EcTokenInvalid) =>
            {
                SettleError::EcVoucherRefused {
                    problem: EcProblem::TokenInvalid,
                    err_msg,
                }
            }
            other => other,
        }
    }

    /// The registration's journal entry (infno 2201, PENDING, its mdtrt_id not known yet),
    /// on disk before the 2201 goes.
    fn begin_registration(
        &self,
        patient: &Patient,
        ipt_otp_no: &str,
    ) -> Result<CallRow, SettleError> {
        self.begin_visit_call(wire::REGISTER, patient, "", |entry| {
            self.journal.begin_registration(entry, ipt_otp_no)
        })
    }

    /// A visit call's journal entry (`infno` PENDING, no request), written by `write` before
    /// the call goes: a journal that cannot be written sends nothing (1019).
    fn begin_visit_call(
        &self,
        infno: &str,
        patient: &Patient,
        mdtrt_id: &str,
        write: impl FnOnce(&CallRow) -> Result<(), CacheError>,
    ) -> Result<CallRow, SettleError> {
        let msgid = self.with_link(|link| Ok(link.next_msgid()))?;
        let entry = CallRow {
            msgid,
            infno: infno.to_owned(),
            request_id: String::new(),
            omsgid: None,
            state: CallState::Pending,
            psn_no: patient.psn_no.clone(),
            insuplc_admdvs: patient.insuplc_admdvs.clone(),
            mdtrt_id: mdtrt_id.to_owned(),
            err_msg: None,
        };
        crash::at(Point::BeforeJournal, infno);
        write(&entry).map_err(|e| SettleError::from(e).unsent())?;
        Ok(entry)
    }

    /// A visit call that failed (`e`): its entry FAIL when the journal can still be written.
    fn entry_failed(&self, entry: &CallRow, e: SettleError) -> SettleError {
        let why = e.to_string();
        let failed = CallOutcome {
            err_msg: Some(&why),
            ..CallOutcome::new(&entry.msgid, CallState::Fail)
        };
        if let Err(journal) = self.journal.settle_call(&failed) {
            tracing::error!(msgid = %entry.msgid, infno = %entry.infno, error = %journal, "the failed call cannot be journalled");
        }
        e
    }

    /// 2201, then 2203 with the medical type: the insurer's mdtrt_id.
    fn register_at_insurer(
        &self,
        patient: &Patient,
        params: &RegisterParams,
        input: RegisterIn,
        med_type: &str,
        begntime: &str,
    ) -> Result<String, SettleError> {
        let admdvs = &patient.insuplc_admdvs;
        let reply = self.call_from(params.terminal, wire::REGISTER, admdvs, data_input(&input))?;
        let out: RegisterOut =
            output_part(&reply.output, "data").map_err(SettleError::unreadable(wire::REGISTER))?;
        let visit_info = VisitInfoIn {
            mdtrt_id: out.mdtrt_id.clone(),
            psn_no: patient.psn_no.clone(),
            med_type: med_type.to_owned(),
            begntime: begntime.to_owned(),
            main_cond_dscr: params.main_cond_dscr.clone(),
            dise_codg: String::new(),
            dise_name: String::new(),
        };
        self.call_from(
            params.terminal,
            wire::VISIT_INFO,
            admdvs,
            json!({"mdtrtinfo": visit_info, "diseinfo": []}),
        )?;
        Ok(out.mdtrt_id)
    }

    /// A visit the insurer registered that the journal cannot record: cancelled with 2202
    /// (no journal write needed), so that no orphan stays at the insurer.
    fn cancel_orphan(&self, visit: &VisitRow, source: CacheError) -> SettleError {
        tracing::error!(mdtrt_id = %visit.mdtrt_id, error = %source, "the insurer registered the visit but the journal cannot record it: cancelling it with 2202");
        let cancelled = self.cancel_at_insurer(visit);
        if let Err(e) = &cancelled {
            tracing::error!(mdtrt_id = %visit.mdtrt_id, ipt_otp_no = %visit.ipt_otp_no, error = %e, "2202 failed: the visit stays registered at the insurer; cancel it there once the journal can be written");
        }
        SettleError::RegistrationUnrecorded {
            mdtrt_id: visit.mdtrt_id.clone(),
            cancelled: cancelled.is_ok(),
            source,
        }
    }

    /// 2202 for `visit`.
    fn cancel_at_insurer(&self, visit: &VisitRow) -> Result<(), SettleError> {
        let input = CancelRegisterIn {
            psn_no: visit.patient.psn_no.clone(),
            mdtrt_id: visit.mdtrt_id.clone(),
            ipt_otp_no: visit.ipt_otp_no.clone(),
        };
        let admdvs = &visit.patient.insuplc_admdvs;
        self.call(wire::CANCEL_REGISTER, admdvs, data_input(&input))?;
        Ok(())
    }

    /// A visit of a card whose verdict allows cash only: recorded here, not at the insurer
    /// (no insurance money moves; the patient claims later by 手工报销).
    pub(super) fn register_self_pay(
        &self,
        patient: &Patient,
        params: &RegisterParams,
        ipt_otp_no: String,
        med_type: String,
        begntime: String,
    ) -> Result<VisitRow, SettleError> {
        let mdtrt_id = format!("L{ipt_otp_no}");
        let visit = visit_row(mdtrt_id, ipt_otp_no, patient, params, med_type, begntime);
        self.journal.insert_visit(&visit)?;
        tracing::info!(mdtrt_id = %visit.mdtrt_id, verdict = %visit.patient.verdict_code_text(), "self-pay visit registered locally");
        Ok(visit)
    }

    pub(super) fn registered_visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        let visit = self
            .journal
            .visit(mdtrt_id)?
            .ok_or_else(|| SettleError::UnknownVisit(mdtrt_id.to_owned()))?;
        if visit.state != VisitState::Registered {
            return Err(SettleError::VisitCancelled(mdtrt_id.to_owned()));
        }
        Ok(visit)
    }

    /// 2202: cancels a visit with nothing settled. The cancellation is journalled before
    /// the 2202 goes (a journal that cannot be written sends nothing: 1019); a 2202 answered
    /// but not recorded is 1017, and calling again once the journal can be written records
    /// it (the insurer answering that the visit is already cancelled).
    pub fn cancel_visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        let guard = self.visit_lock(mdtrt_id);
        let _held = lock(&guard);
        let mut visit = self
            .cancellable_visit(mdtrt_id)
            .map_err(SettleError::unsent)?;
        if visit.patient.may_settle == MaySettle::SelfPayOnly {
            self.journal
                .set_visit_state(mdtrt_id, VisitState::Cancelled)
                .map_err(|e| SettleError::from(e).unsent())?;
        } else {
            self.cancel_journalled(&visit)?;
        }
        visit.state = VisitState::Cancelled;
        Ok(visit)
    }

    /// 2202 between its journal entry and the visit recorded as cancelled.
    fn cancel_journalled(&self, visit: &VisitRow) -> Result<(), SettleError> {
        let mdtrt_id = visit.mdtrt_id.as_str();
        let entry =
            self.begin_visit_call(wire::CANCEL_REGISTER, &visit.patient, mdtrt_id, |e| {
                self.journal.begin_cancellation(e)
            })?;
        match self.cancel_at_insurer(visit) {
            Ok(()) => {}
            Err(SettleError::Refused { err_msg, .. }) if already_cancelled(&err_msg) => {
                tracing::info!(
                    mdtrt_id,
                    err_msg,
                    "2202: the insurer has the visit cancelled already"
                );
            }
            Err(e) => return Err(self.entry_failed(&entry, e)),
        }
        crash::at(Point::AfterReply, wire::CANCEL_REGISTER);
        self.journal
            .cancelled(&entry.msgid, mdtrt_id)
            .map_err(|source| {
                tracing::error!(mdtrt_id, error = %source, "the insurer cancelled the visit but the journal cannot record it: visit.cancel again once it can");
                SettleError::CancellationUnrecorded {
                    mdtrt_id: mdtrt_id.to_owned(),
                    source,
                }
            })
    }

    /// The visit, registered and with no settlement that stands in the way of cancelling.
    fn cancellable_visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        let visit = self.registered_visit(mdtrt_id)?;
        let live = self.journal.requests_for_visit(mdtrt_id)?;
        if let Some(held) = live.iter().find(|r| {
            r.kind == RequestKind::Settle
                && !matches!(
                    r.state,
                    RequestState::Refused | RequestState::Retry | RequestState::Refunded
                )
        }) {
            return Err(InvalidRequest::VisitHasSettlement {
                mdtrt_id: mdtrt_id.to_owned(),
                request_id: held.request_id.clone(),
                state: held.state.as_str(),
            }
            .into());
        }
        Ok(visit)
    }
}

/// Words of a 2202 refusal saying the visit is cancelled already (as the simulator and
/// regions word it: 就诊ID[…]已撤销挂号, 该就诊已取消), not that it cannot be cancelled.
const ALREADY_CANCELLED_WORDS: [&str; 2] = ["已撤销", "已取消"];

/// Whether a 2202 refusal says the insurer has the visit cancelled already (an earlier
/// 2202 whose answer the journal could not record).
fn already_cancelled(err_msg: &str) -> bool {
    ALREADY_CANCELLED_WORDS.iter().any(|w| err_msg.contains(w)) && !err_msg.contains("已结算")
}

pub(super) fn visit_row(
    mdtrt_id: String,
    ipt_otp_no: String,
    patient: &Patient,
    params: &RegisterParams,
    med_type: String,
    begntime: String,
) -> VisitRow {
    VisitRow {
        mdtrt_id,
        ipt_otp_no,
        patient: patient.clone(),
        med_type,
        dept_code: params.dept_code.clone(),
        dept_name: params.dept_name.clone(),
        dr_name: params.dr_name.clone(),
        begntime,
        state: VisitState::Registered,
    }
}

impl RegisterParams {
    /// The required texts present and every text by the platform's field rules (2201,
    /// 2203: dept_code C(30), dept_name C(100), dr_name C(50), …).
    pub fn check(&self) -> Result<(), InvalidRequest> {
        for (field, value) in [
            (fields::DEPT_CODE, &self.dept_code),
            (fields::DEPT_NAME, &self.dept_name),
            (fields::DR_NAME, &self.dr_name),
        ] {
            if value.trim().is_empty() {
                return Err(InvalidRequest::Missing(field.name));
            }
        }
        for (field, value) in [
            (fields::DEPT_CODE, &self.dept_code),
            (fields::DEPT_NAME, &self.dept_name),
            (fields::DR_NAME, &self.dr_name),
            (fields::ATDDR_NO, &self.atddr_no),
            (fields::CATY, &self.caty),
            (fields::MED_TYPE, &self.med_type),
            (fields::IPT_OTP_NO, &self.ipt_otp_no),
            (fields::MAIN_COND_DSCR, &self.main_cond_dscr),
        ] {
            field.check(value)?;
        }
        Ok(())
    }
}

/// `visit.register` with an `ipt_otp_no` the journal holds: the visit as journalled when the
/// registration is the same (a retry), else refused with what differs.
fn registered_again(
    existing: VisitRow,
    patient: &Patient,
    params: &RegisterParams,
    med_type: &str,
) -> Result<VisitRow, SettleError> {
    let differs = [
        ("patient", existing.patient.psn_no == patient.psn_no),
        ("dept_code", existing.dept_code == params.dept_code),
        ("dept_name", existing.dept_name == params.dept_name),
        ("dr_name", existing.dr_name == params.dr_name),
        ("med_type", existing.med_type == med_type),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(name, _)| name)
    .collect::<Vec<_>>();
    let used = |what: String| InvalidRequest::IptOtpNoUsed {
        ipt_otp_no: existing.ipt_otp_no.clone(),
        mdtrt_id: existing.mdtrt_id.clone(),
        what,
    };
    if existing.state != VisitState::Registered {
        return Err(used("which was cancelled".into()).into());
    }
    if !differs.is_empty() {
        return Err(used(format!("registered with another {}", differs.join(", "))).into());
    }
    tracing::info!(mdtrt_id = %existing.mdtrt_id, "visit registered again: the journalled visit");
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::already_cancelled;

    #[test]
    fn a_2202_refusal_about_a_cancelled_visit_is_told_from_other_refusals() {
        for gone in [
            "就诊ID[M1]已撤销挂号",
            "该就诊已撤销，不能重复撤销",
            "就诊记录已取消",
        ] {
            assert!(already_cancelled(gone), "{gone}");
        }
        for other in [
            "就诊ID[M1]不存在",
            "该就诊已结算，不能撤销挂号",
            "门诊号[MZ1]与就诊ID不匹配",
            "系统繁忙，请稍后再试",
        ] {
            assert!(!already_cancelled(other), "{other}");
        }
    }
}
