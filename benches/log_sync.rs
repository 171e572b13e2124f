//! Log sync options on this disk: fdatasync and msync run on glommio's blocking
//! pool (how the sequencer would run a `SyncJob`), glommio's own io_uring
//! fdatasync, and fdatasync inline on the executor thread for reference.
//! Prints p50/p99 per sync and records/s per batch size, as a markdown table.
//!
//! `cargo bench --bench log_sync` (env LOG_SYNC_ROUNDS overrides the syncs per cell).

use std::time::{Duration, Instant};

use corral::storage::{read_log, Log, LogConfig, SyncMode};
use glommio::io::BufferedFile;
use glommio::LocalExecutorBuilder;

const PAYLOAD_BYTES: usize = 100;

#[derive(Clone, Copy, Debug)]
enum Method {
    FdatasyncBlockingPool,
    MsyncBlockingPool,
    GlommioFdatasync,
    FdatasyncInline,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::FdatasyncBlockingPool => "fdatasync, glommio blocking pool",
            Method::MsyncBlockingPool => "msync, glommio blocking pool",
            Method::GlommioFdatasync => "glommio io_uring fdatasync",
            Method::FdatasyncInline => "fdatasync inline (blocks executor)",
        }
    }
    fn mode(self) -> SyncMode {
        match self {
            Method::MsyncBlockingPool => SyncMode::Msync,
            Method::GlommioFdatasync => SyncMode::None,
            _ => SyncMode::Fdatasync,
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Runner {
    method: Method,
    log: Log,
    zxid: i64,
    lat: Vec<Duration>,
    busy: Duration,
    gfile: Option<(std::path::PathBuf, BufferedFile)>,
    _dir: tempfile::TempDir,
}

impl Runner {
    fn new(base: &str, method: Method) -> Runner {
        let dir = tempfile::tempdir_in(base).unwrap();
        let tail = read_log(dir.path(), 0, |_| {}).unwrap();
        let log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 64 << 20,
                sync: method.mode(),
            },
            tail,
        )
        .unwrap();
        Runner {
            method,
            log,
            zxid: 0,
            lat: Vec::new(),
            busy: Duration::ZERO,
            gfile: None,
            _dir: dir,
        }
    }

    /// One batch: append `batch` records, then sync them; time both.
    async fn round(&mut self, batch: usize, payload: &[u8]) {
        let start = Instant::now();
        for _ in 0..batch {
            self.zxid += 1;
            self.log.append(self.zxid, 1, payload).unwrap();
        }
        let t = Instant::now();
        let job = self.log.begin_sync().unwrap().unwrap();
        let done = match self.method {
            Method::FdatasyncBlockingPool | Method::MsyncBlockingPool => {
                glommio::executor().spawn_blocking(move || job.run()).await
            }
            Method::FdatasyncInline => job.run(),
            Method::GlommioFdatasync => {
                let p = self.log.active_segment_path().unwrap().to_path_buf();
                if self.gfile.as_ref().map(|g| &g.0) != Some(&p) {
                    if let Some((_, f)) = self.gfile.take() {
                        f.close().await.unwrap();
                    }
                    self.gfile = Some((p.clone(), BufferedFile::open(&p).await.unwrap()));
                }
                self.gfile.as_ref().unwrap().1.fdatasync().await.unwrap();
                job.run() // SyncMode::None: only hands the watermark back
            }
        };
        assert_eq!(self.log.finish_sync(done).unwrap().zxid(), self.zxid);
        self.lat.push(t.elapsed());
        self.busy += start.elapsed();
    }

    async fn report(mut self, batch: usize) {
        if let Some((_, f)) = self.gfile.take() {
            f.close().await.unwrap();
        }
        self.lat.sort();
        let rps = (self.lat.len() * batch) as f64 / self.busy.as_secs_f64();
        println!(
            "| {} | {batch} | {:.3} ms | {:.3} ms | {:.0} |",
            self.method.name(),
            pct(&self.lat, 0.5).as_secs_f64() * 1e3,
            pct(&self.lat, 0.99).as_secs_f64() * 1e3,
            rps
        );
    }
}

fn main() {
    let rounds: usize = std::env::var("LOG_SYNC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let base = std::env::var("LOG_SYNC_DIR").unwrap_or_else(|_| "/tmp".into());
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            println!("| method | batch (records of {PAYLOAD_BYTES} B) | p50 per sync | p99 per sync | records/s |");
            println!("|---|---|---|---|---|");
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!("(load average at start: {})", load.trim());
            let payload = vec![0xabu8; PAYLOAD_BYTES];
            for batch in [1usize, 16, 128, 1024] {
                // Methods interleaved round by round so machine noise hits all alike.
                let mut runners: Vec<Runner> = [
                    Method::FdatasyncBlockingPool,
                    Method::MsyncBlockingPool,
                    Method::GlommioFdatasync,
                    Method::FdatasyncInline,
                ]
                .into_iter()
                .map(|m| Runner::new(&base, m))
                .collect();
                let n = if batch >= 1024 { rounds / 4 } else { rounds };
                for _ in 0..n {
                    for r in runners.iter_mut() {
                        r.round(batch, &payload).await;
                    }
                }
                for r in runners {
                    r.report(batch).await;
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
