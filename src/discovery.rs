//! Discovery (`discover_filter`, `discover_alias`): every registered model matching an MLflow
//! `search_registered_models` filter is served, at the version its alias points to, under
//! [`registry::served_name`] of its registered name (the name itself when it is a valid model
//! name; see that function for the escaping).
//!
//! One task ([`Discovery::run`]) searches the registry at start, every `poll_interval` (with
//! jitter) and when asked ([`App::discovery`]: a registry webhook, SIGHUP), and makes the set
//! of discovered models follow what it found:
//! - a model found that is not served gets its own reload pipeline ([`Reloader`]: cache folder,
//!   budget membership, its URI `models:/<registered name>@<alias>`), is added to the
//!   [`ModelSet`](crate::state::ModelSet) and checked at once, then by its own reload loop, with
//!   the settings every configured model shares (poll interval, reload policy, promotion,
//!   `load`);
//! - a served model that is no longer found (the tag or the alias is gone, the model was
//!   deleted) leaves the set at once (new requests get 404 like an unknown name), its reload
//!   loop stops, and its model is freed once the requests that hold it have finished;
//! - a search that fails (the registry is down) changes nothing: the last known set is served.
//!
//! A registered model whose served name is a configured model's is skipped (the configured one
//! wins) with one warning. Discovered models have no payload logging of their own and do not
//! hold up `/health/ready` (each has its own readiness: `/models/{name}/ready`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::live::status::Trigger;
use crate::metrics::Metrics;
use crate::registry::{self, MlflowClient, ModelUri};
use crate::reload::budget::Budget;
use crate::reload::cache::Cache;
use crate::reload::disk::DiskBudget;
use crate::reload::{self, loader, Plan, Reloader, SetupError, Source, Triggers};
use crate::sdnotify::Notifier;
use crate::state::{App, Served};

/// The registry clients and the settings of discovery, made once at start.
pub struct Discovery {
    config: Arc<Config>,
    filter: String,
    alias: String,
    client: MlflowClient,
    /// The same client without retries, for a model's check when its registry is down and a
    /// cached version can serve.
    impatient: MlflowClient,
    budget: Arc<Budget>,
    disk: Arc<DiskBudget>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    running: BTreeMap<String, Running>,
    /// Registered names not served (a configured model has the name, or the name cannot be
    /// a `models:/` URI), warned about once.
    skipped: BTreeSet<String>,
    /// The last search failed: a failure is warned about once, until a search succeeds.
    failing: bool,
}

/// A discovered model being served.
struct Running {
    reloader: Arc<Reloader>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Discovery {
    /// Discovery as `config` sets it (`None` without `discover_filter`), with registry clients
    /// from the `MLFLOW_*` variables `env` returns.
    pub fn new(
        config: Arc<Config>,
        env: &dyn Fn(&str) -> Option<String>,
        (budget, disk): (Arc<Budget>, Arc<DiskBudget>),
        metrics: Arc<Metrics>,
        notifier: Notifier,
    ) -> Result<Option<Discovery>, SetupError> {
        let Some(filter) = config.discover_filter.clone() else {
            return Ok(None);
        };
        let settings = registry::hotserve_settings(env)?;
        if settings.tracking_uri.is_none() && settings.registry_uri.is_none() {
            return Err(SetupError::NoTrackingUri {
                uri: format!("discover_filter {filter}"),
            });
        }
        let impatient = MlflowClient::new(registry::MlflowSettings {
            max_retries: 0,
            ..settings.clone()
        })?;
        let client = MlflowClient::new(settings)?;
        Ok(Some(Discovery {
            alias: config.discover_alias.clone(),
            // `*`: every registered model.
            filter: if filter == "*" { String::new() } else { filter },
            config,
            client,
            impatient,
            budget,
            disk,
            metrics,
            notifier,
            running: BTreeMap::new(),
            skipped: BTreeSet::new(),
            failing: false,
        }))
    }

    /// Follows the registry until `stopped`, then stops every discovered model's loop.
    pub async fn run(
        mut self,
        app: Arc<App>,
        triggers: Triggers,
        stopped: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stopped);
        // A trigger is finished once the search it asked for has run (SIGHUP's READY=1 waits).
        let mut asked = false;
        loop {
            let sync = self.sync(&app);
            tokio::select! {
                _ = sync => {}
                _ = &mut stopped => break,
            }
            if std::mem::take(&mut asked) {
                triggers.finished();
            }
            let wait = self
                .config
                .poll_interval
                .map(|poll| reload::jittered(poll, self.config.poll_jitter))
                .unwrap_or(Duration::from_secs(365 * 24 * 3600));
            tokio::select! {
                reason = triggers.next() => {
                    asked = true;
                    // A signal checks every model: the discovered ones too.
                    if reason == Trigger::Signal {
                        self.signal(&app);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stopped => break,
            }
        }
        for (_, running) in std::mem::take(&mut self.running) {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }

    /// Asks every discovered model for a check (SIGHUP).
    fn signal(&self, app: &App) {
        for served in app.models().iter().filter(|served| served.discovered) {
            served.triggers.request(Trigger::Signal);
        }
    }

    /// One search, and the set made to follow it.
    async fn sync(&mut self, app: &App) {
        let found = match registry::search_registered_models(&self.client, &self.filter).await {
            Ok(found) => found,
            Err(err) => {
                self.metrics
                    .discovery_errors
                    .fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(filter = %self.filter, "discovery: cannot search the registry ({err}); serving the models found before, and retrying every poll_interval");
                } else {
                    tracing::debug!(filter = %self.filter, "discovery: cannot search the registry ({err})");
                }
                return;
            }
        };
        if std::mem::take(&mut self.failing) {
            tracing::info!(filter = %self.filter, "discovery: the registry answers again");
        }
        let configured: BTreeSet<String> = app
            .models()
            .iter()
            .filter(|m| !m.discovered)
            .map(|m| m.name.clone())
            .collect();
        // served name -> registered name, for the models that have the alias.
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for model in &found {
            if model.alias(&self.alias).is_none() {
                continue;
            }
            let name = registry::served_name(&model.name);
            if configured.contains(&name) {
                if self.skipped.insert(model.name.clone()) {
                    tracing::warn!(registered = %model.name, "discovery: a configured model is named '{name}'; the configured one is served");
                }
                continue;
            }
            wanted.insert(name, model.name.clone());
        }
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove(app, &name).await;
        }
        for (name, registered) in wanted {
            if !self.running.contains_key(&name) {
                if let Err(err) = self.add(app, &name, &registered).await {
                    if self.skipped.insert(registered.clone()) {
                        tracing::warn!(%registered, "discovery: cannot serve the registered model: {err}");
                    }
                }
            }
        }
        self.metrics
            .discovered_models
            .store(self.running.len() as u64, Ordering::Relaxed);
    }

    /// Serves the registered model `registered` as `name`.
    async fn add(&mut self, app: &App, name: &str, registered: &str) -> Result<(), String> {
        let uri = format!("models:/{registered}@{}", self.alias);
        let remote = match ModelUri::parse(&uri) {
            Ok(ModelUri::Remote(remote)) => remote,
            Ok(_) => return Err(format!("{uri} is not a registry URI")),
            Err(err) => return Err(err.to_string()),
        };
        let source = Source::Remote {
            uri: remote,
            client: self.client.clone(),
            impatient: self.impatient.clone(),
        };
        let cache = {
            let (dir, name, uri) = (self.config.cache_dir.clone(), name.to_string(), uri.clone());
            let disk = self.disk.clone();
            reload::on_disk(move || Cache::open(&dir, &name, &uri, &disk))
                .await
                .map_err(|err| err.to_string())?
                .map_err(|err| err.to_string())?
        };
        let plan = Plan {
            name: name.to_string(),
            uri: uri.clone(),
            poll_interval: self.config.poll_interval,
            reload_policy: self.config.reload_policy,
            promotion: self.config.promotion_for(&Default::default()),
            load: self.config.load,
            pin: false,
        };
        let reloader = Arc::new(Reloader::new(
            self.config.clone(),
            plan,
            self.metrics.model(name),
            self.notifier.clone(),
            source,
            cache,
            self.budget.clone(),
        ));
        let triggers = Triggers::default();
        app.models
            .add(Served::new(reloader.clone(), triggers.clone(), None, true));
        tracing::info!(model = %name, %uri, "discovery: serving a registered model");
        reloader.live.set_message(format!("loading {uri}"));
        let (stop, mut stopped) = watch::channel(false);
        let task = {
            let reloader = reloader.clone();
            tokio::spawn(async move {
                let until_stopped = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                tokio::pin!(until_stopped);
                tokio::select! {
                    _ = reload::check(&reloader, Trigger::Startup) => {}
                    _ = &mut until_stopped => return,
                }
                reload::run(reloader, triggers, until_stopped).await;
            })
        };
        self.running.insert(
            name.to_string(),
            Running {
                reloader,
                stop,
                task,
            },
        );
        Ok(())
    }

    /// Stops serving `name`: out of the set at once, its loop stopped, its model freed once
    /// its last request has finished.
    async fn remove(&mut self, app: &App, name: &str) {
        let Some(running) = self.running.remove(name) else {
            return;
        };
        app.models.remove(name);
        let _ = running.stop.send(true);
        let _ = running.task.await;
        self.budget.leave(&running.reloader.member);
        running
            .reloader
            .metrics
            .unloads
            .inc(&[("reason", "removed")]);
        if let Some(model) = running.reloader.live.unload("no longer found by discovery") {
            tokio::spawn(loader::release(model, loader::PATIENCE));
        }
        running
            .reloader
            .metrics
            .loaded_bytes
            .store(0, Ordering::Relaxed);
        tracing::info!(model = %name, "discovery: the registered model is no longer found (filter, alias or the model itself gone); removed once its requests finish");
    }
}
