//! Runtime-level behaviour: building, `block_on`, handles, shutdown,
//! introspection (`process_info`, `processes`), priorities, reductions and
//! many processes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use beamish::{
    Down, Error, Exit, Handle, Pid, Priority, Reason, Runtime, SpawnOptions, Status, receive,
};

/// A runtime with `n` scheduler threads and no spare threads, so that what a
/// test observes on it is due to the scheduler alone.
fn runtime(n: usize) -> Runtime {
    Runtime::builder()
        .worker_threads(n)
        .max_spare_threads(0)
        .build()
        .expect("runtime")
}

/// Names of this OS process's threads (from /proc).
fn thread_names() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            if let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) {
                out.push(name.trim_end().to_owned());
            }
        }
    }
    out
}

/// Waits up to `limit` for `cond`; returns whether it held.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `process_info` of `pid` once it is blocked (its status is read when the
/// request is made, so a process that is still finishing a poll reads as
/// running or runnable).
async fn info_when_waiting(pid: Pid) -> beamish::ProcessInfo {
    let start = Instant::now();
    loop {
        let info = beamish::process_info(pid).await.expect("process is alive");
        if info.status == Status::Waiting || start.elapsed() > Duration::from_secs(10) {
            return info;
        }
        beamish::sleep(Duration::from_millis(1)).await;
    }
}

// ------------------------------------------------------------ building

#[test]
fn builder_defaults_to_one_scheduler_thread_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let prefix = "bdefault";
    let rt = Runtime::builder().thread_name(prefix).build().unwrap();
    // Scheduler threads are named `<prefix>-<index>`; the monitor and IO
    // threads have other suffixes. Thread names are set by the threads
    // themselves, so wait for them to appear.
    let schedulers = || {
        thread_names()
            .iter()
            .filter_map(|n| n.strip_prefix(prefix)?.strip_prefix('-'))
            .filter(|suffix| suffix.chars().all(|c| c.is_ascii_digit()))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || schedulers() >= cores),
        "expected {cores} scheduler threads, saw {}",
        schedulers()
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(schedulers(), cores);
    assert_eq!(rt.block_on(async { 1 }), Ok(1));
}

#[test]
fn zero_worker_threads_is_a_config_error() {
    let built = Runtime::builder().worker_threads(0).build();
    assert!(
        matches!(built, Err(Error::Config(_))),
        "worker_threads(0) must be refused, got {built:?}"
    );
}

#[test]
fn too_many_scheduler_threads_is_a_config_error() {
    let built = Runtime::builder()
        .worker_threads(200)
        .max_spare_threads(100)
        .build();
    assert!(matches!(built, Err(Error::Config(_))), "got {built:?}");
}

// ------------------------------------------------------------ many runtimes

/// An echo server: replies to `(from, n)` with `n + 1`.
async fn echo_server() {
    loop {
        let (from, n) = receive::<(Pid, u64)>().await;
        from.send(n + 1);
    }
}

#[test]
fn many_runtimes_in_one_os_process_do_not_interfere() {
    const RUNTIMES: usize = 4;
    const ROUNDS: u64 = 2_000;
    let rts: Vec<Runtime> = (0..RUNTIMES).map(|_| runtime(1)).collect();
    let handles: Vec<Handle> = rts.iter().map(|rt| rt.handle()).collect();
    let servers: Vec<Pid> = handles
        .iter()
        .map(|h| h.spawn(echo_server()).unwrap())
        .collect();

    // Every runtime runs a ping-pong at the same time.
    let barrier = Arc::new(Barrier::new(RUNTIMES));
    let threads: Vec<_> = (0..RUNTIMES)
        .map(|i| {
            let handle = handles[i].clone();
            let server = servers[i];
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                handle
                    .block_on(async move {
                        let me = beamish::self_pid();
                        let mut n = 0u64;
                        for _ in 0..ROUNDS {
                            server.send((me, n));
                            n = receive::<u64>().await;
                        }
                        n
                    })
                    .unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), ROUNDS);
    }

    // A pid belongs to its own runtime only.
    for (i, h) in handles.iter().enumerate() {
        // The root process of `block_on` may still be ending.
        assert!(wait_until(Duration::from_secs(5), || h.process_count() == 1));
        assert_eq!(h.processes(), vec![servers[i]], "runtime {i}");
        assert!(h.process_info(servers[i]).is_some());
        for (j, server) in servers.iter().enumerate() {
            if i != j {
                assert!(
                    h.process_info(*server).is_none(),
                    "runtime {i} found the pid {server} of runtime {j}"
                );
            }
        }
    }
    for rt in rts {
        rt.shutdown();
    }
}

#[test]
fn processes_of_different_runtimes_can_message_each_other() {
    let a = runtime(1);
    let b = runtime(1);
    let server = b.handle().spawn(echo_server()).unwrap();
    let got = a
        .block_on(async move {
            server.send((beamish::self_pid(), 41u64));
            receive::<u64>().await
        })
        .unwrap();
    assert_eq!(got, 42);
}

/// The runtime part of a pid's `<runtime.index.serial>` display form.
fn runtime_of(pid: Pid) -> String {
    pid.to_string()
        .trim_start_matches('<')
        .split('.')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_stale_pid_of_a_dropped_runtime_never_reaches_a_later_one() {
    let old_rt = runtime(1);
    let old = old_rt
        .handle()
        .spawn(async {
            receive::<()>().await;
        })
        .unwrap();
    old_rt.shutdown();
    assert!(!old.is_alive());
    // Runtime ids are reused (round-robin over 256): build runtimes until one
    // gets the old one's id, then aim the old pid at it.
    for _ in 0..1_000 {
        let rt = runtime(1);
        let handle = rt.handle();
        let (tx, rx) = mpsc::channel();
        let new = handle
            .spawn(async move {
                let got = receive::<&str>().timeout(Duration::from_millis(50)).await;
                tx.send(got).unwrap();
            })
            .unwrap();
        if runtime_of(new) != runtime_of(old) {
            new.send("not this one");
            continue;
        }
        assert_ne!(new, old);
        assert!(!old.is_alive());
        assert_eq!(handle.process_info(old), None);
        old.send("stale");
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);
        return;
    }
    panic!("no runtime reused the id of {old}");
}

// ------------------------------------------------------------ block_on

#[test]
fn block_on_returns_the_future_output() {
    let rt = runtime(2);
    assert_eq!(rt.block_on(async { 40 + 2 }), Ok(42));
    assert_eq!(
        rt.block_on(async { String::from("out") }),
        Ok(String::from("out"))
    );
}

#[test]
fn block_on_reports_the_reason_of_a_root_that_does_not_finish() {
    let rt = runtime(1);
    let r: Result<(), Reason> = rt.block_on(async { panic!("root failed") });
    assert!(matches!(r, Err(Reason::Panic(ref m)) if m.contains("root failed")));
    let r = rt.block_on(async { beamish::exit::<u8>(Reason::other("bye")).await });
    assert_eq!(r, Err(Reason::other("bye")));
}

#[test]
fn block_on_runs_several_times_on_one_runtime() {
    let rt = runtime(2);
    for i in 0..50u32 {
        let got = rt
            .block_on(async move {
                let me = beamish::self_pid();
                beamish::spawn(async move { me.send(i * 2) });
                receive::<u32>().await
            })
            .unwrap();
        assert_eq!(got, i * 2);
    }
    let handle = rt.handle();
    assert!(wait_until(Duration::from_secs(5), || handle
        .process_count()
        == 0));
}

#[test]
fn block_on_from_several_threads_at_once() {
    let rt = runtime(2);
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let handle = rt.handle();
            std::thread::spawn(move || {
                handle.block_on(async move {
                    beamish::sleep(Duration::from_millis(5)).await;
                    i * 10
                })
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), Ok(i as u64 * 10));
    }
}

// ------------------------------------------------------------ from plain threads

#[test]
fn handle_spawn_works_from_a_plain_thread() {
    let rt = runtime(2);
    let handle = rt.handle();
    let (tx, rx) = mpsc::channel();
    let pid = std::thread::spawn(move || {
        handle
            .spawn(async move {
                tx.send(beamish::self_pid()).unwrap();
            })
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(pid));
}

#[test]
fn pid_send_from_a_plain_thread_reaches_a_process() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let pid = rt
        .handle()
        .spawn(async move {
            for _ in 0..3 {
                let s = receive::<String>().await;
                tx.send(s).unwrap();
            }
        })
        .unwrap();
    std::thread::spawn(move || {
        for word in ["one", "two", "three"] {
            pid.send(word.to_owned());
        }
    })
    .join()
    .unwrap();
    let got: Vec<String> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(got, ["one", "two", "three"]);
}

#[test]
fn handle_spawn_with_options_from_outside() {
    let rt = runtime(2);
    let handle = rt.handle();
    // Linking and monitoring need a calling process.
    assert_eq!(
        handle.spawn_with(SpawnOptions::new().link(), async {}),
        Err(Error::NotInProcess)
    );
    assert_eq!(
        handle.spawn_with(SpawnOptions::new().monitor(), async {}),
        Err(Error::NotInProcess)
    );
    let pid = handle
        .spawn_with(
            SpawnOptions::new()
                .name("from-outside")
                .priority(Priority::Low)
                .trap_exit(true),
            async {
                receive::<()>().await;
            },
        )
        .unwrap();
    assert_eq!(handle.whereis("from-outside"), Some(pid));
    let info = handle.process_info(pid).unwrap();
    assert_eq!(info.priority, Priority::Low);
    assert!(info.trap_exit);
}

#[test]
fn spawn_with_a_taken_name_fails_and_drops_the_future() {
    let rt = runtime(1);
    let handle = rt.handle();
    let dropped = Arc::new(Mutex::new(Vec::new()));
    handle
        .spawn_with(SpawnOptions::new().name("taken"), async {
            receive::<()>().await;
        })
        .unwrap();
    let probe = DropProbe {
        dropped: dropped.clone(),
    };
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let second = handle.spawn_with(SpawnOptions::new().name("taken"), async move {
        let _p = probe;
        r.store(true, Ordering::Relaxed);
    });
    assert_eq!(second, Err(Error::NameTaken("taken".into())));
    assert_eq!(
        dropped.lock().unwrap().len(),
        1,
        "the future was not dropped"
    );
    std::thread::sleep(Duration::from_millis(20));
    assert!(!ran.load(Ordering::Relaxed), "a refused process ran");
    assert_eq!(handle.process_count(), 1);
}

// ------------------------------------------------------------ shutdown

/// Counts its drops and remembers the thread it was dropped on.
struct DropProbe {
    dropped: Arc<Mutex<Vec<String>>>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        self.dropped.lock().unwrap().push(thread);
    }
}

#[test]
fn shutdown_drops_every_process_future_on_its_scheduler_thread() {
    let prefix = "shutdn";
    let rt = Runtime::builder()
        .worker_threads(2)
        .thread_name(prefix)
        .build()
        .unwrap();
    let handle = rt.handle();
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started) = mpsc::channel::<&'static str>();
    let probe = || DropProbe {
        dropped: dropped.clone(),
    };

    let mut spawned = 0;
    let mut spawn = |name: &'static str, f: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let tx = started_tx.clone();
        let p = probe();
        handle
            .spawn(async move {
                let _p = p;
                tx.send(name).unwrap();
                f.await;
            })
            .unwrap();
        spawned += 1;
    };
    spawn(
        "receiving",
        Box::pin(async {
            receive::<()>().await;
        }),
    );
    spawn(
        "sleeping",
        Box::pin(beamish::sleep(Duration::from_secs(3600))),
    );
    spawn(
        "timed receive",
        Box::pin(async {
            let _ = receive::<()>().timeout(Duration::from_secs(3600)).await;
        }),
    );
    spawn(
        "busy",
        Box::pin(async {
            loop {
                beamish::reduce(1).await;
            }
        }),
    );
    // A pair of linked processes that trap exits: shutdown cannot be trapped.
    let inner = probe();
    let inner_started = started_tx.clone();
    spawn(
        "trapping",
        Box::pin(async move {
            beamish::trap_exit(true);
            beamish::spawn_link(async move {
                let _p = inner;
                beamish::trap_exit(true);
                inner_started.send("trapping child").unwrap();
                loop {
                    let _ = receive::<Exit>().await;
                }
            });
            loop {
                let _ = receive::<Exit>().await;
            }
        }),
    );
    let expected = spawned + 1;
    for _ in 0..expected {
        started.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    assert_eq!(handle.process_count(), expected);

    let t = Instant::now();
    rt.shutdown();
    let took = t.elapsed();
    let dropped = dropped.lock().unwrap().clone();
    assert_eq!(
        dropped.len(),
        expected,
        "every process's future is dropped by the time shutdown returns (took {took:?})"
    );
    for thread in &dropped {
        assert!(
            thread.starts_with(prefix),
            "a process's destructor ran on {thread:?}, not on a scheduler thread"
        );
    }
    assert_eq!(handle.process_count(), 0);
    assert!(handle.processes().is_empty());
}

#[test]
fn shutdown_ends_a_waiting_block_on_with_reason_shutdown() {
    let rt = runtime(1);
    let handle = rt.handle();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        handle.block_on(async move {
            tx.send(()).unwrap();
            receive::<()>().await;
        })
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    rt.shutdown();
    assert_eq!(waiter.join().unwrap(), Err(Reason::Shutdown));
}

#[test]
fn shutdown_reason_reaches_links_and_monitors_in_another_runtime() {
    let victim_rt = runtime(1);
    let observer_rt = runtime(1);
    let victim = victim_rt
        .handle()
        .spawn(async {
            receive::<()>().await;
        })
        .unwrap();
    let (ready_tx, ready) = mpsc::channel();
    let observer = observer_rt.handle();
    let watcher = std::thread::spawn(move || {
        observer.block_on(async move {
            beamish::trap_exit(true);
            beamish::link(victim).unwrap();
            let mref = beamish::monitor(victim);
            ready_tx.send(()).unwrap();
            let down = receive::<Down>().await;
            let exit = receive::<Exit>().await;
            (mref, down, exit)
        })
    });
    ready.recv_timeout(Duration::from_secs(10)).unwrap();
    victim_rt.shutdown();
    let (mref, down, exit) = watcher.join().unwrap().unwrap();
    assert_eq!(down.monitor, mref);
    assert_eq!(down.pid, victim);
    assert_eq!(down.reason, Reason::Shutdown);
    assert_eq!(exit.from, victim);
    assert_eq!(exit.reason, Reason::Shutdown);
}

#[test]
fn shutdown_completes_while_processes_keep_spawning() {
    for _ in 0..20 {
        let rt = Runtime::builder()
            .worker_threads(2)
            .shutdown_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let handle = rt.handle();
        for _ in 0..4 {
            handle
                .spawn(async {
                    loop {
                        beamish::spawn(async {
                            receive::<()>().await;
                        });
                        beamish::yield_now().await;
                    }
                })
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        rt.shutdown();
        let took = t.elapsed();
        assert_eq!(handle.process_count(), 0);
        assert!(
            took < Duration::from_secs(5),
            "shutdown took {took:?}: a process spawned during shutdown was missed"
        );
    }
}

#[test]
fn a_shut_down_runtime_refuses_new_work() {
    let rt = runtime(1);
    let handle = rt.handle();
    rt.shutdown();
    assert_eq!(handle.spawn(async {}), Err(Error::Shutdown));
    assert_eq!(handle.block_on(async { 1 }), Err(Reason::Shutdown));
}

// ------------------------------------------------------------ introspection

#[test]
fn handle_lists_processes_and_counts_them() {
    let rt = runtime(2);
    let handle = rt.handle();
    assert_eq!(handle.process_count(), 0);
    let mut pids: Vec<Pid> = (0..10)
        .map(|_| {
            handle
                .spawn(async {
                    receive::<()>().await;
                })
                .unwrap()
        })
        .collect();
    assert_eq!(handle.process_count(), 10);
    let mut listed = handle.processes();
    listed.sort();
    pids.sort();
    assert_eq!(listed, pids);

    // From inside a process: the same list, plus the caller.
    let inside = rt.block_on(async { beamish::processes() }).unwrap();
    assert_eq!(inside.len(), 11);
    assert!(pids.iter().all(|p| inside.contains(p)));

    for p in &pids[..5] {
        p.send(());
    }
    assert!(wait_until(Duration::from_secs(10), || handle
        .process_count()
        == 5));
    let mut left = handle.processes();
    left.sort();
    assert_eq!(left, pids[5..]);
}

#[test]
fn process_info_of_a_blocked_process_says_waiting_and_counts_its_mailbox() {
    let rt = runtime(2);
    let info = rt
        .block_on(async {
            let pid = beamish::spawn(async {
                receive::<()>().await;
            });
            for i in 0..3u32 {
                pid.send(i);
            }
            info_when_waiting(pid).await
        })
        .unwrap();
    assert_eq!(info.status, Status::Waiting);
    assert_eq!(info.message_queue_len, 3);
    assert!(info.memory > 0);
    assert!(info.links.is_empty() && info.monitors.is_empty() && info.monitored_by.is_empty());
    assert_eq!(info.registered_name, None);
    assert!(!info.trap_exit);
    assert_eq!(info.priority, Priority::Normal);
}

#[test]
fn process_info_of_a_queued_process_says_runnable() {
    // One thread: while this process runs, the new one can only be queued.
    let rt = runtime(1);
    let info = rt
        .block_on(async {
            let pid = beamish::spawn(async {
                receive::<()>().await;
            });
            beamish::process_info(pid).await.unwrap()
        })
        .unwrap();
    assert_eq!(info.status, Status::Runnable);
}

#[test]
fn process_info_finds_a_live_process_of_another_runtime() {
    // A pid carries its runtime: sending, linking, monitoring and
    // `is_alive` all reach a process of another runtime, and so must
    // `process_info`.
    let here = runtime(1);
    let there = runtime(1);
    let pid = there
        .handle()
        .spawn(async {
            receive::<()>().await;
        })
        .unwrap();
    let (alive, info) = here
        .block_on(async move { (pid.is_alive(), beamish::process_info(pid).await) })
        .unwrap();
    assert!(alive);
    let info = info.expect("process_info of a live process of another runtime was None");
    assert_eq!(info.pid, pid);
}

#[test]
fn process_info_reports_links_monitors_name_trap_exit_and_priority() {
    let rt = runtime(2);
    rt.block_on(async {
        let me = beamish::self_pid();
        let other = beamish::spawn(async {
            receive::<()>().await;
        });
        let target = SpawnOptions::new()
            .link()
            .monitor()
            .trap_exit(true)
            .name("info-target")
            .priority(Priority::High)
            .spawn(async move {
                let watched = receive::<Pid>().await;
                beamish::monitor(watched);
                me.send("monitoring");
                receive::<()>().await;
            })
            .unwrap()
            .pid;
        target.send(other);
        assert_eq!(receive::<&str>().await, "monitoring");
        let info = info_when_waiting(target).await;
        assert_eq!(info.pid, target);
        assert_eq!(info.links, vec![me]);
        assert_eq!(info.monitors, vec![other]);
        assert_eq!(info.monitored_by, vec![me]);
        assert_eq!(info.registered_name.as_deref(), Some("info-target"));
        assert!(info.trap_exit);
        assert_eq!(info.priority, Priority::High);
        assert!(info.memory > 0);
        assert_eq!(info.status, Status::Waiting);

        // The other side of the monitor.
        let info = beamish::process_info(other).await.unwrap();
        assert_eq!(info.monitored_by, vec![target]);
        // And our own side: linked to the target and monitoring it.
        let mine = beamish::process_info(me).await.unwrap();
        assert_eq!(mine.status, Status::Running);
        assert_eq!(mine.links, vec![target]);
        assert_eq!(mine.monitors, vec![target]);
    })
    .unwrap();
}

#[test]
fn process_info_reductions_increase_as_a_process_works() {
    let rt = runtime(2);
    rt.block_on(async {
        let me = beamish::self_pid();
        let worker = beamish::spawn(async move {
            loop {
                let n = receive::<u32>().await;
                for _ in 0..n {
                    beamish::reduce(1).await;
                }
                me.send("done");
            }
        });
        worker.send(10u32);
        receive::<&str>().await;
        let before = beamish::process_info(worker).await.unwrap().reductions;
        worker.send(1_000u32);
        receive::<&str>().await;
        let after = beamish::process_info(worker).await.unwrap().reductions;
        assert!(
            after >= before + 1_000,
            "reductions went from {before} to {after}"
        );
    })
    .unwrap();
}

#[test]
fn process_info_of_a_dead_pid_is_none() {
    let rt = runtime(2);
    let dead = rt
        .block_on(async {
            let (pid, _) = beamish::spawn_monitor(async {});
            let down = receive::<Down>().await;
            assert_eq!(down.pid, pid);
            assert_eq!(beamish::process_info(pid).await, None);
            pid
        })
        .unwrap();
    assert_eq!(rt.handle().process_info(dead), None);
}

#[test]
fn handle_process_info_works_from_outside_the_runtime() {
    let rt = runtime(2);
    let handle = rt.handle();
    let pid = handle
        .spawn(async {
            beamish::register("outside-info", beamish::self_pid()).unwrap();
            receive::<()>().await;
        })
        .unwrap();
    pid.send(7u8);
    pid.send(8u8);
    assert!(wait_until(Duration::from_secs(10), || {
        handle.whereis("outside-info") == Some(pid)
    }));
    // Once it has registered, it soon blocks in its receive.
    let info = std::thread::spawn(move || {
        let mut info = None;
        wait_until(Duration::from_secs(10), || {
            info = handle.process_info(pid);
            info.as_ref().is_some_and(|i| i.status == Status::Waiting)
        });
        info
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(info.pid, pid);
    assert_eq!(info.status, Status::Waiting);
    assert_eq!(info.message_queue_len, 2);
    assert_eq!(info.registered_name.as_deref(), Some("outside-info"));
}

// ------------------------------------------------------------ priorities

#[test]
fn a_high_priority_process_runs_before_queued_normal_ones() {
    let rt = runtime(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(async move {
        let me = beamish::self_pid();
        // Spawned without yielding: all of these are queued when we wait.
        for i in 0..20u32 {
            let o = o.clone();
            beamish::spawn(async move {
                o.lock().unwrap().push(format!("normal {i}"));
                me.send(());
            });
        }
        let o2 = o.clone();
        SpawnOptions::new()
            .priority(Priority::High)
            .spawn(async move {
                o2.lock().unwrap().push("high".to_owned());
                me.send(());
            })
            .unwrap();
        for _ in 0..21 {
            receive::<()>().await;
        }
    })
    .unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 21);
    assert_eq!(order[0], "high", "run order: {order:?}");
}

#[test]
fn max_priority_runs_before_high_and_normal() {
    let rt = runtime(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(async move {
        let me = beamish::self_pid();
        for (i, prio) in [
            Priority::Normal,
            Priority::High,
            Priority::Normal,
            Priority::Max,
        ]
        .into_iter()
        .enumerate()
        {
            let o = o.clone();
            SpawnOptions::new()
                .priority(prio)
                .spawn(async move {
                    o.lock().unwrap().push((prio, i));
                    me.send(());
                })
                .unwrap();
        }
        for _ in 0..4 {
            receive::<()>().await;
        }
    })
    .unwrap();
    let order = order.lock().unwrap();
    assert_eq!(
        *order,
        [
            (Priority::Max, 3),
            (Priority::High, 1),
            (Priority::Normal, 0),
            (Priority::Normal, 2)
        ]
    );
}

#[test]
fn low_priority_processes_still_run_while_normal_ones_are_busy() {
    let rt = runtime(1);
    let stop = Arc::new(AtomicBool::new(false));
    let busy_rounds = Arc::new(AtomicU64::new(0));
    let (stop2, rounds2) = (stop.clone(), busy_rounds.clone());
    let (low_done, busy_at_end) = rt
        .block_on(async move {
            let me = beamish::self_pid();
            for _ in 0..3 {
                let (stop, rounds) = (stop2.clone(), rounds2.clone());
                beamish::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        rounds.fetch_add(1, Ordering::Relaxed);
                        beamish::reduce(10).await;
                    }
                });
            }
            SpawnOptions::new()
                .priority(Priority::Low)
                .spawn(async move {
                    for _ in 0..50 {
                        beamish::yield_now().await;
                    }
                    me.send("low done");
                })
                .unwrap();
            let got = receive::<&str>().timeout(Duration::from_secs(10)).await;
            let busy_at_end = !stop2.load(Ordering::Relaxed);
            stop2.store(true, Ordering::Relaxed);
            (got, busy_at_end)
        })
        .unwrap();
    assert_eq!(
        low_done,
        Some("low done"),
        "the low priority process starved"
    );
    assert!(busy_at_end);
    assert!(busy_rounds.load(Ordering::Relaxed) > 0);
}

// ------------------------------------------------------------ reductions

#[test]
fn reduce_in_an_endless_loop_lets_others_run_on_one_thread() {
    let rt = runtime(1);
    let spins = Arc::new(AtomicU64::new(0));
    let s = spins.clone();
    let other_progress = rt
        .block_on(async move {
            beamish::spawn(async move {
                loop {
                    s.fetch_add(1, Ordering::Relaxed);
                    beamish::reduce(1).await;
                }
            });
            // This process shares the only scheduler thread with the loop.
            let mut steps = 0;
            for _ in 0..100 {
                beamish::yield_now().await;
                steps += 1;
            }
            steps
        })
        .unwrap();
    assert_eq!(other_progress, 100);
    assert!(spins.load(Ordering::Relaxed) > 0);
    // The endless loop awaits, so shutdown (on drop) can end it.
    let t = Instant::now();
    rt.shutdown();
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn reduce_of_more_than_a_time_slice_yields_at_once() {
    let rt = runtime(1);
    for n in [5_000, 1 << 31, u32::MAX] {
        let other_ran = rt
            .block_on(async move {
                let flag = Arc::new(AtomicBool::new(false));
                let f = flag.clone();
                beamish::spawn(async move { f.store(true, Ordering::Relaxed) });
                // More reductions than a slice holds: this must yield, and
                // the only other process runs meanwhile.
                beamish::reduce(n).await;
                flag.load(Ordering::Relaxed)
            })
            .unwrap();
        assert!(other_ran, "reduce({n}) did not yield");
    }
}

#[test]
fn yield_now_lets_another_process_run() {
    let rt = runtime(1);
    let yields = rt
        .block_on(async {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            beamish::spawn(async move { f.store(true, Ordering::Relaxed) });
            // Without yielding this would spin forever on the only thread.
            let mut yields = 0u32;
            while !flag.load(Ordering::Relaxed) {
                beamish::yield_now().await;
                yields += 1;
            }
            yields
        })
        .unwrap();
    assert!(yields >= 1);
}

// ------------------------------------------------------------ many processes

#[test]
fn a_hundred_thousand_idle_processes_spawn_and_tear_down() {
    const N: usize = 100_000;
    let rt = runtime(2);
    let handle = rt.handle();
    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let pids = rt
        .block_on(async move {
            let mut pids = Vec::with_capacity(N);
            for _ in 0..N {
                let e = e.clone();
                pids.push(beamish::spawn(async move {
                    receive::<()>().await;
                    e.fetch_add(1, Ordering::Relaxed);
                }));
                beamish::reduce(1).await;
            }
            pids
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || handle
        .process_count()
        == N));
    for pid in &pids {
        pid.send(());
    }
    assert!(
        wait_until(Duration::from_secs(30), || handle.process_count() == 0),
        "{} processes left",
        handle.process_count()
    );
    assert_eq!(ended.load(Ordering::Relaxed), N);
}

#[test]
fn an_idle_process_takes_under_300_bytes() {
    const N: usize = 1_000;
    let rt = runtime(2);
    let handle = rt.handle();
    let pids: Vec<Pid> = (0..N)
        .map(|_| {
            handle
                .spawn(async {
                    receive::<()>().await;
                })
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for &pid in pids.iter().step_by(100) {
        let info = handle.process_info(pid).unwrap();
        assert_eq!(info.message_queue_len, 0);
        assert!(
            info.memory > 0 && info.memory < 300,
            "an idle process reports {} bytes",
            info.memory
        );
        total += info.memory;
    }
    eprintln!("idle process: {} bytes", total / (N / 100));
}
