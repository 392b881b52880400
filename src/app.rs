//! The daemon's lifecycle, in four named phases that [`run`] calls in order:
//!
//! 1. [`Daemon::wire`]: configuration into parts (the model source, the cache, the live
//!    handle, the inference pool); nothing is served yet, and a configuration that cannot work
//!    stops here with [`StartError::Setup`].
//! 2. [`Daemon::listen`]: the HTTP server starts first, so `/health/live` answers while the
//!    first model loads (readiness stays 503).
//! 3. [`Daemon::first_load`], then [`Daemon::background`]: the first check, `READY=1`, and the
//!    background tasks (reload loop, file watcher, systemd watchdog and status line).
//! 4. [`Daemon::drain`]: the one way out, whether the shutdown came before or after the first
//!    model: readiness 503, the drain delay, stop accepting, let requests finish, stop the
//!    background tasks and the inference pool.
//!
//! [`run`] takes its listener and its shutdown future as arguments, so tests drive it
//! in-process on `127.0.0.1:0` with a oneshot as the shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::{self, App};
use crate::live::{describe, Live};
use crate::metrics::Metrics;
use crate::queue::{Pool, PoolConfig};
use crate::reload::cache::Cache;
use crate::reload::{
    self, on_disk, webhook::Verifier, Outcome, ReloadError, Reloader, SetupError, Source, Trigger,
    Triggers,
};
use crate::sdnotify::Notifier;

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
}

impl StartError {
    /// The process exit code: 2 for configuration mistakes (systemd's
    /// `RestartPreventExitStatus=2` then stops restarting), 1 for a model that cannot be served.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Setup(_) => 2,
            StartError::Model(_) => 1,
        }
    }
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    env: &dyn Fn(&str) -> Option<String>,
    triggers: Triggers,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let daemon = Daemon::wire(config, env, triggers).await?;
    let server = daemon.listen(listener);
    tokio::pin!(shutdown);
    match daemon.first_load(&mut shutdown).await {
        FirstLoad::Serving => {
            let background = daemon.background();
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
    }
}

/// The parts of a running daemon, wired once.
struct Daemon {
    config: Arc<Config>,
    live: Arc<Live>,
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    reloader: Arc<Reloader>,
    triggers: Triggers,
}

/// How the first check ended.
enum FirstLoad {
    /// A model is live, or the registry is retried in the background (readiness 503 until
    /// a model is live).
    Serving,
    /// Shutdown was requested while the first model was loading.
    Interrupted,
    /// A local model failed the gate; nothing will change by waiting.
    Failed(ReloadError),
}

/// The HTTP server task and the switch that stops it accepting.
struct Server {
    stop_accepting: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The tasks that run while serving; stopped by [`Daemon::drain`].
struct Background {
    stop: watch::Sender<bool>,
    reload_loop: JoinHandle<()>,
    /// Stops watching the model directory when dropped.
    _watcher: Option<notify::RecommendedWatcher>,
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
        let live = Arc::new(Live::new(metrics.clone()));
        let notifier = Notifier::from_env(env);
        let uri = match &config.model_uri {
            Some(uri) => uri.clone(),
            None => blocking(find_bundled_model).await??,
        };
        let source = Source::from_uri(&uri, env)?;
        let cache = {
            let cache_dir = config.cache_dir.clone();
            let local_dir = match &source {
                Source::Local { dir } => Some(dir.clone()),
                Source::Zip { .. } | Source::Remote { .. } => None,
            };
            let uri = uri.clone();
            blocking(move || {
                if local_dir.is_some_and(|dir| !dir.is_dir()) {
                    return Err(SetupError::NotADirectory { uri });
                }
                Cache::open(&cache_dir).map_err(|source| SetupError::Cache {
                    dir: cache_dir,
                    source,
                })
            })
            .await??
        };
        let reloader = Arc::new(Reloader::new(
            config.clone(),
            live.clone(),
            metrics.clone(),
            notifier.clone(),
            uri,
            source,
            cache,
        ));
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
            live,
            pool,
            metrics,
            notifier,
            reloader,
            triggers,
        })
    }

    /// Phase 2: the HTTP server, up before the first model.
    fn listen(&self, listener: TcpListener) -> Server {
        let app = Arc::new(App {
            config: self.config.clone(),
            live: self.live.clone(),
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            triggers: self.triggers.clone(),
            webhook: self.config.webhook_secret.as_deref().map(Verifier::new),
            registered_name: self.reloader.registered_name(),
        });
        let listen = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(%listen, uri = %self.reloader.uri, "hotserve listening; loading the model");
        let (stop_accepting, accepting_stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(
            listener,
            app,
            async move {
                let _ = accepting_stopped.await;
            },
            self.config.shutdown_timeout,
        ));
        Server {
            stop_accepting,
            task,
        }
    }

    /// Phase 3a: the first check. A cold start may download for minutes; a shutdown meanwhile
    /// abandons it (the partial download is removed when its future is dropped).
    async fn first_load(&self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> FirstLoad {
        self.live
            .set_message(format!("loading {}", self.reloader.uri));
        let outcome = tokio::select! {
            outcome = self.reloader.check(Trigger::Startup) => outcome,
            _ = shutdown => return FirstLoad::Interrupted,
        };
        if let Some(model) = self.live.current() {
            self.notifier.ready(&format!(
                "serving {}",
                describe(&model.info.name, &model.info.version)
            ));
            return FirstLoad::Serving;
        }
        let error = match outcome {
            Outcome::Failed { error, .. } | Outcome::ServingCached { error, .. } => error,
            Outcome::Unchanged { .. } | Outcome::Loaded { .. } | Outcome::SkippedBad { .. } => {
                // Not reachable with nothing live; keep serving and retrying all the same.
                return FirstLoad::Serving;
            }
        };
        if self.reloader.is_local() {
            return FirstLoad::Failed(error);
        }
        tracing::error!(uri = %self.reloader.uri, "no model could be loaded at startup: {error}; readiness stays 503 while hotserve keeps retrying");
        FirstLoad::Serving
    }

    /// Phase 3b: the reload loop, the file watcher, and systemd's watchdog and status line.
    fn background(&self) -> Background {
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let reload_loop = tokio::spawn(reload::run(
            self.reloader.clone(),
            self.triggers.clone(),
            until_stopped(stopped.clone()),
        ));
        let watcher = match self.reloader.watched_dir().filter(|_| self.config.watch) {
            Some(dir) => {
                match reload::watch::spawn(dir, self.config.watch_debounce, self.triggers.clone()) {
                    Ok(watcher) => Some(watcher),
                    Err(err) => {
                        tracing::warn!(%err, dir = %dir.display(), "cannot watch the model directory; changes need SIGHUP or POST /admin/reload");
                        None
                    }
                }
            }
            None => None,
        };
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
        {
            let notifier = self.notifier.clone();
            let mut status = self.live.subscribe();
            let stopped = until_stopped(stopped);
            tokio::spawn(async move {
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        changed = status.changed() => {
                            if changed.is_err() { return; }
                            let line = status.borrow_and_update().clone();
                            notifier.status(&line);
                        }
                        _ = &mut stopped => return,
                    }
                }
            });
        }
        Background {
            stop,
            reload_loop,
            _watcher: watcher,
        }
    }

    /// Phase 4: readiness 503 at once, `delay` for load balancers to notice, then stop
    /// accepting, let in-flight requests finish (within `shutdown_timeout`), stop the
    /// background tasks and let the inference workers finish what is queued.
    async fn drain(self, server: Server, background: Option<Background>, delay: Duration) {
        tracing::info!(drain_delay = ?delay, "shutting down: readiness is 503 now");
        self.live.start_draining();
        self.notifier.stopping();
        tokio::time::sleep(delay).await;
        if let Some(background) = &background {
            let _ = background.stop.send(true);
        }
        drop(server.stop_accepting);
        let _ = server.task.await;
        if let Some(background) = background {
            let _ = background.reload_loop.await;
        }
        let pool = self.pool.clone();
        let _ =
            tokio::time::timeout(POOL_SHUTDOWN_DEADLINE, blocking(move || pool.shutdown())).await;
        tracing::info!("stopped");
    }
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
