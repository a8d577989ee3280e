//! The scheduler: one thread per core running processes from run queues.
//!
//! Layout, as in BEAM and tokio:
//!
//! * each scheduler thread has a local FIFO run queue (`crossbeam-deque`),
//!   which the others steal from when they run dry;
//! * each has a **LIFO slot**: a process woken by a message from the process
//!   running on that thread runs next, on the same core, while the message is
//!   still in cache (a ping-pong pair stays on one core); a streak of LIFO
//!   runs is capped so the local queue is not starved;
//! * global injectors, one per [`Priority`], take work from outside the
//!   scheduler threads (timers, IO, other runtimes' processes) and all high
//!   and max priority work, which every scheduler checks first;
//! * idle threads park ([`idle`], [`park`]) and are woken only when there is
//!   work no searching thread will find;
//! * a monitor thread ([`sysmon`]) fires timers and watches for a process
//!   that holds its scheduler too long: it asks cooperative processes to
//!   yield, reports the one that never yields (`long_schedule`), hands the
//!   stuck thread's queue to the others, and starts a spare scheduler thread
//!   when every thread is stuck.

pub(crate) mod idle;
pub(crate) mod idle_clock;
pub(crate) mod load;
pub(crate) mod park;
pub(crate) mod sysmon;
pub(crate) mod worker;

use crossbeam_deque::{Injector, Steal, Stealer};

use crate::loom::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::process::{Priority, Task};
use idle::Idle;
use park::Parker;

/// What other threads see of one scheduler thread.
pub(crate) struct WorkerShared {
    /// Steals from the thread's local queue.
    pub(crate) stealer: Stealer<Task>,
    /// The LIFO slot (a `Task`'s header pointer, or null).
    pub(crate) lifo: AtomicPtr<crate::process::Header>,
    /// Parks and unparks the thread.
    pub(crate) parker: Parker,
    /// Incremented when a poll starts and when it ends: odd while polling.
    /// Written only by the thread (plain stores), sampled by the monitor.
    pub(crate) ticks: AtomicU64,
    /// Pid bits of the process being polled (for long_schedule reports).
    pub(crate) current: AtomicU64,
    /// Set by the monitor: yield at the next await point and look at the
    /// global queue first.
    pub(crate) preempt: AtomicBool,
    /// A thread is running on this slot (spare slots start empty).
    pub(crate) active: AtomicBool,
    /// The monitor saw this thread stuck in one poll past the threshold.
    pub(crate) stuck: AtomicBool,
    /// Idle time and per-process reductions, for introspection.
    pub(crate) load: load::Load,
}

impl WorkerShared {
    pub(crate) fn new(stealer: Stealer<Task>) -> WorkerShared {
        WorkerShared {
            stealer,
            lifo: AtomicPtr::new(std::ptr::null_mut()),
            parker: Parker::new(),
            ticks: AtomicU64::new(0),
            current: AtomicU64::new(0),
            preempt: AtomicBool::new(false),
            active: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            load: load::Load::new(),
        }
    }

    /// Takes the process in the LIFO slot, if any.
    pub(crate) fn take_lifo(&self) -> Option<Task> {
        if self.lifo.load(Ordering::Relaxed).is_null() {
            return None;
        }
        let p = self.lifo.swap(std::ptr::null_mut(), Ordering::AcqRel);
        std::ptr::NonNull::new(p).map(Task)
    }
}

/// The run queues of one runtime.
pub(crate) struct Scheduler {
    /// Global queues by priority (index = `Priority as usize`).
    pub(crate) injectors: [Injector<Task>; 4],
    /// Tasks waiting in the max and high injectors (checked every tick).
    pub(crate) urgent: AtomicUsize,
    /// Every scheduler thread slot: the regular ones, then spares.
    pub(crate) workers: Box<[WorkerShared]>,
    /// Regular scheduler threads.
    pub(crate) num_workers: usize,
    /// Parked/searching bookkeeping of the regular threads.
    pub(crate) idle: Idle,
    /// Set when the runtime stops its threads.
    pub(crate) stopping: AtomicBool,
    /// Spare threads running now.
    pub(crate) spares: AtomicUsize,
}

impl Scheduler {
    pub(crate) fn new(workers: Box<[WorkerShared]>, num_workers: usize) -> Scheduler {
        Scheduler {
            injectors: Default::default(),
            urgent: AtomicUsize::new(0),
            workers,
            num_workers,
            idle: Idle::new(num_workers),
            stopping: AtomicBool::new(false),
            spares: AtomicUsize::new(0),
        }
    }

    /// Pushes a task on the global queue of its priority and wakes a thread.
    pub(crate) fn inject(&self, task: Task) {
        let prio = task.header().priority();
        if prio >= Priority::High {
            self.urgent.fetch_add(1, Ordering::AcqRel);
        }
        self.injectors[prio as usize].push(task);
        self.notify_parked();
    }

    /// Takes one task from the urgent (max, then high) queues.
    pub(crate) fn pop_urgent(&self) -> Option<Task> {
        if self.urgent.load(Ordering::Acquire) == 0 {
            return None;
        }
        for prio in [Priority::Max, Priority::High] {
            loop {
                match self.injectors[prio as usize].steal() {
                    Steal::Success(t) => {
                        self.urgent.fetch_sub(1, Ordering::AcqRel);
                        return Some(t);
                    }
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        None
    }

    /// True if any global queue holds work.
    pub(crate) fn has_global_work(&self) -> bool {
        self.injectors.iter().any(|q| !q.is_empty())
    }

    /// True if any queue at all holds work.
    pub(crate) fn has_any_work(&self) -> bool {
        self.has_global_work()
            || self
                .workers
                .iter()
                .any(|w| !w.stealer.is_empty() || !w.lifo.load(Ordering::Acquire).is_null())
    }

    /// Wakes a parked thread if new work might otherwise wait.
    pub(crate) fn notify_parked(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.workers[i].parker.unpark();
        }
    }

    /// Wakes every thread (shutdown).
    pub(crate) fn unpark_all(&self) {
        for w in self.workers.iter() {
            w.parker.unpark();
        }
    }
}
