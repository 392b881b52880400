//! `POST /hooks/mlflow`: MLflow registry webhooks (off without `webhook_secret`). A delivery
//! is verified once (signature, age, replay; `crate::reload::webhook`), then turned into a
//! check of the models registered under the name the event names; local models take every
//! event.

use std::time::{Instant, SystemTime};

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::{json, read_body, HttpResponse, Served};
use crate::live::status::Trigger;
use crate::reload::webhook::{self, Delivery, Verdict};
use crate::state::App;

/// What a delivery led to.
#[derive(Debug, Serialize)]
#[serde(tag = "status")]
pub enum Delivered {
    /// The models the event concerns will check the registry.
    #[serde(rename = "check requested")]
    CheckRequested { event: String, models: Vec<String> },
    /// Verified, but nothing to do (another model, an event that changes nothing).
    #[serde(rename = "ignored")]
    Ignored { reason: String },
}

/// `POST /hooks/mlflow`: MLflow registry webhooks.
pub async fn deliver(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
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
    let answer = match verifier.verify(&delivery, now, None)? {
        Verdict::Check { event } => {
            // Any registry event may add or remove a discovered model.
            if let Some(discovery) = &app.discovery {
                discovery.request(Trigger::Webhook);
            }
            let named = webhook::event_model(delivery.body);
            let targets = targets(app, named.as_deref());
            if targets.is_empty() {
                let ours: Vec<String> = app
                    .models()
                    .iter()
                    .filter_map(|m| Some(format!("'{}'", m.registered_name.as_deref()?)))
                    .collect();
                let reason = format!(
                    "event {event} is for model '{}', not {}",
                    named.unwrap_or_default(),
                    ours.join(" or ")
                );
                Delivered::Ignored { reason }
            } else {
                let models: Vec<String> = targets.iter().map(|m| m.name.clone()).collect();
                tracing::info!(%event, ?models, "webhook: checking the registry");
                for served in &targets {
                    served.triggers.request(Trigger::Webhook);
                }
                Delivered::CheckRequested { event, models }
            }
        }
        Verdict::Ignore { why } => Delivered::Ignored { reason: why },
    };
    Ok(json(StatusCode::OK, &answer))
}

/// The models a registry event about the registered model `named` concerns: those registered
/// under that name, and local models (they have no registered name); every model when the
/// event names none.
fn targets(app: &App, named: Option<&str>) -> Vec<std::sync::Arc<Served>> {
    app.models()
        .iter()
        .filter(|served| concerns(served.registered_name.as_deref(), named))
        .cloned()
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
    fn answers_name_their_status() {
        let check = |delivered: Delivered, expected: serde_json::Value| {
            assert_eq!(serde_json::to_value(&delivered).unwrap(), expected);
        };
        check(
            Delivered::CheckRequested {
                event: "model_version_alias.created".into(),
                models: vec!["a".to_string()],
            },
            serde_json::json!({"status": "check requested", "event": "model_version_alias.created", "models": ["a"]}),
        );
        check(
            Delivered::Ignored {
                reason: "why".into(),
            },
            serde_json::json!({"status": "ignored", "reason": "why"}),
        );
    }
}
