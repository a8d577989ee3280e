//! Mailboxes: selective receive, marks, many senders, forwarding.

use std::time::{Duration, Instant};

use beamish::{Message, Pid, Ref, Runtime, receive, receive_if, receive_match};

fn runtime() -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

/// Takes every queued `T` without waiting.
async fn drain<T: Send + 'static>() -> Vec<T> {
    let mut out = Vec::new();
    while let Some(v) = receive::<T>().timeout(Duration::ZERO).await {
        out.push(v);
    }
    out
}

// ------------------------------------------------------------ selective receive

#[test]
fn selective_receive_keeps_the_order_of_unmatched_messages() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        for i in 0..10u32 {
            me.send(i);
            me.send(format!("s{i}"));
        }
        assert_eq!(receive_if(|n: &u32| *n == 5).await, 5);
        assert_eq!(receive_if(|s: &String| s == "s7").await, "s7");
        assert_eq!(receive_if(|n: &u32| *n == 0).await, 0);
        assert_eq!(receive_if(|n: &u32| *n == 9).await, 9);
        assert_eq!(drain::<u32>().await, [1, 2, 3, 4, 6, 7, 8]);
        assert_eq!(
            drain::<String>().await,
            ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s8", "s9"]
        );
    })
    .unwrap();
}

#[test]
fn unmatched_messages_keep_their_order_across_waits() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let sender = beamish::spawn(async move {
            for i in 0..100u32 {
                me.send(i);
                if i % 10 == 9 {
                    beamish::sleep(Duration::from_millis(1)).await;
                }
            }
            me.send("end");
        });
        // Waits (and is woken) many times while the u32s pile up.
        assert_eq!(receive::<&str>().await, "end");
        assert_eq!(drain::<u32>().await, (0..100).collect::<Vec<_>>());
        let _ = sender;
    })
    .unwrap();
}

#[test]
fn receive_by_type_skips_messages_of_other_types() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        me.send(1u8);
        me.send("text");
        me.send(2u16);
        me.send(3u8);
        assert_eq!(receive::<u16>().await, 2);
        assert_eq!(receive::<&str>().await, "text");
        assert_eq!(receive::<u8>().await, 1);
        assert_eq!(receive::<u8>().await, 3);
        // A type nobody sent is not confused with a similar one.
        me.send(4u32);
        assert_eq!(receive::<i32>().timeout(Duration::ZERO).await, None);
        assert_eq!(receive::<u32>().await, 4);
    })
    .unwrap();
}

#[test]
fn receive_if_takes_the_first_message_the_predicate_accepts() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        for i in [3u32, 8, 5, 10, 1] {
            me.send(i);
        }
        assert_eq!(receive_if(|n: &u32| *n > 4).await, 8);
        assert_eq!(receive_if(|n: &u32| *n > 4).await, 5);
        assert_eq!(receive_if(|n: &u32| *n > 4).await, 10);
        assert_eq!(
            receive_if(|n: &u32| *n > 4).timeout(Duration::ZERO).await,
            None
        );
        assert_eq!(drain::<u32>().await, [3, 1]);
    })
    .unwrap();
}

#[test]
fn receive_if_waits_for_a_matching_message_from_another_process() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        beamish::spawn(async move {
            for i in 0..20u32 {
                me.send(i);
                beamish::yield_now().await;
            }
        });
        assert_eq!(receive_if(|n: &u32| *n == 19).await, 19);
        assert_eq!(drain::<u32>().await, (0..19).collect::<Vec<_>>());
    })
    .unwrap();
}

#[test]
fn receive_match_returns_a_message_to_downcast() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        me.send(1u8);
        me.send(String::from("hello"));
        me.send(2.5f64);
        let m = receive_match(|m| m.is::<String>() || m.is::<f64>()).await;
        assert!(m.type_name().contains("String"), "{}", m.type_name());
        assert_eq!(
            m.downcast_ref::<String>().map(String::as_str),
            Some("hello")
        );
        let m = m.downcast::<f64>().expect_err("it is a String");
        assert_eq!(m.downcast::<String>().unwrap(), "hello");

        let m = receive_match(|m| m.downcast_ref::<f64>().is_some_and(|v| *v > 2.0)).await;
        assert_eq!(*m.into_any().downcast::<f64>().unwrap(), 2.5);
        assert_eq!(receive::<u8>().await, 1);
    })
    .unwrap();
}

// ------------------------------------------------------------ marks

#[test]
fn after_mark_ignores_older_messages_that_would_match() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        me.send(1u32); // older than the mark
        let m = beamish::mark();
        beamish::spawn(async move { me.send(2u32) });
        assert_eq!(receive::<u32>().after_mark(m).await, 2);
        // The older message is still there.
        assert_eq!(receive::<u32>().timeout(Duration::ZERO).await, Some(1));
    })
    .unwrap();
}

#[test]
fn after_mark_with_a_timeout_ignores_older_messages() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        me.send(1u32);
        let m = beamish::mark();
        assert_eq!(
            receive::<u32>()
                .timeout(Duration::from_millis(10))
                .after_mark(m)
                .await,
            None
        );
        me.send(2u32);
        assert_eq!(
            receive::<u32>()
                .timeout(Duration::from_secs(10))
                .after_mark(m)
                .await,
            Some(2)
        );
        assert_eq!(receive::<u32>().await, 1);
    })
    .unwrap();
}

#[test]
fn after_mark_survives_the_removal_of_the_message_it_follows() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        me.send(1u32);
        me.send("newest before the mark");
        let m = beamish::mark();
        // The message the mark sits after is taken out by another receive.
        assert_eq!(receive::<&str>().await, "newest before the mark");
        me.send(2u32);
        assert_eq!(receive::<u32>().after_mark(m).await, 2);
        assert_eq!(receive::<u32>().await, 1);
    })
    .unwrap();
}

#[test]
fn after_mark_ignores_older_messages_even_after_a_newer_mark() {
    // `process_info` (like any call) marks the mailbox internally; a mark
    // taken before it must keep meaning "messages after this point".
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let other = beamish::spawn(async {
            receive::<()>().await;
        });
        me.send(1u32); // older than the mark
        let m = beamish::mark();
        assert!(beamish::process_info(other).await.is_some());
        me.send(2u32);
        assert_eq!(
            receive::<u32>().after_mark(m).await,
            2,
            "a receive after a mark took a message older than the mark"
        );
        assert_eq!(receive::<u32>().await, 1);
    })
    .unwrap();
}

/// Request to the server: reply to `from` with `Reply(tag, n + 1)`.
struct Request {
    from: Pid,
    tag: Ref,
    n: u64,
}

struct Reply(Ref, u64);

#[test]
fn a_call_with_a_mark_stays_fast_with_a_long_backlog() {
    const BACKLOG: u64 = 100_000;
    const CALLS: u64 = 1_000;
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        let server = beamish::spawn(async {
            loop {
                let r = receive::<Request>().await;
                r.from.send(Reply(r.tag, r.n + 1));
            }
        });
        // Old replies nobody waits for: each one would match the type and
        // be tested by the predicate if the receive scanned them.
        let stale = Ref::new();
        for i in 0..BACKLOG {
            me.send(Reply(stale, i));
            if i % 1024 == 0 {
                beamish::reduce(1).await;
            }
        }
        beamish::sleep(Duration::from_millis(1)).await;
        let before = beamish::process_info(me).await.unwrap();
        assert_eq!(before.message_queue_len as u64, BACKLOG);

        let t = Instant::now();
        for n in 0..CALLS {
            let m = beamish::mark();
            let tag = Ref::new();
            server.send(Request { from: me, tag, n });
            let Reply(_, got) = receive_if(move |r: &Reply| r.0 == tag).after_mark(m).await;
            assert_eq!(got, n + 1);
        }
        let took = t.elapsed();
        let after = beamish::process_info(me).await.unwrap();
        assert_eq!(after.message_queue_len as u64, BACKLOG);
        // Every message a receive examines costs a reduction: scanning the
        // backlog even once per call would cost 10^8.
        let spent = after.reductions - before.reductions;
        eprintln!("{CALLS} calls past {BACKLOG} messages: {took:?}, {spent} reductions");
        assert!(
            spent < CALLS * 100,
            "{spent} reductions for {CALLS} calls: the receive scanned the backlog"
        );
        assert!(took < Duration::from_secs(5), "{CALLS} calls took {took:?}");
    })
    .unwrap();
}

// ------------------------------------------------------------ many senders

#[test]
fn messages_from_many_senders_all_arrive_in_order_per_sender() {
    const SENDERS: usize = 4;
    const EACH: u64 = 100_000;
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        for s in 0..SENDERS {
            beamish::spawn(async move {
                for i in 0..EACH {
                    me.send((s, i));
                    if i % 256 == 0 {
                        beamish::reduce(1).await;
                    }
                }
            });
        }
        let mut next = [0u64; SENDERS];
        for _ in 0..SENDERS as u64 * EACH {
            let (s, i) = receive::<(usize, u64)>().await;
            assert_eq!(i, next[s], "sender {s} out of order");
            next[s] += 1;
        }
        assert_eq!(next, [EACH; SENDERS]);
        assert_eq!(
            receive::<(usize, u64)>().timeout(Duration::ZERO).await,
            None
        );
    })
    .unwrap();
}

#[test]
fn messages_from_many_plain_threads_all_arrive() {
    const SENDERS: usize = 4;
    const EACH: u64 = 100_000;
    let rt = runtime();
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = rt
        .handle()
        .spawn(async move {
            let mut count = [0u64; SENDERS];
            for _ in 0..SENDERS as u64 * EACH {
                let (s, i) = receive::<(usize, u64)>().await;
                assert_eq!(i, count[s], "sender {s} out of order");
                count[s] += 1;
            }
            tx.send(count).unwrap();
        })
        .unwrap();
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    receiver.send((s, i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let count = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(count, [EACH; SENDERS]);
}

// ------------------------------------------------------------ forwarding

#[test]
fn a_message_is_forwarded_with_send_message() {
    let rt = runtime();
    rt.block_on(async {
        let me = beamish::self_pid();
        // Forwards whatever it gets, untyped.
        let relay = beamish::spawn(async move {
            loop {
                let m = receive_match(|_| true).await;
                me.send_message(m);
            }
        });
        relay.send(String::from("through the relay"));
        relay.send(42u64);
        assert_eq!(receive::<u64>().await, 42);
        assert_eq!(receive::<String>().await, "through the relay");
        // A message built outside any mailbox.
        me.send_message(Message::new(vec![1u8, 2, 3]));
        assert_eq!(receive::<Vec<u8>>().await, [1, 2, 3]);
    })
    .unwrap();
}

#[test]
fn a_message_to_a_dead_process_is_dropped() {
    let rt = runtime();
    rt.block_on(async {
        let (pid, _) = beamish::spawn_monitor(async {});
        receive::<beamish::Down>().await;
        let payload = std::sync::Arc::new(());
        pid.send(payload.clone());
        pid.send_message(Message::new(payload.clone()));
        // Both copies were dropped, not leaked.
        assert_eq!(std::sync::Arc::strong_count(&payload), 1);
    })
    .unwrap();
}
