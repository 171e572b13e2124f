//! One ensemble member's replication state machine: election, discovery,
//! synchronisation and broadcast, as leader, follower or observer.
//!
//! Owned by the sequencer core in the server (one thread in the simulator). Inputs
//! arrive through [`Replica::step`] (ticks, peer messages, lost connections) and
//! [`Replica::propose`]; outputs leave through [`Replica::ready`] /
//! [`Replica::advance`] (see `ready.rs` for the ordering rule). No clock, no IO, no
//! ambient randomness: time is the `now` argument in ticks, randomness comes from
//! the seeded generator held here.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::ready::{Persisted, Ready, Released};
use super::types::{
    Apply, Config, DurableState, Entry, Msg, Outgoing, PeerState, ServerId, Snapshot, SyncMode,
    Vote, Write, ZabError, Zxid,
};

/// An input to [`Replica::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One tick of time has passed (`now` is the new time).
    Tick,
    /// A message from a peer.
    Message { from: ServerId, msg: Msg },
    /// The transport lost its connection to `peer`.
    Disconnected { peer: ServerId },
}

/// The public view of what a replica is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Looking,
    Leading {
        /// The epoch this leader leads, once a quorum agreed on it.
        epoch: Option<u32>,
        /// A quorum has acknowledged NEWLEADER: the leader may propose.
        established: bool,
    },
    Following {
        leader: ServerId,
        /// UPTODATE received: synced and receiving the broadcast.
        serving: bool,
    },
    Observing {
        leader: ServerId,
        serving: bool,
    },
}

/// Deliberately broken variants, so the simulator can prove it catches them.
#[cfg(any(test, feature = "sim"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// The leader commits as soon as any one voter (itself included) has a txn.
    CommitOnMinority,
    /// A follower acknowledges a proposal before it is durable.
    AckBeforeDurable,
}

/// What a handler asks the dispatcher to do with the role afterwards.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Stay,
    /// Abandon the current leader / leadership and run an election.
    Elect,
    /// Learner only: reconnect to the same leader with a fresh attempt.
    Rejoin {
        want_snap: bool,
    },
    /// Election over: lead.
    Lead,
    /// Election over: follow (or observe) this leader.
    Learn(ServerId),
}

#[derive(Debug, Default)]
struct Looking {
    /// Votes of voters in our election round (ours included).
    recv: BTreeMap<ServerId, Vote>,
    /// Votes of voters that already follow or lead.
    out_of_election: BTreeMap<ServerId, (Vote, PeerState)>,
    next_resend: u64,
    finalize_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnerStage {
    /// FOLLOWERINFO received; waiting for the epoch to be decided.
    Info { accepted_epoch: u32 },
    /// LEADERINFO sent.
    EpochSent,
    /// ACKEPOCH received.
    EpochAcked {
        current_epoch: Option<u32>,
        last_zxid: Zxid,
    },
    /// Sync and NEWLEADER sent; proposals (or informs) flow to it.
    Forwarding,
}

#[derive(Debug)]
struct LearnerState {
    attempt: u64,
    observer: bool,
    want_snap: bool,
    stage: LearnerStage,
    /// Followers: the highest zxid acknowledged since NEWLEADER.
    acked: Option<Zxid>,
    /// The last zxid sent (proposed to a follower, informed to an observer).
    sent_upto: Zxid,
    last_heard: u64,
    uptodate_sent: bool,
}

#[derive(Debug)]
struct Leader {
    /// The new epoch, once decided (discovery done).
    epoch: Option<u32>,
    /// A quorum acknowledged the epoch: synchronisation has started.
    epoch_acked: bool,
    established: bool,
    /// The leader's last zxid when synchronisation started: its initial history.
    initial_last: Zxid,
    learners: BTreeMap<ServerId, LearnerState>,
    started: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowerStage {
    Connecting,
    AwaitSync,
    AwaitNewLeader,
    Synced,
    Serving,
}

#[derive(Debug)]
struct Follower {
    leader: ServerId,
    observer: bool,
    attempt: u64,
    want_snap: bool,
    stage: FollowerStage,
    /// Tick the current attempt started.
    since: u64,
    last_heard: u64,
    /// The epoch from LEADERINFO.
    epoch: u32,
    /// The batch that makes NEWLEADER durable; once advanced, acks are true.
    synced_batch: Option<u64>,
    durable_synced: bool,
    /// The sync received so far, applied at NEWLEADER.
    sync: Option<PendingSync>,
}

#[derive(Debug)]
struct PendingSync {
    mode: SyncMode,
    prev: Zxid,
    entries: Vec<Entry>,
}

/// True if `entries` have increasing zxids, all after `prev`.
fn increasing_after(prev: Zxid, entries: &[Entry]) -> bool {
    let mut last = prev;
    entries.iter().all(|e| {
        let ok = e.zxid > last;
        last = e.zxid;
        ok
    })
}

#[derive(Debug)]
enum RoleState {
    Looking(Looking),
    Leading(Leader),
    Following(Follower),
    /// Only while a handler has the role taken out.
    Moving,
}

/// The replication state machine of one server. See the module docs.
#[derive(Debug)]
pub struct Replica {
    cfg: Config,
    quorum: usize,
    is_observer: bool,
    rng: SmallRng,
    now: u64,

    // The durable state as this replica sees it (may be ahead of the disk).
    accepted_epoch: u32,
    current_epoch: u32,
    snapshot: Option<Snapshot>,
    log: Vec<Entry>,

    // What the last persisted batch made durable.
    durable_log_end: Zxid,
    durable_accepted_epoch: u32,
    durable_current_epoch: u32,

    committed: Zxid,
    applied: Zxid,

    election_clock: u64,
    vote: Vote,
    role: RoleState,

    // The batch being built.
    send_now: Vec<Outgoing>,
    writes: Vec<Write>,
    gated_send: Vec<Outgoing>,
    gated_apply: Vec<Apply>,
    pending_mark: bool,
    batch_next: u64,
    outstanding: Option<u64>,

    #[cfg(any(test, feature = "sim"))]
    bug: Option<PlantedBug>,
}

impl Replica {
    /// Starts (or restarts) a replica from exactly what its disk holds. It begins
    /// by looking for a leader; if the disk holds a snapshot, the first batch
    /// applies it.
    pub fn new(cfg: Config, durable: DurableState, now: u64) -> Result<Replica, ZabError> {
        let is_voter = cfg.voters.contains(&cfg.id);
        let is_observer = cfg.observers.contains(&cfg.id);
        if cfg.voters.is_empty() {
            return Err(ZabError::InvalidConfig("no voters"));
        }
        if is_voter == is_observer {
            return Err(ZabError::InvalidConfig(
                "id must be exactly one of voter, observer",
            ));
        }
        if cfg.voters.iter().any(|v| cfg.observers.contains(v)) {
            return Err(ZabError::InvalidConfig(
                "a server is both voter and observer",
            ));
        }
        if cfg.in_flight_proposals_max == 0 || cfg.zxid_counter_max == 0 {
            return Err(ZabError::InvalidConfig(
                "in-flight and counter bounds must be > 0",
            ));
        }
        let quorum = cfg.voters.len() / 2 + 1;
        let last = durable.last_zxid();
        let base = durable.base_zxid();
        let mut r = Replica {
            rng: SmallRng::seed_from_u64(cfg.seed),
            quorum,
            is_observer,
            now,
            accepted_epoch: durable.accepted_epoch,
            current_epoch: durable.current_epoch,
            durable_log_end: last,
            durable_accepted_epoch: durable.accepted_epoch,
            durable_current_epoch: durable.current_epoch,
            snapshot: durable.snapshot,
            log: durable.log,
            committed: base,
            applied: base,
            election_clock: 0,
            vote: Vote {
                leader: cfg.id,
                zxid: last,
                epoch: durable.current_epoch,
            },
            role: RoleState::Looking(Looking::default()),
            send_now: Vec::new(),
            writes: Vec::new(),
            gated_send: Vec::new(),
            gated_apply: Vec::new(),
            pending_mark: false,
            batch_next: 0,
            outstanding: None,
            cfg,
            #[cfg(any(test, feature = "sim"))]
            bug: None,
        };
        if let Some(s) = &r.snapshot {
            r.gated_apply.push(Apply::Snapshot(s.clone()));
        }
        r.go_looking();
        Ok(r)
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
            RoleState::Looking(_) | RoleState::Moving => Role::Looking,
            RoleState::Leading(l) => Role::Leading {
                epoch: l.epoch,
                established: l.established,
            },
            RoleState::Following(f) if f.observer => Role::Observing {
                leader: f.leader,
                serving: f.stage == FollowerStage::Serving,
            },
            RoleState::Following(f) => Role::Following {
                leader: f.leader,
                serving: f.stage == FollowerStage::Serving,
            },
        }
    }

    /// The epoch this replica leads, if it is an established leader.
    pub fn established_epoch(&self) -> Option<u32> {
        match &self.role {
            RoleState::Leading(l) if l.established => l.epoch,
            _ => None,
        }
    }

    pub fn last_zxid(&self) -> Zxid {
        self.log.last().map_or(self.base_zxid(), |e| e.zxid)
    }

    pub fn committed(&self) -> Zxid {
        self.committed
    }

    /// The last zxid handed out for applying.
    pub fn applied(&self) -> Zxid {
        self.applied
    }

    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }

    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }

    /// The txns after the snapshot, as this replica sees them.
    pub fn log(&self) -> &[Entry] {
        &self.log
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    pub fn election_epoch(&self) -> u64 {
        self.election_clock
    }

    pub fn vote(&self) -> Vote {
        self.vote
    }

    fn base_zxid(&self) -> Zxid {
        self.snapshot.as_ref().map_or(Zxid::ZERO, |s| s.zxid)
    }

    fn is_voter(&self, id: ServerId) -> bool {
        self.cfg.voters.contains(&id)
    }

    fn own_vote(&self) -> Vote {
        Vote {
            leader: self.cfg.id,
            zxid: self.last_zxid(),
            epoch: self.current_epoch,
        }
    }

    // ----- output machinery ------------------------------------------------------

    /// Queues a message. Once anything in this batch waits for the disk, every
    /// later message waits too, so messages to a peer never overtake each other.
    fn send(&mut self, to: ServerId, msg: Msg) {
        let out = Outgoing { to, msg };
        if self.gated_send.is_empty() {
            self.send_now.push(out);
        } else {
            self.gated_send.push(out);
        }
    }

    /// Queues a message that may leave only once this batch's writes are durable.
    fn send_after_persist(&mut self, to: ServerId, msg: Msg) {
        self.gated_send.push(Outgoing { to, msg });
    }

    fn write(&mut self, w: Write) {
        self.writes.push(w);
    }

    /// The next batch of output, or `None` while the previous one is outstanding or
    /// when there is nothing to do.
    pub fn ready(&mut self) -> Option<Ready> {
        if self.outstanding.is_some() {
            return None;
        }
        if self.send_now.is_empty()
            && self.writes.is_empty()
            && self.gated_send.is_empty()
            && self.gated_apply.is_empty()
            && !self.pending_mark
        {
            return None;
        }
        let batch = self.batch_next;
        self.batch_next += 1;
        self.outstanding = Some(batch);
        self.pending_mark = false;
        Some(Ready {
            replica: self.cfg.id,
            batch,
            send_now: std::mem::take(&mut self.send_now),
            writes: std::mem::take(&mut self.writes),
            gated_send: std::mem::take(&mut self.gated_send),
            gated_apply: std::mem::take(&mut self.gated_apply),
            log_end: self.last_zxid(),
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
        })
    }

    /// Records that a batch's writes are durable and releases what waited for them.
    /// May queue more output (a leader's own ack can commit): call `ready` again.
    pub fn advance(&mut self, persisted: Persisted) -> Released {
        let r = persisted.ready;
        assert_eq!(r.replica, self.cfg.id, "batch of another replica");
        assert_eq!(
            Some(r.batch),
            self.outstanding,
            "batch persisted out of order"
        );
        self.outstanding = None;
        self.durable_log_end = r.log_end;
        self.durable_accepted_epoch = r.accepted_epoch;
        self.durable_current_epoch = r.current_epoch;
        if let RoleState::Following(f) = &mut self.role {
            if f.synced_batch == Some(r.batch) {
                f.durable_synced = true;
            }
        }
        let released = Released {
            send: r.gated_send,
            apply: r.gated_apply,
        };
        self.with_role(|me, role| match role {
            RoleState::Leading(l) => me.leader_progress(l),
            _ => Flow::Stay,
        });
        released
    }

    // ----- the step function -----------------------------------------------------

    /// Feeds one input at time `now` (ticks; never decreasing).
    pub fn step(&mut self, now: u64, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => self.with_role(|me, role| match role {
                RoleState::Looking(lk) => me.looking_tick(lk),
                RoleState::Leading(l) => me.leader_tick(l),
                RoleState::Following(f) => me.follower_tick(f),
                RoleState::Moving => unreachable!(),
            }),
            Input::Message {
                from,
                msg:
                    Msg::Notification {
                        election_epoch,
                        vote,
                        state,
                    },
            } => self.on_notification(from, election_epoch, vote, state),
            Input::Message { from, msg } => self.with_role(|me, role| match role {
                RoleState::Looking(_) => Flow::Stay,
                RoleState::Leading(l) => me.leader_on_message(l, from, msg),
                RoleState::Following(f) => me.follower_on_message(f, from, msg),
                RoleState::Moving => unreachable!(),
            }),
            Input::Disconnected { peer } => self.with_role(|_, role| match role {
                RoleState::Leading(l) => {
                    l.learners.remove(&peer);
                    Flow::Stay
                }
                RoleState::Following(f) if f.leader == peer => Flow::Elect,
                _ => Flow::Stay,
            }),
        }
    }

    /// Runs `f` with the role taken out of `self`, then applies its flow.
    fn with_role(&mut self, f: impl FnOnce(&mut Replica, &mut RoleState) -> Flow) {
        let mut role = std::mem::replace(&mut self.role, RoleState::Moving);
        let flow = f(self, &mut role);
        self.role = role;
        match flow {
            Flow::Stay => {}
            Flow::Elect => self.go_looking(),
            Flow::Rejoin { want_snap } => self.rejoin(want_snap),
            Flow::Lead => self.become_leader(),
            Flow::Learn(leader) => self.become_learner(leader),
        }
    }

    /// Leader only: proposes a txn. Returns its zxid; the txn is committed when it
    /// comes out of `advance` as an `Apply::Entry`.
    pub fn propose(&mut self, payload: Bytes) -> Result<Zxid, ZabError> {
        if payload.len() > self.cfg.payload_bytes_max {
            return Err(ZabError::PayloadTooLarge {
                len: payload.len(),
                max: self.cfg.payload_bytes_max,
            });
        }
        let epoch = match &self.role {
            RoleState::Leading(l) if l.established => l.epoch.expect("established has an epoch"),
            _ => return Err(ZabError::NotLeader),
        };
        let last = self.last_zxid();
        let committed_in_epoch = if self.committed.epoch() == epoch {
            self.committed.counter()
        } else {
            0
        };
        let last_counter = if last.epoch() == epoch {
            last.counter()
        } else {
            0
        };
        if last_counter - committed_in_epoch >= self.cfg.in_flight_proposals_max {
            return Err(ZabError::InFlightFull {
                max: self.cfg.in_flight_proposals_max,
            });
        }
        if last_counter >= self.cfg.zxid_counter_max {
            // Never wrap: a new election brings a new epoch and a fresh counter.
            self.go_looking();
            return Err(ZabError::ZxidExhausted { epoch });
        }
        let zxid = Zxid::new(epoch, last_counter + 1);
        let entry = Entry { zxid, payload };
        self.log.push(entry.clone());
        self.write(Write::Append(entry.clone()));
        let mut to = Vec::new();
        if let RoleState::Leading(l) = &mut self.role {
            for (id, ls) in l.learners.iter_mut() {
                if !ls.observer && ls.stage == LearnerStage::Forwarding {
                    ls.sent_upto = zxid;
                    to.push(*id);
                }
            }
        }
        for id in to {
            self.send(
                id,
                Msg::Proposal {
                    epoch,
                    prev: last,
                    entry: entry.clone(),
                },
            );
        }
        Ok(zxid)
    }

    /// Compacts the log: `snapshot` is the applied state at its zxid (at most the
    /// applied zxid); txns it covers are dropped and it becomes the SNAP source.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), ZabError> {
        if snapshot.zxid > self.applied {
            return Err(ZabError::SnapshotAhead {
                snapshot: snapshot.zxid,
                applied: self.applied,
            });
        }
        if snapshot.zxid <= self.base_zxid() {
            return Ok(());
        }
        let drop = self.log.partition_point(|e| e.zxid <= snapshot.zxid);
        self.log.drain(..drop);
        self.snapshot = Some(snapshot.clone());
        self.write(Write::Compact(snapshot));
        Ok(())
    }

    /// Hands every committed txn we hold and have not applied to the state machine,
    /// after the batch that may still be making it durable here.
    fn apply_committed(&mut self) {
        let upto = self.committed.min(self.last_zxid());
        if upto <= self.applied {
            return;
        }
        let from = self.log.partition_point(|e| e.zxid <= self.applied);
        let to = self.log.partition_point(|e| e.zxid <= upto);
        for e in &self.log[from..to] {
            self.gated_apply.push(Apply::Entry(e.clone()));
        }
        self.applied = upto;
    }

    // ----- election --------------------------------------------------------------

    fn resend_interval(&mut self) -> u64 {
        let jitter = if self.cfg.election_jitter_ticks > 0 {
            self.rng.gen_range(0..=self.cfg.election_jitter_ticks)
        } else {
            0
        };
        self.cfg.election_resend_ticks.max(1) + jitter
    }

    fn go_looking(&mut self) {
        // Only what we applied is known committed; the rest is relearned from the
        // next leader after synchronisation.
        self.committed = self.applied;
        self.election_clock = self.election_clock.saturating_add(1);
        self.vote = self.own_vote();
        let mut lk = Looking {
            next_resend: self.now + self.resend_interval(),
            ..Looking::default()
        };
        if !self.is_observer {
            lk.recv.insert(self.cfg.id, self.vote);
        }
        self.role = RoleState::Looking(lk);
        self.broadcast_notification();
        self.with_role(|me, role| match role {
            RoleState::Looking(lk) => me.check_election(lk),
            _ => Flow::Stay,
        });
    }

    fn broadcast_notification(&mut self) {
        let msg = Msg::Notification {
            election_epoch: self.election_clock,
            vote: self.vote,
            state: PeerState::Looking,
        };
        for v in self.cfg.voters.clone() {
            if v != self.cfg.id {
                self.send(v, msg.clone());
            }
        }
    }

    fn my_state(&self) -> PeerState {
        match &self.role {
            RoleState::Looking(_) | RoleState::Moving => PeerState::Looking,
            RoleState::Leading(_) => PeerState::Leading,
            RoleState::Following(f) if f.observer => PeerState::Observing,
            RoleState::Following(_) => PeerState::Following,
        }
    }

    fn on_notification(&mut self, from: ServerId, ee: u64, vote: Vote, state: PeerState) {
        if !matches!(self.role, RoleState::Looking(_)) {
            // Tell a looking peer (voter or observer) who leads.
            if state == PeerState::Looking {
                let msg = Msg::Notification {
                    election_epoch: self.election_clock,
                    vote: self.vote,
                    state: self.my_state(),
                };
                self.send(from, msg);
            }
            return;
        }
        if !self.is_voter(from) {
            return;
        }
        self.with_role(|me, role| {
            let RoleState::Looking(lk) = role else {
                return Flow::Stay;
            };
            me.looking_on_notification(lk, from, ee, vote, state)
        });
    }

    fn looking_on_notification(
        &mut self,
        lk: &mut Looking,
        from: ServerId,
        ee: u64,
        vote: Vote,
        state: PeerState,
    ) -> Flow {
        match state {
            PeerState::Looking => {
                if self.is_observer {
                    return Flow::Stay;
                }
                if ee > self.election_clock {
                    self.election_clock = ee;
                    lk.recv.clear();
                    lk.finalize_at = None;
                    self.vote = vote.max(self.own_vote());
                    lk.recv.insert(self.cfg.id, self.vote);
                    self.broadcast_notification();
                } else if ee < self.election_clock {
                    // Help a peer in an older round catch up.
                    let msg = Msg::Notification {
                        election_epoch: self.election_clock,
                        vote: self.vote,
                        state: PeerState::Looking,
                    };
                    self.send(from, msg);
                    return Flow::Stay;
                } else if vote > self.vote {
                    self.vote = vote;
                    lk.finalize_at = None;
                    lk.recv.insert(self.cfg.id, self.vote);
                    self.broadcast_notification();
                }
                lk.recv.insert(from, vote);
                self.check_election(lk)
            }
            PeerState::Following | PeerState::Leading => {
                lk.out_of_election.insert(from, (vote, state));
                let leader = vote.leader;
                if leader == self.cfg.id || !self.is_voter(leader) {
                    return Flow::Stay;
                }
                let leader_leads = matches!(
                    lk.out_of_election.get(&leader),
                    Some((v, PeerState::Leading)) if v.leader == leader
                );
                let backing = lk
                    .out_of_election
                    .iter()
                    // By leader only: a follower that stayed with a leader across
                    // its re-election still holds the older vote for it.
                    .filter(|(id, (v, _))| self.is_voter(**id) && v.leader == leader)
                    .count();
                if leader_leads && backing >= self.quorum {
                    self.election_clock = self.election_clock.max(ee);
                    self.vote = lk.out_of_election[&leader].0;
                    return Flow::Learn(leader);
                }
                Flow::Stay
            }
            PeerState::Observing => Flow::Stay,
        }
    }

    fn decision(&self) -> Flow {
        if self.vote.leader == self.cfg.id {
            Flow::Lead
        } else {
            Flow::Learn(self.vote.leader)
        }
    }

    fn check_election(&mut self, lk: &mut Looking) -> Flow {
        if self.is_observer {
            return Flow::Stay;
        }
        let agree = lk.recv.values().filter(|v| **v == self.vote).count();
        if agree < self.quorum {
            lk.finalize_at = None;
            return Flow::Stay;
        }
        if self.cfg.finalize_wait_ticks == 0 {
            return self.decision();
        }
        if lk.finalize_at.is_none() {
            lk.finalize_at = Some(self.now + self.cfg.finalize_wait_ticks);
        }
        Flow::Stay
    }

    fn looking_tick(&mut self, lk: &mut Looking) -> Flow {
        if let Some(at) = lk.finalize_at {
            if self.now >= at {
                lk.finalize_at = None;
                let agree = lk.recv.values().filter(|v| **v == self.vote).count();
                if agree >= self.quorum {
                    return self.decision();
                }
            }
        }
        if self.now >= lk.next_resend {
            lk.next_resend = self.now + self.resend_interval();
            self.broadcast_notification();
        }
        Flow::Stay
    }

    fn become_leader(&mut self) {
        self.role = RoleState::Leading(Leader {
            epoch: None,
            epoch_acked: false,
            established: false,
            initial_last: Zxid::ZERO,
            learners: BTreeMap::new(),
            started: self.now,
        });
        self.with_role(|me, role| match role {
            RoleState::Leading(l) => me.leader_progress(l),
            _ => Flow::Stay,
        });
    }

    fn become_learner(&mut self, leader: ServerId) {
        self.role = RoleState::Following(Follower {
            leader,
            observer: self.is_observer,
            attempt: 0,
            want_snap: false,
            stage: FollowerStage::Connecting,
            since: self.now,
            last_heard: self.now,
            epoch: 0,
            synced_batch: None,
            durable_synced: false,
            sync: None,
        });
        self.rejoin(false);
    }

    /// Starts a fresh connection attempt to the current leader.
    fn rejoin(&mut self, want_snap: bool) {
        self.committed = self.applied;
        let attempt = self.rng.gen::<u64>();
        let now = self.now;
        let RoleState::Following(f) = &mut self.role else {
            return;
        };
        f.attempt = attempt;
        f.want_snap = want_snap;
        f.stage = FollowerStage::Connecting;
        f.since = now;
        f.last_heard = now;
        f.epoch = 0;
        f.synced_batch = None;
        f.durable_synced = false;
        f.sync = None;
        let (leader, observer) = (f.leader, f.observer);
        self.send(
            leader,
            Msg::FollowerInfo {
                accepted_epoch: self.accepted_epoch,
                attempt,
                observer,
                want_snap,
            },
        );
    }

    // ----- leader ----------------------------------------------------------------

    fn voters_other_than_me(&self) -> impl Iterator<Item = &ServerId> {
        self.cfg.voters.iter().filter(move |v| **v != self.cfg.id)
    }

    /// Moves the leader through discovery → synchronisation → broadcast as far as
    /// the acknowledgements it has allow, and commits what a quorum holds.
    fn leader_progress(&mut self, l: &mut Leader) -> Flow {
        // Discovery: a quorum of voters (us included) told us their accepted epoch.
        if l.epoch.is_none() {
            let infos: Vec<u32> = l
                .learners
                .values()
                .filter_map(|ls| match ls.stage {
                    LearnerStage::Info { accepted_epoch } => Some(accepted_epoch),
                    _ => None,
                })
                .collect();
            let voters = 1 + l
                .learners
                .iter()
                .filter(|(id, ls)| {
                    self.is_voter(**id) && matches!(ls.stage, LearnerStage::Info { .. })
                })
                .count();
            if voters < self.quorum {
                return Flow::Stay;
            }
            let max = infos.into_iter().fold(self.accepted_epoch, u32::max);
            let Some(epoch) = max.checked_add(1) else {
                tracing::error!("epoch space exhausted; cannot lead");
                return Flow::Elect;
            };
            l.epoch = Some(epoch);
            self.accepted_epoch = epoch;
            self.write(Write::AcceptedEpoch(epoch));
            let ids: Vec<ServerId> = l.learners.keys().copied().collect();
            for id in ids {
                self.leader_send_info(l, id);
            }
        }
        let epoch = l.epoch.expect("decided above");
        // Discovery ends when a quorum acknowledged the epoch; then sync everyone.
        if !l.epoch_acked {
            let acks = 1 + l
                .learners
                .iter()
                .filter(|(id, ls)| {
                    self.is_voter(**id)
                        && matches!(
                            ls.stage,
                            LearnerStage::EpochAcked {
                                current_epoch: Some(_),
                                ..
                            }
                        )
                })
                .count();
            if acks < self.quorum {
                return Flow::Stay;
            }
            l.epoch_acked = true;
            l.initial_last = self.last_zxid();
            self.current_epoch = epoch;
            self.write(Write::CurrentEpoch(epoch));
            let ids: Vec<ServerId> = l.learners.keys().copied().collect();
            for id in ids {
                self.leader_sync_learner(l, id);
            }
        }
        // Synchronisation ends when a quorum acknowledged NEWLEADER.
        if !l.established {
            let me = self.durable_current_epoch == epoch && self.durable_log_end >= l.initial_last;
            let acks = usize::from(me)
                + l.learners
                    .iter()
                    .filter(|(id, ls)| {
                        self.is_voter(**id)
                            && !ls.observer
                            && ls.stage == LearnerStage::Forwarding
                            && ls.acked.is_some_and(|a| a >= l.initial_last)
                    })
                    .count();
            if acks < self.quorum {
                return Flow::Stay;
            }
            l.established = true;
            tracing::debug!(id = self.cfg.id, epoch, "leader established");
            // The initial history is committed now.
            self.committed = self.committed.max(l.initial_last);
            self.apply_committed();
            let ids: Vec<ServerId> = l.learners.keys().copied().collect();
            for id in ids {
                let ls = l.learners.get_mut(&id).expect("listed");
                if ls.stage == LearnerStage::Forwarding && !ls.observer && ls.acked.is_some() {
                    ls.uptodate_sent = true;
                    let attempt = ls.attempt;
                    self.send(
                        id,
                        Msg::UpToDate {
                            epoch,
                            attempt,
                            commit: self.committed,
                        },
                    );
                } else if ls.observer {
                    // Observers wait for establishment to be synced.
                    self.leader_sync_learner(l, id);
                }
            }
        }
        self.leader_commit(l, epoch);
        Flow::Stay
    }

    /// Commits up to the highest zxid a quorum of voters holds durably.
    fn leader_commit(&mut self, l: &mut Leader, epoch: u32) {
        let mut held: Vec<Zxid> = Vec::with_capacity(self.cfg.voters.len());
        held.push(if self.durable_current_epoch == epoch {
            self.durable_log_end
        } else {
            Zxid::ZERO
        });
        for v in self.voters_other_than_me() {
            let a = l
                .learners
                .get(v)
                .filter(|ls| !ls.observer && ls.stage == LearnerStage::Forwarding)
                .and_then(|ls| ls.acked)
                .unwrap_or(Zxid::ZERO);
            held.push(a);
        }
        held.sort_unstable_by(|a, b| b.cmp(a));
        #[allow(unused_mut)]
        let mut needed = self.quorum;
        #[cfg(any(test, feature = "sim"))]
        if self.bug == Some(PlantedBug::CommitOnMinority) {
            needed = 1;
        }
        let candidate = held[needed - 1].min(self.last_zxid());
        if candidate <= self.committed {
            return;
        }
        self.committed = candidate;
        let ids: Vec<ServerId> = l.learners.keys().copied().collect();
        for id in ids {
            let ls = l.learners.get_mut(&id).expect("listed");
            if ls.stage != LearnerStage::Forwarding {
                continue;
            }
            if !ls.observer {
                self.send(
                    id,
                    Msg::Commit {
                        epoch,
                        zxid: candidate,
                    },
                );
            } else if ls.uptodate_sent {
                let from = self.log.partition_point(|e| e.zxid <= ls.sent_upto);
                let to = self.log.partition_point(|e| e.zxid <= candidate);
                let mut prev = ls.sent_upto;
                let mut msgs = Vec::with_capacity(to.saturating_sub(from));
                for e in &self.log[from..to] {
                    msgs.push(Msg::Inform {
                        epoch,
                        prev,
                        entry: e.clone(),
                    });
                    prev = e.zxid;
                }
                ls.sent_upto = prev;
                for m in msgs {
                    self.send(id, m);
                }
            }
        }
        self.apply_committed();
    }

    /// Sends LEADERINFO to a learner waiting for the decided epoch; it leaves only
    /// once our accepted epoch is durable.
    fn leader_send_info(&mut self, l: &mut Leader, id: ServerId) {
        let Some(epoch) = l.epoch else { return };
        let Some(ls) = l.learners.get_mut(&id) else {
            return;
        };
        if !matches!(
            ls.stage,
            LearnerStage::Info { .. } | LearnerStage::EpochSent
        ) {
            return;
        }
        ls.stage = LearnerStage::EpochSent;
        let msg = Msg::LeaderInfo {
            new_epoch: epoch,
            attempt: ls.attempt,
        };
        if self.durable_accepted_epoch >= epoch {
            self.send(id, msg);
        } else {
            self.send_after_persist(id, msg);
        }
    }

    /// DIFF, TRUNC or SNAP for a learner that reported `peer_last`: the mode, the
    /// zxid the txns follow, and the index in our log of the first txn to send.
    fn sync_plan(&self, peer_last: Zxid, want_snap: bool) -> (SyncMode, Zxid, usize) {
        let base = self.base_zxid();
        if want_snap || peer_last < base {
            let snap = self.snapshot.clone().unwrap_or(Snapshot {
                zxid: Zxid::ZERO,
                data: Bytes::new(),
            });
            let prev = snap.zxid;
            return (SyncMode::Snap(snap), prev, 0);
        }
        // The greatest zxid we hold that is not after the learner's last.
        let idx = self.log.partition_point(|e| e.zxid <= peer_last);
        let common = if idx == 0 {
            base
        } else {
            self.log[idx - 1].zxid
        };
        if common == peer_last {
            (SyncMode::Diff, common, idx)
        } else {
            (SyncMode::Trunc, common, idx)
        }
    }

    /// Brings a learner that acknowledged the epoch in line with our log and sends
    /// NEWLEADER; from then on it receives the broadcast.
    fn leader_sync_learner(&mut self, l: &mut Leader, id: ServerId) {
        let epoch = l.epoch.expect("sync after discovery");
        let Some(ls) = l.learners.get_mut(&id) else {
            return;
        };
        let LearnerStage::EpochAcked { last_zxid, .. } = ls.stage else {
            return;
        };
        if !l.epoch_acked || (ls.observer && !l.established) {
            return;
        }
        // Followers get our whole log (committed or not); observers only what is
        // committed.
        let upto = if ls.observer {
            self.committed
        } else {
            self.last_zxid()
        };
        let (mode, prev, from) = self.sync_plan(last_zxid, ls.want_snap);
        let to = self.log.partition_point(|e| e.zxid <= upto);
        let entries = self.log[from.min(to)..to].to_vec();
        ls.stage = LearnerStage::Forwarding;
        ls.sent_upto = upto;
        ls.acked = None;
        ls.uptodate_sent = false;
        let attempt = ls.attempt;
        let observer = ls.observer;
        if observer {
            ls.uptodate_sent = true;
        }
        // The first message carries the mode; longer syncs continue as DIFFs.
        let mut chunks = entries.chunks(self.cfg.sync_entries_max);
        let first = chunks.next().map(<[Entry]>::to_vec).unwrap_or_default();
        let mut prev_next = first.last().map_or(prev, |e| e.zxid);
        self.send(
            id,
            Msg::Sync {
                epoch,
                attempt,
                mode,
                prev,
                entries: first,
            },
        );
        for chunk in chunks {
            let prev = prev_next;
            prev_next = chunk.last().expect("chunks are non-empty").zxid;
            self.send(
                id,
                Msg::Sync {
                    epoch,
                    attempt,
                    mode: SyncMode::Diff,
                    prev,
                    entries: chunk.to_vec(),
                },
            );
        }
        self.send(
            id,
            Msg::NewLeader {
                epoch,
                attempt,
                last_zxid: upto,
            },
        );
        if observer {
            self.send(
                id,
                Msg::UpToDate {
                    epoch,
                    attempt,
                    commit: self.committed,
                },
            );
        }
    }

    fn leader_on_message(&mut self, l: &mut Leader, from: ServerId, msg: Msg) -> Flow {
        let member_observer = if self.is_voter(from) {
            false
        } else if self.cfg.observers.contains(&from) {
            true
        } else {
            return Flow::Stay;
        };
        if let Some(ls) = l.learners.get_mut(&from) {
            ls.last_heard = self.now;
        }
        match msg {
            Msg::FollowerInfo {
                accepted_epoch,
                attempt,
                want_snap,
                ..
            } => {
                if let Some(ls) = l.learners.get(&from) {
                    if ls.attempt == attempt {
                        // A resend: LEADERINFO may have been lost.
                        if ls.stage == LearnerStage::EpochSent {
                            self.leader_send_info(l, from);
                        }
                        return Flow::Stay;
                    }
                }
                l.learners.insert(
                    from,
                    LearnerState {
                        attempt,
                        observer: member_observer,
                        want_snap,
                        stage: LearnerStage::Info { accepted_epoch },
                        acked: None,
                        sent_upto: Zxid::ZERO,
                        last_heard: self.now,
                        uptodate_sent: false,
                    },
                );
                if l.epoch.is_some() {
                    self.leader_send_info(l, from);
                    Flow::Stay
                } else {
                    self.leader_progress(l)
                }
            }
            Msg::AckEpoch {
                attempt,
                current_epoch,
                last_zxid,
            } => {
                let Some(ls) = l.learners.get_mut(&from) else {
                    return Flow::Stay;
                };
                if ls.attempt != attempt || ls.stage != LearnerStage::EpochSent {
                    return Flow::Stay;
                }
                if let Some(ce) = current_epoch {
                    if (ce, last_zxid) > (self.current_epoch, self.last_zxid()) {
                        // A quorum member is ahead of us: we must not lead.
                        tracing::info!(
                            id = self.cfg.id,
                            from,
                            "follower ahead of leader; re-electing"
                        );
                        return Flow::Elect;
                    }
                }
                ls.stage = LearnerStage::EpochAcked {
                    current_epoch,
                    last_zxid,
                };
                if l.epoch_acked {
                    self.leader_sync_learner(l, from);
                }
                self.leader_progress(l)
            }
            Msg::Ack { epoch, zxid } | Msg::Ping { epoch, zxid, .. } => {
                if Some(epoch) != l.epoch {
                    return Flow::Stay;
                }
                let Some(ls) = l.learners.get_mut(&from) else {
                    return Flow::Stay;
                };
                if ls.observer || ls.stage != LearnerStage::Forwarding {
                    return Flow::Stay;
                }
                if matches!(msg, Msg::Ping { .. }) && zxid == Zxid::ZERO {
                    return Flow::Stay;
                }
                let zxid = zxid.min(ls.sent_upto);
                ls.acked = Some(ls.acked.map_or(zxid, |a| a.max(zxid)));
                if l.established && !ls.uptodate_sent {
                    ls.uptodate_sent = true;
                    let attempt = ls.attempt;
                    self.send(
                        from,
                        Msg::UpToDate {
                            epoch,
                            attempt,
                            commit: self.committed,
                        },
                    );
                }
                self.leader_progress(l)
            }
            // Leader-to-learner messages from someone else: another leader that
            // has not noticed it lost; ignore it.
            _ => Flow::Stay,
        }
    }

    fn leader_tick(&mut self, l: &mut Leader) -> Flow {
        let now = self.now;
        if !l.established && now.saturating_sub(l.started) > self.cfg.init_limit_ticks {
            tracing::info!(id = self.cfg.id, "leader not established within initLimit");
            return Flow::Elect;
        }
        let (init, sync) = (self.cfg.init_limit_ticks, self.cfg.sync_limit_ticks);
        l.learners.retain(|_, ls| {
            let limit = if ls.stage == LearnerStage::Forwarding {
                sync
            } else {
                init
            };
            now.saturating_sub(ls.last_heard) <= limit
        });
        let Some(epoch) = l.epoch else {
            return Flow::Stay;
        };
        let pings: Vec<(ServerId, Zxid)> = l
            .learners
            .iter()
            .filter(|(_, ls)| ls.stage == LearnerStage::Forwarding)
            .map(|(id, ls)| (*id, ls.sent_upto))
            .collect();
        for (id, last) in pings {
            self.send(
                id,
                Msg::Ping {
                    epoch,
                    zxid: self.committed,
                    last,
                },
            );
        }
        if l.established {
            let synced = 1 + l
                .learners
                .iter()
                .filter(|(id, ls)| {
                    self.is_voter(**id)
                        && ls.stage == LearnerStage::Forwarding
                        && ls.acked.is_some()
                })
                .count();
            if synced < self.quorum {
                tracing::info!(id = self.cfg.id, epoch, "lost the quorum; re-electing");
                return Flow::Elect;
            }
        }
        Flow::Stay
    }

    // ----- follower and observer -------------------------------------------------

    fn follower_tick(&mut self, f: &mut Follower) -> Flow {
        let now = self.now;
        if f.stage == FollowerStage::Serving {
            if now.saturating_sub(f.last_heard) > self.cfg.sync_limit_ticks {
                tracing::info!(id = self.cfg.id, leader = f.leader, "leader silent");
                return Flow::Elect;
            }
            return Flow::Stay;
        }
        if now.saturating_sub(f.since) > self.cfg.init_limit_ticks {
            tracing::info!(
                id = self.cfg.id,
                leader = f.leader,
                "not synced within initLimit"
            );
            return Flow::Elect;
        }
        if f.stage == FollowerStage::Connecting {
            self.send(
                f.leader,
                Msg::FollowerInfo {
                    accepted_epoch: self.accepted_epoch,
                    attempt: f.attempt,
                    observer: f.observer,
                    want_snap: f.want_snap,
                },
            );
        }
        Flow::Stay
    }

    fn append(&mut self, entry: Entry) {
        debug_assert!(entry.zxid > self.last_zxid(), "log order");
        self.log.push(entry.clone());
        self.write(Write::Append(entry));
    }

    /// Checks that a sync fits our log: a DIFF must start at our last zxid, a TRUNC
    /// at a zxid we hold and have not applied past, a SNAP at its own zxid.
    fn sync_fits(&self, mode: &SyncMode, prev: Zxid, entries: &[Entry]) -> bool {
        let fits = match mode {
            SyncMode::Diff => self.last_zxid() == prev,
            SyncMode::Trunc => {
                let held = prev == self.base_zxid()
                    || self.log.binary_search_by(|e| e.zxid.cmp(&prev)).is_ok();
                // What we applied is committed and can never be truncated.
                held && prev >= self.applied
            }
            SyncMode::Snap(snap) => snap.zxid == prev,
        };
        fits && increasing_after(prev, entries)
    }

    /// Makes a buffered sync our log, all in the one batch that also carries the
    /// NEWLEADER ack. Every prefix of its writes is safe to survive a crash: a
    /// TRUNC only drops txns the leader does not have, and a SNAP is one write.
    fn apply_sync(&mut self, sync: PendingSync) {
        let PendingSync {
            mode,
            prev,
            entries,
        } = sync;
        match mode {
            SyncMode::Diff => {}
            SyncMode::Trunc => {
                if prev < self.last_zxid() {
                    let keep = self.log.partition_point(|e| e.zxid <= prev);
                    self.log.truncate(keep);
                    self.write(Write::TruncateAfter(prev));
                }
            }
            SyncMode::Snap(snapshot) => {
                self.log.clone_from(&entries);
                self.snapshot = Some(snapshot.clone());
                self.applied = snapshot.zxid;
                self.committed = snapshot.zxid;
                self.gated_apply.push(Apply::Snapshot(snapshot.clone()));
                self.write(Write::InstallSnapshot { snapshot, entries });
                return;
            }
        }
        for e in entries {
            self.append(e);
        }
    }

    fn follower_on_message(&mut self, f: &mut Follower, from: ServerId, msg: Msg) -> Flow {
        if from != f.leader {
            return Flow::Stay;
        }
        f.last_heard = self.now;
        use FollowerStage as S;
        match msg {
            Msg::LeaderInfo { new_epoch, attempt } => {
                if attempt != f.attempt || f.stage != S::Connecting {
                    return Flow::Stay;
                }
                let last_zxid = self.last_zxid();
                if new_epoch > self.accepted_epoch {
                    self.accepted_epoch = new_epoch;
                    self.write(Write::AcceptedEpoch(new_epoch));
                    let msg = Msg::AckEpoch {
                        attempt,
                        current_epoch: Some(self.current_epoch),
                        last_zxid,
                    };
                    self.send_after_persist(from, msg);
                } else if new_epoch == self.accepted_epoch {
                    // Already promised this epoch once: report, but do not count.
                    let msg = Msg::AckEpoch {
                        attempt,
                        current_epoch: None,
                        last_zxid,
                    };
                    self.send(from, msg);
                } else {
                    tracing::info!(id = self.cfg.id, new_epoch, "leader epoch is stale");
                    return Flow::Elect;
                }
                f.epoch = new_epoch;
                f.stage = S::AwaitSync;
                Flow::Stay
            }
            Msg::Sync {
                epoch,
                attempt,
                mode,
                prev,
                entries,
            } => {
                if attempt != f.attempt || epoch != f.epoch {
                    return Flow::Stay;
                }
                // Buffered until NEWLEADER, so a sync cut short changes nothing.
                match (f.stage, f.sync.as_mut()) {
                    (S::AwaitSync, _) => {
                        if !self.sync_fits(&mode, prev, &entries) {
                            tracing::info!(id = self.cfg.id, "sync does not fit our log");
                            return Flow::Rejoin { want_snap: true };
                        }
                        f.sync = Some(PendingSync {
                            mode,
                            prev,
                            entries,
                        });
                        f.stage = S::AwaitNewLeader;
                    }
                    (S::AwaitNewLeader, Some(sync)) if mode == SyncMode::Diff => {
                        // A continuation: it must follow what we buffered.
                        let last = sync.entries.last().map_or(sync.prev, |e| e.zxid);
                        if prev != last || !increasing_after(prev, &entries) {
                            return Flow::Rejoin { want_snap: false };
                        }
                        sync.entries.extend(entries);
                    }
                    _ => {}
                }
                Flow::Stay
            }
            Msg::NewLeader {
                epoch,
                attempt,
                last_zxid,
            } => {
                if attempt != f.attempt || epoch != f.epoch || f.stage != S::AwaitNewLeader {
                    return Flow::Stay;
                }
                if epoch < self.current_epoch {
                    return Flow::Elect;
                }
                if let Some(sync) = f.sync.take() {
                    self.apply_sync(sync);
                }
                if last_zxid != self.last_zxid() {
                    return Flow::Rejoin { want_snap: false };
                }
                if epoch != self.current_epoch {
                    self.current_epoch = epoch;
                    self.write(Write::CurrentEpoch(epoch));
                }
                f.stage = S::Synced;
                f.synced_batch = Some(self.batch_next);
                self.pending_mark = true;
                if !f.observer {
                    self.send_after_persist(
                        from,
                        Msg::Ack {
                            epoch,
                            zxid: last_zxid,
                        },
                    );
                }
                Flow::Stay
            }
            Msg::UpToDate {
                epoch,
                attempt,
                commit,
            } => {
                if attempt != f.attempt || epoch != f.epoch || f.stage != S::Synced {
                    return Flow::Stay;
                }
                f.stage = S::Serving;
                self.learn_commit(commit)
            }
            Msg::Proposal { epoch, prev, entry } => {
                if f.observer
                    || epoch != f.epoch
                    || !matches!(f.stage, S::Synced | S::Serving)
                    || entry.zxid <= self.last_zxid()
                {
                    return Flow::Stay;
                }
                if prev != self.last_zxid() || entry.zxid.epoch() != epoch {
                    return Flow::Rejoin { want_snap: false };
                }
                let zxid = entry.zxid;
                self.append(entry);
                #[cfg(any(test, feature = "sim"))]
                if self.bug == Some(PlantedBug::AckBeforeDurable) {
                    self.send(from, Msg::Ack { epoch, zxid });
                    return Flow::Stay;
                }
                self.send_after_persist(from, Msg::Ack { epoch, zxid });
                Flow::Stay
            }
            Msg::Commit { epoch, zxid } => {
                if f.observer || epoch != f.epoch || !matches!(f.stage, S::Synced | S::Serving) {
                    return Flow::Stay;
                }
                self.learn_commit(zxid)
            }
            Msg::Inform { epoch, prev, entry } => {
                if !f.observer
                    || epoch != f.epoch
                    || !matches!(f.stage, S::Synced | S::Serving)
                    || entry.zxid <= self.last_zxid()
                {
                    return Flow::Stay;
                }
                if prev != self.last_zxid() {
                    return Flow::Rejoin { want_snap: false };
                }
                let zxid = entry.zxid;
                self.append(entry);
                self.learn_commit(zxid)
            }
            Msg::Ping { epoch, zxid, last } => {
                if epoch != f.epoch || !matches!(f.stage, S::Synced | S::Serving) {
                    return Flow::Stay;
                }
                let held = if f.durable_synced {
                    self.durable_log_end
                } else {
                    Zxid::ZERO
                };
                let mine = self.last_zxid();
                self.send(
                    from,
                    Msg::Ping {
                        epoch,
                        zxid: held,
                        last: mine,
                    },
                );
                if last > mine {
                    // Txns sent before this ping never arrived.
                    return Flow::Rejoin { want_snap: false };
                }
                self.learn_commit(zxid)
            }
            _ => Flow::Stay,
        }
    }

    /// The leader says everything up to `zxid` is committed. Our log is a prefix of
    /// the leader's, so what we hold up to there is committed; if we lack part of it
    /// we missed proposals and must resynchronise.
    fn learn_commit(&mut self, zxid: Zxid) -> Flow {
        if zxid > self.committed {
            self.committed = zxid;
        }
        self.apply_committed();
        if self.committed > self.last_zxid() {
            return Flow::Rejoin { want_snap: false };
        }
        Flow::Stay
    }
}
