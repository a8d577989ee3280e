//! The runtime: scheduler threads, the process table, timers, the registry,
//! and the way in from ordinary threads ([`Runtime::block_on`], [`Handle`]).
//!
//! Shutting down ([`Runtime::shutdown`], or dropping the runtime) goes:
//!
//! 1. refuse new work from outside (`Handle::spawn` returns
//!    [`Error::Shutdown`]); processes spawned from inside during shutdown are
//!    told to exit at once;
//! 2. send every process an untrappable exit signal with reason `shutdown`
//!    (links and monitors fire with `shutdown`, as the processes end in their
//!    own threads and run their destructors there);
//! 3. wait until the process table is empty (bounded by
//!    [`Builder::shutdown_timeout`]; a process stuck in code that never
//!    awaits cannot be stopped, and is reported and abandoned);
//! 4. stop and join the scheduler threads, the monitor thread and the IO
//!    thread, and free the runtime's id.

pub(crate) mod context;

use std::any::{Any, TypeId};
use std::future::Future;
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_deque::Worker;
use crossbeam_epoch::Guard;
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxHashMap;

use crate::loom::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use crate::mailbox::inbound::Pushed;
use crate::mailbox::node::NodeBox;
use crate::process::table::{SlotCache, Table};
use crate::process::{self, Header, Task};
use crate::registry::Registry;
use crate::scheduler::sysmon::{self, SysmonWake};
use crate::scheduler::worker::Core;
use crate::scheduler::{Scheduler, WorkerShared};
use crate::timer::Timers;
use crate::timer::clock::Clock;
use crate::{Error, LongSchedule, Pid, Reason};

// ------------------------------------------------------------ runtime ids

/// Every live runtime of this OS process, by id, so that a pid alone (which
/// carries its runtime's id) is enough to send to it from any thread.
static RUNTIMES: [AtomicPtr<Shared>; 256] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 256];
/// Where the search for a free id starts: ids are reused round-robin, as
/// late as possible.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// Distinguishes runtimes that reuse an id.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// The live runtime with this id.
pub(crate) fn lookup(id: u8, _guard: &Guard) -> Option<&Shared> {
    // SAFETY: a runtime's `Shared` is freed through the epoch after its id
    // was cleared, so it outlives the guard.
    unsafe { RUNTIMES[id as usize].load(Ordering::Acquire).as_ref() }
}

fn claim_id(shared: *mut Shared) -> Option<u8> {
    let start = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    for i in 0..256u64 {
        let id = ((start + i) % 256) as usize;
        if RUNTIMES[id]
            .compare_exchange(
                std::ptr::null_mut(),
                shared,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return Some(id as u8);
        }
    }
    None
}

/// The runtime of the process being polled on this thread.
///
/// The reference is valid for the current poll only (the runtime outlives
/// every process); callers never keep it.
pub(crate) fn current_shared<'a>(what: &str) -> &'a Shared {
    let p = context::expect_current(what);
    // SAFETY: the process is running, so it and its runtime are alive for
    // the duration of this poll, which bounds every use of the reference.
    unsafe { p.as_ref().rt.as_ref() }
}

/// Sends a node to a pid of any runtime of this OS process.
pub(crate) fn deliver(to: Pid, node: NodeBox) -> Result<(), NodeBox> {
    if to.is_remote() {
        #[cfg(feature = "dist")]
        return crate::dist::deliver_remote(to, node);
        #[cfg(not(feature = "dist"))]
        return Err(node);
    }
    if let Some(core) = context::core()
        && core.shared.id == to.runtime()
    {
        return core.shared.deliver(to, node);
    }
    let guard = crossbeam_epoch::pin();
    match lookup(to.runtime(), &guard) {
        Some(shared) => shared.deliver_with(to, node, &guard),
        None => Err(node),
    }
}

// ------------------------------------------------------------ configuration

/// Settings fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Regular scheduler threads.
    pub(crate) worker_threads: usize,
    /// Spare threads the monitor may start when every scheduler is stuck.
    pub(crate) max_spare_threads: usize,
    /// A poll longer than this is reported as `long_schedule`.
    pub(crate) long_schedule: Duration,
    /// How long shutdown waits for processes to end.
    pub(crate) shutdown_timeout: Duration,
    /// Prefix of thread names.
    pub(crate) thread_name: String,
    /// Seed of the scheduler's randomness (victim selection when stealing).
    pub(crate) seed: Option<u64>,
}

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = beamish::Runtime::builder()
///     .worker_threads(2)
///     .long_schedule(std::time::Duration::from_millis(20))
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(async { 1 + 1 }).unwrap(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    config: Config,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: one scheduler thread per core, as many spare threads,
    /// `long_schedule` at 10 ms, shutdown waiting up to 5 s.
    pub fn new() -> Builder {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Builder {
            config: Config {
                worker_threads: cores,
                max_spare_threads: cores,
                long_schedule: Duration::from_millis(10),
                shutdown_timeout: Duration::from_secs(5),
                thread_name: "beamish".into(),
                seed: None,
            },
        }
    }

    /// Number of scheduler threads (default: the number of cores).
    pub fn worker_threads(mut self, n: usize) -> Builder {
        self.config.worker_threads = n;
        self
    }

    /// Spare scheduler threads the watchdog may start while every regular
    /// one is stuck in a process that does not yield (default: the number of
    /// cores; 0 disables spares).
    pub fn max_spare_threads(mut self, n: usize) -> Builder {
        self.config.max_spare_threads = n;
        self
    }

    /// A process that runs longer than this without reaching an await point
    /// is reported (`long_schedule`) and its scheduler's queue handed to the
    /// others (default 10 ms).
    pub fn long_schedule(mut self, threshold: Duration) -> Builder {
        self.config.long_schedule = threshold;
        self
    }

    /// How long shutdown waits for processes to end (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Builder {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Prefix of the runtime's thread names (default `beamish`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder {
        self.config.thread_name = name.into();
        self
    }

    /// Seeds the scheduler's randomness (which thread to steal from first).
    /// Every source of scheduling randomness draws from this seed, so a
    /// run can be repeated with the same choices (default: a seed that
    /// differs per runtime).
    pub fn seed(mut self, seed: u64) -> Builder {
        self.config.seed = Some(seed);
        self
    }

    /// Starts the runtime's threads.
    pub fn build(self) -> Result<Runtime, Error> {
        Runtime::start(self.config)
    }
}

// ------------------------------------------------------------ shared state

/// Everything the threads of one runtime share.
pub(crate) struct Shared {
    /// Id in `RUNTIMES` (also in every pid of this runtime).
    pub(crate) id: u8,
    /// Unique per runtime ever created in this OS process.
    pub(crate) instance: u64,
    /// Seed for scheduling randomness (victim selection).
    pub(crate) seed: u64,
    /// Settings.
    pub(crate) config: Config,
    /// pid → process.
    pub(crate) table: Table,
    /// Run queues and scheduler thread state.
    pub(crate) sched: Scheduler,
    /// Registered names.
    pub(crate) registry: Registry,
    /// Pending timers.
    pub(crate) timers: Timers,
    /// The clock every timestamp comes from.
    pub(crate) clock: Clock,
    /// Wakes the monitor thread.
    pub(crate) sysmon: SysmonWake,
    /// Set once shutdown has begun.
    pub(crate) shutting_down: AtomicBool,
    /// Slots for processes spawned from outside the scheduler threads.
    pub(crate) external_slots: Mutex<SlotCache>,
    /// Signalled when the last process ends.
    pub(crate) all_exited: (Mutex<()>, Condvar),
    /// Subscribers to `long_schedule` reports.
    pub(crate) long_schedule_subscribers: Mutex<Vec<Pid>>,
    /// Introspection state (`observe`).
    pub(crate) observe: crate::observe::hub::Hub,
    /// Trace sessions' state (`trace`).
    pub(crate) trace: crate::trace::State,
    /// State that modules above the runtime keep per runtime (one value
    /// per type, made on first use), so that it is not process-wide.
    pub(crate) extensions: Mutex<FxHashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Local queues for spare threads, taken when a spare starts.
    spare_queues: Mutex<Vec<(usize, Worker<Task>)>>,
    /// Spare threads started so far.
    spare_threads: Mutex<Vec<JoinHandle<()>>>,
    /// Weak self, for starting spare threads from the monitor.
    this: std::sync::Weak<Shared>,
    /// The tokio reactor processes can use.
    #[cfg(feature = "tokio")]
    pub(crate) io: tokio::runtime::Handle,
}

impl Shared {
    /// This runtime's value of type `T`, made with `T::default()` on first
    /// use (`None` cannot happen: the entry of `T`'s id is always a `T`).
    #[cfg_attr(not(feature = "dist"), allow(dead_code))]
    pub(crate) fn extension<T: Default + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let mut map = self.extensions.lock();
        let any = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        drop(map);
        any.downcast::<T>().ok()
    }

    /// Sends a node to a pid of this runtime.
    pub(crate) fn deliver(&self, to: Pid, node: NodeBox) -> Result<(), NodeBox> {
        let guard = crossbeam_epoch::pin();
        self.deliver_with(to, node, &guard)
    }

    pub(crate) fn deliver_with(
        &self,
        to: Pid,
        node: NodeBox,
        guard: &Guard,
    ) -> Result<(), NodeBox> {
        let Some(h) = self.table.get(to, guard) else {
            return Err(node);
        };
        match h.inbound.push(node) {
            Ok(Pushed::First) => {
                process::wake(NonNull::from(h));
                Ok(())
            }
            Ok(Pushed::More) => Ok(()),
            Err(node) => Err(node),
        }
    }

    /// Schedules a process that was woken (by a message, a timer, IO).
    pub(crate) fn schedule_woken(&self, task: Task) {
        match context::core() {
            Some(core) if std::ptr::eq(&*core.shared, self) => core.schedule_woken(task),
            _ => self.sched.inject(task),
        }
    }

    /// Schedules a new or yielding process at the back of a queue.
    pub(crate) fn schedule_back(&self, task: Task) {
        match context::core() {
            Some(core) if std::ptr::eq(&*core.shared, self) => core.push_local(task),
            _ => self.sched.inject(task),
        }
    }

    /// True if the monitor considers some scheduler thread stuck.
    pub(crate) fn any_stuck(&self) -> bool {
        self.sched.workers[..self.sched.num_workers]
            .iter()
            .any(|w| w.stuck.load(Ordering::Acquire))
    }

    /// A scheduler thread parked or woke: the monitor may need to start or
    /// stop sampling.
    pub(crate) fn sysmon_idle_changed(&self) {
        let sample = sysmon::SAMPLE.as_nanos() as u64;
        if self.sysmon.sleeping_until() > self.clock.now().saturating_add(sample) {
            self.sysmon.wake();
        }
    }

    /// Sends a `long_schedule` report to every subscriber.
    pub(crate) fn notify_long_schedule(&self, report: LongSchedule) {
        self.observe
            .long_schedule(crate::observe::LongScheduleEvent {
                at: Duration::from_nanos(self.clock.now()),
                pid: report.pid,
                duration: report.duration,
            });
        let mut subs = self.long_schedule_subscribers.lock();
        subs.retain(|&pid| self.deliver(pid, NodeBox::message(report.clone())).is_ok());
    }

    /// Starts a spare scheduler thread, if one is allowed.
    pub(crate) fn start_spare(&self) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let Some((index, queue)) = self.spare_queues.lock().pop() else {
            return;
        };
        self.sched.spares.fetch_add(1, Ordering::AcqRel);
        self.sched.workers[index]
            .active
            .store(true, Ordering::Release);
        tracing::warn!(index, "every scheduler thread is stuck: starting a spare");
        let name = format!("{}-spare-{index}", self.config.thread_name);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let _io = this.enter_io();
            let core = Core::new(this.clone(), index, true, queue);
            core.run();
            let Core { local, .. } = core;
            this.sched.workers[index]
                .active
                .store(false, Ordering::Release);
            this.sched.spares.fetch_sub(1, Ordering::AcqRel);
            this.spare_queues.lock().push((index, local));
        });
        match spawned {
            Ok(h) => self.spare_threads.lock().push(h),
            Err(e) => {
                tracing::error!(%e, "could not start a spare scheduler thread");
                self.sched.workers[index]
                    .active
                    .store(false, Ordering::Release);
                self.sched.spares.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Enters the tokio reactor on this thread.
    pub(crate) fn enter_io(&self) -> impl Sized + '_ {
        #[cfg(feature = "tokio")]
        {
            self.io.enter()
        }
    }

    /// Called by a process that ends as the table empties.
    pub(crate) fn last_process_exited(&self) {
        let _g = self.all_exited.0.lock();
        self.all_exited.1.notify_all();
    }
}

// ------------------------------------------------------------ Runtime

/// A beamish runtime: scheduler threads running processes.
///
/// ```
/// let rt = beamish::Runtime::new().unwrap();
/// let answer = rt.block_on(async {
///     let me = beamish::self_pid();
///     beamish::spawn(async move { me.send(42u32) });
///     beamish::receive::<u32>().await
/// });
/// assert_eq!(answer, Ok(42));
/// ```
pub struct Runtime {
    /// Shared with the threads.
    shared: Arc<Shared>,
    /// Scheduler threads.
    workers: Vec<JoinHandle<()>>,
    /// The monitor thread.
    sysmon: Option<JoinHandle<()>>,
    /// The IO reactor's runtime and its thread.
    #[cfg(feature = "tokio")]
    io: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
    /// Shut down already.
    done: bool,
}

impl Runtime {
    /// A runtime with the default settings ([`Builder::new`]).
    pub fn new() -> Result<Runtime, Error> {
        Builder::new().build()
    }

    /// A builder.
    pub fn builder() -> Builder {
        Builder::new()
    }

    fn start(config: Config) -> Result<Runtime, Error> {
        if config.worker_threads == 0 {
            return Err(Error::Config("worker_threads must be at least 1".into()));
        }
        if config.worker_threads + config.max_spare_threads > 256 {
            return Err(Error::Config("at most 256 scheduler threads".into()));
        }
        // The tokio reactor lives on its own thread: only the thread that
        // runs a current-thread runtime's `block_on` drives its IO and timer
        // drivers, so the runtime moves into that thread and the scheduler
        // threads enter its handle.
        #[cfg(feature = "tokio")]
        let (io_handle, io_stop, io_thread) = {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let name = format!("{}-io", config.thread_name);
            let thread = std::thread::Builder::new().name(name).spawn(move || {
                rt.block_on(async {
                    let _ = rx.await;
                });
                rt.shutdown_background();
            })?;
            (handle, tx, thread)
        };

        let total = config.worker_threads + config.max_spare_threads;
        let queues: Vec<Worker<Task>> = (0..total).map(|_| Worker::new_fifo()).collect();
        let workers: Box<[WorkerShared]> = queues
            .iter()
            .map(|q| WorkerShared::new(q.stealer()))
            .collect();
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let mut queues = queues.into_iter().enumerate();
        let regular: Vec<(usize, Worker<Task>)> =
            queues.by_ref().take(config.worker_threads).collect();
        let spares: Vec<(usize, Worker<Task>)> = queues.collect();
        let num_workers = config.worker_threads;

        let shared = Arc::new_cyclic(|this| Shared {
            id: 0,
            instance,
            seed: config
                .seed
                .unwrap_or(instance.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x9E37_79B9_7F4A_7C15),
            config: config.clone(),
            table: Table::new(0, instance),
            sched: Scheduler::new(workers, num_workers),
            registry: Registry::new(),
            timers: Timers::new(),
            clock: Clock::new(),
            sysmon: SysmonWake::new(),
            shutting_down: AtomicBool::new(false),
            external_slots: Mutex::new(SlotCache::default()),
            all_exited: (Mutex::new(()), Condvar::new()),
            long_schedule_subscribers: Mutex::new(Vec::new()),
            observe: crate::observe::hub::Hub::new(),
            trace: crate::trace::State::default(),
            extensions: Mutex::new(FxHashMap::default()),
            spare_queues: Mutex::new(spares),
            spare_threads: Mutex::new(Vec::new()),
            this: this.clone(),
            #[cfg(feature = "tokio")]
            io: io_handle,
        });
        // The id is known only once the Arc exists; fix it up before any
        // other thread can see the runtime.
        let raw = Arc::into_raw(shared) as *mut Shared;
        let Some(id) = claim_id(raw) else {
            // SAFETY: `raw` came from `Arc::into_raw` just above.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(Error::Config("at most 256 runtimes at once".into()));
        };
        // SAFETY: no other thread can reach `raw` yet except through
        // RUNTIMES, and nothing reads a runtime without a process of it
        // existing; we are the only owner of the allocation.
        unsafe {
            (*raw).id = id;
            (*raw).table = Table::new(id, instance);
            Arc::increment_strong_count(raw);
        }
        // SAFETY: one strong count belongs to RUNTIMES, this one to us.
        let shared = unsafe { Arc::from_raw(raw) };

        let mut threads = Vec::with_capacity(num_workers);
        for (index, queue) in regular {
            let shared = shared.clone();
            shared.sched.workers[index]
                .active
                .store(true, Ordering::Release);
            let name = format!("{}-{index}", config.thread_name);
            let h = std::thread::Builder::new().name(name).spawn(move || {
                let _io = shared.enter_io();
                let core = Core::new(shared.clone(), index, false, queue);
                core.run();
                shared.sched.workers[index]
                    .active
                    .store(false, Ordering::Release);
            })?;
            threads.push(h);
        }
        let sys = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("{}-sysmon", config.thread_name))
                .spawn(move || sysmon::run(shared))?
        };
        Ok(Runtime {
            shared,
            workers: threads,
            sysmon: Some(sys),
            #[cfg(feature = "tokio")]
            io: Some((io_stop, io_thread)),
            done: false,
        })
    }

    /// A handle for spawning and sending from other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Runs `future` as a process (the root process) and blocks the calling
    /// thread until it finishes. Call it from outside the runtime's own
    /// processes (blocking a scheduler thread on itself can deadlock). Returns its output, or the reason it ended
    /// without finishing (a panic, an exit signal, [`crate::exit`]).
    ///
    /// ```
    /// let rt = beamish::Runtime::new().unwrap();
    /// assert_eq!(rt.block_on(async { 7 }), Ok(7));
    /// let err = rt.block_on(async { beamish::exit::<()>(beamish::Reason::other("boom")).await });
    /// assert_eq!(err, Err(beamish::Reason::other("boom")));
    /// ```
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, Reason>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().block_on(future)
    }

    /// Ends every process (reason `shutdown`) and stops the threads. Also
    /// done when the runtime is dropped.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + shared.config.shutdown_timeout;
        {
            let guard = crossbeam_epoch::pin();
            for pid in shared.table.pids(&guard) {
                crate::signal::send_forced_exit(shared, pid, Reason::Shutdown);
            }
        }
        {
            let mut g = shared.all_exited.0.lock();
            while shared.table.live() > 0 {
                if shared.all_exited.1.wait_until(&mut g, deadline).timed_out() {
                    break;
                }
                // Late spawns during shutdown get their own forced exit.
                drop(g);
                let guard = crossbeam_epoch::pin();
                for pid in shared.table.pids(&guard) {
                    crate::signal::send_forced_exit(shared, pid, Reason::Shutdown);
                }
                g = shared.all_exited.0.lock();
            }
        }
        let left = shared.table.live();
        if left > 0 {
            tracing::error!(
                left,
                "shutdown timed out: processes that never yield are abandoned"
            );
        }
        shared.sched.stopping.store(true, Ordering::SeqCst);
        shared.sched.unpark_all();
        shared.sysmon.wake();
        let stuck = left > 0;
        for h in self.workers.drain(..) {
            if stuck && !h.is_finished() {
                continue; // a thread stuck in a process cannot be joined
            }
            let _ = h.join();
        }
        if let Some(h) = self.sysmon.take() {
            let _ = h.join();
        }
        let spares: Vec<_> = shared.spare_threads.lock().drain(..).collect();
        for h in spares {
            shared.sched.unpark_all();
            if !stuck || h.is_finished() {
                let _ = h.join();
            }
        }
        shared.timers.clear();
        #[cfg(feature = "tokio")]
        if let Some((stop, thread)) = self.io.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        // Free the id; the RUNTIMES reference is dropped once no thread can
        // still be reading it.
        let raw = Arc::as_ptr(&self.shared) as *mut Shared;
        if RUNTIMES[shared.id as usize]
            .compare_exchange(
                raw,
                std::ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let addr = raw as usize;
            let guard = crossbeam_epoch::pin();
            // SAFETY: RUNTIMES held one strong count, released after every
            // reader pinned before the id was cleared has unpinned.
            unsafe {
                guard.defer_unchecked(move || drop(Arc::from_raw(addr as *const Shared)));
            }
            if stuck {
                // Threads stuck in a process still point at the runtime.
                std::mem::forget(self.shared.clone());
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("id", &self.shared.id)
            .finish()
    }
}

// ------------------------------------------------------------ Handle

/// A cloneable way into a runtime from any thread.
///
/// ```
/// let rt = beamish::Runtime::new().unwrap();
/// let handle = rt.handle();
/// let pid = std::thread::spawn(move || handle.spawn(async {}).unwrap()).join().unwrap();
/// # let _ = pid;
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// The handle of the runtime running the calling thread's process, if
    /// the caller is a scheduler thread.
    #[cfg_attr(not(feature = "dist"), allow(dead_code))]
    pub(crate) fn current() -> Option<Handle> {
        context::core().map(|core| Handle {
            shared: core.shared.clone(),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The runtime's own pid (the sender of signals from outside any
    /// process).
    #[cfg_attr(not(feature = "dist"), allow(dead_code))]
    pub(crate) fn runtime_pid(&self) -> Pid {
        self.shared.table.runtime_pid()
    }

    /// Spawns a process from outside the runtime.
    pub fn spawn<F>(&self, future: F) -> Result<Pid, Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        crate::SpawnOptions::new()
            .spawn_on(&self.shared, future)
            .map(|s| s.pid)
    }

    /// Spawns with options from outside the runtime.
    pub fn spawn_with<F>(&self, options: crate::SpawnOptions, future: F) -> Result<Pid, Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        options.spawn_on(&self.shared, future).map(|s| s.pid)
    }

    /// The pid registered under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.shared.registry.whereis(name)
    }

    /// Every live process.
    pub fn processes(&self) -> Vec<Pid> {
        let guard = crossbeam_epoch::pin();
        self.shared.table.pids(&guard)
    }

    /// Number of live processes.
    pub fn process_count(&self) -> usize {
        self.shared.table.live()
    }

    /// Information about a process (blocks until it answers).
    pub fn process_info(&self, pid: Pid) -> Option<crate::ProcessInfo> {
        crate::process::info::request_blocking(&self.shared, pid)
    }

    /// As [`Runtime::block_on`].
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, Reason>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // The output is parked by the root future and handed over by the
        // exit hook, which runs once the process has ended (its links and
        // monitors fired): `block_on` returns only after that.
        let slot = Arc::new(OneShot::new());
        let output: Arc<Mutex<Option<F::Output>>> = Arc::new(Mutex::new(None));
        let on_exit = slot.clone();
        let parked = output.clone();
        let root = async move {
            let out = future.await;
            *parked.lock() = Some(out);
        };
        let hook = Box::new(move |reason: &Reason| {
            let result = match output.lock().take() {
                Some(out) => Ok(out),
                None => Err(reason.clone()),
            };
            on_exit.set(result);
        });
        let spawned = crate::SpawnOptions::new()
            .exit_hook(hook)
            .spawn_on(&self.shared, root);
        if spawned.is_err() {
            return Err(Reason::Shutdown);
        }
        slot.wait()
    }
}

/// A value handed from a process to a thread outside the runtime.
pub(crate) struct OneShot<T> {
    /// The value, once set (`Some(None)`: taken already).
    value: Mutex<Option<Option<T>>>,
    /// Signalled when the value is set.
    ready: Condvar,
}

impl<T> OneShot<T> {
    pub(crate) fn new() -> OneShot<T> {
        OneShot {
            value: Mutex::new(None),
            ready: Condvar::new(),
        }
    }

    /// Sets the value (replacing one not yet taken).
    pub(crate) fn set(&self, v: T) {
        *self.value.lock() = Some(Some(v));
        self.ready.notify_all();
    }

    /// Blocks until the value is set, and takes it.
    pub(crate) fn wait(&self) -> T {
        let mut g = self.value.lock();
        loop {
            if let Some(v) = g.as_mut().and_then(Option::take) {
                return v;
            }
            self.ready.wait(&mut g);
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.shared.id)
            .finish()
    }
}

/// Runs `future` as the root process of a new default runtime, then shuts
/// the runtime down. The quickest way to start.
///
/// ```
/// let out = beamish::run(async { "done" }).unwrap();
/// assert_eq!(out, "done");
/// ```
pub fn run<F>(future: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = Runtime::new()?;
    let out = rt.block_on(future).map_err(Error::Exited);
    rt.shutdown();
    out
}

/// Asserts `Header` is usable across threads (used by `Task`).
const _: fn() = || {
    fn is_sync<T: Sync>() {}
    is_sync::<Header>();
};
