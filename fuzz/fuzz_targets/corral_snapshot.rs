//! corral's own snapshot file (`Tree::read_snapshot_bytes`), as storage loads it at
//! start-up. The file is sealed by a crc32c and carries the tree digest, which a
//! mutated file almost never matches; so with the control byte's low bit set the
//! target seals the rest of the input itself, and when the only fault left is the
//! digest it writes the computed one in and loads again (which must then succeed).
//! Properties: no panic; a loaded tree written again loads again and writing it a
//! second time gives the same bytes; allocation bounded by the input.

#![no_main]

use corral::tree::{Tree, TreeError};
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

/// Where the header keeps the tree digest: after magic u64, format u32, last_zxid i64.
const DIGEST_AT: usize = 20;

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, rest) = corral_fuzz::split_control(data);
    let mut file = rest.to_vec();
    if control & 1 == 1 {
        seal(&mut file);
    }
    let tree = match Tree::read_snapshot_bytes(&file) {
        Ok(t) => t,
        Err(TreeError::Digest { computed, .. }) if control & 1 == 1 => {
            unseal(&mut file);
            corral_fuzz::put_i64_at(&mut file, DIGEST_AT, computed as i64);
            seal(&mut file);
            Tree::read_snapshot_bytes(&file)
                .unwrap_or_else(|e| panic!("only the digest was wrong, yet: {e}"))
        }
        Err(_) => return,
    };
    let first = write(&tree);
    let again = Tree::read_snapshot_bytes(&first)
        .unwrap_or_else(|e| panic!("a written snapshot does not load: {e}"));
    assert_eq!(again.digest(), tree.digest());
    assert_eq!(again.node_count(), tree.node_count());
    assert_eq!(again.last_zxid(), tree.last_zxid());
    assert_eq!(
        write(&again),
        first,
        "writing a loaded snapshot is not a fixed point"
    );
});

fn write(tree: &Tree) -> Vec<u8> {
    let mut out = Vec::new();
    tree.write_snapshot(&mut out).expect("writing to a Vec");
    out
}

/// Appends the crc32c of everything before it.
fn seal(file: &mut Vec<u8>) {
    let crc = crc32c::crc32c(file);
    file.extend_from_slice(&crc.to_be_bytes());
}

fn unseal(file: &mut Vec<u8>) {
    file.truncate(file.len() - 4);
}
