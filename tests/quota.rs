//! Quotas (ZooKeeper 3.7+), reference against corral: the same scripts of raw
//! requests run on both servers and every reply must be byte-identical once zxids,
//! times and session ids are mapped to comparable values.
//!
//! - Stats upkeep: setquota-style creates of `/zookeeper/quota/<path>/zookeeper_limits`
//!   and `zookeeper_stats`, then creates, deletes, setDatas, a multi, an ephemeral
//!   removed by its session's close, nested and removed quotas; listquota-style
//!   reads of the limits and stats nodes (data and Stat) after each step. Then corral
//!   restarts twice (log replay alone, then from a snapshot) and the reads must
//!   still equal the reference's.
//! - Enforcement (`enforceQuota=true`): the same writes fail with QuotaExceeded
//!   (hard limits), soft limits pass, multis are checked op by op.
//! - Ensembles (3 corrals, corral followers of a ZooKeeper leader, the reverse)
//!   with enforcement on: every member keeps the same stats text, a member that
//!   was paused catches up to it.
//! - The real zkCli (`setquota`, `listquota`, `delquota`, writes past a limit)
//!   prints the same lines against both servers.
//!
//! Runs on the test thread with blocking raw clients (`common::RawClient`) and the
//! reference's CLI as a child process.

mod common;

use std::time::{Duration, Instant};

use common::ensemble::{self, Ensemble, Role};
use common::{
    four_letter_word, run_client_program, zookeeper_cli_command, Kind, Normalizer, RawClient,
    Reply, Server,
};
use corral::proto::{Acl, CreateKind, CreateRequest, Reader, ReplyHeader, Request};

/// Session timeout asked for by the raw clients.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// Bounded wait for corral's background snapshot after a replay.
/// How often that wait looks at the data dir.
/// The zoo.cfg line that turns enforcement on (the reference makes it the system
/// property `zookeeper.enforceQuota`).
const ENFORCE: &str = "enforceQuota=true\n";

/// What zkCli `setquota -n 5` writes as the limits of a new quota.
const SOFT_COUNT_5: &str = "count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1";
/// What zkCli writes as the stats of a new quota (the server recounts it).
const NEW_STATS: &str = "count=0,bytes=0";

fn create(path: &str, data: Option<&[u8]>, flags: i32) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create2,
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        acl: Acl::open(),
        flags,
        ttl: -1,
    })
}

fn create_in_multi(path: &str, data: Option<&[u8]>) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        acl: Acl::open(),
        flags: 0,
        ttl: -1,
    })
}

fn set(path: &str, data: Option<&[u8]>, version: i32) -> Request {
    Request::SetData {
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        version,
    }
}

fn delete(path: &str) -> Request {
    Request::Delete {
        path: path.into(),
        version: -1,
    }
}

fn limits(path: &str) -> String {
    format!("/zookeeper/quota{path}/zookeeper_limits")
}

fn stats(path: &str) -> String {
    format!("/zookeeper/quota{path}/zookeeper_stats")
}

/// The creates zkCli `setquota` sends for `path` with `limit_text`, whose quota
/// parents from `first_new` on do not exist yet (`/zookeeper/quota` always does).
fn setquota(path: &str, first_new: usize, limit_text: &str) -> Vec<Request> {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let mut v = Vec::new();
    for i in first_new..parts.len() {
        let q = format!("/zookeeper/quota/{}", parts[..=i].join("/"));
        v.push(create(&q, None, 0));
    }
    v.push(create(&limits(path), Some(limit_text.as_bytes()), 0));
    v.push(create(&stats(path), Some(NEW_STATS.as_bytes()), 0));
    v
}

/// listquota's reads: the limits, then the stats, each with its Stat.
fn listquota(path: &str) -> Vec<Request> {
    vec![
        Request::get_data_of(&limits(path)),
        Request::get_data_of(&stats(path)),
    ]
}

// ---------------------------------------------------------------- comparing replies

/// A reply in comparable form: header and body encoded again after zxids, times
/// and session ids were mapped by the run's [`Normalizer`].
struct Comparable {
    header: Vec<u8>,
    body: Vec<u8>,
}

fn comparable(opcode: i32, reply: &Reply, norm: &mut Normalizer, what: &str) -> Comparable {
    let mut header = Vec::new();
    ReplyHeader {
        xid: reply.xid,
        zxid: norm.zxid(reply.zxid),
        err: reply.err,
    }
    .encode(&mut header);
    let mut body = Vec::new();
    if reply.err != 0 {
        body.extend_from_slice(&reply.body);
    } else {
        let mut r = Reader::new(&reply.body);
        let resp = common::decode_body(opcode, &mut r)
            .unwrap_or_else(|e| panic!("{what}: {e}; body {:02x?}", reply.body));
        assert!(r.is_empty(), "{what}: bytes left over");
        norm.response(&resp).encode(&mut body);
    }
    Comparable { header, body }
}

/// Sends each request in turn; the comparable form of each reply.
fn run(c: &mut RawClient, reqs: &[Request], norm: &mut Normalizer, who: &str) -> Vec<Comparable> {
    reqs.iter()
        .map(|req| {
            let what = format!("{who}: {}", common::short(req));
            let reply = c.call(req).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            comparable(req.opcode(), &reply, norm, &what)
        })
        .collect()
}

/// Which parts of two runs' replies must agree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Header (xid, zxid, err) and body.
    Whole,
    /// Error code and body (reads of a new session after a restart).
    Body,
}

fn assert_same(
    reqs: &[Request],
    want: &[Comparable],
    got: &[Comparable],
    how: Compare,
    what: &str,
) {
    assert_eq!(want.len(), got.len());
    for ((req, w), g) in reqs.iter().zip(want).zip(got) {
        let (wh, gh) = match how {
            Compare::Whole => (&w.header[..], &g.header[..]),
            // The err field: the header's last 4 bytes.
            Compare::Body => (&w.header[12..], &g.header[12..]),
        };
        assert!(
            wh == gh && w.body == g.body,
            "{what}: {} answered differently\n reference {wh:02x?} {:?}\n corral    {gh:02x?} {:?}",
            common::short(req),
            String::from_utf8_lossy(&w.body),
            String::from_utf8_lossy(&g.body),
        );
    }
}

/// A reply's data as text, for the assertions that pin the reference's numbers.
fn data_of(c: &mut RawClient, path: &str) -> String {
    let reply = c.call(&Request::get_data_of(path)).expect("getData");
    match common::decode_reply(corral::proto::op::GET_DATA, &reply) {
        common::Decoded::Ok(corral::proto::Response::Data { data, .. }) => {
            String::from_utf8(data.unwrap_or_default()).unwrap()
        }
        other => panic!("getData {path}: {other:?}"),
    }
}

// ---------------------------------------------------------------- stats upkeep

/// The first session's script before the ephemeral session runs.
fn upkeep_writes() -> Vec<Request> {
    let mut v = vec![
        create("/q", Some(b"ab"), 0),
        create("/q/a", Some(b"abc"), 0),
        create("/qq", Some(b"not under /q"), 0),
    ];
    v.extend(setquota("/q", 0, SOFT_COUNT_5));
    v.extend(listquota("/q"));
    v.extend([
        create("/q/b", None, 0),
        create("/q/a/c", Some(b"1234"), 0),
        create("/q/s-", Some(b"seq"), 2),
        set("/q/a", Some(b"x"), -1),
        set("/q/a", None, -1),
        set("/q/a", Some(b"too late"), 7),
        delete("/q/a/c"),
        create("/qq/z", Some(b"zz"), 0),
        set("/qq", Some(b"x"), -1),
        Request::Multi(vec![
            create_in_multi("/q/m", Some(b"12")),
            set("/q/m", Some(b"12345"), -1),
            delete("/q/b"),
        ]),
        // A multi that fails changes no stats.
        Request::Multi(vec![
            create_in_multi("/q/f", Some(b"123")),
            delete("/q/missing"),
        ]),
    ]);
    v.extend(listquota("/q"));
    // A nested quota: its subtree counts there, not in /q.
    v.push(create("/q/n", Some(b"nn"), 0));
    v.extend(setquota("/q/n", 1, SOFT_COUNT_5));
    v.extend([
        create("/q/n/x", Some(b"xyz"), 0),
        create("/q/x", Some(b"1"), 0),
        // setquota on an existing quota: a setData of the limits.
        set(
            &limits("/q"),
            Some(b"count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=10"),
            -1,
        ),
    ]);
    v.extend(listquota("/q"));
    v.extend(listquota("/q/n"));
    // A quota on a path that does not exist yet counts it once it is created.
    v.extend(setquota("/later", 0, SOFT_COUNT_5));
    v.extend(listquota("/later"));
    v.extend([
        create("/later", Some(b"abc"), 0),
        create("/later/y", None, 0),
    ]);
    v
}

/// After the ephemeral session closed: removing a nested quota's limits node
/// stops its counting (delquota), then reads.
fn upkeep_writes_after() -> Vec<Request> {
    let mut v = vec![delete(&limits("/q/n"))];
    v.extend([create("/q/n/y", Some(b"yy"), 0), delete("/q/n/x")]);
    v.extend(upkeep_reads());
    v
}

/// Every quota node's data and Stat, and the quota tree's shape.
fn upkeep_reads() -> Vec<Request> {
    let mut v = Vec::new();
    for p in ["/q", "/later"] {
        v.extend(listquota(p));
    }
    v.extend([
        Request::get_data_of(&stats("/q/n")),
        Request::get_children2_of("/zookeeper/quota"),
        Request::get_children2_of("/zookeeper/quota/q"),
        Request::get_children2_of("/zookeeper/quota/q/n"),
    ]);
    v
}

/// The replies of the whole upkeep script on `server`: the first session's writes,
/// a second session's ephemeral create and close, the rest.
fn upkeep_script(server: &Server, who: &str) -> (Vec<Comparable>, String) {
    let mut norm = Normalizer::default();
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let mut out = run(&mut c, &upkeep_writes(), &mut norm, who);
    let mut eph = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    out.extend(run(
        &mut eph,
        &[
            Request::Create(CreateRequest {
                kind: CreateKind::Create,
                path: "/q/e".into(),
                data: Some(b"ephemeral".to_vec()),
                acl: Acl::open(),
                flags: 1,
                ttl: -1,
            }),
            Request::get_data_of(&stats("/q")),
        ],
        &mut norm,
        who,
    ));
    let closed = eph.close_session().expect("closeSession");
    assert_eq!(closed.err, 0, "{who}: closeSession");
    out.extend(run(&mut c, &upkeep_writes_after(), &mut norm, who));
    (out, server.approximate_data_size())
}

fn all_upkeep_requests() -> Vec<Request> {
    let mut v = upkeep_writes();
    v.extend([
        create("/q/e", Some(b"ephemeral"), 1),
        Request::get_data_of(&stats("/q")),
    ]);
    v.extend(upkeep_writes_after());
    v
}

/// A reference server whose data dirs outlive its process, so it can be restarted
/// (SIGKILL, then a new process on a fresh port) as corral is.
struct ReferenceHome {
    dir: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl ReferenceHome {
    fn new() -> ReferenceHome {
        ReferenceHome {
            _serial: common::reference_serial(),
            dir: tempfile::Builder::new()
                .prefix("corral-ref-quota-")
                .tempdir()
                .unwrap(),
        }
    }

    /// Starts the reference on this home's data dirs and waits (bounded) until it
    /// serves.
    fn start(&self) -> Server {
        let d = self.dir.path();
        let port = common::free_port();
        let cfg = format!(
            "tickTime=500\ndataDir={d}/data\ndataLogDir={d}/datalog\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nminSessionTimeout=1000\n\
             maxSessionTimeout=30000\n4lw.commands.whitelist=*\nadmin.enableServer=false\n",
            d = d.display()
        );
        let cfg_path = d.join("zoo.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let cmd = common::reference_command(&cfg_path, &[]);
        let server = Server::launch(Kind::Reference, cmd, port, d);
        let deadline = Instant::now() + Duration::from_millis(common::SERVER_READY_TIMEOUT_MS);
        loop {
            let srvr = four_letter_word(&server.addr(), "srvr").unwrap_or_default();
            if srvr.contains("Zookeeper version") && !srvr.contains("not currently serving") {
                return server;
            }
            assert!(
                server.is_running() && Instant::now() < deadline,
                "the reference did not start; log:\n{}",
                server.log_tail()
            );
            std::thread::sleep(common::SNAPSHOT_POLL);
        }
    }
}

/// The rounds of restarts both servers go through after the script.
const RESTARTS: [&str; 2] = ["after a log replay", "after a snapshot load"];

/// The reference's replies: the script, then the reads after each restart. Its
/// first restart loads the empty snapshot it took at its first start and replays
/// the log; it snapshots again after loading, which the second restart loads.
fn reference_upkeep() -> (Vec<Comparable>, String, Vec<Vec<Comparable>>) {
    let home = ReferenceHome::new();
    let server = home.start();
    let (want, size) = upkeep_script(&server, "reference");
    server.stop();
    let mut after = Vec::new();
    for round in RESTARTS {
        let server = home.start();
        let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
        // The reference's numbers, pinned so that a change of script is noticed.
        // /q/n/x was counted in /q/n, but its delete, after /q/n's quota was
        // removed, in /q: the stats text drifts from the subtree, until a snapshot
        // load recounts it.
        let q = if round == RESTARTS[0] {
            "count=6,bytes=12"
        } else {
            "count=7,bytes=15"
        };
        assert_eq!(data_of(&mut c, &stats("/q")), q, "reference {round}");
        assert_eq!(data_of(&mut c, &stats("/q/n")), "count=2,bytes=5");
        assert_eq!(data_of(&mut c, &stats("/later")), "count=2,bytes=3");
        after.push(run(
            &mut c,
            &upkeep_reads(),
            &mut Normalizer::default(),
            round,
        ));
        drop(c);
        server.stop();
    }
    (want, size, after)
}

#[test]
fn quota_stats_match_the_reference_and_survive_restarts() {
    if !common::require_reference() {
        return;
    }
    let (want, want_size, want_after) = reference_upkeep();

    let server = Server::corral("");
    let (got, size) = upkeep_script(&server, "corral");
    assert_same(
        &all_upkeep_requests(),
        &want,
        &got,
        Compare::Whole,
        "upkeep",
    );
    assert_eq!(size, want_size, "approximate data size");
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let last = c.call(&Request::get_data_of("/")).expect("getData /").zxid;
    drop(c);

    // Restart: the log alone, then from the snapshot written after that replay.
    let mut server = server.restart_corral("");
    assert_eq!(
        server.recovered_from(),
        "none",
        "the first restart replays the log"
    );
    for (round, want_reads) in RESTARTS.into_iter().zip(&want_after) {
        if round == RESTARTS[1] {
            server.wait_for_snapshot_past(last);
            server = server.restart_corral("");
            let snapshot = server.recovered_from();
            assert!(snapshot.contains("snapshot."), "recovered from {snapshot}");
        }
        let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
        let got = run(&mut c, &upkeep_reads(), &mut Normalizer::default(), round);
        assert_same(&upkeep_reads(), want_reads, &got, Compare::Body, round);
    }
}

// ---------------------------------------------------------------- enforcement

fn enforce_script() -> Vec<Request> {
    let mut v = vec![create("/q", None, 0)];
    v.extend(setquota(
        "/q",
        0,
        "count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3",
    ));
    v.extend([
        create("/q/a", Some(b"12345"), 0),
        create("/q/b", None, 0),
        // count 4 > 3, as a plain and as a sequential create.
        create("/q/c", None, 0),
        create("/q/c-", None, 2),
        // bytes 11 > 10; the quota is checked before the version.
        set("/q/a", Some(b"12345678901"), -1),
        set("/q/a", Some(b"12345678901"), 99),
        set("/q/a", Some(b"1234567890"), -1),
        set("/q/a", Some(b"1"), -1),
        // Errors checked before the quota win.
        create("/q/b", None, 0),
        create("/q/nope/x", None, 0),
        Request::Multi(vec![
            create_in_multi("/r", None),
            create_in_multi("/q/c", None),
        ]),
        delete("/q/b"),
        // Each op of a multi is checked against the tree before the multi.
        Request::Multi(vec![
            create_in_multi("/q/c", None),
            create_in_multi("/q/d", None),
        ]),
        create("/q/e", None, 0),
        set("/q/c", Some(b"x"), -1),
        // Outside a quota nothing is checked.
        create("/r", Some(b"0123456789abcdef"), 0),
        // Soft limits only log.
        create("/s", None, 0),
    ]);
    v.extend(setquota(
        "/s",
        0,
        "count=1,bytes=2=;byteHardLimit=-1;countHardLimit=-1",
    ));
    v.extend([create("/s/a", Some(b"xyz"), 0), create("/s/b", None, 0)]);
    // A hard limit set below the usage: every growth fails, shrinking passes.
    v.push(set(
        &limits("/s"),
        Some(b"count=1,bytes=2=;byteHardLimit=1;countHardLimit=1"),
        -1,
    ));
    v.extend([
        create("/s/c", None, 0),
        set("/s/a", Some(b"xyzw"), -1),
        set("/s/a", Some(b"xy"), -1),
        set("/s/a", Some(b"zz"), -1),
    ]);
    v.extend(listquota("/q"));
    v.extend(listquota("/s"));
    v
}

#[test]
fn enforce_quota_fails_the_same_writes_as_the_reference() {
    if !common::require_reference() {
        return;
    }
    let script = enforce_script();
    let want = {
        let reference = Server::reference(ENFORCE);
        let mut c = RawClient::connect(&reference.addr(), SESSION_TIMEOUT_MS);
        let want = run(&mut c, &script, &mut Normalizer::default(), "reference");
        // Enforcement took hold in the reference (a count past the hard limit failed).
        let reply = c.call(&create("/q/z", None, 0)).expect("create");
        assert_eq!(reply.err, corral::proto::ErrorCode::QuotaExceeded as i32);
        want
    };
    let server = Server::corral(ENFORCE);
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let got = run(&mut c, &script, &mut Normalizer::default(), "corral");
    assert_same(&script, &want, &got, Compare::Whole, "enforceQuota=true");
}

// ---------------------------------------------------------------- ensembles

/// Every member's stats and limits of `/q` after a sync, each equal to `want`.
fn assert_members_agree(ens: &Ensemble, want_stats: &str, what: &str) {
    for sid in ens.sids() {
        let mut c = ens.connect(sid);
        let synced = ensemble::call(&mut c, &Request::Sync { path: "/".into() });
        assert!(synced.is_ok(), "{what}: sync on member {sid}: {synced:?}");
        assert_eq!(
            data_of(&mut c, &stats("/q")),
            want_stats,
            "{what}: member {sid}'s stats\n{}",
            ens.report()
        );
        assert_eq!(
            data_of(&mut c, &limits("/q")),
            HARD_COUNT_4,
            "{what}: member {sid}'s limits"
        );
    }
}

/// The limits of the ensemble test's quota.
const HARD_COUNT_4: &str = "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=4";

/// Writes through every member of an ensemble with `enforceQuota=true`: every
/// member keeps the same stats text (each applies the txns itself), the leader
/// refuses a create past the hard limit whichever member it came through, and a
/// member that was paused catches up to the same text.
fn quota_in_ensemble(kinds: [Kind; 3]) {
    if !Ensemble::can_start(&kinds) {
        return;
    }
    let members: Vec<(Kind, Role)> = kinds.iter().map(|&k| (k, Role::Participant)).collect();
    let mut ens = Ensemble::start_cfg(&members, ENFORCE);
    let must = |c: &mut RawClient, req: &Request| {
        ensemble::call(c, req).unwrap_or_else(|e| panic!("{}: {e:?}", common::short(req)))
    };
    let mut c1 = ens.connect(1);
    must(&mut c1, &create("/q", None, 0));
    for req in setquota("/q", 0, HARD_COUNT_4) {
        must(&mut c1, &req);
    }
    let mut c2 = ens.connect(2);
    must(&mut c2, &create("/q/a", Some(b"abc"), 0));
    must(
        &mut c2,
        &Request::Multi(vec![
            create_in_multi("/q/b", Some(b"12")),
            set("/q/a", Some(b"x"), -1),
        ]),
    );
    let mut c3 = ens.connect(3);
    must(&mut c3, &create("/q/c", None, 0));
    for c in [&mut c1, &mut c2, &mut c3] {
        let refused = ensemble::call(c, &create("/q/d", None, 0));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.is(corral::proto::ErrorCode::QuotaExceeded)),
            "a fifth node under /q: {refused:?}"
        );
    }
    must(&mut c2, &delete("/q/b"));
    must(&mut c2, &set("/q/c", Some(b"hello"), -1));
    assert_members_agree(&ens, "count=3,bytes=6", "after the writes");
    drop((c1, c3));

    // A member paused (SIGSTOP) while the quota's subtree changes catches up to
    // the same text. (Paused rather than killed: a killed member's client port can
    // be taken by another program on a shared box before it restarts.)
    let leader = ens.wait_leader();
    let down = if leader == 1 { 2 } else { 1 };
    ens.pause(down);
    let up = ens.sids().into_iter().find(|&s| s != down).unwrap();
    let mut c = ens.connect(up);
    must(&mut c, &create("/q/e", Some(b"e"), 0));
    ens.resume(down);
    ens.wait_serving(down);
    assert_members_agree(&ens, "count=4,bytes=7", "after a member caught up");
}

#[test]
fn ensemble_of_corrals_keeps_the_same_stats() {
    quota_in_ensemble([Kind::Corral; 3]);
}

#[test]
fn corral_followers_of_a_zookeeper_leader_keep_the_same_stats() {
    quota_in_ensemble([Kind::Corral, Kind::Corral, Kind::Reference]);
}

#[test]
fn zookeeper_followers_of_a_corral_leader_keep_the_same_stats() {
    quota_in_ensemble([Kind::Reference, Kind::Reference, Kind::Corral]);
}

// ---------------------------------------------------------------- zkCli

/// The CLI session: setquota, listquota, writes past limits, delquota.
const CLI_SCRIPT: &str = "\
create /q
create /q/a abc
setquota -n 5 /q
listquota /q
setquota -N 3 /q
listquota /q
create /q/b
create /q/c
listquota /q
setquota -B 4 /q
set /q/a abcd
set /q/a abcde
listquota /q
delquota -N /q
create /q/c
listquota /q
delquota /q
listquota /q
setquota -n 1 /q/a
listquota /q/a
setquota -n 1 /
quit
";

/// The CLI's answers without its prompts, log lines and stack traces, in order.
fn cli_lines(server: &Server) -> Vec<String> {
    let out = run_client_program(zookeeper_cli_command(&server.addr(), &[]), CLI_SCRIPT);
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("[zk:")
                && !l.starts_with('\t')
                && !l.trim_start().starts_with("at ")
                && !l.starts_with("Connecting to")
                && !l.starts_with("WATCHER")
                && !l.starts_with("WatchedEvent")
                // Names the session id.
                && !l.contains("sessionid 0x")
                && !l.contains(" WARN ")
                && !l.contains(" INFO ")
        })
        .map(|l| l.replace(&server.addr(), "ADDR"))
        .collect()
}

#[test]
fn zkcli_setquota_listquota_delquota_print_the_same() {
    if !common::require_reference() {
        return;
    }
    let want = cli_lines(&Server::start(Kind::Reference, ENFORCE));
    let got = cli_lines(&Server::start(Kind::Corral, ENFORCE));
    for line in [
        "Output quota for /q count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1",
        "Output stat for /q count=2,bytes=3",
        "Output quota for /q count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=3",
        "Quota has exceeded : /q/c",
        "Quota has exceeded : /q/a",
    ] {
        assert!(
            want.iter().any(|l| l == line),
            "the reference printed no {line:?}: {want:#?}"
        );
    }
    assert_eq!(got, want, "zkCli against corral and against the reference");
}
