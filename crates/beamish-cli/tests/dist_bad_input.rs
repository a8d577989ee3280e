//! Bad input on the distribution port of `beamish node`.
//!
//! A raw peer, written here on blocking `std::net` sockets, does the version
//! 6 handshake as the initiator and then writes whatever a case needs:
//! garbage, bad frames, truncated terms, huge lengths, unknown control
//! messages, bad atom cache references, broken fragment sequences, floods of
//! fragment sequences and of new atoms; or it breaks the handshake itself
//! (a wrong cookie, missing flags, a peer that stops halfway).
//!
//! Each test starts its own `epmd` on a free port and its own node, captures
//! the node's stderr, and checks for every bad peer that
//! - the node closes the connection: the peer reads EOF or a reset within
//!   [`CLOSE`];
//! - a line on the node's stderr says so and names the peer;
//! - a new peer still gets its echo back (`{Self, Ref, T}` sent to `echo`
//!   with `REG_SEND` comes back as `{Ref, T}`, byte for byte);
//! - the node process is still running;
//!
//! and, where a peer could make the node allocate, that the node's resident
//! memory grew by less than [`MEM_BOUND`]. The peers that must be closed
//! first get an echo, so the close is the answer to the bad input and not
//! to anything before it.
//!
//! Where the node fails one of these today, the test says what it expects
//! and fails: those are bugs to fix in the node, not in the test.
//!
//! Timeouts are generous, for a loaded two-core machine; nothing asserts on
//! time except "closed within". Every child (`epmd`, the node, `erl`) runs
//! in its own process group and is killed when its handle drops.

#[path = "../../beamish/tests/support/erl.rs"]
mod erl;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use erl::{Epmd, ErlNode, HOST, Proc, node_name, unique_name};
use md5::{Digest, Md5};

/// The longest any one reply, log line or start-up may take.
const WAIT: Duration = Duration::from_secs(30);
/// A bad peer must be disconnected within this.
const CLOSE: Duration = Duration::from_secs(20);
/// How much the node's resident memory may grow while a bad peer is served.
const MEM_BOUND: u64 = 50 << 20;
/// The cookie of every node of these tests.
const COOKIE: &str = "bad_input_cookie";

// Distribution flags (OTP's `dist.h`).
/// What beamish advertises, OTP 25's defaults and more: `0x4_07DF_7FBD`.
const FLAGS: u64 = 0x4_07DF_7FBD;
const DFLAG_UTF8_ATOMS: u64 = 0x1_0000;
const DFLAG_HANDSHAKE_23: u64 = 0x100_0000;
const DFLAG_MANDATORY_25_DIGEST: u64 = 0x400_0000;
const DFLAG_V4_NC: u64 = 1 << 34;

// Tags of the external term format.
const VERSION: u8 = 131;
const DIST_HEADER: u8 = 68;
const DIST_FRAG_HEADER: u8 = 69;
const DIST_FRAG_CONT: u8 = 70;
const PASS_THROUGH: u8 = 112;
const ATOM_CACHE_REF: u8 = 82;

// Control message operations.
const REG_SEND: i32 = 6;
const SEND_SENDER: u8 = 22;

// ======================================================== a tiny ETF encoder

/// Encoders for the few terms these tests send, without the version byte
/// (the form of terms after a distribution header).
mod etf {
    pub fn atom(name: &str) -> Vec<u8> {
        let b = name.as_bytes();
        let mut v = Vec::with_capacity(3 + b.len());
        match u8::try_from(b.len()) {
            Ok(n) => v.extend([119, n]),
            Err(_) => {
                v.push(118);
                v.extend((b.len() as u16).to_be_bytes());
            }
        }
        v.extend_from_slice(b);
        v
    }

    pub fn int(i: i32) -> Vec<u8> {
        match u8::try_from(i) {
            Ok(b) => vec![97, b],
            Err(_) => {
                let mut v = vec![98];
                v.extend(i.to_be_bytes());
                v
            }
        }
    }

    pub fn tuple(items: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![104, u8::try_from(items.len()).expect("a small tuple")];
        for i in items {
            v.extend_from_slice(i);
        }
        v
    }

    pub fn list(items: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![108];
        v.extend((items.len() as u32).to_be_bytes());
        for i in items {
            v.extend_from_slice(i);
        }
        v.push(106);
        v
    }

    pub fn binary(bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![109];
        v.extend((bytes.len() as u32).to_be_bytes());
        v.extend_from_slice(bytes);
        v
    }

    /// `NEW_PID_EXT`.
    pub fn pid(node: &str, id: u32, serial: u32, creation: u32) -> Vec<u8> {
        let mut v = vec![88];
        v.extend(atom(node));
        v.extend(id.to_be_bytes());
        v.extend(serial.to_be_bytes());
        v.extend(creation.to_be_bytes());
        v
    }

    /// `NEWER_REFERENCE_EXT` with three words.
    pub fn reference(node: &str, creation: u32, words: [u32; 3]) -> Vec<u8> {
        let mut v = vec![90, 0, 3];
        v.extend(atom(node));
        v.extend(creation.to_be_bytes());
        for w in words {
            v.extend(w.to_be_bytes());
        }
        v
    }
}

use etf::{atom, int, tuple};

/// One atom cache reference of a distribution header: a slot (segment *
/// 256 + index) and, for a new cache entry, the atom's text.
struct CacheRef<'a> {
    slot: u16,
    new: Option<&'a str>,
}

/// `131, 68, NumberOfAtomCacheRefs, Flags, AtomCacheRefs` (OTP's "External
/// Term Format", "Distribution Header").
fn dist_header(refs: &[CacheRef<'_>]) -> Vec<u8> {
    let mut v = vec![VERSION, DIST_HEADER];
    v.extend(header_refs(refs));
    v
}

/// The part of a header after `131, 68` (also in a first fragment).
fn header_refs(refs: &[CacheRef<'_>]) -> Vec<u8> {
    let n = refs.len();
    let mut v = vec![u8::try_from(n).expect("at most 255 refs")];
    if n == 0 {
        return v;
    }
    let long = refs.iter().any(|r| r.new.is_some_and(|t| t.len() > 255));
    let mut nibbles: Vec<u8> = refs
        .iter()
        .map(|r| {
            assert!(r.slot < 2048);
            (r.slot >> 8) as u8 | if r.new.is_some() { 8 } else { 0 }
        })
        .collect();
    nibbles.push(u8::from(long));
    for pair in nibbles.chunks(2) {
        v.push(pair[0] | pair.get(1).map_or(0, |b| b << 4));
    }
    for r in refs {
        v.push(r.slot as u8);
        if let Some(text) = r.new {
            if long {
                v.extend((text.len() as u16).to_be_bytes());
            } else {
                v.push(text.len() as u8);
            }
            v.extend_from_slice(text.as_bytes());
        }
    }
    v
}

/// A frame: the 4-byte length, then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// `131, 68, 0` (a header with no cache refs), then the terms.
fn plain(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![VERSION, DIST_HEADER, 0];
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// Bytes that look random (xorshift), the same on every run.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

// =================================================================== node

/// A `beamish node` child on its own `epmd`.
struct Node {
    // Dropped in this order: the node before its epmd.
    proc: Proc,
    at: Target,
    epmd: Epmd,
}

/// Where a node listens, and its name: what a peer needs (and can take to
/// another thread, which the captured child cannot go to).
#[derive(Clone, Debug)]
struct Target {
    name: String,
    port: u16,
}

/// Memory figures of a process, in bytes, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug)]
struct Mem {
    /// VmRSS: resident now.
    rss: u64,
    /// VmHWM: the highest resident size so far.
    hwm: u64,
    /// VmPeak: the largest virtual size so far.
    peak: u64,
}

impl Node {
    fn start() -> Node {
        Node::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Node {
        let epmd = Epmd::start();
        let alive = unique_name("nut");
        let name = node_name(&alive);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamish"));
        cmd.args(["node", "--name", &name, "--cookie", COOKIE])
            .args(["--epmd-port", &epmd.port().to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0");
        let mut proc = Proc::spawn(name.clone(), cmd);
        proc.expect_line("ready", WAIT);
        let port = port_please(epmd.port(), &alive);
        Node {
            proc,
            at: Target { name, port },
            epmd,
        }
    }

    /// Everything the node printed, for failure messages.
    fn output(&self) -> String {
        self.proc.output()
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.proc
            .output()
            .lines()
            .filter_map(|l| l.strip_prefix("  ! "))
            .map(str::to_owned)
            .collect()
    }

    /// Waits for a stderr line that contains every one of `needles`.
    fn expect_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .stderr_lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {needles:?} within {WAIT:?}; node output:\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn mem(&self) -> Mem {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.os_pid()))
            .expect("the node's /proc status");
        let field = |name: &str| -> u64 {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in /proc status"));
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .expect("a number of kB");
            kb * 1024
        };
        Mem {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
            peak: field("VmPeak:"),
        }
    }

    /// Asserts that resident memory never grew by [`MEM_BOUND`] or more
    /// since `before` (the peak, so a grow-then-free counts too).
    fn assert_mem_bounded(&self, before: Mem, what: &str) {
        let after = self.mem();
        let grown = after.hwm.saturating_sub(before.rss);
        eprintln!("{what}: resident memory grew by {} KiB", grown >> 10);
        assert!(
            grown < MEM_BOUND,
            "{what}: the node's resident memory grew by {} MiB (before {before:?}, after {after:?})",
            grown >> 20
        );
    }

    /// A raw peer that completed the handshake.
    fn connect(&self, prefix: &str) -> Peer {
        Peer::handshake(&self.at, prefix, FLAGS).unwrap_or_else(|e| {
            panic!(
                "handshake of a good peer failed: {e}; node output:\n{}",
                self.output()
            )
        })
    }

    /// The node still runs and a new peer gets its echo.
    fn assert_serving(&mut self) {
        assert!(
            self.proc.is_running(),
            "the node died; its output:\n{}",
            self.output()
        );
        let mut fresh = self.connect("fresh");
        if let Err(e) = fresh.echo("still_serving") {
            panic!(
                "a fresh peer got no echo: {e}; node output:\n{}",
                self.output()
            );
        }
    }
}

/// The distribution port of `alive` from EPMD (`PORT_PLEASE2_REQ`).
fn port_please(epmd_port: u16, alive: &str) -> u16 {
    let mut s = TcpStream::connect((HOST, epmd_port)).expect("connect to epmd");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut req = ((1 + alive.len()) as u16).to_be_bytes().to_vec();
    req.push(122);
    req.extend_from_slice(alive.as_bytes());
    s.write_all(&req).expect("PORT_PLEASE2_REQ");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("PORT2_RESP");
    assert!(
        resp.len() >= 4 && resp[0] == 119 && resp[1] == 0,
        "{alive} is not registered: {resp:?}"
    );
    u16::from_be_bytes([resp[2], resp[3]])
}

// =============================================================== raw peer

/// Sends one handshake message: a 2-byte length, then `msg`.
fn hs_send(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    s.write_all(&v)
}

/// Reads one handshake message.
fn hs_recv(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

/// `send_name`: `'N' flags:u64 creation:u32 nlen:u16 name`.
fn name_msg(flags: u64, creation: u32, name: &str) -> Vec<u8> {
    let mut m = vec![b'N'];
    m.extend(flags.to_be_bytes());
    m.extend(creation.to_be_bytes());
    m.extend((name.len() as u16).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m
}

/// MD5(cookie ++ decimal(challenge)), as `dist_util:gen_digest`.
fn digest(cookie: &str, challenge: u32) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(cookie.as_bytes());
    md5.update(challenge.to_string().as_bytes());
    md5.finalize().into()
}

/// The acceptor's `'N' flags:u64 challenge:u32 creation:u32 nlen:u16 name`.
#[derive(Debug)]
struct Challenge {
    flags: u64,
    challenge: u32,
    name: String,
}

fn parse_challenge(m: &[u8]) -> Challenge {
    assert!(m.len() >= 19 && m[0] == b'N', "not a challenge: {m:?}");
    let nlen = usize::from(u16::from_be_bytes([m[17], m[18]]));
    Challenge {
        flags: u64::from_be_bytes(m[1..9].try_into().expect("8 bytes")),
        challenge: u32::from_be_bytes(m[9..13].try_into().expect("4 bytes")),
        name: String::from_utf8(m[19..19 + nlen].to_vec()).expect("a UTF-8 name"),
    }
}

/// A distinct nonzero number per call (creations, challenges, ref words).
fn counter() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0x5EED_0001);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A TCP connection to the node's distribution port.
fn dial(node: &Node) -> TcpStream {
    dial_at(&node.at)
}

fn dial_at(at: &Target) -> TcpStream {
    let s = TcpStream::connect((HOST, at.port)).expect("connect to the node");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s.set_write_timeout(Some(WAIT)).expect("write timeout");
    let _ = s.set_nodelay(true);
    s
}

/// A connected raw peer.
struct Peer {
    s: TcpStream,
    /// Its node name, `name@127.0.0.1`.
    name: String,
    creation: u32,
    /// Ticks (empty frames) read from the node.
    ticks: usize,
}

impl Peer {
    /// The initiator's side of the handshake, with `flags` and the right
    /// cookie; checks the node's challenge ack.
    fn handshake(node: &Target, prefix: &str, flags: u64) -> Result<Peer, String> {
        let name = node_name(&unique_name(prefix));
        let mut s = dial_at(node);
        let creation = counter();
        let io = |e: io::Error| format!("handshake i/o: {e}");
        hs_send(&mut s, &name_msg(flags, creation, &name)).map_err(io)?;
        let status = hs_recv(&mut s).map_err(io)?;
        if status != b"sok" {
            return Err(format!("status {:?}", String::from_utf8_lossy(&status)));
        }
        let ch = parse_challenge(&hs_recv(&mut s).map_err(io)?);
        if ch.name != node.name {
            return Err(format!("challenge from {}", ch.name));
        }
        if ch.flags & FLAGS != FLAGS {
            return Err(format!("node flags {:#x}", ch.flags));
        }
        let mine = counter();
        let mut reply = vec![b'r'];
        reply.extend(mine.to_be_bytes());
        reply.extend(digest(COOKIE, ch.challenge));
        hs_send(&mut s, &reply).map_err(io)?;
        let ack = hs_recv(&mut s).map_err(io)?;
        let mut want = vec![b'a'];
        want.extend(digest(COOKIE, mine));
        if ack != want {
            return Err(format!("bad challenge ack {ack:?}"));
        }
        Ok(Peer {
            s,
            name,
            creation,
            ticks: 0,
        })
    }

    /// Writes raw bytes.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    fn send_frame(&mut self, body: &[u8]) -> io::Result<()> {
        self.send(&frame(body))
    }

    /// This peer's pid `<id.0>` (NEW_PID_EXT).
    fn pid(&self) -> Vec<u8> {
        etf::pid(&self.name, 1, 0, self.creation)
    }

    fn new_ref(&self) -> Vec<u8> {
        etf::reference(
            &self.name,
            self.creation,
            [counter() & 0x3_FFFF, counter(), 0],
        )
    }

    /// The control tuple `{REG_SEND, Self, '', name}`.
    fn reg_send_ctrl(&self, name: &str) -> Vec<u8> {
        tuple(&[int(REG_SEND), self.pid(), atom(""), atom(name)])
    }

    /// Reads the next frame that is not a tick.
    fn recv_frame(&mut self, within: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + within;
        loop {
            let mut len = [0; 4];
            self.read_exact_by(&mut len, deadline)?;
            let n = u32::from_be_bytes(len) as usize;
            if n == 0 {
                self.ticks += 1;
                continue;
            }
            let mut body = vec![0; n];
            self.read_exact_by(&mut body, deadline)?;
            return Ok(body);
        }
    }

    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.s
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        self.s.read_exact(buf).map_err(|e| format!("read: {e}"))
    }

    /// Sends `{Self, Ref, tag}` to `echo` and waits for `{Ref, tag}` back,
    /// sent with `SEND_SENDER` to this peer's pid.
    fn echo(&mut self, tag: &str) -> Result<(), String> {
        let r = self.new_ref();
        let msg = tuple(&[self.pid(), r.clone(), atom(tag)]);
        let body = plain(&[&self.reg_send_ctrl("echo"), &msg]);
        self.send_frame(&body).map_err(|e| format!("write: {e}"))?;
        self.expect_reply(&tuple(&[r, atom(tag)]))
    }

    /// Waits for `payload` sent to this peer's pid.
    fn expect_reply(&mut self, payload: &[u8]) -> Result<(), String> {
        let body = self.recv_frame(WAIT)?;
        // 131,68,0 then {SEND_SENDER, EchoPid, Self} then the payload.
        let mut tail = self.pid();
        tail.extend_from_slice(payload);
        let head = [VERSION, DIST_HEADER, 0, 104, 3, 97, SEND_SENDER, 88];
        if body.starts_with(&head) && body.ends_with(&tail) && body.len() > head.len() + tail.len()
        {
            Ok(())
        } else {
            Err(format!("unexpected reply {body:?}, wanted {payload:?}"))
        }
    }

    /// Waits until the node closes the connection: EOF or a reset. What
    /// the node sends meanwhile (ticks) is read and dropped.
    fn expect_closed(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("the connection is still open after {within:?}"));
            }
            self.s
                .set_read_timeout(Some(left.min(Duration::from_millis(500))))
                .map_err(|e| e.to_string())?;
            match self.s.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// A handshake socket's next read: must be EOF (or a reset).
fn expect_eof(s: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) => {}
        Ok(n) => panic!("{what}: got {:?} instead of EOF", &buf[..n]),
        Err(e) => panic!("{what}: {e} instead of EOF"),
    }
}

/// The four checks for one bad input: a peer that has just had its echo
/// sends `bytes`; the node must close it within [`CLOSE`], log a line with
/// "connection down", the peer's name and `log`, and go on serving.
fn expect_dropped(node: &mut Node, what: &str, bytes: &[u8], log: &str) {
    let mut p = node.connect("bad");
    p.echo("before")
        .unwrap_or_else(|e| panic!("{what}: no echo before the bad input: {e}"));
    // The node may close while we still write: that is fine.
    let _ = p.send(bytes);
    if let Err(e) = p.expect_closed(CLOSE) {
        panic!("{what}: {e}; node output:\n{}", node.output());
    }
    node.expect_log(&["connection down", &p.name, log]);
    node.assert_serving();
}

// ================================================================== tests

/// The control case: a correct `REG_SEND` to `echo` gets its echo, in
/// every framing a peer may use (atom cache refs, fragments, pass-through);
/// ticks alone keep a connection up past `net_ticktime`, while a silent
/// peer is dropped.
#[test]
fn valid_traffic_is_echoed_and_ticks_keep_a_connection_up() {
    let mut node = Node::start_with(&["--ticktime", "4"]);
    let at = node.at.clone();
    thread::scope(|s| {
        let silent = s.spawn(move || {
            let mut p = Peer::handshake(&at, "silent", FLAGS)?;
            p.echo("hello")?;
            p.expect_closed(CLOSE).map(|()| p.name.clone())
        });

        let mut p = node.connect("good");
        p.echo("hello").expect("plain echo");

        // Atom cache: new entries for `echo` and the tag, used through
        // ATOM_CACHE_REF; then the same slots again, no longer new.
        for new in [true, false] {
            let r = p.new_ref();
            let refs = [
                CacheRef {
                    slot: 3 * 256 + 17,
                    new: new.then_some("echo"),
                },
                CacheRef {
                    slot: 5,
                    new: new.then_some("cached_tag"),
                },
            ];
            let ctrl = tuple(&[int(REG_SEND), p.pid(), atom(""), vec![ATOM_CACHE_REF, 0]]);
            let msg = tuple(&[p.pid(), r.clone(), vec![ATOM_CACHE_REF, 1]]);
            let mut body = dist_header(&refs);
            body.extend(ctrl);
            body.extend(msg);
            p.send_frame(&body).expect("write");
            p.expect_reply(&tuple(&[r, atom("cached_tag")]))
                .unwrap_or_else(|e| panic!("cached atoms (new: {new}): {e}"));
        }

        // A fragmented message: three fragments, ids counting down to 1.
        let r = p.new_ref();
        let mut whole = p.reg_send_ctrl("echo");
        whole.extend(tuple(&[p.pid(), r.clone(), etf::binary(&[7; 3000])]));
        let seq = 0x0102_0304_0506_0708u64;
        let cut = [whole.len() / 3, 2 * whole.len() / 3];
        let pieces = [&whole[..cut[0]], &whole[cut[0]..cut[1]], &whole[cut[1]..]];
        for (i, piece) in pieces.iter().enumerate() {
            let mut b = vec![
                VERSION,
                if i == 0 {
                    DIST_FRAG_HEADER
                } else {
                    DIST_FRAG_CONT
                },
            ];
            b.extend(seq.to_be_bytes());
            b.extend((3 - i as u64).to_be_bytes());
            if i == 0 {
                b.push(0); // no atom cache refs
            }
            b.extend_from_slice(piece);
            p.send_frame(&b).expect("write");
        }
        p.expect_reply(&tuple(&[r, etf::binary(&[7; 3000])]))
            .expect("fragmented echo");

        // Pass-through: `112`, then each term with its version byte.
        let r = p.new_ref();
        let mut b = vec![PASS_THROUGH, VERSION];
        b.extend(p.reg_send_ctrl("echo"));
        b.push(VERSION);
        b.extend(tuple(&[p.pid(), r.clone(), atom("passed")]));
        p.send_frame(&b).expect("write");
        p.expect_reply(&tuple(&[r, atom("passed")]))
            .expect("pass-through echo");

        // Ten seconds (2.5 × net_ticktime) of nothing but ticks.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            p.send_frame(&[]).expect("a tick");
            thread::sleep(Duration::from_millis(500));
        }
        p.echo("after_ticks")
            .unwrap_or_else(|e| panic!("after ticks: {e}; node output:\n{}", node.output()));
        assert!(
            p.ticks >= 2,
            "the node sent {} ticks to an idle peer in 10 s (net_ticktime 4 s)",
            p.ticks
        );

        let silent = silent.join().expect("the silent peer's thread");
        let name = silent.unwrap_or_else(|e| panic!("silent peer: {e}"));
        node.expect_log(&["connection down", &name, "net_ticktime"]);
    });
    node.assert_serving();
}

/// The control case, continued: a well-behaved peer whose messages come
/// from many short-lived processes (as a busy Erlang node's do: every
/// `gen_server:call` from a new process carries a new pid) is not cut off:
/// 150,000 `REG_SEND`s, each from a pid never used before, in batches of
/// 10,000, each batch followed by an echo on the same connection.
#[test]
fn many_short_lived_remote_processes_are_not_cut_off() {
    let mut node = Node::start();
    let mut p = node.connect("churn");
    p.echo("before").expect("echo before");
    let total: u32 = 150_000;
    let batch: u32 = 10_000;
    let mut id = 0;
    while id < total {
        let mut bytes = Vec::new();
        for _ in 0..batch {
            id += 1;
            let from = etf::pid(&p.name, id % 0x8000, id / 0x8000, p.creation);
            let ctrl = tuple(&[int(REG_SEND), from, atom(""), atom("nobody")]);
            bytes.extend(frame(&plain(&[&ctrl, &[106]])));
        }
        p.send(&bytes).unwrap_or_else(|e| {
            panic!(
                "write after {id} senders: {e}; node output:\n{}",
                node.output()
            )
        });
        if let Err(e) = p.echo("sync") {
            panic!(
                "no echo after messages from {id} distinct pids: {e}; node output:\n{}",
                node.output()
            );
        }
    }
    node.assert_serving();
}

/// Case 1: garbage right after the handshake. An HTTP request (its first
/// four bytes read as a length of 1.2 GB), and noise behind a small length.
/// Afterwards an `erl` node still gets `pong`.
#[test]
fn garbage_after_the_handshake() {
    let mut node = Node::start();
    expect_dropped(
        &mut node,
        "an HTTP request",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "over the limit",
    );
    let mut g = vec![0, 0, 0, 200, 0x17];
    g.extend(noise(199, 0x9E37_79B9_7F4A_7C15));
    g.extend(noise(4000, 7));
    expect_dropped(&mut node, "noise", &g, "unknown frame header 23,");

    let mut erl = ErlNode::builder(&node.epmd, "pinger")
        .cookie(COOKIE)
        .eval(&format!(
            "case net_adm:ping('{}') of pong -> io:format(\"PASS~n\"); \
             Other -> io:format(\"FAIL ~p~n\", [Other]) end",
            node.at.name
        ))
        .start();
    erl.expect_pass(WAIT);
}

/// Case 2: a frame of a valid length whose body does not start with
/// `131,68`, `131,69`, `131,70` or `112`.
#[test]
fn frame_with_an_unknown_header() {
    let mut node = Node::start();
    let cases: &[(&[u8], &str)] = &[
        (&[VERSION, 80, 0, 0, 0, 1, 0], "unknown frame header 131,80"),
        (&[1, 2, 3, 4], "unknown frame header 1,2"),
        (&[VERSION], "unknown frame header 131,0"),
        (&[VERSION, DIST_HEADER], "frame ends inside its header"),
        (&[PASS_THROUGH], "frame ends inside its header"),
    ];
    for (body, log) in cases {
        expect_dropped(&mut node, &format!("body {body:?}"), &frame(body), log);
    }
}

/// Case 3: terms cut short, or followed by stray bytes, inside frames of
/// the right length; a length promising 4 G elements; nesting past the
/// decoder's depth limit.
#[test]
fn truncated_and_malformed_terms() {
    let mut node = Node::start();
    let pid = etf::pid("someone@127.0.0.1", 1, 0, 1);
    let ctrl = tuple(&[int(REG_SEND), pid.clone(), atom(""), atom("echo")]);
    let payload = tuple(&[pid.clone(), atom("x"), atom("y")]);

    // Half a REG_SEND control tuple.
    let body = plain(&[&ctrl[..ctrl.len() / 2]]);
    expect_dropped(
        &mut node,
        "half a control",
        &frame(&body),
        "control message",
    );
    // A whole control tuple whose payload is missing.
    let body = plain(&[&ctrl]);
    expect_dropped(&mut node, "no payload", &frame(&body), "payload");
    // Half a payload.
    let body = plain(&[&ctrl, &payload[..payload.len() - 3]]);
    expect_dropped(&mut node, "half a payload", &frame(&body), "payload");
    // An atom whose text is not UTF-8.
    let body = plain(&[&ctrl, &[119, 3, b'a', 0xFF, b'c']]);
    expect_dropped(&mut node, "an atom not UTF-8", &frame(&body), "payload");
    // A byte after the payload.
    let body = plain(&[&ctrl, &payload, &[106]]);
    expect_dropped(
        &mut node,
        "a stray byte",
        &frame(&body),
        "bytes after the message",
    );
    // LIST_EXT promising 0xFFFF_FFFF elements, then three bytes.
    let before = node.mem();
    let body = plain(&[&ctrl, &[108, 0xFF, 0xFF, 0xFF, 0xFF, 97, 1, 106]]);
    expect_dropped(&mut node, "a huge list count", &frame(&body), "payload");
    node.assert_mem_bounded(before, "a huge list count");
    // A list nested 100,000 deep.
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend([108, 0, 0, 0, 1]);
    }
    deep.extend(std::iter::repeat_n(106, 100_001));
    let body = plain(&[&ctrl, &deep]);
    expect_dropped(&mut node, "deep nesting", &frame(&body), "payload");
}

/// Case 4: a length prefix of 0xFFFF_FFF0, then a few bytes: the node must
/// close without allocating for it. Also a length just past the default
/// `max_message_size` (128 MiB).
#[test]
fn huge_length_prefix() {
    let mut node = Node::start();
    for len in [0xFFFF_FFF0u32, (128 << 20) + 1] {
        let before = node.mem();
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend([VERSION, DIST_HEADER, 0, 104]);
        expect_dropped(
            &mut node,
            &format!("length {len:#x}"),
            &bytes,
            "over the limit",
        );
        node.assert_mem_bounded(before, "a huge length");
        let peak = node.mem().peak;
        assert!(
            peak.saturating_sub(before.peak) < 1 << 31,
            "virtual size grew from {} MiB to {} MiB",
            before.peak >> 20,
            peak >> 20
        );
    }
}

/// Case 5: control messages the node does not know: op 99, a control that
/// is no tuple, an empty tuple, an op that is not an integer, a short
/// `REG_SEND`, a `SEND` whose receiver is not a pid.
#[test]
fn unknown_control_messages() {
    let mut node = Node::start();
    let pid = etf::pid("someone@127.0.0.1", 1, 0, 1);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            tuple(&[int(99), atom("foo"), pid.clone()]),
            "unknown operation",
        ),
        (atom("hello"), "not a tuple"),
        (tuple(&[]), "no operation code"),
        (tuple(&[atom("send"), pid.clone()]), "no operation code"),
        (tuple(&[int(REG_SEND)]), "short tuple"),
        (tuple(&[int(2), atom(""), atom("nobody")]), "expected a pid"),
    ];
    for (ctrl, log) in cases {
        let body = plain(&[&ctrl, &atom("payload")]);
        expect_dropped(&mut node, &format!("control {ctrl:?}"), &frame(&body), log);
    }
}

/// Case 5, continued: the text of a refused control message is cut to a
/// bounded length for the log. The cut must not panic when it falls inside
/// a multi-byte character, and the connection must still end the normal
/// way (logged, and gone from the node's table: the same name connects
/// again with status `ok`, not `alive`).
#[test]
fn unknown_control_with_non_ascii_text() {
    let mut node = Node::start();
    // 'é' is two bytes; one leading 'a' or none shifts the cut by one, so
    // one of the two lands inside a character.
    for lead in ["", "a"] {
        let text = format!("{lead}{}", "é".repeat(120));
        let ctrl = tuple(&[int(99), atom(&text)]);
        let mut p = node.connect("utf8");
        p.echo("before").expect("echo before");
        let _ = p.send_frame(&plain(&[&ctrl]));
        p.expect_closed(CLOSE)
            .unwrap_or_else(|e| panic!("{e}; node output:\n{}", node.output()));

        // The same name again: the old connection must be gone (the node
        // leaves its table before it closes the socket).
        let mut s = dial(&node);
        hs_send(&mut s, &name_msg(FLAGS, counter(), &p.name)).expect("send_name");
        let status = hs_recv(&mut s).expect("status");
        assert_eq!(
            String::from_utf8_lossy(&status),
            "sok",
            "reconnecting as {} after its connection ended; node output:\n{}",
            p.name,
            node.output()
        );
        node.expect_log(&["connection down", &p.name, "unknown operation"]);
    }
    node.assert_serving();
}

/// Case 5, continued: a refused control message with a large term in it
/// (a `REG_SEND` tuple too short, holding a 1 MiB binary) must not put the
/// whole term into the log line.
#[test]
fn refused_control_is_logged_in_bounded_length() {
    let mut node = Node::start();
    let ctrl = tuple(&[int(REG_SEND), etf::binary(&[255; 1 << 20])]);
    let mut p = node.connect("biglog");
    p.echo("before").expect("echo before");
    let _ = p.send_frame(&plain(&[&ctrl]));
    p.expect_closed(CLOSE)
        .unwrap_or_else(|e| panic!("{e}; node output:\n{}", node.output()));
    let line = node.expect_log(&["connection down", &p.name]);
    assert!(
        line.len() < 4096,
        "the log line for one bad control message is {} bytes long: {}...",
        line.len(),
        &line[..300]
    );
    node.assert_serving();
}

/// Case 5, continued: refusing a control message must cost memory in
/// proportion to the message, not to its printed form. `{99, Bin}` with a
/// 32 MiB binary of 255s prints as 128 MiB of text (`<<255,255,...>>`);
/// the node may hold the frame, but not that text.
#[test]
fn refused_control_is_not_printed_whole() {
    let mut node = Node::start();
    let size = 32 << 20;
    let big = etf::binary(&vec![255; size]);
    let mut p = node.connect("bigop");
    p.echo("before").expect("echo before");

    // The yardstick: the same binary in a valid message (to a name nobody
    // has) fits the bound.
    let before = node.mem();
    p.send_frame(&plain(&[&p.reg_send_ctrl("nobody"), &big]))
        .expect("write");
    p.echo("after_big").expect("echo after a big message");
    let grown = node.mem().hwm.saturating_sub(before.rss);
    eprintln!(
        "a valid {} MiB message: resident memory grew by {} MiB",
        size >> 20,
        grown >> 20
    );
    assert!(
        grown < size as u64 + MEM_BOUND,
        "a valid {} MiB message grew the node by {} MiB",
        size >> 20,
        grown >> 20
    );

    let ctrl = tuple(&[int(99), big]);
    let before = node.mem();
    let _ = p.send_frame(&plain(&[&ctrl]));
    p.expect_closed(CLOSE)
        .unwrap_or_else(|e| panic!("{e}; node output:\n{}", node.output()));
    node.expect_log(&["connection down", &p.name, "unknown operation"]);
    let after = node.mem();
    let grown = after.hwm.saturating_sub(before.rss);
    eprintln!(
        "a {} MiB control message: resident memory grew by {} MiB",
        size >> 20,
        grown >> 20
    );
    assert!(
        grown < size as u64 + MEM_BOUND,
        "refusing one {} MiB control message grew the node by {} MiB",
        size >> 20,
        grown >> 20
    );
    node.assert_serving();
}

/// Case 6: `ATOM_CACHE_REF`s to cache slots never set: in the header (a
/// reference that is not a new entry), and in the body (an index past the
/// header's references).
#[test]
fn atom_cache_ref_to_an_empty_slot() {
    let mut node = Node::start();
    let pid = etf::pid("someone@127.0.0.1", 1, 0, 1);
    let reg_send = |name: Vec<u8>| tuple(&[int(REG_SEND), pid.clone(), atom(""), name]);

    for (slot, log) in [
        (7u16, "atom cache entry 7 is empty"),
        (5 * 256 + 3, "entry 1283"),
    ] {
        let mut body = dist_header(&[CacheRef { slot, new: None }]);
        body.extend(reg_send(vec![ATOM_CACHE_REF, 0]));
        body.extend(atom("x"));
        expect_dropped(&mut node, &format!("slot {slot}"), &frame(&body), log);
    }
    // New entries that cannot be atoms: 300 characters (LongAtoms), and
    // text that is not UTF-8.
    let long = "x".repeat(300);
    let mut body = dist_header(&[CacheRef {
        slot: 1,
        new: Some(&long),
    }]);
    body.extend(reg_send(vec![ATOM_CACHE_REF, 0]));
    body.extend(atom("x"));
    expect_dropped(&mut node, "a 300-character atom", &frame(&body), "255");
    let mut body = dist_header(&[CacheRef {
        slot: 2,
        new: Some("abc"),
    }]);
    let at = body.len() - 2;
    body[at] = 0xFF; // "a\xFFc"
    body.extend(reg_send(vec![ATOM_CACHE_REF, 0]));
    body.extend(atom("x"));
    expect_dropped(
        &mut node,
        "an atom not UTF-8",
        &frame(&body),
        "bad atom text",
    );
    // No refs in the header, one in the body.
    let body = plain(&[&reg_send(vec![ATOM_CACHE_REF, 0]), &atom("x")]);
    expect_dropped(
        &mut node,
        "body ref, no header refs",
        &frame(&body),
        "control",
    );
    // One new entry in the header, a reference to the second in the body.
    let mut body = dist_header(&[CacheRef {
        slot: 9,
        new: Some("echo"),
    }]);
    body.extend(reg_send(vec![ATOM_CACHE_REF, 1]));
    body.extend(atom("x"));
    expect_dropped(
        &mut node,
        "body ref past the header",
        &frame(&body),
        "control",
    );
}

/// A first fragment (`131,69`): sequence, fragment id, no cache refs, data.
fn frag_start(seq: u64, id: u64, data: &[u8]) -> Vec<u8> {
    let mut b = vec![VERSION, DIST_FRAG_HEADER];
    b.extend(seq.to_be_bytes());
    b.extend(id.to_be_bytes());
    b.push(0);
    b.extend_from_slice(data);
    frame(&b)
}

/// A continuation fragment (`131,70`).
fn frag_cont(seq: u64, id: u64, data: &[u8]) -> Vec<u8> {
    let mut b = vec![VERSION, DIST_FRAG_CONT];
    b.extend(seq.to_be_bytes());
    b.extend(id.to_be_bytes());
    b.extend_from_slice(data);
    frame(&b)
}

/// Case 7: fragments out of order: a sequence that starts at id 3 and
/// goes on with id 1; a continuation of a sequence never started; a first
/// fragment with id 0; the same sequence started twice.
#[test]
fn fragments_out_of_order() {
    let mut node = Node::start();
    let ctrl = tuple(&[
        int(REG_SEND),
        etf::pid("someone@127.0.0.1", 1, 0, 1),
        atom(""),
        atom("echo"),
    ]);
    let mut skip = frag_start(7, 3, &ctrl);
    skip.extend(frag_cont(7, 1, &atom("x")));
    expect_dropped(&mut node, "ids 3 then 1", &skip, "sequence 7");
    expect_dropped(
        &mut node,
        "a continuation of nothing",
        &frag_cont(9, 1, &atom("x")),
        "sequence 9",
    );
    expect_dropped(
        &mut node,
        "fragment id 0",
        &frag_start(11, 0, &ctrl),
        "sequence 11",
    );
    let mut twice = frag_start(13, 2, &ctrl);
    twice.extend(frag_start(13, 2, &ctrl));
    expect_dropped(&mut node, "a sequence started twice", &twice, "fragment");
}

/// Case 8: 10,000 fragmented messages started and never finished, 8 KiB
/// each (80 MB if all were kept): the node closes the connection at its cap
/// of open sequences, and its memory stays bounded.
#[test]
fn ten_thousand_open_fragment_sequences() {
    let mut node = Node::start();
    let before = node.mem();
    let mut p = node.connect("frags");
    p.echo("before").expect("echo before");
    let data = vec![0x61; 8 * 1024];
    let batch = 250;
    let mut accepted = 0; // sequences the node had taken at its last echo
    let mut sent = 0;
    while sent < 10_000 {
        let mut bytes = Vec::with_capacity(batch * (data.len() + 30));
        for seq in sent..sent + batch {
            bytes.extend(frag_start(seq as u64 + 1, 2, &data));
        }
        if p.send(&bytes).is_err() {
            break;
        }
        sent += batch;
        if p.echo("sync").is_err() {
            break;
        }
        accepted = sent;
    }
    assert!(
        accepted < 10_000,
        "all 10,000 open sequences were accepted; node output:\n{}",
        node.output()
    );
    p.expect_closed(CLOSE)
        .unwrap_or_else(|e| panic!("{e}; node output:\n{}", node.output()));
    node.expect_log(&["connection down", &p.name, "too many fragmented"]);
    node.assert_mem_bounded(before, "10,000 open sequences");
    eprintln!("open sequences: the node took {accepted}, and closed within the next {batch}");
    node.assert_serving();
}

/// Sends messages that each make new atoms, `per_message` at a time, with
/// an echo after every `sync_every` messages, until the node closes the
/// connection (or `max_atoms` went out). Returns how many new atoms the
/// node had taken at the last echo that came back, and how many were sent.
fn flood(
    p: &mut Peer,
    mut message: impl FnMut(&Peer, usize) -> Vec<u8>,
    per_message: usize,
    sync_every: usize,
    max_atoms: usize,
) -> (usize, usize) {
    let mut taken = 0;
    let mut sent = 0;
    let mut i = 0;
    while sent < max_atoms {
        let mut bytes = Vec::new();
        for _ in 0..sync_every {
            bytes.extend(frame(&message(p, i)));
            i += 1;
        }
        if p.send(&bytes).is_err() {
            break;
        }
        sent += sync_every * per_message;
        if p.echo("sync").is_err() {
            break;
        }
        taken = sent;
    }
    (taken, sent)
}

/// `{REG_SEND, Self, '', echo}` and `[]` (echo ignores it) under a header
/// of 255 new cache entries, each a new atom of about 100 bytes.
fn header_flood_message(p: &Peer, i: usize, tag: &str) -> Vec<u8> {
    let names: Vec<String> = (0..255)
        .map(|j| format!("{tag}_{i}_{j}_{}", "h".repeat(80)))
        .collect();
    let refs: Vec<CacheRef<'_>> = names
        .iter()
        .enumerate()
        .map(|(j, n)| CacheRef {
            slot: j as u16,
            new: Some(n),
        })
        .collect();
    let mut body = dist_header(&refs);
    body.extend(p.reg_send_ctrl("echo"));
    body.extend([106]);
    body
}

/// `{REG_SEND, Self, '', echo}` and a list of 1,000 new atoms (echo ignores
/// it), each about 100 bytes, as `SMALL_ATOM_UTF8_EXT`.
fn term_flood_message(p: &Peer, i: usize, tag: &str) -> Vec<u8> {
    let atoms: Vec<Vec<u8>> = (0..1000)
        .map(|j| atom(&format!("{tag}_{i}_{j}_{}", "t".repeat(80))))
        .collect();
    plain(&[&p.reg_send_ctrl("echo"), &etf::list(&atoms)])
}

/// The most new atoms one connection may make before it is closed, in
/// these tests: the node's budgets are far below (100,000 through the
/// atom cache, 10,000 in terms); the point is that there is a bound.
const ATOM_BOUND: usize = 300_000;

/// Case 9: atom floods, through new atom cache entries in distribution
/// headers and through `SMALL_ATOM_UTF8_EXT` in terms: the node closes the
/// connection after a bounded number of new atoms, and its memory stays
/// bounded.
#[test]
fn atom_floods() {
    let mut node = Node::start();
    type Maker = fn(&Peer, usize, &str) -> Vec<u8>;
    let floods: [(&str, Maker, usize, usize); 2] = [
        ("header", header_flood_message, 255, 40),
        ("term", term_flood_message, 1000, 2),
    ];
    for (kind, make, per_message, sync_every) in floods {
        let before = node.mem();
        let mut p = node.connect(&format!("{kind}flood"));
        p.echo("before").expect("echo before");
        let tag = format!("{kind}flood");
        let (taken, sent) = flood(
            &mut p,
            |p, i| make(p, i, &tag),
            per_message,
            sync_every,
            2 * ATOM_BOUND,
        );
        assert!(
            taken < ATOM_BOUND,
            "{kind} flood: the node took {taken} new atoms and kept the connection; node output:\n{}",
            node.output()
        );
        p.expect_closed(CLOSE)
            .unwrap_or_else(|e| panic!("{kind} flood: {e}; node output:\n{}", node.output()));
        node.expect_log(&["connection down", &p.name, "atoms"]);
        node.assert_mem_bounded(before, &format!("{kind} flood"));
        eprintln!("{kind} flood: the node took {taken} new atoms, closed before {sent}");
        node.assert_serving();
    }
}

/// Case 9, continued: a peer whose flood is cut off reconnects and floods
/// again, 15 times: each connection's budget alone would let it offer
/// about 1.5 M new atoms in all, more than the atom table holds
/// (1,048,576). The node must keep room for what it needs: afterwards a
/// peer with a name it has never seen still connects and gets its echo.
#[test]
fn atom_floods_from_a_reconnecting_peer() {
    let mut node = Node::start();
    // The atoms of the final check exist before the flood; only the new
    // peer's name is new then.
    node.assert_serving();
    let mut total = 0;
    for round in 0..15 {
        let Ok(mut p) = Peer::handshake(&node.at, "reflood", FLAGS) else {
            break;
        };
        // Short atoms: this is about their number, not their size.
        let tag = format!("r{round}");
        let (taken, _) = flood(
            &mut p,
            |p, i| {
                let names: Vec<String> = (0..255).map(|j| format!("{tag}_{i}_{j}")).collect();
                let refs: Vec<CacheRef<'_>> = names
                    .iter()
                    .enumerate()
                    .map(|(j, n)| CacheRef {
                        slot: j as u16,
                        new: Some(n),
                    })
                    .collect();
                let mut body = dist_header(&refs);
                body.extend(p.reg_send_ctrl("echo"));
                body.extend([106]);
                body
            },
            255,
            80,
            2 * ATOM_BOUND,
        );
        total += taken;
        let _ = p.expect_closed(CLOSE);
    }
    eprintln!("reconnecting floods: the node took at least {total} new atoms");
    assert!(node.proc.is_running(), "the node died:\n{}", node.output());
    node.assert_serving();
}

/// Case 10: a wrong cookie never gets in: after our challenge reply with a
/// digest made from another cookie, the node sends no challenge ack (the
/// next read is EOF) and logs a line about the cookie.
#[test]
fn wrong_cookie_never_gets_in() {
    let mut node = Node::start();
    for (cookie, what) in [
        ("not_the_cookie", "another cookie"),
        ("", "an empty cookie"),
    ] {
        let name = node_name(&unique_name("intruder"));
        let mut s = dial(&node);
        hs_send(&mut s, &name_msg(FLAGS, counter(), &name)).expect("send_name");
        assert_eq!(hs_recv(&mut s).expect("status"), b"sok");
        let ch = parse_challenge(&hs_recv(&mut s).expect("challenge"));
        assert_eq!(ch.name, node.at.name);
        let mut reply = vec![b'r'];
        reply.extend(counter().to_be_bytes());
        reply.extend(digest(cookie, ch.challenge));
        hs_send(&mut s, &reply).expect("challenge reply");
        expect_eof(&mut s, what);
        let line = node.expect_log(&["cookie", &name]);
        assert!(line.contains("wrong"), "{line}");
        node.assert_serving();
    }
}

/// Case 10, continued: the node checks the cookie as the initiator too. A
/// fake node registered with EPMD answers the node's connection with a
/// challenge ack made from another cookie: the node must close without
/// sending it a single frame, and log the wrong cookie.
#[test]
fn wrong_cookie_on_an_outgoing_connection() {
    let mut node = Node::start();
    let listener = std::net::TcpListener::bind((HOST, 0)).expect("bind");
    let alive = unique_name("fake");
    let fake = node_name(&alive);
    // ALIVE2_REQ: PortNo, NodeType 77, Protocol 0, versions 6..6, name, no extra.
    let mut req = vec![120];
    req.extend(listener.local_addr().expect("address").port().to_be_bytes());
    req.extend([77, 0, 0, 6, 0, 6]);
    req.extend((alive.len() as u16).to_be_bytes());
    req.extend_from_slice(alive.as_bytes());
    req.extend([0, 0]);
    let mut registration = TcpStream::connect((HOST, node.epmd.port())).expect("epmd");
    registration.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut framed = (req.len() as u16).to_be_bytes().to_vec();
    framed.extend(req);
    registration.write_all(&framed).expect("ALIVE2_REQ");
    let mut resp = [0; 6];
    registration.read_exact(&mut resp).expect("ALIVE2_X_RESP");
    assert_eq!(resp[..2], [118, 0], "registration refused");

    // Ask echo to send to a name on the fake node: the node connects.
    let mut p = node.connect("asker");
    let r = p.new_ref();
    let dest = tuple(&[atom("anyone"), atom(&fake)]);
    let msg = tuple(&[p.pid(), r.clone(), atom("send"), dest, atom("secret")]);
    p.send_frame(&plain(&[&p.reg_send_ctrl("echo"), &msg]))
        .expect("write");
    p.expect_reply(&tuple(&[r, atom("sent")]))
        .expect("echo's answer to send");

    listener.set_nonblocking(false).expect("blocking");
    let (mut s, _) = listener.accept().expect("the node's connection");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let name = hs_recv(&mut s).expect("send_name");
    assert_eq!(name[0], b'N');
    assert!(name.ends_with(node.at.name.as_bytes()), "{name:?}");
    hs_send(&mut s, b"sok").expect("status");
    let mine = counter();
    let mut ch = vec![b'N'];
    ch.extend(FLAGS.to_be_bytes());
    ch.extend(mine.to_be_bytes());
    ch.extend(counter().to_be_bytes());
    ch.extend((fake.len() as u16).to_be_bytes());
    ch.extend_from_slice(fake.as_bytes());
    hs_send(&mut s, &ch).expect("challenge");
    let reply = hs_recv(&mut s).expect("challenge reply");
    assert_eq!(reply.len(), 21, "{reply:?}");
    assert_eq!(reply[0], b'r');
    assert_eq!(reply[5..], digest(COOKIE, mine), "the node's digest");
    let theirs = u32::from_be_bytes(reply[1..5].try_into().expect("4 bytes"));
    let mut ack = vec![b'a'];
    ack.extend(digest("not_the_cookie", theirs));
    hs_send(&mut s, &ack).expect("challenge ack");
    expect_eof(&mut s, "after a wrong challenge ack");
    node.expect_log(&["wrong cookie", &fake]);
    node.assert_serving();
}

/// Case 12, continued: bytes that are no handshake at all: an unknown
/// message tag, a name message cut short, an empty message. Each closes
/// at once (long before the handshake timeout) with a log line.
#[test]
fn garbage_instead_of_a_handshake() {
    let mut node = Node::start();
    let name = name_msg(FLAGS, 1, "someone@127.0.0.1");
    let cases: &[(&[u8], &str)] = &[
        (&[0, 3, b'X', b'Y', b'Z'], "got tag 88"),
        (&[&[0, 10][..], &name[..10]].concat(), "too short"),
        (&[0, 0], "empty message"),
    ];
    for (bytes, log) in cases {
        let mut s = dial(&node);
        let port = s.local_addr().expect("local address").port();
        s.write_all(bytes).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        expect_eof(&mut s, &format!("{bytes:?}"));
        node.expect_log(&["handshake refused", log, &format!("127.0.0.1:{port}")]);
    }
    node.assert_serving();
}

/// Case 11: handshakes that stop halfway are dropped after the node's
/// handshake timeout (7 s), while other peers are served meanwhile.
#[test]
fn stalled_handshakes_time_out() {
    let mut node = Node::start();
    // Connected, nothing sent.
    let mut nothing = dial(&node);
    // One byte of the two-byte length prefix.
    let mut half_len = dial(&node);
    half_len.write_all(&[0]).expect("write");
    // A send_name, read the status and challenge, then nothing.
    let mut named = dial(&node);
    let name = node_name(&unique_name("staller"));
    hs_send(&mut named, &name_msg(FLAGS, counter(), &name)).expect("send_name");
    assert_eq!(hs_recv(&mut named).expect("status"), b"sok");
    parse_challenge(&hs_recv(&mut named).expect("challenge"));
    // The same, then half a challenge reply.
    let mut half_reply = dial(&node);
    let name2 = node_name(&unique_name("staller"));
    hs_send(&mut half_reply, &name_msg(FLAGS, counter(), &name2)).expect("send_name");
    assert_eq!(hs_recv(&mut half_reply).expect("status"), b"sok");
    parse_challenge(&hs_recv(&mut half_reply).expect("challenge"));
    half_reply
        .write_all(&[0, 21, b'r', 1, 2])
        .expect("half a reply");

    // Served while those hang.
    node.assert_serving();

    for (s, what) in [
        (&mut nothing, "silent"),
        (&mut half_len, "half a length"),
        (&mut named, "named, then silent"),
        (&mut half_reply, "half a reply"),
    ] {
        let port = s.local_addr().expect("local address").port();
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        expect_eof(s, what);
        node.expect_log(&["handshake", "timed out", &format!("127.0.0.1:{port}")]);
    }
    node.assert_serving();
}

/// Case 12: a `send_name` without the mandatory flags gets `not_allowed`
/// and the connection closes, with a log line; also an old-style `'n'` name
/// without `HANDSHAKE_23`.
#[test]
fn send_name_without_mandatory_flags() {
    let mut node = Node::start();
    for (flags, what) in [
        (FLAGS & !DFLAG_V4_NC, "no V4_NC"),
        (
            FLAGS & !(DFLAG_MANDATORY_25_DIGEST | DFLAG_UTF8_ATOMS),
            "no UTF8_ATOMS (nor the digest bit)",
        ),
    ] {
        let name = node_name(&unique_name("oldpeer"));
        let mut s = dial(&node);
        hs_send(&mut s, &name_msg(flags, counter(), &name)).expect("send_name");
        assert_eq!(
            String::from_utf8_lossy(&hs_recv(&mut s).expect("status")),
            "snot_allowed",
            "{what}"
        );
        expect_eof(&mut s, what);
        node.expect_log(&["mandatory flags", &name]);
    }
    // Version 5 `'n'`: version 5, 32 flag bits, the name.
    let name = node_name(&unique_name("v5peer"));
    let mut m = vec![b'n', 0, 5];
    m.extend(((FLAGS & !(DFLAG_HANDSHAKE_23 | DFLAG_MANDATORY_25_DIGEST)) as u32).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    let mut s = dial(&node);
    hs_send(&mut s, &m).expect("old send_name");
    assert_eq!(
        String::from_utf8_lossy(&hs_recv(&mut s).expect("status")),
        "snot_allowed"
    );
    expect_eof(&mut s, "a version 5 name");
    node.expect_log(&["mandatory flags", &name]);
    node.assert_serving();
}
