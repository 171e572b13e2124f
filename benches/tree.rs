//! Tree micro-benchmarks, in process and without IO: what the sequencer core pays per
//! write (prepare, apply, the O(1) publish of a version) and what a shard core pays per
//! read, on a tree of 10 000 keys of 100 bytes, plus 90/10 and 50/50 read/write mixes
//! driven through the same calls in one thread.

use corral::proto::Request;
use corral::tree::{apply, prepare, read, Caller, Tree, TxnContext};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const KEYS: usize = 10_000;

struct World {
    tree: Tree,
    zxid: i64,
    paths: Vec<String>,
    value: Vec<u8>,
}

impl World {
    fn ctx(&mut self) -> TxnContext {
        self.zxid += 1;
        TxnContext {
            zxid: self.zxid,
            time_ms: self.zxid,
            cxid: 1,
            extended_types_enabled: false,
            max_data_bytes: 0xfffff,
            enforce_quota: false,
            digest_enabled: true,
            ephemerals_allowed: true,
        }
    }

    fn write(&mut self, req: &Request) {
        let ctx = self.ctx();
        let txn = prepare(&self.tree, &ctx, &Caller::unauthenticated(0), req);
        let applied = apply(&mut self.tree, &txn);
        assert!(applied.result.is_ok(), "{req:?} -> {:?}", applied.result);
        black_box(applied);
    }

    fn new() -> World {
        let mut w = World {
            tree: Tree::new(),
            zxid: 0,
            paths: (0..KEYS).map(|i| format!("/k/{i:010}")).collect(),
            value: vec![b'x'; 100],
        };
        w.write(&Request::create_open("/k", b""));
        for i in 0..KEYS {
            let req = Request::create_open(&w.paths[i], &w.value);
            w.write(&req);
        }
        assert!(w.tree.node_count() >= KEYS);
        w
    }
}

fn set(w: &World, i: usize) -> Request {
    Request::SetData {
        path: w.paths[i % KEYS].clone(),
        data: Some(w.value.clone()),
        version: -1,
    }
}

fn get(w: &World, i: usize) -> Request {
    Request::GetData {
        path: w.paths[i % KEYS].clone(),
        watch: false,
    }
}

fn bench(c: &mut Criterion) {
    let mut w = World::new();
    let mut g = c.benchmark_group("tree");
    g.throughput(Throughput::Elements(1));
    let gets: Vec<Request> = (0..1024).map(|i| get(&w, i * 7919)).collect();
    let sets: Vec<Request> = (0..1024).map(|i| set(&w, i * 7919)).collect();
    let mut i = 0usize;
    g.bench_function("read getData (10k keys)", |b| {
        b.iter(|| {
            i += 1;
            black_box(read(&w.tree, &Caller::unauthenticated(0), &gets[i % gets.len()]).unwrap())
        })
    });
    g.bench_function("prepare setData", |b| {
        b.iter(|| {
            i += 1;
            let ctx = TxnContext {
                zxid: w.zxid + 1,
                time_ms: 0,
                cxid: 1,
                extended_types_enabled: false,
                max_data_bytes: 0xfffff,
                enforce_quota: false,
                digest_enabled: true,
                ephemerals_allowed: true,
            };
            black_box(prepare(
                &w.tree,
                &ctx,
                &Caller::unauthenticated(0),
                &sets[i % sets.len()],
            ))
        })
    });
    g.bench_function("prepare + apply setData", |b| {
        b.iter(|| {
            i += 1;
            let req = &sets[i % sets.len()];
            w.write(req)
        })
    });
    g.bench_function(
        "prepare + apply setData, version published each write",
        |b| {
            b.iter(|| {
                i += 1;
                let req = &sets[i % sets.len()];
                w.write(req);
                // A shard holds the published version, so the next write must copy its path.
                black_box(std::sync::Arc::new(w.tree.clone()))
            })
        },
    );
    let mut n = 0u64;
    g.bench_function("create + delete", |b| {
        b.iter(|| {
            n += 1;
            let p = format!("/k/tmp{n}");
            w.write(&Request::create_open(&p, b"v"));
            w.write(&Request::Delete {
                path: p,
                version: -1,
            });
        })
    });
    for (name, read_pct) in [("mix 90% reads", 90usize), ("mix 50% reads", 50)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                if (i * 37) % 100 < read_pct {
                    black_box(
                        read(&w.tree, &Caller::unauthenticated(0), &gets[i % gets.len()]).unwrap(),
                    );
                } else {
                    let req = &sets[i % sets.len()];
                    w.write(req);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
