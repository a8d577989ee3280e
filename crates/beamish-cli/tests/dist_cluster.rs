//! A cluster of beamish nodes: `beamish node` children (each with the
//! contract's `echo` service) and the test binary itself as one more node,
//! which drives them through the echo protocol (`{From, Ref, spawn}`,
//! `send`, `link_me`, `trap`, `monitor`, `monitor_node`, `crash`).
//!
//! All on a private EPMD; the tests of this file run one at a time (one
//! of them stops the EPMD for a moment). Every wait is bounded by
//! `common::WAIT`; nothing asserts on time.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use beamish::dist::{self, Atom, NodeDown, NodeUp, Term};
use beamish::{Down, Exit, Pid, Reason};
use common::erl::{node_name, unique_name};
use common::{
    COOKIE, Child, World, a, atom, call, call_named, eventually, expect_none, new_tag, pid_of,
    recv, recv_term, reply, request, signal_group, tuple,
};

fn w() -> &'static World {
    // Between the children's names: "aaa_..." < "beamish_..." < "zzz_...".
    common::world("beamish_cluster")
}

/// One test at a time: the simultaneous-connect test stops the shared EPMD.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start_child(prefix: &str) -> Child {
    let w = w();
    let name = node_name(&unique_name(prefix));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamish"));
    cmd.args([
        "node",
        "--name",
        &name,
        "--cookie",
        COOKIE,
        "--threads",
        "2",
    ])
    .args(["--epmd-port", &w.epmd_port.to_string()]);
    Child::start(&name, cmd)
}

/// Runs `test` on our node; on failure, panics with the reason and what
/// the children printed.
fn run_with<T: Send + 'static>(
    children: &[&Child],
    test: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    w().run_with_children(children, test)
}

/// Spawns an echo process on `node` (through its registered `echo`).
async fn spawn_echo(node: Atom) -> Pid {
    pid_of(
        &call_named("echo", node, vec![atom("spawn")], "spawn").await,
        "spawn",
    )
}

/// `{Dest, ...}` for a registered name on a node.
fn named(name: &str, node: Atom) -> Term {
    tuple([atom(name), Term::Atom(node)])
}

/// Asks `via`'s echo process to send `msg` to `dest`.
async fn send_via(via: Pid, dest: Term, msg: Term) {
    assert_eq!(
        call(via, vec![atom("send"), dest, msg], "send").await,
        atom("sent")
    );
}

/// Asks an echo process for `{Tag, sync}`: it has handled everything sent
/// to it before.
async fn sync(pid: Pid) {
    assert_eq!(call(pid, vec![atom("sync")], "sync").await, atom("sync"));
}

/// A message `{tag, Pid, Reason}` (`exit_seen`, `down_seen`) about `pid`;
/// returns the reason.
async fn seen(tag: &str, pid: Pid) -> Term {
    let t = a(tag);
    let m = recv_term(
        tag,
        |m| matches!(m.as_tuple(), Some([x, p, _]) if x.is_atom(t) && p.as_pid() == Some(pid)),
    )
    .await;
    m.as_tuple().expect("a tuple")[2].clone()
}

#[test]
fn three_beamish_nodes_and_the_test_node_form_a_cluster() {
    let _serial = serial();
    let w = w();
    let (ca, cb, cc) = (
        start_child("clu_a"),
        start_child("clu_b"),
        start_child("clu_c"),
    );
    let all = [ca.node, cb.node, cc.node];
    let before = dist::nodes();
    assert!(
        all.iter().all(|n| !before.contains(n)),
        "connected before any message: {before:?}"
    );
    let b_os_pid = cb.proc.os_pid();
    let me_node = w.node;
    let after = run_with(&[&ca, &cb, &cc], async move {
        let me = beamish::self_pid();
        beamish::trap_exit(true);
        let [an, bn, cn] = all;

        // The test node with each: by name, and a spawned echo by pid.
        let mut echos = Vec::new();
        for n in all {
            let hello = tuple([atom("hello"), Term::Atom(n)]);
            assert_eq!(
                call_named("echo", n, vec![hello.clone()], "hello").await,
                hello
            );
            let e = spawn_echo(n).await;
            assert_eq!(e.node(), n);
            echos.push(e);
        }
        let nodes = dist::nodes();
        assert!(all.iter().all(|n| nodes.contains(n)), "{nodes:?}");

        // Every ordered pair: X sends to Y's registered echo (X connects
        // to Y), and to a spawned echo of Y by pid; Y answers us directly.
        for x in 0..3 {
            for y in 0..3 {
                if x == y {
                    continue;
                }
                let body = tuple([atom("via"), Term::Atom(all[x]), Term::Atom(all[y])]);
                let tag = new_tag();
                send_via(
                    echos[x],
                    named("echo", all[y]),
                    request(tag.clone(), vec![body.clone()]),
                )
                .await;
                assert_eq!(reply(&tag, "pair by name").await, body);
                let tag = new_tag();
                let body = tuple([atom("by_pid"), Term::Int(x as i64), Term::Int(y as i64)]);
                send_via(
                    echos[x],
                    Term::Pid(echos[y]),
                    request(tag.clone(), vec![body.clone()]),
                )
                .await;
                assert_eq!(reply(&tag, "pair by pid").await, body);
            }
        }
        // And X to us, by name and by pid.
        beamish::register(format!("cluster_sink_{}", std::process::id()), me).expect("register");
        let sink = named(&format!("cluster_sink_{}", std::process::id()), me_node);
        for (i, e) in echos.iter().enumerate() {
            let m = tuple([atom("to_test_node"), Term::Int(i as i64)]);
            send_via(*e, sink.clone(), m.clone()).await;
            recv_term("a send to our registered name", |t| *t == m).await;
            let m = tuple([atom("to_test_pid"), Term::Int(i as i64)]);
            send_via(*e, Term::Pid(me), m.clone()).await;
            recv_term("a send to our pid", |t| *t == m).await;
        }

        // A link between A and B: B's process traps and sees A's crash.
        let ea = spawn_echo(an).await;
        let eb = spawn_echo(bn).await;
        assert_eq!(call(eb, vec![atom("trap")], "trap").await, atom("trapping"));
        ea.send(request_from(eb, vec![atom("link_me")]));
        let crash = new_tag();
        ea.send(tuple([Term::Pid(me), crash.clone(), atom("crash")]));
        let crashed = tuple([atom("crashed"), crash.clone()]);
        assert_eq!(seen("exit_seen", ea).await, crashed);
        // ... and a non-trapping B process linked to a crashing C process
        // dies with the same reason.
        let ec = spawn_echo(cn).await;
        let eb2 = spawn_echo(bn).await;
        ec.send(request_from(eb2, vec![atom("link_me")]));
        sync(ec).await;
        // Our monitor is set up once eb2 has answered a later message.
        let m_eb2 = beamish::monitor(eb2);
        sync(eb2).await;
        let crash = new_tag();
        ec.send(tuple([Term::Pid(me), crash.clone(), atom("crash")]));
        let d = recv::<Down>("eb2 dies", |d| d.monitor == m_eb2).await;
        assert_eq!(d.reason, Reason::from_term(tuple([atom("crashed"), crash])));

        // A monitor from C on A.
        let ec = spawn_echo(cn).await;
        let ea2 = spawn_echo(an).await;
        assert_eq!(
            call(ec, vec![atom("monitor"), Term::Pid(ea2)], "monitor").await,
            atom("monitoring")
        );
        // The monitor is set up on A once a message from ec, sent after it,
        // has reached ea2 (one sender, one connection: in order).
        let tag = new_tag();
        send_via(ec, Term::Pid(ea2), request(tag.clone(), vec![atom("sync")])).await;
        assert_eq!(reply(&tag, "ec to ea2").await, atom("sync"));
        let crash = new_tag();
        ea2.send(tuple([Term::Pid(me), crash.clone(), atom("crash")]));
        assert_eq!(
            seen("down_seen", ea2).await,
            tuple([atom("crashed"), crash])
        );

        // Then B is killed (SIGKILL): A, C and we see nodedown, and links
        // and monitors to B's processes give noconnection.
        let (wa, wc) = (spawn_echo(an).await, spawn_echo(cn).await);
        for w in [wa, wc] {
            assert_eq!(
                call(
                    w,
                    vec![atom("monitor_node"), Term::Atom(bn)],
                    "monitor_node"
                )
                .await,
                atom("monitoring_node")
            );
        }
        dist::monitor_node(bn, true);
        let [b1, b2, b3, b4] = [
            spawn_echo(bn).await,
            spawn_echo(bn).await,
            spawn_echo(bn).await,
            spawn_echo(bn).await,
        ];
        // A trapping A process linked to b1.
        let ta = spawn_echo(an).await;
        assert_eq!(call(ta, vec![atom("trap")], "trap").await, atom("trapping"));
        ta.send(request_from(b1, vec![atom("link_me")]));
        sync(ta).await;
        // A C process monitoring b2.
        let mc = spawn_echo(cn).await;
        assert_eq!(
            call(mc, vec![atom("monitor"), Term::Pid(b2)], "monitor").await,
            atom("monitoring")
        );
        // A non-trapping C process linked to b3.
        let nc = spawn_echo(cn).await;
        nc.send(request_from(b3, vec![atom("link_me")]));
        let m_nc = beamish::monitor(nc);
        sync(nc).await;
        // We link to and monitor b4.
        beamish::link(b4).expect("link");
        let m_b4 = beamish::monitor(b4);
        sync(b4).await;

        signal_group(b_os_pid, libc::SIGKILL);

        assert_eq!(
            recv::<NodeDown>("our nodedown", |d| d.node == bn).await,
            NodeDown { node: bn }
        );
        let nodedown_seen = tuple([atom("nodedown_seen"), Term::Atom(bn)]);
        for _ in 0..2 {
            recv_term("nodedown_seen from A and C", |t| *t == nodedown_seen).await;
        }
        assert_eq!(seen("exit_seen", b1).await, atom("noconnection"));
        assert_eq!(seen("down_seen", b2).await, atom("noconnection"));
        let d = recv::<Down>("nc dies", |d| d.monitor == m_nc).await;
        assert_eq!((d.pid, d.reason), (nc, Reason::NoConnection));
        let e = recv::<Exit>("our link to b4", |e| e.from == b4).await;
        assert_eq!(e.reason, Reason::NoConnection);
        let d = recv::<Down>("our monitor of b4", |d| d.monitor == m_b4).await;
        assert_eq!((d.pid, d.reason), (b4, Reason::NoConnection));
        let nodes = dist::nodes();
        assert!(!nodes.contains(&bn), "{nodes:?}");
        assert!(nodes.contains(&an) && nodes.contains(&cn), "{nodes:?}");

        // A and C still talk to each other and to us.
        let tag = new_tag();
        send_via(
            wa,
            named("echo", cn),
            request(tag.clone(), vec![atom("still")]),
        )
        .await;
        assert_eq!(reply(&tag, "A to C after B died").await, atom("still"));
        dist::nodes()
    });
    assert!(!after.contains(&cb.node), "{after:?}");
    assert!(
        after.contains(&ca.node) && after.contains(&cc.node),
        "{after:?}"
    );
}

/// `{From, Tag, req...}` with another process as `From`: its reply goes
/// there (an echo process ignores a `{Tag, Reply}`).
fn request_from(from: Pid, req: Vec<Term>) -> Term {
    let mut items = vec![Term::Pid(from), new_tag()];
    items.extend(req);
    Term::Tuple(items)
}

/// Sends SIGSTOP to a process group, and SIGCONT when dropped.
struct Stopped(u32);

impl Stopped {
    fn new(pgid: u32) -> Stopped {
        signal_group(pgid, libc::SIGSTOP);
        Stopped(pgid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGCONT);
    }
}

/// How many messages each side sends while both connect.
const K: i64 = 20;

/// The test node and a child X connect to each other at the same moment,
/// both with messages queued: X's name sorts `x_prefix` before or after
/// ours, so each side loses the tie-break in one of the two tests.
///
/// To make both sides initiate, the EPMD is stopped (SIGSTOP) while each
/// side queues its messages: X's (through a relay node A that is connected
/// to both) and then ours. Both connection attempts wait on their EPMD
/// look-up; then the EPMD continues and both dial at once. Neither attempt
/// can complete before the other has begun, so whichever acceptor reads
/// the other side's name first finds an attempt of its own pending: the
/// simultaneous case of the handshake (which attempt survives depends on
/// the names and on timing). Afterwards the pair must have exactly one connection,
/// one `nodeup` and no `nodedown`, and every message of both sides must
/// have arrived, in order.
fn simultaneous_connect(x_prefix: &str) {
    let _serial = serial();
    let w = w();
    let relay = start_child("relay");
    let x = start_child(x_prefix);
    let (an, xn, dn) = (relay.node, x.node, w.node);
    let x_os_pid = x.proc.os_pid();
    let epmd = w.epmd_os_pid;
    let sink_name = format!("sim_sink_{}", unique_name("s"));
    run_with(&[&relay, &x], async move {
        let me = beamish::self_pid();
        beamish::register(sink_name.clone(), me).expect("register");
        dist::monitor_nodes(true);
        let sink = named(&sink_name, dn);

        // We reach A; A reaches X and X answers A (not us): X and we stay
        // unconnected.
        let ea = spawn_echo(an).await;
        let tag = new_tag();
        let back = request(tag.clone(), vec![atom("ax_ok")]);
        send_via_named(
            an,
            named("echo", xn),
            request_from(ea, vec![atom("send"), named("echo", an), back]),
        )
        .await;
        assert_eq!(reply(&tag, "A and X connected").await, atom("ax_ok"));
        assert!(!dist::nodes().contains(&xn), "connected to X already");

        let stopped = Stopped::new(epmd);
        // X sends K messages to our sink, each followed by `sent` to us.
        // (A's `sent` replies are collected after: no round trip each.)
        let mut x_tags = Vec::new();
        let mut a_tags = Vec::new();
        for k in 1..=K {
            let tag = new_tag();
            let req = request(
                tag.clone(),
                vec![
                    atom("send"),
                    sink.clone(),
                    tuple([atom("seq"), Term::Int(k)]),
                ],
            );
            let a_tag = new_tag();
            dist::send_named(
                a("echo"),
                an,
                request(a_tag.clone(), vec![atom("send"), named("echo", xn), req]),
            );
            x_tags.push(tag);
            a_tags.push(a_tag);
        }
        for tag in &a_tags {
            assert_eq!(reply(tag, "A passed a request on").await, atom("sent"));
        }
        // X has handled them (so its connection to us is pending) once it
        // has passed this on to A.
        let tag = new_tag();
        let back = request(tag.clone(), vec![atom("x_done")]);
        send_via_named(
            an,
            named("echo", xn),
            request_from(ea, vec![atom("send"), named("echo", an), back]),
        )
        .await;
        assert_eq!(reply(&tag, "X handled its sends").await, atom("x_done"));
        // Our K requests to X's echo: our connection is pending too.
        let mut d_tags = Vec::new();
        for k in 1..=K {
            let tag = new_tag();
            dist::send_named(
                a("echo"),
                xn,
                request(tag.clone(), vec![tuple([atom("direct"), Term::Int(k)])]),
            );
            d_tags.push(tag);
        }
        drop(stopped);

        // Everything arrives, in order.
        let seq = a("seq");
        for k in 1..=K {
            let t = recv_term(
                "X's sends to our sink",
                |t| matches!(t.as_tuple(), Some([s, _]) if s.is_atom(seq)),
            )
            .await;
            assert_eq!(t, tuple([atom("seq"), Term::Int(k)]), "out of order");
        }
        for tag in &x_tags {
            assert_eq!(reply(tag, "X's replies").await, atom("sent"));
        }
        for (k, tag) in (1..=K).zip(&d_tags) {
            assert_eq!(
                reply(tag, "X's answers to our requests").await,
                tuple([atom("direct"), Term::Int(k)])
            );
        }
        assert!(dist::nodes().contains(&xn), "{:?}", dist::nodes());

        // One connection: one socket between the two processes, in the
        // end (the losing attempt's socket closes).
        let our_os_pid = std::process::id();
        eventually("one socket between us and X", || {
            let n = established_between(our_os_pid, x_os_pid);
            (n == 1, n)
        })
        .await;
        // It works both ways.
        let again = tuple([atom("again"), Term::Int(1)]);
        assert_eq!(
            call_named("echo", xn, vec![again.clone()], "again").await,
            again
        );
        let tag = new_tag();
        send_via_named(
            an,
            named("echo", xn),
            request_from(
                ea,
                vec![
                    atom("send"),
                    sink.clone(),
                    tuple([atom("late"), tag.clone()]),
                ],
            ),
        )
        .await;
        recv_term("X to us after the race", |t| {
            *t == tuple([atom("late"), tag.clone()])
        })
        .await;
        assert_eq!(established_between(our_os_pid, x_os_pid), 1);

        // Exactly one nodeup for X, and no nodedown.
        recv::<NodeUp>("nodeup of X", |u| u.node == xn).await;
        expect_none::<NodeUp>("a second nodeup of X", |u| u.node == xn).await;
        expect_none::<NodeDown>("a nodedown of X", |d| d.node == xn).await;
        expect_none::<Term>(
            "a stray message",
            |t| matches!(t.as_tuple(), Some([s, _]) if s.is_atom(seq)),
        )
        .await;
        dist::monitor_nodes(false);
    });
}

/// Asks the registered echo of `via` to send `msg` to `dest`.
async fn send_via_named(via: Atom, dest: Term, msg: Term) {
    assert_eq!(
        call_named("echo", via, vec![atom("send"), dest, msg], "send").await,
        atom("sent")
    );
}

#[test]
fn a_simultaneous_connect_with_a_node_named_lower() {
    simultaneous_connect("aaa_simlo");
}

#[test]
fn a_simultaneous_connect_with_a_node_named_higher() {
    simultaneous_connect("zzz_simhi");
}

/// The number of established TCP connections whose one end belongs to
/// process `a` and the other to process `b` (Linux: /proc).
fn established_between(a: u32, b: u32) -> usize {
    let inodes = |pid: u32| -> HashSet<u64> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return HashSet::new();
        };
        dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                l.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let (ia, ib) = (inodes(a), inodes(b));
    // (local, remote, state, inode) of every IPv4 TCP socket.
    let table: Vec<(String, String, String, u64)> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(1)?.to_string(),
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
                f.get(9)?.parse().ok()?,
            ))
        })
        .collect();
    table
        .iter()
        .filter(|(_, _, st, inode)| st == "01" && ia.contains(inode))
        .filter(|(local, remote, _, _)| {
            table.iter().any(|(l2, r2, st2, i2)| {
                st2 == "01" && l2 == remote && r2 == local && ib.contains(i2)
            })
        })
        .count()
}
