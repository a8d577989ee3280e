//! `beamish bench` end to end: the built binary, its child processes and
//! its output lines, at tiny sizes.

use std::collections::HashMap;
use std::process::{Command, Output};

fn beamish(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beamish"))
        .args(args)
        .output()
        .expect("run beamish")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One output line: `bench=<name> runtime=<rt> <key>=<value> ...`.
#[derive(Debug)]
struct Line {
    bench: String,
    runtime: String,
    keys: HashMap<String, String>,
}

fn parse(line: &str) -> Line {
    let mut words = line.split_whitespace();
    let mut field = |name: &str| {
        let word = words
            .next()
            .unwrap_or_else(|| panic!("no {name} in {line:?}"));
        word.strip_prefix(name)
            .unwrap_or_else(|| panic!("{line:?} lacks {name}"))
            .to_string()
    };
    let (bench, runtime) = (field("bench="), field("runtime="));
    let keys = words
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("{w:?} in {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    Line {
        bench,
        runtime,
        keys,
    }
}

fn lines(out: &Output) -> Vec<Line> {
    text(&out.stdout).lines().map(parse).collect()
}

/// The value of `key` as a number, which must be there.
fn num(line: &Line, key: &str) -> f64 {
    let v = line
        .keys
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{key}={v} is not a number in {line:?}"))
}

#[test]
fn pingpong_with_tokio_baseline() {
    let out = beamish(&["bench", "--baseline", "tokio", "pingpong", "n=1000"]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("[1/2] pingpong (beamish)"), "{stderr}");
    assert!(stderr.contains("[2/2] pingpong (tokio)"), "{stderr}");
    let lines = lines(&out);
    assert!(lines.iter().all(|l| l.bench == "pingpong"), "{lines:?}");

    let tokio = lines
        .iter()
        .find(|l| l.runtime == "tokio")
        .expect("tokio line");
    assert!(num(tokio, "ns_per_roundtrip") > 0.0, "{tokio:?}");

    // beamish: an error line until its workloads exist, a result line after.
    let b = lines
        .iter()
        .find(|l| l.runtime == "beamish")
        .expect("beamish line");
    let ratio = lines.iter().find(|l| l.runtime == "beamish/tokio");
    if let Some(why) = b.keys.get("error") {
        assert!(!why.is_empty(), "{b:?}");
        assert!(ratio.is_none(), "{lines:?}");
        assert!(!out.status.success(), "a failed workload must fail the run");
    } else {
        assert!(num(b, "ns_per_roundtrip") > 0.0, "{b:?}");
        let ratio = ratio.expect("ratio line");
        let expected = num(b, "ns_per_roundtrip") / num(tokio, "ns_per_roundtrip");
        assert!((num(ratio, "ns_per_roundtrip") - expected).abs() < 0.01 + expected * 0.01);
        assert!(out.status.success(), "{stderr}");
    }
}

#[test]
fn every_tokio_workload_at_tiny_sizes() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "spawn",
            &["n=1000"],
            &["spawn_ns", "bytes_per_proc", "teardown_ns", "ready_ns", "n"],
        ),
        ("skynet", &["leaves=1000"], &["ms", "leaves"]),
        (
            "ring",
            &["procs=10", "hops=1_000"],
            &["ns_per_hop", "procs"],
        ),
        ("pingpong", &["n=1000"], &["ns_per_roundtrip"]),
        (
            "pingpong_par",
            &["pairs=10", "rounds=10"],
            &["ns_per_roundtrip"],
        ),
        (
            "fanin",
            &["senders=2", "msgs=1000"],
            &["ns_per_msg", "msgs"],
        ),
        (
            "fairness",
            &["procs=2", "beats=20"],
            &[
                "p50_us",
                "p99_us",
                "max_us",
                "samples",
                "procs",
                "unit_iters",
            ],
        ),
        (
            "runaway",
            &["procs=2", "runaway_ms=30"],
            &["p99_us", "max_us", "samples", "procs", "unit_iters"],
        ),
    ];
    for &(workload, sizes, keys) in cases {
        let mut args = vec!["bench-one", "tokio", workload];
        args.extend_from_slice(sizes);
        let out = beamish(&args);
        assert!(out.status.success(), "{workload}: {}", text(&out.stderr));
        let lines = lines(&out);
        assert_eq!(lines.len(), 1, "{workload}: {lines:?}");
        let line = &lines[0];
        assert_eq!(
            (line.bench.as_str(), line.runtime.as_str()),
            (workload, "tokio")
        );
        for key in keys {
            num(line, key);
        }
        assert_eq!(
            line.keys.len(),
            keys.len(),
            "{workload}: extra keys in {line:?}"
        );
    }
    assert_eq!(
        num(
            &lines(&beamish(&["bench-one", "tokio", "skynet", "leaves=100"]))[0],
            "leaves"
        ),
        100.0
    );
}

#[test]
fn link_cascade_has_no_tokio_baseline() {
    let out = beamish(&["bench", "--baseline", "tokio", "link_cascade", "n=10"]);
    let lines = lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].runtime, "beamish");
    assert!(lines[0].keys.contains_key("error") || lines[0].keys.contains_key("ns_per_link"));
}

#[test]
fn bad_input_is_a_usage_error() {
    for args in [
        &["bench", "ring", "n=5"][..],          // n is not a ring key
        &["bench", "ring", "hops=lots"],        // not a number
        &["bench", "ring", "hops=-1"],          // not a whole number
        &["bench", "rings"],                    // no such workload
        &["bench", "ring", "procs=0"],          // below the minimum
        &["bench", "skynet", "leaves=999"],     // not a power of div
        &["bench", "pingpong", "n=1", "n=2"],   // twice
        &["bench", "--timeout", "0"],           // no time at all
        &["bench-one", "tokio", "ring", "x=1"], // the child checks too
    ] {
        let out = beamish(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} ran something");
        assert!(
            !stderr.contains("panicked") && !stderr.is_empty(),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn timeout_kills_the_child() {
    let out = beamish(&[
        "bench",
        "--baseline",
        "tokio",
        "--timeout",
        "1",
        "fairness",
        "procs=0",
        "beats=100_000",
    ]);
    assert!(!out.status.success());
    let lines = lines(&out);
    let tokio = lines
        .iter()
        .find(|l| l.runtime == "tokio")
        .expect("tokio line");
    assert_eq!(
        tokio.keys.get("error").map(String::as_str),
        Some("timeout_after_1_s")
    );
}

#[test]
fn list_runs_nothing() {
    let out = beamish(&["bench", "--list", "ring", "procs=7"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(text(&out.stdout).contains("procs=7 hops=10_000_000"));
    let all = beamish(&["bench", "--list"]);
    let names: Vec<String> = text(&all.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "spawn",
            "skynet",
            "ring",
            "pingpong",
            "pingpong_par",
            "fanin",
            "fairness",
            "runaway",
            "restart",
            "call",
            "link_cascade",
            "dist",
            "gen_call",
            "erpc",
            "cluster",
            "failover",
            "trace",
            "observe"
        ]
    );
}

/// `dist` at a tiny size: beamish↔beamish always; erl↔erl and beamish↔erl
/// with their ratio lines when Erlang/OTP is installed, skip lines when not.
/// Every line well-formed and no reply out of order; no timing asserted.
#[test]
fn dist_at_a_tiny_size() {
    let out = beamish(&["bench", "dist", "n=2000", "rounds=1"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = lines(&out);
    assert!(lines.iter().all(|l| l.bench == "dist"), "{lines:?}");
    let find = |runtime: &str, peer: &str| {
        lines
            .iter()
            .find(|l| l.runtime == runtime && l.keys.get("peer").map(String::as_str) == Some(peer))
    };
    let measured = |l: &Line| {
        assert!(!l.keys.contains_key("error"), "{l:?}");
        assert!(num(l, "roundtrips_per_s") > 0.0, "{l:?}");
        assert_eq!(num(l, "out_of_order"), 0.0, "{l:?}");
        assert_eq!(
            num(l, "all_per_s"),
            num(l, "roundtrips_per_s"),
            "one round: {l:?}"
        );
        assert_eq!(
            (num(l, "n"), num(l, "window"), num(l, "rounds")),
            (2000.0, 100.0, 1.0)
        );
    };

    let bb = find("beamish", "beamish").expect("beamish-beamish line");
    measured(bb);
    num(bb, "threads");
    num(bb, "nut_threads");

    let ee = find("erl", "erl").expect("erl-erl line (a result or a skip)");
    let be = find("beamish", "erl").expect("beamish-erl line (a result or a skip)");
    let ratios: Vec<&Line> = lines
        .iter()
        .filter(|l| l.runtime == "beamish/erl")
        .collect();
    if let Some(why) = ee.keys.get("skipped") {
        assert!(!why.is_empty());
        assert!(be.keys.contains_key("skipped"), "{be:?}");
        assert!(ratios.is_empty(), "{ratios:?}");
        assert_eq!(lines.len(), 3, "{lines:?}");
        return;
    }
    measured(ee);
    measured(be);
    num(be, "nut_threads");
    // beamish-erl / erl-erl, then beamish-beamish / erl-erl.
    assert_eq!(lines.len(), 5, "{lines:?}");
    let pairs: Vec<&str> = ratios.iter().map(|l| l.keys["peer"].as_str()).collect();
    assert_eq!(pairs, ["erl/erl", "beamish/erl"]);
    for (r, over) in ratios.iter().zip([be, bb]) {
        let expected = num(over, "roundtrips_per_s") / num(ee, "roundtrips_per_s");
        let got = num(r, "roundtrips_per_s");
        assert!((got - expected).abs() < 0.01 + expected * 0.01, "{r:?}");
        assert_eq!(r.keys.len(), 2, "only peer and roundtrips_per_s: {r:?}");
    }
}

/// `gen_call`, `erpc` and `cluster` at tiny sizes: every pair gives a
/// figure (or, without Erlang/OTP, a skip for the erl-peered ones), never
/// an error; no timing asserted.
#[test]
fn otp_workloads_at_tiny_sizes() {
    let out = beamish(&[
        "bench",
        "gen_call",
        "erpc",
        "cluster",
        "n=200",
        "rounds=1",
        "callers=10",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = lines(&out);
    for (bench, key) in [
        ("gen_call", "calls_per_s"),
        ("erpc", "calls_per_s"),
        ("cluster", "register_us"),
    ] {
        for (runtime, peer) in [("beamish", "beamish"), ("erl", "erl"), ("beamish", "erl")] {
            let l = lines
                .iter()
                .find(|l| {
                    l.bench == bench
                        && l.runtime == runtime
                        && l.keys.get("peer").map(String::as_str) == Some(peer)
                })
                .unwrap_or_else(|| panic!("no {bench} {runtime}/{peer} line: {lines:?}"));
            assert!(!l.keys.contains_key("error"), "{l:?}");
            if l.keys.contains_key("skipped") {
                assert_ne!((runtime, peer), ("beamish", "beamish"), "{l:?}");
                continue;
            }
            assert!(num(l, key) > 0.0, "{l:?}");
            if bench == "cluster" {
                assert!(num(l, "pg_join_us") > 0.0, "{l:?}");
            } else {
                assert_eq!((num(l, "n"), num(l, "callers")), (200.0, 10.0), "{l:?}");
            }
        }
    }
}

/// `failover` at a tiny size (two kills and a partition round, tick time
/// 1 s): beamish↔beamish gives its figures, never an error. The erl↔erl
/// line measures OTP itself (its distributed applications): a result, a
/// skip, or an error of OTP's run (one was seen: after a kill, OTP never
/// started the application again), which is printed, not asserted. No
/// timing asserted.
#[test]
fn failover_at_a_tiny_size() {
    let out = beamish(&[
        "bench",
        "failover",
        "kills=2",
        "heal=1",
        "ticktime=1",
        "rate=200",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = lines(&out);
    for (runtime, peer) in [("beamish", "beamish"), ("erl", "erl")] {
        let l = lines
            .iter()
            .find(|l| {
                l.bench == "failover"
                    && l.runtime == runtime
                    && l.keys.get("peer").map(String::as_str) == Some(peer)
            })
            .unwrap_or_else(|| panic!("no failover {runtime}/{peer} line: {lines:?}"));
        if runtime == "erl"
            && let Some(e) = l.keys.get("error")
        {
            eprintln!("OTP's failover run failed: {e}");
            continue;
        }
        assert!(!l.keys.contains_key("error"), "{l:?}");
        if l.keys.contains_key("skipped") {
            assert_eq!(runtime, "erl", "{l:?}");
            continue;
        }
        assert_eq!((num(l, "kills"), num(l, "rate")), (2.0, 200.0), "{l:?}");
        let (lo, mid, hi) = (
            num(l, "window_min_ms"),
            num(l, "window_median_ms"),
            num(l, "window_max_ms"),
        );
        assert!(0.0 <= lo && lo <= mid && mid <= hi, "{l:?}");
        assert!(num(l, "failed_max") >= num(l, "failed_median"), "{l:?}");
        assert!(num(l, "heal_ms") >= 0.0, "{l:?}");
    }
    assert!(
        !lines.iter().any(|l| l.bench == "failover"
            && l.runtime == "beamish"
            && l.keys.get("peer").map(String::as_str) == Some("erl")),
        "no mixed pair: {lines:?}"
    );
}

/// `observe` and `trace` at tiny sizes: beamish gives its figures (and the
/// erl run of `observe` its own, or a skip without Erlang); no timing
/// asserted beyond what must hold whatever the machine.
#[test]
fn observe_and_trace_at_tiny_sizes() {
    let out = beamish(&[
        "bench",
        "observe",
        "trace",
        "idle=2000",
        "busy=100",
        "refreshes=1",
        "n=2000",
        "rate=100",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = lines(&out);
    let find = |bench: &str, runtime: &str| {
        lines
            .iter()
            .find(|l| l.bench == bench && l.runtime == runtime)
            .unwrap_or_else(|| panic!("no {bench}/{runtime} line: {lines:?}"))
    };
    let b = find("observe", "beamish");
    assert!(!b.keys.contains_key("error"), "{b:?}");
    assert!(
        num(b, "refresh_cpu_ms") >= 0.0 && num(b, "observer_mb") >= 0.0,
        "{b:?}"
    );
    assert_eq!((num(b, "idle"), num(b, "busy")), (2000.0, 100.0));
    let e = find("observe", "erl");
    if !e.keys.contains_key("skipped") {
        assert!(!e.keys.contains_key("error"), "{e:?}");
        assert!(num(e, "refresh_cpu_ms") >= 0.0, "{e:?}");
    }
    let t = find("trace", "beamish");
    assert!(!t.keys.contains_key("error"), "{t:?}");
    // The rate limit held (the run takes well under 100 s), and the queue
    // limit bounded what the slow tracer was given.
    assert!(num(t, "limited_delivered") <= 200.0, "{t:?}");
    assert!(num(t, "unlimited_queued") <= 10_000.0, "{t:?}");
    assert!(
        num(t, "unlimited_delivered") + num(t, "unlimited_dropped") >= 2.0 * 2000.0,
        "{t:?}"
    );
}
