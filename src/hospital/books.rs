//! The institution's books of a day, read from the hospital database for `medcard reconcile
//! --hospital` and the hospital view: every workstation's settlements of the day
//! (`hospital_settlements`, by `setl_date`) and the money-moving calls that explain them
//! (`hospital_calls`: the day's 2207 / 2208 / 2601, and every one still in doubt), as the
//! plain rows [`crate::settle::reconcile`] compares, each with its workstation and request.
//!
//! Two queries, each streamed (`query_raw`): a day of 100,000 settlements is read without a
//! round trip per row, through the indexes on `setl_date` and on the calls' `created_at`
//! (schema versions 1 and 2).

use super::HospitalError;
use crate::insurer::settlement as wire;
use crate::money;
use crate::settle::journal::CallState;
use crate::settle::reconcile::{
    CLR_TYPE_OUTPATIENT, LocalBooks, LocalCall, LocalSettlement, Scope,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Row};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashMap;

/// A day's settlements that were made (settled, or refunded since), oldest first per
/// workstation. The amounts stay JSON (a string or a number, as the insurer sent them).
const SETTLEMENTS_OF_DAY: &str = "\
SELECT workstation, request_id, state, COALESCE(setl_id, setlinfo->>'setl_id'), mdtrt_id, \
       psn_no, setlinfo->>'insutype', setlinfo->>'clr_type', setlinfo->'medfee_sumamt', \
       setlinfo->'fund_pay_sumamt', setlinfo->'acct_pay', setlinfo->'psn_cash_pay' \
FROM hospital_settlements \
WHERE setl_date = $1 AND kind = 'settle' AND state IN ('settled', 'refunded') \
ORDER BY workstation, created_at, request_id";

/// The money-moving calls journalled during the Beijing day `$1` (UTC+8, with an hour's
/// margin each side for a 2207 sent just before midnight), and every one still in doubt.
const MONEY_CALLS: &str = "\
SELECT workstation, msgid, infno, request_id, state, mdtrt_id, psn_no \
FROM hospital_calls \
WHERE infno IN ('2207', '2208', '2601') \
  AND (state IN ('PENDING', 'UNKNOWN') \
       OR (created_at >= ($1::text::date::timestamp AT TIME ZONE 'UTC') - interval '9 hours' \
           AND created_at < ($1::text::date::timestamp AT TIME ZONE 'UTC') + interval '17 hours')) \
ORDER BY workstation, created_at, msgid";

/// Every workstation's books of `date` (`yyyy-MM-dd`), for [`crate::settle::reconcile`]
/// with [`Scope::Institution`].
pub fn institution_books(client: &mut Client, date: &str) -> Result<LocalBooks, HospitalError> {
    let calls = money_calls(client, date)?;
    let made_by = settling_msgids(&calls);
    let mut settlements = day_settlements(client, date)?;
    for s in &mut settlements {
        let key = (s.workstation.as_deref(), s.request_id.as_deref());
        if let (Some(workstation), Some(request_id)) = key
            && let Some(msgid) = made_by.get(&(workstation, request_id))
        {
            s.msgid = (*msgid).to_owned();
        }
    }
    Ok(LocalBooks {
        settlements,
        calls,
        scope: Scope::Institution,
    })
}

/// Every workstation's settlements of `date` (settled, or refunded since), without the
/// msgid of the 2207 that made them.
pub fn day_settlements(
    client: &mut Client,
    date: &str,
) -> Result<Vec<LocalSettlement>, HospitalError> {
    let mut rows = client.query_raw(SETTLEMENTS_OF_DAY, [&date as &(dyn ToSql + Sync)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        if let Some(settlement) = settlement_of(&row) {
            out.push(settlement);
        }
    }
    Ok(out)
}

/// A settlement row; None when its setlinfo lacks what the totals need (it then shows as
/// 中心多 in the detail comparison, as a journal's unreadable row does).
fn settlement_of(row: &Row) -> Option<LocalSettlement> {
    let text = |i: usize| row.get::<_, Option<String>>(i);
    let amount = |i: usize| {
        row.get::<_, Option<Value>>(i)
            .and_then(|v| money::exact(&v).ok())
    };
    Some(LocalSettlement {
        workstation: text(0),
        request_id: text(1),
        refunded: text(2)? == "refunded",
        setl_id: text(3)?,
        mdtrt_id: text(4).unwrap_or_default(),
        psn_no: text(5).unwrap_or_default(),
        insutype: text(6)?,
        clr_type: text(7)
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| CLR_TYPE_OUTPATIENT.to_owned()),
        medfee_sumamt: amount(8)?,
        fund_pay_sumamt: amount(9)?,
        acct_pay: amount(10)?,
        psn_cash_pay: amount(11).unwrap_or(Decimal::ZERO),
        msgid: String::new(),
    })
}

/// The day's money-moving calls and every one in doubt, each with its workstation.
pub fn money_calls(client: &mut Client, date: &str) -> Result<Vec<LocalCall>, HospitalError> {
    let mut rows = client.query_raw(MONEY_CALLS, [&date as &(dyn ToSql + Sync)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let text = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
        out.push(LocalCall {
            workstation: Some(text(0)),
            msgid: text(1),
            infno: text(2),
            request_id: text(3),
            state: CallState::parse(&text(4))?,
            mdtrt_id: text(5),
            psn_no: text(6),
        });
    }
    Ok(out)
}

/// (workstation, request_id) → the msgid of the 2207 that settled it.
fn settling_msgids(calls: &[LocalCall]) -> HashMap<(&str, &str), &str> {
    calls
        .iter()
        .filter(|c| c.infno == wire::SETTLE && c.state == CallState::Success)
        .filter_map(|c| {
            let workstation = c.workstation.as_deref()?;
            Some(((workstation, c.request_id.as_str()), c.msgid.as_str()))
        })
        .collect()
}
