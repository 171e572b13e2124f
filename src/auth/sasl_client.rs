//! The client side of SASL DIGEST-MD5 (RFC 2831), as the JVM's DigestMD5Client
//! answers: what a quorum SASL learner (a member dialling another) sends, with the
//! login of its JAAS `QuorumLearner` section. Pure: no IO, no clock; the cnonce's
//! randomness comes from the caller. One `DigestClient` lives in each peer link
//! this member dials while the link authenticates, on the sequencer core
//! (`server::peer::sasl`).
//!
//! ```text
//!  challenge (realm, nonce, charset, algorithm) ─► respond ─► digest-response
//!  rspauth=…                                    ─► verify_rspauth ─► done
//! ```
//!
//! As the JVM's client: the challenge must carry a nonce and `algorithm=md5-sess`,
//! offer qop `auth` (or no qop); the response names the challenge's realm, uses
//! qop `auth`, nonce count 1 and the user name as authzid; the server's rspauth must
//! match, or the login fails.

use super::sasl::{
    constant_time_eq, make_nonce, parse_directives, response_value, text, Checked, DigestService,
    SaslError, SASL_RESPONSE_BYTES_MAX,
};
use super::Secret;

/// The maxbuf the JVM's client states (its default receive buffer).
const CLIENT_MAXBUF: u32 = 65536;

/// One link's DIGEST-MD5 login, from the dialling member's side.
#[derive(Debug)]
pub struct DigestClient {
    service: &'static DigestService,
    user: String,
    password: Secret,
    step: ClientStep,
}

#[derive(Debug, PartialEq, Eq)]
enum ClientStep {
    Start,
    /// The response went out; the server must answer with this rspauth.
    Responded {
        rspauth: String,
    },
    Done,
}

/// A directive value in double quotes, `"` and `\` escaped.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

impl DigestClient {
    pub fn new(service: &'static DigestService, user: &str, password: Secret) -> DigestClient {
        DigestClient {
            service,
            user: user.to_string(),
            password,
            step: ClientStep::Start,
        }
    }

    /// The digest-response to the server's challenge. `random` fills the cnonce's
    /// random bytes.
    pub fn respond(
        &mut self,
        challenge: &[u8],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<u8>, SaslError> {
        if std::mem::replace(&mut self.step, ClientStep::Done) != ClientStep::Start {
            return Err(SaslError::Finished);
        }
        if challenge.len() > SASL_RESPONSE_BYTES_MAX {
            return Err(SaslError::TooLong {
                bytes: challenge.len(),
            });
        }
        let d = parse_directives(challenge)?;
        let nonce = text(&d.nonce.ok_or(SaslError::ChallengeMissing("nonce"))?);
        let algorithm = d
            .algorithm
            .ok_or(SaslError::ChallengeMissing("algorithm"))?;
        if algorithm.as_slice() != b"md5-sess" {
            return Err(challenge_bad("algorithm", &algorithm));
        }
        if let Some(qop) = &d.qop {
            let offered = text(qop);
            if !offered.split(',').any(|q| q.trim() == "auth") {
                return Err(challenge_bad("qop", qop));
            }
        }
        if let Some(cs) = &d.charset {
            if cs.as_slice() != b"utf-8" {
                return Err(challenge_bad("charset", cs));
            }
        }
        let realm = d.realm.as_deref().map(text).unwrap_or_default();
        let cnonce = make_nonce(random);
        let c = Checked {
            username: self.user.clone(),
            realm: realm.clone(),
            cnonce: cnonce.clone().into_bytes(),
            qop: "auth".into(),
            digest_uri: self.service.digest_uri.to_string(),
            response: Vec::new(),
            authzid: Some(self.user.clone().into_bytes()),
        };
        let pw = self.password.expose();
        let response = response_value("AUTHENTICATE", &c, &nonce, pw);
        let rspauth = response_value("", &c, &nonce, pw);
        self.step = ClientStep::Responded { rspauth };
        Ok(format!(
            "charset=utf-8,username={},realm={},nonce={},nc=00000001,cnonce={},\
             digest-uri={},maxbuf={CLIENT_MAXBUF},response={response},qop=auth,authzid={}",
            quoted(&self.user),
            quoted(&realm),
            quoted(&nonce),
            quoted(&cnonce),
            quoted(self.service.digest_uri),
            quoted(&self.user),
        )
        .into_bytes())
    }

    /// The server's last token, `rspauth=<hex>`: it proves the server knows the
    /// password too.
    pub fn verify_rspauth(&mut self, token: &[u8]) -> Result<(), SaslError> {
        let ClientStep::Responded { rspauth } = std::mem::replace(&mut self.step, ClientStep::Done)
        else {
            return Err(SaslError::Finished);
        };
        let d = parse_directives(token)?;
        let got = d.rspauth.ok_or(SaslError::ChallengeMissing("rspauth"))?;
        if !constant_time_eq(&got, rspauth.as_bytes()) {
            return Err(SaslError::BadRspauth);
        }
        Ok(())
    }
}

fn challenge_bad(directive: &'static str, v: &[u8]) -> SaslError {
    SaslError::ChallengeBadValue {
        directive,
        value: text(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sasl::{DigestServer, Outcome, QUORUM};

    fn fixed(fill: u8) -> impl FnMut(&mut [u8]) {
        move |b: &mut [u8]| b.fill(fill)
    }

    /// A value of `key` in a directive list (for the checks below only).
    fn field(token: &[u8], key: &str) -> String {
        let s = String::from_utf8(token.to_vec()).unwrap();
        let at = s.find(&format!("{key}=")).unwrap() + key.len() + 1;
        let rest = &s[at..];
        match rest.strip_prefix('"') {
            Some(q) => q[..q.find('"').unwrap()].to_string(),
            None => rest.split(',').next().unwrap().to_string(),
        }
    }

    #[test]
    fn the_jvm_learners_digest_for_a_known_nonce_and_cnonce() {
        // Java 17's DigestMD5Client as the reference's QuorumLearner runs it (user,
        // password and authzid "test"), the nonce and cnonce fixed: these digests
        // were printed by the JVM's own classes.
        let nonce = "nDek+drDfRdzHbGvdIBwjopPyJ/HxcSXXJ+Uc7XA";
        let cnonce = "L0YmPzl58bVCbcYxQ2UOU+SbRkgA+jRNb8P+If6Q";
        let c = Checked {
            username: "test".into(),
            realm: QUORUM.realm.into(),
            cnonce: cnonce.into(),
            qop: "auth".into(),
            digest_uri: QUORUM.digest_uri.into(),
            response: Vec::new(),
            authzid: Some(b"test".to_vec()),
        };
        assert_eq!(
            response_value("AUTHENTICATE", &c, nonce, "test"),
            "992cc07e3e06523b77f87f60a4c5e648"
        );
        assert_eq!(
            response_value("", &c, nonce, "test"),
            "d7cb74a45185931e5f1e82dcb0271867"
        );
    }

    #[test]
    fn a_learner_logs_in_to_the_quorum_server_and_checks_its_proof() {
        let users = |u: &str| (u == "learner").then(|| "s3cret".to_string());
        let mut server = DigestServer::for_service(&QUORUM);
        let Outcome::Challenge(ch) = server.evaluate(b"", &mut fixed(1), &users).unwrap() else {
            panic!("no challenge")
        };
        assert_eq!(field(&ch, "realm"), "zk-quorum-sasl-md5");
        let mut client = DigestClient::new(&QUORUM, "learner", Secret::new("s3cret"));
        let resp = client.respond(&ch, &mut fixed(2)).unwrap();
        assert_eq!(
            field(&resp, "digest-uri"),
            "zookeeper-quorum/zk-quorum-sasl-md5"
        );
        assert_eq!(field(&resp, "authzid"), "learner");
        assert_eq!(field(&resp, "cnonce").len(), 40);
        let out = server.evaluate(&resp, &mut fixed(0), &users).unwrap();
        let Outcome::Authenticated { rspauth, user } = out else {
            panic!("{out:?}")
        };
        assert_eq!(user, "learner");
        assert_eq!(client.verify_rspauth(&rspauth), Ok(()));
        assert_eq!(client.verify_rspauth(&rspauth), Err(SaslError::Finished));
    }

    #[test]
    fn a_wrong_password_fails_on_the_server_and_a_forged_proof_on_the_learner() {
        let users = |u: &str| (u == "learner").then(|| "right".to_string());
        let mut server = DigestServer::for_service(&QUORUM);
        let Ok(Outcome::Challenge(ch)) = server.evaluate(b"", &mut fixed(1), &users) else {
            panic!()
        };
        let mut client = DigestClient::new(&QUORUM, "learner", Secret::new("wrong"));
        let resp = client.respond(&ch, &mut fixed(2)).unwrap();
        assert_eq!(
            server.evaluate(&resp, &mut fixed(0), &users),
            Err(SaslError::Mismatch)
        );
        assert_eq!(
            client.verify_rspauth(b"rspauth=00000000000000000000000000000000"),
            Err(SaslError::BadRspauth)
        );
    }

    #[test]
    fn the_quorum_server_refuses_another_authzid() {
        let users = |u: &str| (u == "a").then(|| "pw".to_string());
        let mut server = DigestServer::for_service(&QUORUM);
        let Ok(Outcome::Challenge(ch)) = server.evaluate(b"", &mut fixed(1), &users) else {
            panic!()
        };
        // A client that names itself "a" but asks to act as "b": the digest is
        // right (the authzid enters it), the authorization is not.
        let nonce = field(&ch, "nonce");
        let c = Checked {
            username: "a".into(),
            realm: QUORUM.realm.into(),
            cnonce: b"cn".to_vec(),
            qop: "auth".into(),
            digest_uri: QUORUM.digest_uri.into(),
            response: Vec::new(),
            authzid: Some(b"b".to_vec()),
        };
        let r = response_value("AUTHENTICATE", &c, &nonce, "pw");
        let resp = format!(
            "username=\"a\",realm=\"zk-quorum-sasl-md5\",nonce=\"{nonce}\",cnonce=\"cn\",\
             digest-uri=\"zookeeper-quorum/zk-quorum-sasl-md5\",response={r},qop=auth,\
             authzid=\"b\""
        );
        assert_eq!(
            server.evaluate(resp.as_bytes(), &mut fixed(0), &users),
            Err(SaslError::Unauthorized {
                user: "a".into(),
                authzid: "b".into()
            })
        );
        // The client port's service takes the same authzid (it only enters the
        // digest there): the rule is quorum SASL's.
    }

    #[test]
    fn bad_challenges_are_refused() {
        let cases: [(&[u8], SaslError); 5] = [
            (
                b"realm=\"r\",algorithm=md5-sess",
                SaslError::ChallengeMissing("nonce"),
            ),
            (b"nonce=\"n\"", SaslError::ChallengeMissing("algorithm")),
            (
                b"nonce=\"n\",algorithm=md5",
                challenge_bad("algorithm", b"md5"),
            ),
            (
                b"nonce=\"n\",algorithm=md5-sess,qop=\"auth-conf\"",
                challenge_bad("qop", b"auth-conf"),
            ),
            (
                b"nonce=\"n",
                SaslError::Syntax("a quote is not closed".into()),
            ),
        ];
        for (challenge, want) in cases {
            let mut c = DigestClient::new(&QUORUM, "u", Secret::new("p"));
            assert_eq!(c.respond(challenge, &mut fixed(0)), Err(want));
            assert_eq!(
                c.respond(challenge, &mut fixed(0)),
                Err(SaslError::Finished)
            );
        }
        // An offered qop list with auth in it is fine; names are quoted.
        let mut c = DigestClient::new(&QUORUM, "a\"b", Secret::new("p"));
        let r = c
            .respond(
                b"nonce=\"n\",algorithm=md5-sess,qop=\"auth,auth-int\"",
                &mut fixed(0),
            )
            .unwrap();
        assert!(String::from_utf8(r)
            .unwrap()
            .contains("username=\"a\\\"b\""));
    }
}
