//! Synchronisation primitives seen through one door.
//!
//! Every lock-free structure of the crate (the process state word, the inbound
//! half of the mailbox, the idle/park protocol) takes its atomics, mutexes and
//! condition variables from here. Normally they are `std`'s; built with
//! `RUSTFLAGS="--cfg loom"` they are loom's, so the loom models in
//! `tests/loom_*.rs`-style unit modules explore every interleaving of the very
//! code that ships.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, atomic};

#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, atomic};

/// Spawns a thread: loom's under `--cfg loom`, std's otherwise.
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::thread;
