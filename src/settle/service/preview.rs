//! Previews: the bill split locally (cached catalogue, policy, this year's amounts), uploaded
//! as a new batch (2205, 2204) and priced by the insurer (2206), with the differences.

use super::*;

impl Settler {
    /// Splits the bill locally, uploads it as a new batch (2204, after deleting with 2205 the
    /// visit's batches the insurer still holds) and asks 2206; with the insurer down, the
    /// local split only. A bill of more than `max_bill_lines` lines is refused. A journal
    /// that cannot be written fails the preview (1019: nothing charged); a batch uploaded
    /// before it failed is held in the journal already, and the next preview deletes it.
    pub fn preview(
        &self,
        mdtrt_id: &str,
        items: &[BillItem],
        acct_used: Option<bool>,
    ) -> Result<Preview, SettleError> {
        self.preview_once(mdtrt_id, items, acct_used)
            .map_err(SettleError::preview_unrecorded)
    }

    fn preview_once(
        &self,
        mdtrt_id: &str,
        items: &[BillItem],
        acct_used: Option<bool>,
    ) -> Result<Preview, SettleError> {
        if items.is_empty() {
            return Err(InvalidRequest::EmptyBill.into());
        }
        if items.len() > self.options.max_bill_lines {
            return Err(InvalidRequest::TooManyLines {
                lines: items.len(),
                max: self.options.max_bill_lines,
            }
            .into());
        }
        let guard = self.visit_lock(mdtrt_id);
        let _held = lock(&guard);
        let visit = self.registered_visit(mdtrt_id)?;
        crash::at(Point::BeforeJournal, wire::FEE_UPLOAD);
        let date = DateTime::now().compact();
        let serial = self.serial("batch", date.get(..8).unwrap_or(&date))?;
        let chrg_bchno = format!("B{}{serial}", date.get(2..8).unwrap_or(&date));
        let fee_lines = fee_lines(&chrg_bchno, items);
        let lines = self.split_locally(&fee_lines)?;
        let acct_used = acct_used.unwrap_or(true);
        let self_pay = visit.patient.may_settle == MaySettle::SelfPayOnly;
        // medcard's own split is advice: a person no policy file covers still settles.
        let (local, local_error) = match self.local_split(&visit, &lines, acct_used) {
            Ok(split) if self_pay => (Some(self_pay_split(split)), None),
            Ok(split) => (Some(split), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut row = PreviewRow {
            preview_id: format!("P{chrg_bchno}"),
            mdtrt_id: mdtrt_id.to_owned(),
            chrg_bchno,
            acct_used,
            lines: to_json(&fee_lines),
            local_split: to_json(&local),
            insurer: None,
            uploaded: false,
            fee_time: DateTime::now().datetime(),
        };
        self.journal.insert_preview(&row)?;
        let asked = if self_pay {
            Err(SettleError::NotAllowed(format!(
                "{}: cash only, not sent to the insurer",
                visit.patient.verdict_code_text()
            )))
        } else {
            self.ask_insurer(&visit, &row, &fee_lines)
        };
        let (insurer, insurer_error) = match asked {
            Ok(setlinfo) => {
                row.insurer = Some(to_json(&setlinfo));
                self.journal
                    .update_preview_insurer(&row.preview_id, &to_json(&setlinfo))?;
                (Some(setlinfo), None)
            }
            // The journal failed (not the insurer): no local answer stands in for it.
            Err(e @ SettleError::Cache(_)) => return Err(e),
            Err(e) if local.is_none() && !self_pay => return Err(e),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Preview {
            differences: match (&local, &insurer) {
                (Some(local), Some(insurer)) => local.amounts.differences(&insurer.amounts),
                _ => Vec::new(),
            },
            source: if insurer.is_some() {
                "insurer"
            } else {
                "local"
            }
            .into(),
            preview_id: row.preview_id,
            mdtrt_id: mdtrt_id.to_owned(),
            chrg_bchno: row.chrg_bchno,
            lines,
            local,
            local_error,
            insurer,
            may_settle: visit.patient.may_settle,
            insurer_error,
        })
    }

    pub(super) fn split_locally(&self, lines: &[FeeLine]) -> Result<Vec<LineSplit>, SettleError> {
        lines
            .iter()
            .map(|line| {
                let item = self.cache.reader().catalogue_item(&line.med_list_codg)?;
                split_line(line, item.as_ref()).map_err(|e| InvalidRequest::from(e).into())
            })
            .collect()
    }

    /// medcard's own split: the cached balance and this hospital's settlements this year.
    pub(super) fn local_split(
        &self,
        visit: &VisitRow,
        lines: &[LineSplit],
        acct_used: bool,
    ) -> Result<Split, SettleError> {
        let policy = self.policy_for(&visit.patient.insuplc_admdvs, &visit.patient.insutype)?;
        let key = RuleKey {
            insutype: &visit.patient.insutype,
            med_type: &visit.med_type,
            hosp_lv: &self.options.hosp_lv,
            retired: is_retired(&visit.patient.psn_type),
        };
        let rule = policy.rule_for(&key).map_err(SettleError::Policy)?;
        let balc = self
            .cache
            .reader()
            .person_by_psn_no(&visit.patient.psn_no)?
            .and_then(|p| {
                p.info
                    .insuinfo
                    .into_iter()
                    .find(|i| i.insutype == visit.patient.insutype)
            })
            .map(|i| i.balc)
            .unwrap_or_default();
        let mut ytd = self.year_to_date(&visit.patient.psn_no)?;
        ytd.inscp_scp_amt += visit.patient.ytd_hint.unwrap_or_default();
        let funds = AccountFunds {
            balc,
            mulaid: Vec::new(),
            acct_used,
        };
        Ok(settle(
            policy,
            rule,
            &CatalogueTotals::from_lines(lines),
            &ytd,
            &funds,
        ))
    }

    /// This calendar year's in-scope amount and fund pay of the person's settlements here.
    pub(super) fn year_to_date(&self, psn_no: &str) -> Result<YearToDate, SettleError> {
        let year = DateTime::now().year();
        let mut ytd = YearToDate {
            inscp_scp_amt: Decimal::ZERO,
            fund_pay: Decimal::ZERO,
        };
        for row in self
            .journal
            .settled_for_person(psn_no, &format!("{year}-"))?
        {
            if let Some(s) = row
                .setlinfo
                .as_deref()
                .and_then(|s| serde_json::from_str::<Setlinfo>(s).ok())
            {
                ytd.inscp_scp_amt += s.amounts.catalogue.inscp_scp_amt;
                ytd.fund_pay += s.amounts.fund_pay_sumamt;
            }
        }
        Ok(ytd)
    }

    /// 2205 for the visit's other batches the insurer still holds, 2204 for this one (in
    /// chunks of at most `max_upload_lines` lines), then 2206.
    pub(super) fn ask_insurer(
        &self,
        visit: &VisitRow,
        preview: &PreviewRow,
        lines: &[FeeLine],
    ) -> Result<Setlinfo, SettleError> {
        for old in self.journal.open_batches(&visit.mdtrt_id)? {
            if old != preview.chrg_bchno {
                self.delete_batch(visit, &old)?;
            }
        }
        let feedetail = lines
            .iter()
            .map(|l| fee_detail(visit, preview, l))
            .collect::<Result<Vec<FeeDetailIn>, SettleError>>()?;
        // Held from before the first 2204: an unanswered one may have been applied.
        self.journal
            .batch_held(&visit.mdtrt_id, &preview.chrg_bchno)?;
        let admdvs = &visit.patient.insuplc_admdvs;
        for input in wire::fee_upload_inputs(&feedetail, self.options.max_upload_lines) {
            self.call(wire::FEE_UPLOAD, admdvs, input)?;
        }
        drop(feedetail);
        let input = settle_input(visit, preview, medfee(lines)?);
        let reply = self.call(wire::PRE_SETTLE, admdvs, data_input(&input))?;
        crash::at(Point::AfterReply, wire::PRE_SETTLE);
        let out: SettleOut = serde_json::from_value(reply.output)
            .map_err(|e| WireError::shape("output", &e))
            .map_err(SettleError::unreadable(wire::PRE_SETTLE))?;
        Ok(out.setlinfo)
    }

    /// Whether the insurer must be sent the preview's batch again before it is settled: it
    /// was never priced (2206), or the insurer no longer holds it alone (a later preview
    /// deleted it, or holds other lines of the visit).
    pub(super) fn needs_upload(&self, preview: &PreviewRow) -> Result<bool, SettleError> {
        let open = self.journal.open_batches(&preview.mdtrt_id)?;
        Ok(!preview.uploaded || open != [preview.chrg_bchno.as_str()])
    }

    /// 2205 for a batch the journal holds as uploaded; recorded as deleted once answered. An
    /// answer that the insurer holds no line of it means an earlier 2205 (or none of its
    /// 2204s) took effect: the batch is as deleted.
    fn delete_batch(&self, visit: &VisitRow, chrg_bchno: &str) -> Result<(), SettleError> {
        let cancel = FeeCancelIn {
            mdtrt_id: visit.mdtrt_id.clone(),
            chrg_bchno: chrg_bchno.to_owned(),
            psn_no: visit.patient.psn_no.clone(),
        };
        let admdvs = &visit.patient.insuplc_admdvs;
        match self.call(wire::FEE_CANCEL, admdvs, data_input(&cancel)) {
            Ok(_) => {}
            Err(SettleError::Refused { err_msg, .. }) if holds_no_lines(&err_msg) => {
                tracing::info!(mdtrt_id = %visit.mdtrt_id, chrg_bchno, err_msg, "2205: the insurer holds no line of the batch; it counts as deleted");
            }
            Err(e) => return Err(e),
        }
        self.journal.batch_deleted(&visit.mdtrt_id, chrg_bchno)?;
        Ok(())
    }
}

/// Words of a 2205 refusal saying the batch has no (unsettled) lines at the insurer, as
/// regions word it: a "not found" word together with a word for the lines or the batch.
const NOT_FOUND_WORDS: [&str; 5] = ["不存在", "未找到", "没有", "无此", "查无"];
const LINES_WORDS: [&str; 2] = ["明细", "批次"];

/// Whether a 2205 refusal says that the insurer holds no line of the batch (not that the
/// visit or the person is unknown, nor that the batch is settled).
fn holds_no_lines(err_msg: &str) -> bool {
    NOT_FOUND_WORDS.iter().any(|w| err_msg.contains(w))
        && LINES_WORDS.iter().any(|w| err_msg.contains(w))
        && !err_msg.contains("已结算")
}

/// The split of a cash-only settlement: the catalogue split kept, everything the patient's.
pub(super) fn self_pay_split(mut split: Split) -> Split {
    let zero = zero_fen();
    let a = &mut split.amounts;
    a.balc += a.acct_pay - a.acct_mulaid_pay;
    for (paid, balc) in split
        .mulaid_pay
        .iter_mut()
        .zip(split.mulaid_balc.iter_mut())
    {
        *balc += *paid;
        *paid = zero;
    }
    // No insurance rule applied: no band, nothing toward the year's amounts.
    split.ytd_inscp_after -= a.catalogue.inscp_scp_amt;
    split.ytd_fund_pay_after -= a.hifp_pay;
    a.act_pay_dedc = zero;
    a.hifp_pay = zero;
    a.pool_prop_selfpay = Decimal::ZERO;
    a.fund_pay_sumamt = zero;
    a.acct_pay = zero;
    a.acct_mulaid_pay = zero;
    a.psn_part_amt = a.medfee_sumamt;
    a.psn_cash_pay = a.medfee_sumamt;
    split.bands.clear();
    split
}

pub(super) fn fee_lines(chrg_bchno: &str, items: &[BillItem]) -> Vec<FeeLine> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| FeeLine {
            feedetl_sn: format!("{chrg_bchno}-{:03}", i + 1),
            med_list_codg: item.code.clone(),
            medins_list_codg: Some(item.medins_code.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| item.code.clone()),
            fee_name: item.name.clone(),
            cnt: item.qty,
            pric: item.price,
        })
        .collect()
}

pub(super) fn fee_detail(
    visit: &VisitRow,
    preview: &PreviewRow,
    line: &FeeLine,
) -> Result<FeeDetailIn, SettleError> {
    Ok(FeeDetailIn {
        feedetl_sn: line.feedetl_sn.clone(),
        mdtrt_id: visit.mdtrt_id.clone(),
        psn_no: visit.patient.psn_no.clone(),
        chrg_bchno: preview.chrg_bchno.clone(),
        rx_circ_flag: "0".into(),
        fee_ocur_time: preview.fee_time.clone(),
        med_list_codg: line.med_list_codg.clone(),
        medins_list_codg: line.medins_list_codg.clone(),
        fee_name: line.fee_name.clone(),
        det_item_fee_sumamt: line.amount().map_err(InvalidRequest::from)?,
        cnt: line.cnt,
        pric: line.pric,
        bilg_dept_codg: visit.dept_code.clone(),
        bilg_dept_name: visit.dept_name.clone(),
        bilg_dr_codg: visit.dr_name.clone(),
        bilg_dr_name: visit.dr_name.clone(),
        hosp_appr_flag: "1".into(),
    })
}

pub(super) fn settle_input(
    visit: &VisitRow,
    preview: &PreviewRow,
    medfee_sumamt: Decimal,
) -> SettleIn {
    SettleIn {
        psn_no: visit.patient.psn_no.clone(),
        mdtrt_cert_type: visit.patient.mdtrt_cert_type.clone(),
        mdtrt_cert_no: visit.patient.mdtrt_cert_no.clone(),
        med_type: visit.med_type.clone(),
        medfee_sumamt,
        psn_setlway: "01".into(),
        mdtrt_id: visit.mdtrt_id.clone(),
        chrg_bchno: preview.chrg_bchno.clone(),
        insutype: visit.patient.insutype.clone(),
        acct_used_flag: if preview.acct_used { "1" } else { "0" }.into(),
        invono: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::holds_no_lines;

    #[test]
    fn a_2205_refusal_about_missing_lines_is_told_from_other_refusals() {
        for gone in [
            "收费批次[B1]不存在费用明细",
            "费用明细不存在",
            "未找到该收费批次的费用明细",
            "该批次没有可撤销的明细",
        ] {
            assert!(holds_no_lines(gone), "{gone}");
        }
        for other in [
            "就诊ID[M1]不存在",
            "收费批次[B1]该批次已结算，不能撤销",
            "系统繁忙，请稍后再试",
            "签到信息不存在或已失效，请重新签到",
        ] {
            assert!(!holds_no_lines(other), "{other}");
        }
    }
}
