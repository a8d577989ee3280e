//! Mailboxes: an unbounded, lock-free inbound stack that senders push to
//! ([`inbound`]), and the process's private message queue that selective
//! receive scans ([`queue`], [`receive`]).
//!
//! A send allocates one node, pushes it with one compare-and-swap, and wakes
//! the receiver only if the inbound stack was empty. The receiver moves
//! everything from the inbound stack to its queue in arrival order when it
//! needs more messages, acting on signals as it meets them.

pub(crate) mod inbound;
pub(crate) mod node;
pub(crate) mod queue;
pub(crate) mod receive;

use std::any::Any;
use std::fmt;
use std::ptr;

use crate::Pid;
use crate::process::{Header, Local};
use crate::runtime::{self, context};
use crate::signal::{self, Signal};
use node::{Kind, NodeBox};

/// Moves everything from the inbound stack into the queue, applying signals.
/// Returns how many messages were added to the queue.
pub(crate) fn drain(h: &Header) -> usize {
    let chain = h.inbound.take_all();
    // SAFETY: called by the thread running the process; no other `&mut
    // Local` is alive while this runs.
    let local = unsafe { &mut *h.local.get() };
    let before = local.queue.len();
    let mut traced = if crate::trace::on() {
        crate::trace::receives(h, local)
    } else {
        None
    };
    if traced.is_none() && chain.only_messages() {
        local.queue.append_chain(chain);
        return local.queue.len() - before;
    }
    for node in chain {
        match node.kind() {
            Kind::Message => {
                if let Some(emit) = &traced {
                    emit(node.type_name());
                }
                local.queue.push_back(node);
            }
            Kind::Signal => {
                if let Ok(sig) = node.downcast::<Signal>() {
                    let starts_trace = matches!(sig, Signal::Trace(_));
                    signal::handle(h, local, sig);
                    if starts_trace {
                        // Messages after the session's signal are traced.
                        traced = crate::trace::receives(h, local);
                    }
                }
            }
            Kind::Alias => deliver_alias(local, node, traced.as_ref()),
        }
    }
    local.queue.len().saturating_sub(before)
}

/// Queues a message sent to an alias, or drops it if the alias is not
/// active (any more).
fn deliver_alias(local: &mut Local, node: NodeBox, traced: Option<&impl Fn(&'static str)>) {
    let active = node
        .alias_tag()
        .is_some_and(|tag| local.ext.as_ref().is_some_and(|e| e.aliases.contains(&tag)));
    if active {
        if let Some(emit) = traced {
            emit(node.type_name());
        }
        local.queue.push_back(node);
    } else {
        node::drop_quietly(node);
    }
}

/// Activates or deactivates an alias of the calling process: while active,
/// messages sent to it (`NodeBox::alias_message`) are queued; afterwards
/// they are dropped on arrival (Erlang's `alias/0` and `unalias/1`).
///
/// # Panics
/// Outside a beamish process.
pub(crate) fn set_alias(tag: crate::Ref, active: bool) {
    let p = context::expect_current("alias");
    // SAFETY: the process runs on this thread; short borrow.
    let local = unsafe { &mut *p.as_ref().local.get() };
    if active {
        local.ext().aliases.insert(tag);
    } else if let Some(ext) = local.ext.as_mut() {
        ext.aliases.remove(&tag);
    }
}

/// True if nothing (message or signal) has reached the calling process's
/// inbound stack since its last receive drained it.
///
/// # Panics
/// Outside a beamish process.
pub(crate) fn nothing_arrived() -> bool {
    let p = context::expect_current("nothing_arrived");
    // SAFETY: the current process's header outlives its own code.
    unsafe { p.as_ref() }.inbound.is_empty()
}

/// Removes the first queued message that satisfies `pred`.
pub(crate) fn remove_first(h: &Header, mut pred: impl FnMut(&NodeBox) -> bool) -> Option<NodeBox> {
    // SAFETY: as in `drain`.
    let local = unsafe { &mut *h.local.get() };
    let mut prev = ptr::null_mut();
    let mut cur = local.queue.next_after(prev);
    while !cur.is_null() {
        if with_borrowed(cur, |n| pred(n)) {
            return Some(local.queue.unlink(prev, cur));
        }
        prev = cur;
        cur = local.queue.next_after(cur);
    }
    None
}

/// Runs `f` on a queued node without taking it out.
fn with_borrowed<R>(p: *mut node::Header, f: impl FnOnce(&NodeBox) -> R) -> R {
    // SAFETY: `p` is a live node of the queue; the ManuallyDrop box never
    // frees it.
    let node =
        std::mem::ManuallyDrop::new(unsafe { NodeBox::from_raw(ptr::NonNull::new_unchecked(p)) });
    f(&node)
}

/// A message of any type, as selective receive sees it.
///
/// ```
/// let m = beamish::Message::new(5u16);
/// assert!(m.is::<u16>());
/// assert_eq!(m.downcast_ref::<u16>(), Some(&5));
/// let m = m.downcast::<u8>().unwrap_err();
/// assert_eq!(m.downcast::<u16>().unwrap(), 5);
/// ```
#[repr(transparent)]
pub struct Message(NodeBox);

impl Message {
    /// Wraps a value.
    pub fn new<T: Send + 'static>(value: T) -> Message {
        Message(NodeBox::message(value))
    }

    /// True if the message is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.0.is::<T>()
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }

    /// Takes the value out if it is a `T`; gives the message back otherwise.
    pub fn downcast<T: 'static>(self) -> Result<T, Message> {
        self.0.downcast().map_err(Message)
    }

    /// The value as `Box<dyn Any + Send>`.
    pub fn into_any(self) -> Box<dyn Any + Send> {
        self.0.into_any()
    }

    /// The name of the value's type (for diagnostics).
    pub fn type_name(&self) -> &'static str {
        self.0.type_name()
    }

    fn from_ref(node: &NodeBox) -> &Message {
        // SAFETY: `Message` is a transparent wrapper of `NodeBox`.
        unsafe { &*(node as *const NodeBox as *const Message) }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.type_name())
            .finish()
    }
}

impl Pid {
    /// Sends a message: any `Send + 'static` value. Never blocks, never
    /// fails: a message to a process that no longer exists is dropped, as in
    /// Erlang. Works from any thread; messages from one process to another
    /// arrive in the order they were sent.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let me = beamish::self_pid();
    /// me.send("hello");
    /// assert_eq!(beamish::receive::<&str>().await, "hello");
    /// # }).unwrap();
    /// ```
    pub fn send<T: Send + 'static>(self, msg: T) {
        self.deliver_node(NodeBox::message(msg));
    }

    /// Forwards a type-erased [`Message`] (as received by
    /// [`crate::receive_match`]).
    pub fn send_message(self, msg: Message) {
        self.deliver_node(msg.0);
    }

    /// Sends the answer to a system signal (a `process_info` reply): not
    /// a message the process sent, so no trace event and no reductions,
    /// as OTP does not trace the reply of `process_info`.
    pub(crate) fn send_system<T: Send + 'static>(self, msg: T) {
        self.deliver_untraced(NodeBox::message(msg));
    }

    fn deliver_node(self, node: NodeBox) {
        context::consume(1);
        if crate::trace::on() {
            crate::trace::sent(self, node.type_name());
        }
        self.deliver_untraced(node);
    }

    /// Delivers, or drops the message to a dead process, as Erlang does.
    #[inline]
    fn deliver_untraced(self, node: NodeBox) {
        if let Err(node) = runtime::deliver(self, node) {
            node::drop_quietly(node);
        }
    }
}
