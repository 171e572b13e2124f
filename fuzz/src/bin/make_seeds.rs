//! Writes the seed corpus of every target: well-formed inputs built with corral's own
//! encoders (the shapes the unit tests use) plus the captured records of
//! PEER-PROTOCOL.md §13. Not a fuzz target: it is linked with libFuzzer only because
//! the instrumented build needs its runtime; it writes the seeds from libFuzzer's init
//! hook and exits. `scripts/fuzz.sh seeds` runs it:
//!
//! ```text
//! CORRAL_FUZZ_SEEDS=fuzz/seeds fuzz/target/.../make_seeds
//! ```
//!
//! Each file is one input as its target reads it, control byte first where the target
//! has one.

#![no_main]
// The init hook exits once the seeds are written, so the macro's fuzz loop after it
// is unreachable on purpose.
#![allow(unreachable_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use corral::auth::sasl::{NONCE_RANDOM_BYTES, SASL_DIGEST_URI, SASL_REALM};
use corral::proto::election::{InitMessage, Notification, ServerState};
use corral::proto::quorum::{
    AckEpoch, LearnerInfo, LearnerRequest, RevalidateReply, RevalidateRequest,
};
use corral::proto::{
    op, perms, Acl, ConnectRequest, CreateKind, CreateRequest, Id, QuorumPacket, Request,
    RequestHeader, SetWatches,
};
use corral::tree::zksnap::{write_zk_snapshot_file, ZkSnapEncoder, ZkSnapKind, ZxidDigest};
use corral::tree::{apply, digest_id, prepare, Caller, Tree, Txn, TxnContext, TxnOp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        let dir = std::env::var_os("CORRAL_FUZZ_SEEDS")
            .expect("set CORRAL_FUZZ_SEEDS to the directory to write the seeds into");
        let mut w = Seeds { root: PathBuf::from(dir), count: 0 };
        client_frames(&mut w);
        sasl(&mut w);
        quorum_sasl(&mut w);
        txns(&mut w);
        snapshots(&mut w);
        quorum(&mut w);
        election(&mut w);
        eprintln!("make_seeds: wrote {} seeds", w.count);
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, control: Option<u8>, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("seed directory");
        let mut b = Vec::with_capacity(bytes.len() + 1);
        b.extend(control);
        b.extend_from_slice(bytes);
        write(&dir.join(name), &b);
        self.count += 1;
    }
}

fn write(path: &Path, b: &[u8]) {
    std::fs::write(path, b).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// ----- client port ------------------------------------------------------------------

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn connect_frame(read_only: Option<bool>) -> Vec<u8> {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: 30_000,
        session_id: 0,
        passwd: vec![0; 16],
        read_only,
    };
    let mut body = Vec::new();
    req.encode(&mut body);
    let mut out = Vec::new();
    frame(&mut out, &body);
    out
}

fn request_frame(out: &mut Vec<u8>, xid: i32, req: &Request) {
    let mut body = Vec::new();
    RequestHeader {
        xid,
        opcode: req.opcode(),
    }
    .encode(&mut body);
    req.encode_body(&mut body);
    frame(out, &body);
}

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

fn sample_requests() -> Vec<(&'static str, Request)> {
    let p = || "/app/node".to_string();
    vec![
        (
            "create",
            create(CreateKind::Create, "/app", Some(b"v"), 0, -1),
        ),
        (
            "create2-eph-seq",
            create(CreateKind::Create2, "/app/s-", None, 3, -1),
        ),
        (
            "container",
            create(CreateKind::Container, "/c", Some(b""), 4, -1),
        ),
        ("ttl", create(CreateKind::Ttl, "/t", Some(b"x"), 5, 60_000)),
        (
            "delete",
            Request::Delete {
                path: p(),
                version: -1,
            },
        ),
        (
            "exists",
            Request::Exists {
                path: p(),
                watch: true,
            },
        ),
        (
            "getdata",
            Request::GetData {
                path: p(),
                watch: false,
            },
        ),
        (
            "setdata-null",
            Request::SetData {
                path: p(),
                data: None,
                version: 3,
            },
        ),
        ("getacl", Request::GetAcl { path: p() }),
        (
            "setacl",
            Request::SetAcl {
                path: p(),
                acl: vec![
                    Acl::new(perms::ALL, "digest", &digest_id("u:p")),
                    Acl::new(perms::READ, "ip", "10.0.0.0/8"),
                ],
                version: -1,
            },
        ),
        (
            "children",
            Request::GetChildren {
                path: p(),
                watch: true,
            },
        ),
        (
            "children2",
            Request::GetChildren2 {
                path: p(),
                watch: false,
            },
        ),
        ("sync", Request::Sync { path: p() }),
        ("ping", Request::Ping),
        (
            "multi",
            Request::Multi(vec![
                create(CreateKind::Create, "/m", None, 0, -1),
                Request::Check {
                    path: "/m".into(),
                    version: 0,
                },
                Request::SetData {
                    path: "/m".into(),
                    data: Some(b"d".to_vec()),
                    version: -1,
                },
                Request::Delete {
                    path: "/m".into(),
                    version: -1,
                },
            ]),
        ),
        (
            "multiread",
            Request::MultiRead(vec![
                Request::GetChildren {
                    path: "/".into(),
                    watch: false,
                },
                Request::GetData {
                    path: "/m".into(),
                    watch: false,
                },
            ]),
        ),
        (
            "checkwatches",
            Request::CheckWatches {
                path: p(),
                watcher_type: 1,
            },
        ),
        (
            "removewatches",
            Request::RemoveWatches {
                path: p(),
                watcher_type: 3,
            },
        ),
        (
            "auth",
            Request::Auth {
                auth_type: 0,
                scheme: "digest".into(),
                auth: b"u:p".to_vec(),
            },
        ),
        (
            "setwatches2",
            Request::SetWatches(SetWatches {
                relative_zxid: 0x1_0000_0004,
                data: vec!["/a".into()],
                exist: vec!["/b".into()],
                child: vec!["/".into()],
                persistent: vec!["/p".into()],
                persistent_recursive: vec!["/r".into()],
            }),
        ),
        (
            "ephemerals",
            Request::GetEphemerals {
                prefix: "/app".into(),
            },
        ),
        (
            "allchildren",
            Request::GetAllChildrenNumber { path: "/".into() },
        ),
        ("addwatch", Request::AddWatch { path: p(), mode: 1 }),
        ("whoami", Request::WhoAmI),
        ("close", Request::CloseSession),
    ]
}

fn sasl_frame(out: &mut Vec<u8>, xid: i32, token: &[u8]) {
    let mut body = Vec::new();
    RequestHeader {
        xid,
        opcode: op::SASL,
    }
    .encode(&mut body);
    body.extend_from_slice(&(token.len() as i32).to_be_bytes());
    body.extend_from_slice(token);
    frame(out, &body);
}

fn client_frames(w: &mut Seeds) {
    let t = "client_frames";
    w.put(t, "connect-44", None, &connect_frame(None));
    w.put(t, "ruok", None, b"ruok");
    let mut all = connect_frame(Some(false));
    for (i, (name, req)) in sample_requests().into_iter().enumerate() {
        let mut one = connect_frame(Some(false));
        request_frame(&mut one, 1, &req);
        w.put(t, name, None, &one);
        request_frame(&mut all, i as i32 + 1, &req);
    }
    w.put(t, "all-requests", None, &all);
    // An unknown opcode, and a SASL exchange (challenge, then a response).
    let mut unknown = connect_frame(None);
    frame(&mut unknown, &hex("00000001 000003e7"));
    w.put(t, "unknown-op", None, &unknown);
    let mut sasl = connect_frame(Some(false));
    sasl_frame(&mut sasl, 1, b"");
    // client_frames' server: bob/bobsecret, nonce bytes 0x5a.
    sasl_frame(&mut sasl, 2, &response("bob", "bobsecret", 0x5a));
    w.put(t, "sasl", None, &sasl);
}

// ----- SASL ----------------------------------------------------------------------------

/// A correct digest-response in the shape a ZooKeeper client sends, for the nonce a
/// target's challenge carries (its random bytes all `fill`), so that a seed reaches
/// the digest check and the success path.
fn response(user: &str, password: &str, fill: u8) -> Vec<u8> {
    use base64::Engine as _;
    use md5::{Digest as _, Md5};
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let nonce = base64::engine::general_purpose::STANDARD.encode([fill; NONCE_RANDOM_BYTES]);
    let cnonce = "OA6MHXh6VqTrRk";
    // The user name and password here are ISO-8859-1, as the client hashes them.
    let mut urp: Vec<u8> = format!("{user}:{SASL_REALM}:")
        .chars()
        .map(|c| c as u8)
        .collect();
    urp.extend(password.chars().map(|c| c as u8));
    let mut a1 = Md5::digest(&urp).to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    let ha2 = hex(&Md5::digest(format!("AUTHENTICATE:{SASL_DIGEST_URI}")));
    let kd = format!(
        "{}:{nonce}:00000001:{cnonce}:auth:{ha2}",
        hex(&Md5::digest(&a1))
    );
    format!(
        "charset=utf-8,username=\"{user}\",realm=\"{SASL_REALM}\",nonce=\"{nonce}\",\
nc=00000001,cnonce=\"{cnonce}\",digest-uri=\"{SASL_DIGEST_URI}\",maxbuf=65536,\
response={},qop=auth",
        hex(&Md5::digest(kd.as_bytes()))
    )
    .into_bytes()
}

fn sasl(w: &mut Seeds) {
    let t = "sasl_digest";
    // sasl_digest's server: any user, password "pässwörd", nonce bytes 0xa5.
    w.put(
        t,
        "response",
        Some(0),
        &response("bob", "p\u{e4}ssw\u{f6}rd", 0xa5),
    );
    w.put(
        t,
        "escapes",
        Some(0),
        b"username=\"a\\\"b\" , realm=zk-sasl-md5,,authzid=\"x\\\\y\"\r\n\tqop=auth-int",
    );
    w.put(
        t,
        "built",
        Some(1),
        b"bob\x00secret-cnonce\x01\x02\x03\x04\x05\x06\x07\x08",
    );
}

/// quorum_sasl's seeds, made by corral's own login state machines with the fuzz
/// target's random fills (nonce 0x3c, cnonce 0x5a), so each reaches the end of its
/// exchange: the learner's two packets (server mode), the challenge and rspauth
/// tokens side by side (learner mode), a round trip's choices, and odd packets.
fn quorum_sasl(w: &mut Seeds) {
    use corral::auth::quorum_login::{LearnerLogin, LearnerStep, ServerLogin, ServerStep};
    use corral::auth::{jaas, Secret};
    use corral::proto::quorum_auth::{AuthStatus, QuorumAuthPacket};
    let t = "quorum_sasl";
    let users = jaas::server_users(
        "QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule required \
         user_test=\"test\"; };",
        "QuorumServer",
    )
    .expect("JAAS text")
    .expect("QuorumServer section");
    let (mut learner, first) = LearnerLogin::start("test", Secret::new("test"));
    let mut server = ServerLogin::new();
    let mut from_learner = Vec::new();
    first.encode(&mut from_learner);
    let ServerStep::Continue(challenge) = server.on_packet(first, &mut |b| b.fill(0x3c), &users)
    else {
        panic!("no challenge");
    };
    let Ok(LearnerStep::Send(response)) =
        learner.on_packet(challenge.clone(), &mut |b| b.fill(0x5a))
    else {
        panic!("no response");
    };
    response.encode(&mut from_learner);
    w.put(t, "server-login", Some(0), &from_learner);
    let ServerStep::Authenticated { reply, .. } =
        server.on_packet(response, &mut |b| b.fill(0), &users)
    else {
        panic!("not authenticated");
    };
    let (mut c, mut r) = (challenge.token.unwrap(), reply.token.unwrap());
    let n = c.len().max(r.len());
    c.resize(n, b' ');
    r.resize(n, b' ');
    c.extend_from_slice(&r);
    w.put(t, "learner", Some(1), &c);
    w.put(t, "round-trip", Some(2), b"\x04test\x04test\x3c\x5a\x00");
    let mut odd = Vec::new();
    QuorumAuthPacket::new(AuthStatus::Success, None).encode(&mut odd);
    QuorumAuthPacket::new(AuthStatus::Error, Some(Vec::new())).encode(&mut odd);
    w.put(t, "packets", Some(0), &odd);
}

// ----- txns -----------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_000;
const SESSION: i64 = 0x0100_0014_ff34_0000;

/// Builds trees and txns as the sequencer does: prepare, then apply.
struct Builder {
    tree: Tree,
    zxid: i64,
    txns: Vec<(String, Vec<u8>)>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            tree: Tree::new(),
            zxid: 0x1_0000_0000,
            txns: Vec::new(),
        }
    }

    fn write(&mut self, name: &str, session_id: i64, req: Request) {
        self.zxid += 1;
        let ctx = TxnContext {
            zxid: self.zxid,
            time_ms: T0 + self.zxid,
            cxid: self.txns.len() as i32,
            extended_types_enabled: true,
            max_data_bytes: 0xfffff,
            enforce_quota: false,
            digest_enabled: true,
            ephemerals_allowed: true,
        };
        let ids = [Id::new("digest", &digest_id("u:p"))];
        let caller = Caller {
            session_id,
            ids: &ids,
            is_super: false,
        };
        let txn = prepare(&self.tree, &ctx, &caller, &req);
        apply(&mut self.tree, &txn);
        self.push(name, &txn);
    }

    fn push(&mut self, name: &str, txn: &Txn) {
        let mut b = Vec::new();
        txn.encode(&mut b, Some(self.tree.digest()));
        self.txns.push((name.to_string(), b));
    }
}

/// A tree with every node kind, ACLs, null and empty data, sessions' ephemerals.
fn busy_builder() -> Builder {
    let mut b = Builder::new();
    b.push(
        "create-session",
        &corral::tree::create_session_txn(b.zxid + 1, T0, SESSION, 30_000),
    );
    b.write(
        "create",
        SESSION,
        create(CreateKind::Create, "/app", Some(b"cfg"), 0, -1),
    );
    b.write(
        "create-acl",
        SESSION,
        Request::Create(CreateRequest {
            kind: CreateKind::Create2,
            path: "/app/locked".into(),
            data: Some(b"\x00\xff".to_vec()),
            acl: vec![
                Acl::new(perms::READ, "world", "anyone"),
                Acl::new(perms::ALL, "auth", ""),
            ],
            flags: 0,
            ttl: -1,
        }),
    );
    b.write(
        "create-eph-seq",
        SESSION,
        create(CreateKind::Create, "/app/e-", None, 3, -1),
    );
    b.write(
        "container",
        SESSION,
        create(CreateKind::Container, "/jobs", Some(b""), 4, -1),
    );
    b.write(
        "ttl",
        SESSION,
        create(CreateKind::Ttl, "/lease", Some(b"t"), 5, 90_000),
    );
    b.write(
        "setdata-null",
        SESSION,
        Request::SetData {
            path: "/app".into(),
            data: None,
            version: -1,
        },
    );
    b.write(
        "setacl",
        SESSION,
        Request::SetAcl {
            path: "/lease".into(),
            acl: vec![Acl::new(perms::ALL, "ip", "127.0.0.1")],
            version: -1,
        },
    );
    b.write(
        "multi",
        SESSION,
        Request::Multi(vec![
            create(CreateKind::Create, "/jobs/j1", Some(b"1"), 0, -1),
            Request::Check {
                path: "/app".into(),
                version: 1,
            },
            Request::SetData {
                path: "/jobs/j1".into(),
                data: Some(b"2".to_vec()),
                version: -1,
            },
        ]),
    );
    b.write(
        "multi-failed",
        SESSION,
        Request::Multi(vec![
            Request::Delete {
                path: "/jobs/j1".into(),
                version: -1,
            },
            create(CreateKind::Create, "/app", None, 0, -1),
        ]),
    );
    b.write(
        "error",
        SESSION,
        create(CreateKind::Create, "/app", None, 0, -1),
    );
    b.write(
        "delete",
        SESSION,
        Request::Delete {
            path: "/jobs/j1".into(),
            version: -1,
        },
    );
    b.write(
        "unicode",
        SESSION,
        create(
            CreateKind::Create,
            "/app/\u{e9}\u{1f600}",
            Some(b"u"),
            0,
            -1,
        ),
    );
    b
}

fn txns(w: &mut Seeds) {
    let t = "txn";
    let mut b = busy_builder();
    let close = corral::tree::close_session_txn(&b.tree, b.zxid + 1, T0, SESSION, 99);
    b.push("close-session", &close);
    let reconfig = Txn {
        session_id: SESSION,
        cxid: 7,
        zxid: b.zxid + 2,
        time_ms: T0,
        op: TxnOp::Reconfig {
            data: b"server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\nversion=100000000"
                .to_vec(),
            version: -1,
        },
    };
    b.push("reconfig", &reconfig);
    for (name, bytes) in &b.txns {
        w.put(t, name, None, bytes);
    }
    // PEER-PROTOCOL §13: the PROPOSAL of an error txn (no digest).
    w.put(
        t,
        "capture-error-txn",
        None,
        &hex("01000014ff340000 00000007 0000000100000008 000001a2275339d1 ffffffff ffffff92"),
    );
}

// ----- snapshots ------------------------------------------------------------------------

fn sessions() -> Vec<(i64, i32)> {
    vec![(SESSION, 30_000), (SESSION + 1, 4_000)]
}

fn snap_stream(tree: &Tree, kind: ZkSnapKind) -> Vec<u8> {
    let mut enc = ZkSnapEncoder::new(Arc::new(tree.clone()), sessions(), kind, 4096);
    let mut out = Vec::new();
    while enc.next_chunk(&mut out) {}
    out
}

fn snapshots(w: &mut Seeds) {
    let fresh = Tree::new();
    let busy = busy_builder().tree;
    for (name, tree) in [("fresh", &fresh), ("busy", &busy)] {
        let mut own = Vec::new();
        tree.write_snapshot(&mut own).unwrap();
        w.put("corral_snapshot", name, Some(0), &own);
        // Control bit 0: the target appends the checksum itself.
        w.put(
            "corral_snapshot",
            &format!("{name}-unsealed"),
            Some(1),
            &own[..own.len() - 4],
        );

        w.put(
            "zk_snapshot",
            &format!("{name}-snap"),
            Some(0),
            &snap_stream(tree, ZkSnapKind::Snap),
        );
        let body = snap_stream(tree, ZkSnapKind::FileBody);
        w.put("zk_snapshot", &format!("{name}-body"), Some(3), &body);

        for (suffix, digest) in [
            ("", Some(ZxidDigest::new(0x1_0000_0005, tree.digest()))),
            ("-nodigest", None),
        ] {
            let mut file = Vec::new();
            write_zk_snapshot_file(&mut file, tree, sessions(), digest).unwrap();
            w.put(
                "zk_snapshot_file",
                &format!("{name}{suffix}"),
                Some(0),
                &file,
            );
            w.put(
                "zk_snapshot_file",
                &format!("{name}{suffix}-reseal"),
                Some(1),
                &file,
            );
        }
    }
}

// ----- quorum port ----------------------------------------------------------------------

fn packets(ps: &[QuorumPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in ps {
        p.encode(&mut out);
    }
    out
}

fn quorum(w: &mut Seeds) {
    let t = "quorum_packet";
    let b = busy_builder();
    let proposals: Vec<QuorumPacket> = b
        .txns
        .iter()
        .take(4)
        .map(|(_, txn)| {
            let zxid = i64::from_be_bytes(txn[12..20].try_into().unwrap());
            QuorumPacket::proposal(zxid, Bytes::copy_from_slice(txn))
        })
        .collect();
    let (_, first_txn) = &b.txns[0];
    let first_zxid = i64::from_be_bytes(first_txn[12..20].try_into().unwrap());
    let config = "server.1=127.0.0.1:23192:23202:participant\nversion=100000000";
    // What a learner reads: the leader's side of a DIFF sync, then broadcast.
    let mut learner = vec![
        QuorumPacket::leader_info(1),
        QuorumPacket::diff(0x1_0000_0000),
    ];
    learner.extend(proposals.iter().cloned());
    learner.extend([
        QuorumPacket::commit(first_zxid),
        QuorumPacket::new_leader(1, config),
        QuorumPacket::uptodate(),
        QuorumPacket::ping_from_leader(first_zxid),
        QuorumPacket::inform(first_zxid, Bytes::copy_from_slice(first_txn)),
        QuorumPacket::commit_and_activate(first_zxid, 2),
        QuorumPacket::inform_and_activate(first_zxid, 2, first_txn),
        QuorumPacket::revalidate_reply(RevalidateReply {
            session_id: SESSION,
            valid: true,
        }),
        QuorumPacket::sync(),
        QuorumPacket::trunc(0x1_0000_0002),
    ]);
    w.put(t, "learner-diff", Some(0), &packets(&learner));
    // A SNAP sync: the packet, the raw snapshot, then NEWLEADER and UPTODATE.
    let mut snap = packets(&[QuorumPacket::leader_info(2), QuorumPacket::snap(b.zxid)]);
    snap.extend(snap_stream(&b.tree, ZkSnapKind::Snap));
    snap.extend(packets(&[
        QuorumPacket::new_leader(2, config),
        QuorumPacket::uptodate(),
    ]));
    w.put(t, "learner-snap", Some(0), &snap);
    // What a leader reads from a follower and an observer.
    let req = LearnerRequest {
        session_id: SESSION,
        cxid: 1,
        op: op::CREATE,
        body: {
            let mut body = Vec::new();
            create(CreateKind::Create, "/peerdoc", Some(b"hello"), 0, -1).encode_body(&mut body);
            Bytes::from(body)
        },
    };
    let leader = vec![
        QuorumPacket::follower_info(0, LearnerInfo::new(1, 0)),
        QuorumPacket::ack_epoch(0, AckEpoch { current_epoch: 0 }),
        QuorumPacket::ack(0x1_0000_0000),
        QuorumPacket::request(
            &req,
            Some(vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "u:x")].into()),
        ),
        QuorumPacket::ping_from_learner(first_zxid, &[(SESSION, 30_000), (SESSION + 1, 4_000)]),
        QuorumPacket::revalidate_request(RevalidateRequest {
            session_id: SESSION,
            timeout_ms: 30_000,
        }),
        QuorumPacket::sync(),
        QuorumPacket::observer_info(0, LearnerInfo::new(3, 0x1_0000_0000)),
    ];
    w.put(t, "leader", Some(1), &packets(&leader));
    // PEER-PROTOCOL §13, as captured.
    let captured = [
        ("capture-followerinfo", 1, "0000000b 0000000000000000 00000014 0000000000000001 00010000 0000000000000000 ffffffff"),
        ("capture-leaderinfo", 0, "00000011 0000000100000000 00000004 00010000 ffffffff"),
        ("capture-ackepoch", 1, "00000012 0000000000000000 00000004 00000000 ffffffff"),
        ("capture-diff", 0, "0000000d 0000000000000000 ffffffff ffffffff"),
        ("capture-uptodate", 0, "0000000c ffffffffffffffff ffffffff ffffffff"),
        ("capture-request-session", 1, "00000001 ffffffffffffffff 00000014 01000014ff340000 00000000 fffffff6 00007530 ffffffff"),
        ("capture-request-create", 1, "00000001 ffffffffffffffff 00000044 01000014ff340000 00000001 00000001 00000008 2f70656572646f63 00000005 68656c6c6f 00000001 0000001f 00000005 776f726c64 00000006 616e796f6e65 00000000 00000001 00000002 6970 00000009 3132372e302e302e31"),
        ("capture-proposal-error", 0, "00000002 0000000100000008 00000024 01000014ff340000 00000007 0000000100000008 000001a2275339d1 ffffffff ffffff92 ffffffff"),
    ];
    for (name, control, h) in captured {
        w.put(t, name, Some(control), &hex(h));
    }
}

// ----- election port --------------------------------------------------------------------

fn election(w: &mut Seeds) {
    let t = "election";
    let config = "server.1=127.0.0.1:23192:23202:participant;0.0.0.0:2181\n\
server.2=127.0.0.1:23193:23203:participant;0.0.0.0:2182\nversion=100000000";
    let n = Notification::new(ServerState::Looking, 2, 0, 1, 0, config.to_string());
    let mut frames = Vec::new();
    n.encode_frame(&mut frames);
    let following = Notification::new(
        ServerState::Following,
        3,
        0x1_0000_0004,
        1,
        1,
        String::new(),
    );
    following.encode_frame(&mut frames);
    // The 28- and 40-byte bodies older peers send.
    let mut body = Vec::new();
    n.encode_body(&mut body);
    for len in [28usize, 40] {
        frames.extend_from_slice(&(len as i32).to_be_bytes());
        frames.extend_from_slice(&body[..len]);
    }
    let mut v1 = Vec::new();
    InitMessage::v1(2, "127.0.0.1:23203").encode(&mut v1);
    v1.extend_from_slice(&frames);
    w.put(t, "v1-init-and-frames", Some(0), &v1);
    let mut v2 = Vec::new();
    InitMessage {
        protocol_version: corral::proto::election::PROTOCOL_VERSION_V2,
        sid: 3,
        election_addr: Some("[::1]:23204|10.0.0.3:3888|0.0.0.0:3888".into()),
    }
    .encode(&mut v2);
    w.put(t, "v2-init", Some(0), &v2);
    w.put(t, "legacy-init", Some(0), &7i64.to_be_bytes());
    w.put(t, "frames", Some(1), &frames);
}
