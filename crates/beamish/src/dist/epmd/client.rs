//! The EPMD client: register this node, and find other nodes' ports.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::EpmdError;
use super::proto::{self, NodeAddr, Request};

/// EPMD's well-known port.
pub(crate) const DEFAULT_PORT: u16 = 4369;

/// How long one exchange with EPMD may take, connecting included. EPMD
/// answers from memory at once; this only bounds a hung or absent one.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `PORT2_RESP` we read: far above any real one (a name is at
/// most 1020 bytes), far below what its 16-bit lengths could claim.
const MAX_PORT2_REPLY: usize = 16 * 1024;

/// The longest `NAMES_RESP` we read: some 30,000 names.
const MAX_NAMES_REPLY: usize = 1024 * 1024;

/// This node's registration with EPMD.
///
/// EPMD keeps the name for as long as [`stream`](Self::stream) stays open:
/// dropping the registration unregisters the node.
#[derive(Debug)]
pub(crate) struct Registration {
    /// The node's incarnation number that EPMD assigned: it goes into every
    /// pid, port and reference the node creates, so that those of an
    /// earlier run of a node with the same name are told apart.
    pub(crate) creation: u32,
    /// The connection that holds the registration.
    pub(crate) stream: TcpStream,
}

impl Registration {
    /// Resolves once EPMD has closed the connection (it stopped, or a
    /// `STOP_REQ` removed the name): the node is no longer registered and
    /// should register again, or become the EPMD itself.
    ///
    /// EPMD sends nothing after its reply to `ALIVE2_REQ`; should it
    /// anyway, the bytes are read and ignored.
    pub(crate) async fn closed(&mut self) {
        let mut buf = [0u8; 64];
        while let Ok(1..) = self.stream.read(&mut buf).await {}
    }
}

/// The EPMD of this host, as `erl` finds it: 127.0.0.1, port
/// `ERL_EPMD_PORT` or else [`DEFAULT_PORT`].
pub(crate) fn epmd_addr() -> SocketAddr {
    let port = epmd_port(std::env::var("ERL_EPMD_PORT").ok().as_deref());
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The port `ERL_EPMD_PORT` names, or [`DEFAULT_PORT`] when it is unset or
/// not a port number.
fn epmd_port(var: Option<&str>) -> u16 {
    var.and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// Registers the node `name` (without `@host`), which accepts distribution
/// connections on `port`, as a normal node of protocol version 6.
///
/// Fails with [`EpmdError::Refused`] when the name is taken. Accepts the
/// reply of an older EPMD (`ALIVE2_RESP`, 16-bit creation) too.
pub(crate) async fn register(
    epmd: SocketAddr,
    name: &str,
    port: u16,
) -> Result<Registration, EpmdError> {
    let request = Request::Alive2(NodeAddr::new(name, port)).encode()?;
    within(async {
        let mut stream = TcpStream::connect(epmd).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&request).await?;
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        let mut creation = [0u8; 4];
        let creation = &mut creation[..proto::alive2_reply_head(head)?];
        stream.read_exact(creation).await?;
        Ok(Registration {
            creation: proto::creation(creation),
            stream,
        })
    })
    .await
}

/// Where the node `name` (without `@host`) listens, by the EPMD at `epmd`;
/// `None` when that EPMD does not know the name.
pub(crate) async fn port_please(
    epmd: SocketAddr,
    name: &str,
) -> Result<Option<NodeAddr>, EpmdError> {
    let reply = exchange(
        epmd,
        &Request::PortPlease2(name.to_owned()),
        MAX_PORT2_REPLY,
    )
    .await?;
    proto::parse_port2_reply(&reply)
}

/// The names registered with the EPMD at `epmd`, and their ports.
pub(crate) async fn names(epmd: SocketAddr) -> Result<Vec<(String, u16)>, EpmdError> {
    let reply = exchange(epmd, &Request::Names, MAX_NAMES_REPLY).await?;
    proto::parse_names_reply(&reply)
}

/// Sends `request` on a connection of its own and reads the reply up to
/// EPMD's close, failing past `max` bytes.
async fn exchange(epmd: SocketAddr, request: &Request, max: usize) -> Result<Vec<u8>, EpmdError> {
    let request = request.encode()?;
    within(async {
        let mut stream = TcpStream::connect(epmd).await?;
        stream.write_all(&request).await?;
        let mut reply = Vec::new();
        // One byte past the limit tells a reply of exactly `max` from a
        // longer one.
        (&mut stream)
            .take(max as u64 + 1)
            .read_to_end(&mut reply)
            .await?;
        if reply.len() > max {
            return Err(EpmdError::TooLong);
        }
        Ok(reply)
    })
    .await
}

/// `exchange`, or [`EpmdError::Timeout`] after [`TIMEOUT`].
async fn within<T>(exchange: impl Future<Output = Result<T, EpmdError>>) -> Result<T, EpmdError> {
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or(Err(EpmdError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epmd_port_from_the_environment() {
        assert_eq!(epmd_port(None), 4369);
        assert_eq!(epmd_port(Some("4370")), 4370);
        assert_eq!(epmd_port(Some(" 4371\n")), 4371);
        assert_eq!(epmd_port(Some("")), 4369);
        assert_eq!(epmd_port(Some("70000")), 4369);
        assert_eq!(epmd_port(Some("epmd")), 4369);
    }
}
