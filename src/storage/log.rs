//! The write-ahead log: preallocated, mmapped segments of crc32c-framed records,
//! group commit, and the streaming reader recovery uses.
//!
//! Writer side ([`Log`]): owned by the sequencer core, single thread, no locks.
//! `append` copies a record into the mapped active segment (rolling to a new one,
//! taken from a zero-filled spare prepared on a helper thread, when it is full; a
//! spare not ready within ROLL_SPARE_WAIT_MS_MAX leaves a fallocated segment in
//! its place until it is).
//! `begin_sync` hands everything appended since the last durable point to a
//! [`SyncJob`] (`Send`) which the caller runs on a blocking thread; the job comes
//! back as a [`SyncDone`] that only [`Log::finish_sync`] can turn into a
//! [`Durable`] watermark. One job is in flight at a time: every record appended
//! while it runs goes into the next job (group commit). If a sync fails, every
//! record after the durable point is zeroed on disk and made durable as zeros (or
//! the log is poisoned), so recovery never replays a record reported as failed.
//!
//! Reader side ([`LogReader`], [`read_log`]): start-up only. Streams records with
//! `zxid > after_zxid` through one reused record buffer (never a whole segment),
//! checks every crc and zxid continuity, truncates a torn tail of the log (zeroing
//! it, with a log line saying how many bytes: in the last segment, or in an earlier
//! one when no later segment holds a valid record, which are then removed), and
//! stops with the file and offset on corruption anywhere else. It returns the [`LogTail`] that
//! [`Log::open`] requires.
//!
//! On-disk format (little-endian):
//! - segment header, 32 bytes: magic `CORRALLG`, version u32, 4 zero bytes,
//!   first zxid i64, 4 zero bytes, crc32c of bytes 0..28.
//! - record, 8-byte aligned: crc32c u32 (over bytes 4..24 and the payload),
//!   payload length u32, zxid i64, kind u8, 7 zero bytes, payload, zero padding.
//! - the records end at the first all-zero record header; the rest of a segment
//!   is the zeros it was preallocated with. Or they end at an end mark: a record
//!   header with payload length 0, the zxid of the record before it, kind 0 and
//!   flag byte 17 = [`RECORD_FLAG_END_MARK`] (checksummed like a record); what
//!   follows it in the segment is dead and never read. (A build older than end
//!   marks refuses such a segment rather than misreading it.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use memmap2::{Mmap, MmapOptions, MmapRaw};

use super::trickle::Trickle;
use super::{
    list_dir, log_file_name, remove_if_exists, scan_dir, sync_dir, StorageError, PREALLOC_FILE_NAME,
};

pub const SEGMENT_MAGIC: [u8; 8] = *b"CORRALLG";
pub const LOG_FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 32;
pub const RECORD_HEADER_BYTES: usize = 24;
/// Byte 17 of a record header: 0 for a record, this for an end mark.
pub const RECORD_FLAG_END_MARK: u8 = 1;
/// Smallest segment we accept (a segment must at least hold a header and a record).
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest segment we accept (offsets are kept in `usize`/`u32` lengths).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;
/// Default segment size, as the reference's 64 MiB preallocation.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
const ZERO_CHUNK_BYTES: usize = 1 << 20;
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// How a batch is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync(2)` of each segment written in the batch (the measured default).
    Fdatasync,
    /// `msync(MS_SYNC)` of exactly the written range of the mapping.
    Msync,
    /// No sync at all (`forceSync=no`): records are "durable" once appended.
    None,
}

/// Log writer configuration.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Size every segment is preallocated (zero-filled) to; a multiple of 8.
    pub segment_bytes: u64,
    pub sync: SyncMode,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            sync: SyncMode::Fdatasync,
        }
    }
}

/// One log record as read back; `payload` borrows the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub zxid: i64,
    pub kind: u8,
    pub payload: &'a [u8],
}

/// Bytes a record with `payload_len` bytes of payload takes in a segment.
pub fn record_bytes(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len + 7) & !7
}

fn encode_segment_header(first_zxid: i64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_zxid.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn encode_record_header(zxid: i64, kind: u8, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&zxid.to_le_bytes());
    h[16] = kind;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..24]), payload);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    h
}

struct RecordHeader {
    crc: u32,
    len: usize,
    zxid: i64,
    kind: u8,
    reserved_zero: bool,
}

fn decode_record_header(h: &[u8]) -> RecordHeader {
    RecordHeader {
        crc: u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")),
        len: u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize,
        zxid: i64::from_le_bytes(h[8..16].try_into().expect("8 bytes")),
        kind: h[16],
        reserved_zero: h[17..24].iter().all(|&b| b == 0),
    }
}

fn record_crc(h: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[4..24]), payload)
}

/// The end mark written after the last kept record (`last_zxid`) of a cut segment.
fn encode_end_mark(last_zxid: i64) -> [u8; RECORD_HEADER_BYTES] {
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[8..16].copy_from_slice(&last_zxid.to_le_bytes());
    h[17] = RECORD_FLAG_END_MARK;
    let crc = crc32c::crc32c(&h[4..24]);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether a record header is a whole, checksummed end mark.
fn is_end_mark(h: &[u8]) -> bool {
    let rh = decode_record_header(h);
    h[17] == RECORD_FLAG_END_MARK
        && is_zero(&h[18..24])
        && rh.len == 0
        && rh.kind == 0
        && rh.crc == record_crc(h, &[])
}

/// Whether `next` may follow `prev` in the log: the next counter of the same epoch,
/// or any zxid of a later epoch (the high 32 bits).
pub fn zxid_follows(prev: i64, next: i64) -> bool {
    next == prev.wrapping_add(1) || (next >> 32) > (prev >> 32)
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Creates `path` zero-filled to `bytes` (real zeros: sparse or growing files sync
/// slower), synced, and maps it. Runs on the preallocation thread (or, when a roll
/// finds no spare, on the caller's).
fn preallocate(path: &Path, bytes: u64) -> Result<(File, MmapRaw), StorageError> {
    new_segment_file(path, bytes, "preallocate log segment", |f| {
        // Zero-filled one page per write(): the kernel sizes a page-cache folio by
        // the write that creates it, and tracks a mapped page's dirtiness per folio.
        // Filled with 1 MiB writes, the file sat in the cache as 1-2 MiB folios and
        // every fdatasync after a 100-byte record stored through the mapping wrote
        // the whole folio (measured: 2048 KiB and 0.40 ms per sync, against 4 KiB and
        // 0.08 ms with 4 KiB folios). The pages stay cached, so the first store to a
        // page does not read zeros back from disk.
        //
        // Writeback trickles out a chunk at a time as the zeros are written (see
        // PREALLOC_WRITEBACK_CHUNK_BYTES): synced only at the end, the whole
        // segment went to the disk at once and every log sync behind it waited.
        let zeros = [0u8; PAGE_BYTES];
        let mut out = Trickle::new(f, PREALLOC_WRITEBACK_CHUNK_BYTES);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(PAGE_BYTES as u64) as usize;
            out.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        let f = out.into_file();
        f.sync_all()?;
        Ok(f)
    })
}

/// Creates `path` with `bytes` reserved by `fallocate` (blocks allocated, so a store
/// through the mapping cannot meet a full disk, but not zero-filled: its syncs also
/// write the extents they turn from unwritten to written) and maps it. For a roll
/// whose spare is not ready after [`ROLL_SPARE_WAIT_MS_MAX`].
fn fallocated(path: &Path, bytes: u64) -> Result<(File, MmapRaw), StorageError> {
    use std::os::fd::AsRawFd;
    new_segment_file(path, bytes, "fallocate log segment", |f| {
        // SAFETY: a plain syscall on a descriptor this function owns.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, bytes as libc::off_t) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f)
    })
}

/// Creates (or truncates) `path`, lets `fill` size it to `bytes`, and maps it. On
/// an error the file is removed and the error names `what`.
fn new_segment_file(
    path: &Path,
    bytes: u64,
    what: &'static str,
    fill: impl FnOnce(File) -> io::Result<File>,
) -> Result<(File, MmapRaw), StorageError> {
    let run = || -> io::Result<(File, MmapRaw)> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let f = fill(f)?;
        let map = MmapOptions::new().len(bytes as usize).map_raw(&f)?;
        // Should pages be evicted, fault them back one by one (readahead would
        // bring large folios back).
        let _ = map.advise(memmap2::Advice::Random);
        Ok((f, map))
    };
    run().map_err(|e| {
        let _ = fs::remove_file(path);
        StorageError::io(what, path, e)
    })
}

/// How long a roll waits for the spare segment's zero-fill before it writes on in a
/// fallocated segment instead. The wait holds the sequencer core (a member's pings
/// too), so it stays far below any syncLimit; the fill itself runs at
/// [`PREALLOC_NICE`] and, on a box whose CPUs are saturated, can take seconds.
const ROLL_SPARE_WAIT_MS_MAX: u64 = 100;
/// Starts zero-filling the next spare segment on a helper thread. Without a
/// thread (spawn failed) the next roll preallocates inline instead.
fn spawn_preallocation(path: PathBuf, bytes: u64) -> Spare {
    match Filling::spawn("corral-prealloc", move || {
        lower_priority();
        preallocate(&path, bytes)
    }) {
        Ok(f) => Spare::Pending(f),
        Err(e) => {
            tracing::warn!("cannot spawn the segment preallocation thread: {e}");
            Spare::Missing
        }
    }
}

/// The nice value of the preallocation thread. Zero-filling 64 MiB a page at a
/// time costs ≈ 80 ms of CPU on this box; at the default priority that burst took
/// the CPU from the cores that serve (a write p99 of 20–35 ms at rolls even with
/// the writeback trickled). At 10 it yields to them, and a fill still ends in well
/// under a second while a segment lasts seconds at full write load (a roll that
/// finds it unfinished waits, and logs how long).
const PREALLOC_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority to [`PREALLOC_NICE`] unless it
/// is lower already (Linux keeps a nice value per thread). A failure only leaves
/// it where it was. Not the snapshot threads' idle classes
/// ([`super::lower_thread_priority`]): under a steady write load an idle thread
/// may not run at all, and a roll waits for this one.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        // Never raise it: a server started niced above this keeps its value.
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now < PREALLOC_NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, PREALLOC_NICE);
        }
    }
}

struct SegmentIo {
    path: PathBuf,
    file: File,
    map: MmapRaw,
}

impl SegmentIo {
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Copies `bytes` into the mapping at `off`.
    fn write_at(&self, off: usize, bytes: &[u8]) {
        assert!(
            off + bytes.len() <= self.len(),
            "write past the segment end"
        );
        // SAFETY: the range is inside the mapping (checked above); the mapping is
        // shared and writable; only the owning `Log` writes to it, from one thread,
        // and no Rust reference to this memory exists (sync threads only hand the
        // range to the kernel).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(off),
                bytes.len(),
            )
        }
    }

    fn zero(&self, from: usize, to: usize) {
        assert!(
            from <= to && to <= self.len(),
            "zero range outside the segment"
        );
        // SAFETY: as in `write_at`.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(from), 0, to - from) }
    }

    fn sync(&self, mode: SyncMode, from: usize, to: usize) -> io::Result<()> {
        match mode {
            SyncMode::Fdatasync => self.file.sync_data(),
            SyncMode::Msync => self.map.flush_range(from, to - from),
            SyncMode::None => Ok(()),
        }
    }
}

struct Segment {
    id: u64,
    /// The zxid in its name: its first record's.
    first_zxid: i64,
    io: Arc<SegmentIo>,
    write_off: usize,
    /// Pages below this offset are durable and were dropped from our page tables.
    released: usize,
    /// Fallocated, not zero-filled (its spare was late): left for the spare at the
    /// first append after the spare is ready.
    fallback: bool,
}

const PAGE_BYTES: usize = 4096;

/// While a spare segment is zero-filled, writeback is started every this many
/// bytes and the chunk before waited for. At the end of a 64 MiB fill synced in one
/// go (≈ 40 ms of writes on this box's disk), every log sync of every member
/// sharing the disk queued behind it: writes through a 3-member ensemble showed a
/// 25–80 ms p99 every few seconds, at each segment roll (PERF.md, "Log segment
/// rolls and the write tail"). 1 MiB is ≈ 1 ms of this disk.
pub const PREALLOC_WRITEBACK_CHUNK_BYTES: u64 = 1 << 20;

impl Segment {
    /// Drops the durable pages below `durable_off` from the process's page tables
    /// (they stay in the page cache and on disk), so a segment costs RSS only for
    /// its unsynced window, not for everything written to it.
    fn release_durable_pages(&mut self, durable_off: usize) {
        let to = durable_off & !(PAGE_BYTES - 1);
        if to > self.released {
            // SAFETY: MADV_DONTNEED on a shared file mapping only discards page
            // table entries; the data is in the page cache and, being below the
            // durable point, on disk. Nothing holds a reference into the range;
            // later accesses fault the pages back in.
            let r = unsafe {
                self.io.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    to - self.released,
                )
            };
            if r.is_ok() {
                self.released = to;
            }
        }
    }
}

enum Spare {
    Pending(Filling),
    Missing,
}

/// A segment being zero-filled on a helper thread, and the way to wait for its end
/// with a bound.
struct Filling {
    handle: JoinHandle<Result<(File, MmapRaw), StorageError>>,
    /// Disconnected when the thread ends, however it ends (it holds the sender).
    ended: std::sync::mpsc::Receiver<()>,
}

impl Filling {
    fn spawn(
        name: &str,
        fill: impl FnOnce() -> Result<(File, MmapRaw), StorageError> + Send + 'static,
    ) -> io::Result<Filling> {
        let (tx, ended) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ending = tx;
                fill()
            })?;
        Ok(Filling { handle, ended })
    }

    /// Waits up to `bound` for the fill to end; true once it has.
    fn wait(&self, bound: std::time::Duration) -> bool {
        self.handle.is_finished()
            || !matches!(
                self.ended.recv_timeout(bound),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            )
    }
}

struct InFlight {
    token: u64,
    upto_zxid: i64,
    end: (u64, usize),
}

/// Proof that records up to `zxid` are durable; only [`Log::finish_sync`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    zxid: i64,
}

impl Durable {
    /// Every record with a zxid ≤ this is on disk: its reply and commit may go out.
    pub fn zxid(&self) -> i64 {
        self.zxid
    }
}

/// The sync of one batch, to run on a blocking thread (never on an executor).
#[must_use = "a SyncJob must be run and handed back to Log::finish_sync"]
pub struct SyncJob {
    token: u64,
    upto_zxid: i64,
    mode: SyncMode,
    targets: Vec<(Arc<SegmentIo>, usize, usize)>,
    dir: Option<PathBuf>,
}

impl SyncJob {
    /// The highest zxid this job makes durable.
    pub fn upto_zxid(&self) -> i64 {
        self.upto_zxid
    }

    /// False in `SyncMode::None`: `run` makes no syscall and may be called inline.
    pub fn needs_blocking_thread(&self) -> bool {
        self.mode != SyncMode::None
    }

    /// Performs the sync (blocking) and returns the result for `finish_sync`.
    pub fn run(self) -> SyncDone {
        let result = self.run_inner();
        SyncDone {
            token: self.token,
            upto_zxid: self.upto_zxid,
            result,
        }
    }

    /// [`run`](Self::run), and how long it took.
    pub fn run_timed(self) -> (SyncDone, std::time::Duration) {
        let started = std::time::Instant::now();
        let done = self.run();
        (done, started.elapsed())
    }

    fn run_inner(&self) -> Result<(), (PathBuf, io::Error)> {
        if self.mode == SyncMode::None {
            return Ok(());
        }
        for (io, from, to) in &self.targets {
            io.sync(self.mode, *from, *to)
                .map_err(|e| (io.path.clone(), e))?;
        }
        if let Some(dir) = &self.dir {
            File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| (dir.clone(), e))?;
        }
        Ok(())
    }

    /// A job that reports `err` without syncing: the fault injection tests use.
    #[doc(hidden)]
    pub fn fail_for_test(self, err: io::Error) -> SyncDone {
        let path = self
            .targets
            .first()
            .map(|t| t.0.path.clone())
            .unwrap_or_default();
        SyncDone {
            token: self.token,
            upto_zxid: self.upto_zxid,
            result: Err((path, err)),
        }
    }
}

/// The outcome of a [`SyncJob`]; hand it back to [`Log::finish_sync`].
#[must_use = "a SyncDone must be handed back to Log::finish_sync"]
pub struct SyncDone {
    token: u64,
    upto_zxid: i64,
    result: Result<(), (PathBuf, io::Error)>,
}

/// The append side of the log. Owned by the sequencer core.
pub struct Log {
    dir: PathBuf,
    cfg: LogConfig,
    /// Segments written since the checkpoint, oldest first; the last is active.
    segs: Vec<Segment>,
    /// (segment id, offset): everything before it is durable.
    checkpoint: Option<(u64, usize)>,
    spare: Spare,
    next_seg_id: u64,
    last_zxid: i64,
    durable_zxid: i64,
    in_flight: Option<InFlight>,
    next_token: u64,
    poisoned: Option<(PathBuf, String)>,
    #[cfg(test)]
    fail_preallocation: bool,
    /// Tests: the fallback segment's `fallocate` fails (a file system without it).
    #[cfg(test)]
    fail_fallocate: bool,
}

impl Log {
    /// Opens the log for appending after recovery: `tail` (from [`read_log`] or
    /// [`super::recover`]) proves the existing segments were checked and a torn
    /// tail repaired. Appends start in a new segment.
    pub fn open(dir: &Path, cfg: LogConfig, tail: LogTail) -> Result<Log, StorageError> {
        if cfg.segment_bytes < SEGMENT_BYTES_MIN
            || cfg.segment_bytes > SEGMENT_BYTES_MAX
            || !cfg.segment_bytes.is_multiple_of(8)
        {
            return Err(StorageError::Config(format!(
                "segment_bytes {} must be a multiple of 8 in [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                cfg.segment_bytes
            )));
        }
        // The first segment is zero-filled on the helper thread, so start-up does
        // not wait for it; the first append does, if it comes before it is ready.
        let spare = spawn_preallocation(dir.join(PREALLOC_FILE_NAME), cfg.segment_bytes);
        Ok(Log {
            dir: dir.to_path_buf(),
            cfg,
            segs: Vec::new(),
            checkpoint: None,
            spare,
            next_seg_id: 0,
            last_zxid: tail.last_zxid,
            durable_zxid: tail.last_zxid,
            in_flight: None,
            next_token: 0,
            poisoned: None,
            #[cfg(test)]
            fail_preallocation: false,
            #[cfg(test)]
            fail_fallocate: false,
        })
    }

    /// The zxid of the last appended record (durable or not).
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// Proof of what is durable already (recovered records, earlier syncs).
    pub fn durable(&self) -> Durable {
        Durable {
            zxid: self.durable_zxid,
        }
    }

    /// The highest zxid known durable.
    pub fn durable_zxid(&self) -> i64 {
        self.durable_zxid
    }

    /// Path of the segment appends currently go to (None before the first append).
    pub fn active_segment_path(&self) -> Option<&Path> {
        self.segs.last().map(|s| s.io.path.as_path())
    }

    /// Whether a sync job is out.
    pub fn sync_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Appends one record. It is not durable until a later `finish_sync` says so.
    /// On an error nothing was written for this record: the caller fails it and
    /// every txn it prepared on top of it.
    pub fn append(&mut self, zxid: i64, kind: u8, payload: &[u8]) -> Result<(), StorageError> {
        self.reserve(zxid, payload.len())?;
        let need = record_bytes(payload.len());
        let seg = self
            .segs
            .last_mut()
            .expect("an active segment after reserve");
        let header = encode_record_header(zxid, kind, payload);
        seg.io.write_at(seg.write_off, &header);
        seg.io
            .write_at(seg.write_off + RECORD_HEADER_BYTES, payload);
        seg.write_off += need;
        self.last_zxid = zxid;
        Ok(())
    }

    /// Makes room for the next record, `zxid` with a payload of `payload_bytes`,
    /// rolling to a new segment if needed, so that a following `append` of exactly
    /// that record cannot fail. Lets a caller finish the payload (the sequencer puts
    /// the tree digest after applying) only once the record is sure to be logged.
    /// On an error nothing was written.
    pub fn reserve(&mut self, zxid: i64, payload_bytes: usize) -> Result<(), StorageError> {
        self.check_usable()?;
        assert!(
            zxid > self.last_zxid && zxid > 0,
            "zxid {zxid:#x} appended after {:#x}",
            self.last_zxid
        );
        let need = record_bytes(payload_bytes);
        if need > self.cfg.segment_bytes as usize - SEGMENT_HEADER_BYTES {
            return Err(StorageError::RecordTooLarge {
                payload_bytes,
                segment_bytes: self.cfg.segment_bytes,
            });
        }
        let fits = self
            .segs
            .last()
            .is_some_and(|s| s.write_off + need <= s.io.len());
        if !fits {
            self.roll(zxid)?;
        } else if self.segs.last().is_some_and(|s| s.fallback) && self.spare_ready() {
            self.roll_to_ready_spare(zxid);
        }
        Ok(())
    }

    fn spare_ready(&self) -> bool {
        matches!(&self.spare, Spare::Pending(f) if f.handle.is_finished())
    }

    /// Leaves a fallocated segment for the zero-filled spare now that it is ready
    /// (syncs of zero-filled pages write no extent changes). The segment left keeps
    /// zeros after its last record, as any segment's tail. A failure here (the
    /// spare's fill failed and so did the retry) only means staying where we are.
    fn roll_to_ready_spare(&mut self, first_zxid: i64) {
        match self.roll(first_zxid) {
            Ok(()) => tracing::info!(
                "log appends move from the fallocated segment to the zero-filled spare, \
                 ready now"
            ),
            Err(e) => {
                tracing::warn!("{e}; log appends stay in the fallocated segment");
                if matches!(self.spare, Spare::Missing) {
                    let spare_path = self.dir.join(PREALLOC_FILE_NAME);
                    self.spare = spawn_preallocation(spare_path, self.cfg.segment_bytes);
                }
            }
        }
    }

    /// Waits up to [`ROLL_SPARE_WAIT_MS_MAX`] for a spare still being filled; if it
    /// is not ready by then, creates `path` fallocated and returns it (the spare is
    /// kept for a later roll). None: take the spare (ready, missing, or no
    /// fallocate here), waiting as long as that takes.
    fn segment_without_the_spare(&mut self, path: &Path) -> Option<(File, MmapRaw)> {
        #[cfg(test)]
        if self.fail_preallocation {
            return None;
        }
        let Spare::Pending(filling) = &self.spare else {
            return None;
        };
        if filling.wait(std::time::Duration::from_millis(ROLL_SPARE_WAIT_MS_MAX)) {
            return None;
        }
        match self.fallocated_segment(path) {
            Ok(fm) => {
                tracing::warn!(
                    "the spare log segment's zero-fill is not done after {} ms; \
                     writes go on in {}, fallocated (its syncs may be slower until \
                     the spare is ready)",
                    ROLL_SPARE_WAIT_MS_MAX,
                    path.display()
                );
                Some(fm)
            }
            Err(e) => {
                tracing::warn!("{e}; the roll waits for the spare");
                None
            }
        }
    }

    /// [`fallocated`], or (tests) the error of a file system without `fallocate`.
    fn fallocated_segment(&self, path: &Path) -> Result<(File, MmapRaw), StorageError> {
        #[cfg(test)]
        if self.fail_fallocate {
            let e = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
            return Err(StorageError::io("fallocate log segment", path, e));
        }
        fallocated(path, self.cfg.segment_bytes)
    }

    fn take_spare(&mut self) -> Result<(File, MmapRaw), StorageError> {
        let path = self.dir.join(PREALLOC_FILE_NAME);
        #[cfg(test)]
        if self.fail_preallocation {
            return Err(StorageError::io(
                "preallocate log segment",
                &path,
                io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        match std::mem::replace(&mut self.spare, Spare::Missing) {
            Spare::Pending(Filling { handle: h, .. }) => {
                // Writes stop while a roll waits: say so when the wait begins (a
                // fill stuck on a dead disk shows at once), and how long it took.
                let waiting = (!h.is_finished()).then(std::time::Instant::now);
                if waiting.is_some() {
                    tracing::warn!(
                        "a log segment roll waits for the spare segment's zero-fill; \
                         writes wait until it ends"
                    );
                }
                let spare = h.join();
                if let Some(since) = waiting {
                    tracing::warn!(
                        "a log segment roll waited {} ms for the spare segment's zero-fill",
                        since.elapsed().as_millis()
                    );
                }
                match spare {
                    Ok(Ok(fm)) => Ok(fm),
                    // The background attempt failed (disk full?): retry now, once.
                    Ok(Err(_)) | Err(_) => preallocate(&path, self.cfg.segment_bytes),
                }
            }
            Spare::Missing => preallocate(&path, self.cfg.segment_bytes),
        }
    }

    fn roll(&mut self, first_zxid: i64) -> Result<(), StorageError> {
        let spare_path = self.dir.join(PREALLOC_FILE_NAME);
        let path = self.dir.join(log_file_name(first_zxid));
        let (file, map, fallback) = match self.segment_without_the_spare(&path) {
            Some((file, map)) => (file, map, true),
            None => {
                let (file, map) = self.take_spare()?;
                (file, map, false)
            }
        };
        let io = SegmentIo { path, file, map };
        io.write_at(0, &encode_segment_header(first_zxid));
        if !fallback {
            fs::rename(&spare_path, &io.path)
                .map_err(|e| StorageError::io("rename spare segment", &io.path, e))?;
        }
        self.segs.push(Segment {
            id: self.next_seg_id,
            first_zxid,
            io: Arc::new(io),
            write_off: SEGMENT_HEADER_BYTES,
            released: 0,
            fallback,
        });
        self.next_seg_id += 1;
        if !fallback {
            self.spare = spawn_preallocation(spare_path, self.cfg.segment_bytes);
        }
        Ok(())
    }

    /// Starts making everything appended so far durable. None when nothing new was
    /// appended or a job is already out (its successor picks the records up).
    pub fn begin_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        self.check_usable()?;
        if self.in_flight.is_some() || self.last_zxid == self.durable_zxid {
            return Ok(None);
        }
        let active = self.segs.last().expect("records appended imply a segment");
        let cp_id = self.checkpoint.map(|c| c.0);
        let mut targets = Vec::with_capacity(self.segs.len());
        for s in &self.segs {
            let from = match self.checkpoint {
                Some((id, off)) if id == s.id => off,
                _ => 0,
            };
            if s.write_off > from {
                targets.push((Arc::clone(&s.io), from, s.write_off));
            }
        }
        let created = self.segs.iter().any(|s| Some(s.id) != cp_id);
        let token = self.next_token;
        self.next_token += 1;
        self.in_flight = Some(InFlight {
            token,
            upto_zxid: self.last_zxid,
            end: (active.id, active.write_off),
        });
        Ok(Some(SyncJob {
            token,
            upto_zxid: self.last_zxid,
            mode: self.cfg.sync,
            targets,
            dir: created.then(|| self.dir.clone()),
        }))
    }

    /// Takes a finished job back. Ok: records up to `Durable::zxid` are durable.
    /// Err(SyncFailed): every record after `durable_zxid` (this batch and anything
    /// appended since) was discarded and zeroed on disk; fail their requests.
    pub fn finish_sync(&mut self, done: SyncDone) -> Result<Durable, StorageError> {
        let inf = self
            .in_flight
            .take()
            .expect("finish_sync without a sync job in flight");
        assert_eq!(inf.token, done.token, "SyncDone from another job");
        debug_assert_eq!(inf.upto_zxid, done.upto_zxid);
        match done.result {
            Ok(()) => {
                let (end_id, end_off) = inf.end;
                // Sealed segments that are now fully durable are unmapped here.
                self.segs.retain(|s| s.id >= end_id);
                self.checkpoint = Some((end_id, end_off));
                if let Some(s) = self.segs.first_mut() {
                    s.release_durable_pages(end_off);
                }
                self.durable_zxid = inf.upto_zxid;
                Ok(Durable {
                    zxid: inf.upto_zxid,
                })
            }
            Err((path, source)) => {
                tracing::error!(
                    "log sync failed on {}: {source}; discarding records after zxid {:#x}",
                    path.display(),
                    self.durable_zxid
                );
                self.rollback();
                Err(StorageError::SyncFailed {
                    path,
                    durable_zxid: self.durable_zxid,
                    source,
                })
            }
        }
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some((path, detail)) => Err(StorageError::Poisoned {
                path: path.clone(),
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Drops every record with a zxid after `zxid` (ZooKeeper's TRUNC): segments
    /// wholly after it are deleted, the one holding it gets an end mark after its
    /// last kept record. Blocking (fsyncs, reads the cut segment): a rare path.
    /// On return the cut is durable and so is every kept record
    /// (`durable_zxid() == last_zxid() == min(zxid, last_zxid())`); the next append
    /// starts a new segment and may reuse zxids after `zxid` with other content.
    /// Nothing to drop (`zxid >= last_zxid()`): nothing happens. A negative `zxid`
    /// counts as 0 (everything goes).
    ///
    /// Call it with no sync job out (`finish_sync` it first): an assertion. On an
    /// error the log is poisoned (the disk holds a prefix of the old log or the cut
    /// log, which recovery reads correctly; restart to go on).
    pub fn truncate_after(&mut self, zxid: i64) -> Result<(), StorageError> {
        self.check_usable()?;
        assert!(
            self.in_flight.is_none(),
            "truncate_after({zxid:#x}) with a sync job out: finish_sync it first"
        );
        // A zxid from a peer may be anything: before 0 means everything.
        let zxid = zxid.max(0);
        if zxid >= self.last_zxid {
            return Ok(());
        }
        let result = self
            .sync_segments_upto(zxid)
            .and_then(|()| self.cut_disk_after(zxid));
        self.restart_at(zxid.min(self.last_zxid), result)
    }

    /// Makes the whole log obsolete (after a SNAP): the caller has written and
    /// fsynced a snapshot at `after_zxid`; every segment is deleted and the next
    /// append starts a fresh segment with a zxid after `after_zxid`. Records after
    /// `after_zxid` are cut durably first (as [`Log::truncate_after`]), so a crash
    /// while the rest is deleted cannot leave them to be replayed on top of that
    /// snapshot. Blocking; call it with no sync job out. Afterwards
    /// `last_zxid() == durable_zxid() == after_zxid`. Then remove snapshots newer
    /// than `after_zxid` ([`super::remove_snapshots_after`]), before any append.
    pub fn reset(&mut self, after_zxid: i64) -> Result<(), StorageError> {
        self.check_usable()?;
        assert!(
            self.in_flight.is_none(),
            "reset({after_zxid:#x}) with a sync job out: finish_sync it first"
        );
        let after_zxid = after_zxid.max(0);
        let cut = if after_zxid < self.last_zxid {
            self.cut_disk_after(after_zxid)
        } else {
            Ok(())
        };
        let result = cut.and_then(|()| self.remove_all_segments());
        self.restart_at(after_zxid, result)
    }

    /// After a truncation or reset: no segment stays mapped (the next append rolls
    /// to a new one) and `last` is durable; or, on `Err`, the log is poisoned.
    fn restart_at(
        &mut self,
        last: i64,
        result: Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.segs.clear();
        self.checkpoint = None;
        match result {
            Ok(()) => {
                self.last_zxid = last;
                self.durable_zxid = last;
                Ok(())
            }
            Err(e) => {
                tracing::error!("rewriting the log failed ({e}); the log is poisoned");
                self.poisoned = Some((self.dir.clone(), format!("rewriting its end failed: {e}")));
                Err(e)
            }
        }
    }

    fn syncs(&self) -> bool {
        self.cfg.sync != SyncMode::None
    }

    /// fdatasyncs the mapped segments that hold records up to `zxid` (kept by a
    /// truncation), so they are durable before anything after them is cut.
    fn sync_segments_upto(&self, zxid: i64) -> Result<(), StorageError> {
        if !self.syncs() {
            return Ok(());
        }
        for s in self.segs.iter().filter(|s| s.first_zxid <= zxid) {
            s.io.file
                .sync_data()
                .map_err(|e| StorageError::io("sync log segment", &s.io.path, e))?;
        }
        Ok(())
    }

    /// On disk: unlinks every segment whose first zxid is after `zxid` (newest
    /// first, then fsyncs the directory), then end-marks the segment holding
    /// `zxid` right after its last record ≤ `zxid` and fsyncs it.
    fn cut_disk_after(&self, zxid: i64) -> Result<(), StorageError> {
        let logs = scan_dir(&self.dir)?.logs;
        let split = logs.partition_point(|(first, _)| *first <= zxid);
        let (kept, later) = logs.split_at(split);
        for (_, path) in later.iter().rev() {
            remove_if_exists(path, "remove truncated log segment")?;
        }
        if !later.is_empty() && self.syncs() {
            sync_dir(&self.dir)?;
        }
        match kept.last() {
            Some((first, path)) => end_mark_after(path, *first, zxid, self.syncs()),
            None => Ok(()),
        }
    }

    /// Unlinks every segment (after a SNAP); the directory is fsynced.
    fn remove_all_segments(&self) -> Result<(), StorageError> {
        let logs = scan_dir(&self.dir)?.logs;
        for (_, path) in logs.iter().rev() {
            remove_if_exists(path, "remove obsolete log segment")?;
        }
        if !logs.is_empty() && self.syncs() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Undoes everything after the checkpoint, on disk: zeroes the checkpoint
    /// segment's tail, unlinks segments created since, and syncs that (blocking:
    /// this is the failure path). If that fails too the log is poisoned.
    fn rollback(&mut self) {
        let cp = self.checkpoint;
        let mut keep = Vec::new();
        let mut repair: Result<(), (PathBuf, String)> = Ok(());
        let mut unlinked = false;
        for mut s in self.segs.drain(..) {
            match cp {
                Some((id, off)) if id == s.id => {
                    s.io.zero(off, s.write_off);
                    let end = s.write_off;
                    s.write_off = off;
                    if repair.is_ok() && end > off {
                        repair =
                            s.io.sync(self.cfg.sync, off, end)
                                .map_err(|e| (s.io.path.clone(), e.to_string()));
                    }
                    keep.push(s);
                }
                _ => {
                    if let Err(e) = fs::remove_file(&s.io.path) {
                        if repair.is_ok() {
                            repair = Err((s.io.path.clone(), format!("unlink: {e}")));
                        }
                    }
                    unlinked = true;
                }
            }
        }
        self.segs = keep;
        self.last_zxid = self.durable_zxid;
        if unlinked && repair.is_ok() && self.cfg.sync != SyncMode::None {
            repair = sync_dir(&self.dir).map_err(|e| (self.dir.clone(), e.to_string()));
        }
        if let Err((path, detail)) = repair {
            tracing::error!(
                "could not undo a failed log sync ({}: {detail}); the log is poisoned",
                path.display()
            );
            self.poisoned = Some((path, format!("a failed sync could not be undone: {detail}")));
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Spare::Pending(f) = std::mem::replace(&mut self.spare, Spare::Missing) {
            let _ = f.handle.join();
        }
    }
}

/// A torn record at the end of the log that recovery zeroed: in the last
/// segment, or in an earlier one when the segments after it hold no valid record
/// (a batch that spanned a roll and never finished its sync; those segments are
/// removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    /// Bytes zeroed: from `offset` through the last nonzero byte of the segment.
    pub bytes: u64,
    pub reason: String,
    /// Later segments removed, none of which held a valid record.
    pub later_segments_removed: Vec<PathBuf>,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: truncated {} bytes of a torn record at offset {} ({})",
            self.path.display(),
            self.bytes,
            self.offset,
            self.reason
        )?;
        if !self.later_segments_removed.is_empty() {
            let names: Vec<String> = self
                .later_segments_removed
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            write!(
                f,
                "; removed the later segment(s) it had rolled to, which hold no valid \
                 record (a sync that never finished): {}",
                names.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Where the log ends after recovery; [`Log::open`] takes it.
#[derive(Debug)]
pub struct LogTail {
    /// The last zxid of the state (the log's last record, or the snapshot's zxid
    /// when the log has nothing after it).
    pub last_zxid: i64,
    /// A torn tail that was truncated, if any.
    pub torn: Option<TornTail>,
    _proof: RecoveredProof,
}

/// Only this module can make a [`LogTail`]: recovery ran before the log opens.
#[derive(Debug)]
struct RecoveredProof;

struct Cursor {
    path: PathBuf,
    reader: BufReader<File>,
    len: u64,
    off: u64,
    first_zxid: i64,
    records: u64,
    is_last: bool,
}

/// Streams the log records after a zxid; see the module doc.
pub struct LogReader {
    dir: PathBuf,
    segs: Vec<(i64, PathBuf)>,
    idx: usize,
    after_zxid: i64,
    /// Records after this are not read (`i64::MAX`: to the end).
    upto_zxid: i64,
    /// Never change a file: a torn tail or an empty last segment just ends the read.
    read_only: bool,
    /// A record after `upto_zxid` was seen: the log goes on past it.
    passed_upto: bool,
    prev: Option<i64>,
    cur: Option<Cursor>,
    buf: Vec<u8>,
    torn: Option<TornTail>,
    exhausted: bool,
}

/// Where a read-only read ([`LogReader::open_read_only`]) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadEnd {
    /// The last record read (or `after_zxid` when none was).
    pub last_zxid: i64,
    /// The log holds a record after `upto_zxid`.
    pub continues: bool,
}

fn corrupt(path: &Path, offset: u64, detail: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        detail: detail.into(),
    }
}

impl LogReader {
    /// Lists the segments of `dir` and positions before the first record with
    /// `zxid > after_zxid`. Segments holding only older records are not read.
    pub fn open(dir: &Path, after_zxid: i64) -> Result<LogReader, StorageError> {
        let listing = scan_dir(dir)?;
        if let Some(p) = &listing.prealloc {
            fs::remove_file(p).map_err(|e| StorageError::io("remove stale spare segment", p, e))?;
        }
        Ok(Self::positioned(
            dir,
            listing.logs,
            after_zxid,
            i64::MAX,
            false,
        ))
    }

    /// Reads the records in `(after_zxid, upto_zxid]` without changing any file:
    /// safe while the log is open for writing (from the writer's thread, between
    /// appends). A torn tail ends the read instead of being repaired; corruption
    /// is still an error. End with [`LogReader::finish_read_only`].
    pub fn open_read_only(
        dir: &Path,
        after_zxid: i64,
        upto_zxid: i64,
    ) -> Result<LogReader, StorageError> {
        let logs = list_dir(dir)?.logs;
        Ok(Self::positioned(dir, logs, after_zxid, upto_zxid, true))
    }

    fn positioned(
        dir: &Path,
        segs: Vec<(i64, PathBuf)>,
        after_zxid: i64,
        upto_zxid: i64,
        read_only: bool,
    ) -> LogReader {
        let start = segs
            .iter()
            .rposition(|(z, _)| *z <= after_zxid.saturating_add(1))
            .unwrap_or(0);
        let prev = match segs.get(start) {
            Some((z, _)) if *z > after_zxid => Some(after_zxid),
            _ => None,
        };
        LogReader {
            dir: dir.to_path_buf(),
            segs,
            idx: start,
            after_zxid,
            upto_zxid,
            read_only,
            passed_upto: false,
            prev,
            cur: None,
            buf: Vec::new(),
            torn: None,
            exhausted: false,
        }
    }

    /// The next record after `after_zxid`, or None at the end of the log.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, StorageError> {
        match self.advance()? {
            Some((zxid, kind, len)) => Ok(Some(Record {
                zxid,
                kind,
                payload: &self.buf[..len],
            })),
            None => {
                self.exhausted = true;
                Ok(None)
            }
        }
    }

    /// Ends reading (draining what is left) and returns where the log ends.
    pub fn finish(mut self) -> Result<LogTail, StorageError> {
        assert!(
            !self.read_only,
            "a read-only read proves nothing about the tail: use finish_read_only"
        );
        self.drain()?;
        Ok(LogTail {
            last_zxid: self.last_read(),
            torn: self.torn.take(),
            _proof: RecoveredProof,
        })
    }

    /// Ends a read-only read (draining what is left up to `upto_zxid`).
    pub fn finish_read_only(mut self) -> Result<ReadEnd, StorageError> {
        self.drain()?;
        Ok(ReadEnd {
            last_zxid: self.last_read(),
            continues: self.passed_upto,
        })
    }

    fn drain(&mut self) -> Result<(), StorageError> {
        while !self.exhausted {
            self.next_record()?;
        }
        Ok(())
    }

    fn last_read(&self) -> i64 {
        self.prev.unwrap_or(0).max(self.after_zxid)
    }

    fn open_segment(
        &mut self,
        name_zxid: i64,
        path: PathBuf,
        is_last: bool,
    ) -> Result<Option<Cursor>, StorageError> {
        let file = File::open(&path).map_err(|e| StorageError::io("open log segment", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("stat log segment", &path, e))?
            .len();
        if !check_segment_header(&file, &path, len, name_zxid)? {
            if !is_last {
                return Err(corrupt(&path, 0, "segment header is missing (zero or short file) in a segment that is not the last"));
            }
            if self.read_only {
                return Ok(None);
            }
            // Crash while the segment was being created: its header never reached
            // the disk, so no record in it was ever synced.
            tracing::warn!(
                "{}: segment header never written (crash during creation); removing the segment ({len} bytes)",
                path.display()
            );
            fs::remove_file(&path)
                .map_err(|e| StorageError::io("remove torn segment", &path, e))?;
            sync_dir(&self.dir)?;
            return Ok(None);
        }
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        reader
            .seek_relative(SEGMENT_HEADER_BYTES as i64)
            .map_err(|e| StorageError::io("read log segment", &path, e))?;
        Ok(Some(Cursor {
            path,
            reader,
            len,
            off: SEGMENT_HEADER_BYTES as u64,
            first_zxid: name_zxid,
            records: 0,
            is_last,
        }))
    }

    fn advance(&mut self) -> Result<Option<(i64, u8, usize)>, StorageError> {
        loop {
            if self.prev.is_some_and(|p| p >= self.upto_zxid) {
                return Ok(None);
            }
            if self.cur.is_none() {
                if self.idx >= self.segs.len() {
                    return Ok(None);
                }
                let (z, path) = self.segs[self.idx].clone();
                let is_last = self.idx + 1 == self.segs.len();
                self.idx += 1;
                self.cur = self.open_segment(z, path, is_last)?;
                continue;
            }
            let cur = self.cur.as_mut().expect("checked above");
            let mut h = [0u8; RECORD_HEADER_BYTES];
            if cur.len.saturating_sub(cur.off) < RECORD_HEADER_BYTES as u64 || {
                cur.reader
                    .read_exact(&mut h)
                    .map_err(|e| StorageError::io("read log segment", &cur.path, e))?;
                is_zero(&h)
            } {
                self.end_of_records(None)?;
                continue;
            }
            let rh = decode_record_header(&h);
            if h[17] == RECORD_FLAG_END_MARK && is_end_mark(&h) {
                // A truncation ended this segment's records here; the rest is dead.
                if cur.records == 0 || self.prev != Some(rh.zxid) {
                    return Err(corrupt(
                        &cur.path,
                        cur.off,
                        format!(
                            "end mark after zxid {:#x} follows {} record(s) ending at {:#x}",
                            rh.zxid,
                            cur.records,
                            self.prev.unwrap_or(0)
                        ),
                    ));
                }
                self.cur = None;
                continue;
            }
            let room = cur.len - cur.off - RECORD_HEADER_BYTES as u64;
            if rh.len as u64 > room {
                let d = format!("record length {} runs past the end of the segment", rh.len);
                self.end_of_records(Some(d))?;
                continue;
            }
            self.buf.resize(rh.len, 0);
            cur.reader
                .read_exact(&mut self.buf[..rh.len])
                .map_err(|e| StorageError::io("read log segment", &cur.path, e))?;
            if rh.crc != record_crc(&h, &self.buf[..rh.len]) || !rh.reserved_zero {
                self.end_of_records(Some("record checksum mismatch".into()))?;
                continue;
            }
            let at = cur.off;
            let pad = record_bytes(rh.len) - RECORD_HEADER_BYTES - rh.len;
            let mut scratch = [0u8; 8];
            let pad = pad.min((cur.len - cur.off) as usize - RECORD_HEADER_BYTES - rh.len);
            cur.reader
                .read_exact(&mut scratch[..pad])
                .map_err(|e| StorageError::io("read log segment", &cur.path, e))?;
            if cur.records == 0 && rh.zxid != cur.first_zxid {
                return Err(corrupt(
                    &cur.path,
                    at,
                    format!(
                        "first record has zxid {:#x} but the segment starts at {:#x}",
                        rh.zxid, cur.first_zxid
                    ),
                ));
            }
            if let Some(p) = self.prev {
                if !zxid_follows(p, rh.zxid) {
                    let what = if rh.zxid <= p {
                        "goes backwards from"
                    } else {
                        "skips ahead of"
                    };
                    return Err(corrupt(
                        &cur.path,
                        at,
                        format!(
                            "zxid {:#x} {what} {p:#x}: records are missing or out of order",
                            rh.zxid
                        ),
                    ));
                }
            }
            if rh.zxid > self.upto_zxid {
                self.passed_upto = true;
                return Ok(None);
            }
            cur.off += record_bytes(rh.len) as u64;
            cur.records += 1;
            self.prev = Some(rh.zxid);
            if rh.zxid > self.after_zxid {
                return Ok(Some((rh.zxid, rh.kind, rh.len)));
            }
        }
    }

    /// The records of the current segment end at `cur.off`, cleanly (`bad` None:
    /// a zero header) or at a bad record. Decides between a clean end, a torn tail
    /// (last segment, nothing valid after: zeroed and reported) and corruption.
    fn end_of_records(&mut self, bad: Option<String>) -> Result<(), StorageError> {
        let cur = self.cur.take().expect("a segment is open");
        let off = cur.off;
        let file = cur.reader.into_inner();
        let start = off as usize;
        let Some(last_nonzero) = last_nonzero_byte(&file, &cur.path, off, cur.len)? else {
            // Clean end: zeros to the end of the segment.
            if cur.is_last && cur.records == 0 && !self.read_only {
                self.remove_empty_last(&cur.path)?;
            }
            return Ok(());
        };
        // Failure path only: map the segment to search it for valid records.
        // SAFETY: read-only mapping of a file nothing else writes during recovery.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| StorageError::io("map log segment", &cur.path, e))?;
        let reason = bad.unwrap_or_else(|| "zero record header followed by data".into());
        if let Some((at, z)) = find_valid_record(&map, start + 8, self.prev) {
            return Err(corrupt(
                &cur.path,
                off,
                format!("{reason} (a valid record with zxid {z:#x} follows at offset {at})"),
            ));
        }
        drop(map);
        if !cur.is_last {
            if let Some((path, at, z)) = self.valid_record_in_later_segments()? {
                return Err(corrupt(
                    &cur.path,
                    off,
                    format!(
                        "{reason} in a segment that is not the last (a valid record with \
                         zxid {z:#x} follows in {} at offset {at})",
                        path.display()
                    ),
                ));
            }
        }
        if self.read_only {
            // What start-up recovery would truncate; here it just ends the read.
            self.idx = self.segs.len();
            return Ok(());
        }
        // The later segments go first: a crash after it leaves an ordinary torn
        // last segment, which the next start-up repairs.
        let later_segments_removed = self.remove_later_segments()?;
        let bytes = last_nonzero + 1 - off;
        let wf = OpenOptions::new()
            .write(true)
            .open(&cur.path)
            .map_err(|e| StorageError::io("open log segment to truncate", &cur.path, e))?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(bytes as usize)];
        let mut pos = off;
        while pos < off + bytes {
            let n = (off + bytes - pos).min(zeros.len() as u64) as usize;
            wf.write_all_at(&zeros[..n], pos)
                .map_err(|e| StorageError::io("truncate torn record", &cur.path, e))?;
            pos += n as u64;
        }
        wf.sync_data()
            .map_err(|e| StorageError::io("sync truncated segment", &cur.path, e))?;
        let torn = TornTail {
            path: cur.path.clone(),
            offset: off,
            bytes,
            reason,
            later_segments_removed,
        };
        tracing::warn!("{torn}");
        self.torn = Some(torn);
        if cur.records == 0 {
            self.remove_empty_last(&cur.path)?;
        }
        Ok(())
    }

    /// The first record that verifies (with a zxid after the last one read) in
    /// the segments not opened yet: path, offset and zxid. Their headers are not
    /// trusted (a segment created in a batch that never finished its sync may have
    /// a torn one), only a foreign or newer format stops the search.
    fn valid_record_in_later_segments(&self) -> Result<Option<(PathBuf, u64, i64)>, StorageError> {
        for (z, path) in &self.segs[self.idx..] {
            let file =
                File::open(path).map_err(|e| StorageError::io("open log segment", path, e))?;
            let len = file
                .metadata()
                .map_err(|e| StorageError::io("stat log segment", path, e))?
                .len();
            if len < (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64 {
                continue;
            }
            match check_segment_header(&file, path, len, *z) {
                Ok(_) | Err(StorageError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
            // SAFETY: read-only mapping of a file nothing else writes during recovery.
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| StorageError::io("map log segment", path, e))?;
            if let Some((at, zxid)) = find_valid_record(&map, SEGMENT_HEADER_BYTES, self.prev) {
                return Ok(Some((path.clone(), at, zxid)));
            }
        }
        Ok(None)
    }

    /// Removes the segments not opened yet (recovery found no valid record in
    /// them) and syncs the directory; returns their paths.
    fn remove_later_segments(&mut self) -> Result<Vec<PathBuf>, StorageError> {
        let later: Vec<PathBuf> = self.segs.drain(self.idx..).map(|(_, p)| p).collect();
        for path in &later {
            fs::remove_file(path)
                .map_err(|e| StorageError::io("remove unsynced log segment", path, e))?;
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(later)
    }

    /// A last segment without records holds nothing; removing it keeps every
    /// segment name equal to the zxid of a record it holds, which the choice of
    /// the segment to start reading from relies on.
    fn remove_empty_last(&self, path: &Path) -> Result<(), StorageError> {
        fs::remove_file(path)
            .map_err(|e| StorageError::io("remove empty last segment", path, e))?;
        sync_dir(&self.dir)
    }
}

/// Checks the header of segment `path` (`len` bytes, named `name_zxid`). False: no
/// header (a zero or short file: the crash came while it was being created).
fn check_segment_header(
    file: &File,
    path: &Path,
    len: u64,
    name_zxid: i64,
) -> Result<bool, StorageError> {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    if len >= SEGMENT_HEADER_BYTES as u64 {
        file.read_exact_at(&mut header, 0)
            .map_err(|e| StorageError::io("read log segment", path, e))?;
    }
    if len < SEGMENT_HEADER_BYTES as u64 || is_zero(&header) {
        return Ok(false);
    }
    if header[0..8] != SEGMENT_MAGIC {
        return Err(StorageError::WrongFormat {
            path: path.to_path_buf(),
            what: "log segment",
            found: header[0..8].escape_ascii().to_string(),
        });
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != LOG_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "log segment",
            found: version,
            expected: LOG_FORMAT_VERSION,
        });
    }
    let crc = u32::from_le_bytes(header[28..32].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&header[0..28]) {
        return Err(corrupt(path, 0, "segment header checksum mismatch"));
    }
    let first_zxid = i64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    if first_zxid != name_zxid {
        return Err(corrupt(
            path,
            16,
            format!("segment header says first zxid {first_zxid:#x} but the file name says {name_zxid:#x}"),
        ));
    }
    Ok(true)
}

/// Writes an end mark into segment `path` (named `first_zxid`) right after its last
/// record ≤ `zxid`, unless nothing follows that record, and fsyncs it (`sync`). A
/// segment already gone (purged meanwhile) or never given a header has nothing to cut.
fn end_mark_after(path: &Path, first_zxid: i64, zxid: i64, sync: bool) -> Result<(), StorageError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("open log segment to truncate", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("stat log segment", path, e))?
        .len();
    if !check_segment_header(&file, path, len, first_zxid)? {
        return Ok(());
    }
    let Some((at, last)) = find_cut(&file, path, len, zxid)? else {
        return Ok(());
    };
    file.write_all_at(&encode_end_mark(last), at)
        .map_err(|e| StorageError::io("write log end mark", path, e))?;
    if sync {
        file.sync_data()
            .map_err(|e| StorageError::io("sync truncated log segment", path, e))?;
    }
    Ok(())
}

/// Walks the records of a segment (checking each checksum) to where the records
/// after `zxid` begin: `Some((offset, zxid of the last record before it))` when a
/// record after `zxid`, or bytes that are no record, follow; None when the records
/// end (zeros, an end mark or the file's end) at or before `zxid`.
fn find_cut(
    file: &File,
    path: &Path,
    len: u64,
    zxid: i64,
) -> Result<Option<(u64, i64)>, StorageError> {
    let read_err = |e| StorageError::io("read log segment", path, e);
    let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    r.seek_relative(SEGMENT_HEADER_BYTES as i64)
        .map_err(read_err)?;
    let mut off = SEGMENT_HEADER_BYTES as u64;
    let mut last = None;
    let mut payload = Vec::new();
    let mut h = [0u8; RECORD_HEADER_BYTES];
    loop {
        if len - off < RECORD_HEADER_BYTES as u64 {
            return Ok(None);
        }
        r.read_exact(&mut h).map_err(read_err)?;
        if is_zero(&h) || is_end_mark(&h) {
            return Ok(None);
        }
        let rh = decode_record_header(&h);
        let room = len - off - RECORD_HEADER_BYTES as u64;
        let whole = rh.reserved_zero && rh.len as u64 <= room && {
            payload.resize(rh.len, 0);
            r.read_exact(&mut payload).map_err(read_err)?;
            rh.crc == record_crc(&h, &payload)
        };
        if !whole || rh.zxid > zxid {
            return match last {
                Some(l) => Ok(Some((off, l))),
                None => Err(corrupt(
                    path,
                    off,
                    format!("cannot truncate after {zxid:#x}: the segment's first record is not a record at or before it"),
                )),
            };
        }
        last = Some(rh.zxid);
        let pad = (record_bytes(rh.len) - RECORD_HEADER_BYTES - rh.len)
            .min((room - rh.len as u64) as usize);
        r.read_exact(&mut [0u8; 8][..pad]).map_err(read_err)?;
        off += (RECORD_HEADER_BYTES + rh.len + pad) as u64;
    }
}

/// Offset of the last nonzero byte in `[from, len)`, read in chunks (bounded memory).
fn last_nonzero_byte(
    file: &File,
    path: &Path,
    from: u64,
    len: u64,
) -> Result<Option<u64>, StorageError> {
    let mut buf = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    let mut last = None;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| StorageError::io("read log segment", path, e))?;
        // The common case, a clean end, is all zeros: checked 16 bytes at a time
        // (a byte-wise search cost ~40 ms over a mostly empty 64 MiB segment).
        if !all_zero(&buf[..n]) {
            if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
                last = Some(at + i as u64);
            }
        }
        at += n as u64;
    }
    Ok(last)
}

/// Whether every byte is zero.
fn all_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(16);
    let rest = words.remainder();
    words
        .map(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")))
        .fold(0, |acc, w| acc | w)
        == 0
        && rest.iter().all(|&x| x == 0)
}

/// Looks for a record that verifies at an 8-aligned offset ≥ `from` with a zxid
/// after `prev`: its presence means a bad record is not a torn tail.
fn find_valid_record(map: &[u8], from: usize, prev: Option<i64>) -> Option<(u64, i64)> {
    let mut at = (from + 7) & !7;
    while at + RECORD_HEADER_BYTES <= map.len() {
        let h = &map[at..at + RECORD_HEADER_BYTES];
        let rh = decode_record_header(h);
        let plausible = rh.reserved_zero
            && rh.zxid > prev.unwrap_or(0)
            && rh.len <= map.len() - at - RECORD_HEADER_BYTES;
        if plausible {
            let payload = &map[at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + rh.len];
            if rh.crc == record_crc(h, payload) {
                return Some((at as u64, rh.zxid));
            }
        }
        at += 8;
    }
    None
}

/// Streams every record with `zxid > after_zxid` to `f`, in order; see [`LogReader`].
pub fn read_log(
    dir: &Path,
    after_zxid: i64,
    mut f: impl FnMut(Record<'_>),
) -> Result<LogTail, StorageError> {
    let mut r = LogReader::open(dir, after_zxid)?;
    while let Some(rec) = r.next_record()? {
        f(rec);
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_sees_a_nonzero_byte_anywhere() {
        for len in [0, 1, 15, 16, 17, 33, 100] {
            assert!(all_zero(&vec![0u8; len]));
            for at in 0..len {
                let mut b = vec![0u8; len];
                b[at] = 0x80;
                assert!(!all_zero(&b), "{len} {at}");
            }
        }
    }

    #[test]
    fn a_spare_is_zero_filled_to_its_size_across_writeback_chunks() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(PREALLOC_FILE_NAME);
        // Three writeback chunks and a page: the trickle steps through each.
        let bytes = 3 * PREALLOC_WRITEBACK_CHUNK_BYTES + PAGE_BYTES as u64;
        fs::write(&path, vec![0xAB; 4096]).unwrap(); // a stale spare is replaced
        let (file, map) = preallocate(&path, bytes).unwrap();
        assert_eq!(file.metadata().unwrap().len(), bytes);
        assert_eq!(map.len() as u64, bytes);
        let back = fs::read(&path).unwrap();
        assert_eq!(back.len() as u64, bytes);
        assert!(all_zero(&back));
    }

    #[test]
    fn the_preallocation_thread_runs_at_a_lower_priority() {
        fn own_nice() -> libc::c_int {
            // SAFETY: plain syscalls on the calling thread's own id.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::getpriority(libc::PRIO_PROCESS, tid)
            }
        }
        let before = own_nice();
        let nice = std::thread::spawn(|| {
            lower_priority();
            own_nice()
        })
        .join()
        .unwrap();
        // Lowering never raises: a runner already niced above 10 stays there.
        assert_eq!(nice, PREALLOC_NICE.max(before));
        // Only that thread: this one keeps its own.
        assert_eq!(own_nice(), before);
    }

    fn cfg(mode: SyncMode) -> LogConfig {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_MIN,
            sync: mode,
        }
    }

    fn payload(z: i64, n: usize) -> Vec<u8> {
        (0..n).map(|i| (z as usize * 31 + i) as u8).collect()
    }

    fn open(dir: &Path, mode: SyncMode) -> Log {
        let tail = read_log(dir, 0, |_| {}).unwrap();
        Log::open(dir, cfg(mode), tail).unwrap()
    }

    fn sync(log: &mut Log) -> Durable {
        let job = log.begin_sync().unwrap().expect("something to sync");
        log.finish_sync(job.run()).unwrap()
    }

    fn collect(dir: &Path, after: i64) -> (Vec<(i64, u8, Vec<u8>)>, LogTail) {
        let mut v = Vec::new();
        let tail = read_log(dir, after, |r| v.push((r.zxid, r.kind, r.payload.to_vec()))).unwrap();
        (v, tail)
    }

    /// Bytes this thread has caused to be written to storage (`/proc/thread-self/io`;
    /// the kernel charges a dirtied page-cache folio to the task that dirtied it).
    fn thread_io(key: &str) -> u64 {
        let io = fs::read_to_string("/proc/thread-self/io").expect("task io accounting");
        io.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/thread-self/io"))
    }

    #[test]
    fn a_small_synced_append_dirties_a_page_not_a_large_folio() {
        let d = tempfile::tempdir().unwrap();
        let tail = read_log(d.path(), 0, |_| {}).unwrap();
        let seg = LogConfig {
            segment_bytes: 16 << 20,
            sync: SyncMode::Fdatasync,
        };
        let mut log = Log::open(d.path(), seg, tail).unwrap();
        log.append(1, 1, &payload(1, 100)).unwrap();
        sync(&mut log);
        let (written, read) = (thread_io("write_bytes"), thread_io("read_bytes"));
        let n = 200;
        for z in 2..2 + n {
            log.append(z, 1, &payload(z, 100)).unwrap();
            sync(&mut log);
        }
        let per_sync = (thread_io("write_bytes") - written) / n as u64;
        assert_eq!(
            thread_io("read_bytes") - read,
            0,
            "appending read the preallocated zeros back from disk"
        );
        // 200 records of 124 bytes span 7 pages: a few KiB per sync at most. With the
        // zero-fill's 1-2 MiB folios in the page cache this was 1-2 MiB per sync.
        assert!(
            per_sync <= 8192,
            "each 100-byte synced append dirtied {per_sync} bytes of page cache"
        );
    }

    #[test]
    fn record_framing_is_8_aligned_and_checksummed() {
        assert_eq!(record_bytes(0), 24);
        assert_eq!(record_bytes(1), 32);
        assert_eq!(record_bytes(8), 32);
        assert_eq!(record_bytes(9), 40);
        let h = encode_record_header(7, 3, b"abc");
        let rh = decode_record_header(&h);
        assert_eq!((rh.len, rh.zxid, rh.kind), (3, 7, 3));
        assert!(rh.reserved_zero);
        assert_eq!(rh.crc, record_crc(&h, b"abc"));
        assert_ne!(rh.crc, record_crc(&h, b"abd"));
    }

    #[test]
    fn zxid_continuity_allows_epoch_jumps_only() {
        assert!(zxid_follows(5, 6));
        assert!(!zxid_follows(5, 7));
        assert!(!zxid_follows(5, 5));
        assert!(zxid_follows(0x1_0000_0005, 0x2_0000_0001));
        assert!(!zxid_follows(0x2_0000_0005, 0x1_0000_0009));
    }

    #[test]
    fn append_sync_read_back_across_rolls() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        // ~1 KiB records in 64 KiB segments: several rolls.
        for z in 1..=300 {
            log.append(z, (z % 5) as u8, &payload(z, 1000 + z as usize % 13))
                .unwrap();
            if z % 7 == 0 {
                assert_eq!(sync(&mut log).zxid(), z);
            }
        }
        assert_eq!(sync(&mut log).zxid(), 300);
        drop(log);
        let segs = scan_dir(d.path()).unwrap().logs;
        assert!(segs.len() > 4, "rolled into {} segments", segs.len());
        assert_eq!(segs[0].0, 1);
        let (recs, tail) = collect(d.path(), 0);
        assert_eq!(recs.len(), 300);
        for (i, (z, k, p)) in recs.iter().enumerate() {
            let want = i as i64 + 1;
            assert_eq!((*z, *k), (want, (want % 5) as u8));
            assert_eq!(p, &payload(want, 1000 + want as usize % 13));
        }
        assert_eq!(tail.last_zxid, 300);
        assert!(tail.torn.is_none());
        // Reading after a zxid skips whole segments and yields the rest.
        let (recs, _) = collect(d.path(), 250);
        assert_eq!(recs.first().map(|r| r.0), Some(251));
        assert_eq!(recs.len(), 50);
    }

    /// 70 records of 1 KiB synced into 64 KiB segments: zxids 1..=63 fill the
    /// first, 64..=70 start the second. Returns the two segment paths and the
    /// offset of record 63 in the first.
    fn two_segments(dir: &Path) -> (PathBuf, PathBuf, u64) {
        let mut log = open(dir, SyncMode::Fdatasync);
        for z in 1..=70 {
            log.append(z, 1, &payload(z, 1000)).unwrap();
        }
        assert_eq!(sync(&mut log).zxid(), 70);
        drop(log);
        let segs = scan_dir(dir).unwrap().logs;
        assert_eq!(
            segs.iter().map(|s| s.0).collect::<Vec<_>>(),
            [1, 64],
            "the records' layout"
        );
        let last_of_first = (SEGMENT_HEADER_BYTES + 62 * record_bytes(1000)) as u64;
        (segs[0].1.clone(), segs[1].1.clone(), last_of_first)
    }

    /// Flips one payload byte of the record at `off` in `path`.
    fn damage_record(path: &Path, off: u64) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let at = off + RECORD_HEADER_BYTES as u64 + 100;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
    }

    /// Reopens the log after recovery and checks that it goes on from zxid 63.
    fn appends_go_on_from_62(dir: &Path) {
        let mut log = open(dir, SyncMode::Fdatasync);
        assert_eq!(log.last_zxid(), 62);
        for z in 63..=80 {
            log.append(z, 1, &payload(z, 1000)).unwrap();
        }
        assert_eq!(sync(&mut log).zxid(), 80);
        drop(log);
        let (recs, tail) = collect(dir, 0);
        assert_eq!(recs.len(), 80);
        assert!(recs.iter().all(|(z, _, p)| p == &payload(*z, 1000)));
        assert!(tail.torn.is_none());
    }

    /// Power lost while a batch spanning a roll was syncing: the first segment's
    /// last record is torn and no record of the segment it rolled to reached the
    /// disk whole. That is a torn tail of the log, not corruption.
    #[test]
    fn a_torn_record_before_a_roll_whose_successor_holds_nothing_valid_is_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let (first, second, torn_at) = two_segments(d.path());
        damage_record(&first, torn_at);
        for i in 0..7 {
            damage_record(
                &second,
                (SEGMENT_HEADER_BYTES + i * record_bytes(1000)) as u64,
            );
        }
        let (recs, tail) = collect(d.path(), 0);
        assert_eq!(recs.len(), 62);
        assert_eq!(tail.last_zxid, 62);
        let torn = tail.torn.expect("a torn tail");
        assert_eq!(
            (torn.path.as_path(), torn.offset),
            (first.as_path(), torn_at)
        );
        assert_eq!(torn.later_segments_removed, std::slice::from_ref(&second));
        assert!(
            torn.to_string().contains("removed the later segment(s)"),
            "{torn}"
        );
        assert!(!second.exists());
        appends_go_on_from_62(d.path());
    }

    /// The same when the successor's header never reached the disk either.
    #[test]
    fn a_torn_record_before_a_roll_whose_successor_is_all_zeros_is_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let (first, second, torn_at) = two_segments(d.path());
        damage_record(&first, torn_at);
        let len = fs::metadata(&second).unwrap().len();
        let f = OpenOptions::new().write(true).open(&second).unwrap();
        f.write_all_at(&vec![0u8; len as usize], 0).unwrap();
        let (recs, tail) = collect(d.path(), 0);
        assert_eq!((recs.len(), tail.last_zxid), (62, 62));
        assert_eq!(
            tail.torn.expect("a torn tail").later_segments_removed,
            std::slice::from_ref(&second)
        );
        assert!(!second.exists());
        appends_go_on_from_62(d.path());
    }

    /// A bad record followed by a valid one in a later segment may be a synced
    /// record gone bad: start-up stops, naming both, and changes nothing.
    #[test]
    fn a_bad_record_before_a_roll_whose_successor_holds_records_is_corruption() {
        let d = tempfile::tempdir().unwrap();
        let (first, second, torn_at) = two_segments(d.path());
        damage_record(&first, torn_at);
        let before = fs::read(&second).unwrap();
        let err = read_log(d.path(), 0, |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("not the last") && text.contains("zxid 0x40"),
            "{text}"
        );
        assert_eq!(fs::read(&second).unwrap(), before);
    }

    #[test]
    fn group_commit_one_job_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Msync);
        assert!(log.begin_sync().unwrap().is_none(), "nothing to sync");
        log.append(1, 1, b"a").unwrap();
        log.append(2, 1, b"b").unwrap();
        let job = log.begin_sync().unwrap().unwrap();
        assert_eq!(job.upto_zxid(), 2);
        // Records arriving while the job runs wait for the next one.
        log.append(3, 1, b"c").unwrap();
        assert!(log.begin_sync().unwrap().is_none());
        assert_eq!(log.durable_zxid(), 0);
        let done = std::thread::spawn(move || job.run()).join().unwrap();
        assert_eq!(log.finish_sync(done).unwrap().zxid(), 2);
        assert_eq!(log.durable_zxid(), 2);
        assert_eq!(sync(&mut log).zxid(), 3);
        drop(log);
        let (recs, _) = collect(d.path(), 0);
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn record_larger_than_a_segment_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::None);
        let big = vec![1u8; SEGMENT_BYTES_MIN as usize];
        let err = log.append(1, 1, &big).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record of 65536 payload bytes does not fit in a log segment of 65536 bytes"
        );
        // The largest record that fits is accepted, alone in its segment.
        let max = SEGMENT_BYTES_MIN as usize - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
        log.append(1, 1, &vec![2u8; max]).unwrap();
        log.append(2, 1, b"x").unwrap();
        sync(&mut log);
        drop(log);
        let (recs, _) = collect(d.path(), 0);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].2.len(), max);
    }

    #[test]
    fn failed_sync_discards_the_batch_and_everything_after_it() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        for z in 1..=10 {
            log.append(z, 1, &payload(z, 500)).unwrap();
        }
        assert_eq!(sync(&mut log).zxid(), 10);
        // A batch that rolls into new segments, then more records behind it.
        for z in 11..=200 {
            log.append(z, 1, &payload(z, 500)).unwrap();
        }
        let job = log.begin_sync().unwrap().unwrap();
        log.append(201, 1, b"next batch").unwrap();
        let err = log
            .finish_sync(job.fail_for_test(io::Error::from_raw_os_error(libc::EIO)))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.ends_with(": sync failed: Input/output error (os error 5); records after zxid 0xa were discarded"),
            "{msg}"
        );
        assert_eq!(log.last_zxid(), 10);
        assert_eq!(log.durable_zxid(), 10);
        // The sequencer re-prepares from the durable state: the zxids are reused.
        for z in 11..=20 {
            log.append(z, 2, &payload(z, 100)).unwrap();
        }
        assert_eq!(sync(&mut log).zxid(), 20);
        drop(log);
        let (recs, tail) = collect(d.path(), 0);
        assert_eq!(recs.len(), 20);
        assert!(
            recs[10..].iter().all(|r| r.1 == 2),
            "failed records never come back"
        );
        assert_eq!(tail.last_zxid, 20);
        assert!(tail.torn.is_none());
    }

    #[test]
    fn failed_first_sync_leaves_an_empty_log() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        log.append(1, 1, b"x").unwrap();
        let job = log.begin_sync().unwrap().unwrap();
        assert!(log
            .finish_sync(job.fail_for_test(io::Error::from_raw_os_error(libc::EIO)))
            .is_err());
        drop(log);
        assert!(scan_dir(d.path()).unwrap().logs.is_empty());
        let (recs, tail) = collect(d.path(), 0);
        assert!(recs.is_empty());
        assert_eq!(tail.last_zxid, 0);
    }

    #[test]
    fn disk_full_at_roll_fails_only_that_append() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        let mut z = 0;
        // Fill the first segment.
        while log.segs.len() < 2 {
            z += 1;
            log.fail_preallocation = log.segs.len() == 1
                && log.segs[0].write_off + record_bytes(1000) > log.segs[0].io.len();
            if log.fail_preallocation {
                let err = log.append(z, 1, &payload(z, 1000)).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!(
                        "{}: preallocate log segment failed: No space left on device (os error 28)",
                        d.path().join(PREALLOC_FILE_NAME).display()
                    )
                );
                assert_eq!(log.last_zxid(), z - 1, "nothing was appended");
                log.fail_preallocation = false;
            }
            log.append(z, 1, &payload(z, 1000)).unwrap();
        }
        assert_eq!(sync(&mut log).zxid(), z);
        drop(log);
        let (recs, _) = collect(d.path(), 0);
        assert_eq!(recs.len() as i64, z);
    }

    /// Replaces the log's spare by one whose zero-fill waits until the returned
    /// sender sends (or is dropped).
    fn hold_the_spare(log: &mut Log) -> std::sync::mpsc::Sender<()> {
        if let Spare::Pending(f) = std::mem::replace(&mut log.spare, Spare::Missing) {
            let _ = f.handle.join();
        }
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (path, bytes) = (log.dir.join(PREALLOC_FILE_NAME), log.cfg.segment_bytes);
        let filling = Filling::spawn("test-fill", move || {
            let _ = wait.recv();
            preallocate(&path, bytes)
        });
        log.spare = Spare::Pending(filling.unwrap());
        go
    }

    #[test]
    fn a_late_spare_without_fallocate_is_waited_for() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        log.fail_fallocate = true;
        // A spare whose fill ends once a helper lets it, well after the wait's bound.
        let go = hold_the_spare(&mut log);
        let hold = std::time::Duration::from_millis(3 * ROLL_SPARE_WAIT_MS_MAX);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(hold);
            go.send(()).unwrap();
        });
        let began = std::time::Instant::now();
        log.append(1, 1, &payload(1, 100)).unwrap();
        assert!(
            began.elapsed() >= hold,
            "the append did not wait for the spare"
        );
        releaser.join().unwrap();
        assert_eq!(log.segs.len(), 1);
        assert!(!log.segs[0].fallback, "no fallocate: the spare itself");
        assert_eq!(sync(&mut log).zxid(), 1);
        drop(log);
        assert_eq!(seg_names(d.path()), vec![1]);
        let (recs, _) = collect(d.path(), 0);
        assert_eq!(recs.len(), 1);
    }

    #[test]
    fn a_late_spare_gives_a_fallocated_segment_until_it_is_ready() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        let go = hold_the_spare(&mut log);
        let began = std::time::Instant::now();
        log.append(1, 1, &payload(1, 100)).unwrap();
        assert!(began.elapsed() >= std::time::Duration::from_millis(ROLL_SPARE_WAIT_MS_MAX));
        assert!(log.segs[0].fallback, "the roll did not wait for the spare");
        log.append(2, 1, &payload(2, 100)).unwrap();
        assert_eq!(
            log.segs.len(),
            1,
            "no spare yet: appends stay in the fallback"
        );
        assert_eq!(sync(&mut log).zxid(), 2);
        go.send(()).unwrap();
        for _ in 0..10_000 {
            if log.spare_ready() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(log.spare_ready(), "the released spare never finished");
        log.append(3, 1, &payload(3, 100)).unwrap();
        assert_eq!(log.segs.len(), 2, "the ready spare takes over");
        assert!(!log.segs[1].fallback);
        assert!(
            matches!(log.spare, Spare::Pending(_)),
            "a new spare is being filled"
        );
        assert_eq!(sync(&mut log).zxid(), 3);
        drop(log);
        assert_eq!(seg_names(d.path()), vec![1, 3]);
        let (recs, _) = collect(d.path(), 0);
        let zxids: Vec<i64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(zxids, vec![1, 2, 3]);
        assert!(recs.iter().all(|(z, _, p)| *p == payload(*z, 100)));
    }

    #[test]
    fn reopen_continues_in_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        log.append(1, 1, b"one").unwrap();
        sync(&mut log);
        drop(log);
        let mut log = open(d.path(), SyncMode::Fdatasync);
        assert_eq!(log.last_zxid(), 1);
        log.append(2, 1, b"two").unwrap();
        sync(&mut log);
        drop(log);
        assert_eq!(scan_dir(d.path()).unwrap().logs.len(), 2);
        let (recs, _) = collect(d.path(), 0);
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn gap_between_snapshot_and_log_is_corruption() {
        let d = tempfile::tempdir().unwrap();
        let tail = read_log(d.path(), 5, |_| {}).unwrap();
        assert_eq!(tail.last_zxid, 5);
        let mut log = Log::open(d.path(), cfg(SyncMode::None), tail).unwrap();
        log.append(9, 1, b"x").unwrap();
        sync(&mut log);
        drop(log);
        let err = read_log(d.path(), 5, |_| {}).unwrap_err().to_string();
        let p = d.path().join("log.0000000000000009");
        assert_eq!(
            err,
            format!(
                "{}: corrupt at byte offset 32: zxid 0x9 skips ahead of 0x5: records are missing or out of order",
                p.display()
            )
        );
    }
    /// Appends `zxids` with `kind` and a payload of `n` bytes each, then syncs.
    fn append_synced(log: &mut Log, zxids: impl IntoIterator<Item = i64>, kind: u8, n: usize) {
        for z in zxids {
            log.append(z, kind, &payload(z * kind as i64, n)).unwrap();
        }
        sync(log);
    }

    fn zxids_and_kinds(dir: &Path) -> Vec<(i64, u8)> {
        collect(dir, 0).0.iter().map(|r| (r.0, r.1)).collect()
    }

    fn seg_names(dir: &Path) -> Vec<i64> {
        scan_dir(dir).unwrap().logs.iter().map(|l| l.0).collect()
    }

    #[test]
    fn truncate_then_append_reuses_zxids_with_new_content() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=20, 1, 100);
        log.truncate_after(12).unwrap();
        assert_eq!((log.last_zxid(), log.durable_zxid()), (12, 12));
        assert!(
            log.begin_sync().unwrap().is_none(),
            "the cut is durable already"
        );
        // Zxid 13 again, with other content: legal after a TRUNC.
        append_synced(&mut log, 13..=16, 2, 80);
        assert_eq!(
            seg_names(d.path()),
            vec![1, 13],
            "appends go to a new segment"
        );
        drop(log);
        let (recs, tail) = collect(d.path(), 0);
        let want: Vec<(i64, u8)> = (1..=12)
            .map(|z| (z, 1))
            .chain((13..=16).map(|z| (z, 2)))
            .collect();
        assert_eq!(recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), want);
        assert_eq!(recs[12].2, payload(13 * 2, 80));
        assert_eq!((tail.last_zxid, tail.torn.is_none()), (16, true));
        // The log reopens and goes on.
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 17..=18, 3, 10);
        drop(log);
        assert_eq!(collect(d.path(), 0).0.len(), 18);
    }

    #[test]
    fn crash_between_truncate_and_the_next_sync() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=20, 1, 100);
        log.truncate_after(12).unwrap();
        // New records, never synced, then the process dies.
        for z in 13..=15 {
            log.append(z, 2, &payload(z * 2, 100)).unwrap();
        }
        drop(log);
        let new_seg = d.path().join(log_file_name(13));
        let image = fs::read(&new_seg).unwrap();
        // The page cache survived (a process crash): the cut log and the new records.
        let want: Vec<(i64, u8)> = (1..=12)
            .map(|z| (z, 1))
            .chain((13..=15).map(|z| (z, 2)))
            .collect();
        assert_eq!(zxids_and_kinds(d.path()), want);
        // The machine died: none of the new records reached the disk (the segment
        // itself may or may not have): the cut log, nothing of the old tail.
        fs::write(&new_seg, vec![0u8; image.len()]).unwrap();
        let (recs, tail) = collect(d.path(), 0);
        assert_eq!(
            recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            (1..=12).map(|z| (z, 1)).collect::<Vec<_>>()
        );
        assert_eq!(tail.last_zxid, 12);
        assert!(!new_seg.exists(), "the empty last segment is removed");
        // A truncation alone, then a crash: the cut log.
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=20, 1, 100);
        // Unsynced records it keeps become durable with the cut.
        for z in 21..=25 {
            log.append(z, 1, &payload(z, 100)).unwrap();
        }
        log.truncate_after(23).unwrap();
        assert_eq!(log.durable_zxid(), 23);
        drop(log);
        assert_eq!(
            zxids_and_kinds(d.path()),
            (1..=23).map(|z| (z, 1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn truncate_across_segment_boundaries() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        // ~1 KiB records, 64 KiB segments: 62 records a segment.
        append_synced(&mut log, 1..=300, 1, 1000);
        let segs = seg_names(d.path());
        assert!(segs.len() >= 4, "{segs:?}");
        let images: Vec<(PathBuf, Vec<u8>)> = scan_dir(d.path())
            .unwrap()
            .logs
            .iter()
            .map(|(_, p)| (p.clone(), fs::read(p).unwrap()))
            .collect();
        // Inside the second segment: it is cut, every later one goes.
        let z = segs[1] + 5;
        log.truncate_after(z).unwrap();
        assert_eq!(seg_names(d.path()), segs[..2].to_vec());
        append_synced(&mut log, z + 1..=z + 3, 2, 10);
        assert_eq!(seg_names(d.path()), vec![segs[0], segs[1], z + 1]);
        drop(log);
        let want: Vec<(i64, u8)> = (1..=z)
            .map(|x| (x, 1))
            .chain((z + 1..=z + 3).map(|x| (x, 2)))
            .collect();
        assert_eq!(zxids_and_kinds(d.path()), want);
        // Reading after a point inside the dead part of the cut segment skips it.
        let (recs, _) = collect(d.path(), z + 1);
        assert_eq!(
            recs.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![z + 2, z + 3]
        );

        // What a crash in the middle of that truncation can leave (the later
        // segments unlinked newest first, the end mark not yet written) reads as a
        // prefix of the old log, never a mix.
        for (p, img) in &images {
            fs::write(p, img).unwrap();
        }
        fs::remove_file(d.path().join(log_file_name(z + 1))).unwrap();
        for gone in 1..=images.len() - 2 {
            fs::remove_file(&images[images.len() - gone].0).unwrap();
            let (recs, tail) = collect(d.path(), 0);
            let end = segs[images.len() - gone] - 1;
            assert_eq!(
                recs.iter().map(|r| r.0).collect::<Vec<_>>(),
                (1..=end).collect::<Vec<_>>()
            );
            assert_eq!(tail.last_zxid, end);
        }
    }

    #[test]
    fn truncate_to_a_segment_end_the_last_record_or_before_the_first() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=200, 1, 1000);
        let segs = seg_names(d.path());
        // To exactly the last record: nothing to drop, nothing changes.
        let before: Vec<Vec<u8>> = segs
            .iter()
            .map(|z| fs::read(d.path().join(log_file_name(*z))).unwrap())
            .collect();
        log.truncate_after(200).unwrap();
        log.truncate_after(500).unwrap();
        assert_eq!(log.last_zxid(), 200);
        let after: Vec<Vec<u8>> = segs
            .iter()
            .map(|z| fs::read(d.path().join(log_file_name(*z))).unwrap())
            .collect();
        assert!(
            before == after,
            "a truncation with nothing to drop touched the log"
        );
        // To the last record of a segment: the later ones go, no end mark needed.
        let end_of_first = segs[1] - 1;
        log.truncate_after(end_of_first).unwrap();
        assert_eq!(seg_names(d.path()), vec![1]);
        assert!(fs::read(d.path().join(log_file_name(1))).unwrap() == before[0]);
        append_synced(&mut log, end_of_first + 1..=end_of_first + 2, 2, 10);
        drop(log);
        let (recs, _) = collect(d.path(), 0);
        assert_eq!(recs.len() as i64, end_of_first + 2);
        // To before the first record: the log is empty; history restarts after 0.
        let mut log = open(d.path(), SyncMode::Fdatasync);
        log.truncate_after(0).unwrap();
        assert!(seg_names(d.path()).is_empty());
        assert_eq!((log.last_zxid(), log.durable_zxid()), (0, 0));
        append_synced(&mut log, 1..=3, 4, 10);
        drop(log);
        assert_eq!(zxids_and_kinds(d.path()), vec![(1, 4), (2, 4), (3, 4)]);
    }

    #[test]
    fn repeated_truncations_cut_before_an_earlier_end_mark() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Msync);
        append_synced(&mut log, 1..=20, 1, 100);
        log.truncate_after(15).unwrap();
        append_synced(&mut log, 16..=20, 2, 100);
        log.truncate_after(17).unwrap();
        append_synced(&mut log, 18..=19, 3, 100);
        // Below the first cut: the end mark goes before the old one.
        log.truncate_after(12).unwrap();
        assert_eq!(seg_names(d.path()), vec![1]);
        append_synced(&mut log, 13..=14, 4, 100);
        drop(log);
        let want: Vec<(i64, u8)> = (1..=12).map(|z| (z, 1)).chain([(13, 4), (14, 4)]).collect();
        assert_eq!(zxids_and_kinds(d.path()), want);
    }

    #[test]
    fn a_damaged_end_mark_is_never_read_past() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=10, 1, 100);
        log.truncate_after(6).unwrap();
        append_synced(&mut log, 7..=8, 2, 100);
        drop(log);
        let seg = d.path().join(log_file_name(1));
        let at = SEGMENT_HEADER_BYTES + 6 * record_bytes(100);
        let image = fs::read(&seg).unwrap();
        assert!(is_end_mark(&image[at..at + RECORD_HEADER_BYTES]));
        // A flipped bit: no longer a mark, and the dead records after it are found.
        let mut bad = image.clone();
        bad[at + 8] ^= 1;
        fs::write(&seg, &bad).unwrap();
        let err = read_log(d.path(), 0, |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("record checksum mismatch (a valid record with zxid 0x8 follows"),
            "{err}"
        );
        // A whole mark naming another record than the one before it.
        let mut bad = image.clone();
        bad[at..at + RECORD_HEADER_BYTES].copy_from_slice(&encode_end_mark(5));
        fs::write(&seg, &bad).unwrap();
        let err = read_log(d.path(), 0, |_| {}).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: corrupt at byte offset {at}: end mark after zxid 0x5 follows 6 record(s) ending at 0x6",
                seg.display()
            )
        );
    }

    #[test]
    fn reset_makes_every_segment_obsolete() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=300, 1, 1000);
        for z in 301..=305 {
            log.append(z, 1, b"unsynced").unwrap();
        }
        // Back into the old history (a SNAP at 150 from another history)...
        log.reset(150).unwrap();
        assert!(seg_names(d.path()).is_empty());
        assert_eq!((log.last_zxid(), log.durable_zxid()), (150, 150));
        append_synced(&mut log, 151..=153, 2, 10);
        drop(log);
        let (recs, tail) = collect(d.path(), 150);
        assert_eq!(
            recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            vec![(151, 2), (152, 2), (153, 2)]
        );
        assert_eq!(tail.last_zxid, 153);
        // ...or ahead of it (a learner far behind), into a new epoch.
        let mut log = open_after(d.path(), 150);
        log.reset(0x2_0000_0004).unwrap();
        assert!(seg_names(d.path()).is_empty());
        append_synced(&mut log, [0x2_0000_0005, 0x2_0000_0006], 3, 10);
        drop(log);
        let (recs, _) = collect(d.path(), 0x2_0000_0004);
        assert_eq!(
            recs.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![0x2_0000_0005, 0x2_0000_0006]
        );
    }

    #[test]
    fn a_crash_during_reset_never_replays_the_old_history_after_the_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=300, 1, 1000);
        // reset(150) first cuts what follows 150, durably; a crash while it then
        // unlinks the rest (any subset left) reads nothing after 150.
        log.cut_disk_after(150).unwrap();
        drop(log);
        let left: Vec<(PathBuf, Vec<u8>)> = scan_dir(d.path())
            .unwrap()
            .logs
            .iter()
            .map(|(_, p)| (p.clone(), fs::read(p).unwrap()))
            .collect();
        assert!(left.len() >= 3, "{}", left.len());
        for gone in 1u32..(1 << left.len()) {
            for (i, (p, img)) in left.iter().enumerate() {
                if gone & (1 << i) == 0 {
                    fs::write(p, img).unwrap();
                } else {
                    let _ = fs::remove_file(p);
                }
            }
            let (recs, tail) = collect(d.path(), 150);
            assert!(recs.is_empty(), "removed {gone:b}: {recs:?}");
            assert_eq!(tail.last_zxid, 150);
        }
    }

    fn open_after(dir: &Path, after: i64) -> Log {
        let tail = read_log(dir, after, |_| {}).unwrap();
        Log::open(dir, cfg(SyncMode::Fdatasync), tail).unwrap()
    }

    #[test]
    #[should_panic(expected = "with a sync job out: finish_sync it first")]
    fn truncate_with_a_sync_job_out_is_a_caller_bug() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=5, 1, 10);
        log.append(6, 1, b"x").unwrap();
        let _job = log.begin_sync().unwrap().unwrap();
        let _ = log.truncate_after(3);
    }

    #[test]
    fn a_read_only_read_stops_at_its_bound_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut log = open(d.path(), SyncMode::Fdatasync);
        append_synced(&mut log, 1..=10, 1, 100);
        log.append(11, 1, &payload(11, 100)).unwrap();
        drop(log);
        // A torn last record and a leftover spare segment.
        let seg = d.path().join(log_file_name(1));
        let at = SEGMENT_HEADER_BYTES + 10 * record_bytes(100) + RECORD_HEADER_BYTES + 50;
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0u8; 8], at as u64).unwrap();
        fs::write(d.path().join(PREALLOC_FILE_NAME), b"spare").unwrap();
        let image = fs::read(&seg).unwrap();
        let read = |after, upto| {
            let mut r = LogReader::open_read_only(d.path(), after, upto).unwrap();
            let mut z = Vec::new();
            while let Some(rec) = r.next_record().unwrap() {
                z.push(rec.zxid);
            }
            (z, r.finish_read_only().unwrap())
        };
        let (z, end) = read(3, 7);
        assert_eq!(z, vec![4, 5, 6, 7]);
        assert_eq!(
            end,
            ReadEnd {
                last_zxid: 7,
                continues: false
            }
        );
        let (z, end) = read(0, 12);
        assert_eq!(z.len(), 10, "the torn record ends the read");
        assert_eq!(
            end,
            ReadEnd {
                last_zxid: 10,
                continues: false
            }
        );
        // Past a bound inside the log: it goes on.
        let log_dir2 = tempfile::tempdir().unwrap();
        let mut log = open(log_dir2.path(), SyncMode::None);
        append_synced(&mut log, [1, 2, 0x2_0000_0001], 1, 10);
        let mut r = LogReader::open_read_only(log_dir2.path(), 0, 0x1_0000_0000).unwrap();
        while r.next_record().unwrap().is_some() {}
        assert_eq!(
            r.finish_read_only().unwrap(),
            ReadEnd {
                last_zxid: 2,
                continues: true
            }
        );
        drop(log);
        assert!(
            fs::read(&seg).unwrap() == image,
            "a read-only read changed the segment"
        );
        assert!(d.path().join(PREALLOC_FILE_NAME).exists());
        // A missing dir reads as an empty log and is not created.
        let gone = d.path().join("nope");
        let r = LogReader::open_read_only(&gone, 0, 5).unwrap();
        assert_eq!(
            r.finish_read_only().unwrap(),
            ReadEnd {
                last_zxid: 0,
                continues: false
            }
        );
        assert!(!gone.exists());
    }
}
