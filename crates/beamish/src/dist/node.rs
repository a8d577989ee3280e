//! This node: its name, cookie and creation, the table of connected peers,
//! the acceptor, the `net_kernel` process, and the routing of everything a
//! local process sends to a remote pid.
//!
//! There is one node per OS process, for the life of the process (as with
//! `erl -name`): [`start`] makes it, from inside a process of the runtime
//! that will run its connections.
//!
//! Every peer has exactly one connection process, the only one that writes
//! its socket. A send, a link or a monitor aimed at a remote pid becomes an
//! [`Out`] item in that process's mailbox; so what one process sends to
//! another arrives in the order sent, and a message queued while the
//! connection is being set up waits in the mailbox. The peers table is read
//! under a read lock for every remote send; a connection removes itself
//! under the write lock and then drains its mailbox once more, so no signal
//! queued for a dying connection is lost (links and monitors get
//! `noconnection`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::net::TcpListener;

use super::connection::{self, Out};
use super::handshake::{HandshakeConfig, Status};
use super::remote::{self, pid_to_wire};
use super::stats::ConnCounters;
use super::term::Term;
use super::{Atom, ExtRef, epmd, etf};
use crate::mailbox::node::{Kind, NodeBox};
use crate::runtime::{self, Handle};
use crate::signal::Signal;
use crate::{Down, Error, Pid, Reason};

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub(crate) name: String,
    pub(crate) cookie: String,
    pub(crate) net_ticktime: Duration,
    pub(crate) epmd_port: Option<u16>,
    pub(crate) listen_port: u16,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) embedded_epmd: bool,
}

impl NodeConfig {
    /// A node named `name` (`alive@host`, a long name such as
    /// `app@127.0.0.1`) that admits peers knowing `cookie`.
    pub fn new(name: impl Into<String>, cookie: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            cookie: cookie.into(),
            net_ticktime: Duration::from_secs(60),
            epmd_port: None,
            listen_port: 0,
            handshake_timeout: Duration::from_secs(7),
            max_message_size: 128 << 20,
            embedded_epmd: true,
        }
    }

    /// Erlang's `net_ticktime`: a peer silent for this long is dropped, and
    /// a tick goes out every quarter of it when nothing else does.
    /// Default 60 s.
    pub fn net_ticktime(mut self, t: Duration) -> NodeConfig {
        self.net_ticktime = t.max(Duration::from_millis(400));
        self
    }

    /// The EPMD port (default: `ERL_EPMD_PORT` from the environment, else
    /// 4369, as for `erl`).
    pub fn epmd_port(mut self, port: u16) -> NodeConfig {
        self.epmd_port = Some(port);
        self
    }

    /// The port to accept connections on (default 0: any free port).
    pub fn listen_port(mut self, port: u16) -> NodeConfig {
        self.listen_port = port;
        self
    }

    /// How long a connection setup may take (default 7 s, as OTP).
    pub fn handshake_timeout(mut self, t: Duration) -> NodeConfig {
        self.handshake_timeout = t;
        self
    }

    /// The largest message a peer may send (default 128 MiB); a longer
    /// frame closes the connection before anything is buffered.
    pub fn max_message_size(mut self, bytes: usize) -> NodeConfig {
        self.max_message_size = bytes;
        self
    }

    /// Whether to start an EPMD inside this node when none listens
    /// (default true).
    pub fn embedded_epmd(mut self, on: bool) -> NodeConfig {
        self.embedded_epmd = on;
        self
    }

    fn epmd_addr(&self) -> SocketAddr {
        match self.epmd_port {
            Some(p) => SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
            None => epmd::epmd_addr(),
        }
    }
}

/// A message a process gets when a node it watches goes down (from
/// [`monitor_node`] or [`monitor_nodes`]): Erlang's `{nodedown, Node}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeDown {
    /// The node that went down (or could not be reached).
    pub node: Atom,
}

/// What a process gets when a process it monitors by name
/// ([`monitor_name`]) ends, or when nobody holds the name (`noproc`), or
/// when the node cannot be reached (`noconnection`): Erlang's
/// `{'DOWN', Ref, process, {Name, Node}, Reason}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameDown {
    /// What [`monitor_name`] returned.
    pub monitor: crate::Ref,
    /// The name that was monitored.
    pub name: Atom,
    /// The node it was monitored on.
    pub node: Atom,
    /// The exit reason of the process that held the name.
    pub reason: Reason,
}

/// A message a process that called [`monitor_nodes`] gets when a
/// connection to a node comes up: Erlang's `{nodeup, Node}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeUp {
    /// The node now connected.
    pub node: Atom,
}

/// What [`start`] returns: facts about the running node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node's full name.
    pub name: Atom,
    /// The creation EPMD gave this incarnation (never 0).
    pub creation: u32,
    /// The port the node accepts connections on.
    pub port: u16,
}

/// A peer in the table.
pub(crate) struct Peer {
    /// Its connection process.
    pub(crate) conn: Pid,
    /// True once the handshake is done.
    pub(crate) up: bool,
    /// The counters of its connection, set when it comes up.
    pub(crate) counters: Option<Arc<ConnCounters>>,
}

impl Peer {
    /// A connection process that is not up yet.
    pub(crate) fn starting(conn: Pid) -> Peer {
        Peer {
            conn,
            up: false,
            counters: None,
        }
    }
}

/// The node of this OS process.
pub(crate) struct NodeState {
    pub(crate) name: Atom,
    pub(crate) alive: String,
    pub(crate) cookie: String,
    pub(crate) creation: u32,
    pub(crate) config: NodeConfig,
    pub(crate) handle: Handle,
    pub(crate) peers: RwLock<FxHashMap<Atom, Peer>>,
    /// Processes that called `monitor_nodes(true)`.
    pub(crate) subscribers: Mutex<Vec<Pid>>,
    /// The connection whose `NodeUp` the subscribers last got, per node
    /// (the order of node events; see `connection::report_up`).
    pub(crate) reported: Mutex<FxHashMap<Atom, Pid>>,
    /// The functions other nodes may call (`beamish::rpc::register`).
    pub(crate) functions: RwLock<FxHashMap<(Atom, Atom), super::rpc::RpcFn>>,
    /// The nodes connections may be made with, in and out ([`allow`]);
    /// `None`: any node with the cookie.
    pub(crate) allowed: RwLock<Option<FxHashSet<Atom>>>,
}

static NODE: OnceLock<Arc<NodeState>> = OnceLock::new();

/// The running node, if [`start`] has run.
pub(crate) fn state() -> Option<&'static Arc<NodeState>> {
    NODE.get()
}

/// Splits and checks `alive@host`.
fn parse_name(name: &str) -> Result<(String, String), Error> {
    let bad = || Error::Config(format!("bad node name {name:?}: expected name@host"));
    let (alive, host) = name.split_once('@').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !ok(alive) || !ok(host) || alive.contains('.') {
        return Err(bad());
    }
    Ok((alive.to_owned(), host.to_owned()))
}

/// Starts this OS process's node: listens, registers with EPMD (starting
/// an embedded EPMD when none runs), and starts `net_kernel`. Must be called
/// from inside a process; connections run on that process's runtime.
///
/// ```no_run
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::dist::{self, NodeConfig};
/// let info = dist::start(NodeConfig::new("app@127.0.0.1", "secret")).await.unwrap();
/// assert_eq!(dist::this_node(), info.name);
/// # }).unwrap();
/// ```
pub async fn start(config: NodeConfig) -> Result<NodeInfo, Error> {
    let (alive, _host) = parse_name(&config.name)?;
    let name = Atom::new(&config.name).map_err(|e| Error::Config(e.to_string()))?;
    let handle = Handle::current().ok_or(Error::NotInProcess)?;
    if NODE.get().is_some() {
        return Err(Error::Config(
            "a node is already running in this OS process".into(),
        ));
    }
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, config.listen_port)).await?;
    let port = listener.local_addr()?.port();
    let registration = register(&config, &alive, port).await?;
    let creation = registration.creation;
    let state = Arc::new(NodeState {
        name,
        alive,
        cookie: config.cookie.clone(),
        creation,
        config,
        handle,
        peers: RwLock::new(FxHashMap::default()),
        subscribers: Mutex::new(Vec::new()),
        reported: Mutex::new(FxHashMap::default()),
        functions: RwLock::new(FxHashMap::default()),
        allowed: RwLock::new(None),
    });
    if NODE.set(state.clone()).is_err() {
        return Err(Error::Config(
            "a node is already running in this OS process".into(),
        ));
    }
    remote::set_this_node(name, creation);
    let kernel = crate::spawn(net_kernel());
    crate::register("net_kernel", kernel)?;
    crate::spawn(accept_loop(listener));
    crate::spawn(keep_registered(registration, port));
    tracing::info!(node = %name, creation, port, "node started");
    Ok(NodeInfo {
        name,
        creation,
        port,
    })
}

/// Registers with EPMD, starting the embedded one when none listens.
async fn register(
    config: &NodeConfig,
    alive: &str,
    port: u16,
) -> Result<epmd::Registration, Error> {
    let addr = config.epmd_addr();
    let mut last = None;
    for _ in 0..3 {
        match epmd::register(addr, alive, port).await {
            Ok(r) => return Ok(r),
            Err(epmd::EpmdError::Io(e))
                if config.embedded_epmd && e.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                let e = epmd::EpmdError::Io(e);
                // Nobody listens: become the EPMD. Losing the race to bind
                // to another node is fine: register with that one.
                if let Err(e) = epmd::start_embedded(addr).await {
                    tracing::debug!(error = %e, "embedded EPMD not started");
                }
                last = Some(e);
            }
            Err(e) => return Err(Error::Io(format!("EPMD registration failed: {e}").into())),
        }
    }
    Err(Error::Io(
        format!(
            "EPMD registration failed: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )
        .into(),
    ))
}

/// Holds the EPMD registration; when EPMD goes away, registers again (with
/// an embedded EPMD if none runs). Pids keep the first creation.
async fn keep_registered(mut registration: epmd::Registration, port: u16) {
    let Some(state) = state() else { return };
    loop {
        registration.closed().await;
        tracing::warn!("EPMD closed our registration; registering again");
        loop {
            match register(&state.config, &state.alive, port).await {
                Ok(r) => {
                    registration = r;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "EPMD registration failed; retrying");
                    crate::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Accepts connections; each gets a process that runs the handshake and,
/// if it succeeds, becomes that peer's connection.
async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                crate::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    connection::accepted(stream, addr).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                crate::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The `net_kernel` process: answers `net_adm:ping`'s
/// `{'$gen_call', {From, Tag}, {is_auth, Node}}` with `{Tag, yes}`.
async fn net_kernel() {
    loop {
        let msg = crate::receive::<Term>().await;
        if let Term::Tuple(e) = &msg
            && let [Term::Atom(Atom::GEN_CALL), Term::Tuple(from), request] = &e[..]
            && let [Term::Pid(from), tag] = &from[..]
        {
            let answer = match request {
                Term::Tuple(r) if matches!(r.first(), Some(Term::Atom(Atom::IS_AUTH))) => {
                    Term::Atom(Atom::YES)
                }
                _ => Term::Atom(Atom::ERROR),
            };
            from.send(Term::Tuple(vec![tag.clone(), answer]));
        }
    }
}

impl NodeState {
    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            timeout: self.config.handshake_timeout,
            ..HandshakeConfig::new(self.name.as_str(), self.cookie.as_str(), self.creation)
        }
    }

    /// What to answer a peer that wants to connect (the acceptor's side of
    /// "one connection per pair of nodes").
    pub(crate) fn decide(&self, peer: &str) -> Status {
        if peer == self.name.as_str() {
            tracing::warn!(peer, "a peer claims this node's own name; refused");
            return Status::NotAllowed;
        }
        let atom = Atom::existing(peer);
        if !self.allows(atom) {
            tracing::info!(peer, "a node not in the allowed list; refused");
            return Status::NotAllowed;
        }
        let Some(atom) = atom else {
            return Status::Ok;
        };
        match self.peers.read().get(&atom) {
            None => Status::Ok,
            Some(p) if p.up => Status::Alive,
            // We are connecting to it too: the greater name wins.
            Some(_) if peer > self.name.as_str() => Status::OkSimultaneous,
            Some(_) => Status::Nok,
        }
    }

    /// Whether connections with `node` may be made ([`allow`]); `None` is
    /// a name that is no atom yet, so in no list.
    pub(crate) fn allows(&self, node: Option<Atom>) -> bool {
        match &*self.allowed.read() {
            None => true,
            Some(allowed) => node.is_some_and(|n| allowed.contains(&n)),
        }
    }

    /// Pushes `out` to the connection of `node`, starting one if there is
    /// none (auto-connect).
    pub(crate) fn push(&self, node: Atom, out: Out) {
        let mut item = NodeBox::message(out);
        if let Some(p) = self.peers.read().get(&node) {
            match runtime::deliver(p.conn, item) {
                Ok(()) => return,
                // The connection has ended but not yet left the table.
                Err(back) => item = back,
            }
        }
        let mut peers = self.peers.write();
        if let Some(p) = peers.get(&node) {
            match runtime::deliver(p.conn, item) {
                Ok(()) => return,
                Err(back) => {
                    item = back;
                    peers.remove(&node);
                }
            }
        }
        let Ok(conn) = self.handle.spawn(connection::connect(node, false)) else {
            return; // the runtime is shutting down
        };
        peers.insert(node, Peer::starting(conn));
        if let Err(back) = runtime::deliver(conn, item) {
            node_box_lost(back);
        }
    }
}

fn node_box_lost(node: NodeBox) {
    crate::mailbox::node::drop_quietly(node);
}

// ------------------------------------------------------------------ routing

/// Reductions a send to a remote pid costs (a process has about 4,000
/// between yields).
const REMOTE_SEND_REDUCTIONS: u32 = 200;

/// Delivers a message or signal to a remote pid: the way out of
/// `runtime::deliver` for pids with the remote tag. `Err` gives the item
/// back when the pid can reach no process (a pid of this node's older
/// incarnation).
pub(crate) fn deliver_remote(to: Pid, node: NodeBox) -> Result<(), NodeBox> {
    let target = pid_to_wire(to).node;
    let Some(state) = state() else {
        return not_connected(to, node);
    };
    if target == state.name {
        // An older incarnation of this node: reaches no process.
        return Err(node);
    }
    // A remote send costs more reductions than a local one, so that a
    // process sending many yields after a few dozen: its connection then
    // writes them while the sender goes on, and the two nodes work at the
    // same time instead of taking turns by whole batches.
    crate::runtime::context::consume(REMOTE_SEND_REDUCTIONS);
    let out = match node.kind() {
        Kind::Message => match node.downcast::<Term>() {
            Ok(term) => Out::Send {
                from: crate::try_self_pid(),
                to,
                payload: encode_body(&term),
            },
            Err(node) => {
                dropped_non_term(to, &node);
                crate::mailbox::node::drop_quietly(node);
                return Ok(());
            }
        },
        Kind::Signal => match node.downcast::<Signal>() {
            Ok(Signal::Info(reply)) => {
                reply(None);
                return Ok(());
            }
            Ok(signal) => Out::Signal {
                from: crate::try_self_pid(),
                to,
                signal,
            },
            Err(node) => return Err(node),
        },
        // Aliases of this node's processes never name remote pids.
        Kind::Alias => return Err(node),
    };
    state.push(target, out);
    Ok(())
}

/// Sends `msg` to the process registered as `name` on `node` (Erlang's
/// `{Name, Node} ! Msg`); on this node it is a local send. Connects to
/// `node` first if needed. Sends to a name nobody has are dropped.
pub fn send_named(name: Atom, node: Atom, msg: Term) {
    match state() {
        Some(s) if node != s.name => s.push(
            node,
            Out::RegSend {
                from: crate::try_self_pid(),
                name,
                payload: encode_body(&msg),
            },
        ),
        Some(s) => {
            if let Some(pid) = s.handle.whereis(name.as_str()) {
                pid.send(msg);
            }
        }
        None => {
            if let Some(pid) = Handle::current().and_then(|h| h.whereis(name.as_str())) {
                pid.send(msg);
            }
        }
    }
}

/// What happens to a send or a signal for a remote pid when this node is not
/// distributed: messages are dropped, links and monitors get
/// `noconnection`, as on a node that cannot reach the other.
fn not_connected(to: Pid, node: NodeBox) -> Result<(), NodeBox> {
    if node.kind() == Kind::Signal
        && let Ok(signal) = node.downcast::<Signal>()
    {
        connection::refuse(to, signal, crate::try_self_pid());
    }
    Ok(())
}

fn dropped_non_term(to: Pid, node: &NodeBox) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    if DROPPED.fetch_add(1, Ordering::Relaxed).is_power_of_two() {
        tracing::warn!(
            %to,
            kind = node.type_name(),
            "only beamish::dist::Term messages cross nodes; message dropped"
        );
    }
}

// ------------------------------------------------------------ public queries

/// This node's name (`nonode@nohost` until [`start`]).
pub fn this_node() -> Atom {
    remote::this_node().0
}

/// The nodes this node is connected to, like Erlang's `nodes()`.
pub fn nodes() -> Vec<Atom> {
    let Some(s) = state() else { return Vec::new() };
    let mut v: Vec<Atom> = s
        .peers
        .read()
        .iter()
        .filter(|(_, p)| p.up)
        .map(|(n, _)| *n)
        .collect();
    v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    v
}

/// Watches `node`: the caller gets [`NodeDown`] when the connection to it
/// goes down, or at once if it cannot be reached; connects first if needed
/// (Erlang's `monitor_node(Node, true)`). `false` drops one such watch.
///
/// # Panics
/// Outside a beamish process.
pub fn monitor_node(node: Atom, on: bool) {
    let me = crate::self_pid();
    match state() {
        Some(s) if node == s.name => {}
        Some(s) => s.push(node, Out::MonitorNode { from: me, on }),
        None if on => me.send(NodeDown { node }),
        None => {}
    }
}

/// Monitors the process registered as `name` on `node` (Erlang's
/// `monitor(process, {Name, Node})`): the caller gets a [`NameDown`] when
/// it ends, at once (`noproc`) if nobody holds the name, `noconnection`
/// if the node cannot be reached. The monitor follows the process that
/// held the name when the monitor arrived, as in Erlang.
///
/// # Panics
/// Outside a beamish process.
pub fn monitor_name(name: Atom, node: Atom) -> crate::Ref {
    let me = crate::self_pid();
    let monitor = crate::Ref::new();
    let noproc = |reason| NameDown {
        monitor,
        name,
        node,
        reason,
    };
    match state() {
        Some(s) if node != s.name => s.push(
            node,
            Out::MonitorName {
                from: me,
                name,
                monitor,
            },
        ),
        _ if node == this_node() => match crate::whereis(name.as_str()) {
            Some(pid) => crate::signal::api::monitor_by_name(pid, monitor, name, node),
            None => me.send(noproc(Reason::NoProc)),
        },
        _ => me.send(noproc(Reason::NoConnection)),
    }
    monitor
}

/// Takes down a monitor made by [`monitor_name`] (a no-op if it already
/// fired); a [`NameDown`] for it already in the mailbox stays there.
pub fn demonitor_name(monitor: crate::Ref, node: Atom) {
    match state() {
        Some(s) if node != s.name => s.push(node, Out::DemonitorName { monitor }),
        _ => {
            crate::demonitor_info(monitor);
        }
    }
}

/// Sends `msg` to the alias `alias` (Erlang's `Alias ! Msg`): it reaches
/// the process that made the alias while the alias is active, and is
/// dropped otherwise. Aliases of other nodes go out as `ALIAS_SEND`.
pub fn send_alias(alias: &ExtRef, msg: Term) {
    if let Some((owner, tag)) = alias.alias_owner() {
        if let Err(back) = runtime::deliver(owner, NodeBox::alias_message(tag, msg)) {
            node_box_lost(back);
        }
        return;
    }
    match state() {
        Some(s) if alias.node != s.name => {
            let Some(from) = crate::try_self_pid().or_else(|| Some(s.handle.runtime_pid())) else {
                return;
            };
            s.push(
                alias.node,
                Out::AliasSend {
                    from,
                    alias: *alias,
                    payload: encode_body(&msg),
                },
            );
        }
        // An alias of this node that names no process, or of an older
        // incarnation: it reaches nobody.
        _ => {}
    }
}

/// Takes the connection to `node` down (Erlang's
/// `erlang:disconnect_node/1`): links and monitors over it get
/// `noconnection`, watchers get [`NodeDown`], and what is still queued for
/// it may be lost. The node is not connected again unless something sends
/// to it. Returns `false` only when this node is not distributed.
pub fn disconnect_node(node: Atom) -> bool {
    let Some(s) = state() else { return false };
    if node == s.name {
        return true;
    }
    if let Some(p) = s.peers.read().get(&node)
        && p.up
    {
        let _ = runtime::deliver(p.conn, NodeBox::message(Out::Disconnect));
    }
    true
}

/// Permits connections, in and out, only with the nodes added by this and
/// earlier calls (Erlang's `net_kernel:allow/1`). Before the first call any
/// node with the cookie may connect. Nodes already connected stay
/// connected; a node left out is refused at its next attempt (its
/// handshake gets `not_allowed`, ours fails before we dial). Nodes are
/// never removed from the list: [`set_allowed`] replaces it.
///
/// # Errors
/// [`Error::Config`] when this node is not distributed (Erlang's
/// `ignored`).
pub fn allow(nodes: &[Atom]) -> Result<(), Error> {
    let s = state().ok_or_else(not_started)?;
    s.allowed
        .write()
        .get_or_insert_with(FxHashSet::default)
        .extend(nodes.iter().copied());
    Ok(())
}

/// Replaces the list of nodes that connections may be made with (see
/// [`allow`]): `Some` of an empty slice refuses every node, `None` allows
/// any node again. With [`disconnect_node`], this isolates a node from some
/// or all of its peers until the list is lifted: a partition made on
/// purpose, which the node's own reconnect attempts cannot end.
///
/// # Errors
/// [`Error::Config`] when this node is not distributed.
pub fn set_allowed(nodes: Option<&[Atom]>) -> Result<(), Error> {
    let s = state().ok_or_else(not_started)?;
    *s.allowed.write() = nodes.map(|n| n.iter().copied().collect());
    Ok(())
}

/// The nodes connections may be made with; `None` when any node may.
pub fn allowed() -> Option<Vec<Atom>> {
    let s = state()?;
    let list = s.allowed.read();
    list.as_ref().map(|l| {
        let mut v: Vec<Atom> = l.iter().copied().collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v
    })
}

/// The error of a call that needs [`start`] to have run.
pub(crate) fn not_started() -> Error {
    Error::Config("the node is not started (dist::start)".into())
}

/// Connects to `node` if it is not connected yet and says whether it is
/// connected now (Erlang's `net_kernel:connect_node/1`): `true` for this
/// node, `false` if this node is not distributed or the handshake fails
/// (the peer is down, refuses the cookie, or does not answer in time).
///
/// # Errors
/// [`Error::NotInProcess`] outside a beamish process.
pub async fn connect_node(node: Atom) -> Result<bool, Error> {
    let me = crate::try_self_pid().ok_or(Error::NotInProcess)?;
    let Some(s) = state() else { return Ok(false) };
    if node == s.name {
        return Ok(true);
    }
    if nodes().contains(&node) {
        return Ok(true);
    }
    // A helper subscribes to node events before it looks, so an up that
    // happens in between is not missed, and leaves the caller's own
    // subscriptions alone. Its node watch connects, and reports a failed
    // handshake as a `NodeDown`.
    let id = crate::Ref::new();
    let mark = crate::mark();
    let helper = crate::spawn(async move {
        monitor_nodes(true);
        let up = if nodes().contains(&node) {
            true
        } else {
            monitor_node(node, true);
            let got = crate::receive_match(move |m| {
                m.downcast_ref::<NodeUp>().is_some_and(|u| u.node == node)
                    || m.downcast_ref::<NodeDown>().is_some_and(|d| d.node == node)
            })
            .await;
            monitor_node(node, false);
            got.is::<NodeUp>()
        };
        me.send(Connected { id, up });
    });
    let mon = crate::monitor(helper);
    let got = crate::otp::answer_or_down(mark, mon, move |c: &Connected| c.id == id).await;
    Ok(got.is_ok_and(|c| c.up))
}

/// The answer of [`connect_node`]'s helper.
struct Connected {
    id: crate::Ref,
    up: bool,
}

/// Subscribes the caller to [`NodeUp`] and [`NodeDown`] for every peer
/// (Erlang's `net_kernel:monitor_nodes(true)`); `false` unsubscribes.
///
/// # Panics
/// Outside a beamish process.
pub fn monitor_nodes(on: bool) {
    let me = crate::self_pid();
    let Some(s) = state() else { return };
    let mut subs = s.subscribers.lock();
    subs.retain(|p| *p != me);
    if on {
        subs.push(me);
    }
}

/// A term as it follows a distribution header (no version byte). A term
/// that cannot be encoded (a bitstring with bits out of range, which only
/// code that builds one by hand can make) goes out as `undefined`, with a
/// log line.
pub(crate) fn encode_body(t: &Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_body_into(t, &mut out);
    out
}

/// [`encode_body`] appended to `out`.
pub(crate) fn encode_body_into(t: &Term, out: &mut Vec<u8>) {
    let start = out.len();
    if let Err(e) = etf::encode_untagged(t, out) {
        tracing::warn!("term not encodable ({e}); sent as undefined");
        out.truncate(start);
        let _ = etf::encode_untagged(&Term::Atom(Atom::UNDEFINED), out);
    }
}

/// A `Down` for a monitor of a remote process whose node is unreachable.
pub(crate) fn noconnection_down(pid: Pid, monitor: crate::Ref) -> Down {
    Down {
        monitor,
        pid,
        reason: Reason::NoConnection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        assert_eq!(
            parse_name("app@127.0.0.1").unwrap(),
            ("app".to_owned(), "127.0.0.1".to_owned())
        );
        assert_eq!(
            parse_name("my_node-2@host.example").unwrap().1,
            "host.example"
        );
        for bad in [
            "",
            "app",
            "@host",
            "app@",
            "a b@host",
            "a.b@host",
            "app@ho st",
            "a@b@c",
        ] {
            assert!(
                matches!(parse_name(bad), Err(Error::Config(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn config_defaults_follow_otp() {
        let c = NodeConfig::new("a@127.0.0.1", "c");
        assert_eq!(c.net_ticktime, Duration::from_secs(60));
        assert_eq!(c.handshake_timeout, Duration::from_secs(7));
        assert_eq!(c.max_message_size, 128 << 20);
        // A tick time too short to tick is raised to a workable minimum.
        let c = c.net_ticktime(Duration::ZERO).epmd_port(4400);
        assert_eq!(c.net_ticktime, Duration::from_millis(400));
        assert_eq!(c.epmd_addr().port(), 4400);
    }

    #[test]
    fn not_distributed_until_started() {
        // This test binary never starts a node.
        assert_eq!(this_node(), Atom::NONODE);
        assert!(nodes().is_empty());
        assert!(super::super::runtime_pid().is_none());
    }
}
