//! Name clashes: the resolver's comparison of a peer's names with ours
//! (OTP's `exchange_names`), and the resolve methods.

use std::time::Duration;

use crate::dist::{self, Term};
use crate::{Pid, Reason};

use super::call;
use super::proto::{self, NameEntry, Op, a, atom};
use super::{ResolveFn, ToServer};

/// How long a resolve method run on another node (through its `rex`) may
/// take before we count it as failed (OTP waits forever).
const REMOTE_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One of our names, as the resolver sees it.
#[derive(Clone)]
pub(crate) struct Ours {
    pub(crate) pid: Pid,
    pub(crate) method: Term,
    /// The Rust callback of a name registered here with a custom method.
    pub(crate) callback: Option<ResolveFn>,
}

/// What a resolve method picked.
#[derive(Debug, PartialEq)]
pub(crate) enum Pick {
    Pid(Pid),
    None,
    /// The method failed (could not be run); OTP's `{badrpc, _}`.
    Failed,
    /// It returned something that is neither pid nor `none`.
    Other(Term),
}

/// Runs in its own process (OTP's resolver): compares `theirs` (from
/// `node`'s exchange) with a snapshot of `ours` and reports the operations
/// to the server. The smaller node name resolves clashes, so that every
/// method of a clash runs in one partition.
pub(crate) async fn run(
    server: Pid,
    node: dist::Atom,
    tag: i64,
    theirs: Vec<NameEntry>,
    ours: Vec<(Term, Ours)>,
) {
    let me = dist::this_node();
    let mut ops = Vec::new();
    let mut resolved = Vec::new();
    for e in theirs {
        let mine = ours.iter().find(|(n, _)| *n == e.name).map(|(_, o)| o);
        match mine {
            None => ops.push(Op::Insert(e)),
            Some(o) if o.pid == e.pid => {}
            Some(o) if me.as_str() < node.as_str() => {
                match resolve(o, &e.name, e.pid, o.pid).await {
                    Pick::Pid(p) if p == e.pid => ops.push(Op::Insert(e)),
                    Pick::Pid(p) if p == o.pid => resolved.push(Op::Insert(NameEntry {
                        name: e.name.clone(),
                        pid: o.pid,
                        method: o.method.clone(),
                    })),
                    Pick::Failed => {
                        tracing::info!(name = %e.name, "global: resolve method failed for a clash");
                        ops.push(Op::Insert(e));
                    }
                    pick => {
                        if let Pick::Other(t) = &pick {
                            tracing::info!(name = %e.name, returned = %t, "global: resolve method returned neither pid");
                        }
                        ops.push(Op::Delete(e.name.clone()));
                        resolved.push(Op::Delete(e.name.clone()));
                    }
                }
            }
            // The other node resolves this one.
            Some(_) => {}
        }
    }
    server.send(ToServer::ExchangeOps {
        node,
        tag,
        ops,
        resolved,
    });
}

/// Runs the method of our registration `o` for a clash of `name` between
/// `theirs` and `mine` (OTP: `rpc:call(node(Pid2), global, resolve_it,
/// [Method2, Name, Pid, Pid2])`).
async fn resolve(o: &Ours, name: &Term, theirs: Pid, mine: Pid) -> Pick {
    if mine.node() == dist::this_node() {
        if let Some(cb) = &o.callback {
            return match cb(name, theirs, mine) {
                Some(p) => Pick::Pid(p),
                None => Pick::None,
            };
        }
        return match proto::method_name(&o.method) {
            Some((m, f)) if m.as_str() == "global" => builtin(f.as_str(), name, theirs, mine),
            _ => {
                tracing::info!(name = %name, method = %o.method, "global: cannot run this resolve method here");
                Pick::Failed
            }
        };
    }
    // The process is on another node of our partition: run the method
    // there, through `rex` as `rpc:call` does.
    let args = Term::List(vec![
        o.method.clone(),
        name.clone(),
        Term::Pid(theirs),
        Term::Pid(mine),
    ]);
    let request = Term::tuple(vec![
        a("call"),
        a("global"),
        a("resolve_it"),
        args,
        Term::Pid(crate::self_pid()),
    ]);
    match &call::call(mine.node(), atom("rex"), &request, REMOTE_RESOLVE_TIMEOUT).await {
        Some(Term::Pid(p)) => Pick::Pid(*p),
        Some(Term::Atom(x)) if x.as_str() == "none" => Pick::None,
        Some(Term::Tuple(v)) if matches!(v.first(), Some(Term::Atom(x)) if x.as_str() == "badrpc") => {
            Pick::Failed
        }
        Some(other) => Pick::Other(other.clone()),
        None => Pick::Failed,
    }
}

/// The methods of OTP's `global` module, run here.
pub(crate) fn builtin(function: &str, name: &Term, p1: Pid, p2: Pid) -> Pick {
    let (min, max) = minmax(p1, p2);
    match function {
        "random_exit_name" => {
            tracing::info!(name = %name, pid = %max, "global: name conflict, terminating");
            max.exit(Reason::Kill);
            Pick::Pid(min)
        }
        "random_notify_name" => {
            max.send(Term::tuple(vec![a("global_name_conflict"), name.clone()]));
            Pick::Pid(min)
        }
        "notify_all_name" => {
            for (to, other) in [(p1, p2), (p2, p1)] {
                to.send(Term::tuple(vec![
                    a("global_name_conflict"),
                    name.clone(),
                    Term::Pid(other),
                ]));
            }
            Pick::None
        }
        _ => Pick::Failed,
    }
}

/// The pid on the smaller node first (OTP's `minmax`).
fn minmax(p1: Pid, p2: Pid) -> (Pid, Pid) {
    if p1.node().as_str() < p2.node().as_str() {
        (p1, p2)
    } else {
        (p2, p1)
    }
}
