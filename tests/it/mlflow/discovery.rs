//! Discovery (`discover_filter`) against the real MLflow server: 22 registered models, 20 of
//! them tagged `serve`, every one with a `champion`: the 20 are served under their names (the
//! others answer 404); a model registered and tagged while hotserve runs is served without a
//! restart; a model whose alias is removed leaves while a client keeps asking it, without a
//! failed request (each answer is its prediction, or a 404 once it is gone); and 20 discovered
//! lazy models under a budget for a quarter of them answer every request while the least
//! recently used ones are unloaded, the process RSS within the budget and its baseline.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::hotserve::{Hotserve, Start as HotserveStart};
use crate::support::inprocess::{Server, Start};
use crate::support::{eventually, get_json, mlflow, register};

/// The `register.py` command for registered model `index` under `prefix`, tagged `serve`, with
/// a version of `source`'s files that `champion` points to.
fn champion(prefix: &str, index: usize, serve: &str, source: &Value) -> Value {
    json!({
        "op": "register-name",
        "name": format!("{prefix}-{index:02}"),
        "tags": {"serve": serve},
        "source": source["artifact_uri"],
        "run_id": source["run_id"],
        "model_id": source["model_id"],
        "aliases": ["champion"],
    })
}

async fn predict(server: &Server, model: &str) -> u16 {
    reqwest::Client::new()
        .post(server.url(&format!("/models/{model}/predict")))
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .expect("the request is answered")
        .status()
        .as_u16()
}

/// The names the server serves now.
async fn served(server: &Server) -> Vec<String> {
    let (status, health) = get_json(server, "/health").await;
    assert_eq!(status, 200, "{health}");
    health["models"]
        .as_object()
        .map(|models| models.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn discovery_serves_the_matching_models_and_follows_the_registry() {
    let server = mlflow().await;
    let prefix = format!("disc-{}", std::process::id());
    let source = register(
        server,
        json!({"op": "register", "dir": "tests/fixtures/sentiment", "name": format!("source-{prefix}")}),
    );
    let command = |index: usize, serve: &str| champion(&prefix, index, serve, &source);
    let commands: Vec<Value> = (0..22)
        .map(|index| command(index, if index < 20 { "true" } else { "false" }))
        .collect();
    tokio::task::spawn_blocking(move || register(server, Value::Array(commands)))
        .await
        .unwrap();

    let hotserve = Start::default()
        .set(
            "discover_filter",
            &format!("name LIKE '{prefix}-%' AND tags.serve = 'true'"),
        )
        .set("poll_interval", "500ms")
        .set("inference_workers", "1")
        .env("MLFLOW_TRACKING_URI", &server.url)
        .ready()
        .await;
    let want: Vec<String> = (0..20).map(|i| format!("{prefix}-{i:02}")).collect();
    eventually("the 20 tagged models served", async || {
        let names = served(&hotserve).await;
        let loaded = futures_util::future::join_all(want.iter().map(|n| predict(&hotserve, n)))
            .await
            .iter()
            .filter(|status| **status == 200)
            .count();
        if names == want && loaded == 20 {
            Ok(())
        } else {
            Err(format!(
                "{} served, {loaded} answer: {names:?}",
                names.len()
            ))
        }
    })
    .await;
    // Not tagged serve=true: unknown, as any other name.
    assert_eq!(predict(&hotserve, &format!("{prefix}-20")).await, 404);
    let (status, index) = post_index(&hotserve).await;
    assert_eq!(status, 200);
    assert_eq!(index.as_array().unwrap().len(), 20, "{index}");

    // Registered and tagged while serving: served without a restart.
    let late = format!("{prefix}-22");
    let mut untagged = command(22, "later");
    untagged["tags"] = json!({});
    let tag = json!({"op": "set-model-tag", "name": late, "key": "serve", "value": "true"});
    let late_name = late.clone();
    tokio::task::spawn_blocking(move || {
        register(server, untagged);
        register(server, tag);
    })
    .await
    .unwrap();
    eventually(
        "the model tagged while serving answers",
        async || match predict(&hotserve, &late_name).await {
            200 => Ok(()),
            other => Err(other.to_string()),
        },
    )
    .await;

    // Its alias removed while a client keeps asking: every answer is a prediction until it is
    // gone, then a 404; never an error.
    let leaving = format!("{prefix}-05");
    let client = {
        let url = hotserve.url(&format!("/models/{leaving}/predict"));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            loop {
                let status = http
                    .post(&url)
                    .json(&json!({"text": "I love this"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
                if status == 404 {
                    return statuses;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delete = json!({"op": "delete-alias", "name": leaving, "alias": "champion"});
    tokio::task::spawn_blocking(move || register(server, delete))
        .await
        .unwrap();
    let statuses = tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .expect("the model leaves")
        .unwrap();
    let served_before = statuses.iter().filter(|s| **s == 200).count();
    assert!(served_before > 0, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "only predictions, then 404: {statuses:?}"
    );
    assert!(!served(&hotserve).await.contains(&leaving));
}

async fn post_index(server: &Server) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/v2/repository/index"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn discovered_models_share_a_budget_for_a_quarter_of_them_without_a_failed_request() {
    let server = mlflow().await;
    let prefix = format!("fleet-{}", std::process::id());
    let source = register(
        server,
        json!({"op": "register", "dir": "tests/fixtures/sentiment", "name": format!("source-{prefix}")}),
    );
    let commands: Vec<Value> = (0..20)
        .map(|index| champion(&prefix, index, "true", &source))
        .collect();
    tokio::task::spawn_blocking(move || register(server, Value::Array(commands)))
        .await
        .unwrap();
    let discover = |budget: Option<u64>| {
        let mut start = HotserveStart::default()
            .set(
                "discover_filter",
                &format!("name LIKE '{prefix}-%' AND tags.serve = 'true'"),
            )
            .set("load", "lazy")
            .set("inference_workers", "1")
            .env("MLFLOW_TRACKING_URI", &server.url);
        if let Some(budget) = budget {
            start = start.set("memory_budget", &budget.to_string());
        }
        start.spawn()
    };
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}-{i:02}")).collect();
    let round = async |hotserve: &Hotserve| {
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for name in &names {
            let status = http
                .post(hotserve.url(&format!("/models/{name}/predict")))
                .json(&json!({"text": "I love this"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            statuses.push(status);
        }
        statuses
    };
    let discovered = async |hotserve: &Hotserve| {
        eventually("the 20 models discovered", async || {
            let (_, health) = get_json(hotserve, "/health").await;
            let parked = health["models"]
                .as_object()
                .map(|m| m.values().filter(|m| m["residency"] == "parked").count())
                .unwrap_or(0);
            (parked == 20)
                .then_some(())
                .ok_or(format!("{parked} parked"))
        })
        .await;
    };

    // Without a budget: one model's measured memory, and the daemon's baseline.
    let unbounded = discover(None);
    unbounded.wait_ready().await;
    discovered(&unbounded).await;
    let baseline = unbounded.rss();
    assert!(round(&unbounded).await.iter().all(|s| *s == 200));
    let (_, health) = get_json(&unbounded, "/health").await;
    let cost = health["models"][names[0].as_str()]["memory_bytes"]
        .as_u64()
        .unwrap();
    drop(unbounded);

    // A budget for a quarter of them: three rounds over all twenty, no failure, evictions.
    let budget = cost * 5;
    let hotserve = discover(Some(budget));
    hotserve.wait_ready().await;
    discovered(&hotserve).await;
    for _ in 0..3 {
        let statuses = round(&hotserve).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let evicted = metric_sum(&hotserve, "hotserve_model_unloads_total", "evicted").await;
    assert!(evicted >= 40.0, "{evicted} evictions");
    let (_, health) = get_json(&hotserve, "/health").await;
    let used = health["memory_budget"]["used_bytes"].as_u64().unwrap();
    assert!(used <= budget, "{used} > {budget}");
    let resident = hotserve.rss();
    assert!(
        resident <= (baseline + budget) * 11 / 10,
        "RSS {resident} > 1.1 x (baseline {baseline} + budget {budget})"
    );
}

/// The sum of the series of `name` whose labels contain `label`.
async fn metric_sum(hotserve: &Hotserve, name: &str, label: &str) -> f64 {
    let text = reqwest::get(hotserve.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
