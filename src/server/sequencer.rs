//! The sequencer core: the one place writes are ordered. Owns the authoritative
//! `Tree`, the `SessionTable` and the zxid counter; runs on its own glommio executor.
//!
//! Loop: take every message that is waiting (up to `corral.batchRequestsMax`), turn
//! each write into a txn (`tree::prepare`, zxid and time decided here) and apply it
//! to the working tree, then make the batch durable, then publish one `Batch` (the
//! new tree version plus per-txn events and replies) to every shard. Whatever
//! arrives while a batch is being made durable forms the next batch (group commit).
//!
//! Durability order, enforced in code: a txn is appended to the log before it is
//! applied (a failed append leaves nothing to undo); the batch's sync runs on a
//! blocking thread; `publish` takes the `Durable` proof that only a successful sync
//! yields. If the sync fails the tree goes back to the batch's base version (an O(1)
//! persistent clone), session changes (applied only after the sync) are dropped, and
//! the batch's requests fail with SystemError — nothing unsynced is ever acknowledged.
//! Snapshots are written from a published version on a background thread.

use super::durable::{self, KIND_TXN};
use super::msg::*;
use super::stats::ServerStats;
use super::Mesh;
use crate::config::Config;
use crate::proto::{ConnectResponse, ErrorCode, Request, Response};
use crate::session::{negotiate_timeout, SessionTable};
use crate::storage::{Durable, Log, LogConfig, SnapshotTrigger, SyncMode};
use crate::tree::{self, Caller, Tree, TxnContext};
use rand::{RngCore, SeedableRng};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Sequencer {
    cfg: Arc<Config>,
    tree: Tree,
    sessions: SessionTable,
    last_zxid: i64,
    last_cleanup_ms: i64,
    stats: Arc<ServerStats>,
    log: Log,
    dir: PathBuf,
    trigger: SnapshotTrigger,
    snapshotting: Arc<AtomicBool>,
    want_snapshot: bool,
    rng: rand::rngs::SmallRng,
    enc: Vec<u8>,
    batch: BatchState,
}

/// What the batch being built changed, so it can be committed or undone as a whole.
#[derive(Default)]
struct BatchState {
    /// The tree and zxid before the batch's first txn.
    base: Option<(Tree, i64)>,
    /// Log bytes appended per txn (for the snapshot trigger).
    appended: Vec<u64>,
    /// The first storage failure; every later txn of the batch fails too.
    failed: Option<String>,
    /// Session table changes, applied once the batch is durable.
    session_adds: Vec<(i64, i32)>,
    session_removes: Vec<i64>,
}

pub(super) async fn run(
    cfg: Arc<Config>,
    mesh: Mesh,
    rx: flume::Receiver<ToSequencer>,
    stats: Arc<ServerStats>,
    ready: std::sync::mpsc::Sender<(String, Result<(), String>)>,
) -> Result<(), String> {
    let now = now_ms();
    let dir = cfg.log_dir().to_path_buf();
    let started = std::time::Instant::now();
    let rec = match durable::recover(&dir) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("recovery from {} failed: {e}", dir.display());
            let _ = ready.send(("corral-sequencer".into(), Err(msg.clone())));
            return Err(msg);
        }
    };
    tracing::info!("{} in {:?}", rec.summary, started.elapsed());
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
        Err(e) => {
            let msg = format!("cannot open the log in {}: {e}", dir.display());
            let _ = ready.send(("corral-sequencer".into(), Err(msg.clone())));
            return Err(msg);
        }
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(now as u64);
    let mut sessions = SessionTable::new(0, now, cfg.tick_time_ms);
    durable::restore_sessions(&mut sessions, &rec.sessions, now);
    let mut s = Sequencer {
        sessions,
        last_zxid: rec.tree.last_zxid(),
        tree: rec.tree,
        last_cleanup_ms: now,
        trigger: SnapshotTrigger::new(cfg.snap_count, 0, rng.next_u64()),
        cfg: cfg.clone(),
        stats,
        log,
        dir,
        snapshotting: Arc::new(AtomicBool::new(false)),
        want_snapshot: false,
        rng,
        enc: Vec::with_capacity(4096),
        batch: BatchState::default(),
    };
    // Time enters as Tick messages, so the loop below is the only owner of the state.
    let ticker = mesh.to_sequencer.clone();
    let tick = Duration::from_millis((cfg.tick_time_ms as u64 / 2).max(10));
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(tick).await;
            if ticker.send_async(ToSequencer::Tick).await.is_err() {
                break;
            }
        }
    })
    .detach();
    // Publish the recovered version so every shard starts from the same tree.
    let proof = s.log.durable();
    s.publish(&mesh, Vec::new(), proof);
    let _ = ready.send(("corral-sequencer".into(), Ok(())));

    let max = cfg.batch_requests_max;
    loop {
        let first = match rx.recv_async().await {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let now = now_ms();
        let mut items = Vec::new();
        s.handle(first, now, &mut items, &mesh);
        let mut n = 1;
        while n < max {
            match rx.try_recv() {
                Ok(m) => s.handle(m, now, &mut items, &mesh),
                Err(_) => break,
            }
            n += 1;
        }
        if items.is_empty() {
            continue;
        }
        match s.make_durable().await {
            Ok(proof) => {
                s.commit_sessions(now);
                s.publish(&mesh, items, proof);
                s.maybe_snapshot();
            }
            Err(why) => {
                s.undo_batch(&mut items, now, &why);
                let proof = s.log.durable();
                s.publish(&mesh, items, proof);
            }
        }
        glommio::yield_if_needed().await;
    }
}

impl Sequencer {
    fn next_zxid(&mut self) -> i64 {
        self.last_zxid += 1;
        self.last_zxid
    }

    /// Appends a txn to the log, then applies it. `None`: the append failed (or an
    /// earlier one in this batch did); the txn is not applied and its zxid is
    /// given back.
    fn log_and_apply(&mut self, txn: &tree::Txn) -> Option<tree::Applied> {
        if self.batch.base.is_none() {
            self.batch.base = Some((self.tree.clone(), txn.zxid - 1));
        }
        if self.batch.failed.is_none() {
            self.enc.clear();
            txn.encode(&mut self.enc);
            match self.log.append(txn.zxid, KIND_TXN, &self.enc) {
                Ok(()) => self.batch.appended.push(self.enc.len() as u64),
                Err(e) => {
                    tracing::error!("log append of zxid {:#x} failed: {e}", txn.zxid);
                    self.batch.failed = Some(e.to_string());
                }
            }
        }
        if self.batch.failed.is_some() {
            self.last_zxid = txn.zxid - 1;
            return None;
        }
        Some(tree::apply(&mut self.tree, txn))
    }

    /// Syncs the batch's records (on a blocking thread: never on this executor).
    async fn make_durable(&mut self) -> Result<Durable, String> {
        if let Some(why) = self.batch.failed.clone() {
            // Records appended before the failure still go to disk with their batch;
            // the failed ones were never applied.
            if self.batch.appended.is_empty() {
                return Ok(self.log.durable());
            }
            tracing::warn!("batch partly failed: {why}");
        }
        let job = match self.log.begin_sync() {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(self.log.durable()),
            Err(e) => return Err(e.to_string()),
        };
        let done = glommio::executor().spawn_blocking(move || job.run()).await;
        self.log.finish_sync(done).map_err(|e| e.to_string())
    }

    fn commit_sessions(&mut self, now: i64) {
        let b = std::mem::take(&mut self.batch);
        for (id, timeout) in b.session_adds {
            self.sessions.add(id, timeout, now);
        }
        for id in b.session_removes {
            self.sessions.remove(id);
        }
        for bytes in b.appended {
            if self.trigger.record(bytes) {
                self.want_snapshot = true;
            }
        }
    }

    /// The sync failed: nothing of this batch's txns is on disk. Go back to the
    /// base version and fail every request whose txn was in the batch.
    fn undo_batch(&mut self, items: &mut [Item], now: i64, why: &str) {
        tracing::error!("log sync failed, failing the batch's requests: {why}");
        let b = std::mem::take(&mut self.batch);
        let Some((tree, zxid)) = b.base else { return };
        self.tree = tree;
        self.last_zxid = zxid;
        for id in b.session_removes {
            self.sessions.reopen(id, now);
        }
        for item in items.iter_mut().filter(|i| i.zxid > zxid) {
            item.events.clear();
            item.closed_session = None;
            item.zxid = zxid;
            if let Some(r) = &mut item.reply {
                r.kind = match &r.kind {
                    ReplyKind::Op { xid, .. } => ReplyKind::Op {
                        xid: *xid,
                        result: Err(ErrorCode::SystemError),
                    },
                    ReplyKind::Connect { .. } => ReplyKind::Connect {
                        response: None,
                        session_id: 0,
                    },
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
        let tree = self.tree.clone();
        let sessions: Vec<(i64, i32)> =
            self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
        let (dir, flag) = (self.dir.clone(), self.snapshotting.clone());
        let retain = self.cfg.autopurge_snap_retain_count as usize;
        let spawned = std::thread::Builder::new()
            .name("corral-snapshot".into())
            .spawn(move || {
                durable::snapshot_and_purge(&dir, &tree, &sessions, retain);
                flag.store(false, Relaxed);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the snapshot thread: {e}");
            self.snapshotting.store(false, Relaxed);
        }
    }

    fn handle(&mut self, m: ToSequencer, now: i64, items: &mut Vec<Item>, mesh: &Mesh) {
        match m {
            ToSequencer::Connect { shard, conn, req } => self.connect(shard, conn, req, now, items),
            ToSequencer::Write(w) => self.write(*w, now, items),
            ToSequencer::Touch(ids) => {
                for id in ids {
                    self.sessions.touch(id, now);
                }
            }
            ToSequencer::Tick => self.tick(now, items),
            ToSequencer::Report(tx) => {
                let _ = tx.send(self.report());
            }
            ToSequencer::ResetStats => {
                for tx in &mesh.to_shards {
                    let _ = tx.send(ToShard::ResetStats);
                }
            }
        }
    }

    fn connect(
        &mut self,
        shard: usize,
        conn: u64,
        req: crate::proto::ConnectRequest,
        now: i64,
        items: &mut Vec<Item>,
    ) {
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
        if req.last_zxid_seen > self.last_zxid {
            tracing::warn!(
                "refusing session request: client has seen zxid {:#x}, our last zxid is {:#x}",
                req.last_zxid_seen,
                self.last_zxid
            );
            items.push(Item {
                zxid: self.last_zxid,
                events: Vec::new(),
                reply: reply(None, 0),
                closed_session: None,
            });
            return;
        }
        let timeout = negotiate_timeout(
            req.timeout_ms,
            self.cfg.min_session_timeout(),
            self.cfg.max_session_timeout(),
        );
        let read_only = req.read_only.map(|_| false);
        if req.session_id == 0 {
            let id = self.sessions.allocate_id();
            let zxid = self.next_zxid();
            let txn = tree::create_session_txn(zxid, now, id, timeout);
            if self.log_and_apply(&txn).is_none() {
                items.push(Item {
                    zxid: self.last_zxid,
                    events: Vec::new(),
                    reply: reply(None, 0),
                    closed_session: None,
                });
                return;
            }
            self.batch.session_adds.push((id, timeout));
            let response = ConnectResponse {
                protocol_version: 0,
                timeout_ms: timeout,
                session_id: id,
                passwd: SessionTable::password(id).to_vec(),
                read_only,
            };
            items.push(Item {
                zxid,
                events: Vec::new(),
                reply: reply(Some(response), id),
                closed_session: None,
            });
        } else {
            let id = req.session_id;
            let response =
                if self.sessions.is_live(id) && self.sessions.check_password(id, &req.passwd) {
                    self.sessions.touch(id, now);
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
            items.push(Item {
                zxid: self.last_zxid,
                events: Vec::new(),
                reply: reply(Some(response), sid),
                closed_session: None,
            });
        }
    }

    fn write(&mut self, w: WriteReq, now: i64, items: &mut Vec<Item>) {
        let reply = |xid, result| {
            Some(Reply {
                shard: w.shard,
                conn: w.conn,
                kind: ReplyKind::Op { xid, result },
            })
        };
        if !self.sessions.is_live(w.session_id) {
            items.push(Item {
                zxid: self.last_zxid,
                events: Vec::new(),
                reply: reply(w.xid, Err(ErrorCode::SessionExpired)),
                closed_session: None,
            });
            return;
        }
        self.sessions.touch(w.session_id, now);
        match &w.req {
            Request::Sync { path } => {
                // Everything committed before it is in this batch or an earlier one, and
                // the shard applies batches in order: the reply is the sync.
                items.push(Item {
                    zxid: self.last_zxid,
                    events: Vec::new(),
                    reply: reply(w.xid, Ok(Response::Sync { path: path.clone() })),
                    closed_session: None,
                });
            }
            Request::CloseSession => {
                let id = w.session_id;
                self.sessions.set_closing(id);
                let zxid = self.next_zxid();
                let txn = tree::close_session_txn(&self.tree, zxid, now, id);
                let Some(applied) = self.log_and_apply(&txn) else {
                    self.sessions.reopen(id, now);
                    items.push(Item {
                        zxid: self.last_zxid,
                        events: Vec::new(),
                        reply: reply(w.xid, Err(ErrorCode::SystemError)),
                        closed_session: None,
                    });
                    return;
                };
                self.batch.session_removes.push(id);
                items.push(Item {
                    zxid,
                    events: applied.events,
                    reply: reply(w.xid, Ok(Response::Empty)),
                    closed_session: Some(id),
                });
            }
            req => {
                let zxid = self.next_zxid();
                let ctx = TxnContext {
                    zxid,
                    time_ms: now,
                    extended_types_enabled: self.cfg.extended_types_enabled,
                    max_data_bytes: self.cfg.jute_max_buffer_bytes,
                };
                let caller = Caller {
                    session_id: w.session_id,
                    ids: &w.ids,
                    is_super: w.is_super,
                };
                let txn = tree::prepare(&self.tree, &ctx, &caller, req);
                match self.log_and_apply(&txn) {
                    Some(applied) => items.push(Item {
                        zxid,
                        events: applied.events,
                        reply: reply(w.xid, applied.result),
                        closed_session: None,
                    }),
                    None => items.push(Item {
                        zxid: self.last_zxid,
                        events: Vec::new(),
                        reply: reply(w.xid, Err(ErrorCode::SystemError)),
                        closed_session: None,
                    }),
                }
            }
        }
    }

    fn tick(&mut self, now: i64, items: &mut Vec<Item>) {
        for id in self.sessions.expire(now) {
            tracing::info!("session {id:#x} expired");
            let zxid = self.next_zxid();
            let txn = tree::close_session_txn(&self.tree, zxid, now, id);
            let Some(applied) = self.log_and_apply(&txn) else {
                self.sessions.reopen(id, now);
                continue;
            };
            self.batch.session_removes.push(id);
            items.push(Item {
                zxid,
                events: applied.events,
                reply: None,
                closed_session: Some(id),
            });
        }
        if now - self.last_cleanup_ms >= self.cfg.container_check_interval_ms as i64 {
            self.last_cleanup_ms = now;
            for path in self.tree.cleanup_candidates(now) {
                let zxid = self.next_zxid();
                let txn = tree::cleanup_txn(&self.tree, zxid, now, &path);
                let Some(applied) = self.log_and_apply(&txn) else {
                    break;
                };
                items.push(Item {
                    zxid,
                    events: applied.events,
                    reply: None,
                    closed_session: None,
                });
            }
        }
    }

    /// Sends the batch to every shard. The `Durable` proof comes only from a
    /// successful sync of everything up to the batch's last zxid.
    fn publish(&mut self, mesh: &Mesh, items: Vec<Item>, proof: Durable) {
        assert!(
            proof.zxid() >= self.last_zxid,
            "publishing zxid {:#x} with only {:#x} durable",
            self.last_zxid,
            proof.zxid()
        );
        let batch = Arc::new(Batch {
            tree: Arc::new(self.tree.clone()),
            last_zxid: self.last_zxid,
            items,
        });
        self.stats.last_zxid.store(self.last_zxid, Relaxed);
        self.stats
            .node_count
            .store(self.tree.node_count() as u64, Relaxed);
        self.stats
            .session_count
            .store(self.sessions.len() as u64, Relaxed);
        for tx in &mesh.to_shards {
            let _ = tx.send(ToShard::Batch(batch.clone()));
        }
    }

    fn report(&self) -> SequencerReport {
        let mut sessions: Vec<(i64, i32, Vec<String>)> = self
            .sessions
            .iter()
            .map(|s| (s.id, s.timeout_ms, self.tree.ephemerals_of(s.id)))
            .collect();
        sessions.sort();
        SequencerReport {
            last_zxid: self.last_zxid,
            node_count: self.tree.node_count(),
            approximate_data_size: self.tree.approximate_data_size(),
            ephemeral_count: self.tree.ephemeral_count(),
            digest: self.tree.digest(),
            sessions,
        }
    }
}
