//! Pids, references and ports on the wire, and the mapping between a
//! remote pid and our 8-byte [`Pid`].
//!
//! A local pid goes out as `NEW_PID_EXT {node, ID = low 32 bits, Serial =
//! high 32 bits, creation}` with this node's name and creation. A pid of any
//! other node (or of an older incarnation of this one) is *interned*: its
//! four wire fields are stored once in a global table, and the [`Pid`] holds
//! the table index under tag 1 (bits 60..64). Each wire pid has exactly one
//! interned index, so the derived `Eq`/`Hash`/`Ord` of `Pid` hold across
//! nodes, and a remote pid is used exactly like a local one.
//!
//! Interned pids are never freed (as BEAM atoms are not); the table is capped
//! at [`MAX_REMOTE_PIDS`], and a connection also budgets how many new ones a
//! peer may create.

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

/// The tag of interned remote pids (bits 60..64 of a [`Pid`]).
pub(crate) const TAG_REMOTE: u64 = 1;
const TAG_SHIFT: u32 = 60;

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
#[allow(dead_code)] // used by the connection layer, which lands next
pub(crate) fn set_this_node(node: Atom, creation: u32) {
    THIS.store(pack_this(node, creation), Ordering::Release);
}

// --------------------------------------------------------------------- pids

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
    fn intern(&self, w: WirePid) -> Result<Pid, RemoteError> {
        let shard = &self.shards[shard(&w)];
        if let Some(&bits) = shard.read().get(&w) {
            return Ok(remote_pid(bits));
        }
        let mut map = shard.write();
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
        let bits = (TAG_REMOTE << TAG_SHIFT) | u64::from(i);
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
    // The tag bit makes `bits` nonzero.
    Pid::from_bits(bits).unwrap_or_else(|| Pid::new(0, 0, 1))
}

/// How many remote pids exist (for a connection's budget of new ones).
#[allow(dead_code)] // used by the connection layer, which lands next
pub(crate) fn remote_pid_count() -> usize {
    interned().next.load(Ordering::Relaxed) as usize
}

/// The pid a wire pid names: a local pid when it carries this node's name
/// and current creation, an interned remote pid otherwise.
pub(crate) fn pid_from_wire(w: WirePid) -> Result<Pid, RemoteError> {
    let (node, creation) = this_node();
    if w.node == node && w.creation == creation {
        let bits = u64::from(w.id) | (u64::from(w.serial) << 32);
        if bits >> TAG_SHIFT == 0
            && let Some(pid) = Pid::from_bits(bits)
        {
            return Ok(pid);
        }
    }
    interned().intern(w)
}

/// The pid a wire pid names if that needs no new table entry: a local pid,
/// or a remote pid that is interned already. `None` when
/// [`pid_from_wire`] would intern it (a decoder budgets those).
pub(crate) fn lookup_pid(w: WirePid) -> Option<Pid> {
    let (node, creation) = this_node();
    if w.node == node && w.creation == creation {
        let bits = u64::from(w.id) | (u64::from(w.serial) << 32);
        if bits >> TAG_SHIFT == 0
            && let Some(pid) = Pid::from_bits(bits)
        {
            return Some(pid);
        }
    }
    interned().shards[shard(&w)]
        .read()
        .get(&w)
        .map(|&bits| remote_pid(bits))
}

/// How `pid` goes on the wire.
pub(crate) fn pid_to_wire(pid: Pid) -> WirePid {
    let bits = pid.to_bits();
    if bits >> TAG_SHIFT == TAG_REMOTE
        && let Some(w) = interned().get(bits & ((1 << TAG_SHIFT) - 1))
    {
        return w;
    }
    let (node, creation) = this_node();
    WirePid {
        node,
        id: bits as u32,
        serial: (bits >> 32) as u32,
        creation,
    }
}

/// True for a pid of another node (or of an older incarnation of this one).
#[allow(dead_code)] // used by the connection layer, which lands next
pub(crate) fn is_remote(pid: Pid) -> bool {
    pid.to_bits() >> TAG_SHIFT != 0
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
            [w0, w1, w2] if self.node == node && self.creation == creation => {
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
        assert!(!is_remote(local));

        // The same pid of an older incarnation is a distinct remote pid.
        let old = pid_from_wire(WirePid { creation: 76, ..w }).unwrap();
        assert!(is_remote(old));
        assert_ne!(old, local);
        assert_eq!(pid_to_wire(old), WirePid { creation: 76, ..w });
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
        assert!(is_remote(a));
        assert_eq!(pid_to_wire(a), w);
        let c = pid_from_wire(WirePid { id: 84, ..w }).unwrap();
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "<'other@127.0.0.1'.83.0>");
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
