//! Distribution: the Erlang distribution protocol, so that a beamish node
//! joins an Erlang/Elixir cluster and beamish nodes cluster with each other.
//!
//! This module is built piece by piece (see `docs/DISTRIBUTION_PLAN.md`):
//! atoms first, then terms and their external format, EPMD, the handshake,
//! connections and remote processes.

mod atom;
mod epmd;
mod flags;
#[allow(dead_code)] // used by connections, which land next
mod frame;
mod handshake;
#[allow(dead_code)] // used by the codec and connections, which land next
pub(crate) mod remote;

pub use atom::{Atom, AtomError, MAX_ATOM_CHARS, MAX_ATOMS};
pub use flags::DistFlags;
pub use remote::{ExtPort, ExtRef, MAX_REMOTE_PIDS, RemoteError, WirePid};
