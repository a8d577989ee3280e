//! Tasks: run one future in its own process and collect its result, like
//! Elixir's `Task`, and a [`TaskSupervisor`] for tasks that must not take
//! their caller down with them.
//!
//! # The protocol
//!
//! A task is a process that runs a future, sends the future's output to its
//! *owner* (the process that started it) tagged with a reference only that
//! owner knows, and exits `normal`. The owner monitors the task, so it learns
//! of a crash from the [`Down`] instead of waiting in vain:
//!
//! 1. The owner takes a [`mark`] of its mailbox, so waiting for the reply
//!    skips every older message (a wait costs the same however long the
//!    mailbox is).
//! 2. [`Task::spawn_async`] spawns the task linked to and monitored by the
//!    owner, atomically, before it runs; the reply tag is made beforehand and
//!    moved into the task. [`TaskSupervisor::async_nolink`] asks the
//!    supervisor to spawn the task (linked to the supervisor, not to the
//!    owner); the task then waits for a *go* message. The owner monitors the
//!    new pid and sends *go* with the monitor as the reply tag, so the task
//!    cannot finish before the owner watches it: its `Down` always carries
//!    its real exit reason, never `noproc`. While it waits for *go*, the task
//!    monitors the owner and gives up with `{shutdown, Reason}` if the owner
//!    dies first (Elixir does the same).
//! 3. The owner waits ([`Task::await_result`], [`Task::yield_result`]) for
//!    the first message after the mark that is either the tagged reply or the
//!    `Down` of the monitor. The reply is sent before the task exits, so it
//!    always comes before the `Down`. On the reply the monitor is dropped and
//!    its `Down`, if already there, flushed.
//! 4. [`Task::shutdown`] sends the exit signal `shutdown`, waits for the
//!    `Down` (then sends `kill` after the timeout), and flushes the reply if
//!    it arrived meanwhile: afterwards nothing of the task is left in the
//!    owner's mailbox. This is also how to clean up after a timed-out wait:
//!    a reply that comes late otherwise stays in the mailbox.
//!
//! # Links, as in Elixir
//!
//! A task from [`Task::spawn_async`] is linked to its owner: if the task
//! crashes, the owner gets the exit signal and dies with the same reason
//! unless it traps exits (then it gets an [`Exit`] message *and* the awaited
//! result is `Err(Error::Exited(reason))`). If the owner dies, the task dies
//! with it. A trapping owner also gets `Exit { reason: normal }` when a
//! linked task ends normally. Use [`TaskSupervisor::async_nolink`] when a
//! crash of the task must not reach the caller.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;

use crate::{
    Down, Error, Exit, Mark, Message, Pid, Reason, Ref, SpawnOptions, demonitor_flush, mark,
    monitor, receive_if, receive_match, self_pid, try_self_pid, unlink,
};

/// How long [`Task::await_default`] waits: Elixir's default for `Task.await`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a [`TaskSupervisor`] waits for a child to end after the exit
/// signal `shutdown` before it sends `kill`: the `shutdown: 5000` default of
/// Elixir's `Task.Supervisor` children.
const CHILD_SHUTDOWN: Duration = Duration::from_secs(5);

/// How long a supervised task waits for its owner's go-ahead before it
/// exits with `timeout`: Elixir's value. The owner sends it right after the
/// supervisor's answer, with no wait in between, so only an owner that
/// abandoned its request (dropped the future) or hangs runs into it.
const GO_TIMEOUT: Duration = Duration::from_secs(5);

/// The result of a task, sent to its owner.
struct Reply<T> {
    /// The tag only the owner knows.
    tag: Ref,
    /// The future's output.
    value: T,
}

/// The owner's go-ahead to a task started by a supervisor: it carries the
/// tag to reply with (the owner's monitor of the task).
struct Go(Ref);

/// A task: a process running one future whose output its owner collects,
/// like Elixir's `Task`.
///
/// A `Task` is created by [`Task::spawn_async`] (linked to the caller) or
/// [`TaskSupervisor::async_nolink`] (not linked). Only the process that
/// created it may wait for it; the others panic. Every task should end in
/// one of [`await_result`](Task::await_result) or
/// [`yield_result`](Task::yield_result) returning `Some`, or in
/// [`shutdown`](Task::shutdown): otherwise its reply and its `Down` stay in
/// the owner's mailbox.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::otp::Task;
///
/// let mut task = Task::spawn_async(async { 6 * 7 });
/// assert_eq!(task.await_default().await, Ok(42));
/// # }).unwrap();
/// ```
#[must_use = "a task's reply stays in the mailbox unless it is awaited or shut down"]
pub struct Task<T> {
    /// The task's process.
    pid: Pid,
    /// The owner's monitor of `pid`.
    monitor: Ref,
    /// The tag of the reply.
    tag: Ref,
    /// The owner's mailbox mark taken before the task could send anything.
    mark: Mark,
    /// The process that started the task and gets its reply.
    owner: Pid,
    /// Whether the task is linked to the owner.
    linked: bool,
    /// Whether the reply or the `Down` has been taken.
    finished: bool,
    /// The type of the reply.
    _reply: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("pid", &self.pid)
            .field("monitor", &self.monitor)
            .field("owner", &self.owner)
            .field("linked", &self.linked)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<T: Send + 'static> Task<T> {
    /// Runs `future` in a new process linked to and monitored by the caller,
    /// like Elixir's `Task.async`. Wait for its output with
    /// [`await_result`](Task::await_result).
    ///
    /// The link ties the two together: a crash of the task kills the caller
    /// (unless it traps exits), and the end of the caller kills the task.
    ///
    /// # Panics
    /// Outside a beamish process, or if the process table is full.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// use beamish::otp::Task;
    ///
    /// let mut a = Task::spawn_async(async { "a" });
    /// let mut b = Task::spawn_async(async { "b" });
    /// let timeout = Duration::from_secs(5);
    /// assert_eq!(a.await_result(timeout).await, Ok("a"));
    /// assert_eq!(b.await_result(timeout).await, Ok("b"));
    /// # }).unwrap();
    /// ```
    pub fn spawn_async<F>(future: F) -> Task<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let owner = self_pid();
        let tag = Ref::new();
        let mark = mark();
        let spawned = SpawnOptions::new()
            .link()
            .monitor()
            .spawn(async move {
                let value = future.await;
                owner.send(Reply { tag, value });
            })
            .unwrap_or_else(|e| panic!("Task::spawn_async: spawn failed: {e}"));
        Task {
            pid: spawned.pid,
            monitor: spawned
                .monitor
                .expect("a spawn with `monitor()` returns the monitor"),
            tag,
            mark,
            owner,
            linked: true,
            finished: false,
            _reply: PhantomData,
        }
    }

    /// The task's process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::Task;
    ///
    /// let mut task = Task::spawn_async(async { beamish::self_pid() });
    /// let pid = task.pid();
    /// assert_eq!(task.await_default().await, Ok(pid));
    /// # }).unwrap();
    /// ```
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The caller's monitor of the task: the `monitor` of the [`Down`] that
    /// reports the task's end (the task functions consume that `Down`).
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::Task;
    ///
    /// let a = Task::spawn_async(async {});
    /// let b = Task::spawn_async(async {});
    /// assert_ne!(a.monitor_ref(), b.monitor_ref());
    /// # let _ = (a.shutdown(std::time::Duration::from_secs(5)).await,
    /// #          b.shutdown(std::time::Duration::from_secs(5)).await);
    /// # }).unwrap();
    /// ```
    pub fn monitor_ref(&self) -> Ref {
        self.monitor
    }

    /// Waits up to `timeout` for the task's output, like Elixir's
    /// `Task.await` (`Duration::MAX` waits forever).
    ///
    /// * `Ok(value)`: the task replied; nothing of it is left in the mailbox
    ///   (but a linked task's `Exit { reason: normal }` reaches a trapping
    ///   caller once it ends).
    /// * `Err(Error::Exited(reason))`: the task ended without replying. If it
    ///   was linked and `reason` is not `normal`, the caller gets the exit
    ///   signal too: unless it traps exits, it is already dying and this
    ///   value is never seen (Elixir exits the caller as well).
    /// * `Err(Error::Timeout)`: no outcome in time. Elixir exits the caller
    ///   here; this returns, and the task **keeps running**: wait again, or
    ///   end it with [`shutdown`](Task::shutdown), which also flushes a reply
    ///   that comes late. Do not just drop the task: its reply would stay in
    ///   the mailbox.
    /// * `Err(Error::NoProc(pid))`: the outcome was already taken by an
    ///   earlier wait.
    ///
    /// # Panics
    /// When called by any process but the one that created the task.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// use beamish::{Error, otp::Task};
    ///
    /// // A task that needs a go-ahead to finish.
    /// let mut slow = Task::spawn_async(async { beamish::receive::<&str>().await });
    /// assert_eq!(slow.await_result(Duration::from_millis(1)).await, Err(Error::Timeout));
    /// slow.pid().send("done");
    /// assert_eq!(slow.await_result(Duration::from_secs(5)).await, Ok("done"));
    /// # }).unwrap();
    /// ```
    pub async fn await_result(&mut self, timeout: Duration) -> Result<T, Error> {
        self.wait("await_result", timeout)
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// [`await_result`](Task::await_result) with Elixir's default timeout,
    /// 5 seconds.
    ///
    /// # Panics
    /// When called by any process but the one that created the task.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::Task;
    ///
    /// let mut task = Task::spawn_async(async { vec![1, 2, 3].into_iter().sum::<i32>() });
    /// assert_eq!(task.await_default().await, Ok(6));
    /// # }).unwrap();
    /// ```
    pub async fn await_default(&mut self) -> Result<T, Error> {
        self.await_result(DEFAULT_TIMEOUT).await
    }

    /// Waits up to `timeout` for the task's outcome, like Elixir's
    /// `Task.yield`: `None` if there is none yet (the task keeps running;
    /// yield again, or [`shutdown`](Task::shutdown) it), otherwise what
    /// [`await_result`](Task::await_result) would return.
    ///
    /// # Panics
    /// When called by any process but the one that created the task.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// use beamish::otp::Task;
    ///
    /// let mut task = Task::spawn_async(async {
    ///     beamish::receive::<u32>().await * 2
    /// });
    /// assert_eq!(task.yield_result(Duration::ZERO).await, None);
    /// task.pid().send(21u32);
    /// assert_eq!(task.yield_result(Duration::from_secs(5)).await, Some(Ok(42)));
    /// # }).unwrap();
    /// ```
    pub async fn yield_result(&mut self, timeout: Duration) -> Option<Result<T, Error>> {
        self.wait("yield_result", timeout).await
    }

    /// Ends the task, like Elixir's `Task.shutdown`: unlinks it, sends it the
    /// exit signal `shutdown`, waits up to `timeout` for it to end, then
    /// sends `kill` (`Duration::ZERO` kills at once: Elixir's
    /// `:brutal_kill`; `Duration::MAX` never kills).
    ///
    /// Returns `Some(Ok(value))` if the task had replied (also when it had
    /// already finished), `None` if it ended by this shutdown without
    /// replying, `Some(Err(Error::Exited(reason)))` if it ended for another
    /// reason, and `Some(Err(Error::NoProc(pid)))` if its outcome was already
    /// taken by a wait. Afterwards the mailbox holds nothing of the task:
    /// not its reply, not its `Down`, not the `Exit` of its link.
    ///
    /// # Panics
    /// When called by any process but the one that created the task.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// use beamish::otp::Task;
    ///
    /// let stuck = Task::spawn_async(async { beamish::receive::<()>().await });
    /// let pid = stuck.pid();
    /// assert_eq!(stuck.shutdown(Duration::from_secs(5)).await, None);
    /// assert!(!pid.is_alive());
    /// # }).unwrap();
    /// ```
    pub async fn shutdown(mut self, timeout: Duration) -> Option<Result<T, Error>> {
        self.check_owner("shutdown");
        if self.linked {
            unlink(self.pid);
            // An `Exit` that arrived before the unlink (the caller traps).
            let pid = self.pid;
            let _ = receive_if(move |e: &Exit| e.from == pid)
                .timeout(Duration::ZERO)
                .await;
        }
        if self.finished {
            return Some(Err(Error::NoProc(self.pid)));
        }
        self.finished = true;
        let monitor = self.monitor;
        let mut killed = timeout.is_zero();
        self.pid.exit(if killed {
            Reason::Kill
        } else {
            Reason::Shutdown
        });
        let down = match receive_if(move |d: &Down| d.monitor == monitor)
            .after_mark(self.mark)
            .timeout(timeout)
            .await
        {
            Some(down) => down,
            None => {
                killed = true;
                self.pid.exit(Reason::Kill);
                receive_if(move |d: &Down| d.monitor == monitor)
                    .after_mark(self.mark)
                    .await
            }
        };
        // The reply, if any, was sent before the task ended: it is here.
        let tag = self.tag;
        let reply = receive_if(move |r: &Reply<T>| r.tag == tag)
            .after_mark(self.mark)
            .timeout(Duration::ZERO)
            .await;
        match (reply, down.reason) {
            (Some(reply), _) => Some(Ok(reply.value)),
            (None, Reason::Shutdown) => None,
            (None, Reason::Killed) if killed => None,
            (None, reason) => Some(Err(Error::Exited(reason))),
        }
    }

    /// The wait behind `await_result` and `yield_result`: `None` on timeout.
    async fn wait(&mut self, what: &str, timeout: Duration) -> Option<Result<T, Error>> {
        self.check_owner(what);
        if self.finished {
            return Some(Err(Error::NoProc(self.pid)));
        }
        let msg = receive_match(reply_or_down::<T>(self.tag, self.monitor))
            .after_mark(self.mark)
            .timeout(timeout)
            .await?;
        self.finished = true;
        Some(take_outcome(msg, self.monitor).map_err(Error::Exited))
    }

    fn check_owner(&self, what: &str) {
        let caller = try_self_pid();
        assert!(
            caller == Some(self.owner),
            "Task::{what}: the task {} is owned by {}, not by {caller:?}",
            self.pid,
            self.owner,
        );
    }
}

/// Matches the reply tagged `tag` or the `Down` of `monitor`.
fn reply_or_down<R: Send + 'static>(tag: Ref, monitor: Ref) -> impl FnMut(&Message) -> bool {
    move |m| {
        m.downcast_ref::<Reply<R>>().is_some_and(|r| r.tag == tag)
            || m.downcast_ref::<Down>()
                .is_some_and(|d| d.monitor == monitor)
    }
}

/// What a message matched by [`reply_or_down`] means: the value (the monitor
/// is dropped and its `Down` flushed), or the exit reason.
fn take_outcome<R: Send + 'static>(msg: Message, monitor: Ref) -> Result<R, Reason> {
    match msg.downcast::<Reply<R>>() {
        Ok(reply) => {
            demonitor_flush(monitor);
            Ok(reply.value)
        }
        Err(msg) => Err(msg.downcast::<Down>().map_or(Reason::NoProc, |d| d.reason)),
    }
}

/// A process that starts and supervises tasks for other processes, like
/// Elixir's `Task.Supervisor`.
///
/// Its children are linked to it, not to the processes that asked for them:
/// a crashing child does not reach its caller, and it is never restarted.
/// The supervisor traps exits; when its parent (the process that started
/// it) ends, or sends it an exit signal, it shuts its children down
/// (`shutdown`, then `kill` after 5 s) and ends with the same reason. It
/// ignores exit signals from other processes, as OTP's supervisors do.
///
/// The handle is a [`Pid`] and is `Copy`. Its requests wait for the answer
/// without a timeout, but monitor the supervisor: a dead supervisor gives
/// `Err(Error::NoProc(pid))` at once, one that dies meanwhile
/// `Err(Error::Exited(reason))`.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::{Error, Reason, otp::TaskSupervisor};
///
/// let sup = TaskSupervisor::start_link().unwrap();
/// let mut task = sup.async_nolink(async { panic!("boom") }).await.unwrap();
/// // The crash is reported, and the caller lives on.
/// assert_eq!(task.await_default().await, Err(Error::Exited(Reason::Panic("boom".into()))));
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskSupervisor {
    /// The supervisor's process.
    pid: Pid,
}

/// A task as the supervisor starts it.
type Child = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a [`TaskSupervisor`] is asked.
enum Request {
    /// Spawn `child` linked to the supervisor; answers `Result<Pid, Error>`.
    Start { from: Pid, tag: Ref, child: Child },
    /// Answers the children's pids, `Vec<Pid>`.
    Children { from: Pid, tag: Ref },
    /// Shut the child `pid` down; answers `Result<(), Error>`.
    Terminate { from: Pid, tag: Ref, pid: Pid },
}

impl TaskSupervisor {
    /// Starts a task supervisor linked to the caller.
    ///
    /// # Errors
    /// Those of [`SpawnOptions::spawn`].
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link().unwrap();
    /// assert!(sup.pid().is_alive());
    /// # }).unwrap();
    /// ```
    pub fn start_link() -> Result<TaskSupervisor, Error> {
        Self::start_with(SpawnOptions::new())
    }

    /// Starts a task supervisor linked to the caller and registered as
    /// `name` (find it again with [`crate::whereis`] and
    /// [`TaskSupervisor::from_pid`]).
    ///
    /// # Errors
    /// [`Error::NameTaken`] if the name is in use; those of
    /// [`SpawnOptions::spawn`].
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link_named("tasks").unwrap();
    /// assert_eq!(beamish::whereis("tasks"), Some(sup.pid()));
    /// assert!(TaskSupervisor::start_link_named("tasks").is_err());
    /// # }).unwrap();
    /// ```
    pub fn start_link_named(name: impl Into<Arc<str>>) -> Result<TaskSupervisor, Error> {
        Self::start_with(SpawnOptions::new().name(name))
    }

    fn start_with(options: SpawnOptions) -> Result<TaskSupervisor, Error> {
        let parent = self_pid();
        let spawned = options.link().trap_exit(true).spawn(supervise(parent))?;
        Ok(TaskSupervisor { pid: spawned.pid })
    }

    /// The handle of the task supervisor running as `pid`.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link_named("jobs").unwrap();
    /// let found = beamish::whereis("jobs").map(TaskSupervisor::from_pid);
    /// assert_eq!(found, Some(sup));
    /// # }).unwrap();
    /// ```
    pub fn from_pid(pid: Pid) -> TaskSupervisor {
        TaskSupervisor { pid }
    }

    /// The supervisor's process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link().unwrap();
    /// assert_ne!(sup.pid(), beamish::self_pid());
    /// # }).unwrap();
    /// ```
    pub fn pid(self) -> Pid {
        self.pid
    }

    /// Runs `future` as a child of this supervisor, replying to the caller,
    /// like Elixir's `Task.Supervisor.async_nolink`. The task is monitored
    /// by the caller but not linked to it: if it crashes, the caller lives
    /// on and its wait returns `Err(Error::Exited(reason))`.
    ///
    /// # Errors
    /// [`Error::NoProc`] or [`Error::Exited`] if the supervisor is dead or
    /// dies meanwhile; those of [`SpawnOptions::spawn`].
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link().unwrap();
    /// let mut task = sup.async_nolink(async { "hello".len() }).await.unwrap();
    /// assert_eq!(task.await_default().await, Ok(5));
    /// # }).unwrap();
    /// ```
    pub async fn async_nolink<F>(self, future: F) -> Result<Task<F::Output>, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let owner = self_pid();
        let child: Child = Box::pin(async move {
            // Wait for the owner to monitor us; give up if it dies first,
            // or never sends the go-ahead (its request was abandoned).
            let watch = monitor(owner);
            let go = receive_match(move |m| {
                m.is::<Go>() || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == watch)
            })
            .timeout(GO_TIMEOUT)
            .await;
            let Some(go) = go else {
                return crate::exit(Reason::other("timeout")).await;
            };
            let tag = match go.downcast::<Go>() {
                Ok(Go(tag)) => {
                    demonitor_flush(watch);
                    tag
                }
                Err(down) => {
                    let reason = down.downcast::<Down>().map_or(Reason::NoProc, |d| d.reason);
                    return crate::exit(Reason::shutdown_with(reason.to_string())).await;
                }
            };
            let value = future.await;
            owner.send(Reply { tag, value });
        });
        let pid = self
            .call::<Result<Pid, Error>>(|from, tag| Request::Start { from, tag, child })
            .await??;
        let mark = mark();
        let monitor = monitor(pid);
        pid.send(Go(monitor));
        Ok(Task {
            pid,
            monitor,
            tag: monitor,
            mark,
            owner,
            linked: false,
            finished: false,
            _reply: PhantomData,
        })
    }

    /// Runs `future` as a child of this supervisor whose output nobody
    /// waits for (it is dropped), like Elixir's
    /// `Task.Supervisor.start_child`. Returns the child's pid.
    ///
    /// # Errors
    /// As for [`async_nolink`](TaskSupervisor::async_nolink).
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link().unwrap();
    /// let me = beamish::self_pid();
    /// sup.start_child(async move { me.send("fire and forget") }).await.unwrap();
    /// assert_eq!(beamish::receive::<&str>().await, "fire and forget");
    /// # }).unwrap();
    /// ```
    pub async fn start_child<F>(self, future: F) -> Result<Pid, Error>
    where
        F: Future + Send + 'static,
    {
        let child: Child = Box::pin(async move {
            future.await;
        });
        self.call::<Result<Pid, Error>>(|from, tag| Request::Start { from, tag, child })
            .await?
    }

    /// The pids of the supervisor's running children, like Elixir's
    /// `Task.Supervisor.children` (in no particular order).
    ///
    /// # Errors
    /// [`Error::NoProc`] or [`Error::Exited`] if the supervisor is dead or
    /// dies meanwhile.
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::otp::TaskSupervisor;
    ///
    /// let sup = TaskSupervisor::start_link().unwrap();
    /// assert_eq!(sup.children().await, Ok(vec![]));
    /// let child = sup.start_child(async { beamish::receive::<()>().await }).await.unwrap();
    /// assert_eq!(sup.children().await, Ok(vec![child]));
    /// # }).unwrap();
    /// ```
    pub async fn children(self) -> Result<Vec<Pid>, Error> {
        self.call(|from, tag| Request::Children { from, tag }).await
    }

    /// Shuts the child `pid` down (`shutdown`, then `kill` after 5 s) and
    /// returns once it has ended, like Elixir's
    /// `Task.Supervisor.terminate_child`.
    ///
    /// # Errors
    /// [`Error::NoProc`]`(pid)` if `pid` is not a child of this supervisor;
    /// [`Error::NoProc`] or [`Error::Exited`] for the supervisor if it is
    /// dead or dies meanwhile.
    ///
    /// # Panics
    /// Outside a beamish process.
    ///
    /// ```
    /// # let rt = beamish::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use beamish::{Error, otp::TaskSupervisor};
    ///
    /// let sup = TaskSupervisor::start_link().unwrap();
    /// let child = sup.start_child(async { beamish::receive::<()>().await }).await.unwrap();
    /// assert_eq!(sup.terminate_child(child).await, Ok(()));
    /// assert!(!child.is_alive());
    /// assert_eq!(sup.terminate_child(child).await, Err(Error::NoProc(child)));
    /// # }).unwrap();
    /// ```
    pub async fn terminate_child(self, pid: Pid) -> Result<(), Error> {
        self.call::<Result<(), Error>>(|from, tag| Request::Terminate { from, tag, pid })
            .await?
    }

    /// Sends the request `make(caller, tag)` and waits for the answer tagged
    /// `tag`, or the supervisor's `Down`.
    async fn call<R: Send + 'static>(
        self,
        make: impl FnOnce(Pid, Ref) -> Request,
    ) -> Result<R, Error> {
        let mark = mark();
        let tag = monitor(self.pid);
        self.pid.send(make(self_pid(), tag));
        let msg = receive_match(reply_or_down::<R>(tag, tag))
            .after_mark(mark)
            .await;
        take_outcome(msg, tag).map_err(|reason| match reason {
            Reason::NoProc => Error::NoProc(self.pid),
            reason => Error::Exited(reason),
        })
    }
}

/// The supervisor's loop.
async fn supervise(parent: Pid) {
    let mut children = FxHashSet::default();
    loop {
        let msg = receive_match(|_| true).await;
        let msg = match msg.downcast::<Request>() {
            Ok(request) => {
                serve(request, &mut children).await;
                continue;
            }
            Err(msg) => msg,
        };
        let Ok(exit) = msg.downcast::<Exit>() else {
            continue; // nobody else has business here: dropped
        };
        if children.remove(&exit.from) || exit.from != parent {
            continue;
        }
        stop_children(children).await;
        return crate::exit(exit.reason).await;
    }
}

/// Answers one request.
async fn serve(request: Request, children: &mut FxHashSet<Pid>) {
    match request {
        Request::Start { from, tag, child } => {
            let value = SpawnOptions::new().link().spawn(child).map(|s| s.pid);
            if let Ok(pid) = value {
                children.insert(pid);
            }
            from.send(Reply { tag, value });
        }
        Request::Children { from, tag } => {
            let value: Vec<Pid> = children.iter().copied().collect();
            from.send(Reply { tag, value });
        }
        Request::Terminate { from, tag, pid } => {
            let value = if children.remove(&pid) {
                stop_children(std::iter::once(pid).collect()).await;
                Ok(())
            } else {
                Err(Error::NoProc(pid))
            };
            from.send(Reply { tag, value });
        }
    }
}

/// Sends `shutdown` to every child, waits up to [`CHILD_SHUTDOWN`] for their
/// `Exit`s, then kills the rest and waits for those.
async fn stop_children(mut children: FxHashSet<Pid>) {
    for &child in &children {
        child.exit(Reason::Shutdown);
    }
    let deadline = Instant::now() + CHILD_SHUTDOWN;
    while !children.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(exit) = receive_if(|e: &Exit| children.contains(&e.from))
            .timeout(left)
            .await
        else {
            break;
        };
        children.remove(&exit.from);
    }
    for &child in &children {
        child.exit(Reason::Kill);
    }
    while !children.is_empty() {
        let exit = receive_if(|e: &Exit| children.contains(&e.from)).await;
        children.remove(&exit.from);
    }
}
