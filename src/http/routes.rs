//! The routes of the contract (`../shared/docs/PRODUCT.md`, "HTTP interface"). The
//! un-prefixed routes serve the default model, `/models/{name}/...` the model configured as
//! `name` (`resolve` decides, purely). Each handler reads its body within limits, picks the
//! live model once, hands the texts to `predict` (which tokenizes them and waits for the
//! inference queue) and renders JSON; errors go through [`ApiError`].

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};

use super::error::{ApiError, Probe};
use super::{json, read_body, text, App, HttpResponse, Served, X_MODEL_VERSION};
use crate::model::argmax;
use crate::model::{tensor, Model, Scores};
use crate::oip::{self, OipError};
use crate::predict;
use crate::promote::shadow::Manual;
use crate::protocol::{self, ContentType};
use crate::reload::webhook::{self, Delivery, Verdict};
use crate::route::{Route, Target};
use crate::security::keys;

/// A routed request: the route and its `route` label (for metrics), the model it served and
/// the response.
pub struct Routed {
    /// The route as metrics name it (`/models/{name}/predict`, not the actual name).
    pub route: &'static str,
    /// The configured name of the model the route served, when it served one.
    pub model: Option<String>,
    pub response: HttpResponse,
}

/// How much of a refused request's body is read (and within how long) before the refusal.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;
const REFUSAL_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Routes a request.
pub async fn route(app: &App, request: Request<Incoming>) -> Routed {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let routed = crate::route::resolve(&path);
    let (route, target) = (routed.route, routed.target);
    let label = route.label(target);
    let answer = |model: Option<&Served>, response| Routed {
        route: label,
        model: model.map(|m| m.name.clone()),
        response,
    };
    // The Open Inference Protocol's clients read `{"error": ...}`, whatever went wrong.
    let oip = path == "/v2" || path.starts_with("/v2/");
    let shape = |err: ApiError| if oip { err.in_oip_shape() } else { err };
    // HTTP/2 has no limit of its own on the number of fields (hyper's HTTP/1 has).
    if request.headers().len() > app.config.max_headers {
        let err = ApiError::too_many_headers(app.config.max_headers);
        return answer(None, shape(err).response());
    }
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let needs_key = route.needs_key(&app.config);
    if let Err(err) = keys::check(app.api_keys.as_deref(), needs_key, authorization) {
        // Read a small body before refusing: over HTTP/2 an answer given while the client is
        // still sending ends the stream with RST_STREAM, which curl 7.x reports as error 92
        // instead of showing the 401.
        super::drain_body(request, REFUSAL_DRAIN_BYTES, REFUSAL_DRAIN_TIME).await;
        return answer(None, shape(err.into()).response());
    }
    if route == Route::Other {
        return answer(None, shape(ApiError::not_found(&path)).response());
    }
    let allowed = route.method();
    let method_ok = method == allowed || (allowed == Method::GET && method == Method::HEAD);
    if !method_ok {
        let err = ApiError::method_not_allowed(&method, &path, &allowed);
        return answer(None, shape(err).response());
    }
    let model = match target {
        Target::Daemon => None,
        Target::Default => Some(app.default_model()),
        Target::Named(wanted) => match app.model(wanted) {
            Some(model) => Some(model),
            None => {
                let err = ApiError::unknown_model(wanted, &app.model_names());
                return answer(None, err.response());
            }
        },
        Target::Oip { model, version } => {
            let result = match route {
                Route::OipInfer => oip_infer(app, model, version, request).await,
                Route::OipModelReady => oip_model_ready(app, model, version),
                _ => oip_model_metadata(app, model, version),
            };
            let response = result.unwrap_or_else(|err| shape(err).response());
            return answer(app.model(model), response);
        }
    };
    let result = match (route, model) {
        (Route::Predict, Some(model)) => predict(app, model, request).await,
        (Route::PredictBatch, Some(model)) => predict_batch(app, model, request).await,
        (Route::Invocations, Some(model)) => invocations(app, model, request).await,
        (Route::Ping, Some(model)) => Ok(ping(model)),
        (Route::ModelReady, Some(model)) => Ok(model_ready(model)),
        (Route::ModelMetadata, Some(model)) => model_metadata(model),
        (Route::Version, _) => Ok(text(
            StatusCode::OK,
            format!("{}\n", env!("CARGO_PKG_VERSION")),
            "text/plain; charset=utf-8",
        )),
        (Route::Health, _) => Ok(health(app)),
        (Route::HealthLive, _) => Ok(json(StatusCode::OK, &json!({"status": "alive"}))),
        (Route::HealthReady, _) => ready(app, request.uri().query().unwrap_or("")),
        (Route::Metrics, _) => Ok(text(
            StatusCode::OK,
            app.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        )),
        (Route::AdminReload, _) => admin_reload(app, request).await,
        (Route::AdminPromote, _) => admin_decide(app, &request, Manual::Promote),
        (Route::AdminReject, _) => admin_decide(app, &request, Manual::Reject),
        (Route::Webhook, _) => webhook(app, request).await,
        (Route::OipServer, _) => Ok(oip_server_metadata()),
        (Route::OipLive, _) => Ok(oip_probe("live", oip::server_live(app), None)),
        (Route::OipReady, _) => Ok(oip_server_ready(app)),
        _ => Err(ApiError::not_found(&path)),
    };
    answer(model, result.unwrap_or_else(|err| shape(err).response()))
}

/// `GET /v2`: the server's name, version and protocol extensions.
fn oip_server_metadata() -> HttpResponse {
    let metadata = oip::server_metadata();
    json(
        StatusCode::OK,
        &json!({"name": metadata.name, "version": metadata.version, "extensions": metadata.extensions}),
    )
}

/// A health answer of the Open Inference Protocol: `{"<what>": bool}` (and why not, when
/// not), 200 when true, 400 when false (the spec asks for a 4xx).
fn oip_probe(what: &str, holds: bool, why_not: Option<String>) -> HttpResponse {
    let probe = Probe::of(holds);
    let mut body = json!({ what: holds });
    if let (false, Some(why)) = (holds, why_not) {
        body["reason"] = json!(why);
    }
    json(probe.oip_status(), &body)
}

/// `GET /v2/health/ready`: every configured model is live and the server is not draining.
fn oip_server_ready(app: &App) -> HttpResponse {
    let ready = oip::server_ready(app);
    let why = (!ready).then(|| {
        app.models
            .iter()
            .filter(|m| !m.live.is_ready())
            .map(|m| format!("{}: {}", m.name, not_ready_reason(m)))
            .collect::<Vec<_>>()
            .join("; ")
    });
    oip_probe("ready", ready, why)
}

/// `GET /v2/models/{name}[/versions/{version}]/ready`.
fn oip_model_ready(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let ready = oip::model_ready(app, model, version)?;
    let why = (!ready)
        .then(|| app.model(model).map(not_ready_reason))
        .flatten();
    Ok(oip_probe("ready", ready, why))
}

/// `GET /v2/models/{name}[/versions/{version}]`: the live version, its inputs and outputs.
fn oip_model_metadata(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let metadata = oip::model_metadata(app, model, version)?;
    let tensors = |tensors: &[oip::TensorMetadata]| -> Vec<Value> {
        tensors
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype.as_str(), "shape": t.shape}))
            .collect()
    };
    Ok(json(
        StatusCode::OK,
        &json!({
            "name": metadata.name,
            "versions": metadata.versions,
            "platform": metadata.platform,
            "inputs": tensors(&metadata.inputs),
            "outputs": tensors(&metadata.outputs),
        }),
    ))
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`: JSON, or JSON followed by binary
/// tensor data (Triton's extension, `Inference-Header-Content-Length`), either way in and out.
async fn oip_infer(
    app: &App,
    model: &str,
    version: Option<&str>,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    let header_length = match request.headers().get(oip::rest::HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    OipError::Invalid(
                        "Inference-Header-Content-Length must be a byte count".to_string(),
                    )
                })?,
        ),
    };
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let request = oip::rest::decode(&body, header_length, model, version)?;
    let (requested, parameters) = (request.outputs.clone(), request.parameters.clone());
    let response = oip::infer_until(app, request, deadline).await?;
    let encoded = oip::rest::encode(&response, &requested, &parameters);
    let mut answer = match encoded.header_length {
        Some(length) => {
            let mut answer = text(StatusCode::OK, encoded.bytes, "application/octet-stream");
            answer
                .headers_mut()
                .insert(oip::rest::HEADER_LENGTH, HeaderValue::from(length as u64));
            answer
        }
        None => text(StatusCode::OK, encoded.bytes, "application/json"),
    };
    if let Ok(value) = HeaderValue::from_str(&response.model_version) {
        answer.headers_mut().insert(X_MODEL_VERSION.clone(), value);
    }
    Ok(answer)
}

/// `POST /predict` `{"text": "..."}`.
async fn predict(
    app: &App,
    served: &Served,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    require_json(&request)?;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let text = protocol::parse_predict(&body)?;
    check_text(app, 0, &text)?;
    let model = live_model(served)?;
    let scores = classify(app, served, &model, vec![text], deadline).await?;
    let labels = &model.text().expect("classify checked the task").labels;
    let mut body = prediction(labels, &scores[0]);
    body["model_version"] = json!(model.info.version);
    Ok(with_version(json(StatusCode::OK, &body), &model))
}

/// `POST /predict/batch` `{"texts": [...]}`: one model version for the whole batch.
async fn predict_batch(
    app: &App,
    served: &Served,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    require_json(&request)?;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let texts = protocol::parse_batch(&body)?;
    check_texts(app, &texts)?;
    let model = live_model(served)?;
    let scores = classify(app, served, &model, texts, deadline).await?;
    let labels = &model.text().expect("classify checked the task").labels;
    let predictions: Vec<Value> = scores.iter().map(|s| prediction(labels, s)).collect();
    Ok(with_version(
        json(
            StatusCode::OK,
            &json!({"predictions": predictions, "model_version": model.info.version}),
        ),
        &model,
    ))
}

/// `POST /invocations`: MLflow's scoring protocol.
async fn invocations(
    app: &App,
    served: &Served,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    let content_type = match media_type(&request).as_deref() {
        None | Some("application/json") => ContentType::Json,
        Some("text/csv") => ContentType::Csv,
        Some(other) => {
            return Err(ApiError::unsupported_media_type(
                other,
                "application/json or text/csv",
            ))
        }
    };
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let invocation = protocol::parse_invocation(&body, content_type)?;
    let model = live_model(served)?;
    let predictions = match model.text() {
        Some(task) => {
            let texts = invocation.texts()?;
            check_texts(app, &texts)?;
            let scores = classify(app, served, &model, texts, deadline).await?;
            let rows: Vec<Value> = scores
                .iter()
                .map(|s| {
                    let (best, p) = argmax(&s.0);
                    json!({"label": task.labels[best], "score": p})
                })
                .collect();
            Value::Array(rows)
        }
        None => {
            let reply = tensor::reply_for(&model, &invocation.data);
            let inputs = tensor::from_request(&model, invocation)?;
            let outputs = predict::run_tensors(app, served, &model, inputs, deadline).await?;
            tensor::to_predictions(&outputs, reply)?
        }
    };
    Ok(with_version(
        json(StatusCode::OK, &json!({"predictions": predictions})),
        &model,
    ))
}

/// Classifies texts with a text model through the shared prediction path.
async fn classify(
    app: &App,
    served: &Served,
    model: &Arc<Model>,
    texts: Vec<String>,
    deadline: Instant,
) -> Result<Vec<Scores>, ApiError> {
    if model.text().is_none() {
        return Err(ApiError::invalid(
            "the live model is a tensor model; send tensors to /invocations",
        ));
    }
    Ok(predict::classify(app, served, model, texts, deadline).await?)
}

/// `{"label", "score", "scores": {label: p}}`.
fn prediction(labels: &[String], scores: &Scores) -> Value {
    let (best, p) = argmax(&scores.0);
    let by_label: Map<String, Value> = labels
        .iter()
        .cloned()
        .zip(scores.0.iter().map(|&p| json!(p)))
        .collect();
    json!({"label": labels[best], "score": p, "scores": by_label})
}

fn live_model(served: &Served) -> Result<Arc<Model>, ApiError> {
    served.live.current().ok_or_else(|| {
        let status = served.live.status();
        ApiError::no_model(&status.last_error.unwrap_or(status.message))
    })
}

fn with_version(mut response: HttpResponse, model: &Model) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(&model.info.version) {
        response
            .headers_mut()
            .insert(X_MODEL_VERSION.clone(), value);
    }
    response
}

fn media_type(request: &Request<Incoming>) -> Option<String> {
    request.headers().get(CONTENT_TYPE).map(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

fn require_json(request: &Request<Incoming>) -> Result<(), ApiError> {
    match media_type(request).as_deref() {
        // `curl -d '{"text": ...}'` sends the form type; the body is still JSON.
        None | Some("application/json") | Some("application/x-www-form-urlencoded") => Ok(()),
        Some(other) => Err(ApiError::unsupported_media_type(other, "application/json")),
    }
}

fn check_texts(app: &App, texts: &[String]) -> Result<(), ApiError> {
    Ok(predict::check_texts(&app.config, texts)?)
}

fn check_text(app: &App, index: usize, text: &str) -> Result<(), ApiError> {
    Ok(predict::check_text(&app.config, index, text)?)
}

/// `GET /ping`: MLflow's liveness-with-model check, for the default model.
fn ping(served: &Served) -> HttpResponse {
    text(
        Probe::of(served.live.is_ready()).status(),
        "\n",
        "application/json",
    )
}

/// `GET /models/{name}/ready`: one model's readiness.
fn model_ready(served: &Served) -> HttpResponse {
    if served.live.is_ready() {
        return json(
            Probe::Pass.status(),
            &json!({"status": "ready", "model": served.name}),
        );
    }
    json(
        Probe::Fail.status(),
        &json!({"status": "not ready", "model": served.name, "reason": not_ready_reason(served)}),
    )
}

/// Why a model is not ready, in words.
fn not_ready_reason(served: &Served) -> String {
    if served.live.is_draining() {
        return "shutting down".to_string();
    }
    let status = served.live.status();
    status.last_error.unwrap_or(status.message)
}

/// `GET /health/ready`: 200 when every configured model (or each one `?models=a,b` names) is
/// live and the process is not draining; the 503 names the models that are not ready and why.
fn ready(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let wanted: Vec<&Served> = match query_value(query, "models") {
        Some(names) => names
            .split(',')
            .map(|name| {
                app.model(name)
                    .ok_or_else(|| ApiError::unknown_model(name, &app.model_names()))
            })
            .collect::<Result<_, _>>()?,
        None => app.models.iter().collect(),
    };
    let not_ready: Vec<&Served> = wanted.into_iter().filter(|m| !m.live.is_ready()).collect();
    if not_ready.is_empty() {
        return Ok(json(Probe::Pass.status(), &json!({"status": "ready"})));
    }
    let reason = match not_ready.as_slice() {
        [only] if app.models.len() == 1 => not_ready_reason(only),
        _ => not_ready
            .iter()
            .map(|m| format!("{}: {}", m.name, not_ready_reason(m)))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let names: Vec<&str> = not_ready.iter().map(|m| m.name.as_str()).collect();
    Ok(json(
        Probe::Fail.status(),
        &json!({"status": "not ready", "reason": reason, "not_ready": names}),
    ))
}

/// `GET /health`: the whole status in words, and whether a model is live. It fails (503, with
/// the same body) while no model is live, so a probe copied from an MLflow or TEI setup, where
/// `/health` means "can predict", never passes a pod without a model. While draining with a model
/// live it stays 200 with `"status": "draining"`: the model still answers requests until the
/// listener closes; taking the pod out of rotation is `/health/ready`'s job (503 at once).
fn health(app: &App) -> HttpResponse {
    let (mut body, probe) = model_health(app.default_model());
    let models: Map<String, Value> = app
        .models
        .iter()
        .map(|served| (served.name.clone(), model_health(served).0))
        .collect();
    let runtime = crate::model::runtime::get();
    let daemon = json!({
        "default_model": app.default_model().name,
        "models": models,
        "queue_depth": app.pool.depth(),
        "onnxruntime": runtime.map(|r| json!({"version": r.version, "library": r.library})),
        "hotserve_version": env!("CARGO_PKG_VERSION"),
        "tls": app.tls.as_ref().map(|tls| tls.status()),
        "api_keys": app.api_keys.as_ref().map(|keys| keys.status()),
    });
    if let (Some(body), Value::Object(daemon)) = (body.as_object_mut(), daemon) {
        body.extend(daemon);
    }
    json(probe.status(), &body)
}

/// One model's `/health` entry (the top level repeats the default model's) and its probe.
fn model_health(served: &Served) -> (Value, Probe) {
    let status = served.live.status();
    let model = served.live.current();
    let (state, probe) = health_state(model.is_some(), served.live.is_draining());
    let body = json!({
        "status": state,
        "model_loaded": model.is_some(),
        "message": status.message,
        "model": model.as_ref().map(|m| json!({
            "name": m.info.name,
            "version": m.info.version,
            "source": m.info.source,
            "aliases": m.info.aliases,
            "model_id": m.info.model_id,
            "run_id": m.info.run_id,
            "loaded_at": crate::model::rfc3339::format(m.info.loaded_at),
            "digest": m.info.digest,
            "files": m.info.digests,
            "pointer_target": m.info.pointer_target,
        })),
        "served_from_cache": status.from_cache,
        "last_check": status.last_check,
        "last_reload": status.last_reload,
        "last_error": status.last_error,
        "shadow": served.shadow.describe(),
        "last_promotion": status.last_promotion,
        "download": status.download,
    });
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

/// `GET /v1/model` (the default model) and `GET /models/{name}`.
fn model_metadata(served: &Served) -> Result<HttpResponse, ApiError> {
    let model = live_model(served)?;
    let task = model.text();
    let body = json!({
        "name": model.info.name,
        "version": model.info.version,
        "pointer_target": model.info.pointer_target,
        "source": model.info.source,
        "task": if task.is_some() { "text-classification" } else { "tensor" },
        "labels": task.map(|t| &t.labels),
        "max_sequence_length": task.map(|t| t.max_len),
        "signature": model.mlmodel.signature,
        "inputs": model.inputs,
        "outputs": model.outputs,
        "metadata": model.mlmodel.metadata,
        "mlflow_version": model.mlmodel.mlflow_version,
        "digest": model.info.digest,
        "files": model.info.digests,
        "loaded_at": crate::model::rfc3339::format(model.info.loaded_at),
    });
    Ok(with_version(json(StatusCode::OK, &body), &model))
}

/// How long `POST /admin/reload?wait=true` waits for the check (a cold download can be slow).
const ADMIN_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `POST /admin/reload`: a registry check now, behind the admin bearer token. With
/// `?wait=true` it answers once a check that started after the request has finished.
async fn admin_reload(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    admin_authorized(app, &request)?;
    let query = request.uri().query().unwrap_or("");
    let wait = matches!(query_value(query, "wait"), Some("true" | "1"));
    let targets: Vec<&Served> = match query_value(query, "model") {
        Some(name) => vec![app
            .model(name)
            .ok_or_else(|| ApiError::unknown_model(name, &app.model_names()))?],
        None => app.models.iter().collect(),
    };
    let tickets: Vec<u64> = targets
        .iter()
        .map(|served| served.triggers.request(crate::reload::Trigger::Admin))
        .collect();
    let names: Vec<&str> = targets.iter().map(|served| served.name.as_str()).collect();
    if !wait {
        return Ok(json(
            StatusCode::ACCEPTED,
            &json!({"status": "reload requested", "models": names, "hint": "GET /health shows last_check and last_reload, or add ?wait=true"}),
        ));
    }
    let waits = targets
        .iter()
        .zip(&tickets)
        .map(|(served, ticket)| served.triggers.wait_for(*ticket, ADMIN_WAIT));
    let finished = futures_util::future::join_all(waits).await;
    if !finished.iter().all(|done| *done) {
        return Ok(json(
            StatusCode::ACCEPTED,
            &json!({"status": "the check is still running", "models": names, "hint": "GET /health shows its outcome"}),
        ));
    }
    let checked = |served: &Served| {
        let status = served.live.status();
        let model = served.live.current();
        json!({
            "last_check": status.last_check,
            "last_error": status.last_error,
            "model": model.map(|m| json!({"name": m.info.name, "version": m.info.version})),
        })
    };
    // The top level is the first model checked (the default model's order when all were).
    let mut body = checked(targets[0]);
    body["status"] = json!("checked");
    body["models"] = targets
        .iter()
        .map(|served| (served.name.clone(), checked(served)))
        .collect::<Map<String, Value>>()
        .into();
    Ok(json(StatusCode::OK, &body))
}

/// Checks the admin bearer token; admin routes are off without `admin_token`.
fn admin_authorized(app: &App, request: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(token) = &app.config.admin_token else {
        return Err(ApiError::route_disabled(
            "admin routes are disabled; set HOTSERVE_ADMIN_TOKEN to enable them",
        ));
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => {
            return Err(ApiError::unauthorized(
                "send Authorization: Bearer <HOTSERVE_ADMIN_TOKEN>",
            ))
        }
        Some(given) if !keys::same_secret(given.as_bytes(), token.as_bytes()) => {
            return Err(ApiError::forbidden("the admin token is wrong"))
        }
        Some(_) => {}
    }
    Ok(())
}

/// `POST /admin/promote` and `POST /admin/reject` (`?model=` or the default model): decides
/// the candidate in shadow by hand; the reload pipeline swaps or refuses it at once.
fn admin_decide(
    app: &App,
    request: &Request<Incoming>,
    manual: Manual,
) -> Result<HttpResponse, ApiError> {
    admin_authorized(app, request)?;
    let query = request.uri().query().unwrap_or("");
    let served = match query_value(query, "model") {
        Some(name) => app
            .model(name)
            .ok_or_else(|| ApiError::unknown_model(name, &app.model_names()))?,
        None => app.default_model(),
    };
    let Some(version) = served.shadow.decide_by_hand(manual) else {
        return Err(ApiError::conflict(format!(
            "model '{}' has no version in shadow; GET /health shows the last promotion decision",
            served.name
        )));
    };
    let status = match manual {
        Manual::Promote => "promotion requested",
        Manual::Reject => "rejection requested",
    };
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"status": status, "model": served.name, "version": version, "hint": "GET /health shows last_promotion"}),
    ))
}

/// The value of `key` in a query string (`a=1&b=2`), undecoded: the values read here (model
/// names, `true`) need no decoding.
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, value)| value)
}

/// `POST /hooks/mlflow`: MLflow registry webhooks.
async fn webhook(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let Some(verifier) = &app.webhook else {
        return Err(ApiError::route_disabled(
            "the webhook receiver is disabled; set HOTSERVE_WEBHOOK_SECRET to enable it",
        ));
    };
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (id, timestamp, signature) = (
        header("x-mlflow-delivery-id"),
        header("x-mlflow-timestamp"),
        header("x-mlflow-signature"),
    );
    let deadline = Instant::now() + app.config.request_timeout;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let delivery = Delivery {
        delivery_id: id.as_deref(),
        timestamp: timestamp.as_deref(),
        signature: signature.as_deref(),
        body: &body,
    };
    // Verified once (replay protection remembers the delivery), then routed to the models
    // whose registered name the event names; local models take every event.
    let body = match verifier.verify(&delivery, now, None)? {
        Verdict::Check { event } => {
            let named = webhook::event_model(delivery.body);
            let targets = webhook_targets(app, named.as_deref());
            if targets.is_empty() {
                let ours: Vec<String> = app
                    .models
                    .iter()
                    .filter_map(|m| Some(format!("'{}'", m.registered_name.as_deref()?)))
                    .collect();
                let why = format!(
                    "event {event} is for model '{}', not {}",
                    named.unwrap_or_default(),
                    ours.join(" or ")
                );
                json!({"status": "ignored", "reason": why})
            } else {
                let names: Vec<&str> = targets.iter().map(|m| m.name.as_str()).collect();
                tracing::info!(%event, models = ?names, "webhook: checking the registry");
                for served in &targets {
                    served.triggers.request(crate::reload::Trigger::Webhook);
                }
                json!({"status": "check requested", "event": event, "models": names})
            }
        }
        Verdict::Ignore { why } => json!({"status": "ignored", "reason": why}),
    };
    Ok(json(StatusCode::OK, &body))
}

/// The models a registry event about the registered model `named` concerns: those registered
/// under that name, and local models (they have no registered name); every model when the
/// event names none.
fn webhook_targets<'a>(app: &'a App, named: Option<&str>) -> Vec<&'a Served> {
    app.models
        .iter()
        .filter(|served| concerns(served.registered_name.as_deref(), named))
        .collect()
}

/// Whether an event about the registered model `named` concerns a model registered as
/// `registered` (`None`: a local model).
fn concerns(registered: Option<&str>, named: Option<&str>) -> bool {
    match (registered, named) {
        (Some(ours), Some(theirs)) => ours == theirs,
        (None, _) | (_, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn webhook_events_concern() {
        let check = |registered, named, expected| {
            assert_eq!(concerns(registered, named), expected, "{registered:?} {named:?}");
        };
        check(Some("sentiment"), Some("sentiment"), true);
        check(Some("sentiment"), Some("fraud"), false);
        check(Some("sentiment"), None, true);
        check(None, Some("fraud"), true);
        check(None, None, true);
    }

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
}
