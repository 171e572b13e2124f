//! Time-driven removals on a real corral process: TTL nodes whose ttl passed without a
//! change, and containers that had a child and are empty again, disappear once the
//! cleanup check runs (`corral.containerCheckIntervalMs`, the reference's
//! `znode.container.checkIntervalMs`); an empty container that never had a child stays,
//! and a TTL node with a child stays. The rules themselves are checked against the
//! reference in the tree's unit tests; this shows the server runs them.

mod common;

use common::{RawClient, Server};
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

fn exists(c: &mut RawClient, path: &str) -> bool {
    let r = c
        .call(&Request::Exists {
            path: path.into(),
            watch: false,
        })
        .expect("reply");
    r.err == 0
}

#[test]
fn ttl_nodes_and_emptied_containers_are_removed() {
    let server = Server::corral(
        "extendedTypesEnabled=true\ncorral.containerCheckIntervalMs=100\ntickTime=100\n",
    );
    let mut c = RawClient::connect(&server.addr(), 10_000);
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
    let del = c
        .call(&Request::Delete {
            path: "/box/a".into(),
            version: -1,
        })
        .expect("reply");
    assert_eq!(del.err, 0);
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
        server.log()
    );
    assert!(
        !exists(&mut c, "/box"),
        "the emptied container stayed:\n{}",
        server.log()
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
