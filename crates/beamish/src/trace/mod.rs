//! Tracing processes, as Erlang's `erlang:trace/3` and `dbg` do, with the
//! limits of `recon_trace` so that tracing a busy production node cannot
//! take it down.
//!
//! A trace session sends [`TraceEvent`] messages to a tracer process for
//! what its traced processes do: messages sent and received, spawns, exits,
//! links and unlinks, being scheduled in and out, GenServer calls made and
//! handled. It traces one process ([`Target::Pid`], [`Target::Name`]) or
//! every process spawned from now on ([`Target::New`]); more can be added
//! to a running session ([`TraceSession::add`]). A process is traced by at
//! most one session at a time, as in Erlang (one tracer per process).
//! Starting a session on a running process sends it a signal, as trace
//! flags are signals in OTP: the process is traced from when it handles
//! it, so everything it does after a message sent after `start` returned
//! is traced.
//!
//! Limits, checked before an event is made:
//!
//! * **count** ([`Trace::count`]): the session ends after that many events
//!   (`recon_trace:calls(_, 100)`);
//! * **rate** ([`Trace::rate`]): at most `max` events per `per`; past it,
//!   events are dropped and counted, or the session ends
//!   ([`OnExceed::Stop`], `recon_trace`'s `{Max, Ms}` behaviour);
//! * **queue** ([`Trace::max_queue`], 10,000 by default): events the tracer
//!   has not consumed yet. Each event carries a ticket that gives its place
//!   back when the tracer drops the event, so a slow tracer never makes the
//!   node queue events without bound: past the limit they are dropped and
//!   counted.
//!
//! The session ends, and its last message is a [`TraceKind::End`] with its
//! counts, when a limit says so, when [`TraceSession::stop`] is called or
//! the handle dropped, or when the tracer is gone.
//!
//! Cost: every hook first reads one process-wide counter of live sessions,
//! so with no session anywhere tracing costs a load and a predicted branch
//! per send, receive, spawn and poll. With a session, a process that is not
//! traced pays one more load (its own extension pointer). A traced process
//! finds its session through its own state (the session is installed by a
//! signal it applies itself, so no lock or shared map is on its path), and
//! an event past the rate limit costs one uncontended counter increment:
//! the clock is read only once per 64 such events, to see whether a new
//! rate window has begun.
//!
//! The [`tracing`](https://docs.rs/tracing) crate sees processes too, with
//! no session at all: spawns and exits are events of target
//! `beamish::process` (level `TRACE`), every poll of a process runs in a
//! span `process` with its `pid` field (level `TRACE`, so a subscriber that
//! enables it sees the pid on every event a process logs), and GenServer
//! calls are spans `call` of target `beamish::gen_server` (level `DEBUG`).
//!
//! ```
//! use beamish::trace::{Flags, Target, Trace, TraceEvent, TraceKind};
//! # let rt = beamish::Runtime::new().unwrap();
//! # rt.block_on(async {
//! let echo = beamish::spawn(async {
//!     let (from, n) = beamish::receive::<(beamish::Pid, u32)>().await;
//!     from.send(n);
//! });
//! let session = Trace::new(Flags::SEND | Flags::RECEIVE)
//!     .count(10)
//!     .start(Target::Pid(echo), beamish::self_pid())
//!     .unwrap();
//! echo.send((beamish::self_pid(), 7u32));
//! assert_eq!(beamish::receive::<u32>().await, 7);
//! let got = beamish::receive::<TraceEvent>().await;
//! assert!(matches!(got.kind, TraceKind::Receive { .. }) && got.pid == echo);
//! let sent = beamish::receive::<TraceEvent>().await;
//! assert!(matches!(sent.kind, TraceKind::Send { to, .. } if to == beamish::self_pid()));
//! session.stop();
//! # }).unwrap();
//! ```

use std::ops::BitOr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::process::{Header, flags};
use crate::runtime::{Shared, context};
use crate::{Error, Pid, Reason};

/// Live sessions in this OS process: the one load every hook starts with.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// True if any trace session is live anywhere.
#[inline(always)]
pub(crate) fn on() -> bool {
    LIVE.load(Ordering::Relaxed) != 0
}

/// What to trace (a set; combine with `|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// Messages sent ([`TraceKind::Send`]).
    pub const SEND: Flags = Flags(1);
    /// Messages arriving in the mailbox ([`TraceKind::Receive`]).
    pub const RECEIVE: Flags = Flags(1 << 1);
    /// Spawns, exits, links and unlinks (Erlang's `procs`).
    pub const PROCS: Flags = Flags(1 << 2);
    /// Being scheduled in and out (Erlang's `running`).
    pub const RUNNING: Flags = Flags(1 << 3);
    /// GenServer calls made and handled.
    pub const CALLS: Flags = Flags(1 << 4);
    /// Everything.
    pub const ALL: Flags = Flags(0b1_1111);

    /// True if every flag of `other` is in `self`.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// Which processes a session traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One process of this node.
    Pid(Pid),
    /// The process registered under this name now.
    Name(String),
    /// Every process spawned on the tracer's runtime from now on (one
    /// session at a time per runtime).
    New,
}

/// What a rate limit does when exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnExceed {
    /// Drop the events past the rate (counted), keep tracing.
    #[default]
    Drop,
    /// End the session, as `recon_trace` does.
    Stop,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// [`TraceSession::stop`], or its handle was dropped.
    Stopped,
    /// The count limit was reached.
    Count,
    /// The rate limit was exceeded (with [`OnExceed::Stop`]).
    Rate,
    /// The tracer process is gone.
    TracerGone,
    /// Every traced process ended (a session on [`Target::New`] never
    /// ends this way).
    NothingLeft,
}

/// One traced event.
#[derive(Debug)]
#[non_exhaustive]
pub struct TraceEvent {
    /// The traced process.
    pub pid: Pid,
    /// When, since its runtime started.
    pub at: Duration,
    /// What happened.
    pub kind: TraceKind,
    /// Gives the event's place in the tracer's queue back when dropped.
    _ticket: Ticket,
}

/// What a traced process did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceKind {
    /// It sent a message (of this type) to `to`.
    Send {
        /// The receiver.
        to: Pid,
        /// The message's type.
        message: &'static str,
    },
    /// A message (of this type) arrived in its mailbox.
    Receive {
        /// The message's type.
        message: &'static str,
    },
    /// It spawned `child`.
    Spawn {
        /// The new process.
        child: Pid,
    },
    /// It was spawned by `parent` (traced from birth: [`Target::New`]).
    Spawned {
        /// The process that spawned it (`None` from outside any process).
        parent: Option<Pid>,
    },
    /// It ended.
    Exit {
        /// Why.
        reason: Reason,
    },
    /// It linked to `other`.
    Link {
        /// The other process.
        other: Pid,
    },
    /// It unlinked from `other`.
    Unlink {
        /// The other process.
        other: Pid,
    },
    /// A scheduler thread started polling it.
    In,
    /// The poll ended (it waits, or yielded).
    Out,
    /// It made a GenServer call to `server`, answered after `took`.
    Call {
        /// The server.
        server: Pid,
        /// The request's type.
        request: &'static str,
        /// How long the call took (`None`: it failed or timed out).
        took: Option<Duration>,
    },
    /// As a GenServer, it handled a call from `from` in `took`.
    HandleCall {
        /// The caller.
        from: Pid,
        /// The request's type.
        request: &'static str,
        /// Time in `handle_call`.
        took: Duration,
    },
    /// The session ended: the last event the tracer gets from it.
    End {
        /// Why.
        reason: EndReason,
        /// Events delivered.
        delivered: u64,
        /// Events dropped by the rate or queue limit.
        dropped: u64,
    },
}

/// A session's counts, as [`TraceSession::stats`] reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceStats {
    /// Events delivered to the tracer.
    pub delivered: u64,
    /// Events dropped by the rate or queue limit.
    pub dropped: u64,
    /// Delivered events the tracer has not dropped yet.
    pub queued: usize,
    /// Processes traced now.
    pub traced: usize,
    /// Why the session ended, if it did.
    pub ended: Option<EndReason>,
}

/// Configures a trace session (see the module docs).
#[derive(Clone, Debug)]
pub struct Trace {
    flags: Flags,
    count: Option<u64>,
    rate: Option<(u64, Duration, OnExceed)>,
    max_queue: usize,
}

impl Trace {
    /// A session tracing `flags`, with a queue limit of 10,000 events and
    /// no count or rate limit.
    pub fn new(flags: Flags) -> Trace {
        Trace {
            flags,
            count: None,
            rate: None,
            max_queue: 10_000,
        }
    }

    /// Ends the session after `n` events.
    pub fn count(mut self, n: u64) -> Trace {
        self.count = Some(n);
        self
    }

    /// At most `max` events per `per`; `on_exceed` says what happens past
    /// it.
    pub fn rate(mut self, max: u64, per: Duration, on_exceed: OnExceed) -> Trace {
        self.rate = Some((max, per, on_exceed));
        self
    }

    /// At most `n` events delivered and not yet dropped by the tracer.
    pub fn max_queue(mut self, n: usize) -> Trace {
        self.max_queue = n;
        self
    }

    /// Starts the session on the caller's runtime, events going to
    /// `tracer`.
    ///
    /// # Errors
    /// `NoProc` if the target or the tracer is not a live process of this
    /// runtime, `UnknownName` for a name nobody has, `AlreadyTraced` if the
    /// target is traced by another session, `Config` for a zero rate period.
    ///
    /// # Panics
    /// Outside a beamish process (use [`Trace::start_on`] there).
    pub fn start(self, target: Target, tracer: Pid) -> Result<TraceSession, Error> {
        let handle = crate::Handle::current().ok_or(Error::NotInProcess)?;
        self.start_on(&handle, target, tracer)
    }

    /// [`Trace::start`] on the runtime behind `handle`, from any thread.
    pub fn start_on(
        self,
        handle: &crate::Handle,
        target: Target,
        tracer: Pid,
    ) -> Result<TraceSession, Error> {
        let shared = handle.shared();
        if self.rate.is_some_and(|(_, per, _)| per.is_zero()) {
            return Err(Error::Config("a trace rate needs a non-zero period".into()));
        }
        if tracer.is_remote() || !alive(shared, tracer) {
            return Err(Error::NoProc(tracer));
        }
        static IDS: AtomicU64 = AtomicU64::new(1);
        let session = Arc::new(Session {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            tracer,
            flags: self.flags,
            count: self.count,
            rate: self.rate,
            max_queue: self.max_queue,
            shared: Arc::downgrade(shared),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queued: Arc::new(AtomicUsize::new(0)),
            rate_start: AtomicU64::new(coarse_now()),
            rate_count: AtomicU64::new(0),
            ended: Mutex::new(None),
            traced: AtomicUsize::new(0),
            new: AtomicBool::new(false),
            live: AtomicBool::new(true),
        });
        LIVE.fetch_add(1, Ordering::AcqRel);
        let out = TraceSession {
            session: session.clone(),
        };
        if let Err(e) = out.add(target) {
            // Never started: no `End` for the tracer.
            if session.live.swap(false, Ordering::AcqRel) {
                LIVE.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(e);
        }
        Ok(out)
    }
}

fn alive(shared: &Shared, pid: Pid) -> bool {
    let guard = crossbeam_epoch::pin();
    shared.table.get(pid, &guard).is_some()
}

/// A running trace session; stops it when dropped.
#[derive(Debug)]
pub struct TraceSession {
    session: Arc<Session>,
}

impl TraceSession {
    /// Also traces `target`.
    ///
    /// # Errors
    /// As [`Trace::start`]; `NoProc` once the session has ended.
    pub fn add(&self, target: Target) -> Result<(), Error> {
        let s = &self.session;
        let shared = s.shared.upgrade().ok_or(Error::Shutdown)?;
        if !s.live.load(Ordering::Acquire) {
            return Err(Error::NoProc(s.tracer));
        }
        let state = &shared.trace;
        let pid = match target {
            Target::New => {
                let mut new = state.new.write();
                if let Some(other) = &*new
                    && other.live.load(Ordering::Acquire)
                    && !Arc::ptr_eq(other, s)
                {
                    return Err(Error::AlreadyTraced(shared.table.runtime_pid()));
                }
                *new = Some(s.clone());
                s.new.store(true, Ordering::Release);
                return Ok(());
            }
            Target::Name(name) => shared
                .registry
                .whereis(&name)
                .ok_or_else(|| Error::UnknownName(name.into()))?,
            Target::Pid(pid) => pid,
        };
        if pid.is_remote() {
            return Err(Error::NoProc(pid));
        }
        let mut by_pid = state.by_pid.lock();
        match by_pid.get(&pid) {
            Some((id, _)) if *id == s.id => return Ok(()),
            Some((_, other))
                if other
                    .upgrade()
                    .is_some_and(|o| o.live.load(Ordering::Acquire)) =>
            {
                return Err(Error::AlreadyTraced(pid));
            }
            _ => {}
        }
        if !alive(&shared, pid) {
            return Err(Error::NoProc(pid));
        }
        by_pid.insert(pid, (s.id, Arc::downgrade(s)));
        drop(by_pid);
        s.traced.fetch_add(1, Ordering::AcqRel);
        // The process installs the session itself, when it next runs (it is
        // woken by the signal): its hooks then read it without a lock.
        if crate::signal::send(pid, crate::signal::Signal::Trace(Install(s.clone()))).is_err() {
            let mut by_pid = state.by_pid.lock();
            if by_pid.get(&pid).is_some_and(|e| e.0 == s.id) {
                by_pid.remove(&pid);
            }
            s.traced.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::NoProc(pid));
        }
        Ok(())
    }

    /// Ends the session (the tracer gets [`TraceKind::End`]).
    pub fn stop(&self) {
        self.session.end(EndReason::Stopped);
    }

    /// The session's counts.
    pub fn stats(&self) -> TraceStats {
        let s = &self.session;
        TraceStats {
            delivered: s.delivered.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            traced: s.traced.load(Ordering::Acquire),
            ended: s.ended.lock().clone(),
        }
    }
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        self.session.end(EndReason::Stopped);
    }
}

/// Per-runtime tracing state: who is traced by which session (to refuse a
/// second session), and the session tracing new processes. Not on any
/// process's path: hooks use the session the process installed.
#[derive(Default)]
pub(crate) struct State {
    /// Traced processes and their session (with its id).
    by_pid: Mutex<FxHashMap<Pid, (u64, std::sync::Weak<Session>)>>,
    /// The session tracing new processes, if any.
    new: RwLock<Option<Arc<Session>>>,
}

/// A session for a process to install (`Signal::Trace`).
pub(crate) struct Install(Arc<Session>);

impl Install {
    /// The process `h` applies it.
    pub(crate) fn apply(self, h: &Header, local: &mut crate::process::Local) {
        let s = self.0;
        if !s.live.load(Ordering::Acquire) {
            forget(h, &s);
            return;
        }
        let ext = local.ext();
        if let Some(old) = ext.trace.replace(s) {
            forget(h, &old);
        }
        h.flags.fetch_or(flags::TRACED, Ordering::AcqRel);
    }

    /// The process ended before applying it.
    pub(crate) fn dead(self, pid: Pid) {
        let s = self.0;
        if let Some(shared) = s.shared.upgrade() {
            let mut by_pid = shared.trace.by_pid.lock();
            if by_pid.get(&pid).is_some_and(|e| e.0 == s.id) {
                by_pid.remove(&pid);
            }
        }
        s.traced.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `h` no longer traced by `s`.
fn forget(h: &Header, s: &Session) {
    let shared = h.shared();
    {
        let mut by_pid = shared.trace.by_pid.lock();
        if by_pid.get(&h.pid).is_some_and(|e| e.0 == s.id) {
            by_pid.remove(&h.pid);
        }
    }
    s.traced.fetch_sub(1, Ordering::AcqRel);
}

pub(crate) struct Session {
    id: u64,
    tracer: Pid,
    flags: Flags,
    count: Option<u64>,
    rate: Option<(u64, Duration, OnExceed)>,
    max_queue: usize,
    shared: std::sync::Weak<Shared>,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Events delivered and not yet dropped by the tracer.
    queued: Arc<AtomicUsize>,
    /// Clock reading when the rate window began, and events in it.
    rate_start: AtomicU64,
    rate_count: AtomicU64,
    ended: Mutex<Option<EndReason>>,
    /// Processes that have (or are about to install) the session.
    traced: AtomicUsize,
    /// It traces new processes.
    new: AtomicBool,
    live: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("tracer", &self.tracer)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// Gives a queue place back when its event is dropped.
#[derive(Debug)]
struct Ticket(Option<Arc<AtomicUsize>>);

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(q) = &self.0 {
            q.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Session {
    /// Delivers an event of `pid`, within the limits.
    fn emit(&self, shared: &Shared, pid: Pid, kind: TraceKind) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        if let Some((max, per, on_exceed)) = self.rate
            && !self.within_rate(max, per)
        {
            match on_exceed {
                OnExceed::Drop => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                OnExceed::Stop => self.end(EndReason::Rate),
            }
            return;
        }
        let now = shared.clock.now();
        if self.queued.load(Ordering::Acquire) >= self.max_queue {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let n = self.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        if self.count.is_some_and(|c| n > c) {
            self.delivered.fetch_sub(1, Ordering::AcqRel);
            self.end(EndReason::Count);
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let event = TraceEvent {
            pid,
            at: Duration::from_nanos(now),
            kind,
            _ticket: Ticket(Some(self.queued.clone())),
        };
        if crate::runtime::deliver(self.tracer, crate::mailbox::node::NodeBox::message(event))
            .is_err()
        {
            self.end(EndReason::TracerGone);
            return;
        }
        if self.count.is_some_and(|c| n >= c) {
            self.end(EndReason::Count);
        }
    }

    /// Counts an event against the rate; `false` past it. The clock is
    /// read when the window may be over: at the first event past the limit
    /// and then once per 64 events.
    fn within_rate(&self, max: u64, per: Duration) -> bool {
        let n = self.rate_count.fetch_add(1, Ordering::Relaxed);
        if n < max {
            return true;
        }
        if !(n - max).is_multiple_of(64) {
            return false;
        }
        let now = coarse_now();
        let start = self.rate_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) < per.as_nanos() as u64 {
            return false;
        }
        // A new window: whoever moves its start resets the count.
        if self
            .rate_start
            .compare_exchange(start, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.rate_count.store(1, Ordering::Release);
            return true;
        }
        false
    }

    /// Ends the session once and tells the tracer. Traced processes drop
    /// the session at their next event.
    fn end(&self, reason: EndReason) {
        if !self.live.swap(false, Ordering::AcqRel) {
            return;
        }
        *self.ended.lock() = Some(reason.clone());
        LIVE.fetch_sub(1, Ordering::AcqRel);
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let state = &shared.trace;
        if self.new.load(Ordering::Acquire) {
            let mut new = state.new.write();
            if new.as_ref().is_some_and(|s| s.id == self.id) {
                *new = None;
            }
        }
        let event = TraceEvent {
            pid: self.tracer,
            at: Duration::from_nanos(shared.clock.now()),
            kind: TraceKind::End {
                reason,
                delivered: self.delivered.load(Ordering::Relaxed),
                dropped: self.dropped.load(Ordering::Relaxed),
            },
            _ticket: Ticket(None),
        };
        let _ = crate::runtime::deliver(self.tracer, crate::mailbox::node::NodeBox::message(event));
    }
}

/// A coarse monotonic clock (ns), cheap enough for the rate limit.
fn coarse_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The session `h` (the running process) installed, if it traces `flag`.
/// A session that has ended is dropped here.
///
/// The reference borrows the `Arc` in the process's own state without a
/// reference count: only the process's thread changes that state (here,
/// when a session has ended; in `Install::apply`, while it drains signals;
/// when it ends), and none of those runs while a hook uses the session.
fn session_of(h: &Header, flag: Flags) -> Option<&Session> {
    if h.flags.load(Ordering::Relaxed) & flags::TRACED == 0 {
        return None;
    }
    // SAFETY: `h` is the running process (every hook runs on its thread);
    // short borrow, no other borrow of its local state is alive.
    let s = session_in(h, unsafe { &mut *h.local.get() }, flag)?;
    // SAFETY: see above: the `Arc` outlives every use of the reference.
    Some(unsafe { &*Arc::as_ptr(s) })
}

/// [`session_of`] for a caller that holds the process's local state.
fn session_in<'l>(
    h: &Header,
    local: &'l mut crate::process::Local,
    flag: Flags,
) -> Option<&'l Arc<Session>> {
    if h.flags.load(Ordering::Relaxed) & flags::TRACED == 0 {
        return None;
    }
    let ext = local.ext.as_mut()?;
    let live = ext.trace.as_ref()?.live.load(Ordering::Acquire);
    if !live {
        let s = ext.trace.take()?;
        h.flags.fetch_and(!flags::TRACED, Ordering::AcqRel);
        forget(h, &s);
        return None;
    }
    let s = ext.trace.as_ref()?;
    s.flags.contains(flag).then_some(s)
}

/// The running process's header, if any.
fn current<'a>() -> Option<&'a Header> {
    // SAFETY: the current process is alive during its poll, which bounds
    // every use (callers never keep the reference).
    context::current().map(|p| unsafe { &*p.as_ptr() })
}

// ------------------------------------------------------------ hooks
//
// Each is called only after `on()` said some session is live, and on the
// thread of the process it is about.

/// The running process sends a message of type `message` to `to`.
pub(crate) fn sent(to: Pid, message: &'static str) {
    let Some(h) = current() else { return };
    if let Some(s) = session_of(h, Flags::SEND) {
        s.emit(h.shared(), h.pid, TraceKind::Send { to, message });
    }
}

/// What to call for each message arriving in `h`'s queue, if it is traced
/// for received messages.
pub(crate) fn receives<'h>(
    h: &'h Header,
    local: &mut crate::process::Local,
) -> Option<impl Fn(&'static str) + 'h> {
    let s = session_in(h, local, Flags::RECEIVE)?.clone();
    Some(move |message| s.emit(h.shared(), h.pid, TraceKind::Receive { message }))
}

/// The session a process being spawned on `shared` is traced by from
/// birth, if any.
pub(crate) fn trace_new(shared: &Shared) -> Option<Arc<Session>> {
    let s = shared.trace.new.read().clone()?;
    s.live.load(Ordering::Acquire).then_some(s)
}

/// Local state for a process traced from birth by `s`.
pub(crate) fn install_at_birth(s: Arc<Session>, pid: Pid, local: &mut crate::process::Local) {
    if let Some(shared) = s.shared.upgrade() {
        shared
            .trace
            .by_pid
            .lock()
            .insert(pid, (s.id, Arc::downgrade(&s)));
    }
    s.traced.fetch_add(1, Ordering::AcqRel);
    local.ext().trace = Some(s);
}

/// `child` was spawned (by the running process `parent`, if any); `from
/// birth` is the session that traces it from birth.
pub(crate) fn spawned(
    shared: &Shared,
    parent: Option<&Header>,
    child: Pid,
    from_birth: Option<&Arc<Session>>,
) {
    if let Some(ph) = parent
        && let Some(s) = session_of(ph, Flags::PROCS)
    {
        s.emit(shared, ph.pid, TraceKind::Spawn { child });
    }
    if let Some(s) = from_birth
        && s.flags.contains(Flags::PROCS)
    {
        s.emit(
            shared,
            child,
            TraceKind::Spawned {
                parent: parent.map(|p| p.pid),
            },
        );
    }
}

/// The traced process `h` ends with `reason`; `session` is what its
/// local state held.
pub(crate) fn exited(h: &Header, session: Option<Arc<Session>>, reason: &Reason) {
    let Some(s) = session else { return };
    if s.flags.contains(Flags::PROCS) {
        s.emit(
            h.shared(),
            h.pid,
            TraceKind::Exit {
                reason: reason.clone(),
            },
        );
    }
    forget(h, &s);
    let left = s.traced.load(Ordering::Acquire);
    if left == 0 && !s.new.load(Ordering::Acquire) {
        s.end(EndReason::NothingLeft);
    }
}

/// The running process linked to (`true`) or unlinked from `other`.
pub(crate) fn linked(other: Pid, link: bool) {
    let Some(h) = current() else { return };
    if let Some(s) = session_of(h, Flags::PROCS) {
        let kind = if link {
            TraceKind::Link { other }
        } else {
            TraceKind::Unlink { other }
        };
        s.emit(h.shared(), h.pid, kind);
    }
}

/// A scheduler thread starts (`true`) or ends a poll of `h`.
pub(crate) fn scheduled(h: &Header, start: bool) {
    if let Some(s) = session_of(h, Flags::RUNNING) {
        let kind = if start { TraceKind::In } else { TraceKind::Out };
        s.emit(h.shared(), h.pid, kind);
    }
}

/// The running process made a call to `server`.
pub(crate) fn called(server: Pid, request: &'static str, took: Option<Duration>) {
    let Some(h) = current() else { return };
    if let Some(s) = session_of(h, Flags::CALLS) {
        s.emit(
            h.shared(),
            h.pid,
            TraceKind::Call {
                server,
                request,
                took,
            },
        );
    }
}

/// The running process (a GenServer) handled a call from `from`.
pub(crate) fn handled_call(from: Pid, request: &'static str, took: Duration) {
    let Some(h) = current() else { return };
    if let Some(s) = session_of(h, Flags::CALLS) {
        s.emit(
            h.shared(),
            h.pid,
            TraceKind::HandleCall {
                from,
                request,
                took,
            },
        );
    }
}
