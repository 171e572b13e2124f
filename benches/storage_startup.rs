//! Start-up cost of the storage layer alone with ~1,000,000 znodes of 100 bytes:
//! writes a snapshot body shaped like a tree dump (path, data, 68-byte stat per
//! node) plus a log tail, then times `recover` (verify + stream the snapshot +
//! replay the log) through a decoder that only walks the records, and reports the
//! process RSS. The tree's own build time and memory come on top.
//!
//! `cargo bench --bench storage_startup` (env STARTUP_NODES, STARTUP_LOG_RECORDS).

use std::io::{BufReader, Read};
use std::time::Instant;

use corral::storage::{read_log, recover, write_snapshot, Log, LogConfig, SyncMode};

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let nodes = env("STARTUP_NODES", 1_000_000);
    let log_records = env("STARTUP_LOG_RECORDS", 100_000);
    let base = std::env::var("STARTUP_DIR").unwrap_or_else(|_| "/tmp".into());
    let d = tempfile::tempdir_in(base).unwrap();
    let dir = d.path();
    let data = [0x5au8; 100];
    let stat = [0u8; 68];

    // The log first (the snapshot is taken as of a zxid the log has reached).
    let t = Instant::now();
    let tail = read_log(dir, 0, |_| {}).unwrap();
    let mut log = Log::open(
        dir,
        LogConfig {
            segment_bytes: 64 << 20,
            sync: SyncMode::Fdatasync,
        },
        tail,
    )
    .unwrap();
    let snap_zxid = 1_000_000i64;
    let mut payload = Vec::with_capacity(160);
    for z in 1..=(snap_zxid + log_records as i64) {
        if z <= snap_zxid - 1000 {
            continue; // older log segments would have been purged
        }
        payload.clear();
        payload.extend_from_slice(format!("/bench/node-{z:010}").as_bytes());
        payload.extend_from_slice(&data);
        log.append(z, 1, &payload).unwrap();
        if z % 1000 == 0 {
            let job = log.begin_sync().unwrap().unwrap();
            log.finish_sync(job.run()).unwrap();
        }
    }
    if let Some(job) = log.begin_sync().unwrap() {
        log.finish_sync(job.run()).unwrap();
    }
    println!(
        "RSS with the log open after {} appends: {} MiB (peak {} MiB)",
        log_records + 1000,
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    drop(log);
    let log_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let info = write_snapshot(dir, snap_zxid, |w| {
        w.write_all(&(nodes as u64).to_le_bytes())?;
        for i in 0..nodes {
            let path = format!("/bench/node-{i:010}");
            w.write_all(&(path.len() as u32).to_le_bytes())?;
            w.write_all(path.as_bytes())?;
            w.write_all(&(data.len() as u32).to_le_bytes())?;
            w.write_all(&data)?;
            w.write_all(&stat)?;
        }
        Ok(())
    })
    .unwrap();
    let snap_secs = t.elapsed().as_secs_f64();

    // Reset the peak-RSS mark so it measures recovery alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = rss_kib("VmRSS:");
    let t = Instant::now();
    let mut seen_nodes = 0u64;
    let mut replayed_bytes = 0u64;
    let r = recover(
        dir,
        dir,
        |_, body| {
            let mut body = BufReader::with_capacity(1 << 16, body);
            let mut b8 = [0u8; 8];
            body.read_exact(&mut b8)?;
            let n = u64::from_le_bytes(b8);
            let mut buf = vec![0u8; 4096];
            for _ in 0..n {
                let mut b4 = [0u8; 4];
                body.read_exact(&mut b4)?;
                let pl = u32::from_le_bytes(b4) as usize;
                body.read_exact(&mut buf[..pl])?;
                body.read_exact(&mut b4)?;
                let dl = u32::from_le_bytes(b4) as usize;
                body.read_exact(&mut buf[..dl + 68])?;
                seen_nodes += 1;
            }
            Ok(())
        },
        |rec| replayed_bytes += rec.payload.len() as u64,
    )
    .unwrap();
    let recover_secs = t.elapsed().as_secs_f64();
    assert_eq!(seen_nodes, nodes as u64);
    assert_eq!(r.replayed, log_records as u64);
    println!(
        "nodes {nodes}, snapshot body {} MB, log tail {log_records} records ({} MB of payload)",
        info.body_bytes / 1_000_000,
        replayed_bytes / 1_000_000
    );
    println!("write log: {log_secs:.2} s; write snapshot: {snap_secs:.2} s");
    println!(
        "recover (verify + stream snapshot + replay log, page cache warm): {:.3} s",
        recover_secs
    );
    println!(
        "RSS before recover {} MiB, after {} MiB, peak {} MiB",
        rss_before / 1024,
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    // Opening the log for appending: the first segment is zero-filled on a helper
    // thread; the first append waits for it.
    let d2 = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
    let t = Instant::now();
    let tail = read_log(d2.path(), 0, |_| {}).unwrap();
    let mut log = Log::open(
        d2.path(),
        LogConfig {
            segment_bytes: 64 << 20,
            sync: SyncMode::Fdatasync,
        },
        tail,
    )
    .unwrap();
    let opened = t.elapsed();
    log.append(1, 1, b"first").unwrap();
    println!(
        "Log::open (64 MiB segments): {:.1} ms; first append (waits for the zero-filled segment): {:.1} ms more",
        opened.as_secs_f64() * 1e3,
        (t.elapsed() - opened).as_secs_f64() * 1e3
    );
    drop(log);

    // Cold cache figure: drop this file set from the page cache and recover again.
    for e in std::fs::read_dir(dir).unwrap() {
        let f = std::fs::File::open(e.unwrap().path()).unwrap();
        // SAFETY: plain syscall on an open fd.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
    }
    let t = Instant::now();
    let r = recover(
        dir,
        dir,
        |_, body| std::io::copy(body, &mut std::io::sink()).map(|_| ()),
        |_| {},
    )
    .unwrap();
    println!(
        "recover after fadvise(DONTNEED) (cold-ish cache, body only copied): {:.3} s, replayed {}",
        t.elapsed().as_secs_f64(),
        r.replayed
    );
}
