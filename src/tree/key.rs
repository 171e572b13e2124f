//! The map key of a znode: its path with the last `/` replaced by NUL (the root is
//! the empty key), stored inline when it fits in 22 bytes. Byte order on these keys
//! sorts by (parent path, child name), so a node's children are one contiguous range.
//! Pure data; built on the sequencer (apply) and shard cores (lookups).

use std::borrow::Borrow;
use std::cmp::Ordering;

const INLINE_BYTES_MAX: usize = 22;

#[derive(Clone)]
pub(crate) enum Key {
    Inline {
        len: u8,
        buf: [u8; INLINE_BYTES_MAX],
    },
    Heap(Box<[u8]>),
}

impl Key {
    fn from_bytes(b: &[u8]) -> Key {
        if b.len() <= INLINE_BYTES_MAX {
            let mut buf = [0u8; INLINE_BYTES_MAX];
            buf[..b.len()].copy_from_slice(b);
            Key::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Key::Heap(b.into())
        }
    }

    pub(crate) fn root() -> Key {
        Key::from_bytes(b"")
    }

    /// The key of `path`. `/` and `""` both give the root key. A path without `/`
    /// maps to itself, which never names a stored node.
    pub(crate) fn from_path(path: &str) -> Key {
        if path == "/" {
            return Key::root();
        }
        match path.rfind('/') {
            None => Key::from_bytes(path.as_bytes()),
            Some(i) => {
                let b = path.as_bytes();
                if b.len() <= INLINE_BYTES_MAX {
                    let mut buf = [0u8; INLINE_BYTES_MAX];
                    buf[..b.len()].copy_from_slice(b);
                    buf[i] = 0;
                    Key::Inline {
                        len: b.len() as u8,
                        buf,
                    }
                } else {
                    let mut v = b.to_vec();
                    v[i] = 0;
                    Key::Heap(v.into_boxed_slice())
                }
            }
        }
    }

    /// Same as [`Key::from_path`]; named for the read side.
    pub(crate) fn lookup(path: &str) -> Key {
        Key::from_path(path)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, buf } => &buf[..*len as usize],
            Key::Heap(b) => b,
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// The path this key names.
    pub(crate) fn to_path(&self) -> String {
        let b = self.as_bytes();
        if b.is_empty() {
            return "/".to_string();
        }
        let mut v = b.to_vec();
        if let Some(i) = v.iter().rposition(|&c| c == 0) {
            v[i] = b'/';
        }
        // Keys are built from &str and only ASCII bytes are swapped.
        String::from_utf8(v).unwrap_or_default()
    }

    /// Appends the path this key names as a jute string (what [`Key::to_path`]
    /// gives, without building it: a snapshot writes a million of them).
    pub(crate) fn put_path(&self, out: &mut Vec<u8>) {
        let b = self.as_bytes();
        if b.is_empty() {
            out.extend_from_slice(&1i32.to_be_bytes());
            out.push(b'/');
            return;
        }
        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
        let at = out.len();
        out.extend_from_slice(b);
        if let Some(i) = b.iter().rposition(|&c| c == 0) {
            out[at + i] = b'/';
        }
    }

    /// Every child of this node has a key starting with these bytes.
    pub(crate) fn child_prefix(&self) -> Vec<u8> {
        if self.is_root() {
            return vec![0];
        }
        let mut v = self.to_path().into_bytes();
        v.push(0);
        v
    }

    /// Every descendant below the children has a key starting with these bytes.
    pub(crate) fn descendant_prefix(&self) -> Vec<u8> {
        if self.is_root() {
            return b"/".to_vec();
        }
        let mut v = self.to_path().into_bytes();
        v.push(b'/');
        v
    }

    /// The child name in a key that starts with a `prefix_len`-byte child prefix.
    pub(crate) fn name_after(&self, prefix_len: usize) -> &str {
        std::str::from_utf8(&self.as_bytes()[prefix_len..]).unwrap_or("")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Key::Inline { len: a, buf: x }, Key::Inline { len: b, buf: y }) => a == b && x == y,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Ord is byte order of [`Key::as_bytes`] (children are one range; lookups by
/// `[u8]` through `Borrow` agree). Two inline keys, the common case on every
/// lookup, compare as three big-endian words of their zero-padded buffers, then by
/// length: where the padded buffers first differ, the shorter key has a padding
/// zero against a byte of the longer that cannot be below it (a NUL there leaves
/// them equal), and equal buffers mean one key is the other plus zeros, so the
/// shorter sorts first, as in byte order. Inline padding is always zero (every
/// constructor starts from a zeroed buffer).
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Inline { len: a, buf: x }, Key::Inline { len: b, buf: y }) => {
                inline_words(x).cmp(&inline_words(y)).then(a.cmp(b))
            }
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

/// An inline key's zero-padded buffer as three big-endian words: their order is
/// the buffers' byte order.
#[inline]
fn inline_words(b: &[u8; INLINE_BYTES_MAX]) -> (u64, u64, u64) {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        let n = (INLINE_BYTES_MAX - at).min(8);
        w[..n].copy_from_slice(&b[at..at + n]);
        u64::from_be_bytes(w)
    };
    (word(0), word(8), word(16))
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?})", self.to_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, Just};

    #[test]
    fn key_is_24_bytes_and_round_trips() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        for p in [
            "/",
            "/a",
            "/a/b",
            "/zookeeper/config",
            "/a-rather-long-path/with/several/components",
        ] {
            assert_eq!(Key::from_path(p).to_path(), p);
            let mut jute = Vec::new();
            Key::from_path(p).put_path(&mut jute);
            assert_eq!(jute[..4], (p.len() as i32).to_be_bytes());
            assert_eq!(&jute[4..], p.as_bytes());
        }
        assert!(Key::from_path("").is_root());
    }

    proptest::proptest! {
        /// Key order and equality are the byte order of the keys, whatever the
        /// bytes (NULs and shared prefixes included) and however each is stored.
        #[test]
        fn order_is_byte_order(
            a in proptest::collection::vec(proptest::prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..30),
            b in proptest::collection::vec(proptest::prop_oneof![Just(0u8), Just(b'a'), any::<u8>()], 0..30),
            shared in 0usize..30,
        ) {
            // b starts with up to `shared` bytes of a, so most cases share a prefix
            // (and NULs are weighted), which exercises the tie rules.
            let mut b = b;
            let n = shared.min(a.len());
            b.splice(0..n.min(b.len()), a[..n].iter().copied());
            let (ka, kb) = (Key::from_bytes(&a), Key::from_bytes(&b));
            proptest::prop_assert_eq!(ka.cmp(&kb), a.as_slice().cmp(b.as_slice()));
            proptest::prop_assert_eq!(ka == kb, a == b);
            proptest::prop_assert_eq!(ka.cmp(&ka), Ordering::Equal);
        }
    }

    #[test]
    fn children_sort_together() {
        let mut keys: Vec<Key> = ["/a/b", "/a", "/a/b/c", "/a-", "/a/c", "/ab", "/a/b0"]
            .iter()
            .map(|p| Key::from_path(p))
            .collect();
        keys.sort();
        let paths: Vec<String> = keys.iter().map(|k| k.to_path()).collect();
        // children of / first, then children of /a, then deeper.
        assert_eq!(
            paths,
            ["/a", "/a-", "/ab", "/a/b", "/a/b0", "/a/c", "/a/b/c"]
        );
    }
}
