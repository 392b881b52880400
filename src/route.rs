//! Every route hotserve answers, as one enum produced once ([`resolve`], pure, from the path)
//! and matched exhaustively everywhere that cares: the HTTP handlers, who may call it
//! ([`Route::access`]), the `route` label of the metrics ([`Route::label`]) and the gRPC
//! service, whose RPCs are the same operations as the Open Inference Protocol's REST routes.
//! Adding a route is adding a variant; the compiler then names every place that must decide
//! what to do with it.

use hyper::Method;

use crate::config::Config;

/// A route of the HTTP interface (`../shared/docs/PRODUCT.md`, "HTTP interface"), or `Other`
/// for a path that names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /predict` and `POST /models/{name}/predict`.
    Predict,
    /// `POST /predict/batch` and `POST /models/{name}/predict/batch`.
    PredictBatch,
    /// `POST /invocations` and `POST /models/{name}/invocations`.
    Invocations,
    /// `GET /v1/model` and `GET /models/{name}`.
    ModelMetadata,
    /// `GET /models/{name}/ready`.
    ModelReady,
    /// `GET /ping`.
    Ping,
    /// `GET /version`.
    Version,
    /// `GET /health`.
    Health,
    /// `GET /health/live`.
    HealthLive,
    /// `GET /health/ready`.
    HealthReady,
    /// `GET /metrics`.
    Metrics,
    /// `POST /admin/reload`.
    AdminReload,
    /// `POST /admin/promote`.
    AdminPromote,
    /// `POST /admin/reject`.
    AdminReject,
    /// `POST /hooks/mlflow`.
    Webhook,
    /// `GET /v2`: the Open Inference Protocol's server metadata.
    OipServer,
    /// `GET /v2/health/live`.
    OipLive,
    /// `GET /v2/health/ready`.
    OipReady,
    /// `GET /v2/models/{name}[/versions/{version}]`.
    OipModel,
    /// `GET /v2/models/{name}[/versions/{version}]/ready`.
    OipModelReady,
    /// `POST /v2/models/{name}[/versions/{version}]/infer`.
    OipInfer,
    /// `POST /v2/repository/index`: every model and its state (the model repository
    /// extension of KServe and Triton).
    OipRepositoryIndex,
    /// `POST /v2/repository/models/{name}/load`: load a model into memory (admin token).
    OipRepositoryLoad,
    /// `POST /v2/repository/models/{name}/unload`: unload it, kept valid on disk (admin
    /// token).
    OipRepositoryUnload,
    /// A path that names no route.
    Other,
}

/// Which model a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// None: `/health`, `/metrics`, `/admin/reload`, ...
    Daemon,
    /// The default model: the un-prefixed routes.
    Default,
    /// `/models/{name}/...`.
    Named(&'a str),
    /// `/v2/models/{name}[/versions/{version}]/...`: the Open Inference Protocol, whose
    /// handlers answer an unknown model or version themselves, in that protocol's shape.
    Oip {
        model: &'a str,
        version: Option<&'a str>,
    },
}

/// A path, routed: the route, the model it is about, and the method the route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routed<'a> {
    pub route: Route,
    pub target: Target<'a>,
}

/// What a route needs before it is served, when `api_keys_file` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Predictions and model metadata: an API key.
    Model,
    /// Health and readiness probes and `/version`: open unless `auth_health`.
    Probe,
    /// `/metrics`: open unless `auth_metrics`.
    Metrics,
    /// Routes with credentials of their own (`/admin/*`: the admin token; `/hooks/mlflow`:
    /// the webhook signature): never an API key.
    OwnCredentials,
}

/// The route `path` names, and its model. Pure.
pub fn resolve(path: &str) -> Routed<'_> {
    let daemon = |route| Routed {
        route,
        target: Target::Daemon,
    };
    let default = |route| Routed {
        route,
        target: Target::Default,
    };
    match path {
        "/predict" => default(Route::Predict),
        "/predict/batch" => default(Route::PredictBatch),
        "/invocations" => default(Route::Invocations),
        "/ping" => default(Route::Ping),
        "/v1/model" => default(Route::ModelMetadata),
        "/version" => daemon(Route::Version),
        "/health" => daemon(Route::Health),
        "/health/live" => daemon(Route::HealthLive),
        "/health/ready" => daemon(Route::HealthReady),
        "/metrics" => daemon(Route::Metrics),
        "/admin/reload" => daemon(Route::AdminReload),
        "/admin/promote" => daemon(Route::AdminPromote),
        "/admin/reject" => daemon(Route::AdminReject),
        "/hooks/mlflow" => daemon(Route::Webhook),
        "/v2" => daemon(Route::OipServer),
        "/v2/health/live" => daemon(Route::OipLive),
        "/v2/health/ready" => daemon(Route::OipReady),
        "/v2/repository/index" => daemon(Route::OipRepositoryIndex),
        _ if path.starts_with("/v2/models/") => resolve_oip(path).unwrap_or(daemon(Route::Other)),
        _ if path.starts_with("/v2/repository/models/") => {
            resolve_repository(path).unwrap_or(daemon(Route::Other))
        }
        _ => resolve_named(path).unwrap_or(daemon(Route::Other)),
    }
}

/// `/models/{name}[/...]`. Pure.
fn resolve_named(path: &str) -> Option<Routed<'_>> {
    let rest = path.strip_prefix("/models/")?;
    let (model, route) = rest.split_once('/').unwrap_or((rest, ""));
    if model.is_empty() {
        return None;
    }
    let route = match route {
        "" => Route::ModelMetadata,
        "ready" => Route::ModelReady,
        "predict" => Route::Predict,
        "predict/batch" => Route::PredictBatch,
        "invocations" => Route::Invocations,
        _ => return None,
    };
    Some(Routed {
        route,
        target: Target::Named(model),
    })
}

/// The model repository extension's `/v2/repository/models/{name}/load|unload`. Pure.
fn resolve_repository(path: &str) -> Option<Routed<'_>> {
    let rest = path.strip_prefix("/v2/repository/models/")?;
    let (model, action) = rest.split_once('/')?;
    let route = match action {
        "load" => Route::OipRepositoryLoad,
        "unload" => Route::OipRepositoryUnload,
        _ => return None,
    };
    (!model.is_empty()).then_some(Routed {
        route,
        target: Target::Oip {
            model,
            version: None,
        },
    })
}

/// The Open Inference Protocol's model routes: `/v2/models/{name}[/versions/{version}]`, then
/// nothing (metadata), `/ready` or `/infer`. Pure.
fn resolve_oip(path: &str) -> Option<Routed<'_>> {
    let rest = path.strip_prefix("/v2/models/")?;
    let mut parts = rest.split('/');
    let model = parts.next().filter(|m| !m.is_empty())?;
    let parts: Vec<&str> = parts.collect();
    let (route, version) = match parts.as_slice() {
        [] => (Route::OipModel, None),
        ["ready"] => (Route::OipModelReady, None),
        ["infer"] => (Route::OipInfer, None),
        ["versions", version] => (Route::OipModel, Some(*version)),
        ["versions", version, "ready"] => (Route::OipModelReady, Some(*version)),
        ["versions", version, "infer"] => (Route::OipInfer, Some(*version)),
        _ => return None,
    };
    if version.is_some_and(str::is_empty) {
        return None;
    }
    Some(Routed {
        route,
        target: Target::Oip { model, version },
    })
}

impl Route {
    /// The method the route takes (`HEAD` is also accepted where this is `GET`).
    pub fn method(self) -> Method {
        match self {
            Route::Predict
            | Route::PredictBatch
            | Route::Invocations
            | Route::AdminReload
            | Route::AdminPromote
            | Route::AdminReject
            | Route::Webhook
            | Route::OipInfer
            | Route::OipRepositoryIndex
            | Route::OipRepositoryLoad
            | Route::OipRepositoryUnload => Method::POST,
            Route::ModelMetadata
            | Route::ModelReady
            | Route::Ping
            | Route::Version
            | Route::Health
            | Route::HealthLive
            | Route::HealthReady
            | Route::Metrics
            | Route::OipServer
            | Route::OipLive
            | Route::OipReady
            | Route::OipModel
            | Route::OipModelReady
            | Route::Other => Method::GET,
        }
    }

    /// Who may call it. A route not yet classified would not compile, so none can slip
    /// through open.
    pub fn access(self) -> Access {
        match self {
            Route::Health
            | Route::HealthLive
            | Route::HealthReady
            | Route::Ping
            | Route::Version
            | Route::ModelReady
            | Route::OipServer
            | Route::OipLive
            | Route::OipReady
            | Route::OipModelReady => Access::Probe,
            Route::Metrics => Access::Metrics,
            Route::AdminReload
            | Route::AdminPromote
            | Route::AdminReject
            | Route::Webhook
            | Route::OipRepositoryLoad
            | Route::OipRepositoryUnload => Access::OwnCredentials,
            // An unknown path is answered 404 only to a caller with a key, so a scan without
            // one learns nothing.
            Route::Predict
            | Route::PredictBatch
            | Route::Invocations
            | Route::ModelMetadata
            | Route::OipModel
            | Route::OipInfer
            | Route::OipRepositoryIndex
            | Route::Other => Access::Model,
        }
    }

    /// Whether it needs an API key under `config` (when `api_keys_file` is set).
    pub fn needs_key(self, config: &Config) -> bool {
        match self.access() {
            Access::Model => true,
            Access::Probe => config.auth_health,
            Access::Metrics => config.auth_metrics,
            Access::OwnCredentials => false,
        }
    }

    /// The `route` label of the metrics: the path with `{name}` and `{version}` for the parts
    /// that vary, so the label's values stay few. Dashboards use these; keep them stable.
    pub fn label(self, target: Target<'_>) -> &'static str {
        let named = matches!(target, Target::Named(_));
        let versioned = matches!(
            target,
            Target::Oip {
                version: Some(_),
                ..
            }
        );
        match (self, named, versioned) {
            (Route::Predict, false, _) => "/predict",
            (Route::Predict, true, _) => "/models/{name}/predict",
            (Route::PredictBatch, false, _) => "/predict/batch",
            (Route::PredictBatch, true, _) => "/models/{name}/predict/batch",
            (Route::Invocations, false, _) => "/invocations",
            (Route::Invocations, true, _) => "/models/{name}/invocations",
            (Route::ModelMetadata, false, _) => "/v1/model",
            (Route::ModelMetadata, true, _) => "/models/{name}",
            (Route::ModelReady, _, _) => "/models/{name}/ready",
            (Route::Ping, _, _) => "/ping",
            (Route::Version, _, _) => "/version",
            (Route::Health, _, _) => "/health",
            (Route::HealthLive, _, _) => "/health/live",
            (Route::HealthReady, _, _) => "/health/ready",
            (Route::Metrics, _, _) => "/metrics",
            (Route::AdminReload, _, _) => "/admin/reload",
            (Route::AdminPromote, _, _) => "/admin/promote",
            (Route::AdminReject, _, _) => "/admin/reject",
            (Route::Webhook, _, _) => "/hooks/mlflow",
            (Route::OipServer, _, _) => "/v2",
            (Route::OipLive, _, _) => "/v2/health/live",
            (Route::OipReady, _, _) => "/v2/health/ready",
            (Route::OipModel, _, false) => "/v2/models/{name}",
            (Route::OipModel, _, true) => "/v2/models/{name}/versions/{version}",
            (Route::OipModelReady, _, false) => "/v2/models/{name}/ready",
            (Route::OipModelReady, _, true) => "/v2/models/{name}/versions/{version}/ready",
            (Route::OipInfer, _, false) => "/v2/models/{name}/infer",
            (Route::OipInfer, _, true) => "/v2/models/{name}/versions/{version}/infer",
            (Route::OipRepositoryIndex, _, _) => "/v2/repository/index",
            (Route::OipRepositoryLoad, _, _) => "/v2/repository/models/{name}/load",
            (Route::OipRepositoryUnload, _, _) => "/v2/repository/models/{name}/unload",
            (Route::Other, _, _) => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn paths_route_to_their_label_and_model() {
        let check = |path: &str, label: &str, target: Target| {
            let routed = resolve(path);
            assert_eq!((routed.route.label(routed.target), routed.target), (label, target), "{path}");
        };
        check("/predict", "/predict", Target::Default);
        check("/predict/batch", "/predict/batch", Target::Default);
        check("/invocations", "/invocations", Target::Default);
        check("/ping", "/ping", Target::Default);
        check("/v1/model", "/v1/model", Target::Default);
        check("/health", "/health", Target::Daemon);
        check("/health/ready", "/health/ready", Target::Daemon);
        check("/metrics", "/metrics", Target::Daemon);
        check("/admin/reload", "/admin/reload", Target::Daemon);
        check("/hooks/mlflow", "/hooks/mlflow", Target::Daemon);
        check("/models/a", "/models/{name}", Target::Named("a"));
        check("/models/a/ready", "/models/{name}/ready", Target::Named("a"));
        check("/models/a/predict", "/models/{name}/predict", Target::Named("a"));
        check("/models/a/predict/batch", "/models/{name}/predict/batch", Target::Named("a"));
        check("/models/a/invocations", "/models/{name}/invocations", Target::Named("a"));
        check("/v2", "/v2", Target::Daemon);
        check("/v2/health/live", "/v2/health/live", Target::Daemon);
        check("/v2/repository/index", "/v2/repository/index", Target::Daemon);
        check("/v2/repository/models/a/load", "/v2/repository/models/{name}/load", Target::Oip { model: "a", version: None });
        check("/v2/repository/models/a/unload", "/v2/repository/models/{name}/unload", Target::Oip { model: "a", version: None });
        check("/v2/models/a", "/v2/models/{name}", Target::Oip { model: "a", version: None });
        check("/v2/models/a/ready", "/v2/models/{name}/ready", Target::Oip { model: "a", version: None });
        check("/v2/models/a/infer", "/v2/models/{name}/infer", Target::Oip { model: "a", version: None });
        check("/v2/models/a/versions/3", "/v2/models/{name}/versions/{version}", Target::Oip { model: "a", version: Some("3") });
        check("/v2/models/a/versions/3/ready", "/v2/models/{name}/versions/{version}/ready", Target::Oip { model: "a", version: Some("3") });
        check("/v2/models/a/versions/3/infer", "/v2/models/{name}/versions/{version}/infer", Target::Oip { model: "a", version: Some("3") });
        for unknown in ["/", "/models/", "/models//predict", "/models/a/b", "/v2/models/", "/v2/models/a/versions/", "/v2/models/a/versions//infer", "/v2/models/a/x", "/predict/", "/nope", "/v2/repository/models/a", "/v2/repository/models//load", "/v2/repository/models/a/drop"] {
            check(unknown, "other", Target::Daemon);
        }
    }

    #[test]
    fn access_fails_closed_and_follows_the_settings() {
        let config = |health: bool, metrics: bool| {
            let env = |_: &str| None;
            let flags = vec![
                (
                    "api_keys_file".into(),
                    "--set api_keys_file".into(),
                    "/k".into(),
                ),
                (
                    "auth_health".into(),
                    "--set auth_health".into(),
                    health.to_string(),
                ),
                (
                    "auth_metrics".into(),
                    "--set auth_metrics".into(),
                    metrics.to_string(),
                ),
            ];
            Config::load(&crate::config::Inputs {
                config_file: None,
                flags,
                env: &env,
                variables: Vec::new(),
            })
            .unwrap()
        };
        let open = config(false, false);
        let closed = config(true, true);
        let cases = [
            (Route::Predict, true, true),
            (Route::OipInfer, true, true),
            (Route::Other, true, true),
            (Route::Health, false, true),
            (Route::OipModelReady, false, true),
            (Route::Metrics, false, true),
            (Route::AdminReload, false, false),
            (Route::Webhook, false, false),
        ];
        for (route, by_default, with_auth_settings) in cases {
            assert_eq!(route.needs_key(&open), by_default, "{route:?}");
            assert_eq!(route.needs_key(&closed), with_auth_settings, "{route:?}");
        }
    }
}
