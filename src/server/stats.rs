//! Server-wide counters for four-letter words and metrics. Each shard writes only its
//! own slot (relaxed atomics, no lock, no sharing of a cache line between writers);
//! the sequencer writes its own fields. Readers (admin) sum the slots.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

#[derive(Default)]
#[repr(align(128))]
pub struct ShardCounters {
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub connections: AtomicU64,
    pub outstanding: AtomicU64,
    pub latency_count: AtomicU64,
    pub latency_sum_us: AtomicU64,
    pub latency_max_us: AtomicU64,
    pub latency_min_us: AtomicU64,
}

impl ShardCounters {
    pub fn record_latency_us(&self, us: u64) {
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        if us > self.latency_max_us.load(Relaxed) {
            self.latency_max_us.store(us, Relaxed);
        }
        let min = self.latency_min_us.load(Relaxed);
        if min == 0 || us < min {
            self.latency_min_us.store(us.max(1), Relaxed);
        }
    }

    pub fn reset(&self) {
        for a in [
            &self.packets_received,
            &self.packets_sent,
            &self.latency_count,
            &self.latency_sum_us,
            &self.latency_max_us,
            &self.latency_min_us,
        ] {
            a.store(0, Relaxed);
        }
    }
}

pub struct ServerStats {
    pub started: Instant,
    pub shards: Vec<ShardCounters>,
    pub last_zxid: AtomicI64,
    pub node_count: AtomicU64,
    pub session_count: AtomicU64,
}

impl ServerStats {
    pub fn new(shards: usize) -> Self {
        ServerStats {
            started: Instant::now(),
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            last_zxid: AtomicI64::new(0),
            node_count: AtomicU64::new(0),
            session_count: AtomicU64::new(0),
        }
    }

    pub fn sum(&self, f: impl Fn(&ShardCounters) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// (min, avg, max) request latency in milliseconds, as the reference prints them.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let n = self.sum(|s| &s.latency_count);
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let avg = self.sum(|s| &s.latency_sum_us) as f64 / n as f64 / 1000.0;
        let max = self
            .shards
            .iter()
            .map(|s| s.latency_max_us.load(Relaxed))
            .max()
            .unwrap_or(0);
        let min = self
            .shards
            .iter()
            .map(|s| s.latency_min_us.load(Relaxed))
            .filter(|&m| m > 0)
            .min()
            .unwrap_or(0);
        (min as f64 / 1000.0, avg, max as f64 / 1000.0)
    }
}
