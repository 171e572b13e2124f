//! Quorum SASL (quorum.auth.enableSasl) on the peer links: moves the packets of
//! the DIGEST-MD5 login a member makes on each link it dials (the learner role) and
//! checks on each link it accepts (the server role), as the reference's
//! SaslQuorumAuthLearner and SaslQuorumAuthServer. What each side sends and decides
//! is `auth::quorum_login` (pure); this is its IO. Built on the main thread from
//! the config; the logins run in the peer transport's link set-up tasks on the
//! sequencer core.
//!
//! ```text
//!  election port: init message ─► [login] ─► the higher-sid rule ─► notifications
//!  quorum port:   connect (and TLS) ─► [login] ─► FOLLOWERINFO ...
//! ```
//!
//! learnerRequireSasl=false: the learner sends nothing. The server peeks at the
//! link's first 8 bytes: a link that does not log in is refused with
//! serverRequireSasl=true and goes on otherwise, those bytes first. A failed login
//! is refused with serverRequireSasl=true; otherwise the link goes on, as the
//! reference keeps it (its learner, told ERROR, closes it; on the election port the
//! higher-sid rule still applies, so the member is dialled back).
//!
//! Bounds: the peek waits at most the login timeout for 8 bytes, the login at most
//! that again (`login_timeout`: initLimit × tickTime, at least
//! `PEER_SASL_TIMEOUT_MIN`, the reference's socket timeout while a learner connects);
//! a login holds one packet at a time (`QUORUM_AUTH_PACKET_BYTES_MAX` with the
//! bytes of one read); at most `PEER_LOGINS_MAX` logins are checked at once on this
//! member's two ports (a link takes a place once its login starts).

use super::tls::PeerStream;
use crate::auth::quorum_login::{self, LearnerLogin, LearnerStep, Peek, ServerLogin, ServerStep};
use crate::config::QuorumSaslConfig;
use crate::proto::quorum_auth::{QuorumAuthPacket, QUORUM_AUTH_PACKET_BYTES_MAX};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use std::cell::Cell;
use std::time::Duration;

/// The shortest login timeout, whatever initLimit × tickTime says.
pub const PEER_SASL_TIMEOUT_MIN: Duration = Duration::from_secs(5);
/// Logins being checked at once on the election and quorum ports together; a link
/// starting one beyond it is dropped. Members set up a few links each; a flood of
/// logins must not hold the sequencer core's tasks.
pub const PEER_LOGINS_MAX: usize = 16;
/// Bytes read from the socket at a time during a login.
const LOGIN_READ_BYTES: usize = 4096;

/// The login timeout of an ensemble with these settings.
pub fn login_timeout(init_limit_ticks: u32, tick_time_ms: u32) -> Duration {
    let init = Duration::from_millis(u64::from(init_limit_ticks) * u64::from(tick_time_ms));
    init.max(PEER_SASL_TIMEOUT_MIN)
}

/// This member's quorum SASL settings, logins and the logins it is checking.
pub struct PeerSasl {
    cfg: QuorumSaslConfig,
    timeout: Duration,
    logins: Cell<usize>,
}

/// Why an accepted link was not let through.
pub enum LoginRefused {
    /// It closed before its first byte.
    Closed,
    /// It did not log in, or its login failed.
    Failed(String),
}

/// One login's place under `PEER_LOGINS_MAX`, given back on drop.
struct LoginSlot<'a>(&'a Cell<usize>);

impl Drop for LoginSlot<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn random(b: &mut [u8]) {
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), b)
}

impl PeerSasl {
    pub fn new(cfg: QuorumSaslConfig, timeout: Duration) -> PeerSasl {
        PeerSasl {
            cfg,
            timeout,
            logins: Cell::new(0),
        }
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
        let (mut login, first) = LearnerLogin::start(user, password.clone());
        let exchange = async {
            let mut buf = Vec::new();
            send(stream, &first).await?;
            loop {
                let p = read_packet(stream, &mut buf).await?;
                match login.on_packet(p, &mut random)? {
                    LearnerStep::Send(p) => send(stream, &p).await?,
                    LearnerStep::Done => return Ok(buf),
                }
            }
        };
        let timeout = self.timeout;
        match glommio::timer::timeout(timeout, async { Ok(exchange.await) }).await {
            Ok(r) => r.map_err(|why: String| format!("quorum SASL login as `{user}`: {why}")),
            Err(_) => Err(format!(
                "quorum SASL login as `{user}`: no answer within {timeout:?}"
            )),
        }
    }

    /// The server's side, on a link this member accepted, whose first bytes (if
    /// any were read already) are `buf`. Returns the bytes the link's reader starts
    /// from, or why the link is refused.
    pub async fn serve(
        &self,
        stream: &mut PeerStream,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, LoginRefused> {
        let require = self.cfg.server_require;
        // A link that stays silent (a member with nothing to send yet) has not
        // failed a login.
        let peek =
            glommio::timer::timeout(self.timeout, async { Ok(fill(stream, &mut buf, 8).await) })
                .await;
        let first = match peek {
            Ok(Err(why)) => return Err(LoginRefused::Failed(why)),
            Ok(Ok(true)) => Some(&buf[..]),
            Ok(Ok(false)) if buf.is_empty() && require => return Err(LoginRefused::Closed),
            Ok(Ok(false)) | Err(_) => None,
        };
        match quorum_login::peek(first, require) {
            Peek::Pass => return Ok(buf),
            Peek::Refuse => {
                return Err(LoginRefused::Failed(
                    "the member did not log in (quorum.auth.serverRequireSasl=true)".into(),
                ))
            }
            Peek::Login => {}
        }
        if self.logins.get() >= PEER_LOGINS_MAX {
            return Err(LoginRefused::Failed(format!(
                "{PEER_LOGINS_MAX} quorum SASL logins already in progress (PEER_LOGINS_MAX)"
            )));
        }
        self.logins.set(self.logins.get() + 1);
        let _slot = LoginSlot(&self.logins);
        let timeout = self.timeout;
        let login =
            glommio::timer::timeout(timeout, async { Ok(self.check_login(stream, buf).await) })
                .await;
        let why = match login {
            Ok(Ok(rest)) => return Ok(rest),
            Ok(Err(why)) => why,
            Err(_) => format!("the login did not end within {timeout:?}"),
        };
        if require {
            return Err(LoginRefused::Failed(format!("quorum SASL: {why}")));
        }
        // As the reference: the link goes on (its learner closes it).
        tracing::warn!(
            "quorum SASL: {why}; keeping the link (quorum.auth.serverRequireSasl=false)"
        );
        Ok(Vec::new())
    }

    /// A learner's login, from its first packet (at the start of `buf`) to the
    /// answer: SUCCESS with rspauth, or ERROR and the reason.
    async fn check_login(
        &self,
        stream: &mut PeerStream,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let mut login = ServerLogin::new();
        loop {
            let p = match read_packet(stream, &mut buf).await {
                Ok(p) => p,
                Err(why) => {
                    let _ = send(stream, &quorum_login::error_packet()).await;
                    return Err(why);
                }
            };
            match login.on_packet(p, &mut random, &self.cfg.server_users) {
                ServerStep::Continue(reply) => send(stream, &reply).await?,
                ServerStep::Authenticated { reply, user } => {
                    send(stream, &reply).await?;
                    tracing::info!("quorum SASL: a member logged in as `{user}`");
                    return Ok(buf);
                }
                ServerStep::Failed { reply, why } => {
                    let _ = send(stream, &reply).await;
                    return Err(why);
                }
            }
        }
    }
}

async fn send(stream: &mut PeerStream, p: &QuorumAuthPacket) -> Result<(), String> {
    let mut b = Vec::new();
    p.encode(&mut b);
    stream.write_all(&b).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// Reads until `buf` holds at least `n` bytes; false when the link ended first.
async fn fill(stream: &mut PeerStream, buf: &mut Vec<u8>, n: usize) -> Result<bool, String> {
    let mut chunk = [0u8; LOGIN_READ_BYTES];
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
/// it stays in `buf` (which holds at most one packet and one read beyond it:
/// `decode` refuses a longer token before it is read).
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
                debug_assert!(buf.len() < QUORUM_AUTH_PACKET_BYTES_MAX);
                let want = buf.len() + 1;
                if !fill(stream, buf, want).await? {
                    return Err("the link closed in the middle of the login".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
