//! Message ids (`msgid`, insurer-api.md §1.2): `fixmedins_code`(12) + local
//! `yyyyMMddHHmmss`(14) + a 4-digit sequence, 30 characters, unique. Later reversals (2601)
//! name a call by its msgid, so whoever journals calls keeps them; a persistent source (the
//! cache) can implement [`MsgIdSource`] to carry the sequence across restarts.
//!
//! The 10,000 sequence numbers of a second are the whole institution's: every workstation of
//! a hospital sends under the same `fixmedins_code`. A [`Partition`] gives one workstation
//! (node *k* of *n*) the numbers `[k·B, (k+1)·B)` of every second, `B` = 10,000 / *n*, so two
//! workstations never meet by design; a standalone workstation has all 10,000.

use crate::clock::DateTime;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The sequence numbers of one second (4 digits).
pub const SEQUENCES: u32 = 10_000;
/// The most workstations a hospital may number (10 sequence numbers a second each).
pub const MAX_NODE_COUNT: u16 = 1_000;
/// Workstations numbered when `hospital.node_count` is not set (100 msgids a second each).
pub const DEFAULT_NODE_COUNT: u16 = 100;

/// The sequence numbers one workstation may use in every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// `None`: a standalone workstation (all of them).
    node: Option<u16>,
    node_count: u16,
}

/// A node that cannot be given a partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "hospital.node_count must be 1 to {MAX_NODE_COUNT} (is {0}): the 10,000 msgids of a \
         second are divided among that many workstations"
    )]
    NodeCount(u16),
    #[error(
        "hospital.node {node} is not below hospital.node_count ({node_count}): number the \
         workstations 0 to {}, each its own",
        node_count.saturating_sub(1)
    )]
    Node { node: u16, node_count: u16 },
}

impl Partition {
    /// A standalone workstation: all 10,000 numbers of every second.
    pub const STANDALONE: Partition = Partition {
        node: None,
        node_count: 1,
    };

    /// Node `node` of `node_count` (0 ≤ node < node_count ≤ [`MAX_NODE_COUNT`]).
    pub fn of_node(node: u16, node_count: u16) -> Result<Partition, PartitionError> {
        if node_count == 0 || node_count > MAX_NODE_COUNT {
            return Err(PartitionError::NodeCount(node_count));
        }
        if node >= node_count {
            return Err(PartitionError::Node { node, node_count });
        }
        Ok(Partition {
            node: Some(node),
            node_count,
        })
    }

    /// The workstation's node, `None` when standalone.
    pub fn node(&self) -> Option<u16> {
        self.node
    }

    /// How many nodes share the numbers of a second (1 when standalone).
    pub fn node_count(&self) -> u16 {
        self.node_count
    }

    /// How many sequence numbers of each second are this workstation's (its msgids a second).
    pub fn budget(&self) -> u32 {
        SEQUENCES / u32::from(self.node_count.max(1))
    }

    /// The first sequence number of the partition.
    pub fn first(&self) -> u32 {
        self.node.map_or(0, |node| u32::from(node) * self.budget())
    }

    /// Whether sequence number `seq` is in the partition.
    pub fn contains(&self, seq: u32) -> bool {
        (self.first()..self.first() + self.budget()).contains(&seq)
    }

    /// The msgid of `second` (`yyyyMMddHHmmss`) whose sequence is the partition's `index`-th
    /// (0-based, below [`Self::budget`]).
    pub fn msgid(&self, fixmedins_code: &str, second: &str, index: u32) -> String {
        format!("{fixmedins_code}{second}{:04}", self.first() + index)
    }
}

/// The id `next_in` gives for the clock's second (`yyyyMMddHHmmss`); while it gives none (the
/// second's numbers are used up), waits for the next second and asks again.
pub fn in_a_free_second(mut next_in: impl FnMut(&str) -> Option<String>) -> String {
    loop {
        let second = DateTime::now().compact();
        if let Some(id) = next_in(&second) {
            return id;
        }
        while DateTime::now().compact() == second {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Gives a fresh msgid for every request.
pub trait MsgIdSource: Send {
    fn next_msgid(&mut self) -> String;

    /// The insurer said a msgid of ours was seen before (another process of this
    /// institution issued it, e.g. the daemon before a restart in the same second): the
    /// next ids must not come from where that one did.
    fn after_duplicate(&mut self) {}
}

/// In-memory msgids: the sequence restarts at the partition's first number every second, and
/// a second that has used all the partition's numbers waits for the next one, so no id
/// repeats within the process (also when the clock steps back: the newest second issued is
/// never gone below). The (second, sequence) state is shared by every `SequenceMsgIds` in the
/// process, so two clients of one institution never issue the same id; separate processes
/// need a shared, persistent source.
#[derive(Debug, Clone)]
pub struct SequenceMsgIds {
    prefix: String,
    partition: Partition,
}

/// The newest second issued and the next index in it, process-wide.
static ISSUED: Mutex<(String, u32)> = Mutex::new((String::new(), 0));

impl SequenceMsgIds {
    /// A standalone workstation's (all 10,000 numbers of a second).
    pub fn new(fixmedins_code: &str) -> SequenceMsgIds {
        SequenceMsgIds::in_partition(fixmedins_code, Partition::STANDALONE)
    }

    /// The numbers of `partition` only.
    pub fn in_partition(fixmedins_code: &str, partition: Partition) -> SequenceMsgIds {
        SequenceMsgIds {
            prefix: fixmedins_code.to_string(),
            partition,
        }
    }

    /// The next id of `second` or a later one issued, `None` while `second`'s are used up.
    fn try_next(&self, now: &str) -> Option<String> {
        let mut issued = ISSUED.lock().unwrap_or_else(PoisonError::into_inner);
        let (stamp, index) = &mut *issued;
        if now > stamp.as_str() {
            *stamp = now.to_owned();
            *index = 0;
        }
        if *index >= self.partition.budget() {
            return None;
        }
        let id = self.partition.msgid(&self.prefix, stamp, *index);
        *index += 1;
        Some(id)
    }
}

impl MsgIdSource for SequenceMsgIds {
    fn next_msgid(&mut self) -> String {
        in_a_free_second(|second| self.try_next(second))
    }

    /// Gives up the rest of the current second (another process numbered in it too): the
    /// next id is of the next second, whose sequence nobody before this process used.
    fn after_duplicate(&mut self) {
        let mut issued = ISSUED.lock().unwrap_or_else(PoisonError::into_inner);
        issued.1 = SEQUENCES;
    }
}

#[cfg(test)]
mod tests {
    use super::{MsgIdSource, Partition, PartitionError, SequenceMsgIds};

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

    #[test]
    fn a_node_owns_its_share_of_every_second() {
        let node = Partition::of_node(7, 100).unwrap();
        assert_eq!((node.first(), node.budget()), (700, 100));
        assert!(node.contains(700) && node.contains(799));
        assert!(!node.contains(699) && !node.contains(800));
        assert_eq!(node.msgid("H50010302473", "20261203101530", 5).len(), 30);
        assert!(
            node.msgid("H50010302473", "20261203101530", 5)
                .ends_with("0705")
        );
        let last = Partition::of_node(999, 1000).unwrap();
        assert_eq!((last.first(), last.budget()), (9990, 10));
        assert_eq!(Partition::STANDALONE.budget(), 10_000);
        assert_eq!(Partition::STANDALONE.node(), None);
        let three = Partition::of_node(2, 3).unwrap();
        assert_eq!((three.first(), three.budget()), (6666, 3333));
    }

    #[test]
    fn a_node_outside_the_count_has_no_partition() {
        assert_eq!(
            Partition::of_node(100, 100),
            Err(PartitionError::Node {
                node: 100,
                node_count: 100
            })
        );
        assert_eq!(Partition::of_node(0, 0), Err(PartitionError::NodeCount(0)));
        assert_eq!(
            Partition::of_node(0, 1001),
            Err(PartitionError::NodeCount(1001))
        );
    }

    #[test]
    fn in_memory_ids_stay_in_their_partition() {
        let node = Partition::of_node(3, 10).unwrap();
        let mut ids = SequenceMsgIds::in_partition("H50010302473", node);
        for _ in 0..50 {
            let id = ids.next_msgid();
            let seq: u32 = id[26..].parse().unwrap();
            assert!(node.contains(seq), "{id}");
        }
    }
}
