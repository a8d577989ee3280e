//! A cluster of three beamish nodes and no Erlang node: OTP across nodes
//! from Rust alone, with typed requests and replies.
//!
//! Two nodes are children (this very test binary, started again in child
//! mode: `BEAMISH_CLUSTER_CHILD` names the node), the third is the test's
//! own node. Every node runs the same Rust code: `global`, the default `pg`
//! scope and a `Ledger` GenServer whose requests and replies are serde
//! enums, registered locally as `ledger`, globally as `{ledger, Node}` and
//! in the pg group `ledgers`. The test calls the ledgers by `{Name, Node}`,
//! by pid and by global name, has one child call the other, and checks the
//! typed errors (unknown name, timeout, the server's exit, nodedown) and
//! what a SIGKILLed node leaves behind (nothing: its global names and pg
//! members go).
//!
//! The file has its own `main` (`harness = false`): the same binary is the
//! test and its children. Arguments that do not start with `-` filter the
//! scenarios by name.

mod common;

use std::process::Command;
use std::time::Duration;

use beamish::dist::{self, Atom, NodeConfig, Term};
use beamish::otp::{self, Codec, GenServer, Reply, ReplyTo, Server, StartOptions};
use beamish::{Error, Pid, Runtime, global, pg};
use common::erl::{node_name, unique_name};
use common::{COOKIE, Child, WAIT, a, atom, tuple};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "BEAMISH_CLUSTER_CHILD";
const EPMD_ENV: &str = "BEAMISH_CLUSTER_EPMD";

// ------------------------------------------------------------ the service

/// A ledger of account balances, the same on every node.
#[derive(Default)]
struct Ledger {
    balances: std::collections::BTreeMap<String, i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LedgerCall {
    /// Adds to an account; the reply is the new balance.
    Add { account: String, amount: i64 },
    /// An account's balance.
    Balance(String),
    /// The node the ledger runs on.
    Node,
    /// Makes `call` on the ledger of `node` (a call from inside a call).
    Forward { node: String, call: Box<LedgerCall> },
    /// Sleeps, then answers `Node`.
    Sleep(u64),
    /// Panics.
    Crash,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LedgerReply {
    Balance(i64),
    Node(String),
    Forwarded(Box<LedgerReply>),
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LedgerCast {
    Add { account: String, amount: i64 },
}

impl GenServer for Ledger {
    type Call = LedgerCall;
    type Reply = LedgerReply;
    type Cast = LedgerCast;

    async fn handle_call(
        &mut self,
        request: LedgerCall,
        _from: ReplyTo<LedgerReply>,
    ) -> Reply<LedgerReply> {
        Reply::reply(match request {
            LedgerCall::Add { account, amount } => {
                let b = self.balances.entry(account).or_default();
                *b += amount;
                LedgerReply::Balance(*b)
            }
            LedgerCall::Balance(account) => {
                LedgerReply::Balance(self.balances.get(&account).copied().unwrap_or(0))
            }
            LedgerCall::Node => LedgerReply::Node(dist::this_node().as_str().to_owned()),
            LedgerCall::Forward { node, call } => match Atom::new(&node) {
                Ok(node) => match Server::<Ledger>::remote(a("ledger"), node)
                    .call_timeout(*call, WAIT)
                    .await
                {
                    Ok(r) => LedgerReply::Forwarded(Box::new(r)),
                    Err(e) => LedgerReply::Failed(format!("{e:?}")),
                },
                Err(e) => LedgerReply::Failed(format!("{e:?}")),
            },
            LedgerCall::Sleep(ms) => {
                beamish::sleep(Duration::from_millis(ms)).await;
                LedgerReply::Node(dist::this_node().as_str().to_owned())
            }
            LedgerCall::Crash => panic!("the ledger was told to crash"),
        })
    }

    async fn handle_cast(&mut self, request: LedgerCast) -> otp::Flow {
        let LedgerCast::Add { account, amount } = request;
        *self.balances.entry(account).or_default() += amount;
        otp::Flow::Ok
    }

    fn codec() -> Option<Codec<Ledger>> {
        Some(Codec::wire())
    }
}

/// `{ledger, Node}`: the global name of `node`'s ledger.
fn global_name(node: Atom) -> Term {
    tuple([atom("ledger"), Term::Atom(node)])
}

fn group() -> Term {
    atom("ledgers")
}

/// Starts global, pg and the ledger on this node, under all its names (once:
/// the test's own node serves every scenario).
async fn start_services() -> Pid {
    if let Some(ledger) = beamish::whereis("ledger") {
        return ledger;
    }
    global::start().await.expect("global");
    pg::start().expect("pg");
    let ledger = otp::start_with(Ledger::default(), StartOptions::new().name("ledger"))
        .await
        .expect("the ledger")
        .pid();
    global::register_name(global_name(dist::this_node()), ledger)
        .await
        .expect("the global name");
    pg::join(group(), ledger).await.expect("pg join");
    // A Rust function for erpc: `ledger_rpc:echo(X) -> X`, and one that
    // panics.
    beamish::rpc::register("ledger_rpc", "echo", |args: Vec<Term>| async move {
        Ok(Term::List(args))
    })
    .expect("rpc register");
    beamish::rpc::register("ledger_rpc", "fail", |_| async {
        panic!("ledger_rpc failed")
    })
    .expect("rpc register");
    ledger
}

// ------------------------------------------------------------ child mode

/// A child node: its services, a `ready` line, then nothing until killed.
fn child(name: &str, epmd_port: u16) {
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let config = NodeConfig::new(name, COOKIE)
        .epmd_port(epmd_port)
        .embedded_epmd(false);
    let out = rt.block_on(async move {
        dist::start(config).await.expect("dist::start");
        start_services().await;
        println!("ready");
        beamish::receive::<()>().await;
    });
    if let Err(reason) = out {
        eprintln!("child {name} failed: {reason}");
        std::process::exit(1);
    }
}

fn start_child(prefix: &str) -> Child {
    let w = common::world("cluster_test");
    let name = node_name(&unique_name(prefix));
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.env(CHILD_ENV, &name)
        .env(EPMD_ENV, w.epmd_port.to_string());
    Child::start(&name, cmd)
}

// ------------------------------------------------------------ helpers

/// Runs `test` on our node; on failure, panics with the reason and what
/// the children printed.
fn run_with<T: Send + 'static>(
    children: &[&Child],
    test: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    common::world("cluster_test").run_with_children(children, test)
}

/// Polls `f` (every 20 ms, for up to [`WAIT`]) until it gives `Some`.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still not the case after {WAIT:?}"
        );
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

fn ledger_at(node: Atom) -> Server<Ledger> {
    Server::remote(a("ledger"), node)
}

fn add(account: &str, amount: i64) -> LedgerCall {
    LedgerCall::Add {
        account: account.into(),
        amount,
    }
}

fn sorted(mut v: Vec<Pid>) -> Vec<Pid> {
    v.sort();
    v
}

// ------------------------------------------------------------ scenarios

/// Typed calls and casts by `{Name, Node}`, by pid and by global name; a
/// call from one child to the other; pg membership across the three nodes.
fn calls_by_every_kind_of_reference_with_typed_values() {
    let (c1, c2) = (start_child("ledger_one"), start_child("ledger_two"));
    let (n1, n2) = (c1.node, c2.node);
    run_with(&[&c1, &c2], async move {
        let ours = start_services().await;
        let me = dist::this_node();

        // {Name, Node}: the first call connects.
        let l1 = ledger_at(n1);
        assert_eq!(l1.call(add("alice", 5)).await, Ok(LedgerReply::Balance(5)));
        l1.cast(LedgerCast::Add {
            account: "alice".into(),
            amount: 3,
        });
        // A cast and then a call from the same process arrive in order.
        assert_eq!(
            l1.call(LedgerCall::Balance("alice".into())).await,
            Ok(LedgerReply::Balance(8))
        );
        assert_eq!(
            l1.call(LedgerCall::Node).await,
            Ok(LedgerReply::Node(n1.as_str().to_owned()))
        );

        // Global names: all three ledgers, seen from here.
        let p1 = eventually("{ledger, n1} is known here", || {
            global::whereis_name(&global_name(n1))
        })
        .await;
        assert_eq!(p1.node(), n1);
        // By pid.
        assert_eq!(
            Server::<Ledger>::pid(p1)
                .call(LedgerCall::Balance("alice".into()))
                .await,
            Ok(LedgerReply::Balance(8))
        );
        // By global name.
        assert_eq!(
            Server::<Ledger>::global(global_name(n1))
                .call(add("alice", 1))
                .await,
            Ok(LedgerReply::Balance(9))
        );
        // Our own ledger through the same calls.
        assert_eq!(
            Server::<Ledger>::global(global_name(me))
                .call(LedgerCall::Node)
                .await,
            Ok(LedgerReply::Node(me.as_str().to_owned()))
        );

        // One child calls the other (a call made inside a call): the first
        // connects the two children.
        assert_eq!(
            ledger_at(n2)
                .call(LedgerCall::Forward {
                    node: n1.as_str().to_owned(),
                    call: Box::new(add("bob", 2)),
                })
                .await,
            Ok(LedgerReply::Forwarded(Box::new(LedgerReply::Balance(2))))
        );
        let p2 = eventually("{ledger, n2} is known here", || {
            global::whereis_name(&global_name(n2))
        })
        .await;

        // erpc into a Rust function of another beamish node.
        assert_eq!(
            beamish::rpc::call(n1, "ledger_rpc", "echo", vec![Term::Int(7)]).await,
            Ok(Term::List(vec![Term::Int(7)]))
        );
        match beamish::rpc::call(n2, "ledger_rpc", "fail", vec![]).await {
            Err(beamish::rpc::RpcError::Exception { reason, .. }) => assert_eq!(
                reason,
                tuple([
                    atom("panic"),
                    Term::Binary(b"ledger_rpc failed".to_vec().into())
                ])
            ),
            other => panic!("a panicking rpc function gave {other:?}"),
        }
        assert!(matches!(
            beamish::rpc::call(n1, "ledger_rpc", "nothing", vec![]).await,
            Err(beamish::rpc::RpcError::Exception { .. })
        ));

        // pg: the three ledgers are the group's members, everywhere.
        let all = sorted(vec![ours, p1, p2]);
        eventually("the three ledgers in pg", || {
            (sorted(pg::get_members(&group())) == all).then_some(())
        })
        .await;
        assert_eq!(pg::get_local_members(&group()), vec![ours]);
        assert!(pg::which_groups().contains(&group()));
    });
    drop((c1, c2));
}

/// The typed errors of a remote call: unknown name, timeout (and the late
/// reply never shows up), the server's exit mid-call, the server stopped.
fn remote_calls_fail_with_the_otp_errors() {
    let c = start_child("ledger_errors");
    let n = c.node;
    run_with(&[&c], async move {
        start_services().await;
        // An erpc call is the first thing that connects to the node.
        assert_eq!(
            beamish::rpc::call(n, "ledger_rpc", "echo", vec![Term::Int(1)]).await,
            Ok(Term::List(vec![Term::Int(1)]))
        );
        let nobody = Server::<Ledger>::remote(a("nobody"), n);
        assert!(
            matches!(
                nobody.call(LedgerCall::Node).await,
                Err(Error::UnknownName(_) | Error::NoProc(_))
            ),
            "a call to a name nobody holds"
        );
        let l = ledger_at(n);
        assert_eq!(
            l.call_timeout(LedgerCall::Sleep(300), Duration::from_millis(20))
                .await,
            Err(Error::Timeout)
        );
        // The next call gets its own reply, not the late one.
        assert_eq!(
            l.call(LedgerCall::Balance("x".into())).await,
            Ok(LedgerReply::Balance(0))
        );
        let stray = beamish::receive::<Term>()
            .timeout(Duration::from_millis(400))
            .await;
        assert_eq!(stray, None, "a late reply reached the caller");

        // The server panics during the call: the caller gets its exit.
        let pid = eventually("{ledger, n} is known here", || {
            global::whereis_name(&global_name(n))
        })
        .await;
        // Monitors by name on the other node: the ledger's, and nobody's.
        let on_ledger = dist::monitor_name(a("ledger"), n);
        let on_nobody = dist::monitor_name(a("nobody"), n);
        let d = beamish::receive_if(move |d: &dist::NameDown| d.monitor == on_nobody)
            .timeout(WAIT)
            .await
            .expect("noproc for a name nobody holds");
        assert_eq!(
            (d.name, d.node, d.reason),
            (a("nobody"), n, beamish::Reason::NoProc)
        );
        match Server::<Ledger>::pid(pid).call(LedgerCall::Crash).await {
            Err(Error::Exited(reason)) => {
                assert!(
                    reason.to_string().contains("told to crash"),
                    "the exit reason names the panic: {reason}"
                );
            }
            other => panic!("a crashing server gave {other:?}"),
        }
        let d = beamish::receive_if(move |d: &dist::NameDown| d.monitor == on_ledger)
            .timeout(WAIT)
            .await
            .expect("the NameDown of the crashed ledger");
        assert_eq!((d.name, d.node), (a("ledger"), n));
        assert!(
            d.reason.to_string().contains("told to crash"),
            "{}",
            d.reason
        );
        // Its names went with it.
        eventually("the crashed ledger's global name is free", || {
            global::whereis_name(&global_name(n))
                .is_none()
                .then_some(())
        })
        .await;
        eventually("the crashed ledger left pg", || {
            (!pg::get_members(&group()).contains(&pid)).then_some(())
        })
        .await;
        assert!(matches!(
            Server::<Ledger>::pid(pid).call(LedgerCall::Node).await,
            Err(Error::NoProc(_))
        ));
        assert!(matches!(
            Server::<Ledger>::global(global_name(n))
                .call(LedgerCall::Node)
                .await,
            Err(Error::UnknownName(_))
        ));
    });
    drop(c);
}

/// A node killed with SIGKILL: calls to it fail with `nodedown`, its global
/// names and pg members are gone on the other two nodes, and a call from
/// the surviving child to it fails the same way there.
fn a_killed_node_leaves_nothing_behind() {
    let (mut victim, survivor) = (start_child("ledger_victim"), start_child("ledger_survivor"));
    let (nv, ns) = (victim.node, survivor.node);
    run_with(&[&victim, &survivor], async move {
        let _ = start_services().await;
        // Connect all three and wait until everyone's names are known here.
        for node in [nv, ns] {
            assert_eq!(
                ledger_at(node).call(LedgerCall::Node).await,
                Ok(LedgerReply::Node(node.as_str().to_owned()))
            );
        }
        assert_eq!(
            ledger_at(ns)
                .call(LedgerCall::Forward {
                    node: nv.as_str().to_owned(),
                    call: Box::new(LedgerCall::Node),
                })
                .await,
            Ok(LedgerReply::Forwarded(Box::new(LedgerReply::Node(
                nv.as_str().to_owned()
            ))))
        );
        let pv = eventually("{ledger, victim}", || {
            global::whereis_name(&global_name(nv))
        })
        .await;
        eventually("the victim's ledger in pg", || {
            pg::get_members(&group()).contains(&pv).then_some(())
        })
        .await;
    });
    victim.proc.kill();
    run_with(&[&survivor], async move {
        eventually("the victim's global name is gone", || {
            global::whereis_name(&global_name(nv))
                .is_none()
                .then_some(())
        })
        .await;
        eventually("the victim left pg", || {
            (!pg::get_members(&group()).iter().any(|p| p.node() == nv)).then_some(())
        })
        .await;
        assert_eq!(
            ledger_at(nv).call(LedgerCall::Node).await,
            Err(Error::NodeDown(nv))
        );
        match ledger_at(ns)
            .call(LedgerCall::Forward {
                node: nv.as_str().to_owned(),
                call: Box::new(LedgerCall::Node),
            })
            .await
        {
            Ok(LedgerReply::Failed(e)) => assert!(e.contains("NodeDown"), "{e}"),
            other => panic!("the survivor's call to the dead node gave {other:?}"),
        }
        assert!(!dist::nodes().contains(&nv));
        // The survivor is still one of us.
        assert_eq!(
            ledger_at(ns).call(add("carol", 4)).await,
            Ok(LedgerReply::Balance(4))
        );
    });
    drop((victim, survivor));
}

// ------------------------------------------------------------ main

fn main() {
    if let Some((name, port)) = common::child_mode(CHILD_ENV, EPMD_ENV) {
        child(&name, port);
        return;
    }
    let scenarios: [(&str, fn()); 4] = [
        (
            "erpc_calls_in_a_row_all_answer",
            erpc_calls_in_a_row_all_answer,
        ),
        (
            "calls_by_every_kind_of_reference_with_typed_values",
            calls_by_every_kind_of_reference_with_typed_values,
        ),
        (
            "remote_calls_fail_with_the_otp_errors",
            remote_calls_fail_with_the_otp_errors,
        ),
        (
            "a_killed_node_leaves_nothing_behind",
            a_killed_node_leaves_nothing_behind,
        ),
    ];
    common::run_scenarios(&scenarios);
}

/// erpc calls in a row into a Rust function of `beamish node` (one
/// scheduler thread there, so that the result often comes right behind the
/// spawn reply): every one answers. (The `Down` that carries the result
/// once came in the same mailbox batch as the spawn reply, before the
/// caller knew the monitor, and was dropped.)
fn erpc_calls_in_a_row_all_answer() {
    let w = common::world("cluster_test");
    let name = node_name(&unique_name("erpc_row"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamish"));
    cmd.args(["node", "--name", &name, "--cookie", COOKIE])
        .args(["--bench-services", "--threads", "1"])
        .args(["--epmd-port", &w.epmd_port.to_string()]);
    let c = Child::start(&name, cmd);
    let n = c.node;
    run_with(&[&c], async move {
        for x in 0..300 {
            let r =
                beamish::rpc::call_timeout(n, "beamish_bench", "echo", vec![Term::Int(x)], WAIT)
                    .await;
            assert_eq!(r, Ok(Term::Int(x)), "call {x}");
        }
    });
    drop(c);
}
