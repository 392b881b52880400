//! The daemon's lifecycle, in four named phases that [`run`] calls in order:
//!
//! 1. [`Daemon::wire`]: configuration into parts (for each configured model its source,
//!    cache, live handle and reload pipeline; one inference pool for all); nothing is served
//!    yet, and a configuration that cannot work stops here with [`StartError::Setup`].
//! 2. [`Daemon::listen`]: the HTTP server (and the gRPC server, when `grpc_listen` is set)
//!    starts first, so `/health/live` answers while the first model loads (readiness stays
//!    503).
//! 3. [`Daemon::first_load`], then [`Daemon::background`]: the first check of every model (at
//!    once), `READY=1`, and the background tasks (a reload loop and a file watcher per model,
//!    the fan-out of the daemon's triggers, systemd's watchdog and status line, the checks of
//!    the TLS and API key files).
//! 4. [`Daemon::drain`]: the one way out, whether the shutdown came before or after the first
//!    model: readiness 503, the drain delay, stop accepting, let requests finish, stop the
//!    background tasks and the inference pool.
//!
//! [`run`] takes its listener and its shutdown future as arguments, so tests drive it
//! in-process on `127.0.0.1:0` with a oneshot as the shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::access::{AccessLog, OpenError};
use crate::config::Config;
use crate::discovery::Discovery;
use crate::grpc;
use crate::http::{self, App, Served};
use crate::live::{describe, Live};
use crate::metrics::Metrics;
use crate::payload;
use crate::queue::{Pool, PoolConfig};
use crate::reload::budget::{self, Budget};
use crate::reload::cache::Cache;
use crate::reload::disk::DiskBudget;
use crate::reload::{
    self, on_disk, webhook::Verifier, Outcome, Plan, ReloadError, Reloader, SetupError, Source,
    Trigger, Triggers,
};
use crate::sdnotify::Notifier;
use crate::security::credentials::{self, CredentialError};
use crate::security::keys::ApiKeysFile;
use crate::security::tls::{self, Certificates};
use crate::state::ModelSet;

/// Where the bundled demo model is looked for when `MODEL_URI` is unset.
pub const BUNDLED_MODEL: &str = "tests/fixtures/sentiment";

/// How long the inference pool may take to finish queued work at shutdown.
const POOL_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work (`MODEL_URI`, `MLFLOW_*`, the cache directory).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The model is local and failed the gate: waiting cannot make it better.
    #[error("cannot serve the model: {0}")]
    Model(ReloadError),
    /// `grpc_listen` cannot be bound.
    #[error("cannot listen for gRPC on {addr}: {source}; set HOTSERVE_GRPC_LISTEN or --grpc-listen to a free address")]
    GrpcListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS files or `api_keys_file` cannot be used.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// `access_log` names a file that cannot be written.
    #[error(transparent)]
    AccessLog(#[from] OpenError),
    /// `payload_log` names a file that cannot be written.
    #[error(transparent)]
    PayloadLog(#[from] payload::OpenError),
    /// Every model was refused by `execution_providers` (none of them can run here and the
    /// list does not end with `cpu`): a configuration of this machine, not of a model.
    #[error("no model can run on execution_providers: {}", .problems.join("; "))]
    Providers {
        /// Each model's refusal, naming the model.
        problems: Vec<String>,
    },
}

impl StartError {
    /// The process exit code: 2 for configuration mistakes (systemd's
    /// `RestartPreventExitStatus=2` then stops restarting), 1 for a model that cannot be served.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Setup(_)
            | StartError::Credentials(_)
            | StartError::AccessLog(_)
            | StartError::PayloadLog(_)
            | StartError::Providers { .. } => 2,
            StartError::Model(_) | StartError::GrpcListen { .. } => 1,
        }
    }
}

/// The sockets the daemon serves on. A bare HTTP listener converts into it (no gRPC listener
/// given: `grpc_listen` is bound in the listen phase when it is set).
pub struct Listeners {
    /// The HTTP server's.
    pub http: TcpListener,
    /// The gRPC server's, bound by the caller (tests bind `127.0.0.1:0`); `None`: bind
    /// `grpc_listen` if it is set.
    pub grpc: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(http: TcpListener) -> Listeners {
        Listeners { http, grpc: None }
    }
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    env: &dyn Fn(&str) -> Option<String>,
    triggers: Triggers,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let mut daemon = Daemon::wire(config, env, triggers).await?;
    let server = daemon.listen(listeners.into()).await?;
    tokio::pin!(shutdown);
    match daemon.first_load(&mut shutdown).await {
        FirstLoad::Serving => {
            let background = daemon.background(&server.app);
            shutdown.await;
            let delay = daemon.config.drain_delay;
            daemon.drain(server, Some(background), delay).await;
            Ok(())
        }
        FirstLoad::Interrupted => {
            tracing::info!("shutting down before the first model was loaded");
            daemon.drain(server, None, Duration::ZERO).await;
            Ok(())
        }
        FirstLoad::Failed(error) => {
            daemon.drain(server, None, Duration::ZERO).await;
            Err(StartError::Model(error))
        }
        FirstLoad::Refused(problems) => {
            daemon.drain(server, None, Duration::ZERO).await;
            Err(StartError::Providers { problems })
        }
    }
}

/// The parts of a running daemon, wired once.
struct Daemon {
    config: Arc<Config>,
    /// The configured models, in configuration order (one for the `MODEL_URI` form).
    models: Vec<ModelRun>,
    /// Which of `models` the un-prefixed routes serve.
    default: usize,
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// The triggers `run` was given (SIGHUP, tests): fanned out to every model.
    triggers: Triggers,
    /// The certificate and key served, when `tls_cert_file` is set.
    tls: Option<Arc<Certificates>>,
    /// The API keys the model routes need, when `api_keys_file` is set.
    api_keys: Option<Arc<ApiKeysFile>>,
    /// Asks for a check of the credential files now (SIGHUP).
    check_credentials: Arc<tokio::sync::Notify>,
    access_log: Arc<AccessLog>,
    /// Each model's payload logging and the writers behind it.
    payload: payload::PayloadLogs,
    /// Discovery from the registry (`discover_filter`), until `background` starts it.
    discovery: Option<Discovery>,
    /// The memory budget every model counts in.
    budget: Arc<Budget>,
}

/// One configured model at run time: its pipeline and the triggers of its reload loop.
struct ModelRun {
    reloader: Arc<Reloader>,
    triggers: Triggers,
}

/// How the first check ended.
enum FirstLoad {
    /// A model is live, or the registry is retried in the background (readiness 503 until
    /// a model is live). With several models, also when some failed: they keep retrying.
    Serving,
    /// Shutdown was requested while the first model was loading.
    Interrupted,
    /// The one configured model is local and failed the gate; nothing will change by waiting.
    Failed(ReloadError),
    /// Every model was refused by `execution_providers` (each model's reason, named).
    Refused(Vec<String>),
}

/// The HTTP server task and the switch that stops it accepting.
struct Server {
    /// What the servers serve from (discovery adds and removes its models).
    app: Arc<App>,
    stop_accepting: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// The gRPC server, when `grpc_listen` is set: the same switch and task.
    grpc: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// The tasks that run while serving; stopped by [`Daemon::drain`].
struct Background {
    stop: watch::Sender<bool>,
    /// One reload loop per model.
    reload_loops: Vec<JoinHandle<()>>,
    /// Stop watching the models' directories when dropped.
    _watchers: Vec<notify::RecommendedWatcher>,
}

impl Daemon {
    /// Phase 1: configuration into parts. Checks what can be checked before serving.
    async fn wire(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
        triggers: Triggers,
    ) -> Result<Daemon, StartError> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let notifier = Notifier::from_env(env);
        let (tls, api_keys) = load_credentials(&config, &metrics).await?;
        let access_log = {
            let (to, metrics) = (config.access_log.clone(), metrics.clone());
            blocking(move || AccessLog::open(&to, metrics)).await??
        };
        let mut models = Vec::new();
        let ort_dylib_path = config.ort_dylib_path.clone();
        // A library that cannot be loaded is this machine's configuration, not any model's:
        // said at once, before a model is checked (and never held against a cached version).
        reload::loader::run(move || {
            crate::model::runtime::init(ort_dylib_path.as_deref()).map(drop)
        })
        .await
        .map_err(SetupError::Loader)?
        .map_err(SetupError::Runtime)?;
        let plans = plans(&config, env).await?;
        let missing = {
            let one_model = config.models.is_empty();
            let sources: Vec<LocalSource> = plans
                .iter()
                .map(|(plan, source)| {
                    let local = match source {
                        Source::Local { dir } => Some((dir.clone(), true)),
                        Source::Zip { path } => Some((path.clone(), false)),
                        Source::Remote { .. } => None,
                    };
                    (plan.name.clone(), plan.uri.clone(), local)
                })
                .collect();
            blocking(move || missing_sources(one_model, &sources)).await?
        };
        if !missing.is_empty() {
            return Err(SetupError::Missing { problems: missing }.into());
        }
        let budget = Arc::new(Budget::new(match config.memory_budget {
            None => None,
            Some(setting) => {
                let (limit, physical) =
                    blocking(|| (budget::cgroup_memory_limit(), budget::physical_memory())).await?;
                let (bytes, from) = setting.resolve(limit, physical);
                tracing::info!(
                    memory_budget = bytes,
                    "memory budget: {bytes} bytes ({from})"
                );
                metrics.memory_budget_bytes.store(bytes, Ordering::Relaxed);
                Some(bytes)
            }
        }));
        let disk = DiskBudget::new(config.cache_max_bytes, metrics.clone());
        for (plan, source) in plans {
            let cache = {
                let (cache_dir, name, uri, disk) = (
                    config.cache_dir.clone(),
                    plan.name.clone(),
                    plan.uri.clone(),
                    disk.clone(),
                );
                blocking(move || {
                    Cache::open(&cache_dir, &name, &uri, &disk).map_err(|source| {
                        SetupError::Cache {
                            model: name,
                            source,
                        }
                    })
                })
                .await??
            };
            let model_metrics = metrics.model(&plan.name);
            let reloader = Arc::new(Reloader::new(
                config.clone(),
                plan,
                model_metrics,
                notifier.clone(),
                source,
                cache,
                budget.clone(),
            ));
            models.push(ModelRun {
                reloader,
                triggers: Triggers::default(),
            });
        }
        // cache_max_bytes holds from the start (it may have been lowered since the last run).
        {
            let disk = disk.clone();
            blocking(move || disk.settle()).await?;
        }
        let discovery = Discovery::new(
            config.clone(),
            env,
            (budget.clone(), disk.clone()),
            metrics.clone(),
            notifier.clone(),
        )?;
        let payload = {
            let names: Vec<String> = models
                .iter()
                .map(|m| m.reloader.name().to_string())
                .collect();
            // `ce-source` names this host; `ce-namespace` the pod's, as KServe's logger does.
            let host = env("HOSTNAME").filter(|h| !h.is_empty());
            let namespace = env("POD_NAMESPACE").filter(|n| !n.is_empty());
            let (config, metrics) = (config.clone(), metrics.clone());
            blocking(move || {
                let host = host.unwrap_or_else(local_host_name);
                payload::open(&config, &names, &host, namespace.as_deref(), &metrics)
            })
            .await??
        };
        let default = match &config.default_model {
            Some(name) => models
                .iter()
                .position(|m| m.reloader.name() == name)
                .expect("config checks that default_model names a configured model"),
            None => 0,
        };
        let pool = Arc::new(Pool::start(
            PoolConfig {
                workers: config.inference_workers,
                max_batch_size: config.max_batch_size,
                max_batch_delay: config.max_batch_delay,
                max_batch_tokens: config.max_batch_tokens,
                queue_capacity: config.queue_capacity,
            },
            metrics.clone(),
        ));
        Ok(Daemon {
            config,
            models,
            default,
            pool,
            metrics,
            notifier,
            triggers,
            tls,
            api_keys,
            check_credentials: Arc::default(),
            access_log: Arc::new(access_log),
            payload,
            discovery,
            budget,
        })
    }

    /// Phase 2: the HTTP server (and the gRPC one), up before the first model.
    async fn listen(&self, listeners: Listeners) -> Result<Server, StartError> {
        let grpc_listener = match (listeners.grpc, self.config.grpc_listen) {
            (Some(listener), _) => Some(listener),
            (None, Some(addr)) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::GrpcListen { addr, source })?,
            ),
            (None, None) => None,
        };
        let listener = listeners.http;
        let served: Vec<Served> = self
            .models
            .iter()
            .map(|model| {
                Served::new(
                    model.reloader.clone(),
                    model.triggers.clone(),
                    self.payload.policies.get(model.reloader.name()).cloned(),
                    false,
                )
            })
            .collect();
        let default = self
            .models
            .get(self.default)
            .map(|model| model.reloader.name().to_string());
        let app = Arc::new(App {
            config: self.config.clone(),
            models: ModelSet::new(served, default),
            discovery: self.discovery.is_some().then(Triggers::default),
            pool: self.pool.clone(),
            budget: self.budget.clone(),
            metrics: self.metrics.clone(),
            webhook: self.config.webhook_secret.as_deref().map(Verifier::new),
            tls: self.tls.clone(),
            api_keys: self.api_keys.clone(),
            access_log: self.access_log.clone(),
        });
        let acceptor = self.tls.clone().map(|certificates| {
            // HTTP/2 for the clients that offer it, HTTP/1.1 for the others.
            tls::acceptor(
                certificates,
                &[b"h2", b"http/1.1"],
                self.config.header_read_timeout,
            )
        });
        let listen = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        for model in &self.models {
            let reloader = &model.reloader;
            tracing::info!(%listen, tls = acceptor.is_some(), api_keys = self.api_keys.is_some(), model = %reloader.name(), uri = %reloader.plan.uri, "hotserve listening; loading the model");
        }
        if self.models.is_empty() {
            // Discovered models only: they come with the first search.
            tracing::info!(%listen, tls = acceptor.is_some(), api_keys = self.api_keys.is_some(), filter = self.config.discover_filter.as_deref().unwrap_or_default(), "hotserve listening; discovering the models");
        }
        let grpc = grpc_listener.map(|listener| {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            // The same certificates as HTTP, offered for HTTP/2 only.
            let acceptor = self.tls.clone().map(|certificates| {
                tls::acceptor(certificates, &[b"h2"], self.config.header_read_timeout)
            });
            tracing::info!(grpc_listen = %addr, tls = acceptor.is_some(), "gRPC (inference.GRPCInferenceService) listening");
            let (stop_accepting, accepting_stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(grpc::serve(
                listener,
                acceptor,
                app.clone(),
                async move {
                    let _ = accepting_stopped.await;
                },
                self.config.shutdown_timeout,
            ));
            (stop_accepting, task)
        });
        let (stop_accepting, accepting_stopped) = oneshot::channel::<()>();
        let app_handle = app.clone();
        let task = tokio::spawn(http::serve(
            listener,
            acceptor,
            app,
            async move {
                let _ = accepting_stopped.await;
            },
            self.config.shutdown_timeout,
        ));
        Ok(Server {
            app: app_handle,
            stop_accepting,
            task,
            grpc,
        })
    }

    /// Phase 3a: the first check of every model, all at once. A cold start may download for
    /// minutes; a shutdown meanwhile abandons it (the partial downloads are removed when their
    /// futures are dropped). With one model this decides the start as it always did; with
    /// several, a model that fails is logged and keeps retrying (or being watched) while the
    /// others serve.
    async fn first_load(&self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> FirstLoad {
        let checks = self.models.iter().map(|model| {
            let reloader = &model.reloader;
            reloader
                .live
                .set_message(format!("loading {}", reloader.plan.uri));
            reload::check(reloader, Trigger::Startup)
        });
        let outcomes = tokio::select! {
            outcomes = futures_util::future::join_all(checks) => outcomes,
            _ = shutdown => return FirstLoad::Interrupted,
        };
        let mut failed = Vec::new();
        for (model, outcome) in self.models.iter().zip(outcomes) {
            if model.reloader.live.is_ready() {
                continue;
            }
            match outcome {
                Outcome::Failed { error, .. } | Outcome::ServingCached { error, .. } => {
                    failed.push((model, error))
                }
                // Not reachable with nothing live; keep serving and retrying all the same.
                Outcome::Unchanged { .. }
                | Outcome::Loaded { .. }
                | Outcome::Parked { .. }
                | Outcome::SkippedBad { .. } => {}
            }
        }
        let live: Vec<String> = self
            .models
            .iter()
            .filter_map(|model| {
                let live = &model.reloader.live;
                match (live.current(), live.parked()) {
                    (Some(current), _) => Some(describe(&current.info.name, &current.info.version)),
                    // Valid and loaded by its first request (`load: lazy`).
                    (None, Some(parked)) => Some(format!(
                        "{} (not loaded)",
                        describe(model.reloader.name(), &parked.version)
                    )),
                    (None, None) => None,
                }
            })
            .collect();
        if !live.is_empty() {
            self.notifier.ready(&format!("serving {}", live.join(", ")));
        } else if self.models.is_empty() {
            // Discovered models only: they come with the first search.
            self.notifier.ready("serving the models discovery finds");
        }
        // The providers are the machine's: when they refuse every model, no wait helps and
        // nothing would ever be served.
        if !failed.is_empty()
            && failed.len() == self.models.len()
            && failed.iter().all(|(_, e)| e.is_provider_refusal())
        {
            return FirstLoad::Refused(
                failed
                    .iter()
                    .map(|(model, error)| format!("model '{}': {error}", model.reloader.name()))
                    .collect(),
            );
        }
        let several = self.models.len() > 1;
        for (model, error) in failed {
            let reloader = &model.reloader;
            if !several && reloader.is_local() {
                return FirstLoad::Failed(error);
            }
            let then = if reloader.is_local() {
                "hotserve keeps watching it"
            } else {
                "hotserve keeps retrying"
            };
            tracing::error!(model = %reloader.name(), uri = %reloader.plan.uri, "no model could be loaded at startup: {error}; readiness stays 503 while {then}");
        }
        FirstLoad::Serving
    }

    /// Phase 3b: a reload loop and a file watcher per model, the fan-out of the daemon's
    /// triggers to every model (a signal also checks the TLS and API key files at once), the
    /// periodic checks of those files, and systemd's watchdog and status line.
    fn background(&mut self, app: &Arc<App>) -> Background {
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let mut reload_loops = Vec::new();
        let mut watchers = Vec::new();
        for model in &self.models {
            let reloader = &model.reloader;
            reload_loops.push(tokio::spawn(reload::run(
                reloader.clone(),
                model.triggers.clone(),
                until_stopped(stopped.clone()),
            )));
            let Some(dir) = reloader.watched_dir().filter(|_| self.config.watch) else {
                continue;
            };
            match reload::watch::spawn(dir, self.config.watch_debounce, model.triggers.clone()) {
                Ok(watcher) => watchers.push(watcher),
                Err(err) => {
                    tracing::warn!(%err, model = %reloader.name(), dir = %dir.display(), "cannot watch the model directory; changes need SIGHUP or POST /admin/reload");
                }
            }
        }
        if let (Some(discovery), Some(asked)) = (self.discovery.take(), app.discovery.clone()) {
            reload_loops.push(tokio::spawn(discovery.run(
                app.clone(),
                asked,
                until_stopped(stopped.clone()),
            )));
        }
        {
            let triggers = self.triggers.clone();
            // The discovery's trigger too: a signal searches the registry again.
            let models: Vec<Triggers> = self
                .models
                .iter()
                .map(|m| m.triggers.clone())
                .chain(app.discovery.clone())
                .collect();
            let notifier = self.notifier.clone();
            let check_credentials = self.check_credentials.clone();
            let stopped = until_stopped(stopped.clone());
            tokio::spawn(async move {
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        reason = triggers.next() => {
                            if reason == Trigger::Signal {
                                check_credentials.notify_one();
                            }
                            fan_out(reason, &models, &triggers, &notifier).await
                        }
                        _ = &mut stopped => return,
                    }
                }
            });
        }
        {
            let mut watched: Vec<Arc<dyn credentials::Check>> = Vec::new();
            if let Some(tls) = &self.tls {
                watched.push(tls.clone());
            }
            if let Some(api_keys) = &self.api_keys {
                watched.push(api_keys.clone());
            }
            tokio::spawn(credentials::watch(
                watched,
                self.config.credentials_check_interval,
                self.check_credentials.clone(),
                until_stopped(stopped.clone()),
            ));
        }
        if let Some(interval) = self.notifier.watchdog_interval() {
            let notifier = self.notifier.clone();
            let stopped = until_stopped(stopped.clone());
            tokio::spawn(async move {
                tokio::pin!(stopped);
                let mut ticker = tokio::time::interval(interval);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => notifier.notify("WATCHDOG=1"),
                        _ = &mut stopped => return,
                    }
                }
            });
        }
        self.follow_status(until_stopped(stopped));
        Background {
            stop,
            reload_loops,
            _watchers: watchers,
        }
    }

    /// systemd's `STATUS=` line follows the models' status messages (the one model's message,
    /// or `name: message` for each of several), until `stopped`.
    fn follow_status(&self, stopped: impl Future<Output = ()> + Send + 'static) {
        let notifier = self.notifier.clone();
        let lives: Vec<(String, Arc<Live>)> = self
            .models
            .iter()
            .map(|m| (m.reloader.name().to_string(), m.reloader.live.clone()))
            .collect();
        let mut lines: Vec<watch::Receiver<String>> =
            lives.iter().map(|(_, live)| live.subscribe()).collect();
        if lines.is_empty() {
            return;
        }
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let changed = tokio::select! {
                    (changed, _, _) = futures_util::future::select_all(
                        lines.iter_mut().map(|line| Box::pin(line.changed())),
                    ) => changed,
                    _ = &mut stopped => return,
                };
                if changed.is_err() {
                    return;
                }
                for line in &mut lines {
                    line.borrow_and_update();
                }
                notifier.status(&status_line(&lives));
            }
        });
    }

    /// Phase 4: readiness 503 at once, `delay` for load balancers to notice, then stop
    /// accepting, let in-flight requests finish (within `shutdown_timeout`), stop the
    /// background tasks and let the inference workers finish what is queued.
    async fn drain(self, server: Server, background: Option<Background>, delay: Duration) {
        tracing::info!(drain_delay = ?delay, "shutting down: readiness is 503 now");
        for model in &self.models {
            model.reloader.live.start_draining();
        }
        self.notifier.stopping();
        tokio::time::sleep(delay).await;
        if let Some(background) = &background {
            let _ = background.stop.send(true);
        }
        drop(server.stop_accepting);
        let grpc = async {
            if let Some((stop_accepting, task)) = server.grpc {
                drop(stop_accepting);
                let _ = task.await;
            }
        };
        let _ = tokio::join!(server.task, grpc);
        if let Some(background) = background {
            for reload_loop in background.reload_loops {
                let _ = reload_loop.await;
            }
        }
        let pool = self.pool.clone();
        let _ =
            tokio::time::timeout(POOL_SHUTDOWN_DEADLINE, blocking(move || pool.shutdown())).await;
        // Nothing is answered any more: the payload records still queued are delivered.
        let payload = self.payload;
        let _ =
            tokio::time::timeout(PAYLOAD_FLUSH_DEADLINE, blocking(move || payload.finish())).await;
        tracing::info!("stopped");
    }
}

/// How long the drain waits for the payload logs' writers to deliver what is queued (a sink
/// that is down gets one more try).
const PAYLOAD_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// How long the fan-out waits for the models' checks before it counts a daemon-level
/// trigger as served (as `POST /admin/reload?wait=true` does).
const FAN_OUT_WAIT: Duration = Duration::from_secs(300);

/// Passes one daemon-level trigger (SIGHUP, a test) to every model's reload loop and marks
/// it served once every model has checked. A signal is framed for systemd here, once for all
/// models: `RELOADING=1` now, `READY=1` when every model's check that started after it has
/// finished (what a `Type=notify-reload` unit waits for).
async fn fan_out(reason: Trigger, models: &[Triggers], triggers: &Triggers, notifier: &Notifier) {
    if reason == Trigger::Signal {
        notifier.reloading();
    }
    let tickets: Vec<(Triggers, u64)> = models
        .iter()
        .map(|model| (model.clone(), model.request(reason)))
        .collect();
    futures_util::future::join_all(
        tickets
            .iter()
            .map(|(model, ticket)| model.wait_for(*ticket, FAN_OUT_WAIT)),
    )
    .await;
    if reason == Trigger::Signal {
        notifier.notify("READY=1");
    }
    triggers.finished();
}

/// systemd's status line: the one model's message, or `name: message; ...` for several.
fn status_line(lives: &[(String, Arc<Live>)]) -> String {
    match lives {
        [(_, live)] => live.status().message,
        _ => lives
            .iter()
            .map(|(name, live)| format!("{name}: {}", live.status().message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Each configured model's plan and source.
async fn plans(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(Plan, Source)>, StartError> {
    // Discovered models only: nothing is configured (not the bundled model).
    if config.models.is_empty() && config.model_uri.is_none() && config.discover_filter.is_some() {
        return Ok(Vec::new());
    }
    if config.models.is_empty() {
        let uri = match &config.model_uri {
            Some(uri) => uri.clone(),
            None => blocking(find_bundled_model).await??,
        };
        let source = Source::from_uri(&uri, env)?;
        let plan = Plan {
            name: Plan::one_model_name(config, &uri),
            uri,
            poll_interval: config.poll_interval,
            reload_policy: config.reload_policy,
            promotion: config.promotion_for(&Default::default()),
            load: config.load,
            pin: false,
        };
        return Ok(vec![(plan, source)]);
    }
    config
        .models
        .iter()
        .map(|spec| {
            let source = Source::from_uri(&spec.uri, env)?;
            let plan = Plan {
                name: spec.name.clone(),
                uri: spec.uri.clone(),
                poll_interval: spec.poll_interval.unwrap_or(config.poll_interval),
                reload_policy: spec.reload_policy.unwrap_or(config.reload_policy),
                promotion: config.promotion_for(&spec.promotion),
                load: spec.load.unwrap_or(config.load),
                pin: spec.pin,
            };
            Ok((plan, source))
        })
        .collect()
}

/// A configured model as [`missing_sources`] checks it: name, URI, and for a local source its
/// path and whether it is a directory (else a `.zip` bundle).
type LocalSource = (String, String, Option<(PathBuf, bool)>);

/// The local sources of `sources` (name, uri, (path, is a directory)) that are not there, one
/// line each naming the model: the one rule for every model alike is that a local directory
/// or bundle must exist when the daemon starts (a registry or bucket is waited for instead).
/// Blocking.
fn missing_sources(one_model: bool, sources: &[LocalSource]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, uri, local) in sources {
        let Some((path, directory)) = local else {
            continue;
        };
        let (entry, fix) = match one_model {
            true => (
                format!("MODEL_URI {uri}"),
                "set MODEL_URI to a model directory, a .zip bundle or models:/<name>@<alias>",
            ),
            false => (
                format!("model '{name}' (uri {uri})"),
                "create it, or correct the model's uri in models",
            ),
        };
        let why = match (std::fs::metadata(path), directory) {
            (Ok(meta), true) if meta.is_dir() => continue,
            (Ok(meta), false) if meta.is_file() => continue,
            (Ok(_), true) => "is not a directory".to_string(),
            (Ok(_), false) => "is not a file".to_string(),
            (Err(err), _) if err.kind() == std::io::ErrorKind::NotFound => {
                "does not exist".to_string()
            }
            (Err(err), _) => format!("cannot be read: {err}"),
        };
        problems.push(format!("{entry}: {} {why}; {fix}", path.display()));
    }
    problems
}

/// The TLS pair and the API keys, when configured, read before anything is served.
async fn load_credentials(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Option<Arc<Certificates>>, Option<Arc<ApiKeysFile>>), StartError> {
    let (cert, key) = (config.tls_cert_file.clone(), config.tls_key_file.clone());
    let keys_file = config.api_keys_file.clone();
    let metrics = metrics.clone();
    blocking(move || {
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(Arc::new(tls::load(cert, key, metrics.clone())?)),
            // The configuration checks that both or neither are set.
            _ => None,
        };
        let api_keys = keys_file
            .map(|path| ApiKeysFile::load(vec![path], metrics))
            .transpose()?
            .map(Arc::new);
        Ok::<_, StartError>((tls, api_keys))
    })
    .await?
}

/// This machine's host name, from `/etc/hostname` (`HOSTNAME` is a shell's, seldom exported
/// to a service); `localhost` when there is none.
fn local_host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Blocking work at startup and shutdown, off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StartError> {
    on_disk(work).await.map_err(StartError::Model)
}

/// The bundled model, found next to the working directory, the binary, or the source tree it
/// was built from. Blocking.
fn find_bundled_model() -> Result<String, SetupError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(BUNDLED_MODEL));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(3)
                .map(|dir| dir.join(BUNDLED_MODEL)),
        );
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(BUNDLED_MODEL));
    let dir = candidates
        .iter()
        .find(|dir| dir.join("MLmodel").is_file())
        .ok_or(SetupError::NoModelUri)?;
    tracing::info!(dir = %dir.display(), "MODEL_URI is not set; serving the bundled sentiment model");
    Ok(dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Inputs;

    /// The plans for `flags`: (name, uri).
    async fn check(flags: &[(&str, &str)], expected: &[(&str, &str)]) {
        let env = |_: &str| None;
        let flags = flags
            .iter()
            .map(|(k, v)| (k.to_string(), format!("--set {k}"), v.to_string()))
            .collect();
        let config = Config::load(&Inputs {
            config_file: None,
            flags,
            env: &env,
            variables: Vec::new(),
        })
        .expect("a valid configuration");
        let plans = plans(&config, &env).await.expect("plans");
        let got: Vec<(String, String)> = plans
            .into_iter()
            .map(|(plan, _)| (plan.name, plan.uri))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(name, uri)| (name.to_string(), uri.to_string()))
            .collect();
        assert_eq!(got, expected, "{flags:?}", flags = config.models);
    }

    #[test]
    fn missing_local_sources_name_their_model() {
        let area = tempfile::tempdir().unwrap();
        let (dir, file) = (area.path().join("dir"), area.path().join("m.zip"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&file, "zip").unwrap();
        let gone = area.path().join("gone");
        let source = |name: &str, path: &PathBuf, directory: bool| {
            let uri = path.display().to_string();
            (name.to_string(), uri, Some((path.clone(), directory)))
        };
        let sources = [
            source("a", &dir, true),
            source("b", &file, false),
            ("c".to_string(), "models:/c@champion".to_string(), None),
            source("fraud", &gone, true),
            source("d", &file, true),
            source("e", &dir, false),
        ];
        let gone = gone.display();
        let (dir, file) = (dir.display(), file.display());
        assert_eq!(
            missing_sources(false, &sources),
            [
                format!("model 'fraud' (uri {gone}): {gone} does not exist; create it, or correct the model's uri in models"),
                format!("model 'd' (uri {file}): {file} is not a directory; create it, or correct the model's uri in models"),
                format!("model 'e' (uri {dir}): {dir} is not a file; create it, or correct the model's uri in models"),
            ]
        );
        assert_eq!(
            missing_sources(true, &sources[3..4]),
            [format!("MODEL_URI {gone}: {gone} does not exist; set MODEL_URI to a model directory, a .zip bundle or models:/<name>@<alias>")]
        );
    }

    #[tokio::test]
    async fn plans_name_each_model() {
        check(
            &[("model_uri", "/srv/sentiment")],
            &[("sentiment", "/srv/sentiment")],
        )
        .await;
        check(
            &[("model_uri", "/srv/sentiment"), ("model_name", "s")],
            &[("s", "/srv/sentiment")],
        )
        .await;
        check(
            &[("models", "a=/srv/x,b=/srv/y.zip")],
            &[("a", "/srv/x"), ("b", "/srv/y.zip")],
        )
        .await;
    }
}
