//! The scope process: one per scope and node, registered under the
//! scope's name. It owns the [`State`], answers this node's requests
//! (typed Rust messages), and speaks OTP's protocol with its peers.

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use super::Update;
use super::state::{Effects, Gone, State, Table};
use super::wire::{self, Wire, Words};
use crate::dist::{self, Atom, NodeDown, NodeUp, Term};
use crate::{Down, Message, Pid, Ref};

/// The scopes running on one runtime, with their tables, so that readers
/// (`get_members`, ...) find a table without a message round trip.
#[derive(Default)]
pub(crate) struct Scopes {
    /// Scope name → its process and table.
    map: RwLock<FxHashMap<Atom, (Pid, Arc<Table>)>>,
}

impl Scopes {
    /// The table of `scope`, if it runs.
    pub(crate) fn table(&self, scope: Atom) -> Option<Arc<Table>> {
        let map = self.map.read();
        let (pid, table) = map.get(&scope)?;
        pid.is_alive().then(|| table.clone())
    }

    pub(crate) fn insert(&self, scope: Atom, pid: Pid, table: Arc<Table>) {
        self.map.write().insert(scope, (pid, table));
    }
}

/// Takes the scope out of [`Scopes`] when its process ends, however it
/// ends (the future is dropped).
struct Unlist {
    scopes: Arc<Scopes>,
    scope: Atom,
    pid: Pid,
}

impl Drop for Unlist {
    fn drop(&mut self) {
        let mut map = self.scopes.map.write();
        if map.get(&self.scope).is_some_and(|(p, _)| *p == self.pid) {
            map.remove(&self.scope);
        }
    }
}

/// A request of this node's API.
pub(crate) struct Request {
    /// Who asks (gets the [`Answer`]).
    pub(crate) from: Pid,
    /// Matches the answer to the request.
    pub(crate) tag: Ref,
    /// What is asked.
    pub(crate) op: Op,
}

/// The operations of [`Request`].
pub(crate) enum Op {
    /// Local pids join a group.
    Join { group: Term, pids: Vec<Pid> },
    /// Local pids leave a group.
    Leave { group: Term, pids: Vec<Pid> },
    /// Subscribe to the scope.
    MonitorScope,
    /// Subscribe to a group.
    MonitorGroup(Term),
    /// End a subscription.
    Demonitor(Ref),
}

/// The answer to a [`Request`].
pub(crate) struct Answer {
    /// The request's tag.
    pub(crate) tag: Ref,
    /// What it gave.
    pub(crate) body: Body,
}

/// The bodies of [`Answer`].
pub(crate) enum Body {
    /// Done.
    Done,
    /// A leave or demonitor: whether anything was there.
    Found(bool),
    /// A scope subscription and the groups.
    Scope(Ref, Vec<(Term, Vec<Pid>)>),
    /// A group subscription and the members.
    Group(Ref, Vec<Pid>),
}

/// The real world: monitors and sends.
struct Live;

impl Effects for Live {
    fn monitor(&mut self, pid: Pid) -> Ref {
        crate::monitor(pid)
    }

    fn demonitor(&mut self, monitor: Ref) {
        crate::demonitor_flush(monitor);
    }

    fn notify(&mut self, to: Pid, update: Update) {
        to.send(update);
    }
}

/// The scope process's body.
pub(crate) async fn run(
    scope: Atom,
    words: &'static Words,
    table: Arc<Table>,
    scopes: Arc<Scopes>,
) {
    let me = crate::self_pid();
    let _unlist = Unlist {
        scopes,
        scope,
        pid: me,
    };
    dist::monitor_nodes(true);
    for node in dist::nodes() {
        dist::send_named(scope, node, wire::discover(words, me));
    }
    let mut server = Server {
        scope,
        me,
        words,
        state: State::new(table),
    };
    loop {
        let msg = crate::receive_match(|_| true).await;
        server.handle(msg);
    }
}

struct Server {
    scope: Atom,
    me: Pid,
    words: &'static Words,
    state: State,
}

impl Server {
    fn handle(&mut self, msg: Message) {
        let msg = match msg.downcast::<Term>() {
            Ok(t) => return self.wire(&t),
            Err(m) => m,
        };
        let msg = match msg.downcast::<Request>() {
            Ok(r) => return self.request(r),
            Err(m) => m,
        };
        let msg = match msg.downcast::<Down>() {
            Ok(d) => return self.down(d),
            Err(m) => m,
        };
        let msg = match msg.downcast::<NodeUp>() {
            Ok(up) => {
                if up.node != dist::this_node() {
                    dist::send_named(self.scope, up.node, wire::discover(self.words, self.me));
                }
                return;
            }
            Err(m) => m,
        };
        // A node that goes down: its peer's monitor fires (`noconnection`).
        if !msg.is::<NodeDown>() {
            tracing::debug!(scope = %self.scope, kind = msg.type_name(), "pg: unexpected message ignored");
        }
    }

    fn broadcast(&self, msg: Term) {
        for peer in self.state.peers() {
            peer.send(msg.clone());
        }
    }

    fn wire(&mut self, msg: &Term) {
        let parsed = match wire::parse(msg) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(scope = %self.scope, %msg, why = why.0, "pg: malformed message ignored");
                return;
            }
        };
        let fx = &mut Live;
        let (peer, accepted) = match parsed {
            Wire::Discover { peer } if peer.is_remote() => {
                let new = self.state.discover(fx, peer);
                let groups = self.state.local_groups();
                peer.send(wire::sync(self.words, self.me, &groups));
                if new {
                    peer.send(wire::discover(self.words, self.me));
                }
                (peer, true)
            }
            Wire::Sync { peer, groups } if peer.is_remote() => {
                self.state.sync(fx, peer, groups);
                (peer, true)
            }
            Wire::Join { peer, group, pids } => {
                (peer, self.state.join_remote(fx, peer, &group, &pids))
            }
            Wire::Leave { peer, pids, groups } => {
                (peer, self.state.leave_remote(fx, peer, &pids, &groups))
            }
            Wire::Discover { peer } | Wire::Sync { peer, .. } => (peer, false),
        };
        if !accepted {
            tracing::debug!(scope = %self.scope, %peer, %msg, "pg: message from an unknown or local peer, or about another node's processes, ignored");
        }
    }

    fn request(&mut self, r: Request) {
        let fx = &mut Live;
        let body = match r.op {
            Op::Join { group, pids } => {
                self.state.join_local(fx, &group, &pids);
                self.broadcast(wire::join(self.words, self.me, &group, &pids));
                Body::Done
            }
            Op::Leave { group, pids } => {
                let left = self.state.leave_local(fx, &group, &pids);
                if !left.is_empty() {
                    self.broadcast(wire::leave(self.words, self.me, &left, &[group]));
                }
                Body::Found(!left.is_empty())
            }
            Op::MonitorScope => {
                let (monitor, groups) = self.state.monitor_scope(fx, r.from);
                Body::Scope(monitor, groups)
            }
            Op::MonitorGroup(group) => {
                let (monitor, members) = self.state.monitor_group(fx, r.from, group);
                Body::Group(monitor, members)
            }
            Op::Demonitor(monitor) => Body::Found(self.state.demonitor(fx, monitor)),
        };
        r.from.send(Answer { tag: r.tag, body });
    }

    fn down(&mut self, d: Down) {
        if let Gone::Member(groups) = self.state.down(&mut Live, d.monitor, d.pid) {
            self.broadcast(wire::leave(self.words, self.me, &[d.pid], &groups));
        }
    }
}
