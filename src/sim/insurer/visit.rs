//! The visit transactions of the simulator: 2201 门诊挂号, 2202 挂号撤销, 2203 就诊信息上传,
//! 2204 费用明细上传 (each line split by `crate::settle::lines::split_line` against the
//! simulator's catalogue) and 2205 费用明细撤销. One function per transaction; refusals are
//! infcode −1 with the platform's wording.
//!
//! Idempotency: a repeated 2201 with the same ipt_otp_no for the same person answers the
//! existing mdtrt_id; a repeated 2204 line (same feedetl_sn, identical content) answers its
//! stored split, different content is refused.

use super::books::{self, Visit};
use super::context::{Ctx, input_part, insured, to_value};
use super::db::{SimDb, TxError};
use crate::insurer::CatalogueItem;
use crate::insurer::settlement::{
    CancelRegisterIn, FeeCancelIn, FeeDetailIn, RegisterIn, RegisterOut, VisitInfoIn,
};
use crate::settle::lines::{FeeLine, LineSplit, split_line};
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// "0000" in 2205: every unsettled line of the visit.
const ALL_BATCHES: &str = "0000";

/// A registered (not cancelled) visit of this person.
pub fn open_visit(conn: &Connection, mdtrt_id: &str, psn_no: &str) -> Result<Visit, TxError> {
    let visit = books::visit(conn, mdtrt_id)?
        .ok_or_else(|| TxError::Refused(format!("就诊ID[{mdtrt_id}]不存在")))?;
    if visit.psn_no != psn_no {
        return Err(TxError::Refused(format!(
            "就诊ID[{mdtrt_id}]与人员编号[{psn_no}]不匹配"
        )));
    }
    if visit.status != "registered" {
        return Err(TxError::Refused(format!("就诊ID[{mdtrt_id}]已撤销挂号")));
    }
    Ok(visit)
}

/// 2201: register a visit.
pub fn register(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: RegisterIn = input_part(input, "data")?;
    let conn = db.conn();
    insured(conn, &req.psn_no, &req.insutype)?;
    if req.mdtrt_cert_type == "01" {
        super::ec_voucher::check_token_holder(db, &req.mdtrt_cert_no, &req.psn_no)?;
    }
    if req.ipt_otp_no.is_empty() {
        return Err(TxError::Refused("门诊号[ipt_otp_no]不能为空".into()));
    }
    if let Some(existing) = books::visit_by_ipt_otp_no(conn, &req.ipt_otp_no)? {
        return repeated_registration(&req, existing);
    }
    let mdtrt_id = books::new_id(conn, "M", &ctx.today.compact())?;
    conn.execute(
        "INSERT INTO visits (mdtrt_id, psn_no, insutype, ipt_otp_no, begntime, mdtrt_cert_type, \
         mdtrt_cert_no, atddr_no, dr_name, dept_code, dept_name, caty) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            mdtrt_id,
            req.psn_no,
            req.insutype,
            req.ipt_otp_no,
            req.begntime,
            req.mdtrt_cert_type,
            req.mdtrt_cert_no,
            req.atddr_no,
            req.dr_name,
            req.dept_code,
            req.dept_name,
            req.caty
        ],
    )?;
    to_value(
        &json!({"data": RegisterOut { mdtrt_id, psn_no: req.psn_no, ipt_otp_no: req.ipt_otp_no }}),
    )
}

/// The same ipt_otp_no again: the existing visit for the same person, else refused.
fn repeated_registration(req: &RegisterIn, existing: Visit) -> Result<Value, TxError> {
    if existing.psn_no != req.psn_no {
        return Err(TxError::Refused(format!(
            "门诊号[{}]已存在，不能重复挂号",
            req.ipt_otp_no
        )));
    }
    if existing.status != "registered" {
        return Err(TxError::Refused(format!(
            "门诊号[{}]已撤销挂号，不能再次使用",
            req.ipt_otp_no
        )));
    }
    registration(existing)
}

/// 2201 / 2202's answer about a visit.
fn registration(visit: Visit) -> Result<Value, TxError> {
    let out = RegisterOut {
        mdtrt_id: visit.mdtrt_id,
        psn_no: visit.psn_no,
        ipt_otp_no: visit.ipt_otp_no,
    };
    to_value(&json!({ "data": out }))
}

/// Whether a batch of the visit is settled and the settlement stands (not refunded by
/// 2208, not reversed by 2601).
fn has_standing_settlement(conn: &Connection, mdtrt_id: &str) -> Result<bool, TxError> {
    for line in books::lines(conn, mdtrt_id, None)? {
        if let Some(setl_id) = &line.setl_id
            && books::settlement(conn, setl_id)?.is_some_and(|s| s.status == "settled")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// 2202: cancel a registration, unless one of its batches is settled and not refunded.
pub fn cancel_register(db: &mut SimDb, _ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: CancelRegisterIn = input_part(input, "data")?;
    let conn = db.conn();
    let visit = open_visit(conn, &req.mdtrt_id, &req.psn_no)?;
    if visit.ipt_otp_no != req.ipt_otp_no {
        return Err(TxError::Refused(format!(
            "门诊号[{}]与就诊ID不匹配",
            req.ipt_otp_no
        )));
    }
    if has_standing_settlement(conn, &visit.mdtrt_id)? {
        return Err(TxError::Refused("该就诊已结算，不能撤销挂号".into()));
    }
    conn.execute(
        "DELETE FROM fee_lines WHERE mdtrt_id = ?1",
        [&visit.mdtrt_id],
    )?;
    conn.execute(
        "UPDATE visits SET status = 'cancelled' WHERE mdtrt_id = ?1",
        [&visit.mdtrt_id],
    )?;
    registration(visit)
}

/// 2203: the visit's medical type and diagnosis.
pub fn visit_info(db: &mut SimDb, _ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: VisitInfoIn = input_part(input, "mdtrtinfo")?;
    if req.med_type.is_empty() {
        return Err(TxError::Refused("医疗类别[med_type]不能为空".into()));
    }
    let conn = db.conn();
    let visit = open_visit(conn, &req.mdtrt_id, &req.psn_no)?;
    conn.execute(
        "UPDATE visits SET med_type = ?2, main_cond_dscr = ?3, dise_codg = ?4, dise_name = ?5 \
         WHERE mdtrt_id = ?1",
        params![
            visit.mdtrt_id,
            req.med_type,
            req.main_cond_dscr,
            req.dise_codg,
            req.dise_name
        ],
    )?;
    Ok(json!({}))
}

/// One received line: its canonical JSON and split.
struct Received {
    line: FeeDetailIn,
    json: String,
    split: LineSplit,
}

/// The catalogue items of one upload, each read once.
type Items = HashMap<String, Option<CatalogueItem>>;

fn split_received(db: &SimDb, items: &mut Items, line: FeeDetailIn) -> Result<Received, TxError> {
    let json = serde_json::to_string(&line)?;
    let fee = FeeLine {
        feedetl_sn: line.feedetl_sn.clone(),
        med_list_codg: line.med_list_codg.clone(),
        medins_list_codg: line.medins_list_codg.clone(),
        fee_name: line.fee_name.clone(),
        cnt: line.cnt,
        pric: line.pric,
    };
    let item = match items.get(&line.med_list_codg) {
        Some(item) => item,
        None => {
            let item = db.catalogue_item(&line.med_list_codg)?;
            items.entry(line.med_list_codg.clone()).or_insert(item)
        }
    };
    let split = split_line(&fee, item.as_ref())
        .map_err(|e| TxError::Refused(format!("费用明细[{}]数据错误: {e}", line.feedetl_sn)))?;
    if crate::money::round_fen(line.det_item_fee_sumamt) != split.det_item_fee_sumamt {
        return Err(TxError::Refused(format!(
            "费用明细[{}]明细项目费用总额[{}]与数量×单价[{}]不符",
            line.feedetl_sn, line.det_item_fee_sumamt, split.det_item_fee_sumamt
        )));
    }
    Ok(Received { line, json, split })
}

/// What the insurer holds of one visit while a 2204 is stored: the visit checked and its
/// settled batches read once per upload, each line looked up by its key (not every line of
/// the visit read again for each line stored: that made a 4,000-line upload take minutes).
struct VisitLines {
    mdtrt_id: String,
    /// Batches with a settled line.
    settled: HashSet<String>,
}

impl VisitLines {
    fn read(conn: &Connection, mdtrt_id: &str, psn_no: &str) -> Result<VisitLines, TxError> {
        let visit = open_visit(conn, mdtrt_id, psn_no)?;
        let settled = books::settled_batches(conn, &visit.mdtrt_id)?
            .into_iter()
            .collect();
        Ok(VisitLines {
            mdtrt_id: visit.mdtrt_id,
            settled,
        })
    }

    /// One received line stored (or found already stored); its split.
    fn store(&self, conn: &Connection, r: Received) -> Result<LineSplit, TxError> {
        // Lines stored earlier in this upload are in the transaction: a repeat is found too.
        let sn = &r.line.feedetl_sn;
        if let Some(stored) = books::line(conn, &self.mdtrt_id, sn)? {
            if stored.line_json == r.json {
                return Ok(stored.split);
            }
            return Err(TxError::Refused(format!(
                "费用明细流水号[{sn}]已存在且内容不同"
            )));
        }
        let batch = &r.line.chrg_bchno;
        if self.settled.contains(batch) {
            return Err(TxError::Refused(format!("收费批次[{batch}]该批次已结算")));
        }
        books::insert_line(conn, &self.mdtrt_id, batch, &r.json, &r.split)?;
        Ok(r.split)
    }
}

/// 2204: upload fee lines (all or none); answers each line's split (`result`).
pub fn fee_upload(db: &mut SimDb, _ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let lines: Vec<FeeDetailIn> = input_part(input, "feedetail")?;
    if lines.is_empty() {
        return Err(TxError::Refused("费用明细[feedetail]不能为空".into()));
    }
    let mut items = Items::new();
    let received = lines
        .into_iter()
        .map(|line| split_received(db, &mut items, line))
        .collect::<Result<Vec<_>, _>>()?;
    let tx = db.conn_mut().transaction()?;
    let mut visits: HashMap<(String, String), VisitLines> = HashMap::new();
    let mut result = Vec::with_capacity(received.len());
    for r in received {
        let key = (r.line.mdtrt_id.clone(), r.line.psn_no.clone());
        let visit = match visits.entry(key) {
            Entry::Occupied(found) => found.into_mut(),
            Entry::Vacant(slot) => {
                let (mdtrt_id, psn_no) = slot.key();
                let read = VisitLines::read(&tx, mdtrt_id, psn_no)?;
                slot.insert(read)
            }
        };
        result.push(visit.store(&tx, r)?);
    }
    tx.commit()?;
    Ok(json!({ "result": to_value(&result)? }))
}

/// 2205: delete a batch's unsettled lines ("0000": every unsettled line of the visit).
pub fn fee_cancel(db: &mut SimDb, _ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: FeeCancelIn = input_part(input, "data")?;
    let conn = db.conn();
    let visit = open_visit(conn, &req.mdtrt_id, &req.psn_no)?;
    let batch = (req.chrg_bchno != ALL_BATCHES).then_some(req.chrg_bchno.as_str());
    if let Some(batch) = batch {
        let lines = books::lines(conn, &visit.mdtrt_id, Some(batch))?;
        if lines.is_empty() {
            return Err(TxError::Refused(format!("收费批次[{batch}]不存在费用明细")));
        }
        if lines.iter().any(|l| l.setl_id.is_some()) {
            return Err(TxError::Refused(format!(
                "收费批次[{batch}]该批次已结算，不能撤销"
            )));
        }
    }
    let deleted = conn.execute(
        "DELETE FROM fee_lines WHERE mdtrt_id = ?1 AND (?2 IS NULL OR chrg_bchno = ?2) \
         AND setl_id IS NULL",
        params![visit.mdtrt_id, batch],
    )?;
    tracing::debug!(mdtrt_id = %visit.mdtrt_id, deleted, "insurer-sim 2205");
    Ok(json!({}))
}
