//! The routes of the contract (`../shared/docs/PRODUCT.md`, "HTTP interface"). Each handler
//! reads its body within limits, picks the live model once, tokenizes on the blocking pool,
//! waits for the inference queue and renders JSON; errors go through [`ApiError`].

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::{error_response, json, read_body, text, App, HttpResponse, X_MODEL_VERSION};
use crate::model::load::argmax;
use crate::model::{tensor, Encoded, Model, Scores};
use crate::protocol::{self, ContentType};
use crate::reload::webhook::{Delivery, Verdict};

/// Routes a request; returns the route's name (for metrics) and the response.
pub async fn route(app: &App, request: Request<Incoming>) -> (&'static str, HttpResponse) {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (name, allowed) = match path.as_str() {
        "/predict" => ("/predict", Method::POST),
        "/predict/batch" => ("/predict/batch", Method::POST),
        "/invocations" => ("/invocations", Method::POST),
        "/ping" => ("/ping", Method::GET),
        "/version" => ("/version", Method::GET),
        "/health" => ("/health", Method::GET),
        "/health/live" => ("/health/live", Method::GET),
        "/health/ready" => ("/health/ready", Method::GET),
        "/v1/model" => ("/v1/model", Method::GET),
        "/metrics" => ("/metrics", Method::GET),
        "/admin/reload" => ("/admin/reload", Method::POST),
        "/hooks/mlflow" => ("/hooks/mlflow", Method::POST),
        _ => return ("other", error_response(&ApiError::not_found(&path))),
    };
    let method_ok = method == allowed || (allowed == Method::GET && method == Method::HEAD);
    if !method_ok {
        let mut response = error_response(&ApiError::method_not_allowed(
            method.as_str(),
            &path,
            allowed.as_str(),
        ));
        response.headers_mut().insert(
            hyper::header::ALLOW,
            HeaderValue::from_static(if allowed == Method::GET {
                "GET, HEAD"
            } else {
                "POST"
            }),
        );
        return (name, response);
    }
    let result = match name {
        "/predict" => predict(app, request).await,
        "/predict/batch" => predict_batch(app, request).await,
        "/invocations" => invocations(app, request).await,
        "/ping" => Ok(ping(app)),
        "/version" => Ok(text(
            200,
            format!("{}\n", env!("CARGO_PKG_VERSION")),
            "text/plain; charset=utf-8",
        )),
        "/health" => Ok(health(app)),
        "/health/live" => Ok(json(200, &json!({"status": "alive"}))),
        "/health/ready" => Ok(ready(app)),
        "/v1/model" => model_metadata(app),
        "/metrics" => Ok(text(
            200,
            app.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        )),
        "/admin/reload" => admin_reload(app, request).await,
        "/hooks/mlflow" => webhook(app, request).await,
        _ => Err(ApiError::not_found(&path)),
    };
    (name, result.unwrap_or_else(|err| error_response(&err)))
}

/// `POST /predict` `{"text": "..."}`.
async fn predict(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    require_json(&request)?;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let text = protocol::parse_predict(&body)?;
    check_text(app, 0, &text)?;
    let model = live_model(app)?;
    let scores = classify(app, &model, vec![text], deadline).await?;
    let labels = &model.text().expect("classify checked the task").labels;
    let mut body = prediction(labels, &scores[0]);
    body["model_version"] = json!(model.info.version);
    Ok(with_version(json(200, &body), &model))
}

/// `POST /predict/batch` `{"texts": [...]}`: one model version for the whole batch.
async fn predict_batch(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    require_json(&request)?;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let texts = protocol::parse_batch(&body)?;
    check_texts(app, &texts)?;
    let model = live_model(app)?;
    let scores = classify(app, &model, texts, deadline).await?;
    let labels = &model.text().expect("classify checked the task").labels;
    let predictions: Vec<Value> = scores.iter().map(|s| prediction(labels, s)).collect();
    Ok(with_version(
        json(
            200,
            &json!({"predictions": predictions, "model_version": model.info.version}),
        ),
        &model,
    ))
}

/// `POST /invocations`: MLflow's scoring protocol.
async fn invocations(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
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
    let model = live_model(app)?;
    let predictions = match model.text() {
        Some(task) => {
            let texts = invocation.texts()?;
            check_texts(app, &texts)?;
            let scores = classify(app, &model, texts, deadline).await?;
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
            let inputs = tensor::from_request(&model, invocation)?;
            let outputs = tokio::time::timeout_at(
                deadline.into(),
                app.pool.run_tensors(&model, inputs, deadline),
            )
            .await
            .map_err(|_| {
                ApiError::new(
                    504,
                    "DEADLINE_EXCEEDED",
                    "the request took longer than request_timeout",
                )
            })??;
            tensor::to_predictions(&outputs)
        }
    };
    Ok(with_version(
        json(200, &json!({"predictions": predictions})),
        &model,
    ))
}

/// Tokenizes on the blocking pool, then waits for the inference queue, within the deadline.
async fn classify(
    app: &App,
    model: &Arc<Model>,
    texts: Vec<String>,
    deadline: Instant,
) -> Result<Vec<Scores>, ApiError> {
    if model.text().is_none() {
        return Err(ApiError::invalid(
            "the live model is a tensor model; send tensors to /invocations",
        ));
    }
    let work = async {
        let tokenize_started = Instant::now();
        let tokenizing = model.clone();
        let encoded: Vec<Encoded> = tokio::task::spawn_blocking(move || {
            texts
                .iter()
                .map(|t| tokenizing.encode(t))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|err| ApiError::new(500, "INTERNAL_ERROR", format!("tokenization failed: {err}")))?
        .map_err(|err| ApiError::invalid(err.to_string()))?;
        app.metrics
            .tokenize_seconds
            .observe_duration(tokenize_started.elapsed());
        app.pool
            .classify(model, encoded, deadline)
            .await
            .map_err(|err| {
                if let crate::queue::PoolError::QueueFull { .. } = err {
                    app.metrics.rejected.inc(&[("reason", "queue_full")]);
                }
                ApiError::from(err)
            })
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(result) => result,
        Err(_) => {
            app.metrics.rejected.inc(&[("reason", "deadline")]);
            Err(ApiError::new(
                504,
                "DEADLINE_EXCEEDED",
                "the request took longer than request_timeout",
            ))
        }
    }
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

fn live_model(app: &App) -> Result<Arc<Model>, ApiError> {
    app.live.current().ok_or_else(|| {
        let status = app.live.status();
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
    if texts.is_empty() {
        return Err(ApiError::invalid("no texts to classify; send at least one"));
    }
    if texts.len() > app.config.max_batch_texts {
        return Err(ApiError::invalid(format!(
            "{} texts in one request; the limit is {} (max_batch_texts)",
            texts.len(),
            app.config.max_batch_texts
        )));
    }
    texts
        .iter()
        .enumerate()
        .try_for_each(|(i, t)| check_text(app, i, t))
}

fn check_text(app: &App, index: usize, text: &str) -> Result<(), ApiError> {
    if text.len() > app.config.max_text_bytes {
        return Err(ApiError::invalid(format!(
            "text {index} is {} bytes; the limit is {} (max_text_bytes)",
            text.len(),
            app.config.max_text_bytes
        )));
    }
    Ok(())
}

/// `GET /ping`: MLflow's liveness-with-model check.
fn ping(app: &App) -> HttpResponse {
    if app.live.is_ready() {
        text(200, "\n", "application/json")
    } else {
        text(503, "\n", "application/json")
    }
}

/// `GET /health/ready`.
fn ready(app: &App) -> HttpResponse {
    if app.live.is_ready() {
        return json(200, &json!({"status": "ready"}));
    }
    let status = app.live.status();
    let reason = if app.live.is_draining() {
        "shutting down".to_string()
    } else {
        status.last_error.unwrap_or(status.message)
    };
    json(503, &json!({"status": "not ready", "reason": reason}))
}

/// `GET /health`.
fn health(app: &App) -> HttpResponse {
    let status = app.live.status();
    let model = app.live.current();
    let runtime = crate::model::runtime::get();
    let state = match (&model, app.live.is_draining()) {
        (_, true) => "draining",
        (Some(_), false) => "ok",
        (None, false) => "unavailable",
    };
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
        })),
        "served_from_cache": status.from_cache,
        "last_check": status.last_check,
        "last_reload": status.last_reload,
        "last_error": status.last_error,
        "queue_depth": app.pool.depth(),
        "onnxruntime": runtime.map(|r| json!({"version": r.version, "library": r.library})),
        "hotserve_version": env!("CARGO_PKG_VERSION"),
    });
    json(200, &body)
}

/// `GET /v1/model`.
fn model_metadata(app: &App) -> Result<HttpResponse, ApiError> {
    let model = live_model(app)?;
    let task = model.text();
    let body = json!({
        "name": model.info.name,
        "version": model.info.version,
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
    Ok(with_version(json(200, &body), &model))
}

/// How long `POST /admin/reload?wait=true` waits for the check (a cold download can be slow).
const ADMIN_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `POST /admin/reload`: a registry check now, behind the admin bearer token. With
/// `?wait=true` it answers once a check that started after the request has finished.
async fn admin_reload(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let Some(token) = &app.config.admin_token else {
        return Err(ApiError::new(
            404,
            "ENDPOINT_NOT_FOUND",
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
            return Err(ApiError::new(
                401,
                "UNAUTHENTICATED",
                "send Authorization: Bearer <HOTSERVE_ADMIN_TOKEN>",
            ))
        }
        Some(given) if !constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            return Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                "the admin token is wrong",
            ))
        }
        Some(_) => {}
    }
    let wait = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "wait=true" || pair == "wait=1")
    });
    let ticket = app.triggers.request(crate::reload::Trigger::Admin);
    if !wait {
        return Ok(json(
            202,
            &json!({"status": "reload requested", "hint": "GET /health shows last_check and last_reload, or add ?wait=true"}),
        ));
    }
    if !app.triggers.wait_for(ticket, ADMIN_WAIT).await {
        return Ok(json(
            202,
            &json!({"status": "the check is still running", "hint": "GET /health shows its outcome"}),
        ));
    }
    let status = app.live.status();
    let model = app.live.current();
    Ok(json(
        200,
        &json!({
            "status": "checked",
            "last_check": status.last_check,
            "last_error": status.last_error,
            "model": model.map(|m| json!({"name": m.info.name, "version": m.info.version})),
        }),
    ))
}

/// `POST /hooks/mlflow`: MLflow registry webhooks.
async fn webhook(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let Some(verifier) = &app.webhook else {
        return Err(ApiError::new(
            404,
            "ENDPOINT_NOT_FOUND",
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
    use crate::reload::webhook::WebhookError;
    match verifier.verify(&delivery, now, app.registered_name.as_deref()) {
        Ok(Verdict::Check { event }) => {
            tracing::info!(%event, "webhook: checking the registry");
            app.triggers.request(crate::reload::Trigger::Webhook);
            Ok(json(
                200,
                &json!({"status": "check requested", "event": event}),
            ))
        }
        Ok(Verdict::Ignore { why }) => Ok(json(200, &json!({"status": "ignored", "reason": why}))),
        Err(
            err @ (WebhookError::BadSignature | WebhookError::Stale | WebhookError::Replayed(_)),
        ) => Err(ApiError::new(401, "UNAUTHENTICATED", err.to_string())),
        Err(err) => Err(ApiError::new(400, "BAD_REQUEST", err.to_string())),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
