//! Process identifiers.
//!
//! A [`Pid`] is 8 bytes and `Copy`. It packs, from the low bits up:
//!
//! | bits   | field   | meaning                                                         |
//! |--------|---------|-----------------------------------------------------------------|
//! | 0..28  | index   | slot in the runtime's process table (268 million slots)          |
//! | 28..52 | serial  | bumped each time the slot is reused, so a stale pid never reaches |
//! |        |         | the newer process that took its slot                             |
//! | 52..60 | runtime | which runtime of this OS process owns the slot (256 at once)      |
//! | 60..64 | tag     | 0 for local pids; 1 for a remote pid, whose low bits then index  |
//! |        |         | the table of interned remote pids (see `dist`)                    |
//!
//! A slot is reused only after the runtime has handed out at least
//! [`crate::process::table::REUSE_DEPTH`] other freed slots on the same
//! scheduler, so the 24-bit serial wraps after billions of spawns, not millions.

use std::fmt;
use std::num::NonZeroU64;

pub(crate) const INDEX_BITS: u32 = 28;
pub(crate) const SERIAL_BITS: u32 = 24;
pub(crate) const RUNTIME_BITS: u32 = 8;
pub(crate) const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
pub(crate) const SERIAL_MASK: u64 = (1 << SERIAL_BITS) - 1;
pub(crate) const RUNTIME_MASK: u64 = (1 << RUNTIME_BITS) - 1;
const SERIAL_SHIFT: u32 = INDEX_BITS;
const RUNTIME_SHIFT: u32 = INDEX_BITS + SERIAL_BITS;

/// The identifier of a process: where to send messages and signals.
///
/// Sending to the pid of a process that has exited is silently dropped, as in
/// Erlang. A pid stays valid as a value forever; it never reaches a newer
/// process that reused its slot.
///
/// ```
/// let rt = beamish::Runtime::new().unwrap();
/// let me = rt.block_on(async { beamish::self_pid() }).unwrap();
/// assert_eq!(std::mem::size_of_val(&me), 8);
/// println!("{me}"); // <0.1.1>-style: runtime.index.serial
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Pid(NonZeroU64);

impl Pid {
    /// Builds a local pid. `serial` must be nonzero (serial 0 is never used).
    pub(crate) fn new(runtime: u8, index: u32, serial: u32) -> Pid {
        debug_assert!(u64::from(index) <= INDEX_MASK);
        debug_assert!(serial != 0 && u64::from(serial) <= SERIAL_MASK);
        let bits = (u64::from(index) & INDEX_MASK)
            | ((u64::from(serial) & SERIAL_MASK) << SERIAL_SHIFT)
            | ((u64::from(runtime) & RUNTIME_MASK) << RUNTIME_SHIFT);
        // Serial is nonzero, so the bits are nonzero.
        Pid(NonZeroU64::new(bits).unwrap_or(NonZeroU64::MIN))
    }

    /// The slot of this pid in its runtime's process table.
    pub(crate) fn index(self) -> u32 {
        (self.0.get() & INDEX_MASK) as u32
    }

    /// The slot's generation.
    pub(crate) fn serial(self) -> u32 {
        ((self.0.get() >> SERIAL_SHIFT) & SERIAL_MASK) as u32
    }

    /// The runtime that owns this pid.
    pub(crate) fn runtime(self) -> u8 {
        ((self.0.get() >> RUNTIME_SHIFT) & RUNTIME_MASK) as u8
    }

    /// Rebuilds a pid from [`Pid::to_bits`]; `None` for 0.
    pub(crate) fn from_bits(bits: u64) -> Option<Pid> {
        NonZeroU64::new(bits).map(Pid)
    }

    /// The raw 64-bit form (stable within one OS process).
    pub fn to_bits(self) -> u64 {
        self.0.get()
    }

    /// The same slot with the next serial: the pid its next occupant gets.
    pub(crate) fn next_serial(self) -> Pid {
        let serial = match self.serial() + 1 {
            s if u64::from(s) > SERIAL_MASK => 1,
            s => s,
        };
        Pid::new(self.runtime(), self.index(), serial)
    }
}

impl Pid {
    /// True for a pid of another node (a local pid otherwise).
    pub fn is_remote(self) -> bool {
        self.0.get() >> 60 != 0
    }

    /// The node this pid lives on (`nonode@nohost` while this node is not
    /// distributed).
    #[cfg(feature = "dist")]
    pub fn node(self) -> crate::dist::Atom {
        crate::dist::remote::pid_to_wire(self).node
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "dist")]
        if self.is_remote() {
            return crate::dist::remote::fmt_remote(*self, f);
        }
        write!(f, "<{}.{}.{}>", self.runtime(), self.index(), self.serial())
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let p = Pid::new(7, INDEX_MASK as u32, SERIAL_MASK as u32);
        assert_eq!(p.runtime(), 7);
        assert_eq!(p.index(), INDEX_MASK as u32);
        assert_eq!(p.serial(), SERIAL_MASK as u32);
        assert_eq!(std::mem::size_of::<Pid>(), 8);
        assert_eq!(std::mem::size_of::<Option<Pid>>(), 8);
    }

    #[test]
    fn serial_wraps_past_zero() {
        let p = Pid::new(1, 5, SERIAL_MASK as u32).next_serial();
        assert_eq!(p.serial(), 1);
        assert_eq!(p.index(), 5);
        assert_ne!(p, Pid::new(1, 5, SERIAL_MASK as u32));
    }

    #[test]
    fn display_is_erlang_like() {
        assert_eq!(Pid::new(0, 42, 3).to_string(), "<0.42.3>");
    }
}
