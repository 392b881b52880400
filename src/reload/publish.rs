//! The gate and the swap: loads a model from its cache directory on the loading thread (the
//! validation gate in [`crate::model::load`]), records it in the cache as this URI's last known
//! good, publishes it through [`Live::publish`], and retires the old model. A model that fails
//! the gate for what is wrong with it is removed from the cache (unless it is the live or the
//! last known good version) and remembered as bad; a failure of this machine's (the ONNX
//! Runtime library, the disk) leaves the cache as it was and is retried. Under
//! `reload_policy: resource` the old model is freed first and restored if the new one fails.
//!
//! [`Live::publish`]: crate::live::Live::publish

use std::sync::Arc;

use tracing::Instrument;

use super::cache::Manifest;
use super::decide::Identity;
use super::report::Outcome;
use super::{loader, on_disk, ReloadError, Reloader};
use crate::config::{LoadMode, ReloadPolicy};
use crate::live::describe;
use crate::model::{self, LoadOptions, Model};
use crate::promote::guard::{self, Snapshot};
use crate::promote::shadow::{evaluate, Decision};
use crate::promote::tags::Status;
use crate::promote::{Decided, Mode, PromotionResult};

/// The folder of a cached version where its optimized graph is kept between loads.
pub const KEPT_OPTIMIZED: &str = ".hotserve-optimized";

/// How many versions of a model the cache keeps (the live one always), so rollbacks to recent
/// versions need no download while the disk stays bounded.
const CACHED_VERSIONS: usize = 5;

/// Validates the model in `manifest.dir` and makes it live, following the reload policy.
pub async fn load_and_publish(reloader: &Reloader, manifest: Manifest, found: Identity) -> Outcome {
    let _held = reloader.cache.hold(&manifest.dir);
    let live = &reloader.live;
    let version = manifest.version.clone();
    let manifest_name = manifest.name.clone();
    // A model not in memory stays out of it: a lazy one until its first request, a parked one
    // until its next. Its new version is validated (or known valid) and set aside.
    let parks = live.current().is_none()
        && (live.parked().is_some() || reloader.plan.load == LoadMode::Lazy);
    if parks && passed_before(reloader, &manifest).await {
        return park_validated(reloader, manifest, found, None).await;
    }
    // Under a tight memory_budget the old version leaves before the new one loads.
    let gap = reloader.plan.reload_policy == ReloadPolicy::Resource
        || reloader
            .budget
            .needs_gap(&reloader.member, estimate(reloader, &manifest));
    let restore = match live.current() {
        Some(previous) if gap => {
            let restore = Manifest::of(&previous, &reloader.plan.uri);
            drop(previous);
            if let Some(old) = live.unload(&format!(
                "reloading: unloaded the old model to load {} ({})",
                describe(&manifest.name, &version),
                if reloader.plan.reload_policy == ReloadPolicy::Resource {
                    "reload_policy=resource"
                } else {
                    "memory_budget has no room for both"
                }
            )) {
                // Really free it (after its last request) before loading the new one.
                loader::release(old, loader::PATIENCE).await;
            }
            Some(restore)
        }
        _ => None,
    };
    let gate = tracing::debug_span!("gate", hotserve.model.version = %version);
    let loaded = match load(reloader, &manifest, restore.is_some())
        .instrument(gate)
        .await
        .map(|mut model| {
            model.info.pointer_target = manifest.pointer_target.clone();
            model
        }) {
        Ok(model) if parks => return park_validated(reloader, manifest, found, Some(model)).await,
        Ok(model) if restore.is_none() => shadow(reloader, model).await,
        other => other.map(Arc::new),
    };
    match loaded {
        Ok(model) => {
            let live_dir = model.info.dir.clone();
            // Recorded before it goes live, so that a process that is ready has also made this
            // version its last known good: a crash right after readiness still restarts on it.
            let cache = reloader.cache.clone();
            let recorded = on_disk(move || {
                cache
                    .write_manifest(&manifest)
                    .and_then(|()| cache.record_last_good(&manifest))
            })
            .await;
            let failure = match recorded {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(err) => Some(err.to_string()),
            };
            if let Some(err) = failure {
                tracing::warn!(%err, "cannot record the model in the cache; a restart will download it again");
            }
            let previous_identity = reloader.live_identity();
            let before = Snapshot::of(&reloader.metrics);
            // The version it replaces stays cached while a guard window may swap it back.
            let kept = live
                .current()
                .filter(|_| !reloader.plan.promotion.guard.window.is_zero())
                .map(|old| reloader.cache.hold(&old.info.dir));
            let previous = tracing::debug_span!("swap", hotserve.model.version = %version)
                .in_scope(|| live.publish(model));
            live.candidate_done(true);
            let reason = if previous.is_some() || restore.is_some() {
                "reload"
            } else {
                "startup"
            };
            reloader.metrics.loads.inc(&[("reason", reason)]);
            reloader.remember_live(found.clone());
            let guard = &reloader.plan.promotion.guard;
            match previous {
                Some(old) if !guard.window.is_zero() => {
                    let watched = guarded(reloader, old, previous_identity, before, &found).await;
                    if let Err(error) = watched {
                        return Outcome::Failed {
                            version: Some(version),
                            error,
                        };
                    }
                }
                // The old model is freed when its last in-flight request finishes.
                Some(old) => loader::retire(old),
                None => {}
            }
            drop(kept);
            reloader.report_to_registry(
                &manifest_name,
                &version,
                Status::Live,
                "serving: passed the gate",
            );
            let cache = reloader.cache.clone();
            let _ = on_disk(move || cache.prune(&live_dir, CACHED_VERSIONS)).await;
            Outcome::Loaded { version }
        }
        Err(error) => {
            live.candidate_done(false);
            // Only what is wrong with the version itself costs it its cached copy; the cache
            // keeps the live and the last known good version whatever happens.
            if error.blames_version() {
                reloader.remember_bad(&found.key, error.to_string());
                let cache = reloader.cache.clone();
                let dir = manifest.dir.clone();
                let live_dir = restore
                    .as_ref()
                    .map(|m| m.dir.clone())
                    .or_else(|| live.current().map(|model| model.info.dir.clone()));
                let _ = on_disk(move || cache.remove(&dir, live_dir.as_deref())).await;
            }
            if let Some(restore) = restore {
                match load(reloader, &restore, false).await {
                    Ok(model) => {
                        live.publish(Arc::new(model));
                        live.candidate_done(true);
                    }
                    Err(err) => tracing::error!(
                        "cannot restore the previous model after a failed reload: {err}"
                    ),
                }
            }
            Outcome::Failed {
                version: Some(version),
                error,
            }
        }
    }
}

/// `promotion: shadow` with a model live: compares `model` with it on live requests first and
/// returns it when it is promoted, or the refusal. Otherwise (`immediate`, or nothing live to
/// compare with) returns it at once.
async fn shadow(reloader: &Reloader, model: Model) -> Result<Arc<Model>, ReloadError> {
    let model = Arc::new(model);
    let settings = &reloader.plan.promotion;
    let Some(serving) = reloader.live.current() else {
        return Ok(model);
    };
    if settings.mode != Mode::Shadow {
        return Ok(model);
    }
    let serving = describe(&serving.info.name, &serving.info.version);
    let metrics = &reloader.metrics;
    let (name, number) = (model.info.name.clone(), model.info.version.clone());
    reloader.report_to_registry(
        &name,
        &number,
        Status::Shadow,
        &format!("compared with {serving} on live requests"),
    );
    let decision = evaluate(
        &reloader.live,
        &reloader.shadow,
        metrics,
        model.clone(),
        settings,
    )
    .await;
    let (result, reason) = match &decision {
        Decision::Promote(why) => (PromotionResult::Promoted, why.clone()),
        Decision::Refuse(why) => (PromotionResult::Refused, why.clone()),
    };
    metrics.promotions.inc(&[("result", result.as_str())]);
    let version = describe(&model.info.name, &model.info.version);
    let decided = Decided {
        at: std::time::SystemTime::now(),
        version: model.info.version.clone(),
        result,
        reason: reason.clone(),
    };
    reloader
        .live
        .update(|status| status.last_promotion = Some(decided));
    match decision {
        Decision::Promote(why) => {
            tracing::info!(model = %reloader.name(), candidate = %version, "shadow evaluation: promoting {version}: {why}");
            Ok(model)
        }
        Decision::Refuse(why) => {
            reloader.report_to_registry(&name, &number, Status::Refused, &why);
            loader::retire(model);
            Err(ReloadError::Refused {
                version,
                serving,
                why,
            })
        }
    }
}

/// The guard after a swap: keeps `old` resident while the version just made live is watched;
/// when it misbehaves, swaps `old` back (no request fails: requests hold the model they
/// started with), marks the new version bad and makes `old` the last known good again.
async fn guarded(
    reloader: &Reloader,
    old: Arc<Model>,
    old_identity: Option<Identity>,
    before: Snapshot,
    found: &Identity,
) -> Result<(), ReloadError> {
    let live = &reloader.live;
    let guard = &reloader.plan.promotion.guard;
    let serving = describe(&old.info.name, &old.info.version);
    let new_version = live
        .current()
        .map(|m| describe(&m.info.name, &m.info.version))
        .unwrap_or_default();
    live.set_message(format!(
        "serving {new_version}; watching it for {}s (previous version {serving} kept)",
        guard.window.as_secs()
    ));
    let Some(why) = guard::watch(&reloader.metrics, before, guard).await else {
        loader::retire(old);
        return Ok(());
    };
    let mut restore = Manifest::of(&old, &reloader.plan.uri);
    if let Some(new) = live.publish(old) {
        loader::retire(new);
    }
    let error = ReloadError::RolledBack {
        version: new_version,
        serving,
        why: why.clone(),
    };
    reloader.remember_bad(&found.key, error.to_string());
    reloader.report_to_registry(&found.name, &found.version, Status::RolledBack, &why);
    if let Some(identity) = old_identity {
        restore.listing_key = identity.key.clone();
        reloader.remember_live(identity);
    }
    let cache = reloader.cache.clone();
    let _ = on_disk(move || cache.record_last_good(&restore)).await;
    reloader
        .metrics
        .promotions
        .inc(&[("result", PromotionResult::RolledBack.as_str())]);
    let decided = Decided {
        at: std::time::SystemTime::now(),
        version: found.version.clone(),
        result: PromotionResult::RolledBack,
        reason: why.clone(),
    };
    live.update(|status| status.last_promotion = Some(decided));
    Err(error)
}

/// Sets a version that passed the gate (now, as `model`, or before: its manifest is in the
/// cache) aside on disk: recorded as the last known good and the version the next request
/// loads, not in memory.
async fn park_validated(
    reloader: &Reloader,
    manifest: Manifest,
    found: Identity,
    model: Option<Model>,
) -> Outcome {
    let version = manifest.version.clone();
    let cache = reloader.cache.clone();
    let record = manifest.clone();
    let recorded = on_disk(move || {
        cache
            .write_manifest(&record)
            .and_then(|()| cache.record_last_good(&record))
    })
    .await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::warn!("cannot record the model in the cache; a restart will download it again");
    }
    reloader.remember_live(found);
    let live = &reloader.live;
    let why = match live.parked() {
        Some(parked) => parked.why,
        None => "load: lazy; loads on its first request".to_string(),
    };
    if model.is_some() && live.parked().is_none() {
        reloader.metrics.unloads.inc(&[("reason", "lazy")]);
    }
    reloader.member.set_parked(manifest);
    live.park(crate::live::Parked {
        version: version.clone(),
        why,
        on_demand: live.parked().is_none_or(|parked| parked.on_demand),
    });
    if let Some(model) = model {
        loader::release(Arc::new(model), loader::PATIENCE).await;
    }
    live.candidate_done(false);
    Outcome::Parked { version }
}

/// Whether `manifest` is the cached record of a version that passed the gate here before
/// (a manifest is written only then), so that setting it aside needs no new gate.
async fn passed_before(reloader: &Reloader, manifest: &Manifest) -> bool {
    let cache = reloader.cache.clone();
    let version = manifest.version.clone();
    let cached = on_disk(move || cache.manifest(&version))
        .await
        .ok()
        .flatten();
    cached.is_some_and(|cached| {
        cached.listing_key == manifest.listing_key
            && cached.digests == manifest.digests
            && cached.dir == manifest.dir
    })
}

/// Loads the parked version for a request (`reason` `request`) or the API (`api`), within
/// the budget; waiting requests take it from [`Live`](crate::live::Live).
pub async fn load_parked(reloader: &Reloader, reason: &'static str) -> Result<(), ReloadError> {
    let live = &reloader.live;
    let Some(manifest) = reloader
        .member
        .parked()
        .filter(|_| live.current().is_none())
    else {
        return Ok(());
    };
    if live.parked().is_none() {
        return Ok(());
    }
    live.set_loading();
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("load", hotserve.model.version = %manifest.version);
    match load(reloader, &manifest, false).instrument(span).await {
        Ok(mut model) => {
            model.info.pointer_target = manifest.pointer_target.clone();
            live.publish(Arc::new(model));
            live.candidate_done(true);
            let metrics = &reloader.metrics;
            metrics.loads.inc(&[("reason", reason)]);
            let took = live.last_load();
            if reason == "request" {
                metrics.cold_start_load.observe_duration(took);
                metrics
                    .cold_batch_pending
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            // elapsed: from the ask to live, the wait for room in the budget included.
            tracing::info!(model = %reloader.name(), version = %manifest.version, %reason, elapsed_ms = started.elapsed().as_millis() as u64, load_ms = took.as_millis() as u64, "loaded the model into memory");
            Ok(())
        }
        Err(error) => {
            live.candidate_done(false);
            tracing::warn!(model = %reloader.name(), version = %manifest.version, %reason, "cannot load the model: {error}");
            live.update(|status| {
                status.last_error = Some(format!(
                    "cannot load {}: {error}",
                    describe(&manifest.name, &manifest.version)
                ))
            });
            live.load_failed();
            Err(error)
        }
    }
}

/// The memory `manifest`'s version is admitted on: this model's last measured cost, else its
/// files' size times [`FIRST_LOAD_FACTOR`](super::budget::FIRST_LOAD_FACTOR).
fn estimate(reloader: &Reloader, manifest: &Manifest) -> u64 {
    match reloader.live.measured_bytes() {
        0 => {
            manifest.digests.iter().map(|file| file.size).sum::<u64>()
                * super::budget::FIRST_LOAD_FACTOR
        }
        measured => measured,
    }
}

/// Runs the validation gate on the loading thread, in the room the budget makes for it, and
/// measures the memory the model takes (`budget.rs`): recorded as this model's candidate until
/// the caller publishes it or drops it ([`Live::candidate_done`](crate::live::Live::candidate_done)).
/// `replacing`: the live version leaves first (its memory counts as free).
async fn load(
    reloader: &Reloader,
    manifest: &Manifest,
    replacing: bool,
) -> Result<Model, ReloadError> {
    let config = &reloader.config;
    let options = LoadOptions {
        name: manifest.name.clone(),
        version: Some(manifest.version.clone()),
        source: reloader.plan.uri.clone(),
        aliases: manifest.aliases.clone(),
        model_id: manifest.model_id.clone(),
        run_id: manifest.run_id.clone(),
        digests: Some(manifest.digests.clone()),
        ort_dylib_path: config.ort_dylib_path.clone(),
        intra_op_threads: config.intra_op_threads,
        sessions: config.inference_workers,
        max_sequence_length: config.max_sequence_length,
        share_weights: config.share_weights,
        prepack_weights: config.prepack_weights,
        all_cores_threads: config.all_cores_threads(),
        execution_providers: config.execution_providers.clone(),
        // A version loaded again (a parked model, a restart, a rollback) skips ONNX Runtime's
        // optimization: its optimized graph is kept with its cached files.
        keep_optimized: Some(manifest.dir.join(KEPT_OPTIMIZED)),
    };
    let dir = manifest.dir.clone();
    let admitted = reloader
        .budget
        .admit(&reloader.member, estimate(reloader, manifest), replacing)
        .await?;
    let (model, bytes, took) = loader::run(move || {
        crate::failpoints::sleep("HOTSERVE_TEST_LOAD_DELAY_MS");
        let started = std::time::Instant::now();
        let before = loader::allocated_bytes();
        model::load(&dir, &options).map(|model| {
            let bytes = loader::allocated_bytes().saturating_sub(before);
            (model, bytes, started.elapsed())
        })
    })
    .await??;
    reloader.live.record_loaded(bytes, took);
    drop(admitted);
    Ok(model)
}
