//! A slow or stalled disk, played by the `LD_PRELOAD` shim of `common::stall`
//! around `fdatasync(2)` and `fsync(2)`: while a file the test creates exists, every
//! sync call waits (or only those of the threads named), and the test knows when
//! the server is inside the stalled sync. What an operator and the clients see:
//! - a log sync slower than `fsync.warningthresholdms`: the reference's warning in
//!   the log on both servers, and (corral) `fsync_threshold_exceed_count` in the
//!   AdminServer's `srvr`; the write is acknowledged once the disk returns;
//! - corral after such a sync: its next syncs run on a blocking thread
//!   (`server::sync_place`), so a second stall holds only the writes, and another
//!   session's reads are answered meanwhile (the reference holds them too: printed,
//!   not asserted); a restart keeps every acknowledged write;
//! - an ensemble whose leader's disk stalls, or the disk of the follower the writes
//!   go through: the writes go on, on corral, the reference and mixed ensembles;
//! - a follower whose disk stays stalled: it takes HELD_SYNC_INPUTS_COUNT_MAX inputs,
//!   says so and takes no more (bounded memory), the others go on, and it rejoins;
//!   a leader whose disk stays stalled does the same, and the followers elect a new
//!   leader and go on writing;
//! - a log segment whose zero-fill is stalled (the preallocation thread's final
//!   fsync): the first append waits for it at most 100 ms, then goes on in a
//!   fallocated segment and says so; once the fill ends, appends move to the spare
//!   (logged), and nothing is lost.
//!
//! No timing is asserted: the test holds each stall until it has seen what it
//! checks, and every wait is bounded.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ensemble::{pipeline, Ensemble, Mode, Role};
use common::stall::{preload_env, Stall};
use common::{free_port, http_get, require_reference, Decoded, Kind, RawClient, Server};
use corral::proto::{Request, Response};

/// How long a stalled sync is held after the server entered it: well above
/// [`FSYNC_WARNING_THRESHOLD_MS`], so the sync takes longer than the threshold
/// whatever the machine's pace.
const STALL_HOLD_MS: u64 = 300;
/// `fsync.warningthresholdms` of the servers under test.
const FSYNC_WARNING_THRESHOLD_MS: u64 = 100;
/// Bound on waiting for the server to enter a stalled sync, or for a log line.
const SEEN_TIMEOUT_MS: u64 = 30_000;
/// How long the reference's held read is waited for before the stall is lifted.
const REFERENCE_READ_WAIT_MS: u64 = 2_000;
/// Poll interval of the bounded waits.
const POLL_MS: u64 = 20;
/// Session timeout of the test's clients.
const SESSION_TIMEOUT_MS: i32 = 30_000;

/// Polls `cond` every POLL_MS up to SEEN_TIMEOUT_MS; panics with the server's
/// log if it never holds.
fn wait_until(server: &Server, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(SEEN_TIMEOUT_MS);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "waited {SEEN_TIMEOUT_MS} ms for {what}; server log:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// The server started with the shim preloaded, stalling on `stall_file`.
fn start(kind: Kind, cfg_extra: &str, stall_file: &Path, only_thread: Option<&str>) -> Server {
    let env = preload_env(stall_file, only_thread);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with_env(kind, cfg_extra, &env)
}

/// Waits (bounded) until a sync call is held by `stall`.
fn wait_entered(stall: &Stall, server: &Server) {
    wait_until(server, "a sync call to enter the stall", || stall.entered());
}

fn set_data(path: &str, data: &[u8]) -> Request {
    Request::SetData {
        path: path.to_string(),
        data: Some(data.to_vec()),
        version: -1,
    }
}

/// getData's data, or a panic naming what came instead.
fn get(c: &mut RawClient, path: &str) -> Vec<u8> {
    let req = Request::get_data_of(path);
    match c.call_decoded(&req) {
        Ok(Decoded::Ok(Response::Data {
            data: Some(data), ..
        })) => data,
        other => panic!("getData {path}: {other:?}"),
    }
}

/// The next reply on `c` must be a success (a write sent earlier).
fn expect_ok(c: &mut RawClient, what: &str) {
    match c.wait_reply() {
        Ok(r) => assert_eq!(r.err, 0, "{what} failed: {r:?}"),
        Err(e) => panic!("{what}: no reply ({e:?})"),
    }
}

/// One log sync held past the threshold: the warning and the counter, then (corral)
/// a second stall that holds the write but not another session's reads.
fn slow_log_sync(kind: Kind) {
    if kind == Kind::Reference && !require_reference() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stall_file = tmp.path().join("stall");
    let mut cfg = format!("fsync.warningthresholdms={FSYNC_WARNING_THRESHOLD_MS}\n");
    let admin = (kind == Kind::Corral).then(free_port);
    if let Some(port) = admin {
        // One shard with the sequencer beside it (the default on up to 2 CPUs):
        // both sessions on the executor whose inline sync would hold them.
        cfg.push_str(&format!(
            "corral.shardCores=1\n\
             admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={port}\n"
        ));
    }
    let server = start(kind, &cfg, &stall_file, None);
    let mut a = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let mut b = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let created = a.call(&Request::create_open("/slow", b"v0")).unwrap();
    assert_eq!(created.err, 0, "create /slow: {created:?}");

    // First stall: held STALL_HOLD_MS after the server entered it.
    let stall = Stall::begin(&stall_file);
    a.send_request(&set_data("/slow", b"v1")).unwrap();
    wait_entered(&stall, &server);
    std::thread::sleep(Duration::from_millis(STALL_HOLD_MS));
    drop(stall);
    expect_ok(&mut a, "setData held by the first stall");
    wait_until(&server, "the slow-fsync warning in the log", || {
        let log = server.log();
        log.contains("fsync-ing the") && log.contains("adversely")
    });
    if let Some(admin) = admin {
        // The reference counts it in the same place (its AdminServer needs jars
        // this test does not put on its class path).
        let (status, body) = http_get(&format!("127.0.0.1:{admin}"), "/commands/srvr");
        assert_eq!(status, 200, "srvr: {body}");
        let srvr: serde_json::Value = serde_json::from_str(&body).unwrap();
        let exceeded = srvr["server_stats"]["fsync_threshold_exceed_count"].as_u64();
        assert!(
            exceeded.is_some_and(|n| n >= 1),
            "fsync_threshold_exceed_count after a {STALL_HOLD_MS} ms sync: {exceeded:?} in {body}"
        );
    }

    // Second stall, right after: the write waits for the disk; does another
    // session's read?
    let stall = Stall::begin(&stall_file);
    a.send_request(&set_data("/slow", b"v2")).unwrap();
    wait_entered(&stall, &server);
    match kind {
        Kind::Corral => {
            // Answered while the sync is still held, from the last durable state.
            assert_eq!(get(&mut b, "/slow"), b"v1", "a read during the stall");
            drop(stall);
        }
        Kind::Reference => {
            b.set_read_timeout(Duration::from_millis(REFERENCE_READ_WAIT_MS));
            b.send_request(&Request::get_data_of("/slow")).unwrap();
            let during = b.wait_reply();
            drop(stall);
            let answered = during.is_ok();
            if !answered {
                b.set_read_timeout(Duration::from_millis(SEEN_TIMEOUT_MS));
                b.wait_reply()
                    .expect("the reference's held read, once the disk returned");
            }
            eprintln!(
                "[reference] a read during a stalled log sync answered before the disk \
                 returned: {answered} (not asserted)"
            );
        }
    }
    expect_ok(&mut a, "setData held by the second stall");
    b.set_read_timeout(Duration::from_millis(SEEN_TIMEOUT_MS));
    assert_eq!(get(&mut b, "/slow"), b"v2");

    if kind == Kind::Corral {
        drop((a, b));
        let server = server.restart_corral("");
        let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
        assert_eq!(get(&mut c, "/slow"), b"v2", "after a restart");
    }
}

#[test]
fn slow_log_sync_corral() {
    slow_log_sync(Kind::Corral);
}

#[test]
fn slow_log_sync_reference() {
    slow_log_sync(Kind::Reference);
}

/// The first log segment's zero-fill stalled from start-up: the first append (the
/// first session's creation) waits for it at most ROLL_SPARE_WAIT_MS_MAX (100 ms),
/// then goes on in a fallocated segment, and the log says so. Once the fill ends,
/// the next append moves to the zero-filled spare (logged too); a restart reads
/// both segments.
#[test]
fn a_roll_whose_spare_is_late_goes_on_in_a_fallocated_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let stall_file = tmp.path().join("stall");
    let stall = Stall::begin(&stall_file);
    let server = start(Kind::Corral, "", &stall_file, Some("corral-prealloc"));
    wait_entered(&stall, &server);
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let created = c.call(&Request::create_open("/early", b"e")).unwrap();
    assert_eq!(
        created.err, 0,
        "create while the spare is filled: {created:?}"
    );
    assert!(
        stall.entered(),
        "the spare's fill was let go before the writes"
    );
    let log = server.log();
    assert!(
        log.contains("zero-fill is not done after 100 ms; writes go on in")
            && log.contains("fallocated"),
        "no line about the fallocated segment:\n{log}"
    );
    assert!(
        !log.contains("a log segment roll waits for the spare"),
        "the roll waited for the spare:\n{log}"
    );
    drop(stall);
    // The fill ends; an append after that moves to the spare.
    let mut n = 0;
    wait_until(&server, "appends moving to the zero-filled spare", || {
        n += 1;
        let req = Request::create_open(&format!("/after-{n}"), b"a");
        let r = c.call(&req).unwrap();
        assert_eq!(r.err, 0, "create /after-{n}: {r:?}");
        server
            .log()
            .contains("log appends move from the fallocated segment to the zero-filled spare")
    });
    let segments = std::fs::read_dir(server.data_log_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("log.") && name != "log.prealloc"
        })
        .count();
    assert!(segments >= 2, "{segments} log segment(s) in the data dir");
    drop(c);
    let server = server.restart_corral("");
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    assert_eq!(get(&mut c, "/early"), b"e", "after a restart");
    assert_eq!(get(&mut c, &format!("/after-{n}")), b"a", "after a restart");
}

/// Which member's disk a stalled-disk ensemble test stalls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    Leader,
    /// The follower the writes go through.
    WritersFollower,
    /// The follower the writes do not go through.
    OtherFollower,
}

/// Writes through a follower while one member's disk is stalled: every one is
/// acknowledged before the stall ends, and the member had a sync held meanwhile.
/// The leader's stalled: its followers' ACKs are a quorum. The writer's follower
/// stalled: it still forwards the writes and applies the COMMITs (its ACKs wait).
/// The reference does both (its SyncRequestProcessor stalls, nothing else does).
/// A corral member used to sync on its own executor while its disk was fast, so a
/// stall held every write of the ensemble (the leader's) or of the member's
/// clients, and the others dropped it after syncLimit.
fn writes_go_on_while_a_disk_stalls(kinds: &[Kind], victim: Victim) {
    if !Ensemble::can_start(kinds) {
        return;
    }
    let members: Vec<(Kind, Role)> = kinds.iter().map(|&k| (k, Role::Participant)).collect();
    // corral's sync placement knob at its most inline (it applies to a standalone
    // sequencer): a quorum core that synced inline again would fail here whatever
    // this machine's disk is like. The reference reads it as a system property.
    // syncLimit long enough for every write: a follower whose disk stalls holds its
    // ACKs, and a leader drops a learner that has not acked for syncLimit (the
    // reference's LearnerHandler does too), which ends the writer's session when the
    // stalled member is its follower. The writes must not race that on a slow box.
    let cfg = format!(
        "corral.inlineSyncMaxMicros=1000000000\nsyncLimit={STALLED_DISK_SYNC_LIMIT_TICKS}\n"
    );
    let StalledEnsemble {
        ens,
        leader,
        writer: follower,
        stalled,
        mut c,
        stall,
        ..
    } = StalledEnsemble::start(&members, &cfg, "/stalled-leader", victim);
    for i in 0..STALLED_DISK_WRITES {
        let set = set_data("/stalled-leader", i.to_string().as_bytes());
        match c.call(&set) {
            Ok(r) => assert_eq!(
                r.err, 0,
                "write {i} while leader {leader}'s disk stalls: {r:?}"
            ),
            Err(e) => panic!(
                "write {i} through {follower} got no answer while {victim:?} {stalled}'s \
                 disk stalls ({e:?})\n{}",
                ens.report()
            ),
        }
    }
    assert!(
        stall.entered(),
        "{victim:?} {stalled} ({}) synced nothing during {STALLED_DISK_WRITES} writes",
        ens.kind(stalled)
    );
    drop(stall);
    assert_eq!(
        ens.leader(),
        Some(leader),
        "the leader changed:\n{}",
        ens.report()
    );
    ens.assert_same_tree();
}

/// Writes sent while a member's disk is stalled.
const STALLED_DISK_WRITES: usize = 200;
/// syncLimit of those ensembles, in ticks of 200 ms: 30 s for the 200 writes.
const STALLED_DISK_SYNC_LIMIT_TICKS: u32 = 150;

#[test]
fn writes_go_on_while_a_disk_stalls_corral() {
    for victim in [Victim::Leader, Victim::WritersFollower] {
        writes_go_on_while_a_disk_stalls(&[Kind::Corral; 3], victim);
    }
}

#[test]
fn writes_go_on_while_a_disk_stalls_reference() {
    for victim in [Victim::Leader, Victim::WritersFollower] {
        writes_go_on_while_a_disk_stalls(&[Kind::Reference; 3], victim);
    }
}

/// A corral leader (the highest sid leads at start) of ZooKeeper followers, and
/// the reverse; the writes go through sid 1.
#[test]
fn writes_go_on_while_a_disk_stalls_mixed() {
    for victim in [Victim::Leader, Victim::WritersFollower] {
        writes_go_on_while_a_disk_stalls(&[Kind::Reference, Kind::Reference, Kind::Corral], victim);
        writes_go_on_while_a_disk_stalls(&[Kind::Corral, Kind::Corral, Kind::Reference], victim);
    }
}

/// What a member logs when its stalled sync has let in HELD_SYNC_INPUTS_COUNT_MAX
/// inputs (`server::quorum`).
const HELD_SYNC_STOP_LINE: &str = "this member takes no more until the disk answers";
/// Writes pipelined per round while a follower's disk stays stalled.
const HELD_ROUND_WRITES: usize = 500;
/// Bound on the writes sent before the stalled follower must have stopped taking
/// input: each reaches it as a PROPOSAL and a COMMIT, so ≈ 8,200 suffice.
const HELD_WRITES_MAX: usize = 40_000;
/// The members of the held-sync tests: 3 corral participants.
const HELD_MEMBERS: [(Kind, Role); 3] = [(Kind::Corral, Role::Participant); 3];

/// A follower whose disk stays stalled while the ensemble goes on: it takes
/// HELD_SYNC_INPUTS_COUNT_MAX (16,384) inputs while its sync is out, says so, and
/// then takes nothing more, so a disk that never answers costs bounded memory.
/// The leader and the other follower go on writing; once the disk answers, the
/// stalled follower rejoins with the same tree.
#[test]
fn a_follower_whose_disk_stays_stalled_stops_taking_input_and_rejoins() {
    let mut held = StalledEnsemble::start(&HELD_MEMBERS, "", "/held", Victim::OtherFollower);
    let written = held.write_until_stopped();
    eprintln!(
        "[slow_disk] follower {} stopped taking input after {written} writes",
        held.stalled
    );
    drop(held.stall);
    held.ens.assert_same_tree();
}

/// An ensemble whose members preload the sync shim, a node created through a
/// follower (the writer), and a stall begun on the victim's disk.
struct StalledEnsemble {
    ens: Ensemble,
    leader: u64,
    followers: Vec<u64>,
    writer: u64,
    stalled: u64,
    c: RawClient,
    stall: Stall,
}

impl StalledEnsemble {
    fn start(members: &[(Kind, Role)], cfg: &str, node: &str, victim: Victim) -> Self {
        let mut ens = Ensemble::configure(members, cfg);
        ens.preload_sync_stall();
        ens.launch_all();
        let leader = ens.wait_leader();
        let followers: Vec<u64> = ens.sids().into_iter().filter(|&s| s != leader).collect();
        let writer = followers[0];
        let stalled = match victim {
            Victim::Leader => leader,
            Victim::WritersFollower => writer,
            Victim::OtherFollower => followers[1],
        };
        let mut c = ens.connect(writer);
        let created = c.call(&Request::create_open(node, b"0"));
        assert_eq!(
            created.map(|r| r.err).ok(),
            Some(0),
            "create {node} through {writer}"
        );
        let stall = Stall::begin(&ens.sync_stall_file(stalled).unwrap());
        StalledEnsemble {
            ens,
            leader,
            followers,
            writer,
            stalled,
            c,
            stall,
        }
    }

    /// Pipelines rounds of HELD_ROUND_WRITES setData through the writer until the
    /// stalled member logs that it takes no more input; returns the writes sent.
    /// When the stalled member is the leader, the round in flight then may end
    /// without its replies (the writer leaves that leader).
    fn write_until_stopped(&mut self) -> usize {
        let (ens, writer, stalled) = (&self.ens, self.writer, self.stalled);
        let cut_off = stalled == self.leader;
        let mut written = 0;
        while !ens.log(stalled).contains(HELD_SYNC_STOP_LINE) {
            assert!(
                written < HELD_WRITES_MAX,
                "member {stalled} still takes input after {written} writes with its disk \
                 stalled (sync held: {})\n{}",
                self.stall.entered(),
                ens.report()
            );
            let round: Vec<Request> = (written..written + HELD_ROUND_WRITES)
                .map(|i| set_data("/held", i.to_string().as_bytes()))
                .collect();
            let replies = match pipeline(&mut self.c, &round) {
                Ok(r) => r,
                Err(e) if cut_off && ens.log(stalled).contains(HELD_SYNC_STOP_LINE) => {
                    eprintln!("[slow_disk] the round in flight ended: {e:?}");
                    return written + HELD_ROUND_WRITES;
                }
                Err(e) => panic!("writes through {writer}: {e:?}\n{}", ens.report()),
            };
            for (i, r) in replies.into_iter().enumerate() {
                if let Err(e) = r {
                    panic!("write {} through {writer}: {e:?}", written + i);
                }
            }
            written += HELD_ROUND_WRITES;
        }
        written
    }
}

/// Polls (bounded) until one of `candidates` says leader and the others follower.
fn wait_new_leader(ens: &Ensemble, candidates: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(SEEN_TIMEOUT_MS);
    loop {
        let modes: Vec<_> = candidates.iter().map(|&s| (s, ens.mode(s))).collect();
        let leaders: Vec<u64> = modes
            .iter()
            .filter(|(_, m)| *m == Some(Mode::Leader))
            .map(|(s, _)| *s)
            .collect();
        if leaders.len() == 1
            && modes
                .iter()
                .all(|(s, m)| *s == leaders[0] || *m == Some(Mode::Follower))
        {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no new leader among {candidates:?} ({modes:?})\n{}",
            ens.report()
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// The leader's disk stays stalled: it takes HELD_SYNC_INPUTS_COUNT_MAX inputs while
/// its sync is out (the followers' ACKs commit the writes meanwhile), says so and
/// then takes nothing, not even its own timer, so it stops pinging. The followers
/// drop it after syncLimit and elect one of themselves; writes go on through them.
/// Once the disk answers, the old leader rejoins and every member has the same tree.
#[test]
fn a_leader_whose_disk_stays_stalled_stops_taking_input_and_is_replaced() {
    let mut held = StalledEnsemble::start(&HELD_MEMBERS, "", "/held", Victim::Leader);
    let written = held.write_until_stopped();
    let StalledEnsemble {
        ens,
        leader: stalled,
        followers,
        writer,
        stall,
        ..
    } = held;
    eprintln!("[slow_disk] leader {stalled} stopped taking input after {written} writes");
    assert!(
        written > HELD_ROUND_WRITES,
        "no round of writes was acknowledged while the leader's disk stalled"
    );
    let leader = wait_new_leader(&ens, &followers);
    let mut c = ens.connect(writer);
    let after = c.call(&set_data("/held", b"after"));
    assert_eq!(
        after.as_ref().map(|r| r.err).ok(),
        Some(0),
        "a write through {writer} under leader {leader}: {after:?}"
    );
    drop(stall);
    assert_eq!(
        ens.wait_leader(),
        leader,
        "the old leader rejoins as a follower"
    );
    let tree = ens.assert_same_tree();
    assert_eq!(
        tree.get("/held").and_then(|(d, _)| d.clone()).as_deref(),
        Some(&b"after"[..])
    );
}
