//! Accept loops (hyper 1.x, HTTP/1.1 with keep-alive) with a connection cap and graceful
//! shutdown: on the stop signal a listener stops accepting, asks open connections to close
//! after their current request, and waits for them up to the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Open connections at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Deadline for a request's headers.
    pub header_read_timeout: Duration,
    /// How long open connections may take to finish after the stop signal.
    pub grace: Duration,
}

/// Serves `listener` with `handler` until `stop` is cancelled, then drains.
///
/// Returns false when the grace period ran out with connections still open.
pub async fn serve<H, F>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    stop: CancellationToken,
) -> bool
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = handler(request);
            async move { Ok::<_, Infallible>(response.await.map(Full::new)) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::time::timeout(options.grace, graceful.shutdown())
        .await
        .is_ok()
}
