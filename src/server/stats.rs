//! Server-wide counters for four-letter words, metrics and the server-wide bounds.
//! Each shard writes only its own slot (relaxed loads and stores, `OwnedCount`: no
//! lock, no locked instruction, no sharing of a cache line between writers); the
//! sequencer writes its own fields. Readers (admin, and the shards checking
//! globalOutstandingLimit) sum the slots. The one counter every shard writes is
//! `admitted_connections`, touched once per accept and close (not per request):
//! maxCnxns needs an exact count across cores.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

/// Counting on a counter one thread alone writes (a shard, its own slot): a
/// relaxed load and store instead of a locked read-modify-write, which costs
/// the request path several of those per reply. Other threads only read, and
/// each store reaches them whole. `srst` clears a shard's slot on that shard
/// (`ToShard::ResetStats`), so it is a writer like any other.
pub trait OwnedCount {
    fn add_owned(&self, n: u64);
    fn sub_owned(&self, n: u64);
}

impl OwnedCount for AtomicU64 {
    #[inline]
    fn add_owned(&self, n: u64) {
        self.store(self.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    fn sub_owned(&self, n: u64) {
        self.store(self.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

/// One shard's counters: only that shard writes them (`OwnedCount`).
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
    /// Reads (answered from the shard's tree) and updates (answered after their
    /// commit), microseconds from arrival to reply: `readlatency` / `updatelatency`.
    pub read_latency_us: Histogram,
    pub update_latency_us: Histogram,
    /// TLS handshakes on the secure port that did not complete (refused, timed out,
    /// not TLS, closed by the client) and client certificates whose subject could
    /// not be read: the reference's auth_failed_count, which its
    /// Netty factory counts there and nowhere else (not for SASL or addauth). Not
    /// cleared by `srst`, as there.
    pub auth_failed: AtomicU64,
    /// Plaintext client connections accepted, from another host / from loopback:
    /// the reference's non_mtls_remote_conn_count / non_mtls_local_conn_count.
    /// Its Netty factory counts every channel without TLS; its NIO factory (the
    /// default, plaintext only) never counts. corral's one connection stack serves
    /// both ports as the Netty factory does, so it counts as that one. Not cleared
    /// by `srst`, as there.
    pub non_mtls_remote_conns: AtomicU64,
    pub non_mtls_local_conns: AtomicU64,
    /// The reference's ServerMetrics counters a shard can count: bytes of every
    /// client frame received (length prefix included; 4 for a four-letter word),
    /// connections refused by maxClientCnxns / maxCnxns, TLS handshakes that did
    /// not complete, connect requests taken, and those naming an existing session.
    pub bytes_received: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub unsuccessful_handshakes: AtomicU64,
    pub connection_requests: AtomicU64,
    pub connection_revalidates: AtomicU64,
    /// TLS handshakes begun and not ended (the reference's
    /// outstanding_tls_handshake gauge): up at a TLS accept, down when the
    /// handshake completes or its connection ends first.
    pub tls_handshakes_in_progress: AtomicU64,
    /// Bytes of each reply this shard wrote (the reference's client response
    /// BufferStats: header and body, no length prefix). Cleared by `srst`.
    pub response_bytes: SizeStats,
}

impl ShardCounters {
    /// Books one reply's latency; `update` says whether it answered a write.
    /// One packet sent to a client (a reply or a notification) of `frame_bytes`
    /// with its length prefix: packets_sent, and the reply sizes, which the
    /// reference takes without the 4-byte prefix.
    pub fn packet_sent(&self, frame_bytes: usize, at_us: u64) {
        self.packets_sent.add_owned(1);
        let body = frame_bytes.saturating_sub(4) as u64;
        self.response_bytes.record(body, at_us);
    }

    pub fn record_reply_latency_us(&self, us: u64, update: bool) {
        self.record_latency_us(us);
        match update {
            true => self.update_latency_us.record_owned(us),
            false => self.read_latency_us.record_owned(us),
        }
    }

    pub fn record_latency_us(&self, us: u64) {
        self.latency_count.add_owned(1);
        self.latency_sum_us.add_owned(us);
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
            &self.bytes_received,
            &self.connections_rejected,
            &self.unsuccessful_handshakes,
            &self.connection_requests,
            &self.connection_revalidates,
            &self.latency_count,
            &self.latency_sum_us,
            &self.latency_max_us,
            &self.latency_min_us,
        ] {
            a.store(0, Relaxed);
        }
        self.read_latency_us.reset();
        self.update_latency_us.reset();
        self.response_bytes.reset();
    }
}

/// The reference's BufferStats: the last, smallest and largest size seen, with
/// when the last one was seen (µs since the server started) so that several
/// (every shard's) merge into one. Relaxed atomics, one writer. A size of 0 is
/// not recorded (no reply or proposal is empty).
#[derive(Default)]
pub struct SizeStats {
    last_bytes: AtomicU64,
    min_bytes: AtomicU64,
    max_bytes: AtomicU64,
    last_at_us: AtomicU64,
}

/// What a [`SizeStats`] held when read; -1s until a size is seen, as the
/// reference prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeSnapshot {
    pub last: i64,
    pub min: i64,
    pub max: i64,
    last_at_us: u64,
}

impl SizeStats {
    pub fn record(&self, bytes: u64, at_us: u64) {
        if bytes == 0 {
            return;
        }
        self.last_bytes.store(bytes, Relaxed);
        self.last_at_us.store(at_us, Relaxed);
        let min = self.min_bytes.load(Relaxed);
        if min == 0 || bytes < min {
            self.min_bytes.store(bytes, Relaxed);
        }
        if bytes > self.max_bytes.load(Relaxed) {
            self.max_bytes.store(bytes, Relaxed);
        }
    }

    pub fn reset(&self) {
        for a in [
            &self.last_bytes,
            &self.min_bytes,
            &self.max_bytes,
            &self.last_at_us,
        ] {
            a.store(0, Relaxed);
        }
    }

    pub fn snapshot(&self) -> SizeSnapshot {
        let max = self.max_bytes.load(Relaxed);
        if max == 0 {
            return SizeSnapshot::NONE;
        }
        let signed = |a: &AtomicU64| a.load(Relaxed).min(i64::MAX as u64) as i64;
        SizeSnapshot {
            last: signed(&self.last_bytes),
            min: signed(&self.min_bytes),
            max: max.min(i64::MAX as u64) as i64,
            last_at_us: self.last_at_us.load(Relaxed),
        }
    }
}

impl SizeSnapshot {
    pub const NONE: SizeSnapshot = SizeSnapshot {
        last: -1,
        min: -1,
        max: -1,
        last_at_us: 0,
    };

    /// Both together: the later `last`, the smaller min, the larger max.
    pub fn merge(&mut self, o: &SizeSnapshot) {
        if o.max < 0 {
            return;
        }
        if self.max < 0 {
            *self = *o;
            return;
        }
        if o.last_at_us >= self.last_at_us {
            (self.last, self.last_at_us) = (o.last, o.last_at_us);
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// Entries the digest log keeps (the reference's DataTree.DIGEST_LOG_LIMIT).
pub const DIGEST_LOG_ENTRIES_COUNT_MAX: usize = 1024;
/// The digest log takes the zxids that are multiples of this (its
/// DIGEST_LOG_INTERVAL).
pub const DIGEST_LOG_INTERVAL_TXNS: i64 = 128;

/// The reference's digest log (`hash`): the tree digest after every
/// [`DIGEST_LOG_INTERVAL_TXNS`]th txn applied, the newest
/// [`DIGEST_LOG_ENTRIES_COUNT_MAX`] kept. Owned by the sequencer core.
#[derive(Debug, Default)]
pub struct DigestLog {
    entries: std::collections::VecDeque<(i64, u64)>,
}

impl DigestLog {
    /// Whether the digest after `zxid` belongs in the log.
    pub fn wants(zxid: i64) -> bool {
        zxid.rem_euclid(DIGEST_LOG_INTERVAL_TXNS) == 0
    }

    /// Notes the tree digest after `zxid` (call only when [`Self::wants`] it).
    pub fn note(&mut self, zxid: i64, digest: u64) {
        self.entries.push_back((zxid, digest));
        if self.entries.len() > DIGEST_LOG_ENTRIES_COUNT_MAX {
            self.entries.pop_front();
        }
    }

    /// (zxid, digest), oldest first.
    pub fn entries(&self) -> Vec<(i64, u64)> {
        self.entries.iter().copied().collect()
    }
}

/// The name the reference's connection stats give a request (`last_operation`
/// in `cons`, its FinalRequestProcessor's four-letter codes); "NA" for a code
/// it has none for.
pub fn operation_name(opcode: i32) -> &'static str {
    use crate::proto::op;
    match opcode {
        op::PING => "PING",
        op::CREATE_SESSION => "SESS",
        op::MULTI => "MULT",
        op::MULTI_READ => "MLTR",
        op::CREATE | op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => "CREA",
        op::DELETE | op::DELETE_CONTAINER => "DELE",
        op::SET_DATA => "SETD",
        op::RECONFIG => "RECO",
        op::SET_ACL => "SETA",
        op::CLOSE_SESSION => "CLOS",
        op::SYNC => "SYNC",
        op::CHECK => "CHEC",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_WATCHES => "SETW",
        op::SET_WATCHES2 => "STW2",
        op::ADD_WATCH => "ADDW",
        op::GET_ACL => "GETA",
        op::GET_CHILDREN | op::GET_CHILDREN2 => "GETC",
        op::GET_ALL_CHILDREN_NUMBER => "GETACN",
        op::CHECK_WATCHES => "CHKW",
        op::REMOVE_WATCHES => "REMW",
        op::WHO_AM_I => "HOMI",
        op::GET_EPHEMERALS => "GETE",
        _ => "NA",
    }
}

/// Buckets of a [`Histogram`]: bucket 0 holds 0, bucket i > 0 holds values in
/// [2^(i-1), 2^i), the last one everything above.
pub const HISTOGRAM_BUCKETS_COUNT: usize = 32;

/// A histogram of u64 values in power-of-two buckets: relaxed atomics, one writer
/// (the core that owns it), any number of readers. Readers may see a value in
/// `count` before its bucket; they take it as it is (a metric, not an invariant).
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS_COUNT],
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

/// What a [`Histogram`] held when read; several merge into one (every shard's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; HISTOGRAM_BUCKETS_COUNT],
    pub count: u64,
    pub sum: u64,
    /// 0 when empty.
    pub min: u64,
    pub max: u64,
}

impl Histogram {
    fn bucket_of(v: u64) -> usize {
        ((u64::BITS - v.leading_zeros()) as usize).min(HISTOGRAM_BUCKETS_COUNT - 1)
    }

    /// Records `v`; any number of threads may record.
    pub fn record(&self, v: u64) {
        self.buckets[Self::bucket_of(v)].fetch_add(1, Relaxed);
        let n = self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.record_extremes(n, v);
    }

    /// Records `v` on a histogram that only this thread writes (`OwnedCount`).
    pub fn record_owned(&self, v: u64) {
        self.buckets[Self::bucket_of(v)].add_owned(1);
        let n = self.count.load(Relaxed);
        self.count.store(n + 1, Relaxed);
        self.sum.add_owned(v);
        self.record_extremes(n, v);
    }

    /// The min and max, after `n` earlier values.
    fn record_extremes(&self, n: u64, v: u64) {
        if n == 0 || v < self.min.load(Relaxed) {
            self.min.store(v, Relaxed);
        }
        if v > self.max.load(Relaxed) {
            self.max.store(v, Relaxed);
        }
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        for a in [&self.count, &self.sum, &self.min, &self.max] {
            a.store(0, Relaxed);
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            count: self.count.load(Relaxed),
            sum: self.sum.load(Relaxed),
            min: self.min.load(Relaxed),
            max: self.max.load(Relaxed),
        }
    }
}

impl HistogramSnapshot {
    /// The largest value bucket `i` holds (`u64::MAX` for the last).
    pub fn upper_bound(i: usize) -> u64 {
        match i {
            0 => 0,
            i if i >= HISTOGRAM_BUCKETS_COUNT - 1 => u64::MAX,
            i => (1u64 << i) - 1,
        }
    }

    pub fn merge(&mut self, o: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        if o.count > 0 && (self.count == 0 || o.min < self.min) {
            self.min = o.min;
        }
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.sum += o.sum;
    }

    pub fn avg(&self) -> f64 {
        match self.count {
            0 => 0.0,
            n => self.sum as f64 / n as f64,
        }
    }

    /// The `q` quantile (0..=1), as the upper bound of the bucket it falls in,
    /// kept within [min, max]: within a factor of two of the true value.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper_bound(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

pub struct ServerStats {
    pub started: Instant,
    pub shards: Vec<ShardCounters>,
    pub last_zxid: AtomicI64,
    pub node_count: AtomicU64,
    pub session_count: AtomicU64,
    /// Written by the sequencer core only: writes per commit batch it published,
    /// microseconds per log fsync, milliseconds per snapshot (the snapshot thread).
    pub commit_batch_size: Histogram,
    pub log_sync_us: Histogram,
    pub snapshot_ms: Histogram,
    /// Quorum mode, on the leader: bytes of each proposal it sent (the reference's
    /// proposal_stats, last/min/max_proposal_size). Written by the sequencer core.
    pub proposal_bytes: SizeStats,
    /// The reference's ServerMetrics counters the sequencer core can count:
    /// proposals this leader sent, txns committed while leading, and times this
    /// member started looking for a leader.
    pub proposals: AtomicU64,
    pub leader_commits: AtomicU64,
    pub looking: AtomicU64,
    /// Quorum mode, the reference's learner and election metrics: PROPOSALs and
    /// COMMITs (an observer's INFORMs) a serving learner received, REVALIDATEs a
    /// leader answered, and milliseconds from starting to look to following or
    /// leading (`election_time`), and from following to serving
    /// (`follower_sync_time` / `observer_sync_time`). Sequencer core only.
    pub learner_proposals_received: AtomicU64,
    pub learner_commits_received: AtomicU64,
    pub revalidations: AtomicU64,
    pub election_ms: Histogram,
    pub follower_sync_ms: Histogram,
    pub observer_sync_ms: Histogram,
    /// Log syncs slower than `fsync_warning_threshold_ms` (the reference's
    /// fsync_threshold_exceed_count; not cleared by `srst`, as there).
    pub fsync_threshold_exceed_count: AtomicU64,
    /// fsync.warningthresholdms, fixed at start.
    fsync_warning_threshold_ms: u64,
    /// Messages waiting in the sequencer's inbox when it last looked.
    pub sequencer_inbox_depth: AtomicU64,
    /// Connections open on every shard together (maxCnxns).
    admitted_connections: AlignedCount,
    /// The server's role ([`Mode`]), written by the sequencer.
    mode: AtomicU8,
    /// While leading: µs since start when this leader took the lead (+1, so that
    /// 0 means not leading); for leader_uptime.
    leading_since_us: AtomicU64,
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
    /// An ensemble member without a quorum serving read-only clients
    /// (`readonlymode.enabled`).
    ReadOnly = 5,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::NotServing => "not serving",
            Mode::ReadOnly => "read-only",
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
            commit_batch_size: Histogram::default(),
            learner_proposals_received: AtomicU64::new(0),
            learner_commits_received: AtomicU64::new(0),
            revalidations: AtomicU64::new(0),
            election_ms: Histogram::default(),
            follower_sync_ms: Histogram::default(),
            observer_sync_ms: Histogram::default(),
            log_sync_us: Histogram::default(),
            snapshot_ms: Histogram::default(),
            proposal_bytes: SizeStats::default(),
            proposals: AtomicU64::new(0),
            leader_commits: AtomicU64::new(0),
            looking: AtomicU64::new(0),
            fsync_threshold_exceed_count: AtomicU64::new(0),
            fsync_warning_threshold_ms: 1000,
            sequencer_inbox_depth: AtomicU64::new(0),
            admitted_connections: AlignedCount::default(),
            mode: AtomicU8::new(Mode::Standalone as u8),
            leading_since_us: AtomicU64::new(0),
        }
    }

    /// Sets fsync.warningthresholdms (the config's; 1000 ms otherwise).
    pub fn with_fsync_warning_threshold_ms(mut self, ms: u64) -> Self {
        self.fsync_warning_threshold_ms = ms;
        self
    }

    /// Books one log sync that took `elapsed`: the sync-time histogram, and the
    /// threshold count when its whole milliseconds pass the warning threshold (as
    /// the reference's FileTxnLog.commit, which also logs a warning then).
    pub fn record_log_sync(&self, elapsed: std::time::Duration) {
        self.log_sync_us.record(elapsed.as_micros() as u64);
        let ms = elapsed.as_millis() as u64;
        if ms > self.fsync_warning_threshold_ms {
            self.fsync_threshold_exceed_count.fetch_add(1, Relaxed);
            tracing::warn!(
                "fsync-ing the transaction log took {ms} ms (fsync.warningthresholdms={}), \
                 which adversely affects operation latency",
                self.fsync_warning_threshold_ms
            );
        }
    }

    pub fn mode(&self) -> Mode {
        match self.mode.load(Relaxed) {
            1 => Mode::Leader,
            2 => Mode::Follower,
            3 => Mode::Observer,
            4 => Mode::NotServing,
            5 => Mode::ReadOnly,
            _ => Mode::Standalone,
        }
    }

    /// The sequencer's role changed. Becoming the (established) leader starts
    /// leader_uptime and, as the reference's new Leader, fresh proposal stats.
    pub fn set_mode(&self, m: Mode) {
        let was = self.mode.swap(m as u8, Relaxed);
        match m {
            Mode::Leader if was != Mode::Leader as u8 => {
                self.proposal_bytes.reset();
                let since = self.since_start_us(Instant::now()) + 1;
                self.leading_since_us.store(since, Relaxed);
            }
            Mode::Leader => {}
            _ => self.leading_since_us.store(0, Relaxed),
        }
    }

    /// `srst` on the sequencer core: what the reference's ServerMetrics.resetAll
    /// clears of the sequencer's metrics (the shards clear their own).
    pub fn reset_sequencer_metrics(&self) {
        for a in [
            &self.proposals,
            &self.leader_commits,
            &self.looking,
            &self.learner_proposals_received,
            &self.learner_commits_received,
            &self.revalidations,
        ] {
            a.store(0, Relaxed);
        }
        for h in [
            &self.election_ms,
            &self.follower_sync_ms,
            &self.observer_sync_ms,
        ] {
            h.reset();
        }
        self.commit_batch_size.reset();
        self.log_sync_us.reset();
        self.snapshot_ms.reset();
    }

    /// Milliseconds since this server took the lead (the reference's
    /// leader_uptime); `None` unless it leads.
    pub fn leader_uptime_ms(&self) -> Option<u64> {
        match self.leading_since_us.load(Relaxed) {
            0 => None,
            since => {
                let now = self.since_start_us(Instant::now());
                Some(now.saturating_sub(since - 1) / 1000)
            }
        }
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

    /// One latency histogram of every shard together.
    pub fn merged(&self, f: impl Fn(&ShardCounters) -> &Histogram) -> HistogramSnapshot {
        let mut all = HistogramSnapshot::default();
        for s in &self.shards {
            all.merge(&f(s).snapshot());
        }
        all
    }

    /// Every shard's reply sizes together (the reference's client_response_stats).
    pub fn client_response_sizes(&self) -> SizeSnapshot {
        let mut all = SizeSnapshot::NONE;
        for s in &self.shards {
            all.merge(&s.response_bytes.snapshot());
        }
        all
    }

    /// Microseconds since the server started, for [`SizeStats::record`].
    pub fn since_start_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_micros() as u64
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
    use std::time::Duration;

    #[test]
    fn histogram_buckets_quantiles_and_merge() {
        let h = Histogram::default();
        for v in [0, 1, 2, 3, 100, 1000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!((s.count, s.sum, s.min, s.max), (6, 1106, 0, 1000));
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[2], 2);
        // 100 is in [64, 128): the median is 2..3's bucket, p99 clamps to max.
        assert_eq!(s.quantile(0.5), 3);
        assert_eq!(s.quantile(0.99), 1000);
        let mut m = HistogramSnapshot::default();
        m.merge(&s);
        m.merge(&s);
        assert_eq!((m.count, m.min, m.max), (12, 0, 1000));
        h.reset();
        assert_eq!(h.snapshot(), HistogramSnapshot::default());
        assert_eq!(HistogramSnapshot::default().quantile(0.5), 0);
    }

    #[test]
    fn log_syncs_past_the_warning_threshold_are_counted() {
        let s = ServerStats::new(1).with_fsync_warning_threshold_ms(5);
        for ms in [0, 5, 6, 2000] {
            s.record_log_sync(Duration::from_millis(ms));
        }
        // As the reference: whole milliseconds strictly above the threshold.
        assert_eq!(s.fsync_threshold_exceed_count.load(Relaxed), 2);
        assert_eq!(s.log_sync_us.snapshot().count, 4);
        let d = ServerStats::new(1);
        d.record_log_sync(Duration::from_millis(1000));
        d.record_log_sync(Duration::from_millis(1001));
        assert_eq!(
            d.fsync_threshold_exceed_count.load(Relaxed),
            1,
            "1000 ms default"
        );
    }

    #[test]
    fn sizes_merge_the_latest_last_and_the_extremes() {
        let s = ServerStats::new(2);
        assert_eq!(s.client_response_sizes(), SizeSnapshot::NONE);
        s.shards[0].response_bytes.record(40, 10);
        s.shards[0].response_bytes.record(16, 11);
        s.shards[1].response_bytes.record(90, 12);
        s.shards[1].response_bytes.record(0, 13);
        let m = s.client_response_sizes();
        assert_eq!((m.last, m.min, m.max), (90, 16, 90));
        s.shards[0].response_bytes.record(20, 14);
        assert_eq!(s.client_response_sizes().last, 20);
        s.shards[0].reset();
        s.shards[1].reset();
        assert_eq!(s.client_response_sizes(), SizeSnapshot::NONE);
    }

    #[test]
    fn leader_uptime_runs_only_while_leading() {
        let s = ServerStats::new(1);
        assert_eq!(s.leader_uptime_ms(), None);
        s.set_mode(Mode::NotServing);
        s.proposal_bytes.record(10, 0);
        s.set_mode(Mode::Leader);
        assert!(s.leader_uptime_ms().is_some());
        assert_eq!(
            s.proposal_bytes.snapshot(),
            SizeSnapshot::NONE,
            "a new leader"
        );
        s.set_mode(Mode::NotServing);
        assert_eq!(s.leader_uptime_ms(), None);
    }

    #[test]
    fn digest_log_takes_every_128th_zxid_and_keeps_the_newest() {
        let mut log = DigestLog::default();
        for zxid in 1..=(DIGEST_LOG_INTERVAL_TXNS * 1030) {
            if DigestLog::wants(zxid) {
                log.note(zxid, zxid as u64 * 3);
            }
        }
        let e = log.entries();
        assert_eq!(e.len(), DIGEST_LOG_ENTRIES_COUNT_MAX);
        assert_eq!(e[0], (DIGEST_LOG_INTERVAL_TXNS * 7, 128 * 7 * 3));
        assert_eq!(e.last().unwrap().0, DIGEST_LOG_INTERVAL_TXNS * 1030);
        assert!(!DigestLog::wants(129));
        assert!(DigestLog::wants(5i64 << 32), "epoch 5, counter 0");
    }

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
