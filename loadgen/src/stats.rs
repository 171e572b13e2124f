//! Per-worker counters and latency histograms, merged across workers at the end.
//!
//! Owned by one worker thread (no sharing, no atomics on the hot path). A
//! completion counts only if its request started and finished inside the
//! measurement window, so warm-up and the drain at the end never leak into the
//! figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::mix::OpKind;

/// Highest latency a histogram can hold, in nanoseconds (larger values saturate).
pub const LATENCY_NS_MAX: u64 = 120_000_000_000;
/// Significant decimal digits kept by the histograms.
pub const HISTOGRAM_SIGFIGS: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIGS).expect("static bounds")
}

/// Counts and latencies for one worker (or, after [`Stats::merge`], for a run).
pub struct Stats {
    pub window_start: Instant,
    pub window_end: Instant,
    /// Latency in nanoseconds, per kind (indexed by `OpKind as usize`).
    pub hist: Vec<Histogram<u64>>,
    /// Completions that returned an error, keyed by (kind, ZooKeeper error code).
    pub errors: BTreeMap<(OpKind, i32), u64>,
    /// Replies of any kind received at any time (drives the progress bar).
    pub completed_total: u64,
    /// Watch events that arrived after the reply to the setData that fired them
    /// (any time, not only in the window): an ordering the reference never shows.
    pub events_after_reply: u64,
    /// With `--series-ms`: the window cut into intervals of this length, and the
    /// latency (µs, every kind but watch events) of completions ending in each.
    pub series_interval: Option<Duration>,
    pub series: Vec<Histogram<u64>>,
    /// `write` calls that moved bytes, over the whole run (warm-up and drain included).
    pub write_calls: u64,
    /// Frames (requests, handshakes, closeSessions) written in full, over the whole run.
    pub frames_written: u64,
    /// `write` calls that found the socket full (no bytes moved), over the whole run.
    pub write_would_block: u64,
}

/// Latency bounds of a series interval's histogram, in microseconds (coarser than
/// the run's, as there is one per interval).
pub const SERIES_US_MAX: u64 = 60_000_000;

impl Stats {
    pub fn new(window_start: Instant, window_end: Instant) -> Stats {
        Stats {
            window_start,
            window_end,
            hist: (0..OpKind::COUNT).map(|_| new_histogram()).collect(),
            errors: BTreeMap::new(),
            completed_total: 0,
            events_after_reply: 0,
            series_interval: None,
            series: Vec::new(),
            write_calls: 0,
            frames_written: 0,
            write_would_block: 0,
        }
    }

    /// Also keeps a latency histogram per `interval` of the window.
    pub fn with_series(mut self, interval: Option<Duration>) -> Stats {
        if let Some(iv) = interval.filter(|iv| !iv.is_zero()) {
            let n = (self.window_end - self.window_start).as_nanos() / iv.as_nanos() + 1;
            self.series = (0..n)
                .map(|_| Histogram::new_with_bounds(1, SERIES_US_MAX, 2).expect("static bounds"))
                .collect();
            self.series_interval = Some(iv);
        }
        self
    }

    fn in_window(&self, start: Instant, end: Instant) -> bool {
        start >= self.window_start && end <= self.window_end
    }

    /// Records one completion. `err` is the ZooKeeper error code (0 = success);
    /// errors are counted and also timed, since the server did answer.
    #[inline]
    pub fn record(&mut self, kind: OpKind, start: Instant, end: Instant, err: i32) {
        self.completed_total += 1;
        if !self.in_window(start, end) {
            return;
        }
        let ns = end.saturating_duration_since(start).as_nanos() as u64;
        self.hist[kind as usize].saturating_record(ns.max(1));
        if let Some(iv) = self.series_interval {
            if kind != OpKind::WatchEvent {
                let i = (end - self.window_start).as_nanos() / iv.as_nanos();
                if let Some(h) = self.series.get_mut(i as usize) {
                    h.saturating_record((ns / 1000).max(1));
                }
            }
        }
        if err != 0 {
            *self.errors.entry((kind, err)).or_insert(0) += 1;
        }
    }

    /// Folds `other` (another worker's stats over the same window) into `self`.
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            a.add(b).expect("histograms share bounds");
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        self.completed_total += other.completed_total;
        self.events_after_reply += other.events_after_reply;
        self.write_calls += other.write_calls;
        self.frames_written += other.frames_written;
        self.write_would_block += other.write_would_block;
        for (a, b) in self.series.iter_mut().zip(&other.series) {
            a.add(b).expect("series histograms share bounds");
        }
    }

    /// Completions of `kind` inside the window.
    pub fn count(&self, kind: OpKind) -> u64 {
        self.hist[kind as usize].len()
    }

    pub fn error_count(&self, kind: OpKind) -> u64 {
        self.errors
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn window_excludes_warmup_and_drain() {
        let t0 = Instant::now();
        let ws = t0 + Duration::from_secs(1);
        let we = t0 + Duration::from_secs(2);
        let mut s = Stats::new(ws, we);
        s.record(OpKind::Get, t0, ws, 0); // started in warm-up
        s.record(OpKind::Get, ws, ws + Duration::from_millis(1), 0);
        s.record(
            OpKind::Get,
            we - Duration::from_millis(1),
            we + Duration::from_millis(1),
            0,
        );
        s.record(OpKind::Set, ws, ws + Duration::from_millis(2), -101);
        assert_eq!(s.count(OpKind::Get), 1);
        assert_eq!(s.count(OpKind::Set), 1);
        assert_eq!(s.error_count(OpKind::Set), 1);
        assert_eq!(s.completed_total, 4);
        let mut m = Stats::new(ws, we);
        m.merge(&s);
        m.merge(&s);
        assert_eq!(m.count(OpKind::Get), 2);
        assert_eq!(m.errors[&(OpKind::Set, -101)], 2);
    }

    #[test]
    fn series_files_completions_by_the_interval_they_end_in() {
        let ws = Instant::now();
        let we = ws + Duration::from_secs(1);
        let ms = Duration::from_millis;
        let mut s = Stats::new(ws, we).with_series(Some(ms(100)));
        assert_eq!(s.series.len(), 11);
        s.record(OpKind::Set, ws, ws + ms(50), 0); // interval 0, 50 ms
        s.record(OpKind::Set, ws + ms(150), ws + ms(250), 0); // interval 2, 100 ms
        s.record(OpKind::Get, ws + ms(210), ws + ms(260), 0); // interval 2, 50 ms
        s.record(OpKind::WatchEvent, ws, ws + ms(260), 0); // events are not requests
        let counts: Vec<u64> = s.series.iter().map(|h| h.len()).collect();
        assert_eq!(counts[..3], [1, 0, 2]);
        assert!(s.series[2].max() >= 99_000 && s.series[2].max() <= 101_000);
        let mut m = Stats::new(ws, we).with_series(Some(ms(100)));
        m.merge(&s);
        m.merge(&s);
        assert_eq!(m.series[2].len(), 4);
        assert!(Stats::new(ws, we).with_series(None).series.is_empty());
    }
}
