//! The public face of signals: link, monitor, exit, trap_exit.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{ExitKind, Signal, send};
use crate::mailbox::node::NodeBox;
use crate::process::{Header, Local};
use crate::runtime::{self, context};
use crate::{Down, Error, Exit, Pid, Reason, Ref};

/// The running process and its owner-only state.
///
/// # Safety
/// Only for use on the thread polling the process, with no other `&mut
/// Local` alive (the scheduler holds none during a poll).
fn current(what: &str) -> (&'static Header, &'static mut Local) {
    let p = context::expect_current(what);
    // SAFETY: the process is running on this thread; the references do not
    // outlive the calling function, which runs inside the poll.
    unsafe {
        let h = &*p.as_ptr();
        (h, &mut *h.local.get())
    }
}

/// The running process, or `None` outside one.
fn try_current() -> Option<(&'static Header, &'static mut Local)> {
    let p = context::current()?;
    // SAFETY: as in `current`.
    unsafe {
        let h = &*p.as_ptr();
        Some((h, &mut *h.local.get()))
    }
}

/// The pid of the calling process.
///
/// # Panics
/// Outside a beamish process.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// let pid = rt.block_on(async { beamish::self_pid() }).unwrap();
/// assert!(!pid.is_alive()); // the root process has finished
/// ```
pub fn self_pid() -> Pid {
    current("self_pid").0.pid
}

/// The pid of the calling process, or `None` outside a process.
pub fn try_self_pid() -> Option<Pid> {
    try_current().map(|(h, _)| h.pid)
}

/// Sets whether exit signals become [`Exit`] messages (`true`) or end the
/// process (`false`, the default). Returns the previous setting.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// assert!(!beamish::trap_exit(true));
/// assert!(beamish::trap_exit(false));
/// # }).unwrap();
/// ```
pub fn trap_exit(on: bool) -> bool {
    let (_, local) = current("trap_exit");
    std::mem::replace(&mut local.trap_exit, on)
}

/// Links the calling process to `pid`: if either ends with a reason other
/// than `normal`, the other gets an exit signal.
///
/// Linking to a dead process is `Err(NoProc)` when not trapping exits; when
/// trapping, it succeeds and an `Exit { reason: noproc }` message follows
/// (Erlang's behaviour). Linking to oneself does nothing.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let dead = beamish::spawn(async {});
/// beamish::sleep(std::time::Duration::from_millis(10)).await;
/// assert_eq!(beamish::link(dead), Err(beamish::Error::NoProc(dead)));
/// # }).unwrap();
/// ```
pub fn link(pid: Pid) -> Result<(), Error> {
    let Some((h, local)) = try_current() else {
        return Err(Error::NotInProcess);
    };
    context::consume(1);
    if pid == h.pid || local.ext.as_ref().is_some_and(|e| e.links.contains(&pid)) {
        return Ok(());
    }
    match send(pid, Signal::Link { from: h.pid }) {
        Ok(()) => {
            local.ext().links.insert(pid);
            if crate::trace::on() {
                crate::trace::linked(pid, true);
            }
            Ok(())
        }
        Err(_) if local.trap_exit => {
            crate::mailbox::drain(h);
            let (_, local) = current("link");
            local.queue.push_back(NodeBox::message(Exit {
                from: pid,
                reason: Reason::NoProc,
            }));
            Ok(())
        }
        Err(_) => Err(Error::NoProc(pid)),
    }
}

/// Removes the link between the calling process and `pid`, if any. After
/// this returns, no exit signal from that link affects the caller.
pub fn unlink(pid: Pid) {
    let Some((h, local)) = try_current() else {
        return;
    };
    context::consume(1);
    let was = local.ext.as_mut().is_some_and(|e| e.links.remove(&pid));
    if was {
        let _ = send(pid, Signal::Unlink { from: h.pid });
        if crate::trace::on() {
            crate::trace::linked(pid, false);
        }
    }
}

/// Monitors `pid`: when it ends, the caller gets a [`Down`] message with
/// this reference. Monitoring a dead pid delivers `Down` with reason
/// `noproc` at once.
///
/// # Panics
/// Outside a beamish process.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let pid = beamish::spawn(async { beamish::receive::<()>().await });
/// let mref = beamish::monitor(pid);
/// pid.exit(beamish::Reason::Kill);
/// let down = beamish::receive::<beamish::Down>().await;
/// assert_eq!((down.monitor, down.reason), (mref, beamish::Reason::Killed));
/// # }).unwrap();
/// ```
pub fn monitor(pid: Pid) -> Ref {
    let (h, local) = current("monitor");
    context::consume(1);
    let mref = Ref::new();
    local.ext().monitors.insert(mref, pid);
    let sent = send(
        pid,
        Signal::Monitor {
            from: h.pid,
            monitor: mref,
        },
    );
    if sent.is_err() {
        crate::mailbox::drain(h);
        let (_, local) = current("monitor");
        if let Some(ext) = local.ext.as_mut() {
            ext.monitors.remove(&mref);
        }
        local.queue.push_back(NodeBox::message(Down {
            monitor: mref,
            pid,
            reason: Reason::NoProc,
        }));
    }
    mref
}

/// Drops a monitor. Returns `true`, as Erlang's `demonitor/1` does, whether
/// or not the monitor was still active; [`demonitor_info`] tells which. A
/// `Down` message that already arrived stays in the mailbox; see
/// [`demonitor_flush`].
pub fn demonitor(monitor: Ref) -> bool {
    demonitor_info(monitor);
    true
}

/// Drops a monitor and tells whether it was active, like
/// `erlang:demonitor(Ref, [info])`: `false` if it had fired already (its
/// `Down` is in the mailbox, or was taken) or names no monitor of the
/// caller.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let pid = beamish::spawn(async { beamish::receive::<()>().await });
/// let m = beamish::monitor(pid);
/// assert!(beamish::demonitor_info(m));
/// assert!(!beamish::demonitor_info(m), "already taken down");
/// assert!(beamish::demonitor(m), "demonitor/1 is always true");
/// # pid.exit(beamish::Reason::Kill);
/// # }).unwrap();
/// ```
pub fn demonitor_info(monitor: Ref) -> bool {
    let Some((_, local)) = try_current() else {
        return false;
    };
    context::consume(1);
    #[cfg(feature = "dist")]
    if let Some(e) = local.ext.as_mut() {
        e.by_name.remove(&monitor);
    }
    match local.ext.as_mut().and_then(|e| e.monitors.remove(&monitor)) {
        Some(target) => {
            let _ = send(target, Signal::Demonitor { monitor });
            true
        }
        None => false,
    }
}

/// Monitors the local process `pid` under the reference `mref` on behalf
/// of a monitor by name: its `Down` is delivered as a `NameDown` naming
/// `name` and `node`, and `noproc` comes at once if `pid` has ended.
#[cfg(feature = "dist")]
pub(crate) fn monitor_by_name(
    pid: Pid,
    mref: Ref,
    name: crate::dist::Atom,
    node: crate::dist::Atom,
) {
    let (h, local) = current("monitor");
    context::consume(1);
    let ext = local.ext();
    ext.monitors.insert(mref, pid);
    ext.by_name.insert(mref, (name, node));
    let sent = send(
        pid,
        Signal::Monitor {
            from: h.pid,
            monitor: mref,
        },
    );
    if sent.is_err() {
        crate::mailbox::drain(h);
        let (_, local) = current("monitor");
        if let Some(ext) = local.ext.as_mut() {
            ext.monitors.remove(&mref);
            ext.by_name.remove(&mref);
        }
        local
            .queue
            .push_back(NodeBox::message(crate::dist::NameDown {
                monitor: mref,
                name,
                node,
                reason: Reason::NoProc,
            }));
    }
}

/// Drops a monitor and removes its `Down` message if one arrived, like
/// `erlang:demonitor(Ref, [flush])`; returns `true`, as Erlang does.
pub fn demonitor_flush(monitor: Ref) -> bool {
    demonitor_flush_info(monitor);
    true
}

/// [`demonitor_flush`] that tells whether the monitor was active, like
/// `erlang:demonitor(Ref, [flush, info])`: `false` if its `Down` had
/// arrived (and is now removed) or it names no monitor of the caller.
pub fn demonitor_flush_info(monitor: Ref) -> bool {
    let Some((h, _)) = try_current() else {
        return false;
    };
    let was = demonitor_info(monitor);
    crate::mailbox::drain(h);
    let _ = crate::mailbox::remove_first(h, |node| {
        let down = node
            .downcast_ref::<Down>()
            .is_some_and(|d| d.monitor == monitor);
        #[cfg(feature = "dist")]
        let down = down
            || node
                .downcast_ref::<crate::dist::NameDown>()
                .is_some_and(|d| d.monitor == monitor);
        down
    });
    was
}

/// Removes the monitor `monitor` that another process holds on the
/// calling process, if there is one: the calling process has answered that
/// monitor's purpose (a call's reply) and the watcher will drop its side
/// without a signal (see [`forget_monitor`]). Returns whether it was there.
pub(crate) fn take_monitored_by(monitor: Ref) -> bool {
    try_current().is_some_and(|(_, local)| {
        local
            .ext
            .as_mut()
            .is_some_and(|e| e.monitored_by.remove(&monitor).is_some())
    })
}

/// Records in the calling process a monitor that was set up on its behalf
/// (the monitor of a spawn request, set up by the peer), so that
/// [`demonitor`] takes it down and its `Down` is recognised.
#[cfg(feature = "dist")]
pub(crate) fn adopt_monitor(monitor: Ref, target: Pid) {
    if let Some((_, local)) = try_current() {
        local.ext().monitors.insert(monitor, target);
    }
}

/// Drops the calling process's side of a monitor whose other side is
/// already gone (removed by [`take_monitored_by`]) or was never set up: no
/// signal is sent.
pub(crate) fn forget_monitor(monitor: Ref) {
    if let Some((_, local)) = try_current()
        && let Some(e) = local.ext.as_mut()
    {
        e.monitors.remove(&monitor);
    }
}

/// Ends the calling process with `reason`, like Erlang's `exit(Reason)`.
/// The returned future never completes: the process ends at this await
/// point, its destructors run, and its links and monitors fire.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let (pid, mref) = beamish::spawn_monitor(async {
///     beamish::exit(beamish::Reason::other("done")).await
/// });
/// let down = beamish::receive::<beamish::Down>().await;
/// assert_eq!((down.pid, down.reason), (pid, beamish::Reason::other("done")));
/// # let _ = mref;
/// # }).unwrap();
/// ```
pub fn exit<T>(reason: Reason) -> Exiting<T> {
    Exiting {
        reason: Some(reason),
        _never: PhantomData,
    }
}

/// The future of [`exit`]: never completes.
#[must_use = "the process ends only when this is awaited"]
pub struct Exiting<T> {
    reason: Option<Reason>,
    _never: PhantomData<fn() -> T>,
}

impl<T> Future for Exiting<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if let Some(reason) = this.reason.take() {
            let (_, local) = current("exit");
            local.set_exiting(reason);
        }
        Poll::Pending
    }
}

impl Pid {
    /// Sends this process an exit signal, like Erlang's `exit(Pid, Reason)`
    /// (see the rules in the crate docs: `kill` cannot be trapped, `normal`
    /// is ignored unless trapped or sent to oneself). From outside any
    /// process the signal comes from the runtime's own pid.
    ///
    /// A signal to the calling process itself takes effect at its next
    /// await point.
    pub fn exit(self, reason: Reason) {
        context::consume(1);
        let from = match try_current() {
            Some((h, _)) => h.pid,
            #[cfg(feature = "dist")]
            None if self.is_remote() => match crate::dist::runtime_pid() {
                Some(pid) => pid,
                None => return,
            },
            None => {
                let guard = crossbeam_epoch::pin();
                match runtime::lookup(self.runtime(), &guard) {
                    Some(shared) => shared.table.runtime_pid(),
                    None => return,
                }
            }
        };
        let _ = send(
            self,
            Signal::Exit {
                from,
                reason,
                kind: ExitKind::Signal,
            },
        );
    }

    /// True while the process exists. Always false for a remote pid (ask
    /// its node).
    pub fn is_alive(self) -> bool {
        if self.is_remote() {
            return false;
        }
        let guard = crossbeam_epoch::pin();
        runtime::lookup(self.runtime(), &guard)
            .and_then(|shared| shared.table.get(self, &guard))
            .is_some_and(|h| !h.inbound.is_closed())
    }
}
