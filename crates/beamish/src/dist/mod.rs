//! Distribution: the Erlang distribution protocol, so that a beamish node
//! joins an Erlang/Elixir cluster and beamish nodes cluster with each other.
//!
//! - [`Term`]: an Erlang term, with Erlang's equality and order;
//! - [`etf`]: the external term format ([`Term::encode`], [`Term::decode`]);
//! - [`to_term`]/[`from_term`] (feature `serde`): Rust values to terms and back;
//! - [`start`]: makes this OS process a node; then a remote [`Pid`](crate::Pid)
//!   is used like a local one (`send` a [`Term`], `link`, `monitor`,
//!   `exit`), and [`send_named`], [`nodes`], [`monitor_node`] and
//!   [`monitor_nodes`] work as in Erlang;
//! - [`connection_stats`]: bytes, messages and queues of every connection,
//!   for an observer.

mod atom;
mod connection;
mod control;
mod epmd;
pub mod etf;
mod flags;
mod frame;
pub mod gen_protocol;
mod handshake;
mod node;
pub(crate) mod remote;
pub mod rpc;
#[cfg(feature = "serde")]
pub mod serde;
mod stats;
mod term;
mod wire;

#[cfg(feature = "serde")]
pub use self::serde::{SerdeError, from_term, to_term};
pub use atom::{Atom, AtomError, MAX_ATOM_CHARS, MAX_ATOMS};
pub use etf::{DecodeError, DecodeLimits, EncodeError};
pub use flags::DistFlags;
pub use node::{
    NameDown, NodeConfig, NodeDown, NodeInfo, NodeUp, allow, allowed, connect_node, demonitor_name,
    disconnect_node, monitor_name, monitor_node, monitor_nodes, nodes, send_alias, send_named,
    set_allowed, start, this_node,
};
pub use remote::{ExtPort, ExtRef, MAX_REMOTE_PIDS, RemoteError, WirePid};
pub use stats::{ConnectionStats, connection_stats};
pub use term::{BigInt, Fun, OutOfRange, Term};
pub use wire::Wire;

pub(crate) use node::deliver_remote;

/// The pid signals come from when sent from outside any process: the
/// node's runtime's own pid.
pub(crate) fn runtime_pid() -> Option<crate::Pid> {
    node::state().map(|s| s.handle.runtime_pid())
}
