//! What the sequencer core keeps on disk, composed from `storage` (opaque records and
//! snapshot bodies), `tree` (txns and tree snapshots) and `session` (the table).
//!
//! - Log records: one per txn, kind [`KIND_TXN`], payload ZooKeeper's txn entry
//!   (`Txn::encode`: header, record, the tree digest after the txn), the same bytes
//!   as a PROPOSAL or a reference txn-log record.
//! - Snapshot body: the session table (count, then id and timeout of each), then the
//!   tree's own snapshot format.
//! - Recovery: newest valid snapshot, then every logged txn after it applied in zxid
//!   order; create/close-session txns rebuild the session table; each txn's digest is
//!   compared with the tree's after it (a mismatch is logged). Restored sessions
//!   get a fresh deadline, so one whose client never comes back expires as it would
//!   on the reference server.
//!
//! - Retention ([`Retention`]): which snapshots are known valid, and purging old
//!   snapshots and log segments (`autopurge.*`), one purge at a time.
//!
//! Runs on the sequencer core at start-up (recovery) and on background threads
//! (snapshot writing, the purge timer) at idle CPU and I/O priority.

use crate::session::SessionTable;
use crate::storage::{self, LogTail, StorageError};
use crate::tree::{self, Tree, Txn, TxnOp};
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Log record kind of a tree txn (the only kind so far). Kind 1 was corral's own
/// txn encoding, which this build no longer reads.
pub const KIND_TXN: u8 = 2;

/// The state recovery rebuilt.
pub struct Recovered {
    pub tree: Tree,
    pub sessions: Vec<(i64, i32)>,
    pub tail: LogTail,
    /// Log records replayed after the snapshot.
    pub replayed: u64,
    /// The zxid of the snapshot loaded (it verified), if any.
    pub snapshot_zxid: Option<i64>,
    pub summary: String,
}

/// Loads the newest valid snapshot (in `snap_dir`, dataDir) and replays the log
/// (in `log_dir`, dataLogDir) after it.
pub fn recover(snap_dir: &Path, log_dir: &Path) -> Result<Recovered, StorageError> {
    // Both callbacks below fill the same state: one after the other, never at once.
    let state =
        std::cell::RefCell::new((Tree::new(), std::collections::BTreeMap::<i64, i32>::new()));
    let mut bad: Option<StorageError> = None;
    let mut digests = DigestCheck::default();
    let rec = storage::recover(
        snap_dir,
        log_dir,
        |_info, r| {
            let (t, s) = read_snapshot_body(r)?;
            *state.borrow_mut() = (t, s.into_iter().collect());
            Ok(())
        },
        |record| {
            if bad.is_some() {
                return;
            }
            let (tree, sessions) = &mut *state.borrow_mut();
            match Txn::decode(record.payload) {
                Ok((txn, digest)) if record.kind == KIND_TXN && txn.zxid == record.zxid => {
                    match &txn.op {
                        TxnOp::CreateSession { timeout_ms } => {
                            sessions.insert(txn.session_id, *timeout_ms);
                        }
                        TxnOp::CloseSession { .. } => {
                            sessions.remove(&txn.session_id);
                        }
                        _ => {}
                    }
                    tree::apply(tree, &txn);
                    digests.check(txn.zxid, digest, tree.digest());
                }
                other => {
                    bad = Some(StorageError::Config(format!(
                        "log record {:#x} (kind {}) passed its checksum but is not a txn this \
                         build can apply: {:?}",
                        record.zxid,
                        record.kind,
                        other.err()
                    )))
                }
            }
        },
    )?;
    if let Some(e) = bad {
        return Err(e);
    }
    digests.report();
    let (tree, sessions) = state.into_inner();
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
        sessions: sessions.into_iter().collect(),
        tail: rec.tail,
        replayed: rec.replayed,
        snapshot_zxid: rec.snapshot.as_ref().map(|s| s.zxid),
        summary,
    })
}

/// Replayed txns whose digest differs from the tree's after applying them: a sign
/// that this build applies a txn differently from the one that logged it.
#[derive(Default)]
struct DigestCheck {
    mismatches: u64,
    /// The first: (zxid, logged, computed).
    first: Option<(i64, u64, u64)>,
}

impl DigestCheck {
    fn check(&mut self, zxid: i64, logged: Option<u64>, computed: u64) {
        match logged {
            Some(d) if d != computed => {
                self.mismatches += 1;
                self.first.get_or_insert((zxid, d, computed));
            }
            _ => {}
        }
    }

    fn report(&self) {
        if let Some((zxid, logged, computed)) = self.first {
            tracing::warn!(
                "{} replayed txn(s) left a tree digest other than the one logged; the \
                 first, zxid {zxid:#x}: logged {logged:#x}, computed {computed:#x}",
                self.mismatches
            );
        }
    }
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

fn read_snapshot_body(r: &mut dyn Read) -> io::Result<(Tree, Vec<(i64, i32)>)> {
    let mut b8 = [0u8; 8];
    let mut b4 = [0u8; 4];
    r.read_exact(&mut b8)?;
    let n = u64::from_be_bytes(b8);
    let mut sessions = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        r.read_exact(&mut b8)?;
        r.read_exact(&mut b4)?;
        sessions.push((i64::from_be_bytes(b8), i32::from_be_bytes(b4)));
    }
    let tree = Tree::read_snapshot(r).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
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

/// Session ids restored from disk, made live again with a fresh deadline.
pub fn restore_sessions(table: &mut SessionTable, sessions: &[(i64, i32)], now_ms: i64) {
    for &(id, timeout) in sessions {
        table.add(id, timeout, now_ms);
    }
}
