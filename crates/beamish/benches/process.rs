//! Micro-benchmarks of beamish's process primitives.
//!
//! Run them all with
//!
//! ```text
//! cargo bench -p beamish                 # 11 benchmarks, about a minute
//! cargo bench -p beamish -- --quick      # criterion's quick mode: rougher
//! cargo bench -p beamish -- ping_pong    # only the benchmarks whose id matches
//! ```
//!
//! Every figure is per element (criterion prints the time per iteration and
//! the element throughput). Each group builds one [`Runtime`] (default
//! settings: one scheduler thread per core, unless the id says otherwise),
//! and each measurement batch runs as one root process through a single
//! [`Runtime::block_on`]: the root takes its own timestamps around the work,
//! so the few microseconds `block_on` costs, and any setup or teardown, stay
//! out of the per-element time.
//!
//! | id | what one element is |
//! | --- | --- |
//! | `spawn/exit_at_once` | one `spawn` of a process that returns at once (the spawner's cost; the children run and exit concurrently) |
//! | `spawn/exit_at_once_lifecycle` | one such process from `spawn` until it has run and been freed (batch time until the runtime has no child left) |
//! | `spawn/blocked_in_receive` | one `spawn` of a process that waits in `receive` (they are killed, untimed, after each chunk of 10,000) |
//! | `send_receive/self` | a process sends itself a `u64` and receives it |
//! | `ping_pong/workers_2` | a round trip (two messages, two wake-ups) between the root and an echo process, on the default runtime (the two may sit on different threads) |
//! | `ping_pong/workers_1` | the same on a runtime with one scheduler thread: two plain context switches |
//! | `selective_receive/no_backlog` | a request to an echo process and the receive of its reply, with an empty mailbox (baseline) |
//! | `selective_receive/backlog_10k` | the same behind 10,000 unmatched messages: each receive scans the backlog |
//! | `selective_receive/backlog_10k_after_mark` | the same with `mark()` before the request and `receive().after_mark(m)`: the backlog is skipped |
//! | `monitor/noproc` | `monitor` of a dead pid and the receive of its `Down { reason: NoProc }` |
//! | `monitor/down_round_trip` | `monitor` of a live process waiting in `receive`, a message that makes it return, and the receive of its `Down` |

use std::hint::black_box;
use std::time::{Duration, Instant};

use beamish::{Down, Handle, Pid, Reason, Runtime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Processes spawned (or kept alive) at once by the spawn and monitor
/// benchmarks; a batch larger than this is done in chunks, so that memory
/// stays bounded whatever batch size criterion asks for.
const CHUNK: u64 = 10_000;

/// Unmatched messages in front of the reply in `selective_receive`.
const BACKLOG: u32 = 10_000;

/// Small settings so that the whole suite runs in about a minute.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

fn runtime() -> Runtime {
    Runtime::new().expect("failed to start a runtime")
}

/// Runs `root` as the root process of `rt` and returns the time it measured.
fn run_batch<F>(rt: &Runtime, root: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(root)
        .expect("the benchmark's root process failed")
}

/// Waits (yielding) until `handle`'s runtime has at most `count` processes.
async fn wait_for_count(handle: &Handle, count: usize) {
    while handle.process_count() > count {
        beamish::yield_now().await;
    }
}

/// Sizes of the chunks a batch of `iters` elements is done in.
fn chunks(iters: u64) -> impl Iterator<Item = u64> {
    let full = iters / CHUNK;
    let rest = iters % CHUNK;
    std::iter::repeat_n(CHUNK, full as usize).chain((rest > 0).then_some(rest))
}

/// A process that answers every `u64` it receives by sending it back to
/// `to`.
fn echo_u64(to: Pid) -> Pid {
    beamish::spawn(async move {
        loop {
            let n = beamish::receive::<u64>().await;
            to.send(n);
        }
    })
}

/// What a process of `monitor/down_round_trip` sends once it runs.
struct Ready;

/// The reply of `selective_receive`'s server.
struct Reply(u64);

/// A process that answers every `(Pid, u64)` request with a [`Reply`].
fn reply_server() -> Pid {
    beamish::spawn(async move {
        loop {
            let (from, n) = beamish::receive::<(Pid, u64)>().await;
            from.send(Reply(n));
        }
    })
}

fn spawn(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("spawn");
    g.throughput(Throughput::Elements(1));

    g.bench_function("exit_at_once", |b| {
        b.iter_custom(|iters| {
            let handle = rt.handle();
            run_batch(&rt, async move {
                let base = handle.process_count();
                let mut total = Duration::ZERO;
                for n in chunks(iters) {
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(beamish::spawn(async {}));
                    }
                    total += start.elapsed();
                    wait_for_count(&handle, base).await;
                }
                total
            })
        });
    });

    g.bench_function("exit_at_once_lifecycle", |b| {
        b.iter_custom(|iters| {
            let handle = rt.handle();
            run_batch(&rt, async move {
                let base = handle.process_count();
                let start = Instant::now();
                for n in chunks(iters) {
                    for _ in 0..n {
                        black_box(beamish::spawn(async {}));
                    }
                    wait_for_count(&handle, base).await;
                }
                start.elapsed()
            })
        });
    });

    g.bench_function("blocked_in_receive", |b| {
        b.iter_custom(|iters| {
            let handle = rt.handle();
            run_batch(&rt, async move {
                let base = handle.process_count();
                let mut pids = Vec::with_capacity(iters.min(CHUNK) as usize);
                let mut total = Duration::ZERO;
                for n in chunks(iters) {
                    let start = Instant::now();
                    for _ in 0..n {
                        pids.push(beamish::spawn(async {
                            beamish::receive::<()>().await;
                        }));
                    }
                    total += start.elapsed();
                    for pid in pids.drain(..) {
                        pid.exit(Reason::Kill);
                    }
                    wait_for_count(&handle, base).await;
                }
                total
            })
        });
    });

    g.finish();
}

fn send_receive(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("send_receive");
    g.throughput(Throughput::Elements(1));

    g.bench_function("self", |b| {
        b.iter_custom(|iters| {
            run_batch(&rt, async move {
                let me = beamish::self_pid();
                let start = Instant::now();
                for i in 0..iters {
                    me.send(i);
                    black_box(beamish::receive::<u64>().await);
                }
                start.elapsed()
            })
        });
    });

    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    g.throughput(Throughput::Elements(1));

    for workers in [2, 1] {
        let rt = Runtime::builder()
            .worker_threads(workers)
            .build()
            .expect("failed to start a runtime");
        g.bench_function(format!("workers_{workers}"), |b| {
            b.iter_custom(|iters| {
                run_batch(&rt, async move {
                    let echo = echo_u64(beamish::self_pid());
                    let start = Instant::now();
                    for i in 0..iters {
                        echo.send(i);
                        black_box(beamish::receive::<u64>().await);
                    }
                    let elapsed = start.elapsed();
                    echo.exit(Reason::Kill);
                    elapsed
                })
            });
        });
    }

    g.finish();
}

fn selective_receive(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("selective_receive");
    g.throughput(Throughput::Elements(1));

    for (name, backlog, use_mark) in [
        ("no_backlog", 0, false),
        ("backlog_10k", BACKLOG, false),
        ("backlog_10k_after_mark", BACKLOG, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                run_batch(&rt, async move {
                    let me = beamish::self_pid();
                    let server = reply_server();
                    for i in 0..backlog {
                        me.send(i);
                    }
                    // Untimed: moves the backlog into the queue proper (a
                    // receive drains the inbound messages once), so the
                    // first timed request does not pay for it.
                    let none = beamish::receive::<Reply>().timeout(Duration::ZERO).await;
                    assert!(none.is_none());

                    let start = Instant::now();
                    for i in 0..iters {
                        let reply = if use_mark {
                            let m = beamish::mark();
                            server.send((me, i));
                            beamish::receive::<Reply>().after_mark(m).await
                        } else {
                            server.send((me, i));
                            beamish::receive::<Reply>().await
                        };
                        black_box(reply.0);
                    }
                    let elapsed = start.elapsed();
                    server.exit(Reason::Kill);
                    elapsed
                })
            });
        });
    }

    g.finish();
}

fn monitor(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("monitor");
    g.throughput(Throughput::Elements(1));

    g.bench_function("noproc", |b| {
        b.iter_custom(|iters| {
            run_batch(&rt, async move {
                let dead = beamish::spawn(async {});
                while dead.is_alive() {
                    beamish::yield_now().await;
                }
                let start = Instant::now();
                for _ in 0..iters {
                    let mref = beamish::monitor(dead);
                    let down = beamish::receive::<Down>().await;
                    assert!(down.monitor == mref && down.reason == Reason::NoProc);
                    black_box(down);
                }
                start.elapsed()
            })
        });
    });

    g.bench_function("down_round_trip", |b| {
        b.iter_custom(|iters| {
            let handle = rt.handle();
            run_batch(&rt, async move {
                let base = handle.process_count();
                let mut pids = Vec::with_capacity(iters.min(CHUNK) as usize);
                let mut total = Duration::ZERO;
                for n in chunks(iters) {
                    // Untimed: the processes to monitor, each parked in
                    // `receive` for the message that ends it (each says
                    // `Ready` first, so none is still waiting for its first
                    // run when the clock starts).
                    let me = beamish::self_pid();
                    pids.extend((0..n).map(|_| {
                        beamish::spawn(async move {
                            me.send(Ready);
                            beamish::receive::<()>().await;
                        })
                    }));
                    for _ in 0..n {
                        beamish::receive::<Ready>().await;
                    }
                    let start = Instant::now();
                    for pid in pids.drain(..) {
                        let mref = beamish::monitor(pid);
                        pid.send(());
                        let down = beamish::receive::<Down>().await;
                        assert!(down.monitor == mref && down.reason == Reason::Normal);
                        black_box(down);
                    }
                    total += start.elapsed();
                    wait_for_count(&handle, base).await;
                }
                total
            })
        });
    });

    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = spawn, send_receive, ping_pong, selective_receive, monitor
}
criterion_main!(benches);
