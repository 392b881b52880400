//! TLS for hotserve's listeners, with rustls and its ring provider: the certificate chain and
//! key of `tls_cert_file` and `tls_key_file` ([`Certificate`], a [`Watched`] credential, so a
//! rotated pair is picked up without a restart and a bad one keeps the previous pair), and the
//! [`TlsAcceptor`] a listener wraps its accepted connections with. Every acceptor asks the one
//! [`Certificates`] for the pair at each handshake, so a new pair serves the next connection
//! on every listener while established connections keep the one they were made with.
//!
//! Plugging it into another listener: take `Arc<Certificates>` (built once by `app.rs`), call
//! [`acceptor`] with the listener's ALPN protocols (`&[b"h2"]` for gRPC), then for each
//! accepted `TcpStream`, inside the connection's own task (a slow handshake must not hold
//! the accept loop), `acceptor.accept(stream).await` and serve the returned stream.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

use super::credentials::{Credential, CredentialError, Watched};

/// The certificate chain and key in use, reloaded when their files change.
pub type Certificates = Watched<Certificate>;

/// A certificate chain with its private key, checked to belong together.
pub struct Certificate {
    /// What rustls serves.
    key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate (DER), hex: what `openssl x509 -fingerprint -sha256`
    /// prints, without the colons.
    fingerprint: String,
}

impl Credential for Certificate {
    const NAME: &'static str = "tls";
    const SETTINGS: &'static [&'static str] = &["tls_cert_file", "tls_key_file"];
    const WHAT: &'static str = "certificate and key";

    /// `files` are the certificate file, then the key file.
    fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<Certificate, CredentialError> {
        let [(cert_path, cert_pem), (key_path, key_pem)] = files else {
            unreachable!("a certificate is read from two files");
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| CredentialError::BadPem {
                path: cert_path.clone(),
                why: pem_problem(err),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(CredentialError::NoCertificate {
                path: cert_path.clone(),
            });
        };
        let fingerprint = hex(&Sha256::digest(leaf));
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| match err {
            pem::Error::NoItemsFound => CredentialError::NoKey {
                path: key_path.clone(),
            },
            err => CredentialError::BadPem {
                path: key_path.clone(),
                why: pem_problem(err),
            },
        })?;
        let provider = rustls::crypto::ring::default_provider();
        // Parses the leaf certificate and checks that the key is its key.
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(|err| {
            CredentialError::BadPair {
                cert: cert_path.clone(),
                key: key_path.clone(),
                why: err.to_string(),
            }
        })?;
        Ok(Certificate {
            key: Arc::new(key),
            fingerprint,
        })
    }

    type Details = CertificateDetails;

    fn describe(&self) -> CertificateDetails {
        CertificateDetails {
            certificate_sha256: self.fingerprint.clone(),
        }
    }
}

/// What `/health` shows of the certificate in use.
#[derive(Debug, serde::Serialize)]
pub struct CertificateDetails {
    /// SHA-256 of the leaf certificate (DER), hex.
    pub certificate_sha256: String,
}

impl Certificate {
    /// SHA-256 of the leaf certificate, hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Reads the pair at startup. Blocking.
pub fn load(
    cert: PathBuf,
    key: PathBuf,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Certificates, CredentialError> {
    Certificates::load(vec![cert, key], metrics)
}

/// Hands rustls the pair in use at each handshake.
struct Current(Arc<Certificates>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pair of tls_cert_file and tls_key_file")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }
}

/// Wraps accepted connections in TLS; cheap to clone, one per listener.
#[derive(Clone)]
pub struct TlsAcceptor {
    /// The rustls server configuration, whose certificate comes from [`Certificates`].
    inner: tokio_rustls::TlsAcceptor,
    /// How long a client may take to complete the handshake.
    handshake_timeout: Duration,
}

/// An acceptor that offers `alpn` (the listener's protocols, most preferred first:
/// `&[b"h2", b"http/1.1"]`, `&[b"h2"]`) and gives up on a handshake after `handshake_timeout`.
/// TLS 1.2 and 1.3, rustls's default cipher suites, no client certificates.
pub fn acceptor(
    certificates: Arc<Certificates>,
    alpn: &[&[u8]],
    handshake_timeout: Duration,
) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Current(certificates)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor {
        inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        handshake_timeout,
    }
}

impl TlsAcceptor {
    /// Performs the server side of the handshake on `stream` (a `TcpStream` or any byte
    /// stream), within the handshake timeout.
    pub async fn accept<IO>(
        &self,
        stream: IO,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.inner.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the TLS handshake took longer than header_read_timeout",
            )),
        }
    }
}

/// Why an accepted connection was not served over TLS.
#[derive(Debug)]
pub enum Refusal {
    /// It started with a plain HTTP request, which was answered with a 400 that says so.
    PlainHttp,
    /// The handshake failed or timed out.
    Handshake(std::io::Error),
}

/// The answer to a plain HTTP request on a TLS port (what nginx does), in plain HTTP.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: application/json\r\n\
Connection: close\r\n\
Content-Length: 111\r\n\r\n\
{\"error_code\": \"BAD_REQUEST\", \"message\": \"this port speaks HTTPS (TLS); send the request to https:// instead\"}\n";

/// What a connection's first byte was, looked at before the handshake (the caller peeks it,
/// within [`TlsAcceptor::handshake_timeout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstByte {
    Byte(u8),
    /// The client closed the connection, or reading it failed.
    Nothing,
    /// Nothing came within the handshake timeout.
    TimedOut,
}

impl TlsAcceptor {
    /// How long a client may take to complete the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// [`TlsAcceptor::accept`] for a connection whose `first` byte was peeked (within the
    /// handshake timeout, at `started`): a plain HTTP request (its first byte an ASCII letter,
    /// where a TLS handshake starts with 0x16) is answered with a 400 in plain HTTP instead of
    /// a failed handshake the client cannot read.
    pub async fn accept_or_refuse<IO>(
        &self,
        mut stream: IO,
        first: FirstByte,
        started: tokio::time::Instant,
    ) -> Result<tokio_rustls::server::TlsStream<IO>, Refusal>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt as _;
        match first {
            FirstByte::TimedOut => {
                return Err(Refusal::Handshake(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing within header_read_timeout",
                )))
            }
            FirstByte::Byte(byte) if byte.is_ascii_uppercase() => {
                let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                let _ = stream.shutdown().await;
                return Err(Refusal::PlainHttp);
            }
            FirstByte::Byte(_) | FirstByte::Nothing => {}
        }
        // The handshake has what is left of the timeout.
        let left = self.handshake_timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, self.inner.accept(stream)).await {
            Ok(result) => result.map_err(Refusal::Handshake),
            Err(_) => Err(Refusal::Handshake(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the TLS handshake took longer than header_read_timeout",
            ))),
        }
    }
}

/// A PEM error in words (rustls's own print the markers as lists of bytes).
fn pem_problem(err: pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(why) => format!("a block is not valid base64 ({why})"),
        err => err.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
