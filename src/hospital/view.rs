//! The hospital view, for the finance office and IT (`medcard hospital`): the day's
//! settlements by workstation and insutype, the calls anywhere whose outcome is still in
//! doubt, and the workstations with when each last shipped its journal. Read from the
//! hospital database only; nothing here writes.

use super::books::day_settlements;
use super::{HospitalError, HospitalSettings, connect, schema};
use crate::clock::{from_unix_seconds, rfc3339, unix_seconds};
use crate::settle::reconcile::LocalSettlement;
use postgres::Client;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A reader's connection (`[hospital]`'s settings, as the daemon's): the schema brought up
/// to date first, so a database no workstation has shipped to yet reads as empty.
pub fn open(settings: &HospitalSettings, application_name: &str) -> Result<Client, HospitalError> {
    let mut client = connect::connect(settings, application_name)?;
    schema::migrate(&mut client)?;
    Ok(client)
}

/// One workstation's standing settlements of one insutype (refunded ones are counted apart
/// and are out of the sums, as in 3201).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayLine {
    pub workstation: String,
    pub insutype: String,
    pub count: u64,
    pub refunded: u64,
    #[serde(with = "crate::money")]
    pub medfee_sumamt: Decimal,
    #[serde(with = "crate::money")]
    pub fund_pay_sumamt: Decimal,
    #[serde(with = "crate::money")]
    pub acct_pay: Decimal,
    /// psn_cash_pay: what the patients paid in cash.
    #[serde(with = "crate::money")]
    pub cash: Decimal,
}

impl DayLine {
    fn add(&mut self, s: &LocalSettlement) {
        if s.refunded {
            self.refunded += 1;
            return;
        }
        self.count += 1;
        self.medfee_sumamt += s.medfee_sumamt;
        self.fund_pay_sumamt += s.fund_pay_sumamt;
        self.acct_pay += s.acct_pay;
        self.cash += s.psn_cash_pay;
    }
}

/// `medcard hospital day`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    /// By workstation, then insutype.
    pub lines: Vec<DayLine>,
    /// Every line added up (workstation and insutype empty).
    pub total: DayLine,
}

/// The day's settlements of every workstation, by workstation and insutype.
pub fn day(client: &mut Client, date: &str) -> Result<Day, HospitalError> {
    let mut groups: BTreeMap<(String, String), DayLine> = BTreeMap::new();
    let mut total = DayLine::default();
    for s in day_settlements(client, date)? {
        let workstation = s.workstation.clone().unwrap_or_default();
        groups
            .entry((workstation.clone(), s.insutype.clone()))
            .or_insert_with(|| DayLine {
                workstation,
                insutype: s.insutype.clone(),
                ..DayLine::default()
            })
            .add(&s);
        total.add(&s);
    }
    Ok(Day {
        date: date.to_owned(),
        lines: groups.into_values().collect(),
        total,
    })
}

/// A call whose outcome at the insurer is not known yet (PENDING or UNKNOWN).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnresolvedCall {
    pub workstation: String,
    pub msgid: String,
    pub infno: String,
    pub request_id: String,
    pub state: String,
    pub mdtrt_id: String,
    /// When the workstation journalled it (RFC 3339, UTC).
    pub created_at: String,
    /// Seconds since then.
    pub age_seconds: i64,
}

/// Every workstation's calls still in doubt, oldest first.
pub fn unresolved(
    client: &mut Client,
    now: SystemTime,
) -> Result<Vec<UnresolvedCall>, HospitalError> {
    let rows = client.query(
        "SELECT workstation, msgid, infno, request_id, state, mdtrt_id, \
                EXTRACT(EPOCH FROM created_at)::bigint \
         FROM hospital_calls WHERE state IN ('PENDING', 'UNKNOWN') \
         ORDER BY created_at, workstation, msgid",
        &[],
    )?;
    let now = unix_seconds(now);
    Ok(rows
        .iter()
        .map(|row| {
            let text = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
            let created: i64 = row.get::<_, Option<i64>>(6).unwrap_or_default();
            UnresolvedCall {
                workstation: text(0),
                msgid: text(1),
                infno: text(2),
                request_id: text(3),
                state: text(4),
                mdtrt_id: text(5),
                created_at: rfc3339(from_unix_seconds(created)),
                age_seconds: (now - created).max(0),
            }
        })
        .collect())
}

/// A workstation as the hospital database knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkstationLine {
    pub workstation: String,
    pub node: Option<i32>,
    pub fixmedins_code: String,
    /// Journal rows shipped (its outbox's watermark: rows are numbered from 1 without gaps).
    pub shipped_rows: i64,
    /// RFC 3339, UTC; none: nothing shipped yet.
    pub last_shipped_at: Option<String>,
    /// Seconds since the database last heard from it (a batch shipped, or the heartbeat of a
    /// caught-up workstation, at least every minute), by the database's clock.
    pub idle_seconds: i64,
    /// Not shipped for the minutes asked.
    pub stale: bool,
}

/// Every workstation, stale when it has not shipped for `stale_minutes` (0: every one).
pub fn workstations(
    client: &mut Client,
    stale_minutes: u32,
) -> Result<Vec<WorkstationLine>, HospitalError> {
    let rows = client.query(
        "SELECT workstation, node, fixmedins_code, shipped_seq, \
                EXTRACT(EPOCH FROM last_shipped_at)::bigint, \
                GREATEST(EXTRACT(EPOCH FROM now() - last_seen_at), 0)::bigint \
         FROM workstations ORDER BY workstation",
        &[],
    )?;
    let stale_after = i64::from(stale_minutes) * 60;
    Ok(rows
        .iter()
        .map(|row| {
            let idle_seconds: i64 = row.get(5);
            WorkstationLine {
                workstation: row.get(0),
                node: row.get(1),
                fixmedins_code: row.get(2),
                shipped_rows: row.get(3),
                last_shipped_at: row
                    .get::<_, Option<i64>>(4)
                    .map(|s| rfc3339(from_unix_seconds(s))),
                idle_seconds,
                stale: idle_seconds >= stale_after,
            }
        })
        .collect())
}
