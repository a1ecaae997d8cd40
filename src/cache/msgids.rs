//! [`CacheMsgIds`]: msgids whose sequence is kept in the cache (`msgid_seq`), so that
//! separate processes of one institution (`medcard sync` runs, the daemon, restarts within
//! the same second) never send the same msgid — the insurer refuses a repeated one
//! (发送方报文ID重复), and a 2601 reversal names a call by it.
//!
//! The id is `fixmedins_code`(12) + local `yyyyMMddHHmmss`(14) + a sequence number modulo
//! 10,000 (4 digits). Numbers are reserved from the cache's per-date sequence in blocks of
//! [`BLOCK`], and a block serves only the second it was reserved in (its ids all carry that
//! second): a process takes the writer's lock at most about once a second, not once per
//! call, and two ids of one second could only meet after 10,000 numbers were reserved in
//! that second.
//!
//! When the cache cannot reserve (a full disk), numbers go on from the last one the cache
//! reserved, counted in memory (process-wide: every link's source shares the count), and the
//! next reservation that reaches the disk takes them in as well — so an id issued while the
//! disk was full is never issued again, by this process or another.

use super::CacheWriter;
use crate::clock::DateTime;
use crate::insurer::{MsgIdSource, SequenceMsgIds};
use std::sync::{Mutex, PoisonError};

/// Sequence numbers reserved at a time.
pub const BLOCK: u64 = 64;

/// Numbers issued from memory while the cache could not reserve: the date, the next number,
/// and how many were issued past the cache's sequence.
struct Unrecorded {
    date: String,
    next: u64,
    issued: u64,
}

static UNRECORDED: Mutex<Option<Unrecorded>> = Mutex::new(None);

/// msgids numbered by the cache's persistent per-date sequence.
pub struct CacheMsgIds {
    prefix: String,
    writer: CacheWriter,
    /// The second the current block was reserved in, its next number and its end.
    block: Option<(String, u64, u64)>,
    /// Used when the cache cannot give a number (the process-wide in-memory sequence).
    fallback: SequenceMsgIds,
}

impl CacheMsgIds {
    pub fn new(fixmedins_code: &str, writer: CacheWriter) -> CacheMsgIds {
        CacheMsgIds {
            prefix: fixmedins_code.to_string(),
            writer,
            block: None,
            fallback: SequenceMsgIds::new(fixmedins_code),
        }
    }
}

impl MsgIdSource for CacheMsgIds {
    fn next_msgid(&mut self) -> String {
        let stamp = DateTime::now().compact();
        if let Some((second, next, end)) = &mut self.block
            && *second == stamp
            && *next < *end
        {
            let id = format!("{}{}{:04}", self.prefix, second, *next % 10_000);
            *next += 1;
            return id;
        }
        let date = stamp.get(..8).unwrap_or(&stamp).to_owned();
        let mut unrecorded = UNRECORDED.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = unrecorded
            .as_ref()
            .filter(|u| u.date == date)
            .map_or(0, |u| u.issued);
        match self.writer.reserve_msgid_seq(&date, BLOCK + skip) {
            Ok(first) => {
                *unrecorded = None;
                let first = first + skip;
                let id = format!("{}{}{:04}", self.prefix, stamp, first % 10_000);
                self.block = Some((stamp, first + 1, first + BLOCK));
                id
            }
            Err(e) => {
                self.block = None;
                match self.number_in_memory(&mut unrecorded, &date) {
                    Some(number) => {
                        tracing::warn!(error = %e, "msgid sequence cannot be reserved in the cache: numbering on in memory");
                        format!("{}{}{:04}", self.prefix, stamp, number % 10_000)
                    }
                    None => {
                        tracing::warn!(error = %e, "msgid sequence not available from the cache: using the in-memory one");
                        self.fallback.next_msgid()
                    }
                }
            }
        }
    }
}

impl CacheMsgIds {
    /// The next number past the cache's sequence for `date`, counted in memory (none when the
    /// cache cannot even be read).
    fn number_in_memory(&self, unrecorded: &mut Option<Unrecorded>, date: &str) -> Option<u64> {
        if unrecorded.as_ref().is_none_or(|u| u.date != date) {
            let last = self.writer.msgid_seq(date).ok()?;
            *unrecorded = Some(Unrecorded {
                date: date.to_owned(),
                next: last + 1,
                issued: 0,
            });
        }
        let u = unrecorded.as_mut()?;
        let number = u.next;
        u.next += 1;
        u.issued += 1;
        Some(number)
    }
}

#[cfg(test)]
mod tests {
    use super::CacheMsgIds;
    use crate::cache::Cache;
    use crate::insurer::MsgIdSource;
    use std::collections::HashSet;

    #[test]
    fn two_sources_on_one_cache_never_repeat_an_id() {
        let dir = std::env::temp_dir().join(format!("medcard-msgids-{}", std::process::id()));
        let cache = Cache::open(dir.join("cache.sqlite")).unwrap();
        let mut a = CacheMsgIds::new("H50010302473", cache.writer().clone());
        let mut b = CacheMsgIds::new("H50010302473", cache.writer().clone());
        let mut seen = HashSet::new();
        for _ in 0..500 {
            for id in [a.next_msgid(), b.next_msgid()] {
                assert_eq!(id.len(), 30);
                assert!(seen.insert(id.clone()), "repeated {id}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
