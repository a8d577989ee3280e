//! Tracing processes (`beamish::trace`): every kind of event, the count,
//! rate and queue limits, sessions that end (stop, count, tracer gone,
//! traced process gone), new processes, and one tracer per process.

use std::time::Duration;

use beamish::otp::{GenServer, Reply, ReplyTo};
use beamish::trace::{EndReason, Flags, OnExceed, Target, Trace, TraceEvent, TraceKind};
use beamish::{Error, Pid, Reason, Runtime, receive, receive_if};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    let rt = Runtime::builder().worker_threads(2).build().unwrap();
    rt.block_on(f).unwrap();
}

/// The next trace event, within a second.
async fn next_event() -> TraceEvent {
    receive_if(|_: &TraceEvent| true)
        .timeout(Duration::from_secs(1))
        .await
        .expect("a trace event")
}

/// A process that takes `u32`s for ever.
fn sink() -> Pid {
    beamish::spawn(async {
        loop {
            receive::<u32>().await;
        }
    })
}

/// Skips events up to a session's end; why it ended.
async fn end_of_session() -> EndReason {
    loop {
        if let TraceKind::End { reason, .. } = next_event().await.kind {
            return reason;
        }
    }
}

/// Every trace event that arrives within `d`.
async fn events_for(d: Duration) -> Vec<TraceEvent> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match receive_if(|_: &TraceEvent| true).timeout(left).await {
            Some(e) => out.push(e),
            None => return out,
        }
    }
}

#[test]
fn send_receive_spawn_link_exit_and_scheduling() {
    run(async {
        let me = beamish::self_pid();
        let worker = beamish::spawn(async move {
            let peer: Pid = receive().await;
            beamish::link(peer).unwrap();
            beamish::unlink(peer);
            let child = beamish::spawn(async {});
            me.send(child);
            receive::<()>().await;
        });
        let session = Trace::new(Flags::ALL)
            .start(Target::Pid(worker), me)
            .unwrap();
        let peer = beamish::spawn(async { receive::<()>().await });
        worker.send(peer);
        let child: Pid = receive().await;
        worker.send(());
        let events = events_for(ms(200)).await;
        let kinds: Vec<&TraceKind> = events.iter().map(|e| &e.kind).collect();
        assert!(
            events
                .iter()
                .all(|e| e.pid == worker || matches!(e.kind, TraceKind::End { .. }))
        );
        let pos = |f: &dyn Fn(&TraceKind) -> bool| kinds.iter().position(|k| f(k));
        let receive_peer =
            pos(&|k| matches!(k, TraceKind::Receive { message } if message.contains("Pid")))
                .expect("receive");
        let link = pos(&|k| *k == TraceKind::Link { other: peer }).expect("link");
        let unlink = pos(&|k| *k == TraceKind::Unlink { other: peer }).expect("unlink");
        let spawn = pos(&|k| *k == TraceKind::Spawn { child }).expect("spawn");
        let send = pos(&|k| matches!(k, TraceKind::Send { to, .. } if *to == me)).expect("send");
        let exit = pos(&|k| {
            *k == TraceKind::Exit {
                reason: Reason::Normal,
            }
        })
        .expect("exit");
        assert!(
            receive_peer < link && link < unlink && unlink < spawn && spawn < send && send < exit,
            "{kinds:?}"
        );
        assert!(kinds.iter().any(|k| **k == TraceKind::In));
        assert!(kinds.iter().any(|k| **k == TraceKind::Out));
        // The traced process ended: so did the session.
        assert!(
            matches!(
                kinds.last(),
                Some(TraceKind::End {
                    reason: EndReason::NothingLeft,
                    ..
                })
            ),
            "{kinds:?}"
        );
        assert_eq!(session.stats().ended, Some(EndReason::NothingLeft));
        peer.exit(Reason::Kill);
    });
}

#[test]
fn only_the_flags_asked_for() {
    run(async {
        let me = beamish::self_pid();
        let echo = beamish::spawn(async move {
            loop {
                let n: u32 = receive().await;
                me.send(n);
            }
        });
        let session = Trace::new(Flags::SEND)
            .start(Target::Pid(echo), me)
            .unwrap();
        echo.send(1u32);
        assert_eq!(receive::<u32>().await, 1);
        let e = next_event().await;
        assert!(matches!(e.kind, TraceKind::Send { to, message } if to == me && message == "u32"));
        assert!(events_for(ms(50)).await.is_empty());
        session.stop();
        let end = next_event().await;
        assert!(matches!(
            end.kind,
            TraceKind::End {
                reason: EndReason::Stopped,
                delivered: 1,
                dropped: 0
            }
        ));
        // Stopped: nothing more.
        echo.send(2u32);
        assert_eq!(receive::<u32>().await, 2);
        assert!(events_for(ms(50)).await.is_empty());
        echo.exit(Reason::Kill);
    });
}

#[test]
fn a_count_limit_ends_the_session() {
    run(async {
        let me = beamish::self_pid();
        let chatty = beamish::spawn(async move {
            // The session is installed by a signal: what the process does
            // after a later message is traced.
            let _: () = receive().await;
            for i in 0..1000u32 {
                me.send(i);
            }
        });
        let session = Trace::new(Flags::SEND)
            .count(10)
            .start(Target::Pid(chatty), me)
            .unwrap();
        chatty.send(());
        let mut sends = 0;
        loop {
            let e = next_event().await;
            match e.kind {
                TraceKind::Send { .. } => sends += 1,
                TraceKind::End {
                    reason, delivered, ..
                } => {
                    assert_eq!((reason, delivered), (EndReason::Count, 10));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(sends <= 10);
        assert_eq!(session.stats().ended, Some(EndReason::Count));
    });
}

#[test]
fn a_rate_limit_drops_or_stops() {
    run(async {
        let me = beamish::self_pid();
        let sink = sink();
        let flood = beamish::spawn(async move {
            let _: () = receive().await;
            for i in 0..5_000u32 {
                sink.send(i);
            }
            me.send("done");
            receive::<()>().await;
        });
        let session = Trace::new(Flags::SEND)
            .rate(100, Duration::from_secs(10), OnExceed::Drop)
            .start(Target::Pid(flood), me)
            .unwrap();
        flood.send(());
        let _: &str = receive().await;
        let stats = session.stats();
        // 5,001 sends (the last one to us): 100 delivered.
        assert_eq!(stats.delivered, 100, "{stats:?}");
        assert_eq!(stats.dropped, 4_901);
        assert_eq!(stats.ended, None);
        drop(session);
        assert_eq!(end_of_session().await, EndReason::Stopped);

        let stopper = beamish::spawn(async move {
            for i in 0..1_000u32 {
                sink.send(i);
                beamish::yield_now().await;
            }
        });
        let session = Trace::new(Flags::SEND)
            .rate(10, Duration::from_secs(10), OnExceed::Stop)
            .start(Target::Pid(stopper), me)
            .unwrap();
        assert_eq!(end_of_session().await, EndReason::Rate);
        assert_eq!(session.stats().ended, Some(EndReason::Rate));
        flood.exit(Reason::Kill);
        sink.exit(Reason::Kill);
    });
}

#[test]
fn a_slow_tracer_does_not_grow_memory() {
    run(async {
        let me = beamish::self_pid();
        // A tracer that never reads.
        let tracer = beamish::spawn(async { receive::<()>().await });
        let sink = sink();
        let flood = beamish::spawn(async move {
            let _: () = receive().await;
            for i in 0..100_000u32 {
                sink.send(i);
            }
            me.send("done");
        });
        let session = Trace::new(Flags::SEND)
            .max_queue(1_000)
            .start(Target::Pid(flood), tracer)
            .unwrap();
        flood.send(());
        let _: &str = receive().await;
        let stats = session.stats();
        assert_eq!(stats.queued, 1_000, "{stats:?}");
        assert_eq!(stats.delivered, 1_000);
        assert_eq!(stats.dropped, 99_001); // the sends to the sink and "done"

        let info = beamish::process_info(tracer).await.unwrap();
        // 1,000 events (process_info adds one while other messages wait
        // unseen in the inbound half).
        assert!(
            (1_000..=1_001).contains(&info.message_queue_len),
            "{info:?}"
        );
        // The tracer drops its events: their places come back.
        tracer.exit(Reason::Kill);
        beamish::sleep(ms(20)).await;
        assert_eq!(session.stats().queued, 0);
        sink.exit(Reason::Kill);
    });
}

#[test]
fn the_tracer_going_away_ends_the_session() {
    run(async {
        let tracer = beamish::spawn(async {
            let _: TraceEvent = receive().await;
        });
        let busy = beamish::spawn(async {
            loop {
                beamish::sleep(ms(1)).await;
            }
        });
        let session = Trace::new(Flags::RUNNING)
            .start(Target::Pid(busy), tracer)
            .unwrap();
        beamish::sleep(ms(100)).await;
        assert_eq!(session.stats().ended, Some(EndReason::TracerGone));
        busy.exit(Reason::Kill);
    });
}

#[test]
fn new_processes_and_names() {
    run(async {
        let me = beamish::self_pid();
        let session = Trace::new(Flags::PROCS).start(Target::New, me).unwrap();
        assert!(matches!(
            Trace::new(Flags::PROCS).start(Target::New, me),
            Err(Error::AlreadyTraced(_))
        ));
        let child = beamish::spawn(async {});
        let spawned = next_event().await;
        assert_eq!(spawned.pid, child, "{spawned:?}");
        assert_eq!(spawned.kind, TraceKind::Spawned { parent: Some(me) });
        let exit = next_event().await;
        assert_eq!(
            (exit.pid, exit.kind),
            (
                child,
                TraceKind::Exit {
                    reason: Reason::Normal
                }
            )
        );
        drop(session);
        let _end = next_event().await;

        let named = beamish::spawn(async { receive::<()>().await });
        beamish::register("traced", named).unwrap();
        let by_name = Trace::new(Flags::RECEIVE)
            .start(Target::Name("traced".into()), me)
            .unwrap();
        assert_eq!(
            Trace::new(Flags::SEND)
                .start(Target::Pid(named), me)
                .unwrap_err(),
            Error::AlreadyTraced(named)
        );
        named.send(5u8);
        let e = next_event().await;
        assert_eq!(
            (e.pid, e.kind),
            (named, TraceKind::Receive { message: "u8" })
        );
        assert_eq!(
            Trace::new(Flags::SEND)
                .start(Target::Name("nobody".into()), me)
                .unwrap_err(),
            Error::UnknownName("nobody".into())
        );
        let dead = beamish::spawn(async {});
        beamish::sleep(ms(10)).await;
        assert_eq!(
            Trace::new(Flags::SEND)
                .start(Target::Pid(dead), me)
                .unwrap_err(),
            Error::NoProc(dead)
        );
        drop(by_name);
        named.exit(Reason::Kill);
    });
}

struct Counter(u64);

impl GenServer for Counter {
    type Call = u64;
    type Reply = u64;
    type Cast = ();

    async fn handle_call(&mut self, add: u64, _from: ReplyTo<u64>) -> Reply<u64> {
        self.0 += add;
        Reply::reply(self.0)
    }
}

#[test]
fn gen_server_calls_on_both_sides() {
    run(async {
        let me = beamish::self_pid();
        let server = beamish::otp::gen_server::start(Counter(0)).await.unwrap();
        let tracer = beamish::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 2 {
                got.push(receive::<TraceEvent>().await.kind);
            }
            me.send(got);
        });
        let client_side = Trace::new(Flags::CALLS)
            .start(Target::Pid(me), tracer)
            .unwrap();
        let server_side = Trace::new(Flags::CALLS)
            .start(Target::Pid(server.pid()), tracer)
            .unwrap();
        assert_eq!(server.call(5).await.unwrap(), 5);
        let got: Vec<TraceKind> = receive().await;
        assert!(
            got.iter().any(
                |k| matches!(k, TraceKind::HandleCall { from, request: "u64", .. } if *from == me)
            ),
            "{got:?}"
        );
        assert!(got.iter().any(|k| matches!(k, TraceKind::Call { server: s, request: "u64", took: Some(_) } if *s == server.pid())), "{got:?}");
        drop(client_side);
        drop(server_side);
    });
}

/// The answer to `process_info` is a system signal's reply, not a message
/// the traced process sends (OTP traces no `send` for it either).
#[test]
fn process_info_of_a_traced_process_is_not_its_send() {
    run(async {
        let me = beamish::self_pid();
        let traced = sink();
        let _session = Trace::new(Flags::SEND | Flags::RECEIVE)
            .start(Target::Pid(traced), me)
            .unwrap();
        for _ in 0..3 {
            assert!(beamish::process_info(traced).await.is_some());
        }
        traced.send(7u32);
        let events = events_for(ms(200)).await;
        let kinds: Vec<&TraceKind> = events.iter().map(|e| &e.kind).collect();
        assert!(
            kinds.iter().all(|k| !matches!(k, TraceKind::Send { .. })),
            "{kinds:?}"
        );
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, TraceKind::Receive { message } if message.contains("u32"))),
            "{kinds:?}"
        );
    });
}
