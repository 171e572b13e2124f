//! Bad input on the client port: oversized, negative and truncated frames,
//! garbage, unknown opcodes, invalid paths, data over the limit. Each case sends
//! the bad bytes on its own connection and asserts what the reference server
//! (Apache ZooKeeper 3.8.0) observably does — an error reply on a connection that
//! stays open, or a closed connection — and that a healthy session on another
//! connection keeps working and its data (a znode and an ephemeral) survives.
//!
//! Runs on the test thread with blocking raw clients (`common::RawClient`); the
//! same case bodies run against the reference and against corral, so the
//! expectations are the reference's.

mod common;

use std::time::Duration;

use common::{Decoded, Kind, RawClient, ReadEnd, Server, Suite};
use corral::proto::{
    op, Acl, CreateKind, CreateRequest, JuteWrite, Request, RequestHeader, Response,
};

/// The default `jute.maxbuffer` both servers run with.
const JUTE_MAXBUFFER_BYTES: usize = 0xfffff;
/// How long a case waits for the server to close a connection.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
const HEALTHY_DATA: &[u8] = b"alive";
/// Server log lines shown per case.
const LOG_LINES_SHOWN_MAX: usize = 10;

fn create(path: &str, data: &[u8], flags: i32) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create2,
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open(),
        flags,
        ttl: -1,
    })
}

/// A session on its own connection that must not notice any of the bad input.
struct Healthy {
    c: RawClient,
    writes: u32,
}

impl Healthy {
    fn new(addr: &str) -> Healthy {
        let mut c = RawClient::connect(addr, 20_000);
        let r = c.call(&create("/healthy", HEALTHY_DATA, 0)).unwrap();
        assert_eq!(r.err, 0, "create /healthy");
        let r = c.call(&create("/healthy-eph", b"", 1)).unwrap();
        assert_eq!(r.err, 0, "create /healthy-eph");
        Healthy { c, writes: 0 }
    }

    /// The session still answers, its data is intact, writes still work.
    fn check(&mut self) {
        let got = self
            .c
            .call_decoded(&Request::GetData {
                path: "/healthy".into(),
                watch: false,
            })
            .expect("healthy session lost its connection");
        match got {
            Decoded::Ok(Response::Data { data, stat }) => {
                assert_eq!(data.as_deref(), Some(HEALTHY_DATA));
                assert_eq!(stat.version as u32, self.writes);
            }
            other => panic!("healthy getData: {other:?}"),
        }
        let r = self
            .c
            .call(&Request::SetData {
                path: "/healthy".into(),
                data: Some(HEALTHY_DATA.to_vec()),
                version: self.writes as i32,
            })
            .expect("healthy setData");
        assert_eq!(r.err, 0, "healthy setData");
        self.writes += 1;
        let r = self
            .c
            .call(&Request::Exists {
                path: "/healthy-eph".into(),
                watch: false,
            })
            .expect("healthy exists");
        assert_eq!(r.err, 0, "the healthy session's ephemeral is gone");
    }
}

fn assert_closed_without_reply(c: &mut RawClient, what: &str) {
    match c.wait_closed(CLOSE_WAIT) {
        Ok(frames) => assert!(
            frames.is_empty(),
            "{what}: expected the connection closed without a reply, got {} frame(s) first: {:02x?}",
            frames.len(),
            frames
        ),
        Err(e) => panic!("{what}: expected the connection closed, got {e:?}"),
    }
}

/// Sends a request whose frame is over the server's limit: the server closes the
/// connection as soon as it has read the length, so our write may find the pipe
/// already broken (then the close came first, which is the outcome wanted);
/// otherwise the connection must close without a reply.
fn send_over_limit(c: &mut RawClient, req: &Request, what: &str) {
    match c.send(req) {
        Ok(_) => assert_closed_without_reply(c, what),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => panic!("{what}: sending failed: {e:?}"),
    }
}

fn assert_open(c: &mut RawClient, what: &str) {
    let r = c
        .call(&Request::Exists {
            path: "/healthy".into(),
            watch: false,
        })
        .unwrap_or_else(|e| panic!("{what}: the connection should stay open, got {e:?}"));
    assert_eq!(r.err, 0, "{what}: follow-up exists on the same connection");
}

/// The suite, the healthy session and the server, for [`Ctx::case`].
struct Ctx<'a> {
    suite: Suite<'a>,
    healthy: Healthy,
    server: &'a Server,
}

impl Ctx<'_> {
    /// Runs one case, then checks the healthy session as a case of its own.
    /// For corral, prints what the server logged meanwhile (the brief asks for
    /// one line per offending connection; shown, not asserted).
    fn case(&mut self, name: &str, f: impl FnOnce()) {
        let before = self.server.log().lines().count();
        self.suite.case(name, f);
        let healthy = &mut self.healthy;
        self.suite
            .case(&format!("{name}: other session unaffected"), || {
                healthy.check()
            });
        if self.server.kind == Kind::Corral {
            let log = self.server.log();
            let new: Vec<&str> = log.lines().skip(before).collect();
            eprintln!("  corral logged {} line(s) during {name}:", new.len());
            for l in new.iter().take(LOG_LINES_SHOWN_MAX) {
                eprintln!("    | {l}");
            }
        }
    }
}

fn run_suite(kind: Kind) {
    let server = Server::start(kind, "");
    let addr = server.addr();
    let mut ctx = Ctx {
        suite: Suite::for_server(format!("bad_input/{kind}"), &server),
        healthy: Healthy::new(&addr),
        server: &server,
    };

    ctx.case("frame_over_jute_maxbuffer", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let mut b = Vec::new();
        b.put_i32(JUTE_MAXBUFFER_BYTES as i32 + 1);
        b.extend_from_slice(&[0u8; 64]);
        c.send_raw(&b).unwrap();
        assert_closed_without_reply(&mut c, "frame length jute.maxbuffer+1");
    });

    ctx.case("negative_frame_length", || {
        let mut c = RawClient::connect(&addr, 10_000);
        c.send_raw(&(-5i32).to_be_bytes()).unwrap();
        assert_closed_without_reply(&mut c, "frame length -5");
    });

    ctx.case("truncated_length_prefix_then_eof", || {
        let mut c = RawClient::connect(&addr, 10_000);
        c.send_raw(&[0, 0]).unwrap();
        c.shutdown_write();
        assert_closed_without_reply(&mut c, "two bytes of a length, then EOF");
    });

    ctx.case("truncated_frame_then_eof", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let mut b = Vec::new();
        b.put_i32(100);
        RequestHeader {
            xid: 1,
            opcode: op::GET_DATA,
        }
        .encode(&mut b);
        c.send_raw(&b).unwrap();
        c.shutdown_write();
        assert_closed_without_reply(&mut c, "a frame cut short, then EOF");
    });

    ctx.case("truncated_read_request_body", || {
        // A whole frame whose getData body claims a 100-byte path: the reference
        // answers MARSHALLINGERROR and keeps the connection.
        let mut c = RawClient::connect(&addr, 10_000);
        let mut p = Vec::new();
        RequestHeader {
            xid: 9,
            opcode: op::GET_DATA,
        }
        .encode(&mut p);
        p.put_i32(100);
        p.extend_from_slice(b"/healthy");
        c.send_frame(&p).unwrap();
        let r = c.recv_reply().expect("a reply to the truncated getData");
        assert_eq!((r.xid, r.err), (9, -5), "truncated getData body: {r:?}");
        assert_open(&mut c, "after a truncated getData body");
    });

    ctx.case("truncated_write_request_body", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let mut p = Vec::new();
        RequestHeader {
            xid: 9,
            opcode: op::SET_DATA,
        }
        .encode(&mut p);
        p.put_i32(100);
        p.extend_from_slice(b"/healthy");
        c.send_frame(&p).unwrap();
        let r = c.recv_reply().expect("a reply to the truncated setData");
        assert_eq!((r.xid, r.err), (9, -5), "truncated setData body: {r:?}");
        assert_open(&mut c, "after a truncated setData body");
    });

    ctx.case("garbage_instead_of_handshake", || {
        let mut s = RawClient::connect_tcp(&addr).unwrap();
        use std::io::Write;
        let mut b = Vec::new();
        b.put_i32(20);
        b.extend((0u8..20).map(|i| i.wrapping_mul(37).wrapping_add(11)));
        s.write_all(&b).unwrap();
        let mut c = RawClient::from_stream(s);
        assert_closed_without_reply(&mut c, "20 garbage bytes as the ConnectRequest");
    });

    ctx.case("oversized_handshake", || {
        let mut s = RawClient::connect_tcp(&addr).unwrap();
        use std::io::Write;
        let mut b = Vec::new();
        b.put_i32(JUTE_MAXBUFFER_BYTES as i32 + 1);
        b.extend_from_slice(&[0u8; 64]);
        s.write_all(&b).unwrap();
        let mut c = RawClient::from_stream(s);
        assert_closed_without_reply(&mut c, "a ConnectRequest over jute.maxbuffer");
    });

    ctx.case("frame_shorter_than_request_header", || {
        let mut c = RawClient::connect(&addr, 10_000);
        c.send_raw(&[0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02])
            .unwrap();
        assert_closed_without_reply(&mut c, "a 6-byte request frame");
    });

    ctx.case("unknown_opcode", || {
        // The reference answers UNIMPLEMENTED (-6) under the request's xid, then closes.
        let mut c = RawClient::connect(&addr, 10_000);
        c.send_opcode(5, 77, &Request::Sync { path: "/".into() })
            .unwrap();
        let r = c.recv_reply().expect("a reply to an unknown opcode");
        assert_eq!((r.xid, r.err), (5, -6), "unknown opcode 77: {r:?}");
        assert!(r.body.is_empty(), "unknown opcode reply has a body");
        assert_closed_without_reply(&mut c, "after the UNIMPLEMENTED reply");
    });

    ctx.case("invalid_paths", || {
        // Invalid paths get an error reply; the connection stays open.
        let mut c = RawClient::connect(&addr, 10_000);
        let cases: Vec<(Request, i32)> = vec![
            (create("noslash", b"", 0), -8),
            (create("/healthy/.", b"", 0), -8),
            (create("/healthy/..", b"", 0), -8),
            (create("/healthy/x\u{1}y", b"", 0), -8),
            (create("/", b"", 0), -110),
            // The parent is looked up first: "/healthy/" does not exist.
            (create("/healthy//x", b"", 0), -101),
            // The parent "/healthy" exists; then the path itself fails validation.
            (create("/healthy/", b"", 0), -8),
            (
                Request::SetData {
                    path: "/healthy/..".into(),
                    data: Some(vec![]),
                    version: -1,
                },
                -8,
            ),
            (
                Request::Delete {
                    path: "noslash".into(),
                    version: -1,
                },
                -8,
            ),
            (
                Request::GetData {
                    path: "noslash".into(),
                    watch: false,
                },
                -101,
            ),
            // A quirk of the reference: reads do not validate the path, and the
            // empty path names the root node.
            (
                Request::Exists {
                    path: "".into(),
                    watch: false,
                },
                0,
            ),
        ];
        let mut wrong = Vec::new();
        for (req, want) in &cases {
            let r = c.call(req).expect("reply to an invalid path");
            if r.err != *want {
                wrong.push(format!("{req:?}: want err {want}, got {}", r.err));
            }
        }
        assert!(wrong.is_empty(), "invalid paths:\n{}", wrong.join("\n"));
        assert_open(&mut c, "after invalid paths");
    });

    ctx.case("data_over_limit", || {
        // setData whose frame exceeds jute.maxbuffer: closed, no reply.
        let mut c = RawClient::connect(&addr, 10_000);
        let set = Request::SetData {
            path: "/healthy".into(),
            data: Some(vec![7u8; JUTE_MAXBUFFER_BYTES]),
            version: -1,
        };
        send_over_limit(&mut c, &set, "setData with 1 MiB of data");
        let mut c = RawClient::connect(&addr, 10_000);
        let big = create("/too-big", &vec![7u8; JUTE_MAXBUFFER_BYTES + 10], 0);
        send_over_limit(&mut c, &big, "create with 1 MiB of data");
    });

    ctx.case("data_just_under_limit_is_served", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let data = vec![9u8; JUTE_MAXBUFFER_BYTES - 200];
        let r = c.call(&create("/big", &data, 1)).unwrap();
        assert_eq!(r.err, 0, "create with data just under jute.maxbuffer");
        let got = c
            .call_decoded(&Request::GetData {
                path: "/big".into(),
                watch: false,
            })
            .unwrap();
        match got {
            Decoded::Ok(Response::Data { data: d, .. }) => assert!(d.as_ref() == Some(&data)),
            other => panic!("getData /big: {:?}", common::short(&other)),
        }
        let _ = c.close_session();
    });

    ctx.case("new_sessions_still_accepted", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let r = c.call(&Request::Ping).unwrap();
        assert_eq!(r.err, 0);
        let _ = c.close_session();
    });

    if kind == Kind::Corral {
        // ZooKeeper 3.8.0 itself dies on this one (createTTL with non-TTL flags and
        // a negative ttl kills its SyncThread); corral must answer and survive.
        ctx.case("create_ttl_with_ephemeral_flags_and_negative_ttl", || {
            let mut c = RawClient::connect(&addr, 10_000);
            let req = Request::Create(CreateRequest {
                kind: CreateKind::Ttl,
                path: "/ttl-bad".into(),
                data: Some(vec![]),
                acl: Acl::open(),
                flags: 3,
                ttl: -5,
            });
            match c.call(&req) {
                Ok(r) => assert_ne!(r.err, 0, "createTTL with flags 3 and ttl -5 succeeded"),
                Err(ReadEnd::Closed) => {}
                Err(e) => panic!("createTTL with flags 3 and ttl -5: {e:?}"),
            }
        });
    }

    let _ = ctx.healthy.c.close_session();
    ctx.suite.finish();
    drop(server);
}

#[test]
fn bad_input_reference() {
    if !common::require_reference() {
        return;
    }
    run_suite(Kind::Reference);
}

#[test]
fn bad_input_corral() {
    run_suite(Kind::Corral);
}

/// `jute.maxbuffer` lowered in the config: the bound moves with it.
fn run_small_maxbuffer(kind: Kind) {
    const SMALL_MAXBUFFER_BYTES: usize = 4096;
    let server = Server::start(kind, &format!("jute.maxbuffer={SMALL_MAXBUFFER_BYTES}\n"));
    let addr = server.addr();
    let mut ctx = Ctx {
        suite: Suite::for_server(format!("bad_input_small_maxbuffer/{kind}"), &server),
        healthy: Healthy::new(&addr),
        server: &server,
    };
    ctx.case("frame_over_configured_limit", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let set = Request::SetData {
            path: "/healthy".into(),
            data: Some(vec![1u8; SMALL_MAXBUFFER_BYTES + 100]),
            version: -1,
        };
        send_over_limit(&mut c, &set, "setData frame over jute.maxbuffer=4096");
    });
    ctx.case("frame_under_configured_limit", || {
        let mut c = RawClient::connect(&addr, 10_000);
        let r = c
            .call(&create(
                "/small",
                &vec![1u8; SMALL_MAXBUFFER_BYTES - 200],
                1,
            ))
            .unwrap();
        assert_eq!(r.err, 0, "create with data under jute.maxbuffer=4096");
        let _ = c.close_session();
    });
    let _ = ctx.healthy.c.close_session();
    ctx.suite.finish();
    drop(server);
}

#[test]
fn bad_input_small_maxbuffer_reference() {
    if !common::require_reference() {
        return;
    }
    run_small_maxbuffer(Kind::Reference);
}

#[test]
fn bad_input_small_maxbuffer_corral() {
    run_small_maxbuffer(Kind::Corral);
}
