//! Timers: `sleep`, receive timeouts, `send_after` and `cancel_timer`.
//!
//! All pending timers of a runtime live in one hierarchical timing wheel
//! ([`wheel`]) behind a mutex: inserting and cancelling are O(1) and a
//! million pending timers cost a million small slab entries, not threads. The
//! monitor thread (`scheduler::sysmon`) sleeps until the next deadline and
//! fires what is due: a waker (for `sleep` and receive timeouts) or a message
//! delivery (for `send_after`).

pub(crate) mod clock;
pub(crate) mod wheel;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;

use crate::Pid;
use crate::mailbox::node::{NodeBox, drop_quietly};
use crate::runtime::current_shared;
use crate::runtime::{self, Shared};
use wheel::{TimerKey, Wheel};

/// What a timer does when it fires.
pub(crate) enum Action {
    /// Wake a waiting future.
    Wake(Waker),
    /// Deliver a message (`send_after`).
    Send { to: Pid, node: NodeBox },
}

/// Bytes a pending timer takes in the wheel (its slab entry).
pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<wheel::Entry<Action>>();

/// The timers of one runtime.
pub(crate) struct Timers {
    /// Pending timers.
    wheel: Mutex<Wheel<Action>>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            wheel: Mutex::new(Wheel::new()),
        }
    }

    /// Adds a timer and makes sure the monitor wakes for it.
    pub(crate) fn insert(&self, shared: &Shared, deadline: u64, action: Action) -> TimerKey {
        let key = self.wheel.lock().insert(deadline, action);
        shared.sysmon.wake_before(deadline);
        key
    }

    /// Cancels a timer; its deadline and action if it had not fired.
    pub(crate) fn cancel(&self, key: TimerKey) -> Option<(u64, Action)> {
        self.wheel.lock().cancel(key)
    }

    /// Pending timers.
    pub(crate) fn len(&self) -> usize {
        self.wheel.lock().len()
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.wheel.lock().next_deadline()
    }

    /// Fires every timer due at `now`. Returns `true` if a process was woken.
    pub(crate) fn fire_expired(&self, now: u64) -> bool {
        let mut due = Vec::new();
        self.wheel
            .lock()
            .advance(now, |_, _, action| due.push(action));
        let woke = !due.is_empty();
        for action in due {
            match action {
                Action::Wake(w) => w.wake(),
                Action::Send { to, node } => {
                    // The addressee may belong to another runtime.
                    if let Err(node) = runtime::deliver(to, node) {
                        // A dead addressee: the message goes, and a panic in
                        // its destructor must not end the monitor thread.
                        drop_quietly(node);
                    }
                }
            }
        }
        woke
    }

    /// Drops every pending timer (shutdown).
    pub(crate) fn clear(&self) {
        let mut pending = Vec::new();
        self.wheel
            .lock()
            .advance(u64::MAX, |_, _, action| pending.push(action));
        for action in pending {
            if let Action::Send { node, .. } = action {
                drop_quietly(node);
            }
        }
    }
}

/// Where a deadline's wheel entry lives (the runtime is found again by id and
/// instance, so a deadline dropped after its runtime is harmless).
struct Registration {
    key: TimerKey,
    runtime: u8,
    instance: u64,
}

/// A registration of the current process's waker at a deadline; cancelled
/// when dropped. Shared by [`Sleep`] and timed receives.
pub(crate) struct Deadline {
    /// Clock ns at which it expires (`u64::MAX`: never).
    pub(crate) at: u64,
    /// `at` was computed from a clock reading just now and lies ahead, so
    /// the first poll need not read the clock again.
    ahead: bool,
    /// The wheel entry, once registered.
    key: Option<Registration>,
}

impl Deadline {
    /// A deadline `d` (> 0) from now.
    pub(crate) fn after(shared: &Shared, d: Duration) -> Deadline {
        Deadline {
            at: shared.clock.deadline_after(d),
            ahead: !d.is_zero(),
            key: None,
        }
    }

    /// `Ready` once the deadline has passed; otherwise registers the waker
    /// (once) and returns `Pending`.
    pub(crate) fn poll_expired(&mut self, shared: &Shared, cx: &mut Context<'_>) -> Poll<()> {
        if self.at == u64::MAX {
            return Poll::Pending;
        }
        if !std::mem::take(&mut self.ahead) && shared.clock.now() >= self.at {
            self.key = None;
            return Poll::Ready(());
        }
        if self.key.is_none() {
            let key = shared
                .timers
                .insert(shared, self.at, Action::Wake(cx.waker().clone()));
            self.key = Some(Registration {
                key,
                runtime: shared.id,
                instance: shared.instance,
            });
        }
        Poll::Pending
    }

    /// Cancels the registration, if any.
    pub(crate) fn cancel(&mut self) {
        if let Some(reg) = self.key.take() {
            let guard = crossbeam_epoch::pin();
            if let Some(rt) = runtime::lookup(reg.runtime, &guard)
                && rt.instance == reg.instance
            {
                rt.timers.cancel(reg.key);
            }
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Waits for a duration. Created by [`sleep`].
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Option<Deadline>,
    duration: Duration,
}

/// Suspends the current process for `duration` (other processes run
/// meanwhile). Must be awaited inside a beamish process.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let t = std::time::Instant::now();
/// beamish::sleep(std::time::Duration::from_millis(5)).await;
/// assert!(t.elapsed() >= std::time::Duration::from_millis(5));
/// # }).unwrap();
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: None,
        duration,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = current_shared("sleep");
        let duration = this.duration;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Deadline::after(shared, duration));
        deadline.poll_expired(shared, cx)
    }
}

/// A pending `send_after`, for [`cancel_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerRef {
    runtime: u8,
    instance: u64,
    key: TimerKey,
}

/// Sends `msg` to `to` after `delay`, like Erlang's `erlang:send_after/3`.
/// The message is delivered by the runtime's timer, even if the sender has
/// exited by then. Must be called inside a beamish process (or on a thread
/// inside [`crate::Runtime::block_on`]'s root process).
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// beamish::send_after(beamish::self_pid(), std::time::Duration::from_millis(1), "tick");
/// assert_eq!(beamish::receive::<&str>().await, "tick");
/// # }).unwrap();
/// ```
pub fn send_after<T: Send + 'static>(to: Pid, delay: Duration, msg: T) -> TimerRef {
    send_after_on(current_shared("send_after"), to, delay, msg)
}

pub(crate) fn send_after_on<T: Send + 'static>(
    shared: &Shared,
    to: Pid,
    delay: Duration,
    msg: T,
) -> TimerRef {
    let at = shared.clock.deadline_after(delay);
    let node = NodeBox::message(msg);
    let key = shared.timers.insert(shared, at, Action::Send { to, node });
    TimerRef {
        runtime: shared.id,
        instance: shared.instance,
        key,
    }
}

/// Cancels a `send_after` timer. Returns the time that was left, or `None`
/// if the timer already fired (or was cancelled), as `erlang:cancel_timer/1`
/// returns `false`. The message of a cancelled timer is dropped.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// let t = beamish::send_after(beamish::self_pid(), Duration::from_secs(60), 1u8);
/// let left = beamish::cancel_timer(t).unwrap();
/// assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(59));
/// assert_eq!(beamish::cancel_timer(t), None);
/// # }).unwrap();
/// ```
pub fn cancel_timer(timer: TimerRef) -> Option<Duration> {
    let guard = crossbeam_epoch::pin();
    let shared = runtime::lookup(timer.runtime, &guard)?;
    if shared.instance != timer.instance {
        return None;
    }
    let (at, action) = shared.timers.cancel(timer.key)?;
    let now = shared.clock.now();
    match action {
        Action::Send { node, .. } => {
            drop_quietly(node);
        }
        Action::Wake(w) => drop(w),
    }
    Some(Duration::from_nanos(at.saturating_sub(now)))
}
