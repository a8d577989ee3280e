//! The key-value server of `examples/kv_server.rs`: many clients, garbage,
//! a crashing handler, a killed store, killed acceptors.
//!
//! The server runs in a beamish runtime of its own; the clients run on a
//! plain single-threaded tokio runtime on the test thread, so a failure
//! points at the server. Every network operation has a timeout, and every
//! wait for the server polls against a deadline: nothing here sleeps for a
//! guessed amount of time.

#![cfg(feature = "tokio")]

#[path = "../examples/kv_server.rs"]
#[allow(dead_code)]
mod kv_server;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beamish::otp::{DynamicSupervisorRef, SupervisorRef};
use beamish::{Down, Handle, Pid, Reason, Runtime};
use kv_server::{Command, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;

/// Bound on any single network operation.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on waiting for the server to reach a state.
const WAIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------ the server

/// The server, in its own beamish runtime, kept alive by a root process
/// that waits forever (the tree is linked to it).
struct Server {
    rt: Runtime,
    handle: Handle,
    addr: SocketAddr,
    root: SupervisorRef,
}

fn start_server(name: &str) -> Server {
    let rt = Runtime::builder()
        .thread_name(name)
        .build()
        .expect("beamish runtime");
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    handle
        .spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let root = kv_server::start(listener).await;
            tx.send(root.map(|root| (addr, root))).unwrap();
            std::future::pending::<()>().await;
        })
        .expect("spawn the root process");
    let (addr, root) = rx
        .recv_timeout(WAIT)
        .expect("the root process did not report")
        .expect("the supervision tree did not start");
    Server {
        rt,
        handle,
        addr,
        root,
    }
}

impl Server {
    /// Runs `fut` in a process of the server's runtime (for calls to the
    /// supervisors).
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        self.handle.block_on(fut).expect("helper process failed")
    }

    /// The handler processes, as the connection supervisor lists them.
    fn handlers(&self) -> Vec<Pid> {
        self.run(async {
            let conns = DynamicSupervisorRef::whereis(kv_server::CONNECTIONS).expect("no conns");
            let children = conns.which_children().await.expect("which_children");
            children.into_iter().filter_map(|c| c.pid).collect()
        })
    }

    /// The root supervisor's children: id and pid.
    fn children(&self) -> Vec<(String, Option<Pid>)> {
        let root = self.root;
        self.run(async move {
            let children = root.which_children().await.expect("which_children");
            children
                .into_iter()
                .map(|c| (c.id.to_string(), c.pid))
                .collect()
        })
    }

    /// Checks that no child of the root supervisor was restarted since
    /// `before` (from [`Server::children`]).
    fn assert_tree_unchanged(&self, before: &[(String, Option<Pid>)], why: &str) {
        assert_eq!(self.children(), before, "{why}: the tree changed");
    }

    fn acceptors(&self) -> Vec<Option<Pid>> {
        self.children()
            .into_iter()
            .filter(|(id, _)| id.starts_with("acceptor-"))
            .map(|(_, pid)| pid)
            .collect()
    }

    /// Polls `cond` until it holds, failing after [`WAIT`].
    fn wait_until(&self, what: &str, mut cond: impl FnMut(&Server) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(self) {
            assert!(Instant::now() < deadline, "{what}: not after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for exactly `n` handler processes.
    fn wait_for_handlers(&self, n: usize, why: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let h = self.handlers();
            if h.len() == n {
                return;
            }
            if Instant::now() > deadline {
                let alive: Vec<(Pid, bool)> = h.iter().map(|p| (*p, p.is_alive())).collect();
                let count = self.run(async {
                    DynamicSupervisorRef::whereis(kv_server::CONNECTIONS)
                        .unwrap()
                        .count_children()
                        .await
                });
                panic!(
                    "{why}: expected {n} handlers, have {alive:?}; counts {count:?}; {} processes",
                    self.handle.process_count()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn shutdown(self) {
        self.rt.shutdown();
    }
}

// ------------------------------------------------------------ clients

/// A single-threaded tokio runtime for the clients.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client tokio runtime")
}

/// Runs an IO operation with a timeout, flattening both kinds of failure.
async fn io<T>(what: &str, fut: impl Future<Output = std::io::Result<T>>) -> Result<T, String> {
    tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{what}: timed out after {IO_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// One client connection, speaking the line protocol.
struct Client {
    name: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr, name: impl Into<String>) -> Result<Client, String> {
        let name = name.into();
        let stream = io(&format!("{name}: connect"), TcpStream::connect(addr)).await?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (reader, writer) = stream.into_split();
        Ok(Client {
            name,
            reader: BufReader::new(reader),
            writer,
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        io(
            &format!("{}: send", self.name),
            self.writer.write_all(bytes),
        )
        .await
    }

    /// The next reply line, without its newline.
    async fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = io(
            &format!("{}: read a reply", self.name),
            self.reader.read_line(&mut line),
        )
        .await?;
        match line.strip_suffix('\n') {
            Some(line) => Ok(line.to_owned()),
            None if n == 0 => Err(format!("{}: the server closed the connection", self.name)),
            None => Err(format!("{}: reply cut short: {line:?}", self.name)),
        }
    }

    /// Sends one command line and returns the reply line.
    async fn cmd(&mut self, command: &str) -> Result<String, String> {
        self.send(format!("{command}\n").as_bytes()).await?;
        self.line().await
    }

    /// Sends `command` and checks the reply.
    async fn expect(&mut self, command: &str, want: &str) -> Result<(), String> {
        let got = self.cmd(command).await?;
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "{}: {command:?} got {got:?}, expected {want:?}",
                self.name
            ))
        }
    }

    /// Reads until the server closes the connection (end of stream or a
    /// reset); returns what came before.
    async fn wait_closed(&mut self) -> Result<Vec<u8>, String> {
        let mut got = Vec::new();
        let what = format!("{}: wait for the server to close", self.name);
        let read = tokio::time::timeout(IO_TIMEOUT, self.reader.read_to_end(&mut got)).await;
        match read {
            Err(_) => Err(format!("{what}: still open after {IO_TIMEOUT:?}")),
            Ok(Ok(_)) | Ok(Err(_)) => Ok(got),
        }
    }
}

/// Runs `f(i)` for every `i` concurrently; fails with the first errors.
fn run_all<F, Fut, T>(clients: &tokio::runtime::Runtime, n: usize, phase: &str, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let results = clients.block_on(async {
        let mut set = JoinSet::new();
        for i in 0..n {
            let fut = f(i);
            set.spawn(async move { (i, fut.await) });
        }
        let mut out: Vec<Option<Result<T, String>>> = (0..n).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            let (i, r) = joined.expect("client task panicked");
            out[i] = Some(r);
        }
        out
    });
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r.expect("every task reports") {
            Ok(v) => ok.push(v),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{phase}: {} of {n} clients failed, for example: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    ok
}

/// Client `id` stores `keys` keys of its own, reads them back (one at a
/// time and pipelined), deletes one; returns its open connection.
async fn own_keys(addr: SocketAddr, id: usize, keys: usize) -> Result<Client, String> {
    let mut c = Client::connect(addr, format!("client {id}")).await?;
    for k in 0..keys {
        c.expect(&format!("PUT c{id}-k{k} value {id} {k}"), "OK")
            .await?;
    }
    for k in 0..keys {
        c.expect(&format!("GET c{id}-k{k}"), &format!("VALUE value {id} {k}"))
            .await?;
    }
    // Pipelined: every GET in one write, the replies in order.
    let burst: String = (0..keys).map(|k| format!("GET c{id}-k{k}\n")).collect();
    c.send(burst.as_bytes()).await?;
    for k in 0..keys {
        let got = c.line().await?;
        if got != format!("VALUE value {id} {k}") {
            return Err(format!("client {id}: pipelined GET {k} got {got:?}"));
        }
    }
    c.expect(&format!("DEL c{id}-k0"), "OK").await?;
    c.expect(&format!("GET c{id}-k0"), "NOT_FOUND").await?;
    c.expect(&format!("PUT c{id}-k0 again {id}"), "OK").await?;
    Ok(c)
}

/// Checks that client `c` (number `id`, with `keys` keys) still reads its
/// data.
async fn still_has_keys(c: &mut Client, id: usize, keys: usize) -> Result<(), String> {
    c.expect(&format!("GET c{id}-k0"), &format!("VALUE again {id}"))
        .await?;
    for k in 1..keys {
        c.expect(&format!("GET c{id}-k{k}"), &format!("VALUE value {id} {k}"))
            .await?;
    }
    Ok(())
}

/// Spawns a process that monitors `pid` and reports its exit reason.
fn watch(server: &Server, pid: Pid) -> std::sync::mpsc::Receiver<Option<Reason>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (down_tx, down_rx) = std::sync::mpsc::channel();
    server
        .handle
        .spawn(async move {
            let mref = beamish::monitor(pid);
            ready_tx.send(()).unwrap();
            let down = beamish::receive_if(move |d: &Down| d.monitor == mref)
                .timeout(WAIT)
                .await;
            let _ = down_tx.send(down.map(|d| d.reason));
        })
        .expect("spawn the watcher");
    ready_rx.recv_timeout(WAIT).expect("watcher ready");
    down_rx
}

// ------------------------------------------------------------ tests

#[test]
fn parse_covers_the_protocol() {
    use kv_server::parse;
    let store = Command::Store;
    let s = String::from;
    assert_eq!(
        parse(b"PUT k a value with spaces"),
        store(Request::Put(s("k"), s("a value with spaces")))
    );
    assert_eq!(parse(b"PUT k "), store(Request::Put(s("k"), s(""))));
    assert_eq!(parse(b"GET k"), store(Request::Get(s("k"))));
    assert_eq!(parse(b"get k\r"), store(Request::Get(s("k"))));
    assert_eq!(parse(b"DEL k"), store(Request::Del(s("k"))));
    assert_eq!(parse(b"COUNT"), store(Request::Count));
    assert_eq!(parse(b"CRASH"), Command::Crash);
    for garbage in [
        &b""[..],
        b" ",
        b"\r",
        b"PUT",
        b"PUT k",
        b"PUT  v",
        b"GET",
        b"GET ",
        b"GET a b",
        b"DEL",
        b"COUNT x",
        b"COUNT ",
        b"CRASH now",
        b"FLUSHALL",
        b"\xff\xfe\x00 GET k",
        b"GET \xff",
    ] {
        assert_eq!(parse(garbage), Command::Invalid, "{garbage:?}");
    }
}

/// (a) 100 concurrent clients each PUT and GET their own keys.
#[test]
fn hundred_concurrent_clients() {
    const CLIENTS: usize = 100;
    const KEYS: usize = 10;
    let server = start_server("kv-load");
    let clients = client_runtime();
    let addr = server.addr;
    let tree = server.children();
    let started = Instant::now();

    let mut open = run_all(&clients, CLIENTS, "own keys", |id| own_keys(addr, id, KEYS));
    // One handler process per open connection.
    server.wait_for_handlers(CLIENTS, "every client connected");

    // Every client still sees all of its data, and the total is right.
    let total = clients.block_on(async {
        let mut c = Client::connect(addr, "counter").await?;
        let count = c.cmd("COUNT").await?;
        for (id, c) in open.iter_mut().enumerate() {
            still_has_keys(c, id, KEYS).await?;
        }
        Ok::<_, String>(count)
    });
    assert_eq!(total, Ok(format!("COUNT {}", CLIENTS * KEYS)));

    // The clients leave; their handlers end normally and are forgotten.
    drop(open);
    server.wait_for_handlers(0, "every client left");
    server.assert_tree_unchanged(&tree, "after the load");
    eprintln!("{CLIENTS} clients served in {:?}", started.elapsed());
    drop(clients);
    server.shutdown();
}

/// (b) Garbage gets `ERROR` replies on a connection that stays usable; an
/// oversized line closes only its own connection; other clients, busy at
/// the same time, notice nothing.
#[test]
fn garbage_gets_errors_and_disturbs_no_one() {
    const OTHERS: usize = 10;
    const KEYS: usize = 20;
    let server = start_server("kv-garbage");
    let clients = client_runtime();
    let addr = server.addr;
    let tree = server.children();

    // Well-behaved clients and the garbage senders run concurrently.
    let results = run_all(&clients, OTHERS + 2, "garbage", move |i| async move {
        match i {
            // The garbage sender: every reply is an error, and the
            // connection keeps working.
            0 => {
                let mut c = Client::connect(addr, "garbage").await?;
                c.expect("PUT mine before", "OK").await?;
                let garbage: [&[u8]; 10] = [
                    b"HELLO\n",
                    b"\n",
                    b"\r\n",
                    b"PUT onlykey\n",
                    b"GET\n",
                    b"GET two keys\n",
                    b"COUNT me\n",
                    b"\xff\xfe\xfd\x00\x01binary\n",
                    b"crash please\n",
                    b"DEL\n",
                ];
                for _ in 0..5 {
                    for g in garbage {
                        c.send(g).await?;
                        let got = c.line().await?;
                        if got != "ERROR unknown command" {
                            return Err(format!("garbage {g:?} got {got:?}"));
                        }
                    }
                    // Garbage and commands pipelined in one write.
                    c.send(b"nonsense\nGET mine\n\xc3\x28\nCOUNT\n").await?;
                    for want in ["ERROR unknown command", "VALUE before"] {
                        let got = c.line().await?;
                        if got != want {
                            return Err(format!("pipelined: got {got:?}, expected {want:?}"));
                        }
                    }
                    if c.line().await? != "ERROR unknown command" {
                        return Err("pipelined invalid utf-8: no error".into());
                    }
                    let count = c.line().await?;
                    if !count.starts_with("COUNT ") {
                        return Err(format!("pipelined COUNT got {count:?}"));
                    }
                }
                c.expect("PUT mine after", "OK").await?;
                c.expect("GET mine", "VALUE after").await?;
                Ok(())
            }
            // The oversized line: an error line (or a reset), then closed.
            1 => {
                let mut c = Client::connect(addr, "oversized").await?;
                c.expect("PUT big small", "OK").await?;
                let huge = vec![b'x'; kv_server::MAX_LINE + 100];
                // The server may hang up before reading all of it.
                let _ = c.writer.write_all(&huge).await;
                let got = c.wait_closed().await?;
                if !b"ERROR line too long\n".starts_with(&got) {
                    return Err(format!(
                        "oversized: got {:?}",
                        String::from_utf8_lossy(&got)
                    ));
                }
                // Its data is still there, for a new connection.
                let mut c = Client::connect(addr, "after oversized").await?;
                c.expect("GET big", "VALUE small").await?;
                // A line of exactly the limit is fine.
                let mut line = b"PUT long ".to_vec();
                line.resize(kv_server::MAX_LINE, b'y');
                line.push(b'\n');
                c.send(&line).await?;
                let got = c.line().await?;
                if got != "OK" {
                    return Err(format!("a line at the limit got {got:?}"));
                }
                let value = c.cmd("GET long").await?;
                if value.len() != "VALUE ".len() + kv_server::MAX_LINE - "PUT long ".len() {
                    return Err(format!("the long value came back {} bytes", value.len()));
                }
                Ok(())
            }
            // The others.
            _ => {
                let id = i - 2;
                let mut c = own_keys(addr, id, KEYS).await?;
                still_has_keys(&mut c, id, KEYS).await
            }
        }
    });
    assert_eq!(results.len(), OTHERS + 2);
    server.assert_tree_unchanged(&tree, "after the garbage");
    drop(clients);
    server.shutdown();
}

/// (c) A client that sends `CRASH`: its handler panics and is gone, its
/// connection closes; the other connections keep working, new ones are
/// accepted, and the store keeps every key (the crash never touched it).
#[test]
fn a_crashing_handler_takes_down_only_itself() {
    const OTHERS: usize = 10;
    const KEYS: usize = 5;
    let server = start_server("kv-crash");
    let clients = client_runtime();
    let addr = server.addr;
    let store_before = server.handle.whereis(kv_server::STORE).expect("store");
    let tree = server.children();

    let mut others = run_all(&clients, OTHERS, "before the crash", |id| {
        own_keys(addr, id, KEYS)
    });
    server.wait_for_handlers(OTHERS, "well-behaved clients connected");

    // The crasher: find its handler process and watch it.
    let before = server.handlers();
    let mut crasher = clients
        .block_on(async {
            let mut c = Client::connect(addr, "crasher").await?;
            c.expect("PUT crasher-key written before the crash", "OK")
                .await?;
            Ok::<_, String>(c)
        })
        .unwrap();
    let new: Vec<Pid> = server
        .handlers()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let [crasher_pid] = new[..] else {
        panic!("expected one new handler for the crasher, found {new:?}");
    };
    let down = watch(&server, crasher_pid);

    // Crash it: its connection closes, without a reply.
    let got = clients
        .block_on(async {
            crasher.send(b"CRASH\n").await?;
            crasher.wait_closed().await
        })
        .unwrap();
    assert!(got.is_empty(), "a reply to CRASH: {got:?}");
    match down.recv_timeout(WAIT).expect("watcher answered") {
        Some(Reason::Panic(msg)) => assert!(msg.contains("CRASH"), "panic message: {msg}"),
        other => panic!("the handler ended with {other:?}, not a panic"),
    }
    drop(crasher);

    // Only the crasher's handler is gone; the store is the same process.
    server.wait_for_handlers(OTHERS, "after the crash");
    assert!(!server.handlers().contains(&crasher_pid));
    assert_eq!(server.handle.whereis(kv_server::STORE), Some(store_before));

    // The others, on their open connections, still read all their data;
    // a new connection is accepted and sees the crasher's key too.
    clients
        .block_on(async {
            for (id, c) in others.iter_mut().enumerate() {
                still_has_keys(c, id, KEYS).await?;
            }
            let mut late = Client::connect(addr, "late").await?;
            late.expect("GET crasher-key", "VALUE written before the crash")
                .await?;
            late.expect("COUNT", &format!("COUNT {}", OTHERS * KEYS + 1))
                .await?;
            // More crashes, one after another: each ends alone.
            for n in 0..5 {
                let mut c = Client::connect(addr, format!("crasher {n}")).await?;
                c.expect("COUNT", &format!("COUNT {}", OTHERS * KEYS + 1))
                    .await?;
                c.send(b"CRASH\n").await?;
                c.wait_closed().await?;
                late.expect("GET c0-k1", "VALUE value 0 1").await?;
            }
            Ok::<_, String>(())
        })
        .unwrap();
    // (`late` was dropped with its block: its handler ended normally.)
    server.wait_for_handlers(OTHERS, "after the later crashes");
    assert_eq!(server.handle.whereis(kv_server::STORE), Some(store_before));
    server.assert_tree_unchanged(&tree, "after the crashes");
    drop(others);
    drop(clients);
    server.shutdown();
}

/// (d) Kill the store: the root supervisor starts a new one under the same
/// name (and restarts nothing else); the open connections stay open and
/// their next commands reach the new, empty store.
#[test]
fn a_killed_store_is_restarted_and_handlers_recover() {
    const CLIENTS: usize = 5;
    const KEYS: usize = 3;
    let server = start_server("kv-store");
    let clients = client_runtime();
    let addr = server.addr;

    let mut open = run_all(&clients, CLIENTS, "before the kill", |id| {
        own_keys(addr, id, KEYS)
    });
    server.wait_for_handlers(CLIENTS, "clients connected");
    let children_before = server.children();
    let mut handlers_before = server.handlers();
    handlers_before.sort();
    let old = server.handle.whereis(kv_server::STORE).expect("store");

    old.exit(Reason::Kill);

    // Right after the kill, a command may find no store: an error reply,
    // not a closed connection. (The kill is queued before the command's
    // call, so the old store cannot answer it.)
    let got = clients.block_on(open[0].cmd("COUNT")).unwrap();
    assert!(
        got == "ERROR store unavailable" || got == "COUNT 0",
        "right after the kill: {got:?}"
    );

    // A new store under the same name.
    server.wait_until("a new store registered", |s| {
        s.handle
            .whereis(kv_server::STORE)
            .is_some_and(|new| new != old)
    });
    let new = server.handle.whereis(kv_server::STORE).unwrap();
    assert!(!old.is_alive());

    // One-for-one: only the store was restarted; every handler survived.
    let children_after = server.children();
    for ((id, before), (id2, after)) in children_before.iter().zip(&children_after) {
        assert_eq!(id, id2);
        if id == kv_server::STORE {
            assert_eq!((*before, *after), (Some(old), Some(new)));
        } else {
            assert_eq!(before, after, "{id} was restarted");
        }
    }
    let mut handlers_after = server.handlers();
    handlers_after.sort();
    assert_eq!(handlers_after, handlers_before);

    // Every open connection gets replies again, from the new store: the
    // data did not survive the store's crash (it lived in its memory).
    clients
        .block_on(async {
            for (id, c) in open.iter_mut().enumerate() {
                c.expect(&format!("GET c{id}-k1"), "NOT_FOUND").await?;
                c.expect(&format!("PUT c{id}-k1 reborn"), "OK").await?;
                c.expect(&format!("GET c{id}-k1"), "VALUE reborn").await?;
            }
            open[0].expect("COUNT", &format!("COUNT {CLIENTS}")).await?;
            let mut late = Client::connect(addr, "late").await?;
            late.expect("GET c3-k1", "VALUE reborn").await
        })
        .unwrap();
    drop(open);
    drop(clients);
    server.shutdown();
}

/// (e) Kill every acceptor at once: the root supervisor restarts each (the
/// listener lives on in their child specs), open connections are not
/// touched, and new connections are accepted again.
#[test]
fn the_acceptor_pool_survives_acceptor_crashes() {
    let server = start_server("kv-acceptors");
    let clients = client_runtime();
    let addr = server.addr;

    let mut open = clients.block_on(own_keys(addr, 0, 3)).unwrap();
    server.wait_for_handlers(1, "client connected");
    let handlers_before = server.handlers();
    let store = server.handle.whereis(kv_server::STORE).expect("store");

    let old: Vec<Pid> = server.acceptors().into_iter().map(Option::unwrap).collect();
    assert_eq!(old.len(), kv_server::ACCEPTORS);
    let watchers: Vec<_> = old.iter().map(|&pid| watch(&server, pid)).collect();
    for pid in &old {
        pid.exit(Reason::other("acceptor crash"));
    }
    for w in watchers {
        let reason = w.recv_timeout(WAIT).expect("watcher answered");
        assert_eq!(reason, Some(Reason::other("acceptor crash")));
    }

    // Restarted: a full pool of new acceptors.
    server.wait_until("acceptors restarted", |s| {
        s.acceptors()
            .iter()
            .all(|p| p.is_some_and(|p| !old.contains(&p)))
    });
    // Nothing else was touched.
    assert_eq!(server.handlers(), handlers_before);
    assert_eq!(server.handle.whereis(kv_server::STORE), Some(store));

    clients
        .block_on(async {
            still_has_keys(&mut open, 0, 3).await?;
            // New connections, several at once, go through the new pool.
            let mut late = Vec::new();
            for n in 0..8 {
                late.push(Client::connect(addr, format!("late {n}")).await?);
            }
            for c in &mut late {
                c.expect("GET c0-k1", "VALUE value 0 1").await?;
            }
            Ok::<_, String>(())
        })
        .unwrap();
    drop(open);
    drop(clients);
    server.shutdown();
}
