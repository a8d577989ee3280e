//! Rust functions that Erlang nodes call with `erpc` and `rpc`, and `erpc`
//! calls from Rust into other nodes.
//!
//! # Serving
//! [`register`] puts an async Rust function under an Erlang module and
//! function name on the running node. An Erlang node's `erpc:call(Node,
//! Mod, Fun, Args)` sends a `SPAWN_REQUEST` for `erpc:execute_call(Res, Mod,
//! Fun, Args)` with the `monitor` option; the connection spawns a process
//! for it (linked and monitored as the request asks, before it runs) and
//! answers with a `SPAWN_REPLY`. The process calls the function and ends
//! with the exit reason `erpc` reads the result from, exactly as OTP's
//! `erpc:execute_call/4` does:
//!
//! | the function | exit reason | what `erpc:call` does |
//! |---|---|---|
//! | `Ok(v)` | `{Res, return, V}` | returns `V` |
//! | `Err(Exception::Error(r))`, a panic (`r` = `{panic, <<Msg>>}`) | `{Res, error, R, Stack}` | `error({exception, R, Stack})` |
//! | `Err(Exception::Throw(v))` | `{Res, throw, V}` | `throw(V)` |
//! | `Err(Exception::Exit(r))` | `{Res, exit, R}` | `exit({exception, R})` |
//! | not registered | `{Res, error, undef, [{M, F, Args, []}]}` | `error({exception, undef, _})` |
//!
//! `erpc:cast` spawns `erpc:execute_cast(Mod, Fun, Args)` with no monitor;
//! a plain `spawn_request(Node, Mod, Fun, Args)` of a registered function
//! runs it too (its result is dropped, as a spawned Erlang function's is).
//! `rpc:call/4` is `erpc:call` underneath since OTP 23, and
//! `erpc:multicall` is several `erpc:call`s.
//!
//! When the caller stops waiting (its `erpc:call` timed out and took its
//! monitor down, or the caller died) or the connection is lost, the
//! process is killed: nobody is left to read its result.
//!
//! # Calling
//! [`call`] is `erpc:call` from a beamish process: a `SPAWN_REQUEST` for
//! `erpc:execute_call/4` on the target node (an Erlang node, or a beamish
//! node that serves it as above), the result read from the `Down` of the
//! monitor the request sets up. A call to this node's own name runs the
//! function in a new local process, the same way.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::connection::{Out, SpawnOut, SpawnReply};
use super::node::{NodeState, not_started, state};
use super::{Atom, ExtRef, Term};
use crate::{Down, Error, Pid, Reason, Ref};

/// How a registered function fails, as the three classes of Erlang
/// exceptions.
#[derive(Clone, Debug, PartialEq)]
pub enum Exception {
    /// `error:Reason`: the caller's `erpc:call` raises
    /// `error:{exception, Reason, Stack}`.
    Error(Term),
    /// `throw:Value`: `erpc:call` throws `Value`.
    Throw(Term),
    /// `exit:Reason`: `erpc:call` exits with `{exception, Reason}`.
    Exit(Term),
}

impl Exception {
    /// `error:badarg`, what a function answers arguments it cannot take.
    pub fn badarg() -> Exception {
        Exception::Error(Term::Atom(Atom::BADARG))
    }
}

#[cfg(feature = "serde")]
impl From<super::SerdeError> for Exception {
    /// Arguments that do not decode are `badarg`, as in Erlang.
    fn from(_: super::SerdeError) -> Exception {
        Exception::badarg()
    }
}

/// What a registered function returns.
pub type RpcResult = Result<Term, Exception>;

type RpcFuture = Pin<Box<dyn Future<Output = RpcResult> + Send>>;

/// A registered function.
pub(crate) type RpcFn = Arc<dyn Fn(Vec<Term>) -> RpcFuture + Send + Sync>;

/// Makes `f` callable from other nodes as `module:function(Args...)`: the
/// arguments arrive as a vector (any length: check it), the result goes
/// back as the call's return value. Replaces what was registered under the
/// same name. Needs a running node ([`super::start`]).
///
/// ```no_run
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::dist::{self, NodeConfig, Term};
/// use beamish::rpc::{self, Exception};
/// dist::start(NodeConfig::new("app@127.0.0.1", "secret")).await.unwrap();
/// // From Erlang: erpc:call('app@127.0.0.1', demo, double, [21]) =:= 42.
/// rpc::register("demo", "double", |args: Vec<Term>| async move {
///     match args.as_slice() {
///         [Term::Int(n)] => Ok(Term::Int(n * 2)),
///         _ => Err(Exception::badarg()),
///     }
/// })
/// .unwrap();
/// # }).unwrap();
/// ```
pub fn register<F, Fut>(module: &str, function: &str, f: F) -> Result<(), Error>
where
    F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = RpcResult> + Send + 'static,
{
    let st = state().ok_or_else(not_started)?;
    let key = (name(module)?, name(function)?);
    let f: RpcFn = Arc::new(move |args| Box::pin(f(args)));
    st.functions.write().insert(key, f);
    Ok(())
}

/// Removes `module:function`; true if it was registered.
pub fn unregister(module: &str, function: &str) -> bool {
    let (Some(st), Some(m), Some(f)) = (state(), Atom::existing(module), Atom::existing(function))
    else {
        return false;
    };
    st.functions.write().remove(&(m, f)).is_some()
}

fn name(s: &str) -> Result<Atom, Error> {
    Atom::new(s).map_err(|e| Error::Config(format!("bad name {s:?}: {e}")))
}

// ------------------------------------------------------------------ serving

/// What the connection sends a process it spawned once the requester's
/// link and monitor are in place.
pub(crate) struct Go;

/// What a process spawned for a `SPAWN_REQUEST` runs.
pub(crate) struct Job {
    kind: JobKind,
}

enum JobKind {
    /// `erpc:execute_call(Res, M, F, A)`: the result goes into the exit
    /// reason.
    Call {
        res: Term,
        module: Term,
        function: Term,
        args: Term,
        f: Option<RpcFn>,
    },
    /// `erpc:execute_cast(M, F, A)` or a plain spawn of `M:F(A...)`.
    Run {
        module: Atom,
        function: Atom,
        args: Vec<Term>,
        f: Option<RpcFn>,
        /// `execute_cast` wraps errors as `{exception, {Reason, Stack}}`.
        cast: bool,
    },
}

/// The job for a spawn of `module:function(args...)`.
pub(crate) fn spawned(st: &NodeState, module: Atom, function: Atom, mut args: Vec<Term>) -> Job {
    let lookup = |m: &Term, f: &Term| match (m, f) {
        (Term::Atom(m), Term::Atom(f)) => st.functions.read().get(&(*m, *f)).cloned(),
        _ => None,
    };
    let kind = match (module, function, args.len()) {
        (Atom::ERPC, Atom::EXECUTE_CALL, 4) => {
            let args_t = args.pop().unwrap_or(Term::Nil);
            let function = args.pop().unwrap_or(Term::Nil);
            let module = args.pop().unwrap_or(Term::Nil);
            let res = args.pop().unwrap_or(Term::Nil);
            let f = lookup(&module, &function);
            JobKind::Call {
                res,
                module,
                function,
                args: args_t,
                f,
            }
        }
        (Atom::ERPC, Atom::EXECUTE_CAST, 3) => {
            let args_t = args.pop().unwrap_or(Term::Nil);
            let function = args.pop().unwrap_or(Term::Nil);
            let module = args.pop().unwrap_or(Term::Nil);
            let f = lookup(&module, &function);
            match (module, function, args_t.into_vec()) {
                (Term::Atom(module), Term::Atom(function), Ok(args)) => JobKind::Run {
                    module,
                    function,
                    args,
                    f,
                    cast: true,
                },
                // Erlang's execute_cast would fail in apply/3: badarg.
                _ => JobKind::Run {
                    module: Atom::ERPC,
                    function: Atom::EXECUTE_CAST,
                    args: Vec::new(),
                    f: Some(Arc::new(|_| Box::pin(async { Err(Exception::badarg()) }))),
                    cast: true,
                },
            }
        }
        _ => JobKind::Run {
            module,
            function,
            f: st.functions.read().get(&(module, function)).cloned(),
            args,
            cast: false,
        },
    };
    Job { kind }
}

impl Job {
    /// True for `erpc:execute_call`: a caller waits for the result.
    pub(crate) fn wants_result(&self) -> bool {
        matches!(self.kind, JobKind::Call { .. })
    }

    /// Runs the function and ends the process with the reason its
    /// requester expects.
    pub(crate) async fn run(self) {
        let reason = match self.kind {
            JobKind::Call {
                res,
                module,
                function,
                args,
                f,
            } => {
                let list = args.as_list().is_some() || matches!(args, Term::ByteList(_));
                let stack = || stack_of(&module, &function, &args);
                let outcome = match (f, list) {
                    (Some(f), true) => {
                        let argv = args.clone().into_vec().unwrap_or_default();
                        invoke(&f, argv).await
                    }
                    (None, true) => {
                        let frame = Term::Tuple(vec![
                            module.clone(),
                            function.clone(),
                            args.clone(),
                            Term::Nil,
                        ]);
                        Err((
                            Exception::Error(Term::Atom(Atom::UNDEF)),
                            Some(Term::List(vec![frame])),
                        ))
                    }
                    (_, false) => Err((Exception::badarg(), None)),
                };
                let tuple = |tag: Atom, v: Term| Term::Tuple(vec![res.clone(), Term::Atom(tag), v]);
                match outcome {
                    Ok(v) => tuple(Atom::RETURN, v),
                    Err((Exception::Throw(v), _)) => tuple(Atom::THROW, v),
                    Err((Exception::Exit(r), _)) => tuple(Atom::EXIT_LOWER, r),
                    Err((Exception::Error(r), s)) => Term::Tuple(vec![
                        res.clone(),
                        Term::Atom(Atom::ERROR),
                        r,
                        s.unwrap_or_else(stack),
                    ]),
                }
            }
            JobKind::Run {
                module,
                function,
                args,
                f,
                cast,
            } => {
                let arity = Term::Int(args.len() as i64);
                let frame = |a: Term| {
                    Term::List(vec![Term::Tuple(vec![
                        Term::Atom(module),
                        Term::Atom(function),
                        a,
                        Term::Nil,
                    ])])
                };
                let failed = |r: Term, stack: Term| match cast {
                    true => Term::Tuple(vec![
                        Term::Atom(Atom::EXCEPTION),
                        Term::Tuple(vec![r, stack]),
                    ]),
                    false => Term::Tuple(vec![r, stack]),
                };
                match f {
                    None => failed(Term::Atom(Atom::UNDEF), frame(Term::list(args))),
                    Some(f) => match invoke(&f, args).await {
                        Ok(_) => return,
                        Err((Exception::Error(r), s)) => {
                            failed(r, s.unwrap_or_else(|| frame(arity)))
                        }
                        Err((Exception::Throw(v), _)) => failed(
                            Term::Tuple(vec![Term::Atom(Atom::NOCATCH), v]),
                            frame(arity),
                        ),
                        Err((Exception::Exit(r), _)) => r,
                    },
                }
            }
        };
        crate::exit::<()>(Reason::from_term(reason)).await
    }
}

/// `[{M, F, Arity, []}]`: the stack an error of a Rust function reports
/// (Rust has no Erlang stack to show).
fn stack_of(module: &Term, function: &Term, args: &Term) -> Term {
    let arity = args.as_list().map_or(0, |a| a.len());
    Term::List(vec![Term::Tuple(vec![
        module.clone(),
        function.clone(),
        Term::Int(arity as i64),
        Term::Nil,
    ])])
}

/// Calls `f`, turning a panic into `error:{panic, <<Message>>}`.
async fn invoke(f: &RpcFn, args: Vec<Term>) -> Result<Term, (Exception, Option<Term>)> {
    match (CatchUnwind(f(args))).await {
        Ok(r) => r.map_err(|e| (e, None)),
        Err(payload) => {
            let msg = panic_message(&*payload);
            Err((Exception::Error(Reason::Panic(msg.into()).to_term()), None))
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// A future whose panics become `Err` (the function is user code; its
/// panic must end as an exception for the caller, not as a crash report).
struct CatchUnwind(RpcFuture);

impl Future for CatchUnwind {
    type Output = Result<RpcResult, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

// ------------------------------------------------------------------ calling

/// Why an [`call`] failed: the outcomes of OTP's `erpc:call`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RpcError {
    /// The function raised an error (`error:{exception, Reason, Stack}`;
    /// `undef` for a function the node does not have).
    Exception {
        /// The error reason.
        reason: Term,
        /// The stack the node reported.
        stack: Term,
    },
    /// The function threw a value.
    Throw(Term),
    /// The function exited (`exit:{exception, Reason}`).
    Exit(Term),
    /// No answer within the timeout; the request was abandoned.
    Timeout,
    /// The node could not be reached, or the connection was lost.
    NoConnection,
    /// The node refused the request (`{erpc, Reason}`: `notsup` for a node
    /// that cannot spawn on request, `badarg`, `system_limit`).
    Refused(Term),
    /// The process running the call was killed by a signal.
    Signal(Term),
    /// A module or function name that cannot be an atom.
    BadName(String),
    /// Called from outside a process.
    NotInProcess,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Exception { reason, .. } => write!(f, "exception: {reason}"),
            RpcError::Throw(v) => write!(f, "threw {v}"),
            RpcError::Exit(r) => write!(f, "exited: {r}"),
            RpcError::Timeout => f.write_str("timed out"),
            RpcError::NoConnection => f.write_str("no connection to the node"),
            RpcError::Refused(r) => write!(f, "refused: {r}"),
            RpcError::Signal(r) => write!(f, "killed by signal: {r}"),
            RpcError::BadName(n) => write!(f, "bad module or function name {n:?}"),
            RpcError::NotInProcess => f.write_str("rpc calls must be made from inside a process"),
        }
    }
}

impl std::error::Error for RpcError {}

/// `erpc:call(Node, Module, Function, Args)` with no timeout.
pub async fn call(
    node: Atom,
    module: &str,
    function: &str,
    args: Vec<Term>,
) -> Result<Term, RpcError> {
    call_timeout(node, module, function, args, Duration::MAX).await
}

/// `erpc:call(Node, Module, Function, Args, Timeout)`: on timeout the
/// request is abandoned (its monitor taken down, so a late result never
/// arrives) and [`RpcError::Timeout`] returned.
///
/// ```no_run
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::dist::{Atom, Term};
/// let node = Atom::new("erl@127.0.0.1").unwrap();
/// let name = beamish::rpc::call(node, "erlang", "node", vec![]).await.unwrap();
/// assert_eq!(name, Term::Atom(node));
/// # }).unwrap();
/// ```
pub async fn call_timeout(
    node: Atom,
    module: &str,
    function: &str,
    args: Vec<Term>,
    timeout: Duration,
) -> Result<Term, RpcError> {
    let deadline = Instant::now().checked_add(timeout);
    let req = send_request(node, module, function, args)?;
    req.receive(deadline).await
}

/// `erpc:cast(Node, Module, Function, Args)`: runs it there, no answer.
pub fn cast(node: Atom, module: &str, function: &str, args: Vec<Term>) -> Result<(), RpcError> {
    let (m, f) = (atom(module)?, atom(function)?);
    let args = vec![Term::Atom(m), Term::Atom(f), Term::list(args)];
    match state() {
        Some(st) if node != st.name => {
            let from = crate::try_self_pid().ok_or(RpcError::NotInProcess)?;
            st.push(
                node,
                Out::Spawn(Box::new(SpawnOut {
                    from,
                    req: Ref::new(),
                    module: Atom::ERPC,
                    function: Atom::EXECUTE_CAST,
                    args,
                    monitor: false,
                })),
            );
            // Without a monitor the connection keeps no entry for the
            // request, and the peer's reply is dropped there.
            Ok(())
        }
        Some(st) => {
            let job = spawned(st, Atom::ERPC, Atom::EXECUTE_CAST, args);
            crate::spawn(async move { job.run().await });
            Ok(())
        }
        None => Err(RpcError::NoConnection),
    }
}

/// `erpc:multicall(Nodes, Module, Function, Args, Timeout)`: the requests
/// go out together; the results come back in the order of `nodes`.
pub async fn multicall(
    nodes: &[Atom],
    module: &str,
    function: &str,
    args: Vec<Term>,
    timeout: Duration,
) -> Vec<Result<Term, RpcError>> {
    let deadline = Instant::now().checked_add(timeout);
    let reqs: Vec<_> = nodes
        .iter()
        .map(|n| send_request(*n, module, function, args.clone()))
        .collect();
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        out.push(match r {
            Ok(r) => r.receive(deadline).await,
            Err(e) => Err(e),
        });
    }
    out
}

fn atom(s: &str) -> Result<Atom, RpcError> {
    Atom::new(s).map_err(|_| RpcError::BadName(s.to_owned()))
}

/// A call on its way: its spawn request and the reference of its result.
struct Request {
    /// The spawn request (also the monitor's reference).
    req: Ref,
    /// The `Res` the result is tagged with.
    res: Ref,
    /// The process running it, once known.
    pid: Option<Pid>,
    node: Atom,
}

fn send_request(
    node: Atom,
    module: &str,
    function: &str,
    args: Vec<Term>,
) -> Result<Request, RpcError> {
    let (m, f) = (atom(module)?, atom(function)?);
    let from = crate::try_self_pid().ok_or(RpcError::NotInProcess)?;
    let st = state().ok_or(RpcError::NoConnection)?;
    let res = Ref::new();
    let args = vec![
        Term::Ref(ExtRef::from(res)),
        Term::Atom(m),
        Term::Atom(f),
        Term::list(args),
    ];
    if node == st.name {
        let job = spawned(st, Atom::ERPC, Atom::EXECUTE_CALL, args);
        let spawned = crate::SpawnOptions::new()
            .monitor()
            .spawn(async move { job.run().await })
            .map_err(|_| RpcError::Refused(Term::Atom(Atom::SYSTEM_LIMIT)))?;
        let req = spawned.monitor.unwrap_or_else(Ref::new);
        return Ok(Request {
            req,
            res,
            pid: Some(spawned.pid),
            node,
        });
    }
    let req = Ref::new();
    // The monitor is ours from now on: the peer's `Down` for it can reach
    // the mailbox in the same batch as its spawn reply, and a signal is
    // handled before any message of its batch is read. Its target is known
    // with the reply; until then a demonitor only signals ourselves.
    crate::signal::api::adopt_monitor(req, from);
    st.push(
        node,
        Out::Spawn(Box::new(SpawnOut {
            from,
            req,
            module: Atom::ERPC,
            function: Atom::EXECUTE_CALL,
            args,
            monitor: true,
        })),
    );
    Ok(Request {
        req,
        res,
        pid: None,
        node,
    })
}

impl Request {
    async fn receive(mut self, deadline: Option<Instant>) -> Result<Term, RpcError> {
        let req = self.req;
        loop {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            let got = crate::receive_match(move |m| {
                m.downcast_ref::<SpawnReply>().is_some_and(|r| r.req == req)
                    || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == req)
            })
            .timeout(left)
            .await;
            let Some(msg) = got else {
                self.abandon();
                // A reply that raced with the timeout must not stay queued.
                let req = self.req;
                let _ = crate::receive_if(move |r: &SpawnReply| r.req == req)
                    .timeout(Duration::ZERO)
                    .await;
                return Err(RpcError::Timeout);
            };
            let msg = match msg.downcast::<SpawnReply>() {
                Ok(SpawnReply {
                    result: Ok(pid), ..
                }) => {
                    self.pid = Some(pid);
                    crate::signal::api::adopt_monitor(req, pid);
                    continue;
                }
                Ok(SpawnReply {
                    result: Err(why), ..
                }) => {
                    crate::signal::api::forget_monitor(req);
                    return Err(match why {
                        Term::Atom(Atom::NOCONNECTION) => RpcError::NoConnection,
                        why => RpcError::Refused(why),
                    });
                }
                Err(m) => m,
            };
            let Ok(down) = msg.downcast::<Down>() else {
                continue;
            };
            return Err(match self.result(down.reason) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            });
        }
    }

    fn result(&self, reason: Reason) -> Result<Term, RpcError> {
        if reason == Reason::NoConnection {
            return Err(RpcError::NoConnection);
        }
        let t = reason.to_term();
        let res = ExtRef::from(self.res);
        if let Term::Tuple(e) = &t
            && let Some(Term::Ref(r)) = e.first()
            && *r == res
        {
            let mut e = t.into_vec().unwrap_or_default();
            return match (e.len(), e.get(1).and_then(Term::as_atom)) {
                (3, Some(Atom::RETURN)) => Ok(e.swap_remove(2)),
                (3, Some(Atom::THROW)) => Err(RpcError::Throw(e.swap_remove(2))),
                (3, Some(Atom::EXIT_LOWER)) => Err(RpcError::Exit(e.swap_remove(2))),
                (3, Some(Atom::ERROR)) => Err(RpcError::Refused(e.swap_remove(2))),
                (4, Some(Atom::ERROR)) => {
                    let stack = e.pop().unwrap_or(Term::Nil);
                    let reason = e.pop().unwrap_or(Term::Nil);
                    Err(RpcError::Exception { reason, stack })
                }
                _ => Err(RpcError::Signal(Term::Tuple(e))),
            };
        }
        Err(RpcError::Signal(t))
    }

    /// Gives up: takes the monitor down (the spawned process then gets
    /// killed by a beamish node, and its result can never arrive).
    fn abandon(&self) {
        match self.pid {
            Some(_) => {
                crate::demonitor_flush(self.req);
            }
            None => {
                crate::signal::api::forget_monitor(self.req);
                if let Some(st) = state() {
                    st.push(self.node, Out::SpawnAbandon { req: self.req });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42u32), "panic");
    }

    #[test]
    fn stacks_name_the_function_and_its_arity() {
        let t = stack_of(
            &Term::atom("m").unwrap(),
            &Term::atom("f").unwrap(),
            &Term::List(vec![Term::Int(1), Term::Int(2)]),
        );
        assert_eq!(t.to_string(), "[{m,f,2,[]}]");
    }
}
