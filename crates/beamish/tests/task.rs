//! Tasks and task supervisors (`beamish::otp::{Task, TaskSupervisor}`): one
//! test per documented behaviour of Elixir's `Task` and `Task.Supervisor`,
//! named after the rule.
//!
//! No test depends on timing: a task that must still be running waits for a
//! message only the test sends, and a wait that must time out uses a short
//! timeout on such a task. Waits that should succeed use [`LONG`], which only
//! a bug can exhaust.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use beamish::otp::{Task, TaskSupervisor};
use beamish::{Down, Error, Exit, Pid, Reason, Ref, Runtime};

/// A wait that only a bug can exhaust.
const LONG: Duration = Duration::from_secs(5);

/// A wait that is meant to run out.
const SHORT: Duration = Duration::from_millis(20);

/// Lets a blocked task go on.
#[derive(Debug, PartialEq)]
struct Release;

/// A task reports that it is ready.
struct Ready;

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

/// Whatever is left in the caller's mailbox.
async fn leftover() -> Option<beamish::Message> {
    beamish::receive_match(|_| true)
        .timeout(Duration::ZERO)
        .await
}

/// Waits for the `Down` of the monitor `mref` (taken by the test, beside the
/// one the task functions consume); returns its reason.
async fn down_of(mref: Ref) -> Reason {
    let down = beamish::receive_if(move |d: &Down| d.monitor == mref)
        .timeout(LONG)
        .await
        .expect("the process ends");
    down.reason
}

fn panic_reason(text: &str) -> Reason {
    Reason::Panic(text.into())
}

#[test]
fn await_returns_the_value_of_the_task() {
    on_runtime(async {
        let mut task = Task::spawn_async(async { (1..=10).sum::<u32>() });
        assert_eq!(task.await_result(LONG).await, Ok(55));
        let mut task = Task::spawn_async(async { String::from("default") });
        assert_eq!(task.await_default().await.as_deref(), Ok("default"));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn the_task_is_a_process_linked_to_and_monitored_by_the_caller() {
    on_runtime(async {
        let me = beamish::self_pid();
        let mut task = Task::spawn_async(async {
            beamish::receive::<Release>().await;
            beamish::self_pid()
        });
        let pid = task.pid();
        assert_ne!(pid, me);
        let info = beamish::process_info(pid).await.expect("the task is alive");
        assert_eq!(info.links, vec![me]);
        assert_eq!(info.monitored_by, vec![me]);
        pid.send(Release);
        assert_eq!(task.await_result(LONG).await, Ok(pid));
    });
}

#[test]
fn await_times_out_and_the_task_keeps_running() {
    on_runtime(async {
        let mut task = Task::spawn_async(async {
            beamish::receive::<Release>().await;
            "finished"
        });
        assert_eq!(task.await_result(SHORT).await, Err(Error::Timeout));
        assert!(task.pid().is_alive());
        task.pid().send(Release);
        assert_eq!(task.await_result(LONG).await, Ok("finished"));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn yield_returns_none_while_running_then_the_reply() {
    on_runtime(async {
        let mut task = Task::spawn_async(async {
            beamish::receive::<Release>().await;
            7u8
        });
        assert_eq!(task.yield_result(Duration::ZERO).await, None);
        assert_eq!(task.yield_result(SHORT).await, None);
        task.pid().send(Release);
        assert_eq!(task.yield_result(LONG).await, Some(Ok(7)));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn waiting_again_after_the_outcome_is_noproc() {
    on_runtime(async {
        let mut task = Task::spawn_async(async { 1 });
        assert_eq!(task.await_result(LONG).await, Ok(1));
        let pid = task.pid();
        assert_eq!(task.yield_result(LONG).await, Some(Err(Error::NoProc(pid))));
        assert_eq!(task.shutdown(LONG).await, Some(Err(Error::NoProc(pid))));
    });
}

#[test]
fn shutdown_ends_a_running_task_and_leaves_nothing_in_the_mailbox() {
    on_runtime(async {
        let task = Task::spawn_async(async { beamish::receive::<Release>().await });
        let pid = task.pid();
        let mref = beamish::monitor(pid);
        assert_eq!(task.shutdown(LONG).await, None);
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!((down.monitor, down.reason), (mref, Reason::Shutdown));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn shutdown_kills_a_task_that_ignores_it_after_the_timeout() {
    on_runtime(async {
        let root = beamish::self_pid();
        let task = Task::spawn_async(async move {
            beamish::trap_exit(true); // the `shutdown` signal becomes a message
            root.send(Ready);
            beamish::receive::<Release>().await
        });
        beamish::receive::<Ready>().timeout(LONG).await.unwrap();
        let pid = task.pid();
        let mref = beamish::monitor(pid);
        assert_eq!(task.shutdown(SHORT).await, None);
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!((down.monitor, down.reason), (mref, Reason::Killed));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn shutdown_with_a_zero_timeout_kills_at_once() {
    on_runtime(async {
        let task = Task::spawn_async(async { beamish::receive::<Release>().await });
        let pid = task.pid();
        let mref = beamish::monitor(pid);
        assert_eq!(task.shutdown(Duration::ZERO).await, None);
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!((down.monitor, down.reason), (mref, Reason::Killed));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn shutdown_of_a_finished_task_returns_its_reply() {
    on_runtime(async {
        let task = Task::spawn_async(async {
            beamish::receive::<Release>().await;
            "already done"
        });
        let mref = beamish::monitor(task.pid());
        task.pid().send(Release);
        assert_eq!(down_of(mref).await, Reason::Normal);
        assert_eq!(task.shutdown(LONG).await, Some(Ok("already done")));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn shutdown_after_an_await_timeout_flushes_the_late_reply() {
    on_runtime(async {
        let mut task = Task::spawn_async(async {
            beamish::receive::<Release>().await;
            "late"
        });
        assert_eq!(task.await_result(SHORT).await, Err(Error::Timeout));
        let mref = beamish::monitor(task.pid());
        task.pid().send(Release);
        assert_eq!(down_of(mref).await, Reason::Normal);
        // The reply has landed; shutdown takes it out.
        assert_eq!(task.shutdown(LONG).await, Some(Ok("late")));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn shutdown_reports_a_task_that_crashed() {
    on_runtime(async {
        beamish::trap_exit(true); // survive the link
        let task = Task::spawn_async(async {
            beamish::receive::<Release>().await;
            beamish::exit::<()>(Reason::other("boom")).await;
        });
        let mref = beamish::monitor(task.pid());
        task.pid().send(Release);
        assert_eq!(down_of(mref).await, Reason::other("boom"));
        assert_eq!(
            task.shutdown(LONG).await,
            Some(Err(Error::Exited(Reason::other("boom"))))
        );
        // Shutdown also took the `Exit` of the link.
        assert!(leftover().await.is_none());
    });
}

#[test]
fn a_crashing_task_kills_a_caller_that_does_not_trap_exits() {
    on_runtime(async {
        let root = beamish::self_pid();
        let (caller, mref) = beamish::spawn_monitor(async move {
            let mut task = Task::spawn_async(async { panic!("boom") });
            let outcome: Result<(), Error> = task.await_result(LONG).await;
            root.send(format!("the caller survived: {outcome:?}"));
        });
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!((down.monitor, down.pid), (mref, caller));
        assert_eq!(down.reason, panic_reason("boom"));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn a_trapping_caller_gets_the_exit_and_await_returns_the_crash() {
    on_runtime(async {
        beamish::trap_exit(true);
        let mut task = Task::spawn_async(async { panic!("boom") });
        let pid = task.pid();
        let outcome: Result<(), Error> = task.await_result(LONG).await;
        assert_eq!(outcome, Err(Error::Exited(panic_reason("boom"))));
        let exit = beamish::receive::<Exit>().timeout(LONG).await.unwrap();
        assert_eq!(
            exit,
            Exit {
                from: pid,
                reason: panic_reason("boom")
            }
        );
        assert!(leftover().await.is_none());
    });
}

#[test]
fn the_task_dies_with_its_caller() {
    on_runtime(async {
        let root = beamish::self_pid();
        let caller = beamish::spawn(async move {
            let task = Task::spawn_async(async { beamish::receive::<Release>().await });
            root.send(task.pid());
            beamish::receive::<Release>().await;
            let _ = task.shutdown(LONG).await;
        });
        let task_pid = beamish::receive::<Pid>().timeout(LONG).await.unwrap();
        let mref = beamish::monitor(task_pid);
        caller.exit(Reason::other("caller crashed"));
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!(down.monitor, mref);
        assert_eq!(down.reason, Reason::other("caller crashed"));
    });
}

#[test]
fn only_the_owner_may_wait_for_a_task() {
    on_runtime(async {
        let task = Task::spawn_async(async { 5 });
        let (other, mref) = beamish::spawn_monitor(async move {
            let mut task = task;
            let _ = task.await_result(LONG).await;
        });
        let down = beamish::receive_if(move |d: &Down| d.monitor == mref)
            .timeout(LONG)
            .await
            .unwrap();
        assert_eq!(down.pid, other);
        let Reason::Panic(text) = down.reason else {
            panic!("expected a panic, got {:?}", down.reason);
        };
        assert!(text.contains("is owned by"), "{text}");
    });
}

#[test]
fn tasks_are_processes_that_run_concurrently() {
    on_runtime(async {
        let root = beamish::self_pid();
        let mut tasks: Vec<Task<usize>> = (0..100)
            .map(|i| {
                Task::spawn_async(async move {
                    root.send(beamish::self_pid());
                    beamish::receive::<Release>().await;
                    i * i
                })
            })
            .collect();
        // All 100 are running at once: each has started and none can finish.
        for _ in 0..100 {
            beamish::receive::<Pid>().timeout(LONG).await.unwrap();
        }
        for task in &tasks {
            task.pid().send(Release);
        }
        for (i, task) in tasks.iter_mut().enumerate() {
            assert_eq!(task.await_result(LONG).await, Ok(i * i));
        }
        assert!(leftover().await.is_none());
    });
}

#[test]
fn async_nolink_returns_the_value() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let mut task = sup.async_nolink(async { 40 + 2 }).await.unwrap();
        assert_eq!(task.await_result(LONG).await, Ok(42));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn async_nolink_crash_does_not_kill_the_caller() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let mut task = sup.async_nolink(async { panic!("boom") }).await.unwrap();
        let outcome: Result<(), Error> = task.await_result(LONG).await;
        assert_eq!(outcome, Err(Error::Exited(panic_reason("boom"))));
        // Not linked: no exit signal reached us (we would be dead), no `Exit`.
        assert!(leftover().await.is_none());
        assert!(sup.pid().is_alive());
    });
}

#[test]
fn an_async_nolink_task_is_a_child_of_the_supervisor() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let mut task = sup
            .async_nolink(async { beamish::receive::<Release>().await })
            .await
            .unwrap();
        assert_eq!(sup.children().await, Ok(vec![task.pid()]));
        task.pid().send(Release);
        assert_eq!(task.await_result(LONG).await, Ok(Release));
        // The supervisor forgets the child when its `Exit` comes.
        let mut children = sup.children().await.unwrap();
        for _ in 0..500 {
            if children.is_empty() {
                break;
            }
            beamish::sleep(Duration::from_millis(10)).await;
            children = sup.children().await.unwrap();
        }
        assert_eq!(children, vec![]);
    });
}

#[test]
fn shutdown_of_an_async_nolink_task_ends_it() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let task = sup
            .async_nolink(async { beamish::receive::<Release>().await })
            .await
            .unwrap();
        let pid = task.pid();
        let mref = beamish::monitor(pid);
        assert_eq!(task.shutdown(LONG).await, None);
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!((down.monitor, down.reason), (mref, Reason::Shutdown));
        assert!(leftover().await.is_none());
    });
}

#[test]
fn terminate_child_ends_a_child_and_rejects_a_stranger() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let a = sup
            .start_child(async { beamish::receive::<Release>().await })
            .await
            .unwrap();
        let b = sup
            .start_child(async { beamish::receive::<Release>().await })
            .await
            .unwrap();
        let mut children = sup.children().await.unwrap();
        children.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(children, expected);

        let mref = beamish::monitor(a);
        assert_eq!(sup.terminate_child(a).await, Ok(()));
        let down = beamish::receive::<Down>().timeout(LONG).await.unwrap();
        assert_eq!((down.monitor, down.reason), (mref, Reason::Shutdown));
        assert_eq!(sup.children().await, Ok(vec![b]));

        let me = beamish::self_pid();
        assert_eq!(sup.terminate_child(me).await, Err(Error::NoProc(me)));
        assert_eq!(sup.terminate_child(a).await, Err(Error::NoProc(a)));
    });
}

#[test]
fn the_supervisor_shuts_its_children_down_when_its_parent_exits() {
    on_runtime(async {
        let root = beamish::self_pid();
        let parent = beamish::spawn(async move {
            let sup = TaskSupervisor::start_link().unwrap();
            root.send(sup);
            beamish::receive::<Release>().await;
        });
        let sup = beamish::receive::<TaskSupervisor>()
            .timeout(LONG)
            .await
            .unwrap();
        let child = sup
            .start_child(async { beamish::receive::<Release>().await })
            .await
            .unwrap();
        let child_mon = beamish::monitor(child);
        let sup_mon = beamish::monitor(sup.pid());
        parent.exit(Reason::other("parent crashed"));
        assert_eq!(down_of(child_mon).await, Reason::Shutdown);
        assert_eq!(down_of(sup_mon).await, Reason::other("parent crashed"));
    });
}

#[test]
fn the_supervisor_ignores_exit_signals_from_strangers() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let (_, mref) =
            beamish::spawn_monitor(async move { sup.pid().exit(Reason::other("go away")) });
        // The signal was sent before the stranger ended, so the supervisor
        // has it before our next request.
        assert_eq!(down_of(mref).await, Reason::Normal);
        assert_eq!(sup.children().await, Ok(vec![]));
        assert!(sup.pid().is_alive());
    });
}

#[test]
fn a_dead_supervisor_gives_noproc() {
    on_runtime(async {
        beamish::trap_exit(true); // survive the link to the supervisor
        let sup = TaskSupervisor::start_link().unwrap();
        let pid = sup.pid();
        pid.exit(Reason::Kill);
        let exit = beamish::receive::<Exit>().timeout(LONG).await.unwrap();
        assert_eq!(
            exit,
            Exit {
                from: pid,
                reason: Reason::Killed
            }
        );
        let started = sup.async_nolink(async { 1 }).await.map(|task| task.pid());
        assert_eq!(started, Err(Error::NoProc(pid)));
        assert_eq!(sup.children().await, Err(Error::NoProc(pid)));
        assert_eq!(sup.start_child(async {}).await, Err(Error::NoProc(pid)));
    });
}

#[test]
fn a_supervisor_can_be_registered_by_name() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link_named("task_sup").unwrap();
        let found = beamish::whereis("task_sup").map(TaskSupervisor::from_pid);
        assert_eq!(found, Some(sup));
        assert!(matches!(
            TaskSupervisor::start_link_named("task_sup"),
            Err(Error::NameTaken(_))
        ));
        let mut task = sup.async_nolink(async { "by name" }).await.unwrap();
        assert_eq!(task.await_result(LONG).await, Ok("by name"));
    });
}

#[test]
fn a_supervised_task_gives_up_when_its_caller_dies_before_the_go_ahead() {
    on_runtime(async {
        let sup = TaskSupervisor::start_link().unwrap();
        let root = beamish::self_pid();
        let caller = beamish::spawn(async move {
            // Send the start request, then abandon `async_nolink` before the
            // answer: the task is started but never gets its go-ahead.
            let mut start = Box::pin(sup.async_nolink(async { 1 }));
            std::future::poll_fn(|cx| {
                assert!(start.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            drop(start);
            root.send(Release);
            beamish::receive::<Release>().await;
        });
        beamish::receive::<Release>().timeout(LONG).await.unwrap();
        // The start request reached the supervisor before ours.
        let children = sup.children().await.unwrap();
        assert_eq!(children.len(), 1);
        let task_mon = beamish::monitor(children[0]);
        caller.exit(Reason::Kill);
        // The task monitors its caller once it runs: if the kill came
        // first, that monitor reports `noproc` (as it would in Erlang).
        let reason = down_of(task_mon).await;
        assert!(
            [
                Reason::shutdown_with("killed"),
                Reason::shutdown_with("noproc")
            ]
            .contains(&reason),
            "the task gave up with {reason}"
        );
    });
}
