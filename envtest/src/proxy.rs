//! A byte-level TCP proxy in front of kube-apiserver that injects network faults on command:
//! latency, a blackhole, connection resets. TLS passes through untouched (the proxy never
//! looks at the bytes), and clients keep trusting the apiserver's certificate, which names
//! `127.0.0.1` whatever the port.
//!
//! A fault applies at once to new *and* existing connections, which is what a test of a
//! client with a connection pool needs: a fault that only hit new connections would miss
//! every request on a kept-alive one.
//!
//! The proxy runs on a thread of its own with its own single-threaded runtime, not on the
//! caller's: a [`crate::shared`] control plane outlives the runtime of the test that started
//! it, and its proxy must too. Dropping the [`Proxy`] stops that runtime, which ends every task
//! and closes every socket.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections (further ones wait in the listen backlog),
//! and per direction of a connection at most [`QUEUE_CHUNKS`] chunks of at most
//! [`CHUNK_BYTES`] in flight, however long a blackhole or a latency holds them.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

/// Connections forwarded at the same time. A gateway's connection pool under load opens a few
/// dozen; the cap is there so that a client leaking connections into a blackhole (each timed
/// out request abandons one) cannot exhaust file descriptors.
pub const MAX_CONNECTIONS: usize = 512;

/// Largest chunk read from one side before it is forwarded to the other.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// Chunks read but not yet written, per direction of a connection. With a latency they are
/// the bytes "on the wire": throughput per connection is at most
/// `QUEUE_CHUNKS * CHUNK_BYTES / latency` (1 MiB/s at 250 ms), plenty for API calls.
pub const QUEUE_CHUNKS: usize = 16;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A network fault between clients and kube-apiserver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    #[default]
    None,
    /// Delay every chunk, in both directions, by this much (a round trip takes at least
    /// twice as long). Chunks already in flight keep the delay they were read with.
    Latency(Duration),
    /// Accept connections and keep them open, but forward nothing in either direction until
    /// the fault changes; then what was held back is delivered, like a healed partition whose
    /// TCP retransmits get through.
    Blackhole,
    /// Close every connection with a TCP RST, and reset each new one as soon as it is
    /// accepted, until the fault changes.
    Reset,
}

impl Fault {
    /// The delay this fault adds to a chunk.
    fn latency(self) -> Duration {
        match self {
            Fault::Latency(latency) => latency,
            Fault::None | Fault::Blackhole | Fault::Reset => Duration::ZERO,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::Latency(latency) => write!(f, "latency {latency:?}"),
            Fault::Blackhole => f.write_str("blackhole"),
            Fault::Reset => f.write_str("reset"),
        }
    }
}

/// A running proxy. Dropping it stops it: the listener closes and every connection with it.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The current fault; every connection task holds a receiver and reacts to changes.
    faults: watch::Sender<Fault>,
    /// Dropped to stop the accept loop; the proxy's runtime, and every task on it, ends with it.
    stop: Option<oneshot::Sender<()>>,
    /// Joined on drop, so that the port and all connections are closed when drop returns.
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on `listener` (from [`listen`]) forwarding to `upstream`.
    pub(crate) fn start(listener: std::net::TcpListener, upstream: SocketAddr) -> Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (faults, fault) = watch::channel(Fault::None);
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the proxy's runtime")?;
        let thread = std::thread::Builder::new()
            .name("envtest-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, upstream, fault, stopped).await,
                        Err(error) => tracing::warn!(%error, "the proxy cannot listen"),
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })
            .context("starting the proxy's thread")?;
        tracing::debug!(%addr, %upstream, "proxy started");
        Ok(Self {
            addr,
            upstream,
            faults,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to (kube-apiserver).
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Sets the fault; it applies to existing connections and new ones from now on.
    pub fn set(&self, fault: Fault) {
        tracing::info!(%fault, "proxy fault");
        self.faults.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.faults.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds a free loopback port for a proxy. Separate from [`Proxy::start`] so that the port is
/// held while the control plane picks its other ports, which therefore cannot collide with it.
pub(crate) fn listen() -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the proxy's port")
}

/// The accept loop: one task per connection, at most [`MAX_CONNECTIONS`] at a time.
async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    mut stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = accept(&listener, &permits) => accepted,
        };
        match accepted {
            Ok((client, permit)) => {
                tokio::spawn(connection(client, upstream, faults.clone(), permit));
            }
            Err(error) => {
                tracing::debug!(%error, "proxy accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> io::Result<(TcpStream, OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .map_err(io::Error::other)?;
    let (client, _) = listener.accept().await?;
    Ok((client, permit))
}

/// One proxied connection, until either side closes it, or a [`Fault::Reset`] does.
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Fault>,
    _permit: OwnedSemaphorePermit,
) {
    if *faults.borrow_and_update() == Fault::Reset {
        reset(client);
        return;
    }
    let connected = tokio::select! {
        connected = TcpStream::connect(upstream) => connected,
        () = until_reset(&mut faults) => {
            reset(client);
            return;
        }
    };
    let mut server = match connected {
        Ok(server) => server,
        Err(error) => {
            // The apiserver is stopped: the client sees its connection reset, the closest a
            // proxy can come to "connection refused".
            tracing::debug!(%error, "proxy cannot reach the apiserver");
            reset(client);
            return;
        }
    };
    // Both sides are loopback; Nagle would only add delay to small writes.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset_requested = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let forward = {
            let (upstream_faults, downstream_faults) = (faults.clone(), faults.clone());
            async move {
                tokio::try_join!(
                    pump(client_read, server_write, upstream_faults),
                    pump(server_read, client_write, downstream_faults),
                )
            }
        };
        tokio::select! {
            forwarded = forward => {
                if let Err(error) = forwarded {
                    tracing::debug!(%error, "proxied connection failed");
                }
                false
            }
            () = until_reset(&mut faults) => true,
        }
    };
    if reset_requested {
        reset(client);
        reset(server);
    }
}

/// Returns once the fault is [`Fault::Reset`] (or the proxy is going away).
async fn until_reset(faults: &mut watch::Receiver<Fault>) {
    let _ = faults.wait_for(|fault| *fault == Fault::Reset).await;
}

/// Closes `stream` with an RST instead of a FIN: `SO_LINGER` 0, then close.
fn reset(stream: TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "setting SO_LINGER");
    }
    drop(stream);
}

/// Bytes read from one side, to be written to the other at `due`.
struct Chunk {
    /// Empty for the end of the stream (the reader saw EOF), which is forwarded as a shutdown
    /// of the writing side, so half-closed connections behave as without the proxy.
    bytes: Vec<u8>,
    due: Instant,
}

/// One direction of a connection: reads chunks as they come, stamps each with the latency in
/// force, and writes it once it is due and no blackhole holds it. The reader and the writer
/// run concurrently, so a latency delays the bytes without cutting the throughput to one
/// chunk per latency.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    faults: watch::Receiver<Fault>,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let read = {
        let faults = faults.clone();
        async move {
            let mut buffer = vec![0; CHUNK_BYTES];
            loop {
                let read = from.read(&mut buffer).await?;
                let chunk = Chunk {
                    bytes: buffer[..read].to_vec(),
                    due: Instant::now() + faults.borrow().latency(),
                };
                // The writer is gone only if writing failed, which the join reports.
                if queue.send(chunk).await.is_err() || read == 0 {
                    return Ok::<_, io::Error>(());
                }
            }
        }
    };
    let write = {
        let mut faults = faults;
        async move {
            while let Some(chunk) = queued.recv().await {
                if chunk.due > Instant::now() {
                    tokio::time::sleep_until(chunk.due).await;
                }
                if faults
                    .wait_for(|fault| *fault != Fault::Blackhole)
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                if chunk.bytes.is_empty() {
                    return to.shutdown().await;
                }
                to.write_all(&chunk.bytes).await?;
            }
            Ok(())
        }
    };
    tokio::try_join!(read, write).map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An echo server on a free port; returns its address.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0; message.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn forwards_and_applies_faults_to_an_open_connection() {
        let proxy = Proxy::start(listen().unwrap(), echo_server().await).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").await.unwrap(), b"hello");

        proxy.set(Fault::Latency(Duration::from_millis(100)));
        let began = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").await.unwrap(), b"slow");
        assert!(began.elapsed() >= Duration::from_millis(200), "{began:?}");

        proxy.set(Fault::Blackhole);
        let held =
            tokio::time::timeout(Duration::from_millis(300), round_trip(&mut stream, b"held"))
                .await;
        assert!(held.is_err(), "a blackhole let bytes through: {held:?}");
        proxy.set(Fault::None);
        // What the blackhole held back is delivered once it is cleared.
        let mut answer = [0; 4];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"held");

        proxy.set(Fault::Reset);
        let mut buffer = [0; 1];
        let error = stream.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        // A new connection is reset too; the reset can already be pending when the connect
        // completes, so it surfaces there or at the first read.
        let error = match TcpStream::connect(proxy.addr()).await {
            Err(error) => error,
            Ok(mut new) => round_trip(&mut new, b"x").await.unwrap_err(),
        };
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");

        proxy.set(Fault::None);
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"again").await.unwrap(), b"again");
    }

    #[tokio::test]
    async fn a_half_close_is_forwarded() {
        let proxy = Proxy::start(listen().unwrap(), echo_server().await).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(b"bye").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"bye");
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_port_and_connections() {
        let proxy = Proxy::start(listen().unwrap(), echo_server().await).unwrap();
        let addr = proxy.addr();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hi").await.unwrap(), b"hi");
        drop(proxy);
        let mut buffer = [0; 1];
        assert_eq!(stream.read(&mut buffer).await.unwrap_or(0), 0);
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
