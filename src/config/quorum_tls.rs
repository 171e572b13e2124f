//! Quorum TLS's keys: `sslQuorum`, `portUnification`, `sslQuorumReloadCertFiles`
//! and the `ssl.quorum.*` keys of the reference's QuorumX509Util (key and trust
//! store, clientAuth, protocol, enabled protocols, cipher suites, hostname
//! verification). Pure: runs on the main thread while `Config::parse` runs; the
//! stores are loaded at start-up by `server::peer::tls`.
//!
//! ```text
//!  entries ─ QuorumStaged::apply (any order) ─► QuorumStaged
//!  QuorumStaged::build (after every line) ─► Option<QuorumTlsConfig> + warnings
//! ```
//!
//! The reference reads the stores lazily, at the first peer link, and only logs a
//! warning when one is missing; corral checks them at start-up and refuses to start
//! without them. It also needs the trust store always: the dialling side of every
//! link checks the other member's certificate against it.

use super::lex::Entry;
use super::tls::SslKeys;
use super::{ClientAuth, ConfigError, PemStore, TlsProtocol, TlsSuite};

/// How the peer links (election and quorum ports) use TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct QuorumTlsConfig {
    /// sslQuorum=true: links this member dials speak TLS, and its election and
    /// quorum ports take TLS links.
    pub dial_tls: bool,
    /// portUnification=true: the election and quorum ports take plaintext links
    /// beside TLS ones, told apart by their first bytes (a rolling switch of an
    /// ensemble to TLS). Without it and with sslQuorum, a plaintext link is refused.
    pub accept_plaintext: bool,
    /// ssl.quorum.keyStore.*: this member's private key and certificate chain, shown
    /// on both ends of a link.
    pub key_store: PemStore,
    /// ssl.quorum.trustStore.*: the CA certificates the other members' certificates
    /// must chain to.
    pub trust_store: PemStore,
    /// ssl.quorum.clientAuth: whether a member that dials us must show a
    /// certificate (need, the default), may (want) or is not asked (none).
    pub client_auth: ClientAuth,
    /// Non-empty.
    pub protocols: Vec<TlsProtocol>,
    /// Non-empty; each usable with one of `protocols`.
    pub suites: Vec<TlsSuite>,
    /// ssl.quorum.hostnameVerification (default true): a member's certificate must
    /// name the address of its end of the link, on both ends (the reference checks
    /// a dialler's certificate on the quorum ports too).
    pub hostname_verification: bool,
}

/// The quorum TLS keys seen so far.
#[derive(Debug)]
pub(super) struct QuorumStaged {
    ssl_quorum: bool,
    port_unification: bool,
    hostname_verification: bool,
    ssl: SslKeys,
    warnings: Vec<String>,
}

impl Default for QuorumStaged {
    fn default() -> QuorumStaged {
        QuorumStaged {
            ssl_quorum: false,
            port_unification: false,
            hostname_verification: true,
            ssl: SslKeys::new("ssl.quorum."),
            warnings: Vec::new(),
        }
    }
}

impl QuorumStaged {
    /// Takes one zoo.cfg line if it is a quorum TLS key.
    pub(super) fn apply(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "sslQuorum" => self.ssl_quorum = e.parse_boolean()?,
            "portUnification" => self.port_unification = e.parse_boolean()?,
            "ssl.quorum.hostnameVerification" => self.hostname_verification = e.true_false()?,
            "sslQuorumReloadCertFiles" => {
                if e.parse_boolean()? {
                    self.warnings.push(format!(
                        "config line {}: `sslQuorumReloadCertFiles=true` has no effect: corral \
                         reads the quorum key and trust stores once, at start-up; restart the \
                         member to take new certificates",
                        e.line
                    ));
                }
            }
            _ => return self.ssl.apply(e, &mut self.warnings),
        }
        Ok(true)
    }

    /// Warnings of the lines taken so far, for the caller to log.
    pub(super) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// After every line: the peer links' TLS, or `None` when neither sslQuorum nor
    /// portUnification is on (then `ssl.quorum.*` keys are noted once as having no
    /// effect). `distributed`: the config names an ensemble.
    pub(super) fn build(
        self,
        distributed: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Option<QuorumTlsConfig>, ConfigError> {
        if !self.ssl_quorum && !self.port_unification {
            if let Some((key, g)) = self.ssl.first() {
                warnings.push(format!(
                    "config line {}: `{key}` (and any other ssl.quorum.* key) has no effect \
                     without sslQuorum=true or portUnification=true",
                    g.line
                ));
            }
            return Ok(None);
        }
        if !distributed {
            warnings.push(
                "config: sslQuorum / portUnification have no effect on a standalone server \
                 (no peer links)"
                    .into(),
            );
            return Ok(None);
        }
        let ssl = &self.ssl;
        let key_store = ssl.key_store(
            "quorum TLS (sslQuorum or portUnification) needs this member's key and certificate \
             chain (a PEM file), shown to the other members",
        )?;
        let trust_store = ssl
            .trust_store(Some(
                "quorum TLS checks the other members' certificates against the CA certificates \
                 in this PEM file",
            ))?
            .expect("a needed trust store is set or refused");
        let client_auth = ssl.client_auth()?;
        let protocols = ssl.protocols(warnings)?;
        let suites = ssl.suites(&protocols, warnings)?;
        Ok(Some(QuorumTlsConfig {
            dial_tls: self.ssl_quorum,
            accept_plaintext: self.port_unification,
            key_store,
            trust_store,
            client_auth,
            protocols,
            suites,
            hostname_verification: self.hostname_verification,
        }))
    }
}
