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
use crate::config::ReloadPolicy;
use crate::live::describe;
use crate::model::{self, LoadOptions, Model};
use crate::promote::guard::{self, Snapshot};
use crate::promote::shadow::{evaluate, Decision};
use crate::promote::tags::Status;
use crate::promote::{Decided, Mode, PromotionResult};

/// How many versions of a model the cache keeps (the live one always), so rollbacks to recent
/// versions need no download while the disk stays bounded.
const CACHED_VERSIONS: usize = 5;

/// Validates the model in `manifest.dir` and makes it live, following the reload policy.
pub async fn load_and_publish(reloader: &Reloader, manifest: Manifest, found: Identity) -> Outcome {
    let _held = reloader.cache.hold(&manifest.dir);
    let live = &reloader.live;
    let version = manifest.version.clone();
    let manifest_name = manifest.name.clone();
    let restore = match live.current() {
        Some(previous) if reloader.plan.reload_policy == ReloadPolicy::Resource => {
            let restore = manifest_of(&previous, &reloader.plan.uri);
            drop(previous);
            if let Some(old) = live.unload(&format!(
                "reloading: unloaded the old model to load {} (reload_policy=resource)",
                describe(&manifest.name, &version)
            )) {
                // Really free it (after its last request) before loading the new one.
                loader::release(old, loader::PATIENCE).await;
            }
            Some(restore)
        }
        _ => None,
    };
    let gate = tracing::debug_span!("gate", hotserve.model.version = %version);
    let loaded = match load(reloader, &manifest)
        .instrument(gate)
        .await
        .map(|mut model| {
            model.info.pointer_target = manifest.pointer_target.clone();
            model
        }) {
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
                match load(reloader, &restore).await {
                    Ok(model) => {
                        live.publish(Arc::new(model));
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
    let mut restore = manifest_of(&old, &reloader.plan.uri);
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

/// Runs the validation gate on the loading thread.
async fn load(reloader: &Reloader, manifest: &Manifest) -> Result<Model, ReloadError> {
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
    };
    let dir = manifest.dir.clone();
    let model = loader::run(move || {
        crate::failpoints::sleep("HOTSERVE_TEST_LOAD_DELAY_MS");
        model::load(&dir, &options)
    })
    .await??;
    Ok(model)
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
        pointer_target: model.info.pointer_target.clone(),
    }
}
