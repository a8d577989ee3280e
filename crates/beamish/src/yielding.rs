//! Cooperative yielding: `reduce`, `yield_now`, and `long_schedule` reports.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::runtime::{context, current_shared};
use crate::{Error, Pid};

/// Spends `n` reductions; yields to other processes if the time slice is
/// used up (or the watchdog asked for it). Call it in loops that compute
/// without awaiting anything else: it costs a thread-local decrement when
/// no yield is due.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let mut acc = 0u64;
/// for i in 0..100_000u64 {
///     acc = acc.wrapping_add(i * i);
///     beamish::reduce(1).await;
/// }
/// # let _ = acc;
/// # }).unwrap();
/// ```
pub fn reduce(n: u32) -> Reduce {
    Reduce { n, yielded: false }
}

/// The future of [`reduce`].
#[must_use = "futures do nothing unless awaited"]
pub struct Reduce {
    n: u32,
    yielded: bool,
}

impl Future for Reduce {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.yielded {
            return Poll::Ready(());
        }
        context::consume(this.n);
        this.n = 0;
        if context::should_yield() {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

/// Yields to other processes once, unconditionally.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async { beamish::yield_now().await }).unwrap();
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.yielded {
            return Poll::Ready(());
        }
        this.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A `long_schedule` report: a process ran longer than the runtime's
/// threshold (default 10 ms) without reaching an await point. Sent to the
/// processes that called [`subscribe_long_schedule`], like the messages of
/// Erlang's `erlang:system_monitor(Pid, [{long_schedule, T}])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongSchedule {
    /// The process that holds its scheduler thread.
    pub pid: Pid,
    /// How long it had run when reported.
    pub duration: Duration,
}

/// Makes the calling process receive a [`LongSchedule`] message for every
/// process that holds a scheduler thread too long.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// beamish::subscribe_long_schedule().unwrap();
/// let hog = beamish::spawn(async {
///     std::thread::sleep(std::time::Duration::from_millis(40)); // never awaits
/// });
/// let report = beamish::receive::<beamish::LongSchedule>().await;
/// assert_eq!(report.pid, hog);
/// # }).unwrap();
/// ```
pub fn subscribe_long_schedule() -> Result<(), Error> {
    let me = crate::try_self_pid().ok_or(Error::NotInProcess)?;
    let shared = current_shared("subscribe_long_schedule");
    let mut subs = shared.long_schedule_subscribers.lock();
    if !subs.contains(&me) {
        subs.push(me);
    }
    Ok(())
}
