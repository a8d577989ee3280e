//! Distribution capability flags (`DFLAG_*` in OTP's `dist.h`).
//!
//! Each node sends its flags in the handshake; a connection then uses the
//! flags both sides set (their AND). Some flags are mandatory: OTP 25 and 26
//! refuse a peer that lacks them, and so do we.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign};

/// A set of distribution flags: a `u64`, as sent in the version 6 handshake.
///
/// ```
/// use beamish::dist::DistFlags;
/// let f = DistFlags::PUBLISHED | DistFlags::UTF8_ATOMS;
/// assert!(f.contains(DistFlags::UTF8_ATOMS));
/// assert!(!f.contains(DistFlags::MAP_TAG));
/// assert_eq!(format!("{f:?}"), "DistFlags(PUBLISHED | UTF8_ATOMS)");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DistFlags(u64);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bits:expr;)*) => {
        impl DistFlags {
            $($(#[$doc])* pub const $name: DistFlags = DistFlags($bits);)*
        }
        /// Every named flag, in bit order, for `Debug`.
        const NAMED: &[(&str, DistFlags)] = &[$((stringify!($name), DistFlags::$name)),*];
    };
}

flags! {
    /// The node is published (visible); a hidden node leaves it out.
    PUBLISHED = 0x1;
    /// The old atom cache (obsolete).
    ATOM_CACHE = 0x2;
    /// References of three 32-bit words. Mandatory.
    EXTENDED_REFERENCES = 0x4;
    /// Process monitors across nodes.
    DIST_MONITOR = 0x8;
    /// Separate tags for funs. Mandatory.
    FUN_TAGS = 0x10;
    /// Monitors of registered names across nodes.
    DIST_MONITOR_NAME = 0x20;
    /// The atom cache of hidden nodes (obsolete).
    HIDDEN_ATOM_CACHE = 0x40;
    /// `NEW_FUN_EXT`. Mandatory.
    NEW_FUN_TAGS = 0x80;
    /// Extended pids and ports. Mandatory.
    EXTENDED_PIDS_PORTS = 0x100;
    /// `EXPORT_EXT`. Mandatory.
    EXPORT_PTR_TAG = 0x200;
    /// `BIT_BINARY_EXT`. Mandatory.
    BIT_BINARIES = 0x400;
    /// `NEW_FLOAT_EXT`. Mandatory.
    NEW_FLOATS = 0x800;
    /// Unicode in the io protocol.
    UNICODE_IO = 0x1000;
    /// The atom cache in the distribution header.
    DIST_HDR_ATOM_CACHE = 0x2000;
    /// `SMALL_ATOM_EXT`.
    SMALL_ATOM_TAGS = 0x4000;
    /// Internal to the BEAM (compressed ETS tables); never on the wire.
    ETS_COMPRESSED = 0x8000;
    /// UTF-8 atoms. Mandatory.
    UTF8_ATOMS = 0x1_0000;
    /// `MAP_EXT`. Mandatory.
    MAP_TAG = 0x2_0000;
    /// 32-bit creations (`NEW_PID_EXT` and friends). Mandatory.
    BIG_CREATION = 0x4_0000;
    /// `SEND_SENDER` instead of `SEND`.
    SEND_SENDER = 0x8_0000;
    /// Any term as a seq-trace label.
    BIG_SEQTRACE_LABELS = 0x10_0000;
    /// Internal to the BEAM (a pending connection); never on the wire.
    PENDING_CONNECT = 0x20_0000;
    /// The `PAYLOAD_*` exit and monitor control messages.
    EXIT_PAYLOAD = 0x40_0000;
    /// Fragmented messages.
    FRAGMENTS = 0x80_0000;
    /// The version 6 handshake (OTP 23). Mandatory since OTP 25.
    HANDSHAKE_23 = 0x100_0000;
    /// The new link protocol (`UNLINK_ID`). Mandatory since OTP 26.
    UNLINK_ID = 0x200_0000;
    /// Shorthand for all of [`DistFlags::MANDATORY_25`] (OTP 25).
    ///
    /// Bit 26, as in `dist.h` and `dist.hrl`; the protocol guide's
    /// `1 bsl 36` is a documentation bug.
    MANDATORY_25_DIGEST = 0x400_0000;
    /// `SPAWN_REQUEST` and `SPAWN_REPLY`.
    SPAWN = 1 << 32;
    /// A request for a dynamic node name (not a capability).
    NAME_ME = 1 << 33;
    /// Larger pids, ports and references (OTP 24). Mandatory since OTP 26.
    V4_NC = 1 << 34;
    /// Process aliases (`ALIAS_SEND`).
    ALIAS = 1 << 35;
    /// Internal to the BEAM (local external format); never on the wire.
    LOCAL_EXT = 1 << 36;
    /// `ALTACT_SIG_SEND` (OTP 28).
    ALTACT_SIG = 1 << 37;
}

impl DistFlags {
    /// The flags OTP 25 requires of a peer.
    pub const MANDATORY_25: DistFlags = DistFlags(
        Self::EXTENDED_REFERENCES.0
            | Self::FUN_TAGS.0
            | Self::EXTENDED_PIDS_PORTS.0
            | Self::UTF8_ATOMS.0
            | Self::NEW_FUN_TAGS.0
            | Self::BIG_CREATION.0
            | Self::NEW_FLOATS.0
            | Self::MAP_TAG.0
            | Self::EXPORT_PTR_TAG.0
            | Self::BIT_BINARIES.0
            | Self::HANDSHAKE_23.0,
    );

    /// The flags OTP 26 added to the mandatory set (`DFLAG_DIST_MANDATORY_26`
    /// in `dist.h`, which holds only the new ones).
    pub const MANDATORY_26: DistFlags = DistFlags(Self::V4_NC.0 | Self::UNLINK_ID.0);

    /// What a peer must have (after [`DistFlags::normalize`]) for us to talk
    /// to it: OTP 26's whole mandatory set, as `DFLAG_DIST_MANDATORY`.
    pub const MANDATORY: DistFlags = DistFlags(Self::MANDATORY_25.0 | Self::MANDATORY_26.0);

    /// The minimum the interop contract asks a node to advertise: the
    /// mandatory set plus publishing and monitors.
    pub const CONTRACT_MIN: DistFlags = DistFlags(0x4_0307_0FBD);

    /// The flags beamish sends.
    pub const OURS: DistFlags = DistFlags(0xD_07DF_7FBD);

    /// The empty set.
    pub const fn empty() -> DistFlags {
        DistFlags(0)
    }

    /// The flags of these bits, named or not (a peer may send bits we do
    /// not know; they are kept so that the AND stays exact).
    pub const fn from_bits(bits: u64) -> DistFlags {
        DistFlags(bits)
    }

    /// The bits, as sent on the wire.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: DistFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags of `self` that are not in `other`.
    pub const fn difference(self, other: DistFlags) -> DistFlags {
        DistFlags(self.0 & !other.0)
    }

    /// The flags a peer really has: OTP 25+ reads
    /// [`DistFlags::MANDATORY_25_DIGEST`] as all of
    /// [`DistFlags::MANDATORY_25`] (`dist_util:expand_mandatory_25_flag`),
    /// so a peer may send the digest bit alone.
    ///
    /// ```
    /// use beamish::dist::DistFlags;
    /// let peer = DistFlags::MANDATORY_25_DIGEST | DistFlags::MANDATORY_26;
    /// assert!(peer.normalize().contains(DistFlags::MANDATORY));
    /// ```
    pub const fn normalize(self) -> DistFlags {
        if self.contains(Self::MANDATORY_25_DIGEST) {
            DistFlags(self.0 | Self::MANDATORY_25.0)
        } else {
            self
        }
    }
}

impl BitOr for DistFlags {
    type Output = DistFlags;
    fn bitor(self, rhs: DistFlags) -> DistFlags {
        DistFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for DistFlags {
    fn bitor_assign(&mut self, rhs: DistFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for DistFlags {
    type Output = DistFlags;
    fn bitand(self, rhs: DistFlags) -> DistFlags {
        DistFlags(self.0 & rhs.0)
    }
}

impl BitAndAssign for DistFlags {
    fn bitand_assign(&mut self, rhs: DistFlags) {
        self.0 &= rhs.0;
    }
}

/// Lists the names of the set flags, then any unnamed bits in hex.
impl fmt::Debug for DistFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DistFlags(")?;
        let mut rest = self.0;
        let mut sep = "";
        for &(name, flag) in NAMED {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                rest &= !flag.0;
                sep = " | ";
            }
        }
        if rest != 0 || sep.is_empty() {
            write!(f, "{sep}{rest:#x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_the_planned_list() {
        let listed = [
            DistFlags::PUBLISHED,
            DistFlags::EXTENDED_REFERENCES,
            DistFlags::DIST_MONITOR,
            DistFlags::FUN_TAGS,
            DistFlags::DIST_MONITOR_NAME,
            DistFlags::NEW_FUN_TAGS,
            DistFlags::EXTENDED_PIDS_PORTS,
            DistFlags::EXPORT_PTR_TAG,
            DistFlags::BIT_BINARIES,
            DistFlags::NEW_FLOATS,
            DistFlags::UNICODE_IO,
            DistFlags::DIST_HDR_ATOM_CACHE,
            DistFlags::SMALL_ATOM_TAGS,
            DistFlags::UTF8_ATOMS,
            DistFlags::MAP_TAG,
            DistFlags::BIG_CREATION,
            DistFlags::SEND_SENDER,
            DistFlags::BIG_SEQTRACE_LABELS,
            DistFlags::EXIT_PAYLOAD,
            DistFlags::FRAGMENTS,
            DistFlags::HANDSHAKE_23,
            DistFlags::UNLINK_ID,
            DistFlags::MANDATORY_25_DIGEST,
            DistFlags::V4_NC,
            DistFlags::SPAWN,
            DistFlags::ALIAS,
        ];
        let all = listed.iter().fold(DistFlags::empty(), |a, &f| a | f);
        assert_eq!(all, DistFlags::OURS);
        assert_eq!(DistFlags::OURS.bits(), 0xD_07DF_7FBD);
    }

    #[test]
    fn ours_meets_the_contract_and_otp_26() {
        assert!(DistFlags::OURS.contains(DistFlags::CONTRACT_MIN));
        assert!(DistFlags::CONTRACT_MIN.contains(DistFlags::MANDATORY));
        // The contract minimum is the mandatory set plus these three.
        assert_eq!(
            DistFlags::CONTRACT_MIN.difference(DistFlags::MANDATORY),
            DistFlags::PUBLISHED | DistFlags::DIST_MONITOR | DistFlags::DIST_MONITOR_NAME
        );
        // Sending the flags themselves, not only the digest bit, also lets
        // OTP versions before 25 read them.
        assert!(DistFlags::OURS.contains(DistFlags::MANDATORY_25));
        assert_eq!(DistFlags::OURS.normalize(), DistFlags::OURS);
    }

    #[test]
    fn values_match_dist_h() {
        assert_eq!(DistFlags::MANDATORY_25_DIGEST.bits(), 1 << 26);
        assert_eq!(DistFlags::MANDATORY_25.bits(), 0x0107_0F94);
        assert_eq!(DistFlags::MANDATORY.bits(), 0x4_0307_0F94);
        assert_eq!(DistFlags::V4_NC.bits(), 0x4_0000_0000);
        // Bits in order, one each, none shared.
        for pair in NAMED.windows(2) {
            assert!(pair[0].1.bits() < pair[1].1.bits(), "{pair:?}");
        }
        assert!(NAMED.iter().all(|(_, f)| f.bits().is_power_of_two()));
    }

    #[test]
    fn normalize_expands_the_digest_bit_only() {
        let digest = DistFlags::MANDATORY_25_DIGEST | DistFlags::MANDATORY_26;
        assert!(!digest.contains(DistFlags::MANDATORY));
        assert!(digest.normalize().contains(DistFlags::MANDATORY));
        assert_eq!(
            digest.normalize(),
            DistFlags::MANDATORY | DistFlags::MANDATORY_25_DIGEST
        );
        assert_eq!(DistFlags::MANDATORY_26.normalize(), DistFlags::MANDATORY_26);
    }

    #[test]
    fn operators_and_debug() {
        let mut f = DistFlags::PUBLISHED | DistFlags::V4_NC;
        assert_eq!(f & DistFlags::V4_NC, DistFlags::V4_NC);
        assert!((f & DistFlags::MAP_TAG).is_empty());
        f |= DistFlags::from_bits(1 << 63);
        assert_eq!(
            format!("{f:?}"),
            "DistFlags(PUBLISHED | V4_NC | 0x8000000000000000)"
        );
        f &= DistFlags::PUBLISHED;
        assert_eq!(f, DistFlags::PUBLISHED);
        assert_eq!(format!("{:?}", DistFlags::empty()), "DistFlags(0x0)");
        assert_eq!(
            DistFlags::OURS.difference(DistFlags::OURS),
            DistFlags::empty()
        );
    }
}
