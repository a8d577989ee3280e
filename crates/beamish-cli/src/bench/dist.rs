//! The `dist` workload: echo round trips between two nodes over Erlang's
//! distribution protocol, measured the way `scripts/interop/throughput.escript`
//! measures them.
//!
//! A driving node sends `{SelfPid, Ref, I}` to the process registered as
//! `echo` on the node under test, which answers `{Ref, I}`. After a warm-up
//! of [`WARMUP_ROUND_TRIPS`], each of `rounds` rounds makes `n` round trips
//! with `window` requests in flight: every reply lets one more request go. A
//! reply counts whatever its order; one whose `I` is not the one after the
//! previous reply's counts as out of order. The figure is the best round's
//! round trips per second.
//!
//! Three pairs, each in its own `bench-one` child process. The line's
//! `runtime` names the echo node (the node under test), `peer` the driving
//! node:
//! - `runtime=beamish peer=beamish`: this child drives from a node started
//!   in-process ([`dist::start`]) against `beamish node` (this very
//!   executable) on a private port, whose embedded EPMD serves both;
//! - `runtime=erl peer=erl`: `escript throughput.escript erl_echo_nut.sh`,
//!   the erl↔erl baseline;
//! - `runtime=beamish peer=erl`: `escript throughput.escript "<beamish> node"`.
//!
//! The last two need Erlang/OTP (`erl`, `escript`, `epmd`) and `setsid` on
//! the `PATH`, and the escripts of the repository's `scripts/interop`
//! (found beside this executable, or in the source tree it was built from);
//! they run with a private `epmd` that dies with the child. [`erl_missing`]
//! says why they cannot run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use beamish::dist::{self, Atom, NodeConfig, Term};
use beamish::{Ref, Runtime as BeamishRuntime};

use super::{Args, Peer, Report, Runtime};

/// Round trips made before the timed rounds (as `throughput.escript`).
pub const WARMUP_ROUND_TRIPS: u64 = 1_000;

/// How long a round waits for the next reply before it gives up (as
/// `throughput.escript`).
const STALL: Duration = Duration::from_secs(30);

/// How long a node under test may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a private `epmd` may take to accept connections.
const EPMD_TIMEOUT: Duration = Duration::from_secs(10);

/// The cookie of both nodes of a beamish↔beamish run.
pub(super) const COOKIE: &str = "benchdist";

/// The escript that drives the erl-peered runs.
const THROUGHPUT: &str = "throughput.escript";

/// The erl echo node of the erl↔erl baseline.
const ERL_ECHO_NUT: &str = "erl_echo_nut.sh";

/// What must be on the `PATH` for the erl-peered runs: `erl` and `epmd` for
/// the nodes, `escript` for the driver, `setsid` for the escript's NUT.
const ERL_TOOLS: &[&str] = &["erl", "escript", "epmd", "setsid", "sh"];

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
struct Size {
    /// Round trips per round.
    n: u64,
    /// Requests in flight.
    window: u64,
    /// Timed rounds.
    rounds: u64,
    /// Scheduler threads of the driving beamish node.
    threads: usize,
    /// Scheduler threads of the beamish node under test.
    nut_threads: usize,
}

impl Size {
    fn from_args(args: &Args) -> Result<Size, String> {
        Ok(Size {
            n: args.num("n", 100_000)?,
            window: args.num("window", 100)?,
            rounds: args.num("rounds", 3)?,
            threads: threads(args.num("threads", 1)?),
            nut_threads: threads(args.num("nut_threads", 1)?),
        })
    }

    /// `n`, `window` and `rounds` as report keys.
    fn push_to(&self, r: &mut Report) {
        r.push("n", self.n);
        r.push("window", self.window);
        r.push("rounds", self.rounds);
    }
}

/// Scheduler threads for a `threads` key: 0 means one per core.
pub(super) fn threads(key: u64) -> usize {
    match key {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

/// Runs the pair (`rt` echoes, `peer` drives) and returns its result keys
/// (without `bench=`, `runtime=` and `peer=`).
pub fn run(rt: Runtime, peer: Peer, args: &Args) -> Result<Report, String> {
    let size = Size::from_args(args)?;
    match (rt, peer) {
        (Runtime::Beamish, Peer::Beamish) => beamish_pair(size),
        (Runtime::Beamish, Peer::Erl) => escript_pair(EchoNode::Beamish, size),
        (Runtime::Erl, Peer::Erl) => escript_pair(EchoNode::Erl, size),
        (rt, peer) => Err(format!(
            "no pair of a {} echo node and a {} peer",
            rt.name(),
            peer.name()
        )),
    }
}

// ------------------------------------------------------------ beamish↔beamish

/// beamish↔beamish: `beamish node` echoes, a node in this process drives.
fn beamish_pair(size: Size) -> Result<Report, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
    let port = free_port()?;
    let tag = std::process::id();
    let nut_name = format!("bench_echo_{tag}@127.0.0.1");
    // The node under test starts first: it finds no EPMD on `port` and
    // starts its embedded one, which this node then registers with.
    let nut = NodeProcess::start(&exe, &nut_name, port, size.nut_threads, &[])?;
    let rt = BeamishRuntime::builder()
        .worker_threads(size.threads)
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    let result = rt.block_on(async move {
        let config = NodeConfig::new(format!("bench_drive_{tag}@127.0.0.1"), COOKIE)
            .epmd_port(port)
            .embedded_epmd(false);
        dist::start(config)
            .await
            .map_err(|e| format!("cannot start this node: {e}"))?;
        let nut = Atom::new(&nut_name).map_err(|e| format!("bad node name {nut_name}: {e}"))?;
        let echo = Atom::new("echo").map_err(|e| e.to_string())?;
        throughput(echo, nut, WARMUP_ROUND_TRIPS, size.window).await?;
        let mut results = Vec::new();
        for _ in 0..size.rounds {
            results.push(throughput(echo, nut, size.n, size.window).await?);
        }
        Ok::<_, String>(results)
    });
    // Never shut the runtime down: its connection processes would only
    // delay the report; the OS process exits right after it.
    std::mem::forget(rt);
    drop(nut);
    let results = result.map_err(|reason| format!("driver process ended: {reason}"))??;
    let mut report = rounds_report(&results);
    size.push_to(&mut report);
    report.push("threads", size.threads);
    report.push("nut_threads", size.nut_threads);
    Ok(report)
}

/// One round: `n` round trips to `{echo, nut}` with `window` in flight.
/// Returns round trips per second (rounded as `throughput.escript` does) and
/// the replies that came out of order.
async fn throughput(echo: Atom, nut: Atom, n: u64, window: u64) -> Result<(u64, u64), String> {
    let me = Term::Pid(beamish::self_pid());
    let tag = Term::from(Ref::new());
    let send = |i: u64| {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        dist::send_named(
            echo,
            nut,
            Term::Tuple(vec![me.clone(), tag.clone(), Term::Int(i)]),
        );
    };
    let t0 = Instant::now();
    let first = window.min(n);
    for i in 1..=first {
        send(i);
    }
    let (mut next, mut got, mut expect, mut out_of_order) = (first + 1, 0u64, 1u64, 0u64);
    while got < n {
        let reply = beamish::receive_if(|t: &Term| reply_index(t, &tag).is_some())
            .timeout(STALL)
            .await
            .ok_or_else(|| format!("stalled after {got} of {n} replies"))?;
        let j = reply_index(&reply, &tag).unwrap_or(0);
        if j != expect {
            out_of_order += 1;
        }
        if next <= n {
            send(next);
        }
        next += 1;
        got += 1;
        expect = j.wrapping_add(1);
    }
    let us = t0.elapsed().as_micros().max(1);
    let per_s = (u128::from(n) * 1_000_000 + us / 2) / us;
    Ok((u64::try_from(per_s).unwrap_or(u64::MAX), out_of_order))
}

/// `I` of a reply `{Tag, I}`; `None` for anything else.
fn reply_index(t: &Term, tag: &Term) -> Option<u64> {
    match t {
        Term::Tuple(items) => match &items[..] {
            [r, Term::Int(i)] if r == tag => u64::try_from(*i).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// `roundtrips_per_s` (the best round), `out_of_order` (all rounds) and
/// `all_per_s` (each round, comma-separated).
fn rounds_report(results: &[(u64, u64)]) -> Report {
    let best = results.iter().map(|r| r.0).max().unwrap_or(0);
    let out_of_order: u64 = results.iter().map(|r| r.1).sum();
    let all: Vec<String> = results.iter().map(|r| r.0.to_string()).collect();
    Report::new()
        .with("roundtrips_per_s", best)
        .with("out_of_order", out_of_order)
        .with("all_per_s", all.join(","))
}

/// A `beamish node` child with the `echo` service. It exits when its stdin
/// closes, so it dies with this process however this process ends; dropping
/// this kills it at once.
pub(super) struct NodeProcess {
    child: Child,
    /// Held open: the node exits when it closes.
    _stdin: ChildStdin,
}

impl NodeProcess {
    /// Starts `exe node` as `name` with `threads` schedulers, EPMD on
    /// `epmd_port` and the options `extra`, and waits for its `ready`.
    pub(super) fn start(
        exe: &Path,
        name: &str,
        epmd_port: u16,
        threads: usize,
        extra: &[&str],
    ) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .args(["node", "--name", name, "--cookie", COOKIE, "--exit-on-eof"])
            .args(extra)
            .arg("--epmd-port")
            .arg(epmd_port.to_string())
            .arg("--threads")
            .arg(threads.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the echo node: {e}"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !ready && line.trim() == "ready" {
                    ready = true;
                    let _ = tx.send(true);
                }
            }
            if !ready {
                let _ = tx.send(false);
            }
        });
        let mut node = NodeProcess {
            child,
            _stdin: stdin,
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(true) => Ok(node),
            Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = node.child.wait().map(|s| s.to_string());
                Err(format!(
                    "the echo node ended before it was ready ({})",
                    status.unwrap_or_else(|e| e.to_string())
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the echo node was not ready within {} s",
                READY_TIMEOUT.as_secs()
            )),
        }
    }
}

impl NodeProcess {
    /// The node's OS process id.
    pub(super) fn os_pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (the OS picks it).
pub(super) fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

// ------------------------------------------------------------- erl-peered runs

/// Which node `throughput.escript` drives.
#[derive(Clone, Copy, Debug)]
enum EchoNode {
    /// `erl_echo_nut.sh`.
    Erl,
    /// `beamish node`.
    Beamish,
}

/// Why the erl-peered runs cannot run here, if they cannot: a tool missing
/// from the `PATH` or the escripts not found.
pub fn erl_missing() -> Option<String> {
    if let Some(tool) = ERL_TOOLS.iter().find(|t| find_in_path(t).is_none()) {
        return Some(format!("{tool} not found in PATH (Erlang/OTP is needed)"));
    }
    if interop_dir().is_none() {
        return Some(format!(
            "scripts/interop/{THROUGHPUT} not found beside this executable nor in its source tree"
        ));
    }
    None
}

/// `escript throughput.escript NUT_CMD n window rounds`, against a private
/// `epmd`.
fn escript_pair(node: EchoNode, size: Size) -> Result<Report, String> {
    if let Some(why) = erl_missing() {
        return Err(why);
    }
    let dir = interop_dir().ok_or("scripts/interop not found")?;
    let nut_cmd = match node {
        EchoNode::Erl => shell_word(&dir.join(ERL_ECHO_NUT))?,
        EchoNode::Beamish => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
            format!("{} node --threads {}", shell_word(&exe)?, size.nut_threads)
        }
    };
    let args = [
        nut_cmd,
        size.n.to_string(),
        size.window.to_string(),
        size.rounds.to_string(),
    ];
    let stdout = run_escript(THROUGHPUT, &args)?;
    let results = parse_escript(&stdout);
    if results.len() as u64 != size.rounds {
        return Err(format!(
            "{THROUGHPUT} printed {} rounds of {}",
            results.len(),
            size.rounds
        ));
    }
    let mut report = rounds_report(&results);
    size.push_to(&mut report);
    if let EchoNode::Beamish = node {
        report.push("nut_threads", size.nut_threads);
    }
    Ok(report)
}

/// `escript scripts/interop/<script> args...` against a private `epmd`:
/// its stdout, or why it failed (with its last line of output).
pub(super) fn run_escript(script: &str, args: &[String]) -> Result<String, String> {
    run_script("interop", script, args)
}

/// [`run_escript`] for `scripts/<dir>/<script>`.
pub(super) fn run_script(dir: &str, script: &str, args: &[String]) -> Result<String, String> {
    let path = match dir {
        "interop" => interop_file(script)?,
        _ => {
            let scripts = interop_dir()
                .and_then(|d| d.parent().map(Path::to_path_buf))
                .ok_or("scripts/ not found")?;
            let path = scripts.join(dir).join(script);
            if !path.is_file() {
                return Err(format!("{} not found", path.display()));
            }
            path
        }
    };
    let port = free_port()?;
    let epmd = Epmd::start(port)?;
    let out = Command::new("escript")
        .arg(path)
        .args(args)
        .env("ERL_EPMD_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run escript: {e}"))?;
    drop(epmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!("{script} failed ({}): {last}", out.status));
    }
    Ok(stdout)
}

/// The rounds of `throughput.escript`'s output: its
/// `roundtrips_per_s=R out_of_order=O` lines.
fn parse_escript(stdout: &str) -> Vec<(u64, u64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let r = words
                .next()?
                .strip_prefix("roundtrips_per_s=")?
                .parse()
                .ok()?;
            let o = words.next()?.strip_prefix("out_of_order=")?.parse().ok()?;
            Some((r, o))
        })
        .collect()
}

/// `path` as one word of the `sh -c '...'` command line the escript builds:
/// in double quotes, so it must not hold characters that would end or
/// expand them (nor a single quote, which would end the escript's quoting).
pub(super) fn shell_word(path: &Path) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if s.contains(['\'', '"', '$', '`', '\\', '\n']) {
        return Err(format!(
            "{s}: quotes, $, ` and \\ are not supported in this path"
        ));
    }
    Ok(format!("\"{s}\""))
}

/// The first `tool` on the `PATH` that is an executable file.
fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = p.metadata() else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// The file `name` of the repository's `scripts/interop`.
pub(super) fn interop_file(name: &str) -> Result<PathBuf, String> {
    let dir = interop_dir().ok_or("scripts/interop not found")?;
    let path = dir.join(name);
    match path.is_file() {
        true => Ok(path),
        false => Err(format!("{} not found", path.display())),
    }
}

/// The repository's `scripts/interop`: beside this executable (in an
/// ancestor directory, as for `target/release/beamish`), else in the source
/// tree this executable was built from.
fn interop_dir() -> Option<PathBuf> {
    let has_escript = |d: &Path| d.join(THROUGHPUT).is_file() && d.join(ERL_ECHO_NUT).is_file();
    let beside_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|d| d.join("scripts").join("interop"))
            .find(|d| has_escript(d))
    });
    let source = || {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/interop");
        has_escript(&d).then_some(d)
    };
    let dir = beside_exe.or_else(source)?;
    Some(dir.canonicalize().unwrap_or(dir))
}

/// A private `epmd` on `127.0.0.1:<port>`, under a shell that kills it when
/// its stdin closes: when this is dropped, and also when this process dies
/// without dropping it (a `bench` timeout kills it outright).
pub(super) struct Epmd {
    sh: Child,
}

impl Epmd {
    pub(super) fn start(port: u16) -> Result<Epmd, String> {
        let mut sh = Command::new("sh")
            .arg("-c")
            .arg(r#"epmd -port "$1" -address 127.0.0.1 & e=$!; cat >/dev/null; kill "$e" 2>/dev/null; wait"#)
            .arg("sh")
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start epmd: {e}"))?;
        let t0 = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if answers_names(addr) {
                return Ok(Epmd { sh });
            }
            if let Ok(Some(status)) = sh.try_wait() {
                return Err(format!("epmd on port {port} ended at once ({status})"));
            }
            if t0.elapsed() > EPMD_TIMEOUT {
                let epmd = Epmd { sh };
                drop(epmd);
                return Err(format!("epmd on port {port} did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether an EPMD at `addr` answers a `NAMES_REQ` (a bare connection that
/// sends nothing would make it log a partial packet).
fn answers_names(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = Vec::new();
    s.write_all(&[0, 1, b'n']).is_ok() && s.read_to_end(&mut reply).is_ok() && reply.len() >= 4
}

impl Drop for Epmd {
    fn drop(&mut self) {
        // End of file for `cat`: the shell kills epmd and waits for it.
        drop(self.sh.stdin.take());
        let _ = self.sh.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escript_output() {
        let out = "roundtrips_per_s=41000 out_of_order=0\nroundtrips_per_s=43000 out_of_order=2\n\
                   best_roundtrips_per_s=43000\n";
        let r = parse_escript(out);
        assert_eq!(r, [(41000, 0), (43000, 2)]);
        assert_eq!(
            rounds_report(&r).line("dist", "erl"),
            "bench=dist runtime=erl roundtrips_per_s=43000 out_of_order=2 all_per_s=41000,43000"
        );
        assert!(parse_escript("stalled after 5 of 10 replies\n").is_empty());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_word(Path::new("/a b/beamish")).unwrap(),
            "\"/a b/beamish\""
        );
        assert!(shell_word(Path::new("/a'b")).is_err());
        assert!(shell_word(Path::new("/a$b")).is_err());
    }

    #[test]
    fn replies() {
        let tag = Term::Int(7);
        let reply = Term::Tuple(vec![Term::Int(7), Term::Int(3)]);
        assert_eq!(reply_index(&reply, &tag), Some(3));
        let other = Term::Tuple(vec![Term::Int(8), Term::Int(3)]);
        assert_eq!(reply_index(&other, &tag), None);
        assert_eq!(reply_index(&Term::Int(3), &tag), None);
    }
}
