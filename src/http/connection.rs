//! The limits one client connection lives under, which protocol it speaks, and why it ended.
//! A connection speaks HTTP/1.1, or HTTP/2 when it opens with the HTTP/2 preface (prior
//! knowledge, h2c, as gateways speak upstream; over TLS, what a client that negotiated `h2` by
//! ALPN sends first): [`serve`] reads the first bytes ([`sniff`]) and hands the connection to
//! hyper's HTTP/1 or HTTP/2 server. (hyper-util's automatic builder does the same but cannot
//! set HTTP/1's `max_header_size`.)
//!
//! hyper enforces the header limits (HTTP/1: `max_header_bytes`, `max_headers`: 431, then
//! close; HTTP/2: `max_header_bytes` as `SETTINGS_MAX_HEADER_LIST_SIZE`, a 431 on that stream,
//! and `max_headers` is checked by the routes), `header_read_timeout` on HTTP/1, and
//! [`MAX_CONCURRENT_STREAMS`] on HTTP/2. [`Watched`] adds `keep_alive_timeout`, which hyper
//! lacks. On HTTP/1 it is the longest a connection may move no bytes while none of its requests
//! is being handled: that closes idle keep-alive connections and responses a client does not
//! read (a pipelined flood whose answers are never read) by a limit of their own, instead of at
//! `header_read_timeout` or never. On HTTP/2, where a client can keep bytes moving without a
//! request (PING, SETTINGS, WINDOW_UPDATE frames, a header block trickled in CONTINUATION
//! frames), it is the longest a connection may go with no request being handled since the
//! last one started or ended. A request being handled is bounded by `request_timeout` instead
//! (body reads and inference both carry its deadline), per stream on HTTP/2. [`CloseReason`]
//! names which limit ended a connection, for `hotserve_connections_closed_total`.

use crate::security::tls::FirstByte;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::config::Config;

/// hyper refuses a read buffer smaller than this (its `max_buf_size` minimum).
const MIN_READ_BUFFER: usize = 8192;

/// Streams one HTTP/2 connection may have open at once: hyper's default, which the gRPC
/// listener uses too. A client that needs more concurrency opens more connections, each
/// counted against `max_connections`.
pub const MAX_CONCURRENT_STREAMS: u32 = 200;

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The connection builders of both protocols, with every configured limit applied.
pub struct Builders {
    /// HTTP/1.1.
    http1: http1::Builder,
    /// HTTP/2.
    http2: http2::Builder<TokioExecutor>,
}

/// The builders for `config`'s limits.
pub fn builders(config: &Config) -> Builders {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes)
        .max_headers(config.max_headers)
        // The read buffer holds a request head or a piece of a body (or pipelined requests
        // waiting their turn): bounded per connection by the header limit.
        .max_buf_size(config.max_header_bytes.max(MIN_READ_BUFFER))
        .keep_alive(true);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    Builders { http1, http2 }
}

/// Which protocol a connection that opened with `first` speaks, or `None` while `first` is a
/// beginning of the HTTP/2 preface (read more). `first` empty means the client sent nothing
/// before closing: HTTP/1, which sees the end of the stream.
pub fn sniff(first: &[u8], closed: bool) -> Option<Protocol> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Protocol::Http2)
    } else if closed {
        Some(Protocol::Http1)
    } else {
        None
    }
}

/// How serving a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Reading its first bytes, before the protocol was known.
    #[error("reading the first bytes of the connection failed: {0}")]
    Preface(#[source] io::Error),
    /// hyper's server.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Serves one connection (`io`, a watched TCP stream or TLS over one) with the protocol its
/// first bytes say, until it closes or the drain `watcher` ends it (HTTP/1: after the
/// current response; HTTP/2: GOAWAY, then once its streams have answered). A connection that
/// has not sent its first bytes when `draining` turns true is closed at once.
pub async fn serve<IO, S>(
    mut io: IO,
    builders: &Builders,
    activity: &Activity,
    service: S,
    watcher: Watcher,
    mut draining: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: HttpService<Incoming, ResBody = Full<Bytes>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let mut first = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let sniffing = async {
        loop {
            let n = io.read(&mut first[filled..]).await?;
            filled += n;
            if let Some(protocol) = sniff(&first[..filled], n == 0) {
                return Ok::<_, io::Error>(protocol);
            }
        }
    };
    let protocol = tokio::select! {
        sniffed = sniffing => sniffed.map_err(ConnectionError::Preface)?,
        _ = draining.wait_for(|draining| *draining) => return Ok(()),
    };
    let io = TokioIo::new(Rewound {
        first: Bytes::copy_from_slice(&first[..filled]),
        inner: io,
    });
    match protocol {
        Protocol::Http1 => {
            watcher
                .watch(builders.http1.serve_connection(io, service))
                .await?;
        }
        Protocol::Http2 => {
            activity.h2.store(true, Ordering::Relaxed);
            watcher
                .watch(builders.http2.serve_connection(io, service))
                .await?;
        }
    }
    Ok(())
}

/// A stream whose first bytes, already read, are read again.
struct Rewound<T> {
    /// What [`serve`] read to choose the protocol, not yet given back.
    first: Bytes,
    /// The stream.
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.first.len().min(buf.remaining());
        buf.put_slice(&this.first[..n]);
        this.first.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewound<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why a connection ended, as `hotserve_connections_closed_total` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it, or the server did after a response (shutdown, `Connection: close`,
    /// a body left unread after a 4xx).
    Closed,
    /// Its request headers did not arrive within `header_read_timeout`.
    HeaderReadTimeout,
    /// Idle for `keep_alive_timeout` while no request was being handled (HTTP/1: no bytes
    /// moved; HTTP/2: no request started or ended).
    KeepAliveTimeout,
    /// Its HTTP/1 request head was over `max_header_bytes` or `max_headers` (answered 431).
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
    pub fn of<T>(result: &Result<T, ConnectionError>, timed_out: bool) -> CloseReason {
        if timed_out {
            return CloseReason::KeepAliveTimeout;
        }
        let err = match result {
            Ok(_) => return CloseReason::Closed,
            Err(ConnectionError::Preface(_)) => return CloseReason::TransportError,
            Err(ConnectionError::Http(err)) => err,
        };
        match err {
            err if err.is_timeout() => CloseReason::HeaderReadTimeout,
            err if err.is_parse_too_large() => CloseReason::HeadersTooLarge,
            err if err.is_parse() => CloseReason::MalformedRequest,
            err if err.is_incomplete_message() => CloseReason::IncompleteRequest,
            _ => CloseReason::TransportError,
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
    /// Requests of this connection started plus requests ended: a change is activity.
    requests: AtomicU64,
    /// Set once the connection speaks HTTP/2 (then bytes moving are not activity).
    h2: AtomicBool,
    /// Set when [`Watched`] closed the connection at `keep_alive_timeout`.
    timed_out: AtomicBool,
}

/// Held while a request is handled: the connection is busy, not idle.
pub struct Busy(Arc<Activity>);

impl Activity {
    /// Marks one request as being handled until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
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
        self.0.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection's transport that fails with `TimedOut` once it has been idle for
/// `keep_alive_timeout` while no request of it was being handled: no bytes moved (HTTP/1), no
/// request started or ended (HTTP/2).
pub struct Watched<T> {
    /// The transport (a TCP stream, or TLS over one).
    inner: T,
    /// Shared with the connection's service.
    activity: Arc<Activity>,
    /// `keep_alive_timeout`.
    idle: Duration,
    /// When the connection times out if nothing moves before.
    deadline: Pin<Box<Sleep>>,
    /// [`Activity::requests`] when last looked at.
    requests_seen: u64,
}

impl Watched<tokio::net::TcpStream> {
    /// The connection's first byte, without taking it, if it comes within `within`.
    pub async fn first_byte(&self, within: Duration) -> FirstByte {
        let mut first = [0u8; 1];
        match tokio::time::timeout(within, self.inner.peek(&mut first)).await {
            Err(_) => FirstByte::TimedOut,
            Ok(Ok(1)) => FirstByte::Byte(first[0]),
            Ok(_) => FirstByte::Nothing,
        }
    }
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>, idle: Duration) -> Watched<T> {
        Watched {
            inner,
            activity,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            requests_seen: 0,
        }
    }

    /// The idle period starts again.
    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Bytes moved: activity on HTTP/1, not on HTTP/2 (frames that are not requests).
    fn moved(&mut self) {
        if !self.activity.h2.load(Ordering::Relaxed) {
            self.progressed();
        }
    }

    /// The transport is waiting for the client. While a request is handled that is not idle
    /// time (its own deadline bounds it), and a request that started or ended since the last
    /// look starts the idle period again; otherwise, past the deadline, the connection fails.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let busy = self.activity.busy.load(Ordering::Relaxed) > 0;
        let requests = self.activity.requests.load(Ordering::Relaxed);
        if busy || requests != self.requests_seen {
            self.requests_seen = requests;
            self.progressed();
        }
        if busy {
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
                    self.moved();
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
                    this.moved();
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
    async fn on_http2_bytes_moving_without_a_request_are_idle_time() {
        let (mut server, mut client, activity) = watched();
        activity.h2.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let pinging = async {
            // A PING-sized frame every second, for longer than the idle period.
            for _ in 0..10 {
                client.write_all(&[0u8; 17]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let reading = async {
            loop {
                if let Err(err) = server.read(&mut [0u8; 64]).await {
                    return err;
                }
            }
        };
        let err = tokio::select! {
            err = reading => err,
            _ = pinging => panic!("the connection outlived its pings"),
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE);
        assert!(activity.timed_out());
    }

    #[tokio::test(start_paused = true)]
    async fn on_http2_a_request_ending_restarts_the_idle_period() {
        let (mut server, _client, activity) = watched();
        activity.h2.store(true, Ordering::Relaxed);
        let busy = activity.busy();
        let read = tokio::time::timeout(IDLE * 3, server.read(&mut [0u8; 8])).await;
        assert!(read.is_err(), "a busy connection timed out: {read:?}");
        drop(busy);
        let started = Instant::now();
        let err = server.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE);
    }

    #[test]
    fn the_first_bytes_say_the_protocol() {
        fn check(first: &[u8], closed: bool, expected: Option<Protocol>) {
            let shown = String::from_utf8_lossy(first);
            assert_eq!(sniff(first, closed), expected, "{shown:?} closed={closed}");
        }
        use Protocol::{Http1, Http2};
        check(b"", false, None);
        check(b"", true, Some(Http1));
        check(b"P", false, None);
        check(b"PRI * HTTP/2.0\r\n", false, None);
        check(b"PRI * HTTP/2.0\r\n", true, Some(Http1));
        check(H2_PREFACE, false, Some(Http2));
        check(b"POST /predict HTTP/1.1\r\n", false, Some(Http1));
        check(b"PUT / HTTP/1.1\r\n", false, Some(Http1));
        check(b"PRI * HTTP/1.1\r\n", false, Some(Http1));
        check(b"GET /health HTTP/1.1\r\n", false, Some(Http1));
        check(b"\x16\x03\x01", false, Some(Http1));
    }

    #[tokio::test]
    async fn the_bytes_read_to_sniff_are_read_again() {
        let (inner, mut client) = tokio::io::duplex(64);
        client.write_all(b" HTTP/1.1").await.unwrap();
        drop(client);
        let mut rewound = Rewound {
            first: Bytes::from_static(b"GET /"),
            inner,
        };
        let mut read = String::new();
        rewound.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "GET / HTTP/1.1");
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
