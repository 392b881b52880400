//! The limits one client connection lives under, and why it ended. hyper enforces the header
//! limits (`max_header_bytes`, `max_headers`: 431, then close) and `header_read_timeout`;
//! [`Watched`] adds what hyper lacks for HTTP/1: `keep_alive_timeout`, the longest a
//! connection may move no bytes while none of its requests is being handled. That closes
//! idle keep-alive connections and responses a client does not read (a pipelined flood whose
//! answers are never read) by a limit of their own, instead of at `header_read_timeout` or
//! never. A request being handled is bounded by `request_timeout` instead (body reads and
//! inference both carry its deadline). [`CloseReason`] names which limit ended a connection,
//! for `hotserve_connections_closed_total`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::config::Config;

/// hyper refuses a read buffer smaller than this (its `max_buf_size` minimum).
const MIN_READ_BUFFER: usize = 8192;

/// The HTTP/1 connection builder with every configured limit applied.
pub fn builder(config: &Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes)
        .max_headers(config.max_headers)
        // The read buffer holds a request head or a piece of a body (or pipelined requests
        // waiting their turn): bounded per connection by the header limit.
        .max_buf_size(config.max_header_bytes.max(MIN_READ_BUFFER))
        .keep_alive(true);
    builder
}

/// Why a connection ended, as `hotserve_connections_closed_total` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it, or the server did after a response (shutdown, `Connection: close`,
    /// a body left unread after a 4xx).
    Closed,
    /// Its request headers did not arrive within `header_read_timeout`.
    HeaderReadTimeout,
    /// No bytes moved for `keep_alive_timeout` while no request was being handled.
    KeepAliveTimeout,
    /// Its request head was over `max_header_bytes` or `max_headers` (answered 431).
    HeadersTooLarge,
    /// Its request head was not valid HTTP/1 (answered 400), such as conflicting
    /// `Content-Length` and `Transfer-Encoding`.
    MalformedRequest,
    /// The client went away in the middle of a request.
    IncompleteRequest,
    /// A transport error (reset, broken pipe), typically the client going away mid-response.
    TransportError,
}

impl CloseReason {
    /// Which limit (or which end) closed a connection that `serve_connection` ended with
    /// `result`; `timed_out` is [`Activity::timed_out`].
    pub fn of(result: &Result<(), hyper::Error>, timed_out: bool) -> CloseReason {
        if timed_out {
            return CloseReason::KeepAliveTimeout;
        }
        match result {
            Ok(()) => CloseReason::Closed,
            Err(err) if err.is_timeout() => CloseReason::HeaderReadTimeout,
            Err(err) if err.is_parse_too_large() => CloseReason::HeadersTooLarge,
            Err(err) if err.is_parse() => CloseReason::MalformedRequest,
            Err(err) if err.is_incomplete_message() => CloseReason::IncompleteRequest,
            Err(_) => CloseReason::TransportError,
        }
    }

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Closed => "closed",
            CloseReason::HeaderReadTimeout => "header_read_timeout",
            CloseReason::KeepAliveTimeout => "keep_alive_timeout",
            CloseReason::HeadersTooLarge => "headers_too_large",
            CloseReason::MalformedRequest => "malformed_request",
            CloseReason::IncompleteRequest => "incomplete_request",
            CloseReason::TransportError => "transport_error",
        }
    }
}

/// What the service and the transport of one connection share.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests of this connection being handled now.
    busy: AtomicUsize,
    /// Set when [`Watched`] closed the connection at `keep_alive_timeout`.
    timed_out: AtomicBool,
}

/// Held while a request is handled: the connection is busy, not idle.
pub struct Busy(Arc<Activity>);

impl Activity {
    /// Marks one request as being handled until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Whether `keep_alive_timeout` closed the connection.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's transport that fails with `TimedOut` once it has moved no bytes for
/// `keep_alive_timeout` while no request of it was being handled.
pub struct Watched<T> {
    /// The transport (a TCP stream, or TLS over one).
    inner: T,
    /// Shared with the connection's service.
    activity: Arc<Activity>,
    /// `keep_alive_timeout`.
    idle: Duration,
    /// When the connection times out if nothing moves before.
    deadline: Pin<Box<Sleep>>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>, idle: Duration) -> Watched<T> {
        Watched {
            inner,
            activity,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Bytes moved: the idle period starts again.
    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// The transport is waiting for the client. While a request is handled that is not idle
    /// time (its own deadline bounds it); otherwise, past the deadline, the connection fails.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.activity.busy.load(Ordering::Relaxed) > 0 {
            self.progressed();
            return Poll::Pending;
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.activity.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "no bytes moved within keep_alive_timeout",
        ))
    }

    /// The outcome of a write: progress resets the deadline, waiting checks it.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check_idle(cx).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const IDLE: Duration = Duration::from_secs(5);

    /// A watched end of an in-memory connection, and the client's end.
    fn watched() -> (
        Watched<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Activity>,
    ) {
        let (server, client) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        (
            Watched::new(server, activity.clone(), IDLE),
            client,
            activity,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_fails_at_the_keep_alive_timeout() {
        let (mut server, _client, activity) = watched();
        let started = Instant::now();
        let err = server.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE);
        assert!(activity.timed_out());
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_restart_the_idle_period() {
        let (mut server, mut client, _activity) = watched();
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(server.read(&mut [0u8; 8]).await.unwrap(), 1);
        let started = Instant::now();
        let err = server.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_being_handled_is_not_idle_time() {
        let (mut server, mut client, activity) = watched();
        let busy = activity.busy();
        let read = tokio::time::timeout(IDLE * 3, server.read(&mut [0u8; 8])).await;
        assert!(read.is_err(), "a busy connection timed out: {read:?}");
        drop(busy);
        client.write_all(b"x").await.unwrap();
        assert_eq!(server.read(&mut [0u8; 8]).await.unwrap(), 1);
        assert!(!activity.timed_out());
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_the_client_does_not_read_fails_at_the_keep_alive_timeout() {
        let (mut server, _client, activity) = watched();
        // The duplex buffer (64 bytes) fills; the client never reads.
        let err = server.write_all(&[b'x'; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(activity.timed_out());
    }
}
