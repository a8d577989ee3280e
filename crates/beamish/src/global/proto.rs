//! The messages of OTP's `global` protocol (version 8, OTP 25 and 26), read
//! from terms into types and built back. Reading never fails loudly: a term
//! that does not have the expected shape becomes `None` (or
//! [`Incoming::Unknown`]), which the server logs and drops.

use crate::Pid;
use crate::dist::{Atom, Fun, Term};

use super::call::{self, From};

/// The protocol version we speak (`?vsn` of OTP 25 and 26).
pub(crate) const VSN: u32 = 8;
/// The version that brought `init_connect_ack` and `cancel_connect`.
pub(crate) const VERIFY_CONNECT_VSN: u32 = 8;
/// The version that brought `lost_connection` and versioned known lists.
pub(crate) const POP_VSN: u32 = 7;

/// An atom by name. Our own protocol atoms are short ASCII names, so this
/// can only fail when the atom table is full; then it is `undefined`.
pub(crate) fn atom(name: &str) -> Atom {
    Atom::new(name).unwrap_or(Atom::UNDEFINED)
}

/// `Term::Atom(atom(name))`.
pub(crate) fn a(name: &str) -> Term {
    Term::Atom(atom(name))
}

/// `{ResourceId, LockRequesterId}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LockId {
    /// What is locked (`global` for global's own lock).
    pub(crate) resource: Term,
    /// Who asks: holders with the same requester id share the lock.
    pub(crate) requester: Term,
}

impl LockId {
    pub(crate) fn parse(t: &Term) -> Option<LockId> {
        match t.as_tuple()? {
            [resource, requester] => Some(LockId {
                resource: resource.clone(),
                requester: requester.clone(),
            }),
            _ => None,
        }
    }

    pub(crate) fn to_term(&self) -> Term {
        Term::tuple(vec![self.resource.clone(), self.requester.clone()])
    }

    /// Whether this is global's own lock (resource `global`).
    pub(crate) fn is_global(&self) -> bool {
        self.resource == a("global")
    }
}

/// `{Name, Pid, Method}`, as `exchange` carries names and `insert` ops.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NameEntry {
    pub(crate) name: Term,
    pub(crate) pid: Pid,
    pub(crate) method: Term,
}

impl NameEntry {
    fn parse(t: &Term) -> Option<NameEntry> {
        match t.as_tuple()? {
            [name, Term::Pid(pid), method] => Some(NameEntry {
                name: name.clone(),
                pid: *pid,
                method: method.clone(),
            }),
            _ => None,
        }
    }

    pub(crate) fn to_term(&self) -> Term {
        Term::tuple(vec![
            self.name.clone(),
            Term::Pid(self.pid),
            self.method.clone(),
        ])
    }
}

/// An operation of the name exchange.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    /// `{insert, {Name, Pid, Method}}`
    Insert(NameEntry),
    /// `{delete, Name}`
    Delete(Term),
}

impl Op {
    fn parse(t: &Term) -> Option<Op> {
        match t.as_tuple()? {
            [Term::Atom(tag), e] if tag.as_str() == "insert" => NameEntry::parse(e).map(Op::Insert),
            [Term::Atom(tag), name] if tag.as_str() == "delete" => Some(Op::Delete(name.clone())),
            _ => None,
        }
    }

    pub(crate) fn to_term(&self) -> Term {
        match self {
            Op::Insert(e) => Term::tuple(vec![a("insert"), e.to_term()]),
            Op::Delete(n) => Term::tuple(vec![a("delete"), n.clone()]),
        }
    }
}

/// A list of ops; `None` if any element is malformed.
fn ops(t: &Term) -> Option<Vec<Op>> {
    t.as_list()?.iter().map(Op::parse).collect()
}

/// A known-nodes list: atoms (before version 7) or `{Node, Vsn}`.
/// The version is 0 when not given.
pub(crate) fn node_vsn_list(t: &Term) -> Option<Vec<(Atom, u32)>> {
    t.as_list()?
        .iter()
        .map(|e| match e {
            Term::Atom(n) => Some((*n, 0)),
            Term::Tuple(v) => match &v[..] {
                [Term::Atom(n), Term::Int(vsn)] => Some((*n, u32::try_from(*vsn).ok()?)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Builds a known-nodes list for a peer of version `vsn`.
pub(crate) fn known_list(vsn: u32, known: &[(Atom, u32)]) -> Term {
    Term::List(
        known
            .iter()
            .map(|&(n, v)| {
                if vsn < POP_VSN {
                    Term::Atom(n)
                } else {
                    Term::tuple(vec![Term::Atom(n), Term::from(v)])
                }
            })
            .collect(),
    )
}

/// A `$gen_call` request to `global_name_server`.
#[derive(Debug, PartialEq)]
pub(crate) enum Request {
    SetLock(LockId),
    DelLock(LockId),
    /// `{register, Name, Pid, Method}`, and `register_ext` (names of
    /// C-nodes registered through an Erlang node; the same for us).
    Register(NameEntry),
    Unregister(Term),
    GetKnown,
    GetSynced,
    GetProtocolVersion,
    /// Anything else: OTP logs it and never replies.
    Unknown(Term),
}

/// A `$gen_cast` to `global_name_server`.
#[derive(Debug, PartialEq)]
pub(crate) enum Cast {
    /// `{init_connect, {Vsn, HisTag}, Node, {locker, _, _, HisTheLocker}}`
    InitConnect {
        vsn: u32,
        his_tag: Term,
        node: Atom,
        his_locker: Pid,
    },
    /// `{lock_set, Pid, Set, HisKnown[, MyTag]}`: a peer's locker, proxied
    /// by its server.
    LockSet {
        pid: Pid,
        set: bool,
        tag: Option<Term>,
    },
    /// `{exchange, Node, Names, NamesExt, MyTag}`
    Exchange {
        node: Atom,
        names: Vec<NameEntry>,
        tag: Term,
    },
    /// `{resolved, Node, HisResolved, HisKnown, _, NamesExt, MyTag}`
    Resolved {
        node: Atom,
        ops: Vec<Op>,
        known: Vec<(Atom, u32)>,
        tag: Term,
    },
    /// `{new_nodes, Node, Ops, NamesExt, Nodes, ExtraInfo}`
    NewNodes {
        node: Atom,
        ops: Vec<Op>,
        nodes: Vec<(Atom, u32)>,
        /// The requester id of the `{lock, {global, Id}}` in ExtraInfo.
        lock: Option<Term>,
    },
    /// `{in_sync, Node, IsKnown}`
    InSync {
        node: Atom,
    },
    /// `{async_del_name, _, _}` and `{async_del_lock, _, _}` of old nodes:
    /// monitors do their work now.
    Obsolete,
    Unknown(Term),
}

/// A plain message to `global_name_server`.
#[derive(Debug, PartialEq)]
pub(crate) enum Info {
    /// `{init_connect_ack, Node, HisMyTag, HisHisTag}`
    InitConnectAck {
        node: Atom,
        his_my: Term,
        his_his: Term,
    },
    /// `{cancel_connect, Node, MyTag}`
    CancelConnect {
        node: Atom,
        tag: Term,
    },
    /// `{lost_connection, NodeA, XCreationA, OpIdA, NodeB}`
    LostConnection {
        a: Atom,
        xcre: Term,
        op_id: Term,
        b: Atom,
    },
    /// `{remove_connection, Node}`
    RemoveConnection(Atom),
    /// `{whereis, Name, From}`
    Whereis {
        name: Term,
        from: From,
    },
    Unknown(Term),
}

/// Any term that reaches the server.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    Call { from: From, request: Request },
    Cast(Cast),
    Info(Info),
}

fn is(t: &Term, name: &str) -> bool {
    matches!(t, Term::Atom(x) if x.as_str() == name)
}

/// Classifies a term sent to `global_name_server`.
pub(crate) fn parse(t: &Term) -> Incoming {
    if let Some(v) = t.as_tuple() {
        match v {
            [Term::Atom(tag), from, request] if *tag == Atom::GEN_CALL => {
                if let Some(from) = From::parse(from) {
                    return Incoming::Call {
                        from,
                        request: parse_request(request),
                    };
                }
            }
            [Term::Atom(tag), request] if *tag == call::gen_cast() => {
                return Incoming::Cast(parse_cast(request));
            }
            _ => {}
        }
    }
    Incoming::Info(parse_info(t))
}

fn parse_request(t: &Term) -> Request {
    let unknown = || Request::Unknown(t.clone());
    match t {
        Term::Atom(x) => match x.as_str() {
            "get_known" => Request::GetKnown,
            "get_synced" => Request::GetSynced,
            "get_protocol_version" => Request::GetProtocolVersion,
            _ => unknown(),
        },
        Term::Tuple(v) => match &v[..] {
            [tag, id] if is(tag, "set_lock") => {
                LockId::parse(id).map_or_else(unknown, Request::SetLock)
            }
            [tag, id] if is(tag, "del_lock") => {
                LockId::parse(id).map_or_else(unknown, Request::DelLock)
            }
            [tag, name] if is(tag, "unregister") => Request::Unregister(name.clone()),
            [tag, name, Term::Pid(pid), method] if is(tag, "register") => {
                Request::Register(NameEntry {
                    name: name.clone(),
                    pid: *pid,
                    method: method.clone(),
                })
            }
            [tag, name, Term::Pid(pid), method, _reg_node] if is(tag, "register_ext") => {
                Request::Register(NameEntry {
                    name: name.clone(),
                    pid: *pid,
                    method: method.clone(),
                })
            }
            _ => unknown(),
        },
        _ => unknown(),
    }
}

fn parse_cast(t: &Term) -> Cast {
    parse_cast_inner(t).unwrap_or_else(|| Cast::Unknown(t.clone()))
}

fn parse_cast_inner(t: &Term) -> Option<Cast> {
    let v = t.as_tuple()?;
    let (tag, rest) = v.split_first()?;
    let Term::Atom(tag) = tag else { return None };
    Some(match (tag.as_str(), rest) {
        ("init_connect", [vsn, Term::Atom(node), init_msg]) => {
            // `{Vsn, HisTag}`, or a longer tuple from a newer version.
            let vv = vsn.as_tuple()?;
            let (Term::Int(his_vsn), his_tag) = (vv.first()?, vv.get(1)?) else {
                return None;
            };
            let his_vsn = u32::try_from(*his_vsn).ok()?;
            let his_locker = match init_msg.as_tuple()? {
                [l, _, _, Term::Pid(p)] if is(l, "locker") => *p,
                _ => return None,
            };
            Cast::InitConnect {
                vsn: his_vsn,
                his_tag: his_tag.clone(),
                node: *node,
                his_locker,
            }
        }
        ("lock_set", [Term::Pid(pid), set, _known]) => Cast::LockSet {
            pid: *pid,
            set: set.as_bool()?,
            tag: None,
        },
        ("lock_set", [Term::Pid(pid), set, _known, tag]) => Cast::LockSet {
            pid: *pid,
            set: set.as_bool()?,
            tag: Some(tag.clone()),
        },
        ("exchange", [Term::Atom(node), names, _ext, tag]) => Cast::Exchange {
            node: *node,
            names: names
                .as_list()?
                .iter()
                .map(NameEntry::parse)
                .collect::<Option<_>>()?,
            tag: tag.clone(),
        },
        ("resolved", [Term::Atom(node), his_ops, known, _unused, _ext, tag]) => Cast::Resolved {
            node: *node,
            ops: ops(his_ops)?,
            known: node_vsn_list(known)?,
            tag: tag.clone(),
        },
        ("new_nodes", [Term::Atom(node), his_ops, _ext, nodes, extra]) => Cast::NewNodes {
            node: *node,
            ops: ops(his_ops)?,
            nodes: node_vsn_list(nodes)?,
            lock: extra_lock(extra),
        },
        ("in_sync", [Term::Atom(node), _]) => Cast::InSync { node: *node },
        ("async_del_name" | "async_del_lock", [_, _]) => Cast::Obsolete,
        _ => return None,
    })
}

/// The requester id in `[..., {lock, {global, Id}}, ...]`.
pub(crate) fn extra_lock(extra: &Term) -> Option<Term> {
    extra.as_list()?.iter().find_map(|e| match e.as_tuple()? {
        [k, lock] if is(k, "lock") => match lock.as_tuple()? {
            [g, id] if is(g, "global") => Some(id.clone()),
            _ => None,
        },
        _ => None,
    })
}

fn parse_info(t: &Term) -> Info {
    parse_info_inner(t).unwrap_or_else(|| Info::Unknown(t.clone()))
}

fn parse_info_inner(t: &Term) -> Option<Info> {
    let v = t.as_tuple()?;
    let (tag, rest) = v.split_first()?;
    let Term::Atom(tag) = tag else { return None };
    Some(match (tag.as_str(), rest) {
        ("init_connect_ack", [Term::Atom(node), his_my, his_his]) => Info::InitConnectAck {
            node: *node,
            his_my: his_my.clone(),
            his_his: his_his.clone(),
        },
        ("cancel_connect", [Term::Atom(node), tag]) => Info::CancelConnect {
            node: *node,
            tag: tag.clone(),
        },
        ("lost_connection", [Term::Atom(a), xcre, op_id, Term::Atom(b)]) => Info::LostConnection {
            a: *a,
            xcre: xcre.clone(),
            op_id: op_id.clone(),
            b: *b,
        },
        ("remove_connection", [Term::Atom(node)]) => Info::RemoveConnection(*node),
        ("whereis", [name, from]) => Info::Whereis {
            name: name.clone(),
            from: From::parse(from)?,
        },
        _ => return None,
    })
}

// ------------------------------------------------------------- builders

/// `fun Module:Function/Arity`.
pub(crate) fn export_fun(module: &str, function: &str, arity: u8) -> Term {
    Term::Fun(Box::new(Fun::Export {
        module: atom(module),
        function: atom(function),
        arity,
    }))
}

/// The `Module:Function` of an export fun with arity 3 (or of a legacy
/// `{Module, Function}` tuple), as resolve methods are given.
pub(crate) fn method_name(method: &Term) -> Option<(Atom, Atom)> {
    match method {
        Term::Fun(f) => match &**f {
            Fun::Export {
                module,
                function,
                arity: 3,
            } => Some((*module, *function)),
            _ => None,
        },
        Term::Tuple(v) => match &v[..] {
            [Term::Atom(m), Term::Atom(f)] => Some((*m, *f)),
            _ => None,
        },
        _ => None,
    }
}

/// `{init_connect, {Vsn, MyTag}, Node, {locker, no_longer_a_pid, Known, Locker}}`
pub(crate) fn init_connect(my_tag: &Term, me: Atom, known: Term, locker: Pid) -> Term {
    Term::tuple(vec![
        a("init_connect"),
        Term::tuple(vec![Term::from(VSN), my_tag.clone()]),
        Term::Atom(me),
        Term::tuple(vec![
            a("locker"),
            a("no_longer_a_pid"),
            known,
            Term::Pid(locker),
        ]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Pid {
        // Any pid works for parsing; a local one needs no node.
        crate::Pid::new(0, 1, 1)
    }

    #[test]
    fn calls_are_classified() {
        let from = Term::tuple(vec![Term::Pid(pid()), Term::Int(7)]);
        let call = |req: Term| Term::tuple(vec![Term::Atom(Atom::GEN_CALL), from.clone(), req]);
        let id = Term::tuple(vec![a("global"), Term::Pid(pid())]);
        let Incoming::Call { from: f, request } =
            parse(&call(Term::tuple(vec![a("set_lock"), id.clone()])))
        else {
            panic!("not a call")
        };
        assert_eq!(f.tag, Term::Int(7));
        assert_eq!(
            request,
            Request::SetLock(LockId {
                resource: a("global"),
                requester: Term::Pid(pid())
            })
        );
        assert!(LockId::parse(&id).unwrap().is_global());
        let reg = call(Term::tuple(vec![
            a("register"),
            a("n"),
            Term::Pid(pid()),
            export_fun("global", "random_exit_name", 3),
        ]));
        assert!(matches!(
            parse(&reg),
            Incoming::Call {
                request: Request::Register(_),
                ..
            }
        ));
        // A set_lock whose id is not a pair is an unknown request.
        let bad = call(Term::tuple(vec![a("set_lock"), a("x")]));
        assert!(matches!(
            parse(&bad),
            Incoming::Call {
                request: Request::Unknown(_),
                ..
            }
        ));
        // A call with a malformed From is not a call at all.
        let no_from = Term::tuple(vec![Term::Atom(Atom::GEN_CALL), a("x"), a("get_known")]);
        assert!(matches!(parse(&no_from), Incoming::Info(Info::Unknown(_))));
    }

    #[test]
    fn casts_are_read_or_rejected() {
        let cast = |req: Term| Term::tuple(vec![a("$gen_cast"), req]);
        let ic = init_connect(&Term::Int(5), atom("n@h"), Term::Nil, pid());
        assert_eq!(
            parse(&cast(ic)),
            Incoming::Cast(Cast::InitConnect {
                vsn: VSN,
                his_tag: Term::Int(5),
                node: atom("n@h"),
                his_locker: pid()
            })
        );
        let ex = Term::tuple(vec![
            a("exchange"),
            a("n@h"),
            Term::List(vec![
                NameEntry {
                    name: a("x"),
                    pid: pid(),
                    method: a("m"),
                }
                .to_term(),
            ]),
            Term::Nil,
            Term::Int(1),
        ]);
        assert!(matches!(
            parse(&cast(ex)),
            Incoming::Cast(Cast::Exchange { .. })
        ));
        // One bad name spoils the exchange: nothing of it is applied.
        let bad = Term::tuple(vec![
            a("exchange"),
            a("n@h"),
            Term::List(vec![a("oops")]),
            Term::Nil,
            Term::Int(1),
        ]);
        assert!(matches!(
            parse(&cast(bad)),
            Incoming::Cast(Cast::Unknown(_))
        ));
        let nn = Term::tuple(vec![
            a("new_nodes"),
            a("n@h"),
            Term::List(vec![Op::Delete(a("x")).to_term()]),
            Term::Nil,
            Term::List(vec![a("old@h"), Term::tuple(vec![a("b@h"), Term::Int(8)])]),
            Term::List(vec![
                Term::tuple(vec![a("vsn"), Term::Int(8)]),
                Term::tuple(vec![
                    a("lock"),
                    Term::tuple(vec![a("global"), Term::Int(3)]),
                ]),
            ]),
        ]);
        assert_eq!(
            parse(&cast(nn)),
            Incoming::Cast(Cast::NewNodes {
                node: atom("n@h"),
                ops: vec![Op::Delete(a("x"))],
                nodes: vec![(atom("old@h"), 0), (atom("b@h"), 8)],
                lock: Some(Term::Int(3)),
            })
        );
        assert!(matches!(
            parse(&cast(Term::Int(1))),
            Incoming::Cast(Cast::Unknown(_))
        ));
    }

    #[test]
    fn infos_are_read_or_rejected() {
        let lc = Term::tuple(vec![
            a("lost_connection"),
            a("a@h"),
            Term::Int(1),
            Term::Int(2),
            a("b@h"),
        ]);
        assert!(matches!(
            parse(&lc),
            Incoming::Info(Info::LostConnection { .. })
        ));
        assert_eq!(
            parse(&Term::tuple(vec![a("remove_connection"), a("a@h")])),
            Incoming::Info(Info::RemoveConnection(atom("a@h")))
        );
        for garbage in [
            Term::Int(3),
            Term::Nil,
            Term::tuple(vec![]),
            Term::tuple(vec![a("remove_connection"), Term::Int(1)]),
            Term::tuple(vec![a("cancel_connect")]),
        ] {
            assert!(matches!(parse(&garbage), Incoming::Info(Info::Unknown(_))));
        }
    }

    #[test]
    fn known_lists_follow_the_peer_version() {
        let known = [(atom("a@h"), 8)];
        assert_eq!(known_list(6, &known), Term::List(vec![a("a@h")]));
        assert_eq!(
            node_vsn_list(&known_list(8, &known)).unwrap(),
            known.to_vec()
        );
        assert!(node_vsn_list(&Term::List(vec![Term::Int(1)])).is_none());
    }

    #[test]
    fn methods_are_named() {
        assert_eq!(
            method_name(&export_fun("global", "notify_all_name", 3)),
            Some((atom("global"), atom("notify_all_name")))
        );
        assert_eq!(method_name(&export_fun("global", "x", 2)), None);
        assert_eq!(
            method_name(&Term::tuple(vec![a("m"), a("f")])),
            Some((atom("m"), atom("f")))
        );
    }
}
