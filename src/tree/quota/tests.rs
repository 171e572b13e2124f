//! Quota tests: the StatsTrack text as the reference reads and writes it, the stats
//! the tree keeps as txns apply (setquota's creates, creates, deletes, setDatas,
//! multis, nested roots), enforcement in prepare, and recounting on snapshot load.

use super::super::acl::Caller;
use super::super::{apply, prepare, Tree, TxnContext};
use super::*;
use crate::proto::{Acl, CreateKind, CreateRequest, Id, OpResult, Request, Response};

/// A sequencer in miniature: prepare then apply, one zxid per request.
struct Q {
    tree: Tree,
    zxid: i64,
    enforce: bool,
    ids: Vec<Id>,
}

impl Q {
    fn new(enforce: bool) -> Q {
        Q {
            tree: Tree::new(),
            zxid: 0,
            enforce,
            ids: vec![Id::new("ip", "127.0.0.1")],
        }
    }

    fn write(&mut self, req: Request) -> Result<Response, ErrorCode> {
        self.zxid += 1;
        let ctx = TxnContext {
            zxid: self.zxid,
            time_ms: 1_700_000_000_000 + self.zxid,
            cxid: self.zxid as i32,
            extended_types_enabled: true,
            max_data_bytes: 0xfffff,
            enforce_quota: self.enforce,
            digest_enabled: true,
            ephemerals_allowed: true,
        };
        let caller = Caller {
            session_id: 0x100,
            ids: &self.ids,
            is_super: false,
        };
        let txn = prepare(&self.tree, &ctx, &caller, &req);
        apply(&mut self.tree, &txn).result
    }

    fn create(&mut self, path: &str, data: Option<&[u8]>) -> Result<Response, ErrorCode> {
        self.write(create_req(path, data))
    }

    fn set(&mut self, path: &str, data: Option<&[u8]>) -> Result<Response, ErrorCode> {
        self.write(Request::SetData {
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            version: -1,
        })
    }

    fn delete(&mut self, path: &str) -> Result<Response, ErrorCode> {
        self.write(Request::Delete {
            path: path.into(),
            version: -1,
        })
    }

    /// What zkCli `setquota` sends for a new quota on `path` (whose quota parents
    /// below /zookeeper/quota do not exist yet).
    fn setquota(&mut self, path: &str, limits: &str) {
        let mut q = QUOTA.to_string();
        for c in path.split('/').skip(1) {
            q = format!("{q}/{c}");
            self.create(&q, None).unwrap();
        }
        self.create(&format!("{q}/{LIMIT_NODE}"), Some(limits.as_bytes()))
            .unwrap();
        self.create(&format!("{q}/{STAT_NODE}"), Some(b"count=0,bytes=0"))
            .unwrap();
    }

    fn text(&self, path: &str) -> String {
        let n = self.tree.node(path).unwrap_or_else(|| panic!("{path}"));
        String::from_utf8(n.data_bytes().to_vec()).unwrap()
    }

    fn stats(&self, root: &str) -> String {
        self.text(&stat_path(root))
    }
}

fn create_req(path: &str, data: Option<&[u8]>) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        acl: Acl::open(),
        flags: 0,
        ttl: -1,
    })
}

const NO_LIMITS: &str = "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=-1";

// ----------------------------------------------------------------------- StatsTrack

#[test]
fn stats_track_reads_and_writes_as_the_reference() {
    let st =
        StatsTrack::parse(Some(b"count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=7")).unwrap();
    assert_eq!((st.count(), st.bytes()), (5, -1));
    assert_eq!((st.count_hard_limit(), st.byte_hard_limit()), (7, -1));
    assert_eq!(
        st.to_string(),
        "count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=7"
    );
    // A 3.4-style text stays as it was; absent keys read −1.
    let old = StatsTrack::parse(Some(b"count=10,bytes=-1")).unwrap();
    assert_eq!(old.to_string(), "count=10,bytes=-1");
    assert_eq!(old.count_hard_limit(), -1);
    // Empty text has no pairs, an empty value is −1, runs of , and ; are one.
    assert_eq!(
        StatsTrack::parse(Some(b"")).unwrap().to_string(),
        "count=-1,bytes=-1"
    );
    let st = StatsTrack::parse(Some(b"bytes==7,;,count=3=9")).unwrap();
    assert_eq!((st.count(), st.bytes()), (3, -1));
    // Extra keys come after the stray `=`, in Java's string order.
    let st = StatsTrack::parse(Some(b"zz=1;Zz=2;count=0;bytes=0")).unwrap();
    assert_eq!(st.to_string(), "count=0,bytes=0=;Zz=2;zz=1");
    assert_eq!(StatsTrack::usage(4, 9).to_bytes(), b"count=4,bytes=9");
}

#[test]
fn stats_track_refuses_what_the_reference_throws_on() {
    assert_eq!(StatsTrack::parse(None), Err(StatsTrackError::Null));
    // Java's split drops the trailing empty value: `count=` has no value either.
    for text in [&b"count"[..], b"count=", b"count=1,bytes="] {
        assert!(matches!(
            StatsTrack::parse(Some(text)),
            Err(StatsTrackError::NotKeyValue(_))
        ));
    }
    assert!(matches!(
        StatsTrack::parse(Some(b"count=x")),
        Err(StatsTrackError::BadNumber(_))
    ));
    assert!(matches!(
        StatsTrack::parse(Some(b"count=99999999999999999999")),
        Err(StatsTrackError::BadNumber(_))
    ));
    // Bytes that are not UTF-8 are read, not refused.
    let st = StatsTrack::parse(Some(b"count=1,\xffk=2")).unwrap();
    assert_eq!(st.get("\u{fffd}k"), 2);
}

#[test]
fn trie_keys_and_trimming_follow_the_reference() {
    assert_eq!(trie_key("/a//b/ /c").as_deref(), Some("/a/b/c"));
    assert_eq!(trie_key("x/y").as_deref(), Some("/x/y"));
    assert_eq!(trie_key("/"), None);
    assert_eq!(trim_quota_path("/zookeeper/quota/a"), Trimmed::Rest("/a"));
    assert_eq!(trim_quota_path("/zookeeper/quota"), Trimmed::Rest(""));
    assert_eq!(trim_quota_path("/zookeeper/x"), Trimmed::Throws);
    assert_eq!(trim_quota_path("/zookeeper/abcd\u{10000}"), Trimmed::NoRoot);
}

// ----------------------------------------------------------------------- stats upkeep

#[test]
fn setquota_counts_the_subtree_and_writes_follow_it() {
    let mut q = Q::new(false);
    q.create("/q", Some(b"ab")).unwrap();
    q.create("/q/a", Some(b"abc")).unwrap();
    q.create("/qq", Some(b"not counted")).unwrap();
    q.setquota("/q", "count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1");
    assert_eq!(q.tree.quota_roots().collect::<Vec<_>>(), vec!["/q"]);
    assert_eq!(q.stats("/q"), "count=2,bytes=5");
    // The rewrite stamps nothing: the stats node keeps its creation zxid and version.
    let st = q.tree.node(&stat_path("/q")).unwrap().stat();
    assert_eq!((st.mzxid, st.version), (st.czxid, 0));
    assert_eq!(st.data_length, "count=2,bytes=5".len() as i32);

    q.create("/q/b", None).unwrap();
    assert_eq!(q.stats("/q"), "count=3,bytes=5");
    q.create("/q/a/c", Some(b"1234")).unwrap();
    assert_eq!(q.stats("/q"), "count=4,bytes=9");
    q.set("/q/a", Some(b"x")).unwrap();
    assert_eq!(q.stats("/q"), "count=4,bytes=7");
    q.set("/q/a", None).unwrap();
    assert_eq!(q.stats("/q"), "count=4,bytes=6");
    q.delete("/q/a/c").unwrap();
    assert_eq!(q.stats("/q"), "count=3,bytes=2");
    q.set("/qq", Some(b"x")).unwrap();
    q.create("/qq/z", Some(b"x")).unwrap();
    assert_eq!(q.stats("/q"), "count=3,bytes=2");
    // The limits text is the client's; the tree never rewrites it.
    assert_eq!(
        q.text(&limit_path("/q")),
        "count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1"
    );
}

#[test]
fn the_deepest_root_counts_and_a_deleted_limit_stops_counting() {
    let mut q = Q::new(false);
    q.create("/a", None).unwrap();
    q.create("/a/b", None).unwrap();
    q.setquota("/a", NO_LIMITS);
    // The quota parent of /a exists now: only /a/b's own nodes are created.
    q.create("/zookeeper/quota/a/b", None).unwrap();
    q.create(
        "/zookeeper/quota/a/b/zookeeper_limits",
        Some(NO_LIMITS.as_bytes()),
    )
    .unwrap();
    q.create(
        "/zookeeper/quota/a/b/zookeeper_stats",
        Some(b"count=0,bytes=0"),
    )
    .unwrap();
    assert_eq!(q.stats("/a"), "count=2,bytes=0");
    assert_eq!(q.stats("/a/b"), "count=1,bytes=0");
    q.create("/a/b/c", Some(b"xy")).unwrap();
    q.create("/a/d", Some(b"xyz")).unwrap();
    assert_eq!(q.stats("/a/b"), "count=2,bytes=2");
    assert_eq!(q.stats("/a"), "count=3,bytes=3");
    assert_eq!(q.tree.quota_root_of("/a/b/c").as_deref(), Some("/a/b"));

    q.delete("/zookeeper/quota/a/b/zookeeper_limits").unwrap();
    assert_eq!(q.tree.quota_roots().collect::<Vec<_>>(), vec!["/a"]);
    q.create("/a/b/e", None).unwrap();
    assert_eq!(q.stats("/a"), "count=4,bytes=3");
    assert_eq!(q.stats("/a/b"), "count=2,bytes=2");
}

#[test]
fn unreadable_stats_are_left_alone() {
    let mut q = Q::new(false);
    q.create("/q", None).unwrap();
    q.setquota("/q", NO_LIMITS);
    q.set(&stat_path("/q"), Some(b"garbage")).unwrap();
    q.create("/q/a", None).unwrap();
    assert_eq!(q.stats("/q"), "garbage");
    // A text that parses is counted on from, as the reference does.
    q.set(&stat_path("/q"), Some(b"count=10,bytes=10")).unwrap();
    q.create("/q/b", Some(b"x")).unwrap();
    assert_eq!(q.stats("/q"), "count=11,bytes=11");
}

#[test]
fn multi_ops_each_update_the_stats() {
    let mut q = Q::new(false);
    q.create("/q", None).unwrap();
    q.setquota("/q", NO_LIMITS);
    let r = q
        .write(Request::Multi(vec![
            create_req("/q/a", Some(b"12")),
            create_req("/q/b", Some(b"345")),
            Request::Delete {
                path: "/q/a".into(),
                version: -1,
            },
        ]))
        .unwrap();
    assert!(matches!(r, Response::Multi(_)));
    assert_eq!(q.stats("/q"), "count=2,bytes=3");
}

#[test]
fn snapshot_load_recounts_the_stats_and_rebuilds_the_roots() {
    let mut q = Q::new(false);
    q.create("/q", Some(b"abc")).unwrap();
    q.setquota("/q", NO_LIMITS);
    q.create("/q/a", Some(b"de")).unwrap();
    q.set(&stat_path("/q"), Some(b"count=100,bytes=100"))
        .unwrap();
    let size = q.tree.approximate_data_size();
    let mut buf = Vec::new();
    q.tree.write_snapshot(&mut buf).unwrap();
    let mut t = Tree::read_snapshot(&mut &buf[..]).unwrap();
    assert_eq!(t.quota_roots().collect::<Vec<_>>(), vec!["/q"]);
    let n = t.node(&stat_path("/q")).unwrap();
    assert_eq!(n.data_bytes(), b"count=2,bytes=5");
    // As the reference: the recount leaves the approximate size as loaded.
    assert_eq!(t.approximate_data_size(), size);
    assert_eq!(t.digest(), q.tree.digest());
    t.quota_after_create("/q/b", 7);
    assert_eq!(
        t.node(&stat_path("/q")).unwrap().data_bytes(),
        b"count=3,bytes=12"
    );
}

// ----------------------------------------------------------------------- enforcement

#[test]
fn hard_limits_fail_writes_with_quota_exceeded() {
    let mut q = Q::new(true);
    q.create("/q", None).unwrap();
    q.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3");
    q.create("/q/a", Some(b"12345")).unwrap();
    q.create("/q/b", None).unwrap();
    assert_eq!(q.stats("/q"), "count=3,bytes=5");
    assert_eq!(q.create("/q/c", None), Err(ErrorCode::QuotaExceeded));
    assert_eq!(
        q.set("/q/a", Some(b"12345678901")),
        Err(ErrorCode::QuotaExceeded)
    );
    q.set("/q/a", Some(b"1234567890")).unwrap();
    // Shrinking data passes; a setData that does not change the size is not checked.
    q.set("/q/a", Some(b"1")).unwrap();
    q.delete("/q/b").unwrap();
    q.create("/q/c", None).unwrap();
    assert_eq!(q.stats("/q"), "count=3,bytes=1");
    // Outside the root nothing is checked.
    q.create("/r", None).unwrap();
    // Other errors come first (the reference checks the quota after them).
    assert_eq!(q.create("/q/c", None), Err(ErrorCode::NodeExists));
    assert_eq!(q.create("/q/x/y", None), Err(ErrorCode::NoNode));
}

#[test]
fn soft_limits_only_log_and_enforcement_off_checks_nothing() {
    let mut q = Q::new(true);
    q.create("/q", None).unwrap();
    q.setquota("/q", "count=1,bytes=1=;byteHardLimit=-1;countHardLimit=-1");
    q.create("/q/a", Some(b"1234")).unwrap();
    assert_eq!(q.stats("/q"), "count=2,bytes=4");

    let mut q = Q::new(false);
    q.create("/q", None).unwrap();
    q.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=0;countHardLimit=1");
    q.create("/q/a", Some(b"1234")).unwrap();
    assert_eq!(q.stats("/q"), "count=2,bytes=4");
}

#[test]
fn a_multi_is_checked_against_the_tree_before_it() {
    let mut q = Q::new(true);
    q.create("/q", None).unwrap();
    q.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2");
    // Each create alone fits (count 1 + 1 ≤ 2), as the reference checks each op
    // against its committed tree.
    q.write(Request::Multi(vec![
        create_req("/q/a", None),
        create_req("/q/b", None),
    ]))
    .unwrap();
    assert_eq!(q.stats("/q"), "count=3,bytes=0");
    match q.write(Request::Multi(vec![
        create_req("/r", None),
        create_req("/q/c", None),
    ])) {
        Ok(Response::Multi(rs)) => assert_eq!(
            rs,
            vec![
                OpResult::Err(ErrorCode::Ok),
                OpResult::Err(ErrorCode::QuotaExceeded)
            ]
        ),
        r => panic!("{r:?}"),
    }
    assert!(q.tree.node("/r").is_none());
}

#[test]
fn unreadable_limits_fail_as_the_reference_prepare_does() {
    let mut q = Q::new(true);
    q.create("/q", None).unwrap();
    q.setquota("/q", "count=1");
    q.set(&limit_path("/q"), Some(b"count=x")).unwrap();
    assert_eq!(q.create("/q/a", None), Err(ErrorCode::MarshallingError));
}

#[test]
fn a_zookeeper_snapshot_stream_recounts_too() {
    use super::super::zksnap::{ZkSnapDecoder, ZkSnapEncoder, ZkSnapKind};
    let mut q = Q::new(false);
    q.create("/q", Some(b"abc")).unwrap();
    q.setquota("/q", NO_LIMITS);
    q.create("/q/a", Some(b"de")).unwrap();
    q.set(&stat_path("/q"), Some(b"count=100,bytes=100"))
        .unwrap();
    // As a SNAP sync from a leader and as a snapshot file's body.
    for kind in [ZkSnapKind::Snap, ZkSnapKind::FileBody] {
        let mut enc = ZkSnapEncoder::new(std::sync::Arc::new(q.tree.clone()), vec![], kind, 4096);
        let mut stream = Vec::new();
        while enc.next_chunk(&mut stream) {}
        let mut dec = ZkSnapDecoder::new(kind, q.tree.last_zxid());
        assert_eq!(dec.feed(&stream).unwrap(), stream.len());
        let (t, _) = dec.finish().unwrap();
        assert_eq!(t.quota_roots().collect::<Vec<_>>(), vec!["/q"], "{kind:?}");
        let n = t.node(&stat_path("/q")).unwrap();
        assert_eq!(n.data_bytes(), b"count=2,bytes=5", "{kind:?}");
    }
}
