//! An EPMD that runs in beamish processes: one accepting connections, one
//! per connection.
//!
//! The registry is a map shared by the connection processes. A node's
//! entry lives exactly as long as the connection that registered it: the
//! connection's process removes it when the socket closes, when a
//! `STOP_REQ` names it, or when the process itself ends, however it ends.
//! `KILL_REQ`, or the end of the accepting process, stops every connection.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::EpmdError;
use super::proto::{self, MAX_REQUEST, NodeAddr, Request, VERSION};
use crate::{Pid, SpawnOptions};

/// How long a connection may take to send its request, and to take our
/// reply. Only registered nodes keep their connection open longer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Creations below this are left to nodes of protocol version 5, which
/// had 2-bit creations (OTP's epmd does the same).
const FIRST_CREATION: u32 = 4;

/// A running embedded EPMD.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Embedded {
    /// The address it serves on (with the real port when asked for port 0).
    pub(crate) addr: SocketAddr,
    /// Its accepting process: an exit signal to it (`kill`, `shutdown`)
    /// stops the server and closes every connection to it.
    pub(crate) pid: Pid,
}

/// Binds `addr` and serves EPMD there from a new beamish process.
///
/// Fails with [`EpmdError::AddrInUse`] when something already listens on
/// `addr`, typically a real `epmd`: the node then registers with that one.
/// Must be called from a beamish process, like [`crate::spawn`].
pub(crate) async fn start_embedded(addr: SocketAddr) -> Result<Embedded, EpmdError> {
    if crate::try_self_pid().is_none() {
        return Err(EpmdError::Spawn(crate::Error::NotInProcess));
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => EpmdError::AddrInUse(addr),
        _ => EpmdError::Io(e),
    })?;
    let addr = listener.local_addr()?;
    let spawned = SpawnOptions::new()
        .spawn(serve(listener))
        .map_err(EpmdError::Spawn)?;
    tracing::debug!(%addr, "epmd: serving");
    Ok(Embedded {
        addr,
        pid: spawned.pid,
    })
}

/// Serves EPMD on `listener` until a `KILL_REQ`, spawning one beamish
/// process per connection. Must run in a beamish process; outside one it
/// logs an error and returns.
///
/// When this future ends or is dropped (its process killed), every
/// connection closes, so registered nodes notice that their EPMD is gone.
pub(crate) async fn serve(listener: TcpListener) {
    if crate::try_self_pid().is_none() {
        tracing::error!("epmd: serve must run in a beamish process");
        return;
    }
    let port = listener.local_addr().map_or(0, |a| a.port());
    let state = Arc::new(State::new(port));
    let _stop_all = StopOnDrop(state.clone());
    let mut stopped = state.stop.subscribe();
    loop {
        let accepted = match race(listener.accept(), stopped.wait_for(|&s| s)).await {
            First(accepted) => accepted,
            Second(_) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = connection(state.clone(), stream, peer);
                if let Err(e) = SpawnOptions::new().spawn(connection) {
                    tracing::warn!(%peer, "epmd: no process for a connection: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors, a connection reset before it was
                // accepted: not the listener's fault. Back off a little.
                tracing::warn!("epmd: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The life of one connection: one request and its reply, or a
/// registration held until the socket closes. Ends early when the server
/// stops.
async fn connection(state: Arc<State>, mut stream: TcpStream, peer: SocketAddr) {
    let mut stopped = state.stop.subscribe();
    let handled = race(handle(&state, &mut stream, peer), stopped.wait_for(|&s| s));
    if let First(Err(e)) = handled.await {
        tracing::debug!(%peer, "epmd: closing the connection: {e}");
    }
}

/// Reads one request and serves it.
async fn handle(state: &State, stream: &mut TcpStream, peer: SocketAddr) -> Result<(), EpmdError> {
    let body = timed(read_request(stream)).await?;
    let request = Request::decode(&body)?;
    if request.local_only() && !is_local(stream, peer) {
        return Err(EpmdError::NotLocal);
    }
    let reply = match request {
        Request::Alive2(node) => return hold_registration(state, stream, node).await,
        Request::PortPlease2(name) => proto::port2_reply(state.lookup(&name).as_ref()),
        Request::Names => {
            let nodes = state.list();
            proto::names_reply(
                state.port,
                nodes.iter().map(|(name, port, _)| (name.as_str(), *port)),
            )
        }
        Request::Dump => {
            let nodes = state.list();
            proto::dump_reply(
                state.port,
                nodes
                    .iter()
                    .map(|(name, port, id)| (name.as_str(), *port, *id)),
            )
        }
        Request::Kill => {
            let replied = timed(write(stream, b"OK")).await;
            tracing::debug!(%peer, "epmd: killed");
            state.stop();
            return replied;
        }
        Request::Stop(name) if state.stop_node(&name) => b"STOPPED".to_vec(),
        Request::Stop(_) => b"NOEXIST".to_vec(),
    };
    timed(write(stream, &reply)).await
}

/// Registers `node` and keeps the registration until the connection
/// closes or a `STOP_REQ` removes it. A name already registered gets
/// result 1, and the connection closes.
async fn hold_registration(
    state: &State,
    stream: &mut TcpStream,
    node: NodeAddr,
) -> Result<(), EpmdError> {
    let highest = node.highest;
    let Some(held) = state.register(node) else {
        // epmd's error reply carries creation 99.
        timed(write(stream, &proto::alive2_reply(highest, 1, 99))).await?;
        return Err(EpmdError::Refused(1));
    };
    let reply = proto::alive2_reply(highest, 0, held.creation);
    timed(write(stream, &reply)).await?;
    tracing::debug!(
        name = held.name,
        creation = held.creation,
        "epmd: registered"
    );
    match race(until_closed(stream), held.kick.notified()).await {
        First(closed) => closed,
        Second(()) => Ok(()), // stopped by STOP_REQ: close the connection
    }
    // `held` drops here and unregisters the name.
}

/// Waits for the end of a registered connection. A node sends nothing
/// after `ALIVE2_REQ`; anything it does send ends the registration.
async fn until_closed(stream: &mut TcpStream) -> Result<(), EpmdError> {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte).await? {
        0 => Ok(()),
        _ => Err(EpmdError::Malformed("data after ALIVE2_REQ")),
    }
}

/// Reads a request's length and then its bytes, refusing one longer than
/// [`MAX_REQUEST`] before reading it.
async fn read_request(stream: &mut TcpStream) -> Result<Vec<u8>, EpmdError> {
    let len = usize::from(stream.read_u16().await?);
    if len > MAX_REQUEST {
        return Err(EpmdError::TooLong);
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes a whole reply.
async fn write(stream: &mut TcpStream, reply: &[u8]) -> Result<(), EpmdError> {
    stream.write_all(reply).await?;
    Ok(())
}

/// `step`, or [`EpmdError::Timeout`] after [`REQUEST_TIMEOUT`].
async fn timed<T>(step: impl Future<Output = Result<T, EpmdError>>) -> Result<T, EpmdError> {
    tokio::time::timeout(REQUEST_TIMEOUT, step)
        .await
        .unwrap_or(Err(EpmdError::Timeout))
}

/// Whether `peer` is this host: a loopback address, or the address the
/// connection came in on (as epmd decides).
fn is_local(stream: &TcpStream, peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    ip.is_loopback()
        || stream
            .local_addr()
            .is_ok_and(|local| local.ip().to_canonical() == ip)
}

/// What the connection processes share.
struct State {
    /// The port we serve on: NAMES and DUMP replies start with it.
    port: u16,
    /// The registered nodes.
    nodes: Mutex<Nodes>,
    /// Set once, when the server stops.
    stop: watch::Sender<bool>,
}

/// The registry proper.
struct Nodes {
    by_name: HashMap<String, Entry>,
    /// The next creation to hand out, from a random start: consecutive
    /// registrations of a name get different creations, and a restarted
    /// EPMD is unlikely to repeat one.
    next_creation: u32,
    /// Tells registrations apart, so that a connection that closes late
    /// cannot remove a newer registration of its name.
    next_id: u64,
}

/// A registered node.
struct Entry {
    node: NodeAddr,
    id: u64,
    /// Wakes the connection that holds the registration, for `STOP_REQ`.
    kick: Arc<Notify>,
}

/// A registration held by a connection process; dropping it unregisters.
struct Held<'a> {
    state: &'a State,
    name: String,
    id: u64,
    creation: u32,
    kick: Arc<Notify>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut nodes = self.state.nodes.lock();
        if nodes
            .by_name
            .get(&self.name)
            .is_some_and(|e| e.id == self.id)
        {
            nodes.by_name.remove(&self.name);
        }
    }
}

impl State {
    fn new(port: u16) -> State {
        State {
            port,
            nodes: Mutex::new(Nodes {
                by_name: HashMap::new(),
                next_creation: random_u32(),
                next_id: 1,
            }),
            stop: watch::Sender::new(false),
        }
    }

    /// Registers `node`, unless its name is taken.
    fn register(&self, node: NodeAddr) -> Option<Held<'_>> {
        let mut nodes = self.nodes.lock();
        if nodes.by_name.contains_key(&node.name) {
            return None;
        }
        let creation = nodes.new_creation(node.highest);
        let id = nodes.next_id;
        nodes.next_id += 1;
        let kick = Arc::new(Notify::new());
        let name = node.name.clone();
        let entry = Entry {
            node,
            id,
            kick: kick.clone(),
        };
        nodes.by_name.insert(name.clone(), entry);
        Some(Held {
            state: self,
            name,
            id,
            creation,
            kick,
        })
    }

    /// Unregisters `name` and closes its connection: whether it was there.
    fn stop_node(&self, name: &str) -> bool {
        let removed = self.nodes.lock().by_name.remove(name);
        removed.map(|entry| entry.kick.notify_one()).is_some()
    }

    fn lookup(&self, name: &str) -> Option<NodeAddr> {
        let nodes = self.nodes.lock();
        nodes.by_name.get(name).map(|entry| entry.node.clone())
    }

    /// (name, port, id) of every registered node, by name.
    fn list(&self) -> Vec<(String, u16, u64)> {
        let nodes = self.nodes.lock();
        let mut list: Vec<_> = nodes
            .by_name
            .iter()
            .map(|(name, e)| (name.clone(), e.node.port, e.id))
            .collect();
        list.sort_unstable();
        list
    }

    fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Nodes {
    /// A creation for a node of protocol version `highest`: 1 to 3 for
    /// version 5 (its pids hold 2 bits), else at least
    /// [`FIRST_CREATION`]. Never 0, which OTP reads as "any creation".
    fn new_creation(&mut self, highest: u16) -> u32 {
        let mut creation = self.next_creation;
        if creation < FIRST_CREATION {
            creation = FIRST_CREATION;
        }
        self.next_creation = creation.wrapping_add(1);
        if highest >= VERSION {
            creation
        } else {
            creation % 3 + 1
        }
    }
}

/// Stops the server when the accepting process's future ends or is
/// dropped.
struct StopOnDrop(Arc<State>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// 32 random bits: `RandomState` is seeded from the operating system's
/// randomness, and the clock makes two calls differ.
fn random_u32() -> u32 {
    let seed = std::collections::hash_map::RandomState::new().hash_one(SystemTime::now());
    (seed ^ (seed >> 32)) as u32
}

/// Which of two futures finished first.
enum Either<A, B> {
    First(A),
    Second(B),
}
use Either::{First, Second};

/// Runs `a` and `b` until one of them finishes; drops the other. (The
/// runtime has no tokio executor, and tokio's `select!` needs its macros.)
async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(First(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Second(out));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(next_creation: u32) -> Nodes {
        Nodes {
            by_name: HashMap::new(),
            next_creation,
            next_id: 1,
        }
    }

    #[test]
    fn creations_are_never_small_and_change() {
        let mut n = nodes(u32::MAX - 1);
        let got: Vec<u32> = (0..4).map(|_| n.new_creation(6)).collect();
        assert_eq!(got, [u32::MAX - 1, u32::MAX, 4, 5]);
        let mut n = nodes(0);
        assert_eq!(n.new_creation(6), 4);
    }

    #[test]
    fn version_5_creations_are_1_to_3() {
        let mut n = nodes(100);
        let got: Vec<u32> = (0..6).map(|_| n.new_creation(5)).collect();
        assert!(got.iter().all(|c| (1..=3).contains(c)), "{got:?}");
        assert!(got.windows(2).all(|w| w[0] != w[1]), "{got:?}");
    }

    #[test]
    fn registrations_come_and_go() {
        let state = State::new(4369);
        let a = state.register(NodeAddr::new("a", 1)).unwrap();
        assert!(state.register(NodeAddr::new("a", 2)).is_none());
        let b = state.register(NodeAddr::new("b", 2)).unwrap();
        assert_ne!(a.creation, b.creation);
        assert_eq!(state.lookup("a").unwrap().port, 1);
        assert_eq!(
            state.list(),
            [("a".to_owned(), 1, a.id), ("b".to_owned(), 2, b.id)]
        );
        drop(a);
        assert!(state.lookup("a").is_none());
        // A stopped registration's late drop leaves a newer one alone.
        assert!(state.stop_node("b"));
        assert!(!state.stop_node("b"));
        let b2 = state.register(NodeAddr::new("b", 3)).unwrap();
        assert_ne!(b2.creation, b.creation);
        drop(b);
        assert_eq!(state.lookup("b").unwrap().port, 3);
        drop(b2);
        assert!(state.list().is_empty());
    }
}
