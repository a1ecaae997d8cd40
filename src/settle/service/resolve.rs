//! Resolving unanswered calls: 2601 for each, with backoff; the resolver's passes.

use super::*;

/// How a reversal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reversal {
    /// The insurer undid the call (or had undone it already).
    Reversed,
    /// The insurer never applied the call.
    NotApplied,
    /// No definite answer yet.
    StillUnknown,
}

impl Reversal {
    /// How a 2601 that went out is counted.
    fn counted(self) -> SettlementOutcome {
        match self {
            Reversal::Reversed => SettlementOutcome::Reversed,
            Reversal::NotApplied => SettlementOutcome::NotApplied,
            Reversal::StillUnknown => SettlementOutcome::Unknown,
        }
    }
}

impl Settler {
    /// 2601 for an unanswered call, retried with backoff up to `reversal_tries` times.
    pub(super) fn reverse_with_retries(&self, call: &CallRow) -> Reversal {
        let mut pause = self.options.reversal_backoff;
        for attempt in 0..self.options.reversal_tries.max(1) {
            if attempt > 0 {
                std::thread::sleep(pause);
                pause = pause.saturating_mul(2);
            }
            match self.reverse(call) {
                Ok(Reversal::StillUnknown) => continue,
                Ok(done) => return done,
                Err(e) => {
                    tracing::error!(msgid = %call.msgid, error = %e, "journal error while reversing")
                }
            }
        }
        Reversal::StillUnknown
    }

    /// One 2601 for `call`, journalled like any money-moving call.
    pub(super) fn reverse(&self, call: &CallRow) -> Result<Reversal, SettleError> {
        let input = data_input(&ReversalIn {
            psn_no: call.psn_no.clone(),
            omsgid: call.msgid.clone(),
            oinfno: call.infno.clone(),
        });
        let sent = self.with_link(|link| {
            // With the circuit open, or no sign-in, nothing would be sent: journal nothing.
            if link.circuit_open() || link.ensure_signed_in().is_err() {
                return Ok(None);
            }
            let reversal = CallRow {
                msgid: link.next_msgid(),
                infno: wire::REVERSAL.into(),
                omsgid: Some(call.msgid.clone()),
                state: CallState::Pending,
                err_msg: None,
                ..call.clone()
            };
            self.journal.add_call(&reversal, RequestState::Unknown)?;
            let result = link.send(
                wire::REVERSAL,
                &reversal.msgid,
                region(&call.insuplc_admdvs),
                input,
            );
            Ok(Some((reversal.msgid, result)))
        })?;
        let Some((msgid, result)) = sent else {
            return Ok(Reversal::StillUnknown);
        };
        let outcome = match &result {
            Ok(_) => Reversal::Reversed,
            Err(LinkError::Business { err_msg, .. }) if err_msg.contains("已冲正") => {
                Reversal::Reversed
            }
            Err(LinkError::Business { err_msg, .. }) if err_msg.contains("原交易不存在") => {
                Reversal::NotApplied
            }
            Err(LinkError::Business { err_msg, .. }) => {
                tracing::error!(omsgid = %call.msgid, err_msg = %err_msg, "2601 refused: the call stays unknown; see medcard reconcile");
                Reversal::StillUnknown
            }
            Err(_) => Reversal::StillUnknown,
        };
        self.count(SettlementKind::Reversal, outcome.counted());
        self.record_reversal(call, &msgid, &result, outcome)?;
        Ok(outcome)
    }

    pub(super) fn record_reversal(
        &self,
        call: &CallRow,
        msgid: &str,
        result: &Result<Reply, LinkError>,
        outcome: Reversal,
    ) -> Result<(), CacheError> {
        let err = result.as_ref().err().map(ToString::to_string);
        let own_state = match result {
            Ok(_) => CallState::Success,
            Err(
                LinkError::Business { .. }
                | LinkError::Busy { .. }
                | LinkError::TooLarge { .. }
                | LinkError::CircuitOpen { .. },
            ) => CallState::Fail,
            Err(LinkError::Uncertain(_)) => CallState::Unknown,
        };
        self.journal.settle_call(&CallOutcome {
            err_msg: err.as_deref(),
            ..CallOutcome::new(msgid, own_state)
        })?;
        let (original, request) = match outcome {
            Reversal::Reversed => (CallState::Reversed, RequestState::Retry),
            Reversal::NotApplied => (CallState::Fail, RequestState::Retry),
            Reversal::StillUnknown => return Ok(()),
        };
        let note = match outcome {
            Reversal::NotApplied => "never applied (2601: 原交易不存在)",
            _ => "reversed by 2601",
        };
        self.journal.settle_call(&CallOutcome {
            err_msg: Some(note),
            request: Some(RequestUpdate::state(&call.request_id, request)),
            ..CallOutcome::new(&call.msgid, original)
        })?;
        // Earlier 2601s for it whose answers were lost are in doubt no more: when the
        // original stands reversed one of them did it; when it was never applied, none did.
        let (earlier, earlier_note) = match outcome {
            Reversal::Reversed => (
                CallState::Success,
                "answer lost; the insurer holds the original reversed",
            ),
            _ => (
                CallState::Fail,
                "answer lost; the original was never applied: nothing was reversed",
            ),
        };
        self.journal
            .close_reversals_of(&call.msgid, earlier, earlier_note)?;
        tracing::info!(omsgid = %call.msgid, request_id = %call.request_id, note, "unanswered call resolved");
        Ok(())
    }

    /// Reverses the visit's unanswered calls (best effort; what stays unknown blocks it).
    pub(super) fn resolve_visit(&self, mdtrt_id: &str) {
        match self.journal.unresolved_calls_for_visit(mdtrt_id) {
            Ok(calls) => {
                for call in calls {
                    self.resolve_call(&call);
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the journal"),
        }
    }

    pub(super) fn resolve_call(&self, call: &CallRow) {
        if call.state == CallState::Pending {
            let _ = self.journal.settle_call(&CallOutcome {
                err_msg: Some("found PENDING after a restart"),
                request: Some(RequestUpdate::state(
                    &call.request_id,
                    RequestState::Unknown,
                )),
                ..CallOutcome::new(&call.msgid, CallState::Unknown)
            });
        }
        self.reverse_with_retries(call);
    }

    /// After a restart, before anything else: 2601s left PENDING by the dead process are
    /// UNKNOWN (their originals get a fresh 2601), then [`Self::resolve_all`].
    pub fn recover(&self) -> Result<usize, SettleError> {
        self.journal.settle_stale_reversals()?;
        self.resolve_all()
    }

    /// Resolves every unanswered call (start-up, and the background resolver); returns how
    /// many stay unknown.
    pub fn resolve_all(&self) -> Result<usize, SettleError> {
        let calls = self.journal.unresolved_calls()?;
        let mut left = 0;
        for listed in &calls {
            let guard = self.visit_lock(&listed.mdtrt_id);
            let _held = lock(&guard);
            // Read again under the visit's lock: a commit may have finished it meanwhile.
            let Some(call) = self
                .journal
                .call(&listed.msgid)?
                .filter(|c| c.state.unresolved())
            else {
                continue;
            };
            self.resolve_call(&call);
            if self
                .journal
                .call(&call.msgid)?
                .is_some_and(|c| c.state.unresolved())
            {
                left += 1;
            }
        }
        if !calls.is_empty() {
            tracing::info!(found = calls.len(), unresolved = left, "journal resolved");
        }
        Ok(left)
    }
}
