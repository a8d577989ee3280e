//! EPMD, the Erlang Port Mapper Daemon: a client, and a server that a node
//! can embed.
//!
//! A distributed node listens on a port of its own choosing and tells the
//! EPMD of its host (TCP port 4369, or `ERL_EPMD_PORT`) its name and that
//! port. Peers ask the EPMD for the port before they connect. The protocol
//! is OTP's ("Distribution Protocol", EPMD part), see [`proto`].
//!
//! - [`register`] keeps its socket open for the node's whole life: EPMD
//!   drops the name when the socket closes. [`Registration::closed`] tells
//!   the node that the EPMD went away, so it can register again.
//! - [`port_please`] and [`names`] are one request each, on a connection of
//!   their own that EPMD closes after its reply.
//! - [`serve`] and [`start_embedded`] run an EPMD inside a beamish process,
//!   for hosts where none runs: a beamish node needs no Erlang install.
//!
//! Everything is async over tokio's sockets and runs inside beamish
//! processes (the runtime drives a tokio reactor); the server spawns one
//! beamish process per connection, never a tokio task. Every client
//! exchange has a timeout ([`TIMEOUT`]) and every bad input is an
//! [`EpmdError`], never a panic.

// `tests/dist_epmd.rs` compiles this module on its own and uses all of it
// (the NAMES client, the server's handle); the node uses the client's
// registration and look-up and the embedded server.
#![allow(
    dead_code,
    unused_imports,
    reason = "parts are used only by the EPMD tests"
)]

mod client;
pub(crate) mod proto;
mod server;

use std::fmt;
use std::io;
use std::net::SocketAddr;

pub(crate) use client::{
    DEFAULT_PORT, Registration, TIMEOUT, epmd_addr, names, port_please, register,
};
pub(crate) use proto::NodeAddr;
pub(crate) use server::{Embedded, REQUEST_TIMEOUT, serve, start_embedded};

/// What went wrong talking to an EPMD, or serving as one.
#[derive(Debug)]
pub(crate) enum EpmdError {
    /// Connecting, reading or writing failed.
    Io(io::Error),
    /// The other side did not finish its part of the exchange in time.
    Timeout,
    /// EPMD refused the registration with this result code: the name is
    /// taken (or EPMD found the request invalid).
    Refused(u8),
    /// A node name that is empty, longer than [`proto::MAX_NAME_CHARS`]
    /// characters, not UTF-8, or contains a NUL byte.
    BadName,
    /// The message ended before its fields did.
    Truncated,
    /// A message longer than the protocol allows or than we accept.
    TooLong,
    /// A reply tag or request code that has no business here.
    UnexpectedTag(u8),
    /// The fields do not add up (trailing bytes, a bad `names` line).
    Malformed(&'static str),
    /// A request that EPMD accepts only from this host (register, dump,
    /// kill, stop) came from another one.
    NotLocal,
    /// The address to serve on is taken: most likely an EPMD runs there.
    AddrInUse(SocketAddr),
    /// The serving process could not be spawned.
    Spawn(crate::Error),
}

impl fmt::Display for EpmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EpmdError::Io(e) => write!(f, "epmd: {e}"),
            EpmdError::Timeout => f.write_str("epmd: no answer in time"),
            EpmdError::Refused(code) => {
                write!(
                    f,
                    "epmd refused the registration (result {code}): name taken?"
                )
            }
            EpmdError::BadName => f.write_str("epmd: invalid node name"),
            EpmdError::Truncated => f.write_str("epmd: message cut short"),
            EpmdError::TooLong => f.write_str("epmd: message too long"),
            EpmdError::UnexpectedTag(tag) => write!(f, "epmd: unexpected message tag {tag}"),
            EpmdError::Malformed(why) => write!(f, "epmd: malformed message: {why}"),
            EpmdError::NotLocal => f.write_str("epmd: request allowed from this host only"),
            EpmdError::AddrInUse(addr) => write!(f, "epmd: {addr} is already in use"),
            EpmdError::Spawn(e) => write!(f, "epmd: could not start the server: {e}"),
        }
    }
}

impl std::error::Error for EpmdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EpmdError::Io(e) => Some(e),
            EpmdError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for EpmdError {
    /// An early end of stream is a cut-short message, not an IO failure.
    fn from(e: io::Error) -> EpmdError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => EpmdError::Truncated,
            _ => EpmdError::Io(e),
        }
    }
}
