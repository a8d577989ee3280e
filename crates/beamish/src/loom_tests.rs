//! Loom models of the lock-free protocols (built only with `--cfg loom`):
//!
//! * the mailbox push/wake path: senders push into the inbound stack and
//!   notify the process state word while the process drains and goes idle;
//!   no message may be left behind without a scheduled run;
//! * the park/unpark protocol of idle scheduler threads: work pushed while
//!   threads search or park must wake one of them (a lost wake-up shows up
//!   as a deadlock, which loom reports);
//! * a scheduler thread's idle clock read by a sampler while the thread
//!   starts and ends idle periods: no period is ever counted twice.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p beamish --lib --release`.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

use super::idle::Idle;
use super::idle_clock::IdleClock;
use super::inbound::{Inbound, Pushed};
use super::node::NodeBox;
use super::park::Parker;
use super::state::{AfterRun, State};

/// A process reduced to its mailbox and state word, with a counter of run
/// queue entries standing in for the scheduler.
struct Proc {
    state: State,
    inbound: Inbound,
    queued: AtomicUsize,
    received: AtomicUsize,
}

impl Proc {
    fn send(&self, v: u32) {
        if let Ok(Pushed::First) = self.inbound.push(NodeBox::message(v)) {
            if self.state.notify() {
                self.queued.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// One scheduler turn, if the process is queued.
    fn run_once(&self) -> bool {
        let q = self.queued.load(Ordering::SeqCst);
        if q == 0
            || self
                .queued
                .compare_exchange(q, q - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        self.state.start_run();
        let n = self.inbound.take_all().count();
        self.received.fetch_add(n, Ordering::SeqCst);
        if self.state.end_run() == AfterRun::Reschedule {
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
}

#[test]
fn mailbox_push_never_loses_a_wakeup() {
    loom::model(|| {
        let p = Arc::new(Proc {
            state: State::new_scheduled(2),
            inbound: Inbound::new(),
            queued: AtomicUsize::new(1),
            received: AtomicUsize::new(0),
        });
        let senders: Vec<_> = (0..2)
            .map(|i| {
                let p = p.clone();
                thread::spawn(move || p.send(i))
            })
            .collect();
        let consumer = {
            let p = p.clone();
            thread::spawn(move || {
                p.run_once();
            })
        };
        for s in senders {
            s.join().unwrap();
        }
        consumer.join().unwrap();
        // Whatever is still in the mailbox must have a run queued for it.
        while p.run_once() {}
        assert_eq!(p.received.load(Ordering::SeqCst), 2);
    });
}

/// Two scheduler threads following the real idle protocol, one producer.
struct Pool {
    idle: Idle,
    parkers: [Parker; 2],
    work: AtomicUsize,
    done: AtomicBool,
}

impl Pool {
    fn take(&self) -> bool {
        let w = self.work.load(Ordering::SeqCst);
        w > 0
            && self
                .work
                .compare_exchange(w, w - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        for p in &self.parkers {
            p.unpark();
        }
    }

    fn worker(&self, me: usize) {
        let mut searching = false;
        loop {
            if self.done.load(Ordering::SeqCst) {
                return;
            }
            if !searching {
                searching = self.idle.transition_worker_to_searching();
            }
            if self.take() {
                if searching {
                    self.idle.transition_worker_from_searching();
                }
                self.finish();
                return;
            }
            let last = self.idle.transition_worker_to_parked(me, searching);
            searching = false;
            if last && self.work.load(Ordering::SeqCst) > 0 {
                if !self.idle.unpark_worker_by_id(me) {
                    searching = true;
                }
                continue;
            }
            loop {
                self.parkers[me].park();
                if self.done.load(Ordering::SeqCst) || !self.idle.is_parked(me) {
                    break;
                }
            }
            if self.done.load(Ordering::SeqCst) {
                return;
            }
            searching = true;
        }
    }
}

#[test]
fn idle_protocol_never_loses_a_wakeup() {
    loom::model(|| {
        let pool = Arc::new(Pool {
            idle: Idle::new(2),
            parkers: [Parker::new(), Parker::new()],
            work: AtomicUsize::new(0),
            done: AtomicBool::new(false),
        });
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || pool.worker(i))
            })
            .collect();
        pool.work.fetch_add(1, Ordering::SeqCst);
        if let Some(i) = pool.idle.worker_to_notify() {
            pool.parkers[i].unpark();
        }
        for w in workers {
            w.join().unwrap();
        }
        assert!(pool.done.load(Ordering::SeqCst));
    });
}

/// Idle time up to `now` of the writer's script in `idle_clock_*`: idle
/// over [10, 20] and [30, 35].
fn scripted_idle(now: u64) -> u64 {
    now.clamp(10, 20) - 10 + (now.clamp(30, 35) - 30)
}

#[test]
fn idle_clock_never_counts_a_period_twice() {
    loom::model(|| {
        let clock = Arc::new(IdleClock::new());
        let time = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let (c, t) = (clock.clone(), time.clone());
        let thread = thread::spawn(move || {
            for (at, begin) in [(10, true), (20, false), (30, true), (35, false)] {
                t.store(at, Ordering::SeqCst);
                if begin {
                    c.begin(at);
                } else {
                    c.end(at);
                }
            }
        });
        for _ in 0..2 {
            let now = time.load(Ordering::SeqCst);
            let read = clock.idle_at(now);
            // What was idle by the time the read ended bounds it: a period
            // counted both as ended and as open would exceed it.
            let after = time.load(Ordering::SeqCst);
            assert!(
                read <= scripted_idle(after),
                "read {read} at {now}, {after}"
            );
        }
        thread.join().unwrap();
        assert_eq!(clock.idle_at(40), 15);
    });
}
