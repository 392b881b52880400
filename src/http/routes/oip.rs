//! The Open Inference Protocol (KServe v2) over REST: `GET /v2`, `/v2/health/{live,ready}`,
//! `/v2/models/{name}[/versions/{version}][/ready]`, `POST .../infer` and `POST
//! /v2/repository/index`. The protocol itself
//! (readiness, metadata, inference) is `crate::oip`'s and its REST bodies are
//! `crate::oip::rest`'s; this file only carries them over HTTP (headers, statuses).

use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

use super::{not_ready_reason, with_version};
use crate::http::error::{ApiError, Probe};
use crate::http::{json, read_body, text, HttpResponse};
use crate::oip::{self, rest, OipError};
use crate::payload::Exchange;
use crate::route::Route;
use crate::state::App;

/// `GET /v2`: the server's name, version and protocol extensions.
pub fn server_metadata() -> HttpResponse {
    json(
        StatusCode::OK,
        &rest::server_metadata(&oip::server_metadata()),
    )
}

/// `GET /v2/health/live`.
pub fn server_live(app: &App) -> HttpResponse {
    probe(rest::Probe::live(oip::server_live(app)))
}

/// `GET /v2/health/ready`: every configured model is live and the server is not draining.
pub fn server_ready(app: &App) -> HttpResponse {
    let ready = oip::server_ready(app);
    let why = (!ready).then(|| {
        app.models()
            .iter()
            .filter(|m| !m.discovered && !m.live.is_ready())
            .map(|m| format!("{}: {}", m.name, not_ready_reason(m)))
            .collect::<Vec<_>>()
            .join("; ")
    });
    probe(rest::Probe::ready(ready, why))
}

/// `POST /v2/repository/index`: every model with its live version and state (`READY`,
/// `LOADING`, `UNAVAILABLE` with the reason); `{"ready": true}` keeps the ready ones. An empty
/// body asks for all.
pub async fn repository_index(
    app: &App,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    let body = read_body(request, INDEX_REQUEST_BYTES, deadline).await?;
    let asked: rest::IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        rest::IndexRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::from(OipError::Invalid(format!(
                "the repository index request is not {{\"ready\": true|false}}: {err}"
            )))
        })?
    };
    let entries = oip::repository_index(app, asked.ready);
    Ok(json(StatusCode::OK, &rest::repository_index(&entries)))
}

/// `POST /v2/repository/models/{name}/load` and `/unload` (behind the admin token): 200 with
/// an empty body once the model is loaded (within `memory_budget`; at most the admin wait) or
/// unloaded (once its last requests finished).
pub async fn repository_model(
    app: &App,
    route: Route,
    model: &str,
) -> Result<HttpResponse, ApiError> {
    match route {
        Route::OipRepositoryUnload => oip::unload(app, model).await?,
        _ => oip::load(app, model, super::admin::ADMIN_WAIT).await?,
    }
    // Triton answers both with 200 and no body.
    Ok(text(StatusCode::OK, "", "application/json"))
}

/// The largest repository index request read (it is `{"ready": true}` at most).
const INDEX_REQUEST_BYTES: usize = 4096;

/// `GET /v2/models/{name}[/versions/{version}]/ready`.
pub fn model_ready(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let ready = oip::model_ready(app, model, version)?;
    let why = (!ready)
        .then(|| app.model(model).map(|served| not_ready_reason(&served)))
        .flatten();
    Ok(probe(rest::Probe::ready(ready, why)))
}

/// `GET /v2/models/{name}[/versions/{version}]`: the live version, its inputs and outputs.
pub async fn model_metadata(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let metadata = oip::model_metadata(app, model, version).await?;
    Ok(json(StatusCode::OK, &rest::model_metadata(&metadata)))
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`: JSON, or JSON followed by binary
/// tensor data (Triton's extension, `Inference-Header-Content-Length`), either way in and out.
pub async fn infer(
    app: &App,
    model: &str,
    version: Option<&str>,
    request: Request<Incoming>,
    exchange: Option<&Exchange>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    let header_length = match request.headers().get(rest::HEADER_LENGTH) {
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
    let request = rest::decode(&body, header_length, model, version)?;
    let (requested, parameters) = (request.outputs.clone(), request.parameters.clone());
    let response = oip::infer_until(app, request, deadline, exchange).await?;
    let encoded = rest::encode(&response, &requested, &parameters);
    let answer = match encoded.header_length {
        Some(length) => {
            let mut answer = text(StatusCode::OK, encoded.bytes, "application/octet-stream");
            answer
                .headers_mut()
                .insert(rest::HEADER_LENGTH, HeaderValue::from(length as u64));
            answer
        }
        None => text(StatusCode::OK, encoded.bytes, "application/json"),
    };
    Ok(with_version(answer, &response.model_version))
}

/// A health answer of the protocol: 200 when it holds, 400 when not (the spec asks for a 4xx).
fn probe(body: rest::Probe) -> HttpResponse {
    json(Probe::of(body.holds()).oip_status(), &body)
}
