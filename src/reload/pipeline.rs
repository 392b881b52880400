//! Where a new version is checked: the reload pipeline for each kind of `MODEL_URI`.
//!
//! Registry URIs: resolve -> skip if the version and listing are unchanged, or known bad ->
//! reuse the cached copy or download into staging (atomic rename into the cache) -> validate
//! and warm up ([`crate::model::load`]) -> record in the cache -> publish. Local directories
//! and zip bundles are first copied or extracted into staging, so a directory being rewritten
//! can never be half-loaded, then compared by digest. All blocking work runs on tokio's
//! blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::cache::{Cache, Manifest};
use super::loader;
use crate::config::{Config, ReloadPolicy};
use crate::files::{combined_digest, digest_dir, hex};
use crate::live::{Attempt, Live};
use crate::metrics::Metrics;
use crate::model::{self, LoadOptions, Model};
use crate::registry::{self, MlflowClient, ModelUri, RemoteUri, Resolution};
use crate::sdnotify::Notifier;

/// Where models come from.
pub enum Source {
    /// A local model directory (or `file://` path).
    Local { dir: PathBuf },
    /// A local `.zip` bundle.
    Zip { path: PathBuf },
    /// A registry or tracking-server URI.
    Remote {
        uri: RemoteUri,
        client: MlflowClient,
        /// The same client without retries: when nothing is live yet but the cache has a
        /// last-known-good model, an unreachable registry should not delay serving it.
        impatient: MlflowClient,
    },
}

/// The reload pipeline and its memory of bad versions.
pub struct Reloader {
    pub config: Arc<Config>,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    /// `MODEL_URI` as configured (or the bundled model's path).
    pub uri: String,
    pub source: Source,
    pub cache: Cache,
    /// Name reported for local models.
    local_name: String,
    /// Versions that failed validation: listing key -> why. Not downloaded again.
    bad: Mutex<HashMap<String, String>>,
    /// The listing key (or local digest) of the live model.
    live_key: Mutex<Option<String>>,
}

/// What one check did.
enum Outcome {
    Unchanged {
        version: String,
    },
    Loaded {
        version: String,
    },
    SkippedBad {
        version: String,
        error: String,
    },
    /// The registry could not be reached, or the model could not be loaded.
    Failed {
        version: Option<String>,
        error: String,
        transient: bool,
    },
}

impl Reloader {
    /// Builds the pipeline for `uri`.
    pub fn new(
        config: Arc<Config>,
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        notifier: Notifier,
        uri: String,
        mlflow_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Reloader, String> {
        let source = match ModelUri::parse(&uri).map_err(|e| e.to_string())? {
            ModelUri::Local(dir) => Source::Local { dir },
            ModelUri::Zip(path) => Source::Zip { path },
            ModelUri::Remote(remote) => {
                let settings =
                    registry::hotserve_settings(mlflow_env).map_err(|e| e.to_string())?;
                if settings.tracking_uri.is_none() && settings.registry_uri.is_none() {
                    return Err(format!(
                        "MODEL_URI {uri} needs an MLflow server but MLFLOW_TRACKING_URI is not set; set it, e.g. MLFLOW_TRACKING_URI=http://mlflow.internal:5000"
                    ));
                }
                let impatient = MlflowClient::new(registry::MlflowSettings {
                    max_retries: 0,
                    ..settings.clone()
                })
                .map_err(|e| e.to_string())?;
                let client = MlflowClient::new(settings).map_err(|e| e.to_string())?;
                Source::Remote {
                    uri: remote,
                    client,
                    impatient,
                }
            }
        };
        let local_name = config.model_name.clone().unwrap_or_else(|| match &source {
            Source::Local { dir } => name_of(dir),
            Source::Zip { path } => name_of(&path.with_extension("")),
            Source::Remote { .. } => "model".into(),
        });
        let cache = Cache::open(&config.cache_dir).map_err(|err| {
            format!(
                "cannot use the model cache at {}: {err}; set HOTSERVE_CACHE_DIR (or --cache-dir) to a writable directory",
                config.cache_dir.display()
            )
        })?;
        Ok(Reloader {
            config,
            live,
            metrics,
            notifier,
            uri,
            source,
            cache,
            local_name,
            bad: Mutex::new(HashMap::new()),
            live_key: Mutex::new(None),
        })
    }

    /// How often to poll: the configured interval for registry URIs; local sources are
    /// followed by the file watcher instead.
    pub fn poll_interval(&self) -> Option<Duration> {
        match self.source {
            Source::Remote { .. } => self.config.poll_interval,
            _ => None,
        }
    }

    /// The registered model name the webhook filters on, when there is one.
    pub fn registered_name(&self) -> Option<String> {
        match &self.source {
            Source::Remote { uri, .. } => uri.registered_name().map(str::to_string),
            _ => None,
        }
    }

    /// The local directory to watch, if the source is one.
    pub fn watched_dir(&self) -> Option<&Path> {
        match &self.source {
            Source::Local { dir } => Some(dir),
            _ => None,
        }
    }

    /// Runs one check; returns false when it failed in a way worth retrying soon.
    pub async fn check(&self, trigger: &'static str) -> bool {
        let started = Instant::now();
        let signal = trigger == "signal";
        let was_live = self.live.current().is_some();
        if signal {
            self.notifier.reloading();
        }
        let outcome = match &self.source {
            Source::Local { dir } => self.check_local(dir.clone(), false).await,
            Source::Zip { path } => self.check_local(path.clone(), true).await,
            Source::Remote {
                uri,
                client,
                impatient,
            } => {
                let nothing_live_but_cached =
                    !was_live && self.cache.last_good(&self.uri).is_some();
                let client = if nothing_live_but_cached {
                    impatient
                } else {
                    client
                };
                self.check_remote(uri, client).await
            }
        };
        let elapsed = started.elapsed();
        let (result, version, error, retry) = match &outcome {
            Outcome::Unchanged { version } => ("unchanged", Some(version.clone()), None, false),
            Outcome::Loaded { version } => ("loaded", Some(version.clone()), None, false),
            Outcome::SkippedBad { version, error } => (
                "skipped_bad",
                Some(version.clone()),
                Some(error.clone()),
                false,
            ),
            Outcome::Failed {
                version,
                error,
                transient,
            } => ("failed", version.clone(), Some(error.clone()), *transient),
        };
        self.metrics.reloads.inc(&[("result", result)]);
        if matches!(
            outcome,
            Outcome::Loaded { .. }
                | Outcome::Failed {
                    transient: false,
                    ..
                }
        ) {
            self.metrics.reload_seconds.observe_duration(elapsed);
        }
        match &outcome {
            Outcome::Unchanged { version } => {
                tracing::debug!(%trigger, %version, "model unchanged")
            }
            Outcome::Loaded { version } => {
                tracing::info!(%trigger, uri = %self.uri, %version, elapsed_ms = elapsed.as_millis() as u64, "reload succeeded: now serving version {version}")
            }
            Outcome::SkippedBad { version, .. } => {
                tracing::debug!(%trigger, %version, "version is known bad; still serving the previous model")
            }
            Outcome::Failed { error, .. } => {
                tracing::warn!(%trigger, uri = %self.uri, elapsed_ms = elapsed.as_millis() as u64, "reload failed: {error}")
            }
        }
        let attempt = Attempt {
            at: SystemTime::now(),
            trigger: trigger.to_string(),
            result: result.to_string(),
            version,
            error: error.clone(),
            duration_ms: elapsed.as_millis() as u64,
        };
        self.live.update(|status| {
            status.last_check = Some(attempt.clone());
            if !matches!(outcome, Outcome::Unchanged { .. }) {
                status.last_reload = Some(attempt.clone());
            }
            match &error {
                Some(error) => status.last_error = Some(error.clone()),
                None => status.last_error = None,
            }
        });
        if let Some(model) = self.live.current() {
            // A failure elsewhere may have left an old message ("downloading ..."); restore.
            self.live.set_message(format!(
                "serving {}",
                crate::live::describe(&model.info.name, &model.info.version)
            ));
        } else if let Some(error) = &error {
            self.live.set_message(format!("no model: {error}"));
        }
        // systemd: a SIGHUP reload is closed by READY=1 whatever its outcome; a model going
        // live after a failed start is the (late) end of startup. The first start is app.rs's.
        let became_live = !was_live && self.live.is_ready();
        if trigger != "startup" && (signal || became_live) {
            self.notifier.notify("READY=1");
        }
        !retry
    }

    /// Local directories and zip bundles: copy/extract to staging, compare digests, load.
    async fn check_local(&self, path: PathBuf, is_zip: bool) -> Outcome {
        let staging = self.cache.staging_path();
        let max_bundle = self.config.max_bundle_bytes;
        let staged = {
            let staging = staging.clone();
            tokio::task::spawn_blocking(move || -> Result<(PathBuf, Vec<model::FileDigest>), String> {
                let root = if is_zip {
                    model::bundle::extract(&path, &staging, max_bundle).map_err(|e| e.to_string())?
                } else {
                    let copy_error = |e: std::io::Error| format!("cannot copy the model directory {}: {e}", path.display());
                    let before = super::watch::snapshot(&path).map_err(copy_error)?;
                    copy_dir(&path, &staging).map_err(copy_error)?;
                    if super::watch::snapshot(&path).map_err(copy_error)? != before {
                        return Err(format!("{CHANGING}: {} changed while it was being copied; retrying once it is stable", path.display()));
                    }
                    staging.clone()
                };
                let digests = digest_dir(&root).map_err(|e| e.to_string())?;
                Ok((root, digests))
            })
            .await
            .unwrap_or_else(|e| Err(format!("staging panicked: {e}")))
        };
        let (root, digests) = match staged {
            Ok(staged) => staged,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&staging);
                let transient = error.starts_with(CHANGING);
                return Outcome::Failed {
                    version: None,
                    error,
                    transient,
                };
            }
        };
        let digest = combined_digest(&digests);
        let version = format!("local-{}", &digest[..12]);
        if self.live.current().is_some_and(|m| m.info.digest == digest) {
            let _ = std::fs::remove_dir_all(&staging);
            return Outcome::Unchanged { version };
        }
        if let Some(error) = self.known_bad(&digest) {
            let _ = std::fs::remove_dir_all(&staging);
            return Outcome::SkippedBad { version, error };
        }
        let dest = self
            .cache
            .model_dir(&format!("local-{}", self.local_name), &digest[..12]);
        if dest.exists() {
            self.cache.remove(&dest);
        }
        let moved = std::fs::create_dir_all(dest.parent().expect("cache dirs have parents"))
            .and_then(|_| std::fs::rename(&root, &dest));
        let _ = std::fs::remove_dir_all(&staging);
        if let Err(err) = moved {
            return Outcome::Failed {
                version: Some(version),
                error: format!("cannot move the model into the cache: {err}"),
                transient: false,
            };
        }
        let manifest = Manifest {
            uri: self.uri.clone(),
            name: self.local_name.clone(),
            version: version.clone(),
            aliases: Vec::new(),
            model_id: None,
            run_id: None,
            listing_key: digest.clone(),
            digests,
            dir: dest,
        };
        self.load_and_publish(manifest, &digest).await
    }

    /// Registry URIs.
    async fn check_remote(&self, uri: &RemoteUri, client: &MlflowClient) -> Outcome {
        let resolution = match registry::resolve(client, uri).await {
            Ok(resolution) => resolution,
            Err(err) => {
                let transient = err.is_transient();
                self.metrics
                    .registry_errors
                    .inc(&[("kind", if transient { "unreachable" } else { "rejected" })]);
                let error = err.to_string();
                if self.live.current().is_none() {
                    if let Some(outcome) = self.serve_last_good(&error).await {
                        return outcome;
                    }
                }
                return Outcome::Failed {
                    version: None,
                    error,
                    transient,
                };
            }
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.metrics
            .last_registry_success
            .store(now, Ordering::Relaxed);
        let name = resolution
            .name
            .clone()
            .or_else(|| resolution.model_id.clone())
            .or_else(|| resolution.run_id.clone())
            .unwrap_or_else(|| "model".into());
        let version = resolution
            .version
            .clone()
            .or_else(|| resolution.model_id.clone())
            .or_else(|| resolution.run_id.clone())
            .unwrap_or_else(|| "0".into());
        let listing_key = listing_key(&resolution);
        if let Some(live) = self.live.current() {
            if live.info.name == name
                && live.info.version == version
                && self.live_key().as_ref() == Some(&listing_key)
            {
                self.live.update(|status| status.from_cache = false);
                return Outcome::Unchanged { version };
            }
        }
        if let Some(error) = self.known_bad(&listing_key) {
            return Outcome::SkippedBad { version, error };
        }
        let dest = self.cache.model_dir(&name, &version);
        let manifest = match self.cache.manifest(&name, &version) {
            Some(manifest) if manifest.listing_key == listing_key => {
                tracing::info!(%name, %version, "using the cached copy (no download)");
                manifest
            }
            _ => {
                if dest.exists() {
                    self.cache.remove(&dest);
                }
                self.live.set_message(format!(
                    "downloading {}",
                    crate::live::describe(&name, &version)
                ));
                let digests = match registry::download(client, &resolution, &dest).await {
                    Ok(digests) => digests,
                    Err(err) => {
                        let transient = err.is_transient();
                        if !transient {
                            self.remember_bad(&listing_key, &err.to_string());
                        }
                        return Outcome::Failed {
                            version: Some(version),
                            error: err.to_string(),
                            transient,
                        };
                    }
                };
                Manifest {
                    uri: self.uri.clone(),
                    name: name.clone(),
                    version: version.clone(),
                    aliases: resolution.aliases.clone(),
                    model_id: resolution.model_id.clone(),
                    run_id: resolution.run_id.clone(),
                    listing_key: listing_key.clone(),
                    digests,
                    dir: dest,
                }
            }
        };
        let manifest = Manifest {
            aliases: resolution.aliases.clone(),
            ..manifest
        };
        let outcome = self.load_and_publish(manifest, &listing_key).await;
        if matches!(outcome, Outcome::Loaded { .. }) {
            self.live.update(|status| status.from_cache = false);
        }
        outcome
    }

    /// The registry is unreachable and nothing is live: serve what this URI served last.
    async fn serve_last_good(&self, registry_error: &str) -> Option<Outcome> {
        let manifest = self.cache.last_good(&self.uri)?;
        tracing::warn!(version = %manifest.version, "the registry is unreachable; serving the last known good model from the cache");
        let key = manifest.listing_key.clone();
        match self.load_and_publish(manifest, &key).await {
            Outcome::Loaded { version } => {
                let error = format!(
                    "{registry_error} (serving cached version {version}; retrying the registry)"
                );
                self.live.update(|status| status.from_cache = true);
                Some(Outcome::Failed {
                    version: Some(version),
                    error,
                    transient: true,
                })
            }
            _ => None,
        }
    }

    /// Validates the model in `manifest.dir` and makes it live, following the reload policy.
    async fn load_and_publish(&self, manifest: Manifest, key: &str) -> Outcome {
        let version = manifest.version.clone();
        // The `resource` policy frees the old model before loading the new one; if the new
        // one fails, the old one is loaded again from its (cached) directory.
        let restore = match self.live.current() {
            Some(previous) if self.config.reload_policy == ReloadPolicy::Resource => {
                let restore = manifest_of(&previous, &self.uri);
                drop(previous);
                if let Some(old) = self.live.unload(&format!(
                    "reloading: unloaded the old model to load {} (reload_policy=resource)",
                    crate::live::describe(&manifest.name, &version)
                )) {
                    // Really free it (after its last request) before loading the new one.
                    loader::release(old, loader::PATIENCE).await;
                }
                Some(restore)
            }
            _ => None,
        };
        match self.load(&manifest).await {
            Ok(model) => {
                let live_dir = model.info.dir.clone();
                // The old model is freed when its last in-flight request finishes.
                if let Some(old) = self.live.publish(Arc::new(model)) {
                    loader::retire(old);
                }
                *self.live_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.to_string());
                if let Err(err) = self
                    .cache
                    .write_manifest(&manifest)
                    .and_then(|_| self.cache.record_last_good(&manifest))
                {
                    tracing::warn!(%err, "cannot record the model in the cache; a restart will download it again");
                }
                self.cache.prune(&live_dir, 5);
                Outcome::Loaded { version }
            }
            Err(error) => {
                self.remember_bad(key, &error);
                self.cache.remove(&manifest.dir);
                if let Some(restore) = restore {
                    match self.load(&restore).await {
                        Ok(model) => {
                            self.live.publish(Arc::new(model));
                        }
                        Err(err) => tracing::error!(
                            "cannot restore the previous model after a failed reload: {err}"
                        ),
                    }
                }
                Outcome::Failed {
                    version: Some(version),
                    error,
                    transient: false,
                }
            }
        }
    }

    async fn load(&self, manifest: &Manifest) -> Result<Model, String> {
        let options = LoadOptions {
            name: manifest.name.clone(),
            version: Some(manifest.version.clone()),
            source: self.uri.clone(),
            aliases: manifest.aliases.clone(),
            model_id: manifest.model_id.clone(),
            run_id: manifest.run_id.clone(),
            digests: Some(manifest.digests.clone()),
            ort_dylib_path: self.config.ort_dylib_path.clone(),
            intra_op_threads: self.config.intra_op_threads,
            sessions: self.config.inference_workers,
            max_sequence_length: self.config.max_sequence_length,
        };
        let dir = manifest.dir.clone();
        loader::run(move || {
            crate::failpoints::sleep("HOTSERVE_TEST_LOAD_DELAY_MS");
            model::load(&dir, &options)
        })
        .await?
        .map_err(|e| e.to_string())
    }

    fn live_key(&self) -> Option<String> {
        self.live_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn known_bad(&self, key: &str) -> Option<String> {
        self.bad
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn remember_bad(&self, key: &str, error: &str) {
        self.bad
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), error.to_string());
    }
}

/// Marks a local directory that was being written during the copy (worth a retry).
const CHANGING: &str = "the model directory is still changing";

/// Identifies a registry listing: name, version and every (path, size).
fn listing_key(resolution: &Resolution) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{:?}|{:?}|{:?}|{:?}|{}\n",
        resolution.name,
        resolution.version,
        resolution.model_id,
        resolution.run_id,
        resolution.artifact_uri
    ));
    let mut files: Vec<_> = resolution
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size))
        .collect();
    files.sort();
    for (path, size) in files {
        hasher.update(format!("{path} {size:?}\n"));
    }
    hex(&hasher.finalize())
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("model")
        .to_string()
}

/// Copies a directory tree (regular files and directories only; symlinks are refused).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if !from.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such directory",
        ));
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let target = to.join(entry.file_name());
        if file_type.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else if file_type.is_symlink() {
            // Follow links to regular files (common in mounted volumes such as ConfigMaps).
            let resolved = std::fs::canonicalize(entry.path())?;
            if resolved.is_dir() {
                copy_dir(&resolved, &target)?;
            } else {
                std::fs::copy(resolved, &target)?;
            }
        }
    }
    Ok(())
}

/// What is needed to load `model` again from its directory.
fn manifest_of(model: &Model, uri: &str) -> Manifest {
    Manifest {
        uri: uri.to_string(),
        name: model.info.name.clone(),
        version: model.info.version.clone(),
        aliases: model.info.aliases.clone(),
        model_id: model.info.model_id.clone(),
        run_id: model.info.run_id.clone(),
        listing_key: String::new(),
        digests: model.info.digests.clone(),
        dir: model.info.dir.clone(),
    }
}
