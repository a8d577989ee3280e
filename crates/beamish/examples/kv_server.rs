//! A TCP key-value server built from OTP pieces: a supervised store, an
//! acceptor pool, and one process per connection.
//!
//! ```text
//! cargo run --release --example kv_server -- 7070
//! ```
//!
//! prints the address it listens on (port from the first argument, default
//! 7070; 0 picks a free port), then, in another terminal:
//!
//! ```text
//! $ nc 127.0.0.1 7070
//! PUT greeting hello world
//! OK
//! GET greeting
//! VALUE hello world
//! COUNT
//! COUNT 1
//! DEL greeting
//! OK
//! GET greeting
//! NOT_FOUND
//! what?
//! ERROR unknown command
//! CRASH
//! ```
//!
//! (after `CRASH` the connection closes: its process panicked.)
//!
//! # The protocol
//!
//! One command per line (a trailing `\r` is ignored, the verb is
//! case-insensitive, keys have no spaces, a value is the rest of the line):
//!
//! | request            | reply                                   |
//! |--------------------|-----------------------------------------|
//! | `PUT key value`    | `OK`                                    |
//! | `GET key`          | `VALUE value` or `NOT_FOUND`            |
//! | `DEL key`          | `OK`                                    |
//! | `COUNT`            | `COUNT n`                               |
//! | `CRASH`            | none: the connection's process panics   |
//! | anything else      | `ERROR unknown command` (stays open)    |
//! | (store down)       | `ERROR store unavailable` (stays open)  |
//! | a line > 64 KiB    | `ERROR line too long`, then closed      |
//!
//! # The supervision tree
//!
//! ```text
//! kv_server (Supervisor, one_for_one)
//! ├── kv_store        Store GenServer, registered by name (permanent)
//! ├── kv_connections  DynamicSupervisor
//! │   └── one handler process per connection (temporary)
//! ├── acceptor-0      ┐
//! ├── ...             ├ loop on accept() of one shared TcpListener (permanent)
//! └── acceptor-3      ┘
//! ```
//!
//! One-for-one, because no child holds another's pid: handlers look the
//! store up by name at every command and acceptors look the connection
//! supervisor up by name at every accept, so each child can be restarted
//! alone. (`rest_for_one` in this order would take every open connection
//! down whenever the store restarts, for nothing.)
//!
//! "Let it crash": a handler does not defend itself against its own bugs.
//! If it panics (here on purpose, with `CRASH`), its process ends, its
//! socket is closed by the destructors, and its supervisor forgets it (it
//! is temporary: a connection cannot be restarted). No other process is
//! touched; the store never sees it. Bad input is not a crash: it is
//! answered with an `ERROR` line.
//!
//! If the store itself dies, the root supervisor starts a fresh one under
//! the same name. Its data is gone (it lived in the dead process's
//! memory); the connections stay open, get `ERROR store unavailable` for
//! the few commands that fall in the gap, then talk to the new store.
//!
//! The integration test `tests/kv_server.rs` includes this file as a module
//! and runs [`start`] itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beamish::otp::{
    self, ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, DynamicSupervisorRef, GenServer,
    Reply, ReplyTo, ServerRef, Shutdown, StartOptions, Strategy, Supervisor, SupervisorError,
    SupervisorFlags, SupervisorRef,
};
use beamish::{Down, Error, Pid, Reason};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// Port used when none is given on the command line.
pub const DEFAULT_PORT: u16 = 7070;

/// Acceptor processes sharing the listener.
pub const ACCEPTORS: usize = 4;

/// Open connections at most; past that a new one gets `ERROR server busy`
/// and is closed.
pub const MAX_CONNECTIONS: usize = 10_000;

/// The longest line accepted (without its newline). A longer one gets
/// `ERROR line too long` and its connection is closed, so a client cannot
/// make the server buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// The root supervisor's registered name.
pub const ROOT: &str = "kv_server";
/// The store's registered name.
pub const STORE: &str = "kv_store";
/// The connection supervisor's registered name.
pub const CONNECTIONS: &str = "kv_connections";

// ------------------------------------------------------------ the store

/// The store: a map from key to value, owned by one process.
#[derive(Debug, Default)]
pub struct Store {
    data: HashMap<String, String>,
}

/// A request to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The value of a key.
    Get(String),
    /// Sets a key.
    Put(String, String),
    /// Removes a key.
    Del(String),
    /// How many keys there are.
    Count,
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The value, if the key is present.
    Value(Option<String>),
    /// Done (`Put`, `Del`).
    Done,
    /// The number of keys.
    Count(usize),
}

impl GenServer for Store {
    type Call = Request;
    type Reply = Response;
    type Cast = ();

    async fn handle_call(&mut self, request: Request, _from: ReplyTo<Response>) -> Reply<Response> {
        Reply::reply(match request {
            Request::Get(key) => Response::Value(self.data.get(&key).cloned()),
            Request::Put(key, value) => {
                self.data.insert(key, value);
                Response::Done
            }
            Request::Del(key) => {
                self.data.remove(&key);
                Response::Done
            }
            Request::Count => Response::Count(self.data.len()),
        })
    }
}

/// Calls the store registered as [`STORE`], looked up afresh: after a
/// restart the name points at the new store. `Err` when there is none, or
/// it died before answering.
pub async fn call_store(request: Request) -> Result<Response, Error> {
    let store = ServerRef::<Store>::whereis(STORE).ok_or(Error::UnknownName(STORE.into()))?;
    store.call(request).await
}

// ------------------------------------------------------------ the protocol

/// One parsed request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A store request.
    Store(Request),
    /// Make this connection's process panic.
    Crash,
    /// Anything else.
    Invalid,
}

/// Parses one line (without its newline; a trailing `\r` is ignored).
/// Never fails: what is not a command is [`Command::Invalid`].
pub fn parse(line: &[u8]) -> Command {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Command::Invalid;
    };
    // The verb, and what follows its first space (`None`: no space at all).
    let (verb, rest) = match line.split_once(' ') {
        Some((verb, rest)) => (verb, Some(rest)),
        None => (line, None),
    };
    // A key: one word, not empty.
    let key = |k: &str| (!k.is_empty() && !k.contains(' ')).then(|| k.to_owned());
    let request = match (verb.to_ascii_uppercase().as_str(), rest) {
        ("GET", Some(rest)) => key(rest).map(Request::Get),
        ("DEL", Some(rest)) => key(rest).map(Request::Del),
        ("PUT", Some(rest)) => rest
            .split_once(' ')
            .and_then(|(k, v)| Some(Request::Put(key(k)?, v.to_owned()))),
        ("COUNT", None) => Some(Request::Count),
        ("CRASH", None) => return Command::Crash,
        _ => None,
    };
    request.map_or(Command::Invalid, Command::Store)
}

/// The reply line to a store answer (or to a failed call).
pub fn reply_line(answer: Result<Response, Error>) -> String {
    match answer {
        Ok(Response::Value(Some(v))) => format!("VALUE {v}\n"),
        Ok(Response::Value(None)) => "NOT_FOUND\n".to_owned(),
        Ok(Response::Done) => "OK\n".to_owned(),
        Ok(Response::Count(n)) => format!("COUNT {n}\n"),
        Err(_) => "ERROR store unavailable\n".to_owned(),
    }
}

/// Serves one connection until the client closes it: reads a line, answers
/// it, and so on. Pipelined lines are answered in order, flushed together.
///
/// An IO error (a reset by the peer, ...) returns it; the caller just ends.
///
/// # Panics
/// When the client sends `CRASH` (on purpose: see the module docs).
pub async fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    // Small request/response exchanges: don't let Nagle hold replies back.
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    let mut line = Vec::new();
    loop {
        line.clear();
        // One byte more than a line may hold, for its newline.
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            // The client closed its side.
            return writer.flush().await;
        }
        match line.strip_suffix(b"\n") {
            Some(_) => {
                line.pop();
            }
            None if line.len() > MAX_LINE => {
                // Neither a crash nor something to answer piece by piece:
                // say why and hang up.
                writer.write_all(b"ERROR line too long\n").await?;
                writer.flush().await?;
                return Ok(());
            }
            // The last line, cut short by the end of the stream: answer it.
            None => {}
        }
        let reply = match parse(&line) {
            Command::Store(request) => reply_line(call_store(request).await),
            Command::Crash => panic!("kv_server: the client sent CRASH"),
            Command::Invalid => "ERROR unknown command\n".to_owned(),
        };
        writer.write_all(reply.as_bytes()).await?;
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

// ------------------------------------------------------------ acceptors

/// The child spec of one connection's handler: temporary (a connection
/// cannot be restarted), killed outright when its supervisor stops.
///
/// A start function may be called more than once in general, so the stream
/// sits in a shared slot that the (single) start takes it from; if the
/// start never happens the acceptor takes it back.
fn handler_spec(slot: Arc<Mutex<Option<TcpStream>>>) -> ChildSpec {
    ChildSpec::worker("connection", move || {
        let stream = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            let stream =
                stream.ok_or_else(|| Error::Exited(Reason::other("connection already served")))?;
            Ok(beamish::spawn_link(async move {
                // An IO error just ends the connection: the process exits
                // normally. Only a panic is a crash.
                let _ = serve_connection(stream).await;
            }))
        }
    })
    .restart(otp::Restart::Temporary)
    .shutdown(Shutdown::BrutalKill)
}

/// An acceptor: accepts connections forever, starting a handler under the
/// connection supervisor for each.
async fn acceptor(listener: Arc<TcpListener>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors, a connection aborted before it
                // was accepted, ...: not the listener's fault. Back off a
                // little and keep accepting.
                eprintln!("kv_server: accept failed: {e}");
                beamish::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let slot = Arc::new(Mutex::new(Some(stream)));
        let started = match DynamicSupervisorRef::whereis(CONNECTIONS) {
            Some(connections) => connections
                .start_child(handler_spec(slot.clone()))
                .await
                .map(drop),
            None => Err(SupervisorError::Runtime(Error::UnknownName(
                CONNECTIONS.into(),
            ))),
        };
        if let Err(e) = started {
            // Too many connections, or the connection supervisor is being
            // restarted: refuse this one, without waiting on the client.
            if let Some(stream) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = stream.try_write(b"ERROR server busy\n");
            }
            eprintln!("kv_server: connection refused: {e}");
        }
    }
}

// ------------------------------------------------------------ the tree

/// The children of the root supervisor, in start order.
pub fn child_specs(listener: TcpListener) -> Vec<ChildSpec> {
    let store = ChildSpec::worker(STORE, || async {
        otp::start_with(Store::default(), StartOptions::new().link().name(STORE))
            .await
            .map(|s| s.pid())
    });
    let connections = ChildSpec::supervisor(CONNECTIONS, || async {
        let flags = DynamicSupervisorFlags::default().max_children(MAX_CONNECTIONS);
        let sup = DynamicSupervisor::start_link_named(CONNECTIONS, flags).await?;
        Ok(sup.pid())
    });
    let listener = Arc::new(listener);
    let acceptors = (0..ACCEPTORS).map(|i| {
        let listener = listener.clone();
        ChildSpec::worker(format!("acceptor-{i}"), move || {
            let listener = listener.clone();
            async move { Ok(beamish::spawn_link(acceptor(listener))) }
        })
        .shutdown(Shutdown::BrutalKill)
    });
    [store, connections].into_iter().chain(acceptors).collect()
}

/// Starts the whole tree on `listener` under a root supervisor registered
/// as [`ROOT`], linked to the caller (keep the caller alive: when it ends,
/// the tree stops). Returns once the store, the connection supervisor and
/// the acceptors all run.
///
/// The root allows 5 restarts in 10 s; past that it stops everything and
/// ends with reason `shutdown`.
///
/// # Panics
/// Outside a beamish process.
pub async fn start(listener: TcpListener) -> Result<SupervisorRef, SupervisorError> {
    let flags = SupervisorFlags::new(Strategy::OneForOne)
        .intensity(5)
        .period(Duration::from_secs(10));
    Supervisor::start_link_named(ROOT, flags, child_specs(listener)).await
}

#[allow(dead_code)] // the integration test includes this file without `main`
fn main() {
    let port = match std::env::args().nth(1) {
        None => DEFAULT_PORT,
        Some(arg) => match arg.parse::<u16>() {
            Ok(port) => port,
            Err(e) => {
                eprintln!("kv_server: bad port {arg:?}: {e}");
                eprintln!("usage: kv_server [PORT]   (default {DEFAULT_PORT})");
                std::process::exit(2);
            }
        },
    };
    let result = beamish::run(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Outlive the tree's exit signal, to say why it ended.
        beamish::trap_exit(true);
        let root = start(listener).await.map_err(|e| e.to_string())?;
        println!("kv_server: listening on {addr}");
        println!("kv_server: try `nc 127.0.0.1 {}`, then:", addr.port());
        println!("  PUT key value | GET key | DEL key | COUNT | CRASH");
        let root_pid: Pid = root.pid();
        let mref = beamish::monitor(root_pid);
        let down = beamish::receive_if(move |d: &Down| d.monitor == mref).await;
        Err::<(), String>(format!("the supervision tree ended: {}", down.reason))
    });
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("kv_server: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("kv_server: the runtime failed: {e}");
            std::process::exit(1);
        }
    }
}
