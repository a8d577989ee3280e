//! What the current thread is doing: which scheduler it is, which process it
//! is polling, and how much of the process's time slice is left.
//!
//! Reductions: every runtime operation (send, spawn, link, each message a
//! receive examines, …) costs reductions from the running process's budget.
//! When the budget is spent (or the watchdog asked this scheduler to
//! preempt), the next await point of the process yields, so no process holds
//! a scheduler for more than about one budget's worth of operations.

use std::cell::Cell;
use std::ptr::{self, NonNull};

use crate::process::Header;
use crate::scheduler::worker::Core;

/// Reductions in one time slice. BEAM uses 4000 (a reduction there is about
/// one function call; here it is one runtime operation, which costs more, so
/// a slice is tens of microseconds).
pub(crate) const BUDGET: i32 = 4000;

struct Context {
    /// The scheduler running on this thread (null on other threads).
    core: Cell<*const Core>,
    /// The process being polled (null between polls).
    current: Cell<*const Header>,
    /// Reductions left in the current slice.
    budget: Cell<i32>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            core: Cell::new(ptr::null()),
            current: Cell::new(ptr::null()),
            budget: Cell::new(BUDGET),
        }
    };
}

/// Installs `core` as this thread's scheduler for the guard's lifetime.
pub(crate) fn enter_core(core: &Core) -> CoreGuard {
    CONTEXT.with(|c| c.core.set(core));
    CoreGuard(())
}

/// Removes the scheduler from the thread when dropped.
pub(crate) struct CoreGuard(());

impl Drop for CoreGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|c| c.core.set(ptr::null()));
    }
}

/// This thread's scheduler, if it is one.
pub(crate) fn core<'a>() -> Option<&'a Core> {
    // SAFETY: set by `enter_core` for the duration of the worker loop, which
    // outlives every use on this thread.
    CONTEXT.with(|c| unsafe { c.core.get().as_ref() })
}

/// Marks `p` as the process being polled, with a fresh budget.
pub(crate) fn enter_process(p: NonNull<Header>) {
    CONTEXT.with(|c| {
        c.current.set(p.as_ptr());
        c.budget.set(BUDGET);
    });
}

/// Ends the current poll; returns the reductions it spent.
pub(crate) fn leave_process() -> u64 {
    CONTEXT.with(|c| {
        c.current.set(ptr::null());
        (i64::from(BUDGET) - i64::from(c.budget.get().min(BUDGET))).max(0) as u64
    })
}

/// The process being polled on this thread.
pub(crate) fn current() -> Option<NonNull<Header>> {
    CONTEXT
        .try_with(|c| NonNull::new(c.current.get() as *mut Header))
        .ok()
        .flatten()
}

/// The process being polled; panics with a clear message outside one.
pub(crate) fn expect_current(what: &str) -> NonNull<Header> {
    match current() {
        Some(p) => p,
        None => panic!("beamish::{what} must be called from inside a beamish process"),
    }
}

/// Spends `n` reductions.
pub(crate) fn consume(n: u32) {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    let _ = CONTEXT.try_with(|c| c.budget.set(c.budget.get().saturating_sub(n)));
}

/// True when the running process should yield at its next await point:
/// its budget is spent, or the watchdog asked this scheduler to preempt.
pub(crate) fn should_yield() -> bool {
    CONTEXT
        .try_with(|c| {
            c.budget.get() <= 0
                // SAFETY: as in `core`.
                || unsafe { c.core.get().as_ref() }.is_some_and(|core| core.preempt_requested())
        })
        .unwrap_or(false)
}
