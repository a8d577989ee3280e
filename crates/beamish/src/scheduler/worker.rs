//! One scheduler thread: the run loop.
//!
//! Each turn of the loop ("tick") takes one process and polls it once:
//!
//! 1. every 61st tick, or when the monitor asked for preemption, the global
//!    queues come first, so work injected from outside never waits behind a
//!    busy local queue (61: a prime, as in tokio, so it does not beat in step
//!    with periodic workloads);
//! 2. urgent (max, high) work comes next, then the LIFO slot (capped at
//!    [`LIFO_STREAK`] runs in a row), then the local queue, then the normal
//!    and low global queues (low first on every 8th tick, BEAM's ratio);
//! 3. with nothing local, the thread searches: it steals half of another
//!    thread's queue, starting at a random victim;
//! 4. with nothing anywhere it parks (see `idle` for the protocol that makes
//!    sure no wake-up is lost).
//!
//! The thread keeps an epoch guard pinned while it works (re-pinned every
//! few ticks, dropped before parking), so sends from processes pin cheaply.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crossbeam_deque::{Steal, Worker};

use super::WorkerShared;
use crate::loom::atomic::Ordering;
use crate::process::table::SlotCache;
use crate::process::{Priority, Task};
use crate::runtime::{Shared, context};

/// Runs from the LIFO slot in a row before the local queue gets a turn.
const LIFO_STREAK: u32 = 16;
/// Ticks between checks of the global queues.
const GLOBAL_INTERVAL: u64 = 61;
/// Ticks between re-pins of the epoch guard.
const REPIN_INTERVAL: u64 = 64;
/// Steal attempts before a thread that ran dry parks, and the spin-loop
/// pauses between them: some tens of microseconds in all. Tuned by
/// measurement, not derived: `restart` went from 1.7 to 1.4 µs per restart
/// (16 rounds gave 1.55) with no change to the other workloads.
const SPIN_ROUNDS: u32 = 64;
const SPIN_PAUSES: u32 = 64;

/// The thread-local half of a scheduler.
pub(crate) struct Core {
    /// The runtime.
    pub(crate) shared: Arc<Shared>,
    /// This thread's slot in `Scheduler::workers`.
    pub(crate) index: usize,
    /// A spare thread (started by the monitor), not part of the idle protocol.
    pub(crate) spare: bool,
    /// The local run queue.
    pub(crate) local: Worker<Task>,
    /// Free process-table slots.
    pub(crate) slots: RefCell<SlotCache>,
    /// Ticks so far.
    tick: Cell<u64>,
    /// LIFO runs in a row.
    lifo_streak: Cell<u32>,
    /// xorshift state for victim selection (seeded by the runtime).
    rng: Cell<u64>,
}

impl Core {
    pub(crate) fn new(shared: Arc<Shared>, index: usize, spare: bool, local: Worker<Task>) -> Core {
        let seed = shared.seed ^ ((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Core {
            shared,
            index,
            spare,
            local,
            slots: RefCell::new(SlotCache::default()),
            tick: Cell::new(0),
            lifo_streak: Cell::new(0),
            rng: Cell::new(seed | 1),
        }
    }

    pub(crate) fn worker(&self) -> &WorkerShared {
        &self.shared.sched.workers[self.index]
    }

    /// True if the monitor asked this thread to preempt the running process.
    pub(crate) fn preempt_requested(&self) -> bool {
        self.worker().preempt.load(Ordering::Relaxed)
    }

    fn next_rand(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// Puts a woken process in the LIFO slot (normal priority) or the global
    /// queue of its priority.
    pub(crate) fn schedule_woken(&self, task: Task) {
        if task.header().priority() != Priority::Normal {
            self.shared.sched.inject(task);
            return;
        }
        let prev = self.worker().lifo.swap(task.0.as_ptr(), Ordering::AcqRel);
        if let Some(prev) = std::ptr::NonNull::new(prev) {
            self.push_local(Task(prev));
        }
    }

    /// Puts a new or yielding process at the back of the local queue.
    pub(crate) fn push_local(&self, task: Task) {
        if task.header().priority() != Priority::Normal {
            self.shared.sched.inject(task);
            return;
        }
        self.local.push(task);
        if !self.spare {
            self.shared.sched.notify_parked();
        }
    }

    fn steal_injector(&self, prio: Priority) -> Option<Task> {
        let q = &self.shared.sched.injectors[prio as usize];
        if q.is_empty() {
            return None;
        }
        loop {
            match q.steal_batch_and_pop(&self.local) {
                Steal::Success(t) => return Some(t),
                Steal::Retry => continue,
                Steal::Empty => return None,
            }
        }
    }

    fn global_task(&self) -> Option<Task> {
        let sched = &self.shared.sched;
        sched
            .pop_urgent()
            .or_else(|| self.steal_injector(Priority::Normal))
            .or_else(|| self.steal_injector(Priority::Low))
    }

    /// The next process to run from this thread's own queues and the global ones.
    fn next_task(&self) -> Option<Task> {
        let tick = self.tick.get() + 1;
        self.tick.set(tick);
        let w = self.worker();
        if tick.is_multiple_of(GLOBAL_INTERVAL) || w.preempt.load(Ordering::Relaxed) {
            w.preempt.store(false, Ordering::Relaxed);
            if let Some(t) = self.global_task() {
                return Some(t);
            }
        }
        if let Some(t) = self.shared.sched.pop_urgent() {
            return Some(t);
        }
        if tick.is_multiple_of(8)
            && let Some(t) = self.steal_injector(Priority::Low)
        {
            return Some(t);
        }
        if let Some(t) = w.take_lifo() {
            let streak = self.lifo_streak.get() + 1;
            if streak <= LIFO_STREAK {
                self.lifo_streak.set(streak);
                return Some(t);
            }
            self.local.push(t);
        }
        self.lifo_streak.set(0);
        self.local.pop().or_else(|| self.global_task())
    }

    /// Steals from another thread's queue.
    fn steal(&self) -> Option<Task> {
        let workers = &self.shared.sched.workers;
        let n = workers.len();
        let start = (self.next_rand() % n as u64) as usize;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index || !workers[victim].active.load(Ordering::Acquire) {
                continue;
            }
            loop {
                match workers[victim].stealer.steal_batch_and_pop(&self.local) {
                    Steal::Success(t) => return Some(t),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        self.global_task()
    }

    /// Steals, retrying for a few microseconds before giving up: waking a
    /// parked thread costs a system call on both sides (tens of
    /// microseconds), so a thread that ran dry keeps looking briefly, as
    /// BEAM's schedulers busy-wait before they sleep. Work that appears
    /// meanwhile (a process spawned or woken by the other thread) is taken
    /// without anyone parking or being woken.
    fn steal_for_a_while(&self) -> Option<Task> {
        for round in 0..SPIN_ROUNDS {
            if let Some(t) = self.steal() {
                return Some(t);
            }
            if self.shared.sched.stopping.load(Ordering::Acquire) {
                return None;
            }
            if round + 1 < SPIN_ROUNDS {
                for _ in 0..SPIN_PAUSES {
                    std::hint::spin_loop();
                }
            }
        }
        None
    }

    /// The run loop of a regular scheduler thread.
    pub(crate) fn run(&self) {
        let _ctx = context::enter_core(self);
        let sched = &self.shared.sched;
        let mut guard = Some(crossbeam_epoch::pin());
        let mut searching = false;
        loop {
            if let Some(task) = self.next_task() {
                if searching {
                    searching = false;
                    if sched.idle.transition_worker_from_searching() {
                        sched.notify_parked();
                    }
                }
                self.run_task(task, &mut guard);
                continue;
            }
            if sched.stopping.load(Ordering::Acquire) {
                break;
            }
            // Spares stay out of the idle protocol: if they counted as
            // searching, a producer would rely on them to find its work, and
            // a spare that then naps or exits would strand it.
            if !searching && !self.spare {
                searching = sched.idle.transition_worker_to_searching();
            }
            let load = &self.worker().load;
            if load.observed.load(Ordering::Relaxed) {
                load.idle.begin(self.shared.clock.now());
            }
            if let Some(task) = self.steal_for_a_while() {
                if load.idle.is_idle() {
                    load.idle.end(self.shared.clock.now());
                }
                if searching {
                    searching = false;
                    if sched.idle.transition_worker_from_searching() {
                        sched.notify_parked();
                    }
                }
                self.run_task(task, &mut guard);
                continue;
            }
            if !load.idle.is_idle() {
                load.idle.begin(self.shared.clock.now());
            }
            if self.spare {
                if !self.shared.any_stuck() {
                    load.idle.end(self.shared.clock.now());
                    break;
                }
                drop(guard.take());
                self.worker()
                    .parker
                    .park_timeout(std::time::Duration::from_millis(1));
                load.idle.end(self.shared.clock.now());
                guard = Some(crossbeam_epoch::pin());
                continue;
            }
            // Park (unpinned, so the epoch can advance meanwhile).
            drop(guard.take());
            let last = sched
                .idle
                .transition_worker_to_parked(self.index, searching);
            searching = false;
            if last && sched.has_any_work() {
                load.idle.end(self.shared.clock.now());
                if sched.idle.unpark_worker_by_id(self.index) {
                    guard = Some(crossbeam_epoch::pin());
                    continue;
                }
                // Someone already woke us: we are counted as searching.
                searching = true;
                guard = Some(crossbeam_epoch::pin());
                continue;
            }
            self.shared.sysmon_idle_changed();
            loop {
                self.worker().parker.park();
                if sched.stopping.load(Ordering::Acquire) || !sched.idle.is_parked(self.index) {
                    break;
                }
            }
            if sched.stopping.load(Ordering::Acquire) && sched.idle.unpark_worker_by_id(self.index)
            {
                // Woken for shutdown while still listed as parked.
            } else {
                searching = true;
            }
            load.idle.end(self.shared.clock.now());
            self.shared.sysmon_idle_changed();
            guard = Some(crossbeam_epoch::pin());
        }
        if searching {
            sched.idle.transition_worker_from_searching();
        }
        self.shared.table.return_cache(&mut self.slots.borrow_mut());
    }

    fn run_task(&self, task: Task, guard: &mut Option<crossbeam_epoch::Guard>) {
        crate::process::run::run(task, self);
        if self.tick.get().is_multiple_of(REPIN_INTERVAL)
            && let Some(g) = guard.as_mut()
        {
            g.repin();
        }
    }
}
