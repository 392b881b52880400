//! `bare_hyper`: the physical limit of HTTP on this machine, for `bench/run.sh`.
//!
//! The same hyper, hyper-util and tokio versions and runtime as hotserve (a multi-thread
//! runtime with a worker per core, one HTTP/1.1 connection task per client), answering every
//! request with a fixed JSON body after reading the request body in full. No routing, no model,
//! no queue: whatever hotserve does beyond this is the cost of serving a model.
//!
//! With `--h2c` a connection that opens with the HTTP/2 preface (prior knowledge, no TLS) is
//! served by hyper's HTTP/2 server instead, the others by HTTP/1.1 as before: the reference for
//! an h2c row, and a peer to try `h2load` against.
//!
//! ```sh
//! cargo build --release --example bare_hyper
//! target/release/examples/bare_hyper 127.0.0.1:8090 [--h2c]
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// The first bytes an HTTP/2 client with prior knowledge sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What `/predict` answers for the fixture model, byte for byte the same size class.
const ANSWER: &str = r#"{"label":"POSITIVE","score":0.9981,"scores":{"NEGATIVE":0.0019,"POSITIVE":0.9981},"model_version":"1"}"#;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as hotserve does, so that the comparison includes it.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Whether the client opened with the HTTP/2 preface: peeks (without consuming) until the bytes
/// received so far differ from it or all of it has arrived (HTTP/1.1 clients differ at once).
async fn opens_with_h2_preface(stream: &TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n] != H2_PREFACE[..n] => return false,
            Ok(n) if n == H2_PREFACE.len() => return true,
            // Part of it so far: peeking again at once would see the same bytes.
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8090".to_string();
    let mut h2c = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--h2c" => h2c = true,
            _ => addr = arg,
        }
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "bare_hyper: listening on {}{}",
            listener.local_addr()?,
            if h2c { " (HTTP/1.1 and h2c)" } else { "" }
        );
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                if h2c && opens_with_h2_preface(&stream).await {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service_fn(answer))
                        .await;
                } else {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(answer))
                        .await;
                }
            });
        }
    })
}
