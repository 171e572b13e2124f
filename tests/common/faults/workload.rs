//! The client workloads of a fault run, each on its own threads, recording
//! every op in a [`Recorder`]:
//! - register: clients loop on (sync + getData of one znode) then setData of a
//!   value unique to the write, at the version just read;
//! - creates: clients alternate named creates (a unique path) and sequential
//!   ones under one parent, each carrying a unique token as its data;
//! - ephemeral: a client creates an ephemeral with a short session, goes silent
//!   past the session timeout (its connection dropped, the session kept),
//!   reconnects until a member says the session expired, then checks through
//!   another session (sync + exists) that the node is gone.
//!
//! Every client holds one session on one member (picked at random from the
//! run's seed) and moves it to another member on a connection loss, as client
//! libraries do; a new session (after an expiry) still names the last zxid the
//! client saw, so no member behind the client's view takes it. Calls are
//! blocking [`RawClient`] frames with a bounded read timeout: a timeout or a
//! lost connection makes the op indeterminate ("info"), a definite refusal
//! (BadVersion, NodeExists) makes it "fail".
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use corral::proto::{ConnectRequest, CreateMode, ErrorCode, Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::history::{
    Clock, CreateCall, CreateOp, EphCall, EphOp, Outcome, Recorder, RegCall, RegOp, RegRes,
};
use crate::common::ensemble::{create_req, pipeline, CallError};
use crate::common::RawClient;

/// The register znode.
pub const REGISTER_PATH: &str = "/register";
/// Its data before the first write.
pub const REGISTER_INITIAL: &str = "init";
/// Parent of the named creates.
pub const NAMED_PARENT: &str = "/named";
/// Parent of the sequential creates.
pub const SEQ_PARENT: &str = "/seq";
/// Parent of the ephemerals.
pub const EPH_PARENT: &str = "/eph";

/// Session timeout of the register and create clients (a pause of a member
/// longer than this expires sessions that stay on it).
pub const WORKER_SESSION_MS: i32 = 4_000;
/// Session timeout of the ephemeral owners.
pub const EPH_SESSION_MS: i32 = 2_000;
/// How long a client waits for one answer before the op is indeterminate.
pub const OP_TIMEOUT_MS: u64 = 2_000;
/// How long a TCP connect to a member may take.
const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Pause after a failed connection attempt.
const RECONNECT_PAUSE_MS: u64 = 100;
/// Reconnect attempts an ephemeral owner makes to learn its session expired.
const EXPIRY_PROBES_MAX: u32 = 20;

/// How many clients each workload runs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub register_clients: usize,
    pub create_clients: usize,
    pub ephemeral_clients: usize,
    /// Pause between two ops of one client (keeps a long soak's history small
    /// enough to check).
    pub think_ms: u64,
    /// Pipeline a sync behind every create (replies must keep request order).
    pub sync_after_create: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            register_clients: 4,
            create_clients: 2,
            ephemeral_clients: 1,
            think_ms: 5,
            sync_after_create: true,
        }
    }
}

/// The histories of a finished run.
pub struct Histories {
    pub register: Vec<RegOp>,
    pub creates: Vec<CreateOp>,
    pub ephemerals: Vec<EphOp>,
}

/// Running workload threads; [`stop`](Self::stop) ends them and returns the histories.
pub struct Workloads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    register: Arc<Recorder<RegCall, RegRes>>,
    creates: Arc<Recorder<CreateCall, String>>,
    ephemerals: Arc<Recorder<EphCall, Option<i64>>>,
}

impl Workloads {
    /// Creates the workloads' znodes through `addrs` (bounded retries), then
    /// starts every client thread; client i's generator is seeded from `seed` and i.
    pub fn start(addrs: &[String], clock: Clock, seed: u64, shape: Shape) -> Workloads {
        setup(addrs, seed);
        let w = Workloads {
            stop: Arc::default(),
            threads: Vec::new(),
            register: Recorder::new(clock),
            creates: Recorder::new(clock),
            ephemerals: Recorder::new(clock),
        };
        let mut threads = Vec::new();
        let mut next_client = 0;
        let mut spawn = |f: Box<dyn FnOnce(usize, Session) + Send>| {
            let i = next_client;
            next_client += 1;
            let session = Session::new(addrs.to_vec(), seed ^ (i as u64 + 1) << 32, i);
            threads.push(std::thread::spawn(move || f(i, session)));
        };
        let think = shape.think_ms;
        for _ in 0..shape.register_clients {
            let (rec, stop) = (w.register.clone(), w.stop.clone());
            spawn(Box::new(move |i, s| {
                register_client(i, s, &rec, &stop, think)
            }));
        }
        for _ in 0..shape.create_clients {
            let (rec, stop) = (w.creates.clone(), w.stop.clone());
            let sync = shape.sync_after_create;
            spawn(Box::new(move |i, s| {
                create_client(i, s, &rec, &stop, think, sync)
            }));
        }
        for _ in 0..shape.ephemeral_clients {
            let (rec, stop) = (w.ephemerals.clone(), w.stop.clone());
            spawn(Box::new(move |i, s| ephemeral_client(i, s, &rec, &stop)));
        }
        Workloads { threads, ..w }
    }

    /// Ops recorded so far, all workloads.
    pub fn ops(&self) -> usize {
        self.register.len() + self.creates.len() + self.ephemerals.len()
    }

    /// Acknowledged register ops so far (progress, for the nemesis's log).
    pub fn ok_ops(&self) -> usize {
        self.register
            .ops()
            .iter()
            .filter(|o| o.outcome.is_ok())
            .count()
    }

    /// Stops every client (each finishes its op in flight) and returns the histories.
    pub fn stop(mut self) -> Histories {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Histories {
            register: self.register.ops(),
            creates: self.creates.ops(),
            ephemerals: self.ephemerals.ops(),
        }
    }
}

/// Creates the register and the parents (NodeExists is fine: a retry).
/// Goes through every address (an ensemble answers NodeExists after the first;
/// the harness's broken setup of standalone servers needs them on each).
fn setup(addrs: &[String], seed: u64) {
    for addr in addrs {
        setup_on(addr, seed);
    }
}

fn setup_on(addr: &str, seed: u64) {
    let addrs = [addr.to_string()];
    let mut s = Session::new(addrs.to_vec(), seed, 0);
    let nodes = [
        (REGISTER_PATH, REGISTER_INITIAL),
        (NAMED_PARENT, ""),
        (SEQ_PARENT, ""),
        (EPH_PARENT, ""),
    ];
    for (path, data) in nodes {
        let req = create_req(path, data.as_bytes(), CreateMode::Persistent);
        let mut done = false;
        for _ in 0..300 {
            match s.call(std::slice::from_ref(&req)).map(|mut v| v.remove(0)) {
                Ok(Ok(_)) => done = true,
                Ok(Err(e)) if e.is(ErrorCode::NodeExists) => done = true,
                _ => std::thread::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)),
            }
            if done {
                break;
            }
        }
        assert!(done, "could not create {path} through {addrs:?}");
    }
    s.close();
}

impl Session {
    /// The member the session is on (after a loss: the one it tries next), as
    /// an index into the run's addresses.
    pub fn member(&self) -> usize {
        self.next
    }
}

/// One client's session, moved between members on connection losses.
pub struct Session {
    addrs: Vec<String>,
    rng: SmallRng,
    client: Option<RawClient>,
    /// (id, password) while a session is held.
    held: Option<(i64, Vec<u8>)>,
    last_zxid: i64,
    timeout_ms: i32,
    /// Member index to try next.
    next: usize,
    /// The session's next xid, kept across its connections as real clients do.
    next_xid: i32,
}

/// Why a batch of calls got no answer.
#[derive(Debug)]
pub enum Lost {
    /// No member took the session (all down, refusing, or behind the client).
    NoMember,
    /// The connection broke or timed out with calls in flight.
    InFlight(String),
    /// A reply came out of order or did not decode (a protocol fault, not a
    /// network one; the connection is dropped and the op recorded as
    /// indeterminate, marked [`GARBLED_REPLY`] for the checker).
    Garbled(String),
}

/// How an indeterminate op whose reply was out of order or undecodable is marked.
pub const GARBLED_REPLY: &str = "garbled reply";

/// The outcome of an op whose batch got no (usable) answer.
fn lost<R>(why: Lost) -> Outcome<R> {
    match why {
        // Never sent: certainly not applied.
        Lost::NoMember => Outcome::Fail("no member".into()),
        Lost::InFlight(e) => Outcome::Info(e),
        Lost::Garbled(e) => Outcome::Info(format!("{GARBLED_REPLY}: {e}")),
    }
}

impl Session {
    pub fn new(addrs: Vec<String>, seed: u64, first: usize) -> Session {
        let n = addrs.len();
        Session {
            addrs,
            rng: SmallRng::seed_from_u64(seed),
            client: None,
            held: None,
            last_zxid: 0,
            timeout_ms: WORKER_SESSION_MS,
            next: first % n,
            next_xid: 1,
        }
    }

    /// The session id held now (0: none).
    pub fn id(&self) -> i64 {
        self.held.as_ref().map_or(0, |h| h.0)
    }

    /// Sends `reqs` pipelined on the session (one connection attempt first if
    /// none is open); every answer, or why there are none.
    pub fn call(&mut self, reqs: &[Request]) -> Result<Vec<Result<Response, CallError>>, Lost> {
        if self.client.is_none() && !self.connect_once() {
            return Err(Lost::NoMember);
        }
        let c = self.client.as_mut().expect("connected");
        match pipeline(c, reqs) {
            Ok(answers) => {
                if answers.iter().any(|a| {
                    matches!(a, Err(e) if e.is(ErrorCode::SessionExpired)
                        || e.is(ErrorCode::ConnectionLoss)
                        || e.is(ErrorCode::SessionMoved))
                }) {
                    self.drop_connection();
                }
                if answers
                    .iter()
                    .any(|a| matches!(a, Err(e) if e.is(ErrorCode::SessionExpired)))
                {
                    self.held = None;
                }
                Ok(answers)
            }
            Err(CallError::Bad(why)) => {
                let member = self.addrs[self.next].clone();
                self.drop_connection();
                Err(Lost::Garbled(format!("{why} (member {member})")))
            }
            Err(e) => {
                self.drop_connection();
                Err(Lost::InFlight(format!("{e:?}")))
            }
        }
    }

    /// Drops the connection and keeps the session, to move it on the next call.
    pub fn drop_connection(&mut self) {
        if let Some(c) = self.client.take() {
            self.last_zxid = self.last_zxid.max(c.last_zxid);
            self.next_xid = c.next_xid();
        }
        self.next = self.rng.gen_range(0..self.addrs.len());
    }

    /// Forgets the session (it expired, or the client gives it up).
    pub fn forget(&mut self) {
        self.drop_connection();
        self.held = None;
    }

    /// Closes the session politely (best effort).
    pub fn close(&mut self) {
        if let Some(c) = self.client.as_mut() {
            let _ = pipeline(c, &[Request::CloseSession]);
        }
        self.forget();
    }

    /// One attempt on the next member: the held session moved there, or a new one.
    /// `Some(false)` from [`reconnect`](Self::reconnect) means "expired".
    fn connect_once(&mut self) -> bool {
        match self.reconnect() {
            Some(true) => true,
            Some(false) => {
                self.held = None;
                self.reconnect() == Some(true)
            }
            None => {
                self.next = (self.next + 1) % self.addrs.len();
                std::thread::sleep(Duration::from_millis(RECONNECT_PAUSE_MS));
                false
            }
        }
    }

    /// One handshake on the next member: `Some(true)` connected (the held
    /// session, or a new one if none is held), `Some(false)` the held session
    /// has expired, `None` the member did not take us.
    ///
    /// (See [`Session::member`] for the member it tries.)
    pub fn reconnect(&mut self) -> Option<bool> {
        let addr = self.addrs[self.next].clone();
        let (id, passwd) = self.held.clone().unwrap_or((0, vec![0; 16]));
        let req = ConnectRequest {
            last_zxid_seen: self.last_zxid,
            session_id: id,
            passwd,
            ..ConnectRequest::new_session(self.timeout_ms)
        };
        let (mut c, resp) = handshake(&addr, &req)?;
        if resp.session_id == 0 || resp.timeout_ms <= 0 {
            return if id != 0 { Some(false) } else { None };
        }
        if id != 0 && resp.session_id != id {
            return None;
        }
        c.last_zxid = self.last_zxid;
        c.set_next_xid(self.next_xid);
        c.set_read_timeout(Duration::from_millis(OP_TIMEOUT_MS));
        self.held = Some((resp.session_id, resp.passwd.clone()));
        self.client = Some(c);
        Some(true)
    }
}

/// A TCP connect and ZooKeeper handshake with short timeouts.
fn handshake(
    addr: &str,
    req: &ConnectRequest,
) -> Option<(RawClient, corral::proto::ConnectResponse)> {
    let sa: std::net::SocketAddr = addr.parse().ok()?;
    let s = std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(CONNECT_TIMEOUT_MS))
        .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(OP_TIMEOUT_MS)))
        .ok()?;
    s.set_write_timeout(Some(Duration::from_millis(OP_TIMEOUT_MS)))
        .ok()?;
    let _ = s.set_nodelay(true);
    let mut c = RawClient::from_stream(s);
    let resp = c.zk_handshake(req).ok()?;
    Some((c, resp))
}

/// An answer as an outcome: `ok` maps a success, `definite` names the error
/// codes that prove the request was not applied; anything else is indeterminate.
fn outcome<R>(
    answer: Result<Response, CallError>,
    definite: &[ErrorCode],
    ok: impl FnOnce(Response) -> Option<R>,
) -> Outcome<R> {
    match answer {
        Ok(r) => match ok(r) {
            Some(v) => Outcome::Ok(v),
            None => Outcome::Info("unexpected answer".into()),
        },
        Err(e) => match definite.iter().find(|c| e.is(**c)) {
            Some(c) => Outcome::Fail(format!("{c:?}")),
            None => Outcome::Info(format!("{e:?}")),
        },
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

// ----- the register -----

fn register_client(
    i: usize,
    mut s: Session,
    rec: &Recorder<RegCall, RegRes>,
    stop: &AtomicBool,
    think_ms: u64,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let read = rec.run_on(i, RegCall::Read, || {
            (read_register(&mut s), Some(s.member()))
        });
        if let Outcome::Ok(RegRes::Read { version, .. }) = read {
            n += 1;
            let value = format!("c{i}-{n}");
            let call = RegCall::Write {
                expect: version,
                value: value.clone(),
            };
            rec.run_on(i, call, || {
                (write_register(&mut s, &value, version), Some(s.member()))
            });
        }
        sleep_ms(think_ms);
    }
    s.close();
}

/// sync + getData, pipelined (the getData waits for the sync).
fn read_register(s: &mut Session) -> Outcome<RegRes> {
    let reqs = [
        Request::Sync {
            path: REGISTER_PATH.into(),
        },
        Request::GetData {
            path: REGISTER_PATH.into(),
            watch: false,
        },
    ];
    match s.call(&reqs) {
        Err(why) => lost(why),
        Ok(mut answers) => {
            let data = answers.pop().expect("two answers");
            if let Err(e) = answers.pop().expect("two answers") {
                return Outcome::Info(format!("sync: {e:?}"));
            }
            outcome(data, &[], |r| match r {
                Response::Data { data, stat } => Some(RegRes::Read {
                    value: String::from_utf8_lossy(&data.unwrap_or_default()).into_owned(),
                    version: stat.version,
                }),
                _ => None,
            })
        }
    }
}

fn write_register(s: &mut Session, value: &str, expect: i32) -> Outcome<RegRes> {
    let req = Request::SetData {
        path: REGISTER_PATH.into(),
        data: Some(value.as_bytes().to_vec()),
        version: expect,
    };
    match s.call(&[req]) {
        Err(why) => lost(why),
        Ok(mut answers) => outcome(answers.remove(0), &[ErrorCode::BadVersion], |r| match r {
            Response::Stat(stat) => Some(RegRes::Written {
                version: stat.version,
            }),
            _ => None,
        }),
    }
}

// ----- creates -----

fn create_client(
    i: usize,
    mut s: Session,
    rec: &Recorder<CreateCall, String>,
    stop: &AtomicBool,
    think_ms: u64,
    sync_after_create: bool,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let token = format!("c{i}-{n}");
        let sequential = n.is_multiple_of(2);
        let (path, mode) = if sequential {
            (format!("{SEQ_PARENT}/s-"), CreateMode::PersistentSequential)
        } else {
            (format!("{NAMED_PARENT}/{token}"), CreateMode::Persistent)
        };
        let call = CreateCall {
            path: path.clone(),
            token: token.clone(),
            sequential,
        };
        // A sync pipelined behind the create: its answer must come after the
        // create's (replies in request order on a session).
        let mut reqs = vec![create_req(&path, token.as_bytes(), mode)];
        if sync_after_create {
            reqs.push(Request::Sync { path: path.clone() });
        }
        rec.run(i, call, || match s.call(&reqs) {
            Err(why) => lost(why),
            Ok(mut answers) => outcome(answers.remove(0), &[ErrorCode::NodeExists], |r| match r {
                Response::Create { path } => Some(path),
                _ => None,
            }),
        });
        sleep_ms(think_ms);
    }
    s.close();
}

// ----- ephemeral ownership across expiry -----

fn ephemeral_client(
    i: usize,
    mut owner: Session,
    rec: &Recorder<EphCall, Option<i64>>,
    stop: &AtomicBool,
) {
    owner.timeout_ms = EPH_SESSION_MS;
    let mut checker = Session::new(owner.addrs.clone(), owner.rng.gen(), i + 1);
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let path = format!("{EPH_PARENT}/e-{i}-{k}");
        if !create_ephemeral(i, &mut owner, rec, &path) {
            owner.forget();
            sleep_ms(RECONNECT_PAUSE_MS);
            continue;
        }
        let session = owner.id();
        // Go silent: the connection is dropped, the session kept.
        owner.drop_connection();
        if observe_expiry(i, &mut owner, rec, session, stop) {
            check_gone(i, &mut checker, rec, &path);
        }
        owner.forget();
    }
    checker.close();
}

/// Creates the ephemeral on a fresh session; true when it may exist (ok or info).
fn create_ephemeral(
    i: usize,
    owner: &mut Session,
    rec: &Recorder<EphCall, Option<i64>>,
    path: &str,
) -> bool {
    owner.forget();
    if !owner.connect_once() {
        return false;
    }
    let call = EphCall::Create {
        path: path.to_string(),
        session: owner.id(),
    };
    let req = create_req(path, b"", CreateMode::Ephemeral);
    let out = rec.run(i, call, || match owner.call(&[req]) {
        Err(why) => lost(why),
        Ok(mut a) => outcome(a.remove(0), &[ErrorCode::NodeExists], |_| Some(None)),
    });
    !matches!(out, Outcome::Fail(_))
}

/// Waits past the session timeout, then reconnects (bounded) until a member
/// says the session expired; a reconnect that finds it alive renews it, so it
/// is dropped again and the wait starts over. True once expiry was observed.
fn observe_expiry(
    i: usize,
    owner: &mut Session,
    rec: &Recorder<EphCall, Option<i64>>,
    session: i64,
    stop: &AtomicBool,
) -> bool {
    for _ in 0..EXPIRY_PROBES_MAX {
        sleep_ms(EPH_SESSION_MS as u64 * 3 / 2);
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let invoke = rec.now();
        match owner.reconnect() {
            Some(false) => {
                rec.push(EphOp {
                    client: i,
                    call: EphCall::Expired { session },
                    invoke,
                    complete: rec.now(),
                    outcome: Outcome::Ok(None),
                    member: Some(owner.member()),
                });
                return true;
            }
            Some(true) => owner.drop_connection(),
            None => owner.next = (owner.next + 1) % owner.addrs.len(),
        }
    }
    false
}

/// sync + exists through another session: ok(owner) if the node is there.
fn check_gone(i: usize, checker: &mut Session, rec: &Recorder<EphCall, Option<i64>>, path: &str) {
    let reqs = [
        Request::Sync { path: path.into() },
        Request::Exists {
            path: path.into(),
            watch: false,
        },
    ];
    rec.run(i, EphCall::Check { path: path.into() }, || {
        match checker.call(&reqs) {
            Err(why) => lost(why),
            Ok(mut a) => {
                let exists = a.pop().expect("two answers");
                if let Err(e) = a.pop().expect("two answers") {
                    return Outcome::Info(format!("sync: {e:?}"));
                }
                match exists {
                    Ok(Response::Stat(stat)) => Outcome::Ok(Some(stat.ephemeral_owner)),
                    Err(e) if e.is(ErrorCode::NoNode) => Outcome::Ok(None),
                    Err(e) => Outcome::Info(format!("{e:?}")),
                    Ok(other) => Outcome::Info(format!("unexpected {other:?}")),
                }
            }
        }
    });
}
