//! One znode as the tree stores it: its stat fields, ACL and data in a single
//! reference-counted heap allocation, reached through an 8-byte pointer.
//!
//! A million znodes of 100 bytes used to cost two allocations each (an `Arc<Node>`
//! of 104 bytes and a boxed data slice), 224 bytes of heap with glibc's headers and
//! rounding; one allocation of an 80-byte header followed by the data bytes costs
//! 192. The map's leaves keep the same 8-byte value, so a write's path copy is as
//! cheap as before.
//!
//! Built wherever a tree is changed (the sequencer core's apply, recovery's replay
//! and snapshot loading, including its helper threads); read from every shard core
//! through published tree versions. Immutable while shared: [`Node::meta_mut`] and
//! [`Node::set_data`] change the allocation in place only when this handle is the
//! only one, and otherwise move this handle to a fresh copy, as `Arc::make_mut`
//! does. Pure data: no IO, no clock.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{self, AtomicU32, Ordering};
use std::sync::Arc;

use crate::proto::{Acl, Stat};

use super::NodeKind;

/// Everything about a znode but its path (the map key) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) acl: Arc<Vec<Acl>>,
    pub(crate) czxid: i64,
    pub(crate) mzxid: i64,
    pub(crate) pzxid: i64,
    pub(crate) ctime: i64,
    pub(crate) mtime: i64,
    pub(crate) version: i32,
    /// Creates under this node so far (the reference's internal cversion); the
    /// sequence suffix of the next sequential child.
    pub(crate) cversion: i32,
    pub(crate) aversion: i32,
    pub(crate) num_children: i32,
    /// Internal owner: session id, 0, [`super::CONTAINER_EPHEMERAL_OWNER`] or a TTL
    /// marker.
    pub(crate) ephemeral_owner: i64,
}

impl Meta {
    /// A node with all zxids, times and versions 0.
    pub(crate) fn system(acl: Arc<Vec<Acl>>) -> Meta {
        Meta {
            acl,
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            num_children: 0,
            ephemeral_owner: 0,
        }
    }
}

/// `Header::len` of null data (a client wrote the null buffer: it reads back null
/// and counts as empty everywhere else).
const NULL_LEN: u32 = u32::MAX;
/// References beyond this abort, as `Arc` does past `isize::MAX` (each reference
/// is at least a map slot, so a live tree never gets near it).
const REFS_MAX: u32 = u32::MAX / 2;

/// The front of the allocation; the data bytes follow it.
#[repr(C)]
struct Header {
    refs: AtomicU32,
    len: u32,
    meta: Meta,
}

const HEADER_BYTES: usize = std::mem::size_of::<Header>();

/// A znode: [`Meta`] (through `Deref`) and its data, in one allocation shared by
/// every tree version that holds it.
pub(crate) struct Node {
    ptr: NonNull<Header>,
}

// SAFETY: a Node is an immutable, atomically reference-counted value (like
// `Arc<(Meta, [u8])>`); it is changed only through `&mut self` while its count is
// 1. Meta is Send + Sync.
unsafe impl Send for Node {}
unsafe impl Sync for Node {}

fn layout(data_bytes: usize) -> Layout {
    let bytes = HEADER_BYTES
        .checked_add(data_bytes)
        .expect("znode data fits in memory");
    Layout::from_size_align(bytes, std::mem::align_of::<Header>())
        .expect("znode layout")
        .pad_to_align()
}

impl Node {
    /// A node holding `meta` and a copy of `data` (`None`: null data).
    pub(crate) fn new(meta: Meta, data: Option<&[u8]>) -> Node {
        let len = data.map_or(0, <[u8]>::len);
        let stored_len = match data {
            None => NULL_LEN,
            // Data comes from frames and records bounded far below 4 GiB.
            Some(d) => u32::try_from(d.len())
                .ok()
                .filter(|&l| l != NULL_LEN)
                .expect("znode data under 4 GiB"),
        };
        let layout = layout(len);
        // SAFETY: the layout has a non-zero size (the header); the header is
        // written before anything reads it, the data bytes fill the rest.
        unsafe {
            let p = alloc::alloc(layout) as *mut Header;
            let Some(ptr) = NonNull::new(p) else {
                alloc::handle_alloc_error(layout)
            };
            p.write(Header {
                refs: AtomicU32::new(1),
                len: stored_len,
                meta,
            });
            if let Some(d) = data {
                std::ptr::copy_nonoverlapping(d.as_ptr(), (p as *mut u8).add(HEADER_BYTES), len);
            }
            Node { ptr }
        }
    }

    /// A system node: empty data, all zxids, times and versions 0.
    pub(crate) fn system(acl: Arc<Vec<Acl>>) -> Node {
        Node::new(Meta::system(acl), Some(&[]))
    }

    fn header(&self) -> &Header {
        // SAFETY: the pointer is live while this handle is.
        unsafe { self.ptr.as_ref() }
    }

    /// The node's data; `None` if it was written as the null buffer.
    pub(crate) fn data(&self) -> Option<&[u8]> {
        let len = self.header().len;
        if len == NULL_LEN {
            return None;
        }
        // SAFETY: `len` data bytes follow the header in the same allocation, written
        // once at creation and never while shared.
        Some(unsafe {
            std::slice::from_raw_parts(
                (self.ptr.as_ptr() as *const u8).add(HEADER_BYTES),
                len as usize,
            )
        })
    }

    /// The data's bytes, null read as empty (how the reference counts null data in
    /// `dataLength`, the digest and the data size).
    pub(crate) fn data_bytes(&self) -> &[u8] {
        self.data().unwrap_or_default()
    }

    fn is_unique(&self) -> bool {
        // Acquire: see every change another handle made before it was dropped.
        self.header().refs.load(Ordering::Acquire) == 1
    }

    /// The stat fields, to change; copies the node first if another handle shares it.
    pub(crate) fn meta_mut(&mut self) -> &mut Meta {
        if !self.is_unique() {
            *self = Node::new(self.header().meta.clone(), self.data());
        }
        // SAFETY: this is the only handle (count 1, and `&mut self`), so nothing
        // else reads the allocation while the reference lives.
        unsafe { &mut (*self.ptr.as_ptr()).meta }
    }

    /// The same stat with other data: a new allocation (the size changes).
    pub(crate) fn with_data(&self, data: Option<&[u8]>) -> Node {
        Node::new(self.header().meta.clone(), data)
    }

    /// The Stat as clients see it.
    pub(crate) fn stat(&self) -> Stat {
        let owner = match NodeKind::of_owner(self.ephemeral_owner, true) {
            NodeKind::Ephemeral => self.ephemeral_owner,
            _ => 0,
        };
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(self.num_children),
            aversion: self.aversion,
            ephemeral_owner: owner,
            data_length: self.data_bytes().len() as i32,
            num_children: self.num_children,
            pzxid: self.pzxid,
        }
    }
}

impl std::ops::Deref for Node {
    type Target = Meta;
    fn deref(&self) -> &Meta {
        &self.header().meta
    }
}

impl Clone for Node {
    fn clone(&self) -> Node {
        // Relaxed, as Arc: a new reference is made from an existing one.
        let old = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if old > REFS_MAX {
            std::process::abort();
        }
        Node { ptr: self.ptr }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other handle's use happens before the free (as in Arc's drop).
        atomic::fence(Ordering::Acquire);
        let len = match self.header().len {
            NULL_LEN => 0,
            l => l as usize,
        };
        // SAFETY: the last handle: drop the header's owned fields, then free the
        // allocation with the layout it was made with.
        unsafe {
            std::ptr::drop_in_place(&mut (*self.ptr.as_ptr()).meta);
            alloc::dealloc(self.ptr.as_ptr() as *mut u8, layout(len));
        }
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        **self == **other && self.data() == other.data()
    }
}

impl Eq for Node {}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("meta", &**self)
            .field("data", &self.data())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::system(Arc::new(Acl::open()))
    }

    #[test]
    fn one_allocation_of_header_and_data() {
        assert_eq!(HEADER_BYTES, 80);
        assert_eq!(std::mem::size_of::<Node>(), 8);
        assert_eq!(layout(100).size(), 184);
        assert_eq!(layout(0).size(), 80);
    }

    #[test]
    fn data_null_empty_and_bytes_read_back() {
        let null = Node::new(meta(), None);
        assert_eq!(null.data(), None);
        assert_eq!(null.data_bytes(), b"");
        let empty = Node::new(meta(), Some(b""));
        assert_eq!(empty.data(), Some(&b""[..]));
        let some = Node::new(meta(), Some(b"hello"));
        assert_eq!(some.data(), Some(&b"hello"[..]));
        assert_ne!(null, empty);
        assert_eq!(some.clone(), some);
        assert_eq!(some.with_data(None).data(), None);
        assert_eq!(some.with_data(None).czxid, some.czxid);
    }

    #[test]
    fn meta_mut_copies_only_a_shared_node() {
        let mut a = Node::new(meta(), Some(b"d"));
        let before = a.ptr;
        a.meta_mut().version = 1;
        assert_eq!(a.ptr, before, "unique: changed in place");
        let b = a.clone();
        a.meta_mut().version = 2;
        assert_ne!(a.ptr, b.ptr, "shared: copied first");
        assert_eq!((a.version, b.version), (2, 1));
        assert_eq!(a.data(), b.data());
        // The ACL is shared by both copies, and released by each drop.
        let acl = a.acl.clone();
        drop(a);
        drop(b);
        assert_eq!(Arc::strong_count(&acl), 1);
    }

    #[test]
    fn shared_across_threads() {
        let n = Node::new(meta(), Some(&[7u8; 300]));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let c = n.clone();
                        assert_eq!(c.data_bytes().len(), 300);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(n.is_unique());
    }
}
