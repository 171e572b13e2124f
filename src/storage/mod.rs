//! Storage: the write-ahead log, snapshots and start-up recovery, on opaque bytes.
//!
//! Owns every file in the data dir: log segments `log.<first zxid, 16 hex digits>`,
//! the preallocated spare segment `log.prealloc`, snapshots `snapshot.<zxid hex>`
//! and their temp files `snapshot.<zxid hex>.tmp`, and in quorum mode the epoch
//! files `acceptedEpoch` / `currentEpoch` ([`epoch`]). It knows nothing of znodes or
//! txns: a log record is `(zxid, kind byte, payload bytes)` and a snapshot body is
//! whatever bytes the caller streams in.
//!
//! Who runs what:
//! - [`log::Log`] belongs to the sequencer core (single thread, no locks). It
//!   appends into a mapped, preallocated segment; [`log::SyncJob`] carries the
//!   msync/fdatasync of a batch to a blocking thread and comes back as a
//!   [`log::SyncDone`] that only [`log::Log::finish_sync`] can turn into a
//!   durable watermark (group commit).
//! - [`snapshot::write_snapshot`] runs on a background (blocking) thread over a
//!   published tree version; [`snapshot::purge`] likewise.
//! - [`recover`] runs once at start-up, before any executor serves: newest valid
//!   snapshot → stream it to the caller → stream the log records after it →
//!   a [`log::LogTail`] that [`log::Log::open`] requires, so the log can only be
//!   opened for writing after its tail was checked and repaired.
//!   [`recover_overlapped`] is the same with the snapshot's checksum computed on a
//!   second thread while the caller loads the (mapped) body; the server uses it.
//! - Quorum mode, on the sequencer core, blocking and rare: [`Log::truncate_after`]
//!   (TRUNC) and [`Log::reset`] + [`remove_snapshots_after`] (SNAP) rewrite the
//!   history on disk, each durable on return; [`recover_upto`] rebuilds an older
//!   state changing no file (a rollback), or says the disk cannot
//!   ([`RollbackError::needs_full_snapshot`]); [`epoch`] reads and writes the epochs.
//!
//! - Apache ZooKeeper's `version-2/` beside corral's files: [`zklog`] decodes its
//!   txn log frames, [`zkdir`] restores, imports (start-up, before [`recover`]) and
//!   exports it. Those two know txns and trees; the rest of storage does not.
//!
//! Every byte on disk is covered by a crc32c (the epoch files, a decimal number
//! as the reference writes them, are checked for being exactly that); every error
//! names the file and, where it applies, the byte offset.
//!
//! How the sequencer is expected to drive it (a sketch; `tests/storage_glommio.rs`
//! runs this shape on a real executor):
//!
//! ```no_run
//! # use corral::storage::*;
//! # async fn sequencer(dir: &std::path::Path) -> Result<(), StorageError> {
//! let rec = recover(dir, dir, |_info, _body| Ok(()) /* build the tree */, |_r| { /* apply */ })?;
//! let mut log = Log::open(dir, LogConfig::default(), rec.tail)?;
//! loop {
//!     // prepare requests into txns, append each (an Err fails that txn and
//!     // everything prepared on top of it):
//!     log.append(log.last_zxid() + 1, 1, b"txn bytes")?;
//!     // when no sync is out, ship the batch:
//!     if let Some(job) = log.begin_sync()? {
//!         let done = glommio::executor().spawn_blocking(move || job.run()).await;
//!         match log.finish_sync(done) {
//!             Ok(durable) => { /* commit, apply and reply up to durable.zxid() */ }
//!             Err(_) => { /* fail every request after log.durable_zxid() */ }
//!         }
//!     }
//! #   break;
//! }
//! # Ok(()) }
//! ```
//! (In the real loop appends keep happening while the job is out; awaiting it
//! inline as above would serialise batches.)

pub mod epoch;
pub mod log;
pub mod snapshot;
mod trickle;
pub mod zkdir;
pub mod zklog;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use epoch::{
    load_epochs, read_epochs, write_accepted_epoch, write_current_epoch, Epochs,
    ACCEPTED_EPOCH_FILE_NAME, CURRENT_EPOCH_FILE_NAME,
};
pub use log::{
    read_log, Durable, Log, LogConfig, LogReader, LogTail, ReadEnd, Record, SyncDone, SyncJob,
    SyncMode, TornTail,
};
pub use snapshot::{
    list_snapshots, load_newest_valid, lower_thread_priority, newest_valid, newest_valid_at_most,
    purge, remove_snapshots_after, write_snapshot, CorruptSnapshot, MappedBody, PurgeReport,
    SnapshotBody, SnapshotInfo, SnapshotRead, SnapshotTrigger, ValidSnapshot,
};

/// Errors the disk or the data dir can cause. Each message names the file, and the
/// byte offset when the problem is inside a file.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{}: {op} failed: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a corral {what} file (bad magic {found:?})", .path.display())]
    WrongFormat {
        path: PathBuf,
        what: &'static str,
        found: String,
    },
    #[error("{}: unsupported {what} format version {found} (this build reads version {expected})", .path.display())]
    UnsupportedVersion {
        path: PathBuf,
        what: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("{}: corrupt at byte offset {offset}: {detail}", .path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{}: {detail}", .dir.display())]
    BadDataDir { dir: PathBuf, detail: String },
    #[error("record of {payload_bytes} payload bytes does not fit in a log segment of {segment_bytes} bytes")]
    RecordTooLarge {
        payload_bytes: usize,
        segment_bytes: u64,
    },
    #[error("{}: sync failed: {source}; records after zxid {durable_zxid:#x} were discarded", .path.display())]
    SyncFailed {
        path: PathBuf,
        durable_zxid: i64,
        #[source]
        source: io::Error,
    },
    #[error("the log is unusable until a restart ({}: {detail})", .path.display())]
    Poisoned { path: PathBuf, detail: String },
    #[error("invalid storage configuration: {0}")]
    Config(String),
    #[error("{}: {detail}", .path.display())]
    Epoch { path: PathBuf, detail: String },
}

/// Why the state as of a zxid cannot be rebuilt from disk ([`recover_upto`]).
#[derive(Debug, Error)]
pub enum RollbackError {
    /// No snapshot at or before the zxid verifies, and the log does not start at
    /// the beginning of history: ask the leader for a whole snapshot.
    #[error("cannot rebuild the state as of zxid {zxid:#x}: {detail}")]
    NoSnapshotAtOrBefore { zxid: i64, detail: String },
    /// The log ends before the zxid: ask the leader for a whole snapshot.
    #[error("cannot rebuild the state as of zxid {zxid:#x}: the log ends at {log_end:#x}")]
    LogEndsBefore { zxid: i64, log_end: i64 },
    /// The disk failed, or a file is corrupt.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RollbackError {
    /// True when the disk is fine but does not hold that state: a full snapshot
    /// from the leader is the way on.
    pub fn needs_full_snapshot(&self) -> bool {
        !matches!(self, RollbackError::Storage(_))
    }
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// File name of the log segment whose first record has `first_zxid`.
pub fn log_file_name(first_zxid: i64) -> String {
    format!("log.{:016x}", first_zxid as u64)
}

/// File name of the snapshot taken as of `zxid`.
pub fn snapshot_file_name(zxid: i64) -> String {
    format!("snapshot.{:016x}", zxid as u64)
}

/// Name of the preallocated spare segment (zero-filled, no header yet).
pub const PREALLOC_FILE_NAME: &str = "log.prealloc";

/// The corral files found in a data dir, each list sorted by zxid ascending.
#[derive(Debug, Default)]
pub(crate) struct DirListing {
    pub logs: Vec<(i64, PathBuf)>,
    pub snapshots: Vec<(i64, PathBuf)>,
    pub snapshot_temps: Vec<(i64, PathBuf)>,
    pub prealloc: Option<PathBuf>,
}

fn parse_hex_zxid(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().map(|v| v as i64)
}

/// Lists the data dir (creating it when missing: a fresh start). Files that are not
/// ours (`myid`, the epoch files, editor backups, an Apache ZooKeeper `version-2/`
/// which [`zkdir`] reads) are ignored; a name in our namespace that does not parse
/// is an error naming it.
pub(crate) fn scan_dir(dir: &Path) -> Result<DirListing, StorageError> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create data dir", dir, e))?;
    list_dir(dir)
}

/// [`scan_dir`] without creating anything: a missing dir lists as empty.
pub(crate) fn list_dir(dir: &Path) -> Result<DirListing, StorageError> {
    let mut out = DirListing::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StorageError::io("list data dir", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list data dir", dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name == zkdir::VERSION_DIR_NAME {
            continue; // Apache ZooKeeper's files: zkdir's, never ours.
        }
        if name == PREALLOC_FILE_NAME {
            out.prealloc = Some(path);
        } else if let Some(rest) = name.strip_prefix("log.") {
            match parse_hex_zxid(rest) {
                Some(z) => out.logs.push((z, path)),
                None => return Err(bad_name(dir, &name)),
            }
        } else if let Some(rest) = name.strip_prefix("snapshot.") {
            if let Some(tmp) = rest.strip_suffix(".tmp") {
                match parse_hex_zxid(tmp) {
                    Some(z) => out.snapshot_temps.push((z, path)),
                    None => return Err(bad_name(dir, &name)),
                }
            } else {
                match parse_hex_zxid(rest) {
                    Some(z) => out.snapshots.push((z, path)),
                    None => return Err(bad_name(dir, &name)),
                }
            }
        }
    }
    out.logs.sort();
    out.snapshots.sort();
    Ok(out)
}

fn bad_name(dir: &Path, name: &str) -> StorageError {
    StorageError::BadDataDir {
        dir: dir.to_path_buf(),
        detail: format!("unexpected file {name:?}: not a corral log or snapshot name"),
    }
}

/// Unlinks `path`; true if it was there. Something else (a purge, a reset) may have
/// removed it first: that is not an error.
pub(crate) fn remove_if_exists(path: &Path, op: &'static str) -> Result<bool, StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io(op, path, e)),
    }
}

/// fsync a directory so that renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let f = fs::File::open(dir).map_err(|e| StorageError::io("open data dir", dir, e))?;
    f.sync_all()
        .map_err(|e| StorageError::io("fsync data dir", dir, e))
}

/// The outcome of start-up recovery.
#[derive(Debug)]
pub struct Recovery {
    /// The snapshot the state was loaded from (None: started from an empty state).
    pub snapshot: Option<SnapshotInfo>,
    /// Newer snapshots that failed verification and were passed over.
    pub corrupt_snapshots: Vec<CorruptSnapshot>,
    /// Where the log ends; hand it to [`Log::open`].
    pub tail: LogTail,
    /// Records replayed after the snapshot.
    pub replayed: u64,
}

/// Start-up recovery (`snap_dir` is zoo.cfg's dataDir, `log_dir` its dataLogDir,
/// often the same dir): loads the newest snapshot whose checksum verifies (reporting
/// newer corrupt ones), hands its body to `load_snapshot` (to stream or map), then streams every log
/// record after it to `apply` in zxid order. A corrupt newer snapshot is tolerated
/// only if the log still reaches its zxid, so nothing it held is lost. An empty dir
/// is a fresh start (no snapshot, no records).
pub fn recover(
    snap_dir: &Path,
    log_dir: &Path,
    load_snapshot: impl FnOnce(&SnapshotInfo, &mut dyn SnapshotRead) -> io::Result<()>,
    apply: impl FnMut(Record<'_>),
) -> Result<Recovery, StorageError> {
    let (found, corrupt) = newest_valid(snap_dir)?;
    let snapshot = match found {
        Some(ValidSnapshot { info, mut body }) => {
            load_snapshot(&info, &mut body).map_err(|e| StorageError::Corrupt {
                path: info.path.clone(),
                offset: body.position(),
                detail: format!("snapshot body does not decode: {e}"),
            })?;
            Some(info)
        }
        None => None,
    };
    replay_after(log_dir, snapshot, corrupt, apply)
}

/// The second half of every recovery: the log records after the loaded snapshot
/// go to `apply`, and the whole outcome is reported.
fn replay_after(
    log_dir: &Path,
    snapshot: Option<SnapshotInfo>,
    corrupt: Vec<CorruptSnapshot>,
    apply: impl FnMut(Record<'_>),
) -> Result<Recovery, StorageError> {
    let (tail, replayed) = replay_log_after(log_dir, snapshot.as_ref(), &corrupt, apply)?;
    Ok(Recovery {
        snapshot,
        corrupt_snapshots: corrupt,
        tail,
        replayed,
    })
}

/// [`recover`] with the snapshot's body checksum checked while `load_snapshot`
/// loads it ([`load_newest_valid`]): `load_snapshot` may be called more than once
/// (a snapshot whose checksum then fails is dropped and an older one loaded) and
/// on damaged bytes, so it returns what it built instead of keeping it; what it
/// built from the snapshot that verified goes to `adopt_snapshot`, before the log
/// records go to `apply`.
pub fn recover_overlapped<T: Send>(
    snap_dir: &Path,
    log_dir: &Path,
    load_snapshot: impl FnMut(&SnapshotInfo, &mut dyn SnapshotRead) -> io::Result<T>,
    adopt_snapshot: impl FnOnce(T),
    apply: impl FnMut(Record<'_>),
) -> Result<Recovery, StorageError> {
    let (found, corrupt) = load_newest_valid(snap_dir, load_snapshot)?;
    let snapshot = found.map(|(info, t)| {
        adopt_snapshot(t);
        info
    });
    replay_after(log_dir, snapshot, corrupt, apply)
}

/// The log records after `snapshot` (all of them without one) to `apply`; the
/// log's tail and how many records were replayed. Fails if the log cannot bridge
/// the gap left by a corrupt newer snapshot.
fn replay_log_after(
    log_dir: &Path,
    snapshot: Option<&SnapshotInfo>,
    corrupt: &[CorruptSnapshot],
    mut apply: impl FnMut(Record<'_>),
) -> Result<(LogTail, u64), StorageError> {
    let after = snapshot.map_or(0, |s| s.zxid);
    let mut replayed = 0u64;
    let tail = read_log(log_dir, after, |r| {
        replayed += 1;
        apply(r)
    })
    .map_err(|e| match corrupt.first() {
        // We fell back past a corrupt snapshot and the log cannot bridge the gap:
        // name the snapshot first, the log problem second.
        Some(c) => StorageError::Corrupt {
            path: c.path.clone(),
            offset: c.offset,
            detail: format!("{}; falling back to an older state failed: {e}", c.detail),
        },
        None => e,
    })?;
    if let Some(worst) = corrupt.iter().map(|c| c.zxid).max() {
        if tail.last_zxid < worst {
            let c = corrupt
                .iter()
                .find(|c| c.zxid == worst)
                .expect("max exists");
            return Err(StorageError::Corrupt {
                path: c.path.clone(),
                offset: c.offset,
                detail: format!(
                    "{}; no older snapshot plus the log reaches its zxid {:#x} (the log ends at {:#x})",
                    c.detail, worst, tail.last_zxid
                ),
            });
        }
    }
    Ok((tail, replayed))
}

/// What [`recover_upto`] rebuilt.
#[derive(Debug)]
pub struct RecoveryUpto {
    /// The snapshot the state was loaded from (None: from the empty state).
    pub snapshot: Option<SnapshotInfo>,
    /// Snapshots at or before the zxid that failed verification and were passed over.
    pub corrupt_snapshots: Vec<CorruptSnapshot>,
    /// The zxid of the last record applied (or of the snapshot): the zxid asked for,
    /// or, when no txn lies between, the last one before it.
    pub last_zxid: i64,
    /// Records replayed after the snapshot.
    pub replayed: u64,
}

/// Whether a log starting at `first_zxid` can start from the empty state: its
/// first record is the first zxid of epoch 0 (standalone) or epoch 1 (the first
/// epoch a quorum elects). A log starting anywhere else lost its front to a purge
/// or a reset, and only a snapshot can stand in for it; the test errs towards
/// "no", which costs a full snapshot from the leader, never a wrong state.
fn starts_history(first_zxid: i64) -> bool {
    first_zxid == 1 || first_zxid == (1 << 32) | 1
}

/// The state as of `zxid`, rebuilt from disk without changing any file (so it may
/// run while the log is open for writing, on the writer's thread): the newest
/// snapshot at or before `zxid` that verifies goes to `load_snapshot`, then the log
/// records after it up to and including `zxid` go to `apply`, in order. Without
/// such a snapshot the log must start at the beginning of history
/// ([`RollbackError::NoSnapshotAtOrBefore`] otherwise); it must reach `zxid`
/// ([`RollbackError::LogEndsBefore`] otherwise: no record at `zxid` and none after).
pub fn recover_upto(
    snap_dir: &Path,
    log_dir: &Path,
    zxid: i64,
    load_snapshot: impl FnOnce(&SnapshotInfo, &mut dyn SnapshotRead) -> io::Result<()>,
    mut apply: impl FnMut(Record<'_>),
) -> Result<RecoveryUpto, RollbackError> {
    let (found, corrupt) = newest_valid_at_most(snap_dir, zxid)?;
    let snapshot = match found {
        Some(ValidSnapshot { info, mut body }) => {
            load_snapshot(&info, &mut body).map_err(|e| StorageError::Corrupt {
                path: info.path.clone(),
                offset: body.position(),
                detail: format!("snapshot body does not decode: {e}"),
            })?;
            Some(info)
        }
        None => {
            check_log_starts_history(log_dir, zxid, &corrupt)?;
            None
        }
    };
    let after = snapshot.as_ref().map_or(0, |s| s.zxid);
    let mut reader = LogReader::open_read_only(log_dir, after, zxid)?;
    let mut replayed = 0u64;
    while let Some(r) = reader.next_record()? {
        replayed += 1;
        apply(r);
    }
    let end = reader.finish_read_only()?;
    if end.last_zxid != zxid && !end.continues {
        return Err(RollbackError::LogEndsBefore {
            zxid,
            log_end: end.last_zxid,
        });
    }
    Ok(RecoveryUpto {
        snapshot,
        corrupt_snapshots: corrupt,
        last_zxid: end.last_zxid,
        replayed,
    })
}

/// Without a snapshot at or before `zxid`, the state must come from the empty
/// state plus the log: fine for zxid 0, or a log that starts history.
fn check_log_starts_history(
    log_dir: &Path,
    zxid: i64,
    corrupt: &[CorruptSnapshot],
) -> Result<(), RollbackError> {
    if zxid == 0 {
        return Ok(());
    }
    let first = list_dir(log_dir)?.logs.first().map(|(z, _)| *z);
    if first.is_some_and(starts_history) {
        return Ok(());
    }
    let snapshots = if corrupt.is_empty() {
        "no snapshot at or before it".to_string()
    } else {
        format!(
            "no snapshot at or before it verifies ({})",
            corrupt
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let log = match first {
        Some(f) => format!("the log starts at {f:#x}, not at the beginning of history"),
        None => "the log is empty".to_string(),
    };
    Err(RollbackError::NoSnapshotAtOrBefore {
        zxid,
        detail: format!("{snapshots} and {log} ({})", log_dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: log::SEGMENT_BYTES_MIN,
            sync: SyncMode::Fdatasync,
        }
    }

    /// Appends `zxids` (payload: the zxid's bytes) onto what `dir` holds after `after`.
    fn write_log(dir: &Path, after: i64, zxids: impl IntoIterator<Item = i64>) {
        let tail = read_log(dir, after, |_| {}).unwrap();
        let mut log = Log::open(dir, cfg(), tail).unwrap();
        for z in zxids {
            log.append(z, 1, &z.to_le_bytes()).unwrap();
        }
        let job = log.begin_sync().unwrap().unwrap();
        log.finish_sync(job.run()).unwrap();
    }

    fn upto(dir: &Path, zxid: i64) -> Result<(Option<String>, Vec<i64>, i64), RollbackError> {
        let mut snap = None;
        let mut zxids = Vec::new();
        let r = recover_upto(
            dir,
            dir,
            zxid,
            |_, b| {
                let mut s = String::new();
                b.read_to_string(&mut s)?;
                snap = Some(s);
                Ok(())
            },
            |rec| {
                assert_eq!(rec.payload, rec.zxid.to_le_bytes());
                zxids.push(rec.zxid)
            },
        )?;
        Ok((snap, zxids, r.last_zxid))
    }

    fn snap(dir: &Path, zxid: i64) {
        write_snapshot(dir, zxid, |w| {
            w.write_all(format!("state@{zxid}").as_bytes())
        })
        .unwrap();
    }

    #[test]
    fn recover_upto_takes_the_newest_snapshot_at_or_before_and_stops_at_the_zxid() {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 0, 1..=40);
        snap(d.path(), 10);
        snap(d.path(), 30);
        let (s, z, last) = upto(d.path(), 25).unwrap();
        assert_eq!(s.as_deref(), Some("state@10"));
        assert_eq!(z, (11..=25).collect::<Vec<_>>());
        assert_eq!(last, 25);
        // Exactly at a snapshot: nothing replayed.
        let (s, z, last) = upto(d.path(), 30).unwrap();
        assert_eq!((s.as_deref(), z.len(), last), (Some("state@30"), 0, 30));
        // Before every snapshot: the log starts history, so from the empty state.
        let (s, z, _) = upto(d.path(), 4).unwrap();
        assert_eq!((s, z), (None, vec![1, 2, 3, 4]));
        // Zero: the empty state.
        assert_eq!(upto(d.path(), 0).unwrap(), (None, vec![], 0));
    }

    #[test]
    fn recover_upto_between_epochs_takes_the_last_txn_before() {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 0, [0x1_0000_0001, 0x1_0000_0002, 0x3_0000_0001]);
        let (_, z, last) = upto(d.path(), 0x2_0000_0000).unwrap();
        assert_eq!(z, vec![0x1_0000_0001, 0x1_0000_0002]);
        assert_eq!(last, 0x1_0000_0002);
    }

    #[test]
    fn recover_upto_without_a_usable_snapshot_or_log_asks_for_a_full_snapshot() {
        let d = tempfile::tempdir().unwrap();
        // After a purge or a reset: the log starts at 21, covered by snapshot 20.
        snap(d.path(), 20);
        write_log(d.path(), 20, 21..=30);
        let err = upto(d.path(), 15).unwrap_err();
        assert!(err.needs_full_snapshot());
        assert_eq!(
            err.to_string(),
            format!(
                "cannot rebuild the state as of zxid 0xf: no snapshot at or before it and the \
                 log starts at 0x15, not at the beginning of history ({})",
                d.path().display()
            )
        );
        // The log ends before the zxid.
        let err = upto(d.path(), 35).unwrap_err();
        assert!(err.needs_full_snapshot());
        assert_eq!(
            err.to_string(),
            "cannot rebuild the state as of zxid 0x23: the log ends at 0x1e"
        );
        // A corrupt snapshot at or before the zxid is passed over and named.
        let e = tempfile::tempdir().unwrap();
        snap(e.path(), 5);
        let p = e.path().join(snapshot_file_name(5));
        let mut b = fs::read(&p).unwrap();
        b[snapshot::SNAPSHOT_HEADER_BYTES as usize] ^= 1;
        fs::write(&p, &b).unwrap();
        let err = upto(e.path(), 5).unwrap_err().to_string();
        assert!(
            err.contains("no snapshot at or before it verifies (")
                && err.contains("the log is empty"),
            "{err}"
        );
        // A disk problem is not a reason to ask for a snapshot.
        let mut foreign = b"NOTALOG!".to_vec();
        foreign.resize(64, 0);
        fs::write(e.path().join(log_file_name(1)), foreign).unwrap();
        let err = recover_upto(e.path(), e.path(), 1, |_, _| Ok(()), |_| {}).unwrap_err();
        assert!(!err.needs_full_snapshot(), "{err}");
    }

    #[test]
    fn recover_upto_changes_no_file() {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 0, 1..=10);
        snap(d.path(), 4);
        let spare = d.path().join(PREALLOC_FILE_NAME);
        let temp = d.path().join(format!("{}.tmp", snapshot_file_name(9)));
        fs::write(&spare, b"spare").unwrap();
        fs::write(&temp, b"being written").unwrap();
        // An empty last segment (crash while it was created).
        let empty = d.path().join(log_file_name(11));
        fs::write(&empty, vec![0u8; 4096]).unwrap();
        let before = fs::read_dir(d.path()).unwrap().count();
        let (_, z, last) = upto(d.path(), 8).unwrap();
        assert_eq!((z, last), (vec![5, 6, 7, 8], 8));
        let (_, _, last) = upto(d.path(), 10).unwrap();
        assert_eq!(last, 10);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), before);
        assert!(spare.exists() && temp.exists() && empty.exists());
    }
}
