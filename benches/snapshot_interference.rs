//! Does writing a big snapshot hurt the log's group commit? One glommio executor
//! appends batches of 16 records and syncs each (fdatasync on the blocking pool)
//! while, on another thread, nothing / `write_snapshot` (writeback started every
//! 8 MiB) / a plain buffered write + fsync of the same size runs. Prints records/s
//! and p50/p99 per sync for each phase, phases interleaved over several rounds.
//!
//! `cargo bench --bench snapshot_interference` (env SNAP_MB, default 200; ROUNDS, 3).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::storage::{read_log, write_snapshot, Log, LogConfig, SyncMode};
use glommio::LocalExecutorBuilder;

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Quiet,
    Snapshot,
    PlainWrite,
}

fn background(phase: Phase, dir: std::path::PathBuf, mb: usize, done: Arc<AtomicBool>) {
    let chunk = vec![0x33u8; 1 << 20];
    match phase {
        Phase::Quiet => std::thread::sleep(Duration::from_millis(1500)),
        Phase::Snapshot => {
            write_snapshot(&dir, 1, |w| {
                for _ in 0..mb {
                    w.write_all(&chunk)?;
                }
                Ok(())
            })
            .unwrap();
        }
        Phase::PlainWrite => {
            let f = std::fs::File::create(dir.join("plain.bin")).unwrap();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            for _ in 0..mb {
                w.write_all(&chunk).unwrap();
            }
            w.into_inner().unwrap().sync_all().unwrap();
        }
    }
    done.store(true, Ordering::Release);
}

fn main() {
    let mb: usize = std::env::var("SNAP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let d = tempfile::tempdir_in("/tmp").unwrap();
            let tail = read_log(d.path(), 0, |_| {}).unwrap();
            let cfg = LogConfig {
                segment_bytes: 64 << 20,
                sync: SyncMode::Fdatasync,
            };
            let mut log = Log::open(d.path(), cfg, tail).unwrap();
            let payload = [0xabu8; 100];
            let mut z = 0i64;
            let mut stats: Vec<(Phase, Vec<Duration>, u64, Duration)> = Vec::new();
            for _ in 0..rounds {
                for phase in [Phase::Quiet, Phase::Snapshot, Phase::PlainWrite] {
                    let snapdir = tempfile::tempdir_in("/tmp").unwrap();
                    let done = Arc::new(AtomicBool::new(false));
                    let t = {
                        let (dir, done) = (snapdir.path().to_path_buf(), done.clone());
                        std::thread::spawn(move || background(phase, dir, mb, done))
                    };
                    let start = Instant::now();
                    let (mut lat, mut recs) = (Vec::new(), 0u64);
                    while !done.load(Ordering::Acquire) {
                        for _ in 0..16 {
                            z += 1;
                            log.append(z, 1, &payload).unwrap();
                        }
                        recs += 16;
                        let s = Instant::now();
                        let job = log.begin_sync().unwrap().unwrap();
                        let r = glommio::executor().spawn_blocking(move || job.run()).await;
                        log.finish_sync(r).unwrap();
                        lat.push(s.elapsed());
                    }
                    stats.push((phase, lat, recs, start.elapsed()));
                    t.join().unwrap();
                }
            }
            println!("| background | syncs | records/s | p50 per sync | p99 per sync |");
            println!("|---|---|---|---|---|");
            for (phase, name) in [
                (Phase::Quiet, "nothing"),
                (Phase::Snapshot, "write_snapshot (writeback every 8 MiB)"),
                (Phase::PlainWrite, "plain buffered write + one fsync"),
            ] {
                let mut lat: Vec<Duration> = Vec::new();
                let (mut recs, mut time) = (0u64, Duration::ZERO);
                for (p, l, r, t) in &stats {
                    if *p == phase {
                        lat.extend(l);
                        recs += r;
                        time += *t;
                    }
                }
                lat.sort();
                let pct = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
                println!(
                    "| {name} ({mb} MB) | {} | {:.0} | {:.3} ms | {:.3} ms |",
                    lat.len(),
                    recs as f64 / time.as_secs_f64(),
                    pct(0.5),
                    pct(0.99)
                );
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
