//! The registry layer: from a `MODEL_URI` to model files on local disk.
//!
//! It owns everything hotserve knows about MLflow: parsing the URI forms ([`uri`]), MLflow's
//! client environment and HTTP behaviour (auth, TLS, timeouts, retries with backoff and
//! `Retry-After`; [`settings`], [`client`]), turning a registry URI into a concrete version and
//! artifact location with MLflow's own REST endpoints ([`resolve()`]), and fetching those
//! artifacts safely ([`download()`]: streamed, size-checked, hashed, confined to a staging
//! directory that only becomes visible once complete) from the tracking server's proxy, a local
//! directory, or an object store read directly with the user's cloud credentials
//! ([`artifacts::store`]: also a bucket named as `MODEL_URI` without MLflow). For discovery,
//! [`search_registered_models`] finds the registered models matching a filter, and
//! [`served_name`] names each as a model (the rule for model names, [`is_model_name`], is here).
//!
//! Nothing here knows about ONNX or serving; the reload pipeline calls [`resolve()`] to learn
//! what the registry wants live and [`download()`] to fetch it. Every failure is a
//! [`RegistryError`] whose message names the URI, says what the registry answered and what to
//! do, and never contains credentials; [`RegistryError::is_transient`] tells the caller whether
//! to try again later.

pub mod artifacts;
pub mod client;
mod error;
pub mod location;
pub mod names;
pub mod progress;
pub mod resolve;
mod rest;
pub mod search;
mod secret;
pub mod settings;
pub mod uri;

pub use artifacts::download;
pub use artifacts::store::StoreSettings;
pub use client::MlflowClient;
pub use error::RegistryError;
pub use names::{is_model_name, served_name, MAX_MODEL_NAME};
pub use progress::{Progress, ProgressReport};
pub use resolve::resolve;
pub use search::{search_registered_models, search_registered_models_paged, RegisteredModel};
pub use settings::{MlflowSettings, Secret};
pub use uri::{ModelUri, RemoteUri, Stage};

/// Sets tag `key` = `value` on version `version` of the registered model `name`; the error in
/// words (the server, the endpoint, what it said).
pub async fn set_version_tag(
    client: &MlflowClient,
    name: &str,
    version: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    rest::set_model_version_tag(client, name, version, key, value)
        .await
        .map_err(|err| {
            err.into_registry(
                &format!("models:/{name}/{version}"),
                client.request_timeout(),
            )
            .to_string()
        })
}

/// What [`download()`] returns per file (defined with the other facts about a model's files).
pub use crate::files::FileDigest;

use std::fmt::Write as _;

/// What a registry URI points at right now: the registry's view of the version and the list of
/// files to fetch. Two resolutions of the same URI that compare equal describe the same model.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Resolution {
    /// The URI as the user wrote it, in canonical spelling ([`RemoteUri`]'s `Display`: stages
    /// capitalised as the registry spells them, `latest` and schemes in lowercase).
    pub uri: String,
    /// Registered model name, for `models:/` URIs of the registry; for a bucket `MODEL_URI`,
    /// the prefix's last segment.
    pub name: Option<String>,
    /// Registered version ("3"); `None` for `runs:/`, `models:/m-<id>` and `mlflow-artifacts:/`;
    /// for a bucket `MODEL_URI`, a digest of its listing (paths, sizes, ETags).
    pub version: Option<String>,
    /// Aliases currently pointing at this version.
    pub aliases: Vec<String>,
    /// The version's stage (`None`, `Staging`, `Production`, `Archived`), when registered.
    pub stage: Option<String>,
    /// MLflow 3 logged model id (`m-...`), when known.
    pub model_id: Option<String>,
    /// The run that produced the model, when known.
    pub run_id: Option<String>,
    /// Model version status as the registry reports it (always `READY` once resolved).
    pub status: Option<String>,
    /// Where the files are: `mlflow-artifacts:/...`, `file:///...`, a local path, or an object
    /// store location (`s3://...`).
    pub artifact_uri: String,
    /// Every file under `artifact_uri`, recursively, sorted by path.
    pub files: Vec<RemoteFile>,
}

/// One file of a model as the artifact store lists it.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct RemoteFile {
    /// Path relative to the artifact root, `/`-separated; checked by
    /// [`confine`](crate::files::confine).
    pub path: String,
    /// Size in bytes when the store reports it; downloads are checked against it.
    pub size: Option<u64>,
}

/// Renders a resolution for `hotserve resolve`: one `key: value` line per known field, then the
/// files with their sizes.
pub fn describe(resolution: &Resolution) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "{:<13} {value}", format!("{key}:"));
    };
    line("uri", &resolution.uri);
    let fields = [
        ("name", &resolution.name),
        ("version", &resolution.version),
        ("stage", &resolution.stage),
        ("status", &resolution.status),
        ("model id", &resolution.model_id),
        ("run id", &resolution.run_id),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            line(key, value);
        }
    }
    if !resolution.aliases.is_empty() {
        line("aliases", &resolution.aliases.join(", "));
    }
    line("download uri", &resolution.artifact_uri);
    let total: u64 = resolution.files.iter().filter_map(|f| f.size).sum();
    let _ = writeln!(
        out,
        "files:        {} ({})",
        resolution.files.len(),
        human_size(total)
    );
    let width = resolution
        .files
        .iter()
        .map(|f| f.path.len())
        .max()
        .unwrap_or(0);
    for file in &resolution.files {
        let size = file
            .size
            .map_or_else(|| "size unknown".to_string(), human_size);
        let _ = writeln!(out, "  {:<width$}  {size:>10}", file.path);
    }
    out
}

/// `1536` -> `1.5 KiB`; exact bytes below 1 KiB.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Client settings for hotserve's own use: MLflow's environment, except that without an
/// explicit `MLFLOW_HTTP_REQUEST_MAX_RETRIES` a request is retried twice rather than MLflow's
/// minute-long default. The daemon's reload loop has its own backoff (and falls back to the
/// cache), and `hotserve resolve` has a human waiting; both want a prompt answer.
pub fn hotserve_settings(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MlflowSettings, RegistryError> {
    let mut settings = MlflowSettings::from_env(env)?;
    if env("MLFLOW_HTTP_REQUEST_MAX_RETRIES").is_none() {
        settings.max_retries = settings.max_retries.min(2);
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolution() -> Resolution {
        Resolution {
            uri: "models:/sentiment@champion".into(),
            name: Some("sentiment".into()),
            version: Some("3".into()),
            aliases: vec!["champion".into(), "stable".into()],
            stage: Some("Production".into()),
            model_id: Some("m-abc".into()),
            run_id: Some("r1".into()),
            status: Some("READY".into()),
            artifact_uri: "mlflow-artifacts:/0/models/m-abc/artifacts".into(),
            files: vec![
                RemoteFile {
                    path: "MLmodel".into(),
                    size: Some(702),
                },
                RemoteFile {
                    path: "model.onnx".into(),
                    size: Some(3 * 1024 * 1024),
                },
                RemoteFile {
                    path: "tokenizer/tokenizer.json".into(),
                    size: None,
                },
            ],
        }
    }

    #[test]
    fn describe_lists_every_known_field_and_file() {
        let text = describe(&resolution());
        for want in [
            "uri:          models:/sentiment@champion\n",
            "name:         sentiment\n",
            "version:      3\n",
            "aliases:      champion, stable\n",
            "stage:        Production\n",
            "model id:     m-abc\n",
            "download uri: mlflow-artifacts:/0/models/m-abc/artifacts\n",
            "files:        3 (3.0 MiB)\n",
            "  MLmodel                        702 B\n",
            "  tokenizer/tokenizer.json  size unknown\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn describe_skips_unknown_fields() {
        let mut bare = resolution();
        bare.name = None;
        bare.version = None;
        bare.aliases.clear();
        let text = describe(&bare);
        assert!(
            !text.contains("name:") && !text.contains("version:") && !text.contains("aliases:")
        );
    }

    /// The reload pipeline runs these on spawned tasks, so a task awaiting them must be `Send`
    /// (a compile-time check: the task is built, never run).
    #[test]
    fn futures_are_send() {
        fn assert_spawnable<T: std::future::Future + Send + 'static>(_: &T) {}
        let client = MlflowClient::new(MlflowSettings::default()).unwrap();
        let task = async move {
            let uri = RemoteUri::Latest { name: "s".into() };
            let resolution = resolve(&client, &uri).await?;
            download(
                &client,
                &resolution,
                std::path::Path::new("x"),
                &Default::default(),
            )
            .await
        };
        assert_spawnable(&task);
    }

    #[test]
    fn human_sizes() {
        let check = |bytes: u64, expected: &str| assert_eq!(human_size(bytes), expected, "{bytes}");
        check(0, "0 B");
        check(1023, "1023 B");
        check(1536, "1.5 KiB");
        check(5 * 1024 * 1024 * 1024, "5.0 GiB");
    }
}
