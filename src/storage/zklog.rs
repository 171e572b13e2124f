//! Apache ZooKeeper's txn log files (`version-2/log.<hex zxid>`, PEER-PROTOCOL.md
//! §9.3), read only: corral never writes one.
//!
//! A file is `FileHeader {int magic "ZKLG", int version, long dbid}` then entries
//! `{long adler32 of the entry; int length; entry bytes; byte 0x42}`, then zero
//! padding up to the preallocated size. [`next_frame`] is the IO-free decoder: it
//! looks at the bytes from a frame boundary and says "an entry", "need more bytes"
//! or "the file ends here", exactly where the reference's `FileTxnIterator` (with
//! `Util.readTxnBytes`) stops:
//! - the file ends at a frame boundary, or a length of 0 (zero padding): the end;
//! - a torn last entry (the file ends inside the checksum, the length, the entry or
//!   before its 0x42) or a byte other than 0x42 after the entry ("Last transaction
//!   was partial"): the end of this file, and the reader goes on with the next one;
//! - a negative length or one over jute.maxbuffer, and a checksum that does not
//!   match: the file is corrupt, start-up fails.
//!
//! [`ZkLogFile`] walks one file with buffered reads (a 64 MiB preallocated file is
//! read only up to its padding); whoever holds the entries decodes them as txns.
//! Runs at start-up and in `corral import`, on the thread that recovers.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::StorageError;
use crate::tree::zksnap::JUTE_BYTES_MAX;

/// `FileHeader.magic` of a txn log ("ZKLG").
pub const LOG_MAGIC: i32 = 0x5A4B_4C47;
/// `FileHeader`: magic, version, dbid.
pub const LOG_HEADER_BYTES: usize = 16;
/// The byte after every entry ('B').
pub const END_OF_RECORD: u8 = 0x42;
/// Checksum (8) and length (4) before each entry.
const FRAME_HEAD_BYTES: usize = 12;
/// The longest entry the reference's reader accepts (jute.maxbuffer plus its extra).
pub const ENTRY_BYTES_MAX: usize = JUTE_BYTES_MAX;
/// How much the walker reads at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Why a file ended where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// The file ends exactly after an entry (or after the header).
    Clean,
    /// A length of 0: the preallocated zero padding.
    Padding,
    /// What the reference drops as a partial last transaction; names what is missing.
    Torn(&'static str),
}

/// What [`next_frame`] found at a frame boundary.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole entry whose checksum verified; `frame_bytes` to skip past it.
    Entry { entry: &'a [u8], frame_bytes: usize },
    /// More bytes are needed to decide (only when not at the end of the file).
    NeedMore,
    /// The file's entries end here.
    End(LogEnd),
}

/// A frame the reference refuses to read past: start-up fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("txn entry length {0} is negative")]
    NegativeLength(i32),
    #[error("txn entry length {len} is over jute.maxbuffer ({max} bytes)")]
    LengthOverBound { len: usize, max: usize },
    #[error("CRC check failed: stored {stored:#x}, computed {computed:#x} over {len} bytes")]
    Checksum {
        stored: i64,
        computed: u32,
        len: usize,
    },
}

/// Checks a file header (`head` holds the file's first bytes): the magic only, as
/// the reference does (it ignores version and dbid). Errors say what is wrong.
pub fn check_header(head: &[u8]) -> Result<(), String> {
    if head.len() < LOG_HEADER_BYTES {
        return Err(format!(
            "the file ends inside its {LOG_HEADER_BYTES}-byte header ({} bytes)",
            head.len()
        ));
    }
    let magic = i32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
    if magic != LOG_MAGIC {
        return Err(format!(
            "invalid magic number {magic:#010x}, expected {LOG_MAGIC:#010x} (ZKLG)"
        ));
    }
    Ok(())
}

/// Decodes the frame at the start of `buf`. `eof`: `buf` holds everything left in
/// the file, so a short frame is a torn one rather than a reason to read more.
pub fn next_frame(buf: &[u8], eof: bool) -> Result<Frame<'_>, FrameError> {
    let short = |what| {
        if eof {
            Frame::End(LogEnd::Torn(what))
        } else {
            Frame::NeedMore
        }
    };
    if buf.is_empty() && eof {
        return Ok(Frame::End(LogEnd::Clean));
    }
    if buf.len() < 8 {
        return Ok(short("the checksum"));
    }
    if buf.len() < FRAME_HEAD_BYTES {
        return Ok(short("the length"));
    }
    let stored = i64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
    let len = i32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
    if len == 0 {
        return Ok(Frame::End(LogEnd::Padding));
    }
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let len = len as usize;
    if len > ENTRY_BYTES_MAX {
        return Err(FrameError::LengthOverBound {
            len,
            max: ENTRY_BYTES_MAX,
        });
    }
    let entry_end = FRAME_HEAD_BYTES + len;
    if buf.len() < entry_end {
        return Ok(short("the txn entry"));
    }
    if buf.len() == entry_end {
        return Ok(short("the end-of-record byte"));
    }
    if buf[entry_end] != END_OF_RECORD {
        return Ok(Frame::End(LogEnd::Torn("a 0x42 end-of-record byte")));
    }
    let entry = &buf[FRAME_HEAD_BYTES..entry_end];
    let computed = adler2::adler32_slice(entry);
    if stored != i64::from(computed) {
        return Err(FrameError::Checksum {
            stored,
            computed,
            len,
        });
    }
    Ok(Frame::Entry {
        entry,
        frame_bytes: entry_end + 1,
    })
}

/// One reference log file being read front to back.
pub struct ZkLogFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
    end: Option<(u64, LogEnd)>,
}

/// An entry and the file offset of its frame.
pub struct ZkLogEntry<'a> {
    pub offset: u64,
    pub bytes: &'a [u8],
}

impl ZkLogFile {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<ZkLogFile, StorageError> {
        let file =
            File::open(path).map_err(|e| StorageError::io("open zookeeper txn log", path, e))?;
        let mut f = ZkLogFile {
            path: path.to_path_buf(),
            file,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            eof: false,
            end: None,
        };
        while f.buf.len() < LOG_HEADER_BYTES && !f.eof {
            f.fill()?;
        }
        check_header(&f.buf).map_err(|detail| f.corrupt(0, detail))?;
        f.start = LOG_HEADER_BYTES;
        f.offset = LOG_HEADER_BYTES as u64;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next entry, or None at the file's end ([`ZkLogFile::end`] says which).
    pub fn next_entry(&mut self) -> Result<Option<ZkLogEntry<'_>>, StorageError> {
        if self.end.is_some() {
            return Ok(None);
        }
        loop {
            let at = self.offset;
            let frame = next_frame(&self.buf[self.start..], self.eof)
                .map_err(|e| self.corrupt(at, e.to_string()))?;
            match frame {
                Frame::NeedMore => self.fill()?,
                Frame::End(how) => {
                    self.end = Some((at, how));
                    return Ok(None);
                }
                Frame::Entry { frame_bytes, .. } => {
                    let from = self.start + FRAME_HEAD_BYTES;
                    let to = self.start + frame_bytes - 1;
                    self.start += frame_bytes;
                    self.offset += frame_bytes as u64;
                    return Ok(Some(ZkLogEntry {
                        offset: at,
                        bytes: &self.buf[from..to],
                    }));
                }
            }
        }
    }

    /// Where and how the entries ended, once [`ZkLogFile::next_entry`] said None.
    pub fn end(&self) -> Option<&(u64, LogEnd)> {
        self.end.as_ref()
    }

    /// An error naming this file and `offset`.
    pub fn corrupt(&self, offset: u64, detail: String) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            offset,
            detail,
        }
    }

    fn fill(&mut self) -> Result<(), StorageError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let got = (&mut self.file)
            .take(READ_CHUNK_BYTES as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| StorageError::io("read zookeeper txn log", &self.path, e))?;
        self.eof = got == 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(entry: &[u8]) -> Vec<u8> {
        let mut b = (adler2::adler32_slice(entry) as i64).to_be_bytes().to_vec();
        b.extend_from_slice(&(entry.len() as i32).to_be_bytes());
        b.extend_from_slice(entry);
        b.push(END_OF_RECORD);
        b
    }

    #[test]
    fn a_whole_frame_is_an_entry_and_padding_ends_the_file() {
        let mut b = frame(b"txn");
        let n = b.len();
        b.extend_from_slice(&[0; 64]);
        assert_eq!(
            next_frame(&b, false).unwrap(),
            Frame::Entry {
                entry: b"txn",
                frame_bytes: n
            }
        );
        assert_eq!(
            next_frame(&b[n..], false).unwrap(),
            Frame::End(LogEnd::Padding)
        );
        assert_eq!(next_frame(&[], true).unwrap(), Frame::End(LogEnd::Clean));
    }

    #[test]
    fn a_torn_frame_is_the_end_at_eof_and_needs_more_before() {
        let b = frame(b"entry bytes");
        for cut in 1..b.len() {
            assert_eq!(
                next_frame(&b[..cut], false).unwrap(),
                Frame::NeedMore,
                "{cut}"
            );
            assert!(
                matches!(
                    next_frame(&b[..cut], true).unwrap(),
                    Frame::End(LogEnd::Torn(_))
                ),
                "{cut}"
            );
        }
        let mut bad_eor = b.clone();
        *bad_eor.last_mut().unwrap() = 0;
        assert_eq!(
            next_frame(&bad_eor, false).unwrap(),
            Frame::End(LogEnd::Torn("a 0x42 end-of-record byte"))
        );
    }

    #[test]
    fn bad_lengths_and_checksums_are_errors() {
        let mut b = frame(b"entry");
        b[14] ^= 1;
        assert!(matches!(
            next_frame(&b, true),
            Err(FrameError::Checksum { .. })
        ));
        let mut neg = frame(b"e");
        neg[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(next_frame(&neg, true), Err(FrameError::NegativeLength(-1)));
        let mut big = frame(b"e");
        big[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            next_frame(&big, false),
            Err(FrameError::LengthOverBound { .. })
        ));
    }

    #[test]
    fn header_checks_the_magic_only() {
        let mut h = LOG_MAGIC.to_be_bytes().to_vec();
        h.extend_from_slice(&7i32.to_be_bytes());
        h.extend_from_slice(&0i64.to_be_bytes());
        assert_eq!(check_header(&h), Ok(()));
        assert!(check_header(&h[..10]).unwrap_err().contains("ends inside"));
        h[0] = 0;
        assert!(check_header(&h).unwrap_err().contains("invalid magic"));
    }
}
