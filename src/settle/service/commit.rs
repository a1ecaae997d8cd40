//! Commit and refund, exactly once per request_id: each attempt journalled before it is
//! sent, its outcome recorded with the request's state, an unanswered one reversed before the
//! next (module doc of [`super`]).

use super::*;

impl Settler {
    /// 2207 for a preview, exactly once per `request_id` (see the module doc).
    pub fn commit(&self, preview_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        self.commit_once(preview_id, request_id)
            .map_err(SettleError::unsent)
    }

    fn commit_once(&self, preview_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        check_request_id(request_id)?;
        let unknown = || SettleError::UnknownPreview(preview_id.to_owned());
        let visit = self
            .journal
            .preview_visit(preview_id)?
            .ok_or_else(unknown)?;
        // The preview (its lines) is read under the visit's lock: commits waiting for it
        // hold no bill.
        self.once_per_request(&visit, request_id, RequestKind::Settle, preview_id, || {
            let preview = self.journal.preview(preview_id)?.ok_or_else(unknown)?;
            self.first_commit(&preview, request_id)
        })
    }

    /// Under the visit's lock, once the visit's unanswered calls are resolved: the earlier
    /// request with `request_id` (of `kind`, for `key`) carried on, or `first_time` run.
    fn once_per_request(
        &self,
        mdtrt_id: &str,
        request_id: &str,
        kind: RequestKind,
        key: &str,
        first_time: impl FnOnce() -> Result<Settlement, SettleError>,
    ) -> Result<Settlement, SettleError> {
        let guard = self.visit_lock(mdtrt_id);
        let _held = lock(&guard);
        self.resolve_visit(mdtrt_id);
        match self.earlier_request(request_id, kind, key)? {
            Some(existing) => self.continue_request(existing),
            None => first_time(),
        }
    }

    /// 2207 for a request not seen before.
    fn first_commit(
        &self,
        preview: &PreviewRow,
        request_id: &str,
    ) -> Result<Settlement, SettleError> {
        let visit = self.registered_visit(&preview.mdtrt_id)?;
        let request = settle_request(&visit, preview, request_id);
        self.check_no_other(&request)?;
        match visit.patient.may_settle {
            MaySettle::No => Err(SettleError::NotAllowed(visit.patient.verdict_code_text())),
            MaySettle::SelfPayOnly => self.settle_self_pay(request, preview),
            MaySettle::Yes => self.attempts(request, true),
        }
    }

    /// The request journalled under `request_id`, if any; an error when it was for another
    /// preview (settle) or settlement (refund) than `key`.
    pub(super) fn earlier_request(
        &self,
        request_id: &str,
        kind: RequestKind,
        key: &str,
    ) -> Result<Option<RequestRow>, SettleError> {
        let Some(existing) = self.journal.request(request_id)? else {
            return Ok(None);
        };
        let for_key = match kind {
            RequestKind::Settle => existing.preview_id.as_deref(),
            RequestKind::Refund => existing.orig_setl_id.as_deref(),
        };
        if existing.kind != kind || for_key != Some(key) {
            return Err(reused(&existing));
        }
        Ok(Some(existing))
    }

    /// A request met again: report it when final, else go on with it (unless another
    /// request has meanwhile settled its batch, or refunded its settlement).
    pub(super) fn continue_request(&self, request: RequestRow) -> Result<Settlement, SettleError> {
        match request.state {
            s if s.is_final() => self.report(&request),
            RequestState::Pending | RequestState::Unknown => Err(SettleError::Unknown {
                request_id: request.request_id,
            }),
            _ => {
                self.check_no_other(&request)?;
                self.attempts(request, false)
            }
        }
    }

    /// Refuses a new attempt for `request` when another live request holds its batch (a
    /// settlement) or its settlement (a refund).
    pub(super) fn check_no_other(&self, request: &RequestRow) -> Result<(), SettleError> {
        let other = match request.kind {
            RequestKind::Settle => self.journal.request_for_batch(&request.chrg_bchno)?,
            RequestKind::Refund => {
                let setl_id = request.orig_setl_id.as_deref().unwrap_or_default();
                self.journal.live_refunds(setl_id)?.into_iter().next()
            }
        };
        match other {
            Some(other) if other.request_id != request.request_id => {
                Err(SettleError::BatchSettled {
                    chrg_bchno: request.chrg_bchno.clone(),
                    request_id: other.request_id,
                })
            }
            _ => Ok(()),
        }
    }

    /// Up to `max_attempts` calls for `request`; each after the previous one was undone.
    pub(super) fn attempts(
        &self,
        request: RequestRow,
        first: bool,
    ) -> Result<Settlement, SettleError> {
        let mut first = first;
        for _ in 0..self.options.max_attempts.max(1) {
            match self.attempt(&request, first)? {
                Some(done) => return Ok(done),
                None => first = false,
            }
        }
        Err(SettleError::AttemptsUndone {
            attempts: self.options.max_attempts,
        })
    }

    /// One journalled call. `Ok(None)`: it was undone, try again.
    pub(super) fn attempt(
        &self,
        request: &RequestRow,
        first: bool,
    ) -> Result<Option<Settlement>, SettleError> {
        // The preview as the journal has it now (an earlier attempt may have uploaded it).
        let preview = match request.kind {
            RequestKind::Settle => {
                let id = request.preview_id.as_deref().unwrap_or_default();
                Some(
                    self.journal
                        .preview(id)?
                        .ok_or_else(|| SettleError::UnknownPreview(id.to_owned()))?,
                )
            }
            RequestKind::Refund => None,
        };
        let (infno, input) = self.call_input(request, preview.as_ref())?;
        let (call, result) = self.with_link(|link| {
            // Signed in before anything is journalled: a sign-in that fails sends nothing.
            link.ensure_signed_in().map_err(SettleError::from)?;
            let call = CallRow {
                msgid: link.next_msgid(),
                infno: infno.to_owned(),
                request_id: request.request_id.clone(),
                omsgid: None,
                state: CallState::Pending,
                psn_no: request.psn_no.clone(),
                insuplc_admdvs: request.insuplc_admdvs.clone(),
                mdtrt_id: request.mdtrt_id.clone(),
                err_msg: None,
            };
            crash::at(Point::BeforeJournal, infno);
            let journalled = if first {
                self.journal.begin_request(request, &call)
            } else {
                self.journal.add_call(&call, RequestState::Pending)
            };
            journalled.map_err(|e| SettleError::from(e).unsent())?;
            crash::at(Point::BeforeSend, infno);
            crash::at(Point::AfterSend, infno);
            let result = link.send(infno, &call.msgid, region(&request.insuplc_admdvs), input);
            Ok((call, result))
        })?;
        crash::at(Point::AfterReply, infno);
        self.record(request, &call, result)
            .map_err(SettleError::after_send(&request.request_id))
    }

    /// The 2207 / 2208 input for a request.
    pub(super) fn call_input(
        &self,
        request: &RequestRow,
        preview: Option<&PreviewRow>,
    ) -> Result<(&'static str, Value), SettleError> {
        match request.kind {
            RequestKind::Refund => {
                let input = RefundIn {
                    setl_id: request.orig_setl_id.clone().unwrap_or_default(),
                    mdtrt_id: request.mdtrt_id.clone(),
                    psn_no: request.psn_no.clone(),
                };
                Ok((wire::REFUND, data_input(&input)))
            }
            RequestKind::Settle => {
                let preview = preview.ok_or_else(|| {
                    SettleError::UnknownPreview(request.preview_id.clone().unwrap_or_default())
                })?;
                let visit = self.registered_visit(&request.mdtrt_id)?;
                let lines = stored_lines(preview)?;
                if self.needs_upload(preview)? {
                    let setlinfo = self.ask_insurer(&visit, preview, &lines)?;
                    self.journal
                        .update_preview_insurer(&preview.preview_id, &to_json(&setlinfo))?;
                }
                let medfee = medfee(&lines)?;
                Ok((
                    wire::SETTLE,
                    data_input(&settle_input(&visit, preview, medfee)),
                ))
            }
        }
    }

    /// Journals a call's outcome; an unanswered call is reversed before anything else.
    pub(super) fn record(
        &self,
        request: &RequestRow,
        call: &CallRow,
        result: Result<Reply, LinkError>,
    ) -> Result<Option<Settlement>, SettleError> {
        let rid = request.request_id.as_str();
        let kind = match request.kind {
            RequestKind::Settle => SettlementKind::Settle,
            RequestKind::Refund => SettlementKind::Refund,
        };
        // An answer that cannot be read is no answer: the call may have been applied.
        let result = result.and_then(|reply| {
            serde_json::from_value::<SettleOut>(reply.output)
                .map_err(|e| Uncertainty::output(&call.infno, WireError::shape("output", &e)))
        });
        match result {
            Ok(out) => {
                self.count(kind, SettlementOutcome::Settled);
                let setlinfo = to_json(&out.setlinfo);
                let date = out
                    .setlinfo
                    .setl_time
                    .get(..10)
                    .map(str::to_owned)
                    .unwrap_or_else(|| DateTime::now().date());
                let refunds = (request.kind == RequestKind::Refund)
                    .then_some(request.orig_setl_id.as_deref())
                    .flatten();
                let recorded = self.journal.settle_call(&CallOutcome {
                    detail: Some(&setlinfo),
                    request: Some(RequestUpdate {
                        setl_id: Some(&out.setlinfo.setl_id),
                        setlinfo: Some(&setlinfo),
                        setl_date: Some(&date),
                        ..RequestUpdate::state(rid, RequestState::Settled)
                    }),
                    refunds,
                    balance: Some((
                        &request.psn_no,
                        &out.setlinfo.insutype,
                        out.setlinfo.amounts.balc,
                    )),
                    ..CallOutcome::new(&call.msgid, CallState::Success)
                })?;
                if !recorded {
                    // Cannot happen under the visit lock; if it did, the journal's record
                    // (already resolved) stands and is what the caller is shown.
                    tracing::error!(request_id = rid, msgid = %call.msgid, "an answered call was already resolved");
                }
                crash::at(Point::AfterCommit, &call.infno);
                tracing::info!(request_id = rid, setl_id = %out.setlinfo.setl_id, infno = %call.infno, cash = %out.setlinfo.amounts.psn_cash_pay, "settled");
                let done = self
                    .journal
                    .request(rid)?
                    .ok_or_else(|| SettleError::UnknownSettlement(rid.to_owned()))?;
                Ok(Some(self.report(&done)?))
            }
            Err(LinkError::Business { err_msg, .. }) if self.about_the_message(&err_msg) => {
                self.count(kind, SettlementOutcome::Resent);
                // Not processed (a lapsed sign-in, a msgid seen before): a new attempt.
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&err_msg),
                    request: Some(RequestUpdate::state(rid, RequestState::Retry)),
                    ..CallOutcome::new(&call.msgid, CallState::Fail)
                })?;
                if crate::insurer::client::sign_in_lapsed(&err_msg) {
                    self.with_link(|link| link.sign_in().map(|_| ()).map_err(SettleError::from))?;
                }
                Ok(None)
            }
            Err(LinkError::Business { infcode, err_msg }) => {
                self.count(kind, SettlementOutcome::Refused);
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&err_msg),
                    request: Some(RequestUpdate {
                        err_msg: Some(&err_msg),
                        ..RequestUpdate::state(rid, RequestState::Refused)
                    }),
                    ..CallOutcome::new(&call.msgid, CallState::Fail)
                })?;
                crash::at(Point::AfterCommit, &call.infno);
                Err(SettleError::Refused { infcode, err_msg })
            }
            Err(
                e @ (LinkError::CircuitOpen { .. }
                | LinkError::Busy { .. }
                | LinkError::TooLarge { .. }),
            ) => {
                self.count(kind, SettlementOutcome::NotProcessed);
                // Not sent, or not processed (busy, too large): never a final refusal.
                let why = format!("not processed: {e}");
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&why),
                    request: Some(RequestUpdate::state(rid, RequestState::Retry)),
                    ..CallOutcome::new(&call.msgid, CallState::Fail)
                })?;
                Err(SettleError::from(e))
            }
            Err(LinkError::Uncertain(why)) => {
                self.count(kind, SettlementOutcome::Unknown);
                self.journal.settle_call(&CallOutcome {
                    err_msg: Some(&why.to_string()),
                    request: Some(RequestUpdate::state(rid, RequestState::Unknown)),
                    ..CallOutcome::new(&call.msgid, CallState::Unknown)
                })?;
                tracing::warn!(request_id = rid, msgid = %call.msgid, infno = %call.infno, reason = %why, "no answer: reversing with 2601");
                match self.reverse_with_retries(call) {
                    Reversal::Reversed | Reversal::NotApplied => Ok(None),
                    Reversal::StillUnknown => Err(SettleError::Unknown {
                        request_id: rid.to_owned(),
                    }),
                }
            }
        }
    }

    /// A cash-only settlement (verdict `self_pay_only`): nothing is sent to the insurer.
    pub(super) fn settle_self_pay(
        &self,
        request: RequestRow,
        preview: &PreviewRow,
    ) -> Result<Settlement, SettleError> {
        let medfee = medfee(&stored_lines(preview)?)?.to_string();
        let setlinfo = json!({
            "mdtrt_id": request.mdtrt_id, "psn_no": request.psn_no, "medfee_sumamt": medfee,
            "psn_cash_pay": medfee, "fund_pay_sumamt": "0.00", "acct_pay": "0.00",
            "voucher": crate::settle::receipt::MANUAL_REIMBURSEMENT_ZH,
        });
        let request = RequestRow {
            state: RequestState::SelfPay,
            setlinfo: Some(setlinfo.to_string()),
            setl_date: Some(DateTime::now().date()),
            ..request
        };
        self.journal.insert_final_request(&request)?;
        self.count(SettlementKind::Settle, SettlementOutcome::SelfPay);
        self.report(&request)
    }

    /// 2208 for a settlement, exactly once per `request_id`.
    pub fn refund(&self, setl_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        self.refund_once(setl_id, request_id)
            .map_err(SettleError::unsent)
    }

    fn refund_once(&self, setl_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        check_request_id(request_id)?;
        let original = self
            .journal
            .request_by_setl_id(setl_id)?
            .ok_or_else(|| SettleError::UnknownSettlement(setl_id.to_owned()))?;
        let (visit, kind) = (&original.mdtrt_id, RequestKind::Refund);
        self.once_per_request(visit, request_id, kind, setl_id, || {
            self.first_refund(setl_id, request_id)
        })
    }

    /// 2208 for a request not seen before (the settlement read again under the visit's lock).
    fn first_refund(&self, setl_id: &str, request_id: &str) -> Result<Settlement, SettleError> {
        let original = self
            .journal
            .request_by_setl_id(setl_id)?
            .ok_or_else(|| SettleError::UnknownSettlement(setl_id.to_owned()))?;
        if original.state != RequestState::Settled {
            return Err(InvalidRequest::NotSettled {
                setl_id: setl_id.to_owned(),
                state: original.state.as_str(),
            }
            .into());
        }
        let request = RequestRow {
            request_id: request_id.to_owned(),
            kind: RequestKind::Refund,
            preview_id: None,
            orig_setl_id: Some(setl_id.to_owned()),
            state: RequestState::Pending,
            setl_id: None,
            setlinfo: None,
            err_msg: None,
            setl_date: None,
            ..original
        };
        self.check_no_other(&request)?;
        self.attempts(request, true)
    }
}
