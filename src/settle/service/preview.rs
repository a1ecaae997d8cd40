//! Previews: the bill split locally (cached catalogue, policy, this year's amounts), uploaded
//! as a new batch (2205, 2204) and priced by the insurer (2206), with the differences.

use super::*;

impl Settler {
    /// Splits the bill locally, uploads it as a new batch (2204, after deleting the visit's
    /// unsettled batches with 2205) and asks 2206; with the insurer down, the local split only.
    pub fn preview(
        &self,
        mdtrt_id: &str,
        items: &[BillItem],
        acct_used: Option<bool>,
    ) -> Result<Preview, SettleError> {
        if items.is_empty() {
            return Err(InvalidRequest::EmptyBill.into());
        }
        let guard = self.visit_lock(mdtrt_id);
        let _held = lock(&guard);
        let visit = self.registered_visit(mdtrt_id)?;
        let date = DateTime::now().compact();
        let serial = self
            .journal
            .next_serial("batch", date.get(..8).unwrap_or(&date))?;
        let chrg_bchno = format!("B{}{serial:06}", date.get(2..8).unwrap_or(&date));
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

    /// 2205 for the visit's earlier unsettled batches, 2204 for this one, then 2206.
    pub(super) fn ask_insurer(
        &self,
        visit: &VisitRow,
        preview: &PreviewRow,
        lines: &[FeeLine],
    ) -> Result<Setlinfo, SettleError> {
        for old in self.journal.open_batches(&visit.mdtrt_id)? {
            if old != preview.chrg_bchno {
                let cancel = FeeCancelIn {
                    mdtrt_id: visit.mdtrt_id.clone(),
                    chrg_bchno: old,
                    psn_no: visit.patient.psn_no.clone(),
                };
                self.call(
                    wire::FEE_CANCEL,
                    &visit.patient.insuplc_admdvs,
                    data_input(&cancel),
                )?;
            }
        }
        let feedetail = lines
            .iter()
            .map(|l| fee_detail(visit, preview, l))
            .collect::<Result<Vec<FeeDetailIn>, SettleError>>()?;
        self.call(
            wire::FEE_UPLOAD,
            &visit.patient.insuplc_admdvs,
            json!({"feedetail": feedetail}),
        )?;
        let input = settle_input(visit, preview, medfee(lines)?);
        let reply = self.call(
            wire::PRE_SETTLE,
            &visit.patient.insuplc_admdvs,
            data_input(&input),
        )?;
        let out: SettleOut = serde_json::from_value(reply.output)
            .map_err(|e| WireError::shape("output", &e))
            .map_err(SettleError::unreadable(wire::PRE_SETTLE))?;
        Ok(out.setlinfo)
    }
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
