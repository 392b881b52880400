//! Why a check failed ([`ReloadError`]) and why the reload pipeline could not be set up at all
//! ([`SetupError`]). Whether a failure is worth retrying soon is a method of the error, decided
//! by its kind, never by its wording.

use std::path::PathBuf;

use super::budget::BudgetError;
use super::cache::CacheError;
use super::loader::LoaderError;
use crate::files::DigestError;
use crate::model::bundle::BundleError;
use crate::model::runtime::RuntimeError;
use crate::model::ModelError;
use crate::registry::RegistryError;

/// Why one check did not make a new version live.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The registry could not be asked, refused the request, or a download failed (boxed:
    /// registry errors are large and this travels through every check).
    #[error(transparent)]
    Registry(Box<RegistryError>),
    /// A local model directory could not be copied into staging.
    #[error("cannot copy the model directory {dir}: {source}")]
    Copy {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A local model directory changed while it was being copied: a writer is still at work.
    #[error("the model directory is still changing: {dir} changed while it was being copied; retrying once it is stable")]
    StillChanging { dir: PathBuf },
    /// A local directory's files do not match its `SHA256SUMS`: a writer is replacing the
    /// model in place and the copy mixes two versions.
    #[error("the model directory is still changing: {dir} mixes two versions ({why}); retrying once its files match SHA256SUMS")]
    Mixture { dir: PathBuf, why: String },
    /// A symbolic link in a local model directory resolves outside it: only links that stay
    /// inside are followed.
    #[error("{link} is a symbolic link to {target}, outside the model directory {dir}; only links that stay inside it are followed (as those of a Kubernetes ConfigMap or Secret volume do): copy the file into the model directory")]
    LinkOutside {
        /// The link, as the model directory names it.
        link: PathBuf,
        /// Where it resolves to.
        target: PathBuf,
        dir: PathBuf,
    },
    /// A symbolic link in a local model directory leads to a directory it is inside.
    #[error("{link} is a symbolic link to {target}, a directory it is inside: the model directory would be endless; remove the link")]
    LinkLoop { link: PathBuf, target: PathBuf },
    /// A local directory with neither a model nor version directories.
    #[error("{dir} holds neither an MLmodel file nor version directories (1/, 2/, ...); point MODEL_URI at a model directory or a model repository")]
    NoModel { dir: PathBuf },
    /// The staged copy could not be read back to digest it.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A `.zip` bundle could not be extracted safely.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The model failed the validation gate.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A validated model could not be moved into the cache.
    #[error("cannot move the model into the cache at {dir}: {source}; check the free space and permissions of HOTSERVE_CACHE_DIR")]
    Cache {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model-loading thread failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// File-system work on the blocking pool panicked.
    #[error("file work of the reload pipeline panicked: {0}")]
    Blocking(String),
    /// The version passed the gate but was refused in shadow (`promotion: shadow`).
    #[error("{version} was refused in shadow: {why}; still serving {serving}; it is not tried again until the registry points elsewhere")]
    Refused {
        /// The refused version, e.g. `sentiment v2`.
        version: String,
        /// The live version kept, e.g. `sentiment v1`.
        serving: String,
        why: String,
    },
    /// The registry could not be asked and nothing was live, and the last known good version
    /// in the cache could not be served either: both causes, since either may be the one to fix.
    #[error("{registry}; and the last known good version {version} in the cache could not be served: {fallback}")]
    NoFallback {
        /// Why the registry was not asked.
        registry: Box<ReloadError>,
        /// The cached version, e.g. `sentiment v3`.
        version: String,
        /// Why it was not served.
        fallback: Box<ReloadError>,
    },
    /// The model does not fit in `memory_budget` (or not now: the room is held by models in
    /// use).
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// The version went live, then the guard swapped the previous one back (`guard_window`).
    #[error("{version} was rolled back to {serving}: {why}; it is not tried again until the registry points elsewhere")]
    RolledBack {
        /// The version taken out, e.g. `sentiment v2`.
        version: String,
        /// The version serving again, e.g. `sentiment v1`.
        serving: String,
        why: String,
    },
}

impl ReloadError {
    /// True when the same check may succeed soon without anything changing in the registry:
    /// an unreachable or overloaded registry, a local directory still being written, or a
    /// problem on our side of the disk (full, unwritable, unreadable). Such failures are
    /// retried with backoff and never mark a version as bad; only what is wrong with the
    /// version itself (the gate, an unsafe bundle, a registry that refuses) does.
    pub fn is_transient(&self) -> bool {
        match self {
            ReloadError::Registry(err) => {
                err.is_transient() || matches!(**err, RegistryError::Io { .. })
            }
            ReloadError::StillChanging { .. }
            | ReloadError::Mixture { .. }
            | ReloadError::Copy { .. }
            | ReloadError::Digest(_)
            | ReloadError::Cache { .. }
            | ReloadError::Loader(_)
            | ReloadError::Blocking(_)
            | ReloadError::NoFallback { .. }
            | ReloadError::Budget(BudgetError::Busy { .. }) => true,
            // A model larger than the budget stays so until the budget changes.
            ReloadError::Budget(BudgetError::TooLarge { .. }) => false,
            // A provider that cannot start will not start in a second either: the next
            // poll or trigger tries again, without a burst of quick retries and warnings.
            ReloadError::Model(ModelError::Provider { .. }) => false,
            ReloadError::Model(err) => !err.blames_version(),
            ReloadError::NoModel { .. }
            | ReloadError::LinkOutside { .. }
            | ReloadError::LinkLoop { .. }
            | ReloadError::Bundle(_)
            | ReloadError::Refused { .. }
            | ReloadError::RolledBack { .. } => false,
        }
    }

    /// True when no execution provider of `execution_providers` could run the model (and the
    /// list does not end with `cpu`): at startup, when every model fails so, a configuration
    /// error rather than a wait.
    pub fn is_provider_refusal(&self) -> bool {
        matches!(self, ReloadError::Model(ModelError::Provider { .. }))
    }

    /// True when the failure is the version's own: its files failed the gate, its bundle is
    /// unsafe, the registry refused it, or promotion turned it down. Only then is it remembered
    /// as bad and its cached copy removed; what is wrong with this machine or this process
    /// (the ONNX Runtime library, the disk, memory, a panic, an unreachable registry) never
    /// costs a cached version.
    pub fn blames_version(&self) -> bool {
        match self {
            ReloadError::Model(err) => err.blames_version(),
            ReloadError::Bundle(_)
            | ReloadError::LinkOutside { .. }
            | ReloadError::LinkLoop { .. }
            | ReloadError::Refused { .. }
            | ReloadError::RolledBack { .. } => true,
            ReloadError::Registry(_) => !self.is_transient(),
            ReloadError::StillChanging { .. }
            | ReloadError::Mixture { .. }
            | ReloadError::Copy { .. }
            | ReloadError::Digest(_)
            | ReloadError::Cache { .. }
            | ReloadError::Loader(_)
            | ReloadError::Blocking(_)
            | ReloadError::NoFallback { .. }
            | ReloadError::Budget(_)
            | ReloadError::NoModel { .. } => false,
        }
    }
}

/// Why the daemon cannot start serving `MODEL_URI` at all. These are configuration mistakes:
/// the process exits with code 2 and the message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `MODEL_URI` is unset and the bundled model is not next to the binary or the sources.
    #[error("MODEL_URI is not set and the bundled model was not found; set MODEL_URI to models:/<name>@<alias> or a model directory")]
    NoModelUri,
    /// `MODEL_URI` (or an `MLFLOW_*` variable) does not parse.
    #[error(transparent)]
    Uri(Box<RegistryError>),
    /// A registry URI without a server to ask.
    #[error("MODEL_URI {uri} needs an MLflow server but MLFLOW_TRACKING_URI is not set; set it, e.g. MLFLOW_TRACKING_URI=http://mlflow.internal:5000")]
    NoTrackingUri { uri: String },
    /// Local sources that are not there: a directory that does not exist (or is a file), a
    /// `.zip` bundle that is not a file. Every configured model is checked alike, and all of
    /// them are reported at once; each problem names the model.
    #[error("{}", .problems.join("\n"))]
    Missing {
        /// One line per model, e.g. `model 'fraud' (models): /srv/models/fraud does not exist; ...`.
        problems: Vec<String>,
    },
    /// A model's cache folder cannot be created, written or locked.
    #[error("model {model}: {source}")]
    Cache {
        /// The configured name of the model.
        model: String,
        #[source]
        source: CacheError,
    },
    /// The ONNX Runtime library cannot be loaded: no model could be served.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model-loading thread could not run the check of ONNX Runtime.
    #[error(transparent)]
    Loader(#[from] LoaderError),
}

impl From<RegistryError> for ReloadError {
    fn from(error: RegistryError) -> Self {
        ReloadError::Registry(Box::new(error))
    }
}

impl From<RegistryError> for SetupError {
    fn from(error: RegistryError) -> Self {
        SetupError::Uri(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transience_follows_the_kind_of_failure() {
        let io = || std::io::Error::other("disk on fire");
        let cases: [(ReloadError, bool); 8] = [
            (ReloadError::StillChanging { dir: "/m".into() }, true),
            (
                ReloadError::from(RegistryError::Unreachable {
                    uri: "models:/s@champion".into(),
                    server: "http://mlflow:5000".into(),
                    reason: "connection refused".into(),
                    hint: String::new(),
                }),
                true,
            ),
            (
                ReloadError::Copy {
                    dir: "/m".into(),
                    source: io(),
                },
                true,
            ),
            (
                ReloadError::Cache {
                    dir: "/c".into(),
                    source: io(),
                },
                true,
            ),
            (
                ReloadError::from(RegistryError::Io {
                    uri: "models:/s@champion".into(),
                    action: "write",
                    path: "/c/s/.2.partial-1/model.onnx".into(),
                    source: std::io::Error::from_raw_os_error(28),
                }),
                true,
            ),
            (ReloadError::Loader(LoaderError::Panicked), true),
            (ReloadError::Blocking("boom".into()), true),
            (
                ReloadError::Model(ModelError::Runtime(RuntimeError::NotFound {
                    looked: "/nonexistent".into(),
                })),
                true,
            ),
        ];
        for (error, transient) in cases {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }

    #[test]
    fn only_what_is_wrong_with_a_version_blames_it() {
        let model = |error: ModelError| ReloadError::Model(error);
        let cases: [(ReloadError, bool); 7] = [
            (
                model(ModelError::Runtime(RuntimeError::NotFound {
                    looked: "/nonexistent".into(),
                })),
                false,
            ),
            (
                model(ModelError::Io {
                    path: "/c/m/model.onnx".into(),
                    source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                }),
                false,
            ),
            (
                model(ModelError::Graph {
                    path: "/c/m/model.onnx".into(),
                    why: "no logits".into(),
                }),
                true,
            ),
            (model(ModelError::Warmup("nan".into())), true),
            (ReloadError::Loader(LoaderError::Panicked), false),
            (
                ReloadError::from(RegistryError::Unreachable {
                    uri: "models:/s@champion".into(),
                    server: "http://mlflow:5000".into(),
                    reason: "connection refused".into(),
                    hint: String::new(),
                }),
                false,
            ),
            (
                ReloadError::Refused {
                    version: "s v2".into(),
                    serving: "s v1".into(),
                    why: "disagreed".into(),
                },
                true,
            ),
        ];
        for (error, blamed) in cases {
            assert_eq!(error.blames_version(), blamed, "{error}");
            if !blamed {
                assert!(error.is_transient(), "retried: {error}");
            }
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let cases = [
            (
                SetupError::NoTrackingUri {
                    uri: "models:/s@champion".into(),
                }
                .to_string(),
                "MODEL_URI models:/s@champion needs an MLflow server but MLFLOW_TRACKING_URI is not set; set it, e.g. MLFLOW_TRACKING_URI=http://mlflow.internal:5000",
            ),
            (
                ReloadError::StillChanging { dir: "/m".into() }.to_string(),
                "the model directory is still changing: /m changed while it was being copied; retrying once it is stable",
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }
}
