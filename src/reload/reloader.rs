//! The [`Reloader`]: one configured model's source, its cache, and what it remembers between
//! checks (the live model's identity, the versions that failed). A check of it is
//! `super::check`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::budget::{Budget, Member};
use super::cache::{Cache, Manifest};
use super::decide::{decide, Action, Identity};
use super::{on_disk, SetupError};
use crate::config::{Config, LoadMode, ReloadPolicy};
use crate::live::Live;
use crate::metrics::ModelMetrics;
use crate::promote::shadow::Slot;
use crate::registry::{self, MlflowClient, ModelUri, RemoteUri};
use crate::sdnotify::Notifier;

/// Where models come from.
pub enum Source {
    /// A local model directory (or `file://` path), followed by the file watcher.
    Local { dir: PathBuf },
    /// A local `.zip` bundle.
    Zip { path: PathBuf },
    /// A registry or tracking-server URI, followed by the poller.
    Remote {
        uri: RemoteUri,
        client: MlflowClient,
        /// The same client without retries: when nothing is live yet but the cache has a
        /// last-known-good model, an unreachable registry should not delay serving it.
        impatient: MlflowClient,
    },
}

impl Source {
    /// The source `uri` names, with registry clients configured from the `MLFLOW_*`
    /// variables `env` returns.
    pub fn from_uri(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Source, SetupError> {
        Ok(match ModelUri::parse(uri)? {
            ModelUri::Local(dir) => Source::Local { dir },
            ModelUri::Zip(path) => Source::Zip { path },
            ModelUri::Remote(remote) => {
                let settings = registry::hotserve_settings(env)?;
                let needs_mlflow = !matches!(remote, RemoteUri::Bucket { .. });
                if needs_mlflow
                    && settings.tracking_uri.is_none()
                    && settings.registry_uri.is_none()
                {
                    return Err(SetupError::NoTrackingUri { uri: uri.into() });
                }
                let impatient = MlflowClient::new(registry::MlflowSettings {
                    max_retries: 0,
                    ..settings.clone()
                })?;
                Source::Remote {
                    uri: remote,
                    client: MlflowClient::new(settings)?,
                    impatient,
                }
            }
        })
    }
}

/// One configured model as its reload pipeline sees it: `MODEL_URI` (the one-model form) or
/// one entry of `models`, with the global settings it does not override filled in.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The configured name: routes, `/health`, the `model` label of metrics, logs, and the
    /// name reported for local models.
    pub name: String,
    /// The URI as configured (or the bundled model's path): the key of the last-good record.
    pub uri: String,
    /// How often to poll a registry URI (`None`: never).
    pub poll_interval: Option<Duration>,
    pub reload_policy: ReloadPolicy,
    /// How a version that passed the gate goes live (`promotion`, `shadow_*`).
    pub promotion: crate::promote::Promotion,
    /// When it is loaded into memory (`load`).
    pub load: LoadMode,
    /// Never unloaded to make room under `memory_budget` (`pin`).
    pub pin: bool,
}

impl Plan {
    /// The one-model form's name: `model_name`, else [`ModelUri::default_name`].
    pub fn one_model_name(config: &Config, uri: &str) -> String {
        config.model_name.clone().unwrap_or_else(|| {
            ModelUri::parse(uri).map_or_else(|_| "model".to_string(), |uri| uri.default_name())
        })
    }
}

/// The reload pipeline of one configured model.
pub struct Reloader {
    pub config: Arc<Config>,
    /// The model's name, URI, poll interval and reload policy.
    pub plan: Plan,
    pub live: Arc<Live>,
    /// The version compared with the live one before a swap (`promotion: shadow`), shared
    /// with the transports that copy requests to it.
    pub shadow: Arc<Slot>,
    /// This model's metrics.
    pub metrics: Arc<ModelMetrics>,
    /// systemd notifications (`READY=1` when the model goes live after a failed start).
    pub notifier: Notifier,
    pub source: Source,
    /// Validated models on disk; only this pipeline writes it.
    pub cache: Cache,
    /// What is remembered between checks.
    memory: Mutex<Memory>,
    /// Writes outcomes to the registry as version tags (`report_to_registry`, registry URIs).
    pub reporter: Option<Arc<crate::promote::tags::Reporter>>,
    /// The daemon's memory budget, shared by every model.
    pub budget: Arc<Budget>,
    /// This model as the budget counts it (and the version it loads while parked).
    pub member: Arc<Member>,
    /// An unload through the API is waiting for the model's last requests.
    unloading: AtomicBool,
}

/// What a [`Reloader`] remembers between checks.
#[derive(Default)]
struct Memory {
    /// Listing keys (or local digests) of versions that failed the gate -> why. Not fetched
    /// again until the source points somewhere else.
    known_bad: HashMap<String, String>,
    /// The identity of the model this pipeline made live last.
    live: Option<Identity>,
}

impl Reloader {
    /// A pipeline for `source`, caching in `cache` (opened by the caller, off the runtime),
    /// counted in `budget`.
    pub fn new(
        config: Arc<Config>,
        plan: Plan,
        metrics: Arc<ModelMetrics>,
        notifier: Notifier,
        source: Source,
        cache: Cache,
        budget: Arc<Budget>,
    ) -> Reloader {
        let live = Arc::new(Live::new(metrics.clone()));
        let member = Arc::new(Member::new(
            &plan.name,
            &plan.uri,
            plan.pin,
            live.clone(),
            metrics.clone(),
        ));
        budget.join(member.clone());
        let reporter = match &source {
            Source::Remote { client, .. } if config.report_to_registry => {
                Some(Arc::new(crate::promote::tags::Reporter::new(
                    client.clone(),
                    config.instance_name.clone(),
                    metrics.clone(),
                )))
            }
            _ => None,
        };
        let serving = Arc::downgrade(&live);
        cache.follow_live(move || Some(serving.upgrade()?.current()?.info.dir.clone()));
        Reloader {
            reporter,
            config,
            plan,
            live,
            shadow: Arc::default(),
            metrics,
            notifier,
            source,
            cache,
            memory: Mutex::new(Memory::default()),
            budget,
            member,
            unloading: AtomicBool::new(false),
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// How often to poll: the model's interval for registry URIs; local sources are followed
    /// by the file watcher instead.
    pub fn poll_interval(&self) -> Option<Duration> {
        match self.source {
            Source::Remote { .. } => self.plan.poll_interval,
            Source::Local { .. } | Source::Zip { .. } => None,
        }
    }

    /// The registered model name the webhook filters on, when there is one.
    pub fn registered_name(&self) -> Option<String> {
        match &self.source {
            Source::Remote { uri, .. } => uri.registered_name().map(str::to_string),
            Source::Local { .. } | Source::Zip { .. } => None,
        }
    }

    /// The local directory to watch, if the source is one.
    pub fn watched_dir(&self) -> Option<&Path> {
        match &self.source {
            Source::Local { dir } => Some(dir),
            Source::Zip { .. } | Source::Remote { .. } => None,
        }
    }

    /// Whether the source is on this machine (a failed first load then cannot get better by
    /// waiting for a registry).
    pub fn is_local(&self) -> bool {
        !matches!(self.source, Source::Remote { .. })
    }

    /// Decides what to do with `found` given what this pipeline remembers.
    pub(super) fn decide(&self, found: &Identity, cached: Option<&Manifest>) -> Action {
        let memory = self.memory();
        decide(memory.live.as_ref(), found, &memory.known_bad, cached)
    }

    /// Remembers that the version with listing key `key` failed, and why.
    pub(super) fn remember_bad(&self, key: &str, why: String) {
        self.memory().known_bad.insert(key.to_string(), why);
    }

    /// The identity of the model this pipeline made live last.
    pub(super) fn live_identity(&self) -> Option<Identity> {
        self.memory().live.clone()
    }

    /// Tags `version` of `name` in the registry with `status` (`report_to_registry`).
    pub(super) fn report_to_registry(
        &self,
        name: &str,
        version: &str,
        status: crate::promote::tags::Status,
        reason: &str,
    ) {
        if let Some(reporter) = &self.reporter {
            reporter.report(name, version, status, reason);
        }
    }

    /// Remembers which model is live now.
    pub(super) fn remember_live(&self, identity: Identity) {
        self.memory().live = Some(identity);
    }

    /// Unloads the model through the API: kept valid on disk, loaded again only through the
    /// API; returns once the requests that held it have finished and it is freed.
    pub async fn unload(&self, why: String) {
        self.unloading.store(true, Ordering::SeqCst);
        match self.member.park(why.clone(), false) {
            Some(model) => {
                self.metrics.unloads.inc(&[("reason", "api")]);
                tracing::info!(model = %self.name(), "unloading the model (API); its last requests finish first");
                super::loader::release(model, super::loader::PATIENCE).await;
            }
            None => self.live.hold_parked(why),
        }
        self.unloading.store(false, Ordering::SeqCst);
    }

    /// Whether an unload through the API is waiting for the model's last requests.
    pub fn is_unloading(&self) -> bool {
        self.unloading.load(Ordering::SeqCst)
    }

    pub(super) async fn has_last_good(&self) -> bool {
        let cache = self.cache.clone();
        on_disk(move || cache.last_good().is_some())
            .await
            .unwrap_or(false)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}
