//! Running a process for one poll, and ending it.
//!
//! A run: SCHEDULED → RUNNING; drain the inbound queue (signals may decide
//! that the process must end); poll the future once, catching panics; then
//! either hand the process back to the scheduler (state `end_run`) or end it.
//!
//! Ending a process (`terminate`), in this order:
//!
//! 1. close the inbound queue, so every later send fails at the sender
//!    (which then treats the process as dead) and everything sent before is
//!    in our hands;
//! 2. drop the future and the queued messages (destructors run here, on the
//!    process's thread; a panicking destructor is contained);
//! 3. answer the signals that came too late: a link request gets our exit
//!    reason, a monitor request a `Down`, an info request "no such process";
//! 4. unregister the name; send exit signals to links, `Down` to monitors,
//!    and drop our own monitors on others;
//! 5. mark the state DONE, clear the table slot and recycle it, and drop the
//!    run queue's and the table's references.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll};

use super::state::AfterRun;
use super::{Header, Task, flags, raw};
use crate::loom::atomic::Ordering;
use crate::mailbox::node::{Kind, drop_quietly};
use crate::runtime::context;
use crate::scheduler::worker::Core;
use crate::signal::{self, ExitKind, Signal};
use crate::{Down, Reason};

/// How a run ended.
enum Outcome {
    Pending,
    Exit(Reason),
}

/// Polls `task` once on the scheduler `core`.
pub(crate) fn run(task: Task, core: &Core) {
    let p = task.0;
    // SAFETY: the task's reference keeps the process alive until it is
    // handed on or released below.
    let h: &Header = unsafe { p.as_ref() };
    h.state.start_run();
    let w = core.worker();
    let ticks = w.ticks.load(Ordering::Relaxed);
    w.current.store(h.pid.to_bits(), Ordering::Relaxed);
    w.ticks.store(ticks + 1, Ordering::Relaxed);
    let observed = w.load.observed.load(Ordering::Relaxed);
    if observed {
        w.load.before_run(h);
    }
    context::enter_process(p);

    let _span = tracing::trace_span!(target: "beamish::process", "process", pid = %h.pid).entered();
    crate::mailbox::drain(h);
    // After the drain: a trace session is installed by a signal.
    let traced = crate::trace::on() && h.flags.load(Ordering::Relaxed) & flags::TRACED != 0;
    if traced {
        crate::trace::scheduled(h, true);
    }
    let outcome = match exiting_reason(h) {
        Some(reason) => Outcome::Exit(reason),
        None => {
            let waker = raw::borrowed_waker(p);
            let mut cx = Context::from_waker(&waker);
            // SAFETY: the process is RUNNING on this thread and its future is alive.
            let polled = catch_unwind(AssertUnwindSafe(|| unsafe { (h.vtable.poll)(p, &mut cx) }));
            match polled {
                Ok(Poll::Ready(())) => Outcome::Exit(exiting_reason(h).unwrap_or(Reason::Normal)),
                Ok(Poll::Pending) => match exiting_reason(h) {
                    Some(reason) => Outcome::Exit(reason),
                    None => Outcome::Pending,
                },
                Err(payload) => Outcome::Exit(Reason::from_panic(&*payload)),
            }
        }
    };

    match outcome {
        Outcome::Pending => {
            drop(_span);
            if traced {
                crate::trace::scheduled(h, false);
            }
            let spent = context::leave_process();
            h.add_reductions(spent);
            // SAFETY: the process is RUNNING on this thread; short borrow.
            let queued = unsafe { (*h.local.get()).queue.len() };
            h.queue_len
                .store(u32::try_from(queued).unwrap_or(u32::MAX), Ordering::Relaxed);
            if observed {
                w.load.after_run(spent);
            }
            w.ticks.store(ticks + 2, Ordering::Relaxed);
            match h.state.end_run() {
                AfterRun::Reschedule => h.shared().schedule_back(task),
                AfterRun::Idle(last) => {
                    if last {
                        super::table::defer_free(p);
                    }
                }
            }
        }
        Outcome::Exit(reason) => {
            drop(_span);
            // The process's memory may be freed by `terminate`: nothing of it
            // is touched afterwards.
            terminate(task, reason, core);
            let spent = context::leave_process();
            if observed {
                w.load.after_run(spent);
            }
            w.ticks.store(ticks + 2, Ordering::Relaxed);
        }
    }
}

fn exiting_reason(h: &Header) -> Option<Reason> {
    // SAFETY: the process is running on this thread; short borrow.
    let local = unsafe { &*h.local.get() };
    local.ext.as_ref().and_then(|e| e.exiting.clone())
}

/// Ends the process `task` with `reason` (see the module docs for the steps).
fn terminate(task: Task, reason: Reason, core: &Core) {
    let p = task.0;
    let h = task.header();
    let me = h.pid;
    if let Reason::Panic(msg) = &reason {
        tracing::error!(pid = %me, panic = %msg, "process panicked");
    }
    tracing::trace!(target: "beamish::process", pid = %me, %reason, "exited");

    // 1. No more sends.
    let late = h.inbound.close();

    // 2. Destructors, contained.
    // SAFETY: the future is alive and this thread runs the process.
    if catch_unwind(AssertUnwindSafe(|| unsafe { (h.vtable.drop_future)(p) })).is_err() {
        tracing::debug!(pid = %me, "a process's future panicked while being dropped");
    }
    // SAFETY: the process runs on this thread; the future is gone, so no
    // other borrow of the local state exists.
    let local = unsafe { &mut *h.local.get() };
    for node in local.queue.drain() {
        drop_quietly(node);
    }
    let mut ext = local.ext.take();
    if crate::trace::on() {
        let session = ext.as_mut().and_then(|e| e.trace.take());
        crate::trace::exited(h, session, &reason);
    }

    // 3. Signals that arrived too late.
    for node in late {
        match node.kind() {
            Kind::Message | Kind::Alias => {
                drop_quietly(node);
            }
            Kind::Signal => {
                if let Ok(sig) = node.downcast::<Signal>() {
                    signal::answer_as_dead(me, &reason, sig);
                }
            }
        }
    }

    // 4. The name first (as ERTS does), so whoever learns of the exit from
    // a link or monitor finds the name free; then links and monitors.
    let shared = h.shared();
    if h.flags.load(Ordering::SeqCst) & flags::HAS_NAME != 0 {
        shared.registry.unregister_pid(me);
    }
    if let Some(mut ext) = ext {
        for pid in ext.links.drain() {
            let _ = signal::send(
                pid,
                Signal::Exit {
                    from: me,
                    reason: reason.clone(),
                    kind: ExitKind::Link,
                },
            );
        }
        for (monitor, watcher) in ext.monitored_by.drain() {
            let _ = signal::send(
                watcher,
                Signal::Down(Down {
                    monitor,
                    pid: me,
                    reason: reason.clone(),
                }),
            );
        }
        for (monitor, target) in ext.monitors.drain() {
            let _ = signal::send(target, Signal::Demonitor { monitor });
        }
        if let Some(hook) = ext.exit_hook.take()
            && catch_unwind(AssertUnwindSafe(|| hook(&reason))).is_err()
        {
            tracing::debug!(pid = %me, "an exit hook panicked");
        }
    }

    // 5. Gone.
    h.state.complete();
    let live = shared.table.remove(me, &mut core.slots.borrow_mut());
    if live == 0 && shared.shutting_down.load(Ordering::SeqCst) {
        shared.last_process_exited();
    }
    // SAFETY: the task's reference and the table's reference are ours to drop.
    unsafe {
        super::release(p);
        super::release(p);
    }
}
