//! Quorum mode on real multi-process ensembles: leader election, writes of every
//! kind through every member read back identically everywhere, a leader SIGKILLed
//! under a write load, a member that misses more than 1000 txns, an ephemeral whose
//! session moves and closes on another member, an observer, and a paused / stopped
//! follower catching up; and corral members that join a reference ensemble by SNAP
//! while its leader goes on writing (its snapshots are fuzzy).
//!
//! Every scenario runs on four ensembles: three Apache ZooKeeper 3.8.0 members (the
//! reference: proves the harness and the expectations), three corral members, and
//! the two mixed ones: corral followers of a ZooKeeper leader, and ZooKeeper
//! followers of a corral leader (the harness starts the highest sid first, so it
//! leads; each mixed test checks who led).
//!
//! Each test starts its own ensemble on 127.0.0.1 (one ensemble at a time per
//! binary: the harness takes the reference lock) and talks to it from the test
//! thread with blocking raw clients; the kill test adds one writer thread
//! (`WriteLoad`). Every wait is a bounded poll; nothing asserts on durations.

mod common;

use common::ensemble::{
    call, create_req, pipeline, resume_session, Ensemble, Mode, Role, Tree, WriteLoad, POLL_MS,
    THREE_CORRALS, THREE_REFERENCES,
};
use common::Kind;
use corral::proto::{
    perms, Acl, CreateKind, CreateMode, CreateRequest, ErrorCode, OpResult, Request, Response,
};
use std::time::Duration;

/// Creates the write load makes while the leader is killed.
const LOAD_WRITES_COUNT: usize = 400;
/// Znodes the bulk test creates while a member is down (each also set and some deleted).
const BULK_NODES_COUNT: usize = 400;
/// setData txns of the bulk test.
const BULK_SETS_COUNT: usize = 600;
/// Deletes of the bulk test.
const BULK_DELETES_COUNT: usize = 200;
/// Znodes written before the bulk test's member goes down.
const PRE_NODES_COUNT: usize = 100;
/// Attempts at moving a session to another member.
const RESUME_ATTEMPTS_MAX: u32 = 100;

/// Starts an ensemble of these kinds (None: prerequisites missing, skipped) and
/// checks that, in a mixed one, the member meant to lead does.
fn start(kinds: [Kind; 3]) -> Option<Ensemble> {
    if !Ensemble::can_start(&kinds) {
        return None;
    }
    let mut ens = Ensemble::start(&kinds);
    if kinds != THREE_REFERENCES && kinds != THREE_CORRALS {
        ens.lead_by(3);
    }
    Some(ens)
}

fn ok(what: &str, r: Result<Response, common::ensemble::CallError>) -> Response {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// The path a create answered.
fn created(what: &str, r: Result<Response, common::ensemble::CallError>) -> String {
    match ok(what, r) {
        Response::Create { path } => path,
        other => panic!("{what}: unexpected answer {other:?}"),
    }
}

fn set_data(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData {
        path: path.into(),
        data: Some(data.to_vec()),
        version,
    }
}

/// A persistent create (open ACL) whose data is the null buffer.
fn null_create(path: &str) -> Request {
    match create_req(path, b"", CreateMode::Persistent) {
        Request::Create(c) => Request::Create(CreateRequest { data: None, ..c }),
        _ => unreachable!("create_req makes a create"),
    }
}

/// setData with the null buffer.
fn null_set(path: &str, version: i32) -> Request {
    Request::SetData {
        path: path.into(),
        data: None,
        version,
    }
}

fn delete(path: &str, version: i32) -> Request {
    Request::Delete {
        path: path.into(),
        version,
    }
}

fn data_of<'t>(tree: &'t Tree, path: &str) -> &'t [u8] {
    tree.get(path)
        .unwrap_or_else(|| panic!("{path} is missing"))
        .0
        .as_deref()
        .unwrap_or_else(|| panic!("{path} has null data"))
}

/// The sids that say follower.
fn followers(ens: &Ensemble) -> Vec<u64> {
    ens.sids()
        .into_iter()
        .filter(|&s| ens.mode(s) == Some(Mode::Follower))
        .collect()
}

/// Prints the test's wall time (its ensemble's start-up included, waiting for
/// the other tests' ensembles excluded).
fn timed(name: &str, ens: &Ensemble) {
    eprintln!("[{name}] wall time {} ms", ens.age().as_millis());
}

// Writes of every kind, each through a different member, read back the same
// (data, Stats, children) from all three.
on_every_ensemble!(three_members_replicate_every_write_kind);
fn three_members_replicate_every_write_kind(kinds: [Kind; 3]) {
    let Some(ens) = start(kinds) else { return };
    let leader = ens.wait_leader();
    assert_eq!(followers(&ens).len(), 2, "leader {leader}, two followers");
    let (mut c1, mut c2, mut c3) = (ens.connect(1), ens.connect(2), ens.connect(3));

    // Member 1: creates and setData.
    ok(
        "create /a",
        call(&mut c1, &create_req("/a", b"one", CreateMode::Persistent)),
    );
    ok(
        "create /a/b",
        call(&mut c1, &create_req("/a/b", b"", CreateMode::Persistent)),
    );
    ok(
        "create /a/tmp",
        call(&mut c1, &create_req("/a/tmp", b"t", CreateMode::Persistent)),
    );
    ok("setData /a", call(&mut c1, &set_data("/a", b"two", 0)));
    ok("create /null", call(&mut c1, &null_create("/null")));

    // Member 2: an ephemeral and sequentials.
    ok(
        "create /a/eph",
        call(&mut c2, &create_req("/a/eph", b"e", CreateMode::Ephemeral)),
    );
    let seq = created(
        "create /a/seq-",
        call(
            &mut c2,
            &create_req("/a/seq-", b"s", CreateMode::PersistentSequential),
        ),
    );
    let eseq = created(
        "create /a/eseq-",
        call(
            &mut c2,
            &create_req("/a/eseq-", b"", CreateMode::EphemeralSequential),
        ),
    );
    ok("setData /a/eseq- null", call(&mut c2, &null_set(&eseq, 0)));

    // Member 3: a multi, a failing multi, deletes.
    let multi = Request::Multi(vec![
        create_req("/m", b"m", CreateMode::Persistent),
        create_req("/m/x", b"x", CreateMode::Persistent),
        set_data("/a/b", b"via multi", 0),
        Request::Check {
            path: "/a".into(),
            version: 1,
        },
        delete("/m/x", 0),
        null_create("/m/null"),
    ]);
    match ok("multi", call(&mut c3, &multi)) {
        Response::Multi(results) => assert!(
            results.iter().all(|r| matches!(r, OpResult::Ok(..))),
            "multi: {results:?}"
        ),
        other => panic!("multi: {other:?}"),
    }
    let failing = Request::Multi(vec![
        create_req("/never", b"", CreateMode::Persistent),
        Request::Check {
            path: "/a".into(),
            version: 7,
        },
    ]);
    match call(&mut c3, &failing) {
        Ok(Response::Multi(results)) => assert!(
            results.iter().any(|r| matches!(r, OpResult::Err(_))),
            "a multi with a wrong version passed: {results:?}"
        ),
        Err(e) => assert!(e.is(ErrorCode::BadVersion), "failing multi: {e:?}"),
        other => panic!("failing multi: {other:?}"),
    }
    ok("delete /a/tmp", call(&mut c3, &delete("/a/tmp", -1)));

    let tree = ens.assert_same_tree();
    assert_eq!(data_of(&tree, "/a"), b"two");
    assert_eq!(tree["/a"].1.version, 1);
    assert_eq!(data_of(&tree, "/a/b"), b"via multi");
    assert_eq!(tree["/a/eph"].1.ephemeral_owner, c2.session_id);
    assert_eq!(tree[&eseq].1.ephemeral_owner, c2.session_id);
    assert_eq!(data_of(&tree, &seq), b"s");
    assert!(seq.starts_with("/a/seq-") && seq.len() == "/a/seq-".len() + 10);
    assert_eq!(data_of(&tree, "/m"), b"m");
    for null in ["/null", "/m/null", &eseq] {
        assert_eq!(tree[null].0, None, "{null} holds null data");
    }
    for gone in ["/m/x", "/a/tmp", "/never"] {
        assert!(!tree.contains_key(gone), "{gone} should not exist");
    }
    timed("three_members_replicate_every_write_kind", &ens);
}

/// Every acknowledged write of `acked` is in `tree` with its data.
fn assert_has_acked(sid: u64, tree: &Tree, acked: &[(String, Vec<u8>)]) {
    for (path, data) in acked {
        match tree.get(path) {
            Some((d, _)) if d.as_deref() == Some(&data[..]) => {}
            Some((d, _)) => panic!("member {sid}: {path} holds {d:?}, acknowledged {data:?}"),
            None => panic!("member {sid}: acknowledged {path} is missing"),
        }
    }
}

// SIGKILL the leader while a client thread writes through the other two: a
// new leader is elected, every acknowledged write is on both survivors, and
// the old leader rejoins and converges after a restart.
on_every_ensemble!(leader_killed_under_write_load);
fn leader_killed_under_write_load(kinds: [Kind; 3]) {
    let Some(mut ens) = start(kinds) else { return };
    let old = ens.wait_leader();
    let survivors: Vec<u64> = ens.sids().into_iter().filter(|&s| s != old).collect();
    let addrs = survivors.iter().map(|&s| ens.client_addr(s)).collect();
    let load = WriteLoad::start(addrs, "/load", LOAD_WRITES_COUNT);
    assert!(
        load.wait_acked(LOAD_WRITES_COUNT / 4),
        "the write load did not get going"
    );
    let at_kill = load.acked();
    ens.kill(old);
    let new = ens.wait_leader();
    assert_ne!(new, old, "the killed member cannot lead");
    let outcome = load.finish();
    eprintln!(
        "[leader_killed_under_write_load] killed leader {old} after {at_kill} acks; new leader \
         {new}; {} connection losses, {} sessions",
        outcome.connection_losses, outcome.sessions_opened
    );
    assert_eq!(outcome.acked.len(), LOAD_WRITES_COUNT);
    for &s in &survivors {
        assert_has_acked(s, &ens.dump_tree(s), &outcome.acked);
    }
    ens.assert_same_tree();

    ens.restart(old);
    assert_eq!(
        ens.wait_serving(old),
        Mode::Follower,
        "the old leader rejoins"
    );
    assert_eq!(ens.wait_leader(), new);
    let tree = ens.assert_same_tree();
    assert_has_acked(old, &ens.dump_tree(old), &outcome.acked);
    assert_eq!(tree["/load"].1.num_children as usize, LOAD_WRITES_COUNT);
    timed("leader_killed_under_write_load", &ens);
}

// SIGKILL a follower while a client thread writes through all three members: the
// leader keeps its quorum, the load goes on (the session moves off the killed
// member), every acknowledged write is on both survivors, and the follower
// rejoins and converges after a restart.
on_every_ensemble!(follower_killed_under_write_load);
fn follower_killed_under_write_load(kinds: [Kind; 3]) {
    let Some(mut ens) = start(kinds) else { return };
    let leader = ens.wait_leader();
    let victim = followers(&ens)[0];
    let addrs = ens.sids().iter().map(|&s| ens.client_addr(s)).collect();
    let load = WriteLoad::start(addrs, "/fload", LOAD_WRITES_COUNT);
    assert!(
        load.wait_acked(LOAD_WRITES_COUNT / 4),
        "the write load did not get going"
    );
    ens.kill(victim);
    assert_eq!(
        ens.wait_leader(),
        leader,
        "a follower's loss keeps the leader"
    );
    let outcome = load.finish();
    assert_eq!(outcome.acked.len(), LOAD_WRITES_COUNT);
    for s in ens.sids().into_iter().filter(|&s| s != victim) {
        assert_has_acked(s, &ens.dump_tree(s), &outcome.acked);
    }
    ens.restart(victim);
    assert_eq!(ens.wait_serving(victim), Mode::Follower);
    let tree = ens.assert_same_tree();
    assert_has_acked(victim, &ens.dump_tree(victim), &outcome.acked);
    assert_eq!(tree["/fload"].1.num_children as usize, LOAD_WRITES_COUNT);
    timed("follower_killed_under_write_load", &ens);
}

/// The bulk txns: a parent, creates, setData, deletes (pipelined).
fn bulk_requests() -> Vec<Request> {
    let node = |i: usize| format!("/bulk/n-{i:04}");
    let mut reqs = vec![create_req("/bulk", b"", CreateMode::Persistent)];
    reqs.extend(
        (0..BULK_NODES_COUNT).map(|i| create_req(&node(i), b"created", CreateMode::Persistent)),
    );
    reqs.extend((0..BULK_SETS_COUNT).map(|i| {
        set_data(
            &node(i % BULK_NODES_COUNT),
            format!("set-{i}").as_bytes(),
            -1,
        )
    }));
    reqs.extend((0..BULK_DELETES_COUNT).map(|i| delete(&node(i), -1)));
    reqs
}

// A follower down while more than 1000 txns commit converges after a restart.
on_every_ensemble!(member_down_during_1000_txns_converges);
fn member_down_during_1000_txns_converges(kinds: [Kind; 3]) {
    let Some(mut ens) = start(kinds) else { return };
    let leader = ens.wait_leader();
    let f = followers(&ens);
    let (down, writer) = (f[0], f[1]);
    // Some history first, so the member comes back with a log of its own.
    let mut c = ens.connect(writer);
    let pre: Vec<Request> = std::iter::once(create_req("/pre", b"", CreateMode::Persistent))
        .chain(
            (0..PRE_NODES_COUNT)
                .map(|i| create_req(&format!("/pre/n-{i}"), b"before", CreateMode::Persistent)),
        )
        .collect();
    let answers = pipeline(&mut c, &pre).expect("writes before the kill");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    ens.assert_same_tree();
    ens.kill(down);

    let reqs = bulk_requests();
    assert!(reqs.len() > 1000);
    let answers = pipeline(&mut c, &reqs).expect("bulk writes");
    for (req, a) in reqs.iter().zip(&answers) {
        assert!(a.is_ok(), "{req:?}: {a:?}");
    }
    let _ = c.close_session();

    ens.restart(down);
    assert_eq!(ens.wait_serving(down), Mode::Follower);
    assert_eq!(ens.wait_leader(), leader);
    let tree = ens.assert_same_tree();
    assert_eq!(
        tree["/bulk"].1.num_children as usize,
        BULK_NODES_COUNT - BULK_DELETES_COUNT
    );
    let down_tree = ens.dump_tree(down);
    assert_eq!(data_of(&down_tree, "/bulk/n-0399"), b"set-399");
    assert_eq!(down_tree["/bulk/n-0399"].1.version, 1);
    assert!(!down_tree.contains_key("/bulk/n-0000"));
    // How the leader brought the member back (DIFF, TRUNC or SNAP), for the record.
    for line in ens.log(leader).lines().filter(|l| {
        l.contains("LearnerHandler") && (l.contains("Synchronizing") || l.contains("Sending"))
    }) {
        eprintln!("[leader {leader} log] {line}");
    }
    timed("member_down_during_1000_txns_converges", &ens);
}

/// Moves a session to `addr` (bounded attempts); panics if it expired.
fn move_session(addr: &str, id: i64, passwd: &[u8], zxid: i64) -> common::RawClient {
    let mut last = String::new();
    for _ in 0..RESUME_ATTEMPTS_MAX {
        match resume_session(addr, id, passwd, zxid) {
            Ok(Some(c)) => return c,
            Ok(None) => panic!("session {id:#x} expired instead of moving to {addr}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    panic!("session {id:#x} did not move to {addr}: {last}")
}

// An ephemeral created through member A is on every member; its session moves
// to member B and closes there; the ephemeral is then gone everywhere.
on_every_ensemble!(ephemeral_goes_when_its_session_closes_on_another_member);
fn ephemeral_goes_when_its_session_closes_on_another_member(kinds: [Kind; 3]) {
    let Some(ens) = start(kinds) else { return };
    ens.wait_leader();
    let f = followers(&ens);
    let (a_sid, b_sid) = (f[0], f[1]);

    let mut a = ens.connect(a_sid);
    ok(
        "create /eph",
        call(&mut a, &create_req("/eph", b"x", CreateMode::Ephemeral)),
    );
    let eseq = created(
        "create /eseq-",
        call(
            &mut a,
            &create_req("/eseq-", b"", CreateMode::EphemeralSequential),
        ),
    );
    let tree = ens.assert_same_tree();
    assert_eq!(tree["/eph"].1.ephemeral_owner, a.session_id);
    assert_eq!(tree[&eseq].1.ephemeral_owner, a.session_id);

    let (id, passwd, zxid) = (a.session_id, a.passwd.clone(), a.last_zxid);
    drop(a); // the connection ends, the session does not
    let mut b = move_session(&ens.client_addr(b_sid), id, &passwd, zxid);
    let get = Request::GetData {
        path: "/eph".into(),
        watch: false,
    };
    match ok("getData /eph through B", call(&mut b, &get)) {
        Response::Data { stat, .. } => assert_eq!(stat.ephemeral_owner, id),
        other => panic!("getData /eph: {other:?}"),
    }
    let closed = b.close_session().expect("closeSession reply");
    assert_eq!(closed.err, 0, "closeSession through member {b_sid}");

    let tree = ens.assert_same_tree();
    for gone in ["/eph", eseq.as_str()] {
        assert!(!tree.contains_key(gone), "{gone} outlived its session");
    }
    timed(
        "ephemeral_goes_when_its_session_closes_on_another_member",
        &ens,
    );
}

// A session created through a follower whose client goes away without closing it
// expires (the leader owns expiry, fed by the followers' touches; its deadlines run
// on a monotonic clock): its ephemeral is then gone on every member.
on_every_ensemble!(ephemeral_goes_when_its_session_expires);
fn ephemeral_goes_when_its_session_expires(kinds: [Kind; 3]) {
    let Some(ens) = start(kinds) else { return };
    ens.wait_leader();
    let f = followers(&ens);
    // The shortest timeout the members allow (2 ticks).
    let mut a = common::RawClient::connect(&ens.client_addr(f[0]), 1);
    ok(
        "create /exp",
        call(&mut a, &create_req("/exp", b"x", CreateMode::Ephemeral)),
    );
    let timeout = Duration::from_millis(a.timeout_ms as u64);
    drop(a); // no closeSession and no pings: the session must expire
    let deadline = std::time::Instant::now() + timeout * 20 + Duration::from_secs(10);
    while ens.dump_tree(ens.wait_leader()).contains_key("/exp") {
        assert!(
            std::time::Instant::now() < deadline,
            "/exp outlived its session's timeout ({timeout:?}) twentyfold\n{}",
            ens.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let tree = ens.assert_same_tree();
    assert!(!tree.contains_key("/exp"), "a member kept /exp");
    timed("ephemeral_goes_when_its_session_expires", &ens);
}

/// Two participants and an observer: the observer says so (srvr and mntr) and
/// sees writes made through a participant and through itself. Mixed: a corral
/// observer of ZooKeeper participants, and a ZooKeeper observer of corral ones.
mod observer_reports_its_mode_and_sees_writes {
    use super::*;
    #[test]
    fn zookeeper() {
        observer_scenario([Kind::Reference; 3]);
    }
    #[test]
    fn corral() {
        observer_scenario([Kind::Corral; 3]);
    }
    #[test]
    fn corral_observes_zookeeper() {
        observer_scenario([Kind::Reference, Kind::Reference, Kind::Corral]);
    }
    #[test]
    fn zookeeper_observes_corral() {
        observer_scenario([Kind::Corral, Kind::Corral, Kind::Reference]);
    }
}

fn observer_scenario(kinds: [Kind; 3]) {
    let members = [
        (kinds[0], Role::Participant),
        (kinds[1], Role::Participant),
        (kinds[2], Role::Observer),
    ];
    if !Ensemble::can_start(&kinds) {
        return;
    }
    let ens = Ensemble::start_with(&members);
    assert_eq!(ens.mode(3), Some(Mode::Observer));
    assert_eq!(
        ens.mntr(3).get("zk_server_state").map(String::as_str),
        Some("observer")
    );
    let leader = ens.wait_leader();
    assert_eq!(
        leader, 2,
        "the highest participant leads; the observer cannot"
    );

    let mut p = ens.connect(1);
    let mut o = ens.connect(3);
    ok(
        "create /obs",
        call(&mut p, &create_req("/obs", b"", CreateMode::Persistent)),
    );
    ok(
        "create via participant",
        call(
            &mut p,
            &create_req("/obs/p", b"from 1", CreateMode::Persistent),
        ),
    );
    ok(
        "create via observer",
        call(
            &mut o,
            &create_req("/obs/o", b"from 3", CreateMode::Persistent),
        ),
    );
    ok(
        "setData via observer",
        call(&mut o, &set_data("/obs/p", b"set by 3", 0)),
    );
    ens.assert_same_tree();
    let seen = ens.dump_tree(3);
    assert_eq!(data_of(&seen, "/obs/p"), b"set by 3");
    assert_eq!(data_of(&seen, "/obs/o"), b"from 3");
    timed("observer_reports_its_mode_and_sees_writes", &ens);
}

// A paused (SIGSTOP) follower misses writes and catches up after SIGCONT; a
// stopped (SIGTERM) one catches up after a restart.
on_every_ensemble!(paused_and_stopped_followers_catch_up);
fn paused_and_stopped_followers_catch_up(kinds: [Kind; 3]) {
    let Some(mut ens) = start(kinds) else { return };
    let leader = ens.wait_leader();
    let f = followers(&ens);
    let mut c = ens.connect(leader);
    ok(
        "create /p",
        call(&mut c, &create_req("/p", b"", CreateMode::Persistent)),
    );

    ens.pause(f[0]);
    assert!(ens.is_running(f[0]) && !ens.is_live(f[0]));
    let writes: Vec<Request> = (0..50)
        .map(|i| create_req(&format!("/p/paused-{i}"), b"", CreateMode::Persistent))
        .collect();
    assert!(pipeline(&mut c, &writes)
        .expect("writes while paused")
        .iter()
        .all(Result::is_ok));
    ens.resume(f[0]);
    ens.wait_serving(f[0]);
    ens.wait_leader();
    ens.assert_same_tree();

    ens.stop(f[1]);
    let writes: Vec<Request> = (0..50)
        .map(|i| create_req(&format!("/p/stopped-{i}"), b"", CreateMode::Persistent))
        .collect();
    assert!(pipeline(&mut c, &writes)
        .expect("writes while stopped")
        .iter()
        .all(Result::is_ok));
    ens.restart(f[1]);
    ens.wait_serving(f[1]);
    ens.wait_leader();
    let tree = ens.assert_same_tree();
    assert_eq!(tree["/p"].1.num_children, 100);
    timed("paused_and_stopped_followers_catch_up", &ens);
}

// A follower forwards each write with its session's auth ids (REQUEST authinfo)
// and the leader decides with them: a create with the `auth` ACL through a
// digest-authenticated session gets that digest; on another follower, sessions
// without it are refused NoAuth and one with it may write, in any order on one
// link (the leader's link keeps decoded id vectors, and must not mix them up).
on_every_ensemble!(forwarded_writes_carry_their_sessions_auth_ids);
fn forwarded_writes_carry_their_sessions_auth_ids(kinds: [Kind; 3]) {
    use corral::proto::{perms, Acl};
    let Some(ens) = start(kinds) else { return };
    ens.wait_leader();
    let f = followers(&ens);

    let mut alice = ens.connect(f[0]);
    assert_eq!(alice.add_digest_auth("alice", "secret"), 0);
    let create = Request::Create(CreateRequest {
        acl: vec![Acl::new(perms::ALL, "auth", "")],
        ..match create_req("/acl", b"v0", CreateMode::Persistent) {
            Request::Create(c) => c,
            _ => unreachable!(),
        }
    });
    ok(
        "create /acl with the auth ACL through a follower",
        call(&mut alice, &create),
    );
    let get_acl = Request::GetAcl {
        path: "/acl".into(),
    };
    let digest = corral::tree::digest_id("alice:secret");
    for sid in ens.sids() {
        // getACL needs READ (3.8): as alice.
        let mut c = ens.connect(sid);
        assert_eq!(c.add_digest_auth("alice", "secret"), 0);
        match ok("getACL /acl", call(&mut c, &get_acl)) {
            Response::Acl { acl, .. } => assert_eq!(
                acl,
                vec![Acl::new(perms::ALL, "digest", &digest)],
                "member {sid}: the ACL the leader expanded from alice's ids"
            ),
            other => panic!("getACL /acl: {other:?}"),
        }
    }

    let mut anonymous = ens.connect(f[1]);
    let mut bob = ens.connect(f[1]);
    assert_eq!(bob.add_digest_auth("bob", "secret"), 0);
    let mut alice_too = ens.connect(f[1]);
    assert_eq!(alice_too.add_digest_auth("alice", "secret"), 0);
    let no_auth = Err(common::ensemble::CallError::Code(ErrorCode::NoAuth.code()));
    for round in 1..=3 {
        let set = set_data("/acl", format!("v{round}").as_bytes(), -1);
        assert_eq!(call(&mut anonymous, &set), no_auth, "no ids, round {round}");
        ok("setData /acl as alice", call(&mut alice_too, &set));
        assert_eq!(call(&mut bob, &set), no_auth, "bob's ids, round {round}");
    }
    // Opened again (setACL needs ADMIN: alice), so the harness can read it back
    // from every member.
    let open = Request::SetAcl {
        path: "/acl".into(),
        acl: Acl::open(),
        version: -1,
    };
    assert_eq!(call(&mut bob, &open), no_auth);
    ok("setACL /acl as alice", call(&mut alice_too, &open));
    let tree = ens.assert_same_tree();
    assert_eq!(tree["/acl"].0.as_deref(), Some(&b"v3"[..]));
    assert_eq!(tree["/acl"].1.version, 3);
    timed("forwarded_writes_carry_their_sessions_auth_ids", &ens);
}

/// The harness's own comparison (no servers): a missing path on either side, other
/// data and another Stat are each reported, and equal trees report nothing.
#[test]
fn tree_comparison_names_every_difference() {
    use common::ensemble::tree_differences;
    use corral::proto::Stat;
    let stat = Stat {
        czxid: 5,
        mzxid: 5,
        pzxid: 5,
        ..Stat::default()
    };
    let a: Tree = [
        ("/".to_string(), (Some(Vec::new()), Stat::default())),
        ("/only-a".to_string(), (Some(b"x".to_vec()), stat)),
        ("/data".to_string(), (Some(b"one".to_vec()), stat)),
        ("/stat".to_string(), (Some(b"s".to_vec()), stat)),
    ]
    .into_iter()
    .collect();
    let mut b = a.clone();
    b.remove("/only-a");
    b.insert("/only-b".into(), (Some(b"y".to_vec()), stat));
    b.get_mut("/data").unwrap().0 = None;
    b.get_mut("/stat").unwrap().1.mtime = 1;
    assert!(tree_differences(1, &a, 2, &a.clone()).is_empty());
    let diffs = tree_differences(1, &a, 2, &b);
    assert_eq!(diffs.len(), 4, "{diffs:#?}");
    for path in ["/only-a", "/only-b", "/data", "/stat"] {
        assert!(
            diffs.iter().any(|d| d.starts_with(&format!("{path}:"))),
            "{path} not reported: {diffs:#?}"
        );
    }
}

/// Writes of the rolling replacement (the load runs through all of it).
const ROLLING_WRITES_COUNT: usize = 1000;

/// The operator's migration, with no downtime: a three-ZooKeeper ensemble under a
/// client write load has each member replaced by corral in turn (same sid and
/// ports, empty data dir), followers first and the leader last. The load keeps
/// being acknowledged throughout (its session moves between members on
/// connection loss), and at the end three corral members hold every acknowledged
/// write.
#[test]
fn rolling_replacement_of_a_zookeeper_ensemble() {
    let Some(mut ens) = start(THREE_REFERENCES) else {
        return;
    };
    if !Ensemble::can_start(&THREE_CORRALS) {
        return;
    }
    let leader = ens.wait_leader();
    let mut order: Vec<u64> = ens.sids().into_iter().filter(|&s| s != leader).collect();
    order.push(leader);
    let addrs = ens.sids().iter().map(|&s| ens.client_addr(s)).collect();
    let load = WriteLoad::start(addrs, "/rolling", ROLLING_WRITES_COUNT);
    for (step, &sid) in order.iter().enumerate() {
        let want = (step + 1) * ROLLING_WRITES_COUNT / (order.len() + 1);
        assert!(
            load.wait_acked(want),
            "the load stalled before replacing member {sid}\n{}",
            ens.report()
        );
        eprintln!(
            "[rolling] {} writes acknowledged; replacing member {sid}",
            load.acked()
        );
        ens.replace(sid, Kind::Corral);
        let mode = ens.wait_serving(sid);
        assert!(
            matches!(mode, Mode::Follower | Mode::Leader),
            "member {sid}: {mode:?}"
        );
        ens.wait_leader();
    }
    let outcome = load.finish();
    eprintln!(
        "[rolling] done: {} writes acknowledged, {} connection losses, {} session(s) opened",
        outcome.acked.len(),
        outcome.connection_losses,
        outcome.sessions_opened
    );
    assert_eq!(outcome.acked.len(), ROLLING_WRITES_COUNT);
    for sid in ens.sids() {
        assert_eq!(ens.kind(sid), Kind::Corral);
        assert_has_acked(sid, &ens.dump_tree(sid), &outcome.acked);
    }
    let tree = ens.assert_same_tree();
    assert_eq!(
        tree["/rolling"].1.num_children as usize,
        ROLLING_WRITES_COUNT
    );
    timed("rolling_replacement_of_a_zookeeper_ensemble", &ens);
}

/// A reference leader serializes the snapshot it streams after SNAP while it goes on
/// committing, so the stream may hold part of the txns sent after it (and name ACL
/// indices its ACL map, written first, lacks). Each follower of a reference ensemble
/// with `FUZZY_BASE_NODES` znodes is replaced by an empty corral member while a
/// writer pipelines multis (a create under a new ACL list, a delete, a setData) and
/// setACLs with new lists through the leader; afterwards every member holds the
/// same tree, Stats and ACLs.
#[test]
fn corral_members_sync_from_a_reference_leader_that_goes_on_writing() {
    let Some(mut ens) = start(THREE_REFERENCES) else {
        return;
    };
    if !Ensemble::can_start(&THREE_CORRALS) {
        return;
    }
    let leader = ens.wait_leader();
    let mut c = ens.connect(leader);
    let base: Vec<Request> = std::iter::once(create_req("/fz", b"", CreateMode::Persistent))
        .chain(
            (0..FUZZY_BASE_NODES)
                .map(|i| create_req(&format!("/fz/n-{i:05}"), b"base", CreateMode::Persistent)),
        )
        .collect();
    let answers = pipeline(&mut c, &base).expect("the base tree");
    assert!(answers.iter().all(Result::is_ok));
    let mut next = 0;
    for sid in followers(&ens) {
        let load = FuzzyLoad::start(ens.client_addr(leader), next);
        assert!(
            load.wait_batches(FUZZY_BATCHES_BEFORE),
            "the load stalled\n{}",
            ens.report()
        );
        ens.replace(sid, Kind::Corral);
        assert_eq!(ens.wait_serving(sid), Mode::Follower);
        let after = load.batches() + FUZZY_BATCHES_AFTER;
        assert!(
            load.wait_batches(after),
            "the load stalled\n{}",
            ens.report()
        );
        let (batches, after) = load.finish();
        next = after;
        eprintln!("[fuzzy] member {sid} replaced by corral under {batches} write batches");
        for line in ens.log(sid).lines().filter(|l| {
            l.contains("installed the leader's snapshot")
                || l.contains("found part of their effect")
                || l.contains("ACL indices its ACL map lacks")
                || l.contains("passed over")
                || l.contains("leaving the leader")
                || l.contains("tree digest after txn")
        }) {
            eprintln!("[fuzzy] member {sid}: {line}");
        }
        let log = ens.log(sid);
        assert!(
            !log.contains("tree digest after txn") && !log.contains("while syncing is not after"),
            "member {sid} disagreed with the leader's digest or took its sync for out of order\n{}",
            ens.report()
        );
        let tree = ens.assert_same_tree();
        assert_same_acls(&ens, &tree);
    }
    assert_eq!(ens.wait_leader(), leader);
    timed(
        "corral_members_sync_from_a_reference_leader_that_goes_on_writing",
        &ens,
    );
}

/// Znodes under /fz before the first replacement.
const FUZZY_BASE_NODES: usize = 20_000;
/// Write batches before a member is replaced, and after it serves again.
const FUZZY_BATCHES_BEFORE: usize = 20;
const FUZZY_BATCHES_AFTER: usize = 20;
/// Multis (and as many setACLs) in one pipelined batch.
const FUZZY_BATCH_OPS: usize = 16;
/// Polls (POLL_MS apart) for the writer's progress.
const FUZZY_POLLS_MAX: usize = 3_000;

/// Every member answers the same ACL for every node under /fz.
fn assert_same_acls(ens: &Ensemble, tree: &Tree) {
    let reqs: Vec<Request> = (tree.keys())
        .filter(|p| p.starts_with("/fz"))
        .map(|p| Request::GetAcl { path: p.clone() })
        .collect();
    let mut first: Option<(u64, Vec<Result<Response, common::ensemble::CallError>>)> = None;
    for sid in ens.live_sids() {
        let mut c = ens.connect(sid);
        let acls = pipeline(&mut c, &reqs).expect("getACL of every node");
        match &first {
            None => first = Some((sid, acls)),
            Some((one, theirs)) => {
                for (req, (a, b)) in reqs.iter().zip(theirs.iter().zip(&acls)) {
                    assert_eq!(
                        format!("{a:?}"),
                        format!("{b:?}"),
                        "{req:?}: member {one} and member {sid} disagree"
                    );
                }
            }
        }
    }
    eprintln!("[fuzzy] every member answers the same {} ACLs", reqs.len());
}

/// A writer thread on one session: batches of multis {create /fz/w-i under a new
/// ACL list, delete /fz/w-(i-8), setData of a base node} and setACLs of base nodes
/// to new lists, until stopped. Every list keeps world READ, so anyone may read.
struct FuzzyLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    batches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The writer's next op index once it stopped.
    thread: std::thread::JoinHandle<Result<usize, String>>,
}

impl FuzzyLoad {
    /// From the writer's `first` op index on (one past the last of the one before).
    fn start(addr: String, first: usize) -> FuzzyLoad {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let batches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, b) = (stop.clone(), batches.clone());
        let thread = std::thread::spawn(move || {
            let mut c = common::ensemble::open_session(&addr)?;
            let mut i = first;
            while !s.load(Relaxed) {
                let mut reqs = Vec::with_capacity(2 * FUZZY_BATCH_OPS);
                for _ in 0..FUZZY_BATCH_OPS {
                    reqs.extend(fuzzy_ops(i));
                    i += 1;
                }
                let answers = pipeline(&mut c, &reqs).map_err(|e| format!("{e:?}"))?;
                if let Some((req, a)) = reqs.iter().zip(&answers).find(|(_, a)| a.is_err()) {
                    return Err(format!("{req:?}: {a:?}"));
                }
                b.fetch_add(1, Relaxed);
            }
            Ok(i)
        });
        FuzzyLoad {
            stop,
            batches,
            thread,
        }
    }

    fn batches(&self) -> usize {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (bounded) until `n` batches are done; false if the writer stalled or
    /// stopped.
    fn wait_batches(&self, n: usize) -> bool {
        for _ in 0..FUZZY_POLLS_MAX {
            if self.batches() >= n {
                return true;
            }
            if self.thread.is_finished() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        false
    }

    /// Stops the writer; the batches it completed and its next op index. Panics on
    /// its error.
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let batches = self.batches.clone();
        match self.thread.join() {
            Ok(Ok(next)) => (batches.load(std::sync::atomic::Ordering::Relaxed), next),
            Ok(Err(e)) => panic!("the writer failed: {e}"),
            Err(_) => panic!("the writer panicked"),
        }
    }
}

/// The writer's `i`th multi and setACL.
fn fuzzy_ops(i: usize) -> [Request; 2] {
    let list = |net: usize| {
        vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(
                perms::ALL,
                "ip",
                &format!("{net}.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            ),
        ]
    };
    let base = |k: usize| format!("/fz/n-{:05}", k % FUZZY_BASE_NODES);
    let mut ops = vec![Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: format!("/fz/w-{i:07}"),
        data: Some(b"w".to_vec()),
        acl: list(10),
        flags: 0,
        ttl: -1,
    })];
    if i >= 8 {
        ops.push(Request::Delete {
            path: format!("/fz/w-{:07}", i - 8),
            version: -1,
        });
    }
    ops.push(Request::SetData {
        path: base(i),
        data: Some(format!("set {i}").into_bytes()),
        version: -1,
    });
    let set_acl = Request::SetAcl {
        path: base(i + FUZZY_BASE_NODES / 2),
        acl: list(11),
        version: -1,
    };
    [Request::Multi(ops), set_acl]
}

/// A failure report's corral stacks: one line per thread, innermost frame first,
/// generic arguments dropped (checked on gdb's own output shape).
#[test]
fn gdb_stacks_are_compacted_to_a_line_per_thread() {
    let gdb = "\
[New LWP 14272]
Thread 12 (Thread 0x7f5c558896c0 (LWP 14272) \"corral-shard-1-\"):
#0  syscall () at ../sysdeps/unix/sysv/linux/x86_64/syscall.S:38
#1  0x00005586862ae7f7 in std::sys::pal::unix::futex::futex_wait () at library/std/src/sys/pal/unix/futex.rs:73
#5  0x0000558685c2ba0b in flume::signal::SyncSignal::wait (self=0x7f5c20000d00) at src/signal.rs:31
#6  0x0000558685b1b0c7 in flume::Hook<glommio::sys::blocking::BlockingThreadReq, flume::signal::SyncSignal>::wait_recv<glommio::sys::blocking::BlockingThreadReq> (self=0x7f5c20000cb0) at lib.rs:313

Thread 1 (Thread 0x7f5c55a8a000 (LWP 14260) \"corral\"):
#0  0x00007f5c55c9e0a6 in __futex_abstimed_wait_common () at futex-internal.c:57
";
    assert_eq!(
        common::ensemble::compact_stacks(gdb),
        "Thread 12 \"corral-shard-1-\": syscall < std::sys::pal::unix::futex::futex_wait \
         < flume::signal::SyncSignal::wait < flume::Hook::wait_recv\n\
         Thread 1 \"corral\": __futex_abstimed_wait_common"
    );
}
