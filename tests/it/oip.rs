//! The Open Inference Protocol over REST (KServe v2, Triton's binary tensor data extension),
//! in-process with a text model (`sentiment`), a tensor model (`tensor_model`) and a model of
//! every served element type (`typed_model`) served together: every route, the same answers
//! as `/predict/batch` and `/invocations`, outputs asked for by name and as binary data, the
//! errors (`{"error": ...}`: unknown model or version 404, a bad datatype or shape 400 naming
//! the tensor, a model not live 503, readiness false 400), the routes' metrics labels, and the
//! official client `tritonclient.http` driving all of it (`support/triton_http.py`).

use std::path::Path;

use serde_json::{json, Value};

use crate::support::inprocess::{Server, Start};
use crate::support::{copy_dir, eventually, fixture, get_json, helper, metric, venv};

/// A server for `models` (`NAME=DIR`, ...).
fn several(models: &[(&str, &Path)]) -> Start {
    let list: Vec<String> = models
        .iter()
        .map(|(name, dir)| format!("{name}={}", dir.display()))
        .collect();
    Start::default().set("models", &list.join(","))
}

/// The three fixtures as `text`, `tensor` and `typed`.
async fn three_models() -> Server {
    let (text, tensor, typed) = (
        fixture("sentiment"),
        fixture("tensor_model"),
        fixture("typed_model"),
    );
    several(&[("text", &text), ("tensor", &tensor), ("typed", &typed)])
        .ready()
        .await
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The `data` of output `name` in an infer response.
fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .and_then(|outputs| outputs.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output '{name}' in {body}"))
}

fn close(a: &Value, b: &Value) -> bool {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-5)
}

#[tokio::test]
async fn every_route_serves_text_and_tensor_models_together() {
    let server = three_models().await;

    let (status, metadata) = get_json(&server, "/v2").await;
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(metadata["name"], "hotserve");
    assert_eq!(metadata["extensions"], json!(["binary_tensor_data"]));
    assert_eq!(
        get_json(&server, "/v2/health/live").await,
        (200, json!({"live": true}))
    );
    assert_eq!(
        get_json(&server, "/v2/health/ready").await,
        (200, json!({"ready": true}))
    );

    // Metadata: the text model's protocol interface, the tensor models' graphs.
    let (status, text) = get_json(&server, "/v2/models/text").await;
    assert_eq!(status, 200, "{text}");
    let version = text["versions"][0]
        .as_str()
        .expect("the live version")
        .to_string();
    assert_eq!(
        text,
        json!({"name": "text", "versions": [version], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]})
    );
    let (_, typed) = get_json(&server, "/v2/models/typed").await;
    let datatypes: Vec<&str> = typed["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["datatype"].as_str().unwrap())
        .collect();
    assert_eq!(
        datatypes,
        ["FP64", "INT64", "INT32", "INT8", "UINT8", "BOOL", "FP16"]
    );
    let with_version = format!("/v2/models/text/versions/{version}");
    assert_eq!(get_json(&server, &with_version).await, (200, text.clone()));
    assert_eq!(
        get_json(&server, "/v2/models/text/ready").await,
        (200, json!({"ready": true}))
    );
    assert_eq!(
        get_json(&server, &format!("{with_version}/ready")).await.0,
        200
    );

    // Text: the same scores as /predict/batch.
    let texts = json!(["I love this", "I hate this"]);
    let infer = json!({"id": "r-1", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]});
    let (status, answer) = post(&server, "/v2/models/text/infer", infer.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], "r-1");
    assert_eq!(
        (&answer["model_name"], &answer["model_version"]),
        (&json!("text"), &json!(version))
    );
    assert_eq!(
        output(&answer, "label")["data"],
        json!(["POSITIVE", "NEGATIVE"])
    );
    assert_eq!(output(&answer, "label")["shape"], json!([2]));
    assert_eq!(output(&answer, "probabilities")["shape"], json!([2, 2]));
    let (_, batch) = post(
        &server,
        "/models/text/predict/batch",
        json!({"texts": texts}),
    )
    .await;
    for row in 0..2 {
        let scores = &batch["predictions"][row]["scores"];
        let expected = json!([scores["NEGATIVE"], scores["POSITIVE"]]);
        let got =
            &output(&answer, "probabilities")["data"].as_array().unwrap()[row * 2..row * 2 + 2];
        assert!(close(&json!(got), &expected), "{answer} vs {batch}");
    }
    let (status, _) = post(&server, &format!("{with_version}/infer"), infer).await;
    assert_eq!(status, 200);

    // Tensors: the same values as /invocations; a subset of outputs asked for by name.
    let x = json!([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]);
    let infer = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x}],
        "outputs": [{"name": "y"}]});
    let (status, answer) = post(&server, "/v2/models/tensor/infer", infer).await;
    assert_eq!(status, 200, "{answer}");
    let (_, invocations) = post(
        &server,
        "/models/tensor/invocations",
        json!({"inputs": {"x": x}}),
    )
    .await;
    let flat: Vec<Value> = invocations["predictions"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .flat_map(|r| r.as_array().unwrap().clone())
                .collect()
        })
        .or_else(|| {
            invocations["predictions"]["y"].as_array().map(|rows| {
                rows.iter()
                    .flat_map(|r| r.as_array().unwrap().clone())
                    .collect()
            })
        })
        .expect("predictions");
    assert!(
        close(&output(&answer, "y")["data"], &json!(flat)),
        "{answer} vs {invocations}"
    );
    assert_eq!(output(&answer, "y")["shape"], json!([2, 3]));

    // Every served datatype, in JSON: FP16 as numbers, BOOL as true/false.
    let inputs: Vec<Value> = [
        ("f64", "FP64", json!([1.5, 0, 3, 1])),
        ("i64", "INT64", json!([1, 0, 3, 1])),
        ("i32", "INT32", json!([1, 0, 3, 1])),
        ("i8", "INT8", json!([-1, 0, 3, 1])),
        ("u8", "UINT8", json!([255, 0, 3, 1])),
        ("flag", "BOOL", json!([true, false, true, true])),
        ("half", "FP16", json!([0.5, 0, 3, 1])),
    ]
    .into_iter()
    .map(|(name, datatype, data)| json!({"name": name, "datatype": datatype, "shape": [2, 2], "data": data}))
    .collect();
    let outputs = json!([{"name": "flag_not"}, {"name": "half_as_fp32"}, {"name": "u8_same"},
        {"name": "f64_twice"}, {"name": "i8_same"}]);
    let (status, answer) = post(
        &server,
        "/v2/models/typed/infer",
        json!({"inputs": inputs, "outputs": outputs}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "flag_not",
            "half_as_fp32",
            "u8_same",
            "f64_twice",
            "i8_same"
        ]
    );
    assert_eq!(
        output(&answer, "flag_not")["data"],
        json!([false, true, false, false])
    );
    assert_eq!(output(&answer, "flag_not")["datatype"], "BOOL");
    assert_eq!(
        output(&answer, "half_as_fp32")["data"],
        json!([0.5, 0.0, 3.0, 1.0])
    );
    assert_eq!(output(&answer, "u8_same")["data"], json!([255, 0, 3, 1]));
    assert_eq!(
        output(&answer, "f64_twice")["data"],
        json!([3.0, 0.0, 6.0, 2.0])
    );
    assert_eq!(output(&answer, "i8_same")["datatype"], "INT8");

    // Metrics name the route by its pattern, and the model.
    let series =
        "hotserve_requests_total{model=\"text\",route=\"/v2/models/{name}/infer\",status=\"200\"}";
    assert_eq!(metric(&server.url("/metrics"), series).await, Some(1.0));
    let series = "hotserve_requests_total{model=\"text\",route=\"/v2/models/{name}/versions/{version}/infer\",status=\"200\"}";
    assert_eq!(metric(&server.url("/metrics"), series).await, Some(1.0));
    server.stop().await.expect("a clean stop");
}

/// The raw little-endian bytes of `values`.
fn raw_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test]
async fn binary_tensor_data_in_and_out() {
    let server = three_models().await;
    let client = reqwest::Client::new();
    let header = json!({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(raw_f32(&[1.0, 2.0, 3.0, 4.0]));
    let response = client
        .post(server.url("/v2/models/tensor/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let json: Value = serde_json::from_slice(&bytes[..length]).unwrap();
    assert_eq!(
        json["outputs"],
        json!([{"name": "y", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}])
    );
    // y = [x0 + x3 + 0.1, x1 + x3 + 0.2, x2 + x3 + 0.3]
    assert_eq!(&bytes[length..], raw_f32(&[5.1, 6.2, 7.3]).as_slice());

    // BYTES in binary form (length-prefixed), every output binary by the request's parameter.
    let header = json!({
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 15}}],
        "parameters": {"binary_data_output": true},
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(11u32.to_le_bytes());
    body.extend(b"I love this");
    let response = client
        .post(server.url("/v2/models/text/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let json: Value = serde_json::from_slice(&bytes[..length]).unwrap();
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 12);
    assert_eq!(json["outputs"][1]["parameters"]["binary_data_size"], 8);
    let raw = &bytes[length..];
    assert_eq!(
        &raw[..12],
        [&8u32.to_le_bytes()[..], b"POSITIVE"].concat().as_slice()
    );

    // A header length past the body, and binary data no input claims, are 400s.
    let response = client
        .post(server.url("/v2/models/tensor/infer"))
        .header("Inference-Header-Content-Length", "9999")
        .body(header.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("Inference-Header-Content-Length is 9999"),
        "{error}"
    );
    server.stop().await.expect("a clean stop");
}

/// One error case: `POST path` with `body` gives `status` and an `{"error"}` that contains
/// `says`.
async fn check_error(server: &Server, path: &str, body: Option<Value>, status: u16, says: &str) {
    let (got, answer) = match body {
        Some(body) => post(server, path, body).await,
        None => get_json(server, path).await,
    };
    assert_eq!(got, status, "{path}: {answer}");
    let error = answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no error in {answer}"));
    assert!(
        error.contains(says),
        "{path}: '{error}' does not say '{says}'"
    );
    assert_eq!(
        answer.as_object().map(|o| o.len()),
        Some(1),
        "{path}: {answer}"
    );
}

fn x_input(datatype: &str, shape: Value, data: Value) -> Value {
    json!({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]})
}

#[tokio::test]
async fn errors_name_what_is_wrong() {
    let server = three_models().await;
    let (_, text) = get_json(&server, "/v2/models/text").await;
    let live = text["versions"][0].as_str().unwrap().to_string();
    let not_resident =
        format!("version '7' of model 'text' is not resident; the live version is '{live}'");

    check_error(
        &server,
        "/v2/models/nope",
        None,
        404,
        "no model is configured as 'nope'; configured models: text, tensor, typed",
    )
    .await;
    check_error(
        &server,
        "/v2/models/nope/ready",
        None,
        404,
        "no model is configured as 'nope'",
    )
    .await;
    check_error(
        &server,
        "/v2/models/nope/infer",
        Some(json!({"inputs": []})),
        404,
        "'nope'",
    )
    .await;
    check_error(
        &server,
        "/v2/models/text/versions/7",
        None,
        404,
        &not_resident,
    )
    .await;
    check_error(
        &server,
        "/v2/models/text/versions/7/ready",
        None,
        404,
        &not_resident,
    )
    .await;
    check_error(
        &server,
        "/v2/models/text/versions/7/infer",
        Some(json!({"inputs": []})),
        404,
        &not_resident,
    )
    .await;
    check_error(
        &server,
        "/v2/models/text/stats",
        None,
        404,
        "no route for /v2/models/text/stats",
    )
    .await;
    check_error(
        &server,
        "/v2/models/text/infer",
        None,
        405,
        "GET is not allowed",
    )
    .await;

    let tensor = "/v2/models/tensor/infer";
    check_error(
        &server,
        tensor,
        Some(x_input("FP64", json!([1, 4]), json!([1, 2, 3, 4]))),
        400,
        "input 'x' is FP64; the model takes 'x' (FP32 [-1, 4])",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(x_input("FP32", json!([1, 3]), json!([1, 2, 3]))),
        400,
        "input 'x' has shape [1, 3]; the model takes 'x' (FP32 [-1, 4])",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(x_input("FP32", json!([1, 4]), json!([1, 2, 3]))),
        400,
        "input 'x' has shape [1, 4] (4 elements) but 3 elements of data",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(x_input("FP32", json!([1, 4]), json!([1, 2, 3, "a"]))),
        400,
        "input 'x': element 3 (\"a\") is not a FP32 value",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(x_input("HALF", json!([1, 4]), json!([1, 2, 3, 4]))),
        400,
        "input 'x': unknown datatype 'HALF'",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(json!({"inputs": []})),
        400,
        "input 'x' (FP32 [-1, 4]) is missing",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(json!({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1], "data": [1]}]})),
        400,
        "input 'z' is not an input of this model; it takes 'x' (FP32 [-1, 4])",
    )
    .await;
    let unknown_output = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "outputs": [{"name": "w"}]});
    check_error(
        &server,
        tensor,
        Some(unknown_output),
        400,
        "output 'w' is not an output of this model",
    )
    .await;
    check_error(
        &server,
        tensor,
        Some(json!({"inputs": "x"})),
        400,
        "the request must have \"inputs\"",
    )
    .await;

    let text = "/v2/models/text/infer";
    let text_input = |datatype: &str, shape: Value, data: Value| json!({"inputs": [{"name": "text", "datatype": datatype, "shape": shape, "data": data}]});
    check_error(
        &server,
        text,
        Some(text_input("FP32", json!([1]), json!([1.0]))),
        400,
        "input 'text' is FP32; this model takes BYTES",
    )
    .await;
    check_error(
        &server,
        text,
        Some(text_input("BYTES", json!([1, 2]), json!(["a", "b"]))),
        400,
        "input 'text' has shape [1, 2]",
    )
    .await;
    check_error(&server, text, Some(json!({"inputs": [{"name": "words", "datatype": "BYTES", "shape": [1], "data": ["a"]}]})), 400, "input 'words' is not an input of this model; it takes 'text'").await;
    check_error(
        &server,
        text,
        Some(text_input("BYTES", json!([0]), json!([]))),
        400,
        "input 'text': no texts to classify",
    )
    .await;

    // The MLflow-shaped routes keep their own error body.
    let (status, body) = get_json(&server, "/models/nope").await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_model_that_is_not_live_is_not_ready() {
    let area = tempfile::tempdir().unwrap();
    let broken = area.path().join("broken");
    copy_dir(&fixture("tensor_model"), &broken);
    std::fs::write(broken.join("model.onnx"), b"not an onnx graph").unwrap();
    let good = fixture("tensor_model");
    let server = several(&[("good", &good), ("broken", &broken)]).start();
    eventually("the good model is ready", async || {
        (get_json(&server, "/v2/models/good/ready").await.0 == 200).then_some(())
    })
    .await;
    eventually("the broken model's first check", async || {
        let (_, health) = get_json(&server, "/health").await;
        health["models"]["broken"]["last_check"]
            .is_object()
            .then_some(())
    })
    .await;

    let (status, ready) = get_json(&server, "/v2/models/broken/ready").await;
    assert_eq!((status, &ready["ready"]), (400, &json!(false)), "{ready}");
    let (status, ready) = get_json(&server, "/v2/health/ready").await;
    assert_eq!((status, &ready["ready"]), (400, &json!(false)), "{ready}");
    assert!(
        ready["reason"].as_str().unwrap().starts_with("broken: "),
        "{ready}"
    );
    assert_eq!(get_json(&server, "/v2/health/live").await.0, 200);
    let infer = x_input("FP32", json!([1, 4]), json!([1, 2, 3, 4]));
    check_error(
        &server,
        "/v2/models/broken/infer",
        Some(infer.clone()),
        503,
        "model 'broken' is not live yet",
    )
    .await;
    check_error(
        &server,
        "/v2/models/broken",
        None,
        503,
        "model 'broken' is not live yet",
    )
    .await;
    let (status, _) = post(&server, "/v2/models/good/infer", infer).await;
    assert_eq!(status, 200);

    // The repository index (KServe's and Triton's model repository extension): every model,
    // its live version and state, and why one is not ready.
    let (status, index) = post(&server, "/v2/repository/index", json!({})).await;
    assert_eq!(status, 200, "{index}");
    let version = get_json(&server, "/v2/models/good").await.1["versions"][0].clone();
    assert_eq!(
        index[0],
        json!({"name": "good", "version": version, "state": "READY"}),
        "{index}"
    );
    assert_eq!(index[1]["name"], "broken", "{index}");
    assert_eq!(index[1]["state"], "UNAVAILABLE", "{index}");
    assert_eq!(index[1]["version"], Value::Null, "{index}");
    assert!(index[1]["reason"].is_string(), "{index}");
    let (status, ready) = post(&server, "/v2/repository/index", json!({"ready": true})).await;
    assert_eq!(
        (status, ready.as_array().map(Vec::len)),
        (200, Some(1)),
        "{ready}"
    );
    assert_eq!(ready[0]["name"], "good");
    let empty = reqwest::Client::new()
        .post(server.url("/v2/repository/index"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 200);
    check_error(
        &server,
        "/v2/repository/index",
        Some(json!({"ready": "yes"})),
        400,
        "repository index request",
    )
    .await;
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn the_official_client_drives_every_route() {
    let server = three_models().await;
    let script = helper("triton_http.py");
    let python = venv().join("bin/python");
    let address = server.addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([address.as_str(), "text", "tensor", "typed"])
            .output()
    })
    .await
    .unwrap()
    .expect("run triton_http.py with the virtualenv's python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tritonclient failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    server.stop().await.expect("a clean stop");
}
