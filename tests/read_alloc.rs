//! The read path allocates nothing per request once warm (getChildren2: a bounded
//! few, for the tree's child iterator): a counting global allocator
//! (per thread, so the harness's other threads do not count) around
//! `tree::serve_read_frame`, the code a shard core runs from a frame's body to the
//! reply in the connection's output buffer, for getData (100 B), exists,
//! getChildren2, ping, a NoNode getData and 64 pipelined getData frames.
//!
//! The owned path the shard took before (owned `Request`, `tree::read` building a
//! `Response`, `write_reply`) is counted beside it and printed: what the borrowed
//! path saves per request.

mod counting;

use corral::proto::jute::{begin_frame, end_frame};
use corral::proto::{write_reply, xid, Reader, ReplyHeader, Request, RequestHeader};
use corral::tree::{build_tree, read, serve_read_frame, Caller, FrameRead, Tree};
use counting::allocations;

const KEYS: usize = 1000;
const ZXID: i64 = 0x1_0000_0400;
const SESSION: i64 = 0x100_0000_0001;
const VALUE: [u8; 100] = [b'x'; 100];
const ROUNDS: u64 = 50;
/// Allocations a getChildren2 may make to walk the children (see the test).
const CHILDREN_WALK_ALLOCATIONS_MAX: u64 = 3;

fn key(i: usize) -> String {
    // As loadgen names its keys (21 bytes).
    format!("/loadgen/k/{i:010}")
}

fn tree() -> Tree {
    let mut reqs = vec![
        Request::create_open("/loadgen", &VALUE),
        Request::create_open("/loadgen/k", &VALUE),
        Request::create_open("/c", &VALUE),
    ];
    reqs.extend((0..KEYS).map(|i| Request::create_open(&key(i), &VALUE)));
    reqs.extend((0..10).map(|i| Request::create_open(&format!("/c/child-{i}"), &VALUE)));
    build_tree(&Caller::unauthenticated(SESSION), &reqs).expect("the test tree")
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let one = |req: Request| req.frame(7);
    let exists = Request::Exists {
        path: key(42),
        watch: false,
    };
    let children = Request::GetChildren2 {
        path: "/c".into(),
        watch: false,
    };
    let batch = (0..64)
        .flat_map(|i| Request::get_data_of(&key(i as usize * 7)).frame(i + 1))
        .collect();
    vec![
        ("getData 100 B", one(Request::get_data_of(&key(42)))),
        ("exists", one(exists)),
        ("getChildren2 (10 children)", one(children)),
        ("ping", one(Request::Ping)),
        (
            "getData NoNode",
            one(Request::get_data_of("/loadgen/k/missing")),
        ),
        ("64 pipelined getData", batch),
    ]
}

/// Frame bodies in `buf`, as the shard splits what one read delivered.
fn for_each_frame(buf: &[u8], mut f: impl FnMut(&[u8])) {
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = i32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        f(&buf[at + 4..at + 4 + len]);
        at += 4 + len;
    }
}

fn serve_borrowed(tree: &Tree, frames: &[u8], out: &mut Vec<u8>) {
    for_each_frame(frames, |body| {
        let served =
            serve_read_frame(tree, &Caller::unauthenticated(SESSION), ZXID, body, out).unwrap();
        assert!(matches!(served, FrameRead::Served { .. }));
    });
}

/// The shard's path before the borrowed read path (ping aside: its reply was built
/// in a `Vec` of its own).
fn serve_owned(tree: &Tree, frames: &[u8], out: &mut Vec<u8>) {
    for_each_frame(frames, |body| {
        let mut r = Reader::new(body);
        let hdr = RequestHeader::decode(&mut r).unwrap();
        let req = Request::decode(hdr.opcode, &mut r).unwrap().unwrap();
        if let Request::Ping = req {
            let mut v = Vec::new();
            let at = begin_frame(&mut v);
            let (xid, err) = (xid::PING, 0);
            ReplyHeader {
                xid,
                zxid: ZXID,
                err,
            }
            .encode(&mut v);
            end_frame(&mut v, at);
            out.extend_from_slice(&v);
            return;
        }
        let result = read(tree, &Caller::unauthenticated(SESSION), &req);
        write_reply(out, hdr.xid, ZXID, result.as_ref().map_err(|e| *e));
    });
}

#[test]
fn a_warm_read_allocates_nothing() {
    let tree = tree();
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, frames) in cases() {
        // Warm: the output buffer has its capacity, the reply bytes are right.
        out.clear();
        serve_borrowed(&tree, &frames, &mut out);
        let mut owned_out = Vec::new();
        serve_owned(&tree, &frames, &mut owned_out);
        assert_eq!(out, owned_out, "{name}: the two paths' bytes differ");
        let (borrowed, ()) = allocations(|| {
            for _ in 0..ROUNDS {
                out.clear();
                serve_borrowed(&tree, &frames, &mut out);
            }
        });
        let (owned, ()) = allocations(|| {
            for _ in 0..ROUNDS {
                owned_out.clear();
                serve_owned(&tree, &frames, &mut owned_out);
            }
        });
        println!(
            "{name}: {} allocations per round borrowed, {} owned",
            borrowed as f64 / ROUNDS as f64,
            owned as f64 / ROUNDS as f64
        );
        // getChildren2 walks the children with the tree's range iterator, which
        // builds the children's key prefix (tree::key) and imbl's cursor stack: a
        // few allocations per request, however many children there are.
        let allowed = match name.starts_with("getChildren2") {
            true => CHILDREN_WALK_ALLOCATIONS_MAX * ROUNDS,
            false => 0,
        };
        assert!(
            borrowed <= allowed,
            "{name}: the read path allocated {borrowed} times in {ROUNDS} rounds"
        );
    }
}

#[test]
fn the_counter_counts() {
    let (n, ()) = allocations(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}
