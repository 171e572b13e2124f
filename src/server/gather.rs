//! Group commit's one decision: with no sync out and txns appended but not yet
//! durable, sync now, or wait a little for the writes that are on their way. Pure
//! logic (durations come in as arguments); the standalone sequencer core owns one
//! [`Gather`] and asks it before each sync.
//!
//! Why wait at all: a sync started by the first write that arrives after the
//! previous sync's replies went out leaves the other clients' next writes to
//! queue behind it. Under a closed-loop load the batches then alternate between a
//! few writes and the rest (measured: 64 writes outstanding, fdatasync ≈ 1 ms,
//! 30 writes per sync on average), and each write waits for about two syncs.
//! Waiting until the writers of the last cycle are back puts them all in one sync.
//!
//! ```text
//!   sync done ─► replies out ─► writes come back one by one ─┬─ unsynced ≥ target ─► sync
//!                                                            └─ waited ≥ budget ───► sync
//!   target = the last sync's batch + the messages that queued up while it ran: the
//!            writers of one whole cycle (alternating batches k, n − k count n; one
//!            gathered batch n and nothing behind it counts n)
//!   budget = min(wait_max, ½ × smoothed sync time): a client that stopped writing
//!            costs at most that, once, before the target shrinks
//! ```
//!
//! A lone client (batches of one) never waits: its target is one write. With
//! `forceSync=no` syncs cost nothing, so the budget is zero.

use std::time::Duration;

/// How much the smoothed sync time moves towards each new sample (1/8).
const SYNC_SMOOTHING_SHIFT: u32 = 3;

pub struct Gather {
    /// Txns in the last sync, plus the messages queued behind it when it ended.
    target: u64,
    /// Smoothed sync time, µs.
    sync_us: u64,
    wait_max: Duration,
}

/// What to do with the txns waiting unsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    SyncNow,
    /// Wait at most this much longer for more writes.
    Wait(Duration),
}

impl Gather {
    /// `wait_max`: the longest a write ever waits for others (zero: never).
    pub fn new(wait_max: Duration) -> Self {
        Gather {
            target: 0,
            sync_us: 0,
            wait_max,
        }
    }

    /// `unsynced`: txns appended since the durable point; `waited`: since the
    /// first of them was appended.
    pub fn decide(&self, unsynced: u64, waited: Duration) -> Decision {
        let target = self.target;
        let budget = self.wait_max.min(Duration::from_micros(self.sync_us / 2));
        if unsynced >= target || waited >= budget {
            Decision::SyncNow
        } else {
            Decision::Wait(budget - waited)
        }
    }

    /// A sync of `batch` txns took `took`.
    pub fn synced(&mut self, batch: u64, took: Duration) {
        self.target = batch;
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        self.sync_us = if self.sync_us == 0 {
            us
        } else {
            self.sync_us - (self.sync_us >> SYNC_SMOOTHING_SHIFT) + (us >> SYNC_SMOOTHING_SHIFT)
        };
    }

    /// `queued` messages (writes for the most part) came in while the last sync
    /// ran: their writers belong to the same cycle.
    pub fn queued_behind(&mut self, queued: u64) {
        self.target = self.target.saturating_add(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn warmed(cycles: &[(u64, u64)], took: Duration) -> Gather {
        let mut g = Gather::new(MS);
        for &(batch, queued) in cycles {
            {
                g.synced(batch, took);
                g.queued_behind(queued);
            }
        }
        g
    }

    #[test]
    fn the_first_write_syncs_at_once() {
        assert_eq!(Gather::new(MS).decide(1, Duration::ZERO), Decision::SyncNow);
    }

    #[test]
    fn a_lone_client_never_waits() {
        let g = warmed(&[(1, 0), (1, 0)], MS);
        assert_eq!(g.decide(1, Duration::ZERO), Decision::SyncNow);
    }

    /// A sync of 3 with 61 queued behind it: the next waits for all 64 writers,
    /// at most half a sync time.
    #[test]
    fn writes_on_their_way_are_waited_for_up_to_half_a_sync() {
        let g = warmed(&[(3, 61)], MS);
        assert_eq!(g.decide(5, Duration::ZERO), Decision::Wait(MS / 2));
        assert_eq!(
            g.decide(63, Duration::from_micros(200)),
            Decision::Wait(Duration::from_micros(300))
        );
        assert_eq!(g.decide(64, Duration::from_micros(200)), Decision::SyncNow);
        assert_eq!(g.decide(5, MS / 2), Decision::SyncNow);
    }

    /// Gathered (64, nothing behind): the target stays 64. A client that stopped
    /// writing costs the budget once, then the target is what really comes.
    #[test]
    fn the_target_follows_the_load() {
        let mut g = warmed(&[(64, 0)], MS);
        assert!(matches!(g.decide(63, Duration::ZERO), Decision::Wait(_)));
        assert_eq!(g.decide(64, Duration::ZERO), Decision::SyncNow);
        {
            g.synced(60, MS);
            g.queued_behind(0);
        }
        assert_eq!(g.decide(60, Duration::ZERO), Decision::SyncNow);
    }

    #[test]
    fn free_syncs_and_a_zero_bound_never_wait() {
        let g = warmed(&[(1, 63)], Duration::ZERO);
        assert_eq!(g.decide(1, Duration::ZERO), Decision::SyncNow);
        let mut g = Gather::new(Duration::ZERO);
        {
            g.synced(64, MS);
            g.queued_behind(0);
        }
        assert_eq!(g.decide(1, Duration::ZERO), Decision::SyncNow);
    }

    #[test]
    fn the_wait_is_bounded_by_wait_max() {
        let mut g = Gather::new(Duration::from_micros(100));
        {
            g.synced(64, 10 * MS);
            g.queued_behind(0);
        }
        assert_eq!(
            g.decide(1, Duration::ZERO),
            Decision::Wait(Duration::from_micros(100))
        );
    }

    #[test]
    fn the_sync_time_is_smoothed() {
        let mut g = Gather::new(10 * MS);
        {
            g.synced(10, 8 * MS);
            g.queued_behind(0);
        }
        {
            g.synced(10, Duration::ZERO);
            g.queued_behind(0);
        }
        // 8 ms − 1/8: 7 ms smoothed, half of it the budget.
        assert_eq!(
            g.decide(1, Duration::ZERO),
            Decision::Wait(Duration::from_micros(3500))
        );
    }
}
