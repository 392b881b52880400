//! Properties of every parser that reads outside input, checked with `proptest` on generated
//! inputs rather than a list of examples: request bodies (JSON and CSV), `MODEL_URI` forms,
//! `MLmodel` YAML, webhook deliveries, relative paths from listings and bundles, and
//! durations. For each: no input panics; every rejection is a typed error, and a rejected
//! request body maps to a 4xx; where a parser has an inverse, the round trip holds.

use std::path::{Component, Path};
use std::time::Duration;

use hotserve::config::parse_duration;
use hotserve::files::confine;
use hotserve::http::error::ApiError;
use hotserve::model::MlModel;
use hotserve::protocol::{parse_batch, parse_invocation, parse_predict, BadRequest, ContentType};
use hotserve::registry::ModelUri;
use hotserve::reload::webhook::{sign, Delivery, Verdict, Verifier, WebhookError};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("text".to_string()),
                    Just("texts".to_string()),
                    Just("inputs".to_string()),
                    Just("instances".to_string()),
                    Just("dataframe_split".to_string()),
                    Just("dataframe_records".to_string()),
                    Just("columns".to_string()),
                    Just("data".to_string()),
                    Just("params".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A rejected body is a 4xx with an MLflow error body.
fn assert_client_error(error: BadRequest) -> Result<(), TestCaseError> {
    let response = ApiError::from(error).response();
    prop_assert!(response.status().is_client_error(), "{}", response.status());
    Ok(())
}

/// Runs every request parser on `body`; none may panic, and every rejection is a 4xx.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    if let Err(error) = parse_predict(body) {
        assert_client_error(error)?;
    }
    if let Err(error) = parse_batch(body) {
        assert_client_error(error)?;
    }
    for content_type in [ContentType::Json, ContentType::Csv] {
        match parse_invocation(body, content_type) {
            Ok(invocation) => {
                if let Err(error) = invocation.texts() {
                    assert_client_error(error)?;
                }
            }
            Err(error) => assert_client_error(error)?,
        }
    }
    Ok(())
}

proptest! {
    // 1024 generated cases per property (well under a second each); failures are reported
    // with their shrunk input and not written to disk.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_a_request_parser(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_body(&body)?;
    }

    #[test]
    fn arbitrary_json_never_panics_a_request_parser(value in json_value()) {
        check_body(value.to_string().as_bytes())?;
    }

    #[test]
    fn arbitrary_csv_never_panics_a_request_parser(body in "[a-z,\"\r\n \u{feff}é]{0,64}") {
        check_body(body.as_bytes())?;
    }

    #[test]
    fn texts_round_trip_through_every_json_form(texts in prop::collection::vec(".{0,40}", 1..8)) {
        prop_assert_eq!(parse_predict(json!({"text": texts[0]}).to_string().as_bytes()), Ok(texts[0].clone()));
        prop_assert_eq!(parse_batch(json!({"texts": texts}).to_string().as_bytes()), Ok(texts.clone()));
        let rows: Vec<Value> = texts.iter().map(|t| json!([t])).collect();
        let split = json!({"dataframe_split": {"columns": ["text"], "data": rows}});
        let parsed = parse_invocation(split.to_string().as_bytes(), ContentType::Json)
            .and_then(|invocation| invocation.texts());
        prop_assert_eq!(parsed, Ok(texts.clone()));
        let records: Vec<Value> = texts.iter().map(|t| json!({"text": t})).collect();
        let parsed = parse_invocation(json!({"dataframe_records": records}).to_string().as_bytes(), ContentType::Json)
            .and_then(|invocation| invocation.texts());
        prop_assert_eq!(parsed, Ok(texts));
    }

    /// What the `csv` crate (and pandas) writes, hotserve reads back, row for row.
    #[test]
    fn texts_round_trip_through_csv(texts in prop::collection::vec("[^\r\u{feff}]{0,30}", 1..8)) {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["text"]).unwrap();
        for text in &texts {
            writer.write_record([text]).unwrap();
        }
        let body = writer.into_inner().unwrap();
        let parsed = parse_invocation(&body, ContentType::Csv).and_then(|invocation| invocation.texts());
        prop_assert_eq!(parsed, Ok(texts), "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn model_uris_parse_or_are_refused_and_registry_uris_round_trip(text in prop_oneof![
        ".{0,40}",
        "(models|runs|mlflow-artifacts|file):/{1,3}[a-zA-Z0-9@%/._ -]{0,30}",
        "models:/[a-z]{1,8}(@[a-z]{1,8}|/[0-9]{1,3}|/latest|/[Pp]roduction|/m-[a-f0-9]{4})",
    ]) {
        if let Ok(ModelUri::Remote(remote)) = ModelUri::parse(&text) {
            let shown = remote.to_string();
            match ModelUri::parse(&shown) {
                Ok(ModelUri::Remote(again)) => prop_assert_eq!(again, remote),
                other => prop_assert!(false, "{text:?} shows as {shown:?}, which parses as {other:?}"),
            }
        }
    }

    #[test]
    fn mlmodel_files_parse_or_are_refused(text in prop_oneof![
        ".{0,200}",
        "flavors:\n  onnx:\n    data: [a-z./]{0,12}\n(metadata:\n  labels: \\[[a-z, ]{0,20}\\]\n)?",
    ]) {
        let _ = MlModel::parse(&text);
    }

    #[test]
    fn confined_paths_stay_inside(path in prop_oneof![".{0,40}", "([a-z.]{0,3}/){0,5}[a-z.]{0,3}"]) {
        if let Ok(relative) = confine(&path) {
            prop_assert!(relative.is_relative());
            prop_assert!(relative.components().all(|c| matches!(c, Component::Normal(_))), "{relative:?}");
            let base = Path::new("/srv/model");
            prop_assert!(base.join(&relative).starts_with(base));
        }
    }

    #[test]
    fn durations_round_trip_and_never_panic(millis in 0u64..10_000_000_000, junk in ".{0,12}") {
        prop_assert_eq!(parse_duration(&format!("{millis}ms")), Ok(Duration::from_millis(millis)));
        let _ = parse_duration(&junk);
    }

    #[test]
    fn webhook_deliveries_never_panic(
        id in prop::option::of(".{0,20}"),
        timestamp in prop::option::of("[0-9 -]{0,12}"),
        signature in prop::option::of("(v1,)?[A-Za-z0-9+/=]{0,60}"),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let verifier = Verifier::new("secret");
        let delivery = Delivery {
            delivery_id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
            body: &body,
        };
        let _ = verifier.verify(&delivery, 1_700_000_000, Some("sentiment"));
    }

    /// A delivery signed with the secret is never refused for its signature, whatever it
    /// carries; only its payload can be wrong.
    #[test]
    fn signed_deliveries_verify(id in "[a-z0-9-]{1,20}", body in prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]) {
        let now = 1_700_000_000;
        let timestamp = now.to_string();
        let signature = sign("secret", &id, &timestamp, &body);
        let verifier = Verifier::new("secret");
        let delivery = Delivery {
            delivery_id: Some(&id),
            timestamp: Some(&timestamp),
            signature: Some(&signature),
            body: &body,
        };
        match verifier.verify(&delivery, now, Some("sentiment")) {
            Ok(Verdict::Check { .. } | Verdict::Ignore { .. }) | Err(WebhookError::BadPayload(_)) => {}
            Err(other) => prop_assert!(false, "a signed delivery was refused: {other}"),
        }
        prop_assert!(
            matches!(verifier.verify(&delivery, now, Some("sentiment")), Err(WebhookError::Replayed(_))),
            "the same delivery twice is a replay"
        );
    }
}
