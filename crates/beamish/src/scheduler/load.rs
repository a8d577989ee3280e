//! What a scheduler thread records for introspection (`crate::observe`), and
//! only while someone looks.
//!
//! Two things, both written by the thread itself:
//!
//! * **idle time**, as `erlang:statistics(scheduler_wall_time)` counts it:
//!   the thread publishes when it went idle (`idle_since`) and adds each
//!   idle period to `idle_ns` when it ends. A thread that parks always does
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
    /// Idle nanoseconds so far (ended periods only).
    idle_ns: AtomicU64,
    /// Clock reading when the current idle period began; 0: not idle.
    idle_since: AtomicU64,
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
            idle_ns: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
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

    /// The thread goes idle at clock reading `now`.
    pub(crate) fn idle_begin(&self, now: u64) {
        self.idle_since.store(now.max(1), Ordering::Release);
    }

    /// True while an idle period is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle_since.load(Ordering::Relaxed) != 0
    }

    /// The thread has work again at clock reading `now`.
    pub(crate) fn idle_end(&self, now: u64) {
        let since = self.idle_since.load(Ordering::Relaxed);
        if since == 0 {
            return;
        }
        // Clear the open period before adding it: a reader that sees the
        // new total then also sees no open period (see `idle_at`).
        self.idle_since.store(0, Ordering::Release);
        let total = self.idle_ns.load(Ordering::Relaxed);
        self.idle_ns
            .store(total + now.saturating_sub(since), Ordering::Release);
    }

    /// Idle nanoseconds up to clock reading `now`, counting an open period.
    /// May miss an idle period that is ending at this instant (it is counted
    /// by the next call), never counts one twice.
    pub(crate) fn idle_at(&self, now: u64) -> u64 {
        loop {
            let before = self.idle_ns.load(Ordering::Acquire);
            let since = self.idle_since.load(Ordering::Acquire);
            let after = self.idle_ns.load(Ordering::Acquire);
            if before != after {
                continue;
            }
            let open = if since == 0 {
                0
            } else {
                now.saturating_sub(since)
            };
            return before + open;
        }
    }
}
