//! The search for registered models (`hotserve::registry::search_registered_models`) against a
//! real MLflow server: 25 registered models, some tagged `serve`, some with aliases, some with
//! names that need escaping; a filter finds exactly the matching ones across several pages, with
//! their aliases and tags, and each is served under a name of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hotserve::registry::{
    is_model_name, search_registered_models, search_registered_models_paged, served_name,
    MlflowClient, MlflowSettings, RegisteredModel,
};
use serde_json::{json, Value};

use crate::support::{mlflow, register, FaultProxy};

/// The registered name of model `index` under `prefix`: most plain, two that need escaping.
fn name(prefix: &str, index: usize) -> String {
    match index {
        13 => format!("{prefix}-13 Fraud détecteur"),
        20 => format!("{prefix}-20.v2"),
        _ => format!("{prefix}-{index:02}"),
    }
}

#[tokio::test]
async fn a_filter_finds_exactly_the_matching_models_across_pages() {
    let server = mlflow().await;
    // Names of this test's own (the server is shared): a prefix no other test uses.
    let prefix = format!("search-{}", std::process::id());
    // One uploaded model; every version below points at its files.
    let source = register(
        server,
        json!({"op": "register", "dir": "tests/fixtures/sentiment", "name": format!("source-{prefix}")}),
    );
    // Every third model is tagged serve=true (9 of 25), the next serve=false, the next not at
    // all; models 0, 3, 6, 9 and 12 of the served ones have a version with `champion` on it,
    // and 6 also `challenger`; the rest have no version.
    let commands: Vec<Value> = (0..25)
        .map(|index| {
            let tags = match index % 3 {
                0 => json!({"serve": "true", "index": index.to_string()}),
                1 => json!({"serve": "false"}),
                _ => json!({}),
            };
            let mut command =
                json!({"op": "register-name", "name": name(&prefix, index), "tags": tags});
            if index % 3 == 0 && index <= 12 {
                command["source"] = source["artifact_uri"].clone();
                command["run_id"] = source["run_id"].clone();
                command["model_id"] = source["model_id"].clone();
                command["aliases"] = if index == 6 {
                    json!(["champion", "challenger"])
                } else {
                    json!(["champion"])
                };
            }
            command
        })
        .collect();
    register(server, Value::Array(commands));

    // Through a proxy that counts the requests: one per page.
    let proxy = FaultProxy::start(server.addr).await;
    let searches = || proxy.count("registered-models/search");
    let client = MlflowClient::new(MlflowSettings {
        tracking_uri: Some(proxy.url()),
        request_timeout: Duration::from_secs(20),
        ..MlflowSettings::default()
    })
    .unwrap();
    let served_filter = format!("name LIKE '{prefix}-%' AND tags.serve = 'true'");
    let expected: BTreeSet<String> = (0..25)
        .filter(|index| index % 3 == 0)
        .map(|index| name(&prefix, index))
        .collect();
    // Pages of 2: five pages for nine models; pages of 1000: one.
    for (page_size, pages) in [(2, 5), (1000, 1)] {
        let before = searches();
        let found = search_registered_models_paged(&client, &served_filter, page_size)
            .await
            .unwrap();
        assert_eq!(searches() - before, pages, "pages of {page_size}");
        let names: Vec<String> = found.iter().map(|model| model.name.clone()).collect();
        assert_eq!(
            names.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "pages of {page_size}"
        );
        assert_eq!(names.len(), expected.len(), "each once: {names:?}");
        for model in &found {
            assert_eq!(model.tags.get("serve").map(String::as_str), Some("true"));
            let index: usize = model.tags["index"].parse().unwrap();
            let aliases: Vec<(&str, &str)> = model
                .aliases
                .iter()
                .map(|(alias, version)| (alias.as_str(), version.as_str()))
                .collect();
            let want: &[(&str, &str)] = match index {
                6 => &[("challenger", "1"), ("champion", "1")],
                0 | 3 | 9 | 12 => &[("champion", "1")],
                _ => &[],
            };
            assert_eq!(aliases, want, "{}", model.name);
        }
    }

    // Every model of the prefix, in pages of 7 (four pages); the default page size finds the
    // same.
    let every = format!("name LIKE '{prefix}-%'");
    let before = searches();
    let all = search_registered_models_paged(&client, &every, 7)
        .await
        .unwrap();
    assert_eq!(searches() - before, 4);
    assert_eq!(all.len(), 25);
    assert_eq!(
        all,
        search_registered_models(&client, &every).await.unwrap()
    );
    let by_name: BTreeMap<&str, &RegisteredModel> = all
        .iter()
        .map(|model| (model.name.as_str(), model))
        .collect();
    assert!(by_name[name(&prefix, 1).as_str()].tags["serve"] == "false");
    assert!(by_name[name(&prefix, 2).as_str()].tags.is_empty());
    assert_eq!(
        by_name[name(&prefix, 6).as_str()].alias("champion"),
        Some("1")
    );

    // Each is served under a model name of its own; the plain ones under their own name.
    let served: BTreeSet<String> = all.iter().map(|model| served_name(&model.name)).collect();
    assert_eq!(served.len(), 25);
    assert!(served.iter().all(|name| is_model_name(name)), "{served:?}");
    assert!(served.contains(&name(&prefix, 1)));
    assert!(served.contains(&format!("{prefix}-1320.Fraud20.dC3.A9.tecteur")));
    assert!(served.contains(&format!("{prefix}-202E.v2")));

    // A filter MLflow cannot read: its answer, naming the filter.
    let bad = "tags.serve ~ 'true'";
    let err = search_registered_models(&client, bad).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("registered models matching \"{bad}\": "))
            && message.contains("HTTP 400"),
        "{message}"
    );
    assert!(!err.is_transient());
}
