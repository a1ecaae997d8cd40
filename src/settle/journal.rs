//! The settlement journal, in the cache file (through its one writer, `synchronous=FULL`):
//! visits registered here, previews, the callers' settlement requests (keyed by their
//! `request_id`) and every money-moving call to the insurer, written **before** it is sent.
//!
//! A call's entry goes PENDING (written, on disk) → SUCCESS (an answer) | FAIL (refused, or
//! shown never to have been applied) | UNKNOWN (no answer: the insurer may or may not have
//! applied it) → REVERSED (a 2601 undid it). A 2601 is an entry of its own (`omsgid` = the
//! call it reverses); its own lost reply leaves the original UNKNOWN.
//!
//! A request (`settlements` row) is `pending` while a call is out, `settled` when one
//! succeeded, `refused` when the insurer refused it (final for that request_id), `unknown`
//! while an uncertain call is being reversed, `retry` once every attempt was undone (nothing
//! charged; the next `settle.commit` with the same request_id tries again), `refunded` after
//! a 2208, `self_pay` when the verdict allowed cash only.

use crate::cache::{CacheError, CacheWriter};
use crate::verdict::{MaySettle, VerdictCode};
use rusqlite::{OptionalExtension, Row, Transaction, params};
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, IntoDeserializer, value::Error as ValueError};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A journalled call's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallState {
    Pending,
    Success,
    Fail,
    Unknown,
    Reversed,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Pending => "PENDING",
            CallState::Success => "SUCCESS",
            CallState::Fail => "FAIL",
            CallState::Unknown => "UNKNOWN",
            CallState::Reversed => "REVERSED",
        }
    }

    /// A state as the journal writes it (`as_str`).
    pub fn parse(text: &str) -> Result<CallState, CacheError> {
        Ok(match text {
            "PENDING" => CallState::Pending,
            "SUCCESS" => CallState::Success,
            "FAIL" => CallState::Fail,
            "UNKNOWN" => CallState::Unknown,
            "REVERSED" => CallState::Reversed,
            other => {
                return Err(CacheError::Corrupt {
                    what: "journal state",
                    value: other.to_owned(),
                });
            }
        })
    }

    /// Whether the insurer's side of this call is still in doubt.
    pub fn unresolved(self) -> bool {
        matches!(self, CallState::Pending | CallState::Unknown)
    }
}

/// A settlement request's state (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Settled,
    Refused,
    Unknown,
    Retry,
    Refunded,
    SelfPay,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Settled => "settled",
            RequestState::Refused => "refused",
            RequestState::Unknown => "unknown",
            RequestState::Retry => "retry",
            RequestState::Refunded => "refunded",
            RequestState::SelfPay => "self_pay",
        }
    }

    fn parse(text: &str) -> Result<RequestState, CacheError> {
        Ok(match text {
            "pending" => RequestState::Pending,
            "settled" => RequestState::Settled,
            "refused" => RequestState::Refused,
            "unknown" => RequestState::Unknown,
            "retry" => RequestState::Retry,
            "refunded" => RequestState::Refunded,
            "self_pay" => RequestState::SelfPay,
            other => {
                return Err(CacheError::Corrupt {
                    what: "settlement state",
                    value: other.to_owned(),
                });
            }
        })
    }

    /// Whether the request is finished: a commit with its request_id only reports it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestState::Settled
                | RequestState::Refused
                | RequestState::Refunded
                | RequestState::SelfPay
        )
    }
}

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// 2207 (or a cash-only settlement).
    Settle,
    /// 2208.
    Refund,
}

impl RequestKind {
    fn as_str(self) -> &'static str {
        match self {
            RequestKind::Settle => "settle",
            RequestKind::Refund => "refund",
        }
    }

    fn parse(text: &str) -> Result<RequestKind, CacheError> {
        match text {
            "settle" => Ok(RequestKind::Settle),
            "refund" => Ok(RequestKind::Refund),
            other => Err(CacheError::Corrupt {
                what: "settlement kind",
                value: other.to_owned(),
            }),
        }
    }
}

/// Who a visit is for, from the card session (or an ID number) and the cache
/// (`settle::service::patient`): the person, the verdict at registration (`may_settle`,
/// `verdict_code`) and the year's in-scope amount the card itself carries (its DF04 annual
/// totals, read with the PIN), added to this hospital's settlements for the local preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub psn_no: String,
    pub psn_name: String,
    pub insutype: String,
    pub psn_type: String,
    pub insuplc_admdvs: String,
    /// 03 社会保障卡, 02 居民身份证.
    pub mdtrt_cert_type: String,
    pub mdtrt_cert_no: String,
    /// The verdict's `may_settle`.
    pub may_settle: MaySettle,
    /// The verdict's code; none when the card was not judged.
    pub verdict_code: Option<VerdictCode>,
    /// This year's in-scope amount as the card carries it (DF04 annual totals), when read.
    #[serde(default)]
    pub ytd_hint: Option<Decimal>,
}

/// Where a registered visit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitState {
    Registered,
    /// 2202 (or, for a self-pay visit, locally).
    Cancelled,
}

/// A visit registered here (2201): the patient and the registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitRow {
    pub mdtrt_id: String,
    pub ipt_otp_no: String,
    #[serde(flatten)]
    pub patient: Patient,
    pub med_type: String,
    pub dept_code: String,
    pub dept_name: String,
    pub dr_name: String,
    pub begntime: String,
    pub state: VisitState,
}

/// A preview: the batch's lines, medcard's split and the insurer's 2206 answer (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRow {
    pub preview_id: String,
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    pub acct_used: bool,
    pub lines: String,
    pub local_split: String,
    pub insurer: Option<String>,
    /// Whether the lines are at the insurer (2204 answered).
    pub uploaded: bool,
    /// The lines' 费用发生时间 (`fee_ocur_time`), fixed when the preview was made so that an
    /// upload repeated by a commit is the same upload.
    pub fee_time: String,
}

/// A caller's settlement request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub request_id: String,
    pub kind: RequestKind,
    pub preview_id: Option<String>,
    pub mdtrt_id: String,
    pub chrg_bchno: String,
    pub psn_no: String,
    pub insuplc_admdvs: String,
    pub orig_setl_id: Option<String>,
    pub state: RequestState,
    pub setl_id: Option<String>,
    /// The insurer's `setlinfo` (JSON), or medcard's for a cash-only settlement.
    pub setlinfo: Option<String>,
    pub err_msg: Option<String>,
    /// `yyyy-MM-dd` of the settlement (the insurer's day for reconciliation).
    pub setl_date: Option<String>,
}

impl RequestRow {
    /// A settle request for batch `chrg_bchno` of visit `mdtrt_id` (priced by `preview_id`),
    /// before its first call: pending, nothing settled yet.
    pub fn settle(
        request_id: &str,
        preview_id: &str,
        (mdtrt_id, chrg_bchno): (&str, &str),
        (psn_no, insuplc_admdvs): (&str, &str),
    ) -> RequestRow {
        RequestRow {
            request_id: request_id.to_owned(),
            kind: RequestKind::Settle,
            preview_id: Some(preview_id.to_owned()),
            mdtrt_id: mdtrt_id.to_owned(),
            chrg_bchno: chrg_bchno.to_owned(),
            psn_no: psn_no.to_owned(),
            insuplc_admdvs: insuplc_admdvs.to_owned(),
            orig_setl_id: None,
            state: RequestState::Pending,
            setl_id: None,
            setlinfo: None,
            err_msg: None,
            setl_date: None,
        }
    }
}

/// A journalled call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub msgid: String,
    pub infno: String,
    pub request_id: String,
    pub omsgid: Option<String>,
    pub state: CallState,
    pub psn_no: String,
    pub insuplc_admdvs: String,
    pub mdtrt_id: String,
    pub err_msg: Option<String>,
}

fn now() -> i64 {
    crate::clock::unix_seconds(SystemTime::now())
}

/// The journal: reads and writes through the cache's one writer.
#[derive(Clone)]
pub struct Journal {
    writer: CacheWriter,
}

const REQUEST_COLUMNS: &str = "request_id, kind, preview_id, mdtrt_id, chrg_bchno, psn_no, \
     insuplc_admdvs, orig_setl_id, state, setl_id, setlinfo, err_msg, setl_date";
const CALL_COLUMNS: &str =
    "msgid, infno, request_id, omsgid, state, psn_no, insuplc_admdvs, mdtrt_id, err_msg";
const VISIT_COLUMNS: &str = "mdtrt_id, ipt_otp_no, psn_no, psn_name, insutype, psn_type, \
     insuplc_admdvs, mdtrt_cert_type, mdtrt_cert_no, med_type, dept_code, dept_name, dr_name, \
     may_settle, verdict_code, ytd_hint, begntime, state";

fn request_row(row: &Row<'_>) -> rusqlite::Result<(RequestRow, String, String)> {
    Ok((
        RequestRow {
            request_id: row.get(0)?,
            kind: RequestKind::Settle,
            preview_id: row.get(2)?,
            mdtrt_id: row.get(3)?,
            chrg_bchno: row.get(4)?,
            psn_no: row.get(5)?,
            insuplc_admdvs: row.get(6)?,
            orig_setl_id: row.get(7)?,
            state: RequestState::Pending,
            setl_id: row.get(9)?,
            setlinfo: row.get(10)?,
            err_msg: row.get(11)?,
            setl_date: row.get(12)?,
        },
        row.get(1)?,
        row.get(8)?,
    ))
}

fn finish_request(
    (mut row, kind, state): (RequestRow, String, String),
) -> Result<RequestRow, CacheError> {
    row.kind = RequestKind::parse(&kind)?;
    row.state = RequestState::parse(&state)?;
    Ok(row)
}

fn call_row(row: &Row<'_>) -> rusqlite::Result<(CallRow, String)> {
    Ok((
        CallRow {
            msgid: row.get(0)?,
            infno: row.get(1)?,
            request_id: row.get(2)?,
            omsgid: row.get(3)?,
            state: CallState::Pending,
            psn_no: row.get(5)?,
            insuplc_admdvs: row.get(6)?,
            mdtrt_id: row.get(7)?,
            err_msg: row.get(8)?,
        },
        row.get(4)?,
    ))
}

fn finish_call((mut row, state): (CallRow, String)) -> Result<CallRow, CacheError> {
    row.state = CallState::parse(&state)?;
    Ok(row)
}

/// A visit's row with its typed columns still as stored: may_settle, verdict_code, ytd_hint,
/// state ([`finish_visit`] reads them).
type StoredVisit = (VisitRow, [String; 3], Option<String>);

fn visit_row(row: &Row<'_>) -> rusqlite::Result<StoredVisit> {
    Ok((
        VisitRow {
            mdtrt_id: row.get(0)?,
            ipt_otp_no: row.get(1)?,
            patient: Patient {
                psn_no: row.get(2)?,
                psn_name: row.get(3)?,
                insutype: row.get(4)?,
                psn_type: row.get(5)?,
                insuplc_admdvs: row.get(6)?,
                mdtrt_cert_type: row.get(7)?,
                mdtrt_cert_no: row.get(8)?,
                may_settle: MaySettle::No,
                verdict_code: None,
                ytd_hint: None,
            },
            med_type: row.get(9)?,
            dept_code: row.get(10)?,
            dept_name: row.get(11)?,
            dr_name: row.get(12)?,
            begntime: row.get(16)?,
            state: VisitState::Registered,
        },
        [row.get(13)?, row.get(14)?, row.get(17)?],
        row.get(15)?,
    ))
}

fn finish_visit(
    (mut row, [may_settle, verdict_code, state], ytd_hint): StoredVisit,
) -> Result<VisitRow, CacheError> {
    row.patient.may_settle = stored("visit may_settle", &may_settle)?;
    row.patient.verdict_code = match verdict_code.as_str() {
        "" => None,
        code => Some(stored("visit verdict_code", code)?),
    };
    row.patient.ytd_hint = ytd_hint
        .map(|text| stored::<Decimal>("visit ytd_hint", &text))
        .transpose()?;
    row.state = stored("visit state", &state)?;
    Ok(row)
}

/// The text a value is stored as: its serde name (an enum's snake_case name).
fn text_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

/// A value stored as the text of its serde name (an enum's snake_case name, a decimal).
fn stored<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, CacheError> {
    T::deserialize(IntoDeserializer::<ValueError>::into_deserializer(text)).map_err(|_| {
        CacheError::Corrupt {
            what,
            value: text.to_owned(),
        }
    })
}

impl Journal {
    pub fn new(writer: CacheWriter) -> Journal {
        Journal { writer }
    }

    fn run<T>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        self.writer.in_transaction(work)
    }

    // ---- visits ----------------------------------------------------------------------

    pub fn insert_visit(&self, v: &VisitRow) -> Result<(), CacheError> {
        self.run(|tx| insert_visit(tx, v))
    }

    /// A registration about to be sent: its entry (infno 2201, PENDING, keyed by a msgid
    /// reserved for it, `request_id` empty, `mdtrt_id` not known yet, `detail` the
    /// hospital's visit number) on disk before the 2201 goes.
    pub fn begin_registration(&self, entry: &CallRow, ipt_otp_no: &str) -> Result<(), CacheError> {
        let detail = serde_json::json!({ "ipt_otp_no": ipt_otp_no }).to_string();
        self.run(|tx| {
            insert_call(tx, entry)?;
            exec(
                tx,
                "UPDATE settle_journal SET detail = ?2 WHERE msgid = ?1",
                params![entry.msgid, detail],
            )?;
            Ok(())
        })
    }

    /// The insurer registered `visit`: its entry becomes SUCCESS with the mdtrt_id, and the
    /// visit is recorded (unless it already is), in one transaction.
    pub fn registered(&self, entry_msgid: &str, visit: &VisitRow) -> Result<(), CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "UPDATE settle_journal SET state = 'SUCCESS', mdtrt_id = ?2, updated_at = ?3 \
                 WHERE msgid = ?1",
                params![entry_msgid, visit.mdtrt_id, now()],
            )?;
            let known: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM settle_visits WHERE mdtrt_id = ?1",
                    [&visit.mdtrt_id],
                    |row| row.get(0),
                )
                .optional()?;
            if known.is_none() {
                insert_visit(tx, visit)?;
            }
            Ok(())
        })
    }

    /// A cancellation about to be sent: its entry (infno 2202, PENDING, the visit's
    /// mdtrt_id, `request_id` empty) on disk before the 2202 goes.
    pub fn begin_cancellation(&self, entry: &CallRow) -> Result<(), CacheError> {
        self.run(|tx| insert_call(tx, entry))
    }

    /// The insurer cancelled the visit (2202 answered, or answered that it already was):
    /// its entry becomes SUCCESS and the visit `cancelled`, in one transaction.
    pub fn cancelled(&self, entry_msgid: &str, mdtrt_id: &str) -> Result<(), CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "UPDATE settle_journal SET state = 'SUCCESS', updated_at = ?2 WHERE msgid = ?1",
                params![entry_msgid, now()],
            )?;
            set_visit_state(tx, mdtrt_id, VisitState::Cancelled)
        })
    }

    pub fn visit(&self, mdtrt_id: &str) -> Result<Option<VisitRow>, CacheError> {
        self.visit_where("mdtrt_id", mdtrt_id)
    }

    /// The visit whose unique `column` (mdtrt_id, ipt_otp_no) is `value`.
    fn visit_where(&self, column: &str, value: &str) -> Result<Option<VisitRow>, CacheError> {
        self.run(|tx| {
            query_one(
                tx,
                &format!("SELECT {VISIT_COLUMNS} FROM settle_visits WHERE {column} = ?1"),
                [value],
                visit_row,
            )
            .optional()?
            .map(finish_visit)
            .transpose()
        })
    }

    /// The visit registered here under the hospital's visit number `ipt_otp_no` (unique).
    pub fn visit_by_ipt_otp_no(&self, ipt_otp_no: &str) -> Result<Option<VisitRow>, CacheError> {
        self.visit_where("ipt_otp_no", ipt_otp_no)
    }

    pub fn set_visit_state(&self, mdtrt_id: &str, state: VisitState) -> Result<(), CacheError> {
        self.run(|tx| set_visit_state(tx, mdtrt_id, state))
    }

    /// The next number for a hospital-side id of `kind` today (visit numbers, batches).
    pub fn next_serial(&self, kind: &str, date: &str) -> Result<u64, CacheError> {
        self.writer.reserve_msgid_seq(&format!("{kind}:{date}"), 1)
    }

    // ---- previews --------------------------------------------------------------------

    pub fn insert_preview(&self, p: &PreviewRow) -> Result<(), CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "INSERT INTO settle_previews (preview_id, mdtrt_id, chrg_bchno, acct_used, lines, \
                 local_split, insurer, uploaded, fee_time, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    p.preview_id,
                    p.mdtrt_id,
                    p.chrg_bchno,
                    p.acct_used,
                    p.lines,
                    p.local_split,
                    p.insurer,
                    p.uploaded,
                    p.fee_time,
                    now()
                ],
            )?;
            Ok(())
        })
    }

    pub fn update_preview_insurer(
        &self,
        preview_id: &str,
        insurer: &str,
    ) -> Result<(), CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "UPDATE settle_previews SET insurer = ?2, uploaded = 1 WHERE preview_id = ?1",
                params![preview_id, insurer],
            )?;
            Ok(())
        })
    }

    /// The visit of a preview, without its lines (a commit waiting for the visit's lock
    /// holds no bill).
    pub fn preview_visit(&self, preview_id: &str) -> Result<Option<String>, CacheError> {
        self.run(|tx| {
            Ok(query_one(
                tx,
                "SELECT mdtrt_id FROM settle_previews WHERE preview_id = ?1",
                [preview_id],
                |row| row.get(0),
            )
            .optional()?)
        })
    }

    pub fn preview(&self, preview_id: &str) -> Result<Option<PreviewRow>, CacheError> {
        self.run(|tx| {
            Ok(query_one(
                tx,
                "SELECT preview_id, mdtrt_id, chrg_bchno, acct_used, lines, local_split, \
                     insurer, uploaded, fee_time FROM settle_previews WHERE preview_id = ?1",
                [preview_id],
                |row| {
                    Ok(PreviewRow {
                        preview_id: row.get(0)?,
                        mdtrt_id: row.get(1)?,
                        chrg_bchno: row.get(2)?,
                        acct_used: row.get(3)?,
                        lines: row.get(4)?,
                        local_split: row.get(5)?,
                        insurer: row.get(6)?,
                        uploaded: row.get(7)?,
                        fee_time: row.get(8)?,
                    })
                },
            )
            .optional()?)
        })
    }

    // ---- fee batches the insurer holds ------------------------------------------------

    /// Marks a batch held by the insurer: written before its first 2204 is sent (an
    /// unanswered 2204 may have been applied), and again when a batch is uploaded anew.
    pub fn batch_held(&self, mdtrt_id: &str, chrg_bchno: &str) -> Result<(), CacheError> {
        self.set_batch(mdtrt_id, chrg_bchno, "held")
    }

    /// Marks a batch deleted at the insurer (2205 answered, or answered that it holds none
    /// of the batch's lines).
    pub fn batch_deleted(&self, mdtrt_id: &str, chrg_bchno: &str) -> Result<(), CacheError> {
        self.set_batch(mdtrt_id, chrg_bchno, "deleted")
    }

    fn set_batch(&self, mdtrt_id: &str, chrg_bchno: &str, state: &str) -> Result<(), CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "INSERT INTO settle_batches (chrg_bchno, mdtrt_id, state, updated_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (chrg_bchno) DO UPDATE SET \
                 state = excluded.state, updated_at = excluded.updated_at",
                params![chrg_bchno, mdtrt_id, state, now()],
            )?;
            Ok(())
        })
    }

    /// The visit's batches the insurer holds (or may hold) and no live settle request
    /// settles (or is settling): those a new upload deletes with 2205 first. Oldest first.
    pub fn open_batches(&self, mdtrt_id: &str) -> Result<Vec<String>, CacheError> {
        self.run(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT chrg_bchno FROM settle_batches b WHERE mdtrt_id = ?1 AND state = 'held' \
                 AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.chrg_bchno = b.chrg_bchno \
                 AND s.kind = 'settle' AND s.state NOT IN ('refused', 'retry')) \
                 ORDER BY updated_at, chrg_bchno",
            )?;
            let rows = stmt.query_map([mdtrt_id], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }

    // ---- requests and calls ------------------------------------------------------------

    pub fn request(&self, request_id: &str) -> Result<Option<RequestRow>, CacheError> {
        self.run(|tx| request_where(tx, "request_id = ?1", request_id))
    }

    /// The settle request that settled (or is settling) a batch.
    pub fn request_for_batch(&self, chrg_bchno: &str) -> Result<Option<RequestRow>, CacheError> {
        self.run(|tx| {
            request_where(
                tx,
                "chrg_bchno = ?1 AND kind = 'settle' AND state NOT IN ('refused', 'retry')",
                chrg_bchno,
            )
        })
    }

    /// The settle request whose settlement has this setl_id.
    pub fn request_by_setl_id(&self, setl_id: &str) -> Result<Option<RequestRow>, CacheError> {
        self.run(|tx| request_where(tx, "setl_id = ?1 AND kind = 'settle'", setl_id))
    }

    /// Every request settled on `date` (`yyyy-MM-dd`), oldest first.
    pub fn requests_on(&self, date: &str) -> Result<Vec<RequestRow>, CacheError> {
        self.run(|tx| requests_where(tx, "setl_date = ?1 ORDER BY created_at, request_id", date))
    }

    /// A page of the day `date`'s requests in the order they got their day: at most `limit`
    /// after the request `after` (from the day's first without it), through the index
    /// `settlements_day`. None when `after` is no request of that day.
    pub fn requests_on_page(
        &self,
        date: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<RequestRow>>, CacheError> {
        self.run(|tx| {
            let from: i64 = match after {
                None => 0,
                Some(request_id) => match query_one(
                    tx,
                    "SELECT day_seq FROM settlements WHERE request_id = ?1 AND setl_date = ?2",
                    params![request_id, date],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .optional()?
                .flatten()
                {
                    Some(seq) => seq,
                    None => return Ok(None),
                },
            };
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM settlements WHERE setl_date = ?1 AND day_seq > ?2 \
                 ORDER BY day_seq LIMIT ?3"
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![date, from, limit], request_row)?;
            rows.map(|r| finish_request(r?))
                .collect::<Result<_, _>>()
                .map(Some)
        })
    }

    /// The person's settled (not refunded) settlements on days starting with `date_prefix`
    /// (`"2026-"`: this year's).
    pub fn settled_for_person(
        &self,
        psn_no: &str,
        date_prefix: &str,
    ) -> Result<Vec<RequestRow>, CacheError> {
        self.run(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM settlements WHERE psn_no = ?1 AND kind = 'settle' \
                 AND state = 'settled' AND substr(setl_date, 1, length(?2)) = ?2"
            ))?;
            let rows = stmt.query_map(params![psn_no, date_prefix], request_row)?;
            rows.map(|r| finish_request(r?)).collect()
        })
    }

    /// The person's settlements that were made — `settled`, `refunded` or `self_pay`, not
    /// refunds themselves — newest first (by settlement day, then the order they got it),
    /// at most `limit`.
    pub fn settlements_of_person(
        &self,
        psn_no: &str,
        limit: usize,
    ) -> Result<Vec<RequestRow>, CacheError> {
        self.run(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM settlements WHERE psn_no = ?1 AND kind = 'settle' \
                 AND state IN ('settled', 'refunded', 'self_pay') \
                 ORDER BY setl_date DESC, day_seq DESC LIMIT ?2"
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![psn_no, limit], request_row)?;
            rows.map(|r| finish_request(r?)).collect()
        })
    }

    /// A new request with its first call, in one transaction: on disk before the call goes.
    pub fn begin_request(&self, request: &RequestRow, call: &CallRow) -> Result<(), CacheError> {
        self.run(|tx| {
            insert_request(tx, request)?;
            insert_call(tx, call)
        })
    }

    /// A new call for an existing request (a retry, or a 2601), with the request's state.
    pub fn add_call(&self, call: &CallRow, request_state: RequestState) -> Result<(), CacheError> {
        self.run(|tx| {
            insert_call(tx, call)?;
            set_request_state(tx, &call.request_id, request_state)
        })
    }

    /// Records a call's outcome and its request's new state together.
    ///
    /// Every transition leaves PENDING or UNKNOWN, so the update is conditional on that: a
    /// call another thread resolved meanwhile is left alone, nothing else is written, and
    /// `false` says so.
    pub fn settle_call(&self, outcome: &CallOutcome<'_>) -> Result<bool, CacheError> {
        self.run(|tx| {
            let changed = exec(
                tx,
                "UPDATE settle_journal SET state = ?2, detail = COALESCE(?3, detail), \
                 err_msg = ?4, updated_at = ?5 \
                 WHERE msgid = ?1 AND state IN ('PENDING', 'UNKNOWN')",
                params![
                    outcome.msgid,
                    outcome.state.as_str(),
                    outcome.detail,
                    outcome.err_msg,
                    now()
                ],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            if let Some(update) = &outcome.request {
                exec(
                    tx,
                    &format!(
                        "UPDATE settlements SET state = ?2, setl_id = COALESCE(?3, setl_id), \
                         setlinfo = COALESCE(?4, setlinfo), err_msg = ?5, \
                         setl_date = COALESCE(?6, setl_date), updated_at = ?7, \
                         day_seq = CASE WHEN ?6 IS NULL OR ?6 IS setl_date THEN day_seq \
                         ELSE {} END WHERE request_id = ?1",
                        next_day_seq("?6")
                    ),
                    params![
                        update.request_id,
                        update.state.as_str(),
                        update.setl_id,
                        update.setlinfo,
                        update.err_msg,
                        update.setl_date,
                        now()
                    ],
                )?;
            }
            if let Some(setl_id) = outcome.refunds {
                exec(
                    tx,
                    "UPDATE settlements SET state = 'refunded', updated_at = ?2 \
                     WHERE setl_id = ?1 AND kind = 'settle' AND state = 'settled'",
                    params![setl_id, now()],
                )?;
            }
            if let Some((psn_no, insutype, balc)) = outcome.balance {
                exec(
                    tx,
                    "UPDATE insuinfo SET balc = ?3 WHERE psn_no = ?1 AND insutype = ?2",
                    params![psn_no, insutype, balc.to_string()],
                )?;
            }
            Ok(true)
        })
    }

    /// One journalled call by msgid.
    pub fn call(&self, msgid: &str) -> Result<Option<CallRow>, CacheError> {
        self.run(|tx| Ok(calls_where(tx, "msgid = ?1", msgid)?.into_iter().next()))
    }

    /// The refund requests of a settlement that are done or still in doubt (not refused, not
    /// undone).
    pub fn live_refunds(&self, setl_id: &str) -> Result<Vec<RequestRow>, CacheError> {
        self.run(|tx| {
            requests_where(
                tx,
                "orig_setl_id = ?1 AND kind = 'refund' AND state NOT IN ('refused', 'retry')",
                setl_id,
            )
        })
    }

    /// Every request of a visit.
    pub fn requests_for_visit(&self, mdtrt_id: &str) -> Result<Vec<RequestRow>, CacheError> {
        self.run(|tx| requests_where(tx, "mdtrt_id = ?1", mdtrt_id))
    }

    /// A cash-only settlement (no insurer call): the request, final at once.
    pub fn insert_final_request(&self, request: &RequestRow) -> Result<(), CacheError> {
        self.run(|tx| insert_request(tx, request))
    }

    /// A refund's original becomes `refunded` again after the refund was reversed, or is set
    /// back to `settled`.
    pub fn set_request_state(
        &self,
        request_id: &str,
        state: RequestState,
    ) -> Result<(), CacheError> {
        self.run(|tx| set_request_state(tx, request_id, state))
    }

    /// Calls of a request, oldest first.
    pub fn calls(&self, request_id: &str) -> Result<Vec<CallRow>, CacheError> {
        self.run(|tx| calls_where(tx, "request_id = ?1 ORDER BY rowid", request_id))
    }

    /// Every 2207 / 2208 whose outcome is in doubt (all visits), oldest first.
    pub fn unresolved_calls(&self) -> Result<Vec<CallRow>, CacheError> {
        self.run(|tx| {
            calls_where(
                tx,
                "state IN ('PENDING', 'UNKNOWN') AND infno IN ('2207', '2208') AND ?1 = ?1 \
                 ORDER BY rowid",
                "",
            )
        })
    }

    /// The 2207 / 2208 calls of a visit whose outcome is in doubt.
    pub fn unresolved_calls_for_visit(&self, mdtrt_id: &str) -> Result<Vec<CallRow>, CacheError> {
        self.run(|tx| {
            calls_where(
                tx,
                "state IN ('PENDING', 'UNKNOWN') AND infno IN ('2207', '2208') \
                 AND mdtrt_id = ?1 ORDER BY rowid",
                mdtrt_id,
            )
        })
    }

    /// 2601 calls still PENDING (their process died): they become UNKNOWN.
    pub fn settle_stale_reversals(&self) -> Result<usize, CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "UPDATE settle_journal SET state = 'UNKNOWN', updated_at = ?1 \
                 WHERE state = 'PENDING' AND infno = '2601'",
                [now()],
            )
        })
    }

    /// Once `omsgid`'s outcome is settled, the earlier 2601s for it whose own answers were
    /// lost (PENDING or UNKNOWN: the process died, the reply never came) are in doubt no more:
    /// they take `state` with `note`. How many.
    pub fn close_reversals_of(
        &self,
        omsgid: &str,
        state: CallState,
        note: &str,
    ) -> Result<usize, CacheError> {
        self.run(|tx| {
            exec(
                tx,
                "UPDATE settle_journal SET state = ?2, err_msg = ?3, updated_at = ?4 \
                 WHERE omsgid = ?1 AND infno = '2601' AND state IN ('PENDING', 'UNKNOWN')",
                params![omsgid, state.as_str(), note, now()],
            )
        })
    }

    /// Every journalled call, oldest first (for `medcard reconcile` and tests).
    pub fn all_calls(&self) -> Result<Vec<CallRow>, CacheError> {
        self.run(|tx| calls_where(tx, "?1 = ?1 ORDER BY rowid", ""))
    }
}

/// A call's outcome, and what it does to its request.
#[derive(Debug)]
pub struct CallOutcome<'a> {
    pub msgid: &'a str,
    pub state: CallState,
    /// The reply's useful part (JSON), kept with the call.
    pub detail: Option<&'a str>,
    pub err_msg: Option<&'a str>,
    pub request: Option<RequestUpdate<'a>>,
    /// A successful 2208: the original settlement (by setl_id) becomes `refunded`.
    pub refunds: Option<&'a str>,
    /// The balance the answer left (psn_no, insutype, balc): the cache's insuinfo follows it
    /// for the next preview, in the same transaction.
    pub balance: Option<(&'a str, &'a str, rust_decimal::Decimal)>,
}

impl<'a> CallOutcome<'a> {
    /// Only the call's new state.
    pub fn new(msgid: &'a str, state: CallState) -> CallOutcome<'a> {
        CallOutcome {
            msgid,
            state,
            detail: None,
            err_msg: None,
            request: None,
            refunds: None,
            balance: None,
        }
    }
}

/// A request's new state (and what the call gave).
#[derive(Debug)]
pub struct RequestUpdate<'a> {
    pub request_id: &'a str,
    pub state: RequestState,
    pub setl_id: Option<&'a str>,
    pub setlinfo: Option<&'a str>,
    pub err_msg: Option<&'a str>,
    pub setl_date: Option<&'a str>,
}

impl<'a> RequestUpdate<'a> {
    /// Only the request's new state.
    pub fn state(request_id: &'a str, state: RequestState) -> RequestUpdate<'a> {
        RequestUpdate {
            request_id,
            state,
            setl_id: None,
            setlinfo: None,
            err_msg: None,
            setl_date: None,
        }
    }
}

/// Records a visit.
fn insert_visit(tx: &Transaction<'_>, v: &VisitRow) -> Result<(), CacheError> {
    let p = &v.patient;
    exec(
        tx,
        &format!(
            "INSERT INTO settle_visits ({VISIT_COLUMNS}, created_at) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        params![
            v.mdtrt_id,
            v.ipt_otp_no,
            p.psn_no,
            p.psn_name,
            p.insutype,
            p.psn_type,
            p.insuplc_admdvs,
            p.mdtrt_cert_type,
            p.mdtrt_cert_no,
            v.med_type,
            v.dept_code,
            v.dept_name,
            v.dr_name,
            text_of(&p.may_settle),
            p.verdict_code.as_ref().map_or_else(String::new, text_of),
            p.ytd_hint.map(|d| d.to_string()),
            v.begntime,
            text_of(&v.state),
            now()
        ],
    )?;
    Ok(())
}

/// SQL for the `day_seq` of a request that gets the day in the parameter `date` (`?6`): the
/// end of that day's list, so a request resolved late never lands in a page already read
/// (`requests_on_page`). The index `settlements_day` finds it.
fn next_day_seq(date: &str) -> String {
    format!(
        "COALESCE((SELECT day_seq FROM settlements WHERE setl_date = {date} \
         ORDER BY day_seq DESC LIMIT 1), 0) + 1"
    )
}

/// `execute` through the connection's statement cache (the journal runs the same few
/// statements on every settlement).
fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, CacheError> {
    Ok(tx.prepare_cached(sql)?.execute(params)?)
}

/// `query_row` through the statement cache.
fn query_one<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, row)
}

fn insert_request(tx: &Transaction<'_>, request: &RequestRow) -> Result<(), CacheError> {
    exec(
        tx,
        &format!(
            "INSERT INTO settlements ({REQUEST_COLUMNS}, created_at, updated_at, day_seq) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, \
             CASE WHEN ?13 IS NULL THEN NULL ELSE {} END)",
            next_day_seq("?13")
        ),
        params![
            request.request_id,
            request.kind.as_str(),
            request.preview_id,
            request.mdtrt_id,
            request.chrg_bchno,
            request.psn_no,
            request.insuplc_admdvs,
            request.orig_setl_id,
            request.state.as_str(),
            request.setl_id,
            request.setlinfo,
            request.err_msg,
            request.setl_date,
            now()
        ],
    )?;
    Ok(())
}

fn set_visit_state(
    tx: &Transaction<'_>,
    mdtrt_id: &str,
    state: VisitState,
) -> Result<(), CacheError> {
    exec(
        tx,
        "UPDATE settle_visits SET state = ?2 WHERE mdtrt_id = ?1",
        params![mdtrt_id, text_of(&state)],
    )?;
    Ok(())
}

fn insert_call(tx: &Transaction<'_>, call: &CallRow) -> Result<(), CacheError> {
    exec(
        tx,
        &format!(
            "INSERT INTO settle_journal ({CALL_COLUMNS}, created_at, updated_at) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
        ),
        params![
            call.msgid,
            call.infno,
            call.request_id,
            call.omsgid,
            call.state.as_str(),
            call.psn_no,
            call.insuplc_admdvs,
            call.mdtrt_id,
            call.err_msg,
            now()
        ],
    )?;
    Ok(())
}

fn set_request_state(
    tx: &Transaction<'_>,
    request_id: &str,
    state: RequestState,
) -> Result<(), CacheError> {
    exec(
        tx,
        "UPDATE settlements SET state = ?2, updated_at = ?3 WHERE request_id = ?1",
        params![request_id, state.as_str(), now()],
    )?;
    Ok(())
}

fn request_where(
    tx: &Transaction<'_>,
    condition: &str,
    value: &str,
) -> Result<Option<RequestRow>, CacheError> {
    let found = query_one(
        tx,
        &format!("SELECT {REQUEST_COLUMNS} FROM settlements WHERE {condition} LIMIT 1"),
        [value],
        request_row,
    )
    .optional()?;
    found.map(finish_request).transpose()
}

fn requests_where(
    tx: &Transaction<'_>,
    condition: &str,
    value: &str,
) -> Result<Vec<RequestRow>, CacheError> {
    let select = format!("SELECT {REQUEST_COLUMNS} FROM settlements WHERE {condition}");
    rows_of(tx, &select, value, request_row, finish_request)
}

fn calls_where(
    tx: &Transaction<'_>,
    condition: &str,
    value: &str,
) -> Result<Vec<CallRow>, CacheError> {
    let select = format!("SELECT {CALL_COLUMNS} FROM settle_journal WHERE {condition}");
    rows_of(tx, &select, value, call_row, finish_call)
}

/// Every row `select` finds for `value`, read as stored by `read`, then typed by `finish`.
fn rows_of<S, T>(
    tx: &Transaction<'_>,
    select: &str,
    value: &str,
    read: fn(&Row<'_>) -> rusqlite::Result<S>,
    finish: fn(S) -> Result<T, CacheError>,
) -> Result<Vec<T>, CacheError> {
    let mut stmt = tx.prepare_cached(select)?;
    let rows = stmt.query_map([value], read)?;
    rows.map(|r| finish(r?)).collect()
}

/// Journal rows for the unit tests of the journal and of what reads it (reconcile).
#[cfg(test)]
pub(crate) mod test_rows {
    use super::*;

    /// A pending settlement request of visit M1.
    pub fn request(id: &str) -> RequestRow {
        RequestRow::settle(id, "P1", ("M1", "B1"), ("P", "500000"))
    }

    /// Visit M1 of person P, judged `may_settle` with `verdict_code`.
    pub fn visit(may_settle: MaySettle, verdict_code: Option<VerdictCode>) -> VisitRow {
        VisitRow {
            mdtrt_id: "M1".into(),
            ipt_otp_no: "O1".into(),
            patient: Patient {
                psn_no: "P".into(),
                psn_name: "小王".into(),
                insutype: "310".into(),
                psn_type: "11".into(),
                insuplc_admdvs: "500000".into(),
                mdtrt_cert_type: "03".into(),
                mdtrt_cert_no: "C06123455".into(),
                may_settle,
                verdict_code,
                ytd_hint: Some(Decimal::new(23_050, 2)),
            },
            med_type: "11".into(),
            dept_code: "A03".into(),
            dept_name: "内科".into(),
            dr_name: "李医生".into(),
            begntime: "2026-11-23 09:00:00".into(),
            state: VisitState::Registered,
        }
    }

    /// Preview P1 of visit M1, batch B1, not uploaded.
    pub fn preview() -> PreviewRow {
        PreviewRow {
            preview_id: "P1".into(),
            mdtrt_id: "M1".into(),
            chrg_bchno: "B1".into(),
            acct_used: true,
            lines: "[]".into(),
            local_split: "{}".into(),
            insurer: None,
            uploaded: false,
            fee_time: "2026-11-23 09:10:00".into(),
        }
    }

    /// A pending call of visit M1.
    pub fn call(msgid: &str, infno: &str, request_id: &str) -> CallRow {
        CallRow {
            msgid: msgid.into(),
            infno: infno.into(),
            request_id: request_id.into(),
            omsgid: None,
            state: CallState::Pending,
            psn_no: "P".into(),
            insuplc_admdvs: "500000".into(),
            mdtrt_id: "M1".into(),
            err_msg: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_rows::{call, request, visit};
    use super::*;
    use crate::cache::Cache;

    fn journal(tag: &str) -> (Journal, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("medcard-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = Cache::open(dir.join("cache.sqlite")).expect("cache");
        (Journal::new(cache.writer().clone()), dir)
    }

    #[test]
    fn a_visit_keeps_its_verdict_hint_and_state_typed() {
        let (journal, _dir) = journal("visit");
        let judged = visit(MaySettle::SelfPayOnly, Some(VerdictCode::Suspended));
        journal.insert_visit(&judged).expect("insert");
        assert_eq!(journal.visit("M1").expect("read"), Some(judged.clone()));
        journal
            .set_visit_state("M1", VisitState::Cancelled)
            .expect("cancel");
        let cancelled = journal.visit("M1").expect("read").expect("the visit");
        assert_eq!(cancelled.state, VisitState::Cancelled);
        // Stored as the wire names, as rows written before the types were: they still read.
        let stored: (String, String, String, Option<String>) = journal
            .run(|tx| {
                Ok(tx.query_row(
                    "SELECT may_settle, verdict_code, state, ytd_hint FROM settle_visits \
                     WHERE mdtrt_id = 'M1'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?)
            })
            .expect("the stored row");
        assert_eq!(
            stored,
            (
                "self_pay_only".into(),
                "suspended".into(),
                "cancelled".into(),
                Some("230.50".into())
            )
        );

        let unjudged = VisitRow {
            mdtrt_id: "M2".into(),
            ipt_otp_no: "O2".into(),
            ..visit(MaySettle::Yes, None)
        };
        journal.insert_visit(&unjudged).expect("insert");
        assert_eq!(journal.visit("M2").expect("read"), Some(unjudged));
    }

    #[test]
    fn a_visit_with_a_state_medcard_never_wrote_is_corrupt() {
        let (journal, _dir) = journal("visit-corrupt");
        journal
            .insert_visit(&visit(MaySettle::Yes, None))
            .expect("insert");
        journal
            .run(|tx| exec(tx, "UPDATE settle_visits SET may_settle = 'maybe'", []))
            .expect("update");
        assert!(matches!(
            journal.visit("M1"),
            Err(CacheError::Corrupt {
                what: "visit may_settle",
                ..
            })
        ));
    }

    #[test]
    fn reversals_whose_answers_were_lost_close_with_their_original() {
        let (journal, dir) = journal("close-reversals");
        journal
            .begin_request(&request("r1"), &call("m1", "2207", "r1"))
            .expect("begin");
        let reversal = |msgid: &str| CallRow {
            omsgid: Some("m1".into()),
            ..call(msgid, "2601", "r1")
        };
        for msgid in ["m2", "m3"] {
            journal
                .add_call(&reversal(msgid), RequestState::Unknown)
                .expect("2601");
        }
        journal
            .settle_call(&CallOutcome::new("m3", CallState::Fail))
            .expect("m3 answered");
        let closed = journal
            .close_reversals_of(
                "m1",
                CallState::Success,
                "lost; the original stands reversed",
            )
            .expect("close");
        assert_eq!(closed, 1, "only the 2601 still in doubt");
        let state = |msgid: &str| journal.call(msgid).expect("read").map(|c| c.state);
        assert_eq!(state("m2"), Some(CallState::Success));
        assert_eq!(state("m3"), Some(CallState::Fail));
        assert_eq!(
            state("m1"),
            Some(CallState::Pending),
            "the original is not a 2601"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_call_is_on_disk_before_it_is_sent_and_its_outcome_moves_the_request() {
        let (journal, dir) = journal("states");
        journal
            .begin_request(&request("r1"), &call("m1", "2207", "r1"))
            .expect("begin");
        // A second writer connection (as after a crash and restart) sees it PENDING.
        let reopened = Journal::new(
            Cache::open(dir.join("cache.sqlite"))
                .expect("reopen")
                .writer()
                .clone(),
        );
        let pending = reopened.unresolved_calls().expect("unresolved");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].state, CallState::Pending);
        assert_eq!(
            reopened
                .request_for_batch("B1")
                .expect("batch")
                .map(|r| r.request_id),
            Some("r1".into())
        );

        journal
            .settle_call(&CallOutcome {
                request: Some(RequestUpdate::state("r1", RequestState::Unknown)),
                ..CallOutcome::new("m1", CallState::Unknown)
            })
            .expect("unknown");
        assert_eq!(
            journal
                .unresolved_calls_for_visit("M1")
                .expect("visit")
                .len(),
            1
        );
        journal
            .add_call(
                &CallRow {
                    omsgid: Some("m1".into()),
                    ..call("m2", "2601", "r1")
                },
                RequestState::Unknown,
            )
            .expect("2601");
        // A 2601 is never itself "unresolved money": only 2207/2208 are listed.
        assert_eq!(journal.unresolved_calls().expect("unresolved").len(), 1);
        journal
            .settle_call(&CallOutcome {
                request: Some(RequestUpdate::state("r1", RequestState::Retry)),
                ..CallOutcome::new("m1", CallState::Reversed)
            })
            .expect("reversed");
        assert!(journal.unresolved_calls().expect("unresolved").is_empty());
        // An undone request frees its batch for another request_id.
        assert_eq!(journal.request_for_batch("B1").expect("batch"), None);
        let calls: Vec<CallState> = journal
            .calls("r1")
            .expect("calls")
            .iter()
            .map(|c| c.state)
            .collect();
        assert_eq!(calls, [CallState::Reversed, CallState::Pending]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `r` settled on `date` by its call `m`.
    fn settled(journal: &Journal, r: &str, m: &str, date: &str) {
        journal
            .settle_call(&CallOutcome {
                request: Some(RequestUpdate {
                    setl_date: Some(date),
                    ..RequestUpdate::state(r, RequestState::Settled)
                }),
                ..CallOutcome::new(m, CallState::Success)
            })
            .expect("settled");
    }

    fn page(journal: &Journal, after: Option<&str>) -> Option<Vec<String>> {
        let rows = journal
            .requests_on_page("2026-11-23", after, 1)
            .expect("page");
        rows.map(|rows| rows.into_iter().map(|r| r.request_id).collect())
    }

    #[test]
    fn a_request_resolved_late_joins_the_end_of_its_day_never_a_page_already_read() {
        let (journal, dir) = journal("pages");
        // r1 is sent first but resolved last (its 2207 went unanswered); r2 settles at once.
        for (r, m) in [("r1", "m1"), ("r2", "m2")] {
            journal
                .begin_request(&request(r), &call(m, "2207", r))
                .expect("begin");
        }
        settled(&journal, "r2", "m2", "2026-11-23");
        assert_eq!(page(&journal, None), Some(vec!["r2".to_owned()]));
        settled(&journal, "r1", "m1", "2026-11-23");
        // The reader of page one goes on after r2 and finds r1; the day has nothing more.
        assert_eq!(page(&journal, Some("r2")), Some(vec!["r1".to_owned()]));
        assert_eq!(page(&journal, Some("r1")), Some(vec![]));
        // A cash-only settlement, final when written, joins the end too.
        let cash = RequestRow {
            state: RequestState::SelfPay,
            setl_date: Some("2026-11-23".into()),
            ..request("r3")
        };
        journal.insert_final_request(&cash).expect("cash");
        assert_eq!(page(&journal, Some("r1")), Some(vec!["r3".to_owned()]));
        // An after that is no request of the day is not an empty page.
        assert_eq!(page(&journal, Some("r9")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_day_settled_before_day_seq_existed_is_listed_in_the_order_written() {
        let dir = std::env::temp_dir().join(format!("medcard-journal-v4-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("cache.sqlite");
        let before = crate::cache::migrations::MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN day_seq"))
            .expect("the day_seq migration");
        let conn = rusqlite::Connection::open(&path).expect("open");
        for script in &crate::cache::migrations::MIGRATIONS[..before] {
            conn.execute_batch(script).expect("older schema");
        }
        for r in ["r2", "r1"] {
            conn.execute(
                "INSERT INTO settlements (request_id, kind, mdtrt_id, chrg_bchno, psn_no, state, \
                 setl_date, created_at, updated_at) \
                 VALUES (?1, 'settle', 'M1', ?1, 'P', 'settled', '2026-11-23', 1, 1)",
                [r],
            )
            .expect("older row");
        }
        conn.pragma_update(None, "user_version", before)
            .expect("version");
        drop(conn);
        let journal = Journal::new(Cache::open(&path).expect("migrated").writer().clone());
        assert_eq!(page(&journal, None), Some(vec!["r2".to_owned()]));
        assert_eq!(page(&journal, Some("r2")), Some(vec!["r1".to_owned()]));
        // The next settlement of that day joins its end.
        journal
            .begin_request(&request("r3"), &call("m3", "2207", "r3"))
            .expect("begin");
        settled(&journal, "r3", "m3", "2026-11-23");
        assert_eq!(page(&journal, Some("r1")), Some(vec!["r3".to_owned()]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_persons_settlements_are_the_made_ones_newest_first() {
        let (journal, dir) = journal("person");
        // P: r1 on the 22nd, r2 and r3 on the 23rd (r3 settled after r2), r4 refused, r5
        // still out; Q: q1.
        for (r, m) in [
            ("r1", "m1"),
            ("r3", "m3"),
            ("r2", "m2"),
            ("r4", "m4"),
            ("r5", "m5"),
        ] {
            journal
                .begin_request(&request(r), &call(m, "2207", r))
                .expect("begin");
        }
        settled(&journal, "r1", "m1", "2026-11-22");
        settled(&journal, "r2", "m2", "2026-11-23");
        settled(&journal, "r3", "m3", "2026-11-23");
        journal
            .settle_call(&CallOutcome {
                request: Some(RequestUpdate::state("r4", RequestState::Refused)),
                ..CallOutcome::new("m4", CallState::Fail)
            })
            .expect("refused");
        let other = RequestRow {
            psn_no: "Q".into(),
            ..request("q1")
        };
        journal
            .begin_request(&other, &call("mq", "2207", "q1"))
            .expect("begin");
        settled(&journal, "q1", "mq", "2026-11-23");
        let cash = RequestRow {
            state: RequestState::SelfPay,
            setl_date: Some("2026-11-24".into()),
            ..request("r6")
        };
        journal.insert_final_request(&cash).expect("cash");
        let ids = |psn_no: &str, limit: usize| -> Vec<String> {
            journal
                .settlements_of_person(psn_no, limit)
                .expect("settlements")
                .into_iter()
                .map(|r| r.request_id)
                .collect()
        };
        assert_eq!(ids("P", 20), ["r6", "r3", "r2", "r1"]);
        assert_eq!(ids("P", 2), ["r6", "r3"]);
        assert_eq!(ids("Q", 20), ["q1"]);
        assert!(ids("nobody", 20).is_empty());
        // Found by the person's index, not by reading every settlement.
        let plan: Vec<String> = journal
            .run(|tx| {
                let mut stmt = tx.prepare(
                    "EXPLAIN QUERY PLAN SELECT request_id FROM settlements WHERE psn_no = 'P' \
                     AND kind = 'settle' AND state IN ('settled', 'refunded', 'self_pay') \
                     ORDER BY setl_date DESC, day_seq DESC LIMIT 20",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .expect("plan");
        assert!(
            plan.iter().any(|step| step.contains("settlements_person")),
            "{plan:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_settled_request_is_final_and_a_refund_marks_its_original() {
        let (journal, dir) = journal("refund");
        journal
            .begin_request(&request("r1"), &call("m1", "2207", "r1"))
            .expect("begin");
        journal
            .settle_call(&CallOutcome {
                request: Some(RequestUpdate {
                    setl_id: Some("S1"),
                    setl_date: Some("2026-11-23"),
                    ..RequestUpdate::state("r1", RequestState::Settled)
                }),
                ..CallOutcome::new("m1", CallState::Success)
            })
            .expect("settled");
        let settled = journal
            .request_by_setl_id("S1")
            .expect("by setl_id")
            .expect("found");
        assert!(settled.state.is_final());
        assert_eq!(journal.requests_on("2026-11-23").expect("day").len(), 1);
        let refund = RequestRow {
            request_id: "f1".into(),
            kind: RequestKind::Refund,
            orig_setl_id: Some("S1".into()),
            ..request("f1")
        };
        journal
            .begin_request(&refund, &call("m2", "2208", "f1"))
            .expect("refund");
        journal
            .settle_call(&CallOutcome {
                request: Some(RequestUpdate::state("f1", RequestState::Settled)),
                refunds: Some("S1"),
                ..CallOutcome::new("m2", CallState::Success)
            })
            .expect("refunded");
        let original = journal.request("r1").expect("r1").expect("found");
        assert_eq!(original.state, RequestState::Refunded);
        // The person's statement lists the refunded settlement, not the refund.
        let listed: Vec<(String, RequestState)> = journal
            .settlements_of_person("P", 20)
            .expect("settlements")
            .into_iter()
            .map(|r| (r.request_id, r.state))
            .collect();
        assert_eq!(listed, [("r1".to_owned(), RequestState::Refunded)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
