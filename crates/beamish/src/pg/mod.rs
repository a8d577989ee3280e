//! Process groups that interoperate with OTP's `pg` (kernel, OTP 23 and
//! later; tested against OTP 25 and 26): a beamish node is a full member of
//! an Erlang cluster's groups, and beamish-only clusters use the same code.
//!
//! A **group** is any [`Term`]; its members are processes of any node of
//! the cluster. Groups live in **scopes**, independent overlay networks
//! named by atoms (the default scope is `pg`). A process joins and leaves
//! only on its own node; every node keeps a full copy of every group of the
//! scopes it runs, so [`get_members`] reads a local table and never waits.
//! Membership is eventually consistent, as in OTP: two nodes can briefly
//! disagree, and a node only sees the members of the nodes it is connected
//! to.
//!
//! # The protocol, as implemented
//!
//! Each scope is a process registered locally under the scope's name on
//! every node that runs it. Scope processes talk to the process of the same
//! name on other nodes with OTP's messages:
//!
//! 1. **Start.** The scope subscribes to node events (`monitor_nodes`) and
//!    sends `{discover, Self}` to `{Scope, Node}` for every connected node.
//! 2. **Node up.** On `nodeup`, it sends `{discover, Self}` to
//!    `{Scope, Node}`. A node that runs no such scope drops the message,
//!    and it never becomes a peer.
//! 3. **Discover.** On `{discover, Peer}` (or OTP 26's
//!    `{discover, Peer, Version}`, which OTP 26 accepts for later
//!    releases) it answers `Peer` with the cast
//!    `{'$gen_cast', {sync, Self, [{Group, [Pid]}]}}`, listing every local
//!    member. A peer it did not know is monitored and gets
//!    `{discover, Self}` back, so both sides end up with each other's
//!    members whoever discovered first.
//! 4. **Sync.** `{sync, Peer, Groups}` replaces everything known of the
//!    peer's members (a sync from a process not yet a peer makes it one, as
//!    in OTP).
//! 5. **Join and leave.** A local join is serialised through the scope
//!    process, which monitors the member and broadcasts
//!    `{join, Self, Group, PidOrPids}` to its peers; a leave broadcasts
//!    `{leave, Self, PidOrPids, [Group]}`. `PidOrPids` is a pid for one
//!    process and a list for several; both are accepted.
//! 6. **Exits.** When a local member ends (its monitor fires), it leaves
//!    every group it was in and the peers get one
//!    `{leave, Self, Pid, Groups}`. No node monitors another node's
//!    members: their own scope reports them.
//! 7. **Node down.** The monitor of a peer scope fires (`noconnection`
//!    when the connection is lost, or the reason the peer scope ended): all
//!    members it reported leave. `nodedown` itself is ignored.
//!
//! A join or leave from a process that is not a known peer, a member pid
//! that is not on the sender's node, and anything that is not one of the
//! messages above (a wrong arity, a member that is not a pid, ...) are
//! ignored with a debug log line; the scope never crashes on them. (OTP
//! trusts its peers further: a peer could name another node's pids.)
//!
//! A process may join a group several times and is then listed as often;
//! it must leave as often (or end). Lists come newest first, in no
//! promised order.
//!
//! # Watching
//!
//! [`monitor_scope`] and [`monitor`] (OTP 25.1's `pg:monitor_scope/1` and
//! `pg:monitor/2`) return a subscription [`Ref`] with the current state;
//! then every change arrives as an [`Update`] message (OTP's
//! `{Ref, join | leave, Group, Pids}`), until [`demonitor`] or the
//! watcher's end.
//!
//! # Starting
//!
//! The application starts the scopes it uses, after
//! [`dist::start`](crate::dist::start) (as kernel starts `pg` when
//! configured): [`start`] for the default scope, [`start_scope`] for
//! others. A scope started before the node is distributed sees no other
//! node. Erlang nodes must start the same scope (`pg:start_link()` or
//! kernel's `start_pg`).
//!
//! ```
//! use beamish::dist::Term;
//!
//! let rt = beamish::Runtime::new().unwrap();
//! rt.block_on(async {
//!     beamish::pg::start().unwrap();
//!     let group = Term::atom("workers").unwrap();
//!     let worker = beamish::spawn(async { beamish::sleep(std::time::Duration::from_secs(60)).await });
//!     beamish::pg::join(group.clone(), worker).await.unwrap();
//!     assert_eq!(beamish::pg::get_members(&group), vec![worker]);
//!     assert_eq!(beamish::pg::leave(group.clone(), worker).await, Ok(true));
//!     assert!(beamish::pg::get_members(&group).is_empty());
//!     worker.exit(beamish::Reason::Kill);
//! }).unwrap();
//! ```

mod server;
mod state;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use self::server::{Answer, Body, Op, Request, Scopes};
use self::state::Table;
use crate::dist::{Atom, Term};
use crate::{Down, Error, Pid, Ref};

/// A change to a watched group, sent to the watcher: OTP's
/// `{Ref, join, Group, Pids}` or `{Ref, leave, Group, Pids}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The subscription ([`monitor`] or [`monitor_scope`] returned it).
    pub monitor: Ref,
    /// Whether `pids` joined or left.
    pub event: Event,
    /// The group.
    pub group: Term,
    /// The processes that joined or left (once per join or leave).
    pub pids: Vec<Pid>,
}

/// What an [`Update`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The processes joined the group.
    Join,
    /// The processes left the group (or ended, or their node went down).
    Leave,
}

/// A scope: an independent set of groups, named by an atom. The free
/// functions of this module use the default scope, `pg`
/// ([`Scope::default`]).
///
/// ```
/// use beamish::dist::{Atom, Term};
/// use beamish::pg::Scope;
///
/// let rt = beamish::Runtime::new().unwrap();
/// rt.block_on(async {
///     let scope = beamish::pg::start_scope(Atom::new("chat").unwrap()).unwrap();
///     let room = Term::atom("lobby").unwrap();
///     let me = beamish::self_pid();
///     scope.join(room.clone(), me).await.unwrap();
///     assert_eq!(scope.get_local_members(&room), vec![me]);
///     assert_eq!(scope.which_groups(), vec![room]);
///     assert!(beamish::pg::which_groups().is_empty(), "other scopes are apart");
/// }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    name: Atom,
}

impl Default for Scope {
    /// The default scope, `pg`.
    fn default() -> Scope {
        // The atom only fails to exist when the atom table is full; the
        // empty atom then names a scope nobody can start.
        Scope {
            name: wire::words().map_or(Atom::EMPTY, |w| w.pg),
        }
    }
}

/// This runtime's scopes (`None` outside a scheduler thread).
fn scopes() -> Option<Arc<Scopes>> {
    crate::runtime::context::core()?
        .shared
        .extension::<Scopes>()
}

/// Starts the default scope `pg` on this node (OTP's `pg:start_link/0`,
/// without the link). See [`start_scope`].
///
/// ```
/// let rt = beamish::Runtime::new().unwrap();
/// rt.block_on(async {
///     let scope = beamish::pg::start().unwrap();
///     assert_eq!(scope, beamish::pg::Scope::default());
///     assert!(beamish::pg::start().is_err(), "one scope process per name");
/// }).unwrap();
/// ```
///
/// # Errors
/// As [`start_scope`].
pub fn start() -> Result<Scope, Error> {
    start_scope(Scope::default().name)
}

/// Starts the scope `name` on this node: a process registered as `name`
/// that runs the protocol (OTP's `pg:start(Scope)`). Call it in a process,
/// after [`dist::start`](crate::dist::start) when the node is distributed.
/// Link to [`Scope::pid`] to tie the scope to a supervisor or owner.
///
/// ```
/// use beamish::dist::Atom;
/// let rt = beamish::Runtime::new().unwrap();
/// rt.block_on(async {
///     let scope = beamish::pg::start_scope(Atom::new("jobs").unwrap()).unwrap();
///     assert_eq!(scope.name().as_str(), "jobs");
///     assert_eq!(beamish::whereis("jobs"), scope.pid());
/// }).unwrap();
/// ```
///
/// # Errors
/// [`Error::NameTaken`] when a process holds the name already (a scope
/// that runs, or another process); [`Error::NotInProcess`] outside a
/// process; [`Error::Config`] when the atom table is full.
pub fn start_scope(name: Atom) -> Result<Scope, Error> {
    if crate::try_self_pid().is_none() {
        return Err(Error::NotInProcess);
    }
    let words = wire::words().ok_or_else(|| Error::Config("the atom table is full".into()))?;
    let scopes = scopes().ok_or(Error::NotInProcess)?;
    let table = Arc::new(Table::default());
    let body = server::run(name, words, table.clone(), scopes.clone());
    let spawned = crate::SpawnOptions::new().name(name.as_str()).spawn(body)?;
    // Should the process end before this line (it was killed at once),
    // its listing stays, but readers ignore the listing of a dead process
    // and the next start of the scope replaces it.
    scopes.insert(name, spawned.pid, table);
    Ok(Scope { name })
}

impl Scope {
    /// The scope named `name` (it need not run yet).
    pub fn new(name: Atom) -> Scope {
        Scope { name }
    }

    /// The scope's name.
    pub fn name(self) -> Atom {
        self.name
    }

    /// The scope's process on this node, if it runs.
    pub fn pid(self) -> Option<Pid> {
        crate::whereis(self.name.as_str())
    }

    fn table(self) -> Option<Arc<Table>> {
        scopes()?.table(self.name)
    }

    /// Sends `op` to the scope process and waits for its answer.
    async fn ask(self, op: Op) -> Result<Body, Error> {
        let me = crate::try_self_pid().ok_or(Error::NotInProcess)?;
        let scope = self
            .pid()
            .ok_or_else(|| Error::UnknownName(self.name.as_str().into()))?;
        let tag = Ref::new();
        let mark = crate::mark();
        let down = crate::monitor(scope);
        scope.send(Request { from: me, tag, op });
        let msg = crate::receive_match(move |m| {
            m.downcast_ref::<Answer>().is_some_and(|a| a.tag == tag)
                || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == down)
        })
        .after_mark(mark)
        .await;
        match msg.downcast::<Answer>() {
            Ok(answer) => {
                crate::demonitor_flush(down);
                Ok(answer.body)
            }
            Err(msg) => match msg.downcast::<Down>() {
                Ok(d) => Err(Error::Exited(d.reason)),
                Err(_) => Err(Error::NoProc(scope)),
            },
        }
    }

    /// `pid` joins `group` (OTP's `pg:join(Scope, Group, Pid)`).
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let g = beamish::dist::Term::from(42);
    /// scope.join(g.clone(), beamish::self_pid()).await.unwrap();
    /// scope.join(g.clone(), beamish::self_pid()).await.unwrap();
    /// assert_eq!(scope.get_members(&g).len(), 2, "joined twice, listed twice");
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::NotLocal`] for a pid of another node (only local processes
    /// join); [`Error::UnknownName`] when the scope does not run;
    /// [`Error::Exited`] when it ends during the request;
    /// [`Error::NotInProcess`] outside a process.
    pub async fn join(self, group: Term, pid: Pid) -> Result<(), Error> {
        self.join_many(group, &[pid]).await
    }

    /// Every pid of `pids` joins `group` (a pid listed twice joins twice).
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let (a, b) = (beamish::spawn(std::future::pending()), beamish::spawn(std::future::pending()));
    /// let g = beamish::dist::Term::atom("pair").unwrap();
    /// scope.join_many(g.clone(), &[a, b]).await.unwrap();
    /// let mut members = scope.get_members(&g);
    /// members.sort_by_key(|p| p.to_bits());
    /// let mut expected = vec![a, b];
    /// expected.sort_by_key(|p| p.to_bits());
    /// assert_eq!(members, expected);
    /// # a.exit(beamish::Reason::Kill); b.exit(beamish::Reason::Kill);
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Scope::join`]; nothing joins when one pid is not local.
    pub async fn join_many(self, group: Term, pids: &[Pid]) -> Result<(), Error> {
        ensure_local(pids)?;
        match self
            .ask(Op::Join {
                group,
                pids: pids.to_vec(),
            })
            .await?
        {
            Body::Done => Ok(()),
            _ => Err(Error::NoProc(crate::self_pid())),
        }
    }

    /// `pid` leaves `group` once (OTP's `pg:leave/3`): `Ok(false)` when it
    /// was not in it (OTP's `not_joined`).
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let g = beamish::dist::Term::atom("g").unwrap();
    /// let me = beamish::self_pid();
    /// assert_eq!(scope.leave(g.clone(), me).await, Ok(false));
    /// scope.join(g.clone(), me).await.unwrap();
    /// assert_eq!(scope.leave(g.clone(), me).await, Ok(true));
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Scope::join`].
    pub async fn leave(self, group: Term, pid: Pid) -> Result<bool, Error> {
        self.leave_many(group, &[pid]).await
    }

    /// Every pid of `pids` leaves `group` once; `Ok(false)` when none of
    /// them was in it.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let g = beamish::dist::Term::atom("g").unwrap();
    /// let me = beamish::self_pid();
    /// scope.join_many(g.clone(), &[me, me]).await.unwrap();
    /// assert_eq!(scope.leave_many(g.clone(), &[me, me]).await, Ok(true));
    /// assert!(scope.get_members(&g).is_empty());
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Scope::join`].
    pub async fn leave_many(self, group: Term, pids: &[Pid]) -> Result<bool, Error> {
        ensure_local(pids)?;
        match self
            .ask(Op::Leave {
                group,
                pids: pids.to_vec(),
            })
            .await?
        {
            Body::Found(left) => Ok(left),
            _ => Err(Error::NoProc(crate::self_pid())),
        }
    }

    /// Every member of `group`, of every node (empty when the scope does
    /// not run, or outside the runtime). Reads this node's copy; never
    /// waits.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// assert!(scope.get_members(&beamish::dist::Term::atom("none").unwrap()).is_empty());
    /// # }).unwrap();
    /// ```
    pub fn get_members(self, group: &Term) -> Vec<Pid> {
        self.table().map(|t| t.members(group)).unwrap_or_default()
    }

    /// The members of `group` that are processes of this node.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let g = beamish::dist::Term::atom("g").unwrap();
    /// scope.join(g.clone(), beamish::self_pid()).await.unwrap();
    /// assert_eq!(scope.get_local_members(&g), vec![beamish::self_pid()]);
    /// # }).unwrap();
    /// ```
    pub fn get_local_members(self, group: &Term) -> Vec<Pid> {
        self.table()
            .map(|t| t.local_members(group))
            .unwrap_or_default()
    }

    /// Every group with at least one member (no specific order).
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// assert!(scope.which_groups().is_empty());
    /// # }).unwrap();
    /// ```
    pub fn which_groups(self) -> Vec<Term> {
        self.table().map(|t| t.groups()).unwrap_or_default()
    }

    /// Every group with at least one member on this node.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let g = beamish::dist::Term::atom("g").unwrap();
    /// scope.join(g.clone(), beamish::self_pid()).await.unwrap();
    /// assert_eq!(scope.which_local_groups(), vec![g]);
    /// # }).unwrap();
    /// ```
    pub fn which_local_groups(self) -> Vec<Term> {
        self.table().map(|t| t.local_groups()).unwrap_or_default()
    }

    /// Subscribes the caller to every change of the scope: returns the
    /// subscription and every group with its members; then each change
    /// arrives as an [`Update`] carrying the subscription.
    ///
    /// ```
    /// use beamish::pg::{Event, Update};
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let (sub, groups) = scope.monitor_scope().await.unwrap();
    /// assert!(groups.is_empty());
    /// let g = beamish::dist::Term::atom("g").unwrap();
    /// scope.join(g.clone(), beamish::self_pid()).await.unwrap();
    /// let u = beamish::receive::<Update>().await;
    /// assert_eq!((u.monitor, u.event, u.group), (sub, Event::Join, g));
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Scope::join`].
    pub async fn monitor_scope(self) -> Result<(Ref, HashMap<Term, Vec<Pid>>), Error> {
        match self.ask(Op::MonitorScope).await? {
            Body::Scope(r, groups) => Ok((r, groups.into_iter().collect())),
            _ => Err(Error::NoProc(crate::self_pid())),
        }
    }

    /// Subscribes the caller to the changes of `group`: returns the
    /// subscription and the members; then each change arrives as an
    /// [`Update`].
    ///
    /// ```
    /// use beamish::pg::{Event, Update};
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let g = beamish::dist::Term::atom("g").unwrap();
    /// let (sub, members) = scope.monitor(g.clone()).await.unwrap();
    /// assert!(members.is_empty());
    /// let p = beamish::spawn(async {});
    /// scope.join(g.clone(), p).await.unwrap();
    /// let joined = beamish::receive::<Update>().await;
    /// assert_eq!((joined.event, joined.pids), (Event::Join, vec![p]));
    /// let left = beamish::receive::<Update>().await; // p ends at once
    /// assert_eq!((left.monitor, left.event), (sub, Event::Leave));
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Scope::join`].
    pub async fn monitor(self, group: Term) -> Result<(Ref, Vec<Pid>), Error> {
        match self.ask(Op::MonitorGroup(group)).await? {
            Body::Group(r, members) => Ok((r, members)),
            _ => Err(Error::NoProc(crate::self_pid())),
        }
    }

    /// Ends a subscription and drops its [`Update`]s already in the
    /// caller's mailbox; `Ok(false)` when there was no such subscription.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let scope = beamish::pg::start().unwrap();
    /// let (sub, _) = scope.monitor_scope().await.unwrap();
    /// assert_eq!(scope.demonitor(sub).await, Ok(true));
    /// assert_eq!(scope.demonitor(sub).await, Ok(false));
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Scope::join`].
    pub async fn demonitor(self, subscription: Ref) -> Result<bool, Error> {
        let found = match self.ask(Op::Demonitor(subscription)).await? {
            Body::Found(found) => found,
            _ => return Err(Error::NoProc(crate::self_pid())),
        };
        if found {
            while crate::receive_if::<Update, _>(|u| u.monitor == subscription)
                .timeout(std::time::Duration::ZERO)
                .await
                .is_some()
            {}
        }
        Ok(found)
    }
}

/// OTP's `ensure_local`: only processes of this node join or leave.
fn ensure_local(pids: &[Pid]) -> Result<(), Error> {
    match pids.iter().find(|p| p.is_remote()) {
        Some(p) => Err(Error::NotLocal(*p)),
        None => Ok(()),
    }
}

/// [`Scope::join`] in the default scope (OTP's `pg:join/2`).
///
/// # Errors
/// As [`Scope::join`].
pub async fn join(group: Term, pid: Pid) -> Result<(), Error> {
    Scope::default().join(group, pid).await
}

/// [`Scope::join_many`] in the default scope.
///
/// # Errors
/// As [`Scope::join`].
pub async fn join_many(group: Term, pids: &[Pid]) -> Result<(), Error> {
    Scope::default().join_many(group, pids).await
}

/// [`Scope::leave`] in the default scope (OTP's `pg:leave/2`).
///
/// # Errors
/// As [`Scope::join`].
pub async fn leave(group: Term, pid: Pid) -> Result<bool, Error> {
    Scope::default().leave(group, pid).await
}

/// [`Scope::leave_many`] in the default scope.
///
/// # Errors
/// As [`Scope::join`].
pub async fn leave_many(group: Term, pids: &[Pid]) -> Result<bool, Error> {
    Scope::default().leave_many(group, pids).await
}

/// [`Scope::get_members`] in the default scope (OTP's `pg:get_members/1`).
pub fn get_members(group: &Term) -> Vec<Pid> {
    Scope::default().get_members(group)
}

/// [`Scope::get_local_members`] in the default scope.
pub fn get_local_members(group: &Term) -> Vec<Pid> {
    Scope::default().get_local_members(group)
}

/// [`Scope::which_groups`] in the default scope.
pub fn which_groups() -> Vec<Term> {
    Scope::default().which_groups()
}

/// [`Scope::which_local_groups`] in the default scope.
pub fn which_local_groups() -> Vec<Term> {
    Scope::default().which_local_groups()
}

/// [`Scope::monitor_scope`] in the default scope.
///
/// # Errors
/// As [`Scope::join`].
pub async fn monitor_scope() -> Result<(Ref, HashMap<Term, Vec<Pid>>), Error> {
    Scope::default().monitor_scope().await
}

/// [`Scope::monitor`] in the default scope.
///
/// # Errors
/// As [`Scope::join`].
pub async fn monitor(group: Term) -> Result<(Ref, Vec<Pid>), Error> {
    Scope::default().monitor(group).await
}

/// [`Scope::demonitor`] in the default scope.
///
/// # Errors
/// As [`Scope::join`].
pub async fn demonitor(subscription: Ref) -> Result<bool, Error> {
    Scope::default().demonitor(subscription).await
}
