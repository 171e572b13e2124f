//! The election-port codec (PEER-PROTOCOL.md §3, §4.1): the unframed
//! connection-initiation message a dialler sends first, then the int-length
//! frames that carry fast-leader-election notifications.
//!
//! Pure and clock-free. The election transport (on the core that runs the
//! election) feeds each connection's received bytes to [`InitMessage::decode`]
//! once, then to [`decode_frame`] repeatedly; each frame body goes to
//! [`Notification::decode`]. A frame error means the reference drops the
//! connection; a body error means it skips that one message and keeps reading.
//! Errors are [`QuorumDecodeError`]s, shared with the quorum port.

use super::jute::JuteWrite;
use super::quorum::{be_i32, be_i64, java_utf8_lossy, Partial, QuorumDecodeError};

type Result<T> = std::result::Result<T, QuorumDecodeError>;

/// Init message version sent unless multi-address is enabled: one address.
pub const PROTOCOL_VERSION_V1: i64 = -65536;
/// Init message version with multi-address: addresses joined by `|`.
pub const PROTOCOL_VERSION_V2: i64 = -65535;
/// Longest election address text an init message may carry (`maxBuffer`).
pub const INIT_ADDR_BYTES_MAX: usize = 2048;
/// Longest election frame body (`PACKETMAXSIZE`, 512 KiB).
pub const FRAME_BYTES_MAX: usize = 512 * 1024;
/// The notification version 3.5+ peers send (`Notification.CURRENTVERSION`).
pub const NOTIFICATION_VERSION: i32 = 2;
/// Shortest notification body the reference accepts (no peerEpoch, no version).
const NOTIFICATION_BYTES_MIN: usize = 28;
/// The 3.4-era body: peerEpoch, no version.
const NOTIFICATION_V0_BYTES: usize = 40;
/// Where the config text starts in a version-2 body.
const NOTIFICATION_HEAD_BYTES: usize = 44;

/// The first bytes a dialler sends on an election connection, unframed:
/// `long protocolVersion, long sid, int addrLen, addr bytes`. A pre-3.5 peer
/// sends only its sid; then `protocol_version` is that sid and there is no
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitMessage {
    pub protocol_version: i64,
    pub sid: i64,
    pub election_addr: Option<String>,
}

impl InitMessage {
    /// What a 3.8 peer without multi-address sends: V1 and its election
    /// address as `host:port` (`[v6]:port` for IPv6).
    pub fn v1(sid: i64, election_addr: &str) -> Self {
        InitMessage {
            protocol_version: PROTOCOL_VERSION_V1,
            sid,
            election_addr: Some(election_addr.to_string()),
        }
    }

    /// A pre-3.5 message is written as the bare sid; V1/V2 with the address
    /// (empty text if none was given, which receivers refuse).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.protocol_version >= 0 {
            out.put_i64(self.sid);
            return;
        }
        out.put_i64(self.protocol_version);
        out.put_i64(self.sid);
        out.put_str(self.election_addr.as_deref().unwrap_or(""));
    }

    /// Decodes the init message at the start of `buf`: `Ok(None)` until it is
    /// whole, then the message and the bytes it took. An unknown negative
    /// version, an address length outside 1..=2048 or an address that is not
    /// `host:port` is an error (the reference closes the connection).
    pub fn decode(buf: &[u8]) -> Result<Option<(InitMessage, usize)>> {
        let mut c = Partial::new(buf);
        let Some(first) = c.i64() else {
            return Ok(None);
        };
        if first >= 0 {
            let legacy = InitMessage {
                protocol_version: first,
                sid: first,
                election_addr: None,
            };
            return Ok(Some((legacy, c.pos)));
        }
        if first != PROTOCOL_VERSION_V1 && first != PROTOCOL_VERSION_V2 {
            return Err(QuorumDecodeError::BadInitVersion(first));
        }
        let Some(sid) = c.i64() else {
            return Ok(None);
        };
        let Some(len) = c.i32() else {
            return Ok(None);
        };
        if len <= 0 || len as usize > INIT_ADDR_BYTES_MAX {
            return Err(QuorumDecodeError::BadInitAddrLength {
                len,
                max: INIT_ADDR_BYTES_MAX,
            });
        }
        let Some(addr) = c.take(len as usize) else {
            return Ok(None);
        };
        let msg = InitMessage {
            protocol_version: first,
            sid,
            election_addr: Some(java_utf8_lossy(addr)),
        };
        msg.election_addrs()?;
        Ok(Some((msg, c.pos)))
    }

    /// The dialler's election addresses as `(host, port)`, split on `|`, with
    /// IPv6 brackets removed and wildcard literals (`0.0.0.0`, `::`) dropped, as
    /// the reference's receiver does. Empty for a pre-3.5 message. Host names
    /// are not resolved here.
    pub fn election_addrs(&self) -> Result<Vec<(String, u16)>> {
        let Some(text) = &self.election_addr else {
            return Ok(Vec::new());
        };
        let mut addrs = Vec::new();
        for one in text.split('|') {
            let (host, port) = split_host_port(one)?;
            if !is_wildcard(&host) {
                addrs.push((host, port));
            }
        }
        Ok(addrs)
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, u16)> {
    let bad = || QuorumDecodeError::BadElectionAddr(s.to_string());
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or_else(bad)?,
        None => s.split_once(':').ok_or_else(bad)?,
    };
    if port.contains(':') {
        return Err(bad());
    }
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host.to_string(), port))
}

fn is_wildcard(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// Splits the next election frame off the start of `buf`: `Ok(None)` until it
/// is whole, then its body and the bytes the frame took. A length <= 0 or over
/// [`FRAME_BYTES_MAX`] is an error (the reference drops the connection).
pub fn decode_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>> {
    let mut c = Partial::new(buf);
    let Some(len) = c.i32() else {
        return Ok(None);
    };
    if len <= 0 || len as usize > FRAME_BYTES_MAX {
        return Err(QuorumDecodeError::BadFrameLength {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    Ok(c.take(len as usize).map(|body| (body, c.pos)))
}

/// A peer's role as it reports it in a notification (`QuorumPeer.ServerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ServerState {
    Looking = 0,
    Following = 1,
    Leading = 2,
    Observing = 3,
}

impl ServerState {
    pub fn from_code(code: i32) -> Result<ServerState> {
        match code {
            0 => Ok(ServerState::Looking),
            1 => Ok(ServerState::Following),
            2 => Ok(ServerState::Leading),
            3 => Ok(ServerState::Observing),
            _ => Err(QuorumDecodeError::UnknownServerState(code)),
        }
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One fast-leader-election message: the sender's state and vote.
/// `config` is the sender's committed QuorumVerifier text (version > 1 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub state: ServerState,
    pub leader: i64,
    pub zxid: i64,
    pub election_epoch: i64,
    pub peer_epoch: i64,
    pub version: i32,
    pub config: Option<String>,
}

impl Notification {
    /// A current (version 2) notification carrying `config`.
    pub fn new(
        state: ServerState,
        leader: i64,
        zxid: i64,
        election_epoch: i64,
        peer_epoch: i64,
        config: String,
    ) -> Self {
        Notification {
            state,
            leader,
            zxid,
            election_epoch,
            peer_epoch,
            version: NOTIFICATION_VERSION,
            config: Some(config),
        }
    }

    /// Appends the frame: int length, then the 44 + N byte body. The body
    /// always has the current layout; a missing config is written as empty.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        let at = super::jute::begin_frame(out);
        self.encode_body(out);
        super::jute::end_frame(out, at);
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.put_i32(self.state.code());
        out.put_i64(self.leader);
        out.put_i64(self.zxid);
        out.put_i64(self.election_epoch);
        out.put_i64(self.peer_epoch);
        out.put_i32(self.version);
        out.put_str(self.config.as_deref().unwrap_or(""));
    }

    /// Decodes a frame body in any of the shapes the reference accepts: 28
    /// bytes (peerEpoch = zxid >> 32, version 0), 40 bytes (version 0), or 40+
    /// with a version, followed by the config text when the version is > 1.
    /// Bytes after what the version calls for are ignored.
    pub fn decode(body: &[u8]) -> Result<Notification> {
        let len = body.len();
        if len < NOTIFICATION_BYTES_MIN {
            return Err(QuorumDecodeError::ShortNotification {
                len,
                min: NOTIFICATION_BYTES_MIN,
            });
        }
        let state = ServerState::from_code(be_i32(body, 0))?;
        let zxid = be_i64(body, 12);
        let (peer_epoch, version) = epoch_and_version(body, zxid)?;
        let config = if version > 1 {
            Some(config_text(body)?)
        } else {
            None
        };
        Ok(Notification {
            state,
            leader: be_i64(body, 4),
            zxid,
            election_epoch: be_i64(body, 20),
            peer_epoch,
            version,
            config,
        })
    }
}

/// peerEpoch and version, by body shape.
fn epoch_and_version(body: &[u8], zxid: i64) -> Result<(i64, i32)> {
    if body.len() == NOTIFICATION_BYTES_MIN {
        return Ok((zxid >> 32, 0));
    }
    need(body, "peer epoch", 36)?;
    let peer_epoch = be_i64(body, 28);
    if body.len() == NOTIFICATION_V0_BYTES {
        return Ok((peer_epoch, 0));
    }
    need(body, "version", 40)?;
    Ok((peer_epoch, be_i32(body, 36)))
}

/// The config text of a version > 1 body. Its length may not exceed the body
/// length (the reference's bound), nor run past the body.
fn config_text(body: &[u8]) -> Result<String> {
    need(body, "config length", NOTIFICATION_HEAD_BYTES)?;
    let config_len = be_i32(body, 40);
    if config_len < 0 || config_len as usize > body.len() {
        return Err(QuorumDecodeError::BadConfigLength {
            config_len,
            len: body.len(),
        });
    }
    let end = NOTIFICATION_HEAD_BYTES + config_len as usize;
    need(body, "config", end)?;
    Ok(java_utf8_lossy(&body[NOTIFICATION_HEAD_BYTES..end]))
}

fn need(body: &[u8], field: &'static str, needed: usize) -> Result<()> {
    if body.len() < needed {
        return Err(QuorumDecodeError::TruncatedNotification {
            field,
            len: body.len(),
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn init_error(bytes: &[u8]) -> String {
        InitMessage::decode(bytes).unwrap_err().to_string()
    }

    /// The committed config text of the captured ensemble (§2), 186 bytes.
    fn captured_config() -> String {
        let line = |n: u32| {
            format!(
                "server.{n}=127.0.0.1:{}:{}:participant;127.0.0.1:{}\n",
                23191 + n,
                23201 + n,
                23180 + n
            )
        };
        format!("{}{}{}version=0", line(1), line(2), line(3))
    }

    #[test]
    fn init_message_sample() {
        let wire = [
            hex("ffffffffffff0000 0000000000000002 0000000f"),
            b"127.0.0.1:23203".to_vec(),
        ]
        .concat();
        assert_eq!(wire.len(), 35);
        let (msg, used) = InitMessage::decode(&wire).unwrap().unwrap();
        assert_eq!(used, 35);
        assert_eq!(msg, InitMessage::v1(2, "127.0.0.1:23203"));
        assert_eq!(
            msg.election_addrs().unwrap(),
            vec![("127.0.0.1".into(), 23203)]
        );
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, wire);
        for end in 0..wire.len() {
            assert_eq!(InitMessage::decode(&wire[..end]), Ok(None));
        }
    }

    #[test]
    fn init_message_pre_3_5_and_v2() {
        let (msg, used) = InitMessage::decode(&hex("0000000000000005 00000000"))
            .unwrap()
            .unwrap();
        assert_eq!((msg.sid, msg.election_addr, used), (5, None, 8));

        let text = "[::1]:3888|10.0.0.7:3888|0.0.0.0:3888";
        let mut wire = hex("ffffffffffff0001 0000000000000009");
        wire.put_str(text);
        let (msg, _) = InitMessage::decode(&wire).unwrap().unwrap();
        assert_eq!(msg.protocol_version, PROTOCOL_VERSION_V2);
        assert_eq!(
            msg.election_addrs().unwrap(),
            vec![("::1".into(), 3888), ("10.0.0.7".into(), 3888)]
        );
    }

    #[test]
    fn init_message_refusals() {
        assert_eq!(
            init_error(&hex("ffffffffffff0002")),
            "election init: unknown protocol version -65534 (expected -65536, -65535 or a sid >= 0)"
        );
        assert_eq!(
            init_error(&hex("ffffffffffff0000 0000000000000002 00000000")),
            "election init: address length 0 is outside 1..=2048 bytes"
        );
        assert_eq!(
            init_error(&hex("ffffffffffff0000 0000000000000002 00000801")),
            "election init: address length 2049 is outside 1..=2048 bytes"
        );
        assert_eq!(
            init_error(&hex("ffffffffffff0000 0000000000000002 ffffffff")),
            "election init: address length -1 is outside 1..=2048 bytes"
        );
        let mut wire = hex("ffffffffffff0000 0000000000000002");
        wire.put_str("127.0.0.1");
        assert_eq!(
            init_error(&wire),
            "election init: badly formed address \"127.0.0.1\" (expected host:port)"
        );
        let mut wire = hex("ffffffffffff0000 0000000000000002");
        wire.put_str("host:99999");
        assert!(init_error(&wire).contains("badly formed address"));
    }

    #[test]
    fn notification_frame_sample() {
        let config = captured_config();
        assert_eq!(config.len(), 0xba);
        let wire = [
            hex(
                "000000e6 00000000 0000000000000002 0000000000000000 0000000000000001
                 0000000000000000 00000002 000000ba",
            ),
            config.as_bytes().to_vec(),
        ]
        .concat();
        let (body, used) = decode_frame(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        let n = Notification::decode(body).unwrap();
        let want = Notification::new(ServerState::Looking, 2, 0, 1, 0, config);
        assert_eq!(n, want);
        let mut out = Vec::new();
        want.encode_frame(&mut out);
        assert_eq!(out, wire);
        for end in 0..wire.len() {
            assert_eq!(decode_frame(&wire[..end]), Ok(None));
        }
    }

    #[test]
    fn observer_vote_uses_long_min() {
        let n = Notification::new(
            ServerState::Looking,
            i64::MIN,
            i64::MIN,
            1,
            i64::MIN,
            captured_config(),
        );
        let mut out = Vec::new();
        n.encode_frame(&mut out);
        assert_eq!(&out[8..16], &hex("8000000000000000")[..]);
        let (body, _) = decode_frame(&out).unwrap().unwrap();
        assert_eq!(Notification::decode(body).unwrap(), n);
    }

    #[test]
    fn older_notification_shapes() {
        let head = hex("00000002 0000000000000003 0000000200000007 0000000000000004");
        let n = Notification::decode(&head).unwrap();
        assert_eq!(
            (n.state, n.leader, n.zxid, n.election_epoch),
            (ServerState::Leading, 3, 0x2_0000_0007, 4)
        );
        assert_eq!((n.peer_epoch, n.version, n.config), (2, 0, None));

        let forty = [head.clone(), hex("0000000000000005 00000001")].concat();
        let n = Notification::decode(&forty).unwrap();
        assert_eq!((n.peer_epoch, n.version, n.config), (5, 0, None));

        // Version 1 in 44+ bytes: no config is read, the rest is ignored.
        let v1 = [
            head.clone(),
            hex("0000000000000005 00000001 00000003 616263"),
        ]
        .concat();
        let n = Notification::decode(&v1).unwrap();
        assert_eq!((n.peer_epoch, n.version, n.config), (5, 1, None));
    }

    #[test]
    fn notification_refusals() {
        let head = hex("00000000 0000000000000003 0000000200000007 0000000000000004");
        let err = |b: &[u8]| Notification::decode(b).unwrap_err().to_string();
        assert_eq!(
            err(&head[..27]),
            "notification of 27 bytes is shorter than the 28-byte minimum"
        );
        assert_eq!(
            err(&[head.clone(), hex("00")].concat()),
            "notification of 29 bytes ends inside its peer epoch (needs 36 bytes)"
        );
        assert_eq!(
            err(&[head.clone(), hex("0000000000000005 00000002 00")].concat()),
            "notification of 41 bytes ends inside its config length (needs 44 bytes)"
        );
        assert_eq!(
            err(&[head.clone(), hex("0000000000000005 00000002 00000031")].concat()),
            "notification config length 49 is outside 0..=44, the message length"
        );
        assert_eq!(
            err(&[head.clone(), hex("0000000000000005 00000002 ffffffff")].concat()),
            "notification config length -1 is outside 0..=44, the message length"
        );
        assert_eq!(
            err(&[head.clone(), hex("0000000000000005 00000002 00000004 6162")].concat()),
            "notification of 46 bytes ends inside its config (needs 48 bytes)"
        );
        let mut bad_state = head.clone();
        bad_state[3] = 4;
        assert_eq!(
            err(&bad_state),
            "notification carries unknown server state 4"
        );
    }

    #[test]
    fn frame_length_bounds() {
        let err = |b: &[u8]| decode_frame(b).unwrap_err().to_string();
        assert_eq!(
            err(&hex("00000000")),
            "election frame length 0 is outside 1..=524288 bytes"
        );
        assert_eq!(
            err(&hex("ffffffff")),
            "election frame length -1 is outside 1..=524288 bytes"
        );
        assert_eq!(
            err(&hex("00080001")),
            "election frame length 524289 is outside 1..=524288 bytes"
        );
        // 512 KiB itself is allowed: it waits for the bytes.
        assert_eq!(decode_frame(&hex("00080000")), Ok(None));
    }

    fn any_state() -> impl Strategy<Value = ServerState> {
        (0..4i32).prop_map(|c| ServerState::from_code(c).unwrap())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Some((_, used))) = InitMessage::decode(&bytes) {
                prop_assert!(used <= bytes.len());
            }
            if let Ok(Some((body, used))) = decode_frame(&bytes) {
                prop_assert!(used <= bytes.len() && body.len() < used);
            }
            let _ = Notification::decode(&bytes);
        }

        #[test]
        fn random_init_tails_never_panic(version in prop::sample::select(vec![PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2]),
                                         len in 0..40i32, tail in prop::collection::vec(any::<u8>(), 0..48)) {
            let mut wire = version.to_be_bytes().to_vec();
            wire.extend_from_slice(&7i64.to_be_bytes());
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(&tail);
            if let Ok(Some((msg, used))) = InitMessage::decode(&wire) {
                prop_assert!(used <= wire.len());
                prop_assert!(msg.election_addrs().is_ok());
            }
        }

        #[test]
        fn notifications_round_trip(state in any_state(), leader in any::<i64>(), zxid in any::<i64>(),
                                    round in any::<i64>(), epoch in any::<i64>(), config in "[ -~\n]{0,200}",
                                    cut in any::<prop::sample::Index>()) {
            let n = Notification::new(state, leader, zxid, round, epoch, config);
            let mut wire = Vec::new();
            n.encode_frame(&mut wire);
            let (body, used) = decode_frame(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(Notification::decode(body).unwrap(), n);
            prop_assert_eq!(decode_frame(&wire[..cut.index(wire.len())]), Ok(None));
        }
    }
}
