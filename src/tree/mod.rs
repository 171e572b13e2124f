//! The znode tree: one persistent (structurally shared) map of every znode, the
//! prepare step that turns a client write into a [`Txn`], the apply step that turns a
//! `Txn` into the next tree version, read handling and ACL checks.
//!
//! **Who runs what.** The sequencer core owns the authoritative [`Tree`]: it calls
//! [`prepare`] on each write (against its pending view), [`apply`] on each committed
//! txn (a learner and recovery: [`apply_restored`], the reference's `processTxn`
//! rules, which a fuzzy snapshot needs), and after each commit batch publishes
//! `Arc<Tree>` (a clone, O(1)) to the shard cores. Shard cores call [`read`] and [`Tree::get`] on the version they hold,
//! without locks. Nothing in this module does IO or reads a clock: time, zxids and the
//! caller's identity come in as arguments, so apply is deterministic.
//!
//! **Data flow.** `Request` → [`prepare`] (every decision: zxid, time, sequence
//! suffix, ephemeral owner, expanded ACLs, or the error) → [`Txn`] (logged, replicated)
//! → [`apply`] → next `Tree` + [`Applied`] (reply body and watch triggers). A `Txn`
//! travels and is logged as ZooKeeper's txn entry (`txn.rs`), carrying ZooKeeper's tree
//! digest (`digest.rs`), which every change to the tree keeps up to date.
//!
//! **Layout.** All znodes live in one `imbl::OrdMap` keyed by the path with its last
//! `/` replaced by NUL (`/a/b` → `/a\0b`, the root is the empty key). That order puts
//! the children of a node in one contiguous key range (`parent\0…`) and all its
//! descendants in two (`parent\0…`, `parent/…`), so there are no per-node child sets
//! at all; the key is the only copy of a node's path. Values are `Node`s, one
//! reference-counted allocation each holding stat, ACL and data (`node.rs`), so the
//! B-tree leaves stay small (the path copy on a write is cheap) and ACL lists are
//! interned (`Arc<Vec<Acl>>`, reference counted in the tree like the reference's ACL
//! cache). Internally `cversion` counts creates, as the reference's `DataTree` does;
//! clients see `2 * creates - numChildren` (the reference's `DataNode.copyStat`).

mod acl;
mod digest;
mod key;
mod node;
mod ops;
mod quota;
mod serve;
mod snapshot;
mod txn;
pub mod zksnap;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::proto::{Acl, DecodeError, Stat};

pub(crate) use acl::check_acl;
#[cfg(test)]
pub(crate) use acl::stand_in_acl;
pub use acl::{digest_id, digest_id_with, Caller, DigestAlg};
pub use digest::DIGEST_VERSION;
pub use ops::{
    apply, apply_restored, build_tree, cleanup_txn, close_session_txn, create_session_txn, prepare,
    read, Applied, TxnContext,
};
pub use quota::{StatsTrack, StatsTrackError, LIMIT_NODE, STAT_NODE};
pub use serve::{serve_read, serve_read_frame, FrameRead};
pub use txn::{CreateTxn, Txn, TxnOp, TXN_DIGEST_BYTES};

use digest::node_digest;
use key::Key;
pub(crate) use node::{Meta, Node};

/// `ephemeralOwner` marker of a container node (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// Top byte that marks an extended ephemeral owner (TTL nodes).
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
/// Reserved bits of an extended owner; zero for TTL.
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
/// Largest TTL in milliseconds (`EphemeralType.TTL.maxValue()`, about 34 years).
pub const TTL_MS_MAX: i64 = !(EXTENDED_MASK | RESERVED_BITS_MASK);

/// What kind of node an `ephemeralOwner` value marks (`EphemeralType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Persistent, owner 0.
    Persistent,
    /// Owned by a session.
    Ephemeral,
    Container,
    /// A TTL node, with its ttl in ms.
    Ttl(i64),
}

impl NodeKind {
    /// Classifies an internal owner value. `extended` is `extendedTypesEnabled`: as in
    /// the reference, TTL markers are only recognised when it is on.
    pub fn of_owner(owner: i64, extended: bool) -> NodeKind {
        if extended && owner & EXTENDED_MASK == EXTENDED_MASK {
            // Only the TTL feature bit (0) exists; other reserved values are treated as TTL
            // values too rather than failing (the reference throws).
            return NodeKind::Ttl(owner & TTL_MS_MAX);
        }
        match owner {
            CONTAINER_EPHEMERAL_OWNER => NodeKind::Container,
            0 => NodeKind::Persistent,
            _ => NodeKind::Ephemeral,
        }
    }
}

/// The internal owner value of a TTL node.
pub fn ttl_owner(ttl_ms: i64) -> i64 {
    EXTENDED_MASK | (ttl_ms & TTL_MS_MAX)
}

/// Errors the world can cause this layer: a bad snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("snapshot io: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a corral tree snapshot (magic {0:#x})")]
    BadMagic(u64),
    /// A format this build does not read: a newer corral wrote it, or it is damaged.
    #[error("unsupported corral tree snapshot format {0} (this build reads formats 2 and 3)")]
    BadVersion(u32),
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot digest mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    Digest { stored: u64, computed: u64 },
    #[error("snapshot record: {0}")]
    Decode(#[from] DecodeError),
}

/// What `Tree::replace_data` changed: the node's new Stat and how many data bytes it
/// held before (for the quota accounting, without a second lookup).
pub(crate) struct Replaced {
    pub(crate) stat: Stat,
    pub(crate) old_data_bytes: usize,
}

/// A read-only view of one znode in one tree version.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    tree: &'a Tree,
    key: &'a Key,
    node: &'a Node,
}

impl<'a> NodeView<'a> {
    /// The node's data; `None` if it was written as the null buffer.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.node.data()
    }

    /// The Stat as clients see it (ephemeralOwner 0 for TTL and container nodes).
    pub fn stat(&self) -> Stat {
        self.node.stat()
    }

    pub fn acl(&self) -> &'a [Acl] {
        &self.node.acl
    }

    /// The internal ephemeral owner (TTL and container markers included).
    pub fn ephemeral_owner(&self) -> i64 {
        self.node.ephemeral_owner
    }

    /// The node's full path.
    pub fn path(&self) -> String {
        self.key.to_path()
    }

    /// Child names (not paths), in byte order.
    pub fn children(&self) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = self.key.child_prefix();
        let plen = prefix.len();
        let tree: &'a Tree = self.tree;
        tree.nodes
            .range::<_, [u8]>((
                std::ops::Bound::Included(&prefix[..]),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.as_bytes().starts_with(&prefix))
            .map(move |(k, _)| k.name_after(plen))
    }
}

/// One immutable version of the whole znode tree. Clone is O(1) and shares
/// structure; `Send + Sync`, so a version can be published to every shard core.
#[derive(Clone)]
pub struct Tree {
    nodes: OrdMap<Key, Node>,
    /// Interned ACL lists and how many nodes use each.
    acls: OrdMap<Arc<Vec<Acl>>, u64>,
    /// (session, node) for ephemeral nodes.
    ephemerals: OrdSet<(i64, Key)>,
    containers: OrdSet<Key>,
    ttls: OrdSet<Key>,
    last_zxid: i64,
    /// Quota roots in their trie form (`quota.rs`); rebuilt on load, never persisted.
    quota_roots: OrdSet<String>,
    /// Sum of path bytes + data bytes, as the reference's `approximateDataSize`.
    /// Wrapping: quota stats rewrites leave it behind, as the reference's does.
    data_size: u64,
    /// ZooKeeper's tree digest: wrapping sum of every node's digest.
    digest: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("nodes", &self.nodes.len())
            .field("last_zxid", &self.last_zxid)
            .field("digest", &format_args!("{:#018x}", self.digest))
            .finish()
    }
}

/// The system nodes of a fresh reference 3.8 server.
const ZOOKEEPER: &str = "/zookeeper";
const QUOTA: &str = "/zookeeper/quota";
const CONFIG: &str = "/zookeeper/config";

impl Tree {
    /// Exactly what a fresh reference 3.8 standalone server holds: `/` (one child, so its
    /// cversion reads −1), `/zookeeper` (two children, cversion −2), `/zookeeper/quota`,
    /// and `/zookeeper/config` (world:anyone READ, aversion −1, added without counting as
    /// a create). All zxids and times are 0.
    pub fn new() -> Tree {
        let mut t = Tree::empty();
        let mut root = Node::system(t.intern_acl(Acl::open()));
        root.meta_mut().num_children = 1;
        let mut zk = Node::system(t.intern_acl(Acl::open()));
        zk.meta_mut().num_children = 2;
        let quota = Node::system(t.intern_acl(Acl::open()));
        let read_only = t.intern_acl(vec![Acl::new(crate::proto::perms::READ, "world", "anyone")]);
        let mut config = Node::system(read_only);
        config.meta_mut().aversion = -1;
        for (path, node) in [
            ("/", root),
            (ZOOKEEPER, zk),
            (QUOTA, quota),
            (CONFIG, config),
        ] {
            t.insert_new(path, node);
        }
        t
    }

    fn empty() -> Tree {
        Tree {
            nodes: OrdMap::new(),
            acls: OrdMap::new(),
            ephemerals: OrdSet::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            last_zxid: 0,
            quota_roots: OrdSet::new(),
            data_size: 0,
            digest: 0,
        }
    }

    /// The node at `path`, if any. `""` names the root, as in the reference.
    pub fn get(&self, path: &str) -> Option<NodeView<'_>> {
        let k = Key::lookup(path);
        self.nodes.get_key_value(&k).map(|(key, node)| NodeView {
            tree: self,
            key,
            node,
        })
    }

    pub(crate) fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&Key::lookup(path))
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The znode count as the reference's `mntr` reports it (`zk_znode_count`): the
    /// distinct nodes plus one, because the reference stores the root under both `""`
    /// and `/`. A fresh tree reports 5.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + 1
    }

    /// The number of distinct znodes (a fresh tree has 4).
    pub fn distinct_node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sum of path bytes and data bytes over all nodes, as the reference's
    /// `zk_approximate_data_size` (which counts the root's two names, `""` and `/`).
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// ZooKeeper's tree digest of this version (digest version [`DIGEST_VERSION`]):
    /// the wrapping sum of every node's CRC32 over path, data and persisted stat, nodes
    /// under `/zookeeper/` left out (PEER-PROTOCOL.md §6.5). A fresh tree has
    /// `0x51c6d660`, as a fresh reference server. After [`apply`] it is the value a
    /// txn's digest must equal; comparing is the caller's business.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Paths of the session's ephemeral nodes, sorted.
    pub fn ephemerals_of(&self, session_id: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .ephemerals
            .range((session_id, Key::root())..)
            .take_while(|(s, _)| *s == session_id)
            .map(|(_, k)| k.to_path())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every session that owns ephemerals, with their paths (sorted), for the `dump`
    /// four-letter word. Sessions in ascending id order.
    pub fn ephemerals(&self) -> Vec<(i64, Vec<String>)> {
        let mut out: Vec<(i64, Vec<String>)> = Vec::new();
        for (sid, k) in self.ephemerals.iter() {
            match out.last_mut() {
                Some((s, v)) if s == sid => v.push(k.to_path()),
                _ => out.push((*sid, vec![k.to_path()])),
            }
        }
        for (_, v) in &mut out {
            v.sort_unstable();
        }
        out
    }

    /// How many ephemeral nodes exist (mntr's `zk_ephemerals_count`).
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.len()
    }

    /// Containers that are empty and have had a child (cversion > 0), and TTL nodes
    /// without children whose `now_ms - mtime > ttl`: what the reference's
    /// ContainerManager deletes. Sorted.
    pub fn cleanup_candidates(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for k in self.containers.iter() {
            if let Some(n) = self.nodes.get(k) {
                if n.num_children == 0 && n.cversion > 0 {
                    out.push(k.to_path());
                }
            }
        }
        for k in self.ttls.iter() {
            if let Some(n) = self.nodes.get(k) {
                if n.num_children == 0 {
                    if let NodeKind::Ttl(ttl) = NodeKind::of_owner(n.ephemeral_owner, true) {
                        if ttl != 0 && now_ms.saturating_sub(n.mtime) > ttl {
                            out.push(k.to_path());
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Count of all descendants of `path` (the reference's getAllChildrenNumber; for
    /// `/` every node but the root).
    pub(crate) fn descendant_count(&self, path: &str) -> usize {
        match path {
            "/" => return self.nodes.len() - 1,
            // The reference counts keys starting with "/", which includes the root's
            // second name.
            "" => return self.nodes.len(),
            _ => {}
        }
        let k = Key::lookup(path);
        let mut n = 0;
        for prefix in [k.child_prefix(), k.descendant_prefix()] {
            n += self
                .nodes
                .range::<_, [u8]>((
                    std::ops::Bound::Included(&prefix[..]),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(k, _)| k.as_bytes().starts_with(&prefix))
                .count();
        }
        n
    }

    // ----- mutation helpers used by apply and snapshot loading -----

    pub(crate) fn intern_acl(&mut self, acl: Vec<Acl>) -> Arc<Vec<Acl>> {
        if let Some((k, _)) = self.acls.get_key_value(&acl) {
            let k = k.clone();
            *self.acls.get_mut(&acl).expect("present") += 1;
            return k;
        }
        let a = Arc::new(acl);
        self.acls.insert(a.clone(), 1);
        a
    }

    fn release_acl(&mut self, acl: &Arc<Vec<Acl>>) {
        let gone = match self.acls.get_mut(&**acl) {
            Some(c) => {
                *c -= 1;
                *c == 0
            }
            None => false,
        };
        if gone {
            self.acls.remove(&**acl);
        }
    }

    /// A node made at `czxid` whose ACL is a snapshot's stand-in
    /// ([`acl::stand_in_acl`]) takes `acl` in its place. Any other node is left as it
    /// is (also one an earlier create of the same path made, since deleted).
    pub(crate) fn resolve_stand_in_acl(&mut self, path: &str, acl: &[Acl], czxid: i64) {
        let old = match self.node(path) {
            Some(n) if n.czxid == czxid && acl::is_stand_in_acl(&n.acl) => n.acl.clone(),
            _ => return,
        };
        let new_acl = self.intern_acl(acl.to_vec());
        self.update_node(path, |n| n.acl = new_acl);
        self.release_acl(&old);
    }

    /// Nodes still holding a snapshot's stand-in ACL, as (path, the ACL index the
    /// snapshot named). Answers at once unless some stand-in list is in use.
    pub fn unresolved_acls(&self) -> Vec<(String, String)> {
        if !self.acls.keys().any(|a| acl::is_stand_in_acl(a)) {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|(_, n)| acl::is_stand_in_acl(&n.acl))
            .map(|(k, n)| (k.to_path(), n.acl[0].id.id.clone()))
            .collect()
    }

    /// Inserts a node that does not exist yet; indexes, size and digest follow.
    /// The parent's counters are the caller's business.
    pub(crate) fn insert_new(&mut self, path: &str, node: Node) {
        let key = Key::from_path(path);
        self.account_new(path, &key, &node);
        let prev = self.nodes.insert(key, node);
        assert!(prev.is_none(), "insert_new over an existing node {path}");
    }

    /// Inserts a run of new nodes in ascending key order (accounted for already).
    /// In two passes, even positions then odd: nodes inserted in key order leave
    /// imbl's B-tree leaves half full, the second pass fills every leaf without a
    /// split (about 40 bytes per node less; PERF.md, "Server: start-up and memory").
    pub(crate) fn insert_run(&mut self, run: Vec<(Key, Node)>) {
        debug_assert!(run.windows(2).all(|w| w[0].0 < w[1].0), "run out of order");
        for (k, n) in run.iter().step_by(2) {
            self.nodes.insert(k.clone(), n.clone());
        }
        for (k, n) in run.into_iter().skip(1).step_by(2) {
            self.nodes.insert(k, n);
        }
    }

    /// Size, digest and index bookkeeping for a node about to be inserted.
    pub(crate) fn account_new(&mut self, path: &str, key: &Key, node: &Node) {
        self.data_size = self
            .data_size
            .wrapping_add(node_size(path, node.data_bytes()));
        self.digest = self.digest.wrapping_add(node_digest(path, node));
        if NodeKind::of_owner(node.ephemeral_owner, true) != NodeKind::Persistent {
            self.index_new(node.ephemeral_owner, key.clone());
        }
    }

    /// Puts a new node with this internal owner in the index of its kind
    /// (ephemerals, containers, TTL nodes; persistent nodes have none).
    pub(crate) fn index_new(&mut self, owner: i64, key: Key) {
        match NodeKind::of_owner(owner, true) {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral => {
                self.ephemerals.insert((owner, key));
            }
            NodeKind::Container => {
                self.containers.insert(key);
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(key);
            }
        }
    }

    /// Removes a node; returns it. Indexes, size, digest and ACL counts follow.
    pub(crate) fn remove_node(&mut self, path: &str) -> Option<Node> {
        let key = Key::from_path(path);
        let node = self.nodes.remove(&key)?;
        self.data_size = self
            .data_size
            .wrapping_sub(node_size(path, node.data_bytes()));
        self.digest = self.digest.wrapping_sub(node_digest(path, &node));
        match NodeKind::of_owner(node.ephemeral_owner, true) {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral => {
                self.ephemerals.remove(&(node.ephemeral_owner, key));
            }
            NodeKind::Container => {
                self.containers.remove(&key);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(&key);
            }
        }
        self.release_acl(&node.acl.clone());
        Some(node)
    }

    /// Changes a node's stat fields in place (copying it only if another version
    /// shares it); keeps size and digest right. Returns false if the node does not
    /// exist.
    pub(crate) fn update_node(&mut self, path: &str, f: impl FnOnce(&mut Meta)) -> bool {
        let key = Key::lookup(path);
        let Some(slot) = self.nodes.get_mut(&key) else {
            return false;
        };
        let old_digest = node_digest(path, slot);
        f(slot.meta_mut());
        let new_digest = node_digest(path, slot);
        self.digest = self
            .digest
            .wrapping_sub(old_digest)
            .wrapping_add(new_digest);
        true
    }

    /// Replaces a node's data (`None`: null), stat unchanged; keeps size and digest
    /// right. Returns false if the node does not exist.
    pub(crate) fn update_data(&mut self, path: &str, data: Option<&[u8]>) -> bool {
        let key = Key::lookup(path);
        let Some(slot) = self.nodes.get_mut(&key) else {
            return false;
        };
        let old_size = node_size(path, slot.data_bytes());
        let old_digest = node_digest(path, slot);
        *slot = slot.with_data(data);
        let new_size = node_size(path, slot.data_bytes());
        let new_digest = node_digest(path, slot);
        self.data_size = self.data_size.wrapping_sub(old_size).wrapping_add(new_size);
        self.digest = self
            .digest
            .wrapping_sub(old_digest)
            .wrapping_add(new_digest);
        true
    }

    /// setData: new data (`None`: null) and write stamps. Builds the new node directly
    /// instead of copying the old one (and its data) first.
    pub(crate) fn replace_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        zxid: i64,
        time_ms: i64,
        version: i32,
    ) -> Option<Replaced> {
        let key = Key::lookup(path);
        let slot = self.nodes.get_mut(&key)?;
        let old_data_bytes = slot.data_bytes().len();
        let old_size = node_size(path, slot.data_bytes());
        let old_digest = node_digest(path, slot);
        let meta = Meta {
            mzxid: zxid,
            mtime: time_ms,
            version,
            ..(**slot).clone()
        };
        *slot = Node::new(meta, data);
        let stat = slot.stat();
        let new_size = node_size(path, slot.data_bytes());
        let new_digest = node_digest(path, slot);
        self.data_size = self.data_size.wrapping_sub(old_size).wrapping_add(new_size);
        self.digest = self
            .digest
            .wrapping_sub(old_digest)
            .wrapping_add(new_digest);
        Some(Replaced {
            stat,
            old_data_bytes,
        })
    }

    pub(crate) fn set_last_zxid(&mut self, zxid: i64) {
        self.last_zxid = zxid;
    }

    /// An ensemble member's `/zookeeper/config`: the QuorumVerifier text, version
    /// -1, mzxid the config's version, mtime `now_ms` — set locally at start-up and
    /// after each sync, never through a txn (the reference's
    /// `initConfigInZKDatabase`; nodes under `/zookeeper/` are outside the digest).
    pub fn set_config_node(&mut self, text: &[u8], config_version: i64, now_ms: i64) {
        if let Some(r) = self.replace_data(CONFIG, Some(text), config_version, now_ms, -1) {
            self.quota_after_set_data(CONFIG, r.old_data_bytes, text.len());
        }
    }
}

/// Path bytes + data bytes; the root counts twice (`""` and `/`) as in the reference.
fn node_size(path: &str, data: &[u8]) -> u64 {
    let p = if path.is_empty() {
        1
    } else {
        path.len() as u64
    };
    p + data.len() as u64
}
