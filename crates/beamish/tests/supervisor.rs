//! The documented rules of OTP's `supervisor`, one test per rule, named
//! after it.
//!
//! Children are GenServers ([`Worker`]) that trap exits, so a supervisor's
//! shutdown runs their `terminate`; `init` and `terminate` write to a shared
//! [`Log`], which gives the start and stop order, and `init` also tells the
//! test process ([`Started`]), which is how a test waits for a (re)start.
//!
//! No test sleeps to let something happen (one sleeps to let a restart
//! period pass). The one synchronisation point
//! that needs an argument: after a child's `Down` reaches the test, a call
//! to the supervisor is answered only after the supervisor has handled that
//! child's exit, because a dying process sends its link exits before its
//! monitor `Down`s, so the supervisor's `Exit` is queued before the call.
//! Every wait is bounded by [`LONG`], which only a bug can exhaust.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beamish::otp::{
    AutoShutdown, ChildCounts, ChildKind, ChildSpec, Flow, GenServer, Init, Reply, ReplyTo,
    Restart, ServerRef, Shutdown, StartOptions, Strategy, Supervisor, SupervisorError,
    SupervisorFlags, SupervisorRef,
};
use beamish::{Down, Error, Exit, Handle, Pid, Reason, Runtime, SpawnOptions};

/// A wait that only a bug can exhaust.
const LONG: Duration = Duration::from_secs(5);

/// Runs `root` as the root process of a fresh two-thread runtime.
fn on_runtime<F>(root: impl FnOnce(Handle) -> F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let out = rt.block_on(root(rt.handle()));
    rt.shutdown();
    match out {
        Ok(v) => v,
        Err(reason) => panic!("the test's root process ended: {reason}"),
    }
}

/// What happened, in order, across processes.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    /// Takes the entries so far.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Worker → test: I (re)started.
struct Started {
    name: &'static str,
    pid: Pid,
}

/// A child: logs `start <name>` in `init` and `stop <name> <reason>` in
/// `terminate`; a cast stops it with the cast reason.
struct Worker {
    name: &'static str,
    log: Log,
    watcher: Pid,
    /// How long `terminate` takes (then it logs `gone <name>`).
    linger: Duration,
}

impl GenServer for Worker {
    type Call = ();
    type Reply = ();
    type Cast = Reason;

    async fn init(&mut self) -> Init {
        self.log.push(format!("start {}", self.name));
        self.watcher.send(Started {
            name: self.name,
            pid: beamish::self_pid(),
        });
        Init::Ok
    }

    async fn handle_call(&mut self, (): (), _from: ReplyTo<()>) -> Reply<()> {
        Reply::reply(())
    }

    async fn handle_cast(&mut self, reason: Reason) -> Flow {
        Flow::Stop(reason)
    }

    async fn terminate(&mut self, reason: &Reason) {
        self.log.push(format!("stop {} {reason}", self.name));
        if !self.linger.is_zero() {
            beamish::sleep(self.linger).await;
            self.log.push(format!("gone {}", self.name));
        }
    }
}

/// A worker child reporting to the calling process.
fn worker(name: &'static str, log: &Log) -> ChildSpec {
    lingering_worker(name, log, Duration::ZERO)
}

fn lingering_worker(name: &'static str, log: &Log, linger: Duration) -> ChildSpec {
    let log = log.clone();
    let watcher = beamish::self_pid();
    ChildSpec::worker(name, move || {
        let server = Worker {
            name,
            log: log.clone(),
            watcher,
            linger,
        };
        async move {
            beamish::otp::start_with(server, StartOptions::new().link().trap_exit(true))
                .await
                .map(|s| s.pid())
        }
    })
}

/// Waits for `name`'s next (re)start.
async fn started(name: &'static str) -> Pid {
    beamish::receive_if(move |s: &Started| s.name == name)
        .timeout(LONG)
        .await
        .unwrap_or_else(|| panic!("{name} did not start"))
        .pid
}

/// No (re)start report is waiting.
async fn assert_no_start() {
    let extra = beamish::receive::<Started>().timeout(Duration::ZERO).await;
    assert!(
        extra.is_none(),
        "unexpected start of {}",
        extra.map_or("", |s| s.name)
    );
}

/// Makes worker `pid` stop with `reason` and waits until it has ended.
async fn stop_worker(pid: Pid, reason: Reason) {
    let mref = beamish::monitor(pid);
    ServerRef::<Worker>::from_pid(pid).cast(reason);
    down(mref).await;
}

/// Waits for the `Down` of `mref` and returns the reason.
async fn down(mref: beamish::Ref) -> Reason {
    beamish::receive_if(move |d: &Down| d.monitor == mref)
        .timeout(LONG)
        .await
        .expect("a Down")
        .reason
}

/// The child's pid, from `which_children`.
async fn pid_of(sup: SupervisorRef, id: &str) -> Option<Pid> {
    sup.which_children()
        .await
        .unwrap()
        .into_iter()
        .find(|c| &*c.id == id)
        .and_then(|c| c.pid)
}

/// Waits until the runtime has `n` processes (processes leave the table
/// just after their `Down` is sent).
async fn settle(handle: &Handle, n: usize) {
    let deadline = Instant::now() + LONG;
    while handle.process_count() != n {
        assert!(
            Instant::now() < deadline,
            "{} processes, expected {n}",
            handle.process_count()
        );
        beamish::sleep(Duration::from_millis(1)).await;
    }
}

fn strings(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|s| s.to_string()).collect()
}

// ------------------------------------------------------------ start

#[test]
fn children_start_in_order() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![worker("a", &log), worker("b", &log), worker("c", &log)];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        assert_eq!(log.take(), strings(&["start a", "start b", "start c"]));
        let ids: Vec<String> = sup
            .which_children()
            .await
            .unwrap()
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        for name in ["a", "b", "c"] {
            assert_eq!(Some(started(name).await), pid_of(sup, name).await);
        }
    });
}

/// Starts a supervisor whose child `b` fails by `failing`, between `a`
/// and `c`, and checks OTP's rule: `a` is stopped, `c` never starts, the
/// error names `b`, and no process is left behind.
async fn check_failed_start(handle: Handle, failing: ChildSpec) -> Error {
    let baseline = handle.process_count();
    let log = Log::default();
    let specs = vec![worker("a", &log), failing, worker("c", &log)];
    let result = Supervisor::start_link(SupervisorFlags::default(), specs).await;
    let cause = match result {
        Err(SupervisorError::StartFailed { id, cause }) => {
            assert_eq!(&*id, "b");
            cause
        }
        other => panic!("expected StartFailed, got {other:?}"),
    };
    assert_eq!(log.take(), strings(&["start a", "stop a shutdown"]));
    let a = started("a").await;
    assert!(!a.is_alive());
    assert_no_start().await; // c never started
    settle(&handle, baseline).await;
    // The supervisor unlinked from us before it ended: no exit signal.
    assert!(
        beamish::receive::<Exit>()
            .timeout(Duration::ZERO)
            .await
            .is_none()
    );
    cause
}

#[test]
fn failing_child_start_aborts_supervisor_start_naming_the_child() {
    on_runtime(|handle| async move {
        beamish::trap_exit(true);
        let failing = ChildSpec::worker("b", || async { Err(Error::Config("no database".into())) });
        let cause = check_failed_start(handle, failing).await;
        assert_eq!(cause, Error::Config("no database".into()));
    });
}

#[test]
fn failing_child_start_aborts_supervisor_start_naming_the_child_on_panic() {
    on_runtime(|handle| async move {
        beamish::trap_exit(true);
        // The start function itself panics, inside the supervisor process.
        let failing = ChildSpec::worker("b", || async { panic!("start exploded") });
        let cause = check_failed_start(handle.clone(), failing).await;
        assert_eq!(cause, Error::Exited(Reason::Panic("start exploded".into())));

        // The child's `init` panics, in the child process.
        struct Boom;
        impl GenServer for Boom {
            type Call = ();
            type Reply = ();
            type Cast = ();
            async fn init(&mut self) -> Init {
                panic!("init exploded")
            }
            async fn handle_call(&mut self, (): (), _: ReplyTo<()>) -> Reply<()> {
                Reply::reply(())
            }
        }
        let failing = ChildSpec::worker("b", || async {
            beamish::otp::start_link(Boom).await.map(|s| s.pid())
        });
        let cause = check_failed_start(handle.clone(), failing).await;
        assert_eq!(cause, Error::Exited(Reason::Panic("init exploded".into())));

        // The child's `init` stops.
        struct Refuse;
        impl GenServer for Refuse {
            type Call = ();
            type Reply = ();
            type Cast = ();
            async fn init(&mut self) -> Init {
                Init::Stop(Reason::other("bad config"))
            }
            async fn handle_call(&mut self, (): (), _: ReplyTo<()>) -> Reply<()> {
                Reply::reply(())
            }
        }
        let failing = ChildSpec::worker("b", || async {
            beamish::otp::start_link(Refuse).await.map(|s| s.pid())
        });
        let cause = check_failed_start(handle, failing).await;
        assert_eq!(cause, Error::Exited(Reason::other("bad config")));
    });
}

#[test]
fn invalid_flags_and_specs_are_rejected_before_anything_starts() {
    on_runtime(|handle| async move {
        let baseline = handle.process_count();
        let log = Log::default();
        let flags = SupervisorFlags::default().period(Duration::ZERO);
        assert!(matches!(
            Supervisor::start_link(flags, vec![worker("a", &log)]).await,
            Err(SupervisorError::InvalidFlags(_))
        ));
        let duplicate = vec![worker("a", &log), worker("a", &log)];
        assert!(matches!(
            Supervisor::start_link(SupervisorFlags::default(), duplicate).await,
            Err(SupervisorError::InvalidSpec { id, .. }) if &*id == "a"
        ));
        assert!(log.take().is_empty());
        assert_eq!(handle.process_count(), baseline);
    });
}

#[test]
fn a_named_supervisor_is_registered_and_its_name_is_exclusive() {
    on_runtime(|_| async {
        let sup = Supervisor::start_link_named("top", SupervisorFlags::default(), vec![])
            .await
            .unwrap();
        assert_eq!(SupervisorRef::whereis("top"), Some(sup));
        let again = Supervisor::start_link_named("top", SupervisorFlags::default(), vec![]).await;
        assert_eq!(
            again,
            Err(SupervisorError::Runtime(Error::NameTaken("top".into())))
        );
    });
}

// ------------------------------------------------------------ restart types

#[test]
fn permanent_child_is_restarted() {
    on_runtime(|_| async {
        let log = Log::default();
        let flags = SupervisorFlags::default().intensity(10);
        let sup = Supervisor::start_link(flags, vec![worker("a", &log)])
            .await
            .unwrap();
        let mut pid = started("a").await;
        // Whatever the reason, normal included.
        for reason in [Reason::other("boom"), Reason::Normal, Reason::Shutdown] {
            stop_worker(pid, reason).await;
            let new = started("a").await;
            assert_ne!(new, pid);
            assert_eq!(pid_of(sup, "a").await, Some(new));
            pid = new;
        }
    });
}

#[test]
fn transient_child_exiting_normal_is_not_restarted() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![
            worker("n", &log).restart(Restart::Transient),
            worker("s", &log).restart(Restart::Transient),
            worker("d", &log).restart(Restart::Transient),
        ];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let (n, s, d) = (started("n").await, started("s").await, started("d").await);
        // normal, shutdown and {shutdown, _} are all "normal" here.
        stop_worker(n, Reason::Normal).await;
        stop_worker(s, Reason::Shutdown).await;
        stop_worker(d, Reason::shutdown_with("done")).await;
        let children = sup.which_children().await.unwrap();
        assert!(children.iter().all(|c| c.pid.is_none() && !c.restarting));
        assert_eq!(children.len(), 3, "the specs are kept");
        assert_no_start().await;
    });
}

#[test]
fn transient_child_crashing_is_restarted() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![worker("t", &log).restart(Restart::Transient)];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let t = started("t").await;
        stop_worker(t, Reason::other("boom")).await;
        let t2 = started("t").await;
        assert_ne!(t, t2);
        assert_eq!(pid_of(sup, "t").await, Some(t2));
    });
}

#[test]
fn temporary_child_is_never_restarted() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![
            worker("crash", &log).restart(Restart::Temporary),
            worker("quit", &log).restart(Restart::Temporary),
            worker("stay", &log),
        ];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let (crash, quit) = (started("crash").await, started("quit").await);
        started("stay").await;
        stop_worker(crash, Reason::other("boom")).await;
        stop_worker(quit, Reason::Normal).await;
        // Not restarted, and forgotten (OTP deletes temporary children).
        let ids: Vec<String> = sup
            .which_children()
            .await
            .unwrap()
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(ids, ["stay"]);
        assert_no_start().await;
    });
}

// ------------------------------------------------------------ strategies

#[test]
fn one_for_one_restarts_only_the_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![worker("a", &log), worker("b", &log), worker("c", &log)];
        let sup = Supervisor::start_link(SupervisorFlags::new(Strategy::OneForOne), specs)
            .await
            .unwrap();
        let (a, b, c) = (started("a").await, started("b").await, started("c").await);
        log.take();
        stop_worker(b, Reason::other("boom")).await;
        let b2 = started("b").await;
        assert_eq!(log.take(), strings(&["stop b boom", "start b"]));
        assert_eq!(
            (
                pid_of(sup, "a").await,
                pid_of(sup, "b").await,
                pid_of(sup, "c").await
            ),
            (Some(a), Some(b2), Some(c))
        );
    });
}

#[test]
fn one_for_all_restarts_every_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![worker("a", &log), worker("b", &log), worker("c", &log)];
        let sup = Supervisor::start_link(SupervisorFlags::new(Strategy::OneForAll), specs)
            .await
            .unwrap();
        let old = [started("a").await, started("b").await, started("c").await];
        log.take();
        stop_worker(old[1], Reason::other("boom")).await;
        let new = [started("a").await, started("b").await, started("c").await];
        // The others stop in reverse start order, then all start in order.
        assert_eq!(
            log.take(),
            strings(&[
                "stop b boom",
                "stop c shutdown",
                "stop a shutdown",
                "start a",
                "start b",
                "start c",
            ])
        );
        for (o, n) in old.iter().zip(&new) {
            assert!(!o.is_alive());
            assert_ne!(o, n);
        }
        assert_eq!(pid_of(sup, "c").await, Some(new[2]));
    });
}

#[test]
fn rest_for_one_restarts_only_later_siblings() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![
            worker("a", &log),
            worker("b", &log),
            worker("c", &log),
            worker("d", &log),
        ];
        let sup = Supervisor::start_link(SupervisorFlags::new(Strategy::RestForOne), specs)
            .await
            .unwrap();
        let a = started("a").await;
        let b = started("b").await;
        started("c").await;
        started("d").await;
        log.take();
        stop_worker(b, Reason::other("boom")).await;
        for name in ["b", "c", "d"] {
            started(name).await;
        }
        assert_eq!(
            log.take(),
            strings(&[
                "stop b boom",
                "stop d shutdown",
                "stop c shutdown",
                "start b",
                "start c",
                "start d",
            ])
        );
        assert_eq!(
            pid_of(sup, "a").await,
            Some(a),
            "the earlier sibling is untouched"
        );
        assert!(a.is_alive());
    });
}

#[test]
fn a_failed_restart_is_retried() {
    on_runtime(|_| async {
        let log = Log::default();
        let inner = worker("a", &log);
        // The start after the first fails once.
        let starts = Arc::new(Mutex::new(0u32));
        let spec = ChildSpec::worker("a", move || {
            let n = {
                let mut starts = starts.lock().unwrap();
                *starts += 1;
                *starts
            };
            let start = inner.start.clone();
            async move {
                if n == 2 {
                    Err(Error::Config("not yet".into()))
                } else {
                    start().await
                }
            }
        });
        let flags = SupervisorFlags::default().intensity(5);
        let sup = Supervisor::start_link(flags, vec![spec]).await.unwrap();
        let a = started("a").await;
        stop_worker(a, Reason::other("boom")).await;
        let a2 = started("a").await;
        assert_ne!(a, a2);
        assert_eq!(pid_of(sup, "a").await, Some(a2));
    });
}

// ------------------------------------------------------------ intensity

#[test]
fn intensity_exceeded_stops_children_in_reverse_order_and_exits_shutdown() {
    on_runtime(|_| async {
        beamish::trap_exit(true);
        let log = Log::default();
        let specs = vec![worker("a", &log), worker("b", &log), worker("c", &log)];
        // The default intensity: 1 restart in 5 s.
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let sup_down = beamish::monitor(sup.pid());
        started("a").await;
        let b = started("b").await;
        started("c").await;
        stop_worker(b, Reason::other("boom")).await;
        let b = started("b").await; // the one restart allowed
        log.take();
        stop_worker(b, Reason::other("boom")).await;
        assert_eq!(down(sup_down).await, Reason::Shutdown);
        assert_eq!(
            log.take(),
            strings(&["stop b boom", "stop c shutdown", "stop a shutdown"])
        );
        let exit = beamish::receive::<Exit>().timeout(LONG).await.unwrap();
        assert_eq!((exit.from, exit.reason), (sup.pid(), Reason::Shutdown));
        assert_no_start().await;
    });
}

#[test]
fn restart_intensity_counts_only_restarts_within_the_period() {
    on_runtime(|_| async {
        let log = Log::default();
        let flags = SupervisorFlags::default()
            .intensity(1)
            .period(Duration::from_millis(50));
        let sup = Supervisor::start_link(flags, vec![worker("a", &log)])
            .await
            .unwrap();
        let mut a = started("a").await;
        for _ in 0..3 {
            // Each restart is alone in its period.
            beamish::sleep(Duration::from_millis(60)).await;
            stop_worker(a, Reason::other("boom")).await;
            a = started("a").await;
        }
        assert!(sup.pid().is_alive());
    });
}

// ------------------------------------------------------------ shutdown

/// A child that traps exits and ignores them (it reports each `Exit` to the
/// test as `Ignored`).
fn stubborn(name: &'static str) -> ChildSpec {
    let watcher = beamish::self_pid();
    ChildSpec::worker(name, move || async move {
        let spawned = SpawnOptions::new()
            .link()
            .trap_exit(true)
            .spawn(async move {
                loop {
                    let exit = beamish::receive::<Exit>().await;
                    watcher.send(Ignored(exit.reason));
                }
            })?;
        Ok(spawned.pid)
    })
}

struct Ignored(Reason);

#[test]
fn shutdown_timeout_escalates_to_kill() {
    on_runtime(|_| async {
        let spec = stubborn("s").shutdown(Shutdown::Timeout(Duration::from_millis(100)));
        let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec])
            .await
            .unwrap();
        let s = pid_of(sup, "s").await.unwrap();
        let mref = beamish::monitor(s);
        let t0 = Instant::now();
        sup.terminate_child("s").await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(down(mref).await, Reason::Killed);
        // It got `shutdown` first, and ignored it.
        let ignored = beamish::receive::<Ignored>().timeout(LONG).await.unwrap();
        assert_eq!(ignored.0, Reason::Shutdown);
    });
}

#[test]
fn shutdown_timeout_lets_a_child_end_cleanly_in_time() {
    on_runtime(|_| async {
        let log = Log::default();
        let spec = lingering_worker("w", &log, Duration::from_millis(20))
            .shutdown(Shutdown::Timeout(LONG));
        let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec])
            .await
            .unwrap();
        let w = started("w").await;
        let mref = beamish::monitor(w);
        sup.terminate_child("w").await.unwrap();
        assert_eq!(down(mref).await, Reason::Shutdown);
        assert_eq!(
            log.take(),
            strings(&["start w", "stop w shutdown", "gone w"])
        );
    });
}

#[test]
fn infinity_shutdown_waits_for_the_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let spec =
            lingering_worker("w", &log, Duration::from_millis(50)).shutdown(Shutdown::Infinity);
        let sup = Supervisor::start_link(SupervisorFlags::default(), vec![spec])
            .await
            .unwrap();
        started("w").await;
        sup.terminate_child("w").await.unwrap();
        // terminate_child returned only after the child's cleanup.
        assert_eq!(
            log.take(),
            strings(&["start w", "stop w shutdown", "gone w"])
        );
    });
}

#[test]
fn brutal_kill_kills() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![
            stubborn("s").shutdown(Shutdown::BrutalKill),
            worker("w", &log).shutdown(Shutdown::BrutalKill),
        ];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let s = pid_of(sup, "s").await.unwrap();
        let w = started("w").await;
        let (ms, mw) = (beamish::monitor(s), beamish::monitor(w));
        sup.terminate_child("s").await.unwrap();
        sup.terminate_child("w").await.unwrap();
        assert_eq!(down(ms).await, Reason::Killed);
        assert_eq!(down(mw).await, Reason::Killed);
        // No exit signal to trap, no terminate.
        assert!(
            beamish::receive::<Ignored>()
                .timeout(Duration::ZERO)
                .await
                .is_none()
        );
        assert_eq!(log.take(), strings(&["start w"]));
    });
}

#[test]
fn supervisor_exit_takes_children_down_in_reverse_order() {
    on_runtime(|_| async {
        beamish::trap_exit(true);
        let log = Log::default();
        // Each child takes a while to stop: the next is stopped only after.
        let linger = Duration::from_millis(5);
        let specs = vec![
            lingering_worker("a", &log, linger),
            lingering_worker("b", &log, linger),
            lingering_worker("c", &log, linger),
        ];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let mref = beamish::monitor(sup.pid());
        log.take();
        // The parent's exit signal, as a supervisor above would send.
        sup.pid().exit(Reason::Shutdown);
        assert_eq!(down(mref).await, Reason::Shutdown);
        assert_eq!(
            log.take(),
            strings(&[
                "stop c shutdown",
                "gone c",
                "stop b shutdown",
                "gone b",
                "stop a shutdown",
                "gone a",
            ])
        );
    });
}

#[test]
fn stop_takes_children_down_in_reverse_order() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![worker("a", &log), worker("b", &log)];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        log.take();
        sup.stop().await.unwrap();
        assert!(!sup.pid().is_alive());
        assert_eq!(log.take(), strings(&["stop b shutdown", "stop a shutdown"]));
    });
}

// ------------------------------------------------------------ API

#[test]
fn which_children() {
    on_runtime(|_| async {
        beamish::trap_exit(true);
        let log = Log::default();
        let inner = ChildSpec::supervisor("inner", || async {
            Ok(Supervisor::start_link(SupervisorFlags::default(), vec![])
                .await?
                .pid())
        });
        let specs = vec![worker("a", &log), inner, worker("b", &log)];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let a = started("a").await;
        let b = started("b").await;
        let children = sup.which_children().await.unwrap();
        let summary: Vec<_> = children
            .iter()
            .map(|c| (c.id.to_string(), c.kind, c.pid.is_some(), c.restarting))
            .collect();
        assert_eq!(
            summary,
            [
                ("a".to_string(), ChildKind::Worker, true, false),
                ("inner".to_string(), ChildKind::Supervisor, true, false),
                ("b".to_string(), ChildKind::Worker, true, false),
            ]
        );
        assert_eq!((children[0].pid, children[2].pid), (Some(a), Some(b)));
        sup.terminate_child("a").await.unwrap();
        assert_eq!(sup.which_children().await.unwrap()[0].pid, None);

        // A dead supervisor: an error at once.
        let pid = sup.pid();
        sup.stop().await.unwrap();
        assert_eq!(
            sup.which_children().await,
            Err(SupervisorError::Runtime(Error::NoProc(pid)))
        );
    });
}

#[test]
fn count_children() {
    on_runtime(|_| async {
        let log = Log::default();
        let inner = ChildSpec::supervisor("inner", || async {
            Ok(Supervisor::start_link(SupervisorFlags::default(), vec![])
                .await?
                .pid())
        });
        let specs = vec![worker("a", &log), worker("b", &log), inner];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        assert_eq!(
            sup.count_children().await.unwrap(),
            ChildCounts {
                specs: 3,
                active: 3,
                supervisors: 1,
                workers: 2
            }
        );
        sup.terminate_child("b").await.unwrap();
        assert_eq!(
            sup.count_children().await.unwrap(),
            ChildCounts {
                specs: 3,
                active: 2,
                supervisors: 1,
                workers: 2
            }
        );
        sup.delete_child("b").await.unwrap();
        assert_eq!(
            sup.count_children().await.unwrap(),
            ChildCounts {
                specs: 2,
                active: 2,
                supervisors: 1,
                workers: 1
            }
        );
        let pid = sup.pid();
        sup.stop().await.unwrap();
        assert_eq!(
            sup.count_children().await,
            Err(SupervisorError::Runtime(Error::NoProc(pid)))
        );
    });
}

#[test]
fn start_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let sup = Supervisor::start_link(SupervisorFlags::default(), vec![worker("a", &log)])
            .await
            .unwrap();
        started("a").await;
        // Added at the end, started at once.
        let b = sup.start_child(worker("b", &log)).await.unwrap();
        assert_eq!(started("b").await, b);
        let ids: Vec<String> = sup
            .which_children()
            .await
            .unwrap()
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        // Known ids.
        assert_eq!(
            sup.start_child(worker("b", &log)).await,
            Err(SupervisorError::AlreadyStarted("b".into(), b))
        );
        sup.terminate_child("b").await.unwrap();
        assert_eq!(
            sup.start_child(worker("b", &log)).await,
            Err(SupervisorError::AlreadyPresent("b".into()))
        );
        // A failing start: an error naming it, and the spec is not kept.
        let failing = ChildSpec::worker("c", || async { Err(Error::Config("nope".into())) });
        assert_eq!(
            sup.start_child(failing).await,
            Err(SupervisorError::StartFailed {
                id: "c".into(),
                cause: Error::Config("nope".into())
            })
        );
        let panicking = ChildSpec::worker("p", || async { panic!("kaboom") });
        assert_eq!(
            sup.start_child(panicking).await,
            Err(SupervisorError::StartFailed {
                id: "p".into(),
                cause: Error::Exited(Reason::Panic("kaboom".into()))
            })
        );
        assert_eq!(sup.count_children().await.unwrap().specs, 2);
        // An invalid spec.
        let significant = worker("s", &log).significant(true);
        assert!(matches!(
            sup.start_child(significant).await,
            Err(SupervisorError::InvalidSpec { id, .. }) if &*id == "s"
        ));
        assert!(sup.pid().is_alive());
    });
}

#[test]
fn terminate_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![
            worker("a", &log),
            worker("t", &log).restart(Restart::Temporary),
        ];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let a = started("a").await;
        started("t").await;
        log.take();
        assert_eq!(
            sup.terminate_child("nope").await,
            Err(SupervisorError::NotFound("nope".into()))
        );
        sup.terminate_child("a").await.unwrap();
        assert!(!a.is_alive());
        assert_eq!(log.take(), strings(&["stop a shutdown"]));
        // Not restarted: the supervisor asked for it.
        assert_eq!(pid_of(sup, "a").await, None);
        assert_no_start().await;
        // Terminating a terminated child is fine.
        sup.terminate_child("a").await.unwrap();
        // A temporary child's spec goes with it.
        sup.terminate_child("t").await.unwrap();
        assert_eq!(
            sup.terminate_child("t").await,
            Err(SupervisorError::NotFound("t".into()))
        );
        assert_eq!(sup.count_children().await.unwrap().specs, 1);
    });
}

#[test]
fn restart_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let flaky_fails = Arc::new(Mutex::new(false));
        let fails = flaky_fails.clone();
        let inner = worker("f", &log);
        let flaky = ChildSpec::worker("f", move || {
            let fail = *fails.lock().unwrap();
            let start = inner.start.clone();
            async move {
                if fail {
                    Err(Error::Config("down".into()))
                } else {
                    start().await
                }
            }
        });
        let specs = vec![worker("a", &log), flaky];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let a = started("a").await;
        started("f").await;
        assert_eq!(
            sup.restart_child("nope").await,
            Err(SupervisorError::NotFound("nope".into()))
        );
        assert_eq!(
            sup.restart_child("a").await,
            Err(SupervisorError::Running("a".into()))
        );
        sup.terminate_child("a").await.unwrap();
        let a2 = sup.restart_child("a").await.unwrap();
        assert_ne!(a, a2);
        assert_eq!(started("a").await, a2);
        assert_eq!(pid_of(sup, "a").await, Some(a2));
        // A failing restart: an error, and the child stays terminated.
        sup.terminate_child("f").await.unwrap();
        *flaky_fails.lock().unwrap() = true;
        assert_eq!(
            sup.restart_child("f").await,
            Err(SupervisorError::StartFailed {
                id: "f".into(),
                cause: Error::Config("down".into())
            })
        );
        assert_eq!(pid_of(sup, "f").await, None);
        *flaky_fails.lock().unwrap() = false;
        sup.restart_child("f").await.unwrap();
    });
}

#[test]
fn delete_child() {
    on_runtime(|_| async {
        let log = Log::default();
        let specs = vec![worker("a", &log), worker("b", &log)];
        let sup = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        assert_eq!(
            sup.delete_child("nope").await,
            Err(SupervisorError::NotFound("nope".into()))
        );
        assert_eq!(
            sup.delete_child("a").await,
            Err(SupervisorError::Running("a".into()))
        );
        sup.terminate_child("a").await.unwrap();
        sup.delete_child("a").await.unwrap();
        assert_eq!(
            sup.restart_child("a").await,
            Err(SupervisorError::NotFound("a".into()))
        );
        let ids: Vec<String> = sup
            .which_children()
            .await
            .unwrap()
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(ids, ["b"]);
        // The id is free again.
        sup.start_child(worker("a", &log)).await.unwrap();
    });
}

// ------------------------------------------------------------ trees

#[test]
fn nested_supervisors() {
    on_runtime(|_| async {
        let log = Log::default();
        let (inner_a, inner_b) = (worker("a", &log), worker("b", &log));
        let inner = ChildSpec::supervisor("inner", move || {
            let specs = vec![inner_a.clone(), inner_b.clone()];
            async move {
                // The default intensity: 1 restart in 5 s.
                Ok(Supervisor::start_link(SupervisorFlags::default(), specs)
                    .await?
                    .pid())
            }
        });
        let specs = vec![inner, worker("c", &log)];
        let outer = Supervisor::start_link(SupervisorFlags::default(), specs)
            .await
            .unwrap();
        let a = started("a").await;
        started("b").await;
        started("c").await;
        assert_eq!(log.take(), strings(&["start a", "start b", "start c"]));
        let inner1 = SupervisorRef::from_pid(pid_of(outer, "inner").await.unwrap());
        assert_eq!(inner1.count_children().await.unwrap().workers, 2);

        // The inner supervisor restarts its own child; the outer sees nothing.
        stop_worker(a, Reason::other("boom")).await;
        let a = started("a").await;
        assert_eq!(pid_of(outer, "inner").await, Some(inner1.pid()));

        // Past the inner intensity, the inner supervisor gives up, and the
        // outer one restarts it (with fresh children).
        let inner_down = beamish::monitor(inner1.pid());
        log.take();
        stop_worker(a, Reason::other("boom")).await;
        assert_eq!(down(inner_down).await, Reason::Shutdown);
        started("a").await;
        started("b").await;
        assert_eq!(
            log.take(),
            strings(&["stop a boom", "stop b shutdown", "start a", "start b"])
        );
        let inner2 = pid_of(outer, "inner").await.unwrap();
        assert_ne!(inner2, inner1.pid());

        // Stopping the tree: last started first, depth first.
        outer.stop().await.unwrap();
        assert_eq!(
            log.take(),
            strings(&["stop c shutdown", "stop b shutdown", "stop a shutdown"])
        );
        assert!(!inner2.is_alive());
    });
}

// ------------------------------------------------------------ significant children

#[test]
fn significant_child_with_auto_shutdown() {
    on_runtime(|_| async {
        beamish::trap_exit(true);
        let log = Log::default();
        let flags = SupervisorFlags::default().auto_shutdown(AutoShutdown::AnySignificant);
        let specs = vec![
            worker("a", &log),
            worker("s", &log)
                .restart(Restart::Transient)
                .significant(true),
            worker("b", &log),
        ];
        let sup = Supervisor::start_link(flags, specs).await.unwrap();
        let sup_down = beamish::monitor(sup.pid());
        started("a").await;
        let s = started("s").await;
        started("b").await;
        // A crash is restarted as usual.
        stop_worker(s, Reason::other("boom")).await;
        let s = started("s").await;
        log.take();
        // Its own normal end shuts the supervisor down.
        stop_worker(s, Reason::Normal).await;
        assert_eq!(down(sup_down).await, Reason::Shutdown);
        assert_eq!(
            log.take(),
            strings(&["stop s normal", "stop b shutdown", "stop a shutdown"])
        );
        assert_no_start().await;
    });
}

#[test]
fn all_significant_shuts_down_after_the_last_significant_child() {
    on_runtime(|_| async {
        beamish::trap_exit(true);
        let log = Log::default();
        let flags = SupervisorFlags::default().auto_shutdown(AutoShutdown::AllSignificant);
        let specs = vec![
            worker("s1", &log)
                .restart(Restart::Temporary)
                .significant(true),
            worker("s2", &log)
                .restart(Restart::Transient)
                .significant(true),
            worker("s3", &log)
                .restart(Restart::Transient)
                .significant(true),
            worker("w", &log),
        ];
        let sup = Supervisor::start_link(flags, specs).await.unwrap();
        let sup_down = beamish::monitor(sup.pid());
        let s1 = started("s1").await;
        let s2 = started("s2").await;
        started("s3").await;
        started("w").await;
        stop_worker(s1, Reason::other("boom")).await;
        assert_eq!(sup.count_children().await.unwrap().specs, 3);
        // Stopping one through the supervisor does not count.
        sup.terminate_child("s3").await.unwrap();
        assert!(sup.pid().is_alive());
        log.take();
        stop_worker(s2, Reason::Normal).await;
        assert_eq!(down(sup_down).await, Reason::Shutdown);
        assert_eq!(log.take(), strings(&["stop s2 normal", "stop w shutdown"]));
    });
}

#[test]
fn significant_children_need_auto_shutdown_and_a_non_permanent_restart() {
    on_runtime(|_| async {
        let log = Log::default();
        let never = vec![
            worker("s", &log)
                .restart(Restart::Transient)
                .significant(true),
        ];
        assert!(matches!(
            Supervisor::start_link(SupervisorFlags::default(), never).await,
            Err(SupervisorError::InvalidSpec { id, .. }) if &*id == "s"
        ));
        let flags = SupervisorFlags::default().auto_shutdown(AutoShutdown::AnySignificant);
        let permanent = vec![worker("p", &log).significant(true)];
        assert!(matches!(
            Supervisor::start_link(flags, permanent).await,
            Err(SupervisorError::InvalidSpec { id, .. }) if &*id == "p"
        ));
        assert!(log.take().is_empty());
    });
}

// ------------------------------------------------------------ cost

#[test]
fn twenty_thousand_restarts_keep_the_supervisor_running() {
    on_runtime(|_| async {
        // A child that ends at once, restarted 20,000 times within one
        // period (the history keeps O(1) amortized work per restart).
        let watcher = beamish::self_pid();
        let spec = ChildSpec::worker("crasher", move || async move {
            Ok(beamish::spawn_link(async move {
                watcher.send(Started {
                    name: "crasher",
                    pid: beamish::self_pid(),
                });
                beamish::exit(Reason::other("crash")).await
            }))
        });
        let flags = SupervisorFlags::default().intensity(u32::MAX);
        let sup = Supervisor::start_link(flags, vec![spec]).await.unwrap();
        let t0 = Instant::now();
        for _ in 0..20_000 {
            started("crasher").await;
        }
        eprintln!("20,000 restarts in {:?}", t0.elapsed());
        assert!(sup.pid().is_alive());
        assert_eq!(sup.count_children().await.unwrap().specs, 1);
    });
}
