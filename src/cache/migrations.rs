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
