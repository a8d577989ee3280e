//! The crate's error type.

use std::fmt;
use std::sync::Arc;

use crate::Pid;

/// What can go wrong when asking the runtime for something.
///
/// Sending to a dead pid is *not* an error (Erlang drops such messages
/// silently); asking for something that needs a live process or a known name
/// is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The process does not exist (any more).
    NoProc(Pid),
    /// No process is registered under this name.
    UnknownName(Arc<str>),
    /// The name is already registered to another process.
    NameTaken(Arc<str>),
    /// The process already has a registered name.
    AlreadyRegistered(Pid, Arc<str>),
    /// The runtime has shut down (or is shutting down) and takes no new work.
    Shutdown,
    /// The call must be made from inside a process.
    NotInProcess,
    /// A bad value in a configuration.
    Config(String),
    /// An operating system error (thread creation, IO setup), as text.
    Io(Arc<str>),
    /// A wait ran out of time.
    Timeout,
    /// The process is traced by another trace session (for a runtime's
    /// own pid: another session traces its new processes).
    AlreadyTraced(Pid),
    /// A process ended with this reason before it could answer.
    Exited(crate::Reason),
    /// An observed node could not be read: not reachable, or its answer
    /// was not what an observer endpoint answers (the text says which).
    Observe(Arc<str>),
    /// The node the process lives on could not be reached, or the
    /// connection to it went down (OTP's `{nodedown, Node}`).
    #[cfg(feature = "dist")]
    NodeDown(crate::dist::Atom),
    /// The operation needs a process of this node, and this one lives on
    /// another (OTP's `{nolocal, Pid}`: only local processes join a
    /// process group).
    #[cfg(feature = "dist")]
    NotLocal(Pid),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoProc(pid) => write!(f, "no such process: {pid}"),
            Error::UnknownName(n) => write!(f, "no process registered as {n:?}"),
            Error::NameTaken(n) => write!(f, "the name {n:?} is already registered"),
            Error::AlreadyRegistered(pid, n) => {
                write!(f, "process {pid} is already registered as {n:?}")
            }
            Error::Shutdown => f.write_str("the runtime has shut down"),
            Error::NotInProcess => f.write_str("this must be called from inside a process"),
            Error::Config(m) => write!(f, "bad configuration: {m}"),
            Error::Io(e) => write!(f, "io error: {e}"),
            Error::Timeout => f.write_str("timed out"),
            Error::AlreadyTraced(pid) => write!(f, "{pid} is traced by another session"),
            Error::Exited(r) => write!(f, "the process exited: {r}"),
            Error::Observe(m) => f.write_str(m),
            #[cfg(feature = "dist")]
            Error::NodeDown(n) => write!(f, "node {n} is down"),
            #[cfg(feature = "dist")]
            Error::NotLocal(pid) => write!(f, "process {pid} is not on this node"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e.to_string().into())
    }
}
