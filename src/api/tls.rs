//! TLS serving for the API listener (rustls, ring): a certificate chain and key from PEM files,
//! reloaded when either file changes (a cert-manager renewal rewrites the Secret's files; no
//! restart needed), and optionally client-certificate verification against a CA bundle (mTLS).
//!
//! A reload that fails (a half-written file, a key that does not match) keeps serving the
//! previous certificate and logs the error; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads a certificate chain and its private key.
fn load_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error(cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert_file, e))?;
    if chain.is_empty() {
        return Err(file_error(cert_file, "no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        file_error(
            key_file,
            format!("does not match {}: {e}", cert_file.display()),
        )
    })?;
    Ok(certified)
}

/// The current certificate, swapped on reload.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The files of `tls.*`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, every client must present a certificate it issued.
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change.
    pub reload_interval: Duration,
}

/// A TLS acceptor whose certificate follows its files.
pub struct Tls {
    /// What the accept loop hands each connection to.
    pub acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
    files: TlsFiles,
}

impl Tls {
    /// Loads the files; every error names the file.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let current = Arc::new(Current(ArcSwap::from_pointee(load_key(
            &files.cert_file,
            &files.key_file,
        )?)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &files.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
                    roots
                        .add(cert.map_err(|e| file_error(path, e))?)
                        .map_err(|e| file_error(path, e))?;
                }
                if roots.is_empty() {
                    return Err(file_error(path, "no CERTIFICATE block"));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            files,
        })
    }

    /// Watches the certificate and key files until `stop`, reloading on a change of either.
    pub fn reloader(&self, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let current = self.current.clone();
        let files = self.files.clone();
        async move {
            let stamp = |files: &TlsFiles| {
                let modified =
                    |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
                (modified(&files.cert_file), modified(&files.key_file))
            };
            let mut seen: (Option<SystemTime>, Option<SystemTime>) = stamp(&files);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(files.reload_interval) => {}
                    _ = stop.cancelled() => return,
                }
                let now = stamp(&files);
                if now == seen {
                    continue;
                }
                match load_key(&files.cert_file, &files.key_file) {
                    Ok(key) => {
                        current.0.store(Arc::new(key));
                        seen = now;
                        tracing::info!(cert = %files.cert_file.display(), "TLS certificate reloaded");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS certificate not reloaded; serving the previous one");
                    }
                }
            }
        }
    }
}
