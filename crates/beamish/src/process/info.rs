//! `process_info` and `processes`.

use std::sync::Arc;

use super::state::{DONE, RUNNING, SCHEDULED};
use super::{Header, Local, Priority};
use crate::runtime::{OneShot, Shared, context, current_shared};
use crate::signal::{self, Signal};
use crate::{Pid, Ref};

/// What a process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Being polled by a scheduler thread.
    Running,
    /// In a run queue.
    Runnable,
    /// Waiting for a message, a timer or IO.
    Waiting,
    /// Ending.
    Exiting,
}

impl Status {
    /// The name Erlang's `process_info(Pid, status)` gives it.
    ///
    /// ```
    /// assert_eq!(beamish::Status::Waiting.as_str(), "waiting");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Runnable => "runnable",
            Status::Waiting => "waiting",
            Status::Exiting => "exiting",
        }
    }
}

/// A snapshot of a process, like `erlang:process_info/1`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// The process.
    pub pid: Pid,
    /// What it was doing when asked.
    pub status: Status,
    /// Messages in its mailbox.
    pub message_queue_len: usize,
    /// Reductions spent so far.
    pub reductions: u64,
    /// Linked processes.
    pub links: Vec<Pid>,
    /// Processes it monitors.
    pub monitors: Vec<Pid>,
    /// Processes that monitor it.
    pub monitored_by: Vec<Pid>,
    /// Its registered name.
    pub registered_name: Option<Arc<str>>,
    /// Bytes it holds: control block and future, queued messages, links
    /// and monitors.
    pub memory: usize,
    /// Whether it traps exits.
    pub trap_exit: bool,
    /// Its priority.
    pub priority: Priority,
    /// The types of the oldest messages in its mailbox (up to 10), as
    /// observer's process page shows the head of the message queue.
    pub message_types: Vec<&'static str>,
}

pub(crate) fn status_of(bits: usize) -> Status {
    if bits & DONE != 0 {
        Status::Exiting
    } else if bits & RUNNING != 0 {
        Status::Running
    } else if bits & SCHEDULED != 0 {
        Status::Runnable
    } else {
        Status::Waiting
    }
}

/// Builds the snapshot; runs on the process's own thread.
pub(crate) fn snapshot(h: &Header, local: &Local) -> ProcessInfo {
    let (links, monitors, monitored_by, ext_bytes) = match &local.ext {
        Some(e) => (
            e.links.iter().copied().collect(),
            e.monitors.values().copied().collect(),
            e.monitored_by.values().copied().collect(),
            std::mem::size_of_val(&**e)
                + e.links.capacity() * 8
                + (e.monitors.capacity() + e.monitored_by.capacity()) * 16,
        ),
        None => (Vec::new(), Vec::new(), Vec::new(), 0),
    };
    let queued: usize = local
        .queue
        .iter()
        .map(|n| std::mem::size_of::<crate::mailbox::node::Header>() + n.vtable.size_hint)
        .sum();
    ProcessInfo {
        pid: h.pid,
        status: Status::Running,
        message_queue_len: local.queue.len() + usize::from(!h.inbound.is_empty()),
        reductions: h.reductions.load(std::sync::atomic::Ordering::Relaxed),
        links,
        monitors,
        monitored_by,
        registered_name: h.shared().registry.name_of(h.pid),
        memory: h.vtable.size + queued + ext_bytes,
        trap_exit: local.trap_exit,
        priority: h.priority(),
        message_types: local
            .queue
            .iter()
            .take(10)
            .map(|n| (n.vtable.type_name)())
            .collect(),
    }
}

/// The reply to an info request.
struct InfoReply(Ref, Option<ProcessInfo>);

/// Information about a process, or `None` if it does not exist. The process
/// answers when it is next scheduled (like Erlang, where `process_info`
/// is a signal), so this waits for it; the status is read at the time of
/// the request.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let pid = beamish::spawn(async { beamish::receive::<()>().await });
/// pid.send(1u32);
/// beamish::sleep(std::time::Duration::from_millis(10)).await;
/// let info = beamish::process_info(pid).await.unwrap();
/// assert_eq!(info.message_queue_len, 1);
/// assert_eq!(info.status, beamish::Status::Waiting);
/// # }).unwrap();
/// ```
///
/// # Panics
/// Outside a beamish process (use [`crate::Handle::process_info`] there).
pub async fn process_info(pid: Pid) -> Option<ProcessInfo> {
    // Everything that touches the process itself happens before the await,
    // so the future holds only plain values (and stays `Send`).
    let (status, mark, tag) = match request(pid) {
        Request::Own(info) => return Some(*info),
        Request::Dead => return None,
        Request::Sent { status, mark, tag } => (status, mark, tag),
    };
    let InfoReply(_, info) = crate::receive_if(move |r: &InfoReply| r.0 == tag)
        .after_mark(mark)
        .await;
    info.map(|mut i| {
        i.status = status;
        i
    })
}

enum Request {
    Own(Box<ProcessInfo>),
    Dead,
    Sent {
        status: Status,
        mark: crate::Mark,
        tag: Ref,
    },
}

fn request(pid: Pid) -> Request {
    let me = context::expect_current("process_info");
    // SAFETY: the process is running on this thread.
    let h = unsafe { me.as_ref() };
    if pid == h.pid {
        crate::mailbox::drain(h);
        // SAFETY: as above; short borrow.
        return Request::Own(Box::new(snapshot(h, unsafe { &*h.local.get() })));
    }
    // The process may belong to another runtime of this OS process.
    let Some(status) = status_anywhere(pid) else {
        return Request::Dead;
    };
    let mark = crate::mark();
    let tag = Ref::new();
    let me_pid = h.pid;
    let reply = Box::new(move |info: Option<ProcessInfo>| me_pid.send_system(InfoReply(tag, info)));
    match signal::send(pid, Signal::Info(reply)) {
        Ok(()) => Request::Sent { status, mark, tag },
        Err(_) => Request::Dead,
    }
}

fn status_anywhere(pid: Pid) -> Option<Status> {
    let guard = crossbeam_epoch::pin();
    if pid.is_remote() {
        return None;
    }
    let shared = crate::runtime::lookup(pid.runtime(), &guard)?;
    let h = shared.table.get(pid, &guard)?;
    Some(status_of(h.state.load()))
}

fn status_now(shared: &Shared, pid: Pid) -> Option<Status> {
    let guard = crossbeam_epoch::pin();
    let h = shared.table.get(pid, &guard)?;
    Some(status_of(h.state.load()))
}

/// `process_info` from a thread outside the runtime.
pub(crate) fn request_blocking(shared: &Shared, pid: Pid) -> Option<ProcessInfo> {
    let status = status_now(shared, pid)?;
    let slot = Arc::new(OneShot::new());
    let answer = slot.clone();
    let reply = Box::new(move |info: Option<ProcessInfo>| answer.set(info));
    signal::send(pid, Signal::Info(reply)).ok()?;
    slot.wait().map(|mut i| {
        i.status = status;
        i
    })
}

/// Every live process of the caller's runtime.
///
/// # Panics
/// Outside a beamish process (use [`crate::Handle::processes`] there).
pub fn processes() -> Vec<Pid> {
    let shared = current_shared("processes");
    let guard = crossbeam_epoch::pin();
    shared.table.pids(&guard)
}
