//! The disk faults of a fault run: one member's disk filling up, and a torn
//! last record in one member's newest log file.
//!
//! Disk full: before launch, [`put_members_on_tmpfs`] mounts a small tmpfs
//! (as root) over every member's `data/` and `datalog/`; the mounts are handed
//! to the [`Ensemble`], which drops them (unmounting, lazily if busy) only after
//! every member's process is killed, so a panicking test unmounts too (a kept
//! ensemble first copies each tmpfs's files, less the ballast, to `<dir>.kept`).
//! Without root the run skips the disk-full faults with a loud line (and fails
//! under CI, which runs as root). [`fill`] appends to a ballast file in a member's
//! dir until the disk says ENOSPC; [`unfill`] deletes it.
//!
//! Torn record: [`tear_last_record`] finds the last record of the newest log
//! file of a (killed) member, in corral's segment format or the reference's
//! `version-2/log.*` format, and damages it: [`Tear::Cut`] zeroes it from a
//! point inside it to its end (what a lost page write leaves in a preallocated
//! file), [`Tear::Garbage`] flips its last bytes so its checksum fails.
//!
//! Everything here runs on the test thread (the nemesis), blocking std IO.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::common::ensemble::{Ensemble, Guard};
use crate::common::Kind;

/// Size of each member's tmpfs (one for `data/`, one for `datalog/`), in MiB;
/// `FAULTS_DISK_MB` overrides it (a soak of hours writes more log than this).
pub const MEMBER_DISK_MB_DEFAULT: u64 = 256;
/// Log segment (corral) and preallocation step (ZooKeeper) of members on a
/// tmpfs: small, so a full disk bites at the next roll instead of 64 MiB later.
pub const LOG_SEGMENT_BYTES: u64 = 1 << 20;
/// The ballast file a full disk is filled with.
pub const BALLAST_FILE_NAME: &str = "ballast";
/// Largest write while filling; the fill ends with page-sized writes.
const FILL_CHUNK_BYTES: usize = 1 << 20;
const PAGE_BYTES: usize = 4096;
/// Bytes [`Tear::Garbage`] flips at most.
const GARBAGE_BYTES_MAX: usize = 8;

/// The zoo.cfg lines of members on small disks: 1 MiB log segments (corral)
/// and 1 MiB preallocation steps (the reference's `preAllocSize`, in KiB).
pub fn small_log_cfg() -> String {
    format!(
        "corral.logSegmentBytes={LOG_SEGMENT_BYTES}\npreAllocSize={}\n",
        LOG_SEGMENT_BYTES / 1024
    )
}

/// A tmpfs mounted on an existing dir; unmounted (lazily if busy) on drop.
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    pub fn mount(at: &Path, mib: u64) -> Result<TmpfsMount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount on {} failed ({}): {}",
                at.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            path: at.to_path_buf(),
        })
    }
}

/// A kept ensemble keeps its members' logs and snapshots: the tmpfs's files are
/// copied to `<dir>.kept` beside it before the unmount takes them, all but the
/// ballast of a full disk (up to the tmpfs's size: it could fill the disk the
/// copy goes to).
impl Guard for TmpfsMount {
    fn keep_contents(&self) {
        let mut kept = self.path.clone().into_os_string();
        kept.push(".kept");
        let kept = PathBuf::from(kept);
        let copy = || -> Result<(), String> {
            fs::create_dir_all(&kept).map_err(|e| e.to_string())?;
            for entry in fs::read_dir(&self.path).map_err(|e| e.to_string())? {
                let from = entry.map_err(|e| e.to_string())?.path();
                if from.file_name() == Some(BALLAST_FILE_NAME.as_ref()) {
                    continue;
                }
                let ok = Command::new("cp")
                    .arg("-a")
                    .arg(&from)
                    .arg(&kept)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err(format!("cp -a {} failed", from.display()));
                }
            }
            Ok(())
        };
        if let Err(e) = copy() {
            eprintln!(
                "[disk] could not copy {} to {}: {e}",
                self.path.display(),
                kept.display()
            );
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "[disk] umount {} failed; detaching it lazily",
                self.path.display()
            );
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Loud, once: the disk-full faults cannot run here.
fn skip_loudly(why: &str) {
    eprintln!("\n==============================================================");
    eprintln!("SKIPPED: the disk-full faults ({why}); their steps do nothing");
    eprintln!("==============================================================");
}

/// True when members can get a tmpfs: running as root. Otherwise prints the
/// loud SKIPPED line, or panics under CI (`CI` set), which runs as root.
pub fn may_mount() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("the disk-full faults need root (mount -t tmpfs), and CI runs as root");
    }
    skip_loudly("they need root for mount -t tmpfs");
    false
}

/// The MiB of each member tmpfs: `FAULTS_DISK_MB` or the default.
fn member_disk_mib() -> u64 {
    std::env::var("FAULTS_DISK_MB")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(MEMBER_DISK_MB_DEFAULT)
}

/// The dirs a member's disk faults touch: its dataDir and dataLogDir.
pub fn member_disk_dirs(ens: &Ensemble, sid: u64) -> [PathBuf; 2] {
    let home = ens.member_dir(sid);
    [home.join("data"), home.join("datalog")]
}

/// Mounts a tmpfs over every member's `data/` and `datalog/` and writes `myid`
/// again on it; the ensemble keeps the mounts until its processes are gone.
/// Call after configuring, before launching. False (after a loud line) when
/// the disk-full faults cannot run here.
pub fn put_members_on_tmpfs(ens: &mut Ensemble) -> bool {
    if !may_mount() {
        return false;
    }
    let mib = member_disk_mib();
    for sid in ens.sids() {
        for dir in member_disk_dirs(ens, sid) {
            match TmpfsMount::mount(&dir, mib) {
                Ok(m) => ens.keep_until_dropped(Box::new(m)),
                Err(e) if std::env::var_os("CI").is_some() => {
                    panic!("cannot mount a member's tmpfs under CI: {e}")
                }
                Err(e) => {
                    skip_loudly(&e);
                    return false;
                }
            }
        }
        let myid = ens.member_dir(sid).join("data/myid");
        fs::write(&myid, format!("{sid}\n")).expect("write myid on the tmpfs");
    }
    eprintln!("[disk] every member's data/ and datalog/ on its own {mib} MiB tmpfs");
    true
}

/// Appends to `dir`'s ballast file until the disk is full; returns the bytes
/// written. Tops up a ballast a member's freed space made room beside.
pub fn fill(dir: &Path) -> io::Result<u64> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(BALLAST_FILE_NAME))?;
    let chunk = vec![0xb5u8; FILL_CHUNK_BYTES];
    let mut written = 0u64;
    for size in [FILL_CHUNK_BYTES, PAGE_BYTES] {
        loop {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(written)
}

/// Deletes `dir`'s ballast (the disk has room again).
pub fn unfill(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(BALLAST_FILE_NAME)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

// ----- torn records -----

/// How the last record is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Zeroed from a point inside it to its end.
    Cut,
    /// Its last bytes flipped: the checksum fails.
    Garbage,
}

/// Where the last record of a log file lies: `[start, end)`, and the bytes a
/// flip must touch so the record no longer verifies (`[check_start, check_end)`,
/// what its checksum or end marker covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRecord {
    pub start: usize,
    pub end: usize,
    pub check_start: usize,
    pub check_end: usize,
}

/// The newest log file of a member's dataLogDir: corral's `log.<16 hex>`
/// segments, or the reference's `version-2/log.<hex>`.
pub fn newest_log_file(kind: Kind, datalog: &Path) -> Option<PathBuf> {
    let dir = match kind {
        Kind::Corral => datalog.to_path_buf(),
        Kind::Reference => datalog.join("version-2"),
    };
    fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let zxid = u64::from_str_radix(name.strip_prefix("log.")?, 16).ok()?;
            Some((zxid, e.path()))
        })
        .max_by_key(|(z, _)| *z)
        .map(|(_, p)| p)
}

/// corral's segment: 32-byte header, then 8-aligned records of a 24-byte header
/// (crc u32, payload length u32, zxid, kind, 7 zero bytes) and the payload; the
/// records end at a zero header or an end mark (flag byte 17).
pub fn corral_last_record(seg: &[u8]) -> Option<LastRecord> {
    const HEADER: usize = 32;
    const RECORD_HEADER: usize = 24;
    let mut at = HEADER;
    let mut last = None;
    while at + RECORD_HEADER <= seg.len() {
        let h = &seg[at..at + RECORD_HEADER];
        if h.iter().all(|&b| b == 0) || h[17] != 0 {
            break;
        }
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let payload_end = at + RECORD_HEADER + len;
        if payload_end > seg.len() {
            break;
        }
        last = Some(LastRecord {
            start: at,
            end: payload_end,
            check_start: at + 4,
            check_end: payload_end,
        });
        at = (payload_end + 7) & !7;
    }
    last
}

/// The reference's `version-2/log.*`: a 16-byte header (`ZKLG`, version,
/// dbid), then records of crc i64, length i32, the txn and an end byte `B`;
/// the records end at a zero length (the preallocated zeros).
pub fn zookeeper_last_record(log: &[u8]) -> Option<LastRecord> {
    const HEADER: usize = 16;
    if log.len() < HEADER || &log[..4] != b"ZKLG" {
        return None;
    }
    let mut at = HEADER;
    let mut last = None;
    while at + 12 <= log.len() {
        let len = i32::from_be_bytes(log[at + 8..at + 12].try_into().unwrap());
        if len <= 0 {
            break;
        }
        let end = at + 12 + len as usize + 1;
        if end > log.len() || log[end - 1] != b'B' {
            break;
        }
        // A flip over the end byte makes the record a partial one, which 3.8.0
        // drops; a flip before it fails the crc, which 3.8.0 refuses to start on.
        last = Some(LastRecord {
            start: at,
            end,
            check_start: at + 12,
            check_end: end,
        });
        at = end;
    }
    last
}

/// Damages the last record of the newest log file of a stopped member; says
/// what it did, or why it did nothing.
pub fn tear_last_record(
    kind: Kind,
    datalog: &Path,
    tear: Tear,
    rng: &mut SmallRng,
) -> Result<String, String> {
    let path = newest_log_file(kind, datalog)
        .ok_or_else(|| format!("no log file in {}", datalog.display()))?;
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let found = match kind {
        Kind::Corral => corral_last_record(&bytes),
        Kind::Reference => zookeeper_last_record(&bytes),
    };
    let rec = found.ok_or_else(|| format!("{}: no record to tear", path.display()))?;
    let (at, damaged) = damage(&bytes, rec, tear, rng);
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all_at(&damaged, at as u64)
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "{tear:?}: {} bytes at {at} of the record at {}..{} of {}",
        damaged.len(),
        rec.start,
        rec.end,
        path.display()
    ))
}

/// The bytes to write over the record, and where.
fn damage(bytes: &[u8], rec: LastRecord, tear: Tear, rng: &mut SmallRng) -> (usize, Vec<u8>) {
    match tear {
        Tear::Cut => {
            let at = rng.gen_range(rec.start + 1..rec.end);
            (at, vec![0; rec.end - at])
        }
        Tear::Garbage => {
            let n = rng
                .gen_range(1..=GARBAGE_BYTES_MAX)
                .min(rec.check_end - rec.check_start);
            let at = rec.check_end - n;
            let flipped = bytes[at..rec.check_end]
                .iter()
                .map(|&b| b ^ rng.gen_range(1..=255u8))
                .collect();
            (at, flipped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_of_two_corral_records() {
        let mut seg = vec![0u8; 256];
        seg[..8].copy_from_slice(b"CORRALLG");
        // Record 1: 24 + 5 bytes at 32, padded to 64; record 2: 24 + 8 bytes at 64.
        seg[36..40].copy_from_slice(&5u32.to_le_bytes());
        seg[32] = 1;
        seg[68..72].copy_from_slice(&8u32.to_le_bytes());
        seg[64] = 1;
        let r = corral_last_record(&seg).unwrap();
        assert_eq!((r.start, r.end, r.check_start), (64, 96, 68));
    }

    #[test]
    fn finds_the_last_zookeeper_record_and_stops_at_the_zeros() {
        let mut log = b"ZKLG\0\0\0\x02\0\0\0\0\0\0\0\0".to_vec();
        for len in [3i32, 4] {
            log.extend_from_slice(&[7; 8]);
            log.extend_from_slice(&len.to_be_bytes());
            log.extend(std::iter::repeat_n(9u8, len as usize));
            log.push(b'B');
        }
        log.extend_from_slice(&[0; 64]);
        let r = zookeeper_last_record(&log).unwrap();
        assert_eq!((r.start, r.end), (16 + 16, 16 + 16 + 17));
    }
}
