//! [`resolve()`]: from a [`RemoteUri`] to a concrete model (name, version, aliases, stage, ids)
//! and the list of its files, using the same endpoints, in the same order, as MLflow's Python
//! client (`ModelsArtifactRepository`, `RunsArtifactRepository`):
//!
//! - `models:/<name>/<version>`: `model-versions/get`, then `model-versions/get-download-uri`.
//! - `models:/<name>@<alias>`: `registered-models/alias`; on failure `registered-models/get`
//!   to tell an unknown model from an unknown alias and to list the aliases that exist.
//! - `models:/<name>/<stage>` and `/latest`: `registered-models/get-latest-versions` (with the
//!   stage, or with none for every stage) and the highest version number.
//! - `models:/m-<id>`: `logged-models/<id>` (MLflow 3 only).
//! - `runs:/<run_id>/<path>`: `runs/get`, then, as MLflow 3 stores `log_model` output under a
//!   logged model rather than the run, `logged-models/search` for a model of that run named
//!   after the path's first segment; the run's own artifacts otherwise (MLflow 2 servers, or
//!   files logged with `log_artifacts`).
//! - `mlflow-artifacts:/<path>`: the path itself.
//! - `s3://`, `gs://`, `wasbs://`, `abfss://` buckets: no registry at all; the objects below
//!   the prefix are the model, named after the prefix's last segment, and their listing (paths,
//!   sizes, ETags) is digested into the version, so any change to the files is a new version.
//!   When nothing is below the prefix but an object has exactly that key, it is a pointer: a
//!   small text naming the current version's folder (see `artifacts::store::follow_pointer`).
//!
//! Whatever location the registry reports is then listed by its backend (the artifact proxy, a
//! local directory, or an object store read directly when the server does not proxy).
//!
//! Versions that are not `READY` are refused, as are logged models that are not ready.

use super::artifacts::store::{self, StoreLocation};
use super::artifacts::{list_files, store_snapshot};
use super::client::{CallError, MlflowClient};
use super::rest::{self, ModelVersion};
use super::{RegistryError, RemoteUri, Resolution, Stage};

/// What the registry says a URI points at, before its files are listed.
struct Target {
    name: Option<String>,
    version: Option<String>,
    aliases: Vec<String>,
    stage: Option<String>,
    model_id: Option<String>,
    run_id: Option<String>,
    status: Option<String>,
    /// Where to look for files, best first; the first location that lists any file wins.
    locations: Vec<String>,
}

/// Asks the registry what `uri` points at right now and lists its files.
pub async fn resolve(client: &MlflowClient, uri: &RemoteUri) -> Result<Resolution, RegistryError> {
    let text = uri.to_string();
    if let RemoteUri::Bucket { location } = uri {
        return resolve_bucket(client, &text, location).await;
    }
    let context = Context { client, uri: &text };
    let target = match uri {
        RemoteUri::Version { name, version } => {
            let found = rest::get_model_version(client, name, version).await;
            let version = found.map_err(|err| {
                context.not_found_or(
                    err,
                    &format!(
                        "check the model name and the version number; models:/{name}/latest \
                         names the newest version"
                    ),
                )
            })?;
            context.registered(version).await?
        }
        RemoteUri::Alias { name, alias } => {
            match rest::get_model_version_by_alias(client, name, alias).await {
                Ok(version) => context.registered(version).await?,
                Err(err) if matches!(err.status(), Some(400 | 404)) => {
                    return Err(context.alias_error(name, alias, err).await);
                }
                Err(err) => return Err(context.error(err)),
            }
        }
        RemoteUri::Stage { name, stage } => {
            let versions = context.latest_versions(name, &[stage.as_str()]).await?;
            match newest(versions.into_iter().filter(|v| in_stage(v, *stage))) {
                Some(version) => context.registered(version).await?,
                None => return Err(context.empty_stage(name, *stage).await),
            }
        }
        RemoteUri::Latest { name } => match newest(context.latest_versions(name, &[]).await?) {
            Some(version) => context.registered(version).await?,
            None => {
                return Err(RegistryError::NoVersions {
                    uri: text.clone(),
                    name: name.clone(),
                    where_: "at all".into(),
                    hint: format!("register one with mlflow.register_model(<model uri>, '{name}')"),
                })
            }
        },
        RemoteUri::LoggedModel { model_id } => context.logged_model(model_id).await?,
        RemoteUri::Run { run_id, path } => context.run(run_id, path).await?,
        // Buckets were resolved above; they share this arm to keep the match exhaustive.
        RemoteUri::Artifacts { .. } | RemoteUri::Bucket { .. } => Target {
            name: None,
            version: None,
            aliases: Vec::new(),
            stage: None,
            model_id: None,
            run_id: None,
            status: None,
            locations: vec![text.clone()],
        },
    };

    let mut listed = None;
    for location in &target.locations {
        let files = list_files(client, &text, location).await?;
        if !files.is_empty() {
            listed = Some((location.clone(), files));
            break;
        }
    }
    let Some((artifact_uri, files)) = listed else {
        return Err(RegistryError::NoFiles {
            uri: text,
            artifact_uri: target.locations.join(" or "),
        });
    };
    tracing::debug!(uri = %text, artifact_uri, files = files.len(), "resolved");
    Ok(Resolution {
        uri: text,
        name: target.name,
        version: target.version,
        aliases: target.aliases,
        stage: target.stage,
        model_id: target.model_id,
        run_id: target.run_id,
        status: target.status,
        artifact_uri,
        files,
    })
}

/// A bucket `MODEL_URI`: its objects, named after the prefix and versioned by their listing.
async fn resolve_bucket(
    client: &MlflowClient,
    uri: &str,
    location: &str,
) -> Result<Resolution, RegistryError> {
    let Some(Ok(parsed)) = StoreLocation::parse(location) else {
        return Err(RegistryError::InvalidUri {
            uri: uri.to_string(),
            reason: "it is not an object store URI".into(),
        });
    };
    let mut snapshot = store_snapshot(client, uri, &parsed).await?;
    let mut artifact_uri = location.to_string();
    // The model is named after its folder, or after the folder a pointer object is in.
    let mut named = parsed.prefix.as_str();
    if snapshot.0.is_empty() {
        let access = client.settings().store_access();
        let pointer = store::follow_pointer(client.stores(), &access, uri, &parsed);
        if let Some(target) = pointer.await? {
            snapshot = store_snapshot(client, uri, &target).await?;
            artifact_uri = target.display();
            named = parsed
                .prefix
                .rsplit_once('/')
                .map_or(named, |(folder, _)| folder);
        }
    }
    if snapshot.0.is_empty() {
        return Err(RegistryError::NoFiles {
            uri: uri.to_string(),
            artifact_uri,
        });
    }
    let name = named.rsplit('/').next().unwrap_or("model").to_string();
    tracing::debug!(uri, files = snapshot.0.len(), "resolved");
    Ok(Resolution {
        uri: uri.to_string(),
        name: Some(name),
        version: Some(snapshot.version()),
        aliases: Vec::new(),
        stage: None,
        model_id: None,
        run_id: None,
        status: None,
        artifact_uri,
        files: snapshot.files(),
    })
}

/// The URI being resolved, for error messages.
struct Context<'a> {
    client: &'a MlflowClient,
    uri: &'a str,
}

impl Context<'_> {
    fn error(&self, err: CallError) -> RegistryError {
        err.into_registry(self.uri, self.client.request_timeout())
    }

    /// MLflow's RESOURCE_DOES_NOT_EXIST becomes [`RegistryError::NotFound`] with `hint`.
    fn not_found_or(&self, err: CallError, hint: &str) -> RegistryError {
        if err.is_not_found() {
            RegistryError::NotFound {
                uri: self.uri.to_string(),
                message: err.message(),
                hint: hint.to_string(),
            }
        } else {
            self.error(err)
        }
    }

    async fn latest_versions(
        &self,
        name: &str,
        stages: &[&str],
    ) -> Result<Vec<ModelVersion>, RegistryError> {
        rest::get_latest_versions(self.client, name, stages)
            .await
            .map_err(|err| {
                self.not_found_or(
                    err,
                    "check the registered model name (names are case-sensitive)",
                )
            })
    }

    /// A registered version: refuse it unless READY, then find where its files are.
    async fn registered(&self, version: ModelVersion) -> Result<Target, RegistryError> {
        let status = version.status.clone().unwrap_or_else(|| "READY".into());
        if status != "READY" {
            return Err(RegistryError::NotReady {
                uri: self.uri.to_string(),
                what: format!("version {} of '{}'", version.version, version.name),
                status,
                status_message: version.status_message.filter(|m| !m.is_empty()),
            });
        }
        let download_uri = rest::get_download_uri(self.client, &version.name, &version.version)
            .await
            .map_err(|err| self.error(err))?;
        let source_model_id = version
            .source
            .as_deref()
            .and_then(|source| source.strip_prefix("models:/"))
            .filter(|id| id.starts_with("m-") && !id.contains('/'))
            .map(str::to_string);
        let mut target = Target {
            name: Some(version.name),
            version: Some(version.version),
            aliases: version.aliases,
            stage: version.current_stage,
            model_id: version
                .model_id
                .filter(|id| !id.is_empty())
                .or(source_model_id),
            run_id: version.run_id.filter(|id| !id.is_empty()),
            status: Some(status),
            locations: vec![download_uri.clone()],
        };
        // Servers without a storage location hand back the source URI; follow it one level.
        let inner = match RemoteUri::parse(&download_uri) {
            Ok(RemoteUri::LoggedModel { model_id }) => Some(self.logged_model(&model_id).await?),
            Ok(RemoteUri::Run { run_id, path }) => Some(self.run(&run_id, &path).await?),
            _ => None,
        };
        if let Some(inner) = inner {
            target.locations = inner.locations;
            target.model_id = target.model_id.or(inner.model_id);
            target.run_id = target.run_id.or(inner.run_id);
        }
        Ok(target)
    }

    async fn alias_error(&self, name: &str, alias: &str, err: CallError) -> RegistryError {
        let said = err.message();
        match rest::get_registered_model(self.client, name).await {
            Ok(model) => {
                let mut existing: Vec<String> = model
                    .aliases
                    .iter()
                    .map(|a| format!("{} (version {})", a.alias, a.version))
                    .collect();
                existing.sort();
                RegistryError::AliasNotFound {
                    uri: self.uri.to_string(),
                    name: name.to_string(),
                    alias: alias.to_string(),
                    message: said,
                    existing,
                }
            }
            Err(lookup) => self.not_found_or(
                lookup,
                "check the registered model name (names are case-sensitive)",
            ),
        }
    }

    /// Nothing in `stage`: say which stages do hold versions.
    async fn empty_stage(&self, name: &str, stage: Stage) -> RegistryError {
        let others = rest::get_latest_versions(self.client, name, &[])
            .await
            .unwrap_or_default();
        let mut held: Vec<String> = others
            .iter()
            .map(|v| {
                let stage = v.current_stage.as_deref().unwrap_or("None");
                format!("{stage} (version {})", v.version)
            })
            .collect();
        held.sort();
        let hint = if held.is_empty() {
            format!("the model has no versions; register one with mlflow.register_model(<model uri>, '{name}')")
        } else {
            format!(
                "newest versions per stage: {}; move one with \
                 MlflowClient().transition_model_version_stage('{name}', <version>, '{stage}'), \
                 or use models:/{name}/latest or an alias",
                held.join(", ")
            )
        };
        RegistryError::NoVersions {
            uri: self.uri.to_string(),
            name: name.to_string(),
            where_: format!("in stage {stage}"),
            hint,
        }
    }

    async fn logged_model(&self, model_id: &str) -> Result<Target, RegistryError> {
        let model = match rest::get_logged_model(self.client, model_id).await {
            Ok(model) => model,
            Err(err) if err.is_missing_endpoint() => {
                let server = self.client.tracking_server().unwrap_or_default();
                return Err(RegistryError::LoggedModelsUnsupported {
                    uri: self.uri.to_string(),
                    server,
                });
            }
            Err(err) => {
                return Err(self.not_found_or(
                    err,
                    "check the logged model id; mlflow.search_logged_models() lists them",
                ))
            }
        };
        let status = model.status.clone().unwrap_or_default();
        if !(status.is_empty() || status == "LOGGED_MODEL_READY" || status == "READY") {
            return Err(RegistryError::NotReady {
                uri: self.uri.to_string(),
                what: format!("logged model {model_id}"),
                status,
                status_message: None,
            });
        }
        Ok(Target {
            name: None,
            version: None,
            aliases: Vec::new(),
            stage: None,
            model_id: Some(model.model_id).filter(|id| !id.is_empty()),
            run_id: model.source_run_id.filter(|id| !id.is_empty()),
            status: model.status,
            locations: vec![model.artifact_uri],
        })
    }

    async fn run(&self, run_id: &str, path: &str) -> Result<Target, RegistryError> {
        let run = rest::get_run(self.client, run_id).await.map_err(|err| {
            self.not_found_or(
                err,
                "check the run id (the 32 hex characters in the run's page)",
            )
        })?;
        let run_location = join_uri(&run.artifact_uri, path);
        let mut target = Target {
            name: None,
            version: None,
            aliases: Vec::new(),
            stage: None,
            model_id: None,
            run_id: Some(run_id.to_string()),
            status: None,
            locations: vec![run_location],
        };
        let (model_name, rest_of_path) = path.split_once('/').unwrap_or((path, ""));
        if model_name.is_empty() || model_name.contains('\'') {
            return Ok(target);
        }
        let models =
            match rest::search_logged_models(self.client, &run.experiment_id, model_name).await {
                Ok(models) => models,
                // An MLflow 2.x server: the run's own artifacts are all there is.
                Err(err) if err.is_missing_endpoint() => return Ok(target),
                Err(err) => return Err(self.error(err)),
            };
        let model = models
            .into_iter()
            .filter(|m| m.source_run_id.as_deref() == Some(run_id) && m.name == model_name)
            .min_by_key(|m| m.status.as_deref() != Some("LOGGED_MODEL_READY"));
        if let Some(model) = model {
            target
                .locations
                .insert(0, join_uri(&model.artifact_uri, rest_of_path));
            target.model_id = Some(model.model_id);
        }
        Ok(target)
    }
}

/// The highest version number.
fn newest(versions: impl IntoIterator<Item = ModelVersion>) -> Option<ModelVersion> {
    versions.into_iter().max_by_key(ModelVersion::number)
}

fn in_stage(version: &ModelVersion, stage: Stage) -> bool {
    let current = version.current_stage.as_deref().unwrap_or("None");
    Stage::parse(current) == Some(stage)
}

/// `base` + `/` + `path`, for artifact URIs.
fn join_uri(base: &str, path: &str) -> String {
    let path = path.trim_matches('/');
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(number: &str, stage: &str) -> ModelVersion {
        ModelVersion {
            name: "s".into(),
            version: number.into(),
            current_stage: Some(stage.into()),
            ..ModelVersion::default()
        }
    }

    #[test]
    fn newest_is_the_highest_number_not_the_longest_string() {
        let check = |versions: &[&str], expected: Option<&str>| {
            let all = versions.iter().map(|v| version(v, "None"));
            assert_eq!(
                newest(all).map(|v| v.version),
                expected.map(str::to_string),
                "{versions:?}"
            );
        };
        check(&["1", "3", "2"], Some("3"));
        check(&["9", "10"], Some("10"));
        check(&[], None);
    }

    #[test]
    fn stages_compare_case_insensitively() {
        assert!(in_stage(&version("1", "production"), Stage::Production));
        assert!(in_stage(&version("1", "None"), Stage::None));
        assert!(!in_stage(&version("1", "Staging"), Stage::Production));
        let unset = ModelVersion {
            current_stage: None,
            ..version("1", "")
        };
        assert!(in_stage(&unset, Stage::None));
    }

    #[test]
    fn joins() {
        let check = |base: &str, path: &str, expected: &str| {
            assert_eq!(join_uri(base, path), expected, "{base} + {path}");
        };
        check(
            "mlflow-artifacts:/0/r/artifacts",
            "model",
            "mlflow-artifacts:/0/r/artifacts/model",
        );
        check(
            "mlflow-artifacts:/0/r/artifacts/",
            "/a/b/",
            "mlflow-artifacts:/0/r/artifacts/a/b",
        );
        check("file:///srv/a", "", "file:///srv/a");
    }
}
