//! ZooKeeper's tree digest (ZOOKEEPER-3114, digest version 2), so a corral replica and
//! a reference 3.8 replica agree on the value a txn carries (PEER-PROTOCOL.md §6.5).
//!
//! A node's digest is the CRC32 (zlib / `java.util.zip.CRC32`) of its path bytes (`/`
//! counts as `""`), its data and a 60-byte big-endian stat block; nodes under
//! `/zookeeper/` count 0 (`/zookeeper` itself counts). The tree digest is the wrapping
//! 64-bit sum of the node digests. [`super::Tree`] keeps that sum up to date on every
//! insert, removal and change, so reading it is free.
//!
//! Pure functions, run wherever a tree is changed: the sequencer core (apply), replay
//! on recovery, snapshot loading.

use super::Node;

/// `DigestCalculator.DIGEST_VERSION`: the only digest version this module computes; a
/// txn digest of any other version is not comparable.
pub const DIGEST_VERSION: i32 = 2;

/// Paths below this prefix are left out of the digest (the reference's quota and
/// config nodes are local state).
const EXCLUDED_PREFIX: &str = "/zookeeper/";

/// Bytes of the stat block a node digest covers.
const STAT_BLOCK_BYTES: usize = 60;

/// The digest one node contributes to the tree digest. `path` is its full path
/// (`"/"` or `""` for the root). Uses the internal cversion and ephemeralOwner (the
/// container and TTL markers included), as the reference's `StatPersisted` holds them.
pub(crate) fn node_digest(path: &str, n: &Node) -> u64 {
    if path.starts_with(EXCLUDED_PREFIX) {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let mut h = crc32fast::Hasher::new();
    h.update(path.as_bytes());
    // Null data contributes nothing, the same as empty (the reference skips it).
    h.update(n.data_bytes());
    h.update(&stat_block(n));
    u64::from(h.finalize())
}

/// czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner,
/// big-endian (pzxid third, unlike `StatPersisted`'s own order).
fn stat_block(n: &Node) -> [u8; STAT_BLOCK_BYTES] {
    let mut b = [0u8; STAT_BLOCK_BYTES];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        b[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    for v in [n.czxid, n.mzxid, n.pzxid, n.ctime, n.mtime] {
        put(&v.to_be_bytes());
    }
    for v in [n.version, n.cversion, n.aversion] {
        put(&v.to_be_bytes());
    }
    put(&n.ephemeral_owner.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Acl;
    use std::sync::Arc;

    fn node(data: &[u8]) -> Node {
        Node::system(Arc::new(Acl::open())).with_data(Some(data))
    }

    #[test]
    fn fresh_system_nodes_match_the_capture() {
        // PEER-PROTOCOL §6.5: CRC32(60 zero bytes) + CRC32("/zookeeper" ‖ 60 zero bytes).
        let empty = node(b"");
        let sum = node_digest("/", &empty) + node_digest("/zookeeper", &empty);
        assert_eq!(sum, 0x51c6d660);
        assert_eq!(node_digest("", &empty), node_digest("/", &empty));
        assert_eq!(node_digest("/zookeeper/quota", &empty), 0);
        assert_eq!(node_digest("/zookeeper/config", &node(b"x")), 0);
        assert_ne!(node_digest("/zookeeperx", &empty), 0);
    }

    #[test]
    fn null_data_counts_as_empty() {
        let null = node(b"").with_data(None);
        assert_eq!(node_digest("/a", &null), node_digest("/a", &node(b"")));
    }

    #[test]
    fn every_stat_field_counts() {
        let base = node(b"d");
        let d0 = node_digest("/a", &base);
        let edits: [fn(&mut super::super::Meta); 9] = [
            |n| n.czxid = 1,
            |n| n.mzxid = 1,
            |n| n.pzxid = 1,
            |n| n.ctime = 1,
            |n| n.mtime = 1,
            |n| n.version = 1,
            |n| n.cversion = 1,
            |n| n.aversion = 1,
            |n| n.ephemeral_owner = 1,
        ];
        for e in edits {
            let mut n = base.clone();
            e(n.meta_mut());
            assert_ne!(node_digest("/a", &n), d0);
        }
        // numChildren and the ACL are not part of it.
        let mut n = base.clone();
        n.meta_mut().num_children = 3;
        n.meta_mut().acl = Arc::new(vec![]);
        assert_eq!(node_digest("/a", &n), d0);
    }
}
