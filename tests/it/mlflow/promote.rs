//! Safe promotion against a real MLflow registry (`promotion: shadow`): a version that passed
//! the gate is compared with the live one on copies of live requests before it may go live.
//! The versions are built for the purpose by `register.py`: `swap_labels` (the label names
//! swapped, golden examples too: it passes the gate and disagrees on every input), `slow` (the
//! same answers after a chain of large matrix products: far slower), and the v2 fixture
//! (other weights, lower-case labels, the same answers on the golden texts). Every test runs
//! a steady load and checks that no live request failed and readiness stayed green.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::inprocess;
use crate::support::{
    eventually, health_until, metric, metric_reaches, mlflow, register, register_champion, Wait,
    PATIENCE,
};

/// The golden texts of both fixtures: each version answers them as its golden examples say,
/// so v1 and v2 agree on all of them.
const TEXTS: [&str; 4] = [
    "I love this",
    "I hate this",
    "This is wonderful, great product",
    "terrible, awful experience",
];

/// The longest shadow evaluation and guard window the tests set (`shadow_max_duration`,
/// `guard_window`).
const WINDOW: Duration = Duration::from_secs(120);

/// How long a promotion decision may take: the longest window, then the check that acts on it.
const DECISION: Duration = Duration::from_secs(WINDOW.as_secs() + PATIENCE.as_secs());

/// A steady stream of requests from a few clients, counting failures and readiness.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(server: &inprocess::Server, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let predict = server.url("/predict/batch");
                let ready = server.url("/health/ready");
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let (mut answered, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let response = client
                            .post(&predict)
                            .json(&json!({"texts": TEXTS}))
                            .send()
                            .await;
                        match response {
                            Ok(response) if response.status() == 200 => answered += 1,
                            Ok(response) => failures.push(format!(
                                "{}: {}",
                                response.status(),
                                response.text().await.unwrap_or_default()
                            )),
                            Err(err) => failures.push(err.to_string()),
                        }
                        if answered % 20 == 0 {
                            let status = client.get(&ready).send().await.map(|r| r.status());
                            if !matches!(status, Ok(s) if s == 200) {
                                failures.push(format!("readiness: {status:?}"));
                            }
                        }
                    }
                    (answered, failures)
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the load; asserts that every request succeeded and returns how many there were.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for client in self.clients {
            let (answered, failures) = client.await.unwrap();
            assert!(failures.is_empty(), "live requests failed: {failures:?}");
            total += answered;
        }
        assert!(total > 0, "the load made no request");
        total
    }
}

/// A server following `models:/<name>@champion` in shadow mode.
async fn start(name: &str, settings: &[(&str, &str)]) -> inprocess::Start {
    let mut start = inprocess::Start::model(format!("models:/{name}@champion"))
        .env("MLFLOW_TRACKING_URI", &mlflow().await.url)
        .set("poll_interval", "300ms")
        .set("promotion", "shadow")
        .set("shadow_min_requests", "30")
        .set("shadow_min_duration", "1s")
        .set("shadow_max_duration", &format!("{}s", WINDOW.as_secs()))
        .set("admin_token", "secret");
    for (key, value) in settings {
        start = start.set(key, value);
    }
    start
}

/// Polls `/health` until the model has a promotion decision about `version`; returns
/// `/health` then.
async fn decided(server: &inprocess::Server, version: &str) -> Value {
    let wait = Wait::new(format!("a promotion decision about version {version}")).within(DECISION);
    health_until(server, wait, |health| {
        health["last_promotion"]["version"] == version
    })
    .await
}

/// Polls `/health` until a candidate is in shadow; returns `/health` then.
async fn in_shadow(server: &inprocess::Server) -> Value {
    let wait = Wait::new("a candidate in shadow").within(DECISION);
    health_until(server, wait, |health| !health["shadow"].is_null()).await
}

async fn metric_of(server: &inprocess::Server, series: &str) -> f64 {
    metric(&server.url("/metrics"), series).await.unwrap_or(0.0)
}

/// Registers `command` as version 2 of `name` and moves `champion` to it, off the runtime so
/// the load keeps running.
async fn register_v2(name: &str, mut command: Value) {
    command["op"] = json!("register");
    command["name"] = json!(name);
    let commands =
        json!([command, {"op": "set-alias", "name": name, "alias": "champion", "version": "2"}]);
    let server = mlflow().await;
    tokio::task::spawn_blocking(move || register(server, commands))
        .await
        .expect("register");
}

#[tokio::test]
async fn a_disagreeing_version_is_refused_in_shadow_with_zero_failed_requests() {
    let name = "shadow-disagrees";
    register_champion(name).await;
    let server = start(name, &[]).await.ready().await;
    let load = Load::start(&server, 2);
    register_v2(
        name,
        json!({"dir": "tests/fixtures/sentiment", "variant": "swap_labels"}),
    )
    .await;
    let health = decided(&server, "2").await;
    assert_eq!(health["last_promotion"]["result"], "refused", "{health}");
    let reason = health["last_promotion"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("agreed on 0% of "), "{reason}");
    assert!(reason.ends_with(" requests, needs 95%"), "{reason}");
    assert_eq!(health["model"]["version"], "1", "the live model stays");
    assert!(health["shadow"].is_null(), "{health}");

    // Remembered: later polls skip it without loading it again.
    let skipped = format!("hotserve_reloads_total{{model=\"{name}\",result=\"skipped_bad\"}}");
    metric_reaches(&server.url("/metrics"), &skipped, 1.0).await;
    let health = crate::support::health(&server).await;
    assert_eq!(health["model"]["version"], "1");
    let error = health["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("v2 was refused in shadow: agreed on 0%"),
        "{health}"
    );
    let answered = load.finish().await;
    let series =
        |result: &str| format!("hotserve_promotions_total{{model=\"{name}\",result=\"{result}\"}}");
    assert_eq!(metric_of(&server, &series("refused")).await, 1.0);
    assert_eq!(metric_of(&server, &series("promoted")).await, 0.0);
    let compared = metric_of(
        &server,
        &format!("hotserve_shadow_requests_total{{model=\"{name}\",result=\"compared\"}}"),
    )
    .await;
    assert!(compared >= 30.0, "{compared} copies compared");
    assert_eq!(
        metric_of(
            &server,
            &format!("hotserve_shadow_agreement_ratio{{model=\"{name}\"}}")
        )
        .await,
        0.0
    );
    eprintln!("{answered} live requests, {compared} compared in shadow, none failed");
}

#[tokio::test]
async fn an_agreeing_version_is_promoted_after_shadow_with_zero_failed_requests() {
    let name = "shadow-agrees";
    register_champion(name).await;
    // Its inference time is compared with v1's under load on a shared machine: allow noise.
    // Long enough for the test to see the candidate in shadow after the registration.
    let settings = [
        ("shadow_max_latency_ratio", "5"),
        ("shadow_min_duration", "20s"),
    ];
    let server = start(name, &settings).await.ready().await;
    let load = Load::start(&server, 2);
    register_v2(name, json!({"dir": "tests/fixtures/sentiment_v2"})).await;
    let shadow = in_shadow(&server).await;
    assert_eq!(shadow["shadow"]["version"], "2", "{shadow}");
    assert_eq!(
        shadow["model"]["version"], "1",
        "v1 serves while v2 is in shadow"
    );
    let health = decided(&server, "2").await;
    assert_eq!(health["last_promotion"]["result"], "promoted", "{health}");
    let reason = health["last_promotion"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("agreed on 100% of "), "{reason}");
    // The swap follows the decision in the same check.
    health_until(&server, "v2 live", |health| {
        health["model"]["version"] == "2"
    })
    .await;
    load.finish().await;
    let promoted = format!("hotserve_promotions_total{{model=\"{name}\",result=\"promoted\"}}");
    assert_eq!(metric_of(&server, &promoted).await, 1.0);
}

#[tokio::test]
async fn a_slow_version_is_refused_in_shadow() {
    let name = "shadow-slow";
    register_champion(name).await;
    let server = start(name, &[("shadow_max_latency_ratio", "3")])
        .await
        .ready()
        .await;
    let load = Load::start(&server, 2);
    register_v2(
        name,
        json!({"dir": "tests/fixtures/sentiment", "variant": "slow"}),
    )
    .await;
    let health = decided(&server, "2").await;
    assert_eq!(health["last_promotion"]["result"], "refused", "{health}");
    let reason = health["last_promotion"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("took "), "{reason}");
    assert!(reason.contains("x the live model's time on "), "{reason}");
    assert!(reason.ends_with(" requests, allowed 3.00x"), "{reason}");
    assert_eq!(health["model"]["version"], "1");
    load.finish().await;
    let ratio = metric_of(
        &server,
        &format!("hotserve_shadow_latency_ratio{{model=\"{name}\"}}"),
    )
    .await;
    assert!(ratio > 3.0, "latency ratio {ratio}");
}

#[tokio::test]
async fn an_operator_promotes_or_rejects_by_hand() {
    let name = "shadow-by-hand";
    register_champion(name).await;
    // Never enough traffic to decide alone.
    let server = start(name, &[("shadow_min_requests", "1000000")])
        .await
        .ready()
        .await;
    let client = reqwest::Client::new();
    let admin = |path: &str| {
        client
            .post(server.url(path))
            .header("authorization", "Bearer secret")
    };
    let nothing = admin("/admin/promote").send().await.unwrap();
    assert_eq!(nothing.status(), 409, "nothing in shadow yet");
    let unauthenticated = client
        .post(server.url("/admin/reject"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    register_v2(name, json!({"dir": "tests/fixtures/sentiment_v2"})).await;
    in_shadow(&server).await;
    let answer = admin(&format!("/admin/promote?model={name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["version"], "2", "{body}");
    let health = decided(&server, "2").await;
    assert_eq!(health["last_promotion"]["result"], "promoted");
    assert!(
        health["last_promotion"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("promoted by hand (POST /admin/promote)"),
        "{health}"
    );

    // Version 3 is rejected by hand: version 2 stays.
    let mlflow = mlflow().await;
    tokio::task::spawn_blocking(move || {
        register(
            mlflow,
            json!([
                {"op": "register", "dir": "tests/fixtures/sentiment", "name": name},
                {"op": "set-alias", "name": name, "alias": "champion", "version": "3"},
            ]),
        )
    })
    .await
    .unwrap();
    let shadow = in_shadow(&server).await;
    assert_eq!(shadow["shadow"]["version"], "3", "{shadow}");
    let answer = admin("/admin/reject").send().await.unwrap();
    assert_eq!(answer.status(), 202);
    let health = decided(&server, "3").await;
    assert_eq!(health["last_promotion"]["result"], "refused");
    assert_eq!(health["model"]["version"], "2");
}

#[tokio::test]
async fn a_version_that_misbehaves_after_the_swap_is_rolled_back_with_zero_failed_requests() {
    let name = "guard-rollback";
    register_champion(name).await;
    let server = start(
        name,
        &[
            ("promotion", "immediate"),
            ("guard_window", &format!("{}s", WINDOW.as_secs())),
            ("guard_max_latency_ratio", "3"),
        ],
    )
    .await
    .ready()
    .await;
    let load = Load::start(&server, 2);
    // Figures of v1 before the swap: enough batches for a p99.
    let jobs = format!("hotserve_inference_duration_seconds_count{{model=\"{name}\"}}");
    metric_reaches(&server.url("/metrics"), &jobs, 100.0).await;
    register_v2(
        name,
        json!({"dir": "tests/fixtures/sentiment", "variant": "slow", "layers": 64}),
    )
    .await;
    let health = decided(&server, "2").await;
    assert_eq!(
        health["last_promotion"]["result"], "rolled_back",
        "{health}"
    );
    let reason = health["last_promotion"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("p99 inference time "), "{reason}");
    assert!(reason.ends_with("(allowed 3.0x)"), "{reason}");
    assert_eq!(health["model"]["version"], "1", "v1 serves again");
    // Skipped from then on, not tried again.
    let skipped = format!("hotserve_reloads_total{{model=\"{name}\",result=\"skipped_bad\"}}");
    metric_reaches(&server.url("/metrics"), &skipped, 1.0).await;
    let health = crate::support::health(&server).await;
    assert_eq!(health["model"]["version"], "1");
    let error = health["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("v2 was rolled back to "), "{health}");
    load.finish().await;
    let series = format!("hotserve_promotions_total{{model=\"{name}\",result=\"rolled_back\"}}");
    assert_eq!(metric_of(&server, &series).await, 1.0);
}

#[tokio::test]
async fn outcomes_are_written_to_the_registry_as_version_tags() {
    let name = "shadow-tags";
    register_champion(name).await;
    let server = start(
        name,
        &[
            ("report_to_registry", "true"),
            ("instance_name", "replica-a"),
        ],
    )
    .await
    .ready()
    .await;
    let load = Load::start(&server, 2);
    register_v2(
        name,
        json!({"dir": "tests/fixtures/sentiment", "variant": "swap_labels"}),
    )
    .await;
    let health = decided(&server, "2").await;
    assert_eq!(health["last_promotion"]["result"], "refused", "{health}");
    load.finish().await;
    // Read back through MLflow's own Python client.
    let mlflow = mlflow().await;
    let tags = eventually("the outcome in the version's tags", async || {
        let described = tokio::task::spawn_blocking(move || {
            register(
                mlflow,
                json!({"op": "describe", "name": name, "version": "2"}),
            )
        })
        .await
        .unwrap();
        let tags = described["tags"].clone();
        if tags["hotserve.replica-a.status"] == "refused" {
            Ok(tags)
        } else {
            Err(tags)
        }
    })
    .await;
    let reason = tags["hotserve.replica-a.reason"].as_str().unwrap();
    assert!(reason.starts_with("agreed on 0% of "), "{tags}");
    assert!(
        tags["hotserve.replica-a.at"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{tags}"
    );
    let failures = format!("hotserve_registry_report_failures_total{{model=\"{name}\"}}");
    assert_eq!(metric_of(&server, &failures).await, 0.0);
}
