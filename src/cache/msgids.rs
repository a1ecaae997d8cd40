//! [`CacheMsgIds`]: msgids whose sequence is kept in the cache (`msgid_seq`), so that
//! separate processes of one workstation (`medcard sync` runs, the daemon, restarts within
//! the same second) never send the same msgid — the insurer refuses a repeated one
//! (发送方报文ID重复), and a 2601 reversal names a call by it.
//!
//! The id is `fixmedins_code`(12) + local `yyyyMMddHHmmss`(14) + a 4-digit sequence number
//! from the workstation's [`Partition`] of that second (all 10,000 when standalone; node *k*
//! of *n* owns `[k·B, (k+1)·B)`, `B` = 10,000 / *n*, so the workstations of one hospital never
//! meet). Each second has its own row in the cache (`s:<yyyyMMddHHmmss>`): numbers are
//! reserved from it in blocks of at most [`BLOCK`], a block serves only its second, and a
//! second whose `B` numbers are all reserved waits for the next second — never reuses. The
//! rows remember the seconds used, so a clock stepped back does not issue a number again;
//! a source's first reservation of a day deletes the rows of earlier days.
//!
//! When the cache cannot reserve (a full disk), numbers go on past the last one the cache
//! reserved in that second, counted in memory (every source of the cache in the process
//! shares the count), and the next reservation that reaches the disk writes them in first — so an id
//! issued while the disk was full is never issued again, by this process or another.

use super::{CacheError, CacheWriter};
use crate::clock::DateTime;
use crate::insurer::msgid::in_a_free_second;
use crate::insurer::{MsgIdSource, Partition, SequenceMsgIds};
use std::collections::BTreeMap;

/// The most sequence numbers reserved at a time (fewer when the partition has fewer).
pub const BLOCK: u64 = 16;

/// The prefix of the per-second keys in `msgid_seq`.
const SECOND_KEY: &str = "s:";

fn second_key(second: &str) -> String {
    format!("{SECOND_KEY}{second}")
}

/// What every msgid source of one cache in the process shares (kept by its writer).
#[derive(Debug, Default)]
pub(crate) struct MsgIdMemory {
    /// Per second, the highest number issued (or given up) while the cache could not
    /// record it.
    unrecorded: BTreeMap<String, u64>,
    /// The second last given up after a duplicate: no source issues from it any more.
    given_up: String,
}

/// Numbers reserved in the cache for one second: the next to issue and the last.
struct Block {
    second: String,
    next: u64,
    last: u64,
}

/// msgids numbered by the cache's persistent per-second sequences.
pub struct CacheMsgIds {
    prefix: String,
    partition: Partition,
    writer: CacheWriter,
    block: Option<Block>,
    /// The key of the day before which this source last deleted the seconds' rows.
    pruned_before: String,
    /// Used when the cache cannot even be read (the process-wide in-memory sequence).
    fallback: SequenceMsgIds,
}

impl CacheMsgIds {
    pub fn new(fixmedins_code: &str, writer: CacheWriter, partition: Partition) -> CacheMsgIds {
        CacheMsgIds {
            prefix: fixmedins_code.to_string(),
            partition,
            writer,
            block: None,
            pruned_before: String::new(),
            fallback: SequenceMsgIds::in_partition(fixmedins_code, partition),
        }
    }

    /// The numbers of a second (1-based: number *n* is the partition's (*n*−1)-th).
    fn budget(&self) -> u64 {
        u64::from(self.partition.budget())
    }

    /// The next id of `second`, `None` when its numbers are used up.
    fn next_in(&mut self, second: &str) -> Option<String> {
        let number = match self.number_in(second) {
            Ok(number) => number?,
            Err(e) => {
                tracing::warn!(error = %e, "msgid sequence not available from the cache: using the in-memory one");
                return Some(self.fallback.next_msgid());
            }
        };
        let index = u32::try_from(number - 1).unwrap_or(u32::MAX);
        Some(self.partition.msgid(&self.prefix, second, index))
    }

    /// The next number of `second`: from the block, else reserved, else (the cache cannot
    /// reserve) counted in memory; an error when the cache cannot even be read.
    fn number_in(&mut self, second: &str) -> Result<Option<u64>, CacheError> {
        let writer = self.writer.clone();
        let mut memory = writer.msgid_memory();
        if memory.given_up == second {
            self.block = None;
            return Ok(None);
        }
        if let Some(block) = self.block.as_mut().filter(|b| b.second == second)
            && block.next <= block.last
        {
            block.next += 1;
            return Ok(Some(block.next - 1));
        }
        self.block = None;
        let size = BLOCK.min(self.budget());
        match self.reserve(&mut memory.unrecorded, second, size) {
            Ok(first) if first > self.budget() => Ok(None),
            Ok(first) => {
                self.block = Some(Block {
                    second: second.to_owned(),
                    next: first + 1,
                    last: (first + size - 1).min(self.budget()),
                });
                Ok(Some(first))
            }
            Err(e) => {
                tracing::warn!(error = %e, "msgid sequence cannot be reserved in the cache: numbering on in memory");
                self.number_in_memory(&mut memory.unrecorded, second)
            }
        }
    }

    /// Writes in what was issued in memory, deletes the rows of days gone, then reserves
    /// `size` numbers of `second`; the first.
    fn reserve(
        &mut self,
        unrecorded: &mut BTreeMap<String, u64>,
        second: &str,
        size: u64,
    ) -> Result<u64, CacheError> {
        if !unrecorded.is_empty() {
            let rows: Vec<(String, u64)> = unrecorded
                .iter()
                .map(|(second, number)| (second_key(second), *number))
                .collect();
            self.writer.raise_msgid_seqs(&rows)?;
            unrecorded.clear();
        }
        self.prune_days_before(second);
        self.writer.reserve_msgid_seq(&second_key(second), size)
    }

    /// On the first reservation of a day, deletes the rows of the seconds of earlier days.
    fn prune_days_before(&mut self, second: &str) {
        let day = second_key(second.get(..8).unwrap_or(second));
        if self.pruned_before == day {
            return;
        }
        match self.writer.prune_msgid_seqs(SECOND_KEY, &day) {
            Ok(rows) => {
                tracing::debug!(rows, "msgid sequences of earlier days deleted");
                self.pruned_before = day;
            }
            Err(e) => tracing::warn!(error = %e, "msgid sequences of earlier days not deleted"),
        }
    }

    /// The next number of `second` past the cache's row and what this process issued in
    /// memory (`None`: used up).
    fn number_in_memory(
        &self,
        unrecorded: &mut BTreeMap<String, u64>,
        second: &str,
    ) -> Result<Option<u64>, CacheError> {
        let reserved = self.writer.msgid_seq(&second_key(second))?;
        let issued = unrecorded.get(second).copied().unwrap_or(0);
        let number = reserved.max(issued) + 1;
        if number > self.budget() {
            return Ok(None);
        }
        unrecorded.insert(second.to_owned(), number);
        Ok(Some(number))
    }
}

impl MsgIdSource for CacheMsgIds {
    fn next_msgid(&mut self) -> String {
        in_a_free_second(|second| self.next_in(second))
    }

    /// Gives up the rest of the current second for every source on the cache: in this
    /// process at once (their blocks of it too), in the others at their next reservation
    /// (the second's row is raised to the partition's last number; in memory while the cache
    /// cannot record it).
    fn after_duplicate(&mut self) {
        self.block = None;
        let second = DateTime::now().compact();
        let writer = self.writer.clone();
        let mut memory = writer.msgid_memory();
        let rows = [(second_key(&second), self.budget())];
        if let Err(e) = self.writer.raise_msgid_seqs(&rows) {
            tracing::warn!(error = %e, "msgid second given up in memory only");
            memory.unrecorded.insert(second.clone(), self.budget());
        }
        memory.given_up = second;
        self.fallback.after_duplicate();
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, CacheMsgIds};
    use crate::cache::Cache;
    use crate::insurer::{MsgIdSource, Partition};
    use std::collections::{BTreeMap, HashSet};
    use std::path::PathBuf;

    const CODE: &str = "H50010302473";

    /// A fresh cache in its own directory (removed when dropped).
    struct Scratch {
        dir: PathBuf,
        cache: Cache,
    }

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("medcard-msgids-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let cache = Cache::open(dir.join("cache.sqlite")).unwrap();
            Scratch { dir, cache }
        }

        fn source(&self, partition: Partition) -> CacheMsgIds {
            CacheMsgIds::new(CODE, self.cache.writer().clone(), partition)
        }

        /// Every write to the sequences fails (a full disk, as the msgids meet it) until
        /// [`Self::space_back`]; reads go on.
        fn disk_full(&self) {
            self.cache
                .writer()
                .in_transaction(|tx| {
                    tx.execute_batch(
                        "CREATE TRIGGER full_insert BEFORE INSERT ON msgid_seq
                           BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
                         CREATE TRIGGER full_update BEFORE UPDATE ON msgid_seq
                           BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
                    )?;
                    Ok(())
                })
                .unwrap();
        }

        fn space_back(&self) {
            self.cache
                .writer()
                .in_transaction(|tx| {
                    tx.execute_batch("DROP TRIGGER full_insert; DROP TRIGGER full_update;")?;
                    Ok(())
                })
                .unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// (second, sequence) of a msgid.
    fn parts(id: &str) -> (String, u32) {
        assert_eq!(id.len(), 30, "{id}");
        assert!(id.starts_with(CODE), "{id}");
        (id[12..26].to_owned(), id[26..].parse().unwrap())
    }

    /// node 5 of 1000: 10 numbers a second, 50..60.
    fn tiny() -> Partition {
        Partition::of_node(5, 1000).unwrap()
    }

    #[test]
    fn two_sources_on_one_cache_never_repeat_an_id() {
        let scratch = Scratch::new("two");
        let mut a = scratch.source(Partition::STANDALONE);
        let mut b = scratch.source(Partition::STANDALONE);
        let mut seen = HashSet::new();
        for _ in 0..500 {
            for id in [a.next_msgid(), b.next_msgid()] {
                assert_eq!(id.len(), 30);
                assert!(seen.insert(id.clone()), "repeated {id}");
            }
        }
    }

    #[test]
    fn a_used_up_second_gives_nothing_more_and_the_next_one_starts_afresh() {
        let scratch = Scratch::new("used-up");
        let mut ids = scratch.source(tiny());
        let first: Vec<String> = (0..10)
            .map(|_| ids.next_in("20261203101530").unwrap())
            .collect();
        let seqs: Vec<u32> = first.iter().map(|id| parts(id).1).collect();
        assert_eq!(seqs, (50..60).collect::<Vec<_>>());
        assert_eq!(ids.next_in("20261203101530"), None);
        let mut other = scratch.source(tiny());
        assert_eq!(other.next_in("20261203101530"), None, "for every source");
        assert_eq!(
            parts(&ids.next_in("20261203101531").unwrap()),
            ("20261203101531".to_owned(), 50)
        );
    }

    #[test]
    fn exhaustion_waits_for_the_next_second_and_never_reuses() {
        let scratch = Scratch::new("exhaustion");
        let mut ids = scratch.source(tiny());
        let mut per_second: BTreeMap<String, HashSet<u32>> = BTreeMap::new();
        let mut last = String::new();
        for _ in 0..25 {
            let (second, seq) = parts(&ids.next_msgid());
            assert!(tiny().contains(seq), "{seq}");
            assert!(second >= last, "{second} after {last}");
            assert!(per_second.entry(second.clone()).or_default().insert(seq));
            last = second;
        }
        assert!(per_second.values().all(|seqs| seqs.len() <= 10));
        assert!(per_second.len() >= 3, "{per_second:?}");
    }

    #[test]
    fn a_restart_within_a_second_continues_past_the_numbers_used() {
        let scratch = Scratch::new("restart");
        let second = "20261203101530";
        let mut before = scratch.source(Partition::STANDALONE);
        let used: Vec<u32> = (0..3)
            .map(|_| parts(&before.next_in(second).unwrap()).1)
            .collect();
        drop(before);
        let mut after = scratch.source(Partition::STANDALONE);
        let next = parts(&after.next_in(second).unwrap()).1;
        assert!(
            u64::from(next) >= BLOCK,
            "{next} is in the block reserved before: {used:?}"
        );
    }

    #[test]
    fn a_clock_stepped_back_continues_past_the_numbers_used() {
        let scratch = Scratch::new("clock-back");
        let mut ids = scratch.source(Partition::STANDALONE);
        let early = parts(&ids.next_in("20261203101530").unwrap()).1;
        ids.next_in("20261203101545").unwrap();
        let again = parts(&ids.next_in("20261203101530").unwrap()).1;
        assert!(
            u64::from(again) >= u64::from(early) + BLOCK,
            "{early} then {again}"
        );
    }

    #[test]
    fn after_a_duplicate_every_source_on_the_cache_numbers_from_a_later_second() {
        let scratch = Scratch::new("duplicate");
        let mut a = scratch.source(Partition::STANDALONE);
        let mut b = scratch.source(Partition::STANDALONE);
        let (refused, _) = parts(&a.next_msgid());
        b.next_msgid();
        a.after_duplicate();
        for source in [&mut b, &mut a] {
            let (second, _) = parts(&source.next_msgid());
            assert!(second > refused, "{second} is not after {refused}");
        }
    }

    #[test]
    fn earlier_days_seconds_are_deleted_on_the_first_reservation_of_a_day() {
        let scratch = Scratch::new("prune");
        let writer = scratch.cache.writer();
        let mut ids = scratch.source(Partition::STANDALONE);
        ids.next_in("20261202235959").unwrap();
        writer.reserve_msgid_seq("visit:20261202", 1).unwrap();
        ids.next_in("20261203000001").unwrap();
        assert_eq!(writer.msgid_seq("s:20261202235959").unwrap(), 0);
        assert_eq!(writer.msgid_seq("s:20261203000001").unwrap(), BLOCK);
        assert_eq!(
            writer.msgid_seq("visit:20261202").unwrap(),
            1,
            "not a msgid row"
        );
    }

    #[test]
    fn ids_issued_on_a_full_disk_are_never_issued_again() {
        let scratch = Scratch::new("full");
        let second = "20261203101530";
        let node = Partition::of_node(5, 100).unwrap();
        let mut a = scratch.source(node);
        let mut seen = HashSet::new();
        assert!(seen.insert(a.next_in(second).unwrap()));
        scratch.disk_full();
        let mut b = scratch.source(node);
        // b counts on in memory past a's block; a goes on with its own block.
        for _ in 0..4 {
            for id in [a.next_in(second), b.next_in(second)] {
                let id = id.expect("numbers left");
                assert!(seen.insert(id.clone()), "repeated {id}");
            }
        }
        assert!(parts(&b.next_in(second).unwrap()).1 > 500 + BLOCK as u32);
        scratch.space_back();
        // A new source (a restart) and the old ones go on past everything issued.
        let mut c = scratch.source(node);
        for source in [&mut c, &mut a, &mut b] {
            while let Some(id) = source.next_in(second) {
                assert!(seen.insert(id.clone()), "repeated {id}");
            }
        }
        assert!(seen.iter().all(|id| node.contains(parts(id).1)));
    }

    #[test]
    fn a_second_given_up_on_a_full_disk_stays_given_up() {
        let scratch = Scratch::new("full-duplicate");
        let mut a = scratch.source(Partition::STANDALONE);
        a.next_msgid();
        scratch.disk_full();
        let before = crate::clock::DateTime::now().compact();
        a.after_duplicate();
        let after = crate::clock::DateTime::now().compact();
        let (second, _) = parts(&a.next_msgid());
        assert!(second > before, "{second} is not after {before}");
        scratch.space_back();
        if before == after {
            assert_eq!(scratch.source(Partition::STANDALONE).next_in(&before), None);
        }
    }
}
