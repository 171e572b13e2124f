//! The TLS client port's keys: `secureClientPort`, `secureClientPortAddress`, the
//! `ssl.*` keys of the reference's `ClientX509Util` (key and trust store, clientAuth,
//! protocol, enabled protocols, cipher suites) and `X509AuthenticationProvider.superUser`.
//! Pure: runs on the main thread while `Config::parse` runs; no file is read here
//! (the stores are loaded at start-up by `server::tls`).
//!
//! ```text
//!  entries ─ Staged::apply (one key at a time, any order) ─► Staged
//!  Staged::build (after every line) ─► Option<TlsConfig> + warnings
//! ```
//!
//! What acts and what only warns:
//! - acting: the keys above, plus `ssl.keyStore.passwordPath` /
//!   `ssl.trustStore.passwordPath` and `ssl.trustStore.password` (unused by a PEM trust
//!   store, as in the reference);
//! - warned: `ssl.hostnameVerification` (the reference's server does not check client
//!   host names either), `ssl.crl` / `ssl.ocsp` set to true (corral does not check
//!   revocation), and every other `ssl.*` key (quorum TLS, context supplier, ...),
//!   through `keys::no_effect`.
//!
//! JKS, PKCS12 and BCFKS stores are refused here with the command that converts them
//! to PEM, which is the one store format corral reads.

use super::lex::Entry;
use super::ConfigError;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A password from zoo.cfg; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `ssl.clientAuth`: whether a client must (need), may (want) or does not (none)
/// present a certificate. The reference's default is need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Need,
    Want,
    None,
}

/// A TLS protocol version corral's TLS (rustls) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProtocol {
    V1_2,
    V1_3,
}

impl TlsProtocol {
    pub fn java_name(self) -> &'static str {
        match self {
            TlsProtocol::V1_2 => "TLSv1.2",
            TlsProtocol::V1_3 => "TLSv1.3",
        }
    }
}

/// A cipher suite corral's TLS (rustls) offers, by its Java (JSSE) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSuite {
    Tls13Aes128GcmSha256,
    Tls13Aes256GcmSha384,
    Tls13Chacha20Poly1305Sha256,
    EcdheEcdsaAes128GcmSha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheEcdsaChacha20Poly1305Sha256,
    EcdheRsaAes128GcmSha256,
    EcdheRsaAes256GcmSha384,
    EcdheRsaChacha20Poly1305Sha256,
}

/// Java names of the suites rustls offers.
const SUITES: &[(&str, TlsSuite)] = &[
    ("TLS_AES_128_GCM_SHA256", TlsSuite::Tls13Aes128GcmSha256),
    ("TLS_AES_256_GCM_SHA384", TlsSuite::Tls13Aes256GcmSha384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        TlsSuite::Tls13Chacha20Poly1305Sha256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        TlsSuite::EcdheEcdsaAes128GcmSha256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        TlsSuite::EcdheEcdsaAes256GcmSha384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        TlsSuite::EcdheEcdsaChacha20Poly1305Sha256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        TlsSuite::EcdheRsaAes128GcmSha256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        TlsSuite::EcdheRsaAes256GcmSha384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        TlsSuite::EcdheRsaChacha20Poly1305Sha256,
    ),
];

/// Suites Java 17 enables that rustls does not implement (CBC, static RSA, DHE and
/// static ECDH key exchange): named in ssl.ciphersuites they are skipped with a
/// warning; any other unknown name stops start-up.
const JAVA_ONLY_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
    "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
];

/// The reference's default suites on Java 9+ (`X509Util.DEFAULT_CIPHERS_JAVA9`),
/// less the CBC ones rustls lacks.
const DEFAULT_TLS12_SUITES: &[TlsSuite] = &[
    TlsSuite::EcdheEcdsaAes128GcmSha256,
    TlsSuite::EcdheRsaAes128GcmSha256,
    TlsSuite::EcdheEcdsaAes256GcmSha384,
    TlsSuite::EcdheRsaAes256GcmSha384,
];

/// The TLS 1.3 suites, added to the default list when TLSv1.3 is enabled (the
/// reference's default list has none, so its TLSv1.3-only server cannot handshake).
const DEFAULT_TLS13_SUITES: &[TlsSuite] = &[
    TlsSuite::Tls13Aes128GcmSha256,
    TlsSuite::Tls13Aes256GcmSha384,
    TlsSuite::Tls13Chacha20Poly1305Sha256,
];

impl TlsSuite {
    pub fn java_name(self) -> &'static str {
        SUITES
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(n, _)| *n)
            .expect("every suite has a Java name")
    }

    pub fn protocol(self) -> TlsProtocol {
        match self {
            TlsSuite::Tls13Aes128GcmSha256
            | TlsSuite::Tls13Aes256GcmSha384
            | TlsSuite::Tls13Chacha20Poly1305Sha256 => TlsProtocol::V1_3,
            _ => TlsProtocol::V1_2,
        }
    }
}

/// A key or trust store: a PEM file.
#[derive(Debug, Clone, PartialEq)]
pub struct PemStore {
    /// The zoo.cfg key that named it (for error lines).
    pub key: String,
    pub path: PathBuf,
    /// The key's password (`ssl.keyStore.password`); `None` when empty or unset.
    pub password: Option<Secret>,
    /// `ssl.keyStore.passwordPath`: a file whose text is the password (read at
    /// start-up; it wins over `password`, as in the reference).
    pub password_path: Option<PathBuf>,
}

/// The TLS client port: where it listens and how its TLS is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// secureClientPort on secureClientPortAddress (default: clientPortAddress);
    /// `None` when only the client port speaks TLS (client.portUnification).
    pub addr: Option<SocketAddr>,
    /// client.portUnification: the client port takes TLS and plaintext clients,
    /// told apart by their first bytes.
    pub unified_client_port: bool,
    /// ssl.keyStore.*: the server's private key and certificate chain.
    pub key_store: PemStore,
    /// ssl.trustStore.*: the CA certificates client certificates must chain to.
    /// Always set when `client_auth` is not `None`.
    pub trust_store: Option<PemStore>,
    pub client_auth: ClientAuth,
    /// Non-empty.
    pub protocols: Vec<TlsProtocol>,
    /// Non-empty; each usable with one of `protocols`.
    pub suites: Vec<TlsSuite>,
    /// X509AuthenticationProvider.superUser: a client whose certificate subject is
    /// this is the super user.
    pub x509_super_user: Option<String>,
}

/// A value as zoo.cfg gave it, with its line (for errors).
#[derive(Debug, Clone, Default)]
pub(super) struct Given {
    pub(super) line: usize,
    pub(super) value: String,
}

/// The TLS keys seen so far; `build` turns them into a `TlsConfig`.
#[derive(Debug)]
pub(super) struct Staged {
    port: Option<(usize, u16)>,
    /// client.portUnification=true, on this line.
    unified: Option<usize>,
    address: Option<(usize, IpAddr)>,
    /// The acting `ssl.*` keys.
    ssl: SslKeys,
    super_user: Option<String>,
    warnings: Vec<String>,
}

impl Default for Staged {
    fn default() -> Staged {
        Staged {
            port: None,
            unified: None,
            address: None,
            ssl: SslKeys::new("ssl."),
            super_user: None,
            warnings: Vec::new(),
        }
    }
}

impl Staged {
    /// Takes one zoo.cfg line if it is a TLS key this module owns.
    pub(super) fn apply(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "secureClientPort" => self.port = Some((e.line, e.num("expected a port 0-65535")?)),
            // A system property of the reference's Netty factory.
            "client.portUnification" | "zookeeper.client.portUnification" => {
                self.unified = e.true_false()?.then_some(e.line)
            }
            "secureClientPortAddress" => {
                let ip = e.num("expected an IP address such as 127.0.0.1")?;
                self.address = Some((e.line, ip));
            }
            "X509AuthenticationProvider.superUser"
            | "zookeeper.X509AuthenticationProvider.superUser" => {
                self.super_user = Some(e.value.clone())
            }
            "ssl.hostnameVerification" => {
                e.boolean()?;
                self.warnings.push(format!(
                    "config line {}: `ssl.hostnameVerification` has no effect on a server's \
                     client port (the reference does not check client host names either)",
                    e.line
                ));
            }
            _ => return self.ssl.apply(e, &mut self.warnings),
        }
        Ok(true)
    }

    /// Warnings of the lines taken so far, for the caller to log.
    pub(super) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// After every line: the TLS config, or `None` without secureClientPort or
    /// client.portUnification. `client_ip` is clientPortAddress, the secure port's
    /// default address.
    pub(super) fn build(
        self,
        client_ip: IpAddr,
        warnings: &mut Vec<String>,
    ) -> Result<Option<TlsConfig>, ConfigError> {
        let addr = match self.port {
            Some((_, port)) => Some(SocketAddr::new(
                self.address.map(|(_, ip)| ip).unwrap_or(client_ip),
                port,
            )),
            None if self.unified.is_some() => {
                self.without_port(&mut Vec::new())?;
                None
            }
            None => return self.without_port(warnings).map(|()| None),
        };
        let ssl = &self.ssl;
        let key_store = ssl.key_store(
            "TLS (secureClientPort or client.portUnification) needs the server's key and \
             certificate chain (a PEM file)",
        )?;
        let client_auth = ssl.client_auth()?;
        let trust_store = match client_auth {
            ClientAuth::None => ssl.trust_store(None)?,
            _ => ssl.trust_store(Some(
                "ssl.clientAuth is need or want (need is the default), so client certificates \
                 are checked against the CA certificates in this PEM file; set it, or set \
                 ssl.clientAuth=none",
            ))?,
        };
        let protocols = ssl.protocols(warnings)?;
        let suites = ssl.suites(&protocols, warnings)?;
        Ok(Some(TlsConfig {
            addr,
            unified_client_port: self.unified.is_some(),
            key_store,
            trust_store,
            client_auth,
            protocols,
            suites,
            x509_super_user: self.super_user,
        }))
    }

    /// No secureClientPort: an address alone is an error (as in the reference), ssl
    /// keys are noted once as having nothing to act on.
    fn without_port(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        if let Some((line, _)) = self.address {
            return Err(ConfigError::Misplaced {
                line,
                key: "secureClientPortAddress".into(),
                why: "secureClientPortAddress is set but secureClientPort is not set".into(),
            });
        }
        if let Some((key, g)) = self.ssl.first() {
            warnings.push(format!(
                "config line {}: `{key}` (and any other ssl.* key) has no effect without \
                 secureClientPort",
                g.line
            ));
        }
        Ok(())
    }
}

/// The key names after a family's prefix that act (`ssl.` + these for the client
/// port, `ssl.quorum.` + these for the peer links).
const ACTING: &[&str] = &[
    "keyStore.location",
    "keyStore.type",
    "keyStore.password",
    "keyStore.passwordPath",
    "trustStore.location",
    "trustStore.type",
    "trustStore.password",
    "trustStore.passwordPath",
    "clientAuth",
    "protocol",
    "enabledProtocols",
    "ciphersuites",
];

/// One family of TLS keys as the reference's X509Util reads them: the client port's
/// (`ssl.`, ClientX509Util) or the peer links' (`ssl.quorum.`, QuorumX509Util),
/// the same names after the prefix.
#[derive(Debug)]
pub(super) struct SslKeys {
    prefix: &'static str,
    /// Acting keys given, by their name after the prefix.
    given: Vec<(&'static str, Given)>,
}

impl SslKeys {
    pub(super) fn new(prefix: &'static str) -> SslKeys {
        SslKeys {
            prefix,
            given: Vec::new(),
        }
    }

    /// Takes `<prefix>crl` / `<prefix>ocsp` (a warning when true: not enforced) and
    /// the acting keys; false for any other key.
    pub(super) fn apply(
        &mut self,
        e: &Entry,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ConfigError> {
        let Some(name) = e.key.strip_prefix(self.prefix) else {
            return Ok(false);
        };
        if name == "crl" || name == "ocsp" {
            if e.boolean()? {
                warnings.push(format!(
                    "config line {}: `{}=true` has no effect: corral does not check \
                     certificate revocation (CRL/OCSP); it is not enforced",
                    e.line, e.key
                ));
            }
            return Ok(true);
        }
        let Some(name) = ACTING.iter().find(|k| **k == name) else {
            return Ok(false);
        };
        let given = Given {
            line: e.line,
            value: e.value.clone(),
        };
        match self.given.iter_mut().find(|(k, _)| k == name) {
            Some((_, g)) => *g = given,
            None => self.given.push((name, given)),
        }
        Ok(true)
    }

    /// The full key name of `name` in this family.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn get(&self, name: &str) -> Option<&Given> {
        self.given.iter().find(|(k, _)| *k == name).map(|(_, g)| g)
    }

    /// The first key given (full name), for a line saying the family has no effect.
    pub(super) fn first(&self) -> Option<(String, &Given)> {
        self.given.first().map(|(k, g)| (self.key(k), g))
    }

    /// The key store, which `why` says is needed.
    pub(super) fn key_store(&self, why: &str) -> Result<PemStore, ConfigError> {
        let Some(location) = self
            .get("keyStore.location")
            .filter(|g| !g.value.is_empty())
        else {
            return Err(ConfigError::Missing {
                key: self.key("keyStore.location"),
                why: why.into(),
            });
        };
        self.store("keyStore", location)
    }

    /// The trust store; `needed` says why it must be set (corral has no default CA
    /// set to fall back on, unlike the JVM).
    pub(super) fn trust_store(
        &self,
        needed: Option<&str>,
    ) -> Result<Option<PemStore>, ConfigError> {
        match (self.get("trustStore.location")).filter(|g| !g.value.is_empty()) {
            Some(location) => self.store("trustStore", location).map(Some),
            None => match needed {
                None => Ok(None),
                Some(why) => Err(ConfigError::Missing {
                    key: self.key("trustStore.location"),
                    why: why.into(),
                }),
            },
        }
    }

    /// One store (`keyStore` or `trustStore`): its type (`<store>.type`, else from
    /// the file name as the reference guesses it) must be PEM.
    fn store(&self, store: &str, location: &Given) -> Result<PemStore, ConfigError> {
        let key = self.key(&format!("{store}.location"));
        let prefix = self.key(store);
        let type_key = format!("{prefix}.type");
        let path = PathBuf::from(&location.value);
        let given_type = self.get(&format!("{store}.type"));
        let kind = match given_type {
            Some(t) => StoreKind::from_type(&t.value).ok_or_else(|| bad(&type_key, t, BAD_TYPE))?,
            None => StoreKind::from_file_name(&location.value).ok_or_else(|| {
                bad(
                    &key,
                    location,
                    &format!(
                        "{type_key} is not set and the file name does not end in .pem, \
                         .jks, .p12 or .bcfks; set {type_key}=PEM"
                    ),
                )
            })?,
        };
        if kind != StoreKind::Pem {
            let (line, named_by) = match given_type {
                Some(t) => (t.line, type_key.clone()),
                None => (location.line, key.clone()),
            };
            return Err(ConfigError::Misplaced {
                line,
                key: named_by,
                why: kind.refusal(&prefix, store == "trustStore", &location.value),
            });
        }
        let secret = |k: &str| {
            self.get(&format!("{store}.{k}"))
                .filter(|g| !g.value.is_empty())
        };
        Ok(PemStore {
            key,
            path,
            password: secret("password").map(|g| Secret(g.value.clone())),
            password_path: secret("passwordPath").map(|g| PathBuf::from(&g.value)),
        })
    }

    pub(super) fn client_auth(&self) -> Result<ClientAuth, ConfigError> {
        let Some(g) = self.get("clientAuth").filter(|g| !g.value.is_empty()) else {
            return Ok(ClientAuth::Need);
        };
        match g.value.to_ascii_lowercase().as_str() {
            "need" => Ok(ClientAuth::Need),
            "want" => Ok(ClientAuth::Want),
            "none" => Ok(ClientAuth::None),
            _ => Err(bad(
                &self.key("clientAuth"),
                g,
                "expected need, want or none",
            )),
        }
    }

    /// enabledProtocols, else protocol alone (the reference enables only the
    /// context's protocol, TLSv1.2 by default).
    pub(super) fn protocols(
        &self,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<TlsProtocol>, ConfigError> {
        let (key, g) = match self.get("enabledProtocols") {
            Some(g) => (self.key("enabledProtocols"), g),
            None => match self.get("protocol") {
                Some(g) => (self.key("protocol"), g),
                None => return Ok(vec![TlsProtocol::V1_2]),
            },
        };
        let mut out = Vec::new();
        for name in g.value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "TLSv1.2" => out.push(TlsProtocol::V1_2),
                "TLSv1.3" => out.push(TlsProtocol::V1_3),
                // Java's "TLS" context: both versions.
                "TLS" => out.extend([TlsProtocol::V1_2, TlsProtocol::V1_3]),
                "TLSv1" | "TLSv1.1" | "SSLv3" => warnings.push(format!(
                    "config line {}: `{key}`: {name} is not offered (corral speaks TLSv1.2 \
                     and TLSv1.3; Java 17 disables {name} too)",
                    g.line
                )),
                _ => {
                    return Err(bad(
                        &key,
                        g,
                        &format!("unknown protocol `{name}` (expected TLSv1.2, TLSv1.3)"),
                    ))
                }
            }
        }
        out.dedup();
        if out.is_empty() {
            return Err(bad(&key, g, "no protocol corral speaks (TLSv1.2, TLSv1.3)"));
        }
        Ok(out)
    }

    /// ciphersuites (Java names) → the suites rustls offers, else the reference's
    /// defaults (plus the TLS 1.3 suites when TLSv1.3 is on).
    pub(super) fn suites(
        &self,
        protocols: &[TlsProtocol],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<TlsSuite>, ConfigError> {
        let key = self.key("ciphersuites");
        let Some(g) = self.get("ciphersuites") else {
            let mut v = DEFAULT_TLS12_SUITES.to_vec();
            if protocols.contains(&TlsProtocol::V1_3) {
                v.extend_from_slice(DEFAULT_TLS13_SUITES);
            }
            return Ok(v);
        };
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for name in g.value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match SUITES.iter().find(|(n, _)| *n == name) {
                Some((_, s)) if !out.contains(s) => out.push(*s),
                Some(_) => {}
                None if JAVA_ONLY_SUITES.contains(&name) => skipped.push(name),
                None => {
                    return Err(bad(
                        &key,
                        g,
                        &format!(
                            "unknown cipher suite `{name}` (expected Java names such as \
                             TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_AES_128_GCM_SHA256)"
                        ),
                    ))
                }
            }
        }
        if !skipped.is_empty() {
            warnings.push(format!(
                "config line {}: `{key}`: {} not offered (corral's TLS has no CBC, static RSA, \
                 DHE or static ECDH suites)",
                g.line,
                skipped.join(", ")
            ));
        }
        if !out.iter().any(|s| protocols.contains(&s.protocol())) {
            let names: Vec<&str> = protocols.iter().map(|p| p.java_name()).collect();
            return Err(bad(
                &key,
                g,
                &format!("no suite corral offers for {}", names.join(", ")),
            ));
        }
        Ok(out)
    }
}

const BAD_TYPE: &str = "expected PEM, JKS, PKCS12 or BCFKS";

fn bad(key: &str, g: &Given, why: &str) -> ConfigError {
    ConfigError::BadValue {
        line: g.line,
        key: key.to_string(),
        value: g.value.clone(),
        why: why.to_string(),
    }
}

/// A store type as the reference names them (`KeyStoreFileType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Pem,
    Jks,
    Pkcs12,
    Bcfks,
}

impl StoreKind {
    fn from_type(value: &str) -> Option<StoreKind> {
        match value.to_ascii_uppercase().as_str() {
            "PEM" => Some(StoreKind::Pem),
            "JKS" => Some(StoreKind::Jks),
            "PKCS12" => Some(StoreKind::Pkcs12),
            "BCFKS" => Some(StoreKind::Bcfks),
            _ => None,
        }
    }

    /// `KeyStoreFileType.fromFilename`: by extension (exact case, as there).
    fn from_file_name(path: &str) -> Option<StoreKind> {
        let ext = &path[path.rfind('.')?..];
        match ext {
            ".pem" => Some(StoreKind::Pem),
            ".jks" => Some(StoreKind::Jks),
            ".p12" => Some(StoreKind::Pkcs12),
            ".bcfks" => Some(StoreKind::Bcfks),
            _ => None,
        }
    }

    /// The one line that refuses a non-PEM store and says how to convert it.
    fn refusal(self, prefix: &str, trust: bool, file: &str) -> String {
        let (name, p12) = match self {
            StoreKind::Jks => ("JKS", format!("{file}.p12")),
            StoreKind::Bcfks => ("BCFKS", format!("{file}.p12")),
            _ => ("PKCS12", file.to_string()),
        };
        let to_p12 = match self {
            StoreKind::Pkcs12 => String::new(),
            _ => format!(
                "`keytool -importkeystore -srckeystore {file} -srcstoretype {name} \
                 -destkeystore {p12} -deststoretype PKCS12` then "
            ),
        };
        let (what, flag, out) = match trust {
            true => ("CA certificates", "-nokeys", "ca.pem"),
            false => ("key and certificate chain", "-nodes", "server.pem"),
        };
        format!(
            "{name} stores are not supported: corral reads PEM only; convert with \
             {to_p12}`openssl pkcs12 -in {p12} {flag} -out {out}` and set \
             {prefix}.location to the PEM file ({what}) and {prefix}.type=PEM"
        )
    }
}
