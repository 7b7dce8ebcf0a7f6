//! Serving the router on a socket: plain HTTP/1.1 (behind an operator's proxy) or TLS with rustls and the `ring`
//! provider, one task per connection, and a deadline on the request head so that a client that sends half a
//! request line and stalls holds a connection only that long. The body's deadline is the router's (`api`).
//!
//! A module of its own, apart from `api`, because tests run the same router on a plain loopback socket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// How long a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor for the certificate chain and key in the two PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<std::result::Result<_, _>>())
        .map_err(|e| Error::Tls { what: format!("cannot read certificates from {}: {e}", cert.display()) })?;
    if certs.is_empty() {
        return Err(Error::Tls { what: format!("no certificate in {}", cert.display()) });
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls { what: format!("cannot read a private key from {}: {e}", key.display()) })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls { what: e.to_string() })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls { what: format!("the certificate and key do not go together: {e}") })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds `addr`.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr: addr.to_owned(), source })
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router, tls: Option<TlsAcceptor>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(router);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let result = match tls {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => http.serve_connection(TokioIo::new(stream), service).await,
                    Ok(Err(e)) => return log::debug!("{peer}: TLS handshake: {e}"),
                    Err(_) => return log::debug!("{peer}: TLS handshake timed out"),
                },
            };
            if let Err(e) = result {
                log::debug!("{peer}: {e}");
            }
        });
    }
}

/// Serves `router` on a new loopback port in a task of the current runtime; returns the address and the task.
pub async fn start_loopback(router: Router) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = bind("127.0.0.1:0").await?;
    let addr = listener.local_addr().map_err(|source| Error::Listen { addr: "127.0.0.1:0".into(), source })?;
    Ok((addr, tokio::spawn(serve(listener, router, None))))
}
