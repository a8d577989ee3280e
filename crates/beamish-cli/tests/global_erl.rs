//! `beamish::global` against OTP's `global` on real `erl` nodes.
//!
//! The test binary is one beamish node running the global name server; each
//! test starts its own `erl` nodes (global's default `connect_all true`),
//! which run `tests/erl/global_helper.erl`. Global connects every node it
//! hears of, so the tests run one at a time (a lock), each with names of its
//! own, and kill their `erl` nodes when they end. Every wait is bounded by
//! [`WAIT`]; nothing asserts on time.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use beamish::dist::{self, Atom, Term};
use beamish::global::{self, Resolve};
use beamish::{Down, Pid, Reason};
use common::erl::ErlNode;
use common::{WAIT, World, a, atom, call_named, pid_of, recv, recv_term, tuple};

fn w() -> &'static World {
    common::world("beamish_global")
}

/// One test at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `cond` (an async check) until it holds, or panics with `what` and
/// the last value it saw after [`WAIT`].
async fn eventually_async<T, F, Fut>(what: &str, mut cond: F)
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ok, seen) = cond().await;
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still not the case after {WAIT:?} (last seen: {seen:?})"
        );
        beamish::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts our name server (once; later calls find it).
async fn started() -> Pid {
    global::start().await.expect("global::start")
}

/// An `erl` node running the helper: it registers `names` (with their
/// methods) before any connection, then pings us if `ping`.
fn helper(prefix: &str, ping: bool, names: &[(Term, &str)]) -> ErlNode {
    let w = w();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erl/global_helper.erl");
    let names: Vec<String> = names.iter().map(|(n, m)| format!("{{{n}, {m}}}")).collect();
    let eval = format!(
        "{{ok, [[Src]]}} = init:get_argument(global_helper_src), \
         {{ok, M, B}} = compile:file(Src, [binary, return_errors]), \
         {{module, M}} = code:load_binary(M, Src, B), \
         global_helper:start('{}', {}, [{}]).",
        w.node.as_str(),
        if ping { "ping" } else { "wait" },
        names.join(", ")
    );
    let mut node = w
        .erl(prefix)
        .connect_all(true)
        .arg("-global_helper_src")
        .arg(src.to_str().expect("a UTF-8 path"))
        .eval(&eval)
        .start();
    node.expect_line("ready", WAIT);
    node
}

fn node_atom(n: &ErlNode) -> Atom {
    a(n.node())
}

/// A request to the `ctl` process of `node`.
async fn ctl(node: Atom, req: Term, what: &str) -> Term {
    call_named("ctl", node, vec![req], what).await
}

/// `apply(global, F, Args)` on `node`.
async fn erl_global(node: Atom, f: &str, args: Vec<Term>) -> Term {
    ctl(
        node,
        tuple([atom("apply"), atom("global"), atom(f), Term::List(args)]),
        f,
    )
    .await
}

/// What `global:whereis_name(Name)` gives on `node`: a pid or None.
async fn erl_whereis(node: Atom, name: &Term) -> Option<Pid> {
    erl_global(node, "whereis_name", vec![name.clone()])
        .await
        .as_pid()
}

/// Waits until `global:whereis_name(Name)` on `node` satisfies `ok`.
async fn erl_whereis_until(node: Atom, name: &Term, what: &str, ok: impl Fn(Option<Pid>) -> bool) {
    let mut last = None;
    for _ in 0..WAIT.as_millis() / 50 {
        last = erl_whereis(node, name).await;
        if ok(last) {
            return;
        }
        beamish::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: erl's whereis_name({name}) is still {last:?}");
}

/// Waits until our `whereis_name(Name)` satisfies `ok`.
async fn whereis_until(name: &Term, what: &str, ok: impl Fn(Option<Pid>) -> bool) -> Option<Pid> {
    let mut last = None;
    for _ in 0..WAIT.as_millis() / 50 {
        last = global::whereis_name(name);
        if ok(last) {
            return last;
        }
        beamish::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: our whereis_name({name}) is still {last:?}");
}

/// `{spawn_register, Name, Method}` on `node`: the new process and whether
/// it got the name.
async fn erl_register(node: Atom, name: &Term, method: &str) -> (Term, Pid) {
    let r = ctl(
        node,
        tuple([atom("spawn_register"), name.clone(), atom(method)]),
        "spawn_register",
    )
    .await;
    match r.as_tuple() {
        Some([res, pid]) => (res.clone(), pid_of(pid, "registered pid")),
        _ => panic!("spawn_register: got {r}"),
    }
}

/// A beamish process that forwards every term it gets to its owner as
/// `{got, Self, Msg}`. Sent a `Pid`, it takes that process as its new owner
/// and first forwards what it kept since its last owner's process ended.
fn forwarder(owner: Pid) -> Pid {
    beamish::spawn(async move {
        let mut owner = owner;
        let mut kept: Vec<Term> = Vec::new();
        loop {
            let m = beamish::receive_match(|m| m.is::<Term>() || m.is::<Pid>()).await;
            match m.downcast::<Pid>() {
                Ok(new_owner) => {
                    owner = new_owner;
                    for t in kept.drain(..) {
                        owner.send(t);
                    }
                }
                Err(m) => {
                    let Ok(t) = m.downcast::<Term>() else {
                        continue;
                    };
                    let fwd = tuple([atom("got"), Term::Pid(beamish::self_pid()), t]);
                    kept.push(fwd.clone());
                    owner.send(fwd);
                }
            }
        }
    })
}

/// A unique name term for one test: `{Tag, OsPid}`.
fn name(tag: &str) -> Term {
    tuple([atom(tag), Term::from(u64::from(std::process::id()))])
}

/// Waits until `node` knows our node for global (its sync with us is done).
async fn synced_with(node: Atom) {
    let me = dist::this_node();
    eventually_async("erl node in sync with us", || async move {
        let synced = ctl(
            node,
            tuple([atom("apply"), atom("global"), atom("sync"), Term::Nil]),
            "global:sync",
        )
        .await;
        let info = global::info().await.expect("info");
        (
            synced == atom("ok") && info.synced.contains(&node),
            (synced, info.synced, me),
        )
    })
    .await;
}

#[test]
fn names_registered_on_erl_before_and_after_connecting_are_seen_here() {
    let _s = serial();
    let early = name("early");
    let erl = helper("pre", true, &[(early.clone(), "random_exit_name")]);
    let node = node_atom(&erl);
    let late = name("late");
    w().run(async move {
        started().await;
        let pid = whereis_until(&early, "name registered before connecting", |p| p.is_some())
            .await
            .expect("some pid");
        assert_eq!(pid.node(), node, "the erl process has the name");
        synced_with(node).await;
        let (res, late_pid) = erl_register(node, &late, "random_exit_name").await;
        assert_eq!(res, atom("yes"));
        whereis_until(&late, "name registered after connecting", |p| {
            p == Some(late_pid)
        })
        .await;
        assert!(global::registered_names().await.contains(&late));
        // Unregistered on erl: gone here too.
        assert_eq!(
            erl_global(node, "unregister_name", vec![late.clone()]).await,
            atom("ok")
        );
        whereis_until(&late, "name unregistered on erl", |p| p.is_none()).await;
    });
}

#[test]
fn names_registered_here_are_seen_and_reached_from_erl() {
    let _s = serial();
    let erl = helper("see", true, &[]);
    let node = node_atom(&erl);
    let n = name("ours");
    w().run(async move {
        started().await;
        synced_with(node).await;
        let me = beamish::self_pid();
        let pid = forwarder(me);
        global::register_name(n.clone(), pid)
            .await
            .expect("register");
        assert_eq!(global::whereis_name(&n), Some(pid));
        assert_eq!(erl_whereis(node, &n).await, Some(pid), "erl sees our pid");
        // global:send from erl reaches our process.
        let sent = erl_global(node, "send", vec![n.clone(), atom("hello")]).await;
        assert_eq!(sent, Term::Pid(pid));
        recv_term("the message global:send sent", |t| {
            *t == tuple([atom("got"), Term::Pid(pid), atom("hello")])
        })
        .await;
        // Our own send.
        assert_eq!(global::send(&n, atom("again")), Ok(pid));
        recv_term("global::send", |t| {
            *t == tuple([atom("got"), Term::Pid(pid), atom("again")])
        })
        .await;
        // A second registration of the name, from erl or here, is refused.
        let (res, loser) = erl_register(node, &n, "random_exit_name").await;
        assert_eq!(res, atom("no"));
        ctl(node, tuple([atom("kill"), Term::Pid(loser)]), "kill").await;
        let other = forwarder(me);
        assert!(matches!(
            global::register_name(n.clone(), other).await,
            Err(beamish::Error::NameTaken(_))
        ));
        // Unregistered here: gone on erl.
        global::unregister_name(&n).await.expect("unregister");
        assert_eq!(global::whereis_name(&n), None);
        assert_eq!(erl_whereis(node, &n).await, None);
        // re_register takes it whoever has it.
        global::register_name(n.clone(), pid)
            .await
            .expect("register again");
        global::re_register_name(n.clone(), other)
            .await
            .expect("re_register");
        assert_eq!(erl_whereis(node, &n).await, Some(other));
        global::unregister_name(&n).await.expect("unregister");
        pid.exit(Reason::Kill);
        other.exit(Reason::Kill);
    });
}

#[test]
fn a_dead_process_loses_its_name_everywhere() {
    let _s = serial();
    let erl = helper("death", true, &[]);
    let node = node_atom(&erl);
    let ours = name("dies_here");
    let theirs = name("dies_there");
    w().run(async move {
        started().await;
        synced_with(node).await;
        let pid = forwarder(beamish::self_pid());
        global::register_name(ours.clone(), pid)
            .await
            .expect("register");
        assert_eq!(erl_whereis(node, &ours).await, Some(pid));
        pid.exit(Reason::Kill);
        whereis_until(&ours, "our dead process", |p| p.is_none()).await;
        erl_whereis_until(node, &ours, "our dead process, on erl", |p| p.is_none()).await;

        let (res, epid) = erl_register(node, &theirs, "random_exit_name").await;
        assert_eq!(res, atom("yes"));
        whereis_until(&theirs, "erl's name", |p| p == Some(epid)).await;
        ctl(node, tuple([atom("kill"), Term::Pid(epid)]), "kill").await;
        whereis_until(&theirs, "erl's dead process", |p| p.is_none()).await;
    });
}

#[test]
fn names_of_a_killed_erl_node_disappear() {
    let _s = serial();
    let n = name("on_killed_node");
    let mut erl = helper("killed", true, &[(n.clone(), "random_exit_name")]);
    let node = node_atom(&erl);
    let pid = w().run({
        let n = n.clone();
        async move {
            started().await;
            synced_with(node).await;
            whereis_until(&n, "the erl name", |p| p.is_some())
                .await
                .expect("pid")
        }
    });
    assert_eq!(pid.node(), node);
    erl.proc().kill();
    w().run(async move {
        whereis_until(&n, "the name of a killed node", |p| p.is_none()).await;
        eventually_async("the killed node is no longer known", || async move {
            let info = global::info().await.expect("info");
            (!info.known.contains(&node), info.known)
        })
        .await;
    });
}

/// Two partitions, us and an erl node, each registered `n` with `method`;
/// then the erl node connects. Returns our pid and the erl pid.
fn clash(prefix: &str, tag: &str, method: &str, resolve: Resolve) -> (ErlNode, Term, Pid, Pid) {
    let n = name(tag);
    let ours = w().run({
        let n = n.clone();
        async move {
            started().await;
            let pid = forwarder(beamish::self_pid());
            global::register_name_with(n, pid, resolve)
                .await
                .expect("register here");
            pid
        }
    });
    let erl = helper(prefix, true, &[(n.clone(), method)]);
    let node = node_atom(&erl);
    // The erl process registered before it connected: it had the name then.
    let theirs = w().run(async move {
        let r = ctl(node, atom("started"), "started").await;
        match r.as_list() {
            Some([e]) => match e.as_tuple() {
                Some([_, res, pid]) if *res == atom("yes") => pid_of(pid, "erl pid"),
                _ => panic!("the erl registration at start: {r}"),
            },
            _ => panic!("the erl registrations at start: {r}"),
        }
    });
    (erl, n, ours, theirs)
}

/// After a heal with `random_exit_name`, the process on the greater node is
/// killed and the other keeps the name everywhere.
fn random_exit_clash(prefix: &str, tag: &str) {
    let _s = serial();
    let (erl, n, ours, theirs) = clash(prefix, tag, "random_exit_name", Resolve::RandomExit);
    let node = node_atom(&erl);
    let (winner, loser) = if ours.node().as_str() < theirs.node().as_str() {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    w().run(async move {
        let mon = beamish::monitor(loser);
        let down = recv::<Down>("the loser's death", |d| d.monitor == mon).await;
        assert_eq!(down.reason, Reason::Killed);
        whereis_until(&n, "the survivor here", |p| p == Some(winner)).await;
        erl_whereis_until(node, &n, "the survivor on erl", |p| p == Some(winner)).await;
        if winner.is_remote() {
            global::unregister_name(&n).await.expect("unregister");
        } else {
            winner.exit(Reason::Kill);
        }
    });
    drop(erl);
}

#[test]
fn a_clash_after_heal_keeps_the_process_on_the_smaller_node_when_we_resolve() {
    // "zz..." > "beamish...": we have the smaller name and run the resolve.
    random_exit_clash("zz", "clash_we_resolve");
}

#[test]
fn a_clash_after_heal_keeps_the_process_on_the_smaller_node_when_erl_resolves() {
    // "aa..." < "beamish...": the erl node runs the resolve, kills ours.
    random_exit_clash("aa", "clash_erl_resolves");
}

#[test]
fn a_notify_all_clash_unregisters_the_name_and_tells_both() {
    let _s = serial();
    let (erl, n, ours, theirs) = clash("zz", "clash_notify", "notify_all_name", Resolve::NotifyAll);
    let node = node_atom(&erl);
    w().run(async move {
        // Our process forwards what it got: the conflict notice names the other.
        ours.send(beamish::self_pid());
        let notice = tuple([atom("global_name_conflict"), n.clone(), Term::Pid(theirs)]);
        recv_term("our process's conflict notice", |t| {
            *t == tuple([atom("got"), Term::Pid(ours), notice.clone()])
        })
        .await;
        whereis_until(&n, "the name after notify_all", |p| p.is_none()).await;
        erl_whereis_until(node, &n, "the name on erl after notify_all", |p| {
            p.is_none()
        })
        .await;
        ours.exit(Reason::Kill);
    });
}

#[test]
fn a_custom_resolve_decides_a_clash_we_resolve() {
    let _s = serial();
    // Keep the erl process (`p1` is the other partition's), kill nobody.
    let resolve = Resolve::custom(|_name, p1, _p2| Some(p1));
    let (erl, n, ours, theirs) = clash("zz", "clash_custom", "random_exit_name", resolve);
    let node = node_atom(&erl);
    w().run(async move {
        whereis_until(&n, "the custom survivor", |p| p == Some(theirs)).await;
        erl_whereis_until(node, &n, "the custom survivor on erl", |p| {
            p == Some(theirs)
        })
        .await;
        assert!(ours.is_alive(), "a custom method kills nobody");
        ours.exit(Reason::Kill);
    });
}

#[test]
fn a_lock_held_by_a_node_that_dies_is_released() {
    let _s = serial();
    let mut erl = helper("locker", true, &[]);
    let node = node_atom(&erl);
    let resource = name("resource");
    w().run({
        let resource = resource.clone();
        async move {
            started().await;
            synced_with(node).await;
            let id = tuple([resource.clone(), atom("holder")]);
            let r = ctl(node, tuple([atom("hold_lock"), id]), "hold_lock").await;
            assert!(
                matches!(r.as_tuple(), Some([t, _]) if *t == atom("true")),
                "got {r}"
            );
            let info = global::info().await.expect("info");
            assert!(
                info.locks.iter().any(|(res, _, _)| *res == resource),
                "the erl process holds the lock here too: {info:?}"
            );
            // Our own try at the lock, with another requester id, fails.
            let got = global::set_lock(
                resource.clone(),
                atom("other"),
                &global::all_nodes(),
                Some(0),
            )
            .await
            .expect("set_lock");
            assert!(!got);
        }
    });
    erl.proc().kill();
    w().run(async move {
        eventually_async("the dead node's lock is released", || {
            let resource = resource.clone();
            async move {
                let info = global::info().await.expect("info");
                (
                    !info.locks.iter().any(|(r, _, _)| *r == resource),
                    info.locks,
                )
            }
        })
        .await;
        // And it can be taken now, and released.
        let here = [dist::this_node()];
        assert!(
            global::set_lock(resource.clone(), atom("other"), &here, Some(0))
                .await
                .expect("set_lock")
        );
        global::del_lock(resource.clone(), atom("other"), &here)
            .await
            .expect("del_lock");
        let info = global::info().await.expect("info");
        assert!(!info.locks.iter().any(|(r, _, _)| *r == resource));
    });
}

#[test]
fn a_lock_taken_here_is_released_on_erl_when_its_holder_exits() {
    let _s = serial();
    let erl = helper("ourlock", true, &[]);
    let node = node_atom(&erl);
    let resource = name("our_resource");
    w().run(async move {
        started().await;
        synced_with(node).await;
        let me = beamish::self_pid();
        let res = resource.clone();
        let holder = beamish::spawn(async move {
            let ok = global::set_lock(res, atom("me"), &global::all_nodes(), Some(0))
                .await
                .expect("set_lock");
            me.send(ok);
            beamish::receive::<()>().await;
        });
        assert!(recv::<bool>("the holder's set_lock", |_| true).await);
        let locks = |node| async move {
            ctl(
                node,
                tuple([
                    atom("apply"),
                    atom("ets"),
                    atom("tab2list"),
                    Term::List(vec![atom("global_locks")]),
                ]),
                "global_locks",
            )
            .await
        };
        let held = locks(node).await;
        assert!(
            held.to_string().contains("our_resource"),
            "erl's locks: {held}"
        );
        holder.exit(Reason::Kill);
        eventually_async("erl releases the lock of our dead process", || async move {
            let l = locks(node).await;
            (!l.to_string().contains("our_resource"), l)
        })
        .await;
    });
}

#[test]
fn malformed_messages_from_an_erl_node_do_not_crash_the_server() {
    let _s = serial();
    let erl = helper("garbage", true, &[]);
    let node = node_atom(&erl);
    let n = name("after_garbage");
    w().run(async move {
        let server = started().await;
        synced_with(node).await;
        let me = Term::Atom(dist::this_node());
        let gen_cast = |t: Term| tuple([atom("$gen_cast"), t]);
        let garbage = vec![
            atom("garbage"),
            Term::from(42),
            Term::binary(&[0; 1000]),
            tuple([]),
            tuple([atom("$gen_call"), atom("not_a_from"), atom("get_known")]),
            gen_cast(atom("nonsense")),
            gen_cast(tuple([
                atom("init_connect"),
                atom("bad_vsn"),
                me.clone(),
                atom("x"),
            ])),
            gen_cast(tuple([
                atom("init_connect"),
                tuple([Term::from(8)]),
                me.clone(),
                atom("x"),
            ])),
            gen_cast(tuple([
                atom("exchange"),
                me.clone(),
                atom("not_a_list"),
                Term::Nil,
                Term::from(1),
            ])),
            gen_cast(tuple([
                atom("exchange"),
                Term::Atom(node),
                Term::List(vec![Term::from(1)]),
                Term::Nil,
                Term::from(1),
            ])),
            gen_cast(tuple([
                atom("resolved"),
                Term::Atom(node),
                Term::Nil,
                Term::Nil,
                atom("unused"),
                Term::Nil,
                atom("stale_tag"),
            ])),
            gen_cast(tuple([
                atom("new_nodes"),
                Term::Atom(node),
                Term::List(vec![atom("bad_op")]),
                Term::Nil,
                Term::Nil,
                Term::Nil,
            ])),
            gen_cast(tuple([
                atom("lock_set"),
                Term::from(1),
                atom("true"),
                Term::Nil,
                Term::from(1),
            ])),
            gen_cast(tuple([atom("in_sync"), Term::from(1), atom("true")])),
            tuple([
                atom("lost_connection"),
                Term::from(1),
                Term::from(2),
                Term::from(3),
            ]),
            tuple([atom("cancel_connect"), Term::Atom(node), atom("stale_tag")]),
            tuple([
                atom("init_connect_ack"),
                Term::from(1),
                Term::from(2),
                Term::from(3),
            ]),
            tuple([atom("whereis"), atom("x"), atom("not_a_from")]),
        ];
        for g in garbage {
            let r = ctl(node, tuple([atom("garbage"), me.clone(), g]), "garbage").await;
            assert_eq!(r, atom("ok"));
        }
        // An unknown call gets no answer, as from OTP's server.
        let r = ctl(
            node,
            tuple([atom("unknown_call"), me.clone()]),
            "unknown call",
        )
        .await;
        assert_eq!(r, atom("timeout"));
        // Same server, still working both ways.
        assert_eq!(beamish::whereis(global::SERVER), Some(server));
        assert!(server.is_alive());
        let pid = forwarder(beamish::self_pid());
        global::register_name(n.clone(), pid)
            .await
            .expect("register after garbage");
        assert_eq!(erl_whereis(node, &n).await, Some(pid));
        global::unregister_name(&n).await.expect("unregister");
        pid.exit(Reason::Kill);
    });
}

#[test]
fn a_three_node_cluster_agrees_on_names() {
    let _s = serial();
    let n1 = name("tri_one");
    let e1 = helper("tri", true, &[(n1.clone(), "random_exit_name")]);
    let e2 = helper("tri", true, &[]);
    let (a1, a2) = (node_atom(&e1), node_atom(&e2));
    let n2 = name("tri_two");
    w().run(async move {
        started().await;
        synced_with(a1).await;
        synced_with(a2).await;
        // e2 learnt of e1 through us (new_nodes) and sees its name.
        erl_whereis_until(a2, &n1, "e1's name on e2", |p| {
            p.is_some_and(|p| p.node() == a1)
        })
        .await;
        let pid = forwarder(beamish::self_pid());
        global::register_name(n2.clone(), pid)
            .await
            .expect("register");
        assert_eq!(erl_whereis(a1, &n2).await, Some(pid));
        assert_eq!(erl_whereis(a2, &n2).await, Some(pid));
        eventually_async("no global lock left here", || async {
            let info = global::info().await.expect("info");
            (
                info.locks.iter().all(|(r, _, _)| *r != atom("global")),
                info.locks,
            )
        })
        .await;
        global::unregister_name(&n2).await.expect("unregister");
        pid.exit(Reason::Kill);
    });
    drop(e2);
    drop(e1);
}
