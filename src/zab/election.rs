//! Fast leader election as ZooKeeper 3.8's `FastLeaderElection` runs it
//! (PEER-PROTOCOL §4): the notification loop of a LOOKING server, and the replies
//! every server gives to LOOKING peers (its receiver thread), whatever its role.
//!
//! Part of the replica (sequencer core). Pure: notifications in, notifications out;
//! the transport keeps one unsent notification per peer and replays the last one on
//! a new connection, so duplicates and stale notifications are normal input.
//!
//! ```text
//!  look_for_leader: round += 1, proposal = own vote, notify every voter (self too)
//!  LOOKING n:   newer round → adopt round, best of (n, own vote), re-notify
//!               same round  → adopt n if it beats the proposal, re-notify
//!               quorum agrees with the proposal → wait finalize_wait for a better
//!               vote, then decide (LEADING if it is us, else FOLLOWING/OBSERVING)
//!  FOLLOWING/LEADING n: a quorum already follows n.leader (and it says LEADING)
//!               → join it (a latecomer)
//!  silence:     re-notify after timeout, doubling 200 ms → 60 s
//!  reconfig:    voters are those of the committed and the last-seen config, a
//!               decision needs a quorum of both; a LOOKING server told of a
//!               higher config version adopts it, and starts over if its members
//!               differ
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use super::membership::Membership;
use super::replica::{Replica, RoleState};
use super::types::{Config, Notification, Output, PeerState, ServerId, Vote};

/// A vote as received, with what `Vote.equals` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Received {
    vote: Vote,
    election_epoch: i64,
    state: PeerState,
    /// The reference stores some votes as version 0 (its 4-field and 5-field
    /// `Vote` constructors): compared with a current (version 2) vote of a
    /// FOLLOWING/LEADING peer, only the leader's id then counts.
    version0: bool,
}

impl Received {
    fn new(vote: Vote, election_epoch: i64, state: PeerState, version0: bool) -> Received {
        Received {
            vote,
            election_epoch,
            state,
            version0,
        }
    }

    /// The reference's `Vote.equals`: with either side LOOKING every field counts;
    /// otherwise the leader, and its epoch unless exactly one side is version 0.
    fn same(&self, other: &Received) -> bool {
        if self.state == PeerState::Looking || other.state == PeerState::Looking {
            self.vote == other.vote && self.election_epoch == other.election_epoch
        } else if self.version0 != other.version0 {
            self.vote.leader == other.vote.leader
        } else {
            self.vote.leader == other.vote.leader && self.vote.peer_epoch == other.vote.peer_epoch
        }
    }
}

#[derive(Debug)]
pub(super) struct Election {
    /// The round (`logicalclock`).
    pub logical_clock: i64,
    /// What we propose while LOOKING.
    proposal: Vote,
    /// The last decided vote and its round: what we answer LOOKING peers with once
    /// decided (its peer epoch is raised when the new epoch starts).
    pub current_vote: Vote,
    pub current_round: i64,
    recv: BTreeMap<ServerId, Received>,
    out_of_election: BTreeMap<ServerId, Received>,
    timeout_ms: u64,
    resend_at: u64,
    finalize_at: Option<u64>,
    /// The leader whose loss started this election (set by `abandon_leader`; cleared
    /// when it speaks again or we decide): its vote is the only one still to come.
    pub lost: Option<ServerId>,
}

impl Election {
    /// Whether a quorum agrees that we lead and we only wait out finalizeWait:
    /// we are about to lead, unless a better vote comes.
    pub fn about_to_lead(&self, id: ServerId) -> bool {
        self.finalize_at.is_some() && self.proposal.leader == id as i64
    }

    pub fn new(cfg: &Config) -> Election {
        Election {
            logical_clock: 0,
            proposal: Vote::NONE,
            current_vote: Vote::NONE,
            current_round: 0,
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            timeout_ms: cfg.election_timeout_min_ms,
            resend_at: 0,
            finalize_at: None,
            lost: None,
        }
    }

    pub fn next_deadline(&self) -> u64 {
        self.finalize_at
            .map_or(self.resend_at, |f| f.min(self.resend_at))
    }
}

impl Replica {
    /// Our own vote at the start of a round (`getInitId` / `getInitLastLoggedZxid` /
    /// `getPeerEpoch`).
    /// A server the config does not name (reconfig) participates without a vote:
    /// it proposes nobody, with its own zxid and epoch.
    fn initial_vote(&self) -> Vote {
        if self.is_observer() {
            return Vote::NONE;
        }
        let me = self.cfg.id;
        Vote {
            leader: if self.conf.is_voter(me) {
                me as i64
            } else {
                i64::MIN
            },
            zxid: self.last_logged.as_i64(),
            peer_epoch: self.current_epoch as i64,
        }
    }

    fn is_valid_voter(&self, id: i64) -> bool {
        id >= 0 && self.is_current_or_next_voter(id as u64)
    }

    /// Notifications carry our committed config's text.
    fn notification(&self, state: PeerState, vote: Vote, election_epoch: i64) -> Notification {
        Notification {
            state,
            vote,
            election_epoch,
            config: self.conf.text().clone(),
        }
    }

    /// `startLeaderElection` again (a new election instance): round 0, our own
    /// vote, then a new round.
    fn restart_election(&mut self) {
        self.election.logical_clock = 0;
        self.election.current_vote = Vote {
            leader: self.cfg.id as i64,
            zxid: self.last_logged.as_i64(),
            peer_epoch: self.current_epoch as i64,
        };
        self.look_for_leader();
    }

    /// The receiver thread's config check: a LOOKING server told of a config of a
    /// higher version than its committed one adopts it (`processReconfig`), and if
    /// its members differ starts the election over, dropping the notification.
    /// Returns true when the notification was consumed that way.
    fn adopt_gossiped_config(&mut self, from: ServerId, n: &Notification) -> bool {
        if !self.cfg.reconfig_enabled
            || self.peer_state() != PeerState::Looking
            || n.config == *self.conf.text()
        {
            return false;
        }
        let m = match Membership::parse(&n.config) {
            Ok(m) if m.version() > self.conf.version() => Arc::new(m),
            Ok(_) => return false,
            Err(e) => {
                tracing::debug!(id = self.cfg.id, from, "config in a notification: {e}");
                return false;
            }
        };
        let cur = self.conf.clone();
        tracing::info!(
            id = self.cfg.id,
            from,
            "told of config version {:x} (ours {:x})",
            m.version(),
            cur.version()
        );
        self.activate(m.clone());
        if m.same_config(&cur) {
            return false;
        }
        tracing::info!(
            id = self.cfg.id,
            "the members changed: restarting the election"
        );
        self.restart_election();
        true
    }

    /// Starts a round: `lookForLeader`'s prologue.
    pub(super) fn look_for_leader(&mut self) {
        let e = &mut self.election;
        e.logical_clock += 1;
        e.recv.clear();
        e.out_of_election.clear();
        e.finalize_at = None;
        e.timeout_ms = self.cfg.election_timeout_min_ms;
        self.election.proposal = self.initial_vote();
        tracing::info!(
            id = self.cfg.id,
            round = self.election.logical_clock,
            "LOOKING: proposing {:?}",
            self.election.proposal
        );
        self.send_notifications();
        self.check_looking_quorum();
    }

    /// Notifies every voter of our proposal; our own copy (the reference loops it
    /// back through its queue) is recorded directly.
    fn send_notifications(&mut self) {
        let n = self.notification(
            PeerState::Looking,
            self.election.proposal,
            self.election.logical_clock,
        );
        self.election.resend_at = self.now + self.election.timeout_ms;
        let voters = self.current_and_next_voters();
        for to in voters {
            if to == self.cfg.id {
                let own = Received::new(n.vote, n.election_epoch, PeerState::Looking, true);
                self.election.recv.insert(to, own);
            } else {
                self.emit(Output::Notify { to, n: n.clone() });
            }
        }
    }

    /// A quorum agrees with our proposal: wait `finalize_wait` for a better vote,
    /// unless every voter but the leader just lost has agreed already (nothing better
    /// can still arrive from a live member). The wait only avoids electing a worse
    /// leader than a slower notification would name; discovery and sync keep safety
    /// whoever is elected, so skipping it is safe and saves 200 ms per failover.
    fn check_looking_quorum(&mut self) {
        let e = &self.election;
        let mine = Received::new(e.proposal, e.logical_clock, PeerState::Looking, true);
        if e.finalize_at.is_some() || !self.has_quorum_for(&e.recv, &mine) {
            return;
        }
        let lost = e.lost;
        let everyone_else = self
            .current_and_next_voters()
            .into_iter()
            .all(|v| Some(v) == lost || e.recv.get(&v).is_some_and(|r| r.same(&mine)));
        if self.cfg.finalize_wait_ms == 0 || (lost.is_some() && everyone_else) {
            self.decide_proposal();
        } else {
            self.election.finalize_at = Some(self.now + self.cfg.finalize_wait_ms);
        }
    }

    pub(super) fn election_tick(&mut self) {
        if let Some(at) = self.election.finalize_at {
            if self.now >= at {
                self.election.finalize_at = None;
                self.decide_proposal();
                return;
            }
        }
        if self.now >= self.election.resend_at {
            // Silence: notify again and wait twice as long next time.
            let e = &mut self.election;
            e.timeout_ms = (e.timeout_ms * 2).min(self.cfg.election_timeout_max_ms);
            self.send_notifications();
        }
    }

    /// A notification from a peer: the receiver thread's replies, then (if LOOKING)
    /// the election loop.
    pub(super) fn on_notification(&mut self, from: ServerId, n: Notification) {
        if self.adopt_gossiped_config(from, &n) {
            return;
        }
        let me = self.peer_state();
        if self.election.lost == Some(from) {
            self.election.lost = None;
        }
        if !self.is_current_or_next_voter(from) {
            // A non-voter (an observer) learns who leads from our answer at once: our
            // current vote (the last decided one, our own at start-up), whatever we do.
            let vote = self.election.current_vote;
            let reply = self.notification(me, vote, self.election.logical_clock);
            self.emit(Output::Notify { to: from, n: reply });
            return;
        }
        if me == PeerState::Looking {
            // A lagging LOOKING voter hears our round, so it catches up. (An observer
            // does not answer: voters only ever answer an observer, so two such
            // answers would bounce between them for as long as the voter lags.)
            if n.state == PeerState::Looking
                && n.election_epoch < self.election.logical_clock
                && self.is_current_or_next_voter(self.cfg.id)
            {
                let reply = self.notification(
                    PeerState::Looking,
                    self.election.proposal,
                    self.election.logical_clock,
                );
                self.emit(Output::Notify { to: from, n: reply });
            }
            self.looking_loop(from, n);
        } else if n.state == PeerState::Looking {
            let reply =
                self.notification(me, self.election.current_vote, self.election.current_round);
            self.emit(Output::Notify { to: from, n: reply });
        }
    }

    /// One notification through `lookForLeader`'s loop body.
    fn looking_loop(&mut self, from: ServerId, n: Notification) {
        if !matches!(self.role, RoleState::Looking) {
            return;
        }
        self.election.resend_at = self.now + self.election.timeout_ms;
        if self.election.finalize_at.is_some() {
            // Waiting to confirm a decision: only a better vote reopens it; any other
            // notification is consumed and the wait starts over (the reference polls
            // its queue for finalizeWait again after each one).
            if !n.vote.beats(&self.election.proposal) {
                self.election.finalize_at = Some(self.now + self.cfg.finalize_wait_ms);
                return;
            }
            self.election.finalize_at = None;
        }
        if !self.is_valid_voter(from as i64) || !self.is_valid_voter(n.vote.leader) {
            tracing::debug!(
                id = self.cfg.id,
                from,
                leader = n.vote.leader,
                "ignoring a notification naming a non-voter"
            );
            return;
        }
        match n.state {
            PeerState::Looking => self.on_looking_vote(from, n),
            PeerState::Following | PeerState::Leading => self.on_established_vote(from, n),
            PeerState::Observing => {}
        }
    }

    fn on_looking_vote(&mut self, from: ServerId, n: Notification) {
        let e = &mut self.election;
        if n.vote.zxid == -1 {
            return;
        }
        if n.election_epoch > e.logical_clock {
            e.logical_clock = n.election_epoch;
            e.recv.clear();
            let own = self.initial_vote();
            self.election.proposal = if n.vote.beats(&own) { n.vote } else { own };
            self.send_notifications();
        } else if n.election_epoch < e.logical_clock {
            return;
        } else if n.vote.beats(&e.proposal) {
            e.proposal = n.vote;
            self.send_notifications();
        } else if n.vote != e.proposal {
            // The sender does not know our better vote yet (its first notification
            // crossed a member still following): tell it now rather than after its
            // notification timeout. The reference answers only lower rounds; this
            // is an ordinary notification, so ZooKeeper peers take it as one.
            let (vote, round) = (e.proposal, e.logical_clock);
            let reply = self.notification(PeerState::Looking, vote, round);
            self.emit(Output::Notify { to: from, n: reply });
        }
        let got = Received::new(n.vote, n.election_epoch, PeerState::Looking, true);
        self.election.recv.insert(from, got);
        self.check_looking_quorum();
    }

    /// A FOLLOWING or LEADING peer: an established leader a latecomer may join.
    fn on_established_vote(&mut self, from: ServerId, n: Notification) {
        // The notification's own vote is current (version 2); the reference keeps it
        // as version 0 in its round's set and as version 2 out of election.
        let got = Received::new(n.vote, n.election_epoch, n.state, false);
        let leader = n.vote.leader as u64;
        if n.election_epoch == self.election.logical_clock {
            self.election
                .recv
                .insert(from, Received::new(n.vote, n.election_epoch, n.state, true));
            if self.has_quorum_to_join(&self.election.recv, &got, leader)
                && self.check_leader(&self.election.recv, leader, n.election_epoch)
            {
                self.decide(n.vote, n.election_epoch);
                return;
            }
        }
        self.election.out_of_election.insert(from, got);
        if self.has_quorum_to_join(&self.election.out_of_election, &got, leader)
            && self.check_leader(&self.election.out_of_election, leader, n.election_epoch)
        {
            self.election.logical_clock = n.election_epoch;
            self.decide(n.vote, n.election_epoch);
        }
    }

    /// `termPredicate`: the voters whose vote equals `v` form a quorum (of both
    /// configs while a reconfig is pending).
    fn has_quorum_for(&self, votes: &BTreeMap<ServerId, Received>, v: &Received) -> bool {
        let agree: Vec<ServerId> = votes
            .iter()
            .filter(|(_, r)| r.same(v))
            .map(|(id, _)| *id)
            .collect();
        self.quorum_in_all(&agree)
    }

    /// Joining an established leader: a quorum of our committed config follows it
    /// (leading ourselves: of the pending one too). The reference asks the pending
    /// config's quorum in both cases; but a proposed config may never commit (its
    /// leader gone, the next leader's history without it), and a server that saw
    /// it would then wait for ever for that config's voters. Following decides
    /// nothing (the leader's own quorums do, and its NEWLEADER replaces the stale
    /// proposal); a config that did commit reaches us through the notifications.
    fn has_quorum_to_join(
        &self,
        votes: &BTreeMap<ServerId, Received>,
        v: &Received,
        leader: ServerId,
    ) -> bool {
        if leader == self.cfg.id {
            return self.has_quorum_for(votes, v);
        }
        let agree: Vec<ServerId> = votes
            .iter()
            .filter(|(_, r)| r.same(v))
            .map(|(id, _)| *id)
            .collect();
        self.conf.contains_quorum(&agree)
    }

    /// `checkLeader`: another leader must have told us it is LEADING; if it is us,
    /// the round must be ours.
    fn check_leader(
        &self,
        votes: &BTreeMap<ServerId, Received>,
        leader: ServerId,
        election_epoch: i64,
    ) -> bool {
        if leader != self.cfg.id {
            votes
                .get(&leader)
                .is_some_and(|r| r.state == PeerState::Leading)
        } else {
            self.election.logical_clock == election_epoch
        }
    }

    fn decide_proposal(&mut self) {
        let (vote, round) = (self.election.proposal, self.election.logical_clock);
        self.decide(vote, round);
    }

    fn decide(&mut self, vote: Vote, round: i64) {
        self.election.lost = None;
        self.election.current_vote = vote;
        self.election.current_round = round;
        self.election.finalize_at = None;
        self.election.recv.clear();
        self.election.out_of_election.clear();
        tracing::info!(
            id = self.cfg.id,
            round,
            leader = vote.leader,
            "election decided"
        );
        self.election_decided(vote.leader as u64);
    }

    /// Once a new epoch starts (leader established, learner up to date), LOOKING
    /// peers are told that epoch (`updateElectionVote`).
    pub(super) fn update_election_vote(&mut self, epoch: u32) {
        self.election.current_vote.peer_epoch = epoch as i64;
    }
}
