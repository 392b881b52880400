//! OpenTelemetry traces, exported to a receiver built on the official OTLP protobuf
//! definitions (`support/otlp_receiver.py`, the `opentelemetry-proto` package) over gRPC and
//! over HTTP: the server span continues the caller's `traceparent` on HTTP/1.1, HTTP/2 and
//! gRPC; a request's tokenize, queue and inference spans; an inference batch linked to each
//! request it served; a reload traced through its registry calls, with the `traceparent` the
//! registry received; a collector that is down costs no request and its drops are counted.
//!
//! The trace pipeline is process-wide, so these tests run the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::support::curl::curl;
use crate::support::hotserve::{Hotserve, Start};
use crate::support::{
    eventually, fixture, helper, metric, metric_reaches, mlflow, register, venv, FaultProxy,
};
use hotserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hotserve::grpc::proto::model_infer_request::InferInputTensor;
use hotserve::grpc::proto::{InferTensorContents, ModelInferRequest};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// The receiver: its ports and every span it has decoded so far.
struct Receiver {
    child: Child,
    grpc: u16,
    http: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let mut child = Command::new(venv().join("bin/python"))
            .arg(helper("otlp_receiver.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver with the virtualenv's python");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ports: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let seen = spans.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        Receiver {
            child,
            grpc: ports["grpc"].as_u64().unwrap() as u16,
            http: ports["http"].as_u64().unwrap() as u16,
            spans,
        }
    }

    /// `hotserve` exporting to this receiver over `protocol`.
    fn exporting(&self, start: Start, protocol: &str) -> Start {
        let port = if protocol == "grpc" {
            self.grpc
        } else {
            self.http
        };
        start
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    }

    /// The spans received so far.
    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits for a span for which `test` holds.
    async fn span(&self, what: &str, test: impl Fn(&Value) -> bool) -> Value {
        eventually(format!("a span: {what}"), async || {
            let spans = self.spans();
            spans
                .iter()
                .find(|span| test(span))
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        spans.iter().filter_map(|s| s["name"].as_str()).collect();
                    format!("{names:?}")
                })
        })
        .await
    }

    /// Waits for the span named `name` that is a child of `parent`.
    async fn child(&self, parent: &Value, name: &str) -> Value {
        let (trace, id) = (parent["trace_id"].clone(), parent["span_id"].clone());
        self.span(&format!("{name} under {id}"), |span| {
            span["name"] == name && span["trace_id"] == trace && span["parent_span_id"] == id
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

async fn predict(server: &Hotserve, traceparent: &str, args: &[&str]) -> String {
    let mut all = vec![
        "-H",
        "content-type: application/json",
        "-H",
        traceparent,
        "-d",
        r#"{"text": "I love this"}"#,
    ];
    all.extend_from_slice(args);
    let answer = curl(&all, server.url("/predict")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
        .headers
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_string)
        })
        .map(|id| id.trim().to_string())
        .expect("an x-request-id header")
}

#[tokio::test]
async fn http_requests_continue_the_callers_trace_down_to_the_inference_batch() {
    let receiver = Receiver::start();
    // One worker that takes 300 ms a batch: requests sent while it computes wait and then run
    // together, in one batch.
    let logs = tempfile::tempdir().unwrap();
    let payload = logs.path().join("payload.jsonl");
    let access = logs.path().join("access.jsonl");
    let server = receiver
        .exporting(Start::model(fixture("sentiment")), "http/protobuf")
        .set("payload_log", payload.to_str().unwrap())
        .set("access_log", access.to_str().unwrap())
        .set("inference_workers", "1")
        .set("max_batch_delay", "0ms")
        .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "300")
        .spawn();
    server.wait_ready().await;

    // HTTP/1.1: the server span is the caller's child, by the HTTP conventions.
    let header = format!("traceparent: {}", traceparent(TRACE, PARENT));
    let id = predict(&server, &header, &[]).await;
    let request = receiver
        .span("the server span of the HTTP/1.1 request", |span| {
            span["trace_id"] == TRACE && span["parent_span_id"] == PARENT
        })
        .await;
    assert_eq!(request["name"], "POST /predict");
    assert_eq!(request["kind"], 2, "SERVER: {request}");
    let attributes = &request["attributes"];
    assert_eq!(attributes["http.request.method"], "POST");
    assert_eq!(attributes["http.route"], "/predict");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["network.protocol.version"], "1.1");
    assert_eq!(attributes["hotserve.model"], "sentiment");
    assert!(
        attributes["hotserve.model.version"].is_string(),
        "{request}"
    );
    assert_eq!(attributes["hotserve.request_id"], id.as_str());
    assert_eq!(request["resource"]["service.name"], "hotserve");
    // Where its time went.
    let tokenize = receiver.child(&request, "tokenize").await;
    let wait = receiver.child(&request, "queue wait").await;
    let inference = receiver.child(&request, "inference").await;
    let at = |span: &Value, field: &str| span[field].as_u64().expect("a time in ns");
    assert!(at(&tokenize, "end_ns") <= at(&wait, "start_ns") + 1_000_000);
    assert!(at(&wait, "end_ns") <= at(&inference, "start_ns"));
    // It ran alone: its `inference` span is the batch, and no batch span is made for it.
    assert_eq!(inference["attributes"]["hotserve.batch.size"], 1);
    assert_eq!(inference["attributes"]["hotserve.batch.requests"], 1);
    assert_eq!(inference["attributes"]["hotserve.worker"], 0);
    assert_eq!(inference["links"], json!([]), "{inference}");

    // HTTP/2 (prior knowledge), the same.
    let h2_parent = "1111111111111111";
    let header = format!("traceparent: {}", traceparent(TRACE, h2_parent));
    predict(&server, &header, &["--http2-prior-knowledge"]).await;
    let h2 = receiver
        .span("the server span of the HTTP/2 request", |span| {
            span["parent_span_id"] == h2_parent
        })
        .await;
    assert_eq!(h2["trace_id"], TRACE);
    assert_eq!(h2["attributes"]["network.protocol.version"], "2");

    // Three requests that arrive while the worker computes a fourth share one batch, linked to
    // each of them.
    let traces: Vec<String> = (1..=4).map(|n| format!("{n:032x}")).collect();
    let requests = traces.iter().map(|trace| {
        let header = format!("traceparent: {}", traceparent(trace, PARENT));
        let server = &server;
        async move { predict(server, &header, &[]).await }
    });
    futures_util::future::join_all(requests).await;
    let shared = receiver
        .span("an inference batch of several requests", |span| {
            span["name"] == "inference batch" && span["links"].as_array().unwrap().len() >= 2
        })
        .await;
    assert_eq!(
        shared["attributes"]["hotserve.batch.requests"],
        shared["links"].as_array().unwrap().len()
    );
    for link in shared["links"].as_array().unwrap() {
        let linked = link["trace_id"].as_str().unwrap();
        assert!(traces.iter().any(|t| t == linked), "{shared}");
        let server_span = receiver
            .span("a linked request's server span", |span| {
                span["trace_id"] == linked && span["span_id"] == link["span_id"]
            })
            .await;
        assert_eq!(server_span["name"], "POST /predict");
        // Its own `inference` span links back to the batch.
        let inference = receiver.child(&server_span, "inference").await;
        assert_eq!(
            inference["links"][0]["span_id"], shared["span_id"],
            "{inference}"
        );
    }
    // A request without a trace context starts a trace of its own.
    let fresh = curl(
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"text": "hi"}"#,
        ],
        server.url("/predict"),
    )
    .await;
    assert_eq!(fresh.status, 200);
    let root = receiver
        .span("a root server span", |span| {
            span["name"] == "POST /predict" && span["parent_span_id"] == ""
        })
        .await;
    // Its trace id, which no caller gave, is the one the access and payload logs record.
    let trace = root["trace_id"].as_str().unwrap().to_string();
    for (log, what) in [(&access, "access"), (&payload, "payload")] {
        eventually(
            format!("the {what} log's record of trace {trace}"),
            async || {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .find(|record| record["trace_id"] == trace.as_str())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn grpc_calls_continue_the_callers_trace_over_an_otlp_grpc_exporter() {
    let receiver = Receiver::start();
    let server = receiver
        .exporting(Start::model(fixture("sentiment")), "grpc")
        .set("grpc_listen", "127.0.0.1:0")
        .env("OTEL_SERVICE_NAME", "sentiment-serving")
        .spawn();
    server.wait_ready().await;
    let grpc = eventually("the gRPC listener in the logs", async || {
        server.logs().lines().find_map(|line| {
            let line: Value = serde_json::from_str(line).ok()?;
            line.pointer("/fields/grpc_listen")?
                .as_str()
                .map(str::to_string)
        })
    })
    .await;
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let mut request = tonic::Request::new(ModelInferRequest {
        model_name: "sentiment".into(),
        inputs: vec![InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                bytes_contents: vec![b"I love this".to_vec()],
                ..Default::default()
            }),
        }],
        ..Default::default()
    });
    let parent = "2222222222222222";
    request
        .metadata_mut()
        .insert("traceparent", traceparent(TRACE, parent).parse().unwrap());
    client.model_infer(request).await.expect("an answer");
    let call = receiver
        .span("the gRPC call's server span", |span| {
            span["parent_span_id"] == parent
        })
        .await;
    assert_eq!(call["trace_id"], TRACE);
    assert_eq!(call["name"], "inference.GRPCInferenceService/ModelInfer");
    assert_eq!(call["kind"], 2, "SERVER: {call}");
    assert_eq!(call["transport"], "grpc");
    let attributes = &call["attributes"];
    assert_eq!(attributes["rpc.system"], "grpc");
    assert_eq!(attributes["rpc.service"], "inference.GRPCInferenceService");
    assert_eq!(attributes["rpc.method"], "ModelInfer");
    assert_eq!(attributes["rpc.grpc.status_code"], 0);
    assert_eq!(attributes["hotserve.model"], "sentiment");
    assert_eq!(call["resource"]["service.name"], "sentiment-serving");
    receiver.child(&call, "inference").await;
}

#[tokio::test]
async fn a_reload_is_traced_through_its_registry_calls_and_mlflow_receives_the_context() {
    let server = mlflow().await;
    let proxy = FaultProxy::start(server.addr).await;
    let name = "traced-reload";
    register(
        server,
        json!({"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]}),
    );
    let receiver = Receiver::start();
    let hotserve = receiver
        .exporting(
            Start::model(format!("models:/{name}@champion")),
            "http/protobuf",
        )
        .env("MLFLOW_TRACKING_URI", &proxy.url())
        .spawn();
    hotserve.wait_ready().await;
    let check = receiver
        .span("the startup reload check", |span| {
            span["name"] == "reload check" && span["attributes"]["hotserve.model"] == name
        })
        .await;
    assert_eq!(check["parent_span_id"], "", "a root span: {check}");
    assert_eq!(check["attributes"]["hotserve.trigger"], "startup");
    assert_eq!(check["attributes"]["hotserve.result"], "loaded");
    assert_eq!(check["attributes"]["hotserve.model.version"], "1");
    let resolve = receiver.child(&check, "resolve").await;
    let download = receiver.child(&check, "download").await;
    assert!(
        download["attributes"]["hotserve.bytes"].as_i64().unwrap() > 0,
        "{download}"
    );
    receiver.child(&check, "gate").await;
    receiver.child(&check, "swap").await;
    // The registry calls: client spans whose context MLflow received as `traceparent`.
    let trace = check["trace_id"].as_str().unwrap().to_string();
    let calls: Vec<Value> = eventually("the registry calls' spans", async || {
        let calls: Vec<Value> = receiver
            .spans()
            .into_iter()
            .filter(|span| {
                span["name"] != "resolve" && span["trace_id"] == trace.as_str() && span["kind"] == 3
            })
            .collect();
        (!calls.is_empty()).then_some(calls)
    })
    .await;
    assert!(
        calls
            .iter()
            .any(|call| call["parent_span_id"] == resolve["span_id"]),
        "a registry call under resolve: {calls:?}"
    );
    let sent: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter_map(|seen| seen.traceparent)
        .collect();
    for call in &calls {
        let expected = format!("00-{trace}-{}-01", call["span_id"].as_str().unwrap());
        assert!(sent.contains(&expected), "{expected} not among {sent:?}");
        assert!(call["attributes"]["url.full"]
            .as_str()
            .unwrap()
            .starts_with(&proxy.url()));
    }
}

#[tokio::test]
async fn a_collector_that_is_down_costs_no_request_and_its_drops_are_counted() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = Start::model(fixture("sentiment"))
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{port}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
        .spawn();
    server.wait_ready().await;
    for n in 0..40 {
        let answer = curl(
            &[
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"text": "I love this"}"#,
            ],
            server.url("/predict"),
        )
        .await;
        assert_eq!(answer.status, 200, "request {n}: {}", answer.body);
    }
    let metrics = server.url("/metrics");
    let series = r#"hotserve_trace_spans_dropped_total{reason="export_failed"}"#;
    metric_reaches(&metrics, series, 40.0).await;
    assert_eq!(
        metric(&metrics, "hotserve_trace_spans_exported_total").await,
        Some(0.0)
    );
    // Logged once, not per batch.
    let logs = server.logs();
    assert_eq!(logs.matches("cannot export traces").count(), 1, "{logs}");
}

#[test]
fn an_unknown_otlp_protocol_is_a_configuration_error() {
    let (code, _, stderr) = crate::support::hotserve::run(
        &[
            "serve",
            "--model-uri",
            fixture("sentiment").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{stderr}");
}
