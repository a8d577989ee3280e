//! A scheduler thread's idle time, written by the thread and read by any
//! sampler without a lock (`erlang:statistics(scheduler_wall_time)`'s
//! idea): the thread publishes when its current idle period began and adds
//! each ended period to a total.
//!
//! The protocol: ending a period clears `since` *before* adding the period
//! to `total` (both release stores); a reader loads `total`, `since`,
//! `total` again (acquire) and retries when the two totals differ. So a
//! reader that sees the new total also sees the cleared `since` and never
//! counts a period twice; a reader between the two stores misses the
//! ending period once (the next read counts it). The loom model in
//! `loom_tests.rs` checks both.

use crate::loom::atomic::{AtomicU64, Ordering};

/// See the module docs.
pub(crate) struct IdleClock {
    /// Idle nanoseconds of ended periods.
    total: AtomicU64,
    /// Clock reading when the current idle period began; 0: not idle.
    since: AtomicU64,
}

impl IdleClock {
    pub(crate) fn new() -> IdleClock {
        IdleClock {
            total: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// The thread goes idle at clock reading `now`.
    pub(crate) fn begin(&self, now: u64) {
        self.since.store(now.max(1), Ordering::Release);
    }

    /// True while an idle period is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.since.load(Ordering::Relaxed) != 0
    }

    /// The thread has work again at clock reading `now`.
    pub(crate) fn end(&self, now: u64) {
        let since = self.since.load(Ordering::Relaxed);
        if since == 0 {
            return;
        }
        self.since.store(0, Ordering::Release);
        let total = self.total.load(Ordering::Relaxed);
        self.total
            .store(total + now.saturating_sub(since), Ordering::Release);
    }

    /// Idle nanoseconds up to clock reading `now`, counting an open period.
    pub(crate) fn idle_at(&self, now: u64) -> u64 {
        loop {
            let before = self.total.load(Ordering::Acquire);
            let since = self.since.load(Ordering::Acquire);
            let after = self.total.load(Ordering::Acquire);
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
