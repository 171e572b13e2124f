//! Read-only mode (`readonlymode.enabled`): what an ensemble member that has lost
//! its quorum serves, as the reference's ReadOnlyZooKeeperServer does. Owns the
//! mode's clock and its local sessions; pure logic, no IO. The quorum core
//! (`server::quorum`, on the sequencer core's executor) feeds it role changes,
//! handshakes, pings and time, and carries out what it decides.
//!
//! The rules, from the reference (3.8.0):
//! - the mode starts once the member has looked for a leader for
//!   max(2 s, tickTime) (`QuorumPeer`'s grace period), and ends with the looking
//!   (every connection closes then, and the member serves as its role says);
//! - only clients that ask for read-only sessions are taken: a handshake without
//!   the flag (or from a client too old to send it) is refused by closing it;
//! - a new session is local to this member (its id from this member's id space),
//!   and expires here when its client falls silent for its timeout;
//! - a session of the ensemble (global) cannot be resumed here (closed); a local
//!   one can, on any connection to this member; an unknown one is expired;
//! - reads are served from the last committed tree; every write, `check` and
//!   `sync` is answered NOTREADONLY, and closing a local session is allowed.
//!
//! One difference: the reference 3.8.0 grants read-only sessions only with
//! `localSessionsEnabled=true` (otherwise its answer to a new read-only session is
//! a bare NOTREADONLY header that clients cannot parse); corral grants them in
//! either case, as the mode is documented to.

use crate::proto::Request;
use rustc_hash::FxHashMap;

/// The reference's least wait between starting to look and serving read-only.
pub const GRACE_MS_MIN: u64 = 2_000;

/// A read-only session: its negotiated timeout and when it expires (`mono` ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Local {
    timeout_ms: i32,
    deadline: u64,
}

/// The mode's state on one member.
#[derive(Debug)]
pub struct ReadOnly {
    enabled: bool,
    grace_ms: u64,
    /// When the member began to look (`mono` ms); `None` while it has a role.
    looking_since: Option<u64>,
    active: bool,
    sessions: FxHashMap<i64, Local>,
}

/// What the mode says about a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Close the connection unanswered; the text says why (logged).
    Refuse(&'static str),
    /// Answer "session expired" (unknown session, or wrong password).
    Expired,
    /// A new local session: allocate an id and call [`ReadOnly::open`].
    Open,
    /// A local session resumed (touched): answer it as read-only.
    Resumed { timeout_ms: i32 },
}

/// What happened to the mode on a change of role or a timer check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The mode began: the member now takes read-only sessions.
    pub started: bool,
    /// The mode ended: close every client connection.
    pub ended: bool,
    /// Local sessions past their deadline: close their connections.
    pub expired: Vec<i64>,
}

impl ReadOnly {
    pub fn new(enabled: bool, tick_time_ms: u64) -> ReadOnly {
        ReadOnly {
            enabled,
            grace_ms: tick_time_ms.max(GRACE_MS_MIN),
            looking_since: None,
            active: false,
            sessions: FxHashMap::default(),
        }
    }

    /// Serving read-only sessions now.
    pub fn active(&self) -> bool {
        self.active
    }

    /// The member's role changed: `looking` while it has no leader.
    pub fn on_role(&mut self, looking: bool, mono: u64) -> Change {
        let mut change = Change::default();
        if looking {
            self.looking_since.get_or_insert(mono);
            return change;
        }
        self.looking_since = None;
        if std::mem::take(&mut self.active) {
            self.sessions.clear();
            change.ended = true;
        }
        change
    }

    /// Time passed: the mode starts after the grace period; local sessions expire.
    pub fn on_timer(&mut self, mono: u64) -> Change {
        let mut change = Change::default();
        if !self.enabled {
            return change;
        }
        if !self.active {
            if let Some(since) = self.looking_since {
                if mono.saturating_sub(since) >= self.grace_ms {
                    self.active = true;
                    change.started = true;
                }
            }
            return change;
        }
        self.sessions.retain(|id, s| {
            let live = s.deadline > mono;
            if !live {
                change.expired.push(*id);
            }
            live
        });
        change.expired.sort_unstable();
        change
    }

    /// A handshake while the mode is active: `read_only` as the client sent it
    /// (`None`: no flag), `global` whether the ensemble knows the session,
    /// `password_ok` whether its password matches the id.
    pub fn handshake(
        &mut self,
        read_only: Option<bool>,
        session_id: i64,
        global: bool,
        password_ok: bool,
        timeout_ms: i32,
        mono: u64,
    ) -> Handshake {
        debug_assert!(self.active, "a read-only handshake while the mode is off");
        if read_only != Some(true) {
            return Handshake::Refuse("refusing session request for not-read-only client");
        }
        if session_id == 0 {
            return Handshake::Open;
        }
        if global {
            return Handshake::Refuse("refusing global session reconnection in read-only mode");
        }
        if !password_ok {
            return Handshake::Expired;
        }
        match self.sessions.get_mut(&session_id) {
            Some(s) => {
                s.timeout_ms = timeout_ms;
                s.deadline = mono + timeout_ms.max(0) as u64;
                Handshake::Resumed { timeout_ms }
            }
            None => Handshake::Expired,
        }
    }

    /// A new local session with id `id` (after [`Handshake::Open`]).
    pub fn open(&mut self, id: i64, timeout_ms: i32, mono: u64) {
        let deadline = mono + timeout_ms.max(0) as u64;
        self.sessions.insert(
            id,
            Local {
                timeout_ms,
                deadline,
            },
        );
    }

    /// Local sessions live now (counted against maxSessions with the others).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A session showed activity; false when it is not a local one.
    pub fn touch(&mut self, id: i64, mono: u64) -> bool {
        match self.sessions.get_mut(&id) {
            Some(s) => {
                s.deadline = mono + s.timeout_ms.max(0) as u64;
                true
            }
            None => false,
        }
    }

    /// Its client closed a local session; false when it is not one.
    pub fn close(&mut self, id: i64) -> bool {
        self.sessions.remove(&id).is_some()
    }

    /// Whether the mode answers this request NOTREADONLY (the reference's
    /// ReadOnlyRequestProcessor: every change, `check`, `sync`, `reconfig`).
    /// That is every request the shards hand the sequencer but closeSession.
    pub fn refuses(req: &Request) -> bool {
        match req {
            Request::CloseSession => false,
            Request::Check { .. } => true,
            other => other.is_write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 200;

    /// Enabled, looking since 0 and past the grace period.
    fn started() -> ReadOnly {
        let mut ro = ReadOnly::new(true, TICK);
        ro.on_role(true, 0);
        assert!(ro.on_timer(GRACE_MS_MIN).started);
        ro
    }

    #[test]
    fn starts_after_the_grace_period_of_looking_only() {
        let mut ro = ReadOnly::new(true, TICK);
        assert_eq!(ro.on_timer(10_000), Change::default(), "not looking");
        ro.on_role(true, 1_000);
        assert!(!ro.on_timer(2_999).started);
        // A second look while looking does not restart the clock.
        ro.on_role(true, 2_500);
        assert!(ro.on_timer(3_000).started);
        assert!(ro.active());
        assert!(!ro.on_timer(3_001).started, "starts once");
    }

    #[test]
    fn the_grace_period_is_a_tick_when_ticks_are_long() {
        let mut ro = ReadOnly::new(true, 5_000);
        ro.on_role(true, 0);
        assert!(!ro.on_timer(4_999).started);
        assert!(ro.on_timer(5_000).started);
    }

    #[test]
    fn never_starts_when_disabled_or_when_a_leader_is_found_in_time() {
        let mut off = ReadOnly::new(false, TICK);
        off.on_role(true, 0);
        assert!(!off.on_timer(1_000_000).started);
        assert!(!off.active(), "its handshakes stay the role's");
        let mut ro = ReadOnly::new(true, TICK);
        ro.on_role(true, 0);
        assert_eq!(ro.on_role(false, 1_000), Change::default());
        assert!(!ro.on_timer(10_000).started);
    }

    #[test]
    fn ends_with_the_looking_and_forgets_its_sessions() {
        let mut ro = started();
        ro.open(7, 4_000, 2_000);
        let change = ro.on_role(false, 2_500);
        assert!(change.ended);
        assert!(!ro.active());
        assert_eq!(ro.session_count(), 0);
        // Looking again: a new grace period from then.
        ro.on_role(true, 10_000);
        assert!(!ro.on_timer(11_000).started);
        assert!(ro.on_timer(12_000).started);
    }

    #[test]
    fn handshakes_as_the_reference() {
        let mut ro = started();
        let hs = |ro: &mut ReadOnly, flag, id, global, pw| {
            ro.handshake(flag, id, global, pw, 3_000, 2_000)
        };
        assert!(matches!(
            hs(&mut ro, Some(false), 0, false, true),
            Handshake::Refuse(_)
        ));
        assert!(matches!(
            hs(&mut ro, None, 0, false, true),
            Handshake::Refuse(_)
        ));
        assert_eq!(hs(&mut ro, Some(true), 0, false, true), Handshake::Open);
        assert!(matches!(
            hs(&mut ro, Some(true), 5, true, true),
            Handshake::Refuse(_)
        ));
        assert_eq!(hs(&mut ro, Some(true), 5, false, true), Handshake::Expired);
        ro.open(5, 4_000, 2_000);
        assert_eq!(hs(&mut ro, Some(true), 5, false, false), Handshake::Expired);
        assert_eq!(
            hs(&mut ro, Some(true), 5, false, true),
            Handshake::Resumed { timeout_ms: 3_000 }
        );
    }

    #[test]
    fn local_sessions_expire_unless_touched_and_can_be_closed() {
        let mut ro = started();
        ro.open(1, 1_000, 2_000);
        ro.open(2, 1_000, 2_000);
        ro.open(3, 1_000, 2_000);
        assert!(ro.touch(2, 2_900));
        assert!(!ro.touch(9, 2_900), "not local");
        assert!(ro.close(3));
        assert!(!ro.close(3));
        assert_eq!(ro.on_timer(3_000).expired, vec![1]);
        assert_eq!(ro.on_timer(3_899).expired, Vec::<i64>::new());
        assert_eq!(ro.on_timer(3_900).expired, vec![2]);
        assert_eq!(ro.session_count(), 0);
    }

    #[test]
    fn refuses_changes_check_and_sync_but_not_reads_or_close() {
        let refused = [
            Request::create_open("/a", b""),
            Request::Delete {
                path: "/a".into(),
                version: -1,
            },
            Request::SetData {
                path: "/a".into(),
                data: None,
                version: -1,
            },
            Request::Sync { path: "/a".into() },
            Request::Check {
                path: "/a".into(),
                version: 0,
            },
            Request::Multi(vec![]),
        ];
        for r in &refused {
            assert!(ReadOnly::refuses(r), "{r:?}");
        }
        let taken = [
            Request::CloseSession,
            Request::GetData {
                path: "/a".into(),
                watch: false,
            },
            Request::MultiRead(vec![]),
            Request::Ping,
        ];
        for r in &taken {
            assert!(!ReadOnly::refuses(r), "{r:?}");
        }
    }
}
