//! `observe` and `trace`: the cost of looking inside a node.
//!
//! `trace`: a ping-pong of `n` round trips, untraced, then with the
//! pinging side traced for sends and receives with a rate limit of `rate`
//! events per second (best of three each, alternating; throughput kept, as
//! a percentage of the untraced run), then traced with no limit but the queue's and a tracer that takes
//! a millisecond per event (events dropped, memory growth).
//!
//! `observe`: `idle` processes wait in a
//! receive, `busy` ones compute and yield for ever; an observer refreshes
//! `refreshes` times, once a second, a full top-10 (by reductions over the
//! last second, by mailbox length, by memory) with the system counters.
//!
//! - beamish: [`beamish::observe::Observer::sample`] from a thread outside
//!   the runtime, as an embedded observer endpoint runs it. Its CPU time per
//!   refresh is the thread's own (`CLOCK_THREAD_CPUTIME_ID`); the memory is
//!   the RSS growth from before the first sample to after the last (maps of
//!   the windows included). The busy processes count their rounds, so the
//!   run also reports how much throughput observing takes from them.
//! - erl: `scripts/observe/otp_observe.escript`, the same processes in one
//!   BEAM with the refresh `observer_cli` does through `recon`
//!   (`process_info/2` of every process, the difference with the previous
//!   snapshot, the top 10), run at high priority so that it is not queued
//!   behind the busy processes: its wall time is then its CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use beamish::Runtime as BeamishRuntime;
use beamish::observe::Observer;

use super::dist::run_script;
use super::measure::{f1, percentile, rss_bytes};
use super::{Args, Peer, Report, Runtime};

/// The escript of the erl run.
pub const OTP_OBSERVE: &str = "otp_observe.escript";

struct Size {
    idle: u64,
    busy: u64,
    refreshes: u64,
}

/// Runs `observe` on `rt` (the peer is the same runtime: one node).
pub fn run(rt: Runtime, peer: Peer, args: &Args) -> Result<Report, String> {
    let size = Size {
        idle: args.num("idle", 1_000_000)?,
        busy: args.num("busy", 100_000)?,
        refreshes: args.num("refreshes", 3)?.max(1),
    };
    match (rt, peer) {
        (Runtime::Beamish, Peer::Beamish) => beamish(&size),
        (Runtime::Erl, Peer::Erl) => erl(&size),
        (rt, peer) => Err(format!(
            "observe runs one node, beamish or erl, not {}↔{}",
            rt.name(),
            peer.name()
        )),
    }
}

/// Sharded round counters of the busy processes (one cache line each).
#[repr(align(64))]
#[derive(Default)]
struct Shard(AtomicU64);

fn rounds(shards: &[Shard]) -> u64 {
    shards.iter().map(|s| s.0.load(Relaxed)).sum()
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 50.0)
}

fn beamish(size: &Size) -> Result<Report, String> {
    let rt = BeamishRuntime::builder()
        .worker_threads(2)
        .build()
        .map_err(|e| e.to_string())?;
    let h = rt.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let shards: Arc<[Shard]> = (0..64).map(|_| Shard::default()).collect();
    for _ in 0..size.idle {
        h.spawn(async { beamish::receive::<()>().await })
            .map_err(|e| e.to_string())?;
    }
    for i in 0..size.busy {
        let (stop, shards) = (stop.clone(), shards.clone());
        h.spawn(async move {
            let shard = &shards[(i % 64) as usize].0;
            let mut x = i;
            while !stop.load(Relaxed) {
                for _ in 0..20 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                beamish::reduce(20).await;
                shard.fetch_add(1, Relaxed);
                beamish::yield_now().await;
            }
        })
        .map_err(|e| e.to_string())?;
    }
    std::thread::sleep(Duration::from_secs(1));
    // Throughput with nobody observing.
    let r0 = rounds(&shards);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let unobserved = (rounds(&shards) - r0) as f64 / t0.elapsed().as_secs_f64();

    let rss0 = rss_bytes()?;
    let mut observer = Observer::new(&h);
    observer.set_window(Duration::from_secs(1));
    observer.sample(10);
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    let r1 = rounds(&shards);
    let t1 = Instant::now();
    let mut last = None;
    for _ in 0..size.refreshes {
        std::thread::sleep(Duration::from_secs(1));
        let (c, w) = (thread_cpu(), Instant::now());
        let sample = observer.sample(10);
        wall.push(w.elapsed().as_secs_f64() * 1e3);
        cpu.push((thread_cpu() - c).as_secs_f64() * 1e3);
        last = Some(sample);
    }
    let observed = (rounds(&shards) - r1) as f64 / t1.elapsed().as_secs_f64();
    let rss1 = rss_bytes()?;
    stop.store(true, Relaxed);
    let last = last.ok_or("no refresh")?;
    if last.top_reductions.len() < 10 || last.system.processes < (size.idle + size.busy) as usize {
        return Err(format!(
            "the refresh saw {} processes and {} busy ones",
            last.system.processes,
            last.top_reductions.len()
        ));
    }
    drop(observer);
    drop(rt);
    Ok(Report::new()
        .with("refresh_cpu_ms", f1(median(&mut cpu)))
        .with("refresh_wall_ms", f1(median(&mut wall)))
        .with("observer_mb", f1(rss1.saturating_sub(rss0) as f64 / 1e6))
        .with(
            "observed_throughput_pct",
            f1(100.0 * observed / unobserved.max(1.0)),
        )
        .with("utilization_pct", f1(100.0 * last.system.utilization()))
        .with("idle", size.idle)
        .with("busy", size.busy))
}

fn erl(size: &Size) -> Result<Report, String> {
    let args = [
        size.idle.to_string(),
        size.busy.to_string(),
        size.refreshes.to_string(),
    ];
    let out = run_script("observe", OTP_OBSERVE, &args)?;
    let line = out
        .lines()
        .find(|l| l.starts_with("bench=observe"))
        .ok_or_else(|| format!("{OTP_OBSERVE} printed no summary:\n{out}"))?;
    let mut report = Report::new();
    for key in ["refresh_cpu_ms", "refresh_wall_ms", "observer_mb"] {
        let value = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("{OTP_OBSERVE}: no {key} in {line:?}"))?;
        report.push(key, value);
    }
    Ok(report.with("idle", size.idle).with("busy", size.busy))
}

/// Round trips between a pinger and an echo; the time per round trip.
async fn pingpong(
    n: u64,
    traced: Option<beamish::trace::Trace>,
    tracer: beamish::Pid,
) -> Result<(f64, Option<beamish::trace::TraceStats>), String> {
    let echo = beamish::spawn(async {
        loop {
            let (from, i): (beamish::Pid, u64) = beamish::receive().await;
            from.send(i);
        }
    });
    let me = beamish::self_pid();
    let pinger = beamish::spawn(async move {
        let _: () = beamish::receive().await;
        let t = Instant::now();
        for i in 0..n {
            echo.send((beamish::self_pid(), i));
            let _: u64 = beamish::receive().await;
        }
        me.send(t.elapsed());
    });
    let session = match traced {
        Some(t) => Some(
            t.start(beamish::trace::Target::Pid(pinger), tracer)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    pinger.send(());
    let took: Duration = beamish::receive().await;
    let stats = session.as_ref().map(|s| s.stats());
    echo.exit(beamish::Reason::Kill);
    Ok((took.as_nanos() as f64 / n as f64, stats))
}

/// The `trace` workload (see the module docs).
pub async fn trace(n: u64, rate: u64) -> Result<Report, String> {
    use beamish::trace::{Flags, OnExceed, Trace, TraceEvent};
    let fast = beamish::spawn(async {
        loop {
            drop(beamish::receive::<TraceEvent>().await);
        }
    });
    let slow = beamish::spawn(async {
        loop {
            drop(beamish::receive::<TraceEvent>().await);
            beamish::sleep(Duration::from_millis(1)).await;
        }
    });
    let flags = Flags::SEND | Flags::RECEIVE;
    // Best of three, alternating: a ping-pong pair runs either on one core
    // or across both, and which one a run gets is luck.
    let (mut untraced, mut traced) = (f64::MAX, f64::MAX);
    let mut limited_stats = None;
    for _ in 0..3 {
        untraced = untraced.min(pingpong(n, None, fast).await?.0);
        let limited = Trace::new(flags).rate(rate, Duration::from_secs(1), OnExceed::Drop);
        let (t, stats) = pingpong(n, Some(limited), fast).await?;
        traced = traced.min(t);
        limited_stats = stats;
    }
    let limited_stats = limited_stats.ok_or("no stats")?;
    let rss0 = rss_bytes()?;
    let (unlimited, stats) = pingpong(n, Some(Trace::new(flags)), slow).await?;
    let stats = stats.ok_or("no stats")?;
    let rss1 = rss_bytes()?;
    Ok(Report::new()
        .with("untraced_ns", f1(untraced))
        .with("limited_ns", f1(traced))
        .with("limited_pct", f1(100.0 * untraced / traced))
        .with("limited_delivered", limited_stats.delivered)
        .with("unlimited_ns", f1(unlimited))
        .with("unlimited_delivered", stats.delivered)
        .with("unlimited_dropped", stats.dropped)
        .with("unlimited_queued", stats.queued)
        .with(
            "unlimited_rss_mb",
            f1(rss1.saturating_sub(rss0) as f64 / 1e6),
        )
        .with("n", n))
}
