//! The `failover` workload: a singleton service on a cluster of three
//! nodes (OS processes), called at `rate` calls per second by a client on a
//! fourth node while the node that runs it is killed with SIGKILL, `kills`
//! times over. Each kill's *window* is the time from the client's nodedown
//! of that node to its first successful call answered by another node;
//! *failed* counts the calls that failed in between. With `heal=1`, one
//! more round stops the node that runs it (SIGSTOP) until the others have
//! taken over, continues it (SIGCONT), and measures the time until every
//! node sees one and the same instance (`heal_ms`).
//!
//! - beamish: three `beamish node --bench-services --peers ...` (the
//!   `fo_counter` [`Singleton`](beamish::cluster::Singleton), see
//!   `bench_services`) and the client in this process.
//! - erl: OTP's distributed applications, `scripts/failover/otp_failover.escript`
//!   (three erl nodes with `-kernel distributed [{fo_app, 0, [A, {B, C}]}]`,
//!   the client in the escript).
//!
//! Killed nodes are started again (same name) before the next round.

use std::time::{Duration, Instant};

use beamish::dist::gen_protocol::{self, Dest};
use beamish::dist::{self, Atom, NodeConfig, NodeDown, Term};
use beamish::{Pid, Runtime as BeamishRuntime};

use super::dist::{COOKIE, Epmd, NodeProcess, free_port, run_script};
use super::{Args, Peer, Report, Runtime};
use crate::bench_services::FO_COUNTER;

/// The escript of the erl↔erl run.
pub const OTP_FAILOVER: &str = "otp_failover.escript";

/// The keys both runs report (the beamish run adds `all_window_ms`).
const KEYS: [&str; 8] = [
    "window_min_ms",
    "window_median_ms",
    "window_max_ms",
    "failed_median",
    "failed_max",
    "kills",
    "rate",
    "heal_ms",
];

/// How long one call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug)]
struct Size {
    kills: u64,
    rate: u64,
    ticktime: u64,
    heal: bool,
}

/// Runs the workload for the pair.
pub fn run(rt: Runtime, peer: Peer, args: &Args) -> Result<Report, String> {
    let size = Size {
        kills: args.num("kills", 20)?,
        rate: args.num("rate", 1_000)?.max(1),
        ticktime: args.num("ticktime", 4)?.max(1),
        heal: args.num("heal", 1)? != 0,
    };
    match (rt, peer) {
        (Runtime::Beamish, Peer::Beamish) => beamish(size),
        (Runtime::Erl, Peer::Erl) => erl(size),
        (rt, peer) => Err(format!(
            "failover runs beamish↔beamish and erl↔erl only, not {}↔{}",
            rt.name(),
            peer.name()
        )),
    }
}

fn erl(size: Size) -> Result<Report, String> {
    let args = [
        format!("kills={}", size.kills),
        format!("rate={}", size.rate),
        format!("ticktime={}", size.ticktime),
        format!("heal={}", u8::from(size.heal)),
    ];
    let out = run_script("failover", OTP_FAILOVER, &args)?;
    let line = out
        .lines()
        .find(|l| l.starts_with("bench=failover"))
        .ok_or_else(|| format!("{OTP_FAILOVER} printed no summary:\n{out}"))?;
    let mut report = Report::new();
    for key in KEYS {
        let value = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("{OTP_FAILOVER}: no {key} in {line:?}"))?;
        report.push(key, value);
    }
    Ok(report)
}

/// One kill's figures.
struct Kill {
    window_ms: f64,
    failed: u64,
}

fn beamish(size: Size) -> Result<Report, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
    let port = free_port()?;
    // A real EPMD: an embedded one would die with the first node killed.
    let _epmd = Epmd::start(port)?;
    let tag = std::process::id();
    let names: Vec<String> = (0..3)
        .map(|k| format!("bench_fo{k}_{tag}@127.0.0.1"))
        .collect();
    let atoms: Vec<Atom> = names
        .iter()
        .map(|n| Atom::new(n).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let tick = size.ticktime.to_string();
    let start = move |i: usize| -> Result<NodeProcess, String> {
        let peers: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.as_str())
            .collect();
        let peers = peers.join(",");
        NodeProcess::start(
            &exe,
            &names[i],
            port,
            1,
            &["--bench-services", "--ticktime", &tick, "--peers", &peers],
        )
    };
    let index = |node: Atom| {
        atoms
            .iter()
            .position(|a| *a == node)
            .ok_or_else(|| format!("{node} is not a node of the cluster"))
    };
    let mut nodes: Vec<NodeProcess> = (0..3).map(&start).collect::<Result<_, _>>()?;
    let rt = BeamishRuntime::builder()
        .worker_threads(1)
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    let handle = rt.handle();
    let ticktime = Duration::from_secs(size.ticktime);
    let peers = atoms.clone();
    on_client(&handle, async move {
        let config = NodeConfig::new(format!("bench_fo_client_{tag}@127.0.0.1"), COOKIE)
            .epmd_port(port)
            .embedded_epmd(false)
            .net_ticktime(ticktime);
        dist::start(config).await.map_err(|e| e.to_string())?;
        beamish::global::start().await.map_err(|e| e.to_string())?;
        for n in &peers {
            dist::connect_node(*n).await.map_err(|e| e.to_string())?;
        }
        settle(Duration::from_secs(30)).await
    })?;
    let rate = size.rate;
    let mut kills = Vec::new();
    for _ in 0..size.kills {
        let victim = on_client(&handle, runner())?;
        let i = index(victim)?;
        let os_pid = nodes[i].os_pid();
        kills.push(on_client(&handle, measure(victim, os_pid, "KILL", rate))?);
        nodes[i] = start(i)?;
        on_client(&handle, async move {
            dist::connect_node(victim)
                .await
                .map_err(|e| e.to_string())?;
            settle(Duration::from_secs(30)).await
        })?;
    }
    let heal_ms = match size.heal {
        true => {
            let victim = on_client(&handle, runner())?;
            let os_pid = nodes[index(victim)?].os_pid();
            let taken = on_client(&handle, measure(victim, os_pid, "STOP", rate));
            signal(os_pid, "CONT")?;
            taken?;
            let all = atoms.clone();
            let ms = on_client(&handle, async move {
                converge(&all, Duration::from_secs(30)).await
            })?;
            format!("{ms:.1}")
        }
        false => "-1".into(),
    };
    std::mem::forget(rt);
    drop(nodes);
    let mut windows: Vec<f64> = kills.iter().map(|k| k.window_ms).collect();
    windows.sort_by(f64::total_cmp);
    let mut failed: Vec<u64> = kills.iter().map(|k| k.failed).collect();
    failed.sort_unstable();
    let ms = |v: Option<&f64>| format!("{:.1}", v.copied().unwrap_or(0.0));
    let all: Vec<String> = kills
        .iter()
        .map(|k| format!("{:.1}", k.window_ms))
        .collect();
    Ok(Report::new()
        .with("window_min_ms", ms(windows.first()))
        .with("window_median_ms", ms(windows.get(windows.len() / 2)))
        .with("window_max_ms", ms(windows.last()))
        .with(
            "failed_median",
            failed.get(failed.len() / 2).copied().unwrap_or(0),
        )
        .with("failed_max", failed.last().copied().unwrap_or(0))
        .with("kills", size.kills)
        .with("rate", size.rate)
        .with("heal_ms", heal_ms)
        .with("all_window_ms", all.join(",")))
}

/// Runs `step` as a process of the client's runtime.
fn on_client<T: Send + 'static>(
    handle: &beamish::Handle,
    step: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    handle
        .block_on(step)
        .map_err(|r| format!("client ended: {r}"))?
}

/// `kill -SIG pid`.
fn signal(os_pid: u32, sig: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(os_pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("kill -{sig} {os_pid} failed")),
    }
}

fn counter_name() -> Term {
    Term::Atom(Atom::new(FO_COUNTER).unwrap_or(Atom::UNDEFINED))
}

/// `gen_server:call({global, fo_counter}, where, 100)`: the node that
/// answered.
async fn call_where() -> Option<Atom> {
    let pid = beamish::global::whereis_name(&counter_name())?;
    let reply = gen_protocol::call(
        &Dest::Pid(pid),
        Term::Atom(Atom::new("where").ok()?),
        Some(CALL_TIMEOUT),
    )
    .await;
    match reply {
        Ok(Term::Atom(n)) => Some(n),
        _ => None,
    }
}

/// The node that runs the counter now.
async fn runner() -> Result<Atom, String> {
    let t0 = Instant::now();
    loop {
        if let Some(n) = call_where().await {
            return Ok(n);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the counter does not answer".into());
        }
        beamish::sleep(Duration::from_millis(10)).await;
    }
}

/// Until every node agrees on one counter and it answers the same for
/// 500 ms.
async fn settle(bound: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    let mut steady: Option<(Atom, Instant)> = None;
    loop {
        match (call_where().await, steady) {
            (Some(n), Some((m, since))) if n == m => {
                if since.elapsed() >= Duration::from_millis(500) {
                    return Ok(());
                }
            }
            (Some(n), _) => steady = Some((n, Instant::now())),
            (None, _) => steady = None,
        }
        if t0.elapsed() > bound {
            return Err("the cluster did not settle".into());
        }
        beamish::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `sig` to `victim` (OS process `os_pid`), then calls at `rate`
/// per second until one answered by another node comes after our nodedown
/// of `victim`.
async fn measure(victim: Atom, os_pid: u32, sig: &str, rate: u64) -> Result<Kill, String> {
    dist::monitor_node(victim, true);
    signal(os_pid, sig)?;
    let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let t_start = Instant::now();
    let mut down: Option<Instant> = None;
    let mut failed = 0;
    let mut next = Instant::now();
    loop {
        if down.is_none()
            && beamish::receive_if(move |d: &NodeDown| d.node == victim)
                .timeout(Duration::ZERO)
                .await
                .is_some()
        {
            down = Some(Instant::now());
        }
        match call_where().await {
            Some(n) if n != victim => {
                let window = match down {
                    Some(d) => d.elapsed(),
                    // Answered before our own nodedown (the others saw the
                    // node go first): the window closes with the nodedown.
                    None => {
                        beamish::receive_if(move |d: &NodeDown| d.node == victim)
                            .timeout(Duration::from_secs(60))
                            .await
                            .ok_or_else(|| format!("no nodedown of {victim}"))?;
                        Duration::ZERO
                    }
                };
                return Ok(Kill {
                    window_ms: window.as_secs_f64() * 1e3,
                    failed,
                });
            }
            _ => failed += 1,
        }
        if t_start.elapsed() > Duration::from_secs(120) {
            return Err(format!("no other node took over from {victim}"));
        }
        next += period;
        let now = Instant::now();
        if next > now {
            beamish::sleep(next - now).await;
        } else {
            next = now;
        }
    }
}

/// Waits until every node of `nodes` (asked with erpc) and this one see
/// one and the same counter; the milliseconds that took.
async fn converge(nodes: &[Atom], bound: Duration) -> Result<f64, String> {
    let t0 = Instant::now();
    let name = counter_name();
    loop {
        let mut views: Vec<Option<Pid>> = vec![beamish::global::whereis_name(&name)];
        for n in nodes {
            let v = beamish::rpc::call_timeout(
                *n,
                "global",
                "whereis_name",
                vec![name.clone()],
                Duration::from_secs(2),
            )
            .await;
            views.push(match v {
                Ok(Term::Pid(p)) => Some(p),
                _ => None,
            });
        }
        if views[0].is_some() && views.iter().all(|v| *v == views[0]) {
            return Ok(t0.elapsed().as_secs_f64() * 1e3);
        }
        if t0.elapsed() > bound {
            return Err(format!("no single instance after {bound:?}: {views:?}"));
        }
        beamish::sleep(Duration::from_millis(10)).await;
    }
}
