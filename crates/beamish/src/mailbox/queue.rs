//! The private half of a mailbox: the process's own message queue.
//!
//! Only the owning process touches it, so it is a plain singly-linked list of
//! the same nodes the inbound stack carried (moving a message in is a pointer
//! write, never a copy). Selective receive scans it from the oldest message;
//! a match is unlinked from the middle, and everything else keeps its order.
//!
//! Two cursors make scanning cheap:
//!
//! * the **save** cursor remembers the last message a blocked receive has
//!   already looked at, so when it is woken it examines only new messages
//!   (Erlang's save pointer);
//! * **mark** cursors are set by [`crate::mark`] just before a request is
//!   sent; a receive that waits for the reply starts after its mark, so a
//!   call stays O(1) however long the queue is (Erlang's receive-marker
//!   optimisation). A mark that falls back to the start of the queue (all
//!   older messages are gone) is dropped, since "from the start" is what a
//!   receive with an unknown mark does; of the rest, the [`MAX_MARKS`] newest
//!   are kept, and a receive after an older one scans from the start.
//!
//! A cursor points at the node *before* where scanning resumes (null: the
//! start). When a node that a cursor points at is unlinked, the cursor moves
//! to its predecessor, so cursors never dangle and never skip a message.

use std::ptr::{self, NonNull};

use super::node::{Header, NodeBox};

/// Marks kept per process (a call takes one and uses it at once; more than
/// a few outstanding marks means nested or abandoned requests).
pub(crate) const MAX_MARKS: usize = 64;

/// A cursor owned by one receive (or one mark).
#[derive(Clone, Copy)]
pub(crate) struct Cursor {
    /// Which receive or mark set it.
    pub(crate) owner: u64,
    /// Resume after this node (null: from the first message).
    pub(crate) after: *mut Header,
}

impl Cursor {
    const NONE: Cursor = Cursor {
        owner: 0,
        after: ptr::null_mut(),
    };
}

/// The message queue. `repr(C)`: the fields written per message come after
/// the cold ones (see `process::Header` for why the offset matters).
#[repr(C)]
pub(crate) struct Queue {
    /// Positions set by `mark()`, oldest first.
    marks: Vec<Cursor>,
    /// Oldest message.
    head: *mut Header,
    /// Newest message.
    tail: *mut Header,
    /// Number of messages.
    len: u32,
    /// Scan position of the receive that last blocked.
    pub(crate) save: Cursor,
}

/// Offset of the first field written per message.
#[cfg(test)]
pub(crate) const HOT_OFFSET: usize = std::mem::offset_of!(Queue, head);

impl Queue {
    pub(crate) const fn new() -> Queue {
        Queue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
            save: Cursor::NONE,
            marks: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Marks the current end of the queue for `owner`. A mark on an empty
    /// queue means "from the first message", which is where a receive with
    /// an unknown mark starts anyway: it is not stored.
    pub(crate) fn add_mark(&mut self, owner: u64) {
        if self.tail.is_null() {
            return;
        }
        if self.marks.len() == MAX_MARKS {
            self.marks.remove(0);
        }
        self.marks.push(Cursor {
            owner,
            after: self.tail,
        });
    }

    /// Where scanning after the mark `owner` starts, if that mark is kept.
    pub(crate) fn mark_position(&self, owner: u64) -> Option<*mut Header> {
        self.marks
            .iter()
            .rev()
            .find(|c| c.owner == owner)
            .map(|c| c.after)
    }

    /// Appends a message.
    pub(crate) fn push_back(&mut self, node: NodeBox) {
        let raw = node.into_raw().as_ptr();
        // SAFETY: `raw` is a node we own; `tail` is ours if non-null.
        unsafe {
            (*raw).next = ptr::null_mut();
            if self.tail.is_null() {
                self.head = raw;
            } else {
                (*self.tail).next = raw;
            }
        }
        self.tail = raw;
        self.len += 1;
    }

    /// Appends a chain of messages in one step.
    pub(crate) fn append_chain(&mut self, chain: super::inbound::Chain) {
        let (first, last, len) = chain.into_raw_parts();
        if first.is_null() {
            return;
        }
        if self.tail.is_null() {
            self.head = first;
        } else {
            // SAFETY: `tail` is a live node of this queue.
            unsafe { (*self.tail).next = first };
        }
        self.tail = last;
        self.len += len;
    }

    /// The node after `after` (or the first node when `after` is null).
    pub(crate) fn next_after(&self, after: *mut Header) -> *mut Header {
        if after.is_null() {
            self.head
        } else {
            // SAFETY: `after` is a live node of this queue (cursor invariant).
            unsafe { (*after).next }
        }
    }

    /// Unlinks `node`, whose predecessor is `prev` (null if it is the head),
    /// fixing the cursors that point at it.
    pub(crate) fn unlink(&mut self, prev: *mut Header, node: *mut Header) -> NodeBox {
        // SAFETY: `node` is a live node of this queue and `prev` its predecessor.
        unsafe {
            let next = (*node).next;
            if prev.is_null() {
                debug_assert_eq!(self.head, node);
                self.head = next;
            } else {
                debug_assert_eq!((*prev).next, node);
                (*prev).next = next;
            }
            if self.tail == node {
                self.tail = prev;
            }
            (*node).next = ptr::null_mut();
        }
        for cursor in std::iter::once(&mut self.save).chain(self.marks.iter_mut()) {
            if cursor.after == node {
                cursor.after = prev;
            }
        }
        if prev.is_null() {
            // A mark before the first message is no mark at all.
            self.marks.retain(|m| !m.after.is_null());
        }
        self.len -= 1;
        // SAFETY: the node is now unlinked and owned by nobody else.
        unsafe { NodeBox::from_raw(NonNull::new_unchecked(node)) }
    }

    /// Removes and returns every message.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = NodeBox> + use<> {
        let mut cur = std::mem::replace(&mut self.head, ptr::null_mut());
        self.tail = ptr::null_mut();
        self.len = 0;
        self.save = Cursor::NONE;
        self.marks.clear();
        std::iter::from_fn(move || {
            let node = NonNull::new(cur)?;
            // SAFETY: we took the whole list; each node is unlinked before use.
            unsafe {
                cur = (*node.as_ptr()).next;
                (*node.as_ptr()).next = ptr::null_mut();
                Some(NodeBox::from_raw(node))
            }
        })
    }

    /// Iterates over the messages, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Header> + '_ {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            // SAFETY: nodes of the queue live as long as the borrow.
            let node = unsafe { cur.as_ref()? };
            cur = node.next;
            Some(node)
        })
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        for node in self.drain() {
            super::node::drop_quietly(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(q: &Queue) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = q.next_after(ptr::null_mut());
        while !cur.is_null() {
            // SAFETY: test-only walk over u32 nodes.
            let n = unsafe { NodeBox::from_raw(NonNull::new_unchecked(cur)) };
            out.push(*n.downcast_ref::<u32>().unwrap());
            cur = q.next_after(cur);
            n.into_raw();
        }
        out
    }

    #[test]
    fn unlink_middle_keeps_order_and_moves_cursors() {
        let mut q = Queue::new();
        for i in 0..4u32 {
            q.push_back(NodeBox::message(i));
        }
        let first = q.next_after(ptr::null_mut());
        let second = q.next_after(first);
        q.tail = second;
        q.add_mark(1);
        q.tail = q.next_after(q.next_after(second));
        let n = q.unlink(first, second);
        assert_eq!(n.downcast::<u32>().unwrap(), 1);
        assert_eq!(
            q.mark_position(1),
            Some(first),
            "mark moved to the predecessor"
        );
        assert_eq!(values(&q), [0, 2, 3]);
        let last = q.tail;
        let before_last = q.next_after(first);
        q.unlink(before_last, last);
        assert_eq!(values(&q), [0, 2]);
        q.push_back(NodeBox::message(9u32));
        assert_eq!(values(&q), [0, 2, 9]);
        assert_eq!(q.len(), 3);
    }
}
