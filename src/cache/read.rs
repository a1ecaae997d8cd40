//! Lookups on a read-only connection: the person behind a card, a card's status, a catalogue
//! item, the feeds' watermarks, and the statistics `medcard cache stats` prints.

use super::{Cache, CacheError, CardStatus, configure, version_from_sql};
use crate::clock::from_unix_seconds;
use crate::insurer::{CatalogueItem, ChrgitmLv, InsuInfo, PersonBase, PersonInfo};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use rust_decimal::Decimal;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// A person as the cache holds them: the last 1101 answer and when it was fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedPerson {
    pub info: PersonInfo,
    pub fetched_at: SystemTime,
}

/// A card's row: its status from the issuer's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardRecord {
    pub card_no: String,
    pub card_sn: Option<String>,
    pub certno: String,
    pub status: CardStatus,
    /// For `replaced`: the newer card's 卡号.
    pub replaced_by: Option<String>,
    /// The feed version that last changed the row (0: known from a 1101 answer only).
    pub updated_version: u64,
}

/// One feed's sync state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedState {
    pub feed: String,
    /// The watermark: everything up to here is applied.
    pub version: u64,
    /// The insurer's newest version when last asked.
    pub latest_version: u64,
    /// Unix seconds of the last successful exchange.
    pub last_ok: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// What `medcard cache stats` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub schema_version: u32,
    pub persons: u64,
    pub insuinfo: u64,
    pub cards: u64,
    pub card_events: u64,
    pub catalogue: u64,
    pub feeds: Vec<FeedState>,
}

/// A read-only connection to the cache.
pub struct CacheReader {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl CacheReader {
    /// Opens a read-only connection to an existing cache.
    pub fn open(path: &Path) -> Result<CacheReader, CacheError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure_reader(&conn)?;
        Ok(CacheReader {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, CacheError> {
        self.conn.lock().map_err(|_| CacheError::Poisoned)
    }

    /// The person a card belongs to (through the card's certno), when both are cached.
    pub fn person_for_card(&self, card_no: &str) -> Result<Option<CachedPerson>, CacheError> {
        let conn = self.lock()?;
        let certno: Option<String> = one_row(&conn, CERTNO_OF_CARD, card_no, |row| row.get(0))?;
        match certno {
            Some(certno) => person_where(&conn, "certno", &certno),
            None => Ok(None),
        }
    }

    /// The person with this 社会保障号码, when cached.
    pub fn person_by_certno(&self, certno: &str) -> Result<Option<CachedPerson>, CacheError> {
        person_where(&*self.lock()?, "certno", certno)
    }

    /// The person with this 人员编号, when cached.
    pub fn person_by_psn_no(&self, psn_no: &str) -> Result<Option<CachedPerson>, CacheError> {
        person_where(&*self.lock()?, "psn_no", psn_no)
    }

    /// A card's status, when the cache knows the card.
    pub fn card_status(&self, card_no: &str) -> Result<Option<CardRecord>, CacheError> {
        let row = one_row(&*self.lock()?, CARD_BY_NO, card_no, card_row)?;
        row.map(|(record, status, version)| finish_card(record, &status, version))
            .transpose()
    }

    /// A catalogue item by 医保目录编码.
    pub fn catalogue_item(&self, hilist_code: &str) -> Result<Option<CatalogueItem>, CacheError> {
        let row = one_row(
            &*self.lock()?,
            CATALOGUE_ITEM_BY_CODE,
            hilist_code,
            catalogue_row,
        )?;
        row.map(finish_catalogue_item).transpose()
    }

    /// One feed's state (watermark, last success, last error).
    pub fn feed_state(&self, feed: &str) -> Result<FeedState, CacheError> {
        let state = one_row(&*self.lock()?, FEED_BY_NAME, feed, feed_row)?;
        match state {
            Some(state) => state,
            None => Ok(FeedState {
                feed: feed.to_owned(),
                version: 0,
                latest_version: 0,
                last_ok: None,
                last_error: None,
                last_error_at: None,
            }),
        }
    }

    /// Counts per table, the feeds, the schema version and the file's size.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let conn = self.lock()?;
        let count = |table: &str| -> Result<u64, CacheError> {
            let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })?;
            version_from_sql(n)
        };
        let mut statement = conn.prepare(
            "SELECT feed, version, latest_version, last_ok, last_error, last_error_at
             FROM sync_state ORDER BY feed",
        )?;
        let feeds = statement
            .query_map([], feed_row)?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CacheStats {
            path: self.path.clone(),
            file_bytes: file_bytes(&self.path),
            schema_version: conn.query_row("PRAGMA user_version", [], |row| row.get(0))?,
            persons: count("persons")?,
            insuinfo: count("insuinfo")?,
            cards: count("cards")?,
            card_events: count("card_events")?,
            catalogue: count("catalogue")?,
            feeds,
        })
    }
}

impl Cache {
    /// See [`CacheReader::person_for_card`].
    pub fn person_for_card(&self, card_no: &str) -> Result<Option<CachedPerson>, CacheError> {
        self.reader().person_for_card(card_no)
    }

    /// See [`CacheReader::person_by_certno`].
    pub fn person_by_certno(&self, certno: &str) -> Result<Option<CachedPerson>, CacheError> {
        self.reader().person_by_certno(certno)
    }

    /// See [`CacheReader::card_status`].
    pub fn card_status(&self, card_no: &str) -> Result<Option<CardRecord>, CacheError> {
        self.reader().card_status(card_no)
    }

    /// See [`CacheReader::catalogue_item`].
    pub fn catalogue_item(&self, hilist_code: &str) -> Result<Option<CatalogueItem>, CacheError> {
        self.reader().catalogue_item(hilist_code)
    }

    /// See [`CacheReader::feed_state`].
    pub fn feed_state(&self, feed: &str) -> Result<FeedState, CacheError> {
        self.reader().feed_state(feed)
    }

    /// See [`CacheReader::stats`].
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        self.reader().stats()
    }
}

fn configure_reader(conn: &Connection) -> Result<(), CacheError> {
    configure(conn)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(())
}

/// The database file plus its WAL, in bytes.
fn file_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

const CERTNO_OF_CARD: &str = "SELECT certno FROM cards WHERE card_no = ?1";
const CARD_BY_NO: &str = "SELECT card_no, card_sn, certno, status, replaced_by, updated_version
     FROM cards WHERE card_no = ?1";
const CATALOGUE_ITEM_BY_CODE: &str =
    "SELECT hilist_code, hilist_name, chrgitm_lv, selfpay_prop, pric_uplmt_amt, vali_flag, version
     FROM catalogue WHERE hilist_code = ?1";
const FEED_BY_NAME: &str =
    "SELECT feed, version, latest_version, last_ok, last_error, last_error_at
     FROM sync_state WHERE feed = ?1";

/// The row `sql` selects for `key` (its `?1`), read with `row_of`, when there is one.
pub(super) fn one_row<T>(
    conn: &Connection,
    sql: &str,
    key: &str,
    row_of: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, CacheError> {
    Ok(conn.query_row(sql, params![key], row_of).optional()?)
}

fn person_where(
    conn: &Connection,
    column: &str,
    value: &str,
) -> Result<Option<CachedPerson>, CacheError> {
    let sql = format!(
        "SELECT psn_no, psn_cert_type, certno, psn_name, gend, naty, brdy, fetched_at
         FROM persons WHERE {column} = ?1"
    );
    let base = one_row(conn, &sql, value, |row| {
        Ok((
            PersonBase {
                psn_no: row.get(0)?,
                psn_cert_type: row.get(1)?,
                certno: row.get(2)?,
                psn_name: row.get(3)?,
                gend: row.get(4)?,
                naty: row.get(5)?,
                brdy: row.get(6)?,
            },
            row.get::<_, i64>(7)?,
        ))
    })?;
    let Some((baseinfo, fetched_at)) = base else {
        return Ok(None);
    };
    let insuinfo = insuinfo_rows(conn, &baseinfo.psn_no)?;
    Ok(Some(CachedPerson {
        info: PersonInfo { baseinfo, insuinfo },
        fetched_at: from_unix_seconds(fetched_at),
    }))
}

fn insuinfo_rows(conn: &Connection, psn_no: &str) -> Result<Vec<InsuInfo>, CacheError> {
    let mut statement = conn.prepare(
        "SELECT balc, insutype, psn_type, psn_insu_stas, insuplc_admdvs, psn_insu_date,
                paus_insu_date
         FROM insuinfo WHERE psn_no = ?1 ORDER BY insutype",
    )?;
    let rows = statement
        .query_map(params![psn_no], |row| {
            Ok((
                row.get::<_, String>(0)?,
                InsuInfo {
                    balc: Decimal::ZERO,
                    insutype: row.get(1)?,
                    psn_type: row.get(2)?,
                    psn_insu_stas: row.get(3)?,
                    insuplc_admdvs: row.get(4)?,
                    psn_insu_date: row.get(5)?,
                    paus_insu_date: row.get(6)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(balc, mut info)| {
            info.balc = decimal(&balc)?;
            Ok(info)
        })
        .collect()
}

/// A stored decimal string back to a `Decimal`.
fn decimal(text: &str) -> Result<Decimal, CacheError> {
    Decimal::from_str(text).map_err(|_| CacheError::Corrupt {
        what: "decimal",
        value: text.to_owned(),
    })
}

type CardRow = (CardRecord, String, i64);

fn card_row(row: &Row<'_>) -> rusqlite::Result<CardRow> {
    Ok((
        CardRecord {
            card_no: row.get(0)?,
            card_sn: row.get(1)?,
            certno: row.get(2)?,
            status: CardStatus::Active,
            replaced_by: row.get(4)?,
            updated_version: 0,
        },
        row.get(3)?,
        row.get(5)?,
    ))
}

fn finish_card(
    mut record: CardRecord,
    status: &str,
    version: i64,
) -> Result<CardRecord, CacheError> {
    record.status = CardStatus::parse(status).ok_or_else(|| CacheError::Corrupt {
        what: "card status",
        value: status.to_owned(),
    })?;
    record.updated_version = version_from_sql(version)?;
    Ok(record)
}

type CatalogueRow = (String, String, String, String, Option<String>, bool, i64);

fn catalogue_row(row: &Row<'_>) -> rusqlite::Result<CatalogueRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn finish_catalogue_item(row: CatalogueRow) -> Result<CatalogueItem, CacheError> {
    let (hilist_code, hilist_name, level, selfpay_prop, cap, vali_flag, version) = row;
    let chrgitm_lv = match level.as_str() {
        "01" => ChrgitmLv::A,
        "02" => ChrgitmLv::B,
        "03" => ChrgitmLv::C,
        other => {
            return Err(CacheError::Corrupt {
                what: "chrgitm_lv",
                value: other.to_owned(),
            });
        }
    };
    Ok(CatalogueItem {
        version: version_from_sql(version)?,
        hilist_code,
        hilist_name,
        chrgitm_lv,
        selfpay_prop: decimal(&selfpay_prop)?,
        pric_uplmt_amt: cap.as_deref().map(decimal).transpose()?,
        vali_flag,
    })
}

type FeedRow = Result<FeedState, CacheError>;

fn feed_row(row: &Row<'_>) -> rusqlite::Result<FeedRow> {
    let version: i64 = row.get(1)?;
    let latest: i64 = row.get(2)?;
    let feed: String = row.get(0)?;
    let last_ok: Option<i64> = row.get(3)?;
    let last_error: Option<String> = row.get(4)?;
    let last_error_at: Option<i64> = row.get(5)?;
    Ok((|| {
        Ok(FeedState {
            feed,
            version: version_from_sql(version)?,
            latest_version: version_from_sql(latest)?,
            last_ok,
            last_error,
            last_error_at,
        })
    })())
}
