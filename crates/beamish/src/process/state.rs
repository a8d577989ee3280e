//! The process state word: scheduling state and reference count in one atomic.
//!
//! Everything that decides whether a process must be put in a run queue goes
//! through this word, so "is it queued?" and "who frees it?" never disagree.
//!
//! ```text
//!  bit 0  RUNNING    a scheduler thread is polling the process
//!  bit 1  SCHEDULED  the process sits in a run queue (or LIFO slot)
//!  bit 2  NOTIFIED   woken while RUNNING or SCHEDULED: poll it again
//!  bit 3  DONE       the process has ended; wakes are ignored
//!  bits 6..          reference count
//! ```
//!
//! The protocol, step by step:
//!
//! 1. A sender pushes into the inbound queue. If the queue was non-empty, a
//!    wake is already owed by whoever pushed into the empty queue, and the
//!    node is taken by the same `take_all`: nothing else to do. Otherwise it
//!    calls [`State::notify`].
//! 2. `notify` is always a successful read-modify-write unless DONE: IDLE
//!    becomes SCHEDULED (plus one reference, owned by the run queue entry, and
//!    the caller must enqueue the process); RUNNING or SCHEDULED gain
//!    NOTIFIED. Because it writes even when the process is already queued,
//!    the scheduler's later `start_run` reads from it (release/acquire), so
//!    the pushed message is visible to the drain that follows.
//! 3. The scheduler calls [`State::start_run`] (SCHEDULED → RUNNING, clearing
//!    NOTIFIED), drains the inbound queue and polls.
//! 4. After a `Pending` poll it calls [`State::end_run`]: if NOTIFIED was set
//!    meanwhile, the process goes back to SCHEDULED keeping the queue's
//!    reference; otherwise it becomes IDLE and the queue's reference is
//!    dropped. Either way no wake can be lost: a notify either happened before
//!    the CAS (and is seen as NOTIFIED) or after (and sees IDLE).
//! 5. A process ends only while RUNNING, on its own scheduler thread
//!    ([`State::complete`]), so DONE never races with IDLE → SCHEDULED.

use crate::loom::atomic::{AtomicUsize, Ordering};

pub(crate) const RUNNING: usize = 1 << 0;
pub(crate) const SCHEDULED: usize = 1 << 1;
pub(crate) const NOTIFIED: usize = 1 << 2;
pub(crate) const DONE: usize = 1 << 3;
const REF_SHIFT: u32 = 6;
const REF_ONE: usize = 1 << REF_SHIFT;
const FLAGS: usize = REF_ONE - 1;

/// What the caller of [`State::end_run`] must do with the process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterRun {
    /// Woken during the poll: put it back in a run queue (the queue keeps its reference).
    Reschedule,
    /// Now idle; the queue's reference was dropped. `true` if it was the last.
    Idle(bool),
}

/// The state word.
pub(crate) struct State(AtomicUsize);

impl State {
    /// A new process: SCHEDULED, with `refs` references (the table's and the run queue's).
    pub(crate) fn new_scheduled(refs: usize) -> State {
        State(AtomicUsize::new(SCHEDULED | (refs * REF_ONE)))
    }

    /// The flag bits, for introspection.
    pub(crate) fn load(&self) -> usize {
        self.0.load(Ordering::Acquire) & FLAGS
    }

    /// Wakes the process. Returns `true` if the caller must enqueue it (a
    /// reference was added for the run queue entry).
    pub(crate) fn notify(&self) -> bool {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            if cur & DONE != 0 {
                return false;
            }
            let (next, enqueue) = if cur & (RUNNING | SCHEDULED) == 0 {
                (cur | SCHEDULED | NOTIFIED, true)
            } else {
                (cur | NOTIFIED, false)
            };
            let next = if enqueue { next + REF_ONE } else { next };
            // AcqRel: release our pushed message to the scheduler's
            // `start_run`/`end_run`, which acquire this word.
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return enqueue,
                Err(actual) => cur = actual,
            }
        }
    }

    /// SCHEDULED → RUNNING, clearing NOTIFIED. Acquire: every message pushed
    /// before a notify that this run's queue entry answers is visible.
    pub(crate) fn start_run(&self) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            debug_assert!(cur & SCHEDULED != 0 && cur & RUNNING == 0, "state {cur:#b}");
            let next = (cur & !(SCHEDULED | NOTIFIED)) | RUNNING;
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Ends a run that returned `Pending`.
    pub(crate) fn end_run(&self) -> AfterRun {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            debug_assert!(cur & RUNNING != 0, "state {cur:#b}");
            let (next, after) = if cur & NOTIFIED != 0 {
                (
                    (cur & !(RUNNING | NOTIFIED)) | SCHEDULED,
                    AfterRun::Reschedule,
                )
            } else {
                (
                    (cur & !RUNNING) - REF_ONE,
                    AfterRun::Idle(cur >> REF_SHIFT == 1),
                )
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return after,
                Err(actual) => cur = actual,
            }
        }
    }

    /// RUNNING → DONE. The run queue's reference is still held; drop it with
    /// [`State::ref_dec`].
    pub(crate) fn complete(&self) {
        let prev = self.0.fetch_or(DONE, Ordering::AcqRel);
        debug_assert!(prev & RUNNING != 0);
        self.0.fetch_and(!(RUNNING | NOTIFIED), Ordering::AcqRel);
    }

    /// Adds a reference (a waker clone).
    pub(crate) fn ref_inc(&self) {
        let prev = self.0.fetch_add(REF_ONE, Ordering::Relaxed);
        debug_assert!(prev >> REF_SHIFT > 0, "ref_inc on a dead process");
    }

    /// Drops a reference; `true` if it was the last one (the caller frees).
    pub(crate) fn ref_dec(&self) -> bool {
        let prev = self.0.fetch_sub(REF_ONE, Ordering::AcqRel);
        debug_assert!(prev >> REF_SHIFT > 0);
        prev >> REF_SHIFT == 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn wake_while_running_reschedules() {
        let s = State::new_scheduled(2);
        s.start_run();
        assert!(!s.notify());
        assert_eq!(s.end_run(), AfterRun::Reschedule);
        s.start_run();
        assert_eq!(s.end_run(), AfterRun::Idle(false));
        assert!(s.notify(), "idle process must be enqueued");
        assert!(!s.notify(), "already scheduled");
        s.start_run();
        s.complete();
        assert!(!s.notify(), "done");
        assert!(!s.ref_dec());
        assert!(s.ref_dec());
    }
}
