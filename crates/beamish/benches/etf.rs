//! The external term format codec, on the terms that
//! `scripts/etf_bench.escript` times with OTP's `term_to_binary/1` and
//! `binary_to_term/1`, so the two sets of figures compare directly.
//!
//! ```text
//! cargo bench -p beamish --bench etf                 # all, about two minutes
//! cargo bench -p beamish --bench etf -- small_tuple  # one term
//! escript scripts/etf_bench.escript                  # OTP's figures, same terms
//! ```
//!
//! | term | what it is (the same in the escript) |
//! | --- | --- |
//! | `small_tuple` | `{Pid, Ref, {hello, 42}}`: a typical message (pid and ref of `nonode@nohost`) |
//! | `binary_1k` | a 1 KiB binary |
//! | `list_1000_ints` | `lists:seq(1, 1000)` |
//! | `map_100_keys` | `#{k1 => 1, ..., k100 => 100}` |
//! | `binary_1m` | a 1 MiB binary |
//! | `list_100k_ints` | `lists:seq(1, 100000)` |
//!
//! Operations, each per term:
//! - `encode`: [`Term::encode`], a fresh `Vec` each time (as `term_to_binary`
//!   makes a fresh binary);
//! - `encode_into_reused`: [`Term::encode_into`] into a cleared buffer;
//! - `decode`: [`Term::decode`] from a `&[u8]` (binaries copied, as
//!   `binary_to_term` copies them), and dropping the term;
//! - `decode_bytes`: [`Term::decode_bytes`] (binaries of 64 bytes or more
//!   are slices of the input), and dropping the term.

use std::hint::black_box;
use std::time::Duration;

use beamish::Ref;
use beamish::dist::Term;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A pid of `nonode@nohost` as OTP writes it (`<0.83.0>`).
fn pid() -> Term {
    let mut b = vec![131, 88, 119, 13];
    b.extend_from_slice(b"nonode@nohost");
    b.extend_from_slice(&[0, 0, 0, 83, 0, 0, 0, 0, 0, 0, 0, 0]);
    Term::decode(&b).expect("a pid")
}

fn terms() -> Vec<(&'static str, Term)> {
    let hello = Term::atom("hello").expect("atom");
    let ints = |n: i64| Term::List((1..=n).map(Term::Int).collect());
    vec![
        (
            "small_tuple",
            Term::from((pid(), Term::from(Ref::new()), (hello, 42))),
        ),
        ("binary_1k", Term::from(vec![7u8; 1024])),
        ("list_1000_ints", ints(1000)),
        (
            "map_100_keys",
            Term::Map(
                (1..=100)
                    .map(|i| (Term::atom(&format!("k{i}")).expect("atom"), Term::Int(i)))
                    .collect(),
            ),
        ),
        ("binary_1m", Term::from(vec![7u8; 1 << 20])),
        ("list_100k_ints", ints(100_000)),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, term) in terms() {
        let bytes = term.encode();
        let shared = Bytes::from(bytes.clone());
        assert_eq!(Term::decode(&bytes).expect("decodes"), term);

        let mut g = c.benchmark_group(format!("etf/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        if bytes.len() > 100_000 {
            g.sample_size(30);
        }
        g.bench_function("encode", |b| b.iter(|| black_box(&term).encode()));
        let mut buf = Vec::with_capacity(bytes.len());
        g.bench_function("encode_into_reused", |b| {
            b.iter(|| {
                buf.clear();
                black_box(&term).encode_into(&mut buf);
                black_box(buf.len())
            })
        });
        // Each decode includes dropping the term, as OTP's figures include
        // collecting the garbage (keeping results alive past the timed
        // section would measure page faults instead).
        g.bench_function("decode", |b| {
            b.iter(|| drop(Term::decode(black_box(&bytes))))
        });
        g.bench_function("decode_bytes", |b| {
            b.iter(|| drop(Term::decode_bytes(black_box(shared.clone()))))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
