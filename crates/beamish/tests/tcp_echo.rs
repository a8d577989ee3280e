//! The TCP echo server of `examples/tcp_echo.rs`, driven by many clients.
//!
//! The server runs in a beamish runtime (one process per connection); the
//! clients run on a plain single-threaded tokio runtime on the test thread,
//! so a failure points at the server. Every await has a timeout.

#![cfg(feature = "tokio")]

#[path = "../examples/tcp_echo.rs"]
#[allow(dead_code)]
mod tcp_echo;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beamish::{Down, Handle, Pid, Reason, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Concurrent client connections in the load test.
const CLIENTS: usize = 1000;
/// Request/response exchanges per client, before a pipelined burst.
const MESSAGES: usize = 4;
/// Lines in each client's pipelined burst (sent in one write).
const BURST: usize = 4;
/// Bound on any single network operation.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole phase of the load test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ helpers

/// Makes sure this OS process may open `want` file descriptors, raising the
/// soft limit towards the hard one if needed.
fn ensure_fd_limit(want: libc::rlim_t) {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
            0,
            "getrlimit"
        );
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        assert!(
            lim.rlim_cur >= want,
            "need {want} file descriptors, RLIMIT_NOFILE allows {} (hard {}); \
             raise it with `ulimit -n`",
            lim.rlim_cur,
            lim.rlim_max
        );
    }
}

/// Runs `fut` with a timeout, naming `what` on failure.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{what}: timed out after {IO_TIMEOUT:?}"))
}

/// Runs an IO operation with a timeout, flattening both kinds of failure.
async fn io<T>(what: &str, fut: impl Future<Output = std::io::Result<T>>) -> Result<T, String> {
    within(what, fut).await?.map_err(|e| format!("{what}: {e}"))
}

/// A single-threaded tokio runtime for the clients.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client tokio runtime")
}

/// The echo server, in its own beamish runtime.
struct Server {
    rt: Runtime,
    handle: Handle,
    addr: SocketAddr,
    acceptor: Pid,
    /// Live processes with no connection open (just the acceptor).
    baseline: usize,
}

fn start_server(name: &str) -> Server {
    let rt = Runtime::builder()
        .thread_name(name)
        .build()
        .expect("beamish runtime");
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let acceptor = handle
        .spawn(async move {
            // tokio's `bind` listens with a backlog of 1024, enough for the
            // burst of connects below.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("local_addr")).unwrap();
            tcp_echo::serve(listener).await;
        })
        .expect("spawn the acceptor");
    let addr = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("the acceptor did not report its address");
    let baseline = handle.process_count();
    assert_eq!(baseline, 1, "only the acceptor should be running");
    Server {
        rt,
        handle,
        addr,
        acceptor,
        baseline,
    }
}

impl Server {
    /// Polls until the runtime has `want` live processes (generous deadline).
    fn wait_for_count(&self, want: usize, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = self.handle.process_count();
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{why}: {n} processes live, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Message `i` of client `id`: arbitrary bytes (all of 0..=255 except the
/// newline occur), ending with a newline, of varying length.
fn message(id: usize, i: usize) -> Vec<u8> {
    let len = 1 + (id * 31 + i * 97) % 300;
    let mut x = (id as u32).wrapping_mul(2_654_435_761) ^ (i as u32).wrapping_mul(40_503) ^ 1;
    let mut m: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x as u8 {
                b'\n' => b'\r',
                b => b,
            }
        })
        .collect();
    m.extend_from_slice(format!(" [client {id} message {i}]\n").as_bytes());
    m
}

/// Sends `msg` and checks the echo, byte for byte.
async fn exchange(stream: &mut TcpStream, msg: &[u8], what: &str) -> Result<(), String> {
    io(what, stream.write_all(msg)).await?;
    let mut back = vec![0; msg.len()];
    io(what, stream.read_exact(&mut back)).await?;
    if back != msg {
        return Err(format!("{what}: echo differs from what was sent"));
    }
    Ok(())
}

/// Connects, exchanges messages one at a time, then a pipelined burst;
/// returns the open connection.
/// Connection attempts in flight at once. A burst of 1,000 SYNs overflows
/// the listen backlog; the kernel then answers with SYN cookies, and a
/// retransmitted handshake can leave the server with an extra established
/// connection that no client owns (its process then waits for data
/// forever, correctly). Connecting in waves keeps every server-side
/// connection matched to a client; all 1,000 still stay open at once.
static CONNECTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

async fn client_talk(addr: SocketAddr, id: usize) -> Result<TcpStream, String> {
    let permit = CONNECTING.acquire().await.map_err(|e| e.to_string())?;
    let mut s = io(&format!("client {id}: connect"), TcpStream::connect(addr)).await?;
    drop(permit);
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    for i in 0..MESSAGES {
        exchange(&mut s, &message(id, i), &format!("client {id} message {i}")).await?;
    }
    let burst: Vec<u8> = (MESSAGES..MESSAGES + BURST)
        .flat_map(|i| message(id, i))
        .collect();
    exchange(&mut s, &burst, &format!("client {id} burst")).await?;
    Ok(s)
}

/// Sends a last piece without a newline, closes the sending side, and
/// checks that exactly that piece comes back before the server closes.
async fn client_close(mut s: TcpStream, id: usize) -> Result<(), String> {
    let what = format!("client {id}: close");
    let tail = format!("bye from {id} (no newline)");
    io(&what, s.write_all(tail.as_bytes())).await?;
    io(&what, s.shutdown()).await?;
    let mut back = Vec::new();
    io(&what, s.read_to_end(&mut back)).await?;
    if back != tail.as_bytes() {
        return Err(format!("{what}: got {back:?} back, expected {tail:?}"));
    }
    Ok(())
}

/// Runs one client task per item, collecting failures.
fn run_all<T, F, Fut>(
    clients: &tokio::runtime::Runtime,
    items: Vec<T>,
    phase: &str,
    f: F,
) -> Vec<Result<Fut::Output, String>>
where
    T: 'static,
    F: Fn(T) -> Fut,
    Fut: Future + 'static,
    Fut::Output: 'static,
{
    clients.block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut set = JoinSet::new();
                for (n, item) in items.into_iter().enumerate() {
                    let fut = f(item);
                    set.spawn_local(async move { (n, fut.await) });
                }
                let mut out: Vec<Option<Result<Fut::Output, String>>> = Vec::new();
                out.resize_with(set.len(), || None);
                let all = async {
                    while let Some(joined) = set.join_next().await {
                        let (n, r) = joined.expect("client task panicked");
                        out[n] = Some(Ok(r));
                    }
                };
                if tokio::time::timeout(PHASE_TIMEOUT, all).await.is_err() {
                    panic!("{phase}: not finished after {PHASE_TIMEOUT:?}");
                }
                out.into_iter().map(|r| r.unwrap()).collect()
            })
            .await
    })
}

fn assert_all_ok<T>(results: &[Result<T, String>], phase: &str) {
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{phase}: {} of {} clients failed, for example: {:?}",
        failures.len(),
        results.len(),
        &failures[..failures.len().min(5)]
    );
}

// ------------------------------------------------------------ tests

#[test]
fn thousand_concurrent_clients() {
    // Client and server sockets, plus headroom for the test harness.
    ensure_fd_limit(2 * CLIENTS as libc::rlim_t + 256);
    let server = start_server("echo-load");
    let clients = client_runtime();
    let started = Instant::now();

    // Phase 1: every client connects and talks; all stay connected.
    let addr = server.addr;
    let talked = run_all(&clients, (0..CLIENTS).collect(), "talk", |id| {
        client_talk(addr, id)
    });
    let talked: Vec<Result<TcpStream, String>> = talked.into_iter().map(|r| r?).collect();
    assert_all_ok(&talked, "talk");

    // Every connection has its own live process.
    assert_eq!(
        server.handle.process_count(),
        server.baseline + CLIENTS,
        "one process per open connection"
    );

    // Phase 2: every client sends a last piece, closes, and reads to EOF.
    let streams: Vec<(usize, TcpStream)> =
        talked.into_iter().map(Result::unwrap).enumerate().collect();
    let closed = run_all(&clients, streams, "close", |(id, s)| client_close(s, id));
    let closed: Vec<Result<(), String>> = closed.into_iter().map(|r| r?).collect();
    assert_all_ok(&closed, "close");

    // The connection processes have all ended; the acceptor is still there.
    server.wait_for_count(server.baseline, "after every client closed");
    assert!(server.handle.processes().contains(&server.acceptor));
    eprintln!(
        "{CLIENTS} clients x {} messages echoed in {:?}",
        MESSAGES + BURST + 1,
        started.elapsed()
    );
    drop(clients);
    server.rt.shutdown();
}

#[test]
fn a_crashing_connection_does_not_disturb_the_others() {
    const OTHERS: usize = 10;
    ensure_fd_limit(2 * OTHERS as libc::rlim_t + 256);
    let server = start_server("echo-crash");
    let clients = client_runtime();
    let addr = server.addr;

    // Some well-behaved connections.
    let mut others: Vec<TcpStream> = (0..OTHERS)
        .map(|id| clients.block_on(client_talk(addr, id)).unwrap())
        .collect();
    server.wait_for_count(server.baseline + OTHERS, "well-behaved clients connected");

    // The one that will crash: find its process and monitor it.
    let before = server.handle.processes();
    let mut crasher = clients
        .block_on(async {
            let mut s = io("crasher: connect", TcpStream::connect(addr)).await?;
            exchange(&mut s, b"hello before the crash\n", "crasher").await?;
            Ok::<_, String>(s)
        })
        .unwrap();
    let after = server.handle.processes();
    let crasher_pid = match after
        .iter()
        .filter(|p| !before.contains(p))
        .collect::<Vec<_>>()[..]
    {
        [pid] => *pid,
        ref new => panic!("expected one new process for the crasher, found {new:?}"),
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (down_tx, down_rx) = std::sync::mpsc::channel();
    server
        .handle
        .spawn(async move {
            let mref = beamish::monitor(crasher_pid);
            ready_tx.send(()).unwrap();
            let down = beamish::receive::<Down>().timeout(IO_TIMEOUT).await;
            let _ = down_tx.send(down.map(|d| (d.monitor == mref, d.reason)));
        })
        .unwrap();
    ready_rx.recv_timeout(IO_TIMEOUT).expect("watcher ready");

    // Crash it: the server side of the socket closes (EOF, or a reset).
    clients
        .block_on(async {
            io(
                "crasher: send PANIC",
                crasher.write_all(tcp_echo::PANIC_LINE),
            )
            .await?;
            let mut buf = [0u8; 64];
            match within("crasher: read after PANIC", crasher.read(&mut buf)).await? {
                Ok(0) | Err(_) => Ok(()),
                Ok(n) => Err(format!("crasher: unexpected echo {:?}", &buf[..n])),
            }
        })
        .unwrap();
    let (is_our_monitor, reason) = down_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("watcher answered")
        .expect("no Down for the crashed connection's process");
    assert!(is_our_monitor);
    match reason {
        Reason::Panic(msg) => assert!(msg.contains("asked"), "panic message: {msg}"),
        other => panic!("the connection process ended with {other:?}, not a panic"),
    }
    drop(crasher);

    // Only the crasher's process (and the watcher) are gone.
    server.wait_for_count(server.baseline + OTHERS, "after the crash");
    assert!(server.handle.processes().contains(&server.acceptor));

    // The others still echo, and new connections are still accepted.
    for (id, s) in others.iter_mut().enumerate() {
        let msg = message(id, 100);
        clients
            .block_on(exchange(s, &msg, &format!("client {id} after the crash")))
            .unwrap();
    }
    let late = clients.block_on(client_talk(addr, OTHERS)).unwrap();
    clients.block_on(client_close(late, OTHERS)).unwrap();
    for (id, s) in others.into_iter().enumerate() {
        clients.block_on(client_close(s, id)).unwrap();
    }
    server.wait_for_count(server.baseline, "after every client closed");
    drop(clients);
    server.rt.shutdown();
}
