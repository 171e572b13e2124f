//! Time-driven removals on a real corral process: TTL nodes whose ttl passed without a
//! change, and containers that had a child and are empty again, disappear once the
//! cleanup check runs (`corral.containerCheckIntervalMs`, the reference's
//! `znode.container.checkIntervalMs`); an empty container that never had a child stays,
//! and a TTL node with a child stays. The rules themselves are checked against the
//! reference in the tree's unit tests; this shows the server runs them, standalone
//! and as an ensemble's leader (the removals then reach a follower's clients).
//!
//! The check runs once per interval, not on every tick (the reference's
//! ContainerManager): `a_container_emptied_by_hand_waits_for_the_check` shows an
//! emptied container still there right after, with the reference's default
//! interval (60 s).

mod common;

use common::ensemble::{Ensemble, Mode, Role};
use common::{Kind, RawClient, Server};
use corral::proto::{Acl, CreateKind, CreateMode, CreateRequest, Request};
use std::time::{Duration, Instant};

fn create(c: &mut RawClient, path: &str, mode: CreateMode, ttl: i64) -> i32 {
    let kind = match mode {
        CreateMode::Container => CreateKind::Container,
        m if m.is_ttl() => CreateKind::Ttl,
        _ => CreateKind::Create,
    };
    c.call(&Request::Create(CreateRequest {
        kind,
        path: path.into(),
        data: Some(b"x".to_vec()),
        acl: Acl::open(),
        flags: mode.flags(),
        ttl,
    }))
    .expect("reply")
    .err
}

fn delete(c: &mut RawClient, path: &str) -> i32 {
    c.call(&Request::Delete {
        path: path.into(),
        version: -1,
    })
    .expect("reply")
    .err
}

fn exists(c: &mut RawClient, path: &str) -> bool {
    let r = c
        .call(&Request::Exists {
            path: path.into(),
            watch: false,
        })
        .expect("reply");
    r.err == 0
}

/// A short check interval, so the removals come within a test's patience.
const FAST_CHECKS: &str =
    "extendedTypesEnabled=true\ncorral.containerCheckIntervalMs=100\ntickTime=100\n";

#[test]
fn ttl_nodes_and_emptied_containers_are_removed() {
    let server = Server::corral(FAST_CHECKS);
    removals_happen(&server.addr(), &|| server.log());
}

#[test]
fn ttl_nodes_and_emptied_containers_are_removed_by_an_ensemble() {
    if !Ensemble::can_start(&[Kind::Corral]) {
        return;
    }
    // tickTime=100 would make syncLimit 500 ms: a member stalled that long on a
    // loaded box would start an election under the test's reads.
    let cfg = format!("{FAST_CHECKS}syncLimit=50\ninitLimit=50\n");
    let ens = Ensemble::start_cfg(&[(Kind::Corral, Role::Participant); 3], &cfg);
    ens.wait_leader();
    let follower = (ens.sids().into_iter())
        .find(|&s| ens.mode(s) == Some(Mode::Follower))
        .expect("a follower");
    removals_happen(&ens.client_addr(follower), &|| ens.report());
}

/// An emptied container outlives the moment it became empty: the check comes
/// once per interval (60 s by default), standalone and in an ensemble.
#[test]
fn a_container_emptied_by_hand_waits_for_the_check() {
    let server = Server::corral("");
    emptied_container_stays(&server.addr());
    if !Ensemble::can_start(&[Kind::Corral]) {
        return;
    }
    let ens = Ensemble::start(&[Kind::Corral; 3]);
    let leader = ens.wait_leader();
    emptied_container_stays(&ens.client_addr(leader));
}

fn emptied_container_stays(addr: &str) {
    let mut c = RawClient::connect(addr, 10_000);
    assert_eq!(create(&mut c, "/held", CreateMode::Container, -1), 0);
    assert_eq!(create(&mut c, "/held/a", CreateMode::Persistent, -1), 0);
    assert_eq!(delete(&mut c, "/held/a"), 0);
    // Past a few ticks (2 s by default): a per-tick check would have run.
    std::thread::sleep(Duration::from_millis(TICKS_WAITED_MS));
    assert!(
        exists(&mut c, "/held"),
        "the container went before the check"
    );
    let _ = c.close_session();
}

/// How long `emptied_container_stays` waits: several of the default 2 s ticks.
const TICKS_WAITED_MS: u64 = 5_000;

/// Creates TTL nodes and containers through `addr`, and waits (bounded) until
/// the ones due go; `log` shows the server(s) when they do not.
fn removals_happen(addr: &str, log: &dyn Fn() -> String) {
    let mut c = RawClient::connect(addr, 10_000);
    assert_eq!(
        create(&mut c, "/ttl", CreateMode::PersistentWithTtl, 300),
        0
    );
    assert_eq!(
        create(&mut c, "/ttl-parent", CreateMode::PersistentWithTtl, 300),
        0
    );
    assert_eq!(
        create(&mut c, "/ttl-parent/kid", CreateMode::Persistent, -1),
        0
    );
    assert_eq!(create(&mut c, "/box", CreateMode::Container, -1), 0);
    assert_eq!(create(&mut c, "/box/a", CreateMode::Persistent, -1), 0);
    assert_eq!(delete(&mut c, "/box/a"), 0);
    assert_eq!(
        create(&mut c, "/never-filled", CreateMode::Container, -1),
        0
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while (exists(&mut c, "/ttl") || exists(&mut c, "/box")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !exists(&mut c, "/ttl"),
        "the TTL node outlived its ttl:\n{}",
        log()
    );
    assert!(
        !exists(&mut c, "/box"),
        "the emptied container stayed:\n{}",
        log()
    );
    assert!(
        exists(&mut c, "/never-filled"),
        "a never-filled container is kept"
    );
    assert!(
        exists(&mut c, "/ttl-parent"),
        "a TTL node with a child is kept"
    );
    let _ = c.close_session();
}
