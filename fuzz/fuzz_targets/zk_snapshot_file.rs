//! A reference `snapshot.<zxid>` file (`tree::zksnap::read_zk_snapshot_file`), as
//! corral imports an Apache data directory: header, body, Adler-32 seals, the digest
//! block. A mutated file almost never carries the right seals, so with the control
//! byte's low bit set the target computes them where the layout puts them (after the
//! body, after the digest block). The file arrives through a reader that returns a
//! few bytes per call. Properties: no panic; a file that loads, written again
//! (`write_zk_snapshot_file`), loads to the same tree, sessions and digest block, and
//! writing that gives the same bytes; allocation bounded by the input.

#![no_main]

use std::io::Read;

use corral::tree::zksnap::{
    read_zk_snapshot_file, write_zk_snapshot_file, ZkSnapDecoder, ZkSnapFile, ZkSnapKind,
};
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

const NAME_ZXID: i64 = 0x2_0000_0003;
/// FileHeader: magic, version, dbid.
const HEADER_BYTES: usize = 16;
/// A seal: the checksum (long), then the ustring "/".
const SEAL_BYTES: usize = 8;
const MARKER_BYTES: usize = 5;

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, rest) = corral_fuzz::split_control(data);
    let mut file = rest.to_vec();
    if control & 1 == 1 {
        fix_seals(&mut file);
    }
    let read_bytes_max = 1 + (control >> 1) as usize * 7;
    let Ok(snap) = read(&file, read_bytes_max) else {
        return;
    };
    let first = write(&snap);
    let again = read(&first, read_bytes_max)
        .unwrap_or_else(|e| panic!("a written snapshot file does not load: {e}"));
    assert_eq!(again.sessions, snap.sessions);
    assert_eq!(again.digest, snap.digest);
    assert_eq!(again.tree.digest(), snap.tree.digest());
    assert_eq!(again.tree.node_count(), snap.tree.node_count());
    assert_eq!(
        write(&again),
        first,
        "writing a loaded file is not a fixed point"
    );
});

/// A `Read` that hands out at most `n` bytes per call, as a slow disk or pipe might.
struct Dribble<'a> {
    rest: &'a [u8],
    n: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.n.min(buf.len()).min(self.rest.len());
        buf[..k].copy_from_slice(&self.rest[..k]);
        self.rest = &self.rest[k..];
        Ok(k)
    }
}

fn read(file: &[u8], n: usize) -> Result<ZkSnapFile, corral::tree::zksnap::ZkSnapError> {
    read_zk_snapshot_file(&mut Dribble { rest: file, n }, NAME_ZXID)
}

fn write(snap: &ZkSnapFile) -> Vec<u8> {
    let mut out = Vec::new();
    write_zk_snapshot_file(&mut out, &snap.tree, snap.sessions.clone(), snap.digest)
        .expect("writing to a Vec");
    out
}

/// Writes the Adler-32 of everything before each seal where the file's layout puts
/// it: after the body (found by decoding it) and after the digest block, if any.
fn fix_seals(file: &mut [u8]) {
    let Some(body) = file.get(HEADER_BYTES..) else {
        return;
    };
    let mut dec = ZkSnapDecoder::new(ZkSnapKind::FileBody, NAME_ZXID);
    let Ok(used) = dec.feed(body) else {
        return;
    };
    if !dec.is_done() {
        return;
    }
    let first = HEADER_BYTES + used;
    seal_at(file, first);
    let block = first + SEAL_BYTES + MARKER_BYTES;
    let Some(second) = digest_block_end(file, block) else {
        return;
    };
    seal_at(file, second);
}

/// Where the digest block starting at `at` ends: zxid, version, then a long digest
/// (version 2 on) or a hex ustring (before).
fn digest_block_end(file: &[u8], at: usize) -> Option<usize> {
    let version = i32::from_be_bytes(file.get(at + 8..at + 12)?.try_into().ok()?);
    if version >= 2 {
        return Some(at + 20);
    }
    let len = i32::from_be_bytes(file.get(at + 12..at + 16)?.try_into().ok()?);
    Some(at + 16 + usize::try_from(len).unwrap_or(0))
}

fn seal_at(file: &mut [u8], at: usize) {
    if at > file.len() {
        return;
    }
    let mut adler = adler2::Adler32::new();
    adler.write_slice(&file[..at]);
    corral_fuzz::put_i64_at(file, at, i64::from(adler.checksum()));
}
