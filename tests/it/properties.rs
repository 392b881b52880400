//! Properties of every parser that reads outside input, checked with `proptest` on generated
//! inputs rather than a list of examples: request bodies (JSON and CSV), `MODEL_URI` forms,
//! `MLmodel` YAML, webhook deliveries, relative paths from listings and bundles, zip bundle
//! entries, tensor requests against a graph's inputs, durations and size settings. For each: no
//! input panics; every rejection is a typed error, and a rejected request body maps to a 4xx;
//! where a parser has an inverse, the round trip holds. An `MLmodel` is read exactly as YAML
//! reads its parts, and a webhook delivery not signed with the secret is never accepted. The
//! Open Inference Protocol's REST decoder (JSON, and JSON followed by binary tensor data) and
//! its raw tensor codec are held to the same. The fast BERT tokenizer (`model::wordpiece`)
//! gives exactly `tokenizers`' ids on every ASCII text it accepts, and accepts plain sentences.
//!
//! A failing case's seed is saved in `properties.proptest-regressions` beside this file, and
//! every run tries the seeds saved there first.

use std::io::Write as _;
use std::path::{Component, Path};
use std::sync::LazyLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hotserve::config::{parse_duration, Config, Inputs};
use hotserve::files::confine;
use hotserve::http::error::ApiError;
use hotserve::model::bundle::{extract, BundleError};
use hotserve::model::mlmodel::MlModelError;
use hotserve::model::tensor::tensors_for;
use hotserve::model::wordpiece::FastBert;
use hotserve::model::{MlModel, TensorDesc};
use hotserve::oip::{rest, ElementType as Datatype, Values as Data};
use hotserve::protocol::{parse_batch, parse_invocation, parse_predict, BadRequest, ContentType};
use hotserve::registry::ModelUri;
use hotserve::reload::webhook::{sign, Delivery, Verdict, Verifier, WebhookError};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

/// The time at which the webhook properties receive their deliveries (Unix seconds).
const WEBHOOK_NOW: i64 = 1_700_000_000;

/// A webhook payload about the served model that would make hotserve check the registry.
const ALIAS_MOVED: &[u8] = br#"{"entity": "model_version_alias", "action": "created",
    "data": {"name": "sentiment", "alias": "champion", "version": "2"}}"#;

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

/// Something like an inference request: inputs with protocol (or made-up) datatypes, shapes,
/// data of any kind, sometimes binary sizes, and requested outputs.
fn infer_request() -> impl Strategy<Value = Value> {
    let datatype = prop_oneof![
        prop::sample::select(Datatype::ALL.map(|d| d.oip_name()).to_vec()).prop_map(String::from),
        "[A-Z0-9]{0,6}",
    ];
    let shape = prop::collection::vec(prop_oneof![0i64..4, any::<i64>()], 0..4);
    let parameters = prop_oneof![
        Just(Value::Null),
        (0u64..40).prop_map(|size| json!({"binary_data_size": size})),
        json_value(),
    ];
    let input = (".{0,4}", datatype, shape, json_value(), parameters).prop_map(
        |(name, datatype, shape, data, parameters)| {
            let mut input = json!({"name": name, "datatype": datatype, "shape": shape});
            if !parameters.is_null() {
                input["parameters"] = parameters;
            }
            if !input["parameters"]["binary_data_size"].is_u64() {
                input["data"] = data;
            }
            input
        },
    );
    let output = (".{0,4}", any::<Option<bool>>()).prop_map(|(name, binary)| match binary {
        Some(binary) => json!({"name": name, "parameters": {"binary_data": binary}}),
        None => json!({"name": name}),
    });
    (
        prop::collection::vec(input, 0..4),
        prop::collection::vec(output, 0..3),
        any::<Option<bool>>(),
    )
        .prop_map(|(inputs, outputs, all_binary)| {
            let mut request = json!({"inputs": inputs, "outputs": outputs});
            if let Some(all) = all_binary {
                request["parameters"] = json!({"binary_data_output": all});
            }
            request
        })
}

/// Decodes an inference request body; it may not panic, and a rejection is a 4xx with the
/// protocol's `{"error": ...}`.
fn check_infer_body(body: &[u8], header_length: Option<usize>) -> Result<(), TestCaseError> {
    if let Err(error) = rest::decode(body, header_length, "m", None) {
        let error = ApiError::from(error);
        let response = error.response();
        prop_assert!(response.status().is_client_error(), "{}", response.status());
        let answer: Value = serde_json::from_str(&error.body()).unwrap();
        prop_assert!(answer["error"].is_string(), "{answer}");
    }
    Ok(())
}

/// Any tensor data, with floats that equal themselves (so `==` can compare round trips).
fn tensor_data() -> impl Strategy<Value = Data> {
    let count = 0..6usize;
    prop_oneof![
        prop::collection::vec(any::<bool>(), count.clone()).prop_map(Data::Bool),
        prop::collection::vec(any::<u8>(), count.clone()).prop_map(Data::Uint8),
        prop::collection::vec(any::<i8>(), count.clone()).prop_map(Data::Int8),
        prop::collection::vec(any::<i32>(), count.clone()).prop_map(Data::Int32),
        prop::collection::vec(any::<i64>(), count.clone()).prop_map(Data::Int64),
        prop::collection::vec(0u16..0x7c00, count.clone()).prop_map(Data::Fp16),
        prop::collection::vec(-1e30f32..1e30, count.clone()).prop_map(Data::Fp32),
        prop::collection::vec(-1e300f64..1e300, count.clone()).prop_map(Data::Fp64),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), count)
            .prop_map(Data::Bytes),
    ]
}

/// `cases` generated cases per property. A failure is reported with its shrunk input, and its
/// seed is saved beside this file (`properties.proptest-regressions`, checked in), whose seeds
/// every run tries first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// What parsing an `MLmodel` whose onnx flavor says `data: <data>` and whose metadata, if
/// any, says `labels: [<labels>]` must give, as YAML reads those parts: the ONNX file and the
/// labels, or the part that is wrong (`yaml`, `data`, `flavors.onnx` or `metadata`), in the
/// order the parser looks at them.
fn expected_mlmodel(
    data: &str,
    labels: Option<&str>,
) -> Result<(String, Option<Vec<String>>), &'static str> {
    let read = |line: String| serde_yaml::from_str::<serde_yaml::Mapping>(&line);
    let labels = match labels {
        None => None,
        Some(labels) => match read(format!("labels: [{labels}]")) {
            Ok(mapping) => Some(mapping["labels"].clone()),
            Err(_) => return Err("yaml"),
        },
    };
    let onnx_file = match &read(format!("data: {data}")).expect("a plain scalar")["data"] {
        serde_yaml::Value::Null => return Err("data"),
        serde_yaml::Value::String(onnx_file) => onnx_file.clone(),
        _ => return Err("flavors.onnx"),
    };
    let labels = labels
        .map(serde_yaml::from_value::<Vec<String>>)
        .transpose()
        .map_err(|_| "metadata")?;
    Ok((onnx_file, labels))
}

/// A refusal of an `MLmodel` names what is wrong: the YAML, the flavor, `data`, the field
/// that is malformed and why, or how deep it nests.
fn check_mlmodel_refusal(error: &MlModelError) -> Result<(), TestCaseError> {
    let message = error.to_string();
    let names_it = match error {
        MlModelError::Yaml(_) => message.len() > "is not valid YAML: ".len(),
        MlModelError::NoOnnxFlavor(flavors) => !flavors.is_empty() && message.contains("onnx"),
        MlModelError::NoOnnxData => message.contains("'data'"),
        MlModelError::Malformed { field, why } => message.starts_with(field) && !why.is_empty(),
        MlModelError::TooDeep { depth } => *depth > 64 && message.contains(&depth.to_string()),
    };
    prop_assert!(names_it, "{error:?} reads {message:?}");
    Ok(())
}

/// A signature made without the secret.
#[derive(Clone, Debug)]
enum Forgery {
    /// No signature header.
    Missing,
    /// Any text.
    Text(String),
    /// Well-formed (`v1,<base64>`), over random bytes.
    RandomMac(Vec<u8>),
    /// Made with another secret over the same delivery.
    OtherSecret(String),
    /// Made with the secret over another body.
    OtherBody,
}

/// Every kind of [`Forgery`].
fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        Just(Forgery::Missing),
        "(v1,)?[A-Za-z0-9+/=]{0,60}".prop_map(Forgery::Text),
        prop::collection::vec(any::<u8>(), 32).prop_map(Forgery::RandomMac),
        "[a-z]{0,12}"
            .prop_filter("another secret", |secret| secret != "secret")
            .prop_map(Forgery::OtherSecret),
        Just(Forgery::OtherBody),
    ]
}

proptest! {
    // Well under a second per property.
    #![proptest_config(config(1024))]

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

    /// Any text is read the same way every time, and a refusal says what is wrong. A file
    /// with an onnx flavor: an accepted one names exactly the ONNX file its `data` says and
    /// exactly the labels its metadata lists; a refused one is refused for the part that is
    /// wrong.
    #[test]
    fn mlmodel_files_parse_or_are_refused(
        text in ".{0,200}",
        data in prop_oneof![
            4 => "[a-z./]{0,12}",
            1 => prop::sample::select(vec!["", "~", "null", "true", ".inf", ".nan", "12", "1.5"])
                .prop_map(str::to_string),
        ],
        labels in prop::option::of(prop_oneof![
            4 => "[a-z, ]{0,20}",
            1 => prop::sample::select(vec!["null", "a, true", "1, 2", "[a]", "{a: b}", "'q', b"])
                .prop_map(str::to_string),
        ]),
    ) {
        let first = MlModel::parse(&text);
        prop_assert_eq!(format!("{:?}", first), format!("{:?}", MlModel::parse(&text)));
        if let Err(error) = &first {
            check_mlmodel_refusal(error)?;
        }

        let mut file = format!("flavors:\n  onnx:\n    data: {data}\n");
        if let Some(labels) = &labels {
            file.push_str(&format!("metadata:\n  labels: [{labels}]\n"));
        }
        let parsed = MlModel::parse(&file);
        if let Err(error) = &parsed {
            check_mlmodel_refusal(error)?;
        }
        match (expected_mlmodel(&data, labels.as_deref()), parsed) {
            (Ok((onnx_file, labels)), Ok(model)) => {
                prop_assert_eq!(model.onnx_file, onnx_file, "{:?}", file);
                prop_assert_eq!(model.labels, labels, "{:?}", file);
            }
            (Err("yaml"), Err(MlModelError::Yaml(_))) => {}
            (Err("data"), Err(MlModelError::NoOnnxData)) => {}
            (Err(part), Err(MlModelError::Malformed { field, .. })) if part == field => {}
            (expected, got) => prop_assert!(false, "{file:?}: expected {expected:?}, got {got:?}"),
        }
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

    /// Whole milliseconds read back exactly; any other text is read or refused with what a
    /// duration looks like, never a panic.
    #[test]
    fn durations_round_trip_and_never_panic(millis in 0u64..10_000_000_000, junk in ".{0,12}") {
        prop_assert_eq!(parse_duration(&format!("{millis}ms")), Ok(Duration::from_millis(millis)));
        if let Err(why) = parse_duration(&junk) {
            prop_assert!(why.starts_with("expected a duration like 30s"), "{junk:?}: {why}");
        }
    }

    /// A delivery not signed with the secret is refused before its payload is read, whatever
    /// its headers and body (fresh or not, an event about the served model or not): it never
    /// makes hotserve check the registry, nor is it even ignored as valid.
    #[test]
    fn deliveries_not_signed_with_the_secret_are_refused(
        id in prop::option::weighted(0.9, ".{0,20}"),
        timestamp in prop::option::weighted(0.9, prop_oneof![
            "[0-9 -]{0,12}",
            (-400i64..400).prop_map(|skew| (WEBHOOK_NOW + skew).to_string()),
        ]),
        forgery in forgery(),
        body in prop_oneof![
            Just(ALIAS_MOVED.to_vec()),
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..128),
        ],
    ) {
        let (signed_id, signed_at) = (id.as_deref().unwrap_or(""), timestamp.as_deref().unwrap_or(""));
        let other_body = [&body[..], b" "].concat();
        let signature = match &forgery {
            Forgery::Missing => None,
            Forgery::Text(text) => Some(text.clone()),
            Forgery::RandomMac(mac) => Some(format!("v1,{}", BASE64.encode(mac))),
            Forgery::OtherSecret(secret) => Some(sign(secret, signed_id, signed_at, &body)),
            Forgery::OtherBody => Some(sign("secret", signed_id, signed_at, &other_body)),
        };
        let verifier = Verifier::new("secret");
        let delivery = Delivery {
            delivery_id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
            body: &body,
        };
        let verdict = verifier.verify(&delivery, WEBHOOK_NOW, Some("sentiment"));
        prop_assert!(
            matches!(
                verdict,
                Err(WebhookError::MissingHeader(_)
                    | WebhookError::BadTimestamp
                    | WebhookError::Stale
                    | WebhookError::MalformedSignature
                    | WebhookError::BadSignature)
            ),
            "{forgery:?} was not refused: {verdict:?}"
        );
    }

    /// A delivery signed with the secret is never refused for its signature, whatever it
    /// carries; only its payload can be wrong.
    #[test]
    fn signed_deliveries_verify(id in "[a-z0-9-]{1,20}", body in prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]) {
        let now = WEBHOOK_NOW;
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

    #[test]
    fn arbitrary_bytes_never_panic_the_oip_decoder(
        body in prop::collection::vec(any::<u8>(), 0..256),
        header_length in prop::option::of(0usize..300),
    ) {
        check_infer_body(&body, header_length)?;
    }

    #[test]
    fn inference_requests_decode_or_are_refused_with_a_4xx(
        request in infer_request(),
        binary in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let mut body = request.to_string().into_bytes();
        let header_length = (!binary.is_empty()).then_some(body.len());
        body.extend_from_slice(&binary);
        check_infer_body(&body, header_length)?;
        check_infer_body(request.to_string().as_bytes(), None)?;
    }

    /// What `to_raw` writes, `from_raw` reads back: the binary extension and gRPC's raw
    /// contents carry tensors losslessly.
    #[test]
    fn raw_tensor_data_round_trips(data in tensor_data()) {
        prop_assert_eq!(Data::from_raw(data.element_type(), &data.to_raw()), Ok(data));
    }

    /// Any bytes are read as any datatype or refused with a reason; what is read writes back
    /// to the same bytes.
    #[test]
    fn arbitrary_raw_data_is_read_or_refused(
        datatype in prop::sample::select(Datatype::ALL.to_vec()),
        raw in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        match Data::from_raw(datatype, &raw) {
            Ok(data) => prop_assert_eq!(data.to_raw(), raw),
            Err(why) => prop_assert!(!why.is_empty()),
        }
    }
}

/// A zip of `entries` (a name ending in '/' is a directory), or `None` when the zip writer
/// itself refuses the names (it refuses duplicates).
fn zip_of(entries: &[(String, Vec<u8>)], deflate: bool) -> Option<tempfile::NamedTempFile> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut writer = zip::ZipWriter::new(file.reopen().unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        if name.ends_with('/') {
            writer.add_directory(name.as_str(), options).ok()?;
        } else {
            writer.start_file(name.as_str(), options).ok()?;
            writer.write_all(data).unwrap();
        }
    }
    writer.finish().ok()?;
    Some(file)
}

/// The files under `dir`, relative to it.
fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(next).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found
}

/// An entry name for a zip: mostly plain, sometimes each kind of hostile spelling.
fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "([a-c]{1,2}/){0,2}[a-c]{1,3}",
        1 => "([a-c]{1,2}/){1,2}",
        1 => prop::sample::select(vec![
            "../evil", "a/../../evil", "/evil", "a\\..\\evil", "./a", "a//b", "a/./b", "a\0b", "..", ".",
        ])
        .prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

/// A zip entry: its name and bytes.
type Entry = (String, Vec<u8>);

/// What extracting `entries` with a bound of `max` must give: the first entry whose name is not
/// a confined path is refused, whatever comes after it (every name is checked before a byte is
/// written); then an archive without a top-level `MLmodel` is refused; then only `MLmodel` and
/// the graph it names (`graph`) are extracted, and the bound decides on their bytes. The
/// result is the files that must come out. `None` when a name is both a file and a directory
/// (any outcome but a write outside).
fn expected_extraction(
    entries: &[(String, Vec<u8>)],
    graph: &str,
    max: u64,
) -> Option<Result<Vec<Entry>, String>> {
    let files: Vec<&str> = entries
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.ends_with('/'))
        .collect();
    let collides = entries.iter().any(|(name, _)| {
        let inner = name.strip_suffix('/');
        files
            .iter()
            .any(|file| inner == Some(file) || name.starts_with(&format!("{file}/")))
    });
    if collides {
        return None;
    }
    if let Some((name, _)) = entries
        .iter()
        .find(|(name, _)| confine(name.strip_suffix('/').unwrap_or(name)).is_err())
    {
        return Some(Err(format!("unsafe {name:?}")));
    }
    if !files.contains(&"MLmodel") {
        return Some(Err("no MLmodel".into()));
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    for wanted in ["MLmodel", graph] {
        if let Some((name, data)) = entries.iter().find(|(name, _)| name == wanted) {
            if out.iter().any(|(n, _)| n == name) {
                continue;
            }
            total += data.len() as u64;
            if total > max {
                return Some(Err("too large".into()));
            }
            out.push((name.clone(), data.clone()));
        }
    }
    Some(Ok(out))
}

/// A configuration from the defaults and one environment variable.
fn config_with(var: &'static str, value: String) -> Result<Config, hotserve::config::ConfigError> {
    Config::load(&Inputs {
        config_file: None,
        flags: Vec::new(),
        env: &move |name| (name == var).then(|| value.clone()),
        variables: Vec::new(),
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Zip bundles: an entry with an unsafe name is refused with its name, an archive without
    /// a model is refused, only `MLmodel` and the graph it names come out (byte for byte), the
    /// bound counts what comes out, and nothing is ever written outside the destination.
    #[test]
    fn zip_bundle_entries_extract_or_are_refused_by_name(
        mut entries in prop::collection::vec((entry_name(), prop::collection::vec(any::<u8>(), 0..64)), 0..6),
        with_mlmodel in any::<bool>(),
        graph_pick in any::<prop::sample::Index>(),
        max in 0u64..512,
        deflate in any::<bool>(),
    ) {
        let plain: Vec<String> = entries.iter().map(|(n, _)| n.clone()).filter(|n| !n.is_empty() && !n.ends_with('/') && n.chars().all(|c| matches!(c, 'a'..='c' | '/')) && confine(n).is_ok()).collect();
        let graph = if plain.is_empty() { "model.onnx".to_string() } else { graph_pick.get(&plain).clone() };
        if with_mlmodel {
            let position = graph_pick.index(entries.len() + 1);
            entries.insert(position, ("MLmodel".into(), format!("flavors:\n  onnx:\n    data: {graph}\n").into_bytes()));
        }
        let Some(archive) = zip_of(&entries, deflate) else {
            return Ok(());
        };
        let scratch = tempfile::tempdir().unwrap();
        let dest = scratch.path().join("out");
        let result = extract(archive.path(), &dest, max);
        let names: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(names.iter().filter(|n| *n != "out").count(), 0, "written outside dest: {:?}", names);
        match (expected_extraction(&entries, &graph, max), result) {
            (Some(Ok(files)), Ok(root)) => {
                prop_assert_eq!(&root, &dest);
                for (name, data) in &files {
                    prop_assert_eq!(&std::fs::read(dest.join(name)).unwrap(), data, "{}", name);
                }
                let written = walk_files(&dest);
                prop_assert_eq!(written.len(), files.len(), "extracted {:?}, expected {:?}", written, files.iter().map(|f| &f.0).collect::<Vec<_>>());
            }
            (Some(Err(why)), Err(BundleError::UnsafePath { entry, .. })) => {
                prop_assert_eq!(why, format!("unsafe {entry:?}"));
            }
            (Some(Err(why)), Err(BundleError::NoMlModel { .. })) => {
                prop_assert_eq!(why.as_str(), "no MLmodel");
            }
            (Some(Err(why)), Err(BundleError::TooLarge { limit, .. })) => {
                prop_assert_eq!((why.as_str(), limit), ("too large", max));
            }
            // Names that collide as file and directory: any outcome but a write outside.
            (None, _) => {}
            (expected, got) => prop_assert!(false, "{entries:?} (max {max}): expected {expected:?}, got {got:?}"),
        }
    }

    /// Size settings: every whole number in range is read exactly, anything else is refused
    /// with the variable's name, and no value panics the loader.
    #[test]
    fn size_settings_round_trip_or_name_the_variable(
        n in prop_oneof![0u64..4, 1u64 << 26..(1u64 << 26) + 2, 1u64 << 30..(1u64 << 30) + 2, any::<u64>()],
        junk in prop_oneof![".{0,12}", "[ +-]?[0-9]{1,22}( ?[kKMG]i?B?)?"],
    ) {
        for (var, max) in [
            ("HOTSERVE_MAX_BODY_BYTES", 1u64 << 30),
            ("HOTSERVE_MAX_TEXT_BYTES", 1u64 << 26),
            ("HOTSERVE_MAX_BUNDLE_BYTES", u64::MAX),
        ] {
            let read = |config: &Config| match var {
                "HOTSERVE_MAX_BODY_BYTES" => config.max_body_bytes as u64,
                "HOTSERVE_MAX_TEXT_BYTES" => config.max_text_bytes as u64,
                _ => config.max_bundle_bytes,
            };
            let in_range = (var == "HOTSERVE_MAX_BUNDLE_BYTES" || n >= 1) && n <= max;
            match config_with(var, n.to_string()) {
                Ok(config) => prop_assert!(in_range && read(&config) == n, "{var}={n} read as {}", read(&config)),
                Err(error) => prop_assert!(!in_range && error.to_string().contains(var), "{var}={n}: {error}"),
            }
            match config_with(var, junk.clone()) {
                Ok(config) => prop_assert_eq!(junk.trim().parse::<u64>().ok(), Some(read(&config)), "{}={:?}", var, junk),
                Err(error) => prop_assert!(error.to_string().contains(var), "{var}={junk:?}: {error}"),
            }
        }
    }

    /// Tensor requests: whatever the body, an accepted tensor holds exactly as many values as
    /// its shape says, in the shape the graph declares; a refusal is a 4xx.
    #[test]
    fn tensor_requests_fit_the_graph_or_are_refused(value in json_value(), wrap in 0usize..3) {
        let body = match wrap {
            0 => json!({"inputs": value}),
            1 => json!({"instances": value}),
            _ => json!({"inputs": {"x": value}}),
        };
        let Ok(invocation) = parse_invocation(body.to_string().as_bytes(), ContentType::Json) else {
            return Ok(());
        };
        check_tensors(invocation)?;
    }

    #[test]
    fn numeric_tensor_requests_fit_the_graph_or_are_refused(value in numeric_nest()) {
        let body = json!({"inputs": {"x": value}});
        check_tensors(parse_invocation(body.to_string().as_bytes(), ContentType::Json).unwrap())?;
    }
}

/// Nested lists of numbers, ragged and mixed with lists at any level.
fn numeric_nest() -> impl Strategy<Value = Value> {
    (-3i64..4)
        .prop_map(Value::from)
        .prop_recursive(4, 32, 3, |inner| {
            prop::collection::vec(inner, 0..3).prop_map(Value::from)
        })
}

fn check_tensors(invocation: hotserve::protocol::Invocation) -> Result<(), TestCaseError> {
    let desc = |name: &str, dtype: &str, shape: &[i64]| TensorDesc {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.to_vec(),
    };
    for inputs in [
        vec![desc("x", "float32", &[-1, -1])],
        vec![desc("x", "int64", &[-1, 2])],
        vec![desc("x", "float64", &[-1, -1, -1])],
    ] {
        match tensors_for(&inputs, invocation.clone()) {
            Ok(tensors) => {
                prop_assert_eq!(tensors.len(), 1);
                let values = tensors[0].data.len();
                let shape = &tensors[0].shape;
                prop_assert_eq!(shape.iter().product::<usize>(), values, "shape {:?}", shape);
                prop_assert_eq!(shape.len(), inputs[0].shape.len());
                for (&got, &want) in shape.iter().zip(&inputs[0].shape) {
                    prop_assert!(want < 0 || got as i64 == want);
                }
            }
            Err(error) => assert_client_error(error)?,
        }
    }
    Ok(())
}

/// The fixture model's tokenizer.json (BERT-uncased, no truncation), as JSON.
fn fixture_tokenizer_json() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentiment/tokenizer.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn tokenizer_of(value: &Value) -> tokenizers::Tokenizer {
    value.to_string().parse().unwrap()
}

/// The fixture's tokenizer, and the same truncated as the MiniLM one is (LongestFirst, stride
/// 0), but to 16 tokens so that generated texts reach the limit.
static TOKENIZERS: LazyLock<Vec<(tokenizers::Tokenizer, FastBert)>> = LazyLock::new(|| {
    let plain = tokenizer_of(&fixture_tokenizer_json());
    let mut truncated = plain.clone();
    truncated
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 16,
            ..Default::default()
        }))
        .unwrap();
    [plain, truncated]
        .into_iter()
        .map(|tokenizer| {
            let fast = FastBert::from_tokenizer(&tokenizer).expect("a BERT-uncased tokenizer");
            (tokenizer, fast)
        })
        .collect()
});

/// ASCII text heavy in what BERT's pipeline treats specially: punctuation runs, digits, every
/// whitespace and control byte, brackets (added tokens), very long words.
fn ascii_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z]{1,12}",
        "[0-9]{1,6}",
        "[!-/:-@\\[-`{-~]{1,4}",
        "[\\x00-\\x20\\x7f]{1,3}",
        "[a-z]{95,105}",
        Just("[CLS]".to_string()),
        Just("[sep]".to_string()),
        "[\\x00-\\x7f]{1,8}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn the_fast_tokenizer_gives_tokenizers_ids_or_declines(text in ascii_text()) {
        for (tokenizer, fast) in TOKENIZERS.iter() {
            if let Some((ids, type_ids)) = fast.encode(&text) {
                let expected = tokenizer.encode_fast(text.as_str(), true).unwrap();
                prop_assert_eq!(&ids[..], expected.get_ids(), "{:?}", text);
                prop_assert_eq!(&type_ids[..], expected.get_type_ids(), "{:?}", text);
            }
        }
    }

    #[test]
    fn the_fast_tokenizer_answers_plain_sentences(text in "[a-zA-Z0-9 ,.!?'-]{0,80}") {
        for (tokenizer, fast) in TOKENIZERS.iter() {
            let (ids, _) = fast.encode(&text).expect("plain ASCII without [ is accepted");
            let expected = tokenizer.encode_fast(text.as_str(), true).unwrap();
            prop_assert_eq!(&ids[..], expected.get_ids(), "{:?}", text);
        }
    }
}

#[test]
fn the_fast_tokenizer_accepts_only_the_bert_uncased_shape() {
    let check = |change: &dyn Fn(&mut Value), accepted: bool| {
        let mut value = fixture_tokenizer_json();
        change(&mut value);
        let tokenizer = tokenizer_of(&value);
        assert_eq!(
            FastBert::from_tokenizer(&tokenizer).is_some(),
            accepted,
            "{}",
            serde_json::to_string(&value)
                .unwrap()
                .chars()
                .take(600)
                .collect::<String>()
        );
    };
    check(&|_| {}, true);
    check(&|v| v["normalizer"]["lowercase"] = json!(false), false);
    check(&|v| v["normalizer"]["clean_text"] = json!(false), false);
    check(
        &|v| v["normalizer"]["handle_chinese_chars"] = json!(false),
        false,
    );
    check(&|v| v["normalizer"]["strip_accents"] = json!(false), false);
    check(&|v| v["normalizer"] = json!({"type": "Lowercase"}), false);
    check(&|v| v["normalizer"] = Value::Null, false);
    check(
        &|v| v["pre_tokenizer"] = json!({"type": "Whitespace"}),
        false,
    );
    check(&|v| v["model"]["unk_token"] = json!("[MASK]"), false);
    check(
        &|v| v["model"]["continuing_subword_prefix"] = json!("@@"),
        false,
    );
    check(
        &|v| v["post_processor"]["single"][0]["SpecialToken"]["type_id"] = json!(1),
        false,
    );
    check(&|v| v["post_processor"] = Value::Null, false);
    check(
        &|v| {
            v["padding"] = json!({"strategy": "BatchLongest", "direction": "Right",
                "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"})
        },
        false,
    );
    let truncation = |max_length: u64, strategy: &str, direction: &str, stride: u64| {
        json!({"max_length": max_length, "strategy": strategy, "direction": direction,
            "stride": stride})
    };
    check(
        &|v| v["truncation"] = truncation(128, "LongestFirst", "Right", 0),
        true,
    );
    check(
        &|v| v["truncation"] = truncation(128, "OnlyFirst", "Right", 0),
        false,
    );
    check(
        &|v| v["truncation"] = truncation(128, "LongestFirst", "Left", 0),
        false,
    );
    check(
        &|v| v["truncation"] = truncation(128, "LongestFirst", "Right", 2),
        false,
    );
}
