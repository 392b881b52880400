//! Hot reload under gRPC load: two registered models served together over gRPC; one alias
//! moves while several clients keep calling `ModelInfer`. v1 (the `sentiment` fixture) answers
//! with upper-case labels, v2 (`sentiment_v2`) with lower-case ones, so every answer shows
//! which version computed it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hotserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hotserve::grpc::proto::model_infer_request::InferInputTensor;
use hotserve::grpc::proto::{InferTensorContents, ModelInferRequest};
use serde_json::json;
use tonic::transport::Channel;

use crate::support::inprocess;
use crate::support::{eventually, health, health_until, mlflow, register};

/// What one client saw: the labels of its answers in order, and the failed calls.
#[derive(Default)]
struct Seen {
    labels: Vec<String>,
    failures: Vec<String>,
}

/// Calls `ModelInfer` on `model` in a loop until `stop`, one call at a time.
fn client(
    channel: Channel,
    model: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut client = GrpcInferenceServiceClient::new(channel);
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let request = ModelInferRequest {
                model_name: model.into(),
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
            };
            match client.model_infer(request).await {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    let label = answer
                        .outputs
                        .iter()
                        .position(|o| o.name == "label")
                        .and_then(|i| answer.outputs[i].contents.as_ref())
                        .and_then(|c| c.bytes_contents.first())
                        .map(|b| String::from_utf8_lossy(b).to_string())
                        .unwrap_or_default();
                    seen.labels.push(label);
                }
                Err(status) => seen.failures.push(format!("{status:?}")),
            }
        }
        seen
    })
}

#[tokio::test]
async fn an_alias_moves_under_grpc_load_with_zero_failed_calls() {
    let mlflow = mlflow().await;
    let (a, b) = ("grpc-a", "grpc-b");
    register(
        mlflow,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": a, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": b, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": a},
        ]),
    );
    let server = inprocess::Start::default()
        .set(
            "models",
            &format!("moving=models:/{a}@champion,steady=models:/{b}@champion"),
        )
        .set("poll_interval", "500ms")
        .env("MLFLOW_TRACKING_URI", &mlflow.url)
        .grpc()
        .ready()
        .await;
    let channel = Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC listener");

    let stop = Arc::new(AtomicBool::new(false));
    let mut moving: Vec<_> = (0..4)
        .map(|_| client(channel.clone(), "moving", stop.clone()))
        .collect();
    let steady = client(channel.clone(), "steady", stop.clone());
    let moved = tokio::task::spawn_blocking(move || {
        register(
            mlflow,
            json!({"op": "set-alias", "name": a, "alias": "champion", "version": "2"}),
        )
    });
    moved.await.expect("move the alias");
    health_until(&server, "v2 of the moving model live", |health| {
        health["models"]["moving"]["model"]["version"] == "2"
    })
    .await;
    // Calls keep flowing for a while on v2 before the clients stop.
    let metrics = server.url("/metrics");
    let served = |text: String| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "hotserve_grpc_requests_total{code=\"OK\",method=\"ModelInfer\",model=\"moving\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok())
    };
    let now = served(reqwest::get(&metrics).await.unwrap().text().await.unwrap()).unwrap_or(0.0);
    eventually("20 more calls answered", async || {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        served(text).filter(|n| *n >= now + 20.0).map(|_| ())
    })
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut labels = Vec::new();
    for handle in moving.drain(..) {
        let seen = handle.await.unwrap();
        assert!(
            seen.failures.is_empty(),
            "failed calls: {:?}",
            seen.failures
        );
        labels.extend(seen.labels);
    }
    let first_v2 = labels.iter().position(|l| l == "positive");
    assert!(
        labels.iter().any(|l| l == "POSITIVE") && first_v2.is_some(),
        "both versions answered: {labels:?}"
    );
    let steady = steady.await.unwrap();
    assert!(
        steady.failures.is_empty(),
        "failed calls: {:?}",
        steady.failures
    );
    assert!(!steady.labels.is_empty());
    assert!(
        steady.labels.iter().all(|l| l == "POSITIVE"),
        "the other model is untouched: {:?}",
        steady.labels
    );
    assert_eq!(
        health(&server).await["models"]["steady"]["model"]["version"],
        "1"
    );
}
