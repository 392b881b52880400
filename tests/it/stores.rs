//! Object stores read directly, against real servers on loopback: a `moto` S3 server, an MLflow
//! server run with `--no-serve-artifacts --default-artifact-root s3://...` whose models are
//! registered with MLflow's own client (so boto3 writes them into the bucket), and a bucket as
//! `MODEL_URI` without MLflow, and Azure Blob through azurite. Faults go through the shared fault proxy in front of moto:
//! `503 SlowDown`, access denied and expired tokens, a truncated object, files that change
//! while they are downloaded. Credentials must never show in errors, `Debug` or `/health`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hotserve::registry::{self, download, resolve, MlflowClient, RegistryError, RemoteUri};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as StorePath;
use object_store::ObjectStore as _;
use serde_json::{json, Value};

use crate::support::inprocess::Start;
use crate::support::stores::{
    azurite, create_bucket, create_container, mlflow_no_proxy, moto, register_no_proxy, s3_env,
    ACCESS_KEY, AZURITE_ACCOUNT, AZURITE_KEY, REGION, SECRET_KEY,
};
use crate::support::{eventually, fixture, list_dir, Fault, FaultProxy};

/// The bucket the tests put models in without MLflow.
const BUCKET: &str = "models";

/// A client for the S3 server at `endpoint` (moto, or a fault proxy in front of it) with fast
/// retries, configured from `env` exactly as the daemon would be.
fn s3_client(endpoint: &str, extra: &[(&str, &str)]) -> MlflowClient {
    let mut vars: HashMap<String, String> = s3_env(endpoint)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (key, value) in extra {
        vars.insert(key.to_string(), value.to_string());
    }
    vars.retain(|_, value| !value.is_empty());
    vars.insert("MLFLOW_HTTP_REQUEST_MAX_RETRIES".into(), "3".into());
    vars.insert("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR".into(), "0.02".into());
    vars.insert("MLFLOW_HTTP_REQUEST_TIMEOUT".into(), "20".into());
    let settings = registry::hotserve_settings(&|name| vars.get(name).cloned()).unwrap();
    MlflowClient::new(settings).unwrap()
}

/// The test's own S3 client, to put objects into moto.
async fn bucket() -> AmazonS3 {
    create_bucket(&moto().await.url, BUCKET).await;
    AmazonS3Builder::new()
        .with_endpoint(&moto().await.url)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(BUCKET)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_region(REGION)
        .build()
        .unwrap()
}

/// Uploads every file of `dir` below `prefix`.
async fn upload(store: &AmazonS3, prefix: &str, dir: &Path) {
    for (relative, _) in list_dir(dir) {
        let bytes = std::fs::read(dir.join(&relative)).unwrap();
        put(store, &format!("{prefix}/{relative}"), bytes).await;
    }
}

async fn put(store: &AmazonS3, key: &str, bytes: Vec<u8>) {
    store
        .put(&StorePath::from(key), bytes.into())
        .await
        .unwrap_or_else(|err| panic!("put {key}: {err}"));
}

fn bucket_uri(prefix: &str) -> RemoteUri {
    RemoteUri::parse(&format!("s3://{BUCKET}/{prefix}")).unwrap()
}

/// An S3-shaped XML error.
fn s3_error(status: u16, code: &str, message: &str) -> Fault {
    Fault::Respond {
        status,
        headers: vec![("Content-Type".into(), "application/xml".into())],
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>1</RequestId></Error>"
        ),
    }
}

/// Checks what every store error must be: names the URI, no credential, transient or not.
fn check_error(err: &RegistryError, uri: &str, wants: &[&str], transient: bool) {
    let text = err.to_string();
    for want in wants.iter().chain([&uri]) {
        assert!(text.contains(want), "{want:?} missing from: {text}");
    }
    for secret in [SECRET_KEY, ACCESS_KEY] {
        assert!(!text.contains(secret), "a credential in: {text}");
        assert!(
            !format!("{err:?}").contains(secret),
            "a credential in: {err:?}"
        );
    }
    assert_eq!(err.is_transient(), transient, "is_transient of: {text}");
}

/// Entries of `dir`, for "nothing was left behind".
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_bucket_is_listed_and_downloaded_with_digests() {
    let store = bucket().await;
    upload(&store, "plain/sentiment", &fixture("sentiment")).await;
    let client = s3_client(&moto().await.url, &[]);
    let uri = bucket_uri("plain/sentiment");
    let resolution = resolve(&client, &uri).await.unwrap();
    assert_eq!(resolution.artifact_uri, "s3://models/plain/sentiment");
    assert_eq!(resolution.name.as_deref(), Some("sentiment"));
    let expected: Vec<(String, u64)> = list_dir(&fixture("sentiment"));
    let listed: Vec<(String, u64)> = resolution
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size.unwrap()))
        .collect();
    assert_eq!(listed, expected);

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("v1");
    let digests = download(&client, &resolution, &dest, &Default::default())
        .await
        .unwrap();
    assert_eq!(list_dir(&dest), expected);
    let local = hotserve::files::digest_dir(&fixture("sentiment")).unwrap();
    assert_eq!(digests, local, "sha256 recorded while downloading");

    // The same files resolve to the same version; a rewritten object to a new one.
    let again = resolve(&client, &uri).await.unwrap();
    assert_eq!(again.version, resolution.version);
    put(&store, "plain/sentiment/README.md", b"rewritten".to_vec()).await;
    let changed = resolve(&client, &uri).await.unwrap();
    assert_ne!(changed.version, resolution.version);

    // The listing key of the first resolution no longer holds: nothing is downloaded.
    let err = download(
        &client,
        &resolution,
        &out.path().join("v2"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    check_error(
        &err,
        "s3://models/plain/sentiment",
        &["changed during the download"],
        true,
    );
    assert_eq!(entries(out.path()), vec!["v1".to_string()]);
}

#[tokio::test]
async fn missing_prefixes_and_credentials_are_explained() {
    bucket().await;
    let err = resolve(
        &s3_client(&moto().await.url, &[]),
        &bucket_uri("nothing/here"),
    )
    .await
    .unwrap_err();
    check_error(
        &err,
        "s3://models/nothing/here",
        &["there are no files"],
        false,
    );

    let anonymous = s3_client(
        &moto().await.url,
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    let err = resolve(&anonymous, &bucket_uri("plain/sentiment"))
        .await
        .unwrap_err();
    check_error(
        &err,
        "s3://models/plain/sentiment",
        &[
            "cannot read s3://models",
            "no AWS credentials",
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ],
        false,
    );
}

#[tokio::test]
async fn profiles_of_the_shared_files_sign_the_requests() {
    let store = bucket().await;
    upload(&store, "profiled/sentiment", &fixture("sentiment")).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIADEFAULTPROFILE\naws_secret_access_key = d\n\
         [ci]\naws_access_key_id = AKIACIPROFILE\naws_secret_access_key = c\n",
    )
    .unwrap();
    let proxy = FaultProxy::start(moto().await.addr).await;
    let home_dir = home.path().to_str().unwrap();
    for (profile, key_id) in [("", "AKIADEFAULTPROFILE"), ("ci", "AKIACIPROFILE")] {
        let client = s3_client(
            &proxy.url(),
            &[
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
                ("HOME", home_dir),
                ("AWS_PROFILE", profile),
            ],
        );
        resolve(&client, &bucket_uri("profiled/sentiment"))
            .await
            .unwrap_or_else(|err| panic!("profile {profile:?}: {err}"));
        let signed = proxy
            .seen()
            .last()
            .and_then(|seen| seen.authorization.clone());
        let credential = format!("Credential={key_id}/");
        assert!(
            signed.as_deref().is_some_and(|a| a.contains(&credential)),
            "{profile:?}: {signed:?}"
        );
    }
    let client = s3_client(
        &proxy.url(),
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("HOME", home_dir),
            ("AWS_PROFILE", "missing"),
        ],
    );
    let err = resolve(&client, &bucket_uri("profiled/sentiment"))
        .await
        .unwrap_err();
    check_error(
        &err,
        "s3://models/profiled/sentiment",
        &["AWS_PROFILE='missing' is in neither"],
        false,
    );
}

#[tokio::test]
async fn refusals_name_the_bucket_and_the_variables() {
    let store = bucket().await;
    upload(&store, "refused/sentiment", &fixture("sentiment")).await;
    let proxy = FaultProxy::start(moto().await.addr).await;
    let client = s3_client(&proxy.url(), &[]);
    let uri = bucket_uri("refused/sentiment");
    for (code, message) in [
        ("AccessDenied", "Access Denied"),
        ("ExpiredToken", "The provided token has expired."),
    ] {
        proxy.clear();
        proxy.inject_always("list-type", s3_error(403, code, message));
        let err = resolve(&client, &uri).await.unwrap_err();
        check_error(
            &err,
            "s3://models/refused/sentiment",
            &[
                &format!("cannot read s3://models: HTTP 403 {code}: {message};"),
                "AWS_ACCESS_KEY_ID",
                "AWS_SESSION_TOKEN",
            ],
            false,
        );
        assert!(matches!(err, RegistryError::StoreRefused { .. }), "{err:?}");
    }
    assert!(!format!("{client:?}").contains(SECRET_KEY), "{client:?}");
    assert!(!format!("{:?}", client.settings()).contains(SECRET_KEY));
}

#[tokio::test]
async fn slow_down_is_retried_with_backoff() {
    let store = bucket().await;
    upload(&store, "slow/sentiment", &fixture("sentiment")).await;
    let proxy = FaultProxy::start(moto().await.addr).await;
    let client = s3_client(&proxy.url(), &[]);
    let uri = bucket_uri("slow/sentiment");
    proxy.inject(
        "list-type",
        s3_error(503, "SlowDown", "Please reduce your request rate."),
        2,
    );
    let resolution = resolve(&client, &uri).await.unwrap();
    proxy.inject("model.onnx", s3_error(500, "InternalError", "try again"), 2);
    let out = tempfile::tempdir().unwrap();
    download(
        &client,
        &resolution,
        &out.path().join("v1"),
        &Default::default(),
    )
    .await
    .unwrap();
    assert!(proxy.count("model.onnx") >= 3, "{:?}", proxy.seen());

    // Beyond the retries: transient, and nothing kept.
    proxy.inject_always("model.onnx", s3_error(503, "SlowDown", "slow down"));
    let err = download(
        &client,
        &resolution,
        &out.path().join("v2"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    check_error(
        &err,
        "s3://models/slow/sentiment",
        &["the object store s3://models failed: HTTP 503 (after 3 retries)"],
        true,
    );
    assert_eq!(entries(out.path()), vec!["v1".to_string()]);
}

#[tokio::test]
async fn a_truncated_object_is_never_kept() {
    let store = bucket().await;
    upload(&store, "cut/sentiment", &fixture("sentiment")).await;
    let proxy = FaultProxy::start(moto().await.addr).await;
    let client = s3_client(&proxy.url(), &[]);
    let resolution = resolve(&client, &bucket_uri("cut/sentiment"))
        .await
        .unwrap();
    proxy.inject_always("model.onnx", Fault::Truncate);
    let out = tempfile::tempdir().unwrap();
    let err = download(
        &client,
        &resolution,
        &out.path().join("v1"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    check_error(&err, "s3://models/cut/sentiment", &["model.onnx"], true);
    assert_eq!(entries(out.path()), Vec::<String>::new());
}

#[tokio::test]
async fn files_that_change_during_the_download_are_never_kept() {
    let store = bucket().await;
    let out = tempfile::tempdir().unwrap();
    // Same size, other bytes: only the ETag tells the difference.
    let onnx_size = std::fs::metadata(fixture("sentiment").join("model.onnx"))
        .unwrap()
        .len();
    let rewritten = vec![b'x'; onnx_size as usize];
    // An object added, and an object rewritten, while model.onnx is held up.
    for (case, key, content) in [
        ("added", "late.txt", b"a file uploaded late".to_vec()),
        ("rewritten", "model.onnx", rewritten),
    ] {
        let prefix = format!("moving-{case}/sentiment");
        upload(&store, &prefix, &fixture("sentiment")).await;
        let proxy = FaultProxy::start(moto().await.addr).await;
        let client = s3_client(&proxy.url(), &[]);
        let resolution = resolve(&client, &bucket_uri(&prefix)).await.unwrap();
        proxy.inject("model.onnx", Fault::Delay(Duration::from_millis(1500)), 1);
        let dest = out.path().join(case);
        let task = {
            let (client, resolution, dest) = (client.clone(), resolution.clone(), dest.clone());
            tokio::spawn(
                async move { download(&client, &resolution, &dest, &Default::default()).await },
            )
        };
        eventually("the download to hold model.onnx", async || {
            (proxy.count("model.onnx") > 0).then_some(())
        })
        .await;
        put(&store, &format!("{prefix}/{key}"), content).await;
        let err = task.await.unwrap().unwrap_err();
        check_error(
            &err,
            &format!("s3://models/{prefix}"),
            &["changed during the download", &format!("{key}' was {case}")],
            true,
        );
        assert!(!dest.exists(), "{case}: nothing kept");
    }
    assert_eq!(entries(out.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_server_without_the_proxy_is_read_from_the_bucket() {
    let registered = register_no_proxy(json!({
        "op": "register", "dir": "tests/fixtures/sentiment", "name": "direct",
        "aliases": ["champion"],
    }))
    .await;
    let client = {
        let server = mlflow_no_proxy().await;
        s3_client(
            &moto().await.url,
            &[("MLFLOW_TRACKING_URI", server.url.as_str())],
        )
    };
    let files: Vec<(String, u64)> = {
        let files = registered["files"].as_object().unwrap();
        let mut files: Vec<(String, u64)> = files
            .iter()
            .map(|(path, file)| (path.clone(), file["size"].as_u64().unwrap()))
            .collect();
        files.sort();
        files
    };
    let uris = &registered["uris"];
    for key in ["version", "alias:champion", "model", "run"] {
        let uri = uris[key].as_str().unwrap();
        let resolution = resolve(&client, &RemoteUri::parse(uri).unwrap())
            .await
            .unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert!(
            resolution
                .artifact_uri
                .starts_with("s3://mlflow-artifacts/"),
            "{uri}: {}",
            resolution.artifact_uri
        );
        let listed: Vec<(String, u64)> = resolution
            .files
            .iter()
            .map(|f| (f.path.clone(), f.size.unwrap()))
            .collect();
        assert_eq!(listed, files, "{uri}");
        let out = tempfile::tempdir().unwrap();
        let digests = download(
            &client,
            &resolution,
            &out.path().join("m"),
            &Default::default(),
        )
        .await
        .unwrap();
        for digest in digests {
            assert_eq!(
                Value::from(digest.sha256),
                registered["files"][&digest.path]["sha256"],
                "{uri}: {}",
                digest.path
            );
        }
    }

    // Without credentials for the bucket: the registry answers, the bucket is explained.
    let server = mlflow_no_proxy().await;
    let anonymous = s3_client(
        &moto().await.url,
        &[
            ("MLFLOW_TRACKING_URI", server.url.as_str()),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
    );
    let err = resolve(
        &anonymous,
        &RemoteUri::parse("models:/direct@champion").unwrap(),
    )
    .await
    .unwrap_err();
    check_error(
        &err,
        "models:/direct@champion",
        &["cannot read s3://mlflow-artifacts", "AWS_ACCESS_KEY_ID"],
        false,
    );
}

/// hotserve itself, in-process: `models:/` against the no-proxy server, then a bucket as
/// `MODEL_URI` with no MLflow at all, published through a pointer object and followed by
/// polling.
#[tokio::test]
async fn hotserve_serves_from_buckets() {
    register_no_proxy(json!({
        "op": "register", "dir": "tests/fixtures/sentiment", "name": "served",
        "aliases": ["live"],
    }))
    .await;
    let server_url = mlflow_no_proxy().await.url.clone();
    let moto_url = &moto().await.url;
    let with_s3 = |start: Start| {
        s3_env(moto_url)
            .into_iter()
            .fold(start, |start, (key, value)| start.env(key, &value))
    };
    let started = Instant::now();
    let server = with_s3(Start::model("models:/served@live"))
        .env("MLFLOW_TRACKING_URI", &server_url)
        .ready()
        .await;
    eprintln!(
        "cold start from the no-proxy server's bucket: {:?}",
        started.elapsed()
    );
    predict(&server).await;
    server.stop().await.unwrap();

    // Published the recommended way: each version under its own folder, then a small pointer
    // object moved to it.
    let store = bucket().await;
    upload(&store, "pointed/versions/1", &fixture("sentiment")).await;
    put(&store, "pointed/current", b"versions/1\n".to_vec()).await;
    let server = with_s3(Start::model("s3://models/pointed/current"))
        .set("poll_interval", "200ms")
        .ready()
        .await;
    let first = predict(&server).await;
    let health = reqwest::get(server.url("/health"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !health.contains(SECRET_KEY) && !health.contains(ACCESS_KEY),
        "{health}"
    );
    assert!(health.contains("s3://models/pointed/current"), "{health}");
    // One name everywhere (the URI's last segment, as routes and metrics have it), and the
    // version the pointer names beside the version.
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["model"]["name"], "current", "{health}");
    assert_eq!(
        health["model"]["pointer_target"], "s3://models/pointed/versions/1",
        "{health}"
    );
    let metadata: serde_json::Value = reqwest::get(server.url("/v1/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["pointer_target"], "s3://models/pointed/versions/1");

    // The next version: uploaded completely, then the pointer moves; the poller swaps.
    upload(&store, "pointed/versions/2", &fixture("sentiment_v2")).await;
    put(&store, "pointed/current", b"versions/2".to_vec()).await;
    let url = server.url("/predict");
    eventually("the new version to be served", async || {
        let version = version_of(&url).await;
        (version != first).then_some(version)
    })
    .await;
    server.stop().await.unwrap();

    let resolution = resolve(
        &s3_client(&moto().await.url, &[]),
        &bucket_uri("pointed/current"),
    )
    .await
    .unwrap();
    assert_eq!(resolution.artifact_uri, "s3://models/pointed/versions/2");
    assert_eq!(resolution.name.as_deref(), Some("pointed"));
}

/// Azure Blob through azurite: a `wasbs://` bucket URI, credentials from
/// `AZURE_STORAGE_CONNECTION_STRING`, listed, downloaded with digests, and refused with advice
/// when the key is wrong.
#[tokio::test]
async fn azure_blob_is_read_with_a_connection_string() {
    let azurite = azurite().await;
    create_container("models").await;
    let store = MicrosoftAzureBuilder::new()
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_container_name("models")
        .with_endpoint(azurite.endpoint.clone())
        .with_allow_http(true)
        .build()
        .unwrap();
    for (relative, _) in list_dir(&fixture("sentiment")) {
        let bytes = std::fs::read(fixture("sentiment").join(&relative)).unwrap();
        store
            .put(
                &StorePath::from(format!("sentiment/{relative}")),
                bytes.into(),
            )
            .await
            .unwrap();
    }
    let uri = RemoteUri::parse(&format!(
        "wasbs://models@{AZURITE_ACCOUNT}.blob.core.windows.net/sentiment"
    ))
    .unwrap();
    let env = |connection: &str| {
        let vars: HashMap<String, String> = [
            ("AZURE_STORAGE_CONNECTION_STRING", connection),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.02"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = registry::hotserve_settings(&|name| vars.get(name).cloned()).unwrap();
        MlflowClient::new(settings).unwrap()
    };
    let client = env(&azurite.connection_string);
    let resolution = resolve(&client, &uri).await.unwrap();
    let expected = list_dir(&fixture("sentiment"));
    let listed: Vec<(String, u64)> = resolution
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size.unwrap()))
        .collect();
    assert_eq!(listed, expected);
    let out = tempfile::tempdir().unwrap();
    let digests = download(
        &client,
        &resolution,
        &out.path().join("v1"),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        digests,
        hotserve::files::digest_dir(&fixture("sentiment")).unwrap()
    );

    let wrong_key = azurite.connection_string.replace(AZURITE_KEY, "d3JvbmcK");
    let err = resolve(&env(&wrong_key), &uri).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot read wasbs://models@devstoreaccount1: HTTP 403")
            && text.contains("AZURE_STORAGE_CONNECTION_STRING"),
        "{text}"
    );
    assert!(
        !text.contains("d3JvbmcK") && !format!("{err:?}").contains("d3JvbmcK"),
        "{text}"
    );
    assert!(!err.is_transient());
}

/// Asks the server once; returns the `X-Model-Version` it answered with.
async fn predict(server: &crate::support::inprocess::Server) -> String {
    version_of(&server.url("/predict")).await
}

async fn version_of(url: &str) -> String {
    let response = reqwest::Client::new()
        .post(url)
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_string()
}
