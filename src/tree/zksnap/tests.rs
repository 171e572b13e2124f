//! ZooKeeper snapshot serialization tests: exact bytes of a fresh tree, round trips
//! of built and random trees through tiny chunks and random feed pieces, parent
//! before child for awkward names, hostile streams, and the file's header, seals,
//! digest block and truncations.

use rand::{Rng, SeedableRng};

use super::*;
use crate::proto::{perms, CreateKind, CreateRequest, ErrorCode, Reader, Request, Response, Stat};
use crate::tree::{
    apply, check_acl, digest_id, prepare, Caller, CreateTxn, Txn, TxnContext, TxnOp,
};

const T0: i64 = 1_700_000_000_000;

/// Builds trees the way the sequencer does: prepare, then apply, one zxid each.
struct Builder {
    tree: Tree,
    zxid: i64,
    ids: Vec<Id>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            tree: Tree::new(),
            zxid: 0,
            ids: vec![
                Id::new("digest", &digest_id("u:p")),
                Id::new("ip", "127.0.0.1"),
            ],
        }
    }

    fn write(&mut self, session_id: i64, req: Request) -> Result<Response, ErrorCode> {
        self.zxid += 1;
        let ctx = TxnContext {
            zxid: self.zxid,
            time_ms: T0 + self.zxid,
            cxid: 0,
            extended_types_enabled: true,
            max_data_bytes: 2 << 20,
            enforce_quota: false,
            digest_enabled: true,
            ephemerals_allowed: true,
        };
        let caller = Caller {
            session_id,
            ids: &self.ids,
            is_super: true,
        };
        let txn = prepare(&self.tree, &ctx, &caller, &req);
        apply(&mut self.tree, &txn).result
    }

    fn create(&mut self, path: &str, data: &[u8], flags: i32, acl: Vec<Acl>) {
        self.create_as(0x10, CreateKind::Create2, path, data, flags, acl, -1)
            .unwrap_or_else(|e| panic!("create {path}: {e:?}"));
    }

    #[allow(clippy::too_many_arguments)]
    fn create_as(
        &mut self,
        session_id: i64,
        kind: CreateKind,
        path: &str,
        data: &[u8],
        flags: i32,
        acl: Vec<Acl>,
        ttl: i64,
    ) -> Result<Response, ErrorCode> {
        self.create_opt(session_id, kind, path, Some(data), flags, acl, ttl)
    }

    /// A create whose data may be null (`None`).
    #[allow(clippy::too_many_arguments)]
    fn create_opt(
        &mut self,
        session_id: i64,
        kind: CreateKind,
        path: &str,
        data: Option<&[u8]>,
        flags: i32,
        acl: Vec<Acl>,
        ttl: i64,
    ) -> Result<Response, ErrorCode> {
        self.write(
            session_id,
            Request::Create(CreateRequest {
                kind,
                path: path.into(),
                data: data.map(<[u8]>::to_vec),
                acl,
                flags,
                ttl,
            }),
        )
    }
}

fn read_only() -> Vec<Acl> {
    vec![Acl::new(perms::READ, "world", "anyone")]
}

fn acl_pool(i: usize) -> Vec<Acl> {
    match i % 5 {
        0 => Acl::open(),
        1 => read_only(),
        2 => vec![Acl::new(perms::ALL, "auth", "")],
        3 => vec![
            Acl::new(perms::READ | perms::WRITE, "ip", "127.0.0.0/8"),
            Acl::new(perms::ADMIN, "digest", &digest_id("adm:pw")),
        ],
        _ => vec![Acl::new(perms::CREATE | perms::DELETE, "world", "anyone")],
    }
}

/// The decoder holds nodes back in ascending runs (`RUN_NODES_MAX`); a run ends where
/// the order turns, as in the reference's depth-first order of hashed siblings.
/// Checks must see through the run: a parent still in it, a duplicate of a node in it.
#[test]
fn runs_of_held_back_nodes_are_checked_and_kept() {
    let n = RUN_NODES_MAX * 2 + 7;
    let names: Vec<String> = (0..n).map(|i| format!("/p/n{i:06}")).collect();
    let stream = |order: &mut dyn Iterator<Item = &String>| {
        let mut r = Raw::head(&[], &[]).root().node("/p", b"", -1);
        for name in order {
            r = r.node(name, b"v", -1).node(&format!("{name}/c"), b"", -1);
        }
        r.end("BenWasHere")
    };
    let up = stream(&mut names.iter());
    let down = stream(&mut names.iter().rev());
    let (a, _) = decode_in_pieces(&up, ZkSnapKind::Snap, 5, 1, 4096).unwrap();
    let (b, _) = decode_in_pieces(&down, ZkSnapKind::Snap, 5, 2, 4096).unwrap();
    assert_eq!(a.nodes.len(), 2 + 2 * n);
    assert_same_tree(&a, &b);
    assert_eq!(a.get("/p").unwrap().stat().num_children, n as i32);
    assert_eq!(a.get("/p/n000003").unwrap().stat().num_children, 1);

    // A duplicate whose twin is still in the run (the order turns at it), and one
    // whose twin went into the tree with an earlier, full run.
    let turned = Raw::head(&[], &[])
        .root()
        .node("/a", b"", -1)
        .node("/b", b"", -1)
        .node("/a", b"", -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&turned),
        ZkSnapError::DuplicatePath { ref path, .. } if path == "/a"
    ));
    let mut r = Raw::head(&[], &[]).root();
    for name in &names {
        r = r.node(&name[2..], b"", -1);
    }
    let past_a_run = r
        .node(&names[RUN_NODES_MAX + 3][2..], b"", -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&past_a_run),
        ZkSnapError::DuplicatePath { .. }
    ));
    // An orphan whose would-be parent sorts inside the run is still an orphan.
    let orphan = Raw::head(&[], &[])
        .root()
        .node("/a", b"", -1)
        .node("/c", b"", -1)
        .node("/c/x", b"", -1)
        .node("/c/y/z", b"", -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&orphan),
        ZkSnapError::OrphanNode { ref parent, .. } if parent == "/c/y"
    ));
}

/// Every chunk of the encoder, checked against the bound.
fn encode(tree: &Tree, sessions: &[(i64, i32)], kind: ZkSnapKind, chunk: usize) -> Vec<u8> {
    let enc = ZkSnapEncoder::new(Arc::new(tree.clone()), sessions.to_vec(), kind, chunk);
    let mut out = Vec::new();
    for c in enc {
        assert!(!c.is_empty() && c.len() <= chunk, "chunk of {}", c.len());
        out.extend_from_slice(&c);
    }
    out
}

/// Feeds `stream` in random pieces of 1..=max_piece bytes, keeping the unconsumed
/// tail as a transport would.
fn decode_in_pieces(
    stream: &[u8],
    kind: ZkSnapKind,
    zxid: i64,
    seed: u64,
    max_piece: usize,
) -> Result<(Tree, Vec<(i64, i32)>), ZkSnapError> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut dec = ZkSnapDecoder::new(kind, zxid);
    let mut pending = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = rng.gen_range(1..=max_piece).min(stream.len() - at);
        pending.extend_from_slice(&stream[at..at + n]);
        at += n;
        let used = dec.feed(&pending)?;
        pending.drain(..used);
    }
    dec.finish()
}

/// The same tree: every node (data, ACL, internal stats, children count), every
/// index, the ACL reference counts, size, digest and last zxid.
fn assert_same_tree(a: &Tree, b: &Tree) {
    assert_eq!(a.nodes.len(), b.nodes.len(), "node count");
    for (k, n) in a.nodes.iter() {
        let m = b
            .nodes
            .get(k)
            .unwrap_or_else(|| panic!("{k:?} missing after decode"));
        assert_eq!(**n, **m, "{k:?}");
        let p = k.to_path();
        let (va, vb) = (a.get(&p).unwrap(), b.get(&p).unwrap());
        assert_eq!(va.stat(), vb.stat(), "{p}");
        assert!(va.children().eq(vb.children()), "{p} children");
    }
    assert_eq!(a.acls, b.acls, "ACL reference counts");
    assert_eq!(a.ephemerals, b.ephemerals);
    assert_eq!(a.containers, b.containers);
    assert_eq!(a.ttls, b.ttls);
    assert_eq!(a.approximate_data_size(), b.approximate_data_size());
    assert_eq!(a.digest(), b.digest(), "digest");
    assert_eq!(a.last_zxid(), b.last_zxid());
}

fn round_trip(tree: &Tree, sessions: &[(i64, i32)], chunk: usize, seed: u64, piece: usize) {
    for kind in [ZkSnapKind::Snap, ZkSnapKind::FileBody] {
        let stream = encode(tree, sessions, kind, chunk);
        let mut whole = ZkSnapDecoder::new(kind, 0);
        assert_eq!(whole.feed(&stream).unwrap(), stream.len());
        assert!(whole.is_done());
        let (t, s) = decode_in_pieces(&stream, kind, tree.last_zxid(), seed, piece)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_same_tree(tree, &t);
        assert_eq!(s, sessions);
    }
}

/// Node paths in stream order (skipping sessions and the ACL map).
fn stream_paths(stream: &[u8]) -> Vec<String> {
    let mut r = Reader::new(stream);
    let sessions = r.i32().unwrap();
    for _ in 0..sessions {
        r.i64().unwrap();
        r.i32().unwrap();
    }
    let acls = r.i32().unwrap();
    for _ in 0..acls {
        r.i64().unwrap();
        Acl::decode_list(&mut r).unwrap();
    }
    let mut out = Vec::new();
    loop {
        let p = r.string().unwrap();
        if p == "/" {
            return out;
        }
        r.buffer().unwrap();
        for _ in 0..STAT_PERSISTED_BYTES / 4 + 2 {
            r.i32().unwrap();
        }
        out.push(p);
    }
}

fn assert_parents_first(paths: &[String]) {
    let mut seen = HashSet::new();
    for p in paths {
        if !p.is_empty() {
            let parent = crate::proto::path::parent(p);
            let parent = if parent == "/" { "" } else { parent };
            assert!(seen.contains(parent), "{p} before its parent {parent:?}");
        }
        assert!(seen.insert(p.as_str()), "{p} twice");
    }
}

/// A tree with every kind of node, ACL, deep and unicode paths, empty and 1 MB data.
fn busy_tree() -> (Tree, Vec<(i64, i32)>) {
    let mut b = Builder::new();
    b.create("/a", b"alpha", 0, Acl::open());
    b.create("/a/b", b"", 0, read_only());
    let mut deep = String::from("/a/b");
    for i in 0..40 {
        deep.push_str(&format!("/d{i}"));
        b.create(&deep, b"x", 0, acl_pool(i));
    }
    b.create("/big", &vec![0xa5; 1 << 20], 0, Acl::open());
    b.create("/ünïcødé", "日本語".as_bytes(), 0, acl_pool(3));
    b.create("/ünïcødé/子", b"", 0, acl_pool(2));
    b.create("/a/seq-", b"", 2, Acl::open());
    b.create("/a/seq-", b"", 2, Acl::open());
    b.create_as(0x77, CreateKind::Create, "/e1", b"eph", 1, Acl::open(), -1)
        .unwrap();
    b.create_as(0x78, CreateKind::Create, "/a/e2", b"", 3, acl_pool(4), -1)
        .unwrap();
    b.create_as(0x10, CreateKind::Container, "/c", b"", 4, Acl::open(), -1)
        .unwrap();
    b.create("/c/kid", b"", 0, Acl::open());
    b.create_as(0x10, CreateKind::Ttl, "/t", b"ttl", 5, Acl::open(), 5000)
        .unwrap();
    b.create_as(0x10, CreateKind::Ttl, "/a/ts", b"", 6, read_only(), 60_000)
        .unwrap();
    b.write(
        0x10,
        Request::SetData {
            path: "/a".into(),
            data: Some(b"beta".to_vec()),
            version: -1,
        },
    )
    .unwrap();
    let first_seq = b
        .tree
        .get("/a")
        .unwrap()
        .children()
        .find(|c| c.starts_with("seq-"));
    let first_seq = format!("/a/{}", first_seq.unwrap());
    b.write(
        0x10,
        Request::Delete {
            path: first_seq,
            version: -1,
        },
    )
    .unwrap();
    b.write(
        0x10,
        Request::SetAcl {
            path: "/zookeeper".into(),
            acl: acl_pool(3),
            version: -1,
        },
    )
    .unwrap();
    let sessions = vec![(0x77, 30_000), (0x78, 4_000), (0x10, 10_000)];
    (b.tree, sessions)
}

// ----- exact bytes and round trips -----

fn put_node_bytes(out: &mut Vec<u8>, path: &str, acl: i64, aversion: i32) {
    out.put_str(path);
    out.put_buffer(b"");
    out.put_i64(acl);
    out.extend_from_slice(&[0; 4 * 8]); // czxid, mzxid, ctime, mtime
    out.put_i32(0); // version
    out.put_i32(0); // cversion
    out.put_i32(aversion);
    out.extend_from_slice(&[0; 2 * 8]); // ephemeralOwner, pzxid
}

#[test]
fn fresh_tree_stream_is_what_the_reference_sends() {
    // §9.2 [cap]: a fresh tree's map holds only index 1 = READ_ACL_UNSAFE, for
    // /zookeeper/config; the other system nodes use −1; all stats zero but
    // config's aversion −1.
    let mut want = Vec::new();
    want.put_i32(1);
    want.put_i64(0x1234);
    want.put_i32(3000);
    want.put_i32(1);
    want.put_i64(1);
    Acl::encode_list(&read_only(), &mut want);
    put_node_bytes(&mut want, "", -1, 0);
    put_node_bytes(&mut want, "/zookeeper", -1, 0);
    put_node_bytes(&mut want, "/zookeeper/config", 1, -1);
    put_node_bytes(&mut want, "/zookeeper/quota", -1, 0);
    want.put_str("/");
    want.put_str("BenWasHere");
    let got = encode(&Tree::new(), &[(0x1234, 3000)], ZkSnapKind::Snap, 1 << 20);
    assert_eq!(got, want);
    let (t, s) = decode_in_pieces(&got, ZkSnapKind::Snap, 0, 1, 1 << 20).unwrap();
    assert_same_tree(&Tree::new(), &t);
    assert_eq!(s, vec![(0x1234, 3000)]);
    // The file body is the same without the signature.
    let body = encode(&Tree::new(), &[(0x1234, 3000)], ZkSnapKind::FileBody, 5);
    assert_eq!(body, want[..want.len() - 14]);
}

#[test]
fn busy_tree_round_trips_through_tiny_chunks_and_random_pieces() {
    let (tree, sessions) = busy_tree();
    for (chunk, seed, piece) in [(7, 1, 13), (1, 2, 3), (4096, 3, 100_000), (1 << 20, 4, 1)] {
        if piece == 1 {
            // One byte at a time over a megabyte of data is slow in debug builds;
            // bytes one at a time are covered on the smaller trees below.
            continue;
        }
        round_trip(&tree, &sessions, chunk, seed, piece);
    }
    let stream = encode(&tree, &sessions, ZkSnapKind::Snap, 7);
    assert_parents_first(&stream_paths(&stream));
}

#[test]
fn decoded_tree_keeps_working() {
    let (tree, sessions) = busy_tree();
    let stream = encode(&tree, &sessions, ZkSnapKind::Snap, 1 << 16);
    let (t, _) = decode_in_pieces(&stream, ZkSnapKind::Snap, tree.last_zxid(), 9, 1 << 16).unwrap();
    let mut a = Builder::new();
    a.tree = tree;
    a.zxid = t.last_zxid();
    let mut b = Builder::new();
    b.tree = t;
    b.zxid = a.zxid;
    for x in [&mut a, &mut b] {
        x.create("/c/kid2", b"", 0, Acl::open());
        x.write(
            0x77,
            Request::Delete {
                path: "/e1".into(),
                version: -1,
            },
        )
        .unwrap();
        x.create("/a/b/new", b"n", 0, read_only());
    }
    assert_same_tree(&a.tree, &b.tree);
    assert_eq!(b.tree.ephemerals_of(0x78), a.tree.ephemerals_of(0x78));
    assert_eq!(b.tree.ephemerals_of(0x77), Vec::<String>::new());
    assert_eq!(
        b.tree.cleanup_candidates(i64::MAX),
        a.tree.cleanup_candidates(i64::MAX)
    );
}

#[test]
fn decoder_stops_at_the_signature() {
    let stream = encode(&Tree::new(), &[], ZkSnapKind::Snap, 64);
    let mut fed = stream.clone();
    fed.extend_from_slice(b"next packet");
    let mut dec = ZkSnapDecoder::new(ZkSnapKind::Snap, 5);
    assert_eq!(dec.feed(&fed).unwrap(), stream.len());
    assert!(dec.is_done());
    assert_eq!(dec.feed(b"more").unwrap(), 0);
    let (t, s) = dec.finish().unwrap();
    assert_eq!(t.last_zxid(), 5);
    assert!(s.is_empty());
}

#[test]
fn one_byte_pieces_and_one_byte_chunks() {
    let mut b = Builder::new();
    b.create("/x", b"data", 0, acl_pool(3));
    b.create("/x/y", b"", 0, acl_pool(1));
    b.create_as(0x5, CreateKind::Create, "/x/e", b"", 1, Acl::open(), -1)
        .unwrap();
    round_trip(&b.tree, &[(0x5, 6000)], 1, 7, 1);
}

#[test]
fn open_acl_is_index_minus_one_and_others_follow_tree_acls() {
    let (tree, _) = busy_tree();
    let enc = ZkSnapEncoder::new(Arc::new(tree.clone()), vec![], ZkSnapKind::Snap, 64);
    let open = Acl::open();
    assert_eq!(enc.acl_index[&open], -1);
    assert!(!enc.acl_lists.contains(&Arc::new(open)));
    let mut n = 0;
    for (list, _) in tree.acls.iter().filter(|(l, _)| ***l != Acl::open()) {
        n += 1;
        assert_eq!(enc.acl_index[&**list], n);
    }
    assert_eq!(enc.acl_lists.len(), n as usize);
}

// ----- parent before child -----

#[test]
fn parents_come_first_for_awkward_names() {
    let names = [
        "!", "-", ".x", "0", "9", "a", "a!", "a-b", "a.b", "ab", "a0", "~", "é", "日本",
    ];
    let mut b = Builder::new();
    let mut parents = vec![String::new()];
    for depth in 0..3 {
        let mut next = Vec::new();
        for (i, p) in parents.iter().enumerate() {
            for (j, n) in names.iter().enumerate() {
                if (i + j + depth) % 3 == 0 || depth == 0 {
                    let path = format!("{p}/{n}");
                    b.create(&path, b"", 0, Acl::open());
                    next.push(path);
                }
            }
        }
        parents = next;
    }
    let stream = encode(&b.tree, &[], ZkSnapKind::Snap, 100);
    let paths = stream_paths(&stream);
    assert_eq!(paths.len(), b.tree.distinct_node_count());
    assert_parents_first(&paths);
    round_trip(&b.tree, &[], 100, 3, 50);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Name characters that sort below and around '/'.
    const ALPHABET: &[char] = &['!', '-', '.', '0', '9', 'a', 'z', '~', 'é'];

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(ALPHABET), 1..4)
            .prop_map(|v| v.into_iter().collect::<String>())
            .prop_filter("relative names", |s| s != "." && s != "..")
    }

    /// One random write: (op, pick, name, kind, acl, session, data length).
    type Op = (u8, usize, String, u8, usize, u8, usize);

    fn op() -> impl Strategy<Value = Op> {
        (
            0..6u8,
            any::<usize>(),
            name(),
            0..5u8,
            any::<usize>(),
            0..3u8,
            0..300usize,
        )
    }

    fn build(ops: &[Op]) -> (Tree, Vec<(i64, i32)>) {
        let mut b = Builder::new();
        for (what, pick, name, kind, acl, session, len) in ops {
            let paths: Vec<String> = b.tree.nodes.keys().map(|k| k.to_path()).collect();
            let target = paths[pick % paths.len()].clone();
            let session = 0x100 + *session as i64;
            // Every seventh length stands for null data.
            let data = (len % 7 != 3).then(|| vec![*len as u8; *len]);
            // Errors (ephemeral parents, missing nodes, names taken) are fine.
            let _ = match what {
                0..=2 => {
                    let path = crate::proto::path::join(&target, name);
                    let (kind, flags, ttl) = match kind {
                        0 => (CreateKind::Create2, 0, -1),
                        1 => (CreateKind::Create2, 1, -1),
                        2 => (CreateKind::Create2, 2, -1),
                        3 => (CreateKind::Container, 4, -1),
                        _ => (CreateKind::Ttl, 5, 1000 + *len as i64),
                    };
                    let data = data.as_deref();
                    b.create_opt(session, kind, &path, data, flags, acl_pool(*acl), ttl)
                }
                3 => b.write(
                    session,
                    Request::SetData {
                        path: target,
                        data,
                        version: -1,
                    },
                ),
                4 => b.write(
                    session,
                    Request::SetAcl {
                        path: target,
                        acl: acl_pool(*acl),
                        version: -1,
                    },
                ),
                _ => b.write(
                    session,
                    Request::Delete {
                        path: target,
                        version: -1,
                    },
                ),
            };
        }
        (b.tree, vec![(0x100, 2000), (0x101, 3000), (0x102, 4000)])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_trees_round_trip(
            ops in prop::collection::vec(op(), 1..60),
            chunk in 1..200usize,
            seed in any::<u64>(),
            piece in 1..300usize,
        ) {
            let (tree, sessions) = build(&ops);
            round_trip(&tree, &sessions, chunk, seed, piece);
            let stream = encode(&tree, &sessions, ZkSnapKind::Snap, 1 << 16);
            assert_parents_first(&stream_paths(&stream));
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            seed in any::<u64>(),
        ) {
            for kind in [ZkSnapKind::Snap, ZkSnapKind::FileBody] {
                let _ = decode_in_pieces(&bytes, kind, 0, seed, 50);
            }
            let _ = read_zk_snapshot_file(&mut &bytes[..], 0);
        }

        #[test]
        fn flipped_bytes_never_panic(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut b = Builder::new();
            b.create("/a", b"x", 0, acl_pool(3));
            b.create("/a/b", b"yy", 0, acl_pool(1));
            let mut stream = encode(&b.tree, &[(7, 8)], ZkSnapKind::Snap, 1 << 10);
            for (at, x) in &flips {
                let i = at % stream.len();
                stream[i] ^= x | 1;
            }
            let _ = decode_in_pieces(&stream, ZkSnapKind::Snap, 0, 1, 17);
        }
    }
}

// ----- hostile streams -----

/// A stream assembled by hand.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn head(sessions: &[(i64, i32)], acls: &[(i64, Vec<Acl>)]) -> Raw {
        let mut r = Raw::default();
        r.0.put_i32(sessions.len() as i32);
        for (id, to) in sessions {
            r.0.put_i64(*id);
            r.0.put_i32(*to);
        }
        r.0.put_i32(acls.len() as i32);
        for (i, list) in acls {
            r.0.put_i64(*i);
            Acl::encode_list(list, &mut r.0);
        }
        r
    }

    fn node(mut self, path: &str, data: &[u8], acl: i64) -> Raw {
        self.0.put_str(path);
        self.0.put_buffer(data);
        self.0.put_i64(acl);
        self.0.extend_from_slice(&[0; STAT_PERSISTED_BYTES]);
        self
    }

    /// A node with empty data whose StatPersisted names `czxid` (the rest zero).
    fn node_made_at(mut self, path: &str, acl: i64, czxid: i64) -> Raw {
        self.0.put_str(path);
        self.0.put_buffer(b"");
        self.0.put_i64(acl);
        self.0.put_i64(czxid);
        self.0.extend_from_slice(&[0; STAT_PERSISTED_BYTES - 8]);
        self
    }

    /// A node record whose data is the null buffer (length −1).
    fn null_node(mut self, path: &str, acl: i64) -> Raw {
        self.0.put_str(path);
        self.0.put_null();
        self.0.put_i64(acl);
        self.0.extend_from_slice(&[0; STAT_PERSISTED_BYTES]);
        self
    }

    fn root(self) -> Raw {
        self.node("", b"", -1)
    }

    fn end(mut self, signature: &str) -> Vec<u8> {
        self.0.put_str("/");
        self.0.put_str(signature);
        self.0
    }
}

fn decode_err(stream: &[u8]) -> ZkSnapError {
    decode_err_with(stream, ZkSnapLimits::default())
}

fn decode_err_with(stream: &[u8], limits: ZkSnapLimits) -> ZkSnapError {
    let mut dec = ZkSnapDecoder::with_limits(ZkSnapKind::Snap, 0, limits);
    let e = match dec.feed(stream) {
        Err(e) => e,
        Ok(_) => match dec.finish() {
            Err(e) => e,
            Ok(_) => panic!("stream accepted"),
        },
    };
    let msg = e.to_string();
    assert!(!msg.contains('\n') && !msg.is_empty(), "{msg:?}");
    e
}

#[test]
fn a_minimal_hand_built_stream_is_accepted() {
    let s = Raw::head(&[(1, 2)], &[(5, read_only())])
        .root()
        .node("/a", b"d", 5)
        .node("/a/b", b"", -1)
        .end("BenWasHere");
    let (t, sessions) = decode_in_pieces(&s, ZkSnapKind::Snap, 9, 0, 1000).unwrap();
    assert_eq!(sessions, vec![(1, 2)]);
    assert_eq!(t.get("/a").unwrap().acl(), &read_only()[..]);
    assert_eq!(t.get("/a").unwrap().stat().num_children, 1);
    assert_eq!(t.get("/").unwrap().stat().num_children, 1);
    assert_eq!(t.last_zxid(), 9);
    // Lists nothing uses are dropped; the open list stays for the nodes using it.
    assert_eq!(t.acls.len(), 2);
}

#[test]
fn null_data_is_read_and_written_as_a_minus_one_buffer() {
    // DataNode.serialize writes a null byte[] as length −1; it must come back null.
    let s = Raw::head(&[], &[])
        .root()
        .null_node("/n", -1)
        .node("/e", b"", -1)
        .end("BenWasHere");
    let (t, _) = decode_in_pieces(&s, ZkSnapKind::Snap, 3, 0, 7).unwrap();
    assert_eq!(t.get("/n").unwrap().data(), None);
    assert_eq!(t.get("/e").unwrap().data(), Some(&b""[..]));
    assert_eq!(t.get("/n").unwrap().stat().data_length, 0);
    // Encoding gives the null buffer back, and the whole stream round-trips.
    let out = encode(&t, &[], ZkSnapKind::Snap, 1 << 16);
    let mut want = Vec::new();
    want.put_str("/n");
    want.put_null();
    assert!(out.windows(want.len()).any(|w| w == want), "no -1 after /n");
    round_trip(&t, &[], 64, 1, 9);
}

#[test]
fn structural_faults_are_refused() {
    let child_first = Raw::head(&[], &[])
        .root()
        .node("/a/b", b"", -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&child_first),
        ZkSnapError::OrphanNode { ref path, ref parent, .. } if path == "/a/b" && parent == "/a"
    ));
    let no_root_first = Raw::head(&[], &[]).node("/a", b"", -1).end("BenWasHere");
    assert!(matches!(
        decode_err(&no_root_first),
        ZkSnapError::OrphanNode { .. }
    ));
    let dup = Raw::head(&[], &[])
        .root()
        .node("/a", b"", -1)
        .node("/a", b"", -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&dup),
        ZkSnapError::DuplicatePath { .. }
    ));
    let dup_root = Raw::head(&[], &[]).root().root().end("BenWasHere");
    assert!(matches!(
        decode_err(&dup_root),
        ZkSnapError::DuplicatePath { .. }
    ));
    let reserved = Raw::head(&[], &[(-1, read_only())])
        .root()
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&reserved),
        ZkSnapError::ReservedAclIndex { .. }
    ));
    let dup_acl = Raw::head(&[], &[(1, read_only()), (1, Acl::open())])
        .root()
        .end("BenWasHere");
    assert!(matches!(
        decode_err(&dup_acl),
        ZkSnapError::DuplicateAclIndex { index: 1, .. }
    ));
    let dup_session = Raw::head(&[(3, 1), (3, 2)], &[]).root().end("BenWasHere");
    assert!(matches!(
        decode_err(&dup_session),
        ZkSnapError::DuplicateSession { session_id: 3, .. }
    ));
    let empty = Raw::head(&[], &[]).end("BenWasHere");
    assert!(matches!(decode_err(&empty), ZkSnapError::NoRoot { .. }));
    for bad in ["noslash", "/a/", "/a//b", "/a/./b", "/x\u{1}"] {
        let s = Raw::head(&[], &[])
            .root()
            .node(bad, b"", -1)
            .end("BenWasHere");
        assert!(
            matches!(decode_err(&s), ZkSnapError::BadPath { .. }),
            "{bad:?}"
        );
    }
}

#[test]
fn bad_signatures_are_refused() {
    for sig in ["BenWasHer", "benwashere", "", "BenWasHere!"] {
        let s = Raw::head(&[], &[]).root().end(sig);
        assert!(
            matches!(decode_err(&s), ZkSnapError::BadSignature { ref found, .. } if found == sig),
            "{sig:?}"
        );
    }
    let mut s = Raw::head(&[], &[]).root().end("");
    s.truncate(s.len() - 4);
    s.put_i32(i32::MAX);
    assert!(matches!(decode_err(&s), ZkSnapError::BadSignature { .. }));
}

#[test]
fn huge_and_negative_lengths_and_counts_are_refused_without_allocating() {
    let mut s = Vec::new();
    s.put_i32(i32::MAX);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::CountOverBound {
            what: "session count",
            ..
        }
    ));
    let mut s = Vec::new();
    s.put_i32(-5);
    assert!(matches!(decode_err(&s), ZkSnapError::NegativeLength { .. }));
    let mut s = Raw::head(&[], &[]).0;
    s.truncate(4);
    s.put_i32(i32::MAX);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::CountOverBound {
            what: "ACL map",
            ..
        }
    ));
    // One ACL list claiming 2^31-1 entries.
    let mut s = Vec::new();
    s.put_i32(0);
    s.put_i32(1);
    s.put_i64(1);
    s.put_i32(i32::MAX);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::LengthOverBound {
            what: "ACL list",
            ..
        }
    ));
    // A null ACL list.
    let mut s = Vec::new();
    s.put_i32(0);
    s.put_i32(1);
    s.put_i64(1);
    s.put_i32(-1);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::Null {
            what: "ACL list",
            ..
        }
    ));
    // An ACL id claiming 2 GB.
    let mut s = Vec::new();
    s.put_i32(0);
    s.put_i32(1);
    s.put_i64(1);
    s.put_i32(1);
    s.put_i32(1);
    s.put_str("world");
    s.put_i32(i32::MAX);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::LengthOverBound { what: "ACL id", .. }
    ));
    // Paths and data.
    let mut s = Raw::head(&[], &[]).0;
    s.put_i32(i32::MAX);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::LengthOverBound {
            what: "node path",
            ..
        }
    ));
    let mut s = Raw::head(&[], &[]).0;
    s.put_i32(-2);
    assert!(matches!(decode_err(&s), ZkSnapError::NegativeLength { .. }));
    let mut s = Raw::head(&[], &[]).0;
    s.put_i32(-1);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::Null {
            what: "node path",
            ..
        }
    ));
    let mut s = Raw::head(&[], &[]).0;
    s.put_str("");
    s.put_i32(JUTE_BYTES_MAX as i32 + 1);
    assert!(matches!(
        decode_err(&s),
        ZkSnapError::LengthOverBound { what: "node data", len, .. } if len == JUTE_BYTES_MAX + 1
    ));
    // Exactly at the bound is fine (the reference accepts it too).
    let s = Raw::head(&[], &[])
        .root()
        .node("/big", &vec![1; JUTE_BYTES_MAX], -1)
        .end("BenWasHere");
    let (t, _) = decode_in_pieces(&s, ZkSnapKind::Snap, 0, 5, 1 << 20).unwrap();
    assert_eq!(t.get("/big").unwrap().data().unwrap().len(), JUTE_BYTES_MAX);
}

#[test]
fn tighter_limits_bound_records_and_counts() {
    let limits = ZkSnapLimits {
        record_bytes_max: 200,
        string_bytes_max: 150,
        sessions_count_max: 2,
        acl_lists_count_max: 1,
        acl_entries_count_max: 1,
        nodes_count_max: 3,
    };
    let s = Raw::head(&[], &[])
        .root()
        .node("/a", &[0; 140], -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err_with(&s, limits),
        ZkSnapError::LengthOverBound {
            what: "node record",
            ..
        }
    ));
    let s = Raw::head(&[(1, 1), (2, 2), (3, 3)], &[])
        .root()
        .end("BenWasHere");
    assert!(matches!(
        decode_err_with(&s, limits),
        ZkSnapError::CountOverBound { .. }
    ));
    let s = Raw::head(&[], &[])
        .root()
        .node("/a", b"", -1)
        .node("/b", b"", -1)
        .node("/c", b"", -1)
        .end("BenWasHere");
    assert!(matches!(
        decode_err_with(&s, limits),
        ZkSnapError::CountOverBound { what: "node", .. }
    ));
    // An ACL entry that never completes within the record bound.
    let mut s = Vec::new();
    s.put_i32(0);
    s.put_i32(1);
    s.put_i64(1);
    s.put_i32(1);
    s.put_i32(1);
    s.put_str(&"w".repeat(150));
    s.put_i32(150);
    s.extend_from_slice(&[b'x'; 100]);
    assert!(matches!(
        decode_err_with(&s, limits),
        ZkSnapError::RecordOverBound { max: 200, .. }
    ));
}

#[test]
fn truncations_are_incomplete_and_a_failed_decoder_stays_failed() {
    let (tree, sessions) = {
        let mut b = Builder::new();
        b.create("/a", b"x", 0, acl_pool(3));
        (b.tree, vec![(1, 2)])
    };
    let stream = encode(&tree, &sessions, ZkSnapKind::Snap, 1 << 10);
    for cut in 0..stream.len() {
        let mut dec = ZkSnapDecoder::new(ZkSnapKind::Snap, 0);
        let used = dec.feed(&stream[..cut]).unwrap();
        assert!(used <= cut);
        assert!(!dec.is_done());
        assert!(
            matches!(dec.finish(), Err(ZkSnapError::Incomplete { .. })),
            "cut {cut}"
        );
    }
    let mut dec = ZkSnapDecoder::new(ZkSnapKind::Snap, 0);
    let bad = Raw::head(&[], &[]).node("/a", b"", -1).end("BenWasHere");
    assert!(dec.feed(&bad).is_err());
    assert!(matches!(dec.feed(&stream), Err(ZkSnapError::Failed)));
}

#[test]
fn acl_strings_decode_as_java_does() {
    // Java writes a non-BMP character as two 3-byte surrogates and reads each back
    // as U+FFFD (§1).
    assert_eq!(
        java_utf8(b"a\x00\xc3\xa9\xed\xa0\xbd\xed\xb8\x80"),
        "a\0é\u{fffd}\u{fffd}"
    );
    assert_eq!(java_utf8("plain".as_bytes()), "plain");
    assert_eq!(java_utf8(b"\xff"), "\u{fffd}");
    let mut s = Vec::new();
    s.put_i32(0); // sessions
    s.put_i32(1); // ACL map: index 1 = [ALL digest:<surrogates>:hash]
    s.put_i64(1);
    s.put_i32(1);
    s.put_i32(perms::ALL);
    s.put_str("digest");
    s.put_buffer(b"\xed\xa0\xbd\xed\xb8\x80:hash");
    let s = Raw(s).node("", b"", 1).end("BenWasHere");
    let (t, _) = decode_in_pieces(&s, ZkSnapKind::Snap, 0, 0, 1000).unwrap();
    assert_eq!(t.get("/").unwrap().acl()[0].id.id, "\u{fffd}\u{fffd}:hash");
}

// ----- files -----

fn file_bytes(tree: &Tree, sessions: &[(i64, i32)], digest: Option<ZxidDigest>) -> Vec<u8> {
    let mut out = Vec::new();
    write_zk_snapshot_file(&mut out, tree, sessions.to_vec(), digest).unwrap();
    out
}

fn file_err(bytes: &[u8]) -> ZkSnapError {
    let e = read_zk_snapshot_file(&mut &bytes[..], 0).expect_err("file accepted");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg:?}");
    e
}

/// A `Read` that hands out at most `n` bytes per call.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn file_round_trip_with_and_without_digest() {
    let (tree, sessions) = busy_tree();
    let d = ZxidDigest::new(tree.last_zxid(), 0x1_2345_6789);
    let bytes = file_bytes(&tree, &sessions, Some(d));
    assert_eq!(
        &bytes[..16],
        b"ZKSN\x00\x00\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff"
    );
    // The reference's quick validity check: the file ends in ustring "/".
    assert_eq!(&bytes[bytes.len() - 5..], b"\x00\x00\x00\x01/");
    let f = read_zk_snapshot_file(&mut &bytes[..], 0x99).unwrap();
    assert_eq!(f.digest, Some(d));
    assert_eq!(f.sessions, sessions);
    assert_eq!(f.tree.last_zxid(), 0x99);
    let mut t = f.tree.clone();
    t.last_zxid = tree.last_zxid();
    assert_same_tree(&tree, &t);
    // The same through a Read that gives 3 bytes at a time.
    let f = read_zk_snapshot_file(&mut Trickle(&bytes, 3), tree.last_zxid()).unwrap();
    assert_same_tree(&tree, &f.tree);
    // Without the digest block: one seal only.
    let plain = file_bytes(&tree, &sessions, None);
    assert_eq!(plain.len(), bytes.len() - 20 - 13);
    assert_eq!(plain[..], bytes[..plain.len()]);
    let f = read_zk_snapshot_file(&mut &plain[..], tree.last_zxid()).unwrap();
    assert_eq!(f.digest, None);
    assert_same_tree(&tree, &f.tree);
}

#[test]
fn seals_cover_everything_before_them() {
    let tree = Tree::new();
    let d = ZxidDigest::new(0x100000002, 0x51c6d660);
    let bytes = file_bytes(&tree, &[], Some(d));
    let body_end = bytes.len() - 13 - 20 - 13;
    let seal_a = i64::from_be_bytes(bytes[body_end..body_end + 8].try_into().unwrap());
    assert_eq!(seal_a, adler2::adler32_slice(&bytes[..body_end]) as i64);
    let b_at = bytes.len() - 13;
    let seal_b = i64::from_be_bytes(bytes[b_at..b_at + 8].try_into().unwrap());
    assert_eq!(seal_b, adler2::adler32_slice(&bytes[..b_at]) as i64);
    // Any flipped byte is caught somewhere.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        let _ = file_err(&b);
    }
    let mut b = bytes.clone();
    b[body_end + 7] ^= 1;
    assert!(matches!(
        file_err(&b),
        ZkSnapError::BadSeal { seal: "first", offset, .. } if offset == body_end as u64
    ));
    let mut b = bytes.clone();
    b[b_at - 1] ^= 1; // inside the digest: only the second seal sees it
    assert!(matches!(
        file_err(&b),
        ZkSnapError::BadSeal { seal: "second", .. }
    ));
}

#[test]
fn file_header_faults_and_compression() {
    let bytes = file_bytes(&Tree::new(), &[], None);
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(
        file_err(&b),
        ZkSnapError::BadMagic { offset: 0, .. }
    ));
    let mut b = bytes.clone();
    b[7] = 3;
    assert!(matches!(
        file_err(&b),
        ZkSnapError::BadVersion {
            offset: 4,
            found: 3
        }
    ));
    let mut gz = vec![0x1f, 0x8b, 8, 0];
    gz.extend_from_slice(&[0; 20]);
    let e = file_err(&gz);
    assert!(matches!(e, ZkSnapError::Compressed("gzip")));
    assert!(e.to_string().contains("gzip"));
    let mut snappy = b"\x82SNAPPY\x00".to_vec();
    snappy.extend_from_slice(&[0; 20]);
    assert!(matches!(
        file_err(&snappy),
        ZkSnapError::Compressed("snappy")
    ));
    assert_eq!(zk_snapshot_name_zxid("snapshot.1a").unwrap(), 0x1a);
    assert_eq!(zk_snapshot_name_zxid("snapshot.0").unwrap(), 0);
    assert_eq!(zk_snapshot_file_name(0x100000002), "snapshot.100000002");
    assert!(matches!(
        zk_snapshot_name_zxid("snapshot.1a.gz"),
        Err(ZkSnapError::Compressed("gzip"))
    ));
    assert!(matches!(
        zk_snapshot_name_zxid("snapshot.1a.snappy"),
        Err(ZkSnapError::Compressed("snappy"))
    ));
    for bad in ["log.1", "snapshot.", "snapshot.xyz", "snapshot.1.bak"] {
        assert!(
            matches!(zk_snapshot_name_zxid(bad), Err(ZkSnapError::BadName(_))),
            "{bad}"
        );
    }
}

#[test]
fn file_truncations_and_trailing_bytes() {
    let mut b = Builder::new();
    b.create("/a", b"xyz", 0, acl_pool(2));
    let bytes = file_bytes(&b.tree, &[(1, 2)], Some(ZxidDigest::new(b.zxid, 7)));
    let one_seal = bytes.len() - 20 - 13;
    for cut in 0..bytes.len() {
        let r = read_zk_snapshot_file(&mut &bytes[..cut], 0);
        if cut == one_seal {
            // Exactly a file written with the digest disabled.
            assert_eq!(r.unwrap().digest, None);
            continue;
        }
        match r {
            Err(ZkSnapError::Truncated { offset, .. }) => assert_eq!(offset, cut as u64),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    let mut b2 = bytes.clone();
    b2.extend_from_slice(b"junk");
    assert!(matches!(
        file_err(&b2),
        ZkSnapError::TrailingBytes { count: 4, offset } if offset == bytes.len() as u64
    ));
}

#[test]
fn old_style_hex_digest_block_is_read() {
    let tree = Tree::new();
    let d = ZxidDigest {
        zxid: 5,
        digest_version: 1,
        digest: 0xabcdef,
    };
    let bytes = file_bytes(&tree, &[], Some(d));
    let f = read_zk_snapshot_file(&mut &bytes[..], 5).unwrap();
    assert_eq!(f.digest, Some(d));
}

#[test]
fn body_errors_carry_file_offsets() {
    // A node whose parent is missing, inside a file: the offset counts the header.
    let body = Raw::head(&[], &[]).root().node("/a/b", b"", -1).0;
    let mut f = Vec::new();
    f.put_i32(FILE_MAGIC);
    f.put_i32(FILE_VERSION);
    f.put_i64(-1);
    let node_at = 16 + Raw::head(&[], &[]).root().0.len() as u64;
    f.extend_from_slice(&body);
    f.put_str("/");
    match file_err(&f) {
        ZkSnapError::OrphanNode { offset, .. } => assert_eq!(offset, node_at),
        e => panic!("{e}"),
    }
}

#[test]
fn stat_persisted_is_60_bytes_in_the_reference_order() {
    let mut b = Builder::new();
    b.create("/s", b"", 0, Acl::open());
    let n = b.tree.node("/s").unwrap().clone();
    let mut out = Vec::new();
    put_node(&mut out, &Key::from_path("/s"), &n, -1);
    assert_eq!(out.len(), 4 + 2 + 4 + 8 + STAT_PERSISTED_BYTES);
    let mut r = Reader::new(&out[4 + 2 + 4 + 8..]);
    let s = Stat {
        czxid: r.i64().unwrap(),
        mzxid: r.i64().unwrap(),
        ctime: r.i64().unwrap(),
        mtime: r.i64().unwrap(),
        version: r.i32().unwrap(),
        cversion: r.i32().unwrap(),
        aversion: r.i32().unwrap(),
        ephemeral_owner: r.i64().unwrap(),
        data_length: 0,
        num_children: 0,
        pzxid: r.i64().unwrap(),
    };
    assert!(r.is_empty());
    assert_eq!(s, b.tree.get("/s").unwrap().stat());
}

/// The reference writes its ACL map before its nodes, and a node created (or given new
/// ACLs) with a new list meanwhile names an index the map lacks. Such a snapshot
/// loads (as on the reference): the node holds a stand-in that grants nobody
/// anything until the replayed create that set its ACL supplies the list.
#[test]
fn an_acl_index_the_map_lacks_holds_a_stand_in_until_its_create_replays() {
    let s = Raw::head(&[], &[(1, read_only())])
        .root()
        .node_made_at("/a", 2, 11)
        .node_made_at("/b", 2, 12)
        .node("/c", b"", 1)
        .end("BenWasHere");
    let (mut t, _) = decode_in_pieces(&s, ZkSnapKind::Snap, 9, 0, 1000).unwrap();
    let stand_in = |i: &str| (i.to_string(), "2".to_string());
    assert_eq!(t.unresolved_acls(), vec![stand_in("/a"), stand_in("/b")]);
    let nobody = Caller::unauthenticated(7);
    for p in ["/a", "/b"] {
        let acl = &t.node(p).unwrap().acl;
        assert_eq!(check_acl(acl, perms::ALL, &nobody), Err(ErrorCode::NoAuth));
    }
    assert_eq!(*t.node("/c").unwrap().acl, read_only());

    let theirs = vec![Acl::new(perms::READ | perms::WRITE, "ip", "127.0.0.1")];
    let replayed = |zxid: i64, path: &str| create_txn(zxid, path, theirs.clone());
    // A create of /c (no stand-in) leaves its ACL; the create of /a puts its own.
    crate::tree::apply_restored(&mut t, &replayed(10, "/c"));
    crate::tree::apply_restored(&mut t, &replayed(11, "/a"));
    assert_eq!(*t.node("/c").unwrap().acl, read_only());
    assert_eq!(*t.node("/a").unwrap().acl, theirs);
    assert_eq!(t.unresolved_acls(), vec![stand_in("/b")]);
    // The strict apply (a leader's) resolves the same way.
    let applied = apply(&mut t, &replayed(12, "/b"));
    assert_eq!(applied.result, Err(ErrorCode::NodeExists));
    assert_eq!(*t.node("/b").unwrap().acl, theirs);
    assert!(t.unresolved_acls().is_empty());
    // Reference counts follow: the stand-in list is gone, /a and /b share theirs.
    assert_eq!(t.acls.get(&theirs), Some(&2));
    assert!(t.acls.keys().all(|a| !crate::tree::acl::is_stand_in_acl(a)));
}

/// The stand-in goes to the create that made the snapshot's copy of the node (its
/// czxid), not to an earlier create of the same path whose node was gone by then
/// (an ephemeral of a closed session, made again by another).
#[test]
fn a_stand_in_goes_to_the_create_that_made_the_node() {
    let s = Raw::head(&[], &[])
        .root()
        .node_made_at("/e", 2, 12)
        .end("BenWasHere");
    let (mut t, _) = decode_in_pieces(&s, ZkSnapKind::Snap, 9, 0, 1000).unwrap();
    let acl = |p: i32| vec![Acl::new(p, "world", "anyone")];
    let create = |zxid: i64, acl: Vec<Acl>| create_txn(zxid, "/e", acl);
    crate::tree::apply_restored(&mut t, &create(10, acl(perms::READ)));
    assert_eq!(
        t.unresolved_acls(),
        vec![("/e".to_string(), "2".to_string())]
    );
    crate::tree::apply_restored(&mut t, &create(12, acl(perms::READ | perms::WRITE)));
    assert_eq!(*t.node("/e").unwrap().acl, acl(perms::READ | perms::WRITE));
    assert!(t.unresolved_acls().is_empty());
}

/// A plain create of `path` (null data) under `acl` at `zxid`, as a log replays it.
fn create_txn(zxid: i64, path: &str, acl: Vec<Acl>) -> Txn {
    Txn {
        session_id: 7,
        cxid: 1,
        zxid,
        time_ms: 0,
        op: TxnOp::Create(CreateTxn {
            path: path.into(),
            data: None,
            acl,
            ephemeral_owner: 0,
            parent_cversion: 1,
            kind: CreateKind::Create,
        }),
    }
}
