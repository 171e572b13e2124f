//! TLS on the secure client port (secureClientPort), and on the client port with
//! client.portUnification: loading the PEM key and trust stores at start-up into
//! one rustls `ServerConfig`, the per-connection glue that puts a rustls
//! `ServerConnection` between a shard's socket and its frame parser, and
//! (`tls_verdict`) telling a TLS client from a plaintext one by its first bytes.
//!
//! Loading runs once on the main thread (`ServerTls::load`, which reads the files);
//! the parsing itself (`parse_key_store`, `parse_trust_store`) is pure. A
//! `TlsSession` lives in one connection task on a shard core; rustls is sans-IO, so
//! it is driven from the task's poll loop:
//!
//! ```text
//!  socket ─ poll_read: read_tls ─► process_new_packets ─► reader() ─► frame buffer
//!  conn.out ─ write_plain: writer() ─► TLS records ─ poll_send: write_tls ─► socket
//! ```
//!
//! Memory: rustls holds at most 16 KiB of decrypted bytes not yet taken (its own
//! fixed limit; it stops reading the socket past it) and one record being received;
//! outgoing records and plaintext written before the handshake ends are held up to
//! `TLS_SEND_BUFFER_BYTES_MAX`. The shard's own unsent-reply limits count plaintext
//! it has not handed to rustls yet.

mod subject;

pub use subject::{rfc2253_subject, SubjectError};

use crate::config::{ClientAuth, PemStore, TlsConfig, TlsProtocol, TlsSuite};
use crate::proto::Id;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;

/// TLS records (and plaintext written before the handshake ends) rustls may hold
/// for one connection before it takes no more plaintext.
pub const TLS_SEND_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// A connection that has not finished its TLS handshake by then is dropped (Netty's
/// SslHandler, under the reference, waits 10 s too).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a TLS record header: content type, version (2), length (2).
pub const TLS_RECORD_HEADER_BYTES: usize = 5;

/// The content type of a handshake record, which a TLS client's first one is.
const TLS_HANDSHAKE_RECORD: u8 = 22;

/// The content types of TLS records: change_cipher_spec, alert, handshake,
/// application_data.
const TLS_RECORD_TYPES: std::ops::RangeInclusive<u8> = 20..=23;

/// client.portUnification: whether a connection's first bytes are a TLS client's
/// or a plaintext one's (a frame length, or a four-letter word); `None` while too
/// few have come to tell. As the reference's DualModeSslHandler: short of a record
/// header, a first byte other than a handshake record's is plaintext at once (a
/// four-letter word may be all there is) and anything else waits; a whole header
/// is TLS when it has a record type and version 3.x (Netty's `isEncrypted`).
pub fn tls_verdict(head: &[u8]) -> Option<bool> {
    if head.len() < TLS_RECORD_HEADER_BYTES {
        return head
            .first()
            .and_then(|&first| (first != TLS_HANDSHAKE_RECORD).then_some(false));
    }
    Some(TLS_RECORD_TYPES.contains(&head[0]) && head[1] == 3)
}

/// client.portUnification and quorum portUnification: how long to wait before looking again at a connection
/// whose first bytes are part of a TLS record header; doubled each time up to
/// PEEK_AGAIN_AFTER_MAX, so a client that stops inside a header costs a few
/// hundred wake-ups until the TLS handshake timeout, not one per millisecond.
const PEEK_AGAIN_AFTER: Duration = Duration::from_millis(1);
/// The longest of those waits.
const PEEK_AGAIN_AFTER_MAX: Duration = Duration::from_millis(64);

/// Looks at (without taking) the first bytes of a connection until they tell a
/// TLS client from a plaintext one; false on EOF or an error (the connection's
/// task then finds either).
pub async fn starts_with_tls(stream: &TcpStream) -> bool {
    let mut head = [0u8; TLS_RECORD_HEADER_BYTES];
    let mut again_after = PEEK_AGAIN_AFTER;
    loop {
        let n = match stream.peek(&mut head).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if let Some(verdict) = tls_verdict(&head[..n]) {
            return verdict;
        }
        // Part of a record header: a peek would answer at once with the same bytes.
        glommio::timer::sleep(again_after).await;
        again_after = (again_after * 2).min(PEEK_AGAIN_AFTER_MAX);
    }
}

/// A key or trust store file larger than this is refused (a key and a few
/// certificates take a few KiB).
pub const STORE_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Why a store could not be used; `TlsError::Store` names the key and the file.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot read it: {0}")]
    Read(io::Error),
    #[error("it is larger than {STORE_FILE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("it is not valid PEM: {0}")]
    Pem(String),
    #[error(
        "it holds no private key (expected a PEM block `PRIVATE KEY`, `RSA PRIVATE KEY`, \
         `EC PRIVATE KEY` or `ENCRYPTED PRIVATE KEY` beside the certificate chain)"
    )]
    NoKey,
    #[error("it holds no certificate (expected PEM blocks `CERTIFICATE`)")]
    NoCertificate,
    #[error(
        "its private key is encrypted: set its password (ssl.keyStore.password or \
         .passwordPath; ssl.quorum.keyStore.* for the quorum key store)"
    )]
    NeedsPassword,
    #[error("its private key does not decrypt with the key store's password: {0}")]
    Decrypt(String),
    #[error(
        "its private key is encrypted the legacy OpenSSL way (Proc-Type: 4,ENCRYPTED), which \
         corral does not read; convert it to PKCS#8 with `openssl pkcs8 -topk8 -in KEY \
         -out key8.pem` and put key8.pem beside the certificate chain"
    )]
    LegacyEncryption,
    #[error("its private key cannot serve TLS: {0}")]
    Key(String),
    #[error("certificate {index} cannot be a trusted CA: {why}")]
    TrustCertificate { index: usize, why: String },
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile { path: PathBuf, source: io::Error },
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{key}={}: {why}", path.display())]
    Store {
        key: String,
        path: PathBuf,
        why: StoreError,
    },
    #[error("TLS client port (secureClientPort): {0}")]
    Setup(String),
}

/// The TLS port's shared state: one rustls config for every shard and connection,
/// and who the x509 super user is.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    client_auth: ClientAuth,
    super_user: Option<String>,
}

/// A key store's contents.
#[derive(Debug)]
pub struct KeyStore {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// A password was given but the key was not encrypted.
    pub password_unused: bool,
}

impl ServerTls {
    /// Reads and checks the stores named in `cfg`, and builds the rustls config.
    pub fn load(cfg: &TlsConfig) -> Result<ServerTls, TlsError> {
        let provider = Arc::new(provider(&cfg.suites));
        let key_store = load_key_store(&cfg.key_store)?;
        let roots = match (&cfg.trust_store, cfg.client_auth) {
            (_, ClientAuth::None) => None,
            (Some(store), _) => Some(load_roots(store)?),
            (None, _) => unreachable!("config requires a trust store when clientAuth is set"),
        };
        let config = server_config(
            &provider,
            &cfg.protocols,
            (&cfg.key_store, key_store),
            roots,
            cfg.client_auth,
        )?;
        Ok(ServerTls {
            config: Arc::new(config),
            client_auth: cfg.client_auth,
            super_user: cfg.x509_super_user.clone(),
        })
    }

    /// A new server side of a TLS connection.
    pub fn session(&self) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(self.config.clone())?;
        conn.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES_MAX));
        Ok(TlsSession {
            conn,
            established: false,
        })
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// The ids a client with certificate subject `subject` authenticates as, as the
    /// reference's X509AuthenticationProvider adds them: `x509:<subject>`, preceded by
    /// `super:<subject>` when it is X509AuthenticationProvider.superUser.
    pub fn x509_ids(&self, subject: &str) -> Vec<Id> {
        let mut ids = Vec::new();
        if self.super_user.as_deref() == Some(subject) {
            ids.push(Id::new("super", subject));
        }
        ids.push(Id::new("x509", subject));
        ids
    }
}

/// A rustls server config: these protocols, this key store (as named in zoo.cfg,
/// and as loaded), client certificates chained to `roots` as `auth` says (`roots`
/// is set unless `auth` is none). The client port's TLS and quorum TLS share it.
pub(crate) fn server_config(
    provider: &Arc<CryptoProvider>,
    protocols: &[TlsProtocol],
    (store, key_store): (&PemStore, KeyStore),
    roots: Option<Arc<RootCertStore>>,
    auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let versions: Vec<_> = protocols.iter().map(|p| version(*p)).collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match (roots, auth) {
        (Some(roots), ClientAuth::Need | ClientAuth::Want) => {
            builder.with_client_cert_verifier(client_verifier(roots, auth, provider)?)
        }
        _ => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(key_store.chain, key_store.key)
        .map_err(|e| TlsError::Store {
            key: store.key.clone(),
            path: store.path.clone(),
            why: StoreError::Key(e.to_string()),
        })
}

/// ring's provider with only the configured suites, in the configured order.
pub(crate) fn provider(suites: &[TlsSuite]) -> CryptoProvider {
    let mut p = ring::default_provider();
    p.cipher_suites = suites.iter().map(|s| rustls_suite(*s)).collect();
    p
}

fn rustls_suite(s: TlsSuite) -> SupportedCipherSuite {
    use ring::cipher_suite as cs;
    match s {
        TlsSuite::Tls13Aes128GcmSha256 => cs::TLS13_AES_128_GCM_SHA256,
        TlsSuite::Tls13Aes256GcmSha384 => cs::TLS13_AES_256_GCM_SHA384,
        TlsSuite::Tls13Chacha20Poly1305Sha256 => cs::TLS13_CHACHA20_POLY1305_SHA256,
        TlsSuite::EcdheEcdsaAes128GcmSha256 => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TlsSuite::EcdheEcdsaAes256GcmSha384 => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TlsSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        TlsSuite::EcdheRsaAes128GcmSha256 => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TlsSuite::EcdheRsaAes256GcmSha384 => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TlsSuite::EcdheRsaChacha20Poly1305Sha256 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    }
}

pub(crate) fn version(p: TlsProtocol) -> &'static rustls::SupportedProtocolVersion {
    match p {
        TlsProtocol::V1_2 => &rustls::version::TLS12,
        TlsProtocol::V1_3 => &rustls::version::TLS13,
    }
}

/// Client certificates must chain to a CA of the trust store; with clientAuth=want a
/// client may also present none.
pub(crate) fn client_verifier(
    roots: Arc<RootCertStore>,
    auth: ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    if auth == ClientAuth::Want {
        b = b.allow_unauthenticated();
    }
    b.build().map_err(|e| TlsError::Setup(e.to_string()))
}

/// The CA certificates of a PEM trust store.
pub(crate) fn load_roots(store: &PemStore) -> Result<Arc<RootCertStore>, TlsError> {
    let in_store = |why: StoreError| TlsError::Store {
        key: store.key.clone(),
        path: store.path.clone(),
        why,
    };
    let text = read_store(store)?;
    let certs = parse_trust_store(&text).map_err(in_store)?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            in_store(StoreError::TrustCertificate {
                index: i + 1,
                why: e.to_string(),
            })
        })?;
    }
    Ok(Arc::new(roots))
}

pub(crate) fn load_key_store(store: &PemStore) -> Result<KeyStore, TlsError> {
    let in_store = |why: StoreError| TlsError::Store {
        key: store.key.clone(),
        path: store.path.clone(),
        why,
    };
    let text = read_store(store)?;
    let password = store_password(store).map_err(in_store)?;
    let ks = parse_key_store(&text, password.as_deref()).map_err(in_store)?;
    if ks.password_unused {
        tracing::warn!(
            "{}={}: {} is set but the private key is not encrypted",
            store.key,
            store.path.display(),
            store.key.replace("location", "password"),
        );
    }
    Ok(ks)
}

/// The file's bytes, bounded by STORE_FILE_BYTES_MAX.
fn read_store(store: &PemStore) -> Result<Vec<u8>, TlsError> {
    let err = |why| TlsError::Store {
        key: store.key.clone(),
        path: store.path.clone(),
        why,
    };
    read_bounded(&store.path).map_err(err)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(StoreError::Read)?;
    let mut bytes = Vec::new();
    f.take(STORE_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(StoreError::Read)?;
    if bytes.len() as u64 > STORE_FILE_BYTES_MAX {
        return Err(StoreError::TooLarge);
    }
    Ok(bytes)
}

/// ssl.keyStore.passwordPath (its text, less one trailing newline, as the
/// reference's SecretUtils reads it) wins over ssl.keyStore.password.
fn store_password(store: &PemStore) -> Result<Option<String>, StoreError> {
    if let Some(path) = &store.password_path {
        let bytes = read_bounded(path).map_err(|e| match e {
            StoreError::Read(source) => StoreError::PasswordFile {
                path: path.clone(),
                source,
            },
            other => other,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        return Ok(Some(text.to_string()).filter(|p| !p.is_empty()));
    }
    Ok(store.password.as_ref().map(|s| s.0.clone()))
}

/// A PEM key store: the certificate chain (end-entity first) and one private key,
/// PKCS#8 (encrypted with `password` or not), PKCS#1 or SEC1.
pub fn parse_key_store(pem: &[u8], password: Option<&str>) -> Result<KeyStore, StoreError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(StoreError::LegacyEncryption);
    }
    let chain = certificates(pem)?;
    let (key, password_unused) = match encrypted_key_block(&text) {
        Some(block) => (decrypt_key(block, password)?, false),
        None => {
            let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => StoreError::NoKey,
                e => StoreError::Pem(e.to_string()),
            })?;
            (key, password.is_some())
        }
    };
    if chain.is_empty() {
        return Err(StoreError::NoCertificate);
    }
    Ok(KeyStore {
        chain,
        key,
        password_unused,
    })
}

/// A PEM trust store: its CA certificates.
pub fn parse_trust_store(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certs = certificates(pem)?;
    if certs.is_empty() {
        return Err(StoreError::NoCertificate);
    }
    Ok(certs)
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Pem(e.to_string()))
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The text of an `ENCRYPTED PRIVATE KEY` block, markers included.
fn encrypted_key_block(text: &str) -> Option<&str> {
    let start = text.find(ENCRYPTED_BEGIN)?;
    let end = text[start..].find(ENCRYPTED_END)? + start + ENCRYPTED_END.len();
    Some(&text[start..end])
}

/// PKCS#8 EncryptedPrivateKeyInfo (PBES2: PBKDF2 or scrypt with AES-CBC) → PKCS#8.
fn decrypt_key(block: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, StoreError> {
    let Some(password) = password else {
        return Err(StoreError::NeedsPassword);
    };
    let (_, doc) = der::Document::from_pem(block).map_err(|e| StoreError::Pem(e.to_string()))?;
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
        .map_err(|e| StoreError::Decrypt(e.to_string()))?;
    let plain = info
        .decrypt(password)
        .map_err(|e| StoreError::Decrypt(e.to_string()))?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        plain.as_bytes().to_vec(),
    )))
}

/// What reading a TLS connection produced.
#[derive(Debug)]
pub enum TlsInput {
    /// Decrypted bytes were put in the caller's buffer.
    Plain(usize),
    /// Records were processed that need an answer (handshake messages): send them
    /// before reading on.
    Progress,
    /// The handshake just finished; the client's end-entity certificate, if it
    /// presented one (only asked for with clientAuth need or want).
    Established(Option<CertificateDer<'static>>),
    /// The peer closed (close_notify or end of stream).
    Closed,
}

/// Why a TLS connection ends in error.
#[derive(Debug, Error)]
pub enum TlsFailure {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

impl TlsFailure {
    /// Whether this looks like a peer that does not speak TLS at all.
    pub fn is_not_tls(&self) -> bool {
        matches!(self, TlsFailure::Tls(rustls::Error::InvalidMessage(_)))
    }
}

/// One connection's TLS state (server side).
pub struct TlsSession {
    conn: ServerConnection,
    established: bool,
}

/// `std::io` over a non-blocking async stream for one poll: `Pending` becomes
/// `WouldBlock`, and the stream has registered the task's waker.
struct PollIo<'a, 'b, S> {
    stream: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> io::Read for PollIo<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.stream).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Unpin> io::Write for PollIo<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.stream).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    pub fn is_handshaking(&self) -> bool {
        !self.established
    }

    /// Decrypted bytes into `buf` (which must not be empty); reads the socket only
    /// when rustls holds none.
    pub fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<TlsInput, TlsFailure>> {
        debug_assert!(!buf.is_empty());
        loop {
            if !self.established && !self.conn.is_handshaking() {
                self.established = true;
                let cert = self
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .cloned();
                return Poll::Ready(Ok(TlsInput::Established(cert)));
            }
            match io::Read::read(&mut self.conn.reader(), buf) {
                Ok(0) => return Poll::Ready(Ok(TlsInput::Closed)),
                Ok(n) => return Poll::Ready(Ok(TlsInput::Plain(n))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(TlsInput::Closed))
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
            match self.conn.read_tls(&mut PollIo { stream, cx }) {
                Ok(0) => return Poll::Ready(Ok(TlsInput::Closed)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e.into())),
            }
            self.conn.process_new_packets()?;
            if self.conn.wants_write() {
                return Poll::Ready(Ok(TlsInput::Progress));
            }
        }
    }

    /// Hands plaintext to rustls; returns how much it took (0 when its buffer is full).
    pub fn write_plain(&mut self, plain: &[u8]) -> usize {
        io::Write::write(&mut self.conn.writer(), plain).unwrap_or(0)
    }

    /// Sends the records rustls holds, until none is left (`Ready(Ok)`) or the socket
    /// is full (`Pending`).
    pub fn poll_send<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut PollIo { stream, cx }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Records are waiting for the socket.
    pub fn has_unsent(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues close_notify (sent by the next `poll_send`).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

#[cfg(test)]
mod tests;
