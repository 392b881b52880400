//! What the daemon says about itself: `GET /health` (everything in words), `/health/live`,
//! `/health/ready` (every model, or the ones `?models=` names), `/ping` and
//! `/models/{name}/ready` (one model), `/v1/model` and `/models/{name}` (a model's metadata),
//! `/version` and `/metrics`. Which status a probe answers is `Probe`'s (`http/error.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{live_model, not_ready_reason, query_value, with_version};
use crate::http::error::{ApiError, Probe};
use crate::http::{json, text, HttpResponse, Served};
use crate::live::status::{Attempt, Decided};
use crate::live::{Parked, Residency};
use crate::model::providers;
use crate::model::{FileDigest, TensorDesc};
use crate::promote::shadow::ShadowStatus;
use crate::registry::ProgressReport;
use crate::security::credentials::CredentialStatus;
use crate::security::keys::KeysDetails;
use crate::security::tls::CertificateDetails;
use crate::state::App;
use hyper::StatusCode;

/// `GET /health`: the default model's entry at the top level, every model's under `models`,
/// and the daemon's own facts.
#[derive(Debug, Serialize)]
pub struct Health<'a> {
    /// The default model's entry (none when only discovered models are served).
    #[serde(flatten)]
    pub default: Option<ModelHealth>,
    pub default_model: Option<&'a str>,
    pub models: BTreeMap<String, ModelHealth>,
    pub queue_depth: usize,
    pub onnxruntime: Option<OnnxRuntime<'a>>,
    pub hotserve_version: &'static str,
    pub tls: Option<CredentialStatus<CertificateDetails>>,
    pub api_keys: Option<CredentialStatus<KeysDetails>>,
    /// `memory_budget` and what the loaded models hold of it, when a budget is set.
    pub memory_budget: Option<MemoryBudget>,
}

/// `/health`'s `memory_budget`.
#[derive(Debug, Serialize)]
pub struct MemoryBudget {
    pub limit_bytes: u64,
    /// The measured memory of the models loaded (and of a version being validated).
    pub used_bytes: u64,
}

/// One model's `/health` entry.
#[derive(Debug, Serialize)]
pub struct ModelHealth {
    /// `ok`, `unavailable` or `draining`.
    pub status: &'static str,
    pub model_loaded: bool,
    /// One sentence: "serving sentiment v3", "downloading ...", "no model: ...".
    pub message: String,
    pub model: Option<LiveModel>,
    pub served_from_cache: bool,
    pub last_check: Option<Attempt>,
    pub last_reload: Option<Attempt>,
    pub last_error: Option<String>,
    pub shadow: Option<ShadowStatus>,
    pub last_promotion: Option<Decided>,
    pub download: Option<ProgressReport>,
    /// Whether it is in memory: `loaded`, `loading`, `parked` (known and valid, loaded by its
    /// next request or, after an unload through the API, by `.../load`) or `absent`.
    pub residency: &'static str,
    /// The version set aside and why, while parked.
    pub parked: Option<Parked>,
    /// The measured memory of its loaded version (0 when not in memory).
    pub memory_bytes: u64,
    /// `pin: true`: never unloaded to make room.
    pub pinned: bool,
}

/// The live version in `/health`.
#[derive(Debug, Serialize)]
pub struct LiveModel {
    pub name: String,
    pub version: String,
    pub source: String,
    pub aliases: Vec<String>,
    pub model_id: Option<String>,
    pub run_id: Option<String>,
    pub loaded_at: String,
    pub digest: String,
    pub files: Vec<FileDigest>,
    pub pointer_target: Option<String>,
    /// Where its sessions run: `cpu`, or the device providers that started (`cuda:0`), as
    /// `execution_providers` chose them.
    pub execution_provider: String,
}

/// The ONNX Runtime library in use.
#[derive(Debug, Serialize)]
pub struct OnnxRuntime<'a> {
    pub version: &'a str,
    pub library: &'a Path,
}

/// `GET /v1/model` and `GET /models/{name}`: the live model's metadata.
#[derive(Debug, Serialize)]
pub struct ModelMetadata<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub pointer_target: Option<&'a str>,
    pub source: &'a str,
    /// `text-classification` or `tensor`.
    pub task: &'static str,
    pub labels: Option<&'a [String]>,
    pub max_sequence_length: Option<usize>,
    pub signature: &'a Option<crate::model::mlmodel::Signature>,
    pub inputs: &'a [TensorDesc],
    pub outputs: &'a [TensorDesc],
    pub metadata: &'a Value,
    pub mlflow_version: &'a Option<String>,
    pub digest: &'a str,
    pub files: &'a [FileDigest],
    pub loaded_at: String,
}

/// `GET /health/ready` and `/models/{name}/ready`: ready, or not and why.
#[derive(Debug, Serialize)]
pub struct Readiness<'a> {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// The one model asked about (`/models/{name}/ready`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The models that are not ready (`/health/ready`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<Vec<&'a str>>,
}

/// `GET /health/live`.
#[derive(Debug, Serialize)]
pub struct Alive {
    pub status: &'static str,
}

/// `GET /health`: the whole status in words, and whether a model is live. It fails (503, with
/// the same body) while no model is live, so a probe copied from an MLflow or TEI setup, where
/// `/health` means "can predict", never passes a pod without a model. While draining with a model
/// live it stays 200 with `"status": "draining"`: the model still answers requests until the
/// listener closes; taking the pod out of rotation is `/health/ready`'s job (503 at once).
pub fn health(app: &App) -> HttpResponse {
    let default_model = app.default_model();
    let (default, probe) = match &default_model {
        Some(served) => {
            let (health, probe) = model_health(served);
            (Some(health), probe)
        }
        // Discovered models only: the daemon answers.
        None => (None, Probe::Pass),
    };
    let runtime = crate::model::runtime::get();
    let models = app.models();
    let body = Health {
        default,
        default_model: default_model.as_ref().map(|served| served.name.as_str()),
        models: models
            .iter()
            .map(|served| (served.name.clone(), model_health(served).0))
            .collect(),
        queue_depth: app.pool.depth(),
        onnxruntime: runtime.map(|r| OnnxRuntime {
            version: &r.version,
            library: &r.library,
        }),
        hotserve_version: env!("CARGO_PKG_VERSION"),
        tls: app.tls.as_ref().map(|tls| tls.status()),
        api_keys: app.api_keys.as_ref().map(|keys| keys.status()),
        memory_budget: app.budget.limit().map(|limit_bytes| MemoryBudget {
            limit_bytes,
            used_bytes: app.budget.used(),
        }),
    };
    json(probe.status(), &body)
}

/// One model's `/health` entry (the top level repeats the default model's) and its probe.
fn model_health(served: &Served) -> (ModelHealth, Probe) {
    let status = served.live.status();
    let model = served.live.current();
    let residency = served.live.residency();
    // A model set aside on disk serves: its next request loads it.
    let servable = model.is_some()
        || matches!(
            &residency,
            Residency::Loading
                | Residency::Parked(Parked {
                    on_demand: true,
                    ..
                })
        );
    let (state, probe) = health_state(servable, served.live.is_draining());
    let body = ModelHealth {
        status: state,
        model_loaded: model.is_some(),
        message: status.message,
        model: model.as_ref().map(|m| LiveModel {
            name: m.info.name.clone(),
            version: m.info.version.clone(),
            source: m.info.source.clone(),
            aliases: m.info.aliases.clone(),
            model_id: m.info.model_id.clone(),
            run_id: m.info.run_id.clone(),
            loaded_at: crate::model::rfc3339::format(m.info.loaded_at),
            digest: m.info.digest.clone(),
            files: m.info.digests.clone(),
            pointer_target: m.info.pointer_target.clone(),
            execution_provider: providers::join(&m.execution_providers),
        }),
        served_from_cache: status.from_cache,
        last_check: status.last_check,
        last_reload: status.last_reload,
        last_error: status.last_error,
        shadow: served.shadow.describe(),
        last_promotion: status.last_promotion,
        download: status.download,
        residency: match &residency {
            Residency::Loaded => "loaded",
            Residency::Loading => "loading",
            Residency::Parked(_) => "parked",
            Residency::Absent => "absent",
        },
        parked: match residency {
            Residency::Parked(parked) => Some(parked),
            _ => None,
        },
        memory_bytes: served.live.loaded_bytes(),
        pinned: served.reloader.plan.pin,
    };
    (body, probe)
}

/// `/health`'s `status` word and probe result: the probe follows the model alone (draining
/// is readiness's business), the word says draining first.
fn health_state(model_live: bool, draining: bool) -> (&'static str, Probe) {
    let state = match (model_live, draining) {
        (_, true) => "draining",
        (true, false) => "ok",
        (false, false) => "unavailable",
    };
    (state, Probe::of(model_live))
}

/// `GET /health/live`: 200 while the process answers at all.
pub fn live() -> HttpResponse {
    json(StatusCode::OK, &Alive { status: "alive" })
}

/// `GET /health/ready`: 200 when every configured model (or each one `?models=a,b` names) is
/// live and the process is not draining; the 503 names the models that are not ready and why.
pub fn ready(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let models = app.models();
    let wanted: Vec<Arc<Served>> = match query_value(query, "models") {
        Some(names) => names
            .split(',')
            .map(|name| {
                app.model(name)
                    .ok_or_else(|| ApiError::unknown_model(name, &app.model_names()))
            })
            .collect::<Result<_, _>>()?,
        // Discovered models come and go; each has its own readiness (`?models=`).
        None => models.iter().filter(|m| !m.discovered).cloned().collect(),
    };
    let not_ready: Vec<&Served> = wanted
        .iter()
        .map(|m| &**m)
        .filter(|m| !m.live.is_ready())
        .collect();
    if not_ready.is_empty() {
        let body = Readiness {
            status: "ready",
            model: None,
            reason: None,
            not_ready: None,
        };
        return Ok(json(Probe::Pass.status(), &body));
    }
    let reason = match not_ready.as_slice() {
        [only] if models.len() == 1 => not_ready_reason(only),
        _ => not_ready
            .iter()
            .map(|m| format!("{}: {}", m.name, not_ready_reason(m)))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let body = Readiness {
        status: "not ready",
        model: None,
        reason: Some(reason),
        not_ready: Some(not_ready.iter().map(|m| m.name.as_str()).collect()),
    };
    Ok(json(Probe::Fail.status(), &body))
}

/// `GET /models/{name}/ready`: one model's readiness.
pub fn model_ready(served: &Served) -> HttpResponse {
    let ready = served.live.is_ready();
    let body = Readiness {
        status: if ready { "ready" } else { "not ready" },
        model: Some(&served.name),
        reason: (!ready).then(|| not_ready_reason(served)),
        not_ready: None,
    };
    json(Probe::of(ready).status(), &body)
}

/// `GET /ping`: MLflow's liveness-with-model check, for the default model.
pub fn ping(served: &Served) -> HttpResponse {
    text(
        Probe::of(served.live.is_ready()).status(),
        "\n",
        "application/json",
    )
}

/// `GET /version`: hotserve's version.
pub fn version() -> HttpResponse {
    text(
        StatusCode::OK,
        format!("{}\n", env!("CARGO_PKG_VERSION")),
        "text/plain; charset=utf-8",
    )
}

/// `GET /metrics`: Prometheus text.
pub fn metrics(app: &App) -> HttpResponse {
    text(
        StatusCode::OK,
        app.metrics.render(),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

/// `GET /v1/model` (the default model) and `GET /models/{name}`.
pub async fn model_metadata(app: &App, served: &Served) -> Result<HttpResponse, ApiError> {
    let deadline = std::time::Instant::now() + app.config.request_timeout;
    let model = live_model(served, deadline).await?;
    let task = model.text();
    let body = ModelMetadata {
        name: &model.info.name,
        version: &model.info.version,
        pointer_target: model.info.pointer_target.as_deref(),
        source: &model.info.source,
        task: if task.is_some() {
            "text-classification"
        } else {
            "tensor"
        },
        labels: task.map(|t| t.labels.as_slice()),
        max_sequence_length: task.map(|t| t.max_len),
        signature: &model.mlmodel.signature,
        inputs: &model.inputs,
        outputs: &model.outputs,
        metadata: &model.mlmodel.metadata,
        mlflow_version: &model.mlmodel.mlflow_version,
        digest: &model.info.digest,
        files: &model.info.digests,
        loaded_at: crate::model::rfc3339::format(model.info.loaded_at),
    };
    Ok(with_version(
        json(StatusCode::OK, &body),
        &model.info.version,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_states() {
        let check = |model_live, draining, expected| {
            assert_eq!(
                health_state(model_live, draining),
                expected,
                "model_live {model_live}, draining {draining}"
            );
        };
        check(true, false, ("ok", Probe::Pass));
        check(false, false, ("unavailable", Probe::Fail));
        check(true, true, ("draining", Probe::Pass));
        check(false, true, ("draining", Probe::Fail));
    }

    #[test]
    fn readiness_bodies_carry_only_what_applies() {
        let ready = Readiness {
            status: "ready",
            model: None,
            reason: None,
            not_ready: None,
        };
        assert_eq!(
            serde_json::to_value(&ready).unwrap(),
            serde_json::json!({"status": "ready"})
        );
        let one = Readiness {
            status: "not ready",
            model: Some("a"),
            reason: Some("loading".into()),
            not_ready: None,
        };
        assert_eq!(
            serde_json::to_value(&one).unwrap(),
            serde_json::json!({"status": "not ready", "model": "a", "reason": "loading"})
        );
    }
}
