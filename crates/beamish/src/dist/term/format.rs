//! Erlang syntax for [`Term`], as `~w` prints it, without recursion.

use std::fmt::{self, Write};

use super::cmp::{Shape, X, shape};
use super::{Fun, Term};

/// What is left to print.
enum P<'a> {
    X(X<'a>),
    Str(&'static str),
    /// Elements of a tuple (or fun) after the first: `,e` each.
    Seq(&'a [Term], bool),
    /// Pairs of a map: `k => v`, comma-separated, last pair first (they
    /// are popped from the end).
    Pairs(Vec<&'a (Term, Term)>, bool),
    /// The rest of a list after an element: `,e...`, `|tail` or nothing.
    ListRest(X<'a>),
}

pub(super) fn write(t: &Term, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut stack: Vec<P<'_>> = vec![P::X(X::T(t))];
    while let Some(p) = stack.pop() {
        match p {
            P::Str(s) => f.write_str(s)?,
            P::Seq(items, first) => {
                if let Some((head, rest)) = items.split_first() {
                    if !first {
                        f.write_char(',')?;
                    }
                    stack.push(P::Seq(rest, false));
                    stack.push(P::X(X::T(head)));
                }
            }
            P::Pairs(mut pairs, first) => {
                if let Some((k, v)) = pairs.pop() {
                    if !first {
                        f.write_char(',')?;
                    }
                    stack.push(P::Pairs(pairs, false));
                    stack.push(P::X(X::T(v)));
                    stack.push(P::Str(" => "));
                    stack.push(P::X(X::T(k)));
                }
            }
            P::ListRest(rest) => match shape(rest) {
                Shape::Nil => f.write_char(']')?,
                Shape::Cons(head, rest) => {
                    f.write_char(',')?;
                    stack.push(P::ListRest(rest));
                    stack.push(P::X(head));
                }
                _ => {
                    f.write_char('|')?;
                    stack.push(P::Str("]"));
                    stack.push(P::X(rest));
                }
            },
            P::X(x) => match shape(x) {
                Shape::Int(i) => write!(f, "{i}")?,
                Shape::Big(b) => write!(f, "{b}")?,
                Shape::Float(v) => write_float(v, f)?,
                Shape::Atom(a) => write!(f, "{a}")?,
                Shape::Ref(r) => write!(f, "{r}")?,
                Shape::Port(p) => write!(f, "{p}")?,
                Shape::Pid(p) => write!(f, "{p}")?,
                Shape::Fun(fun) => match fun {
                    Fun::Export {
                        module,
                        function,
                        arity,
                    } => write!(f, "fun {module}:{function}/{arity}")?,
                    Fun::Closure {
                        module,
                        index,
                        old_uniq,
                        ..
                    } => write!(f, "#Fun<{module}.{index}.{old_uniq}>")?,
                },
                Shape::Tuple(items) => {
                    f.write_char('{')?;
                    stack.push(P::Str("}"));
                    stack.push(P::Seq(items, true));
                }
                Shape::Map(pairs) => {
                    // In key order, so that equal maps print alike (and as
                    // OTP prints maps of up to 32 keys).
                    f.write_str("#{")?;
                    stack.push(P::Str("}"));
                    let mut sorted: Vec<&(Term, Term)> = pairs.iter().collect();
                    if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
                        sorted.sort_by(|a, b| a.0.cmp(&b.0));
                    }
                    sorted.reverse();
                    stack.push(P::Pairs(sorted, true));
                }
                Shape::Nil => f.write_str("[]")?,
                Shape::Cons(head, rest) => {
                    f.write_char('[')?;
                    stack.push(P::ListRest(rest));
                    stack.push(P::X(head));
                }
                Shape::Bits(bytes, bits) => {
                    f.write_str("<<")?;
                    if let Some((last, init)) = bytes.split_last() {
                        for b in init {
                            write!(f, "{b},")?;
                        }
                        if bits == 8 {
                            write!(f, "{last}")?;
                        } else {
                            write!(f, "{}:{bits}", last >> (8 - bits))?;
                        }
                    }
                    f.write_str(">>")?;
                }
            },
        }
    }
    Ok(())
}

/// A float as Erlang prints it: the shortest digits that read back to the
/// same float, in plain notation when that is no longer than scientific
/// notation and the magnitude is below 2^53, else in scientific notation
/// (`1.0e3`, `100.0`, `1.5e-5`, `0.001`).
fn write_float(v: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if !v.is_finite() {
        // Never decoded (the format has no such floats); printed for debugging.
        return write!(f, "{v}");
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = if digits.is_empty() {
        "0".to_owned()
    } else {
        digits
    };
    let (first, rest) = digits.split_at(1);
    let rest = if rest.is_empty() { "0" } else { rest };
    let scientific = format!("{first}.{rest}e{exp}");

    let plain = if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            let (i, frac) = digits.split_at(int_len);
            format!("{i}.{frac}")
        }
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    if v.is_sign_negative() {
        f.write_char('-')?;
    }
    if v.abs() < 9_007_199_254_740_992.0 && plain.len() <= scientific.len() {
        f.write_str(&plain)
    } else {
        f.write_str(&scientific)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::dist::Atom;

    #[test]
    fn floats_print_as_erlang_does() {
        // Checked against `io:format("~w", [F])` in OTP 25.
        let cases = [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (1.0e100, "1.0e100"),
            (1.0e15, "1.0e15"),
            (123456789.0, "123456789.0"),
            (0.1, "0.1"),
            (1.0e-10, "1.0e-10"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (5.0e-324, "5.0e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (10.0, "10.0"),
            (100.0, "100.0"),
            (1000.0, "1.0e3"),
            (1234.5, "1234.5"),
            (12345678.0, "12345678.0"),
            (0.01, "0.01"),
            (0.0001, "0.0001"),
            (1.5e-5, "1.5e-5"),
            (1.25e-4, "1.25e-4"),
            (123.456e10, "1.23456e12"),
            (9007199254740992.0, "9.007199254740992e15"),
            (4503599627370497.0, "4503599627370497.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (-2.5e20, "-2.5e20"),
        ];
        for (v, s) in cases {
            assert_eq!(Term::Float(v).to_string(), s, "{v:e}");
        }
    }

    #[test]
    fn containers_print_as_erlang_does() {
        let a = Term::Atom(Atom::OK);
        let t = Term::Tuple(vec![
            a.clone(),
            Term::binary(&[1, 2]),
            Term::Improper(vec![Term::Int(1)], Box::new(Term::Int(2))),
            Term::Map(vec![
                (Term::atom("a").unwrap(), Term::Int(1)),
                (a, Term::Nil),
            ]),
            Term::ByteList(Bytes::from_static(b"hi")),
            Term::BitBinary {
                bytes: Bytes::from_static(&[1, 2, 0x3F]),
                bits: 4,
            },
            Term::Tuple(vec![]),
            Term::Map(vec![]),
            Term::binary(&[]),
            Term::atom("hello world").unwrap(),
            Term::Improper(vec![Term::Int(1)], Box::new(Term::List(vec![Term::Int(2)]))),
            Term::from(Fun::Export {
                module: Atom::new("lists").unwrap(),
                function: Atom::new("map").unwrap(),
                arity: 2,
            }),
        ]);
        assert_eq!(
            t.to_string(),
            "{ok,<<1,2>>,[1|2],#{a => 1,ok => []},[104,105],<<1,2,3:4>>,{},#{},<<>>,'hello world',[1,2],fun lists:map/2}"
        );
        assert_eq!(format!("{t:?}"), t.to_string());
    }
}
