//! The inbound half of a mailbox: a lock-free multi-producer stack that the
//! owning process empties in one swap.
//!
//! Senders push with one compare-and-swap on `head` (no lock on the send
//! path). The owner takes the whole list with one swap and reverses it, which
//! restores arrival order: between one sender and one receiver, nodes come
//! out in the order they went in, because each push is ordered before the
//! next one by the same thread.
//!
//! Closing swaps in a sentinel: every later push fails and hands the node
//! back to the sender, which then knows the process is gone (a link request
//! turns into `noproc`, a message is dropped as Erlang drops it). Everything
//! pushed before the close is returned by `close` to the exiting process,
//! which answers the signals among it. So no signal falls in the gap between
//! "alive" and "gone".
//!
//! `push` reports whether the stack was empty: only a push into an empty
//! stack must wake the process (see `process::state` for why that is enough).

use std::ptr::{self, NonNull};

use super::node::{Header, Kind, NodeBox};
use crate::loom::atomic::{AtomicPtr, Ordering};

/// Marks a closed inbound queue. Never a real node: nodes are 8-aligned.
fn closed() -> *mut Header {
    ptr::dangling_mut::<u8>()
        .cast::<Header>()
        .wrapping_byte_add(1)
}

/// The inbound stack.
pub(crate) struct Inbound {
    /// Newest node, null when empty, [`closed`] once closed.
    head: AtomicPtr<Header>,
}

/// Outcome of a push.
pub(crate) enum Pushed {
    /// The stack was empty: the caller must wake the process.
    First,
    /// The stack already held nodes whose push owes the wake.
    More,
}

impl Inbound {
    pub(crate) fn new() -> Inbound {
        Inbound {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes a node, or gives it back if the queue is closed.
    pub(crate) fn push(&self, node: NodeBox) -> Result<Pushed, NodeBox> {
        let raw = node.into_raw();
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            if cur == closed() {
                // SAFETY: we still own the node: it was never published.
                return Err(unsafe { NodeBox::from_raw(raw) });
            }
            // SAFETY: the node is ours until the CAS publishes it.
            unsafe { (*raw.as_ptr()).next = cur };
            // Release: the node's contents are visible to the `take_all` that
            // acquires it.
            match self.head.compare_exchange_weak(
                cur,
                raw.as_ptr(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if cur.is_null() => return Ok(Pushed::First),
                Ok(_) => return Ok(Pushed::More),
                Err(actual) => cur = actual,
            }
        }
    }

    /// True if nothing is waiting (or the queue is closed).
    pub(crate) fn is_empty(&self) -> bool {
        let h = self.head.load(Ordering::Acquire);
        h.is_null() || h == closed()
    }

    /// True once closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.head.load(Ordering::SeqCst) == closed()
    }

    /// Takes every node, oldest first. Only the owner calls this.
    pub(crate) fn take_all(&self) -> Chain {
        if self.head.load(Ordering::Relaxed).is_null() {
            return Chain::empty();
        }
        let top = self.head.swap(ptr::null_mut(), Ordering::AcqRel);
        debug_assert!(top != closed());
        Chain::reversed(top)
    }

    /// Closes the queue and returns what was in it, oldest first.
    pub(crate) fn close(&self) -> Chain {
        // SeqCst: registration checks `is_closed` after publishing a name
        // (see `registry`), and this close is followed by a check of that name.
        let top = self.head.swap(closed(), Ordering::SeqCst);
        if top == closed() {
            return Chain::empty();
        }
        Chain::reversed(top)
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        let top = self.head.swap(closed(), Ordering::Acquire);
        if top != closed() {
            for node in Chain::reversed(top) {
                super::node::drop_quietly(node);
            }
        }
    }
}

/// A list of owned nodes in arrival order.
pub(crate) struct Chain {
    /// Oldest node.
    first: *mut Header,
    /// Newest node.
    last: *mut Header,
    /// Number of nodes.
    len: u32,
    /// Whether any node is a signal or an alias message (if none, the whole
    /// chain can be spliced onto a message queue without looking at each
    /// node again).
    has_signals: bool,
}

impl Chain {
    fn empty() -> Chain {
        Chain {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
            len: 0,
            has_signals: false,
        }
    }

    /// Reverses a newest-first stack into an oldest-first chain, noting in
    /// the same pass whether it holds signals.
    fn reversed(mut top: *mut Header) -> Chain {
        let last = top;
        let mut first = ptr::null_mut();
        let mut len = 0;
        let mut has_signals = false;
        while !top.is_null() {
            // SAFETY: the swap gave us exclusive ownership of every node.
            unsafe {
                let next = (*top).next;
                has_signals |= (*top).vtable.kind != Kind::Message;
                (*top).next = first;
                first = top;
                top = next;
            }
            len += 1;
        }
        Chain {
            first,
            last,
            len,
            has_signals,
        }
    }

    /// True if the chain holds only messages.
    pub(crate) fn only_messages(&self) -> bool {
        !self.has_signals
    }

    /// Gives up the nodes as `(first, last, len)`, linked oldest first.
    pub(crate) fn into_raw_parts(self) -> (*mut Header, *mut Header, u32) {
        let parts = (self.first, self.last, self.len);
        std::mem::forget(self);
        parts
    }
}

impl Iterator for Chain {
    type Item = NodeBox;

    fn next(&mut self) -> Option<NodeBox> {
        let node = NonNull::new(self.first)?;
        self.len -= 1;
        // SAFETY: we own the chain; unlink the node before handing it out.
        unsafe {
            self.first = (*node.as_ptr()).next;
            (*node.as_ptr()).next = ptr::null_mut();
            Some(NodeBox::from_raw(node))
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        for node in self.by_ref() {
            super::node::drop_quietly(node);
        }
    }
}

// SAFETY: a chain owns its nodes, which are `Send`.
unsafe impl Send for Chain {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_per_sender_and_close() {
        let q = Inbound::new();
        assert!(matches!(q.push(NodeBox::message(1u32)), Ok(Pushed::First)));
        assert!(matches!(q.push(NodeBox::message(2u32)), Ok(Pushed::More)));
        let got: Vec<u32> = q.take_all().map(|n| n.downcast().unwrap()).collect();
        assert_eq!(got, [1, 2]);
        assert!(q.is_empty());
        assert!(matches!(q.push(NodeBox::message(3u32)), Ok(Pushed::First)));
        let rest: Vec<u32> = q.close().map(|n| n.downcast().unwrap()).collect();
        assert_eq!(rest, [3]);
        let back = q.push(NodeBox::message(4u32)).err().unwrap();
        assert_eq!(back.downcast::<u32>().unwrap(), 4);
        assert!(q.is_closed());
    }
}
