//! Frames of a connected distribution channel: the 4-byte length prefix,
//! the distribution header with its atom cache (`131,68`), fragmented
//! messages (`131,69` / `131,70`) and pass-through messages (`112`).
//!
//! Reading is split from term decoding: this module turns the bytes of a
//! connection into complete messages — the atoms the header names, and the
//! body (control message, then the optional payload) — and the codec
//! decodes the body. Every length is checked against what was received and
//! against the connection's limits before anything is buffered.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustc_hash::FxHashMap;

use super::{Atom, AtomError};

use super::etf::tags::VERSION;

/// A distribution header (at the start of a frame).
const DIST_HEADER: u8 = 68;
/// The header of the first fragment of a message.
const DIST_FRAG_HEADER: u8 = 69;
/// The header of a later fragment.
const DIST_FRAG_CONT: u8 = 70;
/// A message without a distribution header (peers without the atom cache).
const PASS_THROUGH: u8 = 112;

/// Entries of a connection's atom cache: 8 segments of 256.
const CACHE_SIZE: usize = 2048;
/// A header names at most 255 atoms.
const MAX_REFS: usize = 255;
/// Peers may create atoms only while the table holds fewer than this: the
/// last quarter of the table is kept for the node itself, whatever peers
/// (authenticated, but perhaps reconnecting again and again) send.
pub(crate) const PEER_ATOM_CEILING: usize = super::MAX_ATOMS / 4 * 3;

/// How many more atoms peers may create, node-wide.
pub(crate) fn peer_atom_room() -> usize {
    PEER_ATOM_CEILING.saturating_sub(Atom::count())
}

/// OTP's fragment size: a payload larger than this goes out in pieces.
pub(crate) const FRAGMENT_SIZE: usize = 64 * 1024;

/// What this module refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A frame longer than the connection accepts.
    TooLarge(usize),
    /// A frame that does not start with a known header.
    BadHeader(u8, u8),
    /// A frame that ends inside its header.
    Truncated,
    /// An atom cache reference to an empty slot.
    UnknownCacheRef(usize),
    /// An atom in a header that is not valid UTF-8 or too long.
    BadAtom,
    /// The atom table refused a new atom.
    Atom(AtomError),
    /// The peer made more new atoms than its budget allows.
    AtomBudget,
    /// A continuation for no open sequence, or a fragment id out of order.
    BadFragment(u64),
    /// Too many fragmented messages open at once, or too many bytes in them.
    TooManyFragments,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes is over the limit"),
            FrameError::BadHeader(a, b) => write!(f, "unknown frame header {a},{b}"),
            FrameError::Truncated => f.write_str("frame ends inside its header"),
            FrameError::UnknownCacheRef(i) => write!(f, "atom cache entry {i} is empty"),
            FrameError::BadAtom => f.write_str("bad atom text in a distribution header"),
            FrameError::Atom(e) => write!(f, "{e}"),
            FrameError::AtomBudget => f.write_str("peer created too many atoms"),
            FrameError::BadFragment(seq) => write!(f, "fragment out of order in sequence {seq}"),
            FrameError::TooManyFragments => f.write_str("too many fragmented messages open"),
        }
    }
}

/// Limits that keep a peer from growing our memory without bound.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The longest frame, and the largest reassembled message.
    pub(crate) max_message: usize,
    /// Fragmented messages open at once.
    pub(crate) max_sequences: usize,
    /// New atoms a peer may create over the life of a connection.
    pub(crate) atom_budget: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message: 128 << 20,
            max_sequences: 1024,
            atom_budget: 100_000,
        }
    }
}

/// A complete message read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message {
    /// The atoms that `ATOM_CACHE_REF` indices in the body name.
    pub(crate) refs: Vec<Atom>,
    /// The control message, then the payload if any. With a distribution
    /// header the terms carry no version byte; pass-through terms do.
    pub(crate) body: Bytes,
    /// True for a pass-through message (`112`): each term starts with 131.
    pub(crate) pass_through: bool,
}

/// A partly received fragmented message.
struct Partial {
    refs: Vec<Atom>,
    next: u64,
    body: BytesMut,
}

/// The read side of a connection: atom cache and open fragment sequences.
pub(crate) struct Reader {
    cache: Box<[Option<Atom>]>,
    partial: FxHashMap<u64, Partial>,
    buffered: usize,
    atoms_made: usize,
    limits: Limits,
}

impl Reader {
    pub(crate) fn new(limits: Limits) -> Reader {
        Reader {
            cache: vec![None; CACHE_SIZE].into_boxed_slice(),
            partial: FxHashMap::default(),
            buffered: 0,
            atoms_made: 0,
            limits,
        }
    }

    /// Takes the next frame out of `buf`, if a whole one is there.
    /// `Ok(Some(None))` is a tick (an empty frame).
    pub(crate) fn next_frame(
        &self,
        buf: &mut BytesMut,
    ) -> Result<Option<Option<Bytes>>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.limits.max_message {
            return Err(FrameError::TooLarge(len));
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        if len == 0 {
            return Ok(Some(None));
        }
        Ok(Some(Some(buf.split_to(len).freeze())))
    }

    /// Interprets one non-empty frame. `None` while a fragmented message is
    /// still incomplete.
    pub(crate) fn message(&mut self, mut frame: Bytes) -> Result<Option<Message>, FrameError> {
        let (a, b) = match (frame.first(), frame.get(1)) {
            (Some(&a), Some(&b)) => (a, b),
            (Some(&PASS_THROUGH), None) | (None, _) => return Err(FrameError::Truncated),
            (Some(&a), None) => return Err(FrameError::BadHeader(a, 0)),
        };
        match (a, b) {
            (PASS_THROUGH, _) => {
                frame.advance(1);
                Ok(Some(Message {
                    refs: Vec::new(),
                    body: frame,
                    pass_through: true,
                }))
            }
            (VERSION, DIST_HEADER) => {
                frame.advance(2);
                let refs = self.header(&mut frame)?;
                Ok(Some(Message {
                    refs,
                    body: frame,
                    pass_through: false,
                }))
            }
            (VERSION, DIST_FRAG_HEADER) => {
                frame.advance(2);
                let (seq, frag) = ids(&mut frame)?;
                let refs = self.header(&mut frame)?;
                if frag == 0 {
                    return Err(FrameError::BadFragment(seq));
                }
                if frag == 1 {
                    return Ok(Some(Message {
                        refs,
                        body: frame,
                        pass_through: false,
                    }));
                }
                if self.partial.len() >= self.limits.max_sequences
                    || self.partial.contains_key(&seq)
                {
                    return Err(FrameError::TooManyFragments);
                }
                self.account(frame.len())?;
                let mut body = BytesMut::with_capacity(frame.len());
                body.put(frame);
                self.partial.insert(
                    seq,
                    Partial {
                        refs,
                        next: frag - 1,
                        body,
                    },
                );
                Ok(None)
            }
            (VERSION, DIST_FRAG_CONT) => {
                frame.advance(2);
                let (seq, frag) = ids(&mut frame)?;
                self.account(frame.len())?;
                let Some(p) = self.partial.get_mut(&seq) else {
                    return Err(FrameError::BadFragment(seq));
                };
                if frag != p.next {
                    return Err(FrameError::BadFragment(seq));
                }
                p.body.put(frame);
                if frag > 1 {
                    p.next -= 1;
                    return Ok(None);
                }
                let Some(p) = self.partial.remove(&seq) else {
                    return Err(FrameError::BadFragment(seq));
                };
                self.buffered -= p.body.len();
                Ok(Some(Message {
                    refs: p.refs,
                    body: p.body.freeze(),
                    pass_through: false,
                }))
            }
            (a, b) => Err(FrameError::BadHeader(a, b)),
        }
    }

    /// Counts bytes held in open sequences against the message limit.
    fn account(&mut self, n: usize) -> Result<(), FrameError> {
        self.buffered += n;
        if self.buffered > self.limits.max_message {
            return Err(FrameError::TooManyFragments);
        }
        Ok(())
    }

    /// Reads `NumberOfAtomCacheRefs`, the flags and the references,
    /// updating the cache; returns the atoms in reference order.
    fn header(&mut self, frame: &mut Bytes) -> Result<Vec<Atom>, FrameError> {
        let n = usize::from(take_u8(frame)?);
        if n == 0 {
            return Ok(Vec::new());
        }
        debug_assert!(n <= MAX_REFS);
        let flag_bytes = n / 2 + 1;
        if frame.len() < flag_bytes {
            return Err(FrameError::Truncated);
        }
        let flags = frame.split_to(flag_bytes);
        let nibble = |i: usize| (flags[i / 2] >> ((i % 2) * 4)) & 0xF;
        let long_atoms = nibble(n) & 1 == 1;
        let mut refs = Vec::with_capacity(n);
        for i in 0..n {
            let f = nibble(i);
            let segment = usize::from(f & 7);
            let slot = segment * 256 + usize::from(take_u8(frame)?);
            if f & 8 != 0 {
                let len = if long_atoms {
                    usize::from(take_u16(frame)?)
                } else {
                    usize::from(take_u8(frame)?)
                };
                if frame.len() < len {
                    return Err(FrameError::Truncated);
                }
                let text = frame.split_to(len);
                let text = std::str::from_utf8(&text).map_err(|_| FrameError::BadAtom)?;
                let atom = match Atom::existing(text) {
                    Some(a) => a,
                    None => {
                        self.atoms_made += 1;
                        if self.atoms_made > self.limits.atom_budget || peer_atom_room() == 0 {
                            return Err(FrameError::AtomBudget);
                        }
                        Atom::new(text).map_err(FrameError::Atom)?
                    }
                };
                self.cache[slot] = Some(atom);
                refs.push(atom);
            } else {
                refs.push(self.cache[slot].ok_or(FrameError::UnknownCacheRef(slot))?);
            }
        }
        Ok(refs)
    }
}

fn take_u8(b: &mut Bytes) -> Result<u8, FrameError> {
    if b.is_empty() {
        return Err(FrameError::Truncated);
    }
    Ok(b.get_u8())
}

fn take_u16(b: &mut Bytes) -> Result<u16, FrameError> {
    if b.len() < 2 {
        return Err(FrameError::Truncated);
    }
    Ok(b.get_u16())
}

fn ids(b: &mut Bytes) -> Result<(u64, u64), FrameError> {
    if b.len() < 16 {
        return Err(FrameError::Truncated);
    }
    Ok((b.get_u64(), b.get_u64()))
}

// ------------------------------------------------------------------ writing

/// How the peer lets us frame messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `112` pass-through, each term with its version byte: a peer without
    /// `DIST_HDR_ATOM_CACHE`.
    PassThrough,
    /// A distribution header naming no cached atoms.
    Header,
    /// The same, and payloads over [`FRAGMENT_SIZE`] in fragments.
    Fragments,
}

/// Appends one message to `out`: `ctrl` and `payload` are terms without
/// their version byte. A payload over [`FRAGMENT_SIZE`] goes out as the
/// fragmented sequence `seq` when the peer takes fragments.
pub(crate) fn write_message(
    out: &mut BytesMut,
    ctrl: &[u8],
    payload: &[u8],
    framing: Framing,
    seq: u64,
) {
    if framing == Framing::PassThrough {
        let versioned = if payload.is_empty() { 1 } else { 2 };
        out.reserve(4 + 1 + versioned + ctrl.len() + payload.len());
        out.put_u32((1 + versioned + ctrl.len() + payload.len()) as u32);
        out.put_slice(&[PASS_THROUGH, VERSION]);
        out.put_slice(ctrl);
        if !payload.is_empty() {
            out.put_u8(VERSION);
            out.put_slice(payload);
        }
        return;
    }
    if framing == Framing::Header || payload.len() <= FRAGMENT_SIZE {
        let len = 3 + ctrl.len() + payload.len();
        out.reserve(4 + len);
        out.put_u32(len as u32);
        out.put_slice(&[VERSION, DIST_HEADER, 0]);
        out.put_slice(ctrl);
        out.put_slice(payload);
        return;
    }
    let chunks: Vec<&[u8]> = payload.chunks(FRAGMENT_SIZE).collect();
    let mut frag = chunks.len() as u64;
    for (i, chunk) in chunks.iter().enumerate() {
        if i == 0 {
            out.put_u32((19 + ctrl.len() + chunk.len()) as u32);
            out.put_slice(&[VERSION, DIST_FRAG_HEADER]);
            out.put_u64(seq);
            out.put_u64(frag);
            out.put_u8(0);
            out.put_slice(ctrl);
        } else {
            out.put_u32((18 + chunk.len()) as u32);
            out.put_slice(&[VERSION, DIST_FRAG_CONT]);
            out.put_u64(seq);
            out.put_u64(frag);
        }
        out.put_slice(chunk);
        frag -= 1;
    }
}

/// Appends a tick (an empty frame).
pub(crate) fn write_tick(out: &mut BytesMut) {
    out.put_u32(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mut buf: BytesMut, reader: &mut Reader) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(frame) = reader.next_frame(&mut buf).unwrap() {
            if let Some(frame) = frame
                && let Some(m) = reader.message(frame).unwrap()
            {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn plain_messages_and_ticks_round_trip() {
        let mut buf = BytesMut::new();
        write_tick(&mut buf);
        write_message(&mut buf, b"ctrl", b"payload", Framing::Fragments, 1);
        write_tick(&mut buf);
        let msgs = frames(buf, &mut Reader::new(Limits::default()));
        assert_eq!(msgs.len(), 1);
        assert_eq!(&msgs[0].body[..], b"ctrlpayload");
        assert!(msgs[0].refs.is_empty());
    }

    #[test]
    fn large_payloads_are_fragmented_only_when_the_peer_allows() {
        let payload: Vec<u8> = (0..FRAGMENT_SIZE * 3 + 5).map(|i| i as u8).collect();
        let mut buf = BytesMut::new();
        write_message(&mut buf, b"c", &payload, Framing::Fragments, 9);
        assert_eq!(
            u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
            19 + 1 + FRAGMENT_SIZE
        );
        let msgs = frames(buf, &mut Reader::new(Limits::default()));
        assert_eq!(msgs.len(), 1);
        assert_eq!(&msgs[0].body[..1], b"c");
        assert_eq!(&msgs[0].body[1..], &payload[..]);

        let mut buf = BytesMut::new();
        write_message(&mut buf, b"c", &payload, Framing::Header, 9);
        assert_eq!(buf[4..6], [VERSION, DIST_HEADER]);
        assert_eq!(
            frames(buf, &mut Reader::new(Limits::default()))[0]
                .body
                .len(),
            payload.len() + 1
        );
    }

    /// The example of OTP's "External Term Format" guide: a fragmented
    /// message with five atom cache references, three of them new.
    #[test]
    fn decodes_the_guides_fragmented_example() {
        let mut cache = Reader::new(Limits::default());
        // Slots of the two already-cached atoms (flags 0100 and 0000:
        // segment 4 index 10, segment 0 index 5).
        cache.cache[4 * 256 + 10] = Some(Atom::new("to@host").unwrap());
        cache.cache[5] = Some(Atom::new("from@host").unwrap());
        let start: &[u8] = &[
            131, 69, 0, 0, 2, 168, 0, 0, 5, 83, 0, 0, 0, 0, 0, 0, 0, 2, 5, 4, 137, 9, 10, 5, 236,
            3, 114, 101, 103, 9, 4, 99, 97, 108, 108, 238, 13, 115, 101, 116, 95, 103, 101, 116,
            95, 115, 116, 97, 116, 101, 104, 4,
        ];
        assert!(cache.message(Bytes::from_static(start)).unwrap().is_none());
        let cont: &[u8] = &[
            131, 70, 0, 0, 2, 168, 0, 0, 5, 83, 0, 0, 0, 0, 0, 0, 0, 1, 97, 6,
        ];
        let m = cache.message(Bytes::from_static(cont)).unwrap().unwrap();
        let names: Vec<&str> = m.refs.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            ["to@host", "from@host", "reg", "call", "set_get_state"]
        );
        assert_eq!(&m.body[..], &[104, 4, 97, 6]);
        // The new entries are cached for later headers: 3 refs to them
        // (segments 1, 0, 1; then the LongAtoms nibble, clear).
        let again: &[u8] = &[131, 68, 3, 0x01, 0x01, 236, 9, 238];
        let m = cache.message(Bytes::from_static(again)).unwrap().unwrap();
        let names: Vec<&str> = m.refs.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, ["reg", "call", "set_get_state"]);
    }

    #[test]
    fn pass_through_frames_carry_a_version_byte_per_term() {
        let mut buf = BytesMut::new();
        write_message(&mut buf, b"c", b"p", Framing::PassThrough, 1);
        write_message(&mut buf, b"c", b"", Framing::PassThrough, 2);
        assert_eq!(
            &buf[..],
            &[
                0, 0, 0, 5, 112, 131, b'c', 131, b'p', 0, 0, 0, 3, 112, 131, b'c'
            ]
        );
        let msgs = frames(buf, &mut Reader::new(Limits::default()));
        assert_eq!(&msgs[0].body[..], &[131, b'c', 131, b'p']);
        assert!(msgs[0].pass_through);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut r = Reader::new(Limits {
            max_message: 1000,
            max_sequences: 2,
            atom_budget: 1,
        });
        let mut huge = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xF0, 1][..]);
        assert_eq!(
            r.next_frame(&mut huge),
            Err(FrameError::TooLarge(0xFFFF_FFF0))
        );
        assert!(huge.capacity() < 1000);
        for bad in [
            &[1u8, 2][..],
            &[131, 99],
            &[131],
            &[131, 68, 1],
            &[131, 68, 1, 0, 7],
        ] {
            assert!(r.message(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        // A reference to an empty cache slot.
        assert_eq!(
            r.message(Bytes::from_static(&[131, 68, 1, 0, 7])),
            Err(FrameError::UnknownCacheRef(7))
        );
        // Continuation of nothing; fragment ids that skip.
        let cont = |seq: u8, frag: u8| {
            let mut v = vec![131, 70, 0, 0, 0, 0, 0, 0, 0, seq, 0, 0, 0, 0, 0, 0, 0, frag];
            v.push(0);
            Bytes::from(v)
        };
        assert_eq!(r.message(cont(1, 1)), Err(FrameError::BadFragment(1)));
        let start = |seq: u8, frag: u8| {
            Bytes::from(vec![
                131, 69, 0, 0, 0, 0, 0, 0, 0, seq, 0, 0, 0, 0, 0, 0, 0, frag, 0, 1,
            ])
        };
        assert_eq!(r.message(start(1, 3)), Ok(None));
        assert_eq!(r.message(cont(1, 1)), Err(FrameError::BadFragment(1)));
        assert_eq!(r.message(start(2, 3)), Ok(None));
        assert_eq!(r.message(start(3, 3)), Err(FrameError::TooManyFragments));
        // An atom flood past the budget.
        let new_atom = |name: &[u8]| {
            let mut v = vec![131, 68, 1, 0x08, 0, name.len() as u8];
            v.extend_from_slice(name);
            Bytes::from(v)
        };
        assert!(r.message(new_atom(b"flood_atom_one_91c")).is_ok());
        assert_eq!(
            r.message(new_atom(b"flood_atom_two_91c")),
            Err(FrameError::AtomBudget)
        );
        assert_eq!(Atom::existing("flood_atom_two_91c"), None);
    }
}
