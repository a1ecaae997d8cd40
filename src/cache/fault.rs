//! A full disk on demand, for the storage tests (only with `--features fault-injection`):
//! once [`arm`]ed, every write transaction of the cache fails at its commit with SQLite's own
//! `SQLITE_FULL` (reads go on working, as they do on a real full disk) until the file named
//! by `MEDCARD_DISK_SPACE_BACK` exists — "space came back". `settle::crash` arms it at the
//! step `MEDCARD_DISK_FULL_AT=<point>:<infno>` names.

use std::sync::atomic::{AtomicBool, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);

/// The disk is full from now on (until space comes back).
pub fn arm() {
    tracing::warn!("MEDCARD_DISK_FULL_AT reached: the cache's writes fail from now on (test only)");
    ARMED.store(true, Ordering::SeqCst);
}

/// Whether writes fail now.
pub fn disk_full() -> bool {
    if !ARMED.load(Ordering::SeqCst) {
        return false;
    }
    let back = std::env::var_os("MEDCARD_DISK_SPACE_BACK")
        .is_some_and(|path| std::path::Path::new(&path).exists());
    if back {
        ARMED.store(false, Ordering::SeqCst);
        tracing::warn!("MEDCARD_DISK_SPACE_BACK exists: the cache's writes work again (test only)");
    }
    !back
}
