//! Payload logging (`payload_log`) against the daemon, in-process unless its log lines are the
//! point: complete request and response records for a text model (`/predict`, a refused
//! request) and a tensor model (OIP REST, `tensor_model`; gRPC with its codes) in a file; sampling at 0, 1 and 0.5
//! (per model, over the daemon-wide setting); rotation with a small `payload_log_max_bytes`;
//! inputs left out; CloudEvents in binary mode received by a small HTTP server on loopback;
//! that server down (503) and back, with every prediction answered meanwhile, drops counted,
//! the records after it is back delivered and one log line each way (the real binary); what is
//! queued at shutdown delivered before the daemon stops; and destinations that cannot work
//! refused at start (exit 2).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::support::hotserve as process;
use crate::support::inprocess::Start;
use crate::support::{eventually, fixture, metric, metric_reaches};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `NAME=DIR` for each model, as the `models` setting takes them.
fn models(list: &[(&str, &Path)]) -> String {
    list.iter()
        .map(|(name, dir)| format!("{name}={}", dir.display()))
        .collect::<Vec<_>>()
        .join(",")
}

/// POSTs `body` to `path` with `x-request-id: id`; the status and the answer.
async fn post(url: String, id: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("x-request-id", id)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&body)
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The records in the JSON lines file at `path` (none when it does not exist).
fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Waits until the file at `path` holds `count` records; returns them.
async fn records(path: &Path, count: usize) -> Vec<Value> {
    eventually(format!("{count} payload records"), async || {
        let records = read_records(path);
        if records.len() >= count {
            Ok(records)
        } else {
            Err(format!("{} records", records.len()))
        }
    })
    .await
}

/// The record of `kind` for request `id`.
fn record<'a>(records: &'a [Value], kind: &str, id: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["type"] == kind && r["request_id"] == id)
        .unwrap_or_else(|| panic!("no {kind} record for {id} in {records:?}"))
}

#[tokio::test]
async fn a_file_gets_complete_records_of_text_and_tensor_models() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.jsonl");
    let (text, tensor) = (fixture("sentiment"), fixture("tensor_model"));
    let server = Start::default()
        .set("models", &models(&[("text", &text), ("tensor", &tensor)]))
        .set("payload_log", &format!("file://{}", file.display()))
        .ready()
        .await;
    let (status, answer) = post(
        server.url("/models/text/predict"),
        "text-1",
        json!({"text": "I love this"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let x = json!([[1.0, 2.0, 3.0, 4.0]]);
    let infer = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}]});
    let (status, inferred) = post(server.url("/v2/models/tensor/infer"), "tensor-1", infer).await;
    assert_eq!(status, 200, "{inferred}");
    let (status, refused) = post(
        server.url("/models/text/predict"),
        "refused-1",
        json!({"nope": 1}),
    )
    .await;
    assert_eq!(status, 400);
    let records = records(&file, 6).await;

    let request = record(&records, "request", "text-1");
    let version = answer["model_version"].as_str().unwrap();
    assert_eq!(request["model"], "text");
    assert_eq!(request["model_version"], version);
    assert_eq!(request["trace_id"], TRACE);
    assert_eq!(
        (&request["protocol"], &request["route"]),
        (&json!("http"), &json!("/models/{name}/predict"))
    );
    assert_eq!(request["inputs"], json!({"texts": ["I love this"]}));
    assert!(humantime::parse_rfc3339(request["time"].as_str().unwrap()).is_ok());
    let response = record(&records, "response", "text-1");
    assert_eq!(response["status"], 200);
    assert!(response["duration_ms"].as_f64().unwrap() > 0.0);
    let prediction = &response["outputs"]["predictions"][0];
    assert_eq!(prediction["label"], answer["label"]);
    assert_eq!(prediction["scores"], answer["scores"]);

    let request = record(&records, "request", "tensor-1");
    assert_eq!(request["route"], "/v2/models/{name}/infer");
    assert_eq!(
        request["inputs"],
        json!({"tensors": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]})
    );
    let response = record(&records, "response", "tensor-1");
    let logged = &response["outputs"]["tensors"];
    for output in inferred["outputs"].as_array().unwrap() {
        let same = logged
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == output["name"])
            .unwrap_or_else(|| panic!("output {} not logged: {logged}", output["name"]));
        assert_eq!(
            (&same["datatype"], &same["shape"], &same["data"]),
            (&output["datatype"], &output["shape"], &output["data"])
        );
    }

    let request = record(&records, "request", "refused-1");
    assert_eq!(request["inputs"], Value::Null);
    let response = record(&records, "response", "refused-1");
    assert_eq!(response["status"], 400);
    assert_eq!(response["error"], refused["message"]);
    assert_eq!(response["outputs"], Value::Null);
    metric_reaches(
        &server.url("/metrics"),
        "hotserve_payload_log_records_total{outcome=\"written\"}",
        6.0,
    )
    .await;
    server.stop().await.expect("a clean stop");
}

/// gRPC: the request's `id` is the record's request id, the status its gRPC code.
#[tokio::test]
async fn grpc_predictions_are_logged_with_their_codes() {
    use hotserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use hotserve::grpc::proto::model_infer_request::InferInputTensor;
    use hotserve::grpc::proto::{InferTensorContents, ModelInferRequest};

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.jsonl");
    let server = Start::default()
        .set("models", &models(&[("tensor", &fixture("tensor_model"))]))
        .set("payload_log", file.to_str().unwrap())
        .grpc()
        .ready()
        .await;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let call = |id: &str, shape: Vec<i64>| ModelInferRequest {
        model_name: "tensor".into(),
        id: id.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape,
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                fp32_contents: vec![1.0, 2.0, 3.0, 4.0],
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    client
        .model_infer(call("grpc-1", vec![1, 4]))
        .await
        .unwrap();
    let refused = client
        .model_infer(call("grpc-2", vec![4, 1]))
        .await
        .expect_err("a shape the model does not take");
    let records = records(&file, 4).await;
    let request = record(&records, "request", "grpc-1");
    assert_eq!(
        (&request["protocol"], &request["route"]),
        (&json!("grpc"), &json!("ModelInfer"))
    );
    assert_eq!(request["inputs"]["tensors"][0]["shape"], json!([1, 4]));
    let response = record(&records, "response", "grpc-1");
    assert_eq!(response["grpc_status"], 0);
    assert!(response["outputs"]["tensors"].is_array(), "{response}");
    let response = record(&records, "response", "grpc-2");
    assert_eq!(response["grpc_status"], tonic::Code::InvalidArgument as i32);
    assert_eq!(response["error"], refused.message());
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn each_model_logs_its_share_of_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.jsonl");
    let text = fixture("sentiment");
    let yaml = dir.path().join("models.yaml");
    std::fs::write(
        &yaml,
        format!(
            "models:\n  - {{name: none, uri: {0}, payload_log_sample: 0}}\n  - {{name: all, uri: {0}}}\n  - {{name: half, uri: {0}, payload_log_sample: 0.5}}\n  - {{name: unlogged, uri: {0}, payload_log: off}}\n",
            text.display()
        ),
    )
    .unwrap();
    let server = Start::default()
        .env("HOTSERVE_CONFIG", yaml.to_str().unwrap())
        .set("payload_log", file.to_str().unwrap())
        .set("payload_log_sample", "1")
        .ready()
        .await;
    for model in ["none", "all", "half", "unlogged"] {
        for i in 0..200 {
            let (status, _) = post(
                server.url(&format!("/models/{model}/predict")),
                &format!("{model}-{i}"),
                json!({"text": "fine"}),
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    // Every record of "all" is written once the last of its are; "half"'s came before.
    let written = metric_reaches(
        &server.url("/metrics"),
        "hotserve_payload_log_records_total{outcome=\"written\"}",
        400.0,
    )
    .await;
    let records = read_records(&file);
    assert_eq!(records.len() as f64, written);
    let count = |model: &str| records.iter().filter(|r| r["model"] == model).count();
    assert_eq!((count("none"), count("unlogged")), (0, 0));
    assert_eq!(count("all"), 400);
    let half = count("half");
    assert!(
        (2 * 60..=2 * 140).contains(&half),
        "{half} records of 200 predictions at 0.5"
    );
    // Sampled once per request: the records of a request come in pairs.
    for id in records.iter().map(|r| r["request_id"].as_str().unwrap()) {
        let kinds: Vec<&Value> = records
            .iter()
            .filter(|r| r["request_id"] == id)
            .map(|r| &r["type"])
            .collect();
        assert_eq!(kinds.len(), 2, "{id}: {kinds:?}");
    }
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn the_file_rotates_by_size_and_keeps_a_bounded_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.jsonl");
    let server = Start::model(fixture("sentiment"))
        .set("payload_log", file.to_str().unwrap())
        .set("payload_log_max_bytes", "4000")
        .set("payload_log_max_files", "3")
        .ready()
        .await;
    for i in 0..60 {
        let (status, _) = post(
            server.url("/predict"),
            &format!("r-{i}"),
            json!({"text": "a short sentence"}),
        )
        .await;
        assert_eq!(status, 200);
    }
    metric_reaches(
        &server.url("/metrics"),
        "hotserve_payload_log_records_total{outcome=\"written\"}",
        120.0,
    )
    .await;
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["payload.jsonl", "payload.jsonl.1", "payload.jsonl.2"]
    );
    for name in &names {
        let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size <= 4000, "{name}: {size} bytes");
    }
    // The newest records are in the current file, the older ones in .1.
    let current = read_records(&file);
    let last = current.last().unwrap();
    assert_eq!(
        (&last["request_id"], &last["type"]),
        (&json!("r-59"), &json!("response"))
    );
    let older = read_records(&PathBuf::from(format!("{}.1", file.display())));
    assert!(!older.is_empty());
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn inputs_are_left_out_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.jsonl");
    let server = Start::model(fixture("sentiment"))
        .set("payload_log", file.to_str().unwrap())
        .set("payload_log_inputs", "false")
        .ready()
        .await;
    let (status, _) = post(
        server.url("/predict/batch"),
        "secret-1",
        json!({"texts": ["my account number is 1234", "call me"]}),
    )
    .await;
    assert_eq!(status, 200);
    let records = records(&file, 2).await;
    let request = record(&records, "request", "secret-1");
    assert_eq!(request["inputs"], Value::Null);
    assert_eq!(request["inputs_omitted"], true);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("1234"), "{text}");
    let response = record(&records, "response", "secret-1");
    assert_eq!(
        response["outputs"]["predictions"].as_array().unwrap().len(),
        2
    );
    server.stop().await.expect("a clean stop");
}

/// One CloudEvent as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Value,
}

/// A CloudEvents receiver on loopback: keeps what it is sent and answers `status`.
struct Receiver {
    url: String,
    events: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// Posts received, whatever they were answered.
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let events: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (kept, answer, tried) = (events.clone(), status.clone(), attempts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (kept, answer, tried) = (kept.clone(), answer.clone(), tried.clone());
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (kept, answer, tried) = (kept.clone(), answer.clone(), tried.clone());
                    async move {
                        tried.fetch_add(1, Ordering::SeqCst);
                        let headers = request
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let bytes = request.into_body().collect().await.unwrap().to_bytes();
                        let status = answer.load(Ordering::SeqCst);
                        if status == 200 {
                            kept.lock().unwrap().push(Received {
                                headers,
                                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                            });
                        }
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            url,
            events,
            status,
            attempts,
        }
    }

    /// Waits until events for each of `ids` (request and response) have arrived.
    async fn received(&self, ids: &[&str]) -> Vec<Received> {
        eventually(format!("the events of {ids:?}"), async || {
            let events = self.events.lock().unwrap().clone();
            let missing: Vec<&&str> = ids
                .iter()
                .filter(|id| {
                    events
                        .iter()
                        .filter(|e| e.headers.get("ce-id").map(String::as_str) == Some(**id))
                        .count()
                        < 2
                })
                .collect();
            if missing.is_empty() {
                Ok(events)
            } else {
                Err(format!("missing {missing:?}"))
            }
        })
        .await
    }
}

#[tokio::test]
async fn an_http_sink_receives_cloudevents_in_binary_mode() {
    let receiver = Receiver::start().await;
    let server = Start::model(fixture("sentiment"))
        .set("payload_log", &receiver.url)
        .ready()
        .await;
    let (status, answer) = post(
        server.url("/predict"),
        "event-1",
        json!({"text": "I love this"}),
    )
    .await;
    assert_eq!(status, 200);
    let events = receiver.received(&["event-1"]).await;
    let of_type = |kind: &str| {
        events
            .iter()
            .find(|e| e.headers["ce-type"] == format!("org.kubeflow.serving.inference.{kind}"))
            .unwrap_or_else(|| panic!("no {kind} event in {events:?}"))
            .clone()
    };
    let (request, response) = (of_type("request"), of_type("response"));
    for event in [&request, &response] {
        let header = |name: &str| event.headers.get(name).map(String::as_str);
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(header("ce-specversion"), Some("1.0"));
        assert_eq!(header("ce-id"), Some("event-1"));
        assert_eq!(header("ce-inferenceservicename"), Some("sentiment"));
        assert_eq!(header("ce-component"), Some("predictor"));
        assert_eq!(header("ce-endpoint"), Some("default"));
        assert_eq!(header("ce-modelversion"), answer["model_version"].as_str());
        assert_eq!(header("ce-traceid"), Some(TRACE));
        assert!(header("ce-source").unwrap().ends_with("/models/sentiment"));
        assert!(humantime::parse_rfc3339(header("ce-time").unwrap()).is_ok());
    }
    assert_eq!(request.body["inputs"], json!({"texts": ["I love this"]}));
    assert_eq!(response.body["status"], 200);
    assert_eq!(
        response.body["outputs"]["predictions"][0]["label"],
        answer["label"]
    );
    metric_reaches(
        &server.url("/metrics"),
        "hotserve_payload_log_records_total{outcome=\"sent\"}",
        2.0,
    )
    .await;
    server.stop().await.expect("a clean stop");
}

/// What is queued when the daemon stops is delivered before it exits: the drain wakes the
/// writer of a sink that was down and waits for its last try.
#[tokio::test]
async fn records_queued_at_shutdown_are_delivered() {
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let server = Start::model(fixture("sentiment"))
        .set("payload_log", &receiver.url)
        .ready()
        .await;
    for id in ["last-1", "last-2"] {
        let (status, _) = post(server.url("/predict"), id, json!({"text": "bye"})).await;
        assert_eq!(status, 200);
    }
    eventually("the sink refusing a post", async || {
        match receiver.attempts.load(Ordering::SeqCst) {
            0 => Err("no post yet".to_string()),
            tried => Ok(tried),
        }
    })
    .await;
    receiver.status.store(200, Ordering::SeqCst);
    server.stop().await.expect("a clean stop");
    let ids: Vec<String> = receiver
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.headers["ce-id"].clone())
        .collect();
    assert_eq!(
        ids.iter().filter(|id| *id == "last-1").count(),
        2,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|id| *id == "last-2").count(),
        2,
        "{ids:?}"
    );
}

/// The real binary, for its log lines: the sink answers 503 (down) while predictions go on,
/// then 200 again.
#[tokio::test]
async fn a_sink_that_is_down_costs_no_prediction_and_gets_the_records_after_it_is_back() {
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let server = process::Start::model(fixture("sentiment"))
        .set("payload_log", &receiver.url)
        .set("payload_log_queue", "4")
        .spawn();
    server.wait_ready().await;
    for i in 0..40 {
        let (status, _) = post(
            server.url("/predict"),
            &format!("down-{i}"),
            json!({"text": "still answered"}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let metrics = server.url("/metrics");
    let dropped = metric_reaches(&metrics, "hotserve_payload_log_dropped_total", 2.0).await;
    assert_eq!(dropped % 2.0, 0.0, "records are dropped in pairs");
    receiver.status.store(200, Ordering::SeqCst);
    // Once the sink is back, every record of those predictions is sent or was dropped.
    eventually("the records kept meanwhile sent", async || {
        let sent = metric(
            &metrics,
            "hotserve_payload_log_records_total{outcome=\"sent\"}",
        )
        .await
        .unwrap_or(0.0);
        let dropped = metric(&metrics, "hotserve_payload_log_dropped_total")
            .await
            .unwrap_or(0.0);
        if sent > 0.0 && sent + dropped == 80.0 {
            Ok(())
        } else {
            Err(format!("{sent} sent, {dropped} dropped"))
        }
    })
    .await;
    let after: Vec<String> = (0..3).map(|i| format!("back-{i}")).collect();
    for id in &after {
        let (status, _) = post(server.url("/predict"), id, json!({"text": "back"})).await;
        assert_eq!(status, 200);
    }
    let ids: Vec<&str> = after.iter().map(String::as_str).collect();
    receiver.received(&ids).await;
    let logs = server.logs();
    let count = |what: &str| logs.lines().filter(|line| line.contains(what)).count();
    assert_eq!(count("payload log sink is down"), 1, "{logs}");
    assert_eq!(count("payload log sink is back"), 1, "{logs}");
}

#[tokio::test]
async fn destinations_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/payload.jsonl");
    let err = Start::model(fixture("sentiment"))
        .set("payload_log", missing.to_str().unwrap())
        .start()
        .stop()
        .await
        .expect_err("a file in a directory that does not exist");
    assert_eq!(err.exit_code(), 2);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("payload_log {}: ", missing.display()))
            && message.contains("HOTSERVE_PAYLOAD_LOG"),
        "{message}"
    );
    let (code, _, stderr) = process::run(
        &["serve", "--payload-log", "ftp://sink.example/x"],
        &[("MODEL_URI", fixture("sentiment").to_str().unwrap())],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("HOTSERVE_PAYLOAD_LOG") || stderr.contains("payload_log"),
        "{stderr}"
    );
    assert!(
        stderr.contains("'ftp://' is not a payload log scheme"),
        "{stderr}"
    );
}
