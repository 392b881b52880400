//! Crashes and full disks mid-reload. The real binary is killed with SIGKILL at random moments
//! of a reload (resolving, downloading, renaming into the cache, writing the manifest and the
//! last-good record, loading), then restarted with the registry down: every restart must serve
//! a complete, validated model from the cache, and no cache entry may ever be half-written.
//! And a cache on a small tmpfs fills up during a download: the old model keeps serving, the
//! download is cleaned up, `/health` says "no space left on device", and once there is space
//! the next check succeeds.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::hotserve::Start;
use crate::support::inprocess;
use crate::support::{eventually, health, health_until, mlflow, register};

/// How many kill-and-restart rounds (the issue asks for at least 20).
const ROUNDS: usize = 20;

/// Moves `alias` of `name` to `version` through MLflow's REST API (fast: no Python client).
async fn move_alias(tracking: &str, name: &str, alias: &str, version: &str) {
    let response = reqwest::Client::new()
        .post(format!("{tracking}/api/2.0/mlflow/registered-models/alias"))
        .json(&json!({"name": name, "alias": alias, "version": version}))
        .send()
        .await
        .expect("set the alias");
    assert!(response.status().is_success(), "{}", response.status());
}

/// Every manifest in the cache (`<folder>/versions/<version>.json`) names a directory whose
/// files are all there with the recorded sizes and digests, and every last-good record
/// (`<folder>/last-good.json`) parses and names a model that is there.
fn check_cache(cache: &Path) {
    use sha2::{Digest, Sha256};
    let read = |path: &Path| -> Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is torn ({err}): {text:?}", path.display()))
    };
    let mut manifests = 0;
    for folder in std::fs::read_dir(cache).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        let last_good = folder.join("last-good.json");
        if last_good.exists() {
            let manifest = read(&last_good);
            let model_dir = Path::new(manifest["dir"].as_str().expect("a directory"));
            assert!(
                model_dir.join("MLmodel").is_file(),
                "{} names a missing model",
                last_good.display()
            );
        }
        for entry in std::fs::read_dir(folder.join("versions")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // Leftovers of the killed process are removed at the next start (checked there).
            if path.is_dir() || !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let manifest = read(&path);
            let model_dir = Path::new(
                manifest["dir"]
                    .as_str()
                    .expect("a manifest names its directory"),
            );
            manifests += 1;
            for file in manifest["digests"].as_array().unwrap() {
                let bytes = std::fs::read(model_dir.join(file["path"].as_str().unwrap()))
                    .unwrap_or_else(|err| panic!("{}: {file} is missing: {err}", path.display()));
                assert_eq!(bytes.len() as u64, file["size"].as_u64().unwrap(), "{file}");
                let digest: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(digest, file["sha256"].as_str().unwrap(), "{file}");
            }
        }
    }
    assert!(
        manifests > 0,
        "the cache holds at least one validated model"
    );
}

/// What a killed process can leave behind: interrupted downloads
/// (`<folder>/versions/.<version>.partial-<n>/`) and temporary files of atomic writes
/// (`.<file>.tmp-<n>`, in a folder or its `versions/`).
fn leftovers(cache: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for folder in std::fs::read_dir(cache).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        for dir in [folder.clone(), folder.join("versions")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().to_string();
                if name.starts_with('.') && (name.contains(".partial-") || name.contains(".tmp-")) {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn sigkill_at_random_moments_of_a_reload_never_leaves_a_broken_cache() {
    let server = mlflow().await;
    let name = "crash-loop";
    register(
        server,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name},
        ]),
    );
    let cache = tempfile::tempdir().unwrap();
    // A port nothing listens on: the registry is down for the restarts.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let start = |tracking: &str| {
        Start::default()
            .arg("--model-uri")
            .arg(&format!("models:/{name}@champion"))
            .arg("--poll-interval")
            .arg("100ms")
            .env("MLFLOW_TRACKING_URI", tracking)
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .cache(cache.path())
    };
    let mut versions = ["1", "2"].iter().cycle();
    for round in 0..ROUNDS {
        let up = start(&server.url).spawn();
        up.wait_ready().await;
        let target = versions.next().unwrap();
        move_alias(&server.url, name, "champion", target).await;
        // Somewhere in the reload that the alias move starts: resolve, download, rename,
        // manifest, last-good record, load (a reload of the fixture takes tens of ms here).
        let delay = Duration::from_millis(fastrand::u64(0..400));
        tokio::time::sleep(delay).await;
        up.signal("KILL");
        drop(up);
        check_cache(cache.path());

        let restarted = start(&down).spawn();
        restarted.wait_ready().await;
        // The start removed what the killed process left (and prunes the cache meanwhile).
        eventually("no leftovers of the killed process", || async {
            leftovers(cache.path()).is_empty().then_some(())
        })
        .await;
        let health = health_until(&restarted, "a version in /health", |health| {
            health["model"]["version"].is_string()
        })
        .await;
        let version = health["model"]["version"].as_str().unwrap();
        assert!(
            version == "1" || version == "2",
            "round {round}: served {version}"
        );
        let answer = reqwest::Client::new()
            .post(restarted.url("/predict"))
            .json(&json!({"text": "I love this"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "round {round}");
        let label = answer.json::<Value>().await.unwrap()["label"]
            .as_str()
            .unwrap()
            .to_string();
        let expected = if version == "1" {
            "POSITIVE"
        } else {
            "positive"
        };
        assert_eq!(
            label, expected,
            "round {round}: the files of version {version}"
        );
        drop(restarted);
        check_cache(cache.path());
    }
}

/// A tmpfs mounted for one test, unmounted when dropped (needs root, as CI runs).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Tmpfs { dir }
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_during_a_download_keeps_the_old_model_and_recovers() {
    let server = mlflow().await;
    let name = "disk-full";
    register(
        server,
        json!([
            {"op": "register", "dir": "tests/fixtures/sentiment", "name": name, "aliases": ["champion"]},
            {"op": "register", "dir": "tests/fixtures/sentiment_v2", "name": name},
        ]),
    );
    // Room for one copy of the fixture (about 260 KB), not for two.
    let disk = Tmpfs::mount("400k");
    let hotserve = inprocess::Start::model(format!("models:/{name}@champion"))
        .env("MLFLOW_TRACKING_URI", &server.url)
        .set("poll_interval", "200ms")
        .cache(disk.dir.path())
        .ready()
        .await;
    assert_eq!(health(&hotserve).await["model"]["version"], "1");

    move_alias(&server.url, name, "champion", "2").await;
    let failed = health_until(
        &hotserve,
        "the download to fail for lack of space",
        |health| {
            let error = health["last_error"].as_str().unwrap_or_default();
            error.to_lowercase().contains("no space left on device")
        },
    )
    .await;
    assert_eq!(
        failed["model"]["version"], "1",
        "the old model keeps serving: {failed:#}"
    );
    assert_eq!(failed["status"], "ok", "{failed:#}");
    let ready = reqwest::get(hotserve.url("/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "readiness stays green");
    assert_eq!(
        leftovers(disk.dir.path()),
        Vec::<String>::new(),
        "the download was cleaned up"
    );

    disk.resize("4m");
    // The check's report (last_reload) comes just after the swap: wait for both.
    let recovered = health_until(&hotserve, "version 2 once there is space", |health| {
        health["model"]["version"] == "2" && health["last_reload"]["result"] == "loaded"
    })
    .await;
    assert_eq!(recovered["last_error"], Value::Null, "{recovered:#}");
    hotserve.stop().await.unwrap();
}
