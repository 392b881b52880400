//! `bare_hyper`: the physical limit of HTTP on this machine, for `bench/run.sh`.
//!
//! The same hyper, hyper-util and tokio versions and runtime as hotserve (a multi-thread
//! runtime with a worker per core, one HTTP/1.1 connection task per client), answering every
//! request with a fixed JSON body after reading the request body in full. No routing, no model,
//! no queue: whatever hotserve does beyond this is the cost of serving a model.
//!
//! ```sh
//! cargo build --release --example bare_hyper
//! target/release/examples/bare_hyper 127.0.0.1:8090
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

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

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_string())
        .parse()
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("bare_hyper: listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}
