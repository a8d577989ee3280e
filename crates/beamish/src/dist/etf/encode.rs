//! The encoder: OTP's canonical forms, written in pre-order from an
//! explicit stack (no recursion).

use super::EncodeError;
use super::tags::*;
use crate::dist::remote::{WirePid, pid_to_wire};
use crate::dist::term::{BigInt, Fun, valid_bits};
use crate::dist::{Atom, Term};

type Result<T> = std::result::Result<T, EncodeError>;

/// What is left to write.
enum Work<'a> {
    /// Terms, written in order.
    Seq(&'a [Term]),
    /// Map pairs, written key, value, key, value...
    Pairs(&'a [(Term, Term)]),
    /// The value of a pair whose key is written.
    One(&'a Term),
    /// Bytes of a byte list written as `SMALL_INTEGER_EXT`s (a byte list
    /// inside a `LIST_EXT`).
    ByteInts(&'a [u8]),
    /// The `[]` that ends a proper list.
    Nil,
    /// A closure is complete: write its size at this offset.
    FunSize(usize),
}

/// A first guess at the encoded size, from the top of the term only, so
/// that a fresh buffer is not regrown from nothing (a small message would
/// otherwise be copied five times on its way to 80 bytes).
pub(super) fn size_hint(t: &Term) -> usize {
    const SMALL: usize = 128;
    match t {
        Term::Binary(b) | Term::ByteList(b) | Term::BitBinary { bytes: b, .. } => b.len() + 8,
        Term::List(v) | Term::Tuple(v) | Term::Improper(v, _) => SMALL.max(16 + v.len() * 6),
        Term::Map(m) => SMALL.max(16 + m.len() * 12),
        Term::Big(b) => 8 + b.magnitude().len(),
        _ => SMALL,
    }
}

/// Appends the encoding of `root` (no version byte) to `out`.
pub(super) fn encode(root: &Term, out: &mut Vec<u8>) -> Result<()> {
    let mut stack: Vec<Work<'_>> = Vec::new();
    let mut next = Some(root);
    loop {
        let t = match next.take() {
            Some(t) => t,
            None => match pop(&mut stack, out)? {
                Some(t) => t,
                None => return Ok(()),
            },
        };
        if !leaf(t, out)? {
            container(t, out, &mut stack)?;
        }
    }
}

/// The next term to write from the stack, writing the leaves of sequences
/// on the way (a list of integers never touches the stack per element).
fn pop<'a>(stack: &mut Vec<Work<'a>>, out: &mut Vec<u8>) -> Result<Option<&'a Term>> {
    loop {
        let Some(top) = stack.last_mut() else {
            return Ok(None);
        };
        match top {
            Work::Seq(items) => {
                // Every element takes at least two bytes.
                out.reserve(items.len() * 2);
                while let Some((first, rest)) = items.split_first() {
                    *items = rest;
                    // Integers first: the common element of long lists.
                    if let Term::Int(i) = first {
                        int(*i, out);
                    } else if !leaf(first, out)? {
                        return Ok(Some(first));
                    }
                }
                stack.pop();
            }
            Work::Pairs(pairs) => match pairs.split_first() {
                Some(((k, v), rest)) => {
                    *pairs = rest;
                    if leaf(k, out)? {
                        if !leaf(v, out)? {
                            return Ok(Some(v));
                        }
                    } else {
                        stack.push(Work::One(v));
                        return Ok(Some(k));
                    }
                }
                None => {
                    stack.pop();
                }
            },
            Work::One(t) => {
                let t = *t;
                stack.pop();
                return Ok(Some(t));
            }
            Work::ByteInts(bytes) => {
                out.reserve(bytes.len() * 2);
                for &b in bytes.iter() {
                    out.extend_from_slice(&[SMALL_INTEGER, b]);
                }
                stack.pop();
            }
            Work::Nil => {
                out.push(NIL);
                stack.pop();
            }
            Work::FunSize(at) => {
                let at = *at;
                stack.pop();
                let size = len32(out.len() - at)?;
                if let Some(field) = out.get_mut(at..at + 4) {
                    field.copy_from_slice(&size);
                }
            }
        }
    }
}

fn len32(n: usize) -> Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_be_bytes)
        .map_err(|_| EncodeError::TooLarge)
}

/// Writes `t` if it holds no terms (or no terms left to write); false for
/// a container, which [`container`] writes.
#[inline]
fn leaf(t: &Term, out: &mut Vec<u8>) -> Result<bool> {
    match t {
        Term::Int(i) => int(*i, out),
        Term::Atom(a) => atom(*a, out),
        Term::Nil => out.push(NIL),
        Term::Float(f) => {
            out.push(NEW_FLOAT);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Term::Binary(b) => binary(b, out)?,
        Term::BitBinary { bytes, bits } => {
            let bits = valid_bits(*bits);
            if bits == 8 || bytes.is_empty() {
                binary(bytes, out)?;
            } else {
                out.push(BIT_BINARY);
                out.extend_from_slice(&len32(bytes.len())?);
                out.push(bits);
                out.extend_from_slice(bytes);
            }
        }
        Term::Big(b) => big(b, out)?,
        Term::Pid(p) => pid(pid_to_wire(*p), out),
        Term::Ref(r) => {
            out.push(NEWER_REFERENCE);
            out.extend_from_slice(&(r.words().len() as u16).to_be_bytes());
            atom(r.node, out);
            out.extend_from_slice(&r.creation.to_be_bytes());
            for w in r.words() {
                out.extend_from_slice(&w.to_be_bytes());
            }
        }
        Term::Port(p) => match u32::try_from(p.id) {
            Ok(id) => {
                out.push(NEW_PORT);
                atom(p.node, out);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&p.creation.to_be_bytes());
            }
            Err(_) => {
                out.push(V4_PORT);
                atom(p.node, out);
                out.extend_from_slice(&p.id.to_be_bytes());
                out.extend_from_slice(&p.creation.to_be_bytes());
            }
        },
        Term::ByteList(b) => {
            if b.is_empty() {
                out.push(NIL);
            } else if let Ok(n) = u16::try_from(b.len()) {
                out.push(STRING);
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(b);
            } else {
                return Ok(false);
            }
        }
        Term::Tuple(v) if v.is_empty() => out.extend_from_slice(&[SMALL_TUPLE, 0]),
        Term::List(v) if v.is_empty() => out.push(NIL),
        Term::Map(m) if m.is_empty() => out.extend_from_slice(&[MAP, 0, 0, 0, 0]),
        Term::Fun(f) => match &**f {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                out.push(EXPORT);
                atom(*module, out);
                atom(*function, out);
                out.extend_from_slice(&[SMALL_INTEGER, *arity]);
            }
            Fun::Closure { .. } => return Ok(false),
        },
        _ => return Ok(false),
    }
    Ok(true)
}

/// Writes a container's header and stacks its contents.
fn container<'a>(t: &'a Term, out: &mut Vec<u8>, stack: &mut Vec<Work<'a>>) -> Result<()> {
    match t {
        Term::Tuple(v) => {
            match u8::try_from(v.len()) {
                Ok(n) => out.extend_from_slice(&[SMALL_TUPLE, n]),
                Err(_) => {
                    out.push(LARGE_TUPLE);
                    out.extend_from_slice(&len32(v.len())?);
                }
            }
            stack.push(Work::Seq(v));
        }
        Term::Map(m) => {
            out.push(MAP);
            out.extend_from_slice(&len32(m.len())?);
            stack.push(Work::Pairs(m));
        }
        Term::List(_) | Term::Improper(..) | Term::ByteList(_) => list(t, out, stack)?,
        Term::Fun(f) => {
            if let Fun::Closure {
                module,
                arity,
                uniq,
                index,
                old_index,
                old_uniq,
                pid: creator,
                free,
            } = &**f
            {
                out.push(NEW_FUN);
                let size_at = out.len();
                out.extend_from_slice(&[0; 4]);
                out.push(*arity);
                out.extend_from_slice(uniq);
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&len32(free.len())?);
                atom(*module, out);
                int(*old_index, out);
                int(*old_uniq, out);
                pid(pid_to_wire(*creator), out);
                stack.push(Work::FunSize(size_at));
                stack.push(Work::Seq(free));
            }
        }
        _ => {
            // Every other term is a leaf.
            leaf(t, out)?;
        }
    }
    Ok(())
}

/// A list in any representation, written as OTP would write the same list:
/// `STRING_EXT` for a proper list of at most 65,535 integers 0..=255,
/// `LIST_EXT` otherwise. A list whose tail is itself a list (which only a
/// nested `LIST_EXT` tail produces) is written flat.
fn list<'a>(t: &'a Term, out: &mut Vec<u8>, stack: &mut Vec<Work<'a>>) -> Result<()> {
    enum Seg<'a> {
        Terms(&'a [Term]),
        Bytes(&'a [u8]),
    }
    // Walk the chain of list tails: segments, then the final tail.
    let mut segs: Vec<Seg<'a>> = Vec::new();
    let mut count = 0usize;
    let mut tail: Option<&'a Term> = None;
    let mut cur = t;
    loop {
        match cur {
            Term::List(v) => {
                count += v.len();
                segs.push(Seg::Terms(v));
                break;
            }
            Term::ByteList(b) => {
                count += b.len();
                segs.push(Seg::Bytes(b));
                break;
            }
            Term::Nil => break,
            Term::Improper(v, next) => {
                count += v.len();
                segs.push(Seg::Terms(v));
                cur = next;
            }
            other => {
                tail = Some(other);
                break;
            }
        }
    }
    if count == 0 {
        // `[] ++ Tail` is just the tail.
        match tail {
            Some(t) => stack.push(Work::One(t)),
            None => out.push(NIL),
        }
        return Ok(());
    }
    let is_byte = |t: &Term| matches!(t, Term::Int(0..=255));
    if tail.is_none()
        && count <= usize::from(u16::MAX)
        && segs.iter().all(|s| match s {
            Seg::Terms(v) => v.iter().all(is_byte),
            Seg::Bytes(_) => true,
        })
    {
        out.push(STRING);
        out.extend_from_slice(&(count as u16).to_be_bytes());
        for s in &segs {
            match s {
                Seg::Terms(v) => out.extend(v.iter().map(|t| match t {
                    Term::Int(i) => *i as u8,
                    _ => 0,
                })),
                Seg::Bytes(b) => out.extend_from_slice(b),
            }
        }
        return Ok(());
    }
    out.push(LIST);
    out.extend_from_slice(&len32(count)?);
    match tail {
        Some(t) => stack.push(Work::One(t)),
        None => stack.push(Work::Nil),
    }
    for s in segs.into_iter().rev() {
        stack.push(match s {
            Seg::Terms(v) => Work::Seq(v),
            Seg::Bytes(b) => Work::ByteInts(b),
        });
    }
    Ok(())
}

#[inline(always)]
fn int(i: i64, out: &mut Vec<u8>) {
    if (0..=255).contains(&i) {
        out.extend_from_slice(&[SMALL_INTEGER, i as u8]);
    } else if let Ok(i) = i32::try_from(i) {
        let [a, b, c, d] = i.to_be_bytes();
        out.extend_from_slice(&[INTEGER, a, b, c, d]);
    } else {
        let m = i.unsigned_abs();
        let n = 8 - (m.leading_zeros() / 8) as usize;
        out.extend_from_slice(&[SMALL_BIG, n as u8, u8::from(i < 0)]);
        out.extend_from_slice(m.to_le_bytes().get(..n).unwrap_or_default());
    }
}

fn big(b: &BigInt, out: &mut Vec<u8>) -> Result<()> {
    if let Some(i) = b.to_i64() {
        int(i, out);
        return Ok(());
    }
    let m = b.magnitude();
    match u8::try_from(m.len()) {
        Ok(n) => out.extend_from_slice(&[SMALL_BIG, n]),
        Err(_) => {
            out.push(LARGE_BIG);
            out.extend_from_slice(&len32(m.len())?);
        }
    }
    out.push(u8::from(b.is_negative()));
    out.extend_from_slice(m);
    Ok(())
}

#[inline]
fn atom(a: Atom, out: &mut Vec<u8>) {
    let name = a.as_str().as_bytes();
    match u8::try_from(name.len()) {
        Ok(n) => out.extend_from_slice(&[SMALL_ATOM_UTF8, n]),
        Err(_) => {
            // At most 255 characters of at most 4 bytes: fits a u16.
            out.push(ATOM_UTF8);
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
}

fn binary(b: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.push(BINARY);
    out.extend_from_slice(&len32(b.len())?);
    out.extend_from_slice(b);
    Ok(())
}

#[inline]
fn pid(w: WirePid, out: &mut Vec<u8>) {
    out.push(NEW_PID);
    atom(w.node, out);
    out.extend_from_slice(&w.id.to_be_bytes());
    out.extend_from_slice(&w.serial.to_be_bytes());
    out.extend_from_slice(&w.creation.to_be_bytes());
}
