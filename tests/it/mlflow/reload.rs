//! Hot reload end to end: the real binary following a real MLflow registry while a steady
//! stream of requests runs. v1 (the `sentiment` fixture) answers with upper-case labels, v2
//! (`sentiment_v2`) with lower-case ones, so every response shows which model computed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::hotserve::{run, Start};
use crate::support::inprocess;
use crate::support::{
    copy_dir, eventually, fixture, health, health_until, metric, metric_reaches, mlflow, register,
    register_champion, Fault, FaultProxy, Served, Wait, LOADING,
};

/// One answered request of the background load.
#[derive(Debug)]
struct Observation {
    status: u16,
    /// `X-Model-Version`.
    header: Option<String>,
    /// `model_version` in the body.
    body_version: Option<String>,
    labels: Vec<String>,
}

/// A bounded stream of concurrent requests (each client stops after 60 s or 100,000 requests:
/// enough to outlast a registration through MLflow's Python client on a fast machine).
struct Load {
    stop: Arc<AtomicBool>,
    /// Successful answers so far, by `X-Model-Version`: what [`Load::answered_by`] waits on.
    answered: Arc<Mutex<HashMap<String, usize>>>,
    clients: Vec<tokio::task::JoinHandle<Vec<Observation>>>,
}

impl Load {
    fn start(server: &impl Served, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(HashMap::new()));
        let clients = (0..clients)
            .map(|i| {
                let stop = stop.clone();
                let answered = answered.clone();
                let single = server.url("/predict");
                let batch = server.url("/predict/batch");
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let started = Instant::now();
                    let mut seen = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && n < 100_000 && started.elapsed() < Duration::from_secs(60) {
                        n += 1;
                        let request = if (n + i) % 2 == 0 {
                            client.post(&single).json(&json!({"text": "I love this"}))
                        } else {
                            client.post(&batch).json(&json!({"texts": ["I love this", "I hate this", "great product", "awful"]}))
                        };
                        let response = match request.send().await {
                            Ok(response) => response,
                            Err(err) => {
                                seen.push(Observation { status: 0, header: Some(err.to_string()), body_version: None, labels: vec![] });
                                continue;
                            }
                        };
                        let status = response.status().as_u16();
                        let header = response.headers().get("x-model-version").map(|v| v.to_str().unwrap().to_string());
                        if let (200, Some(version)) = (status, &header) {
                            *answered.lock().unwrap().entry(version.clone()).or_insert(0) += 1;
                        }
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        let labels = match body.get("predictions") {
                            Some(predictions) => predictions.as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap().to_string()).collect(),
                            None => body.get("label").and_then(|l| l.as_str()).map(|l| vec![l.to_string()]).unwrap_or_default(),
                        };
                        let body_version = body.get("model_version").and_then(|v| v.as_str()).map(str::to_string);
                        seen.push(Observation { status, header, body_version, labels });
                    }
                    seen
                })
            })
            .collect();
        Load {
            stop,
            answered,
            clients,
        }
    }

    /// Waits until `version` has answered `count` requests of this load.
    async fn answered_by(&self, version: &str, count: usize) {
        eventually(
            format!("{count} answers from version {version}"),
            async || {
                let answered = self.answered.lock().unwrap();
                (answered.get(version).copied().unwrap_or(0) >= count).then_some(())
            },
        )
        .await
    }

    async fn finish(self) -> Vec<Observation> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for client in self.clients {
            all.extend(client.await.unwrap());
        }
        all
    }
}

/// Every request succeeded, no response mixed versions, and every response's version header
/// matches its content. Returns how many responses each version answered.
fn check_observations(observations: &[Observation]) -> HashMap<String, usize> {
    assert!(!observations.is_empty());
    let failed: Vec<&Observation> = observations.iter().filter(|o| o.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        observations.len(),
        &failed[..failed.len().min(3)]
    );
    let mut case_of_version: HashMap<String, bool> = HashMap::new();
    let mut counts = HashMap::new();
    for o in observations {
        let version = o
            .header
            .clone()
            .expect("every prediction carries X-Model-Version");
        assert_eq!(
            o.body_version.as_ref(),
            Some(&version),
            "header and body agree"
        );
        let upper: Vec<bool> = o
            .labels
            .iter()
            .map(|l| l.chars().all(|c| c.is_ascii_uppercase()))
            .collect();
        assert!(
            upper.iter().all(|&u| u == upper[0]),
            "a response mixed model versions: {o:?}"
        );
        let previous = *case_of_version.entry(version.clone()).or_insert(upper[0]);
        assert_eq!(
            previous, upper[0],
            "version {version} answered with two different models"
        );
        *counts.entry(version).or_insert(0) += 1;
    }
    counts
}

/// Waits until `/health` says `version` is live and the check that loaded it has reported
/// (`last_reload`, written just after the swap); returns how long that took. A version going
/// live is a download and a model load, under load: [`LOADING`].
async fn wait_for_version(server: &impl Served, version: &str) -> Duration {
    let started = Instant::now();
    let wait = Wait::new(format!("version {version} live")).within(LOADING);
    health_until(server, wait, |h| {
        h["model"]["version"] == version && h["last_reload"]["version"] == version
    })
    .await;
    started.elapsed()
}

/// Runs [`register`] on the blocking pool, so that a running [`Load`] (tasks on this test's
/// runtime) keeps sending meanwhile. MLflow's Python client takes seconds; blocking the
/// runtime that long stalls the load and leaves its connections idle past the server's
/// header timeout, which then closes them under the next request.
async fn register_meanwhile(commands: Value) -> Value {
    let server = mlflow().await;
    tokio::task::spawn_blocking(move || register(server, commands))
        .await
        .expect("register")
}

fn registry_start(name: &str, tracking_uri: &str) -> Start {
    Start::default()
        .arg("--model-uri")
        .arg(&format!("models:/{name}@champion"))
        .env("MLFLOW_TRACKING_URI", tracking_uri)
}

#[tokio::test]
async fn serves_a_registered_model_and_follows_the_alias_with_zero_failed_requests() {
    let server = mlflow().await;
    let name = "reload-poll";
    register_champion(name).await;
    let hotserve = registry_start(name, &server.url)
        .arg("--poll-interval")
        .arg("500ms")
        .spawn();
    hotserve.wait_ready().await;
    let before = health(&hotserve).await;
    assert_eq!(before["model"]["name"], name);
    assert_eq!(before["model"]["version"], "1");
    assert_eq!(before["model"]["aliases"], json!(["champion"]));
    assert!(before["model"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "tokenizer.json" && f["sha256"].as_str().unwrap().len() == 64));

    let load = Load::start(&hotserve, 4);
    load.answered_by("1", 20).await;
    register_meanwhile(json!([
        {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name},
        {"op": "set-alias", "name": name, "alias": "champion", "version": "2"},
    ]))
    .await;
    // The poll interval is 500 ms.
    let took = wait_for_version(&hotserve, "2").await;
    eprintln!("v2 went live {took:?} after the alias moved");
    load.answered_by("2", 20).await;
    let counts = check_observations(&load.finish().await);
    assert!(
        counts.get("1").is_some_and(|&n| n > 0) && counts.get("2").is_some_and(|&n| n > 0),
        "{counts:?}"
    );

    let metrics = reqwest::get(hotserve.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "hotserve_model_info{{model=\"{name}\",name=\"{name}\",version=\"2\""
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "hotserve_reloads_total{{model=\"{name}\",result=\"loaded\"}} 2"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "hotserve_reloads_total{{model=\"{name}\",result=\"unchanged\"}}"
        )),
        "polls that find nothing new are counted"
    );
}

#[tokio::test]
async fn a_broken_version_is_refused_and_a_rollback_comes_from_the_cache() {
    let server = mlflow().await;
    let proxy = FaultProxy::start(server.addr).await;
    let name = "reload-bad";
    register(
        server,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name, "corrupt": "onnx"},
        ]),
    );
    let hotserve = registry_start(name, &proxy.url())
        .arg("--poll-interval")
        .arg("300ms")
        .spawn();
    hotserve.wait_ready().await;
    register(
        server,
        json!({"op": "set-alias", "name": name, "alias": "champion", "version": "2"}),
    );
    wait_for_version(&hotserve, "2").await;

    let load = Load::start(&hotserve, 2);
    register_meanwhile(
        json!({"op": "set-alias", "name": name, "alias": "champion", "version": "3"}),
    )
    .await;
    let health = health_until(&hotserve, "v3 tried", |h| {
        h["last_reload"]["version"] == "3"
    })
    .await;
    assert_eq!(health["model"]["version"], "2", "v2 keeps serving");
    // The poll that tried v3 failed; a later one may already have skipped it as known bad.
    // The failure itself is counted once below.
    assert!(
        matches!(
            health["last_reload"]["result"].as_str(),
            Some("failed" | "skipped_bad")
        ),
        "{health}"
    );
    let error = health["last_error"].as_str().unwrap();
    assert!(
        error.contains("model.onnx") && error.contains("ONNX Runtime cannot load the graph"),
        "{error}"
    );
    let ready = reqwest::get(hotserve.url("/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "readiness stays green");
    // The bad version is not downloaded again on every poll.
    let downloads_of_v3 = || {
        proxy
            .seen()
            .iter()
            .filter(|s| {
                s.target.contains("/mlflow-artifacts/artifacts/")
                    && s.target.ends_with(".onnx")
                    && !s.target.contains("?")
            })
            .count()
    };
    let before = downloads_of_v3();
    // Three more polls find v3 again, and skip it as known bad.
    let metrics_url = hotserve.url("/metrics");
    let skipped = format!("hotserve_reloads_total{{model=\"{name}\",result=\"skipped_bad\"}}");
    let skipped_before = metric(&metrics_url, &skipped).await.unwrap_or(0.0);
    metric_reaches(&metrics_url, &skipped, skipped_before + 3.0).await;
    assert_eq!(
        downloads_of_v3(),
        before,
        "the bad version was downloaded again"
    );
    let metrics = reqwest::get(hotserve.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "hotserve_reloads_total{{model=\"{name}\",result=\"failed\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&skipped), "{metrics}");

    // Roll back to v1: served again from the cache, without a single artifact download.
    let artifact_requests = |proxy: &FaultProxy| {
        proxy
            .seen()
            .iter()
            .filter(|s| s.target.contains("/mlflow-artifacts/artifacts/"))
            .count()
    };
    let before = artifact_requests(&proxy);
    register_meanwhile(
        json!({"op": "set-alias", "name": name, "alias": "champion", "version": "1"}),
    )
    .await;
    wait_for_version(&hotserve, "1").await;
    assert_eq!(
        artifact_requests(&proxy),
        before,
        "the rollback downloaded artifacts"
    );
    let counts = check_observations(&load.finish().await);
    assert!(
        !counts.contains_key("3"),
        "the broken version never served: {counts:?}"
    );
    assert!(
        hotserve.logs().contains("using the cached copy"),
        "{}",
        hotserve.logs()
    );
}

#[tokio::test]
async fn a_webhook_from_mlflow_triggers_the_reload() {
    let server = mlflow().await;
    let name = "reload-webhook";
    register_champion(name).await;
    let hotserve = registry_start(name, &server.url)
        .arg("--poll-interval")
        .arg("0")
        .env("HOTSERVE_WEBHOOK_SECRET", "whsec-test")
        .spawn();
    hotserve.wait_ready().await;
    register(
        server,
        json!({"op": "create-webhook", "url": hotserve.url("/hooks/mlflow"), "secret": "whsec-test",
                            "webhook_name": name, "events": ["model_version_alias.created"]}),
    );
    let load = Load::start(&hotserve, 2);
    register_meanwhile(json!([
        {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name},
        {"op": "set-alias", "name": name, "alias": "champion", "version": "2"},
    ]))
    .await;
    let took = wait_for_version(&hotserve, "2").await;
    load.answered_by("2", 10).await;
    let counts = check_observations(&load.finish().await);
    assert!(counts.contains_key("2"), "{counts:?}");
    let health = health(&hotserve).await;
    assert_eq!(
        health["last_reload"]["trigger"], "webhook",
        "polling is off; only the webhook can have done it ({took:?})"
    );
    assert!(hotserve.logs().contains("webhook: checking the registry"));
}

#[tokio::test]
async fn restarts_from_the_cache_when_the_registry_is_down() {
    let server = mlflow().await;
    let proxy = FaultProxy::start(server.addr).await;
    let name = "reload-cache";
    register_champion(name).await;
    let cache = tempfile::tempdir().unwrap();
    let first = registry_start(name, &proxy.url())
        .cache(cache.path())
        .spawn();
    first.wait_ready().await;
    drop(first);

    // The registry answers 503 to everything now.
    proxy.inject_always(
        "/api/",
        Fault::error(503, "TEMPORARILY_UNAVAILABLE", "maintenance"),
    );
    let started = Instant::now();
    let second = registry_start(name, &proxy.url())
        .cache(cache.path())
        .arg("--poll-interval")
        .arg("1s")
        .spawn();
    second.wait_ready().await;
    let cold_with_cache = started.elapsed();
    let health = health(&second).await;
    assert_eq!(health["model"]["version"], "1");
    assert_eq!(health["served_from_cache"], true, "{health}");
    assert!(
        health["last_error"]
            .as_str()
            .unwrap()
            .contains("serving cached version 1"),
        "{health}"
    );
    let (status, body) = {
        let response = reqwest::Client::new()
            .post(second.url("/predict"))
            .json(&json!({"text": "I love this"}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!((status, body["label"].as_str()), (200, Some("POSITIVE")));

    // The registry comes back: the next retry clears the flag.
    proxy.clear();
    let health = health_until(&second, "recovery", |h| h["served_from_cache"] == false).await;
    assert_eq!(health["last_error"], Value::Null);
    eprintln!("ready from cache with the registry down in {cold_with_cache:?}");

    // With no cache at all, readiness stays 503 and /health says why in words.
    proxy.inject_always(
        "/api/",
        Fault::error(503, "TEMPORARILY_UNAVAILABLE", "maintenance"),
    );
    let third = registry_start(name, &proxy.url()).spawn();
    let health = health_until(&third, "the registry error", |h| {
        h["last_error"].is_string()
    })
    .await;
    assert_eq!(health["model_loaded"], false);
    assert!(
        health["message"].as_str().unwrap().starts_with("no model:"),
        "{health}"
    );
    let ready = reqwest::get(third.url("/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason: Value = ready.json().await.unwrap();
    assert!(
        reason["reason"].as_str().unwrap().contains("503"),
        "{reason}"
    );
    let live = reqwest::get(third.url("/health/live")).await.unwrap();
    assert_eq!(
        live.status(),
        200,
        "the process is alive while it waits for the registry"
    );
}

/// In the test process: the file watcher needs no registry and no process of its own.
#[tokio::test]
async fn a_watched_directory_rewritten_in_place_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_dir(&fixture("sentiment"), &model);
    let hotserve = inprocess::Start::model(&model)
        .set("watch_debounce", "300ms")
        .ready()
        .await;
    let v1 = health(&hotserve).await["model"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let load = Load::start(&hotserve, 2);
    load.answered_by(&v1, 10).await;
    // Rewrite the directory file by file, slowly, as a careless deploy script would.
    for entry in std::fs::read_dir(model.as_path()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for entry in std::fs::read_dir(fixture("sentiment_v2")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        // Deliberately slow: the watcher must wait for the directory to settle.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = health_until(&hotserve, "the rewritten directory", |h| {
        h["model"]["version"] != v1.as_str()
    })
    .await;
    let v2 = health["model"]["version"].as_str().unwrap().to_string();
    load.answered_by(&v2, 10).await;
    let counts = check_observations(&load.finish().await);
    assert!(counts.contains_key(&v2), "{counts:?}");
    let health = crate::support::health(&hotserve).await;
    assert_eq!(health["last_reload"]["trigger"], "watch");
    hotserve.stop().await.expect("a clean shutdown");
}

#[tokio::test]
async fn resolve_and_validate_against_the_registry() {
    let server = mlflow().await;
    let name = "cli-gate";
    register(
        server,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "corrupt": "golden"},
        ]),
    );
    let env = [("MLFLOW_TRACKING_URI", server.url.as_str())];
    let (code, stdout, stderr) = run(&["resolve", &format!("models:/{name}@champion")], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("tokenizer.json") && stdout.contains(name),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&["validate", &format!("models:/{name}/1")], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("golden examples passed: 6"), "{stdout}");
    let (code, _, stderr) = run(&["validate", &format!("models:/{name}/2")], &env);
    assert_eq!(code, 1);
    assert!(stderr.contains("golden examples failed"), "{stderr}");
    let (code, _, stderr) = run(&["resolve", &format!("models:/{name}@nope")], &env);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("champion"),
        "the message lists the aliases that exist: {stderr}"
    );
}

/// `reload_policy: resource` unloads first: readiness is 503 during the gap and says why, and
/// a broken version brings the previous model back.
#[tokio::test]
async fn the_resource_policy_unloads_first_and_restores_on_failure() {
    let server = mlflow().await;
    let name = "reload-resource";
    register(
        server,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name, "corrupt": "tokenizer"},
        ]),
    );
    let hotserve = registry_start(name, &server.url)
        .arg("--poll-interval")
        .arg("200ms")
        .set("reload_policy", "resource")
        .env("HOTSERVE_TEST_LOAD_DELAY_MS", "300")
        .spawn();
    hotserve.wait_ready().await;
    let client = reqwest::Client::new();
    // Watch readiness from before the alias moves until v2 is live.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (client, url, stop) = (client.clone(), hotserve.url("/health/ready"), stop.clone());
        tokio::spawn(async move {
            let mut gap_reason = None;
            while !stop.load(Ordering::Relaxed) {
                let response = client.get(&url).send().await.unwrap();
                if response.status() == 503 {
                    let body: Value = response.json().await.unwrap();
                    gap_reason = Some(body["reason"].as_str().unwrap().to_string());
                }
                // The sampling interval of readiness; the loop ends when v2 is live.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            gap_reason
        })
    };
    register_meanwhile(
        json!({"op": "set-alias", "name": name, "alias": "champion", "version": "2"}),
    )
    .await;
    wait_for_version(&hotserve, "2").await;
    stop.store(true, Ordering::Relaxed);
    let gap_reason = watcher.await.unwrap();
    assert!(
        gap_reason
            .as_deref()
            .is_some_and(|r| r.contains("reload_policy=resource")),
        "readiness was never 503 during the reload: {gap_reason:?}"
    );

    register(
        server,
        json!({"op": "set-alias", "name": name, "alias": "champion", "version": "3"}),
    );
    let health = health_until(&hotserve, "v3 refused, v2 restored", |h| {
        h["last_reload"]["version"] == "3" && h["model"]["version"] == "2"
    })
    .await;
    // The poll that tried v3 failed; a later one may already have skipped it as known bad.
    assert!(
        matches!(
            health["last_reload"]["result"].as_str(),
            Some("failed" | "skipped_bad")
        ),
        "{health}"
    );
    assert_eq!(
        metric(
            &hotserve.url("/metrics"),
            &format!("hotserve_reloads_total{{model=\"{name}\",result=\"failed\"}}")
        )
        .await,
        Some(1.0),
        "v3 was tried once"
    );
    assert_eq!(
        client
            .get(hotserve.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "v2 was restored"
    );
}

/// Several registered models in one daemon: a webhook about one of them reloads that one and
/// leaves the other where it was, an event about a model nobody serves is ignored, and each
/// model has its own registry series.
#[tokio::test]
async fn several_registered_models_reload_only_the_one_a_webhook_names() {
    let server = mlflow().await;
    let (a, b) = ("multi-a", "multi-b");
    register(
        server,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": a, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": b, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": a},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": b},
        ]),
    );
    let secret = "whsec-multi";
    let hotserve = inprocess::Start::default()
        .set(
            "models",
            &format!("a=models:/{a}@champion,b=models:/{b}@champion"),
        )
        .set("poll_interval", "0")
        .set("webhook_secret", secret)
        .env("MLFLOW_TRACKING_URI", &server.url)
        .ready()
        .await;
    register(
        server,
        json!([
            {"op": "set-alias", "name": a, "alias": "champion", "version": "2"},
            {"op": "set-alias", "name": b, "alias": "champion", "version": "2"},
        ]),
    );
    let deliver = async |id: &str, name: &str| -> Value {
        let body = json!({"entity": "model_version_alias", "action": "created",
                          "data": {"name": name, "alias": "champion", "version": "2"}})
        .to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let signature = hotserve::reload::webhook::sign(secret, id, &now, body.as_bytes());
        reqwest::Client::new()
            .post(hotserve.url("/hooks/mlflow"))
            .header("x-mlflow-delivery-id", id)
            .header("x-mlflow-timestamp", &now)
            .header("x-mlflow-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let answer = deliver("d1", b).await;
    assert_eq!(answer["models"], json!(["b"]), "{answer}");
    // The check's report (last_reload) follows the swap: wait for both.
    let health = health_until(&hotserve, "b on version 2", |h| {
        h["models"]["b"]["model"]["version"] == "2"
            && h["models"]["b"]["last_reload"]["version"] == "2"
    })
    .await;
    assert_eq!(health["models"]["a"]["model"]["version"], "1", "{health:#}");
    assert_eq!(health["models"]["b"]["last_reload"]["trigger"], "webhook");

    let answer = deliver("d2", "nobody").await;
    assert_eq!(answer["status"], "ignored", "{answer}");
    assert_eq!(
        answer["reason"],
        format!("event model_version_alias.created is for model 'nobody', not '{a}' or '{b}'")
    );
    let metrics = hotserve.url("/metrics");
    for name in ["a", "b"] {
        let series =
            format!("hotserve_registry_last_success_timestamp_seconds{{model=\"{name}\"}}");
        assert!(
            metric(&metrics, &series).await.unwrap_or(0.0) > 0.0,
            "{series}"
        );
    }
}

#[tokio::test]
async fn a_long_download_shows_its_progress() {
    let server = mlflow().await;
    let proxy = FaultProxy::start(server.addr).await;
    let name = "reload-progress";
    register_champion(name).await;
    // The weights (186 KB) at 40 KB/s: about five seconds of download.
    proxy.inject_always(".data", Fault::Throttle(40_000));
    let hotserve = registry_start(name, &proxy.url()).spawn();
    let during = health_until(
        &hotserve,
        Wait::new("a download in progress").within(LOADING),
        |h| {
            h["download"]["bytes"]
                .as_u64()
                .is_some_and(|bytes| bytes > 0)
        },
    )
    .await;
    let download = &during["download"];
    assert!(
        download["total_bytes"].as_u64().unwrap() > 250_000
            && download["total_files"].as_u64().unwrap() >= 5,
        "{during}"
    );
    assert!(
        during["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("downloading {name} v1: ")),
        "{during}"
    );
    let counted = metric_reaches(
        &hotserve.url("/metrics"),
        &format!("hotserve_download_bytes_total{{model=\"{name}\"}}"),
        1.0,
    )
    .await;
    assert!(counted > 0.0);
    hotserve.wait_ready().await;
    let after = health(&hotserve).await;
    assert_eq!(after["download"], Value::Null, "{after}");
    let total: u64 = after["model"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["size"].as_u64().unwrap())
        .sum();
    let counted = metric(
        &hotserve.url("/metrics"),
        &format!("hotserve_download_bytes_total{{model=\"{name}\"}}"),
    )
    .await;
    assert_eq!(counted, Some(total as f64), "every byte counted once");
    assert!(
        hotserve
            .logs()
            .contains(&format!("downloading {name} v1: ")),
        "a log line while it downloads: {}",
        hotserve.logs()
    );
}
