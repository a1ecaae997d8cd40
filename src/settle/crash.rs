//! Crash points for the exactly-once tests: with `MEDCARD_CRASH_AT=<point>:<infno>` in its
//! environment the process kills itself with SIGKILL (as `kill -9` would) at that step of a
//! money-moving call, so a test can restart it and check that nothing was charged twice or
//! lost. Points: `before_send` (the call is on disk, not sent), `after_send` (sent; the
//! process dies `MEDCARD_CRASH_DELAY_MS`, default 100, later while waiting for the reply),
//! `after_reply` (an answer or a transport failure came back, nothing recorded yet),
//! `after_commit` (the outcome is recorded, the caller not yet answered), and
//! `before_journal` (nothing written yet for the call).
//!
//! `MEDCARD_DISK_FULL_AT=<point>:<infno>` fills the disk instead of dying: from that step on
//! every write of the cache file fails with SQLite's `SQLITE_FULL` (`cache::fault`), until
//! the file `MEDCARD_DISK_SPACE_BACK` names exists.
//!
//! Crash points exist only in builds with `--features fault-injection` (`make test`, `make
//! fault-matrix`). Without it — the release binary hospitals install — [`at`] is an empty
//! inline function: the environment is never read and the variable's name is not in the
//! binary.

/// A step of a journalled call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    BeforeJournal,
    BeforeSend,
    AfterSend,
    AfterReply,
    AfterCommit,
}

/// Does nothing: this build has no crash points (no `--features fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn at(_point: Point, _infno: &str) {}

#[cfg(feature = "fault-injection")]
pub use injected::at;

/// The crash points themselves: reading the plan from the environment, and dying.
#[cfg(feature = "fault-injection")]
mod injected {
    use super::Point;
    use std::sync::OnceLock;
    use std::time::Duration;

    impl Point {
        fn name(self) -> &'static str {
            match self {
                Point::BeforeJournal => "before_journal",
                Point::BeforeSend => "before_send",
                Point::AfterSend => "after_send",
                Point::AfterReply => "after_reply",
                Point::AfterCommit => "after_commit",
            }
        }
    }

    struct Plan {
        point: String,
        infno: String,
        delay: Duration,
    }

    /// The step `MEDCARD_DISK_FULL_AT` names, if any.
    fn disk_full_plan() -> Option<&'static (String, String)> {
        static PLAN: OnceLock<Option<(String, String)>> = OnceLock::new();
        PLAN.get_or_init(|| {
            let spec = std::env::var("MEDCARD_DISK_FULL_AT").ok()?;
            let (point, infno) = spec.split_once(':')?;
            Some((point.to_owned(), infno.to_owned()))
        })
        .as_ref()
    }

    fn plan() -> Option<&'static Plan> {
        static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
        PLAN.get_or_init(|| {
            let spec = std::env::var("MEDCARD_CRASH_AT").ok()?;
            let (point, infno) = spec.split_once(':')?;
            let delay_ms = std::env::var("MEDCARD_CRASH_DELAY_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(100);
            tracing::warn!(
                point,
                infno,
                "MEDCARD_CRASH_AT is set: this process will kill itself (test only)"
            );
            Some(Plan {
                point: point.to_owned(),
                infno: infno.to_owned(),
                delay: Duration::from_millis(delay_ms),
            })
        })
        .as_ref()
    }

    fn die(point: Point, infno: &str) {
        tracing::warn!(point = point.name(), infno, "crash point reached: SIGKILL");
        // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }

    /// Dies here if the plan names this point and transaction (or fills the disk, if the
    /// disk plan does).
    pub fn at(point: Point, infno: &str) {
        if disk_full_plan().is_some_and(|(p, i)| p == point.name() && i == infno) {
            crate::cache::fault::arm();
        }
        let Some(plan) = plan() else { return };
        if plan.point != point.name() || plan.infno != infno {
            return;
        }
        if point == Point::AfterSend {
            let delay = plan.delay;
            let infno = infno.to_owned();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                die(Point::AfterSend, &infno);
            });
        } else {
            die(point, infno);
        }
    }
}
