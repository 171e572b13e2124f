//! The IO shell: one mio event loop per worker thread, each owning a share of the
//! connections (connection `i` goes to worker `i % threads` and to server
//! `i % servers`). Each turn of the loop reads every readable socket until it
//! would block, hands the bytes to the connection's state machine, lets every
//! connection refill its pipeline, and writes each connection's batch of requests
//! with one `write` call (or, with `write_per_request`, each request with a `write`
//! of its own, as a client that sends every request as it is issued does). Workers share nothing but a progress counter and an abort
//! flag; each returns its own `Stats`, merged by the caller.
//!
//! The run ends on time, or early with a `RunError` naming the server and the
//! connection when a server closes a socket, stops answering (stall timeout) or
//! sends something malformed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use thiserror::Error;

use crate::conn::{Conn, ConnError, State, Workload};
use crate::stats::Stats;

/// Bytes read from a socket per `read` call.
pub const READ_CHUNK_BYTES: usize = 256 << 10;
/// How long after the window closes connections may take to finish closeSession.
pub const DRAIN_MAX: Duration = Duration::from_secs(3);
/// Longest a poll waits when nothing is due, so stalls and the clock are checked.
const POLL_TICK: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub servers: Vec<String>,
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// A connection with requests outstanding and no reply for this long ends the run.
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    pub workload: Arc<Workload>,
    pub seed: u64,
    /// Keep latency per interval of the window (`--series-ms`).
    pub series_interval: Option<Duration>,
    /// One `write` per request instead of one per connection per loop turn.
    pub write_per_request: bool,
}

/// The run's clock: warm-up from `start`, measurement over [`measure_start`, `measure_end`).
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub start: Instant,
    pub measure_start: Instant,
    pub measure_end: Instant,
}

/// Counters the main thread reads for the progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub abort: AtomicBool,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("server {addr} closed connection {conn} {at_s:.1} s into the run with {outstanding} requests unanswered{detail}")]
    ServerClosed {
        addr: String,
        conn: usize,
        at_s: f64,
        outstanding: usize,
        detail: String,
    },
    #[error("server {addr} stopped answering: connection {conn} waited {waited_s:.1} s with {outstanding} requests outstanding (stall timeout)")]
    Stalled {
        addr: String,
        conn: usize,
        waited_s: f64,
        outstanding: usize,
    },
    #[error("protocol error from {addr} on connection {conn}: {source}")]
    Protocol {
        addr: String,
        conn: usize,
        source: ConnError,
    },
    #[error("event loop: {0}")]
    Io(#[from] io::Error),
    #[error("worker thread panicked")]
    Panicked,
}

/// A started run: worker threads and their clock.
pub struct RunHandle {
    pub timeline: Timeline,
    pub progress: Arc<Progress>,
    series_interval: Option<Duration>,
    workers: Vec<JoinHandle<Result<(Stats, Instant), RunError>>>,
}

/// Starts the workers; the warm-up begins now.
pub fn start(cfg: RunConfig) -> RunHandle {
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let timeline = Timeline {
        start,
        measure_start,
        measure_end: measure_start + cfg.duration,
    };
    let progress = Arc::new(Progress::default());
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let series_interval = cfg.series_interval;
    let cfg = Arc::new(cfg);
    let workers = (0..threads)
        .map(|t| {
            let ids: Vec<usize> = (t..cfg.connections).step_by(threads).collect();
            let cfg = cfg.clone();
            let progress = progress.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || {
                    let r = run_worker(&cfg, &ids, timeline, &progress);
                    if r.is_err() {
                        progress.abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .expect("spawn worker thread")
        })
        .collect();
    RunHandle {
        timeline,
        progress,
        series_interval,
        workers,
    }
}

impl RunHandle {
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(|w| w.is_finished())
    }

    /// Waits for every worker; the first error wins, otherwise the merged stats and
    /// the measurement's real length in seconds (shorter than asked when a request
    /// limit ended the run early).
    pub fn join(self) -> Result<(Stats, f64), RunError> {
        let tl = self.timeline;
        let mut total =
            Stats::new(tl.measure_start, tl.measure_end).with_series(self.series_interval);
        let mut first_err = None;
        let mut ended = tl.start;
        for w in self.workers {
            match w.join() {
                Ok(Ok((s, end))) => {
                    total.merge(&s);
                    ended = ended.max(end);
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(RunError::Panicked);
                }
            }
        }
        let window_end = ended.min(tl.measure_end);
        let window_s = window_end
            .saturating_duration_since(tl.measure_start)
            .as_secs_f64();
        match first_err {
            Some(e) => Err(e),
            None => Ok((total, window_s)),
        }
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, RunError> {
    let err = |source| RunError::Connect {
        addr: addr.to_string(),
        source,
    };
    addr.to_socket_addrs()
        .map_err(err)?
        .next()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

struct Slot {
    conn: Conn,
    sock: TcpStream,
    addr: String,
    done: bool,
}

fn run_worker(
    cfg: &RunConfig,
    ids: &[usize],
    tl: Timeline,
    progress: &Progress,
) -> Result<(Stats, Instant), RunError> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut slots = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let addr = &cfg.servers[id % cfg.servers.len()];
        let sa = resolve(addr)?;
        let std_sock =
            std::net::TcpStream::connect_timeout(&sa, cfg.connect_timeout).map_err(|source| {
                RunError::Connect {
                    addr: addr.clone(),
                    source,
                }
            })?;
        std_sock.set_nodelay(true)?;
        std_sock.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(std_sock);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let seed = cfg
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(id as u64);
        slots.push(Slot {
            conn: Conn::new(id, cfg.workload.clone(), seed, Instant::now()),
            sock,
            addr: addr.clone(),
            done: false,
        });
    }
    let mut stats = Stats::new(tl.measure_start, tl.measure_end).with_series(cfg.series_interval);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut drain_deadline = tl.measure_end + DRAIN_MAX;
    let mut ended: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if ended.is_none() {
            let all_finished = slots.iter().all(|s| s.conn.finished());
            if all_finished || now >= tl.measure_end || progress.abort.load(Ordering::Relaxed) {
                ended = Some(now.min(tl.measure_end));
                drain_deadline = drain_deadline.min(now + DRAIN_MAX);
            }
        }
        let draining = ended.is_some();
        let mut next_wake = now + POLL_TICK;
        let mut live = 0;
        for s in slots.iter_mut().filter(|s| !s.done) {
            if draining {
                s.conn.begin_close(now);
                if s.conn.state() == State::Closed && s.conn.output().is_empty() {
                    s.done = true;
                    continue;
                }
            } else {
                s.conn.fill(now);
                if let Some(due) = s.conn.next_due() {
                    next_wake = next_wake.min(due);
                }
                if s.conn.outstanding() > 0
                    && now.duration_since(s.conn.last_progress()) > cfg.stall_timeout
                {
                    return Err(RunError::Stalled {
                        addr: s.addr.clone(),
                        conn: s.conn.id,
                        waited_s: now.duration_since(s.conn.last_progress()).as_secs_f64(),
                        outstanding: s.conn.outstanding(),
                    });
                }
            }
            live += 1;
            flush(s, &tl, now, cfg.write_per_request, &mut stats)?;
        }
        if live == 0 || (draining && now >= drain_deadline) {
            break;
        }
        let timeout = next_wake.saturating_duration_since(now);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        let mut completed = 0u64;
        for ev in events.iter() {
            let s = &mut slots[ev.token().0];
            if s.done || !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            loop {
                match s.sock.read(&mut buf) {
                    Ok(0) => {
                        closed(s, &tl, now, "")?;
                        break;
                    }
                    Ok(n) => {
                        let got =
                            s.conn
                                .on_bytes(&buf[..n], now, &mut stats)
                                .map_err(|source| RunError::Protocol {
                                    addr: s.addr.clone(),
                                    conn: s.conn.id,
                                    source,
                                })?;
                        completed += got as u64;
                        // A short read drained the socket: edge-triggered epoll
                        // reports the next arrival, so skip the read that would
                        // only say WouldBlock (as tokio does).
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        closed(s, &tl, now, &format!(" ({e})"))?;
                        break;
                    }
                }
            }
        }
        if completed > 0 {
            progress.completed.fetch_add(completed, Ordering::Relaxed);
        }
    }
    stats.frames_written = slots.iter().map(|s| s.conn.frames_written()).sum();
    Ok((stats, ended.unwrap_or(tl.measure_end)))
}

/// The server closed a socket: expected after closeSession, fatal otherwise.
fn closed(s: &mut Slot, tl: &Timeline, now: Instant, detail: &str) -> Result<(), RunError> {
    if matches!(s.conn.state(), State::Closing | State::Closed) {
        s.done = true;
        return Ok(());
    }
    Err(RunError::ServerClosed {
        addr: s.addr.clone(),
        conn: s.conn.id,
        at_s: now.duration_since(tl.start).as_secs_f64(),
        outstanding: s.conn.outstanding(),
        detail: detail.to_string(),
    })
}

/// Writes as much of the connection's pending output as the socket takes: all of it
/// per `write`, or with `per_request` one frame per `write`. Counts the calls.
fn flush(
    s: &mut Slot,
    tl: &Timeline,
    now: Instant,
    per_request: bool,
    stats: &mut Stats,
) -> Result<(), RunError> {
    while !s.conn.output().is_empty() {
        let chunk = if per_request {
            s.conn.output_one_frame()
        } else {
            s.conn.output()
        };
        match s.sock.write(chunk) {
            Ok(0) => return closed(s, tl, now, " (write returned 0)"),
            Ok(n) => {
                stats.write_calls += 1;
                s.conn.advance_output(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.write_would_block += 1;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return closed(s, tl, now, &format!(" ({e})")),
        }
    }
    Ok(())
}
