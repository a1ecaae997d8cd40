//! Message ids (`msgid`, insurer-api.md §1.2): `fixmedins_code`(12) + local
//! `yyyyMMddHHmmss`(14) + a 4-digit sequence, 30 characters, unique. Later reversals (2601)
//! name a call by its msgid, so whoever journals calls keeps them; a persistent source (the
//! cache) can implement [`MsgIdSource`] to carry the sequence across restarts.

use crate::clock::DateTime;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Gives a fresh msgid for every request.
pub trait MsgIdSource: Send {
    fn next_msgid(&mut self) -> String;

    /// The insurer said a msgid of ours was seen before (another process of this
    /// institution issued it, e.g. the daemon before a restart in the same second): the
    /// next ids must not come from where that one did.
    fn after_duplicate(&mut self) {}
}

/// In-memory msgids: the sequence restarts at 0000 every second, and a second that has
/// used all 10,000 numbers waits for the next one, so no id repeats within the process
/// (also when the clock steps back: the newest second issued is never gone below). The
/// (second, sequence) state is shared by every `SequenceMsgIds` in the process, so two
/// clients of one institution never issue the same id; separate processes need a shared,
/// persistent source.
#[derive(Debug, Clone)]
pub struct SequenceMsgIds {
    prefix: String,
}

/// The newest second issued and the next sequence number in it, process-wide.
static ISSUED: Mutex<(String, u32)> = Mutex::new((String::new(), 0));

impl SequenceMsgIds {
    pub fn new(fixmedins_code: &str) -> SequenceMsgIds {
        SequenceMsgIds {
            prefix: fixmedins_code.to_string(),
        }
    }

    fn try_next(&self) -> Option<String> {
        let now = DateTime::now().compact();
        let mut issued = ISSUED.lock().unwrap_or_else(PoisonError::into_inner);
        let (stamp, seq) = &mut *issued;
        if now > *stamp {
            *stamp = now;
            *seq = 0;
        }
        if *seq >= 10_000 {
            return None;
        }
        let id = format!("{}{}{:04}", self.prefix, stamp, seq);
        *seq += 1;
        Some(id)
    }
}

impl MsgIdSource for SequenceMsgIds {
    fn next_msgid(&mut self) -> String {
        loop {
            if let Some(id) = self.try_next() {
                return id;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives up the rest of the current second (another process numbered in it too): the
    /// next id is of the next second, whose sequence nobody before this process used.
    fn after_duplicate(&mut self) {
        let mut issued = ISSUED.lock().unwrap_or_else(PoisonError::into_inner);
        issued.1 = 10_000;
    }
}

#[cfg(test)]
mod tests {
    use super::{MsgIdSource, SequenceMsgIds};

    #[test]
    fn after_a_duplicate_the_next_id_is_of_a_later_second() {
        let mut ids = SequenceMsgIds::new("H50010302473");
        let seen = ids.next_msgid();
        ids.after_duplicate();
        let next = ids.next_msgid();
        assert!(next[12..26] > seen[12..26], "{seen} then {next}");
    }

    #[test]
    fn ids_are_thirty_characters_and_start_with_the_institution() {
        let mut ids = SequenceMsgIds::new("H50010302473");
        let id = ids.next_msgid();
        assert_eq!(id.len(), 30);
        assert!(id.starts_with("H50010302473"));
        assert!(id[12..].chars().all(|c| c.is_ascii_digit()));
    }
}
