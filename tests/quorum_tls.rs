//! Quorum TLS (sslQuorum, portUnification, ssl.quorum.*) on real ensembles: the
//! election and quorum links of corral members, of reference members, and of the two
//! mixed ensembles (a corral member among reference peers only forms a quorum if it
//! speaks the reference's TLS, which refuses plaintext peers), the rolling switch of
//! a running ensemble from plaintext to TLS that the reference documents, and what
//! is refused: a plaintext member, a member whose certificate names another host.
//!
//! Keys come from `common::pki` (one CA; a member certificate for 127.0.0.1–3 that
//! every member shows). Each test starts its own ensemble on 127.0.0.1 (one at a
//! time per binary: the harness takes the reference lock); every wait is a bounded
//! poll.

mod common;

use common::ensemble::{Ensemble, CORRAL_LEADS, THREE_CORRALS, ZOOKEEPER_LEADS};
use common::peer_security::{
    assert_kept_out, configure, follower_rejoins, set_lines, wait_log, write_through,
};
use common::pki::Pki;
use common::Kind;
use std::path::Path;

/// The zoo.cfg lines of quorum TLS with `key_store` as this member's key and chain.
fn tls_lines(pki: &Pki, key_store: &Path, extra: &str) -> String {
    format!(
        "ssl.quorum.keyStore.location={}\n\
         ssl.quorum.keyStore.type=PEM\n\
         ssl.quorum.trustStore.location={}\n\
         ssl.quorum.trustStore.type=PEM\n\
         {extra}",
        key_store.display(),
        pki.path("ca.pem").display()
    )
}

/// With sslQuorum on every member the ensemble elects, replicates and syncs a
/// restarted member; a plaintext peer on the election port is refused (and said so
/// by corral members).
fn replicates_over_tls(kinds: [Kind; 3]) {
    let pki = Pki::new();
    let member = pki.path("server.pem");
    let Some(mut ens) = configure(kinds, |_| tls_lines(&pki, &member, "sslQuorum=true\n")) else {
        return;
    };
    ens.launch_all();
    write_through(&ens, &[1, 2, 3], "tls");
    // Every link came up, and the harness's port probes (connect, close) are no
    // warning: nothing was dropped yet.
    for sid in ens
        .sids()
        .into_iter()
        .filter(|s| ens.kind(*s) == Kind::Corral)
    {
        let log = ens.log(sid);
        assert!(!log.contains("dropping a link"), "{}", ens.log_tail(sid));
    }
    // A follower down and back: it syncs over TLS.
    follower_rejoins(&mut ens, "tls");
    // A plaintext election link (a valid init message) is refused.
    for sid in [1, 2, 3]
        .into_iter()
        .filter(|s| ens.kind(*s) == Kind::Corral)
    {
        let addr = format!("127.0.0.1:{}", ens.ports(sid).election);
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let mut init = Vec::new();
        init.extend_from_slice(&(-65536i64).to_be_bytes());
        init.extend_from_slice(&(1i64).to_be_bytes());
        let host = b"127.0.0.1:1";
        init.extend_from_slice(&(host.len() as i32).to_be_bytes());
        init.extend_from_slice(host);
        std::io::Write::write_all(&mut s, &init).unwrap();
        // rustls reads the init message's first byte as a record type.
        wait_log(
            &ens,
            sid,
            "quorum TLS: TLS handshake failed: received corrupt message",
        );
    }
    write_through(&ens, &[1, 2, 3], "still");
    assert_reference_speaks_tls(&ens);
}
on_every_ensemble!(replicates_over_tls);

/// The reference members' own word that their links are TLS: their ports take TLS
/// only, and (mixed) a handshake with a member completed.
fn assert_reference_speaks_tls(ens: &Ensemble) {
    let references: Vec<u64> = ens
        .sids()
        .into_iter()
        .filter(|s| ens.kind(*s) == Kind::Reference)
        .collect();
    for &sid in &references {
        let log = ens.log(sid);
        assert!(
            log.contains("Creating TLS-only quorum server socket"),
            "member {sid}: {}",
            ens.log_tail(sid)
        );
    }
    if !references.is_empty() {
        let handshakes = references
            .iter()
            .any(|s| ens.log(*s).contains("SSL handshake complete with"));
        assert!(
            handshakes,
            "a reference member dialled over TLS\n{}",
            ens.report()
        );
    }
}

/// A member without sslQuorum cannot join members that have it: they refuse its
/// plaintext links, and it cannot read theirs.
#[test]
fn a_plaintext_member_is_kept_out() {
    for kinds in [THREE_CORRALS, CORRAL_LEADS] {
        let pki = Pki::new();
        let member = pki.path("server.pem");
        let lines = |sid: u64| match sid {
            1 => String::new(),
            _ => tls_lines(&pki, &member, "sslQuorum=true\n"),
        };
        let Some(mut ens) = configure(kinds, lines) else {
            return;
        };
        for sid in [3, 2, 1] {
            ens.launch_member(sid);
        }
        ens.wait_serving(3);
        ens.wait_serving(2);
        write_through(&ens, &[2, 3], "pair");
        assert_kept_out(&ens, 1);
        wait_log(&ens, 3, "quorum TLS");
    }
}

/// ssl.quorum.hostnameVerification (default true): a member whose certificate
/// names another address is refused on both ends of its links; with the check off
/// on every member it joins.
#[test]
fn a_certificate_for_another_host_is_refused_unless_the_check_is_off() {
    for kinds in [THREE_CORRALS, ZOOKEEPER_LEADS] {
        let pki = Pki::new();
        let member = pki.path("server.pem");
        let stranger = pki.server("stranger", &["127.0.0.9", "stranger.example"]);
        let key = |sid: u64| {
            if sid == 1 {
                stranger.clone()
            } else {
                member.clone()
            }
        };
        let Some(mut ens) = configure(kinds, |sid| tls_lines(&pki, &key(sid), "sslQuorum=true\n"))
        else {
            return;
        };
        for sid in [3, 2, 1] {
            ens.launch_member(sid);
        }
        ens.wait_serving(3);
        ens.wait_serving(2);
        assert_kept_out(&ens, 1);
        let corral_peer = [2, 3]
            .into_iter()
            .find(|s| ens.kind(*s) == Kind::Corral)
            .unwrap();
        wait_log(&ens, corral_peer, "its certificate does not name 127.0.0.1");
        // The check off everywhere: member 1 joins.
        for sid in [1, 2, 3] {
            let off = "sslQuorum=true\nssl.quorum.hostnameVerification=false\n";
            set_lines(&ens, sid, &tls_lines(&pki, &key(sid), off));
        }
        for sid in [1, 2, 3] {
            ens.stop(sid);
        }
        for sid in [3, 2, 1] {
            ens.restart(sid);
        }
        for sid in [1, 2, 3] {
            ens.wait_serving(sid);
        }
        write_through(&ens, &[1, 2, 3], "unchecked");
    }
}

/// The reference's rolling switch of a running ensemble to TLS, one restart at a
/// time, the ensemble serving throughout: (1) portUnification=true everywhere
/// (links stay plaintext), (2) sslQuorum=true everywhere (links go TLS, plaintext
/// still taken), (3) portUnification off (TLS only). Mixed: a corral member among
/// reference ones and the reverse.
#[test]
fn a_running_ensemble_switches_to_tls_one_member_at_a_time() {
    for kinds in [
        [Kind::Corral, Kind::Reference, Kind::Corral],
        [Kind::Reference, Kind::Corral, Kind::Reference],
    ] {
        let pki = Pki::new();
        let member = pki.path("server.pem");
        let Some(mut ens) = configure(kinds, |_| String::new()) else {
            return;
        };
        ens.launch_all();
        write_through(&ens, &[1, 2, 3], "plain");
        let steps = [
            ("unified", "portUnification=true\n"),
            ("switched", "portUnification=true\nsslQuorum=true\n"),
            ("tls-only", "sslQuorum=true\n"),
        ];
        for (tag, extra) in steps {
            for sid in [1, 2, 3] {
                set_lines(&ens, sid, &tls_lines(&pki, &member, extra));
                ens.stop(sid);
                ens.restart(sid);
                ens.wait_serving(sid);
                ens.wait_leader();
                write_through(&ens, &[1, 2, 3], &format!("{tag}-{sid}"));
            }
        }
        assert_reference_speaks_tls(&ens);
    }
}

/// PEER_HANDSHAKES_MAX: links that begin a TLS handshake and stall hold at most 8
/// places on a member's peer ports; more are dropped with a line naming the bound,
/// links that send nothing hold none, the ensemble goes on serving through its
/// established links, and a follower restarted meanwhile joins again.
#[test]
fn stalled_handshakes_are_bounded_and_the_ensemble_goes_on() {
    use std::io::Write;
    let pki = Pki::new();
    let member = pki.path("server.pem");
    let Some(mut ens) = configure(THREE_CORRALS, |_| {
        tls_lines(&pki, &member, "sslQuorum=true\n")
    }) else {
        return;
    };
    ens.launch_all();
    write_through(&ens, &[1, 2, 3], "before");
    let leader = ens.wait_leader();
    let ports = ens.ports(leader);
    let mut held = Vec::new();
    for i in 0..12 {
        let port = if i % 2 == 0 {
            ports.election
        } else {
            ports.quorum
        };
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The first byte of a TLS handshake record, and nothing more.
        s.write_all(&[22]).unwrap();
        held.push(s);
    }
    for _ in 0..4 {
        held.push(std::net::TcpStream::connect(("127.0.0.1", ports.election)).unwrap());
    }
    wait_log(
        &ens,
        leader,
        "8 TLS handshakes already in progress (PEER_HANDSHAKES_MAX)",
    );
    write_through(&ens, &[1, 2, 3], "held");
    let follower = if leader == 1 { 2 } else { 1 };
    ens.restart(follower);
    ens.wait_serving(follower);
    ens.wait_leader();
    write_through(&ens, &[1, 2, 3], "rejoined");
    drop(held);
}

/// portUnification (the rolling switch's first two steps): a port that takes both
/// tells TLS from plaintext by a link's first bytes and waits 5 s for them (the
/// reference's ssl.quorum.handshakeDetectionTimeoutMillis default); a link silent
/// that long is plaintext, whatever it sends next. The same TLS-looking bytes: sent
/// at once they start a TLS handshake (which fails on them); sent after the link was
/// taken as plaintext they are read as an election init message (of no member).
#[test]
fn a_link_silent_past_the_detection_timeout_is_taken_as_plaintext() {
    use std::io::Write;
    let pki = Pki::new();
    let member = pki.path("server.pem");
    let Some(mut ens) = configure(THREE_CORRALS, |_| {
        tls_lines(&pki, &member, "sslQuorum=true\nportUnification=true\n")
    }) else {
        return;
    };
    ens.launch_all();
    write_through(&ens, &[1, 2, 3], "before");
    let port = ens.ports(1).election;
    // A TLS record (handshake, TLS 1.0, 4 bytes) holding an empty ClientHello, which
    // rustls refuses at once; as plaintext, its first 8 bytes are a positive long.
    let bytes: [u8; 9] = [22, 3, 1, 0, 4, 1, 0, 0, 0];
    let mut at_once = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    at_once.write_all(&bytes).unwrap();
    let at_once_addr = at_once.local_addr().unwrap();
    wait_log(
        &ens,
        1,
        &format!(
            "election port: dropping a link from {at_once_addr}: quorum TLS: TLS handshake failed"
        ),
    );
    let mut late = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let late_addr = late.local_addr().unwrap();
    wait_log(
        &ens,
        1,
        &format!("election port: {late_addr} sent nothing within 5s: taken as plaintext"),
    );
    late.write_all(&bytes).unwrap();
    let dropped = format!("election port: dropping a link from {late_addr}: ");
    wait_log(&ens, 1, &dropped);
    let log = ens.log(1);
    let line = log.lines().find(|l| l.contains(&dropped)).unwrap();
    assert!(!line.contains("TLS"), "read as plaintext: {line}");
    write_through(&ens, &[1, 2, 3], "after");
    drop((at_once, late));
}

/// TLS 1.3 only (ssl.quorum.enabledProtocols, with TLS 1.3 suites named, which the
/// reference needs): in TLS 1.3 a learner's first packet can arrive with the end of
/// the handshake, so the leader finds it already buffered. Both mixed ensembles.
#[test]
fn mixed_ensembles_speak_tls_1_3() {
    for kinds in [ZOOKEEPER_LEADS, CORRAL_LEADS] {
        let pki = Pki::new();
        let member = pki.path("server.pem");
        let tls13 = "sslQuorum=true\nssl.quorum.enabledProtocols=TLSv1.3\n\
                     ssl.quorum.ciphersuites=TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384\n";
        let Some(mut ens) = configure(kinds, |_| tls_lines(&pki, &member, tls13)) else {
            return;
        };
        ens.launch_all();
        write_through(&ens, &[1, 2, 3], "tls13");
        follower_rejoins(&mut ens, "tls13");
        assert_reference_speaks_tls(&ens);
        let handshakes = (ens.sids().into_iter())
            .filter(|s| ens.kind(*s) == Kind::Reference)
            .any(|s| ens.log(s).contains("TLSv1.3"));
        assert!(
            handshakes,
            "a reference member negotiated TLSv1.3\n{}",
            ens.report()
        );
    }
}
