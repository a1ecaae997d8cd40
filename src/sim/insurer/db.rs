//! The simulator's own SQLite database: persons, insuinfo, cards, card_events, catalogue,
//! sign_ins and msg_log (every request's msgid, infno and outcome — what reversal and
//! reconciliation need), plus the settlement books ([`super::books`]) and the personal
//! accounts ([`super::accounts`]). One connection behind the state's mutex.

use super::SimError;
use super::accounts::{self, AccountKey};
use super::clock;
use super::fixtures::{Fixtures, PersonFixture};
use super::policies::SimPolicies;
use crate::clock::DateTime;
use crate::insurer::types::{
    CardEventKind, CardEventPage, CardStatusEvent, CatalogueItem, CataloguePage, ChrgitmLv,
    InsuInfo, PersonBase, PersonInfo,
};
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::path::Path;
use std::str::FromStr;

/// Why a transaction got no business answer.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// A business refusal: infcode −1 with this err_msg, in the platform's words.
    #[error("{0}")]
    Refused(String),
    /// The simulator itself failed: also infcode −1, "系统内部错误".
    #[error("internal: {0}")]
    Internal(#[source] Internal),
}

/// How the simulator itself failed.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// The database (also a stored amount or JSON column that does not read back).
    #[error("{0}")]
    Db(#[from] rusqlite::Error),
    /// An answer part that does not serialise.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// The stored business date.
    #[error("{0}")]
    StoredDate(#[from] crate::clock::BadDate),
    #[error("settlement identities broken: {0}")]
    Identities(#[from] crate::money::BrokenIdentity),
    #[error("month {year}-{month}")]
    NoSuchMonth { year: i32, month: u32 },
    #[error("prior visit date {year}-{month}-{day}")]
    NoSuchVisitDate { year: i32, month: u32, day: u32 },
    /// A result file that could not be made.
    #[error("{0}")]
    File(#[from] crate::insurer::files::FileError),
}

impl<E: Into<Internal>> From<E> for TxError {
    fn from(e: E) -> TxError {
        TxError::Internal(e.into())
    }
}

impl TxError {
    /// The refusal's err_msg, or what failed inside (the admin endpoint's answer).
    pub fn message(&self) -> String {
        match self {
            TxError::Refused(msg) => msg.clone(),
            TxError::Internal(why) => why.to_string(),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS persons (
  psn_no TEXT PRIMARY KEY, certno TEXT NOT NULL UNIQUE, psn_cert_type TEXT NOT NULL,
  psn_name TEXT NOT NULL, gend TEXT NOT NULL, naty TEXT NOT NULL, brdy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS insuinfo (
  certno TEXT NOT NULL, insutype TEXT NOT NULL, psn_type TEXT NOT NULL,
  psn_insu_stas TEXT NOT NULL, balc TEXT NOT NULL, insuplc_admdvs TEXT NOT NULL,
  psn_insu_date TEXT, paus_insu_date TEXT, PRIMARY KEY (certno, insutype));
CREATE TABLE IF NOT EXISTS cards (
  card_no TEXT PRIMARY KEY, card_sn TEXT NOT NULL, certno TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'normal');
CREATE TABLE IF NOT EXISTS card_events (
  ver INTEGER PRIMARY KEY AUTOINCREMENT, card_no TEXT NOT NULL, card_sn TEXT,
  certno TEXT NOT NULL, kind TEXT NOT NULL, new_card_no TEXT, event_time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalogue (
  ver INTEGER PRIMARY KEY AUTOINCREMENT, hilist_code TEXT NOT NULL, hilist_name TEXT NOT NULL,
  chrgitm_lv TEXT NOT NULL, selfpay_prop TEXT NOT NULL, pric_uplmt_amt TEXT,
  vali_flag INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sign_ins (
  sign_no TEXT PRIMARY KEY, opter TEXT NOT NULL, sign_time TEXT NOT NULL,
  valid INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS msg_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT, msgid TEXT NOT NULL, infno TEXT NOT NULL,
  received_at TEXT NOT NULL, outcome TEXT NOT NULL, infcode INTEGER, err_msg TEXT,
  inf_refmsgid TEXT);
CREATE INDEX IF NOT EXISTS msg_log_msgid ON msg_log (msgid);
";

/// The database.
pub struct SimDb {
    conn: Connection,
}

fn kind_name(kind: CardEventKind) -> &'static str {
    match kind {
        CardEventKind::Lost => "lost",
        CardEventKind::Unlocked => "unlocked",
        CardEventKind::Replaced => "replaced",
        CardEventKind::Cancelled => "cancelled",
    }
}

/// `lost` / `unlocked` / `replaced` / `cancelled`.
pub fn parse_kind(name: &str) -> Option<CardEventKind> {
    match name {
        "lost" => Some(CardEventKind::Lost),
        "unlocked" => Some(CardEventKind::Unlocked),
        "replaced" => Some(CardEventKind::Replaced),
        "cancelled" => Some(CardEventKind::Cancelled),
        _ => None,
    }
}

/// The card status an event leaves behind.
fn status_after(kind: CardEventKind) -> &'static str {
    match kind {
        CardEventKind::Lost => "lost",
        CardEventKind::Unlocked => "normal",
        CardEventKind::Replaced => "replaced",
        CardEventKind::Cancelled => "cancelled",
    }
}

fn parse_lv(code: &str) -> ChrgitmLv {
    match code {
        "01" => ChrgitmLv::A,
        "02" => ChrgitmLv::B,
        _ => ChrgitmLv::C,
    }
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_default()
}

fn opt_u64(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

/// Every row `sql` selects with `params`, each read by `row`.
pub fn select_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, TxError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How this platform words 1101's refusal of an unusable card (regions differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTexts {
    pub lost: String,
    pub replaced: String,
    pub cancelled: String,
}

impl Default for CardTexts {
    fn default() -> CardTexts {
        CardTexts {
            lost: "该社会保障卡已挂失，不能使用".into(),
            replaced: "该社会保障卡已补换新卡，原卡不能使用".into(),
            cancelled: "该社会保障卡已注销".into(),
        }
    }
}

impl CardTexts {
    /// Sets one text from `KIND=TEXT` (`lost`, `replaced`, `cancelled`).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (kind, text) = assignment
            .split_once('=')
            .ok_or_else(|| format!("{assignment:?} is not KIND=TEXT"))?;
        let slot = match kind.trim() {
            "lost" => &mut self.lost,
            "replaced" => &mut self.replaced,
            "cancelled" => &mut self.cancelled,
            other => {
                return Err(format!(
                    "no card refusal {other:?} (lost, replaced, cancelled)"
                ));
            }
        };
        *slot = text.to_owned();
        Ok(())
    }
}

impl SimDb {
    /// Open (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<SimDb, SimError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        for schema in [
            SCHEMA,
            super::books::SCHEMA,
            accounts::SCHEMA,
            super::files::SCHEMA,
            super::ec_voucher::SCHEMA,
        ] {
            conn.execute_batch(schema)?;
        }
        add_column(&conn, "msg_log", "opter_type", "TEXT")?;
        Ok(SimDb { conn })
    }

    /// The connection, for the settlement modules.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for a transaction.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Seed from fixtures when the database holds no persons yet; accounts, earlier visits
    /// and bindings are booked in the business year (the clock's).
    pub fn seed(&mut self, fixtures: &Fixtures, policies: &SimPolicies) -> Result<(), SimError> {
        let seeded: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM persons", [], |r| r.get(0))?;
        if seeded > 0 {
            return Ok(());
        }
        self.seed_all(fixtures, policies).map_err(SimError::Seed)
    }

    fn seed_all(&mut self, fixtures: &Fixtures, policies: &SimPolicies) -> Result<(), TxError> {
        let year = clock::business_date(&self.conn)?.year();
        let tx = self.conn.transaction()?;
        for p in &fixtures.persons {
            insert_person(&tx, p)?;
        }
        for p in &fixtures.persons {
            accounts::seed_person(&tx, policies, p, year)?;
        }
        accounts::seed_bindings(&tx, &fixtures.bindings)?;
        for item in &fixtures.catalogue {
            tx.execute(
                "INSERT INTO catalogue (hilist_code, hilist_name, chrgitm_lv, selfpay_prop, \
                 pric_uplmt_amt, vali_flag) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    item.hilist_code,
                    item.hilist_name,
                    item.chrgitm_lv,
                    item.selfpay_prop,
                    item.pric_uplmt_amt,
                    item.vali_flag
                ],
            )?;
        }
        tx.commit()?;
        for e in &fixtures.card_events {
            let kind = parse_kind(&e.kind)
                .ok_or_else(|| TxError::Refused(format!("unknown event kind {}", e.kind)))?;
            self.card_event(&e.card_no, kind, e.new_card_no.as_deref(), &e.event_time)?;
        }
        Ok(())
    }

    /// 1101 by card: the card must exist, match its 卡识别码 and be usable (refused in the
    /// region's words, `texts`).
    pub fn person_by_card(
        &self,
        card_no: &str,
        card_sn: &str,
        texts: &CardTexts,
    ) -> Result<PersonInfo, TxError> {
        if card_sn.is_empty() {
            return Err(TxError::Refused(
                "就诊凭证类型为03时，卡识别码[card_sn]不能为空".into(),
            ));
        }
        let card: Option<(String, String, String)> = self
            .conn
            .query_row(
                "SELECT card_sn, certno, status FROM cards WHERE card_no = ?1",
                [card_no],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((sn, certno, status)) = card else {
            return Err(TxError::Refused("未查询到人员信息".into()));
        };
        if !sn.eq_ignore_ascii_case(card_sn) {
            return Err(TxError::Refused("卡识别码与社会保障卡号不匹配".into()));
        }
        match status.as_str() {
            "lost" => Err(TxError::Refused(texts.lost.clone())),
            "replaced" => Err(TxError::Refused(texts.replaced.clone())),
            "cancelled" => Err(TxError::Refused(texts.cancelled.clone())),
            _ => self.person_by_certno(&certno),
        }
    }

    /// 1101 by certno.
    pub fn person_by_certno(&self, certno: &str) -> Result<PersonInfo, TxError> {
        let base = self
            .conn
            .query_row(
                "SELECT psn_no, psn_cert_type, certno, psn_name, gend, naty, brdy \
                 FROM persons WHERE certno = ?1",
                [certno],
                |r| {
                    Ok(PersonBase {
                        psn_no: r.get(0)?,
                        psn_cert_type: r.get(1)?,
                        certno: r.get(2)?,
                        psn_name: r.get(3)?,
                        gend: r.get(4)?,
                        naty: r.get(5)?,
                        brdy: r.get(6)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| TxError::Refused("未查询到人员信息".into()))?;
        let mut insuinfo = select_all(
            &self.conn,
            "SELECT balc, insutype, psn_type, psn_insu_stas, insuplc_admdvs, psn_insu_date, \
             paus_insu_date FROM insuinfo WHERE certno = ?1 ORDER BY insutype",
            [certno],
            |r| {
                Ok(InsuInfo {
                    balc: decimal(&r.get::<_, String>(0)?),
                    insutype: r.get(1)?,
                    psn_type: r.get(2)?,
                    psn_insu_stas: r.get(3)?,
                    insuplc_admdvs: r.get(4)?,
                    psn_insu_date: r.get(5)?,
                    paus_insu_date: r.get(6)?,
                })
            },
        )?;
        for row in &mut insuinfo {
            let account = AccountKey::new(&base.psn_no, &row.insutype);
            row.balc = accounts::balance(&self.conn, &account, None)?;
        }
        Ok(PersonInfo {
            baseinfo: base,
            insuinfo,
        })
    }

    /// Record a card event (and the card's new status); returns its version.
    pub fn card_event(
        &self,
        card_no: &str,
        kind: CardEventKind,
        new_card_no: Option<&str>,
        event_time: &str,
    ) -> Result<u64, TxError> {
        let (card_sn, certno): (String, String) = self
            .conn
            .query_row(
                "SELECT card_sn, certno FROM cards WHERE card_no = ?1",
                [card_no],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| TxError::Refused(format!("卡号[{card_no}]不存在")))?;
        if kind == CardEventKind::Replaced {
            let new_no =
                new_card_no.ok_or_else(|| TxError::Refused("补换卡须提供新卡号".into()))?;
            self.ensure_card(new_no, &card_sn, &certno)?;
        }
        self.conn.execute(
            "UPDATE cards SET status = ?2 WHERE card_no = ?1",
            params![card_no, status_after(kind)],
        )?;
        self.conn.execute(
            "INSERT INTO card_events (card_no, card_sn, certno, kind, new_card_no, event_time) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                card_no,
                card_sn,
                certno,
                kind_name(kind),
                new_card_no,
                event_time
            ],
        )?;
        Ok(opt_u64(Some(self.conn.last_insert_rowid())))
    }

    /// A replacement card: kept if known, else created with a 卡识别码 in the old one's region.
    fn ensure_card(&self, card_no: &str, old_sn: &str, certno: &str) -> Result<(), TxError> {
        let serial = format!("{:016X}", fxhash(card_no));
        let region: String = old_sn.chars().take(16).collect();
        self.conn.execute(
            "INSERT OR IGNORE INTO cards (card_no, card_sn, certno) VALUES (?1, ?2, ?3)",
            params![card_no, format!("{region}{serial}"), certno],
        )?;
        Ok(())
    }

    /// X101: events after `after`, at most `limit`, oldest first.
    pub fn card_events(&self, after: u64, limit: u32) -> Result<CardEventPage, TxError> {
        let events = select_all(
            &self.conn,
            "SELECT ver, card_no, card_sn, certno, kind, new_card_no, event_time FROM card_events \
             WHERE ver > ?1 ORDER BY ver LIMIT ?2",
            params![after as i64, limit],
            |r| {
                let kind: String = r.get(4)?;
                Ok(CardStatusEvent {
                    version: opt_u64(r.get(0)?),
                    card_no: r.get(1)?,
                    card_sn: r.get(2)?,
                    certno: r.get(3)?,
                    kind: parse_kind(&kind).unwrap_or(CardEventKind::Lost),
                    new_card_no: r.get(5)?,
                    event_time: r.get(6)?,
                })
            },
        )?;
        Ok(CardEventPage {
            events,
            latest_version: self.max_ver("card_events")?,
        })
    }

    /// X102: catalogue changes after `after`, at most `limit`, oldest first.
    pub fn catalogue(&self, after: u64, limit: u32) -> Result<CataloguePage, TxError> {
        let items = select_all(
            &self.conn,
            "SELECT ver, hilist_code, hilist_name, chrgitm_lv, selfpay_prop, pric_uplmt_amt, \
             vali_flag FROM catalogue WHERE ver > ?1 ORDER BY ver LIMIT ?2",
            params![after as i64, limit],
            catalogue_row,
        )?;
        Ok(CataloguePage {
            items,
            latest_version: self.max_ver("catalogue")?,
        })
    }

    fn max_ver(&self, table: &str) -> Result<u64, TxError> {
        let sql = format!("SELECT MAX(ver) FROM {table}");
        let max: Option<i64> = self.conn.query_row(&sql, [], |r| r.get(0))?;
        Ok(opt_u64(max))
    }

    /// Suspend (2) or resume (1) every insurance row of a person.
    pub fn set_insu_stas(&self, certno: &str, stas: &str) -> Result<usize, TxError> {
        let paus = (stas != "1").then(|| DateTime::now().date());
        let n = self.conn.execute(
            "UPDATE insuinfo SET psn_insu_stas = ?2, paus_insu_date = ?3 WHERE certno = ?1",
            params![certno, stas, paus],
        )?;
        if n == 0 {
            return Err(TxError::Refused("未查询到人员信息".into()));
        }
        Ok(n)
    }

    /// Set an account's balance (admin `set_balc`): an adjust entry for the difference.
    pub fn set_balc(&self, certno: &str, insutype: &str, balc: Decimal) -> Result<(), TxError> {
        let psn_no: Option<String> = self
            .conn
            .query_row(
                "SELECT p.psn_no FROM persons p JOIN insuinfo i ON i.certno = p.certno \
                 WHERE p.certno = ?1 AND i.insutype = ?2",
                params![certno, insutype],
                |r| r.get(0),
            )
            .optional()?;
        let psn_no = psn_no.ok_or_else(|| TxError::Refused("未查询到该险种参保信息".into()))?;
        let today = clock::business_date(&self.conn)?.to_string();
        accounts::set_balance(
            &self.conn,
            &AccountKey::new(&psn_no, insutype),
            balc,
            &today,
        )
    }

    /// The catalogue's item for a code (its newest version), if any.
    pub fn catalogue_item(&self, code: &str) -> Result<Option<CatalogueItem>, TxError> {
        let item = self
            .conn
            .query_row(
                "SELECT ver, hilist_code, hilist_name, chrgitm_lv, selfpay_prop, pric_uplmt_amt, \
                 vali_flag FROM catalogue WHERE hilist_code = ?1 ORDER BY ver DESC LIMIT 1",
                [code],
                catalogue_row,
            )
            .optional()?;
        Ok(item)
    }

    /// 9001: a new sign_no for an operator.
    pub fn sign_in(&self, opter: &str, sign_no: &str, sign_time: &str) -> Result<(), TxError> {
        self.conn.execute(
            "INSERT INTO sign_ins (sign_no, opter, sign_time) VALUES (?1, ?2, ?3)",
            params![sign_no, opter, sign_time],
        )?;
        Ok(())
    }

    pub fn sign_no_valid(&self, sign_no: &str) -> Result<bool, TxError> {
        let valid: Option<i64> = self
            .conn
            .query_row(
                "SELECT valid FROM sign_ins WHERE sign_no = ?1",
                [sign_no],
                |r| r.get(0),
            )
            .optional()?;
        Ok(valid == Some(1))
    }

    /// 9002: the sign-in ends.
    pub fn sign_out(&self, sign_no: &str) -> Result<(), TxError> {
        self.conn.execute(
            "UPDATE sign_ins SET valid = 0 WHERE sign_no = ?1",
            [sign_no],
        )?;
        Ok(())
    }

    /// Every sign-in lapses (admin `expire_signins`).
    pub fn expire_sign_ins(&self) -> Result<usize, TxError> {
        Ok(self.conn.execute("UPDATE sign_ins SET valid = 0", [])?)
    }

    /// Whether a msgid has been received before.
    pub fn msgid_seen(&self, msgid: &str) -> Result<bool, TxError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM msg_log WHERE msgid = ?1",
            [msgid],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn log_msg(&self, entry: &MsgLogEntry<'_>) -> Result<(), TxError> {
        self.conn.execute(
            "INSERT INTO msg_log (msgid, infno, received_at, outcome, infcode, err_msg, \
             inf_refmsgid, opter_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                entry.msgid,
                entry.infno,
                DateTime::now().datetime(),
                entry.outcome,
                entry.infcode,
                entry.err_msg,
                entry.inf_refmsgid,
                entry.opter_type
            ],
        )?;
        Ok(())
    }

    /// msg_log rows, all or for one msgid, oldest first (at most 1000).
    pub fn msg_log(&self, msgid: Option<&str>) -> Result<Vec<Value>, TxError> {
        select_all(
            &self.conn,
            "SELECT msgid, infno, received_at, outcome, infcode, err_msg, inf_refmsgid, \
             opter_type FROM msg_log WHERE ?1 IS NULL OR msgid = ?1 ORDER BY id LIMIT 1000",
            [msgid],
            |r| {
                Ok(json!({
                    "msgid": r.get::<_, String>(0)?, "infno": r.get::<_, String>(1)?,
                    "received_at": r.get::<_, String>(2)?, "outcome": r.get::<_, String>(3)?,
                    "infcode": r.get::<_, Option<i64>>(4)?, "err_msg": r.get::<_, Option<String>>(5)?,
                    "inf_refmsgid": r.get::<_, Option<String>>(6)?,
                    "opter_type": r.get::<_, Option<String>>(7)?,
                }))
            },
        )
    }

    /// Bulk card events on synthetic cards (benchmarks), `count` events in all: synthetic
    /// card *k* (卡号 [`synthetic_card_no`]`(k)`) is reported lost and then unlocked, except
    /// every tenth card (*k* % 10 = 7: [`synthetic_card_stays_lost`]), which is only reported
    /// lost. Each call starts again at card 0, so a second call changes known cards.
    pub fn generate_card_events(&mut self, count: u32) -> Result<u64, TxError> {
        let now = DateTime::now().datetime();
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO card_events (card_no, card_sn, certno, kind, new_card_no, event_time) \
                 VALUES (?1, NULL, ?2, ?3, NULL, ?4)",
            )?;
            let (mut written, mut card) = (0u32, 0u32);
            while written < count {
                let card_no = synthetic_card_no(card);
                let certno = synthetic_certno(card);
                let kinds: &[&str] = if synthetic_card_stays_lost(card) {
                    &["lost"]
                } else {
                    &["lost", "unlocked"]
                };
                for kind in kinds.iter().take((count - written) as usize) {
                    insert.execute(params![card_no, certno, kind, now])?;
                    written += 1;
                }
                card += 1;
            }
        }
        tx.commit()?;
        self.max_ver("card_events")
    }

    /// Bulk catalogue items (benchmarks), classes 甲 / 乙 / 丙 in turn.
    pub fn generate_catalogue(&mut self, count: u32) -> Result<u64, TxError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO catalogue (hilist_code, hilist_name, chrgitm_lv, selfpay_prop, \
                 pric_uplmt_amt, vali_flag) VALUES (?1, ?2, ?3, ?4, NULL, 1)",
            )?;
            for i in 0..count {
                let (lv, prop) = match i % 3 {
                    0 => ("01", "0.00"),
                    1 => ("02", "0.10"),
                    _ => ("03", "0.00"),
                };
                insert.execute(params![
                    format!("XG{i:013}"),
                    format!("模拟药品{i}"),
                    lv,
                    prop
                ])?;
            }
        }
        tx.commit()?;
        self.max_ver("catalogue")
    }
}

/// A catalogue row (ver, hilist_code, hilist_name, chrgitm_lv, selfpay_prop,
/// pric_uplmt_amt, vali_flag).
fn catalogue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CatalogueItem> {
    let cap: Option<String> = r.get(5)?;
    Ok(CatalogueItem {
        version: opt_u64(r.get(0)?),
        hilist_code: r.get(1)?,
        hilist_name: r.get(2)?,
        chrgitm_lv: parse_lv(&r.get::<_, String>(3)?),
        selfpay_prop: decimal(&r.get::<_, String>(4)?),
        pric_uplmt_amt: cap.as_deref().map(decimal),
        vali_flag: r.get(6)?,
    })
}

/// `ALTER TABLE table ADD COLUMN column kind` unless the table has it (a database file made
/// by an earlier simulator).
fn add_column(
    conn: &Connection,
    table: &str,
    column: &str,
    kind: &str,
) -> Result<(), rusqlite::Error> {
    let has: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
        [column],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}

/// One msg_log row to write.
#[derive(Debug, Clone)]
pub struct MsgLogEntry<'a> {
    pub msgid: &'a str,
    pub infno: &'a str,
    /// The envelope's 经办人类别 as sent.
    pub opter_type: &'a str,
    pub outcome: &'a str,
    pub infcode: Option<i64>,
    pub err_msg: Option<&'a str>,
    pub inf_refmsgid: Option<&'a str>,
}

fn insert_person(tx: &rusqlite::Transaction<'_>, p: &PersonFixture) -> Result<(), TxError> {
    tx.execute(
        "INSERT INTO persons (psn_no, certno, psn_cert_type, psn_name, gend, naty, brdy) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            p.psn_no,
            p.certno,
            p.psn_cert_type,
            p.psn_name,
            p.gend,
            p.naty,
            p.brdy
        ],
    )?;
    for i in &p.insuinfo {
        tx.execute(
            "INSERT INTO insuinfo (certno, insutype, psn_type, psn_insu_stas, balc, \
             insuplc_admdvs, psn_insu_date, paus_insu_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                p.certno,
                i.insutype,
                i.psn_type,
                i.psn_insu_stas,
                i.balc,
                i.insuplc_admdvs,
                i.psn_insu_date,
                i.paus_insu_date
            ],
        )?;
    }
    for c in &p.cards {
        tx.execute(
            "INSERT INTO cards (card_no, card_sn, certno) VALUES (?1, ?2, ?3)",
            params![c.card_no, c.card_sn, p.certno],
        )?;
    }
    Ok(())
}

/// Whether [`SimDb::generate_card_events`] leaves synthetic card `n` lost.
pub fn synthetic_card_stays_lost(n: u32) -> bool {
    n % 10 == 7
}

/// How many synthetic cards `count` generated events touch.
pub fn synthetic_cards_for(count: u32) -> u32 {
    // Every block of ten cards takes nineteen events.
    let (blocks, rest) = (count / 19, count % 19);
    let cards = blocks * 10;
    let mut left = rest;
    let mut card = 0;
    while left > 0 {
        left = left.saturating_sub(if synthetic_card_stays_lost(card) {
            1
        } else {
            2
        });
        card += 1;
    }
    cards + card
}

/// The 卡号 of synthetic card `n`: `Y` + 7 digits + the check character.
pub fn synthetic_card_no(n: u32) -> String {
    let body = format!("Y{:07}", n % 10_000_000);
    let check = crate::card::card_no_check_char(&body).unwrap_or('0');
    format!("{body}{check}")
}

/// An invented certno (region 110101, born 1990-01-01) with a valid check character.
pub fn synthetic_certno(n: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    let body = format!("11010119900101{:03}", n % 1000);
    let sum: u32 = body
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    format!("{body}{}", C[(sum % 11) as usize])
}

/// FNV-1a, for stable invented serials.
fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
