//! The connection limits against raw sockets, in the test process (`support::inprocess`) with
//! short limits: each abusive client is closed or refused by the limit meant for it, which
//! `hotserve_connections_closed_total` names, and a well-behaved request still succeeds
//! afterwards. bench/abuse.sh measures the same attacks at scale against a release build.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::inprocess::{Server, Start};
use crate::support::{closed_for, fixture, PATIENCE};

/// A server with short limits, ready.
async fn start() -> Server {
    Start::model(fixture("sentiment"))
        .set("keep_alive_timeout", "300ms")
        .set("header_read_timeout", "5s")
        .set("request_timeout", "5s")
        .set("max_header_bytes", "2048")
        .set("max_headers", "20")
        .set("max_body_bytes", "4096")
        .ready()
        .await
}

/// Sends `bytes` on a fresh connection and reads until the server closes it; returns what
/// it answered and how long the connection lived. Fails if the server keeps it open past
/// [`PATIENCE`].
async fn answer_and_close(server: &Server, bytes: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, read_until_closed(&mut stream, &mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {PATIENCE:?}; it answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// Reads until EOF or a reset (both are the server closing the connection).
async fn read_until_closed(stream: &mut TcpStream, answer: &mut Vec<u8>) {
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
}

/// The status codes of every response in `answer`, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// A well-behaved request still gets its prediction.
async fn still_serving(server: &Server) {
    let response = reqwest::Client::new()
        .post(server.url("/predict"))
        .json(&serde_json::json!({"text": "I love this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A request with `headers` (each `Name: value\r\n`) and a small JSON body.
fn predict_with(headers: &str) -> Vec<u8> {
    let body = r#"{"text":"fine"}"#;
    format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_at_the_keep_alive_timeout() {
    let server = start().await;
    let (answer, lived) =
        answer_and_close(&server, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    // keep_alive_timeout is 300 ms, header_read_timeout 5 s: closed by the first.
    assert!(
        lived < Duration::from_secs(5),
        "closed after {lived:?}, at header_read_timeout rather than keep_alive_timeout"
    );
    closed_for(&server, "keep_alive_timeout", 1.0).await;
    still_serving(&server).await;
}

#[tokio::test]
async fn a_pipelined_flood_whose_answers_are_never_read_is_closed() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    let flood: Vec<u8> = request.repeat(1000);
    // Write without reading until the server stops taking requests or closes the connection.
    let wrote = tokio::time::timeout(PATIENCE, async {
        loop {
            if stream.write_all(&flood).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        wrote.is_ok(),
        "the connection was still taking requests after {PATIENCE:?}"
    );
    closed_for(&server, "keep_alive_timeout", 1.0).await;
    still_serving(&server).await;
}

#[tokio::test]
async fn headers_over_max_header_bytes_get_431_and_a_close() {
    let server = start().await;
    let big = format!("X-Big: {}\r\n", "a".repeat(4096));
    let (answer, _) = answer_and_close(&server, &predict_with(&big)).await;
    assert_eq!(statuses(&answer), [431], "{answer}");
    closed_for(&server, "headers_too_large", 1.0).await;
    still_serving(&server).await;
}

#[tokio::test]
async fn more_than_max_headers_fields_get_431_and_a_close() {
    let server = start().await;
    let many: String = (0..30).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let (answer, _) = answer_and_close(&server, &predict_with(&many)).await;
    assert_eq!(statuses(&answer), [431], "{answer}");
    // Within the limit, the same shape of request is served.
    let few: String = (0..5).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let (answer, _) = answer_and_close(
        &server,
        &[
            predict_with(&few),
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ]
        .concat(),
    )
    .await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    still_serving(&server).await;
}

#[tokio::test]
async fn conflicting_framing_gets_400_and_a_close() {
    let server = start().await;
    let cases: [&[u8]; 2] = [
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n{}",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    ];
    for (n, bytes) in cases.iter().enumerate() {
        let (answer, _) = answer_and_close(&server, bytes).await;
        assert_eq!(
            statuses(&answer),
            [400],
            "{}: {answer}",
            String::from_utf8_lossy(bytes)
        );
        closed_for(&server, "malformed_request", (n + 1) as f64).await;
    }
    still_serving(&server).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_and_a_close() {
    let server = start().await;
    let mut bytes = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // 6 KiB in three chunks (the limit is 4 KiB), then the last chunk: a complete body that
    // the server reads or discards, so that closing leaves nothing unread to reset on.
    for _ in 0..3 {
        bytes.extend_from_slice(format!("800\r\n{}\r\n", "x".repeat(0x800)).as_bytes());
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    let (answer, _) = answer_and_close(&server, &bytes).await;
    assert_eq!(statuses(&answer), [413], "{answer}");
    still_serving(&server).await;
}

#[tokio::test]
async fn expect_continue_over_the_limit_gets_413_without_100() {
    let server = start().await;
    let (answer, _) = answer_and_close(
        &server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), [413], "{answer}");
    still_serving(&server).await;
}
