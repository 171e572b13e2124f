//! TLS on secureClientPort, against corral and the reference (Apache ZooKeeper with
//! its Netty connection factory) configured with the same keys: a CA, a server
//! certificate for localhost/127.0.0.1 and client certificates, made here with
//! rcgen and written as PEM files (the server's key and chain in one file, as the
//! reference's PEM key store wants them).
//!
//! Clients: kazoo (`use_ssl`, a Python script run by the test), the Java client with
//! its Netty socket (zkCli commands through `ZooKeeperMain`), and the raw wire
//! client of `common` over rustls. Each case runs on both servers and compares what
//! the clients saw; corral runs even without the reference (which then prints
//! SKIPPED, or fails under CI).
//!
//! Under CI a missing kazoo fails its test; elsewhere it prints SKIPPED.

mod common;

use common::pki::*;
use common::*;
use corral::proto::{perms, Acl, CreateKind, CreateRequest, ErrorCode, Request, Response};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The subjects of the client certificates, as Java prints them.
const ALICE: &str = "CN=alice,O=corral";
const BOB: &str = "CN=bob,O=corral";
const CAROL: &str = "CN=carol,O=corral";

/// A server with a TLS port; `tls` is that port's address.
struct TlsServer {
    server: Server,
    tls: String,
}

fn start(kind: Kind, pki: &Pki, extra: &str) -> TlsServer {
    let port = free_port();
    let server = Server::start(kind, &pki.server_cfg(port, extra));
    // Ready means the plaintext port answers; the reference opens its secure port a
    // little later, so wait (bounded) until it accepts a connection too.
    let tls = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&tls).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsServer { server, tls }
}

/// corral always; the reference when it is installed (else SKIPPED, or a failure
/// under CI).
fn kinds() -> Vec<Kind> {
    let mut v = vec![Kind::Corral];
    if require_reference() {
        v.push(Kind::Reference);
    }
    v
}

fn create(path: &str, data: &[u8], acl: Vec<Acl>) -> Request {
    Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.into(),
        data: Some(data.to_vec()),
        acl,
        flags: 0,
        ttl: -1,
    })
}

fn tls_session(addr: &str, config: Arc<rustls::ClientConfig>) -> RawClient {
    RawClient::connect_tls_session(addr, config, 10_000).expect("a TLS session")
}

/// The ids whoAmI reports for a client, sorted: the reference lists them in the
/// order of a Java hash set, corral in the order they were added.
fn who_am_i(c: &mut RawClient) -> Vec<(String, String)> {
    match c.call_decoded(&Request::WhoAmI).unwrap() {
        Decoded::Ok(Response::WhoAmI(mut ids)) => {
            ids.sort();
            ids
        }
        other => panic!("whoAmI: {other:?}"),
    }
}

/// The error code of a request (0 on success).
fn err_of(c: &mut RawClient, req: &Request) -> i32 {
    c.call(req).unwrap().err
}

#[test]
fn x509_ids_and_acls_as_the_reference() {
    let pki = Pki::new();
    let (alice, bob, carol) = (pki.client("alice"), pki.client("bob"), pki.client("carol"));
    let mut seen = Vec::new();
    for kind in kinds() {
        let s = start(
            kind,
            &pki,
            &format!("X509AuthenticationProvider.superUser={BOB}\n"),
        );
        let mut a = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        let mut b = tls_session(&s.tls, pki.rustls_client(Some(&bob)));
        let mut c = tls_session(&s.tls, pki.rustls_client(Some(&carol)));
        let mut plain = RawClient::connect(&s.server.addr(), 10_000);
        let only_alice = vec![Acl::new(perms::ALL, "x509", ALICE)];
        let get = Request::get_data_of("/x509");
        let outcome = vec![
            format!("alice whoAmI {:?}", who_am_i(&mut a)),
            format!("bob whoAmI {:?}", who_am_i(&mut b)),
            format!("carol whoAmI {:?}", who_am_i(&mut c)),
            format!(
                "create {}",
                err_of(&mut a, &create("/x509", b"mine", only_alice))
            ),
            format!("alice get {}", err_of(&mut a, &get)),
            format!("bob (super) get {}", err_of(&mut b, &get)),
            format!("carol get {}", err_of(&mut c, &get)),
            format!("plaintext get {}", err_of(&mut plain, &get)),
            // `auth` expands to the caller's x509 id.
            format!(
                "auth acl {}",
                err_of(
                    &mut c,
                    &create("/carol", b"", vec![Acl::new(perms::ALL, "auth", "")])
                )
            ),
            format!(
                "carol get own {}",
                err_of(&mut c, &Request::get_data_of("/carol"))
            ),
            format!(
                "alice get carol's {}",
                err_of(&mut a, &Request::get_data_of("/carol"))
            ),
            // An ACL id that is not a distinguished name is refused.
            format!(
                "bad x509 acl {}",
                err_of(
                    &mut a,
                    &create("/bad", b"", vec![Acl::new(perms::ALL, "x509", "alice")])
                )
            ),
        ];
        assert!(outcome[2].contains(CAROL), "{kind}: {outcome:#?}");
        assert_eq!(outcome[3], "create 0", "{kind}: {outcome:#?}");
        assert_eq!(outcome[4], "alice get 0", "{kind}");
        assert_eq!(
            outcome[6],
            format!("carol get {}", ErrorCode::NoAuth.code()),
            "{kind}"
        );
        seen.push((kind, outcome));
    }
    assert_same(&seen);
}

/// Every kind saw the same thing as the first.
fn assert_same<T: std::fmt::Debug + PartialEq>(seen: &[(Kind, T)]) {
    for (kind, got) in &seen[1..] {
        assert_eq!(got, &seen[0].1, "{kind} differs from {}", seen[0].0);
    }
}

#[test]
fn client_auth_need_refuses_a_client_without_a_certificate_and_want_takes_it() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    let mut seen = Vec::new();
    for kind in kinds() {
        // need (the default).
        let s = start(kind, &pki, "");
        let refused = RawClient::connect_tls_session(&s.tls, pki.rustls_client(None), 10_000);
        assert!(
            refused.is_err(),
            "{kind}: a client without a certificate was served"
        );
        let mut a = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        assert_eq!(
            err_of(&mut a, &create("/after", b"", Acl::open())),
            0,
            "{kind}"
        );
        drop(s);
        // want: served without a certificate (no x509 id), and with one.
        let s = start(kind, &pki, "ssl.clientAuth=want\n");
        let mut anon = tls_session(&s.tls, pki.rustls_client(None));
        let mut a = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        seen.push((kind, (who_am_i(&mut anon), who_am_i(&mut a))));
    }
    assert_same(&seen);
    let (anon, alice_ids) = &seen[0].1;
    assert!(anon.iter().all(|(scheme, _)| scheme != "x509"), "{anon:?}");
    assert!(
        alice_ids.contains(&("x509".into(), ALICE.into())),
        "{alice_ids:?}"
    );
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_dropped_while_tls_clients_are_served() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    for kind in kinds() {
        let s = start(kind, &pki, "");
        let mut a = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        assert_eq!(err_of(&mut a, &create("/tls", b"v", Acl::open())), 0);
        // A ZooKeeper handshake in plaintext, and a four-letter word.
        let handshake =
            RawClient::handshake(&s.tls, &corral::proto::ConnectRequest::new_session(10_000));
        assert!(
            handshake.is_err(),
            "{kind}: a plaintext handshake got a session"
        );
        let word = four_letter_word(&s.tls, "ruok").unwrap_or_default();
        assert_ne!(
            word, "imok",
            "{kind}: ruok answered in plaintext on the TLS port"
        );
        // The TLS session and the plaintext port go on.
        assert_eq!(err_of(&mut a, &Request::get_data_of("/tls")), 0, "{kind}");
        assert_eq!(four_letter_word(&s.server.addr(), "ruok").unwrap(), "imok");
        let mut b = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        assert_eq!(err_of(&mut b, &Request::get_data_of("/tls")), 0, "{kind}");
        if kind == Kind::Corral {
            let log = s.server.log();
            assert!(
                log.lines().any(|l| l.contains("TLS handshake with")
                    && l.contains("connection dropped")
                    && l.contains("not TLS")),
                "no log line for the plaintext client:\n{log}"
            );
        }
    }
}

#[test]
fn tls_and_plaintext_ports_serve_the_same_tree_at_once() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    let mut seen = Vec::new();
    for kind in kinds() {
        let s = start(kind, &pki, "");
        let mut plain = RawClient::connect(&s.server.addr(), 10_000);
        let mut tls = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        let mut outcome = vec![err_of(&mut plain, &create("/both", b"1", Acl::open()))];
        // A watch set over TLS fires for a write made in plaintext.
        let watch = Request::GetData {
            path: "/both".into(),
            watch: true,
        };
        outcome.push(err_of(&mut tls, &watch));
        let set = Request::SetData {
            path: "/both".into(),
            data: Some(b"2".to_vec()),
            version: -1,
        };
        outcome.push(err_of(&mut plain, &set));
        let ev = tls
            .wait_event(Duration::from_secs(10))
            .expect("a watch event over TLS");
        outcome.push(ev.event_type);
        let data = match tls.call_decoded(&Request::get_data_of("/both")).unwrap() {
            Decoded::Ok(Response::Data { data, .. }) => data,
            other => panic!("{other:?}"),
        };
        // A four-letter word over TLS.
        let mut word = RawClient::connect_tls(&s.tls, pki.rustls_client(Some(&alice))).unwrap();
        word.send_raw(b"ruok").unwrap();
        let answer = word.read_until_closed(Duration::from_secs(10)).unwrap();
        let port = s.tls.rsplit(':').next().unwrap();
        let conf = four_letter_word(&s.server.addr(), "conf").unwrap();
        assert!(
            conf.contains(&format!("secureClientPort={port}\n")),
            "{kind}: {conf}"
        );
        seen.push((
            kind,
            (outcome, data, String::from_utf8_lossy(&answer).to_string()),
        ));
    }
    assert_same(&seen);
    let (outcome, data, word) = &seen[0].1;
    assert_eq!(
        outcome,
        &vec![0, 0, 0, 3],
        "create, watch, set, NodeDataChanged"
    );
    assert_eq!(data.as_deref(), Some(&b"2"[..]));
    assert_eq!(word, "imok");
}

/// The zoo.cfg of a unified client port (no secureClientPort) for `pki`.
fn unified_cfg(pki: &Pki) -> String {
    format!(
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
         ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
         ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
         client.portUnification=true\n\
         authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n",
        pki.path("server.pem").display(),
        pki.path("ca.pem").display()
    )
}

/// client.portUnification=true without secureClientPort: the client port itself
/// takes TLS clients (told by their first bytes, as the reference's Netty factory
/// tells them) beside plaintext ones, four-letter words either way. The reference
/// registers its x509 provider for a secureClientPort only, so without one it
/// refuses every TLS client ("X509 Auth provider not found") unless
/// `authProvider.x509` names it, as here; corral always has the scheme.
#[test]
fn the_client_port_takes_tls_and_plaintext_with_port_unification() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    let cfg = unified_cfg(&pki);
    let mut seen = Vec::new();
    for kind in kinds() {
        let server = Server::start(kind, &cfg);
        let addr = server.addr();
        let mut plain = RawClient::connect(&addr, 10_000);
        let mut outcome = vec![format!(
            "plaintext create: {}",
            err_of(&mut plain, &create("/unified", b"u", Acl::open()))
        )];
        let mut tls = tls_session(&addr, pki.rustls_client(Some(&alice)));
        outcome.push(format!("TLS whoAmI: {:?}", who_am_i(&mut tls)));
        let data = match tls.call_decoded(&Request::get_data_of("/unified")).unwrap() {
            Decoded::Ok(Response::Data { data, .. }) => data,
            other => panic!("{kind}: {other:?}"),
        };
        outcome.push(format!("TLS read: {:?}", data.map(String::from_utf8)));
        let mut word = RawClient::connect_tls(&addr, pki.rustls_client(Some(&alice))).unwrap();
        word.send_raw(b"ruok").unwrap();
        let answer = word.read_until_closed(Duration::from_secs(10)).unwrap();
        outcome.push(format!(
            "ruok over TLS: {}",
            String::from_utf8_lossy(&answer)
        ));
        outcome.push(format!(
            "ruok in plaintext: {}",
            four_letter_word(&addr, "ruok").unwrap()
        ));
        let conf = four_letter_word(&addr, "conf").unwrap();
        let secure: Vec<&str> = conf
            .lines()
            .filter(|l| l.starts_with("secureClientPort="))
            .collect();
        outcome.push(format!("conf: {secure:?}"));
        seen.push((kind, outcome));
    }
    assert_same(&seen);
    let outcome = &seen[0].1;
    assert_eq!(outcome[0], "plaintext create: 0");
    assert!(outcome[1].contains(ALICE), "{outcome:#?}");
    assert_eq!(outcome[2], "TLS read: Some(Ok(\"u\"))");
    assert_eq!(outcome[3], "ruok over TLS: imok");
    assert_eq!(outcome[4], "ruok in plaintext: imok");
}

/// A client that stops inside a TLS record header on the unified port (its first
/// two bytes only) holds no one: a plaintext and a TLS session are served meanwhile,
/// and the server serves on once it is gone.
#[test]
fn a_client_stalled_inside_a_tls_header_on_the_unified_port_holds_no_one() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    let server = Server::corral(&unified_cfg(&pki));
    let addr = server.addr();
    let mut stalled = RawClient::from_stream(RawClient::connect_tcp(&addr).unwrap());
    stalled.send_raw(&[22, 3]).unwrap();
    let mut plain = RawClient::connect(&addr, 10_000);
    assert_eq!(err_of(&mut plain, &create("/stall", b"s", Acl::open())), 0);
    let mut tls = tls_session(&addr, pki.rustls_client(Some(&alice)));
    assert_eq!(err_of(&mut tls, &Request::get_data_of("/stall")), 0);
    drop(stalled);
    let mut after = RawClient::connect(&addr, 10_000);
    assert_eq!(err_of(&mut after, &Request::get_data_of("/stall")), 0);
    assert!(server.is_running());
}

/// A stop does not wait for the unified port to tell what a connection speaks: a
/// client that sent nothing and one stalled inside a TLS record header are closed
/// with the rest, and the process exits 0 with its clean-stop line (the sniff used
/// to hold them until the stop gave up on them, after CONNS_FLUSH_WAIT).
#[test]
fn a_stop_does_not_wait_for_silent_clients_on_the_unified_port() {
    let pki = Pki::new();
    let server = Server::corral(&unified_cfg(&pki));
    let addr = server.addr();
    let mut silent = RawClient::from_stream(RawClient::connect_tcp(&addr).unwrap());
    let mut stalled = RawClient::from_stream(RawClient::connect_tcp(&addr).unwrap());
    stalled.send_raw(&[22, 3]).unwrap();
    // Both are admitted before the stop (a four-letter word after them is answered).
    assert_eq!(four_letter_word(&addr, "ruok").unwrap(), "imok");
    assert!(server.signal(libc::SIGTERM), "corral is not running");
    for (name, c) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        assert!(
            c.read_until_closed(STOP_EXIT_WAIT).is_ok(),
            "the {name} client's connection stayed open"
        );
    }
    let status = server.wait_exit(STOP_EXIT_WAIT);
    let log = server.log();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit {status:?}; log:\n{log}"
    );
    assert!(
        log.contains("stopped cleanly"),
        "no clean-stop line; log:\n{log}"
    );
    // The shards closed them for the stop instead of giving up on them.
    assert!(!log.contains("did not flush within"), "log:\n{log}");
}

/// How long the stop test waits for a connection to close and for the exit.
const STOP_EXIT_WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_tls_client_that_does_not_read_is_paused_then_served_in_order() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    for kind in kinds() {
        let s = start(kind, &pki, "");
        let mut a = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        let big = vec![7u8; 512 * 1024];
        assert_eq!(err_of(&mut a, &create("/big", &big, Acl::open())), 0);
        // 40 replies of 512 KiB: well past corral.maxQueuedReplyBytesPerConnection
        // (4 MiB), so reading pauses until the client reads.
        let xids: Vec<i32> = (0..40)
            .map(|_| a.send(&Request::get_data_of("/big")).unwrap())
            .collect();
        let mut other = tls_session(&s.tls, pki.rustls_client(Some(&alice)));
        assert_eq!(
            err_of(&mut other, &Request::get_data_of("/big")),
            0,
            "{kind}: others are served"
        );
        for x in xids {
            let r = a.recv_reply().unwrap();
            assert_eq!((r.xid, r.err), (x, 0), "{kind}");
        }
    }
}

// ---- Real clients ----

const KAZOO_SCRIPT: &str = r#"
import sys
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl

hosts, ca, alice_crt, alice_key, bob_crt, bob_key, alice = sys.argv[1:8]

def connect(crt, key):
    zk = KazooClient(hosts=hosts, use_ssl=True, ca=ca, certfile=crt, keyfile=key,
                     verify_certs=True, timeout=10)
    zk.start(timeout=20)
    return zk

a = connect(alice_crt, alice_key)
a.create("/kazoo", b"over tls")
print("get", a.get("/kazoo")[0].decode())
a.create("/kazoo/secret", b"alice only", acl=[make_acl("x509", alice, all=True)])
print("alice", a.get("/kazoo/secret")[0].decode())
print("acl", [(x.id.scheme, x.id.id, x.perms) for x in a.get_acls("/kazoo/secret")[0]])
b = connect(bob_crt, bob_key)
print("bob", b.get("/kazoo")[0].decode())
try:
    b.get("/kazoo/secret")
    print("bob read the secret")
except NoAuthError:
    print("bob NoAuth")
a.stop()
b.stop()
print("done")
"#;

/// Whether kazoo can be imported; fails under CI when it cannot.
fn require_kazoo() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kazoo"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("kazoo (python3 -m pip install kazoo) is required under CI");
    }
    eprintln!("SKIPPED: kazoo is not installed (python3 -m pip install kazoo)");
    false
}

#[test]
fn kazoo_with_use_ssl_creates_and_reads_nodes() {
    if !require_kazoo() {
        return;
    }
    let pki = Pki::new();
    let (alice, bob) = (pki.client("alice"), pki.client("bob"));
    let script = pki.path("kazoo_tls.py");
    std::fs::write(&script, KAZOO_SCRIPT).unwrap();
    let mut seen = Vec::new();
    for kind in kinds() {
        let s = start(kind, &pki, "");
        let out = Command::new("python3")
            .arg(&script)
            .arg(&s.tls)
            .arg(pki.path("ca.pem"))
            .args([&alice.cert, &alice.key, &bob.cert, &bob.key])
            .arg(ALICE)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{kind}: kazoo failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push((kind, stdout));
    }
    assert_same(&seen);
    assert_eq!(
        seen[0].1,
        format!(
            "get over tls\nalice alice only\nacl [('x509', '{ALICE}', 31)]\nbob over tls\n\
             bob NoAuth\ndone\n"
        )
    );
}

/// Runs zkCli `commands` through the Java client's Netty socket over TLS with `keys`;
/// the lines it printed, less logging and connection chatter.
fn zk_cli(addr: &str, pki: &Pki, keys: &ClientKeys, commands: &[&str]) -> Vec<String> {
    let props = [
        "-Dzookeeper.client.secure=true".to_string(),
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty".into(),
        format!("-Dzookeeper.ssl.keyStore.location={}", keys.both.display()),
        "-Dzookeeper.ssl.keyStore.type=PEM".into(),
        format!(
            "-Dzookeeper.ssl.trustStore.location={}",
            pki.path("ca.pem").display()
        ),
        "-Dzookeeper.ssl.trustStore.type=PEM".into(),
    ];
    let mut cmd = reference_java(&props);
    cmd.args(["org.apache.zookeeper.ZooKeeperMain", "-server", addr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("java");
    let input = format!("{}\nquit\n", commands.join("\n"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = wait_bounded(child, Duration::from_secs(90));
    out.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('[')
                && !l.starts_with("WATCHER::")
                && !l.starts_with("WatchedEvent")
                && !l.starts_with("Connecting to")
                && !l.starts_with("Welcome to")
                && !l.starts_with("JLine support")
                // The client logs a closing channel's exception (and its stack) when
                // the server drops the connection before `quit` finishes: chatter
                // whose timing differs from run to run.
                && !l.contains("Exception")
                && !l.starts_with("at ")
        })
        .map(String::from)
        .collect()
}

/// Waits (bounded) for a child and returns its stdout, then its stderr (zkCli
/// prints some answers there, "Created ..." among them).
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> String {
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    format!("{stdout}\n{stderr}")
}

#[test]
fn the_java_client_with_its_netty_socket() {
    if !require_reference() {
        return; // the Java client comes with the reference's jars
    }
    let pki = Pki::new();
    let (dave, erin) = (pki.client_cn("dave"), pki.client_cn("erin"));
    let mut seen = Vec::new();
    for kind in [Kind::Corral, Kind::Reference] {
        let s = start(kind, &pki, "");
        let acl = "x509:CN=dave:cdrwa";
        let mut lines = zk_cli(
            &s.tls,
            &pki,
            &dave,
            &[
                "create /java hello",
                "get /java",
                &format!("create /java/secret s3cret {acl}"),
                "get /java/secret",
                "getAcl /java/secret",
                "whoami",
            ],
        );
        lines.extend(zk_cli(
            &s.tls,
            &pki,
            &erin,
            &["get /java", "get /java/secret"],
        ));
        // whoami lists ids in a different order on each server (see `who_am_i`).
        lines.sort();
        seen.push((kind, lines));
    }
    let lines = &seen[0].1;
    for want in [
        "Created /java",
        "hello",
        "s3cret",
        "'x509,'CN=dave",
        "x509: CN=dave",
        "Insufficient permission : /java/secret",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "no line `{want}` in {lines:#?}"
        );
    }
    assert_same(&seen);
}

// ---- Start-up refusals (corral) ----

/// Starts corral on `cfg` expecting it to stop; its `corral: ` lines.
fn refused(cfg: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoo.cfg");
    let full = format!(
        "dataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n{cfg}",
        dir.path().join("data").display(),
        free_port()
    );
    std::fs::write(&path, full).unwrap();
    let child = corral_command(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        assert!(waited < Duration::from_secs(30), "corral did not stop");
        std::thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("corral: "))
        .map(String::from)
        .collect()
}

#[test]
fn jks_and_pkcs12_stores_are_refused_with_the_conversion() {
    let pki = Pki::new();
    let jks = pki.path("server.jks");
    std::fs::write(&jks, b"not read").unwrap();
    let lines = refused(&format!(
        "secureClientPort={}\nssl.keyStore.location={}\nssl.keyStore.password=changeit\n\
         ssl.trustStore.location={}\n",
        free_port(),
        jks.display(),
        pki.path("ca.pem").display()
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let j = jks.display();
    assert_eq!(
        lines[0],
        format!(
            "corral: config line 5: `ssl.keyStore.location`: JKS stores are not supported: \
             corral reads PEM only; convert with `keytool -importkeystore -srckeystore {j} \
             -srcstoretype JKS -destkeystore {j}.p12 -deststoretype PKCS12` then `openssl \
             pkcs12 -in {j}.p12 -nodes -out server.pem` and set ssl.keyStore.location to the \
             PEM file (key and certificate chain) and ssl.keyStore.type=PEM"
        )
    );
    let lines = refused(&format!(
        "secureClientPort={}\nssl.keyStore.location={}\nssl.trustStore.location=/t/ca.p12\n\
         ssl.trustStore.type=PKCS12\n",
        free_port(),
        pki.path("server.pem").display(),
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("corral: config line 7: `ssl.trustStore.type`: PKCS12 stores")
            && lines[0].contains("`openssl pkcs12 -in /t/ca.p12 -nokeys -out ca.pem`"),
        "{lines:?}"
    );
}

#[test]
fn bad_pem_stores_stop_start_up_naming_the_key_and_the_file() {
    let pki = Pki::new();
    let alice = pki.client("alice");
    let missing = pki.path("missing.pem");
    let ca = pki.path("ca.pem");
    let cases: [(&Path, &Path, &str); 3] = [
        (&missing, &ca, "ssl.keyStore.location={}: cannot read it:"),
        (
            &alice.cert,
            &ca,
            "ssl.keyStore.location={}: it holds no private key",
        ),
        (
            &pki.path("server.pem"),
            &alice.key,
            "ssl.trustStore.location={}: it holds no certificate",
        ),
    ];
    for (key_store, trust_store, want) in cases {
        let lines = refused(&format!(
            "secureClientPort={}\nssl.keyStore.location={}\nssl.trustStore.location={}\n\
             ssl.keyStore.type=PEM\nssl.trustStore.type=PEM\n",
            free_port(),
            key_store.display(),
            trust_store.display()
        ));
        let named = if want.starts_with("ssl.keyStore") {
            key_store
        } else {
            trust_store
        };
        let want = format!(
            "corral: {}",
            want.replace("{}", &named.display().to_string())
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&want),
            "{} does not start with {want}",
            lines[0]
        );
    }
}

/// The mntr values of `keys` (absent keys read as -1).
fn mntr_values(addr: &str, keys: &[&str]) -> Vec<i64> {
    let text = four_letter_word(addr, "mntr").unwrap_or_default();
    keys.iter()
        .map(|k| {
            text.lines()
                .filter_map(|l| l.split_once('\t'))
                .find(|(name, _)| name == k)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(-1)
        })
        .collect()
}

#[test]
fn failed_handshakes_and_plaintext_connections_are_counted_as_the_reference() {
    let pki = Pki::new();
    let keys = [
        "zk_auth_failed_count",
        "zk_non_mtls_local_conn_count",
        "zk_non_mtls_remote_conn_count",
        "zk_outstanding_tls_handshake",
        "zk_unsuccessful_handshake",
    ];
    let mut seen = Vec::new();
    for kind in kinds() {
        let s = start(kind, &pki, "");
        // `start`'s probe of the TLS port closed before any handshake: one failure,
        // which the reference books a little later, its auth failure and its
        // unsuccessful handshake not at once (bounded wait for both).
        let mut before = mntr_values(&s.server.addr(), &keys);
        for _ in 0..100 {
            if before[0] >= 1 && before[4] >= 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            before = mntr_values(&s.server.addr(), &keys);
        }
        // Not TLS on the TLS port: refused, and closed by the server.
        let mut garbage = std::net::TcpStream::connect(&s.tls).unwrap();
        garbage
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = std::io::Write::write_all(&mut garbage, b"GET / HTTP/1.0\r\n\r\nmore bytes\r\n");
        let _ = std::io::Read::read_to_end(&mut garbage, &mut Vec::new());
        // A TLS client without the certificate the port needs.
        let refused = RawClient::connect_tls_session(&s.tls, pki.rustls_client(None), 10_000);
        assert!(refused.is_err(), "{kind}");
        // Two plaintext clients on the plaintext port.
        let plain: Vec<RawClient> = (0..2)
            .map(|_| RawClient::connect(&s.server.addr(), 10_000))
            .collect();
        // The reference books the refusals a little later too (bounded wait); each
        // mntr is itself one more plaintext connection, taken off below.
        let booked = |a: &[i64]| a[0] - before[0] >= 2 && a[4] - before[4] >= 2 && a[3] == 0;
        let mut after = mntr_values(&s.server.addr(), &keys);
        let mut extra_mntr = 0;
        while !booked(&after) && extra_mntr < 100 {
            std::thread::sleep(Duration::from_millis(100));
            after = mntr_values(&s.server.addr(), &keys);
            extra_mntr += 1;
        }
        drop(plain);
        assert_eq!(before[0], 1, "{kind}: {before:?}");
        let mut delta: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        delta[1] -= extra_mntr;
        seen.push((kind, delta));
    }
    // Two refused handshakes; the two clients and the mntr connection, on loopback.
    // No handshake is left in progress.
    assert_eq!(seen[0].1, vec![2, 3, 0, 0, 2]);
    assert_same(&seen);
}
