//! Per-runtime introspection state: whether anyone is looking, the windows
//! of reductions per process, and the recent `long_schedule` reports.
//!
//! Observing switches on with the first sample and off again when the last
//! observer is dropped, or when nobody has sampled for [`Hub::expiry`]
//! (checked by the monitor thread: an observer kept but no longer used),
//! so a runtime nobody looks at pays nothing per poll beyond one flag load.
//!
//! Windows are the runtime's, not any one observer's: the first request
//! after the open window is [`Hub::window`] old closes it (every scheduler
//! thread's map is taken and merged), and every observer reads the same
//! closed window. Two observers sampling at different rates therefore see
//! the same reductions per process, never half each.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::Pid;
use crate::loom::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::runtime::Shared;

/// `long_schedule` reports kept for observers.
const LONG_SCHEDULES_KEPT: usize = 256;
/// The default window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(1);
/// Observing stops after this long without a request (at least; ten
/// windows if that is longer).
const MIN_EXPIRY: Duration = Duration::from_secs(30);

/// A `long_schedule` report as observers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongScheduleEvent {
    /// When it was reported, since the runtime started.
    pub at: Duration,
    /// The process that held its scheduler thread.
    pub pid: Pid,
    /// How long it had run without yielding when reported.
    pub duration: Duration,
}

/// Reductions per process during one closed window.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Clock readings (ns) of the window's ends.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Processes that spent reductions in the window, by pid.
    pub(crate) entries: Vec<(Pid, u64)>,
    /// Reductions not attributed to a live process (spent by processes
    /// that have ended since, or by processes past the per-thread cap).
    pub(crate) untracked: u64,
    /// Every reduction of the window.
    pub(crate) reductions: u64,
    /// Polls in the window.
    pub(crate) polls: u64,
}

struct Windows {
    /// Clock reading when the open window began.
    open_since: u64,
    /// The open window's number (never 0: a new process's stamp).
    epoch: u16,
    /// Each thread's (reductions, polls) totals when the window opened.
    totals: Vec<(u64, u64)>,
    /// The last closed window.
    last: Arc<Window>,
}

impl Windows {
    /// Opens the next window at `now` on every thread; what the closing
    /// one saw first, by thread.
    fn open_next(&mut self, shared: &Shared, now: u64) -> Vec<Vec<(Pid, u64)>> {
        self.epoch = match self.epoch.wrapping_add(1) {
            0 => 1,
            e => e,
        };
        self.open_since = now;
        let workers = &shared.sched.workers;
        self.totals.resize(workers.len(), (0, 0));
        workers
            .iter()
            .map(|w| w.load.close_window(self.epoch))
            .collect()
    }
}

/// See the module docs.
pub(crate) struct Hub {
    on: AtomicBool,
    /// Live [`crate::observe::Observer`]s.
    observers: AtomicUsize,
    window_ns: AtomicU64,
    /// Clock reading of the latest request.
    last_request: AtomicU64,
    windows: Mutex<Windows>,
    long_schedules: Mutex<VecDeque<LongScheduleEvent>>,
    long_schedule_count: AtomicU64,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            on: AtomicBool::new(false),
            observers: AtomicUsize::new(0),
            window_ns: AtomicU64::new(DEFAULT_WINDOW.as_nanos() as u64),
            last_request: AtomicU64::new(0),
            windows: Mutex::new(Windows {
                open_since: 0,
                epoch: 1,
                totals: Vec::new(),
                last: Arc::new(Window::default()),
            }),
            long_schedules: Mutex::new(VecDeque::new()),
            long_schedule_count: AtomicU64::new(0),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_window(&self, window: Duration) {
        let ns = window.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
        self.window_ns.store(ns, Ordering::Relaxed);
    }

    /// How long observing stays on without a request.
    pub(crate) fn expiry(&self) -> Duration {
        (self.window() * 10).max(MIN_EXPIRY)
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// A sample is being taken at clock reading `now`: switches observing on
    /// if it was off, closes the open window if it is old enough, and
    /// returns the last closed window.
    pub(crate) fn request(&self, shared: &Shared, now: u64) -> Arc<Window> {
        self.last_request.store(now, Ordering::Relaxed);
        let mut w = self.windows.lock();
        if !self.on.load(Ordering::Acquire) {
            drop(w.open_next(shared, now));
            for (i, worker) in shared.sched.workers.iter().enumerate() {
                w.totals[i] = worker.load.totals();
                worker.load.observed.store(true, Ordering::Relaxed);
            }
            self.on.store(true, Ordering::Release);
            w.last = Arc::new(Window {
                start: now,
                end: now,
                ..Window::default()
            });
            return w.last.clone();
        }
        if now.saturating_sub(w.open_since) >= self.window_ns.load(Ordering::Relaxed) {
            let start = w.open_since;
            let seen = w.open_next(shared, now);
            let window = close(shared, &mut w.totals, seen, start, now);
            w.last = Arc::new(window);
        }
        w.last.clone()
    }

    /// Switches observing off if nobody asked for [`Hub::expiry`]. Called
    /// by the monitor thread.
    pub(crate) fn expire(&self, shared: &Shared, now: u64) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let idle = now.saturating_sub(self.last_request.load(Ordering::Relaxed));
        if idle >= self.expiry().as_nanos() as u64 {
            self.switch_off(shared);
        }
    }

    /// An observer was made.
    pub(crate) fn attach(&self) {
        self.observers.fetch_add(1, Ordering::AcqRel);
    }

    /// An observer was dropped: the last one switches observing off.
    pub(crate) fn detach(&self, shared: &Shared) {
        if self.observers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.switch_off(shared);
        }
    }

    fn switch_off(&self, shared: &Shared) {
        let mut w = self.windows.lock();
        if !self.on.load(Ordering::Acquire) {
            return;
        }
        self.on.store(false, Ordering::Release);
        for worker in shared.sched.workers.iter() {
            worker.load.observed.store(false, Ordering::Relaxed);
        }
        drop(w.open_next(shared, 0));
        w.last = Arc::new(Window::default());
        tracing::debug!("nobody observes the runtime: per-poll accounting off");
    }

    /// Keeps a `long_schedule` report for observers.
    pub(crate) fn long_schedule(&self, event: LongScheduleEvent) {
        self.long_schedule_count.fetch_add(1, Ordering::Relaxed);
        let mut q = self.long_schedules.lock();
        if q.len() == LONG_SCHEDULES_KEPT {
            q.pop_front();
        }
        q.push_back(event);
    }

    pub(crate) fn long_schedules(&self) -> (u64, Vec<LongScheduleEvent>) {
        let q = self.long_schedules.lock();
        (
            self.long_schedule_count.load(Ordering::Relaxed),
            q.iter().cloned().collect(),
        )
    }
}

/// Closes a window: what each process seen in it spent is its reductions
/// now minus its reductions when first seen; the threads' totals give the
/// whole window's reductions.
fn close(
    shared: &Shared,
    totals: &mut [(u64, u64)],
    seen: Vec<Vec<(Pid, u64)>>,
    start: u64,
    end: u64,
) -> Window {
    let mut window = Window {
        start,
        end,
        ..Window::default()
    };
    for (i, worker) in shared.sched.workers.iter().enumerate() {
        let (r, p) = worker.load.totals();
        window.reductions += r.saturating_sub(totals[i].0);
        window.polls += p.saturating_sub(totals[i].1);
        totals[i] = (r, p);
    }
    // One list, by pid; a process listed twice (stamped as a window closed)
    // keeps its first, smaller start. Sorting in place needs no map: at
    // 100,000 busy processes a map per window cost more than the scan.
    let mut seen = seen.into_iter();
    let mut all = seen.next().unwrap_or_default();
    for more in seen {
        all.extend(more);
    }
    all.sort_unstable();
    all.dedup_by(|later, first| later.0 == first.0);
    let guard = crossbeam_epoch::pin();
    let mut tracked = 0u64;
    all.retain_mut(|(pid, r)| match shared.table.get(*pid, &guard) {
        Some(h) => {
            *r = h.reductions.load(Ordering::Relaxed).saturating_sub(*r);
            tracked += *r;
            *r > 0
        }
        None => false,
    });
    drop(guard);
    all.shrink_to_fit();
    window.untracked = window.reductions.saturating_sub(tracked);
    window.entries = all;
    window
}

impl Window {
    /// Reductions `pid` spent in the window.
    pub(crate) fn of(&self, pid: Pid) -> u64 {
        match self.entries.binary_search_by_key(&pid, |e| e.0) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// The `n` processes that spent the most, most first.
    pub(crate) fn top(&self, n: usize) -> Vec<(Pid, u64)> {
        let mut heap = std::collections::BinaryHeap::with_capacity(n + 1);
        for &(pid, r) in &self.entries {
            heap.push(std::cmp::Reverse((r, std::cmp::Reverse(pid))));
            if heap.len() > n {
                heap.pop();
            }
        }
        let mut top: Vec<(Pid, u64)> = heap
            .into_iter()
            .map(|std::cmp::Reverse((r, std::cmp::Reverse(pid)))| (pid, r))
            .collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top
    }
}
