//! The admin routes, behind the admin bearer token (off without `admin_token`):
//! `POST /admin/reload` (a registry check now, `?model=` for one model, `?wait=true` to answer
//! with its outcome) and `POST /admin/promote` / `POST /admin/reject` (decide the candidate in
//! shadow by hand).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::{model_of_query, query_value};
use crate::http::error::ApiError;
use crate::http::{json, HttpResponse, Served};
use crate::live::status::{Attempt, Trigger};
use crate::promote::shadow::Manual;
use crate::security::keys;
use crate::state::App;

/// How long `POST /admin/reload?wait=true` waits for the check (a cold download can be slow).
pub(super) const ADMIN_WAIT: Duration = Duration::from_secs(300);

/// `POST /admin/reload` without `?wait=true`, or when the wait ran out: the check was asked
/// for; `/health` will show its outcome.
#[derive(Debug, Serialize)]
pub struct ReloadRequested<'a> {
    pub status: &'static str,
    pub models: Vec<&'a str>,
    pub hint: &'static str,
}

/// `POST /admin/reload?wait=true` once every check has run: the first model's outcome at the
/// top level (the default model's when all were checked), and every model's under `models`.
#[derive(Debug, Serialize)]
pub struct ReloadChecked<'a> {
    pub status: &'static str,
    #[serde(flatten)]
    pub first: Checked,
    pub models: BTreeMap<&'a str, Checked>,
}

/// One model's outcome of an admin check.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub last_check: Option<Attempt>,
    pub last_error: Option<String>,
    pub model: Option<Version>,
}

/// A model's name and version.
#[derive(Debug, Serialize)]
pub struct Version {
    pub name: String,
    pub version: String,
}

/// `POST /admin/promote` and `/admin/reject`: the decision was handed to the evaluation.
#[derive(Debug, Serialize)]
pub struct DecisionRequested<'a> {
    pub status: &'static str,
    pub model: &'a str,
    pub version: String,
    pub hint: &'static str,
}

/// `POST /admin/reload`: a registry check now, behind the admin bearer token. With
/// `?wait=true` it answers once a check that started after the request has finished.
pub async fn reload(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    authorized(app, &request)?;
    let query = request.uri().query().unwrap_or("");
    let wait = matches!(query_value(query, "wait").as_deref(), Some("true" | "1"));
    let targets: Vec<Arc<Served>> = match query_value(query, "model") {
        Some(_) => vec![model_of_query(app, query)?],
        None => app.models().to_vec(),
    };
    let tickets: Vec<u64> = targets
        .iter()
        .map(|served| served.triggers.request(Trigger::Admin))
        .collect();
    let names: Vec<&str> = targets.iter().map(|served| served.name.as_str()).collect();
    if !wait {
        let body = ReloadRequested {
            status: "reload requested",
            models: names,
            hint: "GET /health shows last_check and last_reload, or add ?wait=true",
        };
        return Ok(json(StatusCode::ACCEPTED, &body));
    }
    let waits = targets
        .iter()
        .zip(&tickets)
        .map(|(served, ticket)| served.triggers.wait_for(*ticket, ADMIN_WAIT));
    let finished = futures_util::future::join_all(waits).await;
    if !finished.iter().all(|done| *done) {
        let body = ReloadRequested {
            status: "the check is still running",
            models: names,
            hint: "GET /health shows its outcome",
        };
        return Ok(json(StatusCode::ACCEPTED, &body));
    }
    let body = ReloadChecked {
        status: "checked",
        first: checked(&targets[0]),
        models: targets
            .iter()
            .map(|served| (served.name.as_str(), checked(served)))
            .collect(),
    };
    Ok(json(StatusCode::OK, &body))
}

/// One model's outcome, as the admin routes show it.
fn checked(served: &Served) -> Checked {
    let status = served.live.status();
    Checked {
        last_check: status.last_check,
        last_error: status.last_error,
        model: served.live.current().map(|m| Version {
            name: m.info.name.clone(),
            version: m.info.version.clone(),
        }),
    }
}

/// `POST /admin/promote` and `POST /admin/reject` (`?model=` or the default model): decides
/// the candidate in shadow by hand; the reload pipeline swaps or refuses it at once.
pub fn decide(
    app: &App,
    request: &Request<Incoming>,
    manual: Manual,
) -> Result<HttpResponse, ApiError> {
    authorized(app, request)?;
    let served = model_of_query(app, request.uri().query().unwrap_or(""))?;
    let Some(version) = served.shadow.decide_by_hand(manual) else {
        return Err(ApiError::conflict(format!(
            "model '{}' has no version in shadow; GET /health shows the last promotion decision",
            served.name
        )));
    };
    let body = DecisionRequested {
        status: match manual {
            Manual::Promote => "promotion requested",
            Manual::Reject => "rejection requested",
        },
        model: &served.name,
        version,
        hint: "GET /health shows last_promotion",
    };
    Ok(json(StatusCode::ACCEPTED, &body))
}

/// Checks the admin bearer token; admin routes are off without `admin_token`.
pub(super) fn authorized(app: &App, request: &Request<Incoming>) -> Result<(), ApiError> {
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
        None => Err(ApiError::unauthorized(
            "send Authorization: Bearer <HOTSERVE_ADMIN_TOKEN>",
        )),
        Some(given) if !keys::same_secret(given.as_bytes(), token.as_bytes()) => {
            Err(ApiError::forbidden("the admin token is wrong"))
        }
        Some(_) => Ok(()),
    }
}
