//! The cache's schema as an ordered list of SQL scripts. Script *n* (1-based) takes the
//! database from `PRAGMA user_version = n - 1` to `n`; each runs in its own transaction with
//! the version bump. A later change is a new script appended here: a published script is
//! never edited.

use rusqlite::Connection;

/// The scripts, oldest first.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE TABLE persons (
    psn_no        TEXT PRIMARY KEY NOT NULL,
    psn_cert_type TEXT NOT NULL DEFAULT '',
    certno        TEXT NOT NULL UNIQUE,
    psn_name      TEXT NOT NULL,
    gend          TEXT NOT NULL,
    naty          TEXT NOT NULL,
    brdy          TEXT NOT NULL,
    fetched_at    INTEGER NOT NULL
);
CREATE TABLE insuinfo (
    psn_no          TEXT NOT NULL REFERENCES persons(psn_no) ON DELETE CASCADE,
    insutype        TEXT NOT NULL,
    balc            TEXT NOT NULL,
    psn_type        TEXT NOT NULL,
    psn_insu_stas   TEXT NOT NULL,
    insuplc_admdvs  TEXT NOT NULL,
    psn_insu_date   TEXT,
    paus_insu_date  TEXT,
    PRIMARY KEY (psn_no, insutype)
);
CREATE TABLE cards (
    card_no         TEXT PRIMARY KEY NOT NULL,
    card_sn         TEXT,
    certno          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'lost', 'replaced', 'cancelled')),
    replaced_by     TEXT,
    updated_version INTEGER NOT NULL
);
CREATE INDEX cards_certno ON cards(certno);
CREATE TABLE card_events (
    version     INTEGER PRIMARY KEY NOT NULL,
    card_no     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    new_card_no TEXT,
    certno      TEXT NOT NULL,
    event_time  TEXT NOT NULL
);
CREATE TABLE catalogue (
    hilist_code    TEXT PRIMARY KEY NOT NULL,
    hilist_name    TEXT NOT NULL,
    chrgitm_lv     TEXT NOT NULL,
    selfpay_prop   TEXT NOT NULL,
    pric_uplmt_amt TEXT,
    vali_flag      INTEGER NOT NULL,
    version        INTEGER NOT NULL
);
CREATE TABLE sync_state (
    feed           TEXT PRIMARY KEY NOT NULL,
    version        INTEGER NOT NULL DEFAULT 0,
    latest_version INTEGER NOT NULL DEFAULT 0,
    last_ok        INTEGER,
    last_error     TEXT,
    last_error_at  INTEGER
);
INSERT INTO sync_state (feed) VALUES ('card_events'), ('catalogue');
CREATE TABLE msgid_seq (
    date TEXT PRIMARY KEY NOT NULL,
    seq  INTEGER NOT NULL
);
"#,
    // 2: the same `cards` with its status CHECK written without `IN (…)`: SQLite builds an
    // ephemeral table for a constant IN list on every row written, which made each card
    // update in a feed page about a third slower.
    r#"
CREATE TABLE cards_v2 (
    card_no         TEXT PRIMARY KEY NOT NULL,
    card_sn         TEXT,
    certno          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status = 'active' OR status = 'lost'
                                         OR status = 'replaced' OR status = 'cancelled'),
    replaced_by     TEXT,
    updated_version INTEGER NOT NULL
);
INSERT INTO cards_v2 (card_no, card_sn, certno, status, replaced_by, updated_version)
    SELECT card_no, card_sn, certno, status, replaced_by, updated_version FROM cards;
DROP TABLE cards;
ALTER TABLE cards_v2 RENAME TO cards;
CREATE INDEX cards_certno ON cards(certno);
"#,
    // 3: settlement — visits registered here, previews, the caller's settlement requests and
    // the journal of every money-moving call (src/settle/journal.rs). Money is TEXT.
    r#"
CREATE TABLE settle_visits (
    mdtrt_id        TEXT PRIMARY KEY NOT NULL,
    ipt_otp_no      TEXT NOT NULL UNIQUE,
    psn_no          TEXT NOT NULL,
    psn_name        TEXT NOT NULL DEFAULT '',
    insutype        TEXT NOT NULL,
    psn_type        TEXT NOT NULL DEFAULT '',
    insuplc_admdvs  TEXT NOT NULL DEFAULT '',
    mdtrt_cert_type TEXT NOT NULL,
    mdtrt_cert_no   TEXT NOT NULL,
    med_type        TEXT NOT NULL,
    dept_code       TEXT NOT NULL,
    dept_name       TEXT NOT NULL,
    dr_name         TEXT NOT NULL,
    may_settle      TEXT NOT NULL,
    verdict_code    TEXT NOT NULL DEFAULT '',
    ytd_hint        TEXT,
    begntime        TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE TABLE settle_previews (
    preview_id  TEXT PRIMARY KEY NOT NULL,
    mdtrt_id    TEXT NOT NULL REFERENCES settle_visits(mdtrt_id),
    chrg_bchno  TEXT NOT NULL UNIQUE,
    acct_used   INTEGER NOT NULL,
    lines       TEXT NOT NULL,
    local_split TEXT NOT NULL,
    insurer     TEXT,
    uploaded    INTEGER NOT NULL DEFAULT 0,
    fee_time    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX settle_previews_visit ON settle_previews(mdtrt_id);
CREATE TABLE settlements (
    request_id     TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL,
    preview_id     TEXT,
    mdtrt_id       TEXT NOT NULL,
    chrg_bchno     TEXT NOT NULL,
    psn_no         TEXT NOT NULL,
    insuplc_admdvs TEXT NOT NULL DEFAULT '',
    orig_setl_id   TEXT,
    state          TEXT NOT NULL,
    setl_id        TEXT,
    setlinfo       TEXT,
    err_msg        TEXT,
    setl_date      TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX settlements_batch ON settlements(chrg_bchno);
CREATE INDEX settlements_setl_id ON settlements(setl_id);
CREATE INDEX settlements_date ON settlements(setl_date);
CREATE TABLE settle_journal (
    msgid          TEXT PRIMARY KEY NOT NULL,
    infno          TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    omsgid         TEXT,
    state          TEXT NOT NULL,
    psn_no         TEXT NOT NULL,
    insuplc_admdvs TEXT NOT NULL DEFAULT '',
    mdtrt_id       TEXT NOT NULL,
    detail         TEXT,
    err_msg        TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX settle_journal_state ON settle_journal(state);
CREATE INDEX settle_journal_request ON settle_journal(request_id);
"#,
    // 4: the fee batches the insurer holds for a visit (src/settle/journal.rs): a batch is
    // `held` from just before its first 2204 (an unanswered 2204 may have been applied) until
    // a 2205 deletes it (`deleted`); a preview deletes only batches still held. Batches
    // uploaded before this version count as held (a 2205 the insurer answers "no such lines"
    // marks them deleted).
    r#"
CREATE TABLE settle_batches (
    chrg_bchno  TEXT PRIMARY KEY NOT NULL,
    mdtrt_id    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state = 'held' OR state = 'deleted'),
    updated_at  INTEGER NOT NULL
);
CREATE INDEX settle_batches_visit ON settle_batches(mdtrt_id, state);
INSERT INTO settle_batches (chrg_bchno, mdtrt_id, state, updated_at)
    SELECT chrg_bchno, mdtrt_id, 'held', created_at FROM settle_previews WHERE uploaded = 1;
"#,
    // 5: `settle.list` pages a day by `day_seq`, the order in which requests got their
    // settlement day (src/settle/journal.rs): a request resolved late joins the end of its
    // day, so a page already read never gains a row. Days recorded before this version keep
    // the order their rows were written in.
    r#"
ALTER TABLE settlements ADD COLUMN day_seq INTEGER;
UPDATE settlements SET day_seq = rowid WHERE setl_date IS NOT NULL;
DROP INDEX settlements_date;
CREATE INDEX settlements_day ON settlements(setl_date, day_seq);
"#,
    // 6: the hospital outbox (src/settle/outbox.rs, docs/hospital.md): when shipping to the
    // hospital's PostgreSQL is enabled (`hospital_shipping.enabled`, set once by the first
    // start with `[hospital] database`), every insert or update of a journal row adds the
    // whole row, as JSON, to `hospital_outbox` in the same transaction; the shipper sends the
    // rows in `seq` order and deletes them once PostgreSQL has them. A standalone
    // workstation's triggers add nothing. Each journal table's row as JSON is one view
    // (`<table>_json`: `rid` its rowid, `key` its primary key), read by the triggers and the
    // enabling backfill alike; a later migration that adds a journal column recreates the view.
    r#"
CREATE TABLE hospital_shipping (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    enabled    INTEGER NOT NULL DEFAULT 0,
    enabled_at INTEGER
);
INSERT INTO hospital_shipping (id, enabled) VALUES (1, 0);
CREATE TABLE hospital_outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl           TEXT NOT NULL,
    key           TEXT NOT NULL,
    row           TEXT NOT NULL,
    journalled_at INTEGER NOT NULL
);
CREATE VIEW settle_visits_json AS SELECT rowid AS rid, mdtrt_id AS key, json_object(
    'mdtrt_id', mdtrt_id, 'ipt_otp_no', ipt_otp_no, 'psn_no', psn_no, 'psn_name', psn_name,
    'insutype', insutype, 'psn_type', psn_type, 'insuplc_admdvs', insuplc_admdvs,
    'mdtrt_cert_type', mdtrt_cert_type, 'mdtrt_cert_no', mdtrt_cert_no, 'med_type', med_type,
    'dept_code', dept_code, 'dept_name', dept_name, 'dr_name', dr_name,
    'may_settle', may_settle, 'verdict_code', verdict_code, 'ytd_hint', ytd_hint,
    'begntime', begntime, 'state', state, 'created_at', created_at) AS row
FROM settle_visits;
CREATE VIEW settle_previews_json AS SELECT rowid AS rid, preview_id AS key, json_object(
    'preview_id', preview_id, 'mdtrt_id', mdtrt_id, 'chrg_bchno', chrg_bchno,
    'acct_used', acct_used,
    'lines', CASE WHEN json_valid(lines) THEN json(lines) ELSE lines END,
    'local_split', CASE WHEN json_valid(local_split) THEN json(local_split) ELSE local_split END,
    'insurer', CASE WHEN json_valid(insurer) THEN json(insurer) ELSE insurer END,
    'uploaded', uploaded, 'fee_time', fee_time, 'created_at', created_at) AS row
FROM settle_previews;
CREATE VIEW settle_batches_json AS SELECT rowid AS rid, chrg_bchno AS key, json_object(
    'chrg_bchno', chrg_bchno, 'mdtrt_id', mdtrt_id, 'state', state,
    'updated_at', updated_at) AS row
FROM settle_batches;
CREATE VIEW settlements_json AS SELECT rowid AS rid, request_id AS key, json_object(
    'request_id', request_id, 'kind', kind, 'preview_id', preview_id, 'mdtrt_id', mdtrt_id,
    'chrg_bchno', chrg_bchno, 'psn_no', psn_no, 'insuplc_admdvs', insuplc_admdvs,
    'orig_setl_id', orig_setl_id, 'state', state, 'setl_id', setl_id,
    'setlinfo', CASE WHEN json_valid(setlinfo) THEN json(setlinfo) ELSE setlinfo END,
    'err_msg', err_msg, 'setl_date', setl_date, 'day_seq', day_seq,
    'created_at', created_at, 'updated_at', updated_at) AS row
FROM settlements;
CREATE VIEW settle_journal_json AS SELECT rowid AS rid, msgid AS key, json_object(
    'msgid', msgid, 'infno', infno, 'request_id', request_id, 'omsgid', omsgid,
    'state', state, 'psn_no', psn_no, 'insuplc_admdvs', insuplc_admdvs, 'mdtrt_id', mdtrt_id,
    'detail', CASE WHEN json_valid(detail) THEN json(detail) ELSE detail END,
    'err_msg', err_msg, 'created_at', created_at, 'updated_at', updated_at) AS row
FROM settle_journal;
CREATE TRIGGER settle_visits_outbox_insert AFTER INSERT ON settle_visits
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_visits', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_visits_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_visits_outbox_update AFTER UPDATE ON settle_visits
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_visits', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_visits_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_previews_outbox_insert AFTER INSERT ON settle_previews
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_previews', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_previews_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_previews_outbox_update AFTER UPDATE ON settle_previews
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_previews', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_previews_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_batches_outbox_insert AFTER INSERT ON settle_batches
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_batches', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_batches_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_batches_outbox_update AFTER UPDATE ON settle_batches
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_batches', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_batches_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settlements_outbox_insert AFTER INSERT ON settlements
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settlements', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settlements_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settlements_outbox_update AFTER UPDATE ON settlements
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settlements', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settlements_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_journal_outbox_insert AFTER INSERT ON settle_journal
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_journal', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_journal_json WHERE rid = NEW.rowid;
END;
CREATE TRIGGER settle_journal_outbox_update AFTER UPDATE ON settle_journal
WHEN (SELECT enabled FROM hospital_shipping WHERE id = 1) BEGIN
    INSERT INTO hospital_outbox (tbl, key, row, journalled_at)
    SELECT 'settle_journal', key, row, CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM settle_journal_json WHERE rid = NEW.rowid;
END;
"#,
    // 7: the workstation's msgid partition (src/cache/msgids.rs, docs/hospital.md): the
    // `[hospital] node` and `node_count` the daemon numbers with, recorded at each of its
    // starts, so that `medcard sync` on the same file numbers from the same partition without
    // being told (and refuses to be told another one).
    r#"
CREATE TABLE msgid_partition (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    node       INTEGER,
    node_count INTEGER NOT NULL
);
"#,
    // 8: a person's settlements, newest first (`card.statement`, the preview's year-to-date
    // of src/settle/journal.rs), found without reading every settlement ever journalled.
    r#"
CREATE INDEX settlements_person ON settlements(psn_no, setl_date, day_seq);
"#,
    // 9: the bills the HIS offered for paying at this kiosk (src/serve/bills.rs), so that a
    // restart loses none: each as the JSON the daemon wrote, with when it was offered.
    r#"
CREATE TABLE kiosk_bills (
    bill_id    TEXT PRIMARY KEY NOT NULL,
    bill       TEXT NOT NULL,
    offered_at INTEGER NOT NULL
);
"#,
];

/// The schema version this build writes.
pub fn current_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// Brings `conn` up to [`current_version`]; returns the version found before.
pub fn migrate(conn: &mut Connection) -> Result<u32, super::CacheError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > current_version() {
        return Err(super::CacheError::NewerSchema {
            found,
            known: current_version(),
        });
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(found)
}
