//! Tree snapshots: a whole tree version serialised as one stream, checksummed
//! (crc32c over every byte) and carrying the tree digest, which loading recomputes
//! and compares. Any published version can be written from any thread while the
//! sequencer keeps applying (the version is immutable). Loading rebuilds the indexes
//! (children counts, ephemerals, containers, TTLs, ACL reference counts) and the
//! quota roots, recounting their stats nodes as the reference does on load.
//!
//! Layout (big-endian): magic u64, format u32, last_zxid i64, digest u64, ACL table
//! (count u32, then jute ACL lists), node count u64, then per node in key order: path,
//! data, ACL index u32, czxid, mzxid, pzxid, ctime, mtime (i64), version, cversion
//! (internal), aversion (i32), ephemeralOwner (internal, i64); then crc32c u32.
//! Data is a jute buffer: length −1 is null data (format 3 on), 0 empty.
//!
//! Formats read: 3 (written) and 2, which never held null data (null was stored as
//! empty then), so a format-2 file reads as it always did. Older corral binaries
//! refuse a format-3 file with "unsupported snapshot version 3" rather than turning
//! its null data into empty.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use crate::proto::{Acl, JuteWrite, Reader};

use super::digest::node_digest;
use super::key::Key;
use super::{node_size, Meta, Node, NodeKind, Tree, TreeError};

const MAGIC: u64 = u64::from_be_bytes(*b"CRLTREE\x01");
/// 2: the digest is ZooKeeper's (format 1 carried a private hash). 3: null data is
/// kept (buffer length −1) instead of being written as empty.
const FORMAT: u32 = 3;
/// The oldest format [`Tree::read_snapshot_bytes`] still reads.
const FORMAT_READ_MIN: u32 = 2;
/// Upper bound on ACL lists and on entries in one list.
const ACL_ENTRIES_MAX: usize = 1 << 20;
/// Node slots reserved up front, whatever count the header claims.
const NODES_PREALLOC_MAX: u64 = 1 << 22;
/// The fewest bytes a node takes in the file: a one-byte path (length and byte),
/// null data (length), ACL index, five i64 times/zxids, three i32 versions and the
/// ephemeral owner. A count the remaining bytes cannot hold reserves no more slots
/// than they can.
const NODE_BYTES_MIN: usize = 4 + 1 + 4 + 4 + 5 * 8 + 3 * 4 + 8;

struct CrcWriter<'a> {
    w: &'a mut dyn Write,
    crc: u32,
}

impl CrcWriter<'_> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.w.write_all(b)
    }
}

impl Tree {
    /// Serialises this version. Writes in small pieces; wrap `w` in a BufWriter.
    pub fn write_snapshot(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut cw = CrcWriter { w, crc: 0 };
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.extend_from_slice(&FORMAT.to_be_bytes());
        buf.put_i64(self.last_zxid);
        buf.extend_from_slice(&self.digest.to_be_bytes());
        // ACL table: every distinct list once; nodes refer to it by index. Nodes
        // hold the interned lists, so the index is found by address (hashing the
        // list itself for each of a million nodes was a good part of the writing);
        // by value for a list that is somehow not the interned one.
        let mut index: HashMap<&Vec<Acl>, u32> = HashMap::new();
        let mut by_address: FxHashMap<*const Vec<Acl>, u32> = FxHashMap::default();
        buf.put_i32(self.acls.len() as i32);
        for (i, (a, _)) in self.acls.iter().enumerate() {
            index.insert(&**a, i as u32);
            by_address.insert(Arc::as_ptr(a), i as u32);
            Acl::encode_list(a, &mut buf);
        }
        buf.extend_from_slice(&(self.nodes.len() as u64).to_be_bytes());
        cw.put(&buf)?;
        for (k, n) in self.nodes.iter() {
            buf.clear();
            k.put_path(&mut buf);
            buf.put_opt_buffer(n.data());
            let idx = *by_address
                .get(&Arc::as_ptr(&n.acl))
                .or_else(|| index.get(&*n.acl))
                .expect("every node's ACL is in the ACL table");
            buf.extend_from_slice(&idx.to_be_bytes());
            for v in [n.czxid, n.mzxid, n.pzxid, n.ctime, n.mtime] {
                buf.put_i64(v);
            }
            for v in [n.version, n.cversion, n.aversion] {
                buf.put_i32(v);
            }
            buf.put_i64(n.ephemeral_owner);
            cw.put(&buf)?;
        }
        let crc = cw.crc;
        cw.w.write_all(&crc.to_be_bytes())
    }

    /// Loads a snapshot written by [`Tree::write_snapshot`] from a stream: reads it to
    /// the end (a transient buffer the size of the snapshot), then
    /// [`Tree::read_snapshot_bytes`]. Prefer that over an mmapped file.
    pub fn read_snapshot(r: &mut dyn Read) -> Result<Tree, TreeError> {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        Tree::read_snapshot_bytes(&b)
    }

    /// Loads a snapshot from its bytes (a storage layer can pass an mmapped file),
    /// checking its checksum, its structure (keys in order, every node's parent
    /// present) and its digest. A big snapshot is decoded on helper threads while
    /// this one checks the checksum and builds the map (`load_body`); a
    /// checksum mismatch is reported before anything the decoding found.
    pub fn read_snapshot_bytes(b: &[u8]) -> Result<Tree, TreeError> {
        // As many helpers as cores: decoding is most of the work, and this thread
        // mostly waits for it (the map inserts and the checksum are the lighter part).
        let workers = if b.len() >= PARALLEL_BYTES_MIN {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, WORKERS_MAX)
        } else {
            0
        };
        load(b, workers, CHUNK_RECORDS)
    }
}

/// Snapshots at least this big are decoded on helper threads.
const PARALLEL_BYTES_MIN: usize = 1 << 20;
/// Helper threads decoding one snapshot, at most.
const WORKERS_MAX: usize = 4;
/// Nodes per unit of work handed to a helper (and per batch inserted into the map).
const CHUNK_RECORDS: usize = 4096;
/// Decoded chunks a helper may have waiting for the map builder.
const CHUNKS_QUEUED_MAX: usize = 4;
/// Bytes of a node record after its path and data: ACL index, five i64 times and
/// zxids, three i32 versions, the ephemeral owner.
const NODE_FIXED_BYTES: usize = 4 + 5 * 8 + 3 * 4 + 8;

/// [`Tree::read_snapshot_bytes`] with `workers` helper threads (0: all on this
/// thread) decoding `chunk_records` nodes at a time.
pub(super) fn load(b: &[u8], workers: usize, chunk_records: usize) -> Result<Tree, TreeError> {
    if b.len() < 4 {
        return Err(TreeError::Corrupt(format!("{} bytes", b.len())));
    }
    let (body, tail) = b.split_at(b.len() - 4);
    let stored = u32::from_be_bytes(tail.try_into().expect("4 bytes"));
    if workers == 0 {
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(TreeError::Checksum { stored, computed });
        }
        return load_body(body, None, 0, chunk_records);
    }
    // The checksum is checked while helpers decode; its verdict comes first.
    let mut computed = 0;
    let loaded = load_body(body, Some(&mut computed), workers, chunk_records);
    if stored != computed {
        return Err(TreeError::Checksum { stored, computed });
    }
    loaded
}

/// The header up to the node count.
struct Header {
    last_zxid: i64,
    digest: u64,
    acls: Vec<Arc<Vec<Acl>>>,
    count: u64,
}

fn read_header(t: &mut Tree, r: &mut Reader<'_>) -> Result<Header, TreeError> {
    let magic = r.i64()? as u64;
    if magic != MAGIC {
        return Err(TreeError::BadMagic(magic));
    }
    let format = r.i32()? as u32;
    if !(FORMAT_READ_MIN..=FORMAT).contains(&format) {
        return Err(TreeError::BadVersion(format));
    }
    let last_zxid = r.i64()?;
    let digest = r.i64()? as u64;
    let n_acls = r.i32()? as u32 as usize;
    if n_acls > ACL_ENTRIES_MAX {
        return Err(TreeError::Corrupt(format!("{n_acls} ACL lists")));
    }
    let mut acls = Vec::new();
    for _ in 0..n_acls {
        acls.push(t.intern_acl(Acl::decode_list(r)?));
    }
    let count = r.i64()? as u64;
    Ok(Header {
        last_zxid,
        digest,
        acls,
        count,
    })
}

/// Walks the node records' framing only (path and data lengths), noting where
/// every `chunk_records`-th record starts; returns those offsets (relative to the
/// reader's buffer) and the end of the last record.
fn chunk_starts(
    r: &mut Reader<'_>,
    count: u64,
    chunk_records: usize,
) -> Result<Vec<usize>, TreeError> {
    let slots = node_slots_prealloc(count, r.remaining()) / chunk_records + 1;
    let mut starts = Vec::with_capacity(slots);
    for i in 0..count {
        if i % chunk_records as u64 == 0 {
            starts.push(r.position());
        }
        r.buffer()?
            .ok_or_else(|| TreeError::Corrupt("null path".into()))?;
        r.buffer()?;
        r.skip(NODE_FIXED_BYTES)?;
    }
    starts.push(r.position());
    Ok(starts)
}

/// Everything one chunk of node records decodes to; merged in file order.
#[derive(Default)]
struct Decoded<'a> {
    entries: Vec<(Key, Node)>,
    /// ACL table index of each entry.
    acl_index: Vec<u32>,
    /// Children counted per parent, runs in key order (children of one parent are
    /// contiguous).
    runs: Vec<(&'a str, i32)>,
    /// Nodes that are not persistent: (owner, key).
    special: Vec<(i64, Key)>,
    data_size: u64,
    digest: u64,
}

/// Decodes one chunk of well-framed node records (`chunk_starts` checked the
/// framing): paths, order inside the chunk, ACL indexes, node digests.
fn decode_chunk<'a>(
    bytes: &'a [u8],
    count: usize,
    acls: &[Arc<Vec<Acl>>],
) -> Result<Decoded<'a>, TreeError> {
    let mut r = Reader::new(bytes);
    let mut d = Decoded {
        entries: Vec::with_capacity(count),
        acl_index: Vec::with_capacity(count),
        ..Decoded::default()
    };
    for _ in 0..count {
        let path = r
            .ustring()?
            .ok_or_else(|| TreeError::Corrupt("null path".into()))?;
        let data = r.buffer()?;
        let idx = r.i32()? as u32;
        let acl = acls
            .get(idx as usize)
            .ok_or_else(|| TreeError::Corrupt(format!("ACL index {idx}")))?
            .clone();
        let meta = Meta {
            acl,
            czxid: r.i64()?,
            mzxid: r.i64()?,
            pzxid: r.i64()?,
            ctime: r.i64()?,
            mtime: r.i64()?,
            version: r.i32()?,
            cversion: r.i32()?,
            aversion: r.i32()?,
            num_children: 0,
            ephemeral_owner: r.i64()?,
        };
        let node = Node::new(meta, data);
        if path != "/" {
            if crate::proto::path::validate_path(path, false).is_err() {
                return Err(TreeError::Corrupt(format!("bad path {path:?}")));
            }
            let parent = crate::proto::path::parent(path);
            match d.runs.last_mut() {
                Some((p, n)) if *p == parent => *n += 1,
                _ => d.runs.push((parent, 1)),
            }
        }
        let key = Key::from_path(path);
        if let Some((prev, _)) = d.entries.last() {
            if *prev >= key {
                return Err(TreeError::Corrupt(format!("{path} out of order")));
            }
        }
        d.data_size = d.data_size.wrapping_add(node_size(path, node.data_bytes()));
        d.digest = d.digest.wrapping_add(node_digest(path, &node));
        if NodeKind::of_owner(node.ephemeral_owner, true) != NodeKind::Persistent {
            d.special.push((node.ephemeral_owner, key.clone()));
        }
        d.acl_index.push(idx);
        d.entries.push((key, node));
    }
    Ok(d)
}

/// Header, then the nodes chunk by chunk: decoded here (`workers` 0) or on that
/// many scoped helper threads, chunk `i` by helper `i % workers`, while this thread
/// computes the body's crc32c into `crc` and inserts the chunks in order.
fn load_body(
    body: &[u8],
    crc: Option<&mut u32>,
    workers: usize,
    chunk_records: usize,
) -> Result<Tree, TreeError> {
    let mut r = Reader::new(body);
    let mut t = Tree::empty();
    let h = read_header(&mut t, &mut r)?;
    let starts = chunk_starts(&mut r, h.count, chunk_records)?;
    if !r.is_empty() {
        return Err(TreeError::Corrupt(format!(
            "{} bytes after the last node",
            r.remaining()
        )));
    }
    let chunks = starts.len() - 1;
    // Records in chunk i: all but the last chunk are full.
    let records = |i: usize| {
        if i + 1 < chunks {
            chunk_records
        } else {
            (h.count - (i * chunk_records) as u64) as usize
        }
    };
    let chunk = |i: usize| decode_chunk(&body[starts[i]..starts[i + 1]], records(i), &h.acls);
    let mut b = Builder::new(h.acls.len());
    if workers == 0 {
        for i in 0..chunks {
            b.add(&mut t, chunk(i)?)?;
        }
    } else {
        std::thread::scope(|s| -> Result<(), TreeError> {
            let mut queues = Vec::with_capacity(workers);
            for w in 0..workers {
                let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_QUEUED_MAX);
                queues.push(rx);
                let chunk = &chunk;
                std::thread::Builder::new()
                    .name("corral-load".into())
                    .spawn_scoped(s, move || {
                        for i in (w..chunks).step_by(workers) {
                            let d = chunk(i);
                            let failed = d.is_err();
                            // The builder stops listening after an error.
                            if tx.send(d).is_err() || failed {
                                break;
                            }
                        }
                    })
                    .map_err(TreeError::Io)?;
            }
            if let Some(crc) = crc {
                *crc = crc32c::crc32c(body);
            }
            for i in 0..chunks {
                let d = queues[i % workers]
                    .recv()
                    .expect("a helper sends every chunk it was given until one fails")?;
                b.add(&mut t, d)?;
            }
            Ok(())
        })?;
    }
    b.finish(t, &h)
}

/// Inserts decoded chunks into the tree in file order and keeps what spans chunks:
/// the order across chunk boundaries, the children run still open, ACL uses.
struct Builder<'a> {
    runs: Vec<(&'a str, i32)>,
    acl_uses: Vec<u64>,
    last_key: Option<Key>,
}

impl<'a> Builder<'a> {
    fn new(acls: usize) -> Builder<'a> {
        Builder {
            runs: Vec::new(),
            acl_uses: vec![0; acls],
            last_key: None,
        }
    }

    fn add(&mut self, t: &mut Tree, d: Decoded<'a>) -> Result<(), TreeError> {
        if let (Some(prev), Some((first, _))) = (&self.last_key, d.entries.first()) {
            if prev >= first {
                return Err(TreeError::Corrupt(format!(
                    "{} out of order",
                    first.to_path()
                )));
            }
        }
        self.last_key = d.entries.last().map(|(k, _)| k.clone());
        for (p, n) in d.runs {
            match self.runs.last_mut() {
                Some((q, m)) if *q == p => *m += n,
                _ => self.runs.push((p, n)),
            }
        }
        for i in d.acl_index {
            self.acl_uses[i as usize] += 1;
        }
        t.data_size = t.data_size.wrapping_add(d.data_size);
        t.digest = t.digest.wrapping_add(d.digest);
        for (owner, key) in d.special {
            t.index_new(owner, key);
        }
        // Keys arrive in order (checked above and in `decode_chunk`).
        t.insert_run(d.entries);
        Ok(())
    }

    /// Children counts, ACL reference counts, the digest check and quotas.
    fn finish(self, mut t: Tree, h: &Header) -> Result<Tree, TreeError> {
        if t.node("/").is_none() {
            return Err(TreeError::Corrupt("no root".into()));
        }
        for (parent, n) in self.runs {
            if !t.update_node(parent, |p| p.num_children = n) {
                return Err(TreeError::Corrupt(format!("no parent {parent}")));
            }
        }
        // Count the nodes' references; drop the table's own.
        for (a, uses) in h.acls.iter().zip(self.acl_uses) {
            *t.acls.get_mut(&**a).expect("interned") += uses;
            t.release_acl(a);
        }
        t.last_zxid = h.last_zxid;
        if t.digest != h.digest {
            return Err(TreeError::Digest {
                stored: h.digest,
                computed: t.digest,
            });
        }
        t.setup_quotas();
        Ok(t)
    }
}

/// Node slots to reserve for a claimed `count` with `body_bytes_left` bytes of nodes
/// to come: never more than those bytes can hold (a corrupt or hostile count in a
/// short file would otherwise reserve up to 128 MiB), nor [`NODES_PREALLOC_MAX`].
fn node_slots_prealloc(count: u64, body_bytes_left: usize) -> usize {
    let fit = (body_bytes_left / NODE_BYTES_MIN) as u64;
    count.min(fit).min(NODES_PREALLOC_MAX) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed header with no ACL table and a node count; no nodes follow.
    fn header_claiming(count: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_be_bytes());
        b.extend_from_slice(&FORMAT.to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Found by fuzz/corral_snapshot: a 300-byte file whose node count claimed
    /// millions reserved 128 MiB before the first node was read.
    #[test]
    fn node_count_reserves_only_what_the_bytes_can_hold() {
        assert_eq!(node_slots_prealloc(1 << 40, 0), 0);
        assert_eq!(node_slots_prealloc(1 << 40, 10 * NODE_BYTES_MIN + 1), 10);
        assert_eq!(node_slots_prealloc(3, 1 << 30), 3);
        assert_eq!(node_slots_prealloc(u64::MAX, usize::MAX), 1 << 22);
        for count in [1u64 << 22, u64::MAX] {
            let e = Tree::read_snapshot_bytes(&header_claiming(count)).unwrap_err();
            assert!(
                matches!(e, TreeError::Corrupt(_) | TreeError::Decode(_)),
                "{e:?}"
            );
        }
    }
}
