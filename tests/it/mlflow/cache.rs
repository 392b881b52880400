//! The cache keeps its fallback: a failure of the host never deletes a cached version, and
//! setups that share a `cache_dir` never prune or clear each other's folders (issue 30). The
//! real binary, because the ONNX Runtime library and the cache lock are the process's.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::hotserve::{run, Start};
use crate::support::{fixture, health, mlflow, register, Fault, FaultProxy};

/// The cache folders under `cache` (one per configured source).
fn folders(cache: &Path) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    folders
}

/// The version directories cached in `folder`, by name.
fn versions(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder.join("versions"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("MLmodel").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `hotserve serve` run to its end with `args` and `env`: (exit code, stderr).
fn serve_to_the_end(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (code, _, stderr) = run(&all, env);
    (code, stderr)
}

#[tokio::test]
async fn a_broken_onnx_runtime_library_never_costs_the_cached_fallback() {
    let server = mlflow().await;
    let proxy = FaultProxy::start(server.addr).await;
    let name = "cache-host-failure";
    register(
        server,
        json!({"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]}),
    );
    let uri = format!("models:/{name}@champion");
    let cache = tempfile::tempdir().unwrap();
    let local_cache = tempfile::tempdir().unwrap();
    let start = || {
        Start::model(&uri)
            .env("MLFLOW_TRACKING_URI", &proxy.url())
            .cache(cache.path())
    };
    let first = start().spawn();
    first.wait_ready().await;
    drop(first);
    let local = Start::model(fixture("sentiment"))
        .cache(local_cache.path())
        .spawn();
    local.wait_ready().await;
    drop(local);
    let before = (folders(cache.path()), folders(local_cache.path()));
    let [folder] = &before.0[..] else {
        panic!("one folder for one source: {before:?}");
    };
    assert_eq!(versions(folder), ["1"]);
    assert!(folder.join("last-good.json").is_file());

    // A start with a library that is not there: a configuration error that says so, and the
    // cache exactly as it was, for the registry model and the local one alike.
    let broken = [
        ("MLFLOW_TRACKING_URI", proxy.url()),
        (
            "ORT_DYLIB_PATH",
            "/nonexistent/libonnxruntime.so".to_string(),
        ),
    ];
    let broken: Vec<(&str, &str)> = broken.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stderr) = serve_to_the_end(cache.path(), &["--model-uri", &uri], &broken);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the ONNX Runtime library was not found")
            && stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    let local_dir = fixture("sentiment");
    let (code, stderr) = serve_to_the_end(
        local_cache.path(),
        &["--model-uri", local_dir.to_str().unwrap()],
        &broken,
    );
    assert_eq!(code, 2, "{stderr}");
    let after = (folders(cache.path()), folders(local_cache.path()));
    assert_eq!(after, before);
    assert_eq!(versions(folder), ["1"], "the cached version is still there");
    assert_eq!(
        versions(&after.1[0]).len(),
        1,
        "the local model's copy is still there"
    );

    // The registry down: the next normal start serves the cached version.
    proxy.inject_always(
        "/api/",
        Fault::error(503, "TEMPORARILY_UNAVAILABLE", "maintenance"),
    );
    let second = start().spawn();
    second.wait_ready().await;
    let health = health(&second).await;
    assert_eq!(health["model"]["version"], "1", "{health}");
    assert_eq!(health["served_from_cache"], true, "{health}");
}

#[tokio::test]
async fn setups_sharing_a_cache_directory_keep_their_own_fallbacks() {
    let server = mlflow().await;
    let proxy = FaultProxy::start(server.addr).await;
    let name = "cache-shared";
    register(
        server,
        json!({"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]}),
    );
    let cache = tempfile::tempdir().unwrap();
    let alias = format!("models:/{name}@champion");
    let pinned = format!("models:/{name}/1");
    // A several-models setup naming its model as the registered model is named, and a
    // one-model setup of the same registered model through another URI, at the same time.
    let several = || {
        Start::default()
            .arg("--model")
            .arg(&format!("{name}={alias}"))
            .arg("--model")
            .arg(&format!("local={}", fixture("sentiment").display()))
            .env("MLFLOW_TRACKING_URI", &proxy.url())
            .cache(cache.path())
    };
    let one = || {
        Start::model(&pinned)
            .env("MLFLOW_TRACKING_URI", &proxy.url())
            .cache(cache.path())
    };
    let a = several().spawn();
    let b = one().spawn();
    a.wait_ready().await;
    b.wait_ready().await;
    assert_eq!(folders(cache.path()).len(), 3, "one folder per source");

    // A third process serving a source that one of them serves, from the same directory, is
    // refused: it would clear and prune what the other serves.
    let (code, stderr) = serve_to_the_end(
        cache.path(),
        &["--model-uri", &alias],
        &[("MLFLOW_TRACKING_URI", &proxy.url())],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("is in use by another hotserve (pid {})", a.pid()))
            && stderr.contains("give each hotserve its own cache directory"),
        "{stderr}"
    );
    drop(a);
    drop(b);

    // With the registry down, both setups start on their own last known good version.
    proxy.inject_always(
        "/api/",
        Fault::error(503, "TEMPORARILY_UNAVAILABLE", "maintenance"),
    );
    let a = several().spawn();
    let b = one().spawn();
    for server in [&a, &b] {
        server.wait_ready().await;
    }
    let health_a = health(&a).await;
    assert_eq!(
        health_a["models"][name]["served_from_cache"], true,
        "{health_a}"
    );
    let health_b = health(&b).await;
    assert_eq!(health_b["served_from_cache"], true, "{health_b}");
}
