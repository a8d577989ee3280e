//! The two halves of OTP's `$gen_call` that the name server needs: answering
//! a caller (`gen:reply`, shared with `dist::gen_protocol`) and calling one
//! registered server on many nodes (`gen_server:multi_call`).
//!
//! `multi_call` sends `{'$gen_call', {Self, {Ref, Node}}, Request}` to
//! `{Name, Node}` for every node, monitors each `{Name, Node}`, and
//! collects `{{Ref, Node}, Reply}` until every node has answered, gone
//! down or shown it runs no such server, or the time is up (the late
//! nodes count as bad, as OTP's).

use std::time::{Duration, Instant};

use crate::dist::{self, Atom, NameDown, Term};
use crate::{Pid, Ref};

/// The `{Pid, Tag}` of a `$gen_call`, and the answer to it (OTP's
/// `gen:reply/2`: to the alias of an `[alias | Alias]` tag).
pub(crate) use crate::dist::gen_protocol::{From, reply};

/// `{'$gen_call', {Self, Tag}, Request}`.
pub(crate) fn call_message(me: Pid, tag: Term, request: Term) -> Term {
    Term::tuple(vec![
        Term::Atom(Atom::GEN_CALL),
        Term::tuple(vec![Term::Pid(me), tag]),
        request,
    ])
}

/// `{'$gen_cast', Request}`.
pub(crate) fn cast_message(request: Term) -> Term {
    Term::tuple(vec![Term::Atom(gen_cast()), request])
}

/// The atom `'$gen_cast'`.
pub(crate) fn gen_cast() -> Atom {
    super::proto::atom("$gen_cast")
}

/// OTP's `gen_server:multi_call(Nodes, Name, Request, Timeout)`: the replies
/// of the nodes that answered, and the nodes that did not (down, not
/// connected, or silent for `timeout`). Must run inside a process; other messages stay in its
/// mailbox, but a `NodeDown` of a watched node that races with its reply
/// may be left there (callers ignore stray messages).
pub(crate) async fn multi_call(
    nodes: &[Atom],
    name: Atom,
    request: &Term,
    timeout: Duration,
) -> (Vec<(Atom, Term)>, Vec<Atom>) {
    let me = crate::self_pid();
    let here = dist::this_node();
    let base = Term::from(Ref::new());
    // Each server is monitored by name, as OTP's multi_call does: a node
    // that is down, or runs no such server, counts as bad at once.
    // A node not connected counts as bad at once too, and is not dialled
    // (OTP's multi_call would connect): the nodes global calls are its
    // known ones, which are connected, unless the nodedown of one is still
    // on its way; dialling that node (stopped, say) would hold every lock
    // and registration of the cluster for a handshake timeout.
    let connected = dist::nodes();
    let mut waiting: Vec<(Atom, Ref)> = Vec::with_capacity(nodes.len());
    let mut bad = Vec::new();
    for &node in nodes {
        if waiting.iter().any(|(n, _)| *n == node) {
            continue;
        }
        if (node == here && crate::whereis(name.as_str()).is_none())
            || (node != here && !connected.contains(&node))
        {
            bad.push(node);
            continue;
        }
        let mon = dist::monitor_name(name, node);
        let tag = Term::tuple(vec![base.clone(), Term::Atom(node)]);
        dist::send_named(name, node, call_message(me, tag, request.clone()));
        waiting.push((node, mon));
    }
    let mut replies = Vec::with_capacity(waiting.len());
    let deadline = Instant::now() + timeout;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = crate::receive_match(|m| {
            if let Some(t) = m.downcast_ref::<Term>() {
                return reply_node(t, &base).is_some_and(|n| waiting.iter().any(|(w, _)| *w == n));
            }
            m.downcast_ref::<NameDown>()
                .is_some_and(|d| waiting.iter().any(|(_, r)| *r == d.monitor))
        })
        .timeout(left)
        .await;
        let Some(msg) = got else { break };
        match msg.downcast::<Term>() {
            Ok(t) => {
                if let (Some(node), Some([_, answer])) = (reply_node(&t, &base), t.as_tuple())
                    && let Some(i) = waiting.iter().position(|(n, _)| *n == node)
                {
                    let (node, mon) = waiting.swap_remove(i);
                    unwatch(node, mon);
                    replies.push((node, answer.clone()));
                }
            }
            Err(msg) => {
                if let Ok(down) = msg.downcast::<NameDown>()
                    && let Some(i) = waiting.iter().position(|(_, r)| *r == down.monitor)
                {
                    let (node, _) = waiting.swap_remove(i);
                    bad.push(node);
                }
            }
        }
    }
    for (node, mon) in waiting {
        unwatch(node, mon);
        bad.push(node);
    }
    (replies, bad)
}

/// Takes down the monitor `mon` of the server on `node`, and a `NameDown`
/// of it already here.
fn unwatch(node: Atom, mon: Ref) {
    dist::demonitor_name(mon, node);
    crate::demonitor_flush_info(mon);
}

/// The node of a `{{Base, Node}, Reply}` message.
fn reply_node(t: &Term, base: &Term) -> Option<Atom> {
    let [tag, _] = t.as_tuple()? else {
        return None;
    };
    match tag.as_tuple()? {
        [b, Term::Atom(node)] if b == base => Some(*node),
        _ => None,
    }
}

/// One call to `{Name, Node}`; `None` when it did not answer in time or its
/// node went down.
pub(crate) async fn call(
    node: Atom,
    name: Atom,
    request: &Term,
    timeout: Duration,
) -> Option<Term> {
    let (mut replies, _) = multi_call(&[node], name, request, timeout).await;
    replies.pop().map(|(_, r)| r)
}
