//! A workstation's registration with the hospital database (`workstations`): at each connect,
//! one workstation at a time (an advisory lock), its row is created or brought up to date and
//! its shipped watermark read back. Refused, with what to do:
//! - a `node` another workstation holds (two workstations numbering msgids and visit numbers
//!   from the same partition would collide at the insurer);
//! - a journal identity other than the one the hospital knows under this name (a replaced
//!   or re-created cache file must not ship under the old file's watermark).

use super::HospitalError;
use postgres::Client;

/// The advisory lock registrations take (a node is checked and claimed at once).
const REGISTRATION_LOCK: i64 = 0x6d65_6463_6172_6402;

/// Who ships: the workstation as the hospital knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workstation {
    /// `hospital.workstation` (default: the host name).
    pub name: String,
    /// `hospital.node`: its partition of the hospital's numbers; `None` for none.
    pub node: Option<i32>,
    pub node_count: Option<i32>,
    pub fixmedins_code: String,
    /// The identity of its local journal (`cache::Cache::journal_id`).
    pub journal_id: i64,
}

/// The hospital database refuses this workstation; nothing is shipped until it is resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "hospital.node {node} is already held by workstation {holder:?} in the hospital database: give this workstation ({workstation:?}) a node no other workstation has"
    )]
    NodeTaken {
        node: i32,
        holder: String,
        workstation: String,
    },
    #[error(
        "the hospital database knows workstation {workstation:?} with another journal (identity {known}, this one is {ours}): its cache file was replaced or re-created; put the right file back, or give this workstation a new hospital.workstation name"
    )]
    JournalChanged {
        workstation: String,
        known: i64,
        ours: i64,
    },
}

/// Registers `workstation` (creating or updating its row); returns its shipped watermark.
pub fn register(client: &mut Client, workstation: &Workstation) -> Result<i64, HospitalError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRATION_LOCK])?;
    if let Some(node) = workstation.node {
        let holder = tx.query_opt(
            "SELECT workstation FROM workstations WHERE node = $1 AND workstation <> $2",
            &[&node, &workstation.name],
        )?;
        if let Some(holder) = holder {
            return Err(Refusal::NodeTaken {
                node,
                holder: holder.get(0),
                workstation: workstation.name.clone(),
            }
            .into());
        }
    }
    let known = tx.query_opt(
        "SELECT journal_id, shipped_seq FROM workstations WHERE workstation = $1",
        &[&workstation.name],
    )?;
    let shipped_seq = match known {
        Some(row) if row.get::<_, i64>(0) != workstation.journal_id => {
            return Err(Refusal::JournalChanged {
                workstation: workstation.name.clone(),
                known: row.get(0),
                ours: workstation.journal_id,
            }
            .into());
        }
        Some(row) => {
            tx.execute(
                "UPDATE workstations SET node = $2, node_count = $3, fixmedins_code = $4, \
                 last_seen_at = now() WHERE workstation = $1",
                &[
                    &workstation.name,
                    &workstation.node,
                    &workstation.node_count,
                    &workstation.fixmedins_code,
                ],
            )?;
            row.get(1)
        }
        None => {
            tx.execute(
                "INSERT INTO workstations (workstation, node, node_count, fixmedins_code, \
                 journal_id) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &workstation.name,
                    &workstation.node,
                    &workstation.node_count,
                    &workstation.fixmedins_code,
                    &workstation.journal_id,
                ],
            )?;
            0
        }
    };
    tx.commit()?;
    Ok(shipped_seq)
}
