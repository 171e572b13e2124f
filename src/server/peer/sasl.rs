//! Quorum SASL (quorum.auth.enableSasl) on the peer links: the DIGEST-MD5 login a
//! member makes on each link it dials (the learner role) and checks on each link it
//! accepts (the server role), as the reference's SaslQuorumAuthLearner and
//! SaslQuorumAuthServer. Built on the main thread from the config; the exchanges run
//! in the peer transport's link set-up tasks on the sequencer core. The DIGEST-MD5
//! steps are `auth::sasl` (server) and `auth::sasl_client` (learner); the packets are
//! `proto::quorum_auth`.
//!
//! ```text
//!  election port: init message ─► [SASL] ─► the higher-sid rule ─► notifications
//!  quorum port:   connect (and TLS) ─► [SASL] ─► FOLLOWERINFO ...
//!  [SASL]  learner: (0, empty) ──────────────────────────────► server
//!                           ◄──────── (0, realm + nonce challenge)
//!                  (0, digest-response) ─────────────────────►
//!                           ◄──────── (1, rspauth=…) or (-1, empty): refused
//! ```
//!
//! learnerRequireSasl=false: the learner sends nothing. The server peeks at the
//! link's first 8 bytes: without the magic, serverRequireSasl=false lets the link
//! through with those bytes kept for its reader; true drops it. A learner that
//! starts a login and fails is dropped whatever serverRequireSasl says (the
//! reference keeps the socket, but its learner, which got ERROR, closes it).
//!
//! Bounds: each exchange holds one packet at a time, its token at most
//! `QUORUM_AUTH_TOKEN_BYTES_MAX` bytes, and ends within `PEER_SASL_TIMEOUT`; the
//! links being set up at once are the transport's (one task per accepted link).

use super::tls::PeerStream;
use crate::auth::sasl::QUORUM;
use crate::auth::{DigestClient, DigestServer, Outcome};
use crate::config::QuorumSaslConfig;
use crate::proto::quorum_auth::{
    starts_with_magic, AuthStatus, QuorumAuthPacket, QUORUM_AUTH_HEADER_BYTES,
};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use std::time::Duration;

/// How long one login may take, either role (the reference's peer sockets time
/// out after their connect timeout too).
pub const PEER_SASL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from the socket at a time during a login.
const READ_CHUNK_BYTES: usize = 4096;

/// This member's quorum SASL settings and logins.
pub struct PeerSasl {
    cfg: QuorumSaslConfig,
}

impl PeerSasl {
    pub fn new(cfg: QuorumSaslConfig) -> PeerSasl {
        PeerSasl { cfg }
    }

    /// The learner's side, on a link this member dialled, right after its first
    /// message (election port) or its connect (quorum port). Returns bytes read
    /// past the login (the other member may write at once), or why it failed.
    pub async fn learn(&self, stream: &mut PeerStream) -> Result<Vec<u8>, String> {
        if !self.cfg.learner_require {
            return Ok(Vec::new());
        }
        let Some((user, password)) = &self.cfg.learner else {
            // Checked at start-up: learnerRequireSasl needs the section's login.
            return Err("no QuorumLearner login".into());
        };
        let mut client = DigestClient::new(&QUORUM, user, password.clone());
        let login = async {
            let mut buf = Vec::new();
            send(stream, AuthStatus::InProgress, Some(&[])).await?;
            let challenge = match read_packet(stream, &mut buf).await? {
                p if p.status == AuthStatus::InProgress => p.token.unwrap_or_default(),
                p => return Err(refused_by_server(p.status)),
            };
            let mut random = |b: &mut [u8]| rand::RngCore::fill_bytes(&mut rand::thread_rng(), b);
            let response = (client.respond(&challenge, &mut random)).map_err(|e| e.to_string())?;
            send(stream, AuthStatus::InProgress, Some(&response)).await?;
            match read_packet(stream, &mut buf).await? {
                p if p.status == AuthStatus::Success => {
                    let token = p.token.unwrap_or_default();
                    client.verify_rspauth(&token).map_err(|e| e.to_string())?;
                    Ok(buf)
                }
                p => Err(refused_by_server(p.status)),
            }
        };
        match glommio::timer::timeout(PEER_SASL_TIMEOUT, async { Ok(login.await) }).await {
            Ok(r) => r.map_err(|why| format!("quorum SASL login as `{user}`: {why}")),
            Err(_) => Err(format!(
                "quorum SASL login as `{user}`: no answer within {PEER_SASL_TIMEOUT:?}"
            )),
        }
    }

    /// The server's side, on a link this member accepted, whose first bytes (if
    /// any were read already) are `buf`. Returns the bytes the link's reader starts
    /// from, or why the link is refused.
    pub async fn serve(
        &self,
        stream: &mut PeerStream,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>, LoginRefused> {
        let require = self.cfg.server_require;
        let mut buf = buf;
        // The peek: a link that stays silent (a member with nothing to send yet)
        // is not a failed login.
        let peek = glommio::timer::timeout(PEER_SASL_TIMEOUT, async {
            Ok(fill(stream, &mut buf, 8).await)
        })
        .await;
        let tries = match peek {
            Ok(Err(why)) => return Err(LoginRefused::Failed(why)),
            Ok(Ok(true)) => starts_with_magic(&buf) == Some(true),
            // A probe that connects and closes is no member failing to log in.
            Ok(Ok(false)) if buf.is_empty() && require => return Err(LoginRefused::Closed),
            Ok(Ok(false)) | Err(_) => false,
        };
        if !tries {
            return match require {
                false => Ok(buf),
                true => Err(LoginRefused::Failed(
                    "the member did not log in (quorum.auth.serverRequireSasl=true)".into(),
                )),
            };
        }
        let login = glommio::timer::timeout(PEER_SASL_TIMEOUT, async {
            Ok(self.check_login(stream, buf).await)
        })
        .await;
        let why = match login {
            Ok(Ok(rest)) => return Ok(rest),
            Ok(Err(why)) => format!("quorum SASL: {why}"),
            Err(_) => format!("quorum SASL: the login did not end within {PEER_SASL_TIMEOUT:?}"),
        };
        Err(LoginRefused::Failed(why))
    }

    /// A learner's login, from its first packet (at the start of `buf`) to the
    /// answer: SUCCESS with rspauth, or ERROR and the reason.
    async fn check_login(
        &self,
        stream: &mut PeerStream,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let mut server = DigestServer::for_service(&QUORUM);
        let users = &self.cfg.server_users;
        let password = |u: &str| users.password(u).map(str::to_string);
        let mut random = |b: &mut [u8]| rand::RngCore::fill_bytes(&mut rand::thread_rng(), b);
        loop {
            let packet = match read_packet(stream, &mut buf).await {
                Ok(p) => p,
                Err(why) => {
                    let _ = send(stream, AuthStatus::Error, Some(&[])).await;
                    return Err(why);
                }
            };
            let token = packet.token.unwrap_or_default();
            match server.evaluate(&token, &mut random, &password) {
                Ok(Outcome::Challenge(c)) => send(stream, AuthStatus::InProgress, Some(&c)).await?,
                Ok(Outcome::Authenticated { rspauth, user }) => {
                    send(stream, AuthStatus::Success, Some(&rspauth)).await?;
                    tracing::info!("quorum SASL: a member logged in as `{user}`");
                    return Ok(buf);
                }
                Err(e) => {
                    let _ = send(stream, AuthStatus::Error, Some(&[])).await;
                    return Err(format!("login refused: {e}"));
                }
            }
        }
    }
}

/// Why an accepted link was not let through.
pub enum LoginRefused {
    /// It closed before its first byte (a port probe): not worth a warning.
    Closed,
    /// It did not log in, or its login failed.
    Failed(String),
}

fn refused_by_server(status: AuthStatus) -> String {
    match status {
        AuthStatus::Error => {
            "refused by the other member (a user or password its QuorumServer section does \
             not have?)"
                .into()
        }
        other => format!("unexpected status {} from the other member", other.code()),
    }
}

async fn send(
    stream: &mut PeerStream,
    status: AuthStatus,
    token: Option<&[u8]>,
) -> Result<(), String> {
    let mut b = Vec::with_capacity(QUORUM_AUTH_HEADER_BYTES + token.map_or(0, <[u8]>::len));
    QuorumAuthPacket::new(status, token.map(<[u8]>::to_vec)).encode(&mut b);
    stream.write_all(&b).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// Reads until `buf` holds at least `n` bytes; false when the link ended first.
async fn fill(stream: &mut PeerStream, buf: &mut Vec<u8>, n: usize) -> Result<bool, String> {
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    while buf.len() < n {
        match stream.read(&mut chunk).await {
            Ok(0) => return Ok(false),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(true)
}

/// The next packet at the start of `buf`, reading more as it needs; what follows
/// it stays in `buf`.
async fn read_packet(
    stream: &mut PeerStream,
    buf: &mut Vec<u8>,
) -> Result<QuorumAuthPacket, String> {
    loop {
        match QuorumAuthPacket::decode(buf) {
            Ok(Some((p, used))) => {
                buf.drain(..used);
                return Ok(p);
            }
            Ok(None) => {
                let want = buf.len() + 1;
                if !fill(stream, buf, want).await? {
                    return Err("the link closed in the middle of the login".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
