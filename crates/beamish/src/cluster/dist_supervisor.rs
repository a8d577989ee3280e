//! A dynamic supervisor whose children are spread over the cluster (the
//! idea of Elixir's Horde): each child runs on one node, chosen by a
//! placement function of its id, is registered under a cluster-wide
//! [`global`] name, and is started again on another node when its node
//! dies.
//!
//! Every node that takes part runs a *member* of the supervisor (put
//! [`DistSupervisor::child_spec`] under a supervisor on each node, with
//! the same name and start function). Children are data, not closures: a
//! child is an id and an argument term, and every member starts any child
//! with the one start function `(id, args) -> pid` (Erlang's
//! `{M, F, A}`), so any node can take any child over.
//!
//! # How the members agree
//! - **Members.** The members find each other through the `pg` group
//!   `{beamish_dist_sup, Name}`; the nodes that run a member and are
//!   connected are the supervisor's *view* of the cluster.
//! - **The set of children** is replicated to every member as a
//!   last-writer-wins map (a state-based CRDT): each entry carries the
//!   child's arguments, whether it was removed (a tombstone), and a
//!   version (a hybrid clock: wall-clock milliseconds, raised past every
//!   version seen) with the writing node as the tie-break. An operation is
//!   sent to every member; a member that appears (a node joins, a
//!   partition heals) gets every other member's whole map. Merging keeps
//!   the newer entry of each id, so every member ends with the same map
//!   whatever the order of the messages.
//! - **Placement.** A child runs on `placement(id, view)`; the default is
//!   rendezvous hashing ([`rendezvous`]: the node with the highest hash of
//!   `(id, node)`), which moves only the children that must move when the
//!   view changes: a node that leaves gives up exactly its own children
//!   (spread over the others), and a node that joins takes over only the
//!   children it now scores highest for (about `1/n` of them).
//! - **Starting and moving.** Each member starts the children placed on
//!   its node that run nowhere (under the name `{Name, Id}`), stops the
//!   ones it runs that are now placed elsewhere (reason `{shutdown,
//!   moved}`, [`MOVED`]) and tells the new node, which starts them once
//!   the old instance is gone: a child moves without two instances
//!   running at once.
//! - **Failover.** When a node dies, `pg` drops its member, the view
//!   shrinks, and the members placed to run its children start them (once
//!   `global` has dropped the old names, which it does on the nodedown).
//! - **Healing.** Two partitions that each started a child clash in
//!   `global` when they join; the instance on the node that the placement
//!   prefers between the two stays, and the other is stopped with
//!   `{shutdown, name_conflict}` ([`NAME_CONFLICT`]). The merged view then
//!   moves each child to its placed node.
//! - **Restarts.** A member supervises the children it runs as a dynamic
//!   supervisor does: the [`Restart`] type decides whether a child that
//!   ended is started again (a child that is not is removed from the
//!   cluster-wide set), within the member's restart intensity; past it the
//!   member stops its children and ends with `shutdown`, and the others
//!   take its children over. A start that fails is tried again with a
//!   back-off (doubling from 100 ms, at most 5 s) and counts towards the
//!   intensity, so a child whose start fails everywhere causes no storm.
//!
//! Every member compares what it believes with the name table each
//! [`check_every`](DistSupervisor::check_every), so a lost message costs
//! one period, not a child.
//!
//! Removed ids are kept as tombstones (so that an old entry cannot come
//! back from a node that was away); an id can be started again.
//!
//! The members answer `gen_server` calls in terms, so an Erlang node can
//! use them too: `{start_child, Id, Args}`, `{terminate_child, Id}`,
//! `which_children`, `members` (see [`DistSupervisorRef`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use crate::dist::gen_protocol::{self, Dest, Incoming};
use crate::dist::{self, Atom, Term};
use crate::global::{self, Resolve};
use crate::otp::supervisor::{ChildId, StartFuture, SupervisorError, catch_start};
use crate::otp::{ChildKind, ChildSpec, Restart, Shutdown};
use crate::pg::{Event, Update};
use crate::{Down, Error, Exit, Pid, Reason, Ref};

/// The detail of the reason a child is stopped with when it moves to
/// another node: `{shutdown, moved}`.
pub const MOVED: &str = "moved";

/// The detail of the reason an instance is stopped with when another
/// instance of the same child won the name after a partition healed:
/// `{shutdown, name_conflict}`.
pub const NAME_CONFLICT: &str = "name_conflict";

/// Starts a child, given its id and arguments, linked to the caller (the
/// member); returns its pid.
pub type ChildStart = Arc<dyn Fn(&Term, &Term) -> StartFuture + Send + Sync>;

/// Chooses the node of a child: given its id and the view (the nodes that
/// run a member, in name order), one of them.
pub type Placement = Arc<dyn Fn(&Term, &[Atom]) -> Option<Atom> + Send + Sync>;

/// The node of `nodes` with the highest hash of `(id, node)` (rendezvous
/// or highest-random-weight hashing): the default [`Placement`].
///
/// Every node computes the same answer (the hash is MD5 of the id's
/// external term format and the node's name), and a change of `nodes`
/// moves only what it must: removing a node moves only the ids it had,
/// adding one moves only ids to it.
///
/// ```
/// use beamish::cluster::dist_supervisor::rendezvous;
/// use beamish::dist::{Atom, Term};
/// let nodes: Vec<Atom> = ["a@h", "b@h", "c@h"].iter().map(|n| Atom::new(n).unwrap()).collect();
/// let id = Term::Int(7);
/// let owner = rendezvous(&id, &nodes).unwrap();
/// let others: Vec<Atom> = nodes.iter().copied().filter(|n| *n != nodes[0]).collect();
/// if owner != nodes[0] {
///     assert_eq!(rendezvous(&id, &others), Some(owner), "not moved: its node stayed");
/// }
/// assert_eq!(rendezvous(&id, &[]), None);
/// ```
pub fn rendezvous(id: &Term, nodes: &[Atom]) -> Option<Atom> {
    let key = id.encode();
    nodes
        .iter()
        .copied()
        .max_by_key(|n| (score(&key, *n), n.as_str()))
}

/// The hash of an encoded id and a node.
fn score(key: &[u8], node: Atom) -> u64 {
    let mut h = Md5::new();
    h.update(key);
    h.update(node.as_str().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// A supervisor of children spread over the cluster; see the [module
/// documentation](self).
///
/// ```no_run
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::cluster::{DistSupervisor, DistSupervisorRef};
/// use beamish::dist::{Atom, Term};
/// # beamish::dist::start(beamish::dist::NodeConfig::new("a@127.0.0.1", "c")).await.unwrap();
/// # beamish::global::start().await.unwrap();
/// # beamish::pg::start().unwrap();
/// let name = Atom::new("workers").unwrap();
/// // On every node:
/// DistSupervisor::new(name, |_id, _args| async {
///     Ok(beamish::spawn_link(async { beamish::sleep(std::time::Duration::MAX).await }))
/// })
/// .start_link()
/// .await
/// .unwrap();
/// // From any node:
/// let workers = DistSupervisorRef::new(name);
/// let pid = workers.start_child(Term::Int(1), Term::Nil).await.unwrap();
/// assert_eq!(workers.whereis(&Term::Int(1)), Some(pid));
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct DistSupervisor {
    name: Atom,
    start: ChildStart,
    placement: Placement,
    restart: Restart,
    shutdown: Shutdown,
    intensity: u32,
    period: Duration,
    check: Duration,
}

impl DistSupervisor {
    /// The supervisor `name` (also the members' local name), whose children
    /// `start` starts: permanent children, shut down within 5 s, restart
    /// intensity 3 in 5 s, checks every 500 ms, rendezvous placement.
    pub fn new<F, Fut>(name: Atom, start: F) -> DistSupervisor
    where
        F: Fn(&Term, &Term) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Pid, Error>> + Send + 'static,
    {
        DistSupervisor {
            name,
            start: Arc::new(move |id, args| Box::pin(start(id, args))),
            placement: Arc::new(rendezvous),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            intensity: 3,
            period: Duration::from_secs(5),
            check: Duration::from_millis(500),
        }
    }

    /// The placement function (every member must use the same one).
    pub fn placement(
        mut self,
        placement: impl Fn(&Term, &[Atom]) -> Option<Atom> + Send + Sync + 'static,
    ) -> DistSupervisor {
        self.placement = Arc::new(placement);
        self
    }

    /// The restart type of every child (default permanent).
    pub fn restart(mut self, restart: Restart) -> DistSupervisor {
        self.restart = restart;
        self
    }

    /// How a child is stopped (default: `shutdown`, then `kill` after 5 s).
    pub fn shutdown(mut self, shutdown: Shutdown) -> DistSupervisor {
        self.shutdown = shutdown;
        self
    }

    /// At most `intensity` restarts (and failed starts) in `period` on one
    /// node before its member gives up.
    pub fn intensity(mut self, intensity: u32, period: Duration) -> DistSupervisor {
        self.intensity = intensity;
        self.period = period;
        self
    }

    /// How often a member compares its view with the name table (at least
    /// 10 ms).
    pub fn check_every(mut self, period: Duration) -> DistSupervisor {
        self.check = period.max(Duration::from_millis(10));
        self
    }

    /// A child spec of the member (a supervisor-kind child, id the name).
    pub fn child_spec(self) -> ChildSpec {
        let me = Arc::new(self);
        ChildSpec::new(me.name.as_str(), move || {
            let me = (*me).clone();
            async move { me.start_link().await }
        })
        .kind(ChildKind::Supervisor)
        .shutdown(Shutdown::Infinity)
    }

    /// Starts this node's member, linked to the caller and registered
    /// locally as the supervisor's name; returns once it has joined the
    /// others.
    ///
    /// # Errors
    /// [`Error::NotInProcess`]; [`Error::UnknownName`] if `global` or `pg`
    /// is not started; [`Error::NameTaken`] if the name is taken here.
    pub async fn start_link(self) -> Result<Pid, Error> {
        let caller = crate::try_self_pid().ok_or(Error::NotInProcess)?;
        crate::whereis(global::SERVER).ok_or_else(|| Error::UnknownName(global::SERVER.into()))?;
        crate::pg::Scope::default()
            .pid()
            .ok_or_else(|| Error::UnknownName("pg".into()))?;
        let id = Ref::new();
        let mark = crate::mark();
        let spawned = crate::SpawnOptions::new()
            .trap_exit(true)
            .link()
            .name(self.name.as_str())
            .spawn(async move { Member::new(self, caller).run(id).await })?;
        let pid = spawned.pid;
        let mon = crate::monitor(pid);
        match crate::otp::answer_or_down(mark, mon, move |r: &Ready| r.0 == id).await {
            Ok(_) => Ok(pid),
            Err(down) => {
                crate::unlink(pid);
                Err(Error::Exited(down.reason))
            }
        }
    }
}

/// A member has joined the group: [`DistSupervisor::start_link`] returns.
struct Ready(Ref);

/// The member's periodic check.
struct Tick;

/// From a resolve method run here: our instance of `id` lost a clash.
struct Lost {
    child: Pid,
}

use super::atom;

fn ok(t: Term) -> Term {
    Term::Tuple(vec![atom("ok"), t])
}

fn error(t: Term) -> Term {
    Term::Tuple(vec![atom("error"), t])
}

/// The cluster-wide name of child `id` of supervisor `sup`: `{Sup, Id}`.
pub fn child_name(sup: Atom, id: &Term) -> Term {
    Term::Tuple(vec![Term::Atom(sup), id.clone()])
}

/// One child in the replicated map.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    args: Term,
    removed: bool,
    version: u64,
    by: Atom,
}

impl Entry {
    /// Whether `self` wins over `other` (last writer wins; the node name
    /// breaks ties).
    fn newer_than(&self, other: &Entry) -> bool {
        (self.version, self.by.as_str()) > (other.version, other.by.as_str())
    }

    /// `{Id, Args, Version, By, Removed}`.
    fn to_term(&self, id: &Term) -> Term {
        Term::Tuple(vec![
            id.clone(),
            self.args.clone(),
            Term::Int(i64::try_from(self.version).unwrap_or(i64::MAX)),
            Term::Atom(self.by),
            Term::Atom(if self.removed {
                Atom::TRUE
            } else {
                Atom::FALSE
            }),
        ])
    }

    fn parse(t: &Term) -> Option<(Term, Entry)> {
        match t.as_tuple()? {
            [id, args, Term::Int(v), Term::Atom(by), Term::Atom(removed)] => Some((
                id.clone(),
                Entry {
                    args: args.clone(),
                    removed: *removed == Atom::TRUE,
                    version: u64::try_from(*v).ok()?,
                    by: *by,
                },
            )),
            _ => None,
        }
    }
}

/// The replicated map of children: what every member converges to.
#[derive(Clone, Debug, Default, PartialEq)]
struct Children {
    entries: BTreeMap<Term, Entry>,
    /// The greatest version seen.
    clock: u64,
}

impl Children {
    /// A version newer than any seen, at least the wall clock in ms.
    fn next_version(&mut self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.clock = (self.clock + 1).max(wall);
        self.clock
    }

    /// Writes `id` here (a new version); the entry to send to the others.
    fn write(&mut self, id: &Term, args: Term, removed: bool) -> Term {
        let e = Entry {
            args,
            removed,
            version: self.next_version(),
            by: dist::this_node(),
        };
        let t = e.to_term(id);
        self.entries.insert(id.clone(), e);
        t
    }

    /// Merges one entry; true if it changed the map.
    fn merge(&mut self, id: Term, e: Entry) -> bool {
        self.clock = self.clock.max(e.version);
        match self.entries.get(&id) {
            Some(cur) if !e.newer_than(cur) => false,
            _ => {
                self.entries.insert(id, e);
                true
            }
        }
    }

    /// The live entry of `id`.
    fn live(&self, id: &Term) -> Option<&Entry> {
        self.entries.get(id).filter(|e| !e.removed)
    }

    fn to_term(&self) -> Term {
        Term::List(self.entries.iter().map(|(id, e)| e.to_term(id)).collect())
    }
}

/// The messages members send each other (terms: they cross nodes).
///
/// - `{beamish_dist_sup_sync, Entries}`: a member's whole map, sent to a
///   member that appeared;
/// - `{beamish_dist_sup_op, Entries}`: entries just written;
/// - `{beamish_dist_sup_moved, Id}`: the sender stopped its instance of
///   `Id`, which is now placed on the receiver's node;
/// - `{beamish_dist_sup_missing, Id}`: the sender's name table has no
///   instance of `Id`, placed on the receiver's node.
enum Peer<'a> {
    Entries(&'a [Term]),
    Moved(&'a Term),
    Missing(&'a Term),
}

impl<'a> Peer<'a> {
    fn parse(t: &'a Term) -> Option<Peer<'a>> {
        match t.as_tuple()? {
            [Term::Atom(tag), entries]
                if matches!(
                    tag.as_str(),
                    "beamish_dist_sup_sync" | "beamish_dist_sup_op"
                ) =>
            {
                Some(Peer::Entries(entries.as_list()?))
            }
            [Term::Atom(tag), id] if tag.as_str() == "beamish_dist_sup_moved" => {
                Some(Peer::Moved(id))
            }
            [Term::Atom(tag), id] if tag.as_str() == "beamish_dist_sup_missing" => {
                Some(Peer::Missing(id))
            }
            _ => None,
        }
    }
}

/// A failed start of one child: when to try again.
struct Backoff {
    at: Instant,
    failures: u32,
}

/// What a pass over the children decided to do.
enum Action {
    /// Start the child here.
    Start(Term),
    /// Our instance must stop (`reason`); `to`: tell that node's member.
    Stop {
        id: Term,
        pid: Pid,
        reason: Reason,
        to: Option<Atom>,
    },
    /// Our instance runs but the name is free: register it again.
    Register(Term, Pid),
}

struct Member {
    config: DistSupervisor,
    parent: Pid,
    children: Children,
    /// The other nodes' members.
    peers: HashSet<Pid>,
    /// The `pg` subscription.
    sub: Option<Ref>,
    /// The view the placement cache is for, and the cache.
    view: Vec<Atom>,
    placed: HashMap<Term, Option<Atom>>,
    /// Our instances, by id and by pid.
    running: BTreeMap<Term, Pid>,
    by_pid: HashMap<Pid, Term>,
    backoff: HashMap<Term, Backoff>,
    /// Restarts and failed starts within the period.
    history: VecDeque<Instant>,
    /// A pass is due (something changed).
    dirty: bool,
    /// An instance is moving to us: look again shortly.
    soon: bool,
    /// Children placed elsewhere that our name table has had no instance
    /// of, since when (and when we last told their node).
    missing: HashMap<Term, (Instant, Option<Instant>)>,
}

/// How soon a member looks again at a child that is moving to it.
const MOVE_POLL: Duration = Duration::from_millis(10);

/// How long a call to a member may take (a start function can be slow).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Member {
    fn new(config: DistSupervisor, parent: Pid) -> Member {
        Member {
            config,
            parent,
            children: Children::default(),
            peers: HashSet::new(),
            sub: None,
            view: Vec::new(),
            placed: HashMap::new(),
            running: BTreeMap::new(),
            by_pid: HashMap::new(),
            backoff: HashMap::new(),
            history: VecDeque::new(),
            dirty: true,
            soon: false,
            missing: HashMap::new(),
        }
    }

    fn group(&self) -> Term {
        Term::Tuple(vec![atom("beamish_dist_sup"), Term::Atom(self.config.name)])
    }

    fn name_of(&self, id: &Term) -> Term {
        child_name(self.config.name, id)
    }

    async fn run(mut self, ready: Ref) {
        let me = crate::self_pid();
        if let Err(e) = crate::pg::join(self.group(), me).await {
            crate::exit::<()>(Reason::other(format!("dist supervisor: pg join: {e}"))).await;
        }
        match crate::pg::monitor(self.group()).await {
            Ok((sub, members)) => {
                self.sub = Some(sub);
                self.joined(members);
            }
            Err(e) => {
                crate::exit::<()>(Reason::other(format!("dist supervisor: pg monitor: {e}"))).await;
            }
        }
        self.parent.send(Ready(ready));
        crate::send_after(me, self.config.check, Tick);
        loop {
            if self.dirty || self.soon {
                self.dirty = false;
                self.soon = false;
                if let Err(reason) = self.reconcile().await {
                    self.finish(reason).await;
                    return;
                }
            }
            let wait = if self.soon {
                MOVE_POLL
            } else {
                self.next_backoff().map_or(Duration::MAX, |at| {
                    at.saturating_duration_since(Instant::now())
                })
            };
            let Some(msg) = crate::receive_match(|m| {
                m.is::<Exit>()
                    || m.is::<Update>()
                    || m.is::<Term>()
                    || m.is::<Tick>()
                    || m.is::<Lost>()
            })
            .timeout(wait)
            .await
            else {
                self.dirty = true;
                continue;
            };
            let msg = match msg.downcast::<Exit>() {
                Ok(exit) => {
                    if let Err(reason) = self.on_exit(exit) {
                        self.finish(reason).await;
                        return;
                    }
                    continue;
                }
                Err(m) => m,
            };
            let msg = match msg.downcast::<Update>() {
                Ok(u) => {
                    self.on_update(u);
                    continue;
                }
                Err(m) => m,
            };
            let msg = match msg.downcast::<Term>() {
                Ok(t) => {
                    if let Err(reason) = self.on_term(&t).await {
                        self.finish(reason).await;
                        return;
                    }
                    continue;
                }
                Err(m) => m,
            };
            let msg = match msg.downcast::<Lost>() {
                Ok(lost) => {
                    self.lost(lost.child).await;
                    continue;
                }
                Err(m) => m,
            };
            if msg.is::<Tick>() {
                crate::send_after(me, self.config.check, Tick);
                self.dirty = true;
            }
        }
    }

    /// Stops every instance here, then ends with `reason`.
    async fn finish(&mut self, reason: Reason) {
        let running: Vec<Pid> = self.running.values().copied().collect();
        for pid in running {
            crate::otp::supervisor::shutdown_child(pid, self.config.shutdown).await;
        }
        crate::exit::<()>(reason).await;
    }

    /// Members `pids` of the group appeared: each remote one gets our map.
    fn joined(&mut self, pids: Vec<Pid>) {
        let sync = Term::Tuple(vec![atom("beamish_dist_sup_sync"), self.children.to_term()]);
        for p in pids {
            if p.is_remote() && self.peers.insert(p) {
                p.send(sync.clone());
            }
        }
        self.dirty = true;
    }

    fn on_update(&mut self, u: Update) {
        if Some(u.monitor) != self.sub {
            return;
        }
        match u.event {
            Event::Join => self.joined(u.pids),
            Event::Leave => {
                for p in u.pids {
                    self.peers.remove(&p);
                }
                self.dirty = true;
            }
        }
    }

    /// Sends entries just written to every other member.
    fn broadcast(&self, entries: Vec<Term>) {
        let op = Term::Tuple(vec![atom("beamish_dist_sup_op"), Term::List(entries)]);
        for p in &self.peers {
            p.send(op.clone());
        }
    }

    /// The nodes that run a member and are up, this one included, by name.
    fn current_view(&self) -> Vec<Atom> {
        let up = dist::nodes();
        let mut v: Vec<Atom> = self
            .peers
            .iter()
            .map(|p| p.node())
            .filter(|n| up.contains(n))
            .chain(std::iter::once(dist::this_node()))
            .collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v.dedup();
        v
    }

    /// Takes the current view; the placement cache goes when it changed.
    fn refresh_view(&mut self) {
        let view = self.current_view();
        if view != self.view {
            self.view = view;
            self.placed.clear();
        }
    }

    /// Where `id` runs, by the placement of the view (cached per view).
    fn placed_on(&mut self, id: &Term) -> Option<Atom> {
        if let Some(node) = self.placed.get(id) {
            return *node;
        }
        let node = (self.config.placement)(id, &self.view);
        self.placed.insert(id.clone(), node);
        node
    }

    /// The registered instance of `id`, if it is alive as far as we can
    /// tell.
    fn live_holder(&self, id: &Term) -> Option<Pid> {
        super::live_global(&self.name_of(id))
    }

    fn next_backoff(&self) -> Option<Instant> {
        self.backoff.values().map(|b| b.at).min()
    }

    /// One pass: start what is placed here and runs nowhere, stop what
    /// runs here and is removed or placed elsewhere.
    async fn reconcile(&mut self) -> Result<(), Reason> {
        self.refresh_view();
        let me = dist::this_node();
        let now = Instant::now();
        let mut actions = Vec::new();
        let mut missing = Vec::new();
        let ids: Vec<Term> = self.children.entries.keys().cloned().collect();
        for id in ids {
            let running = self.running.get(&id).copied();
            if self.children.live(&id).is_none() {
                self.missing.remove(&id);
                if let Some(pid) = running {
                    actions.push(Action::Stop {
                        id,
                        pid,
                        reason: Reason::Shutdown,
                        to: None,
                    });
                }
                continue;
            }
            let placed = self.placed_on(&id);
            if placed != Some(me) {
                if let Some(pid) = running {
                    actions.push(Action::Stop {
                        id,
                        pid,
                        reason: Reason::ShutdownWith(MOVED.into()),
                        to: placed,
                    });
                } else if let Some(node) = placed {
                    if global::whereis_name(&self.name_of(&id)).is_some() {
                        self.missing.remove(&id);
                    } else {
                        missing.push((id, node));
                    }
                }
                continue;
            }
            if let Some(pid) = running {
                match global::whereis_name(&self.name_of(&id)) {
                    Some(p) if p == pid => {}
                    Some(_) => actions.push(Action::Stop {
                        id,
                        pid,
                        reason: Reason::ShutdownWith(NAME_CONFLICT.into()),
                        to: None,
                    }),
                    None => actions.push(Action::Register(id, pid)),
                }
                continue;
            }
            if self.backoff.get(&id).is_some_and(|b| b.at > now) {
                continue;
            }
            if self.live_holder(&id).is_some() {
                // It runs elsewhere and is moving here (or the view there
                // has not caught up yet): look again shortly.
                self.soon = true;
                continue;
            }
            actions.push(Action::Start(id));
        }
        if !missing.is_empty() {
            // Only a node global has synced with: until then our table
            // lacks its names by design (the sync brings them).
            let synced = global::known_nodes().await.unwrap_or_default();
            for (id, node) in missing {
                if synced.contains(&node) {
                    self.check_missing(id, node, now);
                } else {
                    self.missing.remove(&id);
                }
            }
        }
        for action in actions {
            match action {
                Action::Start(id) => {
                    let Some(args) = self.children.live(&id).map(|e| e.args.clone()) else {
                        continue;
                    };
                    if let Err(e) = self.start_here(&id, &args).await {
                        self.start_failed(&id, &e)?;
                    }
                }
                Action::Stop {
                    id,
                    pid,
                    reason,
                    to,
                } => {
                    self.forget(pid);
                    crate::otp::supervisor::shutdown_child_with(pid, self.config.shutdown, reason)
                        .await;
                    if let Some(node) = to
                        && let Some(peer) = self.peers.iter().find(|p| p.node() == node)
                    {
                        peer.send(Term::Tuple(vec![atom("beamish_dist_sup_moved"), id]));
                    }
                }
                Action::Register(id, pid) => {
                    let name = self.name_of(&id);
                    if global::register_name_with(name, pid, self.resolver())
                        .await
                        .is_err()
                    {
                        self.soon = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// A child placed on `node` (which global is in sync with) that runs
    /// nowhere in our name table for two check periods: we tell its node
    /// (once per period), whose member starts it, or registers its
    /// instance again. (A name lost from some tables but not all is
    /// repaired so: global no longer leaves one after a heal, but a
    /// cluster may hold nodes whose global does.)
    fn check_missing(&mut self, id: Term, node: Atom, now: Instant) {
        let period = self.config.check;
        let (since, told) = self.missing.entry(id.clone()).or_insert((now, None));
        if now.duration_since(*since) < period * 2
            || told.is_some_and(|t| now.duration_since(t) < period)
        {
            return;
        }
        *told = Some(now);
        if let Some(peer) = self.peers.iter().find(|p| p.node() == node) {
            tracing::info!(sup = %self.config.name, id = %id, %node, "dist supervisor: a child is missing from our name table");
            peer.send(Term::Tuple(vec![atom("beamish_dist_sup_missing"), id]));
        }
    }

    /// Another member's name table lacks our instance of `id`: register it
    /// again everywhere (or start it, if it does not run).
    async fn on_missing(&mut self, id: &Term) {
        match self.running.get(id).copied() {
            Some(pid) if global::whereis_name(&self.name_of(id)) == Some(pid) => {
                let name = self.name_of(id);
                if let Err(e) = global::re_register_name_with(name, pid, self.resolver()).await {
                    tracing::warn!(sup = %self.config.name, id = %id, error = %e, "dist supervisor: registering again failed");
                }
            }
            _ => self.dirty = true,
        }
    }

    /// Forgets our instance `pid`.
    fn forget(&mut self, pid: Pid) {
        if let Some(id) = self.by_pid.remove(&pid) {
            self.running.remove(&id);
        }
    }

    /// The resolve method of our registrations: keep the instance on the
    /// node the placement prefers of the two; tell a local member of the
    /// loser.
    fn resolver(&self) -> Resolve {
        let placement = self.config.placement.clone();
        let me = crate::self_pid();
        Resolve::custom(move |name, p1, p2| {
            let id = name.as_tuple().and_then(|t| t.get(1)).unwrap_or(name);
            let mut two = [p1.node(), p2.node()];
            two.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            let keep = match placement(id, &two) {
                Some(n) if n == p2.node() && n != p1.node() => p2,
                _ => p1,
            };
            for p in [p1, p2] {
                if p != keep && !p.is_remote() {
                    me.send(Lost { child: p });
                }
            }
            Some(keep)
        })
    }

    /// Starts `id` here and registers it.
    async fn start_here(&mut self, id: &Term, args: &Term) -> Result<Pid, Error> {
        let start = self.config.start.clone();
        let child = catch_start(|| start(id, args)).await?;
        let name = self.name_of(id);
        let t0 = Instant::now();
        let registered = global::register_name_with(name.clone(), child, self.resolver()).await;
        if t0.elapsed() > Duration::from_millis(500) {
            tracing::warn!(name = %name, took = ?t0.elapsed(), "dist supervisor: slow registration");
        }
        match registered {
            Ok(()) => {
                self.running.insert(id.clone(), child);
                self.by_pid.insert(child, id.clone());
                self.backoff.remove(id);
                tracing::debug!(name = %name, pid = %child, "dist supervisor: started here");
                Ok(child)
            }
            Err(e) => {
                crate::otp::supervisor::shutdown_child(child, self.config.shutdown).await;
                if matches!(e, Error::NameTaken(_)) {
                    // Another instance holds the name (one that is moving
                    // here, or a stale one global has yet to drop).
                    self.soon = true;
                }
                Err(e)
            }
        }
    }

    /// A start here failed: back off, or give up past the intensity.
    fn start_failed(&mut self, id: &Term, e: &Error) -> Result<(), Reason> {
        if matches!(e, Error::NameTaken(_)) {
            return Ok(());
        }
        tracing::warn!(sup = %self.config.name, id = %id, error = %e, "dist supervisor: start failed");
        let now = Instant::now();
        if self.over_intensity(now) {
            return Err(Reason::Shutdown);
        }
        let failures = self.backoff.get(id).map_or(0, |b| b.failures);
        let wait = super::start_backoff(failures);
        self.backoff.insert(
            id.clone(),
            Backoff {
                at: now + wait,
                failures: failures + 1,
            },
        );
        Ok(())
    }

    /// Records a restart or failed start; true if that is one too many.
    fn over_intensity(&mut self, now: Instant) -> bool {
        let over = super::over_intensity(
            &mut self.history,
            now,
            self.config.intensity,
            self.config.period,
        );
        if over {
            tracing::error!(sup = %self.config.name, "dist supervisor: reached the restart intensity");
        }
        over
    }

    fn on_exit(&mut self, exit: Exit) -> Result<(), Reason> {
        if exit.from == self.parent {
            return Err(exit.reason);
        }
        let Some(id) = self.by_pid.get(&exit.from).cloned() else {
            return Ok(());
        };
        self.forget(exit.from);
        self.dirty = true;
        if self.config.restart.restarts_after(&exit.reason) {
            tracing::warn!(sup = %self.config.name, id = %id, reason = %exit.reason, "dist supervisor: child exited, restarting");
            if self.over_intensity(Instant::now()) {
                return Err(Reason::Shutdown);
            }
        } else if self.children.live(&id).is_some() {
            let t = self.children.write(&id, Term::Nil, true);
            self.broadcast(vec![t]);
        }
        Ok(())
    }

    /// Our instance `child` lost a clash.
    async fn lost(&mut self, child: Pid) {
        if self.by_pid.contains_key(&child) {
            self.forget(child);
            crate::otp::supervisor::shutdown_child_with(
                child,
                self.config.shutdown,
                Reason::ShutdownWith(NAME_CONFLICT.into()),
            )
            .await;
            self.dirty = true;
        }
    }

    async fn on_term(&mut self, t: &Term) -> Result<(), Reason> {
        match gen_protocol::classify(t) {
            Incoming::Call { from, request } => {
                let request = request.clone();
                let reply = self.on_call(&request).await?;
                gen_protocol::reply(&from, reply);
                return Ok(());
            }
            Incoming::Cast(_) | Incoming::System { .. } | Incoming::Malformed => return Ok(()),
            Incoming::Other => {}
        }
        match Peer::parse(t) {
            Some(Peer::Entries(entries)) => {
                let mut changed = false;
                for e in entries {
                    if let Some((id, e)) = Entry::parse(e) {
                        changed |= self.children.merge(id, e);
                    }
                }
                self.dirty |= changed;
            }
            Some(Peer::Missing(id)) => {
                let id = id.clone();
                self.on_missing(&id).await;
            }
            Some(Peer::Moved(id)) => {
                // Its old instance has stopped: no back-off for it here.
                self.backoff.remove(id);
                self.dirty = true;
            }
            None => {}
        }
        Ok(())
    }

    async fn on_call(&mut self, request: &Term) -> Result<Term, Reason> {
        let reply = match request.as_tuple() {
            Some([Term::Atom(op), id, args]) if op.as_str() == "start_child" => {
                return self.call_start(id, args).await;
            }
            Some([Term::Atom(op), id]) if op.as_str() == "terminate_child" => {
                if self.children.live(id).is_some() {
                    let t = self.children.write(id, Term::Nil, true);
                    self.broadcast(vec![t]);
                    if let Some(pid) = self.running.get(id).copied() {
                        self.forget(pid);
                        crate::otp::supervisor::shutdown_child(pid, self.config.shutdown).await;
                    }
                    atom("ok")
                } else {
                    error(atom("not_found"))
                }
            }
            _ if request
                .as_atom()
                .is_some_and(|a| a.as_str() == "which_children") =>
            {
                Term::List(
                    self.children
                        .entries
                        .iter()
                        .filter(|(_, e)| !e.removed)
                        .map(|(id, _)| {
                            let pid = global::whereis_name(&self.name_of(id))
                                .map_or(Term::Atom(Atom::UNDEFINED), Term::Pid);
                            Term::Tuple(vec![id.clone(), pid])
                        })
                        .collect(),
                )
            }
            _ if request.as_atom().is_some_and(|a| a.as_str() == "members") => {
                Term::List(self.current_view().into_iter().map(Term::Atom).collect())
            }
            _ => error(atom("badarg")),
        };
        Ok(reply)
    }

    /// `{start_child, Id, Args}`: started here if the child is placed
    /// here; else `{owner, Node}`, for the caller to ask that node.
    async fn call_start(&mut self, id: &Term, args: &Term) -> Result<Term, Reason> {
        self.refresh_view();
        let placed = self.placed_on(id);
        if placed != Some(dist::this_node()) {
            return Ok(match placed {
                Some(node) => Term::Tuple(vec![atom("owner"), Term::Atom(node)]),
                None => error(atom("no_members")),
            });
        }
        if let Some(pid) = self
            .running
            .get(id)
            .copied()
            .or_else(|| self.children.live(id).and_then(|_| self.live_holder(id)))
        {
            return Ok(error(Term::Tuple(vec![
                atom("already_started"),
                Term::Pid(pid),
            ])));
        }
        match self.start_here(id, args).await {
            Ok(pid) => {
                let t = self.children.write(id, args.clone(), false);
                self.broadcast(vec![t]);
                Ok(ok(Term::Pid(pid)))
            }
            Err(Error::NameTaken(_)) => Ok(error(atom("already_started"))),
            Err(Error::Exited(reason)) => Ok(error(reason.to_term())),
            Err(e) => Ok(error(Reason::other(e.to_string()).to_term())),
        }
    }
}

/// A handle on a [`DistSupervisor`] by name, for calls from any process
/// on a node that runs a member (or through the member of another node,
/// [`DistSupervisorRef::via`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistSupervisorRef {
    name: Atom,
    via: Option<Atom>,
}

impl DistSupervisorRef {
    /// The supervisor `name`, through this node's member.
    pub fn new(name: Atom) -> DistSupervisorRef {
        DistSupervisorRef { name, via: None }
    }

    /// Through the member on `node` instead.
    pub fn via(mut self, node: Atom) -> DistSupervisorRef {
        self.via = Some(node);
        self
    }

    /// The supervisor's name.
    pub fn name(&self) -> Atom {
        self.name
    }

    /// The cluster-wide name of child `id`: `{Name, Id}`.
    pub fn child_name(&self, id: &Term) -> Term {
        child_name(self.name, id)
    }

    /// The instance of child `id`, wherever it runs.
    pub fn whereis(&self, id: &Term) -> Option<Pid> {
        global::whereis_name(&self.child_name(id))
    }

    fn dest(&self, node: Option<Atom>) -> Dest {
        match node.or(self.via) {
            Some(node) => Dest::Remote {
                name: self.name,
                node,
            },
            None => Dest::Name(self.name),
        }
    }

    async fn call(&self, node: Option<Atom>, request: Term) -> Result<Term, SupervisorError> {
        gen_protocol::call(&self.dest(node), request, Some(CALL_TIMEOUT))
            .await
            .map_err(SupervisorError::Runtime)
    }

    /// Starts child `id` with `args` on the node the placement gives, and
    /// returns its pid.
    ///
    /// # Errors
    /// [`SupervisorError::AlreadyStarted`] if the id runs;
    /// [`SupervisorError::StartFailed`] with the start function's error
    /// (the child is not kept); [`SupervisorError::Runtime`] if no member
    /// could be reached (after following the placement up to four
    /// times).
    pub async fn start_child(&self, id: Term, args: Term) -> Result<Pid, SupervisorError> {
        let cid: ChildId = id.to_string().into();
        let request = Term::Tuple(vec![atom("start_child"), id, args]);
        let mut node = None;
        let mut last = None;
        for _ in 0..4 {
            let reply = match self.call(node, request.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    // The member we were sent to is gone: ask ours again.
                    last = Some(e);
                    node = None;
                    continue;
                }
            };
            match reply.as_tuple() {
                Some([Term::Atom(tag), Term::Pid(pid)]) if tag.as_str() == "ok" => {
                    return Ok(*pid);
                }
                Some([Term::Atom(tag), Term::Atom(n)]) if tag.as_str() == "owner" => {
                    node = Some(*n);
                }
                Some([Term::Atom(tag), why]) if tag.as_str() == "error" => {
                    return Err(match why.as_tuple() {
                        Some([Term::Atom(t), Term::Pid(pid)])
                            if t.as_str() == "already_started" =>
                        {
                            SupervisorError::AlreadyStarted(cid, *pid)
                        }
                        _ => SupervisorError::StartFailed {
                            id: cid,
                            cause: Error::Exited(Reason::from_term(why.clone())),
                        },
                    });
                }
                _ => {
                    return Err(SupervisorError::Runtime(Error::Config(format!(
                        "unexpected reply {reply}"
                    ))));
                }
            }
        }
        Err(last.unwrap_or(SupervisorError::Runtime(Error::Timeout)))
    }

    /// Removes child `id` from the cluster and stops it; returns once it
    /// has stopped (or 30 s passed).
    ///
    /// # Errors
    /// [`SupervisorError::NotFound`] if no child has this id;
    /// [`SupervisorError::Runtime`] if the member cannot be reached.
    pub async fn terminate_child(&self, id: &Term) -> Result<(), SupervisorError> {
        let instance = self.whereis(id);
        let mark = crate::mark();
        let mon = instance.map(crate::monitor);
        let reply = self
            .call(None, Term::Tuple(vec![atom("terminate_child"), id.clone()]))
            .await;
        let wait = |mon: Option<Ref>| async move {
            if let Some(mon) = mon {
                let down = crate::receive_if(move |d: &Down| d.monitor == mon)
                    .after_mark(mark)
                    .timeout(CALL_TIMEOUT)
                    .await;
                if down.is_none() {
                    crate::demonitor_flush(mon);
                }
            }
        };
        match reply {
            Ok(t) if t.is_atom(Atom::OK) => {
                wait(mon).await;
                Ok(())
            }
            other => {
                if let Some(mon) = mon {
                    crate::demonitor_flush(mon);
                }
                match other {
                    Ok(_) => Err(SupervisorError::NotFound(id.to_string().into())),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Every child of the cluster-wide set, with its instance where one is
    /// registered.
    ///
    /// # Errors
    /// [`SupervisorError::Runtime`] if the member cannot be reached.
    pub async fn which_children(&self) -> Result<Vec<(Term, Option<Pid>)>, SupervisorError> {
        let reply = self
            .call(None, atom("which_children"))
            .await?
            .into_vec()
            .unwrap_or_default();
        Ok(reply
            .iter()
            .filter_map(|t| match t.as_tuple()? {
                [id, pid] => Some((id.clone(), pid.as_pid())),
                _ => None,
            })
            .collect())
    }

    /// The member's view: the nodes that run a member and are connected,
    /// its own included.
    ///
    /// # Errors
    /// [`SupervisorError::Runtime`] if the member cannot be reached.
    pub async fn members(&self) -> Result<Vec<Atom>, SupervisorError> {
        let reply = self.call(None, atom("members")).await?;
        Ok(reply
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter_map(Term::as_atom)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<Atom> {
        (0..n)
            .map(|i| Atom::new(&format!("n{i}@h")).unwrap())
            .collect()
    }

    #[test]
    fn rendezvous_moves_only_what_it_must() {
        let five = nodes(5);
        let four = &five[..4];
        let ids: Vec<Term> = (0..2000).map(Term::Int).collect();
        let mut moved = 0;
        let mut per_node = HashMap::new();
        for id in &ids {
            let before = rendezvous(id, four).unwrap();
            let after = rendezvous(id, &five).unwrap();
            *per_node.entry(after).or_insert(0) += 1;
            if before != after {
                assert_eq!(after, five[4], "an id moved between old nodes");
                moved += 1;
            }
            // Removing a node moves only its ids.
            let without: Vec<Atom> = five.iter().copied().filter(|n| *n != five[1]).collect();
            let left = rendezvous(id, &without).unwrap();
            if after != five[1] {
                assert_eq!(left, after);
            }
        }
        // About a fifth moves to the new node; every node gets a fair share.
        assert!((250..550).contains(&moved), "moved {moved} of 2000");
        for (n, c) in per_node {
            assert!((300..500).contains(&c), "{n} has {c} of 2000");
        }
    }

    #[test]
    fn rendezvous_does_not_depend_on_the_order_of_nodes() {
        let mut n = nodes(4);
        let id = Term::tuple(vec![Term::atom("job").unwrap(), Term::Int(3)]);
        let a = rendezvous(&id, &n);
        n.reverse();
        assert_eq!(rendezvous(&id, &n), a);
    }

    fn entry(version: u64, by: &str, removed: bool) -> Entry {
        Entry {
            args: Term::Int(version as i64),
            removed,
            version,
            by: Atom::new(by).unwrap(),
        }
    }

    #[test]
    fn merging_keeps_the_newer_entry_in_any_order() {
        let ops = [
            (Term::Int(1), entry(5, "a@h", false)),
            (Term::Int(1), entry(7, "b@h", true)),
            (Term::Int(1), entry(7, "a@h", false)),
            (Term::Int(2), entry(3, "c@h", false)),
        ];
        let mut forward = Children::default();
        for (id, e) in ops.iter().cloned() {
            forward.merge(id, e);
        }
        let mut backward = Children::default();
        for (id, e) in ops.iter().rev().cloned() {
            backward.merge(id, e);
        }
        assert_eq!(forward, backward);
        assert!(
            forward.live(&Term::Int(1)).is_none(),
            "b@h's tombstone wins the tie"
        );
        assert_eq!(forward.clock, 7);
        // Merging again changes nothing.
        let again = forward.clone();
        for (id, e) in ops.iter().cloned() {
            assert!(!forward.merge(id, e));
        }
        assert_eq!(forward, again);
    }

    #[test]
    fn a_write_is_newer_than_everything_seen() {
        let mut c = Children::default();
        c.merge(Term::Int(1), entry(u64::MAX / 4, "z@h", true));
        let t = c.write(&Term::Int(1), Term::Nil, false);
        let (_, e) = Entry::parse(&t).unwrap();
        assert!(e.version > u64::MAX / 4);
        assert!(c.live(&Term::Int(1)).is_some());
        let wire = c.to_term();
        let parsed: Vec<_> = wire
            .as_list()
            .unwrap()
            .iter()
            .map(|t| Entry::parse(t).unwrap())
            .collect();
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn a_member_needs_a_process_global_and_pg() {
        let rt = crate::Runtime::new().unwrap();
        let sup = DistSupervisor::new(Atom::new("w").unwrap(), |_, _| async {
            Ok(crate::spawn_link(async {}))
        });
        let r = rt.block_on(sup.start_link()).unwrap();
        assert!(matches!(r, Err(Error::UnknownName(_))), "{r:?}");
    }
}
