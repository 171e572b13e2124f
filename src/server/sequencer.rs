//! The sequencer core: the one place writes are ordered. Owns the authoritative
//! `Tree`, the `SessionTable` and the zxid counter; runs on its own glommio executor.
//!
//! Loop: take every message that is waiting (up to `corral.batchRequestsMax`), turn
//! each write into a txn (`tree::prepare`, zxid and time decided here) and apply it
//! to the working tree, then make the batch durable, then publish one `Batch` (the
//! new tree version plus per-txn events and replies) to every shard. Whatever
//! arrives while a batch is being made durable forms the next batch (group commit).

use super::msg::*;
use super::stats::ServerStats;
use super::Mesh;
use crate::config::Config;
use crate::proto::{ConnectResponse, ErrorCode, Request, Response};
use crate::session::{negotiate_timeout, SessionTable};
use crate::tree::{self, Caller, Tree, TxnContext};
use std::sync::atomic::Ordering::Relaxed;
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
}

pub(super) async fn run(
    cfg: Arc<Config>,
    mesh: Mesh,
    rx: flume::Receiver<ToSequencer>,
    stats: Arc<ServerStats>,
    ready: std::sync::mpsc::Sender<(String, Result<(), String>)>,
) -> Result<(), String> {
    let now = now_ms();
    let mut s = Sequencer {
        sessions: SessionTable::new(0, now, cfg.tick_time_ms),
        tree: Tree::new(),
        last_zxid: 0,
        last_cleanup_ms: now,
        cfg: cfg.clone(),
        stats,
    };
    s.last_zxid = s.tree.last_zxid();
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
    // Publish the initial version so every shard starts from the same tree.
    s.publish(&mesh, Vec::new());
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
        // Durability point: the batch's txns are made durable here before any reply
        // or commit leaves this core (storage layer, issue 3).
        s.publish(&mesh, items);
        glommio::yield_if_needed().await;
    }
}

impl Sequencer {
    fn next_zxid(&mut self) -> i64 {
        self.last_zxid += 1;
        self.last_zxid
    }

    fn apply(&mut self, txn: &tree::Txn) -> tree::Applied {
        tree::apply(&mut self.tree, txn)
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
            self.apply(&txn);
            self.sessions.add(id, timeout, now);
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
                let applied = self.apply(&txn);
                self.sessions.remove(id);
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
                let applied = self.apply(&txn);
                items.push(Item {
                    zxid,
                    events: applied.events,
                    reply: reply(w.xid, applied.result),
                    closed_session: None,
                });
            }
        }
    }

    fn tick(&mut self, now: i64, items: &mut Vec<Item>) {
        for id in self.sessions.expire(now) {
            tracing::info!("session {id:#x} expired");
            let zxid = self.next_zxid();
            let txn = tree::close_session_txn(&self.tree, zxid, now, id);
            let applied = self.apply(&txn);
            self.sessions.remove(id);
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
                let applied = self.apply(&txn);
                items.push(Item {
                    zxid,
                    events: applied.events,
                    reply: None,
                    closed_session: None,
                });
            }
        }
    }

    fn publish(&mut self, mesh: &Mesh, items: Vec<Item>) {
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
