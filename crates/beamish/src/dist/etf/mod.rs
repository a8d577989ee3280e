//! The external term format: [`Term`] to bytes and back.
//!
//! [`Term::encode`] writes what OTP's `term_to_binary/1` writes for the same
//! term (its canonical forms: the smallest integer tag, UTF-8 atoms,
//! `NEW_FLOAT_EXT`, `STRING_EXT` for short lists of bytes, and so on);
//! [`Term::decode`] reads every tag OTP 25/26 can produce, plus the old
//! ones, and decoding then encoding gives back OTP's bytes.
//!
//! The decoder reads untrusted input: it never panics, never recurses (an
//! explicit stack, bounded by [`DecodeLimits::max_depth`]), and never
//! allocates from a length in the input before checking that the input is
//! long enough to hold that many elements. New atoms and remote pids, which
//! are never freed, are budgeted ([`DecodeLimits`]). Over [`bytes::Bytes`],
//! binaries of 64 bytes or more are slices of the input (no copy).
//!
//! ```
//! use beamish::dist::Term;
//! let t = Term::from((Term::atom("hello").unwrap(), 42));
//! let bytes = t.encode();
//! assert_eq!(bytes, [131, 104, 2, 119, 5, b'h', b'e', b'l', b'l', b'o', 97, 42]);
//! assert_eq!(Term::decode(&bytes).unwrap(), t);
//! ```

use std::fmt;

use bytes::Bytes;

use super::{Atom, AtomError, RemoteError, Term};

mod decode;
mod encode;
pub(crate) mod tags;

/// The default of [`DecodeLimits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 20_000;
/// The default of [`DecodeLimits::max_atoms_created`].
pub const DEFAULT_MAX_ATOMS_CREATED: usize = 10_000;
/// The default of [`DecodeLimits::max_pids_created`].
pub const DEFAULT_MAX_PIDS_CREATED: usize = 100_000;

/// Bounds on what decoding one input may do.
///
/// Memory is bounded by the input without any setting here: every element
/// takes at least one input byte, so the decoder never allocates room for
/// more elements than the input could hold. These limits bound the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// How deeply lists, tuples, maps and funs may nest (default
    /// [`DEFAULT_MAX_DEPTH`]). Decoding itself does not recurse; the limit
    /// protects code that walks the result recursively (a serde visitor, a
    /// user's pattern match). Real messages nest a few levels; the
    /// distribution contract needs 1,000.
    pub max_depth: usize,
    /// How many atoms that do not exist yet the input may create (default
    /// [`DEFAULT_MAX_ATOMS_CREATED`]). Atoms are never freed and their
    /// table is capped ([`MAX_ATOMS`](super::MAX_ATOMS)), so a peer must not
    /// be able to fill it.
    pub max_atoms_created: usize,
    /// How many remote pids that are not known yet the input may create
    /// (default [`DEFAULT_MAX_PIDS_CREATED`]); like atoms, they are never
    /// freed.
    pub max_pids_created: usize,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_atoms_created: DEFAULT_MAX_ATOMS_CREATED,
            max_pids_created: DEFAULT_MAX_PIDS_CREATED,
        }
    }
}

/// Why an input is not a valid encoded term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a term (or a length promises more elements
    /// than the rest of the input could hold).
    Truncated,
    /// The first byte is not the version byte 131.
    BadVersion(u8),
    /// An unknown tag, or a tag where it is not allowed.
    BadTag(u8),
    /// Nesting deeper than [`DecodeLimits::max_depth`].
    TooDeep,
    /// An atom of more than 255 characters.
    AtomTooLong,
    /// The atom table is full.
    Atom(AtomError),
    /// More new atoms than [`DecodeLimits::max_atoms_created`].
    TooManyAtoms,
    /// More new remote pids than [`DecodeLimits::max_pids_created`].
    TooManyPids,
    /// A UTF-8 atom that is not valid UTF-8.
    BadUtf8,
    /// Bytes left after the term.
    TrailingBytes,
    /// A pid or reference that cannot be mapped (see [`RemoteError`]).
    Remote(RemoteError),
    /// A float that is infinite, NaN, or (old format) unreadable.
    BadFloat,
    /// A bitstring with a bit count outside 1..=8 (or bits with no bytes).
    BadBitstring,
    /// A map with the same key twice.
    DuplicateKey,
    /// An `ATOM_CACHE_REF` that the distribution header did not set up.
    BadAtomCacheRef(u8),
    /// A fun with a malformed field.
    BadFun,
    /// A valid tag this decoder does not read: compressed terms (tag 80,
    /// never used by distribution), the removed `FUN_EXT` (117) and the
    /// local format (121).
    Unsupported(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated term"),
            DecodeError::BadVersion(v) => write!(f, "bad version byte {v} (expected 131)"),
            DecodeError::BadTag(t) => write!(f, "bad tag {t}"),
            DecodeError::TooDeep => f.write_str("term nested too deeply"),
            DecodeError::AtomTooLong => f.write_str("atom longer than 255 characters"),
            DecodeError::Atom(e) => write!(f, "{e}"),
            DecodeError::TooManyAtoms => f.write_str("too many new atoms"),
            DecodeError::TooManyPids => f.write_str("too many new remote pids"),
            DecodeError::BadUtf8 => f.write_str("atom is not valid UTF-8"),
            DecodeError::TrailingBytes => f.write_str("bytes left after the term"),
            DecodeError::Remote(e) => write!(f, "{e}"),
            DecodeError::BadFloat => f.write_str("bad float"),
            DecodeError::BadBitstring => f.write_str("bad bitstring"),
            DecodeError::DuplicateKey => f.write_str("map with a duplicate key"),
            DecodeError::BadAtomCacheRef(i) => write!(f, "unknown atom cache reference {i}"),
            DecodeError::BadFun => f.write_str("bad fun"),
            DecodeError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<RemoteError> for DecodeError {
    fn from(e: RemoteError) -> DecodeError {
        DecodeError::Remote(e)
    }
}

/// Why a term cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A binary, list, tuple, map or bignum longer than the format's 32-bit
    /// lengths allow.
    TooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge => f.write_str("term too large for the external format"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl Term {
    /// Decodes `term_to_binary` output (starting with the version byte 131),
    /// with the default [`DecodeLimits`]. The whole input must be one term.
    ///
    /// Binaries are copied out of `input`; [`Term::decode_bytes`] slices
    /// large ones instead.
    pub fn decode(input: &[u8]) -> Result<Term, DecodeError> {
        Term::decode_with(input, &DecodeLimits::default())
    }

    /// [`Term::decode`] with the given limits.
    pub fn decode_with(input: &[u8], limits: &DecodeLimits) -> Result<Term, DecodeError> {
        let mut limits = *limits;
        decode::decode_whole(input, None, &mut limits)
    }

    /// Decodes `term_to_binary` output held in `input`: binaries of 64 bytes
    /// or more become slices of it (no copy; they keep `input` alive).
    pub fn decode_bytes(input: Bytes) -> Result<Term, DecodeError> {
        Term::decode_bytes_with(input, &DecodeLimits::default())
    }

    /// [`Term::decode_bytes`] with the given limits.
    pub fn decode_bytes_with(input: Bytes, limits: &DecodeLimits) -> Result<Term, DecodeError> {
        let mut limits = *limits;
        decode::decode_whole(&input, Some(&input), &mut limits)
    }

    /// Encodes as `term_to_binary/1` does, version byte 131 first.
    ///
    /// # Panics
    ///
    /// If a binary, list, tuple or map is longer than `u32::MAX` (the
    /// format's limit); [`Term::try_encode_into`] returns an error instead.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(encode::size_hint(self));
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding ([`Term::encode`]) to `out`.
    ///
    /// # Panics
    ///
    /// As [`Term::encode`].
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        if let Err(e) = self.try_encode_into(out) {
            panic!("cannot encode term: {e}");
        }
    }

    /// Appends the encoding ([`Term::encode`]) to `out`, or fails if a part
    /// is too large for the format (`out` then holds a partial encoding).
    pub fn try_encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(tags::VERSION);
        encode::encode(self, out)
    }
}

/// Decodes one term of a distribution frame, starting at `pos`, and
/// returns it with the position just after it.
///
/// - `versioned`: the term starts with the version byte 131. True for the
///   terms of a pass-through frame (`112`); false after a distribution
///   header (`131,68`/`69`), where the header's 131 stands for every term
///   that follows (see the External Term Format guide, "Distribution
///   Header").
/// - `refs`: the atoms that this message's `ATOM_CACHE_REF` indices name,
///   as the frame reader returned them (empty for pass-through).
/// - `limits`: the connection's remaining budget; the atoms and pids this
///   term creates are subtracted from it, so one budget can span all the
///   messages of a connection.
///
/// Binaries of 64 bytes or more are slices of `frame`.
pub(crate) fn decode_term_at(
    frame: &Bytes,
    pos: usize,
    versioned: bool,
    refs: &[Atom],
    limits: &mut DecodeLimits,
) -> Result<(Term, usize), DecodeError> {
    decode::decode_at(frame, Some(frame), pos, versioned, refs, limits)
}

/// Appends the encoding of `term` without the version byte: the form of
/// the terms after a distribution header.
pub(crate) fn encode_untagged(term: &Term, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode::encode(term, out)
}
