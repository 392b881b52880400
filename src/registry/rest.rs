//! MLflow's REST endpoints that hotserve calls, and the parts of their JSON it reads.
//!
//! MLflow serialises protobuf `int64` fields as JSON strings (`"version": "3"`), but other
//! servers and older versions send numbers; every numeric field here accepts both.

use reqwest::Url;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::client::{Api, CallError, MlflowClient};

/// A registered model version (`ModelVersion` in `model_registry.proto`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct ModelVersion {
    pub name: String,
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
    pub current_stage: Option<String>,
    pub source: Option<String>,
    pub run_id: Option<String>,
    pub status: Option<String>,
    pub status_message: Option<String>,
    pub aliases: Vec<String>,
    pub model_id: Option<String>,
}

impl ModelVersion {
    /// The version as a number, for picking the newest (non-numeric versions sort first).
    pub fn number(&self) -> u64 {
        self.version.parse().unwrap_or(0)
    }
}

/// A registered model (`RegisteredModel`): what error messages and the search need.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct RegisteredModel {
    pub name: String,
    pub aliases: Vec<RegisteredModelAlias>,
    pub tags: Vec<RegisteredModelTag>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct RegisteredModelTag {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct RegisteredModelAlias {
    pub alias: String,
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
}

/// An MLflow 3 logged model's `info`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct LoggedModel {
    pub model_id: String,
    #[serde(deserialize_with = "string_or_number")]
    pub experiment_id: String,
    pub name: String,
    pub artifact_uri: String,
    pub status: Option<String>,
    pub source_run_id: Option<String>,
}

/// A run's `info`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct RunInfo {
    pub run_id: String,
    #[serde(deserialize_with = "string_or_number")]
    pub experiment_id: String,
    pub artifact_uri: String,
    pub lifecycle_stage: Option<String>,
}

/// One entry of an artifact listing.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct ArtifactEntry {
    pub path: String,
    pub is_dir: bool,
    #[serde(deserialize_with = "optional_u64")]
    pub file_size: Option<u64>,
}

const PREFIX: &str = "/api/2.0/mlflow";

/// `GET model-versions/get`
pub(crate) async fn get_model_version(
    client: &MlflowClient,
    name: &str,
    version: &str,
) -> Result<ModelVersion, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        model_version: ModelVersion,
    }
    let endpoint = format!("{PREFIX}/model-versions/get");
    let query = [("name", name), ("version", version)];
    let answer: Answer = client.get_json(Api::Registry, &endpoint, &query).await?;
    Ok(answer.model_version)
}

/// `POST model-versions/set-tag` (needs EDIT permission on the registered model when the
/// server has authentication on).
pub(crate) async fn set_model_version_tag(
    client: &MlflowClient,
    name: &str,
    version: &str,
    key: &str,
    value: &str,
) -> Result<(), CallError> {
    let endpoint = format!("{PREFIX}/model-versions/set-tag");
    let body = serde_json::json!({"name": name, "version": version, "key": key, "value": value});
    let _: serde_json::Value = client.post_json(Api::Registry, &endpoint, &body).await?;
    Ok(())
}

/// `GET registered-models/alias`
pub(crate) async fn get_model_version_by_alias(
    client: &MlflowClient,
    name: &str,
    alias: &str,
) -> Result<ModelVersion, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        model_version: ModelVersion,
    }
    let endpoint = format!("{PREFIX}/registered-models/alias");
    let query = [("name", name), ("alias", alias)];
    let answer: Answer = client.get_json(Api::Registry, &endpoint, &query).await?;
    Ok(answer.model_version)
}

/// `POST registered-models/get-latest-versions`: the newest version of each requested stage
/// (every stage when `stages` is empty).
pub(crate) async fn get_latest_versions(
    client: &MlflowClient,
    name: &str,
    stages: &[&str],
) -> Result<Vec<ModelVersion>, CallError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Answer {
        model_versions: Vec<ModelVersion>,
    }
    let endpoint = format!("{PREFIX}/registered-models/get-latest-versions");
    let body = if stages.is_empty() {
        json!({ "name": name })
    } else {
        json!({ "name": name, "stages": stages })
    };
    let answer: Answer = client.post_json(Api::Registry, &endpoint, &body).await?;
    Ok(answer.model_versions)
}

/// `GET model-versions/get-download-uri`
pub(crate) async fn get_download_uri(
    client: &MlflowClient,
    name: &str,
    version: &str,
) -> Result<String, CallError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Answer {
        artifact_uri: String,
    }
    let endpoint = format!("{PREFIX}/model-versions/get-download-uri");
    let query = [("name", name), ("version", version)];
    let answer: Answer = client.get_json(Api::Registry, &endpoint, &query).await?;
    Ok(answer.artifact_uri)
}

/// `GET registered-models/get`
pub(crate) async fn get_registered_model(
    client: &MlflowClient,
    name: &str,
) -> Result<RegisteredModel, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        registered_model: RegisteredModel,
    }
    let endpoint = format!("{PREFIX}/registered-models/get");
    let answer: Answer = client
        .get_json(Api::Registry, &endpoint, &[("name", name)])
        .await?;
    Ok(answer.registered_model)
}

#[derive(Deserialize)]
struct LoggedModelWire {
    info: LoggedModel,
}

/// `GET logged-models/{model_id}` (MLflow 3).
pub(crate) async fn get_logged_model(
    client: &MlflowClient,
    model_id: &str,
) -> Result<LoggedModel, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        model: LoggedModelWire,
    }
    let mut url = client.base(Api::Tracking)?;
    url.path_segments_mut()
        .map_err(|_| CallError::NoServer("the tracking URI cannot take a path".into()))?
        .pop_if_empty()
        .extend(["api", "2.0", "mlflow", "logged-models", model_id]);
    let answer: Answer = client.get_json_url(url, &[]).await?;
    Ok(answer.model.info)
}

/// `POST logged-models/search`: the logged models named `name` in an experiment, every page.
pub(crate) async fn search_logged_models(
    client: &MlflowClient,
    experiment_id: &str,
    name: &str,
) -> Result<Vec<LoggedModel>, CallError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Answer {
        models: Vec<LoggedModelWire>,
        next_page_token: Option<String>,
    }
    let endpoint = format!("{PREFIX}/logged-models/search");
    // MLflow's filter grammar has no escapes; callers skip names containing a quote.
    let filter = format!("name = '{name}'");
    let mut found = Vec::new();
    let mut page_token: Option<String> = None;
    // A page holds up to 100 models; 20 pages are far more than one run logs under one name.
    for _ in 0..20 {
        let mut body = json!({ "experiment_ids": [experiment_id], "filter": filter });
        if let Some(token) = &page_token {
            body["page_token"] = json!(token);
        }
        let answer: Answer = client.post_json(Api::Tracking, &endpoint, &body).await?;
        found.extend(answer.models.into_iter().map(|m| m.info));
        page_token = answer.next_page_token.filter(|t| !t.is_empty());
        if page_token.is_none() {
            break;
        }
    }
    Ok(found)
}

/// MLflow's largest page of `registered-models/search` (`SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD`).
pub(crate) const MAX_REGISTERED_MODELS_PAGE: usize = 1000;

/// How many pages [`search_registered_models`] reads at most: 100 000 models in pages of 1000.
pub(crate) const MAX_SEARCH_PAGES: usize = 100;

/// What a search read: every item of every page, and whether its last page came within the
/// page cap.
#[derive(Debug, PartialEq)]
pub(crate) struct Pages<T> {
    pub items: Vec<T>,
    pub complete: bool,
}

/// `GET registered-models/search`: the registered models matching `filter` (every one when it
/// is empty) by name, in pages of `page_size` (at most [`MAX_REGISTERED_MODELS_PAGE`]), every
/// page up to [`MAX_SEARCH_PAGES`].
pub(crate) async fn search_registered_models(
    client: &MlflowClient,
    filter: &str,
    page_size: usize,
) -> Result<Pages<RegisteredModel>, CallError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Answer {
        registered_models: Vec<RegisteredModel>,
        next_page_token: Option<String>,
    }
    let endpoint = format!("{PREFIX}/registered-models/search");
    let max_results = page_size.clamp(1, MAX_REGISTERED_MODELS_PAGE).to_string();
    let mut paging = Paging::new(MAX_SEARCH_PAGES);
    while let Some(page_token) = paging.next_token() {
        let mut query = vec![
            ("max_results", max_results.as_str()),
            ("order_by", "name ASC"),
        ];
        if !filter.is_empty() {
            query.push(("filter", filter));
        }
        if let Some(token) = &page_token {
            query.push(("page_token", token));
        }
        let answer: Answer = client.get_json(Api::Registry, &endpoint, &query).await?;
        paging.read(answer.registered_models, answer.next_page_token);
    }
    Ok(paging.finish())
}

/// Reading pages until one has no next token (then [`Pages::complete`]) or `max_pages` were
/// read: [`Paging::next_token`] says whether to ask for another page and with which token (none
/// for the first), [`Paging::read`] takes its answer. Pure, so its rules are tested without a
/// server (and a loop over it stays a plain `Send` future).
pub(crate) struct Paging<T> {
    items: Vec<T>,
    /// The token of the next page; `None` once a page had none.
    next: Option<Option<String>>,
    pages: usize,
    max_pages: usize,
}

impl<T> Paging<T> {
    pub(crate) fn new(max_pages: usize) -> Paging<T> {
        Paging {
            items: Vec::new(),
            next: Some(None),
            pages: 0,
            max_pages,
        }
    }

    /// The token to ask the next page with (`Some(None)`: the first page), or `None` when the
    /// search is over (no next page, or the cap reached).
    pub(crate) fn next_token(&self) -> Option<Option<String>> {
        (self.pages < self.max_pages)
            .then(|| self.next.clone())
            .flatten()
    }

    /// One page's items and its next token (an empty one ends the search as none does).
    pub(crate) fn read(&mut self, page: Vec<T>, next: Option<String>) {
        self.items.extend(page);
        self.pages += 1;
        self.next = next.filter(|token| !token.is_empty()).map(Some);
    }

    pub(crate) fn finish(self) -> Pages<T> {
        Pages {
            complete: self.next.is_none(),
            items: self.items,
        }
    }
}

/// `GET runs/get`
pub(crate) async fn get_run(client: &MlflowClient, run_id: &str) -> Result<RunInfo, CallError> {
    #[derive(Deserialize)]
    struct Run {
        info: RunInfo,
    }
    #[derive(Deserialize)]
    struct Answer {
        run: Run,
    }
    let endpoint = format!("{PREFIX}/runs/get");
    let query = [("run_id", run_id), ("run_uuid", run_id)];
    let answer: Answer = client.get_json(Api::Tracking, &endpoint, &query).await?;
    Ok(answer.run.info)
}

/// `GET <artifact proxy>?path=<path>`: the entries directly under `path`.
pub(crate) async fn list_artifacts(
    client: &MlflowClient,
    proxy: &Url,
    path: &str,
) -> Result<Vec<ArtifactEntry>, CallError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Answer {
        files: Vec<ArtifactEntry>,
    }
    let answer: Answer = client
        .get_json_url(proxy.clone(), &[("path", path)])
        .await?;
    Ok(answer.files)
}

/// Accepts `"3"` or `3`.
fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Number(number) => Ok(number.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number, got {other}"
        ))),
    }
}

/// Accepts `"702"`, `702` or nothing.
fn optional_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(number) => number
            .as_u64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a size in bytes"))),
        serde_json::Value::String(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{text}' is not a size in bytes"))),
        other => Err(serde::de::Error::custom(format!(
            "expected a size in bytes, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Result<ArtifactEntry, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn int64_fields_accept_strings_and_numbers() {
        let check = |json: &str, expected: Result<Option<u64>, &str>| match (entry(json), expected)
        {
            (Ok(got), Ok(size)) => assert_eq!(got.file_size, size, "{json}"),
            (Err(err), Err(want)) => assert!(err.contains(want), "{json}: {err}"),
            (got, want) => panic!("{json}: got {got:?}, expected {want:?}"),
        };
        check(
            r#"{"path": "MLmodel", "is_dir": false, "file_size": 702}"#,
            Ok(Some(702)),
        );
        check(
            r#"{"path": "MLmodel", "is_dir": false, "file_size": "702"}"#,
            Ok(Some(702)),
        );
        check(
            r#"{"path": "big", "file_size": "9007199254740993"}"#,
            Ok(Some(9_007_199_254_740_993)),
        );
        check(r#"{"path": "dir", "is_dir": true}"#, Ok(None));
        check(r#"{"path": "x", "file_size": null}"#, Ok(None));
        check(
            r#"{"path": "x", "file_size": -1}"#,
            Err("is not a size in bytes"),
        );
        check(
            r#"{"path": "x", "file_size": "lots"}"#,
            Err("'lots' is not a size in bytes"),
        );
        check(
            r#"{"path": "x", "file_size": [1]}"#,
            Err("expected a size in bytes"),
        );
    }

    #[test]
    fn model_versions_from_mlflow_2_and_3() {
        let check = |json: &str, expected: ModelVersion| {
            let got: ModelVersion = serde_json::from_str(json).unwrap();
            assert_eq!(got, expected, "{json}");
        };
        // MLflow 3.x, with an alias and a logged-model source.
        check(
            r#"{"name": "s", "version": "3", "creation_timestamp": "1795954192603",
                "current_stage": "Production", "source": "models:/m-1", "run_id": "r",
                "status": "READY", "aliases": ["champion"], "run_link": ""}"#,
            ModelVersion {
                name: "s".into(),
                version: "3".into(),
                current_stage: Some("Production".into()),
                source: Some("models:/m-1".into()),
                run_id: Some("r".into()),
                status: Some("READY".into()),
                aliases: vec!["champion".into()],
                ..ModelVersion::default()
            },
        );
        // A numeric version and no optional fields.
        check(
            r#"{"name": "s", "version": 12}"#,
            ModelVersion {
                name: "s".into(),
                version: "12".into(),
                ..ModelVersion::default()
            },
        );
        let newest = [("3", 3), ("12", 12), ("x", 0)];
        for (version, number) in newest {
            let mv = ModelVersion {
                version: version.into(),
                ..ModelVersion::default()
            };
            assert_eq!(mv.number(), number);
        }
    }

    /// A fake server of `total` items in pages of `size` whose tokens are offsets (and, with
    /// `endless`, a next token on every page): what [`Paging`] collects with `max_pages`.
    fn paged(total: usize, size: usize, endless: bool, max_pages: usize) -> Pages<usize> {
        let mut asked = Vec::new();
        let mut paging = Paging::new(max_pages);
        while let Some(token) = paging.next_token() {
            asked.push(token.clone());
            let start: usize = token.map_or(0, |t| t.parse().unwrap());
            let end = (start + size).min(total);
            let next = if end < total || endless {
                Some(end.to_string())
            } else if total % 2 == 1 {
                // An empty token ends a search as no token does (odd totals here).
                Some(String::new())
            } else {
                None
            };
            paging.read((start..end).collect(), next);
        }
        assert_eq!(asked[0], None, "the first page is asked without a token");
        paging.finish()
    }

    #[test]
    fn every_page_is_read_up_to_the_cap() {
        let all = |n: usize| (0..n).collect::<Vec<_>>();
        let complete = |items| Pages {
            items,
            complete: true,
        };
        assert_eq!(paged(25, 7, false, 100), complete(all(25)));
        assert_eq!(paged(21, 7, false, 3), complete(all(21)), "exactly the cap");
        assert_eq!(paged(0, 7, false, 100), complete(vec![]));
        assert_eq!(
            paged(25, 7, false, 2),
            Pages {
                items: all(14),
                complete: false
            },
            "the cap reached with more to come"
        );
        assert_eq!(
            paged(5, 7, true, 4),
            Pages {
                items: all(5),
                complete: false
            },
            "a server that always has a next page"
        );
    }

    #[test]
    fn registered_models_from_the_search() {
        let model: RegisteredModel = serde_json::from_str(
            r#"{"name": "fraud", "creation_timestamp": "1795954192603",
                "latest_versions": [{"name": "fraud", "version": "2"}],
                "tags": [{"key": "serve", "value": "true"}],
                "aliases": [{"alias": "champion", "version": "2"}, {"alias": "old", "version": 1}]}"#,
        )
        .unwrap();
        assert_eq!(
            model,
            RegisteredModel {
                name: "fraud".into(),
                aliases: vec![
                    RegisteredModelAlias {
                        alias: "champion".into(),
                        version: "2".into()
                    },
                    RegisteredModelAlias {
                        alias: "old".into(),
                        version: "1".into()
                    },
                ],
                tags: vec![RegisteredModelTag {
                    key: "serve".into(),
                    value: "true".into()
                }],
            }
        );
        let bare: RegisteredModel = serde_json::from_str(r#"{"name": "m"}"#).unwrap();
        assert!(bare.aliases.is_empty() && bare.tags.is_empty());
    }

    #[test]
    fn runs_and_logged_models() {
        let run: RunInfo = serde_json::from_str(
            r#"{"run_uuid": "r", "run_id": "r", "experiment_id": 7,
                "artifact_uri": "mlflow-artifacts:/7/r/artifacts", "start_time": "1"}"#,
        )
        .unwrap();
        assert_eq!(run.experiment_id, "7");
        assert_eq!(run.artifact_uri, "mlflow-artifacts:/7/r/artifacts");
        let model: LoggedModelWire = serde_json::from_str(
            r#"{"info": {"model_id": "m-1", "experiment_id": "0", "name": "model",
                "artifact_uri": "mlflow-artifacts:/0/models/m-1/artifacts",
                "status": "LOGGED_MODEL_READY", "source_run_id": "r",
                "creation_timestamp_ms": "1795954074080"}, "data": {}}"#,
        )
        .unwrap();
        assert_eq!(model.info.source_run_id.as_deref(), Some("r"));
        assert_eq!(model.info.status.as_deref(), Some("LOGGED_MODEL_READY"));
    }
}
