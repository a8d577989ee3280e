//! Signals: links, monitors and exit signals, with Erlang's rules.
//!
//! Signals travel through the same inbound queue as messages, so between one
//! pair of processes everything arrives in the order it was sent (a message
//! sent before an exit signal is in the mailbox before the exit is acted
//! upon). The receiving process applies each signal when it drains its
//! inbound queue ([`handle`]), which is the only place its links and monitors
//! change: no locks.
//!
//! The exit rules ([`on_exit_signal`]) follow the Erlang Reference Manual,
//! "Processes", and OTP 25's observed behaviour:
//!
//! | signal                          | trap_exit = false          | trap_exit = true           |
//! |---------------------------------|----------------------------|----------------------------|
//! | `exit(pid, kill)`               | dies with `killed`         | dies with `killed`         |
//! | `normal` from another process   | ignored                    | `Exit` message             |
//! | `normal` from itself            | dies with `normal`         | `Exit` message             |
//! | any other reason                | dies with that reason      | `Exit` message             |
//! | link exit, link since removed   | ignored                    | ignored                    |
//! | link exit with `kill`           | dies with `kill`           | `Exit` message             |

use crate::Reason;
use crate::mailbox::node::NodeBox;
use crate::process::{Header, Local, ProcessInfo};
use crate::runtime::{self, Shared};
use crate::{Down, Exit, Pid, Ref};

pub(crate) mod api;

/// Where an exit signal comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitKind {
    /// A linked process ended.
    Link,
    /// `exit(pid, reason)`.
    Signal,
    /// The runtime is shutting down: untrappable, with the given reason.
    Forced,
}

/// A signal between processes.
pub(crate) enum Signal {
    /// An exit signal.
    Exit {
        from: Pid,
        reason: Reason,
        kind: ExitKind,
    },
    /// `from` linked to the receiver.
    Link { from: Pid },
    /// `from` unlinked from the receiver.
    Unlink { from: Pid },
    /// `from` monitors the receiver under `monitor`.
    Monitor { from: Pid, monitor: Ref },
    /// `from` dropped its monitor `monitor` on the receiver.
    Demonitor { monitor: Ref },
    /// A process the receiver monitors has ended.
    Down(Down),
    /// A `process_info` request: the receiver answers with its state.
    Info(Box<dyn FnOnce(Option<ProcessInfo>) + Send>),
    /// A trace session to install (`crate::trace`).
    Trace(crate::trace::Install),
}

/// Sends a signal to a pid of any runtime. Gives it back if the process does
/// not exist.
pub(crate) fn send(to: Pid, signal: Signal) -> Result<(), Signal> {
    runtime::deliver(to, NodeBox::signal(signal)).map_err(|node| match node.downcast::<Signal>() {
        Ok(s) => s,
        Err(_) => unreachable_signal(),
    })
}

#[cold]
fn unreachable_signal() -> Signal {
    // A signal node always downcasts to `Signal`; keep a harmless value
    // rather than a panic in library code.
    Signal::Unlink {
        from: Pid::new(0, 0, 1),
    }
}

/// Sends an untrappable exit (runtime shutdown).
pub(crate) fn send_forced_exit(shared: &Shared, pid: Pid, reason: Reason) {
    let signal = Signal::Exit {
        from: shared.table.runtime_pid(),
        reason,
        kind: ExitKind::Forced,
    };
    let _ = shared.deliver(pid, NodeBox::signal(signal));
}

/// Applies a signal to the running process `h`.
pub(crate) fn handle(h: &Header, local: &mut Local, signal: Signal) {
    match signal {
        Signal::Exit { from, reason, kind } => on_exit_signal(h, local, from, reason, kind),
        Signal::Link { from } => {
            local.ext().links.insert(from);
        }
        Signal::Unlink { from } => {
            if let Some(ext) = local.ext.as_mut() {
                ext.links.remove(&from);
            }
        }
        Signal::Monitor { from, monitor } => {
            local.ext().monitored_by.insert(monitor, from);
        }
        Signal::Demonitor { monitor } => {
            if let Some(ext) = local.ext.as_mut() {
                ext.monitored_by.remove(&monitor);
            }
        }
        Signal::Down(down) => {
            let Some(ext) = local.ext.as_mut() else {
                return;
            };
            if ext.monitors.remove(&down.monitor).is_none() {
                return;
            }
            #[cfg(feature = "dist")]
            if let Some((name, node)) = ext.by_name.remove(&down.monitor) {
                local
                    .queue
                    .push_back(NodeBox::message(crate::dist::NameDown {
                        monitor: down.monitor,
                        name,
                        node,
                        reason: down.reason,
                    }));
                return;
            }
            local.queue.push_back(NodeBox::message(down));
        }
        Signal::Info(reply) => {
            let info = crate::process::info::snapshot(h, local);
            reply(Some(info));
        }
        Signal::Trace(install) => install.apply(h, local),
    }
}

/// Erlang's exit rules.
fn on_exit_signal(h: &Header, local: &mut Local, from: Pid, reason: Reason, kind: ExitKind) {
    match kind {
        ExitKind::Forced => local.set_exiting(reason),
        ExitKind::Signal if reason == Reason::Kill => local.set_exiting(Reason::Killed),
        ExitKind::Link => {
            let was_linked = local
                .ext
                .as_mut()
                .is_some_and(|ext| ext.links.remove(&from));
            if !was_linked {
                return;
            }
            if local.trap_exit {
                local
                    .queue
                    .push_back(NodeBox::message(Exit { from, reason }));
            } else if !reason.is_normal() {
                local.set_exiting(reason);
            }
        }
        ExitKind::Signal => {
            if local.trap_exit {
                local
                    .queue
                    .push_back(NodeBox::message(Exit { from, reason }));
            } else if !reason.is_normal() || from == h.pid {
                local.set_exiting(reason);
            }
        }
    }
}

/// Answers a signal that reached a process as it ended: requests that needed
/// a live process get the answer a dead one gives.
pub(crate) fn answer_as_dead(me: Pid, reason: &Reason, signal: Signal) {
    match signal {
        // The link was set up just before we died: the linker sees our reason.
        Signal::Link { from } => {
            let _ = send(
                from,
                Signal::Exit {
                    from: me,
                    reason: reason.clone(),
                    kind: ExitKind::Link,
                },
            );
        }
        Signal::Monitor { from, monitor } => {
            let _ = send(
                from,
                Signal::Down(Down {
                    monitor,
                    pid: me,
                    reason: reason.clone(),
                }),
            );
        }
        Signal::Info(reply) => reply(None),
        Signal::Trace(install) => install.dead(me),
        Signal::Exit { .. }
        | Signal::Unlink { .. }
        | Signal::Demonitor { .. }
        | Signal::Down(_) => {}
    }
}
