//! Deterministic simulator of a Zab ensemble: 3, 5 or 7 voters plus observers and
//! simulated clients, single-threaded, driven by one seed.
//!
//! Test-only (or the `sim` feature); runs on the test thread. Time advances in
//! units (`UNITS_PER_TICK` per replica tick). Each unit the simulator delivers due
//! messages, each tick it injects faults, ticks every live replica and lets the
//! clients propose. After every input it drains the replica's `Ready` batches into
//! a simulated network and disk and runs the checks:
//!
//! - at most one leader is established per epoch;
//! - applied histories agree: every applied txn lands at the same position with
//!   the same state digest on every replica (so no committed txn is lost, changed
//!   or reordered on a replica that applies it), snapshots match the history;
//! - a truncation never removes a txn that was committed, and every committed txn
//!   stays durable (synced) on a quorum of voters;
//! - clients: writes are linearizable (a write invoked after another was
//!   acknowledged is ordered after it) and FIFO per session (no reordering, no
//!   gap within a connection).
//!
//! The network drops, delays, duplicates and reorders messages, and partitions the
//! servers in changing patterns; replicas crash (losing unsynced writes, possibly
//! keeping a prefix of them: a torn tail) and restart from their synced disk. Then
//! faults stop and a leader must be established and commit a new client write
//! within `recovery_ticks_max`; then, with clients stopped, every server must serve
//! that leader and have applied all it committed within `converge_ticks_max`.
//!
//! Replay a seed: `ZAB_SEED=1234 ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay -- --nocapture`.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{
    Apply, Config, DurableState, Input, Msg, PlantedBug, Ready, Replica, ServerId, Snapshot, Write,
    Zxid,
};

/// Simulated time units per replica tick.
pub const UNITS_PER_TICK: u64 = 10;

/// One simulation's shape and fault rates (chances are per mille).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub voters: usize,
    pub observers: usize,
    pub clients: usize,
    /// Ticks with faults; then the network heals and everyone restarts.
    pub fault_ticks: u64,
    /// Ticks after healing within which a new write must commit.
    pub recovery_ticks_max: u64,
    /// Then, with clients stopped, ticks within which every server must serve the
    /// leader and have applied all it committed (0: skip).
    pub converge_ticks_max: u64,
    pub drop_per_mille: u32,
    pub dup_per_mille: u32,
    pub reorder_per_mille: u32,
    /// Per tick, chance the partition pattern changes.
    pub partition_per_mille: u32,
    /// Per live replica per tick.
    pub crash_per_mille: u32,
    /// Per ready batch, chance its sync is deferred to the next tick.
    pub slow_sync_per_mille: u32,
    /// Per live replica per tick.
    pub compact_per_mille: u32,
    pub zxid_counter_max: u32,
    pub in_flight_proposals_max: u32,
    pub finalize_wait_ticks: u64,
    pub sync_entries_max: usize,
    pub bug: Option<PlantedBug>,
    /// Check quorum durability of committed txns every tick (off only to show the
    /// other checks catch a planted bug too).
    pub check_durable_quorum: bool,
    pub trace: bool,
}

impl SimConfig {
    /// Derives a varied configuration from a seed.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = SmallRng::seed_from_u64(seed ^ 0x5eed_c0de);
        SimConfig {
            seed,
            voters: [3, 5, 7][r.gen_range(0..3)],
            observers: r.gen_range(0..=2),
            clients: r.gen_range(1..=3),
            fault_ticks: 150,
            recovery_ticks_max: 80,
            converge_ticks_max: 40,
            drop_per_mille: r.gen_range(0..=60),
            dup_per_mille: r.gen_range(0..=30),
            reorder_per_mille: r.gen_range(0..=20),
            partition_per_mille: r.gen_range(0..=80),
            crash_per_mille: r.gen_range(0..=15),
            slow_sync_per_mille: r.gen_range(0..=300),
            compact_per_mille: r.gen_range(0..=30),
            zxid_counter_max: if r.gen_bool(0.2) { 12 } else { u32::MAX - 1 },
            in_flight_proposals_max: r.gen_range(1..=16),
            finalize_wait_ticks: r.gen_range(0..=1),
            sync_entries_max: r.gen_range(1..=32),
            bug: None,
            check_durable_quorum: true,
            trace: false,
        }
    }
}

/// Figures of one run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Inputs fed to replicas (ticks + messages) plus proposals.
    pub steps: u64,
    pub ticks: u64,
    pub commits: u64,
    pub crashes: u64,
    pub leaders: u64,
    pub messages: u64,
    /// Ticks from healing to the first committed post-heal write.
    pub recovery_ticks: u64,
    pub diff_syncs: u64,
    pub trunc_syncs: u64,
    pub snap_syncs: u64,
    /// Leaders that gave up an epoch because the zxid counter ran out.
    pub rollovers: u64,
}

#[derive(Debug)]
struct InFlight {
    at: u64,
    seq: u64,
    from: ServerId,
    to: ServerId,
    msg: Msg,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    // Min-heap on (at, seq).
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A simulated disk: what is synced, and writes not yet synced.
#[derive(Default, Clone)]
struct Disk {
    synced: DurableState,
    unsynced: Vec<Write>,
    /// synced + unsynced: what the replica believes it wrote.
    view: DurableState,
}

/// The driver's state machine: a digest chain over applied txns.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Sm {
    zxid: Zxid,
    count: u64,
    digest: u64,
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
    fn apply(&mut self, zxid: Zxid, payload: &[u8]) {
        self.zxid = zxid;
        self.count += 1;
        self.digest = mix(mix(self.digest, zxid.0), hash_bytes(payload));
    }
    fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.zxid.0.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        v.extend_from_slice(&self.digest.to_be_bytes());
        Bytes::from(v)
    }
    fn decode(b: &[u8]) -> Option<Sm> {
        if b.is_empty() {
            return Some(Sm::default());
        }
        if b.len() != 24 {
            return None;
        }
        let u = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Sm {
            zxid: Zxid(u(0)),
            count: u(8),
            digest: u(16),
        })
    }
}

struct Node {
    cfg: Config,
    replica: Option<Replica>,
    disk: Disk,
    sm: Sm,
    /// A batch whose sync was deferred.
    pending: Option<Ready>,
    restart_at: Option<u64>,
    group: u8,
    incarnation: u64,
}

/// One committed txn in the global history.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Committed {
    zxid: Zxid,
    payload: Bytes,
    digest: u64,
}

#[derive(Debug)]
struct WriteRec {
    gen: u64,
    /// Highest history position acknowledged to any client when this was invoked.
    floor: Option<usize>,
    invoked_tick: u64,
}

struct Client {
    id: u32,
    next_seq: u64,
    gen: u64,
    conn: Option<(ServerId, u32)>,
    outstanding: VecDeque<(u64, Zxid)>,
    writes: BTreeMap<u64, WriteRec>,
    last_committed: Option<u64>,
}

/// The simulated world.
pub struct Sim {
    cfg: SimConfig,
    rng: SmallRng,
    now: u64,
    seq: u64,
    nodes: BTreeMap<ServerId, Node>,
    voters: Vec<ServerId>,
    net: BinaryHeap<InFlight>,
    link_last: BTreeMap<(ServerId, ServerId), u64>,
    history: Vec<Committed>,
    pos_of: BTreeMap<Zxid, usize>,
    leaders: BTreeMap<u32, ServerId>,
    clients: Vec<Client>,
    max_acked_pos: Option<usize>,
    healed_at: Option<u64>,
    recovered_at: Option<u64>,
    clients_stopped: bool,
    stats: Stats,
}

type Check = Result<(), String>;

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let voters: Vec<ServerId> = (1..=cfg.voters as u64).collect();
        let observers: Vec<ServerId> =
            (cfg.voters as u64 + 1..=(cfg.voters + cfg.observers) as u64).collect();
        let mut nodes = BTreeMap::new();
        for id in voters.iter().chain(observers.iter()) {
            let mut c = Config::new(*id, voters.clone(), observers.clone());
            c.init_limit_ticks = 10;
            c.sync_limit_ticks = 5;
            c.election_resend_ticks = 2;
            c.election_jitter_ticks = 2;
            c.finalize_wait_ticks = cfg.finalize_wait_ticks;
            c.in_flight_proposals_max = cfg.in_flight_proposals_max;
            c.zxid_counter_max = cfg.zxid_counter_max;
            c.payload_bytes_max = 64;
            c.sync_entries_max = cfg.sync_entries_max;
            nodes.insert(
                *id,
                Node {
                    cfg: c,
                    replica: None,
                    disk: Disk::default(),
                    sm: Sm::default(),
                    pending: None,
                    restart_at: Some(0),
                    group: 0,
                    incarnation: 0,
                },
            );
        }
        let clients = (0..cfg.clients as u32)
            .map(|id| Client {
                id,
                next_seq: 0,
                gen: 0,
                conn: None,
                outstanding: VecDeque::new(),
                writes: BTreeMap::new(),
                last_committed: None,
            })
            .collect();
        Sim {
            rng: SmallRng::seed_from_u64(cfg.seed),
            cfg,
            now: 0,
            seq: 0,
            nodes,
            voters,
            net: BinaryHeap::new(),
            link_last: BTreeMap::new(),
            history: Vec::new(),
            pos_of: BTreeMap::new(),
            leaders: BTreeMap::new(),
            clients,
            max_acked_pos: None,
            healed_at: None,
            recovered_at: None,
            clients_stopped: false,
            stats: Stats::default(),
        }
    }

    fn tick(&self) -> u64 {
        self.now / UNITS_PER_TICK
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.gen_range(0..1000) < per_mille
    }

    fn faulty(&self) -> bool {
        self.healed_at.is_none()
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        if self.cfg.trace {
            let line = format!("[t{:>5} u{:>6}] {}", self.tick(), self.now, f());
            println!("{line}");
        }
    }

    /// Runs to the end; `Err` describes the first violated property.
    pub fn run(mut self) -> Result<Stats, String> {
        let end_fault = self.cfg.fault_ticks * UNITS_PER_TICK;
        let end = end_fault + self.cfg.recovery_ticks_max * UNITS_PER_TICK;
        while self.now <= end {
            if self.now == end_fault {
                self.heal()?;
            }
            if self.now.is_multiple_of(UNITS_PER_TICK) {
                self.on_tick()?;
            }
            self.deliver_due()?;
            if let (Some(h), Some(r)) = (self.healed_at, self.recovered_at) {
                self.stats.recovery_ticks = r - h;
                break;
            }
            self.now += 1;
        }
        if self.recovered_at.is_none() {
            return Err(format!(
                "liveness: no write committed within {} ticks after faults stopped",
                self.cfg.recovery_ticks_max
            ));
        }
        if self.cfg.converge_ticks_max > 0 {
            self.converge()?;
        }
        self.stats.ticks = self.tick();
        self.stats.commits = self.history.len() as u64;
        self.stats.leaders = self.leaders.len() as u64;
        Ok(self.stats)
    }

    /// Clients stop; within `converge_ticks_max` every server must serve the same
    /// leader and have applied everything it committed.
    fn converge(&mut self) -> Check {
        self.clients_stopped = true;
        let deadline = self.now + self.cfg.converge_ticks_max * UNITS_PER_TICK;
        while self.now <= deadline {
            if self.now.is_multiple_of(UNITS_PER_TICK) {
                self.on_tick()?;
                if let Some(state) = self.converged() {
                    self.log(|| format!("=== converged: {state} ==="));
                    return Ok(());
                }
            }
            self.deliver_due()?;
            self.now += 1;
        }
        let roles: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| match &n.replica {
                Some(r) => format!("{id}:{:?} applied {:?}", r.role(), r.applied()),
                None => format!("{id}:down"),
            })
            .collect();
        Err(format!(
            "liveness: not converged within {} ticks of recovery: {roles:?}",
            self.cfg.converge_ticks_max
        ))
    }

    fn converged(&self) -> Option<String> {
        let (lid, leader) = self.nodes.iter().find_map(|(id, n)| {
            n.replica
                .as_ref()
                .filter(|r| r.established_epoch().is_some())
                .map(|r| (*id, r))
        })?;
        let target = leader.committed();
        let all = self.nodes.iter().all(|(id, n)| {
            let Some(r) = &n.replica else { return false };
            let serving = *id == lid
                || matches!(r.role(), super::Role::Following { leader, serving: true }
                    | super::Role::Observing { leader, serving: true } if leader == lid);
            serving && r.applied() == target && n.sm.zxid == target
        });
        all.then(|| format!("leader {lid}, all applied {target:?}"))
    }

    fn heal(&mut self) -> Check {
        self.log(|| "=== faults stop: heal network, restart everyone ===".into());
        self.healed_at = Some(self.tick());
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        for id in ids {
            let n = self.nodes.get_mut(&id).expect("node");
            n.group = 0;
            if n.replica.is_none() {
                n.restart_at = Some(self.now / UNITS_PER_TICK);
            }
        }
        Ok(())
    }

    fn on_tick(&mut self) -> Check {
        let tick = self.tick();
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        if self.faulty() {
            if self.chance(self.cfg.partition_per_mille) {
                self.repartition();
            }
            for id in &ids {
                if self.nodes[id].replica.is_some() && self.chance(self.cfg.crash_per_mille) {
                    self.crash(*id);
                }
            }
        }
        for id in &ids {
            if self.nodes[id].restart_at.is_some_and(|t| t <= tick) {
                self.restart(*id)?;
            }
        }
        for id in &ids {
            // Deferred syncs complete now.
            if let Some(rd) = self.nodes.get_mut(id).expect("node").pending.take() {
                self.finish_batch(*id, rd)?;
                self.pump(*id)?;
            }
            if self.nodes[id].replica.is_some() {
                self.input(*id, Input::Tick)?;
            }
            if self.nodes[id].replica.is_some() && self.chance(self.cfg.compact_per_mille) {
                self.compact(*id)?;
            }
        }
        self.clients_act()?;
        if self.cfg.check_durable_quorum {
            self.check_durable_quorum()?;
        }
        Ok(())
    }

    fn repartition(&mut self) {
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        let kind = self.rng.gen_range(0..4);
        for id in &ids {
            let g = match kind {
                0 => 0,                                // heal
                1 => u8::from(self.rng.gen_bool(0.5)), // random halves
                _ => 0,
            };
            self.nodes.get_mut(id).expect("node").group = g;
        }
        if kind >= 2 {
            // Isolate one server (often the leader).
            let leader = ids.iter().copied().find(|id| {
                self.nodes[id]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.established_epoch().is_some())
            });
            let victim = match leader {
                Some(l) if kind == 2 => l,
                _ => ids[self.rng.gen_range(0..ids.len())],
            };
            self.nodes.get_mut(&victim).expect("node").group = 1;
        }
        let groups: Vec<(ServerId, u8)> = ids.iter().map(|i| (*i, self.nodes[i].group)).collect();
        self.log(|| format!("partition {groups:?}"));
    }

    fn crash(&mut self, id: ServerId) {
        self.stats.crashes += 1;
        let down = self.rng.gen_range(1..=20);
        let n = self.nodes.get_mut(&id).expect("node");
        n.replica = None;
        n.pending = None;
        // Unsynced writes: a prefix may have reached the disk; the rest is lost.
        let keep = self.rng.gen_range(0..=n.disk.unsynced.len());
        let n = self.nodes.get_mut(&id).expect("node");
        for w in n.disk.unsynced.drain(..).take(keep) {
            n.disk.synced.apply(&w);
        }
        n.disk.view = n.disk.synced.clone();
        n.restart_at = Some(self.now / UNITS_PER_TICK + down);
        self.log(|| format!("CRASH {id} (kept {keep} unsynced writes), down {down} ticks"));
        // Peers whose TCP connection resets notice.
        let peers: Vec<ServerId> = self.nodes.keys().copied().filter(|p| *p != id).collect();
        for p in peers {
            if self.nodes[&p].replica.is_some() && self.rng.gen_bool(0.5) {
                let _ = self.input(p, Input::Disconnected { peer: id });
            }
        }
    }

    fn restart(&mut self, id: ServerId) -> Check {
        let seed = self.rng.gen::<u64>();
        let tick = self.tick();
        let n = self.nodes.get_mut(&id).expect("node");
        n.restart_at = None;
        n.incarnation += 1;
        let mut cfg = n.cfg.clone();
        cfg.seed = seed;
        let mut r = Replica::new(cfg, n.disk.synced.clone(), tick)
            .map_err(|e| format!("restart {id}: {e}"))?;
        if let Some(bug) = self.cfg.bug {
            r.plant_bug(bug);
        }
        n.sm = Sm::default();
        n.replica = Some(r);
        let d = n.disk.synced.clone();
        self.log(|| {
            format!(
                "START {id}: accepted {} current {} base {:?} last {:?}",
                d.accepted_epoch,
                d.current_epoch,
                d.base_zxid(),
                d.last_zxid()
            )
        });
        self.pump(id)
    }

    fn compact(&mut self, id: ServerId) -> Check {
        let n = self.nodes.get_mut(&id).expect("node");
        let r = n.replica.as_mut().expect("live");
        if n.sm.zxid > r.snapshot().map_or(Zxid::ZERO, |s| s.zxid) && n.sm.zxid == r.applied() {
            let snap = Snapshot {
                zxid: n.sm.zxid,
                data: n.sm.encode(),
            };
            r.compact(snap).map_err(|e| format!("compact {id}: {e}"))?;
            self.pump(id)?;
        }
        Ok(())
    }

    /// Feeds one input to a live replica and drains its output.
    fn input(&mut self, id: ServerId, input: Input) -> Check {
        self.stats.steps += 1;
        let tick = self.tick();
        if self.cfg.trace && !matches!(input, Input::Tick) {
            let s = format!("{id} <- {input:?}");
            self.log(|| s);
        }
        let n = self.nodes.get_mut(&id).expect("node");
        let Some(r) = n.replica.as_mut() else {
            return Ok(());
        };
        let before = r.role();
        r.step(tick, input);
        let after = r.role();
        if before != after {
            self.log(|| format!("{id} role {before:?} -> {after:?}"));
        }
        self.pump(id)
    }

    /// Drains ready batches: send, write, sync (maybe later), advance, apply.
    fn pump(&mut self, id: ServerId) -> Check {
        loop {
            if self.nodes[&id].pending.is_some() {
                return Ok(());
            }
            let n = self.nodes.get_mut(&id).expect("node");
            let Some(r) = n.replica.as_mut() else {
                return Ok(());
            };
            let Some(mut rd) = r.ready() else {
                break;
            };
            for out in rd.take_send_now() {
                self.send(id, out.to, out.msg);
            }
            for w in rd.writes().to_vec() {
                self.check_write(id, &w)?;
                let n = self.nodes.get_mut(&id).expect("node");
                n.disk.view.apply(&w);
                n.disk.unsynced.push(w);
            }
            if self.faulty() && rd.has_writes() && self.chance(self.cfg.slow_sync_per_mille) {
                self.nodes.get_mut(&id).expect("node").pending = Some(rd);
                return self.check_leaders(id);
            }
            self.finish_batch(id, rd)?;
        }
        self.check_leaders(id)
    }

    fn finish_batch(&mut self, id: ServerId, rd: Ready) -> Check {
        let n = self.nodes.get_mut(&id).expect("node");
        for w in n.disk.unsynced.drain(..) {
            n.disk.synced.apply(&w);
        }
        let Some(r) = n.replica.as_mut() else {
            return Ok(());
        };
        let released = r.advance(rd.persisted());
        for out in released.send {
            self.send(id, out.to, out.msg);
        }
        for a in released.apply {
            self.apply(id, a)?;
        }
        Ok(())
    }

    fn check_leaders(&mut self, id: ServerId) -> Check {
        let Some(epoch) = self.nodes[&id]
            .replica
            .as_ref()
            .and_then(|r| r.established_epoch())
        else {
            return Ok(());
        };
        match self.leaders.get(&epoch) {
            Some(l) if *l != id => Err(format!(
                "two leaders established in epoch {epoch}: {l} and {id}"
            )),
            Some(_) => Ok(()),
            None => {
                self.log(|| format!("LEADER {id} established epoch {epoch}"));
                self.leaders.insert(epoch, id);
                Ok(())
            }
        }
    }

    fn check_write(&mut self, id: ServerId, w: &Write) -> Check {
        let appended: &[super::Entry] = match w {
            Write::Append(e) => std::slice::from_ref(e),
            Write::InstallSnapshot { entries, .. } => entries,
            _ => &[],
        };
        for e in appended {
            if let Some(p) = self.pos_of.get(&e.zxid) {
                if self.history[*p].payload != e.payload {
                    return Err(format!("{id} logs {:?} with a changed payload", e.zxid));
                }
            }
        }
        if let Write::TruncateAfter(t) = w {
            let view = &self.nodes[&id].disk.view;
            for e in view.log.iter().filter(|e| e.zxid > *t) {
                if let Some(p) = self.pos_of.get(&e.zxid) {
                    if self.history[*p].payload == e.payload {
                        return Err(format!(
                            "{id} truncates committed txn {:?} (truncate after {t:?})",
                            e.zxid
                        ));
                    }
                }
            }
        }
        if self.cfg.trace {
            let s = match w {
                Write::Append(e) => format!("{id} write Append({:?})", e.zxid),
                other => format!("{id} write {other:?}"),
            };
            self.log(|| s);
        }
        Ok(())
    }

    fn apply(&mut self, id: ServerId, a: Apply) -> Check {
        match a {
            Apply::Snapshot(s) => {
                let sm = Sm::decode(&s.data).ok_or_else(|| format!("{id}: bad snapshot"))?;
                if sm.count > 0 {
                    let c = self
                        .history
                        .get(sm.count as usize - 1)
                        .ok_or_else(|| format!("{id}: snapshot beyond history"))?;
                    if c.zxid != sm.zxid || c.digest != sm.digest || sm.zxid != s.zxid {
                        return Err(format!(
                            "{id}: snapshot at {:?} disagrees with the committed history",
                            s.zxid
                        ));
                    }
                }
                self.log(|| format!("{id} apply snapshot {:?} (#{})", s.zxid, sm.count));
                self.nodes.get_mut(&id).expect("node").sm = sm;
            }
            Apply::Entry(e) => {
                let n = self.nodes.get_mut(&id).expect("node");
                if e.zxid <= n.sm.zxid {
                    return Err(format!(
                        "{id} applies {:?} after {:?}: out of order",
                        e.zxid, n.sm.zxid
                    ));
                }
                n.sm.apply(e.zxid, &e.payload);
                let sm = n.sm;
                let pos = sm.count as usize - 1;
                let c = Committed {
                    zxid: e.zxid,
                    payload: e.payload.clone(),
                    digest: sm.digest,
                };
                if pos < self.history.len() {
                    if self.history[pos] != c {
                        return Err(format!(
                            "{id} applied {:?} at position {pos}, history has {:?}: histories diverge",
                            e.zxid, self.history[pos].zxid
                        ));
                    }
                } else {
                    debug_assert_eq!(pos, self.history.len());
                    if let Some(last) = self.history.last() {
                        if last.zxid >= e.zxid {
                            return Err(format!("committed zxids not increasing at {:?}", e.zxid));
                        }
                    }
                    self.history.push(c);
                    self.pos_of.insert(e.zxid, pos);
                    self.log(|| format!("COMMIT #{pos} {:?} (first applied by {id})", e.zxid));
                    self.on_committed(pos, &e.payload)?;
                }
                self.on_applied(id, pos, &e.payload)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, from: ServerId, to: ServerId, msg: Msg) {
        self.stats.messages += 1;
        if let Msg::Sync { mode, .. } = &msg {
            match mode {
                super::SyncMode::Diff => self.stats.diff_syncs += 1,
                super::SyncMode::Trunc => self.stats.trunc_syncs += 1,
                super::SyncMode::Snap(_) => self.stats.snap_syncs += 1,
            }
        }
        if self.nodes[&from].group != self.nodes[&to].group {
            return;
        }
        let faulty = self.faulty();
        if faulty && self.chance(self.cfg.drop_per_mille) {
            self.log(|| format!("drop {from}->{to} {msg:?}"));
            return;
        }
        let copies = if faulty && self.chance(self.cfg.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let link = (from, to);
            let mut at = self.now + self.rng.gen_range(1..=4);
            if faulty && self.chance(self.cfg.reorder_per_mille) {
                at = self.now + self.rng.gen_range(1..=40);
            } else {
                // Per-link FIFO, as TCP gives.
                at = at.max(self.link_last.get(&link).copied().unwrap_or(0));
                self.link_last.insert(link, at);
            }
            self.seq += 1;
            self.net.push(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                msg: msg.clone(),
            });
        }
    }

    fn deliver_due(&mut self) -> Check {
        while self.net.peek().is_some_and(|m| m.at <= self.now) {
            let m = self.net.pop().expect("peeked");
            let (from, to) = (m.from, m.to);
            if self.nodes[&from].group != self.nodes[&to].group || self.nodes[&to].replica.is_none()
            {
                continue;
            }
            self.input(to, Input::Message { from, msg: m.msg })?;
        }
        Ok(())
    }

    // ----- clients -------------------------------------------------------------

    fn clients_act(&mut self) -> Check {
        if self.clients_stopped {
            return Ok(());
        }
        let leader = self.nodes.iter().find_map(|(id, n)| {
            let e = n.replica.as_ref()?.established_epoch()?;
            (n.group == 0 || !self.faulty()).then_some((*id, e))
        });
        let tick = self.tick();
        for ci in 0..self.clients.len() {
            let want = self.rng.gen_range(0..3);
            let c = &mut self.clients[ci];
            if c.conn != leader {
                // Connection lost or moved: the fate of outstanding writes is unknown
                // to this client (ConnectionLoss); it carries on in a new connection.
                c.conn = leader;
                c.gen += 1;
                c.outstanding.clear();
            }
            let Some((lid, _)) = c.conn else { continue };
            for _ in 0..want {
                let c = &mut self.clients[ci];
                if c.outstanding.len() >= 4 {
                    break;
                }
                let seq = c.next_seq;
                let mut p = Vec::with_capacity(16);
                p.extend_from_slice(&c.id.to_be_bytes());
                p.extend_from_slice(&seq.to_be_bytes());
                let pad = self.rng.gen_range(0..8u8);
                p.extend(std::iter::repeat_n(pad, pad as usize));
                let r = self
                    .nodes
                    .get_mut(&lid)
                    .expect("node")
                    .replica
                    .as_mut()
                    .expect("live leader");
                self.stats.steps += 1;
                match r.propose(Bytes::from(p)) {
                    Ok(zxid) => {
                        let c = &mut self.clients[ci];
                        c.next_seq += 1;
                        c.outstanding.push_back((seq, zxid));
                        c.writes.insert(
                            seq,
                            WriteRec {
                                gen: c.gen,
                                floor: self.max_acked_pos,
                                invoked_tick: tick,
                            },
                        );
                        let cid = c.id;
                        self.log(|| format!("client {cid} proposes #{seq} at {lid} -> {zxid:?}"));
                    }
                    Err(e) => {
                        if matches!(e, super::ZabError::ZxidExhausted { .. }) {
                            self.stats.rollovers += 1;
                        }
                        self.log(|| format!("propose at {lid}: {e}"));
                        break;
                    }
                }
            }
            self.pump(lid)?;
        }
        Ok(())
    }

    fn decode_payload(p: &[u8]) -> Option<(u32, u64)> {
        if p.len() < 12 {
            return None;
        }
        Some((
            u32::from_be_bytes(p[0..4].try_into().ok()?),
            u64::from_be_bytes(p[4..12].try_into().ok()?),
        ))
    }

    /// First time a txn is known committed: order checks for its client.
    fn on_committed(&mut self, pos: usize, payload: &[u8]) -> Check {
        let Some((cid, seq)) = Self::decode_payload(payload) else {
            return Ok(());
        };
        let c = &mut self.clients[cid as usize];
        let rec = c
            .writes
            .get(&seq)
            .ok_or_else(|| format!("client {cid} #{seq} committed but never proposed"))?;
        if c.last_committed.is_some_and(|l| l >= seq) {
            return Err(format!(
                "FIFO: client {cid} #{seq} committed after #{:?}",
                c.last_committed
            ));
        }
        if seq > 0 {
            if let Some(prev) = c.writes.get(&(seq - 1)) {
                if prev.gen == rec.gen && c.last_committed != Some(seq - 1) {
                    return Err(format!(
                        "FIFO: client {cid} #{seq} committed but #{} of the same connection was not",
                        seq - 1
                    ));
                }
            }
        }
        if rec.floor.is_some_and(|f| pos <= f) {
            return Err(format!(
                "linearizability: client {cid} #{seq} (invoked at tick {}) ordered at {pos}, \
                 before a write acknowledged at {:?} before it was invoked",
                rec.invoked_tick, rec.floor
            ));
        }
        c.last_committed = Some(seq);
        if self.healed_at.is_some_and(|h| rec.invoked_tick >= h) && self.recovered_at.is_none() {
            self.recovered_at = Some(self.tick());
            self.log(|| "=== recovered: a post-heal write committed ===".into());
        }
        Ok(())
    }

    /// A replica applied a txn: acknowledge it to its client if it proposed it there.
    fn on_applied(&mut self, id: ServerId, pos: usize, payload: &[u8]) -> Check {
        let Some((cid, seq)) = Self::decode_payload(payload) else {
            return Ok(());
        };
        let c = &mut self.clients[cid as usize];
        if c.conn.map(|(l, _)| l) != Some(id) {
            return Ok(());
        }
        let Some(pos_in_q) = c.outstanding.iter().position(|(s, _)| *s == seq) else {
            return Ok(());
        };
        if pos_in_q != 0 {
            return Err(format!(
                "FIFO: client {cid} #{seq} completed before #{}",
                c.outstanding[0].0
            ));
        }
        c.outstanding.pop_front();
        self.max_acked_pos = Some(self.max_acked_pos.map_or(pos, |m| m.max(pos)));
        Ok(())
    }

    // ----- durability ----------------------------------------------------------

    /// Every committed txn must be synced on a quorum of voters.
    fn check_durable_quorum(&mut self) -> Check {
        if self.history.is_empty() {
            return Ok(());
        }
        let mut held: Vec<usize> = Vec::with_capacity(self.voters.len());
        for v in &self.voters {
            let d = &self.nodes[v].disk.synced;
            let mut n = match &d.snapshot {
                None => 0,
                Some(s) => match Sm::decode(&s.data) {
                    Some(sm) => sm.count as usize,
                    None => 0,
                },
            };
            for e in &d.log {
                match self.history.get(n) {
                    Some(c) if c.zxid == e.zxid && c.payload == e.payload => n += 1,
                    Some(c) if e.zxid < c.zxid => continue,
                    _ => break,
                }
            }
            held.push(n);
        }
        held.sort_unstable_by(|a, b| b.cmp(a));
        let q = self.voters.len() / 2 + 1;
        if held[q - 1] < self.history.len() {
            if self.cfg.trace {
                for v in &self.voters {
                    let d = &self.nodes[v].disk.synced;
                    let zs: Vec<Zxid> = d.log.iter().map(|e| e.zxid).collect();
                    println!("voter {v} synced: base {:?} log {zs:?}", d.base_zxid());
                }
                let hs: Vec<Zxid> = self.history.iter().map(|c| c.zxid).collect();
                println!("history {hs:?}");
            }
            return Err(format!(
                "committed txn #{} ({:?}) is durable on fewer than a quorum (held prefixes {held:?})",
                held[q - 1],
                self.history[held[q - 1]].zxid
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
    let mut s = String::new();
    let _ = write!(
        s,
        "ZAB_SEED={seed} ZAB_TRACE=1 cargo test --lib zab::sim::tests::replay -- --nocapture"
    );
    s
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
        let per = env_u64("ZAB_SEEDS").unwrap_or(3000) / 4;
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

    /// Harsher faults than CI's mix (heavy loss, reordering, crashes), on demand:
    /// `ZAB_SEEDS=1000 cargo test --release --lib zab::sim::tests::harsh -- --ignored`
    #[test]
    #[ignore]
    fn harsh() {
        let seeds = env_u64("ZAB_SEEDS").unwrap_or(500);
        let base = env_u64("ZAB_SEED_BASE").unwrap_or(0);
        for seed in base..base + seeds {
            let mut cfg = SimConfig::from_seed(seed);
            cfg.drop_per_mille = cfg.drop_per_mille * 3 + 20;
            cfg.reorder_per_mille = cfg.reorder_per_mille * 4 + 10;
            cfg.dup_per_mille *= 3;
            cfg.crash_per_mille = cfg.crash_per_mille * 2 + 5;
            cfg.partition_per_mille = cfg.partition_per_mille * 2 + 20;
            cfg.slow_sync_per_mille = 500;
            cfg.recovery_ticks_max = 150;
            if let Err(e) = Sim::new(cfg).run() {
                panic!("harsh seed {seed} failed: {e}");
            }
        }
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

    /// The core alone: three voters on a lossless, instant in-memory network with
    /// an instant disk, a leader keeping 64 proposals of 100 bytes in flight.
    /// `cargo test --release --lib zab::sim::tests::core_throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn core_throughput() {
        let voters = vec![1, 2, 3];
        let mut rs: Vec<Replica> = voters
            .iter()
            .map(|id| {
                Replica::new(
                    Config::new(*id, voters.clone(), vec![]),
                    DurableState::default(),
                    0,
                )
                .unwrap()
            })
            .collect();
        let mut q: VecDeque<(ServerId, crate::zab::Outgoing)> = VecDeque::new();
        let mut steps = 0u64;
        let mut applied_at_leader = 0u64;
        fn pump(r: &mut Replica, q: &mut VecDeque<(ServerId, crate::zab::Outgoing)>) -> u64 {
            let mut applied = 0;
            while let Some(mut rd) = r.ready() {
                for o in rd.take_send_now() {
                    q.push_back((r.id(), o));
                }
                let rel = r.advance(rd.persisted());
                for o in rel.send {
                    q.push_back((r.id(), o));
                }
                applied += rel.apply.len() as u64;
            }
            applied
        }
        let mut now = 0;
        let leader = loop {
            now += 1;
            for r in rs.iter_mut() {
                r.step(now, Input::Tick);
                pump(r, &mut q);
            }
            while let Some((from, o)) = q.pop_front() {
                let r = &mut rs[o.to as usize - 1];
                r.step(now, Input::Message { from, msg: o.msg });
                pump(r, &mut q);
            }
            if let Some(l) = rs.iter().position(|r| r.established_epoch().is_some()) {
                break l;
            }
            assert!(now < 100, "no leader");
        };
        let txns = 200_000u64;
        let payload = Bytes::from(vec![7u8; 100]);
        let start = std::time::Instant::now();
        let mut proposed = 0;
        while applied_at_leader < txns {
            while proposed < txns && proposed - applied_at_leader < 64 {
                rs[leader].propose(payload.clone()).unwrap();
                proposed += 1;
                steps += 1;
            }
            applied_at_leader += pump(&mut rs[leader], &mut q);
            while let Some((from, o)) = q.pop_front() {
                let to = o.to as usize - 1;
                rs[to].step(now, Input::Message { from, msg: o.msg });
                steps += 1;
                let a = pump(&mut rs[to], &mut q);
                if to == leader {
                    applied_at_leader += a;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "core alone: {txns} txns committed in {secs:.2}s: {:.0} txns/s, {steps} steps ({:.0} steps/s)",
            txns as f64 / secs,
            steps as f64 / secs
        );
    }

    /// Steps per second of the core + simulator (for PERF.md):
    /// `cargo test --release --lib zab::sim::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let seeds = env_u64("ZAB_SEEDS").unwrap_or(500);
        let start = std::time::Instant::now();
        let mut steps = 0;
        let mut commits = 0;
        let mut total = Stats::default();
        for seed in 0..seeds {
            let s = run_seed(seed, None, false).expect("seed");
            steps += s.steps;
            commits += s.commits;
            total.crashes += s.crashes;
            total.leaders += s.leaders;
            total.diff_syncs += s.diff_syncs;
            total.trunc_syncs += s.trunc_syncs;
            total.snap_syncs += s.snap_syncs;
            total.rollovers += s.rollovers;
            total.recovery_ticks = total.recovery_ticks.max(s.recovery_ticks);
        }
        println!("totals (recovery_ticks = worst): {total:?}");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{seeds} seeds in {secs:.2}s: {steps} steps ({:.0} steps/s), {commits} commits ({:.0}/s)",
            steps as f64 / secs,
            commits as f64 / secs
        );
    }
}
