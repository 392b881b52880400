//! `hotserve resolve` and `hotserve validate`: the registry and the validation gate without
//! serving, for operators and for the retraining pipeline's CI. Both print what they found on
//! stdout and the reason for a failure on stderr; the return value is the exit code.

use std::path::Path;

use crate::config::Config;
use crate::model::{self, LoadOptions};
use crate::registry::{self, MlflowClient, ModelUri};

/// Prints the resolution of `uri` (default: `MODEL_URI`).
pub async fn resolve(
    config: &Config,
    uri: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> u8 {
    // With several models, the default one (`default_model`, else the first).
    let configured = config.model_uri.clone().or_else(|| {
        let default = config.default_model.as_deref();
        config
            .models
            .iter()
            .find(|model| Some(model.name.as_str()) == default)
            .or(config.models.first())
            .map(|model| model.uri.clone())
    });
    let Some(uri) = uri.or(configured) else {
        eprintln!("hotserve resolve: MODEL_URI is not set; set it (or pass a URI) e.g. models:/sentiment@champion");
        return 1;
    };
    match ModelUri::parse(&uri) {
        Err(err) => {
            eprintln!("hotserve resolve: {err}");
            1
        }
        Ok(ModelUri::Local(dir)) => match crate::files::digest_dir(&dir) {
            Ok(digests) => {
                println!(
                    "uri: {uri}\nkind: local directory\npath: {}\nfiles:",
                    dir.display()
                );
                for d in digests {
                    println!("  {} ({} bytes, sha256 {})", d.path, d.size, d.sha256);
                }
                0
            }
            Err(err) => {
                eprintln!("hotserve resolve: {err}");
                1
            }
        },
        Ok(ModelUri::Zip(path)) => match std::fs::metadata(&path) {
            Ok(meta) => {
                println!(
                    "uri: {uri}\nkind: zip bundle\npath: {}\nsize: {} bytes",
                    path.display(),
                    meta.len()
                );
                0
            }
            Err(err) => {
                eprintln!("hotserve resolve: {}: {err}", path.display());
                1
            }
        },
        Ok(ModelUri::Remote(remote)) => {
            let client = match registry::hotserve_settings(env).and_then(MlflowClient::new) {
                Ok(client) => client,
                Err(err) => {
                    eprintln!("hotserve resolve: {err}");
                    return 1;
                }
            };
            match registry::resolve(&client, &remote).await {
                Ok(resolution) => {
                    print!("{}", registry::describe(&resolution));
                    0
                }
                Err(err) => {
                    eprintln!("hotserve resolve: {err}");
                    1
                }
            }
        }
    }
}

/// Downloads (if remote) and runs the validation gate; 0 only if the model would go live.
pub async fn validate(config: &Config, uri: &str, env: &dyn Fn(&str) -> Option<String>) -> u8 {
    let scratch = match tempfile_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("hotserve validate: cannot create a scratch directory: {err}");
            return 1;
        }
    };
    let result = validate_in(config, uri, env, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(err) => {
            eprintln!("hotserve validate: {uri} would NOT be accepted: {err}");
            1
        }
    }
}

async fn validate_in(
    config: &Config,
    uri: &str,
    env: &dyn Fn(&str) -> Option<String>,
    scratch: &Path,
) -> Result<String, String> {
    let mut options = LoadOptions {
        name: "model".into(),
        version: None,
        source: uri.to_string(),
        aliases: Vec::new(),
        model_id: None,
        run_id: None,
        digests: None,
        ort_dylib_path: config.ort_dylib_path.clone(),
        intra_op_threads: config.intra_op_threads,
        sessions: 1,
        max_sequence_length: config.max_sequence_length,
        share_weights: config.share_weights,
        prepack_weights: config.prepack_weights,
    };
    let dir = match ModelUri::parse(uri).map_err(|e| e.to_string())? {
        ModelUri::Local(dir) => dir,
        ModelUri::Zip(path) => {
            let target = scratch.join("bundle");
            let max = config.max_bundle_bytes;
            tokio::task::spawn_blocking(move || model::bundle::extract(&path, &target, max))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        }
        ModelUri::Remote(remote) => {
            let client = registry::hotserve_settings(env)
                .and_then(MlflowClient::new)
                .map_err(|e| e.to_string())?;
            let resolution = registry::resolve(&client, &remote)
                .await
                .map_err(|e| e.to_string())?;
            let target = scratch.join("model");
            let digests = registry::download(&client, &resolution, &target)
                .await
                .map_err(|e| e.to_string())?;
            options.name = resolution.name.clone().unwrap_or_else(|| "model".into());
            options.version = resolution.version.clone().or(resolution.model_id.clone());
            options.digests = Some(digests);
            target
        }
    };
    let loaded = tokio::task::spawn_blocking(move || model::load(&dir, &options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let task = match loaded.text() {
        Some(task) => format!("text classification, labels {:?}", task.labels),
        None => "tensor model".to_string(),
    };
    Ok(format!(
        "ok: {uri} would be accepted\nname: {}\nversion: {}\ntask: {task}\ngolden examples passed: {}\ndigest: {}",
        loaded.info.name,
        loaded.info.version,
        loaded.mlmodel.golden.len(),
        loaded.info.digest
    ))
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("hotserve-validate-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
