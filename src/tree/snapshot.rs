//! Tree snapshots: a whole tree version serialised as one stream, checksummed
//! (crc32c over every byte) and carrying the tree digest, which loading recomputes
//! and compares. Any published version can be written from any thread while the
//! sequencer keeps applying (the version is immutable). Loading rebuilds the indexes
//! (children counts, ephemerals, containers, TTLs, ACL reference counts).
//!
//! Layout (big-endian): magic u64, format u32, last_zxid i64, digest u64, ACL table
//! (count u32, then jute ACL lists), node count u64, then per node in key order: path,
//! data, ACL index u32, czxid, mzxid, pzxid, ctime, mtime (i64), version, cversion
//! (internal), aversion (i32), ephemeralOwner (internal, i64); then crc32c u32.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use crate::proto::{Acl, JuteWrite, Reader};

use super::key::Key;
use super::{Node, Tree, TreeError};

const MAGIC: u64 = u64::from_be_bytes(*b"CRLTREE\x01");
const FORMAT: u32 = 1;
/// Upper bound on one path or data buffer in a snapshot (jute.maxbuffer is at most this).
const FIELD_BYTES_MAX: usize = 64 << 20;
/// Upper bound on ACL lists and on entries in one list.
const ACL_ENTRIES_MAX: usize = 1 << 20;

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

struct CrcReader<'a> {
    r: &'a mut dyn Read,
    crc: u32,
}

impl CrcReader<'_> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), TreeError> {
        self.r.read_exact(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }
    fn u32(&mut self) -> Result<u32, TreeError> {
        let mut b = [0; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
    fn i32(&mut self) -> Result<i32, TreeError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, TreeError> {
        let mut b = [0; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
    fn i64(&mut self) -> Result<i64, TreeError> {
        Ok(self.u64()? as i64)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, TreeError> {
        let n = self.u32()? as usize;
        if n > FIELD_BYTES_MAX {
            return Err(TreeError::Corrupt(format!("field of {n} bytes")));
        }
        let mut v = vec![0; n];
        self.exact(&mut v)?;
        Ok(v)
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
        // ACL table: every distinct list once; nodes refer to it by index.
        let mut index: HashMap<&Vec<Acl>, u32> = HashMap::new();
        buf.put_i32(self.acls.len() as i32);
        for (i, (a, _)) in self.acls.iter().enumerate() {
            index.insert(&**a, i as u32);
            Acl::encode_list(a, &mut buf);
        }
        buf.extend_from_slice(&(self.nodes.len() as u64).to_be_bytes());
        cw.put(&buf)?;
        for (k, n) in self.nodes.iter() {
            buf.clear();
            buf.put_str(&k.to_path());
            buf.put_buffer(&n.data);
            let idx = *index
                .get(&*n.acl)
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

    /// Loads a snapshot written by [`Tree::write_snapshot`], checking its checksum,
    /// its structure (every node's parent present) and its digest.
    pub fn read_snapshot(r: &mut dyn Read) -> Result<Tree, TreeError> {
        let mut cr = CrcReader { r, crc: 0 };
        let magic = cr.u64()?;
        if magic != MAGIC {
            return Err(TreeError::BadMagic(magic));
        }
        let format = cr.u32()?;
        if format != FORMAT {
            return Err(TreeError::BadVersion(format));
        }
        let last_zxid = cr.i64()?;
        let stored_digest = cr.u64()?;
        let n_acls = cr.u32()? as usize;
        if n_acls > ACL_ENTRIES_MAX {
            return Err(TreeError::Corrupt(format!("{n_acls} ACL lists")));
        }
        let mut t = Tree::empty();
        let mut table: Vec<Arc<Vec<Acl>>> = Vec::new();
        for _ in 0..n_acls {
            let n = cr.u32()? as usize;
            if n > ACL_ENTRIES_MAX {
                return Err(TreeError::Corrupt(format!("ACL list of {n}")));
            }
            let mut raw = Vec::new();
            raw.extend_from_slice(&(n as u32).to_be_bytes());
            for _ in 0..n {
                raw.extend_from_slice(&cr.u32()?.to_be_bytes());
                for _ in 0..2 {
                    let s = cr.bytes()?;
                    raw.put_buffer(&s);
                }
            }
            let list = Acl::decode_list(&mut Reader::new(&raw))?;
            table.push(t.intern_acl(list));
        }
        let count = cr.u64()?;
        let mut children: HashMap<String, i32> = HashMap::new();
        // Nodes arrive in key order. They are collected first and inserted in two
        // passes (even positions, then odd): sequential inserts leave imbl's B-tree
        // leaves half full, the second pass fills every leaf without a split, which
        // is about 30 bytes per node less after a restart.
        let mut entries: Vec<(Key, Arc<Node>)> = Vec::new();
        for _ in 0..count {
            let path = String::from_utf8(cr.bytes()?)
                .map_err(|_| TreeError::Corrupt("path not UTF-8".into()))?;
            let data = cr.bytes()?;
            let idx = cr.u32()? as usize;
            let acl = table
                .get(idx)
                .ok_or_else(|| TreeError::Corrupt(format!("ACL index {idx}")))?
                .clone();
            *t.acls.get_mut(&*acl).expect("interned") += 1;
            let czxid = cr.i64()?;
            let mzxid = cr.i64()?;
            let pzxid = cr.i64()?;
            let ctime = cr.i64()?;
            let mtime = cr.i64()?;
            let version = cr.i32()?;
            let cversion = cr.i32()?;
            let aversion = cr.i32()?;
            let ephemeral_owner = cr.i64()?;
            if path != "/" {
                if crate::proto::path::validate_path(&path, false).is_err() {
                    return Err(TreeError::Corrupt(format!("bad path {path:?}")));
                }
                let parent = crate::proto::path::parent(&path).to_string();
                *children.entry(parent).or_default() += 1;
            }
            let key = Key::from_path(&path);
            if let Some((prev, _)) = entries.last() {
                if *prev >= key {
                    return Err(TreeError::Corrupt(format!("{path} out of order")));
                }
            }
            let node = Node {
                data: data.into_boxed_slice(),
                acl,
                czxid,
                mzxid,
                pzxid,
                ctime,
                mtime,
                version,
                cversion,
                aversion,
                num_children: 0,
                ephemeral_owner,
            };
            t.account_new(&path, &key, &node);
            entries.push((key, Arc::new(node)));
        }
        let computed = cr.crc;
        let mut tail = [0u8; 4];
        cr.r.read_exact(&mut tail)?;
        let stored = u32::from_be_bytes(tail);
        if stored != computed {
            return Err(TreeError::Checksum { stored, computed });
        }
        for (k, n) in entries.iter().step_by(2) {
            t.nodes.insert(k.clone(), n.clone());
        }
        for (k, n) in entries.into_iter().skip(1).step_by(2) {
            t.nodes.insert(k, n);
        }
        if t.node("/").is_none() {
            return Err(TreeError::Corrupt("no root".into()));
        }
        for (parent, n) in children {
            if !t.update_node(&parent, |p| p.num_children = n) {
                return Err(TreeError::Corrupt(format!("no parent {parent}")));
            }
        }
        // Drop the table's own references.
        for a in &table {
            t.release_acl(a);
        }
        t.last_zxid = last_zxid;
        if t.digest != stored_digest {
            return Err(TreeError::Digest {
                stored: stored_digest,
                computed: t.digest,
            });
        }
        Ok(t)
    }
}
