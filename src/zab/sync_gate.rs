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
//! A commit proves the same: the ACKs of a proposal made after a sync arrived come
//! from a quorum that followed this leader after it arrived. So the commit of any
//! proposal after a sync's `at` lets that sync through ([`SyncGate::proven_by_commit`]),
//! and the leader answers it right before sending that COMMIT. This is not only
//! quicker, ZooKeeper's learners need it: one queue (`CommitProcessor` with
//! `matchSyncs`) matches the SYNCs and the COMMITs of their own forwarded writes,
//! in the order they forwarded them; a COMMIT whose write is not its head is taken
//! for another server's write, the local request never gets its answer, and every
//! later local write of that learner is mismatched the same way (clients hang or
//! get another request's answer: the mixed disk-full faults run, where a ZooKeeper
//! follower forwarded sync, sync, setData and got SYNC, COMMIT(setData), SYNC). The
//! reference's leader sends SYNC right after the COMMIT of the sync's `at`, before
//! any later COMMIT, and so does this one.

use std::collections::VecDeque;

use super::types::{ConnId, Zxid};

/// Pings a learner may leave unanswered before its answers stop being counted
/// (it is far behind; it will also be dropped for silence after syncLimit).
pub const PINGS_UNANSWERED_COUNT_MAX: usize = 4096;

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

    /// Proposal `zxid` committed: the syncs that arrived before it was proposed
    /// (`at < zxid`), in arrival order; its ACK quorum followed us after they came.
    pub fn proven_by_commit(&mut self, zxid: Zxid) -> Vec<GatedSync> {
        let mut through = Vec::new();
        while self.waiting.front().is_some_and(|g| g.at < zxid) {
            through.push(self.waiting.pop_front().expect("front"));
        }
        through
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

    #[test]
    fn a_commit_after_a_sync_lets_it_through() {
        let mut g = SyncGate::default();
        assert!(g.arrive(Zxid(5), SyncWaiter::Local(1)));
        let r = g.next_round();
        g.round_started(r);
        assert!(!g.arrive(Zxid(6), SyncWaiter::Learner(7)));
        assert_eq!(g.proven_by_commit(Zxid(5)), vec![], "proposed before it");
        let through = g.proven_by_commit(Zxid(6));
        assert_eq!(through.len(), 1);
        assert_eq!(through[0].who, SyncWaiter::Local(1));
        assert_eq!(g.proven_by_commit(Zxid(7)).len(), 1);
        assert_eq!(g.confirmed(r), (vec![], false), "nothing left to send");
    }
}
