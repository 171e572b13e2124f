//! The quorum-port codec: the `QuorumPacket` records a learner and a leader
//! exchange (PEER-PROTOCOL.md §5, §7, §10, §11, §12), their typed payloads, and
//! the one error type for everything a peer can get wrong on either peer port
//! (the election port's codec is in [`super::election`]).
//!
//! Pure and clock-free: no sockets, no files. The quorum transport (run on the
//! sequencer core, which owns the ensemble role) appends what it reads from the
//! peer's TCP stream to a buffer and calls [`QuorumPacket::decode_cached`] until
//! it yields `Ok(None)`; each packet's `data` then goes to the typed decoder its
//! `kind` calls for. The link's [`AuthCache`] (owned by its reader) lets the
//! REQUESTs of one session share a single decoded copy of their auth ids.
//! Outgoing packets are built with the constructors below — one per packet the
//! reference sends, with the reference's zxid markers and null-versus-empty
//! choices — and written with [`QuorumPacket::encode`].
//!
//! The stream has no frames: packets are bare jute records back to back. The raw
//! snapshot that follows a SNAP packet is not decoded here; after a SNAP the
//! caller hands the bytes past `consumed` to the snapshot stream codec.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use super::jute::JuteWrite;
use super::types::Id;

/// Most auth ids one REQUEST may carry. A Java learner forwards its client's
/// whole auth list (ip plus every `addauth`); this bounds what we hold per packet.
pub const AUTHINFO_COUNT_MAX: usize = 1024;
/// Most bytes the authinfo vector of one packet may take on the wire, counting
/// its count prefix and each string's length prefix.
pub const AUTHINFO_BYTES_MAX: usize = 64 * 1024;
/// Most authinfo vectors an [`AuthCache`] keeps (one per link).
pub const AUTH_CACHE_ENTRIES_MAX: usize = 8;
/// Largest authinfo vector, in wire bytes, an [`AuthCache`] keeps; longer ones
/// are decoded per packet. An ip id is about 25 bytes, a digest id about 50.
pub const AUTH_CACHE_ENTRY_BYTES_MAX: usize = 512;
/// The fixed part of a QuorumPacket: type (4), zxid (8).
const HEADER_BYTES: usize = 12;
/// What `LearnerInfo.protocolVersion` and LEADERINFO carry from 3.4 on.
pub const LEARNER_PROTOCOL_VERSION: i32 = 0x10000;
/// The zxid marker on REQUEST, REVALIDATE and UPTODATE packets.
pub const ZXID_NONE: i64 = -1;
/// One learner PING touch on the wire: session id (8), timeout (4).
const TOUCH_BYTES: usize = 12;

/// Everything a peer can send that we refuse, on the quorum or the election
/// port. Each message is one line naming what was wrong, the value and the
/// bound: the transport logs it as is and drops the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuorumDecodeError {
    #[error("unknown quorum packet type {0}")]
    UnknownPacketType(i32),
    #[error("{field} length {len} is negative (only -1, null, is allowed)")]
    NegativeLength { field: &'static str, len: i32 },
    #[error("{field} length {len} exceeds the bound of {max} bytes")]
    TooLong {
        field: &'static str,
        len: i64,
        max: usize,
    },
    #[error("authinfo count {count} is outside 0..={max} (or -1, null)")]
    AuthCount { count: i32, max: usize },
    #[error("authinfo vector reaches {bytes} bytes, over its bound of {max}")]
    AuthBytes { bytes: usize, max: usize },
    #[error("{what} packet has null data")]
    NullData { what: &'static str },
    #[error("{what} data of {len} bytes is too short: needs {needed}")]
    ShortData {
        what: &'static str,
        len: usize,
        needed: usize,
    },
    #[error("PING touch list of {len} bytes is not a whole number of 12-byte entries")]
    RaggedTouches { len: usize },
    #[error("election init: unknown protocol version {0} (expected -65536, -65535 or a sid >= 0)")]
    BadInitVersion(i64),
    #[error("election init: address length {len} is outside 1..={max} bytes")]
    BadInitAddrLength { len: i32, max: usize },
    #[error("election init: badly formed address {0:?} (expected host:port)")]
    BadElectionAddr(String),
    #[error("election frame length {len} is outside 1..={max} bytes")]
    BadFrameLength { len: i32, max: usize },
    #[error("notification of {len} bytes is shorter than the {min}-byte minimum")]
    ShortNotification { len: usize, min: usize },
    #[error("notification of {len} bytes ends inside its {field} (needs {needed} bytes)")]
    TruncatedNotification {
        field: &'static str,
        len: usize,
        needed: usize,
    },
    #[error("notification config length {config_len} is outside 0..={len}, the message length")]
    BadConfigLength { config_len: i32, len: usize },
    #[error("notification carries unknown server state {0}")]
    UnknownServerState(i32),
    #[error("{what} {value} is out of range")]
    OutOfRange { what: &'static str, value: i64 },
}

type Result<T> = std::result::Result<T, QuorumDecodeError>;

/// The QuorumPacket type codes (`Leader.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum PacketType {
    Request = 1,
    Proposal = 2,
    Ack = 3,
    Commit = 4,
    Ping = 5,
    Revalidate = 6,
    Sync = 7,
    Inform = 8,
    CommitAndActivate = 9,
    NewLeader = 10,
    FollowerInfo = 11,
    UpToDate = 12,
    Diff = 13,
    Trunc = 14,
    Snap = 15,
    ObserverInfo = 16,
    LeaderInfo = 17,
    AckEpoch = 18,
    InformAndActivate = 19,
}

impl PacketType {
    const ALL: [PacketType; 19] = [
        PacketType::Request,
        PacketType::Proposal,
        PacketType::Ack,
        PacketType::Commit,
        PacketType::Ping,
        PacketType::Revalidate,
        PacketType::Sync,
        PacketType::Inform,
        PacketType::CommitAndActivate,
        PacketType::NewLeader,
        PacketType::FollowerInfo,
        PacketType::UpToDate,
        PacketType::Diff,
        PacketType::Trunc,
        PacketType::Snap,
        PacketType::ObserverInfo,
        PacketType::LeaderInfo,
        PacketType::AckEpoch,
        PacketType::InformAndActivate,
    ];

    pub fn from_code(code: i32) -> Result<PacketType> {
        // checked: `code - 1` overflows on i32::MIN (a peer's bytes).
        code.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| Self::ALL.get(i).copied())
            .ok_or(QuorumDecodeError::UnknownPacketType(code))
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One record on the quorum port:
/// `{ int type; long zxid; buffer data; vector<Id> authinfo }`.
/// `None` is jute null (length -1); `Some` of an empty buffer or list is not null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPacket {
    pub kind: PacketType,
    pub zxid: i64,
    pub data: Option<Bytes>,
    /// Shared: a learner forwards its session's ids as they are, and a leader's
    /// link hands out one decoded copy per distinct vector ([`AuthCache`]).
    pub auth: Option<Arc<Vec<Id>>>,
}

/// The zxid that opens an epoch: `epoch << 32`, counter 0 (`ZxidUtils.makeZxid`).
pub fn epoch_zxid(epoch: i64) -> i64 {
    epoch << 32
}

impl QuorumPacket {
    pub fn new(
        kind: PacketType,
        zxid: i64,
        data: Option<Bytes>,
        auth: Option<Arc<Vec<Id>>>,
    ) -> Self {
        QuorumPacket {
            kind,
            zxid,
            data,
            auth,
        }
    }

    /// A packet with null data and null auth: 20 bytes on the wire.
    fn bare(kind: PacketType, zxid: i64) -> Self {
        Self::new(kind, zxid, None, None)
    }

    /// The largest packet [`decode`](Self::decode) accepts with this data bound:
    /// what a transport must be ready to buffer before a packet completes.
    pub const fn encoded_bytes_max(data_bytes_max: usize) -> usize {
        HEADER_BYTES + 4 + data_bytes_max + AUTHINFO_BYTES_MAX
    }

    /// How many bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        let data = self.data.as_ref().map_or(0, |d| d.len());
        let auth = self.auth.as_ref().map_or(0, |ids| {
            ids.iter().map(|id| 8 + id.scheme.len() + id.id.len()).sum()
        });
        HEADER_BYTES + 4 + data + 4 + auth
    }

    /// Appends the packet's jute record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.kind.code());
        out.put_i64(self.zxid);
        match &self.data {
            Some(d) => out.put_buffer(d),
            None => out.put_null(),
        }
        match &self.auth {
            Some(ids) => {
                out.put_i32(ids.len() as i32);
                for id in ids.iter() {
                    out.put_str(&id.scheme);
                    out.put_str(&id.id);
                }
            }
            None => out.put_null(),
        }
    }

    /// Decodes the packet at the start of `buf`. `Ok(None)`: `buf` does not yet
    /// hold a whole packet; read more and call again with the grown buffer.
    /// `Ok(Some((packet, consumed)))`: the packet took `buf[..consumed]`.
    /// A data length over `data_bytes_max`, a negative length other than -1, an
    /// authinfo vector over its bounds or an unknown type is an error as soon as
    /// its bytes are seen; nothing is allocated before the bytes it holds arrive.
    pub fn decode(buf: &[u8], data_bytes_max: usize) -> Result<Option<(QuorumPacket, usize)>> {
        Self::decode_cached(buf, data_bytes_max, None)
    }

    /// [`QuorumPacket::decode`], taking a packet's authinfo from `cache` when the
    /// link sent the same vector lately (a learner forwards every write with its
    /// session's ids), so a REQUEST's ids are not decoded and allocated again.
    pub fn decode_cached(
        buf: &[u8],
        data_bytes_max: usize,
        cache: Option<&mut AuthCache>,
    ) -> Result<Option<(QuorumPacket, usize)>> {
        let mut c = Partial::new(buf);
        let Some(code) = c.i32() else {
            return Ok(None);
        };
        let kind = PacketType::from_code(code)?;
        let Some(zxid) = c.i64() else {
            return Ok(None);
        };
        let Some(data) = c.buffer("data", data_bytes_max)? else {
            return Ok(None);
        };
        let Some(auth) = decode_authinfo(&mut c, cache)? else {
            return Ok(None);
        };
        let data = data.map(Bytes::copy_from_slice);
        Ok(Some((Self::new(kind, zxid, data, auth), c.pos)))
    }
}

/// The authinfo vector: from `cache` if it holds these bytes, else decoded (and
/// offered to the cache). Outer `None`: more bytes needed; inner `None`: null.
fn decode_authinfo(
    c: &mut Partial<'_>,
    cache: Option<&mut AuthCache>,
) -> Result<Option<Option<Arc<Vec<Id>>>>> {
    let start = c.pos;
    let Some(shape) = skip_authinfo(c)? else {
        return Ok(None);
    };
    let Some(count) = shape else {
        return Ok(Some(None));
    };
    let raw = &c.buf[start..c.pos];
    let Some(cache) = cache else {
        return Ok(Some(Some(Arc::new(authinfo_ids(raw, count)))));
    };
    if let Some(ids) = cache.get(raw) {
        return Ok(Some(Some(ids)));
    }
    let ids = Arc::new(authinfo_ids(raw, count));
    cache.put(raw, &ids);
    Ok(Some(Some(ids)))
}

/// Walks an authinfo vector, checking its bounds as its bytes arrive, allocating
/// nothing. Outer `None`: more bytes needed; `Some(None)`: null; `Some(Some(n))`:
/// `n` ids, the cursor past them.
fn skip_authinfo(c: &mut Partial<'_>) -> Result<Option<Option<usize>>> {
    let start = c.pos;
    let Some(count) = c.i32() else {
        return Ok(None);
    };
    if count == -1 {
        return Ok(Some(None));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= AUTHINFO_COUNT_MAX)
        .ok_or(QuorumDecodeError::AuthCount {
            count,
            max: AUTHINFO_COUNT_MAX,
        })?;
    // Each id is two strings: scheme, then id.
    for _ in 0..2 * count {
        if auth_string(c, start)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(Some(count)))
}

/// The ids of an authinfo vector [`skip_authinfo`] has walked (`raw`: its bytes,
/// count prefix included).
fn authinfo_ids(raw: &[u8], count: usize) -> Vec<Id> {
    let mut c = Partial::new(raw);
    c.pos = 4;
    let mut text = || match auth_string(&mut c, 0) {
        Ok(Some(Some(b))) => java_utf8_lossy(b),
        // Null reads as empty; the walk has already refused anything else.
        _ => String::new(),
    };
    (0..count)
        .map(|_| {
            let scheme = text();
            let id = text();
            Id { scheme, id }
        })
        .collect()
}

/// One ustring of an auth id: outer `None` while its bytes are missing, inner
/// `None` for null. The authinfo vector that began at `start` may not grow past
/// [`AUTHINFO_BYTES_MAX`].
fn auth_string<'a>(c: &mut Partial<'a>, start: usize) -> Result<Option<Option<&'a [u8]>>> {
    let Some(len) = c.i32() else {
        return Ok(None);
    };
    if len < -1 {
        let field = "authinfo string";
        return Err(QuorumDecodeError::NegativeLength { field, len });
    }
    let vector_bytes = c.pos - start + len.max(0) as usize;
    if vector_bytes > AUTHINFO_BYTES_MAX {
        return Err(QuorumDecodeError::AuthBytes {
            bytes: vector_bytes,
            max: AUTHINFO_BYTES_MAX,
        });
    }
    if len == -1 {
        return Ok(Some(None));
    }
    Ok(c.take(len as usize).map(Some))
}

/// The authinfo vectors one link decoded last, keyed by their wire bytes: at most
/// [`AUTH_CACHE_ENTRIES_MAX`] of them, each at most [`AUTH_CACHE_ENTRY_BYTES_MAX`]
/// bytes; a new one replaces the oldest. Owned by the link's reader task.
#[derive(Default)]
pub struct AuthCache {
    entries: VecDeque<AuthCacheEntry>,
}

/// A vector's wire bytes (count prefix included) and its decoded ids.
type AuthCacheEntry = (Box<[u8]>, Arc<Vec<Id>>);

impl AuthCache {
    fn get(&self, raw: &[u8]) -> Option<Arc<Vec<Id>>> {
        self.entries
            .iter()
            .find(|(k, _)| **k == *raw)
            .map(|(_, ids)| Arc::clone(ids))
    }

    fn put(&mut self, raw: &[u8], ids: &Arc<Vec<Id>>) {
        if raw.len() > AUTH_CACHE_ENTRY_BYTES_MAX {
            return;
        }
        if self.entries.len() == AUTH_CACHE_ENTRIES_MAX {
            self.entries.pop_front();
        }
        self.entries.push_back((raw.into(), Arc::clone(ids)));
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Decodes text the way Java's UTF-8 decoder does: a 3-byte encoded surrogate
/// (what a Java writer emits for each half of a non-BMP character, §1) becomes
/// one U+FFFD, and other malformed bytes become U+FFFD too.
pub fn java_utf8_lossy(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut fixed = bytes.to_vec();
    let mut i = 0;
    while i + 3 <= fixed.len() {
        let is_surrogate = fixed[i] == 0xED
            && (0xA0..=0xBF).contains(&fixed[i + 1])
            && (0x80..=0xBF).contains(&fixed[i + 2]);
        if is_surrogate {
            // U+FFFD is three bytes too, so the rest keeps its offsets.
            fixed[i..i + 3].copy_from_slice("\u{FFFD}".as_bytes());
            i += 3;
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&fixed).into_owned()
}

/// A read cursor that says "not yet" (`None`) instead of failing when the
/// bytes run out, so a packet can be decoded as its bytes arrive.
pub(crate) struct Partial<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Partial<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Partial { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.remaining() < n {
            return None;
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A jute buffer of at most `max` bytes. Outer `None`: more bytes needed;
    /// inner `None`: null. The length is checked before any byte of it is awaited.
    fn buffer(&mut self, field: &'static str, max: usize) -> Result<Option<Option<&'a [u8]>>> {
        let Some(len) = self.i32() else {
            return Ok(None);
        };
        if len == -1 {
            return Ok(Some(None));
        }
        if len < 0 {
            return Err(QuorumDecodeError::NegativeLength { field, len });
        }
        if len as usize > max {
            return Err(QuorumDecodeError::TooLong {
                field,
                len: len.into(),
                max,
            });
        }
        Ok(self.take(len as usize).map(Some))
    }
}

// ---------------------------------------------------------------------------
// Constructors, one per packet the reference sends.

impl QuorumPacket {
    /// REQUEST (learner → leader): a client write, sync or session op,
    /// zxid -1. `auth` is null for createSession and the client's ids otherwise.
    pub fn request(req: &LearnerRequest, auth: Option<Arc<Vec<Id>>>) -> Self {
        Self::new(PacketType::Request, ZXID_NONE, Some(req.encode()), auth)
    }

    /// PROPOSAL (leader → follower): `txn` is the txn entry (§6.1).
    pub fn proposal(zxid: i64, txn: Bytes) -> Self {
        Self::new(PacketType::Proposal, zxid, Some(txn), None)
    }

    /// ACK (learner → leader) of a proposal, or of NEWLEADER/UPTODATE with the
    /// NEWLEADER zxid.
    pub fn ack(zxid: i64) -> Self {
        Self::bare(PacketType::Ack, zxid)
    }

    pub fn commit(zxid: i64) -> Self {
        Self::bare(PacketType::Commit, zxid)
    }

    /// PING (leader → learner): zxid = the leader's last proposed, null data.
    pub fn ping_from_leader(last_proposed: i64) -> Self {
        Self::bare(PacketType::Ping, last_proposed)
    }

    /// PING reply (learner → leader): echoes the leader's zxid; data is the
    /// touch list, an empty (never null) buffer when nothing was touched.
    pub fn ping_from_learner(zxid: i64, touches: &[(i64, i32)]) -> Self {
        let data = PingTouches(touches.to_vec()).encode();
        Self::new(PacketType::Ping, zxid, Some(data), None)
    }

    /// REVALIDATE (learner → leader), zxid -1.
    pub fn revalidate_request(req: RevalidateRequest) -> Self {
        Self::new(PacketType::Revalidate, ZXID_NONE, Some(req.encode()), None)
    }

    /// REVALIDATE answer (leader → learner), zxid -1 (the reference answers with
    /// the request packet, data replaced).
    pub fn revalidate_reply(reply: RevalidateReply) -> Self {
        Self::new(
            PacketType::Revalidate,
            ZXID_NONE,
            Some(reply.encode()),
            None,
        )
    }

    /// SYNC (leader → learner): the answer to a forwarded `sync`, zxid 0.
    pub fn sync() -> Self {
        Self::bare(PacketType::Sync, 0)
    }

    /// INFORM (leader → observer): the committed txn entry, same bytes as the
    /// PROPOSAL.
    pub fn inform(zxid: i64, txn: Bytes) -> Self {
        Self::new(PacketType::Inform, zxid, Some(txn), None)
    }

    pub fn commit_and_activate(zxid: i64, designated_leader: i64) -> Self {
        let data = CommitAndActivate { designated_leader }.encode();
        Self::new(PacketType::CommitAndActivate, zxid, Some(data), None)
    }

    /// NEWLEADER (leader → learner): zxid `new_epoch << 32`, data the leader's
    /// last-seen QuorumVerifier text.
    pub fn new_leader(new_epoch: i64, config: &str) -> Self {
        let data = NewLeaderConfig::encode(config);
        Self::new(
            PacketType::NewLeader,
            epoch_zxid(new_epoch),
            Some(data),
            None,
        )
    }

    /// FOLLOWERINFO (follower → leader), the first packet: zxid
    /// `accepted_epoch << 32`.
    pub fn follower_info(accepted_epoch: i64, info: LearnerInfo) -> Self {
        let zxid = epoch_zxid(accepted_epoch);
        Self::new(PacketType::FollowerInfo, zxid, Some(info.encode()), None)
    }

    /// OBSERVERINFO (observer → leader): as FOLLOWERINFO.
    pub fn observer_info(accepted_epoch: i64, info: LearnerInfo) -> Self {
        let zxid = epoch_zxid(accepted_epoch);
        Self::new(PacketType::ObserverInfo, zxid, Some(info.encode()), None)
    }

    /// UPTODATE (leader → learner): zxid -1, null data.
    pub fn uptodate() -> Self {
        Self::bare(PacketType::UpToDate, ZXID_NONE)
    }

    pub fn diff(zxid: i64) -> Self {
        Self::bare(PacketType::Diff, zxid)
    }

    pub fn trunc(zxid: i64) -> Self {
        Self::bare(PacketType::Trunc, zxid)
    }

    /// SNAP (leader → learner): zxid = the leader's lastProcessedZxid; the raw
    /// snapshot stream follows on the socket.
    pub fn snap(zxid: i64) -> Self {
        Self::bare(PacketType::Snap, zxid)
    }

    /// LEADERINFO (leader → learner): zxid `new_epoch << 32`, data the protocol
    /// version (0x10000).
    pub fn leader_info(new_epoch: i64) -> Self {
        let data = LeaderInfo {
            protocol_version: LEARNER_PROTOCOL_VERSION,
        }
        .encode();
        Self::new(
            PacketType::LeaderInfo,
            epoch_zxid(new_epoch),
            Some(data),
            None,
        )
    }

    /// ACKEPOCH (learner → leader): zxid = the learner's last logged zxid.
    pub fn ack_epoch(last_logged_zxid: i64, ack: AckEpoch) -> Self {
        Self::new(
            PacketType::AckEpoch,
            last_logged_zxid,
            Some(ack.encode()),
            None,
        )
    }

    pub fn inform_and_activate(zxid: i64, designated_leader: i64, txn: &[u8]) -> Self {
        let data = InformAndActivate {
            designated_leader,
            txn: Bytes::copy_from_slice(txn),
        }
        .encode();
        Self::new(PacketType::InformAndActivate, zxid, Some(data), None)
    }
}

// ---------------------------------------------------------------------------
// Typed payloads. Each decoder takes the packet's `data` (`pkt.data.as_ref()`)
// and, as the reference's ByteBuffer/DataInputStream readers do, reads its
// fixed fields from the front and ignores any bytes after them.

/// `data` that must not be null, at least `needed` bytes long.
fn require<'a>(data: Option<&'a Bytes>, what: &'static str, needed: usize) -> Result<&'a Bytes> {
    let d = data.ok_or(QuorumDecodeError::NullData { what })?;
    if d.len() < needed {
        return Err(QuorumDecodeError::ShortData {
            what,
            len: d.len(),
            needed,
        });
    }
    Ok(d)
}

pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// FOLLOWERINFO / OBSERVERINFO data: `{ long serverid; int protocolVersion;
/// long configVersion }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerInfo {
    pub sid: i64,
    pub protocol_version: i32,
    pub config_version: i64,
}

impl LearnerInfo {
    /// What a 3.8 learner sends: its sid, 0x10000, its committed config version.
    pub fn new(sid: i64, config_version: i64) -> Self {
        LearnerInfo {
            sid,
            protocol_version: LEARNER_PROTOCOL_VERSION,
            config_version,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(20);
        out.put_i64(self.sid);
        out.put_i32(self.protocol_version);
        out.put_i64(self.config_version);
        out.into()
    }

    /// `Ok(None)` for null data (the reference then assigns the learner a
    /// negative sid). Older shapes are read as the leader reads them: 8 bytes
    /// is the sid alone (protocol version 0x1, the reference's default), 12
    /// adds the protocol version; a config version that is absent reads as 0,
    /// which the "learner is ahead" check never refuses.
    pub fn decode(data: Option<&Bytes>) -> Result<Option<Self>> {
        let Some(d) = data else {
            return Ok(None);
        };
        let d = require(Some(d), "LearnerInfo", 8)?;
        let protocol_version = if d.len() >= 12 { be_i32(d, 8) } else { 0x1 };
        let config_version = if d.len() >= 20 { be_i64(d, 12) } else { 0 };
        Ok(Some(LearnerInfo {
            sid: be_i64(d, 0),
            protocol_version,
            config_version,
        }))
    }
}

/// LEADERINFO data: the leader's protocol version (0x10000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderInfo {
    pub protocol_version: i32,
}

impl LeaderInfo {
    pub fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(&self.protocol_version.to_be_bytes())
    }

    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "LEADERINFO", 4)?;
        Ok(LeaderInfo {
            protocol_version: be_i32(d, 0),
        })
    }
}

/// ACKEPOCH data: the learner's current epoch as an int, or
/// [`AckEpoch::SAME_EPOCH`] when it had already accepted the proposed epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckEpoch {
    pub current_epoch: i32,
}

impl AckEpoch {
    /// "I had already accepted this epoch": the ack does not count toward the
    /// epoch quorum.
    pub const SAME_EPOCH: i32 = -1;

    pub fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(&self.current_epoch.to_be_bytes())
    }

    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "ACKEPOCH", 4)?;
        Ok(AckEpoch {
            current_epoch: be_i32(d, 0),
        })
    }
}

/// REQUEST data: `long sessionId, int cxid, int type`, then the client's
/// request record exactly as received (without its RequestHeader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerRequest {
    pub session_id: i64,
    pub cxid: i32,
    pub op: i32,
    pub body: Bytes,
}

impl LearnerRequest {
    const HEAD_BYTES: usize = 16;

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(Self::HEAD_BYTES + self.body.len());
        out.put_i64(self.session_id);
        out.put_i32(self.cxid);
        out.put_i32(self.op);
        out.extend_from_slice(&self.body);
        out.into()
    }

    /// The body is a slice of `data`, not a copy.
    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "REQUEST", Self::HEAD_BYTES)?;
        Ok(LearnerRequest {
            session_id: be_i64(d, 0),
            cxid: be_i32(d, 8),
            op: be_i32(d, 12),
            body: d.slice(Self::HEAD_BYTES..),
        })
    }
}

/// REVALIDATE data, learner → leader: `long sessionId, int timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevalidateRequest {
    pub session_id: i64,
    pub timeout_ms: i32,
}

impl RevalidateRequest {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(12);
        out.put_i64(self.session_id);
        out.put_i32(self.timeout_ms);
        out.into()
    }

    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "REVALIDATE request", 12)?;
        Ok(RevalidateRequest {
            session_id: be_i64(d, 0),
            timeout_ms: be_i32(d, 8),
        })
    }
}

/// REVALIDATE data, leader → learner: `long sessionId, boolean valid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevalidateReply {
    pub session_id: i64,
    pub valid: bool,
}

impl RevalidateReply {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(9);
        out.put_i64(self.session_id);
        out.put_bool(self.valid);
        out.into()
    }

    /// Any non-zero byte is true, as `DataInputStream.readBoolean` reads it.
    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "REVALIDATE reply", 9)?;
        Ok(RevalidateReply {
            session_id: be_i64(d, 0),
            valid: d[8] != 0,
        })
    }
}

/// A learner PING's data: the sessions touched since its last PING, as
/// `(session id, timeout ms)`, repeated `{ long; int }` with no count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PingTouches(pub Vec<(i64, i32)>);

impl PingTouches {
    /// An empty list is an empty buffer; the caller never sends it as null.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.0.len() * TOUCH_BYTES);
        for &(session_id, timeout_ms) in &self.0 {
            out.put_i64(session_id);
            out.put_i32(timeout_ms);
        }
        out.into()
    }

    /// Null data (what a leader's PING carries) reads as no touches. A length
    /// that is not a multiple of 12 is an error, as the reference's reader hits
    /// EOF inside an entry.
    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let Some(d) = data else {
            return Ok(PingTouches::default());
        };
        if d.len() % TOUCH_BYTES != 0 {
            return Err(QuorumDecodeError::RaggedTouches { len: d.len() });
        }
        let touches = d
            .chunks_exact(TOUCH_BYTES)
            .map(|e| (be_i64(e, 0), be_i32(e, 8)))
            .collect();
        Ok(PingTouches(touches))
    }
}

/// COMMITANDACTIVATE data: the designated leader's sid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitAndActivate {
    pub designated_leader: i64,
}

impl CommitAndActivate {
    pub fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(&self.designated_leader.to_be_bytes())
    }

    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "COMMITANDACTIVATE", 8)?;
        Ok(CommitAndActivate {
            designated_leader: be_i64(d, 0),
        })
    }
}

/// INFORMANDACTIVATE data: the designated leader's sid, then the txn entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformAndActivate {
    pub designated_leader: i64,
    pub txn: Bytes,
}

impl InformAndActivate {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(8 + self.txn.len());
        out.put_i64(self.designated_leader);
        out.extend_from_slice(&self.txn);
        out.into()
    }

    /// The txn is a slice of `data`, not a copy.
    pub fn decode(data: Option<&Bytes>) -> Result<Self> {
        let d = require(data, "INFORMANDACTIVATE", 8)?;
        Ok(InformAndActivate {
            designated_leader: be_i64(d, 0),
            txn: d.slice(8..),
        })
    }
}

/// NEWLEADER data: the leader's last-seen QuorumVerifier text.
pub struct NewLeaderConfig;

impl NewLeaderConfig {
    pub fn encode(config: &str) -> Bytes {
        Bytes::copy_from_slice(config.as_bytes())
    }

    /// `None` when the data is null or at most 1 byte long: the reference
    /// learner then keeps its own config. Otherwise the text, malformed UTF-8
    /// replaced as Java's decoder does.
    pub fn decode(data: Option<&Bytes>) -> Option<String> {
        data.filter(|d| d.len() > 1).map(|d| java_utf8_lossy(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{op, Acl, Reader, Request};
    use proptest::prelude::*;

    const DATA_MAX: usize = 1 << 20;
    const SESSION: i64 = 0x0100_0014_ff34_0000;

    /// Hex with any whitespace between the digits.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Encodes `p`, checking `encoded_len` says how long it is.
    fn encoded(p: &QuorumPacket) -> Vec<u8> {
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(p.encoded_len(), out.len(), "{p:?}");
        out
    }

    fn decode_whole(bytes: &[u8]) -> QuorumPacket {
        let (p, used) = QuorumPacket::decode(bytes, DATA_MAX).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        p
    }

    /// Decodes `wire`, checks the packet equals `built`, and that `built`
    /// encodes to exactly `wire`.
    fn check_sample(wire: &[u8], built: &QuorumPacket) -> QuorumPacket {
        let p = decode_whole(wire);
        assert_eq!(&p, built);
        assert_eq!(encoded(built), wire);
        p
    }

    fn error_of(bytes: &[u8]) -> String {
        QuorumPacket::decode(bytes, DATA_MAX)
            .unwrap_err()
            .to_string()
    }

    // §13 samples -----------------------------------------------------------

    #[test]
    fn followerinfo_sample() {
        let wire = hex("0000000b 0000000000000000 00000014
                        0000000000000001 00010000 0000000000000000 ffffffff");
        let p = check_sample(
            &wire,
            &QuorumPacket::follower_info(0, LearnerInfo::new(1, 0)),
        );
        let info = LearnerInfo::decode(p.data.as_ref()).unwrap().unwrap();
        assert_eq!(info.sid, 1);
        assert_eq!(info.protocol_version, 0x10000);
        assert_eq!(info.config_version, 0);
    }

    #[test]
    fn observerinfo_sample() {
        let wire = hex("00000010 0000000000000000 00000014
                        0000000000000003 00010000 0000000000000000 ffffffff");
        let p = check_sample(
            &wire,
            &QuorumPacket::observer_info(0, LearnerInfo::new(3, 0)),
        );
        assert_eq!(p.kind, PacketType::ObserverInfo);
        assert_eq!(
            LearnerInfo::decode(p.data.as_ref()).unwrap().unwrap().sid,
            3
        );
    }

    #[test]
    fn followerinfo_after_failover_carries_epoch_and_config_version() {
        let p = QuorumPacket::follower_info(1, LearnerInfo::new(2, 0x1_0000_0000));
        assert_eq!(p.zxid, 0x1_0000_0000);
        let back = decode_whole(&encoded(&p));
        let info = LearnerInfo::decode(back.data.as_ref()).unwrap().unwrap();
        assert_eq!(info.config_version, 0x1_0000_0000);
    }

    #[test]
    fn learner_info_older_shapes() {
        let eight = Bytes::from(hex("0000000000000007"));
        let info = LearnerInfo::decode(Some(&eight)).unwrap().unwrap();
        assert_eq!(
            (info.sid, info.protocol_version, info.config_version),
            (7, 1, 0)
        );
        let twelve = Bytes::from(hex("0000000000000007 00010000"));
        let info = LearnerInfo::decode(Some(&twelve)).unwrap().unwrap();
        assert_eq!(
            (info.sid, info.protocol_version, info.config_version),
            (7, 0x10000, 0)
        );
        assert_eq!(LearnerInfo::decode(None).unwrap(), None);
        let short = Bytes::from(hex("00000007"));
        assert_eq!(
            LearnerInfo::decode(Some(&short)).unwrap_err().to_string(),
            "LearnerInfo data of 4 bytes is too short: needs 8"
        );
    }

    #[test]
    fn leaderinfo_sample() {
        let wire = hex("00000011 0000000100000000 00000004 00010000 ffffffff");
        let p = check_sample(&wire, &QuorumPacket::leader_info(1));
        let li = LeaderInfo::decode(p.data.as_ref()).unwrap();
        assert_eq!(li.protocol_version, LEARNER_PROTOCOL_VERSION);
    }

    #[test]
    fn ackepoch_sample_and_same_epoch() {
        let wire = hex("00000012 0000000000000000 00000004 00000000 ffffffff");
        let p = check_sample(
            &wire,
            &QuorumPacket::ack_epoch(0, AckEpoch { current_epoch: 0 }),
        );
        assert_eq!(AckEpoch::decode(p.data.as_ref()).unwrap().current_epoch, 0);

        let same = AckEpoch {
            current_epoch: AckEpoch::SAME_EPOCH,
        };
        let wire = encoded(&QuorumPacket::ack_epoch(0x1_0000_000d, same));
        assert_eq!(
            wire,
            hex("00000012 000000010000000d 00000004 ffffffff ffffffff")
        );
        let back = decode_whole(&wire);
        assert_eq!(AckEpoch::decode(back.data.as_ref()).unwrap(), same);
    }

    #[test]
    fn diff_uptodate_and_other_null_packets_are_20_bytes() {
        check_sample(
            &hex("0000000d 0000000000000000 ffffffff ffffffff"),
            &QuorumPacket::diff(0),
        );
        check_sample(
            &hex("0000000c ffffffffffffffff ffffffff ffffffff"),
            &QuorumPacket::uptodate(),
        );
        check_sample(
            &hex("00000007 0000000000000000 ffffffff ffffffff"),
            &QuorumPacket::sync(),
        );
        check_sample(
            &hex("00000003 0000000100000000 ffffffff ffffffff"),
            &QuorumPacket::ack(0x1_0000_0000),
        );
        check_sample(
            &hex("00000004 0000000100000002 ffffffff ffffffff"),
            &QuorumPacket::commit(0x1_0000_0002),
        );
        check_sample(
            &hex("00000005 000000010000000c ffffffff ffffffff"),
            &QuorumPacket::ping_from_leader(0x1_0000_000c),
        );
        check_sample(
            &hex("0000000e 0000000100000003 ffffffff ffffffff"),
            &QuorumPacket::trunc(0x1_0000_0003),
        );
        check_sample(
            &hex("0000000f 000000010000000d ffffffff ffffffff"),
            &QuorumPacket::snap(0x1_0000_000d),
        );
    }

    #[test]
    fn request_create_session_sample() {
        let wire = hex("00000001 ffffffffffffffff 00000014
                        01000014ff340000 00000000 fffffff6 00007530 ffffffff");
        let req = LearnerRequest {
            session_id: SESSION,
            cxid: 0,
            op: op::CREATE_SESSION,
            body: Bytes::from(hex("00007530")),
        };
        let p = check_sample(&wire, &QuorumPacket::request(&req, None));
        assert_eq!(LearnerRequest::decode(p.data.as_ref()).unwrap(), req);
    }

    #[test]
    fn request_create_sample_and_its_body() {
        let wire = hex("00000001 ffffffffffffffff 00000044
             01000014ff340000 00000001 00000001
             00000008 2f70656572646f63 00000005 68656c6c6f
             00000001 0000001f 00000005 776f726c64 00000006 616e796f6e65 00000000
             00000001 00000002 6970 00000009 3132372e302e302e31");
        let p = decode_whole(&wire);
        assert_eq!(p.kind, PacketType::Request);
        assert_eq!(p.zxid, ZXID_NONE);
        assert_eq!(p.auth, Some(Arc::new(vec![Id::new("ip", "127.0.0.1")])));
        let req = LearnerRequest::decode(p.data.as_ref()).unwrap();
        assert_eq!((req.session_id, req.cxid, req.op), (SESSION, 1, op::CREATE));

        // The body is the client's CreateRequest, byte for byte.
        let body = Request::decode(req.op, &mut Reader::new(&req.body))
            .unwrap()
            .unwrap();
        let Request::Create(create) = &body else {
            panic!("not a create: {body:?}");
        };
        assert_eq!(create.path, "/peerdoc");
        assert_eq!(create.data.as_deref(), Some(&b"hello"[..]));
        assert_eq!(create.acl, Acl::open());
        assert_eq!(create.flags, 0);
        let mut rebuilt = Vec::new();
        body.encode_body(&mut rebuilt);
        assert_eq!(rebuilt, req.body);

        let built = QuorumPacket::request(&req, Some(Arc::new(vec![Id::new("ip", "127.0.0.1")])));
        assert_eq!(encoded(&built), wire);
    }

    #[test]
    fn proposal_error_txn_sample() {
        let txn = hex(
            "01000014ff340000 00000007 0000000100000008 000001a2275339d1 ffffffff
                       ffffff92",
        );
        let wire = [
            hex("00000002 0000000100000008 00000024"),
            txn.clone(),
            hex("ffffffff"),
        ]
        .concat();
        let p = check_sample(&wire, &QuorumPacket::proposal(0x1_0000_0008, txn.into()));
        assert_eq!(p.data.as_ref().unwrap().len(), 36);
    }

    #[test]
    fn inform_carries_the_proposal_bytes() {
        let txn = Bytes::from(hex("01000014ff340000 00000007 0000000100000008
                                   000001a2275339d1 ffffffff ffffff92"));
        let wire = encoded(&QuorumPacket::inform(0x1_0000_0008, txn.clone()));
        assert_eq!(&wire[..16], &hex("00000008 0000000100000008 00000024")[..]);
        assert_eq!(decode_whole(&wire).data, Some(txn));
    }

    #[test]
    fn new_leader_carries_the_config_text() {
        let config = "server.1=127.0.0.1:23192:23202:participant;127.0.0.1:23181\n\
                      version=100000000";
        let p = decode_whole(&encoded(&QuorumPacket::new_leader(1, config)));
        assert_eq!(p.kind, PacketType::NewLeader);
        assert_eq!(p.zxid, 0x1_0000_0000);
        assert_eq!(
            NewLeaderConfig::decode(p.data.as_ref()).as_deref(),
            Some(config)
        );
        assert_eq!(NewLeaderConfig::decode(None), None);
        assert_eq!(
            NewLeaderConfig::decode(Some(&Bytes::from_static(b"x"))),
            None
        );
    }

    // §7 samples --------------------------------------------------------------

    #[test]
    fn revalidate_both_ways() {
        let ask = RevalidateRequest {
            session_id: SESSION,
            timeout_ms: 30000,
        };
        let wire = hex("00000006 ffffffffffffffff 0000000c 01000014ff340000 00007530 ffffffff");
        let p = check_sample(&wire, &QuorumPacket::revalidate_request(ask));
        assert_eq!(RevalidateRequest::decode(p.data.as_ref()).unwrap(), ask);

        let answer = RevalidateReply {
            session_id: SESSION,
            valid: true,
        };
        let wire = hex("00000006 ffffffffffffffff 00000009 01000014ff340000 01 ffffffff");
        let p = check_sample(&wire, &QuorumPacket::revalidate_reply(answer));
        assert_eq!(RevalidateReply::decode(p.data.as_ref()).unwrap(), answer);
        let odd_true = Bytes::from(hex("01000014ff340000 7f"));
        assert!(RevalidateReply::decode(Some(&odd_true)).unwrap().valid);
    }

    #[test]
    fn learner_ping_touches() {
        let wire = hex("00000005 000000010000000c 0000000c 01000014ff340000 00007530 ffffffff");
        let p = check_sample(
            &wire,
            &QuorumPacket::ping_from_learner(0x1_0000_000c, &[(SESSION, 30000)]),
        );
        assert_eq!(
            PingTouches::decode(p.data.as_ref()).unwrap().0,
            vec![(SESSION, 30000)]
        );
        // Nothing touched: an empty buffer, not null.
        let empty = QuorumPacket::ping_from_learner(0x1_0000_000c, &[]);
        assert_eq!(
            encoded(&empty),
            hex("00000005 000000010000000c 00000000 ffffffff")
        );
        assert!(PingTouches::decode(empty.data.as_ref())
            .unwrap()
            .0
            .is_empty());
        let ragged = Bytes::from(hex("01000014ff340000 0000"));
        assert_eq!(
            PingTouches::decode(Some(&ragged)).unwrap_err().to_string(),
            "PING touch list of 10 bytes is not a whole number of 12-byte entries"
        );
    }

    // §11 payloads -------------------------------------------------------------

    #[test]
    fn reconfig_activation_payloads() {
        let p = decode_whole(&encoded(&QuorumPacket::commit_and_activate(
            0x2_0000_0005,
            3,
        )));
        assert_eq!(p.kind, PacketType::CommitAndActivate);
        assert_eq!(
            CommitAndActivate::decode(p.data.as_ref()).unwrap(),
            CommitAndActivate {
                designated_leader: 3
            }
        );
        let txn = hex("01000014ff340000 00000007 0000000200000005 000001a2275339d1 00000010");
        let wire = encoded(&QuorumPacket::inform_and_activate(0x2_0000_0005, 3, &txn));
        assert_eq!(&wire[16..24], &hex("0000000000000003")[..]);
        let p = decode_whole(&wire);
        let ia = InformAndActivate::decode(p.data.as_ref()).unwrap();
        assert_eq!((ia.designated_leader, &ia.txn[..]), (3, &txn[..]));
    }

    #[test]
    fn null_data_where_a_payload_is_required() {
        assert_eq!(
            LearnerRequest::decode(None).unwrap_err().to_string(),
            "REQUEST packet has null data"
        );
        let short = Bytes::from_static(&[0, 1]);
        assert_eq!(
            LeaderInfo::decode(Some(&short)).unwrap_err().to_string(),
            "LEADERINFO data of 2 bytes is too short: needs 4"
        );
    }

    // Incremental decoding -----------------------------------------------------

    fn sample_packets() -> Vec<QuorumPacket> {
        let req = LearnerRequest {
            session_id: SESSION,
            cxid: 1,
            op: op::DELETE,
            body: Bytes::from(hex("00000002 2f61 ffffffff")),
        };
        vec![
            QuorumPacket::follower_info(0, LearnerInfo::new(1, 0)),
            QuorumPacket::leader_info(1),
            QuorumPacket::ack_epoch(0, AckEpoch { current_epoch: 0 }),
            QuorumPacket::diff(0),
            QuorumPacket::new_leader(1, "server.1=127.0.0.1:1:2:participant\nversion=0"),
            QuorumPacket::uptodate(),
            QuorumPacket::request(&req, Some(Arc::new(vec![Id::new("ip", "127.0.0.1")]))),
            QuorumPacket::request(&req, Some(Arc::new(vec![]))),
            QuorumPacket::ping_from_learner(5, &[]),
            QuorumPacket::proposal(0x1_0000_0001, Bytes::from(vec![7; 300])),
        ]
    }

    #[test]
    fn one_byte_at_a_time_yields_one_packet_at_the_last_byte() {
        for p in sample_packets() {
            let wire = encoded(&p);
            for end in 0..wire.len() {
                assert_eq!(
                    QuorumPacket::decode(&wire[..end], DATA_MAX),
                    Ok(None),
                    "{p:?}"
                );
            }
            assert_eq!(decode_whole(&wire), p);
        }
    }

    #[test]
    fn packets_back_to_back_decode_in_turn() {
        let packets = sample_packets();
        let mut stream = Vec::new();
        for p in &packets {
            p.encode(&mut stream);
        }
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((p, used)) = QuorumPacket::decode(&stream[at..], DATA_MAX).unwrap() {
            got.push(p);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(got, packets);
    }

    #[test]
    fn snap_leaves_the_raw_stream_to_the_caller() {
        let mut stream = encoded(&QuorumPacket::snap(0x2_0000_0000));
        stream.extend_from_slice(&hex("00000000 00000000"));
        let (p, used) = QuorumPacket::decode(&stream, DATA_MAX).unwrap().unwrap();
        assert_eq!((p.kind, used), (PacketType::Snap, 20));
    }

    // Hostile input ------------------------------------------------------------

    #[test]
    fn packet_type_codes() {
        for code in 1..=19 {
            assert_eq!(PacketType::from_code(code).unwrap().code(), code);
        }
        assert_eq!(error_of(&hex("00000000")), "unknown quorum packet type 0");
        assert_eq!(error_of(&hex("00000014")), "unknown quorum packet type 20");
        assert_eq!(error_of(&hex("ffffffff")), "unknown quorum packet type -1");
    }

    /// Found by fuzz/quorum_packet: type i32::MIN overflowed `code - 1` (a panic
    /// where overflow checks are on, as in debug builds).
    #[test]
    fn packet_type_i32_min_is_unknown_not_an_overflow() {
        assert_eq!(
            PacketType::from_code(i32::MIN),
            Err(QuorumDecodeError::UnknownPacketType(i32::MIN))
        );
        assert_eq!(
            error_of(&hex("80000000 0000000000000000 ffffffff ffffffff")),
            "unknown quorum packet type -2147483648"
        );
    }

    #[test]
    fn bad_data_lengths() {
        assert_eq!(
            error_of(&hex("00000002 0000000000000001 fffffffe")),
            "data length -2 is negative (only -1, null, is allowed)"
        );
        // Refused on sight, before any of the claimed bytes arrive.
        assert_eq!(
            error_of(&hex("00000002 0000000000000001 7fffffff")),
            "data length 2147483647 exceeds the bound of 1048576 bytes"
        );
        assert_eq!(
            QuorumPacket::decode(&hex("00000002 0000000000000001 00000011"), 16)
                .unwrap_err()
                .to_string(),
            "data length 17 exceeds the bound of 16 bytes"
        );
    }

    #[test]
    fn bad_authinfo() {
        let head = hex("00000001 ffffffffffffffff ffffffff");
        let with = |tail: &str| [head.clone(), hex(tail)].concat();
        assert_eq!(
            error_of(&with("00000401")),
            "authinfo count 1025 is outside 0..=1024 (or -1, null)"
        );
        assert_eq!(
            error_of(&with("fffffffe")),
            "authinfo count -2 is outside 0..=1024 (or -1, null)"
        );
        assert_eq!(
            error_of(&with("00000001 fffffff0")),
            "authinfo string length -16 is negative (only -1, null, is allowed)"
        );
        assert_eq!(
            error_of(&with("00000001 00010000")),
            "authinfo vector reaches 65544 bytes, over its bound of 65536"
        );
        // A null id string reads as empty.
        let p = decode_whole(&with("00000001 ffffffff 00000001 78"));
        assert_eq!(p.auth, Some(Arc::new(vec![Id::new("", "x")])));
    }

    /// A REQUEST carrying `ids`, encoded.
    fn request_with(ids: Vec<Id>) -> Vec<u8> {
        let req = LearnerRequest {
            session_id: SESSION,
            cxid: 1,
            op: 5,
            body: Bytes::from_static(b"body"),
        };
        encoded(&QuorumPacket::request(&req, Some(Arc::new(ids))))
    }

    fn auth_of(bytes: &[u8], cache: &mut AuthCache) -> Arc<Vec<Id>> {
        let (p, used) = QuorumPacket::decode_cached(bytes, 1 << 20, Some(cache))
            .unwrap()
            .unwrap();
        assert_eq!(used, bytes.len());
        p.auth.unwrap()
    }

    #[test]
    fn auth_cache_shares_one_decoded_copy_per_vector() {
        let mut cache = AuthCache::default();
        let ip = request_with(vec![Id::new("ip", "127.0.0.1")]);
        let first = auth_of(&ip, &mut cache);
        let again = auth_of(&ip, &mut cache);
        assert!(Arc::ptr_eq(&first, &again), "the same bytes share one copy");
        assert_eq!(*first, vec![Id::new("ip", "127.0.0.1")]);

        let two = vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "bob:x")];
        let other = auth_of(&request_with(two.clone()), &mut cache);
        assert_eq!(*other, two);
        assert!(Arc::ptr_eq(&first, &auth_of(&ip, &mut cache)));
        assert_eq!(cache.len(), 2);

        // Bounded: the oldest goes when a new vector arrives at the bound.
        for i in 0..AUTH_CACHE_ENTRIES_MAX {
            auth_of(
                &request_with(vec![Id::new("ip", &format!("10.0.0.{i}"))]),
                &mut cache,
            );
        }
        assert_eq!(cache.len(), AUTH_CACHE_ENTRIES_MAX);
        let after = auth_of(&ip, &mut cache);
        assert!(!Arc::ptr_eq(&first, &after), "the ip vector was evicted");
        assert_eq!(after, first);

        // A vector over the entry bound is decoded each time, never kept.
        let big = vec![Id::new("digest", &"x".repeat(AUTH_CACHE_ENTRY_BYTES_MAX))];
        let mut fresh = AuthCache::default();
        let a = auth_of(&request_with(big.clone()), &mut fresh);
        let b = auth_of(&request_with(big.clone()), &mut fresh);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(*a, big);
        assert!(fresh.is_empty());
    }

    #[test]
    fn auth_cache_waits_for_the_whole_vector() {
        // A packet cut inside its authinfo is "more bytes needed", cache or not,
        // and nothing is cached from it.
        let ip = request_with(vec![Id::new("ip", "127.0.0.1")]);
        let mut cache = AuthCache::default();
        for cut in 0..ip.len() {
            let got = QuorumPacket::decode_cached(&ip[..cut], 1 << 20, Some(&mut cache));
            assert!(matches!(got, Ok(None)), "cut at {cut}");
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn java_style_string_decoding() {
        // What Java writes for "a\0é😀": each surrogate half is one U+FFFD.
        let cesu = hex("61 00 c3a9 eda0bd edb880");
        assert_eq!(java_utf8_lossy(&cesu), "a\0é\u{FFFD}\u{FFFD}");
        assert_eq!(java_utf8_lossy("é😀".as_bytes()), "é😀");
    }

    fn any_packet() -> impl Strategy<Value = QuorumPacket> {
        let data = prop::option::of(prop::collection::vec(any::<u8>(), 0..64));
        let id = ("[a-z]{0,6}", "[ -~é]{0,12}").prop_map(|(s, i)| Id::new(&s, &i));
        let auth = prop::option::of(prop::collection::vec(id, 0..4));
        (1..=19i32, any::<i64>(), data, auth).prop_map(|(code, zxid, data, auth)| {
            QuorumPacket::new(
                PacketType::from_code(code).unwrap(),
                zxid,
                data.map(Bytes::from),
                auth.map(Arc::new),
            )
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(code in 0..=20i32, tail in prop::collection::vec(any::<u8>(), 0..256),
                                    max in 0usize..128) {
            // Mostly a valid type code, so the random part reaches the lengths.
            let bytes = [&code.to_be_bytes()[..], &tail].concat();
            if let Ok(Some((p, used))) = QuorumPacket::decode(&bytes, max) {
                prop_assert!(used <= bytes.len());
                prop_assert!(used <= QuorumPacket::encoded_bytes_max(max));
                prop_assert!(p.data.as_ref().map_or(0, |d| d.len()) <= max);
                let data = p.data.as_ref();
                let _ = LearnerInfo::decode(data);
                let _ = LeaderInfo::decode(data);
                let _ = AckEpoch::decode(data);
                let _ = LearnerRequest::decode(data);
                let _ = RevalidateRequest::decode(data);
                let _ = RevalidateReply::decode(data);
                let _ = PingTouches::decode(data);
                let _ = CommitAndActivate::decode(data);
                let _ = InformAndActivate::decode(data);
                let _ = NewLeaderConfig::decode(data);
            }
        }

        #[test]
        fn valid_packets_round_trip_and_truncations_wait(p in any_packet(), cut in any::<prop::sample::Index>()) {
            let wire = encoded(&p);
            let (back, used) = QuorumPacket::decode(&wire, DATA_MAX).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(back, p);
            let end = cut.index(wire.len());
            prop_assert_eq!(QuorumPacket::decode(&wire[..end], DATA_MAX), Ok(None));
        }

        #[test]
        fn a_cache_changes_no_decoded_packet(ps in prop::collection::vec(any_packet(), 1..24)) {
            // One link's stream, decoded with its cache, gives the packets a cold
            // decode gives, whatever the cache holds from the packets before.
            let mut cache = AuthCache::default();
            for p in ps {
                let wire = encoded(&p);
                let cold = QuorumPacket::decode(&wire, DATA_MAX);
                let warm = QuorumPacket::decode_cached(&wire, DATA_MAX, Some(&mut cache));
                prop_assert_eq!(&warm, &cold);
                prop_assert_eq!(warm.unwrap().unwrap().0, p);
                prop_assert!(cache.len() <= AUTH_CACHE_ENTRIES_MAX);
            }
        }

        #[test]
        fn corrupted_packets_never_panic(p in any_packet(), at in any::<prop::sample::Index>(),
                                         byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut wire = encoded(&p);
            let i = at.index(wire.len());
            wire[i] = byte;
            let end = cut.index(wire.len() + 1);
            if let Ok(Some((_, used))) = QuorumPacket::decode(&wire[..end], 64) {
                prop_assert!(used <= end);
            }
        }
    }
}
