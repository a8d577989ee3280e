//! Erlang terms: the values that cross node boundaries.
//!
//! A [`Term`] is what `term_to_binary/1` can encode: numbers, atoms,
//! binaries, lists, tuples, maps, pids, references, ports and funs. It is
//! the message type of distribution: a remote process receives `Term`s, and
//! [`to_term`](super::to_term)/[`from_term`](super::from_term) convert Rust
//! values with serde.
//!
//! Three design points:
//! - **Exact echo.** What the codec decodes it encodes back to the same
//!   bytes as OTP's `term_to_binary`: maps keep their order, floats their
//!   bits, bitstrings their padding, funs every field, and byte lists stay
//!   byte lists ([`Term::ByteList`]).
//! - **Erlang's equality and order.** `==` is Erlang's `=:=` and
//!   [`Ord`] is Erlang's term order, whatever the representation: the byte
//!   list `"ab"` equals the list `[97, 98]`, and maps compare regardless of
//!   their order. See the [`PartialEq`](#impl-PartialEq-for-Term) and
//!   [`Ord`](#impl-Ord-for-Term) impls.
//! - **No recursion.** Equality, order, hashing, formatting, cloning,
//!   encoding, decoding and `Drop` all walk the term with an explicit stack,
//!   so a term nested a million deep is as safe as a flat one.

use std::fmt;

use bytes::Bytes;

use super::{Atom, AtomError, ExtPort, ExtRef};
use crate::{Pid, Ref};

mod big;
mod cmp;
mod format;

pub use big::{BigInt, OutOfRange};
pub(crate) use cmp::valid_bits;

/// An Erlang term.
///
/// Build terms with the `From` impls and the helpers ([`Term::atom`],
/// [`Term::tuple`], [`Term::list`], [`Term::map`]); read them with the
/// accessors (`as_*`, `into_*`) or by matching on a reference.
///
/// ```
/// use beamish::dist::{Atom, Term};
/// let t = Term::from((Term::atom("ok").unwrap(), vec![1u8, 2], 3.5));
/// assert_eq!(t.to_string(), "{ok,<<1,2>>,3.5}");
/// let [tag, bin, _] = t.as_tuple().unwrap() else { panic!() };
/// assert_eq!(tag.as_atom(), Some(Atom::OK));
/// assert_eq!(bin.as_binary().unwrap().as_ref(), &[1, 2]);
/// ```
///
/// `Term` implements `Drop` (iteratively, so that deep terms cannot
/// overflow the stack), so an owned term cannot be destructured by moving
/// out of it: match on a reference, or use [`Term::into_vec`],
/// [`Term::into_map`] and friends.
pub enum Term {
    /// An atom.
    Atom(Atom),
    /// An integer in the `i64` range.
    Int(i64),
    /// An integer outside the `i64` range. Decoding and `Term::from` only
    /// make `Big` for such values; a `Big` holding a smaller value still
    /// compares equal to the same `Int`.
    Big(Box<BigInt>),
    /// A float. Its bits are kept as received (`-0.0` stays `-0.0` when
    /// re-encoded), but as in OTP 25 and 26, `0.0 == -0.0`.
    Float(f64),
    /// A binary: a bitstring whose length is a whole number of bytes.
    Binary(Bytes),
    /// A bitstring of `8 * (bytes.len() - 1) + bits` bits: only the `bits`
    /// high bits of the last byte belong to it. `bits` is 1 to 8 and `bytes`
    /// is not empty. The low bits of the last byte are padding: kept as
    /// received, ignored by equality and order.
    BitBinary {
        /// The bytes; the last one is partly used.
        bytes: Bytes,
        /// How many high bits of the last byte are used (1..=8).
        bits: u8,
    },
    /// A proper list of integers 0..=255, as `STRING_EXT` carries it (the
    /// Erlang string `"abc"`). Equal to the same [`Term::List`] of integers.
    ByteList(Bytes),
    /// The empty list `[]`.
    Nil,
    /// A proper list. An empty vector is the empty list (equal to
    /// [`Term::Nil`]).
    List(Vec<Term>),
    /// An improper list `[a, b | tail]`: the elements and a tail that is not
    /// a list. (A list tail is allowed and means the concatenation, but the
    /// decoder never makes one.)
    Improper(Vec<Term>, Box<Term>),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A map, as key-value pairs in the order received or built (encoding
    /// keeps that order). Keys must be distinct; equality ignores the order.
    Map(Vec<(Term, Term)>),
    /// A process identifier, local or remote.
    Pid(Pid),
    /// A reference, of this node or another.
    Ref(ExtRef),
    /// A port identifier (only ever echoed: ports do not cross nodes).
    Port(ExtPort),
    /// A fun.
    Fun(Box<Fun>),
}

/// A fun: `fun M:F/A`, or a closure as `NEW_FUN_EXT` carries it.
///
/// A closure cannot run here; it is kept field by field so that it goes
/// back to an Erlang node exactly as it came.
#[derive(Clone, Debug)]
pub enum Fun {
    /// `fun Module:Function/Arity` (`EXPORT_EXT`).
    Export {
        /// The module.
        module: Atom,
        /// The function.
        function: Atom,
        /// The arity.
        arity: u8,
    },
    /// A closure (`NEW_FUN_EXT`).
    Closure {
        /// The module that defines it.
        module: Atom,
        /// The arity.
        arity: u8,
        /// The MD5 of the module's code.
        uniq: [u8; 16],
        /// Its index in the module's fun table.
        index: u32,
        /// The old-style index.
        old_index: i64,
        /// The old-style hash of its code.
        old_uniq: i64,
        /// The process that created it.
        pid: Pid,
        /// The captured variables.
        free: Vec<Term>,
    },
}

impl Term {
    /// The atom named `name` as a term (creating the atom if it is new).
    pub fn atom(name: &str) -> Result<Term, AtomError> {
        Atom::new(name).map(Term::Atom)
    }

    /// A tuple of `items`.
    pub fn tuple(items: Vec<Term>) -> Term {
        Term::Tuple(items)
    }

    /// A proper list of `items` ([`Term::Nil`] when empty).
    pub fn list(items: Vec<Term>) -> Term {
        if items.is_empty() {
            Term::Nil
        } else {
            Term::List(items)
        }
    }

    /// A map of `pairs`, in this order. Keys must be distinct.
    pub fn map(pairs: Vec<(Term, Term)>) -> Term {
        Term::Map(pairs)
    }

    /// A binary copied from `bytes`.
    pub fn binary(bytes: &[u8]) -> Term {
        Term::Binary(Bytes::copy_from_slice(bytes))
    }

    /// The atom, for [`Term::Atom`].
    pub fn as_atom(&self) -> Option<Atom> {
        match self {
            Term::Atom(a) => Some(*a),
            _ => None,
        }
    }

    /// True when this is the atom `atom`.
    pub fn is_atom(&self, atom: Atom) -> bool {
        matches!(self, Term::Atom(a) if *a == atom)
    }

    /// The value of [`Term::Int`] (or of a [`Term::Big`] in the `i64` range).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            Term::Big(b) => b.to_i64(),
            _ => None,
        }
    }

    /// The value of [`Term::Float`].
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Term::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value of [`Term::Atom`] `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Term::Atom(Atom::TRUE) => Some(true),
            Term::Atom(Atom::FALSE) => Some(false),
            _ => None,
        }
    }

    /// The bytes of a [`Term::Binary`].
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Term::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a binary that holds UTF-8 (an Elixir string).
    pub fn as_str(&self) -> Option<&str> {
        self.as_binary().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements of a [`Term::Tuple`].
    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a [`Term::List`] (empty for [`Term::Nil`]). A byte
    /// list is not a slice of terms: see [`Term::as_byte_list`].
    pub fn as_list(&self) -> Option<&[Term]> {
        match self {
            Term::List(v) => Some(v),
            Term::Nil => Some(&[]),
            _ => None,
        }
    }

    /// The bytes of a [`Term::ByteList`], or of a [`Term::List`] whose
    /// elements are all integers 0..=255.
    pub fn as_byte_list(&self) -> Option<Vec<u8>> {
        match self {
            Term::ByteList(b) => Some(b.to_vec()),
            Term::Nil => Some(Vec::new()),
            Term::List(v) => v
                .iter()
                .map(|t| match t {
                    Term::Int(i) => u8::try_from(*i).ok(),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// The pairs of a [`Term::Map`].
    pub fn as_map(&self) -> Option<&[(Term, Term)]> {
        match self {
            Term::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a [`Term::Map`].
    pub fn map_get(&self, key: &Term) -> Option<&Term> {
        self.as_map()?
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// The pid of a [`Term::Pid`].
    pub fn as_pid(&self) -> Option<Pid> {
        match self {
            Term::Pid(p) => Some(*p),
            _ => None,
        }
    }

    /// The reference of a [`Term::Ref`].
    pub fn as_reference(&self) -> Option<&ExtRef> {
        match self {
            Term::Ref(r) => Some(r),
            _ => None,
        }
    }

    /// The fun of a [`Term::Fun`].
    pub fn as_fun(&self) -> Option<&Fun> {
        match self {
            Term::Fun(f) => Some(f),
            _ => None,
        }
    }

    /// True for the empty list in any of its forms.
    pub fn is_nil(&self) -> bool {
        match self {
            Term::Nil => true,
            Term::List(v) => v.is_empty(),
            Term::ByteList(b) => b.is_empty(),
            _ => false,
        }
    }

    /// Takes the elements of a tuple or a proper list (a byte list becomes
    /// integers); any other term comes back as the error.
    pub fn into_vec(mut self) -> Result<Vec<Term>, Term> {
        match &mut self {
            Term::Tuple(v) | Term::List(v) => Ok(std::mem::take(v)),
            Term::Nil => Ok(Vec::new()),
            Term::ByteList(b) => Ok(b.iter().map(|&x| Term::Int(i64::from(x))).collect()),
            _ => Err(self),
        }
    }

    /// Takes the pairs of a map; any other term comes back as the error.
    pub fn into_map(mut self) -> Result<Vec<(Term, Term)>, Term> {
        match &mut self {
            Term::Map(m) => Ok(std::mem::take(m)),
            _ => Err(self),
        }
    }

    /// Takes the bytes of a binary; any other term comes back as the error.
    pub fn into_binary(mut self) -> Result<Bytes, Term> {
        match &mut self {
            Term::Binary(b) => Ok(std::mem::take(b)),
            _ => Err(self),
        }
    }

    /// True for the variants that hold other terms (the ones `Drop`,
    /// `Clone` and the walkers must not recurse into).
    fn has_children(&self) -> bool {
        match self {
            Term::List(v) | Term::Tuple(v) => !v.is_empty(),
            Term::Improper(..) | Term::Map(_) => true,
            Term::Fun(f) => matches!(&**f, Fun::Closure { free, .. } if !free.is_empty()),
            _ => false,
        }
    }

    /// True if `f` holds for a direct child.
    fn any_child(&self, mut f: impl FnMut(&Term) -> bool) -> bool {
        match self {
            Term::List(v) | Term::Tuple(v) => v.iter().any(f),
            Term::Improper(v, tail) => v.iter().any(&mut f) || f(tail),
            Term::Map(m) => m.iter().any(|(k, v)| f(k) || f(v)),
            Term::Fun(fun) => match &**fun {
                Fun::Closure { free, .. } => free.iter().any(f),
                Fun::Export { .. } => false,
            },
            _ => false,
        }
    }

    /// Moves every child that has children of its own onto `stack`,
    /// leaving `Nil` in its place.
    fn take_deep_children(&mut self, stack: &mut Vec<Term>) {
        fn take(t: &mut Term, stack: &mut Vec<Term>) {
            if t.has_children() {
                stack.push(std::mem::replace(t, Term::Nil));
            }
        }
        match self {
            Term::List(v) | Term::Tuple(v) => v.iter_mut().for_each(|t| take(t, stack)),
            Term::Improper(v, tail) => {
                v.iter_mut().for_each(|t| take(t, stack));
                take(tail, stack);
            }
            Term::Map(m) => m.iter_mut().for_each(|(k, v)| {
                take(k, stack);
                take(v, stack);
            }),
            Term::Fun(f) => {
                if let Fun::Closure { free, .. } = &mut **f {
                    free.iter_mut().for_each(|t| take(t, stack));
                }
            }
            _ => {}
        }
    }
}

impl Drop for Term {
    /// Drops nested terms from an explicit stack, not by recursion: a term
    /// nested a million deep would otherwise overflow the thread's stack.
    #[inline]
    fn drop(&mut self) {
        if self.has_children() {
            self.drop_children();
        }
    }
}

impl Term {
    /// True for terms that own no memory (nothing to free when dropped).
    #[inline]
    fn is_plain(&self) -> bool {
        matches!(
            self,
            Term::Atom(_)
                | Term::Int(_)
                | Term::Float(_)
                | Term::Nil
                | Term::Pid(_)
                | Term::Ref(_)
                | Term::Port(_)
        )
    }

    /// The slow part of `Drop`, for containers.
    #[inline(never)]
    fn drop_children(&mut self) {
        // A container of plain terms (a list of integers, a map of atoms to
        // numbers): nothing in it needs dropping, so skip the per-element
        // drop glue, which would otherwise cost more than decoding it.
        match self {
            Term::List(v) | Term::Tuple(v) if v.iter().all(Term::is_plain) => {
                // SAFETY: every element owns nothing, so forgetting them
                // (shortening the length) leaks nothing; the vector then
                // frees its buffer as usual.
                unsafe { v.set_len(0) };
                return;
            }
            Term::Map(m) if m.iter().all(|(k, v)| k.is_plain() && v.is_plain()) => {
                // SAFETY: as above.
                unsafe { m.set_len(0) };
                return;
            }
            _ => {}
        }
        // Children whose own children are leaves drop with the ordinary
        // glue (two levels of recursion at most): a small message such as
        // `{Pid, Ref, {hello, 42}}` needs no stack.
        if !self.any_child(|c| c.any_child(Term::has_children)) {
            return;
        }
        let mut stack = Vec::new();
        self.take_deep_children(&mut stack);
        while let Some(mut t) = stack.pop() {
            t.take_deep_children(&mut stack);
            // `t` now holds no nested containers and drops without recursing.
        }
    }
}

impl Clone for Term {
    /// Clones iteratively (see [`Drop`](#impl-Drop-for-Term)).
    fn clone(&self) -> Term {
        match self {
            Term::Atom(a) => Term::Atom(*a),
            Term::Int(i) => Term::Int(*i),
            Term::Big(b) => Term::Big(b.clone()),
            Term::Float(f) => Term::Float(*f),
            Term::Binary(b) => Term::Binary(b.clone()),
            Term::BitBinary { bytes, bits } => Term::BitBinary {
                bytes: bytes.clone(),
                bits: *bits,
            },
            Term::ByteList(b) => Term::ByteList(b.clone()),
            Term::Nil => Term::Nil,
            Term::Pid(p) => Term::Pid(*p),
            Term::Ref(r) => Term::Ref(*r),
            Term::Port(p) => Term::Port(*p),
            _ => clone_deep(self),
        }
    }
}

/// Clones a container with an explicit stack: each frame is a container
/// being rebuilt, with the source children still to copy.
fn clone_deep(root: &Term) -> Term {
    enum Src<'a> {
        Seq(std::slice::Iter<'a, Term>),
        Pairs(std::slice::Iter<'a, (Term, Term)>, Option<&'a Term>),
    }
    enum Shape<'a> {
        List,
        Improper(&'a Term),
        /// The improper list's elements are done; its tail is being built.
        ImproperTail(Vec<Term>),
        Tuple,
        Map,
        Fun(&'a Fun),
    }
    struct Frame<'a> {
        shape: Shape<'a>,
        src: Src<'a>,
        items: Vec<Term>,
        pairs: Vec<(Term, Term)>,
        key: Option<Term>,
    }
    fn open(t: &Term) -> Result<Frame<'_>, Term> {
        let frame = |shape, src, n| Frame {
            shape,
            src,
            items: Vec::with_capacity(n),
            pairs: Vec::new(),
            key: None,
        };
        Ok(match t {
            Term::List(v) => frame(Shape::List, Src::Seq(v.iter()), v.len()),
            Term::Tuple(v) => frame(Shape::Tuple, Src::Seq(v.iter()), v.len()),
            Term::Improper(v, tail) => frame(Shape::Improper(tail), Src::Seq(v.iter()), v.len()),
            Term::Map(m) => Frame {
                shape: Shape::Map,
                src: Src::Pairs(m.iter(), None),
                items: Vec::new(),
                pairs: Vec::with_capacity(m.len()),
                key: None,
            },
            Term::Fun(f) => match &**f {
                Fun::Closure { free, .. } => {
                    frame(Shape::Fun(f), Src::Seq(free.iter()), free.len())
                }
                Fun::Export { .. } => return Err(Term::Fun(f.clone())),
            },
            leaf => return Err(leaf.clone()),
        })
    }

    let mut stack = match open(root) {
        Ok(frame) => vec![frame],
        Err(leaf) => return leaf,
    };
    loop {
        let Some(top) = stack.last_mut() else {
            return Term::Nil;
        };
        // The next source child of the top frame, if any.
        let next: Option<&Term> = match &mut top.src {
            Src::Seq(it) => it.next(),
            Src::Pairs(it, pending_value) => match pending_value.take() {
                Some(v) => Some(v),
                None => it.next().map(|(k, v)| {
                    *pending_value = Some(v);
                    k
                }),
            },
        };
        let done = match next {
            Some(child) if child.has_children() => {
                if let Ok(frame) = open(child) {
                    stack.push(frame);
                }
                continue;
            }
            Some(child) => child.clone(),
            None => {
                let Some(frame) = stack.pop() else {
                    return Term::Nil;
                };
                let Frame {
                    shape,
                    items,
                    pairs,
                    ..
                } = frame;
                match shape {
                    Shape::List => Term::List(items),
                    Shape::Tuple => Term::Tuple(items),
                    Shape::Map => Term::Map(pairs),
                    Shape::Fun(f) => Term::Fun(Box::new(match f {
                        Fun::Closure {
                            module,
                            arity,
                            uniq,
                            index,
                            old_index,
                            old_uniq,
                            pid,
                            ..
                        } => Fun::Closure {
                            module: *module,
                            arity: *arity,
                            uniq: *uniq,
                            index: *index,
                            old_index: *old_index,
                            old_uniq: *old_uniq,
                            pid: *pid,
                            free: items,
                        },
                        export => export.clone(),
                    })),
                    Shape::Improper(tail) => {
                        // Elements done: build the tail in a frame of its own.
                        stack.push(Frame {
                            shape: Shape::ImproperTail(items),
                            src: Src::Seq(std::slice::from_ref(tail).iter()),
                            items: Vec::with_capacity(1),
                            pairs: Vec::new(),
                            key: None,
                        });
                        continue;
                    }
                    Shape::ImproperTail(elems) => {
                        let tail = items.into_iter().next().unwrap_or(Term::Nil);
                        Term::Improper(elems, Box::new(tail))
                    }
                }
            }
        };
        // Hand the finished child to its parent.
        let Some(parent) = stack.last_mut() else {
            return done;
        };
        match parent.shape {
            Shape::Map => match parent.key.take() {
                Some(k) => parent.pairs.push((k, done)),
                None => parent.key = Some(done),
            },
            _ => parent.items.push(done),
        }
    }
}

// ------------------------------------------------------------ conversions

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Term {
            fn from(v: $t) -> Term {
                Term::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Term {
    fn from(v: u64) -> Term {
        match i64::try_from(v) {
            Ok(i) => Term::Int(i),
            Err(_) => Term::Big(Box::new(BigInt::from(v))),
        }
    }
}

impl From<usize> for Term {
    fn from(v: usize) -> Term {
        Term::from(v as u64)
    }
}

impl From<isize> for Term {
    fn from(v: isize) -> Term {
        Term::Int(v as i64)
    }
}

impl From<i128> for Term {
    fn from(v: i128) -> Term {
        match i64::try_from(v) {
            Ok(i) => Term::Int(i),
            Err(_) => Term::Big(Box::new(BigInt::from(v))),
        }
    }
}

impl From<u128> for Term {
    fn from(v: u128) -> Term {
        match i64::try_from(v) {
            Ok(i) => Term::Int(i),
            Err(_) => Term::Big(Box::new(BigInt::from(v))),
        }
    }
}

impl From<BigInt> for Term {
    /// An `Int` when the value fits an `i64`, else a `Big`.
    fn from(v: BigInt) -> Term {
        match v.to_i64() {
            Some(i) => Term::Int(i),
            None => Term::Big(Box::new(v)),
        }
    }
}

impl From<f64> for Term {
    fn from(v: f64) -> Term {
        Term::Float(v)
    }
}

impl From<f32> for Term {
    fn from(v: f32) -> Term {
        Term::Float(f64::from(v))
    }
}

impl From<bool> for Term {
    /// The atom `true` or `false`.
    fn from(v: bool) -> Term {
        Term::Atom(if v { Atom::TRUE } else { Atom::FALSE })
    }
}

impl From<&str> for Term {
    /// A binary holding the UTF-8 text, as Elixir represents strings.
    fn from(v: &str) -> Term {
        Term::binary(v.as_bytes())
    }
}

impl From<String> for Term {
    /// A binary holding the UTF-8 text, as Elixir represents strings.
    fn from(v: String) -> Term {
        Term::Binary(Bytes::from(v))
    }
}

impl From<Vec<u8>> for Term {
    /// A binary.
    fn from(v: Vec<u8>) -> Term {
        Term::Binary(Bytes::from(v))
    }
}

impl From<&[u8]> for Term {
    /// A binary.
    fn from(v: &[u8]) -> Term {
        Term::binary(v)
    }
}

impl From<Bytes> for Term {
    /// A binary.
    fn from(v: Bytes) -> Term {
        Term::Binary(v)
    }
}

impl From<Vec<Term>> for Term {
    /// A proper list ([`Term::Nil`] when empty).
    fn from(v: Vec<Term>) -> Term {
        Term::list(v)
    }
}

impl From<Atom> for Term {
    fn from(v: Atom) -> Term {
        Term::Atom(v)
    }
}

impl From<Pid> for Term {
    fn from(v: Pid) -> Term {
        Term::Pid(v)
    }
}

impl From<Ref> for Term {
    /// The reference in its wire shape, naming this node.
    fn from(v: Ref) -> Term {
        Term::Ref(ExtRef::from(v))
    }
}

impl From<ExtRef> for Term {
    fn from(v: ExtRef) -> Term {
        Term::Ref(v)
    }
}

impl From<ExtPort> for Term {
    fn from(v: ExtPort) -> Term {
        Term::Port(v)
    }
}

impl From<Fun> for Term {
    fn from(v: Fun) -> Term {
        Term::Fun(Box::new(v))
    }
}

impl From<()> for Term {
    /// The empty tuple `{}` (Rust's `()` is the empty tuple).
    fn from((): ()) -> Term {
        Term::Tuple(Vec::new())
    }
}

macro_rules! from_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<Term>),+> From<($($name,)+)> for Term {
            /// A tuple of the converted elements.
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Term {
                Term::Tuple(vec![$($name.into()),+])
            }
        }
    };
}
from_tuple!(A);
from_tuple!(A, B);
from_tuple!(A, B, C);
from_tuple!(A, B, C, D);
from_tuple!(A, B, C, D, E);
from_tuple!(A, B, C, D, E, F);
from_tuple!(A, B, C, D, E, F, G);
from_tuple!(A, B, C, D, E, F, G, H);

impl fmt::Display for Term {
    /// Erlang syntax, as `io:format("~w", [T])` prints it, except that
    /// pids, references and funs use this crate's own notation, atoms keep
    /// their Unicode characters, and maps always print in key order (OTP
    /// prints maps of more than 32 keys in hash order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format::write(self, f)
    }
}

impl fmt::Debug for Term {
    /// The same as [`Display`](#impl-Display-for-Term).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format::write(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nest(depth: usize) -> Term {
        let mut t = Term::Nil;
        for i in 0..depth {
            t = match i % 4 {
                0 => Term::Tuple(vec![t, Term::Int(1)]),
                1 => Term::List(vec![Term::Int(2), t]),
                2 => Term::Map(vec![(Term::Int(3), t)]),
                _ => Term::Improper(vec![Term::Int(4)], Box::new(Term::Tuple(vec![t]))),
            };
        }
        t
    }

    #[test]
    fn size_stays_within_40_bytes() {
        assert!(
            std::mem::size_of::<Term>() <= 40,
            "{}",
            std::mem::size_of::<Term>()
        );
    }

    #[test]
    fn deep_terms_drop_and_clone_on_a_small_stack() {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let t = nest(200_000);
                let c = t.clone();
                assert!(t == c);
                drop(t);
                drop(c);
                // A million deep, one kind of container.
                let mut t = Term::Nil;
                for _ in 0..1_000_000 {
                    t = Term::List(vec![t]);
                }
                drop(t);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn clone_keeps_every_shape() {
        let t = Term::from((
            Term::Improper(vec![Term::Int(1)], Box::new(Term::Int(2))),
            Term::Map(vec![(Term::Int(1), Term::from(vec![Term::Nil]))]),
            Term::from(Fun::Closure {
                module: Atom::OK,
                arity: 1,
                uniq: [7; 16],
                index: 3,
                old_index: 0,
                old_uniq: 5,
                pid: Pid::new(0, 1, 1),
                free: vec![Term::from(vec![Term::Int(9)])],
            }),
        ));
        let c = t.clone();
        assert_eq!(t.to_string(), c.to_string());
        assert!(t == c);
    }

    #[test]
    fn conversions() {
        assert_eq!(Term::from(u64::MAX).to_string(), u64::MAX.to_string());
        assert!(matches!(Term::from(i64::MAX as u64), Term::Int(i64::MAX)));
        assert!(matches!(Term::from(BigInt::from(5i64)), Term::Int(5)));
        assert_eq!(Term::from(true), Term::Atom(Atom::TRUE));
        assert_eq!(Term::from("hé").as_str(), Some("hé"));
        assert!(Term::from(Vec::<Term>::new()).is_nil());
        assert_eq!(Term::from(()).to_string(), "{}");
        assert_eq!(
            Term::from((1, 2, 3, 4, 5, 6, 7, 8)).to_string(),
            "{1,2,3,4,5,6,7,8}"
        );
        let m = Term::map(vec![(Term::atom("a").unwrap(), Term::Int(1))]);
        assert_eq!(m.map_get(&Term::atom("a").unwrap()), Some(&Term::Int(1)));
        assert_eq!(m.clone().into_map().unwrap().len(), 1);
        assert!(Term::Int(1).into_map().is_err());
        assert_eq!(
            Term::ByteList(Bytes::from_static(b"ab"))
                .into_vec()
                .unwrap()
                .len(),
            2
        );
    }
}
