//! The connection setup handshake, protocol version 6 (OTP 23+), both sides.
//!
//! Every handshake message is a frame with a 2-byte big-endian length. The
//! initiator A and the acceptor B exchange (see OTP's `dist_util.erl`):
//!
//! ```text
//! A: 'N' flags:u64 creation:u32 nlen:u16 name        send_name
//! B: 's' status                                      ok | ok_simultaneous | nok | not_allowed | alive
//! A: 's' true|false                                  only after alive
//! B: 'N' flags:u64 challenge:u32 creation:u32 nlen:u16 name
//! A: 'r' challenge:u32 digest:16                     digest = MD5(cookie ++ decimal(B's challenge))
//! B: 'a' digest:16                                   MD5(cookie ++ decimal(A's challenge))
//! ```
//!
//! Each side proves it knows the cookie without sending it. B checks A's
//! digest before answering, so a peer with the wrong cookie learns nothing:
//! B closes without an `'a'`.
//!
//! Frames are read exactly, never past the last one, so the caller can go on
//! with the 4-byte framing of the connection on the same stream. On any
//! error the caller drops the stream: that is the "close" of the protocol.

// The connection layer, the next step of the plan, is the caller.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::BufMut;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::atom::MAX_ATOM_CHARS;
use super::flags::DistFlags;

/// How long a whole handshake may take, as OTP's `net_setuptime` (7 s).
pub(crate) const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(7);

/// Who we are in a handshake.
#[derive(Clone)]
pub(crate) struct HandshakeConfig {
    /// Our full node name, `name@host`.
    pub name: String,
    /// The shared secret.
    pub cookie: String,
    /// Our creation (from EPMD), which the peer puts in our pids and refs.
    pub creation: u32,
    /// The flags we advertise; they should contain [`DistFlags::MANDATORY`].
    pub flags: DistFlags,
    /// The limit on the whole handshake.
    pub timeout: Duration,
}

impl HandshakeConfig {
    /// A config with our usual flags ([`DistFlags::OURS`]) and timeout.
    pub fn new(name: impl Into<String>, cookie: impl Into<String>, creation: u32) -> Self {
        HandshakeConfig {
            name: name.into(),
            cookie: cookie.into(),
            creation,
            flags: DistFlags::OURS,
            timeout: DEFAULT_SETUP_TIMEOUT,
        }
    }
}

/// Leaves the cookie out, so that logging a config does not leak it.
impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("name", &self.name)
            .field("cookie", &"<hidden>")
            .field("creation", &self.creation)
            .field("flags", &self.flags)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The other node, once the handshake succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Its full node name.
    pub name: String,
    /// The flags the connection uses: ours AND the peer's, both normalized.
    pub flags: DistFlags,
    /// Its creation.
    pub creation: u32,
}

/// The acceptor's answer to a connection attempt, sent as the `'s'` status.
///
/// The caller decides it from its table of connections, which is where the
/// "one connection per pair of nodes" rule lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Go on.
    Ok,
    /// Go on; we had an attempt of our own to this node and drop it (the
    /// peer's name is greater than ours).
    OkSimultaneous,
    /// Stop: we have an attempt of our own to this node and it wins (our
    /// name is greater).
    Nok,
    /// Stop: the node may not connect.
    NotAllowed,
    /// We already have a connection to this node: the peer answers whether
    /// it is stale (`true`, we go on and the caller must replace the old
    /// connection with this one) or not (`false`, we stop).
    Alive,
}

impl Status {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Status::Ok => b"ok",
            Status::OkSimultaneous => b"ok_simultaneous",
            Status::Nok => b"nok",
            Status::NotAllowed => b"not_allowed",
            Status::Alive => b"alive",
        }
    }
}

/// Why a handshake failed. After any of these the stream must be dropped.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// Reading or writing the stream failed; `UnexpectedEof` when the peer
    /// closed it (as an acceptor does on a wrong cookie).
    Io(io::Error),
    /// The handshake took longer than the configured timeout.
    Timeout,
    /// The peer's digest does not match our cookie.
    WrongCookie,
    /// The acceptor refused us (`not_allowed`), or we refused it.
    NotAllowed,
    /// The acceptor has its own attempt to us, which wins (`nok`).
    Nok,
    /// The nodes already have a live connection (`alive`, then `false`).
    Alive,
    /// The peer lacks these mandatory flags.
    MissingFlags(DistFlags),
    /// A message that does not follow the protocol.
    Protocol(String),
    /// The acceptor is not the node we meant to reach.
    NameMismatch {
        /// The node we dialled.
        expected: String,
        /// The name it gave.
        got: String,
    },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "handshake i/o error: {e}"),
            HandshakeError::Timeout => f.write_str("handshake timed out"),
            HandshakeError::WrongCookie => f.write_str("wrong cookie"),
            HandshakeError::NotAllowed => f.write_str("connection not allowed"),
            HandshakeError::Nok => f.write_str("simultaneous connect: the peer's attempt wins"),
            HandshakeError::Alive => f.write_str("the nodes are already connected"),
            HandshakeError::MissingFlags(m) => write!(f, "peer lacks mandatory flags {m:?}"),
            HandshakeError::Protocol(what) => write!(f, "handshake protocol error: {what}"),
            HandshakeError::NameMismatch { expected, got } => {
                write!(f, "dialled {expected} but reached {got}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn protocol(what: impl Into<String>) -> HandshakeError {
    HandshakeError::Protocol(what.into())
}

/// Connects as the initiator: sends our name and proves our cookie.
///
/// `peer_expected` is the node we dialled; a peer giving another name is an
/// error. `still_pending` answers an `alive` status: `true` if this attempt
/// is still wanted (our old connection to the peer is gone, the usual case),
/// `false` to give up because we are connected after all.
pub(crate) async fn initiate<S>(
    stream: &mut S,
    cfg: &HandshakeConfig,
    peer_expected: Option<&str>,
    still_pending: impl FnOnce() -> bool,
) -> Result<Peer, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let steps = initiate_steps(stream, cfg, peer_expected, still_pending);
    tokio::time::timeout(cfg.timeout, steps)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn initiate_steps<S>(
    stream: &mut S,
    cfg: &HandshakeConfig,
    peer_expected: Option<&str>,
    still_pending: impl FnOnce() -> bool,
) -> Result<Peer, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut m = Vec::with_capacity(17 + cfg.name.len());
    m.put_u8(b'N');
    m.put_u64(cfg.flags.bits());
    m.put_u32(cfg.creation);
    put_name(&mut m, &cfg.name)?;
    send(stream, &m).await?;

    let mut buf = Vec::new();
    recv(stream, &mut buf).await?;
    match buf.as_slice() {
        b"sok" | b"sok_simultaneous" => {}
        b"snok" => return Err(HandshakeError::Nok),
        b"snot_allowed" => return Err(HandshakeError::NotAllowed),
        b"salive" => {
            let go_on = still_pending();
            send(stream, if go_on { b"strue" } else { b"sfalse" }).await?;
            if !go_on {
                return Err(HandshakeError::Alive);
            }
        }
        other => return Err(protocol(format!("unexpected status {}", show(other)))),
    }

    recv(stream, &mut buf).await?;
    let mut r = Reader(&buf);
    match r.u8("challenge")? {
        b'N' => {}
        // OTP 25+ answers a version 6 'N' with an 'N'; an old 'n' challenge
        // would come from a node we cannot talk to anyway.
        b'n' => return Err(protocol("old version 5 challenge ('n')")),
        tag => return Err(protocol(format!("expected a challenge, got tag {tag}"))),
    }
    let peer_flags = DistFlags::from_bits(r.u64("challenge")?).normalize();
    let challenge = r.u32("challenge")?;
    let creation = r.u32("challenge")?;
    let name = r.name("challenge")?;
    // Bytes after the name are allowed and ignored, as the protocol says.
    if let Some(expected) = peer_expected
        && expected != name
    {
        return Err(HandshakeError::NameMismatch {
            expected: expected.to_owned(),
            got: name,
        });
    }
    let missing = DistFlags::MANDATORY.difference(peer_flags);
    if !missing.is_empty() {
        tracing::warn!(peer = %name, ?missing, "connection aborted: the peer lacks mandatory flags");
        return Err(HandshakeError::MissingFlags(missing));
    }

    let mine = random_challenge()?;
    let mut m = Vec::with_capacity(21);
    m.put_u8(b'r');
    m.put_u32(mine);
    m.put_slice(&digest(&cfg.cookie, challenge));
    send(stream, &m).await?;

    recv(stream, &mut buf).await?;
    let mut r = Reader(&buf);
    if r.u8("challenge ack")? != b'a' {
        return Err(protocol("expected a challenge ack"));
    }
    let got = r.digest("challenge ack")?;
    r.end("challenge ack")?;
    if !same_digest(&got, &digest(&cfg.cookie, mine)) {
        tracing::warn!(peer = %name, "wrong cookie: the challenge ack from {name} does not match ours");
        return Err(HandshakeError::WrongCookie);
    }
    Ok(Peer {
        name,
        flags: cfg.flags.normalize() & peer_flags,
        creation,
    })
}

/// Accepts a connection: reads the peer's name, asks `decide` what to answer
/// and checks the peer's cookie before proving ours.
///
/// Also accepts the old version 5 name (`'n'`) that OTP 23 and 24 send when
/// they do not know our version, followed by its complement (`'c'`), as
/// `dist_util` does; peers without `HANDSHAKE_23` get `not_allowed`.
pub(crate) async fn accept<S>(
    stream: &mut S,
    cfg: &HandshakeConfig,
    decide: impl FnOnce(&str) -> Status,
) -> Result<Peer, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(cfg.timeout, accept_steps(stream, cfg, decide))
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn accept_steps<S>(
    stream: &mut S,
    cfg: &HandshakeConfig,
    decide: impl FnOnce(&str) -> Status,
) -> Result<Peer, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    recv(stream, &mut buf).await?;
    let mut r = Reader(&buf);
    let (flags, creation, name) = match r.u8("name")? {
        b'N' => {
            let flags = r.u64("name")?;
            let creation = r.u32("name")?;
            (flags, Some(creation), r.name("name")?)
        }
        b'n' => {
            let _version = r.u16("name")?;
            let flags = r.u32("name")?;
            let name = node_name(r.rest())?;
            (u64::from(flags), None, name)
        }
        tag => return Err(protocol(format!("expected a name, got tag {tag}"))),
    };
    let mut peer_flags = DistFlags::from_bits(flags).normalize();
    if peer_flags.contains(DistFlags::NAME_ME) {
        return Err(protocol("dynamic node names (NAME_ME) are not supported"));
    }
    // An old name carries only the low 32 flag bits: check those now, the
    // rest after the complement.
    let mask = if creation.is_some() {
        !0
    } else {
        u64::from(u32::MAX)
    };
    refuse_missing(stream, &name, peer_flags, mask).await?;

    let status = decide(&name);
    let mut m = Vec::with_capacity(16);
    m.put_u8(b's');
    m.put_slice(status.as_bytes());
    send(stream, &m).await?;
    match status {
        Status::Ok | Status::OkSimultaneous => {}
        Status::Nok => return Err(HandshakeError::Nok),
        Status::NotAllowed => return Err(HandshakeError::NotAllowed),
        Status::Alive => {
            recv(stream, &mut buf).await?;
            match buf.as_slice() {
                b"strue" => {}
                b"sfalse" => return Err(HandshakeError::Alive),
                other => return Err(protocol(format!("unexpected alive answer {}", show(other)))),
            }
        }
    }

    let mine = random_challenge()?;
    let mut m = Vec::with_capacity(21 + cfg.name.len());
    m.put_u8(b'N');
    m.put_u64(cfg.flags.bits());
    m.put_u32(mine);
    m.put_u32(cfg.creation);
    put_name(&mut m, &cfg.name)?;
    send(stream, &m).await?;

    let creation = match creation {
        Some(c) => c,
        None => {
            recv(stream, &mut buf).await?;
            let mut r = Reader(&buf);
            if r.u8("complement")? != b'c' {
                return Err(protocol("expected a complement"));
            }
            let high = r.u32("complement")?;
            let creation = r.u32("complement")?;
            r.end("complement")?;
            peer_flags |= DistFlags::from_bits(u64::from(high) << 32);
            refuse_missing(stream, &name, peer_flags, !0).await?;
            creation
        }
    };

    recv(stream, &mut buf).await?;
    let mut r = Reader(&buf);
    if r.u8("challenge reply")? != b'r' {
        return Err(protocol("expected a challenge reply"));
    }
    let theirs = r.u32("challenge reply")?;
    let got = r.digest("challenge reply")?;
    r.end("challenge reply")?;
    if !same_digest(&got, &digest(&cfg.cookie, mine)) {
        // No 'a': a peer without the cookie learns nothing about it.
        tracing::warn!(peer = %name, "wrong cookie from {name}: closing without a challenge ack");
        return Err(HandshakeError::WrongCookie);
    }

    let mut m = Vec::with_capacity(17);
    m.put_u8(b'a');
    m.put_slice(&digest(&cfg.cookie, theirs));
    send(stream, &m).await?;
    Ok(Peer {
        name,
        flags: cfg.flags.normalize() & peer_flags,
        creation,
    })
}

/// Answers `not_allowed` to a peer that lacks mandatory flags (among the
/// bits of `mask`), as `dist_util:check_dflags` does.
async fn refuse_missing<S>(
    stream: &mut S,
    name: &str,
    flags: DistFlags,
    mask: u64,
) -> Result<(), HandshakeError>
where
    S: AsyncWrite + Unpin,
{
    let missing = (DistFlags::MANDATORY & DistFlags::from_bits(mask)).difference(flags);
    if missing.is_empty() {
        return Ok(());
    }
    tracing::warn!(peer = %name, ?missing, "connection refused: the peer lacks mandatory flags");
    send(stream, b"snot_allowed").await?;
    Err(HandshakeError::MissingFlags(missing))
}

/// MD5 of the cookie followed by the challenge in decimal, as
/// `dist_util:gen_digest`.
fn digest(cookie: &str, challenge: u32) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(cookie.as_bytes());
    md5.update(challenge.to_string().as_bytes());
    md5.finalize().into()
}

/// Compares digests in constant time, so timing tells an attacker nothing
/// about how much of a forged digest was right.
fn same_digest(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A challenge from the kernel's random source: a guessable challenge would
/// let a recorded digest be replayed.
fn random_challenge() -> Result<u32, HandshakeError> {
    let mut buf = [0u8; 4];
    loop {
        // SAFETY: `buf` is a live, writable buffer of exactly `buf.len()`
        // bytes for the whole call, and getrandom writes at most that many.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 4 {
            return Ok(u32::from_ne_bytes(buf));
        }
        let e = io::Error::last_os_error();
        if n < 0 && e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(HandshakeError::Io(if n < 0 {
            e
        } else {
            io::Error::other("getrandom returned too few bytes")
        }));
    }
}

/// Appends `nlen:u16 name`.
fn put_name(m: &mut Vec<u8>, name: &str) -> Result<(), HandshakeError> {
    let len = u16::try_from(name.len()).map_err(|_| protocol("our node name is too long"))?;
    m.put_u16(len);
    m.put_slice(name.as_bytes());
    Ok(())
}

/// Writes one frame: a 2-byte length, then `msg`.
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, msg: &[u8]) -> Result<(), HandshakeError> {
    let len = u16::try_from(msg.len()).map_err(|_| protocol("message too long for a frame"))?;
    let mut frame = Vec::with_capacity(2 + msg.len());
    frame.put_u16(len);
    frame.put_slice(msg);
    stream.write_all(&frame).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one frame into `buf` (at most 65535 bytes, by the framing).
async fn recv<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    let len = stream.read_u16().await?;
    if len == 0 {
        return Err(protocol("empty message"));
    }
    buf.clear();
    buf.resize(usize::from(len), 0);
    stream.read_exact(buf).await?;
    Ok(())
}

/// A full node name, `name@host`, as `dist_util:is_node_name` accepts it; it
/// becomes an atom, so it is capped like one.
fn node_name(bytes: &[u8]) -> Result<String, HandshakeError> {
    let name = std::str::from_utf8(bytes).map_err(|_| protocol("node name is not UTF-8"))?;
    let valid = name
        .split_once('@')
        .is_some_and(|(n, host)| !n.is_empty() && !host.is_empty() && !host.contains('@'));
    if !valid || name.chars().count() > MAX_ATOM_CHARS {
        return Err(protocol(format!("invalid node name {}", show(bytes))));
    }
    Ok(name.to_owned())
}

/// Untrusted bytes for an error message: escaped and cut short.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let cut = &bytes[..bytes.len().min(MAX)];
    let dots = if bytes.len() > MAX { "..." } else { "" };
    format!("\"{}{dots}\"", cut.escape_ascii())
}

/// Big-endian fields off the front of a message; a short message is a
/// protocol error naming `what` it was.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], HandshakeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| protocol(format!("{what} message too short")))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, HandshakeError> {
        Ok(self.take::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, HandshakeError> {
        self.take(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, HandshakeError> {
        self.take(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, HandshakeError> {
        self.take(what).map(u64::from_be_bytes)
    }

    fn digest(&mut self, what: &str) -> Result<[u8; 16], HandshakeError> {
        self.take(what)
    }

    /// `nlen:u16 name`, a valid node name.
    fn name(&mut self, what: &str) -> Result<String, HandshakeError> {
        let len = usize::from(self.u16(what)?);
        if self.0.len() < len {
            return Err(protocol(format!("{what} message too short for its name")));
        }
        let (name, rest) = self.0.split_at(len);
        self.0 = rest;
        node_name(name)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    /// Fixed-size messages must end here.
    fn end(&self, what: &str) -> Result<(), HandshakeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(protocol(format!("{what} message too long")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{DuplexStream, duplex};

    const A: &str = "a@127.0.0.1";
    const B: &str = "b@127.0.0.1";

    fn cfg(name: &str, cookie: &str, creation: u32) -> HandshakeConfig {
        HandshakeConfig::new(name, cookie, creation)
    }

    fn name_msg(flags: DistFlags, creation: u32, name: &str) -> Vec<u8> {
        let mut m = vec![b'N'];
        m.put_u64(flags.bits());
        m.put_u32(creation);
        m.put_u16(name.len() as u16);
        m.put_slice(name.as_bytes());
        m
    }

    fn old_name_msg(flags: DistFlags, name: &str) -> Vec<u8> {
        let mut m = vec![b'n', 0, 5];
        m.put_u32(flags.bits() as u32);
        m.put_slice(name.as_bytes());
        m
    }

    fn challenge_msg(flags: DistFlags, challenge: u32, creation: u32, name: &str) -> Vec<u8> {
        let mut m = vec![b'N'];
        m.put_u64(flags.bits());
        m.put_u32(challenge);
        m.put_u32(creation);
        m.put_u16(name.len() as u16);
        m.put_slice(name.as_bytes());
        m
    }

    fn reply_msg(challenge: u32, digest: [u8; 16]) -> Vec<u8> {
        let mut m = vec![b'r'];
        m.put_u32(challenge);
        m.put_slice(&digest);
        m
    }

    async fn read(s: &mut DuplexStream) -> Vec<u8> {
        let mut buf = Vec::new();
        recv(s, &mut buf).await.unwrap();
        buf
    }

    /// Runs both sides over one pipe. Each side drops its end when done, so
    /// the other reads EOF as from a closed socket.
    async fn run(
        a: &HandshakeConfig,
        b: &HandshakeConfig,
        status: Status,
        still_pending: bool,
    ) -> (Result<Peer, HandshakeError>, Result<Peer, HandshakeError>) {
        let (mut x, mut y) = duplex(4096);
        tokio::join!(
            async move { initiate(&mut x, a, Some(B), || still_pending).await },
            async move {
                accept(&mut y, b, |name| {
                    assert_eq!(name, A);
                    status
                })
                .await
            },
        )
    }

    #[test]
    fn digest_matches_md5sum() {
        // printf 'cookie12345' | md5sum
        let hex: String = digest("cookie", 12345)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "5563360ee47f359fc1cb107e01052d08");
        assert!(same_digest(&digest("c", 1), &digest("c", 1)));
        assert!(!same_digest(&digest("c", 1), &digest("c", 2)));
    }

    #[test]
    fn config_debug_hides_the_cookie() {
        let text = format!("{:?}", cfg(A, "sekrit", 1));
        assert!(!text.contains("sekrit"), "{text}");
        assert!(text.contains(A));
    }

    #[tokio::test]
    async fn both_sides_succeed_and_see_each_other() {
        let (a, b) = (cfg(A, "secret", 11), cfg(B, "secret", 22));
        let (x, y) = duplex(4096);
        let ((pa, mut x), (pb, mut y)) = tokio::join!(
            async move {
                let mut x = x;
                (initiate(&mut x, &a, Some(B), || true).await, x)
            },
            async move {
                let mut y = y;
                (accept(&mut y, &b, |_| Status::Ok).await, y)
            },
        );
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        assert_eq!(
            pa,
            Peer {
                name: B.into(),
                flags: DistFlags::OURS,
                creation: 22
            }
        );
        assert_eq!(
            pb,
            Peer {
                name: A.into(),
                flags: DistFlags::OURS,
                creation: 11
            }
        );
        // Nothing was read past the handshake: the connection goes on.
        x.write_all(&[0, 0, 0, 0]).await.unwrap();
        assert_eq!(y.read_u32().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_peer_with_only_the_digest_bit_is_accepted() {
        let mut a = cfg(A, "c", 1);
        a.flags = DistFlags::PUBLISHED | DistFlags::MANDATORY_25_DIGEST | DistFlags::MANDATORY_26;
        let (pa, pb) = run(&a, &cfg(B, "c", 2), Status::Ok, true).await;
        let want = DistFlags::PUBLISHED | DistFlags::MANDATORY | DistFlags::MANDATORY_25_DIGEST;
        assert_eq!(pa.unwrap().flags, want);
        assert_eq!(pb.unwrap().flags, want);
    }

    #[tokio::test]
    async fn wrong_cookie_both_sides() {
        let (pa, pb) = run(&cfg(A, "one", 1), &cfg(B, "two", 2), Status::Ok, true).await;
        assert!(matches!(pb, Err(HandshakeError::WrongCookie)), "{pb:?}");
        // The acceptor closed without an 'a'.
        assert!(
            matches!(&pa, Err(HandshakeError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{pa:?}"
        );
    }

    #[tokio::test]
    async fn acceptor_sends_no_ack_on_a_wrong_digest() {
        let b = cfg(B, "right", 2);
        let (mut x, mut y) = duplex(4096);
        let (res, rest) = tokio::join!(
            async move { accept(&mut y, &b, |_| Status::Ok).await },
            async move {
                send(&mut x, &name_msg(DistFlags::OURS, 1, A))
                    .await
                    .unwrap();
                assert_eq!(read(&mut x).await, b"sok");
                let ch = read(&mut x).await;
                assert_eq!(ch[0], b'N');
                let theirs = u32::from_be_bytes(ch[9..13].try_into().unwrap());
                send(&mut x, &reply_msg(7, digest("wrong", theirs)))
                    .await
                    .unwrap();
                let mut rest = Vec::new();
                x.read_to_end(&mut rest).await.unwrap();
                rest
            },
        );
        assert!(matches!(res, Err(HandshakeError::WrongCookie)), "{res:?}");
        assert!(rest.is_empty(), "sent after a wrong digest: {rest:?}");
    }

    /// An acceptor that answers the reply with `ack`, whatever it is.
    async fn fake_acceptor(mut y: DuplexStream, ack: Vec<u8>) {
        assert_eq!(read(&mut y).await[0], b'N');
        send(&mut y, b"sok").await.unwrap();
        send(&mut y, &challenge_msg(DistFlags::OURS, 99, 3, B))
            .await
            .unwrap();
        let reply = read(&mut y).await;
        assert_eq!(reply.len(), 21);
        assert_eq!(reply[5..], digest("c", 99));
        send(&mut y, &ack).await.unwrap();
    }

    #[tokio::test]
    async fn initiator_checks_the_ack() {
        let a = cfg(A, "c", 1);
        for (ack, want_cookie) in [
            ([&b"a"[..], &[0; 16]].concat(), true),
            ([&b"a"[..], &[0; 15]].concat(), false),
            ([&b"a"[..], &[0; 17]].concat(), false),
            ([&b"x"[..], &[0; 16]].concat(), false),
        ] {
            let (mut x, y) = duplex(4096);
            let (res, ()) = tokio::join!(
                initiate(&mut x, &a, Some(B), || true),
                fake_acceptor(y, ack)
            );
            match res {
                Err(HandshakeError::WrongCookie) => assert!(want_cookie),
                Err(HandshakeError::Protocol(_)) => assert!(!want_cookie),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn initiator_checks_the_name() {
        let (mut x, y) = duplex(4096);
        let a = cfg(A, "c", 1);
        // The fake acceptor waits for a reply that never comes.
        let res = tokio::select! {
            res = initiate(&mut x, &a, Some("c@127.0.0.1"), || true) => res,
            () = fake_acceptor(y, vec![]) => unreachable!(),
        };
        assert!(
            matches!(&res, Err(HandshakeError::NameMismatch { expected, got }) if expected == "c@127.0.0.1" && got == B),
            "{res:?}"
        );
    }

    #[tokio::test]
    async fn missing_mandatory_flags_are_not_allowed() {
        let mut a = cfg(A, "c", 1);
        a.flags = DistFlags::OURS.difference(DistFlags::V4_NC);
        let (pa, pb) = run(&a, &cfg(B, "c", 2), Status::Ok, true).await;
        assert!(matches!(pa, Err(HandshakeError::NotAllowed)), "{pa:?}");
        assert!(
            matches!(pb, Err(HandshakeError::MissingFlags(m)) if m == DistFlags::V4_NC),
            "{pb:?}"
        );
    }

    #[tokio::test]
    async fn initiator_aborts_on_missing_flags() {
        let mut b = cfg(B, "c", 2);
        b.flags = DistFlags::OURS.difference(DistFlags::UNLINK_ID);
        let (pa, pb) = run(&cfg(A, "c", 1), &b, Status::Ok, true).await;
        assert!(
            matches!(pa, Err(HandshakeError::MissingFlags(m)) if m == DistFlags::UNLINK_ID),
            "{pa:?}"
        );
        assert!(matches!(pb, Err(HandshakeError::Io(_))), "{pb:?}");
    }

    #[tokio::test]
    async fn statuses() {
        let (a, b) = (cfg(A, "c", 1), cfg(B, "c", 2));
        let (pa, pb) = run(&a, &b, Status::OkSimultaneous, true).await;
        assert_eq!(pa.unwrap().name, B);
        assert_eq!(pb.unwrap().name, A);

        let (pa, pb) = run(&a, &b, Status::Nok, true).await;
        assert!(matches!(pa, Err(HandshakeError::Nok)), "{pa:?}");
        assert!(matches!(pb, Err(HandshakeError::Nok)), "{pb:?}");

        let (pa, pb) = run(&a, &b, Status::NotAllowed, true).await;
        assert!(matches!(pa, Err(HandshakeError::NotAllowed)), "{pa:?}");
        assert!(matches!(pb, Err(HandshakeError::NotAllowed)), "{pb:?}");

        // alive, and the initiator's old connection is gone: go on.
        let (pa, pb) = run(&a, &b, Status::Alive, true).await;
        assert_eq!(pa.unwrap().creation, 2);
        assert_eq!(pb.unwrap().creation, 1);

        // alive, and the initiator is connected after all: stop.
        let (pa, pb) = run(&a, &b, Status::Alive, false).await;
        assert!(matches!(pa, Err(HandshakeError::Alive)), "{pa:?}");
        assert!(matches!(pb, Err(HandshakeError::Alive)), "{pb:?}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let mut a = cfg(A, "c", 1);
        a.timeout = Duration::from_millis(50);
        let (mut x, _y) = duplex(4096);
        let res = initiate(&mut x, &a, None, || true).await;
        assert!(matches!(res, Err(HandshakeError::Timeout)), "{res:?}");
        let res = accept(&mut x, &a, |_| Status::Ok).await;
        assert!(matches!(res, Err(HandshakeError::Timeout)), "{res:?}");
    }

    /// Feeds `input` (raw bytes, framing included) to the acceptor.
    async fn accept_raw(input: &[u8]) -> Result<Peer, HandshakeError> {
        let (mut x, mut y) = duplex(1 << 16);
        x.write_all(input).await.unwrap();
        x.shutdown().await.unwrap();
        let mut b = cfg(B, "c", 2);
        b.timeout = Duration::from_secs(1);
        accept(&mut y, &b, |_| Status::Ok).await
    }

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            out.put_u16(m.len() as u16);
            out.put_slice(m);
        }
        out
    }

    #[tokio::test]
    async fn acceptor_rejects_bad_names() {
        let ours = DistFlags::OURS;
        let bad: &[&[u8]] = &[
            b"",
            b"X",
            b"N",
            &name_msg(ours, 1, A)[..12],
            &name_msg(ours, 1, A)[..20],
            &name_msg(ours, 1, "nohost"),
            &name_msg(ours, 1, "@host"),
            &name_msg(ours, 1, "a@"),
            &name_msg(ours, 1, "a@b@c"),
            &[&name_msg(ours, 1, "")[..], b"\xff@x"].concat(),
            &name_msg(ours, 1, &format!("a@{}", "h".repeat(300))),
            &name_msg(ours | DistFlags::NAME_ME, 1, A),
            b"n\x00",
        ];
        for msg in bad {
            let res = accept_raw(&framed(&[msg])).await;
            assert!(
                matches!(res, Err(HandshakeError::Protocol(_))),
                "{msg:?}: {res:?}"
            );
        }
        // A frame cut short by EOF.
        let res = accept_raw(&[0, 10, b'N', 0, 0]).await;
        assert!(
            matches!(&res, Err(HandshakeError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{res:?}"
        );
        // Bytes after the name are ignored, as the protocol says; the
        // handshake then fails on EOF, past the name.
        let long = [&name_msg(ours, 1, A)[..], b"future"].concat();
        let res = accept_raw(&framed(&[&long])).await;
        assert!(matches!(res, Err(HandshakeError::Io(_))), "{res:?}");
    }

    #[tokio::test]
    async fn acceptor_rejects_a_reply_of_the_wrong_length() {
        let name = name_msg(DistFlags::OURS, 1, A);
        for reply in [&[b'r'; 21][..], &[b'r'; 20], &[b'r'; 22], &[b'x'; 21]] {
            let res = accept_raw(&framed(&[&name, reply])).await;
            // 21 bytes of 'r' is well formed but the digest is wrong.
            match res {
                Err(HandshakeError::WrongCookie) => assert_eq!(reply, [b'r'; 21]),
                Err(HandshakeError::Protocol(_)) => assert_ne!(reply, [b'r'; 21]),
                other => panic!("{reply:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn initiator_rejects_bad_statuses_and_challenges() {
        let a = cfg(A, "c", 1);
        let challenge = challenge_msg(DistFlags::OURS, 5, 2, B);
        let old = [&b"n\x00\x05"[..], &[0; 8], B.as_bytes()].concat();
        let cases: &[&[&[u8]]] = &[
            &[b"sweird"],
            &[b"snamed:"],
            &[b"x"],
            &[b"sok", &challenge[..10]],
            &[b"sok", &challenge[..challenge.len() - 1]],
            &[b"sok", &old],
            &[b"sok", b"sok"],
            &[b"salive", b"sok", b"r"],
        ];
        for msgs in cases {
            let (mut x, mut y) = duplex(1 << 16);
            y.write_all(&framed(msgs)).await.unwrap();
            y.shutdown().await.unwrap();
            let res = initiate(&mut x, &a, Some(B), || true).await;
            assert!(
                matches!(res, Err(HandshakeError::Protocol(_))),
                "{msgs:?}: {res:?}"
            );
        }
    }

    #[tokio::test]
    async fn old_name_with_complement_is_accepted() {
        let b = cfg(B, "c", 2);
        let (mut x, mut y) = duplex(4096);
        let (res, ()) = tokio::join!(accept(&mut y, &b, |_| Status::Ok), async {
            send(&mut x, &old_name_msg(DistFlags::OURS, A))
                .await
                .unwrap();
            assert_eq!(read(&mut x).await, b"sok");
            let ch = read(&mut x).await;
            let theirs = u32::from_be_bytes(ch[9..13].try_into().unwrap());
            let mut c = vec![b'c'];
            c.put_u32((DistFlags::OURS.bits() >> 32) as u32);
            c.put_u32(77);
            send(&mut x, &c).await.unwrap();
            send(&mut x, &reply_msg(1234, digest("c", theirs)))
                .await
                .unwrap();
            assert_eq!(read(&mut x).await, [&b"a"[..], &digest("c", 1234)].concat());
        });
        assert_eq!(
            res.unwrap(),
            Peer {
                name: A.into(),
                flags: DistFlags::OURS,
                creation: 77
            }
        );
    }

    #[tokio::test]
    async fn old_name_without_the_new_flags_is_not_allowed() {
        // No HANDSHAKE_23 (nor the digest bit, which implies it): refused
        // at once.
        let flags =
            DistFlags::OURS.difference(DistFlags::HANDSHAKE_23 | DistFlags::MANDATORY_25_DIGEST);
        let (mut x, mut y) = duplex(4096);
        let b = cfg(B, "c", 2);
        let (res, ()) = tokio::join!(accept(&mut y, &b, |_| Status::Ok), async {
            send(&mut x, &old_name_msg(flags, A)).await.unwrap();
            assert_eq!(read(&mut x).await, b"snot_allowed");
        });
        assert!(
            matches!(res, Err(HandshakeError::MissingFlags(m)) if m == DistFlags::HANDSHAKE_23),
            "{res:?}"
        );

        // High flags without V4_NC: refused after the complement.
        let (mut x, mut y) = duplex(4096);
        let (res, ()) = tokio::join!(accept(&mut y, &b, |_| Status::Ok), async {
            send(&mut x, &old_name_msg(DistFlags::OURS, A))
                .await
                .unwrap();
            assert_eq!(read(&mut x).await, b"sok");
            assert_eq!(read(&mut x).await[0], b'N');
            send(&mut x, b"c\0\0\0\0\0\0\0\x09").await.unwrap();
            assert_eq!(read(&mut x).await, b"snot_allowed");
        });
        assert!(
            matches!(res, Err(HandshakeError::MissingFlags(m)) if m == DistFlags::V4_NC),
            "{res:?}"
        );
    }

    fn message() -> impl Strategy<Value = Vec<u8>> {
        let tag = prop::sample::select(&b"NnsrachX"[..]);
        prop_oneof![
            Just(b"sok".to_vec()),
            Just(b"salive".to_vec()),
            Just(b"strue".to_vec()),
            Just(name_msg(DistFlags::OURS, 1, A)),
            Just(challenge_msg(DistFlags::OURS, 1, 2, B)),
            (tag, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(t, mut rest)| {
                rest.insert(0, t);
                rest
            }),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a peer sends, both sides end with an error, never a
        /// panic or a hang.
        #[test]
        fn random_peer_input_never_panics(
            msgs in prop::collection::vec(message(), 0..6),
            tail in prop::collection::vec(any::<u8>(), 0..8),
            alive_answer in any::<bool>(),
            status in prop::sample::select(vec![
                Status::Ok, Status::OkSimultaneous, Status::Nok, Status::NotAllowed, Status::Alive,
            ]),
        ) {
            let mut input = Vec::new();
            for m in &msgs {
                input.put_u16(m.len() as u16);
                input.put_slice(m);
            }
            input.extend_from_slice(&tail);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(async {
                let mut c = cfg(A, "c", 1);
                c.timeout = Duration::from_secs(2);
                for initiator in [true, false] {
                    let (mut x, mut y) = duplex(1 << 16);
                    y.write_all(&input).await.unwrap();
                    y.shutdown().await.unwrap();
                    let res = if initiator {
                        initiate(&mut x, &c, None, || alive_answer).await
                    } else {
                        accept(&mut x, &c, |_| status).await
                    };
                    prop_assert!(res.is_err(), "{res:?}");
                    prop_assert!(!matches!(res, Err(HandshakeError::Timeout)));
                }
                Ok(())
            })?;
        }
    }
}
