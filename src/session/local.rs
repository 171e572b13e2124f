//! Local sessions (`localSessionsEnabled=true`): sessions a member keeps to itself,
//! as the reference's LocalSessionTracker does. Owned by the quorum core
//! (`server::quorum`, on the sequencer core's executor), beside the ensemble's
//! [`super::SessionTable`]; pure logic, no IO, no clock (`mono` ms come in).
//!
//! The rules, from the reference (3.8.0, LearnerSessionTracker,
//! LeaderSessionTracker, QuorumZooKeeperServer.checkUpgradeSession):
//! - a new session on a member with localSessionsEnabled is local: no
//!   createSession txn, the handshake is answered at once (leader and learners);
//! - its reads are served here; its writes go to the leader under its id (a
//!   leader with localSessionsEnabled takes another member's unknown ids);
//! - an ephemeral create (create, create2, or a multi holding one; not a
//!   container or TTL node) needs a global session: with
//!   localSessionsUpgradingEnabled the session is upgraded first (a createSession
//!   for the same id goes ahead of the create; the session is global once that
//!   commits), else the create goes on and its client is answered
//!   EphemeralOnLocalSession (-120) where the leader refused it;
//! - pings touch it here only (learners' PINGs carry global sessions only); it
//!   expires here, with no txn (it cannot own ephemerals); closing it is local;
//! - only this member can resume it (elsewhere the leader does not know it);
//! - every local session ends when the member's role changes.

use crate::proto::{CreateKind, CreateMode, Request};
use rustc_hash::FxHashMap;

/// A local session: its negotiated timeout, when it expires (`mono` ms), and
/// whether its upgrade to a global session is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Local {
    timeout_ms: i32,
    deadline: u64,
    upgrading: bool,
}

/// What a write of a local session needs before it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Nothing: the write goes on under the local id.
    No,
    /// Upgrade first: a createSession with this timeout, then the write.
    First { timeout_ms: i32 },
    /// No upgrade (localSessionsUpgradingEnabled=false): the write goes on, and a
    /// SessionExpired answer to it becomes EphemeralOnLocalSession.
    Refused,
}

/// One member's local sessions.
#[derive(Debug)]
pub struct LocalSessions {
    enabled: bool,
    upgrading_enabled: bool,
    sessions: FxHashMap<i64, Local>,
    /// Of `sessions`, those whose upgrade is under way: the leader tracks them
    /// already, so they are not counted, expired or touched as local ones.
    upgrading_count: usize,
}

impl LocalSessions {
    pub fn new(enabled: bool, upgrading_enabled: bool) -> LocalSessions {
        LocalSessions {
            enabled,
            upgrading_enabled,
            sessions: FxHashMap::default(),
            upgrading_count: 0,
        }
    }

    /// Whether new sessions are local (localSessionsEnabled).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A new local session.
    pub fn open(&mut self, id: i64, timeout_ms: i32, mono: u64) {
        let deadline = mono + timeout_ms.max(0) as u64;
        let local = Local {
            timeout_ms,
            deadline,
            upgrading: false,
        };
        self.sessions.insert(id, local);
    }

    pub fn contains(&self, id: i64) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Local sessions (an upgrading one is the leader's already).
    pub fn count(&self) -> usize {
        self.sessions.len() - self.upgrading_count
    }

    /// A ping or request of session `id`: its deadline moves on. `None` when it
    /// is not local here; `Some(true)` when its upgrade is under way, so the
    /// touch is the leader's business too (as the reference's, whose upgrade
    /// makes the session global at once).
    pub fn touch(&mut self, id: i64, mono: u64) -> Option<bool> {
        let s = self.sessions.get_mut(&id)?;
        s.deadline = mono + s.timeout_ms.max(0) as u64;
        Some(s.upgrading)
    }

    /// The session's timeout, if it is local here.
    pub fn timeout_ms(&self, id: i64) -> Option<i32> {
        self.sessions.get(&id).map(|s| s.timeout_ms)
    }

    /// Closes a local session (its client's closeSession): true if it was one.
    pub fn close(&mut self, id: i64) -> bool {
        self.remove(id)
    }

    fn remove(&mut self, id: i64) -> bool {
        match self.sessions.remove(&id) {
            Some(s) => {
                self.upgrading_count -= usize::from(s.upgrading);
                true
            }
            None => false,
        }
    }

    /// Whether the session's upgrade is under way: the leader tracks it already,
    /// so its close must go there as a global session's does.
    pub fn upgrading(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.upgrading)
    }

    /// The session became global (its createSession committed): no longer local.
    pub fn upgraded(&mut self, id: i64) {
        self.remove(id);
    }

    /// The upgrade could not be sent (no leader link): the session is local
    /// again, and its next ephemeral create asks again.
    pub fn upgrade_failed(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id).filter(|s| s.upgrading) {
            s.upgrading = false;
            self.upgrading_count -= 1;
        }
    }

    /// What write `req` of session `id` needs (see [`Upgrade`]). Asking for an
    /// upgrade marks the session as upgrading, so a second ephemeral create
    /// behind the first does not ask again.
    pub fn before_write(&mut self, id: i64, req: &Request) -> Upgrade {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Upgrade::No;
        };
        if s.upgrading || !creates_ephemeral(req) {
            return Upgrade::No;
        }
        if !self.upgrading_enabled {
            return Upgrade::Refused;
        }
        s.upgrading = true;
        self.upgrading_count += 1;
        Upgrade::First {
            timeout_ms: s.timeout_ms,
        }
    }

    /// Sessions past their deadline, removed: their connections close. An
    /// upgrading session is the leader's to expire.
    pub fn expire(&mut self, mono: u64) -> Vec<i64> {
        let mut gone: Vec<i64> = (self.sessions.iter())
            .filter(|(_, s)| s.deadline <= mono && !s.upgrading)
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for id in &gone {
            self.sessions.remove(id);
        }
        gone
    }

    /// The role changed: every local session ends.
    pub fn clear(&mut self) {
        self.sessions.clear();
        self.upgrading_count = 0;
    }
}

/// Whether `req` creates an ephemeral node: create / create2 with EPHEMERAL or
/// EPHEMERAL_SEQUENTIAL, or a multi with such a create among its ops.
pub fn creates_ephemeral(req: &Request) -> bool {
    match req {
        Request::Create(c) if matches!(c.kind, CreateKind::Create | CreateKind::Create2) => {
            CreateMode::from_flags(c.flags).is_some_and(is_ephemeral)
        }
        Request::Multi(ops) => ops.iter().any(creates_ephemeral),
        _ => false,
    }
}

fn is_ephemeral(mode: CreateMode) -> bool {
    matches!(
        mode,
        CreateMode::Ephemeral | CreateMode::EphemeralSequential
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(mode: CreateMode) -> Request {
        Request::Create(crate::proto::CreateRequest {
            kind: CreateKind::Create2,
            path: "/e".into(),
            data: None,
            acl: Vec::new(),
            flags: mode.flags(),
            ttl: -1,
        })
    }

    #[test]
    fn only_ephemeral_creates_need_a_global_session() {
        assert!(creates_ephemeral(&create(CreateMode::Ephemeral)));
        assert!(creates_ephemeral(&create(CreateMode::EphemeralSequential)));
        assert!(!creates_ephemeral(&create(CreateMode::Persistent)));
        assert!(!creates_ephemeral(&create(CreateMode::Container)));
        let multi = Request::Multi(vec![
            create(CreateMode::Persistent),
            create(CreateMode::Ephemeral),
        ]);
        assert!(creates_ephemeral(&multi));
        assert!(!creates_ephemeral(&Request::Multi(vec![create(
            CreateMode::PersistentSequential
        )])));
    }

    #[test]
    fn an_ephemeral_create_upgrades_once_or_is_refused() {
        let mut on = LocalSessions::new(true, true);
        on.open(7, 4000, 0);
        let e = create(CreateMode::Ephemeral);
        assert_eq!(on.before_write(8, &e), Upgrade::No, "not local here");
        assert_eq!(
            on.before_write(7, &create(CreateMode::Persistent)),
            Upgrade::No
        );
        assert!(!on.upgrading(7));
        assert_eq!(on.before_write(7, &e), Upgrade::First { timeout_ms: 4000 });
        assert!(on.upgrading(7));
        assert_eq!(on.before_write(7, &e), Upgrade::No, "already upgrading");
        // Upgrading: the leader's to count, touch and expire.
        assert_eq!(on.count(), 0);
        assert_eq!(on.touch(7, 10), Some(true));
        assert_eq!(on.expire(u64::MAX), Vec::<i64>::new());
        // A failed send: local again, asks again.
        on.upgrade_failed(7);
        assert_eq!((on.count(), on.touch(7, 10)), (1, Some(false)));
        assert_eq!(on.before_write(7, &e), Upgrade::First { timeout_ms: 4000 });
        on.upgraded(7);
        assert!(!on.contains(7));
        assert_eq!(on.count(), 0);

        let mut off = LocalSessions::new(true, false);
        off.open(7, 4000, 0);
        assert_eq!(off.before_write(7, &e), Upgrade::Refused);
        assert_eq!(off.before_write(7, &e), Upgrade::Refused, "every time");
    }

    #[test]
    fn local_sessions_expire_unless_touched_and_end_with_the_role() {
        let mut l = LocalSessions::new(true, true);
        l.open(1, 1000, 0);
        l.open(2, 1000, 0);
        assert_eq!(l.touch(2, 900), Some(false));
        assert_eq!(l.touch(3, 900), None);
        assert_eq!(l.expire(999), Vec::<i64>::new());
        assert_eq!(l.expire(1000), vec![1]);
        assert_eq!(l.count(), 1);
        assert_eq!(l.timeout_ms(2), Some(1000));
        assert!(l.close(2));
        assert!(!l.close(2));
        l.open(4, 1000, 0);
        l.clear();
        assert_eq!(l.count(), 0);
    }
}
