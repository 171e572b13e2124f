//! The HTTP endpoints: the AdminServer (`admin.*`, `GET <commandURL>/<command>`)
//! and the Prometheus endpoint (`metricsProvider.*`, `GET /metrics`). Both run on
//! one plain thread of their own, `corral-admin`, never on a shard or sequencer
//! core, on a current-thread tokio runtime.
//!
//! ```text
//!  corral-admin thread (tokio current-thread runtime)
//!    accept ─► (over CONNECTIONS_COUNT_MAX: closed) ─► hyper http1 connection
//!      request ─► command / metrics ─► gather: ToSequencer::Report, ToShard::Report
//!                                       (the 4lw channels; each reply awaited at most
//!                                        REPORT_WAIT) ─► render (admin::commands,
//!                                        admin::metrics) ─► response
//! ```
//!
//! Why hyper: it is the most used and most scrutinised HTTP/1 server in Rust, and it
//! bounds what a client can make it hold by itself (the request head buffer, a
//! header read timeout that also closes idle keep-alive connections). tiny_http was
//! the lighter choice, but it reads request heads without a size bound and runs a
//! thread per connection. hyper needs an executor: a current-thread tokio runtime on
//! this one thread, so the admin surface costs the cores nothing.
//!
//! No lock on the request path: data comes from relaxed atomics (`ServerStats`) and
//! from the cores by message and reply, as four-letter words get it. The one thing a
//! request changes on a core, a stat reset, is a message too.

use super::commands::{self, Effect};
use super::View;
use crate::config::Config;
use crate::server::msg::{SequencerReport, ShardReport, ToSequencer, ToShard};
use crate::server::stats::ServerStats;
use crate::server::Mesh;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Open HTTP connections per endpoint; past it a new connection is closed at once.
/// Each open connection has at most one request in process (HTTP/1, no pipelining
/// of work), so this also bounds the report messages the admin thread puts into the
/// cores' inboxes: ≤ 2 × CONNECTIONS_COUNT_MAX per core.
pub const CONNECTIONS_COUNT_MAX: usize = 64;
/// hyper's read buffer per connection: a request head (line and headers) larger
/// than this is answered `431` and the connection closed. Bodies are never read.
pub const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// How long a request waits for one core's report before answering without it.
pub const REPORT_WAIT: Duration = Duration::from_secs(5);
/// Header read timeout of the Prometheus endpoint (its reference keys have no
/// idle timeout; the AdminServer's is admin.idleTimeout).
const METRICS_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which endpoint a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Admin,
    Metrics,
}

/// What every request handler reads; shared by the tasks of the one runtime.
struct Shared {
    cfg: Arc<Config>,
    stats: Arc<ServerStats>,
    mesh: Mesh,
}

/// How long [`AdminThread::stop`] waits for the thread to end.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The running `corral-admin` thread.
pub struct AdminThread {
    stop: futures::channel::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl AdminThread {
    /// Closes the listeners and every open HTTP connection (the runtime ends, its
    /// tasks with it); waits for the thread at most STOP_WAIT. `false`: it did not
    /// end in time (it ends with the process).
    pub fn stop(self) -> bool {
        let _ = self.stop.send(());
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.thread.is_finished()
    }
}

/// The enabled endpoints' listening sockets, bound before the client port opens
/// (as the reference starts its AdminServer before its connection factory), so a
/// server that answers clients also takes HTTP connections; they wait in the
/// listen backlog until [`start`] serves them.
pub struct Bound(Vec<(Endpoint, std::net::TcpListener)>);

/// Binds the enabled endpoints. A port that cannot be bound is logged and left
/// out, and the server runs on, as the reference's ensemble member does with its
/// AdminServer.
pub fn bind_endpoints(cfg: &Config) -> Bound {
    let mut listeners = Vec::new();
    if cfg.admin.enabled {
        let addr = cfg.admin.addr();
        match bind(addr) {
            Ok(l) => {
                tracing::info!(
                    "AdminServer on {addr}, command URL {}",
                    cfg.admin.command_url
                );
                listeners.push((Endpoint::Admin, l));
            }
            Err(e) => tracing::warn!(
                "cannot start the AdminServer on {addr} (admin.serverAddress / \
                 admin.serverPort): {e}; serving without it"
            ),
        }
    }
    if cfg.metrics.prometheus {
        let addr = cfg.metrics.addr();
        match bind(addr) {
            Ok(l) => {
                tracing::info!("Prometheus /metrics on {addr}");
                listeners.push((Endpoint::Metrics, l));
            }
            Err(e) => tracing::warn!(
                "cannot start /metrics on {addr} (metricsProvider.httpHost / \
                 metricsProvider.httpPort): {e}; serving without it"
            ),
        }
    }
    Bound(listeners)
}

/// Starts the `corral-admin` thread serving the endpoints [`bind_endpoints`]
/// bound. `None`: no endpoint.
pub fn start(
    bound: Bound,
    cfg: Arc<Config>,
    stats: Arc<ServerStats>,
    mesh: Mesh,
) -> Option<AdminThread> {
    let Bound(listeners) = bound;
    if listeners.is_empty() {
        return None;
    }
    let shared = Arc::new(Shared { cfg, stats, mesh });
    let (stop, stopped) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("corral-admin".into())
        .spawn(move || run(shared, listeners, stopped));
    match spawned {
        Ok(thread) => Some(AdminThread { stop, thread }),
        Err(e) => {
            tracing::error!("cannot start the admin thread: {e}; serving without HTTP endpoints");
            None
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn run(
    shared: Arc<Shared>,
    listeners: Vec<(Endpoint, std::net::TcpListener)>,
    stopped: futures::channel::oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the admin runtime: {e}; serving without HTTP endpoints");
            return;
        }
    };
    rt.block_on(async move {
        for (endpoint, l) in listeners {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => drop(tokio::spawn(accept_loop(endpoint, l, shared.clone()))),
                Err(e) => tracing::error!("admin listener: {e}"),
            }
        }
        // Serve until stopped (the sender's end counts too); the runtime's drop
        // then ends every task: listeners and connections close.
        let _ = stopped.await;
    });
}

async fn accept_loop(endpoint: Endpoint, l: tokio::net::TcpListener, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match l.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::warn!("{endpoint:?} endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Relaxed) >= CONNECTIONS_COUNT_MAX {
            drop(stream);
            continue;
        }
        open.fetch_add(1, Relaxed);
        let (open, shared) = (open.clone(), shared.clone());
        tokio::spawn(async move {
            serve_connection(endpoint, stream, shared).await;
            open.fetch_sub(1, Relaxed);
        });
    }
}

async fn serve_connection(endpoint: Endpoint, stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let idle = match endpoint {
        Endpoint::Admin => Duration::from_millis(shared.cfg.admin.idle_timeout_ms),
        Endpoint::Metrics => METRICS_IDLE_TIMEOUT,
    };
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(endpoint, req, &shared).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_buf_size(REQUEST_HEAD_BYTES_MAX)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!("{endpoint:?} endpoint connection: {e}");
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn not_found() -> Response<Full<Bytes>> {
    reply(StatusCode::NOT_FOUND, "text/plain", "Not Found\n".into())
}

async fn handle(endpoint: Endpoint, req: Request<Incoming>, sh: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "HTTP method not allowed: the endpoints answer GET\n".into(),
        );
    }
    let path = req.uri().path();
    match endpoint {
        Endpoint::Admin => admin_request(path, sh).await,
        Endpoint::Metrics if path == "/metrics" => {
            let (seq, shards) = gather(sh, true).await;
            let body = super::metrics::render(&view(sh, seq, shards));
            reply(StatusCode::OK, super::metrics::CONTENT_TYPE, body)
        }
        Endpoint::Metrics => not_found(),
    }
}

async fn admin_request(path: &str, sh: &Shared) -> Response<Full<Bytes>> {
    let base = sh.cfg.admin.command_url.as_str();
    let Some(rest) = path.strip_prefix(base) else {
        return not_found();
    };
    let name = match rest {
        "" | "/" => {
            return reply(
                StatusCode::OK,
                "text/html;charset=utf-8",
                commands::links_page(base),
            )
        }
        r => match r.strip_prefix('/') {
            Some(n) => n,
            None => return not_found(),
        },
    };
    let command = commands::find(name);
    let needs = command.is_some_and(|c| c.needs_reports);
    let (seq, shards) = gather(sh, needs).await;
    let v = view(sh, seq, shards);
    let body = commands::respond(name, &v);
    if let Some(c) = command.filter(|_| sh.stats.serving()) {
        apply(c.effect, sh);
    }
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    reply(StatusCode::OK, "application/json", text + "\n")
}

fn view(sh: &Shared, sequencer: Option<SequencerReport>, shards: Vec<ShardReport>) -> View<'_> {
    View {
        cfg: &sh.cfg,
        stats: &sh.stats,
        sequencer,
        shards,
    }
}

/// The sequencer's and every shard's report, each awaited at most `REPORT_WAIT`
/// (a core that does not answer is left out).
async fn gather(sh: &Shared, needed: bool) -> (Option<SequencerReport>, Vec<ShardReport>) {
    if !needed {
        return (None, Vec::new());
    }
    let (tx, rx) = flume::bounded(1);
    let mut seq = None;
    if sh.mesh.to_sequencer.send(ToSequencer::Report(tx)).is_ok() {
        seq = tokio::time::timeout(REPORT_WAIT, rx.recv_async())
            .await
            .ok()
            .and_then(Result::ok);
    }
    let mut shards = Vec::new();
    for to in &sh.mesh.to_shards {
        let (tx, rx) = flume::bounded(1);
        if to.send(ToShard::Report(tx)).is_ok() {
            if let Ok(Ok(r)) = tokio::time::timeout(REPORT_WAIT, rx.recv_async()).await {
                shards.push(r);
            }
        }
    }
    (seq, shards)
}

fn apply(effect: Effect, sh: &Shared) {
    match effect {
        Effect::None => {}
        Effect::ResetConnections => {
            for to in &sh.mesh.to_shards {
                let _ = to.send(ToShard::ResetConnectionStats);
            }
        }
        Effect::ResetServerStats => {
            let _ = sh.mesh.to_sequencer.send(ToSequencer::ResetStats);
        }
    }
}
