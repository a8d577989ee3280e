//! `global_name_server`: the tables' owner and the per-node sync sessions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::dist::{self, Atom, NodeDown, NodeUp, Term};
use crate::{Down, Message, Pid, Ref};

use super::call::{self, From};
use super::locker::{Him, LockerMsg};
use super::proto::{
    self, Cast, Incoming, Info, LockId, NameEntry, Op, POP_VSN, Request, VERIFY_CONNECT_VSN, VSN,
    a, atom,
};
use super::registrar::RegistrarJob;
use super::resolve::{self, Ours};
use super::tables::{Lock, Registered, Tables};
use super::{ApiReply, ApiValue, GlobalInfo, ResolveFn, Rng, SERVER, ToServer};

/// How long a sync helper watches a node it was told about, for a
/// nodedown that would otherwise be missed (OTP's `sync_other`, which
/// retries the connection; ours connects once with the node's own
/// connect timeout).
const SYNC_WATCH: Duration = Duration::from_secs(7);

/// How long the record of a `lost_connection` message is kept, to drop its
/// repeats (OTP's `lost_conn_info_cleanup_time`).
const LOST_CONNECTION_KEEP: Duration = Duration::from_secs(600);

/// What `exchange` and `lock_is_set` wait for each other with.
enum WaitLock {
    /// Our locker has the lock; the peer's names have not come yet.
    LockIsSet,
    /// The peer's names came before our lock.
    Exchange(Vec<NameEntry>),
}

/// What `exchange_ops` (our resolver) and `resolved` (the peer) wait for
/// each other with.
enum SaveOps {
    /// Our resolver's operations.
    Ops(Vec<Op>),
    /// The peer's `resolved` came first.
    Resolved {
        known: Vec<(Atom, u32)>,
        ops: Vec<Op>,
    },
}

/// The state of one sync session with a node (OTP keeps it in the
/// process dictionary).
#[derive(Default)]
struct Session {
    my_tag: Option<i64>,
    his_tag: Option<Term>,
    prot_vsn: Option<u32>,
    wait_lock: Option<WaitLock>,
    save_ops: Option<SaveOps>,
    /// An `init_connect` that came before our nodeup.
    pre_connect: Option<(u32, Term, Pid)>,
    lock_id: Option<Term>,
}

/// A resolver slot: the session tag, and the resolver once it runs.
struct Resolver {
    tag: i64,
    pid: Option<Pid>,
}

/// What a monitor of ours watches.
enum Watch {
    Name(Term),
    Lock(Term),
}

pub(crate) struct Server {
    me: Pid,
    node: Atom,
    tables: Arc<Mutex<Tables>>,
    locker: Pid,
    registrar: Pid,
    /// Known nodes and their protocol versions (0: not yet known).
    known: BTreeMap<Atom, u32>,
    /// Nodes we are syncing with, and their versions.
    pending: HashMap<Atom, u32>,
    /// Nodes we forgot on a `remove_connection`.
    removing: HashSet<Atom>,
    synced: Vec<Atom>,
    sessions: HashMap<Atom, Session>,
    resolvers: HashMap<Atom, Resolver>,
    monitors: HashMap<Ref, Watch>,
    callbacks: HashMap<Term, (Pid, ResolveFn)>,
    /// Monitors of the name servers of nodes we sync with: a node that runs
    /// none (a beamish node that never started global) is no sync partner.
    probes: HashMap<Ref, Atom>,
    /// `{NodeA, NodeB}` of `lost_connection` -> (creation, op id, until).
    lost: HashMap<(Atom, Atom), (Term, Term, std::time::Instant)>,
    next_tag: i64,
    next_op: i64,
    /// Tells this incarnation's `lost_connection` messages from an older one's.
    xcreation: i64,
}

/// The server's main loop.
pub(crate) async fn run(
    tables: Arc<Mutex<Tables>>,
    locker: Pid,
    registrar: Pid,
    started: Option<(Pid, Ref)>,
) {
    let mut rng = Rng::new();
    let mut s = Server {
        me: crate::self_pid(),
        node: dist::this_node(),
        tables,
        locker,
        registrar,
        known: BTreeMap::new(),
        pending: HashMap::new(),
        removing: HashSet::new(),
        synced: Vec::new(),
        sessions: HashMap::new(),
        resolvers: HashMap::new(),
        monitors: HashMap::new(),
        callbacks: HashMap::new(),
        probes: HashMap::new(),
        lost: HashMap::new(),
        next_tag: 0,
        next_op: 0,
        xcreation: i64::try_from(rng.next() >> 2).unwrap_or(1),
    };
    dist::monitor_nodes(true);
    if let Some((to, id)) = started {
        to.send(ApiReply {
            id,
            value: ApiValue::Started(s.me),
        });
    }
    // Nodes connected before we started: sync with them now (OTP's global
    // starts before any connection, so it never has to).
    for node in dist::nodes() {
        s.nodeup(node);
    }
    loop {
        let msg = crate::receive_match(|_| true).await;
        s.handle(msg);
    }
}

impl Server {
    fn handle(&mut self, msg: Message) {
        let msg = match msg.downcast::<Term>() {
            Ok(t) => return self.handle_term(&t),
            Err(m) => m,
        };
        let msg = match msg.downcast::<ToServer>() {
            Ok(m) => return self.handle_internal(m),
            Err(m) => m,
        };
        let msg = match msg.downcast::<Down>() {
            Ok(d) => return self.down(d.monitor),
            Err(m) => m,
        };
        let msg = match msg.downcast::<NodeUp>() {
            Ok(u) => return self.nodeup(u.node),
            Err(m) => m,
        };
        let msg = match msg.downcast::<dist::NameDown>() {
            Ok(d) => return self.probe_down(d),
            Err(m) => m,
        };
        match msg.downcast::<NodeDown>() {
            Ok(d) => self.nodedown(d.node, Nodedown::Disconnected),
            Err(m) => tracing::debug!(kind = m.type_name(), "global: message ignored"),
        }
    }

    fn handle_term(&mut self, t: &Term) {
        match proto::parse(t) {
            Incoming::Call { from, request } => self.handle_call(from, request),
            Incoming::Cast(c) => self.handle_cast(c),
            Incoming::Info(i) => self.handle_info(i),
        }
    }

    // ------------------------------------------------------------ calls

    fn handle_call(&mut self, from: From, request: Request) {
        let answer = match request {
            Request::SetLock(id) => Term::from(self.set_lock(&id, from.pid)),
            Request::DelLock(id) => {
                self.del_lock(&id, from.pid);
                Term::Atom(Atom::TRUE)
            }
            Request::Register(e) => {
                self.ins_name(e, Some(from.pid), None);
                Term::Atom(Atom::YES)
            }
            Request::Unregister(name) => {
                self.delete_name(&name);
                Term::Atom(Atom::OK)
            }
            Request::GetKnown => proto::known_list(0, &self.known_list()),
            Request::GetSynced => Term::List(self.synced.iter().map(|n| Term::Atom(*n)).collect()),
            Request::GetProtocolVersion => Term::from(VSN),
            Request::Unknown(req) => {
                // OTP logs it and leaves the caller waiting.
                tracing::debug!(request = %req, from = %from.pid, "global: unknown call ignored");
                return;
            }
        };
        call::reply(&from, answer);
    }

    fn set_lock(&mut self, id: &LockId, pid: Pid) -> bool {
        if self.stale_registrar(id, pid) {
            tracing::debug!(%pid, "global: name lock refused to a node we are not synced with");
            return false;
        }
        let mut t = self.tables.lock();
        if !t.can_set_lock(id) {
            return false;
        }
        let lock = t.locks.entry(id.resource.clone()).or_insert_with(|| Lock {
            requester: id.requester.clone(),
            holders: Vec::new(),
        });
        if !lock.holders.iter().any(|(p, _)| *p == pid) {
            let mon = crate::monitor(pid);
            lock.holders.push((pid, mon));
            self.monitors.insert(mon, Watch::Lock(id.resource.clone()));
        }
        true
    }

    /// A registrar's lock (`{global, Pid}`) asked from a node that is not
    /// among our known ones: that node's known list is stale (we dropped it,
    /// or it dropped us and reconnected, and no sync has run since). OTP
    /// grants it, and the registration then replaces a name we hold for a
    /// process of our partition, which the sync that follows no longer
    /// sees as a clash: the partitions' name tables diverge. Refusing makes
    /// the registrar retry once its own node has caught up; the sync
    /// lockers' `{global, [Locker, ...]}` locks, taken before the nodes
    /// know each other, are not affected.
    fn stale_registrar(&self, id: &LockId, pid: Pid) -> bool {
        let node = pid.node();
        id.resource == a("global")
            && matches!(id.requester, Term::Pid(_))
            && node != self.node
            && !self.known.contains_key(&node)
    }

    fn del_lock(&mut self, id: &LockId, pid: Pid) {
        let mut t = self.tables.lock();
        let Some(lock) = t.locks.get_mut(&id.resource) else {
            return;
        };
        if lock.requester != id.requester {
            return;
        }
        if let Some(i) = lock.holders.iter().position(|(p, _)| *p == pid) {
            let (_, mon) = lock.holders.remove(i);
            crate::demonitor_flush(mon);
            self.monitors.remove(&mon);
        }
        if lock.holders.is_empty() {
            t.locks.remove(&id.resource);
            if id.is_global() {
                t.global_lock_down = false;
            }
        }
    }

    /// A monitored process ended: its locks and names go.
    fn down(&mut self, mon: Ref) {
        match self.monitors.remove(&mon) {
            Some(Watch::Lock(resource)) => {
                let mut t = self.tables.lock();
                if let Some(lock) = t.locks.get_mut(&resource) {
                    lock.holders.retain(|(_, m)| *m != mon);
                    if lock.holders.is_empty() {
                        t.locks.remove(&resource);
                        if resource == a("global") {
                            t.global_lock_down = true;
                        }
                    }
                }
            }
            Some(Watch::Name(name)) => {
                let is_it = self
                    .tables
                    .lock()
                    .names
                    .get(&name)
                    .is_some_and(|r| r.monitor == mon);
                if is_it {
                    self.delete_name(&name);
                }
            }
            None => {}
        }
    }

    /// Registers `e` (OTP's `ins_name`). `from_pid` is the registrar that
    /// asked (a `register` call) and `lock` the requester id of the sync
    /// session's lock (ops of `resolved`/`new_nodes`): the name stays only
    /// while that lock is still held.
    fn ins_name(&mut self, e: NameEntry, from_pid: Option<Pid>, lock: Option<&Term>) {
        self.forget_name(&e.name, false);
        let mon = crate::monitor(e.pid);
        self.monitors.insert(mon, Watch::Name(e.name.clone()));
        let still = {
            let mut t = self.tables.lock();
            t.names.insert(
                e.name.clone(),
                Registered {
                    pid: e.pid,
                    method: e.method,
                    monitor: mon,
                },
            );
            match t.locks.get(&a("global")) {
                Some(l) => match (from_pid, lock) {
                    (Some(p), _) => l.holders.iter().any(|(h, _)| *h == p),
                    (None, Some(id)) => l.requester == *id,
                    (None, None) => false,
                },
                None => !t.global_lock_down,
            }
        };
        if let Some((p, _)) = self.callbacks.get(&e.name)
            && *p != e.pid
        {
            self.callbacks.remove(&e.name);
        }
        tracing::debug!(name = %e.name, pid = %e.pid, kept = still, "global: name inserted");
        if !still {
            // The lock holder went away (its node went down, maybe came back)
            // before this arrived: the name must not spread from here.
            self.delete_name(&e.name);
        }
    }

    fn delete_name(&mut self, name: &Term) {
        tracing::debug!(name = %name, "global: name deleted");
        self.forget_name(name, true);
    }

    /// Drops our monitor of `name`'s process; with `remove`, the name too.
    fn forget_name(&mut self, name: &Term, remove: bool) {
        let mut t = self.tables.lock();
        let Some(r) = t.names.get(name) else { return };
        let mon = r.monitor;
        crate::demonitor_flush(mon);
        self.monitors.remove(&mon);
        if remove {
            t.names.remove(name);
            self.callbacks.remove(name);
        }
    }

    // ------------------------------------------------------------ casts

    fn handle_cast(&mut self, c: Cast) {
        match c {
            Cast::InitConnect {
                vsn,
                his_tag,
                node,
                his_locker,
            } => self.init_connect(vsn.min(VSN), node, his_tag, vsn, his_locker),
            Cast::LockSet { pid, set, tag } => {
                let node = pid.node();
                let ok = match &tag {
                    Some(t) => self.my_tag(node).is_some_and(|m| *t == Term::Int(m)),
                    None => true,
                };
                if ok {
                    self.locker.send(LockerMsg::LockSet { pid, set, tag });
                }
            }
            Cast::Exchange { node, names, tag } => {
                if self.tag_ok(node, &tag) {
                    self.exchange(node, names);
                } else {
                    self.cancel_locker(node, tag_int(&tag), Vec::new());
                }
            }
            Cast::Resolved {
                node,
                ops,
                known,
                tag,
            } => {
                if !self.tag_ok(node, &tag) {
                    self.cancel_locker(node, tag_int(&tag), Vec::new());
                    return;
                }
                let session = self.sessions.entry(node).or_default();
                match session.save_ops.take() {
                    Some(SaveOps::Ops(mine)) => self.resolved(node, mine, ops, known),
                    other => {
                        if other.is_some() {
                            tracing::debug!(%node, "global: a second resolved; the first is replaced");
                        }
                        session.save_ops = Some(SaveOps::Resolved { known, ops });
                    }
                }
            }
            Cast::NewNodes {
                node,
                ops,
                nodes,
                lock,
            } => {
                let added = self.add_to_known(&nodes);
                tracing::debug!(%node, ops = ops.len(), ?added, "global: new nodes");
                self.sync_others(&added);
                self.do_ops(ops, lock.as_ref());
                self.locker.send(LockerMsg::AddToKnown(added));
                let _ = node;
            }
            Cast::InSync { node } => {
                if !self.synced.contains(&node) {
                    self.synced.push(node);
                }
                self.pending.remove(&node);
                let tag = self.my_tag(node);
                self.cancel_locker(node, tag, Vec::new());
                self.sessions.remove(&node);
            }
            Cast::Obsolete => {}
            Cast::Unknown(t) => tracing::debug!(cast = %t, "global: unknown cast ignored"),
        }
    }

    fn my_tag(&self, node: Atom) -> Option<i64> {
        self.sessions.get(&node).and_then(|s| s.my_tag)
    }

    fn tag_ok(&self, node: Atom, tag: &Term) -> bool {
        self.my_tag(node).is_some_and(|m| *tag == Term::Int(m))
    }

    fn init_connect(&mut self, vsn: u32, node: Atom, his_tag: Term, his_vsn: u32, his_locker: Pid) {
        if self.pending.contains_key(&node) {
            // A second attempt while one is going on: cancel both, start over.
            self.send_cancel_connect(node, &his_tag);
            let old = self.my_tag(node);
            self.restart_connect(node, old);
        }
        let session = self.sessions.entry(node).or_default();
        session.prot_vsn = Some(vsn);
        session.his_tag = Some(his_tag.clone());
        match self.resolvers.get(&node) {
            Some(r) => {
                let my_tag = r.tag;
                self.locker.send(LockerMsg::HisTheLocker(Him {
                    node,
                    locker: his_locker,
                    vsn,
                    my_tag,
                    his_tag: his_tag.clone(),
                }));
                if his_vsn >= VERIFY_CONNECT_VSN {
                    self.send_to(
                        node,
                        Term::tuple(vec![
                            a("init_connect_ack"),
                            Term::Atom(self.node),
                            his_tag,
                            Term::Int(my_tag),
                        ]),
                    );
                }
                self.pending.insert(node, his_vsn);
            }
            None => {
                session.pre_connect = Some((his_vsn, his_tag, his_locker));
                // A node already connected whose name server started late
                // (we found none at its nodeup): sync with it now.
                if !self.resolvers.contains_key(&node) && dist::nodes().contains(&node) {
                    self.nodeup(node);
                }
            }
        }
    }

    fn restart_connect(&mut self, node: Atom, my_tag: Option<i64>) {
        self.cancel_locker(node, my_tag, Vec::new());
        self.sessions.remove(&node);
        self.pending.remove(&node);
        if my_tag.is_some() {
            self.nodeup(node);
        }
    }

    fn exchange(&mut self, node: Atom, names: Vec<NameEntry>) {
        let session = self.sessions.entry(node).or_default();
        match session.wait_lock.take() {
            Some(WaitLock::LockIsSet) => self.start_resolver(node, names),
            _ => session.wait_lock = Some(WaitLock::Exchange(names)),
        }
    }

    fn start_resolver(&mut self, node: Atom, names: Vec<NameEntry>) {
        let Some(r) = self.resolvers.get_mut(&node) else {
            return;
        };
        let ours: Vec<(Term, Ours)> = self
            .tables
            .lock()
            .names
            .iter()
            .map(|(n, reg)| {
                let callback = self
                    .callbacks
                    .get(n)
                    .filter(|(p, _)| *p == reg.pid)
                    .map(|(_, cb)| cb.clone());
                (
                    n.clone(),
                    Ours {
                        pid: reg.pid,
                        method: reg.method.clone(),
                        callback,
                    },
                )
            })
            .collect();
        let (server, tag) = (self.me, r.tag);
        r.pid = Some(crate::spawn(resolve::run(server, node, tag, names, ours)));
    }

    /// Both sides' operations are here: apply them and tell the others
    /// (OTP's `resolved/5`).
    fn resolved(&mut self, node: Atom, mine: Vec<Op>, his: Vec<Op>, his_known: Vec<(Atom, u32)>) {
        tracing::debug!(%node, mine = mine.len(), his = his.len(), "global: resolved");
        let mut ops = mine;
        ops.extend(his);
        let (prot_vsn, lock_id) = self
            .sessions
            .get(&node)
            .map(|s| (s.prot_vsn.unwrap_or(0), s.lock_id.clone()))
            .unwrap_or((0, None));
        let mut new_nodes = vec![(node, 0)];
        new_nodes.extend(his_known.iter().copied());
        let new_nodes: Vec<(Atom, u32)> = new_nodes
            .into_iter()
            .map(|(n, v)| {
                if v == 0 {
                    (n, self.node_vsn(n))
                } else {
                    (n, v)
                }
            })
            .collect();
        let his_nodes: Vec<Atom> = his_known.iter().map(|(n, _)| *n).collect();
        self.sync_others(&his_nodes);
        let lock_term = lock_id.clone().unwrap_or(Term::Atom(Atom::UNDEFINED));
        let requester = lock_id.as_ref().and_then(|l| match l.as_tuple() {
            Some([_, id]) => Some(id.clone()),
            _ => None,
        });
        self.do_ops(ops.clone(), requester.as_ref());
        for n in &his_nodes {
            let tag = self.my_tag(*n);
            self.pending.remove(n);
            self.cancel_locker(*n, tag, Vec::new());
            self.sessions.remove(n);
        }
        let extra = Term::List(vec![
            Term::tuple(vec![a("vsn"), Term::from(prot_vsn)]),
            Term::tuple(vec![a("lock"), lock_term]),
        ]);
        let ops_term = Term::List(ops.iter().map(Op::to_term).collect());
        let then: Vec<(Atom, Term)> = self
            .known
            .iter()
            .map(|(&n, &v)| {
                let nodes = if v >= POP_VSN {
                    proto::known_list(POP_VSN, &new_nodes)
                } else {
                    proto::known_list(0, &new_nodes)
                };
                let msg = Term::tuple(vec![
                    a("new_nodes"),
                    Term::Atom(self.node),
                    ops_term.clone(),
                    Term::Nil,
                    nodes,
                    extra.clone(),
                ]);
                (n, call::cast_message(msg))
            })
            .collect();
        let tag = self.my_tag(node);
        self.pending.remove(&node);
        self.cancel_locker(node, tag, then);
        self.sessions.remove(&node);
        let added = self.add_to_known(&new_nodes);
        self.locker.send(LockerMsg::AddToKnown(added));
        if !self.synced.contains(&node) {
            self.synced.push(node);
        }
    }

    fn do_ops(&mut self, ops: Vec<Op>, lock: Option<&Term>) {
        let mut deletes = Vec::new();
        for op in ops {
            match op {
                Op::Insert(e) => self.ins_name(e, None, lock),
                Op::Delete(n) => deletes.push(n),
            }
        }
        for n in deletes {
            self.delete_name(&n);
        }
    }

    /// Adds nodes to the known ones; returns those that are new.
    fn add_to_known(&mut self, nodes: &[(Atom, u32)]) -> Vec<Atom> {
        let mut added = Vec::new();
        for &(n, v) in nodes {
            if n == self.node || self.known.contains_key(&n) {
                continue;
            }
            self.known.insert(n, v);
            added.push(n);
        }
        added
    }

    /// Tells each of `nodes` (which we have just come to know through a
    /// peer) that we are in sync with it, and watches it for a while: a
    /// node that cannot be reached gets an artificial nodedown, so that it
    /// does not stay known.
    fn sync_others(&self, nodes: &[Atom]) {
        for &node in nodes {
            if node == self.node {
                continue;
            }
            let (server, me) = (self.me, self.node);
            crate::spawn(async move {
                dist::monitor_node(node, true);
                let msg = call::cast_message(Term::tuple(vec![
                    a("in_sync"),
                    Term::Atom(me),
                    Term::Atom(Atom::TRUE),
                ]));
                dist::send_named(atom(SERVER), node, msg);
                let down = crate::receive_if(|d: &NodeDown| d.node == node)
                    .timeout(SYNC_WATCH)
                    .await;
                dist::monitor_node(node, false);
                if down.is_some() {
                    server.send(ToServer::ExtraNodeDown(node));
                }
            });
        }
    }

    // ------------------------------------------------------------ infos

    fn handle_info(&mut self, i: Info) {
        match i {
            Info::InitConnectAck {
                node,
                his_my,
                his_his,
            } => {
                let my = self.my_tag(node);
                let his = self.sessions.get(&node).and_then(|s| s.his_tag.clone());
                let ok =
                    my.is_some_and(|m| his_my == Term::Int(m)) && his.as_ref() == Some(&his_his);
                if !ok {
                    self.send_cancel_connect(node, &his_his);
                    self.restart_connect(node, my);
                }
            }
            Info::CancelConnect { node, tag } => {
                if self.tag_ok(node, &tag) {
                    let my = self.my_tag(node);
                    self.cancel_locker(node, my, Vec::new());
                    self.sessions.remove(&node);
                    self.pending.remove(&node);
                    self.restart_connect(node, my);
                }
            }
            Info::LostConnection { a, xcre, op_id, b } => self.lost_connection(a, xcre, op_id, b),
            Info::RemoveConnection(node) => {
                if self.known.contains_key(&node) || self.pending.contains_key(&node) {
                    // As OTP: forget the node and take the connection down, as
                    // the peer that asked does with us; a later connection
                    // syncs afresh.
                    tracing::warn!(%node, "global: removing node to prevent overlapping partitions");
                    self.nodedown(node, Nodedown::RemoveConnection);
                    dist::disconnect_node(node);
                }
            }
            Info::Whereis { name, from } => {
                let pid = self.whereis(&name);
                call::reply(&from, pid.map_or(Term::Atom(Atom::UNDEFINED), Term::Pid));
            }
            Info::Unknown(t) => tracing::debug!(message = %t, "global: unknown message ignored"),
        }
    }

    fn lost_connection(&mut self, a_node: Atom, xcre: Term, op_id: Term, b: Atom) {
        let now = std::time::Instant::now();
        self.lost.retain(|_, (_, _, until)| *until > now);
        let key = (a_node, b);
        if let Some((x, op, _)) = self.lost.get(&key)
            && *x == xcre
            && op_id <= *op
        {
            return;
        }
        let msg = Term::tuple(vec![
            a("lost_connection"),
            Term::Atom(a_node),
            xcre.clone(),
            op_id.clone(),
            Term::Atom(b),
        ]);
        self.multicast(&msg, a_node);
        self.lost
            .insert(key, (xcre, op_id, now + LOST_CONNECTION_KEEP));
        let rm = if b == self.node { a_node } else { b };
        if self.known.contains_key(&rm) || self.pending.contains_key(&rm) {
            self.send_to(
                rm,
                Term::tuple(vec![a("remove_connection"), Term::Atom(self.node)]),
            );
            tracing::warn!(node = %rm, "global: requested disconnect from node to prevent overlapping partitions");
            self.nodedown(rm, Nodedown::RemoveConnection);
            dist::disconnect_node(rm);
        }
    }

    /// Sends `msg` to the servers of known and pending nodes of version 7+,
    /// but `except`.
    fn multicast(&self, msg: &Term, except: Atom) {
        let targets: Vec<Atom> = self
            .known
            .iter()
            .chain(self.pending.iter())
            .filter(|(n, v)| **n != except && **v >= POP_VSN)
            .map(|(n, _)| *n)
            .collect();
        for n in targets {
            self.send_to(n, msg.clone());
        }
    }

    fn send_to(&self, node: Atom, msg: Term) {
        dist::send_named(atom(SERVER), node, msg);
    }

    // ------------------------------------------------------ node events

    fn nodeup(&mut self, node: Atom) {
        if node == self.node || self.known.contains_key(&node) || self.resolvers.contains_key(&node)
        {
            return;
        }
        self.next_tag += 1;
        let my_tag = self.next_tag;
        let pre = self.sessions.entry(node).or_default().pre_connect.take();
        self.sessions.entry(node).or_default().my_tag = Some(my_tag);
        let known = Term::Map(
            self.known
                .iter()
                .map(|(n, v)| (Term::Atom(*n), Term::from(*v)))
                .collect(),
        );
        self.send_to(
            node,
            call::cast_message(proto::init_connect(
                &Term::Int(my_tag),
                self.node,
                known,
                self.locker,
            )),
        );
        self.resolvers.insert(
            node,
            Resolver {
                tag: my_tag,
                pid: None,
            },
        );
        self.probes.retain(|_, n| *n != node);
        self.probes
            .insert(dist::monitor_name(atom(SERVER), node), node);
        if let Some((his_vsn, his_tag, his_locker)) = pre {
            self.init_connect(his_vsn.min(VSN), node, his_tag, his_vsn, his_locker);
        }
    }

    /// The name server of a node we sync with is gone (or never ran):
    /// the node takes no part in global, so no sync with it is pending.
    fn probe_down(&mut self, d: dist::NameDown) {
        let Some(node) = self.probes.remove(&d.monitor) else {
            return;
        };
        if d.reason == crate::Reason::NoProc && !self.known.contains_key(&node) {
            tracing::info!(%node, "global: the node runs no global name server");
            self.end_session(node);
        }
    }

    /// Ends whatever sync session with `node` goes on: the locker's part,
    /// the resolver (whatever its tag: its session may have ended already,
    /// and a resolver entry would make the next nodeup look like a
    /// repeated one, so the node would never be synced again), the tags.
    fn end_session(&mut self, node: Atom) {
        let tag = self.my_tag(node);
        self.cancel_locker(node, tag, Vec::new());
        if let Some(r) = self.resolvers.remove(&node)
            && let Some(pid) = r.pid
        {
            pid.exit(crate::Reason::Kill);
        }
        self.sessions.remove(&node);
        self.pending.remove(&node);
    }

    fn nodedown(&mut self, node: Atom, what: Nodedown) {
        if node == self.node {
            return;
        }
        self.probes.retain(|_, n| *n != node);
        self.end_session(node);
        self.locker.send(LockerMsg::RemoveFromKnown(node));
        match what {
            Nodedown::RemoveConnection => {
                self.removing.insert(node);
            }
            Nodedown::Disconnected => {
                if !self.removing.remove(&node) && self.known.contains_key(&node) {
                    self.inform_connection_loss(node);
                }
            }
        }
        self.known.remove(&node);
        self.synced.retain(|n| *n != node);
        // Names and locks of processes there go with the `noconnection`
        // downs of their monitors.
    }

    fn inform_connection_loss(&mut self, node: Atom) {
        self.next_op += 1;
        let msg = Term::tuple(vec![
            a("lost_connection"),
            Term::Atom(self.node),
            Term::Int(self.xcreation),
            Term::Int(self.next_op),
            Term::Atom(node),
        ]);
        self.multicast(&msg, node);
    }

    /// Ends the lock session for `node` (OTP's `cancel_locker`).
    fn cancel_locker(&mut self, node: Atom, tag: Option<i64>, then: Vec<(Atom, Term)>) {
        self.locker.send(LockerMsg::Cancel { node, tag, then });
        if let Some(his) = self.sessions.get(&node).and_then(|s| s.his_tag.clone())
            && tag.is_some()
            && tag == self.my_tag(node)
            && self
                .pending
                .get(&node)
                .is_some_and(|v| *v >= VERIFY_CONNECT_VSN)
        {
            self.send_cancel_connect(node, &his);
        }
        if let Some(r) = self.resolvers.get(&node)
            && Some(r.tag) == tag
        {
            if let Some(pid) = r.pid {
                pid.exit(crate::Reason::Kill);
            }
            self.resolvers.remove(&node);
        }
    }

    fn send_cancel_connect(&self, node: Atom, his_tag: &Term) {
        self.send_to(
            node,
            Term::tuple(vec![
                a("cancel_connect"),
                Term::Atom(self.node),
                his_tag.clone(),
            ]),
        );
    }

    fn node_vsn(&self, node: Atom) -> u32 {
        if node == self.node {
            return VSN;
        }
        self.known
            .get(&node)
            .or_else(|| self.pending.get(&node))
            .copied()
            .unwrap_or(0)
    }

    fn known_list(&self) -> Vec<(Atom, u32)> {
        self.known.iter().map(|(n, v)| (*n, *v)).collect()
    }

    fn whereis(&self, name: &Term) -> Option<Pid> {
        let t = self.tables.lock();
        let r = t.names.get(name)?;
        (r.pid.is_remote() || r.pid.is_alive()).then_some(r.pid)
    }

    // --------------------------------------------------- internal messages

    fn handle_internal(&mut self, m: ToServer) {
        match m {
            ToServer::Names { reply, id } => {
                let names = self.tables.lock().names.keys().cloned().collect();
                reply.send(ApiReply {
                    id,
                    value: ApiValue::Names(names),
                });
            }
            ToServer::Known { reply, id } => reply.send(ApiReply {
                id,
                value: ApiValue::Known(self.known.keys().copied().collect()),
            }),
            ToServer::Info { reply, id } => {
                let t = self.tables.lock();
                let info = GlobalInfo {
                    known: self.known.keys().copied().collect(),
                    synced: self.synced.clone(),
                    names: t.names.iter().map(|(n, r)| (n.clone(), r.pid)).collect(),
                    locks: t
                        .locks
                        .iter()
                        .map(|(res, l)| {
                            (
                                res.clone(),
                                l.requester.clone(),
                                l.holders.iter().map(|(p, _)| *p).collect(),
                            )
                        })
                        .collect(),
                    // A resolver entry stays after its sync; the node is in
                    // sync once it is known.
                    syncing: self
                        .resolvers
                        .keys()
                        .filter(|n| !self.known.contains_key(n))
                        .copied()
                        .collect(),
                };
                drop(t);
                reply.send(ApiReply {
                    id,
                    value: ApiValue::Info(info),
                });
            }
            ToServer::Registrar { job, reply, id } => {
                self.registrar.send(RegistrarJob { job, reply, id });
            }
            ToServer::Callback {
                name,
                pid,
                callback,
            } => {
                self.callbacks.insert(name, (pid, callback));
            }
            ToServer::LockIsSet { node, tag, lock } => {
                if self.my_tag(node) != Some(tag) {
                    self.cancel_locker(node, Some(tag), Vec::new());
                    return;
                }
                let Some(his) = self.sessions.get(&node).and_then(|s| s.his_tag.clone()) else {
                    return;
                };
                let names: Vec<Term> = self
                    .tables
                    .lock()
                    .names
                    .iter()
                    .map(|(n, r)| {
                        NameEntry {
                            name: n.clone(),
                            pid: r.pid,
                            method: r.method.clone(),
                        }
                        .to_term()
                    })
                    .collect();
                self.send_to(
                    node,
                    call::cast_message(Term::tuple(vec![
                        a("exchange"),
                        Term::Atom(self.node),
                        Term::List(names),
                        Term::Nil,
                        his,
                    ])),
                );
                let session = self.sessions.entry(node).or_default();
                session.lock_id = Some(lock);
                match session.wait_lock.take() {
                    Some(WaitLock::Exchange(names)) => self.start_resolver(node, names),
                    _ => session.wait_lock = Some(WaitLock::LockIsSet),
                }
            }
            ToServer::ExchangeOps {
                node,
                tag,
                ops,
                resolved,
            } => {
                if self.my_tag(node) != Some(tag) {
                    self.cancel_locker(node, Some(tag), Vec::new());
                    return;
                }
                if let Some(r) = self.resolvers.get_mut(&node) {
                    r.pid = None;
                }
                let vsn = self.node_vsn(node);
                let his = self
                    .sessions
                    .get(&node)
                    .and_then(|s| s.his_tag.clone())
                    .unwrap_or(Term::Atom(Atom::UNDEFINED));
                self.send_to(
                    node,
                    call::cast_message(Term::tuple(vec![
                        a("resolved"),
                        Term::Atom(self.node),
                        Term::List(resolved.iter().map(Op::to_term).collect()),
                        proto::known_list(vsn, &self.known_list()),
                        a("unused"),
                        Term::Nil,
                        his,
                    ])),
                );
                let session = self.sessions.entry(node).or_default();
                match session.save_ops.take() {
                    Some(SaveOps::Resolved {
                        known,
                        ops: his_ops,
                    }) => self.resolved(node, ops, his_ops, known),
                    _ => session.save_ops = Some(SaveOps::Ops(ops)),
                }
            }
            ToServer::ExtraNodeDown(node) => self.nodedown(node, Nodedown::Disconnected),
        }
    }
}

/// Why a node is forgotten.
enum Nodedown {
    /// Its connection went down.
    Disconnected,
    /// A peer asked us to drop it (prevent overlapping partitions).
    RemoveConnection,
}

/// A tag we sent as an integer, back from a peer.
fn tag_int(t: &Term) -> Option<i64> {
    t.as_int()
}
