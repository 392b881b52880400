//! `hotserve resolve` and `hotserve validate`: the registry and the validation gate without
//! serving, for operators and for the retraining pipeline's CI. `validate --against` also
//! compares the candidate with the live model on a file of inputs, with the same figures and
//! verdict as shadow mode ([`crate::promote::compare`]), so a pipeline can gate before it moves
//! the alias. Both print what they found on
//! stdout and the reason for a failure on stderr; the return value is the exit code.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;

use crate::model::{self, LoadOptions};
use crate::promote::compare::{compare_scores, judge, Figures, Sample, Verdict};
use crate::promote::Promotion;
use crate::registry::{self, MlflowClient, ModelUri, Progress};

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
        Ok(ModelUri::Local(dir)) => match digest_showing_progress(&dir).await {
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
    match result.map(|model| summary(uri, &model)) {
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

/// `validate <uri> --against <live> --inputs <file>`: the gate for both, then the shadow
/// comparison on every line of `inputs`; 0 only if `uri` would be accepted and promoted.
pub async fn validate_against(
    config: &Config,
    uri: &str,
    live_uri: &str,
    inputs: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> u8 {
    let texts = match std::fs::read_to_string(inputs) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>(),
        Err(err) => {
            eprintln!(
                "hotserve validate: cannot read --inputs {}: {err}",
                inputs.display()
            );
            return 1;
        }
    };
    if texts.is_empty() {
        eprintln!(
            "hotserve validate: --inputs {} has no texts; put one text per line",
            inputs.display()
        );
        return 1;
    }
    let mut models = Vec::new();
    for (role, model_uri) in [("candidate", uri), ("live model", live_uri)] {
        let scratch = match tempfile_dir() {
            Ok(dir) => dir,
            Err(err) => {
                eprintln!("hotserve validate: cannot create a scratch directory: {err}");
                return 1;
            }
        };
        let loaded = validate_in(config, model_uri, env, &scratch).await;
        let _ = std::fs::remove_dir_all(&scratch);
        match loaded {
            Ok(model) => models.push(model),
            Err(err) => {
                eprintln!("hotserve validate: the {role} {model_uri} would NOT be accepted: {err}");
                return 1;
            }
        }
    }
    let (candidate, live) = (models.remove(0), models.remove(0));
    println!("{}", summary(uri, &candidate));
    let compared = tokio::task::spawn_blocking(move || compare_offline(&candidate, &live, &texts))
        .await
        .map_err(|err| err.to_string())
        .and_then(|figures| figures);
    let figures = match compared {
        Ok(figures) => figures,
        Err(err) => {
            eprintln!("hotserve validate: cannot compare: {err}");
            return 1;
        }
    };
    // Offline, the inputs are all the traffic there is: no minimum count or duration.
    let settings = Promotion {
        min_requests: 0,
        min_duration: std::time::Duration::ZERO,
        ..config.promotion_for(&Default::default())
    };
    match judge(&figures, std::time::Duration::ZERO, &settings) {
        Verdict::Promote(why) => {
            println!("shadow comparison with {live_uri}: would be promoted: {why}");
            0
        }
        Verdict::Refuse(why) => {
            eprintln!("hotserve validate: {uri} would be refused against {live_uri}: {why}");
            1
        }
        Verdict::Continue => unreachable!("no minimum to wait for offline"),
    }
}

/// Runs every text through both models, one at a time, as shadow mode does on a worker.
fn compare_offline(
    candidate: &model::Model,
    live: &model::Model,
    texts: &[String],
) -> Result<Figures, String> {
    let (Some(live_task), Some(task)) = (live.text(), candidate.text()) else {
        return Err("--against compares text-classification models; both must be one".into());
    };
    let mut figures = Figures::default();
    for text in texts {
        let live_encoded = live.encode(text).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let live_scores = live
            .classify(0, &[&live_encoded])
            .map_err(|e| format!("the live model failed on {text:?}: {e}"))?;
        let live_time = started.elapsed();
        let started = Instant::now();
        let scores = candidate
            .encode(text)
            .and_then(|encoded| candidate.classify(0, &[&encoded]));
        let candidate_time = started.elapsed();
        match scores {
            Ok(scores) => {
                let (agreed, score_difference) =
                    compare_scores(&live_task.labels, &live_scores, &task.labels, &scores);
                figures.record(&Sample {
                    predictions: 1,
                    agreed,
                    score_difference,
                    live: live_time,
                    candidate: candidate_time,
                });
            }
            Err(err) => figures.record_error(format!("on {text:?}: {err}")),
        }
    }
    Ok(figures)
}

fn summary(uri: &str, loaded: &model::Model) -> String {
    let task = match loaded.text() {
        Some(task) => format!("text classification, labels {:?}", task.labels),
        None => "tensor model".to_string(),
    };
    format!(
        "ok: {uri} would be accepted\nname: {}\nversion: {}\ntask: {task}\ngolden examples passed: {}\ndigest: {}",
        loaded.info.name,
        loaded.info.version,
        loaded.mlmodel.golden.len(),
        loaded.info.digest
    )
}

async fn validate_in(
    config: &Config,
    uri: &str,
    env: &dyn Fn(&str) -> Option<String>,
    scratch: &Path,
) -> Result<model::Model, String> {
    let mut options = LoadOptions {
        // Named as `hotserve serve` names it.
        name: ModelUri::parse(uri).map_or_else(|_| "model".into(), |parsed| parsed.default_name()),
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
        all_cores_threads: 0,
        execution_providers: config.execution_providers.clone(),
        keep_optimized: None,
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
            let progress = Arc::new(Progress::default());
            let download = registry::download(&client, &resolution, &target, &progress);
            let digests = show_progress("downloading", &progress, download)
                .await
                .map_err(|e| e.to_string())?;
            options.version = resolution.version.clone().or(resolution.model_id.clone());
            options.digests = Some(digests);
            target
        }
    };
    let local = matches!(ModelUri::parse(uri), Ok(ModelUri::Local(_)));
    tokio::task::spawn_blocking(move || {
        if local {
            // The links a reload would refuse to follow, refused here too.
            crate::reload::check_links(&dir).map_err(|e| e.to_string())?;
        }
        model::load(&dir, &options).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Runs `work` while showing `progress` on stderr: a progress bar on a terminal, else a plain
/// line every five seconds (logs and CI read those).
async fn show_progress<T>(
    what: &str,
    progress: &Progress,
    work: impl std::future::Future<Output = T>,
) -> T {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    });
    let every = if terminal {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = tick.tick() => {
                let report = progress.report();
                match &bar {
                    Some(bar) => {
                        bar.set_length(report.total_bytes);
                        bar.set_position(report.bytes);
                    }
                    None => eprintln!("{what}: {report}"),
                }
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// The digests of a local directory, read on the blocking pool with the bytes read shown.
async fn digest_showing_progress(
    dir: &Path,
) -> Result<Vec<crate::files::FileDigest>, crate::files::DigestError> {
    let progress = Arc::new(Progress::default());
    let (dir, counting) = (dir.to_path_buf(), progress.clone());
    let work = tokio::task::spawn_blocking(move || {
        crate::files::digest_dir_counting(&dir, &|bytes| counting.add(bytes))
    });
    show_progress("hashing", &progress, work)
        .await
        .expect("digesting a directory does not panic")
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("hotserve-validate-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
