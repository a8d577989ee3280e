//! Message nodes: one allocation per message, type-erased.
//!
//! A node is a [`Header`] (the intrusive link and a vtable) followed by the
//! value. The vtable carries the value's `TypeId`, so a typed receive compares
//! one 16-byte id per message and never calls through a pointer to decide
//! whether a message matches.

use std::any::{Any, TypeId};
use std::ptr::{self, NonNull};

#[cfg(not(loom))]
use crate::signal::Signal;

/// What a node is to the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A user message: goes to the process's message queue.
    Message,
    /// A signal (link, exit, monitor, …): acted upon when the inbound queue
    /// is drained, in the order it arrived.
    Signal,
    /// A message sent to an alias (an [`AliasMsg`]): queued like a message
    /// if the alias is still active when it arrives, dropped otherwise.
    Alias,
}

/// A message addressed to an alias of a process (Erlang's `alias/0`): the
/// tag comes first so the mailbox can read it without knowing `T`.
#[cfg(not(loom))]
#[repr(C)]
pub(crate) struct AliasMsg<T> {
    /// The alias.
    pub(crate) tag: crate::Ref,
    /// The message.
    pub(crate) value: T,
}

#[cfg(not(loom))]
struct AliasVTable<T>(std::marker::PhantomData<T>);

#[cfg(not(loom))]
impl<T: Send + 'static> AliasVTable<T> {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<AliasMsg<T>>(),
        type_name: std::any::type_name::<AliasMsg<T>>,
        kind: Kind::Alias,
        size_hint: std::mem::size_of::<AliasMsg<T>>(),
        drop_node: drop_node::<AliasMsg<T>>,
        into_any: into_any::<AliasMsg<T>>,
        tag_offset: std::mem::offset_of!(Node<AliasMsg<T>>, value),
    };
}

/// Per-type constants of a node.
pub(crate) struct VTable {
    /// The type of the value.
    pub(crate) type_id: TypeId,
    /// The value's type name, for diagnostics.
    pub(crate) type_name: fn() -> &'static str,
    /// Message or signal.
    pub(crate) kind: Kind,
    /// Size of the value (for memory accounting).
    pub(crate) size_hint: usize,
    /// Frees a node of this type (drops the value).
    drop_node: unsafe fn(NonNull<Header>),
    /// Moves the value out into a `Box<dyn Any + Send>` and frees the node.
    into_any: unsafe fn(NonNull<Header>) -> Box<dyn Any + Send>,
    /// For alias messages: where the tag is, from the start of the node.
    tag_offset: usize,
}

/// The common head of every node.
#[repr(C)]
pub(crate) struct Header {
    /// Next node: in the inbound stack (newer → older) or in the message
    /// queue (older → newer).
    pub(crate) next: *mut Header,
    /// What the value is.
    pub(crate) vtable: &'static VTable,
}

#[repr(C)]
struct Node<T> {
    header: Header,
    value: T,
}

/// An owned node: frees its value when dropped.
pub(crate) struct NodeBox(NonNull<Header>);

// SAFETY: nodes are only built from `T: Send` values (see `NodeBox::new`).
unsafe impl Send for NodeBox {}

trait HasVTable {
    const VTABLE: VTable;
}

impl<T: Send + 'static> HasVTable for T {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<T>(),
        type_name: std::any::type_name::<T>,
        kind: Kind::Message,
        size_hint: std::mem::size_of::<T>(),
        drop_node: drop_node::<T>,
        into_any: into_any::<T>,
        tag_offset: 0,
    };
}

#[cfg(not(loom))]
const SIGNAL_VTABLE: VTable = VTable {
    type_id: TypeId::of::<Signal>(),
    type_name: || "signal",
    kind: Kind::Signal,
    size_hint: std::mem::size_of::<Signal>(),
    drop_node: drop_node::<Signal>,
    into_any: into_any::<Signal>,
    tag_offset: 0,
};

/// # Safety
/// `node` must be a `Node<T>` allocated by `NodeBox::alloc` and owned by the caller.
unsafe fn drop_node<T>(node: NonNull<Header>) {
    // SAFETY: the caller owns a `Node<T>` made by `Box::new`.
    drop(unsafe { Box::from_raw(node.as_ptr().cast::<Node<T>>()) });
}

/// # Safety
/// As `drop_node`.
unsafe fn into_any<T: Send + 'static>(node: NonNull<Header>) -> Box<dyn Any + Send> {
    // SAFETY: the caller owns a `Node<T>` made by `Box::new`.
    let node = unsafe { Box::from_raw(node.as_ptr().cast::<Node<T>>()) };
    Box::new(node.value)
}

impl NodeBox {
    fn alloc<T>(vtable: &'static VTable, value: T) -> NodeBox {
        let node = Box::new(Node {
            header: Header {
                next: ptr::null_mut(),
                vtable,
            },
            value,
        });
        NodeBox(NonNull::from(Box::leak(node)).cast())
    }

    /// A message node.
    pub(crate) fn message<T: Send + 'static>(value: T) -> NodeBox {
        Self::alloc(&<T as HasVTable>::VTABLE, value)
    }

    /// A signal node.
    #[cfg(not(loom))]
    pub(crate) fn signal(signal: Signal) -> NodeBox {
        Self::alloc(&SIGNAL_VTABLE, signal)
    }

    /// A message to the alias `tag` of a process.
    #[cfg(not(loom))]
    pub(crate) fn alias_message<T: Send + 'static>(tag: crate::Ref, value: T) -> NodeBox {
        Self::alloc(&AliasVTable::<T>::VTABLE, AliasMsg { tag, value })
    }

    /// The alias an alias message is addressed to.
    #[cfg(not(loom))]
    pub(crate) fn alias_tag(&self) -> Option<crate::Ref> {
        let vt = self.header().vtable;
        (vt.kind == Kind::Alias).then(|| {
            // SAFETY: alias nodes are `Node<AliasMsg<T>>`, whose value starts
            // with the tag (`repr(C)`) at `tag_offset`.
            unsafe {
                *(self
                    .0
                    .as_ptr()
                    .cast::<u8>()
                    .add(vt.tag_offset)
                    .cast::<crate::Ref>())
            }
        })
    }

    /// Gives up ownership (to a queue).
    pub(crate) fn into_raw(self) -> NonNull<Header> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// Takes ownership of a node from a queue.
    ///
    /// # Safety
    /// `p` must come from [`NodeBox::into_raw`] and not be owned by anything else.
    pub(crate) unsafe fn from_raw(p: NonNull<Header>) -> NodeBox {
        NodeBox(p)
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: we own a live node.
        unsafe { self.0.as_ref() }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.header().vtable.kind
    }

    pub(crate) fn is<T: 'static>(&self) -> bool {
        self.header().vtable.type_id == TypeId::of::<T>()
    }

    /// The value, if it is a `T`.
    pub(crate) fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        if self.is::<T>() {
            // SAFETY: the type id says this is a `Node<T>`.
            Some(unsafe { &(*self.0.as_ptr().cast::<Node<T>>()).value })
        } else {
            None
        }
    }

    /// Moves the value out if it is a `T`.
    pub(crate) fn downcast<T: 'static>(self) -> Result<T, NodeBox> {
        if !self.is::<T>() {
            return Err(self);
        }
        let p = self.into_raw();
        // SAFETY: the type id says this is a `Node<T>`, and we own it.
        let node = unsafe { Box::from_raw(p.as_ptr().cast::<Node<T>>()) };
        Ok(node.value)
    }

    /// Moves the value out as `Box<dyn Any + Send>`.
    pub(crate) fn into_any(self) -> Box<dyn Any + Send> {
        let p = self.into_raw();
        // SAFETY: we own the node; the vtable matches its type.
        unsafe { (p.as_ref().vtable.into_any)(p) }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        (self.header().vtable.type_name)()
    }
}

impl std::fmt::Debug for NodeBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeBox({})", self.type_name())
    }
}

impl Drop for NodeBox {
    fn drop(&mut self) {
        // SAFETY: we own the node; the vtable matches its type.
        unsafe { (self.0.as_ref().vtable.drop_node)(self.0) }
    }
}

/// Frees a node whose value's `Drop` may panic, without letting the panic
/// escape: a message's destructor must never take down a scheduler thread or
/// a sender. Returns `false` if the destructor panicked.
pub(crate) fn drop_quietly(node: NodeBox) -> bool {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(node))).is_ok();
    if !ok {
        tracing::debug!("a message's Drop panicked; the panic was contained");
    }
    ok
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn typed_round_trip() {
        let n = NodeBox::message(String::from("hi"));
        assert!(n.is::<String>());
        assert!(!n.is::<&str>());
        assert_eq!(n.downcast_ref::<String>().map(String::as_str), Some("hi"));
        let n = n.downcast::<u32>().unwrap_err();
        assert_eq!(n.downcast::<String>().unwrap(), "hi");
    }

    #[test]
    fn panicking_drop_is_contained() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("bomb");
            }
        }
        assert!(!drop_quietly(NodeBox::message(Bomb)));
        assert!(drop_quietly(NodeBox::message(1u8)));
    }
}
