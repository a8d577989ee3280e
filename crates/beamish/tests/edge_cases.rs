//! Edge cases of the process API, each with its documented outcome.
//!
//! None of them may crash a scheduler thread, leak a process or lose a
//! message that a live process should get; where it matters a test ends by
//! checking that the runtime still runs new processes ([`assert_healthy`]).
//!
//! | case                                         | outcome                                                     |
//! |----------------------------------------------|-------------------------------------------------------------|
//! | `Handle::spawn` after `Runtime::shutdown`    | `Err(Error::Shutdown)`; the future is dropped, never run    |
//! | `Handle::block_on` after shutdown            | `Err(Reason::Shutdown)`                                     |
//! | send / exit signal to a dead pid             | silently dropped (the message's destructor runs)            |
//! | register a name that is taken                | `Err(NameTaken)`; the holder keeps it                       |
//! | register a pid that already has a name       | `Err(AlreadyRegistered(pid, old))`                          |
//! | register a dead pid                          | `Err(NoProc(pid))`                                          |
//! | unknown name                                 | `send_named`/`unregister`: `Err(UnknownName)`; `whereis`: `None` |
//! | a named process ends                         | its name is free as soon as its `Down`/`Exit` is seen       |
//! | `link(self_pid())`                           | `Ok(())`, no link, no signal                                |
//! | `monitor(dead_pid)`                          | `Down { reason: NoProc }` in the mailbox at once            |
//! | `demonitor` / `demonitor_flush`              | `true` always (Erlang's `demonitor/1,2`); the `_info` forms tell whether it was active |
//! | `receive().timeout(ZERO)`                    | looks once; `None` if nothing matches                       |
//! | `receive().timeout(Duration::MAX)`           | waits forever, until a matching message                     |
//! | a message whose `Drop` panics                | the panic is contained wherever the runtime drops it        |
//! | ... dropped by a `send_after` timer or at shutdown | contained too; timers keep firing, shutdown completes  |
//! | a trapping process panics                    | links get `Exit`/die, monitors get `Down`, with `Panic(msg)`|
//! | many processes panic                         | scheduler threads survive                                   |
//! | processes end                                | `process_count()`/`processes()` return to the baseline      |
//! | `Runtime::shutdown`                          | every process ends with `shutdown`, destructors run, threads joined |
//! | a `block_on` blocked at shutdown             | returns `Err(Reason::Shutdown)`                             |
//! | a destructor spawns during shutdown          | the new process is ended too; shutdown completes            |
//! | `block_on` of a panicking future             | `Err(Reason::Panic(msg))`; the runtime stays usable          |

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beamish::{Down, Error, Exit, Pid, Reason, Ref, Runtime, SpawnOptions};

/// A wait that only a bug can exhaust.
const LONG: Duration = Duration::from_secs(5);

struct Go;
struct Pong;
struct Note<T>(T);

/// Counts its drops.
struct OnDrop(Arc<AtomicUsize>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts its drops, then panics.
struct Bomb(Arc<AtomicUsize>);

impl Drop for Bomb {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a Bomb went off in Drop");
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Runs `root` as the root process of a fresh runtime; a failed assertion in
/// the root fails the test with its message.
fn on_runtime<F>(root: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = Runtime::new().expect("runtime");
    let out = rt
        .block_on(root)
        .unwrap_or_else(|reason| panic!("the root process ended with {reason:?}"));
    rt.shutdown();
    out
}

async fn wait_down(m: Ref) -> Down {
    beamish::receive_if(move |d: &Down| d.monitor == m)
        .timeout(LONG)
        .await
        .expect("no Down message")
}

/// A pid whose process has ended.
async fn dead_pid() -> Pid {
    let (pid, m) = beamish::spawn_monitor(async {});
    wait_down(m).await;
    pid
}

/// Waits (polling every millisecond, inside a process) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        beamish::sleep(Duration::from_millis(1)).await;
    }
}

/// As [`eventually`], on an ordinary thread.
fn eventually_blocking(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The runtime still runs new processes: `n` of them each send one message.
async fn assert_healthy(n: usize) {
    struct Alive(usize);
    let me = beamish::self_pid();
    for i in 0..n {
        beamish::spawn(async move { me.send(Alive(i)) });
    }
    let mut seen = HashSet::new();
    while seen.len() < n {
        let Alive(i) = beamish::receive::<Alive>()
            .timeout(LONG)
            .await
            .expect("a new process did not run");
        seen.insert(i);
    }
}

/// Names of this OS process's threads that start with `prefix` (Linux).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let Ok(entry) = entry else { continue };
        if let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) {
            let name = name.trim_end().to_string();
            if name.starts_with(prefix) {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// How many regular scheduler threads (`{prefix}-{index}`) exist (Linux).
#[cfg(target_os = "linux")]
fn scheduler_threads(prefix: &str) -> usize {
    threads_named(&format!("{prefix}-"))
        .into_iter()
        .filter(|n| n[prefix.len() + 1..].bytes().all(|b| b.is_ascii_digit()))
        .count()
}

// ------------------------------------------------------------ shutdown, spawn

#[test]
fn spawn_after_shutdown_is_refused() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    assert_eq!(rt.block_on(async { 1 }), Ok(1));
    rt.shutdown();

    let dropped = counter();
    let flag = OnDrop(dropped.clone());
    let ran = counter();
    let ran2 = ran.clone();
    let refused = handle.spawn(async move {
        let _flag = flag;
        ran2.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(refused, Err(Error::Shutdown));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the refused future is dropped"
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the refused future never runs"
    );

    let named = handle.spawn_with(SpawnOptions::new().name("late"), async {});
    assert_eq!(named, Err(Error::Shutdown));
    assert_eq!(handle.whereis("late"), None);
    assert_eq!(handle.block_on(async { 2 }), Err(Reason::Shutdown));
    assert_eq!(handle.process_count(), 0);
    assert!(handle.processes().is_empty());
}

#[test]
fn calls_that_need_a_process_fail_cleanly_outside_one() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let pid = handle
        .spawn(async {
            beamish::receive::<Go>().await;
        })
        .unwrap();
    assert_eq!(beamish::try_self_pid(), None);
    assert_eq!(beamish::link(pid), Err(Error::NotInProcess));
    beamish::unlink(pid); // a no-op
    assert_eq!(
        handle.spawn_with(SpawnOptions::new().link(), async {}),
        Err(Error::NotInProcess)
    );
    assert_eq!(
        handle.spawn_with(SpawnOptions::new().monitor(), async {}),
        Err(Error::NotInProcess)
    );
    // Sending from an ordinary thread works.
    pid.send(Go);
    eventually_blocking("the process got Go and ended", || !pid.is_alive());
    rt.shutdown();
}

// ------------------------------------------------------------ dead pids

#[test]
fn send_to_dead_pid_is_dropped_silently() {
    let payload = Arc::new(());
    let p = payload.clone();
    let dead = on_runtime(async move {
        let dead = dead_pid().await;
        assert!(!dead.is_alive());
        dead.send(p.clone());
        dead.send(String::from("into the void"));
        assert_eq!(
            Arc::strong_count(&p),
            2,
            "a message to a dead pid is dropped"
        );
        dead.exit(Reason::other("boom"));
        dead.exit(Reason::Kill);
        // The sender carries on.
        assert_healthy(4).await;
        dead
    });
    // And from an ordinary thread, after the runtime is gone.
    dead.send(payload.clone());
    dead.exit(Reason::Kill);
    assert!(!dead.is_alive());
    assert_eq!(Arc::strong_count(&payload), 1);
}

#[test]
fn send_to_dead_pid_of_live_runtime_from_thread_is_dropped() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let pid = handle.spawn(async {}).unwrap();
    eventually_blocking("the process ended", || !pid.is_alive());
    let payload = Arc::new(());
    pid.send(payload.clone());
    assert_eq!(Arc::strong_count(&payload), 1);
    rt.shutdown();
}

// ------------------------------------------------------------ registry

#[test]
fn register_twice_is_name_taken() {
    on_runtime(async {
        let me = beamish::self_pid();
        let other = beamish::spawn(async {
            beamish::receive::<Go>().await;
        });
        assert_eq!(beamish::register("taken", me), Ok(()));
        assert_eq!(
            beamish::register("taken", me),
            Err(Error::NameTaken("taken".into()))
        );
        assert_eq!(
            beamish::register("taken", other),
            Err(Error::NameTaken("taken".into()))
        );
        assert_eq!(beamish::whereis("taken"), Some(me));

        // Spawning under a taken name fails; the future is dropped, not run.
        let dropped = counter();
        let flag = OnDrop(dropped.clone());
        let before = beamish::processes().len();
        let spawned = SpawnOptions::new().name("taken").spawn(async move {
            let _flag = flag;
            panic!("must not run");
        });
        assert_eq!(spawned, Err(Error::NameTaken("taken".into())));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(beamish::processes().len(), before);
        assert_eq!(beamish::whereis("taken"), Some(me));
        other.send(Go);
    });
}

#[test]
fn register_pid_that_has_a_name_is_already_registered() {
    on_runtime(async {
        let me = beamish::self_pid();
        beamish::register("first", me).unwrap();
        assert_eq!(
            beamish::register("second", me),
            Err(Error::AlreadyRegistered(me, "first".into()))
        );
        assert_eq!(beamish::whereis("second"), None);
        assert_eq!(beamish::whereis("first"), Some(me));
        // After unregistering, the pid may take another name.
        beamish::unregister("first").unwrap();
        assert_eq!(beamish::register("second", me), Ok(()));
        assert_eq!(beamish::registered(), vec![Arc::<str>::from("second")]);
    });
}

#[test]
fn register_dead_pid_is_noproc() {
    on_runtime(async {
        let dead = dead_pid().await;
        assert_eq!(beamish::register("ghost", dead), Err(Error::NoProc(dead)));
        assert_eq!(beamish::whereis("ghost"), None);
        assert!(beamish::registered().is_empty());
    });
}

#[test]
fn unknown_names() {
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    rt.block_on(async {
        assert_eq!(
            beamish::send_named("nobody", 1u32),
            Err(Error::UnknownName("nobody".into()))
        );
        assert_eq!(beamish::whereis("nobody"), None);
        assert_eq!(
            beamish::unregister("nobody"),
            Err(Error::UnknownName("nobody".into()))
        );
        assert_healthy(2).await;
    })
    .unwrap();
    assert_eq!(handle.whereis("nobody"), None);
    rt.shutdown();
}

#[test]
fn names_are_freed_on_exit() {
    // A supervisor restarts a named child as soon as it sees the old one's
    // Down: the name must be free by then, whatever the exit reason.
    on_runtime(async {
        for round in 0..200u32 {
            let s = SpawnOptions::new()
                .name("worker")
                .monitor()
                .spawn(async move {
                    beamish::receive::<Go>().await;
                    match round % 4 {
                        0 => {}
                        1 => beamish::exit::<()>(Reason::other("boom")).await,
                        2 => {
                            // Killed below.
                            beamish::receive::<Go>().await;
                        }
                        _ if round == 3 => panic!("worker panics"),
                        _ => beamish::exit::<()>(Reason::Shutdown).await,
                    }
                })
                .unwrap_or_else(|e| panic!("round {round}: the name is still taken: {e:?}"));
            assert_eq!(beamish::whereis("worker"), Some(s.pid));
            beamish::send_named("worker", Go).unwrap();
            if round % 4 == 2 {
                s.pid.exit(Reason::Kill);
            }
            wait_down(s.monitor.unwrap()).await;
            assert_eq!(
                beamish::whereis("worker"),
                None,
                "round {round}: the name outlived the process"
            );
            assert_eq!(
                beamish::send_named("worker", Go),
                Err(Error::UnknownName("worker".into()))
            );
        }
        assert!(beamish::registered().is_empty());
    });
}

#[test]
fn registered_name_is_freed_for_a_linked_trapping_restarter() {
    // The same with a link: the Exit message is the signal to restart.
    on_runtime(async {
        beamish::trap_exit(true);
        for round in 0..100u32 {
            let pid = SpawnOptions::new()
                .name("linked_worker")
                .link()
                .spawn(async {
                    beamish::exit::<()>(Reason::other("crash")).await;
                })
                .unwrap_or_else(|e| panic!("round {round}: the name is still taken: {e:?}"))
                .pid;
            let exit = beamish::receive::<Exit>().timeout(LONG).await.unwrap();
            assert_eq!(exit.from, pid);
            assert_eq!(
                beamish::whereis("linked_worker"),
                None,
                "round {round}: the name outlived the process"
            );
        }
    });
}

// ------------------------------------------------------------ links, monitors

#[test]
fn link_to_self_does_nothing() {
    on_runtime(async {
        let me = beamish::self_pid();
        assert_eq!(beamish::link(me), Ok(()));
        let info = beamish::process_info(me).await.unwrap();
        assert!(
            info.links.is_empty(),
            "no link to oneself: {:?}",
            info.links
        );
        beamish::unlink(me);
        // Trapping or not, no Exit message appears.
        beamish::trap_exit(true);
        assert_eq!(beamish::link(me), Ok(()));
        assert_eq!(
            beamish::receive::<Exit>()
                .timeout(Duration::from_millis(50))
                .await,
            None
        );
        assert!(me.is_alive());
    });
}

#[test]
fn monitor_dead_pid_gives_noproc_at_once() {
    let dead_elsewhere = on_runtime(async { beamish::self_pid() });
    on_runtime(async move {
        let dead = dead_pid().await;
        let m = beamish::monitor(dead);
        let down = beamish::receive_if(move |d: &Down| d.monitor == m)
            .timeout(Duration::ZERO)
            .await;
        assert_eq!(
            down,
            Some(Down {
                monitor: m,
                pid: dead,
                reason: Reason::NoProc
            })
        );
        // A pid of a runtime that no longer exists.
        let m = beamish::monitor(dead_elsewhere);
        let down = beamish::receive_if(move |d: &Down| d.monitor == m)
            .timeout(Duration::ZERO)
            .await
            .expect("Down at once");
        assert_eq!((down.pid, down.reason), (dead_elsewhere, Reason::NoProc));
    });
}

// ------------------------------------------------------------ receive timeouts

#[test]
fn receive_timeout_zero_polls_once() {
    on_runtime(async {
        let me = beamish::self_pid();
        assert_eq!(
            beamish::receive::<u32>().timeout(Duration::ZERO).await,
            None
        );
        me.send(5u32);
        assert_eq!(
            beamish::receive::<u32>().timeout(Duration::ZERO).await,
            Some(5)
        );
        me.send("text");
        assert_eq!(
            beamish::receive::<u32>().timeout(Duration::ZERO).await,
            None,
            "only a matching message is taken"
        );
        assert_eq!(
            beamish::receive::<&str>().timeout(Duration::ZERO).await,
            Some("text"),
            "the other message stays"
        );
        // A message another process sent before it ended.
        let (_, m) = beamish::spawn_monitor(async move { me.send(9u32) });
        wait_down(m).await;
        assert_eq!(
            beamish::receive_if(|n: &u32| *n == 9)
                .timeout(Duration::ZERO)
                .await,
            Some(9)
        );
        // Many empty polls neither block nor leak anything.
        for _ in 0..1000 {
            assert_eq!(
                beamish::receive::<u64>().timeout(Duration::ZERO).await,
                None
            );
        }
    });
}

#[test]
fn receive_timeout_max_waits_forever() {
    on_runtime(async {
        let root = beamish::self_pid();
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        for timeout in [Duration::MAX, century] {
            let waiter = beamish::spawn(async move {
                let got = beamish::receive::<u32>().timeout(timeout).await;
                root.send(Note(got));
            });
            waiter.send(1u8); // not a match: the waiter keeps waiting
            let early = beamish::receive::<Note<Option<u32>>>()
                .timeout(Duration::from_millis(50))
                .await;
            assert!(
                early.is_none(),
                "{timeout:?}: returned {:?}",
                early.map(|n| n.0)
            );
            assert!(waiter.is_alive());
            waiter.send(7u32);
            let got = beamish::receive::<Note<Option<u32>>>()
                .timeout(LONG)
                .await
                .expect("the waiter did not get its message");
            assert_eq!(got.0, Some(7));
        }
    });
}

// ------------------------------------------------------------ panicking drops

#[test]
fn message_with_panicking_drop_sent_to_dead_pid() {
    let bombs = counter();
    let b = bombs.clone();
    let dead = on_runtime(async move {
        let dead = dead_pid().await;
        dead.send(Bomb(b.clone()));
        assert_eq!(b.load(Ordering::SeqCst), 1);
        // The sender is unharmed and the runtime runs on.
        assert_healthy(8).await;
        dead
    });
    // From an ordinary thread, too.
    dead.send(Bomb(bombs.clone()));
    assert_eq!(bombs.load(Ordering::SeqCst), 2);
}

#[test]
fn message_with_panicking_drop_left_in_mailbox_of_exiting_process() {
    let bombs = counter();
    let b = bombs.clone();
    on_runtime(async move {
        // Left in the queue of a process that returns normally.
        let (pid, m) = beamish::spawn_monitor(async {
            beamish::receive::<Go>().await;
        });
        pid.send(Bomb(b.clone()));
        pid.send(Go);
        let down = wait_down(m).await;
        assert_eq!(
            down.reason,
            Reason::Normal,
            "a panicking Drop does not change the reason"
        );
        assert_eq!(b.load(Ordering::SeqCst), 1);

        // In the mailbox (queued or not yet seen) of a process that is killed.
        let (pid, m) = beamish::spawn_monitor(async {
            beamish::receive::<Go>().await;
        });
        for _ in 0..3 {
            pid.send(Bomb(b.clone()));
        }
        pid.exit(Reason::Kill);
        assert_eq!(wait_down(m).await.reason, Reason::Killed);
        eventually("every Bomb was dropped", || b.load(Ordering::SeqCst) == 4).await;

        // Held by the future of a process that is killed.
        let held = Bomb(b.clone());
        let (pid, m) = beamish::spawn_monitor(async move {
            let _held = held;
            beamish::receive::<Go>().await;
        });
        pid.exit(Reason::other("stop"));
        assert_eq!(wait_down(m).await.reason, Reason::other("stop"));
        assert_eq!(b.load(Ordering::SeqCst), 5);

        // Held by a process that is blocked when the runtime shuts down:
        // see below, outside this runtime.
        assert_healthy(8).await;
    });

    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let b = bombs.clone();
    let pid = handle
        .spawn(async {
            beamish::receive::<Go>().await;
        })
        .unwrap();
    pid.send(Bomb(b.clone()));
    let held = Bomb(b);
    handle
        .spawn(async move {
            let _held = held;
            beamish::receive::<Go>().await;
        })
        .unwrap();
    rt.shutdown();
    assert_eq!(bombs.load(Ordering::SeqCst), 7);
    assert_eq!(handle.process_count(), 0);
}

#[test]
fn message_with_panicking_drop_sent_after_delay_to_dead_pid() {
    // `send_after` to a pid that is dead when the timer fires: the runtime's
    // timer drops the message, and must contain the panic like `send` does.
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let bombs = counter();
    let b = bombs.clone();
    rt.block_on(async move {
        let dead = dead_pid().await;
        beamish::send_after(dead, Duration::from_millis(1), Bomb(b));
    })
    .unwrap();
    eventually_blocking("the timer fired", || bombs.load(Ordering::SeqCst) == 1);
    // Timers still fire afterwards (checked from this thread, so that a
    // runtime whose timers stopped cannot hang the test).
    let (tx, rx) = std::sync::mpsc::channel();
    handle
        .spawn(async move {
            beamish::sleep(Duration::from_millis(10)).await;
            let got = beamish::receive::<Go>()
                .timeout(Duration::from_millis(10))
                .await;
            tx.send(got.is_none()).unwrap();
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(LONG),
        Ok(true),
        "sleep/receive timeouts no longer fire after a message's Drop panicked in the timer"
    );
    rt.shutdown();
}

#[test]
fn message_with_panicking_drop_in_pending_timer_at_shutdown() {
    // A `send_after` still pending when the runtime shuts down: its message
    // is dropped by the shutdown, which must still complete.
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let bombs = counter();
    let b = bombs.clone();
    let target = handle
        .spawn(async {
            beamish::receive::<Go>().await;
        })
        .unwrap();
    rt.block_on(async move {
        beamish::send_after(target, Duration::from_secs(3600), Bomb(b));
    })
    .unwrap();
    let shutdown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.shutdown()));
    assert!(
        shutdown.is_ok(),
        "Runtime::shutdown panicked while dropping a pending timer's message"
    );
    assert_eq!(bombs.load(Ordering::SeqCst), 1);
    assert_eq!(handle.process_count(), 0);
}

// ------------------------------------------------------------ panics

#[test]
fn panic_while_trapping_exits_reaches_links_and_monitors() {
    on_runtime(async {
        beamish::trap_exit(true);
        let root = beamish::self_pid();
        // A non-trapping partner, linked to the subject below.
        let (partner, partner_m) = beamish::spawn_monitor(async {
            beamish::receive::<Go>().await;
        });
        let subject = SpawnOptions::new()
            .link()
            .monitor()
            .trap_exit(true)
            .spawn(async move {
                beamish::link(partner).unwrap();
                root.send(Note("ready"));
                beamish::receive::<Go>().await;
                panic!("trapping panic");
            })
            .unwrap();
        beamish::receive::<Note<&str>>()
            .timeout(LONG)
            .await
            .unwrap();
        subject.pid.send(Go);

        let panic = Reason::Panic("trapping panic".into());
        let exit = beamish::receive::<Exit>().timeout(LONG).await.unwrap();
        assert_eq!(
            exit,
            Exit {
                from: subject.pid,
                reason: panic.clone()
            }
        );
        let down = wait_down(subject.monitor.unwrap()).await;
        assert_eq!((down.pid, down.reason), (subject.pid, panic.clone()));
        let down = wait_down(partner_m).await;
        assert_eq!((down.pid, down.reason), (partner, panic));
    });
}

#[test]
fn panicking_processes_do_not_kill_scheduler_threads() {
    let rt = Runtime::builder()
        .worker_threads(2)
        .max_spare_threads(0)
        .thread_name("edgepanic")
        .build()
        .unwrap();
    // A new thread takes its name when it first runs: wait for both.
    #[cfg(target_os = "linux")]
    eventually_blocking("both scheduler threads have started", || {
        scheduler_threads("edgepanic") == 2
    });
    rt.block_on(async {
        let mut monitors = Vec::new();
        for i in 0..64u32 {
            let (_, m) = beamish::spawn_monitor(async move {
                match i % 4 {
                    // At the first poll.
                    0 => panic!("panic {i}"),
                    // After an await.
                    1 => {
                        beamish::yield_now().await;
                        panic!("panic {i}");
                    }
                    // Inside a receive predicate (user code the runtime calls).
                    2 => {
                        // Something for the predicate to look at.
                        beamish::self_pid().send(i);
                        beamish::receive_if(|_: &u32| panic!("panic {i}")).await;
                    }
                    // In the destructor of a local, as the future completes.
                    _ => {
                        struct PanicOnDrop(u32);
                        impl Drop for PanicOnDrop {
                            fn drop(&mut self) {
                                panic!("panic {}", self.0);
                            }
                        }
                        let _p = PanicOnDrop(i);
                        beamish::yield_now().await;
                    }
                }
            });
            monitors.push((i, m));
        }
        for (i, m) in monitors {
            let down = wait_down(m).await;
            assert_eq!(down.reason, Reason::Panic(format!("panic {i}").into()));
        }
        assert_healthy(100).await;
    })
    .unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(
        scheduler_threads("edgepanic"),
        2,
        "both scheduler threads are still there"
    );
    rt.shutdown();
    #[cfg(target_os = "linux")]
    assert!(threads_named("edgepanic").is_empty());
}

#[test]
fn block_on_panicking_future_returns_err_panic() {
    let rt = Runtime::new().unwrap();
    let r: Result<(), Reason> = rt.block_on(async { panic!("root boom") });
    assert_eq!(r, Err(Reason::Panic("root boom".into())));
    let r = rt.block_on(async {
        let v: Vec<u32> = Vec::new();
        v[std::hint::black_box(0)]
    });
    assert!(
        matches!(&r, Err(Reason::Panic(m)) if m.contains("index out of bounds")),
        "{r:?}"
    );
    // Ended by another process, or by exit.
    let r = rt.block_on(async {
        let me = beamish::self_pid();
        beamish::spawn(async move { me.exit(Reason::Kill) });
        beamish::receive::<Go>().await;
    });
    assert_eq!(r, Err(Reason::Killed));
    // The runtime is still usable.
    assert_eq!(rt.block_on(async { 5 }), Ok(5));
    rt.shutdown();
}

// ------------------------------------------------------------ no leaks

#[test]
fn process_count_returns_to_baseline() {
    const N: u32 = 400;
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let baseline = handle.process_count();
    assert_eq!(baseline, 0);
    assert!(handle.processes().is_empty());
    let drops = counter();
    let d = drops.clone();
    let h = handle.clone();
    rt.block_on(async move {
        let root = beamish::self_pid();
        let mut monitors = Vec::new();
        let mut to_kill = Vec::new();
        for i in 0..N {
            let flag = OnDrop(d.clone());
            let (pid, m) = beamish::spawn_monitor(async move {
                let _flag = flag;
                match i % 5 {
                    0 => {}
                    1 => beamish::exit::<()>(Reason::other("boom")).await,
                    2 => {
                        // Killed below.
                        beamish::receive::<Go>().await;
                    }
                    3 => {
                        // Dies through a link.
                        beamish::spawn_link(async {
                            beamish::exit::<()>(Reason::other("chain")).await
                        });
                        beamish::receive::<Go>().await;
                    }
                    _ if i % 100 == 4 => panic!("leak test panic"),
                    _ => beamish::sleep(Duration::from_millis(1)).await,
                }
            });
            if i % 5 == 2 {
                to_kill.push(pid);
            }
            monitors.push(m);
        }
        for pid in to_kill {
            pid.exit(Reason::Kill);
        }
        for m in monitors {
            wait_down(m).await;
        }
        eventually("only the root is left", || h.process_count() == 1).await;
        assert_eq!(h.processes(), vec![root]);
    })
    .unwrap();
    eventually_blocking("the root is gone too", || {
        handle.process_count() == baseline
    });
    assert!(handle.processes().is_empty());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        N as usize,
        "every future was dropped"
    );
    rt.shutdown();
}

#[test]
fn messages_from_many_threads_are_all_delivered_in_order() {
    const THREADS: usize = 4;
    const PER: u32 = 5000;
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = handle
        .spawn(async move {
            let mut next = [0u32; THREADS];
            for _ in 0..THREADS as u32 * PER {
                let (t, n) = beamish::receive::<(usize, u32)>()
                    .timeout(LONG)
                    .await
                    .expect("a message was lost");
                assert_eq!(n, next[t], "thread {t}: out of order");
                next[t] += 1;
            }
            tx.send(next).unwrap();
        })
        .unwrap();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for n in 0..PER {
                    receiver.send((t, n));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let got = rx.recv_timeout(LONG).expect("the receiver did not finish");
    assert_eq!(got, [PER; THREADS]);
    rt.shutdown();
}

// ------------------------------------------------------------ runtime shutdown

/// What an observer in another runtime saw.
#[derive(Debug)]
enum Seen {
    Ready,
    Down(Down),
    Exit(Exit),
}

enum Cmd {
    Ping(Pid),
    LinkTo(Pid),
}

#[test]
fn shutdown_ends_every_process_with_reason_shutdown() {
    const N: usize = 20;
    let victims_rt = Runtime::new().unwrap();
    let observer_rt = Runtime::new().unwrap();
    let drops = counter();

    // Victims, blocked in receive, each holding a value whose Drop counts.
    // Victim 0 traps exits and is linked to victim 1.
    let d = drops.clone();
    let victims: Vec<Pid> = victims_rt
        .block_on(async move {
            let root = beamish::self_pid();
            let mut victims = Vec::new();
            for i in 0..N {
                let flag = OnDrop(d.clone());
                let pid = SpawnOptions::new()
                    .trap_exit(i == 0)
                    .spawn(async move {
                        let _flag = flag;
                        loop {
                            match beamish::receive::<Cmd>().await {
                                Cmd::Ping(from) => from.send(Pong),
                                Cmd::LinkTo(pid) => beamish::link(pid).unwrap(),
                            }
                        }
                    })
                    .unwrap()
                    .pid;
                victims.push(pid);
            }
            victims[0].send(Cmd::LinkTo(victims[1]));
            victims[0].send(Cmd::Ping(root));
            beamish::receive::<Pong>().timeout(LONG).await.unwrap();
            victims
        })
        .unwrap();

    // The observer, in another runtime: traps exits, is linked to victims 0
    // (trapping) and 2 (not trapping), and monitors them all.
    let (tx, rx) = std::sync::mpsc::channel();
    let watched = victims.clone();
    observer_rt
        .handle()
        .spawn(async move {
            beamish::trap_exit(true);
            let me = beamish::self_pid();
            beamish::link(watched[0]).unwrap();
            beamish::link(watched[2]).unwrap();
            for &pid in &watched {
                beamish::monitor(pid);
            }
            // A pong proves each victim has applied the link and monitor.
            for &pid in &watched {
                pid.send(Cmd::Ping(me));
                beamish::receive::<Pong>().timeout(LONG).await.unwrap();
            }
            tx.send(Seen::Ready).unwrap();
            loop {
                let m = beamish::receive_match(|m| m.is::<Down>() || m.is::<Exit>()).await;
                let seen = match m.downcast::<Down>() {
                    Ok(down) => Seen::Down(down),
                    Err(m) => Seen::Exit(m.downcast::<Exit>().unwrap()),
                };
                if tx.send(seen).is_err() {
                    break;
                }
            }
        })
        .unwrap();
    assert!(matches!(rx.recv_timeout(LONG), Ok(Seen::Ready)));

    victims_rt.shutdown();
    assert_eq!(drops.load(Ordering::SeqCst), N, "every destructor ran");

    let mut downs = HashSet::new();
    let mut exits = HashSet::new();
    while downs.len() < N || exits.len() < 2 {
        match rx.recv_timeout(LONG) {
            Ok(Seen::Down(d)) => {
                assert_eq!(d.reason, Reason::Shutdown, "{d:?}");
                assert!(downs.insert(d.pid));
            }
            Ok(Seen::Exit(e)) => {
                assert_eq!(e.reason, Reason::Shutdown, "{e:?}");
                assert!(exits.insert(e.from));
            }
            other => panic!(
                "{other:?} after {} Downs and {} Exits",
                downs.len(),
                exits.len()
            ),
        }
    }
    assert_eq!(downs, victims.iter().copied().collect());
    assert_eq!(exits, HashSet::from([victims[0], victims[2]]));
    observer_rt.shutdown();
}

#[test]
fn shutdown_with_10000_blocked_processes_is_quick_and_joins_threads() {
    const N: usize = 10_000;
    let rt = Runtime::builder()
        .thread_name("edgeshut")
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = rt.handle();
    let drops = counter();
    let started = counter();
    let (d, s) = (drops.clone(), started.clone());
    rt.block_on(async move {
        for i in 0..N {
            let flag = OnDrop(d.clone());
            let s = s.clone();
            beamish::spawn(async move {
                let _flag = flag;
                s.fetch_add(1, Ordering::SeqCst);
                match i % 4 {
                    // Most wait for a message that never comes...
                    0 | 1 => {
                        beamish::receive::<Go>().await;
                    }
                    // ... some with a long timeout, some asleep.
                    2 => {
                        let hour = Duration::from_secs(3600);
                        beamish::receive::<Go>().timeout(hour).await;
                    }
                    _ => beamish::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
        // And a few never stop yielding.
        for _ in 0..4 {
            let flag = OnDrop(d.clone());
            let s = s.clone();
            beamish::spawn(async move {
                let _flag = flag;
                s.fetch_add(1, Ordering::SeqCst);
                loop {
                    beamish::yield_now().await;
                }
            });
        }
    })
    .unwrap();
    eventually_blocking("every process is blocked in receive", || {
        started.load(Ordering::SeqCst) == N + 4
    });
    // (The check that the threads are gone means something only if they
    // can be seen while they run.)
    #[cfg(target_os = "linux")]
    eventually_blocking("the runtime's threads are visible", || {
        scheduler_threads("edgeshut") >= 1
    });

    let t = Instant::now();
    rt.shutdown();
    let took = t.elapsed();
    assert_eq!(handle.process_count(), 0, "shutdown left processes behind");
    assert_eq!(drops.load(Ordering::SeqCst), N + 4, "every destructor ran");
    #[cfg(target_os = "linux")]
    assert!(
        threads_named("edgeshut").is_empty(),
        "threads left: {:?}",
        threads_named("edgeshut")
    );
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[test]
fn name_is_free_when_a_watcher_in_another_runtime_sees_down() {
    // As above, with the watcher in another runtime, so that it runs on
    // another thread while the worker is still ending.
    let workers_rt = Runtime::new().unwrap();
    let observer_rt = Runtime::new().unwrap();
    let workers = workers_rt.handle();
    let stale = observer_rt
        .block_on(async move {
            let mut stale = Vec::new();
            for round in 0..300u32 {
                let pid = workers
                    .spawn_with(SpawnOptions::new().name("remote_worker"), async {
                        beamish::receive::<Go>().await;
                    })
                    .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
                let m = beamish::monitor(pid);
                pid.send(Go);
                wait_down(m).await;
                if workers.whereis("remote_worker").is_some() {
                    stale.push(round);
                    eventually("the name is freed", || {
                        workers.whereis("remote_worker").is_none()
                    })
                    .await;
                }
            }
            stale
        })
        .unwrap();
    assert!(
        stale.is_empty(),
        "in {} of 300 rounds the name was still registered after the Down: {stale:?}",
        stale.len()
    );
    observer_rt.shutdown();
    workers_rt.shutdown();
}

#[test]
fn block_on_blocked_at_shutdown_returns_err_shutdown() {
    // The root process of a `block_on` on another thread is one of the
    // processes shutdown ends: its caller sees the reason, `shutdown`.
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let caller = std::thread::spawn(move || {
        handle.block_on(async move {
            tx.send(()).unwrap();
            beamish::receive::<Go>().await;
        })
    });
    rx.recv_timeout(LONG).expect("the root process started");
    rt.shutdown();
    assert_eq!(caller.join().unwrap(), Err(Reason::Shutdown));
}

#[test]
fn process_spawned_by_a_destructor_during_shutdown_is_ended_too() {
    // A process's destructor spawns a process while the runtime shuts down:
    // the newcomer is told to exit at once, and shutdown still completes.
    struct SpawnOnDrop(Arc<AtomicUsize>);
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let flag = OnDrop(self.0.clone());
            beamish::spawn(async move {
                let _flag = flag;
                beamish::receive::<Go>().await;
            });
        }
    }
    let rt = Runtime::new().unwrap();
    let handle = rt.handle();
    let drops = counter();
    let (tx, rx) = std::sync::mpsc::channel();
    let held = SpawnOnDrop(drops.clone());
    handle
        .spawn(async move {
            let _held = held;
            tx.send(()).unwrap();
            beamish::receive::<Go>().await;
        })
        .unwrap();
    rx.recv_timeout(LONG).expect("the process started");
    rt.shutdown();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the late process was ended"
    );
    assert_eq!(handle.process_count(), 0);
}

/// `demonitor/1` and `demonitor(Ref, [flush])` are `true` whatever the
/// monitor's state, as in Erlang; `[info]` and `[flush, info]` tell
/// whether it was still active.
#[test]
fn demonitor_is_true_and_its_info_forms_tell_whether_it_was_active() {
    on_runtime(async {
        // Active: info says so.
        let pid = beamish::spawn(async { beamish::receive::<()>().await });
        let m = beamish::monitor(pid);
        assert!(beamish::demonitor_info(m));
        assert!(!beamish::demonitor_info(m), "taken down already");
        assert!(beamish::demonitor(m));
        pid.send(());
        // Fired: the Down is in the mailbox.
        let (_, m) = beamish::spawn_monitor(async {});
        eventually_down(m).await;
        assert!(beamish::demonitor(m), "demonitor/1 of a fired monitor");
        assert!(!beamish::demonitor_info(m));
        assert!(!beamish::demonitor_flush_info(m), "fired: not active");
        let left = beamish::receive_if(move |d: &Down| d.monitor == m)
            .timeout(Duration::ZERO)
            .await;
        assert!(left.is_none(), "flushed");
        let (_, m) = beamish::spawn_monitor(async {});
        eventually_down(m).await;
        assert!(beamish::demonitor_flush(m));
        // Never a monitor.
        let stray = Ref::new();
        assert!(beamish::demonitor(stray));
        assert!(beamish::demonitor_flush(stray));
        assert!(!beamish::demonitor_info(stray));
        assert!(!beamish::demonitor_flush_info(stray));
    });
}

/// Waits until the `Down` of `m` is in the mailbox, leaving it there.
async fn eventually_down(m: Ref) {
    let me = beamish::self_pid();
    let deadline = Instant::now() + LONG;
    loop {
        let info = beamish::process_info(me).await.expect("own info");
        if info.message_queue_len >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "no Down for {m:?}");
        beamish::sleep(Duration::from_millis(1)).await;
    }
}
