//! The only place that does IO: glommio executors, the client listeners, the
//! sequencer core and the channels between cores.
//!
//! ```text
//!  shard core 0..N (glommio executor each, SO_REUSEPORT listener each)
//!    conn task: frames → decode → read? serve from the published Tree
//!                                  write? ToSequencer::Write ───────────┐
//!    batch task: ToShard::Batch → events → replies → deferred reads ◄──┼─┐
//!  sequencer core (one glommio task: own executor, or beside shard 0)  │ │
//!    prepare → apply → (durable) → publish Arc<Tree> + items ◄─────────┘ │
//!    owns: the authoritative Tree, the SessionTable ──────────────────────┘
//! ```
//!
//! The sequencer is one task either way (`corral.sequencerCore`). On an executor of
//! its own, every write crosses threads twice (shard → sequencer → shard), and on a
//! small machine each crossing wakes a sleeping thread. Beside shard 0 (the default
//! on up to 2 CPUs, standalone only) it shares that shard's executor: the shard's
//! writes reach it and come back as local wake-ups, and the messages still go
//! through the same queues, so nothing else changes. Other shards still cross
//! threads. An ensemble member's quorum core keeps its own executor
//! (`Config::sequencer_placement`): its peer links end with it on a stop.
//!
//! Every batch goes to every shard in zxid order over that shard's FIFO channel, so
//! each shard sees the same history; a shard switches to the batch's tree version,
//! fires watches for all its txns, then releases the replies. State belongs to one
//! core: shards own connections and watches, the sequencer owns tree and sessions.
//! Each core beats; one plain thread (`nudge`) signals a core whose beat is late,
//! so an executor asleep past its due timers runs again within a few hundred ms.

mod chan;
pub(crate) mod durable;
mod gather;
mod inbox;
pub mod msg;
mod nudge;
mod order;
pub mod peer;
mod quorum;
mod read_only;
mod sequencer;
mod shard;
pub mod shutdown;
pub mod stats;
mod sync_place;
pub mod tls;

use crate::config::{Config, SequencerCore};
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("data directory {path}: {why}")]
    DataDir { path: String, why: String },
    #[error("client port {addr} is already in use ({keys})")]
    PortInUse {
        addr: std::net::SocketAddr,
        keys: &'static str,
    },
    #[error("cannot listen on {addr}: {source} ({keys})")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
        keys: &'static str,
    },
    /// The TLS port's key or trust store (the line names the key and the file).
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// The quorum TLS key or trust store (the line names the key and the file).
    #[error("{0}")]
    QuorumTls(String),
    #[error(
        "could not start glommio executor `{name}`: {cause}. Each executor pins \
         corral.ioMemoryBytes ({io_memory} bytes) of locked memory per io_uring ring, three \
         rings per executor; this process may lock {memlock}. Lower corral.ioMemoryBytes in \
         the config, raise `ulimit -l`, or run with CAP_IPC_LOCK"
    )]
    Executor {
        name: String,
        cause: String,
        io_memory: usize,
        memlock: String,
    },
    #[error("core `{name}` stopped: {cause}")]
    CoreStopped { name: String, cause: String },
    /// A core came up but could not start its work (recovery, a port, ...).
    #[error("{cause}")]
    CoreStart { name: String, cause: String },
    /// The thread that watches the cores (`nudge`) could not start.
    #[error("cannot start the thread that watches the cores: {0}")]
    Nudge(std::io::Error),
    /// SIGTERM/SIGINT cannot be caught (signal-hook could not register them).
    #[error("cannot handle SIGTERM/SIGINT: {0}")]
    Signals(std::io::Error),
    /// A clean stop was asked and some cores did not end cleanly within its bound.
    #[error("stop incomplete: {0}")]
    StopIncomplete(String),
}

/// What the main thread hears about: per core, that it is up, that it could not
/// start, or that its executor's thread ended; and from the signal thread, a stop.
pub enum CoreNews {
    Up,
    /// A start-up error of the core's own (recovery, a port, ...).
    StartFailed(String),
    /// The core's executor thread ended: `Ok` when its loop ended on a stop.
    Ended(Result<(), String>),
    /// Not a core: SIGTERM or SIGINT arrived (the signal's name).
    Stop(&'static str),
}

/// How long the main thread waits for the cores' starts before it names the ones
/// that have not started (a warning, repeated at this interval; it goes on
/// waiting). A shard starts once the sequencer has published the recovered tree,
/// so a long recovery shows here too.
pub const STARTUP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How a core (or the signal thread) reports to the main thread, under its name.
pub type ReadyTx = std::sync::mpsc::Sender<(String, CoreNews)>;

/// Messages (of any kind) one cross-core queue may hold: the sequencer's inbox
/// and each shard's. Sized above what the senders' limits allow (derived where
/// the channels are made, in `run`), so reaching it means a core that stopped
/// taking its inbox, or a bug: a shard then closes the connection whose request
/// did not fit; the sequencer stops the server rather than let a shard miss a
/// batch.
pub const MESH_QUEUE_COUNT_MAX: usize = 1 << 22;

/// The fatal error when a shard's inbox is full at a publish.
fn shard_stuck(shard: usize) -> String {
    format!(
        "shard {shard} holds {MESH_QUEUE_COUNT_MAX} untaken messages (MESH_QUEUE_COUNT_MAX): \
         it has stopped taking commits"
    )
}

/// The channels every core holds: one into the sequencer, one into each shard.
#[derive(Clone)]
pub struct Mesh {
    pub to_sequencer: chan::Sender<msg::ToSequencer>,
    pub to_shards: Vec<chan::Sender<msg::ToShard>>,
}

/// RLIMIT_MEMLOCK in bytes; `None` when unlimited or unreadable.
fn memlock_bytes() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

fn memlock_limit() -> String {
    match memlock_bytes() {
        Some(b) => format!("{} KiB (ulimit -l)", b / 1024),
        None => "unlimited (or unknown) memory".into(),
    }
}

/// Turns TCP keepalive on for a connected socket (clientTcpKeepAlive for client
/// connections, tcpKeepAlive for election links; the kernel's keepalive timing,
/// as the reference's `Socket.setKeepAlive`). A failure is logged and the
/// connection kept.
pub(crate) fn set_keep_alive(socket: &impl std::os::fd::AsRawFd, peer: &dyn std::fmt::Display) {
    // SAFETY: the descriptor belongs to `socket`, which outlives this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    if let Err(e) = socket2::SockRef::from(&fd).set_keepalive(true) {
        tracing::warn!("cannot turn TCP keepalive on for the connection with {peer}: {e}");
    }
}

/// glommio pins `io_memory` once per ring, three rings per executor. Without
/// CAP_IPC_LOCK that must fit under RLIMIT_MEMLOCK, or glommio falls back to unpinned
/// buffers (a warning per ring) or fails; say so once, naming the key.
fn check_memlock(cfg: &Config) {
    let executors = cfg.executor_threads();
    let need = 3 * cfg.io_memory_bytes as u64 * executors as u64;
    // SAFETY: geteuid only reads our own process state.
    let root = unsafe { libc::geteuid() } == 0;
    if let Some(limit) = memlock_bytes().filter(|&l| !root && need > l) {
        tracing::warn!(
            "{executors} executors x 3 rings x corral.ioMemoryBytes ({}) = {need} bytes of locked \
             memory exceeds `ulimit -l` ({limit} bytes): io buffers will not be pinned. Lower \
             corral.ioMemoryBytes or run with CAP_IPC_LOCK",
            cfg.io_memory_bytes,
        );
    }
}

fn check_data_dir(cfg: &Config) -> Result<(), ServerError> {
    for dir in [cfg.data_dir.as_path(), cfg.log_dir()] {
        let bad = |why: String| ServerError::DataDir {
            path: dir.display().to_string(),
            why,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(bad(
                "exists but is not a directory (dataDir / dataLogDir)".into()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create it: {e}")))?;
        let probe = dir.join(".corral-write-probe");
        std::fs::write(&probe, b"probe")
            .map_err(|e| bad(format!("is not writable: {e} (dataDir / dataLogDir)")))?;
        let _ = std::fs::remove_file(&probe);
    }
    Ok(())
}

/// glommio binds with SO_REUSEPORT, which would silently share a port with another
/// corral, so "port in use" is decided here: a live listener of any kind answers a
/// connect; a socket bound without SO_REUSEPORT (another program) fails a bind made
/// with the same flags glommio uses. TIME_WAIT leftovers of our own earlier run pass,
/// so a restart right after a crash works. So does a listener of a predecessor
/// killed a moment ago: the kernel closes sockets an io_uring still holds only when
/// it tears that ring down, after the process is gone (≈ 10 ms here, more on a
/// loaded box), so a port found in use is probed again for PORT_FREE_WAIT.
fn probe_port(addr: std::net::SocketAddr, keys: &'static str) -> Result<(), ServerError> {
    let deadline = std::time::Instant::now() + PORT_FREE_WAIT;
    loop {
        match probe_port_once(addr, keys) {
            Err(ServerError::PortInUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(PORT_PROBE_EVERY)
            }
            r => return r,
        }
    }
}

/// How long a port found in use may take to be released before start-up fails.
const PORT_FREE_WAIT: Duration = Duration::from_secs(2);
/// Pause between two probes of a port found in use.
const PORT_PROBE_EVERY: Duration = Duration::from_millis(20);

fn probe_port_once(addr: std::net::SocketAddr, keys: &'static str) -> Result<(), ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let target = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    if addr.port() != 0
        && std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
    {
        return Err(ServerError::PortInUse { addr, keys });
    }
    let bind = || -> std::io::Result<()> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&addr.into())
    };
    match bind() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(ServerError::PortInUse { addr, keys })
        }
        Err(source) => Err(ServerError::Listen { addr, source, keys }),
    }
}

fn executor(cfg: &Config, name: &str, cpu: Option<usize>) -> LocalExecutorBuilder {
    let placement = match (cfg.cpu_pinning, cpu) {
        (true, Some(c)) => Placement::Fixed(c),
        _ => Placement::Unbound,
    };
    let mut b = LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(cfg.io_memory_bytes)
        .preempt_timer(Duration::from_millis(5));
    if cfg.spin_before_park_us > 0 {
        b = b.spin_before_park(Duration::from_micros(cfg.spin_before_park_us));
    }
    b
}

type CoreHandle = (String, std::thread::JoinHandle<Result<(), String>>);

/// The sequencer's name as a core (its thread's name when it has its own).
pub(super) const SEQUENCER: &str = "corral-sequencer";

/// Starts one core on its own glommio executor thread; before the core's own work,
/// the core starts beating (see `nudge`: a core asleep past its work is woken).
///
/// The thread is ours, not glommio's `spawn`: the executor is made on it, and
/// the thread registers with the watchdog (`CoreBeat::register`) before the
/// executor's loop first runs. glommio 0.9 can park a new executor before it has
/// run any task, with no timer armed (its first `run_task_queues` gives up when
/// the 5 ms preempt timer armed just before has already fired, as on a loaded
/// box, and `park` then sleeps with no timeout): nothing would end that sleep, as
/// no task has registered a waker or a timer yet. Registered first, such a core
/// is nudged after `nudge::STUCK_AFTER`, and its loop then runs the first task.
fn spawn_core<F>(
    cfg: &Config,
    name: String,
    cpu: Option<usize>,
    beat: nudge::CoreBeat,
    core: impl FnOnce() -> F + Send + 'static,
) -> Result<CoreHandle, ServerError>
where
    F: std::future::Future<Output = Result<(), String>> + 'static,
{
    let builder = executor(cfg, &name, cpu);
    let h = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let ex = builder.make().map_err(|e| e.to_string())?;
            beat.register();
            ex.run(async move {
                // The loop ran a task: this one. Its first poll may work long
                // (a recovery) and is not asleep: watched again once the beat
                // task runs.
                beat.unregister();
                glommio::spawn_local(beat.serve()).detach();
                core().await
            })
        })
        .map_err(|e| ServerError::Executor {
            name: name.clone(),
            cause: e.to_string(),
            io_memory: cfg.io_memory_bytes,
            memlock: memlock_limit(),
        })?;
    Ok((name, h))
}

/// A core thread's end as text: its own result, or what its panic said.
fn core_end(joined: std::thread::Result<Result<(), String>>) -> Result<(), String> {
    joined.unwrap_or_else(|panic| {
        let what = (panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(format!("panicked: {what}"))
    })
}

/// Runs a server until a core stops (an error) or SIGTERM/SIGINT asks it to stop
/// (`Ok` when every core ended cleanly within `shutdown::STOP_WAIT`).
pub fn run(cfg: Config) -> Result<(), ServerError> {
    check_data_dir(&cfg)?;
    check_memlock(&cfg);
    let addr = cfg.client_addr();
    if cfg.client_port_enabled {
        probe_port(addr, "clientPort / clientPortAddress")?;
    }
    let tls = match &cfg.tls {
        Some(t) => {
            if let Some(a) = t.addr {
                probe_port(a, "secureClientPort / secureClientPortAddress")?;
            }
            Some(Arc::new(tls::ServerTls::load(t)?))
        }
        None => None,
    };
    // Read and checked before anything starts, as the client port's stores.
    let peer_tls = match &cfg.quorum_tls {
        Some(t) => Some(peer::tls::PeerTls::load(t).map_err(ServerError::QuorumTls)?),
        None => None,
    };

    let cfg = Arc::new(cfg);
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // The channels between cores hold at most MESH_QUEUE_COUNT_MAX messages each;
    // what clients can put in them is bounded below that by the connection limits
    // (shard.rs `takes_requests`). With C open
    // connections (≤ maxCnxns when set), S shard cores, O = corral.maxOutstandingPerConnection,
    // G = globalOutstandingLimit and F = jute.maxbuffer bytes per request frame:
    //
    // Into the sequencer:
    // - Connect: one per connection in its handshake (reading pauses until the
    //   answer): ≤ C messages of ≤ F bytes.
    // - Write: each is one request in process on its connection. A connection with
    //   requests in process takes more only while the server-wide count is ≤ G (each
    //   shard reads the sum, so all S may pass at G at once); one without may take
    //   one: ≤ min(C × O, G + S + C) messages of ≤ F bytes. Defaults (O = G = 1000,
    //   F = 1 MiB, S = 2): ≤ (1002 + C) MiB, as in the reference (G requests in
    //   process of up to F each).
    // - Touch: ≤ 2 per shard per tickTime, each ≤ 8 bytes × sessions active on it.
    // - Tick (own timer, 2 per tickTime, taken each loop), Report (one per
    //   four-letter connection awaiting its answer: ≤ C, plus one per HTTP request
    //   in process: ≤ 2 × admin::http::CONNECTIONS_COUNT_MAX), ResetStats (one per
    //   `srst`).
    // Together ≤ G + S + 3C + 2 × tickTime's touches and ticks + HTTP reports, which
    // stays under MESH_QUEUE_COUNT_MAX while C ≤ 2^20 (Linux's default ceiling on
    // open files, nr_open) and G ≤ 2^19 (3 × 2^20 + 2^19 leaves 2^19 for the rest).
    let (seq_tx, seq_rx) = chan::bounded(MESH_QUEUE_COUNT_MAX);
    let mut shard_rx = Vec::new();
    let mut to_shards = Vec::new();
    for _ in 0..cfg.shard_cores {
        // Into each shard:
        // - Batch: one per publish (a finished sync, or answers that waited for
        //   nothing). Its items answer requests counted above (≤ the Write + Connect
        //   bounds together, as each leaves its queue only when answered) plus
        //   expiries and container cleanups (the sequencer's own ticks). Its tree is
        //   an Arc shared by every shard (O(1) per batch). A shard takes its inbox on
        //   every wake-up (the batch task, and `catch_up` before it serves a
        //   request), so its backlog is what arrives while it runs one task.
        // - Report / ResetStats: one per four-letter connection awaiting its answer
        //   (≤ C) or HTTP request in process (≤ 2 × admin::http::CONNECTIONS_COUNT_MAX)
        //   / per `crst` or `srst`.
        let (tx, rx) = chan::bounded(MESH_QUEUE_COUNT_MAX);
        to_shards.push(tx);
        shard_rx.push(rx);
    }
    let mesh = Mesh {
        to_sequencer: seq_tx,
        to_shards,
    };
    let stats = Arc::new(
        stats::ServerStats::new(cfg.shard_cores)
            .with_fsync_warning_threshold_ms(cfg.fsync_warning_threshold_ms),
    );
    // Each core reports start-up or its failure on this channel, the signal thread
    // a stop request.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    shutdown::watch_signals(ready_tx.clone()).map_err(ServerError::Signals)?;

    // The cores by name (each reports its start and its end), and the executor
    // threads among them (each beats: `nudge`). Beside shard 0, the sequencer is a
    // task of that shard's executor and reports for itself.
    let own = cfg.sequencer_placement() == SequencerCore::Own;
    let names: Vec<String> = std::iter::once(SEQUENCER.to_string())
        .chain((0..cfg.shard_cores).map(|i| format!("corral-shard-{i}")))
        .collect();
    let threads = if own { &names[..] } else { &names[1..] };
    let (beats, beat_view) = nudge::start(threads).map_err(ServerError::Nudge)?;
    let mut beats = beats.into_iter();
    // The HTTP endpoints' sockets, bound before any core opens the client port.
    let endpoints = crate::admin::http::bind_endpoints(&cfg);
    let mut handles = Vec::new();
    let (c, m, st, r) = (cfg.clone(), mesh.clone(), stats.clone(), ready_tx.clone());
    let distributed = cfg.is_distributed();
    let sequencer = move || async move {
        if distributed {
            quorum::run(c, m, seq_rx, st, r, peer_tls).await
        } else {
            sequencer::run(c, m, seq_rx, st, r).await
        }
    };
    let mut beside_shard_0 = None;
    if own {
        handles.push(spawn_core(
            &cfg,
            SEQUENCER.into(),
            Some(0),
            beats.next().expect("a beat per executor"),
            sequencer,
        )?);
    } else {
        let ended = ready_tx.clone();
        beside_shard_0 = Some(move || {
            glommio::spawn_local(async move {
                let end = sequencer().await;
                let _ = ended.send((SEQUENCER.into(), CoreNews::Ended(end)));
            })
            .detach();
        });
    }
    for (i, rx) in shard_rx.into_iter().enumerate() {
        let (c, m, st, r) = (cfg.clone(), mesh.clone(), stats.clone(), ready_tx.clone());
        let t = tls.clone();
        let also = beside_shard_0.take();
        handles.push(spawn_core(
            &cfg,
            format!("corral-shard-{i}"),
            Some(i % ncpu),
            beats.next().expect("a beat per executor"),
            move || async move {
                if let Some(start) = also {
                    start();
                }
                shard::run(i, c, m, rx, st, r, t).await
            },
        )?);
    }
    // A watcher thread per core turns its end (a failed start included) into a message.
    for (name, h) in handles {
        let tx = ready_tx.clone();
        std::thread::spawn(move || {
            let end = core_end(h.join());
            let _ = tx.send((name, CoreNews::Ended(end)));
        });
    }
    drop(ready_tx);

    // Wait for every core to come up; an executor that fails to start ends its thread
    // with an error, which we turn into one clear line. A core that takes long is
    // named every STARTUP_REPORT_EVERY, with what its executor is doing.
    let started = std::time::Instant::now();
    let mut up: Vec<String> = Vec::new();
    while up.len() < cfg.shard_cores + 1 {
        match ready_rx.recv_timeout(STARTUP_REPORT_EVERY) {
            Ok((name, CoreNews::Up)) => up.push(name),
            Ok((name, CoreNews::StartFailed(cause))) => {
                return Err(ServerError::CoreStart { name, cause })
            }
            Ok((name, CoreNews::Ended(end))) => {
                return Err(ServerError::Executor {
                    name,
                    cause: end.err().unwrap_or_else(|| "exited".into()),
                    io_memory: cfg.io_memory_bytes,
                    memlock: memlock_limit(),
                })
            }
            // Nothing was served yet: nothing to flush, the process just ends.
            Ok((_, CoreNews::Stop(signal))) => {
                tracing::info!("{signal} during start-up: exiting");
                return Ok(());
            }
            // Recovery can take that long: the shards wait for its tree.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                if !up.iter().any(|n| n == SEQUENCER) =>
            {
                tracing::info!(
                    "start-up: recovery still runs after {:?}; the shards start once it ends",
                    started.elapsed()
                );
            }
            // Only a shard is missing: it has the tree, or a lost wake-up kept it.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                for name in names.iter().filter(|n| !up.contains(n)) {
                    let how = beat_view
                        .describe(name)
                        .unwrap_or_else(|| "it runs beside shard 0".into());
                    tracing::warn!(
                        "start-up: {name} has not reported that it started after {:?}; {how}",
                        started.elapsed()
                    );
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // The HTTP endpoints served, on a thread of their own, once every core answers
    // reports (connections made before wait in the listen backlog).
    let admin = crate::admin::http::start(endpoints, cfg.clone(), stats.clone(), mesh.clone());
    let mut ports: Vec<String> = Vec::new();
    let unified = cfg.tls.as_ref().is_some_and(|t| t.unified_client_port);
    if cfg.client_port_enabled {
        ports.push(match unified {
            true => format!("{addr} (plaintext or TLS)"),
            false => addr.to_string(),
        });
    }
    if let Some(a) = cfg.tls.as_ref().and_then(|t| t.addr) {
        ports.push(format!("{a} (TLS)"));
    }
    tracing::info!(
        "corral serving on {} ({}, {} shard core(s), sequencer {}, data dir {})",
        ports.join(" and "),
        match cfg
            .quorum
            .as_ref()
            .and_then(|q| q.my_id)
            .filter(|_| distributed)
        {
            Some(id) => format!("ensemble member {id}"),
            None => "standalone".into(),
        },
        cfg.shard_cores,
        match cfg.sequencer_placement() {
            SequencerCore::Own => "on its own core",
            SequencerCore::Shard => "beside shard 0",
        },
        cfg.data_dir.display()
    );
    // Serve until a core stops or a signal asks to stop.
    let signal = match ready_rx.recv() {
        Ok((_, CoreNews::Stop(signal))) => signal,
        Ok((name, CoreNews::Ended(end))) => {
            return Err(ServerError::CoreStopped {
                name,
                cause: end.err().unwrap_or_else(|| "exited".into()),
            })
        }
        Ok((name, CoreNews::Up | CoreNews::StartFailed(_))) => {
            unreachable!("{name} reported its start twice")
        }
        Err(_) => {
            return Err(ServerError::CoreStopped {
                name: "all".into(),
                cause: "every core stopped".into(),
            })
        }
    };
    stop(signal, &mesh, admin, names, &ready_rx)
}

/// The clean stop: admin first, then the cores in order (`shutdown`), then the
/// bounded wait for every core's end.
fn stop(
    signal: &str,
    mesh: &Mesh,
    admin: Option<crate::admin::http::AdminThread>,
    cores: Vec<String>,
    news: &std::sync::mpsc::Receiver<(String, CoreNews)>,
) -> Result<(), ServerError> {
    let since = std::time::Instant::now();
    tracing::info!(
        "{signal}: stopping (no new connections, log made durable, connections closed; \
         at most {:?})",
        shutdown::STOP_WAIT
    );
    if admin.is_some_and(|a| !a.stop()) {
        tracing::warn!(
            "the admin thread did not end within {:?}",
            crate::admin::http::STOP_WAIT
        );
    }
    shutdown::tell_cores(mesh);
    shutdown::await_ends(news, cores, since).map_err(ServerError::StopIncomplete)?;
    tracing::info!("stopped cleanly");
    Ok(())
}
