//! Quorum SASL's keys: `quorum.auth.enableSasl`, `learnerRequireSasl`,
//! `serverRequireSasl`, the two JAAS section names, and the Kerberos principal
//! (DIGEST-MD5 has no use for it). Pure: runs on the main thread while
//! `Config::parse` runs; the JAAS sections are read here too, from the file the
//! client port's SASL names (`java.security.auth.login.config`).
//!
//! ```text
//!  entries ─ SaslStaged::apply (any order) ─► SaslStaged
//!  SaslStaged::build (after every line, with the JAAS text) ─► Option<QuorumSaslConfig>
//! ```
//!
//! As the reference's QuorumPeerConfig: requiring SASL needs it enabled, and a
//! server that requires it needs its learners to require it too (the allowed
//! enable / learner / server settings are off, on, on + learner, on + both), and
//! with SASL enabled both JAAS sections must exist. corral also checks the learner
//! section's username and password at start-up when it will log in with them.

use super::lex::Entry;
use super::ConfigError;
use crate::auth::jaas::{client_login, server_users};
use crate::auth::{JaasUsers, Secret};
use std::path::Path;

/// The reference's default JAAS section of a member accepting learners.
pub const QUORUM_SERVER_SECTION: &str = "QuorumServer";
/// The reference's default JAAS section of a member logging in to another.
pub const QUORUM_LEARNER_SECTION: &str = "QuorumLearner";

/// How the peer links authenticate (`quorum.auth.enableSasl=true`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuorumSaslConfig {
    /// quorum.auth.learnerRequireSasl: links this member dials log in first (and
    /// fail if the other member refuses). Off: it sends no SASL packet at all.
    pub learner_require: bool,
    /// quorum.auth.serverRequireSasl: links to this member must log in. Off: a link
    /// that does not try, or fails, is kept (a rolling switch to SASL).
    pub server_require: bool,
    /// The user a dialled link logs in as, from the QuorumLearner section; `None`
    /// when learner_require is off and the section names none.
    pub learner: Option<(String, Secret)>,
    /// The users a learner may log in as (the QuorumServer section).
    pub server_users: JaasUsers,
}

/// The quorum SASL keys seen so far.
#[derive(Debug)]
pub(super) struct SaslStaged {
    enable: bool,
    learner_require: bool,
    server_require: bool,
    learner_context: String,
    server_context: String,
}

impl Default for SaslStaged {
    fn default() -> SaslStaged {
        SaslStaged {
            enable: false,
            learner_require: false,
            server_require: false,
            learner_context: QUORUM_LEARNER_SECTION.into(),
            server_context: QUORUM_SERVER_SECTION.into(),
        }
    }
}

impl SaslStaged {
    /// Takes one zoo.cfg line if it is a quorum SASL key.
    pub(super) fn apply(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "quorum.auth.enableSasl" => self.enable = e.parse_boolean()?,
            "quorum.auth.learnerRequireSasl" => self.learner_require = e.parse_boolean()?,
            "quorum.auth.serverRequireSasl" => self.server_require = e.parse_boolean()?,
            "quorum.auth.learner.saslLoginContext" => self.learner_context = context(e)?,
            "quorum.auth.server.saslLoginContext" => self.server_context = context(e)?,
            // The learner's Kerberos service principal: DIGEST-MD5 has no use for it.
            "quorum.auth.kerberos.servicePrincipal" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// After every line. `distributed`: the config names an ensemble; `jaas`: the
    /// JAAS file's path and text, when `java.security.auth.login.config` is set.
    pub(super) fn build(
        self,
        distributed: bool,
        jaas: Option<(&Path, &str)>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<QuorumSaslConfig>, ConfigError> {
        self.check_settings()?;
        if !self.enable {
            return Ok(None);
        }
        if !distributed {
            warnings.push(
                "config: quorum.auth.enableSasl has no effect on a standalone server \
                 (no peer links)"
                    .into(),
            );
            return Ok(None);
        }
        let Some((path, text)) = jaas else {
            return Err(ConfigError::Invalid(format!(
                "quorum.auth.enableSasl=true needs java.security.auth.login.config: the \
                 JAAS file with the `{}` and `{}` sections",
                self.server_context, self.learner_context
            )));
        };
        let jaas_err = |source| ConfigError::Jaas {
            path: path.to_path_buf(),
            source,
        };
        let missing = |section: &str, what: &str| {
            ConfigError::Invalid(format!(
                "JAAS file {} has no `{section}` section with a login module ({what}); \
                 quorum SASL needs it",
                path.display()
            ))
        };
        let server_users = server_users(text, &self.server_context)
            .map_err(jaas_err)?
            .ok_or_else(|| missing(&self.server_context, "the users learners log in as"))?;
        let login = client_login(text, &self.learner_context)
            .map_err(jaas_err)?
            .ok_or_else(|| missing(&self.learner_context, "this member's own login"))?;
        let learner = match (login.user, login.password) {
            (Some(u), Some(p)) => Some((u, p)),
            _ if self.learner_require => {
                return Err(jaas_err(crate::auth::JaasError {
                    line: login.line,
                    why: format!(
                        "section `{}` needs username=\"...\" and password=\"...\": \
                         quorum.auth.learnerRequireSasl=true logs in with them",
                        self.learner_context
                    ),
                }))
            }
            _ => None,
        };
        Ok(Some(QuorumSaslConfig {
            learner_require: self.learner_require,
            server_require: self.server_require,
            learner,
            server_users,
        }))
    }

    /// The reference's QuorumPeerConfig checks, in its order.
    fn check_settings(&self) -> Result<(), ConfigError> {
        let why = if !self.enable && self.server_require {
            "quorum.auth.enableSasl is false: quorum.auth.serverRequireSasl cannot be true"
        } else if !self.enable && self.learner_require {
            "quorum.auth.enableSasl is false: quorum.auth.learnerRequireSasl cannot be true"
        } else if !self.learner_require && self.server_require {
            "quorum.auth.learnerRequireSasl is false: quorum.auth.serverRequireSasl cannot be \
             true (a member that requires SASL of its learners must log in to the others too)"
        } else {
            return Ok(());
        };
        Err(ConfigError::Invalid(why.into()))
    }
}

fn context(e: &Entry) -> Result<String, ConfigError> {
    if e.value.is_empty() {
        return Err(e.bad("expected the name of a JAAS section"));
    }
    Ok(e.value.clone())
}
