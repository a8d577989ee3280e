//! The watchdog: `long_schedule` reports, keeping other processes running
//! while one holds its scheduler thread, and spare threads.
//!
//! These tests burn CPU on purpose (a process that never awaits), so they
//! run one at a time: on a two-core machine two of them at once would
//! compete for the cores they measure.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use beamish::{Error, LongSchedule, Runtime, receive};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Holds the thread for `d` without awaiting.
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Threads of this OS process whose name contains `part`.
fn threads_containing(part: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .filter(|name| name.contains(part))
                .count()
        })
        .unwrap_or(0)
}

/// What a heartbeat process saw.
#[derive(Debug, Default)]
struct Beats {
    /// Beats so far.
    count: AtomicU64,
    /// Largest lateness of a 1 ms sleep, in µs.
    max_late_us: AtomicU64,
    /// Set to stop the heartbeat.
    stop: AtomicBool,
    /// Names of the threads the heartbeat ran on.
    threads: Mutex<Vec<String>>,
}

/// A process that sleeps 1 ms in a loop and records how late it wakes.
async fn heartbeat(beats: Arc<Beats>) {
    while !beats.stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        beamish::sleep(ms(1)).await;
        let late = t.elapsed().saturating_sub(ms(1));
        beats
            .max_late_us
            .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        beats.count.fetch_add(1, Ordering::Relaxed);
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let mut threads = beats.threads.lock().unwrap();
        if !threads.contains(&name) {
            threads.push(name);
        }
    }
}

/// Spawns a process that spins for `d` and then sends `(beats before,
/// beats after)` to `to`.
fn spawn_spinner(to: beamish::Pid, d: Duration, beats: Arc<Beats>) -> beamish::Pid {
    beamish::spawn(async move {
        let before = beats.count.load(Ordering::Relaxed);
        spin(d);
        let after = beats.count.load(Ordering::Relaxed);
        to.send((before, after));
    })
}

/// Waits (in a process) until the heartbeat has beaten `n` more times.
async fn beats_resume(beats: &Beats, n: u64, limit: Duration) -> bool {
    let start = beats.count.load(Ordering::Relaxed);
    let t = Instant::now();
    while beats.count.load(Ordering::Relaxed) < start + n {
        if t.elapsed() > limit {
            return false;
        }
        beamish::sleep(ms(1)).await;
    }
    true
}

// ------------------------------------------------------------ reports

#[test]
fn a_process_that_blocks_its_thread_is_reported_with_pid_and_duration() {
    let _s = serial();
    let rt = Runtime::builder()
        .worker_threads(2)
        .long_schedule(ms(10))
        .build()
        .unwrap();
    rt.block_on(async {
        beamish::subscribe_long_schedule().unwrap();
        let hog = beamish::spawn(async {
            std::thread::sleep(ms(60)); // never awaits
        });
        let report = beamish::receive_if(move |r: &LongSchedule| r.pid == hog)
            .timeout(Duration::from_secs(10))
            .await
            .expect("no long_schedule report");
        assert_eq!(report.pid, hog);
        assert!(report.duration >= ms(10), "reported {:?}", report.duration);
    })
    .unwrap();
}

#[test]
fn a_spinning_process_is_reported() {
    let _s = serial();
    let rt = Runtime::builder()
        .worker_threads(2)
        .long_schedule(ms(10))
        .build()
        .unwrap();
    rt.block_on(async {
        beamish::subscribe_long_schedule().unwrap();
        // Subscribing twice does not double the reports.
        beamish::subscribe_long_schedule().unwrap();
        let hog = beamish::spawn(async { spin(ms(60)) });
        // Filtered by pid: on a loaded machine the OS may stall any poll.
        let report = beamish::receive_if(move |r: &LongSchedule| r.pid == hog)
            .timeout(Duration::from_secs(10))
            .await
            .expect("no long_schedule report");
        assert_eq!(report.pid, hog);
        assert!(report.duration >= ms(10), "reported {:?}", report.duration);
        // One report per stuck poll, once.
        beamish::sleep(ms(100)).await;
        let again = beamish::receive_if(move |r: &LongSchedule| r.pid == hog)
            .timeout(Duration::ZERO)
            .await;
        assert_eq!(again, None);
    })
    .unwrap();
}

#[test]
fn a_process_that_awaits_often_is_not_reported() {
    let _s = serial();
    // The threshold is well above what the OS may steal from a thread, and
    // well below how long the process keeps its thread busy in total.
    let rt = Runtime::builder()
        .worker_threads(2)
        .long_schedule(ms(100))
        .build()
        .unwrap();
    rt.block_on(async {
        beamish::subscribe_long_schedule().unwrap();
        let me = beamish::self_pid();
        let worker = beamish::spawn(async move {
            let t = Instant::now();
            while t.elapsed() < ms(500) {
                spin(Duration::from_micros(100));
                beamish::yield_now().await;
            }
            me.send("done");
        });
        assert_eq!(receive::<&str>().await, "done");
        let report = beamish::receive_if(move |r: &LongSchedule| r.pid == worker)
            .timeout(ms(20))
            .await;
        assert_eq!(report, None);
    })
    .unwrap();
}

#[test]
fn subscribing_outside_a_process_is_an_error() {
    assert_eq!(beamish::subscribe_long_schedule(), Err(Error::NotInProcess));
}

// ------------------------------------------------------------ keeping others running

#[test]
fn others_keep_running_while_one_process_spins_on_a_two_thread_runtime() {
    let _s = serial();
    // No spare threads: the other regular thread must take over the work.
    let rt = Runtime::builder()
        .worker_threads(2)
        .max_spare_threads(0)
        .build()
        .unwrap();
    let beats = Arc::new(Beats::default());
    let b = beats.clone();
    let (before, after) = rt
        .block_on(async move {
            let me = beamish::self_pid();
            beamish::spawn(heartbeat(b.clone()));
            assert!(beats_resume(&b, 5, Duration::from_secs(5)).await);
            b.max_late_us.store(0, Ordering::Relaxed);
            spawn_spinner(me, ms(300), b.clone());
            let r = receive::<(u64, u64)>().await;
            b.stop.store(true, Ordering::Relaxed);
            r
        })
        .unwrap();
    let late = Duration::from_micros(beats.max_late_us.load(Ordering::Relaxed));
    eprintln!(
        "{} beats during the spin, at most {late:?} late",
        after - before
    );
    assert!(
        after - before >= 10,
        "the heartbeat beat {} times during a 300 ms spin",
        after - before
    );
    assert!(late < ms(100), "the heartbeat was {late:?} late");
}

#[test]
fn when_every_scheduler_is_stuck_a_spare_thread_runs_the_others() {
    let _s = serial();
    let rt = Runtime::builder()
        .worker_threads(1)
        .max_spare_threads(1)
        .thread_name("wdspare")
        .build()
        .unwrap();
    let beats = Arc::new(Beats::default());
    let b = beats.clone();
    let (before, after) = rt
        .block_on(async move {
            let me = beamish::self_pid();
            beamish::spawn(heartbeat(b.clone()));
            assert!(beats_resume(&b, 5, Duration::from_secs(5)).await);
            b.max_late_us.store(0, Ordering::Relaxed);
            spawn_spinner(me, ms(300), b.clone());
            let r = receive::<(u64, u64)>().await;
            b.stop.store(true, Ordering::Relaxed);
            r
        })
        .unwrap();
    let late = Duration::from_micros(beats.max_late_us.load(Ordering::Relaxed));
    eprintln!(
        "{} beats during the spin, at most {late:?} late",
        after - before
    );
    let threads = beats.threads.lock().unwrap().clone();
    assert!(
        after - before >= 10,
        "the heartbeat beat {} times during a 300 ms spin (threads {threads:?})",
        after - before
    );
    assert!(late < ms(100), "the heartbeat was {late:?} late");
    assert!(
        threads.iter().any(|t| t.contains("spare")),
        "the heartbeat never ran on a spare thread: {threads:?}"
    );
    // Once nothing is stuck, the spare goes away.
    let t = Instant::now();
    while threads_containing("wdspare-spare") > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(ms(5));
    }
    assert_eq!(
        threads_containing("wdspare-spare"),
        0,
        "the spare thread stayed"
    );
}

#[test]
fn without_spare_threads_a_stuck_scheduler_stalls_others_until_it_ends() {
    let _s = serial();
    let rt = Runtime::builder()
        .worker_threads(1)
        .max_spare_threads(0)
        .build()
        .unwrap();
    let beats = Arc::new(Beats::default());
    let b = beats.clone();
    let resumed = rt
        .block_on(async move {
            let me = beamish::self_pid();
            beamish::spawn(heartbeat(b.clone()));
            assert!(beats_resume(&b, 5, Duration::from_secs(5)).await);
            spawn_spinner(me, ms(300), b.clone());
            receive::<(u64, u64)>().await;
            let resumed = beats_resume(&b, 5, Duration::from_secs(10)).await;
            b.stop.store(true, Ordering::Relaxed);
            resumed
        })
        .unwrap();
    assert!(
        resumed,
        "the heartbeat did not resume after the spinner ended"
    );
    let threads = beats.threads.lock().unwrap().clone();
    assert!(
        threads.iter().all(|t| !t.contains("spare")),
        "a spare thread ran although max_spare_threads is 0: {threads:?}"
    );
}

#[test]
fn spare_threads_are_bounded_by_max_spare_threads() {
    let _s = serial();
    let rt = Runtime::builder()
        .worker_threads(1)
        .max_spare_threads(1)
        .thread_name("wdbound")
        .build()
        .unwrap();
    // Count spare threads from outside while three processes spin.
    let watching = Arc::new(AtomicBool::new(true));
    let w = watching.clone();
    let watcher = std::thread::spawn(move || {
        let mut most = 0;
        while w.load(Ordering::Relaxed) {
            most = most.max(threads_containing("wdbound-spare"));
            std::thread::sleep(ms(2));
        }
        most
    });
    let beats = Arc::new(Beats::default());
    let b = beats.clone();
    let resumed = rt
        .block_on(async move {
            let me = beamish::self_pid();
            beamish::spawn(heartbeat(b.clone()));
            assert!(beats_resume(&b, 5, Duration::from_secs(5)).await);
            for _ in 0..3 {
                spawn_spinner(me, ms(200), b.clone());
            }
            for _ in 0..3 {
                receive::<(u64, u64)>().await;
            }
            let resumed = beats_resume(&b, 5, Duration::from_secs(10)).await;
            b.stop.store(true, Ordering::Relaxed);
            resumed
        })
        .unwrap();
    watching.store(false, Ordering::Relaxed);
    let most = watcher.join().unwrap();
    assert!(resumed, "the heartbeat did not resume");
    assert!(most >= 1, "no spare thread was started");
    assert!(
        most <= 1,
        "{most} spare threads ran at once; the limit is 1"
    );
}
