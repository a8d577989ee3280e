//! A hierarchical timing wheel holding every pending timer of a runtime.
//!
//! The runtime keeps all its timers (`sleep`, receive timeouts, `send_after`) in one
//! [`Wheel`], behind a mutex, driven by one background thread that sleeps until
//! [`Wheel::next_deadline`] and then calls [`Wheel::advance`]. Time is a plain `u64` count
//! of nanoseconds since the runtime started; the runtime owns the clock, the wheel only
//! ever sees numbers.
//!
//! # Ticks and levels
//!
//! Deadlines are bucketed by *tick*: `tick = deadline_ns >> 10`, i.e. a level-0 slot is
//! 1024 ns wide. A tick count is read as a number written in base 64; each base-64 digit
//! is one *level* of the wheel, and the digit's value is the *slot* in that level:
//!
//! | level | slot width        | level span (64 slots) |
//! |-------|-------------------|-----------------------|
//! | 0     | 1.024 µs          | 65.5 µs               |
//! | 1     | 65.5 µs           | 4.19 ms               |
//! | 2     | 4.19 ms           | 268 ms                |
//! | 3     | 268 ms            | 17.2 s                |
//! | 4     | 17.2 s            | 18.3 min              |
//! | 5     | 18.3 min          | 19.5 h (2^46 ns)      |
//! | overflow | —              | everything later      |
//!
//! The wheel has a position, `elapsed` (in ticks; `now() >> 10` between advances). A timer
//! whose deadline tick is `t >= elapsed` goes to the level of the *highest base-64 digit in
//! which `t` and `elapsed` differ*, in the slot given by `t`'s digit at that level. A timer
//! that differs only in digit 0 goes to level 0; one that differs in digit 3 (but agrees
//! on digits 4 and 5) goes to level 3, and so on. Consequences:
//!
//! * All timers in level `L` share the digits above `L` with `elapsed`, and their digit `L`
//!   is larger than `elapsed`'s (or equal, at level 0). So a level never wraps around:
//!   its lowest occupied slot is its earliest one, found with one `trailing_zeros` on the
//!   level's 64-bit occupancy bitmap, with no scan and no rotation.
//! * Every timer in level `L` is due before every timer in level `L + 1` (the former lie in
//!   the block of `elapsed`'s digit `L + 1`, the latter in later blocks). So the earliest
//!   timer is in the lowest non-empty level, in its lowest occupied slot.
//!
//! # Advancing and cascading
//!
//! [`Wheel::advance`] repeatedly takes that earliest slot; if its start is not after the
//! target time, it moves `elapsed` to the slot's start and processes it:
//!
//! * a slot of level `L >= 1` is *cascaded*: its timers are unlinked and placed again
//!   relative to the new `elapsed`, which puts each of them on a lower level (they now
//!   agree with `elapsed` on digit `L`);
//! * a level-0 slot holds timers of a single tick. Its timers with `deadline <= target` are
//!   sorted by `(deadline, insertion sequence)` and fired, exactly to the nanosecond: when
//!   the slot is the target's own tick, timers later in that same 1024 ns stay pending.
//!
//! Because slots are taken earliest first and each level-0 slot is sorted, timers fire in
//! nondecreasing deadline order, ties in insertion order. A timer cascades at most once
//! per level, so the cost of a timer over its whole life is O(levels), and the cost of an
//! advance is O(timers fired + timers cascaded + 1).
//!
//! A deadline already in the past (`deadline <= now()`) is placed as if its tick were
//! `elapsed`: in the current level-0 slot, so the next advance fires it, before anything
//! else (every other pending timer is due after `now()`).
//!
//! # The overflow list
//!
//! The six levels cover the aligned block of 2^36 ticks (2^46 ns, about 19.5 hours) that
//! contains `elapsed`. A timer whose tick lies in a later block (its highest differing digit
//! is above level 5) goes to the overflow list, a plain unordered list. When all levels are
//! empty and the target time reaches the block of the earliest overflow timer, the top
//! level "wraps": `elapsed` jumps to that block's start and every overflow timer is placed
//! again; those now in the current block land in the levels, the rest go back to the
//! list. The list is thus re-read only once per top-level wrap that actually has timers in
//! it, however far apart the deadlines are (a `u64::MAX` deadline costs nothing special).
//! Note that the blocks are aligned, so a timer one hour ahead may sit in the overflow list
//! for a while when a block boundary lies between now and its deadline; that is harmless.
//!
//! # Why 1024 ns
//!
//! The clock counts nanoseconds, and a power-of-two slot width makes every slot computation
//! a shift and a mask. About a microsecond is finer than any OS sleep or scheduling
//! latency, so the wheel is never what limits precision, yet coarse enough that six levels
//! of 64 slots reach 19.5 hours, which keeps real-world timers out of the overflow list. It
//! also keeps level-0 slots tiny (only timers due within the same microsecond share one),
//! so sorting a slot before firing it and filtering it to the exact nanosecond are cheap.
//!
//! # Storage
//!
//! All timers live in one slab, `Vec<Entry<T>>`, recycled through a free list, so a pending
//! timer costs one slab entry and nothing else. Each slot (and the overflow list) is an
//! intrusive doubly-linked list of slab indices (`u32`, with `u32::MAX` as "none"), and each
//! entry remembers its level and slot, so insert and cancel are O(1). A [`TimerKey`] is a slab
//! index plus the entry's generation, which is bumped whenever the entry is freed, so a key
//! of a timer that fired or was cancelled is recognized as stale even after its slab entry
//! has been reused (until the generation wraps after 2^32 reuses of the same entry). The
//! slab never shrinks: memory stays at the high-water mark of pending timers.
//!
//! # `next_deadline`
//!
//! The answer is cached and kept up to date by insert (a new minimum replaces it), by cancel
//! (the cache counts how many timers share the minimum, and is dropped only when the last of
//! them goes) and by advance (which knows what it left behind in the current slot), so the
//! driver's calls after every insert and every advance are O(1) in the common case. When
//! recomputed, the earliest slot is scanned for its minimum. Level-0 slots are scanned
//! completely; a slot of a higher level is scanned only up to [`SCAN_LIMIT`] entries, and if
//! it holds more, its start time is returned instead: a lower bound, later than `now()`, at
//! which `advance` cascades that slot (so it makes progress, and the next answer is finer).

use std::mem;

/// log2 of the width of a level-0 slot in nanoseconds: 2^10 ns = 1024 ns, about 1 µs
/// (see "Why 1024 ns" in the module docs).
const TICK_SHIFT: u32 = 10;

/// log2 of the number of slots per level: 6, so that the occupancy of one level is exactly
/// one `u64` bitmap.
const SLOT_BITS: u32 = 6;

/// Slots per level: 2^[`SLOT_BITS`] = 64, one per bit of the occupancy bitmap.
const SLOTS: usize = 1 << SLOT_BITS;

/// Mask for one base-64 digit of a tick count: [`SLOTS`] - 1.
const SLOT_MASK: u64 = SLOTS as u64 - 1;

/// Number of levels: 6 levels of 6 bits cover 2^36 ticks = 2^46 ns, about 19.5 hours; later
/// deadlines go to the overflow list.
const LEVELS: usize = 6;

/// Bits of a tick count covered by the levels: [`SLOT_BITS`] x [`LEVELS`] = 36.
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;

/// "No entry" in the intrusive lists and the free list; slab indices are therefore below
/// `u32::MAX`, which caps the wheel at `u32::MAX - 1` timers pending at once.
const NIL: u32 = u32::MAX;

/// [`Entry::level`] of an entry on the overflow list: one past the last level.
const OVERFLOW: u8 = LEVELS as u8;

/// [`Entry::level`] of a free slab entry, one on the free list.
const FREE: u8 = u8::MAX;

/// How many entries [`Wheel::next_deadline`] reads in a slot of level 1 or higher before it
/// settles for the slot's start as a lower bound. Such a slot spans at least 65 µs; 256 keeps
/// a recomputation to a few microseconds while almost always giving the exact answer (a
/// level-0 slot is always read completely, as its start would not be a useful bound).
const SCAN_LIMIT: usize = 256;

/// Identifies one pending timer. Stale keys (fired, cancelled, slab entry reused) are detected
/// by their generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    /// Index of the timer's entry in the slab.
    index: u32,
    /// Generation the entry had when the timer was inserted.
    generation: u32,
}

/// One slab entry: a pending timer, or a free entry on the free list.
///
/// Size (x86_64): 30 bytes of fields + `Option<T>`, rounded to the alignment. For a 16-byte
/// payload: 48 bytes with `T = [u8; 16]` or with a niche-carrying `T` (a `Box`, a `NonZero`),
/// 56 bytes with `T = [u64; 2]` (the `Option` tag then costs 8 bytes). Checked by the
/// `entry_size` test.
pub(crate) struct Entry<T> {
    /// Deadline in nanoseconds, exactly as given to `insert`.
    deadline: u64,
    /// Insertion sequence number: orders timers with equal deadlines.
    seq: u64,
    /// Next entry in the same slot list / overflow list / free list, or [`NIL`].
    next: u32,
    /// Previous entry in the same slot list or overflow list, or [`NIL`] at the head.
    prev: u32,
    /// Bumped each time the entry is freed; a key is live only if its generation matches.
    generation: u32,
    /// Level of the slot list the entry is on, [`OVERFLOW`], or [`FREE`].
    level: u8,
    /// Slot within `level` (unused for the overflow list and free entries).
    slot: u8,
    /// The payload; `Some` exactly while the timer is pending.
    value: Option<T>,
}

/// Cached answer of [`Wheel::next_deadline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NextCache {
    /// Not known: recompute on the next call.
    Unknown,
    /// The exact earliest pending deadline.
    Exact {
        /// The earliest pending deadline.
        deadline: u64,
        /// How many pending timers have exactly that deadline.
        count: usize,
    },
    /// A lower bound: the start (in ns) of the level >= 1 slot holding the earliest timers,
    /// later than `now`; advancing to it cascades that slot.
    Bound(u64),
}

/// A hierarchical timing wheel of timers carrying payloads of type `T` (see the module docs).
pub(crate) struct Wheel<T> {
    /// The slab: every entry, pending or free. [`TimerKey::index`] points here.
    entries: Vec<Entry<T>>,
    /// Head of the free list, threaded through [`Entry::next`], or [`NIL`].
    free_head: u32,
    /// Head of each slot list, `heads[level][slot]`, or [`NIL`] when the slot is empty.
    heads: [[u32; SLOTS]; LEVELS],
    /// Bit `s` of `occupied[level]` is set exactly when `heads[level][s]` is not [`NIL`].
    occupied: [u64; LEVELS],
    /// Head of the overflow list (ticks beyond the current 2^36-tick block), or [`NIL`].
    overflow_head: u32,
    /// Number of entries on the overflow list.
    overflow_len: usize,
    /// Earliest deadline on the overflow list and how many overflow entries have it;
    /// `None` when unknown (rescan). Meaningful only while `overflow_len > 0`.
    overflow_min: Option<(u64, usize)>,
    /// Number of pending timers.
    len: usize,
    /// Time of the last advance, in ns (never decreases).
    now: u64,
    /// Position of the wheel in ticks; entries are placed relative to it. Equals
    /// `now >> TICK_SHIFT` between advances, never more.
    elapsed: u64,
    /// Sequence number for the next inserted timer.
    next_seq: u64,
    /// Cached answer of `next_deadline`, valid while `len > 0`.
    next: NextCache,
    /// Reused buffer holding the due timers of a level-0 slot while they are sorted and fired.
    scratch: Vec<u32>,
}

impl<T> Wheel<T> {
    /// An empty wheel at time 0.
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            free_head: NIL,
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            overflow_head: NIL,
            overflow_len: 0,
            overflow_min: None,
            len: 0,
            now: 0,
            elapsed: 0,
            next_seq: 0,
            next: NextCache::Unknown,
            scratch: Vec::new(),
        }
    }

    /// The time of the last advance (0 before the first).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Number of pending timers.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a timer. A deadline `<= now()` fires on the next advance.
    ///
    /// # Panics
    ///
    /// Only if `u32::MAX - 1` timers are already pending (the slab index is a `u32`).
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let index = self.alloc(deadline, seq, value);
        self.place(index);
        self.next = if self.len == 0 {
            NextCache::Exact { deadline, count: 1 }
        } else {
            match self.next {
                NextCache::Exact {
                    deadline: min,
                    count,
                } if deadline == min => NextCache::Exact {
                    deadline: min,
                    count: count + 1,
                },
                NextCache::Exact { deadline: min, .. } | NextCache::Bound(min)
                    if deadline < min =>
                {
                    NextCache::Exact { deadline, count: 1 }
                }
                other => other,
            }
        };
        self.len += 1;
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Removes a pending timer and returns its deadline and payload; `None` if it already
    /// fired, was cancelled, or the key is stale.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<(u64, T)> {
        let index = self.live(key)?;
        self.unlink(index);
        let (_, deadline, value) = self.release(index)?;
        self.next = match self.next {
            NextCache::Exact {
                deadline: min,
                count,
            } if deadline == min => {
                if count > 1 {
                    NextCache::Exact {
                        deadline: min,
                        count: count - 1,
                    }
                } else {
                    NextCache::Unknown
                }
            }
            // The bound's slot may have just become empty; recomputing is cheap.
            NextCache::Bound(_) => NextCache::Unknown,
            other => other,
        };
        Some((deadline, value))
    }

    /// The deadline of a pending timer, `None` if it is not pending.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.live(key)
            .map(|index| self.entries[index as usize].deadline)
    }

    /// The earliest pending deadline, or `None` when no timer is pending.
    ///
    /// It may be `<= now()` (a timer inserted in the past): the caller should advance at
    /// once. It is exact, except when the earliest timers sit in a slot of level 1 or more
    /// holding over [`SCAN_LIMIT`] timers: then it is that slot's start, which is earlier than
    /// every timer in it but later than `now()`, and advancing to it cascades the slot, so a
    /// driver that sleeps until this value makes progress on every wake-up and reaches the
    /// exact value after at most `LEVELS - 1` early wake-ups. O(1) unless the cache must be
    /// recomputed (see the module docs).
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        if self.next == NextCache::Unknown {
            self.next = self.compute_next();
        }
        match self.next {
            NextCache::Exact { deadline, .. } => Some(deadline),
            NextCache::Bound(bound) => Some(bound),
            NextCache::Unknown => None,
        }
    }

    /// Moves time forward to `now` (a value smaller than `now()` is treated as `now()`) and
    /// calls `fire(key, deadline, value)` for every timer with `deadline <= now`, in
    /// nondecreasing deadline order, ties in insertion order. Returns how many fired.
    ///
    /// `fire` runs while the wheel is borrowed; should it panic, the wheel stays consistent:
    /// the timers not yet fired remain pending and fire on the next advance.
    pub(crate) fn advance(&mut self, now: u64, mut fire: impl FnMut(TimerKey, u64, T)) -> usize {
        let target = now.max(self.now);
        self.now = target;
        let target_tick = target >> TICK_SHIFT;
        let mut fired = 0;
        let mut left_in_current_slot = None;
        loop {
            if let Some(level) = self.occupied.iter().position(|&bits| bits != 0) {
                let slot = self.occupied[level].trailing_zeros() as usize;
                let start = self.slot_start(level, slot);
                if start > target_tick {
                    break;
                }
                debug_assert!(start >= self.elapsed);
                self.next = NextCache::Unknown;
                self.elapsed = start;
                if level == 0 {
                    let (count, rest) = self.fire_slot(slot, target, &mut fire);
                    fired += count;
                    if start == target_tick {
                        // Every other slot starts after the target: done.
                        left_in_current_slot = rest;
                        break;
                    }
                } else {
                    self.cascade(level, slot);
                }
            } else if let Some((min, _)) = self.overflow_min() {
                let block_start = (min >> TICK_SHIFT) >> WHEEL_BITS << WHEEL_BITS;
                if block_start > target_tick {
                    break;
                }
                debug_assert!(block_start > self.elapsed);
                self.next = NextCache::Unknown;
                self.elapsed = block_start;
                self.reexamine_overflow();
            } else {
                break;
            }
        }
        self.elapsed = self.elapsed.max(target_tick);
        if let Some((deadline, count)) = left_in_current_slot {
            // Those are the earliest pending timers: everything else is in later slots.
            self.next = NextCache::Exact { deadline, count };
        }
        fired
    }

    /// Index of the entry `key` designates if it is pending.
    fn live(&self, key: TimerKey) -> Option<u32> {
        let entry = self.entries.get(key.index as usize)?;
        (entry.generation == key.generation && entry.value.is_some()).then_some(key.index)
    }

    /// Takes a slab entry (from the free list, else a new one) for a timer; not yet linked.
    fn alloc(&mut self, deadline: u64, seq: u64, value: T) -> u32 {
        if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.deadline = deadline;
            entry.seq = seq;
            entry.value = Some(value);
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&index| index != NIL)
                .expect("timer wheel full: u32::MAX - 1 timers pending");
            self.entries.push(Entry {
                deadline,
                seq,
                next: NIL,
                prev: NIL,
                generation: 0,
                level: FREE,
                slot: 0,
                value: Some(value),
            });
            index
        }
    }

    /// Frees an unlinked pending entry: returns its key (as it was), deadline and payload.
    fn release(&mut self, index: u32) -> Option<(TimerKey, u64, T)> {
        let free_head = self.free_head;
        let entry = &mut self.entries[index as usize];
        let value = entry.value.take()?;
        let key = TimerKey {
            index,
            generation: entry.generation,
        };
        entry.generation = entry.generation.wrapping_add(1);
        entry.level = FREE;
        entry.next = free_head;
        entry.prev = NIL;
        self.free_head = index;
        self.len -= 1;
        Some((key, entry.deadline, value))
    }

    /// Links an unlinked pending entry into the slot (or the overflow list) its deadline
    /// belongs to relative to `elapsed`.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let tick = (deadline >> TICK_SHIFT).max(self.elapsed);
        let level = level_for(self.elapsed, tick);
        if level < LEVELS {
            let slot = (tick >> (SLOT_BITS * level as u32)) & SLOT_MASK;
            self.occupied[level] |= 1 << slot;
            self.push_front(index, level as u8, slot as u8);
        } else {
            self.overflow_min = if self.overflow_len == 0 {
                Some((deadline, 1))
            } else {
                self.overflow_min.map(|min| fold_min(Some(min), deadline))
            };
            self.overflow_len += 1;
            self.push_front(index, OVERFLOW, 0);
        }
    }

    /// Pushes an entry at the head of a slot list (`level < LEVELS`) or the overflow list.
    fn push_front(&mut self, index: u32, level: u8, slot: u8) {
        let head = if usize::from(level) < LEVELS {
            &mut self.heads[usize::from(level)][usize::from(slot)]
        } else {
            &mut self.overflow_head
        };
        let old_head = mem::replace(head, index);
        if old_head != NIL {
            self.entries[old_head as usize].prev = index;
        }
        let entry = &mut self.entries[index as usize];
        entry.next = old_head;
        entry.prev = NIL;
        entry.level = level;
        entry.slot = slot;
    }

    /// Removes a pending entry from the list it is on.
    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (prev, next, level, slot, deadline) = (
            entry.prev,
            entry.next,
            entry.level,
            entry.slot,
            entry.deadline,
        );
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else if usize::from(level) < LEVELS {
            let (level, slot) = (usize::from(level), usize::from(slot));
            self.heads[level][slot] = next;
            if next == NIL {
                self.occupied[level] &= !(1 << slot);
            }
        } else {
            self.overflow_head = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if level == OVERFLOW {
            self.overflow_len -= 1;
            self.overflow_min = match self.overflow_min {
                Some((min, count)) if min == deadline => (count > 1).then(|| (min, count - 1)),
                other => other,
            };
        }
    }

    /// Start tick of `slot` of `level`, in the block of `elapsed` for that level.
    fn slot_start(&self, level: usize, slot: usize) -> u64 {
        let shift = SLOT_BITS * level as u32;
        let block = self.elapsed >> (shift + SLOT_BITS) << (shift + SLOT_BITS);
        block | ((slot as u64) << shift)
    }

    /// Fires, in `(deadline, seq)` order, the timers of level-0 slot `slot` whose deadline is
    /// `<= target`. Returns how many fired and the minimum deadline (with its multiplicity)
    /// of those left in the slot.
    fn fire_slot(
        &mut self,
        slot: usize,
        target: u64,
        fire: &mut impl FnMut(TimerKey, u64, T),
    ) -> (usize, Option<(u64, usize)>) {
        let mut due = mem::take(&mut self.scratch);
        due.clear();
        let mut rest = None;
        let mut index = self.heads[0][slot];
        while index != NIL {
            let entry = &self.entries[index as usize];
            if entry.deadline <= target {
                due.push(index);
            } else {
                rest = Some(fold_min(rest, entry.deadline));
            }
            index = entry.next;
        }
        let entries = &self.entries;
        due.sort_unstable_by_key(|&index| {
            let entry = &entries[index as usize];
            (entry.deadline, entry.seq)
        });
        // Unlink one by one, right before firing: if `fire` panics, the rest stay linked.
        for &index in &due {
            self.unlink(index);
            if let Some((key, deadline, value)) = self.release(index) {
                fire(key, deadline, value);
            }
        }
        let count = due.len();
        if due.capacity() > 4096 {
            due = Vec::new();
        }
        self.scratch = due;
        (count, rest)
    }

    /// Empties `slot` of `level` and places its timers again relative to `elapsed` (which is
    /// the slot's start), moving each to a lower level.
    fn cascade(&mut self, level: usize, slot: usize) {
        let mut index = mem::replace(&mut self.heads[level][slot], NIL);
        self.occupied[level] &= !(1 << slot);
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.place(index);
            debug_assert!(usize::from(self.entries[index as usize].level) < level);
            index = next;
        }
    }

    /// Empties the overflow list and places its timers again relative to `elapsed`.
    fn reexamine_overflow(&mut self) {
        let mut index = mem::replace(&mut self.overflow_head, NIL);
        self.overflow_len = 0;
        self.overflow_min = None;
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.place(index);
            index = next;
        }
    }

    /// Earliest overflow deadline and its multiplicity, rescanning the list if unknown.
    fn overflow_min(&mut self) -> Option<(u64, usize)> {
        if self.overflow_len == 0 {
            return None;
        }
        if self.overflow_min.is_none() {
            self.overflow_min = self.scan_min(self.overflow_head, usize::MAX);
        }
        self.overflow_min
    }

    /// Minimum deadline (with multiplicity) of the list starting at `index`; `None` if the
    /// list is empty or longer than `limit`.
    fn scan_min(&self, mut index: u32, limit: usize) -> Option<(u64, usize)> {
        let mut min = None;
        let mut seen = 0;
        while index != NIL {
            if seen == limit {
                return None;
            }
            seen += 1;
            let entry = &self.entries[index as usize];
            min = Some(fold_min(min, entry.deadline));
            index = entry.next;
        }
        min
    }

    /// Recomputes the answer of `next_deadline` (with `len > 0`).
    fn compute_next(&mut self) -> NextCache {
        if let Some(level) = self.occupied.iter().position(|&bits| bits != 0) {
            let slot = self.occupied[level].trailing_zeros() as usize;
            let limit = if level == 0 { usize::MAX } else { SCAN_LIMIT };
            return match self.scan_min(self.heads[level][slot], limit) {
                Some((deadline, count)) => NextCache::Exact { deadline, count },
                None => NextCache::Bound(self.slot_start(level, slot) << TICK_SHIFT),
            };
        }
        match self.overflow_min() {
            Some((deadline, count)) => NextCache::Exact { deadline, count },
            None => NextCache::Unknown,
        }
    }
}

/// Level for a timer at `tick >= elapsed`: the index of the highest base-64 digit in which
/// they differ (0 when they are equal). `LEVELS` or more means the overflow list.
fn level_for(elapsed: u64, tick: u64) -> usize {
    let differing = (elapsed ^ tick) | SLOT_MASK;
    let top_bit = u64::BITS - 1 - differing.leading_zeros();
    (top_bit / SLOT_BITS) as usize
}

/// Folds `deadline` into a running (minimum, multiplicity).
fn fold_min(min: Option<(u64, usize)>, deadline: u64) -> (u64, usize) {
    match min {
        Some((min, count)) if min == deadline => (min, count + 1),
        Some((min, count)) if min < deadline => (min, count),
        _ => (deadline, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    /// Width in ns of one slot of `level`.
    fn slot_width(level: u32) -> u64 {
        1 << (TICK_SHIFT + SLOT_BITS * level)
    }

    /// Advances and returns what fired, checking the count and the nondecreasing order.
    fn advance<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<(TimerKey, u64, T)> {
        let mut fired = Vec::new();
        let count = wheel.advance(now, |key, deadline, value| {
            fired.push((key, deadline, value))
        });
        assert_eq!(count, fired.len());
        assert!(fired.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert!(
            fired
                .iter()
                .all(|&(_, deadline, _)| deadline <= wheel.now())
        );
        fired
    }

    /// The payloads fired by an advance.
    fn advance_values<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<T> {
        advance(wheel, now)
            .into_iter()
            .map(|(_, _, value)| value)
            .collect()
    }

    /// Deterministic pseudo-random numbers (xorshift64*), to keep tests reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn entry_size() {
        // 30 bytes of fields + Option<T>, padded to 8: see the comment on `Entry`.
        assert_eq!(size_of::<Entry<[u8; 16]>>(), 48);
        assert_eq!(size_of::<Entry<Box<[u8; 16]>>>(), 40);
        assert_eq!(size_of::<Entry<[u64; 2]>>(), 56);
        assert!(size_of::<Entry<[u64; 2]>>() <= 48 + 16);
        assert_eq!(size_of::<TimerKey>(), 8);
    }

    #[test]
    fn empty_wheel() {
        let mut wheel: Wheel<()> = Wheel::new();
        assert_eq!(wheel.now(), 0);
        assert_eq!(wheel.len(), 0);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
        assert_eq!(
            wheel.advance(1_000_000, |_, _, _| panic!("nothing to fire")),
            0
        );
        assert_eq!(wheel.now(), 1_000_000);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn fires_in_deadline_order_ties_in_insertion_order() {
        let mut wheel = Wheel::new();
        let deadlines = [
            5_000, 1_000, 70_000, 3, 1_000, 5_000_000, 2_000, 1_000, 0, 65_536,
        ];
        let keys: Vec<TimerKey> = deadlines
            .iter()
            .enumerate()
            .map(|(i, &deadline)| wheel.insert(deadline, i))
            .collect();
        assert_eq!(wheel.len(), deadlines.len());
        let fired = advance(&mut wheel, 10_000_000);
        let order: Vec<usize> = fired.iter().map(|&(_, _, value)| value).collect();
        assert_eq!(order, [8, 3, 1, 4, 7, 6, 0, 9, 2, 5]);
        for (key, deadline, value) in fired {
            assert_eq!(key, keys[value]);
            assert_eq!(deadline, deadlines[value]);
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn exact_nanosecond_semantics() {
        let mut wheel = Wheel::new();
        // Three timers within one level-0 slot (ticks 2 = [2048, 3072)), one right after it.
        wheel.insert(2_100, "a");
        wheel.insert(2_048, "b");
        wheel.insert(3_071, "c");
        wheel.insert(3_072, "d");
        assert_eq!(wheel.next_deadline(), Some(2_048));
        assert!(advance_values(&mut wheel, 2_047).is_empty());
        assert_eq!(advance_values(&mut wheel, 2_048), ["b"]);
        assert_eq!(wheel.next_deadline(), Some(2_100));
        assert!(advance_values(&mut wheel, 2_099).is_empty());
        assert_eq!(advance_values(&mut wheel, 2_100), ["a"]);
        assert_eq!(wheel.next_deadline(), Some(3_071));
        assert!(advance_values(&mut wheel, 3_070).is_empty());
        assert_eq!(advance_values(&mut wheel, 3_071), ["c"]);
        assert_eq!(wheel.next_deadline(), Some(3_072));
        assert_eq!(advance_values(&mut wheel, 3_072), ["d"]);
        assert_eq!(wheel.next_deadline(), None);

        // A timer inserted later in the tick that `now` is in.
        wheel.insert(3_500, "e");
        assert_eq!(wheel.next_deadline(), Some(3_500));
        assert!(advance_values(&mut wheel, 3_499).is_empty());
        assert_eq!(advance_values(&mut wheel, 3_500), ["e"]);
    }

    #[test]
    fn deadline_in_the_past_fires_on_next_advance() {
        let mut wheel = Wheel::new();
        advance(&mut wheel, 1_000_000);
        let later = wheel.insert(1_000_001, "later");
        wheel.insert(5, "past");
        wheel.insert(1_000_000, "now");
        wheel.insert(999_000, "recent");
        assert_eq!(wheel.next_deadline(), Some(5));
        // Even an advance to an earlier time (ignored) fires timers that are due.
        assert_eq!(advance_values(&mut wheel, 10), ["past", "recent", "now"]);
        assert_eq!(wheel.now(), 1_000_000);
        assert_eq!(wheel.deadline(later), Some(1_000_001));
        assert_eq!(wheel.next_deadline(), Some(1_000_001));
        assert_eq!(advance_values(&mut wheel, 1_000_001), ["later"]);
        // Same, with no further advance in between: the next one fires it.
        wheel.insert(0, "zero");
        assert_eq!(advance_values(&mut wheel, 0), ["zero"]);
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut wheel = Wheel::new();
        advance(&mut wheel, 50_000);
        wheel.insert(60_000, ());
        assert_eq!(wheel.advance(10_000, |_, _, _| {}), 0);
        assert_eq!(wheel.now(), 50_000);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.advance(60_000, |_, _, _| {}), 1);
    }

    #[test]
    fn cancel_before_and_after_fire() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(10_000, "a");
        let b = wheel.insert(20_000, "b");
        let c = wheel.insert(20_000, "c");
        assert_eq!(wheel.deadline(a), Some(10_000));
        assert_eq!(wheel.cancel(a), Some((10_000, "a")));
        assert_eq!(wheel.cancel(a), None, "cancel twice");
        assert_eq!(wheel.deadline(a), None);
        assert_eq!(wheel.len(), 2);
        assert_eq!(wheel.next_deadline(), Some(20_000));
        assert!(advance_values(&mut wheel, 15_000).is_empty());
        assert_eq!(wheel.cancel(b), Some((20_000, "b")));
        assert_eq!(advance_values(&mut wheel, 20_000), ["c"]);
        assert_eq!(wheel.cancel(c), None, "cancel after fire");
        assert_eq!(wheel.deadline(c), None);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn stale_key_after_slot_reuse() {
        let mut wheel = Wheel::new();
        let old = wheel.insert(1_000, 1);
        assert_eq!(wheel.cancel(old), Some((1_000, 1)));
        let new = wheel.insert(2_000, 2);
        assert_eq!(new.index, old.index, "the slab entry is reused");
        assert_ne!(new, old);
        assert_eq!(wheel.deadline(old), None);
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.deadline(new), Some(2_000));

        // A key that fired, then its entry reused.
        let fired = advance(&mut wheel, 2_000);
        assert_eq!(fired, [(new, 2_000, 2)]);
        let newer = wheel.insert(3_000, 3);
        assert_eq!(newer.index, new.index);
        assert_eq!(wheel.cancel(new), None);
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(newer), Some((3_000, 3)));

        // A key from a different (bigger) wheel: out of range, not pending.
        let mut big = Wheel::new();
        let far = (0..10).map(|i| big.insert(i, ())).last().unwrap();
        assert_eq!(wheel.deadline(far), None);
        assert_eq!(wheel.cancel(far), None);
    }

    #[test]
    fn u64_max_deadline() {
        let mut wheel = Wheel::new();
        let max = wheel.insert(u64::MAX, "max");
        wheel.insert(u64::MAX - 1, "max-1");
        wheel.insert(1 << 63, "half");
        assert_eq!(wheel.next_deadline(), Some(1 << 63));
        assert!(advance_values(&mut wheel, (1 << 63) - 1).is_empty());
        assert_eq!(advance_values(&mut wheel, 1 << 63), ["half"]);
        assert_eq!(wheel.next_deadline(), Some(u64::MAX - 1));
        assert!(advance_values(&mut wheel, u64::MAX - 2).is_empty());
        assert_eq!(advance_values(&mut wheel, u64::MAX - 1), ["max-1"]);
        assert_eq!(wheel.deadline(max), Some(u64::MAX));
        assert_eq!(advance_values(&mut wheel, u64::MAX), ["max"]);
        assert_eq!(wheel.now(), u64::MAX);
        // At the end of time everything is due at once.
        wheel.insert(u64::MAX, "again");
        wheel.insert(7, "past");
        assert_eq!(wheel.next_deadline(), Some(7));
        assert_eq!(advance_values(&mut wheel, u64::MAX), ["past", "again"]);
        assert_eq!(advance_values(&mut wheel, 0), Vec::<&str>::new());
    }

    #[test]
    fn u64_max_from_the_start() {
        let mut wheel = Wheel::new();
        wheel.insert(u64::MAX, 1);
        wheel.insert(3, 0);
        assert_eq!(advance_values(&mut wheel, u64::MAX), [0, 1]);
    }

    #[test]
    fn far_deadlines_on_every_level_and_the_overflow() {
        let hour = 3_600_000_000_000_u64;
        let mut deadlines = Vec::new();
        for level in 0..=8 {
            let width = slot_width(level);
            deadlines.extend([width - 1, width, width + 1, 5 * width + 12_345, 63 * width]);
        }
        deadlines.extend([
            19 * hour,
            20 * hour,
            48 * hour,
            24 * 365 * hour,
            1 << 60,
            u64::MAX,
        ]);
        let mut wheel = Wheel::new();
        for (i, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, i);
        }
        assert!(
            wheel.overflow_len > 0,
            "some deadlines are beyond the top level"
        );
        let mut sorted: Vec<(u64, usize)> = deadlines.iter().copied().zip(0..).collect();
        sorted.sort();
        sorted.dedup_by_key(|&mut (deadline, _)| deadline);
        for &(deadline, i) in &sorted {
            assert_eq!(wheel.next_deadline(), Some(deadline));
            assert!(advance_values(&mut wheel, deadline - 1).is_empty());
            let fired = advance_values(&mut wheel, deadline);
            assert_eq!(fired[0], i, "deadline {deadline}");
            assert!(fired.iter().all(|&j| deadlines[j] == deadline));
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn overflow_timer_across_a_top_level_boundary() {
        // The top level covers an aligned 2^46 ns block: a timer just past its end goes to
        // the overflow list even though it is close.
        let block = 1_u64 << (TICK_SHIFT + WHEEL_BITS);
        let mut wheel = Wheel::new();
        advance(&mut wheel, block - 10_000);
        let key = wheel.insert(block + 10_000, "next block");
        assert_eq!(wheel.overflow_len, 1);
        wheel.insert(block - 5_000, "this block");
        assert_eq!(wheel.next_deadline(), Some(block - 5_000));
        assert_eq!(advance_values(&mut wheel, block), ["this block"]);
        assert_eq!(wheel.overflow_len, 0, "re-examined on the wrap");
        assert_eq!(wheel.deadline(key), Some(block + 10_000));
        assert_eq!(wheel.next_deadline(), Some(block + 10_000));
        assert!(advance_values(&mut wheel, block + 9_999).is_empty());
        assert_eq!(advance_values(&mut wheel, block + 10_000), ["next block"]);
        // Cancel from the overflow list.
        let a = wheel.insert(10 * block, "a");
        let b = wheel.insert(10 * block, "b");
        let c = wheel.insert(20 * block, "c");
        assert_eq!(wheel.overflow_len, 3);
        assert_eq!(wheel.next_deadline(), Some(10 * block));
        assert_eq!(wheel.cancel(a), Some((10 * block, "a")));
        assert_eq!(wheel.next_deadline(), Some(10 * block));
        assert_eq!(wheel.cancel(b), Some((10 * block, "b")));
        assert_eq!(wheel.next_deadline(), Some(20 * block));
        assert_eq!(wheel.overflow_len, 1);
        assert_eq!(advance_values(&mut wheel, u64::MAX), ["c"]);
        assert_eq!(wheel.cancel(c), None);
    }

    /// Inserts the same timers into two wheels, advances one in small steps and the other in
    /// one step, and checks the firings are identical.
    fn tiny_steps_vs_big_step(deadlines: &[u64], mut step: impl FnMut() -> u64) {
        let end = deadlines.iter().copied().max().unwrap_or(0);
        let mut small = Wheel::new();
        let mut big = Wheel::new();
        for (i, &deadline) in deadlines.iter().enumerate() {
            assert_eq!(small.insert(deadline, i), big.insert(deadline, i));
        }
        let mut stepped = Vec::new();
        let mut now = 0;
        while now < end {
            now = now.saturating_add(step()).min(end);
            let fired = advance(&mut small, now);
            assert!(fired.iter().all(|&(_, deadline, _)| deadline <= now));
            if let Some(next) = small.next_deadline() {
                assert!(next > now);
            }
            stepped.extend(fired);
        }
        let at_once = advance(&mut big, end);
        assert_eq!(stepped.len(), deadlines.len());
        assert_eq!(stepped, at_once);
    }

    #[test]
    fn tiny_steps_and_one_big_step_fire_the_same() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let deadlines: Vec<u64> = (0..3_000).map(|_| rng.next() % 5_000_000).collect();
        tiny_steps_vs_big_step(&deadlines, || 1 + rng.next() % 3_000);

        // Spread over all the levels and the overflow, with exponentially distributed steps.
        let mut rng = Rng(12345);
        let deadlines: Vec<u64> = (0..3_000)
            .map(|_| rng.next() >> (rng.next() % 64))
            .collect();
        tiny_steps_vs_big_step(&deadlines, || 1 + (rng.next() >> (rng.next() % 64)));

        // Steps of exactly one slot of each level.
        for level in 0..LEVELS as u32 {
            let width = slot_width(level);
            let mut rng = Rng(u64::from(level) + 1);
            let deadlines: Vec<u64> = (0..500).map(|_| rng.next() % (400 * width)).collect();
            tiny_steps_vs_big_step(&deadlines, || width);
        }
    }

    #[test]
    fn next_deadline_is_exact() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.next_deadline(), None);
        let a = wheel.insert(1_000_000_000, 'a');
        assert_eq!(wheel.next_deadline(), Some(1_000_000_000));
        let b = wheel.insert(300, 'b');
        assert_eq!(wheel.next_deadline(), Some(300));
        let c = wheel.insert(300, 'c');
        wheel.insert(5_000_000, 'd');
        assert_eq!(wheel.cancel(b), Some((300, 'b')));
        assert_eq!(wheel.next_deadline(), Some(300), "c still has it");
        assert_eq!(wheel.cancel(c), Some((300, 'c')));
        assert_eq!(wheel.next_deadline(), Some(5_000_000));
        // An advance that fires nothing keeps the answer; one that fires updates it.
        assert!(advance_values(&mut wheel, 4_000_000).is_empty());
        assert_eq!(wheel.next_deadline(), Some(5_000_000));
        assert_eq!(advance_values(&mut wheel, 5_000_000), ['d']);
        assert_eq!(wheel.next_deadline(), Some(1_000_000_000));
        // A deadline in a level-3 slot next to one right after a slot start.
        let e = wheel.insert(1_000_000_000 - 1, 'e');
        assert_eq!(wheel.next_deadline(), Some(999_999_999));
        assert_eq!(wheel.cancel(e), Some((999_999_999, 'e')));
        assert_eq!(wheel.next_deadline(), Some(1_000_000_000));
        assert_eq!(wheel.cancel(a), Some((1_000_000_000, 'a')));
        assert_eq!(wheel.next_deadline(), None);
        // A past deadline is reported as it is.
        wheel.insert(1, 'f');
        assert_eq!(wheel.next_deadline(), Some(1));
    }

    #[test]
    fn next_deadline_of_a_crowded_high_slot_is_a_lower_bound_that_makes_progress() {
        let mut wheel = Wheel::new();
        let base = 10 * slot_width(3) + 12_345;
        for i in 0..(SCAN_LIMIT as u64 * 3) {
            wheel.insert(base + 1_000 + i * 7_919, i);
        }
        let earliest = base + 1_000;
        let mut wakeups = 0;
        loop {
            let next = wheel.next_deadline().unwrap();
            assert!(next <= earliest);
            assert!(next > wheel.now());
            let before = (wheel.len(), wheel.occupied);
            let fired = advance(&mut wheel, next);
            wakeups += 1;
            if next == earliest {
                assert_eq!(fired.len(), 1);
                break;
            }
            assert!(fired.is_empty());
            assert_ne!(before, (wheel.len(), wheel.occupied), "progress at {next}");
        }
        assert!(wakeups <= LEVELS);
        // Cancelling in deadline order keeps next_deadline right.
        let keys: Vec<TimerKey> = (0..100)
            .map(|i| wheel.insert(base + 50 * slot_width(2) + i, i))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                wheel.cancel(*key),
                Some((base + 50 * slot_width(2) + i as u64, i as u64))
            );
            let next = wheel.next_deadline().unwrap();
            assert!(next <= base + 1_000 + 7_919 && next > wheel.now());
        }
    }

    #[test]
    fn cancelling_a_crowded_slot_drops_its_bound() {
        let mut wheel = Wheel::new();
        let base = 10 * slot_width(3);
        let keys: Vec<TimerKey> = (0..2 * SCAN_LIMIT as u64)
            .map(|i| wheel.insert(base + 1 + i, i))
            .collect();
        let later = 20 * slot_width(3) + 5;
        wheel.insert(later, u64::MAX);
        // Known exactly from the inserts...
        assert_eq!(wheel.next_deadline(), Some(base + 1));
        assert_eq!(wheel.cancel(keys[0]), Some((base + 1, 0)));
        // ...but once recomputed, only bounded by the crowded slot's start.
        assert_eq!(wheel.next_deadline(), Some(base));
        for &key in &keys[1..] {
            assert!(wheel.cancel(key).is_some());
        }
        assert_eq!(wheel.next_deadline(), Some(later));
        // A new earliest timer below the bound makes the answer exact again.
        let key = wheel.insert(base + 3, 0);
        for i in 0..2 * SCAN_LIMIT as u64 {
            wheel.insert(base + 4 + i, i);
        }
        assert_eq!(wheel.cancel(key), Some((base + 3, 0)));
        assert_eq!(wheel.next_deadline(), Some(base));
        wheel.insert(base - 1, 0);
        assert_eq!(wheel.next_deadline(), Some(base - 1));
    }

    #[test]
    fn many_timers_with_one_deadline() {
        let mut wheel = Wheel::new();
        let keys: Vec<TimerKey> = (0..10_000).map(|i| wheel.insert(123_456_789, i)).collect();
        assert_eq!(wheel.next_deadline(), Some(123_456_789));
        for key in &keys[..9_999] {
            assert!(wheel.cancel(*key).is_some());
            assert_eq!(wheel.next_deadline(), Some(123_456_789));
        }
        assert_eq!(advance_values(&mut wheel, u64::MAX), [9_999]);
    }

    #[test]
    fn a_panicking_callback_leaves_the_wheel_consistent() {
        let mut wheel = Wheel::new();
        for i in 0..10 {
            wheel.insert(1_000 + i, i);
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wheel.advance(1_000_000, |_, _, value| assert!(value < 4));
        }));
        assert!(result.is_err());
        assert_eq!(wheel.len(), 5);
        assert_eq!(wheel.next_deadline(), Some(1_005));
        assert_eq!(advance_values(&mut wheel, 0), [5, 6, 7, 8, 9]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn a_million_timers() {
        const N: usize = 1_000_000;
        let start = std::time::Instant::now();
        let mut wheel = Wheel::new();
        let mut rng = Rng(7);
        let mut keys = Vec::with_capacity(N);
        for i in 0..N {
            // Up to ~17 s ahead: levels 0 to 3, like receive timeouts and sleeps.
            keys.push(wheel.insert(rng.next() % (1 << 34), i as u32));
        }
        assert_eq!(wheel.len(), N);
        // Cancel every tenth.
        for key in keys.iter().step_by(10) {
            assert!(wheel.cancel(*key).is_some());
        }
        let mut fired = 0;
        let mut last = 0;
        let mut now = 0;
        while let Some(next) = wheel.next_deadline() {
            // A driver that is always 1 ms late.
            now = next.max(now) + 1_000_000;
            fired += wheel.advance(now, |_, deadline, _| {
                assert!(deadline >= last && deadline <= now);
                last = deadline;
            });
        }
        assert_eq!(fired, N - N / 10);
        assert!(wheel.is_empty());
        assert_eq!(wheel.entries.len(), N, "memory is one slab entry per timer");
        let elapsed = start.elapsed();
        assert!(elapsed.as_secs_f64() < 10.0, "took {elapsed:?}");
    }

    /// The reference: pending timers ordered by (deadline, insertion sequence).
    #[derive(Default)]
    struct Model {
        now: u64,
        seq: u64,
        pending: BTreeMap<(u64, u64), TimerKey>,
        by_key: HashMap<TimerKey, (u64, u64)>,
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert {
            kind: u8,
            amount: u64,
        },
        Cancel(usize),
        Deadline(usize),
        Advance {
            kind: u8,
            amount: u64,
            then_next: bool,
        },
        NextDeadline,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..8, any::<u64>()).prop_map(|(kind, amount)| Op::Insert { kind, amount }),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => any::<usize>().prop_map(Op::Deadline),
            3 => (0u8..7, any::<u64>(), any::<bool>())
                .prop_map(|(kind, amount, then_next)| Op::Advance { kind, amount, then_next }),
            2 => Just(Op::NextDeadline),
        ]
    }

    /// A deadline of some kind, relative to `now`.
    fn insert_deadline(now: u64, kind: u8, amount: u64) -> u64 {
        match kind {
            0 => now.saturating_sub(amount % 5_000),
            1 => now.saturating_add(amount % 3_000),
            2 => now.saturating_add(amount % (1 << 22)),
            3 => now.saturating_add(amount % (1 << 36)),
            4 => now.saturating_add(amount % (1 << 50)),
            5 => amount,
            6 => u64::MAX - amount % 3,
            _ => {
                // Near a slot boundary of some level (or of the overflow's blocks).
                let width = slot_width((amount % 8) as u32);
                (now / width)
                    .saturating_add(1 + (amount >> 8) % 3)
                    .saturating_mul(width)
                    .saturating_sub((amount >> 4) % 2)
            }
        }
    }

    /// An advance target of some kind.
    fn advance_target(now: u64, earliest: Option<u64>, kind: u8, amount: u64) -> u64 {
        match kind {
            0 => now.saturating_add(amount % 2_048),
            1 => now.saturating_add(amount % (1 << 24)),
            2 => now.saturating_add(amount % (1 << 40)),
            3 => now.saturating_add(amount % (1 << 52)),
            4 => earliest.unwrap_or(now).saturating_sub(amount % 2),
            5 => now.saturating_sub(amount % 10_000),
            _ if amount.is_multiple_of(8) => u64::MAX,
            _ => now.saturating_add(amount % 1_000),
        }
    }

    fn check_against_model(ops: &[Op]) -> Result<(), TestCaseError> {
        let mut wheel = Wheel::new();
        let mut model = Model::default();
        let mut keys: Vec<TimerKey> = Vec::new();
        for op in ops {
            match *op {
                Op::Insert { kind, amount } => {
                    let deadline = insert_deadline(model.now, kind, amount);
                    let key = wheel.insert(deadline, model.seq);
                    prop_assert!(!model.by_key.contains_key(&key), "key reused while pending");
                    model.pending.insert((deadline, model.seq), key);
                    model.by_key.insert(key, (deadline, model.seq));
                    model.seq += 1;
                    keys.push(key);
                }
                Op::Cancel(i) if !keys.is_empty() => {
                    let key = keys[i % keys.len()];
                    let expected = model.by_key.remove(&key).map(|(deadline, seq)| {
                        model.pending.remove(&(deadline, seq));
                        (deadline, seq)
                    });
                    prop_assert_eq!(wheel.cancel(key), expected);
                }
                Op::Deadline(i) if !keys.is_empty() => {
                    let key = keys[i % keys.len()];
                    let expected = model.by_key.get(&key).map(|&(deadline, _)| deadline);
                    prop_assert_eq!(wheel.deadline(key), expected);
                }
                Op::Cancel(_) | Op::Deadline(_) => {}
                Op::Advance {
                    kind,
                    amount,
                    then_next,
                } => {
                    let earliest = model.pending.keys().next().map(|&(deadline, _)| deadline);
                    let target = advance_target(model.now, earliest, kind, amount);
                    model.now = model.now.max(target);
                    let mut expected = Vec::new();
                    while let Some((&(deadline, seq), _)) = model.pending.first_key_value() {
                        if deadline > model.now {
                            break;
                        }
                        let key = model.pending.remove(&(deadline, seq)).unwrap();
                        model.by_key.remove(&key);
                        expected.push((key, deadline, seq));
                    }
                    let mut fired = Vec::new();
                    let count = wheel.advance(target, |key, deadline, value| {
                        fired.push((key, deadline, value));
                    });
                    prop_assert_eq!(count, fired.len());
                    prop_assert_eq!(fired, expected);
                    prop_assert_eq!(wheel.now(), model.now);
                    if then_next {
                        let expected = model.pending.keys().next().map(|&(deadline, _)| deadline);
                        prop_assert_eq!(wheel.next_deadline(), expected);
                    }
                }
                Op::NextDeadline => {
                    let expected = model.pending.keys().next().map(|&(deadline, _)| deadline);
                    prop_assert_eq!(wheel.next_deadline(), expected);
                }
            }
            prop_assert_eq!(wheel.len(), model.pending.len());
            prop_assert_eq!(wheel.is_empty(), model.pending.is_empty());
        }
        // Drain: everything left fires, in order.
        let expected: Vec<(TimerKey, u64, u64)> = model
            .pending
            .iter()
            .map(|(&(deadline, seq), &key)| (key, deadline, seq))
            .collect();
        let mut fired = Vec::new();
        wheel.advance(u64::MAX, |key, deadline, value| {
            fired.push((key, deadline, value))
        });
        prop_assert_eq!(fired, expected);
        prop_assert!(wheel.is_empty());
        prop_assert_eq!(wheel.next_deadline(), None);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_model(ops in prop::collection::vec(op(), 1..200)) {
            check_against_model(&ops)?;
        }
    }
}
