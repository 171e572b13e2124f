//! Null znode data on the wire, reference against corral: a znode created or set
//! with the null buffer (length −1) reads back as the null buffer, not as empty.
//! The same script of creates (every create opcode), setDatas and a multi with
//! null data runs on both servers; every reply must be byte-identical once zxids,
//! times and session ids are mapped to comparable values (each body is also checked
//! to re-encode to exactly the bytes received, so that mapping loses nothing). Then
//! corral is restarted twice, once recovering from its log alone and once from the
//! snapshot it writes after that replay, and every read must still equal the
//! reference's.
//!
//! Runs on the test thread with blocking raw clients (`common::RawClient`).

mod common;

use common::{Normalizer, RawClient, Reply, Server};
use corral::proto::{op, Acl, CreateKind, CreateRequest, Reader, ReplyHeader, Request};

/// Config both servers get: TTL nodes need the extended types. corral's default
/// snapCount takes no snapshot during the script, so the first restart replays the
/// log alone; after a replay corral snapshots what it recovered (as the reference
/// does after loading), which the second restart loads.
const CFG_EXTRA: &str = "extendedTypesEnabled=true\n";
/// Bounded wait for corral's background snapshot after the replay.
/// How often that wait looks at the data dir.
/// Session timeout asked for by the raw clients.
const SESSION_TIMEOUT_MS: i32 = 30_000;

fn create(kind: CreateKind, path: &str, data: Option<&[u8]>, flags: i32, ttl: i64) -> Request {
    Request::Create(CreateRequest {
        kind,
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        acl: Acl::open(),
        flags,
        ttl,
    })
}

fn set(path: &str, data: Option<&[u8]>) -> Request {
    Request::SetData {
        path: path.into(),
        data: data.map(<[u8]>::to_vec),
        version: -1,
    }
}

/// The writes: null data through create, create2, createContainer, createTTL,
/// setData (from bytes and from empty) and inside a multi; one node stays empty and
/// one holds bytes, to tell them apart from null.
fn writes() -> Vec<Request> {
    vec![
        create(CreateKind::Create, "/n", None, 0, -1),
        create(CreateKind::Create2, "/n2", None, 0, -1),
        create(CreateKind::Container, "/c", None, 4, -1),
        create(CreateKind::Ttl, "/t", None, 5, 3_600_000),
        create(CreateKind::Create2, "/empty", Some(b""), 0, -1),
        create(CreateKind::Create2, "/bytes", Some(b"x"), 0, -1),
        create(CreateKind::Create2, "/s", Some(b"abc"), 0, -1),
        set("/s", None),
        create(CreateKind::Create2, "/s2", Some(b""), 0, -1),
        set("/s2", None),
        Request::Multi(vec![
            create(CreateKind::Create, "/m", None, 0, -1),
            create(CreateKind::Create, "/m/a", Some(b""), 0, -1),
            set("/m/a", None),
            create(CreateKind::Create, "/c/child", None, 0, -1),
        ]),
    ]
}

/// Paths the reads cover.
const READ_PATHS: &[&str] = &[
    "/n", "/n2", "/c", "/t", "/empty", "/bytes", "/s", "/s2", "/m", "/m/a", "/c/child",
];

/// The reads: getData of every node, exists of a null one, and a multiRead mixing
/// null, empty and non-empty data.
fn reads() -> Vec<Request> {
    let mut v: Vec<Request> = READ_PATHS.iter().map(|p| Request::get_data_of(p)).collect();
    v.push(Request::Exists {
        path: "/n".into(),
        watch: false,
    });
    v.push(Request::MultiRead(vec![
        Request::get_data_of("/n"),
        Request::get_data_of("/empty"),
        Request::get_data_of("/bytes"),
        Request::GetChildren {
            path: "/m".into(),
            watch: false,
        },
        Request::get_data_of("/m/a"),
    ]));
    v
}

/// A reply in comparable form: its header and its body, each encoded again after
/// zxids, times and session ids were mapped by the run's [`Normalizer`].
struct Comparable {
    header: Vec<u8>,
    body: Vec<u8>,
}

/// One reply, checked to decode losslessly, with zxids, times and session ids
/// mapped by `norm`, then encoded again: equal for both servers iff their raw
/// replies are equal up to those values.
fn comparable(opcode: i32, reply: &Reply, norm: &mut Normalizer, what: &str) -> Comparable {
    let mut header = Vec::new();
    ReplyHeader {
        xid: reply.xid,
        zxid: norm.zxid(reply.zxid),
        err: reply.err,
    }
    .encode(&mut header);
    Comparable {
        header,
        body: comparable_body(opcode, reply, norm, what),
    }
}

fn comparable_body(opcode: i32, reply: &Reply, norm: &mut Normalizer, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if reply.err != 0 {
        out.extend_from_slice(&reply.body);
        return out;
    }
    let mut r = Reader::new(&reply.body);
    let resp = common::decode_body(opcode, &mut r)
        .unwrap_or_else(|e| panic!("{what}: {e}; body {:02x?}", reply.body));
    assert!(
        r.is_empty(),
        "{what}: bytes left over in {:02x?}",
        reply.body
    );
    let mut again = Vec::new();
    resp.encode(&mut again);
    assert_eq!(
        again, reply.body,
        "{what}: the body does not re-encode as received"
    );
    norm.response(&resp).encode(&mut out);
    out
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
    /// Header (xid, zxid, err) and body: the same script on a fresh session.
    Whole,
    /// Error code and body: the reads of a new session after a restart, whose xids
    /// and last zxid differ (it took a zxid of its own).
    Body,
}

/// Compares two runs reply by reply.
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
            "{what}: {} answered differently\n reference {wh:02x?} {:02x?}\n corral    {gh:02x?} {:02x?}",
            common::short(req),
            w.body,
            g.body
        );
    }
}

/// The raw getData reply body starts with the −1 buffer (a null check that does not
/// depend on the decoder).
fn assert_null_on_the_wire(c: &mut RawClient, path: &str, who: &str) {
    let reply = c.call(&Request::get_data_of(path)).expect("getData");
    assert_eq!(reply.err, 0, "{who}: getData {path}");
    assert_eq!(
        reply.body[..4],
        [0xff; 4],
        "{who}: getData {path} must answer the null buffer"
    );
    assert_eq!(
        reply.body.len(),
        4 + 68,
        "{who}: getData {path}: length + Stat"
    );
}

#[test]
fn null_data_matches_the_reference_byte_for_byte_and_survives_restarts() {
    if !common::require_reference() {
        return;
    }
    let script = writes();
    let reads = reads();

    // The reference: the script, its reads, its data size.
    let (want_writes, want_reads, want_size) = {
        let reference = Server::reference(CFG_EXTRA);
        let mut c = RawClient::connect(&reference.addr(), SESSION_TIMEOUT_MS);
        let mut norm = Normalizer::default();
        let w = run(&mut c, &script, &mut norm, "reference");
        let r = run(&mut c, &reads, &mut norm, "reference");
        assert_null_on_the_wire(&mut c, "/n", "reference");
        (w, r, reference.approximate_data_size())
    };

    // corral, fresh.
    let server = Server::corral(CFG_EXTRA);
    let mut norm = Normalizer::default();
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let got = run(&mut c, &script, &mut norm, "corral");
    assert_same(&script, &want_writes, &got, Compare::Whole, "writes");
    let got = run(&mut c, &reads, &mut norm, "corral");
    assert_same(&reads, &want_reads, &got, Compare::Whole, "reads");
    assert_null_on_the_wire(&mut c, "/n", "corral");
    assert_eq!(
        server.approximate_data_size(),
        want_size,
        "approximate data size"
    );
    let last_null_write = c.call(&Request::Exists {
        path: "/m/a".into(),
        watch: false,
    });
    let last_null_write = match common::decode_reply(op::EXISTS, &last_null_write.unwrap()) {
        common::Decoded::Ok(corral::proto::Response::Stat(s)) => s.mzxid,
        other => panic!("exists /m/a: {other:?}"),
    };
    drop(c);

    // Restart: the log alone.
    let server = server.restart_corral(CFG_EXTRA);
    assert_eq!(
        server.recovered_from(),
        "none",
        "the first restart replays the log"
    );
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let got = run(&mut c, &reads, &mut norm, "corral after restart");
    assert_same(
        &reads,
        &want_reads,
        &got,
        Compare::Body,
        "reads after a restart",
    );
    assert_null_on_the_wire(&mut c, "/n", "corral after restart");
    drop(c);

    // Restart from a snapshot that holds the null nodes.
    server.wait_for_snapshot_past(last_null_write);
    let server = server.restart_corral(CFG_EXTRA);
    let snapshot = server.recovered_from();
    assert!(snapshot.contains("snapshot."), "recovered from {snapshot}");
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let got = run(&mut c, &reads, &mut norm, "corral after a snapshot restart");
    assert_same(
        &reads,
        &want_reads,
        &got,
        Compare::Body,
        "reads after a snapshot restart",
    );
    assert_null_on_the_wire(&mut c, "/n", "corral after a snapshot restart");
}
