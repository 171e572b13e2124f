//! Jute codec micro-benchmarks: the per-request encode/decode work a shard core does
//! on the read path (decode a getData request, encode its reply) and on the write
//! path (decode setData and a 4-op multi, encode a Stat reply), plus the client side
//! that loadgen and tests use (encode requests, decode reply headers).

use corral::proto::jute::{begin_frame, end_frame};
use corral::proto::{
    op, write_reply, JuteWrite, OpResult, Reader, ReplyHeader, Request, RequestHeader, Response,
    Stat,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn stat() -> Stat {
    Stat {
        czxid: 0x1_0000_0001,
        mzxid: 0x1_0000_00ff,
        ctime: 1_700_000_000_000,
        mtime: 1_700_000_000_123,
        version: 7,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 100,
        num_children: 0,
        pzxid: 0x1_0000_0001,
    }
}

fn decode_frame(buf: &[u8]) -> Request {
    let mut r = Reader::new(&buf[4..]);
    let h = RequestHeader::decode(&mut r).unwrap();
    Request::decode(h.opcode, &mut r).unwrap().unwrap()
}

fn bench(c: &mut Criterion) {
    let value = vec![b'x'; 100];
    let path = "/loadgen/k/0000000042".to_string();
    let get = Request::GetData {
        path: path.clone(),
        watch: false,
    };
    let set = Request::SetData {
        path: path.clone(),
        data: Some(value.clone()),
        version: -1,
    };
    let multi = Request::Multi(
        (0..4)
            .map(|i| Request::SetData {
                path: format!("/loadgen/k/{i:010}"),
                data: Some(value.clone()),
                version: -1,
            })
            .collect(),
    );
    let get_buf = get.frame(1);
    let set_buf = set.frame(2);
    let multi_buf = multi.frame(3);
    let data_reply = Response::Data {
        data: Some(value.clone()),
        stat: stat(),
    };
    let multi_reply = Response::Multi(
        (0..4)
            .map(|_| OpResult::Ok(op::SET_DATA, Response::Stat(stat())))
            .collect(),
    );

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode getData request", |b| {
        b.iter(|| decode_frame(black_box(&get_buf)))
    });
    g.bench_function("decode setData request (100 B)", |b| {
        b.iter(|| decode_frame(black_box(&set_buf)))
    });
    g.bench_function("decode multi of 4 setData", |b| {
        b.iter(|| decode_frame(black_box(&multi_buf)))
    });
    let mut out = Vec::with_capacity(4096);
    g.bench_function("encode getData reply (100 B)", |b| {
        b.iter(|| {
            out.clear();
            write_reply(&mut out, 1, 42, Ok(black_box(&data_reply)));
            black_box(out.len())
        })
    });
    g.bench_function("encode setData reply (Stat)", |b| {
        let r = Response::Stat(stat());
        b.iter(|| {
            out.clear();
            write_reply(&mut out, 2, 43, Ok(black_box(&r)));
            black_box(out.len())
        })
    });
    g.bench_function("encode multi reply (4 Stats)", |b| {
        b.iter(|| {
            out.clear();
            write_reply(&mut out, 3, 44, Ok(black_box(&multi_reply)));
            black_box(out.len())
        })
    });
    g.bench_function("encode getData request (client side)", |b| {
        b.iter(|| {
            out.clear();
            let at = begin_frame(&mut out);
            out.put_i32(1);
            out.put_i32(op::GET_DATA);
            out.put_str(black_box(&path));
            out.put_bool(false);
            end_frame(&mut out, at);
            black_box(out.len())
        })
    });
    let mut reply = Vec::new();
    write_reply(&mut reply, 1, 42, Ok(&data_reply));
    g.bench_function("decode reply header (client side)", |b| {
        b.iter(|| ReplyHeader::decode(&mut Reader::new(black_box(&reply[4..]))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
