//! Heavy requests and the daemon's memory. A request line of at least
//! `socket.heavy_request_bytes` (a large bill) is heavy: at most `socket.max_heavy_requests`
//! of them are parsed and worked on at once, daemon-wide. A connection whose next line is
//! heavy waits for a turn before parsing it (its later pipelined lines stay unread in the
//! socket, not in memory), at most `socket.heavy_wait_ms`; then the request is answered 1020
//! "busy, retry". So memory follows the configuration, not the number of clients or of their
//! pipelined requests.
//!
//! glibc's malloc gives threads arenas of their own (up to 8 per core), keeps freed memory in
//! them, and after freeing a large block raises the size above which blocks are mapped on
//! their own (up to 32 MB), so a large bill's buffers then come from the arenas and fragment
//! them: after a burst of large requests on tokio's blocking threads the daemon held hundreds
//! of MB while idle. [`limit_arenas`] caps the arenas and fixes that size at start (a large
//! buffer is its own mapping, returned to the system when freed), and when the last heavy
//! request in progress ends, [`HeavyPermit`]'s drop hands the freed memory back
//! (`malloc_trim`), after the cache's page cache is freed (`Release`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// glibc malloc arenas at most (`M_ARENA_MAX`): the main one and one shared by the threads.
const ARENAS: i32 = 2;
/// Blocks of this size or more are mapped on their own (`M_MMAP_THRESHOLD`; setting it also
/// stops glibc from raising it).
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// After the last heavy request, when memory is handed back.
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// What else frees memory once heavy requests are over (the cache's page cache), run on a
/// blocking thread before malloc's memory is handed back.
pub type Release = Arc<dyn Fn() + Send + Sync>;

/// The daemon-wide turns for heavy requests.
pub struct HeavyGate {
    turns: Arc<Semaphore>,
    /// Heavy requests in progress.
    running: Arc<AtomicUsize>,
    max: usize,
    release: Release,
}

/// A heavy request's turn; memory is returned to the system when the last one ends.
pub struct HeavyPermit {
    _turn: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
    release: Release,
}

impl HeavyGate {
    /// `max` heavy requests at once (at least one); `release` runs when the last one ends.
    pub fn new(max: usize, release: Release) -> HeavyGate {
        let max = max.max(1);
        HeavyGate {
            turns: Arc::new(Semaphore::new(max)),
            running: Arc::new(AtomicUsize::new(0)),
            max,
            release,
        }
    }

    /// How many heavy requests may run at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A turn, waiting at most `wait`; `None` when none came free in time.
    pub async fn enter(&self, wait: Duration) -> Option<HeavyPermit> {
        let turn = tokio::time::timeout(wait, self.turns.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        self.running.fetch_add(1, Ordering::AcqRel);
        Some(HeavyPermit {
            _turn: turn,
            running: self.running.clone(),
            release: self.release.clone(),
        })
    }
}

impl Drop for HeavyPermit {
    /// The last heavy request in progress ended: memory back to the system a moment later
    /// (its answer is still being written), unless another began meanwhile.
    fn drop(&mut self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return_freed_memory();
            return;
        };
        let (running, release) = (self.running.clone(), self.release.clone());
        runtime.spawn(async move {
            tokio::time::sleep(RELEASE_AFTER).await;
            if running.load(Ordering::Acquire) == 0 {
                let _ = tokio::task::spawn_blocking(move || {
                    release();
                    return_freed_memory();
                })
                .await;
            }
        });
    }
}

/// Caps glibc's malloc arenas and fixes its mapping threshold (see the module doc); call
/// before threads start. Elsewhere a no-op.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc tunables; any value is accepted or refused (0).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hands memory malloc keeps free back to the system (glibc); elsewhere a no-op.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks malloc's own free lists; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_is_given_up_to_the_maximum_then_after_a_wait_none() {
        let gate = HeavyGate::new(2, Arc::new(|| {}));
        let first = gate.enter(Duration::from_millis(10)).await;
        let second = gate.enter(Duration::from_millis(10)).await;
        assert!(first.is_some() && second.is_some());
        assert!(gate.enter(Duration::from_millis(10)).await.is_none());
        drop(first);
        assert!(gate.enter(Duration::from_millis(10)).await.is_some());
    }
}
