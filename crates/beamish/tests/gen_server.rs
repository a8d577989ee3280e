//! GenServer behaviour, one rule per test (OTP's gen_server documentation).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use beamish::otp::{self, Flow, GenServer, Init, Reply, ReplyTo, ServerRef, StartOptions};
use beamish::{Down, Error, Exit, Message, Pid, Reason, Runtime};

const LONG: Duration = Duration::from_secs(10);

fn on_runtime<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let rt = Runtime::new().unwrap();
    rt.block_on(f).unwrap()
}

/// A server that records what happens to it and answers a few requests.
struct Probe {
    log: Arc<Mutex<Vec<String>>>,
    init: Option<Init>,
    parked: Option<ReplyTo<u64>>,
}

impl Probe {
    fn new(log: &Arc<Mutex<Vec<String>>>) -> Probe {
        Probe {
            log: log.clone(),
            init: None,
            parked: None,
        }
    }

    fn note(&self, s: impl Into<String>) {
        self.log.lock().unwrap().push(s.into());
    }
}

enum Req {
    Echo(u64),
    Sleep(Duration),
    Crash,
    StopWith(Reason),
    /// Keep the ReplyTo; answer on the next `Release`.
    Park,
    Release(u64),
    /// Hand the ReplyTo to another process, which replies.
    Delegate,
    ReplyThenContinue(u64),
}

impl GenServer for Probe {
    type Call = Req;
    type Reply = u64;
    type Cast = String;

    async fn init(&mut self) -> Init {
        self.note("init");
        self.init.take().unwrap_or(Init::Ok)
    }

    async fn handle_call(&mut self, req: Req, from: ReplyTo<u64>) -> Reply<u64> {
        match req {
            Req::Echo(n) => Reply::reply(n),
            Req::Sleep(d) => {
                beamish::sleep(d).await;
                Reply::reply(0)
            }
            Req::Crash => panic!("crash in handle_call"),
            Req::StopWith(r) => Reply::stop(r, Some(7)),
            Req::Park => {
                self.parked = Some(from);
                Reply::no_reply()
            }
            Req::Release(n) => {
                if let Some(p) = self.parked.take() {
                    p.reply(n);
                }
                Reply::reply(0)
            }
            Req::Delegate => {
                beamish::spawn(async move { from.reply(99) });
                Reply::no_reply()
            }
            Req::ReplyThenContinue(n) => Reply::reply(n).and_continue(format!("after call {n}")),
        }
    }

    async fn handle_cast(&mut self, msg: String) -> Flow {
        self.note(format!("cast {msg}"));
        if msg == "continue" {
            return Flow::continue_with(String::from("from cast"));
        }
        Flow::Ok
    }

    async fn handle_info(&mut self, msg: Message) -> Flow {
        match msg.downcast::<&'static str>() {
            Ok(s) => self.note(format!("info {s}")),
            Err(m) => self.note(format!("info {}", m.type_name())),
        }
        Flow::Ok
    }

    async fn handle_continue(&mut self, value: Message) -> Flow {
        let s = value.downcast::<String>().unwrap_or_default();
        self.note(format!("continue {s}"));
        Flow::Ok
    }

    async fn terminate(&mut self, reason: &Reason) {
        self.note(format!("terminate {reason}"));
    }
}

fn log() -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Polls `cond` every millisecond for up to `LONG`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LONG;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        beamish::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn call_returns_the_reply_and_cast_is_handled_in_order() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let s = otp::start_link(Probe::new(&l2)).await.unwrap();
        s.cast("a".into());
        s.cast("b".into());
        assert_eq!(s.call(Req::Echo(42)).await, Ok(42));
        assert_eq!(entries(&l2), ["init", "cast a", "cast b"]);
    });
    drop(l);
}

#[test]
fn other_messages_go_to_handle_info() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let s = otp::start_link(Probe::new(&l2)).await.unwrap();
        s.pid().send("hello");
        assert_eq!(s.call(Req::Echo(1)).await, Ok(1));
        assert_eq!(entries(&l2), ["init", "info hello"]);
    });
    drop(l);
}

#[test]
fn call_to_a_dead_server_is_noproc_at_once() {
    on_runtime(async {
        let pid = beamish::spawn(async {});
        let m = beamish::monitor(pid);
        beamish::receive_if(move |d: &Down| d.monitor == m).await;
        let s: ServerRef<Probe> = ServerRef::from_pid(pid);
        let t = std::time::Instant::now();
        assert_eq!(s.call(Req::Echo(1)).await, Err(Error::NoProc(pid)));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "noproc must not wait for the timeout"
        );
    });
}

#[test]
fn call_to_a_server_that_dies_during_the_call_returns_its_reason() {
    let l = log();
    on_runtime(async move {
        let s = otp::start(Probe::new(&l)).await.unwrap();
        let err = s.call(Req::Crash).await.unwrap_err();
        assert!(
            matches!(&err, Error::Exited(Reason::Panic(m)) if m.contains("crash in handle_call")),
            "{err:?}"
        );
    });
}

#[test]
fn call_timeout_returns_timeout_and_the_late_reply_never_lands() {
    let l = log();
    on_runtime(async move {
        let s = otp::start(Probe::new(&l)).await.unwrap();
        let r = s
            .call_timeout(
                Req::Sleep(Duration::from_millis(100)),
                Duration::from_millis(10),
            )
            .await;
        assert_eq!(r, Err(Error::Timeout));
        // The server replies ~90 ms later; that reply must be dropped.
        beamish::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.call(Req::Echo(5)).await, Ok(5));
        let left = beamish::receive_match(|_| true)
            .timeout(Duration::ZERO)
            .await;
        assert!(left.is_none(), "a late reply landed: {left:?}");
        let info = beamish::process_info(beamish::self_pid()).await.unwrap();
        assert_eq!(info.message_queue_len, 0);
        assert!(
            info.monitors.is_empty(),
            "the call's monitor was left behind"
        );
    });
}

#[test]
fn deferred_reply_from_the_server_later() {
    let l = log();
    on_runtime(async move {
        let s = otp::start(Probe::new(&l)).await.unwrap();
        let waiter = beamish::self_pid();
        beamish::spawn(async move {
            let got = s.call(Req::Park).await;
            waiter.send(got);
        });
        beamish::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.call(Req::Release(11)).await, Ok(0));
        assert_eq!(beamish::receive::<Result<u64, Error>>().await, Ok(11));
    });
}

#[test]
fn deferred_reply_from_another_process() {
    let l = log();
    on_runtime(async move {
        let s = otp::start(Probe::new(&l)).await.unwrap();
        assert_eq!(s.call(Req::Delegate).await, Ok(99));
    });
}

#[test]
fn continue_after_init_runs_before_the_first_message() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let mut p = Probe::new(&l2);
        p.init = Some(Init::Continue(Message::new(String::from("from init"))));
        let s = otp::start_link(p).await.unwrap();
        s.cast("x".into());
        assert_eq!(s.call(Req::Echo(1)).await, Ok(1));
        assert_eq!(entries(&l2), ["init", "continue from init", "cast x"]);
    });
    drop(l);
}

#[test]
fn continue_after_a_handler_runs_before_the_next_message() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let s = otp::start_link(Probe::new(&l2)).await.unwrap();
        s.cast("continue".into());
        s.cast("y".into());
        assert_eq!(s.call(Req::ReplyThenContinue(3)).await, Ok(3));
        s.cast("z".into());
        assert_eq!(s.call(Req::Echo(0)).await, Ok(0));
        assert_eq!(
            entries(&l2),
            [
                "init",
                "cast continue",
                "continue from cast",
                "cast y",
                "continue after call 3",
                "cast z"
            ]
        );
    });
    drop(l);
}

#[test]
fn init_stop_returns_the_reason_and_does_not_kill_the_linked_caller() {
    let l = log();
    on_runtime(async move {
        let mut p = Probe::new(&l);
        p.init = Some(Init::Stop(Reason::other("no config")));
        let r = otp::start_link(p).await;
        assert_eq!(r.err(), Some(Error::Exited(Reason::other("no config"))));
        // Still alive, and no Exit message.
        beamish::sleep(Duration::from_millis(20)).await;
        assert!(
            beamish::receive::<Exit>()
                .timeout(Duration::ZERO)
                .await
                .is_none()
        );
    });
}

#[test]
fn stop_runs_terminate_and_ends_with_the_reason() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let s = otp::start(Probe::new(&l2)).await.unwrap();
        let m = beamish::monitor(s.pid());
        assert_eq!(s.stop(Reason::Shutdown, LONG).await, Ok(()));
        let down = beamish::receive_if(move |d: &Down| d.monitor == m).await;
        assert_eq!(down.reason, Reason::Shutdown);
        assert_eq!(entries(&l2), ["init", "terminate shutdown"]);
        assert_eq!(
            s.stop(Reason::Normal, LONG).await,
            Err(Error::NoProc(s.pid()))
        );
    });
    drop(l);
}

#[test]
fn handler_stop_replies_then_terminates() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let s = otp::start(Probe::new(&l2)).await.unwrap();
        let m = beamish::monitor(s.pid());
        assert_eq!(s.call(Req::StopWith(Reason::other("bye"))).await, Ok(7));
        let down = beamish::receive_if(move |d: &Down| d.monitor == m).await;
        assert_eq!(down.reason, Reason::other("bye"));
        eventually("terminate ran", || {
            entries(&l2).contains(&"terminate bye".to_string())
        })
        .await;
    });
    drop(l);
}

#[test]
fn terminate_runs_on_shutdown_by_the_parent_when_trapping_exits() {
    let l = log();
    let l2 = l.clone();
    on_runtime(async move {
        let me = beamish::self_pid();
        let l3 = l2.clone();
        // A parent process that starts the server linked, then is told to go.
        let parent = beamish::spawn(async move {
            beamish::trap_exit(true);
            let s = otp::start_with(Probe::new(&l3), StartOptions::new().link().trap_exit(true))
                .await
                .unwrap();
            me.send(s.pid());
            beamish::receive::<()>().await;
            s.pid().exit(Reason::Shutdown);
            beamish::receive::<Exit>().await;
        });
        let server: Pid = beamish::receive().await;
        let m = beamish::monitor(server);
        parent.send(());
        let down = beamish::receive_if(move |d: &Down| d.monitor == m).await;
        assert_eq!(down.reason, Reason::Shutdown);
        assert_eq!(entries(&l2), ["init", "terminate shutdown"]);
    });
    drop(l);
}

#[test]
fn a_named_server_is_found_by_name_and_the_name_is_unique() {
    let l = log();
    on_runtime(async move {
        let s = otp::start_with(Probe::new(&l), StartOptions::new().name("probe"))
            .await
            .unwrap();
        let found: ServerRef<Probe> = ServerRef::whereis("probe").unwrap();
        assert_eq!(found, s);
        assert_eq!(found.call(Req::Echo(8)).await, Ok(8));
        let again = otp::start_with(Probe::new(&l), StartOptions::new().name("probe")).await;
        assert!(matches!(again, Err(Error::NameTaken(_))), "{again:?}");
    });
}

#[test]
fn many_sequential_calls_leave_no_state_behind() {
    let l = log();
    on_runtime(async move {
        let s = otp::start_link(Probe::new(&l)).await.unwrap();
        for i in 0..10_000u64 {
            assert_eq!(s.call(Req::Echo(i)).await, Ok(i));
        }
        let me = beamish::process_info(beamish::self_pid()).await.unwrap();
        assert_eq!(me.message_queue_len, 0);
        assert!(me.monitors.is_empty());
        let server = beamish::process_info(s.pid()).await.unwrap();
        assert!(
            server.monitored_by.is_empty(),
            "monitors piled up on the server"
        );
    });
}
