//! The exit-signal rules of the project's OTP 25 exit-rules table (what a
//! real OTP 25 node does), one test per row and per `trap_exit` column.
//!
//! Every test runs on its own runtime. The process whose fate a row describes
//! is the *subject*: the test's root process spawns it (with `trap_exit` as
//! the column says) and monitors it. The subject runs the row's setup, then
//! collects every `Exit` message that arrives within [`QUIET`] and reports
//! them to the root, and then answers pings. So:
//!
//! * "dies with R" is `Outcome::Died(R)`: the root's monitor fired with R;
//! * "gets {'EXIT',Pid,R}" is `Outcome::Alive(vec![Exit { from: Pid, reason: R }])`;
//! * "nothing; keeps running" is `Outcome::Alive(vec![])`: no `Exit` message
//!   arrived, and the subject still answered a ping afterwards;
//! * "raises badarg/noproc" is an `Err` from the call, reported by the subject.
//!
//! The setups avoid timing assumptions: a setup waits for the event it
//! provokes (the `Down` of the process that exits, or a message that the
//! sender of an exit signal sends right after it, which arrives after the
//! signal because signals and messages between one pair of processes keep
//! their order).

use std::future::Future;
use std::time::Duration;

use beamish::{Down, Error, Exit, Pid, Reason, Ref, SpawnOptions};

/// How long a subject waits for (more) `Exit` messages before reporting.
const QUIET: Duration = Duration::from_millis(100);
/// A wait that only a bug can exhaust.
const LONG: Duration = Duration::from_secs(5);

/// What happened to the subject.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It ended with this reason (seen by the root's monitor).
    Died(Reason),
    /// It kept running (it answered a ping after reporting); these `Exit`
    /// messages arrived, in this order.
    Alive(Vec<Exit>),
}

/// Subject → root: the `Exit` messages it got.
struct Report(Vec<Exit>);
/// Root → subject, subject → root.
struct Ping(Pid);
struct Pong;
/// "Go on": a plain message used to sequence processes.
struct Go;
/// Setup → root: a pid the test needs for its assertions.
struct Child(Pid);
/// Setup → root: a value the test asserts on.
struct Note<T>(T);

/// Runs `root` as the root process of a fresh runtime and returns its output;
/// a panic (failed assertion) in the root fails the test with its message.
fn on_runtime<F>(root: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = beamish::Runtime::new().expect("runtime");
    let out = rt
        .block_on(root)
        .unwrap_or_else(|reason| panic!("the root process ended with {reason:?}"));
    rt.shutdown();
    out
}

/// Waits for the `Down` of monitor `m`.
async fn wait_down(m: Ref) -> Down {
    beamish::receive_if(move |d: &Down| d.monitor == m)
        .timeout(LONG)
        .await
        .expect("no Down message")
}

/// Receives the next `T` the setup sent to the root.
async fn note<T: Send + 'static>() -> T {
    beamish::receive::<Note<T>>()
        .timeout(LONG)
        .await
        .expect("the setup did not report")
        .0
}

/// Receives the pid the setup sent to the root.
async fn child() -> Pid {
    beamish::receive::<Child>()
        .timeout(LONG)
        .await
        .expect("the setup did not name its child")
        .0
}

/// Spawns the subject (monitored by the caller), which sets `trap_exit` to
/// `trap` and runs `setup`; returns the subject's pid and what happened to it.
async fn subject<S>(trap: bool, setup: S) -> (Pid, Outcome)
where
    S: Future<Output = ()> + Send + 'static,
{
    let root = beamish::self_pid();
    let spawned = SpawnOptions::new()
        .monitor()
        .spawn(async move {
            // Erlang's process_flag(trap_exit, Trap); the default is off.
            assert!(!beamish::trap_exit(trap), "trap_exit starts off");
            setup.await;
            let mut exits = Vec::new();
            while let Some(e) = beamish::receive::<Exit>().timeout(QUIET).await {
                exits.push(e);
            }
            root.send(Report(exits));
            loop {
                let Ping(from) = beamish::receive::<Ping>().await;
                from.send(Pong);
            }
        })
        .expect("spawn subject");
    let pid = spawned.pid;
    let mref = spawned.monitor.expect("monitor requested");
    let is_down =
        move |m: &beamish::Message| m.downcast_ref::<Down>().is_some_and(|d| d.monitor == mref);

    let first = beamish::receive_match(move |m| m.is::<Report>() || is_down(m))
        .timeout(LONG)
        .await
        .expect("the subject neither reported nor ended");
    let exits = match first.downcast::<Down>() {
        Ok(down) => {
            assert_eq!(down.pid, pid);
            return (pid, Outcome::Died(down.reason));
        }
        Err(m) => match m.downcast::<Report>() {
            Ok(Report(exits)) => exits,
            Err(m) => panic!("unexpected message {m:?}"),
        },
    };
    // Still running: it answers a ping.
    assert!(pid.is_alive(), "the subject reported, then ended");
    pid.send(Ping(root));
    let answer = beamish::receive_match(move |m| m.is::<Pong>() || is_down(m))
        .timeout(LONG)
        .await
        .expect("the subject did not answer a ping");
    if let Ok(down) = answer.downcast::<Down>() {
        panic!("the subject ended after reporting, with {:?}", down.reason);
    }
    (pid, Outcome::Alive(exits))
}

fn boom() -> Reason {
    Reason::other("boom")
}

// ------------------------------------------------------------ rows 1-8, 30

/// Rows 1-8: the subject spawns a linked child that exits with `reason`, and
/// waits for the child to end. Returns the child's pid and the outcome.
fn linked_child_exits(trap: bool, reason: Reason) -> (Pid, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let c = SpawnOptions::new()
                .link()
                .monitor()
                .spawn(async move { beamish::exit::<()>(reason).await })
                .unwrap();
            root.send(Child(c.pid));
            wait_down(c.monitor.unwrap()).await;
        })
        .await;
        (child().await, outcome)
    })
}

fn linked_exit_kills(reason: Reason) {
    let (_, outcome) = linked_child_exits(false, reason.clone());
    assert_eq!(outcome, Outcome::Died(reason));
}

fn linked_exit_is_trapped(reason: Reason) {
    let (child, outcome) = linked_child_exits(true, reason.clone());
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: child,
            reason
        }])
    );
}

#[test]
fn row01_linked_exit_normal_is_ignored_without_trap() {
    let (_, outcome) = linked_child_exits(false, Reason::Normal);
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row01_linked_exit_normal_is_trapped() {
    linked_exit_is_trapped(Reason::Normal);
}

#[test]
fn row02_linked_exit_kill_kills_non_trapping_with_kill() {
    linked_exit_kills(Reason::Kill);
}

#[test]
fn row02_linked_exit_kill_is_trapped_as_kill() {
    linked_exit_is_trapped(Reason::Kill);
}

#[test]
fn row03_linked_exit_killed_kills_with_killed() {
    linked_exit_kills(Reason::Killed);
}

#[test]
fn row03_linked_exit_killed_is_trapped() {
    linked_exit_is_trapped(Reason::Killed);
}

#[test]
fn row04_linked_exit_shutdown_kills_with_shutdown() {
    linked_exit_kills(Reason::Shutdown);
}

#[test]
fn row04_linked_exit_shutdown_is_trapped() {
    linked_exit_is_trapped(Reason::Shutdown);
}

#[test]
fn row05_linked_exit_shutdown_x_kills_with_shutdown_x() {
    linked_exit_kills(Reason::shutdown_with("x"));
}

#[test]
fn row05_linked_exit_shutdown_x_is_trapped() {
    linked_exit_is_trapped(Reason::shutdown_with("x"));
}

#[test]
fn row06_linked_exit_boom_kills_with_boom() {
    linked_exit_kills(boom());
}

#[test]
fn row06_linked_exit_boom_is_trapped() {
    linked_exit_is_trapped(boom());
}

#[test]
fn row07_linked_exit_noproc_kills_with_noproc() {
    linked_exit_kills(Reason::NoProc);
}

#[test]
fn row07_linked_exit_noproc_is_trapped() {
    linked_exit_is_trapped(Reason::NoProc);
}

#[test]
fn row08_linked_exit_noconnection_kills_with_noconnection() {
    linked_exit_kills(Reason::NoConnection);
}

#[test]
fn row08_linked_exit_noconnection_is_trapped() {
    linked_exit_is_trapped(Reason::NoConnection);
}

/// Row 30: a child links itself to the subject with `link` and then simply
/// returns (exit reason `normal`).
fn linked_child_returns(trap: bool) -> (Pid, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let me = beamish::self_pid();
            let (c, m) = beamish::spawn_monitor(async move {
                beamish::link(me).expect("link to a live process");
            });
            root.send(Child(c));
            assert_eq!(wait_down(m).await.reason, Reason::Normal);
        })
        .await;
        (child().await, outcome)
    })
}

#[test]
fn row30_linked_normal_exit_is_ignored_by_non_trapping() {
    let (_, outcome) = linked_child_returns(false);
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row30_linked_normal_exit_is_trapped() {
    let (child, outcome) = linked_child_returns(true);
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: child,
            reason: Reason::Normal
        }])
    );
}

// ------------------------------------------------------------ rows 9-16

/// Rows 9-16: another process calls `subject.exit(reason)` and then sends the
/// subject `Go`; the subject waits for `Go` (which arrives after the signal).
/// Returns the sender's pid and the outcome.
fn exit_signal_from_other(trap: bool, reason: Reason) -> (Pid, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let me = beamish::self_pid();
            let sender = beamish::spawn(async move {
                me.exit(reason);
                me.send(Go);
            });
            root.send(Child(sender));
            beamish::receive::<Go>()
                .timeout(LONG)
                .await
                .expect("no Go after the exit signal");
        })
        .await;
        (child().await, outcome)
    })
}

fn exit_signal_kills(reason: Reason) {
    let (_, outcome) = exit_signal_from_other(false, reason.clone());
    assert_eq!(outcome, Outcome::Died(reason));
}

fn exit_signal_is_trapped(reason: Reason) {
    let (sender, outcome) = exit_signal_from_other(true, reason.clone());
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: sender,
            reason
        }])
    );
}

#[test]
fn row09_exit_signal_normal_is_ignored_without_trap() {
    let (_, outcome) = exit_signal_from_other(false, Reason::Normal);
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row09_exit_signal_normal_is_trapped() {
    exit_signal_is_trapped(Reason::Normal);
}

#[test]
fn row10_exit_kill_kills_non_trapping_with_killed() {
    let (_, outcome) = exit_signal_from_other(false, Reason::Kill);
    assert_eq!(outcome, Outcome::Died(Reason::Killed));
}

#[test]
fn row10_exit_kill_cannot_be_trapped() {
    let (_, outcome) = exit_signal_from_other(true, Reason::Kill);
    assert_eq!(outcome, Outcome::Died(Reason::Killed));
}

#[test]
fn row11_exit_signal_killed_kills_with_killed() {
    exit_signal_kills(Reason::Killed);
}

#[test]
fn row11_exit_signal_killed_is_trapped() {
    exit_signal_is_trapped(Reason::Killed);
}

#[test]
fn row12_exit_signal_shutdown_kills_with_shutdown() {
    exit_signal_kills(Reason::Shutdown);
}

#[test]
fn row12_exit_signal_shutdown_is_trapped() {
    exit_signal_is_trapped(Reason::Shutdown);
}

#[test]
fn row13_exit_signal_shutdown_x_kills_with_shutdown_x() {
    exit_signal_kills(Reason::shutdown_with("x"));
}

#[test]
fn row13_exit_signal_shutdown_x_is_trapped() {
    exit_signal_is_trapped(Reason::shutdown_with("x"));
}

#[test]
fn row14_exit_signal_boom_kills_with_boom() {
    exit_signal_kills(boom());
}

#[test]
fn row14_exit_signal_boom_is_trapped() {
    exit_signal_is_trapped(boom());
}

#[test]
fn row15_exit_signal_noproc_kills_with_noproc() {
    exit_signal_kills(Reason::NoProc);
}

#[test]
fn row15_exit_signal_noproc_is_trapped() {
    exit_signal_is_trapped(Reason::NoProc);
}

#[test]
fn row16_exit_signal_noconnection_kills_with_noconnection() {
    exit_signal_kills(Reason::NoConnection);
}

#[test]
fn row16_exit_signal_noconnection_is_trapped() {
    exit_signal_is_trapped(Reason::NoConnection);
}

// ------------------------------------------------------------ rows 17-19

/// Rows 17-19: the subject calls `self_pid().exit(reason)`. Returns the
/// subject's pid and the outcome.
fn exit_self(trap: bool, reason: Reason) -> (Pid, Outcome) {
    on_runtime(async move {
        subject(trap, async move {
            beamish::self_pid().exit(reason);
        })
        .await
    })
}

#[test]
fn row17_exit_self_normal_kills_non_trapping_with_normal() {
    let (_, outcome) = exit_self(false, Reason::Normal);
    assert_eq!(outcome, Outcome::Died(Reason::Normal));
}

#[test]
fn row17_exit_self_normal_is_trapped() {
    let (me, outcome) = exit_self(true, Reason::Normal);
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: me,
            reason: Reason::Normal
        }])
    );
}

#[test]
fn row18_exit_self_kill_kills_with_killed() {
    let (_, outcome) = exit_self(false, Reason::Kill);
    assert_eq!(outcome, Outcome::Died(Reason::Killed));
}

#[test]
fn row18_exit_self_kill_cannot_be_trapped() {
    let (_, outcome) = exit_self(true, Reason::Kill);
    assert_eq!(outcome, Outcome::Died(Reason::Killed));
}

#[test]
fn row19_exit_self_boom_kills_with_boom() {
    let (_, outcome) = exit_self(false, boom());
    assert_eq!(outcome, Outcome::Died(boom()));
}

#[test]
fn row19_exit_self_boom_is_trapped() {
    let (me, outcome) = exit_self(true, boom());
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: me,
            reason: boom()
        }])
    );
}

// ------------------------------------------------------------ row 20

/// Row 20: a linked child panics with "boom".
fn linked_child_panics(trap: bool) -> (Pid, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let c = SpawnOptions::new()
                .link()
                .monitor()
                .spawn(async { panic!("boom") })
                .unwrap();
            root.send(Child(c.pid));
            wait_down(c.monitor.unwrap()).await;
        })
        .await;
        (child().await, outcome)
    })
}

#[test]
fn row20_linked_panic_kills_with_panic_reason() {
    let (_, outcome) = linked_child_panics(false);
    assert_eq!(outcome, Outcome::Died(Reason::Panic("boom".into())));
}

#[test]
fn row20_linked_panic_is_trapped_with_panic_reason() {
    let (child, outcome) = linked_child_panics(true);
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: child,
            reason: Reason::Panic("boom".into())
        }])
    );
}

// ------------------------------------------------------------ row 21

/// Row 21: the subject links to a process that has already ended. Returns the
/// dead pid, what `link` returned, and the outcome.
fn link_to_dead(trap: bool) -> (Pid, Result<(), Error>, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let (dead, m) = beamish::spawn_monitor(async {});
            wait_down(m).await;
            root.send(Child(dead));
            root.send(Note(beamish::link(dead)));
        })
        .await;
        (child().await, note::<Result<(), Error>>().await, outcome)
    })
}

#[test]
fn row21_link_to_dead_pid_is_noproc_error_without_trap() {
    let (dead, linked, outcome) = link_to_dead(false);
    assert_eq!(linked, Err(Error::NoProc(dead)));
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row21_link_to_dead_pid_succeeds_and_traps_noproc() {
    let (dead, linked, outcome) = link_to_dead(true);
    assert_eq!(linked, Ok(()));
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: dead,
            reason: Reason::NoProc
        }])
    );
}

// ------------------------------------------------------------ row 22

/// Row 22: the subject monitors a process that has already ended.
fn monitor_dead(trap: bool) {
    let (dead, (m, down), outcome) = on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let (dead, m) = beamish::spawn_monitor(async {});
            wait_down(m).await;
            root.send(Child(dead));
            let m2 = beamish::monitor(dead);
            let down = beamish::receive_if(move |d: &Down| d.monitor == m2)
                .timeout(LONG)
                .await;
            root.send(Note((m2, down)));
        })
        .await;
        (child().await, note::<(Ref, Option<Down>)>().await, outcome)
    });
    assert_eq!(
        down,
        Some(Down {
            monitor: m,
            pid: dead,
            reason: Reason::NoProc
        })
    );
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row22_monitor_dead_pid_gives_down_noproc_without_trap() {
    monitor_dead(false);
}

#[test]
fn row22_monitor_dead_pid_gives_down_noproc_with_trap() {
    monitor_dead(true);
}

// ------------------------------------------------------------ row 23

/// Row 23: a third process kills (`exit(Pid, kill)`) the subject's linked
/// child. Returns the child and the outcome.
fn linked_child_killed(trap: bool) -> (Pid, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let c = SpawnOptions::new()
                .link()
                .monitor()
                .spawn(async {
                    beamish::receive::<Go>().await;
                })
                .unwrap();
            root.send(Child(c.pid));
            let target = c.pid;
            beamish::spawn(async move { target.exit(Reason::Kill) });
            let down = wait_down(c.monitor.unwrap()).await;
            assert_eq!(down.reason, Reason::Killed, "the child's own exit reason");
        })
        .await;
        (child().await, outcome)
    })
}

#[test]
fn row23_linked_process_killed_by_third_kills_with_killed() {
    let (_, outcome) = linked_child_killed(false);
    assert_eq!(outcome, Outcome::Died(Reason::Killed));
}

#[test]
fn row23_linked_process_killed_by_third_is_trapped_as_killed() {
    let (child, outcome) = linked_child_killed(true);
    assert_eq!(
        outcome,
        Outcome::Alive(vec![Exit {
            from: child,
            reason: Reason::Killed
        }])
    );
}

// ------------------------------------------------------------ row 24

/// Row 24: the subject unlinks its child, then the child exits with `boom`.
fn unlink_then_boom(trap: bool) {
    let outcome = on_runtime(async move {
        let (_, outcome) = subject(trap, async move {
            let c = SpawnOptions::new()
                .link()
                .monitor()
                .spawn(async {
                    beamish::receive::<Go>().await;
                    beamish::exit::<()>(boom()).await
                })
                .unwrap();
            beamish::unlink(c.pid);
            c.pid.send(Go);
            assert_eq!(wait_down(c.monitor.unwrap()).await.reason, boom());
        })
        .await;
        outcome
    });
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row24_unlink_then_boom_is_ignored_without_trap() {
    unlink_then_boom(false);
}

#[test]
fn row24_unlink_then_boom_is_ignored_with_trap() {
    unlink_then_boom(true);
}

// ------------------------------------------------------------ row 25

/// Row 25: the monitored process has ended and its `Down` is in the
/// subject's mailbox; the subject calls `demonitor_flush`. Returns what it
/// returned, whether a `Down` was left, and the outcome.
fn demonitor_flush_after_death(trap: bool) -> (bool, bool, Outcome) {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let me = beamish::self_pid();
            let (_, m) = beamish::spawn_monitor(async {});
            // Wait until the Down is in the mailbox, without taking it out.
            let deadline = std::time::Instant::now() + LONG;
            loop {
                let info = beamish::process_info(me).await.expect("own info");
                if info.message_queue_len >= 1 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "no Down arrived");
                beamish::sleep(Duration::from_millis(1)).await;
            }
            let flushed = beamish::demonitor_flush(m);
            let left = beamish::receive_if(move |d: &Down| d.monitor == m)
                .timeout(Duration::ZERO)
                .await;
            root.send(Note((flushed, left.is_some())));
        })
        .await;
        let (flushed, left) = note::<(bool, bool)>().await;
        (flushed, left, outcome)
    })
}

#[test]
fn row25_demonitor_flush_after_death_without_trap() {
    let (flushed, left, outcome) = demonitor_flush_after_death(false);
    assert!(flushed, "demonitor(Ref, [flush]) returns true");
    assert!(!left, "the Down message was flushed");
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row25_demonitor_flush_after_death_with_trap() {
    let (flushed, left, outcome) = demonitor_flush_after_death(true);
    assert!(flushed, "demonitor(Ref, [flush]) returns true");
    assert!(!left, "the Down message was flushed");
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

// ------------------------------------------------------------ row 26

fn link_to_self(trap: bool) {
    let (linked, outcome) = on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            root.send(Note(beamish::link(beamish::self_pid())));
        })
        .await;
        (note::<Result<(), Error>>().await, outcome)
    });
    assert_eq!(linked, Ok(()));
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row26_link_to_self_does_nothing_without_trap() {
    link_to_self(false);
}

#[test]
fn row26_link_to_self_does_nothing_with_trap() {
    link_to_self(true);
}

// ------------------------------------------------------------ row 27

fn register_twice(trap: bool) {
    let ((first, second), outcome) = on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let me = beamish::self_pid();
            let first = beamish::register("row27", me);
            let second = beamish::register("row27", me);
            root.send(Note((first, second)));
        })
        .await;
        (
            note::<(Result<(), Error>, Result<(), Error>)>().await,
            outcome,
        )
    });
    assert_eq!(first, Ok(()));
    assert_eq!(second, Err(Error::NameTaken("row27".into())));
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row27_register_twice_is_name_taken_without_trap() {
    register_twice(false);
}

#[test]
fn row27_register_twice_is_name_taken_with_trap() {
    register_twice(true);
}

// ------------------------------------------------------------ row 28

fn send_to_unknown_name(trap: bool) {
    let (sent, outcome) = on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            root.send(Note(beamish::send_named("row28_nobody", 1u8)));
        })
        .await;
        (note::<Result<(), Error>>().await, outcome)
    });
    assert_eq!(sent, Err(Error::UnknownName("row28_nobody".into())));
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row28_send_to_unknown_name_is_error_without_trap() {
    send_to_unknown_name(false);
}

#[test]
fn row28_send_to_unknown_name_is_error_with_trap() {
    send_to_unknown_name(true);
}

// ------------------------------------------------------------ row 29

fn thousand_in_order(trap: bool) {
    let (got, outcome) = on_runtime(async move {
        let root = beamish::self_pid();
        let (_, outcome) = subject(trap, async move {
            let me = beamish::self_pid();
            beamish::spawn(async move {
                for i in 0..1000u32 {
                    me.send(i);
                }
            });
            let mut got = Vec::with_capacity(1000);
            for _ in 0..1000 {
                got.push(
                    beamish::receive::<u32>()
                        .timeout(LONG)
                        .await
                        .expect("a message was lost"),
                );
            }
            root.send(Note(got));
        })
        .await;
        (note::<Vec<u32>>().await, outcome)
    });
    assert_eq!(got, (0..1000).collect::<Vec<u32>>());
    assert_eq!(outcome, Outcome::Alive(vec![]));
}

#[test]
fn row29_thousand_messages_in_order_without_trap() {
    thousand_in_order(false);
}

#[test]
fn row29_thousand_messages_in_order_with_trap() {
    thousand_in_order(true);
}

// ------------------------------------------------------------ chains

/// Three non-trapping processes linked in a chain, `head — middle — end`;
/// `trigger` ends `end`. Returns the exit reasons of end, middle and head.
fn chain(trigger: fn(Pid)) -> [Reason; 3] {
    on_runtime(async move {
        let root = beamish::self_pid();
        let (end, m_end) = beamish::spawn_monitor(async {
            let reason = beamish::receive::<Reason>().await;
            beamish::exit::<()>(reason).await
        });
        let link_to = move |pid: Pid| async move {
            beamish::link(pid).expect("link");
            root.send(Note("linked"));
            beamish::receive::<Go>().await;
        };
        let (middle, m_middle) = beamish::spawn_monitor(link_to(end));
        note::<&str>().await;
        let (_, m_head) = beamish::spawn_monitor(link_to(middle));
        note::<&str>().await;
        trigger(end);
        [
            wait_down(m_end).await.reason,
            wait_down(m_middle).await.reason,
            wait_down(m_head).await.reason,
        ]
    })
}

#[test]
fn row02_exit_reason_kill_propagates_unchanged_along_a_chain() {
    // The end calls exit(kill): every link passes on `kill`, never `killed`.
    let reasons = chain(|end| end.send(Reason::Kill));
    assert_eq!(reasons, [Reason::Kill, Reason::Kill, Reason::Kill]);
}

#[test]
fn row23_killed_propagates_along_a_chain() {
    // exit(End, kill): the end dies `killed`, and so does every link after it.
    let reasons = chain(|end| end.exit(Reason::Kill));
    assert_eq!(reasons, [Reason::Killed, Reason::Killed, Reason::Killed]);
}

// ------------------------------------------------------------ ordering

/// What a trapping process saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Msg(u32),
    Exit(Exit),
}

async fn next_seen() -> Seen {
    let m = beamish::receive_match(|m| m.is::<u32>() || m.is::<Exit>())
        .timeout(LONG)
        .await
        .expect("nothing arrived");
    match m.downcast::<u32>() {
        Ok(n) => Seen::Msg(n),
        Err(m) => Seen::Exit(m.downcast::<Exit>().expect("an Exit")),
    }
}

#[test]
fn order_message_before_exit_signal_is_received_first() {
    let (sender, seen) = on_runtime(async {
        beamish::trap_exit(true);
        let me = beamish::self_pid();
        let sender = beamish::spawn(async move {
            me.send(1u32);
            me.exit(boom());
            me.send(2u32);
            me.exit(Reason::Shutdown);
            me.send(3u32);
        });
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(next_seen().await);
        }
        (sender, seen)
    });
    assert_eq!(
        seen,
        vec![
            Seen::Msg(1),
            Seen::Exit(Exit {
                from: sender,
                reason: boom()
            }),
            Seen::Msg(2),
            Seen::Exit(Exit {
                from: sender,
                reason: Reason::Shutdown
            }),
            Seen::Msg(3),
        ]
    );
}

#[test]
fn order_message_before_link_exit_is_received_first() {
    let (child, seen) = on_runtime(async {
        beamish::trap_exit(true);
        let me = beamish::self_pid();
        let child = beamish::spawn_link(async move {
            for i in 0..100u32 {
                me.send(i);
            }
            beamish::exit::<()>(boom()).await
        });
        let mut seen = Vec::new();
        for _ in 0..101 {
            seen.push(next_seen().await);
        }
        (child, seen)
    });
    let mut expected: Vec<Seen> = (0..100).map(Seen::Msg).collect();
    expected.push(Seen::Exit(Exit {
        from: child,
        reason: boom(),
    }));
    assert_eq!(seen, expected);
}

#[test]
fn order_message_before_down_is_received_first() {
    on_runtime(async {
        let me = beamish::self_pid();
        for round in 0..50u32 {
            let (pid, m) = beamish::spawn_monitor(async move { me.send(round) });
            let first = beamish::receive_match(move |msg| {
                msg.downcast_ref::<u32>() == Some(&round)
                    || msg.downcast_ref::<Down>().is_some_and(|d| d.monitor == m)
            })
            .timeout(LONG)
            .await
            .expect("nothing arrived");
            assert_eq!(
                first.downcast::<u32>().ok(),
                Some(round),
                "Down overtook a message"
            );
            let down = wait_down(m).await;
            assert_eq!((down.pid, down.reason), (pid, Reason::Normal));
        }
    });
}

#[test]
fn order_exit_signal_before_message_kills_before_the_message_is_seen() {
    // The converse for a non-trapping process: the signal sent first is acted
    // upon first, so the message that follows it is never handled.
    let outcome = on_runtime(async {
        let root = beamish::self_pid();
        let (_, outcome) = subject(false, async move {
            let me = beamish::self_pid();
            beamish::spawn(async move {
                me.exit(boom());
                me.send(Go);
            });
            beamish::receive::<Go>().timeout(LONG).await.expect("Go");
            root.send(Note("handled Go"));
        })
        .await;
        let handled = beamish::receive::<Note<&str>>()
            .timeout(Duration::ZERO)
            .await
            .is_some();
        assert!(!handled, "the message after the exit signal was handled");
        outcome
    });
    assert_eq!(outcome, Outcome::Died(boom()));
}
