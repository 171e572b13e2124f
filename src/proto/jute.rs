//! Jute, ZooKeeper's serialisation: big-endian ints and longs, one-byte bools,
//! length-prefixed buffers and strings (−1 = null), count-prefixed vectors.
//!
//! Pure functions over byte slices; no IO. Used on every core: shard cores decode
//! requests and encode replies, the sequencer encodes txns, loadgen-free.

use thiserror::Error;

/// What can go wrong while decoding a jute record. A client's bad bytes land here;
/// the caller answers MarshallingError or closes the connection, never panics.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("negative length {0} where a non-null value is required")]
    BadLength(i32),
    #[error("length {len} exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("string is not valid UTF-8")]
    BadUtf8,
    #[error("unknown value {value} for {what}")]
    BadEnum { what: &'static str, value: i32 },
}

/// A cursor over one jute-encoded record.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Steps over `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A buffer; `None` for the null buffer (length −1 or any negative length, as
    /// the reference's BinaryInputArchive treats it).
    pub fn buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?))
    }

    /// A buffer where null reads as empty.
    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.buffer()?.map(|b| b.to_vec()).unwrap_or_default())
    }

    /// An owned buffer that keeps null apart from empty (znode data: a client that
    /// wrote null reads null back).
    pub fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        Ok(self.buffer()?.map(<[u8]>::to_vec))
    }

    pub fn ustring(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.buffer()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| DecodeError::BadUtf8),
        }
    }

    /// A string where null reads as empty.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        Ok(self.ustring()?.unwrap_or("").to_string())
    }

    /// A vector; null reads as empty. Each element is decoded by `f`.
    pub fn vec<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.i32()?;
        if n <= 0 {
            return Ok(Vec::new());
        }
        // Every element takes at least one byte: bound the allocation by what is left.
        let cap = (n as usize).min(self.remaining());
        let mut v = Vec::with_capacity(cap);
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }

    pub fn strings(&mut self) -> Result<Vec<String>, DecodeError> {
        self.vec(|r| r.string())
    }
}

/// Jute encoding onto a growable byte vector.
pub trait JuteWrite {
    fn put_i32(&mut self, v: i32);
    fn put_i64(&mut self, v: i64);
    fn put_bool(&mut self, v: bool);
    fn put_buffer(&mut self, v: &[u8]);
    fn put_null(&mut self);
    /// A buffer that may be null: length −1 for `None`.
    fn put_opt_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            Some(b) => self.put_buffer(b),
            None => self.put_null(),
        }
    }
    fn put_str(&mut self, v: &str) {
        self.put_buffer(v.as_bytes())
    }
    fn put_strings<S: AsRef<str>>(&mut self, v: &[S]) {
        self.put_i32(v.len() as i32);
        for s in v {
            self.put_str(s.as_ref());
        }
    }
}

impl JuteWrite for Vec<u8> {
    #[inline]
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn put_bool(&mut self, v: bool) {
        self.push(v as u8);
    }
    #[inline]
    fn put_buffer(&mut self, v: &[u8]) {
        self.put_i32(v.len() as i32);
        self.extend_from_slice(v);
    }
    #[inline]
    fn put_null(&mut self) {
        self.put_i32(-1);
    }
}

/// Starts a length-prefixed frame in `out`; returns the offset to pass to [`end_frame`].
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

/// Fills in the length of a frame begun with [`begin_frame`].
pub fn end_frame(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_scalars_and_strings() {
        let mut v = Vec::new();
        v.put_i32(-7);
        v.put_i64(1 << 40);
        v.put_bool(true);
        v.put_str("/a/b");
        v.put_null();
        v.put_strings(&["x", "yz"]);
        let mut r = Reader::new(&v);
        assert_eq!(r.i32().unwrap(), -7);
        assert_eq!(r.i64().unwrap(), 1 << 40);
        assert!(r.bool().unwrap());
        assert_eq!(r.ustring().unwrap(), Some("/a/b"));
        assert_eq!(r.ustring().unwrap(), None);
        assert_eq!(r.strings().unwrap(), vec!["x", "yz"]);
        assert!(r.is_empty());
    }

    #[test]
    fn null_and_empty_buffers_stay_apart() {
        let mut v = Vec::new();
        v.put_opt_buffer(None);
        v.put_opt_buffer(Some(b""));
        v.put_opt_buffer(Some(b"ab"));
        assert_eq!(v[..8], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let mut r = Reader::new(&v);
        assert_eq!(r.opt_bytes().unwrap(), None);
        assert_eq!(r.opt_bytes().unwrap(), Some(Vec::new()));
        assert_eq!(r.opt_bytes().unwrap(), Some(b"ab".to_vec()));
        assert!(r.is_empty());
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let mut v = Vec::new();
        v.put_i32(100); // claims 100 bytes
        v.extend_from_slice(b"abc");
        let mut r = Reader::new(&v);
        assert!(matches!(r.buffer(), Err(DecodeError::Truncated { .. })));
        let mut r = Reader::new(&[0, 0]);
        assert!(r.i32().is_err());
    }

    #[test]
    fn huge_vector_count_does_not_allocate_wildly() {
        let mut v = Vec::new();
        v.put_i32(i32::MAX);
        let mut r = Reader::new(&v);
        assert!(r.strings().is_err());
    }
}
