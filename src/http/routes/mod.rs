//! The routes of the contract (`../shared/docs/PRODUCT.md`, "HTTP interface"), one file per
//! concern: the predictions (`predictions.rs`: `/predict`, `/predict/batch`, `/invocations`),
//! the Open Inference Protocol (`oip.rs`, whose codec is `crate::oip::rest`), health, readiness
//! and model metadata (`health.rs`), the admin routes (`admin.rs`) and MLflow's webhooks
//! (`webhook.rs`). [`route`] takes the [`Route`] that `crate::route::resolve` made of the path,
//! checks the API key, the method and the model, and dispatches with one exhaustive match.
//! Each handler reads its body within limits, picks the live model once, and answers with a
//! `Serialize` body type declared next to it; errors go through [`ApiError`].

mod admin;
mod health;
mod oip;
mod predictions;
mod webhook;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};

use super::error::ApiError;
use super::{HttpResponse, Served, X_MODEL_VERSION};
use crate::access;
use crate::live::{Demand, NotLive};
use crate::model::Model;
use crate::payload;
use crate::promote::shadow::Manual;
use crate::route::{Route, Target};
use crate::security::keys;
use crate::state::App;

/// A routed request: the route's `route` label (for metrics), the model it served and the
/// response.
pub struct Routed {
    /// The route as metrics name it (`/models/{name}/predict`, not the actual name).
    pub route: &'static str,
    /// The configured name of the model the route served, when it served one.
    pub model: Option<String>,
    pub response: HttpResponse,
}

/// How much of a refused request's body is read (and within how long) before the refusal.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;
const REFUSAL_DRAIN_TIME: Duration = Duration::from_secs(1);

/// Routes a request; `request_id` is the id its answer carries (for the payload log).
pub async fn route(app: &App, request: Request<Incoming>, request_id: &HeaderValue) -> Routed {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let routed = crate::route::resolve(&path);
    let (route, target) = (routed.route, routed.target);
    let answer = |model: Option<&Served>, response| Routed {
        route: route.label(target),
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
    if method != allowed && !(allowed == Method::GET && method == Method::HEAD) {
        let err = ApiError::method_not_allowed(&method, &path, &allowed);
        return answer(None, shape(err).response());
    }
    let served = match target {
        Target::Daemon => None,
        Target::Default => match app.default_model() {
            Some(served) => Some(served),
            None => return answer(None, no_default().response()),
        },
        Target::Named(wanted) => match app.model(wanted) {
            Some(served) => Some(served),
            None => {
                let err = ApiError::unknown_model(wanted, &app.model_names());
                return answer(None, err.response());
            }
        },
        // The protocol's handlers answer an unknown model or version in its own shape.
        Target::Oip { model, .. } => app.model(model),
    };
    // The model, held until the request is answered (discovery may remove it meanwhile).
    let served = served.as_deref();
    // The routes that predict, when their model logs payloads and this request is sampled.
    let sampled = match (route, served) {
        (
            Route::Predict | Route::PredictBatch | Route::Invocations | Route::OipInfer,
            Some(Served {
                payload: Some(policy),
                ..
            }),
        ) => policy.sample(payload::Seen {
            request_id: &String::from_utf8_lossy(request_id.as_bytes()),
            // The request's span is the current one here.
            trace_id: access::request_trace_id(
                &tracing::Span::current(),
                request
                    .headers()
                    .get("traceparent")
                    .and_then(|value| value.to_str().ok()),
            )
            .as_deref(),
            protocol: payload::Protocol::Http,
            route: route.label(target),
        }),
        _ => None,
    };
    let exchange = sampled.as_ref();
    // Routes of one model are resolved with a model target; a daemon target has none.
    let model = || served.ok_or_else(|| ApiError::not_found(&path));
    let result = match route {
        Route::Predict => match model() {
            Ok(served) => predictions::predict(app, served, request, exchange).await,
            Err(err) => Err(err),
        },
        Route::PredictBatch => match model() {
            Ok(served) => predictions::predict_batch(app, served, request, exchange).await,
            Err(err) => Err(err),
        },
        Route::Invocations => match model() {
            Ok(served) => predictions::invocations(app, served, request, exchange).await,
            Err(err) => Err(err),
        },
        Route::ModelMetadata => match model() {
            Ok(served) => health::model_metadata(app, served).await,
            Err(err) => Err(err),
        },
        Route::ModelReady => model().map(health::model_ready),
        Route::Ping => model().map(health::ping),
        Route::Version => Ok(health::version()),
        Route::Health => Ok(health::health(app)),
        Route::HealthLive => Ok(health::live()),
        Route::HealthReady => health::ready(app, request.uri().query().unwrap_or("")),
        Route::Metrics => Ok(health::metrics(app)),
        Route::AdminReload => admin::reload(app, request).await,
        Route::AdminPromote => admin::decide(app, &request, Manual::Promote),
        Route::AdminReject => admin::decide(app, &request, Manual::Reject),
        Route::Webhook => webhook::deliver(app, request).await,
        Route::OipServer => Ok(oip::server_metadata()),
        Route::OipLive => Ok(oip::server_live(app)),
        Route::OipReady => Ok(oip::server_ready(app)),
        Route::OipModel => match target {
            Target::Oip { model, version } => oip::model_metadata(app, model, version).await,
            _ => Err(ApiError::not_found(&path)),
        },
        Route::OipModelReady => match target {
            Target::Oip { model, version } => oip::model_ready(app, model, version),
            _ => Err(ApiError::not_found(&path)),
        },
        Route::OipInfer => match target {
            Target::Oip { model, version } => {
                oip::infer(app, model, version, request, exchange).await
            }
            _ => Err(ApiError::not_found(&path)),
        },
        Route::OipRepositoryIndex => oip::repository_index(app, request).await,
        Route::OipRepositoryLoad | Route::OipRepositoryUnload => match target {
            Target::Oip { model, .. } => match admin::authorized(app, &request) {
                Ok(()) => oip::repository_model(app, route, model).await,
                Err(err) => Err(err),
            },
            _ => Err(ApiError::not_found(&path)),
        },
        Route::Other => Err(ApiError::not_found(&path)),
    };
    let response = result.unwrap_or_else(|err| {
        if let Some(exchange) = exchange {
            exchange.failed(err.message());
        }
        shape(err).response()
    });
    if let Some(exchange) = sampled {
        exchange.finish(payload::Status::Http(response.status().as_u16()));
    }
    answer(served, response)
}

/// The live model of `served` (loaded first when it is parked, waiting until `deadline`), or a
/// 503 that says why there is none.
async fn live_model(served: &Served, deadline: Instant) -> Result<Arc<Model>, ApiError> {
    let patience = deadline.saturating_duration_since(Instant::now());
    served
        .live
        .acquire(patience, Demand::Request)
        .await
        .map_err(|not_live| {
            let status = served.live.status();
            match not_live {
                NotLive::StillLoading => ApiError::no_model(&format!(
                    "{} is still loading (a cold start longer than the request's deadline); retry",
                    served.name
                )),
                NotLive::Unavailable => {
                    ApiError::no_model(&status.last_error.unwrap_or(status.message))
                }
            }
        })
}

/// Adds `X-Model-Version: version` to `response`.
fn with_version(mut response: HttpResponse, version: &str) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(version) {
        response
            .headers_mut()
            .insert(X_MODEL_VERSION.clone(), value);
    }
    response
}

/// The media type of the request's `Content-Type`, lower-case, without parameters.
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

/// The value of `key` in a query string (`a=1&b=2`), percent-decoded.
fn query_value<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, value)| value)
}

/// The model a query names (`?model=`), or the default model.
fn model_of_query(app: &App, query: &str) -> Result<Arc<Served>, ApiError> {
    match query_value(query, "model") {
        Some(name) => app
            .model(&name)
            .ok_or_else(|| ApiError::unknown_model(&name, &app.model_names())),
        None => app.default_model().ok_or_else(no_default),
    }
}

/// Only discovered models are served: the un-prefixed routes name none.
fn no_default() -> ApiError {
    ApiError::not_found(
        "the default model (only discovered models are served; use /models/{name}/...)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let check = |query: &str, key: &str, expected: Option<&str>| {
            assert_eq!(
                query_value(query, key).as_deref(),
                expected,
                "{query:?} {key}"
            );
        };
        check("wait=true", "wait", Some("true"));
        check("model=a&wait=1", "wait", Some("1"));
        check("models=a%2Cb", "models", Some("a,b"));
        check("model=my+model", "model", Some("my model"));
        check("wait", "wait", Some(""));
        check("", "wait", None);
        check("waiting=true", "wait", None);
    }
}
