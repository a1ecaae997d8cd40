//! Reconciliation in the simulator, over the books of the institution that asks (the
//! settlements whose 2207 msgid begins with its fixmedins_code): 3201 对总账 (the insurer's
//! totals of the active settlements in a date range for an insutype and clr_type, compared
//! with the hospital's), 3202 对明细账 (the detail file uploaded with 9101 compared row by row
//! with the books of the date range; the rows that do not balance go into a zipped result
//! file for 9102, with the msgid of each settlement's 2207 for 2601), and the medcard
//! extension X302 (every settlement of a day, any status, inline — a simulator convenience).

use super::books::{self, Settlement};
use super::context::{Ctx, input_part, to_value};
use super::db::{SimDb, TxError};
use super::files::{self, Kind};
use crate::clock::Date;
use crate::insurer::files::{
    BookEntry, DetailRow, ResultRow, Standing, compare_details, unzip_text, zip_text,
};
use crate::insurer::settlement::{
    DayDetailIn, DayDetailRow, DayTotalsIn, DayTotalsOut, DetailFileInfo, DetailReconcileIn,
};
use crate::money::two_places;
use rusqlite::Connection;
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

/// The date range `[begin, end]`, refused unless both are dates in order.
fn date_range(begin: &str, end: &str) -> Result<(), TxError> {
    for date in [begin, end] {
        Date::parse(date)
            .map_err(|_| TxError::Refused(format!("对账日期[{date}]格式错误，应为yyyy-MM-dd")))?;
    }
    if begin > end {
        return Err(TxError::Refused("对账开始日期不能晚于结束日期".into()));
    }
    Ok(())
}

/// The institution's settlements dated within `[begin, end]`, any status: those whose 2207
/// msgid (fixmedins_code + time + sequence) is the institution's.
fn institution_settlements(
    conn: &Connection,
    ctx: &Ctx<'_>,
    begin: &str,
    end: &str,
) -> Result<Vec<Settlement>, TxError> {
    Ok(books::settlements_between(conn, begin, end)?
        .into_iter()
        .filter(|s| s.msgid.starts_with(ctx.fixmedins_code))
        .collect())
}

/// 3201: compare the hospital's totals with the insurer's active settlements.
pub fn day_totals(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: DayTotalsIn = input_part(input, "data")?;
    date_range(&req.totals.stmt_begndate, &req.totals.stmt_enddate)?;
    let active: Vec<Settlement> = institution_settlements(
        db.conn(),
        ctx,
        &req.totals.stmt_begndate,
        &req.totals.stmt_enddate,
    )?
    .into_iter()
    .filter(|s| {
        s.status == "settled" && s.insutype == req.insutype && s.setlinfo.clr_type == req.clr_type
    })
    .collect();
    let hospital = Totals {
        medfee_sumamt: req.totals.medfee_sumamt,
        fund_pay_sumamt: req.totals.fund_pay_sumamt,
        acct_pay: req.acct_pay,
        count: req.totals.fixmedins_setl_cnt,
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

/// 3202: the uploaded detail file against the institution's books of the date range; the
/// rows that do not balance go into a result file.
pub fn detail_reconcile(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: DetailReconcileIn = input_part(input, "data")?;
    date_range(&req.totals.stmt_begndate, &req.totals.stmt_enddate)?;
    let conn = db.conn();
    let upload = files::usable(conn, ctx, Kind::Upload, &req.file_qury_no)?;
    let rows = unzip_text(&upload.bytes)
        .and_then(|text| DetailRow::parse_file(&text))
        .map_err(|e| TxError::Refused(format!("对账明细文件解析失败: {e}")))?;
    check_file_totals(&req, &rows)?;
    let books: Vec<BookEntry> = institution_settlements(
        conn,
        ctx,
        &req.totals.stmt_begndate,
        &req.totals.stmt_enddate,
    )?
    .iter()
    .map(book_entry)
    .collect();
    let results = compare_details(&rows, &books);
    let filename = format!("{}_3202.txt.zip", req.file_qury_no);
    let text = ResultRow::file_text(&results);
    let zipped = zip_text(&format!("{}_3202.txt", req.file_qury_no), &text)?;
    let stored = files::store(conn, ctx, Kind::Result, &filename, &zipped)?;
    let out = DetailFileInfo {
        file_qury_no: stored.file_qury_no,
        filename: stored.filename,
        dld_endtime: stored.dld_endtime,
    };
    Ok(json!({ "fileinfo": to_value(&out)? }))
}

/// The file's settlements that stand must add up to the totals 3202 was sent with.
fn check_file_totals(req: &DetailReconcileIn, rows: &[DetailRow]) -> Result<(), TxError> {
    let standing: Vec<&DetailRow> = rows.iter().filter(|r| r.refd_setl_flag != "1").collect();
    let medfee: Decimal = standing.iter().map(|r| r.medfee_sumamt).sum();
    let fund: Decimal = standing.iter().map(|r| r.fund_pay_sumamt).sum();
    let differences: Vec<String> = [
        (standing.len() as u64 != req.totals.fixmedins_setl_cnt).then(|| {
            format!(
                "结算笔数 文件 {}, 报文 {}",
                standing.len(),
                req.totals.fixmedins_setl_cnt
            )
        }),
        (medfee != req.totals.medfee_sumamt).then(|| {
            format!(
                "医疗费总额 文件 {}, 报文 {}",
                two_places(medfee),
                two_places(req.totals.medfee_sumamt)
            )
        }),
        (fund != req.totals.fund_pay_sumamt).then(|| {
            format!(
                "基金支付总额 文件 {}, 报文 {}",
                two_places(fund),
                two_places(req.totals.fund_pay_sumamt)
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if differences.is_empty() {
        Ok(())
    } else {
        Err(TxError::Refused(format!(
            "对账明细文件与汇总数据不一致: {}",
            differences.join("; ")
        )))
    }
}

/// A settlement as 3202 compares it.
fn book_entry(s: &Settlement) -> BookEntry {
    let amounts = &s.setlinfo.amounts;
    BookEntry {
        setl_id: s.setl_id.clone(),
        mdtrt_id: s.mdtrt_id.clone(),
        psn_no: s.psn_no.clone(),
        msgid: s.msgid.clone(),
        medfee_sumamt: amounts.medfee_sumamt,
        fund_pay_sumamt: amounts.fund_pay_sumamt,
        acct_pay: amounts.acct_pay,
        standing: match s.status.as_str() {
            "refunded" => Standing::Refunded,
            "reversed" => Standing::Reversed,
            _ => Standing::Settled,
        },
    }
}
