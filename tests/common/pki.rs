//! Test keys and certificates, made with rcgen and written as PEM files: one CA, a
//! server certificate for localhost and 127.0.0.1–127.0.0.3 (every member of a test
//! ensemble can show it), client certificates, and certificates naming other hosts
//! (for host checks). The server's key and chain go in one file, as the reference's
//! PEM key store wants them. Runs on the test thread.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// Keys and certificates for one test, as PEM files in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
    ca_key: KeyPair,
    ca: rcgen::Certificate,
}

/// One client's certificate and key, as files and as rustls wants them.
pub struct ClientKeys {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Key then certificate in one file (the Java client's PEM key store).
    pub both: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("corral-tls-")
            .tempdir()
            .unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name = dn(&[(DnType::CommonName, "corral test CA")]);
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(
            ["localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap();
        p.distinguished_name = dn(&[(DnType::CommonName, "localhost")]);
        let server = p.signed_by(&server_key, &ca, &ca_key).unwrap();
        let pem = format!("{}{}", server_key.serialize_pem(), server.pem());
        std::fs::write(dir.path().join("server.pem"), pem).unwrap();
        Pki { dir, ca_key, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client certificate `CN=<name>,O=corral` signed by the CA.
    pub fn client(&self, name: &str) -> ClientKeys {
        self.client_dn(
            name,
            &[
                (DnType::OrganizationName, "corral"),
                (DnType::CommonName, name),
            ],
        )
    }

    /// A client certificate `CN=<name>` (zkCli cannot write an ACL id with a comma).
    pub fn client_cn(&self, name: &str) -> ClientKeys {
        self.client_dn(name, &[(DnType::CommonName, name)])
    }

    pub fn client_dn(&self, name: &str, entries: &[(DnType, &str)]) -> ClientKeys {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn(entries);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let keys = ClientKeys {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
            both: self.path(&format!("{name}.pem")),
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        };
        std::fs::write(&keys.cert, cert.pem()).unwrap();
        std::fs::write(&keys.key, key.serialize_pem()).unwrap();
        std::fs::write(&keys.both, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        keys
    }

    /// A server (or ensemble member) key and chain file `<name>.pem`, signed by the
    /// CA, whose subject alternative names are `sans` (IP addresses or DNS names).
    pub fn server(&self, name: &str, sans: &[&str]) -> PathBuf {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name = dn(&[(DnType::CommonName, name)]);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let path = self.path(&format!("{name}.pem"));
        std::fs::write(&path, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        path
    }

    /// zoo.cfg lines for a TLS port on `port`, understood by both servers.
    pub fn server_cfg(&self, port: u16, extra: &str) -> String {
        format!(
            "secureClientPort={port}\n\
             secureClientPortAddress=127.0.0.1\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={}\n\
             ssl.keyStore.type=PEM\n\
             ssl.trustStore.location={}\n\
             ssl.trustStore.type=PEM\n\
             {extra}",
            self.path("server.pem").display(),
            self.path("ca.pem").display()
        )
    }

    /// A rustls client trusting the CA, presenting `keys` if given.
    pub fn rustls_client(&self, keys: Option<&ClientKeys>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match keys {
            Some(k) => {
                let key = PrivateKeyDer::try_from(k.key_der.clone()).unwrap();
                b.with_client_auth_cert(k.chain.clone(), key).unwrap()
            }
            None => b.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for (t, v) in entries {
        d.push(t.clone(), *v);
    }
    d
}
