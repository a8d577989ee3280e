//! Which scheduler threads sleep, and who wakes them.
//!
//! Waking a thread costs a system call, so a producer wakes one only when it
//! must: when no thread is already *searching* for work (a searching thread
//! will find the new work, or wake another before it sleeps) and some thread
//! is parked. The protocol:
//!
//! 1. A producer pushes work, then calls [`Idle::worker_to_notify`]. One
//!    atomic load says whether to wake anyone; if so, under the sleepers lock,
//!    one parked worker is chosen and counted as unparked *and searching*.
//! 2. A worker out of local work becomes searching
//!    ([`Idle::transition_worker_to_searching`]), unless half the workers
//!    already search (more would only contend).
//! 3. A searcher that finds work stops searching; if it was the last
//!    searcher it wakes another worker, because the work it found may be
//!    part of a burst and nobody else is looking.
//! 4. A worker that finds nothing parks ([`Idle::transition_worker_to_parked`]).
//!    If it was the last searcher, it checks every queue once more *after*
//!    publishing that it parks: a producer that pushed before that saw a
//!    searcher and woke nobody, so this re-check is what keeps its work from
//!    being stranded.
//!
//! The counters share one word: searching in the low half, unparked in the
//! high half.

use crate::loom::Mutex;
use crate::loom::atomic::{AtomicUsize, Ordering};

const UNPARK_SHIFT: usize = usize::BITS as usize / 2;
const UNPARK_ONE: usize = 1 << UNPARK_SHIFT;
const SEARCH_MASK: usize = UNPARK_ONE - 1;

/// Idle bookkeeping for one runtime's scheduler threads.
pub(crate) struct Idle {
    /// Searching count (low half) and unparked count (high half).
    state: AtomicUsize,
    /// Indices of parked workers.
    sleepers: Mutex<Vec<usize>>,
    /// Number of workers taking part.
    num_workers: usize,
}

impl Idle {
    /// All `num_workers` start unparked and not searching.
    pub(crate) fn new(num_workers: usize) -> Idle {
        Idle {
            state: AtomicUsize::new(num_workers << UNPARK_SHIFT),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    fn searching(state: usize) -> usize {
        state & SEARCH_MASK
    }

    fn unparked(state: usize) -> usize {
        state >> UNPARK_SHIFT
    }

    fn should_wake(&self) -> bool {
        // A read-modify-write, not a load: it reads the latest value of the
        // word, and a worker's later update of the word then synchronizes
        // with it, so the work pushed before this call is visible to the
        // worker's re-check (a plain load would need a SeqCst total order,
        // which the memory model checker does not model).
        let s = self.state.fetch_add(0, Ordering::SeqCst);
        Self::searching(s) == 0 && Self::unparked(s) < self.num_workers
    }

    /// A parked worker to wake for new work, if one should be woken. The
    /// chosen worker is counted as unparked and searching.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        if !self.should_wake() {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        if !self.should_wake() {
            return None;
        }
        let worker = sleepers.pop()?;
        self.state.fetch_add(UNPARK_ONE | 1, Ordering::SeqCst);
        Some(worker)
    }

    /// Tries to become a searcher; `false` if enough workers search already.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let s = self.state.load(Ordering::SeqCst);
        if 2 * Self::searching(s) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Stops searching; `true` if this was the last searcher.
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(Self::searching(prev) > 0);
        Self::searching(prev) == 1
    }

    /// Records that `worker` parks. Returns `true` if it was the last
    /// searcher, in which case the caller must re-check the queues.
    pub(crate) fn transition_worker_to_parked(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        let dec = UNPARK_ONE + usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, Ordering::SeqCst);
        sleepers.push(worker);
        is_searching && Self::searching(prev) == 1
    }

    /// Takes `worker` off the sleepers list if it is there (it found work in
    /// its final re-check). Returns `true` if it was.
    pub(crate) fn unpark_worker_by_id(&self, worker: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = sleepers.iter().position(|&w| w == worker) {
            sleepers.swap_remove(i);
            self.state.fetch_add(UNPARK_ONE, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    /// True if `worker` is on the sleepers list (a wake-up was spurious).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        let sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.contains(&worker)
    }

    /// True if some worker is parked.
    #[cfg(not(loom))]
    pub(crate) fn any_parked(&self) -> bool {
        Self::unparked(self.state.load(Ordering::SeqCst)) < self.num_workers
    }

    /// True if every worker is parked.
    #[cfg(not(loom))]
    pub(crate) fn all_parked(&self) -> bool {
        Self::unparked(self.state.load(Ordering::SeqCst)) == 0
    }
}
