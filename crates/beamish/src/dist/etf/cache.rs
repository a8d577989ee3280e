//! The incoming atom cache of one connection: the atom-cache part of a
//! distribution header, and what its `ATOM_CACHE_REF`s name.
//!
//! A header lists up to 255 references, each naming one of the
//! connection's 2048 cache slots (8 segments of 256) and, when flagged new,
//! the atom text that now fills the slot. The terms after the header use
//! `ATOM_CACHE_REF <i>` for the i-th reference. [`AtomCache::read_refs`]
//! turns the header into a table of atoms, and
//! [`decode_term_at`](super::decode_term_at) takes that table.

use super::decode::{Cursor, intern_budgeted};
use super::{DecodeError, DecodeLimits};
use crate::dist::Atom;

/// Slots in a connection's atom cache.
pub(crate) const ATOM_CACHE_SIZE: usize = 2048;

/// The atom cache of one incoming connection.
pub(crate) struct AtomCache {
    slots: Box<[Option<Atom>]>,
}

impl AtomCache {
    /// An empty cache (a new connection).
    pub(crate) fn new() -> AtomCache {
        AtomCache {
            slots: vec![None; ATOM_CACHE_SIZE].into_boxed_slice(),
        }
    }

    /// Reads the atom-cache part of a distribution header, which starts at
    /// `pos` with `NumberOfAtomCacheRefs` (just after `131,68`, or after
    /// the sequence and fragment ids of `131,69`). New entries update the
    /// cache, and new atoms are counted against `limits`.
    ///
    /// `refs` is cleared and filled with the atom of each reference, in
    /// order: the table the message's terms index with `ATOM_CACHE_REF`.
    /// (It is a parameter so that a connection reuses one buffer.) Returns
    /// the position after the header.
    pub(crate) fn read_refs(
        &mut self,
        frame: &[u8],
        pos: usize,
        limits: &mut DecodeLimits,
        refs: &mut Vec<Atom>,
    ) -> Result<usize, DecodeError> {
        refs.clear();
        let mut c = Cursor::new(frame, pos);
        let n = usize::from(c.u8()?);
        if n == 0 {
            return Ok(c.pos());
        }
        // Half a byte of flags per reference, plus one for the header's
        // own flags (LongAtoms), rounded up to whole bytes.
        let flags = c.slice(n / 2 + 1)?;
        let nibble = |i: usize| -> u8 {
            let byte = flags.get(i / 2).copied().unwrap_or(0);
            if i.is_multiple_of(2) {
                byte & 0x0F
            } else {
                byte >> 4
            }
        };
        let long_atoms = nibble(n) & 1 != 0;
        refs.reserve(n);
        for i in 0..n {
            let flag = nibble(i);
            let segment = usize::from(flag & 0x07);
            let index = segment * 256 + usize::from(c.u8()?);
            let atom = if flag & 0x08 != 0 {
                let len = if long_atoms {
                    usize::from(c.u16()?)
                } else {
                    usize::from(c.u8()?)
                };
                let text = std::str::from_utf8(c.slice(len)?).map_err(|_| DecodeError::BadUtf8)?;
                let atom = intern_budgeted(text, limits)?;
                if let Some(slot) = self.slots.get_mut(index) {
                    *slot = Some(atom);
                }
                atom
            } else {
                self.slots
                    .get(index)
                    .copied()
                    .flatten()
                    .ok_or(DecodeError::BadAtomCacheRef(i as u8))?
            };
            refs.push(atom);
        }
        Ok(c.pos())
    }
}

impl Default for AtomCache {
    fn default() -> AtomCache {
        AtomCache::new()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::dist::Term;
    use crate::dist::etf::decode_term_at;

    /// The fragmented example of the External Term Format guide: a REG_SEND
    /// of `{call, <pid>, {set_get_state, <<0:1024>>}}` to `reg`, split in
    /// two fragments, with three new atoms and two already cached.
    #[test]
    fn the_guide_example_decodes() {
        let first: &[u8] = &[
            131, 69, 0, 0, 2, 168, 0, 0, 5, 83, 0, 0, 0, 0, 0, 0, 0, 2, // header
            5, 4, 137, 9, 10, 5, 236, 3, 114, 101, 103, 9, 4, 99, 97, 108, 108, 238, 13, 115, 101,
            116, 95, 103, 101, 116, 95, 115, 116, 97, 116, 101, // atom cache
            104, 4, 97, 6, 103, 82, 0, 0, 0, 0, 85, 0, 0, 0, 0, 2, 82, 1, 82, 2, // control
            104, 3, 82, 3, 103, 82, 0, 0, 0, 0, 245, 0, 0, 0, 2, 2, // message...
            104, 2, 82, 4, 109, 0, 0, 0, 128,
        ];
        let mut cache = AtomCache::new();
        // The two cached atoms: segment 4 index 10, segment 0 index 5.
        let node = Atom::new("node@example").unwrap();
        let empty = Atom::EMPTY;
        cache.slots[4 * 256 + 10] = Some(node);
        cache.slots[5] = Some(empty);

        let mut limits = DecodeLimits::default();
        let mut refs = Vec::new();
        let body = cache.read_refs(first, 18, &mut limits, &mut refs).unwrap();
        let names: Vec<&str> = refs.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, ["node@example", "", "reg", "call", "set_get_state"]);
        assert_eq!(cache.slots[256 + 236].map(Atom::as_str), Some("reg"));
        assert_eq!(cache.slots[9].map(Atom::as_str), Some("call"));

        // Reassemble: the rest of the first fragment, then the second.
        let mut frame = first.to_vec();
        frame.extend_from_slice(&[0; 128]);
        let frame = Bytes::from(frame);
        let (control, at) = decode_term_at(&frame, body, false, &refs, &mut limits).unwrap();
        assert_eq!(control.to_string().split(',').next(), Some("{6"));
        assert_eq!(
            control.as_tuple().unwrap()[3].as_atom().unwrap().as_str(),
            "reg"
        );
        let (msg, end) = decode_term_at(&frame, at, false, &refs, &mut limits).unwrap();
        assert_eq!(end, frame.len());
        let [call, _pid, inner] = msg.as_tuple().unwrap() else {
            panic!("{msg}")
        };
        assert_eq!(call.as_atom().unwrap().as_str(), "call");
        let [tag, bin] = inner.as_tuple().unwrap() else {
            panic!("{inner}")
        };
        assert_eq!(tag.as_atom().unwrap().as_str(), "set_get_state");
        assert_eq!(bin, &Term::binary(&[0; 128]));

        // The next message reuses the cached atoms without resending them.
        let again: &[u8] = &[2, 0x01, 0x00, 236, 9];
        let end = cache.read_refs(again, 0, &mut limits, &mut refs).unwrap();
        assert_eq!(end, again.len());
        let names: Vec<&str> = refs.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, ["reg", "call"]);
        let _ = empty;
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut cache = AtomCache::new();
        let mut limits = DecodeLimits::default();
        let mut refs = Vec::new();
        // A reference to an empty slot.
        assert_eq!(
            cache.read_refs(&[1, 0x00, 7], 0, &mut limits, &mut refs),
            Err(DecodeError::BadAtomCacheRef(0))
        );
        // Truncated text.
        assert_eq!(
            cache.read_refs(&[1, 0x08, 7, 5, b'a'], 0, &mut limits, &mut refs),
            Err(DecodeError::Truncated)
        );
        // Long atoms (2-byte lengths) when the header's flag says so.
        let hdr = [1, 0x18, 7, 0, 2, b'o', b'k'];
        assert_eq!(
            cache.read_refs(&hdr, 0, &mut limits, &mut refs),
            Ok(hdr.len())
        );
        assert_eq!(refs, [Atom::OK]);
        // The atom budget applies.
        let mut none = DecodeLimits {
            max_atoms_created: 0,
            ..DecodeLimits::default()
        };
        assert_eq!(
            cache.read_refs(
                &[
                    1, 0x08, 7, 9, b'f', b'r', b'e', b's', b'h', b'_', b'7', b'q', b'z'
                ],
                0,
                &mut none,
                &mut refs
            ),
            Err(DecodeError::TooManyAtoms)
        );
        assert_eq!(cache.read_refs(&[0], 0, &mut limits, &mut refs), Ok(1));
        assert!(refs.is_empty());
    }
}
