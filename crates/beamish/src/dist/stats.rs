//! Per-connection statistics, for an observer: what Erlang shows with
//! `inet:getstat/1` on a distribution socket or `erlang:dist_get_stat/1`.
//!
//! Every connection process owns one [`ConnCounters`], shared through the
//! peers table. Only that process writes it, and only with plain relaxed
//! stores of totals it keeps in its own fields: once per read batch and
//! once per write batch, never a read-modify-write per message. Readers
//! ([`connection_stats`]) load the fields one by one, so a snapshot is not
//! taken at one instant: two fields may be a batch apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::Atom;
use super::node::state;
use crate::Pid;

/// A snapshot of one live distribution connection, from
/// [`connection_stats`].
///
/// Counts start when the handshake is done (its bytes are not counted) and
/// belong to this connection: a reconnection to the same node starts again
/// from zero. They are published by the connection process once per batch
/// of reads or writes, so they may lag behind by one batch, and two fields
/// of one snapshot may be a batch apart.
///
/// The items local processes queued for the peer but the connection has not
/// encoded yet are the messages in the connection process's mailbox: they
/// are not counted here (the mailbox keeps no count that another thread can
/// read cheaply), but [`process_info`](crate::process_info) of
/// [`pid`](Self::pid) gives their number as its `message_queue_len`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// The peer node's name.
    pub node: Atom,
    /// The peer's creation (its incarnation), from the handshake.
    pub creation: u32,
    /// The connection process: the only reader and writer of the socket.
    pub pid: Pid,
    /// How long the connection has been up (since its handshake ended).
    pub connected_for: Duration,
    /// Bytes read from the socket, ticks and framing included.
    pub bytes_in: u64,
    /// Bytes written to the socket, ticks and framing included.
    pub bytes_out: u64,
    /// Distribution messages received: control messages, those with a
    /// payload (message sends) included, one per message however many
    /// fragments it came in. Ticks are not messages.
    pub messages_in: u64,
    /// Distribution messages encoded for the peer, counted as
    /// [`messages_in`](Self::messages_in); those still in
    /// [`out_queue_bytes`](Self::out_queue_bytes) included.
    pub messages_out: u64,
    /// Ticks (keep-alives) received.
    pub ticks_in: u64,
    /// Ticks sent.
    pub ticks_out: u64,
    /// Bytes encoded but not yet written to the socket (because the socket
    /// did not take them yet).
    pub out_queue_bytes: u64,
}

/// Every live connection of this node (those whose handshake is done), by
/// node name; empty if the node is not started. Callable from any thread,
/// inside a process or not: it reads shared counters and waits for no
/// connection.
///
/// ```
/// // On a node that is not distributed there is no connection.
/// assert!(beamish::dist::connection_stats().is_empty());
/// ```
pub fn connection_stats() -> Vec<ConnectionStats> {
    let Some(st) = state() else {
        return Vec::new();
    };
    // Only the `Arc`s are taken under the lock.
    let counters: Vec<Arc<ConnCounters>> = st
        .peers
        .read()
        .values()
        .filter(|p| p.up)
        .filter_map(|p| p.counters.clone())
        .collect();
    let mut v: Vec<ConnectionStats> = counters.iter().map(|c| c.snapshot()).collect();
    v.sort_by(|a, b| a.node.as_str().cmp(b.node.as_str()));
    v
}

/// The counters of one connection: written by its connection process only
/// (relaxed stores of totals, see [`Tally`]), read by [`connection_stats`].
pub(crate) struct ConnCounters {
    node: Atom,
    creation: u32,
    pid: Pid,
    since: Instant,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    ticks_in: AtomicU64,
    ticks_out: AtomicU64,
    out_queue_bytes: AtomicU64,
}

/// The running totals a connection process keeps in its own fields (plain
/// adds on the hot path) and publishes to its [`ConnCounters`] per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) ticks_in: u64,
    pub(crate) ticks_out: u64,
}

impl ConnCounters {
    /// The counters of the connection `pid` runs to `node`, up from now.
    pub(crate) fn new(node: Atom, creation: u32, pid: Pid) -> Arc<ConnCounters> {
        Arc::new(ConnCounters {
            node,
            creation,
            pid,
            since: Instant::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            ticks_in: AtomicU64::new(0),
            ticks_out: AtomicU64::new(0),
            out_queue_bytes: AtomicU64::new(0),
        })
    }

    /// Publishes the input side (after a read batch).
    #[inline]
    pub(crate) fn publish_in(&self, t: &Tally) {
        self.bytes_in.store(t.bytes_in, Relaxed);
        self.messages_in.store(t.messages_in, Relaxed);
        self.ticks_in.store(t.ticks_in, Relaxed);
    }

    /// Publishes the output side (after a write batch), with the bytes
    /// still waiting for the socket.
    #[inline]
    pub(crate) fn publish_out(&self, t: &Tally, queued: usize) {
        self.bytes_out.store(t.bytes_out, Relaxed);
        self.messages_out.store(t.messages_out, Relaxed);
        self.ticks_out.store(t.ticks_out, Relaxed);
        self.out_queue_bytes.store(queued as u64, Relaxed);
    }

    fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            node: self.node,
            creation: self.creation,
            pid: self.pid,
            connected_for: self.since.elapsed(),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            ticks_in: self.ticks_in.load(Relaxed),
            ticks_out: self.ticks_out.load(Relaxed),
            out_queue_bytes: self.out_queue_bytes.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_show_what_was_published() {
        let node = Atom::new("peer@127.0.0.1").unwrap();
        let pid = Pid::new(0, 7, 1);
        let c = ConnCounters::new(node, 42, pid);
        let s = c.snapshot();
        assert_eq!((s.node, s.creation, s.pid), (node, 42, pid));
        assert_eq!(
            (s.bytes_in, s.bytes_out, s.messages_in, s.messages_out),
            (0, 0, 0, 0)
        );

        let mut t = Tally {
            bytes_in: 100,
            messages_in: 3,
            ticks_in: 1,
            ..Tally::default()
        };
        c.publish_in(&t);
        // Unpublished totals do not show.
        t.bytes_out = 60;
        t.messages_out = 2;
        let s = c.snapshot();
        assert_eq!((s.bytes_in, s.messages_in, s.ticks_in), (100, 3, 1));
        assert_eq!((s.bytes_out, s.messages_out, s.out_queue_bytes), (0, 0, 0));

        t.ticks_out = 4;
        c.publish_out(&t, 9);
        let s = c.snapshot();
        assert_eq!(
            (s.bytes_out, s.messages_out, s.ticks_out, s.out_queue_bytes),
            (60, 2, 4, 9)
        );
        assert!(s.connected_for <= c.since.elapsed());
    }

    #[test]
    fn no_connections_when_not_distributed() {
        // The unit test binary never starts a node.
        assert!(connection_stats().is_empty());
    }
}
