//! The workloads on plain tokio, the baseline: a process is a task on the
//! multi-thread runtime (one worker per core), its mailbox an unbounded mpsc
//! channel.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::measure::*;
use super::{Args, Report};

/// Runs one workload on tokio and returns its result keys (without bench=
/// and runtime=).
pub fn run(workload: &str, args: &Args) -> Result<Report, String> {
    match workload {
        "spawn" => {
            let n = args.num("n", 1_000_000)?;
            on_tokio(spawn(n))
        }
        "skynet" => {
            let (leaves, div) = (args.num("leaves", 1_000_000)?, args.num("div", 10)?);
            on_tokio(skynet(leaves, div))
        }
        "ring" => {
            let (procs, hops) = (args.num("procs", 10_000)?, args.num("hops", 10_000_000)?);
            let t = on_tokio(async move { Ok(rings(1, procs, hops).await) })?;
            Ok(Report::new()
                .with("ns_per_hop", f1(ns_per(t, hops)))
                .with("procs", procs))
        }
        "pingpong" => {
            let n = args.num("n", 1_000_000)?;
            let t = on_tokio(async move { Ok(rings(1, 2, 2 * n).await) })?;
            Ok(Report::new().with("ns_per_roundtrip", f1(ns_per(t, n))))
        }
        "pingpong_par" => {
            let (pairs, rounds) = (args.num("pairs", 1_000)?, args.num("rounds", 1_000)?);
            let t = on_tokio(async move { Ok(rings(pairs, 2, 2 * rounds).await) })?;
            Ok(Report::new().with("ns_per_roundtrip", f1(ns_per(t, pairs * rounds))))
        }
        "fanin" => {
            let (senders, msgs) = (args.num("senders", 4)?, args.num("msgs", 1_000_000)?);
            on_tokio(fanin(senders, msgs))
        }
        "fairness" => {
            let procs = args.num("procs", 8)?;
            let beats = args.num("beats", 2_000)?;
            let sleep = Duration::from_millis(args.num("sleep_ms", 1)?);
            on_tokio(fairness(procs, beats, sleep))
        }
        "runaway" => {
            let procs = args.num("procs", 8)?;
            let sleep = Duration::from_millis(args.num("sleep_ms", 1)?);
            let spin = Duration::from_millis(args.num("runaway_ms", 2_000)?);
            on_tokio(runaway(procs, sleep, spin))
        }
        "call" => {
            let n = args.num("n", 1_000_000)?;
            on_tokio(call(n))
        }
        "link_cascade" => Err("tokio has no links: link_cascade is not expressible".to_string()),
        other => Err(format!("{other}: no tokio implementation")),
    }
}

/// Runs `driver` as a task on a fresh multi-thread runtime (so that the
/// driver is a process like the others) and returns its result.
fn on_tokio<T, F>(driver: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the tokio runtime: {e}"))?;
    let result = rt.block_on(async { tokio::spawn(driver).await });
    // Never shut the runtime down: tasks still busy (fairness) or blocked
    // (rings) would delay the report; the process exits right after it.
    std::mem::forget(rt);
    result.map_err(|e| format!("driver task failed: {e}"))?
}

async fn spawn(n: u64) -> Result<Report, String> {
    let started = Arc::new(AtomicU64::new(0));
    let mut mailboxes: Vec<UnboundedSender<()>> = Vec::with_capacity(n as usize);
    let mut handles = Vec::with_capacity(n as usize);
    let rss0 = rss_bytes()?;

    let t0 = Instant::now();
    for _ in 0..n {
        let (tx, mut rx) = unbounded_channel::<()>();
        let started = started.clone();
        handles.push(tokio::spawn(async move {
            started.fetch_add(1, Relaxed);
            let _stop = rx.recv().await;
        }));
        mailboxes.push(tx);
    }
    let spawn_time = t0.elapsed();

    while started.load(Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready_time = t0.elapsed();
    tokio::time::sleep(SETTLE).await;
    let rss1 = rss_bytes()?;

    let t1 = Instant::now();
    for tx in &mailboxes {
        tx.send(()).map_err(|_| "a spawned process died early")?;
    }
    for h in handles {
        h.await
            .map_err(|e| format!("a spawned process failed: {e}"))?;
    }
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
/// children that share a clone of its mailbox sender, sums their replies and
/// replies up. A plain fn (not an async fn) so the recursion needs no box.
fn skynet_node(num: u64, size: u64, div: u64, parent: UnboundedSender<u64>) {
    tokio::spawn(async move {
        if size == 1 {
            let _ = parent.send(num);
            return;
        }
        let (tx, mut rx) = unbounded_channel();
        let child = size / div;
        for i in 0..div {
            skynet_node(num + i * child, child, div, tx.clone());
        }
        drop(tx);
        let mut sum = 0;
        for _ in 0..div {
            match rx.recv().await {
                Some(s) => sum += s,
                None => return, // a child died: the root sees no reply
            }
        }
        let _ = parent.send(sum);
    });
}

async fn skynet(leaves: u64, div: u64) -> Result<Report, String> {
    let (tx, mut rx) = unbounded_channel();
    let t0 = Instant::now();
    skynet_node(0, leaves, div, tx);
    let sum = rx.recv().await.ok_or("skynet: the root never replied")?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let expected = skynet_expected(leaves);
    if sum != expected {
        return Err(format!("skynet: sum {sum} != {expected}"));
    }
    Ok(Report::new().with("ms", f1(ms)).with("leaves", leaves))
}

/// `count` rings of `size` processes each; one token per ring makes `hops`
/// hops in total. pingpong is one ring of two, pingpong_par many rings of two.
/// Returns the wall time from the first injection to the last ring's end.
async fn rings(count: u64, size: u64, hops: u64) -> Duration {
    let (done_tx, mut done_rx) = unbounded_channel::<()>();
    let mut heads = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..size).map(|_| unbounded_channel::<u64>()).unzip();
        for (i, mut rx) in rxs.into_iter().enumerate() {
            let next = txs[(i + 1) % txs.len()].clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                while let Some(left) = rx.recv().await {
                    if left == 0 {
                        let _ = done.send(());
                    } else {
                        let _ = next.send(left - 1);
                    }
                }
            });
        }
        heads.push(txs[0].clone());
    }
    tokio::time::sleep(WARMUP).await;
    let t0 = Instant::now();
    for head in &heads {
        // Every ring process holds a sender to its successor: none can end.
        let _ = head.send(hops);
    }
    for _ in 0..count {
        let _ = done_rx.recv().await;
    }
    t0.elapsed()
}

async fn fanin(senders: u64, msgs: u64) -> Result<Report, String> {
    let total = senders * msgs;
    let (tx, mut rx) = unbounded_channel::<u64>();
    let receiver = tokio::spawn(async move {
        let mut count = 0u64;
        while count < total && rx.recv().await.is_some() {
            count += 1;
        }
        count
    });
    tokio::time::sleep(WARMUP).await;
    let t0 = Instant::now();
    for _ in 0..senders {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..msgs {
                let _ = tx.send(i);
            }
        });
    }
    drop(tx);
    let got = receiver
        .await
        .map_err(|e| format!("receiver failed: {e}"))?;
    let t = t0.elapsed();
    if got != total {
        return Err(format!("fanin: received {got} of {total} messages"));
    }
    Ok(Report::new()
        .with("ns_per_msg", f1(ns_per(t, total)))
        .with("msgs", total))
}

/// Starts `procs` CPU-bound processes that run ~1 µs work units forever,
/// consuming one unit of tokio's cooperative budget per unit (the runtime's
/// cheapest yield point). Returns the calibrated iterations per unit.
fn start_busy(procs: u64) -> u64 {
    let iters = calibrate_unit();
    for p in 0..procs {
        tokio::spawn(async move {
            let mut x = p;
            loop {
                x = work_unit(iters, x);
                tokio::task::coop::consume_budget().await;
            }
        });
    }
    iters
}

async fn fairness(procs: u64, beats: u64, sleep: Duration) -> Result<Report, String> {
    let iters = start_busy(procs);
    let heartbeat = tokio::spawn(async move {
        let mut late = Vec::with_capacity(beats as usize);
        for _ in 0..beats {
            let t = Instant::now();
            tokio::time::sleep(sleep).await;
            late.push(lateness_us(t, Instant::now(), sleep));
        }
        late
    });
    let late = heartbeat
        .await
        .map_err(|e| format!("heartbeat failed: {e}"))?;
    let mut report = lateness_keys(late, true)?;
    report.push("procs", procs);
    report.push("unit_iters", iters);
    Ok(report)
}

async fn runaway(procs: u64, sleep: Duration, spin: Duration) -> Result<Report, String> {
    let iters = start_busy(procs);
    let window = Arc::new(RunawayWindow::default());
    let heartbeat = {
        let window = window.clone();
        tokio::spawn(async move {
            let mut sleeps = Vec::new();
            loop {
                let asleep = Instant::now();
                tokio::time::sleep(sleep).await;
                sleeps.push((asleep, Instant::now()));
                if window.ended_before(asleep) {
                    break;
                }
            }
            window.lateness_during(&sleeps, sleep)
        })
    };
    tokio::time::sleep(RUNAWAY_LEAD).await;
    tokio::spawn(async move { window.spin(spin, iters) });
    let late = heartbeat
        .await
        .map_err(|e| format!("heartbeat failed: {e}"))??;
    let mut report = lateness_keys(late, false)?;
    report.push("procs", procs);
    report.push("unit_iters", iters);
    Ok(report)
}

/// A gen_server on tokio: a task owning a request channel; each call sends
/// its request with a oneshot for the reply and awaits it.
async fn call(n: u64) -> Result<Report, String> {
    let (tx, mut rx) = unbounded_channel::<tokio::sync::oneshot::Sender<&'static str>>();
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send("pong");
        }
    });
    let t0 = Instant::now();
    for _ in 0..n {
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        tx.send(rtx).map_err(|_| "the server is gone")?;
        rrx.await.map_err(|_| "no reply")?;
    }
    let t = t0.elapsed();
    Ok(Report::new()
        .with("ns_per_call", f1(ns_per(t, n)))
        .with("n", n))
}
