//! The messages scope processes exchange, as OTP's `pg` writes them, read
//! into [`Wire`] and written back.
//!
//! Parsing checks the whole shape before anything changes: a message that
//! is not one of these (a wrong arity, a member that is not a pid, a list
//! that is not a proper list of pids) is an error, and the scope ignores it.

use std::sync::OnceLock;

use crate::Pid;
use crate::dist::{Atom, Term};

/// The atoms of the protocol, interned once.
pub(crate) struct Words {
    /// `pg`: the default scope.
    pub(crate) pg: Atom,
    /// `discover`.
    pub(crate) discover: Atom,
    /// `sync`.
    pub(crate) sync: Atom,
    /// `join`.
    pub(crate) join: Atom,
    /// `leave`.
    pub(crate) leave: Atom,
}

/// The protocol's atoms; `None` only when the atom table is full.
pub(crate) fn words() -> Option<&'static Words> {
    static WORDS: OnceLock<Option<Words>> = OnceLock::new();
    WORDS
        .get_or_init(|| {
            Some(Words {
                pg: Atom::new("pg").ok()?,
                discover: Atom::new("discover").ok()?,
                sync: Atom::new("sync").ok()?,
                join: Atom::new("join").ok()?,
                leave: Atom::new("leave").ok()?,
            })
        })
        .as_ref()
}

/// A message from another node's scope process.
#[derive(Debug, PartialEq)]
pub(crate) enum Wire {
    /// `{discover, Peer}`, or OTP 26's `{discover, Peer, Version}`: `Peer`
    /// runs the same scope and wants our members.
    Discover {
        /// The peer's scope process.
        peer: Pid,
    },
    /// `{'$gen_cast', {sync, Peer, [{Group, [Pid]}]}}`: all of `Peer`'s
    /// node's members, replacing what we knew of them.
    Sync {
        /// The peer's scope process.
        peer: Pid,
        /// Each group with its members on the peer's node.
        groups: Vec<(Term, Vec<Pid>)>,
    },
    /// `{join, Peer, Group, PidOrPids}`.
    Join {
        /// The peer's scope process.
        peer: Pid,
        /// The group.
        group: Term,
        /// The processes that joined.
        pids: Vec<Pid>,
    },
    /// `{leave, Peer, PidOrPids, Groups}`.
    Leave {
        /// The peer's scope process.
        peer: Pid,
        /// The processes that left.
        pids: Vec<Pid>,
        /// The groups they left.
        groups: Vec<Term>,
    },
}

/// Why a message is not part of the protocol.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Reads a message sent to a scope process.
pub(crate) fn parse(msg: &Term) -> Result<Wire, Malformed> {
    let w = words().ok_or(Malformed("atom table full"))?;
    let items = msg.as_tuple().ok_or(Malformed("not a tuple"))?;
    match items {
        [Term::Atom(t), peer] | [Term::Atom(t), peer, _] if *t == w.discover => {
            Ok(Wire::Discover {
                peer: pid(peer).ok_or(Malformed("discover: the peer is not a pid"))?,
            })
        }
        [Term::Atom(t), body] if *t == Atom::GEN_CAST => match body.as_tuple() {
            Some([Term::Atom(s), peer, groups]) if *s == w.sync => Ok(Wire::Sync {
                peer: pid(peer).ok_or(Malformed("sync: the peer is not a pid"))?,
                groups: sync_groups(groups).ok_or(Malformed("sync: bad group list"))?,
            }),
            _ => Err(Malformed("a cast that is not sync")),
        },
        [Term::Atom(t), peer, group, members] if *t == w.join => Ok(Wire::Join {
            peer: pid(peer).ok_or(Malformed("join: the peer is not a pid"))?,
            group: group.clone(),
            pids: pid_or_pids(members).ok_or(Malformed("join: bad members"))?,
        }),
        [Term::Atom(t), peer, members, groups] if *t == w.leave => Ok(Wire::Leave {
            peer: pid(peer).ok_or(Malformed("leave: the peer is not a pid"))?,
            pids: pid_or_pids(members).ok_or(Malformed("leave: bad members"))?,
            groups: groups
                .as_list()
                .ok_or(Malformed("leave: the groups are not a list"))?
                .to_vec(),
        }),
        _ => Err(Malformed("not a pg message")),
    }
}

fn pid(t: &Term) -> Option<Pid> {
    t.as_pid()
}

/// A pid, or a proper list of pids.
fn pid_or_pids(t: &Term) -> Option<Vec<Pid>> {
    match t {
        Term::Pid(p) => Some(vec![*p]),
        _ => t.as_list()?.iter().map(pid).collect(),
    }
}

/// `[{Group, [Pid]}]`, groups in the order given.
fn sync_groups(t: &Term) -> Option<Vec<(Term, Vec<Pid>)>> {
    t.as_list()?
        .iter()
        .map(|g| match g.as_tuple()? {
            [group, pids] => Some((
                group.clone(),
                pids.as_list()?.iter().map(pid).collect::<Option<_>>()?,
            )),
            _ => None,
        })
        .collect()
}

fn pids_term(pids: &[Pid]) -> Term {
    Term::List(pids.iter().map(|p| Term::Pid(*p)).collect())
}

/// A single pid as itself, several as a list (OTP's `PidOrPids`).
fn pid_or_pids_term(pids: &[Pid]) -> Term {
    match pids {
        [one] => Term::Pid(*one),
        _ => pids_term(pids),
    }
}

/// `{discover, Me}`: the form both OTP 25 and 26 understand.
pub(crate) fn discover(w: &Words, me: Pid) -> Term {
    Term::Tuple(vec![Term::Atom(w.discover), Term::Pid(me)])
}

/// `{'$gen_cast', {sync, Me, Groups}}`.
pub(crate) fn sync(w: &Words, me: Pid, groups: &[(Term, Vec<Pid>)]) -> Term {
    let list = groups
        .iter()
        .map(|(g, pids)| Term::Tuple(vec![g.clone(), pids_term(pids)]))
        .collect();
    Term::Tuple(vec![
        Term::Atom(Atom::GEN_CAST),
        Term::Tuple(vec![Term::Atom(w.sync), Term::Pid(me), Term::List(list)]),
    ])
}

/// `{join, Me, Group, PidOrPids}`.
pub(crate) fn join(w: &Words, me: Pid, group: &Term, pids: &[Pid]) -> Term {
    Term::Tuple(vec![
        Term::Atom(w.join),
        Term::Pid(me),
        group.clone(),
        pid_or_pids_term(pids),
    ])
}

/// `{leave, Me, PidOrPids, Groups}`.
pub(crate) fn leave(w: &Words, me: Pid, pids: &[Pid], groups: &[Term]) -> Term {
    Term::Tuple(vec![
        Term::Atom(w.leave),
        Term::Pid(me),
        pid_or_pids_term(pids),
        Term::List(groups.to_vec()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Term {
        Term::atom(s).unwrap()
    }

    fn pids() -> (Pid, Pid) {
        let rt = crate::Runtime::new().unwrap();
        rt.block_on(async {
            let p = crate::spawn(async {});
            (crate::self_pid(), p)
        })
        .unwrap()
    }

    #[test]
    fn what_we_write_we_read() {
        let w = words().unwrap();
        let (me, other) = pids();
        let g = Term::from((a("g"), 1));
        assert_eq!(parse(&discover(w, me)), Ok(Wire::Discover { peer: me }));
        let groups = vec![(g.clone(), vec![other, other]), (a("h"), vec![])];
        assert_eq!(
            parse(&sync(w, me, &groups)),
            Ok(Wire::Sync { peer: me, groups })
        );
        for members in [vec![other], vec![other, me], vec![]] {
            assert_eq!(
                parse(&join(w, me, &g, &members)),
                Ok(Wire::Join {
                    peer: me,
                    group: g.clone(),
                    pids: members.clone()
                })
            );
            assert_eq!(
                parse(&leave(w, me, &members, std::slice::from_ref(&g))),
                Ok(Wire::Leave {
                    peer: me,
                    pids: members,
                    groups: vec![g.clone()]
                })
            );
        }
    }

    #[test]
    fn a_single_member_goes_out_as_a_pid_several_as_a_list() {
        let w = words().unwrap();
        let (me, other) = pids();
        let one = join(w, me, &a("g"), &[other]);
        assert!(matches!(&one.as_tuple().unwrap()[3], Term::Pid(p) if *p == other));
        let two = join(w, me, &a("g"), &[other, me]);
        assert_eq!(two.as_tuple().unwrap()[3].as_list().unwrap().len(), 2);
    }

    #[test]
    fn otp_26_discover_with_a_version_is_accepted() {
        let (me, _) = pids();
        let t = Term::Tuple(vec![a("discover"), Term::Pid(me), Term::Int(2)]);
        assert_eq!(parse(&t), Ok(Wire::Discover { peer: me }));
    }

    #[test]
    fn malformed_messages_are_errors() {
        let (me, _) = pids();
        let p = Term::Pid(me);
        let bad = [
            a("discover"),
            Term::Tuple(vec![a("discover"), a("me")]),
            Term::Tuple(vec![a("join"), p.clone(), a("g")]),
            Term::Tuple(vec![a("join"), p.clone(), a("g"), Term::Int(1)]),
            Term::Tuple(vec![
                a("join"),
                p.clone(),
                a("g"),
                Term::List(vec![p.clone(), Term::Int(1)]),
            ]),
            Term::Tuple(vec![
                a("join"),
                p.clone(),
                a("g"),
                Term::Improper(vec![p.clone()], Box::new(p.clone())),
            ]),
            Term::Tuple(vec![a("leave"), p.clone(), p.clone(), a("g")]),
            Term::Tuple(vec![
                a("$gen_cast"),
                Term::Tuple(vec![a("sync"), p.clone(), a("x")]),
            ]),
            Term::Tuple(vec![
                a("$gen_cast"),
                Term::Tuple(vec![a("sync"), p.clone(), Term::List(vec![a("g")])]),
            ]),
            Term::Tuple(vec![a("$gen_cast"), a("other")]),
            Term::Tuple(vec![a("sync"), p.clone(), Term::Nil]),
            Term::Tuple(vec![a("hello"), p]),
            Term::Int(7),
        ];
        for t in bad {
            assert!(parse(&t).is_err(), "{t} was accepted");
        }
    }
}
