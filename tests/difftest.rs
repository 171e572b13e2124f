//! Differential test: seeded random operation sequences run in lockstep against
//! Apache ZooKeeper (the reference, from the Debian package) and against corral,
//! and every reply, Stat and watch event is compared.
//!
//! Runs on the test thread with blocking raw wire clients (`common::RawClient`).
//! Data flow per step: the generator (seeded `SmallRng`, steered by the paths the
//! reference has created so far) makes one [`Action`]; each side executes it on
//! one of its sessions, then sends a `sync` barrier on every session so that all
//! watch events the action caused have arrived; replies and events are normalised
//! (zxids by order of first appearance, times checked for plausibility then
//! zeroed, session ids by registration order, lists sorted) and compared. The
//! first mismatch of a seed stops that seed and is reported with the seed, the op
//! index, the op and both sides' observations; the test fails at the end.
//!
//! Env vars: `DIFFTEST_SEED=n` replays one seed; `DIFFTEST_OPS=n` sets the ops per
//! seed; `DIFFTEST_TRACE=1` prints every op and both outcomes; `DIFFTEST_CONTEXT=n` lists n ops before a mismatch; `DIFFTEST_SKIP=RemoveWatches,WhoAmI` leaves those kinds of op out (to
//! look past a known mismatch); `DIFFTEST_KEEP_GOING=1` goes on after a mismatch (up to
//! [`KEEP_GOING_MISMATCHES_MAX`] per seed); `DIFFTEST_SELF=1` runs the reference against a second reference (a check
//! that the harness itself is deterministic; needs two JVMs).

mod common;

use std::fmt::Write as _;

use common::{digest_id, Decoded, Normalizer, RawClient, Server};
use corral::proto::{
    perms, Acl, CreateKind, CreateRequest, OpResult, Request, Response, SetWatches,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Seeds run by default.
const DEFAULT_SEEDS: &[u64] = &[1, 2, 3, 4, 5];
/// Operations per seed by default.
const DEFAULT_OPS_PER_SEED: usize = 400;
/// Sessions per seed; sessions 1 and 2 authenticate as user1 / user2, session 3
/// as the super user.
const SESSIONS_PER_SEED: usize = 4;
/// Session timeout asked for by every raw session.
const SESSION_TIMEOUT_MS: i32 = 20_000;

/// With `DIFFTEST_KEEP_GOING` set, a seed goes on after a mismatch (the
/// reference steers the generator, so the op sequence stays the same) and
/// reports up to this many.
const KEEP_GOING_MISMATCHES_MAX: usize = 20;

/// Config both servers get: TTL nodes need the extended types; a super user.
fn cfg_extra() -> String {
    format!(
        "extendedTypesEnabled=true\nzookeeper.DigestAuthenticationProvider.superDigest={}\n",
        digest_id("super", "superpw")
    )
}

fn user(session: usize) -> Option<(String, String)> {
    match session {
        0 => None,
        3 => Some(("super".into(), "superpw".into())),
        n => Some((format!("user{n}"), format!("pw{n}"))),
    }
}

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Action {
    /// Send `req` on session `session`.
    Req { session: usize, req: Request },
    /// Close session `session`, open a new one in its slot and authenticate it again.
    Reconnect { session: usize },
    /// setWatches / setWatches2 on session `session`, relative to zxid 0 (every
    /// watched node that exists counts as changed) or to the zxid the session
    /// last saw on that server (so only later changes fire).
    SetWatches {
        session: usize,
        from_zero: bool,
        watches: SetWatches,
    },
}

/// What one side saw for one action, normalised.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    /// The reply: decoded body, or the error code; `Closed` when the server hung up.
    outcome: Outcome,
    /// Watch events per session slot: (type, state, path).
    events: Vec<Vec<(i32, i32, String)>>,
    /// Reply-header zxid relations that hold on the reference: a successful
    /// create2/setData reply carries the zxid of its own txn.
    header_zxid_matches_txn: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok(Response),
    /// Error code and the error reply's body bytes (usually none).
    Err(i32, Vec<u8>),
    /// A reply that does not decode for the request's opcode.
    Bad(String),
    Closed(String),
}

/// The one place corral knowingly answers differently from the reference 3.8.0:
/// its `WatchManager.containsWatcher(path, watcher)` (tag release-3.8.0-1) returns
/// true when *any* connection watches `path` in that table, not only the caller, so
/// checkWatches says OK for a watch the caller never set. corral answers for the
/// caller's own watches (what later releases do). Only that pair is accepted: the
/// reference OK and corral NoWatcher, on checkWatches, with the same events; a watch
/// corral lost would still show in the compared event streams.
fn known_divergence(action: &Action, reference: &Observed, corral: &Observed) -> bool {
    matches!(
        action,
        Action::Req {
            req: Request::CheckWatches { .. },
            ..
        }
    ) && matches!(reference.outcome, Outcome::Ok(Response::Empty))
        && matches!(corral.outcome, Outcome::Err(-121, _))
        && reference.events == corral.events
}

/// One server and the sessions the test holds on it.
struct Side {
    name: String,
    addr: String,
    sessions: Vec<RawClient>,
    norm: Normalizer,
    sessions_opened: i64,
}

impl Side {
    fn new(name: &str, addr: String) -> Side {
        Side {
            name: name.to_string(),
            addr,
            sessions: Vec::new(),
            norm: Normalizer::default(),
            sessions_opened: 0,
        }
    }

    fn open_session(&mut self, slot: usize) -> Result<RawClient, String> {
        let mut c = RawClient::handshake(
            &self.addr,
            &corral::proto::ConnectRequest::new_session(SESSION_TIMEOUT_MS),
        )
        .map_err(|e| format!("{}: handshake failed: {e}", self.name))?
        .0;
        if c.session_id == 0 {
            return Err(format!("{}: server refused a new session", self.name));
        }
        self.sessions_opened += 1;
        self.norm
            .register_session(c.session_id, self.sessions_opened);
        if let Some((u, p)) = user(slot) {
            let err = c.add_digest_auth(&u, &p);
            if err != 0 {
                return Err(format!("{}: digest auth answered {err}", self.name));
            }
        }
        Ok(c)
    }

    fn start_seed(&mut self) -> Result<(), String> {
        self.close_all();
        for slot in 0..SESSIONS_PER_SEED {
            let c = self.open_session(slot)?;
            self.sessions.push(c);
        }
        Ok(())
    }

    fn close_all(&mut self) {
        for mut c in self.sessions.drain(..) {
            let _ = c.close_session();
        }
    }

    fn exec(&mut self, action: &Action) -> Observed {
        let mut header_zxid_matches_txn = None;
        let outcome = match action {
            Action::Req { session, req } => {
                let c = &mut self.sessions[*session];
                match c.call(req) {
                    Ok(reply) => {
                        let decoded = common::decode_reply(req.opcode(), &reply);
                        match &decoded {
                            Decoded::Ok(Response::Create2 { stat, .. })
                                if matches!(req, Request::Create(_)) =>
                            {
                                header_zxid_matches_txn = Some(reply.zxid == stat.czxid)
                            }
                            Decoded::Ok(Response::Stat(stat))
                                if matches!(req, Request::SetData { .. }) =>
                            {
                                header_zxid_matches_txn = Some(reply.zxid == stat.mzxid)
                            }
                            _ => {}
                        }
                        match decoded {
                            Decoded::Ok(resp) => Outcome::Ok(self.norm.response(&resp)),
                            Decoded::Err(code, body) => Outcome::Err(code, body),
                            Decoded::Bad(why) => Outcome::Bad(why),
                        }
                    }
                    Err(end) => Outcome::Closed(format!("{end:?}")),
                }
            }
            Action::SetWatches {
                session,
                from_zero,
                watches,
            } => {
                let c = &mut self.sessions[*session];
                let mut sw = watches.clone();
                sw.relative_zxid = if *from_zero { 0 } else { c.last_zxid };
                let req = Request::SetWatches(sw);
                match c.call(&req) {
                    Ok(reply) => match common::decode_reply(req.opcode(), &reply) {
                        Decoded::Ok(resp) => Outcome::Ok(self.norm.response(&resp)),
                        Decoded::Err(code, body) => Outcome::Err(code, body),
                        Decoded::Bad(why) => Outcome::Bad(why),
                    },
                    Err(end) => Outcome::Closed(format!("{end:?}")),
                }
            }
            Action::Reconnect { session } => {
                let slot = *session;
                let out = match self.sessions[slot].close_session() {
                    Ok(reply) => {
                        if reply.err == 0 {
                            Outcome::Ok(Response::Empty)
                        } else {
                            Outcome::Err(reply.err, reply.body)
                        }
                    }
                    Err(end) => Outcome::Closed(format!("{end:?}")),
                };
                match self.open_session(slot) {
                    Ok(c) => self.sessions[slot] = c,
                    Err(e) => return self.broken(e),
                }
                out
            }
        };
        // Barrier: a sync on every session; every event the action caused is
        // delivered before the sync's reply on that session's connection.
        let mut events = Vec::new();
        for (i, c) in self.sessions.iter_mut().enumerate() {
            if let Err(end) = c.call(&Request::Sync { path: "/".into() }) {
                let msg = format!("session {i} lost at the sync barrier: {end:?}");
                return self.broken(msg);
            }
            let mut evs: Vec<(i32, i32, String)> = c
                .events
                .drain(..)
                .map(|e| (e.event_type, e.state, e.path))
                .collect();
            if matches!(action, Action::Reconnect { .. }) {
                // The reference deletes a closed session's ephemerals in hash-set
                // order: only the set of events is defined.
                evs.sort();
            }
            events.push(evs);
        }
        Observed {
            outcome,
            events,
            header_zxid_matches_txn,
        }
    }

    fn broken(&mut self, msg: String) -> Observed {
        Observed {
            outcome: Outcome::Closed(msg),
            events: Vec::new(),
            header_zxid_matches_txn: None,
        }
    }
}

/// Generates actions; steered by the reference's results (paths that exist).
struct Gen {
    rng: SmallRng,
    /// Decides which data is the null buffer. A stream of its own, so each seed's
    /// operations are the ones it made before null data joined the generator.
    null_rng: SmallRng,
    base: String,
    known: Vec<String>,
}

/// Share of generated znode data sent as the null buffer (length −1).
const NULL_DATA_SHARE: f64 = 0.15;
/// Mixed into the seed for the stream that picks null data.
const NULL_DATA_STREAM: u64 = 0x6e75_6c6c_6461_7461;

/// Ops listed before a mismatch (`DIFFTEST_CONTEXT` overrides).
const DEFAULT_CONTEXT_OPS: usize = 8;

/// Draws per op before DIFFTEST_SKIP is declared to exclude everything.
const SKIP_REDRAWS_MAX: usize = 10_000;

/// The name DIFFTEST_SKIP matches: the request variant, `Reconnect` or `SetWatches`.
fn action_kind(a: &Action) -> &'static str {
    match a {
        Action::Reconnect { .. } => "Reconnect",
        Action::SetWatches { .. } => "SetWatches",
        Action::Req { req, .. } => match req {
            Request::Create(_) => "Create",
            Request::Delete { .. } => "Delete",
            Request::DeleteContainer { .. } => "DeleteContainer",
            Request::Exists { .. } => "Exists",
            Request::GetData { .. } => "GetData",
            Request::SetData { .. } => "SetData",
            Request::GetAcl { .. } => "GetAcl",
            Request::SetAcl { .. } => "SetAcl",
            Request::GetChildren { .. } => "GetChildren",
            Request::GetChildren2 { .. } => "GetChildren2",
            Request::Sync { .. } => "Sync",
            Request::Ping => "Ping",
            Request::Multi(_) => "Multi",
            Request::MultiRead(_) => "MultiRead",
            Request::CheckWatches { .. } => "CheckWatches",
            Request::RemoveWatches { .. } => "RemoveWatches",
            Request::GetEphemerals { .. } => "GetEphemerals",
            Request::GetAllChildrenNumber { .. } => "GetAllChildrenNumber",
            Request::AddWatch { .. } => "AddWatch",
            Request::WhoAmI => "WhoAmI",
            _ => "Other",
        },
    }
}

/// Bound on the paths the generator remembers.
const KNOWN_PATHS_MAX: usize = 200;

const NAMES: &[&str] = &["a", "b", "c", "d", "e"];

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: SmallRng::seed_from_u64(seed),
            null_rng: SmallRng::seed_from_u64(seed ^ NULL_DATA_STREAM),
            base: format!("/s{seed}"),
            known: Vec::new(),
        }
    }

    fn name(&mut self) -> &'static str {
        NAMES[self.rng.gen_range(0..NAMES.len())]
    }

    fn path(&mut self) -> String {
        let roll = self.rng.gen_range(0..20);
        if roll < 9 && !self.known.is_empty() {
            let i = self.rng.gen_range(0..self.known.len());
            return self.known[i].clone();
        }
        if roll < 13 && !self.known.is_empty() {
            let i = self.rng.gen_range(0..self.known.len());
            let n = self.name();
            return format!("{}/{n}", self.known[i]);
        }
        if roll < 15 {
            return self.base.clone();
        }
        if roll == 15 {
            // Invalid or odd paths: the reference's answers differ by operation.
            let odd = [
                "",
                "noslash",
                "/",
                "/trailing/",
                "/s//x",
                "/s/./x",
                "/s/..",
                "/zookeeper",
            ];
            let i = self.rng.gen_range(0..odd.len());
            let p = odd[i];
            return p.replace("/s", &self.base);
        }
        let depth = self.rng.gen_range(1..=3);
        let mut p = self.base.clone();
        for _ in 0..depth {
            let n = self.name();
            p.push('/');
            p.push_str(n);
        }
        p
    }

    /// Znode data: sometimes the null buffer (length −1), which must read back
    /// null, sometimes empty, mostly a few bytes.
    fn data(&mut self) -> Option<Vec<u8>> {
        let n = match self.rng.gen_range(0..10) {
            0 => 0,
            1 => self.rng.gen_range(100..2000),
            _ => self.rng.gen_range(1..16),
        };
        let bytes = (0..n).map(|_| self.rng.gen()).collect();
        (!self.null_rng.gen_bool(NULL_DATA_SHARE)).then_some(bytes)
    }

    fn version(&mut self) -> i32 {
        match self.rng.gen_range(0..10) {
            0..=4 => -1,
            5..=6 => 0,
            7..=8 => 1,
            _ => self.rng.gen_range(2..5),
        }
    }

    fn acl(&mut self) -> Vec<Acl> {
        let (u1, u2) = (digest_id("user1", "pw1"), digest_id("user2", "pw2"));
        match self.rng.gen_range(0..100) {
            0..=49 => Acl::open(),
            50..=59 => vec![Acl::new(perms::READ, "world", "anyone")],
            60..=69 => vec![
                Acl::new(perms::ALL, "digest", &u1),
                Acl::new(perms::READ, "world", "anyone"),
            ],
            70..=77 => vec![Acl::new(perms::ALL, "auth", "")],
            78..=82 => vec![Acl::new(perms::ALL, "digest", &u2)],
            83..=87 => vec![Acl::new(
                perms::CREATE | perms::DELETE | perms::READ,
                "world",
                "anyone",
            )],
            88..=89 => vec![Acl::new(perms::ALL, "bogus", "x")],
            90 => Vec::new(),
            91..=93 => vec![Acl::new(perms::ALL, "ip", "127.0.0.1")],
            94..=95 => vec![Acl::new(perms::ALL, "ip", "10.0.0.0/8")],
            96 => vec![Acl::new(perms::ALL, "digest", "malformed")],
            _ => vec![
                Acl::new(perms::ALL, "world", "anyone"),
                Acl::new(perms::ALL, "world", "anyone"),
            ],
        }
    }

    fn create(&mut self, in_multi: bool) -> Request {
        let flags = match self.rng.gen_range(0..100) {
            0..=39 => 0,
            40..=49 => 1,
            50..=59 => 2,
            60..=69 => 3,
            70..=79 => 4,
            80..=87 => 5,
            88..=95 => 6,
            96..=97 => 7,
            _ => -1,
        };
        let kind = match (flags, self.rng.gen_range(0..10)) {
            (_, 0) if !in_multi => CreateKind::Ttl,
            (_, 1) => CreateKind::Container,
            (4, r) if r < 8 => CreateKind::Container,
            (5 | 6, r) if r < 8 && !in_multi => CreateKind::Ttl,
            (_, r) if r < 6 => CreateKind::Create2,
            _ => CreateKind::Create,
        };
        let ttl = if kind == CreateKind::Ttl {
            match self.rng.gen_range(0..10) {
                // An invalid ttl only with TTL flags: createTTL with other flags and a
                // bad ttl passes the reference's checks and then kills its SyncThread
                // ("ttl must be positive", ZooKeeper 3.8.0), so it has no answer to
                // compare against. bad_input.rs checks corral survives it.
                0 if flags == 5 || flags == 6 => 0,
                1 if flags == 5 || flags == 6 => -5,
                _ => 600_000,
            }
        } else {
            -1
        };
        // Mostly under a parent that exists, so most creates succeed.
        let mut path = match self.rng.gen_range(0..10) {
            0..=5 if !self.known.is_empty() => {
                let i = self.rng.gen_range(0..self.known.len());
                let n = self.name();
                format!("{}/{n}", self.known[i])
            }
            0..=7 => {
                let n = self.name();
                format!("{}/{n}", self.base)
            }
            _ => self.path(),
        };
        if (flags == 2 || flags == 3 || flags == 6) && self.rng.gen_bool(0.5) {
            path.push_str("/q-");
        }
        let acl = if in_multi && self.rng.gen_bool(0.7) {
            Acl::open()
        } else {
            self.acl()
        };
        Request::Create(CreateRequest {
            kind,
            path,
            data: self.data(),
            acl,
            flags,
            ttl,
        })
    }

    fn watch_type(&mut self) -> i32 {
        match self.rng.gen_range(0..12) {
            0 => 0,
            1 => 9,
            n => 1 + (n % 5),
        }
    }

    fn multi_op(&mut self) -> Request {
        match self.rng.gen_range(0..100) {
            0..=39 => self.create(true),
            40..=59 => Request::Delete {
                path: self.path(),
                version: self.version(),
            },
            60..=79 => Request::SetData {
                path: self.path(),
                data: self.data(),
                version: self.version(),
            },
            80..=97 => Request::Check {
                path: self.path(),
                version: self.version(),
            },
            _ => Request::GetData {
                path: self.path(),
                watch: false,
            },
        }
    }

    /// Like [`Gen::action`], but draws again while the action's kind (the
    /// request variant's name, `Reconnect` or `SetWatches`) is in `skip`.
    fn action_not_in(&mut self, skip: &[String]) -> Action {
        for _ in 0..SKIP_REDRAWS_MAX {
            let a = self.action();
            if !skip.iter().any(|k| k == action_kind(&a)) {
                return a;
            }
        }
        panic!("DIFFTEST_SKIP={skip:?} leaves nothing to generate");
    }

    fn action(&mut self) -> Action {
        let session = self.rng.gen_range(0..SESSIONS_PER_SEED);
        let roll = self.rng.gen_range(0..112);
        let req = match roll {
            0..=24 => self.create(false),
            25..=31 => Request::Delete {
                path: self.path(),
                version: self.version(),
            },
            32..=41 => Request::SetData {
                path: self.path(),
                data: self.data(),
                version: self.version(),
            },
            42..=47 => Request::Exists {
                path: self.path(),
                watch: self.rng.gen_bool(0.7),
            },
            48..=53 => Request::GetData {
                path: self.path(),
                watch: self.rng.gen_bool(0.7),
            },
            54..=58 => Request::GetChildren {
                path: self.path(),
                watch: self.rng.gen_bool(0.7),
            },
            59..=62 => Request::GetChildren2 {
                path: self.path(),
                watch: self.rng.gen_bool(0.7),
            },
            63..=65 => Request::GetAcl { path: self.path() },
            66..=70 => Request::SetAcl {
                path: self.path(),
                acl: self.acl(),
                version: self.version(),
            },
            71..=80 => {
                let n = self.rng.gen_range(1..=4);
                Request::Multi((0..n).map(|_| self.multi_op()).collect())
            }
            81..=84 => {
                let n = self.rng.gen_range(1..=3);
                Request::MultiRead(
                    (0..n)
                        .map(|_| match self.rng.gen_range(0..20) {
                            0..=9 => Request::GetData {
                                path: self.path(),
                                watch: false,
                            },
                            10..=18 => Request::GetChildren {
                                path: self.path(),
                                watch: false,
                            },
                            _ => Request::Check {
                                path: self.path(),
                                version: -1,
                            },
                        })
                        .collect(),
                )
            }
            85..=88 => Request::AddWatch {
                path: self.path(),
                mode: if self.rng.gen_range(0..20) == 0 {
                    2
                } else {
                    self.rng.gen_range(0..2)
                },
            },
            89..=91 => Request::RemoveWatches {
                path: self.path(),
                watcher_type: self.watch_type(),
            },
            92..=93 => Request::CheckWatches {
                path: self.path(),
                watcher_type: self.watch_type(),
            },
            94..=95 => Request::GetEphemerals {
                prefix: match self.rng.gen_range(0..3) {
                    0 => self.base.clone(),
                    1 => format!("{}/a", self.base),
                    _ => self.path(),
                },
            },
            96..=97 => Request::GetAllChildrenNumber { path: self.path() },
            98 => Request::Sync { path: self.path() },
            99 => Request::WhoAmI,
            100 => Request::DeleteContainer { path: self.path() },
            101..=102 => return Action::Reconnect { session },
            103 => Request::Ping,
            104..=105 => {
                let paths = |g: &mut Gen| -> Vec<String> {
                    let n = g.rng.gen_range(0..3);
                    (0..n).map(|_| g.path()).collect()
                };
                let mut watches = SetWatches {
                    data: paths(self),
                    exist: paths(self),
                    child: paths(self),
                    ..Default::default()
                };
                if self.rng.gen_bool(0.5) {
                    watches.persistent = paths(self);
                    watches.persistent_recursive = paths(self);
                }
                return Action::SetWatches {
                    session,
                    from_zero: self.rng.gen_bool(0.5),
                    watches,
                };
            }
            _ => Request::Exists {
                path: self.path(),
                watch: true,
            },
        };
        Action::Req { session, req }
    }

    /// Learns which paths exist from the reference's result.
    fn learn(&mut self, action: &Action, outcome: &Outcome) {
        let Action::Req { req, .. } = action else {
            return;
        };
        let Outcome::Ok(resp) = outcome else { return };
        self.learn_one(req, resp);
    }

    fn learn_one(&mut self, req: &Request, resp: &Response) {
        match (req, resp) {
            (_, Response::Create { path }) | (_, Response::Create2 { path, .. })
                if !self.known.contains(path) && self.known.len() < KNOWN_PATHS_MAX =>
            {
                self.known.push(path.clone());
            }
            (Request::Delete { path, .. }, Response::Empty) => self.known.retain(|p| p != path),
            (Request::Multi(ops), Response::Multi(results)) => {
                for (o, r) in ops.iter().zip(results) {
                    if let OpResult::Ok(_, resp) = r {
                        self.learn_one(o, resp);
                    }
                }
            }
            _ => {}
        }
    }
}

fn describe(o: &Observed) -> String {
    let mut s = format!("    reply: {:?}\n", o.outcome);
    for (i, evs) in o.events.iter().enumerate() {
        if !evs.is_empty() {
            let _ = writeln!(s, "    events on session {i}: {evs:?}");
        }
    }
    if let Some(b) = o.header_zxid_matches_txn {
        let _ = writeln!(s, "    reply zxid equals the txn's zxid: {b}");
    }
    s
}

/// Runs one seed; returns the mismatch report, if any.
fn run_seed(seed: u64, ops: usize, a: &mut Side, b: &mut Side) -> Result<usize, String> {
    a.start_seed()?;
    b.start_seed()?;
    let mut gen = Gen::new(seed);
    let setup = Action::Req {
        session: 0,
        req: Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: gen.base.clone(),
            data: Some(b"root".to_vec()),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }),
    };
    let mut steps = vec![setup];
    let (mut n_ok, mut n_err, mut n_events) = (0usize, 0usize, 0usize);
    let mut codes: std::collections::BTreeMap<i32, usize> = Default::default();
    let keep_going = std::env::var_os("DIFFTEST_KEEP_GOING").is_some();
    let trace = std::env::var_os("DIFFTEST_TRACE").is_some();
    let context: usize = std::env::var("DIFFTEST_CONTEXT")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_CONTEXT_OPS);
    let skip: Vec<String> = std::env::var("DIFFTEST_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut mismatches: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ops + 1 {
        let action = if i < steps.len() {
            steps[i].clone()
        } else {
            let act = gen.action_not_in(&skip);
            steps.push(act.clone());
            act
        };
        let oa = a.exec(&action);
        let ob = b.exec(&action);
        if trace {
            let short = |o: &Observed| {
                let mut s = common::short(&o.outcome);
                for (k, evs) in o.events.iter().enumerate() {
                    if !evs.is_empty() {
                        let _ = write!(s, " ev[{k}]={evs:?}");
                    }
                }
                s
            };
            eprintln!(
                "#{i} {}\n    {}: {}\n    {}: {}",
                common::short(&action),
                a.name,
                short(&oa),
                b.name,
                short(&ob)
            );
        }
        if oa != ob && !known_divergence(&action, &oa, &ob) {
            let mut msg = format!(
                "MISMATCH seed={seed} op#{i} (replay: DIFFTEST_SEED={seed})\n  op: {action:?}\n  {}:\n{}  {}:\n{}",
                a.name,
                describe(&oa),
                b.name,
                describe(&ob)
            );
            if oa.outcome == ob.outcome && oa.events != ob.events {
                let mut sa: Vec<_> = oa.events.iter().flatten().collect();
                let mut sb: Vec<_> = ob.events.iter().flatten().collect();
                sa.sort();
                sb.sort();
                if sa == sb {
                    msg.push_str("  (same events, different order or session)\n");
                }
            }
            msg.push_str("  previous ops:\n");
            for (j, s) in steps
                .iter()
                .enumerate()
                .take(i)
                .skip(i.saturating_sub(context))
            {
                let _ = writeln!(msg, "    #{j}: {s:?}");
            }
            mismatches.push(msg);
            let broken = matches!(oa.outcome, Outcome::Closed(_))
                || matches!(ob.outcome, Outcome::Closed(_));
            if !keep_going || broken || mismatches.len() >= KEEP_GOING_MISMATCHES_MAX {
                a.close_all();
                b.close_all();
                return Err(mismatches.join("\n"));
            }
        }
        if matches!(oa.outcome, Outcome::Closed(_)) {
            a.close_all();
            b.close_all();
            let mut msg = format!(
                "seed={seed} op#{i}: both servers dropped the connection on {action:?}: {oa:?}\n  previous ops:\n"
            );
            for (j, s) in steps
                .iter()
                .enumerate()
                .take(i)
                .skip(i.saturating_sub(context))
            {
                let _ = writeln!(msg, "    #{j}: {s:?}");
            }
            return Err(msg);
        }
        match oa.outcome {
            Outcome::Ok(_) => n_ok += 1,
            Outcome::Err(c, _) => {
                n_err += 1;
                *codes.entry(c).or_default() += 1;
            }
            _ => n_err += 1,
        }
        n_events += oa.events.iter().map(Vec::len).sum::<usize>();
        gen.learn(&action, &oa.outcome);
        i += 1;
    }
    a.close_all();
    b.close_all();
    if !mismatches.is_empty() {
        return Err(mismatches.join("\n"));
    }
    eprintln!(
        "seed {seed}: {n_ok} ok replies, {n_err} error replies {codes:?}, {n_events} watch events, {} paths exist",
        gen.known.len()
    );
    Ok(ops)
}

fn seeds_and_ops() -> (Vec<u64>, usize) {
    let seeds = match std::env::var("DIFFTEST_SEED") {
        Ok(s) => vec![s.trim().parse().expect("DIFFTEST_SEED must be an integer")],
        Err(_) => DEFAULT_SEEDS.to_vec(),
    };
    let ops = std::env::var("DIFFTEST_OPS")
        .ok()
        .map(|s| s.trim().parse().expect("DIFFTEST_OPS must be an integer"))
        .unwrap_or(DEFAULT_OPS_PER_SEED);
    (seeds, ops)
}

fn run_all(a: &mut Side, b: &mut Side) {
    let (seeds, ops) = seeds_and_ops();
    let mut failures = Vec::new();
    for seed in seeds {
        let started = std::time::Instant::now();
        match run_seed(seed, ops, a, b) {
            Ok(n) => eprintln!(
                "seed {seed}: {n} ops agree ({} ms)",
                started.elapsed().as_millis()
            ),
            Err(msg) => {
                eprintln!("{msg}");
                failures.push(msg);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} seed(s) disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn differential_corral_vs_reference() {
    if !common::require_reference() {
        return;
    }
    let reference = Server::reference(&cfg_extra());
    if std::env::var_os("DIFFTEST_SELF").is_some() {
        // Harness self-check: a second reference in place of corral.
        let other = Server::reference_second(&cfg_extra());
        let mut a = Side::new("reference", reference.addr());
        let mut b = Side::new("reference#2", other.addr());
        run_all(&mut a, &mut b);
        return;
    }
    let corral = Server::corral(&cfg_extra());
    let mut a = Side::new("reference", reference.addr());
    let mut b = Side::new("corral", corral.addr());
    run_all(&mut a, &mut b);
}

/// The generator is a pure function of the seed and the reference's answers:
/// the same seed makes the same first actions.
#[test]
fn generator_is_deterministic() {
    let mut g1 = Gen::new(7);
    let mut g2 = Gen::new(7);
    for _ in 0..200 {
        assert_eq!(format!("{:?}", g1.action()), format!("{:?}", g2.action()));
    }
}
