//! The epoch files of quorum mode: `acceptedEpoch` (the newest epoch this server
//! agreed to follow or lead) and `currentEpoch` (the epoch whose leader it last
//! synced with), in the snapshot dir (zoo.cfg's dataDir), as ZooKeeper 3.8 keeps
//! them (PEER-PROTOCOL.md §5.7): the decimal number only, no newline.
//!
//! Runs on the sequencer core, blocking: [`load_epochs`] once at start-up, after
//! recovery (it needs the last zxid); [`write_accepted_epoch`] and
//! [`write_current_epoch`] when the replication core asks (`Write::AcceptedEpoch`,
//! `Write::CurrentEpoch`), rare enough to be done synchronously. A write goes to
//! `<name>.tmp`, is fsynced, renamed over `<name>`, and the dir is fsynced, so a
//! crash leaves the old value or the new one (and perhaps the complete tmp file,
//! which start-up uses when the current epoch is behind the log, as the
//! reference does). The fsyncs happen whatever `forceSync` says, as on the
//! reference.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::{sync_dir, StorageError};

pub const ACCEPTED_EPOCH_FILE_NAME: &str = "acceptedEpoch";
pub const CURRENT_EPOCH_FILE_NAME: &str = "currentEpoch";
/// Bytes read from an epoch file at most: a u32 in decimal is 10 digits; anything
/// longer is not an epoch.
pub const EPOCH_FILE_BYTES_MAX: usize = 32;

/// Both epochs, as loaded at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    pub accepted: u32,
    pub current: u32,
}

/// The epoch of a zxid (its high 32 bits).
fn epoch_of(zxid: i64) -> u32 {
    (zxid as u64 >> 32) as u32
}

fn tmp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Reads one epoch file; None when it does not exist. Anything but decimal digits
/// (a single trailing newline is tolerated, as the reference reads a line) that
/// fit a u32 is an error naming the file and the offset of the first bad byte.
fn read_epoch_file(path: &Path) -> Result<Option<u32>, StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open epoch file", path, e)),
    };
    let mut bytes = Vec::with_capacity(EPOCH_FILE_BYTES_MAX);
    file.take(EPOCH_FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StorageError::io("read epoch file", path, e))?;
    parse_epoch(&bytes)
        .map(Some)
        .map_err(|(offset, detail)| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            detail: format!("{detail} (found {:?})", bytes.escape_ascii().to_string()),
        })
}

/// Decimal digits, perhaps one trailing newline → the epoch; else (offset, why).
fn parse_epoch(bytes: &[u8]) -> Result<u32, (u64, String)> {
    if bytes.len() > EPOCH_FILE_BYTES_MAX {
        return Err((
            EPOCH_FILE_BYTES_MAX as u64,
            format!("not an epoch: longer than {EPOCH_FILE_BYTES_MAX} bytes"),
        ));
    }
    let digits = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if digits.is_empty() {
        return Err((0, "not an epoch: empty".into()));
    }
    if let Some(at) = digits.iter().position(|b| !b.is_ascii_digit()) {
        return Err((at as u64, "not an epoch: not a decimal number".into()));
    }
    let text = std::str::from_utf8(digits).expect("ASCII digits");
    text.parse::<u32>().map_err(|_| {
        (
            0,
            format!("epoch {text} is out of range (at most {})", u32::MAX),
        )
    })
}

/// Writes `value` to `dir/name` atomically: tmp file, fsync, rename, dir fsync.
fn write_epoch_file(dir: &Path, name: &str, value: u32) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(tmp_name(name));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(value.to_string().as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(StorageError::io("write epoch file", &tmp, e));
    }
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename epoch file", &path, e))?;
    sync_dir(dir)
}

/// Makes `acceptedEpoch` = `epoch` durable (blocking).
pub fn write_accepted_epoch(dir: &Path, epoch: u32) -> Result<(), StorageError> {
    write_epoch_file(dir, ACCEPTED_EPOCH_FILE_NAME, epoch)
}

/// Makes `currentEpoch` = `epoch` durable (blocking).
pub fn write_current_epoch(dir: &Path, epoch: u32) -> Result<(), StorageError> {
    write_epoch_file(dir, CURRENT_EPOCH_FILE_NAME, epoch)
}

/// The two files as they are: (accepted, current), each None when missing.
pub fn read_epochs(dir: &Path) -> Result<(Option<u32>, Option<u32>), StorageError> {
    Ok((
        read_epoch_file(&dir.join(ACCEPTED_EPOCH_FILE_NAME))?,
        read_epoch_file(&dir.join(CURRENT_EPOCH_FILE_NAME))?,
    ))
}

/// Start-up, after recovery found `last_zxid`, as the reference's `loadDataBase`:
/// a missing file is created holding epoch(`last_zxid`); if epoch(`last_zxid`) is
/// after `currentEpoch`, a `currentEpoch.tmp` left by an interrupted write supplies
/// the current epoch (and is written in place), else start-up fails; it fails too
/// when `acceptedEpoch` < `currentEpoch`. Every failure names the file.
pub fn load_epochs(dir: &Path, last_zxid: i64) -> Result<Epochs, StorageError> {
    let of_zxid = epoch_of(last_zxid);
    let current = load_current_epoch(dir, last_zxid)?;
    let accepted_path = dir.join(ACCEPTED_EPOCH_FILE_NAME);
    let accepted = match read_epoch_file(&accepted_path)? {
        Some(e) => e,
        None => {
            create_missing(dir, ACCEPTED_EPOCH_FILE_NAME, of_zxid)?;
            of_zxid
        }
    };
    if accepted < current {
        return Err(StorageError::Epoch {
            path: accepted_path,
            detail: format!(
                "the accepted epoch {accepted} is less than the current epoch {current}"
            ),
        });
    }
    Ok(Epochs { accepted, current })
}

fn load_current_epoch(dir: &Path, last_zxid: i64) -> Result<u32, StorageError> {
    let of_zxid = epoch_of(last_zxid);
    let path = dir.join(CURRENT_EPOCH_FILE_NAME);
    let current = match read_epoch_file(&path)? {
        Some(e) => e,
        None => {
            create_missing(dir, CURRENT_EPOCH_FILE_NAME, of_zxid)?;
            of_zxid
        }
    };
    if of_zxid <= current {
        return Ok(current);
    }
    let tmp = dir.join(tmp_name(CURRENT_EPOCH_FILE_NAME));
    match read_epoch_file(&tmp)? {
        Some(e) => {
            tracing::info!(
                "{}: found; the current epoch is {e} (the file said {current})",
                tmp.display()
            );
            write_current_epoch(dir, e)?;
            Ok(e)
        }
        None => Err(StorageError::Epoch {
            path: path.clone(),
            detail: format!(
                "the current epoch {current} is older than the last zxid {last_zxid:#x} \
                 (epoch {of_zxid}), and there is no {} to recover it from",
                tmp_name(CURRENT_EPOCH_FILE_NAME)
            ),
        }),
    }
}

fn create_missing(dir: &Path, name: &str, epoch: u32) -> Result<(), StorageError> {
    tracing::info!(
        "{}: not found; creating it with the epoch of the last zxid, {epoch}",
        dir.join(name).display()
    );
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create data dir", dir, e))?;
    write_epoch_file(dir, name, epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, bytes: &[u8]) {
        fs::write(dir.join(name), bytes).unwrap();
    }

    fn get(dir: &Path, name: &str) -> Vec<u8> {
        fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn written_as_the_reference_writes_them_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_epochs(d.path()).unwrap(), (None, None));
        write_accepted_epoch(d.path(), 7).unwrap();
        write_current_epoch(d.path(), 4_000_000_000).unwrap();
        assert_eq!(get(d.path(), ACCEPTED_EPOCH_FILE_NAME), b"7");
        assert_eq!(get(d.path(), CURRENT_EPOCH_FILE_NAME), b"4000000000");
        assert!(!d.path().join("acceptedEpoch.tmp").exists());
        assert_eq!(
            read_epochs(d.path()).unwrap(),
            (Some(7), Some(4_000_000_000))
        );
        // Overwriting replaces the value whole.
        write_accepted_epoch(d.path(), 12).unwrap();
        assert_eq!(get(d.path(), ACCEPTED_EPOCH_FILE_NAME), b"12");
        // A trailing newline (a hand-edited file) reads as the reference reads it.
        put(d.path(), CURRENT_EPOCH_FILE_NAME, b"5\n");
        assert_eq!(read_epochs(d.path()).unwrap(), (Some(12), Some(5)));
    }

    #[test]
    fn missing_files_are_created_from_the_last_zxid() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("fresh");
        let e = load_epochs(&dir, 0x3_0000_0011).unwrap();
        assert_eq!(
            e,
            Epochs {
                accepted: 3,
                current: 3
            }
        );
        assert_eq!(get(&dir, ACCEPTED_EPOCH_FILE_NAME), b"3");
        assert_eq!(get(&dir, CURRENT_EPOCH_FILE_NAME), b"3");
        // Only one missing: only that one is created.
        write_accepted_epoch(&dir, 5).unwrap();
        fs::remove_file(dir.join(CURRENT_EPOCH_FILE_NAME)).unwrap();
        let e = load_epochs(&dir, 0x4_0000_0001).unwrap();
        assert_eq!(
            e,
            Epochs {
                accepted: 5,
                current: 4
            }
        );
        // A fresh standalone-style dir: epoch 0.
        let d2 = tempfile::tempdir().unwrap();
        assert_eq!(
            load_epochs(d2.path(), 0).unwrap(),
            Epochs {
                accepted: 0,
                current: 0
            }
        );
    }

    #[test]
    fn garbage_fails_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 6] = [
            (b"", "corrupt at byte offset 0: not an epoch: empty (found \"\")"),
            (b"12x", "corrupt at byte offset 2: not an epoch: not a decimal number (found \"12x\")"),
            (b"-1", "corrupt at byte offset 0: not an epoch: not a decimal number (found \"-1\")"),
            (b" 3", "corrupt at byte offset 0: not an epoch: not a decimal number (found \" 3\")"),
            (b"4294967296", "corrupt at byte offset 0: epoch 4294967296 is out of range (at most 4294967295) (found \"4294967296\")"),
            (&[b'1'; 40], "corrupt at byte offset 32: not an epoch: longer than 32 bytes"),
        ];
        for (bytes, want) in cases {
            put(d.path(), CURRENT_EPOCH_FILE_NAME, bytes);
            let err = load_epochs(d.path(), 0).unwrap_err().to_string();
            let path = d.path().join(CURRENT_EPOCH_FILE_NAME);
            assert!(
                err.starts_with(&format!("{}: {want}", path.display())),
                "{err}"
            );
        }
        write_current_epoch(d.path(), 1).unwrap();
        put(d.path(), ACCEPTED_EPOCH_FILE_NAME, b"one");
        let err = read_epochs(d.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: corrupt at byte offset 0",
                d.path().join(ACCEPTED_EPOCH_FILE_NAME).display()
            )),
            "{err}"
        );
    }

    #[test]
    fn current_epoch_behind_the_log_uses_the_tmp_file_or_fails() {
        let d = tempfile::tempdir().unwrap();
        write_accepted_epoch(d.path(), 3).unwrap();
        write_current_epoch(d.path(), 2).unwrap();
        // The log holds txns of epoch 3 but currentEpoch says 2, and no tmp file.
        let err = load_epochs(d.path(), 0x3_0000_0002)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: the current epoch 2 is older than the last zxid 0x300000002 (epoch 3), \
                 and there is no currentEpoch.tmp to recover it from",
                d.path().join(CURRENT_EPOCH_FILE_NAME).display()
            )
        );
        // A crash between the tmp file's fsync and the rename left it behind.
        put(d.path(), "currentEpoch.tmp", b"3");
        let e = load_epochs(d.path(), 0x3_0000_0002).unwrap();
        assert_eq!(
            e,
            Epochs {
                accepted: 3,
                current: 3
            }
        );
        assert_eq!(get(d.path(), CURRENT_EPOCH_FILE_NAME), b"3");
        assert!(!d.path().join("currentEpoch.tmp").exists());
        // A tmp file is not read when the current epoch is not behind.
        put(d.path(), "currentEpoch.tmp", b"garbage");
        assert!(load_epochs(d.path(), 0x3_0000_0002).is_ok());
        // ...but it is when it is needed, and garbage there fails naming it.
        write_current_epoch(d.path(), 2).unwrap();
        put(d.path(), "currentEpoch.tmp", b"garbage");
        let err = load_epochs(d.path(), 0x3_0000_0002)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: corrupt at byte offset 0",
                d.path().join("currentEpoch.tmp").display()
            )),
            "{err}"
        );
    }

    #[test]
    fn accepted_epoch_less_than_current_fails() {
        let d = tempfile::tempdir().unwrap();
        write_accepted_epoch(d.path(), 2).unwrap();
        write_current_epoch(d.path(), 3).unwrap();
        let err = load_epochs(d.path(), 0x2_0000_0005)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: the accepted epoch 2 is less than the current epoch 3",
                d.path().join(ACCEPTED_EPOCH_FILE_NAME).display()
            )
        );
        // A missing acceptedEpoch is created from the last zxid first, then checked.
        fs::remove_file(d.path().join(ACCEPTED_EPOCH_FILE_NAME)).unwrap();
        assert!(load_epochs(d.path(), 0x2_0000_0005).is_err());
        assert_eq!(get(d.path(), ACCEPTED_EPOCH_FILE_NAME), b"2");
        write_accepted_epoch(d.path(), 3).unwrap();
        assert_eq!(
            load_epochs(d.path(), 0x2_0000_0005).unwrap(),
            Epochs {
                accepted: 3,
                current: 3
            }
        );
    }
}
