//! Operations. Against the real binary, where the process is the point: graceful shutdown on
//! signals, systemd notifications, the log lines it writes. In the test process: metrics read
//! by a real Prometheus parser, and the probe paths and port the deployment manifests rely on.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::hotserve::{Hotserve, Start};
use crate::support::{
    eventually, fixture, health, inprocess, metric_reaches, repo_root, venv, PATIENCE,
};

async fn start(start: Start) -> Hotserve {
    let server = start.spawn();
    server.wait_ready().await;
    server
}

/// A request in flight when SIGTERM arrives completes; readiness is 503 during the drain;
/// the process exits 0 within the deadline.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let server = start(
        Start::model(fixture("sentiment"))
            .set("drain_delay", "1s")
            .set("shutdown_timeout", "5s")
            .set("inference_workers", "1")
            .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "3000"),
    )
    .await;
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn(
        client
            .post(server.url("/predict"))
            .json(&json!({"text": "I love this"}))
            .send(),
    );
    // A batch is counted just before the failpoint: from here the request is in flight.
    metric_reaches(
        &server.url("/metrics"),
        "hotserve_batch_size_count{model=\"sentiment\"}",
        1.0,
    )
    .await;
    let signalled = Instant::now();
    server.signal("TERM");
    let ready_url = server.url("/health/ready");
    eventually("readiness 503 after SIGTERM", async || {
        let ready = client.get(&ready_url).send().await.ok()?;
        (ready.status() == 503).then_some(())
    })
    .await;
    let live = client.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200, "liveness stays 200 while draining");
    assert_eq!(health(&server).await["status"], "draining");

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    let status = server.exited().await;
    assert_eq!(status.code(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "the drain delay was honoured ({took:?})"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let server = start(Start::model(fixture("sentiment")).set("drain_delay", "5m")).await;
    server.signal("TERM");
    // Readiness turns 503 once the first signal has been handled (and the handler for the
    // second one installed).
    let ready_url = server.url("/health/ready");
    eventually("readiness 503 after SIGTERM", async || {
        let ready = reqwest::get(&ready_url).await.ok()?;
        (ready.status() == 503).then_some(())
    })
    .await;
    server.signal("INT");
    // The drain delay is 5 minutes; exiting within the wait's patience is "at once".
    let status = server.exited().await;
    assert_eq!(status.code(), Some(1));
}

/// The exact systemd notifications, in order: READY=1 with a status once serving, WATCHDOG=1
/// pings, RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 on shutdown.
#[tokio::test]
async fn sd_notify_messages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let server = start(
        Start::model(fixture("sentiment"))
            .env("NOTIFY_SOCKET", socket_path.to_str().unwrap())
            .env("WATCHDOG_USEC", "400000"),
    )
    .await;
    let receive = |socket: &UnixDatagram| {
        let mut buffer = [0u8; 4096];
        let n = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let mut messages = Vec::new();
    // Until the first watchdog ping.
    while !messages.iter().any(|m: &String| m == "WATCHDOG=1") {
        messages.push(receive(&socket));
    }
    server.signal("HUP");
    while !messages.iter().any(|m| m.starts_with("RELOADING=1"))
        || messages.last().map(String::as_str) != Some("READY=1")
    {
        messages.push(receive(&socket));
    }
    server.signal("TERM");
    while !messages.iter().any(|m| m.starts_with("STOPPING=1")) {
        messages.push(receive(&socket));
    }
    assert_eq!(server.exited().await.code(), Some(0));

    // The lifecycle messages, without the interleaved STATUS= updates and repeated pings.
    let mut lifecycle: Vec<&str> = messages
        .iter()
        .map(|m| m.lines().next().unwrap())
        .filter(|first| !first.starts_with("STATUS="))
        .collect();
    lifecycle.dedup();
    assert_eq!(
        lifecycle,
        [
            "READY=1",
            "WATCHDOG=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ],
        "all messages: {messages:#?}"
    );
    let ready = &messages[0];
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving sentiment local-"),
        "{ready}"
    );
    assert!(
        messages.iter().any(|m| m == "STATUS=shutting down")
            || messages.iter().any(|m| m.contains("STATUS=shutting down"))
    );
}

/// `/metrics` is read by Prometheus's own Python parser, and names follow its conventions.
#[tokio::test]
async fn metrics_parse_with_a_real_prometheus_parser() {
    let server = inprocess::Start::model(fixture("sentiment")).ready().await;
    let client = reqwest::Client::new();
    for text in ["I love this", "I hate this"] {
        client
            .post(server.url("/predict"))
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
    }
    client
        .post(server.url("/predict"))
        .body("{")
        .send()
        .await
        .unwrap();
    let text = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f.type for f in text_string_to_metric_families(sys.stdin.read())}
print(json.dumps(families))
"#;
    let mut child = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected = [
        ("hotserve_requests", "counter"),
        ("hotserve_request_duration_seconds", "histogram"),
        ("hotserve_queue_duration_seconds", "histogram"),
        ("hotserve_tokenize_duration_seconds", "histogram"),
        ("hotserve_inference_duration_seconds", "histogram"),
        ("hotserve_batch_size", "histogram"),
        ("hotserve_queue_depth", "gauge"),
        ("hotserve_in_flight_requests", "gauge"),
        ("hotserve_model_info", "gauge"),
        ("hotserve_reloads", "counter"),
        ("hotserve_reload_duration_seconds", "histogram"),
        ("hotserve_registry_errors", "counter"),
        ("hotserve_registry_last_success_timestamp_seconds", "gauge"),
        ("hotserve_build_info", "gauge"),
    ];
    for (name, kind) in expected {
        assert_eq!(families[name], kind, "{name} in {families}");
    }
    assert!(text.contains(
        "hotserve_requests_total{model=\"sentiment\",route=\"/predict\",status=\"400\"} 1"
    ));
    assert!(text
        .contains("hotserve_model_info{model=\"sentiment\",name=\"sentiment\",version=\"local-"));
}

/// No log line per request at the default level; one line per reload.
#[tokio::test]
async fn no_per_request_log_lines_at_the_default_level() {
    let server = start(Start::model(fixture("sentiment"))).await;
    // SIGHUP logs one line (the check it causes finds the model unchanged, a debug line):
    // a marker after which every earlier line has been read.
    let mut markers = 0;
    let mut mark = async || {
        markers += 1;
        server.signal("HUP");
        eventually("the SIGHUP log line", async || {
            let logs = server.logs();
            (logs.matches("received SIGHUP").count() == markers).then_some(logs)
        })
        .await
    };
    let before = mark().await.lines().count();
    let client = reqwest::Client::new();
    for _ in 0..50 {
        client
            .post(server.url("/predict"))
            .json(&json!({"text": "fine"}))
            .send()
            .await
            .unwrap();
        client.get(server.url("/health")).send().await.unwrap();
    }
    client
        .post(server.url("/predict"))
        .body("not json")
        .send()
        .await
        .unwrap();
    let logs = mark().await;
    let new: Vec<&str> = logs.lines().skip(before).collect();
    assert!(
        new.len() == 1 && new[0].contains("received SIGHUP"),
        "requests logged at info:\n{}",
        new.join("\n")
    );
    assert_eq!(logs.matches("reload succeeded").count(), 1);
}

/// The probe paths and port in the Kubernetes manifests are ones the binary serves.
#[tokio::test]
async fn the_deployment_probes_are_served() {
    let probes: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/k8s/probes.json")).unwrap(),
    )
    .unwrap();
    let deployment: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/k8s/base/deployment.yaml")).unwrap(),
    )
    .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(port, probes["port"].as_u64().unwrap());
    assert!(hotserve::config::describe().contains("HOTSERVE_LISTEN"));
    let defaults = hotserve::config::Config::load(&hotserve::config::Inputs {
        config_file: None,
        flags: Vec::new(),
        env: &|_| None,
        variables: Vec::new(),
    })
    .expect("the defaults are a valid configuration");
    assert_eq!(
        port,
        u64::from(defaults.listen.port()),
        "the default listen port"
    );
    let server = inprocess::Start::model(fixture("sentiment")).ready().await;
    for (probe, key) in [
        ("livenessProbe", "liveness"),
        ("readinessProbe", "readiness"),
        ("startupProbe", "startup"),
    ] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(path, probes[key].as_str().unwrap(), "{probe}");
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{probe} {path}");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    let metrics_path = annotations["prometheus.io/path"].as_str().unwrap();
    assert_eq!(
        reqwest::get(server.url(metrics_path))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// SIGTERM during a slow first load: liveness answered meanwhile, and the process exits 0 at
/// once instead of finishing the load first.
#[tokio::test]
async fn sigterm_during_the_first_load_exits_promptly() {
    let server = Start::model(fixture("sentiment"))
        .env("HOTSERVE_TEST_LOAD_DELAY_MS", "60000")
        .spawn();
    let client = reqwest::Client::new();
    let live = client.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200, "the listener is up before the model");
    let ready = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let signalled = Instant::now();
    server.signal("TERM");
    // The load takes 60 s; exiting within the wait's patience (30 s) is exiting without
    // waiting for it.
    let status = server.exited().await;
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < PATIENCE, "{:?}", signalled.elapsed());
}
