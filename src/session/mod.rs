//! The session table: which sessions exist, their negotiated timeouts, passwords and
//! expiry deadlines. Owned by the sequencer core (the only writer of session state);
//! shard cores learn about sessions through connect replies and commit batches.
//!
//! No IO and no clock: `now_ms` is always an argument. Expiry is bucketed on tick
//! boundaries as in the reference's ExpiryQueue, so a tick only looks at the sessions
//! whose bucket has come due.
//!
//! Time the owner itself lost does not count against a session ([`SessionTable::catch_up`]).
//! If the process was paused (SIGSTOP, a frozen VM) or the owning core was held (a
//! stalled inline fsync), the clients' pings waited unread in their sockets; the
//! reference expires every such session at its next check, corral moves the
//! deadlines later by the time lost and reads the pings.

pub mod local;

use std::collections::{BTreeMap, HashMap, HashSet};

/// The reference's `superSecret`: a session's password is
/// `new java.util.Random(sessionId ^ superSecret).nextBytes(16)`, so any member of an
/// ensemble (corral or ZooKeeper) can check the password of a session that moves to it.
const SUPER_SECRET: i64 = 0xB341_5C00;

/// `java.util.Random`'s 48-bit linear congruential generator, as far as
/// `nextBytes` needs it.
struct JavaRandom(u64);

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> JavaRandom {
        JavaRandom((seed as u64 ^ Self::MULTIPLIER) & Self::MASK)
    }

    fn next_int(&mut self) -> i32 {
        self.0 = (self.0.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.0 >> 16) as i32
    }

    /// Four bytes per `nextInt`, low byte first.
    fn next_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(4) {
            let mut rnd = self.next_int();
            for b in chunk {
                *b = rnd as u8;
                rnd >>= 8;
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub timeout_ms: i32,
    /// The tick-rounded time at which the session expires unless touched.
    pub expires_at_ms: i64,
    /// Set once a close (client request or expiry) is under way.
    pub closing: bool,
}

#[derive(Debug)]
pub struct SessionTable {
    sessions: HashMap<i64, Session>,
    buckets: BTreeMap<i64, HashSet<i64>>,
    tick_ms: i64,
    next_id: i64,
    /// When the owner last checked for expiry ([`SessionTable::catch_up`]), or
    /// before its first check, when it first added, touched or reopened a session.
    last_ran_ms: Option<i64>,
}

impl SessionTable {
    /// `server_id` goes into the top byte of every session id, and the start time into
    /// the middle bits, as the reference does, so ids do not repeat across restarts.
    pub fn new(server_id: u8, now_ms: i64, tick_ms: u32) -> SessionTable {
        let next_id = (((now_ms << 24) as u64) >> 8) as i64 | ((server_id as i64) << 56);
        SessionTable {
            sessions: HashMap::new(),
            buckets: BTreeMap::new(),
            tick_ms: tick_ms.max(1) as i64,
            next_id,
            last_ran_ms: None,
        }
    }

    /// Decides the id of the next session (the sequencer puts it into the txn).
    pub fn allocate_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Makes sure ids allocated later do not collide with a recovered one.
    pub fn observe_id(&mut self, id: i64) {
        if id >= self.next_id && (id >> 56) == (self.next_id >> 56) {
            self.next_id = id + 1;
        }
    }

    pub fn password(id: i64) -> [u8; 16] {
        let mut p = [0u8; 16];
        JavaRandom::new(id ^ SUPER_SECRET).next_bytes(&mut p);
        p
    }

    pub fn check_password(&self, id: i64, passwd: &[u8]) -> bool {
        self.sessions.contains_key(&id) && passwd == Self::password(id)
    }

    fn round_up(&self, t: i64) -> i64 {
        (t / self.tick_ms + 1) * self.tick_ms
    }

    /// Adds a session (when its create-session txn is applied).
    pub fn add(&mut self, id: i64, timeout_ms: i32, now_ms: i64) {
        self.ran(now_ms);
        self.observe_id(id);
        let expires_at_ms = self.round_up(now_ms + timeout_ms as i64);
        self.buckets.entry(expires_at_ms).or_default().insert(id);
        self.sessions.insert(
            id,
            Session {
                id,
                timeout_ms,
                expires_at_ms,
                closing: false,
            },
        );
    }

    pub fn remove(&mut self, id: i64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        self.unbucket(id, s.expires_at_ms);
        Some(s)
    }

    fn unbucket(&mut self, id: i64, at: i64) {
        if let Some(b) = self.buckets.get_mut(&at) {
            b.remove(&id);
            if b.is_empty() {
                self.buckets.remove(&at);
            }
        }
    }

    /// Extends a live session's deadline. False for an unknown or closing session.
    pub fn touch(&mut self, id: i64, now_ms: i64) -> bool {
        self.ran(now_ms);
        let Some(s) = self.sessions.get(&id) else {
            return false;
        };
        if s.closing {
            return false;
        }
        let (old, new) = (s.expires_at_ms, self.round_up(now_ms + s.timeout_ms as i64));
        if new > old {
            self.unbucket(id, old);
            self.buckets.entry(new).or_default().insert(id);
            self.sessions.get_mut(&id).unwrap().expires_at_ms = new;
        }
        true
    }

    /// Marks a session closing; false if unknown or already closing.
    pub fn set_closing(&mut self, id: i64) -> bool {
        match self.sessions.get_mut(&id) {
            Some(s) if !s.closing => {
                s.closing = true;
                true
            }
            _ => false,
        }
    }

    /// Undoes `set_closing` / `expire` when the close could not be made durable:
    /// the session lives on with a fresh deadline.
    pub fn reopen(&mut self, id: i64, now_ms: i64) {
        self.ran(now_ms);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.closing = false;
        let (old, timeout) = (s.expires_at_ms, s.timeout_ms);
        let new = self.round_up(now_ms + timeout as i64);
        self.unbucket(id, old);
        self.buckets.entry(new).or_default().insert(id);
        self.sessions.get_mut(&id).unwrap().expires_at_ms = new;
    }

    /// The owner ran at `now_ms`: counts only before its first expiry check (a
    /// pause before that one). After it, only the checks count: whatever the owner
    /// does first on waking from a pause (reading the touches that waited) must not
    /// hide the pause from the check that follows.
    fn ran(&mut self, now_ms: i64) {
        self.last_ran_ms.get_or_insert(now_ms);
    }

    /// Called by the owner before each expiry check (it checks every half tickTime).
    /// If more than a tickTime has passed since its previous check (or, before the
    /// first, its first add, touch or reopen), the owner did not run for that long:
    /// the process was paused or its core held, so no client could be heard
    /// meanwhile. Every deadline then moves later by the time lost beyond one
    /// tickTime, rounded up to a tick, so each session keeps the time it had left,
    /// and the pings waiting in its socket are read before it can expire. Returns
    /// the milliseconds the deadlines moved (0: no pause).
    pub fn catch_up(&mut self, now_ms: i64) -> i64 {
        let last = self.last_ran_ms.replace(now_ms);
        let lost = last.map_or(0, |l| now_ms - l - self.tick_ms);
        if lost <= 0 {
            return 0;
        }
        let shift = (lost + self.tick_ms - 1) / self.tick_ms * self.tick_ms;
        let buckets = std::mem::take(&mut self.buckets);
        self.buckets = buckets
            .into_iter()
            .map(|(t, ids)| (t + shift, ids))
            .collect();
        for s in self.sessions.values_mut() {
            s.expires_at_ms += shift;
        }
        shift
    }

    /// The owner stops checking for expiry (a leader that steps down): the next
    /// [`SessionTable::catch_up`] starts afresh instead of counting the gap as lost.
    pub fn stop_checking(&mut self) {
        self.last_ran_ms = None;
    }

    /// Undoes `expire` for a session whose touches may still be on their way (an
    /// ensemble member that has not answered the leader's pings): it is due again
    /// at the next tick, unless a touch comes first.
    pub fn defer(&mut self, id: i64, now_ms: i64) {
        let next = self.round_up(now_ms);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.closing = false;
        let old = std::mem::replace(&mut s.expires_at_ms, next);
        self.unbucket(id, old);
        self.buckets.entry(next).or_default().insert(id);
    }

    /// Sessions whose deadline has passed, marked closing, in id order. The caller
    /// turns each into a close-session txn.
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let due: Vec<i64> = self.buckets.range(..=now_ms).map(|(&t, _)| t).collect();
        for t in due {
            for id in self.buckets.remove(&t).unwrap_or_default() {
                if let Some(s) = self.sessions.get_mut(&id) {
                    if !s.closing {
                        s.closing = true;
                        out.push(id);
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn is_live(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }
}

/// Clamps a requested timeout to the configured bounds, as the reference does.
pub fn negotiate_timeout(requested_ms: i32, min_ms: u32, max_ms: u32) -> i32 {
    requested_ms.clamp(min_ms as i32, max_ms as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_server_id_and_increase() {
        let mut t = SessionTable::new(1, 1_700_000_000_000, 2000);
        let a = t.allocate_id();
        let b = t.allocate_id();
        assert_eq!(a >> 56, 1);
        assert_eq!(b, a + 1);
    }

    #[test]
    fn expiry_is_bucketed_and_touch_extends() {
        let mut t = SessionTable::new(0, 0, 1000);
        t.add(7, 4000, 0);
        t.add(8, 4000, 0);
        assert_eq!(t.get(7).unwrap().expires_at_ms, 5000);
        assert!(t.expire(4999).is_empty());
        assert!(t.touch(7, 3000)); // now due at 8000
        assert_eq!(t.expire(5000), vec![8]);
        assert!(!t.touch(8, 5000), "a closing session cannot be revived");
        assert!(t.expire(7999).is_empty());
        assert_eq!(t.expire(8000), vec![7]);
        t.remove(7);
        t.remove(8);
        assert!(t.is_empty());
    }

    #[test]
    fn time_the_owner_lost_moves_every_deadline() {
        let mut t = SessionTable::new(0, 0, 1000);
        t.add(7, 4000, 0); // due at 5000
        t.add(8, 2000, 0); // due at 3000
        assert_eq!(t.catch_up(500), 0, "half a tick after the adds");
        assert_eq!(t.catch_up(1000), 0, "half a tick later");
        assert_eq!(t.catch_up(2000), 0, "a whole tick later is no pause");
        // Nothing ran for 5.3 s: 4.3 s beyond a tick lost, 5 ticks.
        assert_eq!(t.catch_up(7300), 5000);
        assert_eq!(t.get(7).unwrap().expires_at_ms, 10_000);
        assert_eq!(t.get(8).unwrap().expires_at_ms, 8000);
        assert!(
            t.expire(7300).is_empty(),
            "no session expires for the pause"
        );
        assert!(t.touch(8, 7300), "its buffered ping is read");
        assert_eq!(t.get(8).unwrap().expires_at_ms, 10_000);
        assert_eq!(t.catch_up(7800), 0);
        assert_eq!(
            t.expire(10_000),
            vec![7, 8],
            "silent from then on: due as moved"
        );
    }

    #[test]
    fn a_pause_before_the_first_check_counts_from_the_last_add() {
        let mut t = SessionTable::new(0, 0, 1000);
        t.add(7, 2000, 100); // due at 3000
        t.touch(7, 200);
        assert_eq!(t.catch_up(6500), 6000, "5.4 s lost beyond a tick");
        assert!(t.expire(6500).is_empty());
        // Woken from the next pause, the owner reads a waiting touch first.
        assert!(t.touch(7, 12_000));
        assert_eq!(
            t.catch_up(12_000),
            5000,
            "the touch does not hide the pause"
        );
    }

    #[test]
    fn a_deferred_session_is_due_next_tick_unless_touched() {
        let mut t = SessionTable::new(0, 0, 1000);
        t.add(7, 2000, 0); // due at 3000
        t.add(8, 2000, 0);
        assert_eq!(t.expire(3000), vec![7, 8]);
        t.defer(7, 3000);
        t.defer(8, 3000);
        assert_eq!(t.get(7).unwrap().expires_at_ms, 4000);
        assert!(t.touch(7, 3500), "a deferred session takes touches");
        assert_eq!(t.expire(4000), vec![8]);
        assert_eq!(t.expire(6000), vec![7]);
    }

    #[test]
    fn a_new_owner_counts_no_pause() {
        let mut t = SessionTable::new(0, 0, 1000);
        t.add(7, 4000, 0);
        assert_eq!(t.catch_up(500), 0);
        t.stop_checking();
        assert_eq!(t.catch_up(60_000), 0, "checks resumed, not a pause");
        assert_eq!(t.expire(60_000), vec![7]);
    }

    #[test]
    fn passwords_are_the_references() {
        // PEER-PROTOCOL §7.5, checked against Java 17's Random.
        let p = SessionTable::password(0x0100_0014_ff34_0000);
        let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "6eebb4ea63438ab4fc6eaeb8e4f1edc7");
    }

    #[test]
    fn passwords_are_stable_and_checked() {
        let mut t = SessionTable::new(0, 0, 1000);
        t.add(42, 4000, 0);
        let p = SessionTable::password(42);
        assert!(t.check_password(42, &p));
        assert!(!t.check_password(42, &[0; 16]));
        assert!(!t.check_password(43, &SessionTable::password(43)));
    }

    #[test]
    fn timeout_is_clamped() {
        assert_eq!(negotiate_timeout(100, 4000, 40000), 4000);
        assert_eq!(negotiate_timeout(100_000, 4000, 40000), 40000);
        assert_eq!(negotiate_timeout(10_000, 4000, 40000), 10_000);
    }
}
