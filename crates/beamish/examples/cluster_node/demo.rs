//! `beamish_demo`: Rust functions that Erlang calls with `erpc` and `rpc`.

use std::cmp::Ordering;
use std::time::Duration;

use beamish::dist::rpc::{self, Exception};
use beamish::dist::{Atom, BigInt, Term};

/// Registers `add/2`, `echo/1`, `fail/1` and `sleep/1`.
pub fn register() -> Result<(), beamish::Error> {
    rpc::register("beamish_demo", "add", |args: Vec<Term>| async move {
        match args.as_slice() {
            [a, b] => match (int(a), int(b)) {
                (Some(a), Some(b)) => Ok(from_big(add(&a, &b))),
                _ => Err(Exception::badarg()),
            },
            _ => Err(Exception::badarg()),
        }
    })?;
    rpc::register("beamish_demo", "echo", |args: Vec<Term>| async move {
        match <[Term; 1]>::try_from(args) {
            Ok([t]) => Ok(t),
            Err(_) => Err(Exception::badarg()),
        }
    })?;
    rpc::register("beamish_demo", "fail", |args: Vec<Term>| async move {
        match <[Term; 1]>::try_from(args) {
            Ok([r]) => Err(Exception::Error(r)),
            Err(_) => Err(Exception::badarg()),
        }
    })?;
    rpc::register("beamish_demo", "sleep", |args: Vec<Term>| async move {
        match args.as_slice() {
            [Term::Int(ms)] if *ms >= 0 => {
                beamish::sleep(Duration::from_millis(ms.unsigned_abs())).await;
                Ok(Term::Atom(Atom::new("ok").unwrap_or(Atom::UNDEFINED)))
            }
            _ => Err(Exception::badarg()),
        }
    })?;
    Ok(())
}

/// An integer term as a big integer; `None` for anything else.
fn int(t: &Term) -> Option<BigInt> {
    match t {
        Term::Int(n) => Some(BigInt::from(*n)),
        Term::Big(b) => Some((**b).clone()),
        _ => None,
    }
}

/// The smallest term for a value: `Int` when it fits.
fn from_big(b: BigInt) -> Term {
    match b.to_i64() {
        Some(n) => Term::Int(n),
        None => Term::Big(Box::new(b)),
    }
}

/// `a + b`, on sign and little-endian magnitude.
fn add(a: &BigInt, b: &BigInt) -> BigInt {
    let (ma, mb) = (a.magnitude(), b.magnitude());
    if a.is_negative() == b.is_negative() {
        return BigInt::new(a.is_negative(), mag_add(ma, mb));
    }
    match mag_cmp(ma, mb) {
        Ordering::Equal => BigInt::new(false, Vec::new()),
        Ordering::Greater => BigInt::new(a.is_negative(), mag_sub(ma, mb)),
        Ordering::Less => BigInt::new(b.is_negative(), mag_sub(mb, ma)),
    }
}

fn mag_add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0u16;
    for i in 0..a.len().max(b.len()) {
        let s = u16::from(a.get(i).copied().unwrap_or(0))
            + u16::from(b.get(i).copied().unwrap_or(0))
            + carry;
        out.push((s & 0xff) as u8);
        carry = s >> 8;
    }
    if carry > 0 {
        out.push(carry as u8);
    }
    out
}

/// `a - b` for `a >= b`.
fn mag_sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0i16;
    for (i, &x) in a.iter().enumerate() {
        let mut d = i16::from(x) - i16::from(b.get(i).copied().unwrap_or(0)) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out.push(d as u8);
    }
    out
}

fn mag_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |m: &[u8]| m.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    let (la, lb) = (trim(a), trim(b));
    la.cmp(&lb)
        .then_with(|| a[..la].iter().rev().cmp(b[..lb].iter().rev()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_across_signs_and_sizes() {
        let big = |n: i128| BigInt::from(n);
        for (a, b) in [
            (1i128, 2i128),
            (i64::MAX as i128, 1),
            (-(i64::MAX as i128), -10),
            (1 << 100, -(1 << 100)),
            (-(1 << 90), 5),
            (1 << 70, -(1 << 69)),
        ] {
            assert_eq!(add(&big(a), &big(b)), big(a + b), "{a} + {b}");
        }
    }
}
