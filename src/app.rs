//! The daemon: wires configuration, the inference pool, the live handle, the reload loop and
//! the HTTP server together, and runs the lifecycle (listener first, first model, READY=1,
//! triggers, drain on shutdown). [`run`] takes its listener and its shutdown future as
//! arguments, so tests drive it without signals or fixed ports.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, App};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::queue::{Pool, PoolConfig};
use crate::reload::{self, webhook::Verifier, Reloader, Triggers};
use crate::sdnotify::Notifier;

/// Where the bundled demo model is looked for when `MODEL_URI` is unset.
pub const BUNDLED_MODEL: &str = "tests/fixtures/sentiment";

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot serve the model: {0}")]
    Model(String),
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    env: &dyn Fn(&str) -> Option<String>,
    triggers: Triggers,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let live = Arc::new(Live::new(metrics.clone()));
    let notifier = Notifier::from_env(env);
    let uri = model_uri(&config)?;
    let reloader = Arc::new(
        Reloader::new(
            config.clone(),
            live.clone(),
            metrics.clone(),
            notifier.clone(),
            uri.clone(),
            env,
        )
        .map_err(StartError::Config)?,
    );
    if let Some(dir) = reloader.watched_dir() {
        if !dir.is_dir() {
            return Err(StartError::Config(format!(
                "MODEL_URI {uri} is not a directory; set MODEL_URI to a model directory, a .zip bundle or models:/<name>@<alias>"
            )));
        }
    }
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
    let app = Arc::new(App {
        config: config.clone(),
        live: live.clone(),
        pool: pool.clone(),
        metrics: metrics.clone(),
        triggers: triggers.clone(),
        webhook: config.webhook_secret.as_deref().map(Verifier::new),
        registered_name: reloader.registered_name(),
    });
    tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), %uri, "hotserve listening; loading the model");

    // The listener is up first, so /health/live answers while the first model loads.
    let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(
        listener,
        app.clone(),
        async move {
            let _ = accepting_stopped.await;
        },
        config.shutdown_timeout,
    ));

    live.set_message(format!("loading {uri}"));
    tokio::pin!(shutdown);
    // A cold start may download for minutes; a shutdown meanwhile abandons it (the partial
    // download is removed when its future is dropped).
    let interrupted = tokio::select! {
        _ = reloader.check("startup") => false,
        _ = &mut shutdown => true,
    };
    if interrupted {
        tracing::info!("shutting down before the first model was loaded");
        live.start_draining();
        notifier.stopping();
        drop(stop_accepting);
        let _ = server.await;
        let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
        return Ok(());
    }
    let local = reloader.watched_dir().is_some() || uri.ends_with(".zip");
    match live.current() {
        Some(model) => notifier.ready(&format!(
            "serving {}",
            crate::live::describe(&model.info.name, &model.info.version)
        )),
        None if local => {
            let why = live
                .status()
                .last_error
                .unwrap_or_else(|| "unknown error".into());
            drop(stop_accepting);
            let _ = server.await;
            pool.shutdown();
            return Err(StartError::Model(why));
        }
        None => {
            let why = live.status().last_error.unwrap_or_default();
            tracing::error!(%uri, "no model could be loaded at startup: {why}; readiness stays 503 while hotserve keeps retrying");
        }
    }

    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let reload_loop = tokio::spawn(reload::run(
        reloader.clone(),
        triggers.clone(),
        stopped(background_stopped.clone()),
    ));
    let _watcher = match reloader.watched_dir().filter(|_| config.watch) {
        Some(dir) => match reload::watch::spawn(dir, config.watch_debounce, triggers.clone()) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(%err, dir = %dir.display(), "cannot watch the model directory; changes need SIGHUP or POST /admin/reload");
                None
            }
        },
        None => None,
    };
    if let Some(interval) = notifier.watchdog_interval() {
        let notifier = notifier.clone();
        let mut stop = background_stopped.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticker.tick() => notifier.notify("WATCHDOG=1"),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
    {
        let notifier = notifier.clone();
        let mut status = live.subscribe();
        let mut stop = background_stopped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = status.changed() => {
                        if changed.is_err() { return; }
                        let line = status.borrow_and_update().clone();
                        notifier.status(&line);
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    shutdown.await;
    tracing::info!(drain_delay = ?config.drain_delay, "shutting down: readiness is 503 now");
    live.start_draining();
    notifier.stopping();
    tokio::time::sleep(config.drain_delay).await;
    let _ = stop_background.send(true);
    drop(stop_accepting);
    let _ = server.await;
    let _ = reload_loop.await;
    // Requests have finished or timed out; let the workers finish anything still queued.
    let pool_for_shutdown = pool.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || pool_for_shutdown.shutdown()),
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// `MODEL_URI`, or the bundled model (found next to the working directory, the binary, or the
/// source tree it was built from).
fn model_uri(config: &Config) -> Result<String, StartError> {
    if let Some(uri) = &config.model_uri {
        return Ok(uri.clone());
    }
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
    match candidates.iter().find(|dir| dir.join("MLmodel").is_file()) {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "MODEL_URI is not set; serving the bundled sentiment model");
            Ok(dir.display().to_string())
        }
        None => Err(StartError::Config(
            "MODEL_URI is not set and the bundled model was not found; set MODEL_URI to models:/<name>@<alias> or a model directory".into(),
        )),
    }
}
