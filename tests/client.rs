//! A real third-party client against a real server: the `zookeeper-client`
//! crate (0.11) drives every operation over loopback — all create modes,
//! versions, ACLs and digest auth, multi and multiRead shapes, one-shot,
//! persistent and recursive watches, watch removal, session close, reconnect to
//! the same session through a cut connection (setWatches), session expiry — and
//! raw wire clients cover what the crate does not expose (ping, checkWatches,
//! setWatches on a fresh connection, reconnect with a wrong password,
//! deleteContainer, a failed auth).
//!
//! Runs on the test thread: one server (or ensemble) per test function, one
//! tokio runtime driving the crate, cases run one after another by
//! `common::Suite`, each under its own path prefix. The same case bodies run
//! against the reference server (which proves the expectations are the
//! reference's) and against corral, each standalone and as a 3-member ensemble
//! (`common::ensemble`). A case gets a [`Target`]: the crate's clients get its
//! connect string, the n-th raw client of a case its n-th member in turn. An
//! ensemble runs the suite twice: every client on one follower, and every
//! member in the connect string (crate clients land on random members, raw
//! clients of one case on different ones). Where a session reads another
//! session's write it first `sync`s ([`catch_up`]), as ZooKeeper promises
//! that read only on the same server or after a sync; standalone, that is
//! one more round trip. An ensemble adds two cases of its own: a session
//! moved between members keeps its ephemerals and watches, and `sync` through
//! one member catches it up with writes made through another.

mod common;

use std::future::Future;
use std::time::Duration;

use common::ensemble::{self, Ensemble, Mode, Role, TREE_DIFFS_SHOWN_MAX};
use common::{Decoded, Kind, Proxy, RawClient, Server, Suite};
use corral::proto::{ConnectRequest, Request, Response, SetWatches};
use zk::{Acl, Acls, AuthId, CreateMode, EventType, Permission, SessionState};
use zookeeper_client as zk;

/// Bound on any one case.
const CASE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on waiting for one watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The super user's `user:password` (its digest is in [`cfg_extra`]).
const SUPER_DIGEST: &str = "super:superpw";

/// TTL nodes need the extended types; `super:superpw` is the super user. The
/// super digest is spelled as zoo.cfg takes it (the reference makes it the
/// `zookeeper.DigestAuthenticationProvider.superDigest` property), so the same
/// lines serve a standalone server and an ensemble member.
fn cfg_extra() -> String {
    format!(
        "extendedTypesEnabled=true\nDigestAuthenticationProvider.superDigest={}\n",
        common::digest_id("super", "superpw")
    )
}

/// Where one run's clients connect: a standalone server, one member of an
/// ensemble, or every member of one.
#[derive(Clone, Debug)]
struct Target {
    /// `127.0.0.1:port` of each member this run uses.
    members: Vec<String>,
}

impl Target {
    /// Every client on this one server.
    fn one(addr: String) -> Target {
        Target {
            members: vec![addr],
        }
    }

    /// Clients spread over these members.
    fn every(members: Vec<String>) -> Target {
        assert!(!members.is_empty(), "a target needs a member");
        Target { members }
    }

    /// What the crate's clients are given: every member, comma-separated (the
    /// crate picks one at random and moves to another on a connection loss).
    fn connect_string(&self) -> String {
        self.members.join(",")
    }

    /// Where a case's `i`-th raw client connects: the members in turn.
    fn raw(&self, i: usize) -> &str {
        &self.members[i % self.members.len()]
    }
}

/// One [`Proxy`] in front of each member of a target, so a case can cut or
/// refuse a crate client's connections wherever it is connected.
struct Proxies(Vec<Proxy>);

impl Proxies {
    fn new(t: &Target) -> Proxies {
        Proxies(t.members.iter().map(|m| Proxy::new(m)).collect())
    }

    /// The proxies' addresses as a connect string.
    fn connect_string(&self) -> String {
        let addrs: Vec<String> = self.0.iter().map(Proxy::addr).collect();
        addrs.join(",")
    }

    fn cut(&self) {
        self.0.iter().for_each(Proxy::cut);
    }

    fn set_blocked(&self, blocked: bool) {
        self.0.iter().for_each(|p| p.set_blocked(blocked));
    }
}

async fn connect(t: &Target) -> zk::Client {
    connect_to(&t.connect_string()).await
}

/// Bound on [`wait_gone`]'s polls, GONE_POLL_MS apart: past a 10 s session
/// timeout, should a close not get through and the session expire instead.
const GONE_POLLS_MAX: u32 = 300;
const GONE_POLL_MS: u64 = 50;

async fn connect_to(cluster: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(cluster)
        .await
        .unwrap_or_else(|e| panic!("connect to {cluster}: {e}"))
}

/// Before `c` reads what another session wrote: in an ensemble the two may be
/// on different members, and ZooKeeper promises such a read sees the write
/// only after a `sync` (on one server it does anyway; there this is one more
/// round trip).
async fn catch_up(c: &zk::Client, path: &str) {
    c.sync(path)
        .await
        .unwrap_or_else(|e| panic!("sync {path}: {e}"));
}

/// [`catch_up`] for a raw client.
fn raw_catch_up(c: &mut RawClient) {
    let r = c.call(&Request::Sync { path: "/".into() }).unwrap();
    assert_eq!(r.err, 0, "sync");
}

fn opts(mode: CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

async fn event<F: Future<Output = zk::WatchedEvent>>(f: F, what: &str) -> zk::WatchedEvent {
    tokio::time::timeout(EVENT_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("no watch event within {EVENT_TIMEOUT:?}: {what}"))
}

async fn mkroot(c: &zk::Client, root: &str) {
    c.create(root, b"", &opts(CreateMode::Persistent))
        .await
        .unwrap_or_else(|e| panic!("create {root}: {e}"));
}

/// The next node event of a persistent watcher; session state events
/// (Disconnected, SyncConnected) are delivered to it too and skipped here.
async fn node_event(w: &mut zk::PersistentWatcher, what: &str) -> zk::WatchedEvent {
    loop {
        let ev = event(w.changed(), what).await;
        if ev.event_type != EventType::Session {
            return ev;
        }
    }
}

// ---------------------------------------------------------------- operations

async fn create_modes(t: Target) {
    let c = connect(&t).await;
    let r = "/create_modes";
    mkroot(&c, r).await;
    let sid = c.session_id().0;

    let (st, seq) = c
        .create(&format!("{r}/p"), b"d", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(st.version, 0);
    assert_eq!(st.data_length, 1);
    assert_eq!(st.czxid, st.mzxid);
    assert_eq!(st.czxid, st.pzxid);
    assert_eq!(seq.into_i64(), -1);

    let (st, _) = c
        .create(&format!("{r}/e"), b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, sid, "ephemeralOwner of an ephemeral");

    let (_, s1) = c
        .create(
            &format!("{r}/ps-"),
            b"",
            &opts(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    let (st, s2) = c
        .create(
            &format!("{r}/es-"),
            b"",
            &opts(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, sid);
    // The parent's counter advances with every create under it.
    assert_eq!(s1.to_string(), "0000000002");
    assert_eq!(s2.to_string(), "0000000003");

    let (st, _) = c
        .create(&format!("{r}/ctr"), b"", &opts(CreateMode::Container))
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, 0, "clients see 0 for containers");

    let (st, _) = c
        .create(
            &format!("{r}/ttl"),
            b"",
            &opts(CreateMode::Persistent).with_ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, 0, "clients see 0 for TTL nodes");
    let (_, s3) = c
        .create(
            &format!("{r}/ttls-"),
            b"",
            &opts(CreateMode::PersistentSequential).with_ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert_eq!(s3.to_string(), "0000000006");

    let mut kids = c.list_children(r).await.unwrap();
    kids.sort();
    assert_eq!(
        kids,
        vec![
            "ctr",
            "e",
            "es-0000000003",
            "p",
            "ps-0000000002",
            "ttl",
            "ttls-0000000006"
        ]
    );

    // Creating an existing node, under a missing parent, under an ephemeral.
    assert_eq!(
        c.create(&format!("{r}/p"), b"", &opts(CreateMode::Persistent))
            .await
            .unwrap_err(),
        zk::Error::NodeExists
    );
    assert_eq!(
        c.create(&format!("{r}/none/x"), b"", &opts(CreateMode::Persistent))
            .await
            .unwrap_err(),
        zk::Error::NoNode
    );
    assert_eq!(
        c.create(&format!("{r}/e/x"), b"", &opts(CreateMode::Persistent))
            .await
            .unwrap_err(),
        zk::Error::NoChildrenForEphemerals
    );
    // Ephemerals of this session, and the descendant count.
    let mut eph = c.list_ephemerals(r).await.unwrap();
    eph.sort();
    assert_eq!(eph, vec![format!("{r}/e"), format!("{r}/es-0000000003")]);
    assert_eq!(c.count_descendants_number(r).await.unwrap(), 7);
}

async fn data_and_versions(t: Target) {
    let c = connect(&t).await;
    let r = "/data_and_versions";
    mkroot(&c, r).await;
    let p = format!("{r}/n");
    let (created, _) = c
        .create(&p, b"one", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let (data, st) = c.get_data(&p).await.unwrap();
    assert_eq!(data, b"one");
    assert_eq!(st, created);

    let st1 = c.set_data(&p, b"two!", Some(0)).await.unwrap();
    assert_eq!(st1.version, 1);
    assert_eq!(st1.data_length, 4);
    assert!(st1.mzxid > st1.czxid);
    assert!(st1.mtime >= st1.ctime);
    assert_eq!(
        c.set_data(&p, b"x", Some(0)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    let st2 = c.set_data(&p, b"", None).await.unwrap();
    assert_eq!(st2.version, 2);
    assert_eq!(st2.data_length, 0);
    assert_eq!(c.check_stat(&p).await.unwrap(), Some(st2));
    assert_eq!(c.check_stat(&format!("{r}/none")).await.unwrap(), None);
    assert_eq!(
        c.get_data(&format!("{r}/none")).await.unwrap_err(),
        zk::Error::NoNode
    );
    assert_eq!(
        c.set_data(&format!("{r}/none"), b"", None)
            .await
            .unwrap_err(),
        zk::Error::NoNode
    );

    // Children stats: cversion and numChildren, pzxid.
    c.create(&format!("{p}/k"), b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let (kids, pst) = c.get_children(&p).await.unwrap();
    assert_eq!(kids, vec!["k"]);
    assert_eq!(pst.num_children, 1);
    assert_eq!(pst.cversion, 1);
    assert!(pst.pzxid > st2.mzxid);

    assert_eq!(c.delete(&p, None).await.unwrap_err(), zk::Error::NotEmpty);
    assert_eq!(
        c.delete(&format!("{p}/k"), Some(3)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    c.delete(&format!("{p}/k"), Some(0)).await.unwrap();
    let (_, pst) = c.get_children(&p).await.unwrap();
    assert_eq!(pst.cversion, 2, "a delete advances the parent's cversion");
    c.delete(&p, Some(2)).await.unwrap();
    assert_eq!(c.delete(&p, None).await.unwrap_err(), zk::Error::NoNode);
    c.sync(r).await.unwrap();
}

async fn acls_and_auth(t: Target) {
    let owner = connect(&t).await;
    let other = connect(&t).await;
    let r = "/acls_and_auth";
    mkroot(&owner, r).await;

    owner.auth("digest", b"alice:secret").await.unwrap();
    let users = owner.list_auth_users().await.unwrap();
    assert!(
        users
            .iter()
            .any(|u| u.scheme() == "digest" && u.user() == "alice"),
        "whoAmI after digest auth: {users:?}"
    );
    assert!(
        users.iter().any(|u| u.scheme() == "ip"),
        "whoAmI: {users:?}"
    );

    // creator_all: the node belongs to the authenticated digest identity.
    let p = format!("{r}/mine");
    owner
        .create(
            &p,
            b"s",
            &CreateMode::Persistent.with_acls(Acls::creator_all()),
        )
        .await
        .unwrap();
    let (acl, st) = owner.get_acl(&p).await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");
    assert_eq!(acl[0].id(), common::digest_id("alice", "secret"));
    assert_eq!(acl[0].permission(), Permission::ALL);
    assert_eq!(st.aversion, 0);
    catch_up(&other, &p).await;
    assert_eq!(other.get_data(&p).await.unwrap_err(), zk::Error::NoAuth);
    assert_eq!(
        other.set_data(&p, b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    // getACL needs READ or ADMIN.
    assert_eq!(other.get_acl(&p).await.unwrap_err(), zk::Error::NoAuth);

    // creator_all without any authenticated identity is an invalid ACL.
    assert_eq!(
        other
            .create(
                &format!("{r}/x"),
                b"",
                &CreateMode::Persistent.with_acls(Acls::creator_all())
            )
            .await
            .unwrap_err(),
        zk::Error::InvalidAcl
    );

    // setACL with versions; a read-only ACL for everyone.
    let read_only = [Acl::new(Permission::READ, AuthId::anyone())];
    assert_eq!(
        owner.set_acl(&p, &read_only, Some(5)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    let st = owner.set_acl(&p, &read_only, Some(0)).await.unwrap();
    assert_eq!(st.aversion, 1);
    catch_up(&other, &p).await;
    assert_eq!(other.get_data(&p).await.unwrap().0, b"s");
    assert_eq!(
        other.set_data(&p, b"x", None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    assert_eq!(
        other.set_acl(&p, &read_only, None).await.unwrap_err(),
        zk::Error::NoAuth
    );
    // No CREATE permission for anyone now.
    assert_eq!(
        owner
            .create(&format!("{p}/c"), b"", &opts(CreateMode::Persistent))
            .await
            .unwrap_err(),
        zk::Error::NoAuth
    );

    // The second client authenticates as alice and gets in.
    let q = format!("{r}/alice-only");
    let alice = [Acl::new(
        Permission::ALL,
        AuthId::new("digest", &common::digest_id("alice", "secret")),
    )];
    owner
        .create(
            &q,
            b"a",
            &CreateMode::Persistent.with_acls(Acls::new(&alice)),
        )
        .await
        .unwrap();
    catch_up(&other, &q).await;
    assert_eq!(other.get_data(&q).await.unwrap_err(), zk::Error::NoAuth);
    other.auth("digest", b"alice:wrong").await.unwrap();
    assert_eq!(other.get_data(&q).await.unwrap_err(), zk::Error::NoAuth);
    other.auth("digest", b"alice:secret").await.unwrap();
    assert_eq!(other.get_data(&q).await.unwrap().0, b"a");
    other.delete(&q, None).await.unwrap();
}

async fn super_digest(t: Target) {
    let owner = connect(&t).await;
    let admin = connect(&t).await;
    let r = "/super_digest";
    mkroot(&owner, r).await;
    owner.auth("digest", b"bob:pw").await.unwrap();
    let p = format!("{r}/locked");
    owner
        .create(
            &p,
            b"x",
            &CreateMode::Persistent.with_acls(Acls::creator_all()),
        )
        .await
        .unwrap();
    catch_up(&admin, &p).await;
    assert_eq!(admin.get_data(&p).await.unwrap_err(), zk::Error::NoAuth);
    admin.auth("digest", b"super:superpw").await.unwrap();
    assert_eq!(admin.get_data(&p).await.unwrap().0, b"x");
    admin.set_data(&p, b"y", None).await.unwrap();
    let (acl, _) = admin.get_acl(&p).await.unwrap();
    assert_eq!(acl[0].id(), common::digest_id("bob", "pw"));
    admin
        .set_acl(&p, &[Acl::new(Permission::READ, AuthId::anyone())], None)
        .await
        .unwrap();
    admin.delete(&p, None).await.unwrap();
}

async fn multi_shapes(t: Target) {
    let c = connect(&t).await;
    let r = "/multi_shapes";
    mkroot(&c, r).await;
    let a = format!("{r}/a");

    let mut w = c.new_multi_writer();
    w.add_create(&a, b"1", &opts(CreateMode::Persistent))
        .unwrap();
    w.add_set_data(&a, b"2", Some(0)).unwrap();
    w.add_check_version(&a, 1).unwrap();
    w.add_create(
        &format!("{r}/s-"),
        b"",
        &opts(CreateMode::PersistentSequential),
    )
    .unwrap();
    w.add_delete(&format!("{r}/s-0000000001"), Some(0)).unwrap();
    let res = w.commit().await.unwrap();
    assert_eq!(res.len(), 5);
    match &res[0] {
        zk::MultiWriteResult::Create { path, stat } => {
            assert_eq!(path, &a);
            // ZooKeeper 3.8 answers a create2 inside multi with a create result
            // (path only), which the crate shows as an invalid Stat.
            assert!(stat.is_invalid(), "create2 result inside multi: {stat:?}");
        }
        other => panic!("multi result 0: {other:?}"),
    }
    match &res[1] {
        zk::MultiWriteResult::SetData { stat } => assert_eq!(stat.version, 1),
        other => panic!("multi result 1: {other:?}"),
    }
    assert_eq!(res[2], zk::MultiWriteResult::Check);
    match &res[3] {
        zk::MultiWriteResult::Create { path, .. } => {
            assert_eq!(path, &format!("{r}/s-0000000001"))
        }
        other => panic!("multi result 3: {other:?}"),
    }
    assert_eq!(res[4], zk::MultiWriteResult::Delete);
    // All ops of the multi share one zxid.
    let (_, st) = c.get_data(&a).await.unwrap();
    assert_eq!(st.czxid, st.mzxid);

    // A failing op: nothing is applied, the error names the op's index.
    let mut w = c.new_multi_writer();
    w.add_create(&format!("{r}/b"), b"", &opts(CreateMode::Persistent))
        .unwrap();
    w.add_check_version(&a, 7).unwrap();
    w.add_set_data(&a, b"3", None).unwrap();
    match w.commit().await {
        Err(zk::MultiWriteError::OperationFailed { index, source }) => {
            assert_eq!(index, 1);
            assert_eq!(source, zk::Error::BadVersion);
        }
        other => panic!("failing multi: {other:?}"),
    }
    assert_eq!(c.check_stat(&format!("{r}/b")).await.unwrap(), None);
    assert_eq!(c.get_data(&a).await.unwrap().1.version, 1);

    // A check writer.
    let mut cw = c.new_check_writer(&a, Some(1)).unwrap();
    cw.add_set_data(&a, b"4", Some(1)).unwrap();
    let res = cw.commit().await.unwrap();
    assert_eq!(res.len(), 1);
    let mut cw = c.new_check_writer(&a, Some(1)).unwrap();
    cw.add_set_data(&a, b"5", None).unwrap();
    assert!(matches!(
        cw.commit().await,
        Err(zk::CheckWriteError::CheckFailed {
            source: zk::Error::BadVersion
        })
    ));

    // multiRead: per-op results, errors in place.
    let mut rd = c.new_multi_reader();
    rd.add_get_data(&a).unwrap();
    rd.add_get_children(r).unwrap();
    rd.add_get_data(&format!("{r}/none")).unwrap();
    let res = rd.commit().await.unwrap();
    assert_eq!(res.len(), 3);
    match &res[0] {
        zk::MultiReadResult::Data { data, stat } => {
            assert_eq!(data, b"4");
            assert_eq!(stat.version, 2);
        }
        other => panic!("multiRead 0: {other:?}"),
    }
    match &res[1] {
        zk::MultiReadResult::Children { children } => assert_eq!(children, &vec!["a"]),
        other => panic!("multiRead 1: {other:?}"),
    }
    match &res[2] {
        zk::MultiReadResult::Error { err } => assert_eq!(err, &zk::Error::NoNode),
        other => panic!("multiRead 2: {other:?}"),
    }
}

// ---------------------------------------------------------------- watches

async fn oneshot_watches(t: Target) {
    let c = connect(&t).await;
    let w = connect(&t).await;
    let r = "/oneshot_watches";
    mkroot(&c, r).await;
    catch_up(&w, r).await;
    let p = format!("{r}/n");

    // exists on a missing node, then create: NodeCreated.
    let (st, exists_w) = w.check_and_watch_stat(&p).await.unwrap();
    assert_eq!(st, None);
    let (_, child_w) = w.list_and_watch_children(r).await.unwrap();
    c.create(&p, b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let ev = event(exists_w.changed(), "exists watch").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, p.as_str())
    );
    let ev = event(child_w.changed(), "child watch").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, r)
    );

    // getData watch, setData: NodeDataChanged.
    let (_, _, data_w) = w.get_and_watch_data(&p).await.unwrap();
    c.set_data(&p, b"x", None).await.unwrap();
    let ev = event(data_w.changed(), "data watch").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, p.as_str())
    );

    // getChildren2 watch + data watch, then delete: NodeDeleted for both kinds.
    let (_, _, data_w) = w.get_and_watch_data(&p).await.unwrap();
    let (_, _, kids_w) = w.get_and_watch_children(&p).await.unwrap();
    c.delete(&p, None).await.unwrap();
    let ev = event(data_w.changed(), "data watch on delete").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, p.as_str())
    );
    let ev = event(kids_w.changed(), "child watch on delete").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, p.as_str())
    );

    // A one-shot watch fires once: a second change after re-arming only.
    let (_, exists_w) = w.check_and_watch_stat(&p).await.unwrap();
    c.create(&p, b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    c.set_data(&p, b"y", None).await.unwrap();
    let ev = event(exists_w.changed(), "exists watch 2").await;
    assert_eq!(ev.event_type, EventType::NodeCreated);

    // Removing a one-shot watch (removeWatches) succeeds. (w's member first applies
    // c's setData: else that commit may fire the new watch before it is removed.)
    catch_up(&w, &p).await;
    let (_, _, data_w) = w.get_and_watch_data(&p).await.unwrap();
    #[allow(deprecated)]
    data_w.remove().await.unwrap();
}

async fn persistent_watches(t: Target) {
    let c = connect(&t).await;
    let w = connect(&t).await;
    let r = "/persistent_watches";
    mkroot(&c, r).await;
    // Else w's member may apply r's create after the recursive watch on r is
    // set, and that watch fires NodeCreated for r itself.
    catch_up(&w, r).await;
    let p = format!("{r}/n");

    let mut pw = w.watch(&p, zk::AddWatchMode::Persistent).await.unwrap();
    let mut rw = w
        .watch(r, zk::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();

    c.create(&p, b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    c.set_data(&p, b"1", None).await.unwrap();
    c.set_data(&p, b"2", None).await.unwrap();
    c.create(&format!("{p}/k"), b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    c.set_data(&format!("{p}/k"), b"k", None).await.unwrap();
    c.delete(&format!("{p}/k"), None).await.unwrap();
    c.delete(&p, None).await.unwrap();

    let mut got = Vec::new();
    for _ in 0..6 {
        let ev = event(pw.changed(), "persistent watch").await;
        got.push((ev.event_type, ev.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeCreated, p.clone()),
            (EventType::NodeDataChanged, p.clone()),
            (EventType::NodeDataChanged, p.clone()),
            (EventType::NodeChildrenChanged, p.clone()),
            (EventType::NodeChildrenChanged, p.clone()),
            (EventType::NodeDeleted, p.clone()),
        ],
        "persistent watch on {p}"
    );

    // Recursive: every node below, and never NodeChildrenChanged.
    let k = format!("{p}/k");
    let mut got = Vec::new();
    for _ in 0..7 {
        let ev = event(rw.changed(), "recursive watch").await;
        got.push((ev.event_type, ev.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeCreated, p.clone()),
            (EventType::NodeDataChanged, p.clone()),
            (EventType::NodeDataChanged, p.clone()),
            (EventType::NodeCreated, k.clone()),
            (EventType::NodeDataChanged, k.clone()),
            (EventType::NodeDeleted, k.clone()),
            (EventType::NodeDeleted, p.clone()),
        ],
        "recursive watch on {r}"
    );
    // The persistent watch survives the delete: a re-create fires it again.
    c.create(&p, b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let ev = event(pw.changed(), "persistent watch after re-create").await;
    assert_eq!(ev.event_type, EventType::NodeCreated);
}

async fn close_session_deletes_ephemerals(t: Target) {
    let owner = connect(&t).await;
    let w = connect(&t).await;
    let r = "/close_session";
    mkroot(&w, r).await;
    let p = format!("{r}/e");
    owner
        .create(&p, b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    catch_up(&w, &p).await;
    let (_, _, data_w) = w.get_and_watch_data(&p).await.unwrap();
    let (_, kids_w) = w.list_and_watch_children(r).await.unwrap();
    drop(owner); // closeSession
    let ev = event(data_w.changed(), "ephemeral deleted on close").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, p.as_str())
    );
    let ev = event(kids_w.changed(), "parent's child watch on close").await;
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
    assert_eq!(w.check_stat(&p).await.unwrap(), None);
}

// ------------------------------------------------------- sessions, reconnect

async fn reconnect_same_session(t: Target) {
    let proxies = Proxies::new(&t);
    let a = connect_to(&proxies.connect_string()).await;
    let b = connect(&t).await;
    let r = "/reconnect_same_session";
    mkroot(&b, r).await;
    let p = format!("{r}/n");
    b.create(&p, b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let e = format!("{r}/e");
    a.create(&e, b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    let sid = a.session_id();
    catch_up(&a, &p).await;
    let (_, _, data_w) = a.get_and_watch_data(&p).await.unwrap();
    let (_, exists_w) = a.check_and_watch_stat(&format!("{r}/later")).await.unwrap();
    let mut pw = a
        .watch(r, zk::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let mut states = a.state_watcher();

    proxies.cut();
    // The client notices, reconnects through a proxy (in front of any member)
    // to the same session and re-registers its watches (setWatches/setWatches2).
    let st = tokio::time::timeout(EVENT_TIMEOUT, states.changed())
        .await
        .expect("state change");
    assert_eq!(st, SessionState::Disconnected);
    let st = tokio::time::timeout(EVENT_TIMEOUT, states.changed())
        .await
        .expect("state change");
    assert_eq!(st, SessionState::SyncConnected);
    assert_eq!(a.session_id(), sid);

    b.set_data(&p, b"x", None).await.unwrap();
    let ev = event(data_w.changed(), "data watch after reconnect").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, p.as_str())
    );
    b.create(&format!("{r}/later"), b"", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let ev = event(exists_w.changed(), "exists watch after reconnect").await;
    assert_eq!(ev.event_type, EventType::NodeCreated);
    let ev = node_event(&mut pw, "recursive watch after reconnect").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, p.as_str())
    );
    // The ephemeral survived: same session.
    let st = b
        .check_stat(&e)
        .await
        .unwrap()
        .expect("ephemeral survives a reconnect");
    assert_eq!(st.ephemeral_owner, sid.0);
    // The session closes through its proxy before the proxies go: every handle on
    // it dropped, its CloseSession goes out from the client's task. Cut first, the
    // session would expire 10 s later instead, in the middle of a later case (the
    // members' trees then differed by this ephemeral while they were compared).
    drop(pw);
    drop(states);
    drop(a);
    wait_gone(&b, &e).await;
    drop(proxies);
}

/// Polls (bounded, through syncs) until `path` is gone as `c` sees it.
async fn wait_gone(c: &zk::Client, path: &str) {
    for _ in 0..GONE_POLLS_MAX {
        catch_up(c, path).await;
        if c.check_stat(path).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(GONE_POLL_MS)).await;
    }
    panic!("{path} still exists after {GONE_POLLS_MAX} polls");
}

async fn session_expiry(t: Target) {
    let proxies = Proxies::new(&t);
    let a = zk::Client::connector()
        .with_session_timeout(Duration::from_millis(2000))
        .connect(&proxies.connect_string())
        .await
        .unwrap();
    let b = connect(&t).await;
    let r = "/session_expiry";
    mkroot(&b, r).await;
    let e = format!("{r}/e");
    a.create(&e, b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    catch_up(&b, &e).await;
    let (_, _, w) = b.get_and_watch_data(&e).await.unwrap();
    let mut states = a.state_watcher();

    // The client can no longer reach the server: the session expires there.
    proxies.set_blocked(true);
    proxies.cut();
    let ev = event(w.changed(), "ephemeral of the expired session deleted").await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, e.as_str())
    );
    proxies.set_blocked(false);
    // When it gets through again the server tells it the session expired.
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let st = tokio::time::timeout_at(deadline, states.changed())
            .await
            .expect("client never saw its session expire");
        if st == SessionState::Expired {
            break;
        }
    }
    assert_eq!(a.get_data(r).await.unwrap_err(), zk::Error::SessionExpired);
}

// ---------------------------------------------------------- raw wire cases

/// Session timeout in [`raw_requests_keep_a_session_alive`], and how long and how
/// often that session sends a request (never a ping): 2.5 times its timeout, a
/// request every thirteenth of it.
const BUSY_SESSION_TIMEOUT_MS: i32 = 2_000;
const BUSY_SESSION_REQUESTS_COUNT: u32 = 34;
const BUSY_SESSION_PAUSE_MS: u64 = 150;

/// Requests alone keep a session alive, as pings do: a session that sends only
/// exists, for more than twice its timeout, is still there (its connection open,
/// its ephemeral in place) at the end.
fn raw_requests_keep_a_session_alive(t: &Target) {
    let path = "/raw_busy_session";
    let mut c = RawClient::connect(t.raw(0), BUSY_SESSION_TIMEOUT_MS);
    assert_eq!(
        c.timeout_ms, BUSY_SESSION_TIMEOUT_MS,
        "the timeout asked for"
    );
    let create = ensemble::create_req(path, b"", corral::proto::CreateMode::Ephemeral);
    raw_ok(&mut c, &create, "create");
    let exists = Request::Exists {
        path: path.into(),
        watch: false,
    };
    for i in 0..BUSY_SESSION_REQUESTS_COUNT {
        std::thread::sleep(Duration::from_millis(BUSY_SESSION_PAUSE_MS));
        match c.call(&exists) {
            Ok(r) => assert_eq!(r.err, 0, "exists #{i}: the session's ephemeral is there"),
            Err(e) => panic!("exists #{i}: the connection ended ({e:?})"),
        }
    }
    let _ = c.close_session();
}

fn raw_session_expiry_and_reconnect(t: &Target) {
    // Both sessions on one member: a session reads another's acknowledged write
    // without a sync only there. The session goes on living on that member.
    let addr = t.raw(0);
    let mut a = RawClient::connect(addr, 1000);
    assert_eq!(a.timeout_ms, 1000, "timeout clamped to minSessionTimeout");
    let mut b = RawClient::connect(addr, 20_000);
    let create = |path: &str, flags| {
        Request::Create(corral::proto::CreateRequest {
            kind: corral::proto::CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl: corral::proto::Acl::open(),
            flags,
            ttl: -1,
        })
    };
    assert_eq!(
        b.call(&create("/raw_expiry", 0)).unwrap().err,
        0,
        "create /raw_expiry"
    );
    // A write acknowledged to one session is seen by the next write of another.
    assert_eq!(
        a.call(&create("/raw_expiry/e", 1)).unwrap().err,
        0,
        "create /raw_expiry/e by another session right after its parent"
    );
    let r = b
        .call(&Request::Exists {
            path: "/raw_expiry/e".into(),
            watch: true,
        })
        .unwrap();
    assert_eq!(
        r.err, 0,
        "exists by one session right after another session's create was acknowledged"
    );

    // Reconnect to the live session on a new connection, right password: same session.
    let mut req = ConnectRequest {
        last_zxid_seen: a.last_zxid,
        session_id: a.session_id,
        passwd: a.passwd.clone(),
        ..ConnectRequest::new_session(1000)
    };
    let (mut a2, resp) = RawClient::handshake(addr, &req).unwrap();
    assert_eq!(
        resp.session_id, a.session_id,
        "reconnect with the right password"
    );
    assert_eq!(resp.passwd, a.passwd);
    assert_eq!(a2.call(&Request::Ping).unwrap().err, 0);
    // The old connection of that session is closed by the server.
    assert!(
        a.wait_closed(Duration::from_secs(5)).is_ok(),
        "the session's old connection stays open after a reconnect"
    );

    // Wrong password (on the next member, if any): the expired answer (timeout
    // 0, session 0, zero password).
    req.passwd = vec![1; 16];
    let resp = connect_answer(t.raw(1), &req, "wrong password");
    assert_eq!(resp.session_id, 0, "wrong password: {resp:?}");
    assert_eq!(resp.timeout_ms, 0, "wrong password: {resp:?}");

    // Stop pinging a2: the session expires, its ephemeral goes, b is told.
    let ev = b
        .wait_event(Duration::from_secs(8))
        .expect("no NodeDeleted for the ephemeral of an expired session");
    assert_eq!((ev.event_type, ev.path.as_str()), (2, "/raw_expiry/e"));
    assert!(
        a2.wait_closed(Duration::from_secs(5)).is_ok(),
        "expired session's connection stays open"
    );
    // Reconnecting to the expired session (on a third member, if any): the
    // expired answer.
    req.passwd = a.passwd.clone();
    let resp = connect_answer(t.raw(2), &req, "expired session");
    assert_eq!(
        (resp.session_id, resp.timeout_ms),
        (0, 0),
        "expired session: {resp:?}"
    );
    let _ = b.close_session();
}

/// Attempts [`connect_answer`] makes.
const CONNECT_ANSWER_ATTEMPTS_MAX: u32 = 20;

/// The ConnectResponse `addr` gives `req` (bounded retries): a server closes a
/// reconnect without answering while it is behind the client's last zxid (a
/// member not caught up yet), and the reference may when the reconnect races
/// with the session's final close.
fn connect_answer(addr: &str, req: &ConnectRequest, what: &str) -> corral::proto::ConnectResponse {
    let mut last = String::new();
    for _ in 0..CONNECT_ANSWER_ATTEMPTS_MAX {
        match RawClient::handshake(addr, req) {
            Ok((_, resp)) => return resp,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: no ConnectResponse from {addr}: {last}")
}

/// Each handshake shape against every member of the target (a leader and a
/// follower answer a new session on different paths).
fn raw_handshake_shapes(t: &Target) {
    for addr in &t.members {
        raw_handshake_shapes_at(addr);
    }
}

fn raw_handshake_shapes_at(addr: &str) {
    let mut req = ConnectRequest::new_session(100_000);
    // The timeout is clamped to maxSessionTimeout (30000 here).
    let (mut c, resp) = RawClient::handshake(addr, &req).unwrap();
    assert_eq!(resp.timeout_ms, 30_000, "{addr}");
    assert_eq!(resp.read_only, Some(false), "{addr}");
    assert_eq!(resp.passwd.len(), 16, "{addr}");
    assert_ne!(resp.session_id, 0, "{addr}");
    let _ = c.close_session();
    // The older 44-byte request without readOnly gets the answer without it.
    req.read_only = None;
    req.timeout_ms = 5000;
    let (mut c, resp) = RawClient::handshake(addr, &req).unwrap();
    assert_eq!(
        resp.read_only, None,
        "{addr}: 44-byte ConnectRequest: {resp:?}"
    );
    assert_eq!(resp.timeout_ms, 5000, "{addr}");
    let _ = c.close_session();
    // A client that has seen a zxid the server has not is refused: closed, no answer.
    req.read_only = Some(false);
    req.last_zxid_seen = 1 << 40;
    match RawClient::handshake(addr, &req) {
        Err(_) => {}
        Ok((_, resp)) => panic!("{addr}: a client from the future was answered: {resp:?}"),
    }
}

/// Per-session order under pipelining: behind a pending write, a getData that sets a
/// watch and a setData of the same node are sent back to back. The read must see the
/// data from before that setData, and the watch it set must fire before the setData's
/// reply (a read must never see a later write of its own session).
fn raw_pipelined_read_then_write_keeps_order(t: &Target) {
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let mk = |path: &str| {
        Request::Create(corral::proto::CreateRequest {
            kind: corral::proto::CreateKind::Create,
            path: path.into(),
            data: Some(b"old".to_vec()),
            acl: corral::proto::Acl::open(),
            flags: 0,
            ttl: -1,
        })
    };
    for p in ["/raw_fifo", "/raw_fifo/x", "/raw_fifo/k"] {
        assert_eq!(c.call(&mk(p)).unwrap().err, 0, "create {p}");
    }
    for round in 0..20 {
        let set = |path: &str, data: &[u8]| Request::SetData {
            path: path.into(),
            data: Some(data.to_vec()),
            version: -1,
        };
        let x1 = c
            .send_with_xid(1000 + round * 3, &set("/raw_fifo/x", b"x"))
            .unwrap();
        let x2 = c
            .send_with_xid(
                1001 + round * 3,
                &Request::GetData {
                    path: "/raw_fifo/k".into(),
                    watch: true,
                },
            )
            .unwrap();
        let new = format!("new{round}");
        let x3 = c
            .send_with_xid(1002 + round * 3, &set("/raw_fifo/k", new.as_bytes()))
            .unwrap();
        let r1 = c.wait_reply().unwrap();
        assert_eq!((r1.xid, r1.err), (x1, 0));
        let r2 = c.wait_reply().unwrap();
        assert_eq!((r2.xid, r2.err), (x2, 0));
        let before = if round == 0 {
            "old".to_string()
        } else {
            format!("new{}", round - 1)
        };
        // GetDataResponse: buffer data, then the Stat.
        let len = i32::from_be_bytes(r2.body[..4].try_into().unwrap()) as usize;
        assert_eq!(
            &r2.body[4..4 + len],
            before.as_bytes(),
            "round {round}: the read saw a later write of its own session"
        );
        assert!(
            c.events.is_empty(),
            "no event before the firing write: {:?}",
            c.events
        );
        let r3 = c.wait_reply().unwrap();
        assert_eq!((r3.xid, r3.err), (x3, 0));
        let ev: Vec<(i32, String)> = c.events.drain(..).map(|e| (e.event_type, e.path)).collect();
        assert_eq!(
            ev,
            vec![(3, "/raw_fifo/k".to_string())],
            "round {round}: the watch fires once, before the setData's reply"
        );
    }
    let _ = c.close_session();
}

/// Rounds of [`raw_pipelined_reads_between_writes_see_their_place`].
const MIXED_ROUNDS_COUNT: usize = 30;

/// One session pipelines writes with reads between them, on the same nodes and
/// on others. Every read answers as if the session's requests ran one by one: it
/// sees each write sent before it and none sent after (corral sends a write
/// before the reads ahead of it are answered only when they cannot tell).
fn raw_pipelined_reads_between_writes_see_their_place(t: &Target) {
    use corral::proto::CreateMode as Mode;
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let (a, b, dir) = ("/raw_mix/a", "/raw_mix/b", "/raw_mix");
    for p in [dir, a, b] {
        raw_ok(&mut c, &ensemble::create_req(p, b"0", Mode::Persistent), p);
    }
    let set = |path: &str, data: String| Request::SetData {
        path: path.into(),
        data: Some(data.into_bytes()),
        version: -1,
    };
    let get = Request::get_data_of;
    let children = Request::get_children2_of(dir);
    let seq = ensemble::create_req(&format!("{dir}/s-"), b"", Mode::PersistentSequential);
    for r in 0..MIXED_ROUNDS_COUNT {
        let reqs = [
            set(a, format!("a{r}")),  // 0
            get(a),                   // 1: a{r}
            set(b, format!("b{r}")),  // 2: may leave before 1 is answered
            get(b),                   // 3: b{r}
            get(a),                   // 4: a{r}
            set(a, format!("a{r}+")), // 5: must wait for 1 and 4
            children.clone(),         // 6: 2 + r children
            seq.clone(),              // 7: must wait for 6
            get(a),                   // 8: a{r}+
            children.clone(),         // 9: 3 + r children
        ];
        let answers = ensemble::pipeline(&mut c, &reqs).unwrap_or_else(|e| panic!("{e:?}"));
        let data = |i: usize| match &answers[i] {
            Ok(Response::Data { data, .. }) => {
                String::from_utf8_lossy(data.as_deref().unwrap_or_default()).into_owned()
            }
            other => panic!("round {r}, request {i}: {other:?}"),
        };
        let count = |i: usize| match &answers[i] {
            Ok(Response::Children2 { children, stat }) => {
                assert_eq!(
                    children.len() as i32,
                    stat.num_children,
                    "round {r}, request {i}"
                );
                children.len()
            }
            other => panic!("round {r}, request {i}: {other:?}"),
        };
        let seen = [data(1), data(3), data(4), data(8)];
        let want = [
            format!("a{r}"),
            format!("b{r}"),
            format!("a{r}"),
            format!("a{r}+"),
        ];
        assert_eq!(
            seen, want,
            "round {r}: reads 1, 3, 4, 8 against the session's order"
        );
        assert_eq!(
            (count(6), count(9)),
            (2 + r, 3 + r),
            "round {r}: children before and after the create"
        );
        for (i, a) in answers.iter().enumerate() {
            assert!(a.is_ok(), "round {r}, request {i}: {a:?}");
        }
    }
    // With a watch set, a later write's event comes after the answers to the
    // reads sent before that write, as its reply does.
    let w = "/raw_mix/w";
    raw_ok(&mut c, &ensemble::create_req(w, b"", Mode::Persistent), w);
    for r in 0..MIXED_ROUNDS_COUNT {
        let watch = Request::Exists {
            path: w.into(),
            watch: true,
        };
        raw_ok(&mut c, &watch, "exists with a watch");
        let xs: Vec<i32> = [set(a, format!("w{r}")), get(b), set(w, format!("w{r}"))]
            .iter()
            .map(|q| c.send(q).expect("send"))
            .collect();
        for x in &xs[..2] {
            assert_eq!(c.recv_reply().map(|p| p.xid).ok(), Some(*x), "round {r}");
        }
        assert!(
            c.events.is_empty(),
            "round {r}: the watch fired before the answer to a read sent before its write: {:?}",
            c.events
        );
        assert_eq!(c.recv_reply().map(|p| p.xid).ok(), Some(xs[2]), "round {r}");
        let fired: Vec<String> = c.events.drain(..).map(|e| e.path).collect();
        assert_eq!(fired, [w], "round {r}: one event, before the write's reply");
    }
    let _ = c.close_session();
}

fn raw_ping_and_close(t: &Target) {
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let r = c.call(&Request::Ping).unwrap();
    assert_eq!((r.xid, r.err), (-2, 0));
    assert!(r.body.is_empty());
    let r = c.close_session().unwrap();
    assert_eq!(r.err, 0);
    assert!(r.body.is_empty());
    assert!(
        c.wait_closed(Duration::from_secs(5)).is_ok(),
        "closeSession leaves the connection open"
    );
}

fn raw_check_and_set_watches(t: &Target) {
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let create = |path: &str| {
        Request::Create(corral::proto::CreateRequest {
            kind: corral::proto::CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl: corral::proto::Acl::open(),
            flags: 0,
            ttl: -1,
        })
    };
    assert_eq!(c.call(&create("/raw_watches")).unwrap().err, 0);
    let zxid_before = c.last_zxid;
    assert_eq!(c.call(&create("/raw_watches/n")).unwrap().err, 0);
    // checkWatches: none set yet → NoWatcher.
    let cw = |t| Request::CheckWatches {
        path: "/raw_watches/n".into(),
        watcher_type: t,
    };
    assert_eq!(c.call(&cw(2)).unwrap().err, -121);
    let r = c
        .call(&Request::GetData {
            path: "/raw_watches/n".into(),
            watch: true,
        })
        .unwrap();
    assert_eq!(r.err, 0);
    assert_eq!(c.call(&cw(2)).unwrap().err, 0, "data watch present");
    assert_eq!(c.call(&cw(3)).unwrap().err, 0, "any watch present");
    assert_eq!(c.call(&cw(1)).unwrap().err, -121, "no child watch");
    // removeWatches: the data watch goes.
    let r = c
        .call(&Request::RemoveWatches {
            path: "/raw_watches/n".into(),
            watcher_type: 2,
        })
        .unwrap();
    assert_eq!(r.err, 0);
    assert_eq!(c.call(&cw(2)).unwrap().err, -121);

    // setWatches on a fresh session, relative to a zxid before /raw_watches/n
    // existed: the exist watch fires NodeCreated at once; the data watch on a
    // node unchanged since is just registered.
    let mut d = RawClient::connect(t.raw(1), 10_000);
    raw_catch_up(&mut d);
    let sw = Request::SetWatches(SetWatches {
        relative_zxid: zxid_before,
        data: vec!["/raw_watches".into()],
        exist: vec!["/raw_watches/n".into()],
        child: vec!["/raw_watches".into()],
        ..Default::default()
    });
    d.send_with_xid(-8, &sw).unwrap();
    let r = d.recv_reply().unwrap();
    assert_eq!((r.xid, r.err), (-8, 0), "setWatches reply");
    let r = d.call(&Request::Sync { path: "/".into() }).unwrap();
    assert_eq!(r.err, 0);
    let evs: Vec<(i32, String)> = d.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert!(
        evs.contains(&(1, "/raw_watches/n".into())),
        "setWatches: exist watch on a node created since relative_zxid: {evs:?}"
    );
    assert!(
        evs.contains(&(4, "/raw_watches".into())),
        "setWatches: child watch on a parent changed since relative_zxid: {evs:?}"
    );
    // The data watch on /raw_watches was registered: a change fires it.
    let r = c
        .call(&Request::SetData {
            path: "/raw_watches".into(),
            data: Some(b"x".to_vec()),
            version: -1,
        })
        .unwrap();
    assert_eq!(r.err, 0);
    let ev = d
        .wait_event(Duration::from_secs(5))
        .expect("data watch from setWatches");
    assert_eq!((ev.event_type, ev.path.as_str()), (3, "/raw_watches"));
    let _ = c.close_session();
    let _ = d.close_session();
}

fn raw_auth_reply_echoes_xid(t: &Target) {
    // The Java client sends auth under xid -4; other clients (the Rust crate)
    // use an ordinary xid. The reply carries the request's xid either way.
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let auth = Request::Auth {
        auth_type: 0,
        scheme: "digest".into(),
        auth: b"carol:pw".to_vec(),
    };
    c.send_with_xid(7, &auth).unwrap();
    let r = c.recv_reply().unwrap();
    assert_eq!((r.xid, r.err), (7, 0), "auth sent under xid 7: {r:?}");
    c.send_with_xid(-4, &auth).unwrap();
    let r = c.recv_reply().unwrap();
    assert_eq!((r.xid, r.err), (-4, 0), "auth sent under xid -4: {r:?}");
    let _ = c.close_session();
}

fn raw_no_watch_left_by_reads_of_missing_nodes(t: &Target) {
    // getData / getChildren / getChildren2 on a missing node answer NONODE and
    // leave no watch; only exists watches a missing node.
    let mut w = RawClient::connect(t.raw(0), 10_000);
    let mut c = RawClient::connect(t.raw(1), 10_000);
    let p = "/raw_missing";
    for req in [
        Request::GetData {
            path: p.into(),
            watch: true,
        },
        Request::GetChildren {
            path: p.into(),
            watch: true,
        },
        Request::GetChildren2 {
            path: p.into(),
            watch: true,
        },
    ] {
        assert_eq!(w.call(&req).unwrap().err, -101, "{req:?}");
    }
    let create = |path: &str| {
        Request::Create(corral::proto::CreateRequest {
            kind: corral::proto::CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl: corral::proto::Acl::open(),
            flags: 0,
            ttl: -1,
        })
    };
    assert_eq!(c.call(&create(p)).unwrap().err, 0);
    assert_eq!(c.call(&create("/raw_missing/k")).unwrap().err, 0);
    let r = w.call(&Request::Sync { path: "/".into() }).unwrap();
    assert_eq!(r.err, 0);
    let evs: Vec<(i32, String)> = w.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert!(
        evs.is_empty(),
        "events from reads of a missing node: {evs:?}"
    );
    let _ = c.close_session();
    let _ = w.close_session();
}

fn raw_set_watches2_persistent(t: &Target) {
    // setWatches2 registers persistent and recursive watches. A connection has
    // one watch mode per path on the reference: naming a path in both lists
    // leaves the recursive watch only (no NodeChildrenChanged).
    let mut w = RawClient::connect(t.raw(0), 10_000);
    let mut c = RawClient::connect(t.raw(1), 10_000);
    let create = |path: &str| {
        Request::Create(corral::proto::CreateRequest {
            kind: corral::proto::CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl: corral::proto::Acl::open(),
            flags: 0,
            ttl: -1,
        })
    };
    let mut step = |w: &mut RawClient, root: &str, persistent: bool, recursive: bool| {
        assert_eq!(c.call(&create(root)).unwrap().err, 0);
        // Else w's member may apply root's create after the watch: NodeCreated.
        raw_catch_up(w);
        let sw = Request::SetWatches(SetWatches {
            relative_zxid: c.last_zxid,
            persistent: if persistent {
                vec![root.into()]
            } else {
                vec![]
            },
            persistent_recursive: if recursive { vec![root.into()] } else { vec![] },
            ..Default::default()
        });
        let r = w.call(&sw).unwrap();
        assert_eq!((r.xid, r.err), (-8, 0), "setWatches2");
        assert_eq!(c.call(&create(&format!("{root}/k"))).unwrap().err, 0);
        assert_eq!(w.call(&Request::Sync { path: "/".into() }).unwrap().err, 0);
        w.events
            .drain(..)
            .map(|e| (e.event_type, e.path))
            .collect::<Vec<(i32, String)>>()
    };
    let evs = step(&mut w, "/raw_sw2_p", true, false);
    assert_eq!(evs, vec![(4, "/raw_sw2_p".to_string())], "persistent only");
    let evs = step(&mut w, "/raw_sw2_r", false, true);
    assert_eq!(evs, vec![(1, "/raw_sw2_r/k".to_string())], "recursive only");
    let evs = step(&mut w, "/raw_sw2_pr", true, true);
    assert_eq!(
        evs,
        vec![(1, "/raw_sw2_pr/k".to_string())],
        "persistent and recursive on the same path"
    );
    let _ = c.close_session();
    let _ = w.close_session();
}

fn raw_watch_events_need_read_permission(t: &Target) {
    // The reference delivers a watch event only to connections that may READ
    // the node it is about (under the node's ACL at the time of the change).
    let mut w = RawClient::connect(t.raw(0), 10_000);
    let mut c = RawClient::connect(t.raw(1), 10_000);
    assert_eq!(c.add_digest_auth("owner", "pw"), 0);
    let owner_only = vec![corral::proto::Acl::new(
        corral::proto::perms::ALL,
        "digest",
        &common::digest_id("owner", "pw"),
    )];
    let create = |path: &str, acl: Vec<corral::proto::Acl>| {
        Request::Create(corral::proto::CreateRequest {
            kind: corral::proto::CreateKind::Create,
            path: path.into(),
            data: Some(vec![]),
            acl,
            flags: 0,
            ttl: -1,
        })
    };
    let root = "/raw_acl_watch";
    assert_eq!(
        c.call(&create(root, corral::proto::Acl::open()))
            .unwrap()
            .err,
        0
    );
    let hidden = format!("{root}/hidden");
    let open = format!("{root}/open");
    for p in [&hidden, &open] {
        let r = w
            .call(&Request::Exists {
                path: p.clone(),
                watch: true,
            })
            .unwrap();
        assert_eq!(r.err, -101);
    }
    raw_catch_up(&mut w);
    let r = w
        .call(&Request::GetChildren {
            path: root.into(),
            watch: true,
        })
        .unwrap();
    assert_eq!(r.err, 0);
    assert_eq!(c.call(&create(&hidden, owner_only.clone())).unwrap().err, 0);
    assert_eq!(
        c.call(&create(&open, corral::proto::Acl::open()))
            .unwrap()
            .err,
        0
    );
    assert_eq!(w.call(&Request::Sync { path: "/".into() }).unwrap().err, 0);
    let evs: Vec<(i32, String)> = w.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(
        evs,
        vec![(4, root.to_string()), (1, open.clone())],
        "events for an unreadable node must not be delivered"
    );
    let _ = c.close_session();
    let _ = w.close_session();
}

fn raw_failed_auth_closes(t: &Target) {
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let r = c
        .call(&Request::Auth {
            auth_type: 0,
            scheme: "no-such-scheme".into(),
            auth: b"x".to_vec(),
        })
        .unwrap();
    assert_eq!((r.xid, r.err), (-4, -115), "auth with an unknown scheme");
    assert!(
        c.wait_closed(Duration::from_secs(5)).is_ok(),
        "connection open after AuthFailed"
    );
}

fn raw_container_ops(t: &Target) {
    let mut c = RawClient::connect(t.raw(0), 10_000);
    let mk = |kind, path: &str, flags| {
        Request::Create(corral::proto::CreateRequest {
            kind,
            path: path.into(),
            data: Some(vec![]),
            acl: corral::proto::Acl::open(),
            flags,
            ttl: -1,
        })
    };
    use corral::proto::CreateKind::*;
    let got = c.call_decoded(&mk(Container, "/raw_ctr", 4)).unwrap();
    assert!(
        matches!(got, Decoded::Ok(Response::Create2 { .. })),
        "createContainer: {got:?}"
    );
    assert_eq!(c.call(&mk(Create, "/raw_ctr/k", 0)).unwrap().err, 0);
    let dc = Request::DeleteContainer {
        path: "/raw_ctr".into(),
    };
    // The reference reads deleteContainer's body as raw path bytes (it is meant
    // for its own container manager), so a jute-encoded path from a client is
    // never a valid path: BADARGUMENTS, whether the container is empty or not.
    assert_eq!(c.call(&dc).unwrap().err, -8, "deleteContainer, non-empty");
    let r = c
        .call(&Request::Delete {
            path: "/raw_ctr/k".into(),
            version: -1,
        })
        .unwrap();
    assert_eq!(r.err, 0);
    assert_eq!(c.call(&dc).unwrap().err, -8, "deleteContainer, empty");
    let r = c
        .call(&Request::Exists {
            path: "/raw_ctr".into(),
            watch: false,
        })
        .unwrap();
    assert_eq!(r.err, 0, "the container is still there");
    // The reference takes createContainer's opcode, not its flags, as the mode:
    // flags 0 still creates (a container).
    assert_eq!(c.call(&mk(Container, "/raw_ctr2", 0)).unwrap().err, 0);
    let _ = c.close_session();
}

// ------------------------------------------------- ensemble-only cases

/// Attempts at moving a session to another member (a member refuses it while
/// it has not applied the client's last zxid).
const MOVE_ATTEMPTS_MAX: u32 = 100;
/// Pause between two attempts at moving a session.
const MOVE_RETRY_MS: u64 = 100;
/// Write rounds per ordered pair of members in [`sync_catches_a_member_up`].
const SYNC_ROUNDS_COUNT: usize = 4;
/// setData requests one round pipelines through the writing member.
const SYNC_BURST_COUNT: usize = 25;

/// The answer of a raw call, or a panic naming `what`.
fn raw_ok(c: &mut RawClient, req: &Request, what: &str) -> Response {
    ensemble::call(c, req).unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// What a client keeps of a session across a connection loss: its id, its
/// password and the last zxid it saw.
struct Held {
    id: i64,
    passwd: Vec<u8>,
    zxid: i64,
}

/// Drops `c`'s connection, not its session.
fn hold(c: RawClient) -> Held {
    Held {
        id: c.session_id,
        passwd: c.passwd.clone(),
        zxid: c.last_zxid,
    }
}

/// Resumes a held session on `addr`, as a client library does after a
/// connection loss (bounded attempts).
fn resume(held: &Held, addr: &str) -> RawClient {
    let Held { id, passwd, zxid } = held;
    let mut last = String::new();
    for _ in 0..MOVE_ATTEMPTS_MAX {
        match ensemble::resume_session(addr, *id, passwd, *zxid) {
            Ok(Some(c)) => return c,
            Ok(None) => panic!("session {id:#x} expired instead of moving to {addr}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(MOVE_RETRY_MS));
    }
    panic!("session {id:#x} did not move to {addr}: {last}")
}

/// Re-registers watches on a moved session relative to its last zxid, as a
/// client library does right after it reconnects.
fn set_watches(c: &mut RawClient, data: &[&str], exist: &[&str], child: &[&str]) {
    let paths = |v: &[&str]| v.iter().map(|p| p.to_string()).collect();
    let sw = Request::SetWatches(SetWatches {
        relative_zxid: c.last_zxid,
        data: paths(data),
        exist: paths(exist),
        child: paths(child),
        ..Default::default()
    });
    let r = c.call(&sw).expect("setWatches reply");
    assert_eq!((r.xid, r.err), (-8, 0), "setWatches");
}

/// The next `n` watch events of `c` as (type, path), sorted (one txn may fire
/// several watches, in no promised order); panics on a shortfall.
fn take_events(c: &mut RawClient, n: usize, what: &str) -> Vec<(i32, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.wait_event(EVENT_TIMEOUT) {
            Some(e) => got.push((e.event_type, e.path)),
            None => panic!(
                "{what}: {} of {n} events within {EVENT_TIMEOUT:?}: {got:?}",
                got.len()
            ),
        }
    }
    got.sort();
    got
}

/// The ephemeral owner of `path` as `c`'s member sees it.
fn owner_of(c: &mut RawClient, path: &str, what: &str) -> i64 {
    let get = Request::GetData {
        path: path.into(),
        watch: false,
    };
    match raw_ok(c, &get, what) {
        Response::Data { stat, .. } => stat.ephemeral_owner,
        other => panic!("{what}: {other:?}"),
    }
}

/// A client that reconnects to another member keeps its session, its
/// ephemerals and its watches (setWatches): watches set through `a`, the
/// session moved to `b`, the nodes changed through `c`; then a change made
/// while the session is between members fires as soon as it lands on `a` again.
fn session_moves_with_its_ephemerals_and_watches(a: &str, b: &str, c: &str) {
    use corral::proto::CreateMode::{Ephemeral, Persistent};
    let root = "/session_moves";
    let (n, e, later) = (
        format!("{root}/n"),
        format!("{root}/e"),
        format!("{root}/later"),
    );
    let mut on_a = RawClient::connect(a, 10_000);
    let id = on_a.session_id;
    for (path, mode) in [(root, Persistent), (&n, Persistent), (&e, Ephemeral)] {
        let req = ensemble::create_req(path, b"0", mode);
        raw_ok(&mut on_a, &req, &format!("create {path} through A"));
    }
    let watch_data = Request::GetData {
        path: n.clone(),
        watch: true,
    };
    raw_ok(&mut on_a, &watch_data, "getData+watch through A");
    let watch_exists = Request::Exists {
        path: later.clone(),
        watch: true,
    };
    assert_eq!(on_a.call(&watch_exists).unwrap().err, -101, "exists+watch");
    let watch_kids = Request::GetChildren {
        path: root.into(),
        watch: true,
    };
    raw_ok(&mut on_a, &watch_kids, "getChildren+watch through A");

    let mut on_b = resume(&hold(on_a), b);
    set_watches(&mut on_b, &[&n], &[&later], &[root]);
    raw_catch_up(&mut on_b);
    assert!(
        on_b.events.is_empty(),
        "nothing changed since the session's last zxid: {:?}",
        on_b.events
    );
    assert_eq!(owner_of(&mut on_b, &e, "the ephemeral through B"), id);

    let mut on_c = RawClient::connect(c, 10_000);
    let set = |data: &[u8]| Request::SetData {
        path: n.clone(),
        data: Some(data.to_vec()),
        version: -1,
    };
    raw_ok(&mut on_c, &set(b"1"), "setData through C");
    let req = ensemble::create_req(&later, b"", Persistent);
    raw_ok(&mut on_c, &req, "create through C");
    assert_eq!(
        take_events(&mut on_b, 3, "watches moved to B"),
        vec![(1, later.clone()), (3, n.clone()), (4, root.to_string())],
        "the watches set through A fire on B"
    );
    raw_catch_up(&mut on_b);
    assert!(on_b.events.is_empty(), "one-shot: {:?}", on_b.events);

    // A change while the session is on no member: setWatches relative to the
    // last zxid the session saw fires the watch on the next member.
    raw_ok(&mut on_b, &watch_data, "getData+watch through B");
    let held = hold(on_b);
    raw_ok(
        &mut on_c,
        &set(b"2"),
        "setData through C while the session moves",
    );
    let mut back = resume(&held, a);
    set_watches(&mut back, &[&n], &[], &[]);
    assert_eq!(
        take_events(&mut back, 1, "a change made between members"),
        vec![(3, n.clone())]
    );
    assert_eq!(owner_of(&mut back, &e, "the ephemeral back on A"), id);
    raw_catch_up(&mut on_c);
    assert_eq!(owner_of(&mut on_c, &e, "the ephemeral through C"), id);

    assert_eq!(back.close_session().unwrap().err, 0, "closeSession on A");
    raw_catch_up(&mut on_c);
    let gone = Request::Exists {
        path: e.clone(),
        watch: false,
    };
    assert_eq!(
        on_c.call(&gone).unwrap().err,
        -101,
        "the ephemeral outlived its session"
    );
    let _ = on_c.close_session();
}

/// `sync` returns once its member has applied everything the leader committed
/// before it: for every ordered pair of members, a burst of setData through
/// one, then a sync through the other and a read there (after the sync's
/// answer, or pipelined behind it) sees the burst's last write.
///
/// `leader_sync_is_a_read`: the member (the reference's leader) where this does not
/// hold. ZooKeeper 3.8's leader builds its CommitProcessor with `matchSyncs = false`,
/// so a sync from one of the leader's own clients passes as a read and does not wait
/// for writes the leader committed but has not applied yet (a follower saw a burst's
/// COMMITs first, as `Leader.tryToCommit` sends them before its own commit). There the
/// read is only checked not to run ahead of the burst; corral's leader answers the sync
/// after everything it committed before it, so corral gets the strict check everywhere.
fn sync_catches_a_member_up(members: &[(u64, String)], leader_sync_is_a_read: Option<u64>) {
    let path = "/sync_catches_up";
    let mut sessions: Vec<RawClient> = members
        .iter()
        .map(|(_, addr)| RawClient::connect(addr, 10_000))
        .collect();
    let req = ensemble::create_req(path, b"", corral::proto::CreateMode::Persistent);
    raw_ok(&mut sessions[0], &req, "create");
    for round in 0..SYNC_ROUNDS_COUNT {
        for w in 0..members.len() {
            for r in (0..members.len()).filter(|&r| r != w) {
                let what = format!(
                    "round {round}: written through member {}, read through member {}",
                    members[w].0, members[r].0
                );
                let (data, mzxid) = write_burst(&mut sessions[w], path, &what);
                let pipelined = round % 2 == 1;
                let (got, stat) = sync_then_read(&mut sessions[r], path, pipelined, &what);
                if leader_sync_is_a_read == Some(members[r].0) {
                    assert!(
                        stat.mzxid <= mzxid,
                        "{what}: the read ran ahead of the burst ({:#x} > {mzxid:#x})",
                        stat.mzxid
                    );
                    continue;
                }
                assert_eq!(
                    (String::from_utf8_lossy(&got), stat.mzxid),
                    (String::from_utf8_lossy(&data), mzxid),
                    "{what}: the read after sync misses the last write"
                );
            }
        }
    }
    for mut c in sessions {
        let _ = c.close_session();
    }
}

/// Pipelines [`SYNC_BURST_COUNT`] setData of `path`; returns the last data and its mzxid.
fn write_burst(c: &mut RawClient, path: &str, what: &str) -> (Vec<u8>, i64) {
    let data = |i: usize| format!("{what} #{i}").into_bytes();
    let burst: Vec<Request> = (0..SYNC_BURST_COUNT)
        .map(|i| Request::SetData {
            path: path.into(),
            data: Some(data(i)),
            version: -1,
        })
        .collect();
    let answers = ensemble::pipeline(c, &burst).unwrap_or_else(|e| panic!("{what}: {e:?}"));
    match answers.last() {
        Some(Ok(Response::Stat(stat))) => (data(SYNC_BURST_COUNT - 1), stat.mzxid),
        other => panic!("{what}: last setData answered {other:?}"),
    }
}

/// A sync of `path` then a getData of it, the getData sent after the sync's
/// answer or pipelined behind it.
fn sync_then_read(
    c: &mut RawClient,
    path: &str,
    pipelined: bool,
    what: &str,
) -> (Vec<u8>, corral::proto::Stat) {
    let sync = Request::Sync { path: path.into() };
    let get = Request::GetData {
        path: path.into(),
        watch: false,
    };
    let answers = if pipelined {
        ensemble::pipeline(c, &[sync, get]).unwrap_or_else(|e| panic!("{what}: {e:?}"))
    } else {
        vec![ensemble::call(c, &sync), ensemble::call(c, &get)]
    };
    match &answers[..] {
        [Ok(Response::Sync { path: synced }), Ok(Response::Data { data, stat })] => {
            assert_eq!(synced, path, "{what}: the sync's answer names its path");
            (data.clone().expect("sync_then_read: null data"), *stat)
        }
        other => panic!("{what}: sync, getData answered {other:?}"),
    }
}

// ---------------------------------------------------------------- runners

/// A standalone server of this kind, the whole suite against it.
fn run_suite(kind: Kind) {
    run_suite_with(kind, "");
}

fn run_suite_with(kind: Kind, more_cfg: &str) {
    let server = Server::start(kind, &format!("{}{more_cfg}", cfg_extra()));
    let mut suite = Suite::for_server(format!("client/{kind}"), &server);
    run_cases(&mut suite, &Target::one(server.addr()));
    suite.finish();
    drop(server);
}

/// Ticks (of 200 ms) a follower waits for its leader, and a new leader for
/// its followers, in these suites: 15 and 25 instead of the harness's 5 and
/// 10, so a member stalled for a second (a JVM warming up on a busy 2-core box)
/// does not cost an election in the middle of a case. (Later keys win in
/// zoo.cfg, as in Java properties.)
const ENSEMBLE_LIMITS: &str = "syncLimit=15\ninitLimit=25\n";

/// Which members of an ensemble a run's clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// Every client on one follower.
    OneFollower,
    /// The crate's clients get every member in the connect string; a case's
    /// raw clients go to the members in turn.
    EveryMember,
}

/// A 3-member ensemble of this kind, the whole suite against it as `spread`
/// says, then (spread over every member) the ensemble's own session cases;
/// at the end all members must hold the same tree.
fn run_ensemble_suite(kind: Kind, spread: Spread) {
    if !Ensemble::can_start(&[kind]) {
        return;
    }
    let cfg = format!("{}{ENSEMBLE_LIMITS}", cfg_extra());
    let ens = Ensemble::start_cfg(&[(kind, Role::Participant); 3], &cfg);
    let leader = ens.wait_leader();
    let followers: Vec<u64> = (ens.sids().into_iter())
        .filter(|&s| ens.mode(s) == Some(Mode::Follower))
        .collect();
    assert_eq!(followers.len(), 2, "leader {leader} and two followers");
    let target = match spread {
        Spread::OneFollower => Target::one(ens.client_addr(followers[0])),
        Spread::EveryMember => {
            Target::every(ens.sids().iter().map(|&s| ens.client_addr(s)).collect())
        }
    };
    let name = format!("client/ensemble-{kind}/{spread:?}");
    eprintln!("[{name}] leader {leader}, followers {followers:?}; clients on {target:?}");
    let mut suite = Suite::new(name.clone());
    run_cases(&mut suite, &target);
    if spread == Spread::EveryMember {
        let [a, b, c] = [followers[0], followers[1], leader].map(|s| ens.client_addr(s));
        suite.case("session_moves_with_its_ephemerals_and_watches", || {
            session_moves_with_its_ephemerals_and_watches(&a, &b, &c)
        });
        let members: Vec<(u64, String)> = (ens.sids().into_iter())
            .map(|s| (s, ens.client_addr(s)))
            .collect();
        let leader_sync_is_a_read = (kind == Kind::Reference).then_some(leader);
        suite.case("sync_catches_a_member_up", || {
            sync_catches_a_member_up(&members, leader_sync_is_a_read)
        });
    }
    suite.case("members_hold_the_same_tree", || {
        members_hold_the_same_tree(&ens)
    });
    suite.finish();
    eprintln!("[{name}] wall time {} ms", ens.age().as_millis());
}

/// Every member, each dumped after a sync, holds the same tree (data, every
/// Stat field). Dumped as the super user: some cases leave nodes only their
/// owner may read.
fn members_hold_the_same_tree(ens: &Ensemble) {
    let sids = ens.sids();
    let first = ens.dump_tree_as(sids[0], Some(SUPER_DIGEST));
    for &sid in &sids[1..] {
        let other = ens.dump_tree_as(sid, Some(SUPER_DIGEST));
        let diffs = ensemble::tree_differences(sids[0], &first, sid, &other);
        assert!(
            diffs.is_empty(),
            "members {} and {sid} disagree ({} differences, first {}):\n  {}",
            sids[0],
            diffs.len(),
            diffs.len().min(TREE_DIFFS_SHOWN_MAX),
            diffs[..diffs.len().min(TREE_DIFFS_SHOWN_MAX)].join("\n  ")
        );
    }
}

/// Every case of the suite against `t`, one after another.
fn run_cases(suite: &mut Suite<'_>, t: &Target) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    macro_rules! async_case {
        ($name:ident) => {
            suite.case(stringify!($name), || {
                rt.block_on(async {
                    tokio::time::timeout(CASE_TIMEOUT, $name(t.clone()))
                        .await
                        .expect("case timed out")
                })
            })
        };
    }
    macro_rules! raw_case {
        ($name:ident) => {
            suite.case(stringify!($name), || $name(t))
        };
    }
    async_case!(create_modes);
    async_case!(data_and_versions);
    async_case!(acls_and_auth);
    async_case!(super_digest);
    async_case!(multi_shapes);
    async_case!(oneshot_watches);
    async_case!(persistent_watches);
    async_case!(close_session_deletes_ephemerals);
    async_case!(reconnect_same_session);
    async_case!(session_expiry);

    raw_case!(raw_handshake_shapes);
    raw_case!(raw_ping_and_close);
    raw_case!(raw_pipelined_read_then_write_keeps_order);
    raw_case!(raw_pipelined_reads_between_writes_see_their_place);
    raw_case!(raw_check_and_set_watches);
    raw_case!(raw_auth_reply_echoes_xid);
    raw_case!(raw_failed_auth_closes);
    raw_case!(raw_watch_events_need_read_permission);
    raw_case!(raw_no_watch_left_by_reads_of_missing_nodes);
    raw_case!(raw_set_watches2_persistent);
    raw_case!(raw_container_ops);
    raw_case!(raw_session_expiry_and_reconnect);
    raw_case!(raw_requests_keep_a_session_alive);
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn client_reference() {
    if !common::require_reference() {
        return;
    }
    run_suite(Kind::Reference);
}

#[test]
fn client_corral() {
    run_suite(Kind::Corral);
}

/// The same suite with a single shard core: every session on one executor, with
/// the sequencer beside it (the default on up to 2 CPUs), every log sync after the
/// first on the blocking pool (as on a slow disk: `corral.inlineSyncMaxMicros`).
#[test]
fn client_corral_one_shard() {
    run_suite_with(
        Kind::Corral,
        "corral.shardCores=1\ncorral.inlineSyncMaxMicros=0\n",
    );
}

/// The same suite with the sequencer on an executor of its own (the default above
/// 2 CPUs): every write crosses threads to it and back.
#[test]
fn client_corral_sequencer_on_its_own_core() {
    run_suite_with(Kind::Corral, "corral.sequencerCore=own\n");
}

#[test]
fn client_ensemble_reference_one_follower() {
    run_ensemble_suite(Kind::Reference, Spread::OneFollower);
}

#[test]
fn client_ensemble_reference_every_member() {
    run_ensemble_suite(Kind::Reference, Spread::EveryMember);
}

#[test]
fn client_ensemble_corral_one_follower() {
    run_ensemble_suite(Kind::Corral, Spread::OneFollower);
}

#[test]
fn client_ensemble_corral_every_member() {
    run_ensemble_suite(Kind::Corral, Spread::EveryMember);
}
