//! The sequencer core of an ensemble member (quorum mode): it drives the replication
//! core (`zab::Replica`) with the peer transport (`peer`), the shards' requests and
//! the disk, and turns what the core commits into published tree versions. Runs on
//! an executor of its own (whatever `corral.sequencerCore` says: the peer links are
//! tasks of that executor and close with it on a stop); the standalone sequencer
//! (`sequencer.rs`) is used when the configuration is not distributed.
//!
//! ```text
//!   shards ──Connect/Write/Touch──►┐                 ┌──► peers: notifications, packets
//!   peers ──notifications/packets─►├─ Replica.step ──┤    disk: log appends, truncation,
//!   timer ──tick───────────────────┘   / propose     │    epoch files, snapshots (fsync)
//!                                      / forward     └──► events: Apply, role changes, …
//!   leader:  request → prepare on the working tree (zxid from the core) → propose;
//!            the committed txn is applied to the committed tree and answered
//!   learner: request → REQUEST to the leader (sessions, syncs, writes); the txn it
//!            commits is applied here and answers the local client that sent it
//!   every batch of applied txns → one published tree version to every shard
//!   the core's log writes → appended here, fsynced on a blocking thread while
//!            packets and requests go on (`HeldSync`), so a stalled disk holds
//!            this member's ACKs, not the ensemble's writes
//! ```
//!
//! State: `committed` is the tree every shard reads (only committed txns); a leader
//! also keeps `working` (committed + its proposals) to prepare new txns on. The
//! session table is kept on every member from the committed txns; only the leader
//! expires sessions (fed by its learners' pings).
//!
//! Reconfig (`reconfigEnabled=true`): the leader prepares a reconfig request as the
//! reference's PrepRequestProcessor does (the checks in its order, the new config
//! versioned with the txn's zxid) and proposes it marked as one; the core decides
//! the rest. What the core proposes and activates reaches every member here: the
//! peer transport's address book, `/zookeeper/config`, and the files
//! (`config::dynamic`: `zoo.cfg.dynamic.<version>`, zoo.cfg rewritten, `.next`).

use super::durable::{self, KIND_TXN};
use super::msg::*;
use super::peer::sasl::{login_timeout, PeerSasl};
use super::peer::tls::PeerTls;
use super::peer::{wire, PeerAddr, PeerEvent, PeerSecurity, Peers};
use super::read_only::{self, Handshake, ReadOnly};
use super::sequencer::{catch_up_sessions, mono_ms, now_ms};
use super::stats::{self, Mode, ServerStats};
use super::Mesh;
use crate::config::dynamic::DynamicFiles;
use crate::config::{Config, QuorumConfig, QuorumServer, QuorumVerifier};
use crate::proto::{ConnectResponse, ErrorCode, JuteWrite, ReconfigRequest, Request, Response};
use crate::session::local::{LocalSessions, Upgrade};
use crate::session::{negotiate_timeout, SessionTable};
use crate::storage::{Log, LogConfig, SnapshotTrigger, SyncDone, SyncMode};
use crate::tree::{self, Caller, Tree, Txn, TxnContext, TxnOp};
use crate::zab::{
    self, ConnId, DurableState, Entry, Event, Forwarded, Input, Membership, Output, Replica, Role,
    Write, Zxid,
};
use bytes::Bytes;
use glommio::channels::local_channel::LocalReceiver;
use rand::{RngCore, SeedableRng};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the core's timers are checked (elections wait 200 ms at least).
const TICK_EVERY: Duration = Duration::from_millis(20);
/// ZooKeeper's op codes for session creation and closing (REQUEST types).
const OP_CREATE_SESSION: i32 = -10;
const OP_CLOSE_SESSION: i32 = -11;

/// Why a handshake is refused when its request cannot reach the leader.
const NO_LEADER_LINK: &str = "the request cannot be forwarded to the leader";

/// The node reconfig writes (and activation sets).
const CONFIG_NODE: &str = "/zookeeper/config";

/// A logged txn for the core, marked with its config when it is a reconfig.
fn logged_entry(zxid: Zxid, payload: Bytes) -> Entry {
    let reconfig = Txn::decode(&payload)
        .ok()
        .and_then(|(txn, _)| wire::reconfig_of(&txn.op).ok().flatten());
    Entry {
        zxid,
        payload,
        reconfig,
    }
}

/// A whole new member list (`newMembers`): `server.N=…` entries separated by
/// commas or newlines, as properties; the reference's dynamic-config rules.
fn reconfig_new_members(members: &str) -> Result<QuorumVerifier, ErrorCode> {
    let text = members.replace(',', "\n");
    let bad = |why: String| {
        tracing::warn!("reconfig refused: {why}");
        ErrorCode::BadArguments
    };
    let qv = QuorumVerifier::parse_text(&text).map_err(|e| bad(e.to_string()))?;
    qv.check_membership(true).map_err(bad)?;
    Ok(qv)
}

/// An incremental change (`joiningServers`, `leavingServers`) to `last`: leavers
/// are ids (not a number: the reference fails with a marshalling error), joiners
/// `server.N=host:qport:eport[:type];[clientHost:]clientPort` (a client port is
/// required; a joiner replaces a member of its id; its addresses may not be
/// another member's).
fn reconfig_incremental(
    last: &QuorumVerifier,
    rr: &ReconfigRequest,
) -> Result<QuorumVerifier, ErrorCode> {
    let mut next = last.clone();
    let pieces = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or("")
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    for leaving in pieces(&rr.leaving) {
        let sid: u64 = leaving.parse().map_err(|_| ErrorCode::MarshallingError)?;
        next.servers.remove(&sid);
    }
    for joiner in pieces(&rr.joining) {
        let s = reconfig_joiner(&joiner)?;
        if let Some(other) = next
            .servers
            .values()
            .find(|o| o.sid != s.sid && addresses_conflict(&s, o))
        {
            tracing::warn!(
                "reconfig refused: server.{} conflicts with server.{}",
                s.sid,
                other.sid
            );
            return Err(ErrorCode::BadArguments);
        }
        next.servers.insert(s.sid, s);
    }
    Ok(next)
}

/// One `server.N=…` joiner.
fn reconfig_joiner(joiner: &str) -> Result<QuorumServer, ErrorCode> {
    let parts: Vec<&str> = joiner
        .split('=')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let [key, value] = parts.as_slice() else {
        tracing::warn!("reconfig refused: wrong format of server string `{joiner}`");
        return Err(ErrorCode::BadArguments);
    };
    let sid: u64 = key[key.rfind('.').map_or(0, |i| i + 1)..]
        .parse()
        .map_err(|_| ErrorCode::MarshallingError)?;
    let s = QuorumServer::parse(sid, value, false).map_err(|e| {
        tracing::warn!("reconfig refused: server.{sid}: {e}");
        ErrorCode::BadArguments
    })?;
    if s.client.is_none() {
        tracing::warn!("reconfig refused: server.{sid} needs a client port");
        return Err(ErrorCode::BadArguments);
    }
    Ok(s)
}

/// `checkAddressDuplicate`: the same IP and port among two members' quorum,
/// election and client addresses (loopback and wildcard addresses, and names, are
/// not compared).
fn addresses_conflict(a: &QuorumServer, b: &QuorumServer) -> bool {
    let comparable = |s: &QuorumServer| -> Vec<(std::net::IpAddr, u16)> {
        [Some(&s.quorum), Some(&s.election), s.client.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|hp| hp.ip().map(|ip| (ip, hp.port)))
            .filter(|(ip, _)| !ip.is_loopback() && !ip.is_unspecified())
            .collect()
    };
    let theirs = comparable(b);
    comparable(a).iter().any(|x| theirs.contains(x))
}

/// Where a reply goes.
#[derive(Clone, Copy, Debug)]
struct Route {
    shard: usize,
    conn: u64,
}

/// Why a proposal was made (leader).
enum Origin {
    /// A local client's request: answer it.
    Local(Route, i32),
    /// A local client's new session: answer its handshake (timeout, and whether
    /// the client sent the read-only flag: the answer has the same shape).
    Connect(Route, i32, Option<bool>),
    /// A learner's request, or the leader's own (expiry, cleanup): no local answer.
    None,
}

struct Proposed {
    zxid: Zxid,
    txn: Txn,
    origin: Origin,
}

/// Which member a session's client talks to (leader only): requests from any
/// other are refused with SESSIONMOVED, as the reference's session tracker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Local,
    Learner(u64),
}

/// A learner's silence, as the leader's session expiry sees it.
#[derive(Debug, Default)]
struct Silence {
    /// When it was first seen answering again (None: still silent).
    heard_again_ms: Option<i64>,
    /// Its kept sessions were logged.
    said: bool,
}

/// What ended the quorum core's wait (`Seq::next_wake`).
enum Wake {
    Synced((SyncDone, Duration)),
    Shard(Result<ToSequencer, super::chan::RecvError>),
    Peer(Option<PeerEvent>),
    Tick,
}

/// A batch of the core waiting for its log sync, which runs off the executor so
/// that packets, requests and the outputs that need nothing of this batch
/// (`Replica::take_released`) go on meanwhile: each hop of a write through this
/// member (a REQUEST forwarded, a PROPOSAL sent, an ACK counted, a COMMIT
/// applied) would otherwise wait behind the fsync in progress.
struct HeldSync {
    ready: zab::Ready,
    done: SyncFuture,
    /// Inputs taken since the sync began (≤ HELD_SYNC_INPUTS_COUNT_MAX).
    inputs: usize,
    /// When the sync began.
    since: Instant,
}

/// Inputs (shard messages and peer events) the core takes while one log sync is
/// out. Each may leave outputs waiting for that sync (`Replica::out`: an ACK or
/// a reply behind the batch being synced) and appends for the next, so this
/// bounds what a stalled disk lets pile up in the core; at the bound the core
/// waits for the sync and takes nothing more, and the senders queue behind their
/// own bounds (the peer links' EVENT_QUEUE_MAX, MESH_QUEUE_COUNT_MAX). Far above
/// what one sync sees in service (≈ 1 k at 500 k inputs/s and a 2 ms fsync).
const HELD_SYNC_INPUTS_COUNT_MAX: usize = 1 << 14;

/// A log sync on a blocking thread: its result and how long the sync itself took.
type SyncFuture = Pin<Box<dyn Future<Output = (SyncDone, Duration)>>>;

/// A session handshake a learner waits on (createSession or revalidation).
struct PendingConnect {
    route: Route,
    timeout_ms: i32,
    read_only: Option<bool>,
}

struct Seq {
    cfg: Arc<Config>,
    replica: Replica,
    peers: Rc<Peers>,
    mesh: Mesh,
    stats: Arc<ServerStats>,
    log: Log,
    snap_dir: PathBuf,
    log_dir: PathBuf,
    epoch: Instant,
    role: Role,
    committed: Tree,
    working: Tree,
    sessions: SessionTable,
    // leader
    proposed: VecDeque<Proposed>,
    owners: FxHashMap<i64, Owner>,
    /// Learners silent for over a tickTime, until a tickTime after they were heard
    /// again: their sessions are not judged meanwhile (`expire_sessions`).
    silences: FxHashMap<u64, Silence>,
    local_syncs: VecDeque<(Zxid, Route, i32, String)>,
    /// Our clients' syncs at the core's sync gate, by tag (see `zab::sync_gate`).
    gated_syncs: FxHashMap<u64, (Route, i32, String)>,
    next_sync_tag: u64,
    // learner
    waiting: FxHashMap<i64, VecDeque<(i32, Route)>>,
    connects: FxHashMap<i64, PendingConnect>,
    syncs: VecDeque<(Route, i32, String)>,
    // output
    items: Vec<Item>,
    publish_needed: bool,
    captured: Option<Tree>,
    enc: Vec<u8>,
    // snapshots
    want_snapshot: bool,
    trigger: SnapshotTrigger,
    retention: Arc<durable::Retention>,
    snapshotting: Arc<AtomicBool>,
    rng: rand::rngs::SmallRng,
    /// The leader's digests against ours (early mismatches expected after a SNAP).
    digests: durable::DigestCheck,
    /// The `hash` command's log of tree digests (the committed tree's).
    digest_log: stats::DigestLog,
    fatal: Option<String>,
    /// A stop was asked (`ToSequencer::Shutdown`): take no more client messages.
    stopping: bool,
    /// The core's batch whose log sync runs on a blocking thread (see `pump`).
    held: Option<HeldSync>,
    // reconfig
    reconfig_enabled: bool,
    standalone_enabled: bool,
    /// Where the reconfig files go (reconfig enabled and zoo.cfg known).
    dynamic_files: Option<DynamicFiles>,
    /// The version of the last `zoo.cfg.dynamic.next` written.
    last_seen_written: i64,
    /// When (`mono_ms`) this leader last looked for empty containers and
    /// expired TTL nodes; `None` while not leading. As the reference's
    /// ContainerManager, the first look comes one `containerCheckIntervalMs`
    /// after taking the lead, and then one per interval.
    containers_checked_ms: Option<u64>,
    /// When the role last began to look, or stopped looking (election and
    /// sync times, see `time_role_change`).
    role_since: Instant,
    /// Read-only mode (`readonlymode.enabled`): its clock and local sessions.
    read_only: ReadOnly,
    /// This member's local sessions (`localSessionsEnabled`).
    local: LocalSessions,
    /// Ephemeral creates of local sessions that could not upgrade (session,
    /// xid): their error answer is EphemeralOnLocalSession. An entry leaves with
    /// its answer or the role; at most one per request in process (bounded by
    /// corral.maxOutstandingPerConnection per connection).
    ephemeral_on_local: FxHashSet<(i64, i32)>,
}

/// The replication core's configuration from zoo.cfg (and, with reconfig, the
/// dynamic files it points at).
fn zab_config(cfg: &Config, q: &QuorumConfig, my_id: u64) -> zab::Config {
    let mut z = zab::Config::new(my_id, Membership::new(q.verifier()));
    z.last_seen = q.last_seen.clone().map(Membership::new);
    z.reconfig_enabled = q.reconfig_enabled;
    z.tick_ms = cfg.tick_time_ms as u64;
    z.init_limit_ticks = cfg.init_limit_ticks as u64;
    z.sync_limit_ticks = cfg.sync_limit_ticks as u64;
    z.payload_bytes_max = 2 * cfg.jute_max_buffer_bytes + 4096;
    z
}

fn peer_addrs<'a>(
    servers: impl IntoIterator<Item = &'a QuorumServer>,
) -> Result<BTreeMap<u64, PeerAddr>, String> {
    let mut m = BTreeMap::new();
    for s in servers {
        let election = s
            .election
            .resolve()
            .map_err(|e| format!("server.{}: cannot resolve {}: {e}", s.sid, s.election))?;
        let quorum = s
            .quorum
            .resolve()
            .map_err(|e| format!("server.{}: cannot resolve {}: {e}", s.sid, s.quorum))?;
        let hosts = [&s.election.host, &s.quorum.host]
            .into_iter()
            .filter(|h| h.parse::<std::net::IpAddr>().is_err())
            .cloned()
            .collect();
        m.insert(
            s.sid,
            PeerAddr {
                election,
                quorum,
                hosts,
            },
        );
    }
    Ok(m)
}

pub(super) async fn run(
    cfg: Arc<Config>,
    mesh: Mesh,
    rx: super::chan::Receiver<ToSequencer>,
    stats: Arc<ServerStats>,
    ready: super::ReadyTx,
    peer_tls: Option<PeerTls>,
) -> Result<(), String> {
    let fail = |msg: String| {
        let _ = ready.send((
            super::SEQUENCER.into(),
            super::CoreNews::StartFailed(msg.clone()),
        ));
        Err(msg)
    };
    let (mut s, events) = match Seq::start(cfg, mesh.clone(), stats, peer_tls) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let _ = ready.send((super::SEQUENCER.into(), super::CoreNews::Up));
    s.run(rx, events).await
}

impl Seq {
    /// Recovery, the transport and the replication core.
    fn start(
        cfg: Arc<Config>,
        mesh: Mesh,
        stats: Arc<ServerStats>,
        peer_tls: Option<PeerTls>,
    ) -> Result<(Seq, LocalReceiver<PeerEvent>), String> {
        let q = cfg.quorum.clone().ok_or("no ensemble configured")?;
        let my_id = q.my_id.ok_or("no myid")?;
        let me = q
            .servers
            .get(&my_id)
            .ok_or("myid is not in the server list")?;
        let snap_dir = cfg.data_dir.clone();
        let log_dir = cfg.log_dir().to_path_buf();
        let started = Instant::now();
        if let Some(imported) = crate::storage::zkdir::adopt(&snap_dir, &log_dir)
            .map_err(|e| format!("Apache ZooKeeper data: {e}"))?
        {
            tracing::info!("{}", imported.summary);
        }
        let mut rec =
            durable::recover(&snap_dir, &log_dir).map_err(|e| format!("recovery failed: {e}"))?;
        tracing::info!("{} in {:?}", rec.summary, started.elapsed());
        let digest_log = std::mem::take(&mut rec.digest_log);
        let last = rec.tree.last_zxid();
        let epochs = crate::storage::load_epochs(&snap_dir, last)
            .map_err(|e| format!("epoch files: {e}"))?;
        let tail: Vec<Entry> = rec
            .tail_records
            .iter()
            .map(|(z, p)| logged_entry(Zxid(*z as u64), p.clone()))
            .collect();
        let log_cfg = LogConfig {
            segment_bytes: cfg.log_segment_bytes,
            sync: if cfg.force_sync {
                SyncMode::Fdatasync
            } else {
                SyncMode::None
            },
        };
        let log = Log::open(&log_dir, log_cfg, rec.tail)
            .map_err(|e| format!("cannot open the log in {}: {e}", log_dir.display()))?;
        let epoch = Instant::now();
        let mut tree = rec.tree;
        tree.set_config_node(q.to_text().as_bytes(), q.version, now_ms());
        let durable_state = DurableState {
            accepted_epoch: epochs.accepted,
            current_epoch: epochs.current,
            last_zxid: Zxid(last as u64),
            tail,
        };
        let zcfg = zab_config(&cfg, &q, my_id);
        let replica = Replica::new(zcfg, durable_state, 0).map_err(|e| e.to_string())?;
        let addrs = peer_addrs(q.servers.values())?;
        let dynamic_files = q
            .config_file
            .as_deref()
            .filter(|_| q.reconfig_enabled)
            .map(DynamicFiles::new);
        if let Some(files) = dynamic_files
            .as_ref()
            .filter(|_| q.dynamic_config_file.is_none())
        {
            // As the reference: the members are still inline in zoo.cfg; keep a copy
            // before reconfig rewrites it.
            files
                .backup_static()
                .map_err(|e| format!("cannot back up the config file to zoo.cfg.bak: {e}"))?;
        }
        let listen = |a: std::net::SocketAddr| {
            if q.quorum_listen_on_all_ips {
                std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), a.port())
            } else {
                a
            }
        };
        let mine = addrs.get(&my_id).cloned().ok_or("no address for myid")?;
        let (peers, events) = Peers::start(
            my_id,
            listen(mine.election),
            listen(mine.quorum),
            addrs,
            q.reconfig_enabled,
            cfg.tcp_keep_alive,
            PeerSecurity {
                tls: peer_tls,
                sasl: cfg.quorum_sasl.clone().map(|s| {
                    PeerSasl::new(s, login_timeout(cfg.init_limit_ticks, cfg.tick_time_ms))
                }),
            },
        )
        .map_err(|e| {
            format!(
                "cannot listen on the election port {} / quorum port {} (server.{my_id}): {e}",
                me.election, me.quorum
            )
        })?;
        let now = now_ms();
        let mut sessions = SessionTable::new(my_id as u8, now, cfg.tick_time_ms);
        durable::restore_sessions(&mut sessions, &rec.sessions, mono_ms());
        let retention = Arc::new(durable::Retention::new(
            &snap_dir,
            &log_dir,
            cfg.autopurge_snap_retain_count as usize,
            cfg.autopurge_purge_interval_hours,
        ));
        if let Some(z) = rec.snapshot_zxid {
            retention.note_valid(z);
        }
        retention
            .start_timer()
            .map_err(|e| format!("cannot start the purge thread: {e}"))?;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(now as u64);
        stats.set_mode(Mode::NotServing);
        // A member starts out looking for a leader (the reference's first LOOKING).
        stats.looking.fetch_add(1, Relaxed);
        let mut read_only = ReadOnly::new(cfg.read_only_mode, cfg.tick_time_ms as u64);
        let local = LocalSessions::new(
            cfg.local_sessions_enabled,
            cfg.local_sessions_upgrading_enabled,
        );
        read_only.on_role(true, 0);
        let s = Seq {
            want_snapshot: false,
            trigger: SnapshotTrigger::new(
                cfg.snap_count,
                cfg.snap_size_limit_kb.saturating_mul(1024),
                rng.next_u64(),
            ),
            cfg,
            replica,
            peers,
            mesh,
            stats,
            log,
            snap_dir,
            log_dir,
            epoch,
            role: Role::Looking,
            working: tree.clone(),
            committed: tree,
            sessions,
            proposed: VecDeque::new(),
            owners: FxHashMap::default(),
            silences: FxHashMap::default(),
            local_syncs: VecDeque::new(),
            gated_syncs: FxHashMap::default(),
            next_sync_tag: 0,
            waiting: FxHashMap::default(),
            connects: FxHashMap::default(),
            syncs: VecDeque::new(),
            items: Vec::new(),
            publish_needed: true,
            captured: None,
            enc: Vec::with_capacity(4096),
            retention,
            snapshotting: Arc::new(AtomicBool::new(false)),
            rng,
            digests: durable::DigestCheck::agreeing(),
            digest_log,
            fatal: None,
            stopping: false,
            held: None,
            reconfig_enabled: q.reconfig_enabled,
            standalone_enabled: q.standalone_enabled,
            dynamic_files,
            last_seen_written: q.last_seen.as_ref().map_or(q.version, |n| n.version),
            containers_checked_ms: None,
            role_since: Instant::now(),
            read_only,
            local,
            ephemeral_on_local: FxHashSet::default(),
        };
        Ok((s, events))
    }

    fn mono_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(
        &mut self,
        rx: super::chan::Receiver<ToSequencer>,
        events: LocalReceiver<PeerEvent>,
    ) -> Result<(), String> {
        // Publish the recovered tree so the shards start (they refuse clients until
        // the member serves).
        self.publish();
        let max = self.cfg.batch_requests_max;
        let mut next_tick = Instant::now();
        let housekeeping_every = Duration::from_millis((self.cfg.tick_time_ms as u64 / 2).max(10));
        let mut next_housekeeping = Instant::now() + housekeeping_every;
        loop {
            let wake = self.next_wake(&rx, &events, next_tick).await;
            let now = now_ms();
            match wake {
                Wake::Synced(done) => self.finish_held(done, now),
                Wake::Shard(Err(_)) | Wake::Peer(None) => return Ok(()),
                Wake::Shard(Ok(m)) => {
                    self.took_input();
                    self.handle(m, now)
                }
                Wake::Peer(Some(PeerEvent::Input(input))) => {
                    self.took_input();
                    self.step(input)
                }
                Wake::Tick => {}
            }
            self.take_inboxes(&rx, &events, max, now);
            // Timers run whatever woke us: under a steady stream of requests or
            // packets the timer branch above may never win the select, and a
            // leader that stops pinging loses its followers.
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK_EVERY;
                self.step(Input::Tick);
                if Instant::now() >= next_housekeeping {
                    next_housekeeping = Instant::now() + housekeeping_every;
                    self.leader_housekeeping(now);
                    self.read_only_housekeeping();
                    if self.local.count() > 0 {
                        self.local_housekeeping();
                    }
                }
            }
            self.pump(now);
            if let Some(why) = self.fatal.take() {
                tracing::error!("stopping: {why}");
                return Err(why);
            }
            if self.stopping {
                if let Some(h) = self.held.as_mut() {
                    let done = (&mut h.done).await;
                    self.finish_held(done, now_ms());
                }
                return self.stop();
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Waits for what comes first: the held sync's end (first, so what waited
    /// for it goes out), a shard message, a peer event or the tick; only the
    /// sync while HELD_SYNC_INPUTS_COUNT_MAX inputs came during it.
    async fn next_wake(
        &mut self,
        rx: &super::chan::Receiver<ToSequencer>,
        events: &LocalReceiver<PeerEvent>,
        next_tick: Instant,
    ) -> Wake {
        use futures::future::{select, Either};
        let wait = next_tick.saturating_duration_since(Instant::now());
        let taking = self.takes_input();
        let held = self.held.as_mut().map(|h| &mut h.done);
        let synced = std::pin::pin!(async move {
            match held {
                Some(done) => done.await,
                None => std::future::pending().await,
            }
        });
        let shard = std::pin::pin!(rx.recv_async());
        let peer = std::pin::pin!(events.recv());
        let timer = std::pin::pin!(glommio::timer::sleep(wait));
        let inputs = std::pin::pin!(async move {
            if !taking {
                return std::future::pending().await;
            }
            match select(select(shard, peer), timer).await {
                Either::Left((Either::Left((m, _)), _)) => Wake::Shard(m),
                Either::Left((Either::Right((e, _)), _)) => Wake::Peer(e),
                Either::Right(_) => Wake::Tick,
            }
        });
        match select(synced, inputs).await {
            Either::Left((done, _)) => Wake::Synced(done),
            Either::Right((wake, _)) => wake,
        }
    }

    /// Whatever woke the core, both inboxes are taken (up to `max` each, and
    /// HELD_SYNC_INPUTS_COUNT_MAX while a sync is out), so neither clients nor
    /// peers (ACKs!) wait behind a steady stream of the other.
    fn take_inboxes(
        &mut self,
        rx: &super::chan::Receiver<ToSequencer>,
        events: &LocalReceiver<PeerEvent>,
        max: usize,
        now: i64,
    ) {
        use futures::FutureExt;
        for _ in 1..max {
            if self.stopping || !self.takes_input() {
                break;
            }
            match rx.try_recv() {
                Ok(m) => {
                    self.took_input();
                    self.handle(m, now)
                }
                Err(_) => break,
            }
        }
        self.stats
            .sequencer_inbox_depth
            .store(rx.len() as u64, Relaxed);
        for _ in 1..max {
            if !self.takes_input() {
                break;
            }
            match events.recv().now_or_never() {
                Some(Some(PeerEvent::Input(i))) => {
                    self.took_input();
                    self.step(i)
                }
                _ => break,
            }
        }
    }

    /// False while a held sync has seen HELD_SYNC_INPUTS_COUNT_MAX inputs.
    fn takes_input(&self) -> bool {
        self.held
            .as_ref()
            .is_none_or(|h| h.inputs < HELD_SYNC_INPUTS_COUNT_MAX)
    }

    fn took_input(&mut self) {
        if let Some(h) = self.held.as_mut() {
            h.inputs += 1;
            if h.inputs == HELD_SYNC_INPUTS_COUNT_MAX {
                // The disk stalls: from here the member answers nobody, and its
                // peers drop it after syncLimit (it rejoins once the sync returns).
                tracing::warn!(
                    "the log sync has taken {} ms and {HELD_SYNC_INPUTS_COUNT_MAX} inputs \
                     arrived meanwhile; this member takes no more until the disk answers",
                    h.since.elapsed().as_millis()
                );
            }
        }
    }

    /// The end on a stop, after a pump (which syncs what it appended): sync once
    /// more, publish what was applied, tell every shard to close behind that batch.
    /// The peer links close with this core's executor, so the others elect.
    fn stop(&mut self) -> Result<(), String> {
        let synced = self.sync_log();
        if self.publish_needed || !self.items.is_empty() {
            self.publish();
        }
        for tx in &self.mesh.to_shards {
            let _ = tx.send(ToShard::Shutdown);
        }
        synced.map_err(|e| format!("cannot make the log durable: {e}"))?;
        tracing::info!(
            "log durable up to zxid {:#x}; member stopped (was {:?})",
            self.log.durable_zxid(),
            self.role
        );
        Ok(())
    }

    fn step(&mut self, input: Input) {
        if let Input::Packet { packet, .. } = &input {
            self.count_packet(packet);
        }
        let now = self.mono_ms();
        self.replica.step(now, input);
    }

    /// The reference's learner counters: what a serving follower or observer
    /// receives in its broadcast phase (Follower/Observer.processPacket, not
    /// the sync before UPTODATE), and the REVALIDATEs a leader handles.
    fn count_packet(&self, packet: &zab::Packet) {
        use zab::Packet as P;
        let counter = match (self.role, packet) {
            (Role::Following { serving: true, .. }, P::Proposal(_)) => {
                &self.stats.learner_proposals_received
            }
            (Role::Following { serving: true, .. }, P::Commit { .. })
            | (Role::Observing { serving: true, .. }, P::Inform(_)) => {
                &self.stats.learner_commits_received
            }
            (Role::Leading { .. }, P::RevalidateRequest { .. }) => &self.stats.revalidations,
            _ => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    // ----- the core's output ------------------------------------------------------------

    /// Drains the core: outputs now, writes to disk, then one fsync on a blocking
    /// thread (`HeldSync`) while the outputs that need nothing of it go on; what
    /// waited for it follows in `finish_held`. Then one published version for what
    /// was applied.
    fn pump(&mut self, now: i64) {
        while self.held.is_none() {
            let Some(mut rd) = self.replica.ready() else {
                break;
            };
            let outs = rd.take_now();
            self.perform(outs, now);
            if rd.has_writes() {
                let writes = rd.writes().to_vec();
                let synced = self.persist(&writes).and_then(|()| self.start_sync());
                match synced {
                    Ok(Some(done)) => {
                        self.held = Some(HeldSync {
                            ready: rd,
                            done,
                            inputs: 0,
                            since: Instant::now(),
                        });
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Nothing unsynced may be acknowledged: stop, as the
                        // reference exits when its log fails.
                        self.fatal = Some(format!("cannot make the log durable: {e}"));
                        return;
                    }
                }
            }
            let gated = self.replica.advance(rd.persisted());
            self.perform(gated, now);
        }
        // Until nothing more is released: performing an output can queue more (a
        // forwarded REQUEST becomes PROPOSALs, an ACK a COMMIT), and left queued
        // they would wait for the next input or tick (one write per 20 ms tick
        // while a leader's disk stalled).
        while self.held.is_some() {
            let released = self.replica.take_released();
            if released.is_empty() {
                break;
            }
            self.perform(released, now);
        }
        if self.publish_needed || !self.items.is_empty() {
            self.publish();
        }
        self.maybe_snapshot();
    }

    fn perform(&mut self, outs: Vec<Output>, now: i64) {
        for o in outs {
            match o {
                Output::Notify { to, n } => self.peers.notify(to, n),
                Output::Connect { conn, to } => self.peers.connect(conn, to),
                Output::Send { conn, packet } => self.peers.send(conn, &packet),
                Output::SendSnapshot { conn, zxid } => {
                    debug_assert!(self.committed.last_zxid() <= zxid.as_i64());
                    let mut tree = self.committed.clone();
                    tree.set_last_zxid(zxid.as_i64());
                    let sessions = self.session_list();
                    self.peers.send_snapshot(conn, Arc::new(tree), sessions);
                }
                Output::Close { conn } => self.peers.close(conn),
                Output::Event(e) => self.on_event(e, now),
            }
        }
    }

    fn session_list(&self) -> Vec<(i64, i32)> {
        self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect()
    }

    /// Makes a batch's writes durable, in order: none is durable before the ones ahead
    /// of it (the core relies on it, e.g. a NEWLEADER's history before its epoch), so
    /// the log is synced before an epoch file is written.
    fn persist(&mut self, writes: &[Write]) -> Result<(), String> {
        for w in writes {
            match w {
                Write::AcceptedEpoch(e) => {
                    self.sync_log()?;
                    crate::storage::write_accepted_epoch(&self.snap_dir, *e)
                        .map_err(|e| e.to_string())?
                }
                Write::CurrentEpoch(e) => {
                    self.sync_log()?;
                    crate::storage::write_current_epoch(&self.snap_dir, *e)
                        .map_err(|e| e.to_string())?
                }
                Write::Append(e) => {
                    self.log
                        .append(e.zxid.as_i64(), KIND_TXN, &e.payload)
                        .map_err(|e| e.to_string())?;
                }
                Write::TruncateAfter(z) => {
                    self.sync_log()?;
                    durable::truncate_log(&mut self.log, &self.retention, z.as_i64())
                        .map_err(|e| e.to_string())?
                }
                Write::Snapshot(z) => self.write_sync_snapshot(*z)?,
                Write::CommittedConfig(m) => self.write_committed_config(m),
                Write::LastSeenConfig(m) => self.write_last_seen_config(m),
            }
        }
        Ok(())
    }

    /// The sync of what `persist` appended: `None` when it is done already
    /// (forceSync=no), else its result to come from a blocking thread, held while
    /// the protocol goes on (`HeldSync`). Never inline on this executor: if this
    /// member's disk stalls, the others commit without it (a leader's followers
    /// are a quorum; a follower's REQUESTs and ping replies do not wait for its
    /// ACKs, `zab::Target::Aside`), as in the reference, whose SyncRequestProcessor
    /// is a thread of its own. Inline, a stalled disk held every write of the
    /// ensemble (leader) or of the member's clients (follower) for as long as it
    /// lasted, and the others dropped the member after syncLimit.
    fn start_sync(&mut self) -> Result<Option<SyncFuture>, String> {
        let Some(job) = self.log.begin_sync().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        if !job.needs_blocking_thread() {
            let done = job.run();
            self.log.finish_sync(done).map_err(|e| e.to_string())?;
            return Ok(None);
        }
        Ok(Some(Box::pin(
            glommio::executor().spawn_blocking(move || job.run_timed()),
        )))
    }

    /// A sync's result back into the log, its time into the stats.
    fn take_sync(&mut self, (done, took): (SyncDone, Duration)) -> Result<(), String> {
        self.stats.record_log_sync(took);
        self.log.finish_sync(done).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The held batch's sync returned: the log takes it back, the core learns the
    /// batch is durable, and what waited for it goes out.
    fn finish_held(&mut self, synced: (SyncDone, Duration), now: i64) {
        let h = self.held.take().expect("a sync was out");
        if let Err(e) = self.take_sync(synced) {
            self.fatal = Some(format!("cannot make the log durable: {e}"));
            return;
        }
        let gated = self.replica.advance(h.ready.persisted());
        self.perform(gated, now);
    }

    /// fsyncs what was appended (inline, as the standalone sequencer does).
    fn sync_log(&mut self) -> Result<(), String> {
        match self.log.begin_sync().map_err(|e| e.to_string())? {
            Some(job) => self.take_sync(job.run_timed()),
            None => Ok(()),
        }
    }

    /// A committed config's files, as the reference writes them (a failure is
    /// logged, as there: the config is in force either way).
    fn write_committed_config(&mut self, m: &Membership) {
        let Some(files) = &self.dynamic_files else {
            return;
        };
        let me = self.replica.id();
        let erase_client = m
            .verifier()
            .servers
            .get(&me)
            .is_some_and(|s| s.client.is_some());
        let drop_next = self.last_seen_written <= m.version();
        if let Err(e) = files.write_committed(m.verifier(), erase_client, drop_next) {
            tracing::error!(
                "cannot write the config files of version {:x}: {e}",
                m.version()
            );
        }
    }

    fn write_last_seen_config(&mut self, m: &Membership) {
        let Some(files) = &self.dynamic_files else {
            return;
        };
        if let Err(e) = files.write_last_seen(m.verifier()) {
            tracing::error!("cannot write {}: {e}", files.next_path().display());
        }
        self.last_seen_written = m.version();
    }

    /// A SNAP sync's snapshot replaces everything on disk.
    fn write_sync_snapshot(&mut self, z: Zxid) -> Result<(), String> {
        let tree = self
            .captured
            .take()
            .ok_or("a snapshot write without a captured state")?;
        let sessions = self.session_list();
        let body = |w: &mut dyn std::io::Write| durable::write_snapshot_body(w, &tree, &sessions);
        let info = crate::storage::write_snapshot(&self.snap_dir, z.as_i64(), body)
            .map_err(|e| e.to_string())?;
        self.retention.note_valid(info.zxid);
        self.sync_log()?;
        durable::adopt_snapshot(&mut self.log, &self.retention, z.as_i64())
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Seq {
    // ----- events of the core -------------------------------------------------------------

    fn on_event(&mut self, e: Event, now: i64) {
        match e {
            Event::Apply(entry) => self.apply_committed(entry),
            Event::InstallSnapshot { conn, zxid } => self.install_snapshot(conn, zxid, now),
            Event::Reset => self.reset_state(now),
            Event::CaptureSnapshot { zxid } => {
                debug_assert_eq!(self.committed.last_zxid(), zxid.as_i64());
                self.captured = Some(self.committed.clone());
            }
            Event::Rollback { zxid } => self.rollback(zxid, now),
            Event::RoleChanged(role) => self.on_role(role),
            Event::Request { conn, from, req } => self.on_forwarded(conn, from, req, now),
            Event::Revalidate {
                conn,
                from,
                session_id,
                ..
            } => {
                let valid = self.sessions.is_live(session_id);
                if valid {
                    self.sessions.touch(session_id, mono_ms());
                    // The session moved to that learner.
                    self.owners.insert(session_id, Owner::Learner(from));
                }
                self.replica.revalidated(conn, session_id, valid);
            }
            Event::Touches { touches, .. } => {
                for (id, _) in touches {
                    self.sessions.touch(id, mono_ms());
                }
            }
            Event::Revalidated { session_id, valid } => {
                if let Some(p) = self.connects.remove(&session_id) {
                    let response = if valid {
                        self.session_response(session_id, p.timeout_ms, p.read_only)
                    } else {
                        self.expired_response(p.read_only)
                    };
                    self.push_connect_reply(p.route, Ok(response));
                }
            }
            Event::SyncDone => {
                if let Some((route, xid, path)) = self.syncs.pop_front() {
                    self.push_op_reply(route, xid, Ok(Response::Sync { path }));
                }
            }
            Event::LocalSyncReady { tag, at } => self.local_sync_ready(tag, at),
            Event::ConfigProposed(_) => self.follow_members(),
            Event::ConfigActivated(m) => self.config_activated(&m, now),
        }
    }

    /// One of our clients' syncs passed the gate: answered once `at` is applied.
    fn local_sync_ready(&mut self, tag: u64, at: Zxid) {
        let Some((route, xid, path)) = self.gated_syncs.remove(&tag) else {
            return;
        };
        if at > Zxid(self.committed.last_zxid() as u64) {
            self.local_syncs.push_back((at, route, xid, path));
        } else {
            self.push_op_reply(route, xid, Ok(Response::Sync { path }));
        }
    }

    /// The transport dials the members of the configs in use: the committed one
    /// and the one proposed.
    fn follow_members(&mut self) {
        let (conf, next) = (
            self.replica.committed_config().clone(),
            self.replica.last_seen_config().clone(),
        );
        let servers = next
            .verifier()
            .servers
            .values()
            .chain(conf.verifier().servers.values());
        match peer_addrs(servers) {
            Ok(addrs) => self.peers.set_members(addrs),
            Err(e) => tracing::warn!("the new config's addresses: {e}"),
        }
    }

    /// A config is now the committed one: `/zookeeper/config` says so (the
    /// reference's `initConfigInZKDatabase`; a reconfig txn applied next writes the
    /// same text), and the transport follows its members.
    fn config_activated(&mut self, m: &Membership, now: i64) {
        for tree in [&mut self.committed, &mut self.working] {
            tree.set_config_node(m.text(), m.version(), now);
        }
        self.publish_needed = true;
        self.follow_members();
        let me = self.replica.id();
        let client = m.verifier().servers.get(&me).and_then(|s| s.client.clone());
        if let Some(c) = client.filter(|c| {
            c.ip() != Some(self.cfg.client_port_address) || c.port != self.cfg.client_port
        }) {
            tracing::warn!(
                "config version {:x} moves our client address to {c}: corral keeps listening \
                 where it started until restarted",
                m.version()
            );
        }
    }

    /// The answer to a handshake for session `id`. `asked`: the client's
    /// read-only flag; the answer carries one only if it sent one, set while
    /// this member is read-only (the reference's `instanceof
    /// ReadOnlyZooKeeperServer`).
    fn session_response(&self, id: i64, timeout_ms: i32, asked: Option<bool>) -> ConnectResponse {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id: id,
            passwd: SessionTable::password(id).to_vec(),
            read_only: asked.map(|_| self.read_only.active()),
        }
    }

    /// The answer for an unknown or expired session, a wrong password or a
    /// session refused (maxSessions); flagged as [`Self::session_response`].
    fn expired_response(&self, asked: Option<bool>) -> ConnectResponse {
        ConnectResponse {
            read_only: asked.map(|_| self.read_only.active()),
            ..ConnectResponse::expired(asked)
        }
    }

    fn push_item(
        &mut self,
        zxid: i64,
        events: Vec<(crate::proto::EventType, String)>,
        reply: Option<Reply>,
        closed: Option<i64>,
    ) {
        self.items.push(Item {
            zxid,
            events,
            reply,
            closed_session: closed,
        });
    }

    fn push_op_reply(&mut self, route: Route, xid: i32, result: Result<Response, ErrorCode>) {
        let z = self.committed.last_zxid();
        let reply = Reply {
            shard: route.shard,
            conn: route.conn,
            kind: ReplyKind::Op { xid, result },
        };
        self.push_item(z, Vec::new(), Some(reply), None);
    }

    /// The write cannot be taken here: its connection closes unanswered
    /// (`ReplyKind::Unanswered`).
    fn push_unanswered(&mut self, route: Route, xid: i32) {
        let z = self.committed.last_zxid();
        let reply = Reply {
            shard: route.shard,
            conn: route.conn,
            kind: ReplyKind::Unanswered { xid },
        };
        self.push_item(z, Vec::new(), Some(reply), None);
    }

    /// Answers a handshake (`Err(why)`: refuses it, closing the connection).
    fn push_connect_reply(
        &mut self,
        route: Route,
        response: Result<ConnectResponse, &'static str>,
    ) {
        let session_id = response.as_ref().map_or(0, |r| r.session_id);
        let z = self.committed.last_zxid();
        let reply = Reply {
            shard: route.shard,
            conn: route.conn,
            kind: ReplyKind::Connect {
                response,
                session_id,
            },
        };
        self.push_item(z, Vec::new(), Some(reply), None);
    }

    /// A committed txn: into the committed tree, the session table, and the answer
    /// to whoever waits for it here.
    fn apply_committed(&mut self, entry: Entry) {
        let zxid = entry.zxid.as_i64();
        let (txn, origin, digest) = match self.proposed.front() {
            Some(p) if p.zxid == entry.zxid => {
                let p = self.proposed.pop_front().unwrap();
                (p.txn, p.origin, None)
            }
            _ => match Txn::decode(&entry.payload) {
                Ok((txn, digest)) => (txn, Origin::None, digest),
                Err(e) => {
                    // A committed txn we cannot read: our state would diverge.
                    self.fatal = Some(format!("committed txn {zxid:#x} cannot be decoded: {e}"));
                    return;
                }
            },
        };
        let applied = if matches!(self.role, Role::Leading { .. }) {
            self.stats.leader_commits.fetch_add(1, Relaxed);
            tree::apply(&mut self.committed, &txn)
        } else {
            // A learner applies as the reference's learners do: a SNAP from a
            // reference leader is fuzzy, and the txns after it may find their effect
            // already there (a passed multi must not be undone for that).
            tree::apply_restored(&mut self.committed, &txn)
        };
        if stats::DigestLog::wants(zxid) {
            self.digest_log.note(zxid, self.committed.digest());
        }
        self.check_digest(zxid, digest);
        let mut closed = None;
        match &txn.op {
            TxnOp::CreateSession { timeout_ms } => {
                self.sessions.add(txn.session_id, *timeout_ms, mono_ms());
                // An upgraded local session is global from here.
                self.local.upgraded(txn.session_id);
            }
            TxnOp::CloseSession { .. } => {
                self.sessions.remove(txn.session_id);
                self.owners.remove(&txn.session_id);
                closed = Some(txn.session_id);
            }
            _ => {}
        }
        self.trigger_snapshot_accounting(entry.payload.len());
        let mut result = applied.result;
        if !self.ephemeral_on_local.is_empty()
            && self.ephemeral_on_local.remove(&(txn.session_id, txn.cxid))
            && result.is_err()
        {
            // The leader refused an ephemeral of a local session that could not
            // upgrade: its client hears why, as from the reference.
            result = Err(ErrorCode::EphemeralOnLocalSession);
        }
        let reply = self.reply_for(&txn, origin, result);
        self.push_item(zxid, applied.events, reply, closed);
        self.release_local_syncs(entry.zxid);
    }

    /// A leader to be whose tree still holds stand-in ACLs (a fuzzy snapshot whose
    /// ACL indices no txn after it supplied) says so: only a super user may use
    /// those nodes, and its snapshots and SNAP streams carry the stand-ins on.
    fn warn_unresolved_acls(&self) {
        let left = self.committed.unresolved_acls();
        if let Some((path, index)) = left.first() {
            tracing::warn!(
                "{} znode(s) still hold a stand-in for an ACL index a leader's snapshot \
                 lacked (the first: {path:?}, index {index}); only a super user may use \
                 them until their ACL is set again",
                left.len()
            );
        }
    }

    /// Compares the leader's digest after a committed txn with ours (see
    /// `durable::DigestCheck` for the mismatches expected after a SNAP).
    fn check_digest(&mut self, zxid: i64, digest: Option<u64>) {
        let ours = self.committed.digest();
        match self.digests.check(zxid, digest, ours) {
            durable::DigestSeen::Settled(n) => tracing::info!(
                "{n} txn(s) after the leader's snapshot found part of their effect in it (a \
                 fuzzy snapshot); the digests agree from {zxid:#x} on"
            ),
            durable::DigestSeen::Mismatch if self.digests.mismatches().is_power_of_two() => {
                tracing::error!(
                    "tree digest after txn {zxid:#x} is {ours:#x}, the leader's is {:#x} ({} \
                     mismatch(es) so far)",
                    digest.unwrap_or_default(),
                    self.digests.mismatches()
                );
            }
            _ => {}
        }
    }

    /// Who this committed txn answers, if anyone here.
    fn reply_for(
        &mut self,
        txn: &Txn,
        origin: Origin,
        result: Result<Response, ErrorCode>,
    ) -> Option<Reply> {
        let op = |route: Route, xid: i32, result| Reply {
            shard: route.shard,
            conn: route.conn,
            kind: ReplyKind::Op { xid, result },
        };
        match origin {
            Origin::Local(route, xid) => return Some(op(route, xid, result)),
            Origin::Connect(route, timeout, read_only) => {
                let resp = self.session_response(txn.session_id, timeout, read_only);
                return Some(Reply {
                    shard: route.shard,
                    conn: route.conn,
                    kind: ReplyKind::Connect {
                        response: Ok(resp),
                        session_id: txn.session_id,
                    },
                });
            }
            Origin::None => {}
        }
        // A learner: the oldest request this session forwarded.
        if let TxnOp::CreateSession { .. } = txn.op {
            let p = self.connects.remove(&txn.session_id)?;
            let resp = self.session_response(txn.session_id, p.timeout_ms, p.read_only);
            return Some(Reply {
                shard: p.route.shard,
                conn: p.route.conn,
                kind: ReplyKind::Connect {
                    response: Ok(resp),
                    session_id: txn.session_id,
                },
            });
        }
        let q = self.waiting.get_mut(&txn.session_id)?;
        if q.front().map(|(xid, _)| *xid) != Some(txn.cxid) {
            return None;
        }
        let (xid, route) = q.pop_front().unwrap();
        if q.is_empty() {
            self.waiting.remove(&txn.session_id);
        }
        Some(op(route, xid, result))
    }

    fn release_local_syncs(&mut self, upto: Zxid) {
        while self.local_syncs.front().is_some_and(|(z, ..)| *z <= upto) {
            let (_, route, xid, path) = self.local_syncs.pop_front().unwrap();
            self.push_op_reply(route, xid, Ok(Response::Sync { path }));
        }
    }

    fn install_snapshot(&mut self, conn: ConnId, zxid: Zxid, now: i64) {
        let Some((mut tree, sessions)) = self.peers.take_snapshot(conn) else {
            self.fatal = Some("the core installs a snapshot the transport did not receive".into());
            return;
        };
        tree.set_last_zxid(zxid.as_i64());
        // As the reference: our own committed config, not the leader's copy.
        let conf = self.replica.committed_config();
        tree.set_config_node(conf.text(), conf.version(), now);
        tracing::info!(
            "installed the leader's snapshot at {zxid} ({} znodes, {} sessions)",
            tree.node_count(),
            sessions.len()
        );
        let stand_ins = tree.unresolved_acls().len();
        if stand_ins > 0 {
            tracing::info!(
                "{stand_ins} znode(s) of the snapshot name ACL indices its ACL map lacks (a \
                 fuzzy snapshot): nobody may use them until the txns after it supply their ACLs"
            );
        }
        self.committed = tree;
        self.working = self.committed.clone();
        self.digests.expect_early();
        let mut table = SessionTable::new(self.replica.id() as u8, now, self.cfg.tick_time_ms);
        durable::restore_sessions(&mut table, &sessions, mono_ms());
        self.sessions = table;
        self.publish_needed = true;
    }

    /// The leader's history starts from the empty state and replaces ours.
    fn reset_state(&mut self, now: i64) {
        tracing::warn!("dropped our state: the leader syncs us from the empty state");
        let mut tree = Tree::new();
        let conf = self.replica.committed_config();
        tree.set_config_node(conf.text(), conf.version(), now);
        self.committed = tree;
        self.working = self.committed.clone();
        self.sessions = SessionTable::new(self.replica.id() as u8, now, self.cfg.tick_time_ms);
        self.publish_needed = true;
    }

    fn rollback(&mut self, zxid: Zxid, now: i64) {
        match durable::recover_upto(&self.snap_dir, &self.log_dir, zxid.as_i64()) {
            Ok(rec) => {
                tracing::warn!("rolled the state back to {zxid} (the leader truncated after it)");
                self.committed = rec.tree;
                self.committed.set_last_zxid(zxid.as_i64());
                let conf = self.replica.committed_config();
                self.committed
                    .set_config_node(conf.text(), conf.version(), now);
                self.working = self.committed.clone();
                let mut table =
                    SessionTable::new(self.replica.id() as u8, now, self.cfg.tick_time_ms);
                durable::restore_sessions(&mut table, &rec.sessions, mono_ms());
                self.sessions = table;
                self.publish_needed = true;
            }
            Err(e) => {
                tracing::warn!("cannot roll the state back to {zxid}: {e}; asking for a snapshot");
                let at = Zxid(self.committed.last_zxid() as u64);
                self.replica.rollback_failed(at);
            }
        }
    }

    fn on_role(&mut self, role: Role) {
        let was_serving = self.role.serving();
        if matches!(role, Role::Looking) && !matches!(self.role, Role::Looking) {
            self.stats.looking.fetch_add(1, Relaxed);
        }
        let newly_leading =
            matches!(role, Role::Leading { .. }) && !matches!(self.role, Role::Leading { .. });
        self.time_role_change(role);
        self.role = role;
        let mode = match role {
            Role::Leading {
                established: true, ..
            } => Mode::Leader,
            Role::Following { serving: true, .. } => Mode::Follower,
            Role::Observing { serving: true, .. } => Mode::Observer,
            _ => Mode::NotServing,
        };
        tracing::info!("role: {role:?}");
        if newly_leading {
            self.warn_unresolved_acls();
        }
        self.read_only_role(role, mode);
        if was_serving && !role.serving() {
            for tx in &self.mesh.to_shards {
                let _ = tx.send(ToShard::CloseAll(
                    "the ensemble member stopped serving".into(),
                ));
            }
            // What waited for this role's commits is gone with its connections.
            self.proposed.clear();
            self.local_syncs.clear();
            self.gated_syncs.clear();
            self.waiting.clear();
            self.connects.clear();
            self.syncs.clear();
            // Local sessions end with the role (their connections just closed).
            self.local.clear();
            self.ephemeral_on_local.clear();
        }
        if matches!(
            role,
            Role::Leading {
                established: true,
                ..
            }
        ) {
            // The sessions' deadlines start now: only the leader expires them.
            let now = now_ms();
            let list = self.session_list();
            let mut table = SessionTable::new(self.replica.id() as u8, now, self.cfg.tick_time_ms);
            durable::restore_sessions(&mut table, &list, mono_ms());
            self.sessions = table;
        }
        self.working = self.committed.clone();
    }
}

impl Seq {
    // ----- requests from the shards -----------------------------------------------------

    fn handle(&mut self, m: ToSequencer, now: i64) {
        match m {
            ToSequencer::Connect { shard, conn, req } => {
                self.connect(Route { shard, conn }, req, now)
            }
            ToSequencer::Write(w) => self.write(*w, now),
            ToSequencer::Touch(ids) => self.touch(ids),
            ToSequencer::Tick => self.leader_housekeeping(now),
            ToSequencer::Report(tx) => {
                let _ = tx.send(self.report());
            }
            ToSequencer::ResetStats => {
                self.stats.reset_sequencer_metrics();
                self.digests.reset_mismatches();
                for tx in &self.mesh.to_shards {
                    let _ = tx.send(ToShard::ResetStats);
                }
            }
            ToSequencer::Shutdown => self.stopping = true,
        }
    }

    // ----- read-only mode (`read_only`) ---------------------------------------------

    /// The mode's timer: it starts after its grace period of looking; its local
    /// sessions expire (their connections close, as the reference's do).
    // Out of line and cold, all of them: the hot paths (`handle`, `on_event`) stay
    // as they were without the mode (inlined here, they cost ensemble writes
    // ≈ 10 % in an A/B, PERF.md).
    #[cold]
    #[inline(never)]
    fn read_only_housekeeping(&mut self) {
        let change = self.read_only.on_timer(self.mono_ms());
        if change.started {
            tracing::info!(
                "no leader for {} ms: serving read-only clients (readonlymode.enabled)",
                self.cfg.tick_time_ms.max(read_only::GRACE_MS_MIN as _)
            );
            self.stats.set_mode(Mode::ReadOnly);
        }
        let z = self.committed.last_zxid();
        for id in change.expired {
            tracing::info!("read-only session {id:#x} expired");
            self.push_item(z, Vec::new(), None, Some(id));
        }
    }

    /// The session timeout a handshake gets (min/maxSessionTimeout), or `None`
    /// when the client has seen a zxid past ours: refused (closed), as the
    /// reference refuses it, so it tries another server.
    fn handshake_timeout(
        &mut self,
        route: Route,
        req: &crate::proto::ConnectRequest,
    ) -> Option<i32> {
        let last = self.committed.last_zxid();
        if req.last_zxid_seen > last {
            tracing::warn!(
                "refusing session request: client has seen zxid {:#x}, our last zxid is {last:#x}",
                req.last_zxid_seen
            );
            self.push_connect_reply(route, Err(CLIENT_AHEAD));
            return None;
        }
        Some(negotiate_timeout(
            req.timeout_ms,
            self.cfg.min_session_timeout(),
            self.cfg.max_session_timeout(),
        ))
    }

    /// The role changed: the mode's clock, the mode shown, and the end of the mode
    /// (every client connection closes).
    #[cold]
    #[inline(never)]
    fn read_only_role(&mut self, role: Role, mode: Mode) {
        let looking = matches!(role, Role::Looking);
        let change = self.read_only.on_role(looking, self.mono_ms());
        self.stats.set_mode(if self.read_only.active() {
            Mode::ReadOnly
        } else {
            mode
        });
        if change.ended {
            tracing::info!("read-only mode ended: closing its clients' connections");
            for tx in &self.mesh.to_shards {
                let _ = tx.send(ToShard::CloseAll("the read-only mode ended".into()));
            }
        }
    }

    /// A handshake while read-only: only read-only clients, with local sessions.
    #[cold]
    #[inline(never)]
    fn read_only_connect(&mut self, route: Route, req: crate::proto::ConnectRequest) {
        let Some(timeout) = self.handshake_timeout(route, &req) else {
            return;
        };
        let id = req.session_id;
        let global = id != 0 && self.sessions.get(id).is_some();
        let password_ok = req.passwd == SessionTable::password(id);
        let mono = self.mono_ms();
        let asked = req.read_only;
        let response = match self
            .read_only
            .handshake(asked, id, global, password_ok, timeout, mono)
        {
            Handshake::Refuse(why) => Err(why),
            Handshake::Expired => Ok(self.expired_response(asked)),
            Handshake::Resumed { timeout_ms } => Ok(self.session_response(id, timeout_ms, asked)),
            Handshake::Open => {
                let max = self.cfg.max_sessions;
                if max > 0 && self.sessions.len() + self.read_only.session_count() >= max {
                    tracing::warn!(
                        "refusing a new session: the maximum is {max} (corral.maxSessions)"
                    );
                    Ok(self.expired_response(asked))
                } else {
                    let id = self.sessions.allocate_id();
                    self.read_only.open(id, timeout, mono);
                    tracing::info!("read-only session {id:#x} opened");
                    Ok(self.session_response(id, timeout, asked))
                }
            }
        };
        self.push_connect_reply(route, response);
    }

    /// A request the shards hand over while read-only: changes are refused
    /// (NOTREADONLY); a local session may close.
    #[cold]
    #[inline(never)]
    fn read_only_write(&mut self, route: Route, w: WriteReq) {
        if ReadOnly::refuses(&w.req) {
            self.push_op_reply(route, w.xid, Err(ErrorCode::NotReadOnly));
            return;
        }
        if let Request::CloseSession = w.req {
            if self.read_only.close(w.session_id) {
                self.closed_here(route, w.xid, w.session_id);
                return;
            }
        }
        self.push_unanswered(route, w.xid);
    }

    /// A session this member alone knew (read-only or local) closed by its
    /// client: answered Ok, and its connections close behind the answer; no txn.
    fn closed_here(&mut self, route: Route, xid: i32, session_id: i64) {
        let z = self.committed.last_zxid();
        let reply = Reply {
            shard: route.shard,
            conn: route.conn,
            kind: ReplyKind::Op {
                xid,
                result: Ok(Response::Empty),
            },
        };
        self.push_item(z, Vec::new(), Some(reply), Some(session_id));
    }

    // ----- local sessions (`session::local`) -------------------------------------------

    /// A write of one of this member's local sessions, before it goes the usual
    /// way: a close ends the session here (no txn); an ephemeral create upgrades
    /// the session first, or is marked for EphemeralOnLocalSession. The write to
    /// carry on with, if any.
    #[cold]
    #[inline(never)]
    fn local_write(&mut self, route: Route, w: WriteReq, now: i64) -> Option<WriteReq> {
        let id = w.session_id;
        if let Request::CloseSession = w.req {
            if self.local.upgrading(id) {
                // The leader tracks it already: closed there, as a global one.
                self.local.upgraded(id);
                return Some(w);
            }
            self.local.close(id);
            self.closed_here(route, w.xid, id);
            return None;
        }
        match self.local.before_write(id, &w.req) {
            Upgrade::No => {}
            // A create alone: its answer is EphemeralOnLocalSession whatever the
            // leader's error (the reference's learner answers the exception it
            // noted before forwarding); a multi gets the leader's results.
            Upgrade::Refused if !matches!(w.req, Request::Multi(_)) => {
                self.ephemeral_on_local.insert((id, w.xid));
            }
            Upgrade::Refused => {}
            Upgrade::First { timeout_ms } if self.is_leader() => {
                // Tracked from now, as a learner's forwarded upgrade is
                // (`on_forwarded`): the create right behind it passes.
                self.owners.insert(id, Owner::Local);
                self.sessions.add(id, timeout_ms, mono_ms());
                let txn = tree::create_session_txn(0, now, id, timeout_ms);
                self.propose(txn, Origin::None, now);
            }
            Upgrade::First { timeout_ms } => {
                if self
                    .replica
                    .forward(create_session_request(id, timeout_ms))
                    .is_err()
                {
                    self.local.upgrade_failed(id);
                    self.push_unanswered(route, w.xid);
                    return None;
                }
            }
        }
        Some(w)
    }

    /// Local sessions whose clients fell silent for their timeout: their
    /// connections close; no txn (a local session owns no ephemerals).
    #[cold]
    #[inline(never)]
    fn local_housekeeping(&mut self) {
        let z = self.committed.last_zxid();
        for id in self.local.expire(self.mono_ms()) {
            tracing::info!("local session {id:#x} expired");
            self.push_item(z, Vec::new(), None, Some(id));
        }
    }

    fn is_leader(&self) -> bool {
        matches!(
            self.role,
            Role::Leading {
                established: true,
                ..
            }
        )
    }

    fn connect(&mut self, route: Route, req: crate::proto::ConnectRequest, now: i64) {
        if self.read_only.active() {
            self.read_only_connect(route, req);
            return;
        }
        if !self.role.serving() {
            self.push_connect_reply(route, Err(NOT_SERVING));
            return;
        }
        let Some(timeout) = self.handshake_timeout(route, &req) else {
            return;
        };
        let max = self.cfg.max_sessions;
        let open = self.sessions.len() + self.connects.len() + self.local.count();
        if req.session_id == 0 && max > 0 && open >= max {
            tracing::warn!("refusing a new session: the maximum is {max} (corral.maxSessions)");
            self.push_connect_reply(route, Ok(self.expired_response(req.read_only)));
            return;
        }
        if req.session_id != 0 {
            self.reconnect(route, req, timeout);
            return;
        }
        let id = self.sessions.allocate_id();
        if self.local.enabled() {
            // Local: no txn, answered at once (`session::local`).
            self.local.open(id, timeout, self.mono_ms());
            let resp = self.session_response(id, timeout, req.read_only);
            self.push_connect_reply(route, Ok(resp));
            return;
        }
        if self.is_leader() {
            self.owners.insert(id, Owner::Local);
            let txn = tree::create_session_txn(0, now, id, timeout);
            self.propose(txn, Origin::Connect(route, timeout, req.read_only), now);
            return;
        }
        match self.replica.forward(create_session_request(id, timeout)) {
            Ok(()) => {
                self.connects.insert(
                    id,
                    PendingConnect {
                        route,
                        timeout_ms: timeout,
                        read_only: req.read_only,
                    },
                );
            }
            Err(_) => self.push_connect_reply(route, Err(NO_LEADER_LINK)),
        }
    }

    /// A session reconnecting here: the leader decides; a learner asks it.
    fn reconnect(&mut self, route: Route, req: crate::proto::ConnectRequest, timeout: i32) {
        let id = req.session_id;
        if req.passwd != SessionTable::password(id) {
            self.push_connect_reply(route, Ok(self.expired_response(req.read_only)));
            return;
        }
        // A local session resumes on this member only (elsewhere the leader
        // does not know it, and its revalidation says so).
        if self.local.touch(id, self.mono_ms()).is_some() {
            let resp = self.session_response(id, timeout, req.read_only);
            self.push_connect_reply(route, Ok(resp));
            return;
        }
        if self.is_leader() {
            let response = if self.sessions.is_live(id) {
                self.sessions.touch(id, mono_ms());
                self.owners.insert(id, Owner::Local);
                self.session_response(id, timeout, req.read_only)
            } else {
                self.expired_response(req.read_only)
            };
            self.push_connect_reply(route, Ok(response));
            return;
        }
        match self.replica.revalidate(id, timeout) {
            Ok(()) => {
                self.connects.insert(
                    id,
                    PendingConnect {
                        route,
                        timeout_ms: timeout,
                        read_only: req.read_only,
                    },
                );
            }
            Err(_) => self.push_connect_reply(route, Err(NO_LEADER_LINK)),
        }
    }

    fn touch(&mut self, ids: Vec<i64>) {
        if self.read_only.active() {
            let mono = self.mono_ms();
            for id in ids {
                self.read_only.touch(id, mono);
            }
            return;
        }
        let leader = self.is_leader();
        let mono = self.mono_ms();
        for id in ids {
            // A local session is touched here only: no PING carries it, unless
            // its upgrade is under way (the leader tracks it already).
            match self
                .local
                .enabled()
                .then(|| self.local.touch(id, mono))
                .flatten()
            {
                Some(false) => continue,
                Some(true) if !leader => {
                    let timeout = self.local.timeout_ms(id).unwrap_or_default();
                    self.replica.touch(id, timeout);
                    continue;
                }
                _ => {}
            }
            if leader {
                self.sessions.touch(id, mono_ms());
            } else if let Some(s) = self.sessions.get(id) {
                let timeout = s.timeout_ms;
                self.sessions.touch(id, mono_ms());
                self.replica.touch(id, timeout);
            }
        }
    }

    fn write(&mut self, w: WriteReq, now: i64) {
        let route = Route {
            shard: w.shard,
            conn: w.conn,
        };
        if self.read_only.active() {
            self.read_only_write(route, w);
            return;
        }
        // Here and wherever a write cannot be taken, its connection closes
        // unanswered (`ReplyKind::Unanswered`), as the reference's does.
        if !self.role.serving() {
            self.push_unanswered(route, w.xid);
            return;
        }
        let w = match self.local.enabled() && self.local.contains(w.session_id) {
            true => match self.local_write(route, w, now) {
                Some(w) => w,
                None => return,
            },
            false => w,
        };
        if self.is_leader() {
            self.leader_write(route, w, now);
        } else {
            self.learner_write(route, w);
        }
    }

    fn leader_write(&mut self, route: Route, w: WriteReq, now: i64) {
        if let Request::Sync { path } = &w.req {
            // Answered once a quorum showed it still follows us after the sync
            // arrived, and what was proposed before it is committed and applied.
            // (Its answer is an event of a later `pump`, so the entry goes in after.)
            let tag = self.next_sync_tag;
            self.next_sync_tag += 1;
            if self.replica.leader_sync(tag) {
                self.gated_syncs.insert(tag, (route, w.xid, path.clone()));
            } else {
                self.push_unanswered(route, w.xid);
            }
            return;
        }
        let caller = Caller {
            session_id: w.session_id,
            ids: &w.ids,
            is_super: w.is_super,
        };
        let txn = self.prepare(&w.req, w.session_id, w.xid, &caller, Owner::Local, now);
        self.propose(txn, Origin::Local(route, w.xid), now);
    }

    /// The txn a request becomes on the leader (zxid filled in by `propose`).
    fn prepare(
        &mut self,
        req: &Request,
        session_id: i64,
        cxid: i32,
        caller: &Caller,
        owner: Owner,
        now: i64,
    ) -> Txn {
        let error = |code| Txn {
            session_id,
            cxid,
            zxid: 0,
            time_ms: now,
            op: TxnOp::Error(code),
        };
        if matches!(req, Request::Reconfig(_)) && !self.reconfig_enabled {
            // The reference's first check, before the session's.
            return error(ErrorCode::ReconfigDisabled);
        }
        let global = self.sessions.is_live(session_id);
        // Only a learner's close: the leader's own clients' requests of an
        // unknown session are dropped there (ZooKeeperServer.touch).
        let close = matches!(req, Request::CloseSession) && owner != Owner::Local;
        let local = !global
            && (self.is_others_local_session(session_id) || self.local.contains(session_id));
        if !session_passes(global, local, close) {
            return error(ErrorCode::SessionExpired);
        }
        if global && !close {
            match self.owners.entry(session_id) {
                std::collections::hash_map::Entry::Occupied(o) if *o.get() != owner => {
                    return error(ErrorCode::SessionMoved);
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(owner);
                }
            }
            self.sessions.touch(session_id, mono_ms());
        }
        if let Request::CloseSession = req {
            self.sessions.set_closing(session_id);
            return tree::close_session_txn(&self.working, 0, now, session_id, cxid);
        }
        if let Request::Reconfig(rr) = req {
            return match self.prepare_reconfig(rr, caller) {
                Ok(data) => Txn {
                    op: TxnOp::Reconfig { data, version: -1 },
                    ..error(ErrorCode::Ok)
                },
                Err(code) => error(code),
            };
        }
        let ctx = TxnContext {
            zxid: 0,
            time_ms: now,
            cxid,
            extended_types_enabled: self.cfg.extended_types_enabled,
            max_data_bytes: self.cfg.jute_max_buffer_bytes,
            enforce_quota: self.cfg.enforce_quota,
            digest_enabled: self.cfg.digest_auth_enabled,
            ephemerals_allowed: global,
        };
        let txn = tree::prepare(&self.working, &ctx, caller, req);
        if !global && self.local.contains(session_id) {
            // Our own local session that could not upgrade: the reference's
            // leader notes EphemeralOnLocalSession before preparing, and its
            // ephemeral creates fail with that, alone or inside a multi.
            return Txn {
                op: refused_as_local(txn.op),
                ..txn
            };
        }
        txn
    }

    /// Whether an unknown session may be another member's local session, which
    /// this leader takes without tracking it: localSessionsEnabled here, and the
    /// id's server byte (arithmetic shift, as the reference) is not ours. Such a
    /// session's writes pass; its ephemeral creates do not (`ephemerals_allowed`).
    fn is_others_local_session(&self, session_id: i64) -> bool {
        self.cfg.local_sessions_enabled && (session_id >> 56) != self.replica.id() as i64
    }

    /// A reconfig request as the reference's PrepRequestProcessor judges it, in its
    /// order (after the session check): one reconfig at a time, the caller's
    /// `curConfigId`, the new members (a whole list, or joiners and leavers applied
    /// to the last-seen config), enough voters, a synced quorum of the new config,
    /// and WRITE on `/zookeeper/config` (world may only READ it: the super user).
    /// The new config's text, versioned with the zxid its txn will get.
    fn prepare_reconfig(
        &mut self,
        rr: &ReconfigRequest,
        caller: &Caller,
    ) -> Result<Vec<u8>, ErrorCode> {
        let last = self.replica.last_seen_config().clone();
        if last.version() != self.replica.committed_config().version() {
            return Err(ErrorCode::ReconfigInProgress);
        }
        if rr.cur_config_id != -1 && rr.cur_config_id != last.version() {
            return Err(ErrorCode::BadVersion);
        }
        // No zxid (not leading any more): the code is never sent, as `propose`
        // then fails the same way and the write goes unanswered.
        let zxid = self
            .replica
            .next_zxid()
            .map_err(|_| ErrorCode::ConnectionLoss)?;
        let mut qv = match &rr.new_members {
            Some(members) => reconfig_new_members(members)?,
            None => reconfig_incremental(last.verifier(), rr)?,
        };
        qv.version = zxid.as_i64();
        let voters = qv.voters().count();
        if voters < 1 || (self.standalone_enabled && voters < 2) {
            tracing::warn!("reconfig refused: the new config must include at least 2 followers");
            return Err(ErrorCode::BadArguments);
        }
        let m = Membership::new(qv);
        if !self.replica.is_quorum_synced(&m) {
            tracing::warn!("reconfig refused: no connected and synced quorum of the new config");
            return Err(ErrorCode::NewConfigNoQuorum);
        }
        let acl = self
            .working
            .get(CONFIG_NODE)
            .map(|n| n.acl().to_vec())
            .unwrap_or_default();
        tree::check_acl(&acl, crate::proto::perms::WRITE, caller)?;
        Ok(m.text().to_vec())
    }

    /// Leader: gives the txn the next zxid, applies it to the working tree (for the
    /// next prepare and its digest) and proposes it.
    fn propose(&mut self, mut txn: Txn, origin: Origin, now: i64) {
        let zxid = match self.replica.next_zxid() {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!("cannot propose: {e}");
                if let Origin::Local(route, xid) = origin {
                    self.push_unanswered(route, xid);
                }
                return;
            }
        };
        txn.zxid = zxid.as_i64();
        let _ = now;
        tree::apply(&mut self.working, &txn);
        self.enc.clear();
        let digest = txn.carries_digest().then(|| self.working.digest());
        txn.encode(&mut self.enc, digest);
        // One writer (this core): the time stamp only orders merged stats.
        self.stats.proposal_bytes.record(self.enc.len() as u64, 0);
        self.stats.proposals.fetch_add(1, Relaxed);
        let entry = Entry {
            zxid,
            payload: Bytes::copy_from_slice(&self.enc),
            reconfig: wire::reconfig_of(&txn.op).ok().flatten(),
        };
        if let Err(e) = self.replica.propose(entry) {
            tracing::warn!("proposal {zxid} refused: {e}");
            self.working = self.committed.clone();
            for p in &self.proposed {
                tree::apply(&mut self.working, &p.txn);
            }
            if let Origin::Local(route, xid) = origin {
                self.push_unanswered(route, xid);
            }
            return;
        }
        self.proposed.push_back(Proposed { zxid, txn, origin });
    }

    /// Learner: the leader decides every write; ours goes there as a REQUEST.
    fn learner_write(&mut self, route: Route, w: WriteReq) {
        let mut body = Vec::new();
        w.req.encode_body(&mut body);
        let op = match &w.req {
            Request::CloseSession => OP_CLOSE_SESSION,
            r => r.opcode(),
        };
        let f = Forwarded {
            session_id: w.session_id,
            cxid: w.xid,
            op,
            body: Bytes::from(body),
            auth: Some(Arc::clone(&w.ids)),
        };
        if self.replica.forward(f).is_err() {
            if !self.ephemeral_on_local.is_empty() {
                // No answer will come to map.
                self.ephemeral_on_local.remove(&(w.session_id, w.xid));
            }
            self.push_unanswered(route, w.xid);
            return;
        }
        match w.req {
            Request::Sync { path } => self.syncs.push_back((route, w.xid, path)),
            _ => self
                .waiting
                .entry(w.session_id)
                .or_default()
                .push_back((w.xid, route)),
        }
    }

    /// Leader: a learner's request, prepared and proposed like a local one (its
    /// answer goes back with the commit).
    fn on_forwarded(&mut self, conn: ConnId, from: u64, req: Forwarded, now: i64) {
        if req.op == crate::zab::OP_SYNC {
            // In order behind the learner's earlier requests, proposed just above.
            self.replica.forwarded_sync(conn);
            return;
        }
        let ids = req.auth.unwrap_or_default();
        let txn = match req.op {
            OP_CREATE_SESSION => {
                let mut r = crate::proto::Reader::new(&req.body);
                let timeout = r.i32().unwrap_or(self.cfg.max_session_timeout() as i32);
                self.owners.insert(req.session_id, Owner::Learner(from));
                // Tracked from now, as the reference's PrepRequestProcessor does: a
                // learner upgrading a local session forwards its ephemeral create
                // right behind this, before the txn commits.
                self.sessions.add(req.session_id, timeout, mono_ms());
                tree::create_session_txn(0, now, req.session_id, timeout)
            }
            OP_CLOSE_SESSION => self.prepare(
                &Request::CloseSession,
                req.session_id,
                req.cxid,
                &Caller {
                    session_id: req.session_id,
                    ids: &ids,
                    is_super: false,
                },
                Owner::Learner(from),
                now,
            ),
            op => match Request::decode(op, &mut crate::proto::Reader::new(&req.body)) {
                Ok(Ok(r)) => {
                    let is_super = self.is_super(&ids);
                    let caller = Caller {
                        session_id: req.session_id,
                        ids: &ids,
                        is_super,
                    };
                    self.prepare(
                        &r,
                        req.session_id,
                        req.cxid,
                        &caller,
                        Owner::Learner(from),
                        now,
                    )
                }
                other => {
                    tracing::warn!(
                        "server {from} (link {conn}) forwarded an unreadable request (op {op}): {:?}",
                        other.err()
                    );
                    Txn {
                        session_id: req.session_id,
                        cxid: req.cxid,
                        zxid: 0,
                        time_ms: now,
                        op: TxnOp::Error(ErrorCode::MarshallingError),
                    }
                }
            },
        };
        self.propose(txn, Origin::None, now);
    }

    /// A forwarded request's caller passes every ACL check: it authenticated as
    /// the super user, or this leader runs with skipACL=yes (the reference's
    /// leader checks a forwarded write's ACLs with its own setting).
    fn is_super(&self, ids: &[crate::proto::Id]) -> bool {
        self.cfg.skip_acl || ids.iter().any(|i| i.scheme == "super")
    }

    /// The reference's election_time (looking until following or leading) and
    /// follower/observer_sync_time (following until serving), in ms.
    fn time_role_change(&mut self, role: Role) {
        let now = Instant::now();
        let ms = |since: Instant| now.saturating_duration_since(since).as_millis() as u64;
        match (self.role, role) {
            (_, Role::Looking) => self.role_since = now,
            (Role::Looking, _) => {
                self.stats.election_ms.record(ms(self.role_since));
                self.role_since = now;
            }
            (Role::Following { serving: false, .. }, Role::Following { serving: true, .. }) => {
                self.stats.follower_sync_ms.record(ms(self.role_since))
            }
            (Role::Observing { serving: false, .. }, Role::Observing { serving: true, .. }) => {
                self.stats.observer_sync_ms.record(ms(self.role_since))
            }
            _ => {}
        }
    }

    /// Leader only: expire sessions, remove empty containers and expired TTL nodes.
    fn leader_housekeeping(&mut self, now: i64) {
        if !self.is_leader() {
            self.containers_checked_ms = None;
            self.sessions.stop_checking();
            self.silences.clear();
            return;
        }
        self.expire_sessions(now);
        self.clean_up_nodes(now);
    }

    /// Leader: proposes the close of every session past its deadline. Time this
    /// core lost (a pause) moves the deadlines first (`SessionTable::catch_up`).
    /// The sessions of a learner silent for over a tickTime are not judged: their
    /// clients' pings may be waiting in that member (paused, or its core held).
    /// Nor for a tickTime after it is heard again, as its first answers may go out
    /// before it has read those pings; nor for a tickTime after syncLimit drops it,
    /// by when its clients had the time to move elsewhere.
    fn expire_sessions(&mut self, now: i64) {
        let mono = mono_ms();
        catch_up_sessions(&mut self.sessions, mono);
        self.track_silences(mono);
        for id in self.sessions.expire(mono) {
            if let Some(&Owner::Learner(sid)) = self.owners.get(&id) {
                if let Some(silence) = self.silences.get_mut(&sid) {
                    self.sessions.defer(id, mono);
                    if !std::mem::replace(&mut silence.said, true) {
                        tracing::info!(
                            "member {sid} has been silent for over a tickTime: its \
                             clients' sessions are kept until a tickTime after it \
                             answers again or is dropped (their pings may be waiting \
                             in it)"
                        );
                    }
                    continue;
                }
            }
            tracing::info!("session {id:#x} expired");
            let txn = tree::close_session_txn(&self.working, 0, now, id, 0);
            self.propose(txn, Origin::None, now);
        }
    }

    /// Leader: notes the learners silent now, and forgets those heard again (or
    /// dropped) for a tickTime.
    fn track_silences(&mut self, mono: i64) {
        let silent = self.replica.silent_learners();
        for sid in &silent {
            self.silences.entry(*sid).or_default().heard_again_ms = None;
        }
        let tick = self.cfg.tick_time_ms as i64;
        self.silences.retain(|sid, s| {
            silent.contains(sid) || mono - *s.heard_again_ms.get_or_insert(mono) < tick
        });
    }

    /// Leader: removes empty containers and expired TTL nodes, once per
    /// `container_check_interval_ms`.
    fn clean_up_nodes(&mut self, now: i64) {
        let at = self.mono_ms();
        let checked = *self.containers_checked_ms.get_or_insert(at);
        if at - checked < self.cfg.container_check_interval_ms {
            return;
        }
        self.containers_checked_ms = Some(at);
        for path in self.working.cleanup_candidates(now) {
            let txn = tree::cleanup_txn(&self.working, 0, now, &path);
            self.propose(txn, Origin::None, now);
        }
    }

    // ----- publishing and snapshots --------------------------------------------------------

    fn publish(&mut self) {
        self.publish_needed = false;
        let items = std::mem::take(&mut self.items);
        if !items.is_empty() {
            self.stats.commit_batch_size.record(items.len() as u64);
        }
        let batch = Arc::new(Batch {
            tree: Arc::new(self.committed.clone()),
            last_zxid: self.committed.last_zxid(),
            items,
        });
        self.stats
            .last_zxid
            .store(batch.last_zxid, std::sync::atomic::Ordering::Release);
        self.stats
            .node_count
            .store(self.committed.node_count() as u64, Relaxed);
        let sessions = self.sessions.len() + self.read_only.session_count() + self.local.count();
        self.stats.session_count.store(sessions as u64, Relaxed);
        for (shard, tx) in self.mesh.to_shards.iter().enumerate() {
            if let Err(super::chan::SendError::Full(_)) = tx.send(ToShard::Batch(batch.clone())) {
                // A shard that misses a batch would serve a stale tree: stop instead.
                self.fatal.get_or_insert_with(|| super::shard_stuck(shard));
            }
        }
    }

    fn trigger_snapshot_accounting(&mut self, bytes: usize) {
        if self.trigger.record(bytes as u64) {
            self.want_snapshot = true;
        }
    }

    /// Snapshots of the committed tree only, in the background.
    fn maybe_snapshot(&mut self) {
        if !self.want_snapshot || self.snapshotting.swap(true, Relaxed) {
            return;
        }
        self.want_snapshot = false;
        self.trigger.reset(self.rng.next_u64());
        durable::spawn_snapshot(
            self.committed.clone(),
            self.session_list(),
            self.snapshotting.clone(),
            self.retention.clone(),
            self.stats.clone(),
        );
    }

    fn report(&self) -> SequencerReport {
        let observer_links = self.replica.observer_links();
        let conns: Vec<ConnId> = observer_links.iter().map(|(c, _)| *c).collect();
        let observers = (self.peers.link_infos(&conns).into_iter())
            .map(|info| {
                let sid = observer_links.iter().find(|(c, _)| *c == info.conn);
                (sid.and_then(|(_, s)| *s), info)
            })
            .collect();
        SequencerReport {
            leader: self.replica.leader_stats(),
            observers,
            quorum: Some(QuorumReport {
                my_id: self.replica.id(),
                role: self.replica.role(),
                servers: self
                    .replica
                    .committed_config()
                    .verifier()
                    .servers
                    .values()
                    .cloned()
                    .collect(),
            }),
            digest_log: self.digest_log.entries(),
            digest_mismatches: self.digests.mismatches(),
            local_session_count: self.local.count(),
            ..SequencerReport::of(&self.committed, &self.sessions)
        }
    }
}

/// Whether the leader's prepare takes a request of a session that is `global`
/// (tracked here) or may be `others_local` (another member's local session), as
/// the reference's PrepRequestProcessor: a closeSession passes unchecked (its
/// session check is left out there, since the expirer closes sessions it does
/// not own), so a close of a session the leader no longer knows commits, and
/// its learner answers the client Ok; anything else of an unknown session is
/// SessionExpired. A close skips the owner check (SessionMoved) for the same
/// reason.
fn session_passes(global: bool, others_local: bool, close: bool) -> bool {
    global || others_local || close
}

/// The createSession a learner forwards for a new global session, or for a
/// local one it upgrades: cxid 0, the body the session's timeout (as the
/// reference's learner writes it).
fn create_session_request(session_id: i64, timeout_ms: i32) -> Forwarded {
    let mut body = Vec::with_capacity(4);
    body.put_i32(timeout_ms);
    Forwarded {
        session_id,
        cxid: 0,
        op: OP_CREATE_SESSION,
        body: Bytes::from(body),
        auth: None,
    }
}

/// A prepared txn of this leader's own local session: the SessionExpired its
/// ephemeral creates got (`TxnContext::ephemerals_allowed`) is
/// EphemeralOnLocalSession, in an error txn or among a multi's results.
fn refused_as_local(op: TxnOp) -> TxnOp {
    let swap = |op: TxnOp| match op {
        TxnOp::Error(ErrorCode::SessionExpired) => TxnOp::Error(ErrorCode::EphemeralOnLocalSession),
        other => other,
    };
    match op {
        TxnOp::Multi(ops) => TxnOp::Multi(ops.into_iter().map(swap).collect()),
        other => swap(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_sessions_refused_ephemeral_reads_as_such() {
        let expired = TxnOp::Error(ErrorCode::SessionExpired);
        let local = TxnOp::Error(ErrorCode::EphemeralOnLocalSession);
        assert_eq!(refused_as_local(expired.clone()), local);
        let other = TxnOp::Error(ErrorCode::NoNode);
        assert_eq!(refused_as_local(other.clone()), other);
        let inconsistent = TxnOp::Error(ErrorCode::RuntimeInconsistency);
        assert_eq!(
            refused_as_local(TxnOp::Multi(vec![expired, inconsistent.clone()])),
            TxnOp::Multi(vec![local, inconsistent])
        );
    }

    #[test]
    fn a_close_passes_for_any_session_other_requests_need_a_known_one() {
        assert!(session_passes(true, false, false));
        assert!(session_passes(false, true, false));
        assert!(
            !session_passes(false, false, false),
            "unknown: SessionExpired"
        );
        assert!(session_passes(false, false, true), "a close is not checked");
    }

    fn last() -> QuorumVerifier {
        QuorumVerifier::parse_text(
            "server.1=10.0.0.1:2888:3888;2181\nserver.2=10.0.0.2:2888:3888;2181\n\
             server.3=10.0.0.3:2888:3888;2181\nversion=100000000",
        )
        .unwrap()
    }

    fn incremental(
        joining: Option<&str>,
        leaving: Option<&str>,
    ) -> Result<QuorumVerifier, ErrorCode> {
        let rr = ReconfigRequest {
            joining: joining.map(str::to_string),
            leaving: leaving.map(str::to_string),
            new_members: None,
            cur_config_id: -1,
        };
        reconfig_incremental(&last(), &rr)
    }

    #[test]
    fn incremental_reconfigs_join_and_leave_as_the_reference() {
        let qv = incremental(
            Some(" server.4=10.0.0.4:2888:3888:observer;2181 , server.2=10.0.0.9:1:2;3"),
            Some("1,"),
        )
        .unwrap();
        assert_eq!(
            qv.servers.keys().copied().collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(
            qv.servers[&2].quorum.host, "10.0.0.9",
            "a joiner replaces its id"
        );
        assert_eq!(qv.servers[&4].role, crate::config::PeerRole::Observer);
        // Formats the reference refuses, and how.
        let bad = |j: Option<&str>, l: Option<&str>| incremental(j, l).unwrap_err();
        assert_eq!(bad(None, Some("x")), ErrorCode::MarshallingError);
        assert_eq!(
            bad(Some("server.x=h:1:2;3"), None),
            ErrorCode::MarshallingError
        );
        assert_eq!(bad(Some("server.4"), None), ErrorCode::BadArguments);
        assert_eq!(
            bad(Some("server.4=h:1:2"), None),
            ErrorCode::BadArguments,
            "no client port"
        );
        assert_eq!(bad(Some("server.4=h:1"), None), ErrorCode::BadArguments);
        // Another member's address (loopback addresses are not compared).
        assert_eq!(
            bad(Some("server.4=10.0.0.3:2888:3999;2181"), None),
            ErrorCode::BadArguments
        );
        assert!(incremental(
            Some("server.4=127.0.0.1:1:2;3,server.5=127.0.0.1:1:2;3"),
            None
        )
        .is_ok());
    }

    #[test]
    fn a_whole_member_list_may_use_commas_or_newlines() {
        let qv =
            reconfig_new_members("server.1=h:1:2;3,server.2=h:4:5;6\nserver.3=h:7:8;9").unwrap();
        assert_eq!(qv.voters().count(), 3);
        assert_eq!(
            reconfig_new_members("bogus=1"),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            reconfig_new_members("server.1=h:1:2:observer;3"),
            Err(ErrorCode::BadArguments)
        );
    }
}
