//! Registered names: `register`, `unregister`, `whereis`, send by name.
//!
//! One map per runtime under a reader-writer lock (look-ups share it). A
//! process's exit removes its name; the race between registering a process
//! and its exit is closed by a flag on the process: `register` sets it and
//! then checks whether the process's mailbox is closed, the exiting process
//! closes its mailbox and then checks the flag (both sequentially
//! consistent), so at least one of them removes the entry.

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::process::flags;
use crate::runtime::{self, context, current_shared};
use crate::{Error, Pid};
use std::sync::atomic::Ordering;

#[derive(Default)]
struct Names {
    by_name: FxHashMap<Arc<str>, Pid>,
    by_pid: FxHashMap<Pid, Arc<str>>,
}

/// The names of one runtime.
pub(crate) struct Registry {
    names: RwLock<Names>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            names: RwLock::new(Names::default()),
        }
    }

    pub(crate) fn whereis(&self, name: &str) -> Option<Pid> {
        self.names.read().by_name.get(name).copied()
    }

    pub(crate) fn name_of(&self, pid: Pid) -> Option<Arc<str>> {
        self.names.read().by_pid.get(&pid).cloned()
    }

    /// Registered names.
    pub(crate) fn len(&self) -> usize {
        self.names.read().by_name.len()
    }

    pub(crate) fn registered(&self) -> Vec<Arc<str>> {
        self.names.read().by_name.keys().cloned().collect()
    }

    fn check(names: &Names, name: &Arc<str>, pid: Pid) -> Result<(), Error> {
        if names.by_name.contains_key(name) {
            return Err(Error::NameTaken(name.clone()));
        }
        if let Some(old) = names.by_pid.get(&pid) {
            return Err(Error::AlreadyRegistered(pid, old.clone()));
        }
        Ok(())
    }

    /// Registers a process being spawned; `publish` makes it visible in the
    /// process table while the name is taken, so a look-up never finds a
    /// name whose pid is not there yet.
    pub(crate) fn register_new(
        &self,
        name: &Arc<str>,
        pid: Pid,
        publish: impl FnOnce(),
    ) -> Result<(), Error> {
        let mut names = self.names.write();
        Self::check(&names, name, pid)?;
        names.by_name.insert(name.clone(), pid);
        names.by_pid.insert(pid, name.clone());
        publish();
        Ok(())
    }

    fn register(&self, shared: &runtime::Shared, name: Arc<str>, pid: Pid) -> Result<(), Error> {
        let guard = crossbeam_epoch::pin();
        let Some(h) = shared.table.get(pid, &guard) else {
            return Err(Error::NoProc(pid));
        };
        let mut names = self.names.write();
        Self::check(&names, &name, pid)?;
        names.by_name.insert(name.clone(), pid);
        names.by_pid.insert(pid, name.clone());
        h.flags.fetch_or(flags::HAS_NAME, Ordering::SeqCst);
        if h.inbound.is_closed() {
            names.by_name.remove(&name);
            names.by_pid.remove(&pid);
            return Err(Error::NoProc(pid));
        }
        Ok(())
    }

    fn unregister(&self, name: &str) -> Result<(), Error> {
        let mut names = self.names.write();
        match names.by_name.remove(name) {
            Some(pid) => {
                names.by_pid.remove(&pid);
                Ok(())
            }
            None => Err(Error::UnknownName(name.into())),
        }
    }

    /// Removes the name of an ending process.
    pub(crate) fn unregister_pid(&self, pid: Pid) {
        let mut names = self.names.write();
        if let Some(name) = names.by_pid.remove(&pid) {
            names.by_name.remove(&name);
        }
    }
}

/// The name `pid` is registered under in the caller's runtime.
pub(crate) fn name_of(pid: Pid) -> Option<Arc<str>> {
    current_shared("name_of").registry.name_of(pid)
}

/// Registers `pid` under `name` in its runtime, like `erlang:register/2`.
///
/// Errors: the name is taken ([`Error::NameTaken`]), the process already has
/// a name ([`Error::AlreadyRegistered`]), or it does not exist
/// ([`Error::NoProc`]). The name is freed when the process ends.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let me = beamish::self_pid();
/// beamish::register("me", me).unwrap();
/// assert_eq!(beamish::whereis("me"), Some(me));
/// assert!(matches!(beamish::register("me", me), Err(beamish::Error::NameTaken(_))));
/// beamish::send_named("me", 7u8).unwrap();
/// assert_eq!(beamish::receive::<u8>().await, 7);
/// # }).unwrap();
/// ```
pub fn register(name: impl Into<Arc<str>>, pid: Pid) -> Result<(), Error> {
    if pid.is_remote() {
        return Err(Error::NoProc(pid));
    }
    let guard = crossbeam_epoch::pin();
    let shared = runtime::lookup(pid.runtime(), &guard).ok_or(Error::NoProc(pid))?;
    context::consume(1);
    shared.registry.register(shared, name.into(), pid)
}

/// Removes a name of the caller's runtime.
///
/// # Panics
/// Outside a beamish process.
pub fn unregister(name: &str) -> Result<(), Error> {
    current_shared("unregister").registry.unregister(name)
}

/// The pid registered under `name` in the caller's runtime.
///
/// # Panics
/// Outside a beamish process (use [`crate::Handle::whereis`] there).
pub fn whereis(name: &str) -> Option<Pid> {
    current_shared("whereis").registry.whereis(name)
}

/// Every registered name of the caller's runtime.
///
/// # Panics
/// Outside a beamish process.
pub fn registered() -> Vec<Arc<str>> {
    current_shared("registered").registry.registered()
}

/// Sends to a registered name, like `Name ! Msg`: an error if no process
/// has that name (Erlang raises `badarg`).
///
/// # Panics
/// Outside a beamish process.
pub fn send_named<T: Send + 'static>(name: &str, msg: T) -> Result<(), Error> {
    match whereis(name) {
        Some(pid) => {
            pid.send(msg);
            Ok(())
        }
        None => Err(Error::UnknownName(name.into())),
    }
}
