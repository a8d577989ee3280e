//! Distribution: the Erlang distribution protocol, so that a beamish node
//! joins an Erlang/Elixir cluster and beamish nodes cluster with each other.
//!
//! This module is built piece by piece (see `docs/DISTRIBUTION_PLAN.md`):
//! atoms first, then terms and their external format, EPMD, the handshake,
//! connections and remote processes.
//!
//! - [`Term`]: an Erlang term, with Erlang's equality and order;
//! - [`etf`]: the external term format ([`Term::encode`], [`Term::decode`]);
//! - [`to_term`]/[`from_term`] (feature `serde`): Rust values to terms and back.

mod atom;
pub mod etf;
pub(crate) mod remote;
#[cfg(feature = "serde")]
pub mod serde;
mod term;

#[cfg(feature = "serde")]
pub use self::serde::{SerdeError, from_term, to_term};
pub use atom::{Atom, AtomError, MAX_ATOM_CHARS, MAX_ATOMS};
pub use etf::{DecodeError, DecodeLimits, EncodeError};
pub use remote::{ExtPort, ExtRef, MAX_REMOTE_PIDS, RemoteError, WirePid};
pub use term::{BigInt, Fun, OutOfRange, Term};
