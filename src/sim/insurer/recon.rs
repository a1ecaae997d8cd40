//! Reconciliation in the simulator: 3201 对总账 (the insurer's totals of the active
//! settlements in a date range for an insutype and clr_type, compared with the hospital's)
//! and the medcard extension X302 (every settlement of a day, any status, with the msgid of
//! the 2207 that made it — what 3202's detail file would list, so "中心多" rows can be
//! reversed with 2601).

use super::books::{self, Settlement};
use super::context::{Ctx, input_part, to_value};
use super::db::{SimDb, TxError};
use crate::insurer::settlement::{DayDetailIn, DayDetailRow, DayTotalsIn, DayTotalsOut};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// The totals 3201 compares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    medfee_sumamt: Decimal,
    fund_pay_sumamt: Decimal,
    acct_pay: Decimal,
    count: u64,
}

impl Totals {
    fn of(settlements: &[Settlement]) -> Totals {
        settlements.iter().fold(Totals::default(), |t, s| Totals {
            medfee_sumamt: t.medfee_sumamt + s.setlinfo.amounts.medfee_sumamt,
            fund_pay_sumamt: t.fund_pay_sumamt + s.setlinfo.amounts.fund_pay_sumamt,
            acct_pay: t.acct_pay + s.setlinfo.amounts.acct_pay,
            count: t.count + 1,
        })
    }

    /// The differences, in words: "名称: 医药机构 x, 医保中心 y".
    fn differences(&self, hospital: &Totals) -> Vec<String> {
        let money = |name: &str, his: Decimal, ours: Decimal| {
            (crate::money::round_fen(his) != crate::money::round_fen(ours)).then(|| {
                format!(
                    "{name}不符: 医药机构 {}, 医保中心 {}",
                    crate::money::round_fen(his),
                    crate::money::round_fen(ours)
                )
            })
        };
        let count = (hospital.count != self.count).then(|| {
            format!(
                "结算笔数不符: 医药机构 {}, 医保中心 {}",
                hospital.count, self.count
            )
        });
        [
            money("医疗费总额", hospital.medfee_sumamt, self.medfee_sumamt),
            money(
                "基金支付总额",
                hospital.fund_pay_sumamt,
                self.fund_pay_sumamt,
            ),
            money("个人账户支出", hospital.acct_pay, self.acct_pay),
            count,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// 3201: compare the hospital's totals with the insurer's active settlements.
pub fn day_totals(db: &mut SimDb, _ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: DayTotalsIn = input_part(input, "data")?;
    if req.stmt_begndate > req.stmt_enddate {
        return Err(TxError::Refused("对账开始日期不能晚于结束日期".into()));
    }
    let active: Vec<Settlement> =
        books::settlements_between(db.conn(), &req.stmt_begndate, &req.stmt_enddate)?
            .into_iter()
            .filter(|s| {
                s.status == "settled"
                    && s.insutype == req.insutype
                    && s.setlinfo.clr_type == req.clr_type
            })
            .collect();
    let hospital = Totals {
        medfee_sumamt: req.medfee_sumamt,
        fund_pay_sumamt: req.fund_pay_sumamt,
        acct_pay: req.acct_pay,
        count: req.fixmedins_setl_cnt,
    };
    let differences = Totals::of(&active).differences(&hospital);
    let out = DayTotalsOut {
        setl_optins: req.setl_optins,
        stmt_rslt: if differences.is_empty() { "0" } else { "1" }.to_string(),
        stmt_rslt_dscr: if differences.is_empty() {
            "对平".to_string()
        } else {
            format!("不平: {}", differences.join("; "))
        },
    };
    Ok(json!({ "stmtinfo": to_value(&out)? }))
}

fn detail_row(s: &Settlement) -> DayDetailRow {
    let i = &s.setlinfo;
    DayDetailRow {
        setl_id: s.setl_id.clone(),
        mdtrt_id: s.mdtrt_id.clone(),
        psn_no: s.psn_no.clone(),
        msgid: s.msgid.clone(),
        medfee_sumamt: i.amounts.medfee_sumamt,
        fund_pay_sumamt: i.amounts.fund_pay_sumamt,
        acct_pay: i.amounts.acct_pay,
        psn_cash_pay: i.amounts.psn_cash_pay,
        refd_setl_flag: if s.status == "refunded" { "1" } else { "0" }.to_string(),
        revs_flag: if s.status == "reversed" { "1" } else { "0" }.to_string(),
        setl_time: i.setl_time.clone(),
    }
}

/// X302: every settlement of a day, any status.
pub fn day_detail(db: &mut SimDb, _ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: DayDetailIn = input_part(input, "data")?;
    crate::clock::Date::parse(&req.stmt_date).map_err(|_| {
        TxError::Refused(format!(
            "对账日期[{}]格式错误，应为yyyy-MM-dd",
            req.stmt_date
        ))
    })?;
    let rows: Vec<DayDetailRow> =
        books::settlements_between(db.conn(), &req.stmt_date, &req.stmt_date)?
            .iter()
            .map(detail_row)
            .collect();
    Ok(json!({ "detail": to_value(&rows)? }))
}
