//! MLflow registry webhooks (`POST /hooks/mlflow`): signature check, freshness, replay
//! protection and event filtering. Pure apart from the replay memory, so every rule is
//! unit-tested.
//!
//! MLflow signs `"{X-MLflow-Delivery-Id}.{X-MLflow-Timestamp}.{raw body}"` with HMAC-SHA256 and
//! sends `X-MLflow-Signature: v1,<base64>`.

use std::collections::VecDeque;
use std::sync::Mutex;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How old a delivery may be (and how far in the future its clock may run).
pub const MAX_AGE_SECONDS: i64 = 300;
/// How many delivery ids are remembered for replay protection.
const REMEMBERED_DELIVERIES: usize = 4096;

/// Why a delivery was refused; each maps to a 400 or 401.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("X-MLflow-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error(
        "the delivery is older than {MAX_AGE_SECONDS} s (or from the future); check the clocks"
    )]
    Stale,
    #[error("X-MLflow-Signature must look like v1,<base64>")]
    MalformedSignature,
    #[error("the signature does not match; check HOTSERVE_WEBHOOK_SECRET against the webhook's secret in MLflow")]
    BadSignature,
    #[error("delivery {0} was already received")]
    Replayed(String),
    #[error("the body is not a JSON webhook payload: {0}")]
    BadPayload(String),
}

/// The headers MLflow sends with a delivery.
pub struct Delivery<'a> {
    pub delivery_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a verified delivery asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An event about the served model: check the registry now.
    Check { event: String },
    /// A valid delivery about something else.
    Ignore { why: String },
}

/// Verifies deliveries with one secret and remembers recent delivery ids.
pub struct Verifier {
    secret: Vec<u8>,
    seen: Mutex<VecDeque<String>>,
}

impl Verifier {
    pub fn new(secret: &str) -> Verifier {
        Verifier {
            secret: secret.as_bytes().to_vec(),
            seen: Mutex::new(VecDeque::new()),
        }
    }

    /// Checks a delivery received at `now` (Unix seconds) for a model named `model_name`
    /// (`None`: every model is ours, e.g. a local URI has no registered name).
    pub fn verify(
        &self,
        delivery: &Delivery<'_>,
        now: i64,
        model_name: Option<&str>,
    ) -> Result<Verdict, WebhookError> {
        let id = delivery
            .delivery_id
            .ok_or(WebhookError::MissingHeader("X-MLflow-Delivery-Id"))?;
        let timestamp = delivery
            .timestamp
            .ok_or(WebhookError::MissingHeader("X-MLflow-Timestamp"))?;
        let signature = delivery
            .signature
            .ok_or(WebhookError::MissingHeader("X-MLflow-Signature"))?;
        let sent: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| WebhookError::BadTimestamp)?;
        // `abs_diff`: a timestamp near i64::MIN must not overflow the subtraction.
        if now.abs_diff(sent) > MAX_AGE_SECONDS.unsigned_abs() {
            return Err(WebhookError::Stale);
        }
        let encoded = signature
            .strip_prefix("v1,")
            .ok_or(WebhookError::MalformedSignature)?;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| WebhookError::MalformedSignature)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(delivery.body);
        mac.verify_slice(&expected)
            .map_err(|_| WebhookError::BadSignature)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.iter().any(|s| s == id) {
                return Err(WebhookError::Replayed(id.to_string()));
            }
            if seen.len() == REMEMBERED_DELIVERIES {
                seen.pop_front();
            }
            seen.push_back(id.to_string());
        }
        classify_event(delivery.body, model_name)
    }
}

/// Decides whether a (verified) payload concerns the served model.
fn classify_event(body: &[u8], model_name: Option<&str>) -> Result<Verdict, WebhookError> {
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadPayload(e.to_string()))?;
    let entity = payload.get("entity").and_then(|e| e.as_str()).unwrap_or("");
    let action = payload.get("action").and_then(|e| e.as_str()).unwrap_or("");
    let event = format!("{entity}.{action}");
    let relevant = matches!(
        event.as_str(),
        "model_version.created"
            | "model_version_alias.created"
            | "model_version_alias.deleted"
            | "model_version_tag.set"
    );
    if !relevant {
        return Ok(Verdict::Ignore {
            why: format!("event {event} does not change what is served"),
        });
    }
    let name = payload.pointer("/data/name").and_then(|n| n.as_str());
    match (model_name, name) {
        (Some(ours), Some(theirs)) if ours != theirs => Ok(Verdict::Ignore {
            why: format!("event {event} is for model '{theirs}', not '{ours}'"),
        }),
        _ => Ok(Verdict::Check { event }),
    }
}

/// The registered model name a payload's event is about (`data.name`), if it names one.
pub fn event_model(body: &[u8]) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_slice(body).ok()?;
    payload
        .pointer("/data/name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
}

/// Signs like MLflow does; for tests and the example scripts.
pub fn sign(secret: &str, delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{delivery_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_760_000_000;
    const BODY: &[u8] = br#"{"entity": "model_version_alias", "action": "created", "data": {"name": "sentiment", "alias": "champion", "version": "2"}}"#;

    fn check(
        id: Option<&str>,
        ts: Option<i64>,
        signature: Option<String>,
        body: &[u8],
        expected: Result<Verdict, WebhookError>,
    ) {
        let verifier = Verifier::new("s3cret");
        let ts = ts.map(|t| t.to_string());
        let delivery = Delivery {
            delivery_id: id,
            timestamp: ts.as_deref(),
            signature: signature.as_deref(),
            body,
        };
        assert_eq!(verifier.verify(&delivery, NOW, Some("sentiment")), expected);
    }

    fn signed(secret: &str, id: &str, ts: i64, body: &[u8]) -> Option<String> {
        Some(sign(secret, id, &ts.to_string(), body))
    }

    #[test]
    fn verification_cases() {
        let check_event = || {
            Ok(Verdict::Check {
                event: "model_version_alias.created".into(),
            })
        };
        check(
            Some("d1"),
            Some(NOW),
            signed("s3cret", "d1", NOW, BODY),
            BODY,
            check_event(),
        );
        check(
            Some("d1"),
            Some(NOW - 299),
            signed("s3cret", "d1", NOW - 299, BODY),
            BODY,
            check_event(),
        );
        check(
            Some("d1"),
            Some(NOW),
            signed("wrong", "d1", NOW, BODY),
            BODY,
            Err(WebhookError::BadSignature),
        );
        check(
            Some("d1"),
            Some(NOW),
            signed("s3cret", "d2", NOW, BODY),
            BODY,
            Err(WebhookError::BadSignature),
        );
        check(
            Some("d1"),
            Some(NOW - 301),
            signed("s3cret", "d1", NOW - 301, BODY),
            BODY,
            Err(WebhookError::Stale),
        );
        check(
            Some("d1"),
            Some(NOW + 400),
            signed("s3cret", "d1", NOW + 400, BODY),
            BODY,
            Err(WebhookError::Stale),
        );
        // Found by fuzz/ (target `webhook`): `now - sent` overflowed (a panic in debug builds).
        for far in [i64::MIN, i64::MIN + NOW - 1, i64::MAX] {
            check(
                Some("d1"),
                Some(far),
                signed("s3cret", "d1", far, BODY),
                BODY,
                Err(WebhookError::Stale),
            );
        }
        check(
            Some("d1"),
            Some(NOW),
            Some("v2,abc".into()),
            BODY,
            Err(WebhookError::MalformedSignature),
        );
        check(
            Some("d1"),
            Some(NOW),
            Some("v1,@@@".into()),
            BODY,
            Err(WebhookError::MalformedSignature),
        );
        check(
            None,
            Some(NOW),
            signed("s3cret", "d1", NOW, BODY),
            BODY,
            Err(WebhookError::MissingHeader("X-MLflow-Delivery-Id")),
        );
        check(
            Some("d1"),
            None,
            Some("v1,x".into()),
            BODY,
            Err(WebhookError::MissingHeader("X-MLflow-Timestamp")),
        );
        check(
            Some("d1"),
            Some(NOW),
            None,
            BODY,
            Err(WebhookError::MissingHeader("X-MLflow-Signature")),
        );
        let other = br#"{"entity": "model_version", "action": "created", "data": {"name": "fraud", "version": "1"}}"#;
        check(
            Some("d1"),
            Some(NOW),
            signed("s3cret", "d1", NOW, other),
            other,
            Ok(Verdict::Ignore {
                why: "event model_version.created is for model 'fraud', not 'sentiment'".into(),
            }),
        );
        let prompt = br#"{"entity": "prompt", "action": "created", "data": {}}"#;
        check(
            Some("d1"),
            Some(NOW),
            signed("s3cret", "d1", NOW, prompt),
            prompt,
            Ok(Verdict::Ignore {
                why: "event prompt.created does not change what is served".into(),
            }),
        );
        let junk = b"not json";
        assert!(matches!(
            Verifier::new("s3cret").verify(
                &Delivery {
                    delivery_id: Some("d"),
                    timestamp: Some(&NOW.to_string()),
                    signature: signed("s3cret", "d", NOW, junk).as_deref(),
                    body: junk
                },
                NOW,
                None
            ),
            Err(WebhookError::BadPayload(_))
        ));
    }

    #[test]
    fn replays_are_refused() {
        let verifier = Verifier::new("s3cret");
        let ts = NOW.to_string();
        let signature = sign("s3cret", "d1", &ts, BODY);
        let delivery = Delivery {
            delivery_id: Some("d1"),
            timestamp: Some(&ts),
            signature: Some(&signature),
            body: BODY,
        };
        assert!(verifier.verify(&delivery, NOW, None).is_ok());
        assert_eq!(
            verifier.verify(&delivery, NOW, None),
            Err(WebhookError::Replayed("d1".into()))
        );
    }
}
