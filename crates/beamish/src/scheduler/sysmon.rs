//! The monitor thread: fires timers and keeps one process from holding a
//! scheduler thread (BEAM's `long_schedule` monitor, Go's sysmon).
//!
//! Rust cannot interrupt a future between two await points, so a process that
//! computes for a long time without awaiting holds its thread. The monitor
//! samples every thread's tick counter (odd while a poll runs) about once per
//! [`SAMPLE`] while any thread is awake, and:
//!
//! 1. **asks for a yield**: if one poll has run for a sample period and other
//!    work is waiting, it sets the thread's `preempt` flag; a process that
//!    calls any runtime operation (`reduce`, `send`, `receive`, …) sees it at
//!    its next await point and yields, and the thread then looks at the global
//!    queue first. The same happens at once when a timer wakes a process while
//!    no thread is parked, so timer-driven work (a heartbeat) is not late by a
//!    whole time slice;
//! 2. **reports a stuck process**: a poll that has run past the
//!    `long_schedule` threshold (10 ms by default) is logged with its pid and
//!    duration (`tracing` warning) and sent as a [`crate::LongSchedule`]
//!    message to every subscriber;
//! 3. **keeps the others running**: the stuck thread's LIFO slot and local
//!    queue are moved to the global queue (again at every sample while it
//!    stays stuck, since the stuck process may keep spawning), and if every
//!    scheduler thread is stuck a spare thread is started (at most
//!    `max_spare_threads`); spares exit once nothing is stuck.
//!
//! Timers: the monitor sleeps until the earlier of the next timer deadline and
//! the next sample, with its timer slack set to 1 µs so the sleep ends close
//! to the deadline. A new timer earlier than its wake-up time wakes it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::loom::atomic::{AtomicU64, Ordering};
use crate::runtime::Shared;
use crate::{LongSchedule, Pid};

/// How often busy threads are sampled. One millisecond keeps a preempted
/// process's extra latency at the scale of BEAM's time slice while costing
/// ~1000 short wake-ups per second only while the runtime is busy.
pub(crate) const SAMPLE: Duration = Duration::from_millis(1);

/// Wake-up control of the monitor thread.
pub(crate) struct SysmonWake {
    /// Guards the sleep.
    lock: Mutex<bool>,
    /// Signalled to wake the monitor early.
    cond: Condvar,
    /// When the monitor plans to wake (clock ns; `u64::MAX`: not planned).
    sleeping_until: AtomicU64,
}

impl SysmonWake {
    pub(crate) fn new() -> SysmonWake {
        SysmonWake {
            lock: Mutex::new(false),
            cond: Condvar::new(),
            sleeping_until: AtomicU64::new(0),
        }
    }

    /// Wakes the monitor if it would otherwise sleep past `deadline`. While
    /// it is awake (`sleeping_until` is 0) it may already have read the
    /// next deadline, so it is told to look again before it sleeps.
    pub(crate) fn wake_before(&self, deadline: u64) {
        let until = self.sleeping_until.load(Ordering::Acquire);
        if until == 0 || deadline < until {
            self.wake();
        }
    }

    /// Wakes the monitor now.
    pub(crate) fn wake(&self) {
        let mut woken = self.lock.lock();
        *woken = true;
        self.cond.notify_one();
    }

    pub(crate) fn sleeping_until(&self) -> u64 {
        self.sleeping_until.load(Ordering::Acquire)
    }
}

/// What the monitor remembers of one thread between samples.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// Tick counter at the last sample.
    ticks: u64,
    /// When that tick value was first seen (clock ns).
    since: u64,
    /// A long_schedule report was made for this poll.
    reported: bool,
}

/// The monitor loop.
pub(crate) fn run(shared: Arc<Shared>) {
    set_timer_slack();
    let sched = &shared.sched;
    let mut samples = vec![Sample::default(); sched.workers.len()];
    let sample_ns = SAMPLE.as_nanos() as u64;
    loop {
        if sched.stopping.load(Ordering::Acquire) {
            break;
        }
        let now = shared.clock.now();
        let woke_someone = shared.timers.fire_expired(now);
        if woke_someone && !sched.idle.any_parked() {
            // Every thread is busy: make room for what the timers woke.
            preempt_longest(&shared, &samples);
        }
        let busy = watch(&shared, &mut samples, now);
        shared.observe.expire(&shared, now);
        let next_timer = shared.timers.next_deadline().unwrap_or(u64::MAX);
        let wake_at = if busy {
            next_timer.min(now + sample_ns)
        } else {
            next_timer
        };
        sleep_until(&shared, wake_at);
    }
}

/// Samples every thread; returns `true` if any is awake.
fn watch(shared: &Shared, samples: &mut [Sample], now: u64) -> bool {
    let sched = &shared.sched;
    let threshold = shared.config.long_schedule.as_nanos() as u64;
    let sample_ns = SAMPLE.as_nanos() as u64;
    let mut busy = !sched.idle.all_parked();
    let mut active = 0;
    let mut stuck = 0;
    for (i, w) in sched.workers.iter().enumerate() {
        if !w.active.load(Ordering::Acquire) {
            continue;
        }
        active += 1;
        let s = &mut samples[i];
        let ticks = w.ticks.load(Ordering::Relaxed);
        if ticks & 1 == 0 || ticks != s.ticks {
            if s.reported {
                let ran = Duration::from_nanos(now.saturating_sub(s.since));
                tracing::debug!(worker = i, ?ran, "stuck poll ended");
            }
            *s = Sample {
                ticks,
                since: now,
                reported: false,
            };
            w.stuck.store(false, Ordering::Release);
            continue;
        }
        busy = true;
        let ran = now.saturating_sub(s.since);
        if ran >= sample_ns && sched.has_any_work() {
            w.preempt.store(true, Ordering::Relaxed);
        }
        if ran >= threshold {
            stuck += 1;
            if !s.reported {
                s.reported = true;
                w.stuck.store(true, Ordering::Release);
                let pid_bits = w.current.load(Ordering::Relaxed);
                report_long_schedule(shared, pid_bits, Duration::from_nanos(ran));
            }
            take_over(shared, i);
        }
    }
    if active > 0 && stuck == active && sched.has_any_work() {
        shared.start_spare();
    }
    busy
}

/// Moves a stuck thread's queued processes to the global queue.
fn take_over(shared: &Shared, index: usize) {
    let sched = &shared.sched;
    let w = &sched.workers[index];
    let mut moved = 0usize;
    if let Some(t) = w.take_lifo() {
        sched.injectors[t.header().priority() as usize].push(t);
        moved += 1;
    }
    loop {
        match w.stealer.steal() {
            crossbeam_deque::Steal::Success(t) => {
                sched.injectors[t.header().priority() as usize].push(t);
                moved += 1;
            }
            crossbeam_deque::Steal::Retry => continue,
            crossbeam_deque::Steal::Empty => break,
        }
    }
    if moved > 0 {
        tracing::debug!(worker = index, moved, "took over a stuck scheduler's queue");
        for _ in 0..moved.min(sched.num_workers) {
            sched.notify_parked();
        }
    }
}

/// Asks the thread whose current poll is oldest to yield. A thread stuck in
/// a process that never awaits cannot yield, so it is skipped.
fn preempt_longest(shared: &Shared, samples: &[Sample]) {
    let sched = &shared.sched;
    let oldest = sched
        .workers
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.active.load(Ordering::Acquire)
                && !w.stuck.load(Ordering::Acquire)
                && w.ticks.load(Ordering::Relaxed) & 1 == 1
        })
        .min_by_key(|(i, _)| samples[*i].since);
    if let Some((_, w)) = oldest {
        w.preempt.store(true, Ordering::Relaxed);
    }
}

fn report_long_schedule(shared: &Shared, pid_bits: u64, duration: Duration) {
    let pid = Pid::from_bits(pid_bits);
    match pid {
        Some(pid) => tracing::warn!(%pid, ?duration, "long_schedule: process has not yielded"),
        None => tracing::warn!(?duration, "long_schedule: a scheduler thread is stuck"),
    }
    if let Some(pid) = pid {
        shared.notify_long_schedule(LongSchedule { pid, duration });
    }
}

fn sleep_until(shared: &Shared, wake_at: u64) {
    let w = &shared.sysmon;
    let mut woken = w.lock.lock();
    w.sleeping_until.store(wake_at, Ordering::Release);
    if !*woken && !shared.sched.stopping.load(Ordering::Acquire) {
        if wake_at == u64::MAX {
            w.cond.wait(&mut woken);
        } else {
            let now = shared.clock.now();
            if wake_at > now {
                let _ = w
                    .cond
                    .wait_for(&mut woken, Duration::from_nanos(wake_at - now));
            }
        }
    }
    *woken = false;
    w.sleeping_until.store(0, Ordering::Release);
}

/// Lets the monitor's sleeps end within a microsecond of their deadline
/// (Linux rounds sleeps of ordinary threads up by 50 µs by default).
fn set_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}
