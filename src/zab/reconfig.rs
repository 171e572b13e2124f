//! Dynamic membership, as ZooKeeper 3.8 keeps it (PEER-PROTOCOL §2 "Config
//! versions", §4.1, §5.6, §11): a committed configuration and a last-seen
//! (proposed) one, the quorum rule while a reconfig is pending (every decision
//! needs a quorum of both), and the two ways a config changes hands:
//!
//! ```text
//!  set_last_seen  a reconfig proposed (leader), its PROPOSAL seen (learner), a
//!                 leader's NEWLEADER config, the version bump of a new leader
//!                 → Write::LastSeenConfig, Event::ConfigProposed
//!  activate       the reconfig committed (COMMITANDACTIVATE / INFORMANDACTIVATE /
//!                 the leader's own commit), NEWLEADER's config at establishment /
//!                 UPTODATE, a higher version gossiped to a LOOKING server
//!                 → Write::CommittedConfig, Event::ConfigActivated; says whether
//!                 the members changed and whether our own role did
//! ```
//!
//! Part of the replica (sequencer core); pure. Everything here is a no-op with
//! reconfig disabled, as in the reference (`setLastSeenQuorumVerifier`,
//! `processReconfig`): the config then stays what zoo.cfg says, version 0.

use std::sync::Arc;

use super::membership::Membership;
use super::replica::Replica;
use super::types::{Event, ServerId, Write};

/// What activating a config changed (`processReconfig`'s view).
#[derive(Debug)]
pub(super) struct Activation {
    /// The committed config before.
    pub prev: Arc<Membership>,
    /// The members differ (not merely the version).
    pub changed: bool,
    /// Our own role changed: observer ↔ participant (a server the config does not
    /// name participates without a vote).
    pub role_changed: bool,
}

impl Replica {
    /// The proposed config while a reconfig is pending (its version is above the
    /// committed one's).
    pub(super) fn pending_config(&self) -> Option<&Arc<Membership>> {
        (self.last_seen.version() > self.conf.version()).then_some(&self.last_seen)
    }

    /// A quorum of the committed config, and of the pending one if there is one
    /// (the reference's `SyncedLearnerTracker` over both verifiers).
    pub(super) fn quorum_in_all<'a, I>(&self, ids: I) -> bool
    where
        I: IntoIterator<Item = &'a ServerId> + Clone,
    {
        self.conf.contains_quorum(ids.clone())
            && self.pending_config().is_none_or(|n| n.contains_quorum(ids))
    }

    /// `validVoter`: a voter of the committed or the last-seen config.
    pub(super) fn is_current_or_next_voter(&self, sid: ServerId) -> bool {
        self.conf.is_voter(sid) || self.last_seen.is_voter(sid)
    }

    /// `getCurrentAndNextConfigVoters`, ascending.
    pub(super) fn current_and_next_voters(&self) -> Vec<ServerId> {
        let mut v: Vec<ServerId> = self.conf.voters().chain(self.last_seen.voters()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// `setLastSeenQuorumVerifier(qv, true)`: the same version changes nothing; any
    /// other replaces the last-seen config (an older one too: a leader's NEWLEADER
    /// overrides a proposal that never committed).
    pub(super) fn set_last_seen(&mut self, m: Arc<Membership>) {
        if !self.cfg.reconfig_enabled || self.last_seen.version() == m.version() {
            return;
        }
        if m.version() < self.last_seen.version() {
            tracing::warn!(
                id = self.cfg.id,
                "replacing last-seen config {:x} by an older one, {:x}",
                self.last_seen.version(),
                m.version()
            );
        }
        tracing::info!(
            id = self.cfg.id,
            "config version {:x} proposed: voters {:?}, observers {:?}",
            m.version(),
            m.voters().collect::<Vec<_>>(),
            m.observers().collect::<Vec<_>>()
        );
        self.last_seen = m.clone();
        self.write(Write::LastSeenConfig(m.clone()));
        self.event(Event::ConfigProposed(m));
    }

    /// `processReconfig`'s `setQuorumVerifier(qv, true)`: a config of a higher
    /// version becomes the committed one (and the last-seen one, unless a newer
    /// proposal is pending). `None` when nothing changed (reconfig disabled, or a
    /// version already known).
    pub(super) fn activate(&mut self, m: Arc<Membership>) -> Option<Activation> {
        if !self.cfg.reconfig_enabled || m.version() <= self.conf.version() {
            return None;
        }
        let prev = std::mem::replace(&mut self.conf, m.clone());
        if m.version() >= self.last_seen.version() {
            self.last_seen = m.clone();
        }
        let me = self.cfg.id;
        let changed = !prev.same_config(&m);
        let role_changed = prev.is_observer(me) != m.is_observer(me);
        tracing::info!(
            id = me,
            "config version {:x} activated: voters {:?}, observers {:?}{}",
            m.version(),
            m.voters().collect::<Vec<_>>(),
            m.observers().collect::<Vec<_>>(),
            if role_changed {
                " (our role changed)"
            } else {
                ""
            }
        );
        self.write(Write::CommittedConfig(m.clone()));
        self.event(Event::ConfigActivated(m));
        Some(Activation {
            prev,
            changed,
            role_changed,
        })
    }

    /// Without a designated leader (`processReconfig(qv, null, …)`): the leader we
    /// follow changed if it is no voter of either config, or its quorum address
    /// moved.
    pub(super) fn leader_moved(prev: &Membership, new: &Membership, leader: ServerId) -> bool {
        if !prev.is_voter(leader) || !new.is_voter(leader) {
            return true;
        }
        prev.quorum_addr(leader) != new.quorum_addr(leader)
    }
}
