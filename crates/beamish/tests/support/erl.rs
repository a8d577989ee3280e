//! Helpers for the tests that talk to real Erlang nodes.
//!
//! Every test gets its own world: a private `epmd` on a free port ([`Epmd`]),
//! and `erl` nodes ([`ErlNode`]) or other node commands ([`Proc`]) that find
//! it through `ERL_EPMD_PORT`. Nothing touches the EPMD on the default port
//! 4369, so tests run in parallel with each other and with a developer's own
//! nodes.
//!
//! - Node names are unique per test ([`unique_name`]: prefix, OS pid and a
//!   counter), all long names on `127.0.0.1`.
//! - A child's stdout and stderr are read line by line on background threads;
//!   [`Proc::expect_line`] waits for a line with a timeout and, when it times
//!   out, panics with everything the child printed.
//! - Every child runs in its own process group, and dropping its handle kills
//!   the whole group (SIGKILL) and reaps it, so a failing test leaves no `erl`,
//!   `beam.smp` or `epmd` behind. Drop the nodes before their [`Epmd`]
//!   (declare the `Epmd` first: locals drop in reverse order).
//!
//! Erlang must be installed (`scripts/install_erlang.sh`; CI runs it from
//! `scripts/test.sh`). When `erl`, `epmd` or `escript` is missing the helpers
//! panic instead of skipping, so a green run never hides an untested path.
//!
//! Use it from an integration test with:
//!
//! ```ignore
//! mod support;
//! use support::erl::{Epmd, ErlNode};
//!
//! let epmd = Epmd::start();
//! let mut a = ErlNode::builder(&epmd, "a").eval(r#"io:format("ready~n")"#).start();
//! a.expect_line("ready", Duration::from_secs(30));
//! ```

#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The host part of every node name: long names, IPv4 loopback.
pub const HOST: &str = "127.0.0.1";

/// The cookie that [`ErlNodeBuilder`] uses unless told otherwise.
pub const DEFAULT_COOKIE: &str = "beamish_test_cookie";

/// How long [`Epmd::start`] waits for the daemon to accept connections.
const EPMD_START_TIMEOUT: Duration = Duration::from_secs(10);

/// The Erlang programs the tests run, found on `PATH`.
#[derive(Debug)]
pub struct Erlang {
    /// The `erl` launcher.
    pub erl: PathBuf,
    /// The port mapper daemon.
    pub epmd: PathBuf,
    /// The script runner, for the Erlang-side suites under `scripts/interop/`.
    pub escript: PathBuf,
}

/// Finds `erl`, `epmd` and `escript` on `PATH`, once per test binary.
///
/// # Panics
///
/// If any of them is missing, with a message that says how to install them.
pub fn erlang() -> &'static Erlang {
    static ERLANG: OnceLock<Erlang> = OnceLock::new();
    ERLANG.get_or_init(|| {
        let find = |prog: &str| {
            find_in_path(prog).unwrap_or_else(|| {
                panic!(
                    "Erlang not installed: run scripts/install_erlang.sh \
                     (`{prog}` is not on PATH)"
                )
            })
        };
        Erlang {
            erl: find("erl"),
            epmd: find("epmd"),
            escript: find("escript"),
        }
    })
}

/// The first executable file called `prog` in a directory of `PATH`.
fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(prog))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A node name (without the host) that no other test, and no other run of
/// this test binary, uses: `{prefix}_{os pid}_{counter}`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// The full node name `{name}@127.0.0.1`.
pub fn node_name(name: &str) -> String {
    format!("{name}@{HOST}")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The path of the repository's root (the workspace), for the scripts under
/// `scripts/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Builds example `name` of the `beamish` crate, in the profile of the
/// test binary that calls this, with the cargo that runs the test, and
/// returns its path.
#[allow(dead_code)] // Not every test binary that includes this runs an example.
pub fn example_binary(name: &str) -> PathBuf {
    example_binary_with(name, &[])
}

/// [`example_binary`] for an example that needs `features` of the crate.
#[allow(dead_code)]
pub fn example_binary_with(name: &str, features: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target profile directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["build", "-p", "beamish", "--example", name]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building the {name} example failed");
    profile_dir.join("examples").join(name)
}

// ------------------------------------------------------------------ Proc

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The child's stdout.
    Stdout,
    /// The child's stderr.
    Stderr,
}

/// A child process (an `erl` node, an `epmd`, a node under test) with its
/// output captured line by line. Dropping it kills its process group.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    /// Stdout lines not yet consumed by a wait.
    stdout: Receiver<String>,
    /// Lines already taken from `stdout` but not matched, kept for later waits.
    pending: VecDeque<String>,
    /// Everything the child printed, both streams, for failure messages.
    log: Arc<Mutex<Vec<(Stream, String)>>>,
}

impl Proc {
    /// Starts `cmd` in a new process group with stdin closed and stdout and
    /// stderr captured. `label` names it in failure messages.
    ///
    /// # Panics
    ///
    /// If the command cannot be started.
    pub fn spawn(label: impl Into<String>, mut cmd: Command) -> Proc {
        let label = label.into();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot start {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        spawn_reader(&label, out, Stream::Stdout, Some(tx), Arc::clone(&log));
        spawn_reader(&label, err, Stream::Stderr, None, Arc::clone(&log));
        Proc {
            label,
            child,
            stdout: rx,
            pending: VecDeque::new(),
            log,
        }
    }

    /// The label given to [`Proc::spawn`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The OS pid of the child (also its process group id).
    pub fn os_pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the next stdout line for which `pred` holds,
    /// and returns it. Lines that do not match stay available to later waits.
    ///
    /// # Errors
    ///
    /// On a timeout, or when stdout closes first (the child exited), with a
    /// message that holds everything the child printed.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        if let Some(i) = self.pending.iter().position(|l| pred(l)) {
            return Ok(self.pending.remove(i).expect("index in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(line) => self.pending.push_back(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no matching line within {timeout:?}")));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string());
                    return Err(self.failure(&format!(
                        "stdout closed before a matching line (exit: {status:?})"
                    )));
                }
            }
        }
    }

    /// Waits up to `timeout` for a stdout line that contains `needle`.
    ///
    /// # Panics
    ///
    /// On a timeout or an early exit, with everything the child printed.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(timeout, |l| l.contains(needle))
            .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"))
    }

    /// Waits up to `timeout` for a line that starts with `PASS` or `FAIL`,
    /// and returns the `PASS` line.
    ///
    /// # Panics
    ///
    /// On a `FAIL` line, a timeout or an early exit.
    pub fn expect_pass(&mut self, timeout: Duration) -> String {
        let line = self
            .wait_for_line(timeout, |l| l.starts_with("PASS") || l.starts_with("FAIL"))
            .unwrap_or_else(|e| panic!("waiting for PASS: {e}"));
        if line.starts_with("FAIL") {
            panic!("{}", self.failure(&line));
        }
        line
    }

    /// Everything the child printed so far, one line each, stderr lines
    /// marked with `!`.
    pub fn output(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .map(|(s, l)| match s {
                Stream::Stdout => format!("  | {l}\n"),
                Stream::Stderr => format!("  ! {l}\n"),
            })
            .collect()
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{}: {what}; its output so far:\n{}",
            self.label,
            self.output()
        )
    }

    /// Waits up to `timeout` for the child to exit, and returns its status.
    ///
    /// # Errors
    ///
    /// On a timeout (the child keeps running), with everything it printed.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => return Err(self.failure(&format!("still running after {timeout:?}"))),
                Err(e) => return Err(self.failure(&format!("wait failed: {e}"))),
            }
        }
    }

    /// Sends `signal` to the child's whole process group.
    pub fn signal(&self, signal: libc::c_int) {
        let pgid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a negative pid signals that process group,
        // which `spawn` created for this child alone.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// Kills the child's process group with SIGKILL and reaps the child.
    /// Safe to call twice; `Drop` calls it too.
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            // The leader is gone, but others in its group may still run.
            self.signal(libc::SIGKILL);
            return;
        }
        self.signal(libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `from` line by line into `log`, and into `tx` when given.
fn spawn_reader(
    label: &str,
    from: impl Read + Send + 'static,
    stream: Stream,
    tx: Option<Sender<String>>,
    log: Arc<Mutex<Vec<(Stream, String)>>>,
) {
    thread::Builder::new()
        .name(format!("{label}-{stream:?}"))
        .spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((stream, line.clone()));
                if let Some(tx) = &tx {
                    // The receiver is gone when the Proc was dropped; keep
                    // draining so the child never blocks on a full pipe.
                    let _ = tx.send(line);
                }
            }
        })
        .expect("spawn a reader thread");
}

// ------------------------------------------------------------------ Epmd

/// A private `epmd` on a free port, run in the foreground as a child of the
/// test and killed when this is dropped.
#[derive(Debug)]
pub struct Epmd {
    port: u16,
    proc: Proc,
}

impl Epmd {
    /// Starts `epmd -port P -address 127.0.0.1` on a free port and waits
    /// until it accepts connections.
    ///
    /// # Panics
    ///
    /// If Erlang is not installed or the daemon does not come up (it retries
    /// with another port when the chosen one was taken meanwhile).
    pub fn start() -> Epmd {
        let erlang = erlang();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&erlang.epmd);
            cmd.args(["-port", &port.to_string(), "-address", HOST]);
            let mut proc = Proc::spawn(format!("epmd:{port}"), cmd);
            let deadline = Instant::now() + EPMD_START_TIMEOUT;
            while Instant::now() < deadline && proc.is_running() {
                if TcpStream::connect((HOST, port)).is_ok() {
                    return Epmd { port, proc };
                }
                thread::sleep(Duration::from_millis(20));
            }
            last = proc.output();
        }
        panic!("epmd did not start on a free port; last output:\n{last}");
    }

    /// Its port: the `ERL_EPMD_PORT` of every node of this test.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets `ERL_EPMD_PORT` on `cmd`, so the node it starts uses this EPMD.
    pub fn configure<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("ERL_EPMD_PORT", self.port.to_string())
    }

    /// The output of `epmd -names` for this daemon (`name N at port P` lines).
    pub fn names(&self) -> String {
        let out = Command::new(&erlang().epmd)
            .args(["-port", &self.port.to_string(), "-names"])
            .output()
            .expect("run epmd -names");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command for `escript` with this EPMD's port set, for the suites under
    /// `scripts/interop/`.
    pub fn escript(&self, script: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(&erlang().escript);
        cmd.arg(script);
        self.configure(&mut cmd);
        cmd
    }

    /// The EPMD process itself, to kill or inspect it.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

// --------------------------------------------------------------- ErlNode

/// A running `erl -name N@127.0.0.1 -noinput` node on a private [`Epmd`].
#[derive(Debug)]
pub struct ErlNode {
    node: String,
    cookie: String,
    proc: Proc,
}

/// Options of an [`ErlNode`]; made by [`ErlNode::builder`].
#[derive(Debug)]
pub struct ErlNodeBuilder {
    name: String,
    cookie: String,
    epmd_port: u16,
    args: Vec<String>,
    eval: Option<String>,
    connect_all: bool,
}

impl ErlNode {
    /// A node `{unique_name(prefix)}@127.0.0.1` with cookie
    /// [`DEFAULT_COOKIE`], `-kernel connect_all false` (so `global` does not
    /// connect nodes behind the test's back) and `-start_epmd false` (it must
    /// use `epmd`, never start its own).
    pub fn builder(epmd: &Epmd, prefix: &str) -> ErlNodeBuilder {
        ErlNodeBuilder {
            name: unique_name(prefix),
            cookie: DEFAULT_COOKIE.to_owned(),
            epmd_port: epmd.port(),
            args: Vec::new(),
            eval: None,
            connect_all: false,
        }
    }

    /// The full node name, `name@127.0.0.1`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The cookie it was started with.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// The OS pid of the emulator (`erl` execs it, so this is `beam.smp`).
    pub fn os_pid(&self) -> u32 {
        self.proc.os_pid()
    }

    /// See [`Proc::expect_line`].
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.proc.expect_line(needle, timeout)
    }

    /// See [`Proc::expect_pass`].
    pub fn expect_pass(&mut self, timeout: Duration) -> String {
        self.proc.expect_pass(timeout)
    }

    /// The captured process, for everything else.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl ErlNodeBuilder {
    /// The cookie (default [`DEFAULT_COOKIE`]).
    pub fn cookie(mut self, cookie: &str) -> Self {
        cookie.clone_into(&mut self.cookie);
        self
    }

    /// One more argument for `erl`, e.g. `-kernel`, `net_ticktime`, `4`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Lets `global` connect and sync nodes as it does by default
    /// (`connect_all true`), for tests of global names; the default here is
    /// `-kernel connect_all false`.
    pub fn connect_all(mut self, on: bool) -> Self {
        self.connect_all = on;
        self
    }

    /// The Erlang expressions to run at start (`erl -eval`). Print `PASS ...`
    /// or `FAIL ...` lines with `io:format` and wait for them with
    /// [`ErlNode::expect_pass`]. The node keeps running after the snippet
    /// returns, until it is dropped or calls `halt()`.
    pub fn eval(mut self, code: &str) -> Self {
        self.eval = Some(code.to_owned());
        self
    }

    /// Starts the node. It does not wait for anything: wait for a line that
    /// the `eval` snippet prints.
    pub fn start(self) -> ErlNode {
        let node = node_name(&self.name);
        let mut cmd = Command::new(&erlang().erl);
        cmd.args(["-name", &node, "-setcookie", &self.cookie, "-noinput"])
            .args(if self.connect_all {
                &[][..]
            } else {
                &["-kernel", "connect_all", "false"][..]
            })
            .args(["-start_epmd", "false"])
            .args(&self.args)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            // erl writes crash dumps to the working directory otherwise.
            .env("ERL_CRASH_DUMP_SECONDS", "0");
        if let Some(code) = &self.eval {
            cmd.args(["-eval", code]);
        }
        ErlNode {
            proc: Proc::spawn(node.clone(), cmd),
            node,
            cookie: self.cookie,
        }
    }
}
