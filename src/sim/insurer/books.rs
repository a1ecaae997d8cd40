//! The simulator's settlement books in SQLite: visits (2201), fee lines with their per-line
//! split and batch (2204), settlements (2207, with every amount, the request msgid, status
//! settled | refunded | reversed and the refund's setl_id and msgid), each settlement's
//! account parts (own account, relatives' accounts), reversals (2601) and id sequences.
//! The personal-account ledger and family bindings are in [`super::accounts`].

use super::db::{TxError, select_all};
use crate::insurer::settlement::{SetlDetail, Setlinfo};
use crate::settle::lines::LineSplit;
use rusqlite::{Connection, OptionalExtension, Row, params};
use rust_decimal::Decimal;
use std::str::FromStr;

/// The tables (created with the rest of the database).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sim_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS visits (
  mdtrt_id TEXT PRIMARY KEY, psn_no TEXT NOT NULL, insutype TEXT NOT NULL,
  ipt_otp_no TEXT NOT NULL UNIQUE, med_type TEXT NOT NULL DEFAULT '', begntime TEXT NOT NULL,
  mdtrt_cert_type TEXT NOT NULL DEFAULT '', mdtrt_cert_no TEXT NOT NULL DEFAULT '',
  atddr_no TEXT NOT NULL DEFAULT '', dr_name TEXT NOT NULL DEFAULT '',
  dept_code TEXT NOT NULL DEFAULT '', dept_name TEXT NOT NULL DEFAULT '',
  caty TEXT NOT NULL DEFAULT '', dise_codg TEXT NOT NULL DEFAULT '',
  dise_name TEXT NOT NULL DEFAULT '', main_cond_dscr TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'registered');
CREATE TABLE IF NOT EXISTS fee_lines (
  mdtrt_id TEXT NOT NULL, feedetl_sn TEXT NOT NULL, chrg_bchno TEXT NOT NULL,
  line_json TEXT NOT NULL, split_json TEXT NOT NULL, det_item_fee_sumamt TEXT NOT NULL,
  setl_id TEXT, PRIMARY KEY (mdtrt_id, feedetl_sn));
CREATE TABLE IF NOT EXISTS settlements (
  setl_id TEXT PRIMARY KEY, msgid TEXT NOT NULL UNIQUE, mdtrt_id TEXT NOT NULL,
  chrg_bchno TEXT NOT NULL, psn_no TEXT NOT NULL, insutype TEXT NOT NULL,
  clr_type TEXT NOT NULL, setl_date TEXT NOT NULL, setl_time TEXT NOT NULL,
  medfee_sumamt TEXT NOT NULL, inscp_scp_amt TEXT NOT NULL, fund_pay_sumamt TEXT NOT NULL,
  acct_pay TEXT NOT NULL, acct_mulaid_pay TEXT NOT NULL, psn_cash_pay TEXT NOT NULL,
  setlinfo_json TEXT NOT NULL, setldetail_json TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'settled', refund_setl_id TEXT, refund_msgid TEXT,
  refund_time TEXT);
CREATE INDEX IF NOT EXISTS settlements_psn ON settlements (psn_no, insutype, setl_date);
CREATE INDEX IF NOT EXISTS settlements_refund ON settlements (refund_msgid);
CREATE TABLE IF NOT EXISTS settlement_parts (
  setl_id TEXT NOT NULL, psn_no TEXT NOT NULL, insutype TEXT NOT NULL, amount TEXT NOT NULL,
  mulaid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reversals (
  omsgid TEXT PRIMARY KEY, oinfno TEXT NOT NULL, msgid TEXT NOT NULL, setl_id TEXT NOT NULL,
  rev_time TEXT NOT NULL);
";

/// Column `idx` of a row: money, stored as text.
pub fn money_at(r: &Row<'_>, idx: usize) -> rusqlite::Result<Decimal> {
    let text: String = r.get(idx)?;
    Decimal::from_str(&text).map_err(|e| unreadable(idx, e))
}

/// Column `idx` of a row: money or NULL.
pub fn opt_money_at(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Decimal>> {
    let text: Option<String> = r.get(idx)?;
    text.map(|text| Decimal::from_str(&text).map_err(|e| unreadable(idx, e)))
        .transpose()
}

/// Column `idx` of a row: a value stored as JSON.
fn json_at<T: serde::de::DeserializeOwned>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text).map_err(|e| unreadable(idx, e))
}

/// A text column that does not read back as what was stored there.
fn unreadable(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

/// Money as the database stores it: two places.
pub fn money_text(d: Decimal) -> String {
    crate::money::two_places(d)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, TxError> {
    Ok(serde_json::to_string(value)?)
}

/// The next number of a named sequence (1, 2, …).
pub fn next_seq(conn: &Connection, name: &str) -> Result<u64, TxError> {
    let key = format!("seq:{name}");
    let current: Option<String> = conn
        .query_row("SELECT value FROM sim_meta WHERE key = ?1", [&key], |r| {
            r.get(0)
        })
        .optional()?;
    let next = current.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
    conn.execute(
        "INSERT INTO sim_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, next.to_string()],
    )?;
    Ok(next)
}

/// A new id: prefix + yyyyMMdd + 10-digit serial (19 characters, within C(30)).
pub fn new_id(conn: &Connection, prefix: &str, day_compact: &str) -> Result<String, TxError> {
    let n = next_seq(conn, prefix)? % 10_000_000_000;
    Ok(format!("{prefix}{day_compact}{n:010}"))
}

/// A visit (2201).
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub mdtrt_id: String,
    pub psn_no: String,
    pub insutype: String,
    pub ipt_otp_no: String,
    pub med_type: String,
    pub status: String,
    /// 就诊凭证类型 of the registration (01 e-voucher, 02 ID number, 03 card).
    pub mdtrt_cert_type: String,
}

const VISIT_COLUMNS: &str =
    "mdtrt_id, psn_no, insutype, ipt_otp_no, med_type, status, mdtrt_cert_type";

fn visit_row(r: &Row<'_>) -> rusqlite::Result<Visit> {
    Ok(Visit {
        mdtrt_id: r.get(0)?,
        psn_no: r.get(1)?,
        insutype: r.get(2)?,
        ipt_otp_no: r.get(3)?,
        med_type: r.get(4)?,
        status: r.get(5)?,
        mdtrt_cert_type: r.get(6)?,
    })
}

pub fn visit(conn: &Connection, mdtrt_id: &str) -> Result<Option<Visit>, TxError> {
    let sql = format!("SELECT {VISIT_COLUMNS} FROM visits WHERE mdtrt_id = ?1");
    Ok(conn.query_row(&sql, [mdtrt_id], visit_row).optional()?)
}

pub fn visit_by_ipt_otp_no(conn: &Connection, ipt_otp_no: &str) -> Result<Option<Visit>, TxError> {
    let sql = format!("SELECT {VISIT_COLUMNS} FROM visits WHERE ipt_otp_no = ?1");
    Ok(conn.query_row(&sql, [ipt_otp_no], visit_row).optional()?)
}

/// A stored fee line.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLine {
    pub feedetl_sn: String,
    pub chrg_bchno: String,
    /// The 2204 line as received (canonical JSON), for the idempotency check.
    pub line_json: String,
    pub split: LineSplit,
    pub setl_id: Option<String>,
}

/// Lines of a visit, all or one batch, in upload order.
pub fn lines(
    conn: &Connection,
    mdtrt_id: &str,
    chrg_bchno: Option<&str>,
) -> Result<Vec<StoredLine>, TxError> {
    select_all(
        conn,
        "SELECT feedetl_sn, chrg_bchno, line_json, split_json, setl_id FROM fee_lines \
         WHERE mdtrt_id = ?1 AND (?2 IS NULL OR chrg_bchno = ?2) ORDER BY rowid",
        params![mdtrt_id, chrg_bchno],
        stored_line,
    )
}

fn stored_line(r: &Row<'_>) -> rusqlite::Result<StoredLine> {
    Ok(StoredLine {
        feedetl_sn: r.get(0)?,
        chrg_bchno: r.get(1)?,
        line_json: r.get(2)?,
        split: json_at(r, 3)?,
        setl_id: r.get(4)?,
    })
}

/// One stored line of a visit by its feedetl_sn, if any.
pub fn line(
    conn: &Connection,
    mdtrt_id: &str,
    feedetl_sn: &str,
) -> Result<Option<StoredLine>, TxError> {
    let mut stmt = conn.prepare_cached(
        "SELECT feedetl_sn, chrg_bchno, line_json, split_json, setl_id FROM fee_lines \
         WHERE mdtrt_id = ?1 AND feedetl_sn = ?2",
    )?;
    Ok(stmt
        .query_row(params![mdtrt_id, feedetl_sn], stored_line)
        .optional()?)
}

/// The batches of a visit with a settled line.
pub fn settled_batches(conn: &Connection, mdtrt_id: &str) -> Result<Vec<String>, TxError> {
    select_all(
        conn,
        "SELECT DISTINCT chrg_bchno FROM fee_lines WHERE mdtrt_id = ?1 AND setl_id IS NOT NULL",
        [mdtrt_id],
        |r| r.get(0),
    )
}

pub fn insert_line(
    conn: &Connection,
    mdtrt_id: &str,
    chrg_bchno: &str,
    line_json: &str,
    split: &LineSplit,
) -> Result<(), TxError> {
    conn.prepare_cached(
        "INSERT INTO fee_lines (mdtrt_id, feedetl_sn, chrg_bchno, line_json, split_json, \
         det_item_fee_sumamt) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        mdtrt_id,
        split.feedetl_sn,
        chrg_bchno,
        line_json,
        to_json(split)?,
        money_text(split.det_item_fee_sumamt)
    ])?;
    Ok(())
}

/// A stored settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub setl_id: String,
    pub msgid: String,
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    pub psn_no: String,
    pub insutype: String,
    pub setl_date: String,
    pub setlinfo: Setlinfo,
    pub setldetail: Vec<SetlDetail>,
    /// settled | refunded | reversed.
    pub status: String,
    pub refund_setl_id: Option<String>,
    pub refund_msgid: Option<String>,
}

const SETTLEMENT_COLUMNS: &str = "setl_id, msgid, mdtrt_id, chrg_bchno, psn_no, insutype, \
     setl_date, setlinfo_json, setldetail_json, status, refund_setl_id, refund_msgid";

fn settlement_rows(
    conn: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Settlement>, TxError> {
    let sql = format!("SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE {filter} ORDER BY rowid");
    select_all(conn, &sql, args, |r| {
        Ok(Settlement {
            setl_id: r.get(0)?,
            msgid: r.get(1)?,
            mdtrt_id: r.get(2)?,
            chrg_bchno: r.get(3)?,
            psn_no: r.get(4)?,
            insutype: r.get(5)?,
            setl_date: r.get(6)?,
            setlinfo: json_at(r, 7)?,
            setldetail: json_at(r, 8)?,
            status: r.get(9)?,
            refund_setl_id: r.get(10)?,
            refund_msgid: r.get(11)?,
        })
    })
}

fn one(mut rows: Vec<Settlement>) -> Option<Settlement> {
    rows.pop()
}

pub fn settlement(conn: &Connection, setl_id: &str) -> Result<Option<Settlement>, TxError> {
    Ok(one(settlement_rows(conn, "setl_id = ?1", &[&setl_id])?))
}

/// The settlement a 2207 with this msgid made.
pub fn settlement_by_msgid(conn: &Connection, msgid: &str) -> Result<Option<Settlement>, TxError> {
    Ok(one(settlement_rows(conn, "msgid = ?1", &[&msgid])?))
}

/// The settlement a 2208 with this msgid refunded (while the refund stands).
pub fn settlement_by_refund_msgid(
    conn: &Connection,
    msgid: &str,
) -> Result<Option<Settlement>, TxError> {
    Ok(one(settlement_rows(conn, "refund_msgid = ?1", &[&msgid])?))
}

/// Settlements dated within `[from, to]` (`yyyy-MM-dd`), any status.
pub fn settlements_between(
    conn: &Connection,
    from: &str,
    to: &str,
) -> Result<Vec<Settlement>, TxError> {
    settlement_rows(conn, "setl_date BETWEEN ?1 AND ?2", &[&from, &to])
}

/// Year-to-date sums (in-scope amount, fund pay) of a person's active settlements dated
/// within `[from, to]`.
pub fn active_sums(
    conn: &Connection,
    psn_no: &str,
    insutype: &str,
    from: &str,
    to: &str,
) -> Result<(Decimal, Decimal), TxError> {
    let rows = select_all(
        conn,
        "SELECT inscp_scp_amt, fund_pay_sumamt FROM settlements WHERE psn_no = ?1 \
         AND insutype = ?2 AND status = 'settled' AND setl_date BETWEEN ?3 AND ?4",
        params![psn_no, insutype, from, to],
        |r| Ok((money_at(r, 0)?, money_at(r, 1)?)),
    )?;
    Ok(rows
        .iter()
        .fold((Decimal::ZERO, Decimal::ZERO), |(inscp, fund), row| {
            (inscp + row.0, fund + row.1)
        }))
}

/// Where a settlement's account payment came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPart {
    pub psn_no: String,
    pub insutype: String,
    pub amount: Decimal,
    /// A relative's account (家庭共济).
    pub mulaid: bool,
}

/// A new settlement row with its account parts.
pub fn insert_settlement(
    conn: &Connection,
    s: &Settlement,
    parts: &[AccountPart],
) -> Result<(), TxError> {
    let i = &s.setlinfo;
    conn.execute(
        "INSERT INTO settlements (setl_id, msgid, mdtrt_id, chrg_bchno, psn_no, insutype, \
         clr_type, setl_date, setl_time, medfee_sumamt, inscp_scp_amt, fund_pay_sumamt, \
         acct_pay, acct_mulaid_pay, psn_cash_pay, setlinfo_json, setldetail_json, status) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            s.setl_id,
            s.msgid,
            s.mdtrt_id,
            s.chrg_bchno,
            s.psn_no,
            s.insutype,
            i.clr_type,
            s.setl_date,
            i.setl_time,
            money_text(i.amounts.medfee_sumamt),
            money_text(i.amounts.catalogue.inscp_scp_amt),
            money_text(i.amounts.fund_pay_sumamt),
            money_text(i.amounts.acct_pay),
            money_text(i.amounts.acct_mulaid_pay),
            money_text(i.amounts.psn_cash_pay),
            to_json(i)?,
            to_json(&s.setldetail)?,
            s.status,
        ],
    )?;
    for part in parts {
        conn.execute(
            "INSERT INTO settlement_parts (setl_id, psn_no, insutype, amount, mulaid) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                s.setl_id,
                part.psn_no,
                part.insutype,
                money_text(part.amount),
                part.mulaid
            ],
        )?;
    }
    Ok(())
}

pub fn parts(conn: &Connection, setl_id: &str) -> Result<Vec<AccountPart>, TxError> {
    select_all(
        conn,
        "SELECT psn_no, insutype, amount, mulaid FROM settlement_parts WHERE setl_id = ?1 ORDER BY rowid",
        [setl_id],
        |r| {
            Ok(AccountPart {
                psn_no: r.get(0)?,
                insutype: r.get(1)?,
                amount: money_at(r, 2)?,
                mulaid: r.get(3)?,
            })
        },
    )
}

/// Mark a batch's open lines as settled by `setl_id`.
pub fn close_batch(
    conn: &Connection,
    mdtrt_id: &str,
    chrg_bchno: &str,
    setl_id: &str,
) -> Result<usize, TxError> {
    Ok(conn.execute(
        "UPDATE fee_lines SET setl_id = ?3 WHERE mdtrt_id = ?1 AND chrg_bchno = ?2 AND setl_id IS NULL",
        params![mdtrt_id, chrg_bchno, setl_id],
    )?)
}

/// Free the lines a settlement closed (after a reversal).
pub fn reopen_batch(conn: &Connection, setl_id: &str) -> Result<usize, TxError> {
    Ok(conn.execute(
        "UPDATE fee_lines SET setl_id = NULL WHERE setl_id = ?1",
        [setl_id],
    )?)
}

/// Settlements planted in bulk, in one transaction, with no account parts (`medcard bench
/// hospital`'s day of the institution's settlements); returns how many.
pub fn plant_settlements(
    conn: &mut Connection,
    settlements: &[Settlement],
) -> Result<usize, TxError> {
    let tx = conn.transaction()?;
    for s in settlements {
        insert_settlement(&tx, s, &[])?;
    }
    tx.commit()?;
    Ok(settlements.len())
}

/// A settlement's new status, and its refund (set, or cleared with `None`).
pub fn set_status(
    conn: &Connection,
    setl_id: &str,
    status: &str,
    refund: Option<(&str, &str, &str)>,
) -> Result<(), TxError> {
    let (refund_setl_id, refund_msgid, refund_time) = match refund {
        Some((id, msgid, time)) => (Some(id), Some(msgid), Some(time)),
        None => (None, None, None),
    };
    conn.execute(
        "UPDATE settlements SET status = ?2, refund_setl_id = ?3, refund_msgid = ?4, \
         refund_time = ?5 WHERE setl_id = ?1",
        params![setl_id, status, refund_setl_id, refund_msgid, refund_time],
    )?;
    Ok(())
}

/// Whether a msgid has already been reversed.
pub fn reversed(conn: &Connection, omsgid: &str) -> Result<bool, TxError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM reversals WHERE omsgid = ?1",
        [omsgid],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

pub fn record_reversal(
    conn: &Connection,
    omsgid: &str,
    oinfno: &str,
    msgid: &str,
    setl_id: &str,
    rev_time: &str,
) -> Result<(), TxError> {
    conn.execute(
        "INSERT INTO reversals (omsgid, oinfno, msgid, setl_id, rev_time) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![omsgid, oinfno, msgid, setl_id, rev_time],
    )?;
    Ok(())
}

/// The infno a msgid was received with, from msg_log (the first time).
pub fn logged_infno(conn: &Connection, msgid: &str) -> Result<Option<String>, TxError> {
    Ok(conn
        .query_row(
            "SELECT infno FROM msg_log WHERE msgid = ?1 ORDER BY id LIMIT 1",
            [msgid],
            |r| r.get(0),
        )
        .optional()?)
}
