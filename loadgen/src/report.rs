//! Turns merged stats into the run's report: a text table for people, JSON for
//! scripts. Runs once on the main thread after the workers finish.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu::CpuTimes;
use crate::mix::OpKind;
use crate::stats::{new_histogram, Stats};

/// Latency summary of one operation kind (or of all requests), in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    pub op: String,
    pub code: i32,
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) per request answered in the window, in microseconds.
    pub us_per_op: f64,
    /// User-space CPU per request answered in the window, in microseconds.
    pub user_us_per_op: f64,
    /// Kernel CPU per request answered in the window, in microseconds.
    pub sys_us_per_op: f64,
    /// Average cores busy over the window.
    pub cores: f64,
}

impl CpuReport {
    pub fn new(t: CpuTimes, ops: u64, window_s: f64) -> CpuReport {
        let total = t.total().as_secs_f64();
        let per_op = |s: f64| if ops > 0 { s * 1e6 / ops as f64 } else { 0.0 };
        CpuReport {
            user_s: t.user.as_secs_f64(),
            sys_s: t.sys.as_secs_f64(),
            us_per_op: per_op(total),
            user_us_per_op: per_op(t.user.as_secs_f64()),
            sys_us_per_op: per_op(t.sys.as_secs_f64()),
            cores: if window_s > 0.0 {
                total / window_s
            } else {
                0.0
            },
        }
    }
}

/// What the run was asked to do (echoed into the report so results are self-describing).
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub label: String,
    pub servers: Vec<String>,
    pub mix: String,
    pub connections: usize,
    pub outstanding: usize,
    pub threads: usize,
    /// Offered rate in requests/s; 0 = closed loop.
    pub rate: f64,
    pub value_size: usize,
    pub keys: usize,
    pub multi_ops: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// One `write` per request (`--write-per-request`) instead of one per connection
    /// per loop turn.
    pub write_per_request: bool,
}

/// How requests went out: `write` calls against frames written, over the whole run
/// (warm-up, handshakes and closeSessions included).
#[derive(Debug, Clone, Serialize)]
pub struct IoReport {
    pub write_calls: u64,
    pub frames_written: u64,
    /// `write` calls that moved no bytes (socket full).
    pub write_would_block: u64,
    pub frames_per_write: f64,
}

impl IoReport {
    pub fn new(stats: &Stats) -> IoReport {
        IoReport {
            write_calls: stats.write_calls,
            frames_written: stats.frames_written,
            write_would_block: stats.write_would_block,
            frames_per_write: if stats.write_calls > 0 {
                stats.frames_written as f64 / stats.write_calls as f64
            } else {
                0.0
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: RunSettings,
    /// Requests answered inside the window (watch events not included).
    pub ops: u64,
    pub ops_per_s: f64,
    pub errors_total: u64,
    pub errors: Vec<ErrorReport>,
    /// Latency over every request kind together.
    pub all: OpReport,
    pub by_op: Vec<OpReport>,
    /// getData-with-watch requests answered, and watch notifications received.
    pub watches_set: u64,
    pub watch_events: u64,
    /// Watch events received after the reply to the setData that fired them (ZooKeeper
    /// delivers the event first; anything above 0 is an ordering difference).
    pub watch_events_after_reply: u64,
    pub loadgen_cpu: CpuReport,
    pub server_cpu: Option<CpuReport>,
    pub io: IoReport,
    /// With `--series-ms`: one point per interval of the window, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SeriesPoint>,
}

/// Completions ending in one interval of the window, and their latency.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    /// Wall-clock start of the interval, milliseconds since the Unix epoch.
    pub start_unix_ms: f64,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

fn summarize(op: &str, h: &Histogram<u64>, errors: u64, window_s: f64) -> OpReport {
    let us = |ns: u64| ns as f64 / 1000.0;
    let empty = h.is_empty();
    let q = |p: f64| {
        if empty {
            0.0
        } else {
            us(h.value_at_quantile(p))
        }
    };
    OpReport {
        op: op.to_string(),
        count: h.len(),
        errors,
        ops_per_s: h.len() as f64 / window_s,
        mean_us: if empty { 0.0 } else { h.mean() / 1000.0 },
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: if empty { 0.0 } else { us(h.max()) },
    }
}

fn error_name(code: i32) -> String {
    corral::proto::ErrorCode::from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| "Unknown".to_string())
}

impl Report {
    pub fn build(
        settings: RunSettings,
        stats: &Stats,
        window_s: f64,
        loadgen_cpu: CpuTimes,
        server_cpu: Option<CpuTimes>,
        window_start_unix_ms: f64,
    ) -> Report {
        let mut all = new_histogram();
        let mut by_op = Vec::new();
        for kind in OpKind::ALL {
            let h = &stats.hist[kind as usize];
            if h.is_empty() {
                continue;
            }
            if kind != OpKind::WatchEvent {
                all.add(h).expect("same bounds");
            }
            by_op.push(summarize(kind.name(), h, stats.error_count(kind), window_s));
        }
        let errors: Vec<ErrorReport> = stats
            .errors
            .iter()
            .map(|(&(k, code), &count)| ErrorReport {
                op: k.name().to_string(),
                code,
                name: error_name(code),
                count,
            })
            .collect();
        let errors_total = errors.iter().map(|e| e.count).sum();
        let ops = all.len();
        Report {
            settings,
            ops,
            ops_per_s: ops as f64 / window_s,
            errors_total,
            errors,
            all: summarize("all", &all, errors_total, window_s),
            by_op,
            watches_set: stats.count(OpKind::WatchSet),
            watch_events: stats.count(OpKind::WatchEvent),
            watch_events_after_reply: stats.events_after_reply,
            loadgen_cpu: CpuReport::new(loadgen_cpu, ops, window_s),
            server_cpu: server_cpu.map(|t| CpuReport::new(t, ops, window_s)),
            io: IoReport::new(stats),
            series: match stats.series_interval {
                None => Vec::new(),
                Some(iv) => stats
                    .series
                    .iter()
                    .enumerate()
                    .take_while(|(i, _)| (*i as f64) * iv.as_secs_f64() < window_s)
                    .map(|(i, h)| SeriesPoint {
                        start_unix_ms: window_start_unix_ms + i as f64 * iv.as_secs_f64() * 1e3,
                        count: h.len(),
                        p50_us: h.value_at_quantile(0.5),
                        p99_us: h.value_at_quantile(0.99),
                        max_us: h.max(),
                    })
                    .collect(),
            },
        }
    }

    /// The human-readable form.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let s = &self.settings;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{}servers {} | mix {} | {} conns x {} outstanding, {} thread(s) | {} | value {} B, {} keys",
            if s.label.is_empty() { String::new() } else { format!("[{}] ", s.label) },
            s.servers.join(","),
            s.mix,
            s.connections,
            s.outstanding,
            s.threads,
            if s.rate > 0.0 { format!("offered {:.0} req/s", s.rate) } else { "closed loop".to_string() },
            s.value_size,
            s.keys
        );
        let _ = writeln!(
            o,
            "measured {:.1} s after {:.1} s warm-up: {} requests, {:.0} req/s, {} errors",
            s.duration_s, s.warmup_s, self.ops, self.ops_per_s, self.errors_total
        );
        let _ = writeln!(
            o,
            "{:<15} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "count",
            "errors",
            "req/s",
            "mean us",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us"
        );
        for r in self.by_op.iter().chain(std::iter::once(&self.all)) {
            let _ = writeln!(
                o,
                "{:<15} {:>10} {:>8} {:>11.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
                r.op,
                r.count,
                r.errors,
                r.ops_per_s,
                r.mean_us,
                r.p50_us,
                r.p90_us,
                r.p99_us,
                r.p999_us,
                r.max_us
            );
        }
        for e in &self.errors {
            let _ = writeln!(
                o,
                "error: {} -> {} ({}) x {}",
                e.op, e.name, e.code, e.count
            );
        }
        if self.watches_set > 0 || self.watch_events > 0 {
            let _ = writeln!(
                o,
                "watches set {}, watch events received {} ({} after the reply that fired them)",
                self.watches_set, self.watch_events, self.watch_events_after_reply
            );
        }
        let c = &self.loadgen_cpu;
        let _ = writeln!(
            o,
            "loadgen CPU: {:.2} us/request (user {:.2} s + sys {:.2} s, {:.2} cores)",
            c.us_per_op, c.user_s, c.sys_s, c.cores
        );
        if let Some(c) = &self.server_cpu {
            let _ = writeln!(
                o,
                "server CPU:  {:.2} us/request = user {:.2} + sys {:.2} (user {:.2} s + sys {:.2} s, {:.2} cores)",
                c.us_per_op, c.user_us_per_op, c.sys_us_per_op, c.user_s, c.sys_s, c.cores
            );
        }
        let io = &self.io;
        let _ = writeln!(
            o,
            "writes: {} calls for {} frames ({:.2} frames/write{}), {} found the socket full",
            io.write_calls,
            io.frames_written,
            io.frames_per_write,
            if self.settings.write_per_request {
                ", one request per write"
            } else {
                ""
            },
            io.write_would_block
        );
        o
    }
}
