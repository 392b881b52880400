//! Execution providers on a machine without a GPU, with the CPU wheel of ONNX Runtime: what
//! ONNX Runtime does when CUDA is registered on it (an error, which ort would only log),
//! `execution_providers: cuda,cpu` serving on the CPU with one warning and saying so in
//! `/health` and `hotserve_model_info`, and `execution_providers: cuda` refusing: the process
//! exits with 2 when every model is refused, and a refused model is not live, with the reason
//! in `/health`, while another model's trouble keeps the process up.

use hotserve::model::providers::ExecutionProvider;
use hotserve::model::runtime;
use serde_json::{json, Value};

use crate::support::hotserve::Start as Binary;
use crate::support::inprocess::Start;
use crate::support::{fixture, get_json, health, health_until, metric, Served};

/// What the CPU wheel says of CUDA, in every refusal.
const NOT_BUILT: &str = "was not built with CUDAExecutionProvider";

#[test]
fn registering_cuda_on_the_cpu_library_is_an_error_not_a_fallback() {
    let runtime = runtime::init(
        std::env::var_os("ORT_DYLIB_PATH")
            .map(std::path::PathBuf::from)
            .as_deref(),
    )
    .expect("ONNX Runtime loads");
    let mut builder =
        ort::session::Session::builder(&runtime.environment).expect("a session builder");
    let error = ExecutionProvider::Cuda { device: 0 }
        .dispatch()
        .register(&mut builder)
        .expect_err("the CPU build has no CUDA provider to register");
    assert!(error.to_string().contains("CUDA"), "{error}");
}

#[tokio::test]
async fn cuda_then_cpu_serves_on_the_cpu_with_one_warning() {
    let server = Binary::model(fixture("sentiment"))
        .env("HOTSERVE_EXECUTION_PROVIDERS", "cuda,cpu")
        .spawn();
    server.wait_ready().await;

    let response = reqwest::Client::new()
        .post(server.url("/predict"))
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .expect("the prediction is answered");
    assert_eq!(response.status(), 200);
    let health = health(&server).await;
    assert_eq!(health["model"]["execution_provider"], "cpu", "{health}");
    let info = format!(
        "hotserve_model_info{{model=\"sentiment\",name=\"sentiment\",version=\"{}\",source=\"{}\",execution_provider=\"cpu\"}}",
        health["model"]["version"].as_str().unwrap(),
        health["model"]["source"].as_str().unwrap(),
    );
    assert_eq!(metric(&server.url("/metrics"), &info).await, Some(1.0));

    let logs = server.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("execution providers refused"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{logs}");
    let warning: Value = serde_json::from_str(warnings[0]).expect("a JSON log line");
    assert_eq!(warning["level"], "WARN", "{warning}");
    let message = warning["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("cuda:0: ") && message.contains(NOT_BUILT),
        "{message}"
    );
    assert!(message.contains("runs on the CPU"), "{message}");
}

#[tokio::test]
async fn cuda_alone_refuses_at_startup_with_the_reason() {
    let server = Binary::model(fixture("sentiment"))
        .env("HOTSERVE_EXECUTION_PROVIDERS", "cuda")
        .spawn();
    let status = server.exited().await;
    assert_eq!(status.code(), Some(2), "{}", server.logs());
    let logs = server.logs();
    let refusal = logs
        .lines()
        .find(|line| line.contains("no model can run on execution_providers"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{logs}"));
    for part in [
        "model 'sentiment'",
        "cannot run on execution_providers cuda:0",
        NOT_BUILT,
        "scripts/setup.sh gpu",
        "end execution_providers with cpu",
    ] {
        assert!(refusal.contains(part), "{part:?} in {refusal}");
    }
    assert!(!logs.contains("runs on the CPU"), "no fallback:\n{logs}");
}

#[tokio::test]
async fn a_refused_model_is_not_live_and_health_says_why() {
    // The other model is an empty directory: its failure is its own, not the providers', so
    // the process stays up (waiting for it) and shows the refused model's reason.
    let empty = tempfile::tempdir().unwrap();
    let models = format!(
        "refused={},empty={}",
        fixture("sentiment").display(),
        empty.path().display()
    );
    let server = Start::default()
        .set("models", &models)
        .set("execution_providers", "cuda")
        .start();
    let health = health_until(&server, "the refusal in /health", |health| {
        health["models"]["refused"]["last_error"].is_string()
    })
    .await;
    let refused = &health["models"]["refused"];
    assert_eq!(refused["model_loaded"], false, "{health}");
    assert_eq!(refused["model"], Value::Null, "{health}");
    let why = refused["last_error"].as_str().unwrap();
    assert!(
        why.contains("cannot run on execution_providers cuda:0") && why.contains(NOT_BUILT),
        "{why}"
    );
    let (status, ready) = get_json(&server, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["not_ready"]
            .as_array()
            .unwrap()
            .contains(&json!("refused")),
        "{ready}"
    );
    let (status, ready) = get_json(&server, "/models/refused/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"].as_str().unwrap().contains(NOT_BUILT),
        "{ready}"
    );
    assert!(server.stopped().is_none(), "the process keeps running");
    server.stop().await.expect("a clean shutdown");
}
