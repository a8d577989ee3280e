//! The locker: the satellite process that, for every node that connects,
//! takes global's lock in our partition while that node's locker takes it in
//! its own (OTP's `the_locker`).
//!
//! 1. The server tells it about a connecting node with its locker's pid
//!    (`HisTheLocker`).
//! 2. When no lock is held, after a pause, it picks one such node and locks
//!    `{global, sort([OurLocker, HisLocker])}` on the boss (the greatest
//!    known node), on itself and the other node, then on every known node.
//!    Both lockers use the same requester id, so each may lock the nodes
//!    the other has locked.
//! 3. It tells the other locker, through the other node's server, with
//!    `{lock_set, Self, true, Known, HisTag}`. A locker that receives such a
//!    message unprompted locks its own partition and answers the same way.
//! 4. When both have the lock, it tells our server (`lock_is_set`), which
//!    exchanges names, and waits for the server's `cancel`; then it sends the
//!    `new_nodes` messages the server gave it (so they arrive before the
//!    lock goes away) and unlocks every node it locked, the boss last.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::Pid;
use crate::dist::{self, Atom, Term};

use super::proto::{self, LockId, VERIFY_CONNECT_VSN, a};
use super::tables::Tables;
use super::{CALL_TIMEOUT, Rng, SERVER, ToServer, call};

/// A node that wants to connect, and its locker.
#[derive(Clone, Debug)]
pub(crate) struct Him {
    pub(crate) node: Atom,
    pub(crate) locker: Pid,
    pub(crate) vsn: u32,
    pub(crate) my_tag: i64,
    pub(crate) his_tag: Term,
}

/// What the server and peers tell the locker.
pub(crate) enum LockerMsg {
    /// A node connects: lock for it.
    HisTheLocker(Him),
    /// Stop locking for `node` in session `tag` (`None`: an old session;
    /// ignored). `then` are messages to send before the lock is released.
    Cancel {
        node: Atom,
        tag: Option<i64>,
        then: Vec<(Atom, Term)>,
    },
    /// A peer's locker reports whether it has the lock.
    LockSet {
        pid: Pid,
        set: bool,
        tag: Option<Term>,
    },
    AddToKnown(Vec<Atom>),
    RemoveFromKnown(Atom),
}

struct Locker {
    me: Pid,
    node: Atom,
    server: Pid,
    tables: Arc<Mutex<Tables>>,
    known: Vec<Atom>,
    boss: Atom,
    hims: Vec<Him>,
    just_synced: bool,
    rng: Rng,
}

pub(crate) async fn run(server: Pid, tables: Arc<Mutex<Tables>>, known: Vec<Atom>) {
    let node = dist::this_node();
    let mut l = Locker {
        me: crate::self_pid(),
        node,
        server,
        tables,
        known: Vec::new(),
        boss: node,
        hims: Vec::new(),
        just_synced: false,
        rng: Rng::new(),
    };
    l.add_known(&known);
    loop {
        if let Some(m) = crate::receive::<LockerMsg>().timeout(Duration::ZERO).await {
            l.handle(m).await;
            continue;
        }
        let wait = if l.hims.is_empty() {
            Duration::MAX
        } else if l.just_synced {
            Duration::ZERO
        } else if l.known.is_empty() {
            Duration::from_millis(200)
        } else {
            let n = u64::try_from(l.known.len()).unwrap_or(u64::MAX);
            Duration::from_millis(1000u64.saturating_add(100 * n).min(3000))
        };
        l.just_synced = false;
        match crate::receive::<LockerMsg>().timeout(wait).await {
            Some(m) => l.handle(m).await,
            None => {
                if !l.tables.lock().is_global_lock_set() {
                    l.select_node().await;
                }
            }
        }
    }
}

impl Locker {
    fn add_known(&mut self, nodes: &[Atom]) {
        for &n in nodes {
            if n != self.node && !self.known.contains(&n) {
                self.known.push(n);
            }
        }
        self.update_boss();
    }

    fn update_boss(&mut self) {
        self.boss = std::iter::once(self.node)
            .chain(self.known.iter().copied())
            .max_by(|x, y| x.as_str().cmp(y.as_str()))
            .unwrap_or(self.node);
    }

    async fn handle(&mut self, m: LockerMsg) {
        match m {
            LockerMsg::HisTheLocker(him) => self.hims.push(him),
            LockerMsg::Cancel { tag: None, .. } => {}
            LockerMsg::Cancel {
                node, tag: Some(t), ..
            } => self.remove_him(node, t),
            LockerMsg::LockSet { set: false, .. } => {}
            LockerMsg::LockSet { pid, tag, .. } => self.spontaneous(pid, tag).await,
            m @ (LockerMsg::AddToKnown(_) | LockerMsg::RemoveFromKnown(_)) => self.update_known(m),
        }
    }

    fn update_known(&mut self, m: LockerMsg) {
        match m {
            LockerMsg::AddToKnown(nodes) => self.add_known(&nodes),
            LockerMsg::RemoveFromKnown(n) => {
                self.known.retain(|k| *k != n);
                self.update_boss();
            }
            _ => {}
        }
    }

    fn remove_him(&mut self, node: Atom, tag: i64) {
        self.hims.retain(|h| !(h.node == node && h.my_tag == tag));
    }

    fn lock_id(&self, his_locker: Pid) -> LockId {
        // `lists:sort([Self, Pid])` on both sides: the same id only if we
        // order pids as the emulator does.
        let mut pids = [self.me, his_locker];
        pids.sort_by(|x, y| crate::dist::remote::cmp_pids(*x, *y));
        LockId {
            resource: a("global"),
            requester: Term::List(pids.iter().map(|p| Term::Pid(*p)).collect()),
        }
    }

    /// The other locker has locked its partition first and tells us.
    async fn spontaneous(&mut self, pid: Pid, tag: Option<Term>) {
        let node = pid.node();
        let him = self
            .hims
            .iter()
            .find(|h| h.node == node && tag.as_ref().is_none_or(|t| *t == Term::Int(h.my_tag)))
            .cloned();
        let Some(him) = him else {
            // Not (or no longer) connecting with it: refuse, as OTP does,
            // straight to the locker that asked.
            pid.send(Term::tuple(vec![
                a("lock_set"),
                Term::Pid(self.me),
                Term::Atom(Atom::FALSE),
                self.known_term(),
            ]));
            return;
        };
        let id = self.lock_id(pid);
        let set = self.lock_nodes_safely(&id, &[]).await;
        self.send_lock_set(set, pid, him.vsn, &him.his_tag);
        if set {
            self.server.send(ToServer::LockIsSet {
                node,
                tag: him.my_tag,
                lock: id.to_term(),
            });
            let mut known = vec![self.node];
            known.extend(self.known.iter().copied());
            self.wait_cancel(node, &id, him.my_tag, &known).await;
            self.just_synced = true;
            self.remove_him(node, him.my_tag);
        }
    }

    async fn select_node(&mut self) {
        let candidates: Vec<Him> = self
            .hims
            .iter()
            .filter(|h| !self.known.contains(&h.node))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let him = candidates[self.rng.below(candidates.len())].clone();
        let id = self.lock_id(him.locker);
        if !self.lock_nodes_safely(&id, &[him.node]).await {
            return;
        }
        let mut known1 = vec![self.node, him.node];
        known1.extend(self.known.iter().copied());
        self.send_lock_set(true, him.locker, him.vsn, &him.his_tag);
        self.wait_lock_set(&him, &known1, &id).await;
    }

    /// Waits for the other locker's answer (OTP's `lock_is_set`).
    async fn wait_lock_set(&mut self, him: &Him, known1: &[Atom], id: &LockId) {
        let my_tag = Term::Int(him.my_tag);
        loop {
            let m = crate::receive_if(|m: &LockerMsg| match m {
                LockerMsg::LockSet { pid, .. } => pid.node() == him.node,
                LockerMsg::Cancel { node, tag, .. } => {
                    *node == him.node && *tag == Some(him.my_tag)
                }
                _ => false,
            })
            .await;
            match m {
                LockerMsg::LockSet { tag: Some(t), .. } if t != my_tag => continue,
                LockerMsg::LockSet { set: true, .. } => {
                    self.server.send(ToServer::LockIsSet {
                        node: him.node,
                        tag: him.my_tag,
                        lock: id.to_term(),
                    });
                    self.wait_cancel(him.node, id, him.my_tag, known1).await;
                    self.just_synced = true;
                    self.hims
                        .retain(|h| !(h.node == him.node && h.my_tag == him.my_tag));
                    return;
                }
                LockerMsg::LockSet { set: false, .. } => {
                    self.delete_global_lock(id, known1).await;
                    return;
                }
                LockerMsg::Cancel { then, .. } => {
                    send_all(then);
                    self.delete_global_lock(id, known1).await;
                    self.remove_him(him.node, him.my_tag);
                    return;
                }
                _ => return,
            }
        }
    }

    /// Holds the lock until the server cancels the session.
    async fn wait_cancel(&mut self, node: Atom, id: &LockId, tag: i64, known: &[Atom]) {
        let m = crate::receive_if(|m: &LockerMsg| {
            matches!(m, LockerMsg::Cancel { node: n, tag: Some(t), .. } if *n == node && *t == tag)
        })
        .await;
        if let LockerMsg::Cancel { then, .. } = m {
            send_all(then);
        }
        self.delete_global_lock(id, known).await;
    }

    fn known_term(&self) -> Term {
        Term::List(self.known.iter().map(|n| Term::Atom(*n)).collect())
    }

    fn send_lock_set(&self, set: bool, his_locker: Pid, vsn: u32, his_tag: &Term) {
        let mut msg = vec![
            a("lock_set"),
            Term::Pid(self.me),
            Term::from(set),
            self.known_term(),
        ];
        if vsn >= VERIFY_CONNECT_VSN {
            msg.push(his_tag.clone());
        }
        dist::send_named(
            proto::atom(SERVER),
            his_locker.node(),
            call::cast_message(Term::Tuple(msg)),
        );
    }

    /// Locks the boss, then us and `extra`, then every known node; on any
    /// refusal unlocks what it locked (OTP's `lock_nodes_safely`).
    async fn lock_nodes_safely(&mut self, id: &LockId, extra: &[Atom]) -> bool {
        let first: Vec<Atom> = [self.boss]
            .into_iter()
            .filter(|n| *n != Atom::NONODE)
            .collect();
        if !(first == [self.node] || self.tables.lock().can_set_lock(id)) {
            return false;
        }
        if !set_lock_on_nodes(id, &first, &self.tables).await {
            return false;
        }
        self.drain_known().await;
        let second: Vec<Atom> = std::iter::once(self.node)
            .chain(extra.iter().copied())
            .filter(|n| !first.contains(n) && *n != Atom::NONODE)
            .collect();
        if !set_lock_on_nodes(id, &second, &self.tables).await {
            del_lock(id, &first).await;
            return false;
        }
        let rest: Vec<Atom> = self
            .known
            .iter()
            .copied()
            .filter(|n| !first.contains(n))
            .collect();
        if !set_lock_on_nodes(id, &rest, &self.tables).await {
            let so_far: Vec<Atom> = first.iter().chain(second.iter()).copied().collect();
            del_lock(id, &so_far).await;
            return false;
        }
        true
    }

    /// Takes the pending known-node updates (OTP's `update_locker_known/1`).
    async fn drain_known(&mut self) {
        while let Some(m) = crate::receive_if(|m: &LockerMsg| {
            matches!(m, LockerMsg::AddToKnown(_) | LockerMsg::RemoveFromKnown(_))
        })
        .timeout(Duration::ZERO)
        .await
        {
            self.update_known(m);
        }
    }

    async fn delete_global_lock(&self, id: &LockId, nodes: &[Atom]) {
        delete_global_lock(id, nodes).await;
    }
}

fn send_all(msgs: Vec<(Atom, Term)>) {
    for (node, msg) in msgs {
        dist::send_named(proto::atom(SERVER), node, msg);
    }
}

/// `set_lock` on `nodes` with no retry (OTP's `set_lock_on_nodes`): asks
/// them all; if one refuses, unlocks those that agreed.
pub(crate) async fn set_lock_on_nodes(id: &LockId, nodes: &[Atom], tables: &Mutex<Tables>) -> bool {
    if nodes.is_empty() {
        return true;
    }
    let here = dist::this_node();
    if nodes.len() > 1 && nodes.contains(&here) && !tables.lock().can_set_lock(id) {
        return false;
    }
    let req = Term::tuple(vec![a("set_lock"), id.to_term()]);
    let t0 = std::time::Instant::now();
    let (replies, bad) = call::multi_call(nodes, proto::atom(SERVER), &req, CALL_TIMEOUT).await;
    let set = replies.iter().all(|(_, r)| *r == Term::Atom(Atom::TRUE));
    tracing::debug!(lock = %id.to_term(), ?nodes, ?bad, took = ?t0.elapsed(), set, "global: set_lock on nodes");
    if set {
        return true;
    }
    if replies.len() > 1 {
        let agreed: Vec<Atom> = replies
            .iter()
            .filter(|(_, r)| *r == Term::Atom(Atom::TRUE))
            .map(|(n, _)| *n)
            .collect();
        del_lock(id, &agreed).await;
    }
    false
}

/// `del_lock` on `nodes`.
pub(crate) async fn del_lock(id: &LockId, nodes: &[Atom]) {
    if nodes.is_empty() {
        return;
    }
    let req = Term::tuple(vec![a("del_lock"), id.to_term()]);
    let _ = call::multi_call(nodes, proto::atom(SERVER), &req, CALL_TIMEOUT).await;
}

/// Unlocks `nodes`, the boss last (OTP's `delete_global_lock`).
pub(crate) async fn delete_global_lock(id: &LockId, nodes: &[Atom]) {
    let Some(boss) = nodes
        .iter()
        .copied()
        .max_by(|x, y| x.as_str().cmp(y.as_str()))
    else {
        return;
    };
    let others: Vec<Atom> = nodes.iter().copied().filter(|n| *n != boss).collect();
    del_lock(id, &others).await;
    del_lock(id, &[boss]).await;
}
