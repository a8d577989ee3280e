//! DynamicSupervisor: a supervisor that starts with no children and adds
//! them on demand, like Elixir's `DynamicSupervisor` (OTP's
//! `simple_one_for_one`).
//!
//! Children are started with [`DynamicSupervisorRef::start_child`], each
//! from its own [`ChildSpec`] (arguments are bound in the start closure),
//! and stopped by pid. The strategy is one-for-one: a child that ends is
//! restarted alone, by its spec's [`Restart`](super::supervisor::Restart)
//! type, within the same restart intensity rules as [`Supervisor`]
//! (exceeded: every child is stopped and the supervisor ends with
//! `shutdown`).
//!
//! It is built for many children: they are kept in a map keyed by pid, so
//! starting, stopping or restarting one costs O(1) whatever the count, and
//! [`DynamicSupervisorRef::count_children`] is O(1). When the supervisor
//! itself stops, it stops all children *at once* (as OTP does for dynamic
//! children: there is no order among them): it sends every exit signal,
//! then collects the `Down`s, sending `kill` to those still alive when
//! their shutdown time runs out.
//!
//! [`Supervisor`]: super::supervisor::Supervisor
//!
//! ```
//! use beamish::otp::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags};
//!
//! beamish::run(async {
//!     let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
//!     for n in 0..3u32 {
//!         let spec = ChildSpec::worker("conn", move || async move {
//!             Ok(beamish::spawn_link(async move {
//!                 let _connection_number = n;
//!                 beamish::receive::<()>().await
//!             }))
//!         });
//!         sup.start_child(spec).await.unwrap();
//!     }
//!     assert_eq!(sup.count_children().await.unwrap().active, 3);
//!     sup.stop().await.unwrap();
//! }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::gen_server::{self, Flow, GenServer, Reply, ReplyTo, ServerRef, StartOptions};
use super::supervisor::{
    AutoShutdown, ChildCounts, ChildInfo, ChildKind, ChildSpec, RestartHistory, Shutdown,
    SupervisorError, check_period, check_spec, report_exit, report_shutdown, shutdown_child,
    start_child_process,
};
use crate::observe::tree::{TreeKind, TreeQuery};
use crate::{Down, Error, Exit, Message, Pid, Reason, Ref};

/// A dynamic supervisor's configuration (Elixir's `DynamicSupervisor.init`
/// options).
///
/// ```
/// use std::time::Duration;
/// use beamish::otp::DynamicSupervisorFlags;
/// let flags = DynamicSupervisorFlags::default();
/// assert_eq!((flags.intensity, flags.period, flags.max_children), (3, Duration::from_secs(5), None));
/// let flags = flags.max_children(100).intensity(10).period(Duration::from_secs(1));
/// assert_eq!(flags.max_children, Some(100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DynamicSupervisorFlags {
    /// At most this many restarts within `period` (Elixir's `max_restarts`,
    /// default 3).
    pub intensity: u32,
    /// The window of the restart intensity (Elixir's `max_seconds`, default
    /// 5 s; must not be zero).
    pub period: Duration,
    /// At most this many children (`None`: no limit, the default).
    pub max_children: Option<usize>,
}

impl Default for DynamicSupervisorFlags {
    fn default() -> DynamicSupervisorFlags {
        DynamicSupervisorFlags {
            intensity: 3,
            period: Duration::from_secs(5),
            max_children: None,
        }
    }
}

impl DynamicSupervisorFlags {
    /// Sets the restart intensity.
    ///
    /// ```
    /// use beamish::otp::DynamicSupervisorFlags;
    /// assert_eq!(DynamicSupervisorFlags::default().intensity(1).intensity, 1);
    /// ```
    pub fn intensity(mut self, intensity: u32) -> DynamicSupervisorFlags {
        self.intensity = intensity;
        self
    }

    /// Sets the restart period.
    ///
    /// ```
    /// use std::time::Duration;
    /// use beamish::otp::DynamicSupervisorFlags;
    /// let flags = DynamicSupervisorFlags::default().period(Duration::from_secs(1));
    /// assert_eq!(flags.period, Duration::from_secs(1));
    /// ```
    pub fn period(mut self, period: Duration) -> DynamicSupervisorFlags {
        self.period = period;
        self
    }

    /// Limits the number of children.
    ///
    /// ```
    /// use beamish::otp::DynamicSupervisorFlags;
    /// assert_eq!(DynamicSupervisorFlags::default().max_children(5).max_children, Some(5));
    /// ```
    pub fn max_children(mut self, max: usize) -> DynamicSupervisorFlags {
        self.max_children = Some(max);
        self
    }
}

/// The entry point: [`DynamicSupervisor::start_link`].
///
/// ```
/// use beamish::otp::{DynamicSupervisor, DynamicSupervisorFlags, DynamicSupervisorRef};
/// beamish::run(async {
///     let sup = DynamicSupervisor::start_link_named("conns", DynamicSupervisorFlags::default())
///         .await
///         .unwrap();
///     assert_eq!(DynamicSupervisorRef::whereis("conns"), Some(sup));
///     sup.stop().await.unwrap();
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct DynamicSupervisor(());

impl DynamicSupervisor {
    /// Starts a dynamic supervisor, with no children, linked to the caller.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn start_link(
        flags: DynamicSupervisorFlags,
    ) -> Result<DynamicSupervisorRef, SupervisorError> {
        start(flags, None).await
    }

    /// As [`DynamicSupervisor::start_link`], registered under `name`.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn start_link_named(
        name: impl Into<Arc<str>>,
        flags: DynamicSupervisorFlags,
    ) -> Result<DynamicSupervisorRef, SupervisorError> {
        start(flags, Some(name.into())).await
    }
}

async fn start(
    flags: DynamicSupervisorFlags,
    name: Option<Arc<str>>,
) -> Result<DynamicSupervisorRef, SupervisorError> {
    check_period(flags.period)?;
    let server = DynServer {
        flags,
        children: FxHashMap::default(),
        restarting: FxHashMap::default(),
        restarts: FxHashMap::default(),
        next_token: 0,
        supervisors: 0,
        history: RestartHistory::new(flags.intensity, flags.period),
    };
    let mut options = StartOptions::new().link().trap_exit(true);
    if let Some(name) = name {
        options = options.name(name);
    }
    gen_server::start_with(server, options)
        .await
        .map(|s| DynamicSupervisorRef { pid: s.pid() })
        .map_err(SupervisorError::Runtime)
}

/// A handle on a running dynamic supervisor (a `Copy` pid). A dead
/// supervisor gives `Runtime(Error::NoProc(pid))` at once.
///
/// ```
/// use beamish::otp::{DynamicSupervisor, DynamicSupervisorFlags, DynamicSupervisorRef};
/// beamish::run(async {
///     let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
///     assert_eq!(DynamicSupervisorRef::from_pid(sup.pid()), sup);
///     sup.stop().await.unwrap();
/// }).unwrap();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DynamicSupervisorRef {
    pid: Pid,
}

impl fmt::Debug for DynamicSupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynamicSupervisorRef({})", self.pid)
    }
}

impl DynamicSupervisorRef {
    /// Treats `pid` as a dynamic supervisor.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{DynamicSupervisor, DynamicSupervisorFlags, DynamicSupervisorRef};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// assert_eq!(DynamicSupervisorRef::from_pid(sup.pid()).pid(), sup.pid());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub fn from_pid(pid: Pid) -> DynamicSupervisorRef {
        DynamicSupervisorRef { pid }
    }

    /// The dynamic supervisor registered under `name`.
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{DynamicSupervisor, DynamicSupervisorFlags, DynamicSupervisorRef};
    /// let sup = DynamicSupervisor::start_link_named("pool", DynamicSupervisorFlags::default()).await.unwrap();
    /// assert_eq!(DynamicSupervisorRef::whereis("pool"), Some(sup));
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub fn whereis(name: &str) -> Option<DynamicSupervisorRef> {
        crate::whereis(name).map(DynamicSupervisorRef::from_pid)
    }

    /// The supervisor's pid.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{DynamicSupervisor, DynamicSupervisorFlags};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// assert!(sup.pid().is_alive());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Starts a child from `spec` (its id only names it in reports and
    /// [`DynamicSupervisorRef::which_children`]; many children may share
    /// one). Errors: `MaxChildren`, `InvalidSpec` (a significant child),
    /// `StartFailed`.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// let greeting = String::from("hello");
    /// let spec = ChildSpec::worker("greeter", move || {
    ///     let greeting = greeting.clone();
    ///     async move { Ok(beamish::spawn_link(async move { let _ = greeting; beamish::receive::<()>().await })) }
    /// });
    /// let pid = sup.start_child(spec).await.unwrap();
    /// assert!(pid.is_alive());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        match self.call(Call::Start(spec)).await? {
            Answer::Pid(result) => result,
            _ => Err(unexpected()),
        }
    }

    /// Stops the child `pid` by its shutdown rule and forgets it. Error:
    /// `NotAChild(pid)`.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, SupervisorError};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let pid = sup.start_child(spec).await.unwrap();
    /// sup.terminate_child(pid).await.unwrap();
    /// assert_eq!(sup.terminate_child(pid).await, Err(SupervisorError::NotAChild(pid)));
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn terminate_child(&self, pid: Pid) -> Result<(), SupervisorError> {
        match self.call(Call::Terminate(pid)).await? {
            Answer::Done(result) => result,
            _ => Err(unexpected()),
        }
    }

    /// Every child (in no particular order); restarting children have no
    /// pid.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let pid = sup.start_child(spec).await.unwrap();
    /// assert_eq!(sup.which_children().await.unwrap()[0].pid, Some(pid));
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        match self.call(Call::Which).await? {
            Answer::Which(children) => Ok(children),
            _ => Err(unexpected()),
        }
    }

    /// Child counts: `specs` is every child, `active` those running (not
    /// restarting). O(1).
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildCounts, DynamicSupervisor, DynamicSupervisorFlags};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// assert_eq!(sup.count_children().await.unwrap(), ChildCounts::default());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        match self.call(Call::Count).await? {
            Answer::Count(counts) => Ok(counts),
            _ => Err(unexpected()),
        }
    }

    /// Stops the supervisor with reason `normal` (all children first) and
    /// waits until it has ended.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{DynamicSupervisor, DynamicSupervisorFlags};
    /// let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await.unwrap();
    /// sup.stop().await.unwrap();
    /// assert!(!sup.pid().is_alive());
    /// # }).unwrap();
    /// ```
    pub async fn stop(&self) -> Result<(), SupervisorError> {
        ServerRef::<DynServer>::from_pid(self.pid)
            .stop(Reason::Normal, Duration::MAX)
            .await
            .map_err(SupervisorError::Runtime)
    }

    async fn call(&self, call: Call) -> Result<Answer, SupervisorError> {
        ServerRef::<DynServer>::from_pid(self.pid)
            .call_timeout(call, Duration::MAX)
            .await
            .map_err(SupervisorError::Runtime)
    }
}

fn unexpected() -> SupervisorError {
    SupervisorError::Runtime(Error::Exited(Reason::other("unexpected supervisor reply")))
}

enum Call {
    Start(ChildSpec),
    Terminate(Pid),
    Which,
    Count,
}

enum Answer {
    Pid(Result<Pid, SupervisorError>),
    Done(Result<(), SupervisorError>),
    Which(Vec<ChildInfo>),
    Count(ChildCounts),
}

/// Supervisor → itself: retry the restart waiting under this token.
struct TryAgain(u64);

/// The dynamic supervisor's state.
struct DynServer {
    flags: DynamicSupervisorFlags,
    /// Running children.
    children: FxHashMap<Pid, ChildSpec>,
    /// Children whose restart failed, waiting for their `TryAgain`.
    restarting: FxHashMap<u64, (ChildSpec, u32)>,
    /// Restarts so far of running children restarted at least once.
    restarts: FxHashMap<Pid, u32>,
    /// The next `TryAgain` token.
    next_token: u64,
    /// Children of kind supervisor, in both maps (for O(1) counts).
    supervisors: usize,
    history: RestartHistory,
}

impl GenServer for DynServer {
    type Call = Call;
    type Reply = Answer;
    type Cast = std::convert::Infallible;

    async fn handle_call(&mut self, call: Call, _from: ReplyTo<Answer>) -> Reply<Answer> {
        Reply::reply(match call {
            Call::Start(spec) => Answer::Pid(self.start_new_child(spec).await),
            Call::Terminate(pid) => Answer::Done(self.terminate_child(pid).await),
            Call::Which => Answer::Which(self.which_children()),
            Call::Count => Answer::Count(self.count_children()),
        })
    }

    async fn handle_info(&mut self, msg: Message) -> Flow {
        let msg = match msg.downcast::<Exit>() {
            Ok(Exit { from, reason }) => return self.child_exited(from, reason).await,
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<TreeQuery>() {
            Ok(query) => {
                query.answer(TreeKind::DynamicSupervisor, self.which_children());
                return Flow::Ok;
            }
            Err(msg) => msg,
        };
        match msg.downcast::<TryAgain>() {
            Ok(TryAgain(token)) => match self.restarting.remove(&token) {
                Some((spec, restarts)) => {
                    self.forget(&spec);
                    self.restart(spec, restarts).await
                }
                None => Flow::Ok,
            },
            Err(msg) => {
                tracing::warn!(supervisor = %crate::self_pid(), message = msg.type_name(), "unexpected message");
                Flow::Ok
            }
        }
    }

    async fn terminate(&mut self, _reason: &Reason) {
        self.stop_all().await;
    }
}

impl DynServer {
    fn len(&self) -> usize {
        self.children.len() + self.restarting.len()
    }

    /// Counts a child added to either map.
    fn remember(&mut self, spec: &ChildSpec) {
        if spec.kind == ChildKind::Supervisor {
            self.supervisors += 1;
        }
    }

    /// Uncounts a child removed from either map.
    fn forget(&mut self, spec: &ChildSpec) {
        if spec.kind == ChildKind::Supervisor {
            self.supervisors -= 1;
        }
    }

    async fn start_new_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        check_spec(&spec, AutoShutdown::Never)?;
        if self.flags.max_children.is_some_and(|max| self.len() >= max) {
            return Err(SupervisorError::MaxChildren);
        }
        match start_child_process(&spec).await {
            Ok(pid) => {
                self.remember(&spec);
                self.children.insert(pid, spec);
                Ok(pid)
            }
            Err(cause) => Err(SupervisorError::StartFailed { id: spec.id, cause }),
        }
    }

    async fn terminate_child(&mut self, pid: Pid) -> Result<(), SupervisorError> {
        let spec = self
            .children
            .remove(&pid)
            .ok_or(SupervisorError::NotAChild(pid))?;
        self.forget(&spec);
        self.restarts.remove(&pid);
        let reason = shutdown_child(pid, spec.shutdown).await;
        report_shutdown(&spec, &reason);
        Ok(())
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        let running = self.children.iter().map(|(&pid, spec)| ChildInfo {
            id: spec.id.clone(),
            pid: Some(pid),
            kind: spec.kind,
            restarting: false,
            restarts: self.restarts.get(&pid).copied().unwrap_or(0),
        });
        let restarting = self.restarting.values().map(|(spec, restarts)| ChildInfo {
            id: spec.id.clone(),
            pid: None,
            kind: spec.kind,
            restarting: true,
            restarts: *restarts,
        });
        running.chain(restarting).collect()
    }

    fn count_children(&self) -> ChildCounts {
        ChildCounts {
            specs: self.len(),
            active: self.children.len(),
            supervisors: self.supervisors,
            workers: self.len() - self.supervisors,
        }
    }

    async fn child_exited(&mut self, pid: Pid, reason: Reason) -> Flow {
        let Some(spec) = self.children.remove(&pid) else {
            return Flow::Ok;
        };
        self.forget(&spec);
        let restarts = self.restarts.remove(&pid).unwrap_or(0);
        report_exit(&spec.id, pid, &reason);
        if spec.restart.restarts_after(&reason) {
            self.restart(spec, restarts).await
        } else {
            Flow::Ok
        }
    }

    /// Restarts a child that is in neither map, unless the restart
    /// intensity is exceeded: then the supervisor stops.
    async fn restart(&mut self, spec: ChildSpec, restarts: u32) -> Flow {
        if !self.history.add(Instant::now()) {
            tracing::error!(
                supervisor = %crate::self_pid(),
                child = &*spec.id,
                "reached max restart intensity, shutting down"
            );
            return Flow::Stop(Reason::Shutdown);
        }
        let started = start_child_process(&spec).await;
        self.remember(&spec);
        let restarts = restarts.saturating_add(1);
        match started {
            Ok(pid) => {
                self.children.insert(pid, spec);
                self.restarts.insert(pid, restarts);
            }
            Err(cause) => {
                tracing::error!(supervisor = %crate::self_pid(), child = &*spec.id, %cause, "restart error");
                let token = self.next_token;
                self.next_token += 1;
                self.restarting.insert(token, (spec, restarts - 1));
                crate::self_pid().send(TryAgain(token));
            }
        }
        Flow::Ok
    }

    /// Stops every child at once: unlink, monitor and signal each, then
    /// collect the `Down`s; a child still alive when its shutdown time is
    /// up gets `kill`.
    async fn stop_all(&mut self) {
        let mark = crate::mark();
        let started = Instant::now();
        let mut pending: FxHashMap<Ref, (Pid, ChildSpec)> =
            FxHashMap::with_capacity_and_hasher(self.children.len(), Default::default());
        // Children with a shutdown timeout, soonest first.
        let mut timed: Vec<(Duration, Ref)> = Vec::new();
        for (pid, spec) in self.children.drain() {
            let mref = crate::monitor(pid);
            crate::unlink(pid);
            match spec.shutdown {
                Shutdown::BrutalKill => pid.exit(Reason::Kill),
                Shutdown::Infinity => pid.exit(Reason::Shutdown),
                Shutdown::Timeout(t) => {
                    pid.exit(Reason::Shutdown);
                    timed.push((t, mref));
                }
            }
            pending.insert(mref, (pid, spec));
        }
        self.restarting.clear();
        self.restarts.clear();
        self.supervisors = 0;
        timed.sort_unstable_by_key(|&(t, _)| t);
        let mut next = 0;
        while !pending.is_empty() {
            // The next deadline of a child still pending.
            while next < timed.len() && !pending.contains_key(&timed[next].1) {
                next += 1;
            }
            let down = match timed.get(next) {
                Some(&(t, _)) => {
                    let left = t.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        let now = started.elapsed();
                        while let Some(&(_, mref)) = timed.get(next).filter(|(t, _)| *t <= now) {
                            if let Some((pid, _)) = pending.get(&mref) {
                                pid.exit(Reason::Kill);
                            }
                            next += 1;
                        }
                        continue;
                    }
                    crate::receive_if(|d: &Down| pending.contains_key(&d.monitor))
                        .timeout(left)
                        .after_mark(mark)
                        .await
                }
                None => Some(
                    crate::receive_if(|d: &Down| pending.contains_key(&d.monitor))
                        .after_mark(mark)
                        .await,
                ),
            };
            if let Some(down) = down
                && let Some((pid, spec)) = pending.remove(&down.monitor)
            {
                let mut reason = down.reason;
                if reason == Reason::NoProc {
                    // It had ended before: its `Exit` (if it came before the
                    // unlink) says why.
                    if let Some(exit) = crate::receive_if(move |e: &Exit| e.from == pid)
                        .timeout(Duration::ZERO)
                        .await
                    {
                        reason = exit.reason;
                    }
                }
                report_shutdown(&spec, &reason);
            }
        }
    }
}
