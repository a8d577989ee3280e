//! Supervisor: a process that starts children, watches them and restarts
//! them when they end, like OTP's `supervisor`.
//!
//! A supervisor is a [`GenServer`] that traps exits. It holds a list of
//! children in *start order*, each described by a [`ChildSpec`]: an id, an
//! async start function, a [`Restart`] type, a [`Shutdown`] rule and a
//! [`ChildKind`]. The rules are OTP's:
//!
//! 1. **Start.** [`Supervisor::start_link`] checks the flags and specs, then
//!    starts the children one by one, in order, inside the supervisor
//!    process. Each start function must return the pid of a process it
//!    linked to its caller (the supervisor). If one fails (returns an error
//!    or panics), the children already started are stopped in reverse order,
//!    the supervisor process ends, and `start_link` returns
//!    [`SupervisorError::StartFailed`] naming the child, only after the
//!    supervisor process is gone: nothing is left half-started.
//! 2. **Watch.** A child's end reaches the supervisor as an [`Exit`]
//!    message (it traps exits). A permanent child is always restarted, a
//!    transient one only after an abnormal exit (not `normal`, `shutdown` or
//!    `{shutdown, _}`), a temporary one never (and it is forgotten).
//! 3. **Restart.** With [`Strategy::OneForOne`] only the child is restarted;
//!    with [`Strategy::OneForAll`] every other child is stopped (in reverse
//!    start order) and all are started again in order; with
//!    [`Strategy::RestForOne`] the same, for the children started after it.
//!    A start that fails during a restart is retried through a message to
//!    itself (so calls and shutdown requests are served in between); each
//!    retry counts as a restart.
//! 4. **Intensity.** More than `intensity` restarts within `period`: the
//!    supervisor stops every child, in reverse start order, and ends with
//!    reason `shutdown`; its own supervisor then decides. The history is a
//!    deque of timestamps pruned from the front: O(1) amortized a restart,
//!    at most `intensity + 1` entries, however many restarts came before.
//! 5. **Stop a child.** `BrutalKill`: `exit(pid, kill)`. `Timeout(t)`:
//!    `exit(pid, shutdown)`, then `kill` if it is still alive after `t`.
//!    `Infinity`: `exit(pid, shutdown)` and wait. The supervisor monitors the
//!    child and unlinks from it first, so it waits for the `Down` (a child
//!    that unlinked itself cannot hang it) and no stale `Exit` is left
//!    behind to be mistaken for a crash.
//! 6. **Own exit.** An exit signal from its parent (or [`SupervisorRef::stop`])
//!    stops the children one at a time in reverse start order, then the
//!    supervisor ends with that reason.
//! 7. **Auto shutdown.** With [`AutoShutdown::AnySignificant`] the supervisor
//!    shuts down when a *significant* child ends by itself and is not
//!    restarted; with [`AutoShutdown::AllSignificant`], when the last one
//!    does. Stopping a child through [`SupervisorRef::terminate_child`]
//!    never triggers it.
//!
//! ```
//! use beamish::otp::{ChildSpec, Supervisor, SupervisorFlags, Strategy};
//!
//! beamish::run(async {
//!     let worker = |name: &'static str| {
//!         ChildSpec::worker(name, || async {
//!             Ok(beamish::spawn_link(async { beamish::receive::<()>().await }))
//!         })
//!     };
//!     let flags = SupervisorFlags::new(Strategy::OneForOne);
//!     let sup = Supervisor::start_link(flags, vec![worker("a"), worker("b")]).await.unwrap();
//!     let ids: Vec<_> = sup.which_children().await.unwrap().into_iter().map(|c| c.id).collect();
//!     assert_eq!(ids, ["a".into(), "b".into()]);
//!     sup.stop().await.unwrap();
//! }).unwrap();
//! ```

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::gen_server::{self, Flow, GenServer, Init, Reply, ReplyTo, ServerRef, StartOptions};
use crate::observe::tree::{TreeKind, TreeQuery};
use crate::{Down, Error, Exit, Mark, Message, Pid, Reason, Ref};

/// A child's name within its supervisor.
pub type ChildId = Arc<str>;

/// The future a start function returns.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<Pid, Error>> + Send>>;

/// A child's start function: run inside the supervisor process, it starts
/// the child *linked to the supervisor* and returns its pid.
pub type StartFn = Arc<dyn Fn() -> StartFuture + Send + Sync>;

/// Default shutdown time of a worker (OTP's 5000 ms).
pub const DEFAULT_WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

/// When a child that ended is restarted.
///
/// ```
/// use beamish::{Reason, otp::Restart};
/// assert!(Restart::Permanent.restarts_after(&Reason::Normal));
/// assert!(!Restart::Transient.restarts_after(&Reason::Shutdown));
/// assert!(Restart::Transient.restarts_after(&Reason::other("boom")));
/// assert!(!Restart::Temporary.restarts_after(&Reason::other("boom")));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Always (the default).
    #[default]
    Permanent,
    /// Only after an abnormal exit: not `normal`, `shutdown` or `{shutdown, _}`.
    Transient,
    /// Never; the child is removed from the supervisor when it ends.
    Temporary,
}

impl Restart {
    /// Whether a child of this type that ended with `reason` is restarted.
    pub fn restarts_after(self, reason: &Reason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        }
    }
}

/// How a supervisor stops a child.
///
/// ```
/// use std::time::Duration;
/// use beamish::otp::{ChildSpec, Shutdown};
/// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(async {})) });
/// assert_eq!(spec.shutdown, Shutdown::Timeout(Duration::from_secs(5)));
/// let spec = spec.shutdown(Shutdown::BrutalKill);
/// assert_eq!(spec.shutdown, Shutdown::BrutalKill);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// `exit(pid, kill)`: no cleanup.
    BrutalKill,
    /// `exit(pid, shutdown)`, then `kill` if the child is alive after this long.
    Timeout(Duration),
    /// `exit(pid, shutdown)` and wait as long as it takes (the default for
    /// supervisors, which need the time to stop their own children).
    Infinity,
}

/// What a child is, for [`SupervisorRef::count_children`] and the default
/// shutdown.
///
/// ```
/// use beamish::otp::{ChildKind, ChildSpec, Shutdown};
/// let spec = ChildSpec::supervisor("sub", || async { Ok(beamish::spawn_link(async {})) });
/// assert_eq!((spec.kind, spec.shutdown), (ChildKind::Supervisor, Shutdown::Infinity));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChildKind {
    /// A worker (the default).
    #[default]
    Worker,
    /// A supervisor.
    Supervisor,
}

impl ChildKind {
    /// `worker` or `supervisor`, as OTP's child specs say.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Worker => "worker",
            ChildKind::Supervisor => "supervisor",
        }
    }
}

/// How to start, restart and stop one child.
///
/// The start function runs in the supervisor process, at every (re)start;
/// it must start the child linked to its caller and return its pid (or an
/// error). Arguments are bound in the closure. It must not call its own
/// supervisor (the supervisor is busy running it).
///
/// ```
/// use beamish::otp::{ChildSpec, Restart, Shutdown, GenServer, Reply, ReplyTo};
///
/// struct Echo;
/// impl GenServer for Echo {
///     type Call = String;
///     type Reply = String;
///     type Cast = ();
///     async fn handle_call(&mut self, s: String, _: ReplyTo<String>) -> Reply<String> {
///         Reply::reply(s)
///     }
/// }
///
/// let spec = ChildSpec::worker("echo", || async {
///     beamish::otp::start_link(Echo).await.map(|s| s.pid())
/// })
/// .restart(Restart::Transient)
/// .shutdown(Shutdown::BrutalKill);
/// assert_eq!(&*spec.id, "echo");
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    /// The child's name, unique within its supervisor.
    pub id: ChildId,
    /// Starts the child, linked to the caller.
    pub start: StartFn,
    /// When it is restarted.
    pub restart: Restart,
    /// How it is stopped.
    pub shutdown: Shutdown,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Whether its own end (without restart) can shut the supervisor down
    /// (see [`AutoShutdown`]); only for transient and temporary children.
    pub significant: bool,
}

impl ChildSpec {
    /// A permanent, non-significant worker with a 5 s shutdown.
    ///
    /// ```
    /// use beamish::otp::{ChildKind, ChildSpec, Restart};
    /// let spec = ChildSpec::new("w", || async { Ok(beamish::spawn_link(async {})) });
    /// assert_eq!((spec.restart, spec.kind, spec.significant), (Restart::Permanent, ChildKind::Worker, false));
    /// ```
    pub fn new<F, Fut>(id: impl Into<ChildId>, start: F) -> ChildSpec
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Pid, Error>> + Send + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move || -> StartFuture { Box::pin(start()) }),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(DEFAULT_WORKER_SHUTDOWN),
            kind: ChildKind::Worker,
            significant: false,
        }
    }

    /// A worker: the same as [`ChildSpec::new`].
    ///
    /// ```
    /// use beamish::otp::ChildSpec;
    /// let n = 7;
    /// let spec = ChildSpec::worker("w", move || async move {
    ///     Ok(beamish::spawn_link(async move { let _ = n; }))
    /// });
    /// # let _ = spec;
    /// ```
    pub fn worker<F, Fut>(id: impl Into<ChildId>, start: F) -> ChildSpec
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Pid, Error>> + Send + 'static,
    {
        ChildSpec::new(id, start)
    }

    /// A child that is itself a supervisor: shutdown `Infinity` (it needs
    /// the time to stop its own children).
    ///
    /// ```
    /// use beamish::otp::{ChildSpec, Supervisor, SupervisorFlags};
    /// let spec = ChildSpec::supervisor("sub", || async {
    ///     let sub = Supervisor::start_link(SupervisorFlags::default(), vec![]).await?;
    ///     Ok(sub.pid())
    /// });
    /// # let _ = spec;
    /// ```
    pub fn supervisor<F, Fut>(id: impl Into<ChildId>, start: F) -> ChildSpec
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Pid, Error>> + Send + 'static,
    {
        ChildSpec {
            kind: ChildKind::Supervisor,
            shutdown: Shutdown::Infinity,
            ..ChildSpec::new(id, start)
        }
    }

    /// Sets the restart type.
    ///
    /// ```
    /// use beamish::otp::{ChildSpec, Restart};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(async {})) })
    ///     .restart(Restart::Temporary);
    /// assert_eq!(spec.restart, Restart::Temporary);
    /// ```
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets how the child is stopped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use beamish::otp::{ChildSpec, Shutdown};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(async {})) })
    ///     .shutdown(Shutdown::Timeout(Duration::from_millis(100)));
    /// assert_eq!(spec.shutdown, Shutdown::Timeout(Duration::from_millis(100)));
    /// ```
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Sets the kind (it does not change the shutdown; see
    /// [`ChildSpec::supervisor`]).
    ///
    /// ```
    /// use beamish::otp::{ChildKind, ChildSpec};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(async {})) })
    ///     .kind(ChildKind::Supervisor);
    /// assert_eq!(spec.kind, ChildKind::Supervisor);
    /// ```
    pub fn kind(mut self, kind: ChildKind) -> ChildSpec {
        self.kind = kind;
        self
    }

    /// Marks the child significant (see [`AutoShutdown`]).
    ///
    /// ```
    /// use beamish::otp::{ChildSpec, Restart};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(async {})) })
    ///     .restart(Restart::Transient)
    ///     .significant(true);
    /// assert!(spec.significant);
    /// ```
    pub fn significant(mut self, significant: bool) -> ChildSpec {
        self.significant = significant;
        self
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("significant", &self.significant)
            .finish_non_exhaustive()
    }
}

/// Which children are restarted when one must be.
///
/// ```
/// use beamish::otp::{Strategy, SupervisorFlags};
/// assert_eq!(SupervisorFlags::default().strategy, Strategy::OneForOne);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Only the child that ended.
    #[default]
    OneForOne,
    /// All children: the others are stopped in reverse start order, then
    /// all start again in order.
    OneForAll,
    /// The child and those started after it.
    RestForOne,
}

/// When a supervisor shuts itself down because significant children ended.
///
/// ```
/// use beamish::otp::{AutoShutdown, SupervisorFlags};
/// let flags = SupervisorFlags::default().auto_shutdown(AutoShutdown::AnySignificant);
/// assert_eq!(flags.auto_shutdown, AutoShutdown::AnySignificant);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AutoShutdown {
    /// Never (the default); significant children are rejected.
    #[default]
    Never,
    /// When any significant child ends by itself and is not restarted.
    AnySignificant,
    /// When the last running significant child ends by itself and is not
    /// restarted.
    AllSignificant,
}

/// A supervisor's configuration: OTP's `sup_flags()`.
///
/// ```
/// use std::time::Duration;
/// use beamish::otp::{Strategy, SupervisorFlags};
/// let flags = SupervisorFlags::new(Strategy::RestForOne)
///     .intensity(3)
///     .period(Duration::from_secs(10));
/// assert_eq!((flags.intensity, flags.period), (3, Duration::from_secs(10)));
/// let default = SupervisorFlags::default();
/// assert_eq!((default.intensity, default.period), (1, Duration::from_secs(5)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SupervisorFlags {
    /// Restart strategy.
    pub strategy: Strategy,
    /// At most this many restarts within `period` (default 1).
    pub intensity: u32,
    /// The window of the restart intensity (default 5 s; must not be zero).
    pub period: Duration,
    /// Shutting down when significant children end (default never).
    pub auto_shutdown: AutoShutdown,
}

impl Default for SupervisorFlags {
    fn default() -> SupervisorFlags {
        SupervisorFlags {
            strategy: Strategy::OneForOne,
            intensity: 1,
            period: Duration::from_secs(5),
            auto_shutdown: AutoShutdown::Never,
        }
    }
}

impl SupervisorFlags {
    /// The defaults with this strategy.
    ///
    /// ```
    /// use beamish::otp::{Strategy, SupervisorFlags};
    /// assert_eq!(SupervisorFlags::new(Strategy::OneForAll).strategy, Strategy::OneForAll);
    /// ```
    pub fn new(strategy: Strategy) -> SupervisorFlags {
        SupervisorFlags {
            strategy,
            ..SupervisorFlags::default()
        }
    }

    /// Sets the restart intensity.
    ///
    /// ```
    /// use beamish::otp::SupervisorFlags;
    /// assert_eq!(SupervisorFlags::default().intensity(0).intensity, 0);
    /// ```
    pub fn intensity(mut self, intensity: u32) -> SupervisorFlags {
        self.intensity = intensity;
        self
    }

    /// Sets the restart period.
    ///
    /// ```
    /// use std::time::Duration;
    /// use beamish::otp::SupervisorFlags;
    /// let flags = SupervisorFlags::default().period(Duration::from_secs(1));
    /// assert_eq!(flags.period, Duration::from_secs(1));
    /// ```
    pub fn period(mut self, period: Duration) -> SupervisorFlags {
        self.period = period;
        self
    }

    /// Sets the auto-shutdown rule.
    ///
    /// ```
    /// use beamish::otp::{AutoShutdown, SupervisorFlags};
    /// let flags = SupervisorFlags::default().auto_shutdown(AutoShutdown::AllSignificant);
    /// assert_eq!(flags.auto_shutdown, AutoShutdown::AllSignificant);
    /// ```
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> SupervisorFlags {
        self.auto_shutdown = auto_shutdown;
        self
    }
}

/// One child, as [`SupervisorRef::which_children`] reports it.
///
/// ```
/// use beamish::otp::{ChildSpec, Supervisor, SupervisorFlags, ChildKind};
/// beamish::run(async {
///     let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
///     let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec]).await.unwrap();
///     let info = &sup.which_children().await.unwrap()[0];
///     assert_eq!((&*info.id, info.kind, info.restarting), ("w", ChildKind::Worker, false));
///     assert!(info.pid.is_some());
///     sup.stop().await.unwrap();
/// }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its id.
    pub id: ChildId,
    /// Its process, if it runs (`None` when terminated or restarting).
    pub pid: Option<Pid>,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// A restart failed and is being retried.
    pub restarting: bool,
    /// Times its supervisor started it again after it ended (a restart by
    /// strategy counts for every child it restarts).
    pub restarts: u32,
}

/// Child counts, as [`SupervisorRef::count_children`] reports them.
///
/// ```
/// use beamish::otp::{ChildCounts, Supervisor, SupervisorFlags};
/// beamish::run(async {
///     let sup = Supervisor::start_link(SupervisorFlags::default(), vec![]).await.unwrap();
///     assert_eq!(sup.count_children().await.unwrap(), ChildCounts::default());
///     sup.stop().await.unwrap();
/// }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChildCounts {
    /// Child specs (running or not).
    pub specs: usize,
    /// Children whose process is alive.
    pub active: usize,
    /// Specs of kind supervisor.
    pub supervisors: usize,
    /// Specs of kind worker.
    pub workers: usize,
}

/// What a supervisor operation can fail with. Match on it; `Display` is for
/// humans.
///
/// ```
/// use beamish::otp::{ChildSpec, Supervisor, SupervisorError, SupervisorFlags};
/// beamish::run(async {
///     let failing = ChildSpec::worker("db", || async {
///         Err(beamish::Error::Config("no database".into()))
///     });
///     match Supervisor::start_link(SupervisorFlags::default(), vec![failing]).await {
///         Err(SupervisorError::StartFailed { id, cause }) => {
///             assert_eq!(&*id, "db");
///             assert_eq!(cause, beamish::Error::Config("no database".into()));
///         }
///         other => panic!("{other:?}"),
///     }
/// }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The child's start function returned an error or panicked (a panic is
    /// `Error::Exited(Reason::Panic(message))`).
    StartFailed {
        /// The child.
        id: ChildId,
        /// Why.
        cause: Error,
    },
    /// No child has this id.
    NotFound(ChildId),
    /// The child is running (stop it with `terminate_child` first).
    Running(ChildId),
    /// A restart of the child failed and is being retried.
    Restarting(ChildId),
    /// `start_child` with the id of a running child.
    AlreadyStarted(ChildId, Pid),
    /// `start_child` with the id of a stopped child (delete it first).
    AlreadyPresent(ChildId),
    /// The spec is invalid (for example a permanent significant child, a
    /// duplicate id).
    InvalidSpec {
        /// The child.
        id: ChildId,
        /// Why.
        why: &'static str,
    },
    /// The flags are invalid (for example a zero period).
    InvalidFlags(&'static str),
    /// A dynamic supervisor has its maximum number of children.
    MaxChildren,
    /// A dynamic supervisor has no child with this pid.
    NotAChild(Pid),
    /// The supervisor process could not be started or reached (for example
    /// `Error::NoProc` when it is dead, `Error::NameTaken`).
    Runtime(Error),
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::StartFailed { id, cause } => {
                write!(f, "failed to start child {id}: {cause}")
            }
            SupervisorError::NotFound(id) => write!(f, "no child with id {id}"),
            SupervisorError::Running(id) => write!(f, "child {id} is running"),
            SupervisorError::Restarting(id) => write!(f, "child {id} is restarting"),
            SupervisorError::AlreadyStarted(id, pid) => {
                write!(f, "child {id} is already started as {pid}")
            }
            SupervisorError::AlreadyPresent(id) => write!(f, "child {id} is already present"),
            SupervisorError::InvalidSpec { id, why } => write!(f, "invalid child spec {id}: {why}"),
            SupervisorError::InvalidFlags(why) => write!(f, "invalid supervisor flags: {why}"),
            SupervisorError::MaxChildren => {
                f.write_str("the supervisor has its maximum of children")
            }
            SupervisorError::NotAChild(pid) => write!(f, "{pid} is not a child of the supervisor"),
            SupervisorError::Runtime(e) => write!(f, "supervisor: {e}"),
        }
    }
}

impl std::error::Error for SupervisorError {}

/// Lets a start function use `?` on supervisor calls (a nested supervisor):
/// runtime errors pass through; a failed start becomes OTP's
/// `{shutdown, {failed_to_start_child, Id, Reason}}` reason; anything else
/// `Exited(Other(text))`.
impl From<SupervisorError> for Error {
    fn from(e: SupervisorError) -> Error {
        match e {
            SupervisorError::Runtime(e) => e,
            e @ SupervisorError::StartFailed { .. } => {
                Error::Exited(Reason::shutdown_with(e.to_string()))
            }
            e => Error::Exited(Reason::other(e.to_string())),
        }
    }
}

/// The entry point: [`Supervisor::start_link`].
///
/// ```
/// use beamish::otp::{ChildSpec, Supervisor, SupervisorFlags};
/// beamish::run(async {
///     let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
///     let sup = Supervisor::start_link_named("app_sup", SupervisorFlags::default(), vec![spec])
///         .await
///         .unwrap();
///     assert_eq!(beamish::whereis("app_sup"), Some(sup.pid()));
///     sup.stop().await.unwrap();
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct Supervisor(());

impl Supervisor {
    /// Starts a supervisor linked to the caller, starts its children in
    /// order, and returns once they all run. If a child fails to start, the
    /// others are stopped in reverse order, the supervisor process ends, and
    /// the error names the child ([`SupervisorError::StartFailed`]).
    ///
    /// As in OTP, the supervisor ends (taking its children down) when the
    /// process that started it ends, whatever the reason, even `normal`:
    /// keep the starter alive, or use [`crate::otp::Application`], whose
    /// master process owns the tree.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn start_link(
        flags: SupervisorFlags,
        specs: Vec<ChildSpec>,
    ) -> Result<SupervisorRef, SupervisorError> {
        start(flags, specs, None).await
    }

    /// As [`Supervisor::start_link`], registering the supervisor under
    /// `name` (`Runtime(NameTaken)` if the name is in use).
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn start_link_named(
        name: impl Into<Arc<str>>,
        flags: SupervisorFlags,
        specs: Vec<ChildSpec>,
    ) -> Result<SupervisorRef, SupervisorError> {
        start(flags, specs, Some(name.into())).await
    }
}

/// A handle on a running supervisor (a `Copy` pid). Every operation is a
/// call that waits as long as the supervisor needs (stopping a child may
/// take its shutdown time); a dead supervisor gives
/// `Runtime(Error::NoProc(pid))` at once.
///
/// ```
/// use beamish::otp::{ChildSpec, Supervisor, SupervisorFlags, SupervisorRef};
/// beamish::run(async {
///     let sup = Supervisor::start_link(SupervisorFlags::default(), vec![]).await.unwrap();
///     let same = SupervisorRef::from_pid(sup.pid());
///     assert_eq!(same, sup);
///     sup.stop().await.unwrap();
/// }).unwrap();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SupervisorRef {
    pid: Pid,
}

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SupervisorRef({})", self.pid)
    }
}

impl SupervisorRef {
    /// Treats `pid` as a supervisor (for example a nested supervisor's pid
    /// from [`SupervisorRef::which_children`]).
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{Supervisor, SupervisorFlags, SupervisorRef};
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![]).await.unwrap();
    /// assert_eq!(SupervisorRef::from_pid(sup.pid()).pid(), sup.pid());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub fn from_pid(pid: Pid) -> SupervisorRef {
        SupervisorRef { pid }
    }

    /// The supervisor registered under `name`.
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{Supervisor, SupervisorFlags, SupervisorRef};
    /// let sup = Supervisor::start_link_named("top", SupervisorFlags::default(), vec![]).await.unwrap();
    /// assert_eq!(SupervisorRef::whereis("top"), Some(sup));
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub fn whereis(name: &str) -> Option<SupervisorRef> {
        crate::whereis(name).map(SupervisorRef::from_pid)
    }

    /// The supervisor's pid.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{Supervisor, SupervisorFlags};
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![]).await.unwrap();
    /// assert!(sup.pid().is_alive());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Every child, in start order.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, Supervisor, SupervisorFlags};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec]).await.unwrap();
    /// assert_eq!(sup.which_children().await.unwrap().len(), 1);
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        match self.call(Call::Which).await? {
            Answer::Which(children) => Ok(children),
            _ => Err(unexpected()),
        }
    }

    /// How many children there are, by kind, and how many run.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildCounts, ChildSpec, Supervisor, SupervisorFlags};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec]).await.unwrap();
    /// let counts = sup.count_children().await.unwrap();
    /// assert_eq!(counts, ChildCounts { specs: 1, active: 1, supervisors: 0, workers: 1 });
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        match self.call(Call::Count).await? {
            Answer::Count(counts) => Ok(counts),
            _ => Err(unexpected()),
        }
    }

    /// Adds a child at the end and starts it. Errors: `AlreadyStarted` /
    /// `AlreadyPresent` for a known id, `InvalidSpec`, `StartFailed` (the
    /// spec is then not kept).
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, Supervisor, SupervisorError, SupervisorFlags};
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![]).await.unwrap();
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let pid = sup.start_child(spec.clone()).await.unwrap();
    /// assert_eq!(sup.start_child(spec).await, Err(SupervisorError::AlreadyStarted("w".into(), pid)));
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        match self.call(Call::Start(spec)).await? {
            Answer::Pid(result) => result,
            _ => Err(unexpected()),
        }
    }

    /// Stops a child by its shutdown rule and keeps its spec (a temporary
    /// child's spec is dropped). Stopping a stopped child is `Ok`; an
    /// unknown id is `NotFound`.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, Supervisor, SupervisorError, SupervisorFlags};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec]).await.unwrap();
    /// sup.terminate_child("w").await.unwrap();
    /// assert_eq!(sup.which_children().await.unwrap()[0].pid, None);
    /// assert_eq!(sup.terminate_child("x").await, Err(SupervisorError::NotFound("x".into())));
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn terminate_child(&self, id: impl Into<ChildId>) -> Result<(), SupervisorError> {
        match self.call(Call::Terminate(id.into())).await? {
            Answer::Done(result) => result,
            _ => Err(unexpected()),
        }
    }

    /// Starts a stopped child again. Errors: `NotFound`, `Running`,
    /// `Restarting`, `StartFailed`.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, Supervisor, SupervisorError, SupervisorFlags};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec]).await.unwrap();
    /// assert_eq!(sup.restart_child("w").await, Err(SupervisorError::Running("w".into())));
    /// sup.terminate_child("w").await.unwrap();
    /// let pid = sup.restart_child("w").await.unwrap();
    /// assert!(pid.is_alive());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn restart_child(&self, id: impl Into<ChildId>) -> Result<Pid, SupervisorError> {
        match self.call(Call::Restart(id.into())).await? {
            Answer::Pid(result) => result,
            _ => Err(unexpected()),
        }
    }

    /// Removes a stopped child's spec. Errors: `NotFound`, `Running`,
    /// `Restarting`.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{ChildSpec, Supervisor, SupervisorError, SupervisorFlags};
    /// let spec = ChildSpec::worker("w", || async { Ok(beamish::spawn_link(beamish::receive::<()>())) });
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec]).await.unwrap();
    /// assert_eq!(sup.delete_child("w").await, Err(SupervisorError::Running("w".into())));
    /// sup.terminate_child("w").await.unwrap();
    /// sup.delete_child("w").await.unwrap();
    /// assert!(sup.which_children().await.unwrap().is_empty());
    /// # sup.stop().await.unwrap();
    /// # }).unwrap();
    /// ```
    pub async fn delete_child(&self, id: impl Into<ChildId>) -> Result<(), SupervisorError> {
        match self.call(Call::Delete(id.into())).await? {
            Answer::Done(result) => result,
            _ => Err(unexpected()),
        }
    }

    /// Stops the supervisor with reason `normal`: its children are stopped
    /// in reverse start order first. Waits until it has ended.
    ///
    /// ```
    /// # beamish::run(async {
    /// use beamish::otp::{Supervisor, SupervisorFlags};
    /// let sup = Supervisor::start_link(SupervisorFlags::default(), vec![]).await.unwrap();
    /// sup.stop().await.unwrap();
    /// assert!(!sup.pid().is_alive());
    /// # }).unwrap();
    /// ```
    pub async fn stop(&self) -> Result<(), SupervisorError> {
        ServerRef::<SupServer>::from_pid(self.pid)
            .stop(Reason::Normal, Duration::MAX)
            .await
            .map_err(SupervisorError::Runtime)
    }

    async fn call(&self, call: Call) -> Result<Answer, SupervisorError> {
        ServerRef::<SupServer>::from_pid(self.pid)
            .call_timeout(call, Duration::MAX)
            .await
            .map_err(SupervisorError::Runtime)
    }
}

fn unexpected() -> SupervisorError {
    SupervisorError::Runtime(Error::Exited(Reason::other("unexpected supervisor reply")))
}

// ------------------------------------------------------------ shared parts

/// The restart history: timestamps of the restarts within the last
/// `period`, oldest first. Each restart pushes one and pops the expired
/// ones, so a restart costs O(1) amortized and the deque never holds more
/// than `intensity + 1` entries (past that the supervisor ends).
#[derive(Debug)]
pub(crate) struct RestartHistory {
    /// Restart times within the period, oldest first.
    stamps: VecDeque<Instant>,
    /// Allowed restarts within the period.
    intensity: u32,
    /// The window.
    period: Duration,
}

impl RestartHistory {
    pub(crate) fn new(intensity: u32, period: Duration) -> RestartHistory {
        RestartHistory {
            stamps: VecDeque::new(),
            intensity,
            period,
        }
    }

    /// Records a restart at `now`. `false` when it is one too many: more
    /// than `intensity` restarts within `period`.
    pub(crate) fn add(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.stamps.front() {
            if now.saturating_duration_since(oldest) >= self.period {
                self.stamps.pop_front();
            } else {
                break;
            }
        }
        self.stamps.push_back(now);
        self.stamps.len() <= self.intensity as usize
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.stamps.len()
    }
}

/// Checks one spec against the supervisor's auto-shutdown rule (OTP's
/// `check_childspec`).
pub(crate) fn check_spec(
    spec: &ChildSpec,
    auto_shutdown: AutoShutdown,
) -> Result<(), SupervisorError> {
    let invalid = |why| {
        Err(SupervisorError::InvalidSpec {
            id: spec.id.clone(),
            why,
        })
    };
    if spec.significant && spec.restart == Restart::Permanent {
        return invalid("a permanent child cannot be significant");
    }
    if spec.significant && auto_shutdown == AutoShutdown::Never {
        return invalid(
            "significant children need auto_shutdown any_significant or all_significant",
        );
    }
    Ok(())
}

pub(crate) fn check_period(period: Duration) -> Result<(), SupervisorError> {
    if period.is_zero() {
        return Err(SupervisorError::InvalidFlags(
            "the restart period must not be zero",
        ));
    }
    Ok(())
}

/// Runs a child's start function in the calling process; a panic (in the
/// closure or its future) becomes `Err(Exited(Panic(message)))` instead of
/// taking the supervisor down.
pub(crate) async fn start_child_process(spec: &ChildSpec) -> Result<Pid, Error> {
    let start = spec.start.clone();
    catch_start(|| start()).await
}

/// Runs a start function: a panic (in the closure or its future) becomes
/// `Err(Exited(Panic(message)))`.
pub(crate) async fn catch_start(start: impl FnOnce() -> StartFuture) -> Result<Pid, Error> {
    match catch_unwind(AssertUnwindSafe(start)) {
        Ok(future) => CatchUnwind(future).await,
        Err(payload) => Err(Error::Exited(Reason::from_panic(&*payload))),
    }
}

/// A start future whose panic is an error.
struct CatchUnwind(StartFuture);

impl Future for CatchUnwind {
    type Output = Result<Pid, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => Poll::Ready(Err(Error::Exited(Reason::from_panic(&*payload)))),
        }
    }
}

/// Stops one child by its shutdown rule and returns its exit reason (OTP's
/// `shutdown/1`): monitor it, unlink from it, and take an `Exit` it already
/// sent (it ended by itself; after the unlink no other can come), else
/// send the exit signal and wait for the `Down`, escalating to `kill` after
/// a timeout.
pub(crate) async fn shutdown_child(pid: Pid, how: Shutdown) -> Reason {
    shutdown_child_with(pid, how, Reason::Shutdown).await
}

/// [`shutdown_child`] with another reason than `shutdown` for the exit
/// signal (a `kill` after the timeout stays `kill`).
pub(crate) async fn shutdown_child_with(pid: Pid, how: Shutdown, reason: Reason) -> Reason {
    let mark = crate::mark();
    let mref = crate::monitor(pid);
    crate::unlink(pid);
    if let Some(exit) = crate::receive_if(move |e: &Exit| e.from == pid)
        .timeout(Duration::ZERO)
        .await
    {
        wait_down(mref, mark).await;
        return exit.reason;
    }
    match how {
        Shutdown::BrutalKill => {
            pid.exit(Reason::Kill);
            wait_down(mref, mark).await
        }
        Shutdown::Infinity => {
            pid.exit(reason);
            wait_down(mref, mark).await
        }
        Shutdown::Timeout(t) => {
            pid.exit(reason);
            let down = crate::receive_if(move |d: &Down| d.monitor == mref)
                .timeout(t)
                .after_mark(mark)
                .await;
            match down {
                Some(down) => down.reason,
                None => {
                    pid.exit(Reason::Kill);
                    wait_down(mref, mark).await
                }
            }
        }
    }
}

/// Waits for the `Down` of `mref` (which must come: the process was sent
/// an exit signal, or has ended).
async fn wait_down(mref: Ref, mark: Mark) -> Reason {
    crate::receive_if(move |d: &Down| d.monitor == mref)
        .after_mark(mark)
        .await
        .reason
}

/// Logs a child's exit reason after a shutdown if it is not the one its
/// shutdown rule asked for (OTP's `shutdown_error` report).
pub(crate) fn report_shutdown(spec: &ChildSpec, reason: &Reason) {
    let expected = match reason {
        Reason::Killed => spec.shutdown == Shutdown::BrutalKill,
        Reason::Shutdown => true,
        Reason::Normal | Reason::ShutdownWith(_) => spec.restart != Restart::Permanent,
        _ => false,
    };
    if !expected {
        tracing::error!(supervisor = %crate::self_pid(), child = &*spec.id, %reason, "shutdown error");
    }
}

/// Logs a child's end that the supervisor did not ask for.
pub(crate) fn report_exit(id: &str, pid: Pid, reason: &Reason) {
    if reason.is_clean() {
        tracing::debug!(supervisor = %crate::self_pid(), child = id, %pid, %reason, "child terminated");
    } else {
        tracing::error!(supervisor = %crate::self_pid(), child = id, %pid, %reason, "child terminated");
    }
}

/// Waits until `pid` has ended (it is known to be ending).
pub(crate) async fn wait_ended(pid: Pid) {
    let mark = crate::mark();
    let mref = crate::monitor(pid);
    wait_down(mref, mark).await;
}

// ------------------------------------------------------------ the server

/// A child's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Running as this process.
    Running(Pid),
    /// A restart failed; a `TryAgain` is on its way.
    Restarting,
    /// Not running (terminated, or never restarted).
    Stopped,
}

/// A child: its spec and its process.
struct Child {
    spec: ChildSpec,
    slot: Slot,
    /// Times the supervisor started it again after it ended.
    restarts: u32,
}

impl Child {
    fn restarted(&mut self, pid: Pid) {
        self.slot = Slot::Running(pid);
        self.restarts = self.restarts.saturating_add(1);
    }
}

/// What `init` needs, consumed by it.
struct Boot {
    specs: Vec<ChildSpec>,
    starter: Pid,
    tag: Ref,
}

/// Supervisor → starter, before `init` fails: the typed error.
struct StartFailure {
    tag: Ref,
    supervisor: Pid,
    error: SupervisorError,
}

/// Supervisor → itself: retry the restart of this child.
struct TryAgain(ChildId);

enum Call {
    Which,
    Count,
    Start(ChildSpec),
    Terminate(ChildId),
    Restart(ChildId),
    Delete(ChildId),
}

enum Answer {
    Which(Vec<ChildInfo>),
    Count(ChildCounts),
    Pid(Result<Pid, SupervisorError>),
    Done(Result<(), SupervisorError>),
}

/// The supervisor's state.
struct SupServer {
    flags: SupervisorFlags,
    /// In start order.
    children: Vec<Child>,
    history: RestartHistory,
    boot: Option<Boot>,
}

async fn start(
    flags: SupervisorFlags,
    specs: Vec<ChildSpec>,
    name: Option<Arc<str>>,
) -> Result<SupervisorRef, SupervisorError> {
    check_period(flags.period)?;
    let mut ids = HashSet::with_capacity(specs.len());
    for spec in &specs {
        check_spec(spec, flags.auto_shutdown)?;
        if !ids.insert(spec.id.clone()) {
            return Err(SupervisorError::InvalidSpec {
                id: spec.id.clone(),
                why: "duplicate child id",
            });
        }
    }
    let tag = Ref::new();
    let mark = crate::mark();
    let server = SupServer {
        flags,
        children: Vec::with_capacity(specs.len()),
        history: RestartHistory::new(flags.intensity, flags.period),
        boot: Some(Boot {
            specs,
            starter: crate::self_pid(),
            tag,
        }),
    };
    let mut options = StartOptions::new().link().trap_exit(true);
    if let Some(name) = name {
        options = options.name(name);
    }
    match gen_server::start_with(server, options).await {
        Ok(server) => Ok(SupervisorRef { pid: server.pid() }),
        Err(e) => {
            // `init` sent its typed error before its reply, so it is here.
            let failure = crate::receive_if(move |f: &StartFailure| f.tag == tag)
                .timeout(Duration::ZERO)
                .after_mark(mark)
                .await;
            match failure {
                Some(failure) => {
                    wait_ended(failure.supervisor).await;
                    Err(failure.error)
                }
                None => Err(SupervisorError::Runtime(e)),
            }
        }
    }
}

impl GenServer for SupServer {
    type Call = Call;
    type Reply = Answer;
    type Cast = std::convert::Infallible;

    async fn init(&mut self) -> Init {
        let Some(Boot {
            specs,
            starter,
            tag,
        }) = self.boot.take()
        else {
            return Init::Ok;
        };
        for spec in specs {
            match start_child_process(&spec).await {
                Ok(pid) => self.children.push(Child {
                    spec,
                    slot: Slot::Running(pid),
                    restarts: 0,
                }),
                Err(cause) => {
                    tracing::error!(supervisor = %crate::self_pid(), child = &*spec.id, %cause, "start error");
                    self.stop_children_from(0).await;
                    let error = SupervisorError::StartFailed { id: spec.id, cause };
                    let reason = Reason::shutdown_with(error.to_string());
                    starter.send(StartFailure {
                        tag,
                        supervisor: crate::self_pid(),
                        error,
                    });
                    return Init::Stop(reason);
                }
            }
        }
        Init::Ok
    }

    async fn handle_call(&mut self, call: Call, _from: ReplyTo<Answer>) -> Reply<Answer> {
        Reply::reply(match call {
            Call::Which => Answer::Which(self.which_children()),
            Call::Count => Answer::Count(self.count_children()),
            Call::Start(spec) => Answer::Pid(self.start_new_child(spec).await),
            Call::Terminate(id) => Answer::Done(self.terminate_child(&id).await),
            Call::Restart(id) => Answer::Pid(self.restart_stopped_child(&id).await),
            Call::Delete(id) => Answer::Done(self.delete_child(&id)),
        })
    }

    async fn handle_info(&mut self, msg: Message) -> Flow {
        let msg = match msg.downcast::<Exit>() {
            Ok(Exit { from, reason }) => return self.child_exited(from, reason).await,
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<TreeQuery>() {
            Ok(query) => {
                query.answer(
                    TreeKind::Supervisor(self.flags.strategy),
                    self.which_children(),
                );
                return Flow::Ok;
            }
            Err(msg) => msg,
        };
        match msg.downcast::<TryAgain>() {
            Ok(TryAgain(id)) => self.try_again(&id).await,
            Err(msg) => {
                tracing::warn!(supervisor = %crate::self_pid(), message = msg.type_name(), "unexpected message");
                Flow::Ok
            }
        }
    }

    async fn terminate(&mut self, _reason: &Reason) {
        self.stop_children_from(0).await;
    }
}

impl SupServer {
    fn index(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| &*c.spec.id == id)
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                pid: match c.slot {
                    Slot::Running(pid) => Some(pid),
                    Slot::Restarting | Slot::Stopped => None,
                },
                kind: c.spec.kind,
                restarting: c.slot == Slot::Restarting,
                restarts: c.restarts,
            })
            .collect()
    }

    fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts::default();
        for c in &self.children {
            counts.specs += 1;
            match c.spec.kind {
                ChildKind::Worker => counts.workers += 1,
                ChildKind::Supervisor => counts.supervisors += 1,
            }
            if matches!(c.slot, Slot::Running(pid) if pid.is_alive()) {
                counts.active += 1;
            }
        }
        counts
    }

    async fn start_new_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        check_spec(&spec, self.flags.auto_shutdown)?;
        if let Some(i) = self.index(&spec.id) {
            return Err(match self.children[i].slot {
                Slot::Running(pid) => SupervisorError::AlreadyStarted(spec.id, pid),
                Slot::Restarting | Slot::Stopped => SupervisorError::AlreadyPresent(spec.id),
            });
        }
        match start_child_process(&spec).await {
            Ok(pid) => {
                self.children.push(Child {
                    spec,
                    slot: Slot::Running(pid),
                    restarts: 0,
                });
                Ok(pid)
            }
            Err(cause) => Err(SupervisorError::StartFailed { id: spec.id, cause }),
        }
    }

    async fn terminate_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let i = self
            .index(id)
            .ok_or_else(|| SupervisorError::NotFound(id.into()))?;
        self.stop_child(i).await;
        Ok(())
    }

    async fn restart_stopped_child(&mut self, id: &str) -> Result<Pid, SupervisorError> {
        let i = self
            .index(id)
            .ok_or_else(|| SupervisorError::NotFound(id.into()))?;
        let child = &self.children[i];
        match child.slot {
            Slot::Running(_) => Err(SupervisorError::Running(child.spec.id.clone())),
            Slot::Restarting => Err(SupervisorError::Restarting(child.spec.id.clone())),
            Slot::Stopped => match start_child_process(&child.spec).await {
                Ok(pid) => {
                    self.children[i].slot = Slot::Running(pid);
                    Ok(pid)
                }
                Err(cause) => Err(SupervisorError::StartFailed {
                    id: self.children[i].spec.id.clone(),
                    cause,
                }),
            },
        }
    }

    fn delete_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let i = self
            .index(id)
            .ok_or_else(|| SupervisorError::NotFound(id.into()))?;
        let child = &self.children[i];
        match child.slot {
            Slot::Running(_) => Err(SupervisorError::Running(child.spec.id.clone())),
            Slot::Restarting => Err(SupervisorError::Restarting(child.spec.id.clone())),
            Slot::Stopped => {
                self.children.remove(i);
                Ok(())
            }
        }
    }

    /// Stops child `i` if it runs; forgets it if temporary, else marks it
    /// stopped.
    async fn stop_child(&mut self, i: usize) {
        if let Slot::Running(pid) = self.children[i].slot {
            let reason = shutdown_child(pid, self.children[i].spec.shutdown).await;
            report_shutdown(&self.children[i].spec, &reason);
        }
        if self.children[i].spec.restart == Restart::Temporary {
            self.children.remove(i);
        } else {
            self.children[i].slot = Slot::Stopped;
        }
    }

    /// Stops children `first..`, last started first.
    async fn stop_children_from(&mut self, first: usize) {
        let mut i = self.children.len();
        while i > first {
            i -= 1;
            self.stop_child(i).await;
        }
    }

    /// A linked process ended: restart it, or not, by its spec.
    async fn child_exited(&mut self, pid: Pid, reason: Reason) -> Flow {
        let Some(i) = self
            .children
            .iter()
            .position(|c| c.slot == Slot::Running(pid))
        else {
            // Not a child (any more): ignore, as OTP does.
            return Flow::Ok;
        };
        let spec = &self.children[i].spec;
        report_exit(&spec.id, pid, &reason);
        if spec.restart.restarts_after(&reason) {
            return self.restart(i).await;
        }
        let significant = spec.significant;
        if spec.restart == Restart::Temporary {
            self.children.remove(i);
        } else {
            self.children[i].slot = Slot::Stopped;
        }
        self.auto_shutdown(significant)
    }

    /// A significant child ended by itself and was not restarted.
    fn auto_shutdown(&self, significant: bool) -> Flow {
        if !significant {
            return Flow::Ok;
        }
        let shutdown = match self.flags.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self
                .children
                .iter()
                .any(|c| c.spec.significant && c.slot != Slot::Stopped),
        };
        if shutdown {
            Flow::Stop(Reason::Shutdown)
        } else {
            Flow::Ok
        }
    }

    /// Restarts child `i` (and its siblings, by the strategy), unless the
    /// restart intensity is exceeded: then the supervisor stops.
    async fn restart(&mut self, i: usize) -> Flow {
        if !self.history.add(Instant::now()) {
            tracing::error!(
                supervisor = %crate::self_pid(),
                child = &*self.children[i].spec.id,
                "reached max restart intensity, shutting down"
            );
            self.children[i].slot = Slot::Stopped;
            return Flow::Stop(Reason::Shutdown);
        }
        let first = match self.flags.strategy {
            Strategy::OneForOne => {
                match start_child_process(&self.children[i].spec).await {
                    Ok(pid) => self.children[i].restarted(pid),
                    Err(cause) => self.retry_later(i, &cause),
                }
                return Flow::Ok;
            }
            Strategy::OneForAll => 0,
            Strategy::RestForOne => i,
        };
        self.children[i].slot = Slot::Stopped;
        self.stop_children_from(first).await;
        for j in first..self.children.len() {
            match start_child_process(&self.children[j].spec).await {
                Ok(pid) => self.children[j].restarted(pid),
                Err(cause) => {
                    self.retry_later(j, &cause);
                    break;
                }
            }
        }
        Flow::Ok
    }

    /// A restart of child `i` failed: try again through the mailbox, so
    /// that calls and exit signals waiting there are served first.
    fn retry_later(&mut self, i: usize, cause: &Error) {
        let id = self.children[i].spec.id.clone();
        tracing::error!(supervisor = %crate::self_pid(), child = &*id, %cause, "restart error");
        self.children[i].slot = Slot::Restarting;
        crate::self_pid().send(TryAgain(id));
    }

    async fn try_again(&mut self, id: &str) -> Flow {
        match self.index(id) {
            Some(i) if self.children[i].slot == Slot::Restarting => self.restart(i).await,
            _ => Flow::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_history_allows_intensity_restarts_per_period() {
        let t0 = Instant::now();
        let mut h = RestartHistory::new(2, Duration::from_secs(5));
        assert!(h.add(t0));
        assert!(h.add(t0 + Duration::from_secs(1)));
        assert!(!h.add(t0 + Duration::from_secs(2)));
        // The first two have left the window.
        let mut h = RestartHistory::new(2, Duration::from_secs(5));
        assert!(h.add(t0));
        assert!(h.add(t0 + Duration::from_secs(1)));
        assert!(h.add(t0 + Duration::from_secs(6)));
        assert!(h.add(t0 + Duration::from_secs(6)));
        assert!(!h.add(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn restart_history_stays_small_however_many_restarts() {
        let t0 = Instant::now();
        let mut h = RestartHistory::new(3, Duration::from_millis(10));
        for n in 0..1_000_000u64 {
            // One restart every 4 ms: never more than 3 in 10 ms.
            assert!(h.add(t0 + Duration::from_millis(4 * n)));
            assert!(h.len() <= 3);
        }
    }

    #[test]
    fn zero_intensity_allows_no_restart() {
        let mut h = RestartHistory::new(0, Duration::from_secs(5));
        assert!(!h.add(Instant::now()));
    }
}
