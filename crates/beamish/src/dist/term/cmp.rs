//! Erlang's exact equality (`=:=`) and term order for [`Term`], and a hash
//! that agrees with the equality.
//!
//! All three walk the terms with an explicit stack. Lists are walked cell
//! by cell, so every representation of one list (`List`, `ByteList`, an
//! `Improper` whose tail is a list) compares the same.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};

use super::{BigInt, Fun, Term};
use crate::Pid;
use crate::dist::{Atom, ExtPort, ExtRef};

/// A value as the walkers see it.
#[derive(Clone, Copy)]
pub(super) enum X<'a> {
    /// A term.
    T(&'a Term),
    /// An element of a byte list: the integer it stands for.
    Byte(u8),
    /// The list made of these elements and then `tail` (`None`: `[]`).
    Rest(Elems<'a>, Option<&'a Term>),
}

/// The elements of a list in either representation.
#[derive(Clone, Copy)]
pub(super) enum Elems<'a> {
    Terms(&'a [Term]),
    Bytes(&'a [u8]),
}

impl<'a> Elems<'a> {
    fn split_first(self) -> Option<(X<'a>, Elems<'a>)> {
        match self {
            Elems::Terms(v) => v.split_first().map(|(h, r)| (X::T(h), Elems::Terms(r))),
            Elems::Bytes(b) => b.split_first().map(|(h, r)| (X::Byte(*h), Elems::Bytes(r))),
        }
    }
}

/// What a value is, with the list representations looked through.
pub(super) enum Shape<'a> {
    Int(i64),
    /// Only outside the `i64` range.
    Big(&'a BigInt),
    Float(f64),
    Atom(Atom),
    Ref(&'a ExtRef),
    Fun(&'a Fun),
    Port(&'a ExtPort),
    Pid(Pid),
    Tuple(&'a [Term]),
    Map(&'a [(Term, Term)]),
    Nil,
    /// A list cell: its head and the rest of the list.
    Cons(X<'a>, X<'a>),
    /// A bitstring: the bytes and how many bits of the last byte count
    /// (1..=8; anything else is read as 8).
    Bits(&'a [u8], u8),
}

pub(super) fn shape(mut x: X<'_>) -> Shape<'_> {
    loop {
        let t = match x {
            X::T(t) => t,
            X::Byte(b) => return Shape::Int(i64::from(b)),
            X::Rest(elems, tail) => match elems.split_first() {
                Some((head, rest)) => return Shape::Cons(head, X::Rest(rest, tail)),
                None => match tail {
                    None => return Shape::Nil,
                    Some(t) => t,
                },
            },
        };
        return match t {
            Term::Int(i) => Shape::Int(*i),
            Term::Big(b) => match b.to_i64() {
                Some(i) => Shape::Int(i),
                None => Shape::Big(b),
            },
            Term::Float(f) => Shape::Float(*f),
            Term::Atom(a) => Shape::Atom(*a),
            Term::Binary(b) => Shape::Bits(b, 8),
            Term::BitBinary { bytes, bits } => Shape::Bits(bytes, valid_bits(*bits)),
            Term::Nil => Shape::Nil,
            Term::ByteList(b) => {
                x = X::Rest(Elems::Bytes(b), None);
                continue;
            }
            Term::List(v) => {
                x = X::Rest(Elems::Terms(v), None);
                continue;
            }
            Term::Improper(v, tail) => {
                x = X::Rest(Elems::Terms(v), Some(tail));
                continue;
            }
            Term::Tuple(v) => Shape::Tuple(v),
            Term::Map(m) => Shape::Map(m),
            Term::Pid(p) => Shape::Pid(*p),
            Term::Ref(r) => Shape::Ref(r),
            Term::Port(p) => Shape::Port(p),
            Term::Fun(f) => Shape::Fun(f),
        };
    }
}

/// `bits` of a [`Term::BitBinary`], with out-of-range values read as 8.
pub(crate) fn valid_bits(bits: u8) -> u8 {
    if (1..=8).contains(&bits) { bits } else { 8 }
}

/// Erlang's term order: number < atom < reference < fun < port < pid <
/// tuple < map < nil < list < bitstring.
fn rank(s: &Shape<'_>) -> u8 {
    match s {
        Shape::Int(_) | Shape::Big(_) | Shape::Float(_) => 0,
        Shape::Atom(_) => 1,
        Shape::Ref(_) => 2,
        Shape::Fun(_) => 3,
        Shape::Port(_) => 4,
        Shape::Pid(_) => 5,
        Shape::Tuple(_) => 6,
        Shape::Map(_) => 7,
        Shape::Nil => 8,
        Shape::Cons(..) => 9,
        Shape::Bits(..) => 10,
    }
}

/// Pairs still to compare.
enum Work<'a> {
    One(X<'a>, X<'a>),
    /// Two slices of equal length, compared element by element.
    Seq(&'a [Term], &'a [Term]),
    /// Map values in key order, last pair first (popped from the end).
    Refs(Vec<(&'a Term, &'a Term)>),
}

fn pop_pair<'a>(stack: &mut Vec<Work<'a>>) -> Option<(X<'a>, X<'a>)> {
    loop {
        match stack.last_mut()? {
            Work::One(x, y) => {
                let pair = (*x, *y);
                stack.pop();
                return Some(pair);
            }
            Work::Seq(a, b) => match (a.split_first(), b.split_first()) {
                (Some((x, ra)), Some((y, rb))) => {
                    *a = ra;
                    *b = rb;
                    return Some((X::T(x), X::T(y)));
                }
                _ => {
                    stack.pop();
                }
            },
            Work::Refs(v) => match v.pop() {
                Some((x, y)) => return Some((X::T(x), X::T(y))),
                None => {
                    stack.pop();
                }
            },
        }
    }
}

// ------------------------------------------------------------- numbers

const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// Floats by value; `0.0` equals `-0.0`; NaNs (never decoded, but
/// constructible) by their bits, after every number.
fn cmp_f64(a: f64, b: f64) -> Ordering {
    if a == b {
        Ordering::Equal
    } else {
        a.partial_cmp(&b).unwrap_or_else(|| a.total_cmp(&b))
    }
}

fn eq_f64(a: f64, b: f64) -> bool {
    a == b || a.to_bits() == b.to_bits()
}

/// An integer against a float, exactly. Equal values put the integer
/// first (as in the key order of Erlang maps), since `1 =/= 1.0`.
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return if f.is_sign_negative() {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    // -2^63 <= floor(f) < 2^63: the cast is exact.
    let floor = f.floor();
    match i.cmp(&(floor as i64)) {
        // i == floor(f) <= f; on equal values the integer comes first.
        Ordering::Equal => Ordering::Less,
        o => o,
    }
}

/// A bignum (outside the `i64` range) against a float, exactly.
fn cmp_big_float(b: &BigInt, f: f64) -> Ordering {
    if f.is_nan() || f.is_infinite() {
        return cmp_int_float(0, f);
    }
    if f.abs() < TWO_63 {
        return if b.is_negative() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // |f| >= 2^63 > 2^53, so f is an integer.
    match b.cmp(&BigInt::from_integral_f64(f)) {
        Ordering::Equal => Ordering::Less,
        o => o,
    }
}

fn cmp_numbers(a: &Shape<'_>, b: &Shape<'_>) -> Ordering {
    use Shape::{Big, Float, Int};
    match (a, b) {
        (Int(x), Int(y)) => x.cmp(y),
        (Big(x), Big(y)) => x.cmp(y),
        (Int(_), Big(y)) => {
            if y.is_negative() {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Big(x), Int(_)) => {
            if x.is_negative() {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (Float(x), Float(y)) => cmp_f64(*x, *y),
        (Int(x), Float(y)) => cmp_int_float(*x, *y),
        (Float(x), Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Big(x), Float(y)) => cmp_big_float(x, *y),
        (Float(x), Big(y)) => cmp_big_float(y, *x).reverse(),
        _ => Ordering::Equal,
    }
}

// ----------------------------------------------------------- bitstrings

fn bit_len(bytes: &[u8], bits: u8) -> u64 {
    match bytes.len() {
        0 => 0,
        n => (n as u64 - 1) * 8 + u64::from(bits),
    }
}

/// Bit by bit; a prefix comes first.
fn cmp_bits(a: &[u8], abits: u8, b: &[u8], bbits: u8) -> Ordering {
    let (la, lb) = (bit_len(a, abits), bit_len(b, bbits));
    let common = la.min(lb);
    let full = (common / 8) as usize;
    let rem = (common % 8) as u32;
    let o = a
        .get(..full)
        .unwrap_or_default()
        .cmp(b.get(..full).unwrap_or_default());
    if o != Ordering::Equal {
        return o;
    }
    if rem > 0 {
        let mask = 0xFFu8 << (8 - rem);
        let x = a.get(full).copied().unwrap_or(0) & mask;
        let y = b.get(full).copied().unwrap_or(0) & mask;
        if x != y {
            return x.cmp(&y);
        }
    }
    la.cmp(&lb)
}

// ------------------------------------------------------------ leaves

fn cmp_atoms(a: Atom, b: Atom) -> Ordering {
    if a == b {
        Ordering::Equal
    } else {
        a.as_str().cmp(b.as_str())
    }
}

fn cmp_refs(a: &ExtRef, b: &ExtRef) -> Ordering {
    cmp_atoms(a.node, b.node)
        .then_with(|| a.words().len().cmp(&b.words().len()))
        .then_with(|| a.words().iter().rev().cmp(b.words().iter().rev()))
        .then_with(|| a.creation.cmp(&b.creation))
}

fn cmp_ports(a: &ExtPort, b: &ExtPort) -> Ordering {
    cmp_atoms(a.node, b.node)
        .then_with(|| a.id.cmp(&b.id))
        .then_with(|| a.creation.cmp(&b.creation))
}

/// Export funs first, by module, function and arity; closures by module,
/// index, hashes, arity and creator, then by their captured values (which
/// the caller pushes).
fn cmp_fun_headers(a: &Fun, b: &Fun) -> Ordering {
    match (a, b) {
        (
            Fun::Export {
                module: m1,
                function: f1,
                arity: a1,
            },
            Fun::Export {
                module: m2,
                function: f2,
                arity: a2,
            },
        ) => cmp_atoms(*m1, *m2)
            .then_with(|| cmp_atoms(*f1, *f2))
            .then_with(|| a1.cmp(a2)),
        (Fun::Export { .. }, Fun::Closure { .. }) => Ordering::Less,
        (Fun::Closure { .. }, Fun::Export { .. }) => Ordering::Greater,
        (
            Fun::Closure {
                module: m1,
                arity: a1,
                uniq: u1,
                index: i1,
                old_index: oi1,
                old_uniq: ou1,
                pid: p1,
                free: v1,
            },
            Fun::Closure {
                module: m2,
                arity: a2,
                uniq: u2,
                index: i2,
                old_index: oi2,
                old_uniq: ou2,
                pid: p2,
                free: v2,
            },
        ) => cmp_atoms(*m1, *m2)
            .then_with(|| i1.cmp(i2))
            .then_with(|| ou1.cmp(ou2))
            .then_with(|| u1.cmp(u2))
            .then_with(|| a1.cmp(a2))
            .then_with(|| oi1.cmp(oi2))
            .then_with(|| p1.cmp(p2))
            .then_with(|| v1.len().cmp(&v2.len())),
    }
}

fn free_vars(f: &Fun) -> &[Term] {
    match f {
        Fun::Closure { free, .. } => free,
        Fun::Export { .. } => &[],
    }
}

/// The pairs of maps sorted by key, for one comparison.
///
/// Comparing two maps compares their keys in term order, so each map must
/// be sorted, and sorting compares keys, which may be maps themselves.
/// Sorting on demand would recurse once per level of maps nested in keys
/// (an input can nest thousands). Instead, before a map is sorted, every
/// map inside its keys is sorted first, deepest first, so that no
/// comparison made while sorting ever needs a map that is not sorted yet.
#[derive(Default)]
struct Orders<'a> {
    /// By the address of the map's first pair.
    sorted: FxHashMap<usize, Vec<&'a (Term, Term)>>,
}

fn map_key(m: &[(Term, Term)]) -> usize {
    m.as_ptr() as usize
}

impl<'a> Orders<'a> {
    /// The pairs of `m` in key order.
    fn get(&mut self, m: &'a [(Term, Term)]) -> &[&'a (Term, Term)] {
        self.ensure(m);
        self.sorted.get(&map_key(m)).map_or(&[], Vec::as_slice)
    }

    /// Sorts `m`, after the maps inside its keys.
    fn ensure(&mut self, m: &'a [(Term, Term)]) {
        if m.is_empty() || self.sorted.contains_key(&map_key(m)) {
            return;
        }
        // Every map inside the keys (values of those maps included: they
        // count when such keys are compared), parents before children.
        let mut inner: Vec<&'a [(Term, Term)]> = Vec::new();
        let mut walk: Vec<&'a Term> = m
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.has_children())
            .collect();
        while let Some(t) = walk.pop() {
            match t {
                Term::Map(pairs) => {
                    inner.push(pairs);
                    for (k, v) in pairs {
                        walk.push(k);
                        walk.push(v);
                    }
                }
                Term::List(v) | Term::Tuple(v) => {
                    walk.extend(v.iter().filter(|t| t.has_children()))
                }
                Term::Improper(v, tail) => {
                    walk.extend(v.iter().filter(|t| t.has_children()));
                    walk.push(tail);
                }
                Term::Fun(f) => walk.extend(free_vars(f).iter().filter(|t| t.has_children())),
                _ => {}
            }
        }
        for pairs in inner.into_iter().rev() {
            self.sort(pairs);
        }
        self.sort(m);
    }

    fn sort(&mut self, m: &'a [(Term, Term)]) {
        if m.is_empty() || self.sorted.contains_key(&map_key(m)) {
            return;
        }
        let mut v: Vec<&'a (Term, Term)> = m.iter().collect();
        if v.len() > 1 {
            v.sort_by(|p, q| compare_in(&p.0, &q.0, self));
        }
        self.sorted.insert(map_key(m), v);
    }

    /// Map pairs (in the order given, equal length) as work: their keys
    /// first, then their values (popped from the end, so pushed reversed).
    fn push_pairs(stack: &mut Vec<Work<'a>>, a: &[&'a (Term, Term)], b: &[&'a (Term, Term)]) {
        stack.push(Work::Refs(
            a.iter().zip(b).rev().map(|(p, q)| (&p.1, &q.1)).collect(),
        ));
        stack.push(Work::Refs(
            a.iter().zip(b).rev().map(|(p, q)| (&p.0, &q.0)).collect(),
        ));
    }
}

// ------------------------------------------------------------- compare

/// Erlang's term order, made total: numbers by value (an integer before an
/// equal float), atoms by name, then by type, containers element by
/// element, maps by size, then keys in term order, then values in key
/// order. Pids order as the emulator orders them: by number, then node.
pub(super) fn compare(a: &Term, b: &Term) -> Ordering {
    compare_in(a, b, &mut Orders::default())
}

fn compare_in<'a>(a: &'a Term, b: &'a Term, orders: &mut Orders<'a>) -> Ordering {
    let mut stack: Vec<Work<'a>> = Vec::new();
    let mut next = Some((X::T(a), X::T(b)));
    loop {
        let (x, y) = match next.take() {
            Some(pair) => pair,
            None => match pop_pair(&mut stack) {
                Some(pair) => pair,
                None => return Ordering::Equal,
            },
        };
        let (sx, sy) = (shape(x), shape(y));
        let (rx, ry) = (rank(&sx), rank(&sy));
        if rx != ry {
            return rx.cmp(&ry);
        }
        let o = match (&sx, &sy) {
            (Shape::Atom(a), Shape::Atom(b)) => cmp_atoms(*a, *b),
            (Shape::Ref(a), Shape::Ref(b)) => cmp_refs(a, b),
            (Shape::Port(a), Shape::Port(b)) => cmp_ports(a, b),
            (Shape::Pid(a), Shape::Pid(b)) => crate::dist::remote::cmp_pids(*a, *b),
            (Shape::Nil, Shape::Nil) => Ordering::Equal,
            (Shape::Bits(a, ab), Shape::Bits(b, bb)) => cmp_bits(a, *ab, b, *bb),
            (Shape::Cons(h1, r1), Shape::Cons(h2, r2)) => {
                stack.push(Work::One(*r1, *r2));
                next = Some((*h1, *h2));
                Ordering::Equal
            }
            (Shape::Tuple(a), Shape::Tuple(b)) => {
                let o = a.len().cmp(&b.len());
                if o == Ordering::Equal {
                    stack.push(Work::Seq(a, b));
                }
                o
            }
            (Shape::Fun(f), Shape::Fun(g)) => {
                let o = cmp_fun_headers(f, g);
                if o == Ordering::Equal {
                    stack.push(Work::Seq(free_vars(f), free_vars(g)));
                }
                o
            }
            (Shape::Map(a), Shape::Map(b)) => {
                // By size, then keys in term order, then values in key order.
                let o = a.len().cmp(&b.len());
                if o == Ordering::Equal {
                    orders.ensure(a);
                    orders.ensure(b);
                    let sa = orders.get(a).to_vec();
                    let sb = orders.get(b);
                    Orders::push_pairs(&mut stack, &sa, sb);
                }
                o
            }
            (a, b) => cmp_numbers(a, b),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
}

/// Erlang's `=:=` (with `0.0 =:= -0.0`, as in OTP 25 and 26).
pub(super) fn equal(a: &Term, b: &Term) -> bool {
    let mut orders = Orders::default();
    let mut stack: Vec<Work<'_>> = Vec::new();
    let mut next = Some((X::T(a), X::T(b)));
    loop {
        let (x, y) = match next.take() {
            Some(pair) => pair,
            None => match pop_pair(&mut stack) {
                Some(pair) => pair,
                None => return true,
            },
        };
        // Same term: nothing to look at (common for shared keys and atoms).
        if let (X::T(a), X::T(b)) = (x, y)
            && std::ptr::eq(a, b)
        {
            continue;
        }
        let same = match (shape(x), shape(y)) {
            (Shape::Int(a), Shape::Int(b)) => a == b,
            (Shape::Big(a), Shape::Big(b)) => a == b,
            (Shape::Float(a), Shape::Float(b)) => eq_f64(a, b),
            (Shape::Atom(a), Shape::Atom(b)) => a == b,
            (Shape::Ref(a), Shape::Ref(b)) => a == b,
            (Shape::Port(a), Shape::Port(b)) => a == b,
            (Shape::Pid(a), Shape::Pid(b)) => a == b,
            (Shape::Nil, Shape::Nil) => true,
            (Shape::Bits(a, ab), Shape::Bits(b, bb)) => {
                (a.len() == b.len()) && cmp_bits(a, ab, b, bb) == Ordering::Equal
            }
            (Shape::Cons(h1, r1), Shape::Cons(h2, r2)) => {
                stack.push(Work::One(r1, r2));
                next = Some((h1, h2));
                true
            }
            (Shape::Tuple(a), Shape::Tuple(b)) => {
                let same = a.len() == b.len();
                if same {
                    stack.push(Work::Seq(a, b));
                }
                same
            }
            (Shape::Fun(f), Shape::Fun(g)) => {
                let same = cmp_fun_headers(f, g) == Ordering::Equal;
                if same {
                    stack.push(Work::Seq(free_vars(f), free_vars(g)));
                }
                same
            }
            (Shape::Map(a), Shape::Map(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                // Usually both maps come in the same order (OTP sorts small
                // maps) with keys that hold no terms (atoms, numbers,
                // binaries): compare in place. Otherwise compare in key
                // order, keys and values as work (no recursion).
                let in_place = a
                    .iter()
                    .zip(b)
                    .all(|(p, q)| !p.0.has_children() && !q.0.has_children() && equal(&p.0, &q.0));
                if in_place {
                    stack.push(Work::Refs(
                        a.iter().zip(b).rev().map(|(p, q)| (&p.1, &q.1)).collect(),
                    ));
                } else {
                    orders.ensure(a);
                    orders.ensure(b);
                    let sa = orders.get(a).to_vec();
                    let sb = orders.get(b);
                    Orders::push_pairs(&mut stack, &sa, sb);
                }
                true
            }
            _ => false,
        };
        if !same {
            return false;
        }
    }
}

// ---------------------------------------------------------------- hash

/// Values still to hash.
enum HashWork<'a> {
    One(X<'a>),
    Seq(&'a [Term]),
}

/// Hashes the structure in pre-order. A map contributes an
/// order-independent sum of a shallow hash of each pair (no descent), so
/// the walk needs no nested hasher and stays iterative.
pub(super) fn hash<H: Hasher>(t: &Term, h: &mut H) {
    let mut stack: Vec<HashWork<'_>> = Vec::new();
    let mut next = Some(X::T(t));
    loop {
        let x = match next.take() {
            Some(x) => x,
            None => loop {
                match stack.last_mut() {
                    None => return,
                    Some(HashWork::One(x)) => {
                        let x = *x;
                        stack.pop();
                        break x;
                    }
                    Some(HashWork::Seq(s)) => match s.split_first() {
                        Some((first, rest)) => {
                            *s = rest;
                            break X::T(first);
                        }
                        None => {
                            stack.pop();
                        }
                    },
                }
            },
        };
        let s = shape(x);
        h.write_u8(rank(&s));
        match s {
            Shape::Cons(head, rest) => {
                stack.push(HashWork::One(rest));
                next = Some(head);
            }
            Shape::Tuple(v) => {
                h.write_usize(v.len());
                stack.push(HashWork::Seq(v));
            }
            Shape::Fun(f) => {
                shallow(&s, h);
                stack.push(HashWork::Seq(free_vars(f)));
            }
            Shape::Map(m) => {
                h.write_usize(m.len());
                let sum = m.iter().fold(0u64, |acc, (k, v)| {
                    let mut hk = FxHasher::default();
                    shallow(&shape(X::T(k)), &mut hk);
                    let mut hv = FxHasher::default();
                    shallow(&shape(X::T(v)), &mut hv);
                    acc.wrapping_add(mix(hk.finish() ^ hv.finish().rotate_left(29)))
                });
                h.write_u64(sum);
            }
            other => shallow(&other, h),
        }
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// What can be hashed of a value without looking into its children.
fn shallow<H: Hasher>(s: &Shape<'_>, h: &mut H) {
    match s {
        Shape::Int(i) => h.write_i64(*i),
        Shape::Big(b) => b.hash(h),
        Shape::Float(f) => h.write_u64(if *f == 0.0 { 0 } else { f.to_bits() }),
        Shape::Atom(a) => a.hash(h),
        Shape::Ref(r) => r.hash(h),
        Shape::Port(p) => p.hash(h),
        Shape::Pid(p) => p.hash(h),
        Shape::Tuple(v) => h.write_usize(v.len()),
        Shape::Map(m) => h.write_usize(m.len()),
        Shape::Nil => h.write_u8(0),
        Shape::Cons(..) => h.write_u8(1),
        Shape::Fun(f) => match f {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                module.hash(h);
                function.hash(h);
                h.write_u8(*arity);
            }
            Fun::Closure {
                module,
                index,
                uniq,
                ..
            } => {
                module.hash(h);
                h.write_u32(*index);
                h.write(uniq);
            }
        },
        Shape::Bits(bytes, bits) => {
            h.write_u64(bit_len(bytes, *bits));
            if let Some((last, init)) = bytes.split_last() {
                h.write(init);
                h.write_u8(last & (0xFFu8 << (8 - u32::from(*bits))));
            }
        }
    }
}

impl PartialEq for Term {
    /// Erlang's exact equality `=:=`: `1 != 1.0`, a byte list equals the
    /// list of the same integers, maps are equal whatever their order, the
    /// padding bits of a bitstring do not count, and (as in OTP 25 and 26,
    /// unlike OTP 27) `0.0 == -0.0`. Iterative: deep terms are fine.
    fn eq(&self, other: &Term) -> bool {
        equal(self, other)
    }
}

impl Eq for Term {}

impl PartialOrd for Term {
    fn partial_cmp(&self, other: &Term) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Term {
    /// Erlang's term order, `number < atom < reference < fun < port < pid <
    /// tuple < map < nil < list < bitstring`, made total and consistent
    /// with `==`: an integer comes before an equal float (as map keys
    /// order them). Pids order as in Erlang (number, then node);
    /// references and funs of different nodes follow a fixed order of
    /// this crate.
    fn cmp(&self, other: &Term) -> Ordering {
        compare(self, other)
    }
}

impl Hash for Term {
    /// Agrees with `==`: equal terms in different representations hash
    /// the same.
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash(self, state);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use bytes::Bytes;

    use super::*;

    fn h(t: &Term) -> u64 {
        let mut s = DefaultHasher::new();
        t.hash(&mut s);
        s.finish()
    }

    fn atom(s: &str) -> Term {
        Term::atom(s).unwrap()
    }

    #[test]
    fn list_representations_are_equal_and_hash_alike() {
        let bytes = Term::ByteList(Bytes::from_static(b"ab"));
        let ints = Term::List(vec![Term::Int(97), Term::Int(98)]);
        let split = Term::Improper(
            vec![Term::Int(97)],
            Box::new(Term::ByteList(Bytes::from_static(b"b"))),
        );
        for t in [&ints, &split] {
            assert_eq!(&bytes, t);
            assert_eq!(h(&bytes), h(t));
            assert_eq!(bytes.cmp(t), Ordering::Equal);
        }
        assert_eq!(Term::List(vec![]), Term::Nil);
        assert_eq!(Term::ByteList(Bytes::new()), Term::Nil);
        assert_ne!(
            Term::Improper(vec![Term::Int(1)], Box::new(Term::Int(2))),
            Term::List(vec![Term::Int(1), Term::Int(2)])
        );
    }

    #[test]
    fn numbers_are_exact() {
        assert_ne!(Term::Int(1), Term::Float(1.0));
        assert_eq!(Term::Float(0.0), Term::Float(-0.0));
        assert_eq!(h(&Term::Float(0.0)), h(&Term::Float(-0.0)));
        assert_eq!(Term::Big(Box::new(BigInt::from(5i64))), Term::Int(5));
        assert_eq!(
            h(&Term::Big(Box::new(BigInt::from(5i64)))),
            h(&Term::Int(5))
        );
        // Order by value, the integer first on ties.
        let mut v = vec![
            Term::Float(1.5),
            Term::Int(1),
            Term::Float(1.0),
            Term::from(u128::MAX),
            Term::Float(1e300),
            Term::from(i128::MIN),
            Term::Float(-1e300),
            Term::Int(2),
        ];
        v.sort();
        assert_eq!(
            Term::List(v).to_string(),
            format!("[-1.0e300,{},1,1.0,1.5,2,{},1.0e300]", i128::MIN, u128::MAX)
        );
        let two64 = Term::from(1u128 << 64);
        assert!(two64 < Term::Float(18446744073709551616.0));
        assert!(Term::Float(18446744073709551616.0) < Term::from((1u128 << 64) + 1));
    }

    #[test]
    fn term_order_of_types() {
        let order = [
            Term::Int(1),
            atom("a"),
            Term::Ref(ExtRef::new(Atom::NONODE, 0, &[1, 2, 3]).unwrap()),
            Term::from(Fun::Export {
                module: Atom::OK,
                function: Atom::OK,
                arity: 0,
            }),
            Term::Port(ExtPort {
                node: Atom::NONODE,
                id: 0,
                creation: 0,
            }),
            Term::Pid(Pid::new(0, 1, 1)),
            Term::Tuple(vec![]),
            Term::Map(vec![]),
            Term::Nil,
            Term::List(vec![Term::Int(1)]),
            Term::binary(&[]),
        ];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert!(atom("b") > atom("abc"));
        assert!(Term::Tuple(vec![Term::Int(9)]) < Term::Tuple(vec![Term::Int(1), Term::Int(1)]));
        assert!(Term::List(vec![Term::Int(1)]) < Term::List(vec![Term::Int(1), Term::Int(0)]));
        assert!(
            Term::Improper(vec![Term::Int(1)], Box::new(Term::Int(5)))
                < Term::List(vec![Term::Int(1), Term::Int(0)])
        );
    }

    #[test]
    fn maps_ignore_order() {
        let a = Term::Map(vec![(atom("a"), Term::Int(1)), (atom("b"), Term::Int(2))]);
        let b = Term::Map(vec![(atom("b"), Term::Int(2)), (atom("a"), Term::Int(1))]);
        let c = Term::Map(vec![(atom("b"), Term::Int(2)), (atom("a"), Term::Int(3))]);
        assert_eq!(a, b);
        assert_eq!(h(&a), h(&b));
        assert_eq!(a.cmp(&b), Ordering::Equal);
        assert_ne!(a, c);
        assert!(a < c);
        // Size first, then keys, then values.
        let small = Term::Map(vec![(atom("z"), Term::Int(0))]);
        assert!(small < a);
        let d = Term::Map(vec![(atom("a"), Term::Int(9)), (atom("c"), Term::Int(0))]);
        assert!(a < d);
    }

    #[test]
    fn bitstrings_ignore_padding() {
        let a = Term::BitBinary {
            bytes: Bytes::from_static(&[1, 0b1010_0000]),
            bits: 3,
        };
        let b = Term::BitBinary {
            bytes: Bytes::from_static(&[1, 0b1011_1111]),
            bits: 3,
        };
        assert_eq!(a, b);
        assert_eq!(h(&a), h(&b));
        let whole = Term::BitBinary {
            bytes: Bytes::from_static(&[1, 2]),
            bits: 8,
        };
        assert_eq!(whole, Term::binary(&[1, 2]));
        assert!(Term::binary(&[1]) < a);
        assert!(a < Term::binary(&[1, 0b1100_0000]));
        assert!(Term::binary(&[1, 0b1010_0000]) > a);
    }

    #[test]
    fn deep_equality_and_order_on_a_small_stack() {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let build = |leaf: i64| {
                    let mut t = Term::Int(leaf);
                    for i in 0..100_000 {
                        t = if i % 2 == 0 {
                            Term::Tuple(vec![Term::Nil, t])
                        } else {
                            Term::Map(vec![(Term::Int(1), Term::List(vec![t]))])
                        };
                    }
                    t
                };
                let (a, b, c) = (build(1), build(1), build(2));
                assert_eq!(a, b);
                assert_ne!(a, c);
                assert!(a < c);
                assert_eq!(h(&a), h(&b));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
