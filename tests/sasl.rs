//! SASL DIGEST-MD5 logins, corral against the reference (Apache ZooKeeper 3.8 with
//! `authProvider.1=...SASLAuthenticationProvider` and a JAAS file): the same JAAS
//! file configures both, and the same clients must see the same answers.
//!
//! - kazoo (`sasl_options`, a Python script run from here): logins, a node with ACL
//!   `sasl:bob:cdrwa` read by bob and refused to others, a wrong password and an
//!   unknown user;
//! - the reference's own CLI (`ZooKeeperMain` with a client JAAS file);
//! - the raw wire: the challenge, rspauth, AuthFailed and the closed connection,
//!   allowSaslFailedClients, superUser, and a server without a JAAS file;
//! - corral's start-up error for a bad JAAS file.
//!
//! Each test starts the servers it compares; the reference tests skip loudly when
//! the reference (or kazoo) is missing, and fail under CI.

mod common;

use common::*;
use corral::proto::{
    op, Acl, CreateKind, CreateRequest, JuteWrite, Reader, Request, RequestHeader,
};
use md5::{Digest as _, Md5};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER_JAAS: &str = "\
// users of the SASL DIGEST-MD5 logins
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super=\"supersecret\"
    user_alice=\"alicesecret\"
    user_bob=\"bobsecret\";
};
";

const SASL_PROVIDER: &str =
    "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n";

/// Where a test's JAAS files live.
struct Jaas {
    dir: tempfile::TempDir,
}

impl Jaas {
    fn new() -> Jaas {
        let dir = tempfile::Builder::new()
            .prefix("corral-jaas-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("server.jaas"), SERVER_JAAS).unwrap();
        Jaas { dir }
    }

    fn server(&self) -> PathBuf {
        self.dir.path().join("server.jaas")
    }

    /// A client JAAS file (for the reference's CLI) logging in as `user`.
    fn client(&self, user: &str, password: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("client-{user}-{password}.jaas"));
        let text = format!(
            "Client {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    \
             username=\"{user}\"\n    password=\"{password}\";\n}};\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The zoo.cfg lines both servers get: the provider and the JAAS file (the
    /// launcher hands `java.*` keys to the reference JVM as system properties).
    fn cfg(&self) -> String {
        format!(
            "{SASL_PROVIDER}java.security.auth.login.config={}\n",
            self.server().display()
        )
    }
}

// ---- kazoo ----

const KAZOO_TRANSCRIPT: &str = "\
login bob: True
bob creates /sasl: /sasl
bob reads /sasl: b\"bob's\"
bob reads the ACL: sasl:bob:31
bob creates a child: /sasl/child
bob sets /sasl: 1
bad sasl ACL id: InvalidACLError
principal ACL id: /principal
anonymous exists /sasl: 1
anonymous reads /sasl: NoAuthError
anonymous creates under /sasl: NoAuthError
anonymous reads the ACL: NoAuthError
login alice: True
alice reads /sasl: NoAuthError
login super: True
super reads /sasl: b'v2'
super reads the child: b'c'
login bob/wrong: AuthFailedError
login eve/anything: AuthFailedError
";

fn kazoo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/kazoo_sasl.py")
}

fn kazoo_transcript(server: &Server) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(kazoo_script()).arg(server.port.to_string());
    let out = run_client_program(cmd, "");
    if out.stdout != KAZOO_TRANSCRIPT {
        eprintln!("--- kazoo stderr ({}) ---\n{}", server.kind, out.stderr);
    }
    out.stdout
}

#[test]
fn kazoo_logins_acls_and_failures_match_the_reference() {
    if !require_reference() || !require_kazoo() {
        return;
    }
    let jaas = Jaas::new();
    let reference = kazoo_transcript(&Server::reference(&jaas.cfg()));
    let corral = kazoo_transcript(&Server::corral(&jaas.cfg()));
    assert_eq!(reference, KAZOO_TRANSCRIPT, "the reference");
    assert_eq!(corral, KAZOO_TRANSCRIPT, "corral");
}

// ---- the reference's CLI ----

/// The CLI's answers without its log lines, stack traces, the address it
/// connects to, or the order of lines printed by two threads (events and
/// command output interleave by timing): sorted.
fn cli_lines(server: &Server, client_jaas: &Path, script: &str) -> Vec<String> {
    let sysprops = [format!(
        "-Djava.security.auth.login.config={}",
        client_jaas.display()
    )];
    let out = run_client_program(zookeeper_cli_command(&server.addr(), &sysprops), script);
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('[')
                && !l.starts_with('\t')
                && !l.trim_start().starts_with("at ")
                && !l.contains("Exception")
                && !l.starts_with("Connecting to")
        })
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_reference_cli_logs_in_and_is_refused_alike() {
    if !require_reference() {
        return;
    }
    let jaas = Jaas::new();
    let bob = jaas.client("bob", "bobsecret");
    let wrong = jaas.client("bob", "wrong");
    let script = "whoami\ncreate /cli data sasl:bob:cdrwa\nget /cli\ngetAcl /cli\nquit\n";
    let refused = "get /cli\nquit\n";
    let run = |kind: Kind| {
        let server = Server::start(kind, &jaas.cfg());
        (
            cli_lines(&server, &bob, script),
            cli_lines(&server, &wrong, refused),
        )
    };
    let (ref_ok, ref_refused) = run(Kind::Reference);
    let (corral_ok, corral_refused) = run(Kind::Corral);
    for want in [
        "WatchedEvent state:SaslAuthenticated type:None path:null",
        "sasl: bob",
        "ip: 127.0.0.1",
        "Created /cli",
        "data",
        "'sasl,'bob",
        ": cdrwa",
    ] {
        assert!(
            ref_ok.iter().any(|l| l == want),
            "reference lacks {want:?}: {ref_ok:#?}"
        );
    }
    assert_eq!(corral_ok, ref_ok, "a CLI login as bob");
    // A wrong password: AuthFailed, and no sasl id.
    let events = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.starts_with("WatchedEvent"))
            .cloned()
            .collect()
    };
    assert!(
        ref_refused.iter().any(|l| l.contains("state:AuthFailed")),
        "{ref_refused:#?}"
    );
    assert!(!corral_refused.iter().any(|l| l.contains("sasl: bob")));
    assert_eq!(
        events(&corral_refused),
        events(&ref_refused),
        "a wrong password"
    );
}

// ---- the raw wire ----

fn sasl_frame(xid: i32, token: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    RequestHeader {
        xid,
        opcode: op::SASL,
    }
    .encode(&mut v);
    v.put_buffer(token);
    v
}

/// A sasl reply: xid, zxid, err and the token (`None`: null).
type SaslReply = (i32, i64, i32, Option<Vec<u8>>);

/// One SASL step: the reply, or how the connection ended.
fn sasl_step(c: &mut RawClient, xid: i32, token: &[u8]) -> Result<SaslReply, String> {
    c.send_frame(&sasl_frame(xid, token))
        .map_err(|e| format!("send: {e}"))?;
    let r = c.recv_reply().map_err(|e| format!("{e:?}"))?;
    let mut rd = Reader::new(&r.body);
    let tok = rd.buffer().map_err(|e| e.to_string())?.map(<[u8]>::to_vec);
    assert!(rd.is_empty(), "bytes after the SetSASLResponse");
    Ok((r.xid, r.zxid, r.err, tok))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2831's response-value for qop auth (the test's own implementation).
fn digest(method: &str, user: &str, password: &str, nonce: &str, cnonce: &str) -> String {
    let uri = "zookeeper/zk-sasl-md5";
    let h = |b: &[u8]| hex(&Md5::digest(b));
    let mut a1 = Md5::digest(format!("{user}:zk-sasl-md5:{password}").as_bytes()).to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    h(format!(
        "{}:{nonce}:00000001:{cnonce}:auth:{}",
        h(&a1),
        h(format!("{method}:{uri}").as_bytes())
    )
    .as_bytes())
}

/// The nonce of a challenge, and the challenge with it blanked.
fn split_challenge(token: &[u8]) -> (String, String) {
    let text = String::from_utf8(token.to_vec()).unwrap();
    let start = text.find("nonce=\"").expect("a nonce") + 7;
    let end = start + text[start..].find('"').unwrap();
    let nonce = text[start..end].to_string();
    (
        nonce.clone(),
        text.replace(&nonce, &format!("<{} chars>", nonce.len())),
    )
}

fn response_token(user: &str, password: &str, nonce: &str) -> String {
    let cnonce = "c0ffee";
    format!(
        "charset=utf-8,username=\"{user}\",realm=\"zk-sasl-md5\",nonce=\"{nonce}\",nc=00000001,\
         cnonce=\"{cnonce}\",digest-uri=\"zookeeper/zk-sasl-md5\",maxbuf=65536,\
         response={},qop=auth",
        digest("AUTHENTICATE", user, password, nonce, cnonce)
    )
}

fn who_am_i(c: &mut RawClient) -> Vec<(String, String)> {
    match c.call_decoded(&Request::WhoAmI) {
        Ok(Decoded::Ok(corral::proto::Response::WhoAmI(mut ids))) => {
            ids.sort();
            ids
        }
        Ok(other) => panic!("whoAmI: {other:?}"),
        Err(e) => panic!("whoAmI: {e:?}"),
    }
}

/// A full login; returns what the steps showed, nonce and rspauth checked.
fn login(c: &mut RawClient, user: &str, password: &str, log: &mut Vec<String>) -> bool {
    let (xid, zxid, err, tok) = sasl_step(c, 11, b"").unwrap();
    let (nonce, shape) = split_challenge(&tok.expect("a challenge token"));
    log.push(format!(
        "challenge: xid {xid} zxid {zxid} err {err}: {shape}"
    ));
    match sasl_step(c, 12, response_token(user, password, &nonce).as_bytes()) {
        Ok((xid, zxid, 0, Some(t))) => {
            let want = format!("rspauth={}", digest("", user, password, &nonce, "c0ffee"));
            assert_eq!(String::from_utf8(t).unwrap(), want, "rspauth");
            log.push(format!(
                "{user}: xid {xid} zxid {zxid} err 0, rspauth verified"
            ));
            true
        }
        Ok((xid, zxid, err, tok)) => {
            log.push(format!(
                "{user}: xid {xid} zxid {zxid} err {err} token {tok:?}"
            ));
            false
        }
        Err(e) => {
            log.push(format!("{user}: {e}"));
            false
        }
    }
}

fn ends_closed(c: &mut RawClient) -> String {
    c.set_read_timeout(Duration::from_secs(5));
    match c.read_frame() {
        Err(ReadEnd::Closed) => "closed".into(),
        other => format!("not closed: {other:?}"),
    }
}

fn raw_transcript(server: &Server) -> Vec<String> {
    let mut log = Vec::new();
    // bob logs in; whoAmI names him; the exchange cannot go on.
    let mut c = RawClient::connect(&server.addr(), 30_000);
    assert!(login(&mut c, "bob", "bobsecret", &mut log));
    log.push(format!("whoAmI: {:?}", who_am_i(&mut c)));
    log.push(format!(
        "token after success: {:?}",
        sasl_step(&mut c, 13, b"")
    ));
    log.push(format!("then: {}", ends_closed(&mut c)));
    // A wrong password and an unknown user: AuthFailed, no token, closed.
    for (user, password) in [("bob", "wrong"), ("eve", "evesecret")] {
        let mut c = RawClient::connect(&server.addr(), 30_000);
        assert!(!login(&mut c, user, password, &mut log));
        log.push(format!("then: {}", ends_closed(&mut c)));
    }
    // A first token is ignored (no initial response); an oversized one fails.
    let mut c = RawClient::connect(&server.addr(), 30_000);
    let (_, _, err, tok) = sasl_step(&mut c, 21, b"username=\"bob\"").unwrap();
    log.push(format!(
        "initial token: err {err}, {}",
        split_challenge(&tok.unwrap()).1
    ));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    log.push(format!(
        "4097-byte token: {:?}",
        sasl_step(&mut c, 22, &[b'a'; 4097])
    ));
    log.push(format!("then: {}", ends_closed(&mut c)));
    log
}

#[test]
fn the_wire_exchange_matches_the_reference() {
    if !require_reference() {
        return;
    }
    let jaas = Jaas::new();
    let reference = raw_transcript(&Server::reference(&jaas.cfg()));
    let corral = raw_transcript(&Server::corral(&jaas.cfg()));
    assert_eq!(
        reference[0],
        "challenge: xid 11 zxid 0 err 0: realm=\"zk-sasl-md5\",nonce=\"<40 chars>\",\
         charset=utf-8,algorithm=md5-sess"
    );
    assert!(
        reference.iter().any(|l| l.contains("err -115 token None")),
        "{reference:#?}"
    );
    assert_eq!(corral, reference);
}

/// Where corral does not follow the reference: its SaslServerCallbackHandler keeps
/// the last user name it found in a field shared by every connection, so after
/// bob has logged in, an unknown user gets bob's password checked and, knowing
/// it, logs in under the unknown name (seen on 3.8.0). corral refuses unknown users.
#[test]
fn an_unknown_user_never_logs_in_with_another_users_password() {
    let jaas = Jaas::new();
    let server = Server::corral(&jaas.cfg());
    let mut log = Vec::new();
    let mut c = RawClient::connect(&server.addr(), 30_000);
    assert!(login(&mut c, "bob", "bobsecret", &mut log));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    assert!(!login(&mut c, "eve", "bobsecret", &mut log), "{log:#?}");
    assert_eq!(ends_closed(&mut c), "closed");
    assert!(server
        .log()
        .contains("user `eve` is not in the JAAS Server section"));
}

fn create_open(c: &mut RawClient, path: &str, acl: Vec<Acl>) -> i32 {
    let req = Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.into(),
        data: Some(b"d".to_vec()),
        acl,
        flags: 0,
        ttl: -1,
    });
    c.call(&req).unwrap().err
}

fn get_err(c: &mut RawClient, path: &str) -> i32 {
    c.call(&Request::GetData {
        path: path.into(),
        watch: false,
    })
    .unwrap()
    .err
}

/// allowSaslFailedClients keeps a failed login's connection (OK, no token, no
/// id); superUser makes alice the super user.
fn allow_and_super_transcript(server: &Server) -> Vec<String> {
    let mut log = Vec::new();
    let mut c = RawClient::connect(&server.addr(), 30_000);
    log.push(format!(
        "create with an ACL for another host: {}",
        create_open(&mut c, "/other", vec![Acl::new(31, "ip", "10.9.8.7")])
    ));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    login(&mut c, "bob", "wrong", &mut log);
    log.push(format!("whoAmI: {:?}", who_am_i(&mut c)));
    log.push(format!(
        "bob's failed connection reads: {}",
        get_err(&mut c, "/other")
    ));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    login(&mut c, "alice", "alicesecret", &mut log);
    log.push(format!("whoAmI: {:?}", who_am_i(&mut c)));
    log.push(format!("super alice reads: {}", get_err(&mut c, "/other")));
    log
}

/// Runs `transcript` on the reference and on corral, both with the JAAS file and
/// the `extra` zoo.cfg lines: the reference's lines must include each of
/// `expected`, and corral's must equal them.
fn matches_the_reference(extra: &str, transcript: fn(&Server) -> Vec<String>, expected: &[&str]) {
    if !require_reference() {
        return;
    }
    let jaas = Jaas::new();
    let cfg = format!("{}{extra}", jaas.cfg());
    let reference = transcript(&Server::reference(&cfg));
    let corral = transcript(&Server::corral(&cfg));
    for line in expected {
        assert!(
            reference.iter().any(|l| l == line),
            "{line:?} not in {reference:#?}"
        );
    }
    assert_eq!(corral, reference);
}

#[test]
fn allow_failed_clients_and_super_users_match_the_reference() {
    matches_the_reference(
        "zookeeper.allowSaslFailedClients=true\nzookeeper.superUser=alice\n",
        allow_and_super_transcript,
        &[
            "bob: xid 12 zxid 0 err 0 token None",
            "super alice reads: 0",
        ],
    );
}

/// What one request shows under enforced authentication: its error code, then
/// whether the connection stays open (a ping answered) or is closed.
fn enforced_step(c: &mut RawClient, what: &str, req: &Request) -> String {
    let err = match c.call(req) {
        Ok(r) => r.err.to_string(),
        Err(e) => return format!("{what}: {e:?}"),
    };
    let after = match c.call(&Request::Ping) {
        Ok(r) => format!("ping {}", r.err),
        Err(ReadEnd::Closed) => "closed".to_string(),
        Err(e) => format!("{e:?}"),
    };
    format!("{what}: {err}, then {after}")
}

/// enforce.auth.enabled=true with enforce.auth.schemes=digest: a request before a
/// digest login is answered SessionClosedRequireSaslAuth (-124) and the
/// connection closed (a ping and a getData alike); after `addauth digest` the
/// session works; an auth request itself is always taken.
fn enforce_digest_transcript(server: &Server) -> Vec<String> {
    let mut log = Vec::new();
    let mut c = RawClient::connect(&server.addr(), 30_000);
    log.push(enforced_step(
        &mut c,
        "getData before auth",
        &Request::get_data_of("/"),
    ));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    log.push(enforced_step(&mut c, "ping before auth", &Request::Ping));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    let auth = Request::Auth {
        auth_type: 0,
        scheme: "digest".into(),
        auth: b"carol:carolpw".to_vec(),
    };
    log.push(enforced_step(&mut c, "addauth digest", &auth));
    log.push(format!(
        "create after auth: {}",
        create_open(&mut c, "/enforced", Acl::open())
    ));
    log.push(format!(
        "getData after auth: {}",
        get_err(&mut c, "/enforced")
    ));
    log
}

#[test]
fn enforced_digest_auth_closes_unauthenticated_sessions_as_the_reference() {
    if !require_reference() {
        return;
    }
    let cfg = "enforce.auth.enabled=true\nenforce.auth.schemes=digest\n";
    let reference = enforce_digest_transcript(&Server::reference(cfg));
    let server = Server::corral(cfg);
    let corral = enforce_digest_transcript(&server);
    assert_eq!(
        reference[0], "getData before auth: -124, then closed",
        "{reference:#?}"
    );
    assert_eq!(corral, reference);
    assert!(
        server
            .log()
            .contains("none of the schemes enforce.auth requires"),
        "{}",
        server.log_tail()
    );
}

/// sessionRequireClientSASLAuth=true: only a SASL login opens the session; a
/// failed one is answered -124 (not AuthFailed) and closed even with
/// allowSaslFailedClients; a digest login does not count.
fn require_sasl_transcript(server: &Server) -> Vec<String> {
    let mut log = Vec::new();
    let mut c = RawClient::connect(&server.addr(), 30_000);
    log.push(enforced_step(
        &mut c,
        "getData before login",
        &Request::get_data_of("/"),
    ));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    let auth = Request::Auth {
        auth_type: 0,
        scheme: "digest".into(),
        auth: b"carol:carolpw".to_vec(),
    };
    log.push(enforced_step(&mut c, "addauth digest", &auth));
    log.push(enforced_step(
        &mut c,
        "getData after digest",
        &Request::get_data_of("/"),
    ));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    login(&mut c, "bob", "wrong", &mut log);
    log.push(format!("then: {}", ends_closed(&mut c)));
    let mut c = RawClient::connect(&server.addr(), 30_000);
    assert!(login(&mut c, "bob", "bobsecret", &mut log), "{log:#?}");
    log.push(format!(
        "create after login: {}",
        create_open(&mut c, "/sasl", Acl::open())
    ));
    log.push(format!("getData after login: {}", get_err(&mut c, "/sasl")));
    log
}

#[test]
fn required_sasl_auth_closes_other_sessions_as_the_reference() {
    matches_the_reference(
        "sessionRequireClientSASLAuth=true\nallowSaslFailedClients=true\n",
        require_sasl_transcript,
        &["bob: xid 12 zxid 0 err -124 token None"],
    );
}

#[test]
fn without_a_jaas_file_sasl_is_answered_with_no_token() {
    if !require_reference() {
        return;
    }
    let run = |kind: Kind| {
        let server = Server::start(kind, SASL_PROVIDER);
        let mut c = RawClient::connect(&server.addr(), 30_000);
        let first = sasl_step(&mut c, 5, b"");
        let second = sasl_step(&mut c, 6, b"username=\"bob\"");
        (first, second, who_am_i(&mut c))
    };
    let reference = run(Kind::Reference);
    assert_eq!(reference.0, Ok((5, 0, 0, None)));
    assert_eq!(run(Kind::Corral), reference);
}

// ---- start-up ----

#[test]
fn a_bad_jaas_file_stops_corral_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let jaas = dir.path().join("bad.jaas");
    std::fs::write(
        &jaas,
        "Server {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    \
         user_bob=\"x\"\n};\n",
    )
    .unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPort={}\njava.security.auth.login.config={}\n",
            dir.path().join("data").display(),
            free_port(),
            jaas.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["server", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("corral did not stop on a bad JAAS file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("corral: "))
        .collect();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        lines,
        vec![format!(
            "corral: JAAS file {} (java.security.auth.login.config) line 4: \
             expected an option `key=value` or `;`, found `}}`",
            jaas.display()
        )]
    );
}
