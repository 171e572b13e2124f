//! ZooKeeper's snapshot serialization (`tree::zksnap::ZkSnapDecoder`), the stream a
//! 3.8 leader sends after SNAP and the body of a `snapshot.<zxid>` file. The control
//! byte picks the kind (SNAP stream or file body), default or tight limits, and the
//! sizes of the pieces the stream arrives in. Properties: no panic; fed in pieces the
//! decoder reaches exactly what it reaches fed all at once (same bytes consumed, same
//! error, same tree); a decoded tree encoded again (`ZkSnapEncoder`) decodes to the
//! same stream; allocation bounded by the input.

#![no_main]

use std::sync::Arc;

use corral::tree::zksnap::{ZkSnapDecoder, ZkSnapEncoder, ZkSnapKind, ZkSnapLimits};
use corral::tree::Tree;
use corral_fuzz::Pieces;
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

const LAST_ZXID: i64 = 0x1_0000_0007;

/// Small enough for a fuzzed input to reach every bound.
const TIGHT: ZkSnapLimits = ZkSnapLimits {
    record_bytes_max: 160,
    string_bytes_max: 48,
    sessions_count_max: 6,
    acl_lists_count_max: 4,
    acl_entries_count_max: 3,
    nodes_count_max: 12,
};

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, stream) = corral_fuzz::split_control(data);
    let kind = if control & 1 == 0 {
        ZkSnapKind::Snap
    } else {
        ZkSnapKind::FileBody
    };
    let limits = if control & 2 == 0 {
        ZkSnapLimits::default()
    } else {
        TIGHT
    };
    let piece_bytes_max = 1 + (control >> 2) as usize * 3;
    let whole = decode_whole(kind, limits, stream);
    let pieces = decode_in_pieces(kind, limits, stream, piece_bytes_max, control);
    assert_eq!(whole.summary(), pieces.summary(), "whole vs in pieces");
    if let Outcome::Done { tree, sessions, .. } = whole {
        re_encode(kind, &tree, sessions, piece_bytes_max);
    }
});

enum Outcome {
    Done {
        used: usize,
        tree: Tree,
        sessions: Vec<(i64, i32)>,
    },
    /// The stream ended first, or the decoder refused it (the error's text).
    Failed(String),
}

impl Outcome {
    fn summary(&self) -> String {
        match self {
            Outcome::Done {
                used,
                tree,
                sessions,
            } => format!(
                "done after {used} bytes: {} nodes, digest {:#x}, sessions {sessions:?}",
                tree.node_count(),
                tree.digest()
            ),
            Outcome::Failed(e) => format!("failed: {e}"),
        }
    }
}

fn finish(dec: ZkSnapDecoder, used: usize) -> Outcome {
    match dec.finish() {
        Ok((tree, sessions)) => Outcome::Done {
            used,
            tree,
            sessions,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn decode_whole(kind: ZkSnapKind, limits: ZkSnapLimits, stream: &[u8]) -> Outcome {
    let mut dec = ZkSnapDecoder::with_limits(kind, LAST_ZXID, limits);
    match dec.feed(stream) {
        Ok(used) => {
            assert_eq!(dec.offset(), used as u64);
            if dec.is_done() {
                assert_eq!(
                    dec.feed(&stream[used..]).ok(),
                    Some(0),
                    "done consumes no more"
                );
            }
            finish(dec, used)
        }
        Err(e) => {
            assert!(dec.feed(stream).is_err(), "a failed decoder stays failed");
            Outcome::Failed(e.to_string())
        }
    }
}

/// As the peer transport feeds it: append what arrived, feed, keep the rest.
fn decode_in_pieces(
    kind: ZkSnapKind,
    limits: ZkSnapLimits,
    stream: &[u8],
    piece_bytes_max: usize,
    seed: u8,
) -> Outcome {
    let mut dec = ZkSnapDecoder::with_limits(kind, LAST_ZXID, limits);
    let mut pieces = Pieces::new(u64::from(seed) << 8 | 0x9e, piece_bytes_max);
    let mut buf: Vec<u8> = Vec::new();
    let mut arrived = 0;
    let mut used = 0;
    while !dec.is_done() && arrived < stream.len() {
        let n = pieces.next_len().min(stream.len() - arrived);
        buf.extend_from_slice(&stream[arrived..arrived + n]);
        arrived += n;
        match dec.feed(&buf) {
            Ok(k) => {
                buf.drain(..k);
                used += k;
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
    finish(dec, used)
}

/// Encodes the decoded tree again; the stream must decode to a tree that encodes to
/// the very same stream. It is read under the default limits, not the input's: a
/// string that was not UTF-8 decodes with U+FFFD (as Java reads it), which writes
/// back longer, so a string just under a tight bound can be over it once re-encoded.
fn re_encode(kind: ZkSnapKind, tree: &Tree, sessions: Vec<(i64, i32)>, chunk: usize) {
    let first = encode(kind, tree, sessions.clone(), chunk);
    let (used, again, again_sessions) = match decode_whole(kind, ZkSnapLimits::default(), &first) {
        Outcome::Done {
            used,
            tree,
            sessions,
        } => (used, tree, sessions),
        Outcome::Failed(e) => panic!("a re-encoded snapshot does not decode: {e}"),
    };
    assert_eq!(used, first.len());
    assert_eq!(again_sessions, sessions);
    assert_eq!(again.digest(), tree.digest());
    assert_eq!(encode(kind, &again, again_sessions, chunk), first);
}

fn encode(kind: ZkSnapKind, tree: &Tree, sessions: Vec<(i64, i32)>, chunk: usize) -> Vec<u8> {
    let mut enc = ZkSnapEncoder::new(Arc::new(tree.clone()), sessions, kind, chunk);
    let mut out = Vec::new();
    while enc.next_chunk(&mut out) {}
    assert!(enc.is_done());
    out
}
