//! The connection process: one per peer node, the only reader and writer of
//! its socket.
//!
//! It waits on three things at once: its mailbox (what local processes send
//! to the peer, as [`Out`] items), the socket becoming readable, and — while
//! output is pending — the socket becoming writable. Everything read in one
//! go is decoded and delivered before the next wait; everything queued is
//! encoded into one buffer and written with as few system calls as the
//! socket allows. Reads and writes never block each other, so two nodes
//! that both send a lot cannot deadlock.
//!
//! The process also keeps what the protocol needs per connection: the links
//! between local and remote processes (for `noconnection` when the
//! connection is lost, and the `UNLINK_ID` handshake), the monitors in both
//! directions, and the processes watching the node.
//!
//! And it counts what goes through the socket, for
//! [`connection_stats`](super::connection_stats): plain adds to its own
//! totals per message, tick and read or write, published to the shared
//! counters with relaxed stores once per read batch (end of `read`) and
//! once per write batch (end of a `flush` that had something to write).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::net::TcpStream;

use super::control::{self, Control, Proc, ReasonAt, op};
use super::frame::{self, Framing, Reader};
use super::handshake::{self, Peer as PeerInfo};
use super::node::{
    NameDown, NodeDown, NodeState, NodeUp, Peer, encode_body, encode_body_into, noconnection_down,
    state,
};
use super::stats::{ConnCounters, Tally};
use super::term::Term;
use super::{Atom, DistFlags, ExtRef, epmd, etf};
use crate::mailbox::node::NodeBox;
use crate::signal::{ExitKind, Signal};
use crate::{Down, Pid, Reason, Ref, runtime};

/// What local processes hand to a connection.
pub(crate) enum Out {
    /// A message; `payload` is the encoded term without its version byte.
    Send {
        from: Option<Pid>,
        to: Pid,
        payload: Vec<u8>,
    },
    /// A message to a registered name on the peer.
    RegSend {
        from: Option<Pid>,
        name: Atom,
        payload: Vec<u8>,
    },
    /// A signal to a remote process; `from` is the process that sent it.
    Signal {
        from: Option<Pid>,
        to: Pid,
        signal: Signal,
    },
    /// `monitor_node(Node, On)`.
    MonitorNode { from: Pid, on: bool },
    /// A message to an alias of a process of the peer (`ALIAS_SEND`).
    AliasSend {
        from: Pid,
        alias: ExtRef,
        payload: Vec<u8>,
    },
    /// `monitor(process, {Name, Node})` of a local process.
    MonitorName { from: Pid, name: Atom, monitor: Ref },
    /// Takes a [`Out::MonitorName`] monitor down.
    DemonitorName { monitor: Ref },
    /// A `SPAWN_REQUEST` of a local process (`beamish::rpc::call`).
    Spawn(Box<SpawnOut>),
    /// The process that made spawn request `req` gave up waiting for it:
    /// a monitor the reply sets up is taken down at once.
    SpawnAbandon { req: Ref },
    /// A socket the acceptor set up for this peer while we were connecting
    /// to it ourselves, and the peer's name won.
    Adopt(Box<(TcpStream, PeerInfo)>),
    /// Another connection replaced this one (the peer restarted).
    Replaced,
    /// `disconnect_node`: this node takes the connection down.
    Disconnect,
    /// What a connection the peer closed had not written yet, for the
    /// connection that succeeds it.
    Handover(Box<Handover>),
}

/// A spawn request to send: `from` runs `module:function(args...)` on the
/// peer, monitored with `req` as the monitor reference when `monitor`.
pub(crate) struct SpawnOut {
    pub(crate) from: Pid,
    pub(crate) req: Ref,
    pub(crate) module: Atom,
    pub(crate) function: Atom,
    pub(crate) args: Vec<Term>,
    pub(crate) monitor: bool,
}

/// The answer to a spawn request, delivered to the process that made it:
/// the new process, or why there is none (an atom such as `notsup`,
/// `badarg`, `noconnection`).
#[derive(Debug)]
pub(crate) struct SpawnReply {
    pub(crate) req: Ref,
    pub(crate) result: Result<Pid, Term>,
}

/// Leftovers of a connection that the peer closed.
pub(crate) struct Handover {
    /// Encoded frames not yet written (whole frames only).
    output: BytesMut,
    /// Items still in the mailbox, in order.
    items: Vec<Out>,
}

/// Answers a signal for a remote pid that cannot be delivered: a link gets
/// an exit with `noconnection`, a monitor a `Down` with `noconnection`.
pub(crate) fn refuse(to: Pid, signal: Signal, from: Option<Pid>) {
    match signal {
        Signal::Link { from } => {
            let _ = crate::signal::send(
                from,
                Signal::Exit {
                    from: to,
                    reason: Reason::NoConnection,
                    kind: ExitKind::Link,
                },
            );
        }
        Signal::Monitor { from, monitor } => {
            let _ = crate::signal::send(from, Signal::Down(noconnection_down(to, monitor)));
        }
        Signal::Info(reply) => reply(None),
        _ => {}
    }
    let _ = from;
}

/// Per-connection protocol state.
#[derive(Default)]
struct Tables {
    /// Links between a local process (first) and a remote one (second).
    links: FxHashSet<(Pid, Pid)>,
    /// Our `UNLINK_ID`s not acknowledged yet, per link.
    unlinking: FxHashMap<(Pid, Pid), u64>,
    next_unlink_id: u64,
    /// Monitors of remote processes by local ones: our ref → (local, remote).
    monitors_out: FxHashMap<Ref, (Pid, Pid)>,
    /// Monitors of local processes by remote ones: proxy ref → entry.
    monitors_in: FxHashMap<Ref, InMonitor>,
    /// The same, by (remote monitoring pid, its ref), for `DEMONITOR_P`.
    monitors_in_by_ref: FxHashMap<(Pid, ExtRef), Ref>,
    /// `monitor_node` watchers (one entry per call, as in Erlang).
    node_monitors: Vec<Pid>,
    /// Monitors of remote names by local processes: our ref → (local, name).
    name_monitors_out: FxHashMap<Ref, (Pid, Atom)>,
    /// Our spawn requests not answered yet: request → (requester, abandoned).
    spawns: FxHashMap<Ref, (Pid, bool)>,
}

struct InMonitor {
    target: Pid,
    watcher: Pid,
    r: ExtRef,
    name: Option<Atom>,
    /// The monitor of a process spawned for the peer to compute a result
    /// (`erpc:call`): when the peer takes the monitor down (it stopped
    /// waiting) or the connection is lost, nobody wants the result and the
    /// process is killed.
    kill_unwatched: bool,
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    Io(io::Error),
    Closed,
    TickTimeout,
    Protocol(String),
    OutputOverflow,
    Replaced,
    Disconnected,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Io(e) => write!(f, "io error: {e}"),
            Ended::Closed => f.write_str("closed by the peer"),
            Ended::TickTimeout => f.write_str("no data from the peer within net_ticktime"),
            Ended::Protocol(m) => write!(f, "protocol error: {m}"),
            Ended::OutputOverflow => f.write_str("output queue over its limit"),
            Ended::Replaced => f.write_str("replaced by a new connection"),
            Ended::Disconnected => f.write_str("disconnected by this node"),
        }
    }
}

/// Outgoing bytes queued past this many times the largest message close
/// the connection: `send` cannot wait, so a peer that stops reading must
/// not grow memory without bound.
const MAX_OUTPUT_MESSAGES: usize = 2;
/// Read at least this much at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Items taken from the mailbox per turn, before reading again.
const BATCH: usize = 256;

// ------------------------------------------------------------------ set-up

/// The process that `push` starts for a node we have no connection to:
/// connects (EPMD look-up, then the handshake), then runs the connection.
pub(crate) async fn connect(node: Atom, successor: bool) {
    let Some(st) = state() else { return };
    // A successor first takes what its predecessor had not written, so that
    // it goes out before anything sent since.
    let mut leftovers = None;
    let mut adopted = None;
    if successor {
        let handover = crate::receive_if::<Out, _>(|o| matches!(o, Out::Handover(_)))
            .timeout(HANDOVER_WAIT)
            .await;
        if let Some(Out::Handover(h)) = handover {
            leftovers = Some(h);
        }
        // Erlang connects again only to send: with nothing handed over and
        // nothing sent since, this successor leaves the table instead.
        if let Some(h) = &mut leftovers
            && h.output.is_empty()
            && h.items.is_empty()
        {
            loop {
                match crate::receive::<Out>().timeout(Duration::ZERO).await {
                    // The peer connected to us meanwhile: that is the connection.
                    Some(Out::Adopt(b)) => {
                        adopted = Some(*b);
                        break;
                    }
                    Some(out) => {
                        h.items.push(out);
                        break;
                    }
                    None => {}
                }
                // Deliveries to a connection happen under the table's read
                // lock: with the write lock held and the inbound stack
                // still empty, nothing can reach this mailbox any more.
                let mut peers = st.peers.write();
                if crate::mailbox::nothing_arrived() {
                    let me = crate::try_self_pid();
                    if peers.get(&node).is_some_and(|p| Some(p.conn) == me) {
                        peers.remove(&node);
                    }
                    return;
                }
            }
        }
    }
    let attempt = async {
        if !st.allows(Some(node)) {
            return Err("not in the allowed list (dist::allow)".to_owned());
        }
        let (alive, host) = node
            .as_str()
            .split_once('@')
            .ok_or_else(|| format!("bad node name {node}"))?;
        let ip = resolve(host).await?;
        let epmd_addr = SocketAddr::new(ip, st.config_epmd_port());
        let entry = epmd::port_please(epmd_addr, alive)
            .await
            .map_err(|e| format!("EPMD look-up: {e}"))?
            .ok_or_else(|| format!("{alive} is not registered with EPMD at {host}"))?;
        let mut stream = TcpStream::connect(SocketAddr::new(ip, entry.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        match handshake::initiate(
            &mut stream,
            &st.handshake_config(),
            Some(node.as_str()),
            || true,
        )
        .await
        {
            Ok(peer) => Ok((stream, peer)),
            // The peer connects to us at the same time and its name wins:
            // its socket comes through the acceptor.
            Err(handshake::HandshakeError::Nok) => Err(LOST.to_owned()),
            Err(e) => Err(format!("handshake: {e}")),
        }
    };
    let adopt = || crate::receive_if::<Out, _>(|o| matches!(o, Out::Adopt(_)));
    let mut result = match adopted {
        Some(a) => Ok(a),
        None => tokio::select! {
            r = attempt => r,
            out = adopt() => match out {
                Out::Adopt(b) => Ok(*b),
                _ => Err("unexpected item".to_owned()),
            },
        },
    };
    if matches!(&result, Err(e) if e == LOST) {
        result = match adopt().timeout(st.config.handshake_timeout).await {
            Some(Out::Adopt(b)) => Ok(*b),
            _ => Err("the peer won a simultaneous connect but never completed it".to_owned()),
        };
    }
    match result {
        Ok((stream, peer)) => run(st, node, stream, peer, leftovers).await,
        Err(why) => {
            tracing::warn!(%node, "cannot connect: {why}");
            let mut tables = Tables::default();
            if let Some(h) = leftovers {
                for out in h.items {
                    tables.refuse_queued(out);
                }
            }
            finish(st, node, tables, None).await;
        }
    }
}

/// What a failed initiator waits for when the peer's simultaneous attempt
/// won.
const LOST: &str = "lost the simultaneous connect";

/// How long a successor waits for its predecessor's leftovers.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

async fn resolve(host: &str) -> Result<std::net::IpAddr, String> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4())
        .ok_or_else(|| format!("no IPv4 address for {host}"))
}

/// The process the acceptor starts for each incoming socket: the handshake,
/// then the connection.
pub(crate) async fn accepted(mut stream: TcpStream, addr: SocketAddr) {
    let Some(st) = state() else { return };
    let cfg = st.handshake_config();
    let peer = match handshake::accept(&mut stream, &cfg, |name| st.decide(name)).await {
        Ok(peer) => peer,
        Err(e) => {
            tracing::info!(%addr, "handshake refused: {e}");
            return;
        }
    };
    let Ok(node) = Atom::new(&peer.name) else {
        tracing::warn!(%addr, "peer name is not a valid atom");
        return;
    };
    let me = crate::self_pid();
    {
        let mut peers = st.peers.write();
        match peers.get(&node) {
            // We are connecting to it too (and its name won, or our attempt
            // began after we said `ok`): our connecting process takes this
            // socket, since its mailbox holds what is queued for the peer.
            Some(p) if !p.up && p.conn != me => {
                // Delivered under the lock: a connecting process that leaves
                // the table finds it in its mailbox.
                let item = NodeBox::message(Out::Adopt(Box::new((stream, peer))));
                if runtime::deliver(p.conn, item).is_err() {
                    tracing::warn!(%node, "simultaneous connection lost");
                }
                return;
            }
            // A new incarnation of a node we still think is up.
            Some(p) if p.conn != me => {
                debug_assert!(p.up);
                let _ = runtime::deliver(p.conn, NodeBox::message(Out::Replaced));
                peers.insert(node, Peer::starting(me));
            }
            Some(_) => {}
            None => {
                peers.insert(node, Peer::starting(me));
            }
        }
    }
    run(st, node, stream, peer, None).await;
}

impl NodeState {
    fn config_epmd_port(&self) -> u16 {
        self.config
            .epmd_port
            .unwrap_or_else(|| epmd::epmd_addr().port())
    }
}

// ---------------------------------------------------------------- the loop

struct Conn<'a> {
    st: &'a NodeState,
    node: Atom,
    flags: DistFlags,
    stream: TcpStream,
    input: BytesMut,
    output: BytesMut,
    reader: Reader,
    /// What the peer may still create: atoms and remote pids are never freed.
    limits: etf::DecodeLimits,
    tables: Tables,
    last_read: Instant,
    wrote_since_tick: bool,
    next_seq: u64,
    /// Set once the connection ended normally and `finish` takes over.
    finished: bool,
    /// Where control messages are encoded (reused).
    scratch: Vec<u8>,
    /// True while `output` starts at a frame boundary (no frame of it has
    /// been written in part).
    output_clean: bool,
    /// Running totals, published to `counters` once per read batch
    /// ([`Conn::read`]) and once per write batch ([`Conn::flush`]).
    tally: Tally,
    /// What [`super::connection_stats`] shows of this connection.
    counters: Arc<ConnCounters>,
}

async fn run(
    st: &'static NodeState,
    node: Atom,
    stream: TcpStream,
    peer: PeerInfo,
    leftovers: Option<Box<Handover>>,
) {
    let me = crate::self_pid();
    let counters = ConnCounters::new(node, peer.creation, me);
    if let Some(p) = st.peers.write().get_mut(&node)
        && p.conn == me
    {
        p.up = true;
        p.counters = Some(counters.clone());
    }
    tracing::info!(%node, "connected");
    report_up(st, node, me);
    let mut c = Conn {
        st,
        node,
        flags: peer.flags,
        stream,
        input: BytesMut::with_capacity(READ_CHUNK),
        output: BytesMut::new(),
        reader: Reader::new(frame::Limits {
            max_message: st.config.max_message_size,
            ..frame::Limits::default()
        }),
        limits: etf::DecodeLimits::default(),
        tables: Tables::default(),
        last_read: Instant::now(),
        wrote_since_tick: false,
        next_seq: 1,
        finished: false,
        scratch: Vec::with_capacity(128),
        output_clean: true,
        tally: Tally::default(),
        counters,
    };
    let mut why = None;
    if let Some(h) = leftovers {
        c.output.extend_from_slice(&h.output);
        for out in h.items {
            if let Err(e) = c.outgoing(out) {
                why = Some(e);
                break;
            }
        }
    }
    let why = match why {
        Some(why) => why,
        None => c.serve().await,
    };
    match &why {
        Ended::Replaced | Ended::Closed | Ended::Disconnected => {
            tracing::info!(%node, "connection down: {why}")
        }
        _ => tracing::warn!(%node, "connection down: {why}"),
    }
    c.finished = true;
    let tables = std::mem::take(&mut c.tables);
    // The peer went away (or closed on us): what it never got goes to a
    // successor, which connects again (Erlang's auto-connect on send).
    let handover = match why {
        Ended::Closed | Ended::Io(_) if c.output_clean => Some(std::mem::take(&mut c.output)),
        Ended::Closed | Ended::Io(_) => Some(BytesMut::new()),
        _ => None,
    };
    // Out of the table before the socket closes: a peer that sees the close
    // and connects again at once must find no stale entry.
    let left = leave_table(st, node, handover.is_some());
    drop(c);
    finish_left(st, node, tables, handover, left).await;
}

impl Drop for Conn<'_> {
    /// If the connection process ends without `finish` (killed by an exit
    /// signal, the runtime shutting down, or a bug that panics), the node
    /// must not keep a dead connection in its table, and links and monitors
    /// over it still get `noconnection`.
    fn drop(&mut self) {
        if !self.finished {
            if std::thread::panicking() {
                tracing::error!(node = %self.node, "connection process failed");
            }
            let was_up = leave(self.st, self.node);
            notify(self.st, self.node, std::mem::take(&mut self.tables), was_up);
        }
    }
}

impl Conn<'_> {
    async fn serve(&mut self) -> Ended {
        let tick = self.st.config.net_ticktime / 4;
        let mut next_tick = Instant::now() + tick;
        loop {
            if let Err(e) = self.flush() {
                return e;
            }
            let now = Instant::now();
            if now >= next_tick {
                if self.last_read.elapsed() > self.st.config.net_ticktime {
                    return Ended::TickTimeout;
                }
                if !self.wrote_since_tick {
                    frame::write_tick(&mut self.output);
                    self.tally.ticks_out += 1;
                }
                self.wrote_since_tick = false;
                next_tick = now + tick;
                continue;
            }
            let wait = next_tick - now;
            let want_write = !self.output.is_empty();
            tokio::select! {
                biased;
                r = self.stream.readable() => {
                    if let Err(e) = r { return Ended::Io(e) }
                    if let Err(e) = self.read().await { return e }
                }
                out = crate::receive::<Out>().timeout(wait) => {
                    if let Some(out) = out {
                        if let Err(e) = self.outgoing(out) { return e }
                        for _ in 1..BATCH {
                            match crate::receive::<Out>().timeout(Duration::ZERO).await {
                                Some(out) => if let Err(e) = self.outgoing(out) { return e },
                                None => break,
                            }
                        }
                    }
                }
                w = self.stream.writable(), if want_write => {
                    if let Err(e) = w { return Ended::Io(e) }
                }
            }
        }
    }

    /// Writes as much pending output as the socket takes now, and
    /// publishes the output counters.
    fn flush(&mut self) -> Result<(), Ended> {
        // Every message and tick adds to `output`, and the flush that
        // empties it publishes: with nothing pending, nothing is new.
        if self.output.is_empty() {
            return Ok(());
        }
        if self.output_clean && peer_closed(&self.stream) {
            // Nothing of this batch would arrive: keep it for a successor.
            return Err(Ended::Closed);
        }
        while !self.output.is_empty() {
            match self.stream.try_write(&self.output) {
                Ok(0) => return Err(Ended::Closed),
                Ok(n) => {
                    let _ = self.output.split_to(n);
                    self.output_clean = self.output.is_empty();
                    self.wrote_since_tick = true;
                    self.tally.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Ended::Io(e)),
            }
        }
        self.counters.publish_out(&self.tally, self.output.len());
        if self.output.len() > MAX_OUTPUT_MESSAGES * self.st.config.max_message_size {
            return Err(Ended::OutputOverflow);
        }
        Ok(())
    }

    /// Reads what the socket has and handles every complete frame, then
    /// publishes the input counters.
    async fn read(&mut self) -> Result<(), Ended> {
        let mut budget = 16;
        loop {
            self.input.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.input) {
                Ok(0) => return Err(Ended::Closed),
                Ok(n) => {
                    self.last_read = Instant::now();
                    self.tally.bytes_in += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Ended::Io(e)),
            }
            self.frames()?;
            budget -= 1;
            if budget == 0 {
                self.counters.publish_in(&self.tally);
                // Let other processes run between large batches.
                crate::yield_now().await;
                budget = 16;
            }
        }
        let handled = self.frames();
        self.counters.publish_in(&self.tally);
        handled
    }

    fn frames(&mut self) -> Result<(), Ended> {
        loop {
            let frame = match self.reader.next_frame(&mut self.input) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Ended::Protocol(e.to_string())),
            };
            let Some(frame) = frame else {
                self.tally.ticks_in += 1;
                continue;
            };
            match self.reader.message(frame) {
                Ok(Some(msg)) => {
                    self.tally.messages_in += 1;
                    self.incoming(msg)?
                }
                Ok(None) => {}
                Err(e) => return Err(Ended::Protocol(e.to_string())),
            }
        }
    }

    // ------------------------------------------------------------ incoming

    fn incoming(&mut self, msg: frame::Message) -> Result<(), Ended> {
        let bad = |what: &str, e: etf::DecodeError| Ended::Protocol(format!("{what}: {e}"));
        let (ctrl_term, pos) = self
            .decode(&msg, 0)
            .map_err(|e| bad("control message", e))?;
        let ctrl = Control::parse(&ctrl_term).map_err(|e| Ended::Protocol(e.to_string()))?;
        let (payload, end) = if ctrl.has_payload() {
            let (t, end) = self.decode(&msg, pos).map_err(|e| bad("payload", e))?;
            (Some(t), end)
        } else {
            (None, pos)
        };
        if end != msg.body.len() {
            return Err(Ended::Protocol("bytes after the message".into()));
        }
        let reason = |at: ReasonAt, payload: Option<Term>| match at {
            ReasonAt::Inline(t) => Reason::from_term(t),
            ReasonAt::Payload => Reason::from_term(payload.unwrap_or(Term::Nil)),
        };
        match ctrl {
            Control::Send { to, .. } => {
                if let Some(msg) = payload
                    && !to.is_remote()
                {
                    to.send(msg);
                }
            }
            Control::RegSend { name, .. } => {
                if let Some(msg) = payload
                    && let Some(pid) = self.st.handle.whereis(name.as_str())
                {
                    pid.send(msg);
                }
            }
            Control::Link { from, to } => self.link_in(from, to),
            Control::Exit {
                from,
                to,
                reason: at,
            } => {
                self.tables.links.remove(&(to, from));
                let reason = reason(at, payload);
                self.signal_local(
                    to,
                    Signal::Exit {
                        from,
                        reason,
                        kind: ExitKind::Link,
                    },
                );
            }
            Control::Exit2 {
                from,
                to,
                reason: at,
            } => {
                let reason = reason(at, payload);
                self.signal_local(
                    to,
                    Signal::Exit {
                        from,
                        reason,
                        kind: ExitKind::Signal,
                    },
                );
            }
            Control::Unlink { from, to } => {
                self.tables.links.remove(&(to, from));
                self.signal_local(to, Signal::Unlink { from });
            }
            Control::UnlinkId { id, from, to } => {
                // The acknowledgement goes out before the unlink takes effect.
                self.control(control::tuple(
                    op::UNLINK_ID_ACK,
                    [Term::Int(id as i64), Term::Pid(to), Term::Pid(from)],
                ));
                self.tables.links.remove(&(to, from));
                self.signal_local(to, Signal::Unlink { from });
            }
            Control::UnlinkIdAck { id, from, to } => {
                if self.tables.unlinking.get(&(to, from)) == Some(&id) {
                    self.tables.unlinking.remove(&(to, from));
                }
            }
            Control::MonitorP { from, to, r } => self.monitor_in(from, to, r),
            Control::DemonitorP { from, r, .. } => {
                if let Some(proxy) = self.tables.monitors_in_by_ref.remove(&(from, r))
                    && let Some(m) = self.tables.monitors_in.remove(&proxy)
                {
                    self.signal_local(m.target, Signal::Demonitor { monitor: proxy });
                    if m.kill_unwatched {
                        m.target.exit(Reason::Kill);
                    }
                }
            }
            Control::MonitorPExit {
                from,
                to,
                r,
                reason: at,
            } => {
                let reason = reason(at, payload);
                if let Some(mref) = r.to_local()
                    && let Some((local, name)) = self.tables.name_monitors_out.remove(&mref)
                {
                    local.send(NameDown {
                        monitor: mref,
                        name,
                        node: self.node,
                        reason,
                    });
                } else if let Some(mref) = r.to_local()
                    && let Some((local, remote)) = self.tables.monitors_out.remove(&mref)
                {
                    let pid = match from {
                        Proc::Pid(p) => p,
                        Proc::Name(_) => remote,
                    };
                    debug_assert_eq!(local, to);
                    self.signal_local(
                        local,
                        Signal::Down(Down {
                            monitor: mref,
                            pid,
                            reason,
                        }),
                    );
                }
            }
            Control::SpawnRequest {
                req_id,
                from,
                mfa,
                link,
                monitor,
            } => self.spawn_in(req_id, from, mfa, link, monitor, payload),
            Control::SpawnReply {
                req_id,
                to,
                flags,
                result,
            } => self.spawn_reply_in(req_id, to, flags, result),
            // A send to an alias that is no longer active, or that names no
            // process of this incarnation, reaches nobody (as in Erlang).
            Control::AliasSend { alias, .. } => {
                if let Some(msg) = payload
                    && let Some((owner, tag)) = alias.alias_owner()
                    && let Err(back) = runtime::deliver(owner, NodeBox::alias_message(tag, msg))
                {
                    crate::mailbox::node::drop_quietly(back);
                }
            }
            Control::Ignored => {}
        }
        Ok(())
    }

    /// Decodes the term at `pos` of a message, charging the atoms and
    /// remote pids it creates to this connection's budget, and creating no
    /// atom once the node-wide room for peers' atoms is used up.
    fn decode(
        &mut self,
        msg: &frame::Message,
        pos: usize,
    ) -> Result<(Term, usize), etf::DecodeError> {
        let mut limits = self.limits;
        limits.max_atoms_created = limits.max_atoms_created.min(frame::peer_atom_room());
        let before = limits.max_atoms_created;
        let result = etf::decode_term_at(&msg.body, pos, msg.pass_through, &msg.refs, &mut limits);
        self.limits.max_atoms_created -= before - limits.max_atoms_created;
        self.limits.max_pids_created = limits.max_pids_created;
        result
    }

    /// Delivers a signal to a local process; false if it does not exist.
    fn signal_local(&mut self, to: Pid, signal: Signal) -> bool {
        !to.is_remote() && crate::signal::send(to, signal).is_ok()
    }

    fn link_in(&mut self, from: Pid, to: Pid) {
        if self.tables.unlinking.contains_key(&(to, from)) {
            return; // our unlink is on its way: the link is gone
        }
        if self.signal_local(to, Signal::Link { from }) {
            self.tables.links.insert((to, from));
        } else {
            self.exit_out(to, from, &Reason::NoProc, ExitKind::Link);
        }
    }

    fn monitor_in(&mut self, from: Pid, to: Proc, r: ExtRef) {
        let (target, name) = match to {
            Proc::Pid(p) => (Some(p).filter(|p| !p.is_remote()), None),
            Proc::Name(n) => (self.st.handle.whereis(n.as_str()), Some(n)),
        };
        let proxy = Ref::new();
        let delivered = target.is_some_and(|t| {
            self.signal_local(
                t,
                Signal::Monitor {
                    from,
                    monitor: proxy,
                },
            )
        });
        match target {
            Some(target) if delivered => {
                self.tables.monitors_in.insert(
                    proxy,
                    InMonitor {
                        target,
                        watcher: from,
                        r,
                        name,
                        kill_unwatched: false,
                    },
                );
                self.tables.monitors_in_by_ref.insert((from, r), proxy);
            }
            _ => {
                let who = match (to, name) {
                    (_, Some(n)) => Term::Atom(n),
                    (Proc::Pid(p), None) => Term::Pid(p),
                    (Proc::Name(n), None) => Term::Atom(n),
                };
                self.monitor_exit_out(who, from, r, &Reason::NoProc);
            }
        }
    }

    /// A `SPAWN_REQUEST` from the peer: a new process runs the function
    /// the request names (see [`super::rpc`]), linked to and monitored by
    /// the requester as asked, and the peer gets its pid in a
    /// `SPAWN_REPLY`. The process starts only once the link and the monitor
    /// are in place, so even one that ends at once reports to them.
    fn spawn_in(
        &mut self,
        req_id: Term,
        from: Pid,
        mfa: Option<(Atom, Atom, usize)>,
        link: bool,
        monitor: bool,
        args: Option<Term>,
    ) {
        let reply = |c: &mut Self, flags: i64, result: Term| {
            c.control(control::tuple(
                op::SPAWN_REPLY,
                [req_id.clone(), Term::Pid(from), Term::Int(flags), result],
            ));
        };
        let args = args
            .filter(|a| a.as_list().is_some() || matches!(a, Term::ByteList(_)))
            .and_then(|a| a.into_vec().ok());
        let (Some((module, function, arity)), Some(args), Term::Ref(r)) = (mfa, args, &req_id)
        else {
            return reply(self, 0, Term::Atom(Atom::BADARG));
        };
        if args.len() != arity {
            return reply(self, 0, Term::Atom(Atom::BADARG));
        }
        let r = *r;
        let job = super::rpc::spawned(self.st, module, function, args);
        let kill_unwatched = job.wants_result();
        let spawned = self.st.handle.spawn(async move {
            crate::receive::<super::rpc::Go>().await;
            job.run().await
        });
        let Ok(pid) = spawned else {
            return reply(self, 0, Term::Atom(Atom::SYSTEM_LIMIT));
        };
        let mut flags = 0;
        if link {
            self.link_in(from, pid);
            flags |= 1;
        }
        if monitor {
            self.monitor_in(from, Proc::Pid(pid), r);
            if let Some(proxy) = self.tables.monitors_in_by_ref.get(&(from, r))
                && let Some(m) = self.tables.monitors_in.get_mut(proxy)
            {
                m.kill_unwatched = kill_unwatched;
            }
            flags |= 2;
        }
        reply(self, flags, Term::Pid(pid));
        pid.send(super::rpc::Go);
    }

    /// The peer's answer to a spawn request of ours.
    fn spawn_reply_in(&mut self, req_id: ExtRef, to: Pid, flags: i64, result: Term) {
        let Some(req) = req_id.to_local() else { return };
        let Some((from, abandoned)) = self.tables.spawns.remove(&req) else {
            return;
        };
        debug_assert_eq!(from, to);
        let result = match result {
            Term::Pid(pid) => {
                if flags & 2 != 0 {
                    if abandoned {
                        self.control(control::tuple(
                            op::DEMONITOR_P,
                            [Term::Pid(from), Term::Pid(pid), Term::Ref(req_id)],
                        ));
                    } else {
                        self.tables.monitors_out.insert(req, (from, pid));
                    }
                }
                Ok(pid)
            }
            other => Err(other),
        };
        if !abandoned {
            from.send(SpawnReply { req, result });
        }
    }

    fn spawn_out(&mut self, s: SpawnOut) {
        if !self.flags.contains(DistFlags::SPAWN) {
            s.from.send(SpawnReply {
                req: s.req,
                result: Err(Term::Atom(Atom::NOTSUP)),
            });
            return;
        }
        let mut opts = Vec::new();
        if s.monitor {
            opts.push(Term::Atom(Atom::MONITOR));
        }
        let ctrl = control::tuple(
            op::SPAWN_REQUEST,
            [
                Term::Ref(ExtRef::from(s.req)),
                Term::Pid(s.from),
                Term::Pid(s.from),
                Term::Tuple(vec![
                    Term::Atom(s.module),
                    Term::Atom(s.function),
                    Term::Int(s.args.len() as i64),
                ]),
                Term::list(opts),
            ],
        );
        if s.monitor {
            self.tables.spawns.insert(s.req, (s.from, false));
        }
        self.message(&ctrl, &encode_body(&Term::list(s.args)));
    }

    // ------------------------------------------------------------ outgoing

    fn outgoing(&mut self, out: Out) -> Result<(), Ended> {
        match out {
            Out::Send { from, to, payload } => {
                let ctrl = match from {
                    Some(from) if self.flags.contains(DistFlags::SEND_SENDER) => {
                        control::tuple(op::SEND_SENDER, [Term::Pid(from), Term::Pid(to)])
                    }
                    _ => control::tuple(op::SEND, [Term::Atom(Atom::EMPTY), Term::Pid(to)]),
                };
                self.message(&ctrl, &payload);
            }
            Out::RegSend {
                from,
                name,
                payload,
            } => {
                let from = from.map(Term::Pid).unwrap_or(Term::Atom(Atom::UNDEFINED));
                let ctrl = control::tuple(
                    op::REG_SEND,
                    [from, Term::Atom(Atom::EMPTY), Term::Atom(name)],
                );
                self.message(&ctrl, &payload);
            }
            Out::Signal { from, to, signal } => self.signal_out(from, to, signal),
            Out::MonitorNode { from, on: true } => self.tables.node_monitors.push(from),
            Out::MonitorNode { from, on: false } => {
                if let Some(i) = self.tables.node_monitors.iter().position(|p| *p == from) {
                    self.tables.node_monitors.swap_remove(i);
                }
            }
            Out::AliasSend {
                from,
                alias,
                payload,
            } => {
                let ctrl = control::tuple(op::ALIAS_SEND, [Term::Pid(from), Term::Ref(alias)]);
                self.message(&ctrl, &payload);
            }
            Out::Spawn(s) => self.spawn_out(*s),
            Out::MonitorName {
                from,
                name,
                monitor,
            } => {
                self.tables.name_monitors_out.insert(monitor, (from, name));
                self.control(control::tuple(
                    op::MONITOR_P,
                    [
                        Term::Pid(from),
                        Term::Atom(name),
                        Term::Ref(ExtRef::from(monitor)),
                    ],
                ));
            }
            Out::DemonitorName { monitor } => {
                if let Some((from, name)) = self.tables.name_monitors_out.remove(&monitor) {
                    self.control(control::tuple(
                        op::DEMONITOR_P,
                        [
                            Term::Pid(from),
                            Term::Atom(name),
                            Term::Ref(ExtRef::from(monitor)),
                        ],
                    ));
                }
            }
            Out::SpawnAbandon { req } => {
                if let Some(entry) = self.tables.spawns.get_mut(&req) {
                    entry.1 = true;
                }
            }
            // Already connected: the extra socket closes.
            Out::Adopt(_) => {}
            Out::Replaced => return Err(Ended::Replaced),
            Out::Disconnect => {
                // What was queued before goes out first, as far as the
                // socket takes it now.
                self.flush()?;
                return Err(Ended::Disconnected);
            }
            // Leftovers of a predecessor that arrived late: their order
            // behind newer items is lost, so they are written now.
            Out::Handover(h) => {
                self.output.extend_from_slice(&h.output);
                for out in h.items {
                    self.outgoing(out)?;
                }
            }
        }
        if self.output.len() >= READ_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn signal_out(&mut self, from: Option<Pid>, to: Pid, signal: Signal) {
        match signal {
            Signal::Link { from } => {
                self.tables.unlinking.remove(&(from, to));
                self.tables.links.insert((from, to));
                self.control(control::tuple(op::LINK, [Term::Pid(from), Term::Pid(to)]));
            }
            Signal::Unlink { from } => {
                self.tables.links.remove(&(from, to));
                if self.flags.contains(DistFlags::UNLINK_ID) {
                    self.tables.next_unlink_id += 1;
                    let id = self.tables.next_unlink_id;
                    self.tables.unlinking.insert((from, to), id);
                    self.control(control::tuple(
                        op::UNLINK_ID,
                        [Term::Int(id as i64), Term::Pid(from), Term::Pid(to)],
                    ));
                } else {
                    self.control(control::tuple(op::UNLINK, [Term::Pid(from), Term::Pid(to)]));
                }
            }
            Signal::Exit { from, reason, kind } => {
                if kind == ExitKind::Link {
                    self.tables.links.remove(&(from, to));
                }
                self.exit_out(from, to, &reason, kind);
            }
            Signal::Monitor { from, monitor } => {
                self.tables.monitors_out.insert(monitor, (from, to));
                self.control(control::tuple(
                    op::MONITOR_P,
                    [
                        Term::Pid(from),
                        Term::Pid(to),
                        Term::Ref(ExtRef::from(monitor)),
                    ],
                ));
            }
            Signal::Demonitor { monitor } => {
                if let Some((local, remote)) = self.tables.monitors_out.remove(&monitor) {
                    self.control(control::tuple(
                        op::DEMONITOR_P,
                        [
                            Term::Pid(local),
                            Term::Pid(remote),
                            Term::Ref(ExtRef::from(monitor)),
                        ],
                    ));
                }
                let _ = from;
            }
            Signal::Down(down) => {
                if let Some(m) = self.tables.monitors_in.remove(&down.monitor) {
                    self.tables.monitors_in_by_ref.remove(&(m.watcher, m.r));
                    let who = m.name.map(Term::Atom).unwrap_or(Term::Pid(down.pid));
                    self.monitor_exit_out(who, to, m.r, &down.reason);
                }
            }
            Signal::Info(reply) => reply(None),
            // Sessions trace local processes only.
            Signal::Trace(_) => {}
        }
    }

    fn exit_out(&mut self, from: Pid, to: Pid, reason: &Reason, kind: ExitKind) {
        let reason = reason.to_term();
        let (payload_op, old_op) = match kind {
            ExitKind::Link => (op::PAYLOAD_EXIT, op::EXIT),
            _ => (op::PAYLOAD_EXIT2, op::EXIT2),
        };
        if self.flags.contains(DistFlags::EXIT_PAYLOAD) {
            let ctrl = control::tuple(payload_op, [Term::Pid(from), Term::Pid(to)]);
            self.message(&ctrl, &encode_body(&reason));
        } else {
            self.control(control::tuple(
                old_op,
                [Term::Pid(from), Term::Pid(to), reason],
            ));
        }
    }

    fn monitor_exit_out(&mut self, who: Term, to: Pid, r: ExtRef, reason: &Reason) {
        let reason = reason.to_term();
        if self.flags.contains(DistFlags::EXIT_PAYLOAD) {
            let ctrl = control::tuple(
                op::PAYLOAD_MONITOR_P_EXIT,
                [who, Term::Pid(to), Term::Ref(r)],
            );
            self.message(&ctrl, &encode_body(&reason));
        } else {
            self.control(control::tuple(
                op::MONITOR_P_EXIT,
                [who, Term::Pid(to), Term::Ref(r), reason],
            ));
        }
    }

    /// Queues a control message with no payload.
    fn control(&mut self, ctrl: Term) {
        self.message(&ctrl, &[]);
    }

    /// Queues a control message and its encoded payload.
    fn message(&mut self, ctrl: &Term, payload: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode_body_into(ctrl, &mut scratch);
        let framing = if !self.flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
            Framing::PassThrough
        } else if self.flags.contains(DistFlags::FRAGMENTS) {
            Framing::Fragments
        } else {
            Framing::Header
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.tally.messages_out += 1;
        frame::write_message(&mut self.output, &scratch, payload, framing, seq);
        self.scratch = scratch;
    }
}

// ----------------------------------------------------------------- the end

/// Leaves the table, then tells everyone who depended on the connection:
/// links get `noconnection` exits, monitors `Down` with `noconnection`,
/// node watchers `NodeDown`; what was still queued is answered the same way.
async fn finish(st: &NodeState, node: Atom, tables: Tables, handover: Option<BytesMut>) {
    let left = leave_table(st, node, handover.is_some());
    finish_left(st, node, tables, handover, left).await;
}

/// Leaves the peers table: for good, or in favour of a successor when
/// `handover`. Returns whether this connection was up, and the successor.
fn leave_table(st: &NodeState, node: Atom, handover: bool) -> (bool, Option<Pid>) {
    match handover {
        true => leave_to_successor(st, node),
        false => (leave(st, node), None),
    }
}

/// [`finish`] once the table has been left.
async fn finish_left(
    st: &NodeState,
    node: Atom,
    mut tables: Tables,
    handover: Option<BytesMut>,
    (was_up, successor): (bool, Option<Pid>),
) {
    // Nothing new reaches this mailbox now; what is in it is the last.
    let mut items = Vec::new();
    while let Some(out) = crate::receive::<Out>().timeout(Duration::ZERO).await {
        match successor {
            Some(_) => items.push(out),
            None => tables.refuse_queued(out),
        }
    }
    if let Some(next) = successor {
        let h = Handover {
            output: handover.unwrap_or_default(),
            items,
        };
        if let Err(back) = runtime::deliver(next, NodeBox::message(Out::Handover(Box::new(h)))) {
            crate::mailbox::node::drop_quietly(back);
        }
    }
    notify(st, node, tables, was_up);
}

/// Replaces this connection in the peers table by a new one that connects
/// again and starts with this one's leftovers. Returns whether this one was
/// up, and the successor (none if this one was no longer in the table).
fn leave_to_successor(st: &NodeState, node: Atom) -> (bool, Option<Pid>) {
    let me = crate::try_self_pid();
    let mut peers = st.peers.write();
    let Some(p) = peers.get_mut(&node).filter(|p| Some(p.conn) == me) else {
        return (false, None);
    };
    let was_up = p.up;
    match st.handle.spawn(connect(node, true)) {
        Ok(next) => {
            *p = Peer::starting(next);
            (was_up, Some(next))
        }
        Err(_) => {
            peers.remove(&node);
            (was_up, None)
        }
    }
}

impl Tables {
    /// Answers an item left in the mailbox of a connection that ended:
    /// links and monitors get `noconnection`, messages are dropped.
    fn refuse_queued(&mut self, out: Out) {
        match out {
            Out::Signal { from, to, signal } => match signal {
                Signal::Link { .. } | Signal::Monitor { .. } | Signal::Info(_) => {
                    refuse(to, signal, from)
                }
                Signal::Unlink { from } => {
                    self.links.remove(&(from, to));
                }
                Signal::Demonitor { monitor } => {
                    self.monitors_out.remove(&monitor);
                }
                _ => {}
            },
            Out::MonitorNode { from, on: true } => self.node_monitors.push(from),
            Out::MonitorName {
                from,
                name,
                monitor,
            } => {
                self.name_monitors_out.insert(monitor, (from, name));
            }
            Out::Spawn(s) if s.monitor => {
                self.spawns.insert(s.req, (s.from, false));
            }
            Out::Handover(h) => {
                for out in h.items {
                    self.refuse_queued(out);
                }
            }
            _ => {}
        }
    }
}

/// True if the peer has closed its side (a read would return end of
/// stream). Asked of the socket itself: the reactor's readiness may not
/// have caught up yet.
fn peer_closed(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a socket this
    // connection owns; MSG_DONTWAIT makes it return at once.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

/// Takes this connection out of the peers table (if it is still there);
/// true if it was up.
fn leave(st: &NodeState, node: Atom) -> bool {
    let me = crate::try_self_pid();
    let mut peers = st.peers.write();
    match peers.get(&node) {
        Some(p) if Some(p.conn) == me => peers.remove(&node).is_some_and(|p| p.up),
        _ => false,
    }
}

/// Tells everyone who depended on the connection that it is gone.
fn notify(st: &NodeState, node: Atom, tables: Tables, was_up: bool) {
    for (local, remote) in tables.links {
        let _ = crate::signal::send(
            local,
            Signal::Exit {
                from: remote,
                reason: Reason::NoConnection,
                kind: ExitKind::Link,
            },
        );
    }
    for (mref, (local, remote)) in tables.monitors_out {
        let _ = crate::signal::send(local, Signal::Down(noconnection_down(remote, mref)));
    }
    for (proxy, m) in tables.monitors_in {
        let _ = crate::signal::send(m.target, Signal::Demonitor { monitor: proxy });
        if m.kill_unwatched {
            m.target.exit(Reason::Kill);
        }
    }
    for (monitor, (local, name)) in tables.name_monitors_out {
        local.send(NameDown {
            monitor,
            name,
            node,
            reason: Reason::NoConnection,
        });
    }
    for (req, (from, _)) in tables.spawns {
        from.send(SpawnReply {
            req,
            result: Err(Term::Atom(Atom::NOCONNECTION)),
        });
    }
    for pid in tables.node_monitors {
        pid.send(NodeDown { node });
    }
    if was_up {
        report_down(st, node, crate::try_self_pid());
    }
}

/// Tells the `monitor_nodes` subscribers that `conn`'s connection to
/// `node` is up. Events of one node reach them in order, up and down in
/// turn, whichever connection process reports them: a connection that
/// comes up before its predecessor has reported its end reports that end
/// first (and the predecessor then reports nothing).
fn report_up(st: &NodeState, node: Atom, conn: Pid) {
    let mut reported = st.reported.lock();
    let subscribers = st.subscribers.lock().clone();
    if reported.insert(node, conn).is_some_and(|old| old != conn) {
        for pid in &subscribers {
            pid.send(NodeDown { node });
        }
    }
    for pid in subscribers {
        pid.send(NodeUp { node });
    }
}

/// The end of `conn`'s connection to `node`, for the subscribers, unless a
/// successor has reported it already (see [`report_up`]).
fn report_down(st: &NodeState, node: Atom, conn: Option<Pid>) {
    let mut reported = st.reported.lock();
    match (reported.get(&node), conn) {
        (Some(c), Some(me)) if *c != me => return,
        (None, _) => return,
        _ => {}
    }
    reported.remove(&node);
    let subscribers = st.subscribers.lock().clone();
    for pid in subscribers {
        pid.send(NodeDown { node });
    }
}
