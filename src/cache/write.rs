//! The one writer: the read-write connection behind a `Mutex`, each write one transaction.
//! A feed page and its watermark (`sync_state.version`) commit together, so a crash leaves a
//! page wholly applied or not at all; applying a page again changes nothing.

use super::msgids::MsgIdMemory;
use super::read::one_row;
use super::{CacheError, CardStatus, StorageHealth, version_to_sql};
use crate::clock::unix_seconds;
use crate::insurer::{
    CardEventKind, CardEventPage, CardStatusEvent, CatalogueItem, CataloguePage, ChrgitmLv,
    InsuInfo, Partition, PersonInfo,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// The cache's only read-write connection. Cloning shares it.
#[derive(Clone)]
pub struct CacheWriter {
    conn: Arc<Mutex<Connection>>,
    health: StorageHealth,
    /// What the msgid sources of this cache in the process share ([`super::CacheMsgIds`]).
    msgids: Arc<Mutex<MsgIdMemory>>,
}

impl CacheWriter {
    pub(super) fn new(conn: Connection) -> CacheWriter {
        CacheWriter {
            conn: Arc::new(Mutex::new(conn)),
            health: StorageHealth::default(),
            msgids: Arc::default(),
        }
    }

    /// Whether writes reach the disk (the last storage failure, while it lasts).
    pub fn health(&self) -> &StorageHealth {
        &self.health
    }

    /// What the msgid sources of this cache in the process share (see
    /// [`super::CacheMsgIds`]).
    pub(crate) fn msgid_memory(&self) -> MutexGuard<'_, MsgIdMemory> {
        self.msgids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, CacheError> {
        self.conn.lock().map_err(|_| CacheError::Poisoned)
    }

    /// Frees what the write connection's page cache holds (`PRAGMA shrink_memory`): after a
    /// burst of large bills it would otherwise keep up to its whole size while idle.
    pub fn release_memory(&self) -> Result<(), CacheError> {
        self.lock()?.execute_batch("PRAGMA shrink_memory")?;
        Ok(())
    }

    /// Runs `work` in one transaction on the write connection (the settlement journal writes
    /// through this too: one writer for the whole file).
    pub(crate) fn in_transaction<T>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let mut conn = self.lock()?;
        let before = conn.total_changes();
        let result = (|| {
            let tx = conn.transaction()?;
            let value = work(&tx)?;
            let wrote = tx.total_changes() != before;
            #[cfg(feature = "fault-injection")]
            if wrote && super::fault::disk_full() {
                return Err(super::health::disk_full());
            }
            tx.commit()?;
            Ok((value, wrote))
        })();
        match result {
            Ok((value, wrote)) => {
                if wrote {
                    self.health.wrote();
                }
                Ok(value)
            }
            Err(e) => {
                self.health.failed(&e);
                Err(e)
            }
        }
    }

    /// Stores a 1101 answer (replacing the person's earlier insuinfo rows).
    pub fn store_person(
        &self,
        info: &PersonInfo,
        fetched_at: SystemTime,
    ) -> Result<(), CacheError> {
        self.in_transaction(|tx| upsert_person(tx, info, fetched_at))
    }

    /// Stores a 1101 answer obtained by card, and remembers which person the card belongs to
    /// (a card the feed has not mentioned yet is recorded as active; a status learned from
    /// an earlier 1101 refusal — `updated_version` 0 — is active again, since the insurer
    /// now answers for the card).
    pub fn store_person_for_card(
        &self,
        card_no: &str,
        card_sn: Option<&str>,
        info: &PersonInfo,
        fetched_at: SystemTime,
    ) -> Result<(), CacheError> {
        self.in_transaction(|tx| {
            upsert_person(tx, info, fetched_at)?;
            tx.execute(
                "INSERT INTO cards (card_no, card_sn, certno, status, updated_version)
                 VALUES (?1, ?2, ?3, 'active', 0)
                 ON CONFLICT(card_no) DO UPDATE SET
                   card_sn = COALESCE(excluded.card_sn, cards.card_sn),
                   status = CASE WHEN cards.updated_version = 0 THEN 'active' ELSE cards.status END,
                   replaced_by = CASE WHEN cards.updated_version = 0 THEN NULL
                                      ELSE cards.replaced_by END",
                params![card_no, card_sn, info.baseinfo.certno],
            )?;
            Ok(())
        })
    }

    /// Remembers a card's status as a 1101 refusal told it (挂失 / 补换 / 注销), for the
    /// swipes when the insurer is down. Stored with `updated_version` 0: any event of the
    /// card-status feed overrides it, and a later 1101 answer for the card clears it.
    /// `certno` is the card's own 社会保障号码 when the card row is new (may be empty).
    pub fn learn_card_status(
        &self,
        card_no: &str,
        card_sn: Option<&str>,
        certno: &str,
        status: CardStatus,
    ) -> Result<(), CacheError> {
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT INTO cards (card_no, card_sn, certno, status, updated_version)
                 VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT(card_no) DO UPDATE SET
                   card_sn = COALESCE(excluded.card_sn, cards.card_sn),
                   status = excluded.status,
                   replaced_by = CASE WHEN excluded.status = cards.status
                                      THEN cards.replaced_by ELSE NULL END,
                   updated_version = 0",
                params![card_no, card_sn, certno, status.as_str()],
            )?;
            Ok(())
        })
    }

    /// Applies one page of the card-status feed and advances its watermark, atomically.
    /// Returns how many events were new.
    pub fn apply_card_events(&self, page: &CardEventPage) -> Result<usize, CacheError> {
        self.apply_feed_page(
            "card_events",
            &page.events,
            page.latest_version,
            |event| event.version,
            apply_card_event,
        )
    }

    /// Applies one page of catalogue changes and advances its watermark, atomically.
    /// Returns how many items changed.
    pub fn apply_catalogue(&self, page: &CataloguePage) -> Result<usize, CacheError> {
        self.apply_feed_page(
            "catalogue",
            &page.items,
            page.latest_version,
            |item| item.version,
            upsert_catalogue_item,
        )
    }

    /// Applies one page of `feed` with `apply` (which says how many rows an entry changed)
    /// and advances the feed's watermark to the page's newest `version`, atomically.
    fn apply_feed_page<T>(
        &self,
        feed: &str,
        entries: &[T],
        latest_version: u64,
        version: impl Fn(&T) -> u64,
        apply: impl Fn(&Transaction<'_>, &T) -> Result<usize, CacheError>,
    ) -> Result<usize, CacheError> {
        self.in_transaction(|tx| {
            let mut applied = 0;
            for entry in entries {
                applied += apply(tx, entry)?;
            }
            let last = entries.iter().map(version).max();
            advance_feed(tx, feed, last, latest_version)?;
            Ok(applied)
        })
    }

    /// Records a failed sync of `feed` (the watermark stays where it was).
    pub fn record_sync_error(&self, feed: &str, message: &str) -> Result<(), CacheError> {
        self.record_sync_error_at(feed, message, SystemTime::now())
    }

    /// [`record_sync_error`](Self::record_sync_error) at a given time.
    pub fn record_sync_error_at(
        &self,
        feed: &str,
        message: &str,
        at: SystemTime,
    ) -> Result<(), CacheError> {
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT INTO sync_state (feed, last_error, last_error_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(feed) DO UPDATE SET
                   last_error = excluded.last_error, last_error_at = excluded.last_error_at",
                params![feed, message, unix_seconds(at)],
            )?;
            Ok(())
        })
    }

    /// Reserves `count` consecutive message sequence numbers for `date` and returns the
    /// first (the sequence is persisted and only grows: no other caller gets them).
    pub fn reserve_msgid_seq(&self, date: &str, count: u64) -> Result<u64, CacheError> {
        let count = version_to_sql(count.max(1))?;
        self.in_transaction(|tx| {
            let last: i64 = tx.query_row(
                "INSERT INTO msgid_seq (date, seq) VALUES (?1, ?2)
                 ON CONFLICT(date) DO UPDATE SET seq = seq + ?2
                 RETURNING seq",
                params![date, count],
                |row| row.get(0),
            )?;
            super::version_from_sql(last - count + 1)
        })
    }

    /// Raises each named sequence to at least its number (numbers issued while they could not
    /// be reserved, or a second given up), in one transaction.
    pub fn raise_msgid_seqs(&self, rows: &[(String, u64)]) -> Result<(), CacheError> {
        self.in_transaction(|tx| {
            let mut raise = tx.prepare_cached(
                "INSERT INTO msgid_seq (date, seq) VALUES (?1, ?2)
                 ON CONFLICT(date) DO UPDATE SET seq = max(seq, excluded.seq)",
            )?;
            for (key, number) in rows {
                raise.execute(params![key, version_to_sql(*number)?])?;
            }
            Ok(())
        })
    }

    /// Deletes the sequences whose keys lie in `[from, before)` (the per-second msgid
    /// sequences of days gone); how many.
    pub fn prune_msgid_seqs(&self, from: &str, before: &str) -> Result<usize, CacheError> {
        self.in_transaction(|tx| {
            Ok(tx.execute(
                "DELETE FROM msgid_seq WHERE date >= ?1 AND date < ?2",
                params![from, before],
            )?)
        })
    }

    /// Records an offered bill (`bill`: its JSON), replacing one of the same id, and drops the
    /// offers made before `older_than` (Unix seconds).
    pub fn put_kiosk_bill(
        &self,
        bill_id: &str,
        bill: &str,
        older_than: i64,
    ) -> Result<(), CacheError> {
        self.in_transaction(|tx| {
            tx.execute(
                "DELETE FROM kiosk_bills WHERE offered_at < ?1",
                params![older_than],
            )?;
            tx.execute(
                "INSERT INTO kiosk_bills (bill_id, bill, offered_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(bill_id) DO UPDATE SET bill = excluded.bill,
                   offered_at = excluded.offered_at",
                params![bill_id, bill, unix_seconds(SystemTime::now())],
            )?;
            Ok(())
        })
    }

    /// Removes an offered bill; whether there was one.
    pub fn delete_kiosk_bill(&self, bill_id: &str) -> Result<bool, CacheError> {
        self.in_transaction(|tx| {
            let deleted = tx.execute("DELETE FROM kiosk_bills WHERE bill_id = ?1", [bill_id])?;
            Ok(deleted > 0)
        })
    }

    /// The offered bills' JSON made at or after `since` (Unix seconds), oldest first.
    pub fn kiosk_bills(&self, since: i64) -> Result<Vec<String>, CacheError> {
        self.in_transaction(|tx| {
            let mut statement = tx.prepare(
                "SELECT bill FROM kiosk_bills WHERE offered_at >= ?1 ORDER BY offered_at, bill_id",
            )?;
            let rows = statement.query_map([since], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }

    /// Records the msgid partition the daemon numbers with (its configuration is the truth:
    /// a recorded one it replaces).
    pub fn record_partition(&self, partition: Partition) -> Result<(), CacheError> {
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT INTO msgid_partition (id, node, node_count) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET node = excluded.node, node_count = excluded.node_count",
                params![partition.node(), partition.node_count()],
            )?;
            Ok(())
        })
    }

    /// The msgid partition the daemon last recorded in this file, if any.
    pub fn recorded_partition(&self) -> Result<Option<Partition>, CacheError> {
        self.in_transaction(|tx| {
            let row: Option<(Option<u16>, u16)> = tx
                .query_row(
                    "SELECT node, node_count FROM msgid_partition WHERE id = 1",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            Ok(row.and_then(|(node, node_count)| match node {
                None => Some(Partition::STANDALONE),
                Some(node) => Partition::of_node(node, node_count).ok(),
            }))
        })
    }

    /// The last number reserved for `date` (0 when none): a read, so it works on a full disk.
    pub fn msgid_seq(&self, date: &str) -> Result<u64, CacheError> {
        self.in_transaction(|tx| {
            let seq: Option<i64> = tx
                .query_row("SELECT seq FROM msgid_seq WHERE date = ?1", [date], |row| {
                    row.get(0)
                })
                .optional()?;
            super::version_from_sql(seq.unwrap_or(0))
        })
    }

    /// The next message sequence number for `date` (1, 2, 3 … per date), persisted so that a
    /// restart never reuses a msgid.
    pub fn next_msgid_seq(&self, date: &str) -> Result<u64, CacheError> {
        self.in_transaction(|tx| {
            let seq: i64 = tx.query_row(
                "INSERT INTO msgid_seq (date, seq) VALUES (?1, 1)
                 ON CONFLICT(date) DO UPDATE SET seq = seq + 1
                 RETURNING seq",
                params![date],
                |row| row.get(0),
            )?;
            super::version_from_sql(seq)
        })
    }
}

fn upsert_person(
    tx: &Transaction<'_>,
    info: &PersonInfo,
    fetched_at: SystemTime,
) -> Result<(), CacheError> {
    let base = &info.baseinfo;
    // A certno now belongs to this psn_no: drop a stale person holding it.
    tx.execute(
        "DELETE FROM persons WHERE certno = ?1 AND psn_no <> ?2",
        params![base.certno, base.psn_no],
    )?;
    tx.execute(
        "INSERT INTO persons (psn_no, psn_cert_type, certno, psn_name, gend, naty, brdy, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(psn_no) DO UPDATE SET
           psn_cert_type = excluded.psn_cert_type, certno = excluded.certno,
           psn_name = excluded.psn_name, gend = excluded.gend, naty = excluded.naty,
           brdy = excluded.brdy, fetched_at = excluded.fetched_at",
        params![
            base.psn_no,
            base.psn_cert_type,
            base.certno,
            base.psn_name,
            base.gend,
            base.naty,
            base.brdy,
            unix_seconds(fetched_at)
        ],
    )?;
    tx.execute(
        "DELETE FROM insuinfo WHERE psn_no = ?1",
        params![base.psn_no],
    )?;
    for row in &info.insuinfo {
        insert_insuinfo(tx, &base.psn_no, row)?;
    }
    Ok(())
}

fn insert_insuinfo(tx: &Transaction<'_>, psn_no: &str, row: &InsuInfo) -> Result<(), CacheError> {
    tx.execute(
        "INSERT OR REPLACE INTO insuinfo (psn_no, insutype, balc, psn_type, psn_insu_stas,
           insuplc_admdvs, psn_insu_date, paus_insu_date)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            psn_no,
            row.insutype,
            row.balc.to_string(),
            row.psn_type,
            row.psn_insu_stas,
            row.insuplc_admdvs,
            row.psn_insu_date,
            row.paus_insu_date
        ],
    )?;
    Ok(())
}

/// Records one event (once: `version` is the key) and moves the card's status. Returns 1 when
/// the event was new, 0 when it had been applied before.
fn apply_card_event(tx: &Transaction<'_>, event: &CardStatusEvent) -> Result<usize, CacheError> {
    let version = version_to_sql(event.version)?;
    let inserted = tx.prepare_cached(
        "INSERT OR IGNORE INTO card_events (version, card_no, kind, new_card_no, certno, event_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
            version,
            event.card_no,
            kind_name(event.kind),
            event.new_card_no,
            event.certno,
            event.event_time
        ])?;
    if inserted == 0 {
        return Ok(0);
    }
    let (status, replaced_by) = match event.kind {
        CardEventKind::Lost => (CardStatus::Lost, None),
        CardEventKind::Unlocked => (CardStatus::Active, None),
        CardEventKind::Replaced => (CardStatus::Replaced, event.new_card_no.as_deref()),
        CardEventKind::Cancelled => (CardStatus::Cancelled, None),
    };
    set_card_status(tx, event, status, replaced_by, version)?;
    if let (CardEventKind::Replaced, Some(new_card_no)) = (event.kind, &event.new_card_no) {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO cards (card_no, certno, status, updated_version)
             VALUES (?1, ?2, 'active', ?3)",
        )?
        .execute(params![new_card_no, event.certno, version])?;
    }
    Ok(1)
}

/// Upserts the card's row unless a newer event already set it.
fn set_card_status(
    tx: &Transaction<'_>,
    event: &CardStatusEvent,
    status: CardStatus,
    replaced_by: Option<&str>,
    version: i64,
) -> Result<(), CacheError> {
    tx.prepare_cached(
        "INSERT INTO cards (card_no, card_sn, certno, status, replaced_by, updated_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(card_no) DO UPDATE SET
           card_sn = COALESCE(excluded.card_sn, cards.card_sn), certno = excluded.certno,
           status = excluded.status, replaced_by = excluded.replaced_by,
           updated_version = excluded.updated_version
         WHERE cards.updated_version < excluded.updated_version",
    )?
    .execute(params![
        event.card_no,
        event.card_sn,
        event.certno,
        status.as_str(),
        replaced_by,
        version
    ])?;
    Ok(())
}

/// The stored name of an event kind (as the feed spells it).
pub(super) fn kind_name(kind: CardEventKind) -> &'static str {
    match kind {
        CardEventKind::Lost => "lost",
        CardEventKind::Unlocked => "unlocked",
        CardEventKind::Replaced => "replaced",
        CardEventKind::Cancelled => "cancelled",
    }
}

/// The stored code of a 收费项目等级.
pub(super) fn chrgitm_lv_code(level: ChrgitmLv) -> &'static str {
    match level {
        ChrgitmLv::A => "01",
        ChrgitmLv::B => "02",
        ChrgitmLv::C => "03",
    }
}

/// Upserts an item unless the stored one is newer. Returns 1 when the row changed.
fn upsert_catalogue_item(tx: &Transaction<'_>, item: &CatalogueItem) -> Result<usize, CacheError> {
    let changed = tx
        .prepare_cached(
            "INSERT INTO catalogue (hilist_code, hilist_name, chrgitm_lv, selfpay_prop,
           pric_uplmt_amt, vali_flag, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(hilist_code) DO UPDATE SET
           hilist_name = excluded.hilist_name, chrgitm_lv = excluded.chrgitm_lv,
           selfpay_prop = excluded.selfpay_prop, pric_uplmt_amt = excluded.pric_uplmt_amt,
           vali_flag = excluded.vali_flag, version = excluded.version
         WHERE catalogue.version < excluded.version",
        )?
        .execute(params![
            item.hilist_code,
            item.hilist_name,
            chrgitm_lv_code(item.chrgitm_lv),
            item.selfpay_prop.to_string(),
            item.pric_uplmt_amt.map(|amount| amount.to_string()),
            item.vali_flag,
            version_to_sql(item.version)?
        ])?;
    Ok(changed)
}

/// Moves a feed's watermark forward (never back) and marks the exchange a success.
fn advance_feed(
    tx: &Transaction<'_>,
    feed: &str,
    last_version: Option<u64>,
    latest_version: u64,
) -> Result<(), CacheError> {
    let watermark = "SELECT version FROM sync_state WHERE feed = ?1";
    let current: Option<i64> = one_row(tx, watermark, feed, |row| row.get(0))?;
    let current = current.unwrap_or(0);
    let version = match last_version {
        Some(last) => current.max(version_to_sql(last)?),
        None => current,
    };
    tx.execute(
        "INSERT INTO sync_state (feed, version, latest_version, last_ok) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(feed) DO UPDATE SET
           version = excluded.version, latest_version = excluded.latest_version,
           last_ok = excluded.last_ok",
        params![
            feed,
            version,
            version_to_sql(latest_version)?,
            unix_seconds(SystemTime::now())
        ],
    )?;
    Ok(())
}

/// `Cache` methods that are the writer's own, each one call through [`super::Cache::writer`].
macro_rules! through_the_writer {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl super::Cache {
            $(
                #[doc = concat!("See [`CacheWriter::", stringify!($name), "`].")]
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.writer().$name($($arg),*)
                }
            )*
        }
    };
}

through_the_writer! {
    fn store_person(&self, info: &PersonInfo, fetched_at: SystemTime) -> Result<(), CacheError>;
    fn store_person_for_card(
        &self,
        card_no: &str,
        card_sn: Option<&str>,
        info: &PersonInfo,
        fetched_at: SystemTime
    ) -> Result<(), CacheError>;
    fn apply_card_events(&self, page: &CardEventPage) -> Result<usize, CacheError>;
    fn apply_catalogue(&self, page: &CataloguePage) -> Result<usize, CacheError>;
    fn record_sync_error(&self, feed: &str, message: &str) -> Result<(), CacheError>;
    fn next_msgid_seq(&self, date: &str) -> Result<u64, CacheError>;
}
