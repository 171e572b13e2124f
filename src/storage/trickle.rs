//! A file written front to back whose writeback is started as it grows (RocksDB's
//! bytes_per_sync): every `chunk` bytes the chunk just written is handed to the
//! disk and the one before it waited for. So the final fsync has at most two
//! chunks left to flush, and the disk never holds more than that of this file
//! queued in front of the log's small syncs. Used by whichever thread writes a
//! snapshot or zero-fills a spare log segment; no state beyond the file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;

pub(crate) struct Trickle {
    file: File,
    /// Bytes per writeback step.
    chunk: u64,
    written: u64,
    /// Writeback was started for bytes below this.
    started: u64,
}

impl Trickle {
    /// `file` positioned at its start (the offsets are counted from 0).
    pub(crate) fn new(file: File, chunk: u64) -> Trickle {
        assert!(chunk > 0, "a writeback chunk has bytes");
        Trickle {
            file,
            chunk,
            written: 0,
            started: 0,
        }
    }

    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        while self.written - self.started >= self.chunk {
            let fd = self.file.as_raw_fd();
            let chunk = self.chunk as i64;
            let start = self.started as i64;
            // SAFETY: plain syscalls on an fd we own; ranges are inside the file.
            // Failures only lose the smoothing: the final fsync still covers all.
            unsafe {
                libc::sync_file_range(fd, start, chunk, libc::SYNC_FILE_RANGE_WRITE);
                if start >= chunk {
                    libc::sync_file_range(
                        fd,
                        start - chunk,
                        chunk,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                }
            }
            self.started += self.chunk;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_lands_in_order_and_writeback_steps_a_chunk_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        let chunk = 8192;
        let mut t = Trickle::new(File::create(&path).unwrap(), chunk);
        let mut want = Vec::new();
        // Writes smaller than a chunk, one ending on a boundary, and one spanning
        // more than two chunks.
        for (i, n) in [1usize, 4095, 4096, 100, 30_000, 7].into_iter().enumerate() {
            let b: Vec<u8> = (0..n).map(|j| (i * 7 + j) as u8).collect();
            t.write_all(&b).unwrap();
            want.extend_from_slice(&b);
            assert_eq!(t.written, want.len() as u64);
            // Writeback has been started for every whole chunk written, no more.
            assert_eq!(t.started, want.len() as u64 / chunk * chunk);
        }
        t.flush().unwrap();
        let f = t.into_file();
        f.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
