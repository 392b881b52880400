//! HTTP/2 on the HTTP listener, in the test process (`support::inprocess`), against real
//! clients on loopback: curl with prior knowledge (h2c, what gateways like Envoy speak
//! upstream) and with ALPN over TLS, and hyper's HTTP/2 client where a test needs one
//! connection it controls (many streams on it, PINGs while idle, a body that stalls). HTTP/1.1
//! keeps working on the same port, and every connection limit holds over HTTP/2: header list
//! size, header count, `keep_alive_timeout` (PINGs do not keep an idle connection), and
//! `request_timeout` per stream.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::support::curl::{curl, Curled};
use crate::support::inprocess::{Server, Start};
use crate::support::{closed_for, fixture, PATIENCE};

/// A server with short limits, ready.
async fn start(settings: &[(&str, &str)]) -> Server {
    let mut start = Start::model(fixture("sentiment"))
        .set("keep_alive_timeout", "300ms")
        .set("header_read_timeout", "5s")
        .set("request_timeout", "1s")
        .set("max_header_bytes", "2048")
        .set("max_headers", "20");
    for (key, value) in settings {
        start = start.set(key, value);
    }
    start.ready().await
}

/// `POST /predict` with curl and `args`.
async fn curl_predict(server: &Server, args: &[&str]) -> Curled {
    let mut all = vec![
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"text": "I love this"}"#,
    ];
    all.extend_from_slice(args);
    curl(&all, server.url("/predict")).await
}

/// One HTTP/2 connection (prior knowledge) to the server, driven by its own task; `pings`
/// makes the client send a PING at that interval, idle or not.
async fn connect(server: &Server, pings: Option<Duration>) -> (http2::SendRequest<Body>, Driven) {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some(interval) = pings {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(PATIENCE)
            .keep_alive_while_idle(true);
    }
    let (sender, connection) = builder.handshake(TokioIo::new(stream)).await.unwrap();
    (sender, tokio::spawn(connection))
}

/// A request body of the hyper client.
type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The task driving a client connection: it ends when the connection does.
type Driven = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// A request to `path` with a JSON `body`.
fn post(path: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// Sends `request` on `sender`; the status and the body as JSON.
async fn send(
    sender: &mut http2::SendRequest<Body>,
    request: Request<Body>,
) -> (StatusCode, Value) {
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn prior_knowledge_and_http1_share_the_port_and_the_routes() {
    let server = start(&[]).await;
    let answer = curl_predict(&server, &["--http2-prior-knowledge"]).await;
    assert_eq!((answer.exit, answer.status), (0, 200), "{answer:?}");
    assert_eq!(answer.version, "2", "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["label"], "POSITIVE", "{answer:?}");
    assert!(answer.headers.contains("\nx-model-version: "), "{answer:?}");
    // Connection-specific headers are illegal in HTTP/2 (RFC 9113, 8.2.2).
    assert!(!answer.headers.contains("\nconnection:"), "{answer:?}");

    // Errors are the same answers.
    let missing = curl(&["--http2-prior-knowledge"], server.url("/nope")).await;
    assert_eq!(
        (missing.status, missing.version.as_str()),
        (404, "2"),
        "{missing:?}"
    );
    let error: Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(error["error_code"], "ENDPOINT_NOT_FOUND", "{missing:?}");

    // HTTP/1.1 on the same port.
    let answer = curl_predict(&server, &["--http1.1"]).await;
    assert_eq!(
        (answer.status, answer.version.as_str()),
        (200, "1.1"),
        "{answer:?}"
    );

    // The metrics count both, under the same route.
    let metrics = curl(&["--http2-prior-knowledge"], server.url("/metrics")).await;
    assert_eq!((metrics.status, metrics.version.as_str()), (200, "2"));
    let count = metrics
        .body
        .lines()
        .find(|line| {
            line.starts_with("hotserve_requests_total{")
                && line.contains(r#"route="/predict""#)
                && line.contains(r#"status="200""#)
        })
        .and_then(|line| line.rsplit_once(' '))
        .map(|(_, count)| count);
    assert_eq!(count, Some("2"), "{}", metrics.body);
}

#[tokio::test]
async fn many_requests_share_one_connection() {
    let server = start(&[]).await;
    let (sender, _driven) = connect(&server, None).await;
    let requests = (0..64).map(|i| {
        let mut sender = sender.clone();
        let text = if i % 2 == 0 {
            "I love this"
        } else {
            "I hate this"
        };
        async move { send(&mut sender, post("/predict", &json!({ "text": text }))).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        let expected = if i % 2 == 0 { "POSITIVE" } else { "NEGATIVE" };
        assert_eq!(
            (*status, body["label"].as_str()),
            (StatusCode::OK, Some(expected)),
            "{i}: {body}"
        );
    }
}

#[tokio::test]
async fn alpn_h2_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let server = start(&[
        ("tls_cert_file", cert.to_str().unwrap()),
        ("tls_key_file", key.to_str().unwrap()),
    ])
    .await;
    let cacert = cert.to_str().unwrap();
    let answer = curl_predict(&server, &["--http2", "--cacert", cacert]).await;
    assert_eq!((answer.exit, answer.status), (0, 200), "{answer:?}");
    assert_eq!(answer.version, "2", "{answer:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body).unwrap()["label"],
        "POSITIVE"
    );
    // A client that offers only HTTP/1.1 gets it.
    let answer = curl_predict(&server, &["--http1.1", "--cacert", cacert]).await;
    assert_eq!(
        (answer.status, answer.version.as_str()),
        (200, "1.1"),
        "{answer:?}"
    );
}

/// A self-signed certificate for `127.0.0.1` and its key (P-256), in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=hotserve test"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (scripts/setup.sh test installs it)");
    assert!(
        output.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (cert, key)
}

#[tokio::test]
async fn a_header_list_over_max_header_bytes_gets_431_on_its_stream() {
    let server = start(&[]).await;
    let big = format!("x-big: {}", "a".repeat(3000));
    // A GET: a POST answered before its body is sent trips curl 7.88 (see tls.rs).
    let answer = curl(
        &["--http2-prior-knowledge", "-H", &big],
        server.url("/ping"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.version.as_str()),
        (431, "2"),
        "{answer:?}"
    );
    let answer = curl_predict(&server, &["--http2-prior-knowledge"]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn more_than_max_headers_fields_get_431() {
    let server = start(&[]).await;
    let fields: Vec<String> = (0..25).map(|i| format!("x-field-{i}: {i}")).collect();
    let mut args = vec!["--http2-prior-knowledge"];
    for field in &fields {
        args.extend(["-H", field.as_str()]);
    }
    let answer = curl(&args, server.url("/ping")).await;
    assert_eq!(
        (answer.status, answer.version.as_str()),
        (431, "2"),
        "{answer:?}"
    );
    let error: Value = serde_json::from_str(&answer.body).unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("max_headers"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_closes_at_the_keep_alive_timeout_despite_pings() {
    let server = start(&[]).await;
    let started = Instant::now();
    // The client PINGs every 50 ms: bytes move, but no request does.
    let (mut sender, driven) = connect(&server, Some(Duration::from_millis(50))).await;
    let (status, _) = send(&mut sender, post("/predict", &json!({"text": "fine"}))).await;
    assert_eq!(status, StatusCode::OK);
    let ended = tokio::time::timeout(PATIENCE, driven).await;
    assert!(
        ended.is_ok(),
        "the connection was still open after {PATIENCE:?}"
    );
    // keep_alive_timeout is 300 ms, header_read_timeout 5 s.
    let lived = started.elapsed();
    assert!(lived < Duration::from_secs(5), "closed after {lived:?}");
    closed_for(&server, "keep_alive_timeout", 1.0).await;
}

#[tokio::test]
async fn a_body_stalled_past_request_timeout_gets_408_on_its_stream() {
    let server = start(&[]).await;
    let (mut sender, _driven) = connect(&server, None).await;
    // Half a JSON document, then nothing.
    let chunks = futures_util::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{\"text\": ")))
    })
    .chain(futures_util::stream::pending());
    let request = Request::builder()
        .method(Method::POST)
        .uri("http://localhost/predict")
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let started = Instant::now();
    let (status, body) = send(&mut sender, request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("request_timeout"),
        "{body}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The connection serves the next request.
    let (status, _) = send(&mut sender, post("/predict", &json!({"text": "fine"}))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn api_keys_guard_the_model_routes_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "key-one\n").unwrap();
    let server = start(&[("api_keys_file", keys.to_str().unwrap())]).await;
    let (mut sender, _driven) = connect(&server, None).await;
    // (key, status); the answer comes before the body is read, then RST_STREAM(NO_ERROR).
    for (key, status) in [(None, 401), (Some("key-two"), 401), (Some("key-one"), 200)] {
        let mut request = post("/predict", &json!({"text": "I love this"}));
        if let Some(key) = key {
            let value = format!("Bearer {key}").parse().unwrap();
            request.headers_mut().insert("authorization", value);
        }
        let (got, body) = send(&mut sender, request).await;
        assert_eq!(got.as_u16(), status, "{key:?}: {body}");
        if status == 401 {
            assert_eq!(body["error_code"], "UNAUTHENTICATED", "{key:?}: {body}");
        }
    }
}

#[tokio::test]
async fn shutdown_drains_both_protocols_and_silent_connections_at_once() {
    let server = start(&[
        ("keep_alive_timeout", "60s"),
        ("header_read_timeout", "60s"),
    ])
    .await;
    // An idle HTTP/2 connection, an idle HTTP/1.1 one, and one that has sent nothing yet.
    let (mut sender, driven) = connect(&server, None).await;
    let (status, _) = send(&mut sender, post("/predict", &json!({"text": "fine"}))).await;
    assert_eq!(status, StatusCode::OK);
    let answer = curl_predict(&server, &["--http1.1"]).await;
    assert_eq!(answer.status, 200);
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    server.stop().await.unwrap();
    // Well within the limits (60 s) that would otherwise close them.
    let stopped = started.elapsed();
    assert!(
        stopped < Duration::from_secs(30),
        "stopped after {stopped:?}"
    );
    // The HTTP/2 client saw the connection end cleanly (GOAWAY, then close).
    let ended = tokio::time::timeout(PATIENCE, driven).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
}
