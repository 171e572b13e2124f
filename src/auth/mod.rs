//! Client authentication beyond the `digest` auth packet: SASL DIGEST-MD5, as the
//! reference's `SASLAuthenticationProvider` with its `SaslServerCallbackHandler`.
//! Pure (no IO, no clock): `jaas` parses the JAAS login file on the main thread
//! while the config is read; `sasl` is the per-connection DIGEST-MD5 server state
//! machine that shard cores drive, one per connection that starts a SASL exchange
//! (and the sequencer core's peer transport, one per peer link a learner
//! authenticates on with quorum SASL); `sasl_client` is the learner's side of that,
//! and `quorum_login` the packets both sides of a quorum SASL login exchange.
//!
//! ```text
//!  zoo.cfg keys ─► SaslSettings (config) ─► JAAS file ─ jaas::server_users ─► JaasUsers
//!  client SASL packet (op 102) ─► shard ─► sasl::DigestServer::evaluate(token, users)
//!        ─► challenge / rspauth + authenticated user ─► Id("sasl", user) on the connection
//! ```
//!
//! Kerberos (GSSAPI) is out of scope: a JAAS `Server` section naming the Kerberos
//! login module is refused at start-up.

pub mod jaas;
pub mod quorum_login;
pub mod sasl;
pub mod sasl_client;

pub use jaas::{JaasError, JaasLogin, JaasUsers};
pub use sasl::{DigestServer, Outcome, SaslError};
pub use sasl_client::DigestClient;

/// The class that `authProvider.N` names to register the `sasl` scheme.
pub const SASL_PROVIDER_CLASS: &str = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider";

/// A password read from configuration: compared and hashed, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How SASL logins are served; part of `Config`. Every field is named after the
/// reference's system property (set in zoo.cfg without the `zookeeper.` prefix,
/// except the JAAS file, which is the JVM's own property used here as a key).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaslSettings {
    /// `java.security.auth.login.config`: the JAAS file.
    pub jaas_path: Option<std::path::PathBuf>,
    /// The users of the JAAS file's `Server` section; `None` when no file is set or
    /// it has no such section (then, as the reference, SASL packets are answered
    /// with no token and nobody can log in).
    pub users: Option<JaasUsers>,
    /// `authProvider.N=org.apache.zookeeper.server.auth.SASLAuthenticationProvider`:
    /// the `sasl` scheme is registered (whoAmI names sasl users).
    pub provider_enabled: bool,
    /// `zookeeper.allowSaslFailedClients`: a failed login keeps its connection.
    pub allow_failed_clients: bool,
    /// `zookeeper.superUser` (and `zookeeper.superUser.*`): SASL users that
    /// authenticate as the super user.
    pub super_users: Vec<String>,
    /// `zookeeper.SASLAuthenticationProvider.superPassword`: the password of the
    /// JAAS user `super`, overriding the file's.
    pub super_password: Option<Secret>,
}

impl SaslSettings {
    /// The password a DIGEST-MD5 login of `user` must prove, as
    /// `SaslServerCallbackHandler` finds it.
    pub fn password(&self, user: &str) -> Option<&str> {
        let users = self.users.as_ref()?;
        let from_file = users.password(user)?;
        match (&self.super_password, user) {
            (Some(p), "super") => Some(p.expose()),
            _ => Some(from_file),
        }
    }

    /// Whether an authenticated SASL user is also the super user.
    pub fn is_super_user(&self, user: &str) -> bool {
        !user.is_empty() && self.super_users.iter().any(|s| s == user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_super_password_overrides_only_an_existing_super_user() {
        let users = jaas::server_users(
            "Server { org.apache.zookeeper.server.auth.DigestLoginModule required \
             user_super=\"a\" user_bob=\"b\"; };",
            "Server",
        )
        .unwrap();
        let mut s = SaslSettings {
            users,
            ..SaslSettings::default()
        };
        assert_eq!(s.password("super"), Some("a"));
        s.super_password = Some(Secret::new("override"));
        assert_eq!(s.password("super"), Some("override"));
        assert_eq!(s.password("bob"), Some("b"));
        assert_eq!(s.password("eve"), None);
        s.users = None;
        assert_eq!(s.password("super"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
    }
}
