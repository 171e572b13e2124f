//! Tree tests: exact Stats and error codes per op and mode, facts checked against
//! the reference 3.8 server (noted where they surprise), multi shapes, ACLs,
//! snapshots, txn codec, digest determinism.

use super::*;
use crate::proto::{
    perms, CreateKind, CreateRequest, ErrorCode, EventType, Id, OpResult, Request, Response,
};

const T0: i64 = 1_700_000_000_000;
const SID: i64 = 0x100;

/// A sequencer in miniature: prepare then apply, one zxid per request.
struct H {
    tree: Tree,
    zxid: i64,
    time: i64,
    extended: bool,
    /// `TxnContext::ephemerals_allowed` (false: another member's local session).
    ephemerals: bool,
    ids: Vec<Id>,
    is_super: bool,
    session: i64,
    txns: Vec<Txn>,
}

impl H {
    fn new() -> H {
        H {
            tree: Tree::new(),
            zxid: 0,
            time: T0,
            extended: true,
            ephemerals: true,
            ids: vec![Id::new("ip", "127.0.0.1")],
            is_super: false,
            session: SID,
            txns: Vec::new(),
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            session_id: self.session,
            ids: &self.ids,
            is_super: self.is_super,
        }
    }

    fn write(&mut self, req: Request) -> Applied {
        self.zxid += 1;
        self.time += 1;
        let ctx = TxnContext {
            zxid: self.zxid,
            time_ms: self.time,
            cxid: self.zxid as i32 + 100,
            extended_types_enabled: self.extended,
            max_data_bytes: 0xfffff,
            enforce_quota: false,
            digest_enabled: true,
            ephemerals_allowed: self.ephemerals,
        };
        let txn = prepare(&self.tree, &ctx, &self.caller(), &req);
        assert_eq!(txn.cxid, ctx.cxid);
        let a = apply(&mut self.tree, &txn);
        // Every txn survives the codec unchanged, with the digest after it.
        let mut b = Vec::new();
        txn.encode(&mut b, Some(self.tree.digest()));
        let want_digest = txn.carries_digest().then(|| self.tree.digest());
        assert_eq!(Txn::decode(&b).unwrap(), (txn.clone(), want_digest));
        self.txns.push(txn);
        assert_eq!(self.tree.last_zxid(), self.zxid);
        a
    }

    fn apply_txn(&mut self, txn: Txn) -> Applied {
        let a = apply(&mut self.tree, &txn);
        self.txns.push(txn);
        a
    }

    fn create_full(
        &mut self,
        kind: CreateKind,
        path: &str,
        data: &[u8],
        flags: i32,
        ttl: i64,
    ) -> Result<Response, ErrorCode> {
        self.write(Request::Create(CreateRequest {
            kind,
            path: path.into(),
            data: Some(data.to_vec()),
            acl: Acl::open(),
            flags,
            ttl,
        }))
        .result
    }

    fn create(&mut self, path: &str, flags: i32) -> Result<Response, ErrorCode> {
        self.create_full(CreateKind::Create, path, b"", flags, -1)
    }

    fn create2(&mut self, path: &str, data: &[u8], flags: i32) -> Result<Stat, ErrorCode> {
        match self.create_full(CreateKind::Create2, path, data, flags, -1)? {
            Response::Create2 { stat, .. } => Ok(stat),
            r => panic!("unexpected {r:?}"),
        }
    }

    /// A plain persistent create whose data may be null (`None`).
    fn create_data(&mut self, path: &str, data: Option<&[u8]>) -> Result<Response, ErrorCode> {
        self.write(Request::Create(CreateRequest {
            kind: CreateKind::Create2,
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }))
        .result
    }

    /// setData whose data may be null (`None`).
    fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
    ) -> Result<Response, ErrorCode> {
        self.write(Request::SetData {
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            version,
        })
        .result
    }

    /// getData's data; panics unless the read succeeds.
    fn get_data(&self, path: &str) -> Option<Vec<u8>> {
        match self.read(Request::GetData {
            path: path.into(),
            watch: false,
        }) {
            Ok(Response::Data { data, stat }) => {
                assert_eq!(stat, self.stat(path));
                data
            }
            r => panic!("getData {path}: {r:?}"),
        }
    }

    fn create_acl(&mut self, path: &str, acl: Vec<Acl>) -> Result<Response, ErrorCode> {
        self.write(Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl,
            flags: 0,
            ttl: -1,
        }))
        .result
    }

    fn delete(&mut self, path: &str, version: i32) -> Result<Response, ErrorCode> {
        self.write(Request::Delete {
            path: path.into(),
            version,
        })
        .result
    }

    fn set(&mut self, path: &str, data: &[u8], version: i32) -> Result<Response, ErrorCode> {
        self.write(Request::SetData {
            path: path.into(),
            data: Some(data.to_vec()),
            version,
        })
        .result
    }

    fn read(&self, req: Request) -> Result<Response, ErrorCode> {
        read(&self.tree, &self.caller(), &req)
    }

    fn stat(&self, path: &str) -> Stat {
        match self.read(Request::Exists {
            path: path.into(),
            watch: false,
        }) {
            Ok(Response::Stat(s)) => s,
            r => panic!("exists {path}: {r:?}"),
        }
    }

    fn children(&self, path: &str) -> Vec<String> {
        match self.read(Request::GetChildren {
            path: path.into(),
            watch: false,
        }) {
            Ok(Response::Children(c)) => c,
            r => panic!("getChildren {path}: {r:?}"),
        }
    }
}

fn stat0() -> Stat {
    Stat::default()
}

fn created(path: &str) -> Result<Response, ErrorCode> {
    Ok(Response::Create { path: path.into() })
}

// ----------------------------------------------------------------------- fresh tree

#[test]
fn fresh_tree_matches_reference() {
    // Observed on the reference 3.8.0: root cversion −1 (one child, no creates),
    // /zookeeper cversion −2, config aversion −1 with world:anyone READ; mntr
    // zk_znode_count 5 and zk_approximate_data_size 44.
    let h = H::new();
    assert_eq!(
        h.stat("/"),
        Stat {
            cversion: -1,
            num_children: 1,
            ..stat0()
        }
    );
    assert_eq!(
        h.stat("/zookeeper"),
        Stat {
            cversion: -2,
            num_children: 2,
            ..stat0()
        }
    );
    assert_eq!(h.stat("/zookeeper/quota"), stat0());
    assert_eq!(
        h.stat("/zookeeper/config"),
        Stat {
            aversion: -1,
            ..stat0()
        }
    );
    assert_eq!(h.children("/"), vec!["zookeeper"]);
    assert_eq!(h.children("/zookeeper"), vec!["config", "quota"]);
    assert_eq!(
        h.read(Request::GetAcl {
            path: "/zookeeper/config".into()
        }),
        Ok(Response::Acl {
            acl: vec![Acl::new(perms::READ, "world", "anyone")],
            stat: Stat {
                aversion: -1,
                ..stat0()
            }
        })
    );
    assert_eq!(h.tree.node_count(), 5);
    assert_eq!(h.tree.distinct_node_count(), 4);
    assert_eq!(h.tree.approximate_data_size(), 44);
    assert_eq!(h.tree.last_zxid(), 0);
    assert_eq!(h.tree.ephemeral_count(), 0);
    // "" is the root's other name in the reference.
    assert_eq!(h.stat(""), h.stat("/"));
    assert_eq!(
        h.read(Request::GetAllChildrenNumber { path: "/".into() }),
        Ok(Response::AllChildrenNumber(3))
    );
}

/// A leader taking another member's local session (`ephemerals_allowed` false):
/// its writes pass, its ephemeral creates fail with SessionExpired, alone or in a
/// multi (where the multi fails there), as the reference's checkGlobalSession; TTL
/// and container nodes are not ephemeral.
#[test]
fn a_local_session_of_another_member_creates_no_ephemerals() {
    let mut h = H::new();
    h.ephemerals = false;
    assert_eq!(h.create("/p", 0), created("/p"));
    assert_eq!(h.create("/e", 1), Err(ErrorCode::SessionExpired));
    assert_eq!(h.create("/es", 3), Err(ErrorCode::SessionExpired));
    assert_eq!(h.create("/c", 4), created("/c"));
    assert!(h.set("/p", b"x", -1).is_ok());
    let create = |path: &str, flags| {
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl: Acl::open(),
            flags,
            ttl: -1,
        })
    };
    let a = h.write(Request::Multi(vec![create("/m1", 0), create("/m2", 1)]));
    assert!(
        matches!(a.result, Ok(Response::Multi(ref v)) if v[1] == OpResult::Err(ErrorCode::SessionExpired)),
        "{:?}",
        a.result
    );
    assert!(
        h.tree.node("/m1").is_none(),
        "a failed multi leaves nothing"
    );
    h.ephemerals = true;
    assert_eq!(h.create("/e", 1), created("/e"));
}

#[test]
fn tree_is_send_sync_and_clone_is_a_version() {
    fn is<T: Send + Sync + Clone>() {}
    is::<Tree>();
    let mut h = H::new();
    let v1 = h.tree.clone();
    h.create("/a", 0).unwrap();
    assert!(v1.get("/a").is_none());
    assert!(h.tree.get("/a").is_some());
}

// ----------------------------------------------------------------------- create

#[test]
fn create_persistent_exact_stats() {
    let mut h = H::new();
    let s = h.create2("/a", b"hello", 0).unwrap();
    assert_eq!(
        s,
        Stat {
            czxid: 1,
            mzxid: 1,
            ctime: T0 + 1,
            mtime: T0 + 1,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 5,
            num_children: 0,
            pzxid: 1,
        }
    );
    assert_eq!(h.stat("/a"), s);
    // Root: one create counted → cversion 2*1 − 2 children = 0 (seen on the reference).
    assert_eq!(
        h.stat("/"),
        Stat {
            cversion: 0,
            num_children: 2,
            pzxid: 1,
            ..stat0()
        }
    );
    assert_eq!(h.create("/a/b", 0), created("/a/b"));
    let a = h.stat("/a");
    assert_eq!((a.cversion, a.num_children, a.pzxid, a.mzxid), (1, 1, 2, 1));
    assert_eq!(h.tree.approximate_data_size(), 44 + 2 + 5 + 4);
    assert_eq!(h.tree.get("/a").unwrap().data(), Some(&b"hello"[..]));
}

#[test]
fn create_events_and_reply_shapes() {
    let mut h = H::new();
    let a = h.write(Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: "/x".into(),
        data: Some(vec![]),
        acl: Acl::open(),
        flags: 0,
        ttl: -1,
    }));
    assert_eq!(a.result, created("/x"));
    assert_eq!(
        a.events,
        vec![
            (EventType::NodeCreated, "/x".to_string()),
            (EventType::NodeChildrenChanged, "/".to_string())
        ]
    );
    let a = h.write(Request::Create(CreateRequest {
        kind: CreateKind::Create2,
        path: "/x/y".into(),
        data: Some(vec![]),
        acl: Acl::open(),
        flags: 0,
        ttl: -1,
    }));
    assert!(matches!(a.result, Ok(Response::Create2 { ref path, .. }) if path == "/x/y"));
    assert_eq!(
        a.events[1],
        (EventType::NodeChildrenChanged, "/x".to_string())
    );
}

#[test]
fn sequential_suffix_follows_creates_not_deletes() {
    // Observed on the reference 3.8.0: create /p, /p/a, delete /p/a → /p cversion 2;
    // a sequential create gets suffix 0000000001 and /p's cversion becomes 3.
    let mut h = H::new();
    h.create("/p", 0).unwrap();
    h.create("/p/a", 0).unwrap();
    h.delete("/p/a", -1).unwrap();
    let p = h.stat("/p");
    assert_eq!((p.cversion, p.num_children, p.pzxid), (2, 0, 3));
    assert_eq!(h.create("/p/s", 2), created("/p/s0000000001"));
    let p = h.stat("/p");
    assert_eq!((p.cversion, p.num_children, p.pzxid), (3, 1, 4));
    // A trailing slash is fine for sequential creates (observed: /p/0000000002).
    assert_eq!(h.create("/p/", 2), created("/p/0000000002"));
    assert_eq!(h.create("/p/", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("/p/e-", 3), created("/p/e-0000000003"));
    // Failed creates do not advance the counter.
    assert_eq!(h.create("/p/s0000000001", 0), Err(ErrorCode::NodeExists));
    assert_eq!(h.create("/p/q", 2), created("/p/q0000000004"));
}

#[test]
fn sequential_name_collision_is_node_exists() {
    let mut h = H::new();
    h.create("/p", 0).unwrap();
    h.create("/p/s0000000001", 0).unwrap();
    assert_eq!(h.create("/p/s", 2), Err(ErrorCode::NodeExists));
    // The failure did not advance the counter; the next success does.
    assert_eq!(h.create("/p/t", 2), created("/p/t0000000001"));
}

#[test]
fn ephemeral_nodes() {
    let mut h = H::new();
    let s = h.create2("/e", b"", 1).unwrap();
    assert_eq!(s.ephemeral_owner, SID);
    assert_eq!(h.create("/e/c", 0), Err(ErrorCode::NoChildrenForEphemerals));
    assert_eq!(h.create("/e/c", 2), Err(ErrorCode::NoChildrenForEphemerals));
    h.create("/f", 3).unwrap();
    h.create("/p", 0).unwrap();
    h.create("/p/e", 1).unwrap();
    assert_eq!(
        h.tree.ephemerals_of(SID),
        vec!["/e", "/f0000000001", "/p/e"]
    );
    assert_eq!(h.tree.ephemeral_count(), 3);
    assert_eq!(
        h.read(Request::GetEphemerals {
            prefix: "/p".into()
        }),
        Ok(Response::Ephemerals(vec!["/p/e".into()]))
    );
    assert_eq!(
        h.read(Request::GetEphemerals {
            prefix: " / ".into()
        }),
        Ok(Response::Ephemerals(h.tree.ephemerals_of(SID)))
    );
    // Another session's view.
    h.session = 0x200;
    assert_eq!(
        h.read(Request::GetEphemerals { prefix: "".into() }),
        Ok(Response::Ephemerals(vec![]))
    );
    h.create("/g", 1).unwrap();
    h.session = SID;
    assert_eq!(
        h.tree.ephemerals(),
        vec![
            (SID, vec!["/e".into(), "/f0000000001".into(), "/p/e".into()]),
            (0x200, vec!["/g".into()])
        ]
    );

    h.zxid += 1;
    let txn = close_session_txn(&h.tree, h.zxid, T0 + 100, SID, 0);
    assert_eq!(
        txn.op,
        TxnOp::CloseSession {
            paths: vec!["/e".into(), "/f0000000001".into(), "/p/e".into()]
        }
    );
    let a = h.apply_txn(txn);
    assert_eq!(a.result, Ok(Response::Empty));
    assert_eq!(
        a.events,
        vec![
            (EventType::NodeDeleted, "/e".to_string()),
            (EventType::NodeChildrenChanged, "/".to_string()),
            (EventType::NodeDeleted, "/f0000000001".to_string()),
            (EventType::NodeChildrenChanged, "/".to_string()),
            (EventType::NodeDeleted, "/p/e".to_string()),
            (EventType::NodeChildrenChanged, "/p".to_string()),
        ]
    );
    assert_eq!(h.tree.ephemerals_of(SID), Vec::<String>::new());
    assert_eq!(h.tree.ephemerals_of(0x200), vec!["/g"]);
    assert_eq!(h.tree.ephemeral_count(), 1);
    assert_eq!(h.stat("/p").pzxid, h.zxid);
}

#[test]
fn close_session_via_prepare_and_create_session() {
    let mut h = H::new();
    h.create("/e", 1).unwrap();
    let a = h.write(Request::CloseSession);
    assert_eq!(a.result, Ok(Response::Empty));
    assert!(h.tree.get("/e").is_none());
    let t = create_session_txn(h.zxid + 1, T0, 0x300, 30000);
    let d = h.tree.digest();
    h.zxid += 1;
    assert_eq!(h.apply_txn(t).result, Ok(Response::Empty));
    assert_eq!(h.tree.digest(), d);
    assert_eq!(h.tree.last_zxid(), h.zxid);
}

#[test]
fn container_nodes() {
    let mut h = H::new();
    let s = match h
        .create_full(CreateKind::Container, "/c", b"d", 4, -1)
        .unwrap()
    {
        Response::Create2 { path, stat } => {
            assert_eq!(path, "/c");
            stat
        }
        r => panic!("{r:?}"),
    };
    assert_eq!(s.ephemeral_owner, 0, "clients see 0 for containers");
    assert_eq!(
        h.tree.get("/c").unwrap().ephemeral_owner(),
        CONTAINER_EPHEMERAL_OWNER
    );
    // Never had a child: not a candidate.
    assert!(h.tree.cleanup_candidates(i64::MAX).is_empty());
    h.create("/c/a", 0).unwrap();
    assert!(h.tree.cleanup_candidates(i64::MAX).is_empty());
    h.delete("/c/a", -1).unwrap();
    assert_eq!(h.tree.cleanup_candidates(0), vec!["/c"]);
    // Children of containers are allowed, ephemeral ones too.
    h.create("/c/e", 1).unwrap();
    assert!(h.tree.cleanup_candidates(0).is_empty());
    h.delete("/c/e", -1).unwrap();

    h.zxid += 1;
    let t = cleanup_txn(&h.tree, h.zxid, T0, "/c");
    assert_eq!(t.op, TxnOp::DeleteContainer { path: "/c".into() });
    assert_eq!((t.session_id, t.cxid), (0, 0));
    let a = h.apply_txn(t);
    assert_eq!(a.result, Ok(Response::Empty));
    assert_eq!(a.events[0], (EventType::NodeDeleted, "/c".to_string()));
    assert!(h.tree.get("/c").is_none());
    assert!(h.tree.cleanup_candidates(0).is_empty());
    // Gone: the cleanup is an error txn that still takes its zxid.
    let t = cleanup_txn(&h.tree, h.zxid + 1, T0, "/c");
    assert_eq!(t.op, TxnOp::Error(ErrorCode::NoNode));
}

#[test]
fn delete_container_rules() {
    let mut h = H::new();
    h.create("/p", 0).unwrap();
    h.create("/p/c", 0).unwrap();
    h.create("/e", 1).unwrap();
    // Observed on 3.8.0: a client's deleteContainer is always BadArguments (the
    // reference reads its body as raw path bytes).
    for p in ["/p/c", "/nope", "/e"] {
        assert_eq!(
            h.write(Request::DeleteContainer { path: p.into() }).result,
            Err(ErrorCode::BadArguments)
        );
    }
    // The server's own cleanup follows PrepRequestProcessor's deleteContainer rules.
    let ct = |h: &H, p: &str| cleanup_txn(&h.tree, h.zxid + 1, T0, p).op;
    assert_eq!(ct(&h, "/p"), TxnOp::Error(ErrorCode::NotEmpty));
    assert_eq!(ct(&h, "/e"), TxnOp::Error(ErrorCode::BadVersion));
    assert_eq!(ct(&h, "/nope"), TxnOp::Error(ErrorCode::NoNode));
    assert_eq!(ct(&h, "/zookeeper"), TxnOp::Error(ErrorCode::BadArguments));
    assert_eq!(ct(&h, "x"), TxnOp::Error(ErrorCode::BadArguments));
    // A persistent node qualifies (the reference only refuses ephemerals).
    assert_eq!(
        ct(&h, "/p/c"),
        TxnOp::DeleteContainer {
            path: "/p/c".into()
        }
    );
}

#[test]
fn ttl_nodes() {
    let mut h = H::new();
    let ttl = |h: &mut H, p: &str, flags: i32, ttl: i64| {
        h.create_full(CreateKind::Ttl, p, b"", flags, ttl)
    };
    h.extended = false;
    assert_eq!(ttl(&mut h, "/t", 5, 100), Err(ErrorCode::Unimplemented));
    h.extended = true;
    assert_eq!(ttl(&mut h, "/t", 5, 0), Err(ErrorCode::BadArguments));
    assert_eq!(ttl(&mut h, "/t", 5, -5), Err(ErrorCode::BadArguments));
    assert_eq!(
        ttl(&mut h, "/t", 5, TTL_MS_MAX + 1),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(ttl(&mut h, "/t", 0, 100), Err(ErrorCode::BadArguments));
    assert_eq!(ttl(&mut h, "/t", 0, -1), Err(ErrorCode::BadArguments));
    // TTL mode through plain create (ttl −1): BadArguments.
    assert_eq!(h.create("/t", 5), Err(ErrorCode::BadArguments));
    assert!(ttl(&mut h, "/tmax", 5, TTL_MS_MAX).is_ok());
    let r = ttl(&mut h, "/t", 5, 1000).unwrap();
    let Response::Create2 { stat, .. } = r else {
        panic!()
    };
    assert_eq!(stat.ephemeral_owner, 0, "clients see 0 for TTL nodes");
    assert_eq!(h.tree.get("/t").unwrap().ephemeral_owner(), ttl_owner(1000));
    assert_eq!(ttl_owner(1000), 0xff00_0000_0000_03e8u64 as i64);
    let mtime = stat.mtime;
    assert!(h.tree.cleanup_candidates(mtime + 1000).is_empty());
    assert_eq!(h.tree.cleanup_candidates(mtime + 1001), vec!["/t"]);
    // Children of TTL nodes are allowed and keep it alive; setData refreshes mtime.
    h.create("/t/c", 0).unwrap();
    assert!(!h
        .tree
        .cleanup_candidates(mtime + 5000)
        .contains(&"/t".to_string()));
    h.delete("/t/c", -1).unwrap();
    h.set("/t", b"x", -1).unwrap();
    let m2 = h.stat("/t").mtime;
    assert!(!h
        .tree
        .cleanup_candidates(m2 + 1000)
        .contains(&"/t".to_string()));
    assert!(h
        .tree
        .cleanup_candidates(m2 + 1001)
        .contains(&"/t".to_string()));
}

#[test]
fn ttl_sequential_name() {
    let mut h = H::new();
    let r = h.create_full(CreateKind::Ttl, "/s", b"", 6, 10).unwrap();
    assert!(matches!(r, Response::Create2 { ref path, .. } if path == "/s0000000000"));
}

#[test]
fn create_errors_in_reference_order() {
    let mut h = H::new();
    h.create("/p", 0).unwrap();
    // Observed on the reference 3.8.0.
    assert_eq!(h.create("/x/y/", 0), Err(ErrorCode::NoNode));
    assert_eq!(h.create("/p/.", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("/p//a", 0), Err(ErrorCode::NoNode));
    assert_eq!(h.create("/nope/.", 0), Err(ErrorCode::NoNode));
    assert_eq!(h.create("p", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("/p\0x", 0), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("/", 0), Err(ErrorCode::NodeExists));
    assert_eq!(h.create("/p", 0), Err(ErrorCode::NodeExists));
    assert_eq!(h.create("/p/a", 7), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("/p/a", -1), Err(ErrorCode::BadArguments));
    assert_eq!(h.create("/zookeeper/x", 0), created("/zookeeper/x"));
    // InvalidACL comes before NoNode.
    assert_eq!(h.create_acl("/nope/a", vec![]), Err(ErrorCode::InvalidAcl));
    // Every failure consumed its zxid.
    assert_eq!(h.tree.last_zxid(), h.zxid);
    assert_eq!(h.stat("/zookeeper/x").czxid, 13);
}

#[test]
fn data_limit() {
    let mut h = H::new();
    let big = vec![7u8; 0xfffff + 1];
    assert_eq!(
        h.create_full(CreateKind::Create, "/big", &big, 0, -1),
        Err(ErrorCode::MarshallingError)
    );
    let ok = vec![7u8; 0xfffff];
    assert!(h
        .create_full(CreateKind::Create, "/big", &ok, 0, -1)
        .is_ok());
    assert_eq!(h.set("/big", &big, -1), Err(ErrorCode::MarshallingError));
}

// ----------------------------------------------------------------------- delete / setData / setACL

#[test]
fn delete_rules() {
    let mut h = H::new();
    h.create("/a", 0).unwrap();
    h.create("/a/b", 0).unwrap();
    assert_eq!(h.delete("/a", -1), Err(ErrorCode::NotEmpty));
    assert_eq!(h.delete("/a/b", 5), Err(ErrorCode::BadVersion));
    assert_eq!(h.delete("/a/nope", -1), Err(ErrorCode::NoNode));
    assert_eq!(h.delete("/nope/x", -1), Err(ErrorCode::NoNode));
    for p in [
        "/",
        "/zookeeper",
        "/zookeeper/quota",
        "/zookeeper/config",
        "",
        "x",
        "/a\0",
    ] {
        assert_eq!(h.delete(p, -1), Err(ErrorCode::BadArguments), "{p:?}");
    }
    h.set("/a/b", b"x", -1).unwrap();
    assert_eq!(h.delete("/a/b", 0), Err(ErrorCode::BadVersion));
    let a = h.write(Request::Delete {
        path: "/a/b".into(),
        version: 1,
    });
    assert_eq!(a.result, Ok(Response::Empty));
    assert_eq!(
        a.events,
        vec![
            (EventType::NodeDeleted, "/a/b".to_string()),
            (EventType::NodeChildrenChanged, "/a".to_string())
        ]
    );
    let s = h.stat("/a");
    // One create, no children: cversion 2; pzxid is the delete's zxid.
    assert_eq!((s.cversion, s.num_children, s.pzxid), (2, 0, h.zxid));
    assert_eq!(h.delete("/a", 0), Ok(Response::Empty));
    assert_eq!(h.tree.approximate_data_size(), 44);
}

#[test]
fn set_data_stats_and_versions() {
    let mut h = H::new();
    h.create2("/a", b"x", 0).unwrap();
    let a = h.write(Request::SetData {
        path: "/a".into(),
        data: Some(b"hello".to_vec()),
        version: 0,
    });
    let s = match a.result {
        Ok(Response::Stat(s)) => s,
        r => panic!("{r:?}"),
    };
    assert_eq!(
        s,
        Stat {
            czxid: 1,
            mzxid: 2,
            ctime: T0 + 1,
            mtime: T0 + 2,
            version: 1,
            data_length: 5,
            pzxid: 1,
            ..stat0()
        }
    );
    assert_eq!(
        a.events,
        vec![(EventType::NodeDataChanged, "/a".to_string())]
    );
    assert_eq!(h.set("/a", b"", 0), Err(ErrorCode::BadVersion));
    assert!(h.set("/a", b"", -1).is_ok());
    assert_eq!(h.stat("/a").version, 2);
    assert_eq!(h.set("/nope", b"", -1), Err(ErrorCode::NoNode));
    assert_eq!(h.set("/a/", b"", -1), Err(ErrorCode::BadArguments));
    assert_eq!(h.set("a", b"", -1), Err(ErrorCode::BadArguments));
    assert_eq!(
        h.read(Request::GetData {
            path: "/a".into(),
            watch: false
        }),
        Ok(Response::Data {
            data: Some(vec![]),
            stat: h.stat("/a")
        })
    );
}

#[test]
fn set_acl_rules() {
    let mut h = H::new();
    h.create("/a", 0).unwrap();
    let sa = |h: &mut H, acl: Vec<Acl>, v: i32| {
        h.write(Request::SetAcl {
            path: "/a".into(),
            acl,
            version: v,
        })
    };
    let a = sa(&mut h, vec![Acl::new(perms::ALL, "ip", "127.0.0.1")], 0);
    let Ok(Response::Stat(s)) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!((s.aversion, s.version, s.mzxid), (1, 0, 1));
    assert!(a.events.is_empty());
    assert_eq!(
        sa(&mut h, Acl::open(), 0).result,
        Err(ErrorCode::BadVersion)
    );
    assert_eq!(sa(&mut h, vec![], -1).result, Err(ErrorCode::InvalidAcl));
    assert_eq!(
        sa(&mut h, vec![Acl::new(1, "digest", "bad")], -1).result,
        Err(ErrorCode::InvalidAcl)
    );
    // Now only ADMIN for another ip: setACL NoAuth.
    assert!(
        sa(&mut h, vec![Acl::new(perms::ADMIN, "ip", "10.0.0.0/8")], -1)
            .result
            .is_ok()
    );
    assert_eq!(sa(&mut h, Acl::open(), -1).result, Err(ErrorCode::NoAuth));
    h.ids = vec![Id::new("ip", "10.1.1.1")];
    assert!(sa(&mut h, Acl::open(), 2).result.is_ok());
    assert_eq!(
        h.write(Request::SetAcl {
            path: "/nope".into(),
            acl: Acl::open(),
            version: -1
        })
        .result,
        Err(ErrorCode::NoNode)
    );
}

// ----------------------------------------------------------------------- ACL checks

#[test]
fn acl_checks_where_the_reference_checks() {
    let mut h = H::new();
    let user = digest_id("user:pass");
    h.create_acl("/open", Acl::open()).unwrap();
    // auth expands to the caller's digest id (ip ids are not "authenticated").
    assert_eq!(
        h.create_acl("/x", vec![Acl::new(perms::ALL, "auth", "")]),
        Err(ErrorCode::InvalidAcl)
    );
    h.ids.push(Id::new("digest", &user));
    h.create_acl("/d", vec![Acl::new(perms::ALL, "auth", "")])
        .unwrap();
    assert_eq!(
        h.tree.get("/d").unwrap().acl(),
        &[Acl::new(perms::ALL, "digest", &user)]
    );
    h.create_acl(
        "/r",
        vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "digest", &user),
        ],
    )
    .unwrap();
    h.create("/d/child", 0).unwrap();

    // A stranger.
    h.ids = vec![Id::new("ip", "127.0.0.1")];
    let gd = |h: &H, p: &str| {
        h.read(Request::GetData {
            path: p.into(),
            watch: false,
        })
    };
    assert_eq!(gd(&h, "/d"), Err(ErrorCode::NoAuth));
    assert!(gd(&h, "/r").is_ok());
    assert!(gd(&h, "/d/child").is_ok(), "ACLs are not inherited");
    assert_eq!(
        h.read(Request::GetChildren {
            path: "/d".into(),
            watch: false
        }),
        Err(ErrorCode::NoAuth)
    );
    assert_eq!(
        h.read(Request::GetChildren2 {
            path: "/d".into(),
            watch: false
        }),
        Err(ErrorCode::NoAuth)
    );
    assert_eq!(
        h.read(Request::GetAllChildrenNumber { path: "/d".into() }),
        Err(ErrorCode::NoAuth)
    );
    // exists needs nothing.
    assert!(h
        .read(Request::Exists {
            path: "/d".into(),
            watch: false
        })
        .is_ok());
    // getACL needs READ or ADMIN; without ADMIN digests are redacted.
    assert_eq!(
        h.read(Request::GetAcl { path: "/d".into() }),
        Err(ErrorCode::NoAuth)
    );
    assert_eq!(
        h.read(Request::GetAcl { path: "/r".into() }),
        Ok(Response::Acl {
            acl: vec![
                Acl::new(perms::READ, "world", "anyone"),
                Acl::new(perms::ALL, "digest", "user:x"),
            ],
            stat: h.stat("/r")
        })
    );
    // create: CREATE on the parent; delete: DELETE on the parent; setData: WRITE.
    assert_eq!(h.create("/d/x", 0), Err(ErrorCode::NoAuth));
    assert_eq!(h.create("/r/x", 0), Err(ErrorCode::NoAuth));
    assert_eq!(h.delete("/d/child", -1), Err(ErrorCode::NoAuth));
    assert_eq!(h.set("/d", b"", -1), Err(ErrorCode::NoAuth));
    assert_eq!(h.set("/r", b"", -1), Err(ErrorCode::NoAuth));
    // NoAuth on the parent comes before NoNode of the node.
    assert_eq!(h.delete("/d/nope", -1), Err(ErrorCode::NoAuth));
    // Deleting /d itself needs DELETE on / (open), not on /d.
    // (Not done: it has a child.) setACL needs ADMIN.
    assert_eq!(
        h.write(Request::SetAcl {
            path: "/r".into(),
            acl: Acl::open(),
            version: -1
        })
        .result,
        Err(ErrorCode::NoAuth)
    );
    // The owner, with the full ACL.
    h.ids.push(Id::new("digest", &user));
    assert_eq!(
        h.read(Request::GetAcl { path: "/r".into() }),
        Ok(Response::Acl {
            acl: vec![
                Acl::new(perms::READ, "world", "anyone"),
                Acl::new(perms::ALL, "digest", &user),
            ],
            stat: h.stat("/r")
        })
    );
    assert!(h.set("/d", b"", -1).is_ok());
    // Super bypasses everything.
    h.ids = vec![];
    h.is_super = true;
    assert!(gd(&h, "/d").is_ok());
    assert!(h.create("/d/y", 0).is_ok());
    assert!(h.delete("/d/y", -1).is_ok());
}

#[test]
fn ip_acl() {
    let mut h = H::new();
    h.create_acl(
        "/net",
        vec![Acl::new(
            perms::READ | perms::CREATE,
            "ip",
            "192.168.0.0/16",
        )],
    )
    .unwrap();
    h.ids = vec![Id::new("ip", "192.168.4.2")];
    assert!(h.create("/net/a", 0).is_ok());
    h.ids = vec![Id::new("ip", "192.169.4.2")];
    assert_eq!(h.create("/net/b", 0), Err(ErrorCode::NoAuth));
}

// ----------------------------------------------------------------------- multi

#[test]
fn multi_success_shape_and_events() {
    let mut h = H::new();
    h.create("/m", 0).unwrap();
    let a = h.write(Request::Multi(vec![
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: "/m/a".into(),
            data: Some(b"1".to_vec()),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }),
        // Later ops see earlier ones.
        Request::Create(CreateRequest {
            kind: CreateKind::Create2,
            path: "/m/a/b".into(),
            data: Some(vec![]),
            acl: Acl::open(),
            flags: 2,
            ttl: -1,
        }),
        Request::Check {
            path: "/m/a".into(),
            version: 0,
        },
        Request::SetData {
            path: "/m/a".into(),
            data: Some(b"2".to_vec()),
            version: 0,
        },
        Request::Delete {
            path: "/m/a/b0000000000".into(),
            version: 0,
        },
    ]));
    let z = h.zxid;
    let Ok(Response::Multi(rs)) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(rs.len(), 5);
    assert_eq!(
        rs[0],
        OpResult::Ok(
            crate::proto::op::CREATE,
            Response::Create {
                path: "/m/a".into()
            }
        )
    );
    // create2 inside multi answers like create (observed on 3.8.0).
    assert_eq!(
        rs[1],
        OpResult::Ok(
            crate::proto::op::CREATE,
            Response::Create {
                path: "/m/a/b0000000000".into()
            }
        )
    );
    assert_eq!(
        rs[2],
        OpResult::Ok(crate::proto::op::CHECK, Response::Empty)
    );
    let OpResult::Ok(5, Response::Stat(s)) = &rs[3] else {
        panic!("{:?}", rs[3])
    };
    assert_eq!((s.version, s.mzxid, s.num_children), (1, z, 1));
    assert_eq!(
        rs[4],
        OpResult::Ok(crate::proto::op::DELETE, Response::Empty)
    );
    assert_eq!(
        a.events,
        vec![
            (EventType::NodeCreated, "/m/a".to_string()),
            (EventType::NodeChildrenChanged, "/m".to_string()),
            (EventType::NodeCreated, "/m/a/b0000000000".to_string()),
            (EventType::NodeChildrenChanged, "/m/a".to_string()),
            (EventType::NodeDataChanged, "/m/a".to_string()),
            (EventType::NodeDeleted, "/m/a/b0000000000".to_string()),
            (EventType::NodeChildrenChanged, "/m/a".to_string()),
        ]
    );
    let s = h.stat("/m/a");
    assert_eq!(
        (s.version, s.cversion, s.num_children, s.pzxid),
        (1, 2, 0, z)
    );
    assert_eq!(h.tree.get("/m/a").unwrap().data(), Some(&b"2"[..]));
}

#[test]
fn multi_failure_shape_changes_nothing() {
    let mut h = H::new();
    h.create("/m", 0).unwrap();
    let before = h.tree.digest();
    let a = h.write(Request::Multi(vec![
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: "/m/a".into(),
            data: Some(vec![]),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }),
        Request::Check {
            path: "/m".into(),
            version: 3,
        },
        Request::Delete {
            path: "/m".into(),
            version: -1,
        },
    ]));
    assert_eq!(
        a.result,
        Ok(Response::Multi(vec![
            OpResult::Err(ErrorCode::Ok),
            OpResult::Err(ErrorCode::BadVersion),
            OpResult::Err(ErrorCode::RuntimeInconsistency),
        ]))
    );
    assert!(a.events.is_empty());
    assert!(h.tree.get("/m/a").is_none());
    assert_eq!(h.tree.digest(), before);
    assert_eq!(
        h.tree.last_zxid(),
        h.zxid,
        "a failed multi still takes its zxid"
    );
    // The failure of a later op that depends on an earlier one in the same multi.
    let a = h.write(Request::Multi(vec![
        Request::Delete {
            path: "/m".into(),
            version: -1,
        },
        Request::SetData {
            path: "/m".into(),
            data: Some(vec![]),
            version: -1,
        },
    ]));
    assert_eq!(
        a.result,
        Ok(Response::Multi(vec![
            OpResult::Err(ErrorCode::Ok),
            OpResult::Err(ErrorCode::NoNode),
        ]))
    );
    assert!(h.tree.get("/m").is_some());
    // A sequential create in a failed multi does not advance the counter.
    let a = h.write(Request::Multi(vec![
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: "/m/s".into(),
            data: Some(vec![]),
            acl: Acl::open(),
            flags: 2,
            ttl: -1,
        }),
        Request::Check {
            path: "/nope".into(),
            version: -1,
        },
    ]));
    assert!(
        matches!(a.result, Ok(Response::Multi(ref v)) if v[1] == OpResult::Err(ErrorCode::NoNode))
    );
    assert_eq!(h.create("/m/s", 2), created("/m/s0000000000"));
    // Empty multi; non-write op inside multi.
    assert_eq!(
        h.write(Request::Multi(vec![])).result,
        Ok(Response::Multi(vec![]))
    );
    assert_eq!(
        h.write(Request::Multi(vec![Request::GetData {
            path: "/m".into(),
            watch: false
        }]))
        .result,
        Err(ErrorCode::MarshallingError)
    );
}

fn mcreate(kind: CreateKind, path: &str, flags: i32, ttl: i64) -> Request {
    Request::Create(CreateRequest {
        kind,
        path: path.into(),
        data: Some(vec![]),
        acl: Acl::open(),
        flags,
        ttl,
    })
}

#[test]
fn multi_creates_follow_their_flags() {
    // Observed on 3.8.0: inside multi, create2 answers like create (no Stat), a
    // container flag makes a container whatever the header, createTTL with a non-TTL
    // flag is a plain create, a TTL flag without a createTTL header fails the whole
    // request, invalid flags fail the op with BadArguments, deleteContainer and reads
    // fail the whole request.
    let mut h = H::new();
    let a = h.write(Request::Multi(vec![
        mcreate(CreateKind::Create2, "/a", 0, -1),
        mcreate(CreateKind::Create, "/c", 4, -1),
        mcreate(CreateKind::Container, "/d", 0, -1),
        mcreate(CreateKind::Ttl, "/t", 0, 100),
        mcreate(CreateKind::Ttl, "/u", 5, 100),
    ]));
    let Ok(Response::Multi(rs)) = a.result else {
        panic!("{:?}", a.result)
    };
    let z = h.zxid;
    assert_eq!(
        rs[0],
        OpResult::Ok(1, Response::Create { path: "/a".into() })
    );
    assert!(
        matches!(&rs[1], OpResult::Ok(15, Response::Create2 { path, stat }) if path == "/c" && stat.czxid == z)
    );
    assert_eq!(
        rs[2],
        OpResult::Ok(1, Response::Create { path: "/d".into() })
    );
    assert_eq!(
        rs[3],
        OpResult::Ok(1, Response::Create { path: "/t".into() })
    );
    assert!(matches!(&rs[4], OpResult::Ok(15, Response::Create2 { path, .. }) if path == "/u"));
    assert_eq!(
        h.tree.get("/c").unwrap().ephemeral_owner(),
        CONTAINER_EPHEMERAL_OWNER
    );
    assert_eq!(h.tree.get("/d").unwrap().ephemeral_owner(), 0);
    assert_eq!(h.tree.get("/t").unwrap().ephemeral_owner(), 0);
    assert_eq!(h.tree.get("/u").unwrap().ephemeral_owner(), ttl_owner(100));
    assert_eq!(
        h.write(Request::Multi(vec![mcreate(
            CreateKind::Create,
            "/x",
            5,
            -1
        )]))
        .result,
        Err(ErrorCode::MarshallingError)
    );
    assert_eq!(
        h.write(Request::Multi(vec![mcreate(
            CreateKind::Create,
            "/x",
            9,
            -1
        )]))
        .result,
        Ok(Response::Multi(vec![OpResult::Err(
            ErrorCode::BadArguments
        )]))
    );
    assert_eq!(
        h.write(Request::Multi(vec![Request::DeleteContainer {
            path: "/c".into()
        }]))
        .result,
        Err(ErrorCode::MarshallingError)
    );
    // Standalone check: the reference drops the connection; we answer Unimplemented.
    assert_eq!(
        h.write(Request::Check {
            path: "/a".into(),
            version: -1
        })
        .result,
        Err(ErrorCode::Unimplemented)
    );
    assert_eq!(h.tree.last_zxid(), h.zxid);
}

#[test]
fn multi_read_shape() {
    let mut h = H::new();
    h.create2("/a", b"x", 0).unwrap();
    let r = h.read(Request::MultiRead(vec![
        Request::GetData {
            path: "/a".into(),
            watch: false,
        },
        Request::GetChildren {
            path: "/nope".into(),
            watch: false,
        },
        Request::GetChildren {
            path: "/".into(),
            watch: false,
        },
    ]));
    assert_eq!(
        r,
        Ok(Response::Multi(vec![
            OpResult::Ok(
                4,
                Response::Data {
                    data: Some(b"x".to_vec()),
                    stat: h.stat("/a")
                }
            ),
            OpResult::Err(ErrorCode::NoNode),
            OpResult::Ok(8, Response::Children(vec!["a".into(), "zookeeper".into()])),
        ]))
    );
    assert_eq!(
        h.read(Request::MultiRead(vec![Request::Exists {
            path: "/a".into(),
            watch: false
        }])),
        Err(ErrorCode::MarshallingError)
    );
}

// ----------------------------------------------------------------------- reads

#[test]
fn reads() {
    let mut h = H::new();
    for p in ["/b", "/a", "/a/z", "/a/y", "/a/y/deep", "/ab"] {
        h.create(p, 0).unwrap();
    }
    assert_eq!(h.children("/"), vec!["a", "ab", "b", "zookeeper"]);
    assert_eq!(h.children("/a"), vec!["y", "z"]);
    assert_eq!(h.children("/a/z"), Vec::<String>::new());
    let r = h.read(Request::GetChildren2 {
        path: "/a".into(),
        watch: false,
    });
    assert_eq!(
        r,
        Ok(Response::Children2 {
            children: vec!["y".into(), "z".into()],
            stat: h.stat("/a")
        })
    );
    let n = |h: &H, p: &str| h.read(Request::GetAllChildrenNumber { path: p.into() });
    assert_eq!(n(&h, "/a"), Ok(Response::AllChildrenNumber(3)));
    assert_eq!(n(&h, "/"), Ok(Response::AllChildrenNumber(9)));
    assert_eq!(n(&h, "/zookeeper"), Ok(Response::AllChildrenNumber(2)));
    assert_eq!(n(&h, ""), Ok(Response::AllChildrenNumber(10)));
    assert_eq!(n(&h, "/nope"), Err(ErrorCode::NoNode));
    // Reads do not validate paths: malformed → NoNode; exists with NUL → BadArguments.
    for p in ["a", "/a/", "//", "/a/../a"] {
        assert_eq!(
            h.read(Request::GetData {
                path: p.into(),
                watch: false
            }),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            h.read(Request::Exists {
                path: p.into(),
                watch: false
            }),
            Err(ErrorCode::NoNode)
        );
    }
    assert_eq!(
        h.read(Request::Exists {
            path: "/a\0".into(),
            watch: false
        }),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        h.read(Request::GetData {
            path: "/a\0".into(),
            watch: false
        }),
        Err(ErrorCode::NoNode)
    );
    assert_eq!(h.read(Request::Ping), Err(ErrorCode::Unimplemented));
    let v = h.tree.get("/a").unwrap();
    assert_eq!(v.path(), "/a");
    assert_eq!(v.children().collect::<Vec<_>>(), vec!["y", "z"]);
}

// ----------------------------------------------------------------------- snapshot, digest, codec

fn busy_history(h: &mut H) {
    h.ids.push(Id::new("digest", &digest_id("u:p")));
    h.create2("/a", b"alpha", 0).unwrap();
    h.create("/a/s", 2).unwrap();
    h.create("/a/s", 3).unwrap();
    h.create_acl("/acl", vec![Acl::new(perms::ALL, "auth", "")])
        .unwrap();
    h.create_full(CreateKind::Container, "/c", b"", 4, -1)
        .unwrap();
    h.create("/c/x", 0).unwrap();
    h.create_full(CreateKind::Ttl, "/t", b"ttl", 5, 5000)
        .unwrap();
    h.set("/a", b"beta", -1).unwrap();
    h.delete("/a/s0000000000", -1).unwrap();
    h.write(Request::SetAcl {
        path: "/zookeeper".into(),
        acl: vec![Acl::new(perms::ALL, "ip", "127.0.0.0/8")],
        version: -1,
    });
    h.create_data("/null", None).unwrap();
    h.set_data("/c/x", None, -1).unwrap();
    h.session = 0x77;
    h.create("/e", 1).unwrap();
    h.create("/a/long-name-that-goes-past-the-inline-key-limit", 0)
        .unwrap();
}

// ----------------------------------------------------------------------- null data

#[test]
fn null_data_reads_back_null_and_counts_as_empty() {
    // The reference keeps a null byte[]: getData answers the −1 buffer, while
    // Stat.dataLength, approximateDataSize and the digest count it as no bytes.
    let mut null = H::new();
    let mut empty = H::new();
    null.create_data("/n", None).unwrap();
    empty.create_data("/n", Some(b"")).unwrap();
    assert_eq!(null.get_data("/n"), None);
    assert_eq!(empty.get_data("/n"), Some(Vec::new()));
    assert_eq!(null.tree.get("/n").unwrap().data(), None);
    assert_eq!(null.stat("/n"), empty.stat("/n"));
    assert_eq!(null.stat("/n").data_length, 0);
    assert_eq!(null.tree.digest(), empty.tree.digest());
    assert_eq!(
        null.tree.approximate_data_size(),
        empty.tree.approximate_data_size()
    );
    // setData moves between null, bytes and empty; each reads back as written.
    for data in [Some(&b"xy"[..]), None, Some(&b""[..]), None] {
        null.set_data("/n", data, -1).unwrap();
        assert_eq!(null.get_data("/n").as_deref(), data);
        empty.set_data("/n", data.or(Some(b"")), -1).unwrap();
        assert_eq!(null.tree.digest(), empty.tree.digest());
    }
    assert_eq!(null.stat("/n").version, 4);
}

#[test]
fn null_data_costs_no_memory_per_node() {
    // Box's niche: Option<Box<[u8]>> is the bare fat pointer.
    assert_eq!(
        std::mem::size_of::<Option<Box<[u8]>>>(),
        std::mem::size_of::<Box<[u8]>>()
    );
}

#[test]
fn null_data_in_multi_and_multi_read() {
    let mut h = H::new();
    let a = h.write(Request::Multi(vec![
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: "/m".into(),
            data: None,
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }),
        Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: "/m/e".into(),
            data: Some(Vec::new()),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }),
        Request::SetData {
            path: "/m/e".into(),
            data: None,
            version: 0,
        },
    ]));
    assert!(matches!(a.result, Ok(Response::Multi(ref r)) if r.len() == 3));
    let got = h.read(Request::MultiRead(vec![
        Request::GetData {
            path: "/m".into(),
            watch: false,
        },
        Request::GetData {
            path: "/m/e".into(),
            watch: false,
        },
    ]));
    let Ok(Response::Multi(results)) = got else {
        panic!("multiRead: {got:?}");
    };
    for (r, path) in results.iter().zip(["/m", "/m/e"]) {
        assert_eq!(
            r,
            &OpResult::Ok(
                crate::proto::op::GET_DATA,
                Response::Data {
                    data: None,
                    stat: h.stat(path)
                }
            )
        );
    }
    // Replaying the logged txns rebuilds the same nulls.
    let mut t = Tree::new();
    for txn in &h.txns {
        apply(&mut t, txn);
    }
    assert_eq!(t.get("/m").unwrap().data(), None);
    assert_eq!(t.get("/m/e").unwrap().data(), None);
}

#[test]
fn null_data_txns_carry_a_minus_one_buffer() {
    let mut h = H::new();
    h.create_data("/n", None).unwrap();
    h.set_data("/n", None, -1).unwrap();
    let mut b = Vec::new();
    h.txns[0].encode(&mut b, None);
    // Header (32), path "/n" (4 + 2), then the data buffer.
    assert_eq!(b[38..42], [0xff; 4]);
    let mut b = Vec::new();
    h.txns[1].encode(&mut b, None);
    assert_eq!(b[38..42], [0xff; 4]);
}

#[test]
fn corral_snapshot_keeps_null_and_reads_format_2() {
    let mut h = H::new();
    h.create_data("/n", None).unwrap();
    h.create_data("/e", Some(b"")).unwrap();
    let mut buf = Vec::new();
    h.tree.write_snapshot(&mut buf).unwrap();
    let t = Tree::read_snapshot(&mut &buf[..]).unwrap();
    assert_eq!(t.get("/n").unwrap().data(), None);
    assert_eq!(t.get("/e").unwrap().data(), Some(&b""[..]));
    // A format-2 file (written before null was kept; it never holds −1) still reads.
    let mut old = H::new();
    old.create_data("/e", Some(b"x")).unwrap();
    let mut v2 = Vec::new();
    old.tree.write_snapshot(&mut v2).unwrap();
    let with_format = |b: &[u8], format: u32| {
        let mut b = b[..b.len() - 4].to_vec();
        b[8..12].copy_from_slice(&format.to_be_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    };
    let t = Tree::read_snapshot(&mut &with_format(&v2, 2)[..]).unwrap();
    assert_eq!(t.get("/e").unwrap().data(), Some(&b"x"[..]));
    // A future format fails with a message that names it.
    let e = Tree::read_snapshot(&mut &with_format(&v2, 4)[..]).unwrap_err();
    assert!(matches!(e, TreeError::BadVersion(4)), "{e}");
    assert!(e.to_string().contains("format 4"), "{e}");
}

#[test]
fn snapshot_round_trip() {
    let mut h = H::new();
    busy_history(&mut h);
    let mut buf = Vec::new();
    h.tree.write_snapshot(&mut buf).unwrap();
    let t = Tree::read_snapshot(&mut &buf[..]).unwrap();
    assert_eq!(t.digest(), h.tree.digest());
    assert_eq!(t.last_zxid(), h.tree.last_zxid());
    assert_eq!(t.node_count(), h.tree.node_count());
    assert_eq!(t.approximate_data_size(), h.tree.approximate_data_size());
    assert_eq!(t.ephemerals_of(0x77), vec!["/e"]);
    assert_eq!(t.ephemeral_count(), h.tree.ephemeral_count());
    assert_eq!(
        t.cleanup_candidates(i64::MAX),
        h.tree.cleanup_candidates(i64::MAX)
    );
    assert_eq!(t.acls, h.tree.acls);
    for (k, n) in h.tree.nodes.iter() {
        let p = k.to_path();
        let v = t.get(&p).unwrap();
        assert_eq!(v.stat(), n.stat(), "{p}");
        assert_eq!(v.data(), n.data());
        assert_eq!(v.acl(), &n.acl[..]);
        assert_eq!(
            v.children().collect::<Vec<_>>(),
            h.tree.get(&p).unwrap().children().collect::<Vec<_>>()
        );
    }
    // A loaded tree keeps working: same txn on both gives the same digest.
    let mut t2 = t.clone();
    let mut h2 = H::new();
    std::mem::swap(&mut h2.tree, &mut t2);
    h2.zxid = h.zxid;
    h2.time = h.time;
    h.create("/after", 2).unwrap();
    h2.create("/after", 2).unwrap();
    assert_eq!(h.tree.digest(), h2.tree.digest());
    // Writing the snapshot again gives the same bytes.
    let mut again = Vec::new();
    t.write_snapshot(&mut again).unwrap();
    assert_eq!(again, buf);
}

#[test]
fn snapshot_corruption_is_detected() {
    let mut h = H::new();
    busy_history(&mut h);
    let mut buf = Vec::new();
    h.tree.write_snapshot(&mut buf).unwrap();
    for i in [0, 9, 20, buf.len() / 2, buf.len() - 5, buf.len() - 1] {
        let mut b = buf.clone();
        b[i] ^= 0x40;
        assert!(Tree::read_snapshot(&mut &b[..]).is_err(), "flip at {i}");
    }
    for cut in [0, 7, buf.len() / 3, buf.len() - 1] {
        assert!(
            Tree::read_snapshot(&mut &buf[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

/// The loader's parallel path (helpers decoding chunks while the map is built)
/// gives the tree the sequential one does, and rejects the same damage; tiny
/// chunks so that a small tree spans many of them and every helper.
#[test]
fn snapshot_loads_the_same_with_helpers_and_any_chunk_size() {
    let mut h = H::new();
    busy_history(&mut h);
    for i in 0..40 {
        h.create(&format!("/many-{i:02}"), 0).unwrap();
    }
    let mut buf = Vec::new();
    h.tree.write_snapshot(&mut buf).unwrap();
    let whole = snapshot::load(&buf, 0, usize::MAX >> 1).unwrap();
    for (workers, chunk) in [(0, 1), (1, 1), (1, 7), (2, 3), (3, 2), (3, 1000)] {
        let t = snapshot::load(&buf, workers, chunk).unwrap();
        assert_eq!(t.digest(), whole.digest(), "{workers} x {chunk}");
        assert_eq!(t.node_count(), whole.node_count());
        assert_eq!(t.approximate_data_size(), whole.approximate_data_size());
        assert_eq!(t.acls, whole.acls);
        assert_eq!(t.ephemerals(), whole.ephemerals());
        assert_eq!(
            t.cleanup_candidates(i64::MAX),
            whole.cleanup_candidates(i64::MAX)
        );
        for (k, n) in whole.nodes.iter() {
            assert_eq!(t.node(&k.to_path()), Some(n), "{k:?}");
        }
        let mut again = Vec::new();
        t.write_snapshot(&mut again).unwrap();
        assert_eq!(again, buf);
        for at in [
            0,
            9,
            20,
            buf.len() / 3,
            buf.len() / 2,
            buf.len() - 5,
            buf.len() - 1,
        ] {
            let mut b = buf.clone();
            b[at] ^= 0x40;
            let e = snapshot::load(&b, workers, chunk).unwrap_err();
            assert!(matches!(e, TreeError::Checksum { .. }), "flip at {at}: {e}");
        }
        for cut in [0, 7, buf.len() / 3, buf.len() - 1] {
            assert!(
                snapshot::load(&buf[..cut], workers, chunk).is_err(),
                "cut at {cut}"
            );
        }
    }
}

/// Damage under a valid checksum (a buggy writer, not the disk): each structure
/// check still holds on the parallel path, and the first damaged node in file
/// order is the one reported.
#[test]
fn snapshot_structure_checks_hold_with_helpers() {
    let mut h = H::new();
    for i in 0..30 {
        h.create(&format!("/n{i:02}"), 0).unwrap();
    }
    let mut buf = Vec::new();
    h.tree.write_snapshot(&mut buf).unwrap();
    let reseal = |b: &mut Vec<u8>| {
        let n = b.len() - 4;
        let crc = crc32c::crc32c(&b[..n]);
        b[n..].copy_from_slice(&crc.to_be_bytes());
    };
    let find = |b: &[u8], s: &[u8]| b.windows(s.len()).position(|w| w == s).unwrap();
    // Two nodes swapped in name: out of order, inside a chunk and across chunks.
    let mut swapped = buf.clone();
    let (a, b) = (find(&swapped, b"/n05"), find(&swapped, b"/n06"));
    swapped[a + 3] = b'6';
    swapped[b + 3] = b'5';
    reseal(&mut swapped);
    // A path that is not valid (a relative component).
    let mut bad_path = buf.clone();
    let at = find(&bad_path, b"/n20");
    bad_path[at + 2..at + 4].copy_from_slice(b"/.");
    reseal(&mut bad_path);
    for (workers, chunk) in [(0, 4096), (1, 1), (2, 3), (3, 6)] {
        let e = snapshot::load(&swapped, workers, chunk).unwrap_err();
        assert!(
            e.to_string().contains("out of order"),
            "{workers} x {chunk}: {e}"
        );
        let e = snapshot::load(&bad_path, workers, chunk).unwrap_err();
        assert!(
            e.to_string().contains("bad path \"/n/.\""),
            "{workers} x {chunk}: {e}"
        );
    }
}

#[test]
fn apply_is_deterministic() {
    let mut h = H::new();
    busy_history(&mut h);
    let mut t = Tree::new();
    for txn in &h.txns {
        apply(&mut t, txn);
    }
    assert_eq!(t.digest(), h.tree.digest());
    assert_ne!(t.digest(), Tree::new().digest());
    // The digest is a function of the state: a snapshot reload recomputes it.
    let mut buf = Vec::new();
    t.write_snapshot(&mut buf).unwrap();
    assert_eq!(
        Tree::read_snapshot(&mut &buf[..]).unwrap().digest(),
        t.digest()
    );
    // Different data, different digest.
    let mut h2 = H::new();
    h2.create2("/a", b"x", 0).unwrap();
    let mut h3 = H::new();
    h3.create2("/a", b"y", 0).unwrap();
    assert_ne!(h2.tree.digest(), h3.tree.digest());
}

#[test]
#[should_panic(expected = "not after last applied")]
fn apply_refuses_old_zxid() {
    let mut h = H::new();
    h.create("/a", 0).unwrap();
    let txn = h.txns[0].clone();
    apply(&mut h.tree, &txn);
}

#[test]
fn txn_decode_rejects_garbage() {
    assert!(Txn::decode(&[]).is_err());
    assert!(Txn::decode(&[0; 24]).is_err());
    let mut b = Vec::new();
    create_session_txn(1, 2, 3, 4).encode(&mut b, None);
    assert!(Txn::decode(&b).is_ok());
    b.push(0);
    assert!(Txn::decode(&b).is_err());
}

// ----------------------------------------------------------------------- ZooKeeper's digest

/// PEER-PROTOCOL §6.5 and §13: the digests a real 3.8.0 ensemble put in its
/// proposals, and the create REQUEST it was sent.
#[test]
fn digest_matches_the_reference_capture() {
    // A fresh reference tree: root and /zookeeper count, /zookeeper/quota and
    // /zookeeper/config (present in a fresh reference tree too) are left out.
    assert_eq!(Tree::new().digest(), 0x51c6d660);
    let session = 0x0100_0014_ff34_0000;
    let mut tree = Tree::new();
    apply(
        &mut tree,
        &create_session_txn(0x1_0000_0001, 1_795_956_095_327, session, 30000),
    );
    assert_eq!(tree.digest(), 0x51c6d660);
    // The create body of the captured REQUEST (xid 1, opcode 1).
    let body = [
        "000000082f70656572646f63",
        "0000000568656c6c6f",
        "000000010000001f00000005776f726c6400000006616e796f6e65",
        "00000000",
    ]
    .concat();
    let body: Vec<u8> = (0..body.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&body[i..i + 2], 16).unwrap())
        .collect();
    let req = Request::decode(
        crate::proto::op::CREATE,
        &mut crate::proto::Reader::new(&body),
    )
    .unwrap()
    .unwrap();
    let ctx = TxnContext {
        zxid: 0x1_0000_0002,
        time_ms: 1_795_956_095_364,
        cxid: 1,
        extended_types_enabled: false,
        max_data_bytes: 0xfffff,
        enforce_quota: false,
        digest_enabled: true,
        ephemerals_allowed: true,
    };
    let ids = vec![Id::new("ip", "127.0.0.1")];
    let caller = Caller {
        session_id: session,
        ids: &ids,
        is_super: false,
    };
    let txn = prepare(&tree, &ctx, &caller, &req);
    apply(&mut tree, &txn);
    assert_eq!(tree.digest(), 0x1_40b9_0c87);
    // The txn entry: header, CreateTxn {path, data, acl, ephemeral, parentCVersion 1},
    // digest.
    let mut b = Vec::new();
    txn.encode(&mut b, Some(tree.digest()));
    let mut want = Vec::new();
    want.extend_from_slice(&session.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&0x1_0000_0002i64.to_be_bytes());
    want.extend_from_slice(&1_795_956_095_364i64.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&body[..body.len() - 4]);
    want.push(0);
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&2i32.to_be_bytes());
    want.extend_from_slice(&0x1_40b9_0c87u64.to_be_bytes());
    assert_eq!(b, want);
}

#[test]
fn digest_leaves_out_zookeeper_children_only() {
    let mut h = H::new();
    let d0 = h.tree.digest();
    // Nodes under /zookeeper/ do not move it.
    h.create("/zookeeper/quota/q", 0).unwrap();
    h.set("/zookeeper/quota", b"x", -1).unwrap();
    let d1 = h.tree.digest();
    assert_eq!(d1, d0);
    h.zxid += 1;
    h.time += 1;
    let a = h.apply_txn(Txn {
        session_id: 0,
        cxid: 0,
        zxid: h.zxid,
        time_ms: h.time,
        op: TxnOp::Reconfig {
            data: b"server.1=x".to_vec(),
            version: -1,
        },
    });
    assert_eq!(
        a.events,
        vec![(EventType::NodeDataChanged, "/zookeeper/config".to_string())]
    );
    assert!(
        matches!(a.result, Ok(Response::Data { ref data, stat }) if data.as_deref() == Some(&b"server.1=x"[..]) && stat.version == -1)
    );
    assert_eq!(h.tree.digest(), d1, "reconfig does not change the digest");
    assert_eq!(
        h.tree.get("/zookeeper/config").unwrap().data(),
        Some(&b"server.1=x"[..])
    );
    // Touching /zookeeper itself does.
    h.set("/zookeeper", b"z", -1).unwrap();
    assert_ne!(h.tree.digest(), d1);
}

#[test]
fn failed_multi_keeps_earlier_ops_and_decoded_reference_multi_applies_alike() {
    let mut h = H::new();
    h.create("/m", 0).unwrap();
    let before = h.tree.digest();
    let a = h.write(Request::Multi(vec![
        Request::Create(CreateRequest {
            kind: CreateKind::Create2,
            path: "/m/a".into(),
            data: Some(vec![]),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        }),
        Request::Delete {
            path: "/nope".into(),
            version: -1,
        },
        Request::Check {
            path: "/m".into(),
            version: 0,
        },
    ]));
    let t = h.txns.last().unwrap().clone();
    // As the reference writes it: the op before keeps its txn (create2 inside a multi
    // is a create), the failing op its code, the rest RuntimeInconsistency.
    match &t.op {
        TxnOp::Multi(ops) => {
            assert!(
                matches!(&ops[0], TxnOp::Create(c) if c.kind == CreateKind::Create && c.path == "/m/a")
            );
            assert_eq!(ops[1], TxnOp::Error(ErrorCode::NoNode));
            assert_eq!(ops[2], TxnOp::Error(ErrorCode::RuntimeInconsistency));
        }
        op => panic!("{op:?}"),
    }
    assert_eq!(
        a.result,
        Ok(Response::Multi(vec![
            OpResult::Err(ErrorCode::Ok),
            OpResult::Err(ErrorCode::NoNode),
            OpResult::Err(ErrorCode::RuntimeInconsistency),
        ]))
    );
    assert_eq!(h.tree.digest(), before);
    // A reference multi whose later ops kept real txns (as DataTree tolerates) applies
    // as the reference does: Ok before the first error, RuntimeInconsistency after.
    h.zxid += 1;
    let a = h.apply_txn(Txn {
        session_id: SID,
        cxid: 5,
        zxid: h.zxid,
        time_ms: h.time,
        op: TxnOp::Multi(vec![
            TxnOp::Delete { path: "/m".into() },
            TxnOp::Error(ErrorCode::BadVersion),
            TxnOp::SetData {
                path: "/m".into(),
                data: Some(vec![1]),
                version: 1,
            },
        ]),
    });
    assert_eq!(
        a.result,
        Ok(Response::Multi(vec![
            OpResult::Err(ErrorCode::Ok),
            OpResult::Err(ErrorCode::BadVersion),
            OpResult::Err(ErrorCode::RuntimeInconsistency),
        ]))
    );
    assert!(a.events.is_empty());
    assert_eq!(h.tree.digest(), before);
}

#[test]
fn check_in_multi_carries_the_next_version_and_sync_is_not_a_txn() {
    let mut h = H::new();
    h.create("/m", 0).unwrap();
    h.set("/m", b"1", -1).unwrap();
    h.write(Request::Multi(vec![Request::Check {
        path: "/m".into(),
        version: -1,
    }]));
    assert_eq!(
        h.txns.last().unwrap().op,
        TxnOp::Multi(vec![TxnOp::Check {
            path: "/m".into(),
            version: 2
        }])
    );
    let a = h.write(Request::Sync { path: "/".into() });
    assert_eq!(a.result, Err(ErrorCode::Unimplemented));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn acl() -> impl Strategy<Value = Acl> {
        (0..32i32, "[a-z]{0,6}", "[a-z:0-9./]{0,12}").prop_map(|(p, s, i)| Acl::new(p, &s, &i))
    }

    fn err() -> impl Strategy<Value = ErrorCode> {
        prop::sample::select(vec![
            ErrorCode::Ok,
            ErrorCode::NoNode,
            ErrorCode::BadVersion,
            ErrorCode::RuntimeInconsistency,
            ErrorCode::InvalidAcl,
        ])
    }

    fn path() -> impl Strategy<Value = String> {
        "/[a-z0-9é中/\x00]{0,16}"
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..32)
    }

    /// Znode data: null now and then, empty and non-empty otherwise.
    fn data() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![1 => Just(None), 4 => bytes().prop_map(Some)]
    }

    /// A create as prepare or a decoder makes it: the owner follows the kind and the
    /// txn's session.
    fn create(session_id: i64, in_multi: bool) -> impl Strategy<Value = TxnOp> {
        let mut kinds = vec![CreateKind::Create, CreateKind::Container, CreateKind::Ttl];
        if !in_multi {
            kinds.push(CreateKind::Create2);
        }
        (
            path(),
            data(),
            prop::collection::vec(acl(), 0..3),
            any::<bool>(),
            1..=TTL_MS_MAX,
            any::<i32>(),
            prop::sample::select(kinds),
        )
            .prop_map(
                move |(path, data, acl, ephemeral, ttl, parent_cversion, kind)| {
                    let ephemeral_owner = match kind {
                        CreateKind::Container => CONTAINER_EPHEMERAL_OWNER,
                        CreateKind::Ttl => ttl_owner(ttl),
                        _ if ephemeral => session_id,
                        _ => 0,
                    };
                    TxnOp::Create(CreateTxn {
                        path,
                        data,
                        acl,
                        ephemeral_owner,
                        parent_cversion,
                        kind,
                    })
                },
            )
    }

    /// What may stand inside a multi.
    fn multi_op(session_id: i64) -> impl Strategy<Value = TxnOp> {
        prop_oneof![
            create(session_id, true),
            path().prop_map(|path| TxnOp::Delete { path }),
            path().prop_map(|path| TxnOp::DeleteContainer { path }),
            (path(), data(), any::<i32>()).prop_map(|(path, data, version)| TxnOp::SetData {
                path,
                data,
                version
            }),
            (path(), any::<i32>()).prop_map(|(path, version)| TxnOp::Check { path, version }),
            err().prop_map(TxnOp::Error),
        ]
    }

    fn top(session_id: i64) -> impl Strategy<Value = TxnOp> {
        prop_oneof![
            create(session_id, false),
            path().prop_map(|path| TxnOp::Delete { path }),
            path().prop_map(|path| TxnOp::DeleteContainer { path }),
            (path(), data(), any::<i32>()).prop_map(|(path, data, version)| TxnOp::SetData {
                path,
                data,
                version
            }),
            (path(), prop::collection::vec(acl(), 0..3), any::<i32>())
                .prop_map(|(path, acl, version)| TxnOp::SetAcl { path, acl, version }),
            prop::collection::vec(multi_op(session_id), 0..5).prop_map(TxnOp::Multi),
            err().prop_map(TxnOp::Error),
            any::<i32>().prop_map(|timeout_ms| TxnOp::CreateSession { timeout_ms }),
            prop::collection::vec(path(), 0..4).prop_map(|paths| TxnOp::CloseSession { paths }),
            (bytes(), any::<i32>()).prop_map(|(data, version)| TxnOp::Reconfig { data, version }),
        ]
    }

    /// One step of a random history for [`prepared_txns_survive_the_codec`].
    #[derive(Debug, Clone)]
    enum Step {
        Write(Request),
        Session(i64),
        Close,
        Cleanup,
    }

    fn small_path() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "/a",
            "/b",
            "/a/x",
            "/a/x/y",
            "/c",
            "/zookeeper/quota/q",
        ])
        .prop_map(str::to_string)
    }

    fn create_req(in_multi: bool) -> impl Strategy<Value = Request> {
        let kinds = vec![
            CreateKind::Create,
            CreateKind::Create2,
            CreateKind::Container,
            CreateKind::Ttl,
        ];
        (
            small_path(),
            data(),
            prop::sample::select(kinds),
            0..7i32,
            prop::sample::select(vec![
                Acl::open(),
                vec![Acl::new(perms::ALL, "auth", "")],
                vec![Acl::new(perms::READ, "world", "anyone")],
            ]),
        )
            .prop_map(move |(path, data, kind, flags, acl)| {
                // Mostly valid combinations, some not (they become error txns).
                let flags = match kind {
                    CreateKind::Container if !in_multi => 4,
                    CreateKind::Ttl => 5 + flags % 2,
                    _ => flags,
                };
                let ttl = if kind == CreateKind::Ttl { 1000 } else { -1 };
                Request::Create(CreateRequest {
                    kind,
                    path,
                    data,
                    acl,
                    flags,
                    ttl,
                })
            })
    }

    fn simple_req() -> impl Strategy<Value = Request> {
        prop_oneof![
            3 => create_req(false),
            1 => (small_path(), -1..2i32).prop_map(|(path, version)| Request::Delete { path, version }),
            1 => (small_path(), data(), -1..2i32).prop_map(|(path, data, version)| Request::SetData {
                path,
                data,
                version
            }),
            1 => (small_path(), -1..2i32).prop_map(|(path, version)| Request::SetAcl {
                path,
                acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                version
            }),
        ]
    }

    fn multi_req() -> impl Strategy<Value = Request> {
        let op = prop_oneof![
            create_req(true),
            (small_path(), -1..2i32).prop_map(|(path, version)| Request::Delete { path, version }),
            (small_path(), data(), -1..2i32).prop_map(|(path, data, version)| Request::SetData {
                path,
                data,
                version
            }),
            (small_path(), -1..2i32).prop_map(|(path, version)| Request::Check { path, version }),
        ];
        prop::collection::vec(op, 0..5).prop_map(Request::Multi)
    }

    fn request() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => simple_req().prop_map(Step::Write),
            2 => multi_req().prop_map(Step::Write),
            1 => (0x10..0x13i64).prop_map(Step::Session),
            1 => Just(Step::Close),
            1 => Just(Step::Cleanup),
        ]
    }

    fn txn() -> impl Strategy<Value = Txn> {
        (any::<i64>(), any::<i32>(), any::<i64>(), any::<i64>()).prop_flat_map(
            |(session_id, cxid, zxid, time_ms)| {
                top(session_id).prop_map(move |op| Txn {
                    session_id,
                    cxid,
                    zxid,
                    time_ms,
                    op,
                })
            },
        )
    }

    proptest! {
        #[test]
        fn txn_round_trips(t in txn(), digest in any::<Option<u64>>()) {
            let mut b = Vec::new();
            t.encode(&mut b, digest);
            let want = digest.filter(|_| t.carries_digest());
            prop_assert_eq!(Txn::decode(&b).unwrap(), (t.clone(), want));
            // Sizing first, digest after: the same bytes.
            if t.carries_digest() {
                if let Some(d) = digest {
                    let mut c = Vec::new();
                    t.encode(&mut c, None);
                    Txn::encode_digest(&mut c, d);
                    prop_assert_eq!(c, b);
                }
            }
        }

        /// Truncations and single-byte changes of valid entries never panic.
        #[test]
        fn txn_decode_of_damaged_entries_never_panics(t in txn(), cut in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), x in any::<u8>()) {
            let mut b = Vec::new();
            t.encode(&mut b, Some(7));
            let _ = Txn::decode(&b[..cut.index(b.len() + 1)]);
            let i = at.index(b.len());
            b[i] ^= x;
            let _ = Txn::decode(&b);
        }

        #[test]
        fn txn_decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Txn::decode(&b);
        }

        /// Random requests through prepare → apply, then each txn through encode →
        /// decode → apply on a second tree: the same replies, the same digest after
        /// every txn (and equal to the decoded digest), the same tree at the end.
        #[test]
        fn prepared_txns_survive_the_codec(reqs in prop::collection::vec(request(), 1..40)) {
            let mut h = H::new();
            let mut replies = Vec::new();
            for r in reqs {
                match r {
                    Step::Session(s) => h.session = s,
                    Step::Close => replies.push(h.write(Request::CloseSession)),
                    Step::Cleanup => {
                        for p in h.tree.cleanup_candidates(i64::MAX) {
                            h.zxid += 1;
                            let t = cleanup_txn(&h.tree, h.zxid, h.time, &p);
                            replies.push(h.apply_txn(t));
                        }
                    }
                    Step::Write(req) => replies.push(h.write(req)),
                }
            }
            let mut original = Tree::new();
            let mut copy = Tree::new();
            let mut copy_replies = Vec::new();
            for t in &h.txns {
                apply(&mut original, t);
                let mut b = Vec::new();
                t.encode(&mut b, Some(original.digest()));
                let (back, digest) = Txn::decode(&b).unwrap();
                copy_replies.push(apply(&mut copy, &back));
                prop_assert_eq!(copy.digest(), original.digest());
                if t.carries_digest() {
                    prop_assert_eq!(digest, Some(copy.digest()));
                }
            }
            prop_assert_eq!(copy_replies, replies);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            original.write_snapshot(&mut a).unwrap();
            copy.write_snapshot(&mut b).unwrap();
            prop_assert_eq!(a, b);
            prop_assert_eq!(copy.digest(), h.tree.digest());
        }

        /// The key encoding against a plain model: children, numChildren and
        /// descendant counts for names that sort next to '/' ('-', '.', '0').
        #[test]
        fn children_match_a_model(ops in prop::collection::vec((any::<bool>(), prop::collection::vec(0..5usize, 1..4)), 1..60)) {
            let names = ["a", "a-", "a.b", "a0", "b"];
            let mut h = H::new();
            let mut model = std::collections::BTreeSet::new();
            for (create, parts) in ops {
                let path: String = parts.iter().map(|i| format!("/{}", names[*i])).collect();
                if create {
                    let parent_ok = match path.rfind('/') {
                        Some(0) => true,
                        Some(i) => model.contains(&path[..i]),
                        None => false,
                    };
                    let r = h.create(&path, 0);
                    prop_assert_eq!(r.is_ok(), parent_ok && !model.contains(&path));
                    if r.is_ok() { model.insert(path); }
                } else {
                    let leaf = !model.iter().any(|m: &String| m.starts_with(&format!("{path}/")));
                    let r = h.delete(&path, -1);
                    prop_assert_eq!(r.is_ok(), model.contains(&path) && leaf);
                    if r.is_ok() { model.remove(&path); }
                }
            }
            let mut all: Vec<String> = model.iter().cloned().collect();
            all.push("/".into());
            for p in &all {
                let prefix = if p == "/" { "/".to_string() } else { format!("{p}/") };
                let mut kids: Vec<String> = model
                    .iter()
                    .filter(|m| m.starts_with(&prefix) && !m[prefix.len()..].contains('/'))
                    .map(|m| m[prefix.len()..].to_string())
                    .collect();
                if p == "/" { kids.push("zookeeper".into()); }
                kids.sort();
                prop_assert_eq!(h.children(p), kids.clone());
                prop_assert_eq!(h.stat(p).num_children as usize, kids.len());
                if p != "/" {
                    let desc = model.iter().filter(|m| m.starts_with(&prefix)).count();
                    prop_assert_eq!(
                        h.read(Request::GetAllChildrenNumber { path: p.clone() }),
                        Ok(Response::AllChildrenNumber(desc as i32))
                    );
                }
            }
            prop_assert_eq!(h.tree.distinct_node_count(), model.len() + 4);
        }

        /// Random op sequences: replaying the txns gives the same digest, and the
        /// running digest equals the one recomputed from scratch by a snapshot load.
        #[test]
        fn random_histories_replay_and_digest(ops in prop::collection::vec((0..6u8, 0..4u8, 0..4u8, 0..3i32), 1..40)) {
            let mut h = H::new();
            let names = ["/a", "/b", "/a/x", "/b/y"];
            for (kind, n, flags, v) in ops {
                let p = names[n as usize];
                match kind {
                    0 | 1 => { let _ = h.create(p, flags as i32); }
                    2 => { let _ = h.delete(p, v - 1); }
                    3 => { let _ = h.set(p, &[flags; 3], v - 1); }
                    4 => { h.session = 0x10 + flags as i64; }
                    _ => {
                        h.zxid += 1;
                        let t = close_session_txn(&h.tree, h.zxid, h.time, 0x10 + flags as i64, 0);
                        h.apply_txn(t);
                    }
                }
            }
            let mut t = Tree::new();
            for txn in &h.txns { apply(&mut t, txn); }
            prop_assert_eq!(t.digest(), h.tree.digest());
            let mut buf = Vec::new();
            t.write_snapshot(&mut buf).unwrap();
            let back = Tree::read_snapshot(&mut &buf[..]).unwrap();
            prop_assert_eq!(back.digest(), t.digest());
            prop_assert_eq!(back.approximate_data_size(), t.approximate_data_size());
        }
    }
}

#[test]
fn close_session_parent_stats_and_root_writes() {
    // Observed on 3.8.0: three creates under /q (two by the closing session), then
    // closeSession: /q cversion 3 → 5 (2*3 − 1 child), numChildren 1, pzxid = the
    // close's zxid. setData on / works; create / is NodeExists.
    let mut h = H::new();
    h.session = 0x500;
    h.create("/q", 0).unwrap();
    h.session = SID;
    h.create("/q/e", 1).unwrap();
    assert_eq!(h.create("/q/s", 3), created("/q/s0000000001"));
    h.session = 0x500;
    h.create("/q/p", 0).unwrap();
    let q = h.stat("/q");
    assert_eq!((q.cversion, q.num_children, q.pzxid), (3, 3, 4));
    h.session = SID;
    h.write(Request::CloseSession);
    let q = h.stat("/q");
    assert_eq!((q.cversion, q.num_children, q.pzxid), (5, 1, 5));
    let a = h.write(Request::SetAcl {
        path: "/q/p".into(),
        acl: Acl::open(),
        version: 0,
    });
    assert!(matches!(a.result, Ok(Response::Stat(s)) if s.aversion == 1 && s.mzxid == 4));
    let before = h.tree.approximate_data_size();
    let Ok(Response::Stat(s)) = h.set("/", b"r", -1) else {
        panic!()
    };
    assert_eq!((s.version, s.mzxid, s.data_length), (1, h.zxid, 1));
    assert_eq!(h.tree.approximate_data_size(), before + 1);
    assert_eq!(h.create("/", 0), Err(ErrorCode::NodeExists));
}

#[test]
fn snapshot_round_trip_of_a_wide_tree() {
    // Enough nodes for a multi-level B-tree, so the two-pass load is exercised.
    let mut h = H::new();
    for p in ["/a", "/b", "/a/deep"] {
        h.create(p, 0).unwrap();
    }
    for i in 0..1500 {
        let parent = ["/a", "/b", "/a/deep"][i % 3];
        h.create(&format!("{parent}/n"), 2).unwrap();
    }
    let mut buf = Vec::new();
    h.tree.write_snapshot(&mut buf).unwrap();
    let t = Tree::read_snapshot(&mut &buf[..]).unwrap();
    assert_eq!(t.digest(), h.tree.digest());
    assert_eq!(t.distinct_node_count(), h.tree.distinct_node_count());
    for (k, n) in h.tree.nodes.iter() {
        let p = k.to_path();
        let v = t.get(&p).unwrap();
        assert_eq!(v.stat(), n.stat(), "{p}");
    }
    assert_eq!(t.get("/a").unwrap().children().count(), 501);
    assert_eq!(t.get("/a/deep").unwrap().children().count(), 500);
    assert_eq!(
        read(
            &t,
            &h.caller(),
            &Request::GetAllChildrenNumber { path: "/a".into() }
        ),
        Ok(Response::AllChildrenNumber(1001))
    );
}

/// A delete (alone, in a multi or a session's close) replayed on a fuzzy snapshot
/// that already lacks its node still raises the parent's pzxid, as the reference's
/// `deleteNode` does before it fails; it never lowers it.
#[test]
fn a_restored_delete_of_a_node_already_gone_raises_the_parent_pzxid() {
    let mut h = H::new();
    h.create("/p", 0).unwrap();
    let at = |zxid: i64, op: TxnOp| Txn {
        session_id: SID,
        cxid: 1,
        zxid,
        time_ms: T0,
        op,
    };
    let pzxid = |h: &H| h.tree.get("/p").unwrap().stat().pzxid;
    let gone = || TxnOp::Delete {
        path: "/p/gone".into(),
    };
    let r = apply_restored(&mut h.tree, &at(10, gone()));
    assert_eq!(r.result, Err(ErrorCode::NoNode));
    assert_eq!(pzxid(&h), 10);
    let multi = TxnOp::Multi(vec![
        gone(),
        TxnOp::Check {
            path: "/p".into(),
            version: 0,
        },
    ]);
    apply_restored(&mut h.tree, &at(11, multi));
    assert_eq!(pzxid(&h), 11);
    let close = TxnOp::CloseSession {
        paths: vec!["/p/e".into()],
    };
    apply_restored(&mut h.tree, &at(12, close));
    assert_eq!(pzxid(&h), 12);
    // The strict apply (a leader's) does the same, as the reference's processTxn on
    // every server (prepare rules the case out on a leader).
    apply(&mut h.tree, &at(13, gone()));
    assert_eq!(pzxid(&h), 13);
    // A parent the fuzzy snapshot wrote after later txns keeps its higher pzxid.
    h.tree.update_node("/p", |p| p.pzxid = 100);
    apply_restored(&mut h.tree, &at(14, gone()));
    assert_eq!(pzxid(&h), 100);
}
