//! Quorum SASL's login as the reference's SaslQuorumAuthLearner and
//! SaslQuorumAuthServer run it, in `QuorumAuthPacket`s and without IO: which packet
//! each side sends next, what ends the login, and what a server does with a link
//! that does not try to log in. One `LearnerLogin` or `ServerLogin` lives in each
//! peer link being set up, on the sequencer core; `server::peer::sasl` moves its
//! packets.
//!
//! ```text
//!  learner: start ─► (0, empty)
//!           (0, challenge)  ─► on_packet ─► Send (0, digest-response)
//!           (1, rspauth)    ─► on_packet ─► Done (rspauth checked)
//!           (-1, …) / other ─► Err
//!  server:  first 8 bytes ─► peek: Login | Pass (no login, not required) | Refuse
//!           each packet   ─► on_packet ─► Continue (0, challenge)
//!                                       | Authenticated (1, rspauth)
//!                                       | Failed (-1, empty)
//! ```

use super::sasl::{DigestServer, Outcome, QUORUM};
use super::{DigestClient, JaasUsers, SaslError, Secret};
use crate::proto::quorum_auth::{starts_with_magic, AuthStatus, QuorumAuthPacket};

/// The dialling member's login.
pub struct LearnerLogin {
    client: DigestClient,
}

/// What the learner does after a server packet.
#[derive(Debug, PartialEq, Eq)]
pub enum LearnerStep {
    Send(QuorumAuthPacket),
    /// Logged in, and the server proved the password too.
    Done,
}

impl LearnerLogin {
    /// The login of `user` and its first packet (the JVM's DIGEST-MD5 client has
    /// no initial response: an empty token).
    pub fn start(user: &str, password: Secret) -> (LearnerLogin, QuorumAuthPacket) {
        let login = LearnerLogin {
            client: DigestClient::new(&QUORUM, user, password),
        };
        let first = QuorumAuthPacket::new(AuthStatus::InProgress, Some(Vec::new()));
        (login, first)
    }

    /// The server's next packet; `random` fills the cnonce's bytes.
    pub fn on_packet(
        &mut self,
        p: QuorumAuthPacket,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<LearnerStep, String> {
        let token = p.token.unwrap_or_default();
        // The client's own step says what may come: a challenge first, then the
        // proof; anything else out of turn ends the exchange as Finished.
        let step = match p.status {
            AuthStatus::InProgress => (self.client.respond(&token, random))
                .map(|r| LearnerStep::Send(QuorumAuthPacket::new(AuthStatus::InProgress, Some(r)))),
            AuthStatus::Success => (self.client.verify_rspauth(&token)).map(|()| LearnerStep::Done),
            AuthStatus::Error => {
                return Err("refused by the other member (a user or password its \
                            QuorumServer section does not have?)"
                    .into())
            }
        };
        step.map_err(|e| match e {
            SaslError::Finished => {
                format!(
                    "unexpected status {} from the other member",
                    p.status.code()
                )
            }
            e => e.to_string(),
        })
    }
}

/// What a server does with an accepted link, from its first 8 bytes (`None`: the
/// link closed or stayed silent before 8 bytes came).
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// The learner starts a login.
    Login,
    /// No login and none required: the link goes on, those bytes its first.
    Pass,
    /// No login and serverRequireSasl=true.
    Refuse,
}

pub fn peek(first: Option<&[u8]>, require: bool) -> Peek {
    match (first.and_then(starts_with_magic), require) {
        (Some(true), _) => Peek::Login,
        (_, false) => Peek::Pass,
        (_, true) => Peek::Refuse,
    }
}

/// The accepting member's side of one login.
pub struct ServerLogin {
    server: DigestServer,
}

/// What the server sends after a learner packet, and whether the login is over.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerStep {
    Continue(QuorumAuthPacket),
    Authenticated {
        reply: QuorumAuthPacket,
        user: String,
    },
    /// The login failed: send `reply` (ERROR); the reason is for the log.
    Failed {
        reply: QuorumAuthPacket,
        why: String,
    },
}

impl Default for ServerLogin {
    fn default() -> ServerLogin {
        ServerLogin::new()
    }
}

impl ServerLogin {
    pub fn new() -> ServerLogin {
        ServerLogin {
            server: DigestServer::for_service(&QUORUM),
        }
    }

    /// The learner's next packet, checked against the QuorumServer users.
    pub fn on_packet(
        &mut self,
        p: QuorumAuthPacket,
        random: &mut dyn FnMut(&mut [u8]),
        users: &JaasUsers,
    ) -> ServerStep {
        let password = |u: &str| users.password(u).map(str::to_string);
        let token = p.token.unwrap_or_default();
        match self.server.evaluate(&token, random, &password) {
            Ok(Outcome::Challenge(c)) => {
                ServerStep::Continue(QuorumAuthPacket::new(AuthStatus::InProgress, Some(c)))
            }
            Ok(Outcome::Authenticated { rspauth, user }) => ServerStep::Authenticated {
                reply: QuorumAuthPacket::new(AuthStatus::Success, Some(rspauth)),
                user,
            },
            Err(e) => ServerStep::Failed {
                reply: error_packet(),
                why: format!("login refused: {e}"),
            },
        }
    }
}

/// What a server sends when a login fails for any reason (its token is empty).
pub fn error_packet() -> QuorumAuthPacket {
    QuorumAuthPacket::new(AuthStatus::Error, Some(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jaas::server_users;

    fn users() -> JaasUsers {
        server_users(
            "QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule required \
             user_test=\"test\"; };",
            "QuorumServer",
        )
        .unwrap()
        .unwrap()
    }

    fn fill(v: u8) -> impl FnMut(&mut [u8]) {
        move |b: &mut [u8]| b.fill(v)
    }

    /// Runs a learner against a server in memory; the server's last step.
    fn run(password: &str) -> (Result<LearnerStep, String>, ServerStep) {
        let users = users();
        let (mut learner, mut to_server) = LearnerLogin::start("test", Secret::new(password));
        assert_eq!(to_server.token.as_deref(), Some(&[][..]));
        let mut server = ServerLogin::new();
        loop {
            let step = server.on_packet(to_server, &mut fill(1), &users);
            let reply = match &step {
                ServerStep::Continue(p) => p.clone(),
                ServerStep::Authenticated { reply, .. } | ServerStep::Failed { reply, .. } => {
                    reply.clone()
                }
            };
            let learned = learner.on_packet(reply, &mut fill(2));
            match (&step, learned) {
                (ServerStep::Continue(_), Ok(LearnerStep::Send(p))) => to_server = p,
                (_, learned) => return (learned, step),
            }
        }
    }

    #[test]
    fn a_learner_with_the_password_logs_in_in_two_round_trips() {
        let (learned, step) = run("test");
        assert_eq!(learned, Ok(LearnerStep::Done));
        assert!(
            matches!(step, ServerStep::Authenticated { ref user, .. } if user == "test"),
            "{step:?}"
        );
    }

    #[test]
    fn a_wrong_password_is_an_error_packet_and_a_learner_failure() {
        let (learned, step) = run("nope");
        let ServerStep::Failed { reply, why } = step else {
            panic!("{step:?}")
        };
        assert_eq!(reply, error_packet());
        assert!(why.contains("does not match"), "{why}");
        assert!(learned
            .unwrap_err()
            .starts_with("refused by the other member"));
    }

    #[test]
    fn a_learner_refuses_out_of_order_statuses() {
        let (mut l, _) = LearnerLogin::start("test", Secret::new("test"));
        let success = QuorumAuthPacket::new(AuthStatus::Success, Some(b"rspauth=00".to_vec()));
        assert_eq!(
            l.on_packet(success, &mut fill(0)),
            Err("unexpected status 1 from the other member".into())
        );
        let (mut l, _) = LearnerLogin::start("test", Secret::new("test"));
        let ch = b"realm=\"zk-quorum-sasl-md5\",nonce=\"n\",charset=utf-8,algorithm=md5-sess";
        let p = QuorumAuthPacket::new(AuthStatus::InProgress, Some(ch.to_vec()));
        assert!(matches!(
            l.on_packet(p.clone(), &mut fill(0)),
            Ok(LearnerStep::Send(_))
        ));
        // A second challenge is more than DIGEST-MD5 has.
        assert_eq!(
            l.on_packet(p, &mut fill(0)),
            Err("unexpected status 0 from the other member".into())
        );
        // A forged proof fails.
        let (mut l, _) = LearnerLogin::start("test", Secret::new("test"));
        let p = QuorumAuthPacket::new(AuthStatus::InProgress, Some(ch.to_vec()));
        l.on_packet(p, &mut fill(0)).unwrap();
        let forged = QuorumAuthPacket::new(
            AuthStatus::Success,
            Some(b"rspauth=00000000000000000000000000000000".to_vec()),
        );
        assert!(l.on_packet(forged, &mut fill(0)).is_err());
    }

    #[test]
    fn the_peek_lets_through_only_what_is_not_required() {
        let mut magic = Vec::new();
        error_packet().encode(&mut magic);
        let other = [0u8, 0, 0, 11, 0, 0, 0, 0];
        assert_eq!(peek(Some(&magic), true), Peek::Login);
        assert_eq!(peek(Some(&magic), false), Peek::Login);
        assert_eq!(peek(Some(&other), false), Peek::Pass);
        assert_eq!(peek(None, false), Peek::Pass);
        assert_eq!(peek(Some(&other), true), Peek::Refuse);
        assert_eq!(peek(None, true), Peek::Refuse);
    }

    #[test]
    fn a_server_answers_garbage_with_an_error() {
        let users = users();
        let mut s = ServerLogin::new();
        let first = QuorumAuthPacket::new(AuthStatus::InProgress, None);
        assert!(matches!(
            s.on_packet(first, &mut fill(0), &users),
            ServerStep::Continue(_)
        ));
        let junk = QuorumAuthPacket::new(AuthStatus::InProgress, Some(b"\xff=\"".to_vec()));
        assert!(matches!(
            s.on_packet(junk, &mut fill(0), &users),
            ServerStep::Failed { .. }
        ));
    }
}
