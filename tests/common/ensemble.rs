//! A multi-process ensemble on 127.0.0.1 for integration tests: members 1..=n,
//! each Apache ZooKeeper 3.8.0 (the Debian package) or corral, each with its own
//! client, quorum and election port and its own member dir (zoo.cfg, data/myid,
//! data/, datalog/, server.log) under one temp dir. Every member's zoo.cfg lists
//! the same `server.N=127.0.0.1:Q:E:participant|observer;127.0.0.1:C` lines.
//!
//! Runs on the test thread (blocking std IO, no executor); [`WriteLoad`] adds one
//! writer thread. Flow: [`Ensemble::start_cfg`] writes the configs, launches the
//! processes through `common::Server::launch` and waits (bounded polls of the
//! `srvr` four-letter word) until every member serves and they agree on one
//! leader. Tests then drive members (kill / stop / restart / pause / resume),
//! query them (`srvr`, `mntr`), write through [`RawClient`] sessions, and compare
//! replicas with [`Ensemble::dump_tree`] (a `sync` then a pipelined walk) and
//! [`Ensemble::assert_same_tree`]. When a test fails, dropping the ensemble
//! prints every member's config and log tail and keeps the files (`ENSEMBLE_KEEP=1`
//! keeps them for a passing run too).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corral::proto::{
    Acl, ConnectRequest, CreateKind, CreateMode, CreateRequest, ErrorCode, Request, Response, Stat,
};

use super::{
    corral_command, decode_reply, file_tail, four_letter_word, free_port, reference_command,
    reference_serial, require_reference, Decoded, Kind, RawClient, Reply, Server,
    LOG_TAIL_LINES_MAX,
};

/// The members' `tickTime`: short, so elections and session moves are quick.
pub const ENSEMBLE_TICK_MS: u64 = 200;
/// `initLimit` in ticks (2 s at 200 ms: a JVM syncing on a busy 2-core box needs it).
pub const INIT_LIMIT_TICKS: u32 = 10;
/// `syncLimit` in ticks.
pub const SYNC_LIMIT_TICKS: u32 = 5;
/// Session timeout the harness's own clients ask for.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
/// Pause between two polls of a member (srvr, connect attempts).
pub const POLL_MS: u64 = 100;
/// Times [`Ensemble::lead_by`] stops a leader that is not the one a test wants.
pub const LEADER_HANDOVER_ATTEMPTS_MAX: usize = 3;
/// How long a member gets to start serving (polls included: one `srvr` may
/// take its whole read timeout when the member accepts but does not answer).
pub const SERVING_WAIT: Duration = Duration::from_secs(90);
/// How long the live members get to agree on one leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(60);

/// Attempts until `limit` from now has passed: `for _ in within(SERVING_WAIT)`.
/// A bound in time, not in polls, as a poll's own time varies (a `srvr` a
/// member does not answer takes 2 s).
pub fn within(limit: Duration) -> impl Iterator<Item = ()> {
    let deadline = Instant::now() + limit;
    std::iter::from_fn(move || (Instant::now() < deadline).then_some(()))
}
/// Connection attempts [`Ensemble::connect`] makes before giving up.
pub const CONNECT_ATTEMPTS_MAX: u32 = 100;
/// How long [`Ensemble::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE_MS: u64 = 10_000;
/// Largest tree [`Ensemble::dump_tree`] walks, in znodes.
pub const DUMP_NODES_COUNT_MAX: usize = 200_000;
/// Paths whose getData + getChildren go out in one pipelined batch.
pub const DUMP_BATCH_COUNT_MAX: usize = 128;
/// Whole-dump attempts when the connection drops midway.
pub const DUMP_ATTEMPTS_MAX: u32 = 100;
/// Requests [`pipeline`] keeps in flight at once.
pub const PIPELINE_WINDOW_COUNT_MAX: usize = 256;
/// Differences listed when two replicas disagree.
pub const TREE_DIFFS_SHOWN_MAX: usize = 20;
/// Attempts [`WriteLoad`] makes per write (connection losses and elections included).
pub const LOAD_ATTEMPTS_MAX: u32 = 600;
/// Polls [`WriteLoad::wait_acked`] makes.
pub const LOAD_WAIT_POLLS_MAX: u32 = 1_200;

/// Set (not `0`) to keep every ensemble's dir after the test, passing or not.
pub const KEEP_ENV: &str = "ENSEMBLE_KEEP";
/// Polls (of POLL_MS) a failure report waits for the reference members' JVM
/// thread dumps (SIGQUIT) to reach their logs.
const THREAD_DUMP_POLLS_MAX: u32 = 30;
/// Lines of one JVM thread dump a failure report prints.
const THREAD_DUMP_LINES_MAX: usize = 1_500;
/// How long gdb may take to print a corral member's stacks for a failure report (s).
const GDB_TIMEOUT_S: u64 = 30;
/// How a HotSpot thread dump begins and where its thread list ends.
const THREAD_DUMP_START: &str = "Full thread dump";
const THREAD_DUMP_END: &str = "JNI global refs";

/// Three reference members.
pub const THREE_REFERENCES: [Kind; 3] = [Kind::Reference; 3];
/// Three corral members.
pub const THREE_CORRALS: [Kind; 3] = [Kind::Corral; 3];
/// Corral followers of a ZooKeeper leader (sid 3 leads).
pub const ZOOKEEPER_LEADS: [Kind; 3] = [Kind::Corral, Kind::Corral, Kind::Reference];
/// ZooKeeper followers of a corral leader (sid 3 leads).
pub const CORRAL_LEADS: [Kind; 3] = [Kind::Reference, Kind::Reference, Kind::Corral];

/// One `#[test]` per ensemble kind for a scenario `fn(kinds: [Kind; 3])`.
#[macro_export]
macro_rules! on_every_ensemble {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn zookeeper() {
                super::$scenario($crate::common::ensemble::THREE_REFERENCES);
            }
            #[test]
            fn corral() {
                super::$scenario($crate::common::ensemble::THREE_CORRALS);
            }
            #[test]
            fn zookeeper_leads_corral() {
                super::$scenario($crate::common::ensemble::ZOOKEEPER_LEADS);
            }
            #[test]
            fn corral_leads_zookeeper() {
                super::$scenario($crate::common::ensemble::CORRAL_LEADS);
            }
        }
    };
}

/// The subtree each server keeps for itself (config, quotas): left out of dumps.
const SYSTEM_SUBTREE: &str = "/zookeeper";

/// How a member takes part in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Observer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Observer => "observer",
        }
    }
}

/// What `srvr` says a serving member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    Observer,
    Standalone,
}

impl Mode {
    /// The `Mode: …` line of a `srvr` answer; `None` for "not currently serving".
    pub fn from_srvr(text: &str) -> Option<Mode> {
        let mode = text.lines().find_map(|l| l.strip_prefix("Mode: "))?;
        match mode.trim() {
            "leader" => Some(Mode::Leader),
            "follower" => Some(Mode::Follower),
            "observer" => Some(Mode::Observer),
            "standalone" => Some(Mode::Standalone),
            _ => None,
        }
    }
}

/// One member's ports on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub client: u16,
    pub quorum: u16,
    pub election: u16,
}

/// A replica's tree: path → (data, `None` for null data, Stat), `/zookeeper` left out.
pub type Tree = BTreeMap<String, (Option<Vec<u8>>, Stat)>;

struct Member {
    sid: u64,
    kind: Kind,
    role: Role,
    ports: Ports,
    home: PathBuf,
    cfg_path: PathBuf,
    process: Option<Server>,
    paused: bool,
}

/// A running ensemble; every process is killed when it is dropped.
pub struct Ensemble {
    members: Vec<Member>,
    /// The lines every member's zoo.cfg got beside the harness's own.
    cfg_extra: String,
    /// Dropped after every member's process is killed, before the dir goes
    /// (e.g. tmpfs mounts under member dirs).
    guards: Vec<Box<dyn Guard>>,
    root: Option<tempfile::TempDir>,
    /// When this ensemble got the machine (the lock), for wall-time reports.
    since: Instant,
    /// Where member `from` reaches member `to` (quorum, election port), when
    /// not at `to`'s own ports.
    route: Option<PeerRoute>,
    /// Members run with the sync-stall shim preloaded (`preload_sync_stall`).
    sync_stall: bool,
    /// JVM system properties (`-Dkey=value`) of every reference member, for
    /// settings the reference reads only there (`readonlymode.enabled`).
    reference_sysprops: Vec<String>,
    /// A failure report took the reference members' thread dumps already (a
    /// panic message's report, then the one `Drop` prints): once is enough.
    thread_dumps_taken: AtomicBool,
    _serial: MutexGuard<'static, ()>,
}

/// `(from, to) → (quorum port, election port)` on 127.0.0.1.
type PeerRoute = Box<dyn Fn(u64, u64) -> (u16, u16)>;

impl Ensemble {
    /// The skip rule for these member kinds: true when they can run here (a
    /// reference member needs java and the Debian jars; see `require_reference`).
    pub fn can_start(kinds: &[Kind]) -> bool {
        !kinds.contains(&Kind::Reference) || require_reference()
    }

    /// Starts one participant per kind (sids 1..=n) and waits for a leader.
    pub fn start(kinds: &[Kind]) -> Ensemble {
        let members: Vec<(Kind, Role)> = kinds.iter().map(|&k| (k, Role::Participant)).collect();
        Self::start_with(&members)
    }

    /// Starts members with explicit roles (sids 1..=n) and waits for a leader.
    pub fn start_with(members: &[(Kind, Role)]) -> Ensemble {
        Self::start_cfg(members, "")
    }

    /// As [`start_with`](Self::start_with), with `cfg_extra` lines added to every
    /// member's zoo.cfg (unknown keys become `zookeeper.*` properties in the reference).
    pub fn start_cfg(members: &[(Kind, Role)], cfg_extra: &str) -> Ensemble {
        let mut ens = Self::configure(members, cfg_extra);
        ens.launch_all();
        ens
    }

    /// Launches every configured member and waits until they serve and agree
    /// on one leader.
    pub fn launch_all(&mut self) {
        let ens = self;
        eprintln!("[ensemble] {}", ens.describe());
        // Highest sid first, each listening on its election port before the next
        // starts: on empty data dirs the highest sid wins the first election, so
        // the member given the highest sid is the one that leads (a test puts the
        // kind it wants leading there: a ZooKeeper leader of corral followers, or
        // the reverse).
        let highest = (ens.sids().into_iter())
            .filter(|s| ens.role(*s) == Role::Participant)
            .max();
        for sid in ens.sids().into_iter().rev() {
            ens.launch_member(sid);
            if Some(sid) == highest {
                // Its port listens before its election starts (a JVM can take a
                // while more): the others must find it looking, or two of them
                // may elect each other first.
                ens.wait_looking(sid);
            }
        }
        for sid in ens.sids() {
            ens.wait_serving(sid);
        }
        let leader = ens.leader().unwrap_or_else(|| {
            panic!("the ensemble started but its members do not agree on one leader")
        });
        eprintln!("[ensemble] serving; leader {leader}");
    }

    /// Waits (bounded) until member `sid` has started looking for a leader, by its
    /// log.
    pub fn wait_looking(&self, sid: u64) {
        let mark = match self.kind(sid) {
            Kind::Corral => "LOOKING: proposing",
            Kind::Reference => "QuorumPeer - LOOKING",
        };
        for _ in within(LEADER_WAIT) {
            if self.log(sid).contains(mark) {
                return;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        panic!("member {sid} never started looking\n{}", self.report());
    }

    /// Writes every member's dirs and zoo.cfg (sids 1..=n, free ports) and starts
    /// none: a test plays some members itself on their ports and launches the
    /// others with [`launch_member`](Self::launch_member).
    pub fn configure(members: &[(Kind, Role)], cfg_extra: &str) -> Ensemble {
        assert!(!members.is_empty(), "an ensemble needs members");
        let serial = reference_serial();
        let root = tempfile::Builder::new()
            .prefix("corral-ens-")
            .tempdir()
            .unwrap();
        let ports = distinct_ports(members.len());
        let mut ens = Ensemble {
            members: Vec::new(),
            cfg_extra: cfg_extra.to_string(),
            guards: Vec::new(),
            root: None,
            since: Instant::now(),
            route: None,
            sync_stall: false,
            reference_sysprops: Vec::new(),
            thread_dumps_taken: AtomicBool::new(false),
            _serial: serial,
        };
        for (i, (&(kind, role), &p)) in members.iter().zip(&ports).enumerate() {
            let sid = i as u64 + 1;
            let home = root.path().join(format!("m{sid}"));
            ens.members.push(Member {
                sid,
                kind,
                role,
                ports: p,
                cfg_path: home.join("zoo.cfg"),
                home,
                process: None,
                paused: false,
            });
        }
        ens.root = Some(root);
        ens.write_configs();
        ens
    }

    /// Rewrites every member's zoo.cfg so that member `from` reaches member `to`
    /// at `127.0.0.1:(quorum, election)` = `route(from, to)` (e.g. a fault proxy
    /// for that ordered pair) instead of `to`'s own ports; each member's own line
    /// keeps its real ports. Call before launching (reconfig is off, so members
    /// with differing server lines are fine).
    pub fn route_peers(&mut self, route: impl Fn(u64, u64) -> (u16, u16) + 'static) {
        self.route = Some(Box::new(route));
        self.write_configs();
    }

    /// Reference members launched from now on get these JVM system properties.
    pub fn set_reference_sysprops(&mut self, sysprops: &[&str]) {
        self.reference_sysprops = sysprops.iter().map(|p| p.to_string()).collect();
    }

    /// Starts a configured member and waits (bounded) until it listens on its
    /// election port; it serves only once it has a quorum.
    pub fn launch_member(&mut self, sid: u64) {
        self.launch(sid);
        self.wait_election_port(sid);
    }

    fn write_configs(&self) {
        for m in &self.members {
            let servers = self.server_lines(m.sid);
            std::fs::create_dir_all(m.home.join("data")).unwrap();
            std::fs::create_dir_all(m.home.join("datalog")).unwrap();
            std::fs::write(m.home.join("data/myid"), format!("{}\n", m.sid)).unwrap();
            std::fs::write(&m.cfg_path, member_cfg(m, &servers, &self.cfg_extra)).unwrap();
        }
    }

    /// The `server.N` lines of member `me`'s config: every member's real ports,
    /// or the routed ones when [`route_peers`](Self::route_peers) set a route.
    fn server_lines(&self, me: u64) -> String {
        let mut out = String::new();
        for m in &self.members {
            let spec = match &self.route {
                Some(route) if m.sid != me => {
                    let (quorum, election) = route(me, m.sid);
                    format!(
                        "127.0.0.1:{quorum}:{election}:{};127.0.0.1:{}",
                        m.role.as_str(),
                        m.ports.client
                    )
                }
                _ => self.server_spec(m.sid),
            };
            out.push_str(&format!("server.{}={spec}\n", m.sid));
        }
        out
    }

    /// A member's `server.N` value as the harness writes it:
    /// `127.0.0.1:quorum:election:role;127.0.0.1:client` (also what a reconfig
    /// joining it names).
    pub fn server_spec(&self, sid: u64) -> String {
        let m = self.member(sid);
        format!(
            "127.0.0.1:{}:{}:{};127.0.0.1:{}",
            m.ports.quorum,
            m.ports.election,
            m.role.as_str(),
            m.ports.client
        )
    }

    /// Rewrites a member's zoo.cfg to list only the members `listed` (for a
    /// member started outside the others' config, or an ensemble that does not
    /// know it yet). Before the member is launched.
    pub fn list_in_config(&self, sid: u64, listed: &[u64]) {
        let mut servers = String::new();
        for &other in listed {
            servers.push_str(&format!("server.{other}={}\n", self.server_spec(other)));
        }
        let m = self.member(sid);
        std::fs::write(&m.cfg_path, member_cfg(m, &servers, &self.cfg_extra)).unwrap();
    }

    /// Launches these members (highest sid first), waits until each serves and the
    /// live members agree on a leader; returns it.
    pub fn launch_and_wait(&mut self, sids: &[u64]) -> u64 {
        let mut order = sids.to_vec();
        order.sort_unstable();
        for &sid in order.iter().rev() {
            self.launch_member(sid);
        }
        for &sid in &order {
            self.wait_serving(sid);
        }
        let leader = self.wait_leader();
        eprintln!("[ensemble] {order:?} serving; leader {leader}");
        leader
    }

    /// One line per member: sid, kind, role, ports; and the ensemble's dir.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!(
                "{}={} {} client {} quorum {} election {}; ",
                m.sid,
                m.kind,
                m.role.as_str(),
                m.ports.client,
                m.ports.quorum,
                m.ports.election
            ));
        }
        if let Some(r) = &self.root {
            out.push_str(&format!("files in {}", r.path().display()));
        }
        out
    }

    fn member(&self, sid: u64) -> &Member {
        self.members
            .iter()
            .find(|m| m.sid == sid)
            .unwrap_or_else(|| panic!("the ensemble has no member {sid}"))
    }

    fn member_mut(&mut self, sid: u64) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.sid == sid)
            .unwrap_or_else(|| panic!("the ensemble has no member {sid}"))
    }

    /// Keeps `guard` until the ensemble is dropped: it goes after every
    /// member's process is killed and before the ensemble's dir is removed.
    pub fn keep_until_dropped(&mut self, guard: Box<dyn Guard>) {
        self.guards.push(guard);
    }

    /// Time since this ensemble took the one-at-a-time lock (start-up included,
    /// waiting for other tests' ensembles excluded): for wall-time reports.
    pub fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// Every member's sid, ascending.
    pub fn sids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.sid).collect()
    }

    pub fn kind(&self, sid: u64) -> Kind {
        self.member(sid).kind
    }

    pub fn role(&self, sid: u64) -> Role {
        self.member(sid).role
    }

    pub fn ports(&self, sid: u64) -> Ports {
        self.member(sid).ports
    }

    /// `127.0.0.1:<client port>` of a member.
    pub fn client_addr(&self, sid: u64) -> String {
        format!("127.0.0.1:{}", self.member(sid).ports.client)
    }

    /// Every member launched from now on runs with the sync-stall shim preloaded
    /// (`super::stall`), stalling on its own [`sync_stall_file`](Self::sync_stall_file).
    pub fn preload_sync_stall(&mut self) {
        self.sync_stall = true;
    }

    /// The file whose existence stalls member `sid`'s fsync and fdatasync calls
    /// (when the shim is preloaded).
    pub fn sync_stall_file(&self, sid: u64) -> Option<PathBuf> {
        self.sync_stall
            .then(|| self.member(sid).home.join("stall-sync"))
    }

    /// The member's dir (zoo.cfg, data/, datalog/, server.log).
    pub fn member_dir(&self, sid: u64) -> PathBuf {
        self.member(sid).home.clone()
    }

    /// The member's zoo.cfg as written.
    pub fn config(&self, sid: u64) -> String {
        std::fs::read_to_string(&self.member(sid).cfg_path).unwrap_or_default()
    }

    /// The last [`LOG_TAIL_LINES_MAX`] lines of the member's output (all its runs).
    pub fn log_tail(&self, sid: u64) -> String {
        file_tail(
            &self.member(sid).home.join("server.log"),
            LOG_TAIL_LINES_MAX,
        )
    }

    /// The member's whole output so far (all its runs).
    pub fn log(&self, sid: u64) -> String {
        std::fs::read_to_string(self.member(sid).home.join("server.log")).unwrap_or_default()
    }

    /// True while the member's process runs (paused or not).
    pub fn is_running(&self, sid: u64) -> bool {
        self.member(sid)
            .process
            .as_ref()
            .is_some_and(|p| p.is_running())
    }

    /// Running and not paused: a member that can answer.
    pub fn is_live(&self, sid: u64) -> bool {
        self.is_running(sid) && !self.member(sid).paused
    }

    /// The sids of live members.
    pub fn live_sids(&self) -> Vec<u64> {
        self.sids()
            .into_iter()
            .filter(|&s| self.is_live(s))
            .collect()
    }

    // ----- member control -----

    fn launch(&mut self, sid: u64) {
        let m = self.member(sid);
        assert!(m.process.is_none(), "member {sid} is already running");
        append_log_marker(&m.home, &format!("starting member {sid} ({})", m.kind));
        let mut cmd = match m.kind {
            Kind::Reference => reference_command(&m.cfg_path, &self.reference_sysprops),
            Kind::Corral => corral_command(&m.cfg_path),
        };
        if let Some(file) = self.sync_stall_file(sid) {
            cmd.envs(super::stall::preload_env(&file, None));
        }
        let server = Server::launch(m.kind, cmd, m.ports.client, &m.home);
        let m = self.member_mut(sid);
        m.process = Some(server);
        m.paused = false;
    }

    /// Waits (bounded) until the member's election port accepts a connection.
    fn wait_election_port(&self, sid: u64) {
        let addr = format!("127.0.0.1:{}", self.member(sid).ports.election);
        let attempts = super::SERVER_READY_TIMEOUT_MS / POLL_MS;
        for _ in 0..attempts {
            let sock: std::net::SocketAddr = addr.parse().unwrap();
            if std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                return;
            }
            if !self.is_running(sid) {
                panic!("member {sid} exited while starting\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        panic!(
            "member {sid} never listened on its election port {addr}\n{}",
            self.report()
        );
    }

    /// SIGKILL, reaped; its files stay for a restart.
    pub fn kill(&mut self, sid: u64) {
        let m = self.member_mut(sid);
        if let Some(p) = m.process.take() {
            p.stop();
        }
        m.paused = false;
        append_log_marker(
            &self.member(sid).home,
            &format!("member {sid} killed (SIGKILL)"),
        );
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE_MS`]; reaped.
    pub fn stop(&mut self, sid: u64) {
        let m = self.member_mut(sid);
        if let Some(p) = m.process.take() {
            p.terminate(Duration::from_millis(STOP_GRACE_MS));
        }
        m.paused = false;
        append_log_marker(&self.member(sid).home, &format!("member {sid} stopped"));
    }

    /// SIGTERM, then SIGKILL after `grace`; reaped. The process's exit status
    /// (`None` if it could not be read).
    pub fn terminate(&mut self, sid: u64, grace: Duration) -> Option<std::process::ExitStatus> {
        let m = self.member_mut(sid);
        let p = m.process.take()?;
        p.terminate(grace);
        m.paused = false;
        append_log_marker(&self.member(sid).home, &format!("member {sid} terminated"));
        p.exit_status()
    }

    /// Starts the member again on the same dirs, config and ports (stopping it
    /// first if it runs). Does not wait: call [`wait_serving`](Self::wait_serving).
    pub fn restart(&mut self, sid: u64) {
        if self.member(sid).process.is_some() {
            self.stop(sid);
        }
        self.launch(sid);
    }

    /// Replaces a member by one of another kind on the same ports and sid, with a
    /// fresh, empty data dir (only `myid`), as an operator swaps one server of an
    /// ensemble for another implementation. The old process is stopped (SIGTERM);
    /// the new one is launched (not waited for).
    pub fn replace(&mut self, sid: u64, kind: Kind) {
        if self.member(sid).process.is_some() {
            self.stop(sid);
        }
        let home = self.member(sid).home.clone();
        for dir in ["data", "datalog"] {
            let _ = std::fs::remove_dir_all(home.join(dir));
            std::fs::create_dir_all(home.join(dir)).unwrap();
        }
        std::fs::write(home.join("data/myid"), format!("{sid}\n")).unwrap();
        let old = self.member(sid).kind;
        append_log_marker(&home, &format!("member {sid}: {old} replaced by {kind}"));
        self.member_mut(sid).kind = kind;
        self.launch(sid);
    }

    /// The member's process id, while it runs.
    pub fn pid(&self, sid: u64) -> Option<u32> {
        self.member(sid).process.as_ref().and_then(|p| p.pid())
    }

    /// SIGSTOP: the process stays, answers nothing, its sockets stay open.
    pub fn pause(&mut self, sid: u64) {
        let sent = self
            .member(sid)
            .process
            .as_ref()
            .is_some_and(|p| p.signal(libc::SIGSTOP));
        assert!(sent, "pause: member {sid} is not running");
        self.member_mut(sid).paused = true;
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self, sid: u64) {
        let sent = self
            .member(sid)
            .process
            .as_ref()
            .is_some_and(|p| p.signal(libc::SIGCONT));
        assert!(sent, "resume: member {sid} is not running");
        self.member_mut(sid).paused = false;
    }

    // ----- four-letter-word queries -----

    /// What `srvr` says the member is; `None` when it is down, paused, not
    /// serving or not answering.
    pub fn mode(&self, sid: u64) -> Option<Mode> {
        if !self.is_live(sid) {
            return None;
        }
        let text = four_letter_word(&self.client_addr(sid), "srvr").ok()?;
        Mode::from_srvr(&text)
    }

    /// Waits (bounded) until the member serves; panics if its process exits or
    /// it never does.
    pub fn wait_serving(&self, sid: u64) -> Mode {
        for _ in within(SERVING_WAIT) {
            if let Some(mode) = self.mode(sid) {
                return mode;
            }
            let m = self.member(sid);
            let exited = m.process.as_ref().and_then(|p| p.exit_status());
            match (&m.process, exited) {
                (None, _) => panic!("member {sid} is not running"),
                (_, Some(status)) => panic!("member {sid} ({}) exited: {status}", m.kind),
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        panic!("member {sid} did not start serving within {SERVING_WAIT:?}")
    }

    /// Waits (bounded) until exactly one live member says leader and every other
    /// live member says follower or observer; `None` if that never happens.
    pub fn leader(&self) -> Option<u64> {
        for _ in within(LEADER_WAIT) {
            if let Some(sid) = self.agreed_leader() {
                return Some(sid);
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        None
    }

    /// [`leader`](Self::leader), panicking when there is none.
    /// Makes member `want` (the highest live sid) the leader, for a test that needs
    /// a given kind leading. On empty data dirs the highest sid normally wins the
    /// first election (the harness starts it first), but a slow start (a JVM's) can
    /// let the others elect without it, as the reference itself would; stopping
    /// their leader then hands it over (equal logs: the highest sid wins). Bounded
    /// by `LEADER_HANDOVER_ATTEMPTS_MAX`.
    pub fn lead_by(&mut self, want: u64) -> u64 {
        let mut leader = self.wait_leader();
        for _ in 0..LEADER_HANDOVER_ATTEMPTS_MAX {
            if leader == want {
                break;
            }
            eprintln!("[ensemble] {leader} leads instead of {want}: restarting it");
            self.kill(leader);
            self.wait_leader();
            self.restart(leader);
            self.wait_serving(leader);
            leader = self.wait_leader();
        }
        assert_eq!(
            leader,
            want,
            "member {want} was meant to lead\n{}",
            self.report()
        );
        leader
    }

    pub fn wait_leader(&self) -> u64 {
        self.leader()
            .unwrap_or_else(|| panic!("no agreed leader among live members {:?}", self.live_sids()))
    }

    /// One look at the live members: the leader if they agree on one now.
    fn agreed_leader(&self) -> Option<u64> {
        let mut leader = None;
        for sid in self.live_sids() {
            match self.mode(sid)? {
                Mode::Leader if leader.is_none() => leader = Some(sid),
                Mode::Follower | Mode::Observer => {}
                _ => return None,
            }
        }
        leader
    }

    /// `mntr` as a map (`zk_…` → value); empty when the member does not answer.
    pub fn mntr(&self, sid: u64) -> BTreeMap<String, String> {
        if !self.is_live(sid) {
            return BTreeMap::new();
        }
        let text = four_letter_word(&self.client_addr(sid), "mntr").unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    // ----- clients and data checks -----

    /// A new session on the member (bounded retries while it comes up).
    pub fn connect(&self, sid: u64) -> RawClient {
        let addr = self.client_addr(sid);
        let mut last = String::new();
        for _ in 0..CONNECT_ATTEMPTS_MAX {
            match open_session(&addr) {
                Ok(c) => return c,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        panic!("no session on member {sid} after {CONNECT_ATTEMPTS_MAX} attempts: {last}")
    }

    /// The member's tree after a `sync`, `/zookeeper` left out (bounded retries
    /// when the connection drops midway).
    pub fn dump_tree(&self, sid: u64) -> Tree {
        self.dump_tree_as(sid, None)
    }

    /// [`dump_tree`](Self::dump_tree) by a session authenticated with digest
    /// `user:password` first (the super user reads nodes whose ACL keeps
    /// everyone else out).
    pub fn dump_tree_as(&self, sid: u64, digest: Option<&str>) -> Tree {
        let addr = self.client_addr(sid);
        let mut last = String::new();
        for _ in 0..DUMP_ATTEMPTS_MAX {
            match dump_tree_at(&addr, digest) {
                Ok(t) => return t,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        panic!("cannot dump member {sid}'s tree: {last}")
    }

    /// Dumps every serving member and panics, listing the differences, unless
    /// all hold the same paths with the same data and the same Stats. Returns
    /// the (common) tree.
    pub fn assert_same_tree(&self) -> Tree {
        let serving: Vec<u64> = self
            .live_sids()
            .into_iter()
            .filter(|&s| self.mode(s).is_some())
            .collect();
        assert!(!serving.is_empty(), "no member is serving");
        let first = serving[0];
        let reference = self.dump_tree(first);
        let mut report = Vec::new();
        for &sid in &serving[1..] {
            let other = self.dump_tree(sid);
            report.extend(tree_differences(first, &reference, sid, &other));
        }
        if !report.is_empty() {
            let shown = report.len().min(TREE_DIFFS_SHOWN_MAX);
            panic!(
                "members {serving:?} disagree ({} differences, first {shown}):\n  {}",
                report.len(),
                report[..shown].join("\n  ")
            );
        }
        eprintln!(
            "[ensemble] members {serving:?} hold the same {} znodes",
            reference.len()
        );
        reference
    }

    /// Every member's description, config and log tail (what a failure prints),
    /// and each running reference member's threads: where a request is stuck.
    pub fn report(&self) -> String {
        let tails: Vec<String> = self.members.iter().map(|m| self.log_tail(m.sid)).collect();
        let dumps = self.thread_dumps();
        let mut out = format!("ensemble: {}\n", self.describe());
        for (m, tail) in self.members.iter().zip(tails) {
            let state = match (&m.process, m.paused) {
                (None, _) => "down".to_string(),
                (Some(_), true) => "paused".to_string(),
                (Some(p), false) => match p.exit_status() {
                    Some(s) => format!("exited ({s})"),
                    None => "running".to_string(),
                },
            };
            out.push_str(&format!(
                "===== member {} ({}, {}, {state}) config {} =====\n{}\n",
                m.sid,
                m.kind,
                m.role.as_str(),
                m.cfg_path.display(),
                self.config(m.sid)
            ));
            out.push_str(&format!(
                "----- member {} log, last {LOG_TAIL_LINES_MAX} lines -----\n{}\n----- end of member {} log -----\n",
                m.sid,
                tail,
                m.sid
            ));
            if let Some(d) = dumps.iter().find(|(sid, _)| *sid == m.sid) {
                let how = match m.kind {
                    Kind::Reference => "JVM threads (SIGQUIT)",
                    Kind::Corral => "threads (gdb)",
                };
                out.push_str(&format!(
                    "----- member {} {how} -----\n{}\n----- end of member {} threads -----\n",
                    m.sid, d.1, m.sid
                ));
            }
        }
        out
    }

    /// Every member's threads, for the first failure report only.
    fn thread_dumps(&self) -> Vec<(u64, String)> {
        if self.thread_dumps_taken.swap(true, Ordering::Relaxed) {
            return Vec::new();
        }
        let mut dumps = self.jvm_thread_dumps();
        dumps.extend(self.corral_stacks());
        dumps
    }

    /// The threads' stacks of every running, unpaused corral member that does not
    /// serve (a start that never finishes, a stuck core), from `gdb -batch` when
    /// it is installed; bounded by GDB_TIMEOUT_S and THREAD_DUMP_LINES_MAX.
    fn corral_stacks(&self) -> Vec<(u64, String)> {
        (self.members.iter())
            .filter(|m| m.kind == Kind::Corral && !m.paused && self.mode(m.sid).is_none())
            .filter_map(|m| {
                let pid = m.process.as_ref()?.pid()?;
                let out = std::process::Command::new("timeout")
                    .arg(GDB_TIMEOUT_S.to_string())
                    .args(["gdb", "-batch", "-p", &pid.to_string()])
                    .args(["-ex", "thread apply all bt 16"])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout);
                Some((m.sid, compact_stacks(&text)))
            })
            .collect()
    }

    /// A thread dump of every running, unpaused reference member: SIGQUIT makes
    /// the JVM print one to its output (the member's log) and go on.
    fn jvm_thread_dumps(&self) -> Vec<(u64, String)> {
        let asked: Vec<(u64, usize)> = (self.members.iter())
            .filter(|m| m.kind == Kind::Reference && !m.paused)
            .filter(|m| (m.process.as_ref()).is_some_and(|p| p.exit_status().is_none()))
            .filter_map(|m| {
                let before = self.log(m.sid).len();
                let p = m.process.as_ref()?;
                p.signal(libc::SIGQUIT).then_some((m.sid, before))
            })
            .collect();
        let dump_of = |sid: u64, before: usize| {
            let log = self.log(sid);
            let new = log.get(before..)?;
            let start = new.find(THREAD_DUMP_START)?;
            let dump = &new[start..];
            let end = dump.find(THREAD_DUMP_END)?;
            let lines: Vec<&str> = dump[..end].lines().collect();
            Some(lines[..lines.len().min(THREAD_DUMP_LINES_MAX)].join("\n"))
        };
        for _ in 0..THREAD_DUMP_POLLS_MAX {
            if asked.iter().all(|&(sid, b)| dump_of(sid, b).is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        (asked.into_iter())
            .map(|(sid, b)| {
                let d = dump_of(sid, b).unwrap_or_else(|| "(no thread dump in the log)".into());
                (sid, d)
            })
            .collect()
    }
}

/// gdb's `thread apply all bt` as one line per thread, innermost frame first:
/// `Thread 12 "corral-shard-1": syscall < futex_wait < ... `, function names
/// without their generic arguments (a failure report is read in an excerpt).
pub fn compact_stacks(gdb: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in gdb.lines() {
        if let Some(rest) = line.strip_prefix("Thread ") {
            let number = rest.split_whitespace().next().unwrap_or("?");
            let name = rest.split('"').nth(1).unwrap_or("");
            out.push(format!("Thread {number} \"{name}\":"));
        } else if let (Some(frame), Some(last)) = (line.strip_prefix('#'), out.last_mut()) {
            let frame = frame.split_once(' ').map_or("", |(_, f)| f.trim_start());
            let frame = frame.split_once(" in ").map_or(frame, |(addr, f)| {
                if addr.starts_with("0x") {
                    f
                } else {
                    frame
                }
            });
            let name = frame.split(" (").next().unwrap_or(frame);
            let mut plain = String::new();
            let mut depth = 0u32;
            for c in name.chars() {
                match c {
                    '<' => depth += 1,
                    '>' => depth = depth.saturating_sub(1),
                    _ if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            let sep = if last.ends_with(':') { " " } else { " < " };
            last.push_str(sep);
            last.push_str(&plain);
        }
    }
    out.truncate(THREAD_DUMP_LINES_MAX);
    out.join("\n")
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.report());
        }
        for m in &mut self.members {
            drop(m.process.take()); // SIGKILL (a paused process too) and reap
        }
        // ENSEMBLE_KEEP=1 keeps the member dirs (configs, data, logs) of a passing
        // run too, for post-mortems of slow or flaky runs. The guards save what
        // their drop would take along (a tmpfs's logs and snapshots).
        if panicking || std::env::var_os(KEEP_ENV).is_some_and(|v| v != "0") {
            if let Some(root) = self.root.take() {
                for g in &self.guards {
                    g.keep_contents();
                }
                eprintln!("[ensemble files kept in {}]", root.keep().display());
            }
        }
    }
}

/// Something an ensemble holds until it is dropped, after its members' processes
/// are killed (e.g. a tmpfs mounted under a member dir).
pub trait Guard {
    /// The ensemble's files are being kept (a failed run, or ENSEMBLE_KEEP):
    /// save what dropping this guard would lose.
    fn keep_contents(&self) {}
}

/// `3 × n` distinct free ports.
fn distinct_ports(n: usize) -> Vec<Ports> {
    let mut seen = HashSet::new();
    let mut next = || loop {
        let p = free_port();
        if seen.insert(p) {
            return p;
        }
    };
    (0..n)
        .map(|_| Ports {
            client: next(),
            quorum: next(),
            election: next(),
        })
        .collect()
}

/// One member's zoo.cfg: short ticks, every 4lw, no admin server, no reconfig,
/// never standalone (so a shrunken ensemble stays a quorum), the shared server lines.
fn member_cfg(m: &Member, servers: &str, cfg_extra: &str) -> String {
    let mut cfg = format!(
        "tickTime={ENSEMBLE_TICK_MS}\n\
         initLimit={INIT_LIMIT_TICKS}\n\
         syncLimit={SYNC_LIMIT_TICKS}\n\
         dataDir={h}/data\n\
         dataLogDir={h}/datalog\n\
         maxClientCnxns=0\n\
         minSessionTimeout=1000\n\
         maxSessionTimeout=30000\n\
         4lw.commands.whitelist=*\n\
         admin.enableServer=false\n\
         reconfigEnabled=false\n\
         standaloneEnabled=false\n",
        h = m.home.display()
    );
    if m.role == Role::Observer {
        cfg.push_str("peerType=observer\n");
    }
    if m.kind == Kind::Corral {
        cfg.push_str(super::SHARD_CORES_CFG);
    }
    for line in cfg_extra.lines() {
        cfg.push_str(line);
        cfg.push('\n');
    }
    cfg.push_str(servers);
    cfg
}

/// A line in the member's log saying what the harness did, so a post-mortem
/// shows which run said what.
fn append_log_marker(home: &Path, what: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("server.log"))
    {
        let _ = writeln!(f, "----- harness: {what} -----");
    }
}

/// Describes how two replicas differ, one line per path.
pub fn tree_differences(a_sid: u64, a: &Tree, b_sid: u64, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, (data, stat)) in a {
        match b.get(path) {
            None => out.push(format!("{path}: on member {a_sid}, missing on {b_sid}")),
            Some((d, s)) if d != data || s != stat => out.push(format!(
                "{path}: member {a_sid} has {} {stat:?}, member {b_sid} has {} {s:?}",
                show_data(data),
                show_data(d)
            )),
            Some(_) => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{path}: on member {b_sid}, missing on {a_sid}"));
    }
    out
}

/// Znode data for a message: the text in quotes, or `null`.
fn show_data(d: &Option<Vec<u8>>) -> String {
    match d {
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
        None => "null".into(),
    }
}

// ----- client helpers (blocking, on RawClient) -----

/// Why a call got no successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The connection closed or timed out (how, in words): the request may or
    /// may not have been applied.
    Lost(String),
    /// The server answered with this error code.
    Code(i32),
    /// A reply that does not decode, or answers another request.
    Bad(String),
}

impl CallError {
    pub fn is(&self, code: ErrorCode) -> bool {
        *self == CallError::Code(code.code())
    }
}

/// Sends `req` and waits for its decoded answer.
pub fn call(c: &mut RawClient, req: &Request) -> Result<Response, CallError> {
    let x = (c.send_request(req)).map_err(|e| CallError::Lost(format!("send: {e}")))?;
    let reply = recv_answer(c, x)?;
    decoded(decode_reply(req.opcode(), &reply))
}

/// The reply to xid `x` (`RawClient::wait_reply`: pings while the server is
/// silent); a reply to another xid is `Bad`.
fn recv_answer(c: &mut RawClient, x: i32) -> Result<Reply, CallError> {
    match c.wait_reply() {
        Ok(r) if r.xid == x => Ok(r),
        Ok(r) => Err(CallError::Bad(format!(
            "reply xid {} where {x} was due",
            r.xid
        ))),
        Err(e) => Err(CallError::Lost(format!("{e:?}"))),
    }
}

fn decoded(d: Decoded) -> Result<Response, CallError> {
    match d {
        Decoded::Ok(r) => Ok(r),
        Decoded::Err(code, _) => Err(CallError::Code(code)),
        Decoded::Bad(why) => Err(CallError::Bad(why)),
    }
}

/// Sends `reqs` pipelined ([`PIPELINE_WINDOW_COUNT_MAX`] in flight) and returns
/// each one's answer in order; `Err` when the connection is lost midway.
pub fn pipeline(
    c: &mut RawClient,
    reqs: &[Request],
) -> Result<Vec<Result<Response, CallError>>, CallError> {
    let mut out = Vec::with_capacity(reqs.len());
    for window in reqs.chunks(PIPELINE_WINDOW_COUNT_MAX) {
        let mut xids = Vec::with_capacity(window.len());
        for req in window {
            let sent = c.send(req);
            xids.push(sent.map_err(|e| CallError::Lost(format!("send: {e}")))?);
        }
        for (req, x) in window.iter().zip(xids) {
            let reply = recv_answer(c, x).map_err(|e| match e {
                CallError::Bad(why) => CallError::Bad(format!("{why} ({req:?})")),
                e => e,
            })?;
            out.push(decoded(decode_reply(req.opcode(), &reply)));
        }
    }
    Ok(out)
}

/// A create request (opcode create, open ACL).
pub fn create_req(path: &str, data: &[u8], mode: CreateMode) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.to_string(),
        data: Some(data.to_vec()),
        acl: Acl::open(),
        flags: mode.flags(),
        ttl: -1,
    })
}

/// A new session on `addr` (one attempt).
pub fn open_session(addr: &str) -> Result<RawClient, String> {
    let req = ConnectRequest::new_session(SESSION_TIMEOUT_MS);
    let (c, resp) = RawClient::handshake(addr, &req).map_err(|e| format!("{addr}: {e}"))?;
    if resp.session_id == 0 {
        return Err(format!("{addr} refused a new session: {resp:?}"));
    }
    Ok(c)
}

/// Moves an existing session onto `addr` (one attempt), as a client library
/// does after a connection loss: `Ok(None)` when the server says the session
/// has expired, `Err` when the server cannot be reached or closes the connection
/// (e.g. it is behind `last_zxid`, or not serving).
pub fn resume_session(
    addr: &str,
    session_id: i64,
    passwd: &[u8],
    last_zxid: i64,
) -> Result<Option<RawClient>, String> {
    let req = ConnectRequest {
        last_zxid_seen: last_zxid,
        session_id,
        passwd: passwd.to_vec(),
        ..ConnectRequest::new_session(SESSION_TIMEOUT_MS)
    };
    let (mut c, resp) = RawClient::handshake(addr, &req).map_err(|e| format!("{addr}: {e}"))?;
    if resp.session_id == 0 || resp.timeout_ms <= 0 {
        return Ok(None);
    }
    if resp.session_id != session_id {
        return Err(format!(
            "{addr} answered session {:#x} for {session_id:#x}",
            resp.session_id
        ));
    }
    c.last_zxid = last_zxid;
    Ok(Some(c))
}

/// Authenticates (digest `user:password`, when given), syncs, then walks the
/// tree breadth-first with pipelined getData + getChildren, leaving out
/// [`SYSTEM_SUBTREE`]; closes the session at the end.
pub fn dump_tree_at(addr: &str, digest: Option<&str>) -> Result<Tree, String> {
    let mut c = open_session(addr)?;
    if let Some(digest) = digest {
        let auth = Request::Auth {
            auth_type: 0,
            scheme: "digest".into(),
            auth: digest.as_bytes().to_vec(),
        };
        call(&mut c, &auth).map_err(|e| format!("auth: {e:?}"))?;
    }
    call(&mut c, &Request::Sync { path: "/".into() }).map_err(|e| format!("sync: {e:?}"))?;
    let mut tree = Tree::new();
    let mut level = vec!["/".to_string()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for batch in level.chunks(DUMP_BATCH_COUNT_MAX) {
            dump_batch(&mut c, batch, &mut tree, &mut next)?;
            if tree.len() > DUMP_NODES_COUNT_MAX {
                return Err(format!("more than {DUMP_NODES_COUNT_MAX} znodes"));
            }
        }
        level = next;
    }
    let _ = c.close_session();
    Ok(tree)
}

/// Reads one batch of paths into `tree` and queues their children in `next`.
fn dump_batch(
    c: &mut RawClient,
    batch: &[String],
    tree: &mut Tree,
    next: &mut Vec<String>,
) -> Result<(), String> {
    let reqs: Vec<Request> = batch
        .iter()
        .flat_map(|p| {
            [
                Request::GetData {
                    path: p.clone(),
                    watch: false,
                },
                Request::GetChildren {
                    path: p.clone(),
                    watch: false,
                },
            ]
        })
        .collect();
    let replies = pipeline(c, &reqs).map_err(|e| format!("walk: {e:?}"))?;
    for (path, pair) in batch.iter().zip(replies.chunks(2)) {
        match (&pair[0], &pair[1]) {
            (Ok(Response::Data { data, stat }), Ok(Response::Children(kids))) => {
                tree.insert(path.clone(), (data.clone(), *stat));
                next.extend(
                    kids.iter()
                        .map(|k| child_path(path, k))
                        .filter(|p| p != SYSTEM_SUBTREE),
                );
            }
            // Deleted while the walk ran.
            (Err(e), _) | (_, Err(e)) if e.is(ErrorCode::NoNode) => {}
            other => return Err(format!("{path}: {other:?}")),
        }
    }
    Ok(())
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

// ----- a write load that survives member failures -----

/// What a finished [`WriteLoad`] did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// (path, data) of every acknowledged create, in order.
    pub acked: Vec<(String, Vec<u8>)>,
    /// Times the writer lost its connection.
    pub connection_losses: u32,
    /// Times it had to open a new session (the first one included).
    pub sessions_opened: u32,
}

/// A thread creating `count` persistent znodes `{parent}/w-000000`… one at a
/// time through a list of members, moving its session to the next member on a
/// connection loss (a new session if it expired) and retrying the write; a
/// retried create answered NodeExists landed the first time and counts as
/// acknowledged.
pub struct WriteLoad {
    acked: Arc<AtomicUsize>,
    handle: Option<JoinHandle<Result<LoadOutcome, String>>>,
}

impl WriteLoad {
    pub fn start(addrs: Vec<String>, parent: &str, count: usize) -> WriteLoad {
        assert!(!addrs.is_empty(), "a write load needs a member to write to");
        let acked = Arc::new(AtomicUsize::new(0));
        let progress = acked.clone();
        let parent = parent.to_string();
        let handle = std::thread::spawn(move || {
            let mut w = Writer {
                addrs,
                next_addr: 0,
                client: None,
                session: None,
                outcome: LoadOutcome::default(),
            };
            w.write(&parent, b"", true)?;
            for i in 0..count {
                let path = format!("{parent}/w-{i:06}");
                let data = format!("load-{i}").into_bytes();
                w.write(&path, &data, false)?;
                w.outcome.acked.push((path, data));
                progress.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(mut c) = w.client.take() {
                let _ = c.close_session();
            }
            Ok(w.outcome)
        });
        WriteLoad {
            acked,
            handle: Some(handle),
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` writes are acknowledged or the writer ends.
    pub fn wait_acked(&self, n: usize) -> bool {
        for _ in 0..LOAD_WAIT_POLLS_MAX {
            if self.acked() >= n {
                return true;
            }
            if self.handle.as_ref().is_none_or(|h| h.is_finished()) {
                return self.acked() >= n;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS / 4));
        }
        false
    }

    /// Waits for the writer to finish every write; panics with its error.
    pub fn finish(mut self) -> LoadOutcome {
        let handle = self.handle.take().expect("finished once");
        match handle.join() {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => panic!("write load failed: {e}"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// The writer thread's state: where it writes and which session it holds.
struct Writer {
    addrs: Vec<String>,
    next_addr: usize,
    client: Option<RawClient>,
    /// (session id, password, last zxid seen) while a session is held.
    session: Option<(i64, Vec<u8>, i64)>,
    outcome: LoadOutcome,
}

impl Writer {
    /// Creates `path` (bounded attempts). NodeExists is success when
    /// `exists_ok`, or after an attempt whose answer was lost.
    fn write(&mut self, path: &str, data: &[u8], exists_ok: bool) -> Result<(), String> {
        let req = create_req(path, data, CreateMode::Persistent);
        let mut maybe_applied = false;
        for _ in 0..LOAD_ATTEMPTS_MAX {
            if !self.ensure_connected() {
                std::thread::sleep(Duration::from_millis(POLL_MS));
                continue;
            }
            let c = self.client.as_mut().expect("connected");
            match call(c, &req) {
                Ok(_) => return Ok(()),
                Err(e) if e.is(ErrorCode::NodeExists) && (exists_ok || maybe_applied) => {
                    return Ok(())
                }
                Err(CallError::Lost(_)) => {
                    maybe_applied = true;
                    self.drop_connection();
                }
                Err(e) if e.is(ErrorCode::ConnectionLoss) || e.is(ErrorCode::SessionMoved) => {
                    maybe_applied = true;
                    self.drop_connection();
                }
                Err(e) => return Err(format!("create {path}: {e:?}")),
            }
        }
        Err(format!(
            "create {path} not acknowledged after {LOAD_ATTEMPTS_MAX} attempts"
        ))
    }

    /// Keeps the session (to move it) and drops the connection.
    fn drop_connection(&mut self) {
        if let Some(c) = self.client.take() {
            self.session = Some((c.session_id, c.passwd.clone(), c.last_zxid));
        }
        self.outcome.connection_losses += 1;
        self.next_addr += 1;
    }

    /// One attempt at a connection to the next member: the held session moved
    /// there, or a new session if it expired (or none is held).
    fn ensure_connected(&mut self) -> bool {
        if self.client.is_some() {
            return true;
        }
        let addr = self.addrs[self.next_addr % self.addrs.len()].clone();
        if let Some((id, passwd, zxid)) = self.session.clone() {
            match resume_session(&addr, id, &passwd, zxid) {
                Ok(Some(c)) => {
                    self.client = Some(c);
                    return true;
                }
                Ok(None) => self.session = None,
                Err(_) => {
                    self.next_addr += 1;
                    return false;
                }
            }
        }
        match open_session(&addr) {
            Ok(c) => {
                self.outcome.sessions_opened += 1;
                self.session = Some((c.session_id, c.passwd.clone(), 0));
                self.client = Some(c);
                true
            }
            Err(_) => {
                self.next_addr += 1;
                false
            }
        }
    }
}
