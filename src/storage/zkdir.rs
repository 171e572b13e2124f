//! Apache ZooKeeper data directories: reading one into corral (at start-up and in
//! `corral import`) and writing corral's state as one (`corral export`).
//!
//! The reference keeps `snapshot.<hex zxid>` in `<dataDir>/version-2/` and
//! `log.<hex zxid>` in `<dataLogDir>/version-2/` (the same dir without dataLogDir),
//! with `acceptedEpoch`/`currentEpoch` beside the snapshots. corral's own files sit
//! directly in dataDir/dataLogDir, so both layouts can share a dir; this module
//! never writes into an existing `version-2/` file and never modifies one.
//!
//! **Reading** ([`read_zk_state`]) restores as the reference's `FileTxnSnapLog.restore`
//! does: the newest snapshot that verifies (up to 100 candidates, newest first; a
//! bad one is passed over and reported), then every log entry after it from the log
//! files it would pick (every file named after the snapshot's zxid, plus the newest
//! one named before), applied with [`crate::tree::apply_restored`] because the
//! reference's snapshots are fuzzy. Sessions come from the snapshot and the
//! createSession/closeSession txns. Every error names the file and byte offset.
//!
//! **Precedence** ([`adopt`], called by the sequencer core before its recovery):
//! - a `version-2/` and no corral snapshot or log: import it (write the
//!   [`IMPORT_MARKER_FILE_NAME`] file with the zxid imported, then a corral snapshot
//!   of the state and, if the reference had them, its epoch files);
//! - corral's own files exist: they win, and the `version-2/` is only checked: if
//!   ZooKeeper wrote past the zxid corral imported (or there is no record of an
//!   import and the reference holds data), start-up fails and says what to do.
//!
//! **Export** ([`export`]) writes `version-2/snapshot.<zxid>` (with the digest block
//! and both seals, as 3.8 writes it) of corral's recovered state, and the epoch files
//! when corral has them; the reference starts on a snapshot alone (no log needed).
//!
//! Blocking file IO, run once on the thread that recovers or by the CLI.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::zklog::{LogEnd, ZkLogFile};
use super::{list_dir, read_epochs, sync_dir, StorageError};
use crate::tree::zksnap::{
    read_zk_snapshot_file, write_zk_snapshot_file, zk_snapshot_file_name, ZkSnapError, ZxidDigest,
};
use crate::tree::{apply_restored, Tree, Txn, TxnOp};

/// The reference's layout directory under dataDir and dataLogDir.
pub const VERSION_DIR_NAME: &str = "version-2";
/// In dataDir: the zxid corral imported from `version-2/` (decimal text, one line
/// `imported_zxid=0x...`).
pub const IMPORT_MARKER_FILE_NAME: &str = "zookeeper-import";
/// Snapshots that pass the quick check the reference tries before giving up.
const SNAPSHOT_CANDIDATES_COUNT_MAX: usize = 100;
/// A snapshot shorter than this cannot end in a seal (`SnapStream.isValidCheckedStream`).
const SNAPSHOT_BYTES_MIN: u64 = 10;
/// The last 5 bytes of a sealed snapshot: ustring "/" (length 1, '/').
const SNAPSHOT_TAIL: [u8; 5] = [0, 0, 0, 1, b'/'];
/// Offset of the zxid in a txn entry (after clientId and cxid).
const ENTRY_ZXID_OFFSET: usize = 12;

/// The reference's `version-2` dirs of one configuration.
#[derive(Debug, Clone)]
pub struct ZkDataDirs {
    /// `<dataDir>/version-2`: snapshots and epoch files.
    pub snap_dir: PathBuf,
    /// `<dataLogDir>/version-2` (or dataDir's): txn logs.
    pub log_dir: PathBuf,
}

impl ZkDataDirs {
    /// The dirs the reference would use for dataDir `data_dir` and dataLogDir
    /// `log_dir` (pass dataDir again when dataLogDir is not set).
    pub fn of(data_dir: &Path, log_dir: &Path) -> ZkDataDirs {
        ZkDataDirs {
            snap_dir: data_dir.join(VERSION_DIR_NAME),
            log_dir: log_dir.join(VERSION_DIR_NAME),
        }
    }

    /// True when either dir exists.
    pub fn present(&self) -> bool {
        self.snap_dir.is_dir() || self.log_dir.is_dir()
    }
}

/// A reference data dir's state, as the reference would restore it.
#[derive(Debug)]
pub struct ZkState {
    /// The tree; its `last_zxid` is the last zxid restored.
    pub tree: Tree,
    /// Live sessions (id, timeout ms), by id.
    pub sessions: Vec<(i64, i32)>,
    /// The snapshot loaded (None: the empty state).
    pub snapshot: Option<PathBuf>,
    /// Newer snapshots that did not verify, each with why.
    pub passed_over: Vec<String>,
    /// Log entries applied after the snapshot.
    pub replayed: u64,
    /// Log files that ended in a partial entry: (file, offset, what was missing).
    pub torn: Vec<String>,
    /// Entries whose logged digest differs from the tree's after them.
    pub digest_mismatches: u64,
}

impl ZkState {
    pub fn last_zxid(&self) -> i64 {
        self.tree.last_zxid()
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        format!(
            "zxid {:#x}: snapshot {}, {} log entr{} replayed, {} session(s), {} znode(s){}{}",
            self.last_zxid(),
            self.snapshot
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
            self.replayed,
            if self.replayed == 1 { "y" } else { "ies" },
            self.sessions.len(),
            self.tree.node_count(),
            if self.passed_over.is_empty() {
                String::new()
            } else {
                format!("; passed over: {}", self.passed_over.join("; "))
            },
            if self.torn.is_empty() {
                String::new()
            } else {
                format!("; partial last entries dropped: {}", self.torn.join("; "))
            },
        )
    }
}

// ===================================================================================
// Listing
// ===================================================================================

/// `prefix.<hex>` files of `dir` (a suffix after the hex is allowed, as
/// `snapshot.<hex>.gz`), newest first. A missing dir lists as empty; names whose
/// zxid does not parse are ignored, as the reference ignores them.
fn list_zk(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io("list zookeeper data dir", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list zookeeper data dir", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.split('.');
        if parts.next() != Some(prefix) {
            continue;
        }
        if let Some(z) = parts.next().and_then(|h| i64::from_str_radix(h, 16).ok()) {
            out.push((z, entry.path()));
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    Ok(out)
}

/// The log files the reference replays after `snap_zxid`, oldest first: every file
/// named after it, and the newest one named at or before it.
fn logs_after(log_dir: &Path, snap_zxid: i64) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    let mut picked = Vec::new();
    for (z, p) in list_zk(log_dir, "log")? {
        let before = z <= snap_zxid;
        picked.push((z, p));
        if before {
            break;
        }
    }
    picked.reverse();
    Ok(picked)
}

// ===================================================================================
// Reading the state
// ===================================================================================

/// Restores the state of a reference data dir (see the module header). Changes no
/// file.
pub fn read_zk_state(dirs: &ZkDataDirs) -> Result<ZkState, StorageError> {
    let (loaded, passed_over) = load_newest_snapshot(dirs)?;
    let (tree, sessions, snapshot) = match loaded {
        Some((path, file)) => (file.tree, file.sessions, Some(path)),
        None => (Tree::new(), Vec::new(), None),
    };
    let mut replay = ZkReplay {
        state: ZkState {
            tree,
            sessions: Vec::new(),
            snapshot,
            passed_over,
            replayed: 0,
            torn: Vec::new(),
            digest_mismatches: 0,
        },
        sessions: sessions.into_iter().collect(),
    };
    let snap_zxid = replay.state.tree.last_zxid();
    for (_, path) in logs_after(&dirs.log_dir, snap_zxid)? {
        replay.file(&path)?;
    }
    let mut state = replay.state;
    state.sessions = replay.sessions.into_iter().collect();
    refuse_unresolved_acls(dirs, &state)?;
    if state.digest_mismatches > 0 {
        tracing::warn!(
            "{} replayed ZooKeeper txn(s) left a tree digest other than the one logged",
            state.digest_mismatches
        );
    }
    Ok(state)
}

/// A fuzzy snapshot may name ACL indices its map lacks; the txns replayed after it
/// supply them (`Tree::resolve_stand_in_acl`). Any left over means snapshot and log
/// disagree, and the node's ACL is unknown: refused, naming the nodes (the reference
/// would load them and fail every request that reads their ACL).
fn refuse_unresolved_acls(dirs: &ZkDataDirs, state: &ZkState) -> Result<(), StorageError> {
    let left = state.tree.unresolved_acls();
    let Some((path, index)) = left.first() else {
        return Ok(());
    };
    let snapshot = state
        .snapshot
        .as_ref()
        .map_or_else(String::new, |p| format!("{} ", p.display()));
    let more = match left.len() {
        1 => String::new(),
        n => format!(" (and {} more node(s))", n - 1),
    };
    Err(StorageError::BadDataDir {
        dir: dirs.snap_dir.clone(),
        detail: format!(
            "node {path:?}{more} uses ACL index {index}, which neither the ACL map of \
             snapshot {snapshot}nor the log after it supplies"
        ),
    })
}

/// The newest snapshot that verifies, and the newer ones that did not. None without
/// any snapshot that passes the quick check, if no log holds an entry either (the
/// reference's empty database); with log entries that is an error.
#[allow(clippy::type_complexity)]
fn load_newest_snapshot(
    dirs: &ZkDataDirs,
) -> Result<
    (
        Option<(PathBuf, crate::tree::zksnap::ZkSnapFile)>,
        Vec<String>,
    ),
    StorageError,
> {
    let mut passed_over = Vec::new();
    let mut candidates = 0;
    for (zxid, path) in list_zk(&dirs.snap_dir, "snapshot")? {
        if candidates == SNAPSHOT_CANDIDATES_COUNT_MAX {
            break;
        }
        let sealed = ends_in_seal(&path)?;
        candidates += usize::from(sealed);
        let why = match read_snapshot(&path, zxid) {
            Ok(file) if sealed => return Ok((Some((path, file)), passed_over)),
            Ok(_) => format!("{}: does not end in a seal", path.display()),
            Err(e @ StorageError::Corrupt { .. }) => e.to_string(),
            Err(e) => return Err(e),
        };
        tracing::warn!("passing over a ZooKeeper snapshot: {why}");
        passed_over.push(why);
    }
    if candidates > 0 {
        return Err(StorageError::BadDataDir {
            dir: dirs.snap_dir.clone(),
            detail: format!(
                "Not able to find valid snapshots: {}",
                passed_over.join("; ")
            ),
        });
    }
    if let Some(at) = first_log_entry(&dirs.log_dir)? {
        let why = if passed_over.is_empty() {
            String::new()
        } else {
            format!(" ({})", passed_over.join("; "))
        };
        return Err(StorageError::BadDataDir {
            dir: dirs.snap_dir.clone(),
            detail: format!(
                "No snapshot found, but there are log entries ({at}){why}: the state cannot be \
                 rebuilt without a snapshot"
            ),
        });
    }
    Ok((None, passed_over))
}

/// The quick check the reference makes before it reads a snapshot: at least 10
/// bytes, ending in the ustring "/".
fn ends_in_seal(path: &Path) -> Result<bool, StorageError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f =
        fs::File::open(path).map_err(|e| StorageError::io("open zookeeper snapshot", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| StorageError::io("stat zookeeper snapshot", path, e))?
        .len();
    if len < SNAPSHOT_BYTES_MIN {
        return Ok(false);
    }
    let mut tail = [0u8; 5];
    f.seek(SeekFrom::End(-5))
        .and_then(|_| f.read_exact(&mut tail))
        .map_err(|e| StorageError::io("read zookeeper snapshot", path, e))?;
    Ok(tail == SNAPSHOT_TAIL)
}

/// Reads one snapshot file; a format fault is `Corrupt` naming the file and offset.
fn read_snapshot(path: &Path, zxid: i64) -> Result<crate::tree::zksnap::ZkSnapFile, StorageError> {
    let f =
        fs::File::open(path).map_err(|e| StorageError::io("open zookeeper snapshot", path, e))?;
    read_zk_snapshot_file(&mut BufReader::new(f), zxid).map_err(|e| snap_error(path, e))
}

/// A snapshot reader error as a storage error naming the file (and the offset the
/// reader names).
fn snap_error(path: &Path, e: ZkSnapError) -> StorageError {
    match e {
        ZkSnapError::Io(source) => StorageError::io("read zookeeper snapshot", path, source),
        other => {
            let offset = other.offset().unwrap_or(0);
            let text = other.to_string();
            let detail = text
                .strip_prefix(&format!("at byte {offset}: "))
                .unwrap_or(&text)
                .to_string();
            StorageError::Corrupt {
                path: path.to_path_buf(),
                offset,
                detail,
            }
        }
    }
}

/// "file at byte offset N" of the first log entry in `log_dir`, if any.
fn first_log_entry(log_dir: &Path) -> Result<Option<String>, StorageError> {
    for (_, path) in list_zk(log_dir, "log")?.into_iter().rev() {
        let mut f = ZkLogFile::open(&path)?;
        if let Some(e) = f.next_entry()? {
            return Ok(Some(format!(
                "{} at byte offset {}",
                path.display(),
                e.offset
            )));
        }
    }
    Ok(None)
}

/// The log replay: the state being built and the session table.
struct ZkReplay {
    state: ZkState,
    sessions: BTreeMap<i64, i32>,
}

impl ZkReplay {
    /// Applies every entry of one file after the state's zxid.
    fn file(&mut self, path: &Path) -> Result<(), StorageError> {
        let mut f = ZkLogFile::open(path)?;
        while let Some(e) = f.next_entry()? {
            let (offset, bytes) = (e.offset, e.bytes.to_vec());
            self.entry(&f, offset, &bytes)?;
        }
        if let Some((offset, LogEnd::Torn(what))) = f.end() {
            let note = format!(
                "{} at byte offset {offset} (missing {what})",
                path.display()
            );
            tracing::warn!("ZooKeeper txn log: last transaction was partial: {note}");
            self.state.torn.push(note);
        }
        Ok(())
    }

    fn entry(&mut self, f: &ZkLogFile, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let (txn, digest) = Txn::decode(bytes)
            .map_err(|e| f.corrupt(offset, format!("txn entry does not decode: {e}")))?;
        let last = self.state.tree.last_zxid();
        if txn.zxid <= last {
            if self.state.replayed == 0 {
                return Ok(()); // before the snapshot: the reference skips it too
            }
            return Err(f.corrupt(
                offset,
                format!(
                    "txn zxid {:#x} is not after the previous one {last:#x}",
                    txn.zxid
                ),
            ));
        }
        match &txn.op {
            TxnOp::CreateSession { timeout_ms } => {
                self.sessions.insert(txn.session_id, *timeout_ms);
            }
            TxnOp::CloseSession { .. } => {
                self.sessions.remove(&txn.session_id);
            }
            _ => {}
        }
        apply_restored(&mut self.state.tree, &txn);
        if digest.is_some_and(|d| d != self.state.tree.digest()) {
            self.state.digest_mismatches += 1;
        }
        self.state.replayed += 1;
        Ok(())
    }
}

/// The newest zxid the reference's files hold, without building a tree: the newest
/// snapshot's name, or the last entry of the newest log file holding one.
pub fn zk_last_zxid(dirs: &ZkDataDirs) -> Result<i64, StorageError> {
    let snap = list_zk(&dirs.snap_dir, "snapshot")?
        .first()
        .map_or(0, |(z, _)| *z);
    for (_, path) in list_zk(&dirs.log_dir, "log")? {
        let mut f = ZkLogFile::open(&path)?;
        let mut last = None;
        while let Some(e) = f.next_entry()? {
            let zxid = e
                .bytes
                .get(ENTRY_ZXID_OFFSET..ENTRY_ZXID_OFFSET + 8)
                .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")));
            match zxid {
                Some(z) => last = Some(z),
                None => {
                    let offset = e.offset;
                    return Err(f.corrupt(offset, "txn entry shorter than its header".into()));
                }
            }
        }
        if let Some(z) = last {
            return Ok(z.max(snap));
        }
    }
    Ok(snap)
}

// ===================================================================================
// Adopting a reference dir at start-up, and `corral import`
// ===================================================================================

/// What [`adopt`] or [`import`] did.
#[derive(Debug)]
pub struct Imported {
    pub zxid: i64,
    pub summary: String,
}

/// Start-up, before corral's own recovery (see the module header): imports the
/// reference's `version-2/` when corral has no files yet, checks it is not newer
/// than the import when corral has. None: nothing imported.
pub fn adopt(data_dir: &Path, log_dir: &Path) -> Result<Option<Imported>, StorageError> {
    let dirs = ZkDataDirs::of(data_dir, log_dir);
    if !dirs.present() {
        return Ok(None);
    }
    if corral_has_files(data_dir, log_dir)? {
        check_not_newer(data_dir, &dirs)?;
        return Ok(None);
    }
    import_dirs(data_dir, &dirs).map(Some)
}

/// `corral import`: like start-up on a reference dir, but refuses when corral's own
/// files are already there (and when there is no `version-2/`).
pub fn import(data_dir: &Path, log_dir: &Path) -> Result<Imported, StorageError> {
    let dirs = ZkDataDirs::of(data_dir, log_dir);
    if !dirs.present() {
        return Err(StorageError::BadDataDir {
            dir: data_dir.to_path_buf(),
            detail: format!("no Apache ZooKeeper data to import (no {VERSION_DIR_NAME}/ here or in the log dir)"),
        });
    }
    if corral_has_files(data_dir, log_dir)? {
        return Err(StorageError::BadDataDir {
            dir: data_dir.to_path_buf(),
            detail:
                "corral's own snapshot or log files are already here; remove them (snapshot.*, \
                     log.*) to import the ZooKeeper data again"
                    .into(),
        });
    }
    import_dirs(data_dir, &dirs)
}

fn corral_has_files(data_dir: &Path, log_dir: &Path) -> Result<bool, StorageError> {
    Ok(!list_dir(data_dir)?.snapshots.is_empty() || !list_dir(log_dir)?.logs.is_empty())
}

/// Reads the reference's state and writes it as corral's: the marker first (so a
/// crash before the snapshot leaves no corral file and the next start imports
/// again), then the snapshot, then the epochs corral does not have yet.
fn import_dirs(data_dir: &Path, dirs: &ZkDataDirs) -> Result<Imported, StorageError> {
    let state = read_zk_state(dirs)?;
    let zxid = state.last_zxid();
    fs::create_dir_all(data_dir).map_err(|e| StorageError::io("create data dir", data_dir, e))?;
    write_marker(data_dir, zxid, dirs)?;
    super::write_snapshot(data_dir, zxid, |w| {
        crate::server::durable::write_snapshot_body(w, &state.tree, &state.sessions)
    })?;
    copy_epochs(&dirs.snap_dir, data_dir)?;
    let summary = format!(
        "imported Apache ZooKeeper data from {} and {} at {}; corral's files are in {} (the \
         ZooKeeper files are left as they were)",
        dirs.snap_dir.display(),
        dirs.log_dir.display(),
        state.summary(),
        data_dir.display()
    );
    Ok(Imported { zxid, summary })
}

/// Copies the reference's epoch files into corral's dir where corral has none.
fn copy_epochs(from: &Path, to: &Path) -> Result<(), StorageError> {
    let (accepted, current) = read_epochs(from)?;
    let (have_accepted, have_current) = read_epochs(to)?;
    if let (Some(e), None) = (accepted, have_accepted) {
        super::write_accepted_epoch(to, e)?;
    }
    if let (Some(e), None) = (current, have_current) {
        super::write_current_epoch(to, e)?;
    }
    Ok(())
}

fn write_marker(data_dir: &Path, zxid: i64, dirs: &ZkDataDirs) -> Result<(), StorageError> {
    let text = format!(
        "# corral imported the Apache ZooKeeper data in {} and {} at this zxid.\n\
         imported_zxid={zxid:#x}\n",
        dirs.snap_dir.display(),
        dirs.log_dir.display()
    );
    let path = data_dir.join(IMPORT_MARKER_FILE_NAME);
    let tmp = data_dir.join(format!("{IMPORT_MARKER_FILE_NAME}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| StorageError::io("write import marker", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename import marker", &path, e))?;
    sync_dir(data_dir)
}

/// The zxid in the marker, None when there is no marker.
fn read_marker(data_dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = data_dir.join(IMPORT_MARKER_FILE_NAME);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read import marker", &path, e)),
    };
    text.lines()
        .find_map(|l| l.trim().strip_prefix("imported_zxid=0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .map(|z| Some(z as i64))
        .ok_or_else(|| StorageError::BadDataDir {
            dir: data_dir.to_path_buf(),
            detail: format!("{IMPORT_MARKER_FILE_NAME}: no imported_zxid=0x<hex> line"),
        })
}

/// corral's files win; fails if the reference wrote after the import.
fn check_not_newer(data_dir: &Path, dirs: &ZkDataDirs) -> Result<(), StorageError> {
    let theirs = zk_last_zxid(dirs)?;
    let imported = read_marker(data_dir)?;
    if theirs <= imported.unwrap_or(0) {
        return Ok(());
    }
    let what = match imported {
        Some(z) => format!(
            "Apache ZooKeeper wrote up to zxid {theirs:#x} in {} after corral imported it at \
             zxid {z:#x}",
            dirs.snap_dir.display()
        ),
        None => format!(
            "{} holds Apache ZooKeeper data up to zxid {theirs:#x}, and corral's own files beside \
             it were not imported from it",
            dirs.snap_dir.display()
        ),
    };
    Err(StorageError::BadDataDir {
        dir: data_dir.to_path_buf(),
        detail: format!(
            "{what}; corral's own files would ignore those writes. To serve ZooKeeper's state, \
             move corral's snapshot.*, log.*, {IMPORT_MARKER_FILE_NAME} (and epoch files) out of \
             the data dir and start again (it is imported afresh); to keep corral's state, move \
             {VERSION_DIR_NAME}/ out of the data dir"
        ),
    })
}

// ===================================================================================
// Export
// ===================================================================================

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Exported {
    pub snapshot: PathBuf,
    pub zxid: i64,
    pub summary: String,
}

/// Writes corral's recovered state (from `data_dir`/`log_dir`) as a reference
/// snapshot in `to.snap_dir`, plus corral's epoch files when it has
/// them. Refuses when that dir holds a snapshot or log at or after corral's zxid
/// (the reference would not start from the export). Run with the server stopped.
pub fn export(data_dir: &Path, log_dir: &Path, to: &ZkDataDirs) -> Result<Exported, StorageError> {
    let rec = crate::server::durable::recover(data_dir, log_dir)?;
    let zxid = rec.tree.last_zxid();
    check_export_target(to, zxid)?;
    let dir = to.snap_dir.clone();
    fs::create_dir_all(&dir).map_err(|e| StorageError::io("create export dir", &dir, e))?;
    let path = dir.join(zk_snapshot_file_name(zxid));
    let tmp = dir.join(format!("{}.corral-tmp", zk_snapshot_file_name(zxid)));
    let digest = Some(ZxidDigest::new(zxid, rec.tree.digest()));
    let write = || -> io::Result<()> {
        let f = fs::File::create(&tmp)?;
        let mut w = BufWriter::new(f);
        write_zk_snapshot_file(&mut w, &rec.tree, rec.sessions.clone(), digest)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(StorageError::io("write zookeeper snapshot", &tmp, e));
    }
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename zookeeper snapshot", &path, e))?;
    sync_dir(&dir)?;
    let (accepted, current) = read_epochs(data_dir)?;
    if let Some(e) = accepted {
        super::write_accepted_epoch(&dir, e)?;
    }
    if let Some(e) = current {
        super::write_current_epoch(&dir, e)?;
    }
    Ok(Exported {
        summary: format!(
            "exported zxid {zxid:#x} ({} znode(s), {} session(s)) to {}",
            rec.tree.node_count(),
            rec.sessions.len(),
            path.display()
        ),
        snapshot: path,
        zxid,
    })
}

/// The reference would start from `snapshot.<zxid>` only if nothing it holds is
/// newer; an existing file of that name is never replaced.
fn check_export_target(to: &ZkDataDirs, zxid: i64) -> Result<(), StorageError> {
    let existing = to.snap_dir.join(zk_snapshot_file_name(zxid));
    if existing.exists() {
        return Err(StorageError::BadDataDir {
            dir: to.snap_dir.clone(),
            detail: format!(
                "{} already exists: this state was exported (or imported) before",
                existing.display()
            ),
        });
    }
    let theirs = zk_last_zxid(to)?;
    if theirs > zxid {
        return Err(StorageError::BadDataDir {
            dir: to.snap_dir.clone(),
            detail: format!(
                "holds Apache ZooKeeper data up to zxid {theirs:#x}, after corral's zxid \
                 {zxid:#x}: ZooKeeper would replay it on top of the export; export into an \
                 empty data dir (--to) or move {VERSION_DIR_NAME}/ away"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, CreateKind};
    use crate::tree::{apply, CreateTxn};

    fn txn(zxid: i64, op: TxnOp) -> Txn {
        Txn {
            session_id: 0x77,
            cxid: zxid as i32,
            zxid,
            time_ms: 1000 + zxid,
            op,
        }
    }

    fn create(zxid: i64, path: &str, parent_cversion: i32, owner: i64) -> Txn {
        txn(
            zxid,
            TxnOp::Create(CreateTxn {
                path: path.into(),
                data: Some(b"d".to_vec()),
                acl: Acl::open(),
                ephemeral_owner: owner,
                parent_cversion,
                kind: CreateKind::Create,
            }),
        )
    }

    /// createSession, /a, ephemeral /a/e, multi{/m, setData /a}, setData /m.
    fn history() -> Vec<Txn> {
        vec![
            txn(1, TxnOp::CreateSession { timeout_ms: 9000 }),
            create(2, "/a", 1, 0),
            create(3, "/a/e", 1, 0x77),
            txn(
                4,
                TxnOp::Multi(vec![
                    create(4, "/m", 2, 0).op,
                    TxnOp::SetData {
                        path: "/a".into(),
                        data: Some(b"x".to_vec()),
                        version: 1,
                    },
                ]),
            ),
            txn(
                5,
                TxnOp::SetData {
                    path: "/m".into(),
                    data: None,
                    version: 1,
                },
            ),
        ]
    }

    fn write_log(dir: &Path, first: i64, txns: &[Txn], tree: &mut Tree) {
        let mut b = super::super::zklog::LOG_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        for t in txns {
            apply(tree, t);
            let mut e = Vec::new();
            t.encode(&mut e, Some(tree.digest()));
            b.extend_from_slice(&i64::from(adler2::adler32_slice(&e)).to_be_bytes());
            b.extend_from_slice(&(e.len() as i32).to_be_bytes());
            b.extend_from_slice(&e);
            b.push(0x42);
        }
        b.resize(b.len() + 4096, 0);
        fs::write(dir.join(format!("log.{first:x}")), b).unwrap();
    }

    fn write_snap(dir: &Path, name_zxid: i64, tree: &Tree, sessions: Vec<(i64, i32)>) {
        let mut b = Vec::new();
        write_zk_snapshot_file(&mut b, tree, sessions, None).unwrap();
        fs::write(dir.join(zk_snapshot_file_name(name_zxid)), b).unwrap();
    }

    /// A reference dir whose snapshot is named 2 but was written while txns 3 and
    /// half of multi 4 (its create, not its setData) were applied: fuzzy. The log
    /// holds 1..=5.
    fn fuzzy_dir(data: &Path) -> Tree {
        let v2 = data.join(VERSION_DIR_NAME);
        fs::create_dir_all(&v2).unwrap();
        let h = history();
        let mut fuzzy = Tree::new();
        for t in &h[..3] {
            apply(&mut fuzzy, t);
        }
        apply(&mut fuzzy, &create(4, "/m", 2, 0));
        let mut full = Tree::new();
        write_log(&v2, 1, &h, &mut full);
        write_snap(&v2, 2, &fuzzy, vec![(0x77, 9000)]);
        full
    }

    #[test]
    fn a_fuzzy_snapshot_plus_the_log_restores_the_whole_history() {
        let d = tempfile::tempdir().unwrap();
        let full = fuzzy_dir(d.path());
        let state = read_zk_state(&ZkDataDirs::of(d.path(), d.path())).unwrap();
        assert_eq!(state.last_zxid(), 5);
        assert_eq!(state.replayed, 3, "txns 3..=5 after snapshot 2");
        // After txn 3 the tree already holds /m, which the logged digest does not
        // count (the reference logs the same mismatch); from the multi on they agree.
        assert_eq!(state.digest_mismatches, 1, "{}", state.summary());
        assert_eq!(state.tree.digest(), full.digest());
        for p in ["/", "/a", "/a/e", "/m"] {
            let (got, want) = (state.tree.get(p).unwrap(), full.get(p).unwrap());
            assert_eq!((got.data(), got.stat()), (want.data(), want.stat()), "{p}");
        }
        assert_eq!(state.sessions, vec![(0x77, 9000)]);
    }

    /// The fuzzy dir with one node's ACL in the snapshot replaced by the stand-in
    /// the decoder gives a node whose ACL index the map lacks (the reference writes
    /// the map before the nodes); the other nodes are as [`fuzzy_dir`] has them.
    fn fuzzy_dir_with_stand_in(data: &Path, path: &str) {
        fuzzy_dir(data);
        let v2 = data.join(VERSION_DIR_NAME);
        let file = read_snapshot(&v2.join(zk_snapshot_file_name(2)), 2).unwrap();
        let mut tree = file.tree;
        let aversion = tree.get(path).unwrap().stat().aversion;
        let zxid = tree.last_zxid() + 1;
        let set = TxnOp::SetAcl {
            path: path.into(),
            acl: crate::tree::stand_in_acl(7),
            version: aversion,
        };
        apply(&mut tree, &txn(zxid, set));
        write_snap(&v2, 2, &tree, file.sessions);
    }

    #[test]
    fn acls_a_fuzzy_snapshot_lacks_come_from_the_creates_replayed_after_it() {
        // /m and /a/e were created by txns 4 and 3, after snapshot 2: replayed, the
        // creates find them and give them their ACLs.
        for path in ["/m", "/a/e"] {
            let d = tempfile::tempdir().unwrap();
            fuzzy_dir_with_stand_in(d.path(), path);
            let state = read_zk_state(&ZkDataDirs::of(d.path(), d.path())).unwrap();
            assert!(state.tree.unresolved_acls().is_empty(), "{path}");
            assert_eq!(*state.tree.node(path).unwrap().acl, Acl::open(), "{path}");
        }
        // /a was created by txn 2, which the snapshot covers: nothing replayed gives
        // it an ACL, and the import says which node and which snapshot.
        let d = tempfile::tempdir().unwrap();
        fuzzy_dir_with_stand_in(d.path(), "/a");
        let err = import(d.path(), d.path()).unwrap_err().to_string();
        let snap = d
            .path()
            .join(VERSION_DIR_NAME)
            .join(zk_snapshot_file_name(2));
        assert_eq!(
            err,
            format!(
                "{}: node \"/a\" uses ACL index 7, which neither the ACL map of snapshot {} \
                 nor the log after it supplies",
                d.path().join(VERSION_DIR_NAME).display(),
                snap.display()
            )
        );
        assert!(!d.path().join(IMPORT_MARKER_FILE_NAME).exists());
    }

    #[test]
    fn adopt_imports_once_with_the_epochs_then_corral_files_win() {
        let d = tempfile::tempdir().unwrap();
        fuzzy_dir(d.path());
        let v2 = d.path().join(VERSION_DIR_NAME);
        fs::write(v2.join("acceptedEpoch"), "3").unwrap();
        fs::write(v2.join("currentEpoch"), "2").unwrap();
        let imported = adopt(d.path(), d.path()).unwrap().expect("imported");
        assert_eq!(imported.zxid, 5);
        assert_eq!(read_epochs(d.path()).unwrap(), (Some(3), Some(2)));
        assert_eq!(read_marker(d.path()).unwrap(), Some(5));
        let rec = crate::server::durable::recover(d.path(), d.path()).unwrap();
        assert_eq!(rec.tree.last_zxid(), 5);
        assert_eq!(rec.sessions, vec![(0x77, 9000)]);
        assert!(
            adopt(d.path(), d.path()).unwrap().is_none(),
            "corral's files win"
        );
        let err = import(d.path(), d.path()).unwrap_err().to_string();
        assert!(
            err.contains("corral's own snapshot or log files are already here"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_reference_dir_imports_the_empty_tree() {
        let d = tempfile::tempdir().unwrap();
        let v2 = d.path().join(VERSION_DIR_NAME);
        fs::create_dir_all(&v2).unwrap();
        write_snap(&v2, 0, &Tree::new(), vec![]);
        assert_eq!(adopt(d.path(), d.path()).unwrap().unwrap().zxid, 0);
        let rec = crate::server::durable::recover(d.path(), d.path()).unwrap();
        assert_eq!(rec.tree.digest(), Tree::new().digest());
    }

    #[test]
    fn log_entries_without_a_snapshot_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let v2 = d.path().join(VERSION_DIR_NAME);
        fs::create_dir_all(&v2).unwrap();
        write_log(&v2, 1, &history()[..2], &mut Tree::new());
        let err = import(d.path(), d.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: No snapshot found, but there are log entries ({} at byte offset 16): the \
                 state cannot be rebuilt without a snapshot",
                v2.display(),
                v2.join("log.1").display()
            )
        );
    }
}
