//! The runtime's clock.
//!
//! Every timestamp the runtime uses (timer deadlines, watchdog samples) is a
//! `u64` of nanoseconds read from here, never from `Instant::now()` directly,
//! so a deterministic mode can later substitute virtual time without touching
//! process code.

use std::time::{Duration, Instant};

/// Monotonic nanoseconds since the runtime started.
pub(crate) struct Clock {
    /// Time zero.
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the origin.
    pub(crate) fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// `now() + d`, saturating; `u64::MAX` means never.
    pub(crate) fn deadline_after(&self, d: Duration) -> u64 {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.now().saturating_add(d)
    }
}
