//! The registry layer (`hotserve::registry`) against a real MLflow 3 server: every URI form
//! resolves to the version MLflow's own client would pick, downloads match what was uploaded
//! byte for byte, and every failure says what happened — including the ones only a
//! misbehaving network can produce, injected through [`FaultProxy`].

use std::path::Path;
use std::time::{Duration, Instant};

use hotserve::registry::{
    describe, download, resolve, FileDigest, MlflowClient, MlflowSettings, RegistryError,
    RemoteFile, RemoteUri, Resolution, Secret,
};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::support::{mlflow, register, Fault, FaultProxy};

/// What the tests registered, as `register.py` reported it.
struct World {
    /// `sentiment` v1: alias `champion`, stage Production.
    v1: Value,
    /// `sentiment` v2 (the v2 fixture): alias `challenger`, stage Staging.
    v2: Value,
    /// `sentiment` v3: no alias, stage None; the latest.
    v3: Value,
    /// A run whose model is an MLflow 3 logged model (the run's own folder is empty).
    logged_run: Value,
    /// A run with the model logged as plain run artifacts (the MLflow 2 way).
    artifact_run: Value,
}

async fn world() -> &'static World {
    static WORLD: OnceCell<World> = OnceCell::const_new();
    WORLD.get_or_init(|| async {
        let answer = register(
            mlflow().await,
            json!([
                {"op": "register", "dir": "tests/fixtures/sentiment", "name": "sentiment",
                 "aliases": ["champion"], "stage": "Production"},
                {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": "sentiment",
                 "aliases": ["challenger"], "stage": "Staging"},
                {"op": "register", "dir": "tests/fixtures/sentiment", "name": "sentiment"},
                {"op": "log-run-only", "dir": "tests/fixtures/sentiment", "mode": "logged-model"},
                {"op": "log-run-only", "dir": "tests/fixtures/sentiment_v2", "mode": "run-artifacts"},
            ]),
        );
        let [v1, v2, v3, logged_run, artifact_run] =
            <[Value; 5]>::try_from(answer.as_array().unwrap().clone()).unwrap();
        World { v1, v2, v3, logged_run, artifact_run }
    })
    .await
}

/// Fast retries, so that fault tests take milliseconds per retry.
fn settings(url: &str) -> MlflowSettings {
    MlflowSettings {
        tracking_uri: Some(url.to_string()),
        max_retries: 3,
        backoff_factor: 0.02,
        backoff_jitter: 0.0,
        request_timeout: Duration::from_secs(20),
        ..MlflowSettings::default()
    }
}

fn client(url: &str) -> MlflowClient {
    MlflowClient::new(settings(url)).unwrap()
}

/// A client talking to the server directly.
async fn direct() -> MlflowClient {
    client(&mlflow().await.url)
}

/// A client behind a fresh fault proxy.
async fn proxied() -> (MlflowClient, FaultProxy) {
    let proxy = FaultProxy::start(mlflow().await.addr).await;
    (client(&proxy.url()), proxy)
}

async fn resolve_text(client: &MlflowClient, uri: &str) -> Result<Resolution, RegistryError> {
    resolve(client, &RemoteUri::parse(uri).unwrap()).await
}

fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {value}"))
        .to_string()
}

fn uri(value: &Value, key: &str) -> String {
    text(&value["uris"], key)
}

/// The uploaded files as a listing.
fn listing(entry: &Value) -> Vec<RemoteFile> {
    let files = entry["files"].as_object().unwrap();
    let mut listing: Vec<RemoteFile> = files
        .iter()
        .map(|(path, file)| RemoteFile {
            path: path.clone(),
            size: file["size"].as_u64(),
        })
        .collect();
    listing.sort_by(|a, b| a.path.cmp(&b.path));
    listing
}

/// The uploaded files as digests.
fn digests(entry: &Value) -> Vec<FileDigest> {
    let files = entry["files"].as_object().unwrap();
    let mut digests: Vec<FileDigest> = files
        .iter()
        .map(|(path, file)| FileDigest {
            path: path.clone(),
            size: file["size"].as_u64().unwrap(),
            sha256: text(file, "sha256"),
        })
        .collect();
    digests.sort_by(|a, b| a.path.cmp(&b.path));
    digests
}

/// What a resolution must say.
struct Expected<'a> {
    version: Option<&'a str>,
    aliases: &'a [&'a str],
    stage: Option<&'a str>,
    model_id: Option<String>,
    run_id: Option<String>,
    files_of: &'a Value,
}

async fn check(client: &MlflowClient, uri: &str, expected: Expected<'_>) -> Resolution {
    let resolution = resolve_text(client, uri)
        .await
        .unwrap_or_else(|err| panic!("{uri} should resolve: {err}"));
    assert_eq!(
        resolution.uri,
        RemoteUri::parse(uri).unwrap().to_string(),
        "canonical spelling"
    );
    assert_eq!(
        resolution.version.as_deref(),
        expected.version,
        "{uri}: version"
    );
    let aliases: Vec<&str> = resolution.aliases.iter().map(String::as_str).collect();
    assert_eq!(aliases, expected.aliases, "{uri}: aliases");
    assert_eq!(resolution.stage.as_deref(), expected.stage, "{uri}: stage");
    assert_eq!(resolution.model_id, expected.model_id, "{uri}: model id");
    assert_eq!(resolution.run_id, expected.run_id, "{uri}: run id");
    assert_eq!(resolution.files, listing(expected.files_of), "{uri}: files");
    if expected.version.is_some() {
        assert_eq!(resolution.name.as_deref(), Some("sentiment"), "{uri}: name");
        assert_eq!(resolution.status.as_deref(), Some("READY"), "{uri}: status");
    }
    resolution
}

/// A registered version of `sentiment`.
fn registered<'a>(
    entry: &'a Value,
    version: &'a str,
    aliases: &'a [&'a str],
    stage: &'a str,
) -> Expected<'a> {
    Expected {
        version: Some(version),
        aliases,
        stage: Some(stage),
        model_id: id(entry, "model_id"),
        run_id: id(entry, "run_id"),
        files_of: entry,
    }
}

fn id(value: &Value, key: &str) -> Option<String> {
    value[key].as_str().map(str::to_string)
}

#[tokio::test]
async fn every_uri_form_resolves_like_mlflow() {
    let w = world().await;
    let client = direct().await;
    check(
        &client,
        "models:/sentiment/1",
        registered(&w.v1, "1", &["champion"], "Production"),
    )
    .await;
    check(
        &client,
        "models:/sentiment@champion",
        registered(&w.v1, "1", &["champion"], "Production"),
    )
    .await;
    check(
        &client,
        "models:/sentiment@challenger",
        registered(&w.v2, "2", &["challenger"], "Staging"),
    )
    .await;
    check(
        &client,
        "models:/sentiment/Production",
        registered(&w.v1, "1", &["champion"], "Production"),
    )
    .await;
    let staging = registered(&w.v2, "2", &["challenger"], "Staging");
    let resolution = check(&client, "models:/sentiment/staging", staging).await;
    assert_eq!(resolution.uri, "models:/sentiment/Staging");
    check(
        &client,
        "models:/sentiment/None",
        registered(&w.v3, "3", &[], "None"),
    )
    .await;
    check(
        &client,
        "models:/sentiment/latest",
        registered(&w.v3, "3", &[], "None"),
    )
    .await;

    let logged = Expected {
        version: None,
        aliases: &[],
        stage: None,
        model_id: id(&w.v2, "model_id"),
        run_id: id(&w.v2, "run_id"),
        files_of: &w.v2,
    };
    let resolution = check(&client, &uri(&w.v2, "model"), logged).await;
    assert_eq!(resolution.artifact_uri, text(&w.v2, "artifact_uri"));

    let run = Expected {
        version: None,
        aliases: &[],
        stage: None,
        model_id: id(&w.logged_run, "model_id"),
        run_id: id(&w.logged_run, "run_id"),
        files_of: &w.logged_run,
    };
    let resolution = check(&client, &uri(&w.logged_run, "run"), run).await;
    assert_eq!(
        resolution.artifact_uri,
        text(&w.logged_run, "artifact_uri"),
        "the logged model's files"
    );

    let run = Expected {
        version: None,
        aliases: &[],
        stage: None,
        model_id: None,
        run_id: id(&w.artifact_run, "run_id"),
        files_of: &w.artifact_run,
    };
    let resolution = check(&client, &uri(&w.artifact_run, "run"), run).await;
    assert_eq!(
        resolution.artifact_uri,
        text(&w.artifact_run, "artifact_uri"),
        "the run's own files"
    );

    let artifacts = text(&w.v1, "artifact_uri");
    assert!(artifacts.starts_with("mlflow-artifacts:/"), "{artifacts}");
    let direct_files = Expected {
        version: None,
        aliases: &[],
        stage: None,
        model_id: None,
        run_id: None,
        files_of: &w.v1,
    };
    check(&client, &artifacts, direct_files).await;
}

#[tokio::test]
async fn downloads_match_the_uploaded_files() {
    let w = world().await;
    let client = direct().await;
    let out = tempfile::tempdir().unwrap();
    for (uri, entry) in [
        ("models:/sentiment@champion".to_string(), &w.v1),
        (uri(&w.logged_run, "run"), &w.logged_run),
        (uri(&w.artifact_run, "run"), &w.artifact_run),
    ] {
        let resolution = resolve_text(&client, &uri).await.unwrap();
        let dest = out.path().join(format!("model-{}", fastrand::u32(..)));
        let got = download(&client, &resolution, &dest, &Default::default())
            .await
            .unwrap();
        assert_eq!(got, digests(entry), "{uri}: digests");
        for digest in &got {
            let on_disk = std::fs::read(dest.join(&digest.path)).unwrap();
            assert_eq!(on_disk.len() as u64, digest.size, "{uri}: {}", digest.path);
        }
        assert!(
            dest.join("tokenizer.json").is_file() && dest.join("MLmodel").is_file(),
            "{uri}"
        );
    }
    assert_no_staging_left(out.path());

    let resolution = resolve_text(&client, "models:/sentiment/1").await.unwrap();
    let err = download(&client, &resolution, out.path(), &Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn describe_shows_what_resolves() {
    world().await;
    let resolution = resolve_text(&direct().await, "models:/sentiment@champion")
        .await
        .unwrap();
    let text = describe(&resolution);
    for want in [
        "uri:          models:/sentiment@champion",
        "version:      1",
        "aliases:      champion",
        "stage:        Production",
        "download uri: mlflow-artifacts:/",
        "tokenizer.json",
        "model.onnx",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

/// `uri` fails with a non-transient error whose message names the URI and contains `wants`.
async fn check_error(client: &MlflowClient, uri: &str, wants: &[&str]) -> RegistryError {
    let err = resolve_text(client, uri).await.expect_err(uri);
    let message = err.to_string();
    assert!(
        message.contains(uri),
        "{uri}: the message should name the URI: {message}"
    );
    for want in wants {
        assert!(message.contains(want), "{uri}: {message:?} lacks {want:?}");
    }
    assert!(
        !err.is_transient(),
        "{uri}: {err:?} should not be transient"
    );
    err
}

#[tokio::test]
async fn unknown_things_say_what_exists() {
    let w = world().await;
    let client = direct().await;
    check_error(
        &client,
        "models:/nope/1",
        &[
            "does not exist",
            "Model Version (name=nope, version=1) not found",
        ],
    )
    .await;
    check_error(
        &client,
        "models:/sentiment/99",
        &[
            "does not exist",
            "models:/sentiment/latest names the newest",
        ],
    )
    .await;
    check_error(
        &client,
        "models:/nope/latest",
        &["does not exist", "check the registered model name"],
    )
    .await;
    check_error(&client, "models:/nope/Production", &["does not exist"]).await;
    check_error(
        &client,
        "models:/nope@champion",
        &["does not exist", "check the registered model name"],
    )
    .await;
    let err = check_error(
        &client,
        "models:/sentiment@champ",
        &[
            "has no alias 'champ'",
            "alias champ not found",
            "existing aliases: challenger (version 2), champion (version 1)",
        ],
    )
    .await;
    assert!(
        matches!(err, RegistryError::AliasNotFound { .. }),
        "{err:?}"
    );
    check_error(
        &client,
        "models:/sentiment/Archived",
        &[
            "no versions in stage Archived",
            "None (version 3)",
            "Production (version 1)",
            "Staging (version 2)",
        ],
    )
    .await;
    check_error(
        &client,
        "models:/m-00000000000000000000000000000000",
        &["does not exist", "logged model"],
    )
    .await;
    check_error(
        &client,
        "runs:/00000000000000000000000000000000/model",
        &["does not exist", "check the run id"],
    )
    .await;
    let run_id = text(&w.artifact_run, "run_id");
    check_error(
        &client,
        &format!("runs:/{run_id}/elsewhere"),
        &["there are no files at mlflow-artifacts:/"],
    )
    .await;
}

#[tokio::test]
async fn server_down_and_no_server() {
    let port = crate::support::watchdog::free_port();
    let mut settings = settings(&format!("http://127.0.0.1:{port}"));
    settings.max_retries = 1;
    let client = MlflowClient::new(settings).unwrap();
    let err = resolve_text(&client, "models:/sentiment@champion")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach the MLflow server at http://127.0.0.1:{port} for models:/sentiment@champion: \
             connection refused; check MLFLOW_TRACKING_URI and that the server is up"
        )
    );
    assert!(err.is_transient());

    let client = MlflowClient::new(MlflowSettings::default()).unwrap();
    let err = resolve_text(&client, "models:/sentiment/1")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot resolve models:/sentiment/1: MLFLOW_TRACKING_URI is not set"),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    world().await;
    let (client, proxy) = proxied().await;
    proxy.inject(
        "/model-versions/get?",
        Fault::error(500, "INTERNAL_ERROR", "database is locked"),
        2,
    );
    proxy.inject(
        "/registered-models/alias",
        Fault::error(503, "TEMPORARILY_UNAVAILABLE", "busy"),
        1,
    );
    proxy.inject("/registered-models/alias", Fault::Drop, 1);
    let resolution = resolve_text(&client, "models:/sentiment/1").await.unwrap();
    assert_eq!(resolution.version.as_deref(), Some("1"));
    assert_eq!(
        proxy.count("/model-versions/get?"),
        3,
        "two 500s, then success"
    );
    let resolution = resolve_text(&client, "models:/sentiment@champion")
        .await
        .unwrap();
    assert_eq!(resolution.version.as_deref(), Some("1"));
    assert_eq!(
        proxy.count("/registered-models/alias"),
        3,
        "a 503, a dropped connection, then success"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    world().await;
    let (client, proxy) = proxied().await;
    proxy.inject("/model-versions/get?", Fault::too_many_requests("1"), 1);
    let started = Instant::now();
    resolve_text(&client, "models:/sentiment/1").await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured ({waited:?})"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(proxy.count("/model-versions/get?"), 2);
}

#[tokio::test]
async fn retries_are_bounded() {
    world().await;
    let (client, proxy) = proxied().await;
    proxy.inject_always(
        "/model-versions/get?",
        Fault::error(503, "TEMPORARILY_UNAVAILABLE", "overloaded"),
    );
    let err = resolve_text(&client, "models:/sentiment/1")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("answered HTTP 503") && message.contains("overloaded"),
        "{message}"
    );
    assert_eq!(
        proxy.count("/model-versions/get?"),
        4,
        "the first try and 3 retries"
    );

    let mut slow = settings(&proxy.url());
    slow.request_timeout = Duration::from_millis(300);
    slow.max_retries = 1;
    let client = MlflowClient::new(slow).unwrap();
    proxy.clear();
    proxy.inject_always(
        "/registered-models/alias",
        Fault::Delay(Duration::from_secs(3)),
    );
    let err = resolve_text(&client, "models:/sentiment@champion")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("raise MLFLOW_HTTP_REQUEST_TIMEOUT"),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn truncated_downloads_fail_and_leave_nothing() {
    world().await;
    let (client, proxy) = proxied().await;
    let resolution = resolve_text(&client, "models:/sentiment@champion")
        .await
        .unwrap();
    proxy.inject_always(".data", Fault::Truncate);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("v1");
    let err = download(&client, &resolution, &dest, &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Interrupted { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("models:/sentiment@champion: the download of '"),
        "{message}"
    );
    assert!(message.contains(".data' was cut short after"), "{message}");
    assert!(err.is_transient());
    assert!(!dest.exists(), "no partial destination");
    assert_no_staging_left(out.path());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    proxy.clear();
    let got = download(&client, &resolution, &dest, &Default::default())
        .await
        .unwrap();
    assert_eq!(got, digests(&world().await.v1), "a clean retry succeeds");
}

#[tokio::test]
async fn hostile_listings_are_refused() {
    world().await;
    for (path, reason) in [
        ("../evil", "'..' segments are not allowed"),
        ("/etc/cron.d/evil", "absolute paths are not allowed"),
        ("..\\evil", "backslashes are not allowed"),
    ] {
        let (client, proxy) = proxied().await;
        let listing = json!({"files": [
            {"path": "MLmodel", "is_dir": false, "file_size": 10},
            {"path": path, "is_dir": false, "file_size": 3},
        ]});
        proxy.inject_always(
            "mlflow-artifacts/artifacts?path=",
            Fault::json(200, listing),
        );
        let err = check_error(
            &client,
            "models:/sentiment/1",
            &[reason, "refusing artifact path"],
        )
        .await;
        assert!(matches!(err, RegistryError::UnsafePath { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn versions_that_are_not_ready_are_refused() {
    world().await;
    let (client, proxy) = proxied().await;
    let pending = json!({"model_version": {
        "name": "sentiment", "version": "1", "current_stage": "None", "source": "models:/m-1",
        "status": "PENDING_REGISTRATION", "status_message": "still uploading"}});
    proxy.inject_always("/model-versions/get?", Fault::json(200, pending));
    check_error(
        &client,
        "models:/sentiment/1",
        &["resolves to version 1 of 'sentiment', whose status is PENDING_REGISTRATION (still uploading)"],
    )
    .await;
    assert_eq!(
        proxy.count("get-download-uri"),
        0,
        "nothing is fetched for a version that is not READY"
    );
}

#[tokio::test]
async fn credentials_are_sent_but_never_shown() {
    world().await;
    let (_, proxy) = proxied().await;
    let mut with_token = settings(&proxy.url());
    with_token.token = Some(Secret::new("hunter2-token"));
    let client = MlflowClient::new(with_token).unwrap();
    resolve_text(&client, "models:/sentiment/1").await.unwrap();
    let sent: Vec<_> = proxy.seen().into_iter().map(|s| s.authorization).collect();
    assert!(
        !sent.is_empty()
            && sent
                .iter()
                .all(|a| a.as_deref() == Some("Bearer hunter2-token")),
        "{sent:?}"
    );

    proxy.inject_always(
        "/registered-models/alias",
        Fault::error(401, "UNAUTHENTICATED", "invalid token"),
    );
    let err = check_error(
        &client,
        "models:/sentiment@champion",
        &["HTTP 401: invalid token", "check MLFLOW_TRACKING_TOKEN"],
    )
    .await;
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let mut basic = settings(&proxy.url().replace("http://", "http://bob:hunter2-pw@"));
    basic.token = Some(Secret::new("unused-token"));
    let client = MlflowClient::new(basic).unwrap();
    proxy.clear();
    proxy.inject_always(
        "/model-versions/get?",
        Fault::error(403, "PERMISSION_DENIED", "no access"),
    );
    let err = check_error(
        &client,
        "models:/sentiment/1",
        &["HTTP 403: no access", "MLFLOW_TRACKING_USERNAME"],
    )
    .await;
    let last = proxy.seen().pop().unwrap();
    assert_eq!(
        last.authorization.as_deref(),
        Some("Basic Ym9iOmh1bnRlcjItcHc="),
        "basic auth from the URI wins"
    );
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn mlflow_2_servers_without_logged_models() {
    let w = world().await;
    let (client, proxy) = proxied().await;
    proxy.inject_always("/logged-models", Fault::missing_endpoint());

    let run = uri(&w.artifact_run, "run");
    let resolution = resolve_text(&client, &run).await.unwrap();
    assert_eq!(resolution.files, listing(&w.artifact_run));
    assert_eq!(
        proxy.count("/logged-models/search"),
        1,
        "the search was tried and degraded"
    );

    let resolution = resolve_text(&client, "models:/sentiment@champion")
        .await
        .unwrap();
    assert_eq!(resolution.files, listing(&w.v1));

    check_error(
        &client,
        &uri(&w.v2, "model"),
        &["has no logged-models API", "use models:/<name>/<version>"],
    )
    .await;
}

fn assert_no_staging_left(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".partial-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directories left behind: {leftovers:?}"
    );
}
