//! EPMD: our client against our embedded server, raw and bad input against
//! the server, the client against broken servers, and, when Erlang is
//! installed, OTP's `epmd` and `erl` against ours and ours against them.
//!
//! The EPMD API is crate-internal, so this test compiles the module's
//! source itself (as `tests/tcp_echo.rs` does with its example); the
//! imports at the root stand in for the crate items the module uses. (So
//! the module's unit tests run in this binary too.)
//!
//! Everything runs in beamish processes; every listener is on port 0 (the
//! real EPMD port is never touched) and every wait is bounded, with bounds
//! generous enough for a loaded two-core machine. Nothing asserts on time.

#![cfg(feature = "dist")]

#[path = "../src/dist/epmd/mod.rs"]
mod epmd;

// The crate items the module refers to as `crate::…`.
use beamish::{Error, Pid, SpawnOptions, try_self_pid};

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beamish::Runtime;
use epmd::{EpmdError, NodeAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on any one wait in these tests.
const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ helpers

/// Runs `test` as the root process of a fresh runtime.
fn run<T: Send + 'static>(test: impl Future<Output = T> + Send + 'static) -> T {
    let rt = Runtime::new().expect("runtime");
    match rt.block_on(test) {
        Ok(out) => out,
        Err(reason) => panic!("the test process failed: {reason}"),
    }
}

/// 127.0.0.1, port 0.
fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Starts an embedded EPMD on a free port.
async fn start() -> SocketAddr {
    epmd::start_embedded(any_port())
        .await
        .expect("start the embedded epmd")
        .addr
}

/// `fut`, or a panic naming `what` after [`WAIT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no result within {WAIT:?}"),
    }
}

/// Polls `names` until `name` is listed (`listed`) or not.
async fn wait_listed(epmd: SocketAddr, name: &str, listed: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let names = epmd::names(epmd).await.expect("names");
        if names.iter().any(|(n, _)| n == name) == listed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} still {} after {WAIT:?}: {names:?}",
            if listed { "missing" } else { "listed" },
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the peer closes (end of stream or reset): what came before.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    within("waiting for the server to close", async {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    out
}

/// Sends `bytes` on a new connection; returns all the server sent back
/// before it closed. (A server that closes first may make the write fail.)
async fn raw(epmd: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = within("connect", TcpStream::connect(epmd))
        .await
        .expect("connect");
    let _ = stream.write_all(bytes).await;
    read_to_close(&mut stream).await
}

/// A request on the wire: its length, then `body`.
fn request(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// What `start_embedded` would register for a beamish node.
fn beamish_node(name: &str, port: u16) -> NodeAddr {
    NodeAddr {
        port,
        node_type: 77,
        protocol: 0,
        highest: 6,
        lowest: 6,
        name: name.to_owned(),
        extra: Vec::new(),
    }
}

/// A server that answers every connection with `reply` after reading the
/// request, then closes it, or (`hold`) keeps it open without a word.
async fn fake_epmd(reply: Vec<u8>, hold: bool) -> SocketAddr {
    let listener = TcpListener::bind(any_port()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    beamish::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            beamish::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(&reply).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    addr
}

// ------------------------------------------------------------ client and server

#[test]
fn register_port_please_and_names() {
    run(async {
        let epmd = start().await;
        let alpha = epmd::register(epmd, "alpha", 5555).await.expect("register");
        assert_ne!(alpha.creation, 0);
        let found = epmd::port_please(epmd, "alpha").await.expect("port_please");
        assert_eq!(found, Some(beamish_node("alpha", 5555)));
        let beta = epmd::register(epmd, "beta", 5556).await.expect("register");
        assert_ne!(beta.creation, 0);
        assert_ne!(beta.creation, alpha.creation);
        assert_eq!(
            epmd::names(epmd).await.expect("names"),
            [("alpha".to_owned(), 5555), ("beta".to_owned(), 5556)]
        );
    });
}

#[test]
fn port_please_of_an_unknown_name_is_none() {
    run(async {
        let epmd = start().await;
        assert_eq!(epmd::port_please(epmd, "nobody").await.expect("ask"), None);
        assert_eq!(epmd::names(epmd).await.expect("names"), []);
    });
}

#[test]
fn a_taken_name_is_refused() {
    run(async {
        let epmd = start().await;
        let _first = epmd::register(epmd, "twin", 5555).await.expect("first");
        match epmd::register(epmd, "twin", 6666).await {
            Err(EpmdError::Refused(1)) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        let found = epmd::port_please(epmd, "twin").await.expect("ask");
        assert_eq!(found.map(|n| n.port), Some(5555));
        // On the wire: ALIVE2_X_RESP, result 1, creation 99 (as epmd), and
        // the connection closes.
        let alive = [
            120, 0x1A, 0x0A, 77, 0, 0, 6, 0, 6, 0, 4, b't', b'w', b'i', b'n', 0, 0,
        ];
        assert_eq!(raw(epmd, &request(&alive)).await, [118, 1, 0, 0, 0, 99]);
    });
}

#[test]
fn a_registration_ends_with_its_socket_and_the_next_gets_a_new_creation() {
    run(async {
        let epmd = start().await;
        let mut creations = Vec::new();
        for round in 0..4u16 {
            let reg = epmd::register(epmd, "phoenix", 5000 + round)
                .await
                .expect("register");
            assert_ne!(reg.creation, 0);
            creations.push(reg.creation);
            wait_listed(epmd, "phoenix", true).await;
            drop(reg);
            wait_listed(epmd, "phoenix", false).await;
        }
        assert!(
            creations.windows(2).all(|w| w[0] != w[1]),
            "a creation repeats: {creations:?}"
        );
    });
}

#[test]
fn names_and_dump_on_the_wire() {
    run(async {
        let epmd = start().await;
        let _reg = epmd::register(epmd, "alpha", 5555).await.expect("register");
        let port = u32::from(epmd.port()).to_be_bytes();

        let names = raw(epmd, &request(&[110])).await;
        assert_eq!(names[..4], port);
        assert_eq!(&names[4..], b"name alpha at port 5555\n");

        let dump = raw(epmd, &request(&[100])).await;
        assert_eq!(dump[..4], port);
        let text = String::from_utf8_lossy(&dump[4..]);
        assert!(
            text.starts_with("active name     <alpha> at port 5555, fd = "),
            "{text}"
        );
    });
}

#[test]
fn an_old_node_gets_a_16_bit_creation() {
    run(async {
        let epmd = start().await;
        // ALIVE2_REQ of a version-5 node named "old".
        let body = [
            120, 0x15, 0xB3, 77, 0, 0, 5, 0, 5, 0, 3, b'o', b'l', b'd', 0, 0,
        ];
        let mut stream = TcpStream::connect(epmd).await.expect("connect");
        stream.write_all(&request(&body)).await.expect("send");
        let mut reply = [0u8; 4];
        within("reply", stream.read_exact(&mut reply))
            .await
            .expect("reply");
        assert_eq!(reply[..2], [121, 0]);
        let creation = u16::from_be_bytes([reply[2], reply[3]]);
        assert!((1..=3).contains(&creation), "{creation}");
        let found = epmd::port_please(epmd, "old").await.expect("ask");
        assert_eq!(found.map(|n| (n.port, n.highest)), Some((5555, 5)));
    });
}

#[test]
fn stop_req_unregisters_and_closes_the_node_connection() {
    run(async {
        let epmd = start().await;
        let mut victim = epmd::register(epmd, "victim", 5555)
            .await
            .expect("register");
        assert_eq!(raw(epmd, &request(b"svictim")).await, b"STOPPED");
        within("the registration to close", victim.closed()).await;
        assert_eq!(epmd::port_please(epmd, "victim").await.expect("ask"), None);
        assert_eq!(raw(epmd, &request(b"svictim")).await, b"NOEXIST");
        // The name is free again; the old connection's end did not take the
        // new registration with it.
        let _again = epmd::register(epmd, "victim", 5556).await.expect("again");
        drop(victim);
        let found = epmd::port_please(epmd, "victim").await.expect("ask");
        assert_eq!(found.map(|n| n.port), Some(5556));
    });
}

#[test]
fn kill_req_stops_the_server() {
    run(async {
        let epmd = start().await;
        let mut node = epmd::register(epmd, "node", 5555).await.expect("register");
        assert_eq!(raw(epmd, &request(&[107])).await, b"OK");
        within("the registration to close", node.closed()).await;
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(epmd).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after KILL_REQ");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn bad_input_closes_the_connection_and_the_server_goes_on() {
    run(async {
        let epmd = start().await;
        let _keeper = epmd::register(epmd, "keeper", 5555)
            .await
            .expect("register");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unknown code", request(&[99])),
            ("empty request", vec![0, 0]),
            ("huge length", {
                let mut v = vec![0xFF, 0xFF];
                v.extend_from_slice(&[b'x'; 4096]);
                v
            }),
            ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            (
                "name length past the end",
                request(&[120, 0x15, 0xB3, 77, 0, 0, 6, 0, 6, 0, 200, b'a', 0, 0]),
            ),
            ("trailing bytes", request(&[110, 0])),
            ("name not UTF-8", request(&[122, 0xFF, 0xFE])),
            ("name with NUL", request(b"za\0b")),
            ("empty name", request(&[122])),
        ];
        for (what, bytes) in cases {
            assert_eq!(raw(epmd, &bytes).await, b"", "{what}: got a reply");
            let names = epmd::names(epmd).await.expect("names after bad input");
            assert_eq!(names, [("keeper".to_owned(), 5555)], "{what}");
        }
    });
}

#[test]
fn a_silent_client_is_dropped_but_a_registered_node_is_not() {
    run(async {
        let epmd = start().await;
        let _keeper = epmd::register(epmd, "keeper", 5555)
            .await
            .expect("register");
        let mut silent = TcpStream::connect(epmd).await.expect("connect");
        let mut half = TcpStream::connect(epmd).await.expect("connect");
        half.write_all(&[0, 5, 110]).await.expect("send half");
        assert_eq!(read_to_close(&mut silent).await, b"");
        assert_eq!(read_to_close(&mut half).await, b"");
        // Both were dropped for their timeout; the node registered before
        // them is still there.
        let found = epmd::port_please(epmd, "keeper").await.expect("ask");
        assert_eq!(found.map(|n| n.port), Some(5555));
    });
}

#[test]
fn a_taken_port_is_reported() {
    run(async {
        let epmd = start().await;
        match epmd::start_embedded(epmd).await {
            Err(EpmdError::AddrInUse(addr)) => assert_eq!(addr, epmd),
            other => panic!("expected AddrInUse, got {other:?}"),
        }
        // The first server is unharmed.
        assert_eq!(epmd::names(epmd).await.expect("names"), []);
    });
}

#[test]
fn the_server_wants_a_process() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(epmd::start_embedded(any_port())) {
        Err(EpmdError::Spawn(Error::NotInProcess)) => {}
        other => panic!("expected NotInProcess, got {other:?}"),
    }
}

#[test]
fn killing_the_server_process_closes_registrations() {
    run(async {
        let server = epmd::start_embedded(any_port()).await.expect("start");
        let mut node = epmd::register(server.addr, "node", 5555)
            .await
            .expect("register");
        server.pid.exit(beamish::Reason::Kill);
        within("the registration to close", node.closed()).await;
    });
}

// ------------------------------------------------------------ client against bad servers

#[test]
fn the_client_rejects_bad_replies() {
    run(async {
        let wrong_tag = fake_epmd(vec![119, 0, 0, 0, 0, 1], false).await;
        assert!(matches!(
            epmd::register(wrong_tag, "n", 1).await,
            Err(EpmdError::UnexpectedTag(119))
        ));
        let alive_reply = fake_epmd(vec![118, 0, 0, 0, 0, 1], false).await;
        assert!(matches!(
            epmd::port_please(alive_reply, "n").await,
            Err(EpmdError::UnexpectedTag(118))
        ));

        let silent_close = fake_epmd(Vec::new(), false).await;
        assert!(matches!(
            epmd::register(silent_close, "n", 1).await,
            Err(EpmdError::Truncated)
        ));
        assert!(matches!(
            epmd::port_please(silent_close, "n").await,
            Err(EpmdError::Truncated)
        ));
        assert!(matches!(
            epmd::names(silent_close).await,
            Err(EpmdError::Truncated)
        ));

        let short = fake_epmd(vec![118, 0, 0], false).await;
        assert!(matches!(
            epmd::register(short, "n", 1).await,
            Err(EpmdError::Truncated)
        ));

        // PORT2_RESP claiming a 65535-byte name.
        let absurd = fake_epmd(
            vec![119, 0, 0, 1, 77, 0, 0, 6, 0, 6, 0xFF, 0xFF, b'a'],
            false,
        )
        .await;
        assert!(matches!(
            epmd::port_please(absurd, "n").await,
            Err(EpmdError::Truncated)
        ));

        let mut flood = vec![0, 0, 0x11, 0x11];
        flood.resize(2 * 1024 * 1024, b'x');
        let flood = fake_epmd(flood, false).await;
        assert!(matches!(epmd::names(flood).await, Err(EpmdError::TooLong)));

        let garbage = fake_epmd(b"\0\0\0\x01hello\n".to_vec(), false).await;
        assert!(matches!(
            epmd::names(garbage).await,
            Err(EpmdError::Malformed(_))
        ));
    });
}

#[test]
fn the_client_accepts_an_old_alive2_reply() {
    run(async {
        let old = fake_epmd(vec![121, 0, 0, 2], true).await;
        let reg = epmd::register(old, "n", 1).await.expect("register");
        assert_eq!(reg.creation, 2);
        let refused = fake_epmd(vec![121, 1, 0, 0], true).await;
        assert!(matches!(
            epmd::register(refused, "n", 1).await,
            Err(EpmdError::Refused(1))
        ));
    });
}

#[test]
fn the_client_times_out_on_a_silent_server() {
    run(async {
        let mute = fake_epmd(Vec::new(), true).await;
        assert!(matches!(
            epmd::register(mute, "n", 1).await,
            Err(EpmdError::Timeout)
        ));
        assert!(matches!(epmd::names(mute).await, Err(EpmdError::Timeout)));
    });
}

#[test]
fn the_client_reports_a_missing_epmd() {
    run(async {
        // A port that was free a moment ago: nothing listens there.
        let addr = {
            let listener = TcpListener::bind(any_port()).await.expect("bind");
            listener.local_addr().expect("addr")
        };
        assert!(matches!(epmd::names(addr).await, Err(EpmdError::Io(_))));
        assert!(matches!(
            epmd::register(addr, "n", 1).await,
            Err(EpmdError::Io(_))
        ));
    });
}

#[test]
fn the_client_checks_names_before_sending() {
    run(async {
        let epmd = start().await;
        for name in ["", "a\0b", &"n".repeat(256)] {
            assert!(matches!(
                epmd::register(epmd, name, 1).await,
                Err(EpmdError::BadName)
            ));
            assert!(matches!(
                epmd::port_please(epmd, name).await,
                Err(EpmdError::BadName)
            ));
        }
    });
}

// ------------------------------------------------------------ OTP's epmd and erl

/// Whether `program` is on the PATH; prints a note when it is not.
fn installed(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("note: `{program}` is not installed; skipping this interop test");
    }
    found
}

/// A child process killed (by its pid) when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind(any_port())
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `epmd ARGS` (the command-line client) and returns its stdout.
fn epmd_cli(args: &[&str]) -> String {
    let out = Command::new("epmd")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run epmd");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn our_client_against_otp_epmd() {
    if !installed("epmd") {
        return;
    }
    let port = free_port();
    let _epmd = Reaped(
        Command::new("epmd")
            .args(["-port", &port.to_string(), "-relaxed_command_check"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start epmd"),
    );
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    run(async move {
        let deadline = Instant::now() + WAIT;
        while epmd::names(addr).await.is_err() {
            assert!(Instant::now() < deadline, "epmd did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let name = "beamish_epmd_test";
        let reg = epmd::register(addr, name, 5555).await.expect("register");
        assert_ne!(reg.creation, 0);
        let found = epmd::port_please(addr, name).await.expect("port_please");
        assert_eq!(found, Some(beamish_node(name, 5555)));
        let names = epmd::names(addr).await.expect("names");
        assert!(names.contains(&(name.to_owned(), 5555)), "{names:?}");
        assert!(matches!(
            epmd::register(addr, name, 6666).await,
            Err(EpmdError::Refused(_))
        ));
        assert_eq!(epmd::port_please(addr, "nobody").await.expect("ask"), None);

        let first = reg.creation;
        drop(reg);
        wait_listed(addr, name, false).await;
        let again = epmd::register(addr, name, 5556)
            .await
            .expect("register again");
        assert_ne!(again.creation, 0);
        assert_ne!(again.creation, first);
    });
}

#[test]
fn otp_epmd_command_against_our_server() {
    if !installed("epmd") {
        return;
    }
    let rt = Runtime::new().expect("runtime");
    let (addr, reg) = rt
        .block_on(async {
            let addr = start().await;
            let reg = epmd::register(addr, "alpha", 5555).await.expect("register");
            (addr, reg)
        })
        .expect("start");
    let port = addr.port().to_string();

    let names = epmd_cli(&["-port", &port, "-names"]);
    assert!(
        names.contains(&format!("up and running on port {port}")),
        "{names}"
    );
    assert!(names.contains("name alpha at port 5555"), "{names}");

    assert!(epmd_cli(&["-port", &port, "-stop", "alpha"]).contains("STOPPED"));
    assert!(epmd_cli(&["-port", &port, "-stop", "alpha"]).contains("NOEXIST"));
    assert!(epmd_cli(&["-port", &port, "-kill"]).contains("Killed"));

    rt.block_on(async move {
        let mut reg = reg;
        within("the registration to close", reg.closed()).await;
    })
    .expect("closed");
}

#[test]
fn an_erl_node_registers_with_our_server() {
    if !installed("erl") {
        return;
    }
    let rt = Runtime::new().expect("runtime");
    let addr = rt.block_on(start()).expect("start");
    let name = "beamish_epmd_erl";
    // The node prints what our server lists, then waits to be killed.
    let mut erl = Reaped(
        Command::new("erl")
            .args([
                "-noshell",
                "-sname",
                name,
                "-start_epmd",
                "false",
                "-eval",
                "io:format(\"~p~n\", [net_adm:names()]), receive after infinity -> ok end",
            ])
            .env("ERL_EPMD_PORT", addr.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start erl"),
    );
    let stdout = erl.0.stdout.take().expect("erl's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(WAIT).expect("erl printed nothing");
    assert!(
        line.contains(&format!("{{ok,[{{\"{name}\",")),
        "net_adm:names() gave {line}"
    );
    rt.block_on(async move {
        let found = epmd::port_please(addr, name)
            .await
            .expect("port_please")
            .expect("erl is registered");
        assert_eq!((found.node_type, found.protocol, found.highest), (77, 0, 6));
    })
    .expect("port_please");
    drop(erl);
    rt.block_on(async move { wait_listed(addr, name, false).await })
        .expect("erl's registration ends with it");
}
