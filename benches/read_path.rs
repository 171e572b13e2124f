//! The read path of a shard core, from request frame bytes in to reply frame bytes
//! out, without the kernel: parse the length prefix and the header, decode the
//! request, look the node up in a tree version and append the reply frame to the
//! connection's output buffer. A tree of 10 000 znodes of 100 bytes; getData of one of
//! them, exists, getChildren2 of a node with 10 children, ping, a getData of a missing
//! node, and 64 pipelined getData frames parsed from one buffer (what one read of the
//! socket delivers at 64 in flight).
//!
//! `served/…` is `tree::serve_read_frame`, the steps the shard runs per read: the
//! header, a `ReadRequest` borrowing its path from the frame, the reply encoded from
//! the node straight into the output (no allocation). `owned/…` is the path as the
//! shard ran it before (kept as the baseline): decode an owned `Request` (the path
//! copied into a `String`), `tree::read` builds a `Response` (getData's bytes copied
//! out of the tree), `write_reply` encodes it; a ping's reply built in a `Vec` of its
//! own, then copied.
//!
//! `accounting/…` is what the shard books for each read besides: bytes and a packet
//! received, a packet sent with its size, the reply's latency in the totals and the
//! read histogram. `owned` is the shard's way (`OwnedCount`: a relaxed load and store,
//! as only the shard writes its counters); `locked` the same counts by locked
//! read-modify-writes (`fetch_add`, the way before; kept as the baseline).
//!
//! `cargo bench --bench read_path` (PERF.md, "Read path: criterion benches").

use corral::proto::jute::{begin_frame, end_frame};
use corral::proto::{write_reply, xid, Reader, ReplyHeader, Request, RequestHeader};
use corral::server::stats::{Histogram, OwnedCount, ShardCounters};
use corral::tree::{build_tree, read, serve_read_frame, Caller, Tree};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::sync::atomic::Ordering::Relaxed;

const KEYS: usize = 10_000;
const CHILDREN: usize = 10;
const BATCH: usize = 64;
const ZXID: i64 = 0x1_0000_2a00;
const SESSION: i64 = 0x100_0000_0001;

fn key(i: usize) -> String {
    format!("/k/{i:010}")
}

/// 10 000 znodes of 100 bytes under `/k`, and `/c` with 10 children.
fn tree() -> Tree {
    let value = vec![b'x'; 100];
    let mut reqs = vec![
        Request::create_open("/k", b""),
        Request::create_open("/c", b""),
    ];
    reqs.extend((0..KEYS).map(|i| Request::create_open(&key(i), &value)));
    reqs.extend((0..CHILDREN).map(|i| Request::create_open(&format!("/c/child-{i}"), &value)));
    build_tree(&Caller::unauthenticated(SESSION), &reqs).expect("the test tree")
}

/// The frames of one bench: one request, or the 64 of the batch back to back.
struct Case {
    name: &'static str,
    frames: Vec<u8>,
    count: usize,
}

fn cases() -> Vec<Case> {
    let one = |name, req: Request| Case {
        name,
        frames: req.frame(7),
        count: 1,
    };
    let batch: Vec<u8> = (0..BATCH)
        .flat_map(|i| Request::get_data_of(&key(i * 151 % KEYS)).frame(i as i32 + 1))
        .collect();
    vec![
        one("getData 100 B", Request::get_data_of(&key(4242))),
        one(
            "exists",
            Request::Exists {
                path: key(4242),
                watch: false,
            },
        ),
        one(
            "getChildren2 (10 children)",
            Request::GetChildren2 {
                path: "/c".into(),
                watch: false,
            },
        ),
        one("ping", Request::Ping),
        one("getData NoNode", Request::get_data_of("/k/missing")),
        Case {
            name: "64 pipelined getData",
            frames: batch,
            count: BATCH,
        },
    ]
}

/// Splits `buf` into frame bodies as the shard's `on_bytes` does.
fn for_each_frame(buf: &[u8], mut f: impl FnMut(&[u8])) {
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = i32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        f(&buf[at + 4..at + 4 + len]);
        at += 4 + len;
    }
}

/// The shard's read path before the borrowed view: owned decode, `tree::read`,
/// `write_reply`; a ping's reply built in a `Vec` of its own, then copied.
fn serve_owned(tree: &Tree, caller: &Caller, body: &[u8], out: &mut Vec<u8>) {
    let mut r = Reader::new(body);
    let hdr = RequestHeader::decode(&mut r).unwrap();
    let req = Request::decode(hdr.opcode, &mut r).unwrap().unwrap();
    if let Request::Ping = req {
        let mut v = Vec::new();
        let at = begin_frame(&mut v);
        ReplyHeader {
            xid: xid::PING,
            zxid: ZXID,
            err: 0,
        }
        .encode(&mut v);
        end_frame(&mut v, at);
        out.extend_from_slice(&v);
        return;
    }
    let result = read(tree, caller, &req);
    write_reply(out, hdr.xid, ZXID, result.as_ref().map_err(|e| *e));
}

fn bench(c: &mut Criterion) {
    let tree = tree();
    let caller = Caller::unauthenticated(SESSION);
    let mut g = c.benchmark_group("read_path");
    for case in cases() {
        g.throughput(Throughput::Elements(case.count as u64));
        let mut out = Vec::with_capacity(64 * 1024);
        g.bench_function(format!("served/{}", case.name), |b| {
            b.iter(|| {
                out.clear();
                for_each_frame(black_box(&case.frames), |body| {
                    let served = serve_read_frame(&tree, &caller, ZXID, body, &mut out);
                    black_box(served.is_ok());
                });
                black_box(out.len())
            })
        });
        g.bench_function(format!("owned/{}", case.name), |b| {
            b.iter(|| {
                out.clear();
                for_each_frame(black_box(&case.frames), |body| {
                    serve_owned(&tree, &caller, body, &mut out)
                });
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// A read's request and reply frame sizes and its latency (µs), as booked.
const REQUEST_FRAME_BYTES: u64 = 30;
const REPLY_FRAME_BYTES: usize = 182;
const LATENCY_US: u64 = 40;

fn accounting(c: &mut Criterion) {
    let s = ShardCounters::default();
    let locked = Histogram::default();
    let mut g = c.benchmark_group("accounting");
    g.throughput(Throughput::Elements(1));
    g.bench_function("owned", |b| {
        b.iter(|| {
            s.bytes_received.add_owned(black_box(REQUEST_FRAME_BYTES));
            s.packets_received.add_owned(1);
            s.packet_sent(black_box(REPLY_FRAME_BYTES), 7);
            s.record_reply_latency_us(black_box(LATENCY_US), false);
        })
    });
    g.bench_function("locked", |b| {
        b.iter(|| {
            s.bytes_received
                .fetch_add(black_box(REQUEST_FRAME_BYTES), Relaxed);
            s.packets_received.fetch_add(1, Relaxed);
            s.packets_sent.fetch_add(1, Relaxed);
            s.response_bytes
                .record(black_box(REPLY_FRAME_BYTES) as u64 - 4, 7);
            s.latency_count.fetch_add(1, Relaxed);
            s.latency_sum_us.fetch_add(black_box(LATENCY_US), Relaxed);
            locked.record(black_box(LATENCY_US));
        })
    });
    g.finish();
}

criterion_group!(benches, bench, accounting);
criterion_main!(benches);
