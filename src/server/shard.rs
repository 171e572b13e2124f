//! A shard core: accepts client connections on its own SO_REUSEPORT listener, owns
//! them, their sessions' watch registry and a read view (the latest published tree
//! version). Runs on its own glommio executor (shard 0's may also run the standalone
//! sequencer: `corral.sequencerCore`); state lives in one `RefCell` that is never
//! borrowed across an await.
//!
//! Per connection, requests are answered strictly in arrival order: a read that
//! arrives while one of the session's writes is still at the sequencer waits in the
//! connection's queue behind it. When a commit batch arrives the shard switches to
//! its tree version, writes every watch event of the batch, then each reply followed
//! by the reads queued behind it — so an event always precedes any reply that shows
//! its effect.
//!
//! A shard listens on the client port and, when secureClientPort is set, on the TLS
//! port too (`accept_loop` per listener). A TLS connection runs the same connection
//! task with a `tls::TlsSession` between the socket and the buffers: received
//! records are decrypted into the frame buffer, replies are encrypted on their way
//! out; its handshake adds the client certificate's `x509` id before any frame.

use super::chan;
use super::inbox;
use super::msg::*;
use super::order;
use super::stats::{self, OwnedCount, ServerStats};
use super::tls::{self, ServerTls, TlsFailure, TlsInput, TlsSession};
use super::Mesh;
use crate::admin;
use crate::auth::{DigestServer, Outcome, SaslError};
use crate::config::Config;
use crate::proto::{
    self, jute, write_event, write_reply, AddWatchMode, ConnectRequest, ErrorCode, EventType, Id,
    JuteWrite, KeeperState, ReadKind, ReadRequest, Reader, Request, RequestHeader, Response,
    SetWatches, WatcherEvent, WatcherType,
};
use crate::tree::{self, Caller, Tree};
use crate::watch::{ConnId, WatchRegistry};
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use rustc_hash::{FxHashMap, FxHashSet};
use rustls::pki_types::CertificateDer;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Acquire;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
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
    /// `op`: its name in the connection stats (`stats::operation_name`).
    Write {
        xid: i32,
        at: Instant,
        op: &'static str,
    },
    /// A read that arrived behind a pending write (or while earlier replies wait for
    /// room in the connection's output: see `drain`).
    Read { xid: i32, req: Request, at: Instant },
    /// A reply waiting for its turn: computed on arrival (ping, auth, setWatches),
    /// or a write's that came while replies ahead of it still waited for room in
    /// the output. What the connection stats book for it, if anything, and
    /// whether it is timed (`Some(update)`, see `count_reply`).
    Ready {
        bytes: Vec<u8>,
        answered: Option<Answered>,
        timed: Option<bool>,
    },
    /// A write that arrived behind a deferred read that could see it
    /// (`order::write_may_pass`), or behind another Unsent write: it goes to the
    /// sequencer only when everything before it has been answered.
    Unsent(Box<WriteReq>, Instant),
}

struct Conn {
    peer: SocketAddr,
    phase: Phase,
    session_id: i64,
    timeout_ms: i32,
    ids: Arc<Vec<Id>>,
    is_super: bool,
    /// Replies and events not yet handed to the connection's writer.
    out: Vec<u8>,
    /// Bytes the writer holds and the socket has not taken yet (its `wbuf`); kept
    /// here so the shard can count every unsent byte of the connection.
    writer_unsent_bytes: usize,
    waker: Option<Waker>,
    /// Close once `out` is flushed.
    closing: bool,
    /// Over corral.maxQueuedBytesPerConnection: close now, without flushing.
    overflowed: bool,
    /// Requests taken in and not answered, in arrival order. Every entry counts in
    /// the shard's `outstanding` counter: enter with `enqueue`, leave with
    /// `complete_front` (or all at once when the connection closes).
    queue: VecDeque<Pending>,
    received: u64,
    sent: u64,
    last_zxid: i64,
    /// When it was accepted, ms since the Unix epoch (the reference's `established`).
    established_ms: u64,
    stats: ConnStats,
    /// This connection's SASL DIGEST-MD5 exchange (a nonce at most: bounded).
    sasl: DigestServer,
}

impl Conn {
    /// Reply and event bytes queued for this client and not yet taken by its socket.
    fn unsent_bytes(&self) -> usize {
        self.out.len() + self.writer_unsent_bytes
    }

    /// Takes a request in; it is outstanding until `complete_front` takes it out.
    fn enqueue(&mut self, p: Pending, outstanding: &AtomicU64) {
        self.queue.push_back(p);
        outstanding.add_owned(1);
    }

    fn complete_front(&mut self, outstanding: &AtomicU64) -> Option<Pending> {
        let p = self.queue.pop_front()?;
        outstanding.sub_owned(1);
        Some(p)
    }

    /// Per-session order for a write arriving now: a deferred read is served from
    /// the tree after the write ahead of it, which may include this one. So the
    /// write waits behind an earlier write that waits (writes leave in order),
    /// behind a read that could tell (`order`), and behind any read on a
    /// connection with watches (`watched`: this write's events would reach the
    /// client before that read's answer). A closeSession waits behind any write:
    /// a local session's close is answered at once, with no txn
    /// (`session::local`), and must not overtake the writes ahead of it.
    fn write_must_wait(&self, write: &Request, watched: impl FnOnce() -> bool) -> bool {
        let mut reads_ahead = false;
        let close = matches!(write, Request::CloseSession);
        for p in &self.queue {
            match p {
                Pending::Unsent(..) => return true,
                Pending::Write { .. } if close => return true,
                Pending::Read { req, .. } if !order::write_may_pass(write, req) => return true,
                Pending::Read { .. } => reads_ahead = true,
                _ => {}
            }
        }
        reads_ahead && watched()
    }

    /// True when the front of the queue is not a write at the sequencer: `drain`
    /// stopped there because the output was full, and goes on once it is not.
    fn drain_waiting(&self) -> bool {
        !matches!(self.queue.front(), None | Some(Pending::Write { .. }))
    }
}

/// What a connection's stats book for one reply, as the reference's
/// updateStatsForResponse: the request's operation name, xid and arrival.
#[derive(Debug, Clone, Copy)]
struct Answered {
    op: &'static str,
    xid: i32,
    at: Instant,
}

/// A connection's request stats as the reference's ServerCnxn keeps them (for
/// `cons`): milliseconds, like its own; cleared by `crst`.
#[derive(Debug, Clone)]
struct ConnStats {
    last_op: &'static str,
    /// -1 until a request with a non-negative xid is answered.
    last_cxid: i64,
    /// Milliseconds since the server started when the last reply was booked.
    last_response_ms: u64,
    last_latency_ms: u64,
    min_latency_ms: u64,
    max_latency_ms: u64,
    count: u64,
    total_latency_ms: u64,
}

impl ConnStats {
    const RESET: ConnStats = ConnStats {
        last_op: "NA",
        last_cxid: -1,
        last_response_ms: 0,
        last_latency_ms: 0,
        min_latency_ms: u64::MAX,
        max_latency_ms: 0,
        count: 0,
        total_latency_ms: 0,
    };

    fn book(&mut self, a: Answered, now: Instant, started: Instant) {
        if a.xid >= 0 {
            self.last_cxid = i64::from(a.xid);
        }
        self.last_op = a.op;
        self.last_response_ms = now.saturating_duration_since(started).as_millis() as u64;
        let ms = now.saturating_duration_since(a.at).as_millis() as u64;
        self.last_latency_ms = ms;
        self.min_latency_ms = self.min_latency_ms.min(ms);
        self.max_latency_ms = self.max_latency_ms.max(ms);
        self.count += 1;
        self.total_latency_ms += ms;
    }
}

/// What the connection task should do after feeding bytes to the shard.
enum After {
    Continue,
    /// Whole frames are left in the buffer: reading is paused (see
    /// `Shard::takes_requests`). The task feeds them again once it is not.
    Held,
    FourLetter(String),
}

/// Allows one warning line per `WARN_INTERVAL` for a refusal a client can repeat at
/// will (a connect loop); the next line says how many were not logged.
struct WarnLimiter {
    last: Option<Instant>,
    unlogged: u64,
}

const WARN_INTERVAL: Duration = Duration::from_secs(1);

impl WarnLimiter {
    fn new() -> Self {
        WarnLimiter {
            last: None,
            unlogged: 0,
        }
    }

    /// `Some(n)`: log now, mentioning the `n` refusals not logged since the last line.
    fn note(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_INTERVAL)
        {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

struct Shard {
    id: usize,
    /// This shard's inbox; awaited by the inbox task only, also drained inline by
    /// `catch_up`.
    rx: Rc<chan::Receiver<ToShard>>,
    cfg: Arc<Config>,
    tree: Arc<Tree>,
    last_zxid: i64,
    // Keys are our own numbers (connection ids, server-assigned session ids): a fast
    // non-keyed hash is safe here.
    conns: FxHashMap<ConnId, Conn>,
    sessions: FxHashMap<i64, ConnId>,
    watches: WatchRegistry,
    /// Sessions with requests since the last touch batch went to the sequencer.
    active: FxHashSet<i64>,
    /// The session `active` took last: the next request of a pipeline (the same
    /// session, mostly) skips the set. Cleared with the set.
    last_active: i64,
    /// The clock, read once per wake-up (bytes received, batch applied), not per request.
    now: Instant,
    mesh: Mesh,
    stats: Arc<ServerStats>,
    next_conn: ConnId,
    conns_per_ip: HashMap<std::net::IpAddr, u32>,
    refused_warnings: WarnLimiter,
    /// The TLS port's config, when secureClientPort is set.
    tls: Option<Arc<ServerTls>>,
    /// Failed TLS handshakes (a plaintext client in a loop would repeat them).
    tls_warnings: WarnLimiter,
    /// Dropped on a stop (`ToShard::StopAccepting`): the accept loops end.
    accepting: Option<flume::Sender<()>>,
    /// Dropped on `ToShard::Shutdown`: `run` closes the connections and ends.
    serving: Option<flume::Sender<()>>,
}

pub(super) async fn run(
    id: usize,
    cfg: Arc<Config>,
    mesh: Mesh,
    rx: chan::Receiver<ToShard>,
    stats: Arc<ServerStats>,
    ready: super::ReadyTx,
    tls: Option<Arc<ServerTls>>,
) -> Result<(), String> {
    let name = format!("corral-shard-{id}");
    // Nothing is ever sent on these: the end of the sender is the message.
    let (accepting, accepting_rx) = flume::bounded::<()>(1);
    let (serving, serving_rx) = flume::bounded::<()>(1);
    let rx = Rc::new(rx);
    let shard = Rc::new(RefCell::new(Shard {
        id,
        rx: rx.clone(),
        tree: Arc::new(Tree::new()),
        last_zxid: 0,
        conns: FxHashMap::default(),
        sessions: FxHashMap::default(),
        watches: WatchRegistry::new(cfg.max_watches_per_connection),
        active: FxHashSet::default(),
        last_active: 0,
        now: Instant::now(),
        mesh: mesh.clone(),
        stats,
        next_conn: 1,
        conns_per_ip: HashMap::new(),
        refused_warnings: WarnLimiter::new(),
        tls: tls.clone(),
        tls_warnings: WarnLimiter::new(),
        cfg: cfg.clone(),
        accepting: Some(accepting),
        serving: Some(serving),
    }));

    // Listen only once the sequencer has published the recovered tree: before that a
    // connection could neither be served nor answered promptly (and `ruok` would
    // claim a server that is still replaying its log).
    match inbox::recv_mesh(&rx).await {
        Ok(m) => shard.borrow_mut().on_message(m),
        Err(_) => return Err("the sequencer stopped before publishing a tree".into()),
    }
    let listeners = match listen(&cfg, tls) {
        Ok(l) => l,
        Err(msg) => {
            let _ = ready.send((name, super::CoreNews::StartFailed(msg.clone())));
            return Err(msg);
        }
    };

    // Commit batches and admin queries from other cores.
    let s = shard.clone();
    glommio::spawn_local(async move {
        while let Ok(m) = inbox::recv_mesh(&rx).await {
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
            let ids: Vec<i64> = s.borrow_mut().take_active();
            if !ids.is_empty() {
                let tx = s.borrow().mesh.to_sequencer.clone();
                match tx.send(ToSequencer::Touch(ids)) {
                    Ok(()) => {}
                    // A full inbox: the sessions stay active, sent on the next turn.
                    Err(chan::SendError::Full(ToSequencer::Touch(ids))) => {
                        s.borrow_mut().active.extend(ids)
                    }
                    Err(_) => break,
                }
            }
        }
    })
    .detach();

    let _ = ready.send((name, super::CoreNews::Up));
    let mut listeners = listeners;
    let last = listeners.pop().expect("a config serves at least one port");
    for (listener, speaks) in listeners {
        let stop = accepting_rx.clone();
        glommio::spawn_local(accept_loop(shard.clone(), listener, speaks, stop)).detach();
    }
    accept_loop(shard.clone(), last.0, last.1, accepting_rx).await;
    // Stopping: wait for the sequencer's last batch, then close what is open.
    let _ = inbox::recv(&serving_rx).await;
    flush_and_close(&shard).await;
    Ok(())
}

/// The end of a stop: every connection ends once what is queued for it is sent
/// (the last batch's replies included), for at most CONNS_FLUSH_WAIT.
async fn flush_and_close(shard: &Rc<RefCell<Shard>>) {
    let open = shard.borrow().conns.len();
    let deadline = Instant::now() + super::shutdown::CONNS_FLUSH_WAIT;
    while !shard.borrow().conns.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let sh = shard.borrow();
    match sh.conns.len() {
        0 => tracing::info!("shard {}: {open} connection(s) closed; stopped", sh.id),
        n => tracing::warn!(
            "shard {}: {n} of {open} connection(s) did not flush within {:?}; stopped",
            sh.id,
            super::shutdown::CONNS_FLUSH_WAIT
        ),
    }
}

/// What a listener's connections speak.
#[derive(Clone)]
enum Speaks {
    Plaintext,
    Tls(Arc<ServerTls>),
    /// client.portUnification: TLS or plaintext, told apart by the first bytes.
    Either(Arc<ServerTls>),
}

/// A listener, and what its connections speak.
type Listener = (TcpListener, Speaks);

/// This shard's listeners: the client port (unless TLS only), then the TLS port.
fn listen(cfg: &Config, tls: Option<Arc<ServerTls>>) -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    if cfg.client_port_enabled {
        let unified = cfg.tls.as_ref().is_some_and(|t| t.unified_client_port);
        let speaks = match &tls {
            Some(t) if unified => Speaks::Either(t.clone()),
            _ => Speaks::Plaintext,
        };
        out.push((cfg.client_addr(), speaks));
    }
    if let (Some(addr), Some(tls)) = (cfg.tls.as_ref().and_then(|t| t.addr), tls) {
        out.push((addr, Speaks::Tls(tls)));
    }
    out.into_iter()
        .map(
            |(addr, speaks)| match bind(addr, cfg.client_port_listen_backlog) {
                Ok(l) => Ok((l, speaks)),
                Err(e) => Err(format!("cannot listen on {addr}: {e}")),
            },
        )
        .collect()
}

/// corral's listen backlog (connections) when clientPortListenBacklog is unset,
/// the same as glommio's own `TcpListener::bind`.
const DEFAULT_LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr`, shared with the other shards' (SO_REUSEPORT), with
/// clientPortListenBacklog when set.
fn bind(addr: SocketAddr, backlog: Option<u32>) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let backlog = backlog.unwrap_or(DEFAULT_LISTEN_BACKLOG);
    let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    // SAFETY: the descriptor is a bound, listening TCP socket this call owns.
    Ok(unsafe {
        <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(
            sk,
        ))
    })
}

/// Accepts connections until a stop ends `stop`'s sender (the listener closes with
/// the loop); each speaks what `speaks` says.
async fn accept_loop(
    shard: Rc<RefCell<Shard>>,
    listener: TcpListener,
    speaks: Speaks,
    stop: flume::Receiver<()>,
) {
    loop {
        let accepted = {
            let accept = std::pin::pin!(listener.accept());
            let stop = std::pin::pin!(inbox::recv(&stop));
            match futures::future::select(accept, stop).await {
                futures::future::Either::Left((a, _)) => a,
                futures::future::Either::Right(_) => return,
            }
        };
        let stream = match accepted {
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
        if shard.borrow().cfg.client_tcp_keep_alive {
            super::set_keep_alive(&stream, &peer);
        }
        let session = match &speaks {
            Speaks::Tls(t) => match start_tls(t, peer) {
                Some(s) => Some(s),
                None => continue,
            },
            Speaks::Plaintext | Speaks::Either(_) => None,
        };
        // A refused connection is closed here, by dropping the stream.
        let Some(cid) = shard.borrow_mut().admit(peer) else {
            continue;
        };
        if let Speaks::Either(t) = &speaks {
            let task = serve_either(shard.clone(), stream, cid, peer, t.clone());
            glommio::spawn_local(task).detach();
            continue;
        }
        shard.borrow().count_accepted(peer, session.is_some());
        glommio::spawn_local(serve_conn(shard.clone(), stream, cid, session)).detach();
    }
}

/// A new TLS session for a connection from `peer` (None, logged, if rustls
/// cannot make one).
fn start_tls(tls: &ServerTls, peer: SocketAddr) -> Option<Box<TlsSession>> {
    match tls.session() {
        Ok(s) => Some(Box::new(s)),
        Err(e) => {
            tracing::warn!("cannot start TLS for {peer}: {e}");
            None
        }
    }
}

/// client.portUnification: serves a connection of the client port as TLS when its
/// first bytes are a TLS client's (`tls::tls_verdict`), as plaintext otherwise,
/// or when nothing has come within the TLS handshake timeout.
async fn serve_either(
    shard: Rc<RefCell<Shard>>,
    stream: TcpStream,
    cid: ConnId,
    peer: SocketAddr,
    tls: Arc<ServerTls>,
) {
    use futures::future::{select, Either};
    // A stop (or the shard closing the connection) must not wait for the sniff:
    // a silent client would hold it for the whole TLS handshake timeout.
    let sniffed = {
        let wait = async { Ok(tls::starts_with_tls(&stream).await) };
        let sniff = std::pin::pin!(glommio::timer::timeout(tls::TLS_HANDSHAKE_TIMEOUT, wait));
        match select(sniff, std::pin::pin!(closing(&shard, cid))).await {
            Either::Left((sniffed, _)) => Some(sniffed.unwrap_or(false)),
            Either::Right(((), _)) => None,
        }
    };
    let Some(is_tls) = sniffed else {
        return shard.borrow_mut().close_conn(cid);
    };
    let session = match is_tls {
        true => match start_tls(&tls, peer) {
            Some(s) => Some(s),
            None => return shard.borrow_mut().close_conn(cid),
        },
        false => None,
    };
    shard.borrow().count_accepted(peer, session.is_some());
    serve_conn(shard, stream, cid, session).await
}

/// Resolves once the shard marks connection `cid` closing (a stop) or has
/// dropped it; until then the connection's waker is this future's.
async fn closing(shard: &Rc<RefCell<Shard>>, cid: ConnId) {
    std::future::poll_fn(|cx| {
        let mut s = shard.borrow_mut();
        match s.conns.get_mut(&cid) {
            Some(c) if !c.closing => {
                c.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
            _ => std::task::Poll::Ready(()),
        }
    })
    .await
}

enum Event {
    Read(usize),
    /// Reading may go on after a pause: drain the replies that waited for room in
    /// the output, then feed the frames held in the receive buffer.
    Resume,
    Eof,
    Failed(std::io::Error),
    Flushed,
    /// Over corral.maxQueuedBytesPerConnection: close without flushing.
    Overflowed,
    /// TLS records need sending before reading on (handshake, close_notify).
    TlsProgress,
    /// The TLS handshake ended; the client's certificate, if it gave one.
    TlsEstablished(Option<CertificateDer<'static>>),
    /// The TLS layer failed (during the handshake: the client is refused).
    TlsFailed(TlsFailure),
    /// No TLS handshake within TLS_HANDSHAKE_TIMEOUT.
    TlsTimedOut,
}

/// The receive buffer's size at start, and after a large frame has been processed.
const READ_BUFFER_BYTES_INITIAL: usize = 64 * 1024;
/// Free room below which the receive buffer doubles before a read.
const READ_ROOM_BYTES_MIN: usize = 4096;

/// A receive or send buffer above this is shrunk back once it is empty.
const BUFFER_BYTES_KEPT_MAX: usize = 256 * 1024;

/// One connection task's own buffers. `rbuf` holds received bytes not yet taken as
/// whole frames (decrypted ones on the TLS port). It grows only while reading and
/// short of room: whole frames are taken out after every read, a frame over
/// jute.maxbuffer closes the connection, and no read happens while frames are held,
/// so it stays under 2 × (jute.maxbuffer + 4 + READ_ROOM_BYTES_MIN). `wbuf` is what
/// the socket (or the TLS session) is being given (swapped with `Conn::out`); its
/// unsent part counts against the connection's limits through
/// `Conn::writer_unsent_bytes`. A TLS session adds its own bounded buffers (see
/// `tls`).
struct ConnIo {
    rbuf: Vec<u8>,
    filled: usize,
    /// Whole frames wait in `rbuf` because the shard paused taking requests.
    held: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    max_frame: usize,
    /// The TLS port's session; `None` on the client port.
    tls: Option<Box<TlsSession>>,
    /// Until the TLS handshake ends: it must end before this fires.
    handshake_deadline: Option<glommio::timer::Timer>,
    close_notify_queued: bool,
    /// The TLS layer failed once; the task only sends what is queued (an alert).
    tls_failed: bool,
}

impl ConnIo {
    fn new(max_frame: usize, tls: Option<Box<TlsSession>>) -> Self {
        let handshake_deadline = tls
            .as_ref()
            .map(|_| glommio::timer::Timer::new(tls::TLS_HANDSHAKE_TIMEOUT));
        ConnIo {
            rbuf: vec![0u8; READ_BUFFER_BYTES_INITIAL],
            filled: 0,
            held: false,
            wbuf: Vec::with_capacity(READ_BUFFER_BYTES_INITIAL),
            wpos: 0,
            max_frame,
            tls,
            handshake_deadline,
            close_notify_queued: false,
            tls_failed: false,
        }
    }

    /// One wake-up of the connection task: flush, then decide whether to end, resume
    /// paused work, read, or wait.
    fn poll_event(
        &mut self,
        sh: &mut Shard,
        stream: &mut TcpStream,
        cid: ConnId,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        let Some(conn) = sh.conns.get_mut(&cid) else {
            return Poll::Ready(Event::Flushed);
        };
        if conn.overflowed {
            return Poll::Ready(Event::Overflowed);
        }
        if let Some(end) = self.flush(conn, stream, cx) {
            return Poll::Ready(end);
        }
        if conn.closing && self.all_sent(conn) {
            return Poll::Ready(match self.queue_close_notify() {
                true => Event::TlsProgress,
                false => Event::Flushed,
            });
        }
        conn.waker = Some(cx.waker().clone());
        if let Some(ev) = self.poll_handshake_deadline(cx) {
            return Poll::Ready(ev);
        }
        let conn = &sh.conns[&cid];
        if conn.drain_waiting() && !conn.closing && sh.output_has_room(conn) {
            return Poll::Ready(Event::Resume);
        }
        if !sh.takes_requests(conn) {
            return Poll::Pending;
        }
        if self.held {
            return Poll::Ready(Event::Resume);
        }
        self.poll_read(stream, cx)
    }

    /// Nothing of the connection's output is left unsent (TLS records included).
    fn all_sent(&self, conn: &Conn) -> bool {
        conn.unsent_bytes() == 0 && !self.tls.as_ref().is_some_and(|t| t.has_unsent())
    }

    /// A TLS connection closing after its handshake says so with close_notify, once.
    fn queue_close_notify(&mut self) -> bool {
        match &mut self.tls {
            Some(t) if !t.is_handshaking() && !self.close_notify_queued => {
                t.close_notify();
                self.close_notify_queued = true;
                true
            }
            _ => false,
        }
    }

    fn poll_handshake_deadline(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        let timer = self.handshake_deadline.as_mut()?;
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => {
                self.handshake_deadline = None;
                Some(Event::TlsTimedOut)
            }
            Poll::Pending => None,
        }
    }

    /// Hands the connection's output to the socket (through TLS on the TLS port)
    /// until it is all sent or the socket is full. `Some` when the connection ended.
    fn flush(
        &mut self,
        conn: &mut Conn,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Option<Event> {
        let end = loop {
            if let Some(t) = &mut self.tls {
                match t.poll_send(stream, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => break Some(Event::Failed(e)),
                    Poll::Pending => break None,
                }
            }
            if !self.refill(conn) {
                break None;
            }
            if let ControlFlow::Break(end) = self.send_some(stream, cx) {
                break end;
            }
        };
        conn.writer_unsent_bytes = self.wbuf.len() - self.wpos;
        end
    }

    /// Leaves unsent bytes in `wbuf`, taking the connection's output once `wbuf` is
    /// all sent. `false` when there is nothing to send.
    fn refill(&mut self, conn: &mut Conn) -> bool {
        if self.wpos < self.wbuf.len() {
            return true;
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > BUFFER_BYTES_KEPT_MAX {
            self.wbuf.shrink_to(READ_BUFFER_BYTES_INITIAL);
        }
        if conn.out.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.wbuf, &mut conn.out);
        true
    }

    /// Some of `wbuf` to the socket, or into TLS records. `Break` stops flushing
    /// (socket or TLS buffer full: `None`; the connection ended: `Some`).
    fn send_some(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> ControlFlow<Option<Event>> {
        let unsent = &self.wbuf[self.wpos..];
        if let Some(t) = &mut self.tls {
            let n = t.write_plain(unsent);
            self.wpos += n;
            return match n {
                0 => ControlFlow::Break(None),
                _ => ControlFlow::Continue(()),
            };
        }
        match Pin::new(&mut *stream).poll_write(cx, unsent) {
            Poll::Ready(Ok(0)) => ControlFlow::Break(Some(Event::Eof)),
            Poll::Ready(Ok(n)) => {
                self.wpos += n;
                ControlFlow::Continue(())
            }
            Poll::Ready(Err(e)) => ControlFlow::Break(Some(Event::Failed(e))),
            Poll::Pending => ControlFlow::Break(None),
        }
    }

    /// Received bytes into `rbuf` (decrypted on the TLS port).
    fn poll_read(&mut self, stream: &mut TcpStream, cx: &mut Context<'_>) -> Poll<Event> {
        if self.rbuf.len() - self.filled < READ_ROOM_BYTES_MIN {
            self.rbuf.resize(self.rbuf.len() * 2, 0);
        }
        let room = &mut self.rbuf[self.filled..];
        if let Some(t) = &mut self.tls {
            return t.poll_read(stream, cx, room).map(|r| match r {
                Ok(TlsInput::Plain(n)) => Event::Read(n),
                Ok(TlsInput::Progress) => Event::TlsProgress,
                Ok(TlsInput::Established(cert)) => Event::TlsEstablished(cert),
                Ok(TlsInput::Closed) => Event::Eof,
                Err(e) => Event::TlsFailed(e),
            });
        }
        match Pin::new(stream).poll_read(cx, room) {
            Poll::Ready(Ok(0)) => Poll::Ready(Event::Eof),
            Poll::Ready(Ok(n)) => Poll::Ready(Event::Read(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Event::Failed(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Gives the shard the whole frames received so far and keeps the rest.
    fn feed(&mut self, sh: &mut Shard, cid: ConnId) -> After {
        let (consumed, after) = sh.on_bytes(cid, &self.rbuf[..self.filled], self.max_frame);
        sh.wake(cid);
        if consumed > 0 {
            self.rbuf.copy_within(consumed..self.filled, 0);
            self.filled -= consumed;
        }
        self.held = matches!(after, After::Held);
        // A large frame grew the buffer; shrink back once it is processed.
        if self.filled == 0 && self.rbuf.len() > BUFFER_BYTES_KEPT_MAX {
            self.rbuf.truncate(READ_BUFFER_BYTES_INITIAL);
            self.rbuf.shrink_to_fit();
        }
        after
    }

    /// After a pause: the replies that waited for room first, then held frames.
    fn resume(&mut self, sh: &mut Shard, cid: ConnId) -> After {
        sh.now = Instant::now();
        sh.drain(cid);
        if self.held {
            return self.feed(sh, cid);
        }
        After::Continue
    }

    /// What an event does: the task goes on (with what feeding the shard decided),
    /// or ends (with the socket error, if that is why).
    fn on_event(
        &mut self,
        sh: &mut Shard,
        cid: ConnId,
        ev: Event,
    ) -> ControlFlow<Option<String>, After> {
        let after = match ev {
            Event::Read(n) => {
                self.filled += n;
                self.feed(sh, cid)
            }
            Event::Resume => self.resume(sh, cid),
            Event::Eof | Event::Flushed | Event::Overflowed => return ControlFlow::Break(None),
            Event::Failed(e) => return ControlFlow::Break(Some(e.to_string())),
            Event::TlsProgress => After::Continue,
            Event::TlsEstablished(cert) => {
                self.handshake_deadline = None;
                sh.counters().tls_handshakes_in_progress.sub_owned(1);
                sh.on_tls_established(cid, cert.as_ref());
                After::Continue
            }
            Event::TlsFailed(e) if !self.tls_failed => {
                if !self.on_tls_failure(sh, cid, &e.to_string(), e.is_not_tls()) {
                    return ControlFlow::Break(None);
                }
                After::Continue
            }
            Event::TlsTimedOut if !self.tls_failed => {
                let why = format!("not done within {:?}", tls::TLS_HANDSHAKE_TIMEOUT);
                if !self.on_tls_failure(sh, cid, &why, false) {
                    return ControlFlow::Break(None);
                }
                After::Continue
            }
            // A refused handshake whose alert could not be sent.
            Event::TlsFailed(_) | Event::TlsTimedOut => return ControlFlow::Break(None),
        };
        ControlFlow::Continue(after)
    }

    /// The TLS layer failed or timed out: during the handshake the client is
    /// refused (one log line) and its alert, if any, still goes out; later the
    /// connection just ends. `false`: end the task now.
    fn on_tls_failure(&mut self, sh: &mut Shard, cid: ConnId, why: &str, not_tls: bool) -> bool {
        self.tls_failed = true;
        self.handshake_deadline = None;
        let handshaking = self.tls.as_ref().is_some_and(|t| t.is_handshaking());
        let Some(c) = sh.conns.get_mut(&cid) else {
            return false;
        };
        if !handshaking {
            tracing::debug!("TLS connection from {} ended: {why}", c.peer);
            return false;
        }
        c.closing = true;
        let peer = c.peer;
        let hint = match not_tls {
            true => " (not TLS: a plaintext client on secureClientPort?)",
            false => "",
        };
        sh.warn_tls(|| {
            format!("TLS handshake with {peer} failed, connection dropped: {why}{hint}")
        });
        true
    }
}

async fn serve_conn(
    shard: Rc<RefCell<Shard>>,
    mut stream: TcpStream,
    cid: ConnId,
    tls: Option<Box<TlsSession>>,
) {
    let mut io = ConnIo::new(shard.borrow().cfg.jute_max_buffer_bytes, tls);
    let reason = loop {
        let ev =
            std::future::poll_fn(|cx| io.poll_event(&mut shard.borrow_mut(), &mut stream, cid, cx))
                .await;
        let after = match io.on_event(&mut shard.borrow_mut(), cid, ev) {
            ControlFlow::Continue(after) => after,
            ControlFlow::Break(reason) => break reason,
        };
        if let After::FourLetter(cmd) = after {
            let text = four_letter(&shard, &cmd).await;
            let mut sh = shard.borrow_mut();
            if let Some(c) = sh.conns.get_mut(&cid) {
                c.out.extend_from_slice(text.as_bytes());
                c.closing = true;
            }
        }
    };
    let _ = futures_lite::AsyncWriteExt::close(&mut stream).await;
    let mut sh = shard.borrow_mut();
    if io.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
        // Refused, timed out or closed by the client before the handshake ended:
        // the reference's Netty factory counts each as an authentication failure
        // and an unsuccessful handshake.
        sh.counters().auth_failed.add_owned(1);
        sh.counters().unsuccessful_handshakes.add_owned(1);
        sh.counters().tls_handshakes_in_progress.sub_owned(1);
    }
    let peer = sh.conns.get(&cid).map(|c| c.peer);
    sh.close_conn(cid);
    if let (Some(why), Some(p)) = (reason, peer) {
        tracing::debug!("connection from {p} ended: {why}");
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
        gather_reports(&mesh, &mut view).await;
    }
    match cmd {
        "srst" => {
            let _ = mesh.to_sequencer.send(ToSequencer::ResetStats);
        }
        "crst" => {
            for to in &mesh.to_shards {
                let _ = to.send(ToShard::ResetConnectionStats);
            }
        }
        _ => {}
    }
    admin::render(cmd, &view)
}

/// Asks the sequencer and every shard (this one too) for its report at once,
/// and waits for the answers until `admin::http::REPORT_WAIT` from now: a core
/// that does not answer by then is left out of the view (and named in a
/// warning), so a four-letter word is always answered, as the reference's are.
async fn gather_reports(mesh: &Mesh, view: &mut admin::View<'_>) {
    let deadline = Instant::now() + admin::http::REPORT_WAIT;
    let (tx, rx) = flume::bounded(1);
    let sequencer = mesh.to_sequencer.send(ToSequencer::Report(tx)).is_ok();
    let asked: Vec<(usize, flume::Receiver<ShardReport>)> = (mesh.to_shards.iter().enumerate())
        .filter_map(|(i, to)| {
            let (tx, rx) = flume::bounded(1);
            to.send(ToShard::Report(tx)).is_ok().then_some((i, rx))
        })
        .collect();
    if sequencer {
        view.sequencer = inbox::recv_until(&rx, deadline).await;
        if view.sequencer.is_none() {
            tracing::warn!(
                "four-letter word: the sequencer gave no report within {:?}; answered without it",
                admin::http::REPORT_WAIT
            );
        }
    }
    for (i, rx) in asked {
        match inbox::recv_until(&rx, deadline).await {
            Some(r) => view.shards.push(r),
            None => tracing::warn!(
                "four-letter word: shard {i} gave no report within {:?}; answered without it",
                admin::http::REPORT_WAIT
            ),
        }
    }
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

/// A reply to a sasl request: header with zxid 0, then the SetSASLResponse token
/// (null when there is none).
fn sasl_reply(xid: i32, err: i32, token: Option<&[u8]>) -> Vec<u8> {
    frame(|v| {
        proto::ReplyHeader { xid, zxid: 0, err }.encode(v);
        match token {
            Some(t) => v.put_buffer(t),
            None => v.put_null(),
        }
    })
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

    /// A connection was admitted: a TLS one begins its handshake, a plaintext one
    /// counts by peer (see `ShardCounters::non_mtls_local_conns`).
    fn count_accepted(&self, peer: SocketAddr, tls: bool) {
        let c = self.counters();
        let counter = match (tls, peer.ip().to_canonical().is_loopback()) {
            (true, _) => &c.tls_handshakes_in_progress,
            (false, true) => &c.non_mtls_local_conns,
            (false, false) => &c.non_mtls_remote_conns,
        };
        counter.add_owned(1);
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
                // skipACL=yes: every session passes every ACL check, as the super user.
                is_super: self.cfg.skip_acl,
                out: Vec::new(),
                writer_unsent_bytes: 0,
                waker: None,
                closing: false,
                overflowed: false,
                queue: VecDeque::new(),
                received: 0,
                sent: 0,
                last_zxid: 0,
                established_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                stats: ConnStats::RESET,
                sasl: DigestServer::new(),
            },
        );
        self.counters().connections.add_owned(1);
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
        let counters = self.counters();
        counters.connections.sub_owned(1);
        // Its requests still in process are answered to no one.
        counters.outstanding.sub_owned(c.queue.len() as u64);
        self.stats.release_connection();
    }

    /// Decides whether a new connection is served: maxClientCnxns per client IP (on
    /// this shard), then maxCnxns over every shard. A refusal logs at most one line
    /// per WARN_INTERVAL, since a client can retry in a loop.
    fn admit(&mut self, peer: SocketAddr) -> Option<ConnId> {
        let per_ip_max = self.cfg.max_client_cnxns;
        let from_ip = self.conns_per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if per_ip_max > 0 && from_ip >= per_ip_max {
            self.counters().connections_rejected.add_owned(1);
            self.warn_refused(|| {
                format!(
                    "too many connections from {} - max is {per_ip_max} (maxClientCnxns)",
                    peer.ip()
                )
            });
            return None;
        }
        let max = self.cfg.max_cnxns;
        if let Err(e) = self.stats.admit_connection(max as u64) {
            self.counters().connections_rejected.add_owned(1);
            self.warn_refused(|| {
                format!(
                    "too many connections {} - max is {max} (maxCnxns); refused {peer}",
                    e.open
                )
            });
            return None;
        }
        *self.conns_per_ip.entry(peer.ip()).or_insert(0) += 1;
        Some(self.open_conn(peer))
    }

    /// A failed TLS handshake: at most one line per WARN_INTERVAL (a plaintext
    /// client retrying in a loop fails every time).
    fn warn_tls(&mut self, line: impl FnOnce() -> String) {
        if let Some(unlogged) = self.tls_warnings.note(Instant::now()) {
            match unlogged {
                0 => tracing::warn!("{}", line()),
                n => tracing::warn!("{} ({n} more failed since the last warning)", line()),
            }
        }
    }

    /// The TLS handshake ended: a client that presented a certificate (verified by
    /// the handshake) authenticates as `x509:<subject>`, as the reference's
    /// X509AuthenticationProvider adds it before the connection serves anything.
    fn on_tls_established(&mut self, cid: ConnId, cert: Option<&CertificateDer<'_>>) {
        let (Some(cert), Some(tls)) = (cert, self.tls.clone()) else {
            return;
        };
        let subject = match tls::rfc2253_subject(cert) {
            Ok(s) => s,
            Err(e) => {
                self.counters().auth_failed.add_owned(1);
                self.close_with(cid, &format!("x509 authentication failed: {e}"));
                return;
            }
        };
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let new = tls.x509_ids(&subject);
        c.is_super |= new.iter().any(|i| i.scheme == "super");
        let ids = Arc::make_mut(&mut c.ids);
        for id in new {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        tracing::debug!(
            "connection from {}: authenticated as x509 `{subject}`",
            c.peer
        );
    }

    fn warn_refused(&mut self, line: impl FnOnce() -> String) {
        if let Some(unlogged) = self.refused_warnings.note(Instant::now()) {
            match unlogged {
                0 => tracing::warn!("{}", line()),
                n => tracing::warn!("{} ({n} more refused since the last warning)", line()),
            }
        }
    }

    /// Whether a connection's next request may be read and decoded now. It waits:
    /// during the handshake and when closing; with
    /// corral.maxOutstandingPerConnection requests in process; while its unsent
    /// replies are at corral.maxQueuedReplyBytesPerConnection (reads are answered
    /// on arrival, so this is what stops a client that does not read its replies);
    /// and, as the reference throttles, while the whole server has more than
    /// globalOutstandingLimit requests in process and this connection some of its
    /// own. Their replies wake it, so a paused connection always has a wake-up
    /// coming; one with none in process may still send one request.
    fn takes_requests(&self, c: &Conn) -> bool {
        if c.closing || c.overflowed || c.phase == Phase::Handshaking {
            return false;
        }
        if c.queue.len() >= self.cfg.max_outstanding_per_connection || !self.output_has_room(c) {
            return false;
        }
        c.queue.is_empty() || self.stats.outstanding() <= self.cfg.global_outstanding_limit
    }

    /// Below corral.maxQueuedReplyBytesPerConnection: one more reply may be written.
    /// A soft limit: the reply that crosses it is written whole, so even a maximal
    /// reply always goes out.
    fn output_has_room(&self, c: &Conn) -> bool {
        c.unsent_bytes() < self.cfg.max_queued_reply_bytes_per_connection
    }

    /// Events and write replies cannot be refused (the commit happened); they are
    /// bounded instead by corral.maxQueuedBytesPerConnection. A connection over it
    /// is closed at once, unflushed, and its output dropped: the client reconnects to
    /// its session (which lives on), and its setWatches re-arms its watches and
    /// reports what changed meanwhile. The reference queues without a bound (its
    /// heap is the bound); closing one connection is what keeps the process alive.
    fn enforce_queued_bytes_max(&mut self, cid: ConnId) {
        let max = self.cfg.max_queued_bytes_per_connection;
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        if c.overflowed || c.unsent_bytes() <= max {
            return;
        }
        tracing::warn!(
            "closing connection from {} (session {:#x}): {} bytes of replies and watch \
             events unread, over corral.maxQueuedBytesPerConnection ({max})",
            c.peer,
            c.session_id,
            c.unsent_bytes()
        );
        c.overflowed = true;
        c.out = Vec::new();
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
                Err(chan::TryRecvError::Empty) if spins < 20_000 => {
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
            if c.closing || c.overflowed {
                return (at, After::Continue);
            }
            let rest = &buf[at..];
            if rest.len() < 4 {
                return (at, After::Continue);
            }
            if !self.takes_requests(c) {
                return (at, After::Held);
            }
            if c.phase == Phase::AwaitConnect && at == 0 {
                if let Ok(word) = std::str::from_utf8(&rest[..4]) {
                    if crate::config::FOUR_LETTER_WORDS.contains(&word) {
                        self.counters().bytes_received.add_owned(4);
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
            let counters = &self.stats.shards[self.id];
            counters.bytes_received.add_owned(4 + len as u64);
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
        // The reference counts the connect request as a packet received (server
        // and connection), and its answer as one sent.
        self.conns.get_mut(&cid).unwrap().received += 1;
        let counters = self.counters();
        counters.packets_received.add_owned(1);
        counters.connection_requests.add_owned(1);
        if req.session_id != 0 {
            counters.connection_revalidates.add_owned(1);
        }
        if !self.stats.serving() {
            // As the reference: a member without a leader takes no sessions.
            self.close_with(cid, NOT_SERVING);
            return;
        }
        self.conns.get_mut(&cid).unwrap().phase = Phase::Handshaking;
        let connect = ToSequencer::Connect {
            shard: self.id,
            conn: cid,
            req,
        };
        if let Err(e) = self.mesh.to_sequencer.send(connect) {
            self.close_with(cid, &mesh_send_failed(&e));
        }
    }

    fn on_request_frame(&mut self, cid: ConnId, body: &[u8]) {
        self.counters().packets_received.add_owned(1);
        let mut r = Reader::new(body);
        let hdr = match RequestHeader::decode(&mut r) {
            Ok(h) => h,
            Err(e) => {
                self.close_with(cid, &format!("malformed request header: {e}"));
                return;
            }
        };
        let session_id = {
            let c = self.conns.get_mut(&cid).unwrap();
            c.received += 1;
            c.session_id
        };
        self.mark_active(session_id);
        if hdr.opcode == proto::op::SASL {
            self.on_sasl(cid, hdr.xid, &mut r);
            return;
        }
        if !self.cfg.enforce_auth_schemes.is_empty()
            && hdr.opcode != proto::op::AUTH
            && !self.holds_enforced_id(cid)
        {
            return self.refuse_unauthenticated(cid, hdr.xid);
        }
        match ReadRequest::decode(hdr.opcode, &mut r) {
            Some(Ok(read)) => self.on_read(cid, hdr.xid, read),
            Some(Err(e)) => self.on_malformed(cid, session_id, hdr, e),
            None => self.on_owned_request(cid, session_id, hdr, &mut r),
        }
    }

    /// Whether the connection holds an id of one of enforce.auth.schemes.
    fn holds_enforced_id(&self, cid: ConnId) -> bool {
        let schemes = &self.cfg.enforce_auth_schemes;
        self.conns[&cid]
            .ids
            .iter()
            .any(|id| schemes.contains(&id.scheme))
    }

    /// enforce.auth: a request (other than auth or SASL) from a connection not
    /// authenticated with an enforced scheme is answered
    /// SessionClosedRequireSaslAuth and the connection closed, as the reference's
    /// AuthenticationHelper does (the session itself is left to expire).
    fn refuse_unauthenticated(&mut self, cid: ConnId, xid: i32) {
        let bytes = frame(|v| {
            proto::ReplyHeader {
                xid,
                zxid: 0,
                err: ErrorCode::SessionClosedRequireSaslAuth.code(),
            }
            .encode(v)
        });
        self.push_ready_unbooked(cid, bytes);
        let held: Vec<&str> = self.conns[&cid]
            .ids
            .iter()
            .map(|i| i.scheme.as_str())
            .collect();
        let why = format!(
            "it is authenticated by {held:?}, none of the schemes enforce.auth requires ({:?})",
            self.cfg.enforce_auth_schemes
        );
        self.close_with(cid, &why);
    }

    /// A request the shard's read path does not cover, decoded as an owned `Request`.
    fn on_owned_request(
        &mut self,
        cid: ConnId,
        session_id: i64,
        hdr: RequestHeader,
        r: &mut Reader<'_>,
    ) {
        let xid = hdr.xid;
        let req = match Request::decode(hdr.opcode, r) {
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
                self.push_ready(cid, bytes, None);
                self.close_with(cid, &format!("unknown opcode {o}"));
                return;
            }
            Err(e) => return self.on_malformed(cid, session_id, hdr, e),
        };
        let now = self.now;
        match req {
            Request::Auth { scheme, auth, .. } => self.on_auth(cid, xid, &scheme, &auth),
            Request::SetWatches(sw) => self.on_set_watches(cid, xid, sw),
            req if req.is_write() || matches!(req, Request::Check { .. }) => {
                let c = self.conns.get_mut(&cid).unwrap();
                let outstanding = &self.stats.shards[self.id].outstanding;
                let w = Box::new(WriteReq {
                    shard: self.id,
                    conn: cid,
                    session_id,
                    xid,
                    req,
                    ids: c.ids.clone(),
                    is_super: c.is_super,
                });
                let watches = &self.watches;
                if c.write_must_wait(&w.req, || watches.has_watches(cid)) {
                    c.enqueue(Pending::Unsent(w, now), outstanding);
                } else {
                    let op = stats::operation_name(w.req.opcode());
                    c.enqueue(Pending::Write { xid, at: now, op }, outstanding);
                    self.send_write(w);
                }
            }
            req => {
                let c = self.conns.get_mut(&cid).unwrap();
                if c.queue.is_empty() {
                    self.answer_read(cid, xid, req, now);
                } else {
                    let outstanding = &self.stats.shards[self.id].outstanding;
                    c.enqueue(Pending::Read { xid, req, at: now }, outstanding);
                }
            }
        }
    }

    /// A request body that does not decode: answered MarshallingError, connection kept.
    fn on_malformed(
        &mut self,
        cid: ConnId,
        session_id: i64,
        hdr: RequestHeader,
        e: proto::DecodeError,
    ) {
        tracing::warn!(
            "malformed request (opcode {}) from session {session_id:#x}: {e}",
            hdr.opcode
        );
        let bytes = frame(|v| {
            proto::ReplyHeader {
                xid: hdr.xid,
                zxid: self.last_zxid,
                err: ErrorCode::MarshallingError.code(),
            }
            .encode(v)
        });
        self.push_ready(cid, bytes, None);
    }

    /// getData, exists, getChildren(2) or ping, its path still borrowed from the
    /// received frame: answered now, straight into the output, unless earlier
    /// requests of the connection are still waiting (then it waits, owned).
    fn on_read(&mut self, cid: ConnId, xid: i32, read: ReadRequest<'_>) {
        let now = self.now;
        let c = self.conns.get_mut(&cid).unwrap();
        if c.queue.is_empty() {
            self.answer_read_view(cid, xid, &read, now);
            return;
        }
        let outstanding = &self.stats.shards[self.id].outstanding;
        if let ReadRequest::Ping = read {
            let mut bytes = Vec::new();
            proto::read::write_ping_reply(&mut bytes, self.last_zxid);
            let ping = Answered {
                op: "PING",
                xid,
                at: now,
            };
            let ready = Pending::Ready {
                bytes,
                answered: Some(ping),
                timed: None,
            };
            c.enqueue(ready, outstanding);
            return;
        }
        let req = read.to_request();
        c.enqueue(Pending::Read { xid, req, at: now }, outstanding);
    }

    /// Hands a write to the sequencer; if it cannot take it, the connection is
    /// closed (its client sees the connection lost, the write not applied), as
    /// the write's answer would never come.
    fn send_write(&mut self, w: Box<WriteReq>) {
        let cid = w.conn;
        if let Err(e) = self.mesh.to_sequencer.send(ToSequencer::Write(w)) {
            self.close_with(cid, &mesh_send_failed(&e));
        }
    }

    /// Appends a reply now if nothing is queued ahead of it, else queues it;
    /// `answered`: what the connection stats book for it.
    fn push_ready(&mut self, cid: ConnId, bytes: Vec<u8>, answered: Option<Answered>) {
        let c = self.conns.get_mut(&cid).unwrap();
        if c.queue.is_empty() {
            c.out.extend_from_slice(&bytes);
            self.count_reply(cid, answered, None, bytes.len());
        } else {
            let ready = Pending::Ready {
                bytes,
                answered,
                timed: None,
            };
            c.enqueue(ready, &self.stats.shards[self.id].outstanding);
        }
    }

    /// A reply the connection stats do not book (auth and SASL, as the
    /// reference answers them before its request pipeline).
    fn push_ready_unbooked(&mut self, cid: ConnId, bytes: Vec<u8>) {
        self.push_ready(cid, bytes, None)
    }

    /// Books one reply of `frame_bytes` (length prefix included) that was just
    /// appended to a connection's output: the connection's counters and stats
    /// (`answered`), the shard's counters, and the latency histograms when
    /// `timed` (`Some(update)`: it answered a write, else a read).
    fn count_reply(
        &mut self,
        cid: ConnId,
        answered: Option<Answered>,
        timed: Option<bool>,
        frame_bytes: usize,
    ) {
        if let Some(c) = self.conns.get_mut(&cid) {
            c.sent += 1;
            c.last_zxid = self.last_zxid;
            if let Some(a) = answered {
                c.stats.book(a, self.now, self.stats.started);
            }
        }
        let counters = &self.stats.shards[self.id];
        counters.packet_sent(frame_bytes, self.stats.since_start_us(self.now));
        if let (Some(a), Some(update)) = (answered, timed) {
            let us = self.now.saturating_duration_since(a.at).as_micros() as u64;
            counters.record_reply_latency_us(us, update);
        }
    }

    /// Serves a read-like request from the current tree, straight into the
    /// connection's output buffer.
    fn answer_read(&mut self, cid: ConnId, xid: i32, req: Request, since: Instant) {
        if let Some(read) = ReadRequest::of(&req) {
            return self.answer_read_view(cid, xid, &read, since);
        }
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let mut out = std::mem::take(&mut c.out);
        let before = out.len();
        let op = stats::operation_name(req.opcode());
        self.serve_read_into(&mut out, cid, xid, req);
        let frame_bytes = out.len() - before;
        if let Some(c) = self.conns.get_mut(&cid) {
            c.out = out;
        }
        let answered = Answered { op, xid, at: since };
        self.count_reply(cid, Some(answered), Some(false), frame_bytes);
    }

    /// The read path proper: `tree::serve_read` encodes the reply from the tree
    /// version into the connection's output, then the watch (if asked for) is
    /// registered and the reply booked. A ping is booked as the reference books it
    /// (its stats, no latency sample).
    fn answer_read_view(&mut self, cid: ConnId, xid: i32, read: &ReadRequest<'_>, since: Instant) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let before = c.out.len();
        let caller = Caller {
            session_id: c.session_id,
            ids: &c.ids,
            is_super: c.is_super,
        };
        let result = tree::serve_read(&self.tree, &caller, self.last_zxid, xid, read, &mut c.out);
        if let Err(e) = self.watch_for_read(cid, read, result) {
            tracing::warn!("connection {cid}: {e} (corral.maxWatchesPerConnection)");
            let c = self.conns.get_mut(&cid).unwrap();
            c.out.truncate(before);
            write_reply(&mut c.out, xid, self.last_zxid, Err(ErrorCode::Throttled));
        }
        let frame_bytes = self.conns[&cid].out.len() - before;
        let op = stats::operation_name(read.opcode());
        let answered = Some(Answered { op, xid, at: since });
        let timed = (!matches!(read, ReadRequest::Ping)).then_some(false);
        self.count_reply(cid, answered, timed, frame_bytes);
    }

    /// Registers the watch a read asked for, if its outcome sets one: exists on a
    /// node or its absence, getData and getChildren(2) on a node.
    fn watch_for_read(
        &mut self,
        cid: ConnId,
        read: &ReadRequest<'_>,
        result: Result<(), ErrorCode>,
    ) -> Result<(), crate::watch::TooManyWatches> {
        let ReadRequest::Node {
            kind,
            path,
            watch: true,
        } = *read
        else {
            return Ok(());
        };
        match (kind, result) {
            (ReadKind::Exists, Ok(()) | Err(ErrorCode::NoNode)) | (ReadKind::GetData, Ok(())) => {
                self.watches.add_data(cid, path)
            }
            (ReadKind::GetChildren | ReadKind::GetChildren2, Ok(())) => {
                self.watches.add_child(cid, path)
            }
            _ => Ok(()),
        }
    }

    /// auth: the reply echoes the request's xid (the reference's clients send −4,
    /// others any xid), err 0 or AuthFailed; a failure closes the connection.
    fn on_auth(&mut self, cid: ConnId, xid: i32, scheme: &str, auth: &[u8]) {
        let ok = match scheme {
            // DigestAuthenticationProvider.enabled=false: no provider, AuthFailed.
            "digest" if self.cfg.digest_auth_enabled => match std::str::from_utf8(auth) {
                Ok(user_pass) if user_pass.contains(':') => {
                    let id = tree::digest_id_with(self.cfg.digest_alg, user_pass);
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
        self.push_ready(cid, bytes, None);
        if !ok {
            self.close_with(
                cid,
                &format!("authentication with scheme `{scheme}` failed"),
            );
        }
    }

    /// sasl (op 102, a GetSASLRequest): one step of the connection's DIGEST-MD5
    /// exchange, answered at once as the reference does (`processSasl`): the
    /// request's xid, zxid 0, a SetSASLResponse token. A login that fails gets
    /// AuthFailed with no token and the connection closes, unless
    /// allowSaslFailedClients keeps it (then OK with no token). Without JAAS users
    /// the reference has no SASL server: OK with no token.
    fn on_sasl(&mut self, cid: ConnId, xid: i32, r: &mut Reader<'_>) {
        let token = match r.buffer() {
            Ok(Some(t)) => t,
            // The reference throws outside its SASL handling and drops the connection.
            Ok(None) => return self.close_with(cid, "SASL request without a token"),
            Err(e) => return self.close_with(cid, &format!("malformed SASL request: {e}")),
        };
        let cfg = self.cfg.clone();
        if cfg.sasl.users.is_none() {
            return self.push_ready_unbooked(cid, sasl_reply(xid, 0, None));
        }
        let c = self.conns.get_mut(&cid).unwrap();
        let mut random = |b: &mut [u8]| rand::RngCore::fill_bytes(&mut rand::thread_rng(), b);
        let password = |user: &str| cfg.sasl.password(user).map(str::to_string);
        match c.sasl.evaluate(token, &mut random, &password) {
            Ok(Outcome::Challenge(t)) => {
                self.push_ready_unbooked(cid, sasl_reply(xid, 0, Some(&t)))
            }
            Ok(Outcome::Authenticated { rspauth, user }) => {
                self.add_sasl_id(cid, &user);
                self.push_ready_unbooked(cid, sasl_reply(xid, 0, Some(&rspauth)));
            }
            Err(e) => self.on_sasl_failed(cid, xid, e),
        }
    }

    /// Gives the connection `sasl:<user>`, and the super identity if the user is
    /// one of zookeeper.superUser.
    fn add_sasl_id(&mut self, cid: ConnId, user: &str) {
        let is_super = self.cfg.sasl.is_super_user(user);
        let c = self.conns.get_mut(&cid).unwrap();
        let ids = Arc::make_mut(&mut c.ids);
        let mut new = vec![Id::new("sasl", user)];
        if is_super {
            new.push(Id::new("super", ""));
        }
        for n in new {
            if !ids.contains(&n) {
                ids.push(n);
            }
        }
        c.is_super |= is_super;
        tracing::info!(
            "session {:#x}: SASL authenticated as `{user}`{}",
            c.session_id,
            if is_super { " (super user)" } else { "" }
        );
    }

    /// A failed SASL login: kept with allowSaslFailedClients unless SASL is
    /// enforced; otherwise answered (SessionClosedRequireSaslAuth when SASL is
    /// enforced, AuthFailed if not) and closed, as the reference.
    fn on_sasl_failed(&mut self, cid: ConnId, xid: i32, e: SaslError) {
        let sasl_required = self.cfg.enforce_auth_schemes.iter().any(|s| s == "sasl");
        if self.cfg.sasl.allow_failed_clients && !sasl_required {
            if let Some(c) = self.conns.get(&cid) {
                tracing::warn!(
                    "client {} failed to SASL authenticate: {e}; keeping the connection \
                     (allowSaslFailedClients)",
                    c.peer
                );
            }
            return self.push_ready_unbooked(cid, sasl_reply(xid, 0, None));
        }
        let err = match sasl_required {
            true => ErrorCode::SessionClosedRequireSaslAuth.code(),
            false => ErrorCode::AuthFailed.code(),
        };
        self.push_ready_unbooked(cid, sasl_reply(xid, err, None));
        self.close_with(cid, &format!("SASL authentication failed: {e}"));
    }

    fn on_set_watches(&mut self, cid: ConnId, xid: i32, sw: SetWatches) {
        let answered = Answered {
            op: match sw.persistent.is_empty() && sw.persistent_recursive.is_empty() {
                true => "SETW",
                false => "STW2",
            },
            xid,
            at: self.now,
        };
        // Each event is its own packet, ahead of the reply, as the reference
        // sends (and counts) them.
        let mut events: Vec<Vec<u8>> = Vec::new();
        let rel = sw.relative_zxid;
        let zxid = self.last_zxid;
        let tree = self.tree.clone();
        let ev = |events: &mut Vec<Vec<u8>>, t: EventType, p: &str| {
            let mut out = Vec::new();
            write_event(
                &mut out,
                -1,
                &WatcherEvent {
                    event_type: t,
                    state: KeeperState::SyncConnected,
                    path: p.to_string(),
                },
            );
            events.push(out);
        };
        let mut refused = false;
        for p in &sw.data {
            match tree.get(p) {
                None => ev(&mut events, EventType::NodeDeleted, p),
                Some(n) if n.stat().mzxid > rel => ev(&mut events, EventType::NodeDataChanged, p),
                Some(_) => refused |= self.watches.add_data(cid, p).is_err(),
            }
        }
        for p in &sw.exist {
            match tree.get(p) {
                Some(_) => ev(&mut events, EventType::NodeCreated, p),
                None => refused |= self.watches.add_data(cid, p).is_err(),
            }
        }
        for p in &sw.child {
            match tree.get(p) {
                None => ev(&mut events, EventType::NodeDeleted, p),
                Some(n) if n.stat().pzxid > rel => {
                    ev(&mut events, EventType::NodeChildrenChanged, p)
                }
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
        for e in events {
            self.push_ready(cid, e, None);
        }
        let mut out = Vec::new();
        write_reply(&mut out, xid, zxid, Ok(&Response::Empty));
        self.push_ready(cid, out, Some(answered));
    }

    /// Serves a read-like request that `ReadRequest` does not cover from the current
    /// tree version.
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
            // As the reference's providers name users: a digest id is `user:hash`;
            // a scheme with no provider registered names no one (`super` has none
            // there; `sasl` only with SASLAuthenticationProvider configured).
            Request::WhoAmI => Ok(Response::WhoAmI(
                c.ids
                    .iter()
                    .map(|i| {
                        let user = match i.scheme.as_str() {
                            "digest" => i.id.split(':').next().unwrap_or(""),
                            "sasl" if !self.cfg.sasl.provider_enabled => "",
                            "super" => "",
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
            // getData, exists and getChildren(2) take `answer_read_view`; the other
            // reads set no watch.
            req => tree::read(&self.tree, &caller, req),
        }
    }

    fn on_message(&mut self, m: ToShard) {
        match m {
            ToShard::Batch(b) => self.on_batch(&b),
            ToShard::Report(tx) => {
                let _ = tx.send(self.report());
            }
            ToShard::ResetStats => self.counters().reset(),
            ToShard::ResetConnectionStats => {
                for c in self.conns.values_mut() {
                    (c.received, c.sent, c.stats) = (0, 0, ConnStats::RESET);
                }
            }
            ToShard::StopAccepting => self.accepting = None,
            ToShard::Shutdown => self.close_for_stop(),
            ToShard::CloseAll(why) => {
                let cids: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.phase != Phase::AwaitConnect || c.session_id != 0)
                    .map(|(cid, _)| *cid)
                    .collect();
                if !cids.is_empty() {
                    tracing::info!("closing {} client connection(s): {why}", cids.len());
                }
                for cid in cids {
                    if let Some(c) = self.conns.get_mut(&cid) {
                        c.closing = true;
                    }
                    self.wake(cid);
                }
            }
        }
    }

    /// Every connection closes once flushed; `run` then waits for them and ends.
    fn close_for_stop(&mut self) {
        self.accepting = None;
        self.serving = None;
        let cids: Vec<ConnId> = self.conns.keys().copied().collect();
        for cid in cids {
            if let Some(c) = self.conns.get_mut(&cid) {
                c.closing = true;
            }
            self.wake(cid);
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
                        if conn.overflowed {
                            continue;
                        }
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
                        let before = conn.out.len();
                        write_event(
                            &mut conn.out,
                            item.zxid,
                            &WatcherEvent {
                                event_type: *et,
                                state: KeeperState::SyncConnected,
                                path: path.clone(),
                            },
                        );
                        // The reference counts a notification as a packet sent and
                        // among reply sizes (setWatches' events too, see
                        // `on_set_watches`).
                        conn.sent += 1;
                        let at = self.stats.since_start_us(self.now);
                        self.stats.shards[self.id].packet_sent(conn.out.len() - before, at);
                        touched.insert(c);
                        self.enforce_queued_bytes_max(c);
                    }
                }
            }
        }
        // 2. Replies, each followed by the reads queued behind it.
        for item in &b.items {
            let Some(reply) = &item.reply else { continue };
            if reply.shard != self.id {
                // A session that reconnected on another shard has moved: its older
                // connection here ends (the reference keeps one per session).
                if let ReplyKind::Connect { session_id, .. } = reply.kind {
                    if let Some(cid) = self.sessions.remove(&session_id) {
                        self.close_with(cid, "the session moved to another connection");
                        if let Some(c) = self.conns.get_mut(&cid) {
                            c.session_id = 0;
                        }
                        touched.insert(cid);
                    }
                }
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
                ReplyKind::Unanswered { xid } => self.on_unanswered(reply.conn, *xid),
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

    /// The member could not take the write (e.g. its leader is gone). A server
    /// never sends ConnectionLoss: clients take it from a closed connection, and
    /// some reject it in a reply (the Rust crate ends the call with
    /// UnexpectedErrorCode(-4)). As the reference does, the connection closes
    /// unanswered; the client reconnects and retries. The write stays at its place
    /// in the queue, so `drain` sends nothing queued after it. (No order check: a
    /// learner gives up on a write it cannot forward at once, ahead of an earlier
    /// one still at the leader.)
    fn on_unanswered(&mut self, cid: ConnId, xid: i32) {
        if self.conns.get(&cid).is_some_and(|c| !c.overflowed) {
            self.close_with(
                cid,
                &format!("the member cannot take writes now (xid {xid}); the client reconnects"),
            );
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
        if c.overflowed {
            // Closing unflushed: its queue is let go with the connection.
            return;
        }
        // The reply answers the first write at the sequencer (they come back in the
        // order they were sent). Replies and reads may still wait ahead of it for
        // room in the output (`drain` stopped there): then it waits in its place.
        let first_write = c.queue.iter().enumerate().find_map(|(i, p)| match p {
            Pending::Write { xid: x, at, op } => Some((i, *x, Answered { op, xid, at: *at })),
            _ => None,
        });
        let Some((at, _, answered)) = first_write.filter(|w| w.1 == xid) else {
            // A closing connection may still hold a write left unanswered (above):
            // the replies to the writes after it have nowhere to go.
            if !c.closing {
                self.close_with(cid, &format!("internal: reply for xid {xid} out of order"));
            }
            return;
        };
        if let Err(ErrorCode::SessionMoved) = result {
            // As the reference: the session lives on another connection now.
            c.closing = true;
        }
        if at > 0 {
            let mut bytes = Vec::new();
            write_reply(&mut bytes, xid, zxid, result.as_ref().map_err(|e| *e));
            c.queue[at] = Pending::Ready {
                bytes,
                answered: Some(answered),
                timed: Some(true),
            };
            return;
        }
        c.complete_front(&self.stats.shards[self.id].outstanding);
        let before = c.out.len();
        write_reply(&mut c.out, xid, zxid, result.as_ref().map_err(|e| *e));
        let frame_bytes = c.out.len() - before;
        self.count_reply(cid, Some(answered), Some(true), frame_bytes);
        self.drain(cid);
        self.enforce_queued_bytes_max(cid);
    }

    /// Releases what waited behind a completed write, up to the next pending write,
    /// or until the connection's output is full: the rest goes out when the socket
    /// has taken enough (the connection task calls this again). A read answered
    /// later is served from the tree version of that moment; every event up to that
    /// version is already in the output, ahead of it.
    fn drain(&mut self, cid: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&cid) else {
                return;
            };
            if !c.drain_waiting()
                || c.unsent_bytes() >= self.cfg.max_queued_reply_bytes_per_connection
            {
                return;
            }
            let outstanding = &self.stats.shards[self.id].outstanding;
            if let Some(Pending::Unsent(w, at)) = c.queue.front() {
                // Everything before it is answered: send it, and wait for it.
                let (xid, at, op) = (w.xid, *at, stats::operation_name(w.req.opcode()));
                let front = c.queue.front_mut().expect("the front was just seen");
                let Pending::Unsent(w, _) =
                    std::mem::replace(front, Pending::Write { xid, at, op })
                else {
                    unreachable!("the front was just matched as Unsent");
                };
                self.send_write(w);
                return;
            }
            match c.complete_front(outstanding) {
                Some(Pending::Ready {
                    bytes,
                    answered,
                    timed,
                }) => {
                    c.out.extend_from_slice(&bytes);
                    self.count_reply(cid, answered, timed, bytes.len());
                }
                Some(Pending::Read { xid, req, at }) => self.answer_read(cid, xid, req, at),
                _ => unreachable!("drain_waiting saw a Ready or Read at the front"),
            }
        }
    }

    fn on_connect_reply(
        &mut self,
        cid: ConnId,
        response: Result<&proto::ConnectResponse, &&'static str>,
        session_id: i64,
    ) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let resp = match response {
            Ok(resp) => resp,
            Err(why) => {
                c.closing = true;
                tracing::warn!("refused session request from {}: {why}", c.peer);
                return;
            }
        };
        let bytes = frame(|v| resp.encode(v));
        c.out.extend_from_slice(&bytes);
        c.sent += 1;
        self.stats.shards[self.id].packets_sent.add_owned(1);
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
        self.mark_active(session_id);
    }

    /// The session had a request (or a handshake): the sequencer hears of it with
    /// the next touch batch.
    fn mark_active(&mut self, session_id: i64) {
        if session_id != self.last_active {
            self.active.insert(session_id);
            self.last_active = session_id;
        }
    }

    /// The sessions active since the last batch, for the next one.
    fn take_active(&mut self) -> Vec<i64> {
        self.last_active = 0;
        self.active.drain().collect()
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
                established_ms: c.established_ms,
                last_operation: c.stats.last_op,
                last_cxid: c.stats.last_cxid,
                last_response_ms: c.stats.last_response_ms,
                last_latency_ms: c.stats.last_latency_ms,
                min_latency_ms: match c.stats.count {
                    0 => 0,
                    _ => c.stats.min_latency_ms,
                },
                avg_latency_ms: c
                    .stats
                    .total_latency_ms
                    .checked_div(c.stats.count)
                    .unwrap_or(0),
                max_latency_ms: c.stats.max_latency_ms,
            })
            .collect();
        connections.sort_by(|a, b| a.peer.cmp(&b.peer));
        let sid = |cid: ConnId| self.conns.get(&cid).map(|c| c.session_id).unwrap_or(0);
        ShardReport {
            shard: self.id,
            inbox_depth: self.rx.len(),
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

/// What a connection's log line says when its request could not go to the
/// sequencer.
fn mesh_send_failed<T>(e: &chan::SendError<T>) -> String {
    match e {
        chan::SendError::Full(_) => format!(
            "the sequencer's inbox is full ({} messages, MESH_QUEUE_COUNT_MAX): \
             the request was not taken",
            super::MESH_QUEUE_COUNT_MAX
        ),
        chan::SendError::Disconnected(_) => {
            "the sequencer has stopped: the request was not taken".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real shard on its own executor, for tests that play its sequencer: the
    /// sequencer's inbox (bound `seq_bound`, holding `preload` already), the
    /// shard's inbox (an empty first batch taken), the client port.
    struct TestShard {
        port: u16,
        seq_rx: chan::Receiver<ToSequencer>,
        shard_tx: chan::Sender<ToShard>,
        ex: glommio::ExecutorJoinHandle<Result<(), String>>,
    }

    impl TestShard {
        fn start(seq_bound: usize, preload: Option<ToSequencer>) -> TestShard {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let cfg = Config::parse(&format!(
                "clientPort={port}\nclientPortAddress=127.0.0.1\ndataDir=/nonexistent\n"
            ))
            .unwrap();
            let (seq_tx, seq_rx) = chan::bounded(seq_bound);
            if let Some(m) = preload {
                assert!(seq_tx.send(m).is_ok());
            }
            let (shard_tx, shard_rx) = chan::bounded(16);
            let mesh = Mesh {
                to_sequencer: seq_tx,
                to_shards: vec![shard_tx.clone()],
            };
            shard_tx_batch(&shard_tx, Vec::new());
            let stats = Arc::new(ServerStats::new(1));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name("shard-test")
                .io_memory(256 << 10)
                .spawn(move || run(0, Arc::new(cfg), mesh, shard_rx, stats, ready_tx, None))
                .unwrap();
            let (_, news) = ready_rx.recv_timeout(Duration::from_secs(20)).unwrap();
            assert!(matches!(news, super::super::CoreNews::Up));
            TestShard {
                port,
                seq_rx,
                shard_tx,
                ex,
            }
        }

        /// The next message the shard sent its sequencer (within 20 s).
        fn next_to_sequencer(&self) -> ToSequencer {
            for _ in 0..20_000 {
                if let Ok(m) = self.seq_rx.try_recv() {
                    return m;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("the shard sent its sequencer nothing within 20 s");
        }

        fn stop(self) {
            assert!(self.shard_tx.send(ToShard::StopAccepting).is_ok());
            assert!(self.shard_tx.send(ToShard::Shutdown).is_ok());
            self.ex.join().unwrap().unwrap();
        }
    }

    /// Sends the shard one batch of `items` (tree empty, zxid 0).
    fn shard_tx_batch(tx: &chan::Sender<ToShard>, items: Vec<Item>) {
        let batch = Arc::new(Batch {
            tree: Arc::new(Tree::new()),
            last_zxid: 0,
            items,
        });
        assert!(tx.send(ToShard::Batch(batch)).is_ok());
    }

    fn client(port: u16) -> std::net::TcpStream {
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c
    }

    /// A real shard whose sequencer inbox is full (bound 1, one message in it):
    /// a client's handshake cannot be handed on, so its connection is closed
    /// (the client reads the end) and the shard goes on serving; the inbox
    /// holds no more than its bound.
    #[test]
    fn a_request_the_full_sequencer_inbox_cannot_take_closes_its_connection() {
        use std::io::{Read, Write};
        let shard = TestShard::start(1, Some(ToSequencer::Tick));
        let mut client = client(shard.port);
        client
            .write_all(&proto::ConnectRequest::new_session(30_000).frame())
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            client.read(&mut buf).unwrap(),
            0,
            "the connection was answered instead of closed"
        );
        assert_eq!(shard.seq_rx.len(), 1, "the inbox passed its bound");
        assert!(matches!(shard.seq_rx.try_recv(), Ok(ToSequencer::Tick)));
        shard.stop();
    }

    /// A member that cannot take a write (its leader is gone) gives it back
    /// `Unanswered`; the shard closes the connection with nothing more sent (the
    /// client reconnects and retries), as the reference does. Before, the client
    /// got a reply with error -4 (ConnectionLoss, which no server sends), and the
    /// Rust client crate turned it into UnexpectedErrorCode(-4).
    #[test]
    fn a_write_the_member_cannot_take_closes_its_connection_unanswered() {
        use std::io::{Read, Write};
        let shard = TestShard::start(16, None);
        let mut client = client(shard.port);
        client
            .write_all(&proto::ConnectRequest::new_session(30_000).frame())
            .unwrap();
        let ToSequencer::Connect { conn, .. } = shard.next_to_sequencer() else {
            panic!("expected the handshake");
        };
        let session_id = 0x1234;
        let response = proto::ConnectResponse {
            protocol_version: 0,
            timeout_ms: 30_000,
            session_id,
            passwd: vec![0; 16],
            read_only: Some(false),
        };
        let reply = |kind| Item {
            zxid: 0,
            events: Vec::new(),
            reply: Some(Reply {
                shard: 0,
                conn,
                kind,
            }),
            closed_session: None,
        };
        shard_tx_batch(
            &shard.shard_tx,
            vec![reply(ReplyKind::Connect {
                response: Ok(response),
                session_id,
            })],
        );
        let mut len = [0u8; 4];
        client.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        client.read_exact(&mut body).unwrap();

        let set = proto::Request::SetData {
            path: "/a".into(),
            data: Some(b"x".to_vec()),
            version: -1,
        };
        // Two writes pipelined: the first cannot be taken, the second was (and is
        // never answered: nothing after the first goes out).
        client.write_all(&set.frame(7)).unwrap();
        client.write_all(&set.frame(8)).unwrap();
        for xid in [7, 8] {
            let ToSequencer::Write(w) = shard.next_to_sequencer() else {
                panic!("expected write {xid}");
            };
            assert_eq!(w.xid, xid);
        }
        // The first alone: it must close the connection by itself (the reply to 8
        // cannot have closed it as out of order).
        shard_tx_batch(
            &shard.shard_tx,
            vec![reply(ReplyKind::Unanswered { xid: 7 })],
        );
        let mut buf = [0u8; 64];
        assert_eq!(
            client.read(&mut buf).unwrap(),
            0,
            "a write was answered (7, or 8 past it) instead of the connection closed"
        );
        // The second's reply comes after the close and has nowhere to go.
        let stat = crate::proto::Stat::default();
        shard_tx_batch(
            &shard.shard_tx,
            vec![reply(ReplyKind::Op {
                xid: 8,
                result: Ok(proto::Response::Stat(stat)),
            })],
        );
        shard.stop();
    }

    #[test]
    fn warn_limiter_logs_once_per_interval_and_counts_the_rest() {
        let mut w = WarnLimiter::new();
        let t0 = Instant::now();
        assert_eq!(w.note(t0), Some(0));
        assert_eq!(w.note(t0 + Duration::from_millis(10)), None);
        assert_eq!(w.note(t0 + Duration::from_millis(900)), None);
        assert_eq!(w.note(t0 + WARN_INTERVAL), Some(2));
        assert_eq!(w.note(t0 + WARN_INTERVAL), None);
    }
}
