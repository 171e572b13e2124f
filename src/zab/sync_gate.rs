//! The leader's sync gate: a sync is answered only after a quorum proved, after the
//! sync arrived, that it still follows this leader. Part of the replication core
//! (no IO, no clock); it lives inside the leader's state on the sequencer core.
//!
//! Why: the reference's leader answers a sync as soon as what it proposed before the
//! sync commits. A leader cut off from its followers keeps doing that until it
//! notices the lost quorum (up to syncLimit plus a tick), while the followers may
//! already have elected a new leader that committed writes: a sync then returns
//! older data than a write acknowledged before it (the faults harness caught the
//! reference doing exactly that). corral's followers elect within milliseconds, so
//! the window is real for corral too.
//!
//! The rule (Raft's "read index", on ZooKeeper's own PING): the leader numbers its
//! ping rounds. A learner answers every PING once, in order, once it runs (after
//! UPTODATE; both the reference's learners and ours ignore pings while syncing), so
//! the n-th answer after UPTODATE belongs to the n-th ping sent after it
//! ([`PingRounds`]). A sync arriving when round `r` was the last sent needs round
//! `r + 1` to be answered by a quorum (the leader counts itself). A server that
//! answers a ping sent after the sync arrived was following this leader then, and a
//! server never returns to an older epoch, so no quorum can have made another leader
//! commit anything before the sync arrived. Then the usual wait for the commit of
//! the last proposal before the sync follows.
//!
//! One sync round is in flight at a time: syncs arriving meanwhile wait for the next
//! one, sent when it is confirmed (a storm of syncs costs a ping round per round
//! trip, not per sync). The periodic pings count as rounds too.
//!
//! Order on a learner's link ([`LearnerSyncs`]): the reference's learner matches a
//! SYNC to its oldest forwarded sync and a COMMIT of its own request to the oldest
//! write it forwarded, with ONE queue for both (`CommitProcessor` with `matchSyncs`:
//! a commit that is not for the head of `queuedWriteRequests` is taken for another
//! server's write; the local request then never gets its answer, and every later
//! local write of that learner is mismatched the same way: clients hang, or get
//! another request's answer). The reference's leader never breaks that order: it
//! sends SYNC right after the COMMIT of the last proposal before the sync, before
//! any later COMMIT. The gate delays the SYNC by a ping round, during which a write
//! the learner forwarded after its sync can commit. So while one of a learner's
//! syncs is unanswered, the COMMITs (INFORMs) of proposals made after it arrived
//! are held for that learner and go out right behind its SYNC.

use std::collections::VecDeque;

use super::types::{ConnId, Zxid};

/// Pings a learner may leave unanswered before its answers stop being counted
/// (it is far behind; it will also be dropped for silence after syncLimit).
pub const PINGS_UNANSWERED_COUNT_MAX: usize = 4096;

/// Commits one learner may have held behind its unanswered syncs (the gate is an
/// RTT; more means its syncs cannot pass while writes commit: it is dropped).
pub const HELD_COMMITS_COUNT_MAX: usize = 16_384;

/// Syncs of one learner waiting for their SYNC (past it: the learner is dropped).
pub const SYNCS_UNANSWERED_COUNT_MAX: usize = 16_384;

/// Who waits for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncWaiter {
    /// A learner's forwarded sync: answered with SYNC on its connection.
    Learner(ConnId),
    /// One of the leader's own clients: the driver's tag.
    Local(u64),
}

/// A sync waiting for its round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatedSync {
    /// The ping round a quorum must answer.
    pub need: u64,
    /// Everything proposed when it arrived: it is answered after this commits.
    pub at: Zxid,
    pub who: SyncWaiter,
}

/// One learner's pings sent since it runs, and its newest answer.
#[derive(Debug, Default)]
pub struct PingRounds {
    unanswered: VecDeque<u64>,
    /// Past [`PINGS_UNANSWERED_COUNT_MAX`]: answers no longer attributable.
    overflowed: bool,
    answered: u64,
}

impl PingRounds {
    /// A ping of `round` went to this (running) learner.
    pub fn sent(&mut self, round: u64) {
        if self.unanswered.len() >= PINGS_UNANSWERED_COUNT_MAX {
            self.overflowed = true;
        }
        if !self.overflowed {
            self.unanswered.push_back(round);
        }
    }

    /// The learner answered a ping: the oldest unanswered one. An answer with none
    /// recorded (never happens with a well-behaved learner) proves nothing.
    pub fn answered(&mut self) {
        if let Some(r) = self.unanswered.pop_front() {
            self.answered = self.answered.max(r);
        }
    }

    /// The newest round this learner is known to have answered.
    pub fn newest_answered(&self) -> u64 {
        if self.overflowed {
            0
        } else {
            self.answered
        }
    }
}

/// A learner overran a bound of [`LearnerSyncs`]: it must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyncOrderError {
    #[error("more than {SYNCS_UNANSWERED_COUNT_MAX} syncs unanswered")]
    TooManySyncs,
    #[error("more than {HELD_COMMITS_COUNT_MAX} commits held behind a sync")]
    TooManyHeld,
}

/// One learner's syncs not yet answered and the commit packets `P` held behind
/// them, so that the learner sees SYNCs and COMMITs in the order it forwarded its
/// requests (see the module header).
#[derive(Debug)]
pub struct LearnerSyncs<P> {
    /// Each unanswered sync's `at` (the last proposal before it), oldest first.
    unanswered: VecDeque<Zxid>,
    /// Commits after the oldest unanswered sync's `at`, in zxid order.
    held: VecDeque<(Zxid, P)>,
}

impl<P> Default for LearnerSyncs<P> {
    fn default() -> Self {
        LearnerSyncs {
            unanswered: VecDeque::new(),
            held: VecDeque::new(),
        }
    }
}

impl<P> LearnerSyncs<P> {
    /// The learner's sync arrived with `at` the last proposed zxid.
    pub fn arrived(&mut self, at: Zxid) -> Result<(), SyncOrderError> {
        if self.unanswered.len() >= SYNCS_UNANSWERED_COUNT_MAX {
            return Err(SyncOrderError::TooManySyncs);
        }
        self.unanswered.push_back(at);
        Ok(())
    }

    /// The commit of `zxid` for this learner: `Some` to send now, `None` held
    /// behind an unanswered sync proposed before it.
    pub fn commit(&mut self, zxid: Zxid, packet: P) -> Result<Option<P>, SyncOrderError> {
        let behind = !self.held.is_empty() || self.unanswered.front().is_some_and(|at| zxid > *at);
        if !behind {
            return Ok(Some(packet));
        }
        if self.held.len() >= HELD_COMMITS_COUNT_MAX {
            return Err(SyncOrderError::TooManyHeld);
        }
        self.held.push_back((zxid, packet));
        Ok(None)
    }

    /// The SYNC of its oldest sync goes out (false: none was unanswered, send no
    /// SYNC); then the held commits due before its next sync's SYNC, in order.
    pub fn answer(&mut self) -> (bool, Vec<P>) {
        if self.unanswered.pop_front().is_none() {
            return (false, Vec::new());
        }
        let mut release = Vec::new();
        while let Some((zxid, _)) = self.held.front() {
            if self.unanswered.front().is_some_and(|at| *zxid > *at) {
                break;
            }
            release.push(self.held.pop_front().expect("front").1);
        }
        (true, release)
    }

    /// Everything held, unordered from now on (the leader is leaving: the
    /// learner's request pipeline goes with its connection).
    pub fn release_all(&mut self) -> Vec<P> {
        self.unanswered.clear();
        self.held.drain(..).map(|(_, p)| p).collect()
    }
}

/// The leader's rounds and the syncs waiting on them.
#[derive(Debug, Default)]
pub struct SyncGate {
    round_sent: u64,
    round_confirmed: u64,
    /// The round sent for waiting syncs, until confirmed.
    in_flight: Option<u64>,
    waiting: VecDeque<GatedSync>,
}

impl SyncGate {
    /// The number of the next ping round (the caller sends it to every learner).
    pub fn next_round(&mut self) -> u64 {
        self.round_sent += 1;
        self.round_sent
    }

    /// The newest round sent (the leader's own answer to it is immediate).
    pub fn round_sent(&self) -> u64 {
        self.round_sent
    }

    /// A sync arrived with `at` the last proposed zxid. True when a round must be
    /// sent for it now ([`SyncGate::round_started`] then).
    pub fn arrive(&mut self, at: Zxid, who: SyncWaiter) -> bool {
        self.waiting.push_back(GatedSync {
            need: self.round_sent + 1,
            at,
            who,
        });
        self.in_flight.is_none()
    }

    /// The round just sent was for the waiting syncs.
    pub fn round_started(&mut self, round: u64) {
        self.in_flight = Some(round);
    }

    /// A quorum answered up to `round`: the syncs it lets through, in arrival order,
    /// and whether a new round must be sent for those still waiting.
    pub fn confirmed(&mut self, round: u64) -> (Vec<GatedSync>, bool) {
        if round <= self.round_confirmed {
            return (Vec::new(), false);
        }
        self.round_confirmed = round;
        let mut through = Vec::new();
        while self.waiting.front().is_some_and(|g| g.need <= round) {
            through.push(self.waiting.pop_front().unwrap());
        }
        if self.in_flight.is_some_and(|r| r <= round) {
            self.in_flight = None;
        }
        let again = self.in_flight.is_none() && !self.waiting.is_empty();
        (through, again)
    }

    /// Syncs waiting for a round (mntr's pending syncs count them too).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The newest round a quorum answered: `answers` are (server, newest round it
/// answered) for the connected learners, the leader included with its newest round
/// sent; `is_quorum` says whether a set of servers is a quorum (of every config).
pub fn quorum_round<F>(answers: &[(u64, u64)], is_quorum: F) -> u64
where
    F: Fn(&[u64]) -> bool,
{
    let mut by_round: Vec<(u64, u64)> = answers.to_vec();
    by_round.sort_by_key(|a| std::cmp::Reverse(a.1));
    let mut ids: Vec<u64> = Vec::with_capacity(by_round.len());
    for (sid, round) in by_round {
        if !ids.contains(&sid) {
            ids.push(sid);
        }
        if is_quorum(&ids) {
            return round;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn majority_of_3(ids: &[u64]) -> bool {
        ids.iter().filter(|i| (1..=3).contains(*i)).count() >= 2
    }

    #[test]
    fn answers_belong_to_the_pings_in_order() {
        let mut p = PingRounds::default();
        p.sent(1);
        p.sent(2);
        p.answered();
        assert_eq!(p.newest_answered(), 1);
        p.answered();
        assert_eq!(p.newest_answered(), 2);
        p.answered();
        assert_eq!(
            p.newest_answered(),
            2,
            "an answer to nothing proves nothing"
        );
    }

    #[test]
    fn a_learner_far_behind_stops_counting() {
        let mut p = PingRounds::default();
        for r in 1..=PINGS_UNANSWERED_COUNT_MAX as u64 + 1 {
            p.sent(r);
        }
        p.answered();
        assert_eq!(p.newest_answered(), 0);
    }

    #[test]
    fn the_quorum_round_is_the_one_a_majority_reached() {
        assert_eq!(quorum_round(&[(3, 9), (1, 4), (2, 7)], majority_of_3), 7);
        assert_eq!(quorum_round(&[(3, 9), (1, 4)], majority_of_3), 4);
        assert_eq!(quorum_round(&[(3, 9)], majority_of_3), 0);
        assert_eq!(
            quorum_round(&[(3, 9), (1, 8), (1, 2)], majority_of_3),
            8,
            "one server counts once"
        );
        assert_eq!(
            quorum_round(&[(3, 9), (4, 9)], majority_of_3),
            0,
            "4 votes not"
        );
    }

    #[test]
    fn commits_after_a_sync_wait_behind_its_sync() {
        let mut l: LearnerSyncs<u64> = LearnerSyncs::default();
        assert_eq!(l.commit(Zxid(3), 3), Ok(Some(3)), "no sync: sent");
        l.arrived(Zxid(5)).unwrap();
        assert_eq!(l.commit(Zxid(5), 5), Ok(Some(5)), "before the sync");
        assert_eq!(l.commit(Zxid(6), 6), Ok(None), "after it: held");
        l.arrived(Zxid(7)).unwrap();
        assert_eq!(l.commit(Zxid(7), 7), Ok(None));
        assert_eq!(l.commit(Zxid(8), 8), Ok(None));
        assert_eq!(l.answer(), (true, vec![6, 7]), "up to the next sync's at");
        assert_eq!(l.answer(), (true, vec![8]));
        assert_eq!(l.answer(), (false, vec![]), "no sync: no SYNC");
        assert_eq!(l.commit(Zxid(9), 9), Ok(Some(9)));
    }

    #[test]
    fn a_learner_holding_too_much_is_refused() {
        let mut l: LearnerSyncs<()> = LearnerSyncs::default();
        l.arrived(Zxid(1)).unwrap();
        for z in 2..2 + HELD_COMMITS_COUNT_MAX as u64 {
            assert_eq!(l.commit(Zxid(z), ()), Ok(None));
        }
        assert_eq!(
            l.commit(Zxid(u64::MAX), ()),
            Err(SyncOrderError::TooManyHeld)
        );
        assert_eq!(l.release_all().len(), HELD_COMMITS_COUNT_MAX);
        assert_eq!(l.answer(), (false, vec![]));
    }

    #[test]
    fn a_sync_waits_for_a_round_sent_after_it() {
        let mut g = SyncGate::default();
        let r1 = g.next_round(); // a periodic ping, before the sync
        assert!(
            g.arrive(Zxid(5), SyncWaiter::Local(1)),
            "a round is sent now"
        );
        let r2 = g.next_round();
        g.round_started(r2);
        assert_eq!(
            g.confirmed(r1),
            (vec![], false),
            "round 1 went out before it"
        );
        // A second sync while round 2 is in flight waits for round 3.
        assert!(!g.arrive(Zxid(6), SyncWaiter::Learner(7)));
        let (through, again) = g.confirmed(r2);
        assert_eq!(through.len(), 1);
        assert_eq!(through[0].who, SyncWaiter::Local(1));
        assert!(again, "the second one needs a round of its own");
        let r3 = g.next_round();
        g.round_started(r3);
        let (through, again) = g.confirmed(r3);
        assert_eq!(through[0].at, Zxid(6));
        assert!(!again);
        assert_eq!(g.waiting(), 0);
    }
}
