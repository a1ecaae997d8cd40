//! Personal accounts (个人账户) in the simulator: a ledger per account (person + insutype) whose
//! balance is the sum of its entries, the family bindings (家庭共济) that let a payer's account
//! pay a beneficiary's part, and the year's bookkeeping: monthly credits (`credit_month`) and
//! year-end interest with the carry-over (`year_end`), computed by `crate::settle::ledger`.
//!
//! Entry kinds: `opening` (a fixture balance), `carried_over`, `credit` (monthly
//! contribution), `interest`, `spend` / `mulaid_spend` (a settlement's own / relative's part,
//! negative), `refund` / `mulaid_refund` (2208 gives them back), `reversal` (2601 of a 2207
//! gives them back), `adjust` (admin `set_balc`). Opening and carried-over entries are dated
//! 31 December of the year before, so they count as carried-over money for interest.

use super::books::{money_at, money_text, opt_money_at};
use super::db::{Internal, TxError, select_all};
use super::fixtures::{BindingFixture, PersonFixture};
use super::policies::SimPolicies;
use crate::clock::Date;
use crate::settle::ledger::{LedgerEntry, month_ends, monthly_credit, year_end_interest};
use rusqlite::{Connection, params};
use rust_decimal::Decimal;

/// An account: a person's, for one insutype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey {
    pub psn_no: String,
    pub insutype: String,
}

impl AccountKey {
    pub fn new(psn_no: &str, insutype: &str) -> AccountKey {
        AccountKey {
            psn_no: psn_no.to_string(),
            insutype: insutype.to_string(),
        }
    }
}

/// What a ledger entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Opening,
    CarriedOver,
    Credit,
    Interest,
    Spend,
    MulaidSpend,
    Refund,
    MulaidRefund,
    Reversal,
    Adjust,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Opening => "opening",
            EntryKind::CarriedOver => "carried_over",
            EntryKind::Credit => "credit",
            EntryKind::Interest => "interest",
            EntryKind::Spend => "spend",
            EntryKind::MulaidSpend => "mulaid_spend",
            EntryKind::Refund => "refund",
            EntryKind::MulaidRefund => "mulaid_refund",
            EntryKind::Reversal => "reversal",
            EntryKind::Adjust => "adjust",
        }
    }
}

/// The tables (created with the rest of the database).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
  psn_no TEXT NOT NULL, insutype TEXT NOT NULL, wage TEXT, PRIMARY KEY (psn_no, insutype));
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT, psn_no TEXT NOT NULL, insutype TEXT NOT NULL,
  entry_date TEXT NOT NULL, kind TEXT NOT NULL, amount TEXT NOT NULL, setl_id TEXT);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger (psn_no, insutype, entry_date);
CREATE TABLE IF NOT EXISTS bindings (
  ord INTEGER PRIMARY KEY AUTOINCREMENT, payer_psn_no TEXT NOT NULL,
  payer_insutype TEXT NOT NULL, beneficiary_psn_no TEXT NOT NULL,
  UNIQUE (payer_psn_no, beneficiary_psn_no));
";

/// Post an entry (amount signed: + into the account, − out of it). Zero amounts are skipped.
pub fn post(
    conn: &Connection,
    account: &AccountKey,
    date: &str,
    kind: EntryKind,
    amount: Decimal,
    setl_id: Option<&str>,
) -> Result<(), TxError> {
    if amount.is_zero() {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO ledger (psn_no, insutype, entry_date, kind, amount, setl_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            account.psn_no,
            account.insutype,
            date,
            kind.as_str(),
            money_text(amount),
            setl_id
        ],
    )?;
    Ok(())
}

/// Entries of an account dated on or before `upto` (all when `None`): (date, kind, amount).
fn entries(
    conn: &Connection,
    account: &AccountKey,
    upto: Option<&str>,
) -> Result<Vec<(String, String, Decimal)>, TxError> {
    select_all(
        conn,
        "SELECT entry_date, kind, amount FROM ledger WHERE psn_no = ?1 AND insutype = ?2 \
         AND (?3 IS NULL OR entry_date <= ?3) ORDER BY entry_date, id",
        params![account.psn_no, account.insutype, upto],
        |r| Ok((r.get(0)?, r.get(1)?, money_at(r, 2)?)),
    )
}

/// The balance: every entry (`upto` = `None`), or those dated on or before `upto`.
pub fn balance(
    conn: &Connection,
    account: &AccountKey,
    upto: Option<&str>,
) -> Result<Decimal, TxError> {
    let sum = entries(conn, account, upto)?
        .iter()
        .fold(Decimal::ZERO, |s, (_, _, amount)| s + amount);
    Ok(crate::money::round_fen(sum))
}

/// Set the balance to `target` with an adjust entry (admin `set_balc`).
pub fn set_balance(
    conn: &Connection,
    account: &AccountKey,
    target: Decimal,
    date: &str,
) -> Result<(), TxError> {
    let current = balance(conn, account, None)?;
    post(
        conn,
        account,
        date,
        EntryKind::Adjust,
        target - current,
        None,
    )
}

/// A beneficiary's payers' accounts, in binding order.
pub fn payers(conn: &Connection, beneficiary: &str) -> Result<Vec<AccountKey>, TxError> {
    select_all(
        conn,
        "SELECT payer_psn_no, payer_insutype FROM bindings WHERE beneficiary_psn_no = ?1 ORDER BY ord",
        [beneficiary],
        |r| {
            Ok(AccountKey {
                psn_no: r.get(0)?,
                insutype: r.get(1)?,
            })
        },
    )
}

/// Bind a payer's account to a beneficiary (after the existing bindings).
pub fn bind(conn: &Connection, payer: &AccountKey, beneficiary: &str) -> Result<(), TxError> {
    let exists = |psn: &str| -> Result<bool, TxError> {
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM persons WHERE psn_no = ?1",
            [psn],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    };
    for psn in [payer.psn_no.as_str(), beneficiary] {
        if !exists(psn)? {
            return Err(TxError::Refused(format!("人员编号[{psn}]不存在")));
        }
    }
    conn.execute(
        "INSERT OR IGNORE INTO bindings (payer_psn_no, payer_insutype, beneficiary_psn_no) VALUES (?1, ?2, ?3)",
        params![payer.psn_no, payer.insutype, beneficiary],
    )?;
    Ok(())
}

/// Remember an account's monthly wage (for `credit_month`).
pub fn set_wage(conn: &Connection, account: &AccountKey, wage: Decimal) -> Result<(), TxError> {
    conn.execute(
        "INSERT INTO accounts (psn_no, insutype, wage) VALUES (?1, ?2, ?3) \
         ON CONFLICT (psn_no, insutype) DO UPDATE SET wage = excluded.wage",
        params![account.psn_no, account.insutype, money_text(wage)],
    )?;
    Ok(())
}

/// An account with what the policy choice needs.
struct Holder {
    account: AccountKey,
    insuplc_admdvs: String,
    wage: Option<Decimal>,
}

/// Every insurance row with its region and wage (if any).
fn holders(conn: &Connection) -> Result<Vec<Holder>, TxError> {
    select_all(
        conn,
        "SELECT p.psn_no, i.insutype, i.insuplc_admdvs, a.wage FROM insuinfo i \
         JOIN persons p ON p.certno = i.certno \
         LEFT JOIN accounts a ON a.psn_no = p.psn_no AND a.insutype = i.insutype \
         ORDER BY p.psn_no, i.insutype",
        [],
        |r| {
            Ok(Holder {
                account: AccountKey {
                    psn_no: r.get(0)?,
                    insutype: r.get(1)?,
                },
                insuplc_admdvs: r.get(2)?,
                wage: opt_money_at(r, 3)?,
            })
        },
    )
}

/// One account's change, for the admin answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Posted {
    pub psn_no: String,
    pub insutype: String,
    #[serde(with = "crate::money")]
    pub amount: Decimal,
    #[serde(with = "crate::money")]
    pub balc: Decimal,
}

/// Posts `amount` (no settlement) and says what it did, with the balance after.
fn post_to(
    conn: &Connection,
    account: AccountKey,
    date: &str,
    kind: EntryKind,
    amount: Decimal,
) -> Result<Posted, TxError> {
    post(conn, &account, date, kind, amount, None)?;
    Ok(Posted {
        balc: balance(conn, &account, None)?,
        psn_no: account.psn_no,
        insutype: account.insutype,
        amount,
    })
}

/// Credit month `month` of `year` to every account with a wage: the policy's monthly credit,
/// dated the 1st of that month.
pub fn credit_month(
    conn: &Connection,
    policies: &SimPolicies,
    year: i32,
    month: u32,
) -> Result<Vec<Posted>, TxError> {
    let date = Date::new(year, month, 1)
        .ok_or_else(|| TxError::Refused(format!("月份[{month}]不正确")))?
        .to_string();
    let mut posted = Vec::new();
    for holder in holders(conn)? {
        let Some(wage) = holder.wage else { continue };
        let policy = policies.for_person(&holder.insuplc_admdvs, &holder.account.insutype);
        let amount = monthly_credit(policy, wage);
        posted.push(post_to(
            conn,
            holder.account,
            &date,
            EntryKind::Credit,
            amount,
        )?);
    }
    Ok(posted)
}

/// The ledger of `year` as the interest rule reads it: the balance carried into the year and
/// the year's movements by month. Money coming back (refund, reversal, a positive adjust)
/// counts as a credit; interest entries are left out.
pub fn year_entries(
    conn: &Connection,
    account: &AccountKey,
    year: i32,
) -> Result<(Decimal, Vec<LedgerEntry>), TxError> {
    let start = Date::year_start(year);
    let mut carried = Decimal::ZERO;
    let mut moves = Vec::new();
    for (date, kind, amount) in entries(conn, account, Some(&Date::year_end(year)))? {
        if date < start {
            carried += amount;
            continue;
        }
        if kind == EntryKind::Interest.as_str() {
            continue;
        }
        let month = Date::parse(&date).map(|d| d.month()).unwrap_or(12);
        moves.push(if amount.is_sign_negative() {
            LedgerEntry::Spend {
                month,
                amount: -amount,
            }
        } else {
            LedgerEntry::Credit { month, amount }
        });
    }
    Ok((carried, moves))
}

fn year_closed_key(year: i32) -> String {
    format!("year_closed:{year}")
}

/// Close `year`: pay every account its interest for the year (month-product method, the
/// person's policy's rates), dated 31 December, so the balance carries over into the next
/// year. Refused when the year is already closed.
pub fn year_end(
    conn: &Connection,
    policies: &SimPolicies,
    year: i32,
) -> Result<Vec<Posted>, TxError> {
    let key = year_closed_key(year);
    let closed: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sim_meta WHERE key = ?1",
        [&key],
        |r| r.get(0),
    )?;
    if closed > 0 {
        return Err(TxError::Refused(format!("{year}年度已结转")));
    }
    let date = Date::year_end(year);
    let mut posted = Vec::new();
    for holder in holders(conn)? {
        let (carried, moves) = year_entries(conn, &holder.account, year)?;
        let policy = policies.for_person(&holder.insuplc_admdvs, &holder.account.insutype);
        let interest = year_end_interest(policy, &month_ends(carried, &moves));
        if interest <= Decimal::ZERO {
            continue;
        }
        posted.push(post_to(
            conn,
            holder.account,
            &date,
            EntryKind::Interest,
            interest,
        )?);
    }
    conn.execute(
        "INSERT INTO sim_meta (key, value) VALUES (?1, ?2)",
        params![key, date],
    )?;
    Ok(posted)
}

fn fixture_money(what: &str, text: &str) -> Result<Decimal, TxError> {
    text.trim()
        .parse::<Decimal>()
        .map_err(|_| TxError::Refused(format!("fixture {what}: {text:?} is not an amount")))
}

/// Seed a person's accounts: each insuinfo row's balc as an opening entry, or the `account`
/// (carried over + monthly credits) for the first row; then the year's earlier visits.
pub fn seed_person(
    conn: &Connection,
    policies: &SimPolicies,
    person: &PersonFixture,
    year: i32,
) -> Result<(), TxError> {
    let before = Date::year_end(year - 1);
    for (i, row) in person.insuinfo.iter().enumerate() {
        let account = AccountKey::new(&person.psn_no, &row.insutype);
        match (&person.account, i) {
            (Some(fixture), 0) => {
                let carried = fixture_money("carried_over", &fixture.carried_over)?;
                post(
                    conn,
                    &account,
                    &before,
                    EntryKind::CarriedOver,
                    carried,
                    None,
                )?;
                let wage = fixture_money("wage", &fixture.wage)?;
                set_wage(conn, &account, wage)?;
                let policy = policies.for_person(&row.insuplc_admdvs, &row.insutype);
                for month in 1..=fixture.credited_months.min(12) {
                    let date =
                        Date::new(year, month, 1).ok_or(Internal::NoSuchMonth { year, month })?;
                    let credit = monthly_credit(policy, wage);
                    post(
                        conn,
                        &account,
                        &date.to_string(),
                        EntryKind::Credit,
                        credit,
                        None,
                    )?;
                }
            }
            _ => {
                let opening = fixture_money("balc", &row.balc)?;
                post(conn, &account, &before, EntryKind::Opening, opening, None)?;
            }
        }
    }
    seed_prior_visits(conn, policies, person, year)
}

/// `prior_visits`: visit k of n on day 10 + k of month 1 + 3k/n (January–March).
fn seed_prior_visits(
    conn: &Connection,
    policies: &SimPolicies,
    person: &PersonFixture,
    year: i32,
) -> Result<(), TxError> {
    let Some(row) = person.insuinfo.first() else {
        return Ok(());
    };
    let n = person.prior_visits.len();
    for (k, amount) in person.prior_visits.iter().enumerate() {
        let month = 1 + (3 * k / n.max(1)) as u32;
        let day = 10 + (k % 18) as u32;
        let date =
            Date::new(year, month, day).ok_or(Internal::NoSuchVisitDate { year, month, day })?;
        let inscp = fixture_money("prior_visits", amount)?;
        super::settle::seed_prior_visit(
            conn,
            policies,
            &person.psn_no,
            &row.insutype,
            inscp,
            date,
        )?;
    }
    Ok(())
}

/// Seed the family bindings, in order.
pub fn seed_bindings(conn: &Connection, bindings: &[BindingFixture]) -> Result<(), TxError> {
    for b in bindings {
        bind(
            conn,
            &AccountKey::new(&b.payer_psn_no, &b.payer_insutype),
            &b.beneficiary_psn_no,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::insurer::db::SimDb;
    use crate::sim::insurer::fixtures::Fixtures;
    use std::path::Path;

    const WANG: &str = "50000000000000012345";

    fn seeded() -> (SimDb, SimPolicies, i32) {
        let policies = SimPolicies::new(None, "cq-seed", "3").unwrap();
        let mut db = SimDb::open(Path::new(":memory:")).unwrap();
        db.seed(&Fixtures::built_in().unwrap(), &policies).unwrap();
        (db, policies, Date::today().year())
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn xiaowangs_account_is_built_from_credits_and_earlier_visits() {
        let (db, _, year) = seeded();
        let wang = AccountKey::new(WANG, "310");
        // 25.00 + 3 × 102.60 − (80 + 100 + 50) = 102.80.
        assert_eq!(balance(db.conn(), &wang, None).unwrap(), d("102.80"));
        // Before February's credit: 25.00 + 102.60 − 80.00 = 47.60.
        let jan = format!("{year}-01-31");
        assert_eq!(balance(db.conn(), &wang, Some(&jan)).unwrap(), d("47.60"));
        let (carried, moves) = year_entries(db.conn(), &wang, year).unwrap();
        assert_eq!(carried, d("25.00"));
        assert_eq!(moves.len(), 6, "{moves:?}");
        assert_eq!(
            moves[1],
            LedgerEntry::Spend {
                month: 1,
                amount: d("80.00")
            }
        );
    }

    #[test]
    fn a_year_is_closed_once_and_credits_follow_the_wage() {
        let (db, policies, year) = seeded();
        let posted = year_end(db.conn(), &policies, year).unwrap();
        let wang = posted.iter().find(|p| p.psn_no == WANG).unwrap();
        // (825.80 × 0.0035 + 300.00 × 0.0110) / 12 = 0.5158… → 0.52 (tests/suite/insurer_settle.rs).
        assert_eq!(wang.amount, d("0.52"));
        assert!(year_end(db.conn(), &policies, year).is_err());
        let credited = credit_month(db.conn(), &policies, year + 1, 1).unwrap();
        assert_eq!(credited.len(), 1, "only 小王 has a wage");
        assert_eq!(credited[0].amount, d("102.60"));
        assert_eq!(credited[0].balc, d("205.92"));
    }
}
