//! Recovery on real files: torn and truncated tails, flipped bytes, corrupt
//! snapshots, empty and foreign data dirs. Each case asserts the exact message and
//! that every acknowledged (synced) record survives where recovery is possible.

use std::fs::{self, OpenOptions};

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use corral::storage::log::{
    record_bytes, RECORD_HEADER_BYTES, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES,
};
use corral::storage::{
    log_file_name, read_log, recover, snapshot_file_name, write_snapshot, Log, LogConfig, Recovery,
    StorageError, SyncMode,
};

const PAYLOAD_BYTES: usize = 100;
/// 64 KiB segments of 128-byte records: 511 records per segment.
const PER_SEGMENT: i64 = ((SEGMENT_BYTES_MIN as usize - SEGMENT_HEADER_BYTES) / 128) as i64;

fn payload(z: i64) -> Vec<u8> {
    // Every byte nonzero, so "last nonzero byte" arithmetic is exact.
    (0..PAYLOAD_BYTES)
        .map(|i| ((z as usize + i) % 250 + 1) as u8)
        .collect()
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES_MIN,
        sync: SyncMode::Fdatasync,
    }
}

/// Appends zxids `from..=to` (synced in batches of 50) onto whatever the dir holds.
fn write_records(dir: &Path, from: i64, to: i64) {
    let tail = read_log(dir, 0, |_| {}).unwrap();
    let mut log = Log::open(dir, cfg(), tail).unwrap();
    for z in from..=to {
        log.append(z, 1, &payload(z)).unwrap();
        if z % 50 == 0 || z == to {
            let job = log.begin_sync().unwrap().unwrap();
            assert_eq!(log.finish_sync(job.run()).unwrap().zxid(), z);
        }
    }
}

/// Offset of the record with `zxid` when segments start at 1, 1+PER_SEGMENT, ...
fn locate(dir: &Path, zxid: i64) -> (PathBuf, u64) {
    let seg = (zxid - 1) / PER_SEGMENT;
    let first = 1 + seg * PER_SEGMENT;
    let off =
        SEGMENT_HEADER_BYTES as u64 + (zxid - first) as u64 * record_bytes(PAYLOAD_BYTES) as u64;
    (dir.join(log_file_name(first)), off)
}

fn recover_all(dir: &Path) -> Result<(Recovery, Vec<u8>, Vec<i64>), StorageError> {
    let mut snap = Vec::new();
    let mut zxids = Vec::new();
    let r = recover(
        dir,
        dir,
        |_, body| body.read_to_end(&mut snap).map(|_| ()),
        |rec| {
            assert_eq!(
                rec.payload,
                &payload(rec.zxid)[..],
                "payload of {:#x}",
                rec.zxid
            );
            zxids.push(rec.zxid)
        },
    )?;
    Ok((r, snap, zxids))
}

fn flip(path: &Path, off: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], off).unwrap();
}

#[test]
fn empty_and_missing_data_dirs_are_a_fresh_start() {
    let d = tempfile::tempdir().unwrap();
    for dir in [d.path().to_path_buf(), d.path().join("not/yet/there")] {
        let (r, snap, zxids) = recover_all(&dir).unwrap();
        assert!(r.snapshot.is_none() && snap.is_empty() && zxids.is_empty());
        assert_eq!(r.tail.last_zxid, 0);
        let mut log = Log::open(&dir, cfg(), r.tail).unwrap();
        log.append(1, 1, &payload(1)).unwrap();
        let job = log.begin_sync().unwrap().unwrap();
        log.finish_sync(job.run()).unwrap();
    }
}

#[test]
fn torn_last_record_is_truncated_and_nothing_acknowledged_is_lost() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 1200);
    // Record 1200's payload only half reached the disk.
    let (path, off) = locate(d.path(), 1200);
    let half = off + RECORD_HEADER_BYTES as u64 + 50;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&[0u8; 50], half)
        .unwrap();

    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(zxids, (1..=1199).collect::<Vec<_>>());
    assert_eq!(r.tail.last_zxid, 1199);
    let torn = r.tail.torn.as_ref().unwrap();
    assert_eq!(
        torn.to_string(),
        format!(
            "{}: truncated 74 bytes of a torn record at offset {off} (record checksum mismatch)",
            path.display()
        )
    );
    // The tail was zeroed: a second recovery is clean, and the log continues.
    let mut log = Log::open(d.path(), cfg(), r.tail).unwrap();
    log.append(1200, 1, &payload(1200)).unwrap();
    let job = log.begin_sync().unwrap().unwrap();
    log.finish_sync(job.run()).unwrap();
    drop(log);
    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert!(r.tail.torn.is_none());
    assert_eq!(zxids, (1..=1200).collect::<Vec<_>>());
}

/// Power lost while a batch that spanned a roll was syncing: the last record of
/// the first segment is torn and none of the next segment's records reached the
/// disk whole. The next segment is removed with the torn record, named in the
/// message; every record before it is kept, and the log goes on.
#[test]
fn torn_record_before_a_roll_whose_next_segment_holds_nothing_valid() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, PER_SEGMENT + 9);
    let zero_half = |zxid: i64| {
        let (path, off) = locate(d.path(), zxid);
        let half = off + RECORD_HEADER_BYTES as u64 + 50;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0u8; 50], half).unwrap();
        (path, off)
    };
    let (path, off) = zero_half(PER_SEGMENT);
    let mut next = PathBuf::new();
    for z in PER_SEGMENT + 1..=PER_SEGMENT + 9 {
        next = zero_half(z).0;
    }
    assert_eq!(next, d.path().join(log_file_name(PER_SEGMENT + 1)));

    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(zxids, (1..PER_SEGMENT).collect::<Vec<_>>());
    assert_eq!(
        r.tail.torn.as_ref().unwrap().to_string(),
        format!(
            "{}: truncated 74 bytes of a torn record at offset {off} (record checksum \
             mismatch); removed the later segment(s) it had rolled to, which hold no valid \
             record (a sync that never finished): {}",
            path.display(),
            next.display()
        )
    );
    assert!(!next.exists());
    let mut log = Log::open(d.path(), cfg(), r.tail).unwrap();
    for z in PER_SEGMENT..=PER_SEGMENT + 9 {
        log.append(z, 1, &payload(z)).unwrap();
    }
    let job = log.begin_sync().unwrap().unwrap();
    log.finish_sync(job.run()).unwrap();
    drop(log);
    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert!(r.tail.torn.is_none());
    assert_eq!(zxids, (1..=PER_SEGMENT + 9).collect::<Vec<_>>());
}

#[test]
fn truncated_file_in_the_middle_of_the_last_record() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 30);
    let (path, off) = locate(d.path(), 30);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(off + 64)
        .unwrap();
    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(zxids, (1..=29).collect::<Vec<_>>());
    assert_eq!(
        r.tail.torn.unwrap().to_string(),
        format!(
            "{}: truncated 64 bytes of a torn record at offset {off} (record length 100 runs past the end of the segment)",
            path.display()
        )
    );
}

#[test]
fn file_cut_right_after_a_record_without_its_padding() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 30);
    let (path, off) = locate(d.path(), 30);
    let end = off + (RECORD_HEADER_BYTES + PAYLOAD_BYTES) as u64;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(end)
        .unwrap();
    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(zxids, (1..=30).collect::<Vec<_>>());
    assert!(r.tail.torn.is_none());
}

#[test]
fn flipped_byte_in_the_middle_of_a_segment_stops_start_up() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 1200);
    // In a sealed segment and in the last one: valid records follow, so it is
    // corruption, not a torn tail.
    for zxid in [200i64, 1100] {
        let (path, off) = locate(d.path(), zxid);
        flip(&path, off + RECORD_HEADER_BYTES as u64 + 10);
        let err = recover_all(d.path()).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: corrupt at byte offset {off}: record checksum mismatch (a valid record with zxid {:#x} follows at offset {})",
                path.display(),
                zxid + 1,
                off + 128
            )
        );
        flip(&path, off + RECORD_HEADER_BYTES as u64 + 10); // undo
    }
    let (_, _, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(zxids.len(), 1200);
}

#[test]
fn flipped_length_byte_is_not_mistaken_for_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 100);
    let (path, off) = locate(d.path(), 40);
    flip(&path, off + 6); // length becomes huge
    let err = recover_all(d.path()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: corrupt at byte offset {off}: record length 4194404 runs past the end of the segment (a valid record with zxid 0x29 follows at offset {})",
            path.display(),
            off + 128
        )
    );
}

#[test]
fn corrupt_newest_snapshot_falls_back_to_an_older_one_plus_the_log() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 300);
    write_snapshot(d.path(), 100, |w| w.write_all(b"state@100")).unwrap();
    let newest = write_snapshot(d.path(), 250, |w| w.write_all(&[7u8; 5000])).unwrap();
    flip(&newest.path, 32 + 2500);

    let (r, snap, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(snap, b"state@100");
    assert_eq!(r.snapshot.as_ref().unwrap().zxid, 100);
    assert_eq!(zxids, (101..=300).collect::<Vec<_>>());
    assert_eq!(r.tail.last_zxid, 300);
    assert_eq!(r.corrupt_snapshots.len(), 1);
    assert_eq!(
        r.corrupt_snapshots[0].to_string(),
        format!(
            "{}: corrupt at byte offset 32: body checksum mismatch over bytes 32..5032",
            newest.path.display()
        )
    );
}

#[test]
fn corrupt_snapshot_without_a_way_around_it_stops_start_up() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 1200);
    let snap = write_snapshot(d.path(), 600, |w| w.write_all(&[7u8; 5000])).unwrap();
    // The log before the snapshot was purged; the snapshot's footer is damaged.
    fs::remove_file(d.path().join(log_file_name(1))).unwrap();
    flip(&snap.path, 32 + 5000 + 3);
    let err = recover_all(d.path()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: corrupt at byte offset 5032: snapshot footer checksum mismatch (truncated or damaged file); falling back to an older state failed: {}: corrupt at byte offset 32: zxid 0x200 skips ahead of 0x0: records are missing or out of order",
            snap.path.display(),
            d.path().join(log_file_name(512)).display()
        )
    );
}

#[test]
fn data_dirs_of_the_wrong_format_are_refused_with_the_file_named() {
    // An Apache ZooKeeper transaction log copied in under one of our names.
    let d = tempfile::tempdir().unwrap();
    let mut zk = b"ZKLG\x00\x00\x00\x02".to_vec();
    zk.resize(4096, 0);
    let p = d.path().join("log.1");
    fs::write(&p, &zk).unwrap();
    assert_eq!(
        recover_all(d.path()).err().unwrap().to_string(),
        format!(
            "{}: not a corral log segment file (bad magic \"ZKLG\\\\x00\\\\x00\\\\x00\\\\x02\")",
            p.display()
        )
    );

    // A log segment from a future format version.
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 3);
    let p = d.path().join(log_file_name(1));
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(&9u32.to_le_bytes(), 8)
        .unwrap();
    assert_eq!(
        recover_all(d.path()).err().unwrap().to_string(),
        format!(
            "{}: unsupported log segment format version 9 (this build reads version 1)",
            p.display()
        )
    );

    // A snapshot that is not ours.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(snapshot_file_name(5));
    fs::write(&p, vec![b'x'; 100]).unwrap();
    assert_eq!(
        recover_all(d.path()).err().unwrap().to_string(),
        format!(
            "{}: not a corral snapshot file (bad magic \"xxxxxxxx\")",
            p.display()
        )
    );

    // A ZooKeeper data dir layout is not storage's: `storage::zkdir` imports it
    // before recovery, which passes it by.
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("version-2")).unwrap();
    fs::write(d.path().join("version-2").join("log.1"), b"theirs").unwrap();
    let (rec, snap, zxids) = recover_all(d.path()).unwrap();
    assert!(rec.snapshot.is_none() && snap.is_empty() && zxids.is_empty());

    // A name in our namespace that does not parse.
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("log.zz"), b"").unwrap();
    assert_eq!(
        recover_all(d.path()).err().unwrap().to_string(),
        format!(
            "{}: unexpected file \"log.zz\": not a corral log or snapshot name",
            d.path().display()
        )
    );
}

#[test]
fn crash_between_segment_creation_and_its_header_reaching_disk() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 10);
    // A newer segment whose header never hit the disk (all zeros).
    let p = d.path().join(log_file_name(11));
    fs::write(&p, vec![0u8; SEGMENT_BYTES_MIN as usize]).unwrap();
    let (r, _, zxids) = recover_all(d.path()).unwrap();
    assert_eq!(zxids, (1..=10).collect::<Vec<_>>());
    assert!(!p.exists(), "the empty torn segment is removed");
    assert_eq!(r.tail.last_zxid, 10);
}

#[test]
fn crash_at_any_point_of_an_unsynced_batch_keeps_every_synced_record() {
    let d = tempfile::tempdir().unwrap();
    write_records(d.path(), 1, 40);
    // An unsynced batch 41..=45 in a new (last) segment, then the "crash".
    let tail = read_log(d.path(), 0, |_| {}).unwrap();
    let mut log = Log::open(d.path(), cfg(), tail).unwrap();
    for z in 41..=45 {
        log.append(z, 1, &payload(z)).unwrap();
    }
    drop(log);
    let last = d.path().join(log_file_name(41));
    let image = fs::read(&last).unwrap();
    let rec = record_bytes(PAYLOAD_BYTES);
    let end = SEGMENT_HEADER_BYTES + 5 * rec;
    // The disk kept a prefix of the batch: cut anywhere (8-byte steps) past the
    // header, plus the header-never-written case.
    for cut in std::iter::once(0).chain((SEGMENT_HEADER_BYTES..=end).step_by(8)) {
        let mut img = image.clone();
        img[cut..end].fill(0);
        fs::write(&last, &img).unwrap();
        let (r, _, zxids) = recover_all(d.path()).unwrap();
        let whole = if cut == 0 {
            0
        } else {
            (cut - SEGMENT_HEADER_BYTES) / rec
        };
        assert_eq!(
            zxids,
            (1..=40 + whole as i64).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        let at_boundary = cut == 0 || (cut - SEGMENT_HEADER_BYTES).is_multiple_of(rec);
        assert_eq!(r.tail.torn.is_some(), !at_boundary, "cut at {cut}");
        // A last segment left without records is removed.
        assert_eq!(last.exists(), whole > 0, "cut at {cut}");
    }
}

#[test]
fn a_flipped_byte_anywhere_never_yields_a_wrong_history() {
    use rand::{Rng, SeedableRng};
    let d = tempfile::tempdir().unwrap();
    let n = 2 * PER_SEGMENT + 100;
    write_records(d.path(), 1, n);
    let segs: Vec<PathBuf> = [1, 1 + PER_SEGMENT, 1 + 2 * PER_SEGMENT]
        .iter()
        .map(|&z| d.path().join(log_file_name(z)))
        .collect();
    let images: Vec<Vec<u8>> = segs.iter().map(|p| fs::read(p).unwrap()).collect();
    let (_, last_off) = locate(d.path(), n);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let (mut errors, mut clean) = (0, 0);
    for _ in 0..300 {
        let s = rng.gen_range(0..segs.len());
        let at = rng.gen_range(0..images[s].len() as u64);
        for (p, img) in segs.iter().zip(&images) {
            fs::write(p, img).unwrap();
        }
        flip(&segs[s], at);
        match recover_all(d.path()) {
            Err(e) => {
                // Every refusal names a file and an offset.
                let m = e.to_string();
                assert!(m.contains(d.path().to_str().unwrap()), "{m}");
                assert!(
                    m.contains("offset") || m.contains("version") || m.contains("magic"),
                    "{m}"
                );
                errors += 1;
            }
            Ok((_, _, zxids)) => {
                // Ok only with the full history, or without the very last record
                // when the flip hit it (indistinguishable from a torn write).
                let in_last_record = s == 2 && at >= last_off && at < last_off + 128;
                let want = if in_last_record { n - 1 } else { n };
                assert_eq!(
                    zxids,
                    (1..=want).collect::<Vec<_>>(),
                    "flip at {}:{at}",
                    segs[s].display()
                );
                clean += 1;
            }
        }
    }
    assert!(errors > 100 && clean > 10, "errors {errors}, clean {clean}");
}

#[test]
fn snapshots_and_log_in_separate_dirs_recover_and_purge() {
    let d = tempfile::tempdir().unwrap();
    let (snaps, logs) = (d.path().join("data"), d.path().join("datalog"));
    fs::create_dir_all(&snaps).unwrap();
    write_records(&logs, 1, 1200);
    for z in [300i64, 700, 1100] {
        write_snapshot(&snaps, z, |w| w.write_all(format!("state@{z}").as_bytes())).unwrap();
    }
    let mut snap = Vec::new();
    let mut zxids = Vec::new();
    let r = recover(
        &snaps,
        &logs,
        |_, b| b.read_to_end(&mut snap).map(|_| ()),
        |rec| zxids.push(rec.zxid),
    )
    .unwrap();
    assert_eq!(snap, b"state@1100");
    assert_eq!(zxids, (1101..=1200).collect::<Vec<_>>());
    assert_eq!(r.tail.last_zxid, 1200);
    // Keep two snapshots (700, 1100): the segment [1..511] only holds older txns.
    let report = corral::storage::purge(&snaps, &logs, 2, &mut Default::default()).unwrap();
    assert_eq!(
        report.removed_snapshots,
        vec![snaps.join(snapshot_file_name(300))]
    );
    assert_eq!(report.removed_logs, vec![logs.join(log_file_name(1))]);
}
