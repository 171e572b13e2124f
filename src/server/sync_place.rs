//! Where a standalone sequencer beside shard 0 runs its next log sync: inline on
//! its executor, or on glommio's blocking pool. Pure logic (durations come in as
//! arguments); that core owns one [`SyncPlace`] and asks it before each sync. (An
//! ensemble member's quorum core always syncs on the pool: `server::quorum`, so
//! that a member whose disk stalls does not hold the others.)
//!
//! Both have a cost. Inline, the core does nothing else while the fsync runs:
//! requests that arrive meanwhile wait behind it, and shard 0's clients with
//! them (the first sync of a stalled disk holds them all, as the reference's
//! standalone pipeline holds its reads behind a sync). On
//! the pool, every sync is a hand-off to another thread and a wake-up back, and
//! the core wakes more often with less to do each time. Measured on this box
//! (PERF.md, "Syncing off the executor"): with fsync ≈ 0.1 ms the pool cost 17 %
//! more CPU per write at 16 × 4 for +6 % writes; with slower syncs (a loaded box) it
//! gave +29 % writes at 64 × 8.
//! So: inline while the smoothed sync time stays at or under
//! [`INLINE_SYNC_MAX`], on the pool above it. Every sync, wherever it ran,
//! updates the smoothed time, so the choice follows the disk both ways.
//!
//! ```text
//!   smoothed sync ≤ INLINE_SYNC_MAX ─► inline (one thread, no hand-off)
//!   smoothed sync > INLINE_SYNC_MAX ─► blocking pool (the core serves meanwhile)
//! ```

use std::time::Duration;

/// The smoothed sync time up to which a sync runs inline, by default
/// (`corral.inlineSyncMaxMicros`).
pub const INLINE_SYNC_MAX: Duration = Duration::from_micros(250);

/// How much the smoothed sync time moves towards each new sample (1/8).
const SMOOTHING_SHIFT: u32 = 3;

#[derive(Debug)]
pub struct SyncPlace {
    /// Smoothed sync time, µs (0 before the first sync: the first runs inline).
    sync_us: u64,
    /// The smoothed time up to which syncs run inline, µs.
    inline_max_us: u64,
}

impl Default for SyncPlace {
    fn default() -> Self {
        SyncPlace::new(INLINE_SYNC_MAX)
    }
}

impl SyncPlace {
    /// Syncs run inline while their smoothed time is at most `inline_max` (zero:
    /// every sync after the first goes to the pool).
    pub fn new(inline_max: Duration) -> Self {
        SyncPlace {
            sync_us: 0,
            inline_max_us: inline_max.as_micros().min(u64::MAX as u128) as u64,
        }
    }

    /// True: run the next sync inline; false: on the blocking pool.
    pub fn inline(&self) -> bool {
        self.sync_us <= self.inline_max_us
    }

    /// A sync took `took` (inline or on the pool).
    pub fn synced(&mut self, took: Duration) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        self.sync_us = if self.sync_us == 0 {
            us
        } else {
            self.sync_us - (self.sync_us >> SMOOTHING_SHIFT) + (us >> SMOOTHING_SHIFT)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn fast_syncs_stay_inline_and_the_first_runs_inline() {
        let mut p = SyncPlace::default();
        assert!(p.inline());
        for _ in 0..100 {
            p.synced(100 * US);
        }
        assert!(p.inline());
    }

    /// A disk that slows down moves the syncs to the pool within a few samples;
    /// one slow sync among fast ones does not.
    #[test]
    fn slow_syncs_go_to_the_pool_and_come_back_when_the_disk_does() {
        let mut p = SyncPlace::default();
        for _ in 0..20 {
            p.synced(100 * US);
        }
        p.synced(1000 * US);
        assert!(p.inline(), "one slow sync moved the place");
        let mut n = 0;
        while p.inline() {
            p.synced(2000 * US);
            n += 1;
        }
        assert!(n <= 3, "{n} slow syncs before the pool");
        let mut back = 0;
        while !p.inline() {
            p.synced(100 * US);
            back += 1;
        }
        assert!((5..=30).contains(&back), "{back} fast syncs to come back");
    }

    /// At zero (`corral.inlineSyncMaxMicros=0`) only the first sync runs inline.
    #[test]
    fn a_zero_limit_sends_every_sync_after_the_first_to_the_pool() {
        let mut p = SyncPlace::new(Duration::ZERO);
        assert!(p.inline());
        for _ in 0..10 {
            p.synced(US);
            assert!(!p.inline());
        }
    }
}
