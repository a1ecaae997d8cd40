//! The soak's figures of this process (the daemon runs in it): RSS (VmRSS) and its peak
//! (VmHWM) from `/proc/self/status`, open file descriptors (`/proc/self/fd`, by kind),
//! threads (`Threads:`), and whether they stayed flat.
//!
//! Descriptors and threads are held against the start's, before the load: threads the async
//! runtime keeps for blocking work linger 10 s after their last job and a connection's
//! descriptor closes when its task ends, so the end's are taken once the process has come to
//! rest ([`Figures::settled`] measures again until they are within the slack of the start's,
//! or 20 s have passed). TCP connections (to the insurer, to vpcd) are held against their
//! bound instead: the start does not hold them all yet. RSS is held against itself under
//! load ([`rss_growth`]): warmed up, and at the end of the load.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Descriptors other than TCP connections the end may hold beyond the start's (a
/// connection being closed).
const FD_SLACK: usize = 4;
/// TCP connections the process may hold at any time, however many it held at the start:
/// each of the daemon's links to the insurer keeps its connection (the settlement links,
/// the swipe link, the sync's, the sign-in keeper's), and so do the soak's admin link and
/// the card in vpcd. The warm-up does not open them all.
const TCP_MAX: usize = super::SETTLE_LINKS + 5;
/// Threads the end may hold beyond the start's.
const THREAD_SLACK: usize = 2;
/// Under load, the RSS at the end may be at most this many times the RSS once warmed up (a
/// third into the run), plus [`RSS_ALLOWANCE_MB`]: SQLite's page caches fill as the journal
/// grows, and the soak's own ledger holds ~200 bytes per settlement. A leak grows with the
/// operations; RSS before the load is no baseline (the allocator's per-thread arenas and the
/// caches are empty), nor at rest after it (freed memory is not all returned).
const RSS_FACTOR: f64 = 1.5;
const RSS_ALLOWANCE_MB: f64 = 4.0;
/// How long [`Figures::settled`] waits for the process to come to rest.
const SETTLE_WAIT: Duration = Duration::from_secs(20);

/// One reading.
pub struct Figures {
    /// VmRSS, MB.
    rss: f64,
    /// VmHWM, MB.
    hwm: f64,
    fds: usize,
    /// The descriptors by what they are: "tcp", "unix", "pipe", a file's path, …
    fd_kinds: BTreeMap<String, usize>,
    threads: usize,
    /// Time spent waiting for the process to come to rest.
    waited: Duration,
}

impl Figures {
    /// This process now.
    pub fn now() -> Result<Figures, String> {
        let (rss, hwm) = super::super::memory_mb("self")?;
        let fd_kinds = descriptors()?;
        let fds = fd_kinds.values().sum();
        let status = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
        let threads = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .ok_or("no Threads in /proc/self/status")?;
        Ok(Figures {
            rss,
            hwm,
            fds,
            fd_kinds,
            threads,
            waited: Duration::ZERO,
        })
    }

    /// This process at rest: measured until descriptors and threads are within the slack of
    /// `start`'s (at once when there is no `start`), or [`SETTLE_WAIT`] has passed.
    pub fn settled(start: Option<&Figures>) -> Result<Figures, String> {
        let began = Instant::now();
        loop {
            let mut now = Figures::now()?;
            now.waited = began.elapsed();
            let at_rest = start.is_none_or(|start| start.growth(&now).is_empty());
            if at_rest || now.waited >= SETTLE_WAIT {
                return Ok(now);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn line(&self) -> String {
        let waited = if self.waited >= Duration::from_secs(1) {
            format!(" (at rest after {:.0} s)", self.waited.as_secs_f64())
        } else {
            String::new()
        };
        format!(
            "RSS {:.1} MB (peak {:.1} MB), {} fds, {} threads{waited}",
            self.rss, self.hwm, self.fds, self.threads
        )
    }

    fn tcp(&self) -> usize {
        self.fd_kinds.get("tcp").copied().unwrap_or(0)
    }

    /// The kinds of descriptor whose number changed from `self` to `end`, e.g.
    /// "tcp 3 → 5".
    pub fn descriptor_changes(&self, end: &Figures) -> String {
        let mut kinds: Vec<&String> = self.fd_kinds.keys().chain(end.fd_kinds.keys()).collect();
        kinds.sort();
        kinds.dedup();
        let count =
            |figures: &Figures, kind: &String| figures.fd_kinds.get(kind).copied().unwrap_or(0);
        let changes: Vec<String> = kinds
            .into_iter()
            .filter(|kind| count(self, kind) != count(end, kind))
            .map(|kind| format!("{kind} {} → {}", count(self, kind), count(end, kind)))
            .collect();
        if changes.is_empty() {
            "none".into()
        } else {
            changes.join(", ")
        }
    }

    /// What grew from `self` to `end` beyond the slack.
    pub fn growth(&self, end: &Figures) -> Vec<String> {
        let mut grown = Vec::new();
        let (tcp, end_tcp) = (self.tcp(), end.tcp());
        if end.fds - end_tcp > self.fds - tcp + FD_SLACK {
            grown.push(format!(
                "file descriptors other than TCP grew from {} to {} (slack {FD_SLACK})",
                self.fds - tcp,
                end.fds - end_tcp
            ));
        }
        if end_tcp > tcp.max(TCP_MAX) {
            grown.push(format!(
                "TCP connections grew from {tcp} to {end_tcp} (at most {TCP_MAX}: the insurer links and vpcd)"
            ));
        }
        if end.threads > self.threads + THREAD_SLACK {
            grown.push(format!(
                "threads grew from {} to {} (slack {THREAD_SLACK})",
                self.threads, end.threads
            ));
        }
        grown
    }
}

/// Whether RSS kept growing under load once warmed up: a problem when the end of the load's
/// is over [`RSS_FACTOR`] × the warmed-up one plus [`RSS_ALLOWANCE_MB`]. Prints the growth
/// per 1000 operations either way.
pub fn rss_growth(warmed: &(Figures, u64), end: &(Figures, u64)) -> Option<String> {
    let ((warmed, done_warm), (end, done_end)) = (warmed, end);
    let operations = done_end.saturating_sub(*done_warm).max(1);
    println!(
        "RSS under load after warming up: {:+.1} MB over {operations} operations ({:+.2} KB per 1000)",
        end.rss - warmed.rss,
        (end.rss - warmed.rss) * 1024.0 * 1000.0 / operations as f64
    );
    (end.rss > warmed.rss * RSS_FACTOR + RSS_ALLOWANCE_MB).then(|| {
        format!(
            "RSS grew under load from {:.1} MB (warmed up) to {:.1} MB (more than {RSS_FACTOR}× + {RSS_ALLOWANCE_MB} MB)",
            warmed.rss, end.rss
        )
    })
}

/// This process's descriptors by kind: sockets as "tcp" or "unix" (looked up by inode in
/// /proc/net), anonymous inodes and pipes by name, files by path.
fn descriptors() -> Result<BTreeMap<String, usize>, String> {
    let sockets = socket_kinds();
    let mut kinds = BTreeMap::new();
    let entries = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("cannot list /proc/self/fd: {e}"))?;
    for entry in entries.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed meanwhile (the listing's own descriptor, say)
        };
        let target = target.to_string_lossy().into_owned();
        let kind = match target.strip_prefix("socket:[") {
            Some(inode) => sockets
                .get(inode.trim_end_matches(']'))
                .copied()
                .unwrap_or("socket")
                .to_owned(),
            None => target.split('[').next().unwrap_or_default().to_owned(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    Ok(kinds)
}

/// Socket inodes of the machine to "tcp" or "unix".
fn socket_kinds() -> HashMap<String, &'static str> {
    let mut kinds = HashMap::new();
    for (file, kind, column) in [
        ("/proc/net/tcp", "tcp", 9),
        ("/proc/net/tcp6", "tcp", 9),
        ("/proc/net/unix", "unix", 6),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(column) {
                kinds.insert(inode.to_owned(), kind);
            }
        }
    }
    kinds
}
