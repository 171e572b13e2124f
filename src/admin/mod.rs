//! Operators' views of the server: four-letter words (text), the AdminServer's
//! commands (JSON, [`commands`]), and Prometheus metrics ([`metrics`]), all
//! rendered from one `View` (the config, the counters in `ServerStats`, and reports
//! gathered from the sequencer and every shard by message).
//!
//! Four-letter words (`ruok`, `srvr`, `stat`, `mntr`, `cons`, `conf`, `envi`,
//! `dump`, `wchs`, `wchc`, `wchp`, `isro`, `dirs`, `crst`, `srst`, `hash`) run on the
//! shard core that accepted the connection: it gathers the reports, writes the text
//! and closes the connection, as the reference does. The HTTP endpoints run on the
//! admin thread ([`http`]), never on a core: they gather the same reports over the
//! same channels. Rendering here is pure (no IO but the data-dir sizes and
//! /proc/self/fd counts the reference also reads).

pub mod commands;
pub mod http;
pub mod metrics;

use crate::config::Config;
use crate::server::msg::{SequencerReport, ShardReport};
use crate::server::stats::{HistogramSnapshot, Mode, ServerStats};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub const VERSION: &str = concat!("3.8.0-corral-", env!("CARGO_PKG_VERSION"));

pub struct View<'a> {
    pub cfg: &'a Config,
    pub stats: &'a ServerStats,
    pub sequencer: Option<SequencerReport>,
    pub shards: Vec<ShardReport>,
}

/// Commands whose answer needs reports gathered from the other cores.
pub fn needs_reports(cmd: &str) -> bool {
    matches!(
        cmd,
        "stat" | "srvr" | "mntr" | "cons" | "dump" | "wchs" | "wchc" | "wchp" | "hash"
    )
}

/// One value of `mntr` / the `monitor` command.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorValue {
    Str(String),
    Int(i64),
    Float(f64),
}

impl std::fmt::Display for MonitorValue {
    /// As the reference's mntr prints them: a whole double keeps its `.0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MonitorValue::Str(s) => f.write_str(s),
            MonitorValue::Int(i) => write!(f, "{i}"),
            MonitorValue::Float(x) if x.fract() == 0.0 && x.is_finite() => write!(f, "{x:.1}"),
            MonitorValue::Float(x) => write!(f, "{x}"),
        }
    }
}

/// The soft limit on open files (the reference's max_file_descriptor_count).
fn max_file_descriptors() -> i64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } {
        0 => r.rlim_cur.min(i64::MAX as u64) as i64,
        _ => -1,
    }
}

fn open_file_descriptors() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(-1)
}

/// The reference's summary keys for one histogram (`avg_`, `min_`, `max_`, `cnt_`,
/// `sum_`, and for its detailed summaries `p50_` .. `p999_`), values divided by `div`
/// (microseconds to the reference's milliseconds).
fn summary_values(
    out: &mut Vec<(String, MonitorValue)>,
    name: &str,
    h: &HistogramSnapshot,
    div: u64,
    detailed: bool,
) {
    use MonitorValue::{Float, Int};
    let d = div as f64;
    out.push((format!("avg_{name}"), Float(h.avg() / d)));
    out.push((format!("min_{name}"), Int((h.min / div) as i64)));
    out.push((format!("max_{name}"), Int((h.max / div) as i64)));
    out.push((format!("cnt_{name}"), Int(h.count as i64)));
    out.push((format!("sum_{name}"), Int((h.sum / div) as i64)));
    if detailed {
        for (key, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)] {
            out.push((format!("{key}_{name}"), Int((h.quantile(q) / div) as i64)));
        }
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl View<'_> {
    /// Every key of the reference's 3.8 `mntr` / `monitor` that has a meaning in
    /// corral, without the `zk_` prefix, in the reference's order. Values corral
    /// does not measure are left out rather than shown as zero.
    pub fn monitor_values(&self) -> Vec<(String, MonitorValue)> {
        use MonitorValue::{Int, Str};
        let seq = self.sequencer.clone().unwrap_or_default();
        let mut out: Vec<(String, MonitorValue)> = vec![
            ("version".into(), Str(VERSION.into())),
            ("server_state".into(), Str(self.stats.mode().name().into())),
        ];
        if let Some(q) = &seq.quorum {
            out.push(("peer_state".into(), Str(peer_state(&q.role))));
        }
        out.extend(
            self.gauge_values()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        out.extend(
            self.counter_values()
                .into_iter()
                .map(|(k, v)| (k.to_string(), Int(v))),
        );
        let snaps = self.stats.snapshot_ms.snapshot();
        summary_values(&mut out, "snapshottime", &snaps, 1, false);
        for (name, h) in [
            ("election_time", &self.stats.election_ms),
            ("follower_sync_time", &self.stats.follower_sync_ms),
            ("observer_sync_time", &self.stats.observer_sync_ms),
        ] {
            summary_values(&mut out, name, &h.snapshot(), 1, false);
        }
        summary_values(
            &mut out,
            "fsynctime",
            &self.stats.log_sync_us.snapshot(),
            1000,
            false,
        );
        let update = self.stats.merged(|s| &s.update_latency_us);
        summary_values(&mut out, "updatelatency", &update, 1000, true);
        let read = self.stats.merged(|s| &s.read_latency_us);
        summary_values(&mut out, "readlatency", &read, 1000, true);
        out
    }

    /// The reference's ServerMetrics counters that have a meaning in corral (mntr
    /// keys, and /metrics samples under the same bare names). Cleared by `srst`,
    /// as its resetAll clears them.
    pub fn counter_values(&self) -> Vec<(&'static str, i64)> {
        let seq = self.sequencer.as_ref();
        let s = self.stats;
        let shards = |f: fn(&crate::server::stats::ShardCounters) -> &AtomicU64| s.sum(f) as i64;
        let own = |a: &AtomicU64| a.load(Relaxed) as i64;
        vec![
            ("proposal_count", own(&s.proposals)),
            ("looking_count", own(&s.looking)),
            (
                "digest_mismatches_count",
                seq.map_or(0, |q| q.digest_mismatches as i64),
            ),
            ("bytes_received_count", shards(|c| &c.bytes_received)),
            (
                "connection_request_count",
                shards(|c| &c.connection_requests),
            ),
            ("connection_rejected", shards(|c| &c.connections_rejected)),
            ("snap_count", s.snapshot_ms.snapshot().count as i64),
            (
                "unsuccessful_handshake",
                shards(|c| &c.unsuccessful_handshakes),
            ),
            ("commit_count", own(&s.leader_commits)),
            (
                "learner_proposal_received_count",
                own(&s.learner_proposals_received),
            ),
            (
                "learner_commit_received_count",
                own(&s.learner_commits_received),
            ),
            ("revalidate_count", own(&s.revalidations)),
            (
                "connection_revalidate_count",
                shards(|c| &c.connection_revalidates),
            ),
        ]
    }

    /// The reference's gauges (registerMetrics of ZooKeeperServer and, on a leader,
    /// LeaderZooKeeperServer) that have a meaning in corral: mntr's numeric keys
    /// and /metrics' gauges.
    pub fn gauge_values(&self) -> Vec<(&'static str, MonitorValue)> {
        use MonitorValue::{Float, Int};
        let seq = self.sequencer.clone().unwrap_or_default();
        let (min, avg, max) = self.stats.latency_ms();
        let responses = self.stats.client_response_sizes();
        let watches: usize = self.shards.iter().map(|s| s.watch_count).sum();
        let mut out: Vec<(&'static str, MonitorValue)> = vec![
            ("ephemerals_count", Int(seq.ephemeral_count as i64)),
            ("num_alive_connections", Int(self.connections() as i64)),
            ("avg_latency", Float((avg * 10_000.0).round() / 10_000.0)),
            (
                "outstanding_requests",
                Int(self.stats.sum(|s| &s.outstanding) as i64),
            ),
            ("znode_count", Int(seq.node_count as i64)),
            ("global_sessions", Int(seq.sessions.len() as i64)),
            (
                "non_mtls_remote_conn_count",
                Int(self.stats.sum(|s| &s.non_mtls_remote_conns) as i64),
            ),
            ("last_client_response_size", Int(responses.last)),
            (
                "packets_sent",
                Int(self.stats.sum(|s| &s.packets_sent) as i64),
            ),
            (
                "packets_received",
                Int(self.stats.sum(|s| &s.packets_received) as i64),
            ),
            ("max_client_response_size", Int(responses.max)),
            ("watch_count", Int(watches as i64)),
            (
                "auth_failed_count",
                Int(self.stats.sum(|s| &s.auth_failed) as i64),
            ),
            ("min_latency", Int(min as i64)),
            ("max_file_descriptor_count", Int(max_file_descriptors())),
            (
                "approximate_data_size",
                Int(seq.approximate_data_size as i64),
            ),
            ("open_file_descriptor_count", Int(open_file_descriptors())),
            ("local_sessions", Int(seq.local_session_count as i64)),
            (
                "uptime",
                Int(self.stats.started.elapsed().as_millis() as i64),
            ),
            ("max_latency", Int(max as i64)),
            (
                "outstanding_tls_handshake",
                Int(self.stats.sum(|s| &s.tls_handshakes_in_progress) as i64),
            ),
            ("min_client_response_size", Int(responses.min)),
            (
                "non_mtls_local_conn_count",
                Int(self.stats.sum(|s| &s.non_mtls_local_conns) as i64),
            ),
        ];
        if let Some(q) = &seq.quorum {
            let voters = q
                .servers
                .iter()
                .filter(|s| s.role == crate::config::PeerRole::Participant)
                .count();
            out.push(("quorum_size", Int(voters as i64)));
        }
        if let Some(l) = &seq.leader {
            for (k, n) in [
                ("learners", l.learners),
                ("synced_followers", l.synced_followers),
                ("synced_non_voting_followers", 0),
                ("synced_observers", l.synced_observers),
                ("pending_syncs", l.pending_syncs),
            ] {
                out.push((k, Int(n as i64)));
            }
            if let Some(ms) = self.stats.leader_uptime_ms() {
                out.push(("leader_uptime", Int(ms as i64)));
            }
            let p = self.stats.proposal_bytes.snapshot();
            out.push(("last_proposal_size", Int(p.last)));
            out.push(("max_proposal_size", Int(p.max)));
            out.push(("min_proposal_size", Int(p.min)));
        }
        out
    }

    fn zxid(&self) -> i64 {
        self.sequencer
            .as_ref()
            .map(|s| s.last_zxid)
            .unwrap_or_else(|| self.stats.last_zxid.load(Relaxed))
    }

    /// Data watches (as the reference's watch summary counts: child watches not
    /// included; `watch_count` counts both).
    fn data_watch_count(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.watches_by_path.iter())
            .map(|(_, sids)| sids.len())
            .sum()
    }

    fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.connections.len()).sum()
    }

    /// The reference's `srvr`/`stat` line in read-only mode.
    fn read_only_line(&self, out: &mut String) {
        if self.stats.mode() == Mode::ReadOnly {
            out.push_str("READ-ONLY mode; serving only read-only clients\n");
        }
    }

    fn summary(&self, out: &mut String) {
        let (min, avg, max) = self.stats.latency_ms();
        let _ = writeln!(out, "Latency min/avg/max: {min:.0}/{avg:.4}/{max:.0}");
        let _ = writeln!(out, "Received: {}", self.stats.sum(|s| &s.packets_received));
        let _ = writeln!(out, "Sent: {}", self.stats.sum(|s| &s.packets_sent));
        let _ = writeln!(out, "Connections: {}", self.connections());
        let _ = writeln!(out, "Outstanding: {}", self.stats.sum(|s| &s.outstanding));
        let _ = writeln!(out, "Zxid: {:#x}", self.zxid());
        let _ = writeln!(out, "Mode: {}", self.stats.mode().name());
        let nodes = self
            .sequencer
            .as_ref()
            .map(|s| s.node_count as u64)
            .unwrap_or_else(|| self.stats.node_count.load(Relaxed));
        let _ = writeln!(out, "Node count: {nodes}");
    }

    fn client_lines(&self, out: &mut String, detailed: bool) {
        for s in &self.shards {
            for c in &s.connections {
                let _ = write!(
                    out,
                    " /{}[1](queued={},recved={},sent={}",
                    c.peer, c.queued, c.received, c.sent
                );
                if detailed && c.session_id != 0 {
                    connection_details(out, c);
                }
                out.push_str(")\n");
            }
        }
    }
}

/// The reference's `cons` details of a connection with a session (its
/// dumpConnectionInfo): lcxid only once a request with a real xid was answered.
fn connection_details(out: &mut String, c: &crate::server::msg::ConnSummary) {
    let _ = write!(
        out,
        ",sid={:#x},lop={},est={},to={}",
        c.session_id, c.last_operation, c.established_ms, c.timeout_ms
    );
    if c.last_cxid >= 0 {
        let _ = write!(out, ",lcxid={:#x}", c.last_cxid);
    }
    let _ = write!(
        out,
        ",lzxid={:#x},lresp={},llat={},minlat={},avglat={},maxlat={}",
        c.last_zxid,
        c.last_response_ms,
        c.last_latency_ms,
        c.min_latency_ms,
        c.avg_latency_ms,
        c.max_latency_ms
    );
}

/// The reference's detailed peer state: `leading - broadcast`, `following -
/// synchronization`, `looking`, ... (corral has no separate sync-mode suffix: its
/// learners sync by one path, so the reference's ` - diff` / ` - snap` is left off).
pub fn peer_state(role: &crate::zab::Role) -> String {
    use crate::zab::Role;
    let (state, zab) = match *role {
        Role::Looking => return "looking".into(),
        Role::Leading { established, .. } => ("leading", zab_state(established)),
        Role::Following { serving, .. } => ("following", zab_state(serving)),
        Role::Observing { serving, .. } => ("observing", zab_state(serving)),
    };
    format!("{state} - {zab}")
}

/// The reference's ZabState of a member that is not looking.
fn zab_state(serving: bool) -> &'static str {
    match serving {
        true => "broadcast",
        false => "synchronization",
    }
}

/// The reference's ZabState name (lower case) for a role.
pub fn zab_state_of(role: &crate::zab::Role) -> &'static str {
    use crate::zab::Role;
    match *role {
        Role::Looking => "election",
        Role::Leading { established, .. } => zab_state(established),
        Role::Following { serving, .. } | Role::Observing { serving, .. } => zab_state(serving),
    }
}

/// The reference's answer from a member that is not serving (no quorum).
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The text answer to one (whitelisted) four-letter word.
pub fn render(cmd: &str, v: &View) -> String {
    let mut out = String::new();
    // As the reference: only ruok, isro, envi, conf-less words answer without a server.
    if !v.stats.serving() && !matches!(cmd, "ruok" | "isro" | "envi" | "srst" | "hash") {
        let _ = writeln!(out, "{NOT_SERVING}");
        return out;
    }
    match cmd {
        "ruok" => out.push_str("imok"),
        // As the reference: `null` while no server runs (looking for a leader).
        "isro" => out.push_str(match v.stats.mode() {
            Mode::NotServing => "null",
            Mode::ReadOnly => "ro",
            _ => "rw",
        }),
        "srvr" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}, built for corral");
            v.read_only_line(&mut out);
            v.summary(&mut out);
        }
        "stat" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}, built for corral");
            v.read_only_line(&mut out);
            out.push_str("Clients:\n");
            v.client_lines(&mut out, false);
            out.push('\n');
            v.summary(&mut out);
        }
        "cons" => {
            v.client_lines(&mut out, true);
            out.push('\n');
        }
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => out.push_str("Server stats reset.\n"),
        "conf" => {
            let c = v.cfg;
            let _ = writeln!(out, "clientPort={}", c.client_port);
            // As the reference's dumpConf: -1 without a TLS port.
            let secure = c
                .tls
                .as_ref()
                .and_then(|t| t.addr)
                .map_or(-1, |a| i32::from(a.port()));
            let _ = writeln!(out, "secureClientPort={secure}");
            let _ = writeln!(out, "clientPortAddress={}", c.client_port_address);
            let _ = writeln!(out, "dataDir={}", c.data_dir.display());
            let _ = writeln!(out, "dataLogDir={}", c.log_dir().display());
            let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
            let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
            let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout());
            let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout());
            let _ = writeln!(out, "serverId=0");
            let _ = writeln!(out, "jute.maxbuffer={}", c.jute_max_buffer_bytes);
            let _ = writeln!(out, "forceSync={}", c.force_sync);
            let _ = writeln!(out, "extendedTypesEnabled={}", c.extended_types_enabled);
            let _ = writeln!(out, "corral.shardCores={}", c.shard_cores);
            let _ = writeln!(
                out,
                "corral.sequencerCore={}",
                c.sequencer_placement().name()
            );
            let _ = writeln!(out, "corral.cpuPinning={}", c.cpu_pinning);
            let _ = writeln!(out, "corral.ioMemoryBytes={}", c.io_memory_bytes);
        }
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={VERSION}");
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let _ = writeln!(out, "host.name={}", host.trim());
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
            if let Ok(d) = std::env::current_dir() {
                let _ = writeln!(out, "user.dir={}", d.display());
            }
            let _ = writeln!(out, "corral.pid={}", std::process::id());
        }
        "dirs" => {
            let _ = writeln!(out, "datadir_size: {}", dir_size(&v.cfg.data_dir));
            let _ = writeln!(out, "logdir_size: {}", dir_size(v.cfg.log_dir()));
        }
        "dump" => {
            let seq = v.sequencer.clone().unwrap_or_default();
            out.push_str("SessionTracker dump:\n");
            let _ = writeln!(out, "Global Sessions({}):", seq.sessions.len());
            for (id, to, _) in &seq.sessions {
                let _ = writeln!(out, "{id:#x}\t{to}ms");
            }
            out.push_str("ephemeral nodes dump:\n");
            let with: Vec<_> = seq.sessions.iter().filter(|s| !s.2.is_empty()).collect();
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", with.len());
            for (id, _, paths) in with {
                let _ = writeln!(out, "{id:#x}:");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
            out.push_str("Connections dump:\n");
            let _ = writeln!(out, "Connections Sets: {}", v.connections());
        }
        "wchs" => {
            let conns: usize = v.shards.iter().map(|s| s.watching_connections).sum();
            let paths: usize = v.shards.iter().map(|s| s.watch_paths).sum();
            let total = v.data_watch_count();
            let _ = writeln!(out, "{conns} connections watching {paths} paths");
            let _ = writeln!(out, "Total watches:{total}");
        }
        "wchc" => {
            for s in &v.shards {
                for (sid, paths) in &s.watches_by_session {
                    let _ = writeln!(out, "{sid:#x}");
                    for p in paths {
                        let _ = writeln!(out, "\t{p}");
                    }
                }
            }
        }
        "wchp" => {
            for s in &v.shards {
                for (p, sids) in &s.watches_by_path {
                    let _ = writeln!(out, "{p}");
                    for sid in sids {
                        let _ = writeln!(out, "\t{sid:#x}");
                    }
                }
            }
        }
        "hash" => {
            for (zxid, digest) in v.sequencer.iter().flat_map(|s| &s.digest_log) {
                let _ = writeln!(out, "{zxid:x}: {digest}");
            }
        }
        "mntr" => {
            for (k, val) in v.monitor_values() {
                let _ = writeln!(out, "zk_{k}\t{val}");
            }
        }
        other => {
            let _ = writeln!(out, "unknown command: {other}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruok_and_srvr_render() {
        let cfg = Config::embedded_default();
        let stats = ServerStats::new(1);
        let v = View {
            cfg: &cfg,
            stats: &stats,
            sequencer: Some(SequencerReport {
                last_zxid: 5,
                node_count: 4,
                ..Default::default()
            }),
            shards: vec![ShardReport::default()],
        };
        assert_eq!(render("ruok", &v), "imok");
        let s = render("srvr", &v);
        assert!(s.contains("Zxid: 0x5\n"), "{s}");
        assert!(s.contains("Mode: standalone\n"));
        assert!(s.contains("Node count: 4\n"));
        let m = render("mntr", &v);
        assert!(m.contains("zk_znode_count\t4\n"), "{m}");
        assert!(m.contains("zk_avg_latency\t0.0\n"), "{m}");
        assert!(m.contains("zk_p99_readlatency\t0\n"), "{m}");
        assert!(!m.contains("zk_last_zxid"), "not a key of the reference");
        assert!(render("wchs", &v).starts_with("0 connections watching 0 paths"));
    }

    #[test]
    fn isro_srvr_and_stat_follow_the_mode_as_the_reference() {
        let cfg = Config::embedded_default();
        let stats = ServerStats::new(1);
        let v = View {
            cfg: &cfg,
            stats: &stats,
            sequencer: Some(SequencerReport::default()),
            shards: vec![ShardReport::default()],
        };
        assert_eq!(render("isro", &v), "rw");
        stats.set_mode(Mode::NotServing);
        assert_eq!(render("isro", &v), "null");
        assert_eq!(render("srvr", &v), format!("{NOT_SERVING}\n"));
        stats.set_mode(Mode::ReadOnly);
        assert_eq!(render("isro", &v), "ro");
        for word in ["srvr", "stat"] {
            let s = render(word, &v);
            assert!(
                s.contains("\nREAD-ONLY mode; serving only read-only clients\n"),
                "{s}"
            );
            assert!(s.contains("Mode: read-only\n"), "{s}");
        }
        assert!(render("mntr", &v).contains("zk_server_state\tread-only\n"));
    }
}
