//! Introspection (`beamish::observe`): scheduler load, counts and rates,
//! the top processes by reductions, mailbox and memory, `long_schedule`
//! reports, supervision trees, and several observers at once.
//!
//! Tests that measure load burn CPU, so they run one at a time.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use beamish::observe::{Observer, Rank, TreeKind, application_trees, supervision_tree};
use beamish::otp::{
    Application, ChildKind, ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, Strategy,
    SupervisorFlags,
};
use beamish::{Reason, Runtime, Status, receive};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn runtime() -> Runtime {
    Runtime::builder().worker_threads(2).build().unwrap()
}

/// A process that computes until told to stop, yielding as it goes.
async fn hog() {
    loop {
        for _ in 0..1000 {
            beamish::reduce(10).await;
        }
        if beamish::receive_if(|_: &()| true)
            .timeout(Duration::ZERO)
            .await
            .is_some()
        {
            return;
        }
    }
}

#[test]
fn an_idle_runtime_is_idle_and_a_busy_one_is_busy() {
    let _s = serial();
    let rt = runtime();
    let mut obs = Observer::new(&rt.handle());
    let first = obs.system();
    assert_eq!(first.interval, None);
    assert_eq!(first.schedulers.iter().filter(|s| !s.spare).count(), 2);
    std::thread::sleep(ms(200));
    let idle = obs.system();
    let interval = idle.interval.expect("a second sample has an interval");
    assert!(interval >= ms(200), "{interval:?}");
    assert!(idle.utilization() < 0.2, "idle runtime: {idle:?}");
    for s in &idle.schedulers {
        assert!(s.total >= ms(200) && s.busy <= s.total, "{s:?}");
    }

    let h = rt.handle();
    let busy = h.spawn(hog()).unwrap();
    std::thread::sleep(ms(300));
    let loaded = obs.system();
    busy.send(());
    // One process computes: about one thread's worth (it moves between
    // the two threads as they steal it from each other).
    assert!(loaded.utilization() > 0.3, "{loaded:?}");
    let busy_total: Duration = loaded.schedulers.iter().map(|s| s.busy).sum();
    assert!(busy_total > ms(150), "{loaded:?}");
    assert!(loaded.window_reductions > 0 || loaded.window.is_zero());
}

#[test]
fn spawn_and_exit_counts_and_rates() {
    let _s = serial();
    let rt = runtime();
    let mut obs = Observer::new(&rt.handle());
    let before = obs.system();
    let h = rt.handle();
    let pids: Vec<_> = (0..1000)
        .map(|_| h.spawn(async { receive::<()>().await }).unwrap())
        .collect();
    std::thread::sleep(ms(20));
    let mid = obs.system();
    assert_eq!(mid.spawned, 1000);
    assert_eq!(mid.exited, 0);
    assert!(mid.spawn_rate() > 0.0);
    assert_eq!(mid.processes, before.processes + 1000);
    assert_eq!(mid.total_spawned, before.total_spawned + 1000);
    for p in &pids {
        p.send(());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let s = obs.system();
        if s.processes == before.processes || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(ms(5));
    };
    assert_eq!(after.processes, before.processes);
    assert_eq!(after.total_exited, before.total_exited + 1000);
}

#[test]
fn top_processes_by_reductions_mailbox_and_memory() {
    let _s = serial();
    let rt = runtime();
    let h = rt.handle();
    let mut obs = Observer::new(&h);
    obs.set_window(ms(50));
    let busy = h
        .spawn_with(beamish::SpawnOptions::new().name("busy"), hog())
        .unwrap();
    let queued = h.spawn(async { receive::<()>().await }).unwrap();
    for i in 0..100u32 {
        queued.send(i); // never matched
    }
    let big = h
        .spawn(async {
            let buffer = [7u8; 64 * 1024];
            receive::<()>().await;
            std::hint::black_box(&buffer);
        })
        .unwrap();
    let _idle: Vec<_> = (0..100)
        .map(|_| h.spawn(async { receive::<()>().await }).unwrap())
        .collect();
    // Two windows: the first sample opens observing, a later one closes a
    // window in which the hog ran.
    obs.sample(5);
    std::thread::sleep(ms(120));
    let s = obs.sample(5);
    let top = s.top(Rank::Reductions);
    assert_eq!(top[0].pid, busy, "{top:?}");
    assert_eq!(top[0].name.as_deref(), Some("busy"));
    assert!(top[0].recent_reductions > 0 && top[0].reductions >= top[0].recent_reductions);
    assert!(top.len() <= 5);
    let q = s.top(Rank::MessageQueue);
    assert_eq!((q[0].pid, q[0].message_queue_len), (queued, 100), "{q:?}");
    assert_eq!(q[0].status, Status::Waiting);
    let m = s.top(Rank::Memory);
    assert_eq!(m[0].pid, big, "{m:?}");
    assert!(m[0].memory > 64 * 1024);
    assert!(s.memory.processes > 64 * 1024);
    assert!(s.memory.mailbox_messages >= 100);
    assert!(s.memory.mailboxes >= 100 * 16);
    assert_eq!(s.by_status.iter().sum::<usize>(), s.system.processes);
    busy.send(());
}

#[test]
fn every_process_with_its_name() {
    let _s = serial();
    let rt = runtime();
    let h = rt.handle();
    let obs = Observer::new(&h);
    let named = h
        .spawn_with(beamish::SpawnOptions::new().name("named"), async {
            receive::<()>().await
        })
        .unwrap();
    let all = obs.processes();
    let me = all.iter().find(|p| p.pid == named).expect("listed");
    assert_eq!(me.name.as_deref(), Some("named"));
    assert_eq!(all.len(), h.process_count());
}

#[test]
fn long_schedule_reports_are_kept() {
    let _s = serial();
    let rt = Runtime::builder()
        .worker_threads(2)
        .long_schedule(ms(10))
        .build()
        .unwrap();
    let h = rt.handle();
    let mut obs = Observer::new(&h);
    let stuck = h
        .spawn(async {
            let t = Instant::now();
            while t.elapsed() < ms(60) {
                std::hint::spin_loop();
            }
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while obs.long_schedules().is_empty() && Instant::now() < deadline {
        std::thread::sleep(ms(10));
    }
    let events = obs.long_schedules();
    assert_eq!(events[0].pid, stuck, "{events:?}");
    assert!(events[0].duration >= ms(10));
    assert!(obs.system().long_schedules >= 1);
}

#[test]
fn supervision_trees_of_applications() {
    let _s = serial();
    let rt = runtime();
    rt.block_on(async {
        let dynamic = ChildSpec::supervisor("pool", || async {
            let sup = DynamicSupervisor::start_link(DynamicSupervisorFlags::default()).await;
            Ok(sup
                .map_err(|e| beamish::Error::Config(e.to_string()))?
                .pid())
        });
        let worker = ChildSpec::worker("worker", || async {
            Ok(beamish::spawn_link(async { receive::<()>().await }))
        });
        let app = Application::start(
            "shop",
            SupervisorFlags::new(Strategy::OneForOne),
            vec![dynamic, worker],
        )
        .await
        .unwrap();
        let root = app.supervisor();
        let tree = supervision_tree(root.pid()).await.unwrap();
        assert_eq!(tree.kind, TreeKind::Supervisor(Strategy::OneForOne));
        assert_eq!(tree.children.len(), 2);
        let pool = &tree.children[0];
        assert_eq!(
            (&*pool.info.id, pool.info.kind),
            ("pool", ChildKind::Supervisor)
        );
        let pool_tree = pool.tree.as_ref().expect("a subtree");
        assert_eq!(pool_tree.kind, TreeKind::DynamicSupervisor);
        let pool_ref = beamish::otp::DynamicSupervisorRef::from_pid(pool_tree.pid);
        let spec = ChildSpec::worker("member", || async {
            Ok(beamish::spawn_link(async { receive::<()>().await }))
        });
        let member = pool_ref.start_child(spec).await.unwrap();

        // A crash: the worker is restarted, its count goes up.
        let first = tree.children[1].info.pid.unwrap();
        assert_eq!(tree.children[1].info.restarts, 0);
        first.exit(Reason::Kill);
        member.exit(Reason::Kill);
        beamish::sleep(ms(50)).await;
        let tree = supervision_tree(root.pid()).await.unwrap();
        let worker = &tree.children[1];
        assert_eq!(worker.info.restarts, 1);
        assert_ne!(worker.info.pid, Some(first));
        let pool_tree = tree.children[0].tree.as_ref().unwrap();
        assert_eq!(pool_tree.children.len(), 1);
        assert_eq!(pool_tree.children[0].info.restarts, 1);
        assert_eq!(tree.pids().len(), 4);

        let apps = application_trees().await;
        assert_eq!(apps.len(), 1);
        assert_eq!(&*apps[0].0, "shop");
        assert_eq!(apps[0].1.as_ref().unwrap().pid, root.pid());

        // Not a supervisor: no answer in time.
        let plain = beamish::spawn(async { receive::<()>().await });
        assert_eq!(supervision_tree(plain).await, Err(beamish::Error::Timeout));
        plain.exit(Reason::Kill);
        beamish::sleep(ms(10)).await;
        assert_eq!(
            supervision_tree(plain).await,
            Err(beamish::Error::NoProc(plain))
        );
        app.stop().await.unwrap();
    })
    .unwrap();
}

#[test]
fn observers_do_not_disturb_each_other() {
    let _s = serial();
    let rt = runtime();
    let h = rt.handle();
    let mut a = Observer::new(&h);
    let mut b = Observer::new(&h);
    a.set_window(ms(40));
    let busy = h.spawn(hog()).unwrap();
    a.sample(3);
    std::thread::sleep(ms(60));
    let sa = a.sample(3);
    let sb = b.sample(3);
    // The same closed window for both.
    assert_eq!(sa.system.window, sb.system.window);
    // (The same processes and window figures; their running totals are
    // read at each sample.)
    let window_view = |s: &beamish::observe::Sample| -> Vec<_> {
        s.top_reductions
            .iter()
            .map(|p| (p.pid, p.recent_reductions))
            .collect()
    };
    assert_eq!(window_view(&sa), window_view(&sb));
    assert_eq!(sa.top_reductions[0].pid, busy);
    // Each has its own deltas.
    assert!(sa.system.interval.is_some());
    assert_eq!(sb.system.interval, None);
    busy.send(());
    assert!(a.observing());
    drop(a);
    assert!(b.observing());
    drop(b);
    let c = Observer::new(&h);
    assert!(!c.observing(), "the last observer switched accounting off");
}

#[test]
fn sampling_from_inside_a_process() {
    let _s = serial();
    let rt = runtime();
    rt.block_on(async {
        let mut obs = Observer::current().unwrap();
        let pids: Vec<_> = (0..40_000)
            .map(|_| beamish::spawn(async { receive::<()>().await }))
            .collect();
        beamish::sleep(ms(20)).await;
        let s = obs.sample_async(10).await;
        assert!(s.system.processes > 40_000);
        assert_eq!(s.by_status.iter().sum::<usize>(), s.system.processes);
        assert!(s.memory.processes >= 40_000 * 64);
        for p in pids {
            p.send(());
        }
    })
    .unwrap();
    assert_eq!(
        Observer::current().unwrap_err(),
        beamish::Error::NotInProcess
    );
}
