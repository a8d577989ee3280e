//! A child that runs on exactly one node of the cluster.
//!
//! Every node that may run the service runs a *manager* (put
//! [`Singleton::child_spec`] under a supervisor on each node). The managers
//! agree through [`global`]: at most one instance holds the global name,
//! and every manager watches it.
//!
//! # How the managers decide
//! - **Starting.** A manager that finds the name free waits for the syncs
//!   of `global` in progress (up to 2 s: a node that is joining may hold
//!   an instance), then takes the global
//!   lock `{beamish_singleton, Name}` on every connected node, looks again,
//!   and only then starts the child (linked to itself) and registers it.
//!   Two managers that try at the same instant are serialised by that
//!   lock: the second finds the name taken and watches the first.
//! - **Failover.** Managers monitor the registered instance. When it is
//!   lost with its node (`noconnection`: the node died, or was cut off and
//!   its ticks timed out), the managers try again in the order of their
//!   rank: the first eligible node at once, the next one
//!   [`rank_delay`](Singleton::rank_delay) later, and so on, so that one
//!   node normally wins without contention. Eligible nodes are those of
//!   [`Singleton::nodes`] (in that order) or, by default, every node that
//!   runs a manager (found through the `pg` group `{beamish_singleton,
//!   Name}` when `pg` runs, else every connected node), in name order.
//! - **Restarts.** When the instance ends on its own node, its manager
//!   restarts it there if the child's [`Restart`](crate::otp::Restart)
//!   type says so, within the manager's restart intensity; the other
//!   managers give it [`check_every`](Singleton::check_every) before they
//!   try. A child that ended and is not to be restarted stays ended: the
//!   managers that saw it end do not start it again.
//! - **Takeover** (with [`Singleton::takeover`] and a node list): the best
//!   node of a better priority group than the instance's asks the
//!   instance's manager to hand over; that manager runs the
//!   [`handoff`](Singleton::handoff) function, stops its instance with
//!   `{shutdown, takeover}` and answers, and the new node starts its own
//!   with [`Start::Takeover`]. The old node agrees only if its own list
//!   ranks the new node before itself: nodes configured with different
//!   lists do not pass the service back and forth (it stays where it runs,
//!   and the refused node does not ask again for that instance).
//! - **Healing.** When two partitions that each started an instance join,
//!   `global` finds the clash. The instance on the node that ranks first
//!   is kept (the earlier node of [`Singleton::nodes`], else the smaller
//!   node name); the manager of the other sees that its child no longer
//!   holds the name and stops it with the reason `{shutdown,
//!   singleton_conflict}` ([`SINGLETON_CONFLICT`]) and its shutdown rule, so
//!   a child that traps exits runs `terminate` with that reason. Callers
//!   that address the service by its global name follow. (The rule is the
//!   registration's resolve method, run by the node that resolves the
//!   clash; where it cannot run — an Erlang node, or an instance on
//!   another node of that partition — `global` keeps the other
//!   registration, as OTP does when a resolve call fails: one instance
//!   survives either way.)
//! - **Giving up.** When the first start on a node fails,
//!   [`Singleton::start_link`] returns that error (as a supervisor's start
//!   does). Later, a child that fails to start, or crashes, more than the
//!   intensity allows ends the manager with the last error; its supervisor
//!   decides what follows. Failed starts back off (doubling from 100 ms,
//!   at most 5 s), so a child whose start fails everywhere causes no storm.
//!
//! Every manager checks, each [`check_every`](Singleton::check_every), that
//! what it believes matches the name table, so a missed event costs one
//! period, not the service.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dist::{self, Atom, Term};
use crate::global::{self, Resolve, Rng};
use crate::otp::{ChildKind, ChildSpec, Shutdown};
use crate::{Down, Error, Exit, Pid, Reason, Ref};

/// The detail of the reason a losing instance is stopped with after a
/// partition heals: `{shutdown, singleton_conflict}`.
pub const SINGLETON_CONFLICT: &str = "singleton_conflict";

/// A service that runs on one node of the cluster at a time; see the
/// [module documentation](self) for how the nodes agree.
///
/// ```no_run
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::cluster::Singleton;
/// use beamish::dist::Term;
/// use beamish::otp::{ChildSpec, Strategy, Supervisor, SupervisorFlags};
/// # beamish::dist::start(beamish::dist::NodeConfig::new("a@127.0.0.1", "c")).await.unwrap();
/// # beamish::global::start().await.unwrap();
/// let worker = ChildSpec::worker("ticker", || async {
///     Ok(beamish::spawn_link(async { beamish::sleep(std::time::Duration::MAX).await }))
/// });
/// let singleton = Singleton::new(Term::atom("ticker").unwrap(), worker);
/// Supervisor::start_link(SupervisorFlags::default(), vec![singleton.child_spec()])
///     .await
///     .unwrap();
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Singleton {
    name: Term,
    spec: ChildSpec,
    start: StartWith,
    /// Priority groups, best first (`None`: every node, by name).
    nodes: Option<Vec<Vec<Atom>>>,
    intensity: u32,
    period: Duration,
    check: Duration,
    rank_delay: Duration,
    failover_delay: Duration,
    takeover: bool,
    handoff: Option<HandoffFn>,
}

/// How an instance comes to run on a node, given to a start function set
/// with [`Singleton::start_with`] (OTP's `StartType` of a distributed
/// application: `normal`, `{failover, Node}`, `{takeover, Node}`).
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// The first start in the cluster, or a restart after the instance
    /// ended on its own node.
    Normal,
    /// The instance's node went down; `from` is that node.
    Failover {
        /// The node it ran on.
        from: Atom,
    },
    /// A node of higher priority took the service over from `from`;
    /// `state` is what the [`handoff`](Singleton::handoff) function
    /// returned there.
    Takeover {
        /// The node it ran on.
        from: Atom,
        /// The state handed over, if any.
        state: Option<Term>,
    },
}

/// A start function that knows how the instance starts.
pub type StartWith = Arc<dyn Fn(Start) -> crate::otp::supervisor::StartFuture + Send + Sync>;

/// What runs on the old node in a takeover, before its instance stops:
/// given the instance, the state to hand to the new one.
pub type HandoffFn = Arc<
    dyn Fn(Pid) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Term>> + Send>>
        + Send
        + Sync,
>;

impl Singleton {
    /// The service `spec`, registered globally as `name`. Restart
    /// intensity 3 in 5 s; checks every 500 ms; 100 ms between ranks.
    pub fn new(name: Term, spec: ChildSpec) -> Singleton {
        let plain = spec.start.clone();
        Singleton {
            name,
            spec,
            start: Arc::new(move |_| plain()),
            nodes: None,
            intensity: 3,
            period: Duration::from_secs(5),
            check: Duration::from_millis(500),
            rank_delay: Duration::from_millis(100),
            failover_delay: Duration::ZERO,
            takeover: false,
            handoff: None,
        }
    }

    /// Only these nodes run the service, preferred in this order (for
    /// failover, takeover and which instance survives a heal).
    pub fn nodes(self, nodes: impl IntoIterator<Item = Atom>) -> Singleton {
        self.priority(nodes.into_iter().map(|n| vec![n]))
    }

    /// Only these nodes run the service, by priority groups, best first:
    /// the nodes of one group have the same priority (OTP's `[N1, {N2,
    /// N3}]`), and among them the smaller name goes first.
    pub fn priority(mut self, groups: impl IntoIterator<Item = Vec<Atom>>) -> Singleton {
        let mut seen = Vec::new();
        let groups = groups
            .into_iter()
            .map(|mut g| {
                g.retain(|n| !seen.contains(n));
                g.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                g.dedup();
                seen.extend(g.iter().copied());
                g
            })
            .filter(|g| !g.is_empty())
            .collect();
        self.nodes = Some(groups);
        self
    }

    /// The start function, told how the instance starts (the spec's own
    /// start is not used then; its id, restart and shutdown still are).
    pub fn start_with<F, Fut>(mut self, start: F) -> Singleton
    where
        F: Fn(Start) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Pid, Error>> + Send + 'static,
    {
        self.start = Arc::new(move |how| Box::pin(start(how)));
        self
    }

    /// How long the nodes wait for a node that went down to come back
    /// before they fail its instance over (OTP's failover timeout of a
    /// distributed application; default zero).
    pub fn failover_delay(mut self, delay: Duration) -> Singleton {
        self.failover_delay = delay;
        self
    }

    /// With a node list: when a node of a better priority group than the
    /// instance's comes up, it takes the service over (OTP's takeover).
    pub fn takeover(mut self, on: bool) -> Singleton {
        self.takeover = on;
        self
    }

    /// What the old node's manager runs in a takeover before it stops its
    /// instance: given the instance, the state to hand to the new one
    /// (which gets it in [`Start::Takeover`]). A call to the instance is
    /// the usual way.
    pub fn handoff<F, Fut>(mut self, handoff: F) -> Singleton
    where
        F: Fn(Pid) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Option<Term>> + Send + 'static,
    {
        self.handoff = Some(Arc::new(move |pid| Box::pin(handoff(pid))));
        self
    }

    /// At most `intensity` restarts (and failed starts) in `period` before
    /// the manager gives up.
    pub fn intensity(mut self, intensity: u32, period: Duration) -> Singleton {
        self.intensity = intensity;
        self.period = period;
        self
    }

    /// How often the manager compares its view with the name table (at
    /// least 10 ms).
    pub fn check_every(mut self, period: Duration) -> Singleton {
        self.check = period.max(Duration::from_millis(10));
        self
    }

    /// How much later than the node ranked before it a node tries to take
    /// over.
    pub fn rank_delay(mut self, delay: Duration) -> Singleton {
        self.rank_delay = delay;
        self
    }

    /// The global name.
    pub fn name(&self) -> &Term {
        &self.name
    }

    /// The instance that runs now, anywhere in the cluster.
    pub fn whereis(&self) -> Option<Pid> {
        global::whereis_name(&self.name)
    }

    /// A child spec of the manager, with the id of the service's spec: a
    /// supervisor-kind child (stopping it stops the instance it runs).
    pub fn child_spec(self) -> ChildSpec {
        let id = self.spec.id.clone();
        let me = Arc::new(self);
        ChildSpec::new(id, move || {
            let me = (*me).clone();
            async move { me.start_link().await }
        })
        .kind(ChildKind::Supervisor)
        .shutdown(Shutdown::Infinity)
    }

    /// Starts a manager linked to the caller and returns its pid once it
    /// has settled: it runs the instance, or watches one that runs
    /// elsewhere.
    ///
    /// # Errors
    /// [`Error::NotInProcess`]; [`Error::UnknownName`] if
    /// [`global`](crate::global::start) is not started; the error of the
    /// child's start when the first start here fails.
    pub async fn start_link(self) -> Result<Pid, Error> {
        self.spawn(true).await
    }

    /// [`Singleton::start_link`] without the link: the manager runs until
    /// it is stopped (an exit signal) or gives up.
    ///
    /// # Errors
    /// As [`Singleton::start_link`].
    pub async fn start(self) -> Result<Pid, Error> {
        self.spawn(false).await
    }

    async fn spawn(self, link: bool) -> Result<Pid, Error> {
        let caller = crate::try_self_pid().ok_or(Error::NotInProcess)?;
        crate::whereis(global::SERVER).ok_or_else(|| Error::UnknownName(global::SERVER.into()))?;
        let id = Ref::new();
        let mark = crate::mark();
        let mut opts = crate::SpawnOptions::new().trap_exit(true);
        if link {
            opts = opts.link();
        }
        let parent = link.then_some(caller);
        let spawned =
            opts.spawn(async move { Manager::new(self, caller, parent, id).run().await })?;
        let pid = spawned.pid;
        let mon = crate::monitor(pid);
        match crate::otp::answer_or_down(mark, mon, move |s: &Settled| s.id == id).await {
            Ok(Settled { result: Ok(()), .. }) => Ok(pid),
            Ok(Settled { result: Err(e), .. }) => {
                // The manager ends; its exit signal must not take the caller.
                if link {
                    crate::unlink(pid);
                }
                Err(e)
            }
            Err(_) => Err(Error::NoProc(pid)),
        }
    }
}

/// The first decision of a manager, for [`Singleton::start_link`].
struct Settled {
    id: Ref,
    result: Result<(), Error>,
}

/// The longest a manager waits for global's syncs in progress before it
/// starts an instance.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// How long a takeover waits for the old node's manager to hand over.
const HANDOFF_WAIT: Duration = Duration::from_secs(10);

/// A lock a manager holds on `nodes`.
struct Lock {
    resource: Term,
    requester: Term,
    nodes: Vec<Atom>,
}

impl Lock {
    async fn release(self) {
        let _ = global::del_lock(self.resource, self.requester, &self.nodes).await;
    }
}

/// From a resolve method run here: our instance lost a clash.
struct Lost {
    child: Pid,
}

/// The manager's periodic check.
struct Tick;

enum State {
    /// Our child holds the name.
    Running { child: Pid },
    /// Another instance holds it; we monitor it.
    Watching { pid: Pid, mon: Ref },
    /// Nobody holds it (as far as we know); try at `at`.
    Vacant { at: Instant },
    /// The instance ended and is not to be restarted.
    Ended,
}

use super::atom;

/// The messages managers send each other (terms: they cross nodes).
///
/// - `{beamish_singleton_takeover, From, Ref, Instance}`: hand `Instance`
///   over to the manager `From`;
/// - `{beamish_singleton_handoff, Ref, {ok, none} | {ok, {state, S}} |
///   not_running}`: the answer, sent once the instance has stopped.
enum Peer {
    Takeover {
        from: Pid,
        id: Term,
        instance: Pid,
    },
    Handoff {
        id: Term,
        state: Result<Option<Term>, ()>,
    },
}

impl Peer {
    fn parse(t: &Term) -> Option<Peer> {
        let items = t.as_tuple()?;
        match items {
            [Term::Atom(tag), Term::Pid(from), id, Term::Pid(instance)]
                if tag.as_str() == "beamish_singleton_takeover" =>
            {
                Some(Peer::Takeover {
                    from: *from,
                    id: id.clone(),
                    instance: *instance,
                })
            }
            [Term::Atom(tag), id, answer] if tag.as_str() == "beamish_singleton_handoff" => {
                let state = match answer.as_tuple() {
                    Some([Term::Atom(ok), Term::Atom(none)])
                        if ok.as_str() == "ok" && none.as_str() == "none" =>
                    {
                        Ok(None)
                    }
                    Some([Term::Atom(ok), st]) if ok.as_str() == "ok" => match st.as_tuple() {
                        Some([Term::Atom(tag), s]) if tag.as_str() == "state" => {
                            Ok(Some(s.clone()))
                        }
                        _ => Err(()),
                    },
                    _ => Err(()),
                };
                Some(Peer::Handoff {
                    id: id.clone(),
                    state,
                })
            }
            _ => None,
        }
    }
}

struct Manager {
    config: Singleton,
    /// Who gets the first decision.
    starter: Pid,
    /// The linked parent, whose exit ends the manager.
    parent: Option<Pid>,
    /// How the next start here comes about.
    next_start: Start,
    /// The id of the first decision, until [`Singleton::start_link`] got it.
    settle: Option<Ref>,
    state: State,
    /// Restarts and failed starts within the period.
    history: VecDeque<Instant>,
    /// Failed starts in a row (for the back-off).
    failures: u32,
    rng: Rng,
    /// Whether this manager joined the `pg` group of the service.
    in_group: bool,
    /// Since when acquisition has waited for global's syncs.
    vacant_since: Option<Instant>,
    /// An instance whose node refused to hand it over to us (its list
    /// does not rank us first): not asked again.
    refused: Option<Pid>,
}

impl Manager {
    fn new(config: Singleton, starter: Pid, parent: Option<Pid>, settle: Ref) -> Manager {
        Manager {
            config,
            starter,
            parent,
            next_start: Start::Normal,
            settle: Some(settle),
            state: State::Vacant { at: Instant::now() },
            history: VecDeque::new(),
            failures: 0,
            rng: Rng::new(),
            in_group: false,
            vacant_since: None,
            refused: None,
        }
    }

    fn group(&self) -> Term {
        Term::Tuple(vec![atom("beamish_singleton"), self.config.name.clone()])
    }

    /// Tells the starter the first decision (once).
    fn settled(&mut self, result: Result<(), Error>) {
        if let Some(id) = self.settle.take() {
            self.starter.send(Settled { id, result });
        }
    }

    /// Tries again after `delay`.
    fn retry_after(&mut self, delay: Duration) {
        self.state = State::Vacant {
            at: Instant::now() + delay,
        };
    }

    /// Stops our child by the spec's shutdown rule, with `reason`.
    async fn stop_child(&self, child: Pid, reason: Reason) {
        crate::otp::supervisor::shutdown_child_with(child, self.config.spec.shutdown, reason).await;
    }

    /// Takes the lock `{beamish_singleton, Name}` on every connected node;
    /// `None` if another manager holds it.
    async fn lock(&self) -> Option<Lock> {
        let lock = Lock {
            resource: self.group(),
            requester: Term::Pid(crate::self_pid()),
            nodes: global::all_nodes(),
        };
        global::set_lock(
            lock.resource.clone(),
            lock.requester.clone(),
            &lock.nodes,
            Some(0),
        )
        .await
        .unwrap_or(false)
        .then_some(lock)
    }

    async fn run(mut self) {
        self.in_group = crate::pg::join(self.group(), crate::self_pid())
            .await
            .is_ok();
        let tick = self.config.check;
        crate::send_after(crate::self_pid(), tick, Tick);
        loop {
            if let State::Vacant { at } = self.state
                && at <= Instant::now()
                && let Err(reason) = self.acquire().await
            {
                self.finish(reason).await;
                return;
            }
            // Settled: running or watching an instance, or not a node for
            // this service.
            if self.settle.is_some()
                && (!matches!(self.state, State::Vacant { .. }) || self.rank().is_none())
            {
                self.settled(Ok(()));
            }
            let wait = match self.state {
                State::Vacant { at } => at.saturating_duration_since(Instant::now()),
                _ => Duration::MAX,
            };
            let Some(msg) = crate::receive_match(|m| {
                m.is::<Exit>()
                    || m.is::<Down>()
                    || m.is::<Tick>()
                    || m.is::<Lost>()
                    || m.downcast_ref::<Term>()
                        .is_some_and(|t| matches!(Peer::parse(t), Some(Peer::Takeover { .. })))
            })
            .timeout(wait)
            .await
            else {
                continue;
            };
            let msg = match msg.downcast::<Exit>() {
                Ok(exit) => {
                    if let Err(reason) = self.on_exit(exit).await {
                        self.finish(reason).await;
                        return;
                    }
                    continue;
                }
                Err(m) => m,
            };
            let msg = match msg.downcast::<Down>() {
                Ok(down) => {
                    self.on_down(down);
                    continue;
                }
                Err(m) => m,
            };
            let msg = match msg.downcast::<Lost>() {
                Ok(lost) => {
                    if matches!(self.state, State::Running { child } if child == lost.child) {
                        self.lose().await;
                    }
                    continue;
                }
                Err(m) => m,
            };
            let msg = match msg.downcast::<Term>() {
                Ok(t) => {
                    if let Some(Peer::Takeover { from, id, instance }) = Peer::parse(&t) {
                        self.hand_over(from, id, instance).await;
                    }
                    continue;
                }
                Err(m) => m,
            };
            if msg.is::<Tick>() {
                crate::send_after(crate::self_pid(), tick, Tick);
                self.check().await;
            }
        }
    }

    /// Ends the manager: the child (if any) is stopped first.
    async fn finish(&mut self, reason: Reason) {
        if let State::Running { child } = self.state {
            self.stop_child(child, Reason::Shutdown).await;
        }
        self.settled(Err(Error::Exited(reason.clone())));
        crate::exit::<()>(reason).await;
    }

    /// The priority group of `node` (`usize::MAX`: not listed; 0 for
    /// every node without a list).
    fn priority_of(nodes: Option<&[Vec<Atom>]>, node: Atom) -> usize {
        match nodes {
            Some(groups) => groups
                .iter()
                .position(|g| g.contains(&node))
                .unwrap_or(usize::MAX),
            None => 0,
        }
    }

    /// What orders nodes for the service: the priority group, then the
    /// name.
    fn rank_key(nodes: Option<&[Vec<Atom>]>, node: Atom) -> (usize, &'static str) {
        (Self::priority_of(nodes, node), node.as_str())
    }

    /// The nodes that may run the service and are up, best first.
    fn candidates(&self) -> Vec<Atom> {
        let me = dist::this_node();
        let up = dist::nodes();
        let mut v: Vec<Atom> = match &self.config.nodes {
            Some(groups) => groups.iter().flatten().copied().collect(),
            None if self.in_group => crate::pg::get_members(&self.group())
                .into_iter()
                .map(Pid::node)
                .chain(std::iter::once(me))
                .collect(),
            None => up.iter().copied().chain(std::iter::once(me)).collect(),
        };
        v.retain(|n| *n == me || up.contains(n));
        let nodes = self.config.nodes.as_deref();
        v.sort_by_key(|n| Self::rank_key(nodes, *n));
        v.dedup();
        v
    }

    /// This node's place among the candidates (`None`: not eligible).
    fn rank(&self) -> Option<usize> {
        let me = dist::this_node();
        self.candidates().iter().position(|n| *n == me)
    }

    /// Whether `a` ranks before `b` for the service: the priority groups,
    /// else the name order.
    fn prefers(nodes: Option<&[Vec<Atom>]>, a: Atom, b: Atom) -> bool {
        Self::rank_key(nodes, a) < Self::rank_key(nodes, b)
    }

    /// Tries to become the instance's node (see the module docs).
    async fn acquire(&mut self) -> Result<(), Reason> {
        let name = self.config.name.clone();
        if let Some(pid) = global::whereis_name(&name) {
            match self.live_holder() {
                Some(pid) => self.watch(pid),
                // A stale entry (its node went down and global has not
                // dropped it yet): look again soon.
                None => {
                    tracing::debug!(name = %name, %pid, "singleton: stale registration");
                    self.retry_after(Duration::from_millis(10));
                }
            }
            return Ok(());
        }
        if self.rank().is_none() {
            // Not a node for this service: keep looking.
            self.retry_after(self.config.check);
            return Ok(());
        }
        if !self.synced().await {
            self.retry_after(Duration::from_millis(10));
            return Ok(());
        }
        let Some(lock) = self.lock().await else {
            // Another manager is at it.
            let ms = 20 + self.rng.below(100) as u64;
            self.retry_after(Duration::from_millis(ms));
            return Ok(());
        };
        self.vacant_since = None;
        let how = std::mem::replace(&mut self.next_start, Start::Normal);
        let outcome = self.start_here(&name, how).await;
        lock.release().await;
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => self.start_failed(e).await,
        }
    }

    /// While global syncs with a node, that node's instance is not in our
    /// table yet: false while such a sync goes on, for at most
    /// [`SYNC_WAIT`] (a node whose sync never ends must not keep the
    /// service down).
    async fn synced(&mut self) -> bool {
        match global::info().await {
            Ok(info) if !info.syncing.is_empty() => {
                let since = *self.vacant_since.get_or_insert_with(Instant::now);
                since.elapsed() >= SYNC_WAIT
            }
            _ => true,
        }
    }

    /// A start here failed: back off, or give up past the intensity.
    async fn start_failed(&mut self, e: Error) -> Result<(), Reason> {
        let name = self.config.name.clone();
        tracing::warn!(name = %name, error = %e, "singleton: start failed");
        let now = Instant::now();
        if self.over_intensity(now) {
            return Err(Reason::other(format!(
                "singleton {name}: too many failed starts, last: {e}"
            )));
        }
        if self.settle.is_some() {
            // The first start failed: the caller of start_link gets the
            // error (as a supervisor's start does).
            self.settled(Err(e));
            if let Some(parent) = self.parent {
                crate::unlink(parent);
            }
            crate::exit::<()>(Reason::Shutdown).await;
        }
        let wait = super::start_backoff(self.failures);
        self.failures += 1;
        self.state = State::Vacant { at: now + wait };
        Ok(())
    }

    /// Under the lock: start the child here and register it, unless an
    /// instance appeared meanwhile.
    async fn start_here(&mut self, name: &Term, how: Start) -> Result<(), Error> {
        if global::whereis_name(name).is_some() {
            // Registered while we took the lock: acquire looks again.
            self.retry_after(Duration::ZERO);
            return Ok(());
        }
        let child = (self.config.start)(how.clone()).await?;
        let nodes = self.config.nodes.clone();
        let manager = crate::self_pid();
        let resolve = Resolve::custom(move |_, p1, p2| {
            let keep = if Self::prefers(nodes.as_deref(), p1.node(), p2.node()) {
                p1
            } else {
                p2
            };
            for p in [p1, p2] {
                if p != keep && !p.is_remote() {
                    manager.send(Lost { child: p });
                }
            }
            Some(keep)
        });
        match global::register_name_with(name.clone(), child, resolve).await {
            Ok(()) => {
                self.failures = 0;
                self.state = State::Running { child };
                tracing::info!(name = %name, pid = %child, start = ?how, "singleton: started here");
                Ok(())
            }
            Err(e) => {
                self.stop_child(child, Reason::Shutdown).await;
                match e {
                    Error::NameTaken(_) => {
                        self.next_start = how;
                        self.retry_after(Duration::from_millis(10));
                        Ok(())
                    }
                    e => Err(e),
                }
            }
        }
    }

    /// The registered instance, if it is alive as far as we can tell.
    fn live_holder(&self) -> Option<Pid> {
        super::live_global(&self.config.name)
    }

    fn watch(&mut self, pid: Pid) {
        if let State::Watching { pid: old, mon } = self.state {
            if old == pid {
                return;
            }
            crate::demonitor_flush(mon);
        }
        self.state = State::Watching {
            pid,
            mon: crate::monitor(pid),
        };
    }

    /// Records a restart or failed start; true if that is one too many.
    fn over_intensity(&mut self, now: Instant) -> bool {
        super::over_intensity(
            &mut self.history,
            now,
            self.config.intensity,
            self.config.period,
        )
    }

    async fn on_exit(&mut self, exit: Exit) -> Result<(), Reason> {
        if Some(exit.from) == self.parent {
            return Err(exit.reason);
        }
        let State::Running { child } = self.state else {
            return Ok(());
        };
        if exit.from != child {
            return Ok(());
        }
        let name = self.config.name.clone();
        if !self.config.spec.restart.restarts_after(&exit.reason) {
            tracing::info!(name = %name, reason = %exit.reason, "singleton: ended, not restarted");
            self.state = State::Ended;
            return Ok(());
        }
        tracing::warn!(name = %name, reason = %exit.reason, "singleton: instance exited, restarting");
        if self.over_intensity(Instant::now()) {
            return Err(Reason::other(format!(
                "singleton {name}: reached the restart intensity, last exit: {}",
                exit.reason
            )));
        }
        self.next_start = Start::Normal;
        self.retry_after(Duration::ZERO);
        Ok(())
    }

    fn on_down(&mut self, down: Down) {
        let State::Watching { pid, mon } = self.state else {
            return;
        };
        if down.monitor != mon {
            return;
        }
        let step = self.config.rank_delay;
        let rank = u32::try_from(self.rank().unwrap_or(0)).unwrap_or(u32::MAX);
        let at = if down.reason == Reason::NoConnection {
            // Its node is gone: after the failover delay (in which the node
            // may come back), take over in rank order.
            self.next_start = Start::Failover { from: pid.node() };
            Instant::now() + self.config.failover_delay + step.saturating_mul(rank)
        } else if self.config.spec.restart.restarts_after(&down.reason) {
            // Its manager restarts it; step in only if it does not.
            self.next_start = Start::Normal;
            Instant::now() + self.config.check + step.saturating_mul(rank)
        } else {
            self.state = State::Ended;
            return;
        };
        self.state = State::Vacant { at };
    }

    /// The periodic comparison with the name table, and the takeover.
    async fn check(&mut self) {
        match self.state {
            State::Running { child } => {
                if global::whereis_name(&self.config.name) != Some(child) {
                    self.lose().await;
                }
            }
            State::Watching { pid, mon } => {
                if global::whereis_name(&self.config.name) != Some(pid) {
                    crate::demonitor_flush(mon);
                    self.retry_after(self.config.rank_delay);
                } else if self.should_take_over(pid) {
                    self.take_over(pid).await;
                }
            }
            State::Ended => {
                if let Some(pid) = self.live_holder() {
                    self.watch(pid);
                }
            }
            State::Vacant { .. } => {}
        }
    }

    /// Whether this node should take the instance `pid` over: takeover is
    /// on, this node is the best candidate, and of a better priority group
    /// than the instance's node.
    fn should_take_over(&self, pid: Pid) -> bool {
        let nodes = self.config.nodes.as_deref();
        self.config.takeover
            && nodes.is_some()
            && self.refused != Some(pid)
            && self.rank() == Some(0)
            && Self::priority_of(nodes, dist::this_node()) < Self::priority_of(nodes, pid.node())
    }

    /// The takeover, on the new node: under the lock, the old node's
    /// manager hands the state over and stops its instance; then ours
    /// starts with [`Start::Takeover`].
    async fn take_over(&mut self, pid: Pid) {
        let from = pid.node();
        let Some(old) = crate::pg::get_members(&self.group())
            .into_iter()
            .find(|m| m.node() == from)
        else {
            return;
        };
        if !self.synced().await {
            return;
        }
        let Some(lock) = self.lock().await else {
            return;
        };
        tracing::info!(name = %self.config.name, %from, "singleton: taking over");
        let id = Term::Ref(crate::dist::ExtRef::from(Ref::new()));
        let mon = crate::monitor(old);
        old.send(Term::Tuple(vec![
            atom("beamish_singleton_takeover"),
            Term::Pid(crate::self_pid()),
            id.clone(),
            Term::Pid(pid),
        ]));
        let answer = crate::receive_match(|m| {
            m.downcast_ref::<Term>().is_some_and(
                |t| matches!(Peer::parse(t), Some(Peer::Handoff { id: i, .. }) if i == id),
            ) || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == mon)
        })
        .timeout(HANDOFF_WAIT)
        .await;
        crate::demonitor_flush(mon);
        let state = match answer.map(|m| m.downcast::<Term>()) {
            Some(Ok(t)) => match Peer::parse(&t) {
                Some(Peer::Handoff { state: Ok(s), .. }) => Some(s),
                _ => None,
            },
            _ => None,
        };
        if let Some(state) = state {
            // The old instance has stopped; its name goes when global sees
            // it end.
            let deadline = Instant::now() + HANDOFF_WAIT;
            while global::whereis_name(&self.config.name) == Some(pid) && Instant::now() < deadline
            {
                crate::sleep(Duration::from_millis(5)).await;
            }
            if let State::Watching { mon, .. } = self.state {
                crate::demonitor_flush(mon);
            }
            let name = self.config.name.clone();
            let how = Start::Takeover { from, state };
            self.retry_after(Duration::ZERO);
            if let Err(e) = self.start_here(&name, how).await {
                tracing::warn!(name = %name, error = %e, "singleton: start after takeover failed");
                self.retry_after(self.config.rank_delay);
            }
        } else {
            tracing::info!(name = %self.config.name, %from, "singleton: takeover refused or timed out");
            self.refused = Some(pid);
        }
        lock.release().await;
    }

    /// The takeover, on the old node: unless our list ranks us before the
    /// asking node, hand the state over, stop the instance with
    /// `{shutdown, takeover}`, answer.
    async fn hand_over(&mut self, from: Pid, id: Term, instance: Pid) {
        let nodes = self.config.nodes.as_deref();
        let ranks_before_us = Self::prefers(nodes, from.node(), dist::this_node());
        let answer = match self.state {
            // A node our list does not rank before us does not take over
            // (nodes whose lists differ would pass the service back and
            // forth).
            State::Running { child } if child == instance && ranks_before_us => {
                let state = match &self.config.handoff {
                    Some(f) => f(child).await,
                    None => None,
                };
                self.stop_child(child, Reason::ShutdownWith("takeover".into()))
                    .await;
                tracing::info!(name = %self.config.name, to = %from.node(), "singleton: handed over");
                self.retry_after(self.config.check);
                match state {
                    Some(s) => Term::Tuple(vec![atom("ok"), Term::Tuple(vec![atom("state"), s])]),
                    None => Term::Tuple(vec![atom("ok"), atom("none")]),
                }
            }
            _ => atom("not_running"),
        };
        from.send(Term::Tuple(vec![
            atom("beamish_singleton_handoff"),
            id,
            answer,
        ]));
    }

    /// Our child no longer holds the name: another instance won a clash
    /// (or the name was taken from it). It is stopped, and we watch the
    /// winner.
    async fn lose(&mut self) {
        let State::Running { child } = self.state else {
            return;
        };
        let winner = global::whereis_name(&self.config.name);
        tracing::info!(name = %self.config.name, pid = %child, "singleton: lost the name, stopping");
        self.stop_child(child, Reason::ShutdownWith(SINGLETON_CONFLICT.into()))
            .await;
        match winner {
            Some(pid) if pid != child => self.watch(pid),
            _ => self.retry_after(self.config.rank_delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom::new(s).unwrap()
    }

    #[test]
    fn the_node_list_decides_before_the_name_order() {
        let (a, b, c) = (atom("a@h"), atom("b@h"), atom("c@h"));
        assert!(Manager::prefers(None, a, b));
        assert!(!Manager::prefers(None, c, b));
        let list = [vec![c], vec![a]];
        assert!(Manager::prefers(Some(&list[..]), c, a));
        assert!(
            Manager::prefers(Some(&list[..]), a, b),
            "listed before unlisted"
        );
        assert!(
            Manager::prefers(Some(&list[..]), b, atom("d@h")),
            "unlisted: by name"
        );
        // One group: equal priority, the name decides.
        let equal = [vec![c, b]];
        assert!(Manager::prefers(Some(&equal[..]), b, c));
        assert_eq!(Manager::priority_of(Some(&list[..]), a), 1);
        assert_eq!(Manager::priority_of(Some(&list[..]), b), usize::MAX);
    }

    #[test]
    fn priority_groups_drop_repeated_nodes() {
        let (a, b, c) = (atom("a@h"), atom("b@h"), atom("c@h"));
        let spec = ChildSpec::worker("w", || async { Ok(crate::spawn_link(async {})) });
        let s = Singleton::new(Term::atom("w").unwrap(), spec).priority([
            vec![c],
            vec![b, a, c],
            vec![],
            vec![a],
        ]);
        assert_eq!(s.nodes, Some(vec![vec![c], vec![a, b]]));
    }

    #[test]
    fn a_manager_needs_a_process_and_global() {
        let rt = crate::Runtime::new().unwrap();
        let spec = ChildSpec::worker("w", || async { Ok(crate::spawn_link(async {})) });
        let s = Singleton::new(Term::atom("w").unwrap(), spec);
        let r = rt.block_on(s.clone().start_link()).unwrap();
        assert!(matches!(r, Err(Error::UnknownName(_))), "{r:?}");
    }
}
