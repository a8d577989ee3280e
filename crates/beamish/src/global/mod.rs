//! Global names: a cluster-wide name registry that speaks OTP's `global`
//! protocol (version 8, as kernel's `global.erl` in OTP 25 and 26), so a
//! beamish node is a full member of an Erlang cluster for global names, and
//! beamish-only clusters use the same code.
//!
//! Names are any [`Term`] (`{kv, node_a}`, an atom, a string); each maps to
//! one process of the cluster. Start the name server with [`start`] after
//! [`dist::start`](crate::dist::start), as kernel starts `global` once the
//! distribution is up; then [`register_name`], [`whereis_name`], [`send`],
//! [`unregister_name`] and [`registered_names`] work as their OTP namesakes.
//!
//! ```no_run
//! # let rt = beamish::Runtime::new().unwrap();
//! # rt.block_on(async {
//! use beamish::dist::{self, NodeConfig, Term};
//! use beamish::global;
//! dist::start(NodeConfig::new("app@127.0.0.1", "secret")).await.unwrap();
//! global::start().await.unwrap();
//! let name = Term::atom("my_service").unwrap();
//! global::register_name(name.clone(), beamish::self_pid()).await.unwrap();
//! assert_eq!(global::whereis_name(&name), Some(beamish::self_pid()));
//! # }).unwrap();
//! ```
//!
//! # The protocol, as implemented here
//!
//! Four kinds of process make one name server, as in OTP:
//!
//! - **the server**, registered locally as `global_name_server`: it owns the
//!   name table and the lock table, answers the `$gen_call`s and
//!   `$gen_cast`s of every node's global, and runs one *sync session* per
//!   connecting node;
//! - **the locker**: takes global's lock in our
//!   partition for each sync session;
//! - **the registrar**: runs [`register_name`] and friends under the lock;
//! - a **resolver** per session, that compares the peer's names with ours.
//!
//! ## Locks
//! A lock is `{ResourceId, LockRequesterId}`; `{set_lock, Id}` and
//! `{del_lock, Id}` are calls to the server of each node concerned. A node
//! grants a lock when nobody holds the resource, or when its holders use the
//! same requester id; it monitors every holder, so a holder that dies (or
//! whose node goes down: `noconnection`) loses its locks. Global's own lock
//! is the resource `global`.
//!
//! ## Registering
//! The registrar locks `{global, Registrar}` on every known node (the
//! greatest node first, retrying after a random sleep on a refusal), sends
//! `{register, Name, Pid, Method}` (or `{unregister, Name}`) to all of them
//! with `multi_call`, and unlocks. Each server applies a `register` only
//! while the caller still holds global's lock there, so a registration from
//! a node that died half-way does not spread. A server refuses the
//! registrar's lock to a node that is not among its known nodes (OTP grants
//! it): that node's own known list is stale, it has not synced with us
//! since one of us dropped the other, and a registration it made now could
//! replace a name we hold for a process of our partition, leaving the
//! tables different after the next sync. Every server monitors the
//! registered process: when it dies, or its node goes down, every server
//! drops the name by itself.
//!
//! ## Syncing with a node that connects
//! On `nodeup` each side sends `{init_connect, {8, MyTag}, Node, {locker, _,
//! Known, Locker}}` and acknowledges the other's with `{init_connect_ack,
//! Node, HisTag, MyTag}` (a mismatch cancels both sessions with
//! `cancel_connect` and starts over). The two lockers then lock their
//! partitions with one shared requester id (`lock_set`, proxied by the
//! servers). With both locks set, each server sends its names (`exchange`);
//! the resolver on the node with the smaller name decides every clash with
//! the resolve method of the clashing registration, run on its process's
//! node, and both sides apply the operations (`resolved`). Each then tells
//! the nodes it already knew about the new ones (`new_nodes`, sent by the
//! locker before it unlocks), and the new ones that it is in sync with them
//! (`in_sync`). A session whose node goes down is cancelled; its lock goes
//! with the monitors.
//!
//! ## Overlapping partitions
//! When we lose a node we knew, we tell every other known node with
//! `{lost_connection, Us, Creation, OpId, Lost}`; on such a message (once
//! per `OpId`) we pass it on and forget the node we are told about, asking
//! it to forget us with `{remove_connection, Us}`, as OTP 25's default
//! `prevent_overlapping_partitions` does. OTP also closes that connection;
//! the distribution layer gives us no way to, so the connection stays up
//! but global's view of the cluster is the same as OTP's.
//!
//! ## Resolve methods
//! [`Resolve::RandomExit`] (OTP's default `random_exit_name`: the process on
//! the greater node is killed), [`Resolve::RandomNotify`],
//! [`Resolve::NotifyAll`] (both processes get `{global_name_conflict, Name,
//! Other}` and the name goes) and [`Resolve::custom`] (a Rust function).
//! The methods of OTP's `global` module run here when the process is ours.
//! A custom method travels to Erlang nodes as `fun beamish_global:resolve/3`:
//! when an Erlang node has to run it, the call fails and, as OTP does on a
//! failed resolve call, the other registration wins.
//!
//! ## What differs from OTP
//! - Calls that OTP makes without a time limit (`multi_call` of the locker
//!   and the registrar) give up on a node after [`CALL_TIMEOUT`]; a node
//!   that never answers counts as down for that call.
//! - Nodes connected before [`start`] are synced at start.
//! - The names of C-nodes (`register_ext`) are kept as ordinary names.

mod call;
mod locker;
mod proto;
mod registrar;
mod resolve;
mod server;
mod tables;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::dist::{Atom, Term};
use crate::{Error, Pid, Ref};

/// The version of OTP's `global` protocol spoken (that of OTP 25 and 26).
pub const PROTOCOL_VERSION: u32 = proto::VSN;

/// The local name of the server, as in OTP.
pub const SERVER: &str = "global_name_server";

/// How long one `multi_call` of the locker or the registrar waits for a node
/// (OTP waits forever; a node that never answers would stall every
/// registration). Generous, so that only a stuck node hits it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A Rust resolve method: given the name and the two clashing processes,
/// the one to keep, or `None` to unregister the name.
pub type ResolveFn = Arc<dyn Fn(&Term, Pid, Pid) -> Option<Pid> + Send + Sync>;

/// How a name clash is resolved when two partitions that each registered a
/// name join (OTP's `Method` of `register_name/3`).
#[derive(Clone, Default)]
pub enum Resolve {
    /// Keep the process on the smaller node; kill the other with `kill`
    /// (OTP's `random_exit_name`, the default).
    #[default]
    RandomExit,
    /// Keep the process on the smaller node; send the other
    /// `{global_name_conflict, Name}` (OTP's `random_notify_name`).
    RandomNotify,
    /// Unregister the name; send both `{global_name_conflict, Name,
    /// OtherPid}` (OTP's `notify_all_name`).
    NotifyAll,
    /// A Rust function (see [`Resolve::custom`]).
    Custom(ResolveFn),
}

impl Resolve {
    /// A resolve method from a function `(name, pid1, pid2) -> keep`.
    ///
    /// ```
    /// use beamish::global::Resolve;
    /// let keep_first = Resolve::custom(|_name, p1, _p2| Some(p1));
    /// # let _ = keep_first;
    /// ```
    pub fn custom(f: impl Fn(&Term, Pid, Pid) -> Option<Pid> + Send + Sync + 'static) -> Resolve {
        Resolve::Custom(Arc::new(f))
    }

    /// The method as the protocol carries it.
    fn method_term(&self) -> Term {
        match self {
            Resolve::RandomExit => proto::export_fun("global", "random_exit_name", 3),
            Resolve::RandomNotify => proto::export_fun("global", "random_notify_name", 3),
            Resolve::NotifyAll => proto::export_fun("global", "notify_all_name", 3),
            Resolve::Custom(_) => proto::export_fun("beamish_global", "resolve", 3),
        }
    }
}

impl fmt::Debug for Resolve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolve::RandomExit => f.write_str("RandomExit"),
            Resolve::RandomNotify => f.write_str("RandomNotify"),
            Resolve::NotifyAll => f.write_str("NotifyAll"),
            Resolve::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// A snapshot of the server's state, for diagnostics and tests.
#[derive(Clone, Debug, Default)]
pub struct GlobalInfo {
    /// The nodes global knows (in sync or syncing with).
    pub known: Vec<Atom>,
    /// The nodes whose names we have.
    pub synced: Vec<Atom>,
    /// The registered names.
    pub names: Vec<(Term, Pid)>,
    /// The locks held here: resource, requester id, holders.
    pub locks: Vec<(Term, Term, Vec<Pid>)>,
    /// Nodes with a sync session going on.
    pub syncing: Vec<Atom>,
}

/// Messages of the API, the locker, the resolvers and helpers to the server.
pub(crate) enum ToServer {
    Names {
        reply: Pid,
        id: Ref,
    },
    Known {
        reply: Pid,
        id: Ref,
    },
    Info {
        reply: Pid,
        id: Ref,
    },
    Registrar {
        job: registrar::Job,
        reply: Pid,
        id: Ref,
    },
    /// The Rust method of a name about to be registered here.
    Callback {
        name: Term,
        pid: Pid,
        callback: ResolveFn,
    },
    /// From the locker: both partitions are locked for `node`.
    LockIsSet {
        node: Atom,
        tag: i64,
        lock: Term,
    },
    /// From a resolver.
    ExchangeOps {
        node: Atom,
        tag: i64,
        ops: Vec<proto::Op>,
        resolved: Vec<proto::Op>,
    },
    /// From a sync helper: a node we were told about is unreachable.
    ExtraNodeDown(Atom),
}

/// An answer to an API request.
pub(crate) struct ApiReply {
    id: Ref,
    value: ApiValue,
}

pub(crate) enum ApiValue {
    Started(Pid),
    Names(Vec<Term>),
    Known(Vec<Atom>),
    Info(GlobalInfo),
    Done(Result<(), Error>),
}

/// A small xorshift generator for the random pauses and choices of the
/// protocol (no cryptographic use), one per process.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let p = crate::try_self_pid().map_or(0, Pid::to_bits);
        Rng((t ^ p.rotate_left(17)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }
}

fn unknown_server() -> Error {
    Error::UnknownName(SERVER.into())
}

/// Starts the name server on this node and returns its pid; if it already
/// runs, returns that one. Call it after
/// [`dist::start`](crate::dist::start) (kernel starts `global` once the
/// distribution is up): the server syncs with every node that is connected
/// or connects later, and speaks to Erlang nodes as their `global` does.
/// The server and its helpers are not linked to the caller: they live as
/// long as the node.
///
/// # Errors
/// [`Error::NotInProcess`] outside a beamish process; [`Error::NameTaken`]
/// if another process holds the local name `global_name_server`.
pub async fn start() -> Result<Pid, Error> {
    crate::try_self_pid().ok_or(Error::NotInProcess)?;
    if let Some(pid) = crate::whereis(SERVER) {
        return Ok(pid);
    }
    let me = crate::self_pid();
    let id = Ref::new();
    // The server spawns nothing before it is registered, so that peers'
    // messages find it; the spawning process registers it.
    let tables = Arc::new(Mutex::new(tables::Tables::default()));
    let (t1, t2) = (tables.clone(), tables.clone());
    let starter = crate::spawn(async move {
        let server_pid = crate::self_pid();
        let known = Vec::new();
        let locker = crate::spawn(locker::run(server_pid, t1, known));
        let registrar = crate::spawn(registrar::run(server_pid, t2));
        if crate::register(SERVER, server_pid).is_err() {
            locker.exit(crate::Reason::Kill);
            registrar.exit(crate::Reason::Kill);
            me.send(ApiReply {
                id,
                value: ApiValue::Done(Err(Error::NameTaken(SERVER.into()))),
            });
            return;
        }
        if let Some(shared) = shared_tables() {
            *shared.0.lock() = Some(tables.clone());
        }
        server::run(tables, locker, registrar, Some((me, id))).await;
    });
    let mon = crate::monitor(starter);
    let got = crate::receive_match(|m| {
        m.downcast_ref::<ApiReply>().is_some_and(|r| r.id == id)
            || m.downcast_ref::<crate::Down>()
                .is_some_and(|d| d.monitor == mon)
    })
    .await;
    crate::demonitor_flush(mon);
    match got.downcast::<ApiReply>() {
        Ok(ApiReply {
            value: ApiValue::Started(pid),
            ..
        }) => Ok(pid),
        Ok(ApiReply {
            value: ApiValue::Done(Err(e)),
            ..
        }) => match crate::whereis(SERVER) {
            // Another caller started it at the same moment.
            Some(pid) => Ok(pid),
            None => Err(e),
        },
        _ => Err(Error::NoProc(starter)),
    }
}

/// Sends `make(reply, id)` to the server and waits for its answer.
async fn ask(make: impl FnOnce(Pid, Ref) -> ToServer) -> Result<ApiValue, Error> {
    crate::try_self_pid().ok_or(Error::NotInProcess)?;
    let server = crate::whereis(SERVER).ok_or_else(unknown_server)?;
    let id = Ref::new();
    let mon = crate::monitor(server);
    server.send(make(crate::self_pid(), id));
    let got = crate::receive_match(|m| {
        m.downcast_ref::<ApiReply>().is_some_and(|r| r.id == id)
            || m.downcast_ref::<crate::Down>()
                .is_some_and(|d| d.monitor == mon)
    })
    .await;
    crate::demonitor_flush(mon);
    match got.downcast::<ApiReply>() {
        Ok(r) => Ok(r.value),
        Err(_) => Err(Error::NoProc(server)),
    }
}

/// The nodes this node's name server is in sync with (its known nodes),
/// without the copy of the name table that [`info`] makes.
pub(crate) async fn known_nodes() -> Result<Vec<Atom>, Error> {
    match ask(|reply, id| ToServer::Known { reply, id }).await? {
        ApiValue::Known(k) => Ok(k),
        _ => Err(unknown_server()),
    }
}

async fn registrar_job(job: registrar::Job) -> Result<(), Error> {
    match ask(|reply, id| ToServer::Registrar { job, reply, id }).await? {
        ApiValue::Done(r) => r,
        _ => Err(unknown_server()),
    }
}

/// Registers `pid` as `name` on every node of the cluster, with the default
/// resolve method ([`Resolve::RandomExit`]). OTP's `global:register_name/2`:
/// `yes` is `Ok(())`.
///
/// # Errors
/// [`Error::NameTaken`] if the name is registered (OTP's `no`);
/// [`Error::AlreadyRegistered`] if `pid` already has a global name (OTP
/// refuses that too, unless told otherwise); [`Error::UnknownName`] if the
/// server has not been started; [`Error::NotInProcess`].
pub async fn register_name(name: Term, pid: Pid) -> Result<(), Error> {
    register_name_with(name, pid, Resolve::RandomExit).await
}

/// [`register_name`] with a resolve method for clashes (OTP's
/// `global:register_name/3`).
///
/// # Errors
/// As [`register_name`].
pub async fn register_name_with(name: Term, pid: Pid, resolve: Resolve) -> Result<(), Error> {
    registrar_job(registrar::Job::Register {
        name,
        pid,
        resolve,
        replace: false,
    })
    .await
}

/// Registers `pid` as `name` whether or not the name is taken (OTP's
/// `global:re_register_name/2`).
///
/// # Errors
/// [`Error::UnknownName`] if the server has not been started;
/// [`Error::NotInProcess`].
pub async fn re_register_name(name: Term, pid: Pid) -> Result<(), Error> {
    re_register_name_with(name, pid, Resolve::RandomExit).await
}

/// [`re_register_name`] with a resolve method.
///
/// # Errors
/// As [`re_register_name`].
pub async fn re_register_name_with(name: Term, pid: Pid, resolve: Resolve) -> Result<(), Error> {
    registrar_job(registrar::Job::Register {
        name,
        pid,
        resolve,
        replace: true,
    })
    .await
}

/// Removes `name` on every node. A name nobody has is not an error (OTP's
/// `global:unregister_name/1` returns `ok` either way).
///
/// # Errors
/// [`Error::UnknownName`] if the server has not been started;
/// [`Error::NotInProcess`].
pub async fn unregister_name(name: &Term) -> Result<(), Error> {
    if whereis_name(name).is_none() {
        crate::whereis(SERVER).ok_or_else(unknown_server)?;
        return Ok(());
    }
    registrar_job(registrar::Job::Unregister(name.clone())).await
}

/// The process registered as `name`, on any node (OTP's
/// `global:whereis_name/1`); `None` also when the server is not started.
/// Like OTP's, it reads the name table directly (OTP: an ETS table),
/// without a round trip to the server, so it needs no process either.
pub fn whereis_name(name: &Term) -> Option<Pid> {
    let shared = shared_tables()?;
    let tables = shared.0.lock().clone()?;
    let t = tables.lock();
    let r = t.names.get(name)?;
    (r.pid.is_remote() || r.pid.is_alive()).then_some(r.pid)
}

/// This runtime's name table, once [`start`] has run (OTP's
/// `global_names` ETS table).
#[derive(Default)]
struct SharedTables(Mutex<Option<Arc<Mutex<tables::Tables>>>>);

fn shared_tables() -> Option<Arc<SharedTables>> {
    crate::runtime::context::core()?
        .shared
        .extension::<SharedTables>()
}

/// Sends `msg` to the process registered as `name` and returns its pid
/// (OTP's `global:send/2`).
///
/// # Errors
/// [`Error::UnknownName`] if nobody has the name (OTP exits with `badarg`).
pub fn send(name: &Term, msg: Term) -> Result<Pid, Error> {
    let pid = whereis_name(name).ok_or_else(|| Error::UnknownName(name.to_string().into()))?;
    pid.send(msg);
    Ok(pid)
}

/// Every globally registered name (OTP's `global:registered_names/0`).
pub async fn registered_names() -> Vec<Term> {
    match ask(|reply, id| ToServer::Names { reply, id }).await {
        Ok(ApiValue::Names(n)) => n,
        _ => Vec::new(),
    }
}

/// The server's state (known nodes, names, locks), for diagnostics.
///
/// # Errors
/// [`Error::UnknownName`] if the server has not been started;
/// [`Error::NotInProcess`].
pub async fn info() -> Result<GlobalInfo, Error> {
    match ask(|reply, id| ToServer::Info { reply, id }).await? {
        ApiValue::Info(i) => Ok(i),
        _ => Err(unknown_server()),
    }
}

/// Locks `{resource, requester}` on `nodes` for the calling process (OTP's
/// `global:set_lock/3`), trying `retries + 1` times (`None`: until it
/// succeeds) with OTP's random pauses. The lock is released by
/// [`del_lock`], or when the caller exits.
///
/// # Errors
/// [`Error::NotInProcess`].
pub async fn set_lock(
    resource: Term,
    requester: Term,
    nodes: &[Atom],
    retries: Option<u32>,
) -> Result<bool, Error> {
    crate::try_self_pid().ok_or(Error::NotInProcess)?;
    crate::whereis(SERVER).ok_or_else(unknown_server)?;
    let id = proto::LockId {
        resource,
        requester,
    };
    let mut rng = Rng::new();
    let mut times = 1u32;
    let mut left = retries;
    loop {
        if set_lock_remote(&id, nodes).await {
            return Ok(true);
        }
        match &mut left {
            Some(0) => return Ok(false),
            Some(n) => *n -= 1,
            None => {}
        }
        let max_ms: u64 = if times > 5 {
            8000
        } else {
            (1u64 << times) * 1000 / 8
        };
        let ms = 1 + rng.below(usize::try_from(max_ms).unwrap_or(1)) as u64;
        crate::sleep(Duration::from_millis(ms)).await;
        times += 1;
    }
}

/// `set_lock_on_nodes` without the local table probe (the caller is not
/// the server's partner process).
async fn set_lock_remote(id: &proto::LockId, nodes: &[Atom]) -> bool {
    let empty = Mutex::new(tables::Tables::default());
    locker::set_lock_on_nodes(id, nodes, &empty).await
}

/// Releases `{resource, requester}` on `nodes` for the calling process
/// (OTP's `global:del_lock/2`).
///
/// # Errors
/// [`Error::NotInProcess`].
pub async fn del_lock(resource: Term, requester: Term, nodes: &[Atom]) -> Result<(), Error> {
    crate::try_self_pid().ok_or(Error::NotInProcess)?;
    locker::del_lock(
        &proto::LockId {
            resource,
            requester,
        },
        nodes,
    )
    .await;
    Ok(())
}

/// The nodes OTP's `set_lock/1` uses: this one and every connected one.
pub fn all_nodes() -> Vec<Atom> {
    let mut v = vec![crate::dist::this_node()];
    v.extend(crate::dist::nodes());
    v
}
