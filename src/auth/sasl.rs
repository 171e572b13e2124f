//! The server side of SASL DIGEST-MD5 (RFC 2831) as the reference runs it: the
//! JVM's DigestMD5Server created with protocol `zookeeper`, server name
//! `zk-sasl-md5` and no properties, behind `SaslServerCallbackHandler` (the client
//! port, [`CLIENT_PORT`]); or with protocol `zookeeper-quorum`, server name
//! `zk-quorum-sasl-md5`, behind `SaslQuorumServerCallbackHandler` (quorum SASL,
//! [`QUORUM`]). Pure: no IO, no clock; randomness for the nonce comes from the
//! caller. One `DigestServer` lives in each client connection that starts a SASL
//! exchange, on the shard core that owns the connection, and in each peer link being
//! authenticated, on the sequencer core. The learner's side of quorum SASL, the
//! client role, is `sasl_client`.
//!
//! ```text
//!  token 1 (ignored, usually empty) ─► challenge: realm, nonce, charset, algorithm
//!  token 2 (digest-response)        ─► checks, password lookup, response digest
//!                                   ─► rspauth=… and the authenticated user
//!  any later token                  ─► error (the exchange is over)
//! ```
//!
//! What the reference offers and checks (measured against 3.8.0 on Java 17): the
//! challenge is `realm="zk-sasl-md5",nonce="<40 chars>",charset=utf-8,algorithm=md5-sess`
//! (no `qop`, which means `auth` only); the response must name that realm, the
//! nonce, a cnonce, `digest-uri` `zookeeper/zk-sasl-md5` (any case), qop `auth` if
//! any, and carry the response digest in lowercase hex. Quorum SASL is the same
//! with its own realm and digest-uri; there the authzid, if given, must be the user
//! name (SaslQuorumServerCallbackHandler). Upstream 3.8.0 also checks the host of a
//! `service/host@REALM` user against the `server.N` hosts; the Debian package's
//! 3.8.0 (with the CVE-2023-44981 fix, ZOOKEEPER-4753) does that for Kerberos logins
//! only, and corral, DIGEST-MD5 only, follows the package.

use md5::{Digest as _, Md5};
use thiserror::Error;

/// The realm the reference offers on the client port: its server name.
pub const SASL_REALM: &str = "zk-sasl-md5";
/// The digest-uri a client must use: protocol `/` server name.
pub const SASL_DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

/// Which DIGEST-MD5 service an exchange belongs to.
#[derive(Debug, PartialEq, Eq)]
pub struct DigestService {
    /// The realm the server offers (its server name).
    pub realm: &'static str,
    /// The digest-uri the client must name: protocol `/` server name.
    pub digest_uri: &'static str,
    /// How the authenticated user's id is settled.
    pub authz: Authz,
}

/// How a DIGEST-MD5 login's id is settled once the digest matches.
#[derive(Debug, PartialEq, Eq)]
pub enum Authz {
    /// The client port: the user name through the Kerberos name rules
    /// (`authorization_id`); the authzid only enters the digest.
    KerberosName,
    /// Quorum SASL: an authzid other than the user name is refused.
    SameAsAuthzid,
}

/// Client SASL on the client port (`SaslServerCallbackHandler`).
pub const CLIENT_PORT: DigestService = DigestService {
    realm: SASL_REALM,
    digest_uri: SASL_DIGEST_URI,
    authz: Authz::KerberosName,
};

/// Quorum SASL between members (`SaslQuorumServerCallbackHandler`).
pub const QUORUM: DigestService = DigestService {
    realm: "zk-quorum-sasl-md5",
    digest_uri: "zookeeper-quorum/zk-quorum-sasl-md5",
    authz: Authz::SameAsAuthzid,
};
/// Largest client token taken (the JVM's MAX_RESPONSE_LENGTH); longer fails.
pub const SASL_RESPONSE_BYTES_MAX: usize = 4096;
/// Random bytes in a nonce; base64 makes 40 characters of them, as the JVM does.
pub const NONCE_RANDOM_BYTES: usize = 30;
/// The nonce count the server expects (it takes no reauthentication).
const NONCE_COUNT: u32 = 1;

/// Why a DIGEST-MD5 exchange failed. Each ends the login: the connection gets
/// AuthFailed and closes (unless failed clients are allowed).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SaslError {
    #[error("DIGEST-MD5 token of {bytes} bytes is over {SASL_RESPONSE_BYTES_MAX}")]
    TooLong { bytes: usize },
    #[error("DIGEST-MD5 exchange already ended")]
    Finished,
    #[error("DIGEST-MD5 response syntax: {0}")]
    Syntax(String),
    #[error("DIGEST-MD5 response has more than one `{0}` directive")]
    Duplicate(String),
    #[error("DIGEST-MD5 response lacks `{0}`")]
    Missing(&'static str),
    #[error("DIGEST-MD5 response has a bad `{directive}` value `{value}`")]
    BadValue {
        directive: &'static str,
        value: String,
    },
    #[error("DIGEST-MD5 response names realm `{got}`; the server offered {offered}")]
    Realm { got: String, offered: &'static str },
    #[error("DIGEST-MD5 response carries another nonce than the challenge")]
    Nonce,
    #[error("DIGEST-MD5 response digest-uri `{got}`; expected {expected}")]
    DigestUri { got: String, expected: &'static str },
    #[error("DIGEST-MD5 user `{0}` is not in the JAAS Server section")]
    UnknownUser(String),
    #[error("DIGEST-MD5 user name `{0}` is not a valid principal name")]
    BadUserName(String),
    #[error("DIGEST-MD5 response digest does not match (wrong password?)")]
    Mismatch,
    #[error("DIGEST-MD5 user `{user}` asked to act as `{authzid}`: not authorized")]
    Unauthorized { user: String, authzid: String },
    #[error("DIGEST-MD5 challenge lacks `{0}`")]
    ChallengeMissing(&'static str),
    #[error("DIGEST-MD5 challenge has a bad `{directive}` value `{value}`")]
    ChallengeBadValue {
        directive: &'static str,
        value: String,
    },
    #[error("DIGEST-MD5 server's rspauth does not prove it knows the password")]
    BadRspauth,
}

/// What one step of the exchange answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this token; the client answers it.
    Challenge(Vec<u8>),
    /// The client proved `user`'s password: send `rspauth`, and the connection now
    /// holds the id `sasl:<user>`.
    Authenticated { rspauth: Vec<u8>, user: String },
}

/// One connection's DIGEST-MD5 exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestServer {
    service: &'static DigestService,
    step: Step,
}

impl Default for DigestServer {
    fn default() -> DigestServer {
        DigestServer::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Start,
    /// The challenge went out with this nonce.
    Challenged {
        nonce: String,
    },
    /// Over, successfully or not: any further token fails.
    Done,
}

/// The directives either role reads; the others are ignored. Note the JVM
/// looks for `nonce-count`, not the RFC's `nc`, so a client's `nc` is ignored.
#[derive(Default)]
pub(super) struct Directives {
    pub(super) username: Option<Vec<u8>>,
    pub(super) realm: Option<Vec<u8>>,
    pub(super) nonce: Option<Vec<u8>>,
    pub(super) cnonce: Option<Vec<u8>>,
    pub(super) nonce_count: Option<Vec<u8>>,
    pub(super) qop: Option<Vec<u8>>,
    pub(super) digest_uri: Option<Vec<u8>>,
    pub(super) response: Option<Vec<u8>>,
    pub(super) maxbuf: Option<Vec<u8>>,
    pub(super) charset: Option<Vec<u8>>,
    pub(super) cipher: Option<Vec<u8>>,
    pub(super) authzid: Option<Vec<u8>>,
    /// A challenge's (the client role reads it).
    pub(super) algorithm: Option<Vec<u8>>,
    /// A challenge's `rspauth` (the client role reads it).
    pub(super) rspauth: Option<Vec<u8>>,
}

impl Directives {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Vec<u8>>> {
        Some(match key.to_ascii_lowercase().as_str() {
            "username" => &mut self.username,
            "realm" => &mut self.realm,
            "nonce" => &mut self.nonce,
            "cnonce" => &mut self.cnonce,
            "nonce-count" => &mut self.nonce_count,
            "qop" => &mut self.qop,
            "digest-uri" => &mut self.digest_uri,
            "response" => &mut self.response,
            "maxbuf" => &mut self.maxbuf,
            "charset" => &mut self.charset,
            "cipher" => &mut self.cipher,
            "authzid" => &mut self.authzid,
            "algorithm" => &mut self.algorithm,
            "rspauth" => &mut self.rspauth,
            _ => return None,
        })
    }

    fn set(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), SaslError> {
        let key = String::from_utf8_lossy(key);
        if let Some(slot) = self.slot(&key) {
            if slot.is_some() {
                return Err(SaslError::Duplicate(key.into_owned()));
            }
            *slot = Some(value);
        }
        Ok(())
    }
}

impl DigestServer {
    /// An exchange on the client port.
    pub fn new() -> Self {
        DigestServer::for_service(&CLIENT_PORT)
    }

    /// An exchange for `service` (the client port's or quorum SASL's).
    pub fn for_service(service: &'static DigestService) -> Self {
        DigestServer {
            service,
            step: Step::Start,
        }
    }

    /// One client token. `random` fills the nonce's random bytes; `password` finds a
    /// user's password (the JAAS `Server` section).
    pub fn evaluate(
        &mut self,
        token: &[u8],
        random: &mut dyn FnMut(&mut [u8]),
        password: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Outcome, SaslError> {
        if token.len() > SASL_RESPONSE_BYTES_MAX {
            return Err(SaslError::TooLong { bytes: token.len() });
        }
        match std::mem::replace(&mut self.step, Step::Done) {
            // A first token is ignored (no "subsequent authentication"), as there.
            Step::Start => {
                let nonce = make_nonce(random);
                let challenge = challenge(self.service, &nonce);
                self.step = Step::Challenged { nonce };
                Ok(Outcome::Challenge(challenge))
            }
            Step::Challenged { nonce } => verify(self.service, token, &nonce, password),
            Step::Done => Err(SaslError::Finished),
        }
    }

    /// Whether the exchange is over (successfully or not).
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}

/// 30 random bytes in base64: 40 characters, no padding, nothing to escape (the
/// JVM's nonces and cnonces alike).
pub(super) fn make_nonce(random: &mut dyn FnMut(&mut [u8])) -> String {
    use base64::Engine as _;
    let mut raw = [0u8; NONCE_RANDOM_BYTES];
    random(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn challenge(service: &DigestService, nonce: &str) -> Vec<u8> {
    let realm = service.realm;
    format!("realm=\"{realm}\",nonce=\"{nonce}\",charset=utf-8,algorithm=md5-sess").into_bytes()
}

/// What the response checks leave to hash: the client's values, decoded (the
/// client role fills one with its own).
pub(super) struct Checked {
    pub(super) username: String,
    pub(super) realm: String,
    pub(super) cnonce: Vec<u8>,
    pub(super) qop: String,
    pub(super) digest_uri: String,
    pub(super) response: Vec<u8>,
    pub(super) authzid: Option<Vec<u8>>,
}

/// The second step: the digest-response, checked in the JVM's order, then the
/// digest itself.
fn verify(
    service: &DigestService,
    token: &[u8],
    nonce: &str,
    password: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, SaslError> {
    let d = parse_directives(token)?;
    let c = check_directives(service, d, nonce)?;
    let user = match service.authz {
        Authz::KerberosName => authorization_id(&c.username)?,
        Authz::SameAsAuthzid => c.username.clone(),
    };
    let Some(pw) = password(&c.username) else {
        return Err(SaslError::UnknownUser(c.username));
    };
    let expected = response_value("AUTHENTICATE", &c, nonce, &pw);
    if !constant_time_eq(&c.response, expected.as_bytes()) {
        return Err(SaslError::Mismatch);
    }
    if let (Authz::SameAsAuthzid, Some(z)) = (&service.authz, &c.authzid) {
        if z.as_slice() != c.username.as_bytes() {
            return Err(SaslError::Unauthorized {
                user: c.username,
                authzid: text(z),
            });
        }
    }
    let rspauth = format!("rspauth={}", response_value("", &c, nonce, &pw));
    Ok(Outcome::Authenticated {
        rspauth: rspauth.into_bytes(),
        user,
    })
}

pub(super) fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn check_directives(
    service: &DigestService,
    d: Directives,
    nonce: &str,
) -> Result<Checked, SaslError> {
    if let Some(cs) = &d.charset {
        if cs.as_slice() != b"utf-8" {
            return Err(bad("charset", cs));
        }
    }
    if let Some(mb) = &d.maxbuf {
        text(mb).parse::<i32>().map_err(|_| bad("maxbuf", mb))?;
    }
    let username = text(&d.username.ok_or(SaslError::Missing("username"))?);
    let realm = d.realm.as_deref().map(text).unwrap_or_default();
    if realm != service.realm {
        return Err(SaslError::Realm {
            got: realm,
            offered: service.realm,
        });
    }
    if d.nonce.ok_or(SaslError::Missing("nonce"))? != nonce.as_bytes() {
        return Err(SaslError::Nonce);
    }
    let cnonce = d.cnonce.ok_or(SaslError::Missing("cnonce"))?;
    if let Some(nc) = &d.nonce_count {
        if u32::from_str_radix(&text(nc), 16).ok() != Some(NONCE_COUNT) {
            return Err(bad("nonce-count", nc));
        }
    }
    let qop = d.qop.as_deref().map(text).unwrap_or_else(|| "auth".into());
    if qop != "auth" {
        // auth-int and auth-conf are not offered; anything else is not a qop.
        return Err(SaslError::BadValue {
            directive: "qop",
            value: qop,
        });
    }
    let digest_uri = d.digest_uri.as_deref().map(text).unwrap_or_default();
    if !digest_uri.eq_ignore_ascii_case(service.digest_uri) {
        return Err(SaslError::DigestUri {
            got: digest_uri,
            expected: service.digest_uri,
        });
    }
    let response = d.response.ok_or(SaslError::Missing("response"))?;
    Ok(Checked {
        username,
        realm,
        cnonce,
        qop,
        digest_uri,
        response,
        authzid: d.authzid,
    })
}

fn bad(directive: &'static str, v: &[u8]) -> SaslError {
    SaslError::BadValue {
        directive,
        value: text(v),
    }
}

/// The id the session gets, as `SaslServerCallbackHandler` maps the
/// authentication id through Kerberos name rules: a plain name is itself, and so
/// is a `name[/host]@REALM` principal (corral keeps it whole; the reference on a
/// host without a Kerberos default realm falls back to the client's authzid,
/// which would let the client pick its own id). A name with `@` that is not such a
/// principal makes the reference drop the connection: here, a failure.
fn authorization_id(username: &str) -> Result<String, SaslError> {
    if !username.contains('@') || is_principal(username) {
        Ok(username.to_string())
    } else {
        Err(SaslError::BadUserName(username.to_string()))
    }
}

/// `service[/host]@realm`, no other `/` or `@` (the reference's KerberosName form).
pub fn is_principal(name: &str) -> bool {
    let Some((left, realm)) = name.split_once('@') else {
        return false;
    };
    if realm.contains(['/', '@']) {
        return false;
    }
    match left.split_once('/') {
        Some((service, host)) => !service.contains('@') && !host.contains(['/', '@']),
        None => true,
    }
}

/// Bytes of a user name, realm or password for hashing: ISO-8859-1 when every
/// character fits, UTF-8 otherwise (RFC 2831 §2.1.2.1 as the JVM does it).
fn latin1_or_utf8(s: &str) -> Vec<u8> {
    if s.chars().all(|c| (c as u32) <= 0xFF) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The response-value (RFC 2831 §2.1.2.1) for qop `auth`: `method` is
/// `AUTHENTICATE` for the client's digest and empty for the server's rspauth.
pub(super) fn response_value(method: &str, c: &Checked, nonce: &str, password: &str) -> String {
    let a2 = format!("{method}:{}", c.digest_uri);
    let mut user_realm_pw = latin1_or_utf8(&c.username);
    user_realm_pw.push(b':');
    user_realm_pw.extend(latin1_or_utf8(&c.realm));
    user_realm_pw.push(b':');
    user_realm_pw.extend(latin1_or_utf8(password));
    let mut a1 = Md5::digest(&user_realm_pw).to_vec();
    a1.push(b':');
    a1.extend_from_slice(nonce.as_bytes());
    a1.push(b':');
    a1.extend_from_slice(&c.cnonce);
    if let Some(authzid) = &c.authzid {
        a1.push(b':');
        a1.extend_from_slice(authzid);
    }
    let mut kd = hex(&Md5::digest(&a1)).into_bytes();
    kd.push(b':');
    kd.extend_from_slice(nonce.as_bytes());
    kd.extend_from_slice(format!(":{NONCE_COUNT:08x}:").as_bytes());
    kd.extend_from_slice(&c.cnonce);
    kd.push(b':');
    kd.extend_from_slice(c.qop.as_bytes());
    kd.push(b':');
    kd.extend_from_slice(hex(&Md5::digest(a2.as_bytes())).as_bytes());
    hex(&Md5::digest(&kd))
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_lws(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && is_lws(buf[i]) {
        i += 1;
    }
    i
}

/// `key=value` pairs separated by commas and whitespace, values bare or quoted
/// (with `\` escapes), keys case-insensitive, as the JVM's `parseDirectives` reads
/// them. A directive the server knows may appear once.
pub(super) fn parse_directives(buf: &[u8]) -> Result<Directives, SaslError> {
    let syntax = |why: &str| SaslError::Syntax(why.to_string());
    let mut d = Directives::default();
    let mut i = skip_lws(buf, 0);
    while i < buf.len() {
        // A key, up to `=`.
        let start = i;
        while i < buf.len() && !matches!(buf[i], b'=' | b',') && !is_lws(buf[i]) {
            i += 1;
        }
        let key = &buf[start..i];
        i = skip_lws(buf, i);
        if key.is_empty() {
            if i < buf.len() && buf[i] == b',' {
                // An empty element.
                i = skip_lws(buf, i + 1);
                continue;
            }
            return Err(syntax("empty directive key"));
        }
        if i >= buf.len() || buf[i] != b'=' {
            return Err(syntax("`=` expected after a key"));
        }
        i = skip_lws(buf, i + 1);
        if i >= buf.len() {
            return Err(syntax("a directive without a value"));
        }
        let (value, next) = if buf[i] == b'"' {
            quoted_value(buf, i + 1)?
        } else {
            bare_value(buf, i)
        };
        d.set(key, value)?;
        i = next;
    }
    Ok(d)
}

/// A quoted value from just after its opening quote; returns it and where the
/// next directive starts (past the separator).
fn quoted_value(buf: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), SaslError> {
    let mut v = Vec::new();
    loop {
        match buf.get(i) {
            None => return Err(SaslError::Syntax("a quote is not closed".into())),
            Some(b'\\') => {
                let Some(&c) = buf.get(i + 1) else {
                    return Err(SaslError::Syntax("a quote is not closed".into()));
                };
                v.push(c);
                i += 2;
            }
            Some(b'"') => break,
            Some(&c) => {
                v.push(c);
                i += 1;
            }
        }
    }
    i += 1;
    if i < buf.len() && !(buf[i] == b',' || is_lws(buf[i])) {
        return Err(SaslError::Syntax(
            "a comma or whitespace must follow a quoted value".into(),
        ));
    }
    Ok((v, skip_separator(buf, i)))
}

fn bare_value(buf: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let start = i;
    while i < buf.len() && buf[i] != b',' && !is_lws(buf[i]) {
        i += 1;
    }
    (buf[start..i].to_vec(), skip_separator(buf, i))
}

/// Past one comma or whitespace run that ends a value, and whitespace after it.
fn skip_separator(buf: &[u8], i: usize) -> usize {
    if i < buf.len() {
        skip_lws(buf, i + 1)
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(fill: u8) -> impl FnMut(&mut [u8]) {
        move |b: &mut [u8]| b.fill(fill)
    }

    fn users(u: &str) -> Option<String> {
        match u {
            "bob" => Some("bobsecret".into()),
            "chris" => Some("secret".into()),
            "zoë" => Some("pässword".into()),
            _ => None,
        }
    }

    /// A client's digest-response computed independently of `response_value`,
    /// straight from RFC 2831's formulas.
    fn client_response(
        user: &str,
        pw: &str,
        nonce: &str,
        cnonce: &str,
        authzid: Option<&str>,
    ) -> String {
        let h = |b: &[u8]| Md5::digest(b).to_vec();
        let hx = |b: &[u8]| hex(&h(b));
        let mut a1 = h(format!("{user}:{SASL_REALM}:{pw}").as_bytes());
        a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
        if let Some(z) = authzid {
            a1.extend_from_slice(format!(":{z}").as_bytes());
        }
        let a2 = format!("AUTHENTICATE:{SASL_DIGEST_URI}");
        let resp = hx(format!(
            "{}:{nonce}:00000001:{cnonce}:auth:{}",
            hx(&a1),
            hx(a2.as_bytes())
        )
        .as_bytes());
        let mut s = format!(
            "charset=utf-8,username=\"{user}\",realm=\"{SASL_REALM}\",nonce=\"{nonce}\",\
             nc=00000001,cnonce=\"{cnonce}\",digest-uri=\"{SASL_DIGEST_URI}\",\
             maxbuf=65536,response={resp},qop=auth"
        );
        if let Some(z) = authzid {
            s.push_str(&format!(",authzid=\"{z}\""));
        }
        s
    }

    fn challenged() -> (DigestServer, String) {
        let mut s = DigestServer::new();
        let Outcome::Challenge(c) = s.evaluate(b"", &mut fixed(7), &users).unwrap() else {
            panic!("no challenge");
        };
        let nonce = match &s.step {
            Step::Challenged { nonce } => nonce.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(nonce.len(), 40);
        assert_eq!(
            String::from_utf8(c).unwrap(),
            format!("realm=\"zk-sasl-md5\",nonce=\"{nonce}\",charset=utf-8,algorithm=md5-sess")
        );
        (s, nonce)
    }

    #[test]
    fn a_correct_response_authenticates_and_proves_the_server() {
        let (mut s, nonce) = challenged();
        let resp = client_response("bob", "bobsecret", &nonce, "cn0nce", None);
        let out = s.evaluate(resp.as_bytes(), &mut fixed(0), &users).unwrap();
        let Outcome::Authenticated { rspauth, user } = out else {
            panic!("{out:?}")
        };
        assert_eq!(user, "bob");
        // rspauth is the same digest with A2 = ":digest-uri".
        let h = |b: &[u8]| hex(&Md5::digest(b));
        let mut a1 = Md5::digest(b"bob:zk-sasl-md5:bobsecret").to_vec();
        a1.extend_from_slice(format!(":{nonce}:cn0nce").as_bytes());
        let want = h(format!(
            "{}:{nonce}:00000001:cn0nce:auth:{}",
            h(&a1),
            h(b":zookeeper/zk-sasl-md5")
        )
        .as_bytes());
        assert_eq!(
            String::from_utf8(rspauth).unwrap(),
            format!("rspauth={want}")
        );
        // The exchange is over.
        assert_eq!(
            s.evaluate(b"", &mut fixed(0), &users),
            Err(SaslError::Finished)
        );
    }

    #[test]
    fn the_rfc_2831_example_digest() {
        // RFC 2831 §4's IMAP example: the same formulas, another realm and URI.
        let c = Checked {
            username: "chris".into(),
            realm: "elwood.innosoft.com".into(),
            cnonce: b"OA6MHXh6VqTrRk".to_vec(),
            qop: "auth".into(),
            digest_uri: "imap/elwood.innosoft.com".into(),
            response: Vec::new(),
            authzid: None,
        };
        let nonce = "OA6MG9tEQGm2hh";
        assert_eq!(
            response_value("AUTHENTICATE", &c, nonce, "secret"),
            "d388dad90d4bbd760a152321f2143af7"
        );
        assert_eq!(
            response_value("", &c, nonce, "secret"),
            "ea40f60335c427b5527b84dbabcdfffd"
        );
    }

    #[test]
    fn authzid_and_latin1_names_enter_the_digest() {
        let (mut s, nonce) = challenged();
        let resp = client_response("bob", "bobsecret", &nonce, "x", Some("bob"));
        assert!(matches!(
            s.evaluate(resp.as_bytes(), &mut fixed(0), &users),
            Ok(Outcome::Authenticated { .. })
        ));
        // ISO-8859-1 bytes of "zoë:zk-sasl-md5:pässword" are what the client hashes.
        let (mut s, nonce) = challenged();
        let mut a1 = Md5::digest(b"zo\xeb:zk-sasl-md5:p\xe4ssword").to_vec();
        a1.extend_from_slice(format!(":{nonce}:c").as_bytes());
        let h = |b: &[u8]| hex(&Md5::digest(b));
        let r = h(format!(
            "{}:{nonce}:00000001:c:auth:{}",
            h(&a1),
            h(b"AUTHENTICATE:ZooKeeper/ZK-SASL-MD5")
        )
        .as_bytes());
        let resp = format!(
            "username=\"zoë\",realm=\"zk-sasl-md5\",nonce=\"{nonce}\",cnonce=\"c\",\
             digest-uri=\"ZooKeeper/ZK-SASL-MD5\",response={r}"
        );
        let out = s.evaluate(resp.as_bytes(), &mut fixed(0), &users).unwrap();
        assert!(
            matches!(out, Outcome::Authenticated { ref user, .. } if user == "zoë"),
            "{out:?}"
        );
    }

    #[test]
    fn wrong_password_unknown_user_and_bad_directives_fail() {
        let nonce_of = |s: &DigestServer| match &s.step {
            Step::Challenged { nonce } => nonce.clone(),
            _ => unreachable!(),
        };
        type MakeResponse = Box<dyn Fn(&str) -> String>;
        let cases: Vec<(MakeResponse, SaslError)> = vec![
            (
                Box::new(|n| client_response("bob", "wrong", n, "c", None)),
                SaslError::Mismatch,
            ),
            (
                Box::new(|n| client_response("eve", "x", n, "c", None)),
                SaslError::UnknownUser("eve".into()),
            ),
            (
                Box::new(|n| client_response("bob", "bobsecret", n, "c", None).replace(n, "other")),
                SaslError::Nonce,
            ),
            (
                Box::new(|n| {
                    client_response("bob", "bobsecret", n, "c", None)
                        .replace("realm=\"zk-sasl-md5\",", "")
                }),
                SaslError::Realm {
                    got: String::new(),
                    offered: SASL_REALM,
                },
            ),
            (
                Box::new(|n| {
                    client_response("bob", "bobsecret", n, "c", None).replace("zookeeper/", "ldap/")
                }),
                SaslError::DigestUri {
                    got: "ldap/zk-sasl-md5".into(),
                    expected: SASL_DIGEST_URI,
                },
            ),
            (
                Box::new(|n| {
                    client_response("bob", "bobsecret", n, "c", None)
                        .replace("qop=auth", "qop=auth-conf")
                }),
                SaslError::BadValue {
                    directive: "qop",
                    value: "auth-conf".into(),
                },
            ),
            (
                Box::new(|n| {
                    client_response("bob", "bobsecret", n, "c", None)
                        .replace("charset=utf-8", "charset=latin1")
                }),
                SaslError::BadValue {
                    directive: "charset",
                    value: "latin1".into(),
                },
            ),
            (
                Box::new(|n| {
                    format!(
                        "{},username=\"x\"",
                        client_response("bob", "bobsecret", n, "c", None)
                    )
                }),
                SaslError::Duplicate("username".into()),
            ),
            (
                Box::new(|n| format!("username=\"bob\",realm=\"zk-sasl-md5\",nonce=\"{n}\"")),
                SaslError::Missing("cnonce"),
            ),
            (
                Box::new(|n| {
                    format!(
                        "{},nonce-count=00000002",
                        client_response("bob", "bobsecret", n, "c", None)
                    )
                }),
                SaslError::BadValue {
                    directive: "nonce-count",
                    value: "00000002".into(),
                },
            ),
            (
                Box::new(|_| "username=\"a@b@c\",realm=\"zk-sasl-md5\"".into()),
                SaslError::Missing("nonce"),
            ),
            (
                Box::new(|_| "username=\"open".into()),
                SaslError::Syntax("a quote is not closed".into()),
            ),
            (
                Box::new(|_| "=x".into()),
                SaslError::Syntax("empty directive key".into()),
            ),
            (
                Box::new(|_| "username".into()),
                SaslError::Syntax("`=` expected after a key".into()),
            ),
        ];
        for (make, want) in cases {
            let (mut s, _) = challenged();
            let resp = make(&nonce_of(&s));
            assert_eq!(
                s.evaluate(resp.as_bytes(), &mut fixed(0), &users),
                Err(want),
                "{resp}"
            );
            assert!(s.is_done(), "a failed step ends the exchange");
        }
    }

    #[test]
    fn a_malformed_principal_fails_after_the_checks() {
        let (mut s, nonce) = challenged();
        let resp = client_response("a@b@c", "x", &nonce, "c", None);
        assert_eq!(
            s.evaluate(resp.as_bytes(), &mut fixed(0), &users),
            Err(SaslError::BadUserName("a@b@c".into()))
        );
        assert!(is_principal("zk/host@REALM"));
        assert!(is_principal("bob@REALM"));
        assert!(is_principal("@"));
        assert!(!is_principal("bob"));
        assert!(!is_principal("a/b/c@R"));
        assert!(!is_principal("a@b/c"));
    }

    #[test]
    fn oversized_tokens_fail_and_hostile_bytes_never_panic() {
        let mut s = DigestServer::new();
        let big = vec![b'a'; SASL_RESPONSE_BYTES_MAX + 1];
        assert_eq!(
            s.evaluate(&big, &mut fixed(0), &users),
            Err(SaslError::TooLong {
                bytes: SASL_RESPONSE_BYTES_MAX + 1
            })
        );
        // Every prefix of a valid response, and some junk, fail cleanly.
        let (_, nonce) = challenged();
        let good = client_response("bob", "bobsecret", &nonce, "c", None);
        let mut inputs: Vec<Vec<u8>> = (0..good.len())
            .map(|n| good.as_bytes()[..n].to_vec())
            .collect();
        inputs.push(vec![0xff, b'=', b'"', b'\\']);
        inputs.push(b",,, ,\t\r\n".to_vec());
        inputs.push(b"a=\"b\"c".to_vec());
        for input in inputs {
            let mut s = DigestServer {
                service: &CLIENT_PORT,
                step: Step::Challenged {
                    nonce: nonce.clone(),
                },
            };
            let _ = s.evaluate(&input, &mut fixed(0), &users);
            assert!(s.is_done());
        }
    }

    #[test]
    fn directives_parse_as_the_jvm_reads_them() {
        let d = parse_directives(b" Username = \"b\\\"o b\" , ,realm=zk  qop=auth,x-unknown=\"1\"")
            .unwrap();
        assert_eq!(d.username.as_deref(), Some(&b"b\"o b"[..]));
        assert_eq!(d.realm.as_deref(), Some(&b"zk"[..]));
        assert_eq!(d.qop.as_deref(), Some(&b"auth"[..]));
        assert!(parse_directives(b"a=").is_err());
        assert!(parse_directives(b"").is_ok());
    }
}
