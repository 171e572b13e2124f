//! Deterministic simulator of an ensemble running the replication core: 3, 5 or 7
//! voters plus observers and simulated clients, single-threaded, driven by one seed;
//! in half the seeds with dynamic reconfiguration on, spare servers that start
//! outside the config, and reconfigs proposed by the leader during the faults.
//!
//! Test-only (or the `sim` feature); runs on the test thread. Time is in simulated
//! milliseconds, advanced in steps. The network is the reference's: election
//! notifications are datagrams (the transport's one-slot queues drop, duplicate and
//! replay them), quorum links are TCP connections (in order and reliable until they
//! break; a break reaches both ends; only a LEADING server accepts). Each node has a
//! simulated disk (synced and unsynced writes), a state machine (a digest chain over
//! applied txns), and a driver that does what the server's sequencer does with the
//! core's outputs. Clients write through leaders and followers (REQUEST forwarding)
//! and issue syncs through learners.
//!
//! Checks, after every step:
//! - at most one leader is established per epoch;
//! - applied histories agree: a txn applied anywhere at zxid z leaves the same
//!   digest (so the same history up to z) on every node that applies z;
//! - a newly established leader holds every txn committed before it;
//! - (optional) every committed txn is durable on a quorum of the voters of the
//!   config it was committed in;
//! - a config version names one membership wherever it is seen, and a config
//!   activated from a reconfig txn is activated only once that txn is committed;
//! - clients: a write is ordered after every write acknowledged before it was
//!   invoked, writes of one client commit in issue order, a request commits at most
//!   once, and a sync returns only once its server applied every write acknowledged
//!   before the sync was invoked.
//!
//! Faults: notification loss/duplication/delay, connection breaks, partitions in
//! changing patterns, crashes (losing unsynced writes, possibly keeping a prefix:
//! a torn tail) and restarts, slow disks; and (reconfig seeds) membership changes:
//! observers and participants added and removed, leaders removing or demoting
//! themselves, spares joining. Then faults stop: a leader must be
//! established and a new client write acknowledged within `recovery_ms_max`; then,
//! with clients stopped, every node must serve and hold the same state within
//! `converge_ms_max`.
//!
//! Replay a seed: `ZAB_SEED=1234 ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay -- --nocapture`.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{
    Config, ConnId, DurableState, Entry, Event, Forwarded, Input, Membership, Notification, Output,
    Packet, PlantedBug, Ready, Replica, Role, ServerId, Write, Zxid, CORE_CONN_BIT, OP_SYNC,
};

/// Simulated milliseconds per step.
pub const STEP_MS: u64 = 5;

/// One simulation's shape and fault rates (chances are per mille).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub voters: usize,
    pub observers: usize,
    pub clients: usize,
    /// Clients that only sync (a leader with none of its own writes outstanding
    /// answers syncs at once: where a deposed leader's stale answer would show).
    pub sync_clients: usize,
    /// Per step, chance a writing client acts (low: a leader often idle, with
    /// nothing outstanding to hold a deposed leader's syncs back).
    pub writer_act_per_mille: u32,
    /// Milliseconds with faults; then the network heals and everyone restarts.
    pub fault_ms: u64,
    /// After healing, a new client write must be acknowledged within this.
    pub recovery_ms_max: u64,
    /// Then, with clients stopped, every node must serve and agree within this (0: skip).
    pub converge_ms_max: u64,
    pub delay_ms_max: u64,
    pub notify_drop_per_mille: u32,
    pub notify_dup_per_mille: u32,
    /// Per step, chance one random connection breaks.
    pub break_per_mille: u32,
    /// Per 100 ms, chance the partition pattern changes.
    pub partition_per_mille: u32,
    /// Per node per 100 ms.
    pub crash_per_mille: u32,
    /// Per crash, chance some unsynced writes survive (a torn tail).
    pub torn_per_mille: u32,
    /// Per ready batch, chance its sync completes only on a later step.
    pub slow_sync_per_mille: u32,
    pub tick_ms: u64,
    pub committed_log_count_max: usize,
    pub in_flight_proposals_max: usize,
    pub zxid_counter_max: u32,
    pub bug: Option<PlantedBug>,
    /// Check quorum durability of committed txns (off only to show the other checks
    /// catch a planted bug too).
    pub check_durable_quorum: bool,
    pub trace: bool,
    /// reconfigEnabled on every server.
    pub reconfig: bool,
    /// Servers started outside the config (each lists itself as an observer, as
    /// an operator starts a joiner); only with `reconfig`.
    pub spares: usize,
    /// Per 100 ms with faults, chance the leader is asked for a reconfig.
    pub reconfig_per_mille: u32,
}

impl SimConfig {
    /// Derives a varied configuration from a seed.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = SmallRng::seed_from_u64(seed ^ 0x5eed_c0de);
        SimConfig {
            seed,
            voters: [3, 3, 5, 7][r.gen_range(0..4)],
            observers: r.gen_range(0..=2),
            clients: r.gen_range(1..=4),
            sync_clients: 0,
            writer_act_per_mille: 300,
            fault_ms: 6_000,
            recovery_ms_max: 8_000,
            converge_ms_max: 6_000,
            delay_ms_max: r.gen_range(1..=20),
            notify_drop_per_mille: r.gen_range(0..=100),
            notify_dup_per_mille: r.gen_range(0..=50),
            break_per_mille: r.gen_range(0..=20),
            partition_per_mille: r.gen_range(0..=150),
            crash_per_mille: r.gen_range(0..=60),
            torn_per_mille: r.gen_range(0..=500),
            slow_sync_per_mille: r.gen_range(0..=400),
            tick_ms: 100,
            committed_log_count_max: [3, 10, 500][r.gen_range(0..3)],
            in_flight_proposals_max: r.gen_range(1..=32),
            zxid_counter_max: if r.gen_bool(0.15) { 15 } else { u32::MAX - 1 },
            bug: None,
            check_durable_quorum: true,
            trace: false,
            reconfig: false,
            spares: 0,
            reconfig_per_mille: 0,
        }
        .with_reconfig(&mut r)
        .with_sync_clients(&mut r)
    }

    /// Drawn after everything else, so the other fields stay as they were.
    /// A longer tick in some: a deposed leader notices its lost quorum only at a
    /// tick, so its window for stale answers is longer than an election.
    fn with_sync_clients(mut self, r: &mut SmallRng) -> SimConfig {
        self.sync_clients = r.gen_range(0..=2);
        if r.gen_bool(0.3) {
            self.tick_ms = 400;
        }
        if self.sync_clients > 0 && r.gen_bool(0.5) {
            self.writer_act_per_mille = 20;
        }
        self
    }

    /// Half the seeds run with reconfig (drawn last, so the other fields stay as
    /// they were for every seed).
    fn with_reconfig(mut self, r: &mut SmallRng) -> SimConfig {
        if r.gen_bool(0.5) {
            self.reconfig = true;
            self.spares = r.gen_range(0..=2);
            self.reconfig_per_mille = r.gen_range(20..=200);
        }
        self
    }
}

/// Figures of one run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Inputs fed to replicas plus proposals.
    pub steps: u64,
    pub commits: u64,
    pub crashes: u64,
    pub leaders: u64,
    pub messages: u64,
    /// Milliseconds from healing to the first acknowledged post-heal write.
    pub recovery_ms: u64,
    pub diff_syncs: u64,
    pub trunc_syncs: u64,
    pub snap_syncs: u64,
    pub syncs_checked: u64,
    /// Of those, syncs answered by a leader to its own clients.
    pub leader_syncs_checked: u64,
    pub acked_writes: u64,
    /// Reconfigs proposed, and activations seen (on any server).
    pub reconfigs: u64,
    pub activations: u64,
}

type Check = Result<(), String>;

/// The node's state machine: a digest chain over applied txns, and the txns
/// themselves (a persistent vector, so states clone cheaply) for precise checks.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
struct Sm {
    /// The zxid the state is labelled with (last txn, or an epoch start after SNAP).
    label: Zxid,
    last_txn: Zxid,
    count: u64,
    digest: u64,
    txns: imbl::Vector<(Zxid, u64)>,
}

fn mix(mut h: u64, x: u64) -> u64 {
    h ^= x
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2);
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

fn hash_bytes(b: &[u8]) -> u64 {
    b.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, x| mix(h, *x as u64))
}

impl Sm {
    fn apply(&mut self, e: &Entry) {
        let h = hash_bytes(&e.payload);
        self.label = e.zxid;
        self.last_txn = e.zxid;
        self.count += 1;
        self.digest = mix(mix(self.digest, e.zxid.0), h);
        self.txns.push_back((e.zxid, h));
    }

    /// The state includes this txn.
    fn holds(&self, zxid: Zxid, hash: u64) -> bool {
        self.txns
            .binary_search_by(|(z, _)| z.cmp(&zxid))
            .is_ok_and(|i| self.txns[i].1 == hash)
    }
}

/// What a disk holds.
#[derive(Clone, Default, Debug)]
struct DiskState {
    accepted: u32,
    current: u32,
    snapshot: Option<Sm>,
    log: Vec<Entry>,
    /// The dynamic config files (reconfig): committed, and last seen.
    config: Option<Membership>,
    next: Option<Membership>,
}

impl DiskState {
    fn apply(&mut self, w: &Write, captured: Option<Sm>) -> Check {
        match w {
            Write::AcceptedEpoch(e) => self.accepted = *e,
            Write::CurrentEpoch(e) => self.current = *e,
            Write::Append(e) => {
                let last = self.last_zxid();
                if e.zxid <= last {
                    return Err(format!("append of {:?} after {last:?}", e.zxid));
                }
                self.log.push(e.clone());
            }
            Write::TruncateAfter(z) => self.log.retain(|e| e.zxid <= *z),
            Write::Snapshot(z) => {
                let sm = captured.ok_or("a snapshot write without a captured state")?;
                if sm.label != *z {
                    return Err(format!(
                        "snapshot write at {z:?} of a state at {:?}",
                        sm.label
                    ));
                }
                self.log.clear();
                self.snapshot = Some(sm);
            }
            Write::CommittedConfig(m) => {
                if self
                    .next
                    .as_ref()
                    .is_some_and(|n| n.version() <= m.version())
                {
                    self.next = None;
                }
                self.config = Some((**m).clone());
            }
            Write::LastSeenConfig(m) => self.next = Some((**m).clone()),
        }
        Ok(())
    }

    fn last_zxid(&self) -> Zxid {
        self.log
            .last()
            .map(|e| e.zxid)
            .or(self.snapshot.as_ref().map(|s| s.label))
            .unwrap_or(Zxid::ZERO)
    }

    /// The state after the snapshot and every log entry up to `upto`.
    fn state_upto(&self, upto: Zxid) -> Result<Sm, String> {
        let mut sm = self.snapshot.clone().unwrap_or_default();
        if sm.label > upto {
            return Err(format!("snapshot at {:?} is past {upto:?}", sm.label));
        }
        for e in self.log.iter().filter(|e| e.zxid <= upto) {
            if e.zxid > sm.label {
                sm.apply(e);
            }
        }
        sm.label = sm.label.max(upto.min(self.last_zxid()));
        Ok(sm)
    }
}

#[derive(Default)]
struct Disk {
    synced: DiskState,
    unsynced: Vec<(Write, Option<Sm>)>,
}

impl Disk {
    fn view(&self) -> Result<DiskState, String> {
        let mut d = self.synced.clone();
        for (w, c) in &self.unsynced {
            d.apply(w, c.clone())?;
        }
        Ok(d)
    }

    fn sync(&mut self) -> Check {
        for (w, c) in std::mem::take(&mut self.unsynced) {
            self.synced.apply(&w, c)?;
        }
        Ok(())
    }
}

struct Node {
    id: ServerId,
    replica: Option<Replica>,
    restart_at: Option<u64>,
    disk: Disk,
    sm: Sm,
    captured: Option<Sm>,
    /// A batch whose sync is slow, and when it completes.
    held: Option<(Ready, u64)>,
    role: Role,
    /// Snapshots received per connection (the transport's slot).
    received: BTreeMap<ConnId, Sm>,
    /// Syncs this node forwarded, oldest first: (client, required zxid).
    syncs: VecDeque<(usize, Zxid)>,
    /// What this node forwarded, oldest first: `None` a sync, `Some` a client's
    /// write (client, seq). A write forwarded after a sync must not apply before
    /// that sync's SYNC (the reference's learners match both in one queue).
    forwarded: VecDeque<Option<(usize, u64)>>,
    /// Leader: its own clients' syncs at the sync gate, by tag: (client, required).
    gated_syncs: BTreeMap<u64, (usize, Zxid)>,
    /// Leader: syncs through the gate, waiting to apply `at`: (at, client, required).
    ready_syncs: VecDeque<(Zxid, usize, Zxid)>,
}

/// One quorum connection.
struct Link {
    learner: ServerId,
    leader: ServerId,
    learner_conn: ConnId,
    leader_conn: ConnId,
    to_leader: VecDeque<(u64, Wire)>,
    to_learner: VecDeque<(u64, Wire)>,
}

enum Wire {
    Packet(Packet),
    /// The stream after a SNAP packet.
    Snapshot(Sm),
    Fin,
}

#[derive(Debug)]
struct Datagram {
    at: u64,
    seq: u64,
    from: ServerId,
    to: ServerId,
    n: Notification,
}

impl PartialEq for Datagram {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Datagram {}
impl PartialOrd for Datagram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Datagram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Client {
    at: Option<ServerId>,
    next_seq: u64,
    /// seq → (server, invoked at, floor: the highest zxid acked before it)
    outstanding: BTreeMap<u64, (ServerId, u64, Zxid)>,
    sync_out: bool,
    /// Each attachment to a server is a new session (requests in doubt from an
    /// earlier one may still commit later: the reference answers them with
    /// SESSIONMOVED, a check above the core); FIFO holds within a session.
    session: u32,
    session_of: BTreeMap<u64, u32>,
    /// Committed (session, seq) and their zxids.
    committed: BTreeMap<(u32, u64), Zxid>,
}

/// A pending connect: deliver its outcome at `at`.
struct Dial {
    at: u64,
    from: ServerId,
    conn: ConnId,
    to: ServerId,
}

pub struct Sim {
    cfg: SimConfig,
    rng: SmallRng,
    now: u64,
    /// Each server's config when its disk holds none (the initial one; a spare's
    /// lists itself as an observer).
    initial: BTreeMap<ServerId, Membership>,
    nodes: BTreeMap<ServerId, Node>,
    links: Vec<Link>,
    next_leader_conn: ConnId,
    datagrams: BinaryHeap<Datagram>,
    /// The election transport's per-peer memory: the last notification from → to,
    /// and whether it was lost (the reference resends it when the connection comes
    /// back; `resend_lost` models that every 100 ms).
    last_notify: BTreeMap<(ServerId, ServerId), (Notification, bool)>,
    dials: Vec<Dial>,
    seq: u64,
    /// Partition: node → group; nodes talk only within a group.
    groups: BTreeMap<ServerId, u32>,
    faults: bool,
    clients: Vec<Client>,
    clients_on: bool,
    /// Digest of the history after each applied txn, by zxid.
    history: BTreeMap<Zxid, (u64, u64)>,
    /// zxid → (client, seq) of client txns.
    owner: BTreeMap<Zxid, (usize, u64)>,
    /// The committed history: the state of the newest established leader after its
    /// last commit (every earlier leader's commits are in it, which is checked).
    committed: Sm,
    /// The voters of the config the newest committed txn was committed in.
    committed_voters: Vec<ServerId>,
    /// Every config version seen, with its text: a version names one membership.
    configs: BTreeMap<i64, Bytes>,
    /// Reconfig versions activated in this step: their txns must be committed.
    activated: Vec<(ServerId, i64)>,
    /// The highest zxid of a write acknowledged to a client.
    acked: Zxid,
    /// Tags of leader-side client syncs.
    next_sync_tag: u64,
    /// epoch → the leader established in it.
    leaders: BTreeMap<u32, ServerId>,
    stats: Stats,
    last_log: Vec<String>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let rng = SmallRng::seed_from_u64(cfg.seed);
        let voters: Vec<ServerId> = (1..=cfg.voters as u64).collect();
        let observers: Vec<ServerId> =
            (cfg.voters as u64 + 1..=(cfg.voters + cfg.observers) as u64).collect();
        let first_spare = (cfg.voters + cfg.observers) as u64 + 1;
        let spares: Vec<ServerId> = (first_spare..first_spare + cfg.spares as u64).collect();
        let shared = Membership::local(&voters, &observers, 0);
        let mut initial = BTreeMap::new();
        for id in voters.iter().chain(observers.iter()) {
            initial.insert(*id, shared.clone());
        }
        for id in &spares {
            let mut with_me = observers.clone();
            with_me.push(*id);
            initial.insert(*id, Membership::local(&voters, &with_me, 0));
        }
        let mut nodes = BTreeMap::new();
        for id in initial.keys() {
            nodes.insert(
                *id,
                Node {
                    id: *id,
                    replica: None,
                    restart_at: None,
                    disk: Disk::default(),
                    sm: Sm::default(),
                    captured: None,
                    held: None,
                    role: Role::Looking,
                    received: BTreeMap::new(),
                    syncs: VecDeque::new(),
                    forwarded: VecDeque::new(),
                    gated_syncs: BTreeMap::new(),
                    ready_syncs: VecDeque::new(),
                },
            );
        }
        let clients = (0..cfg.clients + cfg.sync_clients)
            .map(|_| Client {
                at: None,
                next_seq: 1,
                outstanding: BTreeMap::new(),
                sync_out: false,
                session: 0,
                session_of: BTreeMap::new(),
                committed: BTreeMap::new(),
            })
            .collect();
        let mut sim = Sim {
            cfg,
            rng,
            now: 0,
            initial,
            nodes,
            links: Vec::new(),
            next_leader_conn: 1,
            datagrams: BinaryHeap::new(),
            last_notify: BTreeMap::new(),
            dials: Vec::new(),
            seq: 0,
            groups: BTreeMap::new(),
            faults: true,
            clients,
            clients_on: true,
            history: BTreeMap::new(),
            owner: BTreeMap::new(),
            committed: Sm::default(),
            committed_voters: voters,
            configs: BTreeMap::new(),
            activated: Vec::new(),
            acked: Zxid::ZERO,
            next_sync_tag: 0,
            leaders: BTreeMap::new(),
            stats: Stats::default(),
            last_log: Vec::new(),
        };
        let ids: Vec<ServerId> = sim.nodes.keys().copied().collect();
        for id in ids {
            sim.start(id);
        }
        sim
    }

    /// A server's config: its disk's dynamic files, or its initial one.
    fn replica_config(&self, id: ServerId) -> Config {
        let disk = &self.nodes[&id].disk.synced;
        let membership = disk
            .config
            .clone()
            .unwrap_or_else(|| self.initial[&id].clone());
        let mut c = Config::new(id, membership);
        c.last_seen = disk.next.clone();
        c.reconfig_enabled = self.cfg.reconfig;
        c.tick_ms = self.cfg.tick_ms;
        c.init_limit_ticks = 10;
        c.sync_limit_ticks = 5;
        c.election_timeout_min_ms = 50;
        c.election_timeout_max_ms = 1600;
        c.finalize_wait_ms = 20;
        c.connect_retry_ms = 20;
        c.committed_log_count_max = self.cfg.committed_log_count_max;
        c.in_flight_proposals_max = self.cfg.in_flight_proposals_max;
        c.zxid_counter_max = self.cfg.zxid_counter_max;
        c
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        let line = format!("[{:>6}] {}", self.now, f());
        if self.cfg.trace {
            println!("{line}");
        } else {
            self.last_log.push(line);
            if self.last_log.len() > 60 {
                self.last_log.remove(0);
            }
        }
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.gen_range(0..1000) < per_mille
    }

    fn delay(&mut self) -> u64 {
        self.rng.gen_range(1..=self.cfg.delay_ms_max.max(1))
    }

    fn reachable(&self, a: ServerId, b: ServerId) -> bool {
        self.groups.get(&a).copied().unwrap_or(0) == self.groups.get(&b).copied().unwrap_or(0)
    }

    fn alive(&self, id: ServerId) -> bool {
        self.nodes[&id].replica.is_some()
    }

    // ----- the run ----------------------------------------------------------------------

    pub fn run(mut self) -> Result<Stats, String> {
        let r = self.run_phases();
        if r.is_err() && !self.cfg.trace {
            for l in &self.last_log {
                eprintln!("{l}");
            }
        }
        r.map(|_| self.stats.clone())
    }

    fn run_phases(&mut self) -> Check {
        while self.now < self.cfg.fault_ms {
            self.step()?;
        }
        self.heal()?;
        let healed = self.now;
        let acked_before = self.stats.acked_writes;
        while self.stats.acked_writes == acked_before {
            if self.now > healed + self.cfg.recovery_ms_max {
                return Err(format!(
                    "no write acknowledged within {} ms of healing",
                    self.cfg.recovery_ms_max
                ));
            }
            self.step()?;
        }
        self.stats.recovery_ms = self.now - healed;
        if self.cfg.converge_ms_max == 0 {
            return Ok(());
        }
        self.clients_on = false;
        let start = self.now;
        loop {
            self.step()?;
            match self.converged() {
                None => return Ok(()),
                Some(why) if self.now > start + self.cfg.converge_ms_max => {
                    return Err(format!("did not converge: {why}"))
                }
                Some(_) => {}
            }
        }
    }

    /// Every node serves the established leader with the same state, except one
    /// that accepted a later epoch than the leader's (it promised not to follow an
    /// older one; the reference leaves it out until the next election too).
    fn converged(&self) -> Option<String> {
        let leader = self.nodes.values().find(|n| {
            matches!(
                n.role,
                Role::Leading {
                    established: true,
                    ..
                }
            )
        })?;
        let Role::Leading {
            epoch: Some(epoch), ..
        } = leader.role
        else {
            return Some("no established leader".into());
        };
        let conf = leader.replica.as_ref()?.committed_config().clone();
        let mut serving = 0;
        for n in self.nodes.values() {
            if !n.role.serving() {
                let ahead = n
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.accepted_epoch() > epoch);
                if ahead {
                    continue;
                }
                return Some(format!("node {} is {:?}", n.id, n.role));
            }
            if n.held.is_some() {
                return Some(format!("node {} is syncing", n.id));
            }
            if (n.sm.last_txn, n.sm.digest) != (leader.sm.last_txn, leader.sm.digest) {
                return Some(format!(
                    "node {} at {:?}, leader {} at {:?}",
                    n.id, n.sm.last_txn, leader.id, leader.sm.last_txn
                ));
            }
            if conf.is_voter(n.id) {
                serving += 1;
            }
        }
        (serving * 2 <= conf.voters().count()).then(|| "no quorum serving".into())
    }

    fn heal(&mut self) -> Check {
        self.log(|| "HEAL".into());
        self.faults = false;
        self.groups.clear();
        let down: Vec<ServerId> = self
            .nodes
            .values()
            .filter(|n| n.replica.is_none())
            .map(|n| n.id)
            .collect();
        for id in down {
            self.start(id);
        }
        Ok(())
    }

    fn step(&mut self) -> Check {
        self.now += STEP_MS;
        self.deliver_dials()?;
        self.deliver_datagrams()?;
        self.deliver_links()?;
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        for id in &ids {
            self.finish_held(*id)?;
            if self.alive(*id) {
                self.input(*id, Input::Tick)?;
            } else if self.nodes[id].restart_at.is_some_and(|t| self.now >= t) {
                self.start(*id);
            }
        }
        if self.faults {
            self.inject_faults();
        }
        if self.now.is_multiple_of(100) {
            self.resend_lost();
        }
        if self.clients_on {
            self.clients_act()?;
        }
        if self.cfg.check_durable_quorum {
            self.check_durable_quorum()?;
        }
        self.check_activated_committed()
    }

    fn inject_faults(&mut self) {
        let per_100ms = self.now.is_multiple_of(100);
        if per_100ms && self.cfg.reconfig && self.chance(self.cfg.reconfig_per_mille) {
            self.maybe_reconfig();
        }
        if per_100ms && self.chance(self.cfg.partition_per_mille) {
            self.repartition();
        }
        if !self.links.is_empty() && self.chance(self.cfg.break_per_mille) {
            let i = self.rng.gen_range(0..self.links.len());
            self.break_link(i);
        }
        if per_100ms {
            let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.alive(id) && self.chance(self.cfg.crash_per_mille) {
                    self.crash(id);
                }
            }
        }
    }

    fn repartition(&mut self) {
        self.groups.clear();
        if self.rng.gen_bool(0.4) {
            self.log(|| "partition healed".into());
        } else {
            let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
            let k = self.rng.gen_range(2..=3);
            for id in ids {
                let g = self.rng.gen_range(0..k);
                self.groups.insert(id, g);
            }
            let g = self.groups.clone();
            self.log(|| format!("partition {g:?}"));
        }
        let cut: Vec<usize> = (0..self.links.len())
            .filter(|i| !self.reachable(self.links[*i].learner, self.links[*i].leader))
            .collect();
        for i in cut.into_iter().rev() {
            self.break_link(i);
        }
    }

    /// Both ends see the connection end; what was in flight is lost.
    fn break_link(&mut self, i: usize) {
        let l = self.links.remove(i);
        let (a, ac, b, bc) = (l.learner, l.learner_conn, l.leader, l.leader_conn);
        self.log(|| format!("link {a}->{b} breaks"));
        let d1 = self.delay();
        let d2 = self.delay();
        let at1 = self.now + d1;
        let at2 = self.now + d2;
        // Deliver the closes through a fresh closed link so ordering stays simple.
        self.links.push(Link {
            learner: a,
            leader: b,
            learner_conn: ac,
            leader_conn: bc,
            to_leader: VecDeque::from([(at2, Wire::Fin)]),
            to_learner: VecDeque::from([(at1, Wire::Fin)]),
        });
    }

    fn crash(&mut self, id: ServerId) {
        self.stats.crashes += 1;
        let torn = self.chance(self.cfg.torn_per_mille);
        let n = self.nodes.get_mut(&id).unwrap();
        n.replica = None;
        n.held = None;
        n.role = Role::Looking;
        n.received.clear();
        n.syncs.clear();
        n.forwarded.clear();
        n.gated_syncs.clear();
        n.ready_syncs.clear();
        n.captured = None;
        let unsynced = std::mem::take(&mut n.disk.unsynced);
        let keep = if torn && !unsynced.is_empty() {
            self.rng.gen_range(0..=unsynced.len())
        } else {
            0
        };
        let n = self.nodes.get_mut(&id).unwrap();
        for (w, c) in unsynced.into_iter().take(keep) {
            // A prefix of the unsynced writes made it (a torn tail cut the rest).
            let _ = n.disk.synced.apply(&w, c);
        }
        let at = self.now + self.rng.gen_range(50..=1500);
        self.nodes.get_mut(&id).unwrap().restart_at = Some(at);
        self.last_notify.retain(|(f, _), _| *f != id);
        for ((_, t), (_, lost)) in self.last_notify.iter_mut() {
            if *t == id {
                // Its peers' connections to it break; they resend when it is back.
                *lost = true;
            }
        }
        self.log(|| format!("node {id} CRASHES (kept {keep} unsynced writes)"));
        // Its connections end; peers see it.
        let ends: Vec<usize> = (0..self.links.len())
            .filter(|i| self.links[*i].learner == id || self.links[*i].leader == id)
            .collect();
        for i in ends.into_iter().rev() {
            self.break_link(i);
        }
        for c in self.clients.iter_mut() {
            if c.at == Some(id) {
                c.at = None;
                c.outstanding.clear();
                c.sync_out = false;
            }
        }
    }

    /// Starts (or restarts) a node from its synced disk.
    fn start(&mut self, id: ServerId) {
        let cfg = self.replica_config(id);
        let n = self.nodes.get_mut(&id).unwrap();
        let d = &n.disk.synced;
        let last = d.last_zxid();
        let sm = d
            .state_upto(last)
            .expect("a disk's own state is consistent");
        let tail: Vec<Entry> = d.log.clone();
        let durable = DurableState {
            accepted_epoch: d.accepted,
            current_epoch: d.current,
            last_zxid: last,
            tail,
        };
        n.sm = sm;
        n.restart_at = None;
        n.role = Role::Looking;
        let mut r = Replica::new(cfg, durable, self.now).expect("valid config");
        if let Some(bug) = self.cfg.bug {
            r.plant_bug(bug);
        }
        n.replica = Some(r);
        self.log(|| format!("node {id} starts at {last:?}"));
        let _ = self.pump(id);
    }

    // ----- delivery --------------------------------------------------------------------

    fn deliver_dials(&mut self) -> Check {
        let now = self.now;
        let due: Vec<Dial> = {
            let (due, rest): (Vec<Dial>, Vec<Dial>) = std::mem::take(&mut self.dials)
                .into_iter()
                .partition(|d| d.at <= now);
            self.dials = rest;
            due
        };
        for d in due {
            if !self.alive(d.from) {
                continue;
            }
            // The server's quorum port is always open: whoever is dialled decides
            // (a leader serves, a member about to lead holds the link, any other
            // closes it).
            let ok = self.alive(d.to) && self.reachable(d.from, d.to);
            if !ok {
                self.input(d.from, Input::Closed { conn: d.conn })?;
                continue;
            }
            let leader_conn = self.next_leader_conn;
            self.next_leader_conn += 1;
            self.links.push(Link {
                learner: d.from,
                leader: d.to,
                learner_conn: d.conn,
                leader_conn,
                to_leader: VecDeque::new(),
                to_learner: VecDeque::new(),
            });
            self.input(d.to, Input::Accepted { conn: leader_conn })?;
            self.input(d.from, Input::Connected { conn: d.conn })?;
        }
        Ok(())
    }

    fn deliver_datagrams(&mut self) -> Check {
        while self.datagrams.peek().is_some_and(|d| d.at <= self.now) {
            let d = self.datagrams.pop().unwrap();
            if self.alive(d.to) && self.reachable(d.from, d.to) {
                self.input(
                    d.to,
                    Input::Notification {
                        from: d.from,
                        n: d.n,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn deliver_links(&mut self) -> Check {
        let now = self.now;
        let mut i = 0;
        while i < self.links.len() {
            // One message at a time: delivering can change the links.
            let l = &mut self.links[i];
            let to_learner = l.to_learner.front().is_some_and(|(at, _)| *at <= now);
            let to_leader = l.to_leader.front().is_some_and(|(at, _)| *at <= now);
            if !to_learner && !to_leader {
                if l.to_learner.is_empty() && l.to_leader.is_empty() && self.link_finished(i) {
                    self.links.remove(i);
                    continue;
                }
                i += 1;
                continue;
            }
            let (node, conn, wire) = if to_learner {
                let w = l.to_learner.pop_front().unwrap().1;
                (l.learner, l.learner_conn, w)
            } else {
                let w = l.to_leader.pop_front().unwrap().1;
                (l.leader, l.leader_conn, w)
            };
            if matches!(wire, Wire::Fin) {
                let l = &mut self.links[i];
                if to_learner {
                    l.learner_conn = u64::MAX;
                } else {
                    l.leader_conn = u64::MAX;
                }
            }
            if !self.alive(node) || conn == u64::MAX {
                continue;
            }
            match wire {
                Wire::Fin => self.input(node, Input::Closed { conn })?,
                Wire::Packet(Packet::Snap { .. }) => {
                    // Held until the stream that follows it arrives.
                    let l = &mut self.links[i];
                    let Some((at, Wire::Snapshot(sm))) = l.to_learner.pop_front() else {
                        return Err("SNAP without its snapshot stream".into());
                    };
                    debug_assert!(at >= now || at <= now);
                    self.stats.snap_syncs += 1;
                    let zxid = sm.label;
                    self.nodes.get_mut(&node).unwrap().received.insert(conn, sm);
                    self.input(
                        node,
                        Input::Packet {
                            conn,
                            packet: Packet::Snap { zxid },
                        },
                    )?;
                }
                Wire::Snapshot(_) => return Err("a snapshot stream without SNAP".into()),
                Wire::Packet(p) => {
                    match &p {
                        Packet::Diff { .. } => self.stats.diff_syncs += 1,
                        Packet::Trunc { .. } => self.stats.trunc_syncs += 1,
                        _ => {}
                    }
                    self.input(node, Input::Packet { conn, packet: p })?
                }
            }
        }
        Ok(())
    }

    /// Both ends closed (or gone).
    fn link_finished(&self, i: usize) -> bool {
        let l = &self.links[i];
        l.learner_conn == u64::MAX && l.leader_conn == u64::MAX
    }

    // ----- a node's driver -------------------------------------------------------------

    fn input(&mut self, id: ServerId, input: Input) -> Check {
        let now = self.now;
        let Some(r) = self.nodes.get_mut(&id).unwrap().replica.as_mut() else {
            return Ok(());
        };
        if self.cfg.trace && !matches!(input, Input::Tick) {
            println!("[{now:>6}] {id} <- {input:?}");
        }
        r.step(now, input);
        self.stats.steps += 1;
        self.pump(id)
    }

    fn finish_held(&mut self, id: ServerId) -> Check {
        let n = self.nodes.get_mut(&id).unwrap();
        if n.held.as_ref().is_none_or(|(_, at)| *at > self.now) {
            return Ok(());
        }
        let (rd, _) = n.held.take().unwrap();
        self.nodes.get_mut(&id).unwrap().disk.sync()?;
        let r = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
        let gated = r.advance(rd.persisted());
        self.perform(id, gated)?;
        self.pump(id)
    }

    /// Drains the replica's batches: outputs now, writes to disk, sync (maybe
    /// later), then the gated outputs.
    fn pump(&mut self, id: ServerId) -> Check {
        loop {
            let n = self.nodes.get_mut(&id).unwrap();
            if n.held.is_some() {
                // As the server's driver does while its sync runs off the
                // executor: what needs nothing of the held batch goes now.
                let released = match n.replica.as_mut() {
                    Some(r) => r.take_released(),
                    None => Vec::new(),
                };
                return self.perform(id, released);
            }
            let Some(r) = n.replica.as_mut() else {
                return Ok(());
            };
            let Some(mut rd) = r.ready() else {
                return Ok(());
            };
            let now_out = rd.take_now();
            self.perform(id, now_out)?;
            if !self.alive(id) {
                return Ok(());
            }
            let writes = rd.writes().to_vec();
            for w in &writes {
                self.check_write(id, w)?;
                let n = self.nodes.get_mut(&id).unwrap();
                let cap = if matches!(w, Write::Snapshot(_)) {
                    n.captured.take()
                } else {
                    None
                };
                n.disk.unsynced.push((w.clone(), cap));
            }
            let slow = !writes.is_empty() && self.chance(self.cfg.slow_sync_per_mille);
            if slow {
                let at = self.now + self.rng.gen_range(1..=40);
                self.nodes.get_mut(&id).unwrap().held = Some((rd, at));
                return Ok(());
            }
            self.nodes.get_mut(&id).unwrap().disk.sync()?;
            let r = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
            let gated = r.advance(rd.persisted());
            self.perform(id, gated)?;
        }
    }

    fn check_write(&mut self, id: ServerId, w: &Write) -> Check {
        if self.cfg.trace {
            println!("[{:>6}] {id} write {w:?}", self.now);
        }
        // An observer's log counts toward no quorum: one that was a follower (a
        // reconfig made it an observer) may be told to truncate txns its old role
        // logged and the leader commits later with other ACKs (as the reference);
        // it gets them back as INFORMs.
        let observing = matches!(self.nodes[&id].role, Role::Observing { .. });
        if let (Write::TruncateAfter(z), false) = (w, observing) {
            // Never truncate a committed txn that this node holds in the history.
            let view = self.nodes[&id].disk.view()?;
            for e in view.log.iter().filter(|e| e.zxid > *z) {
                if self.committed.holds(e.zxid, hash_bytes(&e.payload)) {
                    return Err(format!(
                        "node {id} truncates committed txn {:?} (to {z:?})",
                        e.zxid
                    ));
                }
            }
        }
        Ok(())
    }

    fn perform(&mut self, id: ServerId, outs: Vec<Output>) -> Check {
        for o in outs {
            if !self.alive(id) {
                return Ok(());
            }
            if self.cfg.trace {
                println!("[{:>6}] {id} -> {o:?}", self.now);
            }
            match o {
                Output::Notify { to, n } => self.notify(id, to, n),
                Output::Connect { conn, to } => {
                    let at = self.now + self.delay();
                    self.dials.push(Dial {
                        at,
                        from: id,
                        conn,
                        to,
                    });
                }
                Output::Send { conn, packet } => self.link_send(id, conn, Wire::Packet(packet)),
                Output::SendSnapshot { conn, zxid } => {
                    let mut sm = self.nodes[&id].sm.clone();
                    if sm.last_txn > zxid || sm.label > zxid {
                        return Err(format!(
                            "node {id} streams a snapshot at {zxid:?} of a state at {:?}",
                            sm.label
                        ));
                    }
                    sm.label = zxid;
                    self.link_send(id, conn, Wire::Snapshot(sm));
                }
                Output::Close { conn } => self.link_send(id, conn, Wire::Fin),
                Output::Event(e) => self.on_event(id, e)?,
            }
        }
        Ok(())
    }

    fn notify(&mut self, from: ServerId, to: ServerId, n: Notification) {
        self.stats.messages += 1;
        let lost = !self.reachable(from, to)
            || !self.alive(to)
            || (self.faults && self.chance(self.cfg.notify_drop_per_mille));
        self.last_notify.insert((from, to), (n.clone(), lost));
        if lost {
            return;
        }
        self.push_datagram(from, to, n);
    }

    /// A connection between two election peers came back: the last notification
    /// that did not arrive is sent again.
    fn resend_lost(&mut self) {
        let due: Vec<(ServerId, ServerId)> = self
            .last_notify
            .iter()
            .filter(|((f, t), (_, lost))| {
                *lost && self.alive(*f) && self.alive(*t) && self.reachable(*f, *t)
            })
            .map(|(k, _)| *k)
            .collect();
        for (f, t) in due {
            let e = self.last_notify.get_mut(&(f, t)).unwrap();
            e.1 = false;
            let n = e.0.clone();
            self.push_datagram(f, t, n);
        }
    }

    /// The transport keeps one unsent notification per peer: a newer one replaces
    /// one still on its way (so no storm can build up in the network).
    fn push_datagram(&mut self, from: ServerId, to: ServerId, n: Notification) {
        self.datagrams.retain(|d| !(d.from == from && d.to == to));
        let copies = if self.faults && self.chance(self.cfg.notify_dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.delay();
            self.seq += 1;
            self.datagrams.push(Datagram {
                at,
                seq: self.seq,
                from,
                to,
                n: n.clone(),
            });
        }
    }

    fn link_send(&mut self, from: ServerId, conn: ConnId, w: Wire) {
        self.stats.messages += 1;
        let d = self.delay();
        let now = self.now;
        let closing = matches!(w, Wire::Fin);
        for l in self.links.iter_mut() {
            let (q, mine) = if l.learner == from && l.learner_conn == conn {
                (&mut l.to_leader, true)
            } else if l.leader == from && l.leader_conn == conn {
                (&mut l.to_learner, false)
            } else {
                continue;
            };
            let at = q.back().map_or(now + d, |(t, _)| (*t).max(now + d));
            q.push_back((at, w));
            if closing {
                // Our end is gone: nothing more is read or written on it here.
                if mine {
                    l.learner_conn = u64::MAX;
                } else {
                    l.leader_conn = u64::MAX;
                }
            }
            return;
        }
        // A dial still in flight, or a link already broken: the data is lost.
        if closing && conn >= CORE_CONN_BIT {
            self.dials.retain(|d| !(d.from == from && d.conn == conn));
        }
    }

    fn on_event(&mut self, id: ServerId, e: Event) -> Check {
        match e {
            Event::Apply(entry) => self.on_apply(id, entry),
            Event::InstallSnapshot { conn, zxid } => {
                let n = self.nodes.get_mut(&id).unwrap();
                let sm = n
                    .received
                    .remove(&conn)
                    .ok_or("InstallSnapshot without a received snapshot")?;
                if sm.label != zxid {
                    return Err(format!("installing {:?} as {zxid:?}", sm.label));
                }
                n.sm = sm;
                self.check_state(id)
            }
            Event::Reset => {
                self.nodes.get_mut(&id).unwrap().sm = Sm::default();
                self.log(|| format!("node {id} resets its state to empty"));
                Ok(())
            }
            Event::CaptureSnapshot { zxid } => {
                let n = self.nodes.get_mut(&id).unwrap();
                if n.sm.label != zxid {
                    return Err(format!(
                        "node {id}: capture at {zxid:?} of a state at {:?}",
                        n.sm.label
                    ));
                }
                n.captured = Some(n.sm.clone());
                Ok(())
            }
            Event::Rollback { zxid } => {
                let n = self.nodes.get_mut(&id).unwrap();
                let view = n.disk.view()?;
                match view.state_upto(zxid) {
                    Ok(mut sm) => {
                        sm.label = zxid;
                        n.sm = sm;
                        self.log(|| format!("node {id} rolls back to {zxid:?}"));
                    }
                    Err(e) => {
                        let at = n.sm.label;
                        n.replica.as_mut().unwrap().rollback_failed(at);
                        self.log(|| format!("node {id} cannot roll back to {zxid:?}: {e}"));
                    }
                }
                Ok(())
            }
            Event::RoleChanged(role) => self.on_role(id, role),
            Event::Request { conn, req, .. } if req.op == OP_SYNC => {
                let r = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
                r.forwarded_sync(conn);
                Ok(())
            }
            Event::Request { req, .. } => {
                self.propose_at(id, req.body);
                Ok(())
            }
            Event::Revalidate {
                conn, session_id, ..
            } => {
                let r = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
                r.revalidated(conn, session_id, true);
                Ok(())
            }
            Event::Touches { .. } | Event::Revalidated { .. } => Ok(()),
            Event::SyncDone => self.on_sync_done(id),
            Event::LocalSyncReady { tag, at } => self.on_local_sync_ready(id, tag, at),
            Event::ConfigProposed(m) => self.check_config_version(id, &m),
            Event::ConfigActivated(m) => {
                self.stats.activations += 1;
                self.log(|| format!("node {id} activates config {:x}", m.version()));
                if !Zxid(m.version() as u64).is_epoch_start() {
                    self.activated.push((id, m.version()));
                }
                self.check_config_version(id, &m)
            }
        }
    }

    // ----- reconfig --------------------------------------------------------------------

    /// The voters of a server's committed config.
    fn voters_of(&self, id: ServerId) -> Vec<ServerId> {
        self.nodes[&id]
            .replica
            .as_ref()
            .map(|r| r.committed_config().voters().collect())
            .unwrap_or_default()
    }

    /// A config version names one membership wherever it is seen.
    fn check_config_version(&mut self, id: ServerId, m: &Membership) -> Check {
        match self.configs.get(&m.version()) {
            Some(t) if t != m.text() => Err(format!(
                "node {id} has config version {:x} as {:?}, seen elsewhere as {:?}",
                m.version(),
                String::from_utf8_lossy(m.text()),
                String::from_utf8_lossy(t)
            )),
            Some(_) => Ok(()),
            None => {
                self.configs.insert(m.version(), m.text().clone());
                Ok(())
            }
        }
    }

    /// A config activated from a reconfig txn: that txn is committed (checked at
    /// the end of the step that activated it, once the leader's own commit of it
    /// has been applied).
    fn check_activated_committed(&mut self) -> Check {
        for (id, v) in std::mem::take(&mut self.activated) {
            let z = Zxid(v as u64);
            let committed = self
                .committed
                .txns
                .binary_search_by(|(t, _)| t.cmp(&z))
                .is_ok();
            if !committed {
                return Err(format!(
                    "node {id} activated config {v:x}, but txn {z:?} is not committed"
                ));
            }
        }
        Ok(())
    }

    /// Asks the established leader for a membership change, if it may take one (no
    /// reconfig pending, a synced quorum of the new config, at least two voters).
    fn maybe_reconfig(&mut self) {
        let Some(leader) = self.nodes.values().find(|n| {
            matches!(
                n.role,
                Role::Leading {
                    established: true,
                    ..
                }
            )
        }) else {
            return;
        };
        let id = leader.id;
        let Some(r) = leader.replica.as_ref() else {
            return;
        };
        if r.reconfig_in_progress().is_some() {
            return;
        }
        let conf = r.committed_config().clone();
        let all: Vec<ServerId> = self.nodes.keys().copied().collect();
        let Some((voters, observers, what)) = self.pick_change(id, &conf, &all) else {
            return;
        };
        let r = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
        let Ok(zxid) = r.next_zxid() else { return };
        let m = Membership::local(&voters, &observers, zxid.as_i64());
        if !r.is_quorum_synced(&m) {
            self.log(|| format!("reconfig ({what}) refused: no synced quorum of it"));
            return;
        }
        let entry = Entry {
            zxid,
            payload: Bytes::from(format!("reconfig {what}")),
            reconfig: Some(Arc::new(m)),
        };
        match r.propose(entry) {
            Ok(()) => {
                self.stats.reconfigs += 1;
                self.log(|| format!("leader {id} proposes reconfig at {zxid:?}: {what}"));
            }
            Err(e) => self.log(|| format!("reconfig ({what}) refused: {e}")),
        }
        let _ = self.pump(id);
    }

    /// One membership change of `conf` (voters, observers, and what it is).
    fn pick_change(
        &mut self,
        leader: ServerId,
        conf: &Membership,
        all: &[ServerId],
    ) -> Option<(Vec<ServerId>, Vec<ServerId>, String)> {
        let mut voters: Vec<ServerId> = conf.voters().collect();
        let mut observers: Vec<ServerId> = conf.observers().collect();
        let outside: Vec<ServerId> = all
            .iter()
            .copied()
            .filter(|s| !conf.is_member(*s))
            .collect();
        let pick = |rng: &mut SmallRng, from: &[ServerId]| -> Option<ServerId> {
            (!from.is_empty()).then(|| from[rng.gen_range(0..from.len())])
        };
        let what = match self.rng.gen_range(0..6) {
            0 => {
                let s = pick(&mut self.rng, &outside)?;
                observers.push(s);
                format!("add observer {s}")
            }
            1 => {
                let s = pick(&mut self.rng, &observers)?;
                observers.retain(|o| *o != s);
                format!("remove observer {s}")
            }
            2 => {
                let candidates: Vec<ServerId> = outside.iter().chain(&observers).copied().collect();
                let s = pick(&mut self.rng, &candidates)?;
                if voters.len() >= 7 {
                    return None;
                }
                observers.retain(|o| *o != s);
                voters.push(s);
                format!("add participant {s}")
            }
            3 => {
                let others: Vec<ServerId> =
                    voters.iter().copied().filter(|v| *v != leader).collect();
                let s = pick(&mut self.rng, &others)?;
                voters.retain(|v| *v != s);
                format!("remove participant {s}")
            }
            4 => {
                voters.retain(|v| *v != leader);
                format!("leader {leader} removes itself")
            }
            _ => {
                voters.retain(|v| *v != leader);
                observers.push(leader);
                format!("leader {leader} becomes an observer")
            }
        };
        if voters.len() < 2 {
            return None;
        }
        voters.sort_unstable();
        observers.sort_unstable();
        Some((voters, observers, what))
    }

    fn on_role(&mut self, id: ServerId, role: Role) -> Check {
        let was = self.nodes[&id].role;
        self.nodes.get_mut(&id).unwrap().role = role;
        self.log(|| format!("node {id} is {role:?}"));
        if let Role::Leading {
            epoch: Some(e),
            established: true,
        } = role
        {
            self.stats.leaders += 1;
            if let Some(other) = self.leaders.insert(e, id) {
                if other != id {
                    return Err(format!("two leaders in epoch {e}: {other} and {id}"));
                }
            }
            let sm = self.nodes[&id].sm.clone();
            if let Some(&(z, h)) = self.committed.txns.last() {
                if !sm.holds(z, h) {
                    return Err(format!(
                        "leader {id} of epoch {e} holds {:?}, but {z:?} was committed",
                        sm.last_txn
                    ));
                }
            }
            // Its whole state is committed now, including txns it loaded from its
            // log at start-up (those were never `Apply`ed anywhere).
            if sm.count > 0 {
                match self.history.get(&sm.last_txn) {
                    Some((d, _)) if *d != sm.digest => {
                        return Err(format!("leader {id} holds a different history"))
                    }
                    Some(_) => {}
                    None => {
                        self.history.insert(sm.last_txn, (sm.digest, 0));
                    }
                }
                self.committed = sm;
            }
            self.committed_voters = self.voters_of(id);
        }
        if was.serving() && !role.serving() {
            // Its clients lose their connection: outstanding requests are in doubt.
            let n = self.nodes.get_mut(&id).unwrap();
            n.syncs.clear();
            n.forwarded.clear();
            n.gated_syncs.clear();
            n.ready_syncs.clear();
            for c in self.clients.iter_mut() {
                if c.at == Some(id) {
                    c.at = None;
                    c.outstanding.clear();
                    c.sync_out = false;
                }
            }
        }
        Ok(())
    }

    fn on_apply(&mut self, id: ServerId, e: Entry) -> Check {
        let n = self.nodes.get_mut(&id).unwrap();
        if e.zxid <= n.sm.label {
            return Err(format!(
                "node {id} applies {:?} at state {:?}",
                e.zxid, n.sm.label
            ));
        }
        n.sm.apply(&e);
        let is_leader = matches!(
            n.role,
            Role::Leading {
                established: true,
                ..
            }
        );
        if is_leader && e.zxid > self.committed.last_txn {
            self.committed = self.nodes[&id].sm.clone();
            self.committed_voters = self.voters_of(id);
            self.stats.commits += 1;
        }
        self.check_state(id)?;
        let h = hash_bytes(&e.payload);
        let digest = self.nodes[&id].sm.digest;
        match self.history.get(&e.zxid) {
            Some((d, _)) if *d != digest => {
                return Err(format!(
                    "node {id} applied {:?} with a different history",
                    e.zxid
                ))
            }
            Some(_) => {}
            None => {
                self.history.insert(e.zxid, (digest, h));
            }
        }
        self.on_client_txn(id, &e)?;
        self.release_ready_syncs(id)
    }

    fn check_state(&self, id: ServerId) -> Check {
        let sm = &self.nodes[&id].sm;
        if sm.count == 0 {
            return Ok(());
        }
        match self.history.get(&sm.last_txn) {
            Some((d, _)) if *d != sm.digest => Err(format!(
                "node {id} state at {:?} differs from the history",
                sm.last_txn
            )),
            _ => Ok(()),
        }
    }

    // ----- clients ---------------------------------------------------------------------

    fn payload(client: usize, seq: u64) -> Bytes {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&(client as u64).to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        Bytes::from(v)
    }

    fn decode_payload(p: &[u8]) -> Option<(usize, u64)> {
        if p.len() != 16 {
            return None;
        }
        let c = u64::from_be_bytes(p[..8].try_into().ok()?) as usize;
        let s = u64::from_be_bytes(p[8..].try_into().ok()?);
        Some((c, s))
    }

    fn clients_act(&mut self) -> Check {
        for ci in 0..self.clients.len() {
            let act = if ci < self.cfg.clients {
                self.cfg.writer_act_per_mille
            } else {
                300
            };
            if !self.chance(act) {
                continue;
            }
            if self.clients[ci].at.is_none() {
                let ids: Vec<ServerId> = self
                    .nodes
                    .values()
                    .filter(|n| n.role.serving())
                    .map(|n| n.id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let mut pick = ids[self.rng.gen_range(0..ids.len())];
                if ci >= self.cfg.clients {
                    // A sync-only client prefers a leader: where a stale answer of a
                    // deposed one would show.
                    let mut leaders = ids.iter().copied().filter(|i| {
                        matches!(
                            self.nodes[i].role,
                            Role::Leading {
                                established: true,
                                ..
                            }
                        )
                    });
                    pick = leaders.next_back().unwrap_or(pick);
                }
                self.clients[ci].at = Some(pick);
                self.clients[ci].session += 1;
            }
            let at = self.clients[ci].at.unwrap();
            let sync_only = ci >= self.cfg.clients;
            if (sync_only || self.rng.gen_bool(0.1)) && !self.clients[ci].sync_out {
                self.client_sync(ci, at)?;
                continue;
            }
            if sync_only {
                continue;
            }
            // Give up on requests outstanding too long (in doubt).
            let now = self.now;
            self.clients[ci]
                .outstanding
                .retain(|_, (_, t, _)| now < *t + 3_000);
            if self.clients[ci].outstanding.len() >= 4 {
                continue;
            }
            let seq = self.clients[ci].next_seq;
            self.clients[ci].next_seq += 1;
            let floor = self.acked;
            let c = &mut self.clients[ci];
            c.outstanding.insert(seq, (at, now, floor));
            c.session_of.insert(seq, c.session);
            let payload = Self::payload(ci, seq);
            let role = self.nodes[&at].role;
            match role {
                Role::Leading {
                    established: true, ..
                } => self.propose_at(at, payload),
                _ => {
                    let r = self.nodes.get_mut(&at).unwrap().replica.as_mut();
                    let ok = r.is_some_and(|r| {
                        r.forward(Forwarded {
                            session_id: ci as i64,
                            cxid: seq as i32,
                            op: 1,
                            body: payload,
                            auth: None,
                        })
                        .is_ok()
                    });
                    if !ok {
                        self.clients[ci].outstanding.remove(&seq);
                        self.clients[ci].at = None;
                        continue;
                    }
                    let n = self.nodes.get_mut(&at).unwrap();
                    n.forwarded.push_back(Some((ci, seq)));
                    self.pump(at)?;
                }
            }
        }
        Ok(())
    }

    fn propose_at(&mut self, id: ServerId, payload: Bytes) {
        let Some(r) = self.nodes.get_mut(&id).unwrap().replica.as_mut() else {
            return;
        };
        let Ok(zxid) = r.next_zxid() else { return };
        if r.propose(Entry::new(zxid, payload)).is_ok() {
            self.stats.steps += 1;
        }
        let _ = self.pump(id);
    }

    fn client_sync(&mut self, ci: usize, at: ServerId) -> Check {
        let need = self.acked;
        let role = self.nodes[&at].role;
        if matches!(role, Role::Leading { .. }) {
            return self.leader_client_sync(ci, at, need);
        }
        let r = self.nodes.get_mut(&at).unwrap().replica.as_mut();
        let ok = r.is_some_and(|r| {
            r.forward(Forwarded {
                session_id: ci as i64,
                cxid: 0,
                op: OP_SYNC,
                body: Bytes::new(),
                auth: None,
            })
            .is_ok()
        });
        if ok {
            self.clients[ci].sync_out = true;
            let n = self.nodes.get_mut(&at).unwrap();
            n.syncs.push_back((ci, need));
            n.forwarded.push_back(None);
            self.pump(at)?;
        }
        Ok(())
    }

    /// A sync through the leader's own client port: the core's sync gate, then the
    /// leader's apply of what was proposed before it.
    fn leader_client_sync(&mut self, ci: usize, at: ServerId, need: Zxid) -> Check {
        let tag = self.next_sync_tag;
        self.next_sync_tag += 1;
        let r = self.nodes.get_mut(&at).unwrap().replica.as_mut();
        if r.is_some_and(|r| r.leader_sync(tag)) {
            self.clients[ci].sync_out = true;
            let n = self.nodes.get_mut(&at).unwrap();
            n.gated_syncs.insert(tag, (ci, need));
            self.pump(at)?;
        }
        Ok(())
    }

    fn on_local_sync_ready(&mut self, id: ServerId, tag: u64, at: Zxid) -> Check {
        let n = self.nodes.get_mut(&id).unwrap();
        let Some((ci, need)) = n.gated_syncs.remove(&tag) else {
            return Err(format!("node {id}: LocalSyncReady for unknown tag {tag}"));
        };
        if let Some(back) = n.ready_syncs.back() {
            if back.0 > at {
                return Err(format!(
                    "node {id}: a local sync at {at:?} passed after one at {:?}",
                    back.0
                ));
            }
        }
        n.ready_syncs.push_back((at, ci, need));
        self.release_ready_syncs(id)
    }

    fn release_ready_syncs(&mut self, id: ServerId) -> Check {
        loop {
            let n = self.nodes.get_mut(&id).unwrap();
            let applied = n.sm.label;
            if n.ready_syncs.front().is_none_or(|(at, ..)| *at > applied) {
                return Ok(());
            }
            let (_, ci, need) = n.ready_syncs.pop_front().unwrap();
            self.stats.leader_syncs_checked += 1;
            self.log(|| format!("node {id} answers client {ci}'s sync at {applied:?} (acked before it: {need:?})"));
            self.check_sync(id, ci, need)?;
        }
    }

    fn on_sync_done(&mut self, id: ServerId) -> Check {
        let n = self.nodes.get_mut(&id).unwrap();
        let Some((ci, need)) = n.syncs.pop_front() else {
            return Err(format!("node {id}: SyncDone with no sync pending"));
        };
        if let Some(i) = n.forwarded.iter().position(Option::is_none) {
            n.forwarded.remove(i);
        }
        self.check_sync(id, ci, need)
    }

    /// A client's write applied at `id`: if `id` forwarded it, no sync it forwarded
    /// before it may still wait for its SYNC.
    fn check_forwarded_order(&mut self, id: ServerId, ci: usize, seq: u64) -> Check {
        let n = self.nodes.get_mut(&id).unwrap();
        let Some(i) = n.forwarded.iter().position(|f| *f == Some((ci, seq))) else {
            return Ok(());
        };
        if n.forwarded.iter().take(i).any(Option::is_none) {
            return Err(format!(
                "node {id}: client {ci}'s write {seq} applied before the SYNC of a sync forwarded before it"
            ));
        }
        n.forwarded.remove(i);
        Ok(())
    }

    /// A sync returned at `id`: it must have applied every write acknowledged
    /// before the sync was invoked.
    fn check_sync(&mut self, id: ServerId, ci: usize, need: Zxid) -> Check {
        let n = &self.nodes[&id];
        let have = n.sm.last_txn;
        if have < need {
            return Err(format!(
                "node {id}: sync returned at {have:?}, but {need:?} was acknowledged before it"
            ));
        }
        self.stats.syncs_checked += 1;
        if self.clients[ci].at == Some(id) {
            self.clients[ci].sync_out = false;
        }
        Ok(())
    }

    fn on_client_txn(&mut self, id: ServerId, e: &Entry) -> Check {
        let Some((ci, seq)) = Self::decode_payload(&e.payload) else {
            return Ok(());
        };
        self.check_forwarded_order(id, ci, seq)?;
        match self.owner.get(&e.zxid) {
            Some(o) if *o != (ci, seq) => {
                return Err(format!("zxid {:?} holds two requests", e.zxid));
            }
            Some(_) => {}
            None => {
                self.owner.insert(e.zxid, (ci, seq));
                let c = &mut self.clients[ci];
                let session = c.session_of.get(&seq).copied().unwrap_or(0);
                let key = (session, seq);
                if let Some(z) = c.committed.get(&key) {
                    if *z != e.zxid {
                        return Err(format!(
                            "client {ci} request {seq} committed twice ({z:?}, {:?})",
                            e.zxid
                        ));
                    }
                }
                c.committed.insert(key, e.zxid);
                let before = c
                    .committed
                    .range((session, 0)..key)
                    .next_back()
                    .map(|(_, z)| *z);
                let after = c
                    .committed
                    .range((session, seq + 1)..(session + 1, 0))
                    .next()
                    .map(|(_, z)| *z);
                if before.is_some_and(|z| z > e.zxid) || after.is_some_and(|z| z < e.zxid) {
                    return Err(format!(
                        "client {ci}'s writes in session {session} committed out of order"
                    ));
                }
            }
        }
        let c = &mut self.clients[ci];
        if c.at == Some(id) {
            if let Some((_, _, floor)) = c.outstanding.remove(&seq) {
                if e.zxid <= floor {
                    return Err(format!(
                        "client {ci} write {seq} at {:?} is ordered before {floor:?}, acknowledged \
                         before it was invoked",
                        e.zxid
                    ));
                }
                self.acked = self.acked.max(e.zxid);
                self.stats.acked_writes += 1;
            }
        }
        Ok(())
    }

    // ----- durability ------------------------------------------------------------------

    /// Every committed txn is on the synced disk of a quorum of voters (checked for
    /// the newest; the rest are in every state that holds it, which is checked).
    fn check_durable_quorum(&mut self) -> Check {
        let Some(&(target, hash)) = self.committed.txns.last() else {
            return Ok(());
        };
        let holds = |d: &DiskState| {
            d.log
                .iter()
                .any(|e| e.zxid == target && hash_bytes(&e.payload) == hash)
                || d.snapshot.as_ref().is_some_and(|s| s.holds(target, hash))
        };
        let holders: Vec<ServerId> = self
            .committed_voters
            .iter()
            .copied()
            .filter(|v| holds(&self.nodes[v].disk.synced))
            .collect();
        if holders.len() * 2 <= self.committed_voters.len() {
            return Err(format!(
                "committed txn {target:?} is durable only on voters {holders:?} of {:?}",
                self.committed_voters
            ));
        }
        Ok(())
    }
}

/// Runs one seed.
pub fn run_seed(seed: u64, bug: Option<PlantedBug>, trace: bool) -> Result<Stats, String> {
    let mut cfg = SimConfig::from_seed(seed);
    cfg.bug = bug;
    cfg.trace = trace;
    Sim::new(cfg).run()
}

/// The command that replays a seed with a full trace.
pub fn replay_command(seed: u64) -> String {
    format!("ZAB_SEED={seed} ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay -- --nocapture")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    /// Runs `count` seeds from `first`; panics with the replay command on failure.
    fn run_range(first: u64, count: u64) {
        for seed in first..first + count {
            if let Err(e) = run_seed(seed, None, false) {
                panic!("seed {seed} failed: {e}\nreplay: {}", replay_command(seed));
            }
        }
    }

    // Four shards so the test harness can use both cores. ZAB_SEEDS scales them.
    fn shard(i: u64) {
        let per = env_u64("ZAB_SEEDS").unwrap_or(2000) / 4;
        let base = env_u64("ZAB_SEED_BASE").unwrap_or(0);
        run_range(base + i * per, per);
    }

    #[test]
    fn seeds_0() {
        shard(0)
    }
    #[test]
    fn seeds_1() {
        shard(1)
    }
    #[test]
    fn seeds_2() {
        shard(2)
    }
    #[test]
    fn seeds_3() {
        shard(3)
    }

    /// `ZAB_SEED=n ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay -- --nocapture`
    #[test]
    fn replay() {
        let Some(seed) = env_u64("ZAB_SEED") else {
            return;
        };
        let trace = std::env::var("ZAB_TRACE").is_ok_and(|v| v != "0");
        match run_seed(seed, None, trace) {
            Ok(stats) => println!("seed {seed} ok: {stats:?}"),
            Err(e) => panic!("seed {seed} failed: {e}"),
        }
    }

    /// Runs seeds with a planted bug until a check fails; returns the seed.
    fn first_catch(bug: PlantedBug, durable_check: bool, limit: u64) -> u64 {
        for seed in 0..limit {
            let mut cfg = SimConfig::from_seed(seed);
            cfg.bug = Some(bug);
            cfg.check_durable_quorum = durable_check;
            if let Err(e) = Sim::new(cfg).run() {
                println!("{bug:?} (durability check {durable_check}) caught at seed {seed}: {e}");
                return seed;
            }
        }
        panic!("{bug:?} not caught in {limit} seeds");
    }

    /// The simulator must catch a leader that commits on a minority, also through
    /// the history and client checks alone.
    #[test]
    fn planted_bug_commit_on_minority_is_caught() {
        first_catch(PlantedBug::CommitOnMinority, true, 50);
        first_catch(PlantedBug::CommitOnMinority, false, 300);
    }

    /// ... and a follower that acks before its disk has the proposal.
    #[test]
    fn planted_bug_ack_before_durable_is_caught() {
        first_catch(PlantedBug::AckBeforeDurable, true, 300);
    }

    /// ... and a leader that commits during a reconfig without the new config's
    /// quorum.
    #[test]
    fn planted_bug_old_quorum_only_is_caught() {
        first_catch(PlantedBug::OldQuorumOnly, true, 600);
    }

    /// Same seed, same run.
    #[test]
    fn deterministic() {
        let a = run_seed(7, None, false).expect("seed 7");
        let b = run_seed(7, None, false).expect("seed 7");
        assert_eq!(
            (a.steps, a.commits, a.messages, a.crashes),
            (b.steps, b.commits, b.messages, b.crashes)
        );
    }

    /// Steps per second of the core + simulator (for PERF.md):
    /// `cargo test --release --lib zab::sim::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let seeds = env_u64("ZAB_SEEDS").unwrap_or(200);
        let start = std::time::Instant::now();
        let mut total = Stats::default();
        for seed in 0..seeds {
            let s = run_seed(seed, None, false).expect("seed");
            total.steps += s.steps;
            total.commits += s.commits;
            total.crashes += s.crashes;
            total.leaders += s.leaders;
            total.diff_syncs += s.diff_syncs;
            total.trunc_syncs += s.trunc_syncs;
            total.snap_syncs += s.snap_syncs;
            total.syncs_checked += s.syncs_checked;
            total.leader_syncs_checked += s.leader_syncs_checked;
            total.acked_writes += s.acked_writes;
            total.reconfigs += s.reconfigs;
            total.activations += s.activations;
            total.recovery_ms = total.recovery_ms.max(s.recovery_ms);
        }
        let secs = start.elapsed().as_secs_f64();
        println!("totals (recovery_ms = worst): {total:?}");
        println!(
            "{seeds} seeds in {secs:.2}s: {} steps ({:.0} steps/s), {} commits",
            total.steps,
            total.steps as f64 / secs,
            total.commits
        );
    }
}
