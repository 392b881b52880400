//! The gate and the swap: loads a model from its cache directory on the loading thread (the
//! validation gate in [`crate::model::load`]), records it in the cache as this URI's last known
//! good, publishes it through [`Live::publish`], and retires the old model. A model that fails
//! is removed from the cache and remembered as bad. Under `reload_policy: resource` the old
//! model is freed first and restored if the new one fails.
//!
//! [`Live::publish`]: crate::live::Live::publish

use std::sync::Arc;

use super::cache::Manifest;
use super::decide::Identity;
use super::report::Outcome;
use super::{loader, on_disk, ReloadError, Reloader};
use crate::config::ReloadPolicy;
use crate::live::describe;
use crate::model::{self, LoadOptions, Model};

/// How many versions of a model the cache keeps (the live one always), so rollbacks to recent
/// versions need no download while the disk stays bounded.
const CACHED_VERSIONS: usize = 5;

/// Validates the model in `manifest.dir` and makes it live, following the reload policy.
pub async fn load_and_publish(reloader: &Reloader, manifest: Manifest, found: Identity) -> Outcome {
    let live = &reloader.live;
    let version = manifest.version.clone();
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
    match load(reloader, &manifest).await {
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
            // The old model is freed when its last in-flight request finishes.
            if let Some(old) = live.publish(Arc::new(model)) {
                loader::retire(old);
            }
            reloader.remember_live(found);
            let cache = reloader.cache.clone();
            let _ = on_disk(move || cache.prune(&live_dir, CACHED_VERSIONS)).await;
            Outcome::Loaded { version }
        }
        Err(error) => {
            reloader.remember_bad(&found.key, error.to_string());
            let cache = reloader.cache.clone();
            let dir = manifest.dir.clone();
            let _ = on_disk(move || cache.remove(&dir)).await;
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
    }
}
