//! Crash test for corral's durability: a real corral process under a concurrent
//! create / setData / delete load is killed with SIGKILL at random moments and
//! restarted on the same data dir and port; every write a client saw acknowledged
//! must be there afterwards with the data, version, zxids and ephemeral owner it was
//! acknowledged with, and every acknowledged delete must stay deleted.
//!
//! Runs on the test threads (no executor). The main thread owns the server process
//! ([`Corral`]); each round it starts [`WORKERS`] scoped worker threads, each with its
//! own session and its own key range under `/crash/wN`. A worker reattaches its
//! session (ephemerals survive a restart), verifies its keys against its model,
//! signals ready, then keeps [`PIPELINE_DEPTH`] version-checked writes in flight on
//! distinct keys until the connection breaks. The main thread, once every worker is
//! loading, sleeps a seeded random delay, SIGKILLs the server, reaps it and restarts
//! it. A write whose reply never arrived may or may not have happened: the key keeps
//! both outcomes ([`Key::maybe`]) until the next verification, which accepts either
//! and adopts what it finds; anything else is a durability bug and fails the test
//! with the seed.
//!
//! Env vars: `CRASH_SEED=n` replays a seed (op choices and kill delays; the exact
//! kill moment relative to the load is timing and does not replay exactly),
//! `CRASH_KILLS=n` sets the kills per variant (default [`DEFAULT_KILLS`]).

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{decode_reply, four_letter_word, free_port, Decoded, RawClient, ReadEnd};
use corral::proto::{
    op, Acl, ConnectRequest, ConnectResponse, CreateKind, CreateRequest, ErrorCode, Reader,
    Request, Response, Stat,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Worker threads, each with its own session and key range.
const WORKERS: usize = 4;
/// Keys per worker; every third one is created ephemeral.
const KEYS_PER_WORKER: usize = 24;
/// Writes each worker keeps in flight (on distinct keys).
const PIPELINE_DEPTH: usize = 4;
/// Kills per variant in the default run.
const DEFAULT_KILLS: usize = 12;
/// Session timeout the workers ask for (the config's maximum).
const WORKER_SESSION_TIMEOUT_MS: i32 = 30_000;
/// Kill delay bounds, counted from the moment every worker is loading.
const KILL_DELAY_MS_MIN: u64 = 1;
const KILL_DELAY_MS_MAX: u64 = 400;
/// How long the main thread waits for every worker to reach its load loop.
const WORKERS_READY_TIMEOUT_MS: u64 = 60_000;
/// A round's load loop gives up (and fails) after this long without a kill.
const ROUND_LOAD_TIMEOUT_MS: u64 = 60_000;
/// How long start-up may take, from spawn to answering `ruok`.
const START_TIMEOUT_MS: u64 = 60_000;
/// Restarts attempted when the port is still held by the killed process.
const START_ATTEMPTS_MAX: u32 = 50;
/// Filler appended to each write's unique prefix, at most this many bytes.
const FILLER_BYTES_MAX: usize = 160;
/// A session id the server has not handed out (its ids start from the clock).
const PROBE_SESSION_ID: i64 = 0x7eee_eeee_eeee_eeee;
/// How long a handshake may wait for the sequencer (it may still be recovering).
const HANDSHAKE_TIMEOUT_MS: u64 = 60_000;
/// Mismatches listed in one failure message.
const MISMATCHES_LISTED_MAX: usize = 20;

// ---------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------

/// One corral server that can be killed and restarted on the same data dir and
/// port. Killed on drop; on a panic its files are kept and its log tail printed.
struct Corral {
    dir: Option<tempfile::TempDir>,
    port: u16,
    cfg_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Corral {
    /// Writes the config (data and log dirs inside a fresh temp dir) without starting.
    fn new(cfg_extra: &str) -> Corral {
        let dir = tempfile::Builder::new()
            .prefix("corral-crash-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let datalog = dir.path().join("datalog");
        Self::with_dirs(dir, &data, &datalog, cfg_extra)
    }

    fn with_dirs(dir: tempfile::TempDir, data: &Path, datalog: &Path, cfg_extra: &str) -> Corral {
        std::fs::create_dir_all(data).unwrap();
        std::fs::create_dir_all(datalog).unwrap();
        let port = free_port();
        let cfg = format!(
            "tickTime=500\n\
             dataDir={data}\n\
             dataLogDir={datalog}\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=30000\n\
             4lw.commands.whitelist=*\n\
             {cfg_extra}\n",
            data = data.display(),
            datalog = datalog.display(),
        );
        let cfg_path = dir.path().join("corral.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log_path = dir.path().join("server.log");
        Corral {
            dir: Some(dir),
            port,
            cfg_path,
            log_path,
            child: None,
            starts: 0,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it answers `ruok`; retries (bounded) while
    /// the port is still held, panics on any other start-up failure.
    fn start(&mut self) -> Duration {
        assert!(self.child.is_none(), "start: the server is already running");
        let began = Instant::now();
        for attempt in 1..=START_ATTEMPTS_MAX {
            self.starts += 1;
            let mut log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .unwrap();
            writeln!(log, "===== test: start #{} =====", self.starts).unwrap();
            let log_len_before = std::fs::metadata(&self.log_path).unwrap().len();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
            cmd.arg("server")
                .arg("--config")
                .arg(&self.cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .current_dir(self.dir.as_ref().unwrap().path());
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start corral ({cmd:?}): {e}"));
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
            loop {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    self.child = None;
                    let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                    let this_start = text.get(log_len_before as usize..).unwrap_or("");
                    if this_start.contains("in use") && attempt < START_ATTEMPTS_MAX {
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                    panic!("corral exited during start-up ({status}):\n{this_start}");
                }
                // corral answers `ruok` from its shard cores before the sequencer has
                // finished recovery; a session request needs the sequencer, so a
                // reattach of a session that cannot exist (answered "expired", no
                // txn) tells when it really serves.
                if four_letter_word(&self.addr(), "ruok").ok().as_deref() == Some("imok") {
                    let probe = ConnectRequest {
                        session_id: PROBE_SESSION_ID,
                        ..ConnectRequest::new_session(WORKER_SESSION_TIMEOUT_MS)
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    match handshake_patient(&self.addr(), &probe, left) {
                        Ok((_, resp)) => {
                            assert_eq!(resp.session_id, 0, "the probe session exists: {resp:?}");
                            return began.elapsed();
                        }
                        Err(e) => eprintln!("[start probe: {e}]"),
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "corral did not answer ruok within {START_TIMEOUT_MS} ms"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("corral could not bind its port in {START_ATTEMPTS_MAX} attempts");
    }

    /// SIGKILLs the server and reaps it. Fails if it had already died on its own.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the server is not running");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("corral died on its own before the test killed it ({status})");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    fn log_tail(&self, lines_max: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(lines_max)..].join("\n")
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                eprintln!("[corral files kept in {}]", d.keep().display());
            }
            eprintln!(
                "----- corral log ({}), last 80 lines -----\n{}\n----- end of corral log -----",
                self.log_path.display(),
                self.log_tail(80)
            );
        }
    }
}

/// A handshake that waits up to `timeout` for the ConnectResponse (the shared
/// client gives up after its read timeout, shorter than a slow recovery).
fn handshake_patient(
    addr: &str,
    req: &ConnectRequest,
    timeout: Duration,
) -> Result<(RawClient, ConnectResponse), String> {
    let stream = RawClient::connect_tcp(addr).map_err(|e| format!("connect: {e}"))?;
    let mut c = RawClient::from_stream(stream);
    let mut body = Vec::new();
    req.encode(&mut body);
    c.send_frame(&body).map_err(|e| format!("send: {e}"))?;
    c.set_read_timeout(timeout.max(Duration::from_millis(1)));
    let frame = c
        .read_frame()
        .map_err(|e| format!("no ConnectResponse: {e:?}"))?;
    c.set_read_timeout(Duration::from_millis(common::RAW_READ_TIMEOUT_MS));
    let resp = ConnectResponse::decode(&mut Reader::new(&frame))
        .map_err(|e| format!("bad ConnectResponse: {e}"))?;
    c.session_id = resp.session_id;
    c.passwd = resp.passwd.clone();
    c.timeout_ms = resp.timeout_ms;
    Ok((c, resp))
}

// ---------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------

/// What a znode should look like. Zxids are `None` for the outcome of a write whose
/// reply never arrived (we never learnt them).
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeState {
    Absent,
    Present {
        data: Vec<u8>,
        version: i32,
        czxid: Option<i64>,
        mzxid: Option<i64>,
        owner: i64,
    },
}

impl NodeState {
    fn from_read(data: Option<Vec<u8>>, stat: &Stat) -> NodeState {
        NodeState::Present {
            // This test never writes null data; reading some back is a fault.
            data: data.expect("null data where the test wrote bytes"),
            version: stat.version,
            czxid: Some(stat.czxid),
            mzxid: Some(stat.mzxid),
            owner: stat.ephemeral_owner,
        }
    }

    /// True when `found` (as read, zxids known) is this state.
    fn matches(&self, found: &NodeState) -> bool {
        match (self, found) {
            (NodeState::Absent, NodeState::Absent) => true,
            (
                NodeState::Present {
                    data,
                    version,
                    czxid,
                    mzxid,
                    owner,
                },
                NodeState::Present {
                    data: fd,
                    version: fv,
                    czxid: fc,
                    mzxid: fm,
                    owner: fo,
                },
            ) => {
                data == fd
                    && version == fv
                    && owner == fo
                    && (czxid.is_none() || czxid == fc)
                    && (mzxid.is_none() || mzxid == fm)
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            NodeState::Absent => "absent".into(),
            NodeState::Present {
                data,
                version,
                czxid,
                mzxid,
                owner,
            } => format!(
                "data {:?} ({} bytes) version {version} czxid {} mzxid {} owner {owner:#x}",
                String::from_utf8_lossy(&data[..data.len().min(24)]),
                data.len(),
                czxid.map_or("?".into(), |z| format!("{z:#x}")),
                mzxid.map_or("?".into(), |z| format!("{z:#x}")),
            ),
        }
    }
}

struct Key {
    name: String,
    path: String,
    ephemeral: bool,
    /// The state as of the last acknowledged write (or the last verification).
    known: NodeState,
    /// The state if the unacknowledged write in flight at a kill happened.
    maybe: Option<NodeState>,
}

/// The write sent for a key and the state it leads to.
struct InFlight {
    xid: i32,
    key: usize,
    opcode: i32,
    expect: NodeState,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acked_writes: u64,
    keys_verified: u64,
    ambiguous_happened: u64,
    ambiguous_not_happened: u64,
    lost_in_flight: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.acked_writes += o.acked_writes;
        self.keys_verified += o.keys_verified;
        self.ambiguous_happened += o.ambiguous_happened;
        self.ambiguous_not_happened += o.ambiguous_not_happened;
        self.lost_in_flight += o.lost_in_flight;
    }
}

/// One client thread's session, key range and model.
struct Worker {
    id: usize,
    seed: u64,
    dir: String,
    keys: Vec<Key>,
    session_id: i64,
    passwd: Vec<u8>,
    last_zxid_seen: i64,
    writes_sent: u64,
    rng: StdRng,
    stats: Stats,
}

/// Shared between the main thread and the workers of one round.
struct RoundSignals {
    ready: AtomicUsize,
    killed: AtomicBool,
}

fn create_req(path: &str, data: Vec<u8>, flags: i32) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create2,
        path: path.to_string(),
        data: Some(data),
        acl: Acl::open(),
        flags,
        ttl: -1,
    })
}

impl Worker {
    fn new(id: usize, seed: u64) -> Worker {
        let dir = format!("/crash/w{id}");
        let keys = (0..KEYS_PER_WORKER)
            .map(|k| Key {
                name: format!("k{k:02}"),
                path: format!("{dir}/k{k:02}"),
                ephemeral: k % 3 == 0,
                known: NodeState::Absent,
                maybe: None,
            })
            .collect();
        Worker {
            id,
            seed,
            dir,
            keys,
            session_id: 0,
            passwd: Vec::new(),
            last_zxid_seen: 0,
            writes_sent: 0,
            rng: StdRng::seed_from_u64(
                seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(id as u64 + 1)),
            ),
            stats: Stats::default(),
        }
    }

    /// Creates the session on first use, reattaches it afterwards (it must have
    /// survived every restart).
    fn connect(&mut self, addr: &str) -> RawClient {
        if self.session_id == 0 {
            let c = RawClient::connect(addr, WORKER_SESSION_TIMEOUT_MS);
            self.session_id = c.session_id;
            self.passwd = c.passwd.clone();
            return c;
        }
        let req = ConnectRequest {
            last_zxid_seen: self.last_zxid_seen,
            session_id: self.session_id,
            passwd: self.passwd.clone(),
            ..ConnectRequest::new_session(WORKER_SESSION_TIMEOUT_MS)
        };
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let (mut c, resp) = handshake_patient(addr, &req, timeout).unwrap_or_else(|e| {
            panic!(
                "worker {} (seed {}): reattaching session {:#x} (last zxid seen {:#x}) failed: {e} \
                 (a server that lost acknowledged txns refuses a client that saw a later zxid)",
                self.id, self.seed, self.session_id, self.last_zxid_seen
            )
        });
        assert_eq!(
            resp.session_id, self.session_id,
            "worker {} (seed {}): session {:#x} did not survive the restart: {resp:?}",
            self.id, self.seed, self.session_id
        );
        c.last_zxid = self.last_zxid_seen;
        c
    }

    /// Reads every key and the children of the worker's dir; resolves each
    /// ambiguous key to what was found when that is one of its two outcomes; fails
    /// listing every key that matches neither.
    fn verify(&mut self, c: &mut RawClient, context: &str) {
        let mut xids = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let req = Request::GetData {
                path: k.path.clone(),
                watch: false,
            };
            xids.push(c.send(&req).expect("send getData"));
        }
        let children_xid = c
            .send(&Request::GetChildren {
                path: self.dir.clone(),
                watch: false,
            })
            .expect("send getChildren");
        let mut mismatches = Vec::new();
        for (i, x) in xids.into_iter().enumerate() {
            let reply = c.recv_reply().unwrap_or_else(|e| {
                panic!(
                    "worker {} ({context}): no reply to getData {}: {e:?}",
                    self.id, self.keys[i].path
                )
            });
            assert_eq!(reply.xid, x, "reply out of order");
            let found = match decode_reply(op::GET_DATA, &reply) {
                Decoded::Ok(Response::Data { data, stat }) => {
                    let len = data.as_ref().map_or(0, Vec::len);
                    assert_eq!(stat.data_length as usize, len, "dataLength");
                    NodeState::from_read(data, &stat)
                }
                Decoded::Err(e, _) if e == ErrorCode::NoNode.code() => NodeState::Absent,
                other => panic!(
                    "worker {} ({context}): getData {}: unexpected reply {other:?}",
                    self.id, self.keys[i].path
                ),
            };
            let k = &mut self.keys[i];
            self.stats.keys_verified += 1;
            if k.known.matches(&found) {
                if k.maybe.take().is_some() {
                    self.stats.ambiguous_not_happened += 1;
                }
                k.known = found;
            } else if k.maybe.as_ref().is_some_and(|m| m.matches(&found)) {
                self.stats.ambiguous_happened += 1;
                k.maybe = None;
                k.known = found;
            } else {
                mismatches.push(format!(
                    "{}: acknowledged {}; unacknowledged write would give {}; found {}",
                    k.path,
                    k.known.describe(),
                    k.maybe
                        .as_ref()
                        .map_or("(none in flight)".into(), |m| m.describe()),
                    found.describe()
                ));
            }
        }
        let reply = c.recv_reply().expect("reply to getChildren");
        assert_eq!(reply.xid, children_xid, "reply out of order");
        let children: BTreeSet<String> = match decode_reply(op::GET_CHILDREN, &reply) {
            Decoded::Ok(Response::Children(v)) => v.into_iter().collect(),
            other => panic!("getChildren {}: unexpected reply {other:?}", self.dir),
        };
        if mismatches.is_empty() {
            let expected: BTreeSet<String> = self
                .keys
                .iter()
                .filter(|k| k.known != NodeState::Absent)
                .map(|k| k.name.clone())
                .collect();
            if children != expected {
                mismatches.push(format!(
                    "children of {}: expected {expected:?}, found {children:?}",
                    self.dir
                ));
            }
        }
        if !mismatches.is_empty() {
            let n = mismatches.len();
            mismatches.truncate(MISMATCHES_LISTED_MAX);
            panic!(
                "DURABILITY FAILURE worker {} session {:#x} ({context}), seed {} \
                 (replay: CRASH_SEED={}): {n} mismatches:\n  {}",
                self.id,
                self.session_id,
                self.seed,
                self.seed,
                mismatches.join("\n  ")
            );
        }
        self.last_zxid_seen = self.last_zxid_seen.max(c.last_zxid);
    }

    /// Picks a key with nothing in flight and builds the next write for it.
    fn next_write(&mut self, busy: &[bool]) -> Option<(usize, Request, NodeState)> {
        let free: Vec<usize> = (0..self.keys.len()).filter(|&i| !busy[i]).collect();
        if free.is_empty() {
            return None;
        }
        let i = free[self.rng.gen_range(0..free.len())];
        self.writes_sent += 1;
        let filler_len = self.rng.gen_range(0..=FILLER_BYTES_MAX);
        let mut data =
            format!("w{}-{}#{}:", self.id, self.keys[i].name, self.writes_sent).into_bytes();
        data.extend((0..filler_len).map(|_| self.rng.gen_range(b'a'..=b'z')));
        let k = &self.keys[i];
        Some(match &k.known {
            NodeState::Absent => {
                let owner = if k.ephemeral { self.session_id } else { 0 };
                let req = create_req(&k.path, data.clone(), i32::from(k.ephemeral));
                let expect = NodeState::Present {
                    data,
                    version: 0,
                    czxid: None,
                    mzxid: None,
                    owner,
                };
                (i, req, expect)
            }
            NodeState::Present {
                version,
                czxid,
                owner,
                ..
            } => {
                if self.rng.gen_bool(0.75) {
                    let req = Request::SetData {
                        path: k.path.clone(),
                        data: Some(data.clone()),
                        version: *version,
                    };
                    let expect = NodeState::Present {
                        data,
                        version: version + 1,
                        czxid: *czxid,
                        mzxid: None,
                        owner: *owner,
                    };
                    (i, req, expect)
                } else {
                    let req = Request::Delete {
                        path: k.path.clone(),
                        version: *version,
                    };
                    (i, req, NodeState::Absent)
                }
            }
        })
    }

    /// Checks an acknowledged write's reply against what it should lead to and
    /// returns the state with the zxids the reply carried.
    fn check_ack(&self, f: &InFlight, reply: &common::Reply) -> NodeState {
        let path = &self.keys[f.key].path;
        let fail = |what: String| -> ! {
            panic!(
                "worker {} (seed {}): write to {path} (opcode {}) expected to lead to {}: {what}",
                self.id,
                self.seed,
                f.opcode,
                f.expect.describe()
            )
        };
        let decoded = decode_reply(f.opcode, reply);
        match (&f.expect, decoded) {
            (NodeState::Absent, Decoded::Ok(Response::Empty)) => NodeState::Absent,
            (
                NodeState::Present {
                    data,
                    version,
                    czxid,
                    owner,
                    ..
                },
                Decoded::Ok(resp),
            ) => {
                let stat = match resp {
                    Response::Create2 { path: p, stat } => {
                        if &p != path {
                            fail(format!("create answered path {p}"));
                        }
                        stat
                    }
                    Response::Stat(stat) => stat,
                    other => fail(format!("unexpected reply {other:?}")),
                };
                if stat.version != *version
                    || stat.ephemeral_owner != *owner
                    || stat.data_length as usize != data.len()
                    || czxid.is_some_and(|z| z != stat.czxid)
                {
                    fail(format!("reply Stat {stat:?}"));
                }
                NodeState::Present {
                    data: data.clone(),
                    version: stat.version,
                    czxid: Some(stat.czxid),
                    mzxid: Some(stat.mzxid),
                    owner: stat.ephemeral_owner,
                }
            }
            (_, other) => fail(format!("reply {other:?}")),
        }
    }

    /// Connects, verifies, then runs the write load until the connection breaks.
    fn round(&mut self, addr: &str, signals: &RoundSignals, round: usize) {
        let mut c = self.connect(addr);
        self.verify(&mut c, &format!("after restart {round}"));
        signals.ready.fetch_add(1, Ordering::SeqCst);

        let started = Instant::now();
        let mut in_flight: std::collections::VecDeque<InFlight> = Default::default();
        let mut busy = vec![false; self.keys.len()];
        loop {
            assert!(
                started.elapsed() < Duration::from_millis(ROUND_LOAD_TIMEOUT_MS),
                "worker {}: round {round} ran {ROUND_LOAD_TIMEOUT_MS} ms without a kill",
                self.id
            );
            let mut lost = false;
            while in_flight.len() < PIPELINE_DEPTH {
                let Some((key, req, expect)) = self.next_write(&busy) else {
                    break;
                };
                let opcode = req.opcode();
                // From here on the write may happen: until its reply arrives the
                // key has two possible states.
                self.keys[key].maybe = Some(expect.clone());
                busy[key] = true;
                match c.send(&req) {
                    Ok(xid) => in_flight.push_back(InFlight {
                        xid,
                        key,
                        opcode,
                        expect,
                    }),
                    Err(_) => {
                        lost = true;
                        break;
                    }
                }
            }
            if lost {
                break;
            }
            match c.recv_reply() {
                Ok(reply) => {
                    let f = in_flight
                        .pop_front()
                        .expect("a reply with nothing in flight");
                    assert_eq!(
                        reply.xid, f.xid,
                        "worker {}: reply xid out of order",
                        self.id
                    );
                    let state = self.check_ack(&f, &reply);
                    let k = &mut self.keys[f.key];
                    k.known = state;
                    k.maybe = None;
                    busy[f.key] = false;
                    self.stats.acked_writes += 1;
                    self.last_zxid_seen = self.last_zxid_seen.max(c.last_zxid);
                }
                Err(ReadEnd::Closed) => break,
                Err(ReadEnd::Timeout) => {
                    assert!(
                        signals.killed.load(Ordering::SeqCst),
                        "worker {}: no reply within the read timeout while the server runs \
                         ({} writes in flight)",
                        self.id,
                        in_flight.len()
                    );
                    break;
                }
                Err(ReadEnd::Garbled(e)) => panic!("worker {}: garbled reply: {e}", self.id),
            }
        }
        self.stats.lost_in_flight += self.keys.iter().filter(|k| k.maybe.is_some()).count() as u64;
    }

    /// Closes the session (acknowledged): its ephemerals are gone from then on.
    fn close_session(&mut self, addr: &str) {
        let mut c = self.connect(addr);
        let reply = c.close_session().expect("closeSession reply");
        assert_eq!(reply.err, 0, "closeSession failed: {reply:?}");
        for k in &mut self.keys {
            assert!(k.maybe.is_none(), "close with an unresolved key");
            if let NodeState::Present { owner, .. } = k.known {
                if owner != 0 {
                    assert_eq!(owner, self.session_id);
                    k.known = NodeState::Absent;
                }
            }
        }
        self.session_id = 0;
        self.passwd.clear();
    }
}

// ---------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be an integer"))
    })
}

fn seed_and_kills(variant: &str) -> (u64, usize) {
    let seed = env_u64("CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000_007
    });
    let kills = env_u64("CRASH_KILLS").map_or(DEFAULT_KILLS, |n| n as usize);
    eprintln!("[crash {variant}] seed {seed} (replay: CRASH_SEED={seed}), {kills} kills");
    (seed, kills)
}

fn setup_dirs(addr: &str) {
    let mut c = RawClient::connect(addr, WORKER_SESSION_TIMEOUT_MS);
    let mut paths = vec!["/crash".to_string()];
    paths.extend((0..WORKERS).map(|w| format!("/crash/w{w}")));
    for p in paths {
        let r = c
            .call(&create_req(&p, Vec::new(), 0))
            .expect("create reply");
        assert_eq!(r.err, 0, "create {p}: {r:?}");
    }
    c.close_session().expect("close reply");
}

/// Filler nodes' data size: they make the snapshots big enough to take a while.
const FILLER_NODE_BYTES: usize = 1024;
/// Requests kept in flight while creating or checking filler nodes.
const FILLER_PIPELINE_DEPTH: usize = 64;

/// Creates `n` persistent nodes under `/crash/fill` (pipelined) and returns their
/// acknowledged states.
fn create_filler(addr: &str, n: usize) -> Vec<(String, NodeState)> {
    let mut c = RawClient::connect(addr, WORKER_SESSION_TIMEOUT_MS);
    let r = c
        .call(&create_req("/crash/fill", Vec::new(), 0))
        .expect("create reply");
    assert_eq!(r.err, 0, "create /crash/fill: {r:?}");
    let mut acked = Vec::with_capacity(n);
    let mut in_flight = std::collections::VecDeque::new();
    let mut next = 0;
    while acked.len() < n {
        while next < n && in_flight.len() < FILLER_PIPELINE_DEPTH {
            let path = format!("/crash/fill/f{next:05}");
            let mut data = format!("{path}:").into_bytes();
            data.resize(FILLER_NODE_BYTES, b'x');
            let xid = c.send(&create_req(&path, data.clone(), 0)).expect("send");
            in_flight.push_back((xid, path, data));
            next += 1;
        }
        let reply = c.recv_reply().expect("create reply");
        let (xid, path, data) = in_flight.pop_front().unwrap();
        assert_eq!(reply.xid, xid, "reply out of order");
        match decode_reply(op::CREATE2, &reply) {
            Decoded::Ok(Response::Create2 { stat, .. }) => {
                acked.push((path, NodeState::from_read(Some(data), &stat)))
            }
            other => panic!("create {path}: {other:?}"),
        }
    }
    c.close_session().expect("close reply");
    acked
}

/// Checks every filler node (pipelined reads).
fn verify_filler(c: &mut RawClient, filler: &[(String, NodeState)], context: &str) {
    let mut in_flight = std::collections::VecDeque::new();
    let mut next = 0;
    let mut checked = 0;
    while checked < filler.len() {
        while next < filler.len() && in_flight.len() < FILLER_PIPELINE_DEPTH {
            let req = Request::GetData {
                path: filler[next].0.clone(),
                watch: false,
            };
            in_flight.push_back((c.send(&req).expect("send"), next));
            next += 1;
        }
        let reply = c.recv_reply().expect("getData reply");
        let (xid, i) = in_flight.pop_front().unwrap();
        assert_eq!(reply.xid, xid, "reply out of order");
        let found = match decode_reply(op::GET_DATA, &reply) {
            Decoded::Ok(Response::Data { data, stat }) => NodeState::from_read(data, &stat),
            Decoded::Err(e, _) if e == ErrorCode::NoNode.code() => NodeState::Absent,
            other => panic!("getData {}: {other:?}", filler[i].0),
        };
        let (path, state) = &filler[i];
        assert!(
            state.matches(&found),
            "DURABILITY FAILURE ({context}): filler node {path}: acknowledged {}, found {}",
            state.describe(),
            found.describe()
        );
        checked += 1;
    }
}

/// The whole crash test for one server configuration; `filler_nodes` untouched
/// 1 KiB nodes make every snapshot big enough that kills land while one is written.
fn crash_test(variant: &str, cfg_extra: &str, filler_nodes: usize) {
    let (seed, kills) = seed_and_kills(variant);
    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = Corral::new(cfg_extra);
    let mut restart_total = server.start();
    setup_dirs(&server.addr());
    let filler = create_filler(&server.addr(), filler_nodes);
    let mut workers: Vec<Worker> = (0..WORKERS).map(|w| Worker::new(w, seed)).collect();
    let mut delays = Vec::with_capacity(kills);
    let mut kills_mid_snapshot = 0;

    for round in 0..kills {
        let delay_ms = if rng.gen_bool(0.25) {
            rng.gen_range(KILL_DELAY_MS_MIN..20)
        } else {
            rng.gen_range(20..=KILL_DELAY_MS_MAX)
        };
        delays.push(delay_ms);
        let signals = RoundSignals {
            ready: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
        };
        let addr = server.addr();
        std::thread::scope(|s| {
            let handles: Vec<_> = workers
                .iter_mut()
                .map(|w| {
                    let (addr, signals) = (&addr, &signals);
                    s.spawn(move || w.round(addr, signals, round))
                })
                .collect();
            let deadline = Instant::now() + Duration::from_millis(WORKERS_READY_TIMEOUT_MS);
            while signals.ready.load(Ordering::SeqCst) < WORKERS
                && !handles.iter().any(|h| h.is_finished())
            {
                assert!(
                    Instant::now() < deadline,
                    "workers not loading after {WORKERS_READY_TIMEOUT_MS} ms"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(delay_ms));
            signals.killed.store(true, Ordering::SeqCst);
            server.kill();
            if !snapshot_temp_files(&server).is_empty() {
                kills_mid_snapshot += 1;
            }
            // Joining at the scope's end re-raises a worker's panic here.
        });
        restart_total += server.start();
    }

    // Final check on the last restart: everything acknowledged is there.
    let addr = server.addr();
    std::thread::scope(|s| {
        for w in workers.iter_mut() {
            let addr = &addr;
            s.spawn(move || {
                let mut c = w.connect(addr);
                w.verify(&mut c, "final");
            });
        }
    });
    // Closing each session (acknowledged) removes its ephemerals, and for good:
    // a restart must not bring them back.
    for w in workers.iter_mut() {
        w.close_session(&addr);
    }
    let mut checker = RawClient::connect(&addr, WORKER_SESSION_TIMEOUT_MS);
    for w in workers.iter_mut() {
        w.verify(&mut checker, "after closing the sessions");
    }
    verify_filler(&mut checker, &filler, "final");
    drop(checker);
    server.kill();
    restart_total += server.start();
    let mut checker = RawClient::connect(&server.addr(), WORKER_SESSION_TIMEOUT_MS);
    for w in workers.iter_mut() {
        w.verify(&mut checker, "restart after closing the sessions");
    }

    let mut total = Stats::default();
    for w in &workers {
        total.add(&w.stats);
    }
    let snaps = count_files(&server, "data");
    let logs = count_files(&server, "datalog");
    let log = std::fs::read_to_string(&server.log_path).unwrap_or_default();
    let snapshots_written = log.matches(" written (").count();
    let torn_tails = log.lines().filter(|l| l.contains("torn")).count();
    eprintln!(
        "[crash {variant}] seed {seed}: {kills} kills (delays {delays:?} ms; {kills_mid_snapshot} \
         while a snapshot was being written), {} acknowledged writes, {} key verifications, \
         unacknowledged writes: {} in flight at a kill, {} found applied, {} found not applied; \
         {snapshots_written} snapshots written, {torn_tails} torn log tails repaired; {} starts, \
         {} ms restarting in all; files at the end: {snaps} in data, {logs} in datalog; {:.1} s",
        total.acked_writes,
        total.keys_verified,
        total.lost_in_flight,
        total.ambiguous_happened,
        total.ambiguous_not_happened,
        server.starts,
        restart_total.as_millis(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        total.acked_writes > 0,
        "no write was acknowledged in the whole run"
    );
}

/// Snapshot temp files (`*.tmp`) in the data dir: a snapshot was being written.
fn snapshot_temp_files(server: &Corral) -> Vec<PathBuf> {
    let dir = server.dir.as_ref().unwrap().path().join("data");
    std::fs::read_dir(dir).map_or(Vec::new(), |d| {
        d.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
            .collect()
    })
}

fn count_files(server: &Corral, sub: &str) -> usize {
    let dir = server.dir.as_ref().unwrap().path().join(sub);
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn crash_under_write_load() {
    // Default settings except 4 MiB log segments: every restart starts a new segment
    // and recovery reads each one to its end, which in a debug build costs ~1 s per
    // 64 MiB segment and would make the run grow quadratically with the kills.
    // The sequencer sits beside shard 0 and runs every sync after the first on the
    // blocking pool, so replies wait for a sync done on another thread.
    crash_test(
        "default",
        "corral.logSegmentBytes=4194304\ncorral.sequencerCore=shard\n\
         corral.inlineSyncMaxMicros=0\n",
        0,
    );
}

/// Filler nodes in the snapshot variant (≈ 4 MiB of snapshot).
const SNAPSHOT_VARIANT_FILLER_NODES: usize = 4000;

/// Snapshots every ~100–200 txns (old logs purged as they go), 1 MiB log segments
/// and 4000 filler nodes (≈ 4 MiB snapshots), so kills also land while a snapshot
/// is written and around segment rolls. The sequencer has an executor of its own
/// here (inline syncs).
#[test]
fn crash_under_write_load_with_snapshots() {
    crash_test(
        "snapshots",
        "snapCount=200\nautopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n\
         corral.logSegmentBytes=1048576\ncorral.sequencerCore=own\n",
        SNAPSHOT_VARIANT_FILLER_NODES,
    );
}

/// Session timeout of the session whose ephemeral must outlive a restart and then
/// go with the session's expiry.
const EXPIRY_SESSION_TIMEOUT_MS: i32 = 6_000;
/// How long the expired session's ephemeral may take to disappear.
const EXPIRY_WAIT_MS_MAX: u64 = 60_000;

fn get_data(c: &mut RawClient, path: &str) -> NodeState {
    let req = Request::GetData {
        path: path.to_string(),
        watch: false,
    };
    match c.call_decoded(&req).expect("getData reply") {
        Decoded::Ok(Response::Data { data, stat }) => NodeState::from_read(data, &stat),
        Decoded::Err(e, _) if e == ErrorCode::NoNode.code() => NodeState::Absent,
        other => panic!("getData {path}: unexpected reply {other:?}"),
    }
}

/// An acknowledged ephemeral survives a SIGKILL and restart (its session is
/// restored), disappears when that session, never reattached, expires, and stays
/// gone after a further restart; the session cannot be reattached once expired.
#[test]
fn ephemeral_survives_restart_until_its_session_expires() {
    let mut server = Corral::new("corral.logSegmentBytes=1048576\n");
    server.start();
    let addr = server.addr();
    let mut owner = RawClient::connect(&addr, EXPIRY_SESSION_TIMEOUT_MS);
    let (sid, passwd) = (owner.session_id, owner.passwd.clone());
    let mut acked = Vec::new();
    for (path, flags) in [("/exp", 0), ("/exp/eph", 1), ("/exp/keep", 0)] {
        let data = format!("data of {path}").into_bytes();
        let reply = owner
            .call_decoded(&create_req(path, data.clone(), flags))
            .expect("create reply");
        let Decoded::Ok(Response::Create2 { stat, .. }) = reply else {
            panic!("create {path}: {reply:?}");
        };
        acked.push((path, NodeState::from_read(Some(data), &stat)));
    }
    server.kill();
    drop(owner);
    server.start();

    let mut c = RawClient::connect(&addr, WORKER_SESSION_TIMEOUT_MS);
    for (path, state) in &acked {
        let found = get_data(&mut c, path);
        assert!(
            state.matches(&found),
            "{path} after restart: acknowledged {}, found {}",
            state.describe(),
            found.describe()
        );
    }
    let deadline = Instant::now() + Duration::from_millis(EXPIRY_WAIT_MS_MAX);
    while get_data(&mut c, "/exp/eph") != NodeState::Absent {
        assert!(
            Instant::now() < deadline,
            "the ephemeral of session {sid:#x} (timeout {EXPIRY_SESSION_TIMEOUT_MS} ms) is still \
             there {EXPIRY_WAIT_MS_MAX} ms after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reattach = ConnectRequest {
        session_id: sid,
        passwd,
        ..ConnectRequest::new_session(EXPIRY_SESSION_TIMEOUT_MS)
    };
    match handshake_patient(
        &addr,
        &reattach,
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
    ) {
        Ok((_, resp)) => assert_eq!(
            resp.session_id, 0,
            "the expired session {sid:#x} could be reattached: {resp:?}"
        ),
        Err(e) => eprintln!("[reattaching the expired session: {e} (refused: fine)]"),
    }
    drop(c);

    server.kill();
    server.start();
    let mut c = RawClient::connect(&addr, WORKER_SESSION_TIMEOUT_MS);
    assert_eq!(
        get_data(&mut c, "/exp/eph"),
        NodeState::Absent,
        "the expired session's ephemeral came back after a restart"
    );
    for (path, state) in acked.iter().filter(|(p, _)| *p != "/exp/eph") {
        let found = get_data(&mut c, path);
        assert!(
            state.matches(&found),
            "{path} after the second restart: acknowledged {}, found {}",
            state.describe(),
            found.describe()
        );
    }
}
