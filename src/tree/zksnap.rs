//! ZooKeeper's own snapshot serialization, both directions: the body a 3.8 leader
//! streams after SNAP (PEER-PROTOCOL §5.5) and the `snapshot.<zxid>` file around the
//! same body (§9.2). corral's own snapshot format (`tree::snapshot`) is separate; this
//! module only speaks the reference's.
//!
//! **Who runs what.** [`ZkSnapEncoder`] owns an `Arc<Tree>` (a published, immutable
//! version) and a key cursor, so whichever core owns a learner connection can write a
//! chunk, await the socket and come back for the next one while the sequencer goes on
//! applying. [`ZkSnapDecoder`] is a push parser: the connection (or file reader) feeds
//! it whatever bytes arrived, it consumes whole records only and builds a fresh
//! [`Tree`] as it goes. Neither does IO or reads a clock. The file helpers
//! ([`write_zk_snapshot_file`], [`read_zk_snapshot_file`]) work on any
//! `Write`/`Read` (storage opens and names the files).
//!
//! **Data flow.** Encoding: sessions → ACL map (built up front from `Tree.acls`,
//! OPEN_ACL_UNSAFE as index −1, the other lists 1, 2, …) → nodes in corral's key order
//! (`/a/b` → `/a\0b`), which puts every parent before its children → `"/"` → for SNAP
//! `"BenWasHere"`. Decoding reverses it with every length and count bounded by
//! [`ZkSnapLimits`]; children counts, ACL reference counts, ephemeral/container/TTL
//! sets, data size and digest come out of the tree's own bookkeeping. The reference's
//! snapshots are fuzzy (its map is written before its nodes while txns go on), so a
//! node may name an ACL index the map lacks: it gets a stand-in list that grants
//! nothing (`acl::STAND_IN_ACL_SCHEME`) until the replayed txn that set its ACL
//! supplies the list.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::ops::Bound;
use std::sync::Arc;

use crate::proto::{Acl, Id, JuteWrite};

use super::acl::stand_in_acl;
use super::key::Key;
use super::{Meta, Node, Tree};

#[cfg(test)]
mod tests;

/// The ustring a leader writes after the tree in a SNAP stream.
pub const SNAP_SIGNATURE: &str = "BenWasHere";
/// `FileHeader.magic` of a snapshot file ("ZKSN").
pub const FILE_MAGIC: i32 = 0x5A4B_534E;
/// `FileHeader.version` of a snapshot file.
pub const FILE_VERSION: i32 = 2;
/// `FileHeader.dbid` the reference writes.
const FILE_DBID: i64 = -1;
/// `FileHeader` size: magic, version, dbid.
const FILE_HEADER_BYTES: usize = 16;
/// `DigestCalculator.DIGEST_VERSION` in 3.8.
pub const DIGEST_VERSION: i32 = 2;
/// The ACL index of OPEN_ACL_UNSAFE, never stored in the map.
const OPEN_ACL_INDEX: i64 = -1;
/// The path that ends the node section (and follows each file seal).
const END_MARKER: &str = "/";
/// `jute.maxbuffer` + `zookeeper.jute.maxbuffer.extrasize` at their defaults: the
/// longest buffer or string the reference's reader accepts (§1).
pub const JUTE_BYTES_MAX: usize = 2 * 0xfffff;
/// StatPersisted: four longs, three ints, two longs; 60 bytes (§9.2).
const STAT_PERSISTED_BYTES: usize = 60;
/// Fixed bytes of a node record besides its path and data: two lengths, the ACL index
/// and the StatPersisted.
const NODE_FIXED_BYTES: usize = 4 + 4 + 8 + STAT_PERSISTED_BYTES;
/// Longest signature, seal path or old-style hex digest string read.
const SHORT_STRING_BYTES_MAX: usize = 64;
/// How much the file reader asks its `Read` for at a time.
const FILE_READ_BYTES: usize = 64 << 10;
/// Chunk size the file writer uses for the body.
const FILE_CHUNK_BYTES: usize = 64 << 10;

/// Bounds on what a peer's or a file's stream may make the decoder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZkSnapLimits {
    /// One record (a node with its path and data, or one ACL map entry).
    pub record_bytes_max: usize,
    /// One buffer or string (node data, path, ACL scheme or id).
    pub string_bytes_max: usize,
    /// Sessions in the session list.
    pub sessions_count_max: usize,
    /// Lists in the ACL map.
    pub acl_lists_count_max: usize,
    /// Entries in one ACL list.
    pub acl_entries_count_max: usize,
    /// Nodes in the tree.
    pub nodes_count_max: usize,
}

impl Default for ZkSnapLimits {
    fn default() -> Self {
        ZkSnapLimits {
            record_bytes_max: 2 * JUTE_BYTES_MAX + NODE_FIXED_BYTES,
            string_bytes_max: JUTE_BYTES_MAX,
            sessions_count_max: 1 << 24,
            acl_lists_count_max: 1 << 20,
            acl_entries_count_max: 1 << 16,
            nodes_count_max: 1 << 28,
        }
    }
}

/// What the stream or file holds that makes it unreadable. Every variant but `Io`,
/// `Compressed`, `BadName` and `Failed` names the byte offset (from the stream's or
/// file's start) where the fault was found.
#[derive(Debug, thiserror::Error)]
pub enum ZkSnapError {
    #[error("zk snapshot io: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "zk snapshot compressed with {0}: not supported, only the default uncompressed stream"
    )]
    Compressed(&'static str),
    #[error("not a zk snapshot file name: {0:?}")]
    BadName(String),
    #[error("zk snapshot decoder used after an error")]
    Failed,
    #[error("at byte {offset}: file magic {found:#010x}, expected {FILE_MAGIC:#010x} (ZKSN)")]
    BadMagic { offset: u64, found: i32 },
    #[error("at byte {offset}: snapshot file version {found}, expected {FILE_VERSION}")]
    BadVersion { offset: u64, found: i32 },
    #[error("at byte {offset}: {seal} seal stored {stored:#x}, computed {computed:#010x}")]
    BadSeal {
        offset: u64,
        seal: &'static str,
        stored: i64,
        computed: u32,
    },
    #[error("at byte {offset}: {seal} seal is followed by {found:?}, not \"/\"")]
    BadSealMarker {
        offset: u64,
        seal: &'static str,
        found: String,
    },
    #[error("at byte {offset}: digest {found:?} is not hex")]
    BadDigest { offset: u64, found: String },
    #[error("at byte {offset}: file ends inside {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("at byte {offset}: {count} bytes after the last seal")]
    TrailingBytes { offset: u64, count: u64 },
    #[error("at byte {offset}: no whole record within {max} bytes")]
    RecordOverBound { offset: u64, max: usize },
    #[error("at byte {offset}: {what} length {len} is negative")]
    NegativeLength {
        offset: u64,
        what: &'static str,
        len: i32,
    },
    #[error("at byte {offset}: {what} length {len} over its bound of {max} bytes")]
    LengthOverBound {
        offset: u64,
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("at byte {offset}: {what} count {count} over its bound of {max}")]
    CountOverBound {
        offset: u64,
        what: &'static str,
        count: i64,
        max: usize,
    },
    #[error("at byte {offset}: {what} is null")]
    Null { offset: u64, what: &'static str },
    #[error("at byte {offset}: {what} is not UTF-8")]
    BadUtf8 { offset: u64, what: &'static str },
    #[error("at byte {offset}: bad node path {path:?}")]
    BadPath { offset: u64, path: String },
    #[error("at byte {offset}: node {path:?} comes before its parent {parent:?}")]
    OrphanNode {
        offset: u64,
        path: String,
        parent: String,
    },
    #[error("at byte {offset}: node {path:?} appears twice")]
    DuplicatePath { offset: u64, path: String },
    #[error("at byte {offset}: ACL index {index} appears twice in the ACL map")]
    DuplicateAclIndex { offset: u64, index: i64 },
    #[error("at byte {offset}: ACL map entry uses index -1, reserved for OPEN_ACL_UNSAFE")]
    ReservedAclIndex { offset: u64 },
    #[error("at byte {offset}: session {session_id:#x} appears twice")]
    DuplicateSession { offset: u64, session_id: i64 },
    #[error("at byte {offset}: the tree has no root node")]
    NoRoot { offset: u64 },
    #[error("at byte {offset}: signature {found:?}, expected {SNAP_SIGNATURE:?}")]
    BadSignature { offset: u64, found: String },
    #[error("at byte {offset}: stream ended before {what}")]
    Incomplete { offset: u64, what: &'static str },
}

impl ZkSnapError {
    /// The byte offset the error names, for the variants that name one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ZkSnapError::BadMagic { offset, .. }
            | ZkSnapError::BadVersion { offset, .. }
            | ZkSnapError::BadSeal { offset, .. }
            | ZkSnapError::BadSealMarker { offset, .. }
            | ZkSnapError::BadDigest { offset, .. }
            | ZkSnapError::Truncated { offset, .. }
            | ZkSnapError::TrailingBytes { offset, .. }
            | ZkSnapError::RecordOverBound { offset, .. }
            | ZkSnapError::NegativeLength { offset, .. }
            | ZkSnapError::LengthOverBound { offset, .. }
            | ZkSnapError::CountOverBound { offset, .. }
            | ZkSnapError::Null { offset, .. }
            | ZkSnapError::BadUtf8 { offset, .. }
            | ZkSnapError::BadPath { offset, .. }
            | ZkSnapError::OrphanNode { offset, .. }
            | ZkSnapError::DuplicatePath { offset, .. }
            | ZkSnapError::DuplicateAclIndex { offset, .. }
            | ZkSnapError::ReservedAclIndex { offset, .. }
            | ZkSnapError::DuplicateSession { offset, .. }
            | ZkSnapError::NoRoot { offset, .. }
            | ZkSnapError::BadSignature { offset, .. }
            | ZkSnapError::Incomplete { offset, .. } => Some(*offset),
            ZkSnapError::Io(_)
            | ZkSnapError::Compressed(_)
            | ZkSnapError::BadName(_)
            | ZkSnapError::Failed => None,
        }
    }
}

/// How a serialization ends: a SNAP stream carries the signature after the end
/// marker, a snapshot file's body does not (its seals follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkSnapKind {
    /// The bytes after a SNAP packet: ends with `"/"` then `"BenWasHere"`.
    Snap,
    /// The body of a snapshot file: ends with `"/"`.
    FileBody,
}

/// A snapshot file's ZxidDigest block: the zxid the digest belongs to and the tree
/// digest at that zxid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZxidDigest {
    pub zxid: i64,
    pub digest_version: i32,
    pub digest: u64,
}

impl ZxidDigest {
    /// A version-2 digest block, as 3.8 writes it.
    pub fn new(zxid: i64, digest: u64) -> ZxidDigest {
        ZxidDigest {
            zxid,
            digest_version: DIGEST_VERSION,
            digest,
        }
    }
}

// ===================================================================================
// Encoder
// ===================================================================================

/// Every interned ACL list → its index in the stream.
type AclIndex = HashMap<Arc<Vec<Acl>>, i64>;

/// Where the encoder is in the stream.
#[derive(Debug)]
enum EncPhase {
    SessionCount,
    /// Next session to write.
    Sessions(usize),
    AclCount,
    /// Next ACL list to write.
    Acls(usize),
    /// Nodes after this key (None: from the root).
    Nodes(Option<Key>),
    Trailer,
    Done,
}

/// Produces ZooKeeper's snapshot serialization of one tree version in chunks of at
/// most `chunk_bytes_max` bytes; holds at most one chunk plus one record at a time.
pub struct ZkSnapEncoder {
    tree: Arc<Tree>,
    sessions: Vec<(i64, i32)>,
    kind: ZkSnapKind,
    chunk_bytes_max: usize,
    /// ACL lists of the map, in index order (index = position + 1).
    acl_lists: Vec<Arc<Vec<Acl>>>,
    /// Every interned ACL list → its index (OPEN_ACL_UNSAFE → −1).
    acl_index: AclIndex,
    phase: EncPhase,
    pending: Vec<u8>,
    /// Bytes of `pending` already handed out.
    sent: usize,
}

impl ZkSnapEncoder {
    /// An encoder for `tree` and the live sessions `(session id, timeout ms)`.
    pub fn new(
        tree: Arc<Tree>,
        sessions: Vec<(i64, i32)>,
        kind: ZkSnapKind,
        chunk_bytes_max: usize,
    ) -> ZkSnapEncoder {
        assert!(chunk_bytes_max > 0, "chunk_bytes_max must be positive");
        assert!(
            sessions.len() <= i32::MAX as usize,
            "session count over a jute int"
        );
        let (acl_lists, acl_index) = number_acls(&tree);
        ZkSnapEncoder {
            tree,
            sessions,
            kind,
            chunk_bytes_max,
            acl_lists,
            acl_index,
            phase: EncPhase::SessionCount,
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// Appends the next chunk (1 ..= `chunk_bytes_max` bytes) to `out`; false when the
    /// stream is complete and nothing was appended.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> bool {
        if self.unsent() < self.chunk_bytes_max {
            self.pending.drain(..self.sent);
            self.sent = 0;
            while self.unsent() < self.chunk_bytes_max && !matches!(self.phase, EncPhase::Done) {
                self.encode_step();
            }
        }
        let n = self.unsent().min(self.chunk_bytes_max);
        out.extend_from_slice(&self.pending[self.sent..self.sent + n]);
        self.sent += n;
        n > 0
    }

    /// True once every byte has been handed out.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, EncPhase::Done) && self.unsent() == 0
    }

    fn unsent(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// Encodes the next record(s) of the current phase into `pending`.
    fn encode_step(&mut self) {
        let out = &mut self.pending;
        self.phase = match std::mem::replace(&mut self.phase, EncPhase::Done) {
            EncPhase::SessionCount => {
                out.put_i32(self.sessions.len() as i32);
                EncPhase::Sessions(0)
            }
            EncPhase::Sessions(i) => match self.sessions.get(i) {
                Some(&(id, timeout_ms)) => {
                    out.put_i64(id);
                    out.put_i32(timeout_ms);
                    EncPhase::Sessions(i + 1)
                }
                None => EncPhase::AclCount,
            },
            EncPhase::AclCount => {
                out.put_i32(self.acl_lists.len() as i32);
                EncPhase::Acls(0)
            }
            EncPhase::Acls(i) => match self.acl_lists.get(i) {
                Some(list) => {
                    out.put_i64(i as i64 + 1);
                    Acl::encode_list(list, out);
                    EncPhase::Acls(i + 1)
                }
                None => EncPhase::Nodes(None),
            },
            EncPhase::Nodes(after) => self.encode_nodes(after),
            EncPhase::Trailer => {
                out.put_str(END_MARKER);
                if self.kind == ZkSnapKind::Snap {
                    out.put_str(SNAP_SIGNATURE);
                }
                EncPhase::Done
            }
            EncPhase::Done => EncPhase::Done,
        };
    }

    /// Writes nodes after `after` in key order until a chunk's worth is pending;
    /// one range lookup per call.
    fn encode_nodes(&mut self, after: Option<Key>) -> EncPhase {
        let start = match &after {
            None => Bound::Unbounded,
            Some(k) => Bound::Excluded(k.as_bytes()),
        };
        let mut last = None;
        for (k, n) in self.tree.nodes.range::<_, [u8]>((start, Bound::Unbounded)) {
            let index = *self
                .acl_index
                .get(&*n.acl)
                .expect("every node's ACL list is interned in Tree.acls");
            put_node(&mut self.pending, k, n, index);
            last = Some(k);
            if self.pending.len() - self.sent >= self.chunk_bytes_max {
                break;
            }
        }
        match last {
            Some(k) => EncPhase::Nodes(Some(k.clone())),
            None => EncPhase::Trailer,
        }
    }
}

impl Iterator for ZkSnapEncoder {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        self.next_chunk(&mut v).then_some(v)
    }
}

/// Numbers the tree's interned ACL lists: OPEN_ACL_UNSAFE is −1 and left out of the
/// map, every other list gets 1, 2, … in `Tree.acls` order.
fn number_acls(tree: &Tree) -> (Vec<Arc<Vec<Acl>>>, AclIndex) {
    let open = Acl::open();
    let mut lists = Vec::new();
    let mut index = HashMap::with_capacity(tree.acls.len());
    for (list, _) in tree.acls.iter() {
        if **list == open {
            index.insert(list.clone(), OPEN_ACL_INDEX);
        } else {
            lists.push(list.clone());
            index.insert(list.clone(), lists.len() as i64);
        }
    }
    (lists, index)
}

/// One node record: path (the root as ""), data, ACL index, StatPersisted.
fn put_node(out: &mut Vec<u8>, key: &Key, n: &Node, acl_index: i64) {
    put_key_path(out, key);
    out.put_opt_buffer(n.data());
    out.put_i64(acl_index);
    for v in [n.czxid, n.mzxid, n.ctime, n.mtime] {
        out.put_i64(v);
    }
    for v in [n.version, n.cversion, n.aversion] {
        out.put_i32(v);
    }
    out.put_i64(n.ephemeral_owner);
    out.put_i64(n.pzxid);
}

/// A key's path as a jute ustring without building a String: the key is the path
/// with its last `/` turned into NUL, so copy it and turn it back.
fn put_key_path(out: &mut Vec<u8>, key: &Key) {
    let b = key.as_bytes();
    out.put_i32(b.len() as i32);
    let at = out.len();
    out.extend_from_slice(b);
    if let Some(i) = out[at..].iter().rposition(|&c| c == 0) {
        out[at + i] = b'/';
    }
}

// ===================================================================================
// Decoder
// ===================================================================================

/// A record that cannot be parsed yet: it needs more bytes, or it is bad.
enum Short {
    More,
    Bad(ZkSnapError),
}

impl From<ZkSnapError> for Short {
    fn from(e: ZkSnapError) -> Short {
        Short::Bad(e)
    }
}

type Step<T> = Result<T, Short>;

/// A bounds-checked cursor over the bytes fed so far; `base` is the stream offset of
/// `buf[0]`, for error messages.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    fn at(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(Short::More);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i32(&mut self) -> Step<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn i64(&mut self) -> Step<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// A length prefix: None for the null marker −1, an error when negative or over
    /// `max`.
    fn len(&mut self, what: &'static str, max: usize) -> Step<Option<usize>> {
        let offset = self.at();
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(ZkSnapError::NegativeLength {
                offset,
                what,
                len: n,
            }
            .into());
        }
        let len = n as usize;
        if len > max {
            return Err(ZkSnapError::LengthOverBound {
                offset,
                what,
                len,
                max,
            }
            .into());
        }
        Ok(Some(len))
    }

    /// A non-negative count no larger than `max`.
    fn count(&mut self, what: &'static str, max: usize) -> Step<usize> {
        let offset = self.at();
        let n = self.i32()?;
        if n < 0 {
            return Err(ZkSnapError::NegativeLength {
                offset,
                what,
                len: n,
            }
            .into());
        }
        if n as usize > max {
            return Err(ZkSnapError::CountOverBound {
                offset,
                what,
                count: n as i64,
                max,
            }
            .into());
        }
        Ok(n as usize)
    }

    /// A buffer where null reads as empty.
    fn buffer(&mut self, what: &'static str, max: usize) -> Step<&'a [u8]> {
        match self.len(what, max)? {
            None => Ok(&[]),
            Some(n) => self.take(n),
        }
    }

    /// A ustring decoded as the reference's reader does (null reads as empty).
    fn java_str(&mut self, what: &'static str, max: usize) -> Step<String> {
        Ok(java_utf8(self.buffer(what, max)?))
    }
}

/// Decodes bytes as Java's UTF-8 decoder does: valid UTF-8 as is; a 3-byte encoded
/// surrogate (how the reference's writer encodes each half of a non-BMP character,
/// §1) becomes one U+FFFD, any other malformed sequence one U+FFFD per maximal
/// invalid prefix.
fn java_utf8(mut b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        return s.to_string();
    }
    let mut out = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&b[..good]).expect("validated prefix"));
                out.push(char::REPLACEMENT_CHARACTER);
                let rest = &b[good..];
                let skip = match rest {
                    [0xed, 0xa0..=0xbf, 0x80..=0xbf, ..] => 3,
                    _ => e.error_len().unwrap_or(rest.len()),
                };
                b = &rest[skip..];
            }
        }
    }
}

/// One node record as parsed, borrowing the fed bytes.
struct NodeRecord<'a> {
    path: &'a str,
    /// `None`: the null buffer (−1), kept as null.
    data: Option<&'a [u8]>,
    acl_index: i64,
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    cversion: i32,
    aversion: i32,
    ephemeral_owner: i64,
    pzxid: i64,
}

/// Where the decoder is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecPhase {
    SessionCount,
    Sessions { left: usize },
    AclCount,
    Acls { left: usize },
    Nodes,
    Signature,
    Done,
    Failed,
}

/// An ACL list of the map and how many nodes used it.
struct AclSlot {
    acl: Arc<Vec<Acl>>,
    uses: u64,
}

/// Rebuilds a [`Tree`] and the session list from ZooKeeper's snapshot serialization
/// fed in arbitrary pieces.
pub struct ZkSnapDecoder {
    kind: ZkSnapKind,
    limits: ZkSnapLimits,
    last_zxid: i64,
    /// Stream offset of the next unconsumed byte.
    offset: u64,
    phase: DecPhase,
    tree: Tree,
    sessions: Vec<(i64, i32)>,
    session_ids: HashSet<i64>,
    /// ACL index → list (−1 is OPEN_ACL_UNSAFE, there from the start). Each list holds
    /// one reference in `tree.acls` for the table until `finish`.
    acls: HashMap<i64, AclSlot>,
    nodes_count: usize,
    /// Nodes checked and accounted for but not yet in `tree.nodes`: an ascending run
    /// of at most [`RUN_NODES_MAX`], inserted in one go by [`Tree::insert_run`] (a
    /// corral leader sends nodes in key order; the reference in depth-first order,
    /// where runs are short).
    run: Vec<(Key, Node)>,
}

/// Nodes held back in a decoder's ascending run (128 KiB of keys and node pointers).
const RUN_NODES_MAX: usize = 4096;

impl ZkSnapDecoder {
    /// A decoder with the default limits; the tree it builds gets `last_zxid` (the
    /// SNAP packet's zxid, or the zxid in the snapshot file's name).
    pub fn new(kind: ZkSnapKind, last_zxid: i64) -> ZkSnapDecoder {
        ZkSnapDecoder::with_limits(kind, last_zxid, ZkSnapLimits::default())
    }

    pub fn with_limits(kind: ZkSnapKind, last_zxid: i64, limits: ZkSnapLimits) -> ZkSnapDecoder {
        let mut tree = Tree::empty();
        let open = tree.intern_acl(Acl::open());
        let mut acls = HashMap::new();
        acls.insert(OPEN_ACL_INDEX, AclSlot { acl: open, uses: 0 });
        ZkSnapDecoder {
            kind,
            limits,
            last_zxid,
            offset: 0,
            phase: DecPhase::SessionCount,
            tree,
            sessions: Vec::new(),
            session_ids: HashSet::new(),
            acls,
            nodes_count: 0,
            run: Vec::new(),
        }
    }

    /// Offsets in errors count from `offset` instead of 0 (a file's body starts after
    /// its header).
    pub fn starting_at(mut self, offset: u64) -> ZkSnapDecoder {
        self.offset = offset;
        self
    }

    /// Stream offset of the next byte the decoder wants.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True after the signature (SNAP) or the end marker (file body).
    pub fn is_done(&self) -> bool {
        self.phase == DecPhase::Done
    }

    /// Consumes as many whole records from the front of `buf` as it holds and returns
    /// how many bytes that was; the caller keeps the rest and feeds it again with more
    /// bytes behind it. Consumes nothing once done. An error leaves the decoder failed.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ZkSnapError> {
        if self.phase == DecPhase::Failed {
            return Err(ZkSnapError::Failed);
        }
        let mut used = 0;
        while !self.is_done() {
            let mut cur = Cursor {
                buf: &buf[used..],
                pos: 0,
                base: self.offset,
            };
            match self.step(&mut cur) {
                Ok(()) => {
                    used += cur.pos;
                    self.offset += cur.pos as u64;
                }
                Err(Short::More) if buf.len() - used < self.limits.record_bytes_max => break,
                Err(Short::More) => {
                    return Err(self.fail(ZkSnapError::RecordOverBound {
                        offset: self.offset,
                        max: self.limits.record_bytes_max,
                    }))
                }
                Err(Short::Bad(e)) => return Err(self.fail(e)),
            }
        }
        Ok(used)
    }

    /// The tree and sessions, once the stream is complete.
    pub fn finish(self) -> Result<(Tree, Vec<(i64, i32)>), ZkSnapError> {
        if !self.is_done() {
            return Err(ZkSnapError::Incomplete {
                offset: self.offset,
                what: self.awaiting(),
            });
        }
        // The end marker flushed the run, and a stream is done only past it.
        debug_assert!(self.run.is_empty(), "a run left after the end marker");
        let mut tree = self.tree;
        set_child_counts(&mut tree);
        for slot in self.acls.values() {
            *tree.acls.get_mut(&*slot.acl).expect("interned") += slot.uses;
            tree.release_acl(&slot.acl);
        }
        tree.last_zxid = self.last_zxid;
        tree.setup_quotas();
        Ok((tree, self.sessions))
    }

    fn fail(&mut self, e: ZkSnapError) -> ZkSnapError {
        self.phase = DecPhase::Failed;
        e
    }

    /// What the stream still owes, for an Incomplete error.
    fn awaiting(&self) -> &'static str {
        match self.phase {
            DecPhase::SessionCount | DecPhase::Sessions { .. } => "the end of the session list",
            DecPhase::AclCount | DecPhase::Acls { .. } => "the end of the ACL map",
            DecPhase::Nodes => "the end of the node section",
            DecPhase::Signature => "the signature",
            DecPhase::Done | DecPhase::Failed => "nothing",
        }
    }

    /// Parses and applies one record (or count) of the current phase. Parsing reads
    /// the whole record before any state changes, so `Short::More` leaves no trace.
    fn step(&mut self, cur: &mut Cursor<'_>) -> Step<()> {
        self.phase = match self.phase {
            DecPhase::SessionCount => {
                let n = cur.count("session count", self.limits.sessions_count_max)?;
                DecPhase::Sessions { left: n }
            }
            DecPhase::Sessions { left: 0 } => DecPhase::AclCount,
            DecPhase::Sessions { left } => {
                self.read_session(cur)?;
                DecPhase::Sessions { left: left - 1 }
            }
            DecPhase::AclCount => {
                let n = cur.count("ACL map", self.limits.acl_lists_count_max)?;
                DecPhase::Acls { left: n }
            }
            DecPhase::Acls { left: 0 } => DecPhase::Nodes,
            DecPhase::Acls { left } => {
                self.read_acl_entry(cur)?;
                DecPhase::Acls { left: left - 1 }
            }
            DecPhase::Nodes => self.read_node(cur)?,
            DecPhase::Signature => {
                read_signature(cur)?;
                DecPhase::Done
            }
            DecPhase::Done | DecPhase::Failed => self.phase,
        };
        Ok(())
    }

    fn read_session(&mut self, cur: &mut Cursor<'_>) -> Step<()> {
        let offset = cur.at();
        let id = cur.i64()?;
        let timeout_ms = cur.i32()?;
        if !self.session_ids.insert(id) {
            return Err(ZkSnapError::DuplicateSession {
                offset,
                session_id: id,
            }
            .into());
        }
        self.sessions.push((id, timeout_ms));
        Ok(())
    }

    /// `{ long index; vector<ACL> acls }`; a null vector is refused, as the
    /// reference does.
    fn read_acl_entry(&mut self, cur: &mut Cursor<'_>) -> Step<()> {
        let offset = cur.at();
        let index = cur.i64()?;
        let list_at = cur.at();
        let Some(n) = cur.len("ACL list", self.limits.acl_entries_count_max)? else {
            return Err(ZkSnapError::Null {
                offset: list_at,
                what: "ACL list",
            }
            .into());
        };
        let max = self.limits.string_bytes_max;
        let mut list = Vec::new();
        for _ in 0..n {
            let perms = cur.i32()?;
            let scheme = cur.java_str("ACL scheme", max)?;
            let id = cur.java_str("ACL id", max)?;
            list.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        if index == OPEN_ACL_INDEX {
            return Err(ZkSnapError::ReservedAclIndex { offset }.into());
        }
        if self.acls.contains_key(&index) {
            return Err(ZkSnapError::DuplicateAclIndex { offset, index }.into());
        }
        let acl = self.tree.intern_acl(list);
        self.acls.insert(index, AclSlot { acl, uses: 0 });
        Ok(())
    }

    /// One node record, or the end marker.
    fn read_node(&mut self, cur: &mut Cursor<'_>) -> Step<DecPhase> {
        let offset = cur.at();
        match parse_node(cur, &self.limits)? {
            None => {
                self.flush_run();
                if self.tree.nodes.is_empty() {
                    return Err(ZkSnapError::NoRoot { offset }.into());
                }
                Ok(match self.kind {
                    ZkSnapKind::Snap => DecPhase::Signature,
                    ZkSnapKind::FileBody => DecPhase::Done,
                })
            }
            Some(rec) => {
                self.add_node(offset, &rec)?;
                Ok(DecPhase::Nodes)
            }
        }
    }

    /// Checks a parsed node against what came before it and inserts it.
    fn add_node(&mut self, offset: u64, rec: &NodeRecord<'_>) -> Result<(), ZkSnapError> {
        if self.nodes_count >= self.limits.nodes_count_max {
            return Err(ZkSnapError::CountOverBound {
                offset,
                what: "node",
                count: self.nodes_count as i64 + 1,
                max: self.limits.nodes_count_max,
            });
        }
        let key = self.check_placement(offset, rec.path)?;
        if self.run.len() == RUN_NODES_MAX {
            self.flush_run();
        }
        // An index the map lacks: the snapshot is fuzzy (see `acl::STAND_IN_ACL_SCHEME`);
        // the node holds a stand-in until the replayed txn that set its ACL comes.
        let slot = match self.acls.entry(rec.acl_index) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(AclSlot {
                acl: self.tree.intern_acl(stand_in_acl(rec.acl_index)),
                uses: 0,
            }),
        };
        slot.uses += 1;
        let meta = Meta {
            acl: slot.acl.clone(),
            czxid: rec.czxid,
            mzxid: rec.mzxid,
            pzxid: rec.pzxid,
            ctime: rec.ctime,
            mtime: rec.mtime,
            version: rec.version,
            cversion: rec.cversion,
            aversion: rec.aversion,
            num_children: 0,
            ephemeral_owner: rec.ephemeral_owner,
        };
        let node = Node::new(meta, rec.data);
        // The tree's own name for the root is "/" (Tree::new inserts it so).
        let path = if rec.path.is_empty() { "/" } else { rec.path };
        self.tree.account_new(path, &key, &node);
        self.run.push((key, node));
        self.nodes_count += 1;
        Ok(())
    }

    /// Moves the run into the tree.
    fn flush_run(&mut self) {
        let run = std::mem::take(&mut self.run);
        self.tree.insert_run(run);
    }

    /// The node's key, if its path is well formed, new, and its parent came first.
    /// A key that does not extend the run ascending ends it first (into the tree,
    /// where a duplicate shows); its parent may still be in the run.
    fn check_placement(&mut self, offset: u64, path: &str) -> Result<Key, ZkSnapError> {
        let owned = || path.to_string();
        if !path.is_empty() && crate::proto::path::validate_path(path, false).is_err() {
            return Err(ZkSnapError::BadPath {
                offset,
                path: owned(),
            });
        }
        let key = Key::from_path(path);
        if self.run.last().is_some_and(|(last, _)| *last >= key) {
            self.flush_run();
        }
        if self.tree.nodes.contains_key(&key) {
            return Err(ZkSnapError::DuplicatePath {
                offset,
                path: owned(),
            });
        }
        if !path.is_empty() {
            let parent = crate::proto::path::parent(path);
            let parent_key = Key::lookup(parent);
            let in_run = || {
                self.run
                    .binary_search_by(|(k, _)| k.cmp(&parent_key))
                    .is_ok()
            };
            if !self.tree.nodes.contains_key(&parent_key) && !in_run() {
                return Err(ZkSnapError::OrphanNode {
                    offset,
                    path: owned(),
                    parent: parent.to_string(),
                });
            }
        }
        Ok(key)
    }
}

/// `ustring path` and, unless it is the end marker (None), the rest of the node
/// record.
fn parse_node<'a>(cur: &mut Cursor<'a>, limits: &ZkSnapLimits) -> Step<Option<NodeRecord<'a>>> {
    let path_at = cur.at();
    let path_len = cur.len("node path", limits.string_bytes_max)?;
    let Some(path_len) = path_len else {
        return Err(ZkSnapError::Null {
            offset: path_at,
            what: "node path",
        }
        .into());
    };
    let path = std::str::from_utf8(cur.take(path_len)?).map_err(|_| ZkSnapError::BadUtf8 {
        offset: path_at,
        what: "node path",
    })?;
    if path == END_MARKER {
        return Ok(None);
    }
    let data_at = cur.at();
    let data_len = cur.len("node data", limits.string_bytes_max)?;
    let record = path_len + data_len.unwrap_or(0) + NODE_FIXED_BYTES;
    if record > limits.record_bytes_max {
        return Err(ZkSnapError::LengthOverBound {
            offset: data_at,
            what: "node record",
            len: record,
            max: limits.record_bytes_max,
        }
        .into());
    }
    let data = match data_len {
        Some(n) => Some(cur.take(n)?),
        None => None,
    };
    Ok(Some(NodeRecord {
        path,
        data,
        acl_index: cur.i64()?,
        czxid: cur.i64()?,
        mzxid: cur.i64()?,
        ctime: cur.i64()?,
        mtime: cur.i64()?,
        version: cur.i32()?,
        cversion: cur.i32()?,
        aversion: cur.i32()?,
        ephemeral_owner: cur.i64()?,
        pzxid: cur.i64()?,
    }))
}

fn read_signature(cur: &mut Cursor<'_>) -> Step<()> {
    let offset = cur.at();
    let len = cur.i32()?;
    let found = if (0..=SHORT_STRING_BYTES_MAX as i32).contains(&len) {
        String::from_utf8_lossy(cur.take(len as usize)?).into_owned()
    } else {
        format!("<a string of length {len}>")
    };
    if found != SNAP_SIGNATURE {
        return Err(ZkSnapError::BadSignature { offset, found }.into());
    }
    Ok(())
}

/// Sets every node's `num_children`. In key order the children of one parent are one
/// contiguous run of keys sharing the bytes before their last NUL (the parent's path).
fn set_child_counts(tree: &mut Tree) {
    let mut runs: Vec<(Vec<u8>, i32)> = Vec::new();
    for (k, _) in tree.nodes.iter() {
        let b = k.as_bytes();
        let Some(nul) = b.iter().rposition(|&c| c == 0) else {
            continue; // the root
        };
        let parent = &b[..nul];
        match runs.last_mut() {
            Some((p, n)) if p[..] == *parent => *n += 1,
            _ => runs.push((parent.to_vec(), 1)),
        }
    }
    for (parent, n) in runs {
        // Keys hold whole paths, so the bytes before a NUL are a path ("" the root).
        let parent = String::from_utf8(parent).expect("keys are built from paths");
        let parent = if parent.is_empty() { "/" } else { &parent };
        let found = tree.update_node(parent, |p| p.num_children = n);
        assert!(found, "parent {parent} was checked on insert");
    }
}

// ===================================================================================
// Snapshot files
// ===================================================================================

/// A snapshot file as read: the tree (its `last_zxid` the zxid of the file's name),
/// the sessions, and the ZxidDigest block when the file has one.
#[derive(Debug)]
pub struct ZkSnapFile {
    pub tree: Tree,
    pub sessions: Vec<(i64, i32)>,
    pub digest: Option<ZxidDigest>,
}

/// `snapshot.<lowercase hex zxid>`, as the reference names a snapshot.
pub fn zk_snapshot_file_name(zxid: i64) -> String {
    format!("snapshot.{zxid:x}")
}

/// The zxid in a snapshot file's name; `.gz` and `.snappy` files are refused.
pub fn zk_snapshot_name_zxid(name: &str) -> Result<i64, ZkSnapError> {
    let bad = || ZkSnapError::BadName(name.to_string());
    let rest = name.strip_prefix("snapshot.").ok_or_else(bad)?;
    let (hex, ext) = match rest.split_once('.') {
        Some((h, e)) => (h, Some(e)),
        None => (rest, None),
    };
    match ext {
        None => {}
        Some("gz") => return Err(ZkSnapError::Compressed("gzip")),
        Some("snappy") => return Err(ZkSnapError::Compressed("snappy")),
        Some(_) => return Err(bad()),
    }
    i64::from_str_radix(hex, 16).map_err(|_| bad())
}

/// Adler-32 over every byte written so far, as Java's `CheckedOutputStream`.
struct SealedWriter<'w> {
    w: &'w mut dyn Write,
    adler: adler2::Adler32,
}

impl SealedWriter<'_> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.adler.write_slice(b);
        self.w.write_all(b)
    }

    /// `long checksum; ustring "/"`, the checksum over everything before it.
    fn seal(&mut self) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(13);
        b.put_i64(self.adler.checksum() as i64);
        b.put_str(END_MARKER);
        self.put(&b)
    }
}

/// Writes a complete reference snapshot file: FileHeader(ZKSN, 2, −1), the body, the
/// first seal, and (when `digest` is given, as with the reference's default digest
/// setting) the ZxidDigest block and the second seal. Writes in chunks; wrap `w` in a
/// BufWriter if it is unbuffered.
pub fn write_zk_snapshot_file(
    w: &mut dyn Write,
    tree: &Tree,
    sessions: Vec<(i64, i32)>,
    digest: Option<ZxidDigest>,
) -> std::io::Result<()> {
    let mut sw = SealedWriter {
        w,
        adler: adler2::Adler32::new(),
    };
    let mut b = Vec::with_capacity(FILE_CHUNK_BYTES);
    b.put_i32(FILE_MAGIC);
    b.put_i32(FILE_VERSION);
    b.put_i64(FILE_DBID);
    sw.put(&b)?;
    let tree = Arc::new(tree.clone());
    let mut enc = ZkSnapEncoder::new(tree, sessions, ZkSnapKind::FileBody, FILE_CHUNK_BYTES);
    b.clear();
    while enc.next_chunk(&mut b) {
        sw.put(&b)?;
        b.clear();
    }
    sw.seal()?;
    if let Some(d) = digest {
        b.put_i64(d.zxid);
        b.put_i32(d.digest_version);
        if d.digest_version < DIGEST_VERSION {
            b.put_str(&format!("{:x}", d.digest));
        } else {
            b.put_i64(d.digest as i64);
        }
        sw.put(&b)?;
        sw.seal()?;
    }
    Ok(())
}

/// Buffered bytes from a `Read`, with the Adler-32 of everything consumed and the
/// file offset of the first unconsumed byte.
struct FileSource<'r> {
    r: &'r mut dyn Read,
    buf: Vec<u8>,
    start: usize,
    offset: u64,
    eof: bool,
    adler: adler2::Adler32,
}

impl FileSource<'_> {
    fn avail(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads one more block (or notes the end of the file).
    fn fill(&mut self) -> std::io::Result<()> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // read_to_end on a Take reads until the block is full or the file ends, and
        // fills spare capacity without zeroing it first.
        let got = (&mut *self.r)
            .take(FILE_READ_BYTES as u64)
            .read_to_end(&mut self.buf)?;
        self.eof = got < FILE_READ_BYTES;
        Ok(())
    }

    /// At least `n` bytes, or Truncated naming `what`.
    fn need(&mut self, n: usize, what: &'static str) -> Result<&[u8], ZkSnapError> {
        while self.avail().len() < n && !self.eof {
            self.fill()?;
        }
        if self.avail().len() < n {
            return Err(ZkSnapError::Truncated {
                offset: self.offset + self.avail().len() as u64,
                what,
            });
        }
        Ok(&self.avail()[..n])
    }

    fn consume(&mut self, n: usize) {
        self.adler
            .write_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        self.offset += n as u64;
    }

    /// True when no byte is left in the file.
    fn at_end(&mut self) -> std::io::Result<bool> {
        while self.avail().is_empty() && !self.eof {
            self.fill()?;
        }
        Ok(self.avail().is_empty())
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, ZkSnapError> {
        let v = i32::from_be_bytes(self.need(4, what)?.try_into().expect("4"));
        self.consume(4);
        Ok(v)
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, ZkSnapError> {
        let v = i64::from_be_bytes(self.need(8, what)?.try_into().expect("8"));
        self.consume(8);
        Ok(v)
    }

    /// A short ustring (seal marker, old hex digest); null reads as empty.
    fn short_str(&mut self, what: &'static str) -> Result<String, ZkSnapError> {
        let offset = self.offset;
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(String::new());
        }
        if !(0..=SHORT_STRING_BYTES_MAX as i32).contains(&len) {
            return Err(ZkSnapError::LengthOverBound {
                offset,
                what,
                len: len as u32 as usize,
                max: SHORT_STRING_BYTES_MAX,
            });
        }
        let s = String::from_utf8_lossy(self.need(len as usize, what)?).into_owned();
        self.consume(len as usize);
        Ok(s)
    }
}

/// Reads a reference snapshot file (uncompressed) from `r`, streaming: it holds one
/// read block plus at most one record beside the tree it builds. `name_zxid` is the
/// zxid of the file's name ([`zk_snapshot_name_zxid`]); the tree's `last_zxid` is set
/// to it, as the reference does. Verifies both seals; a file without the digest block
/// (digest disabled) is accepted.
pub fn read_zk_snapshot_file(r: &mut dyn Read, name_zxid: i64) -> Result<ZkSnapFile, ZkSnapError> {
    read_zk_snapshot_file_with(r, name_zxid, ZkSnapLimits::default())
}

/// [`read_zk_snapshot_file`] with explicit limits.
pub fn read_zk_snapshot_file_with(
    r: &mut dyn Read,
    name_zxid: i64,
    limits: ZkSnapLimits,
) -> Result<ZkSnapFile, ZkSnapError> {
    let mut src = FileSource {
        r,
        buf: Vec::new(),
        start: 0,
        offset: 0,
        eof: false,
        adler: adler2::Adler32::new(),
    };
    read_file_header(&mut src)?;
    let dec = ZkSnapDecoder::with_limits(ZkSnapKind::FileBody, name_zxid, limits)
        .starting_at(FILE_HEADER_BYTES as u64);
    let dec = read_file_body(&mut src, dec)?;
    check_seal(&mut src, "first")?;
    let digest = if src.at_end()? {
        None
    } else {
        let d = read_digest_block(&mut src)?;
        check_seal(&mut src, "second")?;
        Some(d)
    };
    if !src.at_end()? {
        let offset = src.offset;
        let mut count = src.avail().len() as u64;
        while !src.eof {
            src.start = src.buf.len();
            src.fill()?;
            count += src.avail().len() as u64;
        }
        return Err(ZkSnapError::TrailingBytes { offset, count });
    }
    let (tree, sessions) = dec.finish()?;
    Ok(ZkSnapFile {
        tree,
        sessions,
        digest,
    })
}

/// FileHeader: refuses compressed streams by their magic, then checks ZKSN and 2.
fn read_file_header(src: &mut FileSource<'_>) -> Result<(), ZkSnapError> {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    const SNAPPY_MAGIC: [u8; 8] = *b"\x82SNAPPY\x00";
    let head = src.need(FILE_HEADER_BYTES, "the file header")?;
    if head.starts_with(&GZIP_MAGIC) {
        return Err(ZkSnapError::Compressed("gzip"));
    }
    if head.starts_with(&SNAPPY_MAGIC) {
        return Err(ZkSnapError::Compressed("snappy"));
    }
    let magic = src.i32("the file header")?;
    if magic != FILE_MAGIC {
        return Err(ZkSnapError::BadMagic {
            offset: 0,
            found: magic,
        });
    }
    let version = src.i32("the file header")?;
    if version != FILE_VERSION {
        return Err(ZkSnapError::BadVersion {
            offset: 4,
            found: version,
        });
    }
    src.i64("the file header")?; // dbid: the reference ignores it too
    Ok(())
}

/// Feeds the body to the decoder until its end marker.
fn read_file_body(
    src: &mut FileSource<'_>,
    mut dec: ZkSnapDecoder,
) -> Result<ZkSnapDecoder, ZkSnapError> {
    loop {
        let n = dec.feed(src.avail())?;
        src.consume(n);
        if dec.is_done() {
            return Ok(dec);
        }
        if src.eof {
            return Err(ZkSnapError::Truncated {
                offset: src.offset + src.avail().len() as u64,
                what: dec.awaiting(),
            });
        }
        src.fill()?;
    }
}

/// `long checksum; ustring "/"`, the checksum over every byte before it.
fn check_seal(src: &mut FileSource<'_>, seal: &'static str) -> Result<(), ZkSnapError> {
    let offset = src.offset;
    let computed = src.adler.checksum();
    let stored = src.i64("a seal")?;
    if stored != computed as i64 {
        return Err(ZkSnapError::BadSeal {
            offset,
            seal,
            stored,
            computed,
        });
    }
    let marker_at = src.offset;
    let found = src.short_str("a seal")?;
    if found != END_MARKER {
        return Err(ZkSnapError::BadSealMarker {
            offset: marker_at,
            seal,
            found,
        });
    }
    Ok(())
}

/// `long zxid; int digestVersion; long digest` (a hex ustring before version 2).
fn read_digest_block(src: &mut FileSource<'_>) -> Result<ZxidDigest, ZkSnapError> {
    let zxid = src.i64("the digest block")?;
    let digest_version = src.i32("the digest block")?;
    let digest = if digest_version >= DIGEST_VERSION {
        src.i64("the digest block")? as u64
    } else {
        let offset = src.offset;
        let hex = src.short_str("the digest block")?;
        if hex.is_empty() {
            0
        } else {
            i64::from_str_radix(&hex, 16)
                .map_err(|_| ZkSnapError::BadDigest { offset, found: hex })? as u64
        }
    };
    Ok(ZxidDigest {
        zxid,
        digest_version,
        digest,
    })
}
