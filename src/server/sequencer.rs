//! The sequencer core: the one place writes are ordered. Owns the authoritative
//! `Tree`, the `SessionTable`, the log and the zxid counter; runs on a glommio
//! executor of its own, or as a task beside shard 0 on that shard's executor
//! (`corral.sequencerCore`, `server::run`). Either way it is one task, the only
//! owner of its state, and talks to the shards only through the mesh.
//!
//! Group commit: the loop takes every waiting message, turns each write into a txn
//! (`tree::prepare`, zxid and time decided here), has the log make room for it,
//! applies it to the working tree and appends it carrying the tree digest after it
//! (ZooKeeper's txn entry, as a PROPOSAL carries it). Whenever records wait and no
//! sync is out, it asks `gather` whether to wait briefly for the writes still on
//! their way (bounded by half a sync), then captures the working tree (an O(1)
//! persistent clone) and syncs everything appended so far (inline or on the
//! blocking pool: see `start_sync`). When the sync returns, every queued
//! item up to its zxid is published to every shard together with the tree captured
//! at its start, and the next sync covers all that arrived in the meantime.
//!
//! Durability order, enforced in code: an item leaves this core only in `publish`,
//! which needs the `Durable` proof that only a successful sync yields and asserts it
//! covers what is published; shards only ever see a tree version that is on disk.
//! If a sync fails, the log discards every record after the durable point, the
//! working tree goes back to the last published version, session changes (applied
//! only once durable) are dropped, and every waiting request fails with
//! SystemError. Snapshots are written from a published version on a background
//! thread.

use super::durable::{self, KIND_TXN};
use super::gather::{Decision, Gather};
use super::msg::*;
use super::stats::{self, ServerStats};
use super::sync_place::SyncPlace;
use super::Mesh;
use crate::config::{Config, SequencerCore};
use crate::proto::{ConnectResponse, ErrorCode, Request, Response};
use crate::session::{negotiate_timeout, SessionTable};
use crate::storage::{Durable, Log, LogConfig, SnapshotTrigger, SyncDone, SyncMode};
use crate::tree::{self, Caller, Tree, TxnContext};
use futures::future::{select, Either};
use rand::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a write waits for others to share its sync (`gather`); the wait
/// is also at most half the smoothed sync time.
const GATHER_WAIT_MAX: Duration = Duration::from_millis(1);

/// Wall-clock milliseconds: what txns carry (ctime, mtime) and TTLs compare with.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds of a monotonic clock (0 at first use): session deadlines and every
/// interval, so a wall-clock step neither expires nor prolongs a session.
pub(crate) fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// The two clocks, read once per batch of messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub wall: i64,
    pub mono: i64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            wall: now_ms(),
            mono: mono_ms(),
        }
    }
}

/// Before an expiry check, by both owners of a session table (this sequencer and
/// an ensemble's leader): time their core did not run moves the deadlines
/// (`SessionTable::catch_up`), and the log says so.
pub(crate) fn catch_up_sessions(sessions: &mut SessionTable, mono_ms: i64) {
    let lost_ms = sessions.catch_up(mono_ms);
    if lost_ms > 0 {
        tracing::warn!(
            "the session tracker did not run for over a tickTime (this process was paused \
             or its core held, e.g. by a stalled disk); every session's deadline moves \
             {lost_ms} ms later, as no client could be heard meanwhile"
        );
    }
}

/// A session-table change, applied when its txn is durable.
enum SessionChange {
    Add(i64, i32),
    Remove(i64),
}

struct Sequencer {
    cfg: Arc<Config>,
    /// The working tree: every appended txn applied, durable or not.
    tree: Tree,
    sessions: SessionTable,
    last_zxid: i64,
    /// The `hash` command's log of tree digests.
    digest_log: stats::DigestLog,
    /// The tree as of the log's durable zxid: what the shards have.
    durable_tree: Tree,
    /// The tree captured when the sync in flight started (as of its zxid).
    syncing_tree: Option<Tree>,
    /// Items in order, each with the zxid that must be durable before it goes out.
    pending: VecDeque<(i64, Item)>,
    pending_sessions: VecDeque<(i64, SessionChange)>,
    /// The tree version last sent to the shards (None before the first batch).
    published: Option<i64>,
    last_cleanup_ms: i64,
    stats: Arc<ServerStats>,
    log: Log,
    trigger: SnapshotTrigger,
    retention: Arc<durable::Retention>,
    snapshotting: Arc<AtomicBool>,
    want_snapshot: bool,
    rng: rand::rngs::SmallRng,
    enc: Vec<u8>,
    /// Rate limit of the corral.maxSessions refusal line: when the last one was
    /// logged (ms) and how many refusals were not logged since.
    session_refusals: (i64, u64),
    /// Set when the log can no longer be trusted (a failed sync could not be undone):
    /// the core stops after telling the waiting clients, as the reference exits on a
    /// log failure, rather than risk acknowledging what a restart might replay.
    fatal: Option<String>,
    /// A stop was asked (`ToSequencer::Shutdown`): take no more messages.
    stopping: bool,
    /// Group commit: whether to sync now or wait for more writes.
    gather: Gather,
    /// When the oldest unsynced txn was appended (None: none waits).
    gather_since: Option<std::time::Instant>,
    /// The zxid the sync out ends at (its txns: those after the durable zxid).
    syncing_upto: i64,
    /// Where syncs run when this core shares shard 0's executor
    /// (`corral.sequencerCore=shard`): inline while they are fast, else on the
    /// blocking pool, so a slow disk does not hold that shard's clients. `None`
    /// on a core of its own: always inline (PERF.md, "Storage: log sync").
    sync_place: Option<SyncPlace>,
}

/// A sync's result and how long it took (ready at once when it ran inline).
type SyncFuture = Pin<Box<dyn Future<Output = (SyncDone, Duration)>>>;

enum Wake {
    Msg(Result<ToSequencer, super::chan::RecvError>),
    Synced((SyncDone, Duration)),
    /// Group commit waited long enough for more writes (`gather`).
    Gathered,
}

pub(super) async fn run(
    cfg: Arc<Config>,
    mesh: Mesh,
    rx: super::chan::Receiver<ToSequencer>,
    stats: Arc<ServerStats>,
    ready: super::ReadyTx,
) -> Result<(), String> {
    let fail = |msg: String| {
        let _ = ready.send((
            super::SEQUENCER.into(),
            super::CoreNews::StartFailed(msg.clone()),
        ));
        Err(msg)
    };
    let now = now_ms();
    let dir = cfg.log_dir().to_path_buf();
    let snap_dir = cfg.data_dir.clone();
    let started = std::time::Instant::now();
    match crate::storage::zkdir::adopt(&snap_dir, &dir) {
        Ok(Some(imported)) => tracing::info!("{}", imported.summary),
        Ok(None) => {}
        Err(e) => return fail(format!("Apache ZooKeeper data: {e}")),
    }
    let mut rec = match durable::recover_standalone(&snap_dir, &dir) {
        Ok(r) => r,
        Err(e) => return fail(format!("recovery failed: {e}")),
    };
    tracing::info!("{} in {:?}", rec.summary, started.elapsed());
    let digest_log = std::mem::take(&mut rec.digest_log);
    let log_cfg = LogConfig {
        segment_bytes: cfg.log_segment_bytes,
        sync: if cfg.force_sync {
            SyncMode::Fdatasync
        } else {
            SyncMode::None
        },
    };
    let log = match Log::open(&dir, log_cfg, rec.tail) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot open the log in {}: {e}", dir.display())),
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(now as u64);
    // Restored sessions get their full timeout from the end of recovery.
    let now = Now::read();
    let mut sessions = SessionTable::new(0, now.wall, cfg.tick_time_ms);
    durable::restore_sessions(&mut sessions, &rec.sessions, now.mono);
    let replayed = rec.replayed;
    let retention = Arc::new(durable::Retention::new(
        &snap_dir,
        &dir,
        cfg.autopurge_snap_retain_count as usize,
        cfg.autopurge_purge_interval_hours,
    ));
    if let Some(z) = rec.snapshot_zxid {
        retention.note_valid(z);
    }
    if let Err(e) = retention.start_timer() {
        return fail(format!("cannot start the purge thread: {e}"));
    }
    let mut s = Sequencer {
        sessions,
        last_zxid: rec.tree.last_zxid(),
        durable_tree: rec.tree.clone(),
        digest_log,
        tree: rec.tree,
        syncing_tree: None,
        pending: VecDeque::new(),
        pending_sessions: VecDeque::new(),
        published: None,
        last_cleanup_ms: now.mono,
        trigger: SnapshotTrigger::new(
            cfg.snap_count,
            cfg.snap_size_limit_kb.saturating_mul(1024),
            rng.next_u64(),
        ),
        cfg: cfg.clone(),
        stats,
        log,
        retention,
        snapshotting: Arc::new(AtomicBool::new(false)),
        want_snapshot: false,
        rng,
        enc: Vec::with_capacity(4096),
        session_refusals: (i64::MIN, 0),
        fatal: None,
        stopping: false,
        gather: Gather::new(GATHER_WAIT_MAX),
        gather_since: None,
        syncing_upto: 0,
        sync_place: (cfg.sequencer_placement() == SequencerCore::Shard)
            .then(|| SyncPlace::new(Duration::from_micros(cfg.inline_sync_max_us))),
    };
    // Time enters as Tick messages, so the loop below is the only owner of the state.
    let ticker = mesh.to_sequencer.clone();
    let tick = Duration::from_millis((cfg.tick_time_ms as u64 / 2).max(10));
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(tick).await;
            if ticker.send(ToSequencer::Tick).is_err() {
                break;
            }
        }
    })
    .detach();
    // Publish the recovered version so every shard starts from the same tree.
    let proof = s.log.durable();
    s.publish(&mesh, proof);
    // As the reference does after loading its database: snapshot what was recovered
    // (in the background), so the next start does not replay the same log again and
    // the segments it covers can be purged.
    if replayed > 0 {
        s.want_snapshot = true;
        s.maybe_snapshot();
    }
    let _ = ready.send((super::SEQUENCER.into(), super::CoreNews::Up));

    let max = cfg.batch_requests_max;
    let mut sync: Option<SyncFuture> = None;
    loop {
        let mut gathering = None;
        if sync.is_none() {
            match s.gather_decision() {
                Decision::SyncNow => sync = s.start_sync(),
                Decision::Wait(d) => gathering = Some(d),
            }
        }
        // Items that wait for nothing unsynced (syncs, refusals, failed appends when
        // no sync is out) go now.
        if sync.is_none() {
            let proof = s.log.durable();
            s.publish(&mesh, proof);
        }
        // A finished sync first: its replies go out before more writes are taken.
        let wake = match (sync.as_mut(), gathering) {
            (Some(f), _) => match select(f, rx.recv_async()).await {
                Either::Left((done, _)) => Wake::Synced(done),
                Either::Right((m, _)) => Wake::Msg(m),
            },
            (None, Some(d)) => {
                let timer = std::pin::pin!(glommio::timer::sleep(d));
                match select(rx.recv_async(), timer).await {
                    Either::Left((m, _)) => Wake::Msg(m),
                    Either::Right(_) => Wake::Gathered,
                }
            }
            (None, None) => Wake::Msg(rx.recv_async().await),
        };
        match wake {
            Wake::Msg(Err(_)) => return Ok(()),
            Wake::Msg(Ok(m)) => {
                let now = Now::read();
                s.handle(m, now, &mesh);
                for _ in 1..max {
                    if s.stopping {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(m) => s.handle(m, now, &mesh),
                        Err(_) => break,
                    }
                }
                s.stats
                    .sequencer_inbox_depth
                    .store(rx.len() as u64, Relaxed);
            }
            Wake::Synced(done) => {
                sync = None;
                let queued = rx.len() as u64;
                s.on_synced(done, &mesh, queued);
            }
            // The wait for more writes is over: the next turn syncs what is there.
            Wake::Gathered => {}
        }
        if let Some(why) = s.fatal.take() {
            tracing::error!("stopping: {why}");
            return Err(why);
        }
        if s.stopping {
            return s.stop(sync, &mesh).await;
        }
        glommio::yield_if_needed().await;
    }
}

impl Sequencer {
    /// A sync returned: publish what it made durable, or fail what it could not.
    /// `queued`: messages waiting in the inbox as it returned.
    fn on_synced(&mut self, (done, took): (SyncDone, Duration), mesh: &Mesh, queued: u64) {
        self.stats.record_log_sync(took);
        // The writers of this cycle: the sync's own, those appended while it ran
        // on the pool (none when inline), and those still queued behind it.
        // (The log's durable zxid moves only in `finish_sync`, below.)
        let batch = (self.syncing_upto - self.log.durable_zxid()).max(0) as u64;
        let appended = (self.log.last_zxid() - self.syncing_upto).max(0) as u64;
        self.gather.synced(batch, took);
        self.gather.queued_behind(appended + queued);
        if let Some(place) = self.sync_place.as_mut() {
            place.synced(took);
        }
        let now = Now::read();
        match self.log.finish_sync(done) {
            Ok(proof) => {
                self.durable_tree = self.syncing_tree.take().expect("a sync was out");
                self.commit_sessions(proof.zxid(), now);
                self.publish(mesh, proof);
                self.maybe_snapshot();
            }
            Err(e) => {
                self.note_fatal(&e);
                self.fail_unsynced(now, &e.to_string());
                let proof = self.log.durable();
                self.publish(mesh, proof);
            }
        }
    }

    /// The end on a stop: sync everything appended (the sync out, then one more for
    /// what was appended meanwhile), publish what it covers, then tell every shard
    /// to close behind that last batch. Nothing is taken or acknowledged after it.
    async fn stop(&mut self, mut sync: Option<SyncFuture>, mesh: &Mesh) -> Result<(), String> {
        loop {
            if sync.is_none() {
                sync = self.start_sync();
            }
            let Some(f) = sync.take() else { break };
            let done = f.await;
            self.on_synced(done, mesh, 0);
        }
        let proof = self.log.durable();
        self.publish(mesh, proof);
        for tx in &mesh.to_shards {
            let _ = tx.send(ToShard::Shutdown);
        }
        match self.fatal.take() {
            Some(why) => Err(why),
            None => {
                tracing::info!(
                    "log durable up to zxid {:#x}; sequencer stopped",
                    self.log.durable_zxid()
                );
                Ok(())
            }
        }
    }

    fn next_zxid(&mut self) -> i64 {
        self.last_zxid += 1;
        self.last_zxid
    }

    /// Queues an item to go out once everything up to the current zxid is durable.
    fn queue(&mut self, item: Item) {
        self.pending.push_back((self.last_zxid, item));
    }

    /// Applies a txn and appends it to the log, carrying the tree digest after it.
    /// The log makes room first, so the txn is applied only once its append cannot
    /// fail. `None`: the log refused it; the txn is not applied and its zxid is given
    /// back.
    fn log_and_apply(&mut self, txn: &tree::Txn) -> Option<tree::Applied> {
        self.enc.clear();
        txn.encode(&mut self.enc, None);
        let digest_bytes = if txn.carries_digest() {
            tree::TXN_DIGEST_BYTES
        } else {
            0
        };
        if let Err(e) = self.log.reserve(txn.zxid, self.enc.len() + digest_bytes) {
            tracing::error!("log append of zxid {:#x} failed: {e}", txn.zxid);
            self.note_fatal(&e);
            self.last_zxid = txn.zxid - 1;
            return None;
        }
        let applied = tree::apply(&mut self.tree, txn);
        if stats::DigestLog::wants(txn.zxid) {
            self.digest_log.note(txn.zxid, self.tree.digest());
        }
        if txn.carries_digest() {
            tree::Txn::encode_digest(&mut self.enc, self.tree.digest());
        }
        self.log
            .append(txn.zxid, KIND_TXN, &self.enc)
            .expect("an append the log made room for");
        if self.trigger.record(self.enc.len() as u64) {
            self.want_snapshot = true;
        }
        Some(applied)
    }

    /// Group commit: sync what waits unsynced now, or wait for more (`gather`).
    fn gather_decision(&mut self) -> Decision {
        let unsynced = (self.log.last_zxid() - self.log.durable_zxid()).max(0) as u64;
        if unsynced == 0 || self.log.sync_in_flight() {
            self.gather_since = None;
            return Decision::SyncNow;
        }
        let since = *self
            .gather_since
            .get_or_insert_with(std::time::Instant::now);
        self.gather.decide(unsynced, since.elapsed())
    }

    /// Starts a sync of everything appended so far, capturing the tree version it will
    /// make publishable. On a core of its own the fdatasync runs inline: measured side
    /// by side (PERF.md History), handing it to glommio's blocking pool cost more in
    /// wake-ups than appending during the sync gained (writes +6-25 %, reads +10 %
    /// inline). Beside shard 0 it runs inline while syncs are fast and on the pool
    /// when they are not (`sync_place`), since an inline sync there also holds that
    /// shard's clients. Whatever arrives meanwhile forms the next batch, as in the
    /// reference's SyncRequestProcessor.
    fn start_sync(&mut self) -> Option<SyncFuture> {
        match self.log.begin_sync() {
            Ok(Some(job)) => {
                self.gather_since = None;
                self.syncing_upto = job.upto_zxid();
                self.syncing_tree = Some(self.tree.clone());
                let inline = !job.needs_blocking_thread()
                    || self.sync_place.as_ref().is_none_or(SyncPlace::inline);
                if inline {
                    Some(Box::pin(std::future::ready(job.run_timed())))
                } else {
                    Some(Box::pin(
                        glommio::executor().spawn_blocking(move || job.run_timed()),
                    ))
                }
            }
            Ok(None) => None,
            Err(e) => {
                // The log is poisoned: nothing appended since the durable point can
                // ever be made durable.
                self.note_fatal(&e);
                self.fail_unsynced(Now::read(), &e.to_string());
                None
            }
        }
    }

    fn note_fatal(&mut self, e: &crate::storage::StorageError) {
        if matches!(e, crate::storage::StorageError::Poisoned { .. }) && self.fatal.is_none() {
            self.fatal = Some(format!("the log cannot be trusted any more: {e}"));
        }
    }

    fn commit_sessions(&mut self, durable_zxid: i64, now: Now) {
        while let Some((z, _)) = self.pending_sessions.front() {
            if *z > durable_zxid {
                break;
            }
            match self.pending_sessions.pop_front().unwrap().1 {
                SessionChange::Add(id, timeout) => self.sessions.add(id, timeout, now.mono),
                SessionChange::Remove(id) => {
                    self.sessions.remove(id);
                }
            }
        }
    }

    /// Nothing after the log's durable zxid is on disk: go back to the durable tree
    /// and fail every request whose txn was not made durable.
    fn fail_unsynced(&mut self, now: Now, why: &str) {
        let durable = self.log.durable_zxid();
        if self.last_zxid <= durable && self.pending.is_empty() {
            return;
        }
        tracing::error!("log sync failed, failing the requests after zxid {durable:#x}: {why}");
        self.tree = self.durable_tree.clone();
        self.last_zxid = durable;
        self.syncing_tree = None;
        for (_, change) in std::mem::take(&mut self.pending_sessions) {
            if let SessionChange::Remove(id) = change {
                self.sessions.reopen(id, now.mono);
            }
        }
        for (needs, item) in self.pending.iter_mut() {
            if item.zxid <= durable {
                *needs = durable;
                continue;
            }
            *needs = durable;
            item.events.clear();
            item.closed_session = None;
            item.zxid = durable;
            if let Some(r) = &mut item.reply {
                r.kind = match &r.kind {
                    ReplyKind::Op { xid, .. } => ReplyKind::Op {
                        xid: *xid,
                        result: Err(ErrorCode::SystemError),
                    },
                    ReplyKind::Connect { .. } => ReplyKind::Connect {
                        response: Err(SESSION_NOT_DURABLE),
                        session_id: 0,
                    },
                    ReplyKind::Unanswered { xid } => ReplyKind::Unanswered { xid: *xid },
                };
            }
        }
    }

    fn maybe_snapshot(&mut self) {
        if !self.want_snapshot || self.snapshotting.swap(true, Relaxed) {
            return;
        }
        self.want_snapshot = false;
        self.trigger.reset(self.rng.next_u64());
        durable::spawn_snapshot(
            self.durable_tree.clone(),
            self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect(),
            self.snapshotting.clone(),
            self.retention.clone(),
            self.stats.clone(),
        );
    }

    fn handle(&mut self, m: ToSequencer, now: Now, mesh: &Mesh) {
        match m {
            ToSequencer::Connect { shard, conn, req } => self.connect(shard, conn, req, now),
            ToSequencer::Write(w) => self.write(*w, now),
            ToSequencer::Touch(ids) => {
                for id in ids {
                    self.sessions.touch(id, now.mono);
                }
            }
            ToSequencer::Tick => self.tick(now),
            ToSequencer::Report(tx) => {
                let _ = tx.send(self.report());
            }
            ToSequencer::ResetStats => {
                self.stats.reset_sequencer_metrics();
                for tx in &mesh.to_shards {
                    let _ = tx.send(ToShard::ResetStats);
                }
            }
            ToSequencer::Shutdown => self.stopping = true,
        }
    }

    fn connect(&mut self, shard: usize, conn: u64, req: crate::proto::ConnectRequest, now: Now) {
        let reply = |response, session_id| {
            Some(Reply {
                shard,
                conn,
                kind: ReplyKind::Connect {
                    response,
                    session_id,
                },
            })
        };
        let plain = |zxid, reply| Item {
            zxid,
            events: Vec::new(),
            reply,
            closed_session: None,
        };
        if req.last_zxid_seen > self.last_zxid {
            tracing::warn!(
                "refusing session request: client has seen zxid {:#x}, our last zxid is {:#x}",
                req.last_zxid_seen,
                self.last_zxid
            );
            self.queue(plain(self.last_zxid, reply(Err(CLIENT_AHEAD), 0)));
            return;
        }
        let timeout = negotiate_timeout(
            req.timeout_ms,
            self.cfg.min_session_timeout(),
            self.cfg.max_session_timeout(),
        );
        let read_only = req.read_only.map(|_| false);
        if req.session_id == 0 && self.at_session_limit() {
            self.note_session_refused(now.mono);
            let response = ConnectResponse::expired(req.read_only);
            self.queue(plain(self.last_zxid, reply(Ok(response), 0)));
            return;
        }
        if req.session_id == 0 {
            let id = self.sessions.allocate_id();
            let zxid = self.next_zxid();
            let txn = tree::create_session_txn(zxid, now.wall, id, timeout);
            if self.log_and_apply(&txn).is_none() {
                self.queue(plain(self.last_zxid, reply(Err(SESSION_NOT_DURABLE), 0)));
                return;
            }
            self.pending_sessions
                .push_back((zxid, SessionChange::Add(id, timeout)));
            let response = ConnectResponse {
                protocol_version: 0,
                timeout_ms: timeout,
                session_id: id,
                passwd: SessionTable::password(id).to_vec(),
                read_only,
            };
            self.queue(plain(zxid, reply(Ok(response), id)));
        } else {
            let id = req.session_id;
            let response =
                if self.sessions.is_live(id) && self.sessions.check_password(id, &req.passwd) {
                    self.sessions.touch(id, now.mono);
                    ConnectResponse {
                        protocol_version: 0,
                        timeout_ms: timeout,
                        session_id: id,
                        passwd: SessionTable::password(id).to_vec(),
                        read_only,
                    }
                } else {
                    ConnectResponse::expired(req.read_only)
                };
            let sid = response.session_id;
            self.queue(plain(self.last_zxid, reply(Ok(response), sid)));
        }
    }

    /// corral.maxSessions: live sessions, those created but not yet durable included
    /// (they are added to the table only once durable).
    fn at_session_limit(&self) -> bool {
        let max = self.cfg.max_sessions;
        if max == 0 {
            return false;
        }
        let creating = self
            .pending_sessions
            .iter()
            .filter(|(_, c)| matches!(c, SessionChange::Add(..)))
            .count();
        self.sessions.len() + creating >= max
    }

    /// A new session over corral.maxSessions is refused as the reference refuses an
    /// unknown session (a ConnectResponse with session id 0, then the close). One
    /// line per second at most: a client may retry in a loop.
    fn note_session_refused(&mut self, now: i64) {
        let (last, unlogged) = &mut self.session_refusals;
        if now.saturating_sub(*last) < 1000 {
            *unlogged += 1;
            return;
        }
        tracing::warn!(
            "refusing a new session: {} sessions live, the maximum is {} (corral.maxSessions){}",
            self.sessions.len(),
            self.cfg.max_sessions,
            match *unlogged {
                0 => String::new(),
                n => format!("; {n} more refused since the last warning"),
            }
        );
        *last = now;
        *unlogged = 0;
    }

    fn write(&mut self, w: WriteReq, now: Now) {
        let reply = |xid, result| {
            Some(Reply {
                shard: w.shard,
                conn: w.conn,
                kind: ReplyKind::Op { xid, result },
            })
        };
        let item = |zxid, events, reply, closed_session| Item {
            zxid,
            events,
            reply,
            closed_session,
        };
        if !self.sessions.is_live(w.session_id) {
            let z = self.last_zxid;
            self.queue(item(
                z,
                Vec::new(),
                reply(w.xid, Err(ErrorCode::SessionExpired)),
                None,
            ));
            return;
        }
        self.sessions.touch(w.session_id, now.mono);
        match &w.req {
            Request::Sync { path } => {
                // Goes out once everything before it is durable and, the shard
                // applying batches in order, applied on the client's shard.
                let z = self.last_zxid;
                let r = reply(w.xid, Ok(Response::Sync { path: path.clone() }));
                self.queue(item(z, Vec::new(), r, None));
            }
            Request::CloseSession => {
                let id = w.session_id;
                self.sessions.set_closing(id);
                let zxid = self.next_zxid();
                let txn = tree::close_session_txn(&self.tree, zxid, now.wall, id, w.xid);
                match self.log_and_apply(&txn) {
                    Some(applied) => {
                        self.pending_sessions
                            .push_back((zxid, SessionChange::Remove(id)));
                        let r = reply(w.xid, Ok(Response::Empty));
                        self.queue(item(zxid, applied.events, r, Some(id)));
                    }
                    None => {
                        self.sessions.reopen(id, now.mono);
                        let z = self.last_zxid;
                        let r = reply(w.xid, Err(ErrorCode::SystemError));
                        self.queue(item(z, Vec::new(), r, None));
                    }
                }
            }
            req => {
                let zxid = self.next_zxid();
                let ctx = TxnContext {
                    zxid,
                    time_ms: now.wall,
                    cxid: w.xid,
                    extended_types_enabled: self.cfg.extended_types_enabled,
                    max_data_bytes: self.cfg.jute_max_buffer_bytes,
                    enforce_quota: self.cfg.enforce_quota,
                    digest_enabled: self.cfg.digest_auth_enabled,
                    ephemerals_allowed: true,
                };
                let caller = Caller {
                    session_id: w.session_id,
                    ids: &w.ids,
                    is_super: w.is_super,
                };
                let txn = tree::prepare(&self.tree, &ctx, &caller, req);
                match self.log_and_apply(&txn) {
                    Some(applied) => {
                        let r = reply(w.xid, applied.result);
                        self.queue(item(zxid, applied.events, r, None));
                    }
                    None => {
                        let z = self.last_zxid;
                        let r = reply(w.xid, Err(ErrorCode::SystemError));
                        self.queue(item(z, Vec::new(), r, None));
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Now) {
        catch_up_sessions(&mut self.sessions, now.mono);
        for id in self.sessions.expire(now.mono) {
            tracing::info!("session {id:#x} expired");
            let zxid = self.next_zxid();
            let txn = tree::close_session_txn(&self.tree, zxid, now.wall, id, 0);
            let Some(applied) = self.log_and_apply(&txn) else {
                self.sessions.reopen(id, now.mono);
                continue;
            };
            self.pending_sessions
                .push_back((zxid, SessionChange::Remove(id)));
            self.queue(Item {
                zxid,
                events: applied.events,
                reply: None,
                closed_session: Some(id),
            });
        }
        if now.mono - self.last_cleanup_ms >= self.cfg.container_check_interval_ms as i64 {
            self.last_cleanup_ms = now.mono;
            for path in self.tree.cleanup_candidates(now.wall) {
                let zxid = self.next_zxid();
                let txn = tree::cleanup_txn(&self.tree, zxid, now.wall, &path);
                let Some(applied) = self.log_and_apply(&txn) else {
                    break;
                };
                self.queue(Item {
                    zxid,
                    events: applied.events,
                    reply: None,
                    closed_session: None,
                });
            }
        }
    }

    /// Sends every queued item that `proof` covers to every shard, with the durable
    /// tree version. Nothing else sends to the shards.
    fn publish(&mut self, mesh: &Mesh, proof: Durable) {
        let upto = proof.zxid();
        assert!(
            self.durable_tree.last_zxid() <= upto,
            "publishing a tree at zxid {:#x} with only {upto:#x} durable",
            self.durable_tree.last_zxid()
        );
        let n = self
            .pending
            .iter()
            .take_while(|(needs, _)| *needs <= upto)
            .count();
        if n == 0 && self.published == Some(self.durable_tree.last_zxid()) {
            return;
        }
        self.published = Some(self.durable_tree.last_zxid());
        let items: Vec<Item> = self.pending.drain(..n).map(|(_, i)| i).collect();
        if !items.is_empty() {
            self.stats.commit_batch_size.record(items.len() as u64);
        }
        let batch = Arc::new(Batch {
            tree: Arc::new(self.durable_tree.clone()),
            last_zxid: self.durable_tree.last_zxid(),
            items,
        });
        // Release: a shard that sees this zxid finds the batch in its inbox (catch_up).
        self.stats
            .last_zxid
            .store(batch.last_zxid, std::sync::atomic::Ordering::Release);
        self.stats
            .node_count
            .store(self.durable_tree.node_count() as u64, Relaxed);
        self.stats
            .session_count
            .store(self.sessions.len() as u64, Relaxed);
        for (shard, tx) in mesh.to_shards.iter().enumerate() {
            if let Err(super::chan::SendError::Full(_)) = tx.send(ToShard::Batch(batch.clone())) {
                // A shard that misses a batch would serve a stale tree: stop instead.
                self.fatal.get_or_insert_with(|| super::shard_stuck(shard));
            }
        }
    }

    fn report(&self) -> SequencerReport {
        SequencerReport {
            digest_log: self.digest_log.entries(),
            ..SequencerReport::of(&self.durable_tree, &self.sessions)
        }
    }
}
