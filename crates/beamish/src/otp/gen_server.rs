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
    /// A caller that speaks the gen protocol (an Erlang process, or a
    /// beamish process on another node): where the reply goes, and how it
    /// becomes a term.
    #[cfg(feature = "dist")]
    wire: Option<WireReply<R>>,
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
        #[cfg(feature = "dist")]
        if let Some((from, encode)) = &self.wire {
            crate::dist::gen_protocol::reply(from, encode(&value));
            return;
        }
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

    /// How requests and replies of this server travel as terms, so that
    /// Erlang processes and other nodes can call it (`gen_server:call`,
    /// `gen_server:cast`) and it can be called by pid or `{Name, Node}`
    /// from another beamish node. `None` (the default) keeps the server
    /// local: terms it receives go to `handle_info`. Opt in with
    /// `Some(Codec::wire())` when the request, reply and cast types are
    /// [`Wire`] (a `Term`, or any serde type).
    #[cfg(feature = "dist")]
    fn codec() -> Option<Codec<Self>> {
        None
    }

    /// The state as `sys:get_state/1` and `sys:get_status/1` show it to an
    /// Erlang node. The default is the server type's name as a binary.
    #[cfg(feature = "dist")]
    fn state_term(&self) -> Term {
        Term::Binary(std::any::type_name::<Self>().as_bytes().to_vec().into())
    }
}

#[cfg(feature = "dist")]
use crate::dist::{Atom, Term, Wire, gen_protocol};

/// Where the reply to a gen protocol call goes, and how it becomes a term.
#[cfg(feature = "dist")]
type WireReply<R> = (gen_protocol::From, fn(&R) -> Term);

/// The conversions of a server's request, reply and cast types to and
/// from terms (see [`GenServer::codec`]).
#[cfg(feature = "dist")]
pub struct Codec<S: GenServer> {
    call_in: fn(&Term) -> Option<S::Call>,
    call_out: fn(&S::Call) -> Option<Term>,
    reply_in: fn(&Term) -> Option<S::Reply>,
    reply_out: fn(&S::Reply) -> Term,
    cast_in: fn(&Term) -> Option<S::Cast>,
    cast_out: fn(&S::Cast) -> Option<Term>,
}

#[cfg(feature = "dist")]
impl<S: GenServer> Codec<S>
where
    S::Call: Wire,
    S::Reply: Wire,
    S::Cast: Wire,
{
    /// The codec of [`Wire`] types. A reply that has no term (serde
    /// refused it) goes out as `{error, unencodable_reply}`.
    pub fn wire() -> Codec<S> {
        Codec {
            call_in: S::Call::from_wire,
            call_out: S::Call::to_wire,
            reply_in: S::Reply::from_wire,
            reply_out: |r| {
                r.to_wire().unwrap_or_else(|| {
                    error_term(Term::Atom(
                        Atom::new("unencodable_reply").unwrap_or(Atom::UNDEFINED),
                    ))
                })
            },
            cast_in: S::Cast::from_wire,
            cast_out: S::Cast::to_wire,
        }
    }
}

#[cfg(feature = "dist")]
fn error_term(what: Term) -> Term {
    Term::Tuple(vec![Term::Atom(Atom::ERROR), what])
}

#[cfg(feature = "dist")]
fn atom(name: &str) -> Term {
    Term::Atom(Atom::new(name).unwrap_or(Atom::UNDEFINED))
}

/// A call to a server that speaks the gen protocol (on another node).
#[cfg(feature = "dist")]
async fn wire_call<S: GenServer>(
    dest: gen_protocol::Dest,
    request: &S::Call,
    timeout: Duration,
) -> Result<S::Reply, Error> {
    let codec = S::codec().ok_or_else(no_codec::<S>)?;
    let term = (codec.call_out)(request)
        .ok_or_else(|| Error::Config("the request has no term form".into()))?;
    let reply = gen_protocol::call(&dest, term, Some(timeout)).await?;
    (codec.reply_in)(&reply).ok_or_else(|| Error::Config(format!("reply {reply} does not decode")))
}

/// A cast to a server that speaks the gen protocol; dropped (with a log
/// line) if the request has no term form.
#[cfg(feature = "dist")]
fn wire_cast<S: GenServer>(dest: gen_protocol::Dest, request: &S::Cast) {
    match S::codec().and_then(|c| (c.cast_out)(request)) {
        Some(term) => gen_protocol::cast(&dest, term),
        None => tracing::warn!(
            server = std::any::type_name::<S>(),
            "cast has no term form; dropped"
        ),
    }
}

#[cfg(feature = "dist")]
fn no_codec<S>() -> Error {
    Error::Config(format!(
        "{} is called on another node but has no GenServer::codec",
        std::any::type_name::<S>()
    ))
}

/// Where a server is: by pid, by a name on this node, by `{Name, Node}`, or
/// through a name service (`{via, Module, Name}` in OTP; `global` gives
/// one). [`Server::call`], [`Server::cast`] and [`Server::stop`] work the
/// same on all of them; names are looked up at each call, so a call follows
/// a restarted server.
#[cfg(feature = "dist")]
pub struct Server<S> {
    target: Target,
    _server: PhantomData<fn() -> S>,
}

#[cfg(feature = "dist")]
#[derive(Clone)]
enum Target {
    Pid(Pid),
    Local(Atom),
    Remote(Atom, Atom),
    Via(fn(&Term) -> Option<Pid>, Arc<Term>),
    Global(Arc<Term>),
}

#[cfg(feature = "dist")]
impl<S> Clone for Server<S> {
    fn clone(&self) -> Self {
        Server {
            target: self.target.clone(),
            _server: PhantomData,
        }
    }
}

#[cfg(feature = "dist")]
impl<S> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Pid(p) => write!(f, "Server({p})"),
            Target::Local(n) => write!(f, "Server({n})"),
            Target::Remote(n, node) => write!(f, "Server({{{n},{node}}})"),
            Target::Via(_, name) => write!(f, "Server(via {name})"),
            Target::Global(name) => write!(f, "Server({{global,{name}}})"),
        }
    }
}

#[cfg(feature = "dist")]
impl<S: GenServer> From<ServerRef<S>> for Server<S> {
    fn from(r: ServerRef<S>) -> Server<S> {
        Server::pid(r.pid)
    }
}

#[cfg(feature = "dist")]
impl<S: GenServer> Server<S> {
    /// The server with this pid (local or remote).
    pub fn pid(pid: Pid) -> Server<S> {
        Server {
            target: Target::Pid(pid),
            _server: PhantomData,
        }
    }

    /// The server registered as `name` on this node.
    pub fn local(name: Atom) -> Server<S> {
        Server {
            target: Target::Local(name),
            _server: PhantomData,
        }
    }

    /// The server registered as `name` on `node` (`{Name, Node}`).
    pub fn remote(name: Atom, node: Atom) -> Server<S> {
        Server {
            target: Target::Remote(name, node),
            _server: PhantomData,
        }
    }

    /// The server registered under the global name `name`
    /// ([`crate::global`]; OTP's `{global, Name}`), looked up at each call.
    pub fn global(name: Term) -> Server<S> {
        Server {
            target: Target::Global(Arc::new(name)),
            _server: PhantomData,
        }
    }

    /// The server that `lookup` finds under `name` at each call (OTP's
    /// `{via, Module, Name}`), e.g. `Server::via(beamish::global::whereis_name,
    /// name)`, which is [`Server::global`].
    pub fn via(lookup: fn(&Term) -> Option<Pid>, name: Term) -> Server<S> {
        Server {
            target: Target::Via(lookup, Arc::new(name)),
            _server: PhantomData,
        }
    }

    /// The pid the server has now, if it is found.
    fn resolve(&self) -> Result<Option<Pid>, Error> {
        match &self.target {
            Target::Pid(p) => Ok(Some(*p)),
            Target::Local(n) => crate::whereis(n.as_str())
                .map(Some)
                .ok_or_else(|| Error::UnknownName(n.as_str().into())),
            Target::Remote(n, node) if *node == crate::dist::this_node() => {
                crate::whereis(n.as_str())
                    .map(Some)
                    .ok_or_else(|| Error::UnknownName(n.as_str().into()))
            }
            Target::Remote(..) => Ok(None),
            Target::Via(lookup, name) => lookup(name)
                .map(Some)
                .ok_or_else(|| Error::UnknownName(name.to_string().into())),
            Target::Global(name) => crate::global::whereis_name(name)
                .map(Some)
                .ok_or_else(|| Error::UnknownName(name.to_string().into())),
        }
    }

    /// [`ServerRef::call`] on wherever the server is.
    pub async fn call(&self, request: S::Call) -> Result<S::Reply, Error> {
        self.call_timeout(request, DEFAULT_CALL_TIMEOUT).await
    }

    /// [`ServerRef::call_timeout`] on wherever the server is: `noproc`
    /// comes as [`Error::NoProc`] (a pid) or [`Error::UnknownName`] (a
    /// name), a lost node as [`Error::NodeDown`].
    pub async fn call_timeout(
        &self,
        request: S::Call,
        timeout: Duration,
    ) -> Result<S::Reply, Error> {
        match (self.resolve()?, &self.target) {
            (Some(pid), _) => {
                ServerRef::<S>::from_pid(pid)
                    .call_timeout(request, timeout)
                    .await
            }
            (None, Target::Remote(name, node)) => {
                let dest = gen_protocol::Dest::Remote {
                    name: *name,
                    node: *node,
                };
                wire_call::<S>(dest, &request, timeout).await
            }
            (None, _) => Err(Error::Timeout),
        }
    }

    /// [`ServerRef::cast`] on wherever the server is (dropped if it is
    /// not found, as in OTP).
    pub fn cast(&self, request: S::Cast) {
        match (self.resolve(), &self.target) {
            (Ok(Some(pid)), _) => ServerRef::<S>::from_pid(pid).cast(request),
            (Ok(None), Target::Remote(name, node)) => wire_cast::<S>(
                gen_protocol::Dest::Remote {
                    name: *name,
                    node: *node,
                },
                &request,
            ),
            _ => {}
        }
    }

    /// [`ServerRef::stop`] on wherever the server is.
    pub async fn stop(&self, reason: Reason, timeout: Duration) -> Result<(), Error> {
        let pid = match (self.resolve()?, &self.target) {
            (Some(pid), _) => pid,
            (None, Target::Remote(name, node)) => {
                // Find the pid: `erlang:whereis/1` on that node.
                let pid = crate::dist::rpc::call_timeout(
                    *node,
                    "erlang",
                    "whereis",
                    vec![Term::Atom(*name)],
                    timeout,
                )
                .await;
                match pid {
                    Ok(Term::Pid(p)) => p,
                    Ok(_) => return Err(Error::UnknownName(name.as_str().into())),
                    Err(crate::dist::rpc::RpcError::Timeout) => return Err(Error::Timeout),
                    Err(_) => return Err(Error::NodeDown(*node)),
                }
            }
            (None, _) => return Err(Error::Timeout),
        };
        ServerRef::<S>::from_pid(pid).stop(reason, timeout).await
    }
}

/// A term that reached a server: a call, cast or system message of the
/// gen protocol, or (`Some` back) an info message.
#[cfg(feature = "dist")]
async fn dispatch_wire<S: GenServer>(server: &mut S, msg: Term) -> Result<Flow, Term> {
    use gen_protocol::Incoming;
    let codec = S::codec();
    match gen_protocol::classify(&msg) {
        Incoming::Call { from, request } => {
            let Some(codec) = codec else { return Err(msg) };
            let Some(request) = (codec.call_in)(request) else {
                tracing::debug!(%request, "a call whose request does not decode");
                let what = Term::Tuple(vec![atom("bad_request"), request.clone()]);
                gen_protocol::reply(&from, error_term(what));
                return Ok(Flow::Ok);
            };
            let to = ReplyTo {
                caller: from.pid,
                tag: Ref::new(),
                wire: Some((from, codec.reply_out)),
                _reply: PhantomData,
            };
            let (caller, encode) = match &to.wire {
                Some((from, encode)) => (from.clone(), *encode),
                None => return Ok(Flow::Ok),
            };
            let Reply { reply, flow } = handle_call_traced(server, request, to).await;
            if let Some(value) = reply {
                gen_protocol::reply(&caller, encode(&value));
            }
            Ok(flow)
        }
        Incoming::Cast(request) => {
            let Some(codec) = codec else { return Err(msg) };
            match (codec.cast_in)(request) {
                Some(request) => Ok(server.handle_cast(request).await),
                None => {
                    tracing::debug!(%request, "a cast whose request does not decode; dropped");
                    Ok(Flow::Ok)
                }
            }
        }
        Incoming::System { from, request } => Ok(system(server, &from, request)),
        Incoming::Malformed => {
            tracing::debug!(%msg, "a gen protocol message with a bad From; dropped");
            Ok(Flow::Ok)
        }
        Incoming::Other => Err(msg),
    }
}

/// The `sys` requests a beamish server answers: `get_state`,
/// `get_status` and `terminate` (what `gen_server:stop/1,3` sends).
#[cfg(feature = "dist")]
fn system<S: GenServer>(server: &mut S, from: &gen_protocol::From, request: &Term) -> Flow {
    match request {
        Term::Atom(Atom::GET_STATE) => gen_protocol::reply(from, server.state_term()),
        Term::Atom(Atom::GET_STATUS) => {
            let me = crate::self_pid();
            let header = Term::Tuple(vec![
                Term::Atom(Atom::HEADER),
                Term::Binary(
                    format!("Status for generic server {me}")
                        .into_bytes()
                        .into(),
                ),
            ]);
            let data = Term::Tuple(vec![
                Term::Atom(Atom::DATA),
                Term::List(vec![Term::Tuple(vec![
                    Term::ByteList(b"Status".to_vec().into()),
                    Term::Atom(Atom::RUNNING),
                ])]),
            ]);
            let state = Term::Tuple(vec![
                Term::Atom(Atom::DATA),
                Term::List(vec![Term::Tuple(vec![
                    Term::ByteList(b"State".to_vec().into()),
                    server.state_term(),
                ])]),
            ]);
            let status = Term::Tuple(vec![
                Term::Atom(Atom::STATUS),
                Term::Pid(me),
                Term::Tuple(vec![Term::Atom(Atom::MODULE), Term::Atom(Atom::GEN_SERVER)]),
                Term::List(vec![
                    Term::Nil,
                    Term::Atom(Atom::RUNNING),
                    Term::Atom(Atom::UNDEFINED),
                    Term::Nil,
                    Term::List(vec![header, data, state]),
                ]),
            ]);
            gen_protocol::reply(from, status);
        }
        Term::Tuple(t) if matches!(&t[..], [Term::Atom(a), _] if a.as_str() == "terminate") => {
            return Flow::Stop(Reason::from_term(t[1].clone()));
        }
        other => {
            let what = Term::Tuple(vec![atom("unknown_system_msg"), other.clone()]);
            gen_protocol::reply(from, error_term(what));
        }
    }
    Flow::Ok
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
        let request_type = std::any::type_name::<S::Call>();
        let started = crate::trace::on().then(std::time::Instant::now);
        let span = tracing::debug_span!(target: "beamish::gen_server", "call", %server, request = request_type);
        // No span wrapper when no subscriber wants it (the wrapper is a
        // layer more in every call's future).
        let result = if span.is_disabled() {
            self.call_untraced(request, timeout).await
        } else {
            tracing::Instrument::instrument(self.call_untraced(request, timeout), span).await
        };
        if let Some(t) = started {
            crate::trace::called(server, request_type, result.is_ok().then(|| t.elapsed()));
        }
        result
    }

    async fn call_untraced(&self, request: S::Call, timeout: Duration) -> Result<S::Reply, Error> {
        let server = self.pid;
        #[cfg(feature = "dist")]
        if server.is_remote() {
            return wire_call::<S>(gen_protocol::Dest::Pid(server), &request, timeout).await;
        }
        let mark = crate::mark();
        let tag = crate::monitor(server);
        crate::mailbox::set_alias(tag, true);
        server.send(CallMsg::<S> {
            request,
            from: ReplyTo {
                caller: crate::self_pid(),
                tag,
                #[cfg(feature = "dist")]
                wire: None,
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
        #[cfg(feature = "dist")]
        if self.pid.is_remote() {
            return wire_cast::<S>(gen_protocol::Dest::Pid(self.pid), &request);
        }
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
        #[cfg(feature = "dist")]
        if self.pid.is_remote() {
            // What `gen_server:stop/3` sends: `sys:terminate/3`.
            let me = crate::self_pid();
            let from = Term::Tuple(vec![Term::Pid(me), Term::Ref(Ref::new().into())]);
            let req = Term::Tuple(vec![atom("terminate"), reason.to_term()]);
            self.pid
                .send(Term::Tuple(vec![Term::Atom(Atom::SYSTEM), from, req]));
        } else {
            self.pid.send(StopMsg(reason));
        }
        #[cfg(not(feature = "dist"))]
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

/// `handle_call`, timed for a trace session that traces this server's calls.
async fn handle_call_traced<S: GenServer>(
    server: &mut S,
    request: S::Call,
    from: ReplyTo<S::Reply>,
) -> Reply<S::Reply> {
    if !crate::trace::on() {
        return server.handle_call(request, from).await;
    }
    let caller = from.caller;
    let started = std::time::Instant::now();
    let reply = server.handle_call(request, from).await;
    crate::trace::handled_call(caller, std::any::type_name::<S::Call>(), started.elapsed());
    reply
}

async fn dispatch<S: GenServer>(server: &mut S, msg: Message, parent: Pid) -> Flow {
    let msg = match msg.downcast::<CallMsg<S>>() {
        Ok(CallMsg { request, from }) => {
            let caller = ReplyTo {
                caller: from.caller,
                tag: from.tag,
                #[cfg(feature = "dist")]
                wire: None,
                _reply: PhantomData,
            };
            let Reply { reply, flow } = handle_call_traced(server, request, from).await;
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
    #[cfg(feature = "dist")]
    let msg = match msg.downcast::<Term>() {
        Ok(term) => match dispatch_wire(server, term).await {
            Ok(flow) => return flow,
            Err(term) => Message::new(term),
        },
        Err(msg) => msg,
    };
    server.handle_info(msg).await
}
