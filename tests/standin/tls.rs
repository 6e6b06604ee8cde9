//! TLS for the stand-in (rustls with ring): PEM files read into
//! certificates and keys, server and client configurations as
//! Elasticsearch, Kibana and Logstash set them up, and a connection type
//! that is plain TCP or TLS, so the HTTP code reads and writes either.
//!
//! Verification modes, as Elastic names them: `full` (the chain to a
//! trusted CA and the host name), `certificate` (the chain only), `none`
//! (nothing; the `-k` of the client). A certificate refused by a verifier
//! here is named (subject CN and serial) in the handshake's error: the
//! verifier notes it for the thread that runs the handshake
//! ([`take_refused`]), since rustls' error has no room for it.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

use crate::x509;

/// How much of the peer's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The chain to a trusted CA, and the host name.
    Full,
    /// The chain to a trusted CA only.
    Certificate,
    /// Nothing (the handshake's signatures still are).
    None,
}

impl Verify {
    /// Elastic's names: `full`, `certificate`, `none`.
    pub fn parse(v: &str) -> Result<Verify, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Verify::Full),
            "certificate" => Ok(Verify::Certificate),
            "none" => Ok(Verify::None),
            other => Err(format!(
                "unknown verification mode [{other}] (full, certificate or none)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verify::Full => "full",
            Verify::Certificate => "certificate",
            Verify::None => "none",
        }
    }
}

/// ring's provider. rustls 0.23.48 deprecates it for lacking post-quantum
/// key exchange; aws-lc has that but needs cmake to build, and a test
/// double needs no post-quantum secrecy.
pub fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (a chain, or a bundle of CAs); an
/// error names the file when it cannot be read or holds no certificate.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (no \"BEGIN CERTIFICATE\" section)",
            path.display()
        ));
    }
    for (i, c) in certs.iter().enumerate() {
        x509::summary(c).map_err(|e| format!("{}: certificate {} is not X.509: {e}", path.display(), i + 1))?;
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE
/// KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{} holds no private key (no \"BEGIN PRIVATE KEY\" section)",
            path.display()
        ),
        e => format!("{} is not a PEM private key: {e}", path.display()),
    })
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for ca in cas {
        store
            .add(ca.clone())
            .map_err(|e| format!("a CA certificate cannot be trusted: {e}"))?;
    }
    Ok(Arc::new(store))
}

/// A server that presents `chain` (signed with `key`); with `client_cas`,
/// it requires a client certificate signed by one of them (mutual TLS).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_cas {
        Some(cas) => {
            let inner = WebPkiClientVerifier::builder_with_provider(roots(cas)?, provider())
                .build()
                .map_err(|e| format!("client verifier: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(NamingClientVerifier { inner }))
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the key does not go with the certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// A client that trusts `cas` as `verify` says; with `identity` (chain,
/// key) it presents that certificate when the server asks (mutual TLS).
pub fn client_config(
    cas: &[CertificateDer<'static>],
    verify: Verify,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::None => Arc::new(AnyServer {
            provider: provider.clone(),
        }),
        Verify::Full | Verify::Certificate => {
            let inner = WebPkiServerVerifier::builder_with_provider(roots(cas)?, provider.clone())
                .build()
                .map_err(|e| format!("server verifier: {e}"))?;
            Arc::new(NamingServerVerifier {
                inner,
                hostname: verify == Verify::Full,
            })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the key does not go with the certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

thread_local! {
    /// The certificate the last refusal on this thread was about.
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Who the certificate refused by the last handshake on this thread
/// belonged to (`CN=name serial 1a2b`), if a verifier refused one.
pub fn take_refused() -> Option<String> {
    REFUSED.with(|r| r.borrow_mut().take())
}

fn note_refused(end_entity: &CertificateDer<'_>) {
    let who = x509::summary(end_entity)
        .map(|s| s.identity())
        .unwrap_or_else(|e| format!("an unreadable certificate ({e})"));
    REFUSED.with(|r| *r.borrow_mut() = Some(who));
}

/// WebPKI's client verifier, noting whom it refused.
#[derive(Debug)]
struct NamingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for NamingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let result = self.inner.verify_client_cert(end_entity, intermediates, now);
        if result.is_err() {
            note_refused(end_entity);
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// WebPKI's server verifier: the host name checked only with `hostname`
/// (`certificate` mode); whom it refused noted.
#[derive(Debug)]
struct NamingServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    hostname: bool,
}

impl ServerCertVerifier for NamingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // WebPKI checks the chain first and the name last: a name error
        // means the chain is good.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.hostname => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                note_refused(end_entity);
                Err(e)
            }
            ok => ok,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Any server certificate is accepted (verification `none`, `-k`).
#[derive(Debug)]
struct AnyServer {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A failed handshake: the error, and whose certificate was refused if a
/// verifier refused one.
#[derive(Debug)]
pub struct HandshakeError {
    pub error: String,
    pub refused: Option<String>,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refused {
            Some(who) => write!(f, "certificate [{who}] refused: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

fn handshake_error(e: io::Error) -> HandshakeError {
    HandshakeError {
        error: e.to_string(),
        refused: take_refused(),
    }
}

/// Whether the first byte a client sent can start a TLS handshake (a
/// handshake record, 0x16); `false` for plain HTTP (`GET ...`). Waits for
/// that byte as long as the stream's read timeout.
pub fn starts_with_handshake(tcp: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first)? {
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before a byte was sent",
        )),
        _ => Ok(first[0] == 0x16),
    }
}

/// The server side of a handshake on an accepted connection, done at once
/// (so a refused peer shows here, not at the first read).
pub fn accept(tcp: TcpStream, config: &Arc<ServerConfig>) -> Result<Conn, HandshakeError> {
    let conn = ServerConnection::new(config.clone()).map_err(|e| HandshakeError {
        error: e.to_string(),
        refused: None,
    })?;
    let mut stream = StreamOwned::new(conn, tcp);
    take_refused();
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(handshake_error)?;
    }
    Ok(Conn::Server(Box::new(stream)))
}

/// The client side of a handshake to `host` (a name or an address, what
/// the certificate must name under `full` verification), done at once.
pub fn connect(tcp: TcpStream, config: &Arc<ClientConfig>, host: &str) -> Result<Conn, HandshakeError> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string()).map_err(|e| {
        HandshakeError {
            error: format!("{host} is not a valid server name: {e}"),
            refused: None,
        }
    })?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| HandshakeError {
        error: e.to_string(),
        refused: None,
    })?;
    let mut stream = StreamOwned::new(conn, tcp);
    take_refused();
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(handshake_error)?;
    }
    Ok(Conn::Client(Box::new(stream)))
}

/// A connection: plain TCP or TLS (either side). Dropping a TLS one sends
/// `close_notify` first, so the peer reads a clean end.
pub enum Conn {
    Plain(TcpStream),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// The peer's certificate (its end-entity one), when it sent one.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        match self {
            Conn::Plain(_) => None,
            Conn::Server(s) => s.conn.peer_certificates()?.first(),
            Conn::Client(s) => s.conn.peer_certificates()?.first(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Server(s) => s.read(buf),
            Conn::Client(s) => s.read(buf),
        };
        match result {
            // A peer that closes without close_notify (many clients do
            // after the answer): the end of the stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !matches!(self, Conn::Plain(_)) => Ok(0),
            other => other,
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Server(s) => s.write(buf),
            Conn::Client(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Server(s) => s.flush(),
            Conn::Client(s) => s.flush(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Best effort, writes only (never waits for the peer, which may be
        // gone already).
        fn close<C, S>(conn: &mut C, sock: &mut TcpStream)
        where
            C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
        {
            conn.send_close_notify();
            while conn.wants_write() {
                match conn.write_tls(sock) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        match self {
            Conn::Plain(_) => {}
            Conn::Server(s) => close(&mut s.conn, &mut s.sock),
            Conn::Client(s) => close(&mut s.conn, &mut s.sock),
        }
    }
}
