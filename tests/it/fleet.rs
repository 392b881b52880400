//! Many models in one daemon (issue 24), on the real binary (a model's memory is measured on
//! the process's allocator, which other servers in the test process would disturb) serving
//! copies of the bundled fixture: a
//! `load: lazy` model is validated at start and loaded by its first request (one load for
//! many concurrent first requests); under a `memory_budget` that holds a quarter of the
//! models, a client going round all of them gets no failed request while the least recently
//! used idle models are unloaded and the pinned one never is; the model repository API loads
//! and unloads behind the admin token; a model larger than the budget is refused with the
//! reason.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::hotserve::{Hotserve, Start};
use crate::support::probe::Served;
use crate::support::{eventually, fixture, get_json, metric};

const TOKEN: &str = "t0ken";

/// A hotserve for `models` from a YAML configuration file (`- {name, uri, ...extra}` each).
fn fleet(dir: &Path, models: &[(&str, &str)]) -> Start {
    let sentiment = fixture("sentiment");
    let mut yaml = String::from("models:\n");
    for (name, extra) in models {
        yaml += &format!(
            "  - {{name: {name}, uri: \"{}\"{extra}}}\n",
            sentiment.display()
        );
    }
    let file = dir.join("hotserve.yaml");
    std::fs::write(&file, yaml).expect("write the configuration");
    Start::default()
        .arg("--config")
        .arg(file.to_str().unwrap())
        .set("admin_token", TOKEN)
        .set("watch", "false")
}

/// Starts it and waits until it is ready.
async fn ready(start: Start) -> Hotserve {
    let server = start.spawn();
    server.wait_ready().await;
    server
}

/// `POST path` with `body` (and the admin token); the status and the JSON answer.
async fn post(server: &impl Served, path: &str, body: Value) -> (u16, Value) {
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

async fn predict(server: &impl Served, model: &str) -> (u16, Value) {
    post(
        server,
        &format!("/models/{model}/predict"),
        json!({"text": "I love this"}),
    )
    .await
}

async fn counter(server: &impl Served, series: &str) -> f64 {
    metric(&server.url("/metrics"), series).await.unwrap_or(0.0)
}

/// The repository index entry of `model`.
async fn index_entry(server: &impl Served, model: &str) -> Value {
    let (status, index) = post(server, "/v2/repository/index", json!({})).await;
    assert_eq!(status, 200, "{index}");
    index
        .as_array()
        .expect("an array")
        .iter()
        .find(|entry| entry["name"] == model)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_lazy_model_loads_on_its_first_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready(fleet(
        dir.path(),
        &[("eager", ""), ("lazy", ", load: lazy")],
    ))
    .await;

    // Validated at start, set aside: ready, not loaded.
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{health}");
    let lazy = &health["models"]["lazy"];
    assert_eq!(lazy["residency"], "parked", "{lazy}");
    assert_eq!(lazy["model_loaded"], false, "{lazy}");
    assert_eq!(lazy["memory_bytes"], 0, "{lazy}");
    assert_eq!(health["models"]["eager"]["residency"], "loaded");
    assert!(health["models"]["eager"]["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(get_json(&server, "/health/ready").await.0, 200);
    let entry = index_entry(&server, "lazy").await;
    assert_eq!(entry["state"], "READY", "{entry}");
    assert!(
        entry["reason"].as_str().unwrap().contains("first request"),
        "{entry}"
    );
    assert_eq!(
        counter(
            &server,
            "hotserve_model_unloads_total{model=\"lazy\",reason=\"lazy\"}"
        )
        .await,
        1.0
    );

    // Eight first requests at once: one load, every request answered.
    let answers = futures_util::future::join_all((0..8).map(|_| predict(&server, "lazy"))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["label"], "POSITIVE", "{body}");
    }
    assert_eq!(
        counter(
            &server,
            "hotserve_model_loads_total{model=\"lazy\",reason=\"request\"}"
        )
        .await,
        1.0
    );
    let (_, health) = get_json(&server, "/health").await;
    assert_eq!(health["models"]["lazy"]["residency"], "loaded");
    let cold = "hotserve_cold_start_duration_seconds_count{model=\"lazy\",phase=\"load\"}";
    assert_eq!(counter(&server, cold).await, 1.0);
    let first_batch =
        "hotserve_cold_start_duration_seconds_count{model=\"lazy\",phase=\"inference\"}";
    assert_eq!(counter(&server, first_batch).await, 1.0);
}

/// The measured memory of one copy of the fixture, from a daemon without a budget, and that
/// daemon's resident memory without it (its baseline).
async fn fixture_cost() -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = ready(fleet(dir.path(), &[("one", "")])).await;
    let (_, health) = get_json(&server, "/health").await;
    let bytes = health["models"]["one"]["memory_bytes"].as_u64().unwrap();
    assert!(bytes > 0, "{health}");
    (bytes, server.rss().saturating_sub(bytes))
}

#[tokio::test]
async fn a_budget_for_a_quarter_of_the_models_unloads_idle_ones_and_fails_no_request() {
    let (cost, baseline) = fixture_cost().await;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let mut models: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
    models[0].1 = ", pin: true";
    // Room for two models and a half, about a quarter of the eight (a first load in a fresh
    // process measures a little more than later ones, so three may fit).
    let budget = cost * 5 / 2;
    let server = ready(fleet(dir.path(), &models).set("memory_budget", &budget.to_string())).await;

    // Round-robin over every model, four clients at a time, three rounds.
    for _ in 0..3 {
        for chunk in names.chunks(4) {
            let answers =
                futures_util::future::join_all(chunk.iter().map(|name| predict(&server, name)))
                    .await;
            for ((status, body), name) in answers.iter().zip(chunk) {
                assert_eq!(*status, 200, "{name}: {body}");
            }
        }
    }
    let mut evictions = 0.0;
    for name in &names {
        evictions += counter(
            &server,
            &format!("hotserve_model_unloads_total{{model=\"{name}\",reason=\"evicted\"}}"),
        )
        .await;
    }
    assert!(evictions >= 8.0, "{evictions} evictions");
    // The pinned model was never unloaded, and stays loaded.
    assert_eq!(
        counter(
            &server,
            "hotserve_model_unloads_total{model=\"m0\",reason=\"evicted\"}"
        )
        .await,
        0.0
    );
    let (_, health) = get_json(&server, "/health").await;
    assert_eq!(health["models"]["m0"]["residency"], "loaded", "{health}");
    assert_eq!(health["models"]["m0"]["pinned"], true);
    // What is loaded fits the budget.
    let used = health["memory_budget"]["used_bytes"].as_u64().unwrap();
    assert_eq!(health["memory_budget"]["limit_bytes"], budget);
    assert!(used <= budget, "{used} > {budget}");
    let loaded = names
        .iter()
        .filter(|n| health["models"][n.as_str()]["residency"] == "loaded")
        .count();
    assert!((1..=3).contains(&loaded), "{loaded} loaded: {health}");
    // The process holds the budget and its baseline, not the eight models.
    let resident = server.rss();
    assert!(
        resident <= (baseline + budget) * 11 / 10,
        "RSS {resident} > 1.1 x (baseline {baseline} + budget {budget})"
    );
}

#[tokio::test]
async fn the_repository_api_unloads_and_loads_behind_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready(fleet(dir.path(), &[("a", ""), ("pinned", ", pin: true")])).await;

    // The admin token is needed.
    let refused = reqwest::Client::new()
        .post(server.url("/v2/repository/models/a/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (status, body) = post(&server, "/v2/repository/models/a/unload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let entry = index_entry(&server, "a").await;
    assert_eq!(entry["state"], "UNAVAILABLE", "{entry}");
    assert!(
        entry["reason"].as_str().unwrap().contains("unload"),
        "{entry}"
    );
    // Unloaded through the API: requests do not bring it back, `load` does.
    let (status, body) = predict(&server, "a").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(get_json(&server, "/models/a/ready").await.0, 503);
    let (status, body) = post(&server, "/v2/repository/models/a/load", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(index_entry(&server, "a").await["state"], "READY");
    assert_eq!(predict(&server, "a").await.0, 200);
    for (reason, count) in [("api", 1.0)] {
        let series = format!("hotserve_model_loads_total{{model=\"a\",reason=\"{reason}\"}}");
        assert_eq!(counter(&server, &series).await, count, "{series}");
    }

    // A pinned model is never unloaded; an unknown one is a 404 in the protocol's shape.
    let (status, body) = post(&server, "/v2/repository/models/pinned/unload", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("pinned"), "{body}");
    let (status, body) = post(&server, "/v2/repository/models/nope/load", json!({})).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_model_larger_than_the_whole_budget_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = fleet(dir.path(), &[("a", ""), ("b", "")])
        .set("memory_budget", "1KiB")
        .spawn();
    let health = eventually("the first check's failure", async || {
        let (_, health) = get_json(&server, "/health").await;
        match health["models"]["a"]["last_error"].as_str() {
            Some(_) => Ok(health),
            None => Err(health.to_string()),
        }
    })
    .await;
    let error = health["models"]["a"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("more than the whole memory_budget of 1024 bytes"),
        "{error}"
    );
    assert_eq!(get_json(&server, "/health/ready").await.0, 503);
}

#[tokio::test]
async fn a_new_version_swaps_within_a_budget_that_holds_one() {
    let (cost, _) = fixture_cost().await;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    crate::support::copy_dir(&fixture("sentiment"), &model);
    let config = dir.path().join("hotserve.yaml");
    std::fs::write(
        &config,
        format!("models:\n  - {{name: a, uri: \"{}\"}}\n", model.display()),
    )
    .unwrap();
    // Room for one version and a half: the old one leaves before the new one loads.
    let server = ready(
        Start::default()
            .arg("--config")
            .arg(config.to_str().unwrap())
            .set("memory_budget", &(cost * 3 / 2).to_string())
            .set("watch_debounce", "200ms"),
    )
    .await;
    let version = |health: &Value| health["models"]["a"]["model"]["version"].clone();
    let (_, before) = get_json(&server, "/health").await;
    std::fs::write(model.join("NOTE"), "a new version").unwrap();
    let after = eventually("the new version serves", async || {
        let (_, health) = get_json(&server, "/health").await;
        match version(&health) {
            v if v != version(&before) && !v.is_null() => Ok(health),
            _ => Err(health["models"]["a"]["message"].to_string()),
        }
    })
    .await;
    assert_eq!(predict(&server, "a").await.0, 200);
    let used = after["memory_budget"]["used_bytes"].as_u64().unwrap();
    assert!(used <= cost * 3 / 2, "{used} bytes held");
    assert_eq!(
        counter(
            &server,
            "hotserve_model_loads_total{model=\"a\",reason=\"reload\"}"
        )
        .await,
        1.0
    );
}
