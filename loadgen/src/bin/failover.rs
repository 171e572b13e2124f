//! `failover`: how long an ensemble takes to accept a write again after its leader
//! is SIGKILLed, measured the same way for any ZooKeeper-protocol server.
//!
//! Threads: the main thread prepares the nodes, starts one writer thread per
//! survivor address, kills the leader and reports; each writer owns one session on
//! its survivor and writes (setData, one at a time) until it has a write that was
//! sent after the leader was gone and succeeded.
//!
//! Flow: setup (create `PATH` and `PATH/<i>`) → writers write steadily → main sends
//! SIGKILL to `--kill-pid` (time zero) and polls /proc until the process is gone
//! (`dead`, so no write can be answered by the old leader) → each writer, on any
//! error, reconnects to its own survivor (same session, a new one if the old one is
//! refused) every `--retry-ms` → the first write sent after `dead` that succeeds
//! ends the writer → report: time from the kill to the first such write, over all
//! survivors and per survivor (text, or one JSON object with `--json`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use corral::proto::jute::{begin_frame, end_frame};
use corral::proto::{op, ConnectRequest, ConnectResponse, JuteWrite, Reader, ReplyHeader};
use loadgen::conn::FRAME_BYTES_MAX;
use loadgen::setup::SyncClient;
use serde::Serialize;
use thiserror::Error;

/// Kill the ensemble's leader and time the first successful write through a survivor.
#[derive(Debug, Parser)]
#[command(name = "failover", version)]
struct Args {
    /// Pid of the leader to SIGKILL.
    #[arg(long)]
    kill_pid: u32,
    /// Survivors' client addresses (host:port), comma-separated or repeated; one
    /// writer session each.
    #[arg(short, long = "server", value_delimiter = ',', required = true)]
    servers: Vec<String>,
    /// Parent node of the writers' nodes (created if missing).
    #[arg(long, default_value = "/failover")]
    path: String,
    /// Seconds of steady writes through every survivor before the kill.
    #[arg(long, default_value_t = 1.0)]
    before_s: f64,
    /// Give up this many seconds after the kill.
    #[arg(long, default_value_t = 60.0)]
    give_up_s: f64,
    /// Pause between a failed connection or write and the next attempt, in ms.
    #[arg(long, default_value_t = 5)]
    retry_ms: u64,
    /// How long a writer waits for a reply (or a handshake answer) before it drops
    /// the connection and reconnects, in ms.
    #[arg(long, default_value_t = 2_000)]
    reply_timeout_ms: u64,
    /// Session timeout asked for in the handshake, in ms.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: i32,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Bytes each write stores.
const VALUE_BYTES: usize = 16;
/// Polls of /proc for the killed process to be gone (1 ms apart).
const DEATH_POLLS_MAX: u32 = 5_000;
/// Attempts to open the setup session before the kill (`retry_ms` apart, at least 1 ms).
const SETUP_ATTEMPTS_MAX: u32 = 2_000;

#[derive(Debug, Error)]
enum ProbeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Decode(String),
    #[error("the server refused or expired the session")]
    SessionRefused,
    #[error("ZooKeeper error {0}")]
    Server(i32),
    #[error("no address for {0}")]
    Address(String),
}

/// When the leader was killed and when it was confirmed gone (set once by main).
#[derive(Default)]
struct KillClock {
    kill: OnceLock<Instant>,
    dead: OnceLock<Instant>,
    stop: AtomicBool,
}

/// What one writer saw.
#[derive(Debug, Default)]
struct Outcome {
    /// When its first write sent after `dead` succeeded.
    first_write: Option<Instant>,
    writes_before_kill: u64,
    reconnects_after_kill: u32,
    failed_connects_after_kill: u32,
    failed_writes_after_kill: u32,
    reply_timeouts: u32,
    new_sessions: u32,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct ServerReport {
    addr: String,
    first_write_ms: Option<f64>,
    writes_before_kill: u64,
    reconnects_after_kill: u32,
    failed_connects_after_kill: u32,
    failed_writes_after_kill: u32,
    reply_timeouts: u32,
    new_sessions: u32,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    killed_pid: u32,
    /// Wall clock of the kill, ms since the epoch (to line up with server logs).
    kill_unix_ms: f64,
    /// From the kill to the process being gone from /proc (or a zombie).
    dead_after_kill_ms: f64,
    /// From the kill to the first successful write through any survivor.
    first_write_ms: Option<f64>,
    servers: Vec<ServerReport>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(report) => {
            print_report(&a, &report);
            if report.first_write_ms.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(msg) => {
            eprintln!("failover: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(a: &Args) -> Result<Report, String> {
    let root = a.path.trim_end_matches('/').to_string();
    if !root.starts_with('/') || root.is_empty() {
        return Err(format!("--path {:?} must be absolute, not /", a.path));
    }
    let nodes: Vec<String> = (0..a.servers.len())
        .map(|i| format!("{root}/{i}"))
        .collect();
    create_nodes(a, &root, &nodes)?;

    let clock = Arc::new(KillClock::default());
    let acked: Vec<Arc<AtomicU64>> = a.servers.iter().map(|_| Arc::default()).collect();
    let writers: Vec<_> = a
        .servers
        .iter()
        .zip(&nodes)
        .zip(&acked)
        .map(|((addr, node), acked)| {
            let w = Writer {
                addr: addr.clone(),
                node: node.clone(),
                retry: Duration::from_millis(a.retry_ms),
                reply_timeout: Duration::from_millis(a.reply_timeout_ms.max(1)),
                session_timeout_ms: a.session_timeout_ms,
                clock: clock.clone(),
                acked: acked.clone(),
            };
            std::thread::spawn(move || w.run())
        })
        .collect();

    let give_up = Duration::from_secs_f64(a.give_up_s.max(0.0));
    if !wait_every_writer_acked(&acked, give_up) {
        clock.stop.store(true, Ordering::Relaxed);
        return Err("not every survivor took a write before the kill".into());
    }
    std::thread::sleep(Duration::from_secs_f64(a.before_s.max(0.0)));
    let (kill_at, kill_unix_ms) = kill_leader(a.kill_pid)?;
    let _ = clock.kill.set(kill_at);
    let dead_at = wait_gone(a.kill_pid).ok_or("the killed leader did not go away")?;
    let _ = clock.dead.set(dead_at);

    let outcomes = join_writers(writers, &clock, kill_at + give_up);
    Ok(build_report(a, kill_at, kill_unix_ms, dead_at, outcomes))
}

/// Creates the parent and one node per writer through the first survivor.
fn create_nodes(a: &Args, root: &str, nodes: &[String]) -> Result<(), String> {
    let timeout = Duration::from_millis(a.reply_timeout_ms.max(1));
    let mut last = String::new();
    for _ in 0..SETUP_ATTEMPTS_MAX {
        match SyncClient::connect(&a.servers[0], timeout) {
            Ok(mut c) => {
                let mut all = vec![root.to_string()];
                all.extend_from_slice(nodes);
                c.ensure_nodes(&all, b"")
                    .map_err(|e| format!("setup: {e}"))?;
                let _ = c.close();
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(a.retry_ms.max(1)));
    }
    Err(format!("setup: {last}"))
}

fn wait_every_writer_acked(acked: &[Arc<AtomicU64>], give_up: Duration) -> bool {
    let deadline = Instant::now() + give_up;
    while Instant::now() < deadline {
        if acked.iter().all(|n| n.load(Ordering::Relaxed) > 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn kill_leader(pid: u32) -> Result<(Instant, f64), String> {
    let pid_t = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    let wall = SystemTime::now();
    let at = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; the pid is the caller's choice.
    if unsafe { libc::kill(pid_t, libc::SIGKILL) } != 0 {
        return Err(format!("kill {pid}: {}", io::Error::last_os_error()));
    }
    let unix_ms = wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3;
    Ok((at, unix_ms))
}

/// Polls until the process is gone or a zombie (its sockets are closed by then).
fn wait_gone(pid: u32) -> Option<Instant> {
    for _ in 0..DEATH_POLLS_MAX {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return Some(Instant::now()),
            Ok(stat) => {
                let state = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next());
                if matches!(state, Some("Z" | "X")) {
                    return Some(Instant::now());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Waits for every writer to finish or the deadline, then stops the rest.
fn join_writers(
    writers: Vec<std::thread::JoinHandle<Outcome>>,
    clock: &KillClock,
    deadline: Instant,
) -> Vec<Outcome> {
    while Instant::now() < deadline && !writers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    clock.stop.store(true, Ordering::Relaxed);
    writers
        .into_iter()
        .map(|w| w.join().unwrap_or_default())
        .collect()
}

fn build_report(
    a: &Args,
    kill_at: Instant,
    kill_unix_ms: f64,
    dead_at: Instant,
    outcomes: Vec<Outcome>,
) -> Report {
    let ms = |t: Instant| (t - kill_at).as_secs_f64() * 1e3;
    let servers: Vec<ServerReport> = a
        .servers
        .iter()
        .zip(outcomes)
        .map(|(addr, o)| ServerReport {
            addr: addr.clone(),
            first_write_ms: o.first_write.map(ms),
            writes_before_kill: o.writes_before_kill,
            reconnects_after_kill: o.reconnects_after_kill,
            failed_connects_after_kill: o.failed_connects_after_kill,
            failed_writes_after_kill: o.failed_writes_after_kill,
            reply_timeouts: o.reply_timeouts,
            new_sessions: o.new_sessions,
            last_error: o.last_error,
        })
        .collect();
    let first_write_ms = servers
        .iter()
        .filter_map(|s| s.first_write_ms)
        .min_by(f64::total_cmp);
    Report {
        killed_pid: a.kill_pid,
        kill_unix_ms,
        dead_after_kill_ms: ms(dead_at),
        first_write_ms,
        servers,
    }
}

fn print_report(a: &Args, r: &Report) {
    if a.json {
        println!(
            "{}",
            serde_json::to_string(r).expect("the report serialises")
        );
        return;
    }
    let show = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.1} ms"));
    println!(
        "killed pid {} (gone after {:.1} ms); first write through a survivor after {}",
        r.killed_pid,
        r.dead_after_kill_ms,
        show(r.first_write_ms)
    );
    for s in &r.servers {
        println!(
            "  {}: first write {}, {} reconnects ({} refused), {} failed writes, {} reply timeouts, {} new sessions{}",
            s.addr,
            show(s.first_write_ms),
            s.reconnects_after_kill,
            s.failed_connects_after_kill,
            s.failed_writes_after_kill,
            s.reply_timeouts,
            s.new_sessions,
            s.last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
}

/// A session as a client keeps it across reconnections.
#[derive(Default)]
struct Session {
    id: i64,
    passwd: Vec<u8>,
    last_zxid: i64,
}

/// One survivor's writer thread.
struct Writer {
    addr: String,
    node: String,
    retry: Duration,
    reply_timeout: Duration,
    session_timeout_ms: i32,
    clock: Arc<KillClock>,
    acked: Arc<AtomicU64>,
}

impl Writer {
    fn run(self) -> Outcome {
        let mut out = Outcome::default();
        let mut session = Session::default();
        let mut conn: Option<TcpStream> = None;
        let mut xid = 1;
        while !self.clock.stop.load(Ordering::Relaxed) {
            let killed = self.clock.kill.get().is_some();
            let stream = match conn.take() {
                Some(s) => s,
                None => match self.connect(&mut session, &mut out, killed) {
                    Some(s) => s,
                    None => {
                        std::thread::sleep(self.retry);
                        continue;
                    }
                },
            };
            let sent = Instant::now();
            xid += 1;
            match self.write_once(&stream, xid, &mut session) {
                Ok(()) => {
                    conn = Some(stream);
                    if self.record_success(sent, &mut out) {
                        break;
                    }
                }
                Err(e) => {
                    self.record_failure(&e, killed, &mut out);
                    if matches!(e, ProbeError::Server(_)) {
                        conn = Some(stream);
                    }
                    std::thread::sleep(self.retry);
                }
            }
        }
        out
    }

    /// True when this success is the one the writer was waiting for.
    fn record_success(&self, sent: Instant, out: &mut Outcome) -> bool {
        self.acked.fetch_add(1, Ordering::Relaxed);
        if self.clock.kill.get().is_none() {
            out.writes_before_kill += 1;
        }
        match self.clock.dead.get() {
            Some(&dead) if sent >= dead => {
                out.first_write = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    fn record_failure(&self, e: &ProbeError, killed: bool, out: &mut Outcome) {
        if is_timeout(e) {
            out.reply_timeouts += 1;
        }
        if killed {
            out.failed_writes_after_kill += 1;
        }
        out.last_error = Some(e.to_string());
    }

    /// A connection with the session re-established (or a new one when the server
    /// no longer knows it); `None` after a failed attempt.
    fn connect(&self, session: &mut Session, out: &mut Outcome, killed: bool) -> Option<TcpStream> {
        if killed {
            out.reconnects_after_kill += 1;
        }
        match self.handshake(session) {
            Ok(s) => Some(s),
            Err(e) => {
                if matches!(e, ProbeError::SessionRefused) && session.id != 0 {
                    *session = Session {
                        last_zxid: session.last_zxid,
                        ..Session::default()
                    };
                    out.new_sessions += 1;
                }
                if killed {
                    out.failed_connects_after_kill += 1;
                }
                if is_timeout(&e) {
                    out.reply_timeouts += 1;
                }
                out.last_error = Some(e.to_string());
                None
            }
        }
    }

    fn handshake(&self, session: &mut Session) -> Result<TcpStream, ProbeError> {
        let sa = resolve(&self.addr)?;
        let mut s = TcpStream::connect_timeout(&sa, self.reply_timeout)?;
        s.set_read_timeout(Some(self.reply_timeout))?;
        s.set_write_timeout(Some(self.reply_timeout))?;
        s.set_nodelay(true)?;
        let mut out = Vec::new();
        let at = begin_frame(&mut out);
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: session.last_zxid,
            timeout_ms: self.session_timeout_ms,
            session_id: session.id,
            passwd: if session.id == 0 {
                vec![0; 16]
            } else {
                session.passwd.clone()
            },
            read_only: Some(false),
        }
        .encode(&mut out);
        end_frame(&mut out, at);
        s.write_all(&out)?;
        let frame = read_frame(&mut s)?;
        let resp = ConnectResponse::decode(&mut Reader::new(&frame))
            .map_err(|e| ProbeError::Decode(e.to_string()))?;
        if resp.session_id == 0 || resp.timeout_ms <= 0 {
            return Err(ProbeError::SessionRefused);
        }
        session.id = resp.session_id;
        session.passwd = resp.passwd;
        Ok(s)
    }

    /// One setData of the writer's node, waiting for its reply.
    fn write_once(
        &self,
        mut s: &TcpStream,
        xid: i32,
        session: &mut Session,
    ) -> Result<(), ProbeError> {
        let mut out = Vec::new();
        let at = begin_frame(&mut out);
        out.put_i32(xid);
        out.put_i32(op::SET_DATA);
        out.put_str(&self.node);
        out.put_buffer(&[b'v'; VALUE_BYTES]);
        out.put_i32(-1);
        end_frame(&mut out, at);
        s.write_all(&out)?;
        loop {
            let frame = read_frame(&mut s)?;
            let h = ReplyHeader::decode(&mut Reader::new(&frame))
                .map_err(|e| ProbeError::Decode(e.to_string()))?;
            if h.xid != xid {
                continue; // a watch event or a ping answer: not ours
            }
            if h.zxid > session.last_zxid {
                session.last_zxid = h.zxid;
            }
            return match h.err {
                0 => Ok(()),
                code => Err(ProbeError::Server(code)),
            };
        }
    }
}

fn is_timeout(e: &ProbeError) -> bool {
    matches!(e, ProbeError::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

fn resolve(addr: &str) -> Result<SocketAddr, ProbeError> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| ProbeError::Address(addr.to_string()))
}

fn read_frame(mut s: impl Read) -> Result<Vec<u8>, ProbeError> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= FRAME_BYTES_MAX)
        .ok_or_else(|| ProbeError::Decode(format!("frame length {len}")))?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_longer_than_the_bound_is_refused() {
        let mut bytes = ((FRAME_BYTES_MAX + 1) as i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        assert!(matches!(read_frame(&bytes[..]), Err(ProbeError::Decode(_))));
        let mut ok = 3i32.to_be_bytes().to_vec();
        ok.extend_from_slice(b"abc");
        assert_eq!(read_frame(&ok[..]).unwrap(), b"abc");
    }

    #[test]
    fn a_process_that_is_gone_is_seen_as_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(wait_gone(pid).is_some());
    }
}
