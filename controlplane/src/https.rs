//! The `https` listener: TLS (rustls with the ring provider) in front of an
//! axum [`Router`], HTTP/1.1 or HTTP/2 as the client's ALPN picks.
//!
//! ```text
//!   TcpListener ── accept ──► TLS handshake (10 s) ──► hyper auto (h1 | h2) ──► Router
//!        │                        │ fails: debug log, counted
//!        └── shutdown: stop accepting, let open connections finish (5 s)
//! ```
//!
//! One task per connection. A bad handshake (a port scanner, a client that
//! does not trust the self-signed certificate, plain HTTP on the TLS port)
//! costs that task only: it is logged at debug level and counted, never
//! stops the accept loop. HTTP upgrades (WebSocket, for `/signal`) are
//! passed through to the router.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may take to finish after shutdown begins.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(5);

/// The ALPN protocols offered, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What the listener has seen, for logs and metrics (read at scrape time).
#[derive(Debug, Default)]
pub struct HttpsCounters {
    /// TCP connections accepted.
    pub accepted: AtomicU64,
    /// Connections whose TLS handshake failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Connections that ended with an HTTP protocol error.
    pub connection_errors: AtomicU64,
}

impl HttpsCounters {
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then
/// stops accepting and waits up to [`DRAIN_WITHIN`] for open connections.
/// Handlers can read the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    counters: Arc<HttpsCounters>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin; the listener itself stays usable.
                    tracing::warn!(error = %e, "https accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let counters = counters.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "https connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_WITHIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("https connections still open {DRAIN_WITHIN:?} after shutdown; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::load_or_generate;
    use axum::routing::get;
    use rustls_pki_types::ServerName;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client config that trusts exactly `cert`.
    fn client_config(identity: &crate::tls::TlsIdentity, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.chain[0].clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }

    #[tokio::test]
    async fn serves_over_tls_survives_bad_handshakes_and_stops() {
        let dir = std::env::temp_dir().join(format!("bh-https-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = load_or_generate(None, &dir, &["localhost".to_string()]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/hello",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("hello {}", peer.ip()) }),
        );
        let counters = Arc::new(HttpsCounters::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            identity.server_config(&ALPN).unwrap(),
            router,
            counters.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));

        // Plain HTTP on the TLS port: the handshake fails, the server lives on.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = plain.read_to_end(&mut sink).await;

        // HTTP/1.1 over TLS, certificate checked.
        let connector = tokio_rustls::TlsConnector::from(client_config(&identity, b"http/1.1"));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hello 127.0.0.1"), "{response}");

        // h2 is offered and chosen when the client asks for it.
        let connector = tokio_rustls::TlsConnector::from(client_config(&identity, b"h2"));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        drop(tls);

        assert_eq!(counters.handshake_failures(), 1);
        assert!(counters.accepted() >= 3);
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stops").unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed after shutdown");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
