//! Quorum SASL's login (`proto::quorum_auth`, `auth::sasl` with the QUORUM service,
//! `auth::sasl_client`), in three modes picked by the control byte:
//! - server: the bytes are what a learner sends after its init message; they are read
//!   as `server::peer::sasl` reads them (packets in a row, each token evaluated by a
//!   quorum DigestServer until it fails or authenticates);
//! - learner: the bytes, split in two, are the server's challenge and its rspauth
//!   packet, read as a quorum DigestClient reads them;
//! - round trip: the bytes choose a user, a password and the random bytes of the
//!   nonce and cnonce; a DigestClient logging in to a DigestServer that has the user
//!   must authenticate exactly that user and accept its rspauth, and one with another
//!   password must fail with Mismatch.
//!
//! All: no panic; a packet whose token is over QUORUM_AUTH_TOKEN_BYTES_MAX is refused;
//! every packet is undecided on each shorter prefix and re-encodes to its bytes (for
//! the three statuses the reference knows); allocation bounded by the input.

#![no_main]

use corral::auth::sasl::QUORUM;
use corral::auth::{DigestClient, DigestServer, Outcome, SaslError, Secret};
use corral::proto::quorum_auth::{AuthStatus, QuorumAuthPacket};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, rest) = corral_fuzz::split_control(data);
    match control % 3 {
        0 => server(rest),
        1 => learner(rest),
        _ => {
            let _ = round_trip(&mut Unstructured::new(rest));
        }
    }
});

/// The packets at the front of `stream`, each checked; stops at the first that is
/// incomplete or refused.
fn packets(mut stream: &[u8]) -> Vec<QuorumAuthPacket> {
    let mut out = Vec::new();
    while let Ok(Some((p, used))) = QuorumAuthPacket::decode(stream) {
        for k in 0..used {
            assert_eq!(QuorumAuthPacket::decode(&stream[..k]).ok(), Some(None), "prefix {k}");
        }
        let code = i32::from_be_bytes(stream[8..12].try_into().unwrap());
        if [0, 1, -1].contains(&code) {
            let mut again = Vec::new();
            p.encode(&mut again);
            assert_eq!(again, &stream[..used]);
        }
        stream = &stream[used..];
        out.push(p);
    }
    out
}

fn server(stream: &[u8]) {
    let mut s = DigestServer::for_service(&QUORUM);
    let password = |u: &str| (u == "test").then(|| "test".to_string());
    for p in packets(stream) {
        match s.evaluate(&p.token.unwrap_or_default(), &mut |b| b.fill(0x3c), &password) {
            Ok(Outcome::Challenge(_)) => {}
            Ok(Outcome::Authenticated { user, .. }) => {
                assert_eq!(user, "test");
                break;
            }
            Err(_) => {
                assert!(s.is_done());
                break;
            }
        }
    }
}

fn learner(bytes: &[u8]) {
    let at = bytes.len() / 2;
    let mut c = DigestClient::new(&QUORUM, "test", Secret::new("test"));
    let (challenge, proof) = bytes.split_at(at);
    if c.respond(challenge, &mut |b| b.fill(0x5a)).is_ok() {
        let _ = c.verify_rspauth(proof);
    }
    assert_eq!(c.verify_rspauth(proof), Err(SaslError::Finished));
}

fn round_trip(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let user: String = u.arbitrary()?;
    let password: String = u.arbitrary()?;
    let nonce_fill: u8 = u.arbitrary()?;
    let cnonce_fill: u8 = u.arbitrary()?;
    if user.is_empty() {
        return Ok(());
    }
    let wrong = u.arbitrary::<bool>()?;
    let theirs = if wrong { format!("{password}!") } else { password.clone() };
    let lookup = |name: &str| (name == user).then(|| theirs.clone());
    let mut server = DigestServer::for_service(&QUORUM);
    let Ok(Outcome::Challenge(ch)) = server.evaluate(b"", &mut |b| b.fill(nonce_fill), &lookup)
    else {
        panic!("the first token is answered with a challenge");
    };
    let mut client = DigestClient::new(&QUORUM, &user, Secret::new(password.clone()));
    let resp = client
        .respond(&ch, &mut |b| b.fill(cnonce_fill))
        .expect("the server's own challenge is answered");
    let got = server.evaluate(&resp, &mut |b| b.fill(0), &lookup);
    if resp.len() > corral::auth::sasl::SASL_RESPONSE_BYTES_MAX {
        assert_eq!(got, Err(SaslError::TooLong { bytes: resp.len() }));
        return Ok(());
    }
    if wrong {
        assert_eq!(got, Err(SaslError::Mismatch), "user {user:?}");
        return Ok(());
    }
    let Ok(Outcome::Authenticated { rspauth, user: who }) = got else {
        panic!("user {user:?}: {got:?}");
    };
    assert_eq!(who, user);
    assert_eq!(client.verify_rspauth(&rspauth), Ok(()));
    // The status a server sends with it.
    let mut b = Vec::new();
    QuorumAuthPacket::new(AuthStatus::Success, Some(rspauth)).encode(&mut b);
    assert_eq!(packets(&b).len(), 1);
    Ok(())
}
