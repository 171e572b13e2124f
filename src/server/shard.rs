//! A shard core: accepts client connections on its own SO_REUSEPORT listener, owns
//! them, their sessions' watch registry and a read view (the latest published tree
//! version). Runs on its own glommio executor; state lives in one `RefCell` that is
//! never borrowed across an await.
//!
//! Per connection, requests are answered strictly in arrival order: a read that
//! arrives while one of the session's writes is still at the sequencer waits in the
//! connection's queue behind it. When a commit batch arrives the shard switches to
//! its tree version, writes every watch event of the batch, then each reply followed
//! by the reads queued behind it — so an event always precedes any reply that shows
//! its effect.

use super::msg::*;
use super::stats::ServerStats;
use super::Mesh;
use crate::admin;
use crate::config::Config;
use crate::proto::{
    self, jute, write_event, write_reply, xid, AddWatchMode, ConnectRequest, ErrorCode, EventType,
    Id, KeeperState, Reader, Request, RequestHeader, Response, SetWatches, WatcherEvent,
    WatcherType,
};
use crate::tree::{self, Caller, Tree};
use crate::watch::{ConnId, WatchRegistry};
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the ConnectRequest (or a four-letter word).
    AwaitConnect,
    /// ConnectRequest sent to the sequencer; reading paused.
    Handshaking,
    Open,
}

enum Pending {
    /// A write at the sequencer; its reply releases what queued behind it.
    Write { xid: i32, at: Instant },
    /// A read that arrived behind a pending write.
    Read { xid: i32, req: Request, at: Instant },
    /// A reply computed on arrival (ping, auth, setWatches), waiting for its turn.
    Ready(Vec<u8>),
    /// A write that arrived behind a deferred read: it goes to the sequencer only when
    /// the reads before it have been served, so none of them can see it.
    Unsent(Box<WriteReq>, Instant),
}

struct Conn {
    peer: SocketAddr,
    phase: Phase,
    session_id: i64,
    timeout_ms: i32,
    ids: Arc<Vec<Id>>,
    is_super: bool,
    out: Vec<u8>,
    waker: Option<Waker>,
    /// Close once `out` is flushed.
    closing: bool,
    queue: VecDeque<Pending>,
    received: u64,
    sent: u64,
    last_zxid: i64,
}

/// What the connection task should do after feeding bytes to the shard.
enum After {
    Continue,
    FourLetter(String),
}

struct Shard {
    id: usize,
    /// This shard's inbox; also drained inline by `catch_up`.
    rx: flume::Receiver<ToShard>,
    cfg: Arc<Config>,
    tree: Arc<Tree>,
    last_zxid: i64,
    // Keys are our own numbers (connection ids, server-assigned session ids): a fast
    // non-keyed hash is safe here.
    conns: FxHashMap<ConnId, Conn>,
    sessions: FxHashMap<i64, ConnId>,
    watches: WatchRegistry,
    active: FxHashSet<i64>,
    /// The clock, read once per wake-up (bytes received, batch applied), not per request.
    now: Instant,
    mesh: Mesh,
    stats: Arc<ServerStats>,
    next_conn: ConnId,
    conns_per_ip: HashMap<std::net::IpAddr, u32>,
}

pub(super) async fn run(
    id: usize,
    cfg: Arc<Config>,
    mesh: Mesh,
    rx: flume::Receiver<ToShard>,
    stats: Arc<ServerStats>,
    ready: std::sync::mpsc::Sender<(String, Result<(), String>)>,
) -> Result<(), String> {
    let name = format!("corral-shard-{id}");
    let addr = cfg.client_addr();
    let shard = Rc::new(RefCell::new(Shard {
        id,
        rx: rx.clone(),
        tree: Arc::new(Tree::new()),
        last_zxid: 0,
        conns: FxHashMap::default(),
        sessions: FxHashMap::default(),
        watches: WatchRegistry::new(cfg.max_watches_per_connection),
        active: FxHashSet::default(),
        now: Instant::now(),
        mesh: mesh.clone(),
        stats,
        next_conn: 1,
        conns_per_ip: HashMap::new(),
        cfg: cfg.clone(),
    }));

    // Listen only once the sequencer has published the recovered tree: before that a
    // connection could neither be served nor answered promptly (and `ruok` would
    // claim a server that is still replaying its log).
    match rx.recv_async().await {
        Ok(m) => shard.borrow_mut().on_message(m),
        Err(_) => return Err("the sequencer stopped before publishing a tree".into()),
    }
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let msg = format!("cannot listen on {addr}: {e}");
            let _ = ready.send((name, Err(msg.clone())));
            return Err(msg);
        }
    };

    // Commit batches and admin queries from other cores.
    let s = shard.clone();
    glommio::spawn_local(async move {
        while let Ok(m) = rx.recv_async().await {
            s.borrow_mut().on_message(m);
        }
    })
    .detach();

    // Session activity goes to the sequencer in batches, twice per tick.
    let s = shard.clone();
    let every = Duration::from_millis((cfg.tick_time_ms as u64 / 2).max(10));
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(every).await;
            let ids: Vec<i64> = s.borrow_mut().active.drain().collect();
            if !ids.is_empty() {
                let tx = s.borrow().mesh.to_sequencer.clone();
                if tx.send_async(ToSequencer::Touch(ids)).await.is_err() {
                    break;
                }
            }
        }
    })
    .detach();

    let _ = ready.send((name, Ok(())));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let cid = {
            let mut sh = shard.borrow_mut();
            let max = sh.cfg.max_client_cnxns;
            let n = sh.conns_per_ip.entry(peer.ip()).or_insert(0);
            if max > 0 && *n >= max {
                tracing::warn!(
                    "too many connections from {} - max is {max} (maxClientCnxns)",
                    peer.ip()
                );
                continue;
            }
            *n += 1;
            sh.open_conn(peer)
        };
        glommio::spawn_local(serve_conn(shard.clone(), stream, cid)).detach();
    }
}

enum Event {
    Read(usize),
    Eof,
    Failed(std::io::Error),
    Flushed,
}

async fn serve_conn(shard: Rc<RefCell<Shard>>, mut stream: TcpStream, cid: ConnId) {
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut filled = 0usize;
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut wpos = 0usize;
    let max_frame = shard.borrow().cfg.jute_max_buffer_bytes;
    let mut reason = String::new();
    loop {
        let ev = std::future::poll_fn(|cx| {
            let mut sh = shard.borrow_mut();
            let max_out = sh.cfg.max_outstanding_per_connection;
            let Some(conn) = sh.conns.get_mut(&cid) else {
                return Poll::Ready(Event::Flushed);
            };
            // Write side: flush what the shard queued for this connection.
            loop {
                if wpos == wbuf.len() {
                    wbuf.clear();
                    wpos = 0;
                    if conn.out.is_empty() {
                        break;
                    }
                    std::mem::swap(&mut wbuf, &mut conn.out);
                }
                match Pin::new(&mut stream).poll_write(cx, &wbuf[wpos..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                    Poll::Ready(Ok(n)) => wpos += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                    Poll::Pending => break,
                }
            }
            let flushed = wpos == wbuf.len() && conn.out.is_empty();
            if conn.closing && flushed {
                return Poll::Ready(Event::Flushed);
            }
            conn.waker = Some(cx.waker().clone());
            // Read side, unless paused (handshake in flight, closing, or too many
            // requests outstanding on this connection).
            let paused =
                conn.closing || conn.phase == Phase::Handshaking || conn.queue.len() >= max_out;
            if !paused {
                if rbuf.len() - filled < 4096 {
                    rbuf.resize(rbuf.len() * 2, 0);
                }
                match Pin::new(&mut stream).poll_read(cx, &mut rbuf[filled..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                    Poll::Ready(Ok(n)) => return Poll::Ready(Event::Read(n)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await;
        match ev {
            Event::Read(n) => {
                filled += n;
                let (consumed, after) = {
                    let mut sh = shard.borrow_mut();
                    let r = sh.on_bytes(cid, &rbuf[..filled], max_frame);
                    sh.wake(cid);
                    r
                };
                if consumed > 0 {
                    rbuf.copy_within(consumed..filled, 0);
                    filled -= consumed;
                }
                // A large frame grew the buffer; shrink back once it is processed.
                if filled == 0 && rbuf.len() > 256 * 1024 {
                    rbuf.truncate(64 * 1024);
                    rbuf.shrink_to_fit();
                }
                if let After::FourLetter(cmd) = after {
                    let text = four_letter(&shard, &cmd).await;
                    let mut sh = shard.borrow_mut();
                    if let Some(c) = sh.conns.get_mut(&cid) {
                        c.out.extend_from_slice(text.as_bytes());
                        c.closing = true;
                    }
                }
            }
            Event::Eof => break,
            Event::Failed(e) => {
                reason = format!(": {e}");
                break;
            }
            Event::Flushed => break,
        }
    }
    let _ = futures_lite::AsyncWriteExt::close(&mut stream).await;
    let mut sh = shard.borrow_mut();
    let peer = sh.conns.get(&cid).map(|c| c.peer);
    sh.close_conn(cid);
    if !reason.is_empty() {
        if let Some(p) = peer {
            tracing::debug!("connection from {p} ended{reason}");
        }
    }
}

async fn four_letter(shard: &Rc<RefCell<Shard>>, cmd: &str) -> String {
    let (cfg, mesh, stats) = {
        let sh = shard.borrow();
        (sh.cfg.clone(), sh.mesh.clone(), sh.stats.clone())
    };
    if !cfg.four_letter_whitelist.allows(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    let mut view = admin::View {
        cfg: &cfg,
        stats: &stats,
        sequencer: None,
        shards: Vec::new(),
    };
    if admin::needs_reports(cmd) {
        let (tx, rx) = flume::bounded(1);
        if mesh
            .to_sequencer
            .send_async(ToSequencer::Report(tx))
            .await
            .is_ok()
        {
            view.sequencer = rx.recv_async().await.ok();
        }
        for to in &mesh.to_shards {
            let (tx, rx) = flume::bounded(1);
            if to.send_async(ToShard::Report(tx)).await.is_ok() {
                if let Ok(r) = rx.recv_async().await {
                    view.shards.push(r);
                }
            }
        }
    }
    match cmd {
        "srst" => {
            let _ = mesh.to_sequencer.send_async(ToSequencer::ResetStats).await;
        }
        "crst" => {
            for to in &mesh.to_shards {
                let _ = to.send_async(ToShard::ResetStats).await;
            }
        }
        _ => {}
    }
    admin::render(cmd, &view)
}

/// A bad multiRead fails in one of two places on the reference 3.8.0: its
/// MultiOperationRecord refuses ops it cannot hold and a mix of read and write ops
/// while decoding (error, no body); a record of write-kind ops only decodes, then
/// fails on its first op while the reply is being built (error plus that empty
/// multi response).
fn multi_read_fails_after_decoding(ops: &[Request]) -> bool {
    let mut reads = 0;
    for o in ops {
        match o {
            Request::GetData { .. } | Request::GetChildren { .. } => reads += 1,
            Request::Create(_)
            | Request::Delete { .. }
            | Request::SetData { .. }
            | Request::Check { .. } => {}
            _ => return false,
        }
    }
    reads == 0 && !ops.is_empty()
}

fn frame(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    let at = jute::begin_frame(&mut v);
    build(&mut v);
    jute::end_frame(&mut v, at);
    v
}

impl Shard {
    fn counters(&self) -> &super::stats::ShardCounters {
        &self.stats.shards[self.id]
    }

    fn open_conn(&mut self, peer: SocketAddr) -> ConnId {
        let cid = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            cid,
            Conn {
                peer,
                phase: Phase::AwaitConnect,
                session_id: 0,
                timeout_ms: 0,
                ids: Arc::new(vec![Id::new("ip", &peer.ip().to_string())]),
                is_super: false,
                out: Vec::new(),
                waker: None,
                closing: false,
                queue: VecDeque::new(),
                received: 0,
                sent: 0,
                last_zxid: 0,
            },
        );
        self.counters().connections.fetch_add(1, Relaxed);
        cid
    }

    fn close_conn(&mut self, cid: ConnId) {
        let Some(c) = self.conns.remove(&cid) else {
            return;
        };
        if let Some(n) = self.conns_per_ip.get_mut(&c.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.conns_per_ip.remove(&c.peer.ip());
            }
        }
        if c.session_id != 0 && self.sessions.get(&c.session_id) == Some(&cid) {
            self.sessions.remove(&c.session_id);
        }
        self.watches.remove_conn(cid);
        self.counters().connections.fetch_sub(1, Relaxed);
    }

    fn wake(&mut self, cid: ConnId) {
        if let Some(c) = self.conns.get_mut(&cid) {
            if let Some(w) = c.waker.take() {
                w.wake();
            }
        }
    }

    /// Closes a connection after what is queued for it is flushed, with one log line.
    fn close_with(&mut self, cid: ConnId, why: &str) {
        if let Some(c) = self.conns.get_mut(&cid) {
            tracing::warn!(
                "closing connection from {} (session {:#x}): {why}",
                c.peer,
                c.session_id
            );
            c.closing = true;
        }
    }

    /// Applies any batch the sequencer has already published but this shard has not
    /// taken yet, before serving requests: once any client was answered from a tree
    /// version, no request arriving later on any shard sees an older one (as on a
    /// single reference server). The sequencer stores the published zxid before it
    /// sends, so the batch is in the inbox or about to be; the wait is bounded.
    fn catch_up(&mut self) {
        let target = self.stats.last_zxid.load(Acquire);
        let mut spins = 0u32;
        while self.last_zxid < target {
            match self.rx.try_recv() {
                Ok(m) => self.on_message(m),
                Err(flume::TryRecvError::Empty) if spins < 20_000 => {
                    spins += 1;
                    std::hint::spin_loop();
                    if spins.is_multiple_of(64) {
                        std::thread::yield_now();
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Feeds received bytes; returns how many were consumed (whole frames only).
    fn on_bytes(&mut self, cid: ConnId, buf: &[u8], max_frame: usize) -> (usize, After) {
        self.now = Instant::now();
        self.catch_up();
        let mut at = 0;
        loop {
            let Some(c) = self.conns.get(&cid) else {
                return (buf.len(), After::Continue);
            };
            if c.closing || c.phase == Phase::Handshaking {
                return (at, After::Continue);
            }
            let rest = &buf[at..];
            if rest.len() < 4 {
                return (at, After::Continue);
            }
            if c.phase == Phase::AwaitConnect && at == 0 {
                if let Ok(word) = std::str::from_utf8(&rest[..4]) {
                    if crate::config::FOUR_LETTER_WORDS.contains(&word) {
                        return (buf.len(), After::FourLetter(word.to_string()));
                    }
                }
            }
            let len = i32::from_be_bytes(rest[..4].try_into().unwrap());
            if len < 0 || len as usize > max_frame {
                self.close_with(
                    cid,
                    &format!("frame length {len} is outside 0..={max_frame} (jute.maxbuffer)"),
                );
                return (buf.len(), After::Continue);
            }
            let len = len as usize;
            if rest.len() < 4 + len {
                return (at, After::Continue);
            }
            let body = &rest[4..4 + len];
            at += 4 + len;
            if self.conns[&cid].phase == Phase::AwaitConnect {
                self.on_connect_frame(cid, body);
            } else {
                self.on_request_frame(cid, body);
            }
        }
    }

    fn on_connect_frame(&mut self, cid: ConnId, body: &[u8]) {
        let req = match ConnectRequest::decode(&mut Reader::new(body)) {
            Ok(r) => r,
            Err(e) => {
                self.close_with(cid, &format!("malformed connect request: {e}"));
                return;
            }
        };
        self.conns.get_mut(&cid).unwrap().phase = Phase::Handshaking;
        let _ = self.mesh.to_sequencer.send(ToSequencer::Connect {
            shard: self.id,
            conn: cid,
            req,
        });
    }

    fn on_request_frame(&mut self, cid: ConnId, body: &[u8]) {
        self.counters().packets_received.fetch_add(1, Relaxed);
        let mut r = Reader::new(body);
        let hdr = match RequestHeader::decode(&mut r) {
            Ok(h) => h,
            Err(e) => {
                self.close_with(cid, &format!("malformed request header: {e}"));
                return;
            }
        };
        let (session_id, xid) = {
            let c = self.conns.get_mut(&cid).unwrap();
            c.received += 1;
            (c.session_id, hdr.xid)
        };
        self.active.insert(session_id);
        let req = match Request::decode(hdr.opcode, &mut r) {
            Ok(Ok(req)) => req,
            Ok(Err(proto::UnknownOpcode(o))) => {
                let bytes = frame(|v| {
                    proto::ReplyHeader {
                        xid,
                        zxid: self.last_zxid,
                        err: ErrorCode::Unimplemented.code(),
                    }
                    .encode(v)
                });
                self.push_ready(cid, bytes);
                self.close_with(cid, &format!("unknown opcode {o}"));
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "malformed request (opcode {}) from session {session_id:#x}: {e}",
                    hdr.opcode
                );
                let bytes = frame(|v| {
                    proto::ReplyHeader {
                        xid,
                        zxid: self.last_zxid,
                        err: ErrorCode::MarshallingError.code(),
                    }
                    .encode(v)
                });
                self.push_ready(cid, bytes);
                return;
            }
        };
        let now = self.now;
        match req {
            Request::Ping => {
                let z = self.last_zxid;
                let bytes = frame(|v| {
                    proto::ReplyHeader {
                        xid: xid::PING,
                        zxid: z,
                        err: 0,
                    }
                    .encode(v)
                });
                self.push_ready(cid, bytes);
            }
            Request::Auth { scheme, auth, .. } => self.on_auth(cid, xid, &scheme, &auth),
            Request::SetWatches(sw) => self.on_set_watches(cid, xid, sw),
            req if req.is_write() || matches!(req, Request::Check { .. }) => {
                let c = self.conns.get_mut(&cid).unwrap();
                let w = Box::new(WriteReq {
                    shard: self.id,
                    conn: cid,
                    session_id,
                    xid,
                    req,
                    ids: c.ids.clone(),
                    is_super: c.is_super,
                });
                // Per-session order: a write may only leave once no read of the same
                // session is waiting before it (a deferred read is served from the
                // tree after the write ahead of it, which must not include this one).
                let read_waiting = c
                    .queue
                    .iter()
                    .any(|p| matches!(p, Pending::Read { .. } | Pending::Unsent(..)));
                if read_waiting {
                    c.queue.push_back(Pending::Unsent(w, now));
                } else {
                    c.queue.push_back(Pending::Write { xid, at: now });
                    self.send_write(w);
                }
            }
            req => {
                let c = self.conns.get_mut(&cid).unwrap();
                if c.queue.is_empty() {
                    self.answer_read(cid, xid, req, now);
                } else {
                    c.queue.push_back(Pending::Read { xid, req, at: now });
                }
            }
        }
    }

    fn send_write(&mut self, w: Box<WriteReq>) {
        self.counters().outstanding.fetch_add(1, Relaxed);
        let _ = self.mesh.to_sequencer.send(ToSequencer::Write(w));
    }

    /// Appends a reply now if nothing is queued ahead of it, else queues it.
    fn push_ready(&mut self, cid: ConnId, bytes: Vec<u8>) {
        let c = self.conns.get_mut(&cid).unwrap();
        if c.queue.is_empty() {
            c.out.extend_from_slice(&bytes);
            self.count_reply(cid, None);
        } else {
            c.queue.push_back(Pending::Ready(bytes));
        }
    }

    /// Books one reply that was just appended to a connection's output: the
    /// connection's and the shard's counters, and the request's latency if timed.
    fn count_reply(&mut self, cid: ConnId, since: Option<Instant>) {
        if let Some(c) = self.conns.get_mut(&cid) {
            c.sent += 1;
            c.last_zxid = self.last_zxid;
        }
        let counters = &self.stats.shards[self.id];
        counters.packets_sent.fetch_add(1, Relaxed);
        if let Some(at) = since {
            counters.record_latency_us(self.now.saturating_duration_since(at).as_micros() as u64);
        }
    }

    /// Serves a read-like request from the current tree, straight into the
    /// connection's output buffer.
    fn answer_read(&mut self, cid: ConnId, xid: i32, req: Request, since: Instant) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let mut out = std::mem::take(&mut c.out);
        self.serve_read_into(&mut out, cid, xid, req);
        if let Some(c) = self.conns.get_mut(&cid) {
            c.out = out;
        }
        self.count_reply(cid, Some(since));
    }

    /// auth: the reply echoes the request's xid (the reference's clients send −4,
    /// others any xid), err 0 or AuthFailed; a failure closes the connection.
    fn on_auth(&mut self, cid: ConnId, xid: i32, scheme: &str, auth: &[u8]) {
        let ok = match scheme {
            "digest" => match std::str::from_utf8(auth) {
                Ok(user_pass) if user_pass.contains(':') => {
                    let id = tree::digest_id(user_pass);
                    let is_super = self.cfg.super_digest.as_deref() == Some(id.as_str());
                    let c = self.conns.get_mut(&cid).unwrap();
                    let ids = Arc::make_mut(&mut c.ids);
                    let mut new = vec![Id::new("digest", &id)];
                    if is_super {
                        // The reference adds the super identity beside the digest one.
                        new.push(Id::new("super", ""));
                    }
                    for n in new {
                        if !ids.contains(&n) {
                            ids.push(n);
                        }
                    }
                    c.is_super |= is_super;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        let err = if ok { 0 } else { ErrorCode::AuthFailed.code() };
        let bytes = frame(|v| proto::ReplyHeader { xid, zxid: 0, err }.encode(v));
        self.push_ready(cid, bytes);
        if !ok {
            self.close_with(
                cid,
                &format!("authentication with scheme `{scheme}` failed"),
            );
        }
    }

    fn on_set_watches(&mut self, cid: ConnId, xid: i32, sw: SetWatches) {
        let mut out = Vec::new();
        let rel = sw.relative_zxid;
        let zxid = self.last_zxid;
        let tree = self.tree.clone();
        let ev = |out: &mut Vec<u8>, t: EventType, p: &str| {
            write_event(
                out,
                -1,
                &WatcherEvent {
                    event_type: t,
                    state: KeeperState::SyncConnected,
                    path: p.to_string(),
                },
            )
        };
        let mut refused = false;
        for p in &sw.data {
            match tree.get(p) {
                None => ev(&mut out, EventType::NodeDeleted, p),
                Some(n) if n.stat().mzxid > rel => ev(&mut out, EventType::NodeDataChanged, p),
                Some(_) => refused |= self.watches.add_data(cid, p).is_err(),
            }
        }
        for p in &sw.exist {
            match tree.get(p) {
                Some(_) => ev(&mut out, EventType::NodeCreated, p),
                None => refused |= self.watches.add_data(cid, p).is_err(),
            }
        }
        for p in &sw.child {
            match tree.get(p) {
                None => ev(&mut out, EventType::NodeDeleted, p),
                Some(n) if n.stat().pzxid > rel => ev(&mut out, EventType::NodeChildrenChanged, p),
                Some(_) => refused |= self.watches.add_child(cid, p).is_err(),
            }
        }
        for p in &sw.persistent {
            refused |= self.watches.add_persistent(cid, p).is_err();
        }
        for p in &sw.persistent_recursive {
            refused |= self.watches.add_recursive(cid, p).is_err();
        }
        if refused {
            tracing::warn!(
                "setWatches: connection {cid} is over corral.maxWatchesPerConnection; \
                 some watches were not restored"
            );
        }
        write_reply(&mut out, xid, zxid, Ok(&Response::Empty));
        self.push_ready(cid, out);
    }

    /// Serves a read-like request from the current tree version.
    fn serve_read_into(&mut self, v: &mut Vec<u8>, cid: ConnId, xid: i32, req: Request) {
        let result = self.read_result(cid, &req);
        if let (Request::MultiRead(ops), Err(ErrorCode::MarshallingError)) = (&req, &result) {
            if !multi_read_fails_after_decoding(ops) {
                write_reply(v, xid, self.last_zxid, Err(ErrorCode::MarshallingError));
                return;
            }
            // The reference sends the (empty) multi response it had begun.
            let at = jute::begin_frame(v);
            proto::ReplyHeader {
                xid,
                zxid: self.last_zxid,
                err: ErrorCode::MarshallingError.code(),
            }
            .encode(v);
            Response::Multi(Vec::new()).encode(v);
            jute::end_frame(v, at);
            return;
        }
        write_reply(v, xid, self.last_zxid, result.as_ref().map_err(|e| *e));
    }

    fn read_result(&mut self, cid: ConnId, req: &Request) -> Result<Response, ErrorCode> {
        let c = &self.conns[&cid];
        let caller = Caller {
            session_id: c.session_id,
            ids: &c.ids,
            is_super: c.is_super,
        };
        let limit = |r: Result<(), crate::watch::TooManyWatches>| {
            r.map_err(|e| {
                tracing::warn!("connection {cid}: {e} (corral.maxWatchesPerConnection)");
                ErrorCode::Throttled
            })
        };
        match req {
            // As the reference's providers name users: a digest id is `user:hash`.
            Request::WhoAmI => Ok(Response::WhoAmI(
                c.ids
                    .iter()
                    .map(|i| {
                        let user = match i.scheme.as_str() {
                            "digest" => i.id.split(':').next().unwrap_or(""),
                            _ => i.id.as_str(),
                        };
                        (i.scheme.clone(), user.to_string())
                    })
                    .collect(),
            )),
            Request::Sasl => Err(ErrorCode::Unimplemented),
            // 3.8 knows watcher types 1-3 here; anything else fails to deserialize.
            // Paths are not validated: an odd path simply holds no watch.
            Request::CheckWatches { path, watcher_type }
            | Request::RemoveWatches { path, watcher_type } => {
                // The reference's path-parent walk throws on a path without a leading
                // slash: the request fails as a marshalling error.
                if !path.starts_with('/') {
                    return Err(ErrorCode::MarshallingError);
                }
                let wt = match WatcherType::from_code(*watcher_type) {
                    Some(wt @ (WatcherType::Children | WatcherType::Data | WatcherType::Any)) => wt,
                    _ => return Err(ErrorCode::MarshallingError),
                };
                let found = if matches!(req, Request::CheckWatches { .. }) {
                    self.watches.contains(cid, path, wt)
                } else {
                    self.watches.remove(cid, path, wt)
                };
                if found {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            Request::AddWatch { path, mode } => {
                if *mode == AddWatchMode::Persistent as i32 {
                    limit(self.watches.add_persistent(cid, path))?;
                } else if *mode == AddWatchMode::PersistentRecursive as i32 {
                    limit(self.watches.add_recursive(cid, path))?;
                } else {
                    return Err(ErrorCode::MarshallingError);
                }
                Ok(Response::AddWatch)
            }
            req => {
                let result = tree::read(&self.tree, &caller, req);
                match (req, &result) {
                    (Request::Exists { path, watch: true }, Ok(_) | Err(ErrorCode::NoNode)) => {
                        limit(self.watches.add_data(cid, path))?;
                    }
                    (Request::GetData { path, watch: true }, Ok(_)) => {
                        limit(self.watches.add_data(cid, path))?;
                    }
                    (
                        Request::GetChildren { path, watch: true }
                        | Request::GetChildren2 { path, watch: true },
                        Ok(_),
                    ) => {
                        limit(self.watches.add_child(cid, path))?;
                    }
                    _ => {}
                }
                result
            }
        }
    }

    fn on_message(&mut self, m: ToShard) {
        match m {
            ToShard::Batch(b) => self.on_batch(&b),
            ToShard::Report(tx) => {
                let _ = tx.send(self.report());
            }
            ToShard::ResetStats => self.counters().reset(),
        }
    }

    fn on_batch(&mut self, b: &Batch) {
        self.now = Instant::now();
        let before = std::mem::replace(&mut self.tree, b.tree.clone());
        self.last_zxid = b.last_zxid;
        let mut touched: FxHashSet<ConnId> = FxHashSet::default();
        // 1. Every watch event of the batch, before any reply that could show its effect.
        // As the reference does, a connection only hears about a node it may READ:
        // the ACL is the node's in this version, or in the previous one if deleted.
        if !self.watches.is_empty() {
            let mut fired = Vec::new();
            for item in &b.items {
                for (et, path) in &item.events {
                    self.watches.trigger(*et, path, &mut fired);
                    if fired.is_empty() {
                        continue;
                    }
                    let acl: Option<Vec<proto::Acl>> = self
                        .tree
                        .get(path)
                        .or_else(|| before.get(path))
                        .map(|n| n.acl().to_vec());
                    for c in fired.drain(..) {
                        let Some(conn) = self.conns.get_mut(&c) else {
                            continue;
                        };
                        if let Some(acl) = &acl {
                            let caller = Caller {
                                session_id: conn.session_id,
                                ids: &conn.ids,
                                is_super: conn.is_super,
                            };
                            if tree::check_acl(acl, proto::perms::READ, &caller).is_err() {
                                continue;
                            }
                        }
                        write_event(
                            &mut conn.out,
                            item.zxid,
                            &WatcherEvent {
                                event_type: *et,
                                state: KeeperState::SyncConnected,
                                path: path.clone(),
                            },
                        );
                        touched.insert(c);
                    }
                }
            }
        }
        // 2. Replies, each followed by the reads queued behind it.
        for item in &b.items {
            let Some(reply) = &item.reply else { continue };
            if reply.shard != self.id {
                continue;
            }
            touched.insert(reply.conn);
            match &reply.kind {
                ReplyKind::Op { xid, result } => {
                    self.on_write_reply(reply.conn, *xid, item.zxid, result)
                }
                ReplyKind::Connect {
                    response,
                    session_id,
                } => self.on_connect_reply(reply.conn, response.as_ref(), *session_id),
            }
        }
        // 3. Sessions that ended: their connections close once flushed.
        for item in &b.items {
            if let Some(sid) = item.closed_session {
                if let Some(&cid) = self.sessions.get(&sid) {
                    if let Some(c) = self.conns.get_mut(&cid) {
                        c.closing = true;
                        touched.insert(cid);
                    }
                }
            }
        }
        for cid in touched {
            self.wake(cid);
        }
    }

    fn on_write_reply(
        &mut self,
        cid: ConnId,
        xid: i32,
        zxid: i64,
        result: &Result<Response, ErrorCode>,
    ) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let at = match c.queue.pop_front() {
            Some(Pending::Write { xid: x, at }) if x == xid => at,
            other => {
                // Our own invariant: replies come back in the order writes were sent.
                debug_assert!(false, "reply for xid {xid} does not match the queue");
                if let Some(o) = other {
                    c.queue.push_front(o);
                }
                self.now
            }
        };
        write_reply(&mut c.out, xid, zxid, result.as_ref().map_err(|e| *e));
        self.counters().outstanding.fetch_sub(1, Relaxed);
        self.count_reply(cid, Some(at));
        self.drain(cid);
    }

    /// Releases what waited behind a completed write, up to the next pending write.
    fn drain(&mut self, cid: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&cid) else {
                return;
            };
            match c.queue.front() {
                None | Some(Pending::Write { .. }) => return,
                _ => {}
            }
            match c.queue.pop_front().unwrap() {
                Pending::Ready(bytes) => {
                    c.out.extend_from_slice(&bytes);
                    self.count_reply(cid, None);
                }
                Pending::Read { xid, req, at } => self.answer_read(cid, xid, req, at),
                Pending::Unsent(w, at) => {
                    // Everything before it is answered: send it, and wait for it.
                    c.queue.push_front(Pending::Write { xid: w.xid, at });
                    self.send_write(w);
                    return;
                }
                Pending::Write { .. } => unreachable!(),
            }
        }
    }

    fn on_connect_reply(
        &mut self,
        cid: ConnId,
        response: Option<&proto::ConnectResponse>,
        session_id: i64,
    ) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let Some(resp) = response else {
            c.closing = true;
            tracing::warn!(
                "refused session request from {}: client is ahead of this server",
                c.peer
            );
            return;
        };
        let bytes = frame(|v| resp.encode(v));
        c.out.extend_from_slice(&bytes);
        if session_id == 0 {
            tracing::info!("connection from {}: session expired or unknown", c.peer);
            c.closing = true;
            return;
        }
        c.phase = Phase::Open;
        c.session_id = session_id;
        c.timeout_ms = resp.timeout_ms;
        c.last_zxid = self.last_zxid;
        // A session lives on one connection: an older one on this shard is replaced.
        if let Some(old) = self.sessions.insert(session_id, cid) {
            if old != cid {
                if let Some(o) = self.conns.get_mut(&old) {
                    o.closing = true;
                    o.session_id = 0;
                }
                self.wake(old);
            }
        }
        self.active.insert(session_id);
    }

    fn report(&self) -> ShardReport {
        let mut connections: Vec<ConnSummary> = self
            .conns
            .values()
            .map(|c| ConnSummary {
                peer: c.peer.to_string(),
                session_id: c.session_id,
                queued: c.queue.len(),
                received: c.received,
                sent: c.sent,
                last_zxid: c.last_zxid,
                timeout_ms: c.timeout_ms,
            })
            .collect();
        connections.sort_by(|a, b| a.peer.cmp(&b.peer));
        let sid = |cid: ConnId| self.conns.get(&cid).map(|c| c.session_id).unwrap_or(0);
        ShardReport {
            shard: self.id,
            connections,
            watch_count: self.watches.watch_count(),
            watch_paths: self.watches.path_count(),
            watching_connections: self.watches.connections_with_watches(),
            watches_by_session: self
                .watches
                .by_connection()
                .into_iter()
                .map(|(c, p)| (sid(c), p))
                .collect(),
            watches_by_path: self
                .watches
                .by_path()
                .into_iter()
                .map(|(p, cs)| (p, cs.into_iter().map(sid).collect()))
                .collect(),
        }
    }
}
