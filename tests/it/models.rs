//! Several models in one daemon, in-process against the two fixtures, told apart by the case
//! of their labels (`sentiment`: `POSITIVE`, `sentiment_v2`: `positive`): every route and
//! per-model route answers with the right model, an unknown name is a 404, `/health` has an
//! entry per model, readiness waits for every model while a broken one does not stop the
//! other, a reload of one model leaves the other untouched, and a cache bounded by
//! `cache_max_bytes` loses the versions no model serves any more, least recently used first.

use std::path::Path;

use hotserve::reload::webhook::sign;
use hotserve::reload::Trigger;
use serde_json::{json, Value};

use crate::support::inprocess::{Server, Start};
use crate::support::{copy_dir, eventually, fixture, get_json, metric};

const TOKEN: &str = "t0ken";
const SECRET: &str = "wh-secret";

/// A server for `models` (`NAME=DIR`, ...), watching with a short debounce.
fn several(models: &[(&str, &Path)]) -> Start {
    let list: Vec<String> = models
        .iter()
        .map(|(name, dir)| format!("{name}={}", dir.display()))
        .collect();
    Start::default()
        .set("models", &list.join(","))
        .set("watch_debounce", "200ms")
        .set("admin_token", TOKEN)
        .set("webhook_secret", SECRET)
}

/// `POST path` with a JSON body; the status and the JSON answer.
async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The label `path` (a `/predict` form) gives "I love this".
async fn label(server: &Server, path: &str) -> String {
    let (status, body) = post(server, path, json!({"text": "I love this"})).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["label"].as_str().expect("a label").to_string()
}

#[tokio::test]
async fn each_route_answers_with_its_model() {
    let (v1, v2) = (fixture("sentiment"), fixture("sentiment_v2"));
    let server = several(&[("upper", &v1), ("lower", &v2)]).ready().await;

    // The un-prefixed routes serve the first model.
    assert_eq!(label(&server, "/predict").await, "POSITIVE");
    assert_eq!(label(&server, "/models/upper/predict").await, "POSITIVE");
    assert_eq!(label(&server, "/models/lower/predict").await, "positive");
    let (status, batch) = post(
        &server,
        "/models/lower/predict/batch",
        json!({"texts": ["I love this", "I hate this"]}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["predictions"][0]["label"], "positive");
    assert_eq!(batch["predictions"][1]["label"], "negative");
    let invocation = json!({"dataframe_split": {"columns": ["text"], "data": [["I love this"]]}});
    let (status, body) = post(&server, "/models/lower/invocations", invocation.clone()).await;
    assert_eq!(
        (status, &body["predictions"][0]["label"]),
        (200, &json!("positive")),
        "{body}"
    );
    let (status, body) = post(&server, "/invocations", invocation).await;
    assert_eq!(
        (status, &body["predictions"][0]["label"]),
        (200, &json!("POSITIVE")),
        "{body}"
    );

    let (status, metadata) = get_json(&server, "/models/lower").await;
    assert_eq!(
        (status, &metadata["labels"]),
        (200, &json!(["negative", "positive"]))
    );
    let (_, metadata) = get_json(&server, "/v1/model").await;
    assert_eq!(metadata["labels"], json!(["NEGATIVE", "POSITIVE"]));
    assert_eq!(get_json(&server, "/models/lower/ready").await.0, 200);
    assert_eq!(
        reqwest::get(server.url("/ping")).await.unwrap().status(),
        200
    );

    // An unknown name is a 404 that lists the configured names.
    for path in ["/models/nope/predict", "/models/nope", "/models/nope/ready"] {
        let (status, body) = if path.ends_with("predict") {
            post(&server, path, json!({"text": "x"})).await
        } else {
            get_json(&server, path).await
        };
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error_code"], "RESOURCE_DOES_NOT_EXIST", "{path}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .ends_with("configured models: upper, lower"),
            "{body}"
        );
    }
    assert_eq!(get_json(&server, "/models/upper/nope").await.0, 404);

    // /health: the default model at the top level, every model under `models`.
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["default_model"], "upper");
    assert_eq!(
        health["model"]["name"], "upper",
        "a local model is named as configured"
    );
    for name in ["upper", "lower"] {
        let entry = &health["models"][name];
        assert_eq!(entry["status"], "ok", "{health}");
        assert_eq!(entry["model"]["name"], name, "{health}");
        assert_eq!(entry["last_check"]["result"], "loaded", "{health}");
    }

    // A reload of one model by name; an unknown name is refused.
    let (status, body) = post(&server, "/admin/reload?model=lower&wait=true", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["models"].as_object().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["models"]["lower"]["last_check"]["result"], "unchanged",
        "{body}"
    );
    let (status, body) = post(&server, "/admin/reload?model=nope", json!({})).await;
    assert_eq!(
        (status, &body["error_code"]),
        (404, &json!("RESOURCE_DOES_NOT_EXIST"))
    );
    let (status, body) = post(&server, "/admin/reload?wait=true", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["models"].as_object().unwrap().len(), 2, "{body}");

    // A registry event reaches the models it concerns: local models take every event.
    let body = br#"{"entity": "model_version_alias", "action": "created", "data": {"name": "fraud", "alias": "champion", "version": "2"}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let delivered: Value = reqwest::Client::new()
        .post(server.url("/hooks/mlflow"))
        .header("x-mlflow-delivery-id", "d1")
        .header("x-mlflow-timestamp", &now)
        .header("x-mlflow-signature", sign(SECRET, "d1", &now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(delivered["status"], "check requested", "{delivered}");
    assert_eq!(
        delivered["models"],
        json!(["upper", "lower"]),
        "{delivered}"
    );

    // Per-model series carry the configured name.
    let metrics = server.url("/metrics");
    for series in [
        "hotserve_batch_size_count{model=\"lower\"}",
        "hotserve_batch_size_count{model=\"upper\"}",
        "hotserve_requests_total{model=\"lower\",route=\"/models/{name}/predict\",status=\"200\"}",
        "hotserve_requests_total{model=\"upper\",route=\"/predict\",status=\"200\"}",
        "hotserve_reloads_total{model=\"lower\",result=\"loaded\"}",
    ] {
        assert!(
            metric(&metrics, series).await.unwrap_or(0.0) >= 1.0,
            "{series}"
        );
    }
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn default_model_picks_what_the_plain_routes_serve() {
    let (v1, v2) = (fixture("sentiment"), fixture("sentiment_v2"));
    let server = several(&[("upper", &v1), ("lower", &v2)])
        .set("default_model", "lower")
        .ready()
        .await;
    assert_eq!(label(&server, "/predict").await, "positive");
    assert_eq!(label(&server, "/models/upper/predict").await, "POSITIVE");
    let (_, health) = get_json(&server, "/health").await;
    assert_eq!(health["default_model"], "lower");
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_broken_model_fails_readiness_and_leaves_the_other_serving() {
    let area = tempfile::tempdir().unwrap();
    let broken = area.path().join("broken");
    copy_dir(&fixture("sentiment"), &broken);
    std::fs::write(broken.join("model.onnx"), b"not an onnx graph").unwrap();
    let good = fixture("sentiment_v2");
    let server = several(&[("good", &good), ("broken", &broken)]).start();

    eventually("the good model is ready", async || {
        (get_json(&server, "/models/good/ready").await.0 == 200).then_some(())
    })
    .await;
    let (_, health) = eventually("the broken model's first check", async || {
        let (status, health) = get_json(&server, "/health").await;
        health["models"]["broken"]["last_check"]
            .is_object()
            .then_some((status, health))
    })
    .await;
    assert_eq!(
        health["models"]["broken"]["model_loaded"], false,
        "{health}"
    );
    assert_eq!(health["models"]["good"]["model_loaded"], true, "{health}");
    // The error names the user's directory, not the copy the gate read in the cache.
    let error = health["models"]["broken"]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "{}: ONNX Runtime cannot load the graph",
            broken.join("model.onnx").display()
        )),
        "{error}"
    );

    let (status, ready) = get_json(&server, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["not_ready"], json!(["broken"]), "{ready}");
    assert!(
        ready["reason"].as_str().unwrap().starts_with("broken: "),
        "{ready}"
    );
    assert_eq!(get_json(&server, "/models/broken/ready").await.0, 503);
    // A pod may be made ready on a subset of its models.
    assert_eq!(get_json(&server, "/health/ready?models=good").await.0, 200);
    let (status, ready) = get_json(&server, "/health/ready?models=good,broken").await;
    assert_eq!((status, &ready["not_ready"]), (503, &json!(["broken"])));
    let (status, body) = get_json(&server, "/health/ready?models=good,nope").await;
    assert_eq!(
        (status, &body["error_code"]),
        (404, &json!("RESOURCE_DOES_NOT_EXIST"))
    );
    let (status, body) = post(&server, "/models/broken/predict", json!({"text": "x"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(label(&server, "/models/good/predict").await, "positive");
    assert_eq!(
        label(&server, "/predict").await,
        "positive",
        "good is the default"
    );

    // Fixed on disk, the broken model is picked up by its watcher; then all are ready.
    std::fs::copy(
        fixture("sentiment").join("model.onnx"),
        broken.join("model.onnx"),
    )
    .unwrap();
    server.wait_ready().await;
    assert_eq!(label(&server, "/models/broken/predict").await, "POSITIVE");
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_reload_of_one_model_leaves_the_other_untouched() {
    let area = tempfile::tempdir().unwrap();
    let (a, b) = (area.path().join("a"), area.path().join("b"));
    copy_dir(&fixture("sentiment"), &a);
    copy_dir(&fixture("sentiment"), &b);
    let cache = area.path().join("cache");
    let server = several(&[("a", &a), ("b", &b)]).cache(&cache).ready().await;
    for name in ["a", "b"] {
        let folders = std::fs::read_dir(&cache)
            .unwrap()
            .filter(|entry| {
                let entry = entry.as_ref().unwrap();
                entry.path().is_dir()
                    && entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{name}-"))
            })
            .count();
        assert_eq!(
            folders, 1,
            "each model caches in <cache_dir>/{name}-<hash>/"
        );
    }
    let (_, before) = get_json(&server, "/health").await;
    assert_eq!(label(&server, "/models/b/predict").await, "POSITIVE");

    // Rewrite b's watched directory with the other model.
    copy_dir(&fixture("sentiment_v2"), &b);
    std::fs::remove_file(b.join("a2e8dea9-a849-5602-bd71-725ba3283f0b.data")).unwrap();
    eventually("b serves the new model", async || {
        let (_, body) = post(&server, "/models/b/predict", json!({"text": "I love this"})).await;
        (body["label"] == "positive").then_some(())
    })
    .await;

    let (_, after) = get_json(&server, "/health").await;
    assert_ne!(
        before["models"]["b"]["model"]["version"], after["models"]["b"]["model"]["version"],
        "{after}"
    );
    assert_eq!(
        before["models"]["a"]["model"], after["models"]["a"]["model"],
        "a untouched"
    );
    assert_eq!(
        before["models"]["a"]["last_reload"], after["models"]["a"]["last_reload"],
        "a was not reloaded"
    );
    assert_eq!(label(&server, "/models/a/predict").await, "POSITIVE");
    // A daemon-level trigger (SIGHUP) reaches every model.
    server.triggers.request(Trigger::Signal);
    eventually("a check of each model by the signal", async || {
        let (_, health) = get_json(&server, "/health").await;
        ["a", "b"]
            .iter()
            .all(|name| health["models"][name]["last_check"]["trigger"] == "signal")
            .then_some(())
    })
    .await;

    let metrics = server.url("/metrics");
    let loaded =
        |name: &str| format!("hotserve_reloads_total{{model=\"{name}\",result=\"loaded\"}}");
    assert_eq!(metric(&metrics, &loaded("a")).await, Some(1.0));
    assert_eq!(metric(&metrics, &loaded("b")).await, Some(2.0));
    server.stop().await.expect("a clean stop");
}

/// One queue serves every model, and a burst on one neither shuts another out nor makes it wait
/// behind all of it: with one worker taking one text per batch (each held 100 ms by a debug
/// failpoint, so this runs the binary) and a queue the flood fills, a request to the quiet
/// model is admitted and answered after at most a couple of the flood's batches, not after the
/// whole backlog queued before it.
#[tokio::test]
async fn a_burst_on_one_model_does_not_starve_another() {
    use crate::support::hotserve::Start as Process;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (v1, v2) = (fixture("sentiment"), fixture("sentiment_v2"));
    let server = Process::default()
        .arg("--model")
        .arg(&format!("flood={}", v1.display()))
        .arg("--model")
        .arg(&format!("quiet={}", v2.display()))
        .set("inference_workers", "1")
        .set("max_batch_size", "1")
        .set("queue_capacity", "12")
        .env("HOTSERVE_TEST_INFERENCE_DELAY_MS", "100")
        .spawn();
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let answered = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let request = client
                .post(server.url("/models/flood/predict"))
                .json(&json!({"text": "I love this"}))
                .send();
            let answered = answered.clone();
            tokio::spawn(async move {
                let status = request.await.map(|r| r.status().as_u16());
                // Only computed answers count; a refusal (429) says nothing about waiting.
                if matches!(status, Ok(200)) {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                status
            })
        })
        .collect();
    let backlog =
        crate::support::metric_reaches(&server.url("/metrics"), "hotserve_queue_depth", 10.0).await;
    let before = answered.load(Ordering::SeqCst);
    let quiet = client
        .post(server.url("/models/quiet/predict"))
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .unwrap();
    let after = answered.load(Ordering::SeqCst);
    assert_eq!(quiet.status(), 200);
    let body: Value = quiet.json().await.unwrap();
    assert_eq!(body["label"], "positive");
    assert!(
        after - before <= 3,
        "the quiet model waited for {} of the flood's requests (backlog {backlog})",
        after - before
    );
    let mut statuses = Vec::new();
    for request in flood {
        statuses.push(request.await.unwrap().expect("an answer"));
    }
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "the flood filled the queue: {statuses:?}"
    );
}

/// The versions cached for the model configured as `name` under `cache`: those with a
/// manifest in its folder, sorted.
fn cached_versions(cache: &Path, name: &str) -> Vec<String> {
    let folder = std::fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let folder = path.file_name().unwrap().to_string_lossy();
            path.is_dir() && folder.starts_with(&format!("{name}-"))
        })
        .expect("the model's cache folder");
    let mut versions: Vec<String> = std::fs::read_dir(folder.join("versions"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            manifest["version"].as_str().unwrap().to_string()
        })
        .collect();
    versions.sort();
    versions
}

#[tokio::test]
async fn a_bounded_cache_removes_the_least_recently_used_versions_and_keeps_the_live_ones() {
    let area = tempfile::tempdir().unwrap();
    let (repository, b) = (area.path().join("a"), area.path().join("b"));
    // Model a is a repository of numbered versions, each the fixture with a note of its own
    // (so each has a cached copy of its own), published by a rename; b is one directory.
    let publish = |number: u32| {
        let staging = area.path().join(format!("staging-{number}"));
        copy_dir(&fixture("sentiment"), &staging);
        std::fs::write(staging.join("NOTE"), format!("version {number}")).unwrap();
        std::fs::rename(&staging, repository.join(number.to_string())).unwrap();
    };
    std::fs::create_dir_all(&repository).unwrap();
    publish(1);
    copy_dir(&fixture("sentiment_v2"), &b);
    // What one version takes in the cache: its files and the optimized graph kept beside them,
    // from a daemon of its own.
    let one_model: u64 = {
        let scratch = area.path().join("scratch-cache");
        let sizing = several(&[("b", &b)]).cache(&scratch).ready().await;
        sizing.stop().await.expect("a clean stop");
        crate::support::list_dir(&scratch)
            .iter()
            .filter(|(path, _)| path.contains("/versions/") && !path.ends_with(".json"))
            .map(|(_, size)| size)
            .sum()
    };
    // Room for two models and a half: a's live version and b's, not a third.
    let bound = 2 * one_model + one_model / 2;
    let cache = area.path().join("cache");
    let server = several(&[("a", &repository), ("b", &b)])
        .cache(&cache)
        .set("cache_max_bytes", &bound.to_string())
        .ready()
        .await;
    let metrics = server.url("/metrics");
    assert_eq!(
        metric(&metrics, "hotserve_cache_max_bytes").await,
        Some(bound as f64)
    );
    assert_eq!(cached_versions(&cache, "a"), ["1"]);

    for (number, evicted) in [(2, 1.0), (3, 2.0)] {
        publish(number);
        eventually(format!("a serves version {number}"), async || {
            let (_, health) = get_json(&server, "/health").await;
            let serving = &health["models"]["a"]["model"]["version"];
            (*serving == json!(number.to_string()))
                .then_some(())
                .ok_or(serving.to_string())
        })
        .await;
        let series = "hotserve_cache_evictions_total";
        assert_eq!(
            crate::support::metric_reaches(&metrics, series, evicted).await,
            evicted
        );
        // The version a served until now went; the live ones of a and b stayed.
        assert_eq!(cached_versions(&cache, "a"), [number.to_string()]);
        assert_eq!(cached_versions(&cache, "b").len(), 1);
        let bytes = metric(&metrics, "hotserve_cache_bytes").await.unwrap();
        assert!(
            bytes <= bound as f64 && bytes > one_model as f64,
            "{bytes} of {bound}"
        );
    }
    assert_eq!(label(&server, "/models/a/predict").await, "POSITIVE");
    assert_eq!(label(&server, "/models/b/predict").await, "positive");
    server.stop().await.expect("a clean stop");

    // Restarted with room for less than what the two models serve: nothing of it goes.
    let server = several(&[("a", &repository), ("b", &b)])
        .cache(&cache)
        .set("cache_max_bytes", &(one_model / 2).to_string())
        .ready()
        .await;
    let metrics = server.url("/metrics");
    assert_eq!(
        metric(&metrics, "hotserve_cache_evictions_total").await,
        Some(0.0)
    );
    assert_eq!(cached_versions(&cache, "a"), ["3"]);
    assert_eq!(cached_versions(&cache, "b").len(), 1);
    assert_eq!(label(&server, "/models/a/predict").await, "POSITIVE");
    server.stop().await.expect("a clean stop");
}
