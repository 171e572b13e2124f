//! The `loadgen` binary: option parsing, key-space setup, the progress bar, and the
//! final report. The load itself runs in `loadgen::driver` worker threads; this
//! thread only sleeps, redraws the bar, and reads CPU counters at the window edges.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use loadgen::conn::Workload;
use loadgen::cpu::{self, CpuTimes};
use loadgen::driver::{self, RunConfig};
use loadgen::mix::Mix;
use loadgen::report::{Report, RunSettings};
use loadgen::setup::SyncClient;

/// Drive a ZooKeeper-protocol server with pipelined requests and report throughput
/// and latency per operation kind.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// Server addresses (host:port), comma-separated or repeated; connections are spread round-robin.
    #[arg(
        short,
        long = "server",
        value_delimiter = ',',
        default_value = "127.0.0.1:2181"
    )]
    servers: Vec<String>,
    /// Client connections (one session each).
    #[arg(short, long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(short, long, default_value_t = 4)]
    outstanding: usize,
    /// Worker threads (each runs one event loop over its share of the connections).
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Measured seconds.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds before the measurement (excluded from the figures).
    #[arg(short, long, default_value_t = 5.0)]
    warmup: f64,
    /// Per cent of getData among getData/setData (ignored when --mix or --ping is given).
    #[arg(short, long, default_value_t = 90)]
    read_ratio: u32,
    /// Weighted operation mix, e.g. `get:80,set:10,create-eph-seq:5,delete:5,multi:1,watch:1`.
    /// Operations: get set exists create create-eph create-seq create-eph-seq delete multi watch ping.
    #[arg(short, long)]
    mix: Option<String>,
    /// Ping only: the cheapest request a server can answer.
    #[arg(long, conflicts_with = "mix")]
    ping: bool,
    /// Bytes per znode value (getData reply size, setData/create payload).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys get/set/exists/multi choose from, uniformly.
    #[arg(short, long, default_value_t = 1000)]
    keys: usize,
    /// setData ops inside each multi.
    #[arg(long, default_value_t = 4)]
    multi_ops: usize,
    /// Offered load in requests/s over all connections (open loop, latency timed from
    /// when each request was due); 0 = closed loop, as fast as replies come.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many workload requests per connection (the run may then end
    /// before --duration; rates use the real length). 0 = no limit.
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Parent of everything loadgen creates.
    #[arg(long, default_value = "/loadgen")]
    root: String,
    /// Do not create the keys first (gets and sets of missing keys count as errors).
    #[arg(long)]
    skip_setup: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also print the server's CPU time per request (reads /proc/PID/stat); several
    /// pids (comma-separated or repeated, e.g. an ensemble's members) are summed.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Free-form label echoed into the report.
    #[arg(long, default_value = "")]
    label: String,
    /// End the run when a connection has waited this many seconds for any reply.
    #[arg(long, default_value_t = 10.0)]
    stall_timeout: f64,
    /// Session timeout asked for in the handshake, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    session_timeout_ms: i32,
    /// Seed for the operation and key choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also report completions and latency per this many milliseconds of the window
    /// (JSON `series`, wall-clock stamped, to line figures up with server events).
    #[arg(long, default_value_t = 0)]
    series_ms: u64,
    /// Write every request with a `write` call of its own, as a client that sends each
    /// request when it is issued does (default: one `write` per connection per loop
    /// turn, with every request that is ready). The report's `io` counts the calls.
    #[arg(long)]
    write_per_request: bool,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("loadgen: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(a: Args) -> Result<(), (u8, String)> {
    let usage = |m: String| (1u8, m);
    let mix = if a.ping {
        Mix::ping()
    } else if let Some(m) = &a.mix {
        Mix::parse(m).map_err(|e| usage(e.to_string()))?
    } else {
        Mix::read_ratio(a.read_ratio).map_err(|e| usage(e.to_string()))?
    };
    if a.connections == 0 || a.outstanding == 0 || a.keys == 0 {
        return Err(usage(
            "connections, outstanding and keys must be at least 1".into(),
        ));
    }
    if !(a.duration > 0.0 && a.warmup >= 0.0 && a.rate >= 0.0 && a.stall_timeout > 0.0) {
        return Err(usage(
            "duration, stall timeout must be > 0; warm-up and rate >= 0".into(),
        ));
    }
    let root = a.root.trim_end_matches('/').to_string();
    if !root.starts_with('/') || root.is_empty() {
        return Err(usage(format!(
            "--root {:?} must be an absolute path other than /",
            a.root
        )));
    }
    let run_id: u32 = rand::random();
    let keys: Vec<String> = (0..a.keys).map(|i| format!("{root}/k/{i:010}")).collect();
    let value = vec![b'x'; a.value_size];
    let connect_timeout = Duration::from_secs(5);

    if !a.skip_setup {
        let t = Instant::now();
        let mut c = SyncClient::connect(&a.servers[0], connect_timeout)
            .map_err(|e| (2, format!("setup: {e}")))?;
        c.set_read_timeout(loadgen::setup::SETUP_READ_TIMEOUT)
            .map_err(|e| (2, format!("setup: {e}")))?;
        let parents = [
            root.clone(),
            format!("{root}/k"),
            format!("{root}/n"),
            format!("{root}/w"),
        ];
        c.ensure_nodes(&parents, b"")
            .map_err(|e| (2, format!("setup: {e}")))?;
        c.ensure_nodes(&keys, &value)
            .map_err(|e| (2, format!("setup: {e}")))?;
        let _ = c.close();
        if !a.json {
            eprintln!(
                "setup: {} keys of {} B under {root}/k in {:.2} s",
                a.keys,
                a.value_size,
                t.elapsed().as_secs_f64()
            );
        }
    }

    let workload = Arc::new(Workload {
        mix: mix.clone(),
        keys: Arc::new(keys),
        value: Arc::new(value),
        node_prefix: format!("{root}/n/{run_id:08x}-"),
        watch_prefix: format!("{root}/w/{run_id:08x}-"),
        multi_ops: a.multi_ops,
        outstanding: a.outstanding,
        session_timeout_ms: a.session_timeout_ms,
        rate_per_conn: (a.rate > 0.0).then(|| a.rate / a.connections as f64),
        requests_per_conn: (a.requests > 0).then_some(a.requests),
    });
    let cfg = RunConfig {
        servers: a.servers.clone(),
        connections: a.connections,
        threads: a.threads,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        stall_timeout: Duration::from_secs_f64(a.stall_timeout),
        connect_timeout,
        workload,
        seed: a.seed,
        series_interval: (a.series_ms > 0).then(|| Duration::from_millis(a.series_ms)),
        write_per_request: a.write_per_request,
    };
    let settings = RunSettings {
        label: a.label.clone(),
        servers: a.servers.clone(),
        mix: mix.describe(),
        connections: a.connections,
        outstanding: a.outstanding,
        threads: a.threads.clamp(1, a.connections),
        rate: a.rate,
        value_size: a.value_size,
        keys: a.keys,
        multi_ops: a.multi_ops,
        warmup_s: a.warmup,
        duration_s: a.duration,
        write_per_request: a.write_per_request,
    };

    let handle = driver::start(cfg);
    let tl = handle.timeline;
    // Wall clock of the window's start (it lies `warmup` ahead of the run's start).
    let window_start_unix_ms = {
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let wall_ms = wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ahead = tl.measure_start.saturating_duration_since(now);
        let behind = now.saturating_duration_since(tl.measure_start);
        (wall_ms + ahead).saturating_sub(behind).as_secs_f64() * 1e3
    };
    let total_s = (tl.measure_end - tl.start).as_secs_f64();
    let bar = if a.no_progress || a.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some((total_s * 10.0) as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                .expect("static template"),
        );
        b
    };
    let mut cpu_start: Option<CpuTimes> = None;
    let mut srv_start: Option<CpuTimes> = None;
    let mut cpu_end: Option<CpuTimes> = None;
    let mut srv_end: Option<CpuTimes> = None;
    let mut last = (Instant::now(), 0u64);
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if cpu_start.is_none() && now >= tl.measure_start {
            cpu_start = Some(cpu::self_times());
            srv_start = cpu::processes_times(&a.server_pid);
        }
        if cpu_end.is_none() && now >= tl.measure_end {
            cpu_end = Some(cpu::self_times());
            srv_end = cpu::processes_times(&a.server_pid);
        }
        let done = handle.progress.completed.load(Ordering::Relaxed);
        if now.duration_since(last.0) >= Duration::from_millis(500) {
            let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            let phase = if now < tl.measure_start {
                "warm-up"
            } else if now < tl.measure_end {
                "measuring"
            } else {
                "closing"
            };
            bar.set_message(format!("{phase}: {done} replies, {rate:.0}/s"));
            last = (now, done);
        }
        bar.set_position((now.duration_since(tl.start).as_secs_f64() * 10.0) as u64);
    }
    bar.finish_and_clear();
    let (stats, window_s) = handle.join().map_err(|e| (2, format!("run failed: {e}")))?;
    let now_cpu = cpu::self_times();
    let cpu_used = cpu_end
        .unwrap_or(now_cpu)
        .since(&cpu_start.unwrap_or_default());
    let srv_used = match (
        srv_start,
        srv_end.or_else(|| cpu::processes_times(&a.server_pid)),
    ) {
        (Some(s), Some(e)) => Some(e.since(&s)),
        _ => None,
    };
    let mut settings = settings;
    settings.duration_s = window_s;
    let report = Report::build(
        settings,
        &stats,
        window_s.max(1e-9),
        cpu_used,
        srv_used,
        window_start_unix_ms,
    );
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
