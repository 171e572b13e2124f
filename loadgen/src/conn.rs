//! One client connection as a pure protocol state machine: it decides what to send
//! (handshake, workload requests, closeSession), encodes it into its output buffer
//! with `corral::proto`, and consumes reply bytes, matching each reply to its
//! request in FIFO order and recording the completion into the worker's stats.
//!
//! No IO and no clock: the worker thread that owns the connection (see `driver`)
//! passes `now` in, moves bytes between this buffer and the socket, and reports EOF.
//! Per request the hot path does not allocate: paths and values are written
//! straight into the output buffer, and the pending queue is a reused ring.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::proto::jute::{begin_frame, end_frame};
use corral::proto::{
    op, xid, ConnectRequest, ConnectResponse, DecodeError, JuteWrite, Reader, ReplyHeader,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::mix::Mix;
use crate::mix::{MixEntry, OpKind};
use crate::stats::Stats;

/// Largest reply frame we accept, in bytes (the reference's jute.maxbuffer is 0xfffff;
/// a little headroom for replies to large getChildren).
pub const FRAME_BYTES_MAX: usize = 16 << 20;
/// Nodes a connection remembers having created (the pool deletes draw from). When
/// full, a create turns into a delete so the tree stays bounded.
pub const OWNED_NODES_MAX: usize = 10_000;
/// ZooKeeper error code NodeExists.
const ERR_NODE_EXISTS: i32 = -110;
/// WatcherEvent type NodeDataChanged.
const EVENT_NODE_DATA_CHANGED: i32 = 3;

/// What a run sends; shared read-only by every connection of every worker.
#[derive(Debug, Clone)]
pub struct Workload {
    pub mix: Mix,
    /// Full paths of the keys get/set/exists/multi draw from (uniformly).
    pub keys: Arc<Vec<String>>,
    pub value: Arc<Vec<u8>>,
    /// Prefix of nodes made by create ops: `{root}/n/{run}-`; the connection appends `{conn}-{n}`.
    pub node_prefix: String,
    /// Prefix of watch nodes: `{root}/w/{run}-`; the connection appends `{conn}-{slot}`.
    pub watch_prefix: String,
    /// setData ops inside one multi.
    pub multi_ops: usize,
    /// Requests in flight per connection.
    pub outstanding: usize,
    pub session_timeout_ms: i32,
    /// Per-connection request rate in requests/s; `None` = closed loop (as fast as replies come).
    pub rate_per_conn: Option<f64>,
    /// Workload requests each connection sends before it stops; `None` = until the clock ends the run.
    pub requests_per_conn: Option<u64>,
}

/// Everything a server can do to a connection that ends the run.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("reply frame of {0} bytes exceeds the {FRAME_BYTES_MAX}-byte limit (or is negative)")]
    FrameTooLarge(i64),
    #[error("the server refused the session (ConnectResponse with session id 0)")]
    SessionRefused,
    #[error("reply with xid {got} when xid {expected} was next (replies out of order)")]
    XidMismatch { expected: i32, got: i32 },
    #[error("reply with xid {0} but no request is outstanding")]
    Unsolicited(i32),
    #[error("malformed reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("creating watch node {path} failed with error code {code}")]
    Setup { path: String, code: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// ConnectRequest sent, waiting for the ConnectResponse.
    Handshake,
    /// Session up, creating this connection's ephemeral watch nodes.
    Init,
    /// Sending the workload.
    Running,
    /// closeSession sent.
    Closing,
    /// closeSession answered; the server will close the socket.
    Closed,
}

#[derive(Debug, Clone, Copy)]
enum Counted {
    Op(OpKind),
    /// Not part of the figures: watch-node creation, closeSession.
    Init,
    Close,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    xid: i32,
    what: Counted,
    start: Instant,
    /// The watch slot a WatchFire request fires (`NO_SLOT` otherwise).
    slot: u32,
}

const NO_SLOT: u32 = u32::MAX;

/// Open-loop pacing: the next request is due at `next_due`; latency is timed from
/// when it was due, not from when it could be sent (no coordinated omission).
#[derive(Debug, Clone, Copy)]
struct Pacer {
    interval: Duration,
    next_due: Instant,
}

pub struct Conn {
    pub id: usize,
    state: State,
    out: Vec<u8>,
    out_pos: usize,
    /// Where in `out` the frame holding `out_pos` ends; at or before `out_pos` when
    /// `out_pos` sits on a frame boundary (`out` holds whole frames only).
    frame_end: usize,
    /// Frames (requests, handshake, closeSession) written to the socket in full.
    frames_written: u64,
    inbuf: Vec<u8>,
    pending: VecDeque<Pending>,
    next_xid: i32,
    owned: VecDeque<String>,
    create_seq: u64,
    rng: SmallRng,
    /// Watch slots not armed; a slot's node is `{watch_prefix}{id}-{slot}`.
    watch_free: Vec<u32>,
    /// When the setData that fires each slot's watch was sent.
    watch_fired_at: Vec<Option<Instant>>,
    /// Whether the reply to that setData is still to come. A slot is free again only
    /// when both its event and that reply are in; an event that finds the reply
    /// already in is late.
    watch_reply_pending: Vec<bool>,
    /// Watch events that arrived after the reply of the setData that fired them.
    /// ZooKeeper sends the event first ("a client sees the event before the new data").
    pub events_after_reply: u64,
    init_left: usize,
    session_id: i64,
    pacer: Option<Pacer>,
    last_progress: Instant,
    scratch: String,
    /// Workload requests issued so far (watch pairs count once).
    issued: u64,
    w: Arc<Workload>,
}

impl Conn {
    /// A connection about to send its handshake; `seed` makes its choices reproducible.
    pub fn new(id: usize, w: Arc<Workload>, seed: u64, now: Instant) -> Conn {
        let watch_slots = if w.mix.contains(MixEntry::Watch) {
            w.outstanding
        } else {
            0
        };
        let pacer = w.rate_per_conn.map(|r| Pacer {
            interval: Duration::from_secs_f64(1.0 / r.max(1e-3)),
            next_due: now,
        });
        let mut c = Conn {
            id,
            state: State::Handshake,
            out: Vec::with_capacity(64 << 10),
            out_pos: 0,
            frame_end: 0,
            frames_written: 0,
            inbuf: Vec::with_capacity(64 << 10),
            pending: VecDeque::with_capacity(w.outstanding + 4),
            next_xid: 1,
            owned: VecDeque::new(),
            create_seq: 0,
            rng: SmallRng::seed_from_u64(seed),
            watch_free: (0..watch_slots as u32).rev().collect(),
            watch_fired_at: vec![None; watch_slots],
            watch_reply_pending: vec![false; watch_slots],
            events_after_reply: 0,
            init_left: 0,
            session_id: 0,
            pacer,
            last_progress: now,
            scratch: String::with_capacity(256),
            issued: 0,
            w,
        };
        let hello = ConnectRequest::new_session(c.w.session_timeout_ms).frame();
        c.out.extend_from_slice(&hello);
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// When this connection last heard from the server (or began waiting for it).
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    fn limit_reached(&self) -> bool {
        self.w.requests_per_conn.is_some_and(|l| self.issued >= l)
    }

    /// True once a request-limited connection has sent its share and heard every
    /// reply and every watch event it is owed.
    pub fn finished(&self) -> bool {
        self.state == State::Running
            && self.limit_reached()
            && self.pending.is_empty()
            && self.watch_fired_at.iter().all(Option::is_none)
    }

    /// When the next paced request is due (`None` when not paced).
    pub fn next_due(&self) -> Option<Instant> {
        self.pacer.map(|p| p.next_due)
    }

    /// Bytes waiting to be written to the socket.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// The rest of the one frame (request) [`Conn::output`] begins with: what a
    /// client that writes one request per syscall hands to its next `write`.
    pub fn output_one_frame(&self) -> &[u8] {
        &self.out[self.out_pos..self.current_frame_end()]
    }

    /// Frames written in full so far (every request, the handshake and closeSession).
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Marks `n` bytes of [`Conn::output`] as written, counting the frames it completes.
    pub fn advance_output(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let target = self.out_pos + n;
        assert!(target <= self.out.len(), "advanced past the output");
        let mut end = self.current_frame_end();
        while end <= target {
            self.frames_written += 1;
            if end == self.out.len() {
                break;
            }
            end = frame_end_at(&self.out, end);
        }
        self.frame_end = end;
        self.out_pos = target;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.frame_end = 0;
        }
    }

    fn current_frame_end(&self) -> usize {
        if self.frame_end > self.out_pos {
            self.frame_end
        } else {
            frame_end_at(&self.out, self.out_pos)
        }
    }

    fn push(&mut self, what: Counted, xid: i32, start: Instant) {
        self.push_slot(what, xid, start, NO_SLOT)
    }

    fn push_slot(&mut self, what: Counted, xid: i32, start: Instant, slot: u32) {
        if self.pending.is_empty() {
            self.last_progress = start.max(self.last_progress);
        }
        self.pending.push_back(Pending {
            xid,
            what,
            start,
            slot,
        });
    }

    fn take_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        x
    }

    /// Issues workload requests while the pipeline has room (and, when paced, while
    /// requests are due). Returns how many were issued.
    pub fn fill(&mut self, now: Instant) -> usize {
        if self.state != State::Running {
            return 0;
        }
        let mut n = 0;
        while self.pending.len() < self.w.outstanding && !self.limit_reached() {
            let start = match &mut self.pacer {
                None => now,
                Some(p) => {
                    if p.next_due > now {
                        break;
                    }
                    let s = p.next_due;
                    p.next_due += p.interval;
                    s
                }
            };
            self.issue_one(start);
            self.issued += 1;
            n += 1;
        }
        n
    }

    fn random_key(&mut self) -> usize {
        self.rng.gen_range(0..self.w.keys.len())
    }

    fn issue_one(&mut self, start: Instant) {
        let r: u32 = self.rng.gen();
        match self.w.mix.pick(r) {
            MixEntry::Op(OpKind::Get) => {
                let k = self.random_key();
                self.send_path_watch(OpKind::Get, op::GET_DATA, KeyRef::Key(k), false, start)
            }
            MixEntry::Op(OpKind::Exists) => {
                let k = self.random_key();
                self.send_path_watch(OpKind::Exists, op::EXISTS, KeyRef::Key(k), false, start)
            }
            MixEntry::Op(OpKind::Set) => {
                let k = self.random_key();
                self.send_set(OpKind::Set, KeyRef::Key(k), start)
            }
            MixEntry::Op(OpKind::Multi) => self.send_multi(start),
            MixEntry::Op(OpKind::Ping) => {
                let at = begin_frame(&mut self.out);
                self.out.put_i32(xid::PING);
                self.out.put_i32(op::PING);
                end_frame(&mut self.out, at);
                self.push(Counted::Op(OpKind::Ping), xid::PING, start);
            }
            MixEntry::Op(OpKind::Delete) => match self.owned.pop_front() {
                Some(path) => self.send_delete(&path, start),
                None => self.send_create(self.w.mix.fallback_create(), start),
            },
            MixEntry::Op(k) if k.is_create() => {
                if self.owned.len() >= OWNED_NODES_MAX {
                    let path = self.owned.pop_front().expect("full");
                    self.send_delete(&path, start)
                } else {
                    self.send_create(k, start)
                }
            }
            MixEntry::Op(k) => unreachable!("{k:?} is not a mix entry"),
            MixEntry::Watch => match self.watch_free.pop() {
                Some(slot) => {
                    self.send_path_watch(
                        OpKind::WatchSet,
                        op::GET_DATA,
                        KeyRef::Watch(slot),
                        true,
                        start,
                    );
                    self.send_set(OpKind::WatchFire, KeyRef::Watch(slot), start);
                    if let Some(p) = self.pending.back_mut() {
                        p.slot = slot;
                    }
                    self.watch_fired_at[slot as usize] = Some(start);
                    self.watch_reply_pending[slot as usize] = true;
                }
                None => {
                    let k = self.random_key();
                    self.send_path_watch(OpKind::Get, op::GET_DATA, KeyRef::Key(k), false, start)
                }
            },
        }
    }

    /// Writes the path for `k` as a jute string.
    fn put_path(&mut self, k: KeyRef) {
        match k {
            KeyRef::Key(i) => self.out.put_str(&self.w.keys[i]),
            KeyRef::Watch(slot) => {
                self.scratch.clear();
                let _ = write!(self.scratch, "{}{}-{}", self.w.watch_prefix, self.id, slot);
                self.out.put_str(&self.scratch);
            }
        }
    }

    fn header(&mut self, opcode: i32) -> (usize, i32) {
        let at = begin_frame(&mut self.out);
        let x = self.take_xid();
        self.out.put_i32(x);
        self.out.put_i32(opcode);
        (at, x)
    }

    fn send_path_watch(
        &mut self,
        kind: OpKind,
        opcode: i32,
        k: KeyRef,
        watch: bool,
        start: Instant,
    ) {
        let (at, x) = self.header(opcode);
        self.put_path(k);
        self.out.put_bool(watch);
        end_frame(&mut self.out, at);
        self.push(Counted::Op(kind), x, start);
    }

    fn send_set(&mut self, kind: OpKind, k: KeyRef, start: Instant) {
        let (at, x) = self.header(op::SET_DATA);
        self.put_path(k);
        self.out.put_buffer(&self.w.value);
        self.out.put_i32(-1);
        end_frame(&mut self.out, at);
        self.push(Counted::Op(kind), x, start);
    }

    fn send_multi(&mut self, start: Instant) {
        let (at, x) = self.header(op::MULTI);
        for _ in 0..self.w.multi_ops.max(1) {
            let k = self.random_key();
            self.out.put_i32(op::SET_DATA);
            self.out.put_bool(false);
            self.out.put_i32(-1);
            self.out.put_str(&self.w.keys[k]);
            self.out.put_buffer(&self.w.value);
            self.out.put_i32(-1);
        }
        self.out.put_i32(-1);
        self.out.put_bool(true);
        self.out.put_i32(-1);
        end_frame(&mut self.out, at);
        self.push(Counted::Op(OpKind::Multi), x, start);
    }

    fn send_create(&mut self, kind: OpKind, start: Instant) {
        let (at, x) = self.header(op::CREATE);
        self.scratch.clear();
        let _ = write!(self.scratch, "{}{}-", self.w.node_prefix, self.id);
        if !matches!(kind, OpKind::CreateSeq | OpKind::CreateEphSeq) {
            let _ = write!(self.scratch, "{}", self.create_seq);
            self.create_seq += 1;
        }
        self.out.put_str(&self.scratch);
        self.out.put_buffer(&self.w.value);
        put_open_acl(&mut self.out);
        self.out.put_i32(kind.create_flags());
        end_frame(&mut self.out, at);
        self.push(Counted::Op(kind), x, start);
    }

    fn send_delete(&mut self, path: &str, start: Instant) {
        let (at, x) = self.header(op::DELETE);
        self.out.put_str(path);
        self.out.put_i32(-1);
        end_frame(&mut self.out, at);
        self.push(Counted::Op(OpKind::Delete), x, start);
    }

    /// Sends closeSession (once); the run is over for this connection.
    pub fn begin_close(&mut self, now: Instant) {
        if matches!(self.state, State::Closing | State::Closed) {
            return;
        }
        if self.state == State::Handshake {
            self.state = State::Closed;
            return;
        }
        let (at, x) = self.header(op::CLOSE_SESSION);
        end_frame(&mut self.out, at);
        self.push(Counted::Close, x, now);
        self.state = State::Closing;
    }

    /// Consumes bytes read from the socket: every complete reply is matched and
    /// recorded. Returns the number of replies (and events) handled.
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<usize, ConnError> {
        if self.inbuf.is_empty() {
            let (used, n) = self.parse(data, now, stats)?;
            self.inbuf.extend_from_slice(&data[used..]);
            Ok(n)
        } else {
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.extend_from_slice(data);
            let r = self.parse(&buf, now, stats);
            if let Ok((used, _)) = r {
                buf.drain(..used);
            }
            self.inbuf = buf;
            r.map(|(_, n)| n)
        }
    }

    fn parse(
        &mut self,
        buf: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<(usize, usize), ConnError> {
        let mut pos = 0;
        let mut n = 0;
        while buf.len() - pos >= 4 {
            let len = i32::from_be_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"));
            if len < 0 || len as usize > FRAME_BYTES_MAX {
                return Err(ConnError::FrameTooLarge(len as i64));
            }
            let len = len as usize;
            if buf.len() - pos - 4 < len {
                break;
            }
            self.on_frame(&buf[pos + 4..pos + 4 + len], now, stats)?;
            pos += 4 + len;
            n += 1;
        }
        if n > 0 {
            self.last_progress = now;
        }
        Ok((pos, n))
    }

    fn on_frame(&mut self, frame: &[u8], now: Instant, stats: &mut Stats) -> Result<(), ConnError> {
        let mut r = Reader::new(frame);
        if self.state == State::Handshake {
            let resp = ConnectResponse::decode(&mut r)?;
            if resp.session_id == 0 {
                return Err(ConnError::SessionRefused);
            }
            self.session_id = resp.session_id;
            self.start_init(now);
            return Ok(());
        }
        let h = ReplyHeader::decode(&mut r)?;
        if h.xid == xid::NOTIFICATION {
            return self.on_event(&mut r, now, stats);
        }
        let p = self
            .pending
            .pop_front()
            .ok_or(ConnError::Unsolicited(h.xid))?;
        if p.xid != h.xid {
            return Err(ConnError::XidMismatch {
                expected: p.xid,
                got: h.xid,
            });
        }
        match p.what {
            Counted::Op(kind) => {
                let mut err = h.err;
                if err == 0 {
                    if kind.is_create() {
                        if let Some(path) = r.ustring()? {
                            if self.owned.len() < OWNED_NODES_MAX {
                                self.owned.push_back(path.to_string());
                            }
                        }
                    } else if kind == OpKind::Multi {
                        err = multi_error(&mut r)?;
                    }
                }
                if p.slot != NO_SLOT {
                    let slot = p.slot as usize;
                    self.watch_reply_pending[slot] = false;
                    if self.watch_fired_at[slot].is_none() {
                        self.watch_free.push(p.slot); // its event came first
                    }
                }
                stats.record(kind, p.start, now, err);
            }
            Counted::Init => {
                if h.err != 0 && h.err != ERR_NODE_EXISTS {
                    return Err(ConnError::Setup {
                        path: format!("{}{}-*", self.w.watch_prefix, self.id),
                        code: h.err,
                    });
                }
                self.init_left -= 1;
                if self.init_left == 0 {
                    self.state = State::Running;
                }
            }
            Counted::Close => self.state = State::Closed,
        }
        Ok(())
    }

    /// After the handshake: create this connection's ephemeral watch nodes, if the
    /// mix watches; otherwise start the workload at once.
    fn start_init(&mut self, now: Instant) {
        let slots = self.watch_fired_at.len();
        if slots == 0 {
            self.state = State::Running;
            return;
        }
        self.state = State::Init;
        for slot in 0..slots as u32 {
            let (at, x) = self.header(op::CREATE);
            self.put_path(KeyRef::Watch(slot));
            self.out.put_buffer(&self.w.value);
            put_open_acl(&mut self.out);
            self.out.put_i32(OpKind::CreateEph.create_flags());
            end_frame(&mut self.out, at);
            self.push(Counted::Init, x, now);
        }
        self.init_left = slots;
        if let Some(p) = &mut self.pacer {
            p.next_due = p.next_due.max(now);
        }
    }

    fn on_event(
        &mut self,
        r: &mut Reader<'_>,
        now: Instant,
        stats: &mut Stats,
    ) -> Result<(), ConnError> {
        let ev_type = r.i32()?;
        let _state = r.i32()?;
        let path = r.ustring()?.unwrap_or("");
        if ev_type != EVENT_NODE_DATA_CHANGED {
            return Ok(());
        }
        let Some(slot) = path
            .rsplit_once('-')
            .and_then(|(_, s)| s.parse::<usize>().ok())
        else {
            return Ok(());
        };
        if let Some(fired) = self.watch_fired_at.get_mut(slot).and_then(Option::take) {
            stats.record(OpKind::WatchEvent, fired, now, 0);
            if !self.watch_reply_pending[slot] {
                // The firing setData was answered before its event arrived.
                self.events_after_reply += 1;
                stats.events_after_reply += 1;
                self.watch_free.push(slot as u32);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum KeyRef {
    Key(usize),
    Watch(u32),
}

/// End of the length-prefixed frame that starts at `at` in `out` (which holds only
/// whole frames this connection encoded; clamped to `out` all the same).
fn frame_end_at(out: &[u8], at: usize) -> usize {
    let Some(prefix) = out.get(at..at + 4) else {
        return out.len();
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    (at + 4 + len).min(out.len())
}

/// `[{perms: ALL, world:anyone}]`.
fn put_open_acl(out: &mut Vec<u8>) {
    out.put_i32(1);
    out.put_i32(corral::proto::perms::ALL);
    out.put_str("world");
    out.put_str("anyone");
}

/// Walks a multi reply; returns the first failing op's error code, or 0.
fn multi_error(r: &mut Reader<'_>) -> Result<i32, DecodeError> {
    let mut first = 0;
    loop {
        let t = r.i32()?;
        let done = r.bool()?;
        let err = r.i32()?;
        if done {
            return Ok(first);
        }
        if t == op::ERROR {
            let code = r.i32()?;
            if first == 0 && code != 0 && code != -2 {
                first = code;
            }
            let _ = err;
        } else {
            // Only setData is sent inside a multi: its result is a Stat.
            for _ in 0..corral::proto::Stat::WIRE_LEN {
                r.bool()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_conn(outstanding: usize) -> (Conn, Stats) {
        let now = Instant::now();
        let w = Arc::new(Workload {
            mix: Mix::read_ratio(100).unwrap(),
            keys: Arc::new((0..10).map(|i| format!("/k/{i:03}")).collect()),
            value: Arc::new(vec![b'x'; 100]),
            node_prefix: "/n/".into(),
            watch_prefix: "/w/".into(),
            multi_ops: 1,
            outstanding,
            session_timeout_ms: 30_000,
            rate_per_conn: None,
            requests_per_conn: None,
        });
        let mut c = Conn::new(0, w, 1, now);
        let mut stats = Stats::new(now, now + Duration::from_secs(60));
        let hs = c.output().len();
        c.advance_output(hs);
        assert_eq!(c.frames_written(), 1, "the handshake is one frame");
        let mut reply = Vec::new();
        let at = begin_frame(&mut reply);
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 30_000,
            session_id: 7,
            passwd: vec![0; 16],
            read_only: Some(false),
        }
        .encode(&mut reply);
        end_frame(&mut reply, at);
        c.on_bytes(&reply, now, &mut stats).unwrap();
        assert_eq!(c.state(), State::Running);
        (c, stats)
    }

    #[test]
    fn one_frame_at_a_time_hands_out_exactly_one_request_per_write() {
        let (mut c, _) = running_conn(8);
        assert_eq!(c.fill(Instant::now()), 8);
        let mut writes = 0;
        while !c.output().is_empty() {
            let chunk = c.output_one_frame();
            let len = u32::from_be_bytes(chunk[..4].try_into().unwrap()) as usize;
            assert_eq!(chunk.len(), 4 + len, "exactly one whole frame");
            let n = chunk.len();
            c.advance_output(n);
            writes += 1;
        }
        assert_eq!(writes, 8);
        assert_eq!(c.frames_written(), 1 + 8);
    }

    #[test]
    fn a_short_write_leaves_the_rest_of_that_frame_only() {
        let (mut c, _) = running_conn(3);
        c.fill(Instant::now());
        let first = c.output_one_frame().len();
        c.advance_output(3);
        assert_eq!(c.output_one_frame().len(), first - 3);
        assert_eq!(c.frames_written(), 1);
        c.advance_output(first - 3);
        assert_eq!(c.frames_written(), 2);
        assert_eq!(
            c.output_one_frame().len(),
            first,
            "same-sized getData frames"
        );
    }

    #[test]
    fn a_coalesced_write_counts_every_frame_it_completes() {
        let (mut c, _) = running_conn(4);
        c.fill(Instant::now());
        let one = c.output_one_frame().len();
        // One and a half frames, then the rest.
        c.advance_output(one + one / 2);
        assert_eq!(c.frames_written(), 1 + 1);
        assert_eq!(c.output_one_frame().len(), one - one / 2);
        let rest = c.output().len();
        c.advance_output(rest);
        assert_eq!(c.frames_written(), 1 + 4);
        assert!(c.output().is_empty());
    }
}
