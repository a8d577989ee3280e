//! Processes: the control block, its lifetime, spawning and introspection.
//!
//! A process is a Rust future plus a control block ([`Header`]) in one
//! allocation (`raw`). The header holds what other threads need (state word,
//! pid, inbound queue, counters); [`Local`] holds what only the process itself
//! touches while it runs (its message queue, links, monitors, trap_exit), so
//! none of that needs a lock: signals that change it are applied by the
//! process when it drains its inbound queue.

pub(crate) mod info;
pub(crate) mod raw;
pub(crate) mod run;
pub(crate) mod spawn;
pub(crate) mod state;
pub(crate) mod table;

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::loom::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use crate::mailbox::inbound::Inbound;
use crate::mailbox::queue::Queue;
use crate::runtime::Shared;
use crate::{Pid, Reason, Ref};
use raw::ProcVTable;
use state::State;

pub use info::{ProcessInfo, Status};
pub use spawn::{SpawnOptions, Spawned};

/// Scheduling priority, as in BEAM: `max` and `high` run before anything
/// else; `low` runs only between normal ones (one low per eight normal).
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::{Priority, SpawnOptions};
/// let pid = SpawnOptions::new().priority(Priority::High).spawn(async {}).unwrap().pid;
/// # let _ = pid;
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Priority {
    /// Runs when nothing else waits, and one in eight slots besides.
    Low = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Runs before normal and low processes.
    High = 2,
    /// Runs before everything else.
    Max = 3,
}

impl Priority {
    pub(crate) fn from_u8(v: u8) -> Priority {
        match v {
            0 => Priority::Low,
            2 => Priority::High,
            3 => Priority::Max,
            _ => Priority::Normal,
        }
    }
}

/// Flag bits of [`Header::flags`].
pub(crate) mod flags {
    /// The process has (or had) a registered name: its exit must unregister it.
    pub(crate) const HAS_NAME: u8 = 1 << 0;
    /// A trace session traces the process (`crate::trace`).
    pub(crate) const TRACED: u8 = 1 << 1;
}

/// The control block, shared with other threads.
///
/// Field order is load-bearing: senders touch only the first 24 bytes
/// (`inbound`, `state`, `pid`), and the fields the running process writes
/// for every message (its queue's head, tail and length) sit at least 64
/// bytes further on, so they never share a cache line with what senders
/// write, whatever the allocation's alignment. Without that gap every
/// receive invalidated the line that every send compares-and-swaps (measured:
/// fanin spent most of its send time waiting for that line).
#[repr(C)]
pub(crate) struct Header {
    /// Signals and messages not yet seen by the process.
    pub(crate) inbound: Inbound,
    /// Scheduling state and reference count.
    pub(crate) state: State,
    /// This process's pid.
    pub(crate) pid: Pid,
    /// The runtime it belongs to (outlives every process: shutdown waits for all).
    pub(crate) rt: NonNull<Shared>,
    /// Operations that know the future's type.
    pub(crate) vtable: &'static ProcVTable,
    /// [`flags`] bits.
    pub(crate) flags: AtomicU8,
    /// [`Priority`] as a byte (fixed at spawn).
    pub(crate) priority: u8,
    /// The introspection window in which the process was last polled
    /// (`scheduler::load`); in the padding before `local`.
    pub(crate) window: AtomicU16,
    /// Messages in the queue when the process last finished a poll, for
    /// introspection that must not stop the process (`observe`). Written by
    /// the owner once per poll, next to its state word's end-of-run write,
    /// so it costs no extra cache line; it fills padding
    /// before `local` too.
    pub(crate) queue_len: AtomicU32,
    /// Owner-only state: touched only by the thread running the process.
    pub(crate) local: UnsafeCell<Local>,
    /// Reductions spent so far (written by the process, read by introspection).
    pub(crate) reductions: AtomicU64,
}

// SAFETY: shared fields are atomics or immutable; `local` is only accessed by
// the thread that holds the RUNNING bit (or the single thread ending it).
unsafe impl Send for Header {}
unsafe impl Sync for Header {}

/// State only the process itself touches.
#[repr(C)]
pub(crate) struct Local {
    /// Rarely needed parts, allocated on first use.
    pub(crate) ext: Option<Box<Ext>>,
    /// Exit signals become `Exit` messages instead of killing the process.
    pub(crate) trap_exit: bool,
    /// Messages received but not yet matched (its hot fields come last; see
    /// [`Header`]).
    pub(crate) queue: Queue,
}

/// A callback run with a process's exit reason as it ends.
pub(crate) type ExitHook = Box<dyn FnOnce(&Reason) + Send>;

/// Links, monitors and exit bookkeeping: most processes never need them, so
/// they cost one pointer until used.
#[derive(Default)]
pub(crate) struct Ext {
    /// Processes linked to this one.
    pub(crate) links: FxHashSet<Pid>,
    /// Monitors this process holds: ref → monitored process.
    pub(crate) monitors: FxHashMap<Ref, Pid>,
    /// Monitors on this process: ref → watcher.
    pub(crate) monitored_by: FxHashMap<Ref, Pid>,
    /// Those of `monitors` made by name (`monitor(process, {Name, Node})`):
    /// ref → (name, node). Their `Down` is delivered as a `NameDown`.
    #[cfg(feature = "dist")]
    pub(crate) by_name: FxHashMap<Ref, (crate::dist::Atom, crate::dist::Atom)>,
    /// Active aliases: messages sent to others are dropped on arrival.
    pub(crate) aliases: FxHashSet<Ref>,
    /// Set when the process must end at its next scheduling point.
    pub(crate) exiting: Option<Reason>,
    /// Called with the exit reason when the process ends (used by `block_on`).
    pub(crate) exit_hook: Option<ExitHook>,
    /// The trace session tracing the process (`crate::trace`).
    pub(crate) trace: Option<std::sync::Arc<crate::trace::Session>>,
}

impl Local {
    pub(crate) fn new(trap_exit: bool) -> Local {
        Local {
            queue: Queue::new(),
            trap_exit,
            ext: None,
        }
    }

    pub(crate) fn ext(&mut self) -> &mut Ext {
        self.ext.get_or_insert_with(Box::default)
    }

    /// Marks the process to end with `reason` (the first reason wins).
    pub(crate) fn set_exiting(&mut self, reason: Reason) {
        let ext = self.ext();
        if ext.exiting.is_none() {
            ext.exiting = Some(reason);
        }
    }

    pub(crate) fn is_exiting(&self) -> bool {
        self.ext.as_ref().is_some_and(|e| e.exiting.is_some())
    }
}

impl Header {
    pub(crate) fn shared(&self) -> &Shared {
        // SAFETY: the runtime outlives its processes.
        unsafe { self.rt.as_ref() }
    }

    pub(crate) fn priority(&self) -> Priority {
        Priority::from_u8(self.priority)
    }

    pub(crate) fn add_reductions(&self, n: u64) {
        // Only the owner writes: a load and a store, no read-modify-write.
        let r = self.reductions.load(Ordering::Relaxed);
        self.reductions.store(r + n, Ordering::Relaxed);
    }
}

/// A counted reference to a process, held by a run queue entry.
#[derive(Debug)]
pub(crate) struct Task(pub(crate) NonNull<Header>);

// SAFETY: a task is a counted pointer to a `Sync` header.
unsafe impl Send for Task {}

impl Task {
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the task's reference keeps the header alive.
        unsafe { self.0.as_ref() }
    }
}

/// Wakes the process behind `p` (which the caller keeps alive).
pub(crate) fn wake(p: NonNull<Header>) {
    // SAFETY: the caller holds a reference or an epoch guard over `p`.
    let h = unsafe { p.as_ref() };
    if h.state.notify() {
        h.shared().schedule_woken(Task(p));
    }
}

/// Drops one reference; the last one frees the process.
///
/// # Safety
/// The caller owns one reference to `p`.
pub(crate) unsafe fn release(p: NonNull<Header>) {
    // SAFETY: the caller owns a reference.
    let h = unsafe { p.as_ref() };
    if h.state.ref_dec() {
        table::defer_free(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_hot_fields_are_a_cache_line_away_from_sender_fields() {
        let sender_end = std::mem::offset_of!(Header, pid) + std::mem::size_of::<Pid>();
        let queue = std::mem::offset_of!(Header, local) + std::mem::offset_of!(Local, queue);
        let hot = queue + crate::mailbox::queue::HOT_OFFSET;
        assert!(
            hot >= sender_end - 1 + 64,
            "hot fields at {hot}, senders up to {sender_end}"
        );
    }

    #[test]
    fn introspection_fields_fill_padding() {
        // `queue_len` and `window` sit between `priority` and `local`, in
        // what was padding: the control block is no larger for them.
        let end = std::mem::offset_of!(Header, queue_len) + std::mem::size_of::<AtomicU32>();
        assert!(std::mem::offset_of!(Header, window) > std::mem::offset_of!(Header, priority));
        assert!(end <= std::mem::offset_of!(Header, local), "{end}");
        assert_eq!(std::mem::size_of::<Header>(), 136);
    }
}
