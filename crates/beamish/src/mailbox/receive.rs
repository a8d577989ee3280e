//! Selective receive.
//!
//! A receive scans the process's queue from the oldest message; the first
//! message its matcher accepts is taken out, and every other message stays
//! where it was. When the queue is exhausted it drains the inbound stack and
//! goes on with the new messages only; when nothing matches it waits, with
//! its scan position saved, so a wake-up examines only what arrived since
//! (see `queue` for the save and mark cursors).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};
use std::time::Duration;

use super::Message;
use super::node::NodeBox;
use super::queue::Cursor;
use crate::process::Header;
use crate::runtime::context;
use crate::timer::Deadline;

/// Decides which message a receive takes. Implemented by the matchers behind
/// [`receive`], [`receive_if`] and [`receive_match`].
pub trait Matcher {
    /// What the receive returns.
    type Output;
    /// Does this message match?
    fn matches(&mut self, msg: &Message) -> bool;
    /// Converts the matched message (only called after `matches` said yes).
    fn take(&mut self, msg: Message) -> Self::Output;
}

/// Matches the first message of type `T`.
pub struct ByType<T>(PhantomData<fn() -> T>);

impl<T: Send + 'static> Matcher for ByType<T> {
    type Output = T;
    fn matches(&mut self, msg: &Message) -> bool {
        msg.is::<T>()
    }
    fn take(&mut self, msg: Message) -> T {
        match msg.downcast::<T>() {
            Ok(v) => v,
            Err(_) => unreachable!("matched by type"),
        }
    }
}

/// Matches the first `T` for which the predicate holds.
pub struct ByPredicate<T, F>(F, PhantomData<fn() -> T>);

impl<T: Send + 'static, F: FnMut(&T) -> bool> Matcher for ByPredicate<T, F> {
    type Output = T;
    fn matches(&mut self, msg: &Message) -> bool {
        msg.downcast_ref::<T>().is_some_and(&mut self.0)
    }
    fn take(&mut self, msg: Message) -> T {
        match msg.downcast::<T>() {
            Ok(v) => v,
            Err(_) => unreachable!("matched by type"),
        }
    }
}

/// Matches the first message, of any type, the closure accepts.
pub struct ByMessage<F>(F);

impl<F: FnMut(&Message) -> bool> Matcher for ByMessage<F> {
    type Output = Message;
    fn matches(&mut self, msg: &Message) -> bool {
        (self.0)(msg)
    }
    fn take(&mut self, msg: Message) -> Message {
        msg
    }
}

/// A position in the mailbox, from [`mark`]: a receive started with
/// [`Receive::after_mark`] looks only at messages that arrived after it
/// (see [`mark`] for the one limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark(u64);

/// Marks the current end of the mailbox. Take a mark just before sending a
/// request, then receive the reply with [`Receive::after_mark`]: the receive
/// skips every older message, so waiting for a reply costs the same however
/// long the mailbox is (Erlang's receive-marker optimisation). A process
/// keeps its 64 newest marks taken while older messages were waiting; a
/// receive after a mark older than those looks at the whole mailbox.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let me = beamish::self_pid();
/// for i in 0..10_000u32 { me.send(i); } // a long backlog
/// let m = beamish::mark();
/// let server = beamish::spawn(async move { me.send("reply") });
/// let reply = beamish::receive::<&str>().after_mark(m).await;
/// assert_eq!(reply, "reply");
/// # let _ = server;
/// # }).unwrap();
/// ```
///
/// # Panics
/// Outside a beamish process.
pub fn mark() -> Mark {
    let p = context::expect_current("mark");
    // SAFETY: the process is running on this thread.
    let h = unsafe { p.as_ref() };
    super::drain(h);
    let id = crate::reference::next_id();
    // SAFETY: as in `drain`; no other `&mut Local` is alive.
    let local = unsafe { &mut *h.local.get() };
    local.queue.add_mark(id);
    Mark(id)
}

/// Waits for the first message of type `T`.
///
/// # Panics
/// When polled outside a beamish process.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let me = beamish::self_pid();
/// me.send(1u8);
/// me.send("text");
/// assert_eq!(beamish::receive::<&str>().await, "text"); // skips the u8
/// assert_eq!(beamish::receive::<u8>().await, 1);
/// # }).unwrap();
/// ```
pub fn receive<T: Send + 'static>() -> Receive<ByType<T>> {
    Receive::new(ByType(PhantomData))
}

/// Waits for the first `T` that satisfies `pred`.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let me = beamish::self_pid();
/// for i in 0..5u32 { me.send(i); }
/// assert_eq!(beamish::receive_if(|n: &u32| *n > 2).await, 3);
/// assert_eq!(beamish::receive::<u32>().await, 0); // order kept
/// # }).unwrap();
/// ```
pub fn receive_if<T, F>(pred: F) -> Receive<ByPredicate<T, F>>
where
    T: Send + 'static,
    F: FnMut(&T) -> bool,
{
    Receive::new(ByPredicate(pred, PhantomData))
}

/// Waits for the first message, of any type, that `pred` accepts, and
/// returns it as a [`Message`] to downcast.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let me = beamish::self_pid();
/// me.send(2.5f64);
/// let m = beamish::receive_match(|m| m.is::<f64>() || m.is::<i32>()).await;
/// assert_eq!(m.downcast::<f64>().unwrap(), 2.5);
/// # }).unwrap();
/// ```
pub fn receive_match<F>(pred: F) -> Receive<ByMessage<F>>
where
    F: FnMut(&Message) -> bool,
{
    Receive::new(ByMessage(pred))
}

/// A selective receive; await it. See [`receive`].
#[must_use = "futures do nothing unless awaited"]
pub struct Receive<M> {
    matcher: M,
    /// Unique id of this receive (owner of the queue's save cursor).
    id: u64,
    /// Start after this mark, if it is still the mailbox's mark.
    mark: Option<Mark>,
    /// How long to wait (`None`: forever).
    timeout: Option<Duration>,
    /// The timer, once the receive has had to wait.
    deadline: Option<Deadline>,
}

// The matcher is never pinned: `Receive` does not project pins.
impl<M> Unpin for Receive<M> {}

impl<M: Matcher> Receive<M> {
    fn new(matcher: M) -> Receive<M> {
        Receive {
            matcher,
            id: 0,
            mark: None,
            timeout: None,
            deadline: None,
        }
    }

    /// Gives up after `timeout`, returning `None` (Erlang's `after`).
    /// `Duration::ZERO` looks at the mailbox once without waiting;
    /// `Duration::MAX` waits forever.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// let got = beamish::receive::<u32>().timeout(Duration::ZERO).await;
    /// assert_eq!(got, None);
    /// # }).unwrap();
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> ReceiveTimeout<M> {
        self.timeout = Some(timeout);
        ReceiveTimeout(self)
    }

    /// Looks only at messages that arrived after `mark` (see [`mark`]).
    pub fn after_mark(mut self, mark: Mark) -> Receive<M> {
        self.mark = Some(mark);
        self
    }

    /// The receive proper: `Ready(None)` means the timeout passed.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<M::Output>> {
        let p = context::expect_current("receive");
        // SAFETY: the process is running on this thread for this poll.
        let h: &Header = unsafe { p.as_ref() };
        if context::should_yield() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        context::consume(1);
        if self.id == 0 {
            self.id = crate::reference::next_id();
        }
        // SAFETY: as in `drain`; this borrow ends before anything else
        // touches the process's local state.
        let queue = unsafe { &mut (*h.local.get()).queue };
        let mut prev = if queue.save.owner == self.id {
            queue.save.after
        } else if let Some(at) = self.mark.and_then(|m| queue.mark_position(m.0)) {
            at
        } else {
            ptr::null_mut()
        };
        // Raw access: the matcher is user code and may call into the runtime
        // (which takes its own short borrows of the process state), so no
        // reference to the queue is held across it.
        // SAFETY (all derefs of `q` below): the process runs on this thread
        // and each deref is a short borrow not overlapping another.
        let q = unsafe { &raw mut (*h.local.get()).queue };
        loop {
            let mut cur = unsafe { (*q).next_after(prev) };
            let mut examined = 0u32;
            while !cur.is_null() {
                examined += 1;
                let hit = super::with_borrowed(cur, |n| self.matcher.matches(Message::from_ref(n)));
                if hit {
                    // SAFETY: `q` as above; `prev` precedes `cur` in the queue.
                    let node: NodeBox = unsafe { (*q).unlink(prev, cur) };
                    // SAFETY: `q` as above.
                    unsafe {
                        if (*q).save.owner == self.id {
                            (*q).save = Cursor {
                                owner: 0,
                                after: ptr::null_mut(),
                            };
                        }
                    }
                    context::consume(examined);
                    if let Some(d) = self.deadline.as_mut() {
                        d.cancel();
                    }
                    return Poll::Ready(Some(self.matcher.take(Message(node))));
                }
                prev = cur;
                // SAFETY: `q` as above; `cur` is a live node of the queue.
                cur = unsafe { (*q).next_after(cur) };
            }
            context::consume(examined);
            let added = super::drain(h);
            // A signal in that batch may have ended the process: the
            // messages that came after it must not be handled.
            // SAFETY: short borrow, as above.
            if unsafe { (*h.local.get()).is_exiting() } {
                return Poll::Pending;
            }
            if added == 0 {
                break;
            }
        }
        // SAFETY: as above.
        let local = unsafe { &mut *h.local.get() };
        if local.is_exiting() {
            return Poll::Pending;
        }
        local.queue.save = Cursor {
            owner: self.id,
            after: prev,
        };
        match self.timeout {
            None => Poll::Pending,
            Some(t) if t.is_zero() => Poll::Ready(None),
            Some(t) => {
                let shared = h.shared();
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Deadline::after(shared, t));
                match deadline.poll_expired(shared, cx) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<M: Matcher> Future for Receive<M> {
    type Output = M::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        match self.get_mut().poll_receive(cx) {
            Poll::Ready(Some(v)) => Poll::Ready(v),
            // Without a timeout the receive never gives up.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// A receive with a timeout; resolves to `None` if nothing matched in time.
#[must_use = "futures do nothing unless awaited"]
pub struct ReceiveTimeout<M>(Receive<M>);

impl<M> Unpin for ReceiveTimeout<M> {}

impl<M: Matcher> ReceiveTimeout<M> {
    /// Looks only at messages that arrived after `mark` (see [`mark`]).
    pub fn after_mark(mut self, mark: Mark) -> ReceiveTimeout<M> {
        self.0.mark = Some(mark);
        self
    }
}

impl<M: Matcher> Future for ReceiveTimeout<M> {
    type Output = Option<M::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M::Output>> {
        self.get_mut().0.poll_receive(cx)
    }
}
