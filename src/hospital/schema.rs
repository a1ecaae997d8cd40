//! The hospital database's schema as an ordered list of SQL scripts, like the cache's: script
//! *n* (1-based) takes `medcard_schema` from version `n - 1` to `n`. Every workstation
//! migrates at connect, one at a time (an advisory lock), in one transaction; a database at
//! a version newer than this medcard knows is refused. A published script is never edited.
//!
//! Tables (docs/hospital.md documents them for the readers: the hospital view, `reconcile
//! --hospital`, the bench):
//! - `workstations`: one row per workstation (its name), its `node` (unique), `node_count`,
//!   `fixmedins_code`, `journal_id` (the identity of its local journal) and `shipped_seq`,
//!   the last outbox row the hospital holds.
//! - `journal_log`: every journal write of every workstation, in order: `(workstation,
//!   seq)` is the key, `tbl` / `key` name the journal row, `row` is the whole row (jsonb).
//! - `journal_rows`: each journal row's latest state (the highest `seq` of its key).
//! - Views over `journal_rows`: `hospital_settlements` (a settlement request with its visit's
//!   insutype) and `hospital_calls` (every journalled call to the insurer).

use super::HospitalError;
use postgres::Client;

/// The scripts, oldest first.
pub const MIGRATIONS: &[&str] = &[
    // 1: workstations, the shipped journal, its latest state and the readers' views.
    r#"
CREATE TABLE workstations (
    workstation     text PRIMARY KEY,
    node            integer UNIQUE,
    node_count      integer,
    fixmedins_code  text NOT NULL,
    journal_id      bigint NOT NULL,
    shipped_seq     bigint NOT NULL DEFAULT 0,
    last_shipped_at timestamptz,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE journal_log (
    workstation   text NOT NULL REFERENCES workstations,
    seq           bigint NOT NULL,
    tbl           text NOT NULL,
    key           text NOT NULL,
    row           jsonb NOT NULL,
    journalled_at timestamptz NOT NULL,
    shipped_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workstation, seq)
);
CREATE TABLE journal_rows (
    workstation text NOT NULL REFERENCES workstations,
    tbl         text NOT NULL,
    key         text NOT NULL,
    seq         bigint NOT NULL,
    row         jsonb NOT NULL,
    PRIMARY KEY (workstation, tbl, key)
);
CREATE INDEX journal_rows_setl_date ON journal_rows ((row->>'setl_date'))
    WHERE tbl = 'settlements';
CREATE INDEX journal_rows_state ON journal_rows (tbl, (row->>'state'));
CREATE VIEW hospital_settlements AS
SELECT s.workstation,
       s.key                                  AS request_id,
       s.row->>'kind'                         AS kind,
       s.row->>'state'                        AS state,
       s.row->>'setl_id'                      AS setl_id,
       s.row->>'orig_setl_id'                 AS orig_setl_id,
       s.row->>'mdtrt_id'                     AS mdtrt_id,
       s.row->>'chrg_bchno'                   AS chrg_bchno,
       s.row->>'psn_no'                       AS psn_no,
       v.row->>'insutype'                     AS insutype,
       v.row->>'med_type'                     AS med_type,
       s.row->>'insuplc_admdvs'               AS insuplc_admdvs,
       s.row->>'setl_date'                    AS setl_date,
       s.row->'setlinfo'                      AS setlinfo,
       s.row->>'err_msg'                      AS err_msg,
       to_timestamp((s.row->>'created_at')::bigint) AS created_at,
       to_timestamp((s.row->>'updated_at')::bigint) AS updated_at,
       s.seq
FROM journal_rows s
LEFT JOIN journal_rows v
       ON v.workstation = s.workstation AND v.tbl = 'settle_visits'
      AND v.key = s.row->>'mdtrt_id'
WHERE s.tbl = 'settlements';
CREATE VIEW hospital_calls AS
SELECT workstation,
       key                                  AS msgid,
       row->>'infno'                        AS infno,
       row->>'request_id'                   AS request_id,
       row->>'omsgid'                       AS omsgid,
       row->>'state'                        AS state,
       row->>'mdtrt_id'                     AS mdtrt_id,
       row->>'psn_no'                       AS psn_no,
       row->>'err_msg'                      AS err_msg,
       to_timestamp((row->>'created_at')::bigint) AS created_at,
       to_timestamp((row->>'updated_at')::bigint) AS updated_at,
       seq
FROM journal_rows
WHERE tbl = 'settle_journal';
"#,
];

/// The advisory lock workstations take to migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6d65_6463_6172_6401;

/// The schema version this build writes.
pub fn current_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Brings the database up to [`current_version`]; returns the version found before.
pub fn migrate(client: &mut Client) -> Result<i32, HospitalError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS medcard_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM medcard_schema", &[])?
        .get(0);
    if found > current_version() {
        return Err(HospitalError::NewerSchema {
            found,
            known: current_version(),
        });
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(script)?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO medcard_schema (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(found)
}
