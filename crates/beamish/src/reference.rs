//! Unique references, like Erlang's `make_ref()`.

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// A value unique within this OS process: names a monitor, a timer, a call.
///
/// ```
/// let a = beamish::Ref::new();
/// let b = beamish::Ref::new();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref(NonZeroU64);

/// Refs are handed to threads in blocks so that making one is a thread-local
/// increment, not a contended atomic (a call makes one per round trip).
const BLOCK: u64 = 1024;

static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// `(next, end)` of this thread's current block.
    static BLOCK_CURSOR: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

impl Ref {
    /// A fresh reference, never equal to any other made in this OS process.
    #[allow(clippy::new_without_default)] // a default would hide that each call is unique
    pub fn new() -> Ref {
        Ref(NonZeroU64::new(next_id()).unwrap_or(NonZeroU64::MIN))
    }

    /// The raw value.
    pub fn to_bits(self) -> u64 {
        self.0.get()
    }

    /// Rebuilds a reference from [`Ref::to_bits`]; `None` for 0.
    #[cfg_attr(not(feature = "dist"), allow(dead_code))]
    pub(crate) fn from_bits(bits: u64) -> Option<Ref> {
        NonZeroU64::new(bits).map(Ref)
    }
}

/// A fresh nonzero id from this thread's block.
pub(crate) fn next_id() -> u64 {
    BLOCK_CURSOR.with(|c| {
        let (mut next, mut end) = c.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed) * BLOCK;
            end = next + BLOCK;
        }
        c.set((next + 1, end));
        next
    })
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Ref<{}>", self.0)
    }
}

impl fmt::Debug for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn refs_are_unique_across_threads() {
        let all: Vec<Vec<Ref>> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5000).map(|_| Ref::new()).collect()))
            .map(|h| h.join().unwrap())
            .collect();
        let set: HashSet<Ref> = all.iter().flatten().copied().collect();
        assert_eq!(set.len(), 20_000);
    }
}
