//! `MODEL_URI` parsing: every form hotserve accepts, as MLflow's own client reads them
//! (`mlflow.store.artifact.utils.models._parse_model_uri`, `RunsArtifactRepository`), plus local
//! directories, `.zip` bundles and object store folders (`s3://`, `gs://`, `wasbs://`,
//! `abfss://`) read without MLflow. Pure: text in, [`ModelUri`] out; nothing is looked up here.

use std::fmt;
use std::path::PathBuf;

use super::RegistryError;

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelUri {
    /// A model directory on local disk (a plain path or a `file://` URI).
    Local(PathBuf),
    /// A local `.zip` bundle of a model directory.
    Zip(PathBuf),
    /// Something the MLflow server has to resolve.
    Remote(RemoteUri),
}

/// A URI that names a model in an MLflow tracking server or model registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUri {
    /// `models:/<name>/<version>`
    Version { name: String, version: String },
    /// `models:/<name>@<alias>`
    Alias { name: String, alias: String },
    /// `models:/<name>/<stage>`: the newest version in that stage.
    Stage { name: String, stage: Stage },
    /// `models:/<name>/latest`: the highest version number of any stage.
    Latest { name: String },
    /// `models:/m-<id>`: an MLflow 3 logged model.
    LoggedModel { model_id: String },
    /// `runs:/<run_id>/<path>`: a path inside a run's artifacts (or its logged model).
    Run { run_id: String, path: String },
    /// `mlflow-artifacts:/<path>` or `mlflow-artifacts://<host>/<path>`: served by the
    /// tracking server's artifact proxy.
    Artifacts { host: Option<String>, path: String },
    /// `s3://<bucket>/<prefix>`, `gs://...`, `wasbs://...`, `abfss://...`: every object below
    /// the prefix is the model, read directly without MLflow. `location` is the canonical
    /// spelling (scheme in lowercase, no trailing `/`).
    Bucket { location: String },
}

/// A model registry stage. MLflow compares stages case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    /// The registry's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Parses a stage name in any letter case.
    pub fn parse(text: &str) -> Option<Stage> {
        [
            Stage::None,
            Stage::Staging,
            Stage::Production,
            Stage::Archived,
        ]
        .into_iter()
        .find(|stage| stage.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ModelUri {
    /// Parses a `MODEL_URI`. Remote forms follow MLflow's grammar; anything without a URI scheme
    /// is a local path (a `.zip` suffix makes it a bundle). Nothing is checked on disk.
    pub fn parse(text: &str) -> Result<ModelUri, RegistryError> {
        let text = text.trim();
        let invalid = |reason: String| RegistryError::InvalidUri {
            uri: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid(
                "it is empty; set MODEL_URI to models:/<name>@<alias>, models:/<name>/<version>, \
                 runs:/<run_id>/<path>, s3://<bucket>/<path> or a model directory"
                    .into(),
            ));
        }
        let Some((scheme, rest)) = split_scheme(text) else {
            return Ok(local(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "models" => parse_models(rest).map(ModelUri::Remote).map_err(invalid),
            "runs" => parse_runs(rest).map(ModelUri::Remote).map_err(invalid),
            "mlflow-artifacts" => parse_artifacts(rest).map(ModelUri::Remote).map_err(invalid),
            "file" => parse_file(rest).map(local).map_err(invalid),
            "s3" | "s3a" | "gs" | "wasbs" | "abfss" => parse_bucket(text).map_err(invalid),
            "hdfs" | "dbfs" | "http" | "https" | "ftp" | "sftp" | "oci" | "uc" => {
                Err(invalid(format!(
                    "hotserve does not read {scheme}:// directly; register the model in MLflow \
                     and use models:/<name>@<alias>, or serve the artifacts through the tracking \
                     server (mlflow server --serve-artifacts) and use mlflow-artifacts:/..., or \
                     keep the model in an s3://, gs://, wasbs:// or abfss:// bucket"
                )))
            }
            _ => Err(invalid(format!(
                "unknown scheme '{scheme}:'; use models:/, runs:/, mlflow-artifacts:/, s3://, \
                 gs://, wasbs://, abfss://, file:// or a local path"
            ))),
        }
    }
}

impl ModelUri {
    /// The name a model from this URI is served under when none is configured: the registered
    /// name (`models:/sentiment@champion` -> `sentiment`), a bucket's last folder
    /// (`s3://models/sentiment` -> `sentiment`), a directory's name, a bundle's name without
    /// `.zip`, else `model`. `hotserve serve` and `hotserve validate` both name a model so, and
    /// the name is the same in routes, logs, metrics and `/health`.
    pub fn default_name(&self) -> String {
        let last = |text: &str| {
            text.trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|segment| !segment.is_empty() && *segment != "." && *segment != "..")
                .map(str::to_string)
        };
        let named = match self {
            ModelUri::Local(dir) => last(&dir.to_string_lossy()),
            ModelUri::Zip(path) => last(&path.with_extension("").to_string_lossy()),
            ModelUri::Remote(RemoteUri::Bucket { location }) => {
                match super::artifacts::store::StoreLocation::parse(location) {
                    Some(Ok(parsed)) => last(&parsed.prefix),
                    _ => None,
                }
            }
            ModelUri::Remote(remote) => remote.registered_name().map(str::to_string),
        };
        named.unwrap_or_else(|| "model".to_string())
    }
}

impl RemoteUri {
    /// Parses a remote URI; local paths are refused.
    pub fn parse(text: &str) -> Result<RemoteUri, RegistryError> {
        match ModelUri::parse(text)? {
            ModelUri::Remote(remote) => Ok(remote),
            ModelUri::Local(_) | ModelUri::Zip(_) => Err(RegistryError::InvalidUri {
                uri: text.to_string(),
                reason: "it is a local path, not a models:/, runs:/ or mlflow-artifacts:/ URI"
                    .into(),
            }),
        }
    }

    /// The registered model name, for the `models:/<name>...` forms.
    pub fn registered_name(&self) -> Option<&str> {
        match self {
            RemoteUri::Version { name, .. }
            | RemoteUri::Alias { name, .. }
            | RemoteUri::Stage { name, .. }
            | RemoteUri::Latest { name } => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for RemoteUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUri::Version { name, version } => write!(f, "models:/{name}/{version}"),
            RemoteUri::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
            RemoteUri::Stage { name, stage } => write!(f, "models:/{name}/{stage}"),
            RemoteUri::Latest { name } => write!(f, "models:/{name}/latest"),
            RemoteUri::LoggedModel { model_id } => write!(f, "models:/{model_id}"),
            RemoteUri::Run { run_id, path } if path.is_empty() => write!(f, "runs:/{run_id}"),
            RemoteUri::Run { run_id, path } => write!(f, "runs:/{run_id}/{path}"),
            RemoteUri::Artifacts { host: None, path } => write!(f, "mlflow-artifacts:/{path}"),
            RemoteUri::Artifacts {
                host: Some(host),
                path,
            } => {
                write!(f, "mlflow-artifacts://{host}/{path}")
            }
            RemoteUri::Bucket { location } => f.write_str(location),
        }
    }
}

/// Splits `scheme:rest` when `text` starts with a URI scheme followed by `:/` (so that
/// `./a:b`, `model:v1` and `C:\dir` stay paths).
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let valid = first_is_letter && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (valid && scheme.len() > 1 && rest.starts_with('/')).then_some((scheme, rest))
}

fn local(path: PathBuf) -> ModelUri {
    let is_zip = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("zip"));
    if is_zip {
        ModelUri::Zip(path)
    } else {
        ModelUri::Local(path)
    }
}

const MODELS_FORMS: &str = "use models:/<name>/<version>, models:/<name>@<alias>, \
                            models:/<name>/<stage>, models:/<name>/latest or models:/m-<model_id>";

/// `rest` is everything after `models:`.
fn parse_models(rest: &str) -> Result<RemoteUri, String> {
    if rest.starts_with("//") && !rest.starts_with("///") {
        return Err(format!(
            "models:// URIs with a profile or host are Databricks-only; {MODELS_FORMS}"
        ));
    }
    let path = rest.trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    if path.is_empty() || parts[0].trim().is_empty() {
        return Err(format!("the model name is missing; {MODELS_FORMS}"));
    }
    match parts.as_slice() {
        [name, suffix] => {
            let suffix = suffix.trim();
            if suffix.is_empty() {
                return Err(format!("nothing follows '{name}/'; {MODELS_FORMS}"));
            }
            let name = name.to_string();
            if suffix.bytes().all(|b| b.is_ascii_digit()) {
                Ok(RemoteUri::Version {
                    name,
                    version: suffix.to_string(),
                })
            } else if suffix.eq_ignore_ascii_case("latest") {
                Ok(RemoteUri::Latest { name })
            } else if let Some(stage) = Stage::parse(suffix) {
                Ok(RemoteUri::Stage { name, stage })
            } else {
                Err(format!(
                    "'{suffix}' is neither a version number, 'latest', nor a stage (None, \
                     Staging, Production, Archived); for an alias write models:/{name}@{suffix}"
                ))
            }
        }
        [single] => match single.rsplit_once('@') {
            Some((name, alias)) if !name.trim().is_empty() && !alias.trim().is_empty() => {
                Ok(RemoteUri::Alias {
                    name: name.to_string(),
                    alias: alias.to_string(),
                })
            }
            Some(_) => Err(format!(
                "the alias or the model name is empty; {MODELS_FORMS}"
            )),
            None if single.starts_with("m-") && single.len() > 2 => Ok(RemoteUri::LoggedModel {
                model_id: single.to_string(),
            }),
            None => Err(format!(
                "models:/{single} names neither a version nor an alias; write \
                 models:/{single}@<alias>, models:/{single}/<version> or models:/{single}/latest \
                 (logged model ids start with m-)"
            )),
        },
        _ => Err(format!(
            "too many path segments; {MODELS_FORMS} (paths inside a model are not supported)"
        )),
    }
}

/// A bucket URI as `MODEL_URI`: checked by the object store backend's parser; the whole
/// bucket is refused, a model lives below a prefix.
fn parse_bucket(text: &str) -> Result<ModelUri, String> {
    // Whitespace before a trailing '/' goes too, so that the text shown parses back the same
    // (found by fuzz/, target `model_uri`).
    let text = text.trim_end_matches(|c: char| c == '/' || c.is_whitespace());
    let location = match super::artifacts::store::StoreLocation::parse(text) {
        Some(Ok(location)) => location,
        Some(Err(why)) => return Err(why),
        None => return Err("it is not an object store URI".into()),
    };
    if location.prefix.is_empty() {
        return Err(format!(
            "it names a whole bucket; write {}/<path to the model>",
            location.store.display()
        ));
    }
    // Azure locations keep their host as written; other stores have one spelling.
    let location = match location.store {
        super::artifacts::store::Store::Azure { .. } => text.to_string(),
        _ => location.display(),
    };
    Ok(ModelUri::Remote(RemoteUri::Bucket { location }))
}

/// `rest` is everything after `runs:`.
fn parse_runs(rest: &str) -> Result<RemoteUri, String> {
    const FORM: &str = "runs URIs look like runs:/<run_id>/<path>, e.g. runs:/0a1b2c/model";
    if rest.starts_with("//") && !rest.starts_with("///") {
        return Err(format!(
            "runs:// URIs with a profile are Databricks-only; {FORM}"
        ));
    }
    let path = rest.trim_start_matches('/');
    let (run_id, artifact_path) = path.split_once('/').unwrap_or((path, ""));
    if run_id.trim().is_empty() {
        return Err(format!("the run id is missing; {FORM}"));
    }
    // MLflow's own rule for run ids (`_RUN_ID_REGEX`): a letter or digit, then letters,
    // digits, `_` or `-`.
    let valid_run_id = run_id.len() <= 256
        && run_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_run_id {
        return Err(format!(
            "'{run_id}' is not a run id (letters, digits, '_' and '-', starting with a letter or digit); {FORM}"
        ));
    }
    let artifact_path = artifact_path.trim_matches('/');
    if let Some(segment) = spaced_segment(artifact_path) {
        return Err(format!(
            "the artifact path segment '{segment}' begins or ends with a space; remove it; {FORM}"
        ));
    }
    if let Some(segment) = artifact_path
        .split('/')
        .find(|segment| matches!(*segment, "." | ".."))
    {
        return Err(format!(
            "the artifact path may not contain '{segment}'; {FORM}"
        ));
    }
    Ok(RemoteUri::Run {
        run_id: run_id.to_string(),
        path: artifact_path.to_string(),
    })
}

/// A `/`-separated segment of `path` with whitespace at either end: almost surely a typo, and
/// one that would not survive the trimming of `MODEL_URI` at the end of a URI.
fn spaced_segment(path: &str) -> Option<&str> {
    path.split('/').find(|segment| segment.trim() != *segment)
}

/// `rest` is everything after `mlflow-artifacts:`.
fn parse_artifacts(rest: &str) -> Result<RemoteUri, String> {
    let (host, path) = match rest.strip_prefix("//") {
        Some(authority_and_path) => {
            let (host, path) = authority_and_path
                .split_once('/')
                .unwrap_or((authority_and_path, ""));
            if host.is_empty() {
                (None, path)
            } else if host.contains('@') {
                return Err("credentials in an artifact URI are not supported; set \
                            MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD instead"
                    .into());
            } else if host.parse::<u16>().is_ok() {
                return Err(format!(
                    "'{host}' is a port without a host; write mlflow-artifacts://<host>:{host}/..."
                ));
            } else {
                (Some(host.to_string()), path)
            }
        }
        None => (None, &rest[1..]),
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err("the artifact path is missing; use mlflow-artifacts:/<experiment>/...".into());
    }
    if let Some(segment) = spaced_segment(path) {
        return Err(format!(
            "the artifact path segment '{segment}' begins or ends with a space; remove it"
        ));
    }
    if path.split('/').any(|segment| matches!(segment, "." | "..")) {
        return Err("the artifact path may not contain '.' or '..' segments".into());
    }
    Ok(RemoteUri::Artifacts {
        host,
        path: path.to_string(),
    })
}

/// `rest` is everything after `file:`; accepts `file:///abs`, `file://localhost/abs` and
/// `file:/abs`, and decodes percent escapes as MLflow does.
fn parse_file(rest: &str) -> Result<PathBuf, String> {
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => {
            let (host, path) = authority_and_path.split_at(
                authority_and_path
                    .find('/')
                    .unwrap_or(authority_and_path.len()),
            );
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(format!(
                    "file:// URIs must name a local path, not host '{host}'; use file:///<path>"
                ));
            }
            path
        }
        None => rest,
    };
    if path.is_empty() {
        return Err("the path is missing; use file:///<absolute path>".into());
    }
    percent_decode(path)
        .map(PathBuf::from)
        .ok_or_else(|| "the path has an invalid percent escape".into())
}

/// Decodes `%XX` escapes; `None` when a `%` is not followed by two hex digits (`%zz`, `%+1`, a
/// trailing `%`) or the result is not UTF-8. The `percent-encoding` crate decodes, but keeps a
/// malformed escape as text; in a path or a password that is a typo the user should hear about,
/// so it is refused first.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'%')
        .all(|(at, _)| {
            bytes
                .get(at + 1..at + 3)
                .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
        });
    if !well_formed {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()?;
    Some(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_the_same_for_serve_and_validate() {
        let check = |uri: &str, expected: &str| {
            assert_eq!(
                ModelUri::parse(uri).unwrap().default_name(),
                expected,
                "{uri}"
            );
        };
        check("models:/sentiment@champion", "sentiment");
        check("models:/fraud/3", "fraud");
        check("s3://models/sentiment", "sentiment");
        check("s3://models/sentiment/", "sentiment");
        check("tests/fixtures/sentiment", "sentiment");
        check("/srv/models/fraud/", "fraud");
        check("file:///srv/m", "m");
        check("/srv/bundle.zip", "bundle");
        check("runs:/0123456789abcdef/model", "model");
        check("/", "model");
    }

    fn check(input: &str, expected: ModelUri) {
        assert_eq!(
            ModelUri::parse(input).unwrap(),
            expected,
            "parse({input:?})"
        );
    }

    fn check_remote(input: &str, expected: RemoteUri, printed: &str) {
        check(input, ModelUri::Remote(expected.clone()));
        assert_eq!(expected.to_string(), printed, "display of {input:?}");
    }

    #[test]
    fn percent_escapes() {
        let check = |text: &str, expected: Option<&str>| {
            assert_eq!(percent_decode(text).as_deref(), expected, "{text:?}")
        };
        check("", Some(""));
        check("plain/path", Some("plain/path"));
        check("a%20b", Some("a b"));
        check("%2F", Some("/"));
        check("%2f", Some("/"));
        check("%e2%82%ac", Some("€"));
        check("%E2%82%AC", Some("€"));
        check("%2525", Some("%25"));
        check("p%40ss%3Aword", Some("p@ss:word"));
        check("%+1", None);
        check("%-1", None);
        check("%", None);
        check("a%", None);
        check("a%2", None);
        check("%zz", None);
        check("%ff", None);
        check("%e2%82", None);
    }

    fn check_error(input: &str, expected_reason: &str) {
        let err = ModelUri::parse(input).expect_err(input);
        let text = err.to_string();
        assert!(
            text.contains(expected_reason),
            "parse({input:?}): {text:?} lacks {expected_reason:?}"
        );
        assert!(text.contains(input.trim()), "{text:?} should name the URI");
        assert!(!err.is_transient());
    }

    fn version(name: &str, version: &str) -> RemoteUri {
        RemoteUri::Version {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn models_forms() {
        check_remote(
            "models:/sentiment/3",
            version("sentiment", "3"),
            "models:/sentiment/3",
        );
        check_remote(
            "models:/sentiment@champion",
            RemoteUri::Alias {
                name: "sentiment".into(),
                alias: "champion".into(),
            },
            "models:/sentiment@champion",
        );
        check_remote(
            "models:/a@b@prod",
            RemoteUri::Alias {
                name: "a@b".into(),
                alias: "prod".into(),
            },
            "models:/a@b@prod",
        );
        check_remote(
            "models:/sentiment/production",
            RemoteUri::Stage {
                name: "sentiment".into(),
                stage: Stage::Production,
            },
            "models:/sentiment/Production",
        );
        check_remote(
            "models:/sentiment/STAGING",
            RemoteUri::Stage {
                name: "sentiment".into(),
                stage: Stage::Staging,
            },
            "models:/sentiment/Staging",
        );
        check_remote(
            "models:/sentiment/None",
            RemoteUri::Stage {
                name: "sentiment".into(),
                stage: Stage::None,
            },
            "models:/sentiment/None",
        );
        check_remote(
            "models:/sentiment/archived",
            RemoteUri::Stage {
                name: "sentiment".into(),
                stage: Stage::Archived,
            },
            "models:/sentiment/Archived",
        );
        check_remote(
            "models:/sentiment/Latest",
            RemoteUri::Latest {
                name: "sentiment".into(),
            },
            "models:/sentiment/latest",
        );
        check_remote(
            "models:/m-0123abcd",
            RemoteUri::LoggedModel {
                model_id: "m-0123abcd".into(),
            },
            "models:/m-0123abcd",
        );
        check_remote(
            "models:///my model/12",
            version("my model", "12"),
            "models:/my model/12",
        );
        check_remote(" models:/x/1 ", version("x", "1"), "models:/x/1");
        check_remote("MODELS:/x/1", version("x", "1"), "models:/x/1");
    }

    #[test]
    fn runs_and_artifacts_forms() {
        check_remote(
            "runs:/0a1b2c/model",
            RemoteUri::Run {
                run_id: "0a1b2c".into(),
                path: "model".into(),
            },
            "runs:/0a1b2c/model",
        );
        check_remote(
            "runs:/0a1b2c/models/sentiment/",
            RemoteUri::Run {
                run_id: "0a1b2c".into(),
                path: "models/sentiment".into(),
            },
            "runs:/0a1b2c/models/sentiment",
        );
        check_remote(
            "runs:/0a1b2c",
            RemoteUri::Run {
                run_id: "0a1b2c".into(),
                path: String::new(),
            },
            "runs:/0a1b2c",
        );
        check_remote(
            "mlflow-artifacts:/0/models/m-1/artifacts",
            RemoteUri::Artifacts {
                host: None,
                path: "0/models/m-1/artifacts".into(),
            },
            "mlflow-artifacts:/0/models/m-1/artifacts",
        );
        check_remote(
            "mlflow-artifacts:///0/x",
            RemoteUri::Artifacts {
                host: None,
                path: "0/x".into(),
            },
            "mlflow-artifacts:/0/x",
        );
        check_remote(
            "mlflow-artifacts://mlflow.internal:5000/0/x/",
            RemoteUri::Artifacts {
                host: Some("mlflow.internal:5000".into()),
                path: "0/x".into(),
            },
            "mlflow-artifacts://mlflow.internal:5000/0/x",
        );
    }

    #[test]
    fn bucket_forms() {
        let bucket = |location: &str| RemoteUri::Bucket {
            location: location.into(),
        };
        check_remote(
            "s3://models/sentiment/",
            bucket("s3://models/sentiment"),
            "s3://models/sentiment",
        );
        check_remote(
            "S3://models/a/b",
            bucket("s3://models/a/b"),
            "s3://models/a/b",
        );
        check_remote("s3a://models/a", bucket("s3://models/a"), "s3://models/a");
        check_remote("gs://models/a", bucket("gs://models/a"), "gs://models/a");
        check_remote(
            "wasbs://c@acct.blob.core.windows.net/m/",
            bucket("wasbs://c@acct.blob.core.windows.net/m"),
            "wasbs://c@acct.blob.core.windows.net/m",
        );
        check_remote(
            "abfss://c@acct.dfs.core.windows.net/m \n/",
            bucket("abfss://c@acct.dfs.core.windows.net/m"),
            "abfss://c@acct.dfs.core.windows.net/m",
        );
        check_remote(
            "s3://models/a \n/",
            bucket("s3://models/a"),
            "s3://models/a",
        );
    }

    #[test]
    fn local_forms() {
        check(
            "/srv/models/sentiment",
            ModelUri::Local("/srv/models/sentiment".into()),
        );
        check("./model", ModelUri::Local("./model".into()));
        check("model:v1", ModelUri::Local("model:v1".into()));
        check(
            "file:///srv/models/a%20b",
            ModelUri::Local("/srv/models/a b".into()),
        );
        check("file://localhost/srv/m", ModelUri::Local("/srv/m".into()));
        check("file:/srv/m", ModelUri::Local("/srv/m".into()));
        check("/srv/bundle.ZIP", ModelUri::Zip("/srv/bundle.ZIP".into()));
        check(
            "file:///srv/bundle.zip",
            ModelUri::Zip("/srv/bundle.zip".into()),
        );
    }

    #[test]
    fn bad_uris() {
        check_error("", "it is empty");
        check_error("models:/", "the model name is missing");
        check_error("models:/ /1", "the model name is missing");
        check_error("models:/sentiment/", "nothing follows 'sentiment/'");
        check_error("models:/sentiment", "names neither a version nor an alias");
        check_error("models:/sentiment@", "the alias or the model name is empty");
        check_error("models:/@champion", "the alias or the model name is empty");
        check_error(
            "models:/sentiment/prod",
            "for an alias write models:/sentiment@prod",
        );
        check_error("models:/sentiment/1/MLmodel", "too many path segments");
        check_error("models://profile@databricks/x/1", "Databricks-only");
        check_error("runs:/", "the run id is missing");
        check_error("runs:/_ /", "'_ ' is not a run id");
        check_error("runs:/a b/model", "'a b' is not a run id");
        check_error("runs:/abc/model /", "'model ' begins or ends with a space");
        check_error("mlflow-artifacts:/// /", "' ' begins or ends with a space");
        check_error("runs:/abc/../secret", "may not contain '..'");
        check_error("mlflow-artifacts:/", "the artifact path is missing");
        check_error("mlflow-artifacts://5000/0/x", "a port without a host");
        check_error(
            "mlflow-artifacts://u:p@host/0/x",
            "credentials in an artifact URI",
        );
        check_error("mlflow-artifacts:/0/../../etc", "'.' or '..'");
        check_error("file://remote-host/x", "not host 'remote-host'");
        check_error("file:///a%zz", "invalid percent escape");
        check_error("file:///a%+1", "invalid percent escape");
        check_error("file:///a%", "invalid percent escape");
        check_error("hdfs://nn/model", "does not read hdfs:// directly");
        check_error("s3://bucket", "names a whole bucket");
        check_error("s3://Bucket/x", "not a bucket name");
        check_error(
            "https://example.com/model.zip",
            "does not read https:// directly",
        );
        check_error("gopher://x/y", "unknown scheme 'gopher:'");
    }

    #[test]
    fn remote_parse_refuses_local_paths() {
        let err = RemoteUri::parse("/srv/model").unwrap_err();
        assert!(err.to_string().contains("is a local path"), "{err}");
        assert_eq!(RemoteUri::parse("models:/x/2").unwrap(), version("x", "2"));
    }

    #[test]
    fn registered_names() {
        assert_eq!(version("x", "1").registered_name(), Some("x"));
        assert_eq!(
            RemoteUri::LoggedModel {
                model_id: "m-1".into()
            }
            .registered_name(),
            None
        );
    }
}
