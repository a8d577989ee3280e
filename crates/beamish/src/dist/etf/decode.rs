//! The decoder: one loop over the input with an explicit stack of the
//! containers still open.
//!
//! Safety against hostile input rests on one invariant: `pending`, the
//! number of elements that open containers still expect, never exceeds the
//! bytes left (each element takes at least one byte). A container is
//! opened, and its vector allocated, only after that check, so allocations
//! are bounded by the input length, and a length of 2^32 in a short input
//! fails at once.

use std::cell::Cell;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use rustc_hash::FxHasher;

use super::tags::*;
use super::{DecodeError, DecodeLimits};
use crate::Pid;
use crate::dist::remote::{self, WirePid};
use crate::dist::term::{BigInt, Fun};
use crate::dist::{Atom, AtomError, ExtPort, ExtRef, MAX_ATOM_CHARS, Term};

type Result<T> = std::result::Result<T, DecodeError>;

/// Binaries at least this long are slices of a shared input; shorter ones
/// are copied, so that a small binary does not keep a large frame alive
/// (the BEAM draws its heap/refc line at the same size).
const ZERO_COPY_MIN: usize = 64;

/// Decodes a whole input: version byte, one term, nothing after.
pub(super) fn decode_whole(
    input: &[u8],
    shared: Option<&Bytes>,
    limits: &mut DecodeLimits,
) -> Result<Term> {
    let (term, end) = decode_at(input, shared, 0, true, &[], limits)?;
    if end != input.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(term)
}

/// Decodes one term at `pos` (see `etf::decode_term_at`). `shared`, when
/// given, holds the same bytes as `input`.
pub(super) fn decode_at(
    input: &[u8],
    shared: Option<&Bytes>,
    pos: usize,
    versioned: bool,
    refs: &[Atom],
    limits: &mut DecodeLimits,
) -> Result<(Term, usize)> {
    let mut d = Decoder {
        c: Cursor::new(input, pos),
        shared,
        refs,
        limits,
        stack: Vec::new(),
        pending: 0,
    };
    if versioned {
        let v = d.u8()?;
        if v != VERSION {
            return Err(DecodeError::BadVersion(v));
        }
    }
    let term = d.term()?;
    Ok((term, d.c.pos))
}

/// A closure's fields, waiting for its free variables.
struct FunHead {
    module: Atom,
    arity: u8,
    uniq: [u8; 16],
    index: u32,
    old_index: i64,
    old_uniq: i64,
    pid: Pid,
}

/// An open container. `left` counts the elements still to come.
enum Frame {
    Tuple {
        items: Vec<Term>,
        left: usize,
    },
    /// The elements, then the tail as the last item.
    List {
        items: Vec<Term>,
        left: usize,
    },
    Map {
        pairs: Vec<(Term, Term)>,
        key: Option<Term>,
        left: usize,
    },
    Fun {
        head: Box<FunHead>,
        free: Vec<Term>,
        left: usize,
    },
}

struct Decoder<'a, 'l> {
    c: Cursor<'a>,
    shared: Option<&'a Bytes>,
    refs: &'a [Atom],
    limits: &'l mut DecodeLimits,
    stack: Vec<Frame>,
    /// Elements the open containers still expect, not yet started.
    pending: usize,
}

/// A reading position in an input; every read is bounds-checked.
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Cursor<'a> {
        Cursor { data, pos }
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    #[inline]
    pub(super) fn u8(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.slice(N)?;
        <[u8; N]>::try_from(s).map_err(|_| DecodeError::Truncated)
    }

    #[inline]
    pub(super) fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_be_bytes)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    #[inline]
    pub(super) fn slice(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
}

impl<'a> Decoder<'a, '_> {
    #[inline]
    fn remaining(&self) -> usize {
        self.c.remaining()
    }

    #[inline]
    fn u8(&mut self) -> Result<u8> {
        self.c.u8()
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.c.array()
    }

    #[inline]
    fn u16(&mut self) -> Result<u16> {
        self.c.u16()
    }

    #[inline]
    fn u32(&mut self) -> Result<u32> {
        self.c.u32()
    }

    #[inline]
    fn len32(&mut self) -> Result<usize> {
        self.c.u32().map(|n| n as usize)
    }

    #[inline]
    fn slice(&mut self, n: usize) -> Result<&'a [u8]> {
        self.c.slice(n)
    }

    /// `n` bytes as `Bytes`: a slice of the shared input when large enough.
    fn bytes(&mut self, n: usize) -> Result<Bytes> {
        let start = self.c.pos;
        let s = self.slice(n)?;
        Ok(match self.shared {
            Some(b) if n >= ZERO_COPY_MIN && start + n <= b.len() => b.slice(start..start + n),
            _ if n == 0 => Bytes::new(),
            _ => Bytes::copy_from_slice(s),
        })
    }

    // ------------------------------------------------------------ atoms

    fn atom(&mut self) -> Result<Atom> {
        let tag = self.u8()?;
        self.atom_of(tag)
    }

    fn atom_of(&mut self, tag: u8) -> Result<Atom> {
        match tag {
            SMALL_ATOM_UTF8 => {
                let n = usize::from(self.u8()?);
                self.utf8_atom(n)
            }
            ATOM_UTF8 => {
                let n = usize::from(self.u16()?);
                self.utf8_atom(n)
            }
            ATOM => {
                let n = usize::from(self.u16()?);
                if n > MAX_ATOM_CHARS {
                    return Err(DecodeError::AtomTooLong);
                }
                self.latin1_atom(n)
            }
            SMALL_ATOM => {
                let n = usize::from(self.u8()?);
                self.latin1_atom(n)
            }
            ATOM_CACHE_REF => {
                let i = self.u8()?;
                self.refs
                    .get(usize::from(i))
                    .copied()
                    .ok_or(DecodeError::BadAtomCacheRef(i))
            }
            t => Err(DecodeError::BadTag(t)),
        }
    }

    fn utf8_atom(&mut self, n: usize) -> Result<Atom> {
        let raw = self.slice(n)?;
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError::BadUtf8)?;
        self.intern(text)
    }

    fn latin1_atom(&mut self, n: usize) -> Result<Atom> {
        let raw = self.slice(n)?;
        match std::str::from_utf8(raw) {
            Ok(ascii) if raw.is_ascii() => self.intern(ascii),
            _ => {
                let text: String = raw.iter().map(|&b| char::from(b)).collect();
                self.intern(&text)
            }
        }
    }

    fn intern(&mut self, text: &str) -> Result<Atom> {
        intern_budgeted(text, self.limits)
    }

    // --------------------------------------------- pids, refs and ports

    fn pid_of(&mut self, tag: u8) -> Result<Pid> {
        let node = self.atom()?;
        let id = self.u32()?;
        let serial = self.u32()?;
        let creation = if tag == NEW_PID {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        let w = WirePid {
            node,
            id,
            serial,
            creation,
        };
        if let Some(pid) = remote::lookup_pid(w) {
            return Ok(pid);
        }
        if self.limits.max_pids_created == 0 {
            return Err(DecodeError::TooManyPids);
        }
        let pid = remote::pid_from_wire(w)?;
        self.limits.max_pids_created -= 1;
        Ok(pid)
    }

    fn port_of(&mut self, tag: u8) -> Result<ExtPort> {
        let node = self.atom()?;
        let (id, creation) = match tag {
            V4_PORT => (self.array().map(u64::from_be_bytes)?, self.u32()?),
            NEW_PORT => (u64::from(self.u32()?), self.u32()?),
            _ => (u64::from(self.u32()?), u32::from(self.u8()?)),
        };
        Ok(ExtPort { node, id, creation })
    }

    fn ref_of(&mut self, tag: u8) -> Result<ExtRef> {
        let mut words = [0u32; 5];
        if tag == REFERENCE {
            let node = self.atom()?;
            words[0] = self.u32()?;
            let creation = u32::from(self.u8()?);
            return Ok(ExtRef::new(node, creation, &words[..1])?);
        }
        let len = usize::from(self.u16()?);
        let node = self.atom()?;
        let creation = if tag == NEWER_REFERENCE {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        let words = words
            .get_mut(..len)
            .filter(|w| !w.is_empty())
            .ok_or(DecodeError::Remote(remote::RemoteError::BadReference))?;
        for w in words.iter_mut() {
            *w = self.u32()?;
        }
        Ok(ExtRef::new(node, creation, words)?)
    }

    // --------------------------------------------------------- numbers

    /// `SMALL_BIG_EXT`/`LARGE_BIG_EXT` after the length: an `Int` when the
    /// value fits an `i64` (as OTP normalises), else a `Big`.
    fn big(&mut self, n: usize) -> Result<Term> {
        let negative = self.u8()? != 0;
        let digits = self.slice(n)?;
        if n <= 8 {
            let mut le = [0u8; 8];
            for (d, s) in le.iter_mut().zip(digits) {
                *d = *s;
            }
            let m = u64::from_le_bytes(le);
            if !negative && m <= i64::MAX as u64 {
                return Ok(Term::Int(m as i64));
            }
            if negative && m <= 1 << 63 {
                return Ok(Term::Int((m as i64).wrapping_neg()));
            }
        }
        Ok(Term::from(BigInt::from_le_bytes(negative, digits)))
    }

    /// An integer field of a fun (`SMALL_INTEGER_EXT`, `INTEGER_EXT`, or a
    /// small bignum).
    fn fun_int(&mut self) -> Result<i64> {
        let t = match self.u8()? {
            SMALL_INTEGER => Term::Int(i64::from(self.u8()?)),
            INTEGER => Term::Int(i64::from(i32::from_be_bytes(self.array()?))),
            SMALL_BIG => {
                let n = usize::from(self.u8()?);
                self.big(n)?
            }
            _ => return Err(DecodeError::BadFun),
        };
        match t {
            Term::Int(i) => Ok(i),
            _ => Err(DecodeError::BadFun),
        }
    }

    /// `FLOAT_EXT`: 31 bytes of `%.20e` text, NUL-padded.
    fn old_float(&mut self) -> Result<f64> {
        let raw = self.slice(31)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let text = std::str::from_utf8(raw.get(..end).unwrap_or_default())
            .map_err(|_| DecodeError::BadFloat)?;
        let f: f64 = text.trim().parse().map_err(|_| DecodeError::BadFloat)?;
        if f.is_finite() {
            Ok(f)
        } else {
            Err(DecodeError::BadFloat)
        }
    }

    // ------------------------------------------------------ containers

    /// Checks that `elements` more elements can fit in the input and that
    /// one more level of nesting is allowed, before anything is allocated.
    fn reserve(&mut self, elements: usize) -> Result<()> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(DecodeError::TooDeep);
        }
        let pending = self
            .pending
            .checked_add(elements)
            .ok_or(DecodeError::Truncated)?;
        if pending > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        self.pending = pending;
        Ok(())
    }

    fn open_tuple(&mut self, n: usize) -> Result<Option<Term>> {
        if n == 0 {
            return Ok(Some(Term::Tuple(Vec::new())));
        }
        self.reserve(n)?;
        self.stack.push(Frame::Tuple {
            items: Vec::with_capacity(n),
            left: n,
        });
        Ok(None)
    }

    /// Hands a finished value to the open container, closing every
    /// container it completes; returns the root once it is complete.
    fn deliver(&mut self, mut value: Term) -> Result<Option<Term>> {
        loop {
            let left = match self.stack.last_mut() {
                None => return Ok(Some(value)),
                Some(Frame::Tuple { items, left })
                | Some(Frame::List { items, left })
                | Some(Frame::Fun {
                    free: items, left, ..
                }) => {
                    items.push(value);
                    left
                }
                Some(Frame::Map { pairs, key, left }) => {
                    match key.take() {
                        None => *key = Some(value),
                        Some(k) => pairs.push((k, value)),
                    }
                    left
                }
            };
            *left = left.saturating_sub(1);
            if *left > 0 {
                return Ok(None);
            }
            value = self.close_top()?;
        }
    }

    /// Closes the container at the top of the stack, which has all its
    /// elements, and hands it to its parent ([`Decoder::deliver`]).
    fn close_complete(&mut self) -> Result<Option<Term>> {
        let value = self.close_top()?;
        self.deliver(value)
    }

    /// Pops the top container and builds its term.
    fn close_top(&mut self) -> Result<Term> {
        Ok(match self.stack.pop() {
            Some(Frame::Tuple { items, .. }) => Term::Tuple(items),
            Some(Frame::List { mut items, .. }) => {
                let tail = items.pop().unwrap_or(Term::Nil);
                if items.is_empty() {
                    // `LIST_EXT` of no elements: just its tail.
                    tail
                } else if tail.is_nil() {
                    Term::List(items)
                } else {
                    // OTP never nests a list in a tail; if a peer does, the
                    // list stays split (equal to the flat list, and encoded
                    // flat) instead of copying elements around, which could
                    // cost time quadratic in the depth.
                    Term::Improper(items, Box::new(tail))
                }
            }
            Some(Frame::Map { pairs, .. }) => {
                if has_duplicate_keys(&pairs) {
                    return Err(DecodeError::DuplicateKey);
                }
                Term::Map(pairs)
            }
            Some(Frame::Fun { head, free, .. }) => closure(*head, free),
            // Not reached: callers close only a container that is there.
            None => Term::Nil,
        })
    }

    /// The fast path: reads integers, floats, `[]` and known atoms straight
    /// into the open tuple or list, without a turn of the main loop each
    /// (lists of numbers decode twice as fast). Stops at anything else, including
    /// input that is short or invalid, which the main loop then reports.
    /// Returns whether the container got all its elements.
    #[inline]
    fn fill_leaves(&mut self) -> bool {
        let Decoder {
            c,
            stack,
            pending,
            refs,
            ..
        } = self;
        let (items, left) = match stack.last_mut() {
            Some(Frame::Tuple { items, left }) | Some(Frame::List { items, left }) => (items, left),
            _ => return false,
        };
        let data = c.data;
        let mut pos = c.pos;
        'fill: while *left > 0 {
            // Runs of integers first, in a loop of their own.
            while *left > 0 {
                let i = match data.get(pos) {
                    Some(&SMALL_INTEGER) => match data.get(pos + 1) {
                        Some(&b) => {
                            pos += 2;
                            i64::from(b)
                        }
                        None => break 'fill,
                    },
                    Some(&INTEGER) => match data.get(pos + 1..pos + 5) {
                        Some(&[a, b, c, d]) => {
                            pos += 5;
                            i64::from(i32::from_be_bytes([a, b, c, d]))
                        }
                        _ => break 'fill,
                    },
                    _ => break,
                };
                put_int(items, i);
                *left = left.saturating_sub(1);
                *pending = pending.saturating_sub(1);
            }
            if *left == 0 {
                break;
            }
            match data.get(pos) {
                Some(&NEW_FLOAT) => match data.get(pos + 1..pos + 9) {
                    Some(s) => match <[u8; 8]>::try_from(s).map(f64::from_be_bytes) {
                        Ok(f) if f.is_finite() => {
                            pos += 9;
                            put_float(items, f);
                        }
                        _ => break,
                    },
                    None => break,
                },
                Some(&NIL) => {
                    pos += 1;
                    items.push(Term::Nil);
                }
                // Atoms that exist already (creating one is budgeted: the
                // main loop does that).
                Some(&SMALL_ATOM_UTF8) => {
                    let len = data.get(pos + 1).map_or(0, |&n| usize::from(n));
                    let atom = data
                        .get(pos + 2..pos + 2 + len)
                        .and_then(|raw| std::str::from_utf8(raw).ok())
                        .and_then(existing_atom);
                    match atom {
                        Some(a) => {
                            pos += 2 + len;
                            put_atom(items, a);
                        }
                        None => break,
                    }
                }
                Some(&ATOM_CACHE_REF) => {
                    match data.get(pos + 1).and_then(|&i| refs.get(usize::from(i))) {
                        Some(&a) => {
                            pos += 2;
                            put_atom(items, a);
                        }
                        None => break,
                    }
                }
                _ => break,
            }
            *left = left.saturating_sub(1);
            *pending = pending.saturating_sub(1);
        }
        c.pos = pos;
        *left == 0
    }

    /// The decoding loop: each turn reads one element's tag.
    fn term(&mut self) -> Result<Term> {
        loop {
            if self.fill_leaves() {
                if let Some(root) = self.close_complete()? {
                    return Ok(root);
                }
                continue;
            }
            if !self.stack.is_empty() {
                // This element was counted as pending; it starts now.
                self.pending = self.pending.saturating_sub(1);
            }
            let tag = self.u8()?;
            let value = match tag {
                SMALL_INTEGER => Term::Int(i64::from(self.u8()?)),
                INTEGER => Term::Int(i64::from(i32::from_be_bytes(self.array()?))),
                SMALL_ATOM_UTF8 | ATOM_UTF8 | ATOM | SMALL_ATOM | ATOM_CACHE_REF => {
                    Term::Atom(self.atom_of(tag)?)
                }
                SMALL_TUPLE => {
                    let n = usize::from(self.u8()?);
                    match self.open_tuple(n)? {
                        Some(t) => t,
                        None => continue,
                    }
                }
                LARGE_TUPLE => {
                    let n = self.len32()?;
                    match self.open_tuple(n)? {
                        Some(t) => t,
                        None => continue,
                    }
                }
                NIL => Term::Nil,
                STRING => {
                    let n = usize::from(self.u16()?);
                    if n == 0 {
                        Term::Nil
                    } else {
                        Term::ByteList(self.bytes(n)?)
                    }
                }
                LIST => {
                    let n = self.len32()?;
                    let with_tail = n.checked_add(1).ok_or(DecodeError::Truncated)?;
                    self.reserve(with_tail)?;
                    self.stack.push(Frame::List {
                        items: Vec::with_capacity(with_tail),
                        left: with_tail,
                    });
                    continue;
                }
                BINARY => {
                    let n = self.len32()?;
                    Term::Binary(self.bytes(n)?)
                }
                BIT_BINARY => {
                    let n = self.len32()?;
                    let bits = self.u8()?;
                    let bytes = self.bytes(n)?;
                    match (n, bits) {
                        (0, 0) => Term::Binary(bytes),
                        (0, _) | (_, 0) | (_, 9..) => return Err(DecodeError::BadBitstring),
                        (_, 8) => Term::Binary(bytes),
                        _ => Term::BitBinary { bytes, bits },
                    }
                }
                NEW_FLOAT => {
                    let f = f64::from_be_bytes(self.array()?);
                    if !f.is_finite() {
                        return Err(DecodeError::BadFloat);
                    }
                    Term::Float(f)
                }
                FLOAT => Term::Float(self.old_float()?),
                SMALL_BIG => {
                    let n = usize::from(self.u8()?);
                    self.big(n)?
                }
                LARGE_BIG => {
                    let n = self.len32()?;
                    self.big(n)?
                }
                MAP => {
                    let n = self.len32()?;
                    if n == 0 {
                        Term::Map(Vec::new())
                    } else {
                        let kv = n.checked_mul(2).ok_or(DecodeError::Truncated)?;
                        self.reserve(kv)?;
                        self.stack.push(Frame::Map {
                            pairs: Vec::with_capacity(n),
                            key: None,
                            left: kv,
                        });
                        continue;
                    }
                }
                NEW_PID | PID => Term::Pid(self.pid_of(tag)?),
                NEWER_REFERENCE | NEW_REFERENCE | REFERENCE => Term::Ref(self.ref_of(tag)?),
                NEW_PORT | PORT | V4_PORT => Term::Port(self.port_of(tag)?),
                EXPORT => {
                    let module = self.atom()?;
                    let function = self.atom()?;
                    let arity = self.fun_int()?;
                    let arity = u8::try_from(arity).map_err(|_| DecodeError::BadFun)?;
                    Term::Fun(Box::new(Fun::Export {
                        module,
                        function,
                        arity,
                    }))
                }
                NEW_FUN => {
                    let size = self.len32()?;
                    // `Size` counts itself; the rest must be in the input.
                    if size < 4 || size - 4 > self.remaining() {
                        return Err(DecodeError::Truncated);
                    }
                    let arity = self.u8()?;
                    let uniq = self.array::<16>()?;
                    let index = self.u32()?;
                    let num_free = self.len32()?;
                    let module = self.atom()?;
                    let old_index = self.fun_int()?;
                    let old_uniq = self.fun_int()?;
                    let pid = match self.u8()? {
                        t @ (NEW_PID | PID) => self.pid_of(t)?,
                        _ => return Err(DecodeError::BadFun),
                    };
                    let head = Box::new(FunHead {
                        module,
                        arity,
                        uniq,
                        index,
                        old_index,
                        old_uniq,
                        pid,
                    });
                    if num_free == 0 {
                        closure(*head, Vec::new())
                    } else {
                        self.reserve(num_free)?;
                        self.stack.push(Frame::Fun {
                            head,
                            free: Vec::with_capacity(num_free),
                            left: num_free,
                        });
                        continue;
                    }
                }
                COMPRESSED => return Err(DecodeError::Unsupported("compressed term (tag 80)")),
                FUN => return Err(DecodeError::Unsupported("FUN_EXT (tag 117)")),
                LOCAL => return Err(DecodeError::Unsupported("LOCAL_EXT (tag 121)")),
                t => return Err(DecodeError::BadTag(t)),
            };
            if let Some(root) = self.deliver(value)? {
                return Ok(root);
            }
        }
    }
}

/// Appends `Term::Int(i)` to `items`, whose capacity has room (it is the
/// container's size).
///
/// Written as a constant term whose payload is then patched: moving a
/// freshly built 40-byte `Term` into the vector goes through a stack
/// temporary, and reading that back right after its narrow stores stalls
/// (store forwarding) on every element. This halves the time to decode a
/// list of integers.
#[inline(always)]
fn put_int(items: &mut Vec<Term>, i: i64) {
    items.reserve(1);
    let len = items.len();
    if let Some(slot) = items.spare_capacity_mut().first_mut() {
        if let Term::Int(x) = slot.write(Term::Int(0)) {
            *x = i;
        }
        // SAFETY: the slot at `len` is within the capacity and was just
        // initialised.
        unsafe { items.set_len(len + 1) }
    }
}

/// [`put_int`] for an atom.
#[inline(always)]
fn put_atom(items: &mut Vec<Term>, a: Atom) {
    items.reserve(1);
    let len = items.len();
    if let Some(slot) = items.spare_capacity_mut().first_mut() {
        if let Term::Atom(x) = slot.write(Term::Atom(Atom::EMPTY)) {
            *x = a;
        }
        // SAFETY: as in `put_int`.
        unsafe { items.set_len(len + 1) }
    }
}

/// [`put_int`] for a float.
#[inline(always)]
fn put_float(items: &mut Vec<Term>, f: f64) {
    items.reserve(1);
    let len = items.len();
    if let Some(slot) = items.spare_capacity_mut().first_mut() {
        if let Term::Float(x) = slot.write(Term::Float(0.0)) {
            *x = f;
        }
        // SAFETY: as in `put_int`.
        unsafe { items.set_len(len + 1) }
    }
}

fn closure(head: FunHead, free: Vec<Term>) -> Term {
    let FunHead {
        module,
        arity,
        uniq,
        index,
        old_index,
        old_uniq,
        pid,
    } = head;
    Term::Fun(Box::new(Fun::Closure {
        module,
        arity,
        uniq,
        index,
        old_index,
        old_uniq,
        pid,
        free,
    }))
}

/// OTP refuses maps with a repeated key. Small maps compare every pair;
/// larger ones sort key hashes and compare only keys whose hashes collide.
fn has_duplicate_keys(pairs: &[(Term, Term)]) -> bool {
    if pairs.len() <= 8 {
        return pairs
            .iter()
            .enumerate()
            .any(|(i, (k, _))| pairs.iter().skip(i + 1).any(|(k2, _)| k == k2));
    }
    let mut hashes: Vec<(u64, usize)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            let mut h = FxHasher::default();
            k.hash(&mut h);
            (h.finish(), i)
        })
        .collect();
    hashes.sort_unstable();
    hashes.chunk_by(|a, b| a.0 == b.0).any(|run| {
        run.len() > 1
            && run.iter().enumerate().any(|(j, &(_, a))| {
                run.iter()
                    .skip(j + 1)
                    .any(|&(_, b)| match (pairs.get(a), pairs.get(b)) {
                        (Some(x), Some(y)) => x.0 == y.0,
                        _ => false,
                    })
            })
    })
}

// ------------------------------------------------------ atom look-up

/// The atom named `text`, created if it is new and `limits` allows one
/// more new atom (which it then counts).
pub(super) fn intern_budgeted(text: &str, limits: &mut DecodeLimits) -> Result<Atom> {
    if let Some(a) = existing_atom(text) {
        return Ok(a);
    }
    if text.len() > MAX_ATOM_CHARS && text.chars().count() > MAX_ATOM_CHARS {
        return Err(DecodeError::AtomTooLong);
    }
    if limits.max_atoms_created == 0 {
        return Err(DecodeError::TooManyAtoms);
    }
    let a = Atom::new(text).map_err(|e| match e {
        AtomError::TooLong => DecodeError::AtomTooLong,
        e => DecodeError::Atom(e),
    })?;
    limits.max_atoms_created -= 1;
    Ok(a)
}

const RECENT_ATOMS: usize = 256;

thread_local! {
    /// Atoms this thread decoded lately, by a hash of their name: a hit
    /// skips the shared table's lock (node names repeat in every pid).
    static RECENT: [Cell<Option<(&'static str, Atom)>>; RECENT_ATOMS] =
        const { [const { Cell::new(None) }; RECENT_ATOMS] };
}

/// The atom named `text` if it exists.
fn existing_atom(text: &str) -> Option<Atom> {
    let mut h = FxHasher::default();
    h.write(text.as_bytes());
    let slot = (h.finish() >> 56) as usize % RECENT_ATOMS;
    let cached = RECENT
        .try_with(|r| r.get(slot).and_then(Cell::get))
        .ok()
        .flatten();
    if let Some((name, atom)) = cached
        && name == text
    {
        return Some(atom);
    }
    let atom = Atom::existing(text)?;
    let _ = RECENT.try_with(|r| {
        if let Some(c) = r.get(slot) {
            c.set(Some((atom.as_str(), atom)));
        }
    });
    Some(atom)
}
