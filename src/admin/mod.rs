//! Four-letter words: the text answers to `ruok`, `srvr`, `stat`, `mntr`, `cons`,
//! `conf`, `envi`, `dump`, `wchs`, `wchc`, `wchp`, `isro`, `dirs`, `crst`, `srst`,
//! `hash`. Pure rendering from a `View` the shard core gathered (its counters plus
//! reports from the sequencer and every shard); the shard that accepted the
//! connection writes the text and closes it, as the reference does.

use crate::config::Config;
use crate::server::msg::{SequencerReport, ShardReport};
use crate::server::stats::ServerStats;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

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
    fn zxid(&self) -> i64 {
        self.sequencer
            .as_ref()
            .map(|s| s.last_zxid)
            .unwrap_or_else(|| self.stats.last_zxid.load(Relaxed))
    }

    fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.connections.len()).sum()
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
                if detailed {
                    let _ = writeln!(
                        out,
                        " /{}[1](queued={},recved={},sent={},sid={:#x},lzxid={:#x},to={})",
                        c.peer,
                        c.queued,
                        c.received,
                        c.sent,
                        c.session_id,
                        c.last_zxid,
                        c.timeout_ms
                    );
                } else {
                    let _ = writeln!(
                        out,
                        " /{}[1](queued={},recved={},sent={})",
                        c.peer, c.queued, c.received, c.sent
                    );
                }
            }
        }
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
        "isro" => out.push_str("rw"),
        "srvr" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}, built for corral");
            v.summary(&mut out);
        }
        "stat" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}, built for corral");
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
            let secure = c.tls.as_ref().map_or(-1, |t| i32::from(t.addr.port()));
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
            let total: usize = v.shards.iter().map(|s| s.watch_count).sum();
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
            let seq = v.sequencer.clone().unwrap_or_default();
            let _ = writeln!(out, "{:x}: {}", seq.last_zxid, seq.digest);
        }
        "mntr" => {
            let seq = v.sequencer.clone().unwrap_or_default();
            let (min, avg, max) = v.stats.latency_ms();
            let fds = std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0);
            let rows: Vec<(&str, String)> = vec![
                ("zk_version", VERSION.to_string()),
                ("zk_server_state", v.stats.mode().name().into()),
                ("zk_avg_latency", format!("{avg:.4}")),
                ("zk_max_latency", format!("{max:.0}")),
                ("zk_min_latency", format!("{min:.0}")),
                (
                    "zk_packets_received",
                    v.stats.sum(|s| &s.packets_received).to_string(),
                ),
                (
                    "zk_packets_sent",
                    v.stats.sum(|s| &s.packets_sent).to_string(),
                ),
                ("zk_num_alive_connections", v.connections().to_string()),
                (
                    "zk_outstanding_requests",
                    v.stats.sum(|s| &s.outstanding).to_string(),
                ),
                ("zk_znode_count", seq.node_count.to_string()),
                (
                    "zk_watch_count",
                    v.shards
                        .iter()
                        .map(|s| s.watch_count)
                        .sum::<usize>()
                        .to_string(),
                ),
                ("zk_ephemerals_count", seq.ephemeral_count.to_string()),
                (
                    "zk_approximate_data_size",
                    seq.approximate_data_size.to_string(),
                ),
                ("zk_open_file_descriptor_count", fds.to_string()),
                ("zk_global_sessions", seq.sessions.len().to_string()),
                ("zk_last_zxid", format!("{:#x}", seq.last_zxid)),
                (
                    "zk_uptime",
                    v.stats.started.elapsed().as_millis().to_string(),
                ),
            ];
            let mut rows = rows;
            if let Some(l) = seq.leader {
                rows.push(("zk_learners", l.learners.to_string()));
                rows.push(("zk_synced_followers", l.synced_followers.to_string()));
                rows.push(("zk_synced_non_voting_followers", "0".into()));
                rows.push(("zk_synced_observers", l.synced_observers.to_string()));
                rows.push(("zk_pending_syncs", l.pending_syncs.to_string()));
            }
            for (k, val) in rows {
                let _ = writeln!(out, "{k}\t{val}");
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
        assert!(render("mntr", &v).contains("zk_znode_count\t4\n"));
        assert!(render("wchs", &v).starts_with("0 connections watching 0 paths"));
    }
}
