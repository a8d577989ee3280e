//! What a scheduler thread records for introspection (`crate::observe`), and
//! only while someone looks.
//!
//! Two things, both written by the thread itself:
//!
//! * **idle time**, as `erlang:statistics(scheduler_wall_time)` counts it
//!   ([`IdleClock`]). A thread that parks always does
//!   so (parking is a system call; two clock reads beside it are nothing);
//!   the short spin before parking is timed only while `observed` is set,
//!   so an unobserved runtime reads no clock between two polls;
//! * **reductions per process** of the current sampling window: while
//!   `observed` is set, the first poll of a process in a window stamps the
//!   window's number into a spare byte pair of its control block and
//!   records the process with its reductions so far in a per-thread list;
//!   every later poll of it in that window costs one compare. When the
//!   sampler closes the window, what each listed process spent is its
//!   reductions now minus the recorded ones. No per-poll map or lock: a
//!   first version kept a per-thread map of reductions per pid, and
//!   100,000 busy processes lost a quarter of their throughput while
//!   observed. The list is capped ([`MAX_TRACKED`] processes per thread
//!   per window); what the cap leaves out is counted (the thread's own
//!   reduction total, written by it on every observed poll) but not named.
//!
//! `observed` is a flag in the thread's own shared slot, written only when
//! observing starts or stops, so the check per poll is a load of a line
//! that stays in the thread's cache.

use parking_lot::Mutex;

use super::idle_clock::IdleClock;
use crate::Pid;
use crate::loom::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use crate::process::Header;

/// Processes tracked per thread per window (beyond: counted, not named).
pub(crate) const MAX_TRACKED: usize = 1 << 17;

/// One thread's load accounting.
pub(crate) struct Load {
    /// Someone is sampling: time the spins and track the window.
    pub(crate) observed: AtomicBool,
    /// The open window's number (set by the sampler when it closes one).
    epoch: AtomicU16,
    /// Idle time.
    pub(crate) idle: IdleClock,
    /// Reductions and polls so far while observed (written by the thread).
    reductions: AtomicU64,
    polls: AtomicU64,
    /// Processes first run in the open window, with their reductions then.
    seen: Mutex<Vec<(Pid, u64)>>,
}

impl Load {
    pub(crate) fn new() -> Load {
        Load {
            observed: AtomicBool::new(false),
            epoch: AtomicU16::new(1),
            idle: IdleClock::new(),
            reductions: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The thread is about to poll `h` (only while observed): the first
    /// poll of a process in a window records where its reductions started.
    pub(crate) fn before_run(&self, h: &Header) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if h.window.load(Ordering::Relaxed) == epoch {
            return;
        }
        h.window.store(epoch, Ordering::Relaxed);
        let mut seen = self.seen.lock();
        if seen.len() < MAX_TRACKED {
            seen.push((h.pid, h.reductions.load(Ordering::Relaxed)));
        }
    }

    /// The thread ran a process for `reductions` (only while observed).
    pub(crate) fn after_run(&self, reductions: u64) {
        // Only this thread writes: a load and a store, no read-modify-write.
        let r = self.reductions.load(Ordering::Relaxed);
        self.reductions.store(r + reductions, Ordering::Relaxed);
        let p = self.polls.load(Ordering::Relaxed);
        self.polls.store(p + 1, Ordering::Relaxed);
    }

    /// Reductions and polls so far while observed.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.reductions.load(Ordering::Relaxed),
            self.polls.load(Ordering::Relaxed),
        )
    }

    /// Closes the open window: the processes it saw first, and the number
    /// of the next window.
    pub(crate) fn close_window(&self, next_epoch: u16) -> Vec<(Pid, u64)> {
        self.epoch.store(next_epoch, Ordering::Relaxed);
        std::mem::take(&mut *self.seen.lock())
    }
}
