//! The external term format against OTP's own output, and against hostile
//! input.
//!
//! - `tests/fixtures/etf/*.bin` were written by OTP's `term_to_binary`
//!   (see the README there): each must decode, re-encode to the same bytes
//!   (except the `legacy_*` encodings we never write), and print as `~w`
//!   printed it;
//! - proptests: any term survives encode/decode with equal value and equal
//!   bytes; random, mutated and truncated input never panics;
//! - limits: huge lengths in short input fail without allocating, deep
//!   nesting fails (or works when allowed) without overflowing the stack,
//!   and the atom budget holds.
#![cfg(feature = "dist")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use beamish::dist::{
    Atom, BigInt, DecodeError, DecodeLimits, ExtPort, ExtRef, Fun, RemoteError, Term,
};
use bytes::Bytes;
use proptest::prelude::*;

// ------------------------------------------------------- counting allocator

/// Counts the bytes each thread allocates, to prove that a decode did not
/// allocate from a length it read.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new_size));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The bytes this thread allocates while running `f`.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

// ---------------------------------------------------------------- fixtures

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/etf")
}

/// (name, bytes, first line of the `~w` text)
fn fixtures() -> Vec<(String, Vec<u8>, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let bin = std::fs::read(&path).unwrap();
        let txt = std::fs::read_to_string(path.with_extension("txt")).unwrap_or_default();
        let first = txt.lines().next().unwrap_or_default().to_owned();
        out.push((name, bin, first));
    }
    out.sort();
    assert!(out.len() > 50, "fixtures missing: {}", out.len());
    out
}

/// Whether our `Display` should match OTP's `~w` text: not for pids,
/// references, ports and funs (their notation is ours), nor for texts
/// shortened by `~W`.
fn comparable_text(name: &str, text: &str) -> bool {
    // Maps above 32 keys: OTP prints them in hash order, we in key order.
    !["pid", "ref", "port", "fun", "tuple_pid", "map_33", "map_40"]
        .iter()
        .any(|p| name.starts_with(p))
        && !text.contains("...")
        && !text.contains("\\x{") // `~w` escapes non-Latin-1 characters; we print them
        && !text.is_empty()
}

#[test]
fn every_fixture_decodes_and_re_encodes_to_otps_bytes() {
    let mut checked_text = 0;
    for (name, bin, text) in fixtures() {
        if name.starts_with("compressed_") {
            assert_eq!(
                Term::decode(&bin),
                Err(DecodeError::Unsupported("compressed term (tag 80)")),
                "{name}"
            );
            continue;
        }
        let term = Term::decode(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = term.encode();
        if name.starts_with("legacy_") {
            // Old encodings: same value, canonical bytes.
            assert_eq!(Term::decode(&again).unwrap(), term, "{name}");
            assert_ne!(again, bin, "{name}: legacy bytes should change");
        } else {
            assert_eq!(again, bin, "{name}: {term}");
        }
        // Zero-copy decoding gives the same term.
        assert_eq!(
            Term::decode_bytes(Bytes::from(bin.clone())).unwrap(),
            term,
            "{name}"
        );
        if comparable_text(&name, &text) {
            assert_eq!(term.to_string(), text, "{name}");
            checked_text += 1;
        }
    }
    assert!(checked_text > 40, "only {checked_text} texts compared");
}

#[test]
fn fixture_details() {
    let read = |name: &str| {
        let bin = std::fs::read(fixture_dir().join(format!("{name}.bin"))).unwrap();
        Term::decode(&bin).unwrap()
    };
    // 1 and 1.0 are distinct keys; the map equals itself in any order.
    let m = read("map_compound_keys");
    let mut pairs = m.as_map().unwrap().to_vec();
    pairs.reverse();
    assert_eq!(Term::Map(pairs), m);
    assert_eq!(
        m.map_get(&Term::Int(1))
            .unwrap()
            .as_atom()
            .unwrap()
            .as_str(),
        "integer"
    );
    assert_eq!(
        m.map_get(&Term::Float(1.0))
            .unwrap()
            .as_atom()
            .unwrap()
            .as_str(),
        "float"
    );
    // Strings are byte lists, equal to lists of integers.
    let s = read("string_abc");
    assert!(matches!(s, Term::ByteList(_)));
    assert_eq!(
        s,
        Term::List(vec![Term::Int(97), Term::Int(98), Term::Int(99)])
    );
    // -0.0 keeps its sign bit.
    assert!(read("float_neg_0").as_float().unwrap().is_sign_negative());
    // A third node's pid maps to a remote pid and back.
    let p = read("pid_third").as_pid().unwrap();
    assert!(p.is_remote());
    assert_eq!(p.node().as_str(), "other@127.0.0.1");
    // The fun keeps its fields.
    assert!(matches!(
        read("fun_export_lists_map_2").as_fun(),
        Some(Fun::Export { arity: 2, .. })
    ));
    assert!(matches!(
        read("fun_local_identity").as_fun(),
        Some(Fun::Closure { .. })
    ));
    assert_eq!(read("int_u64_max_plus_1"), Term::from(u64::MAX as u128 + 1));
}

// -------------------------------------------------------- canonical forms

fn enc(t: &Term) -> Vec<u8> {
    t.encode()
}

fn atom(s: &str) -> Term {
    Term::atom(s).unwrap()
}

#[test]
fn canonical_integer_forms() {
    assert_eq!(enc(&Term::Int(0)), [131, 97, 0]);
    assert_eq!(enc(&Term::Int(255)), [131, 97, 255]);
    assert_eq!(enc(&Term::Int(256)), [131, 98, 0, 0, 1, 0]);
    assert_eq!(enc(&Term::Int(-1)), [131, 98, 255, 255, 255, 255]);
    assert_eq!(enc(&Term::Int(1 << 31)), [131, 110, 4, 0, 0, 0, 0, 128]);
    assert_eq!(
        enc(&Term::Int(-(1 << 31) - 1)),
        [131, 110, 4, 1, 1, 0, 0, 128]
    );
    assert_eq!(
        enc(&Term::Int(i64::MIN)),
        [131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128]
    );
    // A bignum holding a small value is written as the small value.
    assert_eq!(enc(&Term::Big(Box::new(BigInt::from(7i64)))), [131, 97, 7]);
    // Non-canonical input normalises as OTP does.
    assert_eq!(Term::decode(&[131, 110, 1, 0, 5]).unwrap(), Term::Int(5));
    assert!(matches!(
        Term::decode(&[131, 110, 2, 1, 5, 0]).unwrap(),
        Term::Int(-5)
    ));
    assert_eq!(Term::decode(&[131, 110, 1, 1, 0]).unwrap(), Term::Int(0));
    assert_eq!(
        Term::decode(&[131, 98, 0, 0, 0, 1]).unwrap().encode(),
        [131, 97, 1]
    );
    // 2^64 needs 9 bytes.
    let big = Term::from(1u128 << 64);
    assert_eq!(enc(&big), [131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn canonical_list_forms() {
    let ints = |v: &[i64]| Term::List(v.iter().map(|&i| Term::Int(i)).collect());
    assert_eq!(enc(&ints(&[1, 2, 3])), [131, 107, 0, 3, 1, 2, 3]);
    assert_eq!(
        enc(&ints(&[1, 300])),
        [131, 108, 0, 0, 0, 2, 97, 1, 98, 0, 0, 1, 44, 106]
    );
    assert_eq!(enc(&Term::List(vec![])), [131, 106]);
    assert_eq!(enc(&Term::ByteList(Bytes::new())), [131, 106]);
    // Over 65,535 bytes: a LIST_EXT of small integers.
    let long = Term::ByteList(Bytes::from(vec![7u8; 70_000]));
    let e = enc(&long);
    assert_eq!(&e[..6], &[131, 108, 0, 1, 17, 112]);
    assert_eq!(e.len(), 6 + 2 * 70_000 + 1);
    assert_eq!(Term::decode(&e).unwrap(), long);
    // A LIST_EXT whose tail is a list is the flat list, written flat.
    let nested = [131, 108, 0, 0, 0, 1, 97, 1, 108, 0, 0, 0, 1, 97, 2, 106];
    let t = Term::decode(&nested).unwrap();
    assert_eq!(t, ints(&[1, 2]));
    assert_eq!(t.encode(), [131, 107, 0, 2, 1, 2]);
    assert_eq!(t.to_string(), "[1,2]");
    // A LIST_EXT of no elements is its tail.
    assert_eq!(
        Term::decode(&[131, 108, 0, 0, 0, 0, 97, 1]).unwrap(),
        Term::Int(1)
    );
    // An empty STRING_EXT is [].
    assert_eq!(Term::decode(&[131, 107, 0, 0]).unwrap(), Term::Nil);
    // Improper lists.
    let imp = Term::Improper(vec![Term::Int(1), Term::Int(2)], Box::new(Term::Int(3)));
    assert_eq!(enc(&imp), [131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 97, 3]);
}

#[test]
fn canonical_other_forms() {
    assert_eq!(enc(&atom("a")), [131, 119, 1, 97]);
    let long = "ä".repeat(255);
    let e = enc(&atom(&long));
    assert_eq!(&e[..4], &[131, 118, 1, 254]);
    assert_eq!(enc(&Term::Float(-0.0)), [131, 70, 128, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        enc(&Term::BitBinary {
            bytes: Bytes::from_static(&[0b0010_0000]),
            bits: 3
        }),
        [131, 77, 0, 0, 0, 1, 3, 32]
    );
    // A bitstring of whole bytes is a binary.
    assert_eq!(
        enc(&Term::BitBinary {
            bytes: Bytes::from_static(&[255]),
            bits: 8
        }),
        [131, 109, 0, 0, 0, 1, 255]
    );
    assert_eq!(
        Term::decode(&[131, 77, 0, 0, 0, 1, 8, 255]).unwrap(),
        Term::binary(&[255])
    );
    assert_eq!(
        Term::decode(&[131, 77, 0, 0, 0, 0, 0]).unwrap(),
        Term::binary(&[])
    );
    for bad in [
        &[131u8, 77, 0, 0, 0, 0, 3][..],
        &[131, 77, 0, 0, 0, 1, 0, 0],
        &[131, 77, 0, 0, 0, 1, 9, 0],
    ] {
        assert_eq!(Term::decode(bad), Err(DecodeError::BadBitstring));
    }
    // Ports: NEW_PORT_EXT unless the id needs 64 bits.
    let node = Atom::new("n@h").unwrap();
    let small = Term::Port(ExtPort {
        node,
        id: 5,
        creation: 1,
    });
    assert_eq!(enc(&small)[1], 89);
    let v4 = [131, 120, 119, 1, 97, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    assert_eq!(Term::decode(&v4).unwrap().encode()[1], 89);
    let huge = Term::Port(ExtPort {
        node,
        id: 1 << 40,
        creation: 1,
    });
    assert_eq!(enc(&huge)[1], 120);
    assert_eq!(Term::decode(&enc(&huge)).unwrap(), huge);
    // Old pid, port and reference forms come back in the new forms.
    let old_pid = [131, 103, 119, 1, 97, 0, 0, 0, 1, 0, 0, 0, 0, 3];
    assert_eq!(
        Term::decode(&old_pid).unwrap().encode(),
        [131, 88, 119, 1, 97, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    );
    let old_ref = [131, 101, 119, 1, 97, 0, 0, 0, 9, 2];
    assert_eq!(
        Term::decode(&old_ref).unwrap().encode(),
        [131, 90, 0, 1, 119, 1, 97, 0, 0, 0, 2, 0, 0, 0, 9]
    );
    // ATOM_EXT is Latin-1.
    assert_eq!(
        Term::decode(&[131, 100, 0, 2, 195, 164]).unwrap(),
        atom("Ã¤")
    );
    assert_eq!(Term::decode(&[131, 115, 1, 228]).unwrap(), atom("ä"));
    // FLOAT_EXT text.
    let mut old_float = vec![131, 99];
    old_float.extend_from_slice(b"1.50000000000000000000e+00");
    old_float.resize(33, 0);
    assert_eq!(Term::decode(&old_float).unwrap(), Term::Float(1.5));
    assert_eq!(
        Term::decode(&old_float).unwrap().encode(),
        enc(&Term::Float(1.5))
    );
    // A fun of ours encodes with its size counted.
    let f = Term::from(Fun::Closure {
        module: node,
        arity: 1,
        uniq: [9; 16],
        index: 2,
        old_index: 2,
        old_uniq: 123_456_789,
        pid: pid("n@h", 1, 2, 3),
        free: vec![Term::Int(1), Term::from(vec![atom("x")])],
    });
    let e = enc(&f);
    assert_eq!(e[1], 112);
    assert_eq!(
        u32::from_be_bytes(e[2..6].try_into().unwrap()) as usize,
        e.len() - 2
    );
    assert_eq!(Term::decode(&e).unwrap(), f);
}

#[test]
fn invalid_input_is_an_error() {
    use DecodeError::*;
    let cases: &[(&[u8], DecodeError)] = &[
        (&[], Truncated),
        (&[130, 97, 1], BadVersion(130)),
        (&[131], Truncated),
        (&[131, 97], Truncated),
        (&[131, 97, 1, 0], TrailingBytes),
        (&[131, 200], BadTag(200)),
        (&[131, 68, 0], BadTag(68)),
        (&[131, 82, 0], BadAtomCacheRef(0)),
        (&[131, 117, 0, 0, 0, 0], Unsupported("FUN_EXT (tag 117)")),
        (&[131, 121, 0], Unsupported("LOCAL_EXT (tag 121)")),
        (&[131, 70, 127, 240, 0, 0, 0, 0, 0, 0], BadFloat),
        (&[131, 70, 255, 248, 0, 0, 0, 0, 0, 0], BadFloat),
        (&[131, 119, 2, 0xC3, 0x28], BadUtf8),
        (&[131, 100, 1, 0, 97], AtomTooLong),
        (
            &[131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3],
            DuplicateKey,
        ),
        (
            &[131, 90, 0, 0, 119, 1, 97, 0, 0, 0, 0],
            Remote(RemoteError::BadReference),
        ),
        (
            &[131, 90, 0, 6, 119, 1, 97, 0, 0, 0, 0],
            Remote(RemoteError::BadReference),
        ),
        (&[131, 113, 119, 1, 97, 119, 1, 98, 106], BadFun),
        (&[131, 104, 2, 97, 1], Truncated),
    ];
    for (input, err) in cases {
        assert_eq!(Term::decode(input), Err(*err), "{input:?}");
    }
    // An atom of 256 characters.
    let mut long = vec![131, 118, 1, 0];
    long.extend(std::iter::repeat_n(b'a', 256));
    assert_eq!(Term::decode(&long), Err(AtomTooLong));
}

// ------------------------------------------------------------ limits

#[test]
fn huge_lengths_fail_fast_without_allocating() {
    let inputs: &[&[u8]] = &[
        &[131, 108, 255, 255, 255, 255],    // LIST_EXT, 4 Gi elements
        &[131, 105, 255, 255, 255, 255],    // LARGE_TUPLE_EXT
        &[131, 116, 255, 255, 255, 255],    // MAP_EXT
        &[131, 109, 255, 255, 255, 255, 0], // BINARY_EXT
        &[131, 111, 255, 255, 255, 255, 0], // LARGE_BIG_EXT
        &[131, 77, 255, 255, 255, 255, 3],  // BIT_BINARY_EXT
        &[131, 107, 255, 255],              // STRING_EXT
        &[131, 112, 255, 255, 255, 255, 0], // NEW_FUN_EXT
        &[131, 108, 0, 0, 0, 3, 108, 255, 255, 255, 250], // nested: inner count too large
    ];
    for input in inputs {
        let (r, bytes) = allocated_by(|| Term::decode(input));
        assert_eq!(r, Err(DecodeError::Truncated), "{input:?}");
        assert!(bytes < 1024, "{input:?}: {bytes} bytes allocated");
    }
    // Many nested containers each claiming many elements, in 100 KB: the
    // claims add up, so the input fails as soon as they exceed it.
    let mut input = vec![131];
    for _ in 0..20_000 {
        input.extend_from_slice(&[108, 0, 0, 0, 4]);
    }
    let (r, bytes) = allocated_by(|| Term::decode(&input));
    assert_eq!(r, Err(DecodeError::Truncated));
    assert!(
        bytes < 64 * input.len(),
        "{bytes} bytes allocated for {}",
        input.len()
    );
}

/// `depth` nested one-element lists around `[]`.
fn nested_lists(depth: usize) -> Vec<u8> {
    let mut v = vec![131];
    for _ in 0..depth {
        v.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    v.push(106);
    v.extend(std::iter::repeat_n(106, depth));
    v
}

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deep_nesting_is_limited_and_never_overflows_the_stack() {
    on_small_stack(|| {
        // 100k deep: over the default limit.
        let deep = nested_lists(100_000);
        assert_eq!(Term::decode(&deep), Err(DecodeError::TooDeep));
        // Allowed when the limit allows it: decodes, compares, prints,
        // clones, re-encodes and drops without recursion.
        let mut limits = DecodeLimits::default();
        limits.max_depth = 200_000;
        let t = Term::decode_with(&deep, &limits).unwrap();
        assert_eq!(t.encode(), deep);
        let c = t.clone();
        assert_eq!(t, c);
        assert!(t.to_string().starts_with("[[[[["));
        drop(t);
        drop(c);
        // 10k deep: within the default limit.
        let mid = nested_lists(10_000);
        let t = Term::decode(&mid).unwrap();
        assert_eq!(t.encode(), mid);
        // The limit counts containers: exactly max_depth levels decode.
        let mut limits = DecodeLimits::default();
        limits.max_depth = 1_000;
        assert!(Term::decode_with(&nested_lists(1_000), &limits).is_ok());
        assert_eq!(
            Term::decode_with(&nested_lists(1_001), &limits),
            Err(DecodeError::TooDeep)
        );
    });
}

#[test]
fn a_million_deep_term_built_in_code_drops() {
    on_small_stack(|| {
        let mut t = Term::Nil;
        for i in 0..1_000_000 {
            t = match i % 3 {
                0 => Term::List(vec![t]),
                1 => Term::Tuple(vec![Term::Int(i), t]),
                _ => Term::Map(vec![(Term::Int(i), t)]),
            };
        }
        drop(t);
    });
}

#[test]
fn the_atom_budget_holds() {
    let tag = std::process::id();
    let names: Vec<String> = (0..5).map(|i| format!("budget_{tag}_{i}")).collect();
    let mut input = vec![131, 108, 0, 0, 0, 5];
    for n in &names {
        input.extend_from_slice(&[119, n.len() as u8]);
        input.extend_from_slice(n.as_bytes());
    }
    input.push(106);
    let mut limits = DecodeLimits::default();
    limits.max_atoms_created = 3;
    assert_eq!(
        Term::decode_with(&input, &limits),
        Err(DecodeError::TooManyAtoms)
    );
    assert!(Atom::existing(&names[2]).is_some());
    assert!(Atom::existing(&names[3]).is_none());
    // Atoms that exist cost nothing: two are still new.
    limits.max_atoms_created = 1;
    assert_eq!(
        Term::decode_with(&input, &limits),
        Err(DecodeError::TooManyAtoms)
    );
    assert!(Term::decode_with(&input, &limits).is_ok());
    limits.max_atoms_created = 0;
    assert!(Term::decode_with(&input, &limits).is_ok());
}

#[test]
fn the_remote_pid_budget_holds() {
    // Pids of a node already known cost nothing (they are compact); each
    // new (node, creation) costs one.
    let tag = std::process::id();
    let mut input = vec![131, 108, 0, 0, 0, 4];
    for id in 0..4u32 {
        let node = format!("pids_{tag}_{}@h", id.min(2));
        input.extend_from_slice(&[88, 119, node.len() as u8]);
        input.extend_from_slice(node.as_bytes());
        input.extend_from_slice(&id.to_be_bytes());
        input.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    }
    input.push(106);
    let mut limits = DecodeLimits::default();
    limits.max_pids_created = 2;
    assert_eq!(
        Term::decode_with(&input, &limits),
        Err(DecodeError::TooManyPids)
    );
    limits.max_pids_created = 3;
    let t = Term::decode_with(&input, &limits).unwrap();
    // Now known: decoding again creates none.
    limits.max_pids_created = 0;
    assert_eq!(Term::decode_with(&input, &limits).unwrap(), t);
}

#[test]
fn large_binaries_are_slices_of_the_input() {
    let t = Term::from((
        Term::binary(&[1; 63]),
        Term::binary(&[2; 64]),
        Term::binary(&[3; 100_000]),
    ));
    let input = Bytes::from(t.encode());
    let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    let d = Term::decode_bytes(input.clone()).unwrap();
    assert_eq!(d, t);
    let [small, at64, large] = d.as_tuple().unwrap() else {
        panic!()
    };
    assert!(!range.contains(&(small.as_binary().unwrap().as_ptr() as usize)));
    assert!(range.contains(&(at64.as_binary().unwrap().as_ptr() as usize)));
    assert!(range.contains(&(large.as_binary().unwrap().as_ptr() as usize)));
    // From a plain slice everything is copied.
    let d = Term::decode(&input).unwrap();
    assert!(!range.contains(&(d.as_tuple().unwrap()[2].as_binary().unwrap().as_ptr() as usize)));
}

// ------------------------------------------------------------ proptests

/// A pid of `node`, made the way a peer's pid arrives: decoded.
fn pid(node: &str, id: u32, serial: u32, creation: u32) -> beamish::Pid {
    let mut b = vec![131, 88, 119, node.len() as u8];
    b.extend_from_slice(node.as_bytes());
    for w in [id, serial, creation] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    Term::decode(&b).unwrap().as_pid().unwrap()
}

fn arb_atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        Just("ok"),
        Just(""),
        Just("hello world"),
        Just("ünïcödé_λ"),
        Just("undefined"),
        Just("$gen_call"),
        Just("Elixir.Some.Module"),
    ]
    .prop_map(|s| Atom::new(s).unwrap())
    .boxed()
    .prop_union(Just(Atom::new(&"ä".repeat(255)).unwrap()).boxed())
}

fn arb_leaf() -> impl Strategy<Value = Term> {
    let node = prop_oneof![
        Just("a@127.0.0.1"),
        Just("other@host"),
        Just("nonode@nohost")
    ];
    prop_oneof![
        any::<i64>().prop_map(Term::Int),
        (0i64..=255).prop_map(Term::Int),
        any::<i32>().prop_map(|i| Term::Int(i.into())),
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 9..40))
            .prop_map(|(neg, m)| Term::from(BigInt::new(neg, m))),
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 256..300)
        )
            .prop_map(|(neg, mut m)| {
                m.push(1);
                Term::from(BigInt::new(neg, m))
            }),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Term::Float),
        Just(Term::Float(-0.0)),
        arb_atom().prop_map(Term::Atom),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(Term::from),
        (proptest::collection::vec(any::<u8>(), 1..20), 1u8..=7).prop_map(|(b, bits)| {
            Term::BitBinary {
                bytes: Bytes::from(b),
                bits,
            }
        }),
        proptest::collection::vec(any::<u8>(), 1..50).prop_map(|b| Term::ByteList(Bytes::from(b))),
        Just(Term::Nil),
        (node.clone(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(n, id, serial, creation)| Term::Pid(pid(n, id, serial, creation))),
        (
            node.clone(),
            any::<u32>(),
            proptest::collection::vec(any::<u32>(), 1..=5)
        )
            .prop_map(|(n, creation, words)| {
                Term::Ref(ExtRef::new(Atom::new(n).unwrap(), creation, &words).unwrap())
            }),
        (node, any::<u64>(), any::<u32>()).prop_map(|(n, id, creation)| {
            Term::Port(ExtPort {
                node: Atom::new(n).unwrap(),
                id,
                creation,
            })
        }),
        (arb_atom(), arb_atom(), any::<u8>()).prop_map(|(module, function, arity)| {
            Term::from(Fun::Export {
                module,
                function,
                arity,
            })
        }),
    ]
}

/// Keeps the first pair of each key (map keys must be distinct).
fn dedup_keys(pairs: Vec<(Term, Term)>) -> Vec<(Term, Term)> {
    let mut out: Vec<(Term, Term)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if !out.iter().any(|(k2, _)| *k2 == k) {
            out.push((k, v));
        }
    }
    out
}

fn arb_term() -> impl Strategy<Value = Term> {
    arb_leaf().prop_recursive(6, 256, 12, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..12).prop_map(Term::List),
            proptest::collection::vec(inner.clone(), 0..12).prop_map(Term::Tuple),
            (proptest::collection::vec(inner.clone(), 1..6), arb_leaf())
                .prop_filter("a non-list tail", |(_, t)| !matches!(
                    t,
                    Term::Nil | Term::ByteList(_)
                ))
                .prop_map(|(v, t)| Term::Improper(v, Box::new(t))),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..8)
                .prop_map(|pairs| Term::Map(dedup_keys(pairs))),
            (
                arb_atom(),
                any::<u8>(),
                any::<[u8; 16]>(),
                any::<u32>(),
                any::<i32>(),
                any::<i32>(),
                proptest::collection::vec(inner, 0..4)
            )
                .prop_map(|(module, arity, uniq, index, oi, ou, free)| {
                    Term::from(Fun::Closure {
                        module,
                        arity,
                        uniq,
                        index,
                        old_index: oi.into(),
                        old_uniq: ou.into(),
                        pid: pid("fun@host", 1, 2, 3),
                        free,
                    })
                }),
        ]
    })
}

fn lenient() -> DecodeLimits {
    let mut l = DecodeLimits::default();
    l.max_atoms_created = 4;
    l.max_pids_created = 4;
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_term_round_trips_bit_for_bit(t in arb_term()) {
        let bytes = t.encode();
        let d = Term::decode(&bytes).unwrap();
        prop_assert_eq!(&d, &t);
        prop_assert_eq!(d.encode(), bytes.clone());
        let z = Term::decode_bytes(Bytes::from(bytes.clone())).unwrap();
        prop_assert_eq!(z.encode(), bytes);
        // Equal terms hash alike and order as equal.
        prop_assert_eq!(d.cmp(&t), std::cmp::Ordering::Equal);
        let h = |t: &Term| {
            use std::hash::{Hash, Hasher};
            let mut s = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut s);
            s.finish()
        };
        prop_assert_eq!(h(&d), h(&t));
        prop_assert_eq!(d.clone(), t);
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), versioned in any::<bool>()) {
        if versioned {
            bytes.insert(0, 131);
        }
        if let Ok(t) = Term::decode_with(&bytes, &lenient()) {
            let again = Term::decode(&t.encode()).unwrap();
            prop_assert_eq!(again, t);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        t in arb_term(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = t.encode();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok(t) = Term::decode_with(&bytes, &lenient()) {
            let again = Term::decode(&t.encode()).unwrap();
            prop_assert_eq!(again, t);
        }
        let _ = Term::decode_bytes_with(Bytes::from(bytes), &lenient());
    }

    #[test]
    fn every_truncation_is_an_error(t in arb_term()) {
        let bytes = t.encode();
        for end in 0..bytes.len() {
            prop_assert!(Term::decode(&bytes[..end]).is_err());
        }
    }

    #[test]
    fn term_order_is_a_total_order(a in arb_term(), b in arb_term(), c in arb_term()) {
        use std::cmp::Ordering::*;
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a.cmp(&b) == Equal, a == b);
        if a <= b && b <= c {
            prop_assert!(a <= c);
        }
    }
}

#[test]
fn maps_nested_in_map_keys_never_overflow_the_stack() {
    on_small_stack(|| {
        // #{K => 1, K' => 2} where K and K' are maps nested in their own
        // keys 10,000 deep, differing only at the bottom: checking for a
        // duplicate key compares them.
        let chain = |leaf: u8| {
            let mut v = Vec::new();
            for _ in 0..10_000 {
                v.extend_from_slice(&[116, 0, 0, 0, 1]);
            }
            v.extend_from_slice(&[97, leaf]);
            v.extend(std::iter::repeat_n([97, 0], 10_000).flatten());
            v
        };
        let mut input = vec![131, 116, 0, 0, 0, 2];
        input.extend(chain(1));
        input.extend_from_slice(&[97, 1]);
        input.extend(chain(2));
        input.extend_from_slice(&[97, 2]);
        let t = Term::decode(&input).unwrap();
        assert_eq!(t.encode(), input);
        let mut dup = vec![131, 116, 0, 0, 0, 2];
        dup.extend(chain(1));
        dup.extend_from_slice(&[97, 1]);
        dup.extend(chain(1));
        dup.extend_from_slice(&[97, 2]);
        assert_eq!(Term::decode(&dup), Err(DecodeError::DuplicateKey));
        // Order and equality of such maps, in either order.
        let [(k1, _), (k2, _)] = t.as_map().unwrap() else {
            panic!()
        };
        assert!(k1 < k2);
        let swapped = Term::Map(t.as_map().unwrap().iter().rev().cloned().collect());
        assert_eq!(swapped, t);
        assert_eq!(swapped.cmp(&t), std::cmp::Ordering::Equal);
    });
}
