//! The process table: pid → process, read without locks.
//!
//! Slots are pointer-sized (`AtomicPtr<Header>`), grouped in chunks of 65,536
//! that are allocated on demand and never freed before the runtime, so a
//! reader needs no protection for the chunk itself. A slot's process may end
//! and be freed at any time, so readers hold a `crossbeam-epoch` guard while
//! they use the header they loaded, and processes are freed through the
//! epoch ([`defer_free`]). Scheduler threads keep a guard pinned between
//! polls, so a send from inside a process pins with a counter increment.
//!
//! Free slots: each scheduler keeps its own FIFO of freed pids (already
//! carrying the next serial) and reuses a slot only once more than
//! [`REUSE_DEPTH`] others were freed after it, so a pid's serial wraps after
//! billions of spawns, not after a million spawns of one short-lived process.
//! Surplus slots go to a shared pool in batches; fresh indices are handed out
//! in blocks. Neither path takes a lock per spawn.

use std::collections::VecDeque;
use std::ptr::{self, NonNull};

use crossbeam_epoch::Guard;
use parking_lot::Mutex;

use super::Header;
use crate::loom::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use crate::pid::{INDEX_BITS, SERIAL_MASK};
use crate::{Error, Pid};

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << (INDEX_BITS - CHUNK_BITS);
/// Freed slots a scheduler holds back before reusing the oldest. With the
/// 24-bit serial, one slot's pid repeats only after 16M × 1024 spawns on one
/// scheduler.
pub(crate) const REUSE_DEPTH: usize = 1024;
/// Slots moved between a scheduler's cache and the shared pool at once.
const BATCH: usize = 256;
/// Fresh indices taken at once. Fresh indices start at 1 (0 is reserved),
/// so a block can straddle two chunks: both are allocated before use.
const FRESH_BLOCK: u32 = 256;

type Chunk = Box<[AtomicPtr<Header>]>;

/// The table.
pub(crate) struct Table {
    /// Which runtime these pids belong to.
    runtime: u8,
    /// First serial given to a fresh slot (varies per runtime instance, so
    /// pids of successive runtimes that share a runtime id differ).
    serial0: u32,
    /// Chunks of slots, allocated on demand.
    chunks: Box<[AtomicPtr<AtomicPtr<Header>>]>,
    /// Serializes chunk allocation.
    grow: Mutex<()>,
    /// Next never-used index (index 0 is reserved: it names the runtime itself).
    fresh: AtomicU32,
    /// Batches of freed pids (with their next serial) given up by caches.
    pool: Mutex<Vec<Vec<Pid>>>,
    /// Processes ever published, and ever removed: live is the difference.
    /// Two counters cost what one `live` counter cost (one read-modify-write
    /// per spawn and per exit) and give introspection spawn and exit rates.
    spawned: AtomicU64,
    exited: AtomicU64,
}

/// A scheduler's private supply of slots.
#[derive(Default)]
pub(crate) struct SlotCache {
    /// Freed pids, oldest first, each already carrying its next serial.
    free: VecDeque<Pid>,
    /// Pids taken from the shared pool (already aged elsewhere).
    ready: Vec<Pid>,
    /// Fresh indices `[next, end)`.
    fresh: (u32, u32),
}

impl Table {
    pub(crate) fn new(runtime: u8, instance: u64) -> Table {
        let chunks = (0..MAX_CHUNKS)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        Table {
            runtime,
            serial0: 1 + (instance.wrapping_mul(0x9E37_79B9) % (SERIAL_MASK - 1)) as u32,
            chunks,
            grow: Mutex::new(()),
            fresh: AtomicU32::new(1),
            pool: Mutex::new(Vec::new()),
            spawned: AtomicU64::new(0),
            exited: AtomicU64::new(0),
        }
    }

    /// The pid that stands for the runtime itself (sender of exit signals
    /// that come from outside any process). Never a live process.
    pub(crate) fn runtime_pid(&self) -> Pid {
        Pid::new(self.runtime, 0, 1)
    }

    pub(crate) fn live(&self) -> usize {
        // Exits first: every exit counted was of a process already counted.
        let exited = self.exited.load(Ordering::Acquire);
        let spawned = self.spawned.load(Ordering::Acquire);
        spawned.saturating_sub(exited) as usize
    }

    /// Processes ever published and ever removed, in that order.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let exited = self.exited.load(Ordering::Acquire);
        (self.spawned.load(Ordering::Acquire), exited)
    }

    /// Slots handed out so far: every live process has an index below this.
    pub(crate) fn high_water(&self) -> u32 {
        self.fresh.load(Ordering::Acquire)
    }

    /// The process in slot `index`, if one is published there.
    pub(crate) fn at<'g>(&self, index: u32, _guard: &'g Guard) -> Option<&'g Header> {
        let p = self.slot(index)?.load(Ordering::Acquire);
        // SAFETY: as in `get`.
        unsafe { p.as_ref() }
    }

    fn slot(&self, index: u32) -> Option<&AtomicPtr<Header>> {
        let index = index as usize;
        let chunk = self
            .chunks
            .get(index >> CHUNK_BITS)?
            .load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: chunks are CHUNK slots long and live as long as the table.
        Some(unsafe { &*chunk.add(index & (CHUNK - 1)) })
    }

    /// The live process with this pid, if any.
    pub(crate) fn get<'g>(&self, pid: Pid, _guard: &'g Guard) -> Option<&'g Header> {
        let p = self.slot(pid.index())?.load(Ordering::Acquire);
        // SAFETY: the guard keeps a process loaded from the table from being
        // freed (processes are freed through the epoch).
        let h = unsafe { p.as_ref()? };
        (h.pid == pid).then_some(h)
    }

    /// Reserves a pid for a new process.
    pub(crate) fn alloc(&self, cache: &mut SlotCache) -> Result<Pid, Error> {
        if cache.free.len() > REUSE_DEPTH
            && let Some(pid) = cache.free.pop_front()
        {
            return Ok(pid);
        }
        if let Some(pid) = cache.ready.pop() {
            return Ok(pid);
        }
        if let Some(batch) = self.pool.lock().pop() {
            cache.ready = batch;
            if let Some(pid) = cache.ready.pop() {
                return Ok(pid);
            }
        }
        if cache.fresh.0 == cache.fresh.1 {
            let start = self.fresh.fetch_add(FRESH_BLOCK, Ordering::Relaxed);
            let end = start
                .checked_add(FRESH_BLOCK)
                .filter(|&e| u64::from(e) <= 1 << INDEX_BITS);
            let Some(end) = end else {
                self.fresh.fetch_sub(FRESH_BLOCK, Ordering::Relaxed);
                return Err(Error::Config("process table full (2^28 processes)".into()));
            };
            self.ensure_chunk(start);
            self.ensure_chunk(end - 1);
            cache.fresh = (start, end);
        }
        let index = cache.fresh.0;
        cache.fresh.0 += 1;
        Ok(Pid::new(self.runtime, index, self.serial0))
    }

    fn ensure_chunk(&self, index: u32) {
        let c = &self.chunks[(index as usize) >> CHUNK_BITS];
        if !c.load(Ordering::Acquire).is_null() {
            return;
        }
        let _g = self.grow.lock();
        if c.load(Ordering::Acquire).is_null() {
            let chunk: Chunk = (0..CHUNK)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect();
            c.store(Box::leak(chunk).as_mut_ptr(), Ordering::Release);
        }
    }

    /// Publishes a process under its pid.
    pub(crate) fn insert(&self, p: NonNull<Header>) {
        // SAFETY: the caller just built the process.
        let pid = unsafe { p.as_ref().pid };
        self.spawned.fetch_add(1, Ordering::AcqRel);
        let slot = self.slot(pid.index());
        debug_assert!(slot.is_some(), "slot of {pid} has no chunk");
        if let Some(slot) = slot {
            slot.store(p.as_ptr(), Ordering::Release);
        }
    }

    /// Unpublishes an ending process and recycles its slot. Returns the
    /// number of processes still alive.
    pub(crate) fn remove(&self, pid: Pid, cache: &mut SlotCache) -> usize {
        if let Some(slot) = self.slot(pid.index()) {
            slot.store(ptr::null_mut(), Ordering::Release);
        }
        cache.free.push_back(pid.next_serial());
        if cache.free.len() >= 2 * REUSE_DEPTH + BATCH {
            let batch: Vec<Pid> = cache.free.drain(..BATCH).collect();
            self.pool.lock().push(batch);
        }
        // AcqRel: the last exit sees every spawn whose process exited
        // before it, so exactly the remover that empties the table sees 0.
        let exited = self.exited.fetch_add(1, Ordering::AcqRel) + 1;
        self.spawned.load(Ordering::Acquire).saturating_sub(exited) as usize
    }

    /// Gives back a pid that was never published (a spawn that failed).
    pub(crate) fn recycle_unused(&self, pid: Pid, cache: &mut SlotCache) {
        cache.ready.push(pid);
    }

    /// Every live pid, in slot order.
    pub(crate) fn pids(&self, guard: &Guard) -> Vec<Pid> {
        let end = self.fresh.load(Ordering::Acquire);
        let mut out = Vec::new();
        for index in 1..end {
            if let Some(slot) = self.slot(index) {
                // SAFETY: as in `get`.
                if let Some(h) = unsafe { slot.load(Ordering::Acquire).as_ref() } {
                    out.push(h.pid);
                }
            }
        }
        let _ = guard;
        out
    }

    /// Gives a cache's slots back to the pool (a scheduler thread ending).
    pub(crate) fn return_cache(&self, cache: &mut SlotCache) {
        let mut all: Vec<Pid> = cache.free.drain(..).collect();
        all.append(&mut cache.ready);
        if !all.is_empty() {
            self.pool.lock().push(all);
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        for c in self.chunks.iter() {
            let p = c.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: made by `Box::leak` of a CHUNK-long boxed slice.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, CHUNK)) });
            }
        }
    }
}

/// Frees a process once no thread can still be reading it through the table.
pub(crate) fn defer_free(p: NonNull<Header>) {
    let addr = p.as_ptr() as usize;
    let guard = crossbeam_epoch::pin();
    // SAFETY: the last reference is gone and the slot was cleared before the
    // table's reference was dropped, so only readers pinned before now can
    // see the pointer; the epoch runs this after they unpin.
    unsafe {
        guard.defer_unchecked(move || {
            let p = NonNull::new_unchecked(addr as *mut Header);
            (p.as_ref().vtable.dealloc)(p);
        });
    }
}
