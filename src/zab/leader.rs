//! The leader: `Leader.lead()` and one `LearnerHandler` per learner connection, as
//! ZooKeeper 3.8 runs them (PEER-PROTOCOL §5–§8), as events instead of threads.
//!
//! Part of the replica (sequencer core). The reference's blocking waits become
//! stages a handler sits in until a quorum condition holds:
//!
//! ```text
//!  lead():   own accepted epoch → epoch quorum → write acceptedEpoch
//!            → epoch-ack quorum → write currentEpoch → NEWLEADER-ack quorum
//!            → established: serve, UPTODATE to every learner that acked
//!  handler:  FOLLOWERINFO/OBSERVERINFO → (epoch decided) LEADERINFO
//!            → ACKEPOCH → (epoch-ack quorum) sync: DIFF | TRUNC | SNAP + queued
//!              PROPOSAL/COMMIT pairs + outstanding proposals, NEWLEADER
//!            → ACK (must be the first packet after NEWLEADER)
//!            → (NEWLEADER quorum) UPTODATE → ACK / PING / REQUEST / REVALIDATE …
//!  broadcast: propose → PROPOSAL to forwarding followers + own log; a quorum of
//!            ACKs (the own one once synced) in zxid order → COMMIT to followers,
//!            INFORM to observers, Apply, SYNC answers waiting for that zxid
//!  liveness: PING every tick/2; every tick the synced voters must be a quorum;
//!            a learner silent for syncLimit (initLimit while syncing), or with a
//!            proposal un-ACKed for syncLimit, is dropped
//!  reconfig: a reconfig proposal becomes the last-seen config; it and every
//!            proposal after it need a quorum of the old and the new config; its
//!            commit activates it (COMMITANDACTIVATE to followers,
//!            INFORMANDACTIVATE to observers, with the designated leader) and a
//!            leader that is not the designated one steps down. A new leader whose
//!            configs are both version 0 proposes its NEWLEADER zxid as the version
//!            and activates it (or a pending config) once established.
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::membership::Membership;
use super::replica::{Replica, RoleState};
use super::sync_gate::{quorum_round, GatedSync, PingRounds, SyncGate, SyncWaiter};
use super::types::{
    ConnId, Entry, Event, LearnerInfo, Output, Packet, Role, ServerId, Write, ZabError, Zxid,
    EPOCH_MAX, PROTOCOL_VERSION,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connected; waiting for FOLLOWERINFO / OBSERVERINFO.
    AwaitInfo,
    /// In `getEpochToPropose`.
    AwaitEpoch,
    /// LEADERINFO sent; waiting for ACKEPOCH.
    AwaitAckEpoch,
    /// In `waitForEpochAck`.
    AwaitEpochQuorum { last_zxid: Zxid },
    /// Synced and NEWLEADER sent; the next packet must be its ACK.
    AwaitNewLeaderAck,
    /// In `waitForNewLeaderAck` / `waitForStartup`.
    AwaitEstablished,
    /// UPTODATE sent: broadcast.
    Running,
}

#[derive(Debug)]
struct Handler {
    sid: Option<ServerId>,
    observer: bool,
    stage: Stage,
    last_heard: u64,
    /// `tickOfNextAckDeadline`: synced while the leader's tick is not past it.
    ack_deadline_tick: u64,
    /// In forwardingFollowers / observingLearners (gets new proposals or informs).
    forwarding: bool,
    /// NEWLEADER queued: pings may go out.
    sending: bool,
    /// Proposals sent and not yet ACKed, with when (`SyncLimitCheck`).
    unacked: VecDeque<(Zxid, u64)>,
    /// Pings sent since UPTODATE and its answers (the sync gate's evidence).
    pings: PingRounds,
}

/// A proposal not yet committed: its ACKs and the configs whose quorums it needs
/// (the committed one when proposed, and the pending one if a reconfig was).
#[derive(Debug)]
struct Outstanding {
    acks: BTreeSet<ServerId>,
    old: Arc<Membership>,
    new: Option<Arc<Membership>>,
}

impl Outstanding {
    fn configs(&self) -> impl Iterator<Item = &Arc<Membership>> {
        std::iter::once(&self.old).chain(self.new.iter())
    }

    /// `Proposal.hasAllQuorums`.
    fn has_all_quorums(&self) -> bool {
        self.configs().all(|c| c.contains_quorum(&self.acks))
    }
}

/// A leader's learners, for mntr (`zk_learners`, `zk_synced_followers`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaderStats {
    pub learners: usize,
    pub synced_followers: usize,
    pub synced_observers: usize,
    pub pending_syncs: usize,
}

#[derive(Debug)]
pub(super) struct Leader {
    /// The epoch being established (valid once `!waiting_for_epoch`).
    pub epoch: u32,
    waiting_for_epoch: bool,
    connecting: BTreeSet<ServerId>,
    election_finished: bool,
    electing: BTreeSet<ServerId>,
    /// `leaderStateSummary`: (current epoch, last zxid) when leading began.
    summary: (u32, Zxid),
    newleader_acks: BTreeSet<ServerId>,
    pub established: bool,
    /// When the current wait started (each wait is bounded by initLimit).
    wait_started: u64,
    handlers: BTreeMap<ConnId, Handler>,
    /// Proposals not yet committed.
    outstanding: BTreeMap<Zxid, Outstanding>,
    /// The highest zxid our own log has durably (our own ACK).
    self_acked: Zxid,
    last_proposed: Zxid,
    /// Learner syncs waiting for this zxid to commit.
    pending_syncs: BTreeMap<Zxid, Vec<ConnId>>,
    /// Syncs waiting for a quorum's ping round ([`super::sync_gate`]).
    gate: SyncGate,
    tick: u64,
    next_half_tick: u64,
    tick_skip: bool,
}

impl Leader {
    pub fn role(&self) -> Role {
        Role::Leading {
            epoch: (!self.waiting_for_epoch).then_some(self.epoch),
            established: self.established,
        }
    }

    pub fn conns(&self) -> Vec<ConnId> {
        self.handlers.keys().copied().collect()
    }

    pub fn next_deadline(&self) -> u64 {
        self.next_half_tick
    }

    /// The links whose learner said it is an observer (OBSERVERINFO).
    pub fn observer_links(&self) -> Vec<(ConnId, Option<ServerId>)> {
        (self.handlers.iter())
            .filter(|(_, h)| h.observer)
            .map(|(c, h)| (*c, h.sid))
            .collect()
    }

    /// What mntr shows on a leader.
    pub fn stats(&self, conf: &Membership) -> LeaderStats {
        let synced = |observer: bool| {
            self.handlers
                .values()
                .filter(|h| {
                    h.stage == Stage::Running
                        && h.observer == observer
                        && h.sid.is_some_and(|s| conf.is_voter(s) != observer)
                        && self.tick <= h.ack_deadline_tick
                })
                .count()
        };
        LeaderStats {
            learners: self.handlers.len(),
            synced_followers: synced(false),
            synced_observers: synced(true),
            pending_syncs: self.pending_syncs.values().map(Vec::len).sum::<usize>()
                + self.gate.waiting(),
        }
    }

    fn handler(&mut self, conn: ConnId) -> &mut Handler {
        self.handlers.get_mut(&conn).expect("handler exists")
    }
}

impl Replica {
    fn leader(&mut self) -> &mut Leader {
        match &mut self.role {
            RoleState::Leading(l) => l,
            _ => unreachable!("not leading"),
        }
    }

    fn leader_ref(&self) -> &Leader {
        match &self.role {
            RoleState::Leading(l) => l,
            _ => unreachable!("not leading"),
        }
    }

    /// Still leading (a reconfig may have made us step down mid-way).
    fn leading(&self) -> bool {
        matches!(self.role, RoleState::Leading(_))
    }

    /// `Leader.lead()`'s start: our whole log is the history to establish; propose
    /// an epoch above our accepted one.
    pub(super) fn start_leading(&mut self) {
        // The reference's tree already holds every logged txn (it loads or
        // fast-forwards the log before leading); so does ours from here.
        let last = self.last_logged;
        self.apply_logged_upto(last);
        let mut l = Leader {
            // Peers' epochs are at most EPOCH_MAX (refused above it); only a
            // damaged epoch file could be at the top of the range.
            epoch: self.accepted_epoch.saturating_add(1),
            waiting_for_epoch: true,
            connecting: BTreeSet::new(),
            election_finished: false,
            electing: BTreeSet::new(),
            summary: (self.current_epoch, last),
            newleader_acks: BTreeSet::new(),
            established: false,
            wait_started: self.now,
            handlers: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            self_acked: last,
            last_proposed: last,
            pending_syncs: BTreeMap::new(),
            gate: SyncGate::default(),
            tick: 0,
            next_half_tick: self.now + self.cfg.tick_ms / 2,
            tick_skip: true,
        };
        l.connecting.insert(self.cfg.id);
        self.role = RoleState::Leading(Box::new(l));
        tracing::info!(
            id = self.cfg.id,
            "LEADING: proposing epoch above {}",
            self.accepted_epoch
        );
        self.event(Event::RoleChanged(self.role()));
        self.epoch_quorum_check();
    }

    // ----- the three waits ---------------------------------------------------------

    /// `getEpochToPropose` for a learner (the leader itself was added at start).
    fn get_epoch_to_propose(&mut self, conn: ConnId, sid: ServerId, accepted: u32) {
        let is_voter = self.conf.is_voter(sid);
        let l = self.leader();
        if !l.waiting_for_epoch {
            self.send_leader_info(conn);
            return;
        }
        if accepted >= l.epoch {
            debug_assert!(accepted <= EPOCH_MAX, "refused in on_learner_info");
            l.epoch = accepted.saturating_add(1);
        }
        if is_voter {
            l.connecting.insert(sid);
        }
        l.handler(conn).stage = Stage::AwaitEpoch;
        self.epoch_quorum_check();
    }

    fn epoch_quorum_check(&mut self) {
        let l = self.leader_ref();
        if !l.waiting_for_epoch || !self.conf.contains_quorum(&l.connecting) {
            return;
        }
        let epoch = l.epoch;
        let me = self.cfg.id;
        let now = self.now;
        let l = self.leader();
        l.waiting_for_epoch = false;
        l.last_proposed = Zxid::new(epoch, 0);
        l.wait_started = now;
        tracing::info!(id = me, epoch, "a quorum agreed on the new epoch");
        self.accepted_epoch = epoch;
        self.write(Write::AcceptedEpoch(epoch));
        self.propose_first_config_version(epoch);
        let waiting: Vec<ConnId> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(_, h)| h.stage == Stage::AwaitEpoch)
            .map(|(c, _)| *c)
            .collect();
        for conn in waiting {
            self.send_leader_info(conn);
        }
        // The leader's own epoch ack: its summary is never ahead of itself.
        self.leader().electing.insert(me);
        self.epoch_ack_quorum_check();
    }

    /// ZOOKEEPER-1783: while both configs are the initial one (version 0), the
    /// NEWLEADER zxid becomes the version, agreed on through NEWLEADER and
    /// activated at establishment / UPTODATE (the capture saw 100000000).
    fn propose_first_config_version(&mut self, epoch: u32) {
        if !self.cfg.reconfig_enabled || self.conf.version() != 0 || self.last_seen.version() != 0 {
            return;
        }
        let m = Arc::new(self.conf.with_version(Zxid::new(epoch, 0).as_i64()));
        self.set_last_seen(m);
    }

    /// LEADERINFO goes out only once our acceptedEpoch is durable.
    fn send_leader_info(&mut self, conn: ConnId) {
        let epoch = self.leader_ref().epoch;
        self.leader().handler(conn).stage = Stage::AwaitAckEpoch;
        self.emit_after_persist(Output::Send {
            conn,
            packet: Packet::LeaderInfo {
                new_epoch: epoch,
                protocol_version: PROTOCOL_VERSION,
            },
        });
    }

    /// `waitForEpochAck` for a learner.
    fn on_ack_epoch(&mut self, conn: ConnId, sid: ServerId, last_zxid: Zxid, current: Option<u32>) {
        let is_voter = self.conf.is_voter(sid);
        let l = self.leader();
        l.handler(conn).stage = Stage::AwaitEpochQuorum { last_zxid };
        if l.election_finished {
            self.sync_learner(conn);
            return;
        }
        if let Some(ep) = current {
            let (lep, lzxid) = l.summary;
            if ep > lep || (ep == lep && last_zxid > lzxid) {
                tracing::warn!(
                    id = self.cfg.id,
                    sid,
                    "follower is ahead of the leader (epoch {ep}, zxid {last_zxid}; leader epoch \
                     {lep}, zxid {lzxid}): dropping it"
                );
                self.drop_handler(conn);
                return;
            }
            if is_voter {
                l.electing.insert(sid);
            }
        }
        self.epoch_ack_quorum_check();
    }

    fn epoch_ack_quorum_check(&mut self) {
        let l = self.leader_ref();
        if l.election_finished || l.waiting_for_epoch || !self.conf.contains_quorum(&l.electing) {
            return;
        }
        let epoch = l.epoch;
        let now = self.now;
        let l = self.leader();
        l.election_finished = true;
        l.wait_started = now;
        self.current_epoch = epoch;
        self.write(Write::CurrentEpoch(epoch));
        let waiting: Vec<ConnId> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(_, h)| matches!(h.stage, Stage::AwaitEpochQuorum { .. }))
            .map(|(c, _)| *c)
            .collect();
        for conn in waiting {
            self.sync_learner(conn);
        }
    }

    /// Our own NEWLEADER ack: the currentEpoch write (and the log before it) is
    /// durable.
    pub(super) fn leader_on_durable(&mut self) {
        let durable_end = self.durable_end;
        let me = self.cfg.id;
        let durable_epoch = self.durable_current_epoch;
        let l = self.leader();
        if l.election_finished && !l.established && durable_epoch == l.epoch {
            l.newleader_acks.insert(me);
        }
        // Our own ACK of every proposal now durable.
        if durable_end > l.self_acked {
            let from = l.self_acked;
            for (_, o) in l.outstanding.range_mut((
                std::ops::Bound::Excluded(from),
                std::ops::Bound::Included(durable_end),
            )) {
                o.acks.insert(me);
            }
            l.self_acked = durable_end;
        }
        self.newleader_quorum_check();
        if self.leading() {
            self.try_commit();
        }
    }

    /// `waitForNewLeaderAck`: once a quorum (of both configs while one is pending)
    /// acked NEWLEADER we are established; with reconfig, the config NEWLEADER
    /// carried is activated first (`startZkServer`), and a leader that is not its
    /// designated leader steps down.
    fn newleader_quorum_check(&mut self) {
        let l = self.leader_ref();
        if l.established || !self.quorum_in_all(&l.newleader_acks) {
            return;
        }
        let epoch = l.epoch;
        self.leader().established = true;
        tracing::info!(id = self.cfg.id, epoch, "established as leader");
        self.update_election_vote(epoch);
        let designated = self.cfg.reconfig_enabled.then(|| {
            let target = self.last_seen.clone();
            let acks = self.leader_ref().newleader_acks.clone();
            let designated = self.designated_leader(&target, &acks, None);
            self.activate(target);
            designated
        });
        // Established (the history is committed) even if we leave at once.
        self.event(Event::RoleChanged(self.role()));
        if let Some(d) = designated.filter(|d| *d != self.cfg.id) {
            tracing::warn!(
                id = self.cfg.id,
                designated = d,
                "not the designated leader of the activated config: stepping down"
            );
            self.start_looking();
            return;
        }
        let waiting: Vec<ConnId> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(_, h)| h.stage == Stage::AwaitEstablished)
            .map(|(c, _)| *c)
            .collect();
        for conn in waiting {
            self.send_uptodate(conn);
        }
    }

    fn send_uptodate(&mut self, conn: ConnId) {
        self.leader().handler(conn).stage = Stage::Running;
        self.send(conn, Packet::UpToDate);
    }

    // ----- synchronising a learner (LearnerHandler.syncFollower) ----------------------

    /// The zxid the leader's state is at (`getDataTreeLastProcessedZxid`): once
    /// established, at least the new epoch's start.
    fn last_processed(&self) -> Zxid {
        let l = self.leader_ref();
        if l.established {
            self.applied.max(Zxid::new(l.epoch, 0))
        } else {
            self.applied
        }
    }

    fn sync_learner(&mut self, conn: ConnId) {
        let Stage::AwaitEpochQuorum { last_zxid: peer } = self.leader().handler(conn).stage else {
            return;
        };
        let observer = self.leader().handler(conn).observer;
        let (queued, snap) = self.plan_sync(conn, peer);
        let last_queued = if snap {
            let z = self.last_processed();
            self.send(conn, Packet::Snap { zxid: z });
            self.emit(Output::SendSnapshot { conn, zxid: z });
            z
        } else {
            queued
        };
        self.start_forwarding(conn, last_queued, observer);
        let l = self.leader();
        let epoch = l.epoch;
        let h = l.handler(conn);
        h.stage = Stage::AwaitNewLeaderAck;
        h.sending = true;
        let config = self.last_seen.text().clone();
        let newleader = Output::Send {
            conn,
            packet: Packet::NewLeader {
                zxid: Zxid::new(epoch, 0),
                config,
            },
        };
        if self.durable_current_epoch == epoch {
            self.emit(newleader);
        } else {
            // Our currentEpoch write is in this batch: NEWLEADER waits for it.
            self.emit_after_persist(newleader);
        }
    }

    /// Chooses DIFF / TRUNC / SNAP and queues the committed txns the peer lacks
    /// (PEER-PROTOCOL §5.4). Returns (last zxid queued, whether to SNAP instead).
    fn plan_sync(&mut self, conn: ConnId, peer: Zxid) -> (Zxid, bool) {
        let last_processed = self.last_processed();
        let max_c = self.committed;
        let min_c = self
            .log
            .front()
            .filter(|e| e.zxid <= max_c)
            .map_or(last_processed, |e| e.zxid);
        let (max_c, min_c) = if self.log.iter().all(|e| e.zxid > max_c) {
            (last_processed, last_processed)
        } else {
            (max_c, min_c)
        };
        if last_processed == peer {
            self.send(conn, Packet::Diff { zxid: peer });
            return (peer, false);
        }
        if peer > max_c && !peer.is_epoch_start() {
            self.send(conn, Packet::Trunc { zxid: max_c });
            return (max_c, false);
        }
        if min_c <= peer && peer <= max_c {
            return match self.queue_committed(conn, peer, max_c) {
                Some(q) => (q, false),
                None => (peer, true),
            };
        }
        (peer, true)
    }

    /// `queueCommittedProposals` over the window; `None` means fall back to SNAP.
    fn queue_committed(&mut self, conn: ConnId, peer: Zxid, max_c: Zxid) -> Option<Zxid> {
        let new_epoch_peer = peer.is_epoch_start();
        let mut queued = peer;
        let mut prev: Option<Zxid> = None;
        let mut need_op = true;
        let entries: Vec<Entry> = self
            .log
            .iter()
            .filter(|e| e.zxid <= max_c)
            .cloned()
            .collect();
        for e in entries {
            if e.zxid < peer {
                prev = Some(e.zxid);
                continue;
            }
            if need_op {
                if e.zxid == peer {
                    self.send(conn, Packet::Diff { zxid: max_c });
                    need_op = false;
                    continue;
                }
                if new_epoch_peer {
                    self.send(conn, Packet::Diff { zxid: max_c });
                    need_op = false;
                } else if e.zxid > peer {
                    if e.zxid.epoch() != peer.epoch() {
                        // A TRUNC across an epoch boundary would crash the learner.
                        return None;
                    }
                    self.send(
                        conn,
                        Packet::Trunc {
                            zxid: prev.unwrap_or(Zxid::ZERO),
                        },
                    );
                    need_op = false;
                }
            }
            if e.zxid <= queued {
                continue;
            }
            queued = e.zxid;
            let zxid = e.zxid;
            self.send(conn, Packet::Proposal(e));
            self.send(conn, Packet::Commit { zxid });
        }
        if need_op && new_epoch_peer {
            self.send(conn, Packet::Diff { zxid: max_c });
            need_op = false;
        }
        (!need_op).then_some(queued)
    }

    /// `startForwarding`: outstanding proposals after what was queued (participants
    /// only), and the handler joins the broadcast.
    fn start_forwarding(&mut self, conn: ConnId, last_queued: Zxid, observer: bool) {
        if !observer {
            let from = last_queued;
            let pending: Vec<Entry> = self
                .log
                .iter()
                .filter(|e| e.zxid > from && self.leader_ref().outstanding.contains_key(&e.zxid))
                .cloned()
                .collect();
            for e in pending {
                self.send_proposal(conn, e);
            }
        }
        self.leader().handler(conn).forwarding = true;
    }

    fn send_proposal(&mut self, conn: ConnId, e: Entry) {
        let now = self.now;
        let zxid = e.zxid;
        self.leader().handler(conn).unacked.push_back((zxid, now));
        self.send(conn, Packet::Proposal(e));
    }

    // ----- connections and packets -------------------------------------------------

    pub(super) fn leader_accepted(&mut self, conn: ConnId) {
        let now = self.now;
        let tick = self.leader_ref().tick;
        let deadline = tick + self.cfg.init_limit_ticks + self.cfg.sync_limit_ticks;
        self.leader().handlers.insert(
            conn,
            Handler {
                sid: None,
                observer: false,
                stage: Stage::AwaitInfo,
                last_heard: now,
                ack_deadline_tick: deadline,
                forwarding: false,
                sending: false,
                unacked: VecDeque::new(),
                pings: PingRounds::default(),
            },
        );
    }

    pub(super) fn leader_on_closed(&mut self, conn: ConnId) {
        if let Some(sid) = self.remove_handler(conn) {
            tracing::info!(id = self.cfg.id, ?sid, "learner connection closed");
        }
    }

    fn drop_handler(&mut self, conn: ConnId) {
        if self.remove_handler(conn).is_some() {
            self.emit(Output::Close { conn });
        }
    }

    /// Forgets a learner connection. Its ACKs of still-outstanding proposals stop
    /// counting: a learner that comes back may be told to TRUNC before the leader
    /// resends them, so an old ACK says nothing about what its disk will hold (the
    /// reference keeps such ACKs; dropping them is strictly safer and invisible on
    /// the wire). They stay only while another follower connection of the same
    /// server is there (its sync resends them); an observer connection (a reconfig
    /// made it one) gets no outstanding proposal and may truncate them.
    fn remove_handler(&mut self, conn: ConnId) -> Option<Option<ServerId>> {
        let l = self.leader();
        let h = l.handlers.remove(&conn)?;
        if let Some(sid) = h.sid {
            let still_connected = l
                .handlers
                .values()
                .any(|o| o.sid == Some(sid) && !o.observer);
            if !still_connected {
                for o in l.outstanding.values_mut() {
                    o.acks.remove(&sid);
                }
            }
        }
        Some(h.sid)
    }

    pub(super) fn leader_on_packet(&mut self, conn: ConnId, packet: Packet) {
        let now = self.now;
        let tick = self.leader_ref().tick;
        let sync_limit = self.cfg.sync_limit_ticks;
        let Some(h) = self.leader().handlers.get_mut(&conn) else {
            return;
        };
        h.last_heard = now;
        if h.stage == Stage::Running {
            h.ack_deadline_tick = tick + sync_limit;
        }
        let stage = h.stage;
        let sid = h.sid;
        match (stage, packet) {
            (Stage::AwaitInfo, Packet::LearnerInfo { info, observer }) => {
                self.on_learner_info(conn, info, observer)
            }
            (
                Stage::AwaitAckEpoch,
                Packet::AckEpoch {
                    last_zxid,
                    current_epoch,
                },
            ) => self.on_ack_epoch(conn, sid.expect("sid known"), last_zxid, current_epoch),
            (Stage::AwaitNewLeaderAck, Packet::Ack { zxid }) => {
                self.on_newleader_ack(conn, sid.expect("sid known"), zxid)
            }
            (Stage::AwaitNewLeaderAck, p) => {
                tracing::warn!(
                    id = self.cfg.id,
                    ?sid,
                    "expected the NEWLEADER ACK, got {}: dropping the learner",
                    p.name()
                );
                self.drop_handler(conn);
            }
            (Stage::AwaitEstablished | Stage::Running, p) => {
                self.on_running_packet(conn, sid.expect("sid known"), p)
            }
            (_, p) => {
                tracing::warn!(
                    id = self.cfg.id,
                    ?sid,
                    "unexpected {} from a learner in stage {stage:?}: dropping it",
                    p.name()
                );
                self.drop_handler(conn);
            }
        }
    }

    fn on_learner_info(&mut self, conn: ConnId, info: LearnerInfo, observer: bool) {
        let sid = info.sid;
        // With reconfig any server may join, without a vote until a reconfig makes
        // it a voter; without, only the configured ones.
        let known = self.cfg.reconfig_enabled || self.conf.is_member(sid);
        let why = if !known {
            Some(format!("server id {sid} is not in the configuration"))
        } else if sid == self.cfg.id {
            Some(format!("server id {sid} is our own"))
        } else if info.accepted_epoch > EPOCH_MAX {
            Some(format!(
                "server {sid} claims accepted epoch {:#x}, beyond the last epoch {EPOCH_MAX:#x}",
                info.accepted_epoch
            ))
        } else if info.config_version > self.conf.version() {
            Some(format!(
                "follower is ahead of the leader (config version {:#x} > {:#x})",
                info.config_version,
                self.conf.version()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            tracing::warn!(id = self.cfg.id, "refusing a learner: {why}");
            self.drop_handler(conn);
            return;
        }
        // A newer connection from the same server replaces an older one.
        let stale: Vec<ConnId> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(c, h)| **c != conn && h.sid == Some(sid))
            .map(|(c, _)| *c)
            .collect();
        for c in stale {
            self.drop_handler(c);
        }
        let h = self.leader().handler(conn);
        h.sid = Some(sid);
        h.observer = observer;
        tracing::info!(id = self.cfg.id, sid, observer, "learner joined");
        self.get_epoch_to_propose(conn, sid, info.accepted_epoch);
    }

    fn on_newleader_ack(&mut self, conn: ConnId, sid: ServerId, zxid: Zxid) {
        let sync_limit = self.cfg.sync_limit_ticks;
        let l = self.leader();
        let epoch = l.epoch;
        let tick = l.tick;
        let h = l.handler(conn);
        h.stage = Stage::AwaitEstablished;
        h.ack_deadline_tick = tick + sync_limit;
        let observer = h.observer;
        if zxid != Zxid::new(epoch, 0) {
            tracing::warn!(
                id = self.cfg.id,
                sid,
                "NEWLEADER ACK from sid {sid} is from a different epoch ({zxid})"
            );
        } else if !l.established && !observer {
            // Counted in each config it votes in. Unlike the reference, not from an
            // observer connection (an observer of the committed config may vote in
            // a pending one): an observer logs the history only at UPTODATE, so its
            // NEWLEADER ACK says nothing about its disk.
            l.newleader_acks.insert(sid);
            // Reaching the quorum sends UPTODATE to every handler waiting, this one too.
            self.newleader_quorum_check();
            if !self.leading() {
                return;
            }
        }
        let l = self.leader_ref();
        if l.established
            && l.handlers
                .get(&conn)
                .is_some_and(|h| h.stage == Stage::AwaitEstablished)
        {
            self.send_uptodate(conn);
        }
    }

    fn on_running_packet(&mut self, conn: ConnId, sid: ServerId, p: Packet) {
        match p {
            Packet::Ack { zxid } => {
                let h = self.leader().handler(conn);
                while h.unacked.front().is_some_and(|(z, _)| *z <= zxid) {
                    h.unacked.pop_front();
                }
                if !h.observer {
                    self.process_ack(sid, zxid);
                }
            }
            Packet::LearnerPing { touches, .. } => {
                if !touches.is_empty() {
                    self.event(Event::Touches { from: sid, touches });
                }
                self.leader().handler(conn).pings.answered();
                self.confirm_sync_rounds();
            }
            Packet::RevalidateRequest {
                session_id,
                timeout_ms,
            } => self.event(Event::Revalidate {
                conn,
                from: sid,
                session_id,
                timeout_ms,
            }),
            Packet::Request(req) => self.event(Event::Request {
                conn,
                from: sid,
                req,
            }),
            p => tracing::warn!(
                id = self.cfg.id,
                sid,
                "unexpected quorum packet {}",
                p.name()
            ),
        }
    }

    // ----- broadcast -------------------------------------------------------------------

    /// The zxid the next proposal must carry (the driver builds its txn with it).
    /// When the zxid counter is exhausted the leader steps down (a new election
    /// brings a new epoch, as the reference's rollover) and says so.
    pub fn next_zxid(&mut self) -> Result<Zxid, ZabError> {
        let RoleState::Leading(l) = &self.role else {
            return Err(ZabError::NotLeader);
        };
        if !l.established {
            return Err(ZabError::NotLeader);
        }
        let (last, epoch) = (l.last_proposed, l.epoch);
        if last.counter() >= self.cfg.zxid_counter_max {
            tracing::warn!(
                id = self.cfg.id,
                epoch,
                "zxid counter exhausted: re-electing"
            );
            self.start_looking();
            return Err(ZabError::ZxidExhausted { epoch });
        }
        Ok(Zxid(last.0 + 1))
    }

    /// Proposes a txn whose payload encodes `entry.zxid`, from [`Self::next_zxid`].
    /// A reconfig txn (`entry.reconfig`) must propose the config of version
    /// `entry.zxid`, with reconfig enabled and no other reconfig pending; from here
    /// on every proposal needs a quorum of both configs until it commits.
    pub fn propose(&mut self, entry: Entry) -> Result<(), ZabError> {
        let want = self.next_zxid()?;
        if entry.zxid != want {
            return Err(ZabError::WrongZxid {
                got: entry.zxid,
                want,
            });
        }
        if let Some(m) = &entry.reconfig {
            self.check_reconfig_proposal(entry.zxid, m)?;
        }
        if entry.payload.len() > self.cfg.payload_bytes_max {
            return Err(ZabError::PayloadTooLarge {
                len: entry.payload.len(),
                max: self.cfg.payload_bytes_max,
            });
        }
        let max = self.cfg.in_flight_proposals_max;
        if self.leader_ref().outstanding.len() >= max {
            return Err(ZabError::InFlightFull { max });
        }
        let zxid = entry.zxid;
        let reconfig = entry.reconfig.clone();
        let followers: Vec<ConnId> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(_, h)| h.forwarding && !h.observer)
            .map(|(c, _)| *c)
            .collect();
        for conn in followers {
            self.send_proposal(conn, entry.clone());
        }
        self.log_append(entry);
        // After the append: a last-seen config is always in our history.
        if let Some(m) = reconfig {
            self.set_last_seen(m);
        }
        let new = self.pending_config().cloned();
        #[cfg(any(test, feature = "sim"))]
        let new = new.filter(|_| self.bug != Some(super::PlantedBug::OldQuorumOnly));
        let o = Outstanding {
            acks: BTreeSet::new(),
            old: self.conf.clone(),
            new,
        };
        let l = self.leader();
        l.last_proposed = zxid;
        l.outstanding.insert(zxid, o);
        Ok(())
    }

    fn check_reconfig_proposal(&self, zxid: Zxid, m: &Membership) -> Result<(), ZabError> {
        if !self.cfg.reconfig_enabled {
            return Err(ZabError::ReconfigDisabled);
        }
        if let Some(version) = self.reconfig_in_progress() {
            return Err(ZabError::ReconfigInProgress { version });
        }
        if m.version() != zxid.as_i64() {
            return Err(ZabError::ReconfigVersion {
                zxid,
                version: m.version(),
            });
        }
        Ok(())
    }

    /// The version of the proposed config while a reconfig is in progress (the
    /// last-seen config differs from the committed one).
    pub fn reconfig_in_progress(&self) -> Option<i64> {
        let v = self.last_seen.version();
        (v != self.conf.version()).then_some(v)
    }

    /// Leader: `isQuorumSynced`: we (if a voter of `m`) and the synced followers
    /// that vote in `m` are a quorum of `m` (observers do not count, even ones `m`
    /// would make voters).
    pub fn is_quorum_synced(&self, m: &Membership) -> bool {
        let RoleState::Leading(l) = &self.role else {
            return false;
        };
        let me = self.cfg.id;
        let mut ids: Vec<ServerId> = Vec::new();
        if m.is_voter(me) {
            ids.push(me);
        }
        for h in l.handlers.values() {
            if h.forwarding && !h.observer && l.tick <= h.ack_deadline_tick {
                ids.extend(h.sid.filter(|s| m.is_voter(*s)));
            }
        }
        m.contains_quorum(&ids)
    }

    /// `getDesignatedLeader`: we stay leader if we vote in `new` at the same
    /// quorum address; otherwise the voter of `new` that acked the reconfig (or
    /// NEWLEADER) and then the most of the proposals after `after`.
    fn designated_leader(
        &self,
        new: &Membership,
        acks: &BTreeSet<ServerId>,
        after: Option<Zxid>,
    ) -> ServerId {
        let me = self.cfg.id;
        if new.is_voter(me) && new.quorum_addr(me) == self.conf.quorum_addr(me) {
            return me;
        }
        let mut candidates: Vec<ServerId> = acks
            .iter()
            .copied()
            .filter(|s| *s != me && new.is_voter(*s))
            .collect();
        let Some(&first) = candidates.first() else {
            // Cannot happen with a quorum of `new` acking; any voter of it will do.
            return new.voters().find(|v| *v != me).unwrap_or(me);
        };
        let mut best = first;
        let Some(mut next) = after.map(|z| Zxid(z.0 + 1)) else {
            return best;
        };
        let l = self.leader_ref();
        while let Some(o) = l.outstanding.get(&next) {
            for c in o.configs() {
                candidates.retain(|s| c.is_voter(*s) && o.acks.contains(s));
                match candidates.as_slice() {
                    [] => return best,
                    [only] => return *only,
                    [head, ..] => best = *head,
                }
            }
            next = Zxid(next.0 + 1);
        }
        best
    }

    /// `processAck`: count a learner's ACK and commit what has a quorum.
    fn process_ack(&mut self, sid: ServerId, zxid: Zxid) {
        if zxid.is_epoch_start() || zxid <= self.committed {
            return;
        }
        let l = self.leader();
        match l.outstanding.get_mut(&zxid) {
            Some(o) => {
                o.acks.insert(sid);
            }
            None => return,
        }
        self.try_commit();
    }

    /// Commits outstanding proposals in zxid order while each has its quorums.
    fn try_commit(&mut self) {
        loop {
            let l = self.leader_ref();
            let Some((&zxid, o)) = l.outstanding.iter().next() else {
                return;
            };
            let quorum = o.has_all_quorums();
            #[cfg(any(test, feature = "sim"))]
            let quorum = quorum
                || (self.bug == Some(super::PlantedBug::CommitOnMinority) && !o.acks.is_empty());
            if !quorum {
                return;
            }
            let o = self.leader().outstanding.remove(&zxid).expect("first");
            if !self.commit(zxid, &o.acks) {
                return;
            }
        }
    }

    /// Commits one proposal; false when that made us step down (a reconfig whose
    /// designated leader is another server).
    fn commit(&mut self, zxid: Zxid, acks: &BTreeSet<ServerId>) -> bool {
        let at = self
            .log
            .binary_search_by(|e| e.zxid.cmp(&zxid))
            .expect("an outstanding proposal is in the window");
        let entry = self.log[at].clone();
        let designated = entry.reconfig.clone().map(|new| {
            let d = self.designated_leader(&new, acks, Some(zxid));
            self.activate(new);
            d
        });
        self.mark_committed(zxid);
        // Its quorum followed us after every sync that came before it was proposed:
        // those are answered now, before this COMMIT (see `sync_gate`).
        for g in self.leader().gate.proven_by_commit(zxid) {
            self.pass_sync_gate(g);
        }
        let targets: Vec<(ConnId, bool)> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(_, h)| h.forwarding)
            .map(|(c, h)| (*c, h.observer))
            .collect();
        for (conn, observer) in targets {
            let packet = match (designated, observer) {
                (None, true) => Packet::Inform(entry.clone()),
                (None, false) => Packet::Commit { zxid },
                (Some(d), true) => Packet::InformAndActivate {
                    entry: entry.clone(),
                    designated_leader: d,
                },
                (Some(d), false) => Packet::CommitAndActivate {
                    zxid,
                    designated_leader: d,
                },
            };
            self.send(conn, packet);
        }
        self.applied = zxid;
        self.event(Event::Apply(entry));
        if let Some(conns) = self.leader().pending_syncs.remove(&zxid) {
            for conn in conns {
                self.send_sync(conn);
            }
        }
        match designated {
            Some(d) if d != self.cfg.id => {
                // The reference stops committing (allowedToCommit=false) until its
                // learners leave it for the designated leader; we leave at once.
                tracing::warn!(
                    id = self.cfg.id,
                    designated = d,
                    "reconfig {zxid} committed; server {d} is to lead: stepping down"
                );
                self.start_looking();
                false
            }
            _ => true,
        }
    }

    /// A learner's sync, handed back by the driver in the order of that learner's
    /// requests ([`Event::Request`] with op `OP_SYNC`). The reference's
    /// `LearnerSyncRequest` goes down the request pipeline behind the learner's
    /// earlier requests, so it waits for their proposals too; answering it when the
    /// packet arrives would answer it before a write the same learner forwarded just
    /// before it (a pipelined create + sync then got its replies out of order).
    pub fn forwarded_sync(&mut self, conn: ConnId) {
        if let RoleState::Leading(l) = &self.role {
            if l.handlers.contains_key(&conn) {
                self.process_sync(conn);
            }
        }
    }

    /// `processSync`, behind the sync gate: answered once a quorum answered a ping
    /// round sent after it arrived, and what was proposed before it committed. A
    /// learner whose sync would pass `syncs_waiting_count_max` is dropped.
    fn process_sync(&mut self, conn: ConnId) {
        if self.syncs_waiting() >= self.cfg.syncs_waiting_count_max {
            tracing::warn!(
                id = self.cfg.id,
                conn,
                max = self.cfg.syncs_waiting_count_max,
                "a learner's sync over the bound of syncs waiting: dropping that learner"
            );
            self.drop_handler(conn);
            return;
        }
        self.gate_sync(SyncWaiter::Learner(conn));
    }

    /// Syncs held: at the gate, and through it waiting for a commit.
    fn syncs_waiting(&self) -> usize {
        let l = self.leader_ref();
        l.gate.waiting() + l.pending_syncs.values().map(Vec::len).sum::<usize>()
    }

    /// A sync from one of the leader's own clients, tagged by the driver: answered
    /// by [`Event::LocalSyncReady`] once the gate lets it through (false when not an
    /// established leader: the driver answers it itself, with ConnectionLoss, which
    /// the shard turns into closing the client's connection).
    /// Also false when `syncs_waiting_count_max` syncs are already held.
    pub fn leader_sync(&mut self, tag: u64) -> bool {
        match &self.role {
            RoleState::Leading(l) if l.established => {
                if self.syncs_waiting() >= self.cfg.syncs_waiting_count_max {
                    return false;
                }
                self.gate_sync(SyncWaiter::Local(tag));
                true
            }
            _ => false,
        }
    }

    fn gate_sync(&mut self, who: SyncWaiter) {
        let l = self.leader();
        let at = l.last_proposed;
        if l.gate.arrive(at, who) {
            let round = self.ping_learners();
            self.leader().gate.round_started(round);
            // Alone a quorum (one voter): through at once.
            self.confirm_sync_rounds();
        }
    }

    /// A learner answered a ping (or a round was sent): let through the syncs whose
    /// round a quorum has answered, and send the next round if more wait.
    fn confirm_sync_rounds(&mut self) {
        let round = self.quorum_round();
        let (through, again) = self.leader().gate.confirmed(round);
        for g in through {
            self.pass_sync_gate(g);
        }
        if again && self.leading() {
            let round = self.ping_learners();
            self.leader().gate.round_started(round);
            self.confirm_sync_rounds();
        }
    }

    /// The newest ping round a quorum (of every config) answered; ours is the newest
    /// sent. Only running learners' answers count.
    fn quorum_round(&self) -> u64 {
        let l = self.leader_ref();
        let mut answers: Vec<(ServerId, u64)> = vec![(self.cfg.id, l.gate.round_sent())];
        answers.extend(
            l.handlers
                .values()
                .filter(|h| h.stage == Stage::Running)
                .filter_map(|h| Some((h.sid?, h.pings.newest_answered()))),
        );
        quorum_round(&answers, |ids| self.quorum_in_all(ids))
    }

    /// Through the gate: now the wait for the commit of what was proposed before it.
    fn pass_sync_gate(&mut self, g: GatedSync) {
        let committed = self
            .leader_ref()
            .outstanding
            .keys()
            .next()
            .is_none_or(|first| *first > g.at);
        match g.who {
            SyncWaiter::Local(tag) => self.event(Event::LocalSyncReady { tag, at: g.at }),
            SyncWaiter::Learner(conn) if committed => self.send_sync(conn),
            SyncWaiter::Learner(conn) => {
                let l = self.leader();
                l.pending_syncs.entry(g.at).or_default().push(conn);
            }
        }
    }

    fn send_sync(&mut self, conn: ConnId) {
        if self.leader_ref().handlers.contains_key(&conn) {
            self.send(conn, Packet::Sync);
        }
    }

    /// The driver's answer to [`Event::Revalidate`].
    pub fn revalidated(&mut self, conn: ConnId, session_id: i64, valid: bool) {
        if let RoleState::Leading(l) = &self.role {
            if l.handlers.contains_key(&conn) {
                self.send(conn, Packet::RevalidateReply { session_id, valid });
            }
        }
    }

    /// The zxid a sync from one of the leader's own clients waits for: everything
    /// proposed so far.
    pub fn last_proposed(&self) -> Option<Zxid> {
        match &self.role {
            RoleState::Leading(l) => Some(l.last_proposed),
            _ => None,
        }
    }

    // ----- liveness --------------------------------------------------------------------

    pub(super) fn leader_tick(&mut self) {
        if self.leader_wait_timed_out() {
            self.start_looking();
            return;
        }
        self.drop_silent_learners();
        while self.now >= self.leader_ref().next_half_tick {
            let half = self.cfg.tick_ms / 2;
            let l = self.leader();
            l.next_half_tick += half.max(1);
            l.tick_skip = !l.tick_skip;
            if !l.tick_skip {
                l.tick += 1;
                if l.established && !self.synced_quorum() {
                    tracing::warn!(
                        id = self.cfg.id,
                        "not enough followers synced: giving up leadership"
                    );
                    self.start_looking();
                    return;
                }
            }
            self.ping_learners();
        }
    }

    /// Each of lead()'s waits is bounded by initLimit.
    fn leader_wait_timed_out(&self) -> bool {
        let l = self.leader_ref();
        if l.established || self.now < l.wait_started + self.cfg.init_limit_ms() {
            return false;
        }
        let what = if l.waiting_for_epoch {
            "epoch"
        } else if !l.election_finished {
            "epoch ack"
        } else {
            "NEWLEADER ack"
        };
        tracing::warn!(
            id = self.cfg.id,
            "timeout waiting for a quorum's {what} within initLimit: re-electing"
        );
        true
    }

    /// The socket timeouts of the reference: initLimit until the NEWLEADER ACK,
    /// syncLimit after it; and `SyncLimitCheck` on proposals.
    fn drop_silent_learners(&mut self) {
        let (now, init, sync) = (self.now, self.cfg.init_limit_ms(), self.cfg.sync_limit_ms());
        let silent: Vec<(ConnId, Option<ServerId>)> = self
            .leader_ref()
            .handlers
            .iter()
            .filter(|(_, h)| {
                let limit = match h.stage {
                    Stage::AwaitEstablished | Stage::Running => sync,
                    _ => init,
                };
                let stale_ack = h.unacked.front().is_some_and(|(_, at)| now > at + sync);
                now > h.last_heard + limit || stale_ack
            })
            .map(|(c, h)| (*c, h.sid))
            .collect();
        for (conn, sid) in silent {
            tracing::warn!(
                id = self.cfg.id,
                ?sid,
                "learner silent or not acking: dropping it"
            );
            self.drop_handler(conn);
        }
    }

    /// Every tick: we and the synced learners are a quorum (of both configs while
    /// a reconfig is pending).
    fn synced_quorum(&self) -> bool {
        let l = self.leader_ref();
        let mut synced: Vec<ServerId> = vec![self.cfg.id];
        for h in l.handlers.values() {
            if !matches!(h.stage, Stage::AwaitInfo | Stage::AwaitEpoch)
                && l.tick <= h.ack_deadline_tick
            {
                if let Some(s) = h.sid {
                    synced.push(s);
                }
            }
        }
        self.quorum_in_all(&synced)
    }

    /// Pings every learner that may be sent to: one round of the sync gate, counted
    /// for the learners that run (they answer it). Returns the round.
    fn ping_learners(&mut self) -> u64 {
        let l = self.leader();
        let zxid = l.last_proposed;
        let round = l.gate.next_round();
        let mut conns: Vec<ConnId> = Vec::with_capacity(l.handlers.len());
        for (conn, h) in l.handlers.iter_mut().filter(|(_, h)| h.sending) {
            if h.stage == Stage::Running {
                h.pings.sent(round);
            }
            conns.push(*conn);
        }
        for conn in conns {
            self.send(conn, Packet::LeaderPing { zxid });
        }
        round
    }

    /// Running learners not heard from for more than a tickTime (the leader pings
    /// every half tickTime, and a running learner answers each ping): what they
    /// hold for the leader, their clients' touches among it, is still on its way.
    /// They stay learners until syncLimit drops them.
    pub fn silent_learners(&self) -> Vec<ServerId> {
        let quiet_since = self.now.saturating_sub(self.cfg.tick_ms);
        match &self.role {
            RoleState::Leading(l) => l
                .handlers
                .values()
                .filter(|h| h.stage == Stage::Running && h.last_heard < quiet_since)
                .filter_map(|h| h.sid)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The forwarded request of a learner, for tests and the driver's logs.
    pub fn forwarded_from(&self, conn: ConnId) -> Option<ServerId> {
        match &self.role {
            RoleState::Leading(l) => l.handlers.get(&conn).and_then(|h| h.sid),
            _ => None,
        }
    }
}
