//! The test binary as a beamish node, talking to real `erl` nodes.
//!
//! One node per OS process: [`common::world`] starts ours once, on a private
//! EPMD, and every test runs its beamish side in a process of it (in
//! parallel with the other tests). Each test starts its own `erl` nodes,
//! which run `tests/erl/dist_helper.erl`: a `ctl` process that answers
//! requests (spawn an echo, a puppet, a forwarder, ...), and puppets that
//! link, trap, monitor and exit on command and report what they see. Every
//! wait is bounded by [`WAIT`]; nothing asserts on time.

mod common;

use std::path::Path;

use beamish::dist::{self, Atom, BigInt, ExtPort, ExtRef, Fun, NodeDown, Term};
use beamish::{Down, Exit, Pid, Reason};
use common::erl::ErlNode;
use common::{
    COOKIE, WAIT, World, a, atom, call, call_named, elements, expect_none, new_tag, pid_of, recv,
    recv_term, signal_group, tagged, tuple,
};
use serde::{Deserialize, Serialize};

fn w() -> &'static World {
    common::world("beamish_erl")
}

/// An `erl` node running `tests/erl/dist_helper.erl` with our cookie, once
/// it printed `ready`. `mode` is `ping` (it pings us first) or `wait`.
fn helper_node(prefix: &str, mode: &str) -> ErlNode {
    helper_node_with_cookie(prefix, mode, COOKIE)
}

fn helper_node_with_cookie(prefix: &str, mode: &str, cookie: &str) -> ErlNode {
    let w = w();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erl/dist_helper.erl");
    let eval = format!(
        "{{ok, [[Src]]}} = init:get_argument(dist_helper_src), \
         {{ok, M, B}} = compile:file(Src, [binary, return_errors]), \
         {{module, M}} = code:load_binary(M, Src, B), \
         dist_helper:start('{}', {mode}).",
        w.node.as_str()
    );
    let mut node = w
        .erl(prefix)
        .cookie(cookie)
        .arg("-dist_helper_src")
        .arg(src.to_str().expect("a UTF-8 path"))
        .eval(&eval)
        .start();
    node.expect_line("ready", WAIT);
    node
}

/// A request to the `ctl` process of `node`; returns the reply.
async fn ctl(node: Atom, req: Term, what: &str) -> Term {
    call_named("ctl", node, vec![req], what).await
}

/// A new puppet on `node`; its death is reported to the caller.
async fn puppet(node: Atom) -> Pid {
    pid_of(&ctl(node, atom("puppet"), "spawn a puppet").await, "puppet")
}

/// A command to a puppet; returns its reply.
async fn order(puppet: Pid, cmd: Term, what: &str) -> Term {
    call(puppet, vec![cmd], what).await
}

/// The erl process's links, as its puppet sees them.
async fn links_of(puppet: Pid) -> Term {
    order(puppet, atom("links"), "the puppet's links").await
}

/// The reason of `{puppet_down, Puppet, Reason}`.
async fn puppet_down(puppet: Pid) -> Term {
    let down = a("puppet_down");
    let t = recv_term("puppet_down", |t| {
        matches!(t.as_tuple(), Some([tag, p, _]) if tag.is_atom(down) && p.as_pid() == Some(puppet))
    })
    .await;
    elements(&t, "puppet_down")[2].clone()
}

/// `(From, Reason)` of `{puppet_exit, Puppet, From, Reason}`: an exit
/// signal the trapping puppet received.
async fn puppet_exit(puppet: Pid) -> (Term, Term) {
    let exit = a("puppet_exit");
    let t = recv_term("puppet_exit", |t| {
        matches!(t.as_tuple(), Some([tag, p, _, _]) if tag.is_atom(exit) && p.as_pid() == Some(puppet))
    })
    .await;
    let e = elements(&t, "puppet_exit");
    (e[2].clone(), e[3].clone())
}

/// Polls the erl process's links until they are `expected`.
async fn eventually_links(puppet: Pid, expected: Term) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let links = links_of(puppet).await;
        if links == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the erl process's links are {links}, not {expected}, after {WAIT:?}"
        );
        beamish::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls our process `pid` until it is (`linked`) or is not linked to `to`.
async fn eventually_linked(pid: Pid, to: Pid, linked: bool) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let info = beamish::process_info(pid)
            .await
            .expect("our process is alive");
        if info.links.contains(&to) == linked {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} links {:?}, want {to} linked: {linked}, after {WAIT:?}",
            info.links
        );
        beamish::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A list of pids, as `process_info(P, links)` gives it.
fn pids(list: &[Pid]) -> Term {
    Term::list(list.iter().map(|p| Term::Pid(*p)).collect())
}

/// A process of ours that answers `{From, Tag, ping}` with `{Tag, pong}` and
/// sends every exit signal it traps to `report` as `(self, Exit)`.
async fn our_process(trap: bool, report: Pid) {
    beamish::trap_exit(trap);
    loop {
        let m = beamish::receive_match(|m| m.is::<Term>() || m.is::<Exit>()).await;
        match m.downcast::<Term>() {
            Ok(t) => {
                if let Some([Term::Pid(from), tag, what]) = t.as_tuple()
                    && what.is_atom(a("ping"))
                {
                    from.send(tuple([tag.clone(), atom("pong")]));
                }
            }
            Err(m) => {
                if let Ok(exit) = m.downcast::<Exit>() {
                    report.send((beamish::self_pid(), exit));
                }
            }
        }
    }
}

/// Asks one of [`our_process`]es to answer; proves it is alive and has
/// handled every signal sent to it before this request.
async fn ping(pid: Pid) {
    assert_eq!(
        call(pid, vec![atom("ping")], "ping our process").await,
        atom("pong")
    );
}

// ------------------------------------------------------------------ tests

#[test]
fn erl_pings_us_and_both_nodes_list_each_other() {
    let w = w();
    let mut e = helper_node("ping", "ping");
    assert_eq!(e.expect_line("ping ", WAIT).trim(), "ping pong");
    assert_eq!(
        e.expect_line("nodes ", WAIT).trim(),
        format!("nodes ['{}']", w.node.as_str()),
        "erl's nodes() after the ping"
    );
    let en = a(e.node());
    assert!(
        dist::nodes().contains(&en),
        "our nodes() lacks {en}: {:?}",
        dist::nodes()
    );
    // The connection erl made carries our requests too.
    let r = w.run(async move { ctl(en, atom("make_ref"), "make_ref").await });
    assert_eq!(r.as_reference().map(|r| r.node), Some(en), "{r}");
}

#[test]
fn send_named_connects_and_reaches_a_registered_erl_process() {
    let w = w();
    let e = helper_node("named", "wait");
    let en = a(e.node());
    assert!(!dist::nodes().contains(&en), "connected before any send");
    w.run(async move {
        let me = beamish::self_pid();
        // The first contact is a send to a registered name: it connects.
        let r = ctl(
            en,
            tuple([atom("register_forwarder"), atom("fwd")]),
            "register fwd",
        )
        .await;
        assert_eq!(r, atom("true"));
        assert!(dist::nodes().contains(&en), "not connected after a reply");

        // Sends to a name nobody has are dropped; the connection stays.
        dist::send_named(a("no_such_name_here"), en, atom("lost"));
        for i in 0..3 {
            let t = tuple([
                atom("hello"),
                Term::from("wörld"),
                Term::Int(i),
                Term::Pid(me),
            ]);
            dist::send_named(a("fwd"), en, tuple([Term::Pid(me), t.clone()]));
            let got = recv_term(
                "forwarded",
                |m| matches!(m.as_tuple(), Some([f, _, _, _]) if f.is_atom(a("forwarded"))),
            )
            .await;
            let [_, name, t2, bin] = elements(&got, "forwarded") else {
                unreachable!()
            };
            assert_eq!(name, &atom("fwd"));
            assert_eq!(t2, &t);
            assert_eq!(bin.as_binary().map(|b| b.to_vec()), Some(t.encode()));
        }
    });
    assert!(dist::nodes().contains(&en));
}

/// Every term kind to an erl echo and back: the reply equals what we sent
/// (Erlang's `=:=`), and erl's `term_to_binary` of what it received is the
/// bytes of our encoding of the reply, and (`exact`) of what we sent.
#[test]
fn every_term_kind_round_trips_through_an_erl_echo() {
    let w = w();
    let e = helper_node("roundtrip", "wait");
    let en = a(e.node());
    let failures = w.run(async move {
        let me = beamish::self_pid();
        let echo = pid_of(&ctl(en, atom("echo"), "spawn echo").await, "echo");
        let erl_ref = ctl(en, atom("make_ref"), "make_ref").await;
        let erl_port = ctl(en, atom("port"), "port").await;
        let closure = ctl(en, atom("closure"), "closure").await;
        assert!(matches!(closure, Term::Fun(_)), "{closure}");
        let other_local = beamish::spawn(async {
            let _ = beamish::receive::<()>().await;
        });
        let mut failures = Vec::new();
        for (name, t, exact) in terms(me, other_local, echo, erl_ref, erl_port, closure) {
            let tag = new_tag();
            echo.send(tuple([Term::Pid(me), tag.clone(), t.clone()]));
            let got = recv_term(&name, |m| tagged(m, &tag)).await;
            let [_, t2, bin] = elements(&got, &name) else {
                failures.push(format!("{name}: bad reply {}", short(&got)));
                continue;
            };
            let bin = bin.as_binary().expect("term_to_binary gives a binary");
            if *t2 != t {
                failures.push(format!(
                    "{name}: sent {} got back {}",
                    short(&t),
                    short(t2)
                ));
                continue;
            }
            if let Some(at) = first_difference(&t2.encode(), bin) {
                failures.push(format!(
                    "{name}: our encoding of the reply differs from erl's term_to_binary at byte {at}"
                ));
            }
            if exact && let Some(at) = first_difference(&t.encode(), bin) {
                failures.push(format!(
                    "{name}: our encoding of what we sent differs from erl's term_to_binary at byte {at}"
                ));
            }
        }
        other_local.exit(Reason::Kill);
        failures
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn short(t: &Term) -> String {
    let s = t.to_string();
    if s.chars().count() > 300 {
        format!("{}...", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// The terms of the round trip: `(name, term, exact)`; `exact` is false
/// where erl re-orders (maps over 32 keys) or re-pads (bitstrings).
fn terms(
    me: Pid,
    other_local: Pid,
    erl_pid: Pid,
    erl_ref: Term,
    erl_port: Term,
    closure: Term,
) -> Vec<(String, Term, bool)> {
    let third = a("third_node@127.0.0.1");
    let mut v: Vec<(String, Term, bool)> = Vec::new();
    let mut add = |name: &str, t: Term| v.push((name.to_owned(), t, true));

    // Atoms.
    add("atom.ok", atom("ok"));
    add("atom.empty", atom(""));
    add("atom.true", Term::from(true));
    add("atom.utf8", atom("héllo_wörld_λ"));
    add("atom.255_ascii", atom(&"a".repeat(255)));
    add("atom.255_lambdas", atom(&"λ".repeat(255)));

    // Integers, to bignums.
    for (name, i) in [
        ("int.0", 0),
        ("int.255", 255),
        ("int.256", 256),
        ("int.-1", -1),
        ("int.i32_max", i64::from(i32::MAX)),
        ("int.i32_min", i64::from(i32::MIN)),
        ("int.i32_max+1", i64::from(i32::MAX) + 1),
        ("int.i32_min-1", i64::from(i32::MIN) - 1),
        ("int.i64_max", i64::MAX),
        ("int.i64_min", i64::MIN),
    ] {
        add(name, Term::Int(i));
    }
    add("big.u64_max", Term::from(u64::MAX));
    add("big.i128_min", Term::from(i128::MIN));
    let pow = |bytes: usize, negative: bool| {
        let mut m = vec![0u8; bytes];
        m.push(1);
        Term::from(BigInt::from_le_bytes(negative, &m))
    };
    add("big.2^2040", pow(255, false));
    add("big.-2^2048", pow(256, true));
    add("big.2^65536", pow(8192, false));

    // Floats.
    for (name, f) in [
        ("float.0", 0.0),
        ("float.-0", -0.0),
        ("float.1.5", 1.5),
        ("float.pi", std::f64::consts::PI),
        ("float.tiny", -2.25e-300),
        ("float.max", f64::MAX),
        ("float.min_positive", f64::MIN_POSITIVE),
        ("float.subnormal", 5e-324),
    ] {
        add(name, Term::Float(f));
    }

    // Binaries and bitstrings.
    add("binary.empty", Term::binary(&[]));
    add("binary.small", Term::binary(b"abc"));
    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    add("binary.1mb", Term::binary(&big));
    add(
        "bitstring.3_bits",
        Term::BitBinary {
            bytes: bytes::Bytes::from_static(&[0b1010_0000]),
            bits: 3,
        },
    );
    add(
        "bitstring.17_bits",
        Term::BitBinary {
            bytes: bytes::Bytes::from_static(&[0xff, 0x00, 0x80]),
            bits: 1,
        },
    );

    // Lists and strings.
    add("nil", Term::Nil);
    add(
        "string.hello",
        Term::ByteList(bytes::Bytes::from_static(b"hello")),
    );
    add(
        "string.65535",
        Term::list((0..65_535).map(|i| Term::Int(i % 256)).collect()),
    );
    add(
        "list.65536_bytes",
        Term::list((0..65_536).map(|i| Term::Int(i % 256)).collect()),
    );
    add(
        "list.unicode_chars",
        Term::list("λx→y".chars().map(|c| Term::Int(c as i64)).collect()),
    );
    add(
        "list.mixed",
        Term::list(vec![
            Term::Int(1),
            atom("a"),
            Term::binary(b"x"),
            Term::Tuple(vec![]),
            Term::Float(2.5),
            Term::Nil,
        ]),
    );
    add(
        "list.100k",
        Term::list((0..100_000).map(|i| Term::Int(i * 1000)).collect()),
    );
    add(
        "improper.atom_tail",
        Term::Improper(vec![Term::Int(1), Term::Int(2)], Box::new(atom("three"))),
    );
    add(
        "improper.binary_tail",
        Term::Improper(vec![atom("a")], Box::new(Term::binary(b"b"))),
    );

    // Tuples.
    add("tuple.empty", Term::Tuple(vec![]));
    add("tuple.pair", tuple([atom("ok"), Term::Int(1)]));
    add("tuple.256", Term::Tuple((0..256).map(Term::Int).collect()));
    add(
        "tuple.70k",
        Term::Tuple((0..70_000).map(Term::Int).collect()),
    );

    // Maps: sorted keys, as erl keeps maps of up to 32 keys.
    let sorted = |mut pairs: Vec<(Term, Term)>| {
        pairs.sort_by(|x, y| x.0.cmp(&y.0));
        Term::map(pairs)
    };
    add("map.empty", Term::map(vec![]));
    add(
        "map.atoms",
        sorted(vec![
            (atom("name"), Term::from("x")),
            (atom("age"), Term::Int(3)),
        ]),
    );
    add(
        "map.compound_keys",
        sorted(vec![
            (Term::Int(1), atom("one")),
            (atom("a"), Term::Nil),
            (tuple([Term::Int(1), Term::Int(2)]), atom("t")),
            (Term::list(vec![Term::Int(1)]), atom("l")),
            (Term::binary(b"b"), atom("bin")),
            (Term::map(vec![(atom("k"), atom("v"))]), atom("m")),
        ]),
    );
    add(
        "map.32_keys",
        sorted((0..32).map(|i| (Term::Int(i), Term::Int(i * i))).collect()),
    );
    let mut inexact = |name: &str, t: Term| v.push((name.to_owned(), t, false));
    inexact(
        "map.33_keys",
        Term::map((0..33).map(|i| (Term::Int(i), Term::Int(-i))).collect()),
    );
    inexact(
        "map.1000_mixed_keys",
        Term::map(
            (0..1000)
                .map(|i| {
                    let k = match i % 3 {
                        0 => Term::Int(i),
                        1 => atom(&format!("k{i}")),
                        _ => tuple([Term::Int(i), Term::binary(b"k")]),
                    };
                    (k, Term::Int(i))
                })
                .collect(),
        ),
    );
    inexact(
        "bitstring.dirty_padding",
        Term::BitBinary {
            bytes: bytes::Bytes::from_static(&[0b1010_0101]),
            bits: 3,
        },
    );
    let mut add = |name: &str, t: Term| v.push((name.to_owned(), t, true));

    // Pids, references, ports: ours, erl's, and a third node's.
    add("pid.ours", Term::Pid(me));
    add("pid.ours_other", Term::Pid(other_local));
    add("pid.erl", Term::Pid(erl_pid));
    add(
        "pid.third",
        Term::decode(&third_pid_ext("third_node@127.0.0.1", 77, 3, 0xABCD_EF01)).unwrap(),
    );
    add("ref.ours", Term::from(beamish::Ref::new()));
    add("ref.erl", erl_ref);
    add(
        "ref.third_3_words",
        Term::Ref(ExtRef::new(third, 0xABCD_EF01, &[1, 2, 3]).unwrap()),
    );
    add(
        "ref.third_5_words",
        Term::Ref(ExtRef::new(third, 7, &[1, 2, 3, 4, 5]).unwrap()),
    );
    add("port.erl", erl_port);
    add(
        "port.third",
        Term::Port(ExtPort {
            node: third,
            id: 42,
            creation: 0xABCD_EF01,
        }),
    );
    add(
        "port.third_v4",
        Term::Port(ExtPort {
            node: third,
            id: 1 << 40,
            creation: 3,
        }),
    );

    // Funs.
    add(
        "fun.export",
        Term::Fun(Box::new(Fun::Export {
            module: a("lists"),
            function: a("reverse"),
            arity: 1,
        })),
    );
    add("fun.closure_from_erl", closure);

    // Nesting.
    let mut deep_tuple = Term::Nil;
    let mut deep_list = Term::Nil;
    for i in 0..1000 {
        deep_tuple = tuple([Term::Int(i), deep_tuple]);
        deep_list = Term::list(vec![deep_list]);
    }
    add("nested.tuples_1000", deep_tuple);
    add("nested.lists_1000", deep_list);
    add(
        "composite",
        tuple([
            atom("composite"),
            sorted(vec![
                (
                    atom("list"),
                    Term::list(vec![Term::Pid(me), Term::Float(-0.0), Term::from(u64::MAX)]),
                ),
                (atom("tuple"), tuple([Term::binary(b""), Term::Nil])),
            ]),
            Term::Improper(vec![Term::Pid(erl_pid)], Box::new(Term::Int(-5))),
        ]),
    );
    v
}

/// `NEW_PID_EXT` bytes (with the version byte) of a pid of `node`.
fn third_pid_ext(node: &str, id: u32, serial: u32, creation: u32) -> Vec<u8> {
    let mut b = vec![131, 88, 119, u8::try_from(node.len()).unwrap()];
    b.extend_from_slice(node.as_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&serial.to_be_bytes());
    b.extend_from_slice(&creation.to_be_bytes());
    b
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Person {
    name: String,
    age: u32,
    tags: Vec<String>,
    nick: Option<String>,
    score: f64,
    role: Role,
    pair: (i64, bool),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Role {
    Admin,
    Guest { since: u32 },
}

#[test]
fn serde_structs_cross_to_erl_and_back() {
    let w = w();
    let e = helper_node("serde", "wait");
    let en = a(e.node());
    w.run(async move {
        let me = beamish::self_pid();
        let p = Person {
            name: "Ada".into(),
            age: 36,
            tags: vec!["math".into(), "engines".into()],
            nick: None,
            score: -1.25,
            role: Role::Guest { since: 1843 },
            pair: (-7, true),
        };
        let t = dist::to_term(&p).expect("to_term");
        // What erl matches on: a map with atom keys, binaries, undefined.
        assert_eq!(t.map_get(&atom("name")), Some(&Term::binary(b"Ada")));
        assert_eq!(t.map_get(&atom("nick")), Some(&atom("undefined")));

        // erl reads the fields and answers with a changed map.
        let changed = ctl(en, tuple([atom("person"), t.clone()]), "person").await;
        let back: Person = dist::from_term(&changed).expect("from_term");
        assert_eq!(
            back,
            Person {
                name: "Ada!".into(),
                age: 37,
                tags: vec!["erl".into(), "math".into(), "engines".into()],
                ..p.clone()
            }
        );

        // And the plain echo gives back the same value.
        let echo = pid_of(&ctl(en, atom("echo"), "spawn echo").await, "echo");
        let admin = Person {
            nick: Some("countess".into()),
            role: Role::Admin,
            ..p
        };
        let t = dist::to_term(&admin).expect("to_term");
        let tag = new_tag();
        echo.send(tuple([Term::Pid(me), tag.clone(), t.clone()]));
        let got = recv_term("echo", |m| tagged(m, &tag)).await;
        let [_, t2, _] = elements(&got, "echo") else {
            unreachable!()
        };
        assert_eq!(t2, &t);
        assert_eq!(dist::from_term::<Person>(t2).expect("from_term"), admin);
    });
}

#[test]
fn an_erl_exit_reaches_our_trapping_linked_process() {
    let w = w();
    let e = helper_node("link_in", "wait");
    let en = a(e.node());
    w.run(async move {
        let me = beamish::self_pid();
        beamish::trap_exit(true);
        let p = puppet(en).await;
        beamish::link(p).expect("link");
        assert_eq!(links_of(p).await, pids(&[me]), "erl did not get the link");
        let reason = tuple([atom("some"), atom("reason")]);
        order(p, tuple([atom("exit"), reason.clone()]), "exit").await;
        let exit = recv::<Exit>("the puppet's exit", |e| e.from == p).await;
        assert!(
            matches!(&exit.reason, Reason::Term(t) if **t == reason),
            "{:?}",
            exit.reason
        );
        assert_eq!(exit.reason, Reason::from_term(reason.clone()));
        assert_eq!(puppet_down(p).await, reason);

        // A normal exit of a linked erl process: trapped as `normal`.
        let p = puppet(en).await;
        beamish::link(p).expect("link");
        order(p, tuple([atom("exit"), atom("normal")]), "exit").await;
        let exit = recv::<Exit>("the puppet's exit", |e| e.from == p).await;
        assert_eq!(exit.reason, Reason::Normal);
    });
}

#[test]
fn our_exit_reaches_the_linked_erl_process() {
    let w = w();
    let e = helper_node("link_out", "wait");
    let en = a(e.node());
    w.run(async move {
        let me = beamish::self_pid();
        // A panic, seen by a trapping erl process as {panic, <<Message>>}.
        let p1 = puppet(en).await;
        assert_eq!(order(p1, atom("trap"), "trap").await, atom("ok"));
        let q = beamish::spawn(async move {
            beamish::link(p1).expect("link");
            panic!("boom from q");
        });
        let (from, reason) = puppet_exit(p1).await;
        assert_eq!(from, Term::Pid(q));
        assert_eq!(
            reason,
            tuple([atom("panic"), Term::binary(b"boom from q")])
        );

        // Another reason kills a non-trapping erl process with it.
        let p2 = puppet(en).await;
        beamish::spawn(async move {
            beamish::link(p2).expect("link");
            beamish::exit::<()>(Reason::Term(std::sync::Arc::new(tuple([
                atom("bye"),
                Term::Int(2),
            ]))))
            .await;
        });
        assert_eq!(
            puppet_down(p2).await,
            tuple([atom("bye"), Term::Int(2)])
        );

        // A normal exit does not, and the link goes away.
        let p3 = puppet(en).await;
        let (q3, q3_mon) = beamish::spawn_monitor(async move {
            beamish::link(p3).expect("link");
            me.send(atom("q3_linked"));
            let _ = beamish::receive_if::<Term, _>(|t| t.is_atom(a("stop"))).await;
        });
        recv_term("q3 linked", |t| t.is_atom(a("q3_linked"))).await;
        assert_eq!(links_of(p3).await, pids(&[q3]));
        q3.send(atom("stop"));
        let down = recv::<Down>("q3 ends", |d| d.monitor == q3_mon).await;
        assert_eq!(down.reason, Reason::Normal);
        eventually_links(p3, Term::Nil).await;
        expect_none::<Term>("p3 must survive a normal exit", |t| {
            matches!(t.as_tuple(), Some([tag, p, _]) if tag.is_atom(a("puppet_down")) && p.as_pid() == Some(p3))
        })
        .await;
    });
}

#[test]
fn monitors_of_erl_processes() {
    let w = w();
    let e = helper_node("monitor", "wait");
    let en = a(e.node());
    w.run(async move {
        beamish::trap_exit(true);
        // Down with the reason the process exited with.
        let p = puppet(en).await;
        let m = beamish::monitor(p);
        let reason = tuple([atom("bye"), Term::Int(42)]);
        order(p, tuple([atom("exit"), reason.clone()]), "exit").await;
        let down = recv::<Down>("down", |d| d.monitor == m).await;
        assert_eq!(down.pid, p);
        assert!(
            matches!(&down.reason, Reason::Term(t) if **t == reason),
            "{:?}",
            down.reason
        );

        let p = puppet(en).await;
        let m = beamish::monitor(p);
        order(p, tuple([atom("exit"), atom("normal")]), "exit").await;
        let down = recv::<Down>("down", |d| d.monitor == m).await;
        assert_eq!((down.pid, down.reason), (p, Reason::Normal));

        // A dead erl pid: noproc, for a monitor and for a link.
        let dead = pid_of(&ctl(en, atom("dead_pid"), "dead pid").await, "dead pid");
        let m = beamish::monitor(dead);
        let down = recv::<Down>("down of a dead pid", |d| d.monitor == m).await;
        assert_eq!((down.pid, down.reason), (dead, Reason::NoProc));
        assert_eq!(beamish::link(dead), Ok(()));
        let exit = recv::<Exit>("exit of a dead pid", |e| e.from == dead).await;
        assert_eq!(exit.reason, Reason::NoProc);

        // A demonitored process's exit gives no Down.
        let p = puppet(en).await;
        let m = beamish::monitor(p);
        assert!(beamish::demonitor(m));
        order(p, tuple([atom("exit"), atom("gone")]), "exit").await;
        assert_eq!(puppet_down(p).await, atom("gone"));
        expect_none::<Down>("a Down after demonitor", |d| d.monitor == m).await;

        // An erl process monitors ours: it sees our exit reason.
        let p = puppet(en).await;
        let (q, _) = beamish::spawn_monitor(async move {
            let _ = beamish::receive_if::<Term, _>(|t| t.is_atom(a("stop"))).await;
            beamish::exit::<()>(Reason::other("stopped")).await;
        });
        order(p, tuple([atom("monitor"), Term::Pid(q)]), "monitor").await;
        q.send(atom("stop"));
        let saw = a("puppet_saw_down");
        let t = recv_term("puppet_saw_down", |t| {
            matches!(t.as_tuple(), Some([tag, x, _, _]) if tag.is_atom(saw) && x.as_pid() == Some(p))
        })
        .await;
        let e = elements(&t, "puppet_saw_down");
        assert_eq!((&e[2], &e[3]), (&Term::Pid(q), &atom("stopped")));
    });
}

#[test]
fn exit_signals_between_us_and_erl() {
    let w = w();
    let e = helper_node("exit", "wait");
    let en = a(e.node());
    w.run(async move {
        let me = beamish::self_pid();
        // Ours to erl's: trapped, then `kill`, which cannot be trapped.
        let pt = puppet(en).await;
        order(pt, atom("trap"), "trap").await;
        pt.exit(Reason::other("soft"));
        assert_eq!(puppet_exit(pt).await, (Term::Pid(me), atom("soft")));
        pt.exit(Reason::Kill);
        assert_eq!(puppet_down(pt).await, atom("killed"));

        // Another reason kills a non-trapping erl process; normal does not.
        let pn = puppet(en).await;
        pn.exit(Reason::Term(std::sync::Arc::new(tuple([
            atom("custom"),
            Term::Int(1),
        ]))));
        assert_eq!(puppet_down(pn).await, tuple([atom("custom"), Term::Int(1)]));
        let pn = puppet(en).await;
        pn.exit(Reason::Normal);
        // The reply comes after the signal (one sender, one connection).
        assert_eq!(links_of(pn).await, Term::Nil);
        expect_none::<Term>("a normal exit signal killed the erl process", |t| {
            matches!(t.as_tuple(), Some([tag, p, _]) if tag.is_atom(a("puppet_down")) && p.as_pid() == Some(pn))
        })
        .await;

        // erl's to ours.
        let killer = puppet(en).await;
        let exit_other = |to: Pid, reason: Term| {
            tuple([atom("exit_other"), Term::Pid(to), reason])
        };
        // `kill` kills even a trapping process, with `killed`.
        let (r, m) = beamish::spawn_monitor(our_process(true, me));
        ping(r).await;
        assert_eq!(
            order(killer, exit_other(r, atom("kill")), "exit kill").await,
            atom("true")
        );
        let down = recv::<Down>("killed", |d| d.monitor == m).await;
        assert_eq!((down.pid, down.reason), (r, Reason::Killed));
        // Another reason kills a non-trapping process with it.
        let (r, m) = beamish::spawn_monitor(our_process(false, me));
        ping(r).await;
        let custom = tuple([atom("custom"), Term::Int(2)]);
        order(killer, exit_other(r, custom.clone()), "exit custom").await;
        let down = recv::<Down>("custom exit", |d| d.monitor == m).await;
        assert_eq!(down.reason, Reason::from_term(custom.clone()));
        // A trapping process gets it as a message.
        let (r, m) = beamish::spawn_monitor(our_process(true, me));
        ping(r).await;
        order(killer, exit_other(r, custom.clone()), "exit custom").await;
        let (from, exit) = recv::<(Pid, Exit)>("trapped exit", |(f, _)| *f == r).await;
        assert_eq!(from, r);
        assert_eq!(exit, Exit { from: killer, reason: Reason::from_term(custom) });
        // `normal` is ignored by a non-trapping process.
        order(killer, exit_other(r, atom("normal")), "exit normal").await;
        let (_, exit) = recv::<(Pid, Exit)>("trapped normal exit", |(f, _)| *f == r).await;
        assert_eq!(exit, Exit { from: killer, reason: Reason::Normal });
        r.exit(Reason::Kill);
        recv::<Down>("cleanup", |d| d.monitor == m).await;
        let (r, m) = beamish::spawn_monitor(our_process(false, me));
        ping(r).await;
        order(killer, exit_other(r, atom("normal")), "exit normal").await;
        ping(r).await;
        expect_none::<Down>("a normal exit signal killed our process", |d| d.monitor == m).await;
        r.exit(Reason::Kill);
    });
}

#[test]
fn unlink_stops_exit_signals() {
    let w = w();
    let e = helper_node("unlink", "wait");
    let en = a(e.node());
    w.run(async move {
        let me = beamish::self_pid();
        beamish::trap_exit(true);
        // We unlink: erl's side drops the link, and its exit reaches nobody.
        let p = puppet(en).await;
        beamish::link(p).expect("link");
        assert_eq!(links_of(p).await, pids(&[me]));
        beamish::unlink(p);
        assert_eq!(links_of(p).await, Term::Nil, "erl kept the link");
        order(p, tuple([atom("exit"), atom("after_unlink")]), "exit").await;
        assert_eq!(puppet_down(p).await, atom("after_unlink"));
        expect_none::<Exit>("an exit signal after unlink", |e| e.from == p).await;

        // We unlink, then our process exits: the erl process lives on.
        let p = puppet(en).await;
        let (q, m) = beamish::spawn_monitor(async move {
            beamish::link(p).expect("link");
            beamish::unlink(p);
            beamish::exit::<()>(Reason::other("bye")).await;
        });
        let down = recv::<Down>("q ends", |d| d.monitor == m).await;
        assert_eq!((down.pid, down.reason), (q, Reason::other("bye")));
        assert_eq!(links_of(p).await, Term::Nil);
        expect_none::<Term>("the erl process died", |t| {
            matches!(t.as_tuple(), Some([tag, x, _]) if tag.is_atom(a("puppet_down")) && x.as_pid() == Some(p))
        })
        .await;

        // erl links and unlinks: our side drops the link too, and our
        // exit reaches nobody.
        let p = puppet(en).await;
        order(p, atom("trap"), "trap").await;
        let (r, m) = beamish::spawn_monitor(our_process(true, me));
        assert_eq!(
            order(p, tuple([atom("link"), Term::Pid(r)]), "link").await,
            atom("true")
        );
        eventually_linked(r, p, true).await;
        order(p, tuple([atom("unlink"), Term::Pid(r)]), "unlink").await;
        eventually_linked(r, p, false).await;
        r.exit(Reason::Kill);
        let down = recv::<Down>("r killed", |d| d.monitor == m).await;
        assert_eq!(down.reason, Reason::Killed);
        // The puppet answers after anything our side sent it before.
        assert_eq!(links_of(p).await, Term::Nil);
        expect_none::<Term>("an exit signal after erl's unlink", |t| {
            matches!(t.as_tuple(), Some([tag, x, _, _]) if tag.is_atom(a("puppet_exit")) && x.as_pid() == Some(p))
        })
        .await;
    });
}

#[test]
fn killing_the_erl_node_gives_nodedown_and_noconnection() {
    let w = w();
    let e = helper_node("killed", "wait");
    let en = a(e.node());
    let os_pid = e.os_pid();
    w.run(async move {
        let me = beamish::self_pid();
        beamish::trap_exit(true);
        let [p1, p2, p3, p4] = [
            puppet(en).await,
            puppet(en).await,
            puppet(en).await,
            puppet(en).await,
        ];
        dist::monitor_node(en, true);
        // A trapping process linked to p1 reports its exits.
        let l = beamish::spawn(async move {
            beamish::trap_exit(true);
            beamish::link(p1).expect("link");
            me.send(atom("l_linked"));
            let exit = beamish::receive::<Exit>().await;
            me.send((beamish::self_pid(), exit));
        });
        recv_term("l linked", |t| t.is_atom(a("l_linked"))).await;
        // A non-trapping process linked to p2 dies with noconnection.
        let (n, n_mon) = beamish::spawn_monitor(async move {
            beamish::link(p2).expect("link");
            me.send(atom("n_linked"));
            let _ = beamish::receive::<()>().await;
        });
        recv_term("n linked", |t| t.is_atom(a("n_linked"))).await;
        let m3 = beamish::monitor(p3);
        beamish::link(p4).expect("link");
        let m4 = beamish::monitor(p4);
        assert_eq!(links_of(p1).await, pids(&[l]));
        assert_eq!(links_of(p2).await, pids(&[n]));
        assert_eq!(links_of(p4).await, pids(&[me]));

        signal_group(os_pid, libc::SIGKILL);

        let down = recv::<NodeDown>("nodedown", |d| d.node == en).await;
        assert_eq!(down, NodeDown { node: en });
        let (from, exit) = recv::<(Pid, Exit)>("l's exit", |(f, _)| *f == l).await;
        assert_eq!(from, l);
        assert_eq!(
            exit,
            Exit {
                from: p1,
                reason: Reason::NoConnection
            }
        );
        let d = recv::<Down>("n dies", |d| d.monitor == n_mon).await;
        assert_eq!((d.pid, d.reason), (n, Reason::NoConnection));
        let d = recv::<Down>("p3 down", |d| d.monitor == m3).await;
        assert_eq!((d.pid, d.reason), (p3, Reason::NoConnection));
        let d = recv::<Down>("p4 down", |d| d.monitor == m4).await;
        assert_eq!((d.pid, d.reason), (p4, Reason::NoConnection));
        let exit = recv::<Exit>("p4's link", |e| e.from == p4).await;
        assert_eq!(exit.reason, Reason::NoConnection);
        assert!(!dist::nodes().contains(&en), "{:?}", dist::nodes());

        // The node is gone: watching it or its processes fails at once.
        dist::monitor_node(en, true);
        recv::<NodeDown>("nodedown of a dead node", |d| d.node == en).await;
        let m = beamish::monitor(p1);
        let d = recv::<Down>("monitor of a dead node's pid", |d| d.monitor == m).await;
        assert_eq!((d.pid, d.reason), (p1, Reason::NoConnection));
        p1.send(atom("dropped"));
        assert!(!dist::nodes().contains(&en));
    });
}

#[test]
fn a_wrong_cookie_gets_pang_and_a_log_line() {
    let w = w();
    let mut e = helper_node_with_cookie("badcookie", "ping", "not_the_cookie");
    assert_eq!(e.expect_line("ping ", WAIT).trim(), "ping pang");
    assert_eq!(e.expect_line("nodes ", WAIT).trim(), "nodes []");
    let line = w.expect_log(&["wrong cookie", e.node()]);
    println!("{line}");
    assert!(!dist::nodes().contains(&a(e.node())));
}

/// erl disconnects us (its socket is closed and its `nodes()` no longer
/// lists us), then asks us, through a second erl node, to send to one of
/// its processes: the send must connect again and arrive, as
/// `dist.auto_connect.by_pid` of the contract suite checks (and as it does
/// between erl nodes). The send is causally after the close, so it must not
/// go down with the old connection. Repeated, because whether our
/// connection process has already handled the close when the send comes is
/// a matter of timing (each round takes a few milliseconds).
#[test]
fn a_send_after_erl_disconnected_us_connects_again() {
    const ROUNDS: i64 = 100;
    let w = w();
    let e1 = helper_node("disc_target", "wait");
    let e2 = helper_node("disc_relay", "wait");
    let (n1, n2) = (a(e1.node()), a(e2.node()));
    w.run(async move {
        let me = beamish::self_pid();
        let reg = |name: &str| tuple([atom("register_forwarder"), atom(name)]);
        assert_eq!(ctl(n1, reg("fwd"), "fwd").await, atom("true"));
        assert_eq!(ctl(n2, reg("relay"), "relay").await, atom("true"));
        // fwd's pid: ask it to forward our own pid back.
        dist::send_named(a("fwd"), n1, tuple([Term::Pid(me), atom("hello")]));
        recv_term("fwd works", |t| {
            matches!(t.as_tuple(), Some([f, _, x, _]) if f.is_atom(a("forwarded")) && x.is_atom(a("hello")))
        })
        .await;
        let fwd = pid_of(
            &ctl(n1, tuple([atom("whereis"), atom("fwd")]), "whereis").await,
            "fwd",
        );
        for round in 0..ROUNDS {
            // Erlang's guarantee: a send made after this node has seen the
            // connection go down connects again and arrives. (A send racing
            // with the peer's close can be lost on any node, OTP's too: the
            // bytes may be written just before the peer's close resets the
            // connection.)
            dist::monitor_node(n1, true);
            let go = tuple([atom("go"), Term::Int(round)]);
            dist::send_named(
                a("ctl"),
                n1,
                tuple([
                    Term::Pid(me),
                    new_tag(),
                    tuple([
                        atom("disconnect_and_tell"),
                        Term::Atom(w_node()),
                        tuple([atom("relay"), Term::Atom(n2)]),
                        tuple([Term::Pid(me), go.clone()]),
                    ]),
                ]),
            );
            recv_term("go from the relay", |t| {
                matches!(t.as_tuple(), Some([f, _, x, _]) if f.is_atom(a("forwarded")) && *x == go)
            })
            .await;
            recv::<NodeDown>("our nodedown", |d| d.node == n1).await;
            let msg = tuple([atom("after_disconnect"), Term::Int(round)]);
            fwd.send(tuple([Term::Pid(me), msg.clone()]));
            let got = beamish::receive_if::<Term, _>(|t| {
                matches!(t.as_tuple(), Some([f, _, x, _]) if f.is_atom(a("forwarded")) && *x == msg)
            })
            .timeout(WAIT)
            .await;
            if got.is_none() {
                let logs = common::world("").logs();
                let ours: Vec<&str> = logs.lines().filter(|l| l.contains(n1.as_str())).collect();
                panic!(
                    "round {round}: a send to {fwd} after {n1} disconnected us was lost; \
                     our last log lines about {n1}:\n{}",
                    ours[ours.len().saturating_sub(6)..].join("\n")
                );
            }
        }
    });
}

/// erl disconnects us after we connected to it (by a send) and nothing is
/// left to send: like an Erlang node, we must not connect again on our own
/// (the contract suite's `dist.auto_connect` waits for the disconnect to
/// show in the helper's `nodes()`). erl reports, through a second node,
/// whether we are back a second later.
#[test]
fn a_node_that_disconnected_us_is_not_connected_again_unasked() {
    let w = w();
    let e1 = helper_node("unasked_target", "wait");
    let e2 = helper_node("unasked_relay", "wait");
    let (n1, n2) = (a(e1.node()), a(e2.node()));
    w.run(async move {
        let me = beamish::self_pid();
        let reg = |name: &str| tuple([atom("register_forwarder"), atom(name)]);
        assert_eq!(ctl(n2, reg("relay"), "relay").await, atom("true"));
        for round in 0..3 {
            dist::monitor_node(n1, true);
            dist::send_named(
                a("ctl"),
                n1,
                tuple([
                    Term::Pid(me),
                    new_tag(),
                    tuple([
                        atom("disconnect_and_watch"),
                        Term::Atom(w_node()),
                        Term::Int(1000),
                        tuple([atom("relay"), Term::Atom(n2)]),
                        Term::Pid(me),
                    ]),
                ]),
            );
            recv::<NodeDown>("our nodedown", |d| d.node == n1).await;
            let report = recv_term("the helper's report", |t| {
                matches!(t.as_tuple(), Some([f, _, x, _]) if f.is_atom(a("forwarded"))
                    && x.as_tuple().is_some_and(|r| r[0].is_atom(a("connected_again"))))
            })
            .await;
            let Some([_, _, r, _]) = report.as_tuple() else {
                unreachable!()
            };
            assert_eq!(
                r.as_tuple().map(|r| r[1].clone()),
                Some(atom("false")),
                "round {round}: we connected to {n1} again with nothing to send"
            );
            assert!(!dist::nodes().contains(&n1), "round {round}");
        }
    });
}

fn w_node() -> Atom {
    w().node
}
