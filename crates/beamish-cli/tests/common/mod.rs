//! Shared code of the distribution tests of this crate: the test binary's own
//! node, its log buffer, and helpers for the request/reply protocols the
//! tests speak (the contract's `echo`, and `tests/erl/dist_helper.erl`).
//!
//! One node per OS process: the first call of [`world`] starts a private
//! `epmd` (through the harness in `crates/beamish/tests/support/erl.rs`), a
//! runtime and, inside it, this process's node. The three live until the
//! test binary exits; the `epmd`, which a static never drops, is killed by
//! an `atexit` handler. Every test then runs its beamish side with
//! [`World::run`], from its own test thread, in parallel with the others.

#![allow(dead_code)] // Each test crate uses a different part of this module.

#[path = "../../../beamish/tests/support/erl.rs"]
pub mod erl;

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use beamish::dist::{self, Atom, NodeConfig, Term};
use beamish::{Handle, Pid, Ref, Runtime};

use erl::{Epmd, HOST};

/// Bound on every wait for a message, a line or a state (generous: CI
/// machines with two loaded cores are slow; nothing asserts on time).
pub const WAIT: Duration = Duration::from_secs(30);

/// How long "nothing arrives" is watched, after the exchanges that would
/// have carried the unwanted signal have completed.
pub const QUIET: Duration = Duration::from_millis(500);

/// The cookie of every node of these tests but the wrong-cookie one.
pub const COOKIE: &str = erl::DEFAULT_COOKIE;

/// The test binary's node and what goes with it.
pub struct World {
    /// The runtime the node runs on.
    pub handle: Handle,
    /// Our node's name.
    pub node: Atom,
    /// The private EPMD's port (`ERL_EPMD_PORT` of every child).
    pub epmd_port: u16,
    /// The OS pid (and process group) of the private EPMD.
    pub epmd_os_pid: u32,
    /// The private EPMD (never dropped: see [`world`]).
    epmd: Mutex<Epmd>,
    /// The port our node accepts connections on.
    pub listen_port: u16,
    logs: Arc<Mutex<Vec<u8>>>,
}

static WORLD: OnceLock<World> = OnceLock::new();
static EPMD_PGID: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_epmd_at_exit() {
    let pgid = EPMD_PGID.load(Ordering::SeqCst);
    if pgid > 0 {
        // SAFETY: kill(2) on the process group the harness made for epmd.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The test binary's node, started on first use as `{prefix}_{pid}@127.0.0.1`.
pub fn world(prefix: &str) -> &'static World {
    WORLD.get_or_init(|| start_world(prefix, None))
}

/// [`world`] with `net_ticktime` `ticktime` (the first call decides): for
/// tests whose nodes tick faster than the default 60 s, since a cluster
/// must share one tick time.
pub fn world_with_ticktime(prefix: &str, ticktime: Duration) -> &'static World {
    WORLD.get_or_init(|| start_world(prefix, Some(ticktime)))
}

fn start_world(prefix: &str, ticktime: Option<Duration>) -> World {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || LogWriter(sink.clone()))
        .try_init();

    let mut epmd = Epmd::start();
    let epmd_port = epmd.port();
    let epmd_os_pid = epmd.proc().os_pid();
    EPMD_PGID.store(
        i32::try_from(epmd_os_pid).expect("pid fits i32"),
        Ordering::SeqCst,
    );
    // SAFETY: registers a plain `extern "C" fn` with no captured state.
    unsafe {
        libc::atexit(kill_epmd_at_exit);
    }

    let rt = Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let handle = rt.handle();
    // Never dropped either: the node lives as long as the OS process.
    std::mem::forget(rt);
    let name = format!("{prefix}_{}@{HOST}", std::process::id());
    let mut config = NodeConfig::new(name, COOKIE)
        .epmd_port(epmd_port)
        .embedded_epmd(false);
    if let Some(t) = ticktime {
        config = config.net_ticktime(t);
    }
    let info = handle
        .block_on(async move { dist::start(config).await })
        .expect("the start process ended early")
        .expect("dist::start");
    World {
        handle,
        node: info.name,
        epmd_port,
        epmd_os_pid,
        epmd: Mutex::new(epmd),
        listen_port: info.port,
        logs,
    }
}

/// A child node (an OS process of its own), killed when dropped.
pub struct Child {
    pub proc: erl::Proc,
    pub node: Atom,
}

impl Child {
    /// Starts `cmd` as the node `name` and waits for its `ready` line.
    pub fn start(name: &str, cmd: std::process::Command) -> Child {
        let mut proc = erl::Proc::spawn(name, cmd);
        proc.expect_line("ready", WAIT);
        Child {
            proc,
            node: a(name),
        }
    }
}

/// Appends log lines to the shared buffer.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl World {
    /// Runs `test` as a beamish process of our node and returns its output;
    /// panics with the reason when the process fails (a failed assertion
    /// in it is a panic, reported with its message).
    pub fn run<T: Send + 'static>(&self, test: impl Future<Output = T> + Send + 'static) -> T {
        match self.handle.block_on(test) {
            Ok(out) => out,
            Err(reason) => panic!("the test process failed: {reason}"),
        }
    }

    /// [`World::run`] for a test with child nodes: on failure, the panic
    /// shows what each child printed and our log lines that name it (with
    /// `BEAMISH_TEST_LOGS` set, what they printed is shown after every step).
    pub fn run_with_children<T: Send + 'static>(
        &self,
        children: &[&Child],
        test: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let result = self.handle.block_on(test);
        if result.is_ok() && std::env::var_os("BEAMISH_TEST_LOGS").is_some() {
            // Asked for: what each child printed, after a step that passed.
            for c in children {
                eprintln!("--- {}:\n{}", c.node, c.proc.output());
            }
        }
        match result {
            Ok(out) => out,
            Err(reason) => {
                let outputs: String = children
                    .iter()
                    .map(|c| format!("--- {}:\n{}", c.node, c.proc.output()))
                    .collect();
                let ours: String = self
                    .logs()
                    .lines()
                    .filter(|l| children.iter().any(|c| l.contains(c.node.as_str())))
                    .map(|l| format!("  ! {l}\n"))
                    .collect();
                panic!(
                    "the test process failed: {reason}\n{outputs}--- our node, {}:\n{ours}",
                    self.node
                );
            }
        }
    }

    /// A builder for an `erl` node on our EPMD (see the harness).
    pub fn erl(&self, prefix: &str) -> erl::ErlNodeBuilder {
        let epmd = self.epmd.lock().unwrap_or_else(|e| e.into_inner());
        erl::ErlNode::builder(&epmd, prefix)
    }

    /// Everything our node has logged so far.
    pub fn logs(&self) -> String {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&logs).into_owned()
    }

    /// Waits until a log line contains every one of `needles`, and returns it.
    pub fn expect_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let logs = self.logs();
            if let Some(line) = logs.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} within {WAIT:?}; our node's log:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ------------------------------------------------------------ terms

/// The atom `name` as a term.
pub fn atom(name: &str) -> Term {
    Term::atom(name).expect("a valid atom")
}

/// The atom `name`.
pub fn a(name: &str) -> Atom {
    Atom::new(name).expect("a valid atom")
}

/// A tuple of `items`.
pub fn tuple<const N: usize>(items: [Term; N]) -> Term {
    Term::Tuple(items.into())
}

/// A fresh reference, as a term: the tag of one request.
pub fn new_tag() -> Term {
    Term::from(Ref::new())
}

/// The elements of a tuple message, or a panic naming `what`.
pub fn elements<'t>(t: &'t Term, what: &str) -> &'t [Term] {
    t.as_tuple()
        .unwrap_or_else(|| panic!("{what}: expected a tuple, got {t}"))
}

// ------------------------------------------------------------ receiving

/// The first `Term` message that `pred` accepts, or a panic naming `what`
/// after [`WAIT`].
pub async fn recv_term(what: &str, pred: impl FnMut(&Term) -> bool) -> Term {
    match beamish::receive_if::<Term, _>(pred).timeout(WAIT).await {
        Some(t) => t,
        None => panic!("{what}: no such message within {WAIT:?}"),
    }
}

/// The first message of type `T` that `pred` accepts, or a panic naming
/// `what` after [`WAIT`].
pub async fn recv<T: Send + 'static>(what: &str, pred: impl FnMut(&T) -> bool) -> T {
    match beamish::receive_if::<T, _>(pred).timeout(WAIT).await {
        Some(t) => t,
        None => panic!("{what}: no such message within {WAIT:?}"),
    }
}

/// Asserts that no `T` message that `pred` accepts arrives within [`QUIET`].
pub async fn expect_none<T: Send + 'static + std::fmt::Debug>(
    what: &str,
    pred: impl FnMut(&T) -> bool,
) {
    if let Some(t) = beamish::receive_if::<T, _>(pred).timeout(QUIET).await {
        panic!("{what}: unexpected message {t:?}");
    }
}

/// True for a tuple whose first element is `tag`.
pub fn tagged(t: &Term, tag: &Term) -> bool {
    matches!(t.as_tuple(), Some([first, ..]) if first == tag)
}

/// The reply `{Tag, Reply}` to the request tagged `tag`: returns `Reply`.
pub async fn reply(tag: &Term, what: &str) -> Term {
    let t = recv_term(what, |t| tagged(t, tag)).await;
    match elements(&t, what) {
        [_, body] => body.clone(),
        other => panic!(
            "{what}: expected {{Tag, Reply}}, got {}",
            Term::Tuple(other.to_vec())
        ),
    }
}

/// Sends `{self(), Tag, req...}` to `to` and returns the `Reply` of
/// `{Tag, Reply}`.
pub async fn call(to: Pid, req: Vec<Term>, what: &str) -> Term {
    let tag = new_tag();
    to.send(request(tag.clone(), req));
    reply(&tag, what).await
}

/// As [`call`], to the process registered as `name` on `node`.
pub async fn call_named(name: &str, node: Atom, req: Vec<Term>, what: &str) -> Term {
    let tag = new_tag();
    dist::send_named(a(name), node, request(tag.clone(), req));
    reply(&tag, what).await
}

/// `{self(), Tag, req...}`.
pub fn request(tag: Term, req: Vec<Term>) -> Term {
    let mut items = vec![Term::Pid(beamish::self_pid()), tag];
    items.extend(req);
    Term::Tuple(items)
}

/// The pid in a reply, or a panic naming `what`.
pub fn pid_of(t: &Term, what: &str) -> Pid {
    t.as_pid()
        .unwrap_or_else(|| panic!("{what}: expected a pid, got {t}"))
}

/// Polls `cond` in a process (sleeping between tries) until it holds, or
/// panics with `what` and the last value `cond` saw after [`WAIT`].
pub async fn eventually<T: std::fmt::Debug>(what: &str, mut cond: impl FnMut() -> (bool, T)) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (ok, seen) = cond();
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not the case after {WAIT:?} (last seen: {seen:?})"
        );
        beamish::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `signal` to the process group `pgid` (a harness child).
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    let pgid = libc::pid_t::try_from(pgid).expect("pid fits pid_t");
    // SAFETY: kill(2) on a process group the harness created for a child.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// The runner of a test file with its own `main` (`harness = false`): runs
/// the scenarios whose names contain one of the arguments that do not
/// start with `-` (all without such arguments), each caught on its own,
/// prints libtest-style lines, and exits with 101 if one failed.
pub fn run_scenarios(scenarios: &[(&str, fn())]) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let chosen: Vec<_> = scenarios
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, scenario) in chosen {
        println!("test {name} ...");
        match std::panic::catch_unwind(scenario) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok.");
    } else {
        println!("\ntest result: FAILED. failures: {failed:?}");
        std::process::exit(101);
    }
}

/// In a child process of a test with its own `main`: the node name in
/// `child_env` and the test's EPMD port in `epmd_env`; `None` in the test
/// process itself.
pub fn child_mode(child_env: &str, epmd_env: &str) -> Option<(String, u16)> {
    let name = std::env::var(child_env).ok()?;
    let port = std::env::var(epmd_env)
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("the EPMD port of the test");
    Some((name, port))
}
