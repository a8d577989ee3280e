//! GenServer: a process that owns state and answers calls, casts and other
//! messages, like OTP's `gen_server`.
//!
//! The server is a value implementing [`GenServer`]; its process runs
//! `init`, then a loop that takes one message at a time: a call goes to
//! [`GenServer::handle_call`], a cast to [`GenServer::handle_cast`], an exit
//! signal from the parent (when trapping exits) ends the server through
//! [`GenServer::terminate`], anything else goes to [`GenServer::handle_info`].
//! A handler can ask for [`GenServer::handle_continue`] to run before the next
//! message, or stop the server.
//!
//! A call ([`ServerRef::call`]) monitors the server, so a server that is dead
//! or dies during the call gives an error at once (`noproc` or its exit
//! reason) rather than a timeout. The reply travels to an *alias* of the
//! caller that is deactivated when the call returns, so a reply that comes
//! after a timeout is dropped on arrival and never lands in the caller's
//! mailbox (OTP 24's `alias`).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::mailbox::node::{AliasMsg, NodeBox};
use crate::{Down, Error, Exit, Message, Pid, Reason, Ref, SpawnOptions};

/// Default time a call waits for its reply (OTP's 5 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How `init` went.
pub enum Init {
    /// Running: start taking messages.
    Ok,
    /// Running, but first call `handle_continue` with this value.
    Continue(Message),
    /// Not started: the process ends with this reason and the starter gets
    /// `Err(Error::Exited(reason))`.
    Stop(Reason),
}

/// What a handler wants next.
pub enum Flow {
    /// Take the next message.
    Ok,
    /// Call `handle_continue` with this value before the next message.
    Continue(Message),
    /// Call `terminate` and end the process with this reason.
    Stop(Reason),
}

impl Flow {
    /// `Flow::Continue` with any value (downcast it in `handle_continue`).
    pub fn continue_with<T: Send + 'static>(value: T) -> Flow {
        Flow::Continue(Message::new(value))
    }
}

/// What `handle_call` answers: a reply now (or none: a deferred reply through
/// the [`ReplyTo`] later), and what to do next.
pub struct Reply<R> {
    reply: Option<R>,
    flow: Flow,
}

impl<R> Reply<R> {
    /// Reply with `value` (OTP's `{reply, Value, State}`).
    #[allow(clippy::self_named_constructors)] // reads as OTP's `reply`
    pub fn reply(value: R) -> Reply<R> {
        Reply {
            reply: Some(value),
            flow: Flow::Ok,
        }
    }

    /// No reply now: the handler kept the [`ReplyTo`] and replies later (from
    /// this process or any other).
    pub fn no_reply() -> Reply<R> {
        Reply {
            reply: None,
            flow: Flow::Ok,
        }
    }

    /// Stop the server with `reason`, after replying `value` if given.
    pub fn stop(reason: Reason, value: Option<R>) -> Reply<R> {
        Reply {
            reply: value,
            flow: Flow::Stop(reason),
        }
    }

    /// Then call `handle_continue` with `value` before the next message.
    pub fn and_continue<T: Send + 'static>(mut self, value: T) -> Reply<R> {
        self.flow = Flow::continue_with(value);
        self
    }
}

/// Where a call's reply goes: the caller's alias. Keep it to reply later
/// (a deferred reply); replying to a caller that gave up does nothing.
#[must_use = "a caller waits for this reply"]
pub struct ReplyTo<R> {
    caller: Pid,
    tag: Ref,
    _reply: PhantomData<fn(R)>,
}

/// A reply on the wire. `demonitored`: the server itself replied and
/// already dropped the caller's monitor on it, so the caller drops its side
/// without sending a demonitor signal (which would wake the server once
/// more per call for nothing).
struct Answer<R> {
    value: R,
    demonitored: bool,
}

impl<R: Send + 'static> ReplyTo<R> {
    /// Sends the reply.
    pub fn reply(self, value: R) {
        let demonitored = crate::signal::api::take_monitored_by(self.tag);
        let node = NodeBox::alias_message(self.tag, Answer { value, demonitored });
        if let Err(node) = crate::runtime::deliver(self.caller, node) {
            crate::mailbox::node::drop_quietly(node);
        }
    }

    /// The calling process.
    pub fn caller(&self) -> Pid {
        self.caller
    }
}

impl<R> std::fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("caller", &self.caller)
            .field("tag", &self.tag)
            .finish()
    }
}

/// A server: its state and its handlers.
///
/// ```
/// use beamish::otp::{GenServer, ReplyTo, Reply, Flow};
///
/// struct Counter(u64);
///
/// enum Op { Get, Add(u64) }
///
/// impl GenServer for Counter {
///     type Call = Op;
///     type Reply = u64;
///     type Cast = u64;
///
///     async fn handle_call(&mut self, op: Op, _from: ReplyTo<u64>) -> Reply<u64> {
///         match op {
///             Op::Get => Reply::reply(self.0),
///             Op::Add(n) => { self.0 += n; Reply::reply(self.0) }
///         }
///     }
///
///     async fn handle_cast(&mut self, n: u64) -> Flow {
///         self.0 += n;
///         Flow::Ok
///     }
/// }
///
/// let rt = beamish::Runtime::new().unwrap();
/// rt.block_on(async {
///     let counter = beamish::otp::start_link(Counter(0)).await.unwrap();
///     counter.cast(2);
///     assert_eq!(counter.call(Op::Add(3)).await, Ok(5));
///     assert_eq!(counter.call(Op::Get).await, Ok(5));
/// }).unwrap();
/// ```
pub trait GenServer: Send + Sized + 'static {
    /// Requests that get a reply.
    type Call: Send + 'static;
    /// The reply to a call.
    type Reply: Send + 'static;
    /// Requests that get no reply.
    type Cast: Send + 'static;

    /// Runs first, in the new process; the starter waits for it.
    fn init(&mut self) -> impl Future<Output = Init> + Send {
        async { Init::Ok }
    }

    /// A call.
    fn handle_call(
        &mut self,
        request: Self::Call,
        from: ReplyTo<Self::Reply>,
    ) -> impl Future<Output = Reply<Self::Reply>> + Send;

    /// A cast.
    fn handle_cast(&mut self, request: Self::Cast) -> impl Future<Output = Flow> + Send {
        drop(request);
        async { Flow::Ok }
    }

    /// Any other message (including `Exit` and `Down` messages).
    fn handle_info(&mut self, msg: Message) -> impl Future<Output = Flow> + Send {
        drop(msg);
        async { Flow::Ok }
    }

    /// The continuation a handler asked for.
    fn handle_continue(&mut self, value: Message) -> impl Future<Output = Flow> + Send {
        drop(value);
        async { Flow::Ok }
    }

    /// Runs before the server ends by stopping (a handler's `Stop`,
    /// [`ServerRef::stop`]) or, when it traps exits, by an exit signal from
    /// its parent (a supervisor's shutdown). Not run when the process
    /// panics or is killed.
    fn terminate(&mut self, reason: &Reason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}

/// A typed handle on a running server (a `Copy` pid).
pub struct ServerRef<S> {
    pid: Pid,
    _server: PhantomData<fn() -> S>,
}

impl<S> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for ServerRef<S> {}

impl<S> PartialEq for ServerRef<S> {
    fn eq(&self, other: &Self) -> bool {
        self.pid == other.pid
    }
}

impl<S> Eq for ServerRef<S> {}

impl<S> std::fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerRef({})", self.pid)
    }
}

struct CallMsg<S: GenServer> {
    request: S::Call,
    from: ReplyTo<S::Reply>,
}

struct CastMsg<S: GenServer>(S::Cast);

struct StopMsg(Reason);

struct Ack(Ref, Result<(), Reason>);

impl<S: GenServer> ServerRef<S> {
    /// Treats `pid` as a server of type `S` (calls to a process that is not
    /// one go unanswered until their timeout).
    pub fn from_pid(pid: Pid) -> ServerRef<S> {
        ServerRef {
            pid,
            _server: PhantomData,
        }
    }

    /// The server registered under `name`.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub fn whereis(name: &str) -> Option<ServerRef<S>> {
        crate::whereis(name).map(ServerRef::from_pid)
    }

    /// The server's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Calls the server and waits up to 5 s for the reply.
    pub async fn call(&self, request: S::Call) -> Result<S::Reply, Error> {
        self.call_timeout(request, DEFAULT_CALL_TIMEOUT).await
    }

    /// Calls the server and waits up to `timeout` for the reply. Errors:
    /// `NoProc` if the server does not exist, `Exited(reason)` if it dies
    /// before replying, `Timeout`.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn call_timeout(
        &self,
        request: S::Call,
        timeout: Duration,
    ) -> Result<S::Reply, Error> {
        let server = self.pid;
        let mark = crate::mark();
        let tag = crate::monitor(server);
        crate::mailbox::set_alias(tag, true);
        server.send(CallMsg::<S> {
            request,
            from: ReplyTo {
                caller: crate::self_pid(),
                tag,
                _reply: PhantomData,
            },
        });
        let answer = crate::receive_match(move |m| {
            m.downcast_ref::<AliasMsg<Answer<S::Reply>>>()
                .is_some_and(|a| a.tag == tag)
                || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == tag)
        })
        .timeout(timeout)
        .after_mark(mark)
        .await;
        crate::mailbox::set_alias(tag, false);
        let answer = match answer {
            None => {
                crate::demonitor_flush(tag);
                return Err(Error::Timeout);
            }
            Some(m) => m,
        };
        match answer.downcast::<AliasMsg<Answer<S::Reply>>>() {
            Ok(reply) => {
                if reply.value.demonitored {
                    crate::signal::api::forget_monitor(tag);
                } else {
                    crate::demonitor_flush(tag);
                }
                Ok(reply.value.value)
            }
            Err(m) => match m.downcast::<Down>() {
                Ok(Down {
                    reason: Reason::NoProc,
                    ..
                }) => Err(Error::NoProc(server)),
                Ok(down) => Err(Error::Exited(down.reason)),
                Err(_) => Err(Error::Timeout),
            },
        }
    }

    /// Sends a cast (no reply; dropped if the server does not exist).
    pub fn cast(&self, request: S::Cast) {
        self.pid.send(CastMsg::<S>(request));
    }

    /// Stops the server with `reason`: it runs `terminate`, then ends.
    /// Waits up to `timeout` for it to end.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn stop(&self, reason: Reason, timeout: Duration) -> Result<(), Error> {
        let mark = crate::mark();
        let mref = crate::monitor(self.pid);
        self.pid.send(StopMsg(reason));
        let down = crate::receive_if(move |d: &Down| d.monitor == mref)
            .timeout(timeout)
            .after_mark(mark)
            .await;
        match down {
            None => {
                crate::demonitor_flush(mref);
                Err(Error::Timeout)
            }
            Some(Down {
                reason: Reason::NoProc,
                ..
            }) => Err(Error::NoProc(self.pid)),
            Some(_) => Ok(()),
        }
    }
}

/// How to start a server.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    link: bool,
    name: Option<Arc<str>>,
    trap_exit: bool,
}

impl StartOptions {
    /// Unlinked, unnamed, not trapping exits.
    pub fn new() -> StartOptions {
        StartOptions::default()
    }

    /// Link the server to the starter (as `start_link`).
    pub fn link(mut self) -> StartOptions {
        self.link = true;
        self
    }

    /// Register the server under `name` (the start fails with
    /// `NameTaken` if the name is in use).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> StartOptions {
        self.name = Some(name.into());
        self
    }

    /// Trap exits, so that a supervisor's shutdown runs `terminate`.
    pub fn trap_exit(mut self, on: bool) -> StartOptions {
        self.trap_exit = on;
        self
    }
}

/// Starts a server, unlinked, and waits for its `init`.
///
/// # Panics
/// Outside a beamish process.
pub async fn start<S: GenServer>(server: S) -> Result<ServerRef<S>, Error> {
    start_with(server, StartOptions::new()).await
}

/// Starts a server linked to the caller and waits for its `init`.
///
/// # Panics
/// Outside a beamish process.
pub async fn start_link<S: GenServer>(server: S) -> Result<ServerRef<S>, Error> {
    start_with(server, StartOptions::new().link()).await
}

/// Starts a server with options and waits for its `init`. If `init` stops,
/// the server unlinks from the caller before it ends, so the caller gets
/// `Err(Error::Exited(reason))` and is not taken down with it.
///
/// # Panics
/// Outside a beamish process.
pub async fn start_with<S: GenServer>(
    server: S,
    options: StartOptions,
) -> Result<ServerRef<S>, Error> {
    let parent = crate::self_pid();
    let mark = crate::mark();
    let tag = Ref::new();
    let mut spawn = SpawnOptions::new().monitor().trap_exit(options.trap_exit);
    if options.link {
        spawn = spawn.link();
    }
    if let Some(name) = options.name {
        spawn = spawn.name(name);
    }
    let spawned = spawn.spawn(serve(server, parent, tag, options.link))?;
    let mref = spawned.monitor.unwrap_or_else(Ref::new);
    match super::answer_or_down(mark, mref, move |a: &Ack| a.0 == tag).await {
        Ok(Ack(_, Ok(()))) => Ok(ServerRef::from_pid(spawned.pid)),
        Ok(Ack(_, Err(reason))) => Err(Error::Exited(reason)),
        Err(down) => Err(Error::Exited(down.reason)),
    }
}

/// The server process.
async fn serve<S: GenServer>(mut server: S, parent: Pid, tag: Ref, linked: bool) {
    let mut next = match server.init().await {
        Init::Ok => None,
        Init::Continue(value) => Some(value),
        Init::Stop(reason) => {
            parent.send(Ack(tag, Err(reason.clone())));
            if linked {
                crate::unlink(parent);
            }
            return crate::exit(reason).await;
        }
    };
    parent.send(Ack(tag, Ok(())));
    loop {
        let flow = match next.take() {
            Some(value) => server.handle_continue(value).await,
            None => {
                let msg = crate::receive_match(|_| true).await;
                dispatch(&mut server, msg, parent).await
            }
        };
        match flow {
            Flow::Ok => {}
            Flow::Continue(value) => next = Some(value),
            Flow::Stop(reason) => {
                server.terminate(&reason).await;
                return crate::exit(reason).await;
            }
        }
    }
}

async fn dispatch<S: GenServer>(server: &mut S, msg: Message, parent: Pid) -> Flow {
    let msg = match msg.downcast::<CallMsg<S>>() {
        Ok(CallMsg { request, from }) => {
            let caller = ReplyTo {
                caller: from.caller,
                tag: from.tag,
                _reply: PhantomData,
            };
            let Reply { reply, flow } = server.handle_call(request, from).await;
            if let Some(value) = reply {
                caller.reply(value);
            }
            return flow;
        }
        Err(msg) => msg,
    };
    let msg = match msg.downcast::<CastMsg<S>>() {
        Ok(CastMsg(request)) => return server.handle_cast(request).await,
        Err(msg) => msg,
    };
    let msg = match msg.downcast::<StopMsg>() {
        Ok(StopMsg(reason)) => return Flow::Stop(reason),
        Err(msg) => msg,
    };
    if let Some(exit) = msg.downcast_ref::<Exit>()
        && exit.from == parent
    {
        // The parent (a supervisor) ends us: OTP's gen_server stops with the
        // parent's reason, running terminate.
        return Flow::Stop(exit.reason.clone());
    }
    server.handle_info(msg).await
}
