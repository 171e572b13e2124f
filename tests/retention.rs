//! Snapshot retention as an operator configures it: `autopurge.purgeInterval` 0 (the
//! reference's default) keeps every snapshot and log segment; a positive interval
//! purges at start-up (as the reference's purge timer, first run at once) and keeps
//! `autopurge.snapRetainCount` snapshots (at least 3) plus the log they need; and no
//! znode is lost either way.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Decoded, RawClient, Server};
use corral::proto::{Acl, CreateKind, CreateRequest, Request, Response};

/// Bounded wait for a directory condition (snapshots are written in the background).
const WAIT: Duration = Duration::from_secs(20);

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && !name.ends_with(".tmp")
        })
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, server: &Server, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what} within {WAIT:?}; log:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn node(i: usize) -> (String, Vec<u8>) {
    (format!("/r{i:03}"), vec![i as u8; 40_000])
}

fn check_nodes(addr: &str, n: usize) {
    let mut c = RawClient::connect(addr, 10_000);
    for i in 0..n {
        let (path, data) = node(i);
        match c.call_decoded(&Request::GetData {
            path: path.clone(),
            watch: false,
        }) {
            Ok(Decoded::Ok(Response::Data { data: got, .. })) => {
                assert_eq!(got, Some(data), "{path} after the restart")
            }
            other => panic!("getData {path} after the restart: {other:?}"),
        }
    }
}

#[test]
fn purge_follows_autopurge_settings_and_loses_nothing() {
    let data_cfg = "snapCount=10\ncorral.logSegmentBytes=1048576\n";
    let server = Server::corral(&format!("{data_cfg}autopurge.purgeInterval=0\n"));
    let (snaps, logs) = (
        server.data_dir(),
        server.data_dir().with_file_name("datalog"),
    );
    // With snapCount=10 a snapshot is due every 5-10 txns; one still being written
    // defers the next until the write after it finishes. On a loaded machine a
    // snapshot of a few MB takes a second, so write in rounds of 10 creates and let
    // each round's snapshot land (nudged by one more create now and then) before the
    // next: at least 80 creates (3.2 MB of log) and 5 snapshots, bounded.
    let mut c = RawClient::connect(&server.addr(), 10_000);
    let mut n = 0;
    let create_next = |c: &mut RawClient, n: &mut usize| {
        let (path, data) = node(*n);
        let r = c
            .call_decoded(&Request::Create(CreateRequest {
                kind: CreateKind::Create,
                path,
                data: Some(data),
                acl: Acl::open(),
                flags: 0,
                ttl: -1,
            }))
            .unwrap();
        assert!(matches!(r, Decoded::Ok(_)), "create #{n}: {r:?}");
        *n += 1;
    };
    while n < 80 || files(&snaps, "snapshot.").len() < 5 {
        assert!(n < 400, "no 5 snapshots after {n} creates");
        let before = files(&snaps, "snapshot.").len();
        for _ in 0..10 {
            create_next(&mut c, &mut n);
        }
        for poll in 1..=400 {
            if files(&snaps, "snapshot.").len() > before {
                break;
            }
            if poll % 10 == 0 {
                create_next(&mut c, &mut n);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    wait_for("at least 5 snapshots with purging off", &server, || {
        files(&snaps, "snapshot.").len() >= 5
    });
    let segments_before = files(&logs, "log.");
    assert!(
        segments_before.len() >= 3,
        "3.2 MB of records in 1 MiB segments: {segments_before:?}"
    );
    drop(c);

    // Purging on, asking for 1 retained snapshot: the reference raises that to 3.
    let server = server.restart_corral(&format!(
        "{data_cfg}autopurge.purgeInterval=1\nautopurge.snapRetainCount=1\n"
    ));
    assert!(
        server
            .log()
            .contains("autopurge.snapRetainCount=1 is below the minimum; using 3"),
        "log:\n{}",
        server.log_tail()
    );
    wait_for(
        "exactly 3 snapshots once the start-up purge ran",
        &server,
        || files(&snaps, "snapshot.").len() == 3 && server.log().contains("purge: removed"),
    );
    let segments_after = files(&logs, "log.");
    assert!(
        !segments_after.contains(&segments_before[0]),
        "the oldest segment, older than every retained snapshot, is removed: \
         before {segments_before:?}, after {segments_after:?}"
    );
    check_nodes(&server.addr(), n);

    // And a restart from what is left recovers every znode.
    let server = server.restart_corral(&format!("{data_cfg}autopurge.purgeInterval=1\n"));
    check_nodes(&server.addr(), n);
}
