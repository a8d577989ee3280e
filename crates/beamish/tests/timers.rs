//! Timers: `sleep`, `send_after`, `cancel_timer` and receive timeouts.
//!
//! Durations are checked from below only (a timer may be late on a loaded
//! machine, never early); upper bounds, where there are any, have a margin of
//! ten times or more.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beamish::{Runtime, receive};

fn runtime() -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------------ sleep

#[test]
fn sleep_waits_at_least_the_duration() {
    let rt = runtime();
    rt.block_on(async {
        for d in [0, 1, 3, 10, 25, 50].map(ms) {
            let t = Instant::now();
            beamish::sleep(d).await;
            let took = t.elapsed();
            assert!(took >= d, "sleep({d:?}) returned after {took:?}");
            assert!(
                took < d + Duration::from_secs(5),
                "sleep({d:?}) took {took:?}"
            );
        }
    })
    .unwrap();
}

#[test]
fn many_processes_sleeping_at_once_all_wake() {
    const N: usize = 10_000;
    let rt = runtime();
    let early = rt
        .block_on(async {
            let me = beamish::self_pid();
            for i in 0..N {
                let d = Duration::from_micros(1_000 + (i as u64 * 7919) % 50_000);
                beamish::spawn(async move {
                    let t = Instant::now();
                    beamish::sleep(d).await;
                    me.send(t.elapsed() >= d);
                });
            }
            let mut early = 0;
            for i in 0..N {
                match receive::<bool>().timeout(Duration::from_secs(20)).await {
                    Some(on_time) => early += usize::from(!on_time),
                    None => panic!("only {i} of {N} sleepers woke"),
                }
            }
            early
        })
        .unwrap();
    assert_eq!(early, 0, "some sleeps ended early");
}

// ------------------------------------------------------------ send_after

#[test]
fn send_after_delivers_after_the_delay_not_before() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        for d in [1, 10, 40].map(ms) {
            let t = Instant::now();
            beamish::send_after(me, d, d);
            let got = receive::<Duration>().await;
            let took = t.elapsed();
            assert_eq!(got, d);
            assert!(took >= d, "send_after({d:?}) delivered after {took:?}");
        }
    })
    .unwrap();
}

#[test]
fn send_after_delivers_to_another_process() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let target = beamish::spawn(async move {
            let msg = receive::<&str>().await;
            me.send((msg, Instant::now()));
        });
        let sent = Instant::now();
        beamish::send_after(target, ms(30), "delayed");
        let (msg, arrived) = receive::<(&str, Instant)>().await;
        assert_eq!(msg, "delayed");
        let waited = arrived - sent;
        assert!(waited >= ms(30), "delivered after {waited:?}");
    })
    .unwrap();
}

#[test]
fn send_after_is_delivered_even_if_the_sender_has_exited() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let (sender, _) = beamish::spawn_monitor(async move {
            beamish::send_after(me, ms(30), "from the grave");
        });
        let down = receive::<beamish::Down>().await;
        assert_eq!(down.pid, sender);
        assert_eq!(receive::<&str>().await, "from the grave");
    })
    .unwrap();
}

#[test]
fn send_after_with_zero_delay_is_delivered() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        beamish::send_after(me, Duration::ZERO, "now");
        let got = receive::<&str>().timeout(Duration::from_secs(10)).await;
        assert_eq!(got, Some("now"));
    })
    .unwrap();
}

#[test]
fn send_after_timers_fire_in_deadline_order() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        for d in [40u64, 10, 30, 20, 0] {
            beamish::send_after(me, ms(d), d);
        }
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(receive::<u64>().await);
        }
        assert_eq!(got, [0, 10, 20, 30, 40]);
    })
    .unwrap();
}

#[test]
fn send_after_reaches_a_process_of_another_runtime() {
    let here = runtime();
    let there = runtime();
    let (tx, rx) = std::sync::mpsc::channel();
    let target = there
        .handle()
        .spawn(async move {
            tx.send(receive::<&str>().await).unwrap();
        })
        .unwrap();
    // `send` itself crosses runtimes ...
    here.block_on(async move { target.send("direct") }).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok("direct"));
    let (tx, rx) = std::sync::mpsc::channel();
    let target = there
        .handle()
        .spawn(async move {
            tx.send(receive::<&str>().await).unwrap();
        })
        .unwrap();
    // ... and so must a delayed send.
    here.block_on(async move {
        beamish::send_after(target, ms(5), "delayed");
    })
    .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(3)),
        Ok("delayed"),
        "a send_after to a pid of another runtime was lost"
    );
}

/// A message whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a message's destructor panicked (on purpose)");
    }
}

#[test]
fn a_timer_message_to_a_dead_process_is_dropped() {
    let rt = runtime();
    let payload = Arc::new(());
    let p = payload.clone();
    rt.block_on(async move {
        let (dead, _) = beamish::spawn_monitor(async {});
        receive::<beamish::Down>().await;
        beamish::send_after(dead, ms(5), p);
        beamish::sleep(ms(30)).await;
    })
    .unwrap();
    assert_eq!(
        Arc::strong_count(&payload),
        1,
        "the undelivered message leaked"
    );
}

#[test]
fn a_timer_message_whose_destructor_panics_does_not_stop_the_timers() {
    let rt = runtime();
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    // The root runs on its own thread so that a runtime whose timers stopped
    // makes this test fail instead of hang.
    std::thread::spawn(move || {
        let r = handle.block_on(async {
            let (dead, _) = beamish::spawn_monitor(async {});
            receive::<beamish::Down>().await;
            // Undeliverable: the timer drops the message when it fires.
            beamish::send_after(dead, ms(1), PanicOnDrop);
            beamish::sleep(ms(20)).await;
            // Timers still fire afterwards.
            beamish::sleep(ms(5)).await;
            let me = beamish::self_pid();
            beamish::send_after(me, ms(5), "still ticking");
            receive::<&str>().await
        });
        let _ = tx.send(r);
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(Ok("still ticking")),
        "timers stopped after a message destructor panicked in the timer thread"
    );
}

#[test]
fn pending_timer_messages_are_dropped_at_shutdown() {
    let rt = runtime();
    let payload = Arc::new(());
    let p = payload.clone();
    rt.block_on(async move {
        let me = beamish::self_pid();
        for _ in 0..10 {
            beamish::send_after(me, Duration::from_secs(3_600), p.clone());
        }
        beamish::send_after(me, Duration::MAX, p);
    })
    .unwrap();
    assert_eq!(Arc::strong_count(&payload), 12);
    rt.shutdown();
    assert_eq!(Arc::strong_count(&payload), 1);
}

// ------------------------------------------------------------ cancel_timer

#[test]
fn cancel_timer_returns_the_time_left_before_it_fires() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let t = beamish::send_after(me, Duration::from_secs(60), 1u8);
        let left = beamish::cancel_timer(t).expect("the timer was pending");
        assert!(left <= Duration::from_secs(60), "left: {left:?}");
        assert!(left > Duration::from_secs(50), "left: {left:?}");
    })
    .unwrap();
}

#[test]
fn cancel_timer_after_it_fired_returns_none() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let t = beamish::send_after(me, ms(5), 2u8);
        assert_eq!(receive::<u8>().await, 2);
        assert_eq!(beamish::cancel_timer(t), None);
    })
    .unwrap();
}

#[test]
fn cancel_timer_twice_returns_none_the_second_time() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let t = beamish::send_after(me, Duration::from_secs(60), 3u8);
        assert!(beamish::cancel_timer(t).is_some());
        assert_eq!(beamish::cancel_timer(t), None);
    })
    .unwrap();
}

#[test]
fn a_cancelled_timer_message_never_arrives() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let t = beamish::send_after(me, ms(100), "cancelled");
        let kept = beamish::send_after(me, ms(200), "kept");
        assert!(beamish::cancel_timer(t).is_some());
        // The kept timer fires after the cancelled one would have.
        assert_eq!(receive::<&str>().await, "kept");
        assert_eq!(receive::<&str>().timeout(ms(50)).await, None);
        let _ = kept;
    })
    .unwrap();
}

#[test]
fn cancel_timer_from_outside_the_runtime() {
    let rt = runtime();
    let (t, me) = rt
        .block_on(async {
            let me = beamish::spawn(async {
                receive::<()>().await;
            });
            (beamish::send_after(me, Duration::from_secs(60), 1u8), me)
        })
        .unwrap();
    let left = std::thread::spawn(move || beamish::cancel_timer(t))
        .join()
        .unwrap();
    assert!(left.is_some_and(|l| l > Duration::from_secs(50)));
    assert_eq!(rt.handle().process_info(me).unwrap().message_queue_len, 0);
}

// ------------------------------------------------------------ receive timeouts

#[test]
fn receive_timeout_gives_none_after_about_the_timeout() {
    let rt = runtime();
    rt.block_on(async {
        for d in [1, 10, 50].map(ms) {
            let t = Instant::now();
            assert_eq!(receive::<u32>().timeout(d).await, None);
            let took = t.elapsed();
            assert!(took >= d, "timeout {d:?} ended after {took:?}");
            assert!(
                took < d + Duration::from_secs(5),
                "timeout {d:?} took {took:?}"
            );
        }
    })
    .unwrap();
}

#[test]
fn receive_timeout_returns_a_message_that_arrives_earlier() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        beamish::spawn(async move {
            beamish::sleep(ms(10)).await;
            me.send(7u32);
        });
        let t = Instant::now();
        let got = receive::<u32>().timeout(Duration::from_secs(30)).await;
        assert_eq!(got, Some(7));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );

        // The timer of a receive that was answered does not fire later.
        beamish::send_after(me, ms(5), 8u32);
        assert_eq!(
            receive::<u32>().timeout(Duration::from_secs(30)).await,
            Some(8)
        );
        beamish::sleep(ms(20)).await;
        assert_eq!(receive::<u32>().timeout(Duration::ZERO).await, None);
    })
    .unwrap();
}

#[test]
fn zero_timeout_polls_the_mailbox_without_waiting() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let t = Instant::now();
        assert_eq!(receive::<u32>().timeout(Duration::ZERO).await, None);
        me.send("other");
        assert_eq!(receive::<u32>().timeout(Duration::ZERO).await, None);
        me.send(5u32);
        assert_eq!(receive::<u32>().timeout(Duration::ZERO).await, Some(5));
        assert!(t.elapsed() < Duration::from_secs(1));
        // The message that did not match is still there.
        assert_eq!(
            receive::<&str>().timeout(Duration::ZERO).await,
            Some("other")
        );
    })
    .unwrap();
}

#[test]
fn max_timeout_waits_like_no_timeout() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        beamish::send_after(me, ms(10), 1u64);
        assert_eq!(receive::<u64>().timeout(Duration::MAX).await, Some(1));
    })
    .unwrap();
}

// ------------------------------------------------------------ a million timers

/// Threads of this OS process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// The `Threads:` line of /proc/self/status.
fn os_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_million_pending_timers_cost_memory_not_threads() {
    const TIMERS: usize = 1_000_000;
    // Other tests of this file run in parallel and start their own threads,
    // so the threads of this runtime are counted by name; the whole
    // process's count is printed for information.
    let prefix = "tmillion";
    let rt = Runtime::builder()
        .worker_threads(2)
        .thread_name(prefix)
        .build()
        .unwrap();
    let ready = Arc::new(AtomicUsize::new(0));
    // Wait until every runtime thread has named itself.
    rt.block_on(async {}).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named(prefix) < 4 && Instant::now() < deadline {
        std::thread::sleep(ms(5));
    }
    let before = threads_named(prefix);
    let os_before = os_threads();

    let r = ready.clone();
    let (during, cancelled) = rt
        .block_on(async move {
            let target = beamish::spawn(async {
                receive::<()>().await;
            });
            let mut timers = Vec::with_capacity(TIMERS);
            for i in 0..TIMERS {
                let delay = Duration::from_secs(3_600 + (i % 1_000) as u64);
                timers.push(beamish::send_after(target, delay, i as u32));
                if i % 64 == 0 {
                    beamish::reduce(1).await;
                }
            }
            r.store(timers.len(), Ordering::Relaxed);
            beamish::sleep(ms(20)).await;
            let during = threads_named("tmillion");
            let mut cancelled = 0;
            for (i, t) in timers.into_iter().enumerate() {
                if beamish::cancel_timer(t).is_some() {
                    cancelled += 1;
                }
                if i % 64 == 0 {
                    beamish::reduce(1).await;
                }
            }
            let info = beamish::process_info(target).await.unwrap();
            assert_eq!(info.message_queue_len, 0);
            (during, cancelled)
        })
        .unwrap();
    eprintln!(
        "OS threads: {os_before} before, {} after; runtime threads: {before} before, {during} with {TIMERS} timers",
        os_threads()
    );
    assert_eq!(ready.load(Ordering::Relaxed), TIMERS);
    assert!(before >= 4, "runtime threads: {before}");
    assert_eq!(during, before, "pending timers must not start threads");
    assert_eq!(cancelled, TIMERS, "every pending timer cancels");
}
