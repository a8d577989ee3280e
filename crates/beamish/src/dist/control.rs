//! Control messages: the tuples that say what a distribution message is
//! (a send, a link, an exit signal, a monitor, …), decoded from and encoded
//! to their wire form.
//!
//! The `_TT` forms (with a sequential-trace token) are decoded like their
//! plain forms, the token ignored. Outgoing messages use the forms the peer
//! negotiated: `SEND_SENDER` and the `PAYLOAD_*` exits when it has the flags.

use super::term::Term;
use super::{Atom, ExtRef};
use crate::Pid;

/// Operation codes (`enum dop` of OTP's `dist.h`).
pub(crate) mod op {
    pub(crate) const LINK: i64 = 1;
    pub(crate) const SEND: i64 = 2;
    pub(crate) const EXIT: i64 = 3;
    pub(crate) const UNLINK: i64 = 4;
    pub(crate) const REG_SEND: i64 = 6;
    pub(crate) const GROUP_LEADER: i64 = 7;
    pub(crate) const EXIT2: i64 = 8;
    pub(crate) const SEND_TT: i64 = 12;
    pub(crate) const EXIT_TT: i64 = 13;
    pub(crate) const REG_SEND_TT: i64 = 16;
    pub(crate) const EXIT2_TT: i64 = 18;
    pub(crate) const MONITOR_P: i64 = 19;
    pub(crate) const DEMONITOR_P: i64 = 20;
    pub(crate) const MONITOR_P_EXIT: i64 = 21;
    pub(crate) const SEND_SENDER: i64 = 22;
    pub(crate) const SEND_SENDER_TT: i64 = 23;
    pub(crate) const PAYLOAD_EXIT: i64 = 24;
    pub(crate) const PAYLOAD_EXIT_TT: i64 = 25;
    pub(crate) const PAYLOAD_EXIT2: i64 = 26;
    pub(crate) const PAYLOAD_EXIT2_TT: i64 = 27;
    pub(crate) const PAYLOAD_MONITOR_P_EXIT: i64 = 28;
    pub(crate) const SPAWN_REQUEST: i64 = 29;
    pub(crate) const SPAWN_REQUEST_TT: i64 = 30;
    pub(crate) const SPAWN_REPLY: i64 = 31;
    pub(crate) const SPAWN_REPLY_TT: i64 = 32;
    pub(crate) const ALIAS_SEND: i64 = 33;
    pub(crate) const ALIAS_SEND_TT: i64 = 34;
    pub(crate) const UNLINK_ID: i64 = 35;
    pub(crate) const UNLINK_ID_ACK: i64 = 36;
}

/// A process named by pid or by registered name (monitors by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proc {
    Pid(Pid),
    Name(Atom),
}

/// Where an exit reason is: in the control tuple, or in the payload.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ReasonAt {
    Inline(Term),
    Payload,
}

/// An incoming control message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Control {
    Link {
        from: Pid,
        to: Pid,
    },
    /// `SEND` / `SEND_SENDER` (+ the `_TT` forms); the message follows.
    Send {
        from: Option<Pid>,
        to: Pid,
    },
    /// `REG_SEND`; the message follows.
    RegSend {
        from: Pid,
        name: Atom,
    },
    /// `EXIT` / `PAYLOAD_EXIT`: a linked process ended.
    Exit {
        from: Pid,
        to: Pid,
        reason: ReasonAt,
    },
    /// `EXIT2` / `PAYLOAD_EXIT2`: `exit(Pid, Reason)`.
    Exit2 {
        from: Pid,
        to: Pid,
        reason: ReasonAt,
    },
    /// The old `UNLINK` (no acknowledgement).
    Unlink {
        from: Pid,
        to: Pid,
    },
    UnlinkId {
        id: u64,
        from: Pid,
        to: Pid,
    },
    UnlinkIdAck {
        id: u64,
        from: Pid,
        to: Pid,
    },
    MonitorP {
        from: Pid,
        to: Proc,
        r: ExtRef,
    },
    DemonitorP {
        from: Pid,
        to: Proc,
        r: ExtRef,
    },
    MonitorPExit {
        from: Proc,
        to: Pid,
        r: ExtRef,
        reason: ReasonAt,
    },
    /// `SPAWN_REQUEST`; the argument list follows. `mfa` is `None` when
    /// the `{Module, Function, Arity}` or the option list is malformed
    /// (answered with `badarg`).
    SpawnRequest {
        req_id: Term,
        from: Pid,
        mfa: Option<(Atom, Atom, usize)>,
        link: bool,
        monitor: bool,
    },
    /// `SPAWN_REPLY`: the answer to a `SPAWN_REQUEST` of ours.
    SpawnReply {
        req_id: ExtRef,
        to: Pid,
        flags: i64,
        result: Term,
    },
    /// `ALIAS_SEND`; the message follows.
    AliasSend {
        from: Pid,
        alias: ExtRef,
    },
    /// `GROUP_LEADER` and anything this node ignores on purpose.
    Ignored,
}

/// Why a control tuple was refused.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BadControl(pub(crate) String);

impl std::fmt::Display for BadControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad control message: {}", self.0)
    }
}

/// How much of a refused control message a log line shows.
const SHOWN: usize = 200;

/// The start of `t` as Erlang prints it, at most [`SHOWN`] bytes: a peer's
/// term can be as large as a message, and printing all of it to cut it
/// afterwards would cost memory in proportion.
fn shown(t: &Term) -> String {
    struct Capped(String);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.0.len() + c.len_utf8() > SHOWN {
                    self.0.push_str("...");
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
            }
            Ok(())
        }
    }
    let mut out = Capped(String::new());
    let _ = std::fmt::write(&mut out, format_args!("{t}"));
    out.0
}

fn bad<T>(what: &str, t: &Term) -> Result<T, BadControl> {
    Err(BadControl(format!("{what} in {}", shown(t))))
}

fn pid(t: &Term, whole: &Term) -> Result<Pid, BadControl> {
    match t {
        Term::Pid(p) => Ok(*p),
        _ => bad("expected a pid", whole),
    }
}

fn reference(t: &Term, whole: &Term) -> Result<ExtRef, BadControl> {
    match t {
        Term::Ref(r) => Ok(*r),
        _ => bad("expected a reference", whole),
    }
}

fn proc(t: &Term, whole: &Term) -> Result<Proc, BadControl> {
    match t {
        Term::Pid(p) => Ok(Proc::Pid(*p)),
        Term::Atom(a) => Ok(Proc::Name(*a)),
        _ => bad("expected a pid or a name", whole),
    }
}

fn id(t: &Term, whole: &Term) -> Result<u64, BadControl> {
    match t {
        Term::Int(i) => u64::try_from(*i).or_else(|_| bad("negative unlink id", whole)),
        Term::Big(b) => match b.to_u128().and_then(|v| u64::try_from(v).ok()) {
            Some(v) => Ok(v),
            None => bad("unlink id out of range", whole),
        },
        _ => bad("expected an integer id", whole),
    }
}

/// The `{Module, Function, Arity}` and the `link` / `monitor` options of a
/// `SPAWN_REQUEST`; `None` if either is malformed. Other spawn options
/// (priority, heap sizes, ...) mean nothing to a beamish process and are
/// ignored.
fn spawn_options(mfa: &Term, opts: &Term) -> Option<((Atom, Atom, usize), bool, bool)> {
    let Term::Tuple(mfa) = mfa else { return None };
    let [Term::Atom(m), Term::Atom(f), Term::Int(arity)] = &mfa[..] else {
        return None;
    };
    let arity = usize::try_from(*arity).ok().filter(|a| *a <= 255)?;
    let (mut link, mut monitor) = (false, false);
    for opt in opts.as_list()? {
        match opt {
            Term::Atom(a) if *a == Atom::LINK => link = true,
            Term::Atom(a) if *a == Atom::MONITOR => monitor = true,
            Term::Tuple(t) if matches!(t.first(), Some(Term::Atom(a)) if *a == Atom::MONITOR) => {
                monitor = true
            }
            _ => {}
        }
    }
    Some(((*m, *f, arity), link, monitor))
}

impl Control {
    /// Reads a control tuple.
    pub(crate) fn parse(t: &Term) -> Result<Control, BadControl> {
        let Term::Tuple(e) = t else {
            return bad("not a tuple", t);
        };
        let Some(Term::Int(code)) = e.first() else {
            return bad("no operation code", t);
        };
        let at = |i: usize| {
            e.get(i)
                .ok_or_else(|| BadControl(format!("short tuple {}", shown(t))))
        };
        let inline = |i: usize| at(i).map(|r| ReasonAt::Inline(r.clone()));
        Ok(match *code {
            op::LINK => Control::Link {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
            },
            op::SEND | op::SEND_TT => Control::Send {
                from: None,
                to: pid(at(2)?, t)?,
            },
            op::SEND_SENDER | op::SEND_SENDER_TT => Control::Send {
                from: Some(pid(at(1)?, t)?),
                to: pid(at(2)?, t)?,
            },
            op::EXIT => Control::Exit {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                reason: inline(3)?,
            },
            op::EXIT_TT => Control::Exit {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                reason: inline(4)?,
            },
            op::PAYLOAD_EXIT | op::PAYLOAD_EXIT_TT => Control::Exit {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                reason: ReasonAt::Payload,
            },
            op::EXIT2 => Control::Exit2 {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                reason: inline(3)?,
            },
            op::EXIT2_TT => Control::Exit2 {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                reason: inline(4)?,
            },
            op::PAYLOAD_EXIT2 | op::PAYLOAD_EXIT2_TT => Control::Exit2 {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                reason: ReasonAt::Payload,
            },
            op::UNLINK => Control::Unlink {
                from: pid(at(1)?, t)?,
                to: pid(at(2)?, t)?,
            },
            op::REG_SEND | op::REG_SEND_TT => match at(3)? {
                Term::Atom(name) => Control::RegSend {
                    from: pid(at(1)?, t)?,
                    name: *name,
                },
                _ => return bad("expected a name", t),
            },
            op::GROUP_LEADER => Control::Ignored,
            op::MONITOR_P => Control::MonitorP {
                from: pid(at(1)?, t)?,
                to: proc(at(2)?, t)?,
                r: reference(at(3)?, t)?,
            },
            op::DEMONITOR_P => Control::DemonitorP {
                from: pid(at(1)?, t)?,
                to: proc(at(2)?, t)?,
                r: reference(at(3)?, t)?,
            },
            op::MONITOR_P_EXIT => Control::MonitorPExit {
                from: proc(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                r: reference(at(3)?, t)?,
                reason: inline(4)?,
            },
            op::PAYLOAD_MONITOR_P_EXIT => Control::MonitorPExit {
                from: proc(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                r: reference(at(3)?, t)?,
                reason: ReasonAt::Payload,
            },
            op::SPAWN_REQUEST | op::SPAWN_REQUEST_TT => {
                let (mfa, link, monitor) = match spawn_options(at(4)?, at(5)?) {
                    Some((mfa, link, monitor)) => (Some(mfa), link, monitor),
                    None => (None, false, false),
                };
                Control::SpawnRequest {
                    req_id: at(1)?.clone(),
                    from: pid(at(2)?, t)?,
                    mfa,
                    link,
                    monitor,
                }
            }
            op::SPAWN_REPLY | op::SPAWN_REPLY_TT => Control::SpawnReply {
                req_id: reference(at(1)?, t)?,
                to: pid(at(2)?, t)?,
                flags: match at(3)? {
                    Term::Int(f) => *f,
                    _ => return bad("expected integer flags", t),
                },
                result: at(4)?.clone(),
            },
            op::ALIAS_SEND | op::ALIAS_SEND_TT => Control::AliasSend {
                from: pid(at(1)?, t)?,
                alias: reference(at(2)?, t)?,
            },
            op::UNLINK_ID => Control::UnlinkId {
                id: id(at(1)?, t)?,
                from: pid(at(2)?, t)?,
                to: pid(at(3)?, t)?,
            },
            op::UNLINK_ID_ACK => Control::UnlinkIdAck {
                id: id(at(1)?, t)?,
                from: pid(at(2)?, t)?,
                to: pid(at(3)?, t)?,
            },
            _ => return bad("unknown operation", t),
        })
    }

    /// True when a payload term follows the control tuple.
    pub(crate) fn has_payload(&self) -> bool {
        matches!(
            self,
            Control::Send { .. }
                | Control::RegSend { .. }
                | Control::AliasSend { .. }
                | Control::SpawnRequest { .. }
                | Control::Exit {
                    reason: ReasonAt::Payload,
                    ..
                }
                | Control::Exit2 {
                    reason: ReasonAt::Payload,
                    ..
                }
                | Control::MonitorPExit {
                    reason: ReasonAt::Payload,
                    ..
                }
        )
    }
}

/// Builders of outgoing control tuples.
pub(crate) fn tuple(code: i64, rest: impl IntoIterator<Item = Term>) -> Term {
    let mut v = vec![Term::Int(code)];
    v.extend(rest);
    Term::Tuple(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_pid(n: u32) -> Pid {
        super::super::remote::pid_from_wire(super::super::WirePid {
            node: Atom::new("ctl@127.0.0.1").unwrap(),
            id: n,
            serial: 0,
            creation: 1,
        })
        .unwrap()
    }

    #[test]
    fn parses_every_form() {
        let (a, b) = (Term::Pid(some_pid(1)), Term::Pid(some_pid(2)));
        let r = ExtRef::new(Atom::NONODE, 0, &[1, 2, 3]).unwrap();
        let cases = [
            (
                tuple(op::LINK, [a.clone(), b.clone()]),
                Control::Link {
                    from: some_pid(1),
                    to: some_pid(2),
                },
            ),
            (
                tuple(op::SEND, [Term::Atom(Atom::EMPTY), b.clone()]),
                Control::Send {
                    from: None,
                    to: some_pid(2),
                },
            ),
            (
                tuple(op::SEND_SENDER, [a.clone(), b.clone()]),
                Control::Send {
                    from: Some(some_pid(1)),
                    to: some_pid(2),
                },
            ),
            (
                tuple(
                    op::EXIT_TT,
                    [a.clone(), b.clone(), Term::Nil, Term::Atom(Atom::KILL)],
                ),
                Control::Exit {
                    from: some_pid(1),
                    to: some_pid(2),
                    reason: ReasonAt::Inline(Term::Atom(Atom::KILL)),
                },
            ),
            (
                tuple(op::PAYLOAD_EXIT2, [a.clone(), b.clone()]),
                Control::Exit2 {
                    from: some_pid(1),
                    to: some_pid(2),
                    reason: ReasonAt::Payload,
                },
            ),
            (
                tuple(
                    op::REG_SEND,
                    [
                        a.clone(),
                        Term::Atom(Atom::EMPTY),
                        Term::Atom(Atom::NET_KERNEL),
                    ],
                ),
                Control::RegSend {
                    from: some_pid(1),
                    name: Atom::NET_KERNEL,
                },
            ),
            (
                tuple(
                    op::MONITOR_P,
                    [a.clone(), Term::Atom(Atom::NET_KERNEL), Term::Ref(r)],
                ),
                Control::MonitorP {
                    from: some_pid(1),
                    to: Proc::Name(Atom::NET_KERNEL),
                    r,
                },
            ),
            (
                tuple(
                    op::PAYLOAD_MONITOR_P_EXIT,
                    [b.clone(), a.clone(), Term::Ref(r)],
                ),
                Control::MonitorPExit {
                    from: Proc::Pid(some_pid(2)),
                    to: some_pid(1),
                    r,
                    reason: ReasonAt::Payload,
                },
            ),
            (
                tuple(op::UNLINK_ID, [Term::Int(7), a.clone(), b.clone()]),
                Control::UnlinkId {
                    id: 7,
                    from: some_pid(1),
                    to: some_pid(2),
                },
            ),
            (
                tuple(op::GROUP_LEADER, [a.clone(), b.clone()]),
                Control::Ignored,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(Control::parse(&t), Ok(want), "{t}");
        }
    }

    #[test]
    fn refusals_show_a_bounded_prefix() {
        // Multi-byte characters at the cut, and a huge term.
        let a = Term::Atom(Atom::new(&"λ".repeat(200)).unwrap());
        let huge = Term::binary(&vec![7u8; 1 << 20]);
        for t in [
            tuple(99, [a.clone()]),
            tuple(op::LINK, [huge.clone()]),
            tuple(99, [huge]),
        ] {
            let BadControl(text) = Control::parse(&t).unwrap_err();
            assert!(text.len() < 300, "{} bytes", text.len());
            assert!(text.ends_with("..."), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_tuples() {
        let a = Term::Pid(some_pid(1));
        for t in [
            Term::Nil,
            Term::Tuple(vec![]),
            tuple(op::LINK, [a.clone()]),
            tuple(op::LINK, [a.clone(), Term::Int(1)]),
            tuple(99, [a.clone(), a.clone()]),
            tuple(op::UNLINK_ID, [Term::Int(-1), a.clone(), a.clone()]),
            tuple(op::MONITOR_P, [a.clone(), Term::Int(3), Term::Nil]),
        ] {
            assert!(Control::parse(&t).is_err(), "{t}");
        }
    }
}
