//! Snapshots: checksummed files holding an opaque body consistent as of one zxid,
//! when to take one, and retention.
//!
//! [`write_snapshot`] runs on a background (blocking) thread: the caller streams a
//! published tree version into the `Write` it is given while the sequencer keeps
//! writing; the body goes to `snapshot.<zxid>.tmp`, is checksummed, fsynced and
//! renamed into place, so a crash leaves either the whole snapshot or none. The
//! writing thread runs at idle CPU and I/O priority and writes with O_DIRECT in
//! 1 MiB pieces (buffered, with trickled writeback, where the file system refuses
//! O_DIRECT), so a snapshot takes only CPU time the cores leave over and never puts
//! a burst of dirty pages in front of the log's fdatasync (PERF.md).
//! [`newest_valid`] (start-up) verifies snapshots newest first and returns a
//! streaming reader of the first that verifies, with the corrupt newer ones listed.
//! [`purge`] (background thread, `autopurge.purgeInterval`) keeps the newest
//! `autopurge.snapRetainCount` valid snapshots and the log segments they need; it
//! reads only snapshots not already known valid.
//! [`SnapshotTrigger`] lives on the sequencer: it counts appended txns and bytes
//! and says when to start a snapshot (snapCount / snapSizeLimitInKb, randomised).
//!
//! Format (little-endian): header of 32 bytes (magic `CORRALSN`, version u32, 4
//! zero bytes, zxid i64, 4 zero bytes, crc32c of bytes 0..28), the body, then a
//! footer of 16 bytes (body length u64, crc32c of the body u32, crc32c of footer
//! bytes 0..12).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::trickle::Trickle;
use super::{list_dir, remove_if_exists, scan_dir, snapshot_file_name, sync_dir, StorageError};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CORRALSN";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
pub const SNAPSHOT_HEADER_BYTES: u64 = 32;
pub const SNAPSHOT_FOOTER_BYTES: u64 = 16;
const IO_BUFFER_BYTES: usize = 1 << 20;

/// A snapshot file that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub zxid: i64,
    pub body_bytes: u64,
}

/// A snapshot that failed verification (reported, never silently skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptSnapshot {
    pub path: PathBuf,
    /// The zxid its name claims.
    pub zxid: i64,
    pub offset: u64,
    pub detail: String,
}

impl std::fmt::Display for CorruptSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: corrupt at byte offset {}: {}",
            self.path.display(),
            self.offset,
            self.detail
        )
    }
}

/// The body of a verified snapshot: streamed ([`Read`]), or mapped whole
/// ([`SnapshotBody::mapped`]); never copied into memory by this module.
pub struct SnapshotBody {
    inner: io::Take<BufReader<File>>,
    read_bytes: u64,
    body_bytes: u64,
}

impl SnapshotBody {
    /// File offset of the next body byte, for error messages.
    pub fn position(&self) -> u64 {
        SNAPSHOT_HEADER_BYTES + self.read_bytes
    }

    /// The body bytes not streamed yet, mapped read-only (no copy: the page cache's
    /// pages are read in place). Snapshot files are never written after they land,
    /// and a purge only unlinks them, which leaves a mapping intact. Reading through
    /// the mapping does not advance the stream.
    pub fn mapped(&self) -> io::Result<MappedBody> {
        let file = self.inner.get_ref().get_ref();
        let start = SNAPSHOT_HEADER_BYTES + self.read_bytes;
        let end = SNAPSHOT_HEADER_BYTES + self.body_bytes;
        MappedBody::map(file, start, end)
    }
}

/// What a snapshot loader is handed: the body as a stream, or mapped whole.
pub trait SnapshotRead: Read {
    /// See [`SnapshotBody::mapped`].
    fn mapped(&self) -> io::Result<MappedBody>;
}

impl SnapshotRead for SnapshotBody {
    fn mapped(&self) -> io::Result<MappedBody> {
        SnapshotBody::mapped(self)
    }
}

/// Bytes `start..end` of a snapshot file, mapped read-only.
pub struct MappedBody {
    /// None for an empty range (a zero-length mapping is not allowed).
    map: Option<memmap2::Mmap>,
}

impl MappedBody {
    fn map(file: &File, start: u64, end: u64) -> io::Result<MappedBody> {
        if end <= start {
            return Ok(MappedBody { map: None });
        }
        let len = usize::try_from(end - start)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "snapshot too large to map"))?;
        // SAFETY: the file is a snapshot that landed (renamed into place after its
        // fsync); nothing writes or truncates it afterwards, so the mapped bytes
        // cannot change under the reader.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(len)
                .map(file)?
        };
        // One pass front to back: let the kernel read ahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(MappedBody { map: Some(map) })
    }
}

impl std::ops::Deref for MappedBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }
}

impl Read for SnapshotBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read_bytes += n as u64;
        Ok(n)
    }
}

/// The newest snapshot that verified, ready to stream.
pub struct ValidSnapshot {
    pub info: SnapshotInfo,
    pub body: SnapshotBody,
}

struct CrcWriter<'a, W: Write> {
    inner: &'a mut W,
    crc: u32,
    bytes: u64,
}

impl<W: Write> Write for CrcWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writeback is started every this many bytes while a snapshot is written, and
/// the chunk before is waited for, so the final fsync does not flush a whole
/// snapshot at once (a burst that would stall the log's syncs on the same disk).
pub const SNAPSHOT_WRITEBACK_CHUNK_BYTES: u64 = 8 << 20;

/// Bytes per O_DIRECT write of a snapshot. One write in flight at a time, so the
/// log's small writes never queue behind more than this.
pub const SNAPSHOT_DIRECT_WRITE_BYTES: usize = 1 << 20;
const DIRECT_ALIGN: usize = 4096;

/// The snapshot file opened with O_DIRECT: bytes gather in an aligned buffer and go
/// to the device a full buffer at a time, bypassing the page cache (no dirty pages,
/// no writeback burst at the final fsync, no cache pollution).
struct Direct {
    file: File,
    /// `SNAPSHOT_DIRECT_WRITE_BYTES + DIRECT_ALIGN` bytes; the aligned window starts
    /// at `start`.
    mem: Vec<u8>,
    start: usize,
    len: usize,
    off: u64,
}

impl Direct {
    fn new(file: File) -> Direct {
        let mem = vec![0u8; SNAPSHOT_DIRECT_WRITE_BYTES + DIRECT_ALIGN];
        let start = mem.as_ptr().align_offset(DIRECT_ALIGN);
        Direct {
            file,
            mem,
            start,
            len: 0,
            off: 0,
        }
    }

    fn write_out(&mut self, bytes: usize) -> io::Result<()> {
        let s = self.start;
        self.file.write_all_at(&self.mem[s..s + bytes], self.off)
    }

    /// Writes the partial last block (zero-padded to the alignment, then the file
    /// is cut back to its real length) and returns the file.
    fn finish(mut self) -> io::Result<File> {
        let end = self.off + self.len as u64;
        if self.len > 0 {
            let padded = self.len.next_multiple_of(DIRECT_ALIGN);
            let s = self.start;
            self.mem[s + self.len..s + padded].fill(0);
            self.write_out(padded)?;
            self.file.set_len(end)?;
        }
        Ok(self.file)
    }
}

impl Write for Direct {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(SNAPSHOT_DIRECT_WRITE_BYTES - self.len);
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&buf[..n]);
        self.len += n;
        if self.len == SNAPSHOT_DIRECT_WRITE_BYTES {
            self.write_out(SNAPSHOT_DIRECT_WRITE_BYTES)?;
            self.off += SNAPSHOT_DIRECT_WRITE_BYTES as u64;
            self.len = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Creates (or truncates) `path` for writing with extra open `flags`.
fn open_new(path: &Path, flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(flags)
        .open(path)
}

/// Where a snapshot's bytes go: O_DIRECT, or buffered with trickled writeback.
enum SnapshotFile {
    Direct(Direct),
    Buffered(BufWriter<Trickle>),
}

impl SnapshotFile {
    /// Creates `path`, with O_DIRECT when the file system supports it.
    fn create(path: &Path) -> io::Result<SnapshotFile> {
        match open_new(path, libc::O_DIRECT) {
            Ok(f) => Ok(SnapshotFile::Direct(Direct::new(f))),
            // Some file systems (FUSE, older tmpfs) refuse O_DIRECT with EINVAL.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Self::create_buffered(path),
            Err(e) => Err(e),
        }
    }

    fn create_buffered(path: &Path) -> io::Result<SnapshotFile> {
        let trickle = Trickle::new(open_new(path, 0)?, SNAPSHOT_WRITEBACK_CHUNK_BYTES);
        Ok(SnapshotFile::Buffered(BufWriter::with_capacity(
            IO_BUFFER_BYTES,
            trickle,
        )))
    }

    fn finish(self) -> io::Result<File> {
        match self {
            SnapshotFile::Direct(d) => d.finish(),
            SnapshotFile::Buffered(b) => {
                Ok(b.into_inner().map_err(|e| e.into_error())?.into_file())
            }
        }
    }
}

impl Write for SnapshotFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SnapshotFile::Direct(d) => d.write(buf),
            SnapshotFile::Buffered(b) => b.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SnapshotFile::Direct(d) => d.flush(),
            SnapshotFile::Buffered(b) => b.flush(),
        }
    }
}

/// Puts the calling thread at idle CPU priority (SCHED_IDLE: it runs only when a
/// core has nothing else to run) and idle I/O priority (the block scheduler serves
/// its requests after everyone else's). For threads that must never slow the write
/// path: snapshot writing and purging. Failures are logged and otherwise ignored.
/// An unprivileged thread cannot raise its priority again, so call this only on a
/// thread that ends with the background work.
pub fn lower_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on the calling thread (pid 0 = self).
    let (cpu, io) = unsafe {
        (
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param),
            // ioprio_set(IOPRIO_WHO_PROCESS, self, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0))
            libc::syscall(libc::SYS_ioprio_set, 1, 0, 3 << 13),
        )
    };
    if cpu != 0 || io != 0 {
        tracing::warn!(
            "cannot lower the background thread's priority: {}",
            io::Error::last_os_error()
        );
    }
}

fn header(zxid: i64) -> [u8; SNAPSHOT_HEADER_BYTES as usize] {
    let mut h = [0u8; SNAPSHOT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&zxid.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn footer(body_bytes: u64, body_crc: u32) -> [u8; SNAPSHOT_FOOTER_BYTES as usize] {
    let mut f = [0u8; SNAPSHOT_FOOTER_BYTES as usize];
    f[0..8].copy_from_slice(&body_bytes.to_le_bytes());
    f[8..12].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32c::crc32c(&f[0..12]);
    f[12..16].copy_from_slice(&crc.to_le_bytes());
    f
}

/// Writes the snapshot of `zxid` whose body `body` streams; blocking, for a
/// background thread. Temp file → checksum footer → fsync → rename → dir fsync.
pub fn write_snapshot(
    dir: &Path,
    zxid: i64,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<SnapshotInfo, StorageError> {
    write_snapshot_via(dir, zxid, body, SnapshotFile::create)
}

/// [`write_snapshot`] with the way the file is opened as a parameter (tests use
/// it to drive the buffered fallback on a file system that has O_DIRECT).
fn write_snapshot_via(
    dir: &Path,
    zxid: i64,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    create: fn(&Path) -> io::Result<SnapshotFile>,
) -> Result<SnapshotInfo, StorageError> {
    let path = dir.join(snapshot_file_name(zxid));
    let tmp = dir.join(format!("{}.tmp", snapshot_file_name(zxid)));
    let run = || -> io::Result<u64> {
        let mut w = create(&tmp)?;
        w.write_all(&header(zxid))?;
        let mut cw = CrcWriter {
            inner: &mut w,
            crc: 0,
            bytes: 0,
        };
        body(&mut cw)?;
        let (crc, bytes) = (cw.crc, cw.bytes);
        w.write_all(&footer(bytes, crc))?;
        let file = w.finish()?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(bytes)
    };
    match run() {
        Ok(body_bytes) => {
            sync_dir(dir)?;
            Ok(SnapshotInfo {
                path,
                zxid,
                body_bytes,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(StorageError::io("write snapshot", &path, e))
        }
    }
}

enum Verdict {
    Valid(SnapshotInfo, File),
    Corrupt(CorruptSnapshot),
}

/// A snapshot whose header and footer check out; its body is not checked yet.
struct Framed {
    info: SnapshotInfo,
    file: File,
    /// The body checksum the footer holds.
    body_crc: u32,
}

enum FrameVerdict {
    Framed(Framed),
    Corrupt(CorruptSnapshot),
}

/// Checks header, footer and body checksum of one snapshot file. A foreign file
/// (bad magic or version) is an error; damage is a `Corrupt` verdict.
fn verify(path: &Path, name_zxid: i64) -> Result<Verdict, StorageError> {
    match check_frame(path, name_zxid)? {
        FrameVerdict::Corrupt(c) => Ok(Verdict::Corrupt(c)),
        FrameVerdict::Framed(f) => Ok(match body_damage(&f)? {
            Some(c) => Verdict::Corrupt(c),
            None => Verdict::Valid(f.info, f.file),
        }),
    }
}

/// The body checksum of a framed snapshot, computed over a mapping (no copy into a
/// buffer; the pages it faults in are the ones loading the body reads): None if it
/// matches the footer's.
fn body_damage(f: &Framed) -> Result<Option<CorruptSnapshot>, StorageError> {
    let path = &f.info.path;
    let end = SNAPSHOT_HEADER_BYTES + f.info.body_bytes;
    let body = MappedBody::map(&f.file, SNAPSHOT_HEADER_BYTES, end)
        .map_err(|e| StorageError::io("map snapshot", path, e))?;
    if crc32c::crc32c(&body) == f.body_crc {
        return Ok(None);
    }
    Ok(Some(CorruptSnapshot {
        path: path.clone(),
        zxid: f.info.zxid,
        offset: SNAPSHOT_HEADER_BYTES,
        detail: format!("body checksum mismatch over bytes {SNAPSHOT_HEADER_BYTES}..{end}"),
    }))
}

/// Checks header and footer of one snapshot file (not the body). A foreign file
/// (bad magic or version) is an error; damage is a `Corrupt` verdict.
fn check_frame(path: &Path, name_zxid: i64) -> Result<FrameVerdict, StorageError> {
    let bad = |offset: u64, detail: String| {
        Ok(FrameVerdict::Corrupt(CorruptSnapshot {
            path: path.to_path_buf(),
            zxid: name_zxid,
            offset,
            detail,
        }))
    };
    let file = File::open(path).map_err(|e| StorageError::io("open snapshot", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("stat snapshot", path, e))?
        .len();
    let min = SNAPSHOT_HEADER_BYTES + SNAPSHOT_FOOTER_BYTES;
    if len < min {
        return bad(
            len,
            format!("file of {len} bytes is shorter than header and footer ({min} bytes)"),
        );
    }
    let mut h = [0u8; SNAPSHOT_HEADER_BYTES as usize];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| StorageError::io("read snapshot", path, e))?;
    if h[0..8] != SNAPSHOT_MAGIC {
        return Err(StorageError::WrongFormat {
            path: path.to_path_buf(),
            what: "snapshot",
            found: h[0..8].escape_ascii().to_string(),
        });
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "snapshot",
            found: version,
            expected: SNAPSHOT_FORMAT_VERSION,
        });
    }
    if u32::from_le_bytes(h[28..32].try_into().expect("4 bytes")) != crc32c::crc32c(&h[0..28]) {
        return bad(0, "snapshot header checksum mismatch".into());
    }
    let zxid = i64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if zxid != name_zxid {
        return bad(
            16,
            format!("header says zxid {zxid:#x} but the file name says {name_zxid:#x}"),
        );
    }
    let foot_at = len - SNAPSHOT_FOOTER_BYTES;
    let mut f = [0u8; SNAPSHOT_FOOTER_BYTES as usize];
    file.read_exact_at(&mut f, foot_at)
        .map_err(|e| StorageError::io("read snapshot", path, e))?;
    if u32::from_le_bytes(f[12..16].try_into().expect("4 bytes")) != crc32c::crc32c(&f[0..12]) {
        return bad(
            foot_at,
            "snapshot footer checksum mismatch (truncated or damaged file)".into(),
        );
    }
    let body_bytes = u64::from_le_bytes(f[0..8].try_into().expect("8 bytes"));
    if body_bytes != foot_at - SNAPSHOT_HEADER_BYTES {
        return bad(
            foot_at,
            format!(
                "footer says {body_bytes} body bytes but the file holds {}",
                foot_at - SNAPSHOT_HEADER_BYTES
            ),
        );
    }
    Ok(FrameVerdict::Framed(Framed {
        info: SnapshotInfo {
            path: path.to_path_buf(),
            zxid,
            body_bytes,
        },
        file,
        body_crc: u32::from_le_bytes(f[8..12].try_into().expect("4 bytes")),
    }))
}

/// A streaming reader of a checked snapshot's body.
fn body_reader(info: &SnapshotInfo, file: File) -> Result<SnapshotBody, StorageError> {
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, file);
    reader
        .seek_relative(SNAPSHOT_HEADER_BYTES as i64)
        .map_err(|e| StorageError::io("read snapshot", &info.path, e))?;
    Ok(SnapshotBody {
        inner: reader.take(info.body_bytes),
        read_bytes: 0,
        body_bytes: info.body_bytes,
    })
}

/// Start-up, with the body checksum checked while the body loads: removes leftover
/// temp files, then, newest first, hands each snapshot whose header and footer
/// check out to `load` while another thread computes its body checksum (on a cold
/// page cache the two share one read of the file from disk, instead of a whole
/// read for the checksum first). A snapshot whose checksum fails is reported and
/// its load result dropped, and the next older one is tried, so `load` may run
/// more than once and on damaged bytes: it must not trust them (the tree loader
/// does not). Returns what `load` made of the newest snapshot that verified, and
/// every newer one that did not; a verified snapshot that `load` rejects is an
/// error, as in [`super::recover`].
#[allow(clippy::type_complexity)]
pub fn load_newest_valid<T: Send>(
    dir: &Path,
    mut load: impl FnMut(&SnapshotInfo, &mut dyn SnapshotRead) -> io::Result<T>,
) -> Result<(Option<(SnapshotInfo, T)>, Vec<CorruptSnapshot>), StorageError> {
    let listing = scan_dir(dir)?;
    for (_, t) in &listing.snapshot_temps {
        fs::remove_file(t).map_err(|e| StorageError::io("remove snapshot temp file", t, e))?;
    }
    let mut corrupt = Vec::new();
    for (z, path) in listing.snapshots.iter().rev() {
        let f = match check_frame(path, *z) {
            Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => return Err(e),
            Ok(FrameVerdict::Corrupt(c)) => {
                tracing::error!("{c}; falling back to an older snapshot");
                corrupt.push(c);
                continue;
            }
            Ok(FrameVerdict::Framed(f)) => f,
        };
        let file = f
            .file
            .try_clone()
            .map_err(|e| StorageError::io("open snapshot", path, e))?;
        let mut body = body_reader(&f.info, file)?;
        let (damage, loaded) = std::thread::scope(|s| {
            let check = std::thread::Builder::new()
                .name("corral-snapcrc".into())
                .spawn_scoped(s, || body_damage(&f));
            let loaded = load(&f.info, &mut body).map_err(|e| (body.position(), e));
            let damage = match check {
                Ok(h) => h.join().expect("the checksum thread does not panic"),
                // No thread to spare: check after loading.
                Err(_) => body_damage(&f),
            };
            (damage, loaded)
        });
        if let Some(c) = damage? {
            tracing::error!("{c}; falling back to an older snapshot");
            corrupt.push(c);
            continue;
        }
        return match loaded {
            Ok(t) => Ok((Some((f.info, t)), corrupt)),
            Err((offset, e)) => Err(StorageError::Corrupt {
                path: f.info.path.clone(),
                offset,
                detail: format!("snapshot body does not decode: {e}"),
            }),
        };
    }
    Ok((None, corrupt))
}

/// Start-up: removes leftover temp files, then returns the newest snapshot whose
/// checksums verify (with its body reader) and every newer one that did not, each
/// also logged. A file of a foreign format is an error naming it.
pub fn newest_valid(
    dir: &Path,
) -> Result<(Option<ValidSnapshot>, Vec<CorruptSnapshot>), StorageError> {
    let listing = scan_dir(dir)?;
    for (_, t) in &listing.snapshot_temps {
        fs::remove_file(t).map_err(|e| StorageError::io("remove snapshot temp file", t, e))?;
    }
    newest_valid_at_most(dir, i64::MAX)
}

/// The newest snapshot with a zxid ≤ `zxid` that verifies, and every newer one
/// ≤ `zxid` that did not (each logged). Changes no file (a missing dir has none):
/// usable while the server runs, to rebuild an older state.
pub fn newest_valid_at_most(
    dir: &Path,
    zxid: i64,
) -> Result<(Option<ValidSnapshot>, Vec<CorruptSnapshot>), StorageError> {
    let listing = list_dir(dir)?;
    let mut corrupt = Vec::new();
    for (z, path) in listing.snapshots.iter().rev().filter(|(z, _)| *z <= zxid) {
        match verify_if_exists(path, *z)? {
            Some(Verdict::Valid(info, file)) => {
                let body = body_reader(&info, file)?;
                return Ok((Some(ValidSnapshot { info, body }), corrupt));
            }
            Some(Verdict::Corrupt(c)) => {
                tracing::error!("{c}; falling back to an older snapshot");
                corrupt.push(c);
            }
            None => {}
        }
    }
    Ok((None, corrupt))
}

/// [`verify`], with a file removed meanwhile (by a purge, or
/// [`remove_snapshots_after`]) as None.
fn verify_if_exists(path: &Path, name_zxid: i64) -> Result<Option<Verdict>, StorageError> {
    match verify(path, name_zxid) {
        Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// Removes every snapshot (and snapshot temp file) with a zxid after `zxid`,
/// newest first, then fsyncs the dir; returns what it removed. After a SNAP sync
/// has replaced the state by a snapshot at `zxid` (written, then
/// [`super::Log::reset`]), newer snapshots hold another history and must never be
/// loaded. Removing a temp file makes a snapshot still being written of that
/// history fail instead of landing. Blocking.
pub fn remove_snapshots_after(dir: &Path, zxid: i64) -> Result<Vec<PathBuf>, StorageError> {
    let listing = list_dir(dir)?;
    let mut newer: Vec<&(i64, PathBuf)> = listing
        .snapshots
        .iter()
        .chain(&listing.snapshot_temps)
        .filter(|(z, _)| *z > zxid)
        .collect();
    newer.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut removed = Vec::new();
    for (_, path) in newer {
        if remove_if_exists(path, "remove snapshot of another history")? {
            removed.push(path.clone());
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// What [`purge`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    pub removed_snapshots: Vec<PathBuf>,
    pub removed_logs: Vec<PathBuf>,
}

/// Keeps the newest `retain_count` snapshots that verify (and any corrupt ones
/// newer than the oldest of them, as evidence), removes older snapshots and the
/// log segments whose records all precede the oldest retained snapshot. The last
/// segment is never removed. `known_valid` holds the zxids of snapshots already
/// known to verify (written by this process, or checked before): those are not
/// read again; ones that verify now are added, removed ones dropped. Gaps in the
/// log's names (after a truncation or reset) are fine: a segment goes only when
/// the next one starts at or before the oldest kept snapshot's zxid + 1, so every
/// record after that snapshot stays. Files removed meanwhile by someone else are
/// skipped. Blocking; for a background thread.
pub fn purge(
    snap_dir: &Path,
    log_dir: &Path,
    retain_count: usize,
    known_valid: &mut BTreeSet<i64>,
) -> Result<PurgeReport, StorageError> {
    if retain_count == 0 {
        return Err(StorageError::Config(
            "autopurge.snapRetainCount must be at least 1".into(),
        ));
    }
    let listing = scan_dir(snap_dir)?;
    let logs = if log_dir == snap_dir {
        listing.logs.clone()
    } else {
        scan_dir(log_dir)?.logs
    };
    let mut valid = 0usize;
    let mut oldest_kept = None;
    for (zxid, path) in listing.snapshots.iter().rev() {
        let ok = known_valid.contains(zxid)
            || matches!(verify_if_exists(path, *zxid)?, Some(Verdict::Valid(..)));
        if ok {
            known_valid.insert(*zxid);
            valid += 1;
            if valid == retain_count {
                oldest_kept = Some(*zxid);
                break;
            }
        }
    }
    let mut report = PurgeReport::default();
    let Some(oldest) = oldest_kept else {
        return Ok(report);
    };
    for (zxid, path) in &listing.snapshots {
        if *zxid < oldest {
            known_valid.remove(zxid);
            if remove_if_exists(path, "remove old snapshot")? {
                report.removed_snapshots.push(path.clone());
            }
        }
    }
    for pair in logs.windows(2) {
        let (_, path) = &pair[0];
        let next_first = pair[1].0;
        if next_first <= oldest.saturating_add(1)
            && remove_if_exists(path, "remove old log segment")?
        {
            report.removed_logs.push(path.clone());
        }
    }
    if !report.removed_snapshots.is_empty() {
        sync_dir(snap_dir)?;
    }
    if !report.removed_logs.is_empty() {
        sync_dir(log_dir)?;
    }
    Ok(report)
}

/// Decides when to snapshot, as the reference does: after more than
/// `snap_count/2 + r1` txns or `snap_size_bytes/2 + r2` logged bytes, where r1, r2
/// are random below the halves (so ensemble members do not snapshot together).
/// Randomness is an input. Owned by the sequencer core.
#[derive(Debug, Clone)]
pub struct SnapshotTrigger {
    snap_count: u64,
    snap_size_bytes: u64,
    txns_threshold: u64,
    bytes_threshold: u64,
    txns: u64,
    bytes: u64,
}

impl SnapshotTrigger {
    /// `snap_count` ≥ 2 (zoo.cfg `snapCount`, default 100000); `snap_size_bytes`
    /// 0 disables the size rule (zoo.cfg `snapSizeLimitInKb` × 1024).
    pub fn new(snap_count: u64, snap_size_bytes: u64, random: u64) -> Self {
        let mut t = SnapshotTrigger {
            snap_count: snap_count.max(2),
            snap_size_bytes,
            txns_threshold: 0,
            bytes_threshold: 0,
            txns: 0,
            bytes: 0,
        };
        t.reset(random);
        t
    }

    /// Counts one appended txn of `bytes` log bytes; true: start a snapshot now
    /// (then call `reset`).
    pub fn record(&mut self, bytes: u64) -> bool {
        self.txns += 1;
        self.bytes += bytes;
        self.txns > self.txns_threshold
            || (self.snap_size_bytes > 0 && self.bytes > self.bytes_threshold)
    }

    /// Starts counting afresh after a snapshot was started.
    pub fn reset(&mut self, random: u64) {
        let half = self.snap_count / 2;
        self.txns_threshold = half + random % half;
        let half_bytes = (self.snap_size_bytes / 2).max(1);
        self.bytes_threshold = half_bytes + (random.rotate_left(32) % half_bytes);
        self.txns = 0;
        self.bytes = 0;
    }
}

/// Verifies nothing; lists only. Used by tests and tools to see what is on disk.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    Ok(scan_dir(dir)?.snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect()
    }

    fn read_body(v: ValidSnapshot) -> Vec<u8> {
        let mut b = v.body;
        let mut out = Vec::new();
        b.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn write_then_read_newest() {
        let d = tempfile::tempdir().unwrap();
        assert!(newest_valid(d.path()).unwrap().0.is_none());
        write_snapshot(d.path(), 5, |w| w.write_all(&body_of(1000, 3))).unwrap();
        let info = write_snapshot(d.path(), 9, |w| w.write_all(&body_of(3_000_000, 7))).unwrap();
        assert_eq!(info.body_bytes, 3_000_000);
        let (v, corrupt) = newest_valid(d.path()).unwrap();
        assert!(corrupt.is_empty());
        let v = v.unwrap();
        assert_eq!(v.info.zxid, 9);
        assert_eq!(read_body(v), body_of(3_000_000, 7));
    }

    /// The overlapped loader: the newest snapshot's load result when its checksum
    /// holds; a damaged body's result dropped and the next older one loaded; a
    /// damaged frame never loaded; a verified body the loader rejects an error.
    #[test]
    fn load_newest_valid_checks_while_loading_and_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let load_all = |dir: &Path| {
            let mut seen = Vec::new();
            let r = load_newest_valid(dir, |info, body| {
                seen.push(info.zxid);
                let mapped = body.mapped()?.to_vec();
                let mut streamed = Vec::new();
                body.read_to_end(&mut streamed)?;
                assert_eq!(mapped, streamed);
                Ok(streamed)
            });
            (r, seen)
        };
        let (r, seen) = load_all(d.path());
        assert!(r.unwrap().0.is_none() && seen.is_empty());
        write_snapshot(d.path(), 5, |w| w.write_all(&body_of(1000, 3))).unwrap();
        write_snapshot(d.path(), 7, |w| w.write_all(&body_of(2_000_000, 5))).unwrap();
        let newest = write_snapshot(d.path(), 9, |w| w.write_all(&body_of(3000, 7))).unwrap();
        let (r, seen) = load_all(d.path());
        let (found, corrupt) = r.unwrap();
        let (info, body) = found.unwrap();
        assert_eq!((info.zxid, body, seen), (9, body_of(3000, 7), vec![9]));
        assert!(corrupt.is_empty());
        // A flipped body byte in 9: loaded, then dropped for 7.
        let mut bytes = fs::read(&newest.path).unwrap();
        bytes[SNAPSHOT_HEADER_BYTES as usize + 10] ^= 1;
        fs::write(&newest.path, &bytes).unwrap();
        let (r, seen) = load_all(d.path());
        let (found, corrupt) = r.unwrap();
        let (info, body) = found.unwrap();
        assert_eq!(
            (info.zxid, body, seen),
            (7, body_of(2_000_000, 5), vec![9, 7])
        );
        assert_eq!(corrupt.len(), 1);
        assert!(
            corrupt[0].detail.contains("body checksum"),
            "{}",
            corrupt[0]
        );
        // A torn 9 (footer gone): never handed to the loader.
        fs::write(&newest.path, &bytes[..bytes.len() - 3]).unwrap();
        let (r, seen) = load_all(d.path());
        assert_eq!(r.unwrap().0.unwrap().0.zxid, 7);
        assert_eq!(seen, vec![7]);
        // A verified snapshot the loader cannot decode is an error naming it.
        let e = load_newest_valid(d.path(), |_, _| -> io::Result<()> {
            Err(io::Error::new(io::ErrorKind::InvalidData, "nonsense"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("does not decode: nonsense"), "{e}");
        assert!(e.to_string().contains("snapshot.0000000000000007"), "{e}");
    }

    /// Bodies around the O_DIRECT block and write sizes round-trip, both through
    /// O_DIRECT (the temp dir's ext4) and through the buffered fallback.
    #[test]
    fn direct_and_buffered_writes_round_trip_every_size() {
        let d = tempfile::tempdir().unwrap();
        let probe = d.path().join("probe");
        assert!(
            matches!(SnapshotFile::create(&probe), Ok(SnapshotFile::Direct(_))),
            "O_DIRECT refused in {}: the direct path would go untested",
            d.path().display()
        );
        fs::remove_file(&probe).unwrap();
        let hb = SNAPSHOT_HEADER_BYTES as usize;
        let w = SNAPSHOT_DIRECT_WRITE_BYTES;
        let sizes = [
            0,
            1,
            4096 - hb,
            4096 - hb + 1,
            w - hb,
            w - hb - 16,
            w,
            3 * w + 7,
        ];
        let ways: [fn(&Path) -> io::Result<SnapshotFile>; 2] =
            [SnapshotFile::create, SnapshotFile::create_buffered];
        for (way, create) in ways.into_iter().enumerate() {
            for (i, &n) in sizes.iter().enumerate() {
                let zxid = (100 * way + i) as i64 + 1;
                let body = body_of(n, 3 + i as u8);
                let info =
                    write_snapshot_via(d.path(), zxid, |w| w.write_all(&body), create).unwrap();
                assert_eq!(info.body_bytes, n as u64);
                let len = fs::metadata(&info.path).unwrap().len();
                assert_eq!(
                    len,
                    SNAPSHOT_HEADER_BYTES + n as u64 + SNAPSHOT_FOOTER_BYTES
                );
                let v = newest_valid(d.path()).unwrap().0.unwrap();
                assert_eq!(v.info.zxid, zxid);
                assert!(read_body(v) == body, "body of {n} bytes, way {way}");
            }
        }
    }

    #[test]
    fn purge_reads_only_snapshots_not_known_valid() {
        let d = tempfile::tempdir().unwrap();
        for z in [10i64, 20, 30, 40] {
            write_snapshot(d.path(), z, |w| w.write_all(b"body")).unwrap();
        }
        // 40 is damaged on disk. Unknown, it is read, fails and does not count...
        let p40 = d.path().join(super::super::snapshot_file_name(40));
        let mut bytes = fs::read(&p40).unwrap();
        bytes[SNAPSHOT_HEADER_BYTES as usize] ^= 0xff;
        fs::write(&p40, &bytes).unwrap();
        let mut known = BTreeSet::from([30]);
        let r = purge(d.path(), d.path(), 2, &mut known).unwrap();
        assert_eq!(r.removed_snapshots.len(), 1, "{r:?}"); // 10 goes; 20 and 30 kept
        assert_eq!(known, BTreeSet::from([20, 30]));
        // ...known, it is trusted without a read: what the snapshot writer vouches for.
        known.insert(40);
        let r = purge(d.path(), d.path(), 2, &mut known).unwrap();
        assert_eq!(r.removed_snapshots.len(), 1, "{r:?}"); // 20 goes
        assert_eq!(known, BTreeSet::from([30, 40]));
    }

    #[test]
    fn failed_body_leaves_no_file() {
        let d = tempfile::tempdir().unwrap();
        let err = write_snapshot(d.path(), 3, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("tree iterator failed"))
        })
        .unwrap_err();
        assert!(
            err.to_string().ends_with(
                "snapshot.0000000000000003: write snapshot failed: tree iterator failed"
            ),
            "{err}"
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn trigger_fires_between_half_and_full_count() {
        let mut t = SnapshotTrigger::new(100, 0, 7);
        let mut n = 0;
        while !t.record(10) {
            n += 1;
        }
        assert_eq!(n, 57); // fires on the txn after 50 + 7
        t.reset(0);
        let mut n = 0;
        while !t.record(10) {
            n += 1;
        }
        assert_eq!(n, 50);
        // The size rule.
        let mut t = SnapshotTrigger::new(1_000_000, 1000, 0);
        assert!(!t.record(500));
        assert!(t.record(1));
    }

    #[test]
    fn purge_keeps_retained_snapshots_and_their_logs() {
        let d = tempfile::tempdir().unwrap();
        for z in [10i64, 20, 30, 40] {
            write_snapshot(d.path(), z, |w| w.write_all(b"body")).unwrap();
        }
        // Fake segments (purge looks only at names): [1..15], [16..25], [26..35], [36..].
        for z in [1i64, 16, 26, 36] {
            fs::write(d.path().join(super::super::log_file_name(z)), b"").unwrap();
        }
        let r = purge(d.path(), d.path(), 2, &mut BTreeSet::new()).unwrap();
        let names = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&r.removed_snapshots),
            ["snapshot.000000000000000a", "snapshot.0000000000000014"]
        );
        // Oldest kept snapshot is 30: [1..15] and [16..25] hold only older txns;
        // [26..35] holds 31..35 and stays.
        assert_eq!(
            names(&r.removed_logs),
            ["log.0000000000000001", "log.0000000000000010"]
        );
        assert_eq!(list_snapshots(d.path()).unwrap().len(), 2);
        assert!(purge(d.path(), d.path(), 0, &mut BTreeSet::new()).is_err());
    }
    fn names(v: &[PathBuf]) -> Vec<String> {
        v.iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn remove_snapshots_after_takes_newer_snapshots_and_their_temp_files() {
        let d = tempfile::tempdir().unwrap();
        for z in [10i64, 20, 30, 40] {
            write_snapshot(d.path(), z, |w| w.write_all(b"body")).unwrap();
        }
        let tmp = |z: i64| d.path().join(format!("{}.tmp", snapshot_file_name(z)));
        fs::write(tmp(25), b"being written").unwrap();
        fs::write(tmp(5), b"being written").unwrap();
        let removed = remove_snapshots_after(d.path(), 20).unwrap();
        assert_eq!(
            names(&removed),
            [
                "snapshot.0000000000000028",
                "snapshot.000000000000001e",
                "snapshot.0000000000000019.tmp"
            ]
        );
        let left: Vec<i64> = list_snapshots(d.path())
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(left, vec![10, 20]);
        assert!(tmp(5).exists());
        assert!(remove_snapshots_after(d.path(), 20).unwrap().is_empty());
        assert!(remove_snapshots_after(&d.path().join("missing"), 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn newest_valid_at_most_skips_newer_ones_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        for z in [10i64, 20, 30] {
            write_snapshot(d.path(), z, |w| {
                w.write_all(format!("state@{z}").as_bytes())
            })
            .unwrap();
        }
        let p20 = d.path().join(snapshot_file_name(20));
        let mut bytes = fs::read(&p20).unwrap();
        bytes[SNAPSHOT_HEADER_BYTES as usize] ^= 0xff;
        fs::write(&p20, &bytes).unwrap();
        let tmp = d.path().join(format!("{}.tmp", snapshot_file_name(40)));
        fs::write(&tmp, b"being written").unwrap();
        let (v, corrupt) = newest_valid_at_most(d.path(), 29).unwrap();
        assert_eq!(read_body(v.unwrap()), b"state@10");
        assert_eq!(corrupt.iter().map(|c| c.zxid).collect::<Vec<_>>(), vec![20]);
        let (v, corrupt) = newest_valid_at_most(d.path(), 30).unwrap();
        assert_eq!(read_body(v.unwrap()), b"state@30");
        assert!(corrupt.is_empty());
        assert!(newest_valid_at_most(d.path(), 9).unwrap().0.is_none());
        assert!(
            tmp.exists(),
            "a temp file of a snapshot being written is left alone"
        );
        let gone = d.path().join("missing");
        assert!(newest_valid_at_most(&gone, 100).unwrap().0.is_none());
        assert!(!gone.exists());
    }

    #[test]
    fn purge_after_a_truncation_or_reset_keeps_what_snapshots_need() {
        let d = tempfile::tempdir().unwrap();
        // A truncated segment [1..15 | end mark | dead], the new one from 16, and
        // after a reset a segment from 0x200000001 (a gap in the names).
        for z in [1i64, 16, 0x2_0000_0001] {
            fs::write(d.path().join(super::super::log_file_name(z)), b"").unwrap();
        }
        for z in [12i64, 0x2_0000_0000] {
            write_snapshot(d.path(), z, |w| w.write_all(b"body")).unwrap();
        }
        // Both snapshots kept: from 12 on, records 13.. of the first segment count.
        let r = purge(d.path(), d.path(), 2, &mut BTreeSet::new()).unwrap();
        assert_eq!(r, PurgeReport::default());
        // Only the newest: everything before 0x200000001 goes, the last stays.
        let r = purge(d.path(), d.path(), 1, &mut BTreeSet::new()).unwrap();
        assert_eq!(names(&r.removed_snapshots), ["snapshot.000000000000000c"]);
        assert_eq!(
            names(&r.removed_logs),
            ["log.0000000000000001", "log.0000000000000010"]
        );
        // A file gone from under it (removed by a reset meanwhile) is no error.
        let gone = d.path().join(snapshot_file_name(7));
        assert!(verify_if_exists(&gone, 7).unwrap().is_none());
        assert!(!remove_if_exists(&gone, "remove").unwrap());
    }
}
