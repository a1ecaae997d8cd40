//! The daemon's one kind of background thread: a named thread with a stop flag, stopped and
//! joined when its [`Worker`] is stopped or dropped. The reader monitor, the background sync
//! and the resolver of unanswered calls all run as workers; their loops look at the
//! [`StopFlag`] between turns and pause with [`StopFlag::sleep`], which returns early on stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a pausing worker looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The stop flag a worker's loop watches.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether the worker was told to stop.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Pauses for `total`, or less when the worker is told to stop meanwhile.
    pub fn sleep(&self, total: Duration) {
        let mut left = total;
        while !left.is_zero() && !self.is_stopped() {
            let step = left.min(STOP_CHECK);
            std::thread::sleep(step);
            left -= step;
        }
    }

    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether a worker's thread is still running; kept by watchers such as the systemd watchdog.
#[derive(Debug, Clone)]
pub struct Liveness(Arc<AtomicBool>);

impl Liveness {
    pub fn is_running(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Clears the liveness flag when the thread's body ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A running background thread; told to stop and joined on [`stop`](Self::stop) or drop.
pub struct Worker {
    name: &'static str,
    stop: StopFlag,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a thread named `name`; `body` returns when its [`StopFlag`] is raised
    /// (or earlier, when it has nothing left to do). A thread that cannot be started is
    /// logged: the worker then never runs.
    pub fn spawn(name: &'static str, body: impl FnOnce(&StopFlag) + Send + 'static) -> Worker {
        let stop = StopFlag::default();
        let running = Arc::new(AtomicBool::new(true));
        let (flag, alive) = (stop.clone(), Running(running.clone()));
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _alive = alive;
                body(&flag);
            });
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                running.store(false, Ordering::Relaxed);
                tracing::error!(thread = name, error = %e, "cannot start a thread");
                None
            }
        };
        Worker {
            name,
            stop,
            running,
            thread,
        }
    }

    /// Stops the thread and waits until it has ended.
    pub fn stop(mut self) {
        self.halt();
    }

    /// Whether the thread still runs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// A watcher of [`is_running`](Self::is_running) that can outlive a borrow of the worker.
    pub fn liveness(&self) -> Liveness {
        Liveness(self.running.clone())
    }

    fn halt(&mut self) {
        self.stop.raise();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(thread = self.name, "the thread panicked");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_stops_its_loop_and_joins_on_drop() {
        let (sender, turns) = std::sync::mpsc::channel();
        let worker = Worker::spawn("medcard-test", move |stop| {
            while !stop.is_stopped() {
                let _ = sender.send(());
                stop.sleep(Duration::from_secs(3600));
            }
        });
        assert!(turns.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(worker.is_running());
        let liveness = worker.liveness();
        let started = std::time::Instant::now();
        drop(worker);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!liveness.is_running());
    }
}
