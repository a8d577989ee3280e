//! The workloads on beamish processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use beamish::otp::{
    self, ChildSpec, Flow, GenServer, Init, Reply, ReplyTo, Strategy, Supervisor, SupervisorFlags,
};
use beamish::{Down, Pid, Reason, Runtime};

use super::measure::*;
use super::{Args, Report};

/// Runs one workload on beamish and returns its result keys (without bench=
/// and runtime=).
pub fn run(workload: &str, args: &Args) -> Result<Report, String> {
    match workload {
        "spawn" => {
            let n = args.num("n", 1_000_000)?;
            on_beamish(spawn(n))
        }
        "skynet" => {
            let (leaves, div) = (args.num("leaves", 1_000_000)?, args.num("div", 10)?);
            on_beamish(skynet(leaves, div))
        }
        "ring" => {
            let (procs, hops) = (args.num("procs", 10_000)?, args.num("hops", 10_000_000)?);
            let t = on_beamish(async move { Ok(rings(1, procs, hops).await) })?;
            Ok(Report::new()
                .with("ns_per_hop", f1(ns_per(t, hops)))
                .with("procs", procs))
        }
        "pingpong" => {
            let n = args.num("n", 1_000_000)?;
            let t = on_beamish(async move { Ok(rings(1, 2, 2 * n).await) })?;
            Ok(Report::new().with("ns_per_roundtrip", f1(ns_per(t, n))))
        }
        "pingpong_par" => {
            let (pairs, rounds) = (args.num("pairs", 1_000)?, args.num("rounds", 1_000)?);
            let t = on_beamish(async move { Ok(rings(pairs, 2, 2 * rounds).await) })?;
            Ok(Report::new().with("ns_per_roundtrip", f1(ns_per(t, pairs * rounds))))
        }
        "fanin" => {
            let (senders, msgs) = (args.num("senders", 4)?, args.num("msgs", 1_000_000)?);
            on_beamish(fanin(senders, msgs))
        }
        "fairness" => {
            let procs = args.num("procs", 8)?;
            let beats = args.num("beats", 2_000)?;
            let sleep = Duration::from_millis(args.num("sleep_ms", 1)?);
            on_beamish(fairness(procs, beats, sleep))
        }
        "runaway" => {
            let procs = args.num("procs", 8)?;
            let sleep = Duration::from_millis(args.num("sleep_ms", 1)?);
            let spin = Duration::from_millis(args.num("runaway_ms", 2_000)?);
            on_beamish(runaway(procs, sleep, spin))
        }
        "link_cascade" => {
            let n = args.num("n", 100_000)?;
            on_beamish(link_cascade(n))
        }
        "call" => {
            let n = args.num("n", 1_000_000)?;
            on_beamish(call(n))
        }
        "restart" => {
            let n = args.num("n", 100_000)?;
            let period = args.num("period", 1)?;
            // 0: high enough for the run (WORKLOADS.md), i.e. n.
            let intensity = match args.num("intensity", 0)? {
                0 => n,
                i => i,
            };
            on_beamish(restart(n, period, intensity))
        }
        "trace" => {
            let n = args.num("n", 1_000_000)?;
            let rate = args.num("rate", 1_000)?;
            on_beamish(super::observe::trace(n, rate))
        }
        other => Err(format!("{other}: no beamish implementation")),
    }
}

/// Runs `driver` as the root process of a fresh runtime (one scheduler
/// thread per core) and returns its result.
fn on_beamish<T, F>(driver: F) -> Result<T, String>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let rt = Runtime::new().map_err(|e| format!("cannot build the runtime: {e}"))?;
    let result = rt.block_on(driver);
    // Never shut the runtime down: processes still busy (fairness) or
    // blocked (rings) would only delay the report; the OS process exits
    // right after it.
    std::mem::forget(rt);
    result.map_err(|reason| format!("driver process ended: {reason}"))?
}

/// Receives `n` `Down` messages.
async fn wait_down(n: u64) {
    for _ in 0..n {
        beamish::receive::<Down>().await;
    }
}

struct Stop;

async fn spawn(n: u64) -> Result<Report, String> {
    let started = Arc::new(AtomicU64::new(0));
    let mut pids: Vec<Pid> = Vec::with_capacity(n as usize);
    let rss0 = rss_bytes()?;

    let t0 = Instant::now();
    for _ in 0..n {
        let started = started.clone();
        pids.push(beamish::spawn(async move {
            started.fetch_add(1, Relaxed);
            beamish::receive::<Stop>().await;
        }));
    }
    let spawn_time = t0.elapsed();

    while started.load(Relaxed) < n {
        beamish::sleep(Duration::from_millis(1)).await;
    }
    let ready_time = t0.elapsed();
    beamish::sleep(SETTLE).await;
    let rss1 = rss_bytes()?;

    for &pid in &pids {
        beamish::monitor(pid);
    }
    let t1 = Instant::now();
    for &pid in &pids {
        pid.send(Stop);
    }
    wait_down(n).await;
    let teardown = t1.elapsed();

    Ok(Report::new()
        .with("spawn_ns", f1(ns_per(spawn_time, n)))
        .with(
            "bytes_per_proc",
            f0(rss1.saturating_sub(rss0) as f64 / n as f64),
        )
        .with("teardown_ns", f1(ns_per(teardown, n)))
        .with("ready_ns", f1(ns_per(ready_time, n)))
        .with("n", n))
}

/// A skynet node: a leaf replies its number; an inner node spawns `div`
/// children, sums their replies and replies up. A plain fn (not an async
/// fn) so the recursion needs no box.
fn skynet_node(parent: Pid, num: u64, size: u64, div: u64) {
    beamish::spawn(async move {
        if size == 1 {
            parent.send(num);
            return;
        }
        let me = beamish::self_pid();
        let child = size / div;
        for i in 0..div {
            skynet_node(me, num + i * child, child, div);
        }
        let mut sum = 0u64;
        for _ in 0..div {
            sum += beamish::receive::<u64>().await;
        }
        parent.send(sum);
    });
}

async fn skynet(leaves: u64, div: u64) -> Result<Report, String> {
    let t0 = Instant::now();
    skynet_node(beamish::self_pid(), 0, leaves, div);
    let sum = beamish::receive::<u64>().await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let expected = skynet_expected(leaves);
    if sum != expected {
        return Err(format!("skynet: sum {sum} != {expected}"));
    }
    Ok(Report::new().with("ms", f1(ms)).with("leaves", leaves))
}

struct Next(Pid);
struct RingDone;

/// `count` rings of `size` processes each; one token per ring makes `hops`
/// hops in total. pingpong is one ring of two, pingpong_par many rings of
/// two. Returns the wall time from the first injection to the last ring's end.
async fn rings(count: u64, size: u64, hops: u64) -> Duration {
    let done = beamish::self_pid();
    let mut heads = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let pids: Vec<Pid> = (0..size)
            .map(|_| {
                beamish::spawn(async move {
                    let Next(next) = beamish::receive::<Next>().await;
                    loop {
                        let left = beamish::receive::<u64>().await;
                        if left == 0 {
                            done.send(RingDone);
                        } else {
                            next.send(left - 1);
                        }
                    }
                })
            })
            .collect();
        for (i, pid) in pids.iter().enumerate() {
            pid.send(Next(pids[(i + 1) % pids.len()]));
        }
        heads.push(pids[0]);
    }
    beamish::sleep(WARMUP).await;
    let t0 = Instant::now();
    for head in &heads {
        head.send(hops);
    }
    for _ in 0..count {
        beamish::receive::<RingDone>().await;
    }
    t0.elapsed()
}

struct FaninDone(u64);

async fn fanin(senders: u64, msgs: u64) -> Result<Report, String> {
    let total = senders * msgs;
    let root = beamish::self_pid();
    let receiver = beamish::spawn(async move {
        let mut count = 0u64;
        while count < total {
            beamish::receive::<u64>().await;
            count += 1;
        }
        root.send(FaninDone(count));
    });
    beamish::sleep(WARMUP).await;
    let t0 = Instant::now();
    for _ in 0..senders {
        beamish::spawn(async move {
            for i in 0..msgs {
                receiver.send(i);
            }
        });
    }
    let FaninDone(got) = beamish::receive::<FaninDone>().await;
    let t = t0.elapsed();
    if got != total {
        return Err(format!("fanin: received {got} of {total} messages"));
    }
    Ok(Report::new()
        .with("ns_per_msg", f1(ns_per(t, total)))
        .with("msgs", total))
}

/// Starts `procs` CPU-bound processes that run ~1 µs work units forever,
/// spending one reduction per unit (the runtime's cheapest yield point).
/// Returns the calibrated iterations per unit.
fn start_busy(procs: u64) -> u64 {
    let iters = calibrate_unit();
    for p in 0..procs {
        beamish::spawn(async move {
            let mut x = p;
            loop {
                x = work_unit(iters, x);
                beamish::reduce(1).await;
            }
        });
    }
    iters
}

struct Lateness(Result<Vec<f64>, String>);

async fn fairness(procs: u64, beats: u64, sleep: Duration) -> Result<Report, String> {
    let iters = start_busy(procs);
    let root = beamish::self_pid();
    beamish::spawn(async move {
        let mut late = Vec::with_capacity(beats as usize);
        for _ in 0..beats {
            let t = Instant::now();
            beamish::sleep(sleep).await;
            late.push(lateness_us(t, Instant::now(), sleep));
        }
        root.send(Lateness(Ok(late)));
    });
    let Lateness(late) = beamish::receive::<Lateness>().await;
    let mut report = lateness_keys(late?, true)?;
    report.push("procs", procs);
    report.push("unit_iters", iters);
    Ok(report)
}

async fn runaway(procs: u64, sleep: Duration, spin: Duration) -> Result<Report, String> {
    let iters = start_busy(procs);
    let window = Arc::new(RunawayWindow::default());
    let root = beamish::self_pid();
    {
        let window = window.clone();
        beamish::spawn(async move {
            let mut sleeps = Vec::new();
            loop {
                let asleep = Instant::now();
                beamish::sleep(sleep).await;
                sleeps.push((asleep, Instant::now()));
                if window.ended_before(asleep) {
                    break;
                }
            }
            root.send(Lateness(window.lateness_during(&sleeps, sleep)));
        });
    }
    beamish::sleep(RUNAWAY_LEAD).await;
    beamish::spawn(async move { window.spin(spin, iters) });
    let Lateness(late) = beamish::receive::<Lateness>().await;
    let mut report = lateness_keys(late?, false)?;
    report.push("procs", procs);
    report.push("unit_iters", iters);
    Ok(report)
}

struct Tail(Pid);
struct Die(Reason);

/// One link of the chain: spawned linked to the previous one; the last
/// reports itself to the root. A plain fn so the recursion needs no box.
fn chain(k: u64, root: Pid) -> Pid {
    beamish::spawn_link(async move {
        if k == 0 {
            root.send(Tail(beamish::self_pid()));
        } else {
            chain(k - 1, root);
        }
        let Die(reason) = beamish::receive::<Die>().await;
        beamish::exit(reason).await
    })
}

async fn link_cascade(n: u64) -> Result<Report, String> {
    if n < 2 {
        return Err("link_cascade needs n >= 2".into());
    }
    let root = beamish::self_pid();
    // The head is not linked to the root (the root must survive the crash).
    let head = beamish::spawn(async move {
        chain(n - 2, root);
        let Die(reason) = beamish::receive::<Die>().await;
        beamish::exit(reason).await
    });
    let Tail(tail) = beamish::receive::<Tail>().await;
    let mref = beamish::monitor(tail);
    beamish::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    head.send(Die(Reason::other("crash")));
    let down = beamish::receive_if(move |d: &Down| d.monitor == mref).await;
    let ns = t0.elapsed().as_nanos() as f64;
    if down.reason != Reason::other("crash") {
        return Err(format!("tail died with {} instead of crash", down.reason));
    }
    Ok(Report::new()
        .with("ms", f1(ns / 1e6))
        .with("ns_per_link", f1(ns / (n - 1) as f64))
        .with("n", n))
}

/// The `call` workload's server: answers `Ping` with `Pong`.
struct PingServer;

struct Ping;

#[derive(Debug, PartialEq)]
struct Pong;

impl GenServer for PingServer {
    type Call = Ping;
    type Reply = Pong;
    type Cast = ();

    async fn handle_call(&mut self, _: Ping, _: ReplyTo<Pong>) -> Reply<Pong> {
        Reply::reply(Pong)
    }
}

async fn call(n: u64) -> Result<Report, String> {
    let server = otp::start_link(PingServer)
        .await
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let t0 = Instant::now();
    for _ in 0..n {
        server
            .call(Ping)
            .await
            .map_err(|e| format!("call failed: {e}"))?;
    }
    let t = t0.elapsed();
    Ok(Report::new()
        .with("ns_per_call", f1(ns_per(t, n)))
        .with("n", n))
}

/// The `restart` workload's child: a GenServer that stops with reason
/// `crash` right after its `init` returned, until the last start.
struct Crasher {
    crash: bool,
}

impl GenServer for Crasher {
    type Call = ();
    type Reply = ();
    type Cast = ();

    async fn init(&mut self) -> Init {
        if self.crash {
            Init::Continue(beamish::Message::new(()))
        } else {
            Init::Ok
        }
    }

    async fn handle_call(&mut self, _: (), _: ReplyTo<()>) -> Reply<()> {
        Reply::reply(())
    }

    async fn handle_continue(&mut self, _: beamish::Message) -> Flow {
        Flow::Stop(Reason::other("crash"))
    }
}

struct RestartsDone;

/// A one_for_one supervisor whose single permanent child crashes right after
/// its init, n times; timed from the supervisor's start until the (n+1)-th
/// start of the child, which stays up.
async fn restart(n: u64, period: u64, intensity: u64) -> Result<Report, String> {
    let root = beamish::self_pid();
    let starts = Arc::new(AtomicU64::new(0));
    let spec = ChildSpec::worker("crasher", move || {
        let starts = starts.clone();
        async move {
            let k = starts.fetch_add(1, Relaxed);
            let crash = k < n;
            let server = otp::start_link(Crasher { crash }).await?;
            if !crash {
                root.send(RestartsDone);
            }
            Ok(server.pid())
        }
    });
    let flags = SupervisorFlags::new(Strategy::OneForOne)
        .intensity(u32::try_from(intensity).unwrap_or(u32::MAX))
        .period(Duration::from_secs(period));
    let t0 = Instant::now();
    let sup = Supervisor::start_link(flags, vec![spec])
        .await
        .map_err(|e| format!("supervisor: {e}"))?;
    let mref = beamish::monitor(sup.pid());
    let done = beamish::receive_match(move |m| {
        m.is::<RestartsDone>() || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == mref)
    })
    .await;
    if let Ok(down) = done.downcast::<Down>() {
        return Err(format!("the supervisor died: {}", down.reason));
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok(Report::new()
        .with("us_per_restart", format!("{us:.2}"))
        .with("n", n)
        .with("period", period))
}
