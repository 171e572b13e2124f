//! Store loading, subjects as Java prints them, and the session glue driven against a
//! rustls client over an in-memory pipe.

use super::*;
use crate::config::Config;
use futures_lite::io::{AsyncRead, AsyncWrite};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::rc::Rc;
use std::task::Waker;

// ---- Subjects: certificates made by openssl, names printed by Java 17 ----

/// `-subj "/C=NL/O=Corral, Inc./OU=Dev+UID=u1/CN= lead #1 /emailAddress=a@b.c"
/// -multivalue-rdn`.
const MULTI_RDN: &str = "-----BEGIN CERTIFICATE-----
MIICMDCCAdegAwIBAgIUXXSwxC4GxUnWTvyqrTL4vTDiRCMwCgYIKoZIzj0EAwIw
bjELMAkGA1UEBhMCTkwxFTATBgNVBAoMDENvcnJhbCwgSW5jLjEeMAoGA1UECwwD
RGV2MBAGCgmSJomT8ixkAQEMAnUxMRIwEAYDVQQDDAkgbGVhZCAjMSAxFDASBgkq
hkiG9w0BCQEWBWFAYi5jMB4XDTI2MTEyOTE2MjY1M1oXDTI2MTEzMDE2MjY1M1ow
bjELMAkGA1UEBhMCTkwxFTATBgNVBAoMDENvcnJhbCwgSW5jLjEeMAoGA1UECwwD
RGV2MBAGCgmSJomT8ixkAQEMAnUxMRIwEAYDVQQDDAkgbGVhZCAjMSAxFDASBgkq
hkiG9w0BCQEWBWFAYi5jMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAExqBM+MkP
g/DSe/HAJQWEmEUeAaZlpRhHAGghODJi4mwkDriC8y3tLNYJvhXa6ksd272TAIzu
oiPwNwWThyn/pqNTMFEwHQYDVR0OBBYEFIqX6QA67MGuAlX0/Smi/Mnel9vlMB8G
A1UdIwQYMBaAFIqX6QA67MGuAlX0/Smi/Mnel9vlMA8GA1UdEwEB/wQFMAMBAf8w
CgYIKoZIzj0EAwIDRwAwRAIgKO4Pxc2Z4tG6QARY4IuDbt53z6O5K/S2cxUs8P1F
XY4CIED0D9dEUzpW53dumaru0VyYUPAod4ux1kr7Xm5Wl0zj
-----END CERTIFICATE-----
";

/// `-utf8 -subj "/CN=Zoë=x;y<z>\"q\"\\/DC=example/DC=com/title=Boss/serialNumber=42/
/// street=Main St/ST=NH/L=Town"`.
const ESCAPES_AND_OIDS: &str = "-----BEGIN CERTIFICATE-----
MIICezCCAiGgAwIBAgIUHuTVx7pGdwoWSt0s0kJuyNCK3TMwCgYIKoZIzj0EAwIw
gZIxGDAWBgNVBAMMD1pvw6s9eDt5PHo+InEiXDEXMBUGCgmSJomT8ixkARkWB2V4
YW1wbGUxEzARBgoJkiaJk/IsZAEZFgNjb20xDTALBgNVBAwMBEJvc3MxCzAJBgNV
BAUTAjQyMRAwDgYDVQQJDAdNYWluIFN0MQswCQYDVQQIDAJOSDENMAsGA1UEBwwE
VG93bjAeFw0yNjExMjkxNjI2NTNaFw0yNjExMzAxNjI2NTNaMIGSMRgwFgYDVQQD
DA9ab8OrPXg7eTx6PiJxIlwxFzAVBgoJkiaJk/IsZAEZFgdleGFtcGxlMRMwEQYK
CZImiZPyLGQBGRYDY29tMQ0wCwYDVQQMDARCb3NzMQswCQYDVQQFEwI0MjEQMA4G
A1UECQwHTWFpbiBTdDELMAkGA1UECAwCTkgxDTALBgNVBAcMBFRvd24wWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQ83qO01eN0VgmJbEiPm07h3e/9t8TzBKJBEVwU
/ME/bEy/BVhL6T9Kmc8BRNWTkXfGqB/FzO61MBUhx3S3nvGjo1MwUTAdBgNVHQ4E
FgQUHyvujt3FanCA+7VAUSSwqepxnGgwHwYDVR0jBBgwFoAUHyvujt3FanCA+7VA
USSwqepxnGgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBpI/vx
LkysIa4pQmj2kDnmppZsQe0ySKkPpyR1lhz8xQIhAMlD3PtNEJAaHjAr+Vhk2Uia
qsBHfIswNnqLG4HWBh9F
-----END CERTIFICATE-----
";

/// CN "Zoë bmp" as a BMPString.
const BMP: &str = "-----BEGIN CERTIFICATE-----
MIIBLDCB0wIUHi9Tukf6C9wr2kSIM5HsRYejD5owCgYIKoZIzj0EAwIwGTEXMBUG
A1UEAx4OAFoAbwDrACAAYgBtAHAwHhcNMjYxMTI5MTYyNzAxWhcNMjYxMTMwMTYy
NzAxWjAZMRcwFQYDVQQDHg4AWgBvAOsAIABiAG0AcDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABMBUZrK8R69E4TMPTJEwliPgGfM1QSImZuROfYdCb2wCtlJJMLeu
xCt/eGmqjz3g0NzgWq6KeKbzBQEK0ECl60IwCgYIKoZIzj0EAwIDSAAwRQIhAIDp
zxCbWn8BBTqQsXdKkUUS325IJOcj7g6u3ralQpbOAiA79C6LaYS4HPoRCGa5o4TY
fCfhD8iYylWMjcS4CckQSQ==
-----END CERTIFICATE-----
";

/// CN "Zoë t61" as a T61String (Latin-1 byte 0xeb).
const T61: &str = "-----BEGIN CERTIFICATE-----
MIIBHzCBxQIUYziql1eCGS9jti1qbdPEtS7Hu8wwCgYIKoZIzj0EAwIwEjEQMA4G
A1UEAxQHWm/rIHQ2MTAeFw0yNjExMjkxNjI3MDJaFw0yNjExMzAxNjI3MDJaMBIx
EDAOBgNVBAMUB1pv6yB0NjEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATeH9eu
YDseHhwzXXhsUfhqpp+afGxMHyXAxy9Tx4sgOLqNVCFPg3gDbf1DMD907/CfTGF5
SbgNDnbPGxtOhXaUMAoGCCqGSM49BAMCA0kAMEYCIQCuGMXzwUiq1KZVsxzGPJoj
DSjZqtOB/UoNKaGOefSZvQIhALeaIwReXpcvSkGxVtbk82iYo/ToNfI4g1g2C8PZ
Ni1t
-----END CERTIFICATE-----
";

fn first_cert(pem: &str) -> CertificateDer<'static> {
    parse_trust_store(pem.as_bytes()).unwrap().remove(0)
}

#[test]
fn subjects_print_as_java_17_prints_them() {
    for (pem, java) in [
        (
            MULTI_RDN,
            "1.2.840.113549.1.9.1=#16056140622e63,CN=\\ lead \\#1\\ ,OU=Dev+UID=u1,\
             O=Corral\\, Inc.,C=NL",
        ),
        (
            ESCAPES_AND_OIDS,
            "L=Town,ST=NH,STREET=Main St,2.5.4.5=#13023432,2.5.4.12=#0c04426f7373,DC=com,\
             DC=example,CN=Zoë\\=x\\;y\\<z\\>\\\"q\\\"\\\\",
        ),
        (BMP, "CN=\\00Z\\00o\\00\u{fffd}\\00 \\00b\\00m\\00p"),
        (T61, "CN=Zo\u{fffd} t61"),
    ] {
        assert_eq!(rfc2253_subject(&first_cert(pem)).unwrap(), java);
    }
}

// ---- Stores ----

/// openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:s3cret, then its certificate.
const ENCRYPTED_STORE: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAin6UxWy5owxgICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEKlORhl2r1LYiH+Y66IZ3JwEgZCQ
G8wZirk4cpWXkiK6+TeOzdZpb3qCCEfQMYjNRRRfPRJMtYhoGfHNsWNDD0DdPnje
E6GyEh2BdtM3lwoAAf31koD9hDwwnZZD+m8QZK2bTCL+AzgMSoyYEdRdMfSN1dGf
Z56Hm3VwTofcE8RgBRDuu71lg8r5XCJ+1dKSDQ2UkFZp0Lfq8Q5pN3YAXkv8Gzg=
-----END ENCRYPTED PRIVATE KEY-----
-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUKv7Nll4MIAFaR169b3JZ6iSRO2owCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNZW5jcnlwdGVkIGtleTAgFw0yNjExMjkxNjI3MjJaGA8yMTI2
MTEwNTE2MjcyMlowGDEWMBQGA1UEAwwNZW5jcnlwdGVkIGtleTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABHGjLsmSaBJpwbKido2hOg9tbf2HYrIIhijbG94YbC+p
aOjHFvyktikvWhCkImhJyBTm2xpHNuMUCHAiuSHBJtujUzBRMB0GA1UdDgQWBBTy
3C477U2MSdtu8b8ioQCNA8TCdjAfBgNVHSMEGDAWgBTy3C477U2MSdtu8b8ioQCN
A8TCdjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCeV9CJy+4A
bDDyVTse43lEu25pdGK+GuvI8a/H4dTx+AIhAO5y4JV4k5uxcRTEs1s62UU/j6KW
tTDKhvlXezAPNt7O
-----END CERTIFICATE-----
";

#[test]
fn an_encrypted_pkcs8_key_opens_with_its_password_only() {
    let ks = parse_key_store(ENCRYPTED_STORE.as_bytes(), Some("s3cret")).unwrap();
    assert_eq!(ks.chain.len(), 1);
    assert!(matches!(ks.key, PrivateKeyDer::Pkcs8(_)));
    // The decrypted key belongs to the certificate.
    let provider = Arc::new(ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(ks.chain, ks.key)
        .unwrap();
    let e = parse_key_store(ENCRYPTED_STORE.as_bytes(), Some("wrong")).unwrap_err();
    assert!(matches!(e, StoreError::Decrypt(_)), "{e}");
    let e = parse_key_store(ENCRYPTED_STORE.as_bytes(), None).unwrap_err();
    assert!(matches!(e, StoreError::NeedsPassword), "{e}");
}

#[test]
fn bad_key_stores_say_what_is_wrong() {
    let pki = Pki::new();
    let cert_only = pki.server_cert.pem();
    let key_only = pki.server_key.serialize_pem();
    assert!(matches!(
        parse_key_store(cert_only.as_bytes(), None),
        Err(StoreError::NoKey)
    ));
    assert!(matches!(
        parse_key_store(key_only.as_bytes(), None),
        Err(StoreError::NoCertificate)
    ));
    let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                  DEK-Info: AES-128-CBC,75D18B68D2E5E5C51F645F4CC3CD1941\n\nAAAA\n\
                  -----END RSA PRIVATE KEY-----\n";
    assert!(matches!(
        parse_key_store(format!("{legacy}{cert_only}").as_bytes(), Some("x")),
        Err(StoreError::LegacyEncryption)
    ));
    assert!(matches!(
        parse_key_store(b"-----BEGIN CERTIFICATE-----\n!!!\n", None),
        Err(StoreError::Pem(_))
    ));
    let ks = parse_key_store(format!("{key_only}{cert_only}").as_bytes(), Some("pw")).unwrap();
    assert!(ks.password_unused);
    assert!(matches!(
        parse_trust_store(key_only.as_bytes()),
        Err(StoreError::NoCertificate)
    ));
}

#[test]
fn load_errors_name_the_key_and_the_file() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let cfg = pki.config(dir.path(), "ssl.clientAuth=none\n");
    let mut t = cfg.clone();
    t.key_store.path = missing.clone();
    let e = ServerTls::load(&t).err().unwrap().to_string();
    assert!(
        e.starts_with(&format!(
            "ssl.keyStore.location={}: cannot read it:",
            missing.display()
        )),
        "{e}"
    );
    // A key that is not the certificate's.
    let other = KeyPair::generate().unwrap();
    let mismatched = dir.path().join("mismatch.pem");
    std::fs::write(
        &mismatched,
        format!("{}{}", other.serialize_pem(), pki.server_cert.pem()),
    )
    .unwrap();
    let mut t = cfg.clone();
    t.key_store.path = mismatched.clone();
    let e = ServerTls::load(&t).err().unwrap().to_string();
    assert!(
        e.starts_with(&format!(
            "ssl.keyStore.location={}: its private key",
            mismatched.display()
        )),
        "{e}"
    );
    // A trust store with no certificate.
    let cfg = pki.config(dir.path(), "");
    let mut t = cfg.clone();
    t.trust_store.as_mut().unwrap().path = dir.path().join("key.pem");
    std::fs::write(dir.path().join("key.pem"), pki.server_key.serialize_pem()).unwrap();
    let e = ServerTls::load(&t).err().unwrap().to_string();
    assert!(
        e.contains("ssl.trustStore.location=") && e.contains("holds no certificate"),
        "{e}"
    );
}

#[test]
fn the_password_file_wins_and_loses_one_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "s3cret\n").unwrap();
    let store = PemStore {
        key: "ssl.keyStore.location".into(),
        path: dir.path().join("k.pem"),
        password: Some(crate::config::Secret("other".into())),
        password_path: Some(path),
    };
    assert_eq!(store_password(&store).unwrap().as_deref(), Some("s3cret"));
}

#[test]
fn x509_ids_and_the_super_user() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = pki.config(
        dir.path(),
        "X509AuthenticationProvider.superUser=CN=admin\n",
    );
    let tls = ServerTls::load(&cfg).unwrap();
    assert_eq!(tls.x509_ids("CN=bob"), vec![Id::new("x509", "CN=bob")]);
    assert_eq!(
        tls.x509_ids("CN=admin"),
        vec![Id::new("super", "CN=admin"), Id::new("x509", "CN=admin")]
    );
}

// ---- Sessions against a rustls client ----

#[test]
fn a_client_certificate_is_verified_and_named() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let tls = ServerTls::load(&pki.config(dir.path(), "")).unwrap();
    let mut wire = Wire::new(&tls, pki.client(Some("client one"), &[]));
    let cert = wire.handshake().unwrap().expect("a client certificate");
    assert_eq!(
        rfc2253_subject(&cert).unwrap(),
        "CN=client one,O=corral tests"
    );
    // Plaintext both ways.
    wire.client.writer().write_all(b"hello").unwrap();
    assert_eq!(wire.server_reads(), b"hello");
    wire.server_writes(b"world");
    assert_eq!(wire.client_reads(), b"world");
}

#[test]
fn need_refuses_a_client_without_a_certificate_and_want_takes_it() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let need = ServerTls::load(&pki.config(dir.path(), "")).unwrap();
    let e = Wire::new(&need, pki.client(None, &[]))
        .handshake()
        .unwrap_err();
    assert!(!e.is_not_tls(), "{e}");
    let want = ServerTls::load(&pki.config(dir.path(), "ssl.clientAuth=want\n")).unwrap();
    assert!(Wire::new(&want, pki.client(None, &[]))
        .handshake()
        .unwrap()
        .is_none());
    // A certificate from another CA is refused even with want.
    let stranger = Pki::new();
    let e = Wire::new(&want, stranger.client_trusting(&pki, Some("x")))
        .handshake()
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[test]
fn protocol_versions_are_enforced() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let tls13 = ServerTls::load(&pki.config(dir.path(), "ssl.protocol=TLSv1.3\n")).unwrap();
    let only12 = [&rustls::version::TLS12];
    assert!(Wire::new(&tls13, pki.client(Some("c"), &only12))
        .handshake()
        .is_err());
    let only13 = [&rustls::version::TLS13];
    assert!(Wire::new(&tls13, pki.client(Some("c"), &only13))
        .handshake()
        .is_ok());
    // The default is TLSv1.2 alone, as the reference's.
    let tls12 = ServerTls::load(&pki.config(dir.path(), "")).unwrap();
    assert!(Wire::new(&tls12, pki.client(Some("c"), &only13))
        .handshake()
        .is_err());
    let mut wire = Wire::new(&tls12, pki.client(Some("c"), &[]));
    wire.handshake().unwrap();
    assert_eq!(
        wire.client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[test]
fn plaintext_on_the_tls_port_is_not_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let tls = ServerTls::load(&pki.config(dir.path(), "")).unwrap();
    // A ConnectRequest frame's start, and a four-letter word.
    for first in [&[0u8, 0, 0, 44, 0, 0, 0, 0][..], b"ruok"] {
        let mut session = tls.session().unwrap();
        let mut pipe = Pipe::default();
        pipe.to_server.borrow_mut().extend(first);
        let mut buf = [0u8; 64];
        let mut cx = Context::from_waker(Waker::noop());
        match session.poll_read(&mut pipe, &mut cx, &mut buf) {
            Poll::Ready(Err(e)) => assert!(e.is_not_tls(), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}

// ---- Helpers ----

/// A CA, a server certificate for localhost, and client certificates on demand.
struct Pki {
    ca_key: KeyPair,
    ca: rcgen::Certificate,
    server_key: KeyPair,
    server_cert: rcgen::Certificate,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "corral test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let server_cert = p.signed_by(&server_key, &ca, &ca_key).unwrap();
        Pki {
            ca_key,
            ca,
            server_key,
            server_cert,
        }
    }

    /// Writes server.pem (key + chain) and ca.pem to `dir`; the TLS config for them.
    fn config(&self, dir: &Path, extra: &str) -> TlsConfig {
        let server = dir.join("server.pem");
        let ca = dir.join("ca.pem");
        std::fs::write(
            &server,
            format!(
                "{}{}",
                self.server_key.serialize_pem(),
                self.server_cert.pem()
            ),
        )
        .unwrap();
        std::fs::write(&ca, self.ca.pem()).unwrap();
        let text = format!(
            "secureClientPort=2281\nssl.keyStore.location={}\nssl.trustStore.location={}\n{extra}",
            server.display(),
            ca.display()
        );
        Config::parse(&text).unwrap().tls.unwrap()
    }

    fn client_cert(&self, cn: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "corral tests");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (vec![cert.der().clone()], der)
    }

    fn client(
        &self,
        cn: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ClientConnection {
        self.client_of(self, cn, versions)
    }

    /// A client whose certificate comes from this CA, trusting `server`'s CA.
    fn client_trusting(&self, server: &Pki, cn: Option<&str>) -> ClientConnection {
        server.client_of(self, cn, &[])
    }

    fn client_of(
        &self,
        issuer: &Pki,
        cn: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let versions = match versions {
            [] => rustls::DEFAULT_VERSIONS,
            v => v,
        };
        let b = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = match cn {
            Some(cn) => {
                let (chain, key) = issuer.client_cert(cn);
                b.with_client_auth_cert(chain, key).unwrap()
            }
            None => b.with_no_client_auth(),
        };
        let name = ServerName::try_from("localhost").unwrap();
        ClientConnection::new(Arc::new(config), name).unwrap()
    }
}

/// An in-memory socket: the server side reads `to_server`, writes `to_client`.
#[derive(Default)]
struct Pipe {
    to_server: Rc<RefCell<VecDeque<u8>>>,
    to_client: Rc<RefCell<VecDeque<u8>>>,
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut q = self.to_server.borrow_mut();
        if q.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(q.read(buf))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.to_client.borrow_mut().extend(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A server session and a rustls client joined by a pipe, stepped by hand.
struct Wire {
    server: TlsSession,
    client: ClientConnection,
    pipe: Pipe,
}

impl Wire {
    fn new(tls: &ServerTls, client: ClientConnection) -> Wire {
        Wire {
            server: tls.session().unwrap(),
            client,
            pipe: Pipe::default(),
        }
    }

    fn client_to_server(&mut self) {
        let mut q = self.pipe.to_server.borrow_mut();
        while self.client.wants_write() {
            let mut out = Vec::new();
            self.client.write_tls(&mut out).unwrap();
            q.extend(out);
        }
    }

    /// Server records to the client; a client error (an alert it received) is
    /// ignored, the server's side is what the tests look at.
    fn server_to_client(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(self.server.poll_send(&mut self.pipe, &mut cx).is_ready());
        let bytes: Vec<u8> = self.pipe.to_client.borrow_mut().drain(..).collect();
        if !bytes.is_empty() {
            let _ = self.client.read_tls(&mut &bytes[..]);
            let _ = self.client.process_new_packets();
        }
    }

    /// Steps both sides until the server's handshake ends.
    fn handshake(&mut self) -> Result<Option<CertificateDer<'static>>, TlsFailure> {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..50 {
            self.client_to_server();
            let mut buf = [0u8; 256];
            let r = self.server.poll_read(&mut self.pipe, &mut cx, &mut buf);
            self.server_to_client();
            match r {
                Poll::Ready(Ok(TlsInput::Established(cert))) => return Ok(cert),
                Poll::Ready(Ok(TlsInput::Progress)) | Poll::Pending => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Ready(Ok(other)) => panic!("{other:?} during the handshake"),
            }
        }
        panic!("the handshake did not end");
    }

    fn server_reads(&mut self) -> Vec<u8> {
        self.client_to_server();
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 256];
        for _ in 0..10 {
            match self.server.poll_read(&mut self.pipe, &mut cx, &mut buf) {
                Poll::Ready(Ok(TlsInput::Plain(n))) => return buf[..n].to_vec(),
                Poll::Ready(Ok(TlsInput::Progress)) => self.server_to_client(),
                other => panic!("{other:?}"),
            }
        }
        panic!("no plaintext");
    }

    fn server_writes(&mut self, bytes: &[u8]) {
        assert_eq!(self.server.write_plain(bytes), bytes.len());
        self.server_to_client();
    }

    fn client_reads(&mut self) -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let n = self.client.reader().read(&mut out).unwrap();
        out.truncate(n);
        out
    }
}

#[test]
fn a_tls_client_is_told_from_a_plaintext_one_by_its_first_bytes() {
    // A ClientHello record header, then as it arrives byte by byte.
    let hello = [22u8, 3, 1, 0, 200];
    assert_eq!(tls_verdict(&hello), Some(true));
    for n in 0..TLS_RECORD_HEADER_BYTES {
        assert_eq!(tls_verdict(&hello[..n]), None, "{n} bytes");
    }
    // A ConnectRequest's frame length, four-letter words, a non-3.x version.
    assert_eq!(tls_verdict(&[0, 0, 0, 45, 0]), Some(false));
    assert_eq!(tls_verdict(b"r"), Some(false));
    assert_eq!(tls_verdict(b"ruok"), Some(false));
    assert_eq!(tls_verdict(&[22, 2, 0, 0, 1]), Some(false));
    // Short of a header, only a handshake record's first byte waits; a whole
    // header of any record type is TLS, as Netty's isEncrypted says.
    assert_eq!(tls_verdict(&[21, 3]), Some(false));
    assert_eq!(tls_verdict(&[21, 3, 3, 0, 2]), Some(true));
}
