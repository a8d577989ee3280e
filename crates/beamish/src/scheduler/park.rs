//! Parking one scheduler thread: a flag, a mutex and a condition variable.
//!
//! `unpark` sets the flag under the mutex before signalling, and `park`
//! checks the flag under the same mutex before waiting, so an unpark that
//! comes before the park is never lost: the park returns at once.

use crate::loom::{Condvar, Mutex};

/// A one-thread parker.
pub(crate) struct Parker {
    /// Set by `unpark`, consumed by `park`.
    notified: Mutex<bool>,
    /// Signalled by `unpark`.
    cond: Condvar,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker {
            notified: Mutex::new(false),
            cond: Condvar::new(),
        }
    }

    /// Blocks until `unpark` is called (or was called since the last park).
    pub(crate) fn park(&self) {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        while !*notified {
            notified = self.cond.wait(notified).unwrap_or_else(|e| e.into_inner());
        }
        *notified = false;
    }

    /// As `park`, but gives up after `timeout` (returns whether it was unparked).
    #[cfg(not(loom))]
    pub(crate) fn park_timeout(&self, timeout: std::time::Duration) -> bool {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        if !*notified {
            notified = self
                .cond
                .wait_timeout(notified, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::replace(&mut *notified, false)
    }

    /// Wakes the parked thread, or makes its next park return at once.
    pub(crate) fn unpark(&self) {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        *notified = true;
        drop(notified);
        self.cond.notify_one();
    }
}
