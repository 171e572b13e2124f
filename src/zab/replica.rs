//! One ensemble member's replication state machine, as ZooKeeper 3.8 runs it: fast
//! leader election, then leader (with one handler per learner connection) or learner
//! (follower / observer). This file holds what every role shares: the durable view
//! (epochs, log end, the in-memory log window), the output buffer, the step
//! dispatcher and the role transitions. The roles are in `election.rs`,
//! `leader.rs` and `learner.rs`.
//!
//! Owned by the sequencer core in the server (one thread in the simulator). Inputs
//! arrive through [`Replica::step`] and the driver-facing calls (`propose`,
//! `forward`, `revalidate`, `touch`, `revalidated`); outputs leave through
//! [`Replica::ready`] / [`Replica::advance`] (see `ready.rs` for the ordering rule).
//! No clock, no IO, no ambient randomness: time is the `now` argument (monotonic
//! milliseconds).
//!
//! The log window: `log` holds every logged txn after the commit point (needed to
//! commit them) plus up to `committed_log_count_max` committed ones before it (the
//! reference's committedLog, used to sync learners by DIFF). Anything older is only
//! on disk; a learner that needs it gets a SNAP.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::election::Election;
use super::leader::Leader;
use super::learner::Learner;
use super::membership::Membership;
use super::ready::{Persisted, Ready};
use super::types::{
    Config, ConnId, DurableState, Entry, Event, Input, Output, Packet, PeerState, Role, ServerId,
    Target, Write, ZabError, Zxid,
};

/// Connection numbers the core picks for its own dials (learner side) have this bit
/// set; the driver numbers accepted connections below it.
pub const CORE_CONN_BIT: ConnId = 1 << 63;

/// Learner links a looking member holds at most (accepted on its quorum port before
/// it knows it leads); later ones are closed at once.
pub const EARLY_LINKS_MAX: usize = 32;

/// Packets an early link may send before its member leads (a learner sends one,
/// FOLLOWERINFO or OBSERVERINFO, then waits for LEADERINFO); one more closes it.
pub const EARLY_PACKETS_MAX: usize = 2;

/// Deliberately broken variants, so the simulator can prove it catches them.
#[cfg(any(test, feature = "sim"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// The leader commits as soon as any one voter (itself included) has a txn.
    CommitOnMinority,
    /// A follower acknowledges a proposal before it is durable.
    AckBeforeDurable,
    /// The leader commits proposals made while a reconfig is pending (the reconfig
    /// included) with a quorum of the committed config only.
    OldQuorumOnly,
}

#[derive(Debug)]
pub(super) enum RoleState {
    Looking,
    Leading(Box<Leader>),
    Learning(Box<Learner>),
}

/// A learner link accepted while looking; see [`Replica::early`].
#[derive(Debug)]
pub(super) struct EarlyLink {
    since: u64,
    packets: Vec<Packet>,
}

/// Outputs being collected for the next [`Ready`].
#[derive(Debug, Default)]
pub(super) struct OutBuf {
    pub now: Vec<Output>,
    pub writes: Vec<Write>,
    pub gated: Vec<Output>,
    /// Targets with a gated output in this batch: later outputs to them wait too.
    pub blocked: BTreeSet<Target>,
}

impl OutBuf {
    fn is_empty(&self) -> bool {
        self.now.is_empty() && self.writes.is_empty() && self.gated.is_empty()
    }
}

/// The replication state machine of one server. See the module docs.
#[derive(Debug)]
pub struct Replica {
    pub(super) cfg: Config,
    pub(super) now: u64,

    /// The committed configuration (the reference's `quorumVerifier`) and the last
    /// proposed one (`lastSeenQuorumVerifier`; the same `Arc` when none is pending).
    pub(super) conf: Arc<Membership>,
    pub(super) last_seen: Arc<Membership>,

    // The durable state as this replica sees it (may be ahead of the disk).
    pub(super) accepted_epoch: u32,
    pub(super) current_epoch: u32,
    /// The log's end (appended, maybe not yet synced).
    pub(super) last_logged: Zxid,
    /// The log window: see the module docs. Zxids strictly increase.
    pub(super) log: VecDeque<Entry>,
    /// Bytes of `log` entries after `committed`.
    pub(super) pending_bytes: usize,
    /// What the last persisted batch made durable.
    pub(super) durable_end: Zxid,
    pub(super) durable_current_epoch: u32,
    /// Everything up to here is committed (for a learner: known committed).
    pub(super) committed: Zxid,
    /// The driver's state holds every txn up to here (emitted as `Apply`, or loaded
    /// at start-up).
    pub(super) applied: Zxid,

    /// Report zxid 0 in the next ACKEPOCH, so the leader sends a whole snapshot
    /// (set when our state cannot be rolled back to a TRUNC point).
    pub(super) want_snap: bool,
    pub(super) election: Election,
    pub(super) role: RoleState,
    /// Learner links accepted while looking: when each came, and what it sent.
    /// The reference's quorum port is not bound until it leads, so a learner that
    /// decided a few ms before its leader-to-be is refused and dials again. Ours
    /// is always open, and a reference learner never dials again after a link
    /// closed before LEADERINFO (it goes back to its election at once, and two of
    /// them may then elect each other). So while a quorum agrees that we lead and
    /// we only wait out finalizeWait, a learner's link is held here and handed to
    /// the leader we become; otherwise (a better vote, a new round, not about to
    /// lead at all) it is closed, as the reference's port refuses it.
    pub(super) early: BTreeMap<ConnId, EarlyLink>,
    pub(super) next_conn: ConnId,

    pub(super) out: OutBuf,
    batch_next: u64,
    outstanding: Option<u64>,
    /// Targets the outstanding batch holds gated outputs for: nothing later to
    /// them may leave before that batch is durable (see `take_released`).
    outstanding_blocked: BTreeSet<Target>,

    #[cfg(any(test, feature = "sim"))]
    pub(super) bug: Option<PlantedBug>,
}

impl Replica {
    /// Starts (or restarts) a replica from exactly what its disk holds; the driver's
    /// state already holds every logged txn. It begins by looking for a leader.
    pub fn new(cfg: Config, durable: DurableState, now: u64) -> Result<Replica, ZabError> {
        Self::check_config(&cfg)?;
        let last = durable.last_zxid;
        if durable.tail.last().is_some_and(|e| e.zxid != last)
            || durable.tail.windows(2).any(|w| w[0].zxid >= w[1].zxid)
        {
            return Err(ZabError::InvalidConfig(
                "the log tail must increase and end at last_zxid",
            ));
        }
        // The tail is not known committed until a leader says so (or we lead): it
        // stays whole in the window until then.
        let base = durable
            .tail
            .first()
            .map_or(last, |e| Zxid(e.zxid.0.saturating_sub(1)));
        let pending_bytes = durable.tail.iter().map(|e| e.payload.len()).sum();
        let log: VecDeque<Entry> = durable.tail.into();
        let mut election = Election::new(&cfg);
        // `QuorumPeer.startLeaderElection`: the current vote starts as our own.
        election.current_vote = super::types::Vote {
            leader: cfg.id as i64,
            zxid: last.as_i64(),
            peer_epoch: durable.current_epoch as i64,
        };
        let conf = Arc::new(cfg.membership.clone());
        let last_seen = match &cfg.last_seen {
            Some(m) if cfg.reconfig_enabled && m.version() > conf.version() => Arc::new(m.clone()),
            _ => conf.clone(),
        };
        let mut r = Replica {
            now,
            conf,
            last_seen,
            accepted_epoch: durable.accepted_epoch,
            current_epoch: durable.current_epoch,
            last_logged: last,
            log,
            pending_bytes,
            durable_end: last,
            durable_current_epoch: durable.current_epoch,
            committed: base,
            applied: last,
            want_snap: false,
            election,
            role: RoleState::Looking,
            early: BTreeMap::new(),
            next_conn: CORE_CONN_BIT,
            out: OutBuf::default(),
            batch_next: 0,
            outstanding: None,
            outstanding_blocked: BTreeSet::new(),
            cfg,
            #[cfg(any(test, feature = "sim"))]
            bug: None,
        };
        r.start_looking();
        Ok(r)
    }

    fn check_config(cfg: &Config) -> Result<(), ZabError> {
        let m = &cfg.membership;
        if m.voters().next().is_none() {
            return Err(ZabError::InvalidConfig("no voters"));
        }
        // With reconfig a server may have been removed (or not added yet): it then
        // runs as a non-voting participant.
        if !cfg.reconfig_enabled && !m.is_member(cfg.id) {
            return Err(ZabError::InvalidConfig(
                "id must be a voter or an observer of the configuration",
            ));
        }
        if cfg.in_flight_proposals_max == 0
            || cfg.zxid_counter_max == 0
            || cfg.tick_ms == 0
            || cfg.committed_log_count_max == 0
        {
            return Err(ZabError::InvalidConfig(
                "tick, in-flight, window and counter bounds must be > 0",
            ));
        }
        Ok(())
    }

    /// Makes this replica deliberately wrong (simulator self-test only).
    #[cfg(any(test, feature = "sim"))]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.bug = Some(bug);
    }

    // ----- accessors -------------------------------------------------------------

    pub fn id(&self) -> ServerId {
        self.cfg.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::Looking => Role::Looking,
            RoleState::Leading(l) => l.role(),
            RoleState::Learning(l) => l.role(),
        }
    }

    /// The election state this server reports (LOOKING … OBSERVING).
    pub fn peer_state(&self) -> PeerState {
        match &self.role {
            RoleState::Looking => PeerState::Looking,
            RoleState::Leading(_) => PeerState::Leading,
            RoleState::Learning(l) if l.observer => PeerState::Observing,
            RoleState::Learning(_) => PeerState::Following,
        }
    }

    /// The reference's learner type: an observer of the committed config observes;
    /// anyone else (a voter, or a server the config does not name) participates.
    pub fn is_observer(&self) -> bool {
        self.conf.is_observer(self.cfg.id)
    }

    /// The committed configuration.
    pub fn committed_config(&self) -> &Arc<Membership> {
        &self.conf
    }

    /// The last proposed configuration (the committed one when none is pending).
    pub fn last_seen_config(&self) -> &Arc<Membership> {
        &self.last_seen
    }

    /// The epoch this replica leads, if it is an established leader.
    pub fn established_epoch(&self) -> Option<u32> {
        match &self.role {
            RoleState::Leading(l) if l.established => Some(l.epoch),
            _ => None,
        }
    }

    pub fn last_logged(&self) -> Zxid {
        self.last_logged
    }

    pub fn committed(&self) -> Zxid {
        self.committed
    }

    /// The last zxid the driver's state holds.
    pub fn applied(&self) -> Zxid {
        self.applied
    }

    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }

    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }

    pub fn election_epoch(&self) -> i64 {
        self.election.logical_clock
    }

    /// A leader's learners (mntr).
    pub fn leader_stats(&self) -> Option<super::leader::LeaderStats> {
        match &self.role {
            RoleState::Leading(l) => Some(l.stats(&self.conf)),
            _ => None,
        }
    }

    /// On a leader: the links of its observers, with their ids once known (the
    /// reference's `observingLearners`, for the `observers` admin command).
    pub fn observer_links(&self) -> Vec<(ConnId, Option<ServerId>)> {
        match &self.role {
            RoleState::Leading(l) => l.observer_links(),
            _ => Vec::new(),
        }
    }

    /// The in-memory log window (oldest first).
    pub fn log_window(&self) -> impl Iterator<Item = &Entry> {
        self.log.iter()
    }

    // ----- output machinery ------------------------------------------------------

    /// Queues an output in order behind everything before it on its target.
    pub(super) fn emit(&mut self, o: Output) {
        let t = o.target();
        if t != Target::Free && self.out.blocked.contains(&t) {
            self.out.gated.push(o);
        } else {
            self.out.now.push(o);
        }
    }

    /// Queues an output that may happen only once this batch's writes are durable;
    /// everything after it on its target waits too.
    pub(super) fn emit_after_persist(&mut self, o: Output) {
        self.out.blocked.insert(o.target());
        self.out.gated.push(o);
    }

    pub(super) fn send(&mut self, conn: ConnId, packet: super::types::Packet) {
        self.emit(Output::Send { conn, packet });
    }

    pub(super) fn event(&mut self, e: Event) {
        self.emit(Output::Event(e));
    }

    pub(super) fn write(&mut self, w: Write) {
        self.out.writes.push(w);
    }

    /// The next batch of output, or `None` while the previous one is outstanding or
    /// when there is nothing to do.
    pub fn ready(&mut self) -> Option<Ready> {
        if self.outstanding.is_some() || self.out.is_empty() {
            return None;
        }
        let batch = self.batch_next;
        self.batch_next += 1;
        self.outstanding = Some(batch);
        // The next batch starts at this one's sizes: under load a batch holds
        // hundreds of outputs, and growing from empty each time reallocates.
        let sized = OutBuf {
            now: Vec::with_capacity(self.out.now.len()),
            writes: Vec::with_capacity(self.out.writes.len()),
            gated: Vec::with_capacity(self.out.gated.len()),
            blocked: BTreeSet::new(),
        };
        let out = std::mem::replace(&mut self.out, sized);
        self.outstanding_blocked = out.blocked;
        Some(Ready {
            replica: self.cfg.id,
            batch,
            now: out.now,
            writes: out.writes,
            gated: out.gated,
            log_end: self.last_logged,
            current_epoch: self.current_epoch,
        })
    }

    /// Records that a batch's writes are durable and returns what waited for them.
    /// May queue more output (a leader's own ack can commit): call `ready` again.
    pub fn advance(&mut self, persisted: Persisted) -> Vec<Output> {
        let r = persisted.ready;
        assert_eq!(r.replica, self.cfg.id, "batch of another replica");
        assert_eq!(
            Some(r.batch),
            self.outstanding,
            "batch persisted out of order"
        );
        self.outstanding = None;
        self.durable_end = r.log_end;
        self.durable_current_epoch = r.current_epoch;
        if let RoleState::Leading(_) = self.role {
            self.leader_on_durable();
        }
        r.gated
    }

    /// While a batch is out for persisting: the outputs queued since that need
    /// nothing it holds, so a driver that syncs off its thread keeps the protocol
    /// moving (PROPOSALs, COMMITs, applies) meanwhile. An output leaves only if its
    /// target has no gated output in the outstanding batch, so nothing overtakes
    /// anything before it on its target: the batch order of `ready` is kept per
    /// target. Outputs gated on the next batch's own writes stay for its `Ready`.
    /// Empty when no batch is out (use `ready`).
    pub fn take_released(&mut self) -> Vec<Output> {
        if self.outstanding.is_none() || self.out.now.is_empty() {
            return Vec::new();
        }
        let held = &self.outstanding_blocked;
        if held.is_empty() {
            return std::mem::take(&mut self.out.now);
        }
        let (go, stay): (Vec<Output>, Vec<Output>) = std::mem::take(&mut self.out.now)
            .into_iter()
            .partition(|o| {
                let t = o.target();
                t == Target::Free || !held.contains(&t)
            });
        self.out.now = stay;
        go
    }

    /// True while a batch is out for persisting.
    pub fn persisting(&self) -> bool {
        self.outstanding.is_some()
    }

    // ----- the step function -----------------------------------------------------

    /// Feeds one input at time `now` (monotonic ms; never decreasing).
    pub fn step(&mut self, now: u64, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => self.on_tick(),
            Input::Notification { from, n } => self.on_notification(from, n),
            Input::Connected { conn } => match self.role {
                RoleState::Learning(_) => self.learner_connected(conn),
                // A dial that finished after this member stopped following (a slow
                // connect or TLS handshake): the link is not wanted.
                _ => self.emit(Output::Close { conn }),
            },
            Input::Accepted { conn } => match self.role {
                RoleState::Leading(_) => self.leader_accepted(conn),
                RoleState::Looking => self.hold_early(conn),
                // Only a leader serves the quorum port.
                RoleState::Learning(_) => self.emit(Output::Close { conn }),
            },
            Input::Packet { conn, packet } => match self.role {
                RoleState::Leading(_) => self.leader_on_packet(conn, packet),
                RoleState::Learning(_) => self.learner_on_packet(conn, packet),
                RoleState::Looking => self.early_packet(conn, packet),
            },
            Input::Closed { conn } => match self.role {
                RoleState::Leading(_) => self.leader_on_closed(conn),
                RoleState::Learning(_) => self.learner_on_closed(conn),
                RoleState::Looking => {
                    self.early.remove(&conn);
                }
            },
        }
        if matches!(self.role, RoleState::Looking) && !self.election.about_to_lead(self.cfg.id) {
            // A better vote came, or a new round: the held learners go back to
            // their elections, as if refused.
            self.close_early();
        }
    }

    fn on_tick(&mut self) {
        match self.role {
            RoleState::Looking => {
                self.close_stale_early();
                self.election_tick();
            }
            RoleState::Leading(_) => self.leader_tick(),
            RoleState::Learning(_) => self.learner_tick(),
        }
    }

    /// The earliest time something is due (the driver may tick then, or earlier).
    pub fn next_deadline(&self) -> u64 {
        match &self.role {
            RoleState::Looking => {
                let stale = (self.early.values())
                    .map(|e| e.since + self.early_hold_ms())
                    .min();
                let due = self.election.next_deadline();
                stale.map_or(due, |s| s.min(due))
            }
            RoleState::Leading(l) => l.next_deadline(),
            RoleState::Learning(l) => l.next_deadline(&self.cfg),
        }
    }

    // ----- role transitions ------------------------------------------------------

    /// Leaves the current role (closing its connections) and runs an election.
    pub(super) fn start_looking(&mut self) {
        let old = std::mem::replace(&mut self.role, RoleState::Looking);
        let conns: Vec<ConnId> = match &old {
            RoleState::Looking => Vec::new(),
            RoleState::Leading(l) => l.conns(),
            RoleState::Learning(l) => l.conn.into_iter().collect(),
        };
        for conn in conns {
            self.emit(Output::Close { conn });
        }
        if !matches!(old, RoleState::Looking) || self.batch_next == 0 {
            self.event(Event::RoleChanged(Role::Looking));
        }
        self.look_for_leader();
    }

    /// The election decided: lead, follow or observe `leader`.
    pub(super) fn election_decided(&mut self, leader: ServerId) {
        if leader == self.cfg.id {
            self.start_leading();
            // The learners that dialled us first (the driver numbers accepted links
            // in the order they came).
            for (conn, link) in std::mem::take(&mut self.early) {
                if !matches!(self.role, RoleState::Leading(_)) {
                    self.emit(Output::Close { conn });
                    continue;
                }
                self.leader_accepted(conn);
                for packet in link.packets {
                    self.leader_on_packet(conn, packet);
                }
            }
        } else {
            self.close_early();
            self.start_learning(leader);
        }
    }

    // ----- learner links that come before the election ends -------------------

    /// A learner dialled our quorum port while we look: held if we are about to
    /// lead (see `early`), refused otherwise.
    fn hold_early(&mut self, conn: ConnId) {
        if !self.election.about_to_lead(self.cfg.id) {
            self.emit(Output::Close { conn });
            return;
        }
        if self.early.len() >= EARLY_LINKS_MAX {
            tracing::warn!(
                id = self.cfg.id,
                "quorum port: {EARLY_LINKS_MAX} learner links wait for this election already; closing another"
            );
            self.emit(Output::Close { conn });
            return;
        }
        tracing::info!(
            id = self.cfg.id,
            conn,
            "quorum port: a learner dialled before this election ended; holding its link"
        );
        let since = self.now;
        let packets = Vec::new();
        self.early.insert(conn, EarlyLink { since, packets });
    }

    /// A packet on a link while we look: kept for the leader we may become.
    fn early_packet(&mut self, conn: ConnId, packet: Packet) {
        let Some(link) = self.early.get_mut(&conn) else {
            self.emit(Output::Close { conn });
            return;
        };
        if link.packets.len() >= EARLY_PACKETS_MAX {
            self.early.remove(&conn);
            tracing::warn!(
                id = self.cfg.id,
                "quorum port: a learner sent more than {EARLY_PACKETS_MAX} packets before this member leads; closing it"
            );
            self.emit(Output::Close { conn });
            return;
        }
        link.packets.push(packet);
    }

    /// How long an early link is held at most: initLimit, the learner's own
    /// wait for LEADERINFO. Only a finalizeWait restarted over and over (each
    /// vote that is not better restarts it) holds a link that long.
    fn early_hold_ms(&self) -> u64 {
        self.cfg.init_limit_ms()
    }

    /// Closes every early link (we will not lead this round).
    fn close_early(&mut self) {
        for conn in std::mem::take(&mut self.early).into_keys() {
            self.emit(Output::Close { conn });
        }
    }

    /// Closes the early links held for [`early_hold_ms`](Self::early_hold_ms).
    fn close_stale_early(&mut self) {
        let limit = self.early_hold_ms();
        let now = self.now;
        let stale: Vec<ConnId> = (self.early.iter())
            .filter(|(_, e)| now >= e.since + limit)
            .map(|(c, _)| *c)
            .collect();
        for conn in stale {
            self.early.remove(&conn);
            self.emit(Output::Close { conn });
        }
    }

    /// Gives the driver's state every logged txn up to `upto` it does not hold yet.
    /// They are in the window (everything after the commit point is).
    pub(super) fn apply_logged_upto(&mut self, upto: Zxid) {
        // The window is in zxid order: find the range, not a scan per commit.
        let from = self.applied;
        let start = self.log.partition_point(|e| e.zxid <= from);
        let end = self.log.partition_point(|e| e.zxid <= upto);
        for i in start..end {
            let e = self.log[i].clone();
            self.applied = e.zxid;
            self.event(Event::Apply(e));
        }
        let upto = upto.min(self.last_logged);
        self.mark_committed(upto);
    }

    /// Appends a txn to the log and the window.
    pub(super) fn log_append(&mut self, e: Entry) {
        debug_assert!(e.zxid > self.last_logged, "log order");
        self.last_logged = e.zxid;
        if e.zxid > self.committed {
            self.pending_bytes += e.payload.len();
        }
        self.log.push_back(e.clone());
        self.write(Write::Append(e));
    }

    /// Marks everything up to `zxid` committed (the window keeps it for DIFFs).
    pub(super) fn mark_committed(&mut self, zxid: Zxid) {
        if zxid <= self.committed {
            return;
        }
        let from = self.committed;
        let start = self.log.partition_point(|e| e.zxid <= from);
        let end = self.log.partition_point(|e| e.zxid <= zxid);
        let freed: usize = self.log.range(start..end).map(|e| e.payload.len()).sum();
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        self.committed = zxid;
        self.trim_window();
    }

    /// Drops committed entries beyond the window's bound.
    fn trim_window(&mut self) {
        let committed = self.committed;
        let n = self.log.partition_point(|e| e.zxid <= committed);
        let excess = n.saturating_sub(self.cfg.committed_log_count_max);
        self.log.drain(..excess);
    }

    /// Forgets the log after `zxid` (TRUNC, or a SNAP that replaces it).
    pub(super) fn forget_after(&mut self, zxid: Zxid) {
        while self.log.back().is_some_and(|e| e.zxid > zxid) {
            self.log.pop_back();
        }
        self.last_logged = zxid;
        if self.committed > zxid {
            self.committed = zxid;
        }
        let committed = self.committed;
        self.pending_bytes = self
            .log
            .iter()
            .filter(|e| e.zxid > committed)
            .map(|e| e.payload.len())
            .sum();
    }

    pub(super) fn new_conn(&mut self) -> ConnId {
        let c = self.next_conn;
        self.next_conn += 1;
        c
    }
}
