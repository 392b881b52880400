//! Webhook deliveries: the input is `delivery id \n timestamp \n signature \n body`. Verifying
//! never panics and every refusal maps to a 4xx; the same delivery signed with the secret is
//! refused only for its payload, and a second time as a replay.
#![no_main]

use hotserve::http::error::ApiError;
use hotserve::reload::webhook::{event_model, sign, Delivery, Verifier, WebhookError};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_700_000_000;

fn client_error(error: WebhookError) {
    let status = ApiError::from(error).response().status();
    assert!(
        status.is_client_error(),
        "a refused delivery answered {status}"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let mut header = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let (id, timestamp, signature) = (header(), header(), header());
    let body = parts.next().unwrap_or_default();
    let verifier = Verifier::new("secret");
    let delivery = Delivery {
        delivery_id: id,
        timestamp,
        signature,
        body,
    };
    if let Err(error) = verifier.verify(&delivery, NOW, Some("sentiment")) {
        client_error(error);
    }
    let _ = event_model(body);

    // The same headers and body, signed: only the payload (or a stale timestamp) may be wrong.
    let (Some(id), Some(timestamp)) = (id, timestamp) else {
        return;
    };
    let signature = sign("secret", id, timestamp, body);
    let delivery = Delivery {
        delivery_id: Some(id),
        timestamp: Some(timestamp),
        signature: Some(&signature),
        body,
    };
    let fresh = Verifier::new("secret");
    match fresh.verify(&delivery, NOW, None) {
        Ok(_) => assert!(
            matches!(
                fresh.verify(&delivery, NOW, None),
                Err(WebhookError::Replayed(_))
            ),
            "the same delivery twice must be a replay"
        ),
        Err(
            WebhookError::BadPayload(_)
            | WebhookError::Stale
            | WebhookError::BadTimestamp
            | WebhookError::MissingHeader(_),
        ) => {}
        Err(other) => panic!("a signed delivery was refused: {other}"),
    }
});
