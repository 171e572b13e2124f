//! The Prometheus endpoint's body: the reference's metric names (its
//! PrometheusMetricsProvider exports each gauge of `registerMetrics` and each
//! summary of `ServerMetrics` under its bare name) beside corral's own, prefixed
//! `corral_`. Pure: renders a [`View`] gathered on the admin thread; the only IO is
//! the caller's.
//!
//! Encoding is `prometheus-client`'s OpenMetrics text, from a registry built per
//! scrape around one collector that reads the view (the values already live in
//! atomics and reports, so nothing is kept between scrapes). That crate has no
//! summary type, so the reference's summaries (`readlatency`, `updatelatency`,
//! `fsynctime`, `snapshottime`) are written here in the same format before the
//! `# EOF` line. Their quantiles are estimated from power-of-two buckets over the
//! whole run (since start or the last `srst`), where the reference's summaries
//! decay over a ten-minute window.
//!
//! The reference's counters (its ServerMetrics counters, e.g. `proposal_count`,
//! `bytes_received_count`) keep their bare names: OpenMetrics wants a counter's
//! samples named `<name>_total`, which is not the reference's name, so they are
//! typed `unknown` (valid OpenMetrics, and read by Prometheus as untyped).
//!
//! Reference metrics left out, with why: `connection_drop_probability`,
//! `connection_token_deficit` and the other throttling ones (corral has no
//! connection throttling); `outstanding_tls_handshake` (not counted yet);
//! the learner queue and per-follower ack-latency summary sets
//! (`learner_handler_qp_*`, `ack_latency`, `learner_request_processor_queue_size`:
//! not measured); the request-pipeline queue summaries
//! (`prep_processor_*`, `commit_processor_*`, `sync_processor_*`,
//! `*_session_queue*`: corral has no such processors); `jvm_*` (no JVM);
//! quota and per-namespace gauge sets (not measured).

use super::{MonitorValue, View};
use crate::server::stats::{HistogramSnapshot, HISTOGRAM_BUCKETS_COUNT};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Write;

/// The HTTP content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram buckets of corral's own histograms past this many are folded into
/// `+Inf` (2^24 µs ≈ 17 s, 2^24 writes per batch: beyond anything seen).
const EXPORTED_BUCKETS_COUNT: usize = 25;

/// One scrape's values, handed to the registry as a collector.
#[derive(Debug)]
struct Scrape {
    gauges: Vec<(&'static str, f64)>,
    /// The reference's counters, typed `unknown` to keep their bare names.
    counters: Vec<(&'static str, i64)>,
    /// (core name, messages waiting in its inbox)
    inbox_depths: Vec<(String, i64)>,
    /// (name, help, histogram, divisor to the exported unit)
    histograms: Vec<(&'static str, &'static str, HistogramSnapshot, f64)>,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, v) in &self.gauges {
            let g = ConstGauge::new(*v);
            g.encode(enc.encode_descriptor(name, name, None, g.metric_type())?)?;
        }
        for (name, v) in &self.counters {
            let m = enc.encode_descriptor(name, name, None, MetricType::Unknown)?;
            ConstGauge::new(*v).encode(m)?;
        }
        let kind = ConstGauge::new(0i64).metric_type();
        let mut family = enc.encode_descriptor(
            "corral_inbox_depth",
            "Messages waiting in a core's inbox (the sequencer's, each shard's)",
            None,
            kind,
        )?;
        for (core, depth) in &self.inbox_depths {
            let labels = [("core", core.as_str())];
            ConstGauge::new(*depth).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, h, div) in &self.histograms {
            let buckets = exported_buckets(h, *div);
            let m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            encode_histogram(m, h.sum as f64 / div, h.count, &buckets)?;
        }
        Ok(())
    }
}

fn encode_histogram(
    mut m: prometheus_client::encoding::MetricEncoder,
    sum: f64,
    count: u64,
    buckets: &[(f64, u64)],
) -> Result<(), std::fmt::Error> {
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, buckets, None)
}

/// (upper bound in the exported unit, count in that bucket), the last bound +Inf.
fn exported_buckets(h: &HistogramSnapshot, div: f64) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = (0..EXPORTED_BUCKETS_COUNT - 1)
        .map(|i| (HistogramSnapshot::upper_bound(i) as f64 / div, h.buckets[i]))
        .collect();
    let rest: u64 = h.buckets[EXPORTED_BUCKETS_COUNT - 1..HISTOGRAM_BUCKETS_COUNT]
        .iter()
        .sum();
    out.push((f64::INFINITY, rest));
    out
}

/// The reference's summaries: name, histogram, divisor to milliseconds, quantiles.
fn summaries(v: &View) -> Vec<(&'static str, HistogramSnapshot, u64, &'static [f64])> {
    const ADVANCED: &[f64] = &[0.5, 0.9, 0.99];
    const BASIC: &[f64] = &[0.5];
    vec![
        (
            "readlatency",
            v.stats.merged(|s| &s.read_latency_us),
            1000,
            ADVANCED,
        ),
        (
            "updatelatency",
            v.stats.merged(|s| &s.update_latency_us),
            1000,
            ADVANCED,
        ),
        ("fsynctime", v.stats.log_sync_us.snapshot(), 1000, BASIC),
        ("snapshottime", v.stats.snapshot_ms.snapshot(), 1, BASIC),
        ("election_time", v.stats.election_ms.snapshot(), 1, BASIC),
        (
            "follower_sync_time",
            v.stats.follower_sync_ms.snapshot(),
            1,
            BASIC,
        ),
        (
            "observer_sync_time",
            v.stats.observer_sync_ms.snapshot(),
            1,
            BASIC,
        ),
    ]
}

fn write_summaries(out: &mut String, v: &View) {
    for (name, h, div, quantiles) in summaries(v) {
        let _ = writeln!(out, "# HELP {name} {name}");
        let _ = writeln!(out, "# TYPE {name} summary");
        for q in quantiles {
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", h.quantile(*q) / div);
        }
        let _ = writeln!(out, "{name}_sum {}", h.sum / div);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
}

fn scrape(v: &View) -> Scrape {
    let gauges = v
        .gauge_values()
        .into_iter()
        .filter_map(|(k, val)| match val {
            MonitorValue::Int(i) => Some((k, i as f64)),
            MonitorValue::Float(f) => Some((k, f)),
            MonitorValue::Str(_) => None,
        })
        .collect();
    let mut inbox_depths = vec![(
        "sequencer".to_string(),
        v.stats
            .sequencer_inbox_depth
            .load(std::sync::atomic::Ordering::Relaxed) as i64,
    )];
    for s in &v.shards {
        inbox_depths.push((format!("shard-{}", s.shard), s.inbox_depth as i64));
    }
    let histograms = vec![
        (
            "corral_commit_batch_size",
            "Writes per commit batch the sequencer published",
            v.stats.commit_batch_size.snapshot(),
            1.0,
        ),
        (
            "corral_log_sync_seconds",
            "Time of one transaction-log fsync",
            v.stats.log_sync_us.snapshot(),
            1e6,
        ),
        (
            "corral_snapshot_seconds",
            "Time to write one snapshot (and purge old files)",
            v.stats.snapshot_ms.snapshot(),
            1e3,
        ),
        (
            "corral_read_latency_seconds",
            "Time from a read's arrival to its reply",
            v.stats.merged(|s| &s.read_latency_us),
            1e6,
        ),
        (
            "corral_update_latency_seconds",
            "Time from a write's arrival to its reply",
            v.stats.merged(|s| &s.update_latency_us),
            1e6,
        ),
    ];
    Scrape {
        gauges,
        counters: v.counter_values(),
        inbox_depths,
        histograms,
    }
}

/// The whole `/metrics` body.
pub fn render(v: &View) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape(v)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
    write_summaries(&mut out, v);
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::server::msg::{SequencerReport, ShardReport};
    use crate::server::stats::ServerStats;

    #[test]
    fn reference_names_corral_names_and_eof() {
        let cfg = Config::embedded_default();
        let stats = ServerStats::new(2);
        stats.shards[0].record_reply_latency_us(1500, false);
        stats.commit_batch_size.record(3);
        let v = View {
            cfg: &cfg,
            stats: &stats,
            sequencer: Some(SequencerReport {
                node_count: 9,
                ..Default::default()
            }),
            shards: vec![
                ShardReport {
                    shard: 0,
                    inbox_depth: 2,
                    ..Default::default()
                },
                ShardReport {
                    shard: 1,
                    ..Default::default()
                },
            ],
        };
        let text = render(&v);
        assert!(
            text.contains("# TYPE znode_count gauge\nznode_count 9"),
            "{text}"
        );
        assert!(
            text.contains("corral_inbox_depth{core=\"shard-0\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE readlatency summary\n"), "{text}");
        assert!(
            text.contains("# TYPE bytes_received_count unknown\nbytes_received_count 0\n"),
            "{text}"
        );
        assert!(text.contains("readlatency_count 1\n"), "{text}");
        assert!(
            text.contains("corral_commit_batch_size_count 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
