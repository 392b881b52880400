//! [`RegistryError`]: every way resolving or downloading a model can fail, each with one message
//! that names the model URI, says what the registry answered and what to do about it.
//!
//! Messages never carry credentials: server addresses are stored already redacted (see
//! [`super::settings::redact_uri`]) and HTTP client errors are rendered without their URL.

use std::path::PathBuf;

/// A failure of the registry layer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The `MODEL_URI` text does not parse.
    #[error("invalid model URI '{uri}': {reason}")]
    InvalidUri { uri: String, reason: String },

    /// `MLFLOW_*` variables that do not parse; all problems at once.
    #[error("invalid MLflow client settings: {}", problems.join("; "))]
    Settings { problems: Vec<String> },

    /// A remote URI was given but no usable tracking server is configured.
    #[error("cannot resolve {uri}: {reason}")]
    NoServer { uri: String, reason: String },

    /// Connection refused, DNS failure, TLS failure, dropped connections after every retry.
    #[error(
        "cannot reach the MLflow server at {server} for {uri}: {reason}; check MLFLOW_TRACKING_URI \
         and that the server is up{hint}"
    )]
    Unreachable {
        uri: String,
        server: String,
        reason: String,
        /// Extra advice (e.g. about certificates), starting with "; " when present.
        hint: String,
    },

    /// No answer within `MLFLOW_HTTP_REQUEST_TIMEOUT`.
    #[error(
        "the MLflow server at {server} did not answer within {timeout_secs} s for {uri}; check \
         that it is healthy or raise MLFLOW_HTTP_REQUEST_TIMEOUT"
    )]
    Timeout {
        uri: String,
        server: String,
        timeout_secs: f64,
    },

    /// 401 or 403.
    #[error(
        "the MLflow server at {server} refused access to {uri} (HTTP {status}: {message}); check \
         MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )]
    Unauthorized {
        uri: String,
        server: String,
        status: u16,
        message: String,
    },

    /// The registered model, version, run or logged model does not exist.
    #[error("{uri} does not exist: the registry says \"{message}\"; {hint}")]
    NotFound {
        uri: String,
        message: String,
        hint: String,
    },

    /// The model exists but the alias does not (MLflow answers 400 INVALID_PARAMETER_VALUE).
    #[error(
        "{uri}: registered model '{name}' has no alias '{alias}' (the registry says \"{message}\"); \
         {}",
        alias_advice(name, existing)
    )]
    AliasNotFound {
        uri: String,
        name: String,
        alias: String,
        message: String,
        /// Aliases that do exist, as `alias (version N)`.
        existing: Vec<String>,
    },

    /// `models:/<name>/<stage>` or `models:/<name>/latest` with nothing to pick from.
    #[error("{uri}: registered model '{name}' has no versions {where_}; {hint}")]
    NoVersions {
        uri: String,
        name: String,
        where_: String,
        hint: String,
    },

    /// The version (or logged model) exists but is not ready to be downloaded.
    #[error(
        "{uri} resolves to {what}, whose status is {status}{}; wait until it is READY or point \
         the URI at a version that is",
        status_message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
    )]
    NotReady {
        uri: String,
        what: String,
        status: String,
        status_message: Option<String>,
    },

    /// Any other error answer of the server.
    #[error(
        "{uri}: the MLflow server at {server} answered HTTP {status} to {endpoint}{}: {message}{}",
        error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        if is_transient_status(*status) { "; it will be retried" } else { "" }
    )]
    Server {
        uri: String,
        server: String,
        endpoint: String,
        status: u16,
        error_code: Option<String>,
        message: String,
    },

    /// A success answer that is not what MLflow sends.
    #[error(
        "{uri}: the MLflow server at {server} sent an unexpected answer to {endpoint}: {reason}; \
         check that MLFLOW_TRACKING_URI points at an MLflow tracking server"
    )]
    BadResponse {
        uri: String,
        server: String,
        endpoint: String,
        reason: String,
    },

    /// A search matched more registered models than it reads.
    #[error(
        "{uri}: the search stopped after {pages} pages ({read} models) with more to come; narrow \
         the filter"
    )]
    TooManyMatches {
        uri: String,
        read: usize,
        pages: usize,
    },

    /// `models:/m-<id>` against an MLflow 2.x server.
    #[error(
        "{uri}: the MLflow server at {server} has no logged-models API (it is older than MLflow 3); \
         use models:/<name>/<version> or runs:/<run_id>/<path>"
    )]
    LoggedModelsUnsupported { uri: String, server: String },

    /// The artifact location is in a store hotserve cannot read.
    #[error("{uri}: cannot fetch artifacts from '{artifact_uri}': {reason}")]
    UnsupportedArtifactUri {
        uri: String,
        artifact_uri: String,
        reason: String,
    },

    /// The artifact location lists no files.
    #[error(
        "{uri}: there are no files at {artifact_uri}; check that the model was logged completely \
         (mlflow.<flavor>.log_model) and that the URI's path is right"
    )]
    NoFiles { uri: String, artifact_uri: String },

    /// A listed path would escape the model directory, or a local source is a symlink.
    #[error(
        "{uri}: refusing artifact path '{path}': {reason}; the artifact listing is corrupt or \
         hostile, fix the model's artifacts in MLflow"
    )]
    UnsafePath {
        uri: String,
        path: String,
        reason: String,
    },

    /// The connection broke while a file was streaming.
    #[error(
        "{uri}: the download of '{path}' was cut short after {received} bytes: {reason}; the \
         connection to the MLflow server broke, try again"
    )]
    Interrupted {
        uri: String,
        path: String,
        received: u64,
        reason: String,
    },

    /// A complete transfer whose size differs from the listing.
    #[error(
        "{uri}: '{path}' has {actual} bytes but the artifact listing says {expected}; the \
         artifact changed during the download or the store is inconsistent, try again"
    )]
    SizeMismatch {
        uri: String,
        path: String,
        expected: u64,
        actual: u64,
    },

    /// An object store refused hotserve, or hotserve has no credentials for it: 401, 403, a
    /// missing bucket, credentials that cannot be found or do not work.
    #[error("{uri}: cannot read {store}: {reason}; {advice}")]
    StoreRefused {
        uri: String,
        /// The store and bucket, `s3://bucket`.
        store: String,
        reason: String,
        /// Which variables to set, from [`super::artifacts::store::Store::advice`].
        advice: String,
    },

    /// An object store failed in a way that may pass: throttling, 5xx, a broken connection,
    /// silence beyond the request timeout.
    #[error("{uri}: the object store {store} failed: {reason}; it will be retried")]
    StoreUnavailable {
        uri: String,
        store: String,
        reason: String,
    },

    /// Objects were added, removed or rewritten between the listing and the end of the
    /// download: a version is being published. Nothing was kept.
    #[error(
        "{uri}: the files at {artifact_uri} changed during the download ({what}); a new version \
         is being published, it will be tried again once the listing is stable"
    )]
    ListingChanged {
        uri: String,
        artifact_uri: String,
        what: String,
    },

    /// `download` never overwrites.
    #[error(
        "cannot download {uri} into {}: it already exists; remove it or choose a new directory",
        dest.display()
    )]
    DestinationExists { uri: String, dest: PathBuf },

    /// A local file operation failed.
    #[error("{uri}: cannot {action} {}: {source}", path.display())]
    Io {
        uri: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// True when trying again later may succeed without anyone changing anything: the server
    /// is down or overloaded, a request timed out, a transfer broke. The caller retries later
    /// and may keep serving (or fall back to) its cached model. False for answers that will not
    /// change by themselves: not found, bad alias, unauthorized, not READY, unsafe paths.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::Interrupted { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::StoreUnavailable { .. }
            | RegistryError::ListingChanged { .. } => true,
            RegistryError::Server { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// HTTP statuses MLflow's client retries (`_TRANSIENT_FAILURE_RESPONSE_CODES`).
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

fn alias_advice(name: &str, existing: &[String]) -> String {
    if existing.is_empty() {
        format!(
            "the model has no aliases at all; set one with MlflowClient().set_registered_model_alias\
             ('{name}', '<alias>', <version>) or use models:/{name}/<version>"
        )
    } else {
        format!("existing aliases: {}; use one of them", existing.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: RegistryError, expected: &str, transient: bool) {
        assert_eq!(err.to_string(), expected);
        assert_eq!(
            err.is_transient(),
            transient,
            "is_transient of {expected:?}"
        );
    }

    #[test]
    fn messages() {
        check(
            RegistryError::Unreachable {
                uri: "models:/s@champion".into(),
                server: "http://127.0.0.1:5000".into(),
                reason: "connection refused".into(),
                hint: String::new(),
            },
            "cannot reach the MLflow server at http://127.0.0.1:5000 for models:/s@champion: \
             connection refused; check MLFLOW_TRACKING_URI and that the server is up",
            true,
        );
        check(
            RegistryError::AliasNotFound {
                uri: "models:/s@champ".into(),
                name: "s".into(),
                alias: "champ".into(),
                message: "Registered model alias champ not found.".into(),
                existing: vec![
                    "champion (version 3)".into(),
                    "challenger (version 4)".into(),
                ],
            },
            "models:/s@champ: registered model 's' has no alias 'champ' (the registry says \
             \"Registered model alias champ not found.\"); existing aliases: champion (version 3), \
             challenger (version 4); use one of them",
            false,
        );
        check(
            RegistryError::AliasNotFound {
                uri: "models:/s@x".into(),
                name: "s".into(),
                alias: "x".into(),
                message: "m".into(),
                existing: vec![],
            },
            "models:/s@x: registered model 's' has no alias 'x' (the registry says \"m\"); the \
             model has no aliases at all; set one with MlflowClient().set_registered_model_alias\
             ('s', '<alias>', <version>) or use models:/s/<version>",
            false,
        );
        check(
            RegistryError::Unauthorized {
                uri: "models:/s/1".into(),
                server: "https://mlflow.example".into(),
                status: 401,
                message: "invalid token".into(),
            },
            "the MLflow server at https://mlflow.example refused access to models:/s/1 (HTTP 401: \
             invalid token); check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and \
             MLFLOW_TRACKING_PASSWORD",
            false,
        );
        check(
            RegistryError::NotReady {
                uri: "models:/s/2".into(),
                what: "version 2 of 's'".into(),
                status: "PENDING_REGISTRATION".into(),
                status_message: Some("copying".into()),
            },
            "models:/s/2 resolves to version 2 of 's', whose status is PENDING_REGISTRATION \
             (copying); wait until it is READY or point the URI at a version that is",
            false,
        );
        check(
            RegistryError::Server {
                uri: "models:/s/2".into(),
                server: "http://h".into(),
                endpoint: "/api/2.0/mlflow/model-versions/get".into(),
                status: 503,
                error_code: Some("TEMPORARILY_UNAVAILABLE".into()),
                message: "busy".into(),
            },
            "models:/s/2: the MLflow server at http://h answered HTTP 503 to \
             /api/2.0/mlflow/model-versions/get (TEMPORARILY_UNAVAILABLE): busy; it will be retried",
            true,
        );
        check(
            RegistryError::Server {
                uri: "models:/s/2".into(),
                server: "http://h".into(),
                endpoint: "/x".into(),
                status: 400,
                error_code: None,
                message: "bad".into(),
            },
            "models:/s/2: the MLflow server at http://h answered HTTP 400 to /x: bad",
            false,
        );
        check(
            RegistryError::SizeMismatch {
                uri: "models:/s/2".into(),
                path: "model.onnx".into(),
                expected: 10,
                actual: 5,
            },
            "models:/s/2: 'model.onnx' has 5 bytes but the artifact listing says 10; the artifact \
             changed during the download or the store is inconsistent, try again",
            true,
        );
    }

    #[test]
    fn search_messages() {
        check(
            RegistryError::TooManyMatches {
                uri: "registered models matching \"name LIKE '%'\"".into(),
                read: 100_000,
                pages: 100,
            },
            "registered models matching \"name LIKE '%'\": the search stopped after 100 pages \
             (100000 models) with more to come; narrow the filter",
            false,
        );
    }

    #[test]
    fn store_messages() {
        check(
            RegistryError::StoreRefused {
                uri: "s3://models/sentiment".into(),
                store: "s3://models".into(),
                reason: "access denied".into(),
                advice: "set AWS_ACCESS_KEY_ID".into(),
            },
            "s3://models/sentiment: cannot read s3://models: access denied; set AWS_ACCESS_KEY_ID",
            false,
        );
        check(
            RegistryError::StoreUnavailable {
                uri: "models:/s/1".into(),
                store: "s3://models".into(),
                reason: "503 SlowDown".into(),
            },
            "models:/s/1: the object store s3://models failed: 503 SlowDown; it will be retried",
            true,
        );
        check(
            RegistryError::ListingChanged {
                uri: "s3://m/s".into(),
                artifact_uri: "s3://m/s".into(),
                what: "'x' was added".into(),
            },
            "s3://m/s: the files at s3://m/s changed during the download ('x' was added); a new \
             version is being published, it will be tried again once the listing is stable",
            true,
        );
    }

    #[test]
    fn transient_statuses() {
        for (status, transient) in [
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (400, false),
            (401, false),
            (404, false),
            (501, false),
        ] {
            assert_eq!(is_transient_status(status), transient, "{status}");
        }
    }
}
