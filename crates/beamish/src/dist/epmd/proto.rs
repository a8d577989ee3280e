//! The EPMD wire format: requests, replies and their limits.
//!
//! Integers are big-endian. A request is `Length:u16` and then `Length`
//! bytes, the first of which is the request code. Replies carry no length:
//! EPMD closes the connection after every reply except the one to
//! `ALIVE2_REQ`, so a client reads a reply to the end of the stream.
//!
//! Decoding works on complete messages whose size the caller has already
//! bounded, and checks every length against what is really there, so bad
//! input is an [`EpmdError`] and never an allocation it asked for.

use std::fmt::Write as _;

use super::EpmdError;

/// Register a node: `120 PortNo:u16 NodeType Protocol Highest:u16
/// Lowest:u16 Nlen:u16 Name Elen:u16 Extra`.
pub(crate) const ALIVE2_REQ: u8 = 120;
/// The reply to `ALIVE2_REQ` from a version-6 EPMD: `118 Result Creation:u32`.
pub(crate) const ALIVE2_X_RESP: u8 = 118;
/// The reply to `ALIVE2_REQ` from an older EPMD: `121 Result Creation:u16`.
pub(crate) const ALIVE2_RESP: u8 = 121;
/// Ask for a node's port: `122 Name`.
pub(crate) const PORT_PLEASE2_REQ: u8 = 122;
/// The reply to `PORT_PLEASE2_REQ`: `119 Result` and, when `Result` is 0,
/// the fields of the registration.
pub(crate) const PORT2_RESP: u8 = 119;
/// List the registered names: `110`.
pub(crate) const NAMES_REQ: u8 = 110;
/// List everything EPMD knows, a debug aid: `100`.
pub(crate) const DUMP_REQ: u8 = 100;
/// Stop the EPMD: `107`, answered with `OK`.
pub(crate) const KILL_REQ: u8 = 107;
/// Unregister a name by force: `115 Name`, answered with `STOPPED` or
/// `NOEXIST`.
pub(crate) const STOP_REQ: u8 = 115;

/// `NodeType` of a normal (visible) Erlang node.
pub(crate) const NODE_TYPE_NORMAL: u8 = 77;
/// `NodeType` of a hidden node (a C node, for instance).
pub(crate) const NODE_TYPE_HIDDEN: u8 = 72;
/// `Protocol` of the TCP/IPv4 distribution.
pub(crate) const PROTOCOL_TCP_IPV4: u8 = 0;
/// The distribution protocol version we speak, highest and lowest alike
/// (OTP 23 and later; OTP 25 dropped version 5).
pub(crate) const VERSION: u16 = 6;

/// The longest node name, in characters (OTP's limit).
pub(crate) const MAX_NAME_CHARS: usize = 255;
/// The longest request, its 2-byte length not counted. The longest name
/// (255 characters of 4 bytes) fits with room for an `Extra` field; a
/// server buffers no more than this per connection.
pub(crate) const MAX_REQUEST: usize = 2048;

/// What EPMD knows of a registered node: the fields of `ALIVE2_REQ`, which
/// `PORT2_RESP` gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeAddr {
    /// The port the node accepts distribution connections on.
    pub(crate) port: u16,
    /// [`NODE_TYPE_NORMAL`] or [`NODE_TYPE_HIDDEN`].
    pub(crate) node_type: u8,
    /// [`PROTOCOL_TCP_IPV4`].
    pub(crate) protocol: u8,
    /// The highest distribution protocol version the node speaks.
    pub(crate) highest: u16,
    /// The lowest distribution protocol version the node speaks.
    pub(crate) lowest: u16,
    /// The node's name without the host part (`foo` of `foo@host`).
    pub(crate) name: String,
    /// Opaque bytes a node may register; OTP sends none.
    pub(crate) extra: Vec<u8>,
}

impl NodeAddr {
    /// How a beamish node registers: a normal node over TCP/IPv4 that
    /// speaks version 6 only, with no extra bytes.
    pub(crate) fn new(name: &str, port: u16) -> NodeAddr {
        NodeAddr {
            port,
            node_type: NODE_TYPE_NORMAL,
            protocol: PROTOCOL_TCP_IPV4,
            highest: VERSION,
            lowest: VERSION,
            name: name.to_owned(),
            extra: Vec::new(),
        }
    }

    /// Appends the fields from `PortNo` to `Extra`, as both `ALIVE2_REQ`
    /// and `PORT2_RESP` carry them.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EpmdError> {
        check_name(&self.name)?;
        let extra_len = u16::try_from(self.extra.len()).map_err(|_| EpmdError::TooLong)?;
        out.extend_from_slice(&self.port.to_be_bytes());
        out.push(self.node_type);
        out.push(self.protocol);
        out.extend_from_slice(&self.highest.to_be_bytes());
        out.extend_from_slice(&self.lowest.to_be_bytes());
        // At most 255 characters of at most 4 bytes: fits a u16.
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&extra_len.to_be_bytes());
        out.extend_from_slice(&self.extra);
        Ok(())
    }

    /// Reads the fields from `PortNo` to `Extra`.
    fn decode_from(r: &mut Reader<'_>) -> Result<NodeAddr, EpmdError> {
        let port = r.u16()?;
        let node_type = r.u8()?;
        let protocol = r.u8()?;
        let highest = r.u16()?;
        let lowest = r.u16()?;
        let name_len = r.u16()?;
        let name = parse_name(r.take(usize::from(name_len))?)?;
        let extra_len = r.u16()?;
        let extra = r.take(usize::from(extra_len))?.to_vec();
        Ok(NodeAddr {
            port,
            node_type,
            protocol,
            highest,
            lowest,
            name,
            extra,
        })
    }
}

/// A request to EPMD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `ALIVE2_REQ`: register this node.
    Alive2(NodeAddr),
    /// `PORT_PLEASE2_REQ`: where does this node listen?
    PortPlease2(String),
    /// `NAMES_REQ`: which names are registered?
    Names,
    /// `DUMP_REQ`: everything EPMD knows, as text.
    Dump,
    /// `KILL_REQ`: stop serving.
    Kill,
    /// `STOP_REQ`: unregister this name, closing its node's connection.
    Stop(String),
}

impl Request {
    /// The request on the wire, its 2-byte length included.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, EpmdError> {
        let mut out = vec![0, 0];
        match self {
            Request::Alive2(node) => {
                out.push(ALIVE2_REQ);
                node.encode_into(&mut out)?;
            }
            Request::PortPlease2(name) => push_name(&mut out, PORT_PLEASE2_REQ, name)?,
            Request::Stop(name) => push_name(&mut out, STOP_REQ, name)?,
            Request::Names => out.push(NAMES_REQ),
            Request::Dump => out.push(DUMP_REQ),
            Request::Kill => out.push(KILL_REQ),
        }
        let len = out.len() - 2;
        if len > MAX_REQUEST {
            return Err(EpmdError::TooLong);
        }
        out[..2].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(out)
    }

    /// Parses a request's bytes (after its 2-byte length).
    pub(crate) fn decode(body: &[u8]) -> Result<Request, EpmdError> {
        let mut r = Reader(body);
        let request = match r.u8()? {
            ALIVE2_REQ => Request::Alive2(NodeAddr::decode_from(&mut r)?),
            // epmd tolerates a C string's terminating NUL after the name.
            PORT_PLEASE2_REQ => Request::PortPlease2(parse_name(strip_nul(r.rest()))?),
            STOP_REQ => Request::Stop(parse_name(strip_nul(r.rest()))?),
            NAMES_REQ => Request::Names,
            DUMP_REQ => Request::Dump,
            KILL_REQ => Request::Kill,
            code => return Err(EpmdError::UnexpectedTag(code)),
        };
        r.end()?;
        Ok(request)
    }

    /// Whether EPMD takes this request only from its own host: nobody
    /// else may register names, list details or stop anything (as epmd).
    pub(crate) fn local_only(&self) -> bool {
        !matches!(self, Request::PortPlease2(_) | Request::Names)
    }
}

/// Appends `code` and `name`, the whole of a request about a name.
fn push_name(out: &mut Vec<u8>, code: u8, name: &str) -> Result<(), EpmdError> {
    check_name(name)?;
    out.push(code);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// The reply to `ALIVE2_REQ`: `result` 0 is success. A node of version 6
/// or later gets `ALIVE2_X_RESP` with the 32-bit `creation`, an older one
/// `ALIVE2_RESP` with its low 16 bits.
pub(crate) fn alive2_reply(highest: u16, result: u8, creation: u32) -> Vec<u8> {
    if highest >= VERSION {
        let mut out = vec![ALIVE2_X_RESP, result];
        out.extend_from_slice(&creation.to_be_bytes());
        out
    } else {
        let mut out = vec![ALIVE2_RESP, result];
        out.extend_from_slice(&(creation as u16).to_be_bytes());
        out
    }
}

/// Checks the first two bytes of a reply to `ALIVE2_REQ` (tag and result)
/// and says how many bytes of creation follow.
pub(crate) fn alive2_reply_head(head: [u8; 2]) -> Result<usize, EpmdError> {
    let creation_len = match head[0] {
        ALIVE2_X_RESP => 4,
        ALIVE2_RESP => 2,
        tag => return Err(EpmdError::UnexpectedTag(tag)),
    };
    match head[1] {
        0 => Ok(creation_len),
        result => Err(EpmdError::Refused(result)),
    }
}

/// A big-endian creation of 2 or 4 bytes.
pub(crate) fn creation(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u32::from(b))
}

/// The reply to `PORT_PLEASE2_REQ`: the registration, or result 1 alone.
pub(crate) fn port2_reply(node: Option<&NodeAddr>) -> Vec<u8> {
    let mut out = vec![PORT2_RESP, 0];
    match node.map(|node| node.encode_into(&mut out)) {
        Some(Ok(())) => out,
        // A registered name was checked when it was decoded; a node that
        // somehow cannot be encoded is as good as unknown.
        None | Some(Err(_)) => vec![PORT2_RESP, 1],
    }
}

/// Parses a whole reply to `PORT_PLEASE2_REQ`: `None` when EPMD does not
/// know the name.
pub(crate) fn parse_port2_reply(reply: &[u8]) -> Result<Option<NodeAddr>, EpmdError> {
    let mut r = Reader(reply);
    match r.u8()? {
        PORT2_RESP => {}
        tag => return Err(EpmdError::UnexpectedTag(tag)),
    }
    if r.u8()? != 0 {
        return Ok(None);
    }
    let node = NodeAddr::decode_from(&mut r)?;
    r.end()?;
    Ok(Some(node))
}

/// The reply to `NAMES_REQ`: EPMD's own port, then a line per registered
/// name, in the format OTP's `net_adm:names/0` and `epmd -names` parse.
pub(crate) fn names_reply<'a>(
    epmd_port: u16,
    nodes: impl IntoIterator<Item = (&'a str, u16)>,
) -> Vec<u8> {
    let mut text = String::new();
    for (name, port) in nodes {
        let _ = writeln!(text, "name {name} at port {port}");
    }
    with_port(epmd_port, text)
}

/// The reply to `DUMP_REQ`: like [`names_reply`], in epmd's dump format.
/// `id` stands where epmd prints the file descriptor.
pub(crate) fn dump_reply<'a>(
    epmd_port: u16,
    nodes: impl IntoIterator<Item = (&'a str, u16, u64)>,
) -> Vec<u8> {
    let mut text = String::new();
    for (name, port, id) in nodes {
        let _ = writeln!(text, "active name     <{name}> at port {port}, fd = {id}");
    }
    with_port(epmd_port, text)
}

/// `epmd_port` as the 4-byte header of a text reply, then the text.
fn with_port(epmd_port: u16, text: String) -> Vec<u8> {
    let mut out = u32::from(epmd_port).to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Parses a whole reply to `NAMES_REQ` into (name, port) pairs.
pub(crate) fn parse_names_reply(reply: &[u8]) -> Result<Vec<(String, u16)>, EpmdError> {
    let mut r = Reader(reply);
    r.take(4)?; // EPMD's own port: the caller knows it already.
    let text =
        std::str::from_utf8(r.rest()).map_err(|_| EpmdError::Malformed("names not UTF-8"))?;
    text.lines().map(parse_names_line).collect()
}

/// `name NAME at port PORT`.
fn parse_names_line(line: &str) -> Result<(String, u16), EpmdError> {
    let bad = EpmdError::Malformed("bad names line");
    let Some((name, port)) = line
        .strip_prefix("name ")
        .and_then(|rest| rest.rsplit_once(" at port "))
    else {
        return Err(bad);
    };
    let port = port.parse().map_err(|_| bad)?;
    check_name(name)?;
    Ok((name.to_owned(), port))
}

/// Accepts the names OTP accepts: 1 to [`MAX_NAME_CHARS`] characters,
/// without NUL (epmd handles names as C strings).
pub(crate) fn check_name(name: &str) -> Result<(), EpmdError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(EpmdError::BadName);
    }
    Ok(())
}

/// A name from the wire: UTF-8 that passes [`check_name`].
fn parse_name(bytes: &[u8]) -> Result<String, EpmdError> {
    let name = std::str::from_utf8(bytes).map_err(|_| EpmdError::BadName)?;
    check_name(name)?;
    Ok(name.to_owned())
}

/// `bytes` without one trailing NUL.
fn strip_nul(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\0").unwrap_or(bytes)
}

/// A cursor over a complete message: every read is checked against what is
/// left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EpmdError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(EpmdError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, EpmdError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, EpmdError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn end(&self) -> Result<(), EpmdError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(EpmdError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str) -> NodeAddr {
        NodeAddr::new(name, 0x1234)
    }

    #[test]
    fn alive2_request_bytes() {
        let bytes = Request::Alive2(node("ab")).encode().unwrap();
        #[rustfmt::skip]
        let expected = [
            0, 15, // length
            120, 0x12, 0x34, 77, 0, 0, 6, 0, 6, // code, port, type, protocol, versions
            0, 2, b'a', b'b', // name
            0, 0, // no extra
        ];
        assert_eq!(bytes, expected);
        assert_eq!(
            Request::decode(&bytes[2..]).unwrap(),
            Request::Alive2(node("ab"))
        );
    }

    #[test]
    fn simple_request_bytes() {
        let cases = [
            (Request::PortPlease2("n".into()), vec![0, 2, 122, b'n']),
            (Request::Stop("n".into()), vec![0, 2, 115, b'n']),
            (Request::Names, vec![0, 1, 110]),
            (Request::Dump, vec![0, 1, 100]),
            (Request::Kill, vec![0, 1, 107]),
        ];
        for (request, bytes) in cases {
            assert_eq!(request.encode().unwrap(), bytes);
            assert_eq!(Request::decode(&bytes[2..]).unwrap(), request);
        }
    }

    #[test]
    fn requests_round_trip_with_extra_and_unicode() {
        let mut n = node(&"é".repeat(MAX_NAME_CHARS));
        n.extra = vec![1, 2, 3];
        n.node_type = NODE_TYPE_HIDDEN;
        let request = Request::Alive2(n);
        let bytes = request.encode().unwrap();
        assert_eq!(Request::decode(&bytes[2..]).unwrap(), request);
    }

    #[test]
    fn bad_names_are_refused_before_sending() {
        for name in ["", "a\0b", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert!(matches!(
                Request::Alive2(node(name)).encode(),
                Err(EpmdError::BadName)
            ));
            assert!(matches!(
                Request::PortPlease2(name.into()).encode(),
                Err(EpmdError::BadName)
            ));
        }
        let mut big = node("a");
        big.extra = vec![0; MAX_REQUEST];
        assert!(matches!(
            Request::Alive2(big).encode(),
            Err(EpmdError::TooLong)
        ));
    }

    #[test]
    fn bad_requests_are_errors() {
        let alive = Request::Alive2(node("ab")).encode().unwrap();
        let body = &alive[2..];
        // Every truncation of ALIVE2 fails.
        for len in 0..body.len() {
            assert!(Request::decode(&body[..len]).is_err(), "{len}");
        }
        // A name length past the end.
        let mut long_name = body.to_vec();
        long_name[10] = 200;
        assert!(matches!(
            Request::decode(&long_name),
            Err(EpmdError::Truncated)
        ));
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert!(matches!(
            Request::decode(&trailing),
            Err(EpmdError::Malformed(_))
        ));
        assert!(matches!(
            Request::decode(&[99]),
            Err(EpmdError::UnexpectedTag(99))
        ));
        assert!(matches!(
            Request::decode(&[NAMES_REQ, 0]),
            Err(EpmdError::Malformed(_))
        ));
        assert!(matches!(
            Request::decode(&[PORT_PLEASE2_REQ]),
            Err(EpmdError::BadName)
        ));
        assert!(matches!(
            Request::decode(&[PORT_PLEASE2_REQ, 0xFF]),
            Err(EpmdError::BadName)
        ));
        assert!(matches!(
            Request::decode(&[PORT_PLEASE2_REQ, b'a', 0, b'b']),
            Err(EpmdError::BadName)
        ));
    }

    #[test]
    fn port_please_tolerates_a_trailing_nul() {
        assert_eq!(
            Request::decode(b"zab\0").unwrap(),
            Request::PortPlease2("ab".into())
        );
    }

    #[test]
    fn only_lookups_are_open_to_other_hosts() {
        assert!(!Request::Names.local_only());
        assert!(!Request::PortPlease2("a".into()).local_only());
        assert!(Request::Alive2(node("a")).local_only());
        assert!(Request::Dump.local_only());
        assert!(Request::Kill.local_only());
        assert!(Request::Stop("a".into()).local_only());
    }

    #[test]
    fn alive2_replies() {
        assert_eq!(
            alive2_reply(6, 0, 0xDEAD_BEEF),
            [118, 0, 0xDE, 0xAD, 0xBE, 0xEF]
        );
        assert_eq!(alive2_reply(5, 0, 3), [121, 0, 0, 3]);
        assert_eq!(alive2_reply_head([118, 0]).unwrap(), 4);
        assert_eq!(alive2_reply_head([121, 0]).unwrap(), 2);
        assert!(matches!(
            alive2_reply_head([118, 1]),
            Err(EpmdError::Refused(1))
        ));
        assert!(matches!(
            alive2_reply_head([119, 0]),
            Err(EpmdError::UnexpectedTag(119))
        ));
        assert_eq!(creation(&[0xDE, 0xAD, 0xBE, 0xEF]), 0xDEAD_BEEF);
        assert_eq!(creation(&[0, 3]), 3);
    }

    #[test]
    fn port2_replies() {
        let n = node("ab");
        let reply = port2_reply(Some(&n));
        assert_eq!(reply[..2], [119, 0]);
        assert_eq!(parse_port2_reply(&reply).unwrap(), Some(n));
        assert_eq!(port2_reply(None), [119, 1]);
        assert_eq!(parse_port2_reply(&[119, 1]).unwrap(), None);
        assert!(matches!(
            parse_port2_reply(&[118, 0]),
            Err(EpmdError::UnexpectedTag(118))
        ));
        assert!(matches!(parse_port2_reply(&[]), Err(EpmdError::Truncated)));
        for len in 2..reply.len() {
            assert!(parse_port2_reply(&reply[..len]).is_err(), "{len}");
        }
        let mut trailing = reply.clone();
        trailing.push(0);
        assert!(parse_port2_reply(&trailing).is_err());
    }

    #[test]
    fn names_replies() {
        let reply = names_reply(4369, [("a", 1), ("b c", 65535)]);
        assert_eq!(reply[..4], [0, 0, 0x11, 0x11]);
        assert_eq!(&reply[4..], b"name a at port 1\nname b c at port 65535\n");
        assert_eq!(
            parse_names_reply(&reply).unwrap(),
            [("a".to_owned(), 1), ("b c".to_owned(), 65535)]
        );
        assert_eq!(parse_names_reply(&[0, 0, 0, 1]).unwrap(), []);
        assert!(matches!(
            parse_names_reply(&[0, 0]),
            Err(EpmdError::Truncated)
        ));
        for bad in [
            &b"\0\0\0\x01garbage\n"[..],
            b"\0\0\0\x01name a at port 70000\n",
            b"\0\0\0\x01name a at port\n",
            b"\0\0\0\x01name  at port 1\n",
            b"\0\0\0\x01name \xFF at port 1\n",
        ] {
            assert!(parse_names_reply(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dump_reply_format() {
        let reply = dump_reply(7, [("a", 1, 9)]);
        assert_eq!(&reply[..4], [0, 0, 0, 7]);
        assert_eq!(&reply[4..], b"active name     <a> at port 1, fd = 9\n");
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&bytes);
            let _ = parse_port2_reply(&bytes);
            let _ = parse_names_reply(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(
            name in "[a-z]{1,20}",
            extra in proptest::collection::vec(any::<u8>(), 0..8),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut n = node(&name);
            n.extra = extra;
            let request = Request::Alive2(n);
            let mut bytes = request.encode().unwrap();
            prop_assert_eq!(Request::decode(&bytes[2..]).unwrap(), request);
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            let _ = Request::decode(&bytes[2..]);
            let _ = parse_port2_reply(&bytes);
        }
    }
}
