//! Quorum SASL (quorum.auth.enableSasl, learnerRequireSasl, serverRequireSasl, the
//! JAAS QuorumServer / QuorumLearner sections) on real ensembles: corral members,
//! reference members and the two mixed ensembles log in to each other with
//! DIGEST-MD5 on every election and quorum link (a corral member among reference
//! peers that require SASL only forms a quorum if its logins are the reference's);
//! a member with a wrong password, or one that does not log in, is kept out; the
//! reference's rolling switch of a running ensemble to SASL works across kinds.
//!
//! Each test starts its own ensemble on 127.0.0.1 (one at a time per binary: the
//! harness takes the reference lock); every wait is a bounded poll. corral reads the
//! JAAS file from its zoo.cfg (`java.security.auth.login.config`), the reference from
//! the JVM property of that name.

mod common;

use common::ensemble::{Ensemble, CORRAL_LEADS, THREE_CORRALS, ZOOKEEPER_LEADS};
use common::peer_security::{
    assert_kept_out, configure, follower_rejoins, log_count, set_lines, wait_log, wait_log_count,
    write_through,
};
use common::Kind;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Every member requires SASL of its peers and logs in to them.
const REQUIRED: &str = "quorum.auth.enableSasl=true\n\
                        quorum.auth.learnerRequireSasl=true\n\
                        quorum.auth.serverRequireSasl=true\n";

/// A JAAS file in a temporary directory: the users members accept, and the login
/// this member uses.
struct Jaas {
    dir: tempfile::TempDir,
}

impl Jaas {
    fn new() -> Jaas {
        let dir = tempfile::Builder::new()
            .prefix("corral-jaas-")
            .tempdir()
            .unwrap();
        let jaas = Jaas { dir };
        jaas.write("good.conf", "test");
        jaas.write("wrong.conf", "not-the-password");
        jaas
    }

    fn write(&self, name: &str, password: &str) {
        let text = format!(
            "QuorumServer {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    \
             user_test=\"test\";\n}};\n\
             QuorumLearner {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    \
             username=\"test\"\n    password=\"{password}\";\n}};\n"
        );
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn good(&self) -> PathBuf {
        self.dir.path().join("good.conf")
    }

    fn wrong(&self) -> PathBuf {
        self.dir.path().join("wrong.conf")
    }
}

/// A member's quorum SASL lines: `settings`, and for corral the JAAS file (the
/// reference gets it as a JVM property, `reference_jaas`).
fn sasl_lines(kind: Kind, jaas: &Path, settings: &str) -> String {
    match kind {
        Kind::Corral => format!(
            "java.security.auth.login.config={}\n{settings}",
            jaas.display()
        ),
        Kind::Reference => settings.to_string(),
    }
}

/// Reference members launched from now on read `jaas`.
fn reference_jaas(ens: &mut Ensemble, jaas: &Path) {
    ens.set_reference_sysprops(&[&format!(
        "-Djava.security.auth.login.config={}",
        jaas.display()
    )]);
}

/// Each member's own word that logins on its links succeeded, as the server
/// (links it accepted) and as the learner (reference only: corral logs a failed
/// login, not a good one, on the links it dials).
fn assert_logins_logged(ens: &Ensemble) {
    for sid in ens.sids() {
        let (served, learned) = match ens.kind(sid) {
            Kind::Corral => ("quorum SASL: a member logged in as `test`", None),
            Kind::Reference => (
                "Successfully completed the authentication using SASL. learner addr",
                Some("Successfully completed the authentication using SASL. server addr"),
            ),
        };
        wait_log(ens, sid, served);
        if let Some(learned) = learned {
            wait_log(ens, sid, learned);
        }
    }
}

/// With SASL required on every member the ensemble elects, replicates and syncs a
/// restarted member (its quorum link logs in too); on corral members a link that
/// does not log in, and one whose token is over the bound, are dropped with a line
/// and the ensemble goes on.
fn replicates_with_sasl(kinds: [Kind; 3]) {
    let jaas = Jaas::new();
    let lines = |sid: u64| sasl_lines(kinds[sid as usize - 1], &jaas.good(), REQUIRED);
    let Some(mut ens) = configure(kinds, lines) else {
        return;
    };
    reference_jaas(&mut ens, &jaas.good());
    ens.launch_all();
    write_through(&ens, &[1, 2, 3], "sasl");
    follower_rejoins(&mut ens, "sasl");
    assert_logins_logged(&ens);
    for sid in ens.sids() {
        if ens.kind(sid) == Kind::Corral {
            refuses_bad_logins(&ens, sid);
        }
    }
    write_through(&ens, &[1, 2, 3], "still");
}
on_every_ensemble!(replicates_with_sasl);

/// Links to corral member `sid` that do not log in, or send a token over
/// QUORUM_AUTH_TOKEN_BYTES_MAX, are dropped, each with its line.
fn refuses_bad_logins(ens: &Ensemble, sid: u64) {
    const NO_LOGIN: &str = "did not log in (quorum.auth.serverRequireSasl=true)";
    let ports = ens.ports(sid);
    let before = log_count(ens, sid, NO_LOGIN);
    // A quorum link that starts with FOLLOWERINFO's first bytes.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", ports.quorum)).unwrap();
    s.write_all(&[0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    wait_log_count(ens, sid, NO_LOGIN, before + 1);
    // An election link: a good init message (of another member), then no login.
    let other = if sid == 1 { 2 } else { 1 };
    let mut e = std::net::TcpStream::connect(("127.0.0.1", ports.election)).unwrap();
    let mut init = Vec::new();
    init.extend_from_slice(&(-65536i64).to_be_bytes());
    init.extend_from_slice(&(other as i64).to_be_bytes());
    let host = b"127.0.0.1:1";
    init.extend_from_slice(&(host.len() as i32).to_be_bytes());
    init.extend_from_slice(host);
    init.extend_from_slice(&[0u8; 8]);
    e.write_all(&init).unwrap();
    wait_log_count(ens, sid, NO_LOGIN, before + 2);
    // A login whose token is 1 MiB long.
    let mut t = std::net::TcpStream::connect(("127.0.0.1", ports.quorum)).unwrap();
    let mut packet = Vec::new();
    packet.extend_from_slice(&0x5f24_3501_3501_edcc_i64.to_be_bytes());
    packet.extend_from_slice(&0i32.to_be_bytes());
    packet.extend_from_slice(&(1i32 << 20).to_be_bytes());
    t.write_all(&packet).unwrap();
    wait_log(
        ens,
        sid,
        "quorum SASL token of 1048576 bytes (at most 4096)",
    );
}

/// A member whose login the others refuse (a wrong password) does not serve; the
/// others go on. Corral with a wrong password among corral and among reference
/// members, and a reference member with a wrong password among corral ones.
#[test]
fn a_member_with_a_wrong_password_is_kept_out() {
    use Kind::{Corral, Reference};
    for kinds in [
        THREE_CORRALS,
        [Corral, Reference, Reference],
        [Reference, Corral, Corral],
    ] {
        let jaas = Jaas::new();
        let file = |sid: u64| if sid == 1 { jaas.wrong() } else { jaas.good() };
        let lines = |sid: u64| sasl_lines(kinds[sid as usize - 1], &file(sid), REQUIRED);
        let Some(mut ens) = configure(kinds, lines) else {
            return;
        };
        // The reference members launched first read the good file; member 1, if
        // it is one, the wrong one.
        reference_jaas(&mut ens, &jaas.good());
        ens.launch_member(3);
        ens.launch_member(2);
        ens.wait_serving(3);
        ens.wait_serving(2);
        write_through(&ens, &[2, 3], "pair");
        reference_jaas(&mut ens, &file(1));
        ens.launch_member(1);
        assert_kept_out(&ens, 1);
        for sid in [2, 3] {
            if ens.kind(sid) == Corral {
                wait_log(
                    &ens,
                    sid,
                    "login refused: DIGEST-MD5 response digest does not match",
                );
            }
        }
        if kinds[0] == Corral {
            wait_log(&ens, 1, "refused by the other member");
        }
        write_through(&ens, &[2, 3], "still");
    }
}

/// A member without quorum SASL cannot join members that require it. It has the
/// highest sid, so the links it dials are the ones that would stay: only the others
/// refusing them keeps it out (corral members, and corral members around a
/// reference one).
#[test]
fn a_member_without_sasl_is_kept_out() {
    for kinds in [THREE_CORRALS, ZOOKEEPER_LEADS] {
        let jaas = Jaas::new();
        let lines = |sid: u64| match sid {
            3 => String::new(),
            _ => sasl_lines(kinds[sid as usize - 1], &jaas.good(), REQUIRED),
        };
        let Some(mut ens) = configure(kinds, lines) else {
            return;
        };
        reference_jaas(&mut ens, &jaas.good());
        for sid in [1, 2, 3] {
            ens.launch_member(sid);
        }
        ens.wait_serving(1);
        ens.wait_serving(2);
        write_through(&ens, &[1, 2], "pair");
        assert_kept_out(&ens, 3);
        wait_log(
            &ens,
            2,
            "did not log in (quorum.auth.serverRequireSasl=true)",
        );
    }
}

/// serverRequireSasl=false: a learner whose login fails keeps its link, as the
/// reference keeps it, so the higher-sid rule still dials it back. Member 1 logs in
/// with a wrong password; members 2 and 3 (which know its server users) dial it
/// back with their own logins, so it hears who leads, yet cannot follow (its quorum
/// login fails too).
#[test]
fn a_failed_login_still_gets_the_dial_back_when_not_required() {
    let settings = "quorum.auth.enableSasl=true\nquorum.auth.learnerRequireSasl=true\n";
    let jaas = Jaas::new();
    let file = |sid: u64| if sid == 1 { jaas.wrong() } else { jaas.good() };
    let lines = |sid: u64| sasl_lines(Kind::Corral, &file(sid), settings);
    let Some(mut ens) = configure(THREE_CORRALS, lines) else {
        return;
    };
    ens.launch_member(3);
    ens.launch_member(2);
    ens.wait_serving(3);
    ens.wait_serving(2);
    let leader = ens.wait_leader();
    ens.launch_member(1);
    wait_log(&ens, 1, &format!("leader={leader}"));
    wait_log(
        &ens,
        leader,
        "keeping the link (quorum.auth.serverRequireSasl=false)",
    );
    wait_log(&ens, 1, "refused by the other member");
    assert_kept_out(&ens, 1);
    write_through(&ens, &[2, 3], "still");
}

/// The reference's rolling switch of a running ensemble to SASL, one restart at a
/// time, the ensemble serving throughout: (1) enableSasl=true everywhere (members
/// serve logins, none is made), (2) learnerRequireSasl=true (every link logs in,
/// links that do not are still taken), (3) serverRequireSasl=true. Corral
/// members around a reference one (their links to each other switch too), and the
/// reverse.
#[test]
fn a_running_ensemble_switches_to_sasl_one_member_at_a_time() {
    for kinds in [
        [Kind::Corral, Kind::Reference, Kind::Corral],
        [Kind::Reference, Kind::Corral, Kind::Reference],
    ] {
        let jaas = Jaas::new();
        let Some(mut ens) = configure(kinds, |_| String::new()) else {
            return;
        };
        reference_jaas(&mut ens, &jaas.good());
        ens.launch_all();
        write_through(&ens, &[1, 2, 3], "plain");
        let steps = [
            ("enabled", "quorum.auth.enableSasl=true\n"),
            (
                "learners",
                "quorum.auth.enableSasl=true\nquorum.auth.learnerRequireSasl=true\n",
            ),
            ("required", REQUIRED),
        ];
        for (tag, settings) in steps {
            for sid in [1, 2, 3] {
                let lines = sasl_lines(ens.kind(sid), &jaas.good(), settings);
                set_lines(&ens, sid, &lines);
                ens.stop(sid);
                ens.restart(sid);
                ens.wait_serving(sid);
                ens.wait_leader();
                write_through(&ens, &[1, 2, 3], &format!("{tag}-{sid}"));
            }
        }
        assert_logins_logged(&ens);
    }
}

/// Quorum SASL inside quorum TLS (the login follows the handshake), both mixed
/// ensembles.
#[test]
fn mixed_ensembles_log_in_over_tls() {
    for kinds in [ZOOKEEPER_LEADS, CORRAL_LEADS] {
        let jaas = Jaas::new();
        let pki = common::pki::Pki::new();
        let tls = format!(
            "sslQuorum=true\n\
             ssl.quorum.keyStore.location={}\nssl.quorum.keyStore.type=PEM\n\
             ssl.quorum.trustStore.location={}\nssl.quorum.trustStore.type=PEM\n",
            pki.path("server.pem").display(),
            pki.path("ca.pem").display()
        );
        let lines = |sid: u64| {
            let sasl = sasl_lines(kinds[sid as usize - 1], &jaas.good(), REQUIRED);
            format!("{tls}{sasl}")
        };
        let Some(mut ens) = configure(kinds, lines) else {
            return;
        };
        reference_jaas(&mut ens, &jaas.good());
        ens.launch_all();
        write_through(&ens, &[1, 2, 3], "sasl-tls");
        follower_rejoins(&mut ens, "sasl-tls");
        assert_logins_logged(&ens);
        let reference = (ens.sids().into_iter())
            .find(|s| ens.kind(*s) == Kind::Reference)
            .unwrap();
        wait_log(&ens, reference, "SSL handshake complete with");
    }
}

/// PEER_LOGINS_MAX: links that start a login and stall hold at most 16 places on a
/// member's peer ports; more are dropped with a line naming the bound, and the
/// ensemble goes on serving through its established links.
#[test]
fn stalled_logins_are_bounded_and_the_ensemble_goes_on() {
    let jaas = Jaas::new();
    let lines = |_| sasl_lines(Kind::Corral, &jaas.good(), REQUIRED);
    let Some(mut ens) = configure(THREE_CORRALS, lines) else {
        return;
    };
    ens.launch_all();
    write_through(&ens, &[1, 2, 3], "before");
    let leader = ens.wait_leader();
    let ports = ens.ports(leader);
    // A learner's first packet (an empty token): the leader answers with its
    // challenge and waits for a response that never comes.
    let mut first = Vec::new();
    first.extend_from_slice(&0x5f24_3501_3501_edcc_i64.to_be_bytes());
    first.extend_from_slice(&0i32.to_be_bytes());
    first.extend_from_slice(&0i32.to_be_bytes());
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", ports.quorum)).unwrap();
        s.write_all(&first).unwrap();
        held.push(s);
    }
    wait_log(
        &ens,
        leader,
        "16 quorum SASL logins already in progress (PEER_LOGINS_MAX)",
    );
    write_through(&ens, &[1, 2, 3], "held");
    drop(held);
}
