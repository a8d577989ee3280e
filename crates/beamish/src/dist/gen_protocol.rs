//! The request/reply protocol of OTP's `gen` module, in terms: what
//! `gen_server:call/cast`, `gen_statem:call` and `sys` send, and how they
//! are answered.
//!
//! A call is the message `{'$gen_call', {From, Tag}, Request}`. OTP 24 and
//! later make `Tag` the improper list `[alias | Alias]`, where `Alias` is a
//! process alias of the caller that the caller deactivates when it stops
//! waiting: the reply `{Tag, Reply}` goes to the alias, so a reply that
//! comes after a timeout is dropped instead of landing in the mailbox.
//! Older callers (and `gen_server:multi_call`) use a plain reference or
//! another term as `Tag`, and the reply goes to the `From` pid. A cast is
//! `{'$gen_cast', Request}`; a system message (`sys:get_state/1`, ...) is
//! `{system, {From, Tag}, Request}`, answered like a call.
//!
//! [`call`] makes such calls from a beamish process to any process that
//! speaks the protocol (an Erlang `gen_server` or `gen_statem`, an Elixir
//! `GenServer`, or a beamish server): it monitors the server (by pid or by
//! `{Name, Node}`, as `gen:call` does), tags the request with an alias of
//! the monitor, and waits for the reply or the `Down`.

use std::time::{Duration, Instant};

use super::node::{NameDown, demonitor_name, monitor_name, send_alias, send_named, this_node};
use super::{Atom, ExtRef, Term};
use crate::mailbox::node::AliasMsg;
use crate::{Down, Error, Pid, Reason, Ref};

/// The `{Pid, Tag}` a call or system message carries: where its reply
/// goes.
#[derive(Clone, Debug, PartialEq)]
pub struct From {
    /// The calling process.
    pub pid: Pid,
    /// The tag the reply must carry (a reference, `[alias | Alias]`, or any
    /// term an old caller chose).
    pub tag: Term,
}

impl From {
    /// Reads `{Pid, Tag}`; `None` for anything else.
    pub fn parse(t: &Term) -> Option<From> {
        match t.as_tuple()? {
            [Term::Pid(pid), tag] => Some(From {
                pid: *pid,
                tag: tag.clone(),
            }),
            _ => None,
        }
    }

    /// `{Pid, Tag}`.
    pub fn to_term(&self) -> Term {
        Term::Tuple(vec![Term::Pid(self.pid), self.tag.clone()])
    }

    /// The alias of an `[alias | Alias]` tag.
    pub fn alias(&self) -> Option<&ExtRef> {
        match &self.tag {
            Term::Improper(head, tail) => match (&head[..], &**tail) {
                ([Term::Atom(Atom::ALIAS)], Term::Ref(r)) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What a message is, in the protocol.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// `{'$gen_call', From, Request}`.
    Call {
        /// Where the reply goes.
        from: From,
        /// The request.
        request: &'a Term,
    },
    /// `{'$gen_cast', Request}`.
    Cast(&'a Term),
    /// `{system, From, Request}` (the `sys` module).
    System {
        /// Where the reply goes.
        from: From,
        /// The request (`get_state`, `get_status`, `suspend`, ...).
        request: &'a Term,
    },
    /// `{'$gen_call', ...}` or `{system, ...}` whose `From` is not
    /// `{Pid, Tag}`: there is nobody to answer.
    Malformed,
    /// Anything else (an `info` message).
    Other,
}

/// Sorts a message by the protocol.
pub fn classify(msg: &Term) -> Incoming<'_> {
    let Some(items) = msg.as_tuple() else {
        return Incoming::Other;
    };
    match items {
        [Term::Atom(Atom::GEN_CALL), from, request] => match From::parse(from) {
            Some(from) => Incoming::Call { from, request },
            None => Incoming::Malformed,
        },
        [Term::Atom(Atom::GEN_CAST), request] => Incoming::Cast(request),
        [Term::Atom(Atom::SYSTEM), from, request] => match From::parse(from) {
            Some(from) => Incoming::System { from, request },
            None => Incoming::Malformed,
        },
        [Term::Atom(Atom::GEN_CALL), ..] | [Term::Atom(Atom::SYSTEM), ..] => Incoming::Malformed,
        _ => Incoming::Other,
    }
}

/// Answers a call: `{Tag, Reply}`, to the alias of an `[alias | Alias]`
/// tag, to the caller's pid otherwise (OTP's `gen:reply/2`).
pub fn reply(from: &From, reply: Term) {
    let msg = Term::Tuple(vec![from.tag.clone(), reply]);
    match from.alias() {
        Some(alias) => send_alias(alias, msg),
        None => from.pid.send(msg),
    }
}

/// Where a call or cast goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// A process, local or remote.
    Pid(Pid),
    /// A name registered on this node.
    Name(Atom),
    /// A name registered on a node (`{Name, Node}`; this node is allowed).
    Remote {
        /// The registered name.
        name: Atom,
        /// The node.
        node: Atom,
    },
}

impl Dest {
    /// Reads a pid, an atom or `{Name, Node}`.
    pub fn from_term(t: &Term) -> Option<Dest> {
        match t {
            Term::Pid(p) => Some(Dest::Pid(*p)),
            Term::Atom(a) => Some(Dest::Name(*a)),
            Term::Tuple(e) => match &e[..] {
                [Term::Atom(name), Term::Atom(node)] => Some(Dest::Remote {
                    name: *name,
                    node: *node,
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// Sends `msg` there (`Dest ! Msg`); a name nobody holds drops it.
    pub fn send(&self, msg: Term) {
        match *self {
            Dest::Pid(p) => p.send(msg),
            Dest::Name(name) => send_named(name, this_node(), msg),
            Dest::Remote { name, node } => send_named(name, node, msg),
        }
    }
}

/// `gen_server:cast(Dest, Request)`.
pub fn cast(dest: &Dest, request: Term) {
    dest.send(Term::Tuple(vec![Term::Atom(Atom::GEN_CAST), request]));
}

/// `gen:call(Dest, '$gen_call', Request, Timeout)`: the reply, or why
/// there is none: [`Error::NoProc`] (a pid that is not alive),
/// [`Error::UnknownName`] (a name nobody holds), [`Error::NodeDown`],
/// [`Error::Timeout`] (`None` waits forever), [`Error::Exited`] (the
/// server ended during the call, with its reason). Must run in a process.
pub async fn call(dest: &Dest, request: Term, timeout: Option<Duration>) -> Result<Term, Error> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let pending = Pending::send(dest, Atom::GEN_CALL, request)?;
    pending.wait(deadline).await
}

/// `gen_server:multi_call(Nodes, Name, Request, Timeout)`: the same call
/// to the process registered as `name` on each node, all at once. Returns
/// the replies and the nodes that gave none (no such name, node down,
/// timeout, or the server died), each in the order of `nodes`.
pub async fn multi_call(
    nodes: &[Atom],
    name: Atom,
    request: Term,
    timeout: Option<Duration>,
) -> (Vec<(Atom, Term)>, Vec<Atom>) {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut pending = Vec::with_capacity(nodes.len());
    for &node in nodes {
        let dest = Dest::Remote { name, node };
        pending.push((node, Pending::send(&dest, Atom::GEN_CALL, request.clone())));
    }
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (node, p) in pending {
        match p {
            Ok(p) => match p.wait(deadline).await {
                Ok(reply) => good.push((node, reply)),
                Err(_) => bad.push(node),
            },
            Err(_) => bad.push(node),
        }
    }
    (good, bad)
}

/// A call sent, its reply not yet in.
struct Pending {
    /// The monitor of the server, also the alias the reply goes to.
    monitor: Ref,
    /// What the monitor watches.
    on: Watch,
}

#[derive(Clone, Copy)]
enum Watch {
    Pid(Pid),
    Name(Atom, Atom),
}

impl Pending {
    /// Monitors the server, activates the alias, sends
    /// `{Label, {self(), [alias | Alias]}, Request}`.
    fn send(dest: &Dest, label: Atom, request: Term) -> Result<Pending, Error> {
        let me = crate::try_self_pid().ok_or(Error::NotInProcess)?;
        let (monitor, on, to) = match *dest {
            Dest::Pid(pid) => (crate::monitor(pid), Watch::Pid(pid), *dest),
            Dest::Name(name) => {
                let pid = crate::whereis(name.as_str())
                    .ok_or_else(|| Error::UnknownName(name.as_str().into()))?;
                (crate::monitor(pid), Watch::Pid(pid), Dest::Pid(pid))
            }
            Dest::Remote { name, node } if node == this_node() => {
                return Pending::send(&Dest::Name(name), label, request);
            }
            Dest::Remote { name, node } => {
                (monitor_name(name, node), Watch::Name(name, node), *dest)
            }
        };
        crate::mailbox::set_alias(monitor, true);
        let tag = Term::Improper(
            vec![Term::Atom(Atom::ALIAS)],
            Box::new(Term::Ref(ExtRef::alias(monitor, me))),
        );
        let from = Term::Tuple(vec![Term::Pid(me), tag]);
        to.send(Term::Tuple(vec![Term::Atom(label), from, request]));
        Ok(Pending { monitor, on })
    }

    async fn wait(self, deadline: Option<Instant>) -> Result<Term, Error> {
        let monitor = self.monitor;
        let left = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let got = crate::receive_match(move |m| {
            m.downcast_ref::<AliasMsg<Term>>()
                .is_some_and(|a| a.tag == monitor)
                || m.downcast_ref::<Down>()
                    .is_some_and(|d| d.monitor == monitor)
                || m.downcast_ref::<NameDown>()
                    .is_some_and(|d| d.monitor == monitor)
        })
        .timeout(left)
        .await;
        crate::mailbox::set_alias(monitor, false);
        let Some(msg) = got else {
            self.take_down().await;
            return Err(Error::Timeout);
        };
        let msg = match msg.downcast::<AliasMsg<Term>>() {
            Ok(a) => {
                self.take_down().await;
                return match a.value.into_vec() {
                    Ok(mut e) if e.len() == 2 => Ok(e.swap_remove(1)),
                    // Not `{Tag, Reply}`: a peer that sent something else
                    // to the alias. OTP would hand it back as the reply.
                    Ok(e) => Ok(Term::Tuple(e)),
                    Err(t) => Ok(t),
                };
            }
            Err(m) => m,
        };
        let (reason, pid) = match msg.downcast::<Down>() {
            Ok(d) => (d.reason, Some(d.pid)),
            Err(m) => match m.downcast::<NameDown>() {
                Ok(d) => (d.reason, None),
                Err(_) => return Err(Error::Timeout),
            },
        };
        Err(match (reason, self.on) {
            (Reason::NoProc, Watch::Pid(p)) => Error::NoProc(pid.unwrap_or(p)),
            (Reason::NoProc, Watch::Name(name, _)) => Error::UnknownName(name.as_str().into()),
            (Reason::NoConnection, Watch::Pid(p)) => Error::NodeDown(p.node()),
            (Reason::NoConnection, Watch::Name(_, node)) => Error::NodeDown(node),
            (reason, _) => Error::Exited(reason),
        })
    }

    /// Takes the monitor down and drops a `Down` of it already queued.
    async fn take_down(&self) {
        match self.on {
            Watch::Pid(_) => {
                crate::demonitor_flush(self.monitor);
            }
            Watch::Name(_, node) => {
                demonitor_name(self.monitor, node);
                let monitor = self.monitor;
                let _ = crate::receive_if(move |d: &NameDown| d.monitor == monitor)
                    .timeout(Duration::ZERO)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Pid {
        crate::Pid::new(1, 5, 1)
    }

    #[test]
    fn calls_casts_and_system_messages_are_told_apart() {
        let me = pid();
        let tag = Term::Ref(ExtRef::from(Ref::new()));
        let from = Term::Tuple(vec![Term::Pid(me), tag.clone()]);
        let call = Term::Tuple(vec![Term::Atom(Atom::GEN_CALL), from.clone(), Term::Int(1)]);
        match classify(&call) {
            Incoming::Call { from, request } => {
                assert_eq!(from.pid, me);
                assert_eq!(from.tag, tag);
                assert_eq!(*request, Term::Int(1));
                assert!(from.alias().is_none());
            }
            other => panic!("{other:?}"),
        }
        let cast = Term::Tuple(vec![Term::Atom(Atom::GEN_CAST), Term::Int(2)]);
        assert!(matches!(classify(&cast), Incoming::Cast(Term::Int(2))));
        let sys = Term::Tuple(vec![
            Term::Atom(Atom::SYSTEM),
            from,
            Term::Atom(Atom::GET_STATE),
        ]);
        assert!(matches!(classify(&sys), Incoming::System { .. }));
        // A From that is not {Pid, Tag}: nobody to answer.
        let bad = Term::Tuple(vec![Term::Atom(Atom::GEN_CALL), Term::Int(3), Term::Nil]);
        assert!(matches!(classify(&bad), Incoming::Malformed));
        let short = Term::Tuple(vec![Term::Atom(Atom::GEN_CALL)]);
        assert!(matches!(classify(&short), Incoming::Malformed));
        assert!(matches!(classify(&Term::Int(4)), Incoming::Other));
    }

    #[test]
    fn alias_tags_are_recognised() {
        let r = ExtRef::alias(Ref::new(), pid());
        let from = From {
            pid: pid(),
            tag: Term::Improper(vec![Term::Atom(Atom::ALIAS)], Box::new(Term::Ref(r))),
        };
        assert_eq!(from.alias(), Some(&r));
        assert_eq!(r.alias_owner().map(|(p, _)| p), Some(pid()));
        // A plain three-word reference names no owner.
        assert_eq!(ExtRef::from(Ref::new()).alias_owner(), None);
    }

    #[test]
    fn destinations_are_read_from_terms() {
        let n = Atom::new("n@h").unwrap();
        let kv = Atom::new("kv").unwrap();
        assert_eq!(Dest::from_term(&Term::Atom(kv)), Some(Dest::Name(kv)));
        assert_eq!(
            Dest::from_term(&Term::Tuple(vec![Term::Atom(kv), Term::Atom(n)])),
            Some(Dest::Remote { name: kv, node: n })
        );
        assert_eq!(Dest::from_term(&Term::Int(1)), None);
    }
}
