//! DynamicSupervisor (Elixir's): children started on demand with their
//! arguments, `max_children`, one-for-one restarts within the restart
//! intensity, and tens of thousands of children.
//!
//! As in `supervisor.rs`: after a child's `Down` reaches the test, a call to
//! the supervisor is answered only after the supervisor has handled that
//! child's exit (a dying process sends link exits before monitor `Down`s).
//! Every wait is bounded by [`LONG`].

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use beamish::otp::{
    ChildCounts, ChildKind, ChildSpec, DynamicSupervisor, DynamicSupervisorFlags,
    DynamicSupervisorRef, Flow, GenServer, Init, Reply, ReplyTo, Restart, ServerRef, Shutdown,
    StartOptions, Supervisor, SupervisorError, SupervisorFlags,
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

/// Connection → test: connection `n` (re)started as `pid`.
struct Started {
    n: u32,
    pid: Pid,
}

/// A child with an argument; a cast stops it with the cast reason.
struct Conn {
    n: u32,
    watcher: Pid,
}

impl GenServer for Conn {
    type Call = ();
    type Reply = u32;
    type Cast = Reason;

    async fn init(&mut self) -> Init {
        self.watcher.send(Started {
            n: self.n,
            pid: beamish::self_pid(),
        });
        Init::Ok
    }

    async fn handle_call(&mut self, (): (), _from: ReplyTo<u32>) -> Reply<u32> {
        Reply::reply(self.n)
    }

    async fn handle_cast(&mut self, reason: Reason) -> Flow {
        Flow::Stop(reason)
    }
}

/// Connection `n`, reporting to the calling process.
fn conn(n: u32) -> ChildSpec {
    let watcher = beamish::self_pid();
    ChildSpec::worker("conn", move || async move {
        beamish::otp::start_with(Conn { n, watcher }, StartOptions::new().link())
            .await
            .map(|s| s.pid())
    })
}

/// A plain process that waits forever: the cheapest child.
fn idle() -> ChildSpec {
    ChildSpec::worker("idle", || async {
        Ok(beamish::spawn_link(beamish::receive::<()>()))
    })
}

/// Waits for connection `n`'s next (re)start.
async fn started(n: u32) -> Pid {
    beamish::receive_if(move |s: &Started| s.n == n)
        .timeout(LONG)
        .await
        .unwrap_or_else(|| panic!("conn {n} did not start"))
        .pid
}

async fn assert_no_start() {
    let extra = beamish::receive::<Started>().timeout(Duration::ZERO).await;
    assert!(
        extra.is_none(),
        "unexpected start of {:?}",
        extra.map(|s| s.n)
    );
}

/// Makes connection `pid` stop with `reason` and waits until it has ended.
async fn stop_conn(pid: Pid, reason: Reason) {
    let mref = beamish::monitor(pid);
    ServerRef::<Conn>::from_pid(pid).cast(reason);
    down(mref).await;
}

async fn down(mref: beamish::Ref) -> Reason {
    beamish::receive_if(move |d: &Down| d.monitor == mref)
        .timeout(LONG)
        .await
        .expect("a Down")
        .reason
}

/// Waits until the runtime has `n` processes.
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

#[test]
fn start_child_binds_its_arguments() {
    on_runtime(|_| async {
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        assert_eq!(
            sup.count_children().await.unwrap(),
            ChildCounts::default(),
            "it starts with no children"
        );
        for n in 0..3 {
            let pid = sup.start_child(conn(n)).await.unwrap();
            assert_eq!(started(n).await, pid);
            assert_eq!(ServerRef::<Conn>::from_pid(pid).call(()).await, Ok(n));
        }
        let children = sup.which_children().await.unwrap();
        assert_eq!(children.len(), 3);
        assert!(
            children
                .iter()
                .all(|c| &*c.id == "conn" && c.kind == ChildKind::Worker && c.pid.is_some())
        );
    });
}

#[test]
fn starts_and_terminates_20000_children() {
    on_runtime(|handle| async move {
        const N: u32 = 20_000;
        let baseline = handle.process_count();
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let t0 = Instant::now();
        let mut pids = Vec::with_capacity(N as usize);
        for n in 0..N {
            pids.push(sup.start_child(conn(n)).await.unwrap());
            started(n).await;
        }
        let started_in = t0.elapsed();
        assert_eq!(
            sup.count_children().await.unwrap(),
            ChildCounts {
                specs: N as usize,
                active: N as usize,
                supervisors: 0,
                workers: N as usize
            }
        );
        let listed: HashSet<Pid> = sup
            .which_children()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.pid)
            .collect();
        assert_eq!(listed, pids.iter().copied().collect::<HashSet<_>>());
        assert_eq!(handle.process_count(), baseline + 1 + N as usize);

        let t0 = Instant::now();
        for &pid in &pids {
            sup.terminate_child(pid).await.unwrap();
        }
        let terminated_in = t0.elapsed();
        eprintln!("{N} children: started in {started_in:?}, terminated in {terminated_in:?}");
        assert_eq!(sup.count_children().await.unwrap(), ChildCounts::default());
        assert!(pids.iter().all(|p| !p.is_alive()));
        settle(&handle, baseline + 1).await;
        assert_no_start().await;
    });
}

#[test]
fn stopping_the_supervisor_stops_20000_children_at_once() {
    on_runtime(|handle| async move {
        const N: usize = 20_000;
        let baseline = handle.process_count();
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let mut pids = Vec::with_capacity(N);
        for _ in 0..N {
            pids.push(sup.start_child(idle()).await.unwrap());
        }
        assert_eq!(handle.process_count(), baseline + 1 + N);
        let t0 = Instant::now();
        sup.stop().await.unwrap();
        eprintln!("{N} children stopped in {:?}", t0.elapsed());
        assert!(pids.iter().all(|p| !p.is_alive()));
        settle(&handle, baseline).await;
    });
}

#[test]
fn max_children_is_enforced() {
    on_runtime(|_| async {
        let flags = DynamicSupervisorFlags::default().max_children(2);
        let sup = DynamicSupervisor::start_link(flags).await.unwrap();
        let a = sup.start_child(conn(0)).await.unwrap();
        sup.start_child(conn(1)).await.unwrap();
        assert_eq!(
            sup.start_child(conn(2)).await,
            Err(SupervisorError::MaxChildren)
        );
        started(0).await;
        started(1).await;
        assert_no_start().await; // conn 2 was never started
        sup.terminate_child(a).await.unwrap();
        sup.start_child(conn(2)).await.unwrap();
        started(2).await;
        assert_eq!(sup.count_children().await.unwrap().active, 2);
    });
}

#[test]
fn crashed_child_is_restarted_with_its_arguments() {
    on_runtime(|_| async {
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let pid = sup.start_child(conn(7)).await.unwrap();
        started(7).await;
        stop_conn(pid, Reason::other("boom")).await;
        let new = started(7).await;
        assert_ne!(new, pid);
        assert_eq!(ServerRef::<Conn>::from_pid(new).call(()).await, Ok(7));
        let children = sup.which_children().await.unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].pid, Some(new));
        // The restarted child is known by its new pid.
        assert_eq!(
            sup.terminate_child(pid).await,
            Err(SupervisorError::NotAChild(pid))
        );
        sup.terminate_child(new).await.unwrap();
    });
}

#[test]
fn children_follow_their_restart_type() {
    on_runtime(|_| async {
        let flags = DynamicSupervisorFlags::default().intensity(10);
        let sup = DynamicSupervisor::start_link(flags).await.unwrap();
        let transient = sup
            .start_child(conn(1).restart(Restart::Transient))
            .await
            .unwrap();
        let temporary = sup
            .start_child(conn(2).restart(Restart::Temporary))
            .await
            .unwrap();
        let permanent = sup.start_child(conn(3)).await.unwrap();
        for n in 1..=3 {
            started(n).await;
        }
        stop_conn(transient, Reason::Normal).await;
        stop_conn(temporary, Reason::other("boom")).await;
        stop_conn(permanent, Reason::Normal).await;
        let permanent = started(3).await;
        let children = sup.which_children().await.unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].pid, Some(permanent));
        assert_no_start().await;
    });
}

#[test]
fn terminate_child_of_an_unknown_pid_is_an_error() {
    on_runtime(|_| async {
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let stranger = beamish::spawn(beamish::receive::<()>());
        assert_eq!(
            sup.terminate_child(stranger).await,
            Err(SupervisorError::NotAChild(stranger))
        );
        assert!(stranger.is_alive(), "not touched");
        let me = beamish::self_pid();
        assert_eq!(
            sup.terminate_child(me).await,
            Err(SupervisorError::NotAChild(me))
        );
    });
}

#[test]
fn failing_start_child_is_an_error_naming_the_child() {
    on_runtime(|handle| async move {
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let baseline = handle.process_count();
        let failing = ChildSpec::worker("db", || async { Err(Error::Config("down".into())) });
        assert_eq!(
            sup.start_child(failing).await,
            Err(SupervisorError::StartFailed {
                id: "db".into(),
                cause: Error::Config("down".into())
            })
        );
        let panicking = ChildSpec::worker("db", || async { panic!("kaboom") });
        assert_eq!(
            sup.start_child(panicking).await,
            Err(SupervisorError::StartFailed {
                id: "db".into(),
                cause: Error::Exited(Reason::Panic("kaboom".into()))
            })
        );
        let significant = conn(0).restart(Restart::Transient).significant(true);
        assert!(matches!(
            sup.start_child(significant).await,
            Err(SupervisorError::InvalidSpec { .. })
        ));
        assert_eq!(sup.count_children().await.unwrap(), ChildCounts::default());
        assert_eq!(handle.process_count(), baseline);
    });
}

#[test]
fn intensity_exceeded_stops_children_and_exits_shutdown() {
    on_runtime(|_| async {
        beamish::trap_exit(true);
        let flags = DynamicSupervisorFlags::default().intensity(1);
        let sup = DynamicSupervisor::start_link(flags).await.unwrap();
        let sup_down = beamish::monitor(sup.pid());
        let a = sup.start_child(conn(1)).await.unwrap();
        let b = sup.start_child(conn(2)).await.unwrap();
        started(1).await;
        started(2).await;
        let b_down = beamish::monitor(b);
        stop_conn(a, Reason::other("boom")).await;
        let a = started(1).await; // the one restart allowed
        stop_conn(a, Reason::other("boom")).await;
        assert_eq!(down(sup_down).await, Reason::Shutdown);
        assert_eq!(down(b_down).await, Reason::Shutdown);
        let exit = beamish::receive::<Exit>().timeout(LONG).await.unwrap();
        assert_eq!((exit.from, exit.reason), (sup.pid(), Reason::Shutdown));
        assert_no_start().await;
    });
}

#[test]
fn a_failed_restart_is_retried() {
    on_runtime(|_| async {
        let watcher = beamish::self_pid();
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let spec = ChildSpec::worker("flaky", move || {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if attempt == 1 {
                    return Err(Error::Config("not yet".into()));
                }
                beamish::otp::start_with(Conn { n: 9, watcher }, StartOptions::new().link())
                    .await
                    .map(|s| s.pid())
            }
        });
        let flags = DynamicSupervisorFlags::default().intensity(5);
        let sup = DynamicSupervisor::start_link(flags).await.unwrap();
        let pid = sup.start_child(spec).await.unwrap();
        started(9).await;
        stop_conn(pid, Reason::other("boom")).await;
        let new = started(9).await;
        assert_ne!(new, pid);
        assert_eq!(sup.which_children().await.unwrap()[0].pid, Some(new));
    });
}

#[test]
fn shutdown_timeout_escalates_to_kill_when_the_supervisor_stops() {
    on_runtime(|_| async {
        let stubborn = ChildSpec::worker("stubborn", || async {
            let spawned = SpawnOptions::new().link().trap_exit(true).spawn(async {
                loop {
                    let _ = beamish::receive::<Exit>().await;
                }
            })?;
            Ok(spawned.pid)
        })
        .shutdown(Shutdown::Timeout(Duration::from_millis(100)));
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let s = sup.start_child(stubborn.clone()).await.unwrap();
        let k = sup
            .start_child(stubborn.shutdown(Shutdown::BrutalKill))
            .await
            .unwrap();
        let w = sup.start_child(conn(1)).await.unwrap();
        let (ms, mk, mw) = (
            beamish::monitor(s),
            beamish::monitor(k),
            beamish::monitor(w),
        );
        let t0 = Instant::now();
        sup.stop().await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(down(ms).await, Reason::Killed);
        assert_eq!(down(mk).await, Reason::Killed);
        assert_eq!(down(mw).await, Reason::Shutdown);
    });
}

#[test]
fn a_dynamic_supervisor_under_a_supervisor() {
    on_runtime(|_| async {
        let spec = ChildSpec::supervisor("pool", || async {
            Ok(
                DynamicSupervisor::start_link_named("pool", DynamicSupervisorFlags::default())
                    .await?
                    .pid(),
            )
        });
        let top = Supervisor::start_link(SupervisorFlags::default(), vec![spec])
            .await
            .unwrap();
        let pool = DynamicSupervisorRef::whereis("pool").unwrap();
        let child = pool.start_child(conn(1)).await.unwrap();
        let mref = beamish::monitor(child);
        top.stop().await.unwrap();
        assert_eq!(down(mref).await, Reason::Shutdown);
        assert!(!pool.pid().is_alive());
    });
}

#[test]
fn calls_to_a_dead_dynamic_supervisor_fail_at_once() {
    on_runtime(|_| async {
        let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default())
            .await
            .unwrap();
        let pid = sup.pid();
        sup.stop().await.unwrap();
        let dead = Err(SupervisorError::Runtime(Error::NoProc(pid)));
        assert_eq!(sup.start_child(idle()).await, dead);
        assert_eq!(
            sup.count_children().await,
            Err(SupervisorError::Runtime(Error::NoProc(pid)))
        );
        let flags = DynamicSupervisorFlags::default().period(Duration::ZERO);
        assert!(matches!(
            DynamicSupervisor::start_link(flags).await,
            Err(SupervisorError::InvalidFlags(_))
        ));
    });
}
