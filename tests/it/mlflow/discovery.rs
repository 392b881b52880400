//! Discovery (`discover_filter`) against the real MLflow server: 22 registered models, 20 of
//! them tagged `serve`, every one with a `champion`: the 20 are served under their names (the
//! others answer 404); a model registered and tagged while hotserve runs is served without a
//! restart; a model whose alias is removed leaves while a client keeps asking it, without a
//! failed request (each answer is its prediction, or a 404 once it is gone).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::inprocess::{Server, Start};
use crate::support::{eventually, get_json, mlflow, register};

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
    let command = |index: usize, serve: &str| {
        json!({
            "op": "register-name",
            "name": format!("{prefix}-{index:02}"),
            "tags": {"serve": serve},
            "source": source["artifact_uri"],
            "run_id": source["run_id"],
            "model_id": source["model_id"],
            "aliases": ["champion"],
        })
    };
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
