//! Server-wide counters for four-letter words, metrics and the server-wide bounds.
//! Each shard writes only its own slot (relaxed atomics, no lock, no sharing of a
//! cache line between writers); the sequencer writes its own fields. Readers (admin,
//! and the shards checking globalOutstandingLimit) sum the slots. The one counter
//! every shard writes is `admitted_connections`, touched once per accept and close
//! (not per request): maxCnxns needs an exact count across cores.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

#[derive(Default)]
#[repr(align(128))]
pub struct ShardCounters {
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub connections: AtomicU64,
    /// Requests this shard has taken in and not answered yet (queued behind a write,
    /// at the sequencer, or waiting for room in a connection's output).
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
    /// Connections open on every shard together (maxCnxns).
    admitted_connections: AlignedCount,
    /// The server's role ([`Mode`]), written by the sequencer.
    mode: AtomicU8,
}

/// What `srvr` prints as `Mode:`; `NotServing` while an ensemble member looks for
/// (or syncs with) a leader: clients are refused then, as on the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Standalone = 0,
    Leader = 1,
    Follower = 2,
    Observer = 3,
    NotServing = 4,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::NotServing => "not serving",
        }
    }
}

/// A counter on its own cache line, away from the fields the sequencer writes.
#[derive(Default)]
#[repr(align(128))]
struct AlignedCount(AtomicU64);

/// maxCnxns refused a connection: this many were open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections {
    pub open: u64,
}

impl ServerStats {
    pub fn new(shards: usize) -> Self {
        ServerStats {
            started: Instant::now(),
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            last_zxid: AtomicI64::new(0),
            node_count: AtomicU64::new(0),
            session_count: AtomicU64::new(0),
            admitted_connections: AlignedCount::default(),
            mode: AtomicU8::new(Mode::Standalone as u8),
        }
    }

    pub fn mode(&self) -> Mode {
        match self.mode.load(Relaxed) {
            1 => Mode::Leader,
            2 => Mode::Follower,
            3 => Mode::Observer,
            4 => Mode::NotServing,
            _ => Mode::Standalone,
        }
    }

    pub fn set_mode(&self, m: Mode) {
        self.mode.store(m as u8, Relaxed);
    }

    /// Clients may connect (standalone, or an ensemble member that serves).
    pub fn serving(&self) -> bool {
        self.mode() != Mode::NotServing
    }

    /// Counts one more open connection unless `max` (> 0) are open already. Exact
    /// across cores: two shards accepting at once cannot both take the last place.
    pub fn admit_connection(&self, max: u64) -> Result<(), TooManyConnections> {
        let n = &self.admitted_connections.0;
        let mut open = n.load(Relaxed);
        loop {
            if max > 0 && open >= max {
                return Err(TooManyConnections { open });
            }
            match n.compare_exchange_weak(open, open + 1, Relaxed, Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => open = now,
            }
        }
    }

    /// A connection counted by `admit_connection` closed.
    pub fn release_connection(&self) {
        let before = self.admitted_connections.0.fetch_sub(1, Relaxed);
        assert!(before > 0, "released a connection that was never admitted");
    }

    /// Requests in process on every shard (globalOutstandingLimit).
    pub fn outstanding(&self) -> u64 {
        self.sum(|s| &s.outstanding)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_stops_at_max_and_resumes_after_a_release() {
        let s = ServerStats::new(2);
        for _ in 0..3 {
            s.admit_connection(3).unwrap();
        }
        assert_eq!(s.admit_connection(3), Err(TooManyConnections { open: 3 }));
        s.release_connection();
        assert_eq!(s.admit_connection(3), Ok(()));
        // 0 = unlimited, still counted.
        assert_eq!(s.admit_connection(0), Ok(()));
        assert_eq!(s.admit_connection(4), Err(TooManyConnections { open: 4 }));
    }
}
