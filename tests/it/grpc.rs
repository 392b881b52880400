//! The gRPC listener (`inference.GRPCInferenceService`), with a tonic client generated from
//! the same .proto: in the test process (`support::inprocess`), every RPC, typed and raw
//! contents, errors and their codes, and one prediction path (gRPC, `/predict` and
//! `/invocations` give the same answers); against the real binary, whose debug failpoint
//! holds an inference worker busy, a call in flight across shutdown, deadlines and a client
//! that cancels. `tritonclient.grpc` itself is driven by `support/tritonclient_grpc.py`.

use std::time::{Duration, Instant};

use hotserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hotserve::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use hotserve::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

use crate::support::hotserve as process;
use crate::support::inprocess::{Server, Start};
use crate::support::{eventually, fixture, helper, metric, metric_reaches, venv};

type Client = GrpcInferenceServiceClient<Channel>;

const TEXTS: [&str; 3] = ["I love this", "I hate this", "it is a chair"];

/// A text model (`text`) and a tensor model (`tensor`), served over HTTP and gRPC.
fn two_models() -> Start {
    let list = format!(
        "text={},tensor={}",
        fixture("sentiment").display(),
        fixture("tensor_model").display()
    );
    Start::default().set("models", &list).grpc()
}

async fn connect(url: String) -> Client {
    let channel = Channel::from_shared(url)
        .expect("a valid URL")
        .connect()
        .await
        .expect("connect to the gRPC listener");
    GrpcInferenceServiceClient::new(channel)
}

async fn client(server: &Server) -> Client {
    connect(server.grpc_url()).await
}

fn input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents,
    }
}

fn texts_typed(texts: &[&str]) -> ModelInferRequest {
    let contents = InferTensorContents {
        bytes_contents: texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    ModelInferRequest {
        model_name: "text".into(),
        inputs: vec![input(
            "text",
            "BYTES",
            &[texts.len() as i64],
            Some(contents),
        )],
        ..Default::default()
    }
}

/// Each text prefixed by its u32 little-endian length, as tritonclient sends BYTES.
fn texts_raw(texts: &[&str]) -> ModelInferRequest {
    let raw: Vec<u8> = texts
        .iter()
        .flat_map(|t| (t.len() as u32).to_le_bytes().into_iter().chain(t.bytes()))
        .collect();
    ModelInferRequest {
        model_name: "text".into(),
        inputs: vec![input("text", "BYTES", &[texts.len() as i64], None)],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

fn rows_typed(rows: &[[f32; 4]]) -> ModelInferRequest {
    let contents = InferTensorContents {
        fp32_contents: rows.iter().flatten().copied().collect(),
        ..Default::default()
    };
    ModelInferRequest {
        model_name: "tensor".into(),
        inputs: vec![input("x", "FP32", &[rows.len() as i64, 4], Some(contents))],
        ..Default::default()
    }
}

fn rows_raw(rows: &[[f32; 4]]) -> ModelInferRequest {
    let raw = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: "tensor".into(),
        inputs: vec![input("x", "FP32", &[rows.len() as i64, 4], None)],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

/// An output's (shape, values as JSON), from typed or raw contents.
fn output(response: &ModelInferResponse, name: &str) -> (Vec<i64>, Vec<Value>) {
    let index = response
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output '{name}' in {response:?}"));
    let tensor = &response.outputs[index];
    let values: Vec<Value> = match (&tensor.contents, response.raw_output_contents.get(index)) {
        (Some(contents), None) => match tensor.datatype.as_str() {
            "BYTES" => contents
                .bytes_contents
                .iter()
                .map(|b| json!(String::from_utf8_lossy(b)))
                .collect(),
            "FP32" => contents.fp32_contents.iter().map(|&v| json!(v)).collect(),
            other => panic!("unexpected datatype {other}"),
        },
        (None, Some(raw)) => match tensor.datatype.as_str() {
            "BYTES" => {
                let mut values = Vec::new();
                let mut rest = &raw[..];
                while !rest.is_empty() {
                    let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                    values.push(json!(String::from_utf8_lossy(&rest[4..4 + length])));
                    rest = &rest[4 + length..];
                }
                values
            }
            "FP32" => raw
                .chunks_exact(4)
                .map(|c| json!(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            other => panic!("unexpected datatype {other}"),
        },
        (contents, raw) => panic!("output '{name}' has contents {contents:?} and raw {raw:?}"),
    };
    (tensor.shape.clone(), values)
}

/// The status code and message of a call that must fail.
fn failure<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> (Code, String) {
    let status = result.expect_err("the call must fail");
    (status.code(), status.message().to_string())
}

#[tokio::test]
async fn every_rpc_answers() {
    let server = two_models().ready().await;
    let mut client = client(&server).await;

    let live = client
        .server_live(ServerLiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(live.live);
    let ready = client
        .server_ready(ServerReadyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready);
    let metadata = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "hotserve");
    assert_eq!(metadata.version, env!("CARGO_PKG_VERSION"));

    for name in ["text", "tensor"] {
        let request = ModelReadyRequest {
            name: name.into(),
            version: String::new(),
        };
        assert!(
            client
                .model_ready(request)
                .await
                .unwrap()
                .into_inner()
                .ready,
            "{name}"
        );
    }
    let tensor = client
        .model_metadata(ModelMetadataRequest {
            name: "tensor".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tensor.platform, "onnxruntime_onnx");
    assert_eq!(tensor.versions.len(), 1, "{tensor:?}");
    let inputs: Vec<(&str, &str, &[i64])> = tensor
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str(), &t.shape[..]))
        .collect();
    assert_eq!(inputs, [("x", "FP32", &[-1, 4][..])]);
    let outputs: Vec<(&str, &str, &[i64])> = tensor
        .outputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str(), &t.shape[..]))
        .collect();
    assert_eq!(outputs, [("y", "FP32", &[-1, 3][..])]);
    let text = client
        .model_metadata(ModelMetadataRequest {
            name: "text".into(),
            version: tensor.versions[0].clone() + "x",
        })
        .await;
    assert_eq!(failure(text).0, Code::NotFound);
    let text = client
        .model_metadata(ModelMetadataRequest {
            name: "text".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // The live version is addressable by its number.
    let by_version = client
        .model_metadata(ModelMetadataRequest {
            name: "text".into(),
            version: text.versions[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_version.versions, text.versions);
    assert!(
        text.inputs.iter().all(|t| t.datatype == "BYTES"),
        "{text:?}"
    );

    let answer = client
        .model_infer(texts_typed(&TEXTS))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.model_name, "text");
    assert_eq!(answer.model_version, text.versions[0]);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "hotserve_grpc_requests_total{code=\"OK\",method=\"ModelInfer\",model=\"text\"} 1",
        "hotserve_grpc_requests_total{code=\"OK\",method=\"ServerLive\"} 1",
        "hotserve_grpc_requests_total{code=\"NOT_FOUND\",method=\"ModelMetadata\",model=\"text\"} 1",
        "hotserve_grpc_request_duration_seconds_count{method=\"ModelInfer\",model=\"text\"} 1",
    ] {
        assert!(metrics.lines().any(|line| line == series), "{series} not in\n{metrics}");
    }
}

#[tokio::test]
async fn typed_and_raw_contents_give_the_same_answer() {
    let server = two_models().ready().await;
    let mut client = client(&server).await;

    let typed = client
        .model_infer(texts_typed(&TEXTS))
        .await
        .unwrap()
        .into_inner();
    let raw = client
        .model_infer(texts_raw(&TEXTS))
        .await
        .unwrap()
        .into_inner();
    assert!(
        typed.raw_output_contents.is_empty(),
        "a typed request gets typed outputs"
    );
    assert!(typed.outputs.iter().all(|o| o.contents.is_some()));
    assert_eq!(
        raw.raw_output_contents.len(),
        raw.outputs.len(),
        "a raw request gets raw outputs"
    );
    assert!(raw.outputs.iter().all(|o| o.contents.is_none()));
    let (shape, labels) = output(&typed, "label");
    assert_eq!(shape, [3]);
    assert_eq!(labels[..2], [json!("POSITIVE"), json!("NEGATIVE")]);
    for name in ["label", "probabilities"] {
        assert_eq!(output(&typed, name), output(&raw, name), "{name}");
    }
    let (shape, _) = output(&typed, "probabilities");
    assert_eq!(shape, [3, 2]);

    let rows = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]];
    let typed = client
        .model_infer(rows_typed(&rows))
        .await
        .unwrap()
        .into_inner();
    let raw = client
        .model_infer(rows_raw(&rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(output(&typed, "y"), output(&raw, "y"));
    let (shape, y) = output(&typed, "y");
    assert_eq!(shape, [2, 3]);
    let first: Vec<f64> = y[..3].iter().map(|v| v.as_f64().unwrap()).collect();
    for (got, want) in first.iter().zip([5.1, 6.2, 7.3]) {
        assert!((got - want).abs() < 1e-4, "{y:?}");
    }

    // A subset of the outputs, and the request id echoed.
    let mut request = texts_typed(&TEXTS[..1]);
    request.id = "req-7".into();
    request.outputs = vec![InferRequestedOutputTensor {
        name: "label".into(),
        parameters: Default::default(),
    }];
    let answer = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(answer.id, "req-7");
    let names: Vec<&str> = answer.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label"]);
}

#[tokio::test]
async fn errors_have_their_codes_and_name_the_tensor() {
    let server = two_models().set("max_body_bytes", "4096").ready().await;
    let mut client = client(&server).await;
    let check = |expected_code: Code, needle: &'static str| {
        move |result: Result<tonic::Response<ModelInferResponse>, tonic::Status>| {
            let (code, message) = failure(result);
            assert_eq!(code, expected_code, "{message}");
            assert!(message.contains(needle), "'{needle}' not in '{message}'");
        }
    };

    let mut unknown = texts_typed(&TEXTS);
    unknown.model_name = "nope".into();
    check(Code::NotFound, "nope")(client.model_infer(unknown).await);
    let mut old = texts_typed(&TEXTS);
    old.model_version = "no-such-version".into();
    check(Code::NotFound, "live version")(client.model_infer(old).await);
    let ready = client
        .model_ready(ModelReadyRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await;
    assert_eq!(failure(ready).0, Code::NotFound);

    // The shape says 4 texts, the contents hold 3.
    let mut request = texts_typed(&TEXTS);
    request.inputs[0].shape = vec![4];
    check(Code::InvalidArgument, "input 'text'")(client.model_infer(request).await);
    // Raw contents one byte short of two rows.
    let mut request = rows_raw(&[[1.0; 4], [2.0; 4]]);
    request.raw_input_contents[0].pop();
    check(Code::InvalidArgument, "input 'x'")(client.model_infer(request).await);
    // Raw contents of one row for a shape of two.
    let mut request = rows_raw(&[[1.0; 4]]);
    request.inputs[0].shape = vec![2, 4];
    check(Code::InvalidArgument, "input 'x'")(client.model_infer(request).await);
    // The wrong datatype for the graph.
    let mut request = rows_typed(&[[1.0; 4]]);
    request.inputs[0].datatype = "FP64".into();
    request.inputs[0].contents = Some(InferTensorContents {
        fp64_contents: vec![1.0; 4],
        ..Default::default()
    });
    check(Code::InvalidArgument, "input 'x'")(client.model_infer(request).await);
    // Contents and raw contents together.
    let mut request = rows_raw(&[[1.0; 4]]);
    request.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: vec![1.0; 4],
        ..Default::default()
    });
    check(Code::InvalidArgument, "input 'x'")(client.model_infer(request).await);
    // A message over max_body_bytes.
    let long = "word ".repeat(2000);
    // tonic refuses it with OUT_OF_RANGE (gRPC C-core would say RESOURCE_EXHAUSTED).
    check(Code::OutOfRange, "the limit is: 4096 bytes")(
        client.model_infer(texts_typed(&[long.as_str()])).await,
    );

    // The connection still serves after all of these.
    client
        .model_infer(texts_typed(&TEXTS))
        .await
        .expect("a good call after the bad ones");
}

/// The same texts give the same labels and probabilities via gRPC, `/predict` and
/// `/invocations`, and the same tensor via gRPC and `/invocations`.
#[tokio::test]
async fn one_prediction_path() {
    let server = two_models().ready().await;
    let mut client = client(&server).await;
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let request = http.post(server.url(&path)).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    let answer = client
        .model_infer(texts_raw(&TEXTS))
        .await
        .unwrap()
        .into_inner();
    let (_, labels) = output(&answer, "label");
    let (_, probabilities) = output(&answer, "probabilities");
    let invocations = post("/models/text/invocations".into(), json!({"inputs": TEXTS})).await;
    for (i, text) in TEXTS.iter().enumerate() {
        let predict = post("/models/text/predict".into(), json!({"text": text})).await;
        assert_eq!(predict["label"], labels[i], "{text}");
        let scores: Vec<f32> = ["NEGATIVE", "POSITIVE"]
            .iter()
            .map(|l| predict["scores"][l].as_f64().unwrap() as f32)
            .collect();
        let grpc: Vec<f32> = probabilities[2 * i..2 * i + 2]
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        // A text batched with others is padded to the longest: the same answer, up to rounding.
        let close = scores.iter().zip(&grpc).all(|(a, b)| (a - b).abs() < 1e-5);
        assert!(close, "{text}: {scores:?} vs {grpc:?}");
        let row = &invocations["predictions"][i];
        assert_eq!(row["label"], labels[i], "{text}");
        let score = row["score"].as_f64().unwrap() as f32;
        assert!((score - grpc[0].max(grpc[1])).abs() < 1e-5, "{text}");
    }

    let rows = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, 0.0]];
    let answer = client
        .model_infer(rows_typed(&rows))
        .await
        .unwrap()
        .into_inner();
    let (_, y) = output(&answer, "y");
    let invocations = post(
        "/models/tensor/invocations".into(),
        json!({"inputs": {"x": rows}}),
    )
    .await;
    // As `mlflow models serve` answers: every output by name, even a single one.
    let rest: Vec<f32> = invocations["predictions"]["y"]
        .as_array()
        .unwrap_or_else(|| panic!("{invocations}"))
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let grpc: Vec<f32> = y.iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(rest.len(), grpc.len());
    assert!(
        rest.iter().zip(&grpc).all(|(a, b)| (a - b).abs() < 1e-5),
        "{rest:?} vs {grpc:?}"
    );
}

/// The gRPC listener's address, from the binary's `grpc_listen` log line.
fn grpc_addr(server: &process::Hotserve) -> String {
    server
        .logs()
        .lines()
        .find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            Some(value.pointer("/fields/grpc_listen")?.as_str()?.to_string())
        })
        .unwrap_or_else(|| panic!("no grpc_listen line in\n{}", server.logs()))
}

/// The binary with one text model, one inference worker that takes 1.5 s per batch (the debug
/// failpoint), and gRPC on an ephemeral port.
async fn slow_binary(extra: &[(&str, &str)]) -> (process::Hotserve, Client) {
    let mut start = process::Start::model(fixture("sentiment"))
        .set("grpc_listen", "127.0.0.1:0")
        .set("inference_workers", "1")
        .set("max_batch_size", "1")
        .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "1500");
    for (key, value) in extra {
        start = start.set(key, value);
    }
    let server = start.spawn();
    server.wait_ready().await;
    let client = connect(format!("http://{}", grpc_addr(&server))).await;
    (server, client)
}

fn named(mut request: ModelInferRequest, model: &str) -> ModelInferRequest {
    request.model_name = model.into();
    request
}

#[tokio::test]
async fn a_call_in_flight_across_shutdown_completes() {
    let (server, client) = slow_binary(&[("drain_delay", "0")]).await;
    let mut calling = client.clone();
    let call = tokio::spawn(async move {
        calling
            .model_infer(named(texts_typed(&TEXTS[..1]), "sentiment"))
            .await
    });
    // The /metrics request counts itself: 2 means the gRPC call is in flight too.
    metric_reaches(&server.url("/metrics"), "hotserve_in_flight_requests", 2.0).await;
    server.signal("TERM");
    let answer = call
        .await
        .unwrap()
        .expect("the call in flight is answered")
        .into_inner();
    assert_eq!(output(&answer, "label").1, [json!("POSITIVE")]);
    let status = server.exited().await;
    assert_eq!(status.code(), Some(0), "{}", server.logs());
}

/// A call past `request_timeout` is DEADLINE_EXCEEDED; a client whose own deadline passes
/// gives up, and the queued work it left is dropped before inference.
#[tokio::test]
async fn deadlines_and_cancelled_calls() {
    let (server, client) = slow_binary(&[("request_timeout", "500ms")]).await;
    let started = Instant::now();
    let (code, _) = failure(
        client
            .clone()
            .model_infer(named(texts_typed(&TEXTS[..1]), "sentiment"))
            .await,
    );
    assert_eq!(code, Code::DeadlineExceeded);
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    // One call holds the only worker; a second one, queued behind it, gives up after 200 ms.
    let (server, client) = {
        drop(server);
        slow_binary(&[]).await
    };
    let mut first = client.clone();
    let first = tokio::spawn(async move {
        first
            .model_infer(named(texts_typed(&TEXTS[..1]), "sentiment"))
            .await
    });
    let batches = "hotserve_batch_size_count{model=\"sentiment\"}";
    metric_reaches(&server.url("/metrics"), "hotserve_in_flight_requests", 2.0).await;
    let mut request = tonic::Request::new(named(texts_typed(&TEXTS[1..2]), "sentiment"));
    request.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let (code, _) = failure(client.clone().model_infer(request).await);
    assert!(
        matches!(code, Code::DeadlineExceeded | Code::Cancelled),
        "{code:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    first.await.unwrap().expect("the first call is answered");
    let metrics_url = server.url("/metrics");
    eventually("the abandoned call is counted", async || {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        text.lines()
            .any(|l| {
                l.starts_with("hotserve_grpc_requests_total{code=\"")
                    && l.contains("method=\"ModelInfer\"")
                    && !l.contains("code=\"OK\"")
            })
            .then_some(())
    })
    .await;
    // A later call queues behind the abandoned job, which the worker skips (the queue is
    // first in, first out): two batches ran, not three.
    client
        .clone()
        .model_infer(named(texts_typed(&TEXTS[..1]), "sentiment"))
        .await
        .expect("a later call");
    assert_eq!(metric(&server.url("/metrics"), batches).await, Some(2.0));
}

/// The official client, `tritonclient.grpc` (raw contents), against a text model and a tensor
/// model served together: readiness, metadata, inference, a subset of outputs, and errors.
#[tokio::test]
async fn tritonclient_grpc_speaks_to_it() {
    let server = two_models().ready().await;
    let addr = server.grpc_addr.unwrap().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(venv().join("bin/python"))
            .arg(helper("tritonclient_grpc.py"))
            .arg(addr)
            .output()
            .expect("run tritonclient_grpc.py (scripts/setup.sh test installs tritonclient)")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}: {stderr}"));

    assert_eq!(seen["server_live"], true);
    assert_eq!(seen["server_ready"], true);
    assert_eq!(seen["model_ready"], json!({"text": true, "tensor": true}));
    assert_eq!(seen["server_metadata"]["name"], "hotserve");
    let tensor = &seen["model_metadata"]["tensor"];
    assert_eq!(tensor["platform"], "onnxruntime_onnx");
    assert_eq!(
        tensor["inputs"],
        json!([{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}])
    );
    assert_eq!(seen["text"]["id"], "triton-1");
    assert_eq!(seen["text"]["labels"], json!(["POSITIVE", "NEGATIVE"]));
    let probabilities = seen["text"]["probabilities"].as_array().unwrap();
    assert_eq!(probabilities.len(), 2);
    for row in probabilities {
        let sum: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "{row}");
    }
    assert_eq!(seen["text_outputs"], json!(["label"]));
    assert_eq!(seen["tensor"]["shape"], json!([2, 3]));
    assert_eq!(seen["tensor"]["dtype"], "float32");
    let first: Vec<f64> = seen["tensor"]["y"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (got, want) in first.iter().zip([5.1, 6.2, 7.3]) {
        assert!((got - want).abs() < 1e-4, "{first:?}");
    }
    assert_eq!(seen["unknown_model"], "StatusCode.NOT_FOUND");
    assert_eq!(seen["bad_shape"][0], "StatusCode.INVALID_ARGUMENT");
    assert!(
        seen["bad_shape"][1].as_str().unwrap().contains("input 'x'"),
        "{}",
        seen["bad_shape"]
    );
}

/// A `grpc_listen` address that cannot be bound stops the start with an error that names
/// the setting (exit code 1, as for the HTTP listener).
#[tokio::test]
async fn an_unusable_grpc_address_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let server = Start::model(fixture("sentiment"))
        .set("grpc_listen", &addr)
        .start();
    let err = server.stop().await.expect_err("the start fails");
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(
        message.contains(&addr) && message.contains("HOTSERVE_GRPC_LISTEN"),
        "{message}"
    );
}

/// With `api_keys_file`, ModelInfer and ModelMetadata need `authorization: Bearer <key>` as
/// the REST model routes do (UNAUTHENTICATED otherwise); the probes stay open.
#[tokio::test]
async fn api_keys_guard_the_model_calls() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# test keys\nsecret-key-1\n").unwrap();
    let server = two_models()
        .set("api_keys_file", keys.to_str().unwrap())
        .ready()
        .await;
    let mut client = client(&server).await;

    let live = client.server_live(ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    let refused = client
        .model_infer(texts_typed(&TEXTS))
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut wrong = tonic::Request::new(texts_typed(&TEXTS));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-a-key".parse().unwrap());
    let refused = client.model_infer(wrong).await.expect_err("a wrong key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let mut right = tonic::Request::new(texts_typed(&TEXTS));
    right
        .metadata_mut()
        .insert("authorization", "Bearer secret-key-1".parse().unwrap());
    let answer = client.model_infer(right).await.unwrap().into_inner();
    assert_eq!(answer.model_name, "text");
}

/// The access log has a record of each call: the method's path, gRPC status, model and version,
/// request id (`x-request-id` metadata), trace id (`traceparent`), batch, wait and peer.
#[tokio::test]
async fn the_access_log_records_each_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let server = two_models()
        .set("access_log", file.to_str().unwrap())
        .ready()
        .await;
    let mut client = client(&server).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(texts_typed(&TEXTS[..1]));
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-access-1".parse().unwrap());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let answer = client.model_infer(request).await.unwrap().into_inner();
    let unknown = ModelInferRequest {
        model_name: "nope".into(),
        ..texts_typed(&TEXTS[..1])
    };
    let code = client.model_infer(unknown).await.unwrap_err().code();
    client.server_live(ServerLiveRequest {}).await.unwrap();
    // (The readiness probes of the harness are HTTP requests, in the same log.)
    let live = "/inference.GRPCInferenceService/ServerLive";
    let records: Vec<Value> = eventually("the last gRPC call in the access log", async || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        if records.iter().any(|r| r["route"] == live) {
            Ok(records)
        } else {
            Err(format!("{} lines", records.len()))
        }
    })
    .await;
    let infer = records
        .iter()
        .find(|r| r["request_id"] == "grpc-access-1")
        .expect("the inference call's record");
    assert_eq!(
        infer["route"], "/inference.GRPCInferenceService/ModelInfer",
        "{infer}"
    );
    assert_eq!(infer["grpc_status"], 0, "{infer}");
    assert_eq!(infer["model"], "text", "{infer}");
    assert_eq!(infer["version"], answer.model_version.as_str(), "{infer}");
    assert_eq!(infer["trace_id"], trace, "{infer}");
    assert_eq!(infer["batch_size"], 1, "{infer}");
    assert!(infer["queue_ms"].as_f64().is_some(), "{infer}");
    assert!(
        infer["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{infer}"
    );
    let refused = records
        .iter()
        .find(|r| r["grpc_status"] == code as i32 && r["request_id"] != "grpc-access-1")
        .expect("the refused call's record");
    assert_eq!(
        refused["model"],
        Value::Null,
        "not a configured model: {refused}"
    );
    let live = records.iter().find(|r| r["route"] == live).unwrap();
    assert_eq!(
        (live["grpc_status"].as_i64(), live["status"].as_i64()),
        (Some(0), Some(200)),
        "{live}"
    );
}
