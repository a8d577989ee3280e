//! `beamish::pg` against OTP's `pg` on real `erl` nodes.
//!
//! The test binary is one beamish node ([`common::world`]); it runs the
//! default scope `pg` and the scope `beamish_chat`, started once and shared
//! by the tests. Each test starts its own `erl` nodes, which run
//! `tests/erl/pg_helper.erl` (a `ctl` process that joins, leaves, lists and
//! kills members on request), and uses its own group names. Every wait is
//! bounded by [`WAIT`]; nothing asserts on time.

mod common;

use std::path::Path;

use beamish::dist::{Atom, Term};
use beamish::pg::{self, Event, Scope, Update};
use beamish::{Error, Pid, Reason};
use common::erl::ErlNode;
use common::{WAIT, World, a, atom, call_named, eventually, pid_of, recv, tuple};

fn w() -> &'static World {
    common::world("beamish_pg")
}

/// The named scope both sides run besides `pg`.
const CHAT: &str = "beamish_chat";

/// Starts our scopes once (every test calls it; the first one starts them).
fn scopes() {
    for name in ["pg", CHAT] {
        match pg::start_scope(a(name)) {
            Ok(_) | Err(Error::NameTaken(_)) => {}
            Err(e) => panic!("starting scope {name}: {e}"),
        }
    }
}

/// An `erl` node running `pg_helper` with the scopes `pg` and
/// `beamish_chat`, whose members of `joins` (`(scope, group)`) joined
/// before any connection. `mode`: `ping` (it connects to us) or `wait`.
fn erl_node(prefix: &str, joins: &[(&str, &str)], mode: &str) -> ErlNode {
    let w = w();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erl/pg_helper.erl");
    let joins: Vec<String> = joins.iter().map(|(s, g)| format!("{{{s}, {g}}}")).collect();
    let eval = format!(
        "{{ok, [[Src]]}} = init:get_argument(pg_helper_src), \
         {{ok, M, B}} = compile:file(Src, [binary, return_errors]), \
         {{module, M}} = code:load_binary(M, Src, B), \
         pg_helper:start('{}', [pg, {CHAT}], [{}], {mode}).",
        w.node.as_str(),
        joins.join(", ")
    );
    let mut node = w
        .erl(prefix)
        .arg("-pg_helper_src")
        .arg(src.to_str().expect("a UTF-8 path"))
        .eval(&eval)
        .start();
    if mode == "ping" {
        node.expect_line("ping pong", WAIT);
    }
    node.expect_line("ready", WAIT);
    node
}

fn node_of(n: &ErlNode) -> Atom {
    a(n.node())
}

/// A request to `ctl` on `node`.
async fn ctl(node: Atom, req: Term, what: &str) -> Term {
    call_named("ctl", node, vec![req], what).await
}

/// A new erl process of `node` that joined `group` in `scope`.
async fn erl_join(node: Atom, scope: &str, group: &str) -> Pid {
    let t = ctl(
        node,
        tuple([atom("join"), atom(scope), atom(group)]),
        "erl join",
    )
    .await;
    pid_of(&t, "a member")
}

/// `pg:get_members(Scope, Group)` on `node`, in a stable order.
async fn erl_members(node: Atom, scope: &str, group: &str) -> Vec<Pid> {
    let t = ctl(
        node,
        tuple([atom("members"), atom(scope), atom(group)]),
        "erl members",
    )
    .await;
    let list = t
        .as_list()
        .unwrap_or_else(|| panic!("members: not a list: {t}"));
    sorted(list.iter().map(|p| pid_of(p, "a member")).collect())
}

fn sorted(mut pids: Vec<Pid>) -> Vec<Pid> {
    pids.sort_by_key(|p| p.to_bits());
    pids
}

/// Waits until `scope` on our node lists exactly `expected` in `group`.
async fn our_members_become(scope: Scope, group: &str, expected: Vec<Pid>) {
    let g = atom(group);
    let expected = sorted(expected);
    eventually(&format!("our members of {group}"), || {
        let seen = sorted(scope.get_members(&g));
        (seen == expected, seen)
    })
    .await;
}

/// Waits until `scope` on `node` lists exactly `expected` in `group`.
async fn erl_members_become(node: Atom, scope: &str, group: &str, expected: Vec<Pid>) {
    let expected = sorted(expected);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let seen = erl_members(node, scope, group).await;
        if seen == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "erl's members of {group}: {seen:?}, not {expected:?}, after {WAIT:?}"
        );
        beamish::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until our default scope does (`yes`) or does not monitor a
/// process of `node`.
async fn monitors_of_our_scope_on(node: Atom, yes: bool) {
    let scope = Scope::default().pid().expect("our scope runs");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let info = beamish::process_info(scope)
            .await
            .expect("our scope is alive");
        if info.monitors.iter().any(|p| p.node() == node) == yes {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "our scope's monitors {:?} after {WAIT:?} (a process of {node} expected: {yes})",
            info.monitors
        );
        beamish::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A beamish process that waits until killed.
fn idle() -> Pid {
    beamish::spawn(std::future::pending())
}

#[test]
fn erl_members_that_joined_before_we_connected_are_seen() {
    let erl = erl_node("early", &[("pg", "early_g")], "wait");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        // This request makes the connection; the scopes then discover
        // each other and the member comes with erl's sync.
        let initial = ctl(node, atom("initial"), "initial members").await;
        let first = &initial.as_list().expect("a list")[0];
        let member = pid_of(&first.as_tuple().expect("{S, G, Pid}")[2], "the member");
        our_members_become(Scope::default(), "early_g", vec![member]).await;
        assert!(pg::get_local_members(&atom("early_g")).is_empty());
        assert!(pg::which_groups().contains(&atom("early_g")));
    });
}

#[test]
fn erl_joins_leaves_and_deaths_are_seen() {
    let erl = erl_node("erljoin", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        let m1 = erl_join(node, "pg", "erljoin_g").await;
        let m2 = erl_join(node, "pg", "erljoin_g").await;
        our_members_become(Scope::default(), "erljoin_g", vec![m1, m2]).await;

        let left = ctl(
            node,
            tuple([atom("leave"), atom("pg"), atom("erljoin_g"), Term::Pid(m1)]),
            "leave",
        )
        .await;
        assert_eq!(left, atom("ok"));
        our_members_become(Scope::default(), "erljoin_g", vec![m2]).await;

        // Joined twice: listed twice; one death removes both.
        let again = ctl(
            node,
            tuple([
                atom("join_again"),
                atom("pg"),
                atom("erljoin_g"),
                Term::Pid(m2),
            ]),
            "join again",
        )
        .await;
        assert_eq!(again, atom("ok"));
        our_members_become(Scope::default(), "erljoin_g", vec![m2, m2]).await;
        assert_eq!(
            ctl(node, tuple([atom("kill"), Term::Pid(m2)]), "kill").await,
            atom("ok")
        );
        our_members_become(Scope::default(), "erljoin_g", vec![]).await;
        assert!(!pg::which_groups().contains(&atom("erljoin_g")));
    });
}

#[test]
fn our_joins_leaves_and_deaths_are_seen_by_erl() {
    let before = w().run(async {
        scopes();
        let before = idle();
        pg::join(atom("ours_g"), before).await.expect("join");
        assert_eq!(pg::get_local_members(&atom("ours_g")), vec![before]);
        before
    });
    let erl = erl_node("ours", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        // Joined before the connection: erl learns it from our sync.
        erl_members_become(node, "pg", "ours_g", vec![before]).await;
        let after = idle();
        pg::join_many(atom("ours_g"), &[after, after])
            .await
            .expect("join");
        erl_members_become(node, "pg", "ours_g", vec![before, after, after]).await;

        assert_eq!(pg::leave(atom("ours_g"), after).await, Ok(true));
        erl_members_become(node, "pg", "ours_g", vec![before, after]).await;
        assert_eq!(pg::leave(atom("ours_g"), before).await, Ok(true));
        assert_eq!(
            pg::leave(atom("ours_g"), before).await,
            Ok(false),
            "not_joined"
        );
        erl_members_become(node, "pg", "ours_g", vec![after]).await;

        after.exit(Reason::Kill);
        erl_members_become(node, "pg", "ours_g", vec![]).await;
        assert!(pg::get_members(&atom("ours_g")).is_empty());
        before.exit(Reason::Kill);
    });
}

#[test]
fn members_of_a_killed_erl_node_leave_and_its_scope_is_forgotten() {
    let mut erl = erl_node("killed", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        let m = erl_join(node, "pg", "killed_g").await;
        let c = erl_join(node, CHAT, "killed_g").await;
        our_members_become(Scope::default(), "killed_g", vec![m]).await;
        our_members_become(Scope::new(a(CHAT)), "killed_g", vec![c]).await;
        monitors_of_our_scope_on(node, true).await;
    });
    erl.proc().kill();
    w().run(async move {
        our_members_become(Scope::default(), "killed_g", vec![]).await;
        our_members_become(Scope::new(a(CHAT)), "killed_g", vec![]).await;
        monitors_of_our_scope_on(node, false).await;
    });
}

#[test]
fn named_scopes_are_apart() {
    let erl = erl_node("named", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        let chat = Scope::new(a(CHAT));
        let theirs = erl_join(node, CHAT, "named_g").await;
        our_members_become(chat, "named_g", vec![theirs]).await;
        let ours = idle();
        chat.join(atom("named_g"), ours).await.expect("join");
        erl_members_become(node, CHAT, "named_g", vec![theirs, ours]).await;
        // Neither shows in the default scope, on either side.
        assert!(pg::get_members(&atom("named_g")).is_empty());
        assert!(erl_members(node, "pg", "named_g").await.is_empty());
        ours.exit(Reason::Kill);
        erl_members_become(node, CHAT, "named_g", vec![theirs]).await;
    });
}

#[test]
fn monitors_report_remote_joins_and_leaves() {
    let erl = erl_node("watch", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        let (on_scope, _) = pg::monitor_scope().await.expect("monitor_scope");
        let (on_group, members) = pg::monitor(atom("watch_g")).await.expect("monitor");
        assert!(members.is_empty());
        let g = atom("watch_g");
        let m = erl_join(node, "pg", "watch_g").await;
        for sub in [on_scope, on_group] {
            let u = recv::<Update>("a join update", |u| u.monitor == sub && u.group == g).await;
            assert_eq!((u.event, u.pids), (Event::Join, vec![m]));
        }
        let left = ctl(
            node,
            tuple([atom("leave"), atom("pg"), atom("watch_g"), Term::Pid(m)]),
            "leave",
        )
        .await;
        assert_eq!(left, atom("ok"));
        for sub in [on_scope, on_group] {
            let u = recv::<Update>("a leave update", |u| u.monitor == sub && u.group == g).await;
            assert_eq!((u.event, u.pids), (Event::Leave, vec![m]));
        }
        assert_eq!(pg::demonitor(on_group).await, Ok(true));
        assert_eq!(pg::demonitor(on_scope).await, Ok(true));
        assert_eq!(pg::demonitor(on_scope).await, Ok(false));
        // A state snapshot now has the group, and no update is left over.
        let m2 = erl_join(node, "pg", "watch_g").await;
        our_members_become(Scope::default(), "watch_g", vec![m2]).await;
        let (sub, groups) = pg::monitor_scope().await.expect("monitor_scope");
        assert_eq!(groups.get(&g), Some(&vec![m2]));
        assert_eq!(pg::demonitor(sub).await, Ok(true));
        common::expect_none::<Update>("a stale update", |u| u.group == g).await;
    });
}

#[test]
fn garbage_sent_to_our_scope_is_ignored() {
    let erl = erl_node("garbage", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        let scope = Scope::default().pid().expect("our scope runs");
        // A real peer first, so the scope has state to lose.
        let m = erl_join(node, "pg", "garbage_g").await;
        our_members_become(Scope::default(), "garbage_g", vec![m]).await;

        let impostor = Term::Pid(m); // an erl process that is no scope
        let g = atom("garbage_g");
        let garbage = [
            atom("hello"),
            Term::Int(42),
            tuple([atom("discover"), atom("not_a_pid")]),
            tuple([atom("discover")]),
            tuple([
                atom("join"),
                impostor.clone(),
                atom("garbage_h"),
                impostor.clone(),
            ]),
            tuple([
                atom("join"),
                impostor.clone(),
                g.clone(),
                Term::List(vec![Term::Int(1)]),
            ]),
            tuple([
                atom("leave"),
                impostor.clone(),
                impostor.clone(),
                Term::List(vec![g.clone()]),
            ]),
            tuple([
                atom("leave"),
                impostor.clone(),
                impostor.clone(),
                atom("not_a_list"),
            ]),
            tuple([
                atom("$gen_cast"),
                tuple([atom("sync"), impostor.clone(), atom("bad")]),
            ]),
            tuple([atom("$gen_cast"), atom("nonsense")]),
            tuple([
                atom("$gen_call"),
                tuple([impostor.clone(), Term::from(beamish::Ref::new())]),
                atom("join_local"),
            ]),
            tuple([atom("sync"), impostor.clone(), Term::Nil]),
        ];
        let dest = tuple([atom("pg"), Term::Atom(beamish::dist::this_node())]);
        for t in garbage {
            let r = ctl(node, tuple([atom("send"), dest.clone(), t]), "send garbage").await;
            assert_eq!(r, atom("ok"));
        }
        // The garbage arrived before ctl's replies; this request is
        // answered after it was handled.
        let (sub, groups) = pg::monitor_scope().await.expect("the scope still answers");
        assert_eq!(pg::demonitor(sub).await, Ok(true));
        assert_eq!(
            groups.get(&g),
            Some(&vec![m]),
            "an impostor's leave changed nothing"
        );
        assert!(
            !groups.contains_key(&atom("garbage_h")),
            "an impostor's join changed nothing"
        );
        assert_eq!(
            Scope::default().pid(),
            Some(scope),
            "the scope did not restart"
        );
        // And the protocol still works both ways.
        let m2 = erl_join(node, "pg", "garbage_g").await;
        our_members_become(Scope::default(), "garbage_g", vec![m, m2]).await;
        let ours = idle();
        pg::join(g.clone(), ours).await.expect("join");
        erl_members_become(node, "pg", "garbage_g", vec![m, m2, ours]).await;
        ours.exit(Reason::Kill);
    });
}

#[test]
fn joining_a_remote_pid_is_an_error() {
    let erl = erl_node("remote", &[], "ping");
    let node = node_of(&erl);
    w().run(async move {
        scopes();
        let theirs = erl_join(node, "pg", "remote_g").await;
        let ours = idle();
        assert_eq!(
            pg::join(atom("remote_h"), theirs).await,
            Err(Error::NotLocal(theirs))
        );
        assert_eq!(
            pg::join_many(atom("remote_h"), &[ours, theirs]).await,
            Err(Error::NotLocal(theirs))
        );
        assert_eq!(
            pg::leave(atom("remote_g"), theirs).await,
            Err(Error::NotLocal(theirs))
        );
        assert!(
            pg::get_members(&atom("remote_h")).is_empty(),
            "nothing joined"
        );
        erl_members_become(node, "pg", "remote_h", vec![]).await;
        ours.exit(Reason::Kill);
    });
}
