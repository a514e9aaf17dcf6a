//! Accept loops (hyper 1.x, HTTP/1.1 with keep-alive, optionally over TLS) with a bounded
//! number of connections and graceful shutdown.
//!
//! Every resource a connection holds is bounded: at most `max_connections` are open; at the
//! cap, the connection that has been idle longest (no request being handled) is closed to make
//! room, so a flood of idle or half-sent connections can never lock out a kubelet probe or a
//! real sender — only when every connection is busy does a new one wait in the accept backlog.
//! Headers must arrive within `header_read_timeout` and fit `max_header_bytes` (hyper answers
//! 431 beyond it); a connection idle for `idle_timeout` is closed. A TLS handshake has the
//! header deadline too, and runs on the connection's own task, never on the accept loop.
//!
//! On the stop signal a listener stops accepting, asks open connections to close after their
//! current request, and waits for them up to the grace period.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Which listener, for logs and metrics: `api`, `peer`, `health` or `metrics`.
    pub name: &'static str,
    /// Open connections at once.
    pub max_connections: usize,
    /// Deadline for a request's headers (and for the TLS handshake).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; at least 8192.
    pub max_header_bytes: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// How long open connections may take to finish after the stop signal.
    pub grace: Duration,
}

/// Where a request came from, in its extensions: the peer address and whether it arrived over
/// TLS.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The remote socket address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// A connection as the accept loop sees it.
struct Handle {
    /// Requests being handled.
    busy: Arc<AtomicUsize>,
    /// Milliseconds since the listener started when the last request ended (or the connection
    /// opened).
    idle_since: Arc<AtomicU64>,
    close: CancellationToken,
}

/// The open connections, oldest first (ids grow).
type Registry = Arc<Mutex<BTreeMap<u64, Handle>>>;

/// Serves `listener` with `handler` until `stop` is cancelled, then drains. With `tls`, every
/// connection is a TLS one.
///
/// Returns false when the grace period ran out with connections still open.
pub async fn serve<H, F>(
    listener: TcpListener,
    options: ServeOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Metrics,
    handler: H,
    stop: CancellationToken,
) -> bool
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    let started = Instant::now();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let registry: Registry = Arc::default();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_header_size(options.max_header_bytes)
        // The read buffer: a whole head, or body chunks; never hyper's default of ~400 KB.
        .max_buf_size(options.max_header_bytes.max(64 * 1024))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut next_id = 0u64;
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, listener = options.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if evict_idlest(&registry) {
                    metrics.connection_evicted(options.name);
                }
                // The evicted connection closes at once; if every connection was busy, this
                // one waits for the first to finish.
                tokio::select! {
                    permit = connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = stop.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let handle = Handle {
            busy: Arc::default(),
            idle_since: Arc::new(AtomicU64::new(millis_since(started))),
            close: stop.child_token(),
        };
        let connection = Connection {
            busy: handle.busy.clone(),
            idle_since: handle.idle_since.clone(),
            close: handle.close.clone(),
            started,
            idle_timeout: options.idle_timeout,
            builder: builder.clone(),
        };
        if let Ok(mut open) = registry.lock() {
            open.insert(id, handle);
        }
        let registry = registry.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let handshake_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => {
                    let peer = Peer { addr, tls: false };
                    connection.drive(stream, peer, handler).await;
                }
                Some(acceptor) => {
                    // A handshake holds its connection's slot: it ends at the header deadline,
                    // or at once when the connection is evicted or the listener stops.
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    let close = connection.close.clone();
                    tokio::select! {
                        result = handshake => match result {
                            Ok(Ok(stream)) => {
                                let peer = Peer { addr, tls: true };
                                connection.drive(stream, peer, handler).await;
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%error, %addr, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                        },
                        _ = close.cancelled() => {
                            tracing::debug!(%addr, "TLS handshake abandoned: connection closed");
                        }
                    }
                }
            }
            if let Ok(mut open) = registry.lock() {
                open.remove(&id);
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it is closed: all of them back means drained.
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    tokio::time::timeout(options.grace, connections.acquire_many(all))
        .await
        .is_ok()
}

/// Closes the connection idle longest; false when every connection is busy.
fn evict_idlest(registry: &Registry) -> bool {
    let Ok(open) = registry.lock() else {
        return false;
    };
    let idlest = open
        .values()
        .filter(|handle| handle.busy.load(Ordering::Acquire) == 0 && !handle.close.is_cancelled())
        .min_by_key(|handle| handle.idle_since.load(Ordering::Acquire));
    match idlest {
        Some(handle) => {
            handle.close.cancel();
            true
        }
        None => false,
    }
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection's state, shared with the accept loop through its [`Handle`].
struct Connection {
    busy: Arc<AtomicUsize>,
    idle_since: Arc<AtomicU64>,
    close: CancellationToken,
    started: Instant,
    idle_timeout: Duration,
    builder: Arc<http1::Builder>,
}

impl Connection {
    /// Serves requests on `io` until the client closes, the connection is idle too long, it is
    /// evicted, or the listener stops (then after the current request).
    async fn drive<I, H, F>(self, io: I, peer: Peer, handler: H)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Bytes>> + Send + 'static,
    {
        let (busy, idle_since, started) =
            (self.busy.clone(), self.idle_since.clone(), self.started);
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            busy.fetch_add(1, Ordering::AcqRel);
            let response = handler(request);
            let (busy, idle_since) = (busy.clone(), idle_since.clone());
            async move {
                let response = response.await;
                idle_since.store(millis_since(started), Ordering::Release);
                busy.fetch_sub(1, Ordering::AcqRel);
                Ok::<_, Infallible>(response.map(Full::new))
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        loop {
            let idle_check = tokio::time::sleep(self.until_idle_check());
            tokio::select! {
                _ = connection.as_mut() => break,
                _ = self.close.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = idle_check, if !closing => {
                    if self.busy.load(Ordering::Acquire) == 0 && self.idle_for() >= self.idle_timeout {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }

    fn idle_for(&self) -> Duration {
        let since = self.idle_since.load(Ordering::Acquire);
        Duration::from_millis(millis_since(self.started).saturating_sub(since))
    }

    /// When to look again whether the connection has been idle for the whole timeout.
    fn until_idle_check(&self) -> Duration {
        if self.busy.load(Ordering::Acquire) > 0 {
            return self.idle_timeout;
        }
        self.idle_timeout
            .saturating_sub(self.idle_for())
            .max(Duration::from_millis(10))
    }
}
