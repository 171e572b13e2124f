//! Quorum TLS (sslQuorum, portUnification) on the peer links: the rustls client and
//! server configs built once at start-up from the ssl.quorum.* stores, the host check
//! of the reference's ZKTrustManager, and [`PeerStream`], what a link reads and
//! writes (plaintext or TLS). Built on the main thread (`PeerTls::load`); the dial and
//! accept steps run in the peer transport's tasks on the sequencer core.
//!
//! ```text
//!  dial:   TCP connect ─ sslQuorum? ─ TLS handshake (our cert shown, theirs chained
//!          to the trust store) ─ host check ─► PeerStream::Tls   (else ::Plain)
//!  accept: TCP accept ─ portUnification? first bytes tell TLS from plaintext ─
//!          TLS handshake (their cert asked per clientAuth) ─ host check ─► PeerStream
//! ```
//!
//! As the reference, both ends check the other's certificate against the address
//! of the link (ssl.quorum.hostnameVerification, default true): the IP address in a
//! SAN, else a DNS SAN naming one of the host names the `server.N` lines give for
//! that IP. The reference also tries a reverse DNS lookup of the IP and, for a
//! certificate without SANs, its CN; corral does neither (no DNS on the sequencer
//! core). The bytes after the handshake are the plaintext protocol's.

use super::PeerAddr;
use crate::config::QuorumTlsConfig;
use crate::server::tls::{
    load_key_store, load_roots, provider, server_config, starts_with_tls, version, KeyStore,
};
use futures::io::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long a portUnification port waits for a link's first bytes before taking it
/// as plaintext (the reference's ssl.quorum.handshakeDetectionTimeoutMillis).
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TLS handshake on a peer link may take, either end (the reference's
/// connect timeout, cnxTimeout, bounds its handshakes too).
pub const PEER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS handshakes in progress on this member's election and quorum ports together.
/// A link accepted beyond it is dropped: each handshake signs on the sequencer core,
/// so a flood of ClientHellos must not starve the quorum's own work. Members dial a
/// few links each; 8 is far above what an ensemble needs at once.
pub const PEER_HANDSHAKES_MAX: usize = 8;

/// A peer link's byte stream.
pub enum PeerStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

impl PeerStream {
    /// The socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            PeerStream::Plain(s) => s,
            PeerStream::Tls(s) => s.get_ref().0,
        }
    }
}

/// Why an accepted link did not become a peer link.
#[derive(Debug)]
pub enum AcceptError {
    /// It closed without sending a byte (a port probe).
    ClosedSilent,
    /// Refused, and why (for one warning line).
    Refused(String),
}

/// An accepted link's stream, and whether it was taken as plaintext only because it
/// sent nothing for `DETECT_TIMEOUT` (rare enough for the caller to say: a member's
/// own links send at once, a port probe closes).
pub struct Accepted {
    pub stream: PeerStream,
    pub silent: bool,
}

impl Accepted {
    fn plain(stream: TcpStream, silent: bool) -> Accepted {
        Accepted {
            stream: PeerStream::Plain(stream),
            silent,
        }
    }
}

/// This member's quorum TLS.
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    dial_tls: bool,
    accept_plaintext: bool,
    hostname_verification: bool,
    /// Accepted links in their TLS handshake (bounded by `PEER_HANDSHAKES_MAX`).
    handshakes: Cell<usize>,
}

/// One accepted handshake's place under `PEER_HANDSHAKES_MAX`, given back on drop.
struct HandshakeSlot<'a>(&'a Cell<usize>);

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl PeerTls {
    /// Reads the stores and builds both configs; the error names the key and file.
    pub fn load(cfg: &QuorumTlsConfig) -> Result<PeerTls, String> {
        let provider = Arc::new(provider(&cfg.suites));
        let versions: Vec<_> = cfg.protocols.iter().map(|p| version(*p)).collect();
        let key_store = load_key_store(&cfg.key_store).map_err(|e| e.to_string())?;
        let roots = load_roots(&cfg.trust_store).map_err(|e| e.to_string())?;
        let ours = KeyStore {
            chain: key_store.chain.clone(),
            key: key_store.key.clone_key(),
            password_unused: key_store.password_unused,
        };
        let server = server_config(
            &provider,
            &cfg.protocols,
            (&cfg.key_store, ours),
            Some(roots.clone()),
            cfg.client_auth,
        )
        .map_err(|e| format!("quorum TLS: {e}"))?;
        let setup = |e: rustls::Error| format!("quorum TLS: {e}");
        let key_err = |e: rustls::Error| {
            format!(
                "{}={}: its private key cannot serve TLS: {e}",
                cfg.key_store.key,
                cfg.key_store.path.display()
            )
        };
        let chain = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("quorum TLS: {e}"))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
            .with_client_auth_cert(key_store.chain, key_store.key)
            .map_err(key_err)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            dial_tls: cfg.dial_tls,
            accept_plaintext: cfg.accept_plaintext,
            hostname_verification: cfg.hostname_verification,
            handshakes: Cell::new(0),
        })
    }

    /// The dialling side of a link to `addr`: with sslQuorum a TLS handshake
    /// (bounded by `PEER_HANDSHAKE_TIMEOUT`), then the host check of the other
    /// member's certificate. The error says why the link is refused.
    pub async fn dial(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        members: &BTreeMap<u64, PeerAddr>,
    ) -> Result<PeerStream, String> {
        if !self.dial_tls {
            return Ok(PeerStream::Plain(stream));
        }
        let name = ServerName::IpAddress(addr.ip().into());
        let handshake = async { Ok(self.connector.connect(name, stream).await) };
        let tls = match glommio::timer::timeout(PEER_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(format!("TLS handshake with {addr} failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "no TLS handshake with {addr} within {PEER_HANDSHAKE_TIMEOUT:?}"
                ))
            }
        };
        if self.hostname_verification {
            let certs = tls.get_ref().1.peer_certificates();
            check_host(certs, addr.ip(), members).map_err(|e| format!("{addr}: {e}"))?;
        }
        Ok(PeerStream::Tls(Box::new(tls.into())))
    }

    /// The accepting side: with portUnification a link whose first bytes are not a
    /// TLS handshake's (or that sends nothing for `DETECT_TIMEOUT`) stays plaintext;
    /// otherwise a TLS handshake (from its first bytes on, at most
    /// `PEER_HANDSHAKES_MAX` at once, each bounded by `PEER_HANDSHAKE_TIMEOUT`; a
    /// link silent that long is dropped), then, when a certificate was shown, the
    /// host check against the address it came from. The error says why the link is
    /// refused.
    pub async fn accept(
        &self,
        stream: TcpStream,
        members: &BTreeMap<u64, PeerAddr>,
    ) -> Result<Accepted, AcceptError> {
        if self.accept_plaintext {
            let look = async { Ok(starts_with_tls(&stream).await) };
            match glommio::timer::timeout(DETECT_TIMEOUT, look).await {
                Ok(true) => {}
                Ok(false) => return Ok(Accepted::plain(stream, false)),
                // As the reference's unified socket: whatever the link sends later
                // is read as plaintext.
                Err(_) => return Ok(Accepted::plain(stream, true)),
            }
        }
        // A link that has sent nothing costs nothing yet: it takes a handshake's
        // place only once its first bytes (a ClientHello) are here.
        let refused = |why: String| Err(AcceptError::Refused(why));
        let first = async { Ok(stream.peek(&mut [0u8; 1]).await) };
        match glommio::timer::timeout(PEER_HANDSHAKE_TIMEOUT, first).await {
            Ok(Ok(n)) if n > 0 => {}
            // A port probe (connect, close): not worth a warning.
            Ok(_) => return Err(AcceptError::ClosedSilent),
            Err(_) => return refused(format!("sent nothing within {PEER_HANDSHAKE_TIMEOUT:?}")),
        }
        if self.handshakes.get() >= PEER_HANDSHAKES_MAX {
            return refused(format!(
                "{PEER_HANDSHAKES_MAX} TLS handshakes already in progress (PEER_HANDSHAKES_MAX)"
            ));
        }
        self.handshakes.set(self.handshakes.get() + 1);
        let _slot = HandshakeSlot(&self.handshakes);
        let ip = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(e) => return refused(e.to_string()),
        };
        let handshake = async { Ok(self.acceptor.accept(stream).await) };
        let tls = match glommio::timer::timeout(PEER_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return refused(format!("TLS handshake failed: {e}")),
            Err(_) => {
                return refused(format!(
                    "no TLS handshake within {PEER_HANDSHAKE_TIMEOUT:?}"
                ))
            }
        };
        let certs = tls.get_ref().1.peer_certificates();
        if self.hostname_verification && certs.is_some() {
            check_host(certs, ip, members).map_err(AcceptError::Refused)?;
        }
        Ok(Accepted {
            stream: PeerStream::Tls(Box::new(tls.into())),
            silent: false,
        })
    }
}

/// The reference's host check: the end-entity certificate names `ip` (an IP SAN)
/// or a host name a member's `server.N` line gives for that IP (a DNS SAN).
pub fn check_host(
    certs: Option<&[CertificateDer<'static>]>,
    ip: IpAddr,
    members: &BTreeMap<u64, PeerAddr>,
) -> Result<(), String> {
    let Some(cert) = certs.and_then(|c| c.first()) else {
        return Err("it showed no certificate".into());
    };
    let parsed = rustls::server::ParsedCertificate::try_from(cert)
        .map_err(|e| format!("its certificate does not parse: {e}"))?;
    let names_ip =
        |name: &ServerName<'_>| rustls::client::verify_server_name(&parsed, name).is_ok();
    if names_ip(&ServerName::IpAddress(ip.into())) {
        return Ok(());
    }
    let hosts: Vec<&str> = (members.values())
        .filter(|m| m.election.ip() == ip || m.quorum.ip() == ip)
        .flat_map(|m| m.hosts.iter().map(String::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let named = hosts.iter().any(|h| {
        ServerName::try_from(*h)
            .map(|n| names_ip(&n))
            .unwrap_or(false)
    });
    if named {
        return Ok(());
    }
    let also = match hosts.is_empty() {
        true => String::new(),
        false => format!(" nor {}", hosts.join(", ")),
    };
    Err(format!(
        "its certificate does not name {ip}{also} (ssl.quorum.hostnameVerification=true: \
         the certificate needs a subject alternative name for the member's address)"
    ))
}

/// The trust store's chain check of a member's certificate, without rustls's name
/// check: the name is checked after the handshake (`check_host`), against the
/// `server.N` host names as well as the IP dialled.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r =
            (self.0).verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match r {
            // The chain checked out; only the name did not match.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_close(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn cert(sans: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let p = CertificateParams::new(sans).unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    fn member(ip: &str, hosts: &[&str]) -> PeerAddr {
        PeerAddr {
            election: format!("{ip}:3888").parse().unwrap(),
            quorum: format!("{ip}:2888").parse().unwrap(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// ChainOnly forgives a name mismatch only: an expired certificate, or one of
    /// another CA, still fails whatever name it carries.
    #[test]
    fn the_chain_check_forgives_only_the_name() {
        use rcgen::{BasicConstraints, IsCa};
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let leaf = |sans: &[&str], expired: bool| {
            let key = KeyPair::generate().unwrap();
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut p = CertificateParams::new(sans).unwrap();
            if expired {
                p.not_before = rcgen::date_time_ymd(2000, 1, 1);
                p.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
            p.signed_by(&key, &ca, &ca_key).unwrap().der().clone()
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let v = ChainOnly(inner);
        let dialled = ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into());
        let check =
            |c: &CertificateDer<'_>| v.verify_server_cert(c, &[], &dialled, &[], UnixTime::now());
        assert!(check(&leaf(&["127.0.0.1"], false)).is_ok());
        assert!(
            check(&leaf(&["other.example"], false)).is_ok(),
            "the name is checked later"
        );
        assert!(check(&leaf(&["other.example"], true)).is_err(), "expired");
        assert!(check(&leaf(&["127.0.0.1"], true)).is_err(), "expired");
        assert!(
            check(&cert(&["127.0.0.1"])).is_err(),
            "not of the trusted CA"
        );
    }

    #[test]
    fn a_certificate_must_name_the_ip_or_a_configured_host_name_of_it() {
        let members = BTreeMap::from([
            (1, member("127.0.0.1", &[])),
            (2, member("127.0.0.2", &["zk2.example"])),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let by_ip = [cert(&["127.0.0.1"])];
        assert_eq!(check_host(Some(&by_ip), ip("127.0.0.1"), &members), Ok(()));
        // A DNS name counts only where a server.N line gives it for that IP.
        let by_name = [cert(&["zk2.example"])];
        assert_eq!(
            check_host(Some(&by_name), ip("127.0.0.2"), &members),
            Ok(())
        );
        let err = check_host(Some(&by_name), ip("127.0.0.1"), &members).unwrap_err();
        assert!(
            err.starts_with("its certificate does not name 127.0.0.1 (ssl.quorum"),
            "{err}"
        );
        let err = check_host(Some(&by_ip), ip("127.0.0.2"), &members).unwrap_err();
        assert!(
            err.starts_with("its certificate does not name 127.0.0.2 nor zk2.example"),
            "{err}"
        );
        assert_eq!(
            check_host(None, ip("127.0.0.1"), &members).unwrap_err(),
            "it showed no certificate"
        );
    }
}
