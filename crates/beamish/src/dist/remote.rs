//! Pids, references and ports on the wire, and the mapping between a
//! remote pid and our 8-byte [`Pid`].
//!
//! A local pid goes out as `NEW_PID_EXT {node, ID, Serial, creation}` with
//! this node's name and creation, ID being its table index and Serial its
//! slot's serial (see [`local_to_wire`]). A pid of any
//! other node (or of an older incarnation of this one) takes one of two
//! forms, told apart by the tag in bits 60..64:
//!
//! - *compact* (tag 1), the usual one: a 12-bit slot in a table of
//!   `(node, creation)` pairs (bits 48..60), the 32-bit ID (bits 16..48) and
//!   a serial below 2^16 (bits 0..16). OTP's pids fit, so a connection that
//!   hears from millions of short-lived remote processes adds nothing to any
//!   table;
//! - *interned* (tag 2), for the rest (a larger serial, or a node beyond the
//!   4,096 slots): the four wire fields are stored once in a table and the
//!   pid holds the index.
//!
//! A wire pid always maps to the same form (a slot, once made, stays; the
//! slot table, once full, stays full), so the derived `Eq`/`Hash`/`Ord` of
//! `Pid` hold across nodes, and a remote pid is used exactly like a local
//! one.
//!
//! Slots and interned pids are never freed (as BEAM atoms are not); both
//! tables are capped, and a connection budgets how many entries a peer may
//! create ([`lookup_pid`] finds a pid without creating anything).

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use super::Atom;
use crate::{Pid, Ref};

/// How many remote pids one OS process may know.
pub const MAX_REMOTE_PIDS: usize = 1 << 22;

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = MAX_REMOTE_PIDS / CHUNK;
const SHARDS: usize = 16;

/// The tags of remote pids (bits 60..64 of a [`Pid`]).
const TAG_COMPACT: u64 = 1;
const TAG_INTERNED: u64 = 2;
const TAG_SHIFT: u32 = 60;
/// `(node, creation)` slots of compact pids.
const MAX_SLOTS: usize = 1 << 12;
const SLOT_SHIFT: u32 = 48;
const ID_SHIFT: u32 = 16;
const SERIAL_LIMIT: u32 = 1 << 16;

/// A pid as `NEW_PID_EXT` carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WirePid {
    /// The node the process lives on.
    pub node: Atom,
    /// First word (OTP: the process index).
    pub id: u32,
    /// Second word (OTP: the serial).
    pub serial: u32,
    /// The incarnation of the node.
    pub creation: u32,
}

/// A reference as `NEWER_REFERENCE_EXT` carries it: a node, a creation and
/// one to five 32-bit words (OTP uses 3, or 4–5 for some kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtRef {
    /// The node that made the reference.
    pub node: Atom,
    /// The incarnation of that node.
    pub creation: u32,
    len: u8,
    words: [u32; 5],
}

/// A port as `NEW_PORT_EXT` / `V4_PORT_EXT` carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtPort {
    /// The node the port lives on.
    pub node: Atom,
    /// The port number (64 bits with V4_NC).
    pub id: u64,
    /// The incarnation of the node.
    pub creation: u32,
}

/// Why a wire value could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// The table of remote pids is full.
    TooManyPids,
    /// A reference with no words or more than five.
    BadReference,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::TooManyPids => {
                write!(f, "too many remote pids ({MAX_REMOTE_PIDS})")
            }
            RemoteError::BadReference => f.write_str("a reference needs 1 to 5 words"),
        }
    }
}

impl std::error::Error for RemoteError {}

// ----------------------------------------------------------------- this node

/// This node's name (atom index, high 32 bits) and creation (low 32 bits).
/// `nonode@nohost` with creation 0 until distribution starts.
static THIS: AtomicU64 = AtomicU64::new(pack_this(Atom::NONODE, 0));

const fn pack_this(node: Atom, creation: u32) -> u64 {
    ((node.index() as u64) << 32) | creation as u64
}

/// This node's name and creation.
pub(crate) fn this_node() -> (Atom, u32) {
    let v = THIS.load(Ordering::Acquire);
    (Atom::from_index((v >> 32) as u32), v as u32)
}

/// Sets this node's name and creation (when distribution starts or EPMD
/// hands out a new creation). Pids made under an older creation become
/// remote pids of an old incarnation: they reach no process.
pub(crate) fn set_this_node(node: Atom, creation: u32) {
    THIS.store(pack_this(node, creation), Ordering::Release);
}

// --------------------------------------------------------------------- pids

/// The `(node, creation)` pairs of compact pids.
struct Slots {
    map: RwLock<FxHashMap<(Atom, u32), u64>>,
    list: Box<[OnceLock<(Atom, u32)>]>,
    next: AtomicU32,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        map: RwLock::new(FxHashMap::default()),
        list: (0..MAX_SLOTS).map(|_| OnceLock::new()).collect(),
        next: AtomicU32::new(0),
    })
}

impl Slots {
    fn lookup(&self, key: (Atom, u32)) -> Option<u64> {
        self.map.read().get(&key).copied()
    }

    /// The slot of `key`, made if there is room.
    fn get_or_make(&self, key: (Atom, u32)) -> Option<u64> {
        if let Some(slot) = self.lookup(key) {
            return Some(slot);
        }
        let mut map = self.map.write();
        if let Some(&slot) = map.get(&key) {
            return Some(slot);
        }
        let slot = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                ((n as usize) < MAX_SLOTS).then_some(n + 1)
            })
            .ok()?;
        let _ = self.list.get(slot as usize)?.set(key);
        map.insert(key, u64::from(slot));
        Some(u64::from(slot))
    }

    fn get(&self, slot: u64) -> Option<(Atom, u32)> {
        self.list.get(usize::try_from(slot).ok()?)?.get().copied()
    }
}

fn compact(slot: u64, w: WirePid) -> Pid {
    remote_pid(
        (TAG_COMPACT << TAG_SHIFT)
            | (slot << SLOT_SHIFT)
            | (u64::from(w.id) << ID_SHIFT)
            | u64::from(w.serial),
    )
}

struct Interned {
    shards: [RwLock<FxHashMap<WirePid, u64>>; SHARDS],
    chunks: [OnceLock<Box<[OnceLock<WirePid>]>>; CHUNKS],
    next: AtomicU32,
}

fn interned() -> &'static Interned {
    static TABLE: OnceLock<Interned> = OnceLock::new();
    TABLE.get_or_init(|| Interned {
        shards: std::array::from_fn(|_| RwLock::new(FxHashMap::default())),
        chunks: std::array::from_fn(|_| OnceLock::new()),
        next: AtomicU32::new(0),
    })
}

fn shard(w: &WirePid) -> usize {
    (w.id ^ w.serial.rotate_left(7) ^ w.node.index().rotate_left(13)) as usize % SHARDS
}

impl Interned {
    fn lookup(&self, w: &WirePid) -> Option<Pid> {
        self.shards[shard(w)]
            .read()
            .get(w)
            .map(|&bits| remote_pid(bits))
    }

    fn intern(&self, w: WirePid) -> Result<Pid, RemoteError> {
        if let Some(pid) = self.lookup(&w) {
            return Ok(pid);
        }
        let mut map = self.shards[shard(&w)].write();
        if let Some(&bits) = map.get(&w) {
            return Ok(remote_pid(bits));
        }
        let i = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                ((n as usize) < MAX_REMOTE_PIDS).then_some(n + 1)
            })
            .map_err(|_| RemoteError::TooManyPids)?;
        let chunk = self.chunks[i as usize >> CHUNK_BITS]
            .get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        let _ = chunk[i as usize & (CHUNK - 1)].set(w);
        let bits = (TAG_INTERNED << TAG_SHIFT) | u64::from(i);
        map.insert(w, bits);
        Ok(remote_pid(bits))
    }

    fn get(&self, index: u64) -> Option<WirePid> {
        let i = usize::try_from(index).ok()?;
        self.chunks
            .get(i >> CHUNK_BITS)?
            .get()?
            .get(i & (CHUNK - 1))?
            .get()
            .copied()
    }
}

fn remote_pid(bits: u64) -> Pid {
    // The tag bits make `bits` nonzero.
    Pid::from_bits(bits).unwrap_or_else(|| Pid::new(0, 0, 1))
}

/// This node's own pid for `w`, if `w` carries this node's name and current
/// creation.
fn local(w: &WirePid) -> Option<Pid> {
    let (node, creation) = this_node();
    if w.node != node || w.creation != creation {
        return None;
    }
    // The inverse of `local_to_wire`.
    let runtime = (w.id >> 28) | ((w.serial >> 24) << 4);
    let serial = w.serial & 0xFF_FFFF;
    if runtime > 0xFF || serial == 0 {
        return None;
    }
    Some(Pid::new(runtime as u8, w.id & 0x0FFF_FFFF, serial))
}

/// A local pid's wire words, shaped like OTP's own pids: ID is the table
/// index (with the low 4 bits of the runtime id above it), Serial the slot's
/// serial (with the rest of the runtime id above it). So a peer sees small
/// serials, and beamish pids are compact on beamish peers too.
fn local_to_wire(pid: Pid) -> (u32, u32) {
    let runtime = u32::from(pid.runtime());
    (
        pid.index() | ((runtime & 0xF) << 28),
        pid.serial() | ((runtime >> 4) << 24),
    )
}

/// The pid a wire pid names: a local pid when it carries this node's name
/// and current creation, a remote pid otherwise (compact when it fits).
pub(crate) fn pid_from_wire(w: WirePid) -> Result<Pid, RemoteError> {
    if let Some(pid) = local(&w) {
        return Ok(pid);
    }
    if w.serial < SERIAL_LIMIT
        && let Some(slot) = slots().get_or_make((w.node, w.creation))
    {
        return Ok(compact(slot, w));
    }
    interned().intern(w)
}

/// The pid a wire pid names if that needs no new table entry: a local pid,
/// a compact pid of a known `(node, creation)`, or an interned one already
/// known. `None` when [`pid_from_wire`] would make an entry (a decoder
/// budgets those).
pub(crate) fn lookup_pid(w: WirePid) -> Option<Pid> {
    if let Some(pid) = local(&w) {
        return Some(pid);
    }
    if w.serial < SERIAL_LIMIT
        && let Some(slot) = slots().lookup((w.node, w.creation))
    {
        return Some(compact(slot, w));
    }
    interned().lookup(&w)
}

/// Erlang's order of pids (the emulator's `erts_cmp`): by number (serial,
/// then id), then node name, then creation. Total and consistent with
/// `==`: distinct pids have distinct wire forms.
pub(crate) fn cmp_pids(x: Pid, y: Pid) -> std::cmp::Ordering {
    if x == y {
        return std::cmp::Ordering::Equal;
    }
    let (wx, wy) = (pid_to_wire(x), pid_to_wire(y));
    (wx.serial, wx.id)
        .cmp(&(wy.serial, wy.id))
        .then_with(|| wx.node.as_str().cmp(wy.node.as_str()))
        .then_with(|| wx.creation.cmp(&wy.creation))
}

/// How `pid` goes on the wire.
pub(crate) fn pid_to_wire(pid: Pid) -> WirePid {
    let bits = pid.to_bits();
    match bits >> TAG_SHIFT {
        TAG_COMPACT => {
            if let Some((node, creation)) =
                slots().get((bits >> SLOT_SHIFT) & (MAX_SLOTS as u64 - 1))
            {
                return WirePid {
                    node,
                    id: (bits >> ID_SHIFT) as u32,
                    serial: (bits & u64::from(SERIAL_LIMIT - 1)) as u32,
                    creation,
                };
            }
        }
        TAG_INTERNED => {
            if let Some(w) = interned().get(bits & ((1 << TAG_SHIFT) - 1)) {
                return w;
            }
        }
        _ => {}
    }
    let (node, creation) = this_node();
    let (id, serial) = local_to_wire(pid);
    WirePid {
        node,
        id,
        serial,
        creation,
    }
}

/// Writes a remote pid as `<node.id.serial>`.
pub(crate) fn fmt_remote(pid: Pid, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let w = pid_to_wire(pid);
    write!(f, "<{}.{}.{}>", w.node, w.id, w.serial)
}

// --------------------------------------------------------------- references

impl ExtRef {
    /// A reference of `node` with the given words (1 to 5).
    pub fn new(node: Atom, creation: u32, words: &[u32]) -> Result<ExtRef, RemoteError> {
        if words.is_empty() || words.len() > 5 {
            return Err(RemoteError::BadReference);
        }
        let mut w = [0; 5];
        w[..words.len()].copy_from_slice(words);
        Ok(ExtRef {
            node,
            creation,
            len: words.len() as u8,
            words: w,
        })
    }

    /// The words, first word first, as `NEWER_REFERENCE_EXT` orders them.
    pub fn words(&self) -> &[u32] {
        &self.words[..usize::from(self.len)]
    }

    /// The local reference this names, if it was made by this node's
    /// current incarnation.
    pub fn to_local(&self) -> Option<Ref> {
        let (node, creation) = this_node();
        match *self.words() {
            [w0, w1, w2] | [w0, w1, w2, _, _] if self.node == node && self.creation == creation => {
                if w0 >> 18 != 0 || w2 >> 14 != 0 {
                    return None;
                }
                let id = u64::from(w0) | (u64::from(w1) << 18) | (u64::from(w2) << 50);
                Ref::from_bits(id)
            }
            _ => None,
        }
    }
}

impl ExtRef {
    /// `r` as an alias of the local process `owner`: OTP's shape for
    /// process references, the ordinary three words followed by two that
    /// name the owner. A peer that sends to it (`ALIAS_SEND`) reaches
    /// `owner`, whose mailbox takes the message only while the alias is
    /// active.
    pub(crate) fn alias(r: Ref, owner: Pid) -> ExtRef {
        let mut e = ExtRef::from(r);
        let bits = owner.to_bits();
        e.words[3] = bits as u32;
        e.words[4] = (bits >> 32) as u32;
        e.len = 5;
        e
    }

    /// The local process an alias made by [`ExtRef::alias`] names, with the
    /// alias itself; `None` for any other reference.
    pub(crate) fn alias_owner(&self) -> Option<(Pid, Ref)> {
        let r = self.to_local()?;
        match *self.words() {
            [_, _, _, lo, hi] => {
                let pid = Pid::from_bits(u64::from(lo) | (u64::from(hi) << 32))?;
                (!pid.is_remote()).then_some((pid, r))
            }
            _ => None,
        }
    }
}

impl From<Ref> for ExtRef {
    /// Our reference in OTP's ordinary-reference shape: 18 bits, 32 bits,
    /// then the top 14 bits.
    fn from(r: Ref) -> ExtRef {
        let id = r.to_bits();
        let (node, creation) = this_node();
        ExtRef {
            node,
            creation,
            len: 3,
            words: [
                (id & 0x3_FFFF) as u32,
                (id >> 18) as u32,
                (id >> 50) as u32,
                0,
                0,
            ],
        }
    }
}

impl fmt::Display for ExtRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Ref<{}", self.node)?;
        for w in self.words().iter().rev() {
            write!(f, ".{w}")?;
        }
        f.write_str(">")
    }
}

impl fmt::Display for ExtPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Port<{}.{}>", self.node, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests here share the global "this node": each sets it under this lock.
    static THIS_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

    #[test]
    fn local_pids_round_trip_under_the_current_creation_only() {
        let _g = THIS_LOCK.lock();
        let me = Atom::new("me@127.0.0.1").unwrap();
        set_this_node(me, 77);
        let local = Pid::new(3, 12345, 678);
        let w = pid_to_wire(local);
        assert_eq!((w.node, w.creation), (me, 77));
        assert_eq!(pid_from_wire(w).unwrap(), local);
        assert!(!local.is_remote());

        // The same pid of an older incarnation is a distinct remote pid.
        let old = pid_from_wire(WirePid { creation: 76, ..w }).unwrap();
        assert!(old.is_remote());
        assert_ne!(old, local);
        assert_eq!(pid_to_wire(old), WirePid { creation: 76, ..w });
        // Every runtime id and serial maps back; small runtimes keep the
        // serial as OTP would.
        for (rt, index, serial) in [
            (0, 0, 1),
            (15, 7, 65_535),
            (16, 7, 3),
            (255, 0x0FFF_FFFF, 0xFF_FFFF),
        ] {
            let pid = Pid::new(rt, index, serial);
            let w = pid_to_wire(pid);
            assert_eq!(w.id & 0x0FFF_FFFF, index);
            assert_eq!(w.serial & 0xFF_FFFF, serial);
            assert_eq!(pid_from_wire(w).unwrap(), pid);
        }
        assert_eq!(pid_to_wire(Pid::new(1, 42, 5)).serial, 5);
        set_this_node(Atom::NONODE, 0);
    }

    #[test]
    fn remote_pids_are_interned_once() {
        let other = Atom::new("other@127.0.0.1").unwrap();
        let w = WirePid {
            node: other,
            id: 83,
            serial: 0,
            creation: 0xABCD_EF01,
        };
        let a = pid_from_wire(w).unwrap();
        let b = pid_from_wire(w).unwrap();
        assert_eq!(a, b);
        assert!(a.is_remote());
        assert_eq!(pid_to_wire(a), w);
        let c = pid_from_wire(WirePid { id: 84, ..w }).unwrap();
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "<'other@127.0.0.1'.83.0>");
    }

    #[test]
    fn ordinary_remote_pids_are_compact_and_take_no_table_entry() {
        let node = Atom::new("compact@127.0.0.1").unwrap();
        let w = |id, serial| WirePid {
            node,
            id,
            serial,
            creation: 9,
        };
        let first = pid_from_wire(w(1, 0)).unwrap();
        let interned_before = interned().next.load(Ordering::Relaxed);
        for id in 0..10_000u32 {
            let w = w(id.wrapping_mul(2_654_435_761), id % 7);
            // Known at once: the node's slot exists.
            let pid = lookup_pid(w).unwrap();
            assert_eq!(pid_from_wire(w).unwrap(), pid);
            assert_eq!(pid_to_wire(pid), w);
            assert_eq!(pid.to_bits() >> TAG_SHIFT, TAG_COMPACT);
        }
        assert_eq!(interned().next.load(Ordering::Relaxed), interned_before);
        assert_eq!(pid_from_wire(w(1, 0)).unwrap(), first);

        // A serial that does not fit is interned, once.
        let big = w(5, 1 << 20);
        assert_eq!(lookup_pid(big), None);
        let p = pid_from_wire(big).unwrap();
        assert_eq!(p.to_bits() >> TAG_SHIFT, TAG_INTERNED);
        assert_eq!(lookup_pid(big), Some(p));
        assert_eq!(pid_to_wire(p), big);
        assert_ne!(p, pid_from_wire(w(5, 0)).unwrap());

        // A node nobody has mentioned: nothing known until made.
        let fresh = WirePid {
            node: Atom::new("fresh@127.0.0.1").unwrap(),
            id: 1,
            serial: 0,
            creation: 1,
        };
        assert_eq!(lookup_pid(fresh), None);
        let p = pid_from_wire(fresh).unwrap();
        assert_eq!(lookup_pid(fresh), Some(p));
    }

    #[test]
    fn local_refs_round_trip_through_the_wire_shape() {
        let _g = THIS_LOCK.lock();
        let me = Atom::new("me@127.0.0.1").unwrap();
        set_this_node(me, 5);
        for bits in [1u64, 0x3_FFFF, 0x4_0000, u64::MAX, 0x1234_5678_9ABC_DEF0] {
            let r = Ref::from_bits(bits).unwrap();
            let e = ExtRef::from(r);
            assert_eq!(e.words().len(), 3);
            assert!(e.words()[0] < 1 << 18 && e.words()[2] < 1 << 14);
            assert_eq!(e.to_local(), Some(r));
        }
        let r = Ref::new();
        let foreign = ExtRef::new(me, 6, ExtRef::from(r).words()).unwrap();
        assert_eq!(foreign.to_local(), None);
        set_this_node(Atom::NONODE, 0);
    }

    #[test]
    fn bad_references_are_errors() {
        assert_eq!(
            ExtRef::new(Atom::NONODE, 0, &[]),
            Err(RemoteError::BadReference)
        );
        assert_eq!(
            ExtRef::new(Atom::NONODE, 0, &[1; 6]),
            Err(RemoteError::BadReference)
        );
        assert_eq!(
            ExtRef::new(Atom::NONODE, 0, &[1; 5]).unwrap().words(),
            &[1; 5]
        );
    }
}
