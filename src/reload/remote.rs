//! Registry sources (`models:/`, `runs:/`, `mlflow-artifacts:/`) and buckets (`s3://`,
//! `gs://`, Azure: listed and read without MLflow): resolve what the URI points at, decide
//! ([`super::decide`]), and reuse the cached copy or download it into the cache. When the
//! registry cannot be reached and nothing is live, the last known good model of this URI is
//! served from the cache.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::field::Empty;
use tracing::Instrument;

use super::cache::Manifest;
use super::decide::{identity_of, Action, Identity};
use super::report::Outcome;
use super::{on_disk, publish, ReloadError, Reloader};
use crate::live::describe;
use crate::registry::{self, MlflowClient, Progress, ProgressReport, RemoteUri};

/// One check of a registry URI.
pub async fn check(reloader: &Reloader, uri: &RemoteUri, client: &MlflowClient) -> Outcome {
    let resolving = tracing::debug_span!("resolve", url.full = %uri);
    let resolution = match registry::resolve(client, uri).instrument(resolving).await {
        // A bucket has no registered name: its model is the configured one everywhere.
        Ok(resolution) if matches!(uri, RemoteUri::Bucket { .. }) => registry::Resolution {
            name: Some(reloader.plan.name.clone()),
            ..resolution
        },
        Ok(resolution) => resolution,
        Err(err) => {
            let kind = if err.is_transient() {
                "unreachable"
            } else {
                "rejected"
            };
            reloader.metrics.registry_errors.inc(&[("kind", kind)]);
            let error = ReloadError::from(err);
            if reloader.live.current().is_none() {
                return serve_last_good(reloader, error).await;
            }
            return Outcome::Failed {
                version: None,
                error,
            };
        }
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    reloader
        .metrics
        .last_registry_success
        .store(now, Ordering::Relaxed);

    let found = identity_of(&resolution);
    // Its cached copy (if any) stays until the check is done with it, whatever the disk budget.
    let _held = reloader
        .cache
        .hold(&reloader.cache.version_dir(&found.version));
    let cached = {
        let cache = reloader.cache.clone();
        let version = found.version.clone();
        // The last known good record is a manifest too: a version it names is cached even if
        // its own manifest was lost.
        on_disk(move || {
            cache
                .manifest(&version)
                .or_else(|| cache.last_good().filter(|good| good.version == version))
        })
        .await
        .ok()
        .flatten()
    };
    let manifest = match reloader.decide(&found, cached.as_ref()) {
        Action::KeepLive => {
            reloader.live.update(|status| status.from_cache = false);
            return Outcome::Unchanged {
                version: found.version,
            };
        }
        Action::SkipKnownBad { why } => {
            return Outcome::SkippedBad {
                version: found.version,
                why,
            }
        }
        Action::LoadCached(manifest) => {
            tracing::info!(name = %found.name, version = %found.version, "using the cached copy (no download)");
            *manifest
        }
        Action::Fetch => match download(reloader, client, &resolution, &found)
            .instrument(tracing::debug_span!(
                "download",
                hotserve.model.version = %found.version,
                hotserve.bytes = Empty,
            ))
            .await
        {
            Ok(manifest) => manifest,
            Err(outcome) => return outcome,
        },
    };
    // Aliases move without the files changing: record the current ones.
    let manifest = Manifest {
        aliases: resolution.aliases.clone(),
        ..manifest
    };
    let outcome = publish::load_and_publish(reloader, manifest, found).await;
    if matches!(outcome, Outcome::Loaded { .. } | Outcome::Parked { .. }) {
        reloader.live.update(|status| status.from_cache = false);
    }
    outcome
}

/// Downloads the resolved version into its cache directory (staged, then renamed there).
async fn download(
    reloader: &Reloader,
    client: &MlflowClient,
    resolution: &registry::Resolution,
    found: &Identity,
) -> Result<Manifest, Outcome> {
    let dest = reloader.cache.version_dir(&found.version);
    {
        // What is there has no valid manifest (decided above): an incomplete copy.
        let cache = reloader.cache.clone();
        let removing = dest.clone();
        let live = reloader.live.current().map(|model| model.info.dir.clone());
        let removed = on_disk(move || cache.remove(&removing, live.as_deref()))
            .await
            .unwrap_or(false);
        if !removed && dest.exists() {
            return Err(Outcome::Failed {
                version: Some(found.version.clone()),
                error: ReloadError::Cache {
                    dir: dest,
                    source: std::io::Error::other(
                        "the live or last known good version is there without its manifest",
                    ),
                },
            });
        }
    }
    let what = describe(&found.name, &found.version);
    reloader.live.set_message(format!("downloading {what}"));
    let progress = Arc::new(Progress::default());
    let downloaded = follow(
        reloader,
        &what,
        &progress,
        registry::download(client, resolution, &dest, &progress),
    )
    .await;
    let pointer_target = match uri_location(&reloader.plan.uri) {
        Some(location) if location != resolution.artifact_uri => {
            Some(resolution.artifact_uri.clone())
        }
        _ => None,
    };
    if let Ok(digests) = &downloaded {
        let bytes: u64 = digests.iter().map(|digest| digest.size).sum();
        tracing::Span::current().record("hotserve.bytes", i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    match downloaded {
        Ok(digests) => Ok(Manifest {
            uri: reloader.plan.uri.clone(),
            name: found.name.clone(),
            version: found.version.clone(),
            aliases: resolution.aliases.clone(),
            model_id: resolution.model_id.clone(),
            run_id: resolution.run_id.clone(),
            listing_key: found.key.clone(),
            digests,
            dir: dest,
            pointer_target,
        }),
        Err(err) => {
            let error = ReloadError::from(err);
            if !error.is_transient() {
                reloader.remember_bad(&found.key, error.to_string());
            }
            Err(Outcome::Failed {
                version: Some(found.version.clone()),
                error,
            })
        }
    }
}

/// How often a download in progress is shown in `/health` and the metrics, and logged.
const SHOW_EVERY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Runs `download` while showing its `progress`: in `/health` (`download`, and the message
/// "downloading sentiment v3: 120.0 MB of 400.0 MB (30%), 2 of 5 files") and the
/// `hotserve_download_bytes_total` counter every second, in the log after a second and then
/// every five (a download done within a second logs nothing of its progress).
async fn follow<T>(
    reloader: &Reloader,
    what: &str,
    progress: &Progress,
    download: impl std::future::Future<Output = T>,
) -> T {
    let mut counted = 0;
    let mut count = |report: ProgressReport| {
        let metric = &reloader.metrics.download_bytes;
        metric.fetch_add(report.bytes.saturating_sub(counted), Ordering::Relaxed);
        counted = report.bytes;
    };
    tokio::pin!(download);
    let mut show = tokio::time::interval_at(tokio::time::Instant::now() + SHOW_EVERY, SHOW_EVERY);
    let mut logged: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            result = &mut download => break result,
            _ = show.tick() => {
                let report = progress.report();
                count(report);
                reloader.live.update(|status| {
                    status.message = format!("downloading {what}: {report}");
                    status.download = Some(report);
                });
                if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    logged = Some(Instant::now());
                    tracing::info!(model = %reloader.name(), bytes = report.bytes, total_bytes = report.total_bytes, "downloading {what}: {report}");
                }
            }
        }
    };
    count(progress.report());
    reloader.live.update(|status| status.download = None);
    result
}

/// The location a bucket `MODEL_URI` names (`None` for the registry's URIs).
fn uri_location(uri: &str) -> Option<String> {
    match RemoteUri::parse(uri) {
        Ok(RemoteUri::Bucket { location }) => Some(location),
        _ => None,
    }
}

/// The registry is unreachable and nothing is live: serve what this URI served last.
async fn serve_last_good(reloader: &Reloader, error: ReloadError) -> Outcome {
    let last_good = {
        let cache = reloader.cache.clone();
        on_disk(move || cache.last_good()).await.ok().flatten()
    };
    let Some(manifest) = last_good else {
        return Outcome::Failed {
            version: None,
            error,
        };
    };
    tracing::warn!(version = %manifest.version, "the registry is unreachable; serving the last known good model from the cache");
    let identity = Identity {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        key: manifest.listing_key.clone(),
    };
    let cached = describe(&manifest.name, &manifest.version);
    match publish::load_and_publish(reloader, manifest, identity).await {
        Outcome::Loaded { version } | Outcome::Parked { version } => {
            reloader.live.update(|status| status.from_cache = true);
            Outcome::ServingCached { version, error }
        }
        // Both causes: the registry's, and why the fallback did not serve.
        Outcome::Failed {
            error: fallback, ..
        } => Outcome::Failed {
            version: None,
            error: ReloadError::NoFallback {
                registry: Box::new(error),
                version: cached,
                fallback: Box::new(fallback),
            },
        },
        _ => Outcome::Failed {
            version: None,
            error,
        },
    }
}
