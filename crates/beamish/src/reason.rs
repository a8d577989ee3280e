//! Exit reasons, and the messages that carry them.

use std::fmt;
use std::sync::Arc;

use crate::{Pid, Ref};

/// Why a process ended: the value its links and monitors see.
///
/// The atoms Erlang gives meaning to have their own variants; anything else a
/// program wants to say is [`Reason::Other`]. Reasons are cheap to clone (a
/// payload is an `Arc<str>`), because one exit reaches every link and monitor.
///
/// ```
/// use beamish::Reason;
/// assert_eq!(Reason::other("boom").to_string(), "boom");
/// assert_eq!(Reason::shutdown_with("maintenance").to_string(), "{shutdown,maintenance}");
/// assert!(Reason::Normal.is_normal());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Reason {
    /// The process finished its work. Links that do not trap exits ignore it.
    #[default]
    Normal,
    /// `exit(pid, kill)`: cannot be trapped; the victim dies with [`Reason::Killed`].
    /// Propagated through a link it is an ordinary reason (Erlang's rule).
    Kill,
    /// The process was killed by an untrappable `kill` signal.
    Killed,
    /// An orderly stop, typically by a supervisor or the runtime's shutdown.
    Shutdown,
    /// `{shutdown, Detail}`: an orderly stop with a detail; like `shutdown`,
    /// supervisors do not report it as a crash.
    ShutdownWith(Arc<str>),
    /// The process did not exist (a link to, or a call on, a dead pid).
    NoProc,
    /// The connection to the process's node was lost.
    NoConnection,
    /// The process panicked; the payload is the panic message.
    Panic(Arc<str>),
    /// Any other reason, like Erlang's `exit(boom)`.
    Other(Arc<str>),
    /// Any other Erlang term, such as `{crashed, Ref}` from another node.
    #[cfg(feature = "dist")]
    Term(Arc<crate::dist::Term>),
}

impl Reason {
    /// A user reason, like Erlang's `exit(boom)`.
    pub fn other(text: impl Into<Arc<str>>) -> Reason {
        Reason::Other(text.into())
    }

    /// `{shutdown, Detail}`.
    pub fn shutdown_with(detail: impl Into<Arc<str>>) -> Reason {
        Reason::ShutdownWith(detail.into())
    }

    /// True for `normal`.
    pub fn is_normal(&self) -> bool {
        matches!(self, Reason::Normal)
    }

    /// True for `normal`, `shutdown` and `{shutdown, _}`: the reasons a
    /// supervisor does not log as crashes.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            Reason::Normal | Reason::Shutdown | Reason::ShutdownWith(_)
        )
    }

    /// Builds a panic reason from a payload caught by `catch_unwind`.
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Reason {
        let text: Arc<str> = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).into()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.as_str().into()
        } else {
            "non-string panic payload".into()
        };
        Reason::Panic(text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Normal => f.write_str("normal"),
            Reason::Kill => f.write_str("kill"),
            Reason::Killed => f.write_str("killed"),
            Reason::Shutdown => f.write_str("shutdown"),
            Reason::ShutdownWith(d) => write!(f, "{{shutdown,{d}}}"),
            Reason::NoProc => f.write_str("noproc"),
            Reason::NoConnection => f.write_str("noconnection"),
            Reason::Panic(m) => write!(f, "{{panic,{m:?}}}"),
            Reason::Other(r) => f.write_str(r),
            #[cfg(feature = "dist")]
            Reason::Term(t) => write!(f, "{t}"),
        }
    }
}

#[cfg(feature = "dist")]
impl Reason {
    /// The reason an Erlang term stands for: the atoms with a meaning get
    /// their variants, any other atom is [`Reason::Other`], `{shutdown, A}`
    /// is [`Reason::ShutdownWith`], and anything else is [`Reason::Term`].
    ///
    /// ```
    /// use beamish::Reason;
    /// use beamish::dist::{Atom, Term};
    /// let t = Term::Atom(Atom::new("boom").unwrap());
    /// assert_eq!(Reason::from_term(t.clone()), Reason::other("boom"));
    /// assert_eq!(Reason::from_term(t.clone()).to_term(), t);
    /// ```
    pub fn from_term(t: crate::dist::Term) -> Reason {
        use crate::dist::{Atom, Term};
        match &t {
            Term::Atom(a) => match *a {
                Atom::NORMAL => Reason::Normal,
                Atom::KILL => Reason::Kill,
                Atom::KILLED => Reason::Killed,
                Atom::SHUTDOWN => Reason::Shutdown,
                Atom::NOPROC => Reason::NoProc,
                Atom::NOCONNECTION => Reason::NoConnection,
                a => Reason::Other(a.as_str().into()),
            },
            Term::Tuple(e) => match &e[..] {
                [Term::Atom(Atom::SHUTDOWN), Term::Atom(d)] => {
                    Reason::ShutdownWith(d.as_str().into())
                }
                [Term::Atom(Atom::PANIC), Term::Binary(m)] => match std::str::from_utf8(m) {
                    Ok(m) => Reason::Panic(m.into()),
                    Err(_) => Reason::Term(Arc::new(t)),
                },
                _ => Reason::Term(Arc::new(t)),
            },
            _ => Reason::Term(Arc::new(t)),
        }
    }

    /// The Erlang term for this reason (the inverse of
    /// [`Reason::from_term`]): a panic is `{panic, <<Message>>}`, and a text
    /// that cannot be an atom (over 255 characters) a binary.
    pub fn to_term(&self) -> crate::dist::Term {
        use crate::dist::{Atom, Term};
        let atom_or_binary = |s: &str| match Atom::new(s) {
            Ok(a) => Term::Atom(a),
            Err(_) => Term::Binary(bytes::Bytes::copy_from_slice(s.as_bytes())),
        };
        match self {
            Reason::Normal => Term::Atom(Atom::NORMAL),
            Reason::Kill => Term::Atom(Atom::KILL),
            Reason::Killed => Term::Atom(Atom::KILLED),
            Reason::Shutdown => Term::Atom(Atom::SHUTDOWN),
            Reason::ShutdownWith(d) => {
                Term::Tuple(vec![Term::Atom(Atom::SHUTDOWN), atom_or_binary(d)])
            }
            Reason::NoProc => Term::Atom(Atom::NOPROC),
            Reason::NoConnection => Term::Atom(Atom::NOCONNECTION),
            Reason::Panic(m) => Term::Tuple(vec![
                Term::Atom(Atom::PANIC),
                Term::Binary(bytes::Bytes::copy_from_slice(m.as_bytes())),
            ]),
            Reason::Other(r) => atom_or_binary(r),
            Reason::Term(t) => (**t).clone(),
        }
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason::other(s)
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Reason {
        Reason::other(s)
    }
}

/// The message a process that traps exits gets instead of dying:
/// Erlang's `{'EXIT', From, Reason}`.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::{Exit, Reason};
/// beamish::trap_exit(true);
/// let child = beamish::spawn_link(async { beamish::exit(Reason::other("boom")).await });
/// let Exit { from, reason } = beamish::receive::<Exit>().await;
/// assert_eq!((from, reason), (child, Reason::other("boom")));
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The process the signal came from.
    pub from: Pid,
    /// Its reason.
    pub reason: Reason,
}

/// The message a monitor delivers when the monitored process ends:
/// Erlang's `{'DOWN', Ref, process, Pid, Reason}`.
///
/// ```
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use beamish::{Down, Reason};
/// let (pid, mref) = beamish::spawn_monitor(async {});
/// let down = beamish::receive::<Down>().await;
/// assert_eq!((down.monitor, down.pid, down.reason), (mref, pid, Reason::Normal));
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    /// The monitor that fired (what `monitor` returned).
    pub monitor: Ref,
    /// The process that ended.
    pub pid: Pid,
    /// Its exit reason; `noproc` if it was already dead when monitored.
    pub reason: Reason,
}
