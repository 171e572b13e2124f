//! Txns: the decided form of a write, and ZooKeeper's "txn entry" encoding of it
//! (PEER-PROTOCOL.md §6.1–§6.3): `TxnHeader {clientId, cxid, zxid, time, type}`, the
//! jute record for that type, then an optional `TxnDigest {version, treeDigest}`. The
//! same bytes are a PROPOSAL's payload, a DIFF entry, an INFORM, a reference txn-log
//! record and corral's own log record.
//!
//! [`super::prepare`] fills in everything that needs a choice (zxid, time, sequence
//! suffix, owner, expanded ACL, or the error), so [`super::apply`] is deterministic on
//! every replica. A txn is encoded on the sequencer core (after apply, when the digest
//! to carry is known) and decoded by recovery and, later, by replicas. Decoding is
//! bounds-checked because the bytes come from disk or from a peer: counts are bounded
//! by named limits and by the bytes left, nothing is allocated from an unchecked
//! length, multi cannot nest and an unknown type is an error. Strings are written as
//! Java's jute writes them (each UTF-16 unit on its own, CESU-8) and read as Java reads
//! them (a surrogate triplet becomes U+FFFD), so a Java leader's txn always decodes.
//! Pure data; no IO.

use crate::proto::{op, Acl, CreateKind, DecodeError, ErrorCode, Id, JuteWrite, Reader};

use super::digest::DIGEST_VERSION;
use super::{ttl_owner, CONFIG, CONTAINER_EPHEMERAL_OWNER, TTL_MS_MAX};

/// One logged, replicated state change (or a failed request that still took a zxid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// `TxnHeader.clientId`: the session the txn belongs to (0 for the server's own
    /// container/TTL cleanup).
    pub session_id: i64,
    /// `TxnHeader.cxid`: the client's xid; 0 for createSession, server-generated
    /// closes and cleanup.
    pub cxid: i32,
    pub zxid: i64,
    /// The leader's wall-clock ms when it prepared the txn.
    pub time_ms: i64,
    pub op: TxnOp,
}

/// A decided create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTxn {
    /// Final path (sequence suffix included).
    pub path: String,
    /// `None`: the null buffer (−1 in the record), kept so the node reads back null.
    pub data: Option<Vec<u8>>,
    /// Validated and expanded ACL.
    pub acl: Vec<Acl>,
    /// Internal owner: the txn's session id for ephemerals, 0, the container marker or
    /// a TTL marker (see [`super::NodeKind`]). Not on the wire: it follows from `kind`,
    /// the record's ephemeral flag or ttl, and the header's session id.
    pub ephemeral_owner: i64,
    /// The parent's internal cversion after this create.
    pub parent_cversion: i32,
    /// Which create opcode asked: the txn type, and the reply shape.
    pub kind: CreateKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// create 1 / create2 15 (CreateTxn), createContainer 19, createTTL 21.
    Create(CreateTxn),
    /// delete 2: a client's delete.
    Delete { path: String },
    /// deleteContainer 20: the server's own container and TTL cleanup. Applies as a
    /// delete.
    DeleteContainer { path: String },
    /// setData 5. `version` is the node's new version; `data` `None` is null.
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    /// setACL 7. `version` is the node's new aversion.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// check 13, only inside a multi: a passed version check. `version` is the node's
    /// version + 1, as the reference's CheckVersionTxn carries it.
    Check { path: String, version: i32 },
    /// multi 14: one zxid for all ops. Its ops are creates (not create2), deletes,
    /// deleteContainers, setDatas, checks and errors. A multi holding an error op
    /// failed: the ops before the failing one keep their txns, the failing one is
    /// `Error(code)`, every later one `Error(RuntimeInconsistency)`, and it changes
    /// nothing. Otherwise every op applies, atomically.
    Multi(Vec<TxnOp>),
    /// error -1 (ErrorTxn): a failed request. Changes nothing; carries no digest.
    Error(ErrorCode),
    /// createSession -10.
    CreateSession { timeout_ms: i32 },
    /// closeSession -11: deletes these ephemerals of the txn's session.
    CloseSession { paths: Vec<String> },
    /// reconfig 16: a SetDataTxn on `/zookeeper/config` with the new config text;
    /// applies as that setData. `version` is the node's new version (−1 from the
    /// reference).
    Reconfig { data: Vec<u8>, version: i32 },
}

/// Bytes of an encoded `TxnDigest` (int version, long treeDigest).
pub const TXN_DIGEST_BYTES: usize = 12;
/// Bytes of an encoded `TxnHeader`.
const TXN_HEADER_BYTES: usize = 32;

/// Upper bound on ops in one multi when decoding (a multi must fit one jute.maxbuffer
/// packet, and each op takes at least 8 bytes).
const MULTI_OPS_COUNT_MAX: usize = 1 << 18;
/// Upper bound on entries in one decoded ACL list.
const ACL_ENTRIES_COUNT_MAX: usize = 1 << 16;
/// Upper bound on paths in one decoded closeSession.
const CLOSE_PATHS_COUNT_MAX: usize = 1 << 20;

/// Smallest encoding of one element of each vector: bounds a claimed count by the
/// bytes left before anything is allocated.
const MULTI_OP_BYTES_MIN: usize = 8;
const ACL_ENTRY_BYTES_MIN: usize = 12;
const PATH_BYTES_MIN: usize = 4;

impl Txn {
    /// Appends ZooKeeper's txn entry: header, record, then `TxnDigest {2, digest}` if
    /// `digest` is given and the txn carries one (an error txn never does).
    pub fn encode(&self, out: &mut Vec<u8>, digest: Option<u64>) {
        out.reserve(TXN_HEADER_BYTES + TXN_DIGEST_BYTES);
        out.put_i64(self.session_id);
        out.put_i32(self.cxid);
        out.put_i64(self.zxid);
        out.put_i64(self.time_ms);
        out.put_i32(self.op.opcode());
        self.op.encode_record(out, self.session_id);
        if let Some(d) = digest.filter(|_| self.carries_digest()) {
            Txn::encode_digest(out, d);
        }
    }

    /// Appends a `TxnDigest` of the current version. `encode(out, None)` followed by
    /// this equals `encode(out, Some(digest))` for a txn that [`Txn::carries_digest`]:
    /// a writer can size the entry before it knows the digest.
    pub fn encode_digest(out: &mut Vec<u8>, digest: u64) {
        out.put_i32(DIGEST_VERSION);
        out.put_i64(digest as i64);
    }

    /// False for an error txn, which the reference writes without a digest.
    pub fn carries_digest(&self) -> bool {
        !matches!(self.op, TxnOp::Error(_))
    }

    /// Decodes exactly one txn entry occupying all of `b`, and its digest: `None` when
    /// the entry ends where the digest would start, or when it is of another digest
    /// version (not comparable, not an error).
    pub fn decode(b: &[u8]) -> Result<(Txn, Option<u64>), DecodeError> {
        let mut r = Reader::new(b);
        let session_id = r.i64()?;
        let cxid = r.i32()?;
        let zxid = r.i64()?;
        let time_ms = r.i64()?;
        let ty = r.i32()?;
        let op = TxnOp::decode_record(&mut r, ty, session_id, Level::Top)?;
        let digest = decode_digest(&mut r)?;
        if !r.is_empty() {
            return Err(DecodeError::TooLong {
                len: b.len(),
                max: r.position(),
            });
        }
        let txn = Txn {
            session_id,
            cxid,
            zxid,
            time_ms,
            op,
        };
        Ok((txn, digest))
    }

    /// True if applying this txn changes the tree (reads nothing else).
    pub fn is_change(&self) -> bool {
        match &self.op {
            TxnOp::Multi(ops) => !multi_failed(ops),
            op => matches!(
                op,
                TxnOp::Create(_)
                    | TxnOp::Delete { .. }
                    | TxnOp::DeleteContainer { .. }
                    | TxnOp::SetData { .. }
                    | TxnOp::SetAcl { .. }
                    | TxnOp::CloseSession { .. }
                    | TxnOp::Reconfig { .. }
            ),
        }
    }
}

/// True if a multi's ops record a failure (any error op), as the reference decides.
pub(crate) fn multi_failed(ops: &[TxnOp]) -> bool {
    ops.iter().any(|o| matches!(o, TxnOp::Error(_)))
}

/// Where a record is being decoded: what types are allowed there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    InMulti,
}

impl TxnOp {
    /// The txn type (`ZooDefs.OpCode`) in the header or in a multi's op.
    pub fn opcode(&self) -> i32 {
        match self {
            TxnOp::Create(c) => c.kind.opcode(),
            TxnOp::Delete { .. } => op::DELETE,
            TxnOp::DeleteContainer { .. } => op::DELETE_CONTAINER,
            TxnOp::SetData { .. } => op::SET_DATA,
            TxnOp::SetAcl { .. } => op::SET_ACL,
            TxnOp::Check { .. } => op::CHECK,
            TxnOp::Multi(_) => op::MULTI,
            TxnOp::Error(_) => op::ERROR,
            TxnOp::CreateSession { .. } => op::CREATE_SESSION,
            TxnOp::CloseSession { .. } => op::CLOSE_SESSION,
            TxnOp::Reconfig { .. } => op::RECONFIG,
        }
    }

    /// The jute record of this op. `session_id` is the header's, which an ephemeral
    /// create's owner must be.
    fn encode_record(&self, out: &mut Vec<u8>, session_id: i64) {
        match self {
            TxnOp::Create(c) => encode_create(c, out, session_id),
            TxnOp::Delete { path } | TxnOp::DeleteContainer { path } => put_ustring(out, path),
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                put_ustring(out, path);
                out.put_opt_buffer(data.as_deref());
                out.put_i32(*version);
            }
            TxnOp::SetAcl { path, acl, version } => {
                put_ustring(out, path);
                put_acl(out, acl);
                out.put_i32(*version);
            }
            TxnOp::Check { path, version } => {
                put_ustring(out, path);
                out.put_i32(*version);
            }
            TxnOp::Multi(ops) => encode_multi(ops, out, session_id),
            TxnOp::Error(e) => out.put_i32(e.code()),
            TxnOp::CreateSession { timeout_ms } => out.put_i32(*timeout_ms),
            TxnOp::CloseSession { paths } => {
                out.put_i32(len_i32(paths.len()));
                for p in paths {
                    put_ustring(out, p);
                }
            }
            TxnOp::Reconfig { data, version } => {
                put_ustring(out, CONFIG);
                out.put_buffer(data);
                out.put_i32(*version);
            }
        }
    }

    fn decode_record(
        r: &mut Reader<'_>,
        ty: i32,
        session_id: i64,
        level: Level,
    ) -> Result<TxnOp, DecodeError> {
        let top = level == Level::Top;
        Ok(match ty {
            op::CREATE => TxnOp::Create(decode_create(r, CreateKind::Create, session_id)?),
            op::CREATE2 if top => TxnOp::Create(decode_create(r, CreateKind::Create2, session_id)?),
            op::CREATE_CONTAINER => {
                TxnOp::Create(decode_create(r, CreateKind::Container, session_id)?)
            }
            op::CREATE_TTL => TxnOp::Create(decode_create(r, CreateKind::Ttl, session_id)?),
            op::DELETE => TxnOp::Delete { path: ustring(r)? },
            op::DELETE_CONTAINER => TxnOp::DeleteContainer { path: ustring(r)? },
            op::SET_DATA => TxnOp::SetData {
                path: ustring(r)?,
                data: r.opt_bytes()?,
                version: r.i32()?,
            },
            op::SET_ACL if top => TxnOp::SetAcl {
                path: ustring(r)?,
                acl: acl_list(r)?,
                version: r.i32()?,
            },
            op::CHECK if !top => TxnOp::Check {
                path: ustring(r)?,
                version: r.i32()?,
            },
            op::MULTI if top => TxnOp::Multi(decode_multi(r, session_id)?),
            op::ERROR => TxnOp::Error(error_from(r.i32()?)?),
            op::CREATE_SESSION if top => TxnOp::CreateSession {
                timeout_ms: r.i32()?,
            },
            op::CLOSE_SESSION if top => TxnOp::CloseSession {
                paths: close_paths(r)?,
            },
            op::RECONFIG if top => decode_reconfig(r)?,
            value => {
                return Err(DecodeError::BadEnum {
                    what: if top {
                        "txn type"
                    } else {
                        "txn type inside a multi"
                    },
                    value,
                })
            }
        })
    }
}

// ----- records -------------------------------------------------------------------

/// CreateTxn {path, data, acl, ephemeral, parentCVersion}; CreateContainerTxn {path,
/// data, acl, parentCVersion}; CreateTTLTxn {path, data, acl, parentCVersion, ttl}.
fn encode_create(c: &CreateTxn, out: &mut Vec<u8>, session_id: i64) {
    put_ustring(out, &c.path);
    out.put_opt_buffer(c.data.as_deref());
    put_acl(out, &c.acl);
    match c.kind {
        CreateKind::Create | CreateKind::Create2 => {
            assert!(
                c.ephemeral_owner == 0 || c.ephemeral_owner == session_id,
                "create of {} owned by {:#x} in a txn of session {session_id:#x}",
                c.path,
                c.ephemeral_owner
            );
            out.put_bool(c.ephemeral_owner != 0);
            out.put_i32(c.parent_cversion);
        }
        CreateKind::Container => out.put_i32(c.parent_cversion),
        CreateKind::Ttl => {
            out.put_i32(c.parent_cversion);
            out.put_i64(c.ephemeral_owner & TTL_MS_MAX);
        }
    }
}

fn decode_create(
    r: &mut Reader<'_>,
    kind: CreateKind,
    session_id: i64,
) -> Result<CreateTxn, DecodeError> {
    let path = ustring(r)?;
    let data = r.opt_bytes()?;
    let acl = acl_list(r)?;
    let (ephemeral_owner, parent_cversion) = match kind {
        CreateKind::Create | CreateKind::Create2 => {
            let ephemeral = r.bool()?;
            let parent_cversion = r.i32()?;
            (if ephemeral { session_id } else { 0 }, parent_cversion)
        }
        CreateKind::Container => (CONTAINER_EPHEMERAL_OWNER, r.i32()?),
        CreateKind::Ttl => {
            let parent_cversion = r.i32()?;
            (ttl_owner(valid_ttl(r.i64()?)?), parent_cversion)
        }
    };
    Ok(CreateTxn {
        path,
        data,
        acl,
        ephemeral_owner,
        parent_cversion,
        kind,
    })
}

/// A TTL the reference's `EphemeralType.TTL.toEphemeralOwner` accepts: 1..=max.
fn valid_ttl(ttl: i64) -> Result<i64, DecodeError> {
    if ttl <= 0 || ttl > TTL_MS_MAX {
        return Err(DecodeError::BadEnum {
            what: "createTTL ttl (ms, must be 1..=TTL_MS_MAX; low 32 bits shown)",
            value: ttl as i32,
        });
    }
    Ok(ttl)
}

/// MultiTxn: `vector<Txn {int type; buffer data}>`, data the op's own record.
fn encode_multi(ops: &[TxnOp], out: &mut Vec<u8>, session_id: i64) {
    out.put_i32(len_i32(ops.len()));
    for o in ops {
        assert!(
            !matches!(o, TxnOp::Multi(_)),
            "a multi inside a multi cannot be encoded"
        );
        out.put_i32(o.opcode());
        let at = out.len();
        out.put_i32(0);
        o.encode_record(out, session_id);
        let len = len_i32(out.len() - at - 4);
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

fn decode_multi(r: &mut Reader<'_>, session_id: i64) -> Result<Vec<TxnOp>, DecodeError> {
    let n = count(r, MULTI_OPS_COUNT_MAX, MULTI_OP_BYTES_MIN)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let ty = r.i32()?;
        let data = r.buffer()?.unwrap_or_default();
        let mut sub = Reader::new(data);
        ops.push(TxnOp::decode_record(
            &mut sub,
            ty,
            session_id,
            Level::InMulti,
        )?);
        if !sub.is_empty() {
            return Err(DecodeError::TooLong {
                len: data.len(),
                max: sub.position(),
            });
        }
    }
    Ok(ops)
}

/// A reconfig's SetDataTxn; the reference only ever writes it for `/zookeeper/config`.
fn decode_reconfig(r: &mut Reader<'_>) -> Result<TxnOp, DecodeError> {
    let path = ustring(r)?;
    if path != CONFIG {
        return Err(DecodeError::BadEnum {
            what: "reconfig txn for a path other than /zookeeper/config (type shown)",
            value: op::RECONFIG,
        });
    }
    Ok(TxnOp::Reconfig {
        data: r.bytes()?,
        version: r.i32()?,
    })
}

fn close_paths(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = count(r, CLOSE_PATHS_COUNT_MAX, PATH_BYTES_MIN)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(ustring(r)?);
    }
    Ok(v)
}

/// The optional trailing TxnDigest.
fn decode_digest(r: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    if r.is_empty() {
        return Ok(None);
    }
    let version = r.i32()?;
    let digest = r.i64()? as u64;
    Ok((version == DIGEST_VERSION).then_some(digest))
}

fn error_from(c: i32) -> Result<ErrorCode, DecodeError> {
    ErrorCode::from_code(c).ok_or(DecodeError::BadEnum {
        what: "error code",
        value: c,
    })
}

// ----- jute pieces -----------------------------------------------------------------

/// A vector count: −1 (null) reads as empty; otherwise at most `max` and at most what
/// the bytes left can hold at `elem_bytes_min` each.
fn count(r: &mut Reader<'_>, max: usize, elem_bytes_min: usize) -> Result<usize, DecodeError> {
    let n = r.i32()?;
    if n == -1 {
        return Ok(0);
    }
    if n < 0 {
        return Err(DecodeError::BadLength(n));
    }
    let n = n as usize;
    let fits = r.remaining() / elem_bytes_min;
    if n > max || n > fits {
        return Err(DecodeError::TooLong {
            len: n,
            max: max.min(fits),
        });
    }
    Ok(n)
}

/// A length or count we encode: our own values always fit a jute int.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).expect("a txn field longer than 2 GiB")
}

fn put_acl(out: &mut Vec<u8>, acl: &[Acl]) {
    out.put_i32(len_i32(acl.len()));
    for a in acl {
        out.put_i32(a.perms);
        put_ustring(out, &a.id.scheme);
        put_ustring(out, &a.id.id);
    }
}

fn acl_list(r: &mut Reader<'_>) -> Result<Vec<Acl>, DecodeError> {
    let n = count(r, ACL_ENTRIES_COUNT_MAX, ACL_ENTRY_BYTES_MIN)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let perms = r.i32()?;
        let scheme = ustring(r)?;
        let id = ustring(r)?;
        v.push(Acl {
            perms,
            id: Id { scheme, id },
        });
    }
    Ok(v)
}

/// A jute ustring as Java writes it: every UTF-16 unit on its own, so a character
/// outside the BMP becomes two 3-byte surrogate encodings (CESU-8).
fn put_ustring(out: &mut Vec<u8>, s: &str) {
    // Only 4-byte UTF-8 sequences (lead byte ≥ 0xF0) differ.
    if !s.bytes().any(|b| b >= 0xF0) {
        out.put_str(s);
        return;
    }
    let at = out.len();
    out.put_i32(0);
    for c in s.chars() {
        let mut units = [0u16; 2];
        for &u in c.encode_utf16(&mut units).iter() {
            put_utf16_unit(out, u);
        }
    }
    let len = len_i32(out.len() - at - 4);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// One UTF-16 unit in 1, 2 or 3 bytes (NUL as 0x00), as `BinaryOutputArchive` does.
fn put_utf16_unit(out: &mut Vec<u8>, u: u16) {
    match u {
        0..=0x7f => out.push(u as u8),
        0x80..=0x7ff => out.extend_from_slice(&[0xc0 | (u >> 6) as u8, 0x80 | (u & 0x3f) as u8]),
        _ => out.extend_from_slice(&[
            0xe0 | (u >> 12) as u8,
            0x80 | ((u >> 6) & 0x3f) as u8,
            0x80 | (u & 0x3f) as u8,
        ]),
    }
}

/// A jute ustring as Java reads it (a standard UTF-8 decoder that replaces what it
/// cannot decode with U+FFFD; null reads as empty).
fn ustring(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let b = r.buffer()?.unwrap_or_default();
    Ok(match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => java_lossy_utf8(b),
    })
}

/// Java's replacement decoding: a 3-byte UTF-16 surrogate encoding becomes one U+FFFD
/// (so a CESU-8 pair becomes two); other malformed bytes one U+FFFD per maximal
/// invalid prefix.
pub(super) fn java_lossy_utf8(mut b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(rest) => {
                s.push_str(rest);
                return s;
            }
            Err(e) => {
                let (good, bad) = b.split_at(e.valid_up_to());
                s.push_str(std::str::from_utf8(good).expect("the valid prefix"));
                s.push(char::REPLACEMENT_CHARACTER);
                let skip = if is_surrogate_encoding(bad) {
                    3
                } else {
                    e.error_len().unwrap_or(bad.len())
                };
                b = &bad[skip..];
            }
        }
    }
}

/// `ED A0..BF 80..BF`: U+D800..U+DFFF encoded as if it were a character.
fn is_surrogate_encoding(b: &[u8]) -> bool {
    matches!(b, [0xed, 0xa0..=0xbf, 0x80..=0xbf, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn round_trip(t: &Txn, digest: Option<u64>) -> Vec<u8> {
        let mut b = Vec::new();
        t.encode(&mut b, digest);
        let (back, d) = Txn::decode(&b).unwrap();
        assert_eq!(&back, t);
        assert_eq!(d, digest.filter(|_| t.carries_digest()));
        b
    }

    #[test]
    fn create_session_matches_the_capture() {
        // PEER-PROTOCOL §6.1: the first createSession proposal of the capture.
        let want = hex(
            "01000014ff340000 00000000 0000000100000001 000001a22753395f fffffff6
             00007530 00000002 0000000051c6d660",
        );
        assert_eq!(want.len(), 48);
        let t = Txn {
            session_id: 0x0100_0014_ff34_0000,
            cxid: 0,
            zxid: 0x1_0000_0001,
            time_ms: 0x1a2_2753_395f,
            op: TxnOp::CreateSession { timeout_ms: 30000 },
        };
        assert_eq!(round_trip(&t, Some(0x51c6d660)), want);
        assert_eq!(Txn::decode(&want).unwrap(), (t, Some(0x51c6d660)));
    }

    #[test]
    fn error_txn_matches_the_capture_and_has_no_digest() {
        // PEER-PROTOCOL §13: the PROPOSAL of a create that failed with NODEEXISTS.
        let want =
            hex("01000014ff340000 00000007 0000000100000008 000001a2275339d1 ffffffff ffffff92");
        let t = Txn {
            session_id: 0x0100_0014_ff34_0000,
            cxid: 7,
            zxid: 0x1_0000_0008,
            time_ms: 0x1a2_2753_39d1,
            op: TxnOp::Error(ErrorCode::NodeExists),
        };
        let mut b = Vec::new();
        t.encode(&mut b, Some(0x1234));
        assert_eq!(b, want);
        assert_eq!(b.len(), 36);
        assert_eq!(Txn::decode(&want).unwrap(), (t, None));
    }

    #[test]
    fn digest_of_another_version_is_ignored_and_a_partial_one_is_an_error() {
        let t = Txn {
            session_id: 1,
            cxid: 2,
            zxid: 3,
            time_ms: 4,
            op: TxnOp::Delete { path: "/a".into() },
        };
        let mut b = Vec::new();
        t.encode(&mut b, None);
        let plain = b.len();
        b.put_i32(1);
        b.put_i64(99);
        assert_eq!(Txn::decode(&b).unwrap(), (t.clone(), None));
        assert!(Txn::decode(&b[..plain + 5]).is_err());
        b.push(0);
        assert!(Txn::decode(&b).is_err());
    }

    #[test]
    fn failed_multi_is_written_as_the_reference_writes_it() {
        // §6.3 [cap]: [create /peerdoc/m2, error -101].
        let create = TxnOp::Create(CreateTxn {
            path: "/peerdoc/m2".into(),
            data: Some(vec![]),
            acl: Acl::open(),
            ephemeral_owner: 0,
            parent_cversion: 5,
            kind: CreateKind::Create,
        });
        let t = Txn {
            session_id: 9,
            cxid: 10,
            zxid: 11,
            time_ms: 12,
            op: TxnOp::Multi(vec![create, TxnOp::Error(ErrorCode::NoNode)]),
        };
        let b = round_trip(&t, Some(5));
        let mut want = Vec::new();
        want.put_i64(9);
        want.put_i32(10);
        want.put_i64(11);
        want.put_i64(12);
        want.put_i32(14);
        want.put_i32(2);
        want.put_i32(1);
        let mut rec = Vec::new();
        rec.put_str("/peerdoc/m2");
        rec.put_buffer(b"");
        Acl::encode_list(&Acl::open(), &mut rec);
        rec.put_bool(false);
        rec.put_i32(5);
        want.put_buffer(&rec);
        want.put_i32(-1);
        want.put_buffer(&(-101i32).to_be_bytes());
        Txn::encode_digest(&mut want, 5);
        assert_eq!(b, want);
    }

    #[test]
    fn owners_follow_the_type_and_the_header() {
        let mk = |kind, owner| Txn {
            session_id: 0x77,
            cxid: 1,
            zxid: 2,
            time_ms: 3,
            op: TxnOp::Create(CreateTxn {
                path: "/x".into(),
                data: Some(b"d".to_vec()),
                acl: Acl::open(),
                ephemeral_owner: owner,
                parent_cversion: 1,
                kind,
            }),
        };
        round_trip(&mk(CreateKind::Create, 0x77), Some(1));
        round_trip(&mk(CreateKind::Create2, 0), Some(1));
        round_trip(&mk(CreateKind::Container, CONTAINER_EPHEMERAL_OWNER), None);
        round_trip(&mk(CreateKind::Ttl, ttl_owner(5000)), None);
        // A TTL the reference cannot turn into an owner does not decode.
        let mut b = Vec::new();
        mk(CreateKind::Ttl, ttl_owner(5000)).encode(&mut b, None);
        let at = b.len() - 8;
        b[at..].copy_from_slice(&0i64.to_be_bytes());
        assert!(Txn::decode(&b).is_err());
    }

    #[test]
    fn strings_are_cesu8_and_decode_as_java_does() {
        // §1: Java writes "a\0é😀" as 0000000a 61 00 c3a9 eda0bd edb880.
        let mut b = Vec::new();
        put_ustring(&mut b, "a\0é😀");
        assert_eq!(b, hex("0000000a 61 00 c3a9 eda0bd edb880"));
        assert_eq!(
            ustring(&mut Reader::new(&b)).unwrap(),
            "a\0é\u{fffd}\u{fffd}"
        );
        // A client's 4-byte UTF-8 still reads as the character.
        let mut b = Vec::new();
        b.put_str("😀");
        assert_eq!(ustring(&mut Reader::new(&b)).unwrap(), "😀");
        // Other garbage never fails.
        let mut b = Vec::new();
        b.put_buffer(&[0xff, b'a', 0xed, 0xa0, 0xc3]);
        let s = ustring(&mut Reader::new(&b)).unwrap();
        assert!(s.starts_with("\u{fffd}a\u{fffd}"), "{s:?}");
    }

    #[test]
    fn types_out_of_place_are_errors() {
        let wrap = |ty: i32, rec: &[u8], multi: bool| {
            let mut b = Vec::new();
            b.put_i64(1);
            b.put_i32(0);
            b.put_i64(2);
            b.put_i64(3);
            if multi {
                b.put_i32(op::MULTI);
                b.put_i32(1);
                b.put_i32(ty);
                b.put_buffer(rec);
            } else {
                b.put_i32(ty);
                b.extend_from_slice(rec);
            }
            Txn::decode(&b)
        };
        let mut check = Vec::new();
        check.put_str("/a");
        check.put_i32(1);
        assert!(wrap(op::CHECK, &check, false).is_err());
        assert!(wrap(op::CHECK, &check, true).is_ok());
        let mut multi = Vec::new();
        multi.put_i32(0);
        assert!(wrap(op::MULTI, &multi, false).is_ok());
        assert!(wrap(op::MULTI, &multi, true).is_err());
        assert!(wrap(op::SYNC, &check, false).is_err());
        assert!(wrap(op::CREATE_SESSION, &0i32.to_be_bytes(), true).is_err());
        // A huge count fails before allocating.
        let mut huge = Vec::new();
        huge.put_i32(i32::MAX);
        assert!(wrap(op::MULTI, &huge, false).is_err());
        assert!(wrap(op::CLOSE_SESSION, &huge, false).is_err());
    }
}
