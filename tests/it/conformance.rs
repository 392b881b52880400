//! hotserve's `/invocations` against the real `mlflow models serve --env-manager local` on the
//! same tensor models: the fixture `tensor_model` (one input, one output, a named tensor
//! signature), a copy of it without a signature (MLflow then hands data frames to the ONNX
//! flavor unchanged and answers with records), and `tensor_multi` (two inputs of two types, two
//! outputs). Each model is served by one MLflow process and one in-process hotserve; every
//! request in its table goes to both and the answers are compared: the same status class and,
//! for answers, the same `predictions` (numbers within 1e-5). The few places where hotserve
//! deliberately differs are cases of their own, with the reason beside them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::inprocess::Start;
use crate::support::watchdog::{free_port, temp_root, watchdog, Watched};
use crate::support::{fixture, venv};

/// What the two servers should do with one request.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Both answer 200 with the same predictions, or both refuse it (hotserve with a 400;
    /// MLflow with a 400 or, for some schema failures, a 500).
    Same,
    /// MLflow refuses it and hotserve answers: integers sent for a float input of a model
    /// without a signature (MLflow feeds them to ONNX Runtime as int64, which refuses them).
    HotserveAccepts,
    /// MLflow answers and hotserve refuses it with a 400: 3.5 for an int64 input (MLflow's
    /// `astype` silently truncates it to 3).
    HotserveRefuses,
}

/// `mlflow models serve` on one model directory, under a watchdog; stopped when dropped.
struct MlflowServe {
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// The server; dropping it stops it.
    _server: Watched,
}

impl MlflowServe {
    /// Starts the server and waits until `/ping` answers 200 (it imports pandas and
    /// onnxruntime and starts uvicorn first: `LOADING`).
    async fn start(model: &Path) -> MlflowServe {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Command::new(venv().join("bin/mlflow"));
        server
            .args(["models", "serve", "--env-manager", "local", "-m"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1"])
            // `mlflow models serve` runs `uvicorn` from PATH.
            .env("PATH", path_with(&venv().join("bin")))
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true");
        let mut server = watchdog(&server, temp_root("hotserve-models-serve-"));
        server
            .wait_answering(addr, "/ping", |status| status == 200)
            .await;
        MlflowServe {
            url: format!("http://{addr}"),
            _server: server,
        }
    }
}

/// `dir` before the test process's PATH.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("a PATH without ':' in its directories")
}

async fn invoke(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}/invocations"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("an answer from /invocations");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Serves `model` with both servers and checks every case.
async fn check_model(model: &Path, cases: &[(Value, Expect)]) {
    let (mlflow, hotserve) = tokio::join!(MlflowServe::start(model), Start::model(model).ready());
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for (body, expect) in cases {
        let (theirs, their_answer) = invoke(&client, &mlflow.url, body).await;
        let (ours, our_answer) = invoke(&client, &hotserve.url(""), body).await;
        let agrees = match expect {
            Expect::Same if theirs == 200 => {
                ours == 200 && close(&their_answer["predictions"], &our_answer["predictions"])
            }
            Expect::Same => (400..600).contains(&theirs) && ours == 400,
            Expect::HotserveAccepts => theirs >= 400 && ours == 200,
            Expect::HotserveRefuses => theirs == 200 && ours == 400,
        };
        if !agrees {
            failures.push(format!(
                "{body} ({expect:?})\n  mlflow   {theirs} {their_answer}\n  hotserve {ours} {our_answer}"
            ));
        }
    }
    drop(mlflow);
    hotserve.stop().await.expect("a clean shutdown");
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from mlflow models serve on {}:\n{}",
        failures.len(),
        cases.len(),
        model.display(),
        failures.join("\n")
    );
}

/// The same JSON, numbers within 1e-5 (relative to their size when larger than 1).
fn close(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            (a - b).abs() <= 1e-5 * a.abs().max(1.0)
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| close(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| close(v, w)))
        }
        _ => left == right,
    }
}

/// A copy of `fixture` whose `MLmodel` has no signature and no input example, as a model
/// logged without them has.
fn without_signature(fixture: &Path, into: &Path) -> PathBuf {
    let copy = into.join(fixture.file_name().expect("a fixture directory name"));
    std::fs::create_dir_all(&copy).expect("create the copy");
    for entry in std::fs::read_dir(fixture).expect("read the fixture") {
        let path = entry.expect("a fixture file").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.contains("example") {
            std::fs::copy(&path, copy.join(&name)).expect("copy a fixture file");
        }
    }
    let mlmodel = std::fs::read_to_string(fixture.join("MLmodel")).expect("read MLmodel");
    let mut kept = String::new();
    let mut skipping = false;
    for line in mlmodel.lines() {
        if !line.starts_with(' ') {
            skipping = line == "signature:" || line == "saved_input_example_info:";
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(copy.join("MLmodel"), kept).expect("write MLmodel");
    copy
}

#[tokio::test]
async fn a_single_input_model_with_a_tensor_signature() {
    use Expect::*;
    #[rustfmt::skip]
    let cases = [
        (json!({"inputs": {"x": [[1, 2, 3, 4]]}}), Same),
        (json!({"inputs": {"x": [[1.5, 2, 3, 4], [0, 0, 0, 0]]}}), Same),
        (json!({"inputs": [[1.5, 2, 3, 4], [0, 0, 0, 0]]}), Same),
        (json!({"instances": [[1.5, 2, 3, 4]]}), Same),
        (json!({"instances": [{"x": [1.5, 2, 3, 4]}, {"x": [0, 1, 0, 1]}]}), Same),
        (json!({"instances": {"x": [[1.5, 2, 3, 4]]}}), Same),
        (json!({"inputs": {"x": [[1.5, 2, 3, 4]]}, "params": {"k": 1}}), Same),
        // A name the signature does not know is ignored (MLflow logs a warning).
        (json!({"inputs": {"x": [[1.5, 2, 3, 4]], "z": [1]}}), Same),
        // A data frame has a column per input, a cell per row.
        (json!({"dataframe_split": {"columns": ["x"], "data": [[[1.5, 2, 3, 4]], [[0, 0, 0, 1]]]}}), Same),
        (json!({"dataframe_records": [{"x": [1.5, 2, 3, 4]}]}), Same),
        (json!({"dataframe_records": [{"x": [[1.5, 2], [3, 4]]}]}), Same),
        // Refused by both: a wrong shape, a missing input, feature columns instead of `x`.
        (json!({"inputs": [1.5, 2, 3, 4]}), Same),
        (json!({"inputs": {"x": [[1, 2, 3]]}}), Same),
        (json!({"inputs": {"z": [[1, 2, 3, 4]]}}), Same),
        (json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1.5, 2, 3, 4]]}}), Same),
        (json!({"dataframe_records": [{"x": [1.5, 2, 3]}]}), Same),
    ];
    check_model(&fixture("tensor_model"), &cases).await;
}

#[tokio::test]
async fn a_single_input_model_without_a_signature() {
    use Expect::*;
    let dir = tempfile::tempdir().unwrap();
    let model = without_signature(&fixture("tensor_model"), dir.path());
    #[rustfmt::skip]
    let cases = [
        (json!({"inputs": {"x": [[1.5, 2, 3, 4], [0.5, 0, 0, 0]]}}), Same),
        (json!({"inputs": [[1.5, 2, 3, 4]]}), Same),
        (json!({"instances": [[1.5, 2, 3, 4]]}), Same),
        (json!({"instances": [{"x": [1.5, 2, 3, 4]}]}), Same),
        // Without a tensor signature a data frame reaches the ONNX flavor as it is: its rows
        // are the matrix of the one input, and the answer is a record per output value.
        (json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1.5, 2, 3, 4], [0.5, 0, 0, 0]]}}), Same),
        (json!({"dataframe_split": {"data": [[1.5, 2, 3, 4]]}}), Same),
        (json!({"dataframe_records": [{"a": 1.5, "b": 2.5, "c": 3.5, "d": 4.5}]}), Same),
        (json!({"inputs": {"x": [[1.5, 2, 3, 4]], "z": [1.5]}}), Same),
        (json!({"inputs": [1.5, 2, 3, 4]}), Same),
        (json!({"dataframe_records": [{"a": 1.5, "b": 2.5, "c": 3.5}]}), Same),
        // Integers for a float input.
        (json!({"inputs": {"x": [[1, 2, 3, 4]]}}), HotserveAccepts),
        (json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, 4]]}}), HotserveAccepts),
    ];
    check_model(&model, &cases).await;
}

#[tokio::test]
async fn a_model_with_two_inputs_and_two_outputs() {
    use Expect::*;
    #[rustfmt::skip]
    let cases = [
        (json!({"inputs": {"a": [[1, 2], [0.5, -1]], "b": [[3], [-2]]}}), Same),
        (json!({"inputs": {"b": [[3]], "a": [[1, 2]]}}), Same),
        (json!({"instances": [{"a": [1, 2], "b": [3]}, {"a": [0.5, -1], "b": [-2]}]}), Same),
        (json!({"dataframe_split": {"columns": ["a", "b"], "data": [[[1, 2], [3]], [[0.5, -1], [-2]]]}}), Same),
        // A scalar cell is a row of a [-1, 1] input.
        (json!({"dataframe_split": {"columns": ["a", "b"], "data": [[[1, 2], 3], [[0.5, -1], -2]]}}), Same),
        (json!({"dataframe_records": [{"a": [1, 2], "b": 3}, {"a": [0.5, -1], "b": -2}]}), Same),
        (json!({"dataframe_split": {"columns": ["b", "a", "c"], "data": [[3, [1, 2], 7]]}}), Same),
        // Refused by both: a missing input, one array for two inputs, a wrong shape.
        (json!({"inputs": {"a": [[1, 2]]}}), Same),
        (json!({"inputs": [[1, 2]]}), Same),
        (json!({"instances": [{"a": [1, 2], "b": 3}]}), Same),
        (json!({"dataframe_split": {"columns": ["a"], "data": [[[1, 2]]]}}), Same),
        (json!({"inputs": {"a": [[1, 2]], "b": [[3.5]]}}), HotserveRefuses),
    ];
    check_model(&fixture("tensor_multi"), &cases).await;
}
