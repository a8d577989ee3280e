//! Spawning processes.

use std::future::Future;
use std::ptr::NonNull;
use std::sync::Arc;

use super::raw::Cell;
use super::state::State;
use super::{ExitHook, Header, Local, Priority, Task, flags};
use crate::loom::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use crate::mailbox::inbound::Inbound;
use crate::runtime::{Shared, context, current_shared};
use crate::{Error, Pid, Reason, Ref};

/// Options for a new process, like Erlang's `spawn_opt`.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::{SpawnOptions, Priority};
/// let spawned = SpawnOptions::new()
///     .monitor()
///     .trap_exit(true)
///     .name("worker")
///     .priority(Priority::High)
///     .spawn(async { beamish::receive::<()>().await })
///     .unwrap();
/// assert_eq!(beamish::whereis("worker"), Some(spawned.pid));
/// assert!(spawned.monitor.is_some());
/// # }).unwrap();
/// ```
#[derive(Default)]
pub struct SpawnOptions {
    link: bool,
    monitor: bool,
    trap_exit: bool,
    name: Option<Arc<str>>,
    priority: Priority,
    exit_hook: Option<ExitHook>,
}

/// What [`SpawnOptions::spawn`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    /// The new process.
    pub pid: Pid,
    /// The monitor on it, if requested.
    pub monitor: Option<Ref>,
}

impl SpawnOptions {
    /// No options: an unlinked, unmonitored, normal-priority process.
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }

    /// Link the new process to the caller (atomically, before it runs).
    pub fn link(mut self) -> SpawnOptions {
        self.link = true;
        self
    }

    /// Monitor the new process from the caller (atomically, before it runs).
    pub fn monitor(mut self) -> SpawnOptions {
        self.monitor = true;
        self
    }

    /// Start with `trap_exit` set.
    pub fn trap_exit(mut self, on: bool) -> SpawnOptions {
        self.trap_exit = on;
        self
    }

    /// Register the process under `name` before it runs. The spawn fails
    /// with [`Error::NameTaken`] if the name is in use.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> SpawnOptions {
        self.name = Some(name.into());
        self
    }

    /// Scheduling priority.
    pub fn priority(mut self, priority: Priority) -> SpawnOptions {
        self.priority = priority;
        self
    }

    pub(crate) fn exit_hook(mut self, hook: ExitHook) -> SpawnOptions {
        self.exit_hook = Some(hook);
        self
    }

    /// Spawns `future` as a process of the caller's runtime.
    ///
    /// # Panics
    /// Outside a beamish process (use [`crate::Handle::spawn_with`] there).
    pub fn spawn<F>(self, future: F) -> Result<Spawned, Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shared = current_shared("spawn");
        self.spawn_on(shared, future)
    }

    pub(crate) fn spawn_on<F>(self, shared: &Shared, future: F) -> Result<Spawned, Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // The spawning process, if it belongs to this runtime.
        // SAFETY: the current process is alive during its poll, which
        // outlasts this call.
        let parent: Option<&Header> = context::current()
            .map(|p| unsafe { &*p.as_ptr() })
            .filter(|h| std::ptr::eq(h.rt.as_ptr(), shared));
        if (self.link || self.monitor) && parent.is_none() {
            return Err(Error::NotInProcess);
        }
        let in_process = context::current().is_some();
        if shared.shutting_down.load(Ordering::SeqCst) && !in_process {
            return Err(Error::Shutdown);
        }
        context::consume(1);

        let pid = match context::core().filter(|c| std::ptr::eq(&*c.shared, shared)) {
            Some(core) => shared.table.alloc(&mut core.slots.borrow_mut())?,
            None => shared.table.alloc(&mut shared.external_slots.lock())?,
        };

        let mut local = Local::new(self.trap_exit);
        let monitor = self.monitor.then(Ref::new);
        if let Some(ph) = parent {
            if self.link {
                local.ext().links.insert(ph.pid);
            }
            if let Some(m) = monitor {
                local.ext().monitored_by.insert(m, ph.pid);
            }
        }
        if let Some(hook) = self.exit_hook {
            local.ext().exit_hook = Some(hook);
        }
        let from_birth = if crate::trace::on() {
            crate::trace::trace_new(shared)
        } else {
            None
        };
        let mut bits = if self.name.is_some() {
            flags::HAS_NAME
        } else {
            0
        };
        if let Some(s) = &from_birth {
            crate::trace::install_at_birth(s.clone(), pid, &mut local);
            bits |= flags::TRACED;
        }
        let p: NonNull<Header> = Cell::allocate(future, |vtable| Header {
            // One reference for the table, one for the run queue.
            state: State::new_scheduled(2),
            vtable,
            pid,
            rt: NonNull::from(shared),
            inbound: Inbound::new(),
            reductions: AtomicU64::new(0),
            flags: AtomicU8::new(bits),
            priority: self.priority as u8,
            queue_len: AtomicU32::new(0),
            window: AtomicU16::new(0),
            local: std::cell::UnsafeCell::new(local),
        });

        match &self.name {
            Some(name) => {
                if let Err(e) = shared
                    .registry
                    .register_new(name, pid, || shared.table.insert(p))
                {
                    // Never published: free it directly, and its slot.
                    // SAFETY: nobody else has seen `p`.
                    unsafe {
                        (p.as_ref().vtable.drop_future)(p);
                        (*p.as_ref().local.get()).ext = None;
                        (p.as_ref().vtable.dealloc)(p);
                    }
                    match context::core().filter(|c| std::ptr::eq(&*c.shared, shared)) {
                        Some(core) => shared
                            .table
                            .recycle_unused(pid, &mut core.slots.borrow_mut()),
                        None => shared
                            .table
                            .recycle_unused(pid, &mut shared.external_slots.lock()),
                    }
                    return Err(e);
                }
            }
            None => shared.table.insert(p),
        }

        if let Some(parent) = parent {
            // SAFETY: the parent is the running process; short borrow.
            let plocal = unsafe { &mut *parent.local.get() };
            if self.link {
                plocal.ext().links.insert(pid);
            }
            if let Some(m) = monitor {
                plocal.ext().monitors.insert(m, pid);
            }
        }
        tracing::trace!(target: "beamish::process", %pid, parent = ?parent.map(|p| p.pid), "spawned");
        if crate::trace::on() {
            crate::trace::spawned(shared, parent, pid, from_birth.as_ref());
        }
        if shared.shutting_down.load(Ordering::SeqCst) {
            crate::signal::send_forced_exit(shared, pid, Reason::Shutdown);
        }
        shared.schedule_back(Task(p));
        Ok(Spawned { pid, monitor })
    }
}

/// Spawns a process running `future` on the caller's runtime and returns
/// its pid. The process runs concurrently; its result is `()` — it talks to
/// the world by messages.
///
/// # Panics
/// Outside a beamish process (use [`crate::Handle::spawn`] there).
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let parent = beamish::self_pid();
/// beamish::spawn(async move { parent.send("hi from a child") });
/// assert_eq!(beamish::receive::<&str>().await, "hi from a child");
/// # }).unwrap();
/// ```
pub fn spawn<F>(future: F) -> Pid
where
    F: Future<Output = ()> + Send + 'static,
{
    expect_spawned(SpawnOptions::new().spawn(future)).pid
}

/// Spawns a process linked to the caller.
///
/// # Panics
/// Outside a beamish process.
pub fn spawn_link<F>(future: F) -> Pid
where
    F: Future<Output = ()> + Send + 'static,
{
    expect_spawned(SpawnOptions::new().link().spawn(future)).pid
}

/// Spawns a process monitored by the caller; returns its pid and the monitor.
///
/// # Panics
/// Outside a beamish process.
pub fn spawn_monitor<F>(future: F) -> (Pid, Ref)
where
    F: Future<Output = ()> + Send + 'static,
{
    let s = expect_spawned(SpawnOptions::new().monitor().spawn(future));
    (s.pid, s.monitor.unwrap_or_else(Ref::new))
}

fn expect_spawned(r: Result<Spawned, Error>) -> Spawned {
    match r {
        Ok(s) => s,
        // Only a full process table (2^28 processes) fails here.
        Err(e) => panic!("spawn failed: {e}"),
    }
}
