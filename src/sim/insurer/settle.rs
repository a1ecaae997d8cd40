//! The money transactions of the simulator: 2206 门诊预结算, 2207 门诊结算, 2208 结算撤销 and
//! 2601 冲正. The split itself is `crate::settle::calc::settle` (one implementation for medcard
//! and the simulator); this module gathers its inputs (the batch's lines, the person's policy
//! and rule, year-to-date sums, own and relatives' balances) and books its result.
//!
//! - 2206 computes and changes nothing (setl_id "").
//! - 2207 computes the same and, in one SQLite transaction, stores the settlement (msgid =
//!   medins_setl_id), debits the own account and each relative's account, and closes the
//!   batch's lines. A second 2207 on a settled batch is refused (该批次已结算).
//! - 2208 refunds by setl_id: a NEW setl_id for the refund, the original's amounts, the
//!   accounts credited back, balc after; the batch stays closed (a refunded bill is not billed
//!   again: upload a new batch).
//! - 2601 reverses a 2207 that made a settlement still settled (accounts credited back, the
//!   batch's lines open again so a fresh 2207 can settle it), or a 2208 refund still standing
//!   (the settlement is settled again, the accounts debited again). Output `{}`.

use super::accounts::{self, AccountKey, EntryKind};
use super::books::{self, AccountPart, Settlement};
use super::context::{Ctx, Insured, input_part, insured, person, to_value};
use super::db::{SimDb, TxError};
use super::policies::SimPolicies;
use super::visit::open_visit;
use crate::clock::Date;
use crate::insurer::settlement::{
    REVERSIBLE, RefundIn, ReversalIn, SETTLE, SetlDetail, Setlinfo, SettleIn, SettleOut,
};
use crate::money::CatalogueTotals;
use crate::settle::calc::{AccountFunds, Split, YearToDate, settle as split_bill};
use rusqlite::Connection;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// 清算类别 11 门诊.
const CLR_TYPE_OUTPATIENT: &str = "11";
/// 清算方式 01 按项目.
const CLR_WAY_ITEMS: &str = "01";

/// What a settlement is computed from.
struct Bill<'a> {
    person: &'a Insured,
    mdtrt_id: &'a str,
    med_type: &'a str,
    totals: CatalogueTotals,
    acct_used: bool,
    /// The day it is settled on (ytd runs over its year).
    date: Date,
    setl_time: String,
    /// Balances from entries dated on or before this day (seeding the past); `None` = all.
    balances_upto: Option<String>,
}

/// A computed settlement: the answer and where the account money comes from.
struct Computed {
    out: SettleOut,
    parts: Vec<AccountPart>,
}

/// The identities of insurer-api.md §2.6, or an internal error.
fn checked(out: SettleOut) -> Result<SettleOut, TxError> {
    out.setlinfo.amounts.check_identities()?;
    Ok(out)
}

/// The 统筹 fund's code and name for an insutype.
fn pool_fund(insutype: &str) -> (&'static str, &'static str) {
    match insutype {
        "390" | "391" => ("390100", "城乡居民基本医疗保险基金"),
        _ => ("310100", "职工基本医疗保险统筹基金"),
    }
}

fn detail(code: &str, name: &str, amount: Decimal) -> SetlDetail {
    SetlDetail {
        fund_pay_type: code.to_string(),
        fund_pay_type_name: name.to_string(),
        fund_payamt: amount,
    }
}

/// setldetail: the pooled fund, the own account, each relative's account (共济); rows with
/// an amount only.
fn setldetail(insutype: &str, split: &Split, parts: &[AccountPart]) -> Vec<SetlDetail> {
    let (pool_code, pool_name) = pool_fund(insutype);
    let mut rows = vec![detail(pool_code, pool_name, split.amounts.hifp_pay)];
    for part in parts {
        let name = if part.mulaid {
            format!("职工基本医疗保险个人账户基金(家庭共济:{})", part.psn_no)
        } else {
            "职工基本医疗保险个人账户基金".to_string()
        };
        rows.push(detail("310200", &name, part.amount));
    }
    rows.retain(|r| !r.fund_payamt.is_zero());
    rows
}

/// The accounts that paid: own, then relatives in binding order.
fn account_parts(person: &Insured, split: &Split, payers: &[AccountKey]) -> Vec<AccountPart> {
    let own = AccountPart {
        psn_no: person.psn_no.clone(),
        insutype: person.insutype.clone(),
        amount: split.amounts.acct_pay - split.amounts.acct_mulaid_pay,
        mulaid: false,
    };
    let relatives = payers
        .iter()
        .zip(&split.mulaid_pay)
        .map(|(payer, amount)| AccountPart {
            psn_no: payer.psn_no.clone(),
            insutype: payer.insutype.clone(),
            amount: *amount,
            mulaid: true,
        });
    std::iter::once(own)
        .chain(relatives)
        .filter(|p| !p.amount.is_zero())
        .collect()
}

fn setlinfo(bill: &Bill<'_>, split: &Split) -> Setlinfo {
    let p = bill.person;
    Setlinfo {
        mdtrt_id: bill.mdtrt_id.to_string(),
        setl_id: String::new(),
        psn_no: p.psn_no.clone(),
        psn_name: p.psn_name.clone(),
        psn_cert_type: p.psn_cert_type.clone(),
        certno: p.certno.clone(),
        insutype: p.insutype.clone(),
        psn_type: p.psn_type.clone(),
        med_type: bill.med_type.to_string(),
        setl_time: bill.setl_time.clone(),
        amounts: split.amounts.clone(),
        medins_setl_id: String::new(),
        clr_optins: p.insuplc_admdvs.clone(),
        clr_way: CLR_WAY_ITEMS.to_string(),
        clr_type: CLR_TYPE_OUTPATIENT.to_string(),
    }
}

/// Run the engine on a bill with the person's policy, year-to-date sums and balances.
fn compute(
    conn: &Connection,
    policies: &SimPolicies,
    bill: &Bill<'_>,
) -> Result<Computed, TxError> {
    let p = bill.person;
    let policy = policies.for_person(&p.insuplc_admdvs, &p.insutype);
    let rule = policies
        .rule(policy, &p.insutype, bill.med_type, &p.psn_type)
        .map_err(|e| TxError::Refused(format!("未找到适用的待遇政策: {e}")))?;
    let year = bill.date.year();
    let (inscp, fund) = books::active_sums(
        conn,
        &p.psn_no,
        &p.insutype,
        &Date::year_start(year),
        &Date::year_end(year),
    )?;
    let ytd = YearToDate {
        inscp_scp_amt: inscp,
        fund_pay: fund,
    };
    let upto = bill.balances_upto.as_deref();
    let own = AccountKey::new(&p.psn_no, &p.insutype);
    let payers = accounts::payers(conn, &p.psn_no)?;
    let funds = AccountFunds {
        balc: accounts::balance(conn, &own, upto)?,
        mulaid: payers
            .iter()
            .map(|payer| accounts::balance(conn, payer, upto))
            .collect::<Result<Vec<_>, _>>()?,
        acct_used: bill.acct_used,
    };
    let split = split_bill(policy, rule, &bill.totals, &ytd, &funds);
    let parts = account_parts(p, &split, &payers);
    let out = SettleOut {
        setlinfo: setlinfo(bill, &split),
        setldetail: setldetail(&p.insutype, &split, &parts),
    };
    Ok(Computed { out, parts })
}

/// Store a computed settlement: the row, the account debits, the batch's lines closed.
fn book(
    conn: &Connection,
    computed: &mut Computed,
    msgid: &str,
    chrg_bchno: &str,
    date: &Date,
) -> Result<String, TxError> {
    let setl_id = books::new_id(conn, "S", &date.compact())?;
    let info = &mut computed.out.setlinfo;
    info.setl_id = setl_id.clone();
    info.medins_setl_id = msgid.to_string();
    let row = Settlement {
        setl_id: setl_id.clone(),
        msgid: msgid.to_string(),
        mdtrt_id: info.mdtrt_id.clone(),
        chrg_bchno: chrg_bchno.to_string(),
        psn_no: info.psn_no.clone(),
        insutype: info.insutype.clone(),
        setl_date: date.to_string(),
        setlinfo: info.clone(),
        setldetail: computed.out.setldetail.clone(),
        status: "settled".into(),
        refund_setl_id: None,
        refund_msgid: None,
    };
    books::insert_settlement(conn, &row, &computed.parts)?;
    move_parts(conn, &computed.parts, date, &setl_id, Movement::Spend)?;
    books::close_batch(conn, &row.mdtrt_id, chrg_bchno, &setl_id)?;
    Ok(setl_id)
}

/// Which way a settlement's account parts move, and how the ledger calls it.
#[derive(Debug, Clone, Copy)]
enum Movement {
    /// Out of the accounts (2207, or 2601 of a refund).
    Spend,
    /// Back into them (2208).
    Refund,
    /// Back into them (2601 of a settlement).
    Reversal,
}

impl Movement {
    /// The sign of the entries and their kinds (own account, a relative's).
    fn entries(self) -> (Decimal, EntryKind, EntryKind) {
        match self {
            Movement::Spend => (-Decimal::ONE, EntryKind::Spend, EntryKind::MulaidSpend),
            Movement::Refund => (Decimal::ONE, EntryKind::Refund, EntryKind::MulaidRefund),
            Movement::Reversal => (Decimal::ONE, EntryKind::Reversal, EntryKind::Reversal),
        }
    }
}

/// Post each part, dated `date`, as `movement` says.
fn move_parts(
    conn: &Connection,
    parts: &[AccountPart],
    date: &Date,
    setl_id: &str,
    movement: Movement,
) -> Result<(), TxError> {
    let (sign, own_kind, mulaid_kind) = movement.entries();
    for part in parts {
        let account = AccountKey::new(&part.psn_no, &part.insutype);
        let kind = if part.mulaid { mulaid_kind } else { own_kind };
        accounts::post(
            conn,
            &account,
            &date.to_string(),
            kind,
            part.amount * sign,
            Some(setl_id),
        )?;
    }
    Ok(())
}

/// Moves the parts a booked settlement `setl_id` paid with.
fn move_booked_parts(
    conn: &Connection,
    setl_id: &str,
    date: &Date,
    movement: Movement,
) -> Result<(), TxError> {
    let parts = books::parts(conn, setl_id)?;
    move_parts(conn, &parts, date, setl_id, movement)
}

/// 2206 / 2207's common part: the request checked against the visit, the person and the
/// batch, then computed.
fn prepare(db: &SimDb, ctx: &Ctx<'_>, req: &SettleIn) -> Result<Computed, TxError> {
    let conn = db.conn();
    let visit = open_visit(conn, &req.mdtrt_id, &req.psn_no)?;
    if visit.insutype != req.insutype {
        return Err(TxError::Refused(format!(
            "险种类型[{}]与挂号信息不符",
            req.insutype
        )));
    }
    if !req.mdtrt_cert_type.is_empty() && req.mdtrt_cert_type != visit.mdtrt_cert_type {
        return Err(TxError::Refused(format!(
            "就诊凭证类型[{}]与挂号信息不符",
            req.mdtrt_cert_type
        )));
    }
    let person = insured(conn, &req.psn_no, &req.insutype)?;
    let lines = books::lines(conn, &req.mdtrt_id, Some(&req.chrg_bchno))?;
    if lines.is_empty() {
        return Err(TxError::Refused(format!(
            "收费批次[{}]不存在费用明细",
            req.chrg_bchno
        )));
    }
    if lines.iter().any(|l| l.setl_id.is_some()) {
        return Err(TxError::Refused(format!(
            "收费批次[{}]该批次已结算",
            req.chrg_bchno
        )));
    }
    let splits: Vec<_> = lines.into_iter().map(|l| l.split).collect();
    let totals = CatalogueTotals::from_lines(&splits);
    let sum = crate::money::round_fen(totals.medfee_sumamt());
    if crate::money::round_fen(req.medfee_sumamt) != sum {
        return Err(TxError::Refused(format!(
            "费用总额与明细不符: 医疗费总额[{}]，明细合计[{sum}]",
            req.medfee_sumamt
        )));
    }
    let med_type = if req.med_type.is_empty() {
        visit.med_type.as_str()
    } else {
        req.med_type.as_str()
    };
    let bill = Bill {
        person: &person,
        mdtrt_id: &visit.mdtrt_id,
        med_type,
        totals,
        acct_used: req.acct_used_flag == "1",
        date: ctx.today,
        setl_time: ctx.today.datetime_now(),
        balances_upto: None,
    };
    compute(conn, ctx.policies, &bill)
}

/// 2206: the settlement as it would be; nothing changes.
pub fn pre_settle(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: SettleIn = input_part(input, "data")?;
    let computed = prepare(db, ctx, &req)?;
    to_value(&checked(computed.out)?)
}

/// 2207: settle and book it.
pub fn settle(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: SettleIn = input_part(input, "data")?;
    let mut computed = prepare(db, ctx, &req)?;
    computed.out.setlinfo.medins_setl_id = ctx.msgid.to_string();
    computed.out = checked(computed.out)?;
    let tx = db.conn_mut().transaction()?;
    book(&tx, &mut computed, ctx.msgid, &req.chrg_bchno, &ctx.today)?;
    tx.commit()?;
    to_value(&computed.out)
}

/// The own account's balance now.
fn own_balance(conn: &Connection, s: &Settlement) -> Result<Decimal, TxError> {
    accounts::balance(conn, &AccountKey::new(&s.psn_no, &s.insutype), None)
}

fn refuse_unless_settled(s: &Settlement) -> Result<(), TxError> {
    match s.status.as_str() {
        "settled" => Ok(()),
        "refunded" => Err(TxError::Refused(format!(
            "结算ID[{}]已撤销结算，不能重复撤销",
            s.setl_id
        ))),
        _ => Err(TxError::Refused(format!(
            "结算ID[{}]原交易已冲正",
            s.setl_id
        ))),
    }
}

/// 2208: refund a settlement by setl_id.
pub fn refund(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: RefundIn = input_part(input, "data")?;
    let tx = db.conn_mut().transaction()?;
    let original = books::settlement(&tx, &req.setl_id)?
        .filter(|s| s.mdtrt_id == req.mdtrt_id && s.psn_no == req.psn_no)
        .ok_or_else(|| TxError::Refused(format!("结算ID[{}]原结算信息不存在", req.setl_id)))?;
    refuse_unless_settled(&original)?;
    let refund_setl_id = books::new_id(&tx, "S", &ctx.today.compact())?;
    let now = ctx.today.datetime_now();
    move_booked_parts(&tx, &original.setl_id, &ctx.today, Movement::Refund)?;
    books::set_status(
        &tx,
        &original.setl_id,
        "refunded",
        Some((&refund_setl_id, ctx.msgid, &now)),
    )?;
    let mut out = SettleOut {
        setlinfo: original.setlinfo.clone(),
        setldetail: original.setldetail.clone(),
    };
    out.setlinfo.setl_id = refund_setl_id;
    out.setlinfo.setl_time = now;
    out.setlinfo.medins_setl_id = ctx.msgid.to_string();
    out.setlinfo.amounts.balc = own_balance(&tx, &original)?;
    let out = checked(out)?;
    tx.commit()?;
    to_value(&out)
}

/// 2601: reverse a 2207 or a 2208 named by its msgid.
pub fn reverse(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: ReversalIn = input_part(input, "data")?;
    if !REVERSIBLE.contains(&req.oinfno.as_str()) {
        return Err(TxError::Refused(format!(
            "原交易编号[{}]该交易不允许冲正",
            req.oinfno
        )));
    }
    let tx = db.conn_mut().transaction()?;
    let logged = books::logged_infno(&tx, &req.omsgid)?
        .ok_or_else(|| TxError::Refused(format!("原交易不存在: 原发送方报文ID[{}]", req.omsgid)))?;
    if logged != req.oinfno {
        return Err(TxError::Refused(format!(
            "原交易编号[{}]与原交易[{logged}]不符，该交易不允许冲正",
            req.oinfno
        )));
    }
    if books::reversed(&tx, &req.omsgid)? {
        return Err(TxError::Refused(format!(
            "原交易已冲正: 原发送方报文ID[{}]",
            req.omsgid
        )));
    }
    let setl_id = if req.oinfno == SETTLE {
        reverse_settlement(&tx, ctx, &req)?
    } else {
        reverse_refund(&tx, ctx, &req)?
    };
    books::record_reversal(
        &tx,
        &req.omsgid,
        &req.oinfno,
        ctx.msgid,
        &setl_id,
        &ctx.today.datetime_now(),
    )?;
    tx.commit()?;
    Ok(json!({}))
}

fn original_not_found(omsgid: &str) -> TxError {
    TxError::Refused(format!("原交易不存在: 原发送方报文ID[{omsgid}]未产生结算"))
}

fn check_person(s: &Settlement, psn_no: &str) -> Result<(), TxError> {
    if s.psn_no != psn_no {
        return Err(TxError::Refused(format!("人员编号[{psn_no}]与原交易不符")));
    }
    Ok(())
}

/// 2601 of a 2207: the settlement reversed, the accounts credited back, the lines open again.
fn reverse_settlement(
    conn: &Connection,
    ctx: &Ctx<'_>,
    req: &ReversalIn,
) -> Result<String, TxError> {
    let s = books::settlement_by_msgid(conn, &req.omsgid)?
        .ok_or_else(|| original_not_found(&req.omsgid))?;
    check_person(&s, &req.psn_no)?;
    if s.status == "refunded" {
        return Err(TxError::Refused(format!(
            "结算ID[{}]已撤销结算，不能冲正",
            s.setl_id
        )));
    }
    refuse_unless_settled(&s)?;
    move_booked_parts(conn, &s.setl_id, &ctx.today, Movement::Reversal)?;
    books::set_status(conn, &s.setl_id, "reversed", None)?;
    books::reopen_batch(conn, &s.setl_id)?;
    Ok(s.setl_id)
}

/// 2601 of a 2208: the refund undone, the settlement settled again, the accounts debited again.
fn reverse_refund(conn: &Connection, ctx: &Ctx<'_>, req: &ReversalIn) -> Result<String, TxError> {
    let s = books::settlement_by_refund_msgid(conn, &req.omsgid)?
        .filter(|s| s.status == "refunded")
        .ok_or_else(|| original_not_found(&req.omsgid))?;
    check_person(&s, &req.psn_no)?;
    move_booked_parts(conn, &s.setl_id, &ctx.today, Movement::Spend)?;
    books::set_status(conn, &s.setl_id, "settled", None)?;
    Ok(s.setl_id)
}

/// Seeding: an earlier visit of the year (fixtures' `prior_visits`), all in scope, settled
/// by the engine on `date` like a real one and booked with a fixture msgid.
pub fn seed_prior_visit(
    conn: &Connection,
    policies: &SimPolicies,
    psn_no: &str,
    insutype: &str,
    inscp: Decimal,
    date: Date,
) -> Result<(), TxError> {
    let person = person(conn, psn_no, insutype)?;
    let serial = books::next_seq(conn, "fixture_visit")?;
    let mdtrt_id = format!("MFIXTURE{}{serial:06}", date.compact());
    conn.execute(
        "INSERT INTO visits (mdtrt_id, psn_no, insutype, ipt_otp_no, med_type, begntime) \
         VALUES (?1, ?2, ?3, ?1, '11', ?4)",
        rusqlite::params![
            mdtrt_id,
            psn_no,
            insutype,
            format!("{} 10:00:00", date.to_string())
        ],
    )?;
    let bill = Bill {
        person: &person,
        mdtrt_id: &mdtrt_id,
        med_type: "11",
        totals: CatalogueTotals::in_scope_only(inscp),
        acct_used: true,
        date,
        setl_time: format!("{date} 10:00:00"),
        balances_upto: Some(date.to_string()),
    };
    let mut computed = compute(conn, policies, &bill)?;
    // A msgid in the national shape: fixmedins_code(12) + yyyyMMddHHmmss + serial(4).
    let msgid = format!("H00000000000{}100000{:04}", date.compact(), serial % 10_000);
    book(conn, &mut computed, &msgid, "FIXTURE", &date)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residents_pool_fund_differs() {
        assert_eq!(pool_fund("390").0, "390100");
        assert_eq!(pool_fund("310").0, "310100");
    }
}
