//! The serving core against the real fixture model. In the test process
//! (`support::inprocess`): every route, every scoring format, a table of bad inputs, random
//! inputs, slow clients, the connection limit, credentials, zip and tensor models. Against the
//! real binary, whose debug failpoints hold an inference worker busy: overload (429), a
//! request past its deadline (504), disconnected clients, and the runtime staying responsive
//! while inference is slow; and the binary's exit codes and subcommands.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::hotserve::{self as process, run};
use crate::support::inprocess::{Server, Start};
use crate::support::{
    copy_dir, eventually, fixture, health_until, metric, metric_reaches, venv, PATIENCE,
};

async fn start_fixture() -> Server {
    Start::model(fixture("sentiment")).ready().await
}

/// Starts the real binary and waits until it is ready.
async fn spawn_ready(start: process::Start) -> process::Hotserve {
    let server = start.spawn();
    server.wait_ready().await;
    server
}

async fn post(
    url: String,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("request")
}

async fn post_json(url: String, body: Value) -> (u16, Value) {
    let response = post(url, Some("application/json"), body.to_string()).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The labels of a `{"predictions": [{"label": ..}, ..]}` answer, in order.
fn labels(answer: &Value) -> Vec<&str> {
    answer["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions in {answer}"))
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn predicts_and_labels_obvious_sentences() {
    let server = start_fixture().await;
    let client = reqwest::Client::new();
    let response = client
        .post(server.url("/predict"))
        .header("x-request-id", "req-42")
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let version = response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(version.starts_with("local-"), "{version}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["label"], "POSITIVE");
    assert!(body["score"].as_f64().unwrap() > 0.9);
    assert_eq!(body["model_version"], version);
    let p =
        body["scores"]["POSITIVE"].as_f64().unwrap() + body["scores"]["NEGATIVE"].as_f64().unwrap();
    assert!((p - 1.0).abs() < 1e-4, "scores are probabilities: {body}");

    let (status, body) = post_json(
        server.url("/predict"),
        json!({"text": "terrible, awful experience"}),
    )
    .await;
    assert_eq!((status, body["label"].as_str()), (200, Some("NEGATIVE")));

    // Requests without an id get a generated one.
    let response = client.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 16);
    server.stop().await.expect("a clean shutdown");
}

#[tokio::test]
async fn batch_and_invocations_formats() {
    let server = start_fixture().await;
    let (status, body) = post_json(
        server.url("/predict/batch"),
        json!({"texts": ["I love this", "I hate this", "great product"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(labels(&body), ["POSITIVE", "NEGATIVE", "POSITIVE"]);
    assert!(body["model_version"].is_string());

    let bodies = [
        json!({"dataframe_split": {"columns": ["text"], "data": [["I love this"], ["I hate this"]]}}),
        json!({"dataframe_records": [{"text": "I love this"}, {"text": "I hate this"}]}),
        json!({"instances": ["I love this", "I hate this"]}),
        json!({"inputs": ["I love this", "I hate this"], "params": {}}),
        json!({"inputs": {"text": ["I love this", "I hate this"]}}),
    ];
    for body in bodies {
        let (status, answer) = post_json(server.url("/invocations"), body.clone()).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(labels(&answer), ["POSITIVE", "NEGATIVE"], "{body}");
    }
    let response = post(
        server.url("/invocations"),
        Some("text/csv"),
        "text\n\"I love this, really\"\nI hate this\n",
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(labels(&answer), ["POSITIVE", "NEGATIVE"], "{answer}");
}

#[tokio::test]
async fn health_metadata_and_metrics_routes() {
    let server = start_fixture().await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(server.url(path)).send();
    assert_eq!(get("/ping").await.unwrap().status(), 200);
    assert_eq!(get("/health/live").await.unwrap().status(), 200);
    assert_eq!(get("/health/ready").await.unwrap().status(), 200);
    let version = get("/version").await.unwrap().text().await.unwrap();
    assert_eq!(version.trim(), env!("CARGO_PKG_VERSION"));

    let health: Value = get("/health").await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model_loaded"], true);
    assert_eq!(health["model"]["name"], "sentiment");
    assert_eq!(health["model"]["digest"].as_str().unwrap().len(), 64);
    assert!(health["model"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "model.onnx"));
    assert!(
        health["onnxruntime"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1."),
        "{health}"
    );
    assert_eq!(health["last_check"]["result"], "loaded");

    let model: Value = get("/v1/model").await.unwrap().json().await.unwrap();
    assert_eq!(model["labels"], json!(["NEGATIVE", "POSITIVE"]));
    assert_eq!(model["task"], "text-classification");
    assert_eq!(model["signature"]["inputs"][0]["name"], "text");
    let inputs: Vec<&str> = model["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["input_ids", "attention_mask"]);

    post_json(server.url("/predict"), json!({"text": "ok"})).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "hotserve_requests_total{model=\"sentiment\",route=\"/predict\",status=\"200\"} 1",
        "hotserve_model_info{model=\"sentiment\",name=\"sentiment\"",
        "hotserve_batch_size_count{model=\"sentiment\"}",
        "hotserve_inference_duration_seconds_bucket",
        "hotserve_reloads_total{model=\"sentiment\",result=\"loaded\"} 1",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
}

/// Each bad input gets its status and MLflow error code, and the server keeps serving.
#[tokio::test]
async fn bad_inputs_get_clear_4xx() {
    let server = Start::model(fixture("sentiment"))
        .set("max_body_bytes", "4096")
        .set("max_batch_texts", "4")
        .ready()
        .await;
    let long_text = "good ".repeat(5000);
    // (route, content type, body, expected status, expected error_code)
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "/predict",
            Some("application/json"),
            b"{not json".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/predict",
            Some("application/json"),
            b"".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/predict",
            Some("application/json"),
            b"[1, 2]".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/predict",
            Some("application/json"),
            br#"{"text": 5}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/predict",
            Some("application/json"),
            br#"{"txt": "a"}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/predict",
            Some("application/json"),
            b"{\"text\": \"\xff\xfe\"}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/predict",
            Some("text/plain"),
            br#"{"text": "a"}"#.to_vec(),
            415,
            "BAD_REQUEST",
        ),
        (
            "/predict",
            Some("application/json"),
            json!({"text": long_text}).to_string().into_bytes(),
            413,
            "MAX_READ_SIZE_EXCEEDED",
        ),
        (
            "/predict/batch",
            Some("application/json"),
            br#"{"texts": []}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/predict/batch",
            Some("application/json"),
            br#"{"texts": ["a", 1]}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/predict/batch",
            Some("application/json"),
            br#"{"texts": ["a","b","c","d","e"]}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/predict/batch",
            Some("application/json"),
            br#"{"texts": "a"}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/invocations",
            Some("application/json"),
            br#"{"inputs": [1, 2]}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/invocations",
            Some("application/json"),
            br#"{"foo": 1}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/invocations",
            Some("application/json"),
            br#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "/invocations",
            Some("text/csv"),
            b"text\n\"unterminated".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/invocations",
            Some("application/xml"),
            b"<a/>".to_vec(),
            415,
            "BAD_REQUEST",
        ),
        ("/nope", None, b"".to_vec(), 404, "ENDPOINT_NOT_FOUND"),
        (
            "/admin/reload",
            None,
            b"".to_vec(),
            404,
            "ENDPOINT_NOT_FOUND",
        ),
        (
            "/hooks/mlflow",
            None,
            b"{}".to_vec(),
            404,
            "ENDPOINT_NOT_FOUND",
        ),
    ];
    for (path, content_type, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let response = post(server.url(path), content_type, body).await;
        assert_eq!(response.status().as_u16(), status, "{path} {shown}");
        assert!(response.headers().contains_key("x-request-id"));
        let answer: Value = response.json().await.expect("error bodies are JSON");
        assert_eq!(answer["error_code"], code, "{path} {shown}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let response = reqwest::Client::new()
        .get(server.url("/predict"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // Still healthy and serving after all of that.
    let (status, body) = post_json(server.url("/predict"), json!({"text": "I love this"})).await;
    assert_eq!((status, body["label"].as_str()), (200, Some("POSITIVE")));
}

/// A request whose headers never arrive, or whose body never finishes, does not hold the server.
#[tokio::test]
async fn slow_clients_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Start::model(fixture("sentiment"))
        .set("header_read_timeout", "500ms")
        .set("request_timeout", "1s")
        .ready()
        .await;

    // Headers that never finish: the server closes the connection at the header timeout.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buffer)).await;
    assert!(
        closed.is_ok(),
        "the header timeout (500ms) did not close the connection within {PATIENCE:?}"
    );

    // A body that never finishes: 408 at the request deadline.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\":")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
        .await
        .expect("an answer before the client gives up")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The deadline is 1 s, the default 10 s: 8 s leaves room for a busy machine.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered at the request deadline, not {:?} later",
        started.elapsed()
    );

    let (status, _) = post_json(server.url("/predict"), json!({"text": "fine"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn serves_a_zip_bundle_and_a_tensor_model() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("sentiment.zip");
    let status = std::process::Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import shutil,sys; shutil.make_archive(sys.argv[1][:-4], 'zip', sys.argv[2])",
        ])
        .arg(&archive)
        .arg(fixture("sentiment"))
        .status()
        .unwrap();
    assert!(status.success());
    let server = Start::model(&archive).ready().await;
    let (status, body) = post_json(server.url("/predict"), json!({"text": "I love this"})).await;
    assert_eq!((status, body["label"].as_str()), (200, Some("POSITIVE")));
    server.stop().await.expect("a clean shutdown");

    let server = Start::model(fixture("tensor_model")).ready().await;
    let (status, body) = post_json(
        server.url("/invocations"),
        json!({"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // As `mlflow models serve` answers: every output by name, even when there is one.
    let y: Vec<f64> = body["predictions"]["y"][0]
        .as_array()
        .unwrap_or_else(|| panic!("no prediction in {body}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want = [5.1, 6.2, 7.3];
    assert_eq!(y.len(), want.len(), "{y:?}");
    for (got, want) in y.iter().zip(want) {
        assert!((got - want).abs() < 1e-4, "{y:?}");
    }
    let (status, body) = post_json(
        server.url("/invocations"),
        json!({"inputs": [[1.0, 2.0, 3.0]]}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    let (status, _) = post_json(server.url("/predict"), json!({"text": "hi"})).await;
    assert_eq!(status, 400);
}

/// At `max_connections`, further clients wait until a connection closes.
#[tokio::test]
async fn the_connection_limit_holds_further_clients_back() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let server = Start::model(fixture("sentiment"))
        .set("max_connections", "2")
        // The held connections are idle: keep them past the window below on a busy machine.
        .set("keep_alive_timeout", "10s")
        .ready()
        .await;
    // Two kept-alive connections, each answered once: both are accepted and held.
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut stream = tokio::io::BufReader::new(stream);
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut status_line = String::new();
        stream.read_line(&mut status_line).await.unwrap();
        assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
        held.push(stream);
    }
    let client = reqwest::Client::new();
    let third = tokio::spawn(client.get(server.url("/health/live")).send());
    // Proving that the third client is *not* served needs a window of time; /health/live
    // answers in microseconds, so one second is plenty.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served at the limit"
    );
    drop(held.pop());
    let response = tokio::time::timeout(PATIENCE, third)
        .await
        .expect("the third client is served once a connection closes")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Inference is slow (a debug-build failpoint holds each batch 2 s); liveness, readiness and
/// metrics still answer at once because inference never runs on the async runtime.
#[tokio::test]
async fn slow_inference_does_not_block_the_runtime() {
    let server = spawn_ready(
        process::Start::model(fixture("sentiment"))
            .set("inference_workers", "1")
            .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "2000"),
    )
    .await;
    let client = reqwest::Client::new();
    let predictions: Vec<_> = (0..4)
        .map(|_| {
            let request = client
                .post(server.url("/predict"))
                .json(&json!({"text": "I love this"}))
                .send();
            tokio::spawn(request)
        })
        .collect();
    // A batch is counted just before the failpoint: from here the only worker is busy.
    metric_reaches(
        &server.url("/metrics"),
        "hotserve_batch_size_count{model=\"sentiment\"}",
        1.0,
    )
    .await;
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/health",
        "/health/live",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    assert!(
        predictions.iter().all(|p| !p.is_finished()),
        "the health routes answered only after inference"
    );
    for prediction in predictions {
        let response = prediction.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// A full queue answers 429 with Retry-After at once, while the worker is still busy; the
/// requests it holds are served.
#[tokio::test]
async fn overload_fails_fast() {
    let server = spawn_ready(
        process::Start::model(fixture("sentiment"))
            .set("inference_workers", "1")
            .set("queue_capacity", "1")
            .set("max_batch_size", "1")
            .set("request_timeout", "60s")
            .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "2000"),
    )
    .await;
    let metrics = server.url("/metrics");
    let client = reqwest::Client::new();
    let predict = |text: &str| {
        client
            .post(server.url("/predict"))
            .json(&json!({ "text": text }))
            .send()
    };
    let computing = tokio::spawn(predict("first"));
    metric_reaches(
        &metrics,
        "hotserve_batch_size_count{model=\"sentiment\"}",
        1.0,
    )
    .await;
    let queued = tokio::spawn(predict("second"));
    metric_reaches(&metrics, "hotserve_queue_depth", 1.0).await;

    let refused = predict("third").await.unwrap();
    assert!(
        !computing.is_finished(),
        "the 429 came at once, not after the busy worker finished"
    );
    assert_eq!(refused.status(), 429);
    let retry_after = refused.headers().get("retry-after").cloned();
    assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_code"], "RESOURCE_EXHAUSTED", "{body}");

    for request in [computing, queued] {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}

/// A request past its deadline gets 504 at the deadline, though the worker is still busy.
#[tokio::test]
async fn a_request_past_its_deadline_gets_504() {
    let server = spawn_ready(
        process::Start::model(fixture("sentiment"))
            .set("inference_workers", "1")
            .set("request_timeout", "500ms")
            .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "10000"),
    )
    .await;
    let started = Instant::now();
    let (status, body) = post_json(server.url("/predict"), json!({"text": "too late"})).await;
    // Inference takes 10 s, so a 200 is impossible and the answer cannot wait for it.
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error_code"], "DEADLINE_EXCEEDED", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered at the 500ms deadline, not after inference ({:?})",
        started.elapsed()
    );
    let rejected = metric(
        &server.url("/metrics"),
        "hotserve_rejected_requests_total{reason=\"deadline\"}",
    )
    .await;
    assert_eq!(rejected, Some(1.0));
}

/// Requests whose client has gone away are dropped from the queue before inference.
#[tokio::test]
async fn disconnected_clients_are_dropped_before_inference() {
    let server = spawn_ready(
        process::Start::model(fixture("sentiment"))
            .set("inference_workers", "1")
            .set("max_batch_size", "1")
            .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "3000"),
    )
    .await;
    let metrics = server.url("/metrics");
    let client = reqwest::Client::new();
    let predict = |text: String| {
        client
            .post(server.url("/predict"))
            .json(&json!({ "text": text }))
            .send()
    };
    // One request occupies the only worker...
    let first = tokio::spawn(predict("first".into()));
    metric_reaches(
        &metrics,
        "hotserve_batch_size_count{model=\"sentiment\"}",
        1.0,
    )
    .await;
    // ...while five more queue up and then give up (their connections close).
    let gone: Vec<_> = (0..5)
        .map(|i| tokio::spawn(predict(format!("gone {i}"))))
        .collect();
    metric_reaches(&metrics, "hotserve_queue_depth", 5.0).await;
    for request in gone {
        request.abort();
    }
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    // The worker takes jobs in order: once a later request is answered, every abandoned one
    // has been taken from the queue.
    assert_eq!(predict("last".into()).await.unwrap().status(), 200);
    assert_eq!(
        metric(&metrics, "hotserve_batch_size_count{model=\"sentiment\"}").await,
        Some(2.0),
        "only the requests whose client stayed were computed"
    );
}

/// `POST /admin/reload` needs the bearer token; `POST /hooks/mlflow` needs a valid signature.
#[tokio::test]
async fn admin_and_webhook_routes_check_credentials() {
    let server = Start::model(fixture("sentiment"))
        .set("admin_token", "adm1n")
        .set("webhook_secret", "wh-secret")
        .ready()
        .await;
    let client = reqwest::Client::new();
    let admin = |token: Option<&str>| {
        let mut request = client.post(server.url("/admin/reload"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(admin(None).await.unwrap().status(), 401);
    assert_eq!(admin(Some("wrong")).await.unwrap().status(), 403);
    assert_eq!(admin(Some("adm1n")).await.unwrap().status(), 202);
    let health = health_until(&server, "the admin check", |health| {
        health["last_check"]["trigger"] == "admin"
    })
    .await;
    assert_eq!(health["last_check"]["result"], "unchanged", "{health}");
    // ?wait=true answers once a check that started after the request has finished.
    let waited = client
        .post(server.url("/admin/reload?wait=true"))
        .bearer_auth("adm1n")
        .send()
        .await
        .unwrap();
    assert_eq!(waited.status(), 200);
    let answer: Value = waited.json().await.unwrap();
    assert_eq!(answer["status"], "checked");
    assert_eq!(answer["last_check"]["trigger"], "admin");
    assert_eq!(answer["model"]["name"], "sentiment");

    let body = br#"{"entity": "model_version", "action": "created", "data": {"name": "sentiment", "version": "2"}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let deliver = |id: &str, timestamp: &str, signature: String| {
        client
            .post(server.url("/hooks/mlflow"))
            .header("content-type", "application/json")
            .header("x-mlflow-delivery-id", id)
            .header("x-mlflow-timestamp", timestamp)
            .header("x-mlflow-signature", signature)
            .body(body.to_vec())
            .send()
    };
    let sign = hotserve::reload::webhook::sign;
    let wrong = deliver("d1", &now, sign("not-the-secret", "d1", &now, body))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let answer: Value = wrong.json().await.unwrap();
    assert_eq!(answer["error_code"], "UNAUTHENTICATED");
    let good = deliver("d2", &now, sign("wh-secret", "d2", &now, body))
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let replay = deliver("d2", &now, sign("wh-secret", "d2", &now, body))
        .await
        .unwrap();
    assert_eq!(replay.status(), 401, "a replayed delivery is refused");
    let stale = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600)
        .to_string();
    let old = deliver("d3", &stale, sign("wh-secret", "d3", &stale, body))
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "a stale delivery is refused");
    let malformed = deliver("d4", &now, "sha256=abc".into()).await.unwrap();
    assert_eq!(malformed.status(), 400);
}

/// Random bodies of every shape never produce a 5xx and never stop the server.
#[tokio::test]
async fn random_inputs_never_cause_a_server_error() {
    let server = start_fixture().await;
    let client = reqwest::Client::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"text\"",
        "\"texts\"",
        "\"inputs\"",
        "\"instances\"",
        "\"dataframe_split\"",
        "\"dataframe_records\"",
        "\"columns\"",
        "\"data\"",
        "\"params\"",
        "null",
        "true",
        "1e999",
        "-0",
        "\"\"",
        "\"\\u0000\"",
        "\"héllo\"",
        "12345678901234567890",
        "\n",
        "text",
        "\"a,b\"",
        "\u{FEFF}",
        "\\",
    ];
    for round in 0..300 {
        let body: Vec<u8> = if round % 5 == 0 {
            (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect()
        } else {
            (0..rng.usize(1..24))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect::<String>()
                .into_bytes()
        };
        let (path, content_type) = match round % 4 {
            0 => ("/predict", "application/json"),
            1 => ("/predict/batch", "application/json"),
            2 => ("/invocations", "application/json"),
            _ => ("/invocations", "text/csv"),
        };
        let response = client
            .post(server.url(path))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().as_u16() < 500,
            "{path} {:?} -> {}",
            String::from_utf8_lossy(&body),
            response.status()
        );
    }
    let (status, body) = post_json(server.url("/predict"), json!({"text": "I love this"})).await;
    assert_eq!((status, body["label"].as_str()), (200, Some("POSITIVE")));
}

#[test]
fn bad_configuration_is_reported_at_once() {
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "nowhere",
            "--set",
            "max_batch_size=0",
            "--set",
            "bogus=1",
        ],
        &[("HOTSERVE_LOG_FORMAT", "xml")],
    );
    assert_eq!(code, 2, "{stderr}");
    for fragment in [
        "listen = 'nowhere'",
        "max_batch_size = '0'",
        "unknown setting 'bogus'",
        "log_format = 'xml'",
    ] {
        assert!(
            stderr.contains(fragment),
            "{fragment} missing from:\n{stderr}"
        );
    }
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model-uri",
            "/definitely/not/here",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/definitely/not/here"), "{stderr}");
    // A registry URI without a registry is a configuration error, not a 503 for hours.
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model-uri",
            "models:/sentiment@champion",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("MLFLOW_TRACKING_URI is not set"),
        "{stderr}"
    );
    // A misspelt variable, a mistyped key and a bad MODEL_URI: one pass, each with a way out.
    let (code, _, stderr) = run(
        &[
            "serve",
            "--set",
            "lisen=127.0.0.1:0",
            "--model-uri",
            "s4://models/x",
        ],
        &[("HOTSERVE_POLL_INTERVALL", "5s")],
    );
    assert_eq!(code, 2, "{stderr}");
    for fragment in [
        "unknown environment variable HOTSERVE_POLL_INTERVALL; did you mean 'HOTSERVE_POLL_INTERVAL'?",
        "unknown setting 'lisen' in --set lisen; did you mean 'listen'?",
        "model_uri: invalid model URI 's4://models/x': unknown scheme 's4:'",
    ] {
        assert!(stderr.contains(fragment), "{fragment} missing from:\n{stderr}");
    }
    // Several models, one of them a directory that is not there: the message names it.
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model",
            &format!("sentiment={}", fixture("sentiment").display()),
            "--model",
            "fraud=/srv/models/fraud",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("model 'fraud' (uri /srv/models/fraud): /srv/models/fraud does not exist")
            && !stderr.contains("MODEL_URI"),
        "{stderr}"
    );
}

#[test]
fn help_shows_defaults_and_each_command_its_own_flags() {
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("(HOTSERVE_LISTEN; default 0.0.0.0:8080)")
            && stdout.contains("(HOTSERVE_POLL_INTERVAL; default 30s)"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["validate", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("--listen")
            && !stdout.contains("--grpc-listen")
            && stdout.contains("--set"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["validate", fixture("sentiment").to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("name: sentiment"),
        "named as serve names it: {stdout}"
    );
}

#[test]
fn validate_accepts_the_fixture_and_rejects_a_broken_copy() {
    let (code, stdout, stderr) = run(&["validate", fixture("sentiment").to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would be accepted") && stdout.contains("golden examples passed: 6"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("sentiment"), dir.path());
    std::fs::write(dir.path().join("model.onnx"), b"not an onnx graph").unwrap();
    let (code, _, stderr) = run(&["validate", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("model.onnx") && stderr.contains("would NOT be accepted"),
        "{stderr}"
    );

    std::fs::copy(
        fixture("sentiment/model.onnx"),
        dir.path().join("model.onnx"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), b"{\"broken\": ").unwrap();
    let (code, _, stderr) = run(&["validate", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("tokenizer.json") && stderr.contains("not a Hugging Face tokenizer"),
        "{stderr}"
    );
}

#[test]
fn validate_against_compares_with_the_live_model_as_shadow_mode_would() {
    let inputs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        inputs.path(),
        "I love this\nI hate this\n\nThis is wonderful, great product\nterrible, awful experience\n",
    )
    .unwrap();
    let inputs = inputs.path().to_str().unwrap();
    // Timing on a busy machine is noise here; agreement is the point.
    let env = [("HOTSERVE_SHADOW_MAX_LATENCY_RATIO", "1000")];
    let live = fixture("sentiment");
    let live = live.to_str().unwrap();
    let v2 = fixture("sentiment_v2");
    let args = [
        "validate",
        v2.to_str().unwrap(),
        "--against",
        live,
        "--inputs",
        inputs,
    ];
    let (code, stdout, stderr) = run(&args, &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would be promoted: agreed on 100% of 4 requests"),
        "{stdout}"
    );

    // The same weights with the label names swapped (golden examples too): it passes the gate
    // and says the opposite of the live model on every text.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(live), dir.path());
    let mlmodel = std::fs::read_to_string(dir.path().join("MLmodel")).unwrap();
    let swapped = mlmodel
        .replace("NEGATIVE", "SWAP")
        .replace("POSITIVE", "NEGATIVE")
        .replace("SWAP", "POSITIVE");
    std::fs::write(dir.path().join("MLmodel"), swapped).unwrap();
    let args = [
        "validate",
        dir.path().to_str().unwrap(),
        "--against",
        live,
        "--inputs",
        inputs,
    ];
    let (code, _, stderr) = run(&args, &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("would be refused against")
            && stderr.contains("agreed on 0% of 4 requests, needs 95%"),
        "{stderr}"
    );
}

/// `adaptive_pool`: a request alone on an idle pool runs on the model's all-cores session
/// (counted in `hotserve_all_cores_batches_total`), never with the setting off; a burst of
/// concurrent requests (workers parked while a batch holds every core, then woken) is answered
/// in full and right either way.
#[tokio::test]
async fn a_lone_request_runs_on_all_cores_and_a_burst_is_answered_in_full() {
    let series = "hotserve_all_cores_batches_total{model=\"sentiment\"}";
    for adaptive in ["true", "false"] {
        let server = Start::model(fixture("sentiment"))
            .set("inference_workers", "2")
            .set("adaptive_pool", adaptive)
            .ready()
            .await;
        let metrics = server.url("/metrics");
        for _ in 0..3 {
            let (status, answer) =
                post_json(server.url("/predict"), json!({"text": "I love this"})).await;
            assert_eq!((status, answer["label"].as_str()), (200, Some("POSITIVE")));
        }
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (text, label) = match i % 2 {
                0 => ("I love this, wonderful", "POSITIVE"),
                _ => ("terrible, I hate it", "NEGATIVE"),
            };
            let url = server.url("/predict");
            burst.spawn(async move { (post_json(url, json!({ "text": text })).await, label) });
        }
        while let Some(answered) = burst.join_next().await {
            let ((status, answer), label) = answered.expect("the request task ran");
            assert_eq!(
                (status, answer["label"].as_str()),
                (200, Some(label)),
                "{answer}"
            );
        }
        let lone = metric(&metrics, series)
            .await
            .expect("the series is exposed");
        match adaptive {
            // Each of the sequential requests found the other worker idle (the burst may add more).
            "true" => assert!(lone >= 1.0, "{series} = {lone}"),
            _ => assert_eq!(lone, 0.0, "{series} with adaptive_pool off"),
        }
        server.stop().await.expect("clean stop");
    }
}

/// The access log: JSON lines appended to a file (in process), and events of the daemon's log
/// output under the target `hotserve::access` (the real binary, JSON logs).
#[tokio::test]
async fn the_access_log_records_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let server = Start::model(fixture("sentiment"))
        .set("access_log", file.to_str().unwrap())
        .ready()
        .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .post(server.url("/predict"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("x-request-id", "access-1")
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let version = response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.bytes().await.unwrap();
    let (status, _) = post_json(server.url("/predict"), json!({"nope": 1})).await;
    assert_eq!(status, 400);
    reqwest::get(server.url("/health/live")).await.unwrap();
    let records: Vec<Value> = eventually("the three requests in the access log", async || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        let live = records.iter().any(|r| r["path"] == "/health/live");
        if live {
            Ok(records)
        } else {
            Err(format!("{} lines", records.len()))
        }
    })
    .await;
    let predict = records
        .iter()
        .find(|r| r["request_id"] == "access-1")
        .expect("the prediction's record");
    assert_eq!(predict["method"], "POST");
    assert_eq!(
        (predict["route"].as_str(), predict["path"].as_str()),
        (Some("/predict"), Some("/predict"))
    );
    assert_eq!(predict["status"], 200);
    assert_eq!(predict["bytes"], body.len());
    assert_eq!(predict["model"], "sentiment");
    assert_eq!(predict["version"], version.as_str());
    assert_eq!(predict["trace_id"], trace);
    assert!(predict["duration_ms"].as_f64().unwrap() > 0.0, "{predict}");
    // The batch that ran it (it was alone) and its wait for a worker.
    assert_eq!(predict["batch_size"], 1, "{predict}");
    let waited = predict["queue_ms"].as_f64().unwrap();
    assert!(
        (0.0..predict["duration_ms"].as_f64().unwrap()).contains(&waited),
        "{predict}"
    );
    assert!(
        predict["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{predict}"
    );
    let time = predict["time"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    let refused = records
        .iter()
        .find(|r| r["status"] == 400)
        .expect("the bad request's record");
    assert_eq!(refused["trace_id"], Value::Null);
    assert_eq!(
        refused["batch_size"],
        Value::Null,
        "never queued: {refused}"
    );
    assert!(
        refused["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 16),
        "{refused}"
    );
    let live = records
        .iter()
        .find(|r| r["path"] == "/health/live")
        .unwrap();
    assert_eq!(
        (live["status"].as_u64(), &live["model"]),
        (Some(200), &Value::Null)
    );
    server.stop().await.expect("a clean shutdown");

    // With the daemon's own log output: one event per request, target hotserve::access.
    let server = spawn_ready(
        process::Start::model(fixture("sentiment"))
            .set("access_log", "log")
            .set("log_format", "json"),
    )
    .await;
    let response = reqwest::Client::new()
        .post(server.url("/predict"))
        .header("x-request-id", "access-2")
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event: Value = eventually("the access event in the log", async || {
        server
            .logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["fields"]["request_id"] == "access-2")
    })
    .await;
    assert_eq!(event["target"], "hotserve::access", "{event}");
    assert_eq!(event["fields"]["route"], "/predict", "{event}");
    assert_eq!(event["fields"]["status"], 200, "{event}");
    assert_eq!(event["fields"]["model"], "sentiment", "{event}");
    assert_eq!(event["fields"]["batch_size"], 1, "{event}");
}
