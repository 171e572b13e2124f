//! What the sequencer core keeps on disk, composed from `storage` (opaque records and
//! snapshot bodies), `tree` (txns and tree snapshots) and `session` (the table).
//!
//! - Log records: one per txn, kind [`KIND_TXN`], payload ZooKeeper's txn entry
//!   (`Txn::encode`: header, record, the tree digest after the txn), the same bytes
//!   as a PROPOSAL or a reference txn-log record.
//! - Snapshot body: the session table (count, then id and timeout of each), then the
//!   tree's own snapshot format.
//! - Recovery: newest valid snapshot, then every logged txn after it applied in zxid
//!   order as the reference restores (`tree::apply_restored`: a multi is never
//!   undone); create/close-session txns rebuild the session table; each txn's digest is
//!   compared with the tree's after it (a mismatch is logged). Restored sessions
//!   get a fresh deadline, so one whose client never comes back expires as it would
//!   on the reference server.
//!
//! - Quorum mode: [`Recovered::tail_records`] hands the replication core the logged
//!   txns after the snapshot (its `DurableState.tail`), at most
//!   [`RECOVERY_TAIL_BYTES_MAX`] of them; [`recover_upto`] rebuilds the state as of
//!   an older zxid without touching a file (`Event::Rollback`); [`truncate_log`] and
//!   [`adopt_snapshot`] rewrite the history on disk for a TRUNC and a SNAP while no
//!   purge runs.
//!
//! - Retention ([`Retention`]): which snapshots are known valid, and purging old
//!   snapshots and log segments (`autopurge.*`), one purge at a time.
//!
//! Runs on the sequencer core at start-up (recovery) and on background threads
//! (snapshot writing, the purge timer) at idle CPU and I/O priority.

use super::stats::ServerStats;
use crate::session::SessionTable;
use crate::storage::{self, Log, LogTail, Record, RollbackError, StorageError};
use crate::tree::{self, Tree, Txn, TxnOp};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log record kind of a tree txn (the only kind so far). Kind 1 was corral's own
/// txn encoding, which this build no longer reads.
pub const KIND_TXN: u8 = 2;

/// Payload bytes of logged txns recovery keeps for the replication core
/// ([`Recovered::tail_records`]); beyond it the oldest are left out (the core then
/// treats its log window as starting later, which can only cost a sync).
pub const RECOVERY_TAIL_BYTES_MAX: usize = 64 << 20;

/// The state recovery rebuilt.
#[allow(dead_code)] // `tail_records*`: for the quorum sequencer (being wired).
pub struct Recovered {
    pub tree: Tree,
    /// The reference's digest log of the replayed txns (see `stats::DigestLog`),
    /// which the sequencer's `hash` goes on from.
    pub digest_log: super::stats::DigestLog,
    pub sessions: Vec<(i64, i32)>,
    pub tail: LogTail,
    /// Log records replayed after the snapshot.
    pub replayed: u64,
    /// The zxid of the snapshot loaded (it verified), if any.
    pub snapshot_zxid: Option<i64>,
    /// The newest logged txns after the snapshot as (zxid, txn entry bytes), in
    /// order, ending at `tail.last_zxid` when there are any: quorum mode's
    /// `DurableState.tail`. At most [`RECOVERY_TAIL_BYTES_MAX`] payload bytes.
    pub tail_records: Vec<(i64, Bytes)>,
    /// Older replayed records left out of `tail_records` by the bound.
    pub tail_records_dropped: u64,
    pub summary: String,
}

/// Loads the newest valid snapshot (in `snap_dir`, dataDir) and replays the log
/// (in `log_dir`, dataLogDir) after it.
pub fn recover(snap_dir: &Path, log_dir: &Path) -> Result<Recovered, StorageError> {
    recover_keeping(snap_dir, log_dir, RECOVERY_TAIL_BYTES_MAX)
}

/// [`recover`] for a standalone server, which has no replication core: keeps no
/// `tail_records` (a copy of every replayed txn, which would otherwise live as
/// long as the server).
pub fn recover_standalone(snap_dir: &Path, log_dir: &Path) -> Result<Recovered, StorageError> {
    recover_keeping(snap_dir, log_dir, 0)
}

/// [`recover`] keeping at most `tail_bytes_max` payload bytes of `tail_records`.
fn recover_keeping(
    snap_dir: &Path,
    log_dir: &Path,
    tail_bytes_max: usize,
) -> Result<Recovered, StorageError> {
    // Both callbacks below fill the same state: one after the other, never at once.
    let replay = std::cell::RefCell::new(Replay::default());
    let mut kept = TailRecords::new(tail_bytes_max);
    let started = Instant::now();
    let mut load = None;
    let mut apply_time = Duration::ZERO;
    // The snapshot's checksum is checked while it loads; a load whose snapshot then
    // fails it is dropped, so the load returns its tree instead of keeping it.
    let rec = storage::recover_overlapped(
        snap_dir,
        log_dir,
        |_info, r| {
            let t = Instant::now();
            let res = read_snapshot_body(&r.mapped()?);
            load = Some((t - started, t.elapsed()));
            res
        },
        |(tree, sessions)| replay.borrow_mut().adopt_snapshot(tree, sessions),
        |record| {
            let t = Instant::now();
            kept.push(&record);
            replay.borrow_mut().apply(record);
            apply_time += t.elapsed();
        },
    )?;
    let (found, load) = load.unwrap_or_default();
    tracing::info!(
        "recovery phases: snapshot found {found:?}, loaded and verified {load:?}; log read \
         and replayed {:?}, of which applying {apply_time:?}",
        started.elapsed().saturating_sub(found + load)
    );
    let mut replay = replay.into_inner();
    let digest_log = std::mem::take(&mut replay.digest_log);
    let (tree, sessions) = replay.finish()?;
    kept.report(rec.tail.last_zxid);
    let summary = format!(
        "recovered to zxid {:#x}: snapshot {}, {} log record(s) replayed{}, {} session(s), {} znode(s)",
        rec.tail.last_zxid,
        rec.snapshot
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_else(|| "none".into()),
        rec.replayed,
        rec.tail
            .torn
            .as_ref()
            .map(|t| format!(" (torn tail truncated: {t:?})"))
            .unwrap_or_default(),
        sessions.len(),
        tree.node_count()
    );
    for c in &rec.corrupt_snapshots {
        tracing::warn!("passed over a corrupt snapshot: {c}");
    }
    Ok(Recovered {
        tree,
        digest_log,
        sessions: sessions.into_iter().collect(),
        tail: rec.tail,
        replayed: rec.replayed,
        snapshot_zxid: rec.snapshot.as_ref().map(|s| s.zxid),
        tail_records: kept.records.into(),
        tail_records_dropped: kept.dropped,
        summary,
    })
}

/// The state as of an older zxid, rebuilt from disk ([`recover_upto`]).
#[allow(dead_code)] // The quorum sequencer (being wired) uses it.
pub struct Rebuilt {
    pub tree: Tree,
    pub sessions: Vec<(i64, i32)>,
    /// The zxid of the last txn applied (or of the snapshot).
    pub last_zxid: i64,
    pub snapshot_zxid: Option<i64>,
    pub replayed: u64,
    pub summary: String,
}

/// The tree and session table as of `zxid` (`Event::Rollback`): the newest valid
/// snapshot at or before it, then the logged txns up to and including it. Changes
/// no file, so it may run on the sequencer core with the log open (between
/// appends). [`RollbackError::needs_full_snapshot`]: the disk does not hold that
/// state (no usable snapshot and the log does not start history, or the log ends
/// before `zxid`); ask the leader for a whole snapshot.
#[allow(dead_code)] // The quorum sequencer (being wired) calls it.
pub fn recover_upto(snap_dir: &Path, log_dir: &Path, zxid: i64) -> Result<Rebuilt, RollbackError> {
    let replay = std::cell::RefCell::new(Replay::default());
    let rec = storage::recover_upto(
        snap_dir,
        log_dir,
        zxid,
        |_info, r| replay.borrow_mut().load_snapshot(r),
        |record| replay.borrow_mut().apply(record),
    )?;
    let (tree, sessions) = replay.into_inner().finish()?;
    let summary = format!(
        "rebuilt the state as of zxid {zxid:#x} (last txn {:#x}): snapshot {}, {} log record(s) replayed, {} session(s), {} znode(s)",
        rec.last_zxid,
        rec.snapshot
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_else(|| "none".into()),
        rec.replayed,
        sessions.len(),
        tree.node_count()
    );
    for c in &rec.corrupt_snapshots {
        tracing::warn!("passed over a corrupt snapshot: {c}");
    }
    Ok(Rebuilt {
        tree,
        sessions: sessions.into_iter().collect(),
        last_zxid: rec.last_zxid,
        snapshot_zxid: rec.snapshot.as_ref().map(|s| s.zxid),
        replayed: rec.replayed,
        summary,
    })
}

/// Tree and session table being rebuilt from a snapshot and logged txns.
#[derive(Default)]
struct Replay {
    tree: Tree,
    digest_log: super::stats::DigestLog,
    sessions: BTreeMap<i64, i32>,
    digests: DigestCheck,
    /// The first record that is not a txn this build can apply; replay stops there.
    bad: Option<StorageError>,
}

impl Replay {
    fn load_snapshot(&mut self, body: &mut dyn storage::SnapshotRead) -> io::Result<()> {
        let (t, s) = read_snapshot_body(&body.mapped()?)?;
        self.adopt_snapshot(t, s);
        Ok(())
    }

    fn adopt_snapshot(&mut self, tree: Tree, sessions: Vec<(i64, i32)>) {
        self.tree = tree;
        self.sessions = sessions.into_iter().collect();
    }

    /// Applies one logged txn: create/close-session txns change the session table,
    /// and the digest it carries is checked against the tree's after it.
    fn apply(&mut self, record: Record<'_>) {
        if self.bad.is_some() {
            return;
        }
        match Txn::decode(record.payload) {
            Ok((txn, digest)) if record.kind == KIND_TXN && txn.zxid == record.zxid => {
                match &txn.op {
                    TxnOp::CreateSession { timeout_ms } => {
                        self.sessions.insert(txn.session_id, *timeout_ms);
                    }
                    TxnOp::CloseSession { .. } => {
                        self.sessions.remove(&txn.session_id);
                    }
                    _ => {}
                }
                // As the reference restores (and as a learner applied it): a log that
                // follows a fuzzy snapshot from a reference leader may hold txns whose
                // effect the snapshot already has.
                tree::apply_restored(&mut self.tree, &txn);
                let _ = self.digests.check(txn.zxid, digest, self.tree.digest());
                if super::stats::DigestLog::wants(txn.zxid) {
                    self.digest_log.note(txn.zxid, self.tree.digest());
                }
            }
            other => {
                self.bad = Some(StorageError::Config(format!(
                    "log record {:#x} (kind {}) passed its checksum but is not a txn this \
                     build can apply: {:?}",
                    record.zxid,
                    record.kind,
                    other.err()
                )))
            }
        }
    }

    fn finish(self) -> Result<(Tree, BTreeMap<i64, i32>), StorageError> {
        if let Some(e) = self.bad {
            return Err(e);
        }
        self.digests.report();
        Ok((self.tree, self.sessions))
    }
}

/// The newest replayed records, within a byte bound (oldest dropped first).
struct TailRecords {
    records: VecDeque<(i64, Bytes)>,
    bytes: usize,
    bytes_max: usize,
    dropped: u64,
}

impl TailRecords {
    fn new(bytes_max: usize) -> TailRecords {
        TailRecords {
            records: VecDeque::new(),
            bytes: 0,
            bytes_max,
            dropped: 0,
        }
    }

    fn push(&mut self, r: &Record<'_>) {
        if r.payload.len() > self.bytes_max {
            self.dropped += 1;
            return;
        }
        self.records
            .push_back((r.zxid, Bytes::copy_from_slice(r.payload)));
        self.bytes += r.payload.len();
        while self.bytes > self.bytes_max {
            let (_, p) = self
                .records
                .pop_front()
                .expect("over the bound means non-empty");
            self.bytes -= p.len();
            self.dropped += 1;
        }
    }

    fn report(&self, last_zxid: i64) {
        if self.dropped > 0 && self.bytes_max > 0 {
            tracing::warn!(
                "recovery keeps the newest {} logged txn(s) ({} bytes, from {:#x} to {last_zxid:#x}) \
                 for the replication core and leaves out {} older one(s): over {} bytes",
                self.records.len(),
                self.bytes,
                self.records.front().map_or(last_zxid, |r| r.0),
                self.dropped,
                self.bytes_max
            );
        }
    }
}

/// Txns after a snapshot whose logged digest may differ from ours before one agrees
/// (the tree runs ahead of them while they replay what a fuzzy snapshot already
/// holds); past it, a mismatch is trouble again.
const FUZZY_TXNS_MAX: u64 = 1 << 20;

/// The digests logged with txns (or sent by the leader) against the tree's after
/// applying each: a mismatch is a sign that this build applies a txn differently
/// from the server that logged it. Txns right after a snapshot of a reference
/// leader's SNAP stream (fuzzy: written while later txns were applied) may find part
/// of their effect there and differ until the tree catches up: before the first
/// digest that agrees (within [`FUZZY_TXNS_MAX`]) a mismatch is an early one, trouble
/// only if no digest ever agrees. Recovery starts expecting early ones (it cannot
/// tell where its snapshot came from); a member's core after each SNAP it installs.
#[derive(Default)]
pub(super) struct DigestCheck {
    agreed: bool,
    early: u64,
    /// The first early one: (zxid, logged, computed).
    first_early: Option<(i64, u64, u64)>,
    mismatches: u64,
    /// The first after one agreed.
    first: Option<(i64, u64, u64)>,
}

/// What one txn's digest says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DigestSeen {
    /// Agrees, or none was logged.
    Fine,
    /// Differs before the first agreement.
    Early,
    /// The first agreement, after this many early mismatches.
    Settled(u64),
    Mismatch,
}

impl DigestCheck {
    /// Expecting every digest to agree (a member's own history).
    pub(super) fn agreeing() -> DigestCheck {
        DigestCheck {
            agreed: true,
            ..DigestCheck::default()
        }
    }

    /// From the next txn on, early mismatches are expected (a SNAP was installed).
    pub(super) fn expect_early(&mut self) {
        self.agreed = false;
        self.early = 0;
        self.first_early = None;
    }

    pub(super) fn mismatches(&self) -> u64 {
        self.mismatches
    }

    pub(super) fn reset_mismatches(&mut self) {
        self.mismatches = 0;
        self.first = None;
    }

    pub(super) fn check(&mut self, zxid: i64, logged: Option<u64>, computed: u64) -> DigestSeen {
        match logged {
            None => DigestSeen::Fine,
            Some(d) if d == computed => {
                if std::mem::replace(&mut self.agreed, true) || self.early == 0 {
                    DigestSeen::Fine
                } else {
                    DigestSeen::Settled(self.early)
                }
            }
            Some(d) if !self.agreed && self.early < FUZZY_TXNS_MAX => {
                self.early += 1;
                self.first_early.get_or_insert((zxid, d, computed));
                DigestSeen::Early
            }
            Some(d) => {
                self.agreed = true;
                self.mismatches += 1;
                self.first.get_or_insert((zxid, d, computed));
                DigestSeen::Mismatch
            }
        }
    }

    /// Once every txn was checked.
    fn verdict(&self) -> DigestVerdict {
        match (self.agreed, self.first_early, self.first) {
            (false, Some(first), _) => DigestVerdict::Mismatches {
                count: self.early,
                first,
            },
            (_, _, Some(first)) => DigestVerdict::Mismatches {
                count: self.mismatches,
                first,
            },
            _ if self.early > 0 => DigestVerdict::FuzzyStart(self.early),
            _ => DigestVerdict::Clean,
        }
    }

    fn report(&self) {
        match self.verdict() {
            DigestVerdict::Clean => {}
            DigestVerdict::FuzzyStart(n) => tracing::info!(
                "the first {n} replayed txn(s) found part of their effect already in the \
                 snapshot (one of a reference leader's fuzzy SNAP stream); the digests agree \
                 from then on"
            ),
            DigestVerdict::Mismatches {
                count,
                first: (zxid, logged, computed),
            } => tracing::warn!(
                "{count} replayed txn(s) left a tree digest other than the one logged; the \
                 first, zxid {zxid:#x}: logged {logged:#x}, computed {computed:#x}"
            ),
        }
    }
}

/// What a replay's digests say.
#[derive(Debug, PartialEq, Eq)]
enum DigestVerdict {
    Clean,
    /// Mismatches only before the first digest that agreed.
    FuzzyStart(u64),
    /// Mismatches after one agreed, or with none ever agreeing: (zxid, logged,
    /// computed) of the first.
    Mismatches {
        count: u64,
        first: (i64, u64, u64),
    },
}

pub fn write_snapshot_body(
    w: &mut dyn Write,
    tree: &Tree,
    sessions: &[(i64, i32)],
) -> io::Result<()> {
    w.write_all(&(sessions.len() as u64).to_be_bytes())?;
    for (id, timeout) in sessions {
        w.write_all(&id.to_be_bytes())?;
        w.write_all(&timeout.to_be_bytes())?;
    }
    tree.write_snapshot(w)
}

/// Bytes of one session entry in a snapshot body: id i64, timeout i32.
const SESSION_ENTRY_BYTES: usize = 12;

/// Decodes a snapshot body (as [`write_snapshot_body`] wrote it) from its bytes,
/// typically the mapped file.
fn read_snapshot_body(b: &[u8]) -> io::Result<(Tree, Vec<(i64, i32)>)> {
    let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "snapshot body too short");
    let (count, rest) = b.split_first_chunk::<8>().ok_or_else(short)?;
    let count = u64::from_be_bytes(*count);
    let table_bytes = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(SESSION_ENTRY_BYTES))
        .filter(|&n| n <= rest.len())
        .ok_or_else(short)?;
    let (table, tree_bytes) = rest.split_at(table_bytes);
    let sessions = table
        .chunks_exact(SESSION_ENTRY_BYTES)
        .map(|e| {
            let (id, timeout) = e.split_at(8);
            (
                i64::from_be_bytes(id.try_into().expect("8 bytes")),
                i32::from_be_bytes(timeout.try_into().expect("4 bytes")),
            )
        })
        .collect();
    let tree = Tree::read_snapshot_bytes(tree_bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((tree, sessions))
}

/// Old snapshots and log segments: `autopurge.snapRetainCount` snapshots are kept
/// with the log they need. Purging is on when `autopurge.purgeInterval` > 0, as on
/// the reference: at start-up, every interval, and after each snapshot (so disk use
/// stays bounded however often snapCount triggers). Shared by the snapshot threads
/// and the purge timer thread; the lock makes purges run one at a time.
pub struct Retention {
    snap_dir: PathBuf,
    log_dir: PathBuf,
    retain: usize,
    /// `autopurge.purgeInterval`; None: purging is off.
    purge_every: Option<Duration>,
    /// Snapshots known to verify (written here, or checked once): not read again.
    known_valid: Mutex<BTreeSet<i64>>,
}

impl Retention {
    /// `purge_interval_hours` ≤ 0 turns purging off, as on the reference.
    pub fn new(
        snap_dir: &Path,
        log_dir: &Path,
        retain: usize,
        purge_interval_hours: i64,
    ) -> Retention {
        Retention {
            snap_dir: snap_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            retain,
            purge_every: (purge_interval_hours > 0)
                .then(|| Duration::from_secs(purge_interval_hours as u64 * 3600)),
            known_valid: Mutex::new(BTreeSet::new()),
        }
    }

    /// Records that the snapshot of `zxid` verified (or was just written).
    pub fn note_valid(&self, zxid: i64) {
        self.known_valid
            .lock()
            .expect("retention lock")
            .insert(zxid);
    }

    /// Removes what the retention setting no longer needs, if purging is on.
    pub fn purge(&self) {
        if self.purge_every.is_none() {
            return;
        }
        let mut known = self.known_valid.lock().expect("retention lock");
        match storage::purge(&self.snap_dir, &self.log_dir, self.retain, &mut known) {
            Ok(r) if r.removed_snapshots.is_empty() && r.removed_logs.is_empty() => {}
            Ok(r) => tracing::info!(
                "purge: removed {} snapshot(s) and {} log segment(s), kept the newest {} snapshot(s)",
                r.removed_snapshots.len(),
                r.removed_logs.len(),
                self.retain
            ),
            Err(e) => tracing::warn!("purge failed: {e}"),
        }
    }

    /// Starts the purge timer thread when purging is on: it purges now and then
    /// every interval, at idle priority, for the life of the process.
    pub fn start_timer(self: &std::sync::Arc<Self>) -> io::Result<()> {
        let Some(interval) = self.purge_every else {
            return Ok(());
        };
        let me = self.clone();
        std::thread::Builder::new()
            .name("corral-purge".into())
            .spawn(move || {
                storage::lower_thread_priority();
                loop {
                    me.purge();
                    std::thread::sleep(interval);
                }
            })
            .map(|_| ())
    }
}

/// TRUNC (`Write::TruncateAfter`): drops every logged txn after `zxid`
/// ([`Log::truncate_after`]: blocking, durable on return) and every snapshot after
/// it (it would hold txns that are not the leader's history), while no purge runs.
/// Call it with no log sync out.
#[allow(dead_code)] // The quorum sequencer (being wired) calls it.
pub fn truncate_log(log: &mut Log, retention: &Retention, zxid: i64) -> Result<(), StorageError> {
    let mut known = retention.known_valid.lock().expect("retention lock");
    log.truncate_after(zxid)?;
    storage::remove_snapshots_after(&retention.snap_dir, zxid)?;
    known.retain(|z| *z <= zxid);
    Ok(())
}

/// SNAP (`Write::Snapshot`), once the snapshot at `zxid` is written and fsynced:
/// the whole log is obsolete ([`Log::reset`]) and so is every snapshot after
/// `zxid` (another history), in that order, so a crash in between leaves either
/// the old history or the new one; no purge runs meanwhile (it could otherwise
/// delete the new snapshot as older than ones about to go). Call it with no log
/// sync out and before appending anything after `zxid`.
#[allow(dead_code)] // The quorum sequencer (being wired) calls it.
pub fn adopt_snapshot(log: &mut Log, retention: &Retention, zxid: i64) -> Result<(), StorageError> {
    let mut known = retention.known_valid.lock().expect("retention lock");
    log.reset(zxid)?;
    storage::remove_snapshots_after(&retention.snap_dir, zxid)?;
    known.retain(|z| *z <= zxid);
    known.insert(zxid);
    Ok(())
}

/// Writes a snapshot of (tree, sessions) as of `tree.last_zxid()` into the
/// retention's snapshot dir, then purges.
/// Blocking, for a background thread whose priority it lowers for good (see
/// [`storage::lower_thread_priority`]): the snapshot uses only CPU and disk time the
/// write path leaves over.
pub fn snapshot_and_purge(tree: &Tree, sessions: &[(i64, i32)], retention: &Retention) {
    storage::lower_thread_priority();
    let zxid = tree.last_zxid();
    let started = std::time::Instant::now();
    let body = |w: &mut dyn Write| write_snapshot_body(w, tree, sessions);
    match storage::write_snapshot(&retention.snap_dir, zxid, body) {
        Ok(info) => {
            retention.note_valid(info.zxid);
            tracing::info!(
                "snapshot {} written ({} bytes, {} znodes) in {:?}",
                info.path.display(),
                info.body_bytes,
                tree.node_count(),
                started.elapsed()
            )
        }
        Err(e) => {
            tracing::error!("snapshot at zxid {zxid:#x} failed: {e}");
            return;
        }
    }
    retention.purge();
}

/// Starts writing a snapshot of (tree, sessions) on a thread of its own
/// ([`snapshot_and_purge`]) and records how long it took. The sequencer
/// (standalone) and the quorum core call it when their trigger fires, after setting
/// `busy` (which was clear); it is cleared when the snapshot ends, or at once if the
/// thread cannot start (logged).
pub fn spawn_snapshot(
    tree: Tree,
    sessions: Vec<(i64, i32)>,
    busy: Arc<AtomicBool>,
    retention: Arc<Retention>,
    stats: Arc<ServerStats>,
) {
    let flag = busy.clone();
    let spawned = std::thread::Builder::new()
        .name("corral-snapshot".into())
        .spawn(move || {
            let started = Instant::now();
            snapshot_and_purge(&tree, &sessions, &retention);
            stats
                .snapshot_ms
                .record(started.elapsed().as_millis() as u64);
            flag.store(false, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the snapshot thread: {e}");
        busy.store(false, Ordering::Relaxed);
    }
}

/// Session ids restored from disk, made live again with a fresh deadline.
pub fn restore_sessions(table: &mut SessionTable, sessions: &[(i64, i32)], now_ms: i64) {
    for &(id, timeout) in sessions {
        table.add(id, timeout, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, CreateKind};
    use crate::storage::{LogConfig, SyncMode};
    use crate::tree::CreateTxn;

    #[test]
    fn digest_mismatches_before_the_first_agreement_are_a_fuzzy_start() {
        let run = |checks: &[(i64, Option<u64>, u64)]| {
            let mut d = DigestCheck::default();
            for &(zxid, logged, computed) in checks {
                d.check(zxid, logged, computed);
            }
            d.verdict()
        };
        assert_eq!(run(&[(1, Some(5), 5), (2, None, 6)]), DigestVerdict::Clean);
        assert_eq!(
            run(&[
                (1, Some(5), 4),
                (2, Some(6), 7),
                (3, Some(8), 8),
                (4, Some(9), 9)
            ]),
            DigestVerdict::FuzzyStart(2)
        );
        assert_eq!(
            run(&[
                (1, Some(5), 4),
                (2, Some(6), 6),
                (3, Some(8), 7),
                (4, Some(9), 1)
            ]),
            DigestVerdict::Mismatches {
                count: 2,
                first: (3, 8, 7)
            }
        );
        assert_eq!(
            run(&[(1, Some(5), 4), (2, Some(6), 7)]),
            DigestVerdict::Mismatches {
                count: 2,
                first: (1, 5, 4)
            },
            "no digest ever agreed"
        );
    }

    /// A member's core expects every leader digest to agree, but for early ones
    /// after a SNAP, up to the first that agrees.
    #[test]
    fn after_a_snap_early_digest_mismatches_are_counted_apart() {
        let mut d = DigestCheck::agreeing();
        assert_eq!(d.check(1, Some(5), 4), DigestSeen::Mismatch);
        d.expect_early();
        assert_eq!(d.check(2, Some(6), 7), DigestSeen::Early);
        assert_eq!(d.check(3, None, 7), DigestSeen::Fine);
        assert_eq!(d.check(4, Some(8), 8), DigestSeen::Settled(1));
        assert_eq!(d.check(5, Some(9), 9), DigestSeen::Fine);
        assert_eq!(d.check(6, Some(9), 1), DigestSeen::Mismatch);
        assert_eq!(d.mismatches(), 2);
        d.reset_mismatches();
        assert_eq!(d.mismatches(), 0);
    }

    fn txn(zxid: i64, session_id: i64, op: TxnOp) -> Vec<u8> {
        let mut out = Vec::new();
        Txn {
            session_id,
            cxid: 0,
            zxid,
            time_ms: 0,
            op,
        }
        .encode(&mut out, None);
        out
    }

    fn create_op(path: String) -> TxnOp {
        TxnOp::Create(CreateTxn {
            path,
            data: Some(Vec::new()),
            acl: Acl::open(),
            ephemeral_owner: 0,
            parent_cversion: 0,
            kind: CreateKind::Create,
        })
    }

    /// The znode txn `zxid` of history `tag` creates.
    fn node(zxid: i64, tag: &str) -> String {
        format!("/{tag}-{zxid:x}")
    }

    /// Recovers `dir` and opens its log; also returns the zxids of the tail records.
    fn open_log(dir: &Path) -> (Log, Vec<i64>) {
        let rec = recover(dir, dir).unwrap();
        let zxids = rec.tail_records.iter().map(|r| r.0).collect();
        let cfg = LogConfig {
            segment_bytes: storage::log::SEGMENT_BYTES_MIN,
            sync: SyncMode::Fdatasync,
        };
        (Log::open(dir, cfg, rec.tail).unwrap(), zxids)
    }

    /// Logs creates of `node(z, tag)` for each zxid, synced.
    fn log_creates(log: &mut Log, zxids: impl IntoIterator<Item = i64>, tag: &str) {
        for z in zxids {
            log.append(z, KIND_TXN, &txn(z, 0, create_op(node(z, tag))))
                .unwrap();
        }
        let job = log.begin_sync().unwrap().unwrap();
        log.finish_sync(job.run()).unwrap();
    }

    fn snapshot_at(dir: &Path, zxid: i64) {
        let r = recover_upto(dir, dir, zxid).unwrap();
        assert_eq!(r.tree.last_zxid(), zxid);
        storage::write_snapshot(dir, zxid, |w| write_snapshot_body(w, &r.tree, &r.sessions))
            .unwrap();
    }

    fn has(tree: &Tree, path: &str) -> bool {
        tree.get(path).is_some()
    }

    fn retention(dir: &Path, retain: usize) -> Retention {
        Retention::new(dir, dir, retain, 1)
    }

    #[test]
    fn recovery_hands_the_txns_after_the_snapshot_to_the_core() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, tail) = open_log(d.path());
        assert!(tail.is_empty());
        log_creates(&mut log, 1..=20, "a");
        drop(log);
        snapshot_at(d.path(), 10);
        let rec = recover(d.path(), d.path()).unwrap();
        assert_eq!(rec.snapshot_zxid, Some(10));
        let zxids: Vec<i64> = rec.tail_records.iter().map(|r| r.0).collect();
        assert_eq!(zxids, (11..=20).collect::<Vec<_>>());
        for (z, payload) in &rec.tail_records {
            assert_eq!(&payload[..], &txn(*z, 0, create_op(node(*z, "a")))[..]);
        }
        assert_eq!(rec.tail_records_dropped, 0);
        assert!((1..=20).all(|z| has(&rec.tree, &node(z, "a"))));
    }

    #[test]
    fn the_tail_keeps_the_newest_txns_within_its_byte_bound() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = open_log(d.path());
        log_creates(&mut log, 1..=20, "a");
        drop(log);
        let one = txn(1, 0, create_op(node(1, "a"))).len();
        let rec = recover_keeping(d.path(), d.path(), 3 * one + one / 2).unwrap();
        let zxids: Vec<i64> = rec.tail_records.iter().map(|r| r.0).collect();
        assert_eq!(zxids, vec![18, 19, 20]);
        assert_eq!(rec.tail_records_dropped, 17);
        // The state itself is whole.
        assert_eq!(rec.tree.last_zxid(), 20);
        assert!((1..=20).all(|z| has(&rec.tree, &node(z, "a"))));
    }

    #[test]
    fn recover_upto_rebuilds_tree_and_sessions_as_of_a_zxid() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = open_log(d.path());
        let session = 0x77;
        let timeout = TxnOp::CreateSession { timeout_ms: 5000 };
        log.append(1, KIND_TXN, &txn(1, session, timeout)).unwrap();
        log_creates(&mut log, 2..=5, "a");
        let close = TxnOp::CloseSession { paths: Vec::new() };
        log.append(6, KIND_TXN, &txn(6, session, close)).unwrap();
        log_creates(&mut log, 7..=12, "a");
        snapshot_at(d.path(), 4);
        snapshot_at(d.path(), 9);
        // Between snapshots: the one at 4, then 5.
        let r = recover_upto(d.path(), d.path(), 5).unwrap();
        assert_eq!((r.snapshot_zxid, r.replayed, r.last_zxid), (Some(4), 1, 5));
        assert_eq!(r.sessions, vec![(session, 5000)]);
        assert!(has(&r.tree, &node(5, "a")) && !has(&r.tree, &node(7, "a")));
        let r = recover_upto(d.path(), d.path(), 6).unwrap();
        assert!(r.sessions.is_empty());
        // Before every snapshot: the log starts history.
        let r = recover_upto(d.path(), d.path(), 3).unwrap();
        assert_eq!((r.snapshot_zxid, r.last_zxid), (None, 3));
        assert_eq!(r.sessions, vec![(session, 5000)]);
        assert!(has(&r.tree, &node(3, "a")) && !has(&r.tree, &node(4, "a")));
        // With the log still open and appended to.
        log_creates(&mut log, 13..=14, "a");
        let r = recover_upto(d.path(), d.path(), 13).unwrap();
        assert_eq!((r.snapshot_zxid, r.last_zxid), (Some(9), 13));
        assert!(!has(&r.tree, &node(14, "a")));
        drop(log);
    }

    #[test]
    fn recover_upto_before_the_kept_history_asks_for_a_full_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = open_log(d.path());
        log_creates(&mut log, 1..=30, "a");
        snapshot_at(d.path(), 20);
        // A SNAP at 20: the log before it is gone.
        adopt_snapshot(&mut log, &retention(d.path(), 3), 20).unwrap();
        log_creates(&mut log, 21..=25, "a");
        let err = recover_upto(d.path(), d.path(), 15)
            .err()
            .expect("no state at 15");
        assert!(err.needs_full_snapshot(), "{err}");
        let r = recover_upto(d.path(), d.path(), 22).unwrap();
        assert_eq!((r.snapshot_zxid, r.replayed), (Some(20), 2));
        drop(log);
    }

    #[test]
    fn truncate_then_append_then_recover() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = open_log(d.path());
        log_creates(&mut log, 1..=20, "old");
        snapshot_at(d.path(), 8);
        // A snapshot past the cut would bring truncated txns back: it goes too.
        snapshot_at(d.path(), 18);
        let ret = retention(d.path(), 3);
        truncate_log(&mut log, &ret, 12).unwrap();
        let snaps: Vec<i64> = storage::list_snapshots(d.path())
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(snaps, vec![8]);
        log_creates(&mut log, 13..=15, "new");
        // Not synced: the process dies with these in the page cache.
        for z in 16..=17 {
            log.append(z, KIND_TXN, &txn(z, 0, create_op(node(z, "new"))))
                .unwrap();
        }
        drop(log);
        let rec = recover(d.path(), d.path()).unwrap();
        assert_eq!(rec.tail.last_zxid, 17);
        assert!((1..=12).all(|z| has(&rec.tree, &node(z, "old"))));
        assert!((13..=20).all(|z| !has(&rec.tree, &node(z, "old"))));
        assert!((13..=17).all(|z| has(&rec.tree, &node(z, "new"))));
        let zxids: Vec<i64> = rec.tail_records.iter().map(|r| r.0).collect();
        assert_eq!(zxids, (9..=17).collect::<Vec<_>>());
    }

    #[test]
    fn a_snapshot_adopted_from_the_leader_replaces_the_whole_history() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = open_log(d.path());
        log_creates(&mut log, 1..=30, "old");
        snapshot_at(d.path(), 10);
        snapshot_at(d.path(), 25);
        let ret = retention(d.path(), 1);
        ret.note_valid(25);
        // The leader's state at 20, another history: one znode.
        let mut theirs = Tree::new();
        let t = Txn {
            session_id: 0,
            cxid: 0,
            zxid: 20,
            time_ms: 0,
            op: create_op("/theirs".into()),
        };
        tree::apply(&mut theirs, &t);
        storage::write_snapshot(d.path(), 20, |w| write_snapshot_body(w, &theirs, &[])).unwrap();
        adopt_snapshot(&mut log, &ret, 20).unwrap();
        assert_eq!((log.last_zxid(), log.durable_zxid()), (20, 20));
        log_creates(&mut log, 21..=22, "new");
        drop(log);
        let rec = recover(d.path(), d.path()).unwrap();
        assert_eq!(rec.snapshot_zxid, Some(20));
        assert!(has(&rec.tree, "/theirs"));
        assert!((1..=30).all(|z| !has(&rec.tree, &node(z, "old"))));
        assert!((21..=22).all(|z| has(&rec.tree, &node(z, "new"))));
        let zxids: Vec<i64> = rec.tail_records.iter().map(|r| r.0).collect();
        assert_eq!(zxids, vec![21, 22]);
        // Purging afterwards keeps the newest snapshot and the log it needs.
        let (mut log, tail) = open_log(d.path());
        assert_eq!(tail, vec![21, 22]);
        log_creates(&mut log, 23..=24, "new");
        snapshot_at(d.path(), 23);
        ret.note_valid(23);
        ret.purge();
        let snaps: Vec<i64> = storage::list_snapshots(d.path())
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(snaps, vec![23]);
        drop(log);
        let rec = recover(d.path(), d.path()).unwrap();
        assert_eq!((rec.snapshot_zxid, rec.tail.last_zxid), (Some(23), 24));
        assert!(has(&rec.tree, "/theirs") && has(&rec.tree, &node(24, "new")));
    }
}
