//! ZooKeeper snapshot files against the real reference server (Debian ZooKeeper
//! 3.8.0, standalone): a snapshot the reference wrote is read with
//! `corral::tree::zksnap` and must hold exactly what a client read from that server
//! (data, Stat, ACL, children of every node, the session, and the reference's own
//! CRC32 digest); and a file corral wrote must start the reference, which must then
//! serve every node with the same data, Stat and ACL and report no digest mismatch.
//! Both trees hold null data (buffer −1), which must stay null, not become empty.
//!
//! Skips with a loud SKIPPED line without java and the jar, fails under CI.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{
    assert_same_nodes, child_path, digest_id, now_ms, ok_reply, require_reference, walk_nodes,
    RawClient, Seen, Server,
};
use corral::proto::{perms, Acl, CreateKind, CreateRequest, Id, Request, Response};
use corral::tree::zksnap::{
    read_zk_snapshot_file, write_zk_snapshot_file, zk_snapshot_file_name, zk_snapshot_name_zxid,
    ZxidDigest,
};
use corral::tree::{apply, prepare, Caller, Tree, TxnContext};

/// Session timeout asked for (the launcher's maxSessionTimeout).
const SESSION_TIMEOUT_MS: i32 = 30_000;
const SUPER_PASSWORD: &str = "zksnap";

/// zoo.cfg lines: the given data dirs (overriding the launcher's), TTL nodes on, and
/// a super digest so getACL is never redacted and every ACL lets the test read.
fn reference_cfg(data: &Path, datalog: &Path) -> String {
    format!(
        "dataDir={}\ndataLogDir={}\nzookeeper.extendedTypesEnabled=true\n\
         zookeeper.DigestAuthenticationProvider.superDigest={}\n",
        data.display(),
        datalog.display(),
        digest_id("super", SUPER_PASSWORD)
    )
}

fn super_client(srv: &Server) -> RawClient {
    let mut c = RawClient::connect(&srv.addr(), SESSION_TIMEOUT_MS);
    assert_eq!(c.add_digest_auth("super", SUPER_PASSWORD), 0);
    c
}

fn create(
    c: &mut RawClient,
    kind: CreateKind,
    path: &str,
    data: &[u8],
    flags: i32,
    acl: Vec<Acl>,
    ttl: i64,
) -> String {
    match ok_reply(
        c,
        Request::Create(CreateRequest {
            kind,
            path: path.into(),
            data: Some(data.to_vec()),
            acl,
            flags,
            ttl,
        }),
    ) {
        Response::Create { path } | Response::Create2 { path, .. } => path,
        r => panic!("create {path}: {r:?}"),
    }
}

/// Every node of a corral tree, as a client of it would see it.
fn walk_tree(t: &Tree) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec!["/".to_string()];
    while let Some(p) = todo.pop() {
        let v = t.get(&p).unwrap_or_else(|| panic!("{p} missing"));
        let mut children: Vec<String> = v.children().map(str::to_string).collect();
        children.sort();
        todo.extend(children.iter().map(|k| child_path(&p, k)));
        out.insert(
            p,
            Seen {
                data: v.data().map(<[u8]>::to_vec),
                stat: v.stat(),
                acl: v.acl().to_vec(),
                children,
            },
        );
    }
    out
}

fn crc32(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The reference's tree digest (PEER-PROTOCOL §6.5), computed here independently
/// from what a client sees: CRC32 of path ("" for the root), data and the stat block
/// with the internal cversion and owner, summed; `/zookeeper/...` excluded.
fn reference_digest(t: &Tree) -> u64 {
    let mut sum = 0u64;
    for (p, s) in walk_tree(t) {
        if p.starts_with("/zookeeper/") {
            continue;
        }
        let v = t.get(&p).unwrap();
        let path = if p == "/" { "" } else { p.as_str() };
        let internal_cversion = (s.stat.cversion + s.stat.num_children) / 2;
        let mut b = path.as_bytes().to_vec();
        // Null data adds no bytes, like empty data.
        b.extend_from_slice(s.data.as_deref().unwrap_or_default());
        for x in [
            s.stat.czxid,
            s.stat.mzxid,
            s.stat.pzxid,
            s.stat.ctime,
            s.stat.mtime,
        ] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        for x in [s.stat.version, internal_cversion, s.stat.aversion] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        b.extend_from_slice(&v.ephemeral_owner().to_be_bytes());
        sum = sum.wrapping_add(crc32(0, &b) as u64);
    }
    sum
}

/// The newest `snapshot.<zxid>` in a data dir's version-2.
fn newest_snapshot(data: &Path) -> (PathBuf, i64) {
    let dir = data.join("version-2");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            let zxid = zk_snapshot_name_zxid(&name).ok()?;
            Some((e.path(), zxid))
        })
        .max_by_key(|(_, z)| *z)
        .expect("a snapshot file")
}

/// A create (open ACL, persistent) with the null buffer as its data.
fn null_create(path: &str) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.into(),
        data: None,
        acl: Acl::open(),
        flags: 0,
        ttl: -1,
    })
}

/// setData with the null buffer.
fn null_set(path: &str) -> Request {
    Request::SetData {
        path: path.into(),
        data: None,
        version: -1,
    }
}

/// Nodes of every kind through a client of the reference.
fn populate(c: &mut RawClient) {
    let open = Acl::open();
    let ro = vec![Acl::new(perms::READ, "world", "anyone")];
    let kinds = CreateKind::Create2;
    create(c, kinds, "/plain", b"hello", 0, open.clone(), -1);
    create(c, kinds, "/plain/child", b"", 0, open.clone(), -1);
    let mut deep = String::new();
    for i in 0..12 {
        deep.push_str(&format!("/d{i}"));
        create(
            c,
            kinds,
            &deep,
            format!("{i}").as_bytes(),
            0,
            open.clone(),
            -1,
        );
    }
    create(
        c,
        kinds,
        "/big",
        &vec![0x5a; 1_000_000],
        0,
        open.clone(),
        -1,
    );
    create(
        c,
        kinds,
        "/ünïcødé",
        "日本語".as_bytes(),
        0,
        open.clone(),
        -1,
    );
    create(c, kinds, "/ünïcødé/子", b"", 0, open.clone(), -1);
    ok_reply(c, null_create("/null"));
    create(c, kinds, "/null/set", b"bytes first", 0, open.clone(), -1);
    ok_reply(c, null_set("/null/set"));
    ok_reply(c, Request::Multi(vec![null_create("/null/multi")]));
    for name in ["/n!", "/n-", "/n.x", "/n0", "/n", "/n/x", "/n/x/y", "/n!/z"] {
        create(c, kinds, name, name.as_bytes(), 0, open.clone(), -1);
    }
    let s0 = create(c, kinds, "/seq-", b"", 2, open.clone(), -1);
    create(c, kinds, "/seq-", b"", 2, open.clone(), -1);
    create(c, kinds, "/ro", b"read only", 0, ro.clone(), -1);
    create(
        c,
        kinds,
        "/dg",
        b"digest",
        0,
        vec![Acl::new(perms::ALL, "digest", &digest_id("u", "p"))],
        -1,
    );
    create(
        c,
        kinds,
        "/ip",
        b"",
        0,
        vec![
            Acl::new(perms::ALL, "ip", "127.0.0.1"),
            Acl::new(perms::READ, "world", "anyone"),
        ],
        -1,
    );
    create(c, kinds, "/eph", b"mine", 1, open.clone(), -1);
    create(c, kinds, "/plain/eph-", b"", 3, ro.clone(), -1);
    create(c, CreateKind::Container, "/cont", b"c", 4, open.clone(), -1);
    create(c, kinds, "/cont/x", b"", 0, open.clone(), -1);
    create(c, CreateKind::Ttl, "/ttl", b"t", 5, open.clone(), 3_600_000);
    ok_reply(
        c,
        Request::SetData {
            path: "/plain".into(),
            data: Some(b"changed".to_vec()),
            version: -1,
        },
    );
    ok_reply(
        c,
        Request::SetAcl {
            path: "/ro".into(),
            acl: ro,
            version: -1,
        },
    );
    ok_reply(
        c,
        Request::Delete {
            path: s0,
            version: -1,
        },
    );
    ok_reply(
        c,
        Request::Delete {
            path: "/plain/child".into(),
            version: -1,
        },
    );
}

#[test]
fn a_reference_snapshot_reads_back_as_the_reference_served_it() {
    if !require_reference() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("corral-zksnap-")
        .tempdir()
        .unwrap();
    let (data, datalog) = (dir.path().join("data"), dir.path().join("datalog"));
    let cfg = reference_cfg(&data, &datalog);
    let (seen, session) = {
        let srv = Server::reference(&cfg);
        let mut c = super_client(&srv);
        populate(&mut c);
        // The session stays open (no closeSession): its ephemerals are in the
        // snapshot. Dropping the server kills it; every write was fsynced.
        (walk_nodes(&mut c), (c.session_id, c.timeout_ms))
    };
    // A reference server snapshots right after loading, before it serves.
    drop(Server::reference(&cfg));
    let (path, zxid) = newest_snapshot(&data);
    eprintln!("reading {}", path.display());
    let mut f = std::fs::File::open(&path).unwrap();
    let file =
        read_zk_snapshot_file(&mut f, zxid).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(file.tree.last_zxid(), zxid);
    assert_same_nodes(&seen, &walk_tree(&file.tree), "reference snapshot");
    assert!(
        file.sessions.contains(&session),
        "{session:?} not in {:?}",
        file.sessions
    );
    // The system nodes are the ones corral's fresh tree has.
    let fresh = Tree::new();
    for p in ["/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        let (a, b) = (fresh.get(p).unwrap(), file.tree.get(p).unwrap());
        assert_eq!(
            (a.stat(), a.acl(), a.data()),
            (b.stat(), b.acl(), b.data()),
            "{p}"
        );
    }
    // The reference's own digest of this tree matches the decoded nodes bit for bit.
    let d = file.digest.expect("3.8 writes the digest block by default");
    assert_eq!(d.zxid, zxid, "digest block of the last txn");
    assert_eq!(d.digest_version, 2);
    assert_eq!(
        d.digest,
        reference_digest(&file.tree),
        "reference digest of the decoded tree"
    );
    for p in ["/null", "/null/set", "/null/multi"] {
        assert_eq!(seen[p].data, None, "the reference serves {p} as null");
    }
    let ephemerals = file.tree.ephemerals_of(session.0);
    assert_eq!(ephemerals.len(), 2, "{ephemerals:?}");
}

/// A corral tree with every kind of node, stamped with the current time.
fn corral_tree() -> (Tree, Vec<(i64, i32)>) {
    let mut tree = Tree::new();
    let ids = vec![Id::new("digest", &digest_id("u", "p"))];
    let t0 = now_ms();
    let mut zxid = 0x1_0000_0000;
    let mut write = |tree: &mut Tree, session_id: i64, req: Request| {
        zxid += 1;
        let ctx = TxnContext {
            zxid,
            time_ms: t0 + (zxid & 0xff),
            cxid: 0,
            extended_types_enabled: true,
            max_data_bytes: 0xfffff,
            enforce_quota: false,
            digest_enabled: true,
            ephemerals_allowed: true,
        };
        let caller = Caller {
            session_id,
            ids: &ids,
            is_super: true,
        };
        let txn = prepare(tree, &ctx, &caller, &req);
        apply(tree, &txn)
            .result
            .unwrap_or_else(|e| panic!("{req:?}: {e:?}"));
    };
    let mk = |kind, path: &str, data: &[u8], flags, acl, ttl| {
        Request::Create(CreateRequest {
            kind,
            path: path.into(),
            data: Some(data.to_vec()),
            acl,
            flags,
            ttl,
        })
    };
    let open = Acl::open();
    let sess = 0x0100_0000_0000_0001_i64;
    let c2 = CreateKind::Create2;
    write(&mut tree, sess, mk(c2, "/a", b"alpha", 0, open.clone(), -1));
    write(
        &mut tree,
        sess,
        mk(
            c2,
            "/a/b",
            b"",
            0,
            vec![Acl::new(perms::READ, "world", "anyone")],
            -1,
        ),
    );
    write(
        &mut tree,
        sess,
        mk(
            c2,
            "/a/b/c",
            b"deep",
            0,
            vec![Acl::new(perms::ALL, "auth", "")],
            -1,
        ),
    );
    write(
        &mut tree,
        sess,
        mk(c2, "/big", &vec![7; 1_000_000], 0, open.clone(), -1),
    );
    write(
        &mut tree,
        sess,
        mk(c2, "/ünï", "日本".as_bytes(), 0, open.clone(), -1),
    );
    write(
        &mut tree,
        sess,
        mk(c2, "/ünï/子-", b"", 2, open.clone(), -1),
    );
    write(
        &mut tree,
        sess,
        mk(
            c2,
            "/a!",
            b"!",
            0,
            vec![Acl::new(perms::ALL, "ip", "127.0.0.0/8")],
            -1,
        ),
    );
    write(&mut tree, sess, mk(c2, "/eph", b"e", 1, open.clone(), -1));
    write(
        &mut tree,
        sess + 1,
        mk(c2, "/a/eph-", b"", 3, open.clone(), -1),
    );
    write(
        &mut tree,
        sess,
        mk(CreateKind::Container, "/cont", b"", 4, open.clone(), -1),
    );
    write(
        &mut tree,
        sess,
        mk(c2, "/cont/kid", b"", 0, open.clone(), -1),
    );
    write(
        &mut tree,
        sess,
        mk(CreateKind::Ttl, "/ttl", b"t", 5, open.clone(), 3_600_000),
    );
    write(
        &mut tree,
        sess,
        Request::SetData {
            path: "/a".into(),
            data: Some(b"beta".to_vec()),
            version: 0,
        },
    );
    write(
        &mut tree,
        sess,
        Request::Delete {
            path: "/a/b/c".into(),
            version: -1,
        },
    );
    write(&mut tree, sess, null_create("/null"));
    write(
        &mut tree,
        sess,
        mk(c2, "/null/set", b"x", 0, open.clone(), -1),
    );
    write(&mut tree, sess, null_set("/null/set"));
    write(
        &mut tree,
        sess,
        mk(c2, "/null/empty", b"", 0, open.clone(), -1),
    );
    for p in ["/null", "/null/set"] {
        assert_eq!(tree.get(p).unwrap().data(), None, "{p}");
    }
    (
        tree,
        vec![(sess, SESSION_TIMEOUT_MS), (sess + 1, SESSION_TIMEOUT_MS)],
    )
}

#[test]
fn the_reference_starts_on_a_snapshot_corral_wrote() {
    if !require_reference() {
        return;
    }
    let (tree, sessions) = corral_tree();
    let dir = tempfile::Builder::new()
        .prefix("corral-zksnap-")
        .tempdir()
        .unwrap();
    let (data, datalog) = (dir.path().join("data"), dir.path().join("datalog"));
    std::fs::create_dir_all(data.join("version-2")).unwrap();
    let file = data
        .join("version-2")
        .join(zk_snapshot_file_name(tree.last_zxid()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let digest = ZxidDigest::new(tree.last_zxid(), reference_digest(&tree));
    write_zk_snapshot_file(&mut out, &tree, sessions, Some(digest)).unwrap();
    drop(out);
    let srv = Server::reference(&reference_cfg(&data, &datalog));
    assert!(
        srv.log()
            .contains(&format!("Reading snapshot {}", file.display())),
        "the reference did not load our file"
    );
    let mut c = super_client(&srv);
    assert_same_nodes(
        &walk_tree(&tree),
        &walk_nodes(&mut c),
        "reference started on corral's file",
    );
    let mntr = common::four_letter_word(&srv.addr(), "mntr").unwrap();
    let mismatches = mntr
        .lines()
        .find_map(|l| l.strip_prefix("zk_digest_mismatches_count\t"))
        .unwrap_or_else(|| panic!("no digest mismatch count in mntr:\n{mntr}"));
    assert_eq!(
        mismatches.trim(),
        "0",
        "the reference's digest of our tree differs"
    );
}
